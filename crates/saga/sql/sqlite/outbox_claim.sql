-- name: outbox_claim — leases to owner ?2 (until ?3 + ?4) up to ?5 rows consumer ?1 has not
-- finished and nobody is sending now, oldest first, of runs in the claiming process's
-- environment (?6; `IS`: none matches none), counting an attempt for each.
-- One statement, so it takes the write lock before it reads (no stale snapshot when several
-- processes share the file), and the upsert checks the conditions again on the stored row.
INSERT INTO saga_outbox_deliveries
    (run_id, seq, consumer, attempts, next_attempt_at, lease_owner, lease_expires_at)
SELECT o.run_id, o.seq, ?1, 1, ?3, ?2, ?3 + ?4
FROM saga_outbox o
JOIN saga_runs r ON r.id = o.run_id
LEFT JOIN saga_outbox_deliveries d
       ON d.run_id = o.run_id AND d.seq = o.seq AND d.consumer = ?1
WHERE r.environment IS ?6
  AND (d.run_id IS NULL
       OR (d.delivered_at IS NULL AND d.gave_up_at IS NULL AND d.next_attempt_at <= ?3
           AND (d.lease_owner IS NULL OR d.lease_expires_at < ?3)))
ORDER BY o.at, o.run_id, o.seq
LIMIT ?5
ON CONFLICT (run_id, seq, consumer) DO UPDATE SET
    attempts = attempts + 1,
    lease_owner = excluded.lease_owner,
    lease_expires_at = excluded.lease_expires_at
WHERE delivered_at IS NULL AND gave_up_at IS NULL AND next_attempt_at <= ?3
  AND (lease_owner IS NULL OR lease_expires_at < ?3)
RETURNING run_id, seq, attempts
