-- Our checksum of the migration file just recorded. $1 version, $2 checksum.
INSERT INTO provisioner.migration_checksums (version, checksum) VALUES ($1, $2)
