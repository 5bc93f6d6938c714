-- Runs: one row per run, a projection of its events that workers use to find work.
CREATE TABLE saga_runs (
    id               uuid    PRIMARY KEY,
    saga_name        text    NOT NULL,
    saga_version     bigint  NOT NULL,
    idempotency_key  text    NOT NULL UNIQUE,
    input            text    NOT NULL,
    status           text    NOT NULL,
    created_at       bigint  NOT NULL,
    updated_at       bigint  NOT NULL,
    last_seq         bigint  NOT NULL,
    wake_at          bigint,
    lease_owner      text,
    lease_generation bigint  NOT NULL DEFAULT 0,
    lease_expires_at bigint,
    pending_command  text
);
CREATE INDEX saga_runs_due ON saga_runs (wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX saga_runs_status ON saga_runs (status, id);
CREATE INDEX saga_runs_saga ON saga_runs (saga_name, id);

-- Events: append-only; the source of truth for every run's state.
CREATE TABLE saga_events (
    run_id uuid   NOT NULL REFERENCES saga_runs (id),
    seq    bigint NOT NULL,
    at     bigint NOT NULL,
    kind   text   NOT NULL,
    body   text   NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE FUNCTION saga_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'saga_events is append-only';
END;
$$;
CREATE TRIGGER saga_events_no_change BEFORE UPDATE OR DELETE ON saga_events
    FOR EACH ROW EXECUTE FUNCTION saga_events_append_only();
