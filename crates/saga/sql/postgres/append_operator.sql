UPDATE saga_runs SET
    last_seq = last_seq + $3::bigint,
    status = COALESCE($4::text, status),
    wake_at = CASE $5::text
        WHEN 'keep' THEN wake_at
        WHEN 'never' THEN NULL
        WHEN 'at' THEN $6::bigint
        ELSE CASE WHEN wake_at IS NULL THEN NULL ELSE LEAST(wake_at, $6::bigint) END
    END,
    lease_owner = CASE WHEN $7::boolean THEN NULL ELSE lease_owner END,
    lease_expires_at = CASE WHEN $7::boolean THEN NULL ELSE lease_expires_at END,
    pending_command = CASE $8::text
        WHEN 'keep' THEN pending_command
        WHEN 'clear' THEN NULL
        WHEN 'pause' THEN COALESCE(pending_command, 'pause')
        ELSE $8::text
    END,
    updated_at = $9::bigint
WHERE id = $1 AND $2::bigint IS NULL AND $10::text IS NULL AND $11::boolean IS NOT NULL
RETURNING last_seq, pending_command
