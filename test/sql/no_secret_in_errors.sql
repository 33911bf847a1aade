-- No secret in an error (issue 12, section 3): a value the caller passes
-- where another type belongs (an API key in turn_number, a token in
-- event_type) is refused with an error that names the field and the type it
-- expects, and quotes nothing: what an error says goes to the client and to
-- the server log.  The fake secrets below all contain "FAKE"; every error is
-- shown in full (message, detail, hint, context) and checked for them.
-- test/t/013_no_secret_in_log.pl checks the server log, with bind parameters.
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql

-- the SQLSTATE and message of the error, and whether any of its parts
-- (message, detail, hint, context) quotes the secret; the context names the
-- statement run here, which is taken out
CREATE FUNCTION quoted(sql text, secret text) RETURNS TABLE (error text, quotes_secret boolean)
LANGUAGE plpgsql AS $$
DECLARE
    msg text; det text; hnt text; ctx text;
BEGIN
    EXECUTE sql;
    RETURN QUERY SELECT 'no error', false;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL,
                            hnt = PG_EXCEPTION_HINT, ctx = PG_EXCEPTION_CONTEXT;
    RETURN QUERY SELECT SQLSTATE || ': ' || msg,
        strpos(concat_ws(' ', msg, det, hnt, replace(ctx, sql, '')), secret) > 0;
END $$;

SELECT count(*) AS calls FROM tool_audit.tool_calls \gset
SELECT count(*) AS events FROM tool_audit.admin_events \gset

-- log_call(): every context field stored in a column that is not text
SELECT * FROM quoted($$SELECT tool_audit.log_call('t', '{}', '{}', 1, '{"turn_number": "sk-ant-FAKE01-turn"}')$$, 'FAKE01');
SELECT * FROM quoted($$SELECT tool_audit.log_call('t', '{}', '{}', 1, '{"turn_number": 4111111111111111}')$$, '4111111111111111');
SELECT * FROM quoted($$SELECT tool_audit.log_call('t', '{}', '{}', 1, '{"turn_number": 7.5}')$$, '7.5');
SELECT * FROM quoted($$SELECT tool_audit.log_call('t', '{}', '{}', 1, '{"turn_number": true}')$$, 'true');
SELECT * FROM quoted($$SELECT tool_audit.log_call('t', '{}', '{}', 1, '{"call_trigger": "sk-ant-FAKE02-trigger"}')$$, 'FAKE02');
SELECT * FROM quoted($$SELECT tool_audit.log_call('t', '{}', '{}', 1, '{"client_ip": "sk-ant-FAKE03-ip"}')$$, 'FAKE03');
SELECT * FROM quoted($$SELECT tool_audit.log_call('t', '{}', '{}', 1, '{"event_id": "sk-ant-FAKE04-event"}')$$, 'FAKE04');
-- a value as long as a key, and one longer than an enum label can be
SELECT * FROM quoted(format($$SELECT tool_audit.log_call('t', '{}', '{}', 1, '{"call_trigger": "%s"}')$$,
                            'sk-ant-FAKE05-' || repeat('x', 100)), 'FAKE05');
-- the full error, as psql prints it
SELECT tool_audit.log_call('t', '{}', '{}', 1, '{"client_ip": "sk-ant-FAKE06-ip"}');
SELECT tool_audit.log_call('t', '{}', '{}', 1, '{"call_trigger": "sk-ant-FAKE07-trigger"}');

-- log_event(): event_type, and the context fields that are not text
SELECT * FROM quoted($$SELECT tool_audit.log_event('sk-ant-FAKE11-type', 'a', '{}', '{}')$$, 'FAKE11');
SELECT * FROM quoted($$SELECT tool_audit.log_event('tool_audit.sk-ant-FAKE12', 'a', '{}', '{}')$$, 'FAKE12');
SELECT * FROM quoted($$SELECT tool_audit.log_event('prompt.update', 'a', '{}', '{"actor_type": "sk-ant-FAKE13"}')$$, 'FAKE13');
SELECT * FROM quoted($$SELECT tool_audit.log_event('prompt.update', 'a', '{}', '{"source_ip": "sk-ant-FAKE14"}')$$, 'FAKE14');
SELECT * FROM quoted($$SELECT tool_audit.log_event('prompt.update', 'a', '{}', '{"event_id": "sk-ant-FAKE15"}')$$, 'FAKE15');
SELECT tool_audit.log_event('sk-ant-FAKE16-type', 'a', '{}', '{}');
-- rotate_pseudonym_key(): a key (64 hex digits) passed as the key id
SELECT * FROM quoted(format($$SELECT tool_audit.rotate_pseudonym_key(%L)$$, 'fa4e' || repeat('0', 56) || 'fa4e'),
                     'fa4e' || repeat('0', 56) || 'fa4e');
SELECT * FROM quoted($$SELECT tool_audit.rotate_pseudonym_key('c2stYW50LUZBS0UxOA==')$$, 'c2stYW50LUZBS0UxOA');
-- a plain INSERT of a reserved event type, by a writer
SET ROLE regress_writer;
SELECT * FROM quoted($$INSERT INTO tool_audit.admin_events (event_type, actor) VALUES ('tool_audit.sk_ant_fake17', 'a')$$, 'fake17');
RESET ROLE;

-- a malformed JSON literal passed as jsonb: PostgreSQL refuses it before
-- the function runs, and its error quotes the text (doc/caveats.md) ...
SELECT * FROM quoted($$SELECT tool_audit.log_call('t', '{"api_key": sk_ant_FAKE21}', '{}', 1)$$, 'FAKE21');
-- ... log_call_text() and log_event_text() take the JSON as text, and name the argument only
SELECT * FROM quoted($$SELECT tool_audit.log_call_text('t', '{"api_key": sk_ant_FAKE22}', '{}', 1)$$, 'FAKE22');
SELECT * FROM quoted($$SELECT tool_audit.log_call_text('t', '{}', '{"token": "sk-ant-FAKE23"', 1)$$, 'FAKE23');
SELECT * FROM quoted($$SELECT tool_audit.log_call_text('t', '{}', '{}', 1, '{"k": 1} sk_ant_FAKE24')$$, 'FAKE24');
SELECT * FROM quoted($$SELECT tool_audit.log_call_text('t', '{"k": "sk-ant-FAKE25\u0000"}', '{}', 1)$$, 'FAKE25');
SELECT * FROM quoted($$SELECT tool_audit.log_call_text('t', '{"k": "sk-ant-FAKE26\q"}', '{}', 1)$$, 'FAKE26');
SELECT * FROM quoted($$SELECT tool_audit.log_call_text('t', '{}', '{}', 1, '{"turn_number": "sk-ant-FAKE27"}')$$, 'FAKE27');
SELECT * FROM quoted($$SELECT tool_audit.log_event_text('prompt.update', 'a', 'sk_ant_FAKE28', '{}')$$, 'FAKE28');
SELECT * FROM quoted($$SELECT tool_audit.log_event_text('prompt.update', 'a', '{}', E'{\n"reason": "x",\n sk_ant_FAKE29}')$$, 'FAKE29');
SELECT tool_audit.log_call_text('t', '{"api_key": sk_ant_FAKE30}', '{}', 1);

-- nothing was stored by any of the above
SELECT count(*) - :calls AS new_calls FROM tool_audit.tool_calls;
SELECT count(*) - :events AS new_events FROM tool_audit.admin_events;

-- log_call_text() and log_event_text() store what log_call() and
-- log_event() do, sanitized alike
SELECT a.arguments = b.arguments AS same_arguments, a.result_summary = b.result_summary AS same_summary,
       a.turn_number, a.client_ip, a.call_trigger, a.session_metadata = b.session_metadata AS same_metadata,
       a.arguments->>'api_key' AS sanitized
  FROM tool_audit.log_call('lookup', '{"api_key": "sk-ant-FAKE40-0123456789abcdef", "q": "x"}', '{"rows": [1, 2]}', 2.5,
                           '{"turn_number": 3, "client_ip": "192.0.2.1", "call_trigger": "retry", "note": "n"}') a,
       tool_audit.log_call_text('lookup', '{"api_key": "sk-ant-FAKE40-0123456789abcdef", "q": "x"}', '{"rows": [1, 2]}', 2.5,
                                '{"turn_number": 3, "client_ip": "192.0.2.1", "call_trigger": "retry", "note": "n"}') b;
SELECT tool_name, arguments, session_metadata FROM tool_audit.log_call_text('t', NULL, NULL, NULL);
SELECT a.payload = b.payload AS same_payload, a.source_ip, a.actor_type, a.tenant_id, b.metadata
  FROM tool_audit.log_event('prompt.update', 'a', '{"password": "hunter2"}', '{"source_ip": "192.0.2.9", "actor_type": "service", "tenant_id": "t1", "x": 1}') a,
       tool_audit.log_event_text('prompt.update', 'a', '{"password": "hunter2"}', '{"source_ip": "192.0.2.9", "actor_type": "service", "tenant_id": "t1", "x": 1}') b;
SELECT regress_try($$SELECT tool_audit.log_call_text('t', '{}', '{}', 1, '[1]')$$);
SELECT regress_try($$SELECT tool_audit.log_event_text('prompt.update', 'a', '{}', '"x"')$$);
SET ROLE regress_writer;
SELECT tool_name FROM tool_audit.log_call_text('by_writer', '{}', '{}', 1);
SELECT event_type FROM tool_audit.log_event_text('prompt.update', 'writer', '{}');
SELECT tool_audit.jsonb_from_text('{"a": [1, 2.50, "x", null, true]}');
RESET ROLE;
SET ROLE regress_reader;
SELECT regress_try($$SELECT tool_audit.log_call_text('t', '{}', '{}', 1)$$);
RESET ROLE;

-- jsonb_from_text() reads what jsonb's input reads
SELECT d, tool_audit.jsonb_from_text(d) = d::jsonb AS same
  FROM unnest(ARRAY['{}', '[]', '1', '-0.5e3', '"x"', 'null', 'true', ' {"a" : {"b": [1, {"c": "\u00e9\ud83d\ude00"}]}} ',
                    E'{\n"a":\t1\n}', '{"a": 1, "a": 2}', '"\\\\ \" \/ \b \f \n \r \t"']) AS d;
SELECT d, regress_try(format('SELECT %L::jsonb', d)) AS cast,
       regress_try(format('SELECT tool_audit.jsonb_from_text(%L, %L)', d, 'doc')) AS jsonb_from_text
  FROM unnest(ARRAY['', ' ', '{', '{"a"}', '{"a": 1,}', '[1 2]', '01', '1.', '.5', '+1', 'NaN', 'nul', 'True',
                    '"a', E'"\t"', '"\x"', '"\u12"', '"\u0000"', '"\ud800"', '"\udc00x"', '{} {}', '1 2']) AS d;
SELECT tool_audit.jsonb_from_text(NULL) IS NULL AS null_in_null_out;

-- typed_value() reads what the types' input functions read, and refuses
-- what they refuse (without quoting it)
SELECT v, tool_audit.typed_value(v, NULL::integer, 'f') = v::integer AS same
  FROM unnest(ARRAY['0', '7', ' 42 ', '-2147483648', '2147483647', '+5', '-0', E'\t8\n', '000000000000000000012']) AS v;
SELECT v, regress_try(format('SELECT %L::integer', v)) AS cast,
       regress_try(format('SELECT tool_audit.typed_value(%L, NULL::integer, %L)', v, 'f')) AS typed_value
  FROM unnest(ARRAY['', ' ', '-', '+', '1.0', '1e3', '0x10', '2147483648', '-2147483649', '99999999999999999999', '1 2', '１']) AS v;
SELECT v, tool_audit.typed_value(v, NULL::uuid, 'f') = v::uuid AS same
  FROM unnest(ARRAY['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11',
                    '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}', 'a0eebc999c0b4ef8bb6d6bb9bd380a11',
                    'a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11', '{a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11}']) AS v;
SELECT v, regress_try(format('SELECT %L::uuid', v)) AS cast,
       regress_try(format('SELECT tool_audit.typed_value(%L, NULL::uuid, %L)', v, 'f')) AS typed_value
  FROM unnest(ARRAY['', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111',
                    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-', '-a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
                    'a0eebc999-c0b-4ef8-bb6d-6bb9bd380a11', 'a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11',
                    '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}',
                    ' a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11']) AS v;
SELECT v, tool_audit.typed_value(v, NULL::inet, 'f') = v::inet AS same
  FROM unnest(ARRAY['192.0.2.1', '192.0.2.1/24', '10.0.0.0/8', '::1', '2001:db8::1/64', '::ffff:192.0.2.1',
                    '0.0.0.0', '255.255.255.255/32', '2001:0db8:0000:0000:0000:0000:0000:0001']) AS v;
SELECT v, regress_try(format('SELECT %L::inet', v)) AS cast,
       regress_try(format('SELECT tool_audit.typed_value(%L, NULL::inet, %L)', v, 'f')) AS typed_value
  FROM unnest(ARRAY['', '10.0.0.300', '192.0.2.1/33', '::1/129', '1.2.3', 'localhost', ':::', ' 192.0.2.1',
                    '192.0.2.1 ', '192.0.2.1/', '192.0.2.1/-1', '2001:db8::g']) AS v;
SELECT v, tool_audit.typed_value(v, NULL::tool_audit.call_trigger, 'f') = v::tool_audit.call_trigger AS same
  FROM unnest(enum_range(NULL::tool_audit.call_trigger)::text[]) AS v;
SELECT v, regress_try(format('SELECT %L::tool_audit.call_trigger', v)) AS cast,
       regress_try(format('SELECT tool_audit.typed_value(%L, NULL::tool_audit.call_trigger, %L)', v, 'f')) AS typed_value
  FROM unnest(ARRAY['', 'Retry', ' retry', repeat('r', 64)]) AS v;
SELECT tool_audit.typed_value(NULL, NULL::uuid, 'f') IS NULL AS null_in_null_out;
SELECT regress_try($$SELECT tool_audit.typed_value('x', NULL::date, 'f')$$);
