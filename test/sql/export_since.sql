-- export_since() (1.5, issue 16): the audit trail leaving the machine in
-- pages, each page's last row with the cursor after the page.  Pages of a few
-- rows cover every
-- row exactly once, in chain order; rows added between pages come on later
-- pages; each line is the row as export_jsonl() writes it.  In a database of
-- its own, so that the counts do not depend on the other tests.  (A row whose
-- transaction commits after a row with a higher id: the isolation test
-- test/isolation/specs/export_since.spec.)
\set VERBOSITY terse
SELECT current_database() AS regress_db \gset
SET client_min_messages = warning;
DROP DATABASE IF EXISTS regress_tool_audit_export_since;
CREATE DATABASE regress_tool_audit_export_since TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C';
RESET client_min_messages;
\c regress_tool_audit_export_since
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql
SET client_min_messages = warning;
CREATE EXTENSION tool_audit;
RESET client_min_messages;

-- rows of three tables and two tenants
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
SELECT 'tool_' || i, CASE WHEN i % 3 = 0 THEN 'es_globex' ELSE 'es_acme' END, true
  FROM generate_series(1, 10) i;
SELECT event_type FROM tool_audit.log_event('es.test', 'admin', '{"n": 1}', '{"tenant_id": "es_acme"}');
CREATE TABLE es_items (id int PRIMARY KEY, v text);
SELECT tool_audit.track('es_items') IS NOT NULL AS tracked;
INSERT INTO es_items VALUES (1, 'a'), (2, 'b');
UPDATE es_items SET v = 'c' WHERE id = 2;

-- a loader: pages of 4 rows until a short page, each page stored with its
-- cursor in a transaction of its own; each page's read is itself an admin
-- event, found by the next page (a page does not hand out the rows of its own
-- transaction: below)
CREATE TABLE es_loaded (page int, nth bigint, line jsonb, next_cursor jsonb);
CREATE PROCEDURE es_load(max_rows int, INOUT pages int DEFAULT NULL) LANGUAGE plpgsql AS $$
DECLARE
    c jsonb;
    p int := coalesce((SELECT max(page) FROM es_loaded), 0);
    got int;
BEGIN
    LOOP
        c := coalesce((SELECT next_cursor FROM es_loaded ORDER BY page DESC, nth DESC LIMIT 1), '{}');
        p := p + 1;
        INSERT INTO es_loaded
        SELECT p, s.nth, s.line, s.next_cursor
          FROM tool_audit.export_since(c, max_rows) WITH ORDINALITY s(line, next_cursor, nth);
        GET DIAGNOSTICS got = ROW_COUNT;
        COMMIT;
        EXIT WHEN got < max_rows;
    END LOOP;
    pages := p;
END $$;
CALL es_load(4);

-- every row exactly once: all rows but the last page's own read
CREATE VIEW es_all AS
    SELECT 'tool_calls' AS tab, id FROM tool_audit.tool_calls
    UNION ALL SELECT 'admin_events', id FROM tool_audit.admin_events
    UNION ALL SELECT 'data_changes', id FROM tool_audit.data_changes;
SELECT (SELECT count(*) FROM es_loaded) AS loaded,
       (SELECT count(DISTINCT (line->>'table', line->>'id')) FROM es_loaded) AS distinct_loaded,
       (SELECT count(*) FROM es_all) AS stored;
SELECT a.tab, e.event_type, e.payload->>'function' AS fn
  FROM es_all a LEFT JOIN tool_audit.admin_events e ON a.tab = 'admin_events' AND e.id = a.id
 WHERE NOT EXISTS (SELECT FROM es_loaded l WHERE l.line->>'table' = a.tab AND (l.line->>'id')::bigint = a.id);
SELECT line->>'table' AS tab, count(*) FROM es_loaded GROUP BY 1 ORDER BY 1;

-- chain order: within each lane, positions one after another, from 1
SELECT count(*) AS out_of_order FROM (
    SELECT line->>'table' AS tab, line->>'chain_id' AS c, line->>'chain_lane' AS l,
           (line->>'chain_seq')::bigint AS seq,
           row_number() OVER (PARTITION BY line->>'table', line->>'chain_id', line->>'chain_lane'
                              ORDER BY page, nth) AS k
      FROM es_loaded) x
 WHERE seq <> k;
-- the cursor comes on a page's last row only, and is the cursor the page
-- was asked with, each line's lane moved to the line's position: what a
-- loader that stored part of a page works out for itself (es_cursor_after)
CREATE FUNCTION es_cursor_after(c jsonb, lines jsonb[]) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    l jsonb;
BEGIN
    c := '{"admin_events": {}, "tool_calls": {}, "data_changes": {}}' || coalesce(c, '{}');
    FOREACH l IN ARRAY coalesce(lines, '{}') LOOP
        c := jsonb_set(c, ARRAY[l->>'table', (l->>'chain_id') || ':' || (l->>'chain_lane')], l->'chain_seq');
    END LOOP;
    RETURN c;
END $$;
SELECT count(*) FILTER (WHERE next_cursor IS NOT NULL) AS cursors,
       count(DISTINCT page) AS pages,
       count(*) FILTER (WHERE next_cursor IS NOT NULL
                          AND nth <> (SELECT max(nth) FROM es_loaded m WHERE m.page = l.page)) AS cursors_not_last
  FROM es_loaded l;
-- the pages of a loader's table (page, nth, line, next_cursor) whose cursor
-- is not the one before moved by their lines ("first" and "after" aside:
-- which table and lane come first is the function's choice)
CREATE FUNCTION es_page_cursor_mismatches(pages regclass) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    EXECUTE format($q$
        SELECT count(*)
          FROM (SELECT page, array_agg(line ORDER BY nth) AS lines,
                       (array_agg(next_cursor ORDER BY nth DESC))[1] AS after
                  FROM %1$s GROUP BY page) p
         WHERE p.after - '{first,after}'::text[] IS DISTINCT FROM es_cursor_after(
                   (SELECT (array_agg(q.next_cursor ORDER BY q.nth DESC))[1]
                      FROM %1$s q WHERE q.page = p.page - 1),
                   p.lines) - '{first,after}'::text[]$q$, pages) INTO n;
    RETURN n;
END $$;
SELECT es_page_cursor_mismatches('es_loaded') AS page_cursor_mismatch;

-- each line is the row as export_jsonl() writes it
SELECT count(*) AS same_as_export_jsonl FROM es_loaded l
  JOIN tool_audit.export_jsonl('-infinity', 'infinity') j(doc)
    ON j.doc->>'table' = l.line->>'table' AND j.doc->>'id' = l.line->>'id' AND j.doc = l.line;

-- rows added between pages come on later pages, once
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('late_1', 'es_acme', true);
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('late_2', 'es_new', true);
SELECT max(page) AS es_pages_1 FROM es_loaded \gset
INSERT INTO es_items VALUES (3, 'd');
CALL es_load(4);
SELECT line->>'table' AS tab, coalesce(line->>'tool_name', line->>'event_type', line->>'operation') AS what, count(*)
  FROM es_loaded
 WHERE page > :es_pages_1
   AND line->>'event_type' IS DISTINCT FROM 'audit.read'
 GROUP BY 1, 2 ORDER BY 1, 2;
SELECT count(*) - count(DISTINCT (line->>'table', line->>'id')) AS repeated FROM es_loaded;

-- a loader that crashed after storing 2 lines of a page of 5 resumes from the
-- cursor after the second (the page's cursor before it, with the 2 lines'
-- positions): it gets the page's lines 3 to 5 next, nothing twice
CREATE TEMP TABLE es_p1 AS
    SELECT * FROM tool_audit.export_since('{}', 5) WITH ORDINALITY s(line, next_cursor, nth);
SELECT count(next_cursor) AS p1_cursors, (SELECT nth FROM es_p1 WHERE next_cursor IS NOT NULL) AS on_row
  FROM es_p1;
CREATE TEMP TABLE es_p2 AS
    SELECT * FROM tool_audit.export_since(
        es_cursor_after('{}', (SELECT array_agg(line ORDER BY nth) FROM es_p1 WHERE nth <= 2)), 3)
        WITH ORDINALITY s(line, next_cursor, nth);
SELECT (SELECT array_agg(line ORDER BY nth) FROM es_p1 WHERE nth > 2)
     = (SELECT array_agg(line ORDER BY nth) FROM es_p2) AS resumed_exactly;

-- pages inside one transaction: the second does not hand out the first's read
-- record (the transaction's own row, which a rollback would take back, and a
-- later row take its position behind the cursor: test/t/048_export_since_2pc.pl);
-- a page in another transaction does, once the transaction committed
SELECT next_cursor AS es_c0 FROM es_loaded ORDER BY page DESC, nth DESC LIMIT 1 \gset
CREATE TEMP TABLE es_tx (k int, line jsonb, next_cursor jsonb, nth bigint);
BEGIN;
INSERT INTO es_tx SELECT 1, * FROM tool_audit.export_since(:'es_c0', 1000) WITH ORDINALITY;
INSERT INTO es_tx SELECT 2, * FROM tool_audit.export_since(
    coalesce((SELECT next_cursor FROM es_tx ORDER BY k DESC, nth DESC LIMIT 1), :'es_c0'), 1000) WITH ORDINALITY;
COMMIT;
INSERT INTO es_tx SELECT 3, * FROM tool_audit.export_since(
    coalesce((SELECT next_cursor FROM es_tx ORDER BY k DESC, nth DESC LIMIT 1), :'es_c0'), 1000) WITH ORDINALITY;
SELECT k, count(e.line) AS rows, string_agg(DISTINCT e.line->>'event_type', ', ') AS event_types
  FROM generate_series(1, 3) k LEFT JOIN es_tx e USING (k) GROUP BY k ORDER BY k;

-- a reader bound to a tenant pages through its tenant's rows only
SELECT tool_audit.bind_tenant('regress_reader_acme', 'es_acme');
SET ROLE regress_reader_acme;
SELECT line->>'table' AS tab, line->>'tenant_id' AS tenant, count(*)
  FROM tool_audit.export_since('{}', 1000) GROUP BY 1, 2 ORDER BY 1, 2;
RESET ROLE;
-- the read is recorded, with the page size and the cursor's size, not the cursor
SELECT payload->'arguments' AS arguments, payload->'rows' AS rows, actor
  FROM tool_audit.admin_events WHERE event_type = 'audit.read' AND payload->>'function' = 'export_since'
 ORDER BY id DESC LIMIT 1;
-- nobody else may call it
SET ROLE regress_nobody;
SELECT regress_try($$SELECT count(*) FROM tool_audit.export_since('{}', 10)$$);
RESET ROLE;

-- bad arguments: 22023 naming the argument, never the value
SELECT regress_try($$SELECT count(*) FROM tool_audit.export_since('{}', 0)$$);
SELECT regress_try($$SELECT count(*) FROM tool_audit.export_since('{}', 100001)$$);
SELECT regress_try($$SELECT count(*) FROM tool_audit.export_since('{}', NULL)$$);
SELECT regress_try($$SELECT count(*) FROM tool_audit.export_since('"sk-secret-cursor"', 10)$$);
SELECT regress_try($$SELECT count(*) FROM tool_audit.export_since('{"sk_secret_table": {}}', 10)$$);
SELECT regress_try($$SELECT count(*) FROM tool_audit.export_since('{"tool_calls": {"sk-secret": 1}}', 10)$$);
SELECT regress_try($$SELECT count(*) FROM tool_audit.export_since('{"tool_calls": {"1:0": -1}}', 10)$$);
SELECT regress_try($$SELECT count(*) FROM tool_audit.export_since('{"tool_calls": {"1:0": 1.5}}', 10)$$);
SELECT regress_try($$SELECT count(*) FROM tool_audit.export_since('{"tool_calls": {"1:0": "7"}}', 10)$$);
-- the check itself (src/export_cursor.c): the lanes of a cursor, or 22023 for
-- each way a cursor can be wrong, at the edges of its lane keys and positions
SELECT c AS cursor, t.checked, CASE WHEN t.checked = 'ok' THEN tool_audit.export_cursor_lanes(c::jsonb) END AS lanes
  FROM unnest(ARRAY[
    '{}', '{"first": "tool_calls"}', '{"tool_calls": {}, "admin_events": {}, "data_changes": {}}',
    '{"tool_calls": {"1:0": 0, "-9223372036854775808:4294967295": 999999999999999999}, "data_changes": {"7:2": 1e3}, "first": "data_changes"}',
    '[]', '7', 'null', '{"tool_calls": []}', '{"tool_calls": 1}', '{"first": null}', '{"first": "first"}',
    '{"tool_calls": {"1:0": 1.0}}', '{"tool_calls": {"1:0": 1000000000000000000}}', '{"tool_calls": {"1:0": null}}',
    '{"tool_calls": {"1:0": {}}}', '{"tool_calls": {"1:0": [1]}}', '{"tool_calls": {"1:0": true}}',
    '{"tool_calls": {"": 1}}', '{"tool_calls": {":0": 1}}', '{"tool_calls": {"1:": 1}}', '{"tool_calls": {"-:0": 1}}',
    '{"tool_calls": {"--1:0": 1}}', '{"tool_calls": {"1:0:0": 1}}', '{"tool_calls": {"1:-0": 1}}', '{"tool_calls": {" 1:0": 1}}',
    '{"tool_calls": {"1:0\n": 1}}', '{"tool_calls": {"12345678901234567890:0": 1}}', '{"tool_calls": {"1:12345678901": 1}}',
    '{"tool_calls": {"١:0": 1}}', '{"Tool_calls": {}}', '{"tool_calls ": {}}',
    '{"after": {}}', '{"after": {"tool_calls": "-9223372036854775808:2147483647", "admin_events": "9223372036854775807:0"}}',
    '{"after": []}', '{"after": "1:0"}', '{"after": {"first": "1:0"}}', '{"after": {"tool_calls": 1}}',
    '{"after": {"tool_calls": "1:2147483648"}}', '{"after": {"tool_calls": "9223372036854775808:0"}}',
    '{"after": {"tool_calls": "-9223372036854775809:0"}}', '{"after": {"tool_calls": "1:0 "}}',
    '{"tool_calls": {"after": 1}}']) c,
       LATERAL (SELECT regress_try(format('SELECT tool_audit.export_cursor_lanes(%L)', c)) AS checked) t;
-- and differentially: the SQL check the C one replaced (the regular
-- expressions of 1.5's first version) and the C check agree on 4,000 cursors
-- mutated a character at a time from valid ones
CREATE FUNCTION es_cursor_ok_sql(cur jsonb) RETURNS boolean LANGUAGE sql AS $$
    SELECT NOT (jsonb_typeof(cur) <> 'object'
       OR EXISTS (SELECT 1 FROM jsonb_each(cur) t
                   WHERE CASE WHEN t.key = 'first'
                              THEN jsonb_typeof(t.value) <> 'string'
                                   OR NOT (t.value #>> '{}' = ANY (ARRAY['admin_events', 'tool_calls', 'data_changes']))
                              WHEN t.key = 'after'
                              THEN jsonb_typeof(t.value) <> 'object'
                                   OR EXISTS (SELECT 1 FROM jsonb_each(t.value) a
                                               WHERE NOT (a.key = ANY (ARRAY['admin_events', 'tool_calls', 'data_changes']))
                                                  OR jsonb_typeof(a.value) <> 'string'
                                                  OR a.value #>> '{}' !~ '^-?[0-9]{1,19}:[0-9]{1,10}$'
                                                  OR split_part(a.value #>> '{}', ':', 1)::numeric
                                                     NOT BETWEEN -9223372036854775808 AND 9223372036854775807
                                                  OR split_part(a.value #>> '{}', ':', 2)::numeric > 2147483647)
                              ELSE NOT (t.key = ANY (ARRAY['admin_events', 'tool_calls', 'data_changes']))
                                   OR jsonb_typeof(t.value) <> 'object'
                                   OR EXISTS (SELECT 1 FROM jsonb_each(t.value) l
                                               WHERE l.key !~ '^-?[0-9]{1,19}:[0-9]{1,10}$'
                                                  OR jsonb_typeof(l.value) <> 'number'
                                                  OR l.value::text !~ '^[0-9]{1,18}$') END))
$$;
CREATE FUNCTION es_cursor_ok_c(cur jsonb) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tool_audit.export_cursor_lanes(cur);
    RETURN true;
EXCEPTION WHEN invalid_parameter_value THEN
    RETURN false;
END $$;
CREATE FUNCTION es_mutated_cursors(n int) RETURNS SETOF jsonb LANGUAGE plpgsql AS $$
DECLARE
    bases text[] := ARRAY[
        '{"tool_calls": {"1:0": 0, "-9223372036854775808:4294967295": 999999999999999999}, "first": "data_changes"}',
        '{"admin_events": {"12:3": 45}, "data_changes": {"-7:0": 1, "8:1": 2}, "tool_calls": {}}',
        '{"first": "admin_events", "tool_calls": {"1234567890123456789:1234567890": 123456789012345678}}',
        '{"after": {"tool_calls": "-9223372036854775808:2147483647", "data_changes": "922337203685477580:0"}, "admin_events": {}}'];
    alphabet text := '0123456789:-.e+{}[]",  ntfirsabcdl_١';
    t text;
    p int;
BEGIN
    PERFORM setseed(0.16);
    FOR i IN 1 .. n LOOP
        t := bases[1 + floor(random() * 4)::int];
        FOR m IN 0 .. floor(random() * 3)::int LOOP
            p := 1 + floor(random() * length(t))::int;
            t := CASE floor(random() * 3)::int
                 WHEN 0 THEN overlay(t placing substr(alphabet, 1 + floor(random() * length(alphabet))::int, 1) from p for 1)
                 WHEN 1 THEN overlay(t placing '' from p for 1)
                 ELSE overlay(t placing substr(alphabet, 1 + floor(random() * length(alphabet))::int, 1) from p for 0) END;
        END LOOP;
        BEGIN
            RETURN NEXT t::jsonb;
        EXCEPTION WHEN data_exception THEN
            NULL;
        END;
    END LOOP;
END $$;
SELECT count(*) > 1000 AS many_parsed,
       count(*) FILTER (WHERE es_cursor_ok_sql(c)) > 200 AS many_valid,
       count(*) FILTER (WHERE NOT es_cursor_ok_sql(c)) > 200 AS many_invalid,
       count(*) FILTER (WHERE es_cursor_ok_sql(c) <> es_cursor_ok_c(c)) AS disagree
  FROM es_mutated_cursors(4000) c;
-- NULL starts from the first row, like '{}'
SELECT count(*) > 0 AS from_start FROM tool_audit.export_since(NULL, 5);

-- the page's cursor rests on each lane's rows coming together and in position
-- order from the one statement a table, whatever the plan: the function pins
-- index scans and nested loops (without them a page took 30 to 50 times as
-- long), and the caller's other planner settings apply.  With those pushed
-- every way a caller could, joins, memoize, work_mem and parallel query (and
-- force_parallel_mode = on, checked by hand), and index scans turned off by the
-- caller, a loader paging 7 rows at a time still gets every row once, lane by
-- lane in position order, and each page's cursor is the previous one moved by
-- its lines
CREATE TABLE es_hostile (page int, nth bigint, line jsonb, next_cursor jsonb);
CREATE PROCEDURE es_load_hostile(max_rows int) LANGUAGE plpgsql AS $$
DECLARE
    c jsonb := '{}';
    p int := 0;
    got int;
BEGIN
    LOOP
        p := p + 1;
        INSERT INTO es_hostile SELECT p, s.nth, s.line, s.next_cursor
          FROM tool_audit.export_since(c, max_rows) WITH ORDINALITY s(line, next_cursor, nth);
        GET DIAGNOSTICS got = ROW_COUNT;
        c := coalesce((SELECT next_cursor FROM es_hostile WHERE page = p AND next_cursor IS NOT NULL), c);
        COMMIT;
        EXIT WHEN got < max_rows;
    END LOOP;
END $$;
SET enable_nestloop = off;
SET enable_indexscan = off;
SET enable_indexonlyscan = off;
SET enable_memoize = on;
SET work_mem = '64kB';
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET min_parallel_index_scan_size = 0;
CALL es_load_hostile(7);
RESET enable_nestloop;
RESET enable_indexscan;
RESET enable_indexonlyscan;
RESET enable_memoize;
RESET work_mem;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET min_parallel_index_scan_size;
SELECT count(*) - count(DISTINCT (line->>'table', line->>'id')) AS repeated,
       (SELECT count(*) FROM es_all a
         WHERE NOT EXISTS (SELECT FROM es_hostile h
                            WHERE h.line->>'table' = a.tab AND (h.line->>'id')::bigint = a.id)
           AND NOT EXISTS (SELECT FROM tool_audit.admin_events e
                            WHERE a.tab = 'admin_events' AND e.id = a.id
                              AND e.event_type = 'audit.read'
                              AND e.id >= (SELECT max((line->>'id')::bigint) FROM es_hostile
                                            WHERE line->>'event_type' = 'audit.read'))) AS missing,
       count(*) FILTER (WHERE seq <> prev + 1) AS not_in_position_order
  FROM (SELECT line, (line->>'chain_seq')::bigint AS seq,
               lag((line->>'chain_seq')::bigint) OVER (PARTITION BY line->>'table', line->>'chain_id', line->>'chain_lane'
                                                       ORDER BY page, nth) AS prev
          FROM es_hostile) h;
SELECT es_page_cursor_mismatches('es_hostile') AS page_cursor_mismatch;

-- the tables are taken in turn: a page that fills up in one makes the next
-- start with the table after it ("first" in the cursor).  Before, admin_events
-- came first on every page, and a loader's own read record (one a page) kept
-- a loader of pages of one row there for ever: 12 pages got none of the calls
SELECT next_cursor AS es_end FROM tool_audit.export_since('{}', 100000) WHERE next_cursor IS NOT NULL \gset
SELECT :'es_end'::jsonb->>'first' AS first_after_a_short_page;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('fair_1', 'es_fair', true), ('fair_2', 'es_fair', true);
SELECT count(*) AS backlog FROM generate_series(1, 5) i,
       LATERAL tool_audit.log_event('es.fair', 'admin', jsonb_build_object('i', i), '{"tenant_id": "es_fair"}') e;
CREATE TABLE es_fair (page int, line jsonb, next_cursor jsonb);
CREATE PROCEDURE es_load_fair(c jsonb, pages int) LANGUAGE plpgsql AS $$
BEGIN
    FOR p IN 1 .. pages LOOP
        INSERT INTO es_fair SELECT p, s.line, s.next_cursor FROM tool_audit.export_since(c, 1) s;
        c := (SELECT f.next_cursor FROM es_fair f WHERE f.page = p);
        COMMIT;
    END LOOP;
END $$;
CALL es_load_fair(:'es_end', 12);
SELECT page, line->>'table' AS tab, coalesce(line->>'tool_name', line->>'event_type') AS what, next_cursor->>'first' AS next_first
  FROM es_fair WHERE page <= 6 ORDER BY page;
SELECT count(*) FILTER (WHERE line->>'tool_name' LIKE 'fair_%') AS calls_exported,
       count(*) - count(DISTINCT (line->>'table', line->>'id')) AS repeated
  FROM es_fair;
-- the lanes of a table are taken in turn too: a page that fills up in a
-- table leaves its lane in the cursor's "after", and the next page there
-- starts after it.  Before, every page walked the lanes in index order from
-- the first, so a lane that kept growing (here one row a page) kept a loader
-- of pages of one row there for ever: the other lane's row never came
SELECT next_cursor AS es_end2 FROM tool_audit.export_since('{}', 100000) WHERE next_cursor IS NOT NULL \gset
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('lane_a', 'es_lane_a', true), ('lane_b', 'es_lane_b', true);
SELECT tenant_id AS es_busy FROM tool_audit.tool_calls WHERE tool_name IN ('lane_a', 'lane_b')
 ORDER BY chain_id, chain_lane LIMIT 1 \gset
CREATE TABLE es_lanes (page int, line jsonb, next_cursor jsonb);
CREATE PROCEDURE es_load_lanes(c jsonb, busy text, pages int) LANGUAGE plpgsql AS $$
BEGIN
    FOR p IN 1 .. pages LOOP
        INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('busy_' || p, busy, true);
        COMMIT;
        INSERT INTO es_lanes SELECT p, s.line, s.next_cursor FROM tool_audit.export_since(c, 1) s;
        c := (SELECT f.next_cursor FROM es_lanes f WHERE f.page = p);
        COMMIT;
    END LOOP;
END $$;
CALL es_load_lanes(:'es_end2', :'es_busy', 12);
SELECT count(*) FILTER (WHERE line->>'tool_name' IN ('lane_a', 'lane_b') AND line->>'tenant_id' <> :'es_busy') AS quiet_lane_exported,
       count(*) FILTER (WHERE line->>'tool_name' LIKE 'busy_%') > 0 AS busy_lane_exported,
       count(*) - count(DISTINCT (line->>'table', line->>'id')) AS repeated,
       count(*) FILTER (WHERE next_cursor ? 'after') > 0 AS after_in_cursors
  FROM es_lanes;
-- and a loader that pages on to the end after it gets every row once
SELECT count(*) AS rows_left_behind FROM tool_audit.tool_calls t
 WHERE t.tenant_id IN ('es_lane_a', 'es_lane_b')
   AND NOT EXISTS (SELECT FROM es_lanes l WHERE l.line->>'table' = 'tool_calls' AND (l.line->>'id')::bigint = t.id)
   AND NOT EXISTS (SELECT FROM tool_audit.export_since((SELECT next_cursor FROM es_lanes WHERE page = 12), 100000) s
                    WHERE s.line->>'table' = 'tool_calls' AND (s.line->>'id')::bigint = t.id);
-- a cursor's "first" is one of the tables, or the cursor is refused
SELECT regress_try($$SELECT count(*) FROM tool_audit.export_since('{"first": "sk_secret"}', 10)$$);
SELECT regress_try($$SELECT count(*) FROM tool_audit.export_since('{"first": 1}', 10)$$);
SELECT count(*) > 0 AS first_given FROM tool_audit.export_since('{"first": "data_changes"}', 5);

\c :regress_db
