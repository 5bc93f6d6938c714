-- Views and materialized views in the exposed schemas that anon or authenticated may select
-- and that read, directly or through other views, a table with row level security whose
-- policies do not apply to the view's owner (the table's owner without FORCE, a superuser or
-- a BYPASSRLS role). A view runs its query as its owner unless it is security_invoker; a
-- materialized view never applies row level security to its readers.
-- $1: the exposed schemas' names.
WITH RECURSIVE reads AS (
    SELECT r.ev_class AS view_oid, d.refobjid AS read_oid
    FROM pg_catalog.pg_rewrite r
    JOIN pg_catalog.pg_depend d
      ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
     AND d.objid = r.oid
     AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
     AND d.refobjid <> r.ev_class
    UNION
    SELECT reads.view_oid, d.refobjid
    FROM reads
    JOIN pg_catalog.pg_rewrite r ON r.ev_class = reads.read_oid
    JOIN pg_catalog.pg_depend d
      ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
     AND d.objid = r.oid
     AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
     AND d.refobjid <> r.ev_class
)
SELECT vn.nspname::pg_catalog.text AS schema_name,
       v.relname::pg_catalog.text AS name,
       v.relkind = 'm' AS is_materialized,
       pg_catalog.string_agg(DISTINCT pg_catalog.format('%I.%I', tn.nspname, t.relname), ', ') AS tables_read,
       pg_catalog.concat_ws(', ',
           CASE WHEN pg_catalog.has_table_privilege('anon', v.oid, 'SELECT') THEN 'anon' END,
           CASE WHEN pg_catalog.has_table_privilege('authenticated', v.oid, 'SELECT')
                THEN 'authenticated' END) AS readers
FROM reads
JOIN pg_catalog.pg_class v ON v.oid = reads.view_oid
JOIN pg_catalog.pg_namespace vn ON vn.oid = v.relnamespace
JOIN pg_catalog.pg_class t ON t.oid = reads.read_oid
JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
JOIN pg_catalog.pg_roles owner ON owner.oid = v.relowner
WHERE vn.nspname::pg_catalog.text = ANY ($1::pg_catalog.text[])
  AND v.relkind IN ('v', 'm')
  AND t.relkind IN ('r', 'p')
  AND t.relrowsecurity
  AND (v.relkind = 'm' OR NOT EXISTS (
      SELECT 1 FROM pg_catalog.unnest(v.reloptions) AS o(option)
      WHERE pg_catalog.lower(o.option) IN ('security_invoker=true', 'security_invoker=on',
                                           'security_invoker=1', 'security_invoker=yes')
  ))
  AND (owner.rolsuper OR owner.rolbypassrls
       OR (t.relowner = v.relowner AND NOT t.relforcerowsecurity))
  AND (pg_catalog.has_table_privilege('anon', v.oid, 'SELECT')
       OR pg_catalog.has_table_privilege('authenticated', v.oid, 'SELECT'))
GROUP BY vn.nspname, v.relname, v.relkind, v.oid
ORDER BY vn.nspname, v.relname
