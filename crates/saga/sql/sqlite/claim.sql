UPDATE saga_runs SET
    lease_owner = ?1,
    lease_generation = lease_generation + 1,
    lease_expires_at = ?2 + ?3
WHERE id IN (
    SELECT id FROM saga_runs
    WHERE wake_at IS NOT NULL AND wake_at <= ?2
      AND (lease_owner IS NULL OR lease_expires_at < ?2)
      -- Only runs of the claiming worker's environment (`IS`: no environment matches none).
      AND environment IS ?5
    ORDER BY wake_at
    LIMIT ?4
)
RETURNING id, lease_generation
