-- What a history table that does not exist holds.
'[]'::jsonb
