-- Keyed pseudonyms (HMAC-SHA256): linkable, not reversible without the key.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql

SELECT tool_audit.pseudonymize('078-05-1120');
-- the same value links wherever it appears: a PII key, free text, pseudonymize()
SELECT (tool_audit.sanitize('{"ssn": "078-05-1120"}')->>'ssn') = tool_audit.pseudonymize('078-05-1120') AS key_links,
       tool_audit.sanitize_text('SSN 078-05-1120') = 'SSN ' || tool_audit.pseudonymize('078-05-1120') AS text_links;
-- normalized: case and surrounding white space do not matter
SELECT tool_audit.pseudonymize(' Jane@Example.COM ') = tool_audit.pseudonymize('jane@example.com') AS normalized;
SELECT tool_audit.pseudonymize('078-05-1120') <> tool_audit.pseudonymize('078-05-1121') AS distinct_values;
-- format, and not the bare SHA-256 the seed used
SELECT tool_audit.pseudonymize('078-05-1120') ~ '^hmac:test:[0-9a-f]{32}$' AS well_formed,
       substr(tool_audit.pseudonymize('078-05-1120'), 11) <> left(encode(sha256('078-05-1120'), 'hex'), 32) AS not_unkeyed;
-- the HMAC itself, against pgcrypto's: the first 16 bytes of HMAC-SHA256 under
-- the test key, of the normalized value (lower case; digits only), three in a
-- row through the same backend's context
BEGIN;
CREATE EXTENSION pgcrypto;
SELECT v, tool_audit.pseudonymize(v) = 'hmac:test:' ||
          encode(substr(hmac(convert_to(n, 'UTF8'), decode(repeat('ab', 32), 'hex'), 'sha256'), 1, 16), 'hex') AS matches_pgcrypto
  FROM (VALUES ('Jane@Example.com', 'jane@example.com'), ('078-05-1120', '078051120'),
               ('x', 'x')) AS t(v, n);
ROLLBACK;

-- the built-in personal-data keys, and a whole container under one
SELECT tool_audit.sanitize('{"patient_name": "Jane Roe", "date_of_birth": "1980-02-03", "phone": "+1 555 0100",
  "email": "jane@example.com", "address": {"street": "1 Main", "zip": 12345, "verified": true, "unit": null},
  "patient_id": "P-001"}');
-- a pseudonym is never pseudonymized again
SELECT tool_audit.sanitize(jsonb_build_object('ssn', tool_audit.pseudonymize('078-05-1120')))
     = jsonb_build_object('ssn', tool_audit.pseudonymize('078-05-1120')) AS idempotent;

-- rotation: new pseudonyms use the new key; rolled back, the old key is back
BEGIN;
SELECT tool_audit.rotate_pseudonym_key('test2', decode(repeat('cd', 32), 'hex'));
SELECT tool_audit.pseudonymize('078-05-1120');
SELECT key_id, active FROM tool_audit.pseudonym_key_ids WHERE key_id LIKE 'test%' ORDER BY key_id;
ROLLBACK;
SELECT tool_audit.pseudonymize('078-05-1120');
-- a key id made by rotation without one given: k + the UTC time
BEGIN;
SELECT tool_audit.rotate_pseudonym_key() ~ '^k[0-9]{20}$' AS generated_id;
ROLLBACK;

-- bad keys
SELECT regress_try($$SELECT tool_audit.rotate_pseudonym_key('short', '\x0102')$$);
SELECT regress_try($$SELECT tool_audit.rotate_pseudonym_key('bad id!', tool_audit.random_key())$$);
SELECT regress_try($$SELECT tool_audit.random_key(16)$$);
SELECT length(tool_audit.random_key()) AS default_length, length(tool_audit.random_key(64)) AS max_length,
       tool_audit.random_key() <> tool_audit.random_key() AS random;

-- no active key: a clear error for personal data, nothing stored; redaction needs no key
BEGIN;
DELETE FROM tool_audit.pseudonym_keys;
SELECT regress_try($$SELECT tool_audit.sanitize('{"ssn": "078-05-1120"}')$$);
SELECT regress_try($$SELECT tool_audit.log_call('t', '{"ssn": "078-05-1120"}', '{}', 1, '{}')$$);
SELECT tool_audit.sanitize('{"password": "x"}');
ROLLBACK;
SELECT key_id, active FROM tool_audit.pseudonym_key_ids WHERE active;
