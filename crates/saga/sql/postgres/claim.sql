WITH due AS (
    -- A run still naming an owner here is one whose lease expired: a takeover.
    SELECT id, lease_owner AS previous_owner FROM saga_runs
    WHERE wake_at IS NOT NULL AND wake_at <= $2
      AND (lease_owner IS NULL OR lease_expires_at < $2)
      -- Only runs of the claiming worker's environment (no environment matches none).
      AND environment IS NOT DISTINCT FROM $5::text
    ORDER BY wake_at
    LIMIT $4
    FOR UPDATE SKIP LOCKED
)
UPDATE saga_runs r SET
    lease_owner = $1,
    lease_generation = r.lease_generation + 1,
    lease_expires_at = $2 + $3
FROM due
WHERE r.id = due.id
RETURNING r.id, r.lease_generation, due.previous_owner IS NOT NULL AS took_over
