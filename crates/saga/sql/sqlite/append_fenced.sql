UPDATE saga_runs SET
    last_seq = last_seq + ?3,
    status = COALESCE(?4, status),
    wake_at = CASE ?5
        WHEN 'keep' THEN wake_at
        WHEN 'never' THEN NULL
        WHEN 'at' THEN ?6
        ELSE CASE WHEN wake_at IS NULL THEN NULL ELSE MIN(wake_at, ?6) END
    END,
    lease_owner = CASE WHEN ?7 THEN NULL ELSE lease_owner END,
    lease_expires_at = CASE WHEN ?7 THEN NULL ELSE lease_expires_at END,
    pending_command = CASE ?8
        WHEN 'keep' THEN pending_command
        WHEN 'clear' THEN NULL
        WHEN 'pause' THEN COALESCE(pending_command, 'pause')
        ELSE ?8
    END,
    updated_at = ?9
WHERE id = ?1 AND lease_owner = ?10 AND lease_generation = ?2
  AND (pending_command IS NULL OR NOT ?11)
RETURNING last_seq, pending_command
