UPDATE saga_runs SET lease_expires_at = ?2 + ?3
WHERE id = ?4 AND lease_owner = ?1 AND lease_generation = ?5
RETURNING id, lease_generation
