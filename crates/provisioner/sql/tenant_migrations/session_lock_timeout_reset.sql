-- Back to the database's own lock timeout after a statement outside a transaction.
RESET lock_timeout
