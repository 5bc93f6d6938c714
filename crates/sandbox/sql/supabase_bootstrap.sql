-- What a fresh Supabase project database already contains, made on plain PostgreSQL (13+).
--
-- How to use it (the simulator, for every new project; the provisioner's tenant_db tests do
-- exactly this, in this order):
--   1. As a superuser: CREATE ROLE "<owner>" LOGIN PASSWORD '<generated>';
--      (one login role per project, playing the part of Supabase's `postgres`; skip if it exists)
--   2. As a superuser: CREATE DATABASE "<db>" OWNER "<owner>";
--   3. As a superuser, connected to "<db>": run this whole file as one script (it needs no
--      parameters; sqlx `raw_sql` or `psql -f` both work, and it may run inside a transaction).
--   4. The app schema is then applied by connecting to "<db>" as "<owner>".
-- Step 3 may instead run as the owner itself (superuser connection, then SET ROLE "<owner>")
-- once the four API roles exist and the owner is a member of anon, authenticated and
-- service_role: everything else here is within a database owner's rights (uuid-ossp and
-- pgcrypto are trusted extensions). Only creating a missing role needs a superuser
-- (BYPASSRLS), and that fails loudly rather than leaving a half-made project.
--
-- The database's owner (from pg_database.datdba) is the role this file prepares: it is made a
-- member of anon, authenticated and service_role (so it can `SET ROLE authenticated` to test
-- policies), and the default privileges are set FOR ROLE that owner, so every table, sequence
-- and function it later creates in `public` is granted to the three API roles, as on Supabase.
-- The role running this file gets the same default privileges, for objects a superuser creates.
-- Running it again on the same database changes nothing.
--
-- Roles are cluster-wide and several project databases are bootstrapped at once, so each role
-- and membership is created only if missing, and a concurrent creator winning the race
-- (duplicate_object / unique_violation) counts as success. Roles are never dropped here: other
-- projects' databases use them.
--
-- Facts: the claim fallback order (`request.jwt.claim.*` first, then `request.jwt.claims`) is
-- that of Supabase's own auth.uid() (supabase/auth, migrations/tenant/
-- 20211202183645_update_auth_uid.up.sql); an empty setting counts as unset there too.

-- Cluster-wide roles ------------------------------------------------------------------------

DO $roles$
DECLARE
    wanted record;
BEGIN
    FOR wanted IN
        SELECT * FROM (VALUES
            ('anon',          'NOLOGIN NOINHERIT'),
            ('authenticated', 'NOLOGIN NOINHERIT'),
            ('service_role',  'NOLOGIN NOINHERIT BYPASSRLS'),
            ('authenticator', 'LOGIN NOINHERIT')
        ) AS r(role_name, attributes)
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = wanted.role_name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I %s', wanted.role_name, wanted.attributes);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                -- Another bootstrap created it between our check and our CREATE.
                NULL;
            END;
        END IF;
    END LOOP;
END
$roles$;

-- Memberships: authenticator may switch to the three API roles (as PostgREST does), and the
-- database owner may too. Granted only when missing; a concurrent identical grant is fine.
DO $memberships$
DECLARE
    owner_name name;
    grant_pair record;
BEGIN
    SELECT pg_catalog.pg_get_userbyid(d.datdba) INTO owner_name
    FROM pg_catalog.pg_database d
    WHERE d.datname = pg_catalog.current_database();

    FOR grant_pair IN
        SELECT api_role, member
        FROM unnest(ARRAY['anon', 'authenticated', 'service_role']) AS api_role,
             unnest(ARRAY['authenticator', owner_name]) AS member
    LOOP
        -- A superuser owner (no separate project role) already can SET ROLE to anything.
        CONTINUE WHEN (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = grant_pair.member);
        IF NOT EXISTS (
            SELECT 1
            FROM pg_catalog.pg_auth_members m
            JOIN pg_catalog.pg_roles granted ON granted.oid = m.roleid
            JOIN pg_catalog.pg_roles grantee ON grantee.oid = m.member
            WHERE granted.rolname = grant_pair.api_role AND grantee.rolname = grant_pair.member
        ) THEN
            BEGIN
                EXECUTE format('GRANT %I TO %I', grant_pair.api_role, grant_pair.member);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;
            END;
        END IF;
    END LOOP;
END
$memberships$;

-- Extensions --------------------------------------------------------------------------------

CREATE SCHEMA IF NOT EXISTS extensions;
CREATE EXTENSION IF NOT EXISTS "uuid-ossp" WITH SCHEMA extensions;
CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA extensions;
GRANT USAGE ON SCHEMA extensions TO anon, authenticated, service_role;

-- auth: users and the JWT helpers policies call ---------------------------------------------

CREATE SCHEMA IF NOT EXISTS auth;

CREATE TABLE IF NOT EXISTS auth.users (
    id                 uuid        PRIMARY KEY,
    aud                varchar(255),
    role               varchar(255),
    email              varchar(255),
    encrypted_password varchar(255),
    email_confirmed_at timestamptz,
    phone              text,
    raw_app_meta_data  jsonb,
    raw_user_meta_data jsonb,
    is_anonymous       boolean     NOT NULL DEFAULT false,
    created_at         timestamptz DEFAULT now(),
    updated_at         timestamptz DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS users_email_key ON auth.users (email);

-- request.jwt.claims is set per request (PostgREST) or per test transaction. An unset custom
-- setting reads as NULL with missing_ok, and as '' once set and rolled back: both mean "none".
CREATE OR REPLACE FUNCTION auth.uid() RETURNS uuid
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(
        nullif(current_setting('request.jwt.claim.sub', true), ''),
        nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'
    )::uuid
$$;

CREATE OR REPLACE FUNCTION auth.role() RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(
        nullif(current_setting('request.jwt.claim.role', true), ''),
        nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role'
    )::text
$$;

CREATE OR REPLACE FUNCTION auth.jwt() RETURNS jsonb
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(
        nullif(current_setting('request.jwt.claim', true), ''),
        nullif(current_setting('request.jwt.claims', true), '')
    )::jsonb
$$;

-- Policies run as the querying role, so the API roles must reach the helpers; the users table
-- itself stays closed to them (Supabase exposes it only through its auth service).
GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION auth.uid(), auth.role(), auth.jwt() TO anon, authenticated, service_role;
REVOKE ALL ON auth.users FROM anon, authenticated, service_role;

-- The owner's schema may reference auth.users (foreign keys, triggers creating profiles).
DO $owner_auth$
DECLARE
    owner_name name;
BEGIN
    SELECT pg_catalog.pg_get_userbyid(d.datdba) INTO owner_name
    FROM pg_catalog.pg_database d
    WHERE d.datname = pg_catalog.current_database();
    EXECUTE format('GRANT USAGE ON SCHEMA auth TO %I', owner_name);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE, REFERENCES, TRIGGER ON auth.users TO %I', owner_name);
    EXECUTE format('GRANT USAGE ON SCHEMA extensions TO %I', owner_name);
END
$owner_auth$;

-- public: reachable by the API roles, and everything created there later granted to them ----

GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;

DO $defaults$
DECLARE
    owner_name name;
    creator name;
BEGIN
    SELECT pg_catalog.pg_get_userbyid(d.datdba) INTO owner_name
    FROM pg_catalog.pg_database d
    WHERE d.datname = pg_catalog.current_database();

    FOR creator IN SELECT DISTINCT c FROM unnest(ARRAY[owner_name, current_user::name]) AS c LOOP
        EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA public '
                       'GRANT ALL ON TABLES TO anon, authenticated, service_role', creator);
        EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA public '
                       'GRANT ALL ON SEQUENCES TO anon, authenticated, service_role', creator);
        EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA public '
                       'GRANT EXECUTE ON FUNCTIONS TO anon, authenticated, service_role', creator);
    END LOOP;

    -- The database's own search path; the name is not known to this file.
    EXECUTE format('ALTER DATABASE %I SET search_path = "$user", public, extensions',
                   pg_catalog.current_database());
END
$defaults$;
