-- Runs: one row per run, a projection of its events that workers use to find work.
CREATE TABLE saga_runs (
    id               TEXT    PRIMARY KEY,
    saga_name        TEXT    NOT NULL,
    saga_version     INTEGER NOT NULL,
    idempotency_key  TEXT    NOT NULL UNIQUE,
    input            TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    last_seq         INTEGER NOT NULL,
    wake_at          INTEGER,
    lease_owner      TEXT,
    lease_generation INTEGER NOT NULL DEFAULT 0,
    lease_expires_at INTEGER,
    pending_command  TEXT
);
CREATE INDEX saga_runs_due ON saga_runs (wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX saga_runs_status ON saga_runs (status, id);
CREATE INDEX saga_runs_saga ON saga_runs (saga_name, id);

-- Events: append-only; the source of truth for every run's state.
CREATE TABLE saga_events (
    run_id TEXT    NOT NULL REFERENCES saga_runs (id),
    seq    INTEGER NOT NULL,
    at     INTEGER NOT NULL,
    kind   TEXT    NOT NULL,
    body   TEXT    NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;

CREATE TRIGGER saga_events_no_update BEFORE UPDATE ON saga_events
BEGIN SELECT RAISE(ABORT, 'saga_events is append-only'); END;
CREATE TRIGGER saga_events_no_delete BEFORE DELETE ON saga_events
BEGIN SELECT RAISE(ABORT, 'saga_events is append-only'); END;
