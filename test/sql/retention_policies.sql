-- Retention policies: each new row's policy and expiry are decided by the
-- insert trigger (C), as retention_policy_for() and current_retention_days()
-- decide them; policies, tenant overrides and the floor change through
-- audited functions only; the test clock ages rows in a test database only.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql
-- expires_at is the row's time plus whole days of 86400 s (not calendar
-- days of the session's time zone)
CREATE FUNCTION pg_temp.days_kept(at timestamptz, expires timestamptz) RETURNS float8
    LANGUAGE sql AS $$ SELECT (extract(epoch FROM expires - at) / 86400)::float8 $$;

-- the seeded policies and floor
SELECT policy_name, applies_to, retention_days, matches, is_default
  FROM tool_audit.retention_policies ORDER BY policy_name;
SELECT floor_days FROM tool_audit.retention_floor;

-- a policy per tool: the seeds' names, and the default for any other tool
SET ROLE regress_writer;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
VALUES ('charge_payment', 'rp_t1', true), ('access_patient_record', 'rp_t1', true),
       ('rp_lookup_order', 'rp_t1', true), ('rp_lookup_order', NULL, true);
RESET ROLE;
SELECT tool_name, tenant_id, retention_policy, pg_temp.days_kept(recorded_at, expires_at) AS days
  FROM tool_audit.tool_calls WHERE tenant_id = 'rp_t1' OR tool_name = 'rp_lookup_order' ORDER BY id;

-- a policy per event type: admin events take the "admin" default
SELECT event_type, retention_policy, pg_temp.days_kept(occurred_at, expires_at) AS days
  FROM tool_audit.log_event('rp_prompt.update', 'alice', '{}');

-- a caller cannot bring either column (like an id), whatever the role
SET ROLE regress_writer;
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (tool_name, retention_policy) VALUES ('rp_x', 'financial')$$);
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (tool_name, expires_at) VALUES ('rp_x', 'infinity')$$);
SELECT regress_try($$INSERT INTO tool_audit.admin_events (event_type, actor, retention_policy) VALUES ('rp.x', 'a', 'admin')$$);
RESET ROLE;
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (tool_name, expires_at) VALUES ('rp_x', now())$$);
-- explicit NULLs (as an ORM sends them) are fine
SET ROLE regress_writer;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, retention_policy, expires_at)
VALUES ('rp_orm', 'rp_t1', NULL, NULL);
RESET ROLE;
SELECT retention_policy FROM tool_audit.tool_calls WHERE tool_name = 'rp_orm';

-- set_retention_policy(): names, patterns, applies_to, audited
SET ROLE regress_admin;
SELECT (r #- '{after,changed_at}') - 'admin_event_id' AS result
  FROM tool_audit.set_retention_policy('rp_payments', 1000, '{rp_pay_*, rp_refund}',
                                       reason => 'payments ledger') r;
SELECT r->'before' = 'null' AS created, r->'after'->>'retention_days' AS days,
       r->'after'->>'changed_by' AS changed_by
  FROM tool_audit.set_retention_policy('rp_cards', 1200, '{rp_pay_card*}', reason => 'cards') r;
-- patterns: the longest (in characters) wins, a listed name beats any pattern
SELECT tool_audit.set_retention_policy('rp_suffix', 800, '{*_refund, *éééé}') IS NOT NULL AS ok;
SELECT tool_audit.set_retention_policy('rp_prefix', 900, '{rp_abc*, rp_pay_card_visa}') IS NOT NULL AS ok;
-- two policies with the same pattern: the first name wins
SELECT tool_audit.set_retention_policy('rp_tie_b', 700, '{rp_tie*}') IS NOT NULL AS ok;
SELECT tool_audit.set_retention_policy('rp_tie_a', 600, '{rp_tie*}') IS NOT NULL AS ok;
-- '%', '_' and '\' in a pattern are literal characters
SELECT tool_audit.set_retention_policy('rp_literal', 650, ARRAY['rp_50%_\off*']) IS NOT NULL AS ok;
-- a policy for admin event types
SELECT r->'after'->>'applies_to' AS applies_to
  FROM tool_audit.set_retention_policy('rp_security', 730, '{rp_killswitch.*}', 'admin_events', 'security events') r;
RESET ROLE;

-- the C resolution and the SQL functions agree, name by name
CREATE TEMP TABLE rp_names (name text);
INSERT INTO rp_names VALUES ('rp_pay_x'), ('rp_pay_'), ('rp_pay_card'), ('rp_pay_card_visa'),
    ('rp_pay_card_amex'), ('rp_refund'), ('rp_x_refund'), ('x_refund'), ('rp_abcéééé'),
    ('zzéééé'), ('rp_tie'), ('rp_tiebreak'), ('rp_50%_\off'), ('rp_50%_\offer'), ('rp_50x_\off'),
    ('rp_50%x\off'), ('charge_payment'), ('issue_refund'), ('update_treatment'), ('rp_other'),
    ('rp_pay'), ('RP_PAY_X'), ('rp_abc'), ('rp_ab');
GRANT SELECT ON rp_names TO regress_writer;
SET ROLE regress_writer;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
SELECT name, 'rp_agree', true FROM rp_names;
RESET ROLE;
SELECT tool_name, retention_policy, retention_policy = tool_audit.retention_policy_for('tool_calls', tool_name) AS sql_agrees,
       pg_temp.days_kept(recorded_at, expires_at) AS days,
       pg_temp.days_kept(recorded_at, expires_at) = tool_audit.current_retention_days(retention_policy, tenant_id) AS days_agree
  FROM tool_audit.tool_calls WHERE tenant_id = 'rp_agree' ORDER BY id;
SELECT event_type, retention_policy, pg_temp.days_kept(occurred_at, expires_at) AS days,
       retention_policy = tool_audit.retention_policy_for('admin_events', event_type) AS sql_agrees
  FROM tool_audit.log_event('rp_killswitch.enable', 'alice', '{}');

-- a tenant's contract override: only longer than the policy
SET ROLE regress_admin;
SELECT r->'before' AS before, r->'after'->>'retention_days' AS days, r->'after'->>'reason' AS reason
  FROM tool_audit.set_retention_override('rp_acme', 'general', 500, 'contract 2026-17') r;
SELECT regress_try($$SELECT tool_audit.set_retention_override('rp_acme', 'financial', 2000, 'shorter')$$);
SELECT regress_try($$SELECT tool_audit.set_retention_override('rp_acme', 'rp_nosuch', 2000, 'x')$$);
SELECT regress_try($$SELECT tool_audit.set_retention_override(NULL, 'general', 2000, 'x')$$);
SELECT r->'before'->>'retention_days' AS before, r->'after'->>'retention_days' AS after
  FROM tool_audit.set_retention_override('rp_acme', 'general', 550, 'contract renewed') r;
RESET ROLE;
SET ROLE regress_writer;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
VALUES ('rp_ovr', 'rp_acme', true), ('rp_ovr', 'rp_other', true), ('rp_pay_x', 'rp_acme', true);
RESET ROLE;
SELECT tool_name, tenant_id, retention_policy, pg_temp.days_kept(recorded_at, expires_at) AS days
  FROM tool_audit.tool_calls WHERE tool_name IN ('rp_ovr', 'rp_pay_x') AND tenant_id <> 'rp_agree' ORDER BY id;

-- lengthening applies to old rows too (through current_retention_days(),
-- which purge also requires), shortening to new rows only: a row keeps the
-- expires_at it was written with
SET ROLE regress_admin;
SELECT r->'before'->>'retention_days' AS before, r->'after'->>'retention_days' AS after
  FROM tool_audit.set_retention_policy('rp_payments', 1500, reason => 'longer') r;
RESET ROLE;
SELECT pg_temp.days_kept(recorded_at, expires_at) AS kept_days,
       tool_audit.current_retention_days(retention_policy, tenant_id) AS current_days
  FROM tool_audit.tool_calls WHERE tool_name = 'rp_pay_x' AND tenant_id = 'rp_agree';
SET ROLE regress_admin;
SELECT r->'after'->>'retention_days' AS after, r->'after'->'matches' AS matches_kept
  FROM tool_audit.set_retention_policy('rp_payments', 300, reason => 'shorter') r;
RESET ROLE;
SET ROLE regress_writer;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('rp_pay_x', 'rp_short', true);
RESET ROLE;
SELECT tenant_id, pg_temp.days_kept(recorded_at, expires_at) AS kept_days,
       tool_audit.current_retention_days(retention_policy, tenant_id) AS current_days
  FROM tool_audit.tool_calls WHERE tool_name = 'rp_pay_x' AND tenant_id IN ('rp_agree', 'rp_short') ORDER BY id;

-- refusals: under the floor, bad arguments (never echoed), a second default,
-- another table for an existing policy, the floor by an admin
SET ROLE regress_admin;
SELECT regress_try($$SELECT tool_audit.set_retention_policy('rp_payments', 100)$$);
SELECT regress_try($$SELECT tool_audit.set_retention_policy('Bad Name sk-secret', 400)$$);
SELECT regress_try($$SELECT tool_audit.set_retention_policy('rp_new', 0)$$);
SELECT regress_try($$SELECT tool_audit.set_retention_policy('rp_new', 400, applies_to => 'sk_secret')$$);
SELECT regress_try($$SELECT tool_audit.set_retention_policy('rp_new', 400, '{}')$$);
SELECT regress_try($$SELECT tool_audit.set_retention_policy('rp_new', 400, '{x,NULL}')$$);
SELECT regress_try($$SELECT tool_audit.set_retention_policy('rp_new', 400, '{x,""}')$$);
SELECT regress_try($$SELECT tool_audit.set_retention_policy('rp_payments', 400, applies_to => 'admin_events')$$);
SELECT regress_try($$SELECT tool_audit.set_retention_floor(100, 'lower')$$);
-- nobody changes the tables directly, not even an admin
SELECT regress_try($$UPDATE tool_audit.retention_policies SET retention_days = 1$$);
SELECT regress_try($$INSERT INTO tool_audit.retention_overrides VALUES ('t', 'general', 1, NULL, now(), 'me')$$);
RESET ROLE;
SET ROLE regress_writer;
SELECT regress_try($$SELECT tool_audit.set_retention_policy('rp_new', 400, '{x}')$$);
SELECT regress_try($$SELECT tool_audit.set_retention_override('t', 'general', 400, 'x')$$);
RESET ROLE;

-- the floor: superusers only; a policy under a new floor gets the floor
SELECT r->'before'->>'floor_days' AS before, r->'after'->>'floor_days' AS after
  FROM tool_audit.set_retention_floor(400, 'raise the floor') r;
SET ROLE regress_writer;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('rp_floor', 'rp_t1', true);
RESET ROLE;
SELECT retention_policy, pg_temp.days_kept(recorded_at, expires_at) AS days,
       tool_audit.current_retention_days(retention_policy, tenant_id) AS current_days
  FROM tool_audit.tool_calls WHERE tool_name = 'rp_floor';
SELECT regress_try($$SELECT tool_audit.set_retention_floor(0, 'x')$$);
SELECT r->'after'->>'floor_days' AS after FROM tool_audit.set_retention_floor(183, 'back to the default') r;

-- every change is an admin event with before/after, the reason and the actor
SELECT event_type, actor, reason, tenant_id,
       payload->'before'->>'retention_days' AS before_days,
       payload->'after'->>'retention_days' AS after_days,
       payload->'after'->>'policy_name' AS policy,
       payload->'before'->>'floor_days' AS before_floor, payload->'after'->>'floor_days' AS after_floor
  FROM tool_audit.admin_events WHERE event_type LIKE 'tool_audit.retention.%' ORDER BY id;
-- the functions return the event's id
SET ROLE regress_admin;
SELECT r->>'admin_event_id' AS event_id FROM tool_audit.set_retention_policy('rp_cards', 1300) r \gset
SELECT event_type, payload->'after'->>'retention_days' AS days
  FROM tool_audit.admin_events WHERE id = :event_id;
RESET ROLE;

-- the chain: a row with a policy is in the chain of its table, policy and
-- tenant (derivation 2, doc/canonical-encoding.md section 4)
SELECT tool_name, chain_id = ('x' || left(encode(sha256('tool_audit chain 2'::bytea || '\x000a'::bytea ||
           'tool_calls'::bytea || set_byte('\x00'::bytea, 0, octet_length(retention_policy)) ||
           convert_to(retention_policy, 'UTF8') || '\x01'::bytea || convert_to(tenant_id, 'UTF8')), 'hex'), 16))::bit(64)::bigint
       AS chain_id_per_spec
  FROM tool_audit.tool_calls WHERE tenant_id = 'rp_t1' ORDER BY id;
SELECT count(DISTINCT chain_id) AS chains, count(DISTINCT retention_policy) AS policies
  FROM tool_audit.tool_calls WHERE tenant_id = 'rp_agree';
-- digest heads name the policy
SELECT h->>'retention_policy' AS retention_policy, h->>'tenant' AS tenant
  FROM jsonb_array_elements(tool_audit.digest()->'heads') h
 WHERE h->>'tenant' = 'rp_t1' ORDER BY 1;

-- a restored row keeps the retention it was dumped with (a tenant of its
-- own: a row of 2020 after today's rows of its lane would go back in time)
SET tool_audit.restoring = on;
INSERT INTO tool_audit.tool_calls (id, tool_name, tenant_id, success, recorded_at, retention_policy, expires_at)
VALUES (900000001, 'rp_restored', 'rp_t_restored', true, '2020-01-01 00:00:00+00', 'financial', '2027-01-01 00:00:00+00'),
       (900000002, 'rp_restored', 'rp_t_restored', true, '2020-01-01 00:00:00+00', NULL, NULL);
RESET tool_audit.restoring;
SELECT id, retention_policy, expires_at AT TIME ZONE 'UTC' AS expires_at
  FROM tool_audit.tool_calls WHERE tool_name = 'rp_restored' ORDER BY id;

SELECT count(*) AS problems FROM tool_audit.verify();

-- The test clock: rows born old, in a test database only.
-- An ordinary admin can set neither setting.
SET ROLE regress_admin;
SELECT regress_try($$SET tool_audit.test_clock_offset = '400 days'$$);
SELECT regress_try($$SET tool_audit.test_database = on$$);
RESET ROLE;
-- the offset is an interval, not negative
SELECT regress_try($$SET tool_audit.test_clock_offset = 'soon'$$);
SELECT regress_try($$SET tool_audit.test_clock_offset = '-1 day'$$);
-- not a test database: an insert with an offset fails, it does not ignore it
SET tool_audit.test_clock_offset = '400 days';
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (tool_name) VALUES ('rp_clock')$$);
-- a session's own setting is not the mark
SET tool_audit.test_database = on;
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (tool_name) VALUES ('rp_clock')$$);
-- nor a role's setting in this database
DO $$ BEGIN EXECUTE format('ALTER ROLE %I IN DATABASE %I SET tool_audit.test_database = on',
                           current_user, current_database()); END $$;
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (tool_name) VALUES ('rp_clock')$$);
DO $$ BEGIN EXECUTE format('ALTER ROLE %I IN DATABASE %I RESET tool_audit.test_database',
                           current_user, current_database()); END $$;
-- the database's own setting is; a superuser makes it (rows born old in
-- chains of their own: after today's rows of a lane they would go back in time)
DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET tool_audit.test_database = on', current_database()); END $$;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id) VALUES ('rp_clock', 'rp_t_clock');
-- (400 days earlier in the session's time zone: give or take an hour of DST)
SELECT now() - recorded_at BETWEEN interval '399 days 22 hours' AND interval '400 days 2 hours' AS born_400_days_ago,
       pg_temp.days_kept(recorded_at, expires_at) AS days, expires_at < now() AS already_expired
  FROM tool_audit.tool_calls WHERE tool_name = 'rp_clock';
SELECT now() - occurred_at BETWEEN interval '399 days 22 hours' AND interval '400 days 2 hours' AS born_400_days_ago
  FROM tool_audit.log_event('rp_clock.tick', 'alice', '{}', '{"tenant_id": "rp_t_clock"}');
-- a session that turns the setting off cannot use the offset either
SET tool_audit.test_database = off;
SELECT regress_try($$INSERT INTO tool_audit.tool_calls (tool_name) VALUES ('rp_clock')$$);
RESET tool_audit.test_database;
RESET tool_audit.test_clock_offset;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id) VALUES ('rp_clock_real', 'rp_t1');
SELECT now() - recorded_at < interval '1 hour' AS real_time
  FROM tool_audit.tool_calls WHERE tool_name = 'rp_clock_real';
DO $$ BEGIN EXECUTE format('ALTER DATABASE %I RESET tool_audit.test_database', current_database()); END $$;
SELECT count(*) AS problems FROM tool_audit.verify();

-- rows written before 1.4 (no recorded policy) get the longest retention of
-- every policy covering their tool: a shorter policy added later for it wins
-- the name for new rows, but takes nothing away from them
SELECT tool_audit.legacy_retention_days('tool_calls', 'charge_payment', NULL) AS charge_payment,
       tool_audit.legacy_retention_days('tool_calls', 'no_policy_names_this', NULL) AS other_tool,
       tool_audit.legacy_retention_days('admin_events', 'prompt.update', NULL) AS admin_event;
BEGIN;
SET ROLE regress_admin;
SELECT (tool_audit.set_retention_policy('aaa_short', 200, '{charge_payment}')) ->> 'after' IS NOT NULL AS added;
RESET ROLE;
SELECT tool_audit.retention_policy_for('tool_calls', 'charge_payment') AS new_rows_take,
       tool_audit.legacy_retention_days('tool_calls', 'charge_payment', NULL) AS older_rows_keep;
ROLLBACK;
