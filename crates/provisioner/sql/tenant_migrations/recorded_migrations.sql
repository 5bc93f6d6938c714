-- Every version in the Supabase CLI's table. Through to_jsonb so a table an older CLI made,
-- without the name column, reads too.
SELECT m.version, pg_catalog.to_jsonb(m) ->> 'name' AS name
FROM supabase_migrations.schema_migrations AS m
