-- tool_audit.data_changes as a full audit table (1.5): hashed like the test
-- vectors, chained by table, tenant and the retention policy of its tracked
-- table, covered by verify(), digest() and verify_digest(), check_row(),
-- tenant row-level security, the exports, the DDL guard, holds,
-- purge_expired() and erase_subject().  Change rows are inserted directly
-- (as the tracking trigger would, as the owner).  In a database of its own
-- (the purge's counts are exact).  Tampering: test/t/020_data_changes.pl.
\set VERBOSITY terse
SELECT current_database() AS regress_db \gset
CREATE DATABASE regress_tool_audit_dc;
\c regress_tool_audit_dc
SET client_min_messages = warning;
CREATE EXTENSION tool_audit;
RESET client_min_messages;
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql

-- ---- the canonical encoding: the row of test/vectors/rows.tsv ----
-- restored with every column given (tool_audit.restoring, a superuser), it
-- hashes to the vector's row_hash
SET tool_audit.restoring = on;
SET TimeZone = 'Pacific/Chatham';
INSERT INTO tool_audit.data_changes (id, event_id, recorded_at, tenant_id, table_name, operation,
                                     row_key, old_values, new_values, call_event_id, txid,
                                     application_name, recorded_by, retention_policy, expires_at)
  VALUES (1000000001, '00000000-0000-4000-8000-00000000dc01', '2026-01-02 03:04:05.678901+00', 'acme',
          'public.customers', 'UPDATE', '{"id": 42}', '{"plan": "basic", "credit": 10.50}',
          '{"plan": "pro", "credit": 0}', '00000000-0000-4000-8000-0000000ca11d', 748,
          'refund-agent', 'app_owner', 'row_changes', '2027-01-02 03:04:05.678901+00');
RESET TimeZone;
RESET tool_audit.restoring;
SELECT encode(row_hash, 'hex') = '2dd550bce16368cdcc05afbb2a34afc2b22b6aa816beeb3f55b6eac4505fa050' AS vector_row_hash,
       chain_id = 3346172013438583822 AS vector_chain_id, chain_seq
  FROM tool_audit.data_changes WHERE id = 1000000001;

-- ---- retention: the policy of the tracked table, else row_changes ----
SELECT policy_name, applies_to, retention_days, matches, is_default
  FROM tool_audit.retention_policies WHERE applies_to = 'data_changes';
SET ROLE regress_admin;
SELECT tool_audit.set_retention_policy('order_changes', 2555, '{public.orders,billing.*}', 'data_changes', 'ledger')
       -> 'after' ->> 'applies_to' AS applies_to;
SELECT regress_try($$SELECT tool_audit.set_retention_policy('order_changes', 2555, NULL, 'tool_calls')$$);
SELECT regress_try($$SELECT tool_audit.set_retention_policy('more_changes', 400, NULL, 'data_changes')$$);
RESET ROLE;
SELECT tool_audit.retention_policy_for('data_changes', 'public.orders') AS orders,
       tool_audit.retention_policy_for('data_changes', 'billing.invoices') AS invoices,
       tool_audit.retention_policy_for('data_changes', 'public.customers') AS customers,
       tool_audit.retention_policy_for('tool_calls', 'public.orders') AS not_for_calls;

-- the calls the changes were made in, and the changes (two tenants)
INSERT INTO tool_audit.tool_calls (event_id, tool_name, tenant_id, user_id, subject_id, conversation_id, success)
  VALUES ('00000000-0000-4000-8000-0000000ca101', 'issue_refund', 'acme', 'agent_1', 'cust-77', 'conv_dc', true),
         ('00000000-0000-4000-8000-0000000ca102', 'update_plan', 'globex', 'agent_2', 'cust-88', 'conv_dc2', true);
INSERT INTO tool_audit.data_changes (table_name, operation, row_key, old_values, new_values, tenant_id, call_event_id)
  VALUES ('public.orders', 'UPDATE', '{"id": 1}', '{"status": "paid"}', '{"status": "refunded"}', 'acme',
          '00000000-0000-4000-8000-0000000ca101'),
         ('public.customers', 'UPDATE', '{"id": "cust-77"}', '{"credit": 0}', '{"credit": 25}', 'acme',
          '00000000-0000-4000-8000-0000000ca101'),
         ('billing.invoices', 'INSERT', '{"id": 9}', '{}', '{"total": 25}', 'acme', NULL),
         ('public.customers', 'UPDATE', '{"id": "cust-88"}', '{"plan": "basic"}', '{"plan": "pro"}', 'globex',
          '00000000-0000-4000-8000-0000000ca102');
SELECT table_name, tenant_id, retention_policy,
       expires_at = recorded_at + interval '1 day' * tool_audit.current_retention_days(retention_policy, tenant_id) AS expiry_ok,
       chain_id = (SELECT c.chain_id FROM tool_audit.data_changes c WHERE c.id = 1000000001) AS vector_chain,
       chain_seq
  FROM tool_audit.data_changes WHERE id < 1000000000 ORDER BY id;
-- a change row's retention is tool_audit's to decide
SELECT regress_try($$INSERT INTO tool_audit.data_changes (table_name, operation, retention_policy) VALUES ('public.t', 'DELETE', 'order_changes')$$);
SELECT regress_try($$INSERT INTO tool_audit.data_changes (table_name, operation, expires_at) VALUES ('public.t', 'DELETE', now())$$);

-- ---- verify(), digest(), verify_digest(), check_row() ----
SELECT * FROM tool_audit.verify();
SELECT * FROM tool_audit.verify_protections();
SELECT tool_audit.digest() AS d \gset
SELECT h->>'table' AS head_table, h->>'tenant' AS tenant, h->>'retention_policy' AS policy, h->'position' AS position
  FROM jsonb_array_elements((:'d'::jsonb)->'heads') h WHERE h->>'table' = 'data_changes' ORDER BY 2, 3;
-- heads are ordered by table: admin_events, data_changes, tool_calls
SELECT array_agg(DISTINCT h->>'table' ORDER BY h->>'table') AS tables,
       (SELECT array_agg(x->>'table') FROM jsonb_array_elements((:'d'::jsonb)->'heads') x)
       = (SELECT array_agg(x->>'table' ORDER BY x->>'table') FROM jsonb_array_elements((:'d'::jsonb)->'heads') x) AS ordered
  FROM jsonb_array_elements((:'d'::jsonb)->'heads') h;
SELECT * FROM tool_audit.verify_digest(:'d');
-- a digest naming a table that is not an audit table is refused
SELECT regress_try(format($$SELECT * FROM tool_audit.verify_digest(%L)$$,
       jsonb_set(:'d'::jsonb, '{heads,0,table}', '"data_change"')));
-- a head of data_changes the table no longer reaches is reported (the edited
-- digest's signature no longer matches when the server signs digests)
SELECT table_name, position, problem FROM tool_audit.verify_digest(
       jsonb_set(:'d'::jsonb, '{heads}', ((:'d'::jsonb)->'heads') || jsonb_build_array(jsonb_build_object(
           'chain', '12345', 'table', 'data_changes', 'tenant', null, 'retention_policy', null,
           'lane', 0, 'position', 3, 'hash', repeat('ab', 32)))))
 WHERE problem <> 'digest signature invalid';
SELECT count(*) AS rows, count(*) FILTER (WHERE tool_audit.check_row(d) IS NULL) AS intact,
       bool_and(tool_audit.compute_row_hash(d) = d.row_hash) AS hashes
  FROM tool_audit.data_changes d;

-- ---- tenant row-level security ----
SET ROLE regress_admin;
SELECT tool_audit.bind_tenant('regress_reader_acme', 'acme');
SELECT count(*) AS admin_sees FROM tool_audit.data_changes;
RESET ROLE;
SET ROLE regress_reader_acme;
SELECT DISTINCT tenant_id FROM tool_audit.data_changes ORDER BY 1;
SELECT count(*) AS globex_rows_seen FROM tool_audit.data_changes WHERE tenant_id = 'globex';
SET tool_audit.tenant = 'globex';
SELECT count(*) AS rows_seen_widening FROM tool_audit.data_changes;
RESET tool_audit.tenant;
SELECT count(*) AS csv_rows, count(*) FILTER (WHERE tenant_id <> 'acme') AS other_tenants FROM tool_audit.data_changes_csv;
RESET ROLE;
SET ROLE regress_reader;
SET tool_audit.tenant = 'globex';
SELECT DISTINCT tenant_id FROM tool_audit.data_changes;
RESET tool_audit.tenant;
RESET ROLE;
-- writers neither read nor write change rows (the tracking trigger writes as the owner)
SET ROLE regress_writer;
SELECT regress_try($$SELECT count(*) FROM tool_audit.data_changes$$);
SELECT regress_try($$INSERT INTO tool_audit.data_changes (table_name, operation) VALUES ('public.t', 'DELETE')$$);
RESET ROLE;
SET ROLE regress_nobody;
SELECT regress_try($$SELECT count(*) FROM tool_audit.data_changes$$);
SELECT regress_try($$SELECT count(*) FROM tool_audit.data_changes_csv$$);
RESET ROLE;
SELECT r.rolname, has_table_privilege(r.rolname, 'tool_audit.data_changes', 'SELECT') AS sel,
       has_table_privilege(r.rolname, 'tool_audit.data_changes', 'INSERT') AS ins,
       has_function_privilege(r.rolname, 'tool_audit.check_row(tool_audit.data_changes)', 'EXECUTE') AS check_row
  FROM pg_roles r WHERE r.rolname LIKE 'tool\_audit\_%' ORDER BY 1;

-- ---- exports ----
SELECT doc->>'table' AS tab, doc->>'table_name' AS table_name, doc->>'operation' AS op,
       doc->'new_values' AS new_values, length(doc->>'row_hash') AS hash_hex,
       doc->>'chain_id' = (SELECT d.chain_id::text FROM tool_audit.data_changes d WHERE d.id = (doc->>'id')::bigint) AS chain_id_text
  FROM tool_audit.export_jsonl('-infinity', 'infinity') doc
 WHERE doc->>'table' = 'data_changes' ORDER BY (doc->>'id')::bigint;
SELECT count(*) AS export_rows,
       count(*) FILTER (WHERE doc->>'table' = 'data_changes') AS change_rows
  FROM tool_audit.export_jsonl('-infinity', 'infinity') doc;
SELECT table_name, operation, new_values, row_hash = encode((SELECT d.row_hash FROM tool_audit.data_changes d WHERE d.id = c.id), 'hex') AS hex_hash
  FROM tool_audit.data_changes_csv c WHERE id < 1000000000 ORDER BY id;

-- ---- the DDL guard protects it like the other audit tables ----
SELECT regress_try($$ALTER TABLE tool_audit.data_changes DISABLE TRIGGER data_changes_append_only$$);
SELECT regress_try($$ALTER TABLE tool_audit.data_changes DISABLE TRIGGER ALL$$);
SELECT regress_try($$ALTER TABLE tool_audit.data_changes ENABLE REPLICA TRIGGER data_changes_append_only_row$$);
SELECT regress_try($$ALTER TABLE tool_audit.data_changes DISABLE TRIGGER data_changes_before_insert$$);
SELECT regress_try($$DROP TRIGGER data_changes_append_only ON tool_audit.data_changes$$);
SELECT regress_try($$DROP TRIGGER data_changes_before_insert ON tool_audit.data_changes$$);
SELECT regress_try($$CREATE RULE swallow AS ON DELETE TO tool_audit.data_changes DO INSTEAD NOTHING$$);
SELECT regress_try($$ALTER TABLE tool_audit.data_changes SET UNLOGGED$$);
SELECT regress_try($$ALTER TABLE tool_audit.data_changes DROP COLUMN old_values$$);
SELECT regress_try($$ALTER TABLE tool_audit.data_changes DISABLE ROW LEVEL SECURITY$$);
SELECT regress_try($$DROP INDEX tool_audit.data_changes_chain_position$$);
SELECT regress_try($$DROP TABLE tool_audit.data_changes$$);
SELECT regress_try($$TRUNCATE tool_audit.data_changes$$);
SELECT regress_try($$DELETE FROM tool_audit.data_changes$$);
SELECT regress_try($$UPDATE tool_audit.data_changes SET new_values = '{}'$$);
SELECT regress_try($$DROP EXTENSION tool_audit$$);
SELECT tgname, tgenabled FROM pg_trigger
 WHERE tgrelid = 'tool_audit.data_changes'::regclass ORDER BY 1;

-- ---- holds: a change is held through the call it was made in ----
SET ROLE regress_admin;
SELECT tool_audit.place_hold('{"subject_id": "cust-77"}', 'dispute 12') AS hold \gset
SELECT table_name, rows_covered FROM tool_audit.hold_report() WHERE hold_id = :hold ORDER BY 1;
RESET ROLE;

-- ---- purge: expired change rows leave through the sanctioned path ----
-- rows born old (restored with their id, time, policy and expiry): three of
-- tenant pz expired (one of them made in the held call), one of tenant pz
-- kept by its longer policy
SET tool_audit.restoring = on;
INSERT INTO tool_audit.data_changes (id, recorded_at, tenant_id, table_name, operation, row_key, new_values,
                                     call_event_id, recorded_by, retention_policy, expires_at)
  SELECT nextval('tool_audit.data_changes_id_seq'), now() - interval '800 days' + g * interval '1 minute', 'pz',
         'public.customers', 'INSERT', jsonb_build_object('id', g), '{"plan": "basic"}',
         CASE WHEN g = 2 THEN '00000000-0000-4000-8000-0000000ca101'::uuid END, 'app_owner',
         'row_changes', now() - interval '435 days'
    FROM generate_series(1, 3) g;
INSERT INTO tool_audit.data_changes (id, recorded_at, tenant_id, table_name, operation, row_key, new_values,
                                     recorded_by, retention_policy, expires_at)
  VALUES (nextval('tool_audit.data_changes_id_seq'), now() - interval '800 days', 'pz', 'public.orders', 'INSERT',
          '{"id": 5}', '{"total": 5}', 'app_owner', 'order_changes', now() + interval '1755 days');
RESET tool_audit.restoring;
-- and a new change continues the chain
INSERT INTO tool_audit.data_changes (table_name, operation, row_key, tenant_id) VALUES ('public.customers', 'DELETE', '{"id": 4}', 'pz');
SELECT * FROM tool_audit.verify();
SET ROLE regress_admin;
SELECT tool_audit.purge_expired(dry_run => true) -> 'counts' AS would_purge;
SELECT tool_audit.purge_expired() AS r \gset
RESET ROLE;
SELECT (:'r'::jsonb)->'rows' AS rows, (:'r'::jsonb)->'counts' AS counts;
SELECT table_name, tenant_id, retention_policy, first_seq, last_seq, rows_removed
  FROM tool_audit.purge_anchors ORDER BY table_name, first_seq;
SELECT tenant_id, row_key, retention_policy, chain_seq FROM tool_audit.data_changes WHERE tenant_id = 'pz' ORDER BY chain_seq, id;
SELECT * FROM tool_audit.verify();
SELECT count(*) FILTER (WHERE tool_audit.check_row(d) IS NOT NULL) AS rows_not_intact FROM tool_audit.data_changes d;
-- the digest after the purge verifies, and a change after it continues the lane
SELECT * FROM tool_audit.verify_digest(tool_audit.digest());
INSERT INTO tool_audit.data_changes (table_name, operation, row_key, tenant_id) VALUES ('public.customers', 'DELETE', '{"id": 6}', 'pz');
SELECT chain_seq FROM tool_audit.data_changes WHERE row_key = '{"id": 6}';
SELECT * FROM tool_audit.verify();

-- ---- erasure: the subject's change values replaced, every chain verifying ----
SET ROLE regress_admin;
SELECT tool_audit.release_hold(:hold, 'dispute settled') IS NOT NULL AS released;
SELECT r - 'erase_event_id' - 'erasures_hash' - 'hold_ids' AS erased
  FROM tool_audit.erase_subject('cust-77', 'request 9', 'GDPR Art. 17(1)(a)') r;
RESET ROLE;
SELECT table_name, operation, row_key, old_values, new_values, recorded_by
  FROM tool_audit.data_changes WHERE call_event_id = '00000000-0000-4000-8000-0000000ca101' ORDER BY id;
SELECT table_name, erased_columns FROM tool_audit.erasures WHERE table_name = 'data_changes' ORDER BY row_id;
SELECT * FROM tool_audit.verify();
SELECT count(*) FILTER (WHERE tool_audit.check_row(d) IS NOT NULL) AS rows_not_intact FROM tool_audit.data_changes d;
-- the other tenant's change is untouched
SELECT new_values FROM tool_audit.data_changes WHERE tenant_id = 'globex';

\c :regress_db
DROP DATABASE regress_tool_audit_dc;
