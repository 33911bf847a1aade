-- The security state (1.5): who can see and change what around the rows.
-- Each attack below is one a superuser can make through the catalogs or
-- with triggers off; verify() names what differs from what the install
-- script made, verify_digest() what differs from a digest taken before.
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql
\set VERBOSITY terse

SELECT tool_audit.bind_tenant('regress_reader', 'tenant_a');
SET ROLE regress_writer;
SELECT count(*) AS logged FROM (SELECT tool_audit.log_call('lookup', '{"patient": "p1"}', '{}', 1,
    '{"tenant_id": "tenant_a", "subject_id": "patient_1"}')) x;
RESET ROLE;
INSERT INTO tool_audit.sanitize_rules (applies_to, match, pattern, action, priority)
VALUES ('key', 'exact', 'ward_code', 'redact', 50);

-- the fingerprint: one hash per component and an overall one, in the digest too
SELECT array_agg(k ORDER BY k) AS components,
       bool_and((v #>> '{}') ~ '^[0-9a-f]{64}$') AS all_sha256
  FROM jsonb_each(tool_audit.security_state()) AS e(k, v);
SELECT tool_audit.digest() AS d \gset
SELECT (:'d'::jsonb)->'security_state' = tool_audit.security_state() AS digest_carries_it;
-- deterministic, and nothing to report on an untouched database
SELECT tool_audit.security_state() = tool_audit.security_state() AS same_twice;
SELECT count(*) > 100 AS recorded, count(DISTINCT component) AS components
  FROM tool_audit.security_expectation;
-- (problems of rows are left out: files run before this one in the schedule
-- tamper with rows on purpose; the security state has no row)
SELECT * FROM tool_audit.verify() WHERE row_id IS NULL;
SELECT * FROM tool_audit.verify_digest(:'d') WHERE row_id IS NULL;
-- a digest from before 1.5 has no security state: nothing to compare, no problem
-- (with a signing key, removing the member breaks the signature: not shown)
SELECT problem FROM tool_audit.verify_digest((:'d'::jsonb) - 'security_state')
 WHERE problem NOT LIKE 'digest signature%' AND row_id IS NULL;

-- the expectation is written by the extension's scripts only
SELECT regress_try($$UPDATE tool_audit.security_expectation SET hash = repeat('0', 64)$$);
SELECT regress_try($$DELETE FROM tool_audit.security_expectation$$);
SELECT regress_try($$TRUNCATE tool_audit.security_expectation$$);
SELECT regress_try($$SELECT tool_audit.record_security_expectation()$$);
-- and only admins and the verifier read the fingerprint
SET ROLE regress_reader;
SELECT regress_try($$SELECT tool_audit.security_state()$$);
SELECT regress_try($$SELECT count(*) FROM tool_audit.pseudonym_key_fingerprints$$);
RESET ROLE;
-- the verifier role (the external verifier's) reads what the fingerprint
-- covers: the keys' fingerprints, never the keys; it changes nothing
SET ROLE tool_audit_verifier;
SELECT tool_audit.security_state() = (:'d'::jsonb)->'security_state' AS verifier_sees_the_same;
SELECT count(*) = 1 AS one_active_key FROM tool_audit.pseudonym_key_fingerprints WHERE active;
SELECT regress_try($$SELECT key FROM tool_audit.pseudonym_keys$$);
SELECT regress_try($$DELETE FROM tool_audit.tenant_bindings$$);
SELECT regress_try($$UPDATE tool_audit.sanitize_rules SET enabled = false$$);
RESET ROLE;

-- 1. row-level security off through pg_class
BEGIN;
UPDATE pg_class SET relrowsecurity = false WHERE oid = 'tool_audit.tool_calls'::regclass;
SELECT problem FROM tool_audit.verify() WHERE row_id IS NULL;
SELECT problem FROM tool_audit.verify_digest(:'d') WHERE row_id IS NULL;
ROLLBACK;

-- 2. the body of the tenant-binding function replaced through pg_proc
BEGIN;
UPDATE pg_proc SET prosrc = 'SELECT NULL::text[]' WHERE oid = 'tool_audit.bound_tenants()'::regprocedure;
SELECT problem FROM tool_audit.verify() WHERE row_id IS NULL;
SELECT problem FROM tool_audit.verify_digest(:'d') WHERE row_id IS NULL;
ROLLBACK;

-- 3. a restrictive policy that hides one patient's rows from every report
BEGIN;
SELECT regress_try($$CREATE POLICY hide_one ON tool_audit.tool_calls AS RESTRICTIVE FOR SELECT
                     USING (subject_id IS DISTINCT FROM 'patient_1')$$);
UPDATE pg_policy SET polpermissive = false
 WHERE polrelid = 'tool_audit.tool_calls'::regclass AND polname = 'reader_tenant';
SELECT problem FROM tool_audit.verify() WHERE row_id IS NULL;
SELECT problem FROM tool_audit.verify_digest(:'d') WHERE row_id IS NULL;
ROLLBACK;

-- 4. the audit table granted to PUBLIC
BEGIN;
SELECT regress_try($$GRANT SELECT ON tool_audit.tool_calls TO PUBLIC$$);
UPDATE pg_class SET relacl = relacl || makeaclitem(0, relowner, 'SELECT', false)
 WHERE oid = 'tool_audit.admin_events'::regclass;
SELECT problem FROM tool_audit.verify() WHERE row_id IS NULL;
SELECT problem FROM tool_audit.verify_digest(:'d') WHERE row_id IS NULL;
ROLLBACK;

-- 5. a trigger disabled, an event trigger's function swapped
BEGIN;
UPDATE pg_trigger SET tgenabled = 'D'
 WHERE tgrelid = 'tool_audit.sanitize_rules'::regclass AND tgname = 'sanitize_rules_audit';
SELECT problem FROM tool_audit.verify() WHERE row_id IS NULL;
SELECT problem FROM tool_audit.verify_digest(:'d') WHERE row_id IS NULL;
ROLLBACK;

-- 6. tenant bindings deleted, a key changed, a sanitize rule disabled and an
-- alert rule changed by direct DML with triggers off: verify_digest() names
-- each; verify() tells only of the bindings (against the admin events that
-- bind_tenant() and unbind_tenant() record)
BEGIN;
SET LOCAL session_replication_role = replica;
SET LOCAL tool_audit.restoring = on;
DELETE FROM tool_audit.tenant_bindings WHERE tenant_id = 'tenant_a';
UPDATE tool_audit.pseudonym_keys SET key = tool_audit.random_key(32) WHERE active;
UPDATE tool_audit.sanitize_rules SET action = 'keep' WHERE pattern = 'ward_code';
UPDATE tool_audit.alert_rules SET enabled = false WHERE rule_name = 'audit_changes';
RESET session_replication_role;
RESET tool_audit.restoring;
SELECT problem FROM tool_audit.verify_digest(:'d') WHERE row_id IS NULL;
SELECT problem FROM tool_audit.verify() WHERE row_id IS NULL;
ROLLBACK;

-- a binding inserted by hand: verify() has no admin event for it
BEGIN;
INSERT INTO tool_audit.tenant_bindings VALUES ('regress_reader', 'tenant_z');
SELECT problem FROM tool_audit.verify() WHERE row_id IS NULL;
SELECT problem FROM tool_audit.verify_digest(:'d') WHERE row_id IS NULL;
ROLLBACK;

-- the same kinds of change through the extension's functions are recorded
-- as admin events: not a problem
BEGIN;
SELECT tool_audit.bind_tenant('regress_reader', 'tenant_b');
SELECT tool_audit.rotate_pseudonym_key() IS NOT NULL AS rotated;
SELECT problem FROM tool_audit.verify_digest(:'d') WHERE row_id IS NULL;
ROLLBACK;

-- a digest whose fingerprint does not match (say it was taken elsewhere)
SELECT problem FROM tool_audit.verify_digest(jsonb_set(:'d'::jsonb, '{security_state,rules}', to_jsonb(repeat('0', 64))))
 WHERE problem NOT LIKE 'digest signature%' AND row_id IS NULL;

SELECT * FROM tool_audit.verify() WHERE row_id IS NULL;
SELECT tool_audit.unbind_tenant('regress_reader', 'tenant_a');
DELETE FROM tool_audit.sanitize_rules WHERE pattern = 'ward_code';
