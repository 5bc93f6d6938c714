-- SECURITY DEFINER functions in the exposed schemas, and whether anon may execute them: the
-- Data API offers each as /rpc/<name> to anyone holding the public key, and it runs as its
-- owner.
-- Trigger functions cannot be called that way, and extension members are not the schema's.
-- $1: the exposed schemas' names.
SELECT n.nspname::pg_catalog.text AS schema_name,
       p.proname::pg_catalog.text AS name,
       pg_catalog.pg_get_function_identity_arguments(p.oid) AS arguments,
       pg_catalog.has_function_privilege('anon', p.oid, 'EXECUTE') AS anon_can_execute
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname::pg_catalog.text = ANY ($1::pg_catalog.text[])
  AND p.prosecdef
  AND p.prokind = 'f'
  AND p.prorettype NOT IN ('pg_catalog.trigger'::pg_catalog.regtype,
                           'pg_catalog.event_trigger'::pg_catalog.regtype)
  AND NOT EXISTS (
      SELECT 1 FROM pg_catalog.pg_depend d
      WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
        AND d.objid = p.oid AND d.deptype = 'e'
  )
ORDER BY n.nspname, p.proname, 3
