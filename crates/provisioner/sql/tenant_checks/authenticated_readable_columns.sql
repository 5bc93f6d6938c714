-- Columns of tables in the exposed schemas that authenticated may SELECT: whether a signed-in
-- user sees them in other tenants' rows is then asked of the synthetic rows.
-- $1: the exposed schemas' names.
SELECT n.nspname::pg_catalog.text AS schema_name,
       c.relname::pg_catalog.text AS relation,
       a.attname::pg_catalog.text AS column_name
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a
  ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname::pg_catalog.text = ANY ($1::pg_catalog.text[])
  AND c.relkind IN ('r', 'p')
  AND pg_catalog.has_column_privilege('authenticated', c.oid, a.attnum, 'SELECT')
ORDER BY n.nspname, c.relname, a.attnum
