SELECT id, saga_name, saga_version, idempotency_key, input, status, created_at, updated_at,
       last_seq, wake_at, lease_owner, lease_generation, lease_expires_at, pending_command,
       environment
FROM saga_runs
WHERE (?1 IS NULL OR status = ?1)
  AND (?2 IS NULL OR saga_name = ?2)
  AND (?3 IS NULL OR id < ?3)
  AND (?5 IS NULL OR idempotency_key LIKE ?5)
ORDER BY id DESC
LIMIT ?4
