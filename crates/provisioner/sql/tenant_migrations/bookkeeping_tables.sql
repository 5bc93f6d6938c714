-- Where a tenant database records its applied migrations, created by the first apply and kept
-- from then on:
-- - supabase_migrations.schema_migrations exactly as the Supabase CLI makes it (the table, then
--   its later columns, so a table an older CLI made gains them too), so `supabase migration
--   list` and the dashboard read the same history;
-- - our checksum of each applied file beside it, in a schema the API roles cannot reach;
-- - claims on files that run outside a transaction, taken by appliers that reach the database
--   through the Management API's SQL endpoint and so cannot hold a session lock.
CREATE SCHEMA IF NOT EXISTS supabase_migrations;
CREATE TABLE IF NOT EXISTS supabase_migrations.schema_migrations (version text NOT NULL PRIMARY KEY);
ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS statements text[];
ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS name text;
CREATE SCHEMA IF NOT EXISTS provisioner;
REVOKE ALL ON SCHEMA provisioner FROM PUBLIC;
CREATE TABLE IF NOT EXISTS provisioner.migration_checksums (
    version    text        PRIMARY KEY,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON provisioner.migration_checksums FROM PUBLIC;
CREATE TABLE IF NOT EXISTS provisioner.migration_claims (
    version    text        PRIMARY KEY,
    claimed_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON provisioner.migration_claims FROM PUBLIC;
