-- Whether a version is applied already. $1: the version.
SELECT EXISTS (SELECT 1 FROM supabase_migrations.schema_migrations WHERE version = $1)
