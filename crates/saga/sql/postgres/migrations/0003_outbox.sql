-- The outbox: one row per time a run settled (succeeded, compensated, needs_attention,
-- paused, abandoned), written in the same transaction as the event that settled it, so a
-- crash can never keep the transition and lose the notification (or the reverse).
CREATE TABLE saga_outbox (
    run_id uuid   NOT NULL REFERENCES saga_runs (id),
    seq    bigint NOT NULL,
    status text   NOT NULL,
    at     bigint NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE INDEX saga_outbox_at ON saga_outbox (at, run_id, seq);

-- Delivery of each outbox row to each consumer (a named receiver): attempts, the lease of
-- the process sending it now, and how it ended (delivered, or given up with the last error).
CREATE TABLE saga_outbox_deliveries (
    run_id           uuid   NOT NULL,
    seq              bigint NOT NULL,
    consumer         text   NOT NULL,
    attempts         bigint NOT NULL,
    next_attempt_at  bigint NOT NULL,
    lease_owner      text,
    lease_expires_at bigint,
    delivered_at     bigint,
    gave_up_at       bigint,
    last_error       text,
    PRIMARY KEY (run_id, seq, consumer),
    FOREIGN KEY (run_id, seq) REFERENCES saga_outbox (run_id, seq)
);
