CREATE TABLE IF NOT EXISTS saga_migrations (version bigint PRIMARY KEY, applied_at bigint NOT NULL)
