-- What stands between a table and a synthetic row without bearing on what a user may read:
-- foreign keys and CHECK constraints (dropped) and user triggers (disabled), on the tables in
-- the exposed schemas ($1). Run as the owner inside the probe's transaction, which is always
-- rolled back, so every one of them is back afterwards. Constraints a partition inherits go
-- with its parent's.
SELECT pg_catalog.format('ALTER TABLE %I.%I DROP CONSTRAINT %I',
                         n.nspname, c.relname, con.conname) AS statement
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname::pg_catalog.text = ANY ($1::pg_catalog.text[])
  AND c.relkind IN ('r', 'p')
  AND con.contype IN ('f', 'c')
  AND con.conparentid = 0
  AND con.coninhcount = 0
UNION ALL
SELECT pg_catalog.format('ALTER TABLE %I.%I DISABLE TRIGGER USER', n.nspname, c.relname)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname::pg_catalog.text = ANY ($1::pg_catalog.text[])
  AND c.relkind IN ('r', 'p')
  AND EXISTS (SELECT 1 FROM pg_catalog.pg_trigger tg
              WHERE tg.tgrelid = c.oid AND NOT tg.tgisinternal)
