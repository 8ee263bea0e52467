-- ironrt schema v12: shared scopes (IRONRT_LEDGER_URL). For a `project:*` or `global`
-- scope shared through the fleet ledger, `spent_nanos` is the fleet's settled spend as
-- this daemon last knew it, and `own_nanos` this daemon's own part of the window: the
-- figure it reports to PostgreSQL, written in the same transaction as the traces that
-- caused it, so a daemon killed at any moment reconciles with exactly what it spent.
-- NULL for scopes that are not shared.
ALTER TABLE scopes ADD COLUMN own_nanos INTEGER;
