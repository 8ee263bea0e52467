-- ironrt schema v5: per-agent resource limits, NULL meaning none: the tree's RSS above
-- which the agent is restarted (PM2's max_memory_restart), and the RLIMIT_NOFILE and
-- RLIMIT_CPU each of its processes gets before any of its code runs.
ALTER TABLE agents ADD COLUMN max_memory_bytes INTEGER;
ALTER TABLE agents ADD COLUMN max_open_files INTEGER;
ALTER TABLE agents ADD COLUMN max_cpu_seconds INTEGER;
