-- name: outbox_of_run — a run's outbox rows and, per consumer, their deliveries so far.
SELECT o.seq, o.status, o.at, d.consumer, d.attempts, d.next_attempt_at, d.delivered_at,
       d.gave_up_at, d.last_error
FROM saga_outbox o
LEFT JOIN saga_outbox_deliveries d ON d.run_id = o.run_id AND d.seq = o.seq
WHERE o.run_id = $1
ORDER BY o.seq, d.consumer
