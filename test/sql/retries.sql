-- Idempotent retries keyed on the model's call id, and the client's
-- started_at (1.5): log_call() called again for a stored call returns the
-- row stored first; a different call under a taken key, a retry by another
-- role and a plain INSERT of a taken key are refused (23505).
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql
SELECT coalesce(max(id), 0) AS id0 FROM tool_audit.tool_calls \gset
-- the error with its detail
CREATE FUNCTION pg_temp.try_detail(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    detail text;
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
    RETURN SQLSTATE || ': ' || SQLERRM || ' (' || detail || ')';
END $$;

-- ---- a retry returns the stored row ----
SELECT id AS first_id, event_id AS first_event, row_hash AS first_hash, recorded_at AS first_at
  FROM tool_audit.log_call('get_order', '{"order_id": "ORD-1"}', '{"status": "shipped"}', 12.5,
         '{"tenant_id": "rt_acme", "conversation_id": "conv_r", "tool_call_id": "toolu_01ABC",
           "user_id": "usr_1", "locale": "en"}') \gset
SELECT id = :first_id AS same_id, event_id = :'first_event' AS same_event_id,
       row_hash = :'first_hash' AS same_hash, recorded_at = :'first_at' AS same_time
  FROM tool_audit.log_call('get_order', '{"order_id": "ORD-1"}', '{"status": "shipped"}', 12.5,
         '{"tenant_id": "rt_acme", "conversation_id": "conv_r", "tool_call_id": "toolu_01ABC",
           "user_id": "usr_1", "locale": "en"}');
SELECT count(*) AS stored FROM tool_audit.tool_calls WHERE tool_call_id = 'toolu_01ABC';
-- in the same transaction as the first, too
BEGIN;
SELECT id AS tx_id FROM tool_audit.log_call('get_order', '{}', '{}', 1,
         '{"tenant_id": "rt_acme", "tool_call_id": "call_tx"}') \gset
SELECT id = :tx_id AS same_id FROM tool_audit.log_call('get_order', '{}', '{}', 1,
         '{"tenant_id": "rt_acme", "tool_call_id": "call_tx"}');
COMMIT;
SELECT count(*) AS stored FROM tool_audit.tool_calls WHERE tool_call_id = 'call_tx';

-- the key is tenant, conversation (NULL matches NULL only) and call id:
-- the same call id elsewhere is another call
SELECT id <> :first_id AS new_row FROM tool_audit.log_call('get_order', '{"order_id": "ORD-1"}', '{"status": "shipped"}', 12.5,
         '{"tenant_id": "rt_globex", "conversation_id": "conv_r", "tool_call_id": "toolu_01ABC", "user_id": "usr_1", "locale": "en"}');
SELECT id <> :first_id AS new_row FROM tool_audit.log_call('get_order', '{"order_id": "ORD-1"}', '{"status": "shipped"}', 12.5,
         '{"tenant_id": "rt_acme", "conversation_id": "conv_s", "tool_call_id": "toolu_01ABC", "user_id": "usr_1", "locale": "en"}');
SELECT id <> :first_id AS new_row FROM tool_audit.log_call('get_order', '{"order_id": "ORD-1"}', '{"status": "shipped"}', 12.5,
         '{"tenant_id": "rt_acme", "tool_call_id": "toolu_01ABC", "user_id": "usr_1", "locale": "en"}');
SELECT tenant_id, conversation_id, count(*) FROM tool_audit.tool_calls
 WHERE tool_call_id = 'toolu_01ABC' GROUP BY 1, 2 ORDER BY 1, 2;

-- ---- a different call under a taken key: refused, naming what differs ----
SELECT pg_temp.try_detail($$SELECT tool_audit.log_call('get_order', '{"order_id": "ORD-2"}', '{"status": "shipped"}', 12.5,
         '{"tenant_id": "rt_acme", "conversation_id": "conv_r", "tool_call_id": "toolu_01ABC", "user_id": "usr_1", "locale": "en"}')$$);
SELECT pg_temp.try_detail($$SELECT tool_audit.log_call('get_order', '{"order_id": "ORD-1"}', '{"status": "failed"}', 99,
         '{"tenant_id": "rt_acme", "conversation_id": "conv_r", "tool_call_id": "toolu_01ABC", "user_id": "usr_1"}')$$);
SELECT pg_temp.try_detail($$SELECT tool_audit.log_call('cancel_order', '{"order_id": "ORD-1"}', '{"status": "shipped"}', 12.5,
         '{"tenant_id": "rt_acme", "conversation_id": "conv_r", "tool_call_id": "toolu_01ABC", "user_id": "usr_1", "locale": "en"}')$$);
-- a retry bringing an event_id other than the stored row's is another event
SELECT pg_temp.try_detail($$SELECT tool_audit.log_call('get_order', '{"order_id": "ORD-1"}', '{"status": "shipped"}', 12.5,
         '{"tenant_id": "rt_acme", "conversation_id": "conv_r", "tool_call_id": "toolu_01ABC", "user_id": "usr_1", "locale": "en",
           "event_id": "00000000-0000-4000-8000-0000000000aa"}')$$);
-- the stored row's own event_id, brought back: the same call
SELECT id = :first_id AS same_id
  FROM tool_audit.log_call('get_order', '{"order_id": "ORD-1"}', '{"status": "shipped"}', 12.5,
         jsonb_build_object('tenant_id', 'rt_acme', 'conversation_id', 'conv_r', 'tool_call_id', 'toolu_01ABC',
                            'user_id', 'usr_1', 'locale', 'en', 'event_id', :'first_event'));
-- the error quotes no value
SELECT pg_temp.try_detail($$SELECT tool_audit.log_call('get_order', '{"password": "hunter2-secret"}', '{}', 1,
         '{"tenant_id": "rt_acme", "conversation_id": "conv_r", "tool_call_id": "toolu_01ABC"}')$$) !~ 'hunter2' AS no_value;

-- ---- another role: never handed a row it did not record ----
SET ROLE regress_writer;
SELECT pg_temp.try_detail($$SELECT tool_audit.log_call('get_order', '{"order_id": "ORD-1"}', '{"status": "shipped"}', 12.5,
         '{"tenant_id": "rt_acme", "conversation_id": "conv_r", "tool_call_id": "toolu_01ABC", "user_id": "usr_1", "locale": "en"}')$$);
-- its own retries work as anyone's
SELECT id AS w_id FROM tool_audit.log_call('get_order', '{}', '{}', 2, '{"tenant_id": "rt_acme", "tool_call_id": "call_w"}') \gset
SELECT id = :w_id AS same_id FROM tool_audit.log_call('get_order', '{}', '{}', 2, '{"tenant_id": "rt_acme", "tool_call_id": "call_w"}');
RESET ROLE;

-- ---- a plain INSERT of a taken key: 23505, also under ON CONFLICT DO NOTHING ----
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (tenant_id, conversation_id, tool_name, tool_call_id, success)
                     VALUES ('rt_acme', 'conv_r', 'get_order', 'toolu_01ABC', true)$$);
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (tenant_id, conversation_id, tool_name, tool_call_id, success)
                     VALUES ('rt_acme', 'conv_r', 'get_order', 'toolu_01ABC', true) ON CONFLICT DO NOTHING$$);
-- a row that brings the stored row's event_id is skipped by DO NOTHING, as before 1.5
INSERT INTO tool_audit.tool_calls (event_id, tenant_id, conversation_id, tool_name, tool_call_id, success)
VALUES (:'first_event', 'rt_acme', 'conv_r', 'get_order', 'toolu_01ABC', true) ON CONFLICT DO NOTHING;
SELECT regress_try(format($$INSERT INTO tool_audit.tool_calls (event_id, tenant_id, conversation_id, tool_name, tool_call_id, success)
                     VALUES (%L, 'rt_acme', 'conv_r', 'get_order', 'toolu_01ABC', true)$$, :'first_event'));
-- two rows of one INSERT with one key: the second is refused
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (tenant_id, tool_name, tool_call_id, success)
                     VALUES ('rt_acme', 'a', 'call_twice', true), ('rt_acme', 'a', 'call_twice', true)$$);
-- a plain INSERT of a new key is stored, and log_call() then returns it
INSERT INTO tool_audit.tool_calls (tenant_id, tool_name, tool_call_id, arguments, success, recorded_by)
VALUES ('rt_acme', 'get_order', 'call_plain', '{}', true, 'ignored') RETURNING id AS plain_id \gset
SELECT id = :plain_id AS same_id FROM tool_audit.log_call('get_order', '{}', '{"success": true}', NULL,
         '{"tenant_id": "rt_acme", "tool_call_id": "call_plain"}');

-- ---- begin/end halves share a call id: call_phase is part of the key ----
SELECT tool_audit.begin_call('slow_tool', '{}', '{"tenant_id": "rt_acme", "tool_call_id": "call_phase"}') AS phase_call \gset
SELECT (tool_audit.end_call(:'phase_call', '{"success": true}')).call_phase;
SELECT call_phase, count(*) FROM tool_audit.tool_calls
 WHERE tenant_id = 'rt_acme' AND tool_call_id = 'call_phase' GROUP BY 1 ORDER BY 1;

-- ---- without a call id: a retry that brings a stored event_id ----
SELECT id AS e_id FROM tool_audit.log_call('ping', '{}', '{}', 1,
         '{"tenant_id": "rt_acme", "event_id": "00000000-0000-4000-8000-0000000000e1"}') \gset
SELECT id = :e_id AS same_id FROM tool_audit.log_call('ping', '{}', '{}', 1,
         '{"tenant_id": "rt_acme", "event_id": "00000000-0000-4000-8000-0000000000e1"}');
-- another call with that event_id: the unique index refuses it, as before 1.5
SELECT regress_try($$SELECT tool_audit.log_call('pong', '{}', '{}', 1,
         '{"tenant_id": "rt_acme", "event_id": "00000000-0000-4000-8000-0000000000e1"}')$$);
-- without either, every call is a new row
SELECT count(DISTINCT id) AS rows FROM (SELECT (tool_audit.log_call('ping', '{}', '{}', 1, '{"tenant_id": "rt_acme"}')).id
                                          FROM generate_series(1, 2)) x;

-- ---- started_at: the client's time, in its own column, hashed ----
SELECT started_at = '2026-01-02 03:04:05.678+00' AS stored, session_metadata,
       row_hash = tool_audit.compute_row_hash(t) AS hash_covers_it
  FROM tool_audit.log_call('get_order', '{}', '{}', 1,
         '{"tenant_id": "rt_acme", "started_at": "2026-01-02T03:04:05.678Z", "locale": "en"}') t;
SELECT started_at = '2026-01-02 03:04:05+00' AS stored
  FROM tool_audit.log_call('get_order', '{}', '{}', 1, '{"started_at": "2026-01-02 05:04:05+02:00"}');
SELECT tool_audit.iso8601_utc(started_at) AS started_at
  FROM tool_audit.log_call('get_order', '{}', '{}', 1, '{"started_at": "2026-01-02T01:34:05.123456-0130"}');
SELECT started_at IS NULL AS absent FROM tool_audit.log_call('get_order', '{}', '{}', 1, '{"started_at": null}');
-- a row hash without started_at is what it was before 1.5 (NULL is not hashed)
SELECT count(*) AS rows_with_started_at FROM tool_audit.tool_calls WHERE started_at IS NOT NULL;
SELECT count(*) AS problems FROM tool_audit.verify();
-- not a time: 22007, a field out of range: 22008; never the value
SELECT regress_try(format($$SELECT tool_audit.log_call('t', '{}', '{}', 1, '{"started_at": %s}')$$, v))
  FROM unnest(ARRAY['"sk-live-0123456789abcdef"', '"2026-01-02T03:04:05"', '"2026-01-02"', '"yesterday"',
                    '"now"', '"2026-01-02T03:04:05+02:00:00"', '"2026-1-02T03:04:05Z"', '12345',
                    '"2026-01-02T03:04:05.1234567890Z"', '"2026-01-02T03:04:05 Europe/Paris"',
                    '"2026-13-02T03:04:05Z"', '"2026-02-29T03:04:05Z"', '"2026-01-02T24:00:00Z"',
                    '"2026-01-02T03:04:05+16:00"', '"0000-01-02T03:04:05Z"']) v;
SELECT regress_try($$SELECT tool_audit.log_call('t', '{}', '{}', 1, '{"started_at": {"at": 1}}')$$);
-- in the future of the server's time by more than five minutes: refused
SELECT regress_try(format($$SELECT tool_audit.log_call('t', '{}', '{}', 1, '{"started_at": "%s"}')$$,
                          to_char((now() + interval '1 hour') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')));
SELECT started_at IS NOT NULL AS accepted FROM tool_audit.log_call('t', '{}', '{}', 1,
         jsonb_build_object('started_at', to_char((now() + interval '1 minute') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')));
SELECT started_at IS NOT NULL AS accepted FROM tool_audit.log_call('t', '{}', '{}', 1, '{"started_at": "1999-12-31T23:59:59Z"}');
-- a plain INSERT may bring it, with the same checks
INSERT INTO tool_audit.tool_calls (tool_name, success, started_at) VALUES ('t', true, '2026-01-02 03:04:05+00')
RETURNING started_at = '2026-01-02 03:04:05+00' AS stored;
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (tool_name, success, started_at) VALUES ('t', true, 'infinity')$$);
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (tool_name, success, started_at) VALUES ('t', true, '-infinity')$$);
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (tool_name, success, started_at) VALUES ('t', true, now() + interval '1 day')$$);
-- a retry repeats started_at; a different one is a different call
SELECT id AS s_id FROM tool_audit.log_call('t', '{}', '{}', 1, '{"tool_call_id": "call_s", "started_at": "2026-01-02T03:04:05Z"}') \gset
SELECT id = :s_id AS same_id FROM tool_audit.log_call('t', '{}', '{}', 1, '{"tool_call_id": "call_s", "started_at": "2026-01-02T04:04:05+01:00"}');
SELECT regress_try($$SELECT tool_audit.log_call('t', '{}', '{}', 1, '{"tool_call_id": "call_s", "started_at": "2026-01-02T03:04:06Z"}')$$);

-- nothing stored twice, every row chained
SELECT count(*) AS problems FROM tool_audit.verify();
SELECT tool_call_id, count(*) FROM tool_audit.tool_calls
 WHERE id > :id0 AND tool_call_id IS NOT NULL AND tenant_id = 'rt_acme' AND conversation_id IS NULL
 GROUP BY 1 HAVING count(*) > 1 AND NOT bool_or(call_phase IS NOT NULL);

-- ---- started_at where reports and exports show a call's time ----
SELECT id AS r1 FROM tool_audit.log_call('get_patient', '{"patient_id": "rt_pat"}', '{"success": true}', 250,
         '{"tenant_id": "rt_acme", "conversation_id": "conv_rt_report", "turn_number": 1, "subject_id": "rt_pat",
           "started_at": "2026-01-02T03:04:05Z"}') \gset
SELECT id AS r2 FROM tool_audit.log_call('get_patient', '{"patient_id": "rt_pat"}', '{"success": true}', 250,
         '{"tenant_id": "rt_acme", "conversation_id": "conv_rt_report", "turn_number": 2, "subject_id": "rt_pat"}') \gset
SELECT * FROM tool_audit.conversation_timeline('conv_rt_report');
SELECT (a->>'call_id')::bigint = :r1 AS first, a->'started_at' AS started_at, a ? 'started_at' AS has_key
  FROM tool_audit.access_report('rt_pat', '-infinity', 'infinity') r, jsonb_array_elements(r->'accesses') a
 ORDER BY (a->>'call_id')::bigint;
SELECT (d->>'id')::bigint = :r1 AS first, d->'started_at' AS started_at, d ? 'started_at' AS has_key
  FROM tool_audit.export_jsonl('-infinity', 'infinity') d
 WHERE d->>'table' = 'tool_calls' AND (d->>'id')::bigint IN (:r1, :r2) ORDER BY (d->>'id')::bigint;
SELECT id = :r1 AS first, tool_audit.iso8601_utc(started_at) AS started_at
  FROM tool_audit.tool_calls_csv WHERE id IN (:r1, :r2) ORDER BY id;
-- the span starts at the client's time and lasts duration_ms; without one it
-- ends at recorded_at, as before
SELECT "tool_audit.call_id" = :r1 AS first,
       CASE WHEN "tool_audit.call_id" = :r1 THEN tool_audit.iso8601_utc(start_time)
            ELSE (start_time = (SELECT recorded_at - interval '250 ms' FROM tool_audit.tool_calls WHERE id = :r2))::text END AS start_time,
       CASE WHEN "tool_audit.call_id" = :r1 THEN tool_audit.iso8601_utc(end_time)
            ELSE (end_time = (SELECT recorded_at FROM tool_audit.tool_calls WHERE id = :r2))::text END AS end_time
  FROM tool_audit.otel_tool_spans WHERE "tool_audit.call_id" IN (:r1, :r2) ORDER BY "tool_audit.call_id";
