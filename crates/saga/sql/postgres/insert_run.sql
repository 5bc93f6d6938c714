INSERT INTO saga_runs (id, saga_name, saga_version, idempotency_key, input, status, created_at,
                       updated_at, last_seq, wake_at, lease_owner, lease_generation, lease_expires_at,
                       environment)
VALUES ($1, $2, $3, $4, $5, $10, $6, $6, $11, $6, $7, $8, $9, $12)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id
