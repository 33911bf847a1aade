-- The story scripts/demo.sh tells (psql script; see the README).
\pset footer off
\set VERBOSITY terse
SET client_min_messages = warning;
\echo
\echo '== 1. Install tool_audit and give the application and an auditor their roles'
CREATE EXTENSION IF NOT EXISTS tool_audit;
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'demo_support_app') THEN
        CREATE ROLE demo_support_app;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'demo_auditor_acme') THEN
        CREATE ROLE demo_auditor_acme;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'demo_compliance_stmary') THEN
        CREATE ROLE demo_compliance_stmary;
    END IF;
END $$;
GRANT tool_audit_writer TO demo_support_app;
GRANT tool_audit_reader TO demo_auditor_acme, demo_compliance_stmary;
SELECT tool_audit.bind_tenant('demo_auditor_acme', 'acme') IS NOT NULL AS auditor_bound_to_acme,
       tool_audit.bind_tenant('demo_compliance_stmary', 'stmary') IS NOT NULL AS officer_bound_to_stmary;
SELECT 'conv_' || substr(md5(random()::text), 1, 8) AS conv \gset
\echo 'conversation:' :conv

\echo
\echo '== 2. usr_98765 (support_agent) talks to gpt-4.1; every tool call is logged by the app (tool_audit_writer)'
SET ROLE demo_support_app;
CREATE TEMP TABLE ctx AS
SELECT jsonb_build_object('conversation_id', :'conv', 'user_id', 'usr_98765', 'user_role', 'support_agent',
                          'model', 'gpt-4.1', 'tenant_id', 'acme', 'client_ip', '10.0.1.5',
                          'user_agent', 'SupportDashboard/2.1') AS c;
SELECT id, turn_number AS turn, tool_name, success FROM tool_audit.log_call(
    'get_customer', '{"customer_id": "C-123"}',
    '{"customer_id": "C-123", "name": "Jane Roe", "tier": "gold"}', 45,
    (SELECT c || '{"turn_number": 1}' FROM ctx));
SELECT id, turn_number AS turn, tool_name, success FROM tool_audit.log_call(
    'get_order', '{"order_id": "ORD-456"}',
    jsonb_build_object('order_id', 'ORD-456', 'status', 'shipped',
        'items', (SELECT jsonb_agg(jsonb_build_object('sku', 'SKU-' || g, 'title', 'Item number ' || g))
                    FROM generate_series(1, 40) g)), 62,
    (SELECT c || '{"turn_number": 2}' FROM ctx));
SELECT id, turn_number AS turn, tool_name, success, error FROM tool_audit.log_call(
    'update_order_status', '{"order_id": "ORD-456", "status": "cancelled"}',
    '{"error": "Cannot cancel shipped order", "error_type": "ValueError"}', 38,
    (SELECT c || '{"turn_number": 3}' FROM ctx));
SELECT id, turn_number AS turn, tool_name, success FROM tool_audit.log_call(
    'initiate_return', '{"order_id": "ORD-456"}', '{"return_id": "RET-789", "status": "created"}', 156,
    (SELECT c || '{"turn_number": 3, "call_trigger": "follow_up"}' FROM ctx));
-- the customer proves who they are: a password and an SSN in the arguments
SELECT id, turn_number AS turn, tool_name, success FROM tool_audit.log_call(
    'verify_identity', '{"customer_id": "C-123", "password": "hunter2", "ssn": "078-05-1120",
                         "note": "caller read SSN 078-05-1120 aloud"}',
    '{"verified": true, "customer_id": "C-123"}', 210,
    (SELECT c || '{"turn_number": 4, "purpose": "identity_check", "subject_id": "C-123"}' FROM ctx));
-- an ORM writes a row with a plain INSERT: the same C trigger sanitizes it
INSERT INTO tool_audit.tool_calls (conversation_id, turn_number, user_id, model, tenant_id, tool_name,
                                   arguments, result_summary, duration_ms)
VALUES (:'conv', 5, 'usr_98765', 'gpt-4.1', 'acme', 'send_email',
        '{"email": "jane@example.com", "template": "return_label", "headers": {"Authorization": "Bearer sk-live-abcdefghijklmnopqrstuvwxyz"}}',
        '{"id": "msg_1", "status": "queued"}', 88);
RESET ROLE;
\ir demo_changes.sql

\echo
\echo '== 3. At St Mary''s, a clinical assistant reads and updates patient P-1001''s chart; at night a nurse breaks the glass'
SET ROLE demo_support_app;
SELECT id, tool_name, user_id, purpose, subject_id, success FROM tool_audit.log_call(
    'get_patient_record', '{"patient_id": "P-1001", "patient_name": "John Doe", "sections": ["allergies", "medications"]}',
    '{"patient_id": "P-1001", "allergies": ["penicillin"], "medications": 3}', 41,
    jsonb_build_object('tenant_id', 'stmary', 'conversation_id', :'conv' || '_chart', 'turn_number', 1,
                       'user_id', 'dr_lee', 'user_role', 'physician', 'model', 'gpt-4.1',
                       'purpose', 'treatment', 'subject_id', 'P-1001'));
SELECT id, tool_name, user_id, purpose, subject_id, success FROM tool_audit.log_call(
    'update_medication_list', '{"patient_id": "P-1001", "add": "amoxicillin", "date_of_birth": "1961-07-04"}',
    '{"error": "interaction with penicillin allergy", "error_type": "ClinicalRuleViolation"}', 77,
    jsonb_build_object('tenant_id', 'stmary', 'conversation_id', :'conv' || '_chart', 'turn_number', 2,
                       'user_id', 'dr_lee', 'user_role', 'physician', 'model', 'gpt-4.1',
                       'purpose', 'treatment', 'subject_id', 'P-1001'));
SELECT id, tool_name, user_id, purpose, subject_id, success FROM tool_audit.log_call(
    'get_patient_record', '{"patient_id": "P-1001", "sections": ["medications"]}',
    '{"patient_id": "P-1001", "medications": 3}', 35,
    jsonb_build_object('tenant_id', 'stmary', 'conversation_id', :'conv' || '_night', 'turn_number', 1,
                       'user_id', 'nurse_kim', 'user_role', 'nurse', 'model', 'claude-sonnet-4',
                       'purpose', 'emergency', 'break_glass', true,
                       'break_glass_reason', 'night shift, patient unresponsive', 'subject_id', 'P-1001'));
SELECT id, tool_name, user_id, purpose, subject_id, success FROM tool_audit.log_call(
    'get_invoice', '{"patient_id": "P-2002"}', '{"invoice": "INV-77", "status": "open"}', 19,
    jsonb_build_object('tenant_id', 'stmary', 'user_id', 'clerk_1', 'user_role', 'billing',
                       'model', 'gpt-4.1-mini', 'purpose', 'billing', 'subject_id', 'P-2002'));
RESET ROLE;
\echo 'The nurse''s access is flagged and waits in the review queue; an administrator reviews it (an audited event):'
SELECT call_id, user_id, tool_name, reason FROM tool_audit.break_glass_queue
 WHERE call_id IN (SELECT id FROM tool_audit.tool_calls WHERE conversation_id = :'conv' || '_night');
SELECT tool_audit.review_break_glass(call_id, 'justified', 'ER admission confirmed') AS review_id
  FROM tool_audit.break_glass_queue
 WHERE call_id IN (SELECT id FROM tool_audit.tool_calls WHERE conversation_id = :'conv' || '_night');

\echo
\echo '== 4. An administrator changes the system prompt (an admin event)'
SELECT event_type, actor, tenant_id, reason FROM tool_audit.log_event('prompt.update', 'admin@acme.test',
    '{"before": {"prompt_hash": "sha256:9f2c"}, "after": {"prompt_hash": "sha256:41ab"}}',
    '{"tenant_id": "acme", "reason": "friendlier tone", "source_ip": "192.0.2.10"}');

\echo 'A support admin impersonates a customer (the app records it): the calls made meanwhile carry both identities'
SET ROLE demo_support_app;
SELECT tool_audit.start_impersonation('adm_7', 'usr_1', 'ticket 4711: refund stuck', 30, 'acme') > 0 AS impersonating;
SELECT id AS refund_call FROM tool_audit.log_call('refund_order', '{"order_id": "ORD-9"}', '{"status": "refunded"}', 80,
    jsonb_build_object('tenant_id', 'acme', 'user_id', 'usr_1', 'user_role', 'customer', 'model', 'gpt-4.1')) \gset
SELECT tool_audit.end_impersonation('adm_7', 'usr_1', 'acme') > 0 AS ended;
RESET ROLE;
SELECT tool_audit.attribution(:refund_call);

\echo
\echo '== 5. What was stored: secrets redacted, personal data pseudonymized, results summarized'
\x on
SELECT turn_number AS turn, call_trigger, tool_name, success, arguments, result_summary, error,
       duration_ms, user_id, user_role, model
  FROM tool_audit.tool_calls WHERE conversation_id = :'conv' ORDER BY id;
\x off
\echo 'The SSN is not stored, yet both mentions link to the same keyed pseudonym:'
SELECT tool_name, arguments->>'ssn' AS ssn_field, arguments->>'note' AS note
  FROM tool_audit.tool_calls
 WHERE conversation_id = :'conv' AND arguments->>'ssn' = tool_audit.pseudonymize('078-05-1120');
SELECT event_type, actor, tenant_id, payload, reason FROM tool_audit.admin_events
 WHERE event_type = 'prompt.update' ORDER BY id DESC LIMIT 1;

\echo
\echo '== 6. Nobody edits the record, not even a superuser (each statement below fails)'
\set ON_ERROR_STOP 0
UPDATE tool_audit.tool_calls SET success = true WHERE conversation_id = :'conv';
DELETE FROM tool_audit.tool_calls WHERE conversation_id = :'conv';
TRUNCATE tool_audit.tool_calls;
ALTER TABLE tool_audit.tool_calls DISABLE TRIGGER ALL;
CREATE RULE hide AS ON INSERT TO tool_audit.tool_calls DO INSTEAD NOTHING;
SET session_replication_role = replica;
DELETE FROM tool_audit.tool_calls WHERE conversation_id = :'conv';
RESET session_replication_role;
DROP EXTENSION tool_audit CASCADE;
\set ON_ERROR_STOP 1
SELECT count(*) AS rows_still_there FROM tool_audit.tool_calls WHERE conversation_id = :'conv';

\echo
\echo '== 7. The acme auditor (tool_audit_reader bound to tenant acme) sees acme rows only'
SELECT (tool_audit.log_call('get_invoice', '{"invoice": "INV-1"}', '{"status": "paid"}', 12,
                            '{"tenant_id": "globex", "conversation_id": "conv_other_tenant"}')).id IS NOT NULL AS globex_row_logged;
SET ROLE demo_auditor_acme;
SELECT tenant_id, count(*) AS calls_visible FROM tool_audit.tool_calls GROUP BY 1 ORDER BY 1;
RESET ROLE;

\echo
\echo '== 8. Every row is hashed and chained in commit order; verify() re-checks them all'
SELECT table_name, tenant_id, count(*) AS rows, count(DISTINCT chain_lane) AS lanes, max(chain_seq) AS head
  FROM (SELECT 'tool_calls' AS table_name, tenant_id, chain_lane, chain_seq FROM tool_audit.tool_calls
        UNION ALL
        SELECT 'admin_events', tenant_id, chain_lane, chain_seq FROM tool_audit.admin_events) r
 GROUP BY 1, 2 ORDER BY 1, 2;
SELECT count(*) AS problems_found_by_verify FROM tool_audit.verify();
SELECT jsonb_array_length(d->'heads') AS lane_heads, d->>'key_id' AS signed_with_key,
       left(d->>'signature', 16) || '...' AS signature
  FROM tool_audit.digest() d;

\echo
\echo 'Reports read the same rows: the tool usage across tenants (tool_audit.tool_usage)'
SELECT tool_name, total_calls, success_rate, avg_duration_ms, unique_users
  FROM tool_audit.tool_usage WHERE all_tenants ORDER BY tool_name;
