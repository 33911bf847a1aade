-- Attacks on export_since(cursor, max_rows) (1.5): forged and malformed
-- cursors, a bound reader reaching for another tenant's rows, callers that
-- may not read the trail.  doc/export-since.md.  In a database of its own.
\set VERBOSITY terse
SELECT current_database() AS regress_db \gset
SET client_min_messages = warning;
DROP DATABASE IF EXISTS regress_tool_audit_es_attack;
CREATE DATABASE regress_tool_audit_es_attack TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C';
RESET client_min_messages;
\c regress_tool_audit_es_attack
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql
SET client_min_messages = warning;
CREATE EXTENSION tool_audit;
RESET client_min_messages;

INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
SELECT 'call_' || i, t, true FROM (VALUES ('ea'), ('eb')) v(t), generate_series(1, 3) i;
SELECT tool_audit.bind_tenant('regress_reader_acme', 'ea');
-- eb's chain, as the superuser sees it
SELECT chain_id::text || ':' || chain_lane AS eb_lane FROM tool_audit.tool_calls
 WHERE tenant_id = 'eb' LIMIT 1 \gset

-- 1. a bound reader's cursor names eb's lane at position 0: it reaches no eb
-- row (the lanes come from what row-level security shows it), and the entry
-- is carried along, not acted on
SET ROLE regress_reader_acme;
SELECT count(*) AS rows, count(*) FILTER (WHERE line->>'tenant_id' = 'eb') AS eb_rows
  FROM tool_audit.export_since(jsonb_build_object('tool_calls', jsonb_build_object(:'eb_lane', 0)), 100);
-- 2. nor by naming eb as its tenant for the session
SET tool_audit.tenant = 'eb';
SELECT count(*) AS rows FROM tool_audit.export_since('{}', 100);
RESET tool_audit.tenant;
RESET ROLE;
-- where that read was recorded: in ea's chain, the reader's own tenant.
-- record_read() used to take the tenant of the setting as the reader chose
-- it, so that a reader bound to ea wrote its audit.read event (its role and
-- its bound tenants) into eb's chain, seen by eb's readers, not ea's
SELECT e.tenant_id, e.payload->'bound_tenants' AS bound_tenants
  FROM tool_audit.admin_events e
 WHERE e.event_type = 'audit.read' ORDER BY e.id DESC LIMIT 1;

-- 3. who may not call it
SET ROLE regress_writer;
SELECT regress_try($$SELECT count(*) FROM tool_audit.export_since('{}', 10)$$);
RESET ROLE;
SET ROLE regress_nobody;
SELECT regress_try($$SELECT count(*) FROM tool_audit.export_since('{}', 10)$$);
RESET ROLE;

-- 4. malformed cursors: 22023 naming the argument, never the value
SELECT regress_try($$SELECT count(*) FROM tool_audit.export_since('{"tool_calls": ["sk-secret"]}', 10)$$);
SELECT regress_try($$SELECT count(*) FROM tool_audit.export_since('{"tool_calls": "sk-secret"}', 10)$$);
SELECT regress_try($$SELECT count(*) FROM tool_audit.export_since('null', 10)$$);
SELECT regress_try($$SELECT count(*) FROM tool_audit.export_since('[]', 10)$$);
SELECT regress_try($$SELECT count(*) FROM tool_audit.export_since('{"tool_calls": {"1:0": {"sk-secret": 1}}}', 10)$$);
SELECT regress_try($$SELECT count(*) FROM tool_audit.export_since('{"tool_calls": {"1:0": 9999999999999999999}}', 10)$$);
SELECT regress_try($$SELECT count(*) FROM tool_audit.export_since('{"tool_calls": {"1:99999999999": 1}}', 10)$$);
SELECT regress_try($$SELECT count(*) FROM tool_audit.export_since('{"tool_calls": {"99999999999999999999:0": 1}}', 10)$$);
SELECT regress_try($$SELECT count(*) FROM tool_audit.export_since('{"tool_calls": {"1:0": true}}', 10)$$);
SELECT regress_try($$SELECT count(*) FROM tool_audit.export_since('{"tool_calls": {"1:0 ": 1}}', 10)$$);
SELECT regress_try($$SELECT count(*) FROM tool_audit.export_since('{"tool_calls": {"1:0": -0}}', 10)$$);
SELECT regress_try($$SELECT count(*) FROM tool_audit.export_since('{"tool_calls": {"1:0": 1e3}}', 10)$$);
-- the largest the shape allows is a valid (empty-handed) position
SELECT regress_try($$SELECT count(*) FROM tool_audit.export_since('{"tool_calls": {"-9223372036854775808:2147483647": 999999999999999999}}', 10)$$);

SELECT tool_audit.unbind_tenant('regress_reader_acme', 'ea');
\c :regress_db
SET client_min_messages = warning;
DROP DATABASE regress_tool_audit_es_attack;
