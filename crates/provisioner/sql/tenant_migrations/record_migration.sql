-- A migration applied, in the Supabase CLI's table. $1 version, $2 name, $3 its statements.
INSERT INTO supabase_migrations.schema_migrations (version, name, statements) VALUES ($1, $2, $3)
