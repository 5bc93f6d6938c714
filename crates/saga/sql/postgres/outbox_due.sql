-- name: outbox_due — rows consumer $1 has not finished and nobody is sending now, oldest
-- first, of runs in the claiming process's environment ($4).
SELECT o.run_id, o.seq, o.status, o.at, r.saga_name, r.idempotency_key
FROM saga_outbox o
JOIN saga_runs r ON r.id = o.run_id
LEFT JOIN saga_outbox_deliveries d
       ON d.run_id = o.run_id AND d.seq = o.seq AND d.consumer = $1
WHERE r.environment IS NOT DISTINCT FROM $4::text
  AND (d.run_id IS NULL
       OR (d.delivered_at IS NULL AND d.gave_up_at IS NULL AND d.next_attempt_at <= $2
           AND (d.lease_owner IS NULL OR d.lease_expires_at < $2)))
ORDER BY o.at, o.run_id, o.seq
LIMIT $3
