-- Every event of one append in one statement: ?4 is a JSON array of event bodies, in order.
INSERT INTO saga_events (run_id, seq, at, kind, body)
SELECT ?1, ?2 + e.key, ?3, json_extract(e.value, '$.type'), e.value
FROM json_each(?4) AS e
