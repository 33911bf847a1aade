-- Bad input: an error with a SQLSTATE, and nothing half-stored.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql
SELECT count(*) AS calls FROM tool_audit.tool_calls \gset

-- nesting deeper than tool_audit.max_depth (64)
SELECT regress_try(format($$SELECT tool_audit.sanitize(%L)$$, repeat('[', 65) || repeat(']', 65)));
SELECT regress_try(format($$SELECT tool_audit.sanitize(%L)$$, repeat('[', 64) || repeat(']', 64)));
SELECT regress_try(format($$SELECT tool_audit.log_call('t', %L, '{}', 1, '{}')$$,
                          repeat('{"a":', 70) || '1' || repeat('}', 70)));
SET tool_audit.max_depth = 100;
SELECT regress_try(format($$SELECT tool_audit.sanitize(%L)$$, repeat('[', 65) || repeat(']', 65)));
RESET tool_audit.max_depth;

-- documents over tool_audit.max_jsonb_size (1 MB)
SELECT regress_try($$SELECT tool_audit.sanitize(jsonb_build_object('blob', repeat('x', 1100000)))$$);
SELECT regress_try($$SELECT tool_audit.log_call('t', jsonb_build_object('blob', repeat('x', 1100000)), '{}', 1, '{}')$$);
SELECT regress_try($$SELECT tool_audit.log_event('prompt.update', 'a', jsonb_build_object('blob', repeat('x', 1100000)), '{}')$$);
SELECT regress_try($$SELECT tool_audit.sanitize_text(repeat('x', 1100000))$$);
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (tool_name, user_agent) VALUES ('t', repeat('x', 1100000))$$);
-- a string of hundreds of MB
SELECT regress_try($$SELECT tool_audit.log_call('t', jsonb_build_object('blob', repeat('x', 250 * 1024 * 1024)), '{}', 1, '{}')$$);
-- a large result is fine: only its summary is stored, and it is measured without
-- being printed (200 MB of control characters would print as 1.2 GB)
SELECT result_summary FROM tool_audit.log_call('export', '{}', jsonb_build_object('blob', repeat(chr(1), 200 * 1024 * 1024)), 1, '{"conversation_id": "conv_big"}');
SELECT result_summary FROM tool_audit.log_call('export', '{}', jsonb_build_object('blob', repeat('x', 3000000)), 1, '{"conversation_id": "conv_big"}');
SET tool_audit.max_jsonb_size = '4MB';
SELECT regress_try($$SELECT tool_audit.sanitize(jsonb_build_object('blob', repeat('x', 1100000)))$$);
RESET tool_audit.max_jsonb_size;

-- settings: validated, and only superusers may change the audit ones
SELECT regress_try($$SET tool_audit.max_depth = 0$$);
SELECT regress_try($$SET tool_audit.max_jsonb_size = -1$$);
SELECT regress_try($$SET tool_audit.no_such_setting = 1$$);
SET ROLE regress_writer;
SELECT regress_try($$SET tool_audit.max_jsonb_size = '1GB'$$);
SELECT regress_try($$SET tool_audit.summary_keys = 'password'$$);
SELECT regress_try($$SET tool_audit.tenant = 'acme'$$);   -- narrowing one's own view is fine
RESET ROLE;
RESET tool_audit.tenant;
-- (their defaults: a server may set some, tool_audit.signing_key_file above all;
-- tool_audit.lane_hints exists only preloaded, 050_lane_hints_setting.pl)
SELECT name, boot_val, unit, context FROM pg_settings
 WHERE name LIKE 'tool_audit.%' AND name <> 'tool_audit.lane_hints' ORDER BY 1;

-- identifiers longer than the report indexes take (2000 bytes): a clear
-- error naming the column and its length, never the value
SET ROLE regress_writer;
SELECT regress_try($$SELECT tool_audit.log_call(repeat('t', 2001), '{}', '{}', 1, '{}')$$);
SELECT regress_try($$SELECT tool_audit.log_call('long_ids', '{}', '{}', 1, jsonb_build_object('subject_id', repeat('s', 2001)))$$);
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (tool_name, success, conversation_id) VALUES ('long_ids', true, repeat('c', 5000))$$);
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (tool_name, success, user_id) VALUES ('long_ids', true, repeat('u', 3000))$$);
BEGIN;
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (tool_name, success, user_id, subject_id, conversation_id) VALUES (repeat('t', 2000), true, repeat('u', 2000), repeat('s', 2000), repeat('c', 2000))$$) AS at_the_limit;
ROLLBACK;
RESET ROLE;

-- NULLs
SELECT tool_audit.sanitize(NULL) IS NULL AS sanitize_null, tool_audit.sanitize_text(NULL) IS NULL AS text_null,
       tool_audit.pseudonymize(NULL) IS NULL AS pseudonymize_null;

-- one row stored (the large-result call), none half-stored
SELECT count(*) - :calls AS calls_added FROM tool_audit.tool_calls;
