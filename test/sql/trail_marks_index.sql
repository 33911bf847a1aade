-- The index of tool_audit.trail_marks (1.5, src/trail_mark.c) is a plain
-- one, which the DDL guard lets the extension's owner drop as it lets any
-- plain index go, and make another plain index under its name.  Without it,
-- or with an index on another column in its place, the first row a backend stores in an audit
-- table still finds (or writes) the table's mark: recording, tracked
-- changes and verify() go on as before, instead of every audit write failing
-- with "relation tool_audit.trail_marks_table is missing".  In a database of
-- its own.
\set VERBOSITY terse
SELECT current_database() AS regress_db \gset
SET client_min_messages = warning;
DROP DATABASE IF EXISTS regress_tool_audit_marks_index;
CREATE DATABASE regress_tool_audit_marks_index TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C';
RESET client_min_messages;
\c regress_tool_audit_marks_index
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

\c :regress_db
SET client_min_messages = warning;
DROP DATABASE regress_tool_audit_marks_index;
RESET client_min_messages;
