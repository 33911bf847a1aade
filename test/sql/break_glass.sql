-- Break-the-glass: a call logged with "break_glass": true and its
-- "break_glass_reason" in the context (or an INSERT that brings
-- break_glass = true) is flagged in its row; without a reason it is refused.
-- access_report() shows it; the queue lists the accesses no review has
-- closed; review_break_glass() records a review, audited, once.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql
SELECT current_user AS su \gset
SET client_min_messages = warning;
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'regress_bg_admin') THEN
        CREATE ROLE regress_bg_admin LOGIN IN ROLE tool_audit_admin;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'regress_bg_app') THEN
        CREATE ROLE regress_bg_app LOGIN IN ROLE tool_audit_writer, tool_audit_admin;
    END IF;
END $$;
RESET client_min_messages;
SELECT tool_audit.bind_tenant('regress_reader_acme', 'bg_acme');
SELECT max(id) AS ev0 FROM tool_audit.admin_events \gset
-- the ids this file's rows get are above tc0 (restored rows of other files may have higher ids)
SELECT nextval('tool_audit.tool_calls_id_seq') AS tc0 \gset
-- regress_try() with the ids an error names relative to :tc0 (this file
-- runs alone and after others)
CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE sql AS $$
    SELECT regexp_replace(regress_try(sql), '(tool call|review) \d+', '\1 N', 'g')
$$;

-- ---- flagging: log_call() with the flag and a reason ----
SET ROLE regress_writer;
SELECT id AS bg1, break_glass, session_metadata FROM tool_audit.log_call('get_patient_record', '{"patient_id": "bg_pat"}', '{"success": true}', 12,
       '{"tenant_id": "bg_acme", "user_id": "dr_night", "subject_id": "bg_pat", "purpose": "treatment",
         "break_glass": true, "break_glass_reason": "patient unconscious, ER"}') \gset
SELECT break_glass, session_metadata FROM tool_audit.log_call('get_patient_record', '{}', '{}', 1,
       '{"tenant_id": "bg_globex", "user_id": "dr_g", "subject_id": "bg_pat", "break_glass": true,
         "break_glass_reason": "cardiac arrest"}');
-- without the flag, or false: not flagged, the column left NULL (rows as before)
SELECT break_glass FROM tool_audit.log_call('get_patient_record', '{}', '{}', 1,
       '{"tenant_id": "bg_acme", "user_id": "dr_day", "subject_id": "bg_pat", "purpose": "treatment"}');
SELECT break_glass FROM tool_audit.log_call('get_patient_record', '{}', '{}', 1,
       '{"tenant_id": "bg_acme", "user_id": "dr_day", "subject_id": "bg_pat", "break_glass": false}');
-- refused: no reason, an empty or blank one, a reason that is not text, a flag that is not a boolean
SELECT regress_try($$SELECT tool_audit.log_call('t', '{}', '{}', 1, '{"break_glass": true}')$$);
SELECT regress_try($$SELECT tool_audit.log_call('t', '{}', '{}', 1, '{"break_glass": true, "break_glass_reason": "  "}')$$);
SELECT regress_try($$SELECT tool_audit.log_call('t', '{}', '{}', 1, '{"break_glass": true, "break_glass_reason": 7}')$$);
SELECT regress_try($$SELECT tool_audit.log_call('t', '{}', '{}', 1, '{"break_glass": "sk_live_secretvalue", "break_glass_reason": "x"}')$$);

-- ---- flagging: a plain INSERT, by the column or by session_metadata ----
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, user_id, subject_id, break_glass, session_metadata)
VALUES ('get_patient_record', 'bg_acme', 'nurse_1', 'bg_pat', true, '{"break_glass_reason": "allergy check, ward 3"}')
RETURNING id AS bg3 \gset
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, user_id, subject_id, session_metadata)
VALUES ('get_patient_record', 'bg_acme', 'nurse_2', 'bg_pat', '{"break_glass": true, "break_glass_reason": "night shift"}')
RETURNING id AS bg4 \gset
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (tool_name, break_glass) VALUES ('t', true)$$);
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (tool_name, break_glass, session_metadata) VALUES ('t', true, '{"break_glass": false, "break_glass_reason": "x"}')$$);
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (tool_name, break_glass, session_metadata) VALUES ('t', false, '{"break_glass": true, "break_glass_reason": "x"}')$$);
-- an INSERT that says false keeps it (stored and hashed as given)
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, break_glass) VALUES ('t', 'bg_acme', false);
RESET ROLE;
SELECT id - :tc0 AS n, tenant_id, user_id, break_glass, session_metadata->>'break_glass_reason' AS reason
  FROM tool_audit.tool_calls WHERE id > :tc0 AND tenant_id LIKE 'bg\_%' ORDER BY id;
-- a sanitizing rule an admin adds cannot unflag a call (the flag is read first)
SET ROLE regress_admin;
INSERT INTO tool_audit.sanitize_rules (applies_to, match, pattern, action, priority)
VALUES ('key', 'exact', 'break_glass', 'drop', 1) RETURNING rule_id AS drop_rule \gset
RESET ROLE;
SELECT break_glass, session_metadata FROM tool_audit.log_call('t', '{}', '{}', 1,
       '{"tenant_id": "bg_acme", "break_glass": true, "break_glass_reason": "dropped key"}');
SET ROLE regress_admin;
DELETE FROM tool_audit.sanitize_rules WHERE rule_id = :drop_rule;
RESET ROLE;
SELECT id AS bg5 FROM tool_audit.tool_calls WHERE session_metadata->>'break_glass_reason' = 'dropped key' \gset
SELECT count(*) AS problems FROM tool_audit.verify();

-- ---- access_report(): the flagged rows, and the others as before ----
SELECT a->>'call_id' = ANY (ARRAY[:bg1, :bg3, :bg4]::text[]) AS flagged_call, a->>'accessed_by' AS accessed_by,
       a->>'break_glass' AS break_glass
  FROM jsonb_array_elements(tool_audit.access_report('bg_pat', now() - interval '1 hour', now() + interval '1 hour') -> 'accesses') a
 ORDER BY (a->>'call_id')::bigint;
SELECT tool_audit.access_report('bg_pat', now() - interval '1 hour', now() + interval '1 hour') -> 'break_glass_accesses' AS n;

-- ---- the queue ----
SET ROLE regress_admin;
SELECT call_id - :tc0 AS n, tenant_id, user_id, tool_name, reason, last_outcome FROM tool_audit.break_glass_queue WHERE tenant_id LIKE 'bg\_%' ORDER BY call_id;
-- a reader bound to a tenant sees its tenant's
SET ROLE regress_reader_acme;
SELECT call_id - :tc0 AS n, tenant_id FROM tool_audit.break_glass_queue WHERE tenant_id LIKE 'bg\_%' ORDER BY call_id;
-- writers do not read it
SET ROLE regress_writer;
SELECT regress_try($$SELECT * FROM tool_audit.break_glass_queue$$);
RESET ROLE;

-- ---- reviews: admins only, a fixed set of outcomes, a note ----
SET ROLE regress_writer;
SELECT pg_temp.try(format('SELECT tool_audit.review_break_glass(%s, %L, %L)', :bg1, 'justified', 'ok'));
SET ROLE regress_reader;
SELECT pg_temp.try(format('SELECT tool_audit.review_break_glass(%s, %L, %L)', :bg1, 'justified', 'ok'));
SET ROLE regress_admin;
SELECT pg_temp.try(format('SELECT tool_audit.review_break_glass(%s, %L, %L)', :bg1, 'fine', 'ok'));
SELECT pg_temp.try(format('SELECT tool_audit.review_break_glass(%s, %L, %L)', :bg1, 'justified', ' '));
SELECT pg_temp.try(format('SELECT tool_audit.review_break_glass(%s, %L, %L)', 999999999, 'justified', 'ok'));
SELECT pg_temp.try(format('SELECT tool_audit.review_break_glass(%s, %L, %L)', :tc0 + 3, 'justified', 'ok'));
-- the review tables are written by the function only
SELECT pg_temp.try(format('INSERT INTO tool_audit.break_glass_reviews (call_id, call_event_id, outcome, note, reviewed_by, reviewed_login, admin_event_id) VALUES (%s, gen_random_uuid(), %L, %L, %L, %L, 1)', :bg1, 'justified', 'x', 'x', 'x'));
-- needs_followup keeps it in the queue; a closing review is final
SELECT tool_audit.review_break_glass(:bg1, 'needs_followup', 'ask the ER lead') IS NOT NULL AS reviewed;
SELECT call_id - :tc0 AS n, last_outcome, last_reviewed_by FROM tool_audit.break_glass_queue WHERE call_id = :bg1;
SELECT tool_audit.review_break_glass(:bg1, 'justified', 'ER lead confirmed') IS NOT NULL AS reviewed;
SELECT pg_temp.try(format('SELECT tool_audit.review_break_glass(%s, %L, %L)', :bg1, 'unjustified', 'second thoughts'));
SELECT tool_audit.review_break_glass(:bg3, 'unjustified', 'no emergency') IS NOT NULL AS reviewed;
SELECT pg_temp.try(format('SELECT tool_audit.review_break_glass(%s, %L, %L)', :bg3, 'unjustified', 'again'));
SELECT call_id - :tc0 AS n FROM tool_audit.break_glass_queue WHERE tenant_id LIKE 'bg\_%' ORDER BY call_id;
RESET ROLE;
-- a role cannot review an access it recorded itself
\c - regress_bg_app
SELECT (tool_audit.log_call('t', '{}', '{}', 1, '{"tenant_id": "bg_acme", "break_glass": true, "break_glass_reason": "own"}')).break_glass;
SELECT id AS bg6 FROM tool_audit.tool_calls WHERE session_metadata->>'break_glass_reason' = 'own' \gset
SELECT regress_try(format('SELECT tool_audit.review_break_glass(%s, %L, %L)', :bg6, 'justified', 'trust me'));
\c - regress_bg_admin
SELECT tool_audit.review_break_glass(:bg6, 'justified', 'checked') IS NOT NULL AS reviewed;
\c - :su

-- a bound reader sees its tenant's reviews
SET ROLE regress_reader_acme;
SELECT call_id - :tc0 AS n, outcome, note, reviewed_by FROM tool_audit.break_glass_reviews ORDER BY review_id;
RESET ROLE;

-- ---- every review an audited event with the review before and after ----
SELECT event_type, actor, tenant_id, reason, (payload->>'call_id')::bigint - :tc0 AS n, payload->>'outcome' AS outcome,
       payload->'before'->>'outcome' AS before, payload->'after'->>'outcome' AS after
  FROM tool_audit.admin_events WHERE id > :ev0 AND event_type = 'tool_audit.break_glass.review' ORDER BY id;
SELECT count(*) AS problems FROM tool_audit.verify();
