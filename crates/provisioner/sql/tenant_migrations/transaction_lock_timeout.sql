-- A schema waiting this long for a lock is stuck behind something else: fail rather than hang.
SET LOCAL lock_timeout = '30s'
