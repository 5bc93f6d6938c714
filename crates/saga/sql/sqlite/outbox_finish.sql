-- name: outbox_finish — records how the attempt ended, only for the owner ?4 of attempt ?5
-- (a process whose lease expired and was taken over records nothing).
-- ?6 outcome: 'delivered' | 'retry' (again at ?7) | 'gave_up'; ?8 now; ?9 the error.
UPDATE saga_outbox_deliveries SET
    lease_owner = NULL,
    lease_expires_at = NULL,
    delivered_at = CASE WHEN ?6 = 'delivered' THEN ?8 ELSE NULL END,
    gave_up_at = CASE WHEN ?6 = 'gave_up' THEN ?8 ELSE NULL END,
    next_attempt_at = CASE WHEN ?6 = 'retry' THEN ?7 ELSE next_attempt_at END,
    last_error = CASE WHEN ?6 = 'delivered' THEN last_error ELSE ?9 END
WHERE run_id = ?1 AND seq = ?2 AND consumer = ?3 AND lease_owner = ?4 AND attempts = ?5
RETURNING attempts
