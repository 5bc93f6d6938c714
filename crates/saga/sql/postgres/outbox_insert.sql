-- name: outbox_insert — the run settled at this event (same transaction as the event).
INSERT INTO saga_outbox (run_id, seq, status, at) VALUES ($1, $2, $3, $4)
