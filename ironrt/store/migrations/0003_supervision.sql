-- ironrt schema v3: PM2's restart semantics (a minimum uptime and a count of consecutive
-- unstable restarts; max_restarts -1 means unlimited), agents that ended unwatched
-- (`lost`), per-agent log rotation limits, and the digest of the apps-file entry an agent
-- was started from (`ironrt up` restarts an entry whose spec changed).
ALTER TABLE agents ADD COLUMN min_uptime_s REAL NOT NULL DEFAULT 5.0;
ALTER TABLE agents ADD COLUMN unstable_restarts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN lost INTEGER NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN log_max_bytes INTEGER NOT NULL DEFAULT 10485760;
ALTER TABLE agents ADD COLUMN log_keep INTEGER NOT NULL DEFAULT 3;
ALTER TABLE agents ADD COLUMN spec_digest TEXT;
