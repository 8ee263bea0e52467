-- ironrt schema v11: usage by day. `usage_daily` holds the sums of the calls of each UTC
-- day per the key of `usage_hourly` (agent, its name, project, provider, model, refused
-- or not), with `day` (`2026-11-30`, the first 10 characters of `started_at`) for `hour`.
-- The books upsert both in the transaction that inserts each trace; retention prunes
-- neither. A usage query reads its whole days here (a day is one row per key instead of
-- up to 24), the whole hours of its partial days from `usage_hourly` and its partial
-- hours from `traces`: a month of a busy fleet is a few thousand rows instead of a
-- hundred thousand.
CREATE TABLE usage_daily (
    day              TEXT NOT NULL,
    agent_id         TEXT NOT NULL,
    agent_name       TEXT NOT NULL,
    project          TEXT NOT NULL,
    provider         TEXT NOT NULL,
    model            TEXT NOT NULL,
    refused          INTEGER NOT NULL,
    calls            INTEGER NOT NULL,
    errors           INTEGER NOT NULL,
    input_tokens     INTEGER NOT NULL,
    output_tokens    INTEGER NOT NULL,
    cached_tokens    INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    cost_usd         REAL NOT NULL,
    unpriced_calls   INTEGER NOT NULL,
    PRIMARY KEY (day, agent_id, agent_name, project, provider, model, refused)
) WITHOUT ROWID;
-- Filters by agent and project over any time range. Key columns only: a call adding to
-- an existing row's sums leaves them untouched.
CREATE INDEX usage_daily_agent ON usage_daily(agent_id, day);
CREATE INDEX usage_daily_project ON usage_daily(project, day);

-- From the hourly rollups, not the traces: they hold the hours retention has pruned.
INSERT INTO usage_daily
    SELECT substr(hour, 1, 10), agent_id, agent_name, project, provider, model, refused,
           SUM(calls), SUM(errors), SUM(input_tokens), SUM(output_tokens),
           SUM(cached_tokens), SUM(reasoning_tokens), SUM(cost_usd), SUM(unpriced_calls)
    FROM usage_hourly
    GROUP BY 1, 2, 3, 4, 5, 6, 7;
