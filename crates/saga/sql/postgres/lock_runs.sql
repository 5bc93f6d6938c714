SELECT id FROM saga_runs
WHERE id = ANY($1::uuid[])
ORDER BY id
FOR UPDATE
