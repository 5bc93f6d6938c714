-- The tables in the exposed schemas, each with the statements that probe it as a signed-in
-- user would read it and that take its row level security away for a moment (to tell which
-- table's policies a failure comes from). The probe counts every row, so every row's policy
-- expressions run (a LIMIT could stop at a row whose policy short-circuits), and counts
-- separately the other tenant's synthetic row: $1 its tableoid, $2 its ctid.
-- $1 of this query: the exposed schemas' names.
SELECT n.nspname::pg_catalog.text AS schema_name,
       c.relname::pg_catalog.text AS name,
       pg_catalog.format(
           'SELECT pg_catalog.count(*) AS visible, pg_catalog.count(*) FILTER ('
           'WHERE t.tableoid OPERATOR(pg_catalog.=) $1::pg_catalog.int8::pg_catalog.oid '
           'AND t.ctid OPERATOR(pg_catalog.=) $2::pg_catalog.tid) AS others_visible '
           'FROM %I.%I AS t', n.nspname, c.relname) AS probe,
       pg_catalog.format('ALTER TABLE %I.%I DISABLE ROW LEVEL SECURITY',
                         n.nspname, c.relname) AS disable_rls
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname::pg_catalog.text = ANY ($1::pg_catalog.text[])
  AND c.relkind IN ('r', 'p')
ORDER BY n.nspname, c.relname
