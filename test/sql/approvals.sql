-- Dual approval: request_approval(), approve(), reject(), consume_approval()
-- and the setting tool_audit.require_dual_approval, which makes the
-- extension's sensitive operations need an approved request.  The people
-- are login roles (\c): SET ROLE or SET SESSION AUTHORIZATION does not make
-- another person.  Every step is an audited event.  doc/governance.md.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql
SELECT current_database() AS regress_db, current_user AS su \gset

-- two admins, a login role alice is a member of (so alice's too), an
-- application, a reader bound to a tenant, and a login with no tool_audit role
SET client_min_messages = warning;
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT * FROM (VALUES ('regress_appr_alice', 'tool_audit_admin'), ('regress_appr_bob', 'tool_audit_admin'),
                                   ('regress_appr_alias', 'tool_audit_admin'), ('regress_appr_app', 'tool_audit_writer'),
                                   ('regress_appr_reader', 'tool_audit_reader'), ('regress_appr_nobody', NULL)) AS t(name, member_of)
    LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r.name) THEN
            EXECUTE format('CREATE ROLE %I LOGIN', r.name);
            IF r.member_of IS NOT NULL THEN
                EXECUTE format('GRANT %I TO %I', r.member_of, r.name);
            END IF;
        END IF;
    END LOOP;
END $$;
GRANT regress_appr_alias TO regress_appr_alice;
RESET client_min_messages;
SELECT tool_audit.bind_tenant('regress_appr_reader', 'appr_t1');
SELECT max(id) AS ev0 FROM tool_audit.admin_events \gset

-- ---- the settings: off and a day by default; superusers only change them ----
SELECT tool_audit.dual_approval_required(), tool_audit.approval_lifetime();
SELECT name, setting, unit, context FROM pg_settings
 WHERE name IN ('tool_audit.require_dual_approval', 'tool_audit.approval_lifetime') ORDER BY name;
SET ROLE regress_admin;
SELECT regress_try($$SET tool_audit.require_dual_approval = off$$);
SELECT regress_try($$SET tool_audit.approval_lifetime = '30d'$$);
RESET ROLE;

-- fixtures: a hold to release and another, a policy and an override
SET ROLE regress_admin;
SELECT tool_audit.place_hold('{"tenant_id": "appr_t1"}', 'case 1') AS hold1 \gset
SELECT tool_audit.place_hold('{"tenant_id": "appr_t2"}', 'case 2') AS hold2 \gset
SELECT tool_audit.set_retention_policy('appr_policy', 400, '{appr_tool}', reason => 'test') IS NOT NULL AS policy;
SELECT tool_audit.set_retention_override('appr_t1', 'appr_policy', 900, 'contract') IS NOT NULL AS override;
RESET ROLE;

-- ---- asking: the arguments are checked, errors name them, never a value ----
\c - regress_appr_alice
SELECT regress_try($$SELECT tool_audit.request_approval('bad action!', '{}', 'r')$$);
SELECT regress_try($$SELECT tool_audit.request_approval(NULL, '{}', 'r')$$);
SELECT regress_try($$SELECT tool_audit.request_approval('tenant.disable', '{}', ' ')$$);
SELECT regress_try($$SELECT tool_audit.request_approval('tenant.disable', '[1]', 'r')$$);
SELECT regress_try($$SELECT tool_audit.request_approval('tool_audit.hold.release', '{"hold_id": "7"}', 'r')$$);
SELECT regress_try($$SELECT tool_audit.request_approval('tool_audit.hold.release', '{"hold_id": 7.5}', 'r')$$);
SELECT regress_try($$SELECT tool_audit.request_approval('tool_audit.hold.release', '{}', 'r')$$);
SELECT regress_try($$SELECT tool_audit.request_approval('tool_audit.hold.release', '{"hold_id": 7, "sk_live_x": 1}', 'r')$$);
SELECT regress_try($$SELECT tool_audit.request_approval('tool_audit.erase_subject', '{"subject_id": "appr_subj"}', 'erase appr_subj now')$$);

-- alice asks to release hold 1
SELECT tool_audit.request_approval('tool_audit.hold.release', jsonb_build_object('hold_id', :hold1), 'case 1 closed') AS req1 \gset
SELECT action, payload = jsonb_build_object('hold_id', :hold1) AS payload_as_given, reason, tenant_id, state,
       requested_by, requested_login, expires_at - requested_at AS lifetime, decided_by, consumed_at
  FROM tool_audit.approval_requests WHERE request_id = :req1;

-- ---- approving: by another person holding tool_audit_admin ----
-- alice herself, as herself or acting as a role she is a member of
SELECT regress_try(format('SELECT tool_audit.approve(%s, %L)', :req1, 'looks fine'));
SET ROLE regress_appr_alias;
SELECT regress_try(format('SELECT tool_audit.approve(%s, %L)', :req1, 'looks fine'));
RESET ROLE;
-- logged in as that role: alice can act as it, so it is alice
\c - regress_appr_alias
SELECT regress_try(format('SELECT tool_audit.approve(%s, %L)', :req1, 'looks fine'));
-- a writer, a reader, a role with no tool_audit role: not admins
\c - regress_appr_app
SELECT regress_try(format('SELECT tool_audit.approve(%s, %L)', :req1, 'ok'));
\c - regress_appr_reader
SELECT regress_try(format('SELECT tool_audit.approve(%s, %L)', :req1, 'ok'));
\c - regress_appr_nobody
SELECT regress_try(format('SELECT tool_audit.approve(%s, %L)', :req1, 'ok'));
-- the requests table is changed by the functions only, for everyone
\c - regress_appr_app
SELECT regress_try($$INSERT INTO tool_audit.approval_requests (action, payload, payload_digest, digest_key_id, reason, requested_by, requested_login, expires_at, state) VALUES ('tenant.disable', '{}', '\x00', 'test', 'r', 'regress_appr_app', 'regress_appr_app', now() + interval '1 day', 'approved')$$);
\c - regress_appr_alice
SELECT regress_try(format('UPDATE tool_audit.approval_requests SET state = %L WHERE request_id = %s', 'approved', :req1));
SELECT regress_try(format('DELETE FROM tool_audit.approval_requests WHERE request_id = %s', :req1));
-- nor through the helpers the approval functions use, nor by forging their events
SELECT regress_try(format('SELECT tool_audit.decide_approval(%s, %L, %L)', :req1, 'approve', 'x'));
SELECT regress_try($$SELECT tool_audit.approval_gate('tool_audit.hold.release', '{"hold_id": 1}')$$);
SELECT regress_try($$SELECT tool_audit.governance_event('approval.approve', '{}', 'x', NULL)$$);
SELECT regress_try($$ALTER ROLE regress_appr_alice SET tool_audit.require_dual_approval = off$$);
\c - regress_appr_app
SELECT regress_try($$SELECT tool_audit.log_event('tool_audit.approval.approve', 'x', '{"request_id": 1}')$$);
SELECT regress_try($$INSERT INTO tool_audit.admin_events (event_type, actor, payload) VALUES ('tool_audit.approval.approve', 'x', '{"request_id": 1}')$$);
-- bob approves; once
\c - regress_appr_bob
SELECT tool_audit.approve(:req1, 'checked with legal');
SELECT regress_try(format('SELECT tool_audit.approve(%s, %L)', :req1, 'again'));
SELECT regress_try($$SELECT tool_audit.approve(999999, 'x')$$);
SELECT state, decided_by, decided_login, decision_note FROM tool_audit.approval_requests WHERE request_id = :req1;

-- ---- a superuser's own request, approved through SET SESSION AUTHORIZATION ----
\c - :su
SELECT tool_audit.request_approval('tool_audit.hold.release', jsonb_build_object('hold_id', :hold2), 'su asks') AS req_su \gset
SET SESSION AUTHORIZATION regress_appr_bob;
SELECT current_user, session_user;
SELECT regress_try(format('SELECT tool_audit.approve(%s, %L)', :req_su, 'ok'));
RESET SESSION AUTHORIZATION;

-- ---- the setting on: the covered operations need an approved request ----
ALTER DATABASE :"regress_db" SET tool_audit.require_dual_approval = on;
\c - regress_appr_alice
SELECT tool_audit.dual_approval_required();
-- releasing a hold: the approval of hold 1 does not release hold 2
SELECT regress_try(format('SELECT tool_audit.release_hold(%s, %L)', :hold2, 'done'));
SELECT released_at IS NULL AS hold2_active FROM tool_audit.legal_holds WHERE hold_id = :hold2;
-- bob holds no request: he cannot use alice's approval
\c - regress_appr_bob
SELECT regress_try(format('SELECT tool_audit.release_hold(%s, %L)', :hold1, 'done'));
-- alice uses it, once
\c - regress_appr_alice
SELECT tool_audit.release_hold(:hold1, 'case 1 closed');
SELECT released_by FROM tool_audit.legal_holds WHERE hold_id = :hold1;
SELECT state, consumed_by FROM tool_audit.approval_requests WHERE request_id = :req1;
SELECT tool_audit.place_hold('{"tenant_id": "appr_t1"}', 'case 1 again') AS hold3 \gset
SELECT regress_try(format('SELECT tool_audit.release_hold(%s, %L)', :hold3, 'done'));
SELECT regress_try(format('SELECT tool_audit.consume_approval(%L, %L)', 'tool_audit.hold.release',
                          jsonb_build_object('hold_id', :hold1)));

-- shortening a policy (fewer days, or other names), creating one; lengthening needs none
SELECT regress_try($$SELECT tool_audit.set_retention_policy('appr_policy', 300, reason => 'r')$$);
SELECT regress_try($$SELECT tool_audit.set_retention_policy('appr_policy', 400, '{appr_tool,other}', reason => 'r')$$);
SELECT regress_try($$SELECT tool_audit.set_retention_policy('appr_new', 500, '{appr_new_tool}', reason => 'r')$$);
SELECT regress_try($$SELECT tool_audit.set_retention_policy('appr_policy', 450, reason => 'longer')$$);
-- shortening an override; lengthening needs none
SELECT regress_try($$SELECT tool_audit.set_retention_override('appr_t1', 'appr_policy', 500, 'r')$$);
SELECT regress_try($$SELECT tool_audit.set_retention_override('appr_t1', 'appr_policy', 1000, 'r')$$);
-- erasing a subject
SELECT regress_try($$SELECT tool_audit.erase_subject('appr_subj', 'request 12', 'GDPR Art. 17')$$);
-- rotating the pseudonymization key
SELECT regress_try($$SELECT tool_audit.rotate_pseudonym_key('appr_k2')$$);
-- nothing changed
SELECT policy_name, retention_days, matches FROM tool_audit.retention_policies WHERE policy_name LIKE 'appr%' ORDER BY 1;
SELECT retention_days FROM tool_audit.retention_overrides WHERE tenant_id = 'appr_t1';
SELECT key_id FROM tool_audit.pseudonym_key_ids WHERE active;

-- with approvals: each for exactly its arguments
SELECT tool_audit.request_approval('tool_audit.retention.set_policy',
       '{"policy_name": "appr_policy", "retention_days": 300}', 'storage costs') AS req_pol \gset
SELECT tool_audit.request_approval('tool_audit.retention.set_override',
       '{"tenant_id": "appr_t1", "policy_name": "appr_policy", "retention_days": 500}', 'new contract') AS req_ovr \gset
SELECT tool_audit.request_approval('tool_audit.erase_subject', '{"subject_id": "appr_subj"}', 'GDPR request 12') AS req_era \gset
SELECT tool_audit.request_approval('tool_audit.pseudonym_key.rotate', '{"key_id": "appr_k2"}', 'yearly rotation') AS req_key \gset
-- the payload as stored and shown: completed with the defaults, the
-- subject id pseudonymized
SELECT action, payload FROM tool_audit.approval_requests
 WHERE request_id IN (:req_pol, :req_ovr, :req_era, :req_key) ORDER BY request_id;
-- an approval for 300 days does not allow 200; nor before it is approved
SELECT regress_try($$SELECT tool_audit.set_retention_policy('appr_policy', 300, reason => 'r')$$);
\c - regress_appr_bob
SELECT tool_audit.approve(r, 'ok') FROM unnest(ARRAY[:req_pol, :req_ovr, :req_era, :req_key]) r;
\c - regress_appr_alice
SELECT regress_try($$SELECT tool_audit.set_retention_policy('appr_policy', 200, reason => 'r')$$);
SELECT tool_audit.set_retention_policy('appr_policy', 300, reason => 'storage costs') ->> 'after' IS NOT NULL AS changed;
SELECT regress_try($$SELECT tool_audit.set_retention_policy('appr_policy', 300, reason => 'r')$$) AS same_days_need_none;
SELECT regress_try($$SELECT tool_audit.set_retention_policy('appr_policy', 250, reason => 'r')$$) AS shorter_again;
SELECT tool_audit.set_retention_override('appr_t1', 'appr_policy', 500, 'new contract') ->> 'after' IS NOT NULL AS changed;
SELECT regress_try($$SELECT tool_audit.set_retention_override('appr_t1', 'appr_policy', 450, 'r')$$);
-- erasure: the approval is for this subject only
\c - :su
SELECT count(*) FROM (SELECT tool_audit.log_call('appr_tool', '{}', '{}', 1,
       jsonb_build_object('subject_id', s, 'tenant_id', 'appr_t3')) FROM unnest(ARRAY['appr_subj', 'appr_other']) s) x;
\c - regress_appr_alice
SELECT regress_try($$SELECT tool_audit.erase_subject('appr_other', 'request 13', 'GDPR Art. 17')$$);
SELECT tool_audit.erase_subject('appr_subj', 'GDPR request 12', 'GDPR Art. 17') ->> 'status' AS erased;
SELECT regress_try($$SELECT tool_audit.erase_subject('appr_subj', 'GDPR request 12', 'GDPR Art. 17')$$);
-- the key: used in a transaction that rolls back, the approval is still there
BEGIN;
SELECT tool_audit.rotate_pseudonym_key('appr_k2');
ROLLBACK;
SELECT state FROM tool_audit.approval_requests WHERE request_id = :req_key;
SELECT key_id FROM tool_audit.pseudonym_key_ids WHERE active;
-- (withdrawn: the fixtures' key must stay active for the other tests)
SELECT tool_audit.reject(:req_key, 'not this year');

-- ---- expired: not approved, not used ----
SELECT tool_audit.request_approval('tool_audit.hold.release', jsonb_build_object('hold_id', :hold3), 'late') AS req_late \gset
SELECT tool_audit.request_approval('tool_audit.hold.release', jsonb_build_object('hold_id', :hold2), 'slow') AS req_slow \gset
\c - regress_appr_bob
SELECT tool_audit.approve(:req_slow, 'ok');
\c - :su
-- as if the lifetime had passed
UPDATE tool_audit.approval_requests SET expires_at = now() - interval '1 second'
 WHERE request_id IN (:req_late, :req_slow);
\c - regress_appr_bob
SELECT regress_try(format('SELECT tool_audit.approve(%s, %L)', :req_late, 'ok'));
\c - regress_appr_alice
SELECT regress_try(format('SELECT tool_audit.release_hold(%s, %L)', :hold2, 'done'));
SELECT regress_try(format('SELECT tool_audit.release_hold(%s, %L)', :hold3, 'done'));

-- ---- rejected: not used, not approved after ----
SELECT tool_audit.request_approval('tool_audit.hold.release', jsonb_build_object('hold_id', :hold3), 'again') AS req_rej \gset
\c - regress_appr_bob
SELECT tool_audit.reject(:req_rej, 'the case is open');
SELECT regress_try(format('SELECT tool_audit.approve(%s, %L)', :req_rej, 'changed my mind'));
SELECT regress_try(format('SELECT tool_audit.reject(%s, %L)', :req_rej, 'twice'));
\c - regress_appr_alice
SELECT regress_try(format('SELECT tool_audit.release_hold(%s, %L)', :hold3, 'done'));

-- ---- an application's own action: request, approval, use in its transaction ----
\c - regress_appr_app
SELECT regress_try($$SELECT tool_audit.request_approval('tool_audit.hold.release', '{"hold_id": 1}', 'r')$$);
SELECT tool_audit.request_approval('tenant.disable', '{"tenant_id": "appr_t1"}', 'unpaid invoices') AS req_app \gset
SELECT tool_audit.request_approval('killswitch.engage', '{"tenant_id": "appr_t2", "scope": "all"}', 'incident 7') AS req_kill \gset
SELECT regress_try($$SELECT tool_audit.consume_approval('tenant.disable', '{"tenant_id": "appr_t1"}')$$);
\c - regress_appr_bob
SELECT tool_audit.approve(:req_app, 'confirmed with billing');
\c - regress_appr_app
-- another tenant's payload does not match
SELECT regress_try($$SELECT tool_audit.consume_approval('tenant.disable', '{"tenant_id": "appr_t2"}')$$);
BEGIN;
SELECT tool_audit.consume_approval('tenant.disable', '{"tenant_id": "appr_t1"}') = :req_app AS used;
ROLLBACK;
BEGIN;
SELECT tool_audit.consume_approval('tenant.disable', '{"tenant_id": "appr_t1"}') = :req_app AS used;
SELECT event_type FROM tool_audit.log_event('tenant.disable', 'billing_bot', '{"tenant_id": "appr_t1"}');
COMMIT;
SELECT regress_try($$SELECT tool_audit.consume_approval('tenant.disable', '{"tenant_id": "appr_t1"}')$$);
-- the application sees its own requests only
SELECT action, state FROM tool_audit.approval_requests ORDER BY request_id;

-- ---- tenants: a bound reader sees its tenant's requests and events ----
\c - regress_appr_reader
SELECT action, tenant_id, state FROM tool_audit.approval_requests ORDER BY request_id;
SELECT event_type, payload->>'action' AS action FROM tool_audit.admin_events
 WHERE event_type LIKE 'tool_audit.approval.%' ORDER BY id;

-- ---- the setting off: the operations as before ----
\c - :su
ALTER DATABASE :"regress_db" RESET tool_audit.require_dual_approval;
\c - regress_appr_alice
SELECT tool_audit.dual_approval_required();
SELECT tool_audit.set_retention_policy('appr_policy', 200, reason => 'no approval needed') ->> 'after' IS NOT NULL AS changed;
SELECT tool_audit.release_hold(:hold3, 'no approval needed');
\c - :su

-- ---- every step an audited event: who, which request, the state before and after ----
SELECT event_type, actor, reason, payload->>'action' AS action,
       payload->'before'->>'state' AS before, payload->'after'->>'state' AS after
  FROM tool_audit.admin_events
 WHERE id > :ev0 AND event_type LIKE 'tool_audit.approval.%' ORDER BY id;
-- no event and no request holds the erased subject's id
SELECT count(*) AS naming_subject FROM tool_audit.admin_events
 WHERE id > :ev0 AND event_type LIKE 'tool_audit.approval.%' AND payload::text LIKE '%appr_subj%';
SELECT count(*) AS naming_subject FROM tool_audit.approval_requests WHERE payload::text LIKE '%appr_subj%';
SELECT count(*) AS problems FROM tool_audit.verify();
