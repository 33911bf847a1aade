-- erase_subject(): a data subject's personal fields replaced by markers
-- (GDPR Art. 17), rows under a legal hold kept, every chain still verified;
-- what verify() says of erasures written by anyone else.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql

-- the subject "subj-4711": as the subject of calls, as the user of others,
-- as an admin event's actor and subject; "subj-other" is someone else
INSERT INTO tool_audit.tool_calls
    (tool_name, tenant_id, conversation_id, user_id, user_role, subject_id, purpose, arguments,
     result_summary, success, error, client_ip, user_agent, session_metadata)
VALUES
    ('lookup_customer', 'er_acme', 'er_conv1', 'er_agent', 'support', 'subj-4711', 'ticket 9',
     '{"customer": "subj-4711", "fields": ["address"]}', '{"found": true}', true, NULL,
     '10.1.2.3', 'agent-ui/2.1', '{"session": "s1"}'),
    ('send_email', 'er_acme', 'er_conv1', 'er_agent', 'support', 'subj-4711', NULL,
     '{"to": "subject mailbox"}', '{}', false, 'mailbox of subj-4711 full', '10.1.2.3', NULL, '{}'),
    ('view_invoice', 'er_beta', 'er_conv2', 'subj-4711', 'customer', NULL, NULL,
     '{"invoice": 77}', '{"total": 12.5}', true, NULL, '192.0.2.9', 'mobile/1.0', '{"device": "phone"}'),
    ('lookup_customer', 'er_acme', 'er_held', 'er_agent', 'support', 'subj-4711', 'dispute',
     '{"customer": "subj-4711"}', '{}', true, NULL, NULL, NULL, '{}'),
    ('lookup_customer', 'er_acme', 'er_conv3', 'er_agent', 'support', 'subj-other', NULL,
     '{"customer": "subj-other"}', '{}', true, NULL, '10.1.2.3', NULL, '{}');
INSERT INTO tool_audit.admin_events (event_type, actor, tenant_id, payload, reason, source_ip)
VALUES ('account.update', 'subj-4711', 'er_beta', '{"field": "email"}', 'self service', '192.0.2.9'),
       ('support.note', 'er_agent', 'er_acme', '{"subject_id": "subj-4711", "note": "called twice"}', NULL, NULL),
       ('support.note', 'er_agent', 'er_acme', '{"subject_id": "subj-other", "note": "fine"}', NULL, NULL);

-- a legal hold on one conversation of the subject (place_hold() writes
-- these; a superuser's INSERT stands in for it here)
INSERT INTO tool_audit.legal_holds (scope, reason, placed_by)
VALUES ('{"subject_id": "subj-4711", "conversation_id": "er_held"}', 'litigation 2026-17', 'counsel')
RETURNING hold_id AS hold \gset

CREATE TEMP TABLE before_erasure AS
SELECT 'tool_calls' AS tab, id, row_hash, chain_id, chain_lane, chain_seq, chain_hash, recorded_at AS at
  FROM tool_audit.tool_calls WHERE tenant_id IN ('er_acme', 'er_beta')
UNION ALL
SELECT 'admin_events', id, row_hash, chain_id, chain_lane, chain_seq, chain_hash, occurred_at
  FROM tool_audit.admin_events WHERE tenant_id IN ('er_acme', 'er_beta');
SELECT tool_audit.digest() AS d \gset
SELECT count(*) AS problems_before FROM tool_audit.verify();

-- refusals: errors name the argument, never its value
SET ROLE regress_admin;
SELECT regress_try($$SELECT tool_audit.erase_subject(NULL, 'r', 'b')$$);
SELECT regress_try($$SELECT tool_audit.erase_subject('', 'r', 'b')$$);
SELECT regress_try($$SELECT tool_audit.erase_subject('subj-4711', NULL, 'b')$$);
SELECT regress_try($$SELECT tool_audit.erase_subject('subj-4711', 'r', '')$$);
SELECT regress_try($$SELECT tool_audit.erase_subject('subj-4711', 'request of subj-4711', 'b')$$);
SELECT regress_try($$SELECT tool_audit.erase_subject('subj-4711', 'r', 'consent of subj-4711 withdrawn')$$);
SELECT regress_try($$SELECT tool_audit.erase_subject('erased', 'r', 'b')$$);
SELECT regress_try($$SELECT tool_audit.erase_subject('true', 'r', 'b')$$);
RESET ROLE;
CREATE ROLE "regress_subj-4711" IN ROLE tool_audit_admin;
SET ROLE "regress_subj-4711";
SELECT regress_try($$SELECT tool_audit.erase_subject('subj-4711', 'r', 'b')$$);
RESET ROLE;
DROP ROLE "regress_subj-4711";
-- only admins erase
SET ROLE regress_reader;
SELECT regress_try($$SELECT tool_audit.erase_subject('subj-4711', 'r', 'b')$$);
SET ROLE regress_writer;
SELECT regress_try($$SELECT tool_audit.erase_subject('subj-4711', 'r', 'b')$$);
RESET ROLE;
-- nothing was changed or recorded by the refusals
SELECT count(*) AS erase_events FROM tool_audit.admin_events WHERE event_type = 'tool_audit.retention.erase';

-- the erasure
SET ROLE regress_admin;
SELECT tool_audit.erase_subject('subj-4711', 'data subject request 2026-0042', 'GDPR Art. 17(1)(a)') AS r \gset
RESET ROLE;
SELECT jsonb_pretty(:'r'::jsonb - 'erase_event_id' - 'erasures_hash' - 'hold_ids')
       AS result,
       (:'r'::jsonb -> 'hold_ids') = jsonb_build_array(:hold) AS names_the_hold,
       (:'r'::jsonb ->> 'erasures_hash') ~ '^[0-9a-f]{64}$' AS has_commitment,
       strpos(:'r', 'subj-4711') AS subject_in_result;

-- no row outside the hold can be found by the subject id, in any column
SELECT 'tool_calls' AS tab, conversation_id, count(*) FROM tool_audit.tool_calls t
 WHERE strpos(t::text, 'subj-4711') > 0 GROUP BY 2
UNION ALL
SELECT 'admin_events', NULL, count(*) FROM tool_audit.admin_events a
 WHERE strpos(a::text, 'subj-4711') > 0;
-- nor through the indexes (the old index entries lead to dead row versions only)
SET enable_seqscan = off;
SET enable_bitmapscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM tool_audit.tool_calls WHERE subject_id = 'subj-4711';
SELECT conversation_id FROM tool_audit.tool_calls WHERE subject_id = 'subj-4711';
SELECT count(*) AS by_user FROM tool_audit.tool_calls WHERE user_id = 'subj-4711';
RESET enable_seqscan;
RESET enable_bitmapscan;

-- what the erased rows hold now
SELECT tool_name, conversation_id, user_id, user_role, subject_id, purpose, arguments,
       result_summary, success, error, client_ip, user_agent, session_metadata
  FROM tool_audit.tool_calls WHERE tenant_id IN ('er_acme', 'er_beta') ORDER BY id;
SELECT event_type, actor, payload, reason, source_ip, metadata
  FROM tool_audit.admin_events WHERE tenant_id IN ('er_acme', 'er_beta') ORDER BY id;

-- the stored row hash and every chain column are as they were
SELECT count(*) AS rows_compared,
       count(*) FILTER (WHERE b.row_hash IS DISTINCT FROM x.row_hash OR b.chain_hash IS DISTINCT FROM x.chain_hash
                           OR b.chain_id IS DISTINCT FROM x.chain_id OR b.chain_seq IS DISTINCT FROM x.chain_seq
                           OR b.chain_lane IS DISTINCT FROM x.chain_lane OR b.at IS DISTINCT FROM x.at) AS changed
  FROM before_erasure b
  JOIN (SELECT 'tool_calls' AS tab, id, row_hash, chain_id, chain_lane, chain_seq, chain_hash, recorded_at AS at
          FROM tool_audit.tool_calls
        UNION ALL
        SELECT 'admin_events', id, row_hash, chain_id, chain_lane, chain_seq, chain_hash, occurred_at
          FROM tool_audit.admin_events) x USING (tab, id);

-- one erasures row per erased row; row_hash_after is the erased row's hash
SELECT e.table_name, e.erased_columns,
       e.row_hash_after = CASE e.table_name
           WHEN 'tool_calls' THEN (SELECT tool_audit.compute_row_hash(t) FROM tool_audit.tool_calls t WHERE t.id = e.row_id)
           ELSE (SELECT tool_audit.compute_row_hash(a) FROM tool_audit.admin_events a WHERE a.id = e.row_id) END
         AS hash_after_matches,
       e.erase_event_id = (:'r'::jsonb ->> 'erase_event_id')::bigint AS of_this_event
  FROM tool_audit.erasures e ORDER BY e.table_name, e.row_id;

-- the event: who, why, on what basis, the exception for the held row; never the subject id
SELECT event_type, actor, reason, payload ->> 'legal_basis' AS legal_basis,
       payload ->> 'exception' AS exception, payload -> 'rows_kept' AS rows_kept,
       strpos(a::text, 'subj-4711') AS subject_in_event
  FROM tool_audit.admin_events a WHERE event_type = 'tool_audit.retention.erase';

-- the erasure log ties each entry to its event
SELECT table_name, event_type, erased_by, reason, legal_basis, erased_columns
  FROM tool_audit.erasure_log ORDER BY table_name, row_id;
SET ROLE regress_reader;
SELECT regress_try('SELECT * FROM tool_audit.erasure_log');
RESET ROLE;

-- erasure is no problem: verify() finds nothing, a digest taken before still holds
SELECT * FROM tool_audit.verify();
SELECT * FROM tool_audit.verify_digest(:'d');

-- the guards are still in force for everyone else after an erasure
SELECT regress_try($$UPDATE tool_audit.tool_calls SET error = 'x' WHERE conversation_id = 'er_conv1'$$);
SET ROLE regress_admin;
SELECT regress_try($$UPDATE tool_audit.tool_calls SET error = 'x' WHERE conversation_id = 'er_conv1'$$);
SELECT regress_try($$INSERT INTO tool_audit.erasures VALUES (1, 'tool_calls', 1, '{}', '\x00')$$);
RESET ROLE;
SELECT regress_try($$DELETE FROM tool_audit.erasures$$);

-- the same row erased again for another subject: a second entry, the later one counts
SET ROLE regress_admin;
SELECT tool_audit.erase_subject('er_agent', 'employee left', 'GDPR Art. 17(1)(a)') ->> 'rows_erased' AS agent_rows;
RESET ROLE;
SELECT e.table_name, count(*) AS entries FROM tool_audit.erasures e
  JOIN tool_audit.tool_calls t ON e.table_name = 'tool_calls' AND t.id = e.row_id
 WHERE t.conversation_id IN ('er_conv1') OR t.tool_name = 'send_email' GROUP BY 1;
SELECT * FROM tool_audit.verify();
SELECT * FROM tool_audit.verify_digest(:'d');

-- the reports check rows with check_row(): an erased row is accepted there
-- too, so another subject's access report still verifies
SET ROLE regress_reader;
SELECT r -> 'total_accesses' AS accesses, r -> 'integrity_verified' AS integrity_verified,
       r -> 'accesses' -> 0 ->> 'accessed_by' AS accessed_by
  FROM tool_audit.access_report('subj-other', '2000-01-01', '2100-01-01') r;
SELECT count(*) AS erased_rows, count(tool_audit.check_row(t)) AS row_problems
  FROM tool_audit.tool_calls t WHERE t.tenant_id IN ('er_acme', 'er_beta')
   AND t.arguments = '{"tool_audit:erased": true}';
RESET ROLE;

-- a subject with no rows: the request is still an audited event
SET ROLE regress_admin;
SELECT tool_audit.erase_subject('subj-none', 'request 43', 'GDPR Art. 17(1)(a)') - 'erase_event_id' - 'erasures_hash' AS nothing;
-- every row held: nothing erased, the exception named
SELECT tool_audit.erase_subject('subj-4711', 'request 44', 'GDPR Art. 17(1)(a)') - 'erase_event_id' - 'erasures_hash' - 'hold_ids' AS all_held;
RESET ROLE;
-- released, the hold keeps nothing: the row is erased by the next request
UPDATE tool_audit.legal_holds SET released_at = now(), released_by = 'counsel', release_reason = 'settled'
 WHERE hold_id = :hold;
SET ROLE regress_admin;
SELECT tool_audit.erase_subject('subj-4711', 'request 45', 'GDPR Art. 17(1)(a)') -> 'rows_erased' AS after_release;
RESET ROLE;
SELECT count(*) AS found_by_subject FROM tool_audit.tool_calls t WHERE strpos(t::text, 'subj-4711') > 0;
SELECT * FROM tool_audit.verify();

-- each erase event's erasures_hash, recomputed in SQL from its entries
-- (doc/canonical-encoding.md, section 7)
SELECT a.payload ->> 'status' AS status, a.payload ->> 'erasures' AS entries,
       a.payload ->> 'erasures_hash' = encode(sha256(
           convert_to('tool_audit erasures 1', 'UTF8') || '\x00'::bytea ||
           coalesce((SELECT string_agg(
                        set_byte('\x00'::bytea, 0, octet_length(e.table_name)) || convert_to(e.table_name, 'UTF8')
                        || int8send(e.row_id) || int4send(cardinality(e.erased_columns))
                        || coalesce((SELECT string_agg(set_byte('\x00'::bytea, 0, octet_length(c)) || convert_to(c, 'UTF8'),
                                                       ''::bytea ORDER BY o)
                                       FROM unnest(e.erased_columns) WITH ORDINALITY u(c, o)), ''::bytea)
                        || e.row_hash_after, ''::bytea ORDER BY e.table_name COLLATE "C", e.row_id)
                       FROM tool_audit.erasures e WHERE e.erase_event_id = a.id), ''::bytea)), 'hex')
         AS commitment_matches
  FROM tool_audit.admin_events a WHERE a.event_type = 'tool_audit.retention.erase' ORDER BY a.id;

-- pseudonyms: a retired key stays until its owner deletes it, which makes
-- every pseudonym made with it unlinkable (doc/retention.md)
BEGIN;
SELECT tool_audit.rotate_pseudonym_key('er_next', decode(repeat('cd', 32), 'hex'));
SELECT key_id, active FROM tool_audit.pseudonym_key_ids WHERE key_id IN ('test', 'er_next') ORDER BY 1;
DELETE FROM tool_audit.pseudonym_keys WHERE key_id = 'test';
SELECT key_id FROM tool_audit.pseudonym_key_ids WHERE key_id IN ('test', 'er_next') ORDER BY 1;
ROLLBACK;

-- what verify() reports: a marker written by anyone else (here a writer's
-- row: it has no erasure entry) ...
BEGIN;
SET LOCAL ROLE regress_writer;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success, error)
  VALUES ('er_fake', 'er_acme', false, 'tool_audit:erased');
INSERT INTO tool_audit.admin_events (event_type, actor, tenant_id, payload)
  VALUES ('er.fake', 'er_agent', 'er_acme', '{"tool_audit:erased": true}');
RESET ROLE;
SELECT table_name, problem FROM tool_audit.verify();
ROLLBACK;
-- ... an erasures row inserted by hand (by a superuser), naming a real
-- erasure event or an event that is none ...
BEGIN;
INSERT INTO tool_audit.erasures
SELECT (:'r'::jsonb ->> 'erase_event_id')::bigint, 'tool_calls', id, '{error}', tool_audit.compute_row_hash(t)
  FROM tool_audit.tool_calls t WHERE conversation_id = 'er_conv3';
INSERT INTO tool_audit.erasures
SELECT (SELECT min(id) FROM tool_audit.admin_events), 'tool_calls', id, '{error}', tool_audit.compute_row_hash(t)
  FROM tool_audit.tool_calls t WHERE conversation_id = 'er_conv3';
SELECT table_name, row_id IS NOT NULL AS names_row,
       regexp_replace(problem, '[0-9]+', 'N', 'g') AS problem FROM tool_audit.verify();
-- check_row() no longer accepts the rows of that event either
SELECT conversation_id, tool_audit.check_row(t) AS problem
  FROM tool_audit.tool_calls t WHERE t.tenant_id IN ('er_acme', 'er_beta')
   AND tool_audit.check_row(t) IS NOT NULL ORDER BY t.id;
ROLLBACK;
SELECT * FROM tool_audit.verify();

-- like purge_expired(), erase_subject() reads the holds after locking them:
-- a transaction snapshot taken before would miss a hold committed in between
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT regress_try($$SELECT tool_audit.erase_subject('er_nobody', 'req', 'GDPR Art. 17(1)(a)')$$);
ROLLBACK;

-- accepted_row_hash(): the stored row hash for a row as a verified erasure
-- left it, the recomputed one for every other row
SELECT count(*) FILTER (WHERE e.row_id IS NOT NULL) AS erased,
       count(*) FILTER (WHERE e.row_id IS NOT NULL
                          AND tool_audit.accepted_row_hash(t) = t.row_hash
                          AND tool_audit.compute_row_hash(t) <> t.row_hash) AS erased_accepted,
       count(*) FILTER (WHERE e.row_id IS NULL
                          AND tool_audit.accepted_row_hash(t) = tool_audit.compute_row_hash(t)) AS others_recomputed,
       count(*) AS rows
  FROM tool_audit.tool_calls t
  LEFT JOIN (SELECT DISTINCT row_id FROM tool_audit.erasures WHERE table_name = 'tool_calls') e ON e.row_id = t.id
 WHERE t.tenant_id IN ('er_acme', 'er_beta');

-- ---- (1.5) alerts and row changes outside any call ----
-- the subject "er-sub9" in alerts: a burst of a user's calls about it (the
-- pair key), its own user burst (acknowledged with a note naming it), a
-- detail naming it; "er-sub99" is someone else; one alert is in a held
-- tenant.  Alerts are written directly (a superuser), as raise_alert() does.
INSERT INTO tool_audit.alerts (rule_name, kind, severity, tenant_id, burst_key, first_at, last_at, detail,
                               acknowledged_by, acknowledged_at, acknowledged_note)
VALUES ('er_pair', 'same_subject', 'high', 'er_acme', '["er_agent","er-sub9"]', now(), now(), '{"seen": 3}', NULL, NULL, NULL),
       ('er_user', 'distinct_subjects', 'medium', 'er_acme', 'er-sub9', now(), now(), '{}',
        'regress_admin', now(), 'called er-sub9 back'),
       ('er_detail', 'check', 'low', 'er_acme', 'lookup_customer', now(), now(), '{"subject": "er-sub9", "n": 1}', NULL, NULL, NULL),
       ('er_other', 'same_subject', 'high', 'er_acme', '["er_agent","er-sub99"]', now(), now(), '{"seen": 3}', NULL, NULL, NULL),
       ('er_heldalert', 'distinct_subjects', 'high', 'er_heldten', 'er-sub9', now(), now(), '{}', NULL, NULL, NULL),
       -- a tool's burst: its key names a tool, whatever the subject id given
       ('er_tool', 'tool_name', 'low', 'er_acme', 'er-sub9', now(), now(), '{}', NULL, NULL, NULL);
-- changes of tracked tables made outside any tool call (call_event_id NULL)
-- whose values, not row key, hold the subject id; and one of someone else
INSERT INTO tool_audit.data_changes (table_name, operation, row_key, old_values, new_values, tenant_id, call_event_id)
VALUES ('public.orders', 'UPDATE', '{"id": 501}', '{"customer": "er-sub9", "status": "new"}',
        '{"customer": "er-sub9", "status": "paid"}', 'er_acme', NULL),
       ('public.orders', 'INSERT', '{"id": 502}', '{}', '{"customer": "er-sub9"}', 'er_acme', NULL),
       ('public.orders', 'INSERT', '{"id": 503}', '{}', '{"customer": "er-sub99"}', 'er_acme', NULL);
-- an admin of the application impersonated the subject (and someone else)
SET ROLE regress_admin;
SELECT tool_audit.start_impersonation('er_adm', 'er-sub9', 'ticket of er-sub9', 30, 'er_acme') IS NOT NULL AS started;
SELECT tool_audit.end_impersonation('er_adm', 'er-sub9', 'er_acme') IS NOT NULL AS ended;
SELECT tool_audit.start_impersonation('er_adm', 'er-sub99', 'ticket 13', 30, 'er_acme') IS NOT NULL AS started;
SELECT tool_audit.place_hold('{"tenant_id": "er_heldten"}', 'audit of er_heldten') AS alert_hold \gset
SELECT r - 'erase_event_id' - 'erasures_hash' - 'hold_ids' AS erased,
       r -> 'hold_ids' = jsonb_build_array(:alert_hold) AS hold_reported
  FROM tool_audit.erase_subject('er-sub9', 'request 12', 'GDPR Art. 17(1)(a)') r;
RESET ROLE;
SELECT rule_name, tenant_id, burst_key, detail, acknowledged_by, acknowledged_note
  FROM tool_audit.alerts WHERE rule_name LIKE 'er\_%' ORDER BY rule_name;
SELECT row_key, old_values, new_values FROM tool_audit.data_changes
 WHERE table_name = 'public.orders' AND tenant_id = 'er_acme' ORDER BY id;
SELECT admin_id, target_user, reason, ended_at IS NOT NULL AS ended
  FROM tool_audit.impersonations WHERE admin_id = 'er_adm' ORDER BY impersonation_id;
SELECT event_type, actor, payload, reason FROM tool_audit.admin_events
 WHERE event_type LIKE 'impersonation.%' AND actor = 'er_adm' ORDER BY id;
SELECT count(*) AS rows_naming_subject
  FROM tool_audit.data_changes d WHERE strpos(d::text, 'er-sub9"') > 0;
SELECT count(*) AS events_naming_subject
  FROM tool_audit.admin_events e WHERE strpos(e::text, 'er-sub9') > 0 AND strpos(e::text, 'er-sub99') = 0;
SELECT count(*) AS alerts_naming_subject
  FROM tool_audit.alerts a WHERE strpos(a::text, 'er-sub9') > 0 AND strpos(a::text, 'er-sub99') = 0;
SELECT * FROM tool_audit.verify();
-- the guard still refuses every other change of an alert
SELECT regress_try($$UPDATE tool_audit.alerts SET burst_key = 'x' WHERE rule_name = 'er_other'$$);
SELECT regress_try($$DELETE FROM tool_audit.alerts WHERE rule_name = 'er_other'$$);
SELECT regress_try($$SELECT tool_audit.in_sanctioned_change()$$);
SET ROLE regress_admin;
SELECT regress_try($$SELECT tool_audit.in_sanctioned_change()$$);
SELECT tool_audit.release_hold(:alert_hold, 'audit closed');
SELECT tool_audit.end_impersonation('er_adm', 'er-sub99', 'er_acme') IS NOT NULL AS ended;
RESET ROLE;
