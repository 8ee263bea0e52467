-- ironrt schema v2: budget scopes (global, project:NAME, agent:ID) with their limits and
-- the spend of their current window; agents gain a project and a stop reason.
ALTER TABLE agents ADD COLUMN project TEXT;
ALTER TABLE agents ADD COLUMN stop_reason TEXT;

CREATE TABLE scopes (
    scope          TEXT PRIMARY KEY,
    budget_usd     REAL,
    window_spec    TEXT,             -- the window as written: 30s, 1h, 7d
    resets_at      REAL,             -- epoch seconds; the window's spend returns to 0 then
    rpm            INTEGER,
    tpm            INTEGER,
    max_concurrent INTEGER,
    models         TEXT,             -- JSON list of glob patterns
    spent_nanos    INTEGER NOT NULL DEFAULT 0,  -- settled spend of the window, 1e-9 USD
    warned         TEXT NOT NULL DEFAULT '[]'   -- warning thresholds fired in the window
);

-- v1 kept each agent's budget, rate limits and lifetime spend on the agent row.
INSERT INTO scopes(scope, budget_usd, rpm, tpm, spent_nanos)
    SELECT 'agent:' || id, budget_usd, rpm, tpm, CAST(ROUND(spent_usd * 1e9) AS INTEGER)
    FROM agents;
INSERT INTO scopes(scope, spent_nanos)
    SELECT 'global', COALESCE(CAST(ROUND(SUM(spent_usd) * 1e9) AS INTEGER), 0) FROM agents;
