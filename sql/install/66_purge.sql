
-- ---------------------------------------------------------------------------
-- Legal holds and purges (1.4, doc/retention.md "Holds" and "Purge")
-- ---------------------------------------------------------------------------

-- A lane whose rows were all purged keeps its head in its last anchor; the
-- tenant and policy of the span's last row let digest() list that head like
-- a row's.
ALTER TABLE tool_audit.purge_anchors
    ADD COLUMN tenant_id text,
    ADD COLUMN retention_policy text;
COMMENT ON COLUMN tool_audit.purge_anchors.tenant_id IS
    'The tenant of the span''s last row (a lane whose rows are all purged keeps its head here)';
COMMENT ON COLUMN tool_audit.purge_anchors.retention_policy IS
    'The retention_policy column of the span''s last row';

-- check_hold_scope(scope): raises an error naming the first bad key of a hold's
-- scope, never its value; the keys and their values in hold_covers()'s terms.
CREATE FUNCTION tool_audit.check_hold_scope(scope jsonb) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k text;
    v jsonb;
BEGIN
    IF scope IS NULL OR jsonb_typeof(scope) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'scope must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF scope = '{}'::jsonb THEN
        RAISE EXCEPTION 'scope must give at least one key'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Keys: tenant_id, subject_id, user_id, conversation_id, tool_name, from, to.';
    END IF;
    FOR k, v IN SELECT e.key, e.value FROM jsonb_each(scope) e ORDER BY e.key LOOP
        IF k NOT IN ('tenant_id', 'subject_id', 'user_id', 'conversation_id', 'tool_name', 'from', 'to') THEN
            -- the key itself is the caller's text: it is not repeated
            RAISE EXCEPTION 'scope has a key that is not one of tenant_id, subject_id, user_id, conversation_id, tool_name, from, to'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF jsonb_typeof(v) IS DISTINCT FROM 'string' OR v #>> '{}' = '' THEN
            RAISE EXCEPTION 'scope key "%" must be a non-empty string', k
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF k IN ('from', 'to') THEN
            -- a hold must mean the same instants every time it is read
            IF lower(btrim(v #>> '{}')) IN ('now', 'today', 'tomorrow', 'yesterday', 'infinity',
                                            '-infinity', 'epoch', 'allballs') THEN
                RAISE EXCEPTION 'scope key "%" must be a fixed timestamp, not a word for one', k
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            BEGIN
                PERFORM (v #>> '{}')::timestamptz;
            EXCEPTION WHEN OTHERS THEN
                RAISE EXCEPTION 'scope key "%" must be a timestamp', k
                    USING ERRCODE = 'invalid_parameter_value';
            END;
        END IF;
    END LOOP;
    IF (scope ->> 'from')::timestamptz > (scope ->> 'to')::timestamptz THEN
        RAISE EXCEPTION 'scope key "from" must not be after "to"'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;
COMMENT ON FUNCTION tool_audit.check_hold_scope(jsonb) IS
    'Raises an error naming the first bad key of a legal hold''s scope (never its value)';

CREATE FUNCTION tool_audit.place_hold(scope jsonb, reason text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id bigint;
BEGIN
    PERFORM tool_audit.check_hold_scope(scope);
    IF reason IS NULL OR btrim(reason) = '' THEN
        RAISE EXCEPTION 'reason must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- from and to are read once, in the placer's time zone, and kept as UTC
    -- instants: a purge or an erasure in a session with another TimeZone
    -- must cover exactly the same rows
    IF scope ? 'from' THEN
        scope := scope || jsonb_build_object('from', to_char((scope ->> 'from')::timestamptz AT TIME ZONE 'UTC',
                                                             'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'));
    END IF;
    IF scope ? 'to' THEN
        scope := scope || jsonb_build_object('to', to_char((scope ->> 'to')::timestamptz AT TIME ZONE 'UTC',
                                                           'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'));
    END IF;
    -- a running purge_expired() holds SHARE on legal_holds: this waits for it
    INSERT INTO tool_audit.legal_holds (scope, reason, placed_by)
    VALUES (place_hold.scope, place_hold.reason, tool_audit.acting_role())
    RETURNING hold_id INTO new_id;
    INSERT INTO tool_audit.admin_events (event_type, actor, actor_type, tenant_id, payload, reason)
    VALUES ('tool_audit.hold.place', tool_audit.acting_role(), 'user', scope ->> 'tenant_id',
            jsonb_build_object('hold_id', new_id, 'scope', scope), place_hold.reason);
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION tool_audit.place_hold(jsonb, text) IS
    'Places a legal hold on every audit row its scope covers (no purge or erasure removes them) and returns its id';

CREATE FUNCTION tool_audit.release_hold(hold_id bigint, reason text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    h tool_audit.legal_holds;
BEGIN
    IF hold_id IS NULL THEN
        RAISE EXCEPTION 'hold_id must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF reason IS NULL OR btrim(reason) = '' THEN
        RAISE EXCEPTION 'reason must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO h FROM tool_audit.legal_holds l WHERE l.hold_id = release_hold.hold_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no legal hold has this hold_id' USING ERRCODE = 'no_data_found';
    END IF;
    IF h.released_at IS NOT NULL THEN
        RAISE EXCEPTION 'this legal hold is already released'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    -- (1.5) with tool_audit.require_dual_approval on, an approved request
    PERFORM tool_audit.approval_gate('tool_audit.hold.release', jsonb_build_object('hold_id', h.hold_id));
    UPDATE tool_audit.legal_holds l
       SET released_at = now(), released_by = tool_audit.acting_role(),
           release_reason = release_hold.reason
     WHERE l.hold_id = h.hold_id;
    INSERT INTO tool_audit.admin_events (event_type, actor, actor_type, tenant_id, payload, reason)
    VALUES ('tool_audit.hold.release', tool_audit.acting_role(), 'user', h.scope ->> 'tenant_id',
            jsonb_build_object('hold_id', h.hold_id, 'scope', h.scope), release_hold.reason);
END
$$;
COMMENT ON FUNCTION tool_audit.release_hold(bigint, text) IS
    'Releases an active legal hold (its rows follow their retention again)';

-- hold_report(): each active hold and, per audit table, how many rows it
-- covers and their first and last time (one pass over each table per hold).
CREATE FUNCTION tool_audit.hold_report()
RETURNS TABLE (hold_id bigint, scope jsonb, reason text, placed_by text, placed_at timestamptz,
               table_name text, rows_covered bigint, first_at timestamptz, last_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT h.hold_id, h.scope, h.reason, h.placed_by, h.placed_at, c.table_name, c.n, c.first_at, c.last_at
      FROM tool_audit.legal_holds h
     CROSS JOIN LATERAL (
        SELECT 'admin_events'::text, count(*), min(e.occurred_at), max(e.occurred_at)
          FROM tool_audit.admin_events e
         WHERE tool_audit.hold_covers(h.scope, e.tenant_id, e.payload ->> 'subject_id', e.actor,
                                      e.payload ->> 'conversation_id', e.payload ->> 'tool_name',
                                      e.occurred_at)
        UNION ALL
        SELECT 'tool_calls'::text, count(*), min(t.recorded_at), max(t.recorded_at)
          FROM tool_audit.tool_calls t
         WHERE tool_audit.hold_covers(h.scope, t.tenant_id, t.subject_id, t.user_id,
                                      t.conversation_id, t.tool_name, t.recorded_at)
        UNION ALL
        SELECT 'data_changes'::text, count(*), min(d.recorded_at), max(d.recorded_at)
          FROM tool_audit.data_changes d
          LEFT JOIN tool_audit.tool_calls k ON k.event_id = d.call_event_id
         WHERE tool_audit.hold_covers(h.scope, d.tenant_id, k.subject_id, k.user_id,
                                      k.conversation_id, k.tool_name, d.recorded_at)) AS c(table_name, n, first_at, last_at)
     WHERE h.released_at IS NULL
     ORDER BY h.hold_id, c.table_name
$$;
COMMENT ON FUNCTION tool_audit.hold_report() IS
    'The active legal holds with, per audit table, the rows each covers and their first and last time';

-- (1.5) in_sanctioned_change(): true only while purge_expired() or
-- erase_subject() runs its own statements (guard.c), so that a guard
-- trigger written in PL/pgSQL (alerts_guard) lets their change through.
-- Callable by the owner only; it reads the flag and cannot set it.
CREATE FUNCTION tool_audit.in_sanctioned_change() RETURNS boolean
    AS 'MODULE_PATHNAME', 'in_sanctioned_change' LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION tool_audit.in_sanctioned_change() IS
    'Whether the running statement is purge_expired()''s or erase_subject()''s own change (for guard triggers); callable only by the owner';

CREATE FUNCTION tool_audit.purge_expired(dry_run boolean DEFAULT false) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'purge_expired' LANGUAGE C VOLATILE SECURITY DEFINER PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION tool_audit.purge_expired(boolean) IS
    'Deletes the expired rows no legal hold covers, leaves an anchor per purged span and a tool_audit.retention.purge event; a dry run only reports';

-- purge_anchor_check(table_name): the purge anchors of an audit table in
-- chain position order, each with what is wrong with it, or NULL when it is
-- tied to its purge event (purged_at: the event's time): the event exists, is a tool_audit.retention.purge
-- event whose row matches its row hash, lists the anchor exactly, and was
-- written after every row the anchor removed had expired.  verify() and
-- verify_digest() continue a lane across an anchor with either answer, and
-- call a span removed by a sanctioned purge only when the answer is NULL.
CREATE FUNCTION tool_audit.purge_anchor_check(table_name text)
RETURNS TABLE (chain_id bigint, chain_lane integer, first_seq bigint, last_seq bigint,
               link_before bytea, link_after bytea, purge_event_id bigint,
               tenant_id text, retention_policy text, purged_at timestamptz, problem text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.chain_id, a.chain_lane, a.first_seq, a.last_seq, a.link_before, a.link_after,
           a.purge_event_id, a.tenant_id, a.retention_policy, e.occurred_at,
           CASE
           WHEN e.id IS NULL
               THEN format('purge anchor names admin event %s, which does not exist', a.purge_event_id)
           WHEN e.event_type IS DISTINCT FROM 'tool_audit.retention.purge'
               THEN format('purge anchor names admin event %s, which is not a tool_audit.retention.purge event',
                           a.purge_event_id)
           WHEN e.row_hash IS DISTINCT FROM tool_audit.compute_row_hash(e)
               THEN format('purge anchor''s event (admin event %s) does not match its row hash', a.purge_event_id)
           WHEN NOT EXISTS (
                SELECT FROM jsonb_array_elements(CASE WHEN jsonb_typeof(e.payload -> 'anchors') = 'array'
                                                      THEN e.payload -> 'anchors' ELSE '[]' END) x
                 WHERE x ->> 'table' = a.table_name AND x ->> 'chain' = a.chain_id::text
                   AND x ->> 'lane' = a.chain_lane::text
                   AND x ->> 'first' = a.first_seq::text AND x ->> 'last' = a.last_seq::text
                   AND x ->> 'link_before' = encode(a.link_before, 'hex')
                   AND x ->> 'link_after' = encode(a.link_after, 'hex')
                   AND x ->> 'rows' = a.rows_removed::text
                   AND x ->> 'max_expires_at' = to_char(a.max_expires_at AT TIME ZONE 'UTC',
                                                        'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
                   AND (x ->> 'tenant') IS NOT DISTINCT FROM a.tenant_id
                   AND (x ->> 'retention_policy') IS NOT DISTINCT FROM a.retention_policy)
               THEN format('purge anchor not listed by its purge event (admin event %s)', a.purge_event_id)
           WHEN a.rows_removed <> a.last_seq - a.first_seq + 1
               THEN format('purge anchor''s row count does not match its positions (admin event %s)',
                           a.purge_event_id)
           WHEN NOT (a.max_expires_at <= e.occurred_at)
               THEN format('purge anchor removed rows that had not expired when its purge event (admin event %s) was written',
                           a.purge_event_id)
           END
      FROM tool_audit.purge_anchors a
      LEFT JOIN tool_audit.admin_events e ON e.id = a.purge_event_id
     WHERE a.table_name = purge_anchor_check.table_name
     ORDER BY a.chain_id, a.chain_lane, a.first_seq
$$;
COMMENT ON FUNCTION tool_audit.purge_anchor_check(text) IS
    'The purge anchors of an audit table in chain order, each with what is wrong with it or NULL when its purge event backs it';

-- legacy_retention_days(applies_to, name, tenant): the retention purge_expired()
-- gives a row written before 1.4 (which has no recorded policy or expiry): the
-- longest that any policy covering its tool or event type (by name or pattern),
-- or its table's default, gives the tenant today; so a policy added later, or
-- one that wins a tie, cannot take such rows away early.
CREATE FUNCTION tool_audit.legacy_retention_days(applies_to text, name text, tenant_id text)
    RETURNS integer LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT max(tool_audit.current_retention_days(p.policy_name, legacy_retention_days.tenant_id))
      FROM tool_audit.retention_policies p
     WHERE p.applies_to = legacy_retention_days.applies_to
       AND (p.is_default OR name = ANY (p.matches)
            OR EXISTS (SELECT FROM unnest(p.matches) m
                        WHERE strpos(m, '*') > 0
                          AND name LIKE replace(replace(replace(replace(m, '\', '\\'),
                                                '%', '\%'), '_', '\_'), '*', '%')))
$$;
COMMENT ON FUNCTION tool_audit.legacy_retention_days(text, text, text) IS
    'The retention in days purge_expired() gives a row written before 1.4: the longest of every policy covering its tool or event type, or the default';
