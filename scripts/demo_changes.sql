-- Part of step 2 of scripts/demo.sh: what the agent's tool calls did to the
-- application's own rows (tracked tables), a call that failed and changed
-- nothing, and the history of one customer record.
\echo
\echo 'The shop''s tables are tracked: every change is linked to the tool call that made it'
CREATE SCHEMA IF NOT EXISTS shop;
CREATE TABLE IF NOT EXISTS shop.customers (id text PRIMARY KEY, name text, email text, ssn text, credit numeric NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS shop.orders (id text PRIMARY KEY, customer_id text REFERENCES shop.customers, status text, total numeric);
INSERT INTO shop.customers VALUES ('C-123', 'Jane Roe', 'jane@example.com', '078-05-1120', 0) ON CONFLICT DO NOTHING;
INSERT INTO shop.orders VALUES ('ORD-456', 'C-123', 'shipped', 25) ON CONFLICT DO NOTHING;
SELECT tool_audit.track(t) IS NOT NULL AS tracked
  FROM unnest('{shop.customers,shop.orders}'::regclass[]) t
 WHERE NOT EXISTS (SELECT FROM tool_audit.tracked_tables k WHERE k.table_name = t::text);
GRANT USAGE ON SCHEMA shop TO demo_support_app;
GRANT SELECT, UPDATE ON shop.customers, shop.orders TO demo_support_app;

SET ROLE demo_support_app;
\echo 'The agent refunds ORD-456: begin_call(), the tool''s own SQL, end_call(), one transaction'
BEGIN;
SELECT tool_audit.begin_call('refund_order', '{"order_id": "ORD-456", "amount": 25}',
         (SELECT c || '{"turn_number": 6, "subject_id": "C-123"}' FROM ctx)) AS refund_call \gset
UPDATE shop.orders SET status = 'refunded' WHERE id = 'ORD-456';
UPDATE shop.customers SET credit = credit + 25 WHERE id = 'C-123';
SELECT call_phase, success FROM tool_audit.end_call(:'refund_call', '{"status": "refunded", "order_id": "ORD-456"}', 120);
COMMIT;
RESET ROLE;
SELECT table_name, operation, row_key, old_values, new_values FROM tool_audit.changes_by_call(:'refund_call');

SET ROLE demo_support_app;
\echo 'The agent then tries to change the email and the SSN; the tool fails and its transaction rolls back'
BEGIN;
SELECT tool_audit.begin_call('update_contact', '{"customer_id": "C-123", "email": "jroe@example.net"}',
         (SELECT c || '{"turn_number": 7, "subject_id": "C-123"}' FROM ctx)) AS failed_call \gset
UPDATE shop.customers SET email = 'jroe@example.net', ssn = '219-09-9999' WHERE id = 'C-123';
ROLLBACK;
SELECT (tool_audit.end_call(:'failed_call', '{"error": "mail server refused the change"}', 80)).success AS ended_successfully;
RESET ROLE;
\echo 'The call is on record (it began, it failed) and it changed nothing:'
SELECT tool_name, state, success, caller_committed FROM tool_audit.calls WHERE call_id = :'failed_call';
SELECT count(*) AS rows_changed FROM tool_audit.changes_by_call(:'failed_call');

SET ROLE demo_support_app;
\echo 'A later, successful contact change, and the history of customer C-123 (the SSN is never stored in clear)'
BEGIN;
SELECT tool_audit.begin_call('update_contact', '{"customer_id": "C-123", "email": "jroe@example.net"}',
         (SELECT c || '{"turn_number": 8, "subject_id": "C-123"}' FROM ctx)) AS contact_call \gset
UPDATE shop.customers SET email = 'jroe@example.net', ssn = '219-09-9999' WHERE id = 'C-123';
SELECT (tool_audit.end_call(:'contact_call', '{"status": "updated"}', 60)).success AS contact_updated;
COMMIT;
RESET ROLE;
SELECT version, operation, changed_by, new_values FROM tool_audit.row_history('shop.customers', '{"id": "C-123"}');
