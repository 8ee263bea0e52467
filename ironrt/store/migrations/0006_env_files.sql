-- ironrt schema v6: the `--env-file`s of an agent, a JSON list of absolute paths read at
-- each start. Only the paths: the values they hold are never stored.
ALTER TABLE agents ADD COLUMN env_files TEXT NOT NULL DEFAULT '[]';
