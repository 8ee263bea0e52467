-- ironrt schema v7: agents of two kinds. "process": started and supervised by the daemon;
-- "library": an `ironrt.protect` scope of an ordinary Python process, written by that
-- process and only shown by the daemon (never loaded, restarted or signalled by it).
-- `token_hash` of a process agent names its last run's token; whether that token is live
-- is the daemon's token map alone (a restarted daemon puts it back only for an agent it
-- reattaches).
ALTER TABLE agents ADD COLUMN kind TEXT NOT NULL DEFAULT 'process';
-- Each listing reads the library records fresh (another process may have written one).
CREATE INDEX agents_library ON agents(created_at, id) WHERE kind = 'library';
