INSERT INTO saga_events (run_id, seq, at, kind, body)
SELECT $1, e.seq, $2, e.kind, e.body
FROM UNNEST($3::bigint[], $4::text[], $5::text[]) AS e (seq, kind, body)
