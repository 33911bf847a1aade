-- Reads of the audit trail (1.5): every report and export leaves one
-- audit.read admin event (who, which function, its arguments, how many
-- rows it returned); read_report() lists them; a read-only transaction
-- cannot record one and is refused.  In a database of its own, so that the
-- events counted are this file's.
\set VERBOSITY terse
SELECT current_database() AS regress_db \gset
SET client_min_messages = warning;
DROP DATABASE IF EXISTS regress_tool_audit_reads;
CREATE DATABASE regress_tool_audit_reads TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C';
RESET client_min_messages;
\c regress_tool_audit_reads
SET client_encoding = 'UTF8';
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql
SET client_min_messages = warning;
CREATE EXTENSION tool_audit;
RESET client_min_messages;
SELECT tool_audit.bind_tenant('regress_reader_acme', 'ra_acme');
-- a rule that pseudonymizes subject ids wherever they appear as a key
INSERT INTO tool_audit.sanitize_rules (applies_to, match, pattern, action, priority)
VALUES ('key', 'exact', 'subject_id', 'pseudonymize', 40);

SET ROLE regress_writer;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, conversation_id, turn_number, user_id, user_role,
                                   model, subject_id, success, duration_ms)
VALUES ('get_record', 'ra_acme', 'conv_r', 1, 'usr_r', 'nurse', 'gpt-4.1', 'pat_r', true, 5),
       ('update_record', 'ra_acme', 'conv_r', 2, 'usr_r', 'nurse', 'gpt-4.1', 'pat_r', false, 7),
       ('get_record', 'ra_other', 'conv_o', 1, 'usr_o', 'clerk', 'gpt-4.1', 'pat_r', true, 3);
SELECT (tool_audit.log_event('prompt.update', 'adm_r', '{"v": 2}', '{"tenant_id": "ra_acme"}')).id IS NOT NULL AS logged;
-- nobody forges a read record: not through log_event(), nor an INSERT
SELECT regress_try($$SELECT tool_audit.log_event('audit.read', 'someone', '{}')$$);
SELECT regress_try($$INSERT INTO tool_audit.admin_events (event_type, actor) VALUES ('audit.read', 'someone')$$);
-- and the writer runs no report
SELECT regress_try($$SELECT tool_audit.failures()$$);
RESET ROLE;

-- pg_temp.last_read(): the newest audit.read event, as read_report() shows it
CREATE FUNCTION pg_temp.reads() RETURNS bigint LANGUAGE sql AS
    $$ SELECT count(*) FROM tool_audit.admin_events WHERE event_type = 'audit.read' $$;
CREATE FUNCTION pg_temp.last_read() RETURNS TABLE (actor text, tenant_id text, payload jsonb, recorded_by text)
LANGUAGE sql AS $$
    SELECT e.actor, e.tenant_id, e.payload, e.recorded_by FROM tool_audit.admin_events e
     WHERE e.event_type = 'audit.read' ORDER BY e.id DESC LIMIT 1
$$;

-- every report and export, as an unbound admin: one event each, with its
-- arguments and the rows it returned
SET ROLE regress_admin;
SELECT pg_temp.reads() AS before \gset
SELECT count(*) FROM tool_audit.calls_by_conversation('conv_r');
SELECT * FROM pg_temp.last_read();
SELECT count(*) FROM tool_audit.calls_by_user('usr_r', '2000-01-01 00:00+00');
SELECT * FROM pg_temp.last_read();
SELECT count(*) FROM tool_audit.failures();
SELECT * FROM pg_temp.last_read();
SELECT tool_audit.tool_stats('get_record')->'total_calls' AS total_calls;
SELECT * FROM pg_temp.last_read();
SELECT count(*) FROM tool_audit.conversation_timeline('conv_r');
SELECT * FROM pg_temp.last_read();
SELECT tool_audit.attribution(min(id)) FROM tool_audit.tool_calls;
SELECT * FROM pg_temp.last_read();
SELECT tool_audit.attribution(999999) IS NULL AS unknown;
SELECT payload FROM pg_temp.last_read();
SELECT tool_audit.access_report('pat_r', '2000-01-01 00:00+00', 'infinity')->'total_accesses' AS accesses;
-- the subject id in the arguments is pseudonymized by the rule above
SELECT actor, payload->'arguments'->>'subject_id' = tool_audit.pseudonymize('pat_r') AS pseudonymized,
       payload->'arguments'->>'subject_id' <> 'pat_r' AS not_in_clear, payload->'rows' AS rows
  FROM pg_temp.last_read();
SELECT count(*) FROM tool_audit.export_jsonl('2000-01-01 00:00+00', 'infinity');
SELECT payload->'function' AS function, payload->'rows' AS rows FROM pg_temp.last_read();
SELECT count(*) FROM tool_audit.export_fhir('2000-01-01 00:00+00', 'infinity', 'pat_r');
SELECT payload->'function' AS function, payload->'rows' AS rows,
       payload->'arguments'->>'subject_id' = tool_audit.pseudonymize('pat_r') AS pseudonymized
  FROM pg_temp.last_read();
-- the admin events as FHIR too (1.5; it recorded nothing before)
SELECT count(*) > 0 AS some FROM tool_audit.export_fhir_admin_events('2000-01-01 00:00+00', 'infinity');
SELECT payload->'function' AS function, payload->'rows' = '0' AS no_rows, payload->'arguments' ? 'subject_id' AS names_subject
  FROM pg_temp.last_read();
SELECT count(*) FROM tool_audit.verify();
SELECT * FROM pg_temp.last_read();
SELECT tool_audit.digest() AS d \gset
SELECT * FROM pg_temp.last_read();
SELECT count(*) FROM tool_audit.verify_digest(:'d');
SELECT payload->'function' AS function, payload->'rows' AS rows,
       payload->'arguments'->>'digest_taken_at' = (:'d'::jsonb->>'taken_at') AS names_the_digest
  FROM pg_temp.last_read();
-- exactly one event per call, 14 calls
SELECT pg_temp.reads() - :before AS events;
-- a failed report records nothing (its transaction is rolled back)
SELECT regress_try($$SELECT * FROM tool_audit.calls_by_user(NULL)$$);
SELECT pg_temp.reads() - :before AS events;
-- the read events are in the chains like any event
RESET ROLE;
SELECT count(*) AS problems FROM tool_audit.verify();

-- a bound reader: its reports see its tenant, and its read events carry it
SET ROLE regress_acme_member;
SELECT count(*) FROM tool_audit.calls_by_user('usr_o');
SELECT tool_audit.access_report('pat_r', '2000-01-01 00:00+00', 'infinity')->'total_accesses' AS accesses;
RESET ROLE;
SELECT actor, tenant_id, payload - 'arguments' AS payload, recorded_by FROM pg_temp.last_read();
-- a reader narrowed to a tenant by the setting: that tenant
SET ROLE regress_reader;
SET tool_audit.tenant = 'ra_other';
SELECT count(*) FROM tool_audit.failures();
RESET tool_audit.tenant;
RESET ROLE;
SELECT actor, tenant_id, payload - 'arguments' AS payload FROM pg_temp.last_read();
-- the verifier's verify() is recorded too; it runs no report
CREATE ROLE regress_ra_verifier IN ROLE tool_audit_verifier;
SET ROLE regress_ra_verifier;
SELECT count(*) FROM tool_audit.verify();
SELECT regress_try($$SELECT tool_audit.read_report()$$);
RESET ROLE;
SELECT actor, payload->'function' AS function FROM pg_temp.last_read();
DROP ROLE regress_ra_verifier;
-- record_read() records the caller's own reads only: what it is given is the
-- caller's claim, attributed to the caller
SET ROLE regress_reader;
SELECT tool_audit.record_read('calls_by_user', '{"user_id": "x"}', 0);
RESET ROLE;
SELECT actor, recorded_by FROM pg_temp.last_read();

-- read-only: a report that cannot record its read is refused (25006)
SET ROLE regress_admin;
SELECT pg_temp.reads() AS before \gset
BEGIN READ ONLY;
SELECT regress_try($$SELECT count(*) FROM tool_audit.calls_by_conversation('conv_r')$$);
ROLLBACK;
BEGIN READ ONLY;
SELECT regress_try($$SELECT count(*) FROM tool_audit.verify()$$);
ROLLBACK;
SET default_transaction_read_only = on;
SELECT regress_try($$SELECT tool_audit.digest()$$);
RESET default_transaction_read_only;
SELECT pg_temp.reads() - :before AS events;
-- the standby setting is the configuration's, not a session's
SELECT regress_try($$SET tool_audit.unrecorded_standby_reads = on$$);
RESET ROLE;
SELECT regress_try($$SET tool_audit.unrecorded_standby_reads = on$$);

-- who looked: read_report(), of one subject or all; it records itself
SET ROLE regress_admin;
SELECT read_by, function_name, row_count, tenant_id
  FROM tool_audit.read_report('pat_r') ORDER BY event_id;
SELECT payload->'function' AS function, (payload->'arguments') - 'subject_id' AS arguments,
       payload->'arguments'->>'subject_id' = tool_audit.pseudonymize('pat_r') AS pseudonymized,
       payload->'rows' AS rows
  FROM pg_temp.last_read();
SELECT count(*) FILTER (WHERE function_name = 'verify') AS verify_reads,
       count(DISTINCT read_by) AS readers
  FROM tool_audit.read_report(NULL, '2000-01-01 00:00+00');
SELECT count(*) FROM tool_audit.read_report('nobody_read_this');
RESET ROLE;
-- a bound reader lists only its tenant's reads
SET ROLE regress_acme_member;
SELECT read_by, function_name, tenant_id FROM tool_audit.read_report() ORDER BY event_id;
RESET ROLE;

-- the change reports (1.5) record their reads too: one event each, with
-- the table as data_changes names it, the key and the rows returned;
-- refused in a read-only transaction
CREATE TABLE public.ra_items (id integer PRIMARY KEY, qty integer);
GRANT SELECT, INSERT, UPDATE ON public.ra_items TO regress_writer;
SELECT tool_audit.track('public.ra_items') IS NOT NULL AS tracked;
SET ROLE regress_writer;
BEGIN;
SELECT (tool_audit.log_call('restock', '{}', '{"ok": true}', 1,
  '{"event_id": "7a7a7a7a-0000-4000-8000-000000000001", "tenant_id": "ra_acme"}')).id IS NOT NULL AS logged;
SET LOCAL tool_audit.call = '7a7a7a7a-0000-4000-8000-000000000001';
INSERT INTO public.ra_items VALUES (1, 5);
UPDATE public.ra_items SET qty = 6 WHERE id = 1;
COMMIT;
RESET ROLE;
SET ROLE regress_admin;
SELECT pg_temp.reads() AS before \gset
SELECT count(*) FROM tool_audit.changes_by_call('7a7a7a7a-0000-4000-8000-000000000001');
SELECT * FROM pg_temp.last_read();
SELECT count(*) FROM tool_audit.row_changes('public.ra_items', '{"id": 1}');
SELECT * FROM pg_temp.last_read();
SELECT count(*) FROM tool_audit.row_history('public.ra_items', '{"id": 1}');
SELECT * FROM pg_temp.last_read();
SELECT tool_audit.row_as_of('public.ra_items', '{"id": 1}', '2100-01-01 00:00+00');
SELECT * FROM pg_temp.last_read();
SELECT tool_audit.row_as_of('public.ra_items', '{"id": 1}', '2000-01-01 00:00+00') IS NULL AS did_not_exist;
SELECT payload->'rows' AS rows FROM pg_temp.last_read();
-- exactly one event per call, 5 calls
SELECT pg_temp.reads() - :before AS events;
BEGIN READ ONLY;
SELECT regress_try($$SELECT count(*) FROM tool_audit.changes_by_call('7a7a7a7a-0000-4000-8000-000000000001')$$);
SELECT regress_try($$SELECT count(*) FROM tool_audit.row_changes('public.ra_items', '{"id": 1}')$$);
SELECT regress_try($$SELECT count(*) FROM tool_audit.row_history('public.ra_items', '{"id": 1}')$$);
SELECT regress_try($$SELECT tool_audit.row_as_of('public.ra_items', '{"id": 1}', '2100-01-01 00:00+00')$$);
ROLLBACK;
SELECT pg_temp.reads() - :before AS events;
RESET ROLE;
-- a bound reader's change-report reads carry its tenant
SET ROLE regress_acme_member;
SELECT count(*) FROM tool_audit.row_history('public.ra_items', '{"id": 1}');
RESET ROLE;
SELECT actor, tenant_id, payload, recorded_by FROM pg_temp.last_read();

\c :regress_db
SET client_min_messages = warning;
DROP DATABASE regress_tool_audit_reads;
RESET client_min_messages;
