-- ironrt schema v9: observability. Each call keeps who made it as it was then (the
-- agent's name, project and pid), the model that answered, why ironrt refused it (a
-- refused call reached no provider) and the time the router itself added. Traces are
-- listed by time, agent, model and project through indexes.
ALTER TABLE traces ADD COLUMN agent_name TEXT NOT NULL DEFAULT '';
ALTER TABLE traces ADD COLUMN project TEXT;
ALTER TABLE traces ADD COLUMN pid INTEGER;
ALTER TABLE traces ADD COLUMN response_model TEXT NOT NULL DEFAULT '';
ALTER TABLE traces ADD COLUMN refusal TEXT;
ALTER TABLE traces ADD COLUMN overhead_ms REAL;
