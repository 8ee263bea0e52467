-- ironrt schema v8: PII handling per type. An agent keeps its selection (`pii_types`, a
-- JSON map type -> action, `*` for the others; null: every type follows `pii`) and the
-- path of its own pii.toml; a scope (`global`, `project:NAME`) may set a floor for every
-- call in it (`pii`, `pii_types`: null, no floor).
ALTER TABLE agents ADD COLUMN pii_types TEXT;
ALTER TABLE agents ADD COLUMN pii_file TEXT;
ALTER TABLE scopes ADD COLUMN pii TEXT;
ALTER TABLE scopes ADD COLUMN pii_types TEXT;
