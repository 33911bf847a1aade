-- Row hashes and chains: every row is hashed and chained on insert, in commit
-- order, with no hole for rolled-back work; verify() and digests.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql

-- whatever is recorded so far is chained and intact (in the full schedule,
-- every earlier file's rows, by every path they took)
SELECT count(*) AS problems FROM tool_audit.verify();

-- a chain per table and tenant: the rows of one session follow each other
BEGIN;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
  VALUES ('chain_a1', 'chain_t1', true), ('chain_a2', 'chain_t1', true);
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('chain_b1', 'chain_t2', true);
SAVEPOINT s;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('chain_gone', 'chain_t1', true);
ROLLBACK TO SAVEPOINT s;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('chain_a3', 'chain_t1', true);
COMMIT;
BEGIN;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('chain_gone2', 'chain_t1', true);
ROLLBACK;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('chain_a4', 'chain_t1', true);
SELECT * FROM tool_audit.log_call('chain_a5', '{}', '{}', 1, '{"tenant_id": "chain_t1"}') \gset
INSERT INTO tool_audit.admin_events (event_type, actor, tenant_id) VALUES ('policy.edit', 'chain_admin', 'chain_t1');

SELECT tool_name, chain_lane, chain_seq - min(chain_seq) OVER () + 1 AS pos,
       octet_length(row_hash) AS row_hash_len, octet_length(chain_hash) AS link_len
  FROM tool_audit.tool_calls WHERE tenant_id = 'chain_t1' ORDER BY chain_seq;
-- positions have no gap, whatever was rolled back
SELECT count(*) AS rows, max(chain_seq) - min(chain_seq) + 1 AS span
  FROM tool_audit.tool_calls WHERE tenant_id = 'chain_t1';
-- one chain per (table, tenant), derived from the two
SELECT count(DISTINCT chain_id) AS chains_t1 FROM tool_audit.tool_calls WHERE tenant_id = 'chain_t1';
SELECT (SELECT chain_id FROM tool_audit.tool_calls WHERE tenant_id = 'chain_t1' LIMIT 1)
    <> (SELECT chain_id FROM tool_audit.tool_calls WHERE tenant_id = 'chain_t2' LIMIT 1) AS tenants_apart,
       (SELECT chain_id FROM tool_audit.tool_calls WHERE tenant_id = 'chain_t1' LIMIT 1)
    <> (SELECT chain_id FROM tool_audit.admin_events WHERE tenant_id = 'chain_t1' LIMIT 1) AS tables_apart;
-- the chain id and every link, recomputed in plain SQL from the spec (the
-- row's retention policy, "general", is part of its chain: derivation 2)
SELECT chain_id = ('x' || left(encode(sha256('tool_audit chain 2'::bytea || '\x000a'::bytea ||
                   'tool_calls'::bytea || '\x07'::bytea || 'general'::bytea ||
                   '\x01'::bytea || 'chain_t1'::bytea), 'hex'), 16))::bit(64)::bigint
       AS chain_id_per_spec
  FROM tool_audit.tool_calls WHERE tool_name = 'chain_a1';
SELECT count(*) AS links, count(*) FILTER (WHERE t.chain_hash = sha256('tool_audit link 1'::bytea || '\x00'::bytea ||
           int8send(t.chain_id) || int4send(t.chain_lane) || int8send(t.chain_seq) ||
           coalesce(p.chain_hash, '\x'::bytea || decode(repeat('00', 32), 'hex')) || t.row_hash)) AS links_per_spec
  FROM tool_audit.tool_calls t
  LEFT JOIN tool_audit.tool_calls p
    ON p.chain_id = t.chain_id AND p.chain_lane = t.chain_lane AND p.chain_seq = t.chain_seq - 1
 WHERE t.tenant_id LIKE 'chain_t_';

-- a row that will not be stored takes no position: a repeated event_id,
-- skipped by ON CONFLICT DO NOTHING (also twice in one statement) or refused
INSERT INTO tool_audit.tool_calls (event_id, tool_name, tenant_id, success)
  VALUES ('00000000-0000-4000-8000-0000000000c1', 'chain_e1', 'chain_t3', true);
INSERT INTO tool_audit.tool_calls (event_id, tool_name, tenant_id, success)
  VALUES ('00000000-0000-4000-8000-0000000000c1', 'chain_e1_again', 'chain_t3', true)
  ON CONFLICT (event_id) DO NOTHING;
INSERT INTO tool_audit.tool_calls (event_id, tool_name, tenant_id, success)
  VALUES ('00000000-0000-4000-8000-0000000000c2', 'chain_e2', 'chain_t3', true),
         ('00000000-0000-4000-8000-0000000000c1', 'chain_e1_again', 'chain_t3', true),
         ('00000000-0000-4000-8000-0000000000c2', 'chain_e2_again', 'chain_t3', true),
         ('00000000-0000-4000-8000-0000000000c3', 'chain_e3', 'chain_t3', true)
  ON CONFLICT DO NOTHING;
INSERT INTO tool_audit.tool_calls (event_id, tool_name, tenant_id, success)
  VALUES ('00000000-0000-4000-8000-0000000000c3', 'chain_e3_again', 'chain_t3', true);
SELECT * FROM tool_audit.log_call('chain_e3_again', '{}', '{}', 1,
  '{"tenant_id": "chain_t3", "event_id": "00000000-0000-4000-8000-0000000000c3"}');
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('chain_e4', 'chain_t3', true);
SELECT tool_name, chain_seq FROM tool_audit.tool_calls WHERE tenant_id = 'chain_t3' ORDER BY chain_seq;

-- a subtransaction rolled back between the rows of one INSERT (an exception
-- block in a function the INSERT calls): the rows after it continue the lane
CREATE FUNCTION regress_undo(i int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    IF i % 2 = 0 THEN
        BEGIN
            INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('chain_undone', 'chain_t4', true);
            RAISE EXCEPTION 'undo';
        EXCEPTION WHEN raise_exception THEN NULL;
        END;
    END IF;
    RETURN i;
END $$;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, turn_number, success) VALUES ('chain_pre', 'chain_t4', 0, true);
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, turn_number, success)
  SELECT 'chain_sub', 'chain_t4', regress_undo(g), true FROM generate_series(1, 4) g;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, turn_number, success)
  SELECT 'chain_sub_nothing', 'chain_t4', regress_undo(g), true FROM generate_series(1, 4) g
  ON CONFLICT DO NOTHING;
SELECT tool_name, turn_number, chain_seq FROM tool_audit.tool_calls WHERE tenant_id = 'chain_t4' ORDER BY chain_seq;
DROP FUNCTION regress_undo(int);

-- rows that bring their event_id hold one event_id lock at a time, statement
-- after statement (the locks belong to the transaction, not to a portal)
BEGIN;
INSERT INTO tool_audit.tool_calls (tool_name, event_id, tenant_id, success) VALUES ('chain_ev1', gen_random_uuid(), 'chain_t7', true);
INSERT INTO tool_audit.tool_calls (tool_name, event_id, tenant_id, success) VALUES ('chain_ev2', gen_random_uuid(), 'chain_t7', true);
INSERT INTO tool_audit.tool_calls (tool_name, event_id, tenant_id, success) VALUES ('chain_ev3', gen_random_uuid(), 'chain_t7', true);
SELECT count(*) AS event_id_locks FROM pg_locks
 WHERE pid = pg_backend_pid() AND locktype = 'advisory' AND objsubid = 21573;
COMMIT;

-- a cursor whose portal fails and is closed, with the session's advisory
-- locks dropped: the lane stays the transaction's, and savepoints still
-- roll back to where they started
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('chain_seed', 'chain_t8', true);
BEGIN;
DECLARE c CURSOR FOR
  SELECT (tool_audit.log_call('chain_cursor', jsonb_build_object('v', 1 / (2 - i)), '{}', 1, '{"tenant_id": "chain_t8"}')).id
    FROM generate_series(1, 2) i;
SAVEPOINT a;
FETCH 1 FROM c \gset
SAVEPOINT b;
FETCH 1 FROM c;
ROLLBACK TO b;
CLOSE c;
SELECT pg_advisory_unlock_all();
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('chain_x', 'chain_t8', true);
ROLLBACK TO a;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('chain_y', 'chain_t8', true);
COMMIT;
SELECT tool_name, chain_seq FROM tool_audit.tool_calls WHERE tenant_id = 'chain_t8' ORDER BY chain_seq;

-- a new chain position index (REINDEX CONCURRENTLY gives it a new oid)
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('chain_before_reindex', 'chain_t5', true);
REINDEX INDEX CONCURRENTLY tool_audit.tool_calls_chain_position;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('chain_after_reindex', 'chain_t6', true);
SELECT tool_name, chain_seq FROM tool_audit.tool_calls WHERE tenant_id IN ('chain_t5', 'chain_t6') ORDER BY 1;

-- a caller cannot choose the hash or the position
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success, row_hash, chain_id, chain_lane, chain_seq, chain_hash)
  VALUES ('chain_forged', 'chain_t1', true, '\x00', 1, 7, 1000, '\x00');
SELECT octet_length(row_hash) AS row_hash_len, chain_lane, chain_seq = (SELECT max(chain_seq) FROM tool_audit.tool_calls WHERE tenant_id = 'chain_t1') AS is_head,
       chain_id = (SELECT chain_id FROM tool_audit.tool_calls WHERE tool_name = 'chain_a1') AS same_chain
  FROM tool_audit.tool_calls WHERE tool_name = 'chain_forged';

-- the row hash depends on the values only, not on session settings
SET TimeZone = 'Pacific/Chatham';
SET DateStyle = 'SQL, DMY';
SET extra_float_digits = -3;
SELECT count(*) AS problems FROM tool_audit.verify();
RESET TimeZone;
RESET DateStyle;
RESET extra_float_digits;

-- canonical JSON (doc/canonical-encoding.md section 3)
SELECT tool_audit.canonical_json('{"b": [1.50, "x\ny"], "a": {"é": null, "Z": true}}');
SELECT tool_audit.canonical_json('[1e3, -0.0, 0.00012300, -12.0, 1E-7, 123456789012345678901234567890.000100]');
SELECT tool_audit.canonical_json('{"aa": 1, "b": 2, "a": 3, "": 4, "_": 5, "Z": 6}');
SELECT tool_audit.canonical_json(E'"tab\\t quote\\" backslash\\\\ slash/ ctl\\u0001 del\\u007f"');
SELECT tool_audit.canonical_json('"x"'), tool_audit.canonical_json('null'), tool_audit.canonical_json('{}'),
       tool_audit.canonical_json('[]'), tool_audit.canonical_json('[{}, [], [[true, false]]]');
-- every vector of test/vectors/json.tsv
\getenv abs_srcdir PG_ABS_SRCDIR
\set json_vectors :abs_srcdir '/vectors/json.tsv'
CREATE TEMP TABLE json_lines (line text);
-- one column per line: the vectors' backslashes must reach jsonb untouched
COPY json_lines FROM :'json_vectors' WITH (FORMAT csv, DELIMITER E'\x02', QUOTE E'\x01');
CREATE TEMP VIEW json_vectors AS
  SELECT split_part(line, E'\t', 1) AS input, split_part(line, E'\t', 2) AS canonical
    FROM json_lines WHERE line NOT LIKE '#%' AND line <> '';
SELECT count(*) > 10 AS enough_vectors FROM json_vectors;
SELECT input, canonical, tool_audit.canonical_json(input::jsonb) AS got
  FROM json_vectors WHERE tool_audit.canonical_json(input::jsonb) IS DISTINCT FROM canonical;

-- every text of test/vectors/json_invalid.tsv is refused by jsonb, as by the
-- verifier (form hex: bytes that may not even be UTF-8; deep: N nested arrays)
\set json_invalid :abs_srcdir '/vectors/json_invalid.tsv'
CREATE TEMP TABLE json_invalid_lines (line text);
COPY json_invalid_lines FROM :'json_invalid' WITH (FORMAT csv, DELIMITER E'\x02', QUOTE E'\x01');
CREATE FUNCTION pg_temp.jsonb_refusal(form text, input text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    IF form = 'text' THEN
        PERFORM input::jsonb;
    ELSIF form = 'hex' THEN
        PERFORM convert_from(decode(input, 'hex'), 'UTF8')::jsonb;
    ELSIF form = 'deep' THEN
        PERFORM (repeat('[', input::int) || repeat(']', input::int))::jsonb;
    ELSE
        RETURN 'unknown form';
    END IF;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    RETURN SQLERRM;
END $$;
CREATE TEMP VIEW json_invalid AS
  SELECT split_part(line, E'\t', 1) AS form, split_part(line, E'\t', 2) AS input,
         split_part(line, E'\t', 3) AS why
    FROM json_invalid_lines WHERE line NOT LIKE '#%' AND line <> '';
SELECT count(*) > 50 AS enough_invalid FROM json_invalid;
SELECT form, input, why FROM json_invalid WHERE pg_temp.jsonb_refusal(form, input) IS NULL;
-- how jsonb refuses them
SELECT regexp_replace(pg_temp.jsonb_refusal(form, input), ': 0x.*', '') AS refusal, count(*)
  FROM json_invalid GROUP BY 1 ORDER BY 1;

-- verify(): nothing wrong; verify(since) checks the rows since then
SELECT * FROM tool_audit.verify();
SELECT * FROM tool_audit.verify(now() - interval '1 hour');
SELECT * FROM tool_audit.verify('infinity');

-- digest(): the head of every lane, unsigned without a key (signed when the
-- server has tool_audit.signing_key_file, as the docs tell users to set it:
-- `make installcheck` then runs this file against such a server)
SELECT tool_audit.digest() AS d \gset
SELECT tool_audit.signing_public_key() IS NOT NULL AS signing_key \gset
SELECT d->>'format' AS format,
       CASE WHEN :'signing_key'::boolean THEN d->>'key_id' ~ '^[0-9a-f]{16}$' ELSE d->'key_id' = 'null' END AS key_id_ok,
       CASE WHEN :'signing_key'::boolean THEN d->>'signature' ~ '^[0-9a-f]{128}$' ELSE d->'signature' = 'null' END AS signature_ok,
       d->>'database' = current_database() AS database_ok,
       (d->>'taken_at') ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$' AS taken_at_utc,
       d->>'system_identifier' = (SELECT system_identifier::text FROM pg_control_system()) AS system_ok
  FROM (SELECT :'d'::jsonb AS d) x;
SELECT h->>'table' AS table_name, h->>'tenant' AS tenant, (h->>'lane')::int AS lane,
       (h->>'position')::bigint = (SELECT max(chain_seq) FROM (SELECT chain_id, chain_lane, chain_seq FROM tool_audit.tool_calls
                                                                UNION ALL
                                                                SELECT chain_id, chain_lane, chain_seq FROM tool_audit.admin_events) t
                                    WHERE t.chain_id = (h->>'chain')::bigint AND t.chain_lane = (h->>'lane')::int) AS position_is_head,
       length(h->>'hash') AS hash_hex_len
  FROM jsonb_array_elements(:'d'::jsonb->'heads') h
 WHERE h->>'tenant' LIKE 'chain_%' ORDER BY 1, 2, 3;
SELECT jsonb_array_length(:'d'::jsonb->'heads') =
       (SELECT count(*) FROM (SELECT DISTINCT chain_id, chain_lane FROM tool_audit.tool_calls
                              UNION ALL SELECT DISTINCT chain_id, chain_lane FROM tool_audit.admin_events) s) AS every_lane;

-- verify_digest(): the same state, then rows added since, are fine
SELECT * FROM tool_audit.verify_digest(:'d');
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('chain_after_digest', 'chain_t1', true);
SELECT * FROM tool_audit.verify_digest(:'d');

-- a digest that covers more than is there: rows removed, an older backup
SELECT table_name, chain IS NOT NULL AS has_chain, problem
  FROM tool_audit.verify_digest(jsonb_set(:'d', '{heads}',
       (SELECT jsonb_agg(CASE WHEN h->>'tenant' = 'chain_t2'
                              THEN jsonb_set(h, '{position}', to_jsonb((h->>'position')::bigint + 5)) ELSE h END)
          FROM jsonb_array_elements(:'d'::jsonb->'heads') h)))
 WHERE NOT (:'signing_key'::boolean AND problem = 'digest signature invalid');
-- a digest whose head hash differs: rows rewritten since
SELECT table_name, problem
  FROM tool_audit.verify_digest(jsonb_set(:'d', '{heads}',
       (SELECT jsonb_agg(CASE WHEN h->>'tenant' = 'chain_t2'
                              THEN jsonb_set(h, '{hash}', to_jsonb(repeat('0', 64))) ELSE h END)
          FROM jsonb_array_elements(:'d'::jsonb->'heads') h)))
 WHERE NOT (:'signing_key'::boolean AND problem = 'digest signature invalid');
-- a lane the digest knew is gone entirely
SELECT table_name, "position", problem
  FROM tool_audit.verify_digest(jsonb_set(:'d', '{heads}', (:'d'::jsonb->'heads') ||
       jsonb_build_array(jsonb_build_object('chain', '42', 'table', 'tool_calls', 'tenant', 'gone',
                                            'lane', 3, 'position', 7, 'hash', repeat('ab', 32)))))
 WHERE NOT (:'signing_key'::boolean AND problem = 'digest signature invalid');
-- a signature with no key configured cannot be checked (with one, it is invalid)
SELECT problem = CASE WHEN :'signing_key'::boolean THEN 'digest signature invalid'
                      ELSE 'digest signature not checked: tool_audit.signing_key_file is not set' END AS expected_problem
  FROM tool_audit.verify_digest(jsonb_set(:'d', '{signature}', to_jsonb(repeat('00', 64))));

-- bad digests are errors, not problems
\set VERBOSITY default
SELECT * FROM tool_audit.verify_digest('[]');
SELECT * FROM tool_audit.verify_digest('["format", "heads", "tool_audit digest 1"]');
SELECT * FROM tool_audit.verify_digest('"tool_audit digest 1"');
SELECT * FROM tool_audit.verify_digest('{"format": "something else", "heads": []}');
SELECT * FROM tool_audit.verify_digest('{"format": "tool_audit digest 1"}');
SELECT * FROM tool_audit.verify_digest('{"format": "tool_audit digest 1", "heads": [1]}');
SELECT * FROM tool_audit.verify_digest('{"format": "tool_audit digest 1", "heads": [{"chain": "x", "table": "tool_calls", "lane": 0, "position": 1, "hash": ""}]}');
SELECT * FROM tool_audit.verify_digest('{"format": "tool_audit digest 1", "heads": [{"chain": "1", "table": "pg_class", "lane": 0, "position": 1, "hash": ""}]}');
SELECT * FROM tool_audit.verify_digest('{"format": "tool_audit digest 1", "heads": [{"chain": "1", "table": "tool_calls", "lane": -1, "position": 1, "hash": ""}]}');
SELECT * FROM tool_audit.verify_digest('{"format": "tool_audit digest 1", "heads": [{"chain": "1", "table": "tool_calls", "lane": 0, "position": 0, "hash": ""}]}');
SELECT * FROM tool_audit.verify_digest('{"format": "tool_audit digest 1", "heads": [{"chain": "1", "table": "tool_calls", "lane": 0, "position": 1, "hash": "XYZ"}]}');
SELECT * FROM tool_audit.verify_digest('{"format": "tool_audit digest 1", "heads": [{"chain": "1", "table": "tool_calls", "lane": 0, "position": 1.5, "hash": ""}]}');
\set VERBOSITY terse
-- all with SQLSTATE 22023
SELECT regress_try($$SELECT * FROM tool_audit.verify_digest('[]')$$);
SELECT regress_try($$SELECT * FROM tool_audit.verify_digest('{"format": "tool_audit digest 1", "heads": [{"chain": "1", "table": "tool_calls", "lane": 0, "position": 1.5, "hash": ""}]}')$$);
SELECT * FROM tool_audit.verify_digest(NULL);
SELECT (tool_audit.signing_public_key() IS NULL) = (current_setting('tool_audit.signing_key_file') = '') AS key_as_configured;

-- who may verify: the verifier and admin roles, not writers or readers
SET ROLE regress_writer;
SELECT regress_try('SELECT count(*) FROM tool_audit.verify()');
SELECT regress_try('SELECT tool_audit.digest()');
RESET ROLE;
SET ROLE regress_reader;
SELECT regress_try('SELECT count(*) FROM tool_audit.verify()');
RESET ROLE;
CREATE ROLE regress_verifier IN ROLE tool_audit_verifier;
SET ROLE regress_verifier;
SELECT count(*) AS problems FROM tool_audit.verify();
SELECT count(*) > 0 AS sees_every_tenant FROM tool_audit.tool_calls WHERE tenant_id = 'chain_t2';
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (tool_name, success) VALUES ('x', true)$$);
RESET ROLE;
SET ROLE regress_admin;
SELECT count(*) AS problems FROM tool_audit.verify();
RESET ROLE;
DROP ROLE regress_verifier;
-- a chain index made invalid through the catalog (DROP INDEX is refused by
-- the DDL guard): verify() says so in a row, checks the other table, and
-- does not stop with an error
BEGIN;
UPDATE pg_index SET indisvalid = false
 WHERE indexrelid = 'tool_audit.admin_events_chain_position'::regclass;
SELECT table_name, problem FROM tool_audit.verify() ORDER BY 1, 2;
ROLLBACK;
SELECT count(*) AS problems FROM tool_audit.verify();
-- an id sequence moved with setval (not transactional: put back by hand)
-- stops recording; verify() and verify_protections() say so, also to the
-- verifier, which has no privilege on the sequence
SELECT setval('tool_audit.tool_calls_id_seq', 1);
SELECT table_name, regexp_replace(problem, 'id \d+', 'id N') FROM tool_audit.verify_protections();
SELECT setval('tool_audit.admin_events_id_seq', 9223372036854775807);
SET ROLE regress_admin;
SELECT table_name, regexp_replace(problem, 'id \d+', 'id N') FROM tool_audit.verify() WHERE row_id IS NULL ORDER BY 1, 2;
RESET ROLE;
SELECT setval('tool_audit.tool_calls_id_seq', (SELECT max(id) FROM tool_audit.tool_calls WHERE id < 900000)) > 0 AS reset;
SELECT setval('tool_audit.admin_events_id_seq', (SELECT max(id) FROM tool_audit.admin_events)) > 0 AS reset;
SELECT count(*) AS problems FROM tool_audit.verify();
