-- tool_audit.log_call(): the seed's log_call, and the plain INSERT path an ORM takes.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql
SELECT now() AS t0 \gset
SELECT coalesce(max(id), 0) AS id0 FROM tool_audit.tool_calls \gset

-- the seed's example entry
SELECT tool_name, arguments, result_summary, success, error, duration_ms, model, user_id,
       user_role, conversation_id, turn_number, call_trigger, client_ip, user_agent,
       session_metadata, recorded_at >= :'t0' AS recorded_now
  FROM tool_audit.log_call('update_order_status',
         '{"order_id": "ORD-54321", "status": "shipped"}',
         '{"order_id": "ORD-54321", "status": "shipped", "tracking": "1Z999"}',
         145.23,
         '{"conversation_id": "conv_abc123", "turn_number": 3, "user_id": "usr_98765",
           "user_role": "support_agent", "model": "gpt-4.1", "client_ip": "10.0.1.5",
           "user_agent": "SupportDashboard/2.1", "tenant_id": "acme", "locale": "en-US"}');

-- a failing call with a password and an SSN in its arguments
SELECT arguments, result_summary, success, error, call_trigger, purpose, subject_id, tool_call_id
  FROM tool_audit.log_call('reset_password',
         '{"customer_id": "C-123", "new_password": "hunter2", "ssn": "078-05-1120",
           "note": "verified with SSN 078-05-1120"}',
         '{"error": "identity check failed", "error_type": "PermissionError"}',
         38,
         '{"conversation_id": "conv_abc123", "turn_number": 4, "user_id": "usr_98765",
           "call_trigger": "retry", "purpose": "support", "subject_id": "C-123",
           "tool_call_id": "call_9f8e", "session_token": "abc"}');

-- every trigger value; the default is user_request
SELECT t, (tool_audit.log_call('noop', '{}', '{}', 0, jsonb_build_object('call_trigger', t, 'conversation_id', 'conv_triggers'))).call_trigger
  FROM unnest(enum_range(NULL::tool_audit.call_trigger)) AS t ORDER BY t;
SELECT (tool_audit.log_call('noop', NULL, NULL, NULL, NULL)).call_trigger AS default_trigger,
       (tool_audit.log_call('noop', NULL, NULL, NULL, NULL)).arguments AS null_arguments,
       (tool_audit.log_call('noop', NULL, NULL, NULL, NULL)).result_summary AS null_result;

-- event ids drawn here are random version 4 UUIDs (RFC 4122 variant), all
-- distinct, across more than one batch of the pool they are drawn from
WITH ids AS (
    SELECT (tool_audit.log_call('noop', '{}', '{}', 1, '{"conversation_id": "conv_uuid"}')).event_id
      FROM generate_series(1, 200))
SELECT count(*) AS ids, count(DISTINCT event_id) AS distinct_ids,
       count(*) FILTER (WHERE event_id::text ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$') AS version_4
  FROM ids;

-- a client may bring its own event id (idempotent retries), once
SELECT event_id FROM tool_audit.log_call('noop', '{}', '{}', 1,
       '{"event_id": "00000000-0000-4000-8000-000000000001", "conversation_id": "conv_ids"}');
SELECT regress_try($$SELECT tool_audit.log_call('noop', '{}', '{}', 1, '{"event_id": "00000000-0000-4000-8000-000000000001"}')$$);

-- bad input: a clear error, and nothing stored
SELECT count(*) AS before FROM tool_audit.tool_calls \gset
SELECT regress_try($$SELECT tool_audit.log_call(NULL, '{}', '{}', 1, '{}')$$);
SELECT regress_try($$SELECT tool_audit.log_call('', '{}', '{}', 1, '{}')$$);
SELECT regress_try($$SELECT tool_audit.log_call('t', '[1, 2]', '{}', 1, '{}')$$);
SELECT regress_try($$SELECT tool_audit.log_call('t', '"x"', '{}', 1, '{}')$$);
SELECT regress_try($$SELECT tool_audit.log_call('t', '{}', '{}', 1, '[]')$$);
SELECT regress_try($$SELECT tool_audit.log_call('t', '{}', '{}', 1, '{"turn_number": "seven"}')$$);
SELECT regress_try($$SELECT tool_audit.log_call('t', '{}', '{}', 1, '{"turn_number": -1}')$$);
SELECT regress_try($$SELECT tool_audit.log_call('t', '{}', '{}', 1, '{"call_trigger": "whim"}')$$);
SELECT regress_try($$SELECT tool_audit.log_call('t', '{}', '{}', 1, '{"client_ip": "10.0.0.300"}')$$);
SELECT regress_try($$SELECT tool_audit.log_call('t', '{}', '{}', 1, '{"event_id": "not-a-uuid"}')$$);
SELECT regress_try($$SELECT tool_audit.log_call('t', '{}', '{}', 1, '{"user_id": {"password": "hunter2", "ssn": "078051120"}}')$$);
SELECT regress_try($$SELECT tool_audit.log_call('t', '{}', '{}', 1, '{"purpose": ["treatment", "billing"]}')$$);
SELECT regress_try($$SELECT tool_audit.log_call('t', '{}', '{}', -1, '{}')$$);
SELECT regress_try($$SELECT tool_audit.log_call('t', '{}', '{}', 'NaN', '{}')$$);
SELECT regress_try($$SELECT tool_audit.log_call('t', '{}', '{}', 'Infinity', '{}')$$);
SELECT count(*) - :before AS stored_by_bad_calls FROM tool_audit.tool_calls;

-- plain INSERT (what an ORM does): same sanitizing, the result summarized,
-- success and error derived, the server's clock
INSERT INTO tool_audit.tool_calls (tool_name, conversation_id, arguments, result_summary, recorded_at, user_agent)
VALUES ('charge_payment', 'conv_orm', '{"card_number": "4111111111111111", "amount": 20}',
        jsonb_build_object('error', 'card declined', 'id', 'ch_1', 'raw', repeat('x', 1200)),
        '2000-01-01', 'bot/1.0 (token sk-abcdefghijklmnopqrstuvwx)')
RETURNING arguments, result_summary, success, error, user_agent, recorded_at >= :'t0' AS server_time;
-- explicit success and error are kept (error text is still sanitized)
INSERT INTO tool_audit.tool_calls (tool_name, conversation_id, result_summary, success, error)
VALUES ('charge_payment', 'conv_orm', '{"id": "ch_2"}', false, 'gateway said: Bearer abcdefghijklmnop')
RETURNING result_summary, success, error;
-- arguments must be an object here too
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (tool_name, arguments) VALUES ('t', '[1]')$$);
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (tool_name, session_metadata) VALUES ('t', '3')$$);
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (tool_name) VALUES (NULL)$$);
-- COPY takes the same path
COPY tool_audit.tool_calls (tool_name, conversation_id, arguments) FROM stdin;
bulk_import	conv_copy	{"api_key": "k-123", "rows": 10}
\.
SELECT arguments, result_summary, success FROM tool_audit.tool_calls WHERE conversation_id = 'conv_copy';

-- an explicit NULL for a column with a default gets the default
INSERT INTO tool_audit.tool_calls (tool_name, conversation_id, call_trigger) VALUES ('lookup', 'conv_text', NULL)
RETURNING call_trigger;
-- every text column goes through the value rules
INSERT INTO tool_audit.tool_calls (tool_name, conversation_id, purpose, user_id, tool_call_id, subject_id, model)
VALUES ('lookup', 'conv_text', 'card 4111 1111 1111 1111, ssn 078-05-1120', 'Bearer abcdefghijklmnop',
        'sk-abcdefghijklmnopqrstuvwx', 'P-001', 'gpt-4.1')
RETURNING purpose, user_id, tool_call_id, subject_id, model;

-- ids come from tool_audit, never from the caller
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (id, tool_name) VALUES (1000000, 'squat')$$);
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (id, tool_name) SELECT g, 'squat' FROM generate_series(100, 110) g$$);
-- recorded_by is the acting database role, whatever the caller says
INSERT INTO tool_audit.tool_calls (tool_name, conversation_id, recorded_by) VALUES ('lookup', 'conv_text', 'someone_else')
RETURNING recorded_by;
SET ROLE regress_writer;
SELECT recorded_by FROM tool_audit.log_call('lookup', '{}', '{}', 1, '{"conversation_id": "conv_text"}');
RESET ROLE;

-- restoring a dump (superuser, tool_audit.restoring = on) keeps id, time, role and event id
SET tool_audit.restoring = on;
INSERT INTO tool_audit.tool_calls (id, event_id, recorded_at, recorded_by, tool_name, conversation_id, arguments, success)
VALUES (900001, '00000000-0000-4000-8000-000000000099', '2024-01-02 03:04:05+00', 'original_app', 'restored',
        'conv_restore', '{"password": "***REDACTED***"}', true)
RETURNING id, event_id, recorded_at AT TIME ZONE 'UTC' AS recorded_at_utc, recorded_by, arguments;
-- a row without an id is recorded as usual, even while restoring
INSERT INTO tool_audit.tool_calls (tool_name, conversation_id, recorded_by) VALUES ('no id', 'conv_restore', 'someone')
RETURNING id < 900001 AS from_the_sequence, recorded_by;
RESET tool_audit.restoring;
SET ROLE regress_writer;
SELECT regress_try($$SET tool_audit.restoring = on$$);
RESET ROLE;
-- left on for a database by mistake, it helps nobody but superusers
SET tool_audit.restoring = on;
SET ROLE regress_writer;
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (id, tool_name, conversation_id, arguments, success)
                     VALUES (900002, 'sneaky', 'conv_restore', '{"password": "hunter2"}', true)$$);
RESET ROLE;
RESET tool_audit.restoring;

-- the rows this file recorded
SELECT conversation_id, count(*) FROM tool_audit.tool_calls WHERE id > :id0 GROUP BY 1 ORDER BY 1 NULLS FIRST;

-- tool_audit.call (1.5): empty or a uuid, with or without hyphens
SET tool_audit.call = '6f1c2a8e-0b7d-4c1e-9a55-2d3f4b5c6d7e';
SET tool_audit.call = '6f1c2a8e0b7d4c1e9a552d3f4b5c6d7e';
SET tool_audit.call = '';
SET tool_audit.call = '6f1c2a8e-0b7d-4c1e-9a55-2d3f4b5c6d7';
SET tool_audit.call = '6f1c2a8e0-b7d-4c1e-9a55-2d3f4b5c6d7e';
SET tool_audit.call = 'not a uuid';
-- the refused value is not quoted back (since 1.5: an application that put a
-- token here by mistake must not find it in the error and the server log)
SELECT regress_try($$SELECT set_config('tool_audit.call', 'sk_live_not_a_call_id', true)$$);
SHOW tool_audit.call;
RESET tool_audit.call;
