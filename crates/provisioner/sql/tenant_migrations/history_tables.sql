-- Which of the history tables exist, so reading the history creates nothing: the Supabase
-- CLI's, ours beside it, and the single-schema record of tenants provisioned before migrations.
SELECT pg_catalog.to_regclass('supabase_migrations.schema_migrations') IS NOT NULL AS migrations,
       pg_catalog.to_regclass('provisioner.migration_checksums') IS NOT NULL AS checksums,
       pg_catalog.to_regclass('provisioner.schema_versions') IS NOT NULL AS legacy
