-- The outbox: one row per time a run settled (succeeded, compensated, needs_attention,
-- paused, abandoned), written in the same transaction as the event that settled it, so a
-- crash can never keep the transition and lose the notification (or the reverse).
CREATE TABLE saga_outbox (
    run_id TEXT    NOT NULL REFERENCES saga_runs (id),
    seq    INTEGER NOT NULL,
    status TEXT    NOT NULL,
    at     INTEGER NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE INDEX saga_outbox_at ON saga_outbox (at, run_id, seq);

-- Delivery of each outbox row to each consumer (a named receiver): attempts, the lease of
-- the process sending it now, and how it ended (delivered, or given up with the last error).
CREATE TABLE saga_outbox_deliveries (
    run_id           TEXT    NOT NULL,
    seq              INTEGER NOT NULL,
    consumer         TEXT    NOT NULL,
    attempts         INTEGER NOT NULL,
    next_attempt_at  INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    delivered_at     INTEGER,
    gave_up_at       INTEGER,
    last_error       TEXT,
    PRIMARY KEY (run_id, seq, consumer),
    FOREIGN KEY (run_id, seq) REFERENCES saga_outbox (run_id, seq)
) WITHOUT ROWID;
