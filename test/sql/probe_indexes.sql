-- Plain indexes the C code probes by name (1.5): the DDL guard lets the
-- extension's owner drop any plain index, and make another under its name.
-- The index of tool_audit.trail_marks (src/trail_mark.c): the DDL guard lets
-- the extension's owner drop it as it lets any
-- plain index go, and make another plain index under its name.  Without it,
-- or with an index on another column in its place, the first row a backend stores in an audit
-- table still finds (or writes) the table's mark: recording, tracked
-- changes and verify() go on as before, instead of every audit write failing
-- with "relation tool_audit.trail_marks_table is missing".  In a database of
-- its own.  Then tool_calls_call_event_id (the end of a call) and
-- tool_calls_tool_call_id (a retried call) replaced by an index on another
-- column: not probed (the probe would compare with that column: a second end
-- of a call was stored); the function refuses, as without the index, until
-- an index on the right column is back.
\set VERBOSITY terse
SELECT current_database() AS regress_db \gset
SET client_min_messages = warning;
DROP DATABASE IF EXISTS regress_tool_audit_probe_indexes;
CREATE DATABASE regress_tool_audit_probe_indexes TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C';
RESET client_min_messages;
\c regress_tool_audit_probe_indexes
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql
SET client_min_messages = warning;
CREATE EXTENSION tool_audit;
RESET client_min_messages;

-- a first call with the index, then the index dropped (allowed: plain)
INSERT INTO tool_audit.tool_calls (tool_name, success) VALUES ('before_drop', true);
DROP INDEX tool_audit.trail_marks_table;
\c -
\set VERBOSITY terse
CREATE TABLE public.mi_items (id integer PRIMARY KEY, v text);
SELECT (tool_audit.track('public.mi_items'))->'table' AS tracked;
-- new backends: a marked table, then tables with no mark yet
INSERT INTO tool_audit.tool_calls (tool_name, success) VALUES ('after_drop', true);
INSERT INTO public.mi_items VALUES (1, 'a');
UPDATE public.mi_items SET v = 'b';
BEGIN;
INSERT INTO public.mi_items VALUES (2, 'c');
ROLLBACK;
SELECT table_name, count(*) FROM tool_audit.trail_marks GROUP BY 1 ORDER BY 1;
\c -
\set VERBOSITY terse
-- a mark is found, not written again
INSERT INTO tool_audit.tool_calls (tool_name, success) VALUES ('again', true);
INSERT INTO public.mi_items VALUES (3, 'd');
SELECT table_name, count(*) FROM tool_audit.trail_marks GROUP BY 1 ORDER BY 1;
SELECT (SELECT count(*) FROM tool_audit.tool_calls) AS calls,
       (SELECT count(*) FROM tool_audit.data_changes) AS changes;
SELECT * FROM tool_audit.verify();

-- another index under its name: not probed (its column is not table_name)
CREATE INDEX trail_marks_table ON tool_audit.trail_marks (marked_at);
\c -
\set VERBOSITY terse
INSERT INTO tool_audit.tool_calls (tool_name, success) VALUES ('other_index', true);
SELECT pg_typeof(tool_audit.log_event('policy.update', 'a', '{}', '{}')) AS logged;
UPDATE public.mi_items SET v = 'e' WHERE id = 3;
-- the index made again as the install script makes it: probed again
DROP INDEX tool_audit.trail_marks_table;
CREATE INDEX trail_marks_table ON tool_audit.trail_marks (table_name);
\c -
\set VERBOSITY terse
INSERT INTO tool_audit.tool_calls (tool_name, success) VALUES ('index_again', true);
UPDATE public.mi_items SET v = 'f' WHERE id = 3;
SELECT table_name, count(*) FROM tool_audit.trail_marks GROUP BY 1 ORDER BY 1;
SELECT (SELECT count(*) FROM tool_audit.tool_calls) AS calls,
       (SELECT count(*) FROM tool_audit.data_changes) AS changes;
SELECT * FROM tool_audit.verify();

-- the end of a call: an index on another column under the name of
-- tool_calls_call_event_id is not used
DROP INDEX tool_audit.tool_calls_call_event_id;
CREATE INDEX tool_calls_call_event_id ON tool_audit.tool_calls (tool_name);
\c -
\set VERBOSITY terse
SELECT tool_audit.begin_call('t', '{}') AS c \gset
SELECT regress_try(format('SELECT tool_audit.end_call(%L, ''{}'')', :'c')) AS end1,
       regress_try(format('SELECT tool_audit.end_call(%L, ''{}'')', :'c')) AS end2;
SELECT call_phase, count(*) FROM tool_audit.tool_calls
 WHERE event_id = :'c' OR call_event_id = :'c' GROUP BY 1 ORDER BY 1;
-- an index on call_event_id again (plain: a partial one is refused): one end only
DROP INDEX tool_audit.tool_calls_call_event_id;
CREATE INDEX tool_calls_call_event_id ON tool_audit.tool_calls (call_event_id);
\c -
\set VERBOSITY terse
SELECT regress_try(format('SELECT tool_audit.end_call(%L, ''{}'')', :'c')) AS end1,
       left(regress_try(format('SELECT tool_audit.end_call(%L, ''{}'')', :'c')), 5) AS end2;
SELECT call_phase, count(*) FROM tool_audit.tool_calls
 WHERE event_id = :'c' OR call_event_id = :'c' GROUP BY 1 ORDER BY 1;

-- a retried call: an index on another column under the name of
-- tool_calls_tool_call_id is not used
DROP INDEX tool_audit.tool_calls_tool_call_id;
CREATE INDEX tool_calls_tool_call_id ON tool_audit.tool_calls (tool_name);
\c -
\set VERBOSITY terse
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (tool_name, tool_call_id, tenant_id, conversation_id, success)
                     VALUES ('search', 'tc-1', 'acme', 'conv', true)$$) AS first,
       regress_try($$INSERT INTO tool_audit.tool_calls (tool_name, tool_call_id, tenant_id, conversation_id, success)
                     VALUES ('search', 'tc-1', 'acme', 'conv', true)$$) AS retry;
DROP INDEX tool_audit.tool_calls_tool_call_id;
CREATE INDEX tool_calls_tool_call_id ON tool_audit.tool_calls (tool_call_id);
\c -
\set VERBOSITY terse
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (tool_name, tool_call_id, tenant_id, conversation_id, success)
                     VALUES ('search', 'tc-1', 'acme', 'conv', true)$$) AS first,
       regress_try($$INSERT INTO tool_audit.tool_calls (tool_name, tool_call_id, tenant_id, conversation_id, success)
                     VALUES ('search', 'tc-1', 'acme', 'conv', true)$$) AS retry;
SELECT count(*) AS stored FROM tool_audit.tool_calls WHERE tool_call_id = 'tc-1';
SELECT * FROM tool_audit.verify();

-- the rate rules' probes (src/alerts.c): an index replaced under the name of
-- tool_calls_tool_failures or tool_calls_user_subject is used only while it
-- is what the probe needs, else the reports' index on the rule's first
-- column, else the table read whole: the counts stay right.  First one
-- without its WHERE clause (a plain index has none): its successes are not
-- failures (three successes then a failure fired a threshold of 2)
SELECT (tool_audit.set_alert_rule('tool_failures', threshold => 2, enabled => true))->'after'->>'threshold' AS threshold;
DROP INDEX tool_audit.tool_calls_tool_failures;
CREATE INDEX tool_calls_tool_failures ON tool_audit.tool_calls (tool_name, recorded_at);
\c -
\set VERBOSITY terse
CREATE FUNCTION pi_call(tool text, ok boolean, usr text DEFAULT NULL, subj text DEFAULT NULL) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO tool_audit.tool_calls (tool_name, success, user_id, subject_id) VALUES (tool, ok, usr, subj)
$$;
CREATE VIEW pi_alerts AS
    SELECT rule_name, burst_key, count, detail->>'seen' AS seen FROM tool_audit.alerts
     WHERE rule_name IN ('tool_failures', 'same_subject_hourly', 'distinct_subjects_hourly')
     ORDER BY 1, 2;
SELECT pi_call('pi_flaky1', true);
SELECT pi_call('pi_flaky1', true);
SELECT pi_call('pi_flaky1', true);
SELECT pi_call('pi_flaky1', false);
SELECT pi_call('pi_flaky1', false);
SELECT * FROM pi_alerts;
SELECT pi_call('pi_flaky1', false);
SELECT * FROM pi_alerts;
-- on another column: the reports' tool_calls_tool is read instead
DROP INDEX tool_audit.tool_calls_tool_failures;
CREATE INDEX tool_calls_tool_failures ON tool_audit.tool_calls (user_id, recorded_at);
\c -
\set VERBOSITY terse
SELECT pi_call('pi_flaky2', false, 'pi_flaky2');
SELECT pi_call('pi_flaky2', true);
SELECT pi_call('pi_flaky2', false);
SELECT pi_call('pi_flaky2', false);
SELECT * FROM pi_alerts;
-- neither index (tool_calls_tool of another access method): the table is read
DROP INDEX tool_audit.tool_calls_tool;
CREATE INDEX tool_calls_tool ON tool_audit.tool_calls USING hash (tool_name);
\c -
\set VERBOSITY terse
SELECT pi_call('pi_flaky3', false);
SELECT pi_call('pi_flaky3', true);
SELECT pi_call('pi_flaky3', false);
SELECT * FROM pi_alerts;
SELECT pi_call('pi_flaky3', false);
SELECT * FROM pi_alerts;
-- the user's rows about a subject, through an index of the columns swapped:
-- tool_calls_user is read instead; without it too, the table
SELECT (tool_audit.set_alert_rule('same_subject_hourly', threshold => 3))->'after'->>'threshold' AS threshold;
SELECT (tool_audit.set_alert_rule('distinct_subjects_hourly', threshold => 2, enabled => true))->'after'->>'threshold' AS threshold;
DROP INDEX tool_audit.tool_calls_user_subject;
CREATE INDEX tool_calls_user_subject ON tool_audit.tool_calls (subject_id, user_id, recorded_at);
\c -
\set VERBOSITY terse
SELECT pi_call('pi_read', true, 'pi_u1', 'pi_s1');
SELECT pi_call('pi_read', true, 'pi_u1', 'pi_s1');
SELECT pi_call('pi_read', true, 'pi_u2', 'pi_s1');
SELECT * FROM pi_alerts;
SELECT pi_call('pi_read', true, 'pi_u1', 'pi_s1');
SELECT * FROM pi_alerts;
DROP INDEX tool_audit.tool_calls_user;
CREATE INDEX tool_calls_user ON tool_audit.tool_calls (subject_id);
\c -
\set VERBOSITY terse
SELECT pi_call('pi_read', true, 'pi_u2', 'pi_s1');
SELECT pi_call('pi_read', true, 'pi_u2', 'pi_s2');
SELECT pi_call('pi_read', true, 'pi_u2', 'pi_s1');
SELECT * FROM pi_alerts;
SELECT pi_call('pi_read', true, 'pi_u2', 'pi_s3');
SELECT * FROM pi_alerts;
-- the indexes made again on their columns (a WHERE clause is refused): the same counts
DROP INDEX tool_audit.tool_calls_tool_failures, tool_audit.tool_calls_tool,
           tool_audit.tool_calls_user_subject, tool_audit.tool_calls_user;
CREATE INDEX tool_calls_tool_failures ON tool_audit.tool_calls (tool_name, recorded_at);
CREATE INDEX tool_calls_tool ON tool_audit.tool_calls (tool_name, recorded_at);
CREATE INDEX tool_calls_user_subject ON tool_audit.tool_calls (user_id, subject_id, recorded_at);
CREATE INDEX tool_calls_user ON tool_audit.tool_calls (user_id, recorded_at, id);
\c -
\set VERBOSITY terse
SELECT pi_call('pi_flaky4', false);
SELECT pi_call('pi_flaky4', true);
SELECT pi_call('pi_flaky4', false);
SELECT pi_call('pi_flaky4', false);
SELECT pi_call('pi_read', true, 'pi_u3', 'pi_s1');
SELECT pi_call('pi_read', true, 'pi_u3', 'pi_s2');
SELECT pi_call('pi_read', true, 'pi_u3', 'pi_s3');
SELECT * FROM pi_alerts;

\c :regress_db
SET client_min_messages = warning;
DROP DATABASE regress_tool_audit_probe_indexes;
RESET client_min_messages;
