-- name: outbox_settlement — what a claimed row says, with its run's saga and key.
SELECT o.status, o.at, r.saga_name, r.idempotency_key
FROM saga_outbox o
JOIN saga_runs r ON r.id = o.run_id
WHERE o.run_id = ?1 AND o.seq = ?2
