-- What CREATE EXTENSION made, and what the suite's fixtures (test/fixtures.sql,
-- which every file includes) add to it: test roles, a helper that reports
-- SQLSTATEs, and a known pseudonymization key so that pseudonyms are
-- deterministic.
\set VERBOSITY terse

-- what CREATE EXTENSION made
SELECT extname, extversion, extnamespace::regnamespace FROM pg_extension WHERE extname = 'tool_audit';
SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE 'tool\_audit\_%' ORDER BY 1;
SELECT tgrelid::regclass, tgname, tgenabled FROM pg_trigger
 WHERE tgrelid IN ('tool_audit.tool_calls'::regclass, 'tool_audit.admin_events'::regclass)
   AND NOT tgisinternal ORDER BY 1, 2;
SELECT evtname, evtevent, evtenabled FROM pg_event_trigger ORDER BY 1;
SELECT relname, relrowsecurity, relpersistence FROM pg_class
 WHERE relnamespace = 'tool_audit'::regnamespace AND relkind = 'r' ORDER BY 1;
SELECT count(*) AS builtin_rules FROM tool_audit.sanitize_rules WHERE builtin;

-- CREATE EXTENSION made one key, named after the time of installation
SELECT key_id ~ '^k[0-9]{20}$' AS install_key_named, active FROM tool_audit.pseudonym_key_ids;
SELECT key_id AS install_key FROM tool_audit.pseudonym_key_ids \gset
-- the fixtures: a fixed key, so every pseudonym is reproducible; the install key retires
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql
SELECT CASE WHEN key_id = :'install_key' THEN 'the install key' ELSE key_id END AS key, active
  FROM tool_audit.pseudonym_key_ids ORDER BY active;
SELECT event_type, actor, payload->>'after' AS after, payload->>'before' = :'install_key' AS before_was_install_key
  FROM tool_audit.admin_events ORDER BY id;
-- the test roles and what they are members of
SELECT r.rolname, array_agg(g.rolname ORDER BY g.rolname) FILTER (WHERE g.rolname IS NOT NULL) AS member_of
  FROM pg_roles r LEFT JOIN pg_auth_members m ON m.member = r.oid LEFT JOIN pg_roles g ON g.oid = m.roleid
 WHERE r.rolname LIKE 'regress\_%' GROUP BY 1 ORDER BY 1;
-- included again (every file does), the fixtures change nothing
\i :abs_srcdir/fixtures.sql
SELECT (SELECT count(*) FROM tool_audit.admin_events) AS admin_events,
       (SELECT count(*) FROM tool_audit.pseudonym_key_ids) AS keys,
       (SELECT key_id FROM tool_audit.pseudonym_key_ids WHERE active) AS active_key;
-- regress_try() reports what a statement raised
SELECT regress_try('SELECT 1'), regress_try('SELECT 1 / 0');
