UPDATE saga_runs r SET lease_expires_at = $2 + $3
FROM UNNEST($4::uuid[], $5::bigint[]) AS held (id, generation)
WHERE r.id = held.id AND r.lease_generation = held.generation AND r.lease_owner = $1
RETURNING r.id, r.lease_generation
