-- Time moves forward along a lane (issue 12, §2): a row back-dated by a
-- superuser (tool_audit.restoring = on, bringing its id and time) and chained
-- after later rows is reported by verify(); one a digest taken before it does
-- not cover, but whose time is before the digest's, by verify_digest().
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql

-- the problems of this file's chains only, times of today made stable
CREATE VIEW pg_temp.mine AS
SELECT id, 'tool_calls' AS t, tool_name AS name, recorded_at AS at FROM tool_audit.tool_calls WHERE tenant_id LIKE 'to\_%'
UNION ALL SELECT id, 'admin_events', event_type, occurred_at FROM tool_audit.admin_events WHERE tenant_id LIKE 'to\_%'
UNION ALL SELECT id, 'data_changes', table_name, recorded_at FROM tool_audit.data_changes WHERE tenant_id LIKE 'to\_%';
CREATE FUNCTION pg_temp.show(p text) RETURNS text LANGUAGE sql AS $$
  SELECT regexp_replace(regexp_replace(p, '20(2[3-9]|[3-9][0-9])-[0-9-]+T[0-9:.]+Z', 'NOW', 'g'),
                        'position [0-9]+ ', 'position N ', 'g') $$;

-- the trail of tenant to_t1, written by a writer, today
SET ROLE regress_writer;
SELECT tool_name FROM tool_audit.log_call('get_patient_record', '{}', '{}', 3,
    '{"tenant_id": "to_t1", "user_id": "dr_who", "subject_id": "pat_9"}');
INSERT INTO tool_audit.admin_events (event_type, actor, tenant_id) VALUES ('policy.edit', 'adm_1', 'to_t1');
RESET ROLE;
INSERT INTO tool_audit.data_changes (table_name, operation, row_key, tenant_id)
  VALUES ('public.patients', 'UPDATE', '{"id": 9}', 'to_t1');
-- (of this file's rows: files run before it in the schedule tamper on purpose)
SELECT count(*) AS problems FROM tool_audit.verify() WHERE (row_id, table_name) IN (SELECT id, t FROM pg_temp.mine);

-- the attack: a superuser writes today's row of its own, then, restoring,
-- rows "recorded in 2020 by regress_writer" with the retention of today's
-- (so in the same chain), chained after them
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, user_id, subject_id, success)
  VALUES ('get_patient_record', 'to_t1', 'dr_who', 'pat_9', true);
INSERT INTO tool_audit.admin_events (event_type, actor, tenant_id) VALUES ('policy.edit', 'adm_1', 'to_t1');
INSERT INTO tool_audit.data_changes (table_name, operation, row_key, tenant_id)
  VALUES ('public.patients', 'UPDATE', '{"id": 9}', 'to_t1');
SET tool_audit.restoring = on;
INSERT INTO tool_audit.tool_calls (id, recorded_at, recorded_by, tool_name, tenant_id, user_id, subject_id, success,
                                   retention_policy, expires_at)
  SELECT nextval('tool_audit.tool_calls_id_seq'), '2020-06-01 09:00:00+00', 'regress_writer',
         'get_patient_record', 'to_t1', 'dr_evil', 'pat_9', true, retention_policy, expires_at
    FROM tool_audit.tool_calls WHERE tenant_id = 'to_t1' ORDER BY id DESC LIMIT 1;
INSERT INTO tool_audit.admin_events (id, occurred_at, recorded_by, event_type, actor, tenant_id, retention_policy, expires_at)
  SELECT nextval('tool_audit.admin_events_id_seq'), '2020-06-01 09:00:00+00', 'regress_writer',
         'policy.edit', 'adm_1', 'to_t1', retention_policy, expires_at
    FROM tool_audit.admin_events WHERE tenant_id = 'to_t1' ORDER BY id DESC LIMIT 1;
INSERT INTO tool_audit.data_changes (id, recorded_at, recorded_by, table_name, operation, row_key, tenant_id, retention_policy, expires_at)
  SELECT nextval('tool_audit.data_changes_id_seq'), '2020-06-01 09:00:00+00', 'regress_writer',
         'public.patients', 'DELETE', '{"id": 9}', 'to_t1', retention_policy, expires_at
    FROM tool_audit.data_changes WHERE tenant_id = 'to_t1' ORDER BY id DESC LIMIT 1;
-- one chain per table, as today's rows
SELECT t, count(DISTINCT c) AS chains FROM (
  SELECT 'tool_calls' AS t, chain_id AS c FROM tool_audit.tool_calls WHERE tenant_id = 'to_t1'
  UNION ALL SELECT 'admin_events', chain_id FROM tool_audit.admin_events WHERE tenant_id = 'to_t1'
  UNION ALL SELECT 'data_changes', chain_id FROM tool_audit.data_changes WHERE tenant_id = 'to_t1') x
 GROUP BY 1 ORDER BY 1;
RESET tool_audit.restoring;
-- the patient's trail counts it
SELECT count(*) AS accesses_2020 FROM tool_audit.tool_calls
 WHERE subject_id = 'pat_9' AND recorded_at < '2021-01-01';

-- verify() names each back-dated row: its table, lane, position and id
SELECT v.table_name, v.chain IS NOT NULL AS has_chain, v.row_id = m.id AS the_row, m.name,
       pg_temp.show(v.problem) AS problem
  FROM tool_audit.verify() v JOIN pg_temp.mine m ON m.id = v.row_id AND m.t = v.table_name
 ORDER BY 1;
-- the position named is the row's
SELECT bool_and(v.position = c.chain_seq) AS positions_right
  FROM tool_audit.verify() v JOIN tool_audit.tool_calls c ON c.id = v.row_id
 WHERE v.table_name = 'tool_calls';
-- and nothing else in the database goes back in time
SELECT count(*) AS other_time_problems FROM tool_audit.verify()
 WHERE problem LIKE 'time goes back%' AND row_id NOT IN (SELECT id FROM pg_temp.mine);
-- verify(since) checks a row whose predecessor is in scope, whatever time it claims
SELECT count(*) AS with_since FROM tool_audit.verify(now() - interval '1 day') WHERE problem LIKE 'time goes back%'
   AND row_id IN (SELECT id FROM pg_temp.mine);
-- the tolerance: a superuser's setting only
SET ROLE regress_admin;
SELECT regress_try($$SET tool_audit.time_tolerance = '10y'$$);
RESET ROLE;
SET tool_audit.time_tolerance = '3650d';
SELECT count(*) AS problems_within_tolerance FROM tool_audit.verify() WHERE problem LIKE 'time goes back%';
RESET tool_audit.time_tolerance;

-- ---- a digest taken before: rows added since that claim earlier times ----
-- tenant to_t2: rows restored from 2019 (first in their lanes), then a digest
SET tool_audit.restoring = on;
INSERT INTO tool_audit.tool_calls (id, recorded_at, recorded_by, tool_name, tenant_id, subject_id, success)
  VALUES (nextval('tool_audit.tool_calls_id_seq'), '2019-01-01 00:00:00+00', 'regress_writer', 'old_call', 'to_t2', 'pat_8', true);
INSERT INTO tool_audit.admin_events (id, occurred_at, recorded_by, event_type, actor, tenant_id)
  VALUES (nextval('tool_audit.admin_events_id_seq'), '2019-01-01 00:00:00+00', 'regress_writer', 'old.event', 'adm_1', 'to_t2');
INSERT INTO tool_audit.data_changes (id, recorded_at, recorded_by, table_name, operation, row_key, tenant_id)
  VALUES (nextval('tool_audit.data_changes_id_seq'), '2019-01-01 00:00:00+00', 'regress_writer', 'public.old', 'INSERT', '{"id": 1}', 'to_t2');
RESET tool_audit.restoring;
SELECT tool_audit.digest() AS d \gset
-- (it covers everything: nothing but the back-dated rows of to_t1 to say)
SELECT count(*) AS problems_at_digest FROM tool_audit.verify_digest(:'d')
 WHERE (row_id, table_name) IN (SELECT id, t FROM pg_temp.mine) AND problem NOT LIKE 'time goes back%';
-- a row appended after the digest's head, in 2021 (later than the 2019 row:
-- the lane's order holds), and a row in a chain the digest does not know, in 2021
SET tool_audit.restoring = on;
INSERT INTO tool_audit.tool_calls (id, recorded_at, recorded_by, tool_name, tenant_id, subject_id, success)
  VALUES (nextval('tool_audit.tool_calls_id_seq'), '2021-01-01 00:00:00+00', 'regress_writer', 'after_head', 'to_t2', 'pat_8', true),
         (nextval('tool_audit.tool_calls_id_seq'), '2021-01-01 00:00:00+00', 'regress_writer', 'new_chain', 'to_t3', 'pat_8', true);
INSERT INTO tool_audit.admin_events (id, occurred_at, recorded_by, event_type, actor, tenant_id)
  VALUES (nextval('tool_audit.admin_events_id_seq'), '2021-01-01 00:00:00+00', 'regress_writer', 'after.head', 'adm_1', 'to_t2');
INSERT INTO tool_audit.data_changes (id, recorded_at, recorded_by, table_name, operation, row_key, tenant_id)
  VALUES (nextval('tool_audit.data_changes_id_seq'), '2021-01-01 00:00:00+00', 'regress_writer', 'public.new', 'INSERT', '{"id": 2}', 'to_t3');
RESET tool_audit.restoring;
-- and a row written now, after the digest: no problem
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('now_call', 'to_t2', true);
-- verify() sees no time going back in to_t2 and to_t3
SELECT count(*) AS verify_problems FROM tool_audit.verify() v JOIN pg_temp.mine m ON m.id = v.row_id AND m.t = v.table_name
 WHERE m.name IN ('after_head', 'after.head', 'new_chain', 'public.new', 'now_call');
-- verify_digest() names the four rows, and nothing else of the digest's time
SELECT v.table_name, v.row_id = m.id AS the_row, m.name, pg_temp.show(v.problem) AS problem
  FROM tool_audit.verify_digest(:'d') v LEFT JOIN pg_temp.mine m ON m.id = v.row_id AND m.t = v.table_name
 WHERE v.problem LIKE '%before the digest was taken%'
 ORDER BY 1, 3;
-- a digest taken now covers them all
SELECT count(*) AS covered_now FROM tool_audit.verify_digest(tool_audit.digest())
 WHERE problem LIKE '%before the digest was taken%';

-- ---- a tenant's digest says nothing of other tenants' chains ----
-- (tool_audit.tenant_digest(): rows of to_t3, restored from 2021 after the
-- digest of to_t2, are not "after" it; a row of to_t2 from 2021 after its
-- heads is)
SELECT tool_audit.tenant_digest('to_t2') AS td \gset
SET tool_audit.restoring = on;
INSERT INTO tool_audit.tool_calls (id, recorded_at, recorded_by, tool_name, tenant_id, subject_id, success)
  VALUES (nextval('tool_audit.tool_calls_id_seq'), '2021-06-01 00:00:00+00', 'regress_writer', 'other_tenant', 'to_t4', 'pat_8', true),
         (nextval('tool_audit.tool_calls_id_seq'), '2021-06-01 00:00:00+00', 'regress_writer', 'own_tenant', 'to_t2', 'pat_8', true);
RESET tool_audit.restoring;
SELECT m.name, pg_temp.show(v.problem) AS problem
  FROM tool_audit.verify_digest(:'td') v JOIN pg_temp.mine m ON m.id = v.row_id AND m.t = v.table_name
 WHERE v.problem LIKE '%before the digest was taken%' AND m.name IN ('other_tenant', 'own_tenant')
 ORDER BY 1;
