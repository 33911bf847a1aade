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

\c :regress_db
SET client_min_messages = warning;
DROP DATABASE regress_tool_audit_probe_indexes;
RESET client_min_messages;
