SELECT COUNT(*) FROM saga_migrations WHERE version = $1
