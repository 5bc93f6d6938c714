-- Every version in the Supabase CLI's table, as JSON (see recorded_migrations.sql).
(SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
   'version', m.version, 'name', pg_catalog.to_jsonb(m) ->> 'name')), '[]'::jsonb)
 FROM supabase_migrations.schema_migrations AS m)
