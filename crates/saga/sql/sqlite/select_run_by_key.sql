SELECT id, saga_name, saga_version, idempotency_key, input, status, created_at, updated_at,
       last_seq, wake_at, lease_owner, lease_generation, lease_expires_at, pending_command,
       environment
FROM saga_runs WHERE idempotency_key = ?1
