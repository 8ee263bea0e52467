-- ironrt schema v10: usage over time. `usage_hourly` holds the sums of the calls of each
-- UTC hour per (agent, its name, project, provider, model, refused or not); the books
-- update it in the transaction that inserts each trace, so it always equals the sums of
-- the traces, and it outlives them (trace retention prunes traces, never rollups). A
-- usage query reads whole hours here and the partial hours at its edges from `traces`.
-- `hour` is the first 13 characters of `started_at` (`2026-11-30T09`); `project` is ''
-- for none (a NULL would make every row of the key distinct); `cost_usd` sums the known
-- costs and `unpriced_calls` counts the others; `errors` counts calls answered >= 400 or
-- with an error, as the metrics do.
CREATE TABLE usage_hourly (
    hour             TEXT NOT NULL,
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
    PRIMARY KEY (hour, agent_id, agent_name, project, provider, model, refused)
) WITHOUT ROWID;
-- Filters by agent and project over any time range.
CREATE INDEX usage_hourly_agent ON usage_hourly(agent_id, hour);
CREATE INDEX usage_hourly_project ON usage_hourly(project, hour);

-- Early schemas wrote `started_at` without milliseconds (`...:01Z`): written as every later
-- one (`...:01.000Z`), the text sorts as the time it is.
UPDATE traces SET started_at = substr(started_at, 1, 19) || '.000Z'
    WHERE length(started_at) = 20 AND substr(started_at, 20, 1) = 'Z';

INSERT INTO usage_hourly
    SELECT substr(started_at, 1, 13), agent_id, agent_name, COALESCE(project, ''), provider,
           model, refusal IS NOT NULL, COUNT(*),
           SUM(status_code >= 400 OR error IS NOT NULL), SUM(input_tokens),
           SUM(output_tokens), SUM(cached_tokens), SUM(reasoning_tokens),
           COALESCE(SUM(cost_usd), 0.0), SUM(cost_usd IS NULL)
    FROM traces
    GROUP BY 1, 2, 3, 4, 5, 6, 7;

-- Traces by time (usage edges, retention, time filters) and by the listing's filters,
-- newest first by id. `traces_agent(agent_id, id)` exists since v1.
CREATE INDEX traces_started ON traces(started_at);
CREATE INDEX traces_model ON traces(model, id);
CREATE INDEX traces_project ON traces(project, id);
CREATE INDEX traces_refused ON traces(id) WHERE refusal IS NOT NULL;
CREATE INDEX traces_failed ON traces(id)
    WHERE refusal IS NULL AND (status_code >= 400 OR error IS NOT NULL);
