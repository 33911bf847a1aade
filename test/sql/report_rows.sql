-- The access report as rows (access_report_rows(), paginated by cursor) and
-- the timeline as rows (conversation_events()), 1.5: every access once
-- across pages, admin events about the subject included, each row's hash and
-- integrity (a tampered row named), a bound reader's tenant only, the read
-- recorded, bad arguments refused without echoing them.  In a database of
-- its own.
\set VERBOSITY terse
SELECT current_database() AS regress_db \gset
SET client_min_messages = warning;
DROP DATABASE IF EXISTS regress_tool_audit_rows;
CREATE DATABASE regress_tool_audit_rows TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C';
RESET client_min_messages;
\c regress_tool_audit_rows
SET client_encoding = 'UTF8';
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql
SET client_min_messages = warning;
CREATE EXTENSION tool_audit;
RESET client_min_messages;
SELECT tool_audit.bind_tenant('regress_reader_acme', 'rr_acme');
CREATE TABLE orders (id int PRIMARY KEY, status text);
INSERT INTO orders VALUES (1, 'paid'), (2, 'paid');
SELECT tool_audit.track('public.orders');
GRANT SELECT, UPDATE ON orders TO regress_writer;

-- pat_p: a call and an admin event at the same time, restored as a dump
-- brings them (the admin event sorts first); three calls in one statement
-- (one recorded_at: the ties go by id) and an admin event about pat_p and
-- conv_p; a call begun and ended (one access) changing a row; an
-- impersonation of pat_p; a call of another tenant; a call of another subject
SET tool_audit.restoring = on;
INSERT INTO tool_audit.tool_calls (id, event_id, recorded_at, recorded_by, tenant_id, user_id, tool_name,
                                   subject_id, success)
VALUES (900, '00000000-0000-4000-8000-000000000900', '2025-03-01 10:00:00+00', 'app', 'rr_acme', 'usr_old',
        'get_record', 'pat_p', true);
INSERT INTO tool_audit.admin_events (id, event_id, occurred_at, recorded_by, event_type, actor, tenant_id, payload)
VALUES (900, '00000000-0000-4000-8000-000000000901', '2025-03-01 10:00:00+00', 'app', 'record.exported', 'adm_old',
        'rr_acme', '{"subject_id": "pat_p"}');
RESET tool_audit.restoring;
SET ROLE regress_writer;
BEGIN;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, conversation_id, turn_number, user_id, user_role,
                                   subject_id, purpose, arguments, success, duration_ms)
VALUES ('get_record', 'rr_acme', 'conv_p', 1, 'usr_a', 'nurse', 'pat_p', 'treatment', '{"n": 1}', true, 5),
       ('get_labs', 'rr_acme', 'conv_p', 2, 'usr_a', 'nurse', 'pat_p', 'treatment', '{"n": 2}', true, 1.23456),
       ('get_notes', 'rr_acme', 'conv_p', 3, 'usr_a', 'nurse', 'pat_p', 'treatment',
        '{"n": 3, "card": "4111 1111 1111 1111"}', false, 7);
SELECT (tool_audit.log_event('record.flagged', 'adm_a', '{"subject_id": "pat_p", "conversation_id": "conv_p"}',
                             '{"tenant_id": "rr_acme"}')).id IS NOT NULL AS logged;
COMMIT;
BEGIN;
SELECT tool_audit.begin_call('update_order', '{"order_id": 1}',
                             '{"tenant_id": "rr_acme", "conversation_id": "conv_p", "turn_number": 4,
                               "user_id": "usr_a", "subject_id": "pat_p", "break_glass": true,
                               "break_glass_reason": "patient unconscious"}') AS call \gset
UPDATE orders SET status = 'refunded' WHERE id = 1;
SELECT (tool_audit.end_call(:'call', '{"status": "refunded"}', 12.34567)).success;
COMMIT;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, user_id, subject_id, success)
VALUES ('get_record', 'rr_other', 'usr_o', 'pat_p', true),
       ('get_record', 'rr_acme', 'usr_a', 'pat_q', true);
RESET ROLE;
SET ROLE regress_admin;
SELECT tool_audit.start_impersonation('adm_i', 'pat_p', 'support ticket 7', 10, 'rr_acme') IS NOT NULL AS impersonating;
RESET ROLE;

-- ---- the whole report in one page: in time order, admin events included ----
SET ROLE regress_admin;
SELECT kind, recorded_at = '2025-03-01 10:00:00+00' AS restored, started_at IS NULL AS no_client_time, tenant_id, accessed_by, role, what, purpose, success, break_glass,
       impersonated_by, arguments, length(row_hash) AS hash_len, integrity
  FROM tool_audit.access_report_rows('pat_p', '-infinity', 'infinity');
-- the row hash is the stored one, the cursor names the row
SELECT bool_and(r.row_hash = encode(t.row_hash, 'hex')) AS hashes,
       bool_and(r.cursor LIKE '%|tool_call|' || r.id) AS cursors
  FROM tool_audit.access_report_rows('pat_p', '-infinity', 'infinity') r
  JOIN tool_audit.tool_calls t ON t.id = r.id AND r.kind = 'tool_call';
-- the same accesses as access_report() counts
SELECT (tool_audit.access_report('pat_p', '-infinity', 'infinity'))->'total_accesses' AS report_total,
       count(*) FILTER (WHERE kind = 'tool_call') AS row_calls
  FROM tool_audit.access_report_rows('pat_p', '-infinity', 'infinity');

-- ---- pages of 1, 2 and 4 through the cursor: every access exactly once, in
-- order (the two rows of one time split across pages of 1) ----
CREATE TEMP TABLE pages (size int, page int, n int, kind text, id bigint, cursor text);
DO $$
DECLARE
    page_size int;
    cur text;
    p int;
BEGIN
    FOREACH page_size IN ARRAY ARRAY[1, 2, 4] LOOP
        cur := NULL;
        p := 0;
        LOOP
            p := p + 1;
            INSERT INTO pages
            SELECT page_size, p, row_number() OVER (), r.kind, r.id, r.cursor
              FROM tool_audit.access_report_rows('pat_p', '-infinity', 'infinity', cur, page_size) r;
            EXIT WHEN NOT FOUND OR p > 20;
            SELECT x.cursor INTO cur FROM pages x WHERE x.size = page_size AND x.page = p ORDER BY x.n DESC LIMIT 1;
        END LOOP;
    END LOOP;
END
$$;
SELECT size, count(DISTINCT page) AS pages, count(*) AS rows, count(DISTINCT (kind, id)) AS distinct_rows,
       array_agg(kind || id ORDER BY page, n)
       = (SELECT array_agg(kind || id) FROM tool_audit.access_report_rows('pat_p', '-infinity', 'infinity')) AS same_order
  FROM pages GROUP BY size ORDER BY size;
-- a period: only what it covers
SELECT kind, id FROM tool_audit.access_report_rows('pat_p', '2025-01-01', '2025-12-31');
RESET ROLE;

-- ---- a bound reader: its tenant only ----
SET ROLE regress_reader_acme;
SELECT DISTINCT tenant_id FROM tool_audit.access_report_rows('pat_p', '-infinity', 'infinity');
RESET ROLE;
-- the writer and nobody run no report
SET ROLE regress_writer;
SELECT regress_try($$SELECT * FROM tool_audit.access_report_rows('pat_p', '-infinity', 'infinity')$$);
SELECT regress_try($$SELECT * FROM tool_audit.conversation_events('conv_p')$$);
RESET ROLE;

-- ---- each read recorded ----
SET ROLE regress_admin;
SELECT count(*) AS rows FROM tool_audit.access_report_rows('pat_p', '-infinity', 'infinity', NULL, 3);
SELECT e.actor, e.payload->>'function' AS function, e.payload->'arguments' AS arguments, e.payload->'rows' AS rows
  FROM tool_audit.admin_events e WHERE e.event_type = 'audit.read' ORDER BY e.id DESC LIMIT 1;

-- ---- bad arguments: named, the value not echoed ----
SELECT regress_try($$SELECT * FROM tool_audit.access_report_rows(NULL, '-infinity', 'infinity')$$);
SELECT regress_try($$SELECT * FROM tool_audit.access_report_rows('pat_p', NULL, 'infinity')$$);
SELECT regress_try($$SELECT * FROM tool_audit.access_report_rows('pat_p', 'infinity', '-infinity')$$);
SELECT regress_try($$SELECT * FROM tool_audit.access_report_rows('pat_p', '-infinity', 'infinity', NULL, 0)$$);
SELECT regress_try($$SELECT * FROM tool_audit.access_report_rows('pat_p', '-infinity', 'infinity', NULL, 10001)$$);
SELECT regress_try($$SELECT * FROM tool_audit.access_report_rows('pat_p', '-infinity', 'infinity', 'secret-4111', 5)$$);
SELECT regress_try($$SELECT * FROM tool_audit.access_report_rows('pat_p', '-infinity', 'infinity', '2026-13-45T00:00:00.000000Z|tool_call|1', 5)$$);
SELECT regress_try($$SELECT * FROM tool_audit.conversation_events(NULL)$$);

-- ---- the timeline as rows ----
SELECT kind, turn_number, user_id, what, detail - 'call_id' AS detail, success, duration_ms, integrity
  FROM tool_audit.conversation_events('conv_p');
SELECT count(*) FROM tool_audit.conversation_events('no_such_conversation');
SELECT e.payload->>'function' AS function, e.payload->'arguments' AS arguments, e.payload->'rows' AS rows
  FROM tool_audit.admin_events e WHERE e.event_type = 'audit.read' ORDER BY e.id DESC LIMIT 1;
RESET ROLE;
SET ROLE regress_reader_acme;
SELECT count(*) AS acme_events FROM tool_audit.conversation_events('conv_p');
RESET ROLE;

-- ---- a tampered row is named: a superuser edits a row past the append-only
-- triggers switched off in the catalog (as test/sql/upgrade.sql does).  With
-- tool_audit preloaded its executor hook refuses the UPDATE all the same and
-- nothing is named: that run's output is report_rows_1.out ----
UPDATE pg_trigger SET tgenabled = 'D'
 WHERE tgname IN ('tool_calls_append_only', 'tool_calls_append_only_row');
\c -
UPDATE tool_audit.tool_calls SET purpose = 'curiosity' WHERE tool_name = 'get_labs';
-- and the ended row of the call begun and ended: named under its started row
UPDATE tool_audit.tool_calls SET error = 'none' WHERE call_phase = 'ended';
UPDATE pg_trigger SET tgenabled = 'A'
 WHERE tgname IN ('tool_calls_append_only', 'tool_calls_append_only_row');
\c -
SET ROLE regress_admin;
SELECT what, purpose, integrity FROM tool_audit.access_report_rows('pat_p', '-infinity', 'infinity')
 WHERE integrity IS NOT NULL;
SELECT what, integrity FROM tool_audit.conversation_events('conv_p') WHERE integrity IS NOT NULL;
RESET ROLE;

\c :regress_db
SET client_min_messages = warning;
DROP DATABASE regress_tool_audit_rows;
