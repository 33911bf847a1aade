-- tool_audit.sanitize(jsonb): key rules at any depth, inside arrays too.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql

-- the seed's sensitive keys, and their common spellings
SELECT tool_audit.sanitize('{"password": "hunter2", "token": "t", "api_key": "k", "secret": "s",
  "credit_card": "4000", "authorization": "Basic x", "user": "bob"}');
SELECT tool_audit.sanitize('{"apiKey": 1, "x-api-key": 2, "API_KEY": 3, "access_token": 4,
  "refreshToken": 5, "Authorization": 6, "client_secret": 7, "db_password": 8,
  "passwordHash": 9, "Set-Cookie": 10, "cvv": 11, "private_key": 12, "PWD": 13}');
-- innocent keys stay
SELECT tool_audit.sanitize('{"max_tokens": 100, "token_count": 3, "className": "x", "author": "y",
  "status": "shipped", "tokenizer": "bpe"}');

-- any depth, arrays, arrays of arrays
SELECT tool_audit.sanitize('{"a": {"b": {"c": {"password": "deep"}}}}');
SELECT tool_audit.sanitize('{"users": [{"name": "a", "password": "p1"}, {"name": "b", "password": "p2"}]}');
SELECT tool_audit.sanitize('[[{"token": "x"}], [[{"secret": "y", "ok": true}]]]');
-- a sensitive key's whole value goes, container or not
SELECT tool_audit.sanitize('{"credentials": {"password": "p"}, "secret": {"nested": [1, 2]}, "token": [1, 2]}');
SELECT tool_audit.sanitize('{"password": null, "token": false, "secret": 0}');

-- scalars, empty containers, non-object documents
SELECT tool_audit.sanitize('{}'), tool_audit.sanitize('[]'), tool_audit.sanitize('"plain"'),
       tool_audit.sanitize('42'), tool_audit.sanitize('null'), tool_audit.sanitize('true');
SELECT tool_audit.sanitize('"my token is Bearer abcdefghijklmnop"');
SELECT tool_audit.sanitize(NULL) IS NULL AS null_in_null_out;

-- a number holding a card number becomes a marker string
SELECT tool_audit.sanitize('{"n": 4111111111111111, "m": 4111111111111112, "price": 12.50}');

-- unicode keys and values pass through
SELECT tool_audit.sanitize('{"naïve": "café ☕", "пароль": "x", "motDePasse": "x", "Password": "é"}');

-- idempotent: sanitizing a sanitized document changes nothing
WITH d(doc) AS (VALUES ('{"password": "x", "ssn": "078-05-1120", "note": "SSN 078-05-1120, card 4111111111111111",
                         "address": {"street": "1 Main", "zip": 12345}}'::jsonb))
SELECT tool_audit.sanitize(tool_audit.sanitize(doc)) = tool_audit.sanitize(doc) AS idempotent,
       tool_audit.sanitize(doc) <> doc AS changed
  FROM d;
-- a document with nothing to remove comes back equal
SELECT tool_audit.sanitize('{"order_id": "ORD-1", "items": [1, 2, {"sku": "A"}]}')
     = '{"order_id": "ORD-1", "items": [1, 2, {"sku": "A"}]}' AS unchanged;

-- keys carry data too: value rules apply to keys; inside a personal-data
-- object, keys that are not field names are pseudonymized
SELECT tool_audit.sanitize('{"Bearer abcdefghijklmnop": 1, "078-05-1120": "x",
  "email": {"jane.doe@example.com": "primary", "verified": true}, "sk-abcdefghijklmnopqrstuvwx": {"a": 1}}');
-- a pseudonym-shaped string is left alone only if its key id exists
SELECT tool_audit.sanitize(jsonb_build_object(
  'note', 'hmac:078-05-1120:' || repeat('0', 32),
  'gh', 'hmac:ghp_abcdefghijklmnopqrstuvwxyz0123456789:' || repeat('a', 32),
  'ssn', 'hmac:nosuchkey:' || repeat('b', 32)));
-- keys rewritten to the same text keep both values
SELECT tool_audit.sanitize('{"078-05-1120": "a", "078 05 1120": "b", "Bearer abcdefghijklmnop": 1, "Bearer qrstuvwxyzabcdef": 2}');

-- key rule verdicts are remembered per backend: a document with more keys
-- than the memo holds, sanitized twice, gets the same verdicts both times
-- (every 50th key a token; long keys, which are never remembered, with a
-- password): 8 + 3 redacted
SELECT count(*) AS keys,
       count(*) FILTER (WHERE value = '"***REDACTED***"') AS redacted,
       count(*) FILTER (WHERE value = '"***REDACTED***"' AND key NOT LIKE '%token' AND key NOT LIKE '%password') AS wrongly_redacted
  FROM jsonb_each(tool_audit.sanitize((SELECT jsonb_object_agg(
           CASE WHEN i % 50 = 0 THEN 'k' || i || '_token'
                WHEN i % 75 = 0 THEN repeat('x', 45) || i || '_password'
                ELSE 'k' || i END, i)
         FROM generate_series(1, 400) i))) \g
\g
-- keys at the memo's length limit (40 bytes, remembered) and one past it
-- (41, never remembered) get the same verdicts, every time
SELECT length(k) AS key_bytes, tool_audit.sanitize(jsonb_build_object(k, 'v'))->>k AS first,
       tool_audit.sanitize(jsonb_build_object(k, 'v'))->>k AS second
  FROM (VALUES (repeat('a', 35) || 'token'), (repeat('a', 36) || 'token'),
               (repeat('a', 40)), (repeat('a', 41))) AS t(k);
