-- Whether a version is applied already, for an applier waiting on another's claim.
SELECT EXISTS (SELECT 1 FROM supabase_migrations.schema_migrations WHERE version = __VERSION__)
  AS recorded
