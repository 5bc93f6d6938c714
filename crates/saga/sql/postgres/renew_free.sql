-- Renews the leases ($4 ids, $5 generations) whose rows no other transaction holds, without
-- waiting for those that one does: each of those comes back marked busy (third column), to
-- be renewed again once the transaction holding it is done.
WITH free AS (
    SELECT id FROM saga_runs WHERE id = ANY($4::uuid[]) FOR UPDATE SKIP LOCKED
), renewed AS (
    UPDATE saga_runs r SET lease_expires_at = $2 + $3
    FROM UNNEST($4::uuid[], $5::bigint[]) AS held (id, generation)
    WHERE r.id = held.id AND r.lease_generation = held.generation AND r.lease_owner = $1
      AND r.id IN (SELECT id FROM free)
    RETURNING r.id, r.lease_generation
)
SELECT id, lease_generation, false AS busy FROM renewed
UNION ALL
SELECT held.id, held.generation, true FROM UNNEST($4::uuid[], $5::bigint[]) AS held (id, generation)
WHERE held.id NOT IN (SELECT id FROM free)
