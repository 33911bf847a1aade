-- Legal holds: place_hold() and release_hold() check the scope (errors name
-- the key, never a value), are audited events, and hold_report() lists the
-- active holds with what each covers.  Holds against purge: purge.sql.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql

INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, user_id, subject_id, conversation_id, success)
  SELECT 'hold_tool_' || (g % 2), 'hold_t1', 'hold_u' || (g % 3), 'hold_s1', 'hold_c' || (g % 4), true
    FROM generate_series(1, 12) g;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, user_id, success)
  VALUES ('hold_tool_0', 'hold_t2', 'hold_u0', true);
INSERT INTO tool_audit.admin_events (event_type, actor, tenant_id, payload)
  VALUES ('prompt.change', 'hold_u0', 'hold_t1', '{"subject_id": "hold_s1"}');

-- an admin places holds; each is an audited event naming the hold
SET ROLE regress_admin;
SELECT tool_audit.place_hold('{"tenant_id": "hold_t1", "user_id": "hold_u0"}', 'litigation 7') AS h1 \gset
SELECT tool_audit.place_hold('{"subject_id": "hold_s1", "from": "2000-01-01", "to": "2999-01-01"}', 'regulator request') AS h2 \gset
SELECT tool_audit.place_hold('{"tool_name": "hold_tool_1", "tenant_id": "hold_t2"}', 'nothing yet') AS h3 \gset
RESET ROLE;
SELECT event_type, actor, tenant_id, reason, payload->'scope' AS scope,
       (payload->>'hold_id')::bigint = :h1 AS names_hold
  FROM tool_audit.admin_events WHERE event_type LIKE 'tool_audit.hold.%' AND (payload->>'hold_id')::bigint = :h1;
SELECT count(*) AS place_events FROM tool_audit.admin_events
 WHERE event_type = 'tool_audit.hold.place' AND (payload->>'hold_id')::bigint IN (:h1, :h2, :h3);

-- what each covers: rows per table and their first and last time, the same
-- as hold_covers() over the rows
SET ROLE regress_admin;
SELECT hold_id - :h1 AS hold, scope, reason, placed_by, table_name, rows_covered,
       (first_at IS NULL) = (rows_covered = 0) AS times_given
  FROM tool_audit.hold_report() WHERE hold_id IN (:h1, :h2, :h3) ORDER BY hold_id, table_name;
RESET ROLE;
SELECT count(*) AS covered_by_h1 FROM tool_audit.tool_calls t, tool_audit.legal_holds h
 WHERE h.hold_id = :h1
   AND tool_audit.hold_covers(h.scope, t.tenant_id, t.subject_id, t.user_id, t.conversation_id, t.tool_name, t.recorded_at);

-- scopes that are refused: the error names the key, never the value
SET ROLE regress_admin;
SELECT regress_try($$SELECT tool_audit.place_hold(NULL, 'r')$$);
SELECT regress_try($$SELECT tool_audit.place_hold('[1]', 'r')$$);
SELECT regress_try($$SELECT tool_audit.place_hold('{}', 'r')$$);
SELECT regress_try($$SELECT tool_audit.place_hold('{"jane.doe@example.com": "x"}', 'r')$$);
SELECT regress_try($$SELECT tool_audit.place_hold('{"user_id": 4111111111111111}', 'r')$$);
SELECT regress_try($$SELECT tool_audit.place_hold('{"user_id": ""}', 'r')$$);
SELECT regress_try($$SELECT tool_audit.place_hold('{"subject_id": null}', 'r')$$);
SELECT regress_try($$SELECT tool_audit.place_hold('{"from": "not a time jane.doe@example.com"}', 'r')$$);
SELECT regress_try($$SELECT tool_audit.place_hold('{"from": "2020-01-02", "to": "2020-01-01"}', 'r')$$);
SELECT regress_try($$SELECT tool_audit.place_hold('{"user_id": "u"}', NULL)$$);
SELECT regress_try($$SELECT tool_audit.place_hold('{"user_id": "u"}', '  ')$$);

-- release: audited with its reason; twice or an unknown hold is refused
SELECT tool_audit.release_hold(:h3, 'case closed');
SELECT regress_try(format('SELECT tool_audit.release_hold(%s, %L)', :h3, 'again'));
SELECT regress_try($$SELECT tool_audit.release_hold(-1, 'r')$$);
SELECT regress_try($$SELECT tool_audit.release_hold(NULL, 'r')$$);
SELECT regress_try(format('SELECT tool_audit.release_hold(%s, NULL)', :h1));
SELECT hold_id - :h1 AS hold FROM tool_audit.hold_report() WHERE hold_id IN (:h1, :h2, :h3) GROUP BY hold_id ORDER BY 1;
RESET ROLE;
SELECT released_by, release_reason, released_at IS NOT NULL AS released
  FROM tool_audit.legal_holds WHERE hold_id = :h3;
SELECT event_type, actor, reason, payload->'scope' AS scope
  FROM tool_audit.admin_events WHERE event_type = 'tool_audit.hold.release' AND (payload->>'hold_id')::bigint = :h3;

-- the holds table changes through these functions only; readers, writers
-- and the verifier can neither hold nor release
SET ROLE regress_admin;
SELECT regress_try($$DELETE FROM tool_audit.legal_holds$$);
SELECT regress_try($$UPDATE tool_audit.legal_holds SET released_at = now()$$);
SELECT regress_try($$INSERT INTO tool_audit.legal_holds (scope, reason, placed_by) VALUES ('{"user_id": "x"}', 'r', 'me')$$);
RESET ROLE;
SET ROLE regress_writer;
SELECT regress_try($$SELECT tool_audit.place_hold('{"user_id": "x"}', 'r')$$);
SELECT regress_try(format('SELECT tool_audit.release_hold(%s, %L)', :h1, 'r'));
RESET ROLE;
SET ROLE regress_reader;
SELECT regress_try($$SELECT * FROM tool_audit.hold_report()$$);
RESET ROLE;
-- a hold's event type is the extension's own: nobody else writes it
SET ROLE regress_writer;
SELECT regress_try($$SELECT tool_audit.log_event('tool_audit.hold.release', 'me', '{"hold_id": 1}')$$);
RESET ROLE;

SELECT count(*) AS problems FROM tool_audit.verify();

-- leave no active hold behind for the files after this one
SET ROLE regress_admin;
SELECT tool_audit.release_hold(:h1, 'done'), tool_audit.release_hold(:h2, 'done');
RESET ROLE;

-- a hold means the same instants whatever the session's time zone: words
-- for a moment are refused, and from/to are kept as UTC instants
SET ROLE regress_admin;
SELECT regress_try($$SELECT tool_audit.place_hold('{"tenant_id": "hold_tz", "to": "now"}', 'r')$$);
SELECT regress_try($$SELECT tool_audit.place_hold('{"tenant_id": "hold_tz", "from": " Tomorrow"}', 'r')$$);
SET TimeZone = 'Etc/GMT+12';
SELECT tool_audit.place_hold('{"tenant_id": "hold_tz", "from": "2025-10-28 06:00", "to": "2025-10-28 07:00"}',
                             'placed twelve hours behind UTC') AS htz \gset
SET TimeZone = 'Asia/Tokyo';
SELECT scope ->> 'from' AS "from", scope ->> 'to' AS "to",
       tool_audit.hold_covers(scope, 'hold_tz', NULL, NULL, NULL, NULL, '2025-10-28 18:30+00') AS covers_18_30_utc,
       tool_audit.hold_covers(scope, 'hold_tz', NULL, NULL, NULL, NULL, '2025-10-28 06:30+00') AS covers_06_30_utc
  FROM tool_audit.legal_holds WHERE hold_id = :htz;
RESET TimeZone;
SELECT tool_audit.release_hold(:htz, 'done');
RESET ROLE;
