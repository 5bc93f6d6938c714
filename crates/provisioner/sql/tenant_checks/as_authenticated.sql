-- Acts as a signed-in user of the Data API until the surrounding (sub)transaction ends: the
-- role, the user's JWT claims ($1, JSON text) and the search path the API sets for a request
-- to the table's schema ($2).
SELECT pg_catalog.set_config('role', 'authenticated', true),
       pg_catalog.set_config('request.jwt.claims', $1, true),
       pg_catalog.set_config('search_path', $2, true)
