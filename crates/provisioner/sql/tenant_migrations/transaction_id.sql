-- The current transaction's id: read before and after the script, a change means the script
-- ended the transaction it was given.
SELECT pg_catalog.txid_current()
