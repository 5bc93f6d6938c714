-- Where a tenant database records which schema it was given: a schema the API roles cannot
-- reach, created with the first apply and kept from then on.
CREATE SCHEMA IF NOT EXISTS provisioner;
REVOKE ALL ON SCHEMA provisioner FROM PUBLIC;
CREATE TABLE IF NOT EXISTS provisioner.schema_versions (
    checksum   text        PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON provisioner.schema_versions FROM PUBLIC;
