-- purge_expired(): only expired rows that no hold covers leave, through the
-- sanctioned path; each purged span leaves an anchor listed in a
-- tool_audit.retention.purge event; verify() stays clean, a digest taken
-- before names exactly the purged spans, lanes continue.  Every other delete
-- path stays refused.  In a database of its own (the counts are exact).
\set VERBOSITY terse
SELECT current_database() AS regress_db \gset
CREATE DATABASE regress_tool_audit_purge;
\c regress_tool_audit_purge
SET client_min_messages = warning;
CREATE EXTENSION tool_audit;
RESET client_min_messages;
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql

-- Rows born old: a superuser restoring brings id and time, and the policy
-- and expiry 1.4's insert trigger gives (so that new rows of the same tenant
-- and policy join their chains); p5 brings none, as a row written before 1.4.
SET tool_audit.restoring = on;
-- p1: 20 "general" calls 800 days old (purgeable), then one recent call
INSERT INTO tool_audit.tool_calls (id, recorded_at, tenant_id, tool_name, user_id, success, retention_policy, expires_at)
  SELECT nextval('tool_audit.tool_calls_id_seq'), now() - interval '800 days' + g * interval '1 minute',
         'p1', 'search', 'pu' || (g % 4), true, 'general', now() - interval '435 days'
    FROM generate_series(1, 20) g;
-- p2: payments 800 days old: "financial" keeps them 2555 days
INSERT INTO tool_audit.tool_calls (id, recorded_at, tenant_id, tool_name, success, retention_policy, expires_at)
  SELECT nextval('tool_audit.tool_calls_id_seq'), now() - interval '800 days', 'p2', 'charge_payment', true,
         'financial', now() + interval '1755 days'
    FROM generate_series(1, 5) g;
-- p3: rows whose own expiry (decided when written) has not passed yet
INSERT INTO tool_audit.tool_calls (id, recorded_at, tenant_id, tool_name, success, retention_policy, expires_at)
  SELECT nextval('tool_audit.tool_calls_id_seq'), now() - interval '800 days', 'p3', 'search', true,
         'general', now() + interval '10 days'
    FROM generate_series(1, 3) g;
-- p3b: the same with the expiry passed: purgeable
INSERT INTO tool_audit.tool_calls (id, recorded_at, tenant_id, tool_name, success, retention_policy, expires_at)
  SELECT nextval('tool_audit.tool_calls_id_seq'), now() - interval '800 days', 'p3b', 'search', true,
         'general', now() - interval '435 days'
    FROM generate_series(1, 3) g;
-- p4: a lane purged whole
INSERT INTO tool_audit.tool_calls (id, recorded_at, tenant_id, tool_name, success, retention_policy, expires_at)
  SELECT nextval('tool_audit.tool_calls_id_seq'), now() - interval '800 days', 'p4', 'search', true,
         'general', now() - interval '435 days'
    FROM generate_series(1, 4) g;
-- p5: a tenant whose contract keeps "general" rows 1000 days
INSERT INTO tool_audit.tool_calls (id, recorded_at, tenant_id, tool_name, success)
  SELECT nextval('tool_audit.tool_calls_id_seq'), now() - interval '800 days', 'p5', 'search', true
    FROM generate_series(1, 2) g;
-- admin events of tenant p1, 800 days old, one about a held subject
INSERT INTO tool_audit.admin_events (id, occurred_at, event_type, actor, tenant_id, payload, retention_policy, expires_at)
  SELECT nextval('tool_audit.admin_events_id_seq'), now() - interval '800 days', 'prompt.change', 'pa', 'p1',
         CASE WHEN g = 2 THEN '{"subject_id": "held_subject"}'::jsonb ELSE '{}' END,
         'admin', now() - interval '435 days'
    FROM generate_series(1, 3) g;
-- an old purge event (as a restore would bring one): never purged
INSERT INTO tool_audit.admin_events (id, occurred_at, event_type, actor, tenant_id, payload)
  VALUES (nextval('tool_audit.admin_events_id_seq'), now() - interval '800 days',
          'tool_audit.retention.purge', 'pa', 'p6', '{"rows": 0, "anchors": []}');
RESET tool_audit.restoring;
INSERT INTO tool_audit.tool_calls (tenant_id, tool_name, user_id, success) VALUES ('p1', 'search', 'pu9', true);
INSERT INTO tool_audit.retention_overrides (tenant_id, policy_name, retention_days, reason, changed_by)
  VALUES ('p5', 'general', 1000, 'contract', 'regress');

SELECT tool_audit.place_hold('{"tenant_id": "p1", "user_id": "pu1"}', 'litigation') AS hold1 \gset
SELECT tool_audit.place_hold('{"subject_id": "held_subject"}', 'regulator') AS hold2 \gset
SELECT count(*) AS problems FROM tool_audit.verify();
SELECT tool_audit.digest() AS before \gset
SELECT count(*) AS tool_calls_before FROM tool_audit.tool_calls;
SELECT count(*) AS admin_events_before FROM tool_audit.admin_events;

-- a dry run reports and removes nothing
SELECT r->'rows' AS rows, r->'dry_run' AS dry_run, r->'purge_event_id' AS event, r->'counts' AS counts,
       jsonb_array_length(r->'anchors') AS anchors
  FROM tool_audit.purge_expired(true) r;
SELECT count(*) AS tool_calls_after_dry_run FROM tool_audit.tool_calls;
SELECT count(*) AS purge_events FROM tool_audit.admin_events WHERE event_type = 'tool_audit.retention.purge';
SELECT count(*) AS anchors FROM tool_audit.purge_anchors;

-- an admin purges
SET ROLE regress_admin;
SELECT tool_audit.purge_expired() AS r \gset
RESET ROLE;
SELECT (:'r'::jsonb)->'rows' AS rows, (:'r'::jsonb)->'rows_kept' AS kept, (:'r'::jsonb)->'dry_run' AS dry_run,
       (:'r'::jsonb)->'counts' AS counts;
SELECT (:'r'::jsonb ->> 'purge_event_id')::bigint AS ev \gset
-- what is left: held rows (pu1), p2 (financial), p3 (not expired), p5 (contract), recent rows
SELECT tenant_id, count(*), string_agg(DISTINCT coalesce(user_id, '-'), ',') AS users
  FROM tool_audit.tool_calls WHERE tenant_id LIKE 'p%' GROUP BY 1 ORDER BY 1;
SELECT tenant_id, event_type, payload FROM tool_audit.admin_events
 WHERE event_type NOT LIKE 'tool_audit.hold%' AND tenant_id IS DISTINCT FROM NULL ORDER BY id;
-- the anchors: one per maximal run of removed positions, in the event
SELECT a.tenant_id, a.chain_lane, a.first_seq, a.last_seq, a.rows_removed, a.table_name,
       a.purge_event_id = :ev AS of_event,
       a.link_before = coalesce((SELECT t.chain_hash FROM tool_audit.tool_calls t
                                  WHERE t.chain_id = a.chain_id AND t.chain_lane = a.chain_lane
                                    AND t.chain_seq = a.first_seq - 1),
                                (SELECT e.chain_hash FROM tool_audit.admin_events e
                                  WHERE e.chain_id = a.chain_id AND e.chain_lane = a.chain_lane
                                    AND e.chain_seq = a.first_seq - 1),
                                CASE WHEN a.first_seq = 1 THEN decode(repeat('00', 32), 'hex') END) AS link_before_ok,
       a.max_expires_at <= now() AS expired
  FROM tool_audit.purge_anchors a ORDER BY a.table_name, a.tenant_id, a.first_seq;
SELECT e.event_type, e.actor, e.retention_policy, e.expires_at IS NOT NULL AS expires, e.payload = (:'r'::jsonb - 'purge_event_id' - 'dry_run') AS payload_is_report,
       (SELECT count(*) FROM tool_audit.purge_anchors a WHERE a.purge_event_id = e.id)
         = jsonb_array_length(e.payload->'anchors') AS all_anchors_listed
  FROM tool_audit.admin_events e WHERE e.id = :ev;
-- the purge agrees with hold_covers() and current_retention_days(): every
-- row left that is past the floor is held, or not expired
SELECT count(*) AS left_but_purgeable FROM tool_audit.tool_calls t
 WHERE coalesce(t.expires_at, '-infinity') <= now()
   AND t.recorded_at + tool_audit.current_retention_days(
         coalesce(t.retention_policy, tool_audit.retention_policy_for('tool_calls', t.tool_name)), t.tenant_id)
       * interval '1 day' <= now()
   AND NOT EXISTS (SELECT FROM tool_audit.legal_holds h WHERE h.released_at IS NULL
                     AND tool_audit.hold_covers(h.scope, t.tenant_id, t.subject_id, t.user_id,
                                                t.conversation_id, t.tool_name, t.recorded_at));

-- verify() clean; the digest taken before names exactly the purged spans
-- where it had a head (lanes purged whole), and nothing else
SELECT * FROM tool_audit.verify();
SELECT table_name, position, row_id, regexp_replace(problem, 'admin event [0-9]+', 'admin event N') AS problem
  FROM tool_audit.verify_digest(:'before') ORDER BY 1, 2;

-- check_row() (the reports' per-row check) takes a purged neighbour's link
-- from its anchor, for a reader too, who cannot read the anchors
SELECT count(*) AS rows_with_problems FROM tool_audit.tool_calls t WHERE tool_audit.check_row(t) IS NOT NULL;
SELECT count(*) AS events_with_problems FROM tool_audit.admin_events e WHERE tool_audit.check_row(e) IS NOT NULL;
SET ROLE regress_reader;
SELECT count(*) AS rows_seen, count(*) FILTER (WHERE tool_audit.check_row(t) IS NOT NULL) AS with_problems
  FROM tool_audit.tool_calls t WHERE tenant_id = 'p1';
SELECT regress_try($$SELECT count(*) FROM tool_audit.purge_anchors$$);
RESET ROLE;

-- the lane purged whole goes on from its anchor: neither forked nor restarted
INSERT INTO tool_audit.tool_calls (tenant_id, tool_name, success) VALUES ('p4', 'search', true);
SELECT t.chain_seq, t.chain_hash = tool_audit.chain_link(t.chain_id, t.chain_lane, t.chain_seq, a.link_after, t.row_hash) AS links_to_anchor
  FROM tool_audit.tool_calls t JOIN tool_audit.purge_anchors a USING (chain_id, chain_lane)
 WHERE t.tenant_id = 'p4';
-- a digest lists the head of a lane whose last rows were purged from its anchor
SELECT h->>'table' AS table_name, h->>'tenant' AS tenant, h->'position' AS position,
       EXISTS (SELECT FROM tool_audit.purge_anchors a
                WHERE a.table_name = h->>'table' AND a.chain_id = (h->>'chain')::bigint
                  AND a.chain_lane = (h->>'lane')::int AND a.last_seq = (h->>'position')::bigint
                  AND encode(a.link_after, 'hex') = h->>'hash') AS from_anchor
  FROM jsonb_array_elements(tool_audit.digest()->'heads') h
 WHERE h->>'tenant' LIKE 'p%'
 ORDER BY 1, 2;
SELECT tool_audit.digest() AS after \gset
SELECT count(*) AS problems FROM tool_audit.verify();

-- nothing more to purge; once the holds are released, their rows go, with
-- anchors that follow the first purge's where the spans meet
SELECT r->'rows' AS rows, jsonb_array_length(r->'anchors') AS anchors FROM tool_audit.purge_expired() r;
SELECT tool_audit.release_hold(:hold1, 'settled'), tool_audit.release_hold(:hold2, 'closed');
SELECT tool_audit.purge_expired() AS r2 \gset
SELECT (:'r2'::jsonb)->'rows' AS rows, (:'r2'::jsonb)->'counts' AS counts;
SELECT a.table_name, a.tenant_id, a.first_seq, a.last_seq,
       a.link_before = (SELECT b.link_after FROM tool_audit.purge_anchors b
                         WHERE b.table_name = a.table_name AND b.chain_id = a.chain_id
                           AND b.chain_lane = a.chain_lane AND b.last_seq = a.first_seq - 1) AS follows_earlier_anchor
  FROM tool_audit.purge_anchors a WHERE a.purge_event_id = (:'r2'::jsonb ->> 'purge_event_id')::bigint
 ORDER BY 1, 2, 3;
SELECT * FROM tool_audit.verify();
SELECT table_name, position, regexp_replace(problem, 'admin event [0-9]+', 'admin event N') AS problem
  FROM tool_audit.verify_digest(:'after') ORDER BY 1, 2;
SELECT table_name, position, regexp_replace(problem, 'admin event [0-9]+', 'admin event N') AS problem
  FROM tool_audit.verify_digest(:'before') ORDER BY 1, 2;

-- who may purge, and how
SET ROLE regress_writer;
SELECT regress_try($$SELECT tool_audit.purge_expired()$$);
RESET ROLE;
SET ROLE regress_reader;
SELECT regress_try($$SELECT tool_audit.purge_expired(true)$$);
RESET ROLE;
SELECT regress_try($$SELECT tool_audit.purge_expired(NULL)$$);
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT regress_try($$SELECT tool_audit.purge_expired()$$);
ROLLBACK;

-- every other delete path stays refused: owner (this superuser), admin,
-- replica mode, TRUNCATE, and the anchors themselves
SELECT regress_try($$DELETE FROM tool_audit.tool_calls WHERE tenant_id = 'p2'$$);
SELECT regress_try($$DELETE FROM tool_audit.admin_events WHERE tenant_id = 'p1'$$);
SET session_replication_role = replica;
SELECT regress_try($$DELETE FROM tool_audit.tool_calls WHERE tenant_id = 'p2'$$);
SELECT regress_try($$DELETE FROM tool_audit.purge_anchors$$);
RESET session_replication_role;
SELECT regress_try($$TRUNCATE tool_audit.tool_calls$$);
SELECT regress_try($$TRUNCATE tool_audit.purge_anchors$$);
SELECT regress_try($$UPDATE tool_audit.purge_anchors SET last_seq = last_seq + 1$$);
SET ROLE regress_admin;
SELECT regress_try($$DELETE FROM tool_audit.tool_calls WHERE tenant_id = 'p2'$$);
SELECT regress_try($$INSERT INTO tool_audit.purge_anchors VALUES (1, 'tool_calls', 1, 0, 1, 1, '\x00', '\x00', 1, now())$$);
SELECT regress_try($$SELECT tool_audit.log_event('tool_audit.retention.purge', 'me', '{"anchors": []}')$$);
RESET ROLE;
SELECT count(*) AS p2_rows FROM tool_audit.tool_calls WHERE tenant_id = 'p2';

-- (1.5) alerts: one goes when its last_at is older than the longest
-- retention any policy gives its tenant, none of the rows it lists is left,
-- it is acknowledged or low/medium, and no hold covers its tenant and time.
-- Written directly (a superuser); 9000000000 is a row id that is gone.
INSERT INTO tool_audit.alerts (rule_name, kind, severity, tenant_id, burst_key, first_at, last_at,
                               tool_call_ids, acknowledged_by, acknowledged_at, acknowledged_note)
VALUES ('pa_low_gone', 'tool_name', 'low', 'pa', 'search', now() - interval '3000 days',
        now() - interval '3000 days', '{9000000000}', NULL, NULL, NULL),
       ('pa_critical_open', 'tool_name', 'critical', 'pa', 'search', now() - interval '3000 days',
        now() - interval '3000 days', '{9000000000}', NULL, NULL, NULL),
       ('pa_critical_acked', 'tool_name', 'critical', 'pa', 'search', now() - interval '3000 days',
        now() - interval '3000 days', '{9000000000}', 'regress_admin', now() - interval '2999 days', 'seen'),
       ('pa_rows_left', 'tool_name', 'low', 'pa', 'charge_payment', now() - interval '3000 days',
        now() - interval '3000 days', ARRAY[(SELECT min(id) FROM tool_audit.tool_calls WHERE tenant_id = 'p2')],
        NULL, NULL, NULL),
       ('pa_recent', 'check', 'low', 'pa', '', now() - interval '2000 days', now() - interval '2000 days',
        '{}', NULL, NULL, NULL),
       ('pa_no_rows', 'check', 'medium', 'pa', '', now() - interval '3000 days', now() - interval '3000 days',
        '{}', NULL, NULL, NULL),
       ('pa_held', 'check', 'low', 'pa_held', '', now() - interval '3000 days', now() - interval '3000 days',
        '{}', NULL, NULL, NULL);
SET ROLE regress_admin;
SELECT tool_audit.place_hold('{"tenant_id": "pa_held"}', 'alert audit') AS alert_hold \gset
RESET ROLE;
SELECT r -> 'alerts_removed' AS would_remove, r -> 'rows' AS rows
  FROM tool_audit.purge_expired(true) r;
SELECT count(*) AS alerts_after_dry_run FROM tool_audit.alerts WHERE rule_name LIKE 'pa\_%';
SET ROLE regress_admin;
SELECT tool_audit.purge_expired() AS ra \gset
RESET ROLE;
SELECT (:'ra'::jsonb) -> 'alerts_removed' AS removed,
       (SELECT payload -> 'alerts_removed' FROM tool_audit.admin_events
         WHERE id = (:'ra'::jsonb ->> 'purge_event_id')::bigint) AS in_event;
SELECT rule_name FROM tool_audit.alerts WHERE rule_name LIKE 'pa\_%' ORDER BY 1;
-- once the hold is released, its alert goes too
SET ROLE regress_admin;
SELECT tool_audit.release_hold(:alert_hold, 'closed');
SELECT tool_audit.purge_expired() -> 'alerts_removed' AS removed_after_release;
RESET ROLE;
SELECT rule_name FROM tool_audit.alerts WHERE rule_name LIKE 'pa\_%' ORDER BY 1;
-- no other path deletes an alert
SELECT regress_try($$DELETE FROM tool_audit.alerts WHERE rule_name = 'pa_recent'$$);
SELECT * FROM tool_audit.verify();

-- a faked anchor (a superuser inserting one) is reported: naming an event
-- that is not a purge event, and one its purge event does not list
INSERT INTO tool_audit.purge_anchors (purge_event_id, table_name, chain_id, chain_lane, first_seq, last_seq,
                                      link_before, link_after, rows_removed, max_expires_at)
  SELECT (SELECT min(id) FROM tool_audit.admin_events WHERE event_type = 'tool_audit.hold.place'),
         'tool_calls', chain_id, chain_lane, 100, 100, chain_hash, chain_hash, 1, now() - interval '1 day'
    FROM tool_audit.tool_calls WHERE tenant_id = 'p2' AND chain_seq = 5;
INSERT INTO tool_audit.purge_anchors (purge_event_id, table_name, chain_id, chain_lane, first_seq, last_seq,
                                      link_before, link_after, rows_removed, max_expires_at)
  SELECT :ev, 'tool_calls', chain_id, chain_lane, 200, 200, chain_hash, chain_hash, 1, now() - interval '1 day'
    FROM tool_audit.tool_calls WHERE tenant_id = 'p2' AND chain_seq = 5;
SELECT table_name, position, regexp_replace(problem, 'admin event [0-9]+', 'admin event E') AS problem
  FROM tool_audit.verify() ORDER BY 1, 2, 3;

-- what verify() relies on for each anchor: its purge event backs it (the
-- two forged just above are not backed)
SELECT table_name, count(*) AS anchors, count(problem) AS not_backed
  FROM (SELECT 'tool_calls' AS table_name, * FROM tool_audit.purge_anchor_check('tool_calls')
        UNION ALL
        SELECT 'admin_events', * FROM tool_audit.purge_anchor_check('admin_events')) c
 GROUP BY 1 ORDER BY 1;

\c :regress_db
DROP DATABASE regress_tool_audit_purge;
