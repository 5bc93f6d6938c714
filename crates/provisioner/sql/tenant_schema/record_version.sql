-- $1: the checksum of the schema just applied.
INSERT INTO provisioner.schema_versions (checksum) VALUES ($1)
