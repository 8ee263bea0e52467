-- ironrt schema v4: a call's cost may be unknown (an unpriced model, called by an agent
-- without any budget): `traces.cost_usd` becomes nullable. SQLite cannot drop a NOT NULL
-- constraint in place, so the table is rebuilt with the same rows, ids and index.
CREATE TABLE traces_v4 (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id         TEXT NOT NULL,
    provider         TEXT NOT NULL,
    model            TEXT NOT NULL,
    endpoint         TEXT NOT NULL,
    stream           INTEGER NOT NULL,
    status_code      INTEGER NOT NULL,
    input_tokens     INTEGER NOT NULL,
    output_tokens    INTEGER NOT NULL,
    cached_tokens    INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    cost_usd         REAL,             -- NULL: unknown (no price for the model)
    latency_ms       REAL NOT NULL,
    ttfb_ms          REAL,
    error            TEXT,
    started_at       TEXT NOT NULL
);
INSERT INTO traces_v4 SELECT * FROM traces;
DROP TABLE traces;
ALTER TABLE traces_v4 RENAME TO traces;
CREATE INDEX traces_agent ON traces(agent_id, id);
