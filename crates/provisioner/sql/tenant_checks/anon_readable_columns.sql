-- Columns anon can read, with why: a relation is readable by anon when anon may SELECT the
-- column and either nothing filters rows (RLS off, or not a table at all, e.g. a view running
-- as its owner) or a permissive SELECT policy applies to anon (directly, through PUBLIC, or
-- through a role anon belongs to). A policy's expression is not judged: one written for anon
-- is taken to be meant to let anon read. $1: the exposed schemas' names.
SELECT n.nspname::pg_catalog.text AS schema_name,
       c.relname::pg_catalog.text AS relation,
       a.attname::pg_catalog.text AS column_name,
       c.relkind IN ('r', 'p') AS is_table,
       c.relrowsecurity AS rls_enabled,
       (SELECT pg_catalog.string_agg(p.polname::pg_catalog.text, ', ' ORDER BY p.polname)
        FROM pg_catalog.pg_policy p
        WHERE p.polrelid = c.oid
          AND p.polpermissive
          AND p.polcmd IN ('r', '*')
          AND EXISTS (
              SELECT 1 FROM pg_catalog.unnest(p.polroles) AS r(role_oid)
              WHERE CASE WHEN r.role_oid = 0::pg_catalog.oid THEN true
                         ELSE pg_catalog.pg_has_role('anon', r.role_oid, 'MEMBER') END
          )) AS anon_policies
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a
  ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname::pg_catalog.text = ANY ($1::pg_catalog.text[])
  AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND pg_catalog.has_column_privilege('anon', c.oid, a.attnum, 'SELECT')
ORDER BY n.nspname, c.relname, a.attnum
