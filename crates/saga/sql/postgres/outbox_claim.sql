-- name: outbox_claim — leases one row's delivery to consumer $3 for owner $4 until $5 + $6,
-- counting the attempt. ON CONFLICT checks the conditions on the latest committed row (it
-- waits for a concurrent claimer's insert), so of two processes that both saw the row due,
-- only the first gets it (the other gets no row back).
INSERT INTO saga_outbox_deliveries AS d
    (run_id, seq, consumer, attempts, next_attempt_at, lease_owner, lease_expires_at)
VALUES ($1, $2, $3, 1, $5, $4, $5 + $6)
ON CONFLICT (run_id, seq, consumer) DO UPDATE SET
    attempts = d.attempts + 1,
    lease_owner = EXCLUDED.lease_owner,
    lease_expires_at = EXCLUDED.lease_expires_at
WHERE d.delivered_at IS NULL AND d.gave_up_at IS NULL AND d.next_attempt_at <= $5
  AND (d.lease_owner IS NULL OR d.lease_expires_at < $5)
RETURNING d.attempts
