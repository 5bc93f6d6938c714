-- Every relation the Data API can reach: tables, views, materialized views and foreign tables
-- in the exposed schemas. $1: the exposed schemas' names.
-- Every check query runs on a connection whose search_path is pg_catalog alone, and calls
-- catalog functions qualified, so nothing the schema under check defines (a function, an
-- operator) can stand in for a catalog one.
SELECT n.nspname::pg_catalog.text AS schema_name,
       c.relname::pg_catalog.text AS name,
       c.relkind IN ('r', 'p') AS is_table,
       c.relispartition AS is_partition,
       c.relrowsecurity AS rls_enabled
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname::pg_catalog.text = ANY ($1::pg_catalog.text[])
  AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
ORDER BY n.nspname, c.relname
