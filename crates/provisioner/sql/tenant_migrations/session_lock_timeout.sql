-- A statement outside a transaction waiting this long for a lock is stuck: fail, not hang.
SET lock_timeout = '30s'
