-- Our checksum of every applied migration file.
SELECT version, checksum FROM provisioner.migration_checksums
