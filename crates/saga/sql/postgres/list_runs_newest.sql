SELECT id, saga_name, saga_version, idempotency_key, input, status, created_at, updated_at,
       last_seq, wake_at, lease_owner, lease_generation, lease_expires_at, pending_command,
       environment
FROM saga_runs
WHERE ($1::text IS NULL OR status = $1::text)
  AND ($2::text IS NULL OR saga_name = $2::text)
  AND ($3::uuid IS NULL OR id < $3::uuid)
  AND ($5::text IS NULL OR idempotency_key LIKE $5::text)
ORDER BY id DESC
LIMIT $4
