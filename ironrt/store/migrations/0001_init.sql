-- ironrt schema v1: agents, their LLM calls (traces), events, and daemon metadata.
CREATE TABLE agents (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    status          TEXT NOT NULL,
    pid             INTEGER,
    pid_started     REAL,            -- process start time: pid + start time identify the process
    exit_code       INTEGER,
    signal          INTEGER,
    command         TEXT NOT NULL,   -- JSON list
    cwd             TEXT NOT NULL,
    env             TEXT NOT NULL,   -- JSON object, provider keys already scrubbed
    restart         TEXT NOT NULL,
    max_restarts    INTEGER NOT NULL,
    restarts        INTEGER NOT NULL DEFAULT 0,
    budget_usd      REAL,
    spent_usd       REAL NOT NULL DEFAULT 0,
    on_budget       TEXT NOT NULL,
    pii             TEXT NOT NULL,
    rpm             INTEGER,
    tpm             INTEGER,
    allow_unmetered INTEGER NOT NULL DEFAULT 0,
    token_hash      TEXT,            -- sha256 of the live IC_TOKEN; NULL once revoked
    created_at      TEXT NOT NULL,
    started_at      TEXT,
    ended_at        TEXT,
    error           TEXT
);
CREATE UNIQUE INDEX agents_token ON agents(token_hash) WHERE token_hash IS NOT NULL;

CREATE TABLE traces (
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
    cost_usd         REAL NOT NULL,
    latency_ms       REAL NOT NULL,
    ttfb_ms          REAL,
    error            TEXT,
    started_at       TEXT NOT NULL
);
CREATE INDEX traces_agent ON traces(agent_id, id);

CREATE TABLE events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    ts       TEXT NOT NULL,
    kind     TEXT NOT NULL,
    agent_id TEXT,
    data     TEXT NOT NULL
);
CREATE INDEX events_agent ON events(agent_id, id);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
