-- The whole history in one row of JSON arrays, for the Management API's SQL endpoint. Each
-- __...__ marker is one of the endpoint_*.sql subqueries when its table exists (the caller
-- asked history_tables.sql first), else endpoint_absent.sql: reading creates nothing.
SELECT __MIGRATIONS__ AS migrations, __CHECKSUMS__ AS checksums, __LEGACY__ AS legacy
