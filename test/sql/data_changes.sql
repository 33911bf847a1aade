-- tool_audit.data_changes (1.5): the insert trigger stamps, sanitizes, hashes
-- and chains a row like those of the other audit tables.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql
BEGIN;
INSERT INTO tool_audit.data_changes (table_name, operation, row_key, old_values, new_values, tenant_id)
  VALUES ('public.customers', 'UPDATE', '{"id": 1}',
          '{"ssn": "078-05-1120", "plan": "basic"}',
          '{"ssn": "219-09-9999", "plan": "pro", "api_key": "sk-abcdefghijklmnopqrstuvwxyz1234"}', 'acme_dc');
-- the ssn is pseudonymized, the key redacted, the plan kept
SELECT table_name, operation, row_key,
       old_values->>'plan' AS old_plan, new_values->>'plan' AS new_plan,
       old_values->>'ssn' LIKE 'hmac:%' AS old_ssn_pseudonymized,
       new_values->>'ssn' LIKE 'hmac:%' AS new_ssn_pseudonymized,
       new_values->>'api_key' AS api_key,
       txid = txid_current() AS txid_of_writer,
       recorded_by = current_user AS recorded_by_me,
       chain_seq, length(row_hash) AS hash_bytes
  FROM tool_audit.data_changes WHERE tenant_id = 'acme_dc';
COMMIT;
-- the id, the transaction and the row's place are tool_audit's to decide
SELECT regress_try($$INSERT INTO tool_audit.data_changes (table_name, operation, txid) VALUES ('public.t', 'DELETE', 5)$$);
SELECT regress_try($$INSERT INTO tool_audit.data_changes (id, table_name, operation) VALUES (99, 'public.t', 'DELETE')$$);
SELECT regress_try($$INSERT INTO tool_audit.data_changes (table_name, operation) VALUES ('public.t', 'MERGE')$$);
-- and it is append-only
SELECT regress_try($$UPDATE tool_audit.data_changes SET operation = 'INSERT'$$);
SELECT regress_try($$DELETE FROM tool_audit.data_changes$$);
SELECT regress_try($$TRUNCATE tool_audit.data_changes$$);
SELECT count(*) AS rows FROM tool_audit.data_changes WHERE tenant_id = 'acme_dc';
