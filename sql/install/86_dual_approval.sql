
-- ---------------------------------------------------------------------------
-- Dual approval (1.5, doc/governance.md): a request for an action with its
-- payload, approved by another person holding tool_audit_admin, used once
-- by its requester within its lifetime.  With tool_audit.require_dual_approval
-- on, the extension's own sensitive operations need one; applications call
-- consume_approval() for their own actions.  Every step is a tool_audit.approval.*
-- admin event with the request before and after.
-- ---------------------------------------------------------------------------
CREATE FUNCTION tool_audit.approval_person() RETURNS text
    AS 'MODULE_PATHNAME', 'approval_person' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION tool_audit.approval_person() IS
    'The person behind the session: its login role, which SET ROLE and SET SESSION AUTHORIZATION do not change';
CREATE FUNCTION tool_audit.approval_same_person(a text, b text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'approval_same_person' LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION tool_audit.approval_same_person(text, text) IS
    'True if two login roles are one person: the same role, or either a member of the other (superuser status aside)';
CREATE FUNCTION tool_audit.dual_approval_required() RETURNS boolean
    AS 'MODULE_PATHNAME', 'dual_approval_required' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION tool_audit.dual_approval_required() IS
    'The setting tool_audit.require_dual_approval, read with the library loaded';
CREATE FUNCTION tool_audit.approval_lifetime() RETURNS interval
    AS 'MODULE_PATHNAME', 'approval_lifetime' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION tool_audit.approval_lifetime() IS
    'The setting tool_audit.approval_lifetime: how long a new approval request stays open';

CREATE SEQUENCE tool_audit.approval_requests_request_id_seq;
CREATE TABLE tool_audit.approval_requests (
    request_id      bigint PRIMARY KEY DEFAULT nextval('tool_audit.approval_requests_request_id_seq'),
    action          text NOT NULL,
    payload         jsonb NOT NULL CONSTRAINT payload_is_object CHECK (jsonb_typeof(payload) = 'object'),
    payload_digest  bytea NOT NULL,
    digest_key_id   text NOT NULL,
    reason          text NOT NULL,
    tenant_id       text,
    state           text NOT NULL DEFAULT 'pending'
                    CONSTRAINT state_is_known CHECK (state IN ('pending', 'approved', 'rejected', 'consumed')),
    requested_by    text NOT NULL,
    requested_login text NOT NULL,
    requested_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    expires_at      timestamptz NOT NULL,
    decided_by      text,
    decided_login   text,
    decided_at      timestamptz,
    decision_note   text,
    consumed_by     text,
    consumed_at     timestamptz
);
ALTER SEQUENCE tool_audit.approval_requests_request_id_seq
    OWNED BY tool_audit.approval_requests.request_id;
CREATE INDEX approval_requests_open ON tool_audit.approval_requests (action, requested_by)
    WHERE state IN ('pending', 'approved');
COMMENT ON TABLE tool_audit.approval_requests IS
    'Dual approval requests: pending, approved (until used or expired), rejected or consumed; changed only by the approval functions';
COMMENT ON COLUMN tool_audit.approval_requests.payload IS
    'The payload as shown: sanitized, and for tool_audit.erase_subject the subject id pseudonymized';
COMMENT ON COLUMN tool_audit.approval_requests.payload_digest IS
    'SHA-256 of the pseudonymization key digest_key_id and the canonical action and payload: what an operation''s own payload must match';
COMMENT ON COLUMN tool_audit.approval_requests.requested_by IS
    'The role the requester acted as (after SET ROLE); requested_login: the login role (the person)';

-- row-level security as on the audit tables: admins read all, a writer its
-- own requests, a reader its tenants'
ALTER TABLE tool_audit.approval_requests ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_read ON tool_audit.approval_requests
    FOR SELECT TO tool_audit_admin USING (true);
CREATE POLICY writer_own ON tool_audit.approval_requests
    FOR SELECT TO tool_audit_writer USING (requested_by = CURRENT_USER);
CREATE POLICY reader_tenant ON tool_audit.approval_requests
    FOR SELECT TO tool_audit_reader
    USING (((SELECT tool_audit.bound_tenants()) IS NULL
            OR tenant_id IN (SELECT pg_catalog.unnest(tool_audit.bound_tenants())))
           AND (coalesce(pg_catalog.current_setting('tool_audit.tenant', true), '') = ''
            OR tenant_id = pg_catalog.current_setting('tool_audit.tenant', true)));

-- governance_event(): an admin event of dual approval or break-the-glass
-- review ("tool_audit." and the type), with the caller's note as its
-- reason; callable only by the owner (its own functions).  Returns its id.
CREATE FUNCTION tool_audit.governance_event(event_type text, payload jsonb, reason text,
                                            tenant_id text)
RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO tool_audit.admin_events (event_type, actor, actor_type, tenant_id, payload, reason)
    VALUES ('tool_audit.' || governance_event.event_type, tool_audit.acting_role(), 'user',
            governance_event.tenant_id, governance_event.payload, governance_event.reason)
    RETURNING id
$$;
COMMENT ON FUNCTION tool_audit.governance_event(text, jsonb, text, text) IS
    'Records a dual approval step or a break-the-glass review as a "tool_audit." admin event; callable only by the owner (its own functions)';

-- approval_payload(action, payload): the payload checked and completed for
-- the extension's own actions (the keys each takes, their JSON types, the
-- defaults of the operation's arguments), as given for any other action.
-- Errors name the key, never its value.
CREATE FUNCTION tool_audit.approval_payload(action text, payload jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    spec jsonb;
    k text;
    t text;
    v jsonb;
BEGIN
    IF payload IS NULL OR jsonb_typeof(payload) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'invalid value for argument "payload": expected a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- key: JSON type; "?" after it: optional (null when absent)
    spec := CASE action
        WHEN 'tool_audit.retention.set_policy' THEN
            '{"policy_name": "string", "retention_days": "number", "matches": "array?", "applies_to": "string?"}'
        WHEN 'tool_audit.retention.set_override' THEN
            '{"tenant_id": "string", "policy_name": "string", "retention_days": "number"}'
        WHEN 'tool_audit.hold.release' THEN '{"hold_id": "number"}'
        WHEN 'tool_audit.erase_subject' THEN '{"subject_id": "string"}'
        WHEN 'tool_audit.pseudonym_key.rotate' THEN '{"key_id": "string?"}'
        WHEN 'tool_audit.untrack' THEN '{"table": "string"}'
        WHEN 'tool_audit.alert_rule.disable' THEN '{"rule_name": "string"}'
        WHEN 'tool_audit.alert_checks.unschedule' THEN '{}'
        WHEN 'tool_audit.retention.unschedule' THEN '{}'
        END::jsonb;
    IF spec IS NULL THEN
        RETURN payload;
    END IF;
    FOR k IN SELECT jsonb_object_keys(payload) LOOP
        IF NOT spec ? k THEN
            RAISE EXCEPTION 'invalid value for argument "payload": % takes the keys %', action,
                    coalesce((SELECT string_agg(s, ', ' ORDER BY s) FROM jsonb_object_keys(spec) s), 'none')
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
    FOR k, t IN SELECT e.key, e.value #>> '{}' FROM jsonb_each(spec) e LOOP
        v := payload -> k;
        IF v IS NULL OR jsonb_typeof(v) = 'null' THEN
            IF right(t, 1) <> '?' THEN
                RAISE EXCEPTION 'invalid value for argument "payload": key "%" is missing', k
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            payload := payload || jsonb_build_object(k, CASE WHEN action = 'tool_audit.retention.set_policy'
                                                              AND k = 'applies_to' THEN 'tool_calls' END);
        ELSIF jsonb_typeof(v) <> rtrim(t, '?')
              OR (t = 'number' AND (v #>> '{}')::numeric <> trunc((v #>> '{}')::numeric)) THEN
            RAISE EXCEPTION 'invalid value for argument "payload": key "%" must be a JSON %', k,
                    CASE WHEN t = 'number' THEN 'integer' ELSE rtrim(t, '?') END
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
    RETURN payload;
END
$$;
COMMENT ON FUNCTION tool_audit.approval_payload(text, jsonb) IS
    'A request''s payload checked and completed for the extension''s own actions (keys, JSON types, defaults); as given for other actions';

-- approval_digest(action, payload, key_id): what a request commits to,
-- keyed so that a payload holding little-varying personal data (a subject
-- id) cannot be found from the digest by trying values
CREATE FUNCTION tool_audit.approval_digest(action text, payload jsonb, key_id text) RETURNS bytea
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT sha256(k.key || convert_to(approval_digest.action || E'\n' ||
                                      tool_audit.canonical_json(approval_digest.payload), 'UTF8'))
      FROM tool_audit.pseudonym_keys k
     WHERE k.key_id = approval_digest.key_id
$$;
COMMENT ON FUNCTION tool_audit.approval_digest(text, jsonb, text) IS
    'SHA-256 of a pseudonymization key and the canonical action and payload of a request; callable only by the owner';

CREATE FUNCTION tool_audit.request_approval(action text, payload jsonb, reason text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    full_payload jsonb;
    shown jsonb;
    key_id text;
    r tool_audit.approval_requests;
BEGIN
    -- errors name the argument, never its value
    IF action IS NULL OR action !~ '^[A-Za-z][A-Za-z0-9_.:-]{0,127}$' THEN
        RAISE EXCEPTION 'invalid value for argument "action": expected a name of 1 to 128 letters, digits, "_", ".", ":" or "-", starting with a letter'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The value is not shown: it may be a secret put in the wrong place.';
    END IF;
    IF reason IS NULL OR btrim(reason) = '' THEN
        RAISE EXCEPTION 'invalid value for argument "reason": must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF action LIKE 'tool\_audit.%' AND NOT pg_has_role(tool_audit.acting_role()::name, 'tool_audit_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'only tool_audit_admin can request approval for the extension''s own actions'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    full_payload := tool_audit.approval_payload(action, coalesce(payload, '{}'));
    -- what the table shows is sanitized as the audit tables' rows are
    shown := tool_audit.sanitize(full_payload);
    reason := tool_audit.sanitize_text(reason);
    IF action = 'tool_audit.erase_subject' THEN
        IF strpos(reason, full_payload ->> 'subject_id') > 0 THEN
            RAISE EXCEPTION 'argument "reason" contains the subject id'
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'The request and its event keep the reason, and must not name the subject.',
                      HINT = 'The value is not shown: the subject id is personal data.';
        END IF;
        shown := jsonb_build_object('subject_id', tool_audit.pseudonymize(full_payload ->> 'subject_id'));
    END IF;
    SELECT k.key_id INTO key_id FROM tool_audit.pseudonym_keys k WHERE k.active;
    INSERT INTO tool_audit.approval_requests
        (action, payload, payload_digest, digest_key_id, reason, tenant_id, requested_by,
         requested_login, expires_at)
    VALUES (request_approval.action, shown, tool_audit.approval_digest(request_approval.action, full_payload, key_id),
            key_id, request_approval.reason,
            CASE WHEN jsonb_typeof(full_payload -> 'tenant_id') = 'string' THEN full_payload ->> 'tenant_id' END,
            tool_audit.acting_role(), tool_audit.approval_person(),
            now() + tool_audit.approval_lifetime())
    RETURNING * INTO r;
    PERFORM tool_audit.governance_event('approval.request',
        jsonb_build_object('request_id', r.request_id, 'action', r.action, 'before', NULL,
                           'after', to_jsonb(r) - 'payload_digest'),
        r.reason, r.tenant_id);
    RETURN r.request_id;
END
$$;
COMMENT ON FUNCTION tool_audit.request_approval(text, jsonb, text) IS
    'Asks for a second person''s approval of an action with its payload; returns the request id (a tool_audit.approval.request admin event)';

-- decide_approval(): approve() and reject() in one place
CREATE FUNCTION tool_audit.decide_approval(request_id bigint, decision text, note text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    before_row tool_audit.approval_requests;
    after_row tool_audit.approval_requests;
    me text := tool_audit.acting_role();
    login text := tool_audit.approval_person();
BEGIN
    IF NOT pg_has_role(me::name, 'tool_audit_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'only tool_audit_admin can % approval requests', decision
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF request_id IS NULL THEN
        RAISE EXCEPTION 'request_id must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO before_row FROM tool_audit.approval_requests a
     WHERE a.request_id = decide_approval.request_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no approval request has this request_id' USING ERRCODE = 'no_data_found';
    END IF;
    IF decision = 'approve' THEN
        IF before_row.state <> 'pending' THEN
            RAISE EXCEPTION 'approval request % is % and cannot be approved', before_row.request_id, before_row.state
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        IF before_row.expires_at <= clock_timestamp() THEN
            RAISE EXCEPTION 'approval request % has expired', before_row.request_id
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'The requester asks again with tool_audit.request_approval().';
        END IF;
        -- another person: not the requester's login role, nor a login role
        -- that is a member of it or has it as a member; acting as another
        -- role (SET ROLE, SET SESSION AUTHORIZATION) changes nothing
        IF tool_audit.approval_same_person(login, before_row.requested_login) THEN
            RAISE EXCEPTION 'an approval request must be approved by another person than its requester'
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = 'The approver''s login role is, or is a member of or has as member, the requester''s.';
        END IF;
    ELSIF before_row.state NOT IN ('pending', 'approved') THEN
        RAISE EXCEPTION 'approval request % is % and cannot be rejected', before_row.request_id, before_row.state
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    UPDATE tool_audit.approval_requests a
       SET state = CASE decision WHEN 'approve' THEN 'approved' ELSE 'rejected' END,
           decided_by = me, decided_login = login, decided_at = now(),
           decision_note = tool_audit.sanitize_text(note)
     WHERE a.request_id = before_row.request_id
    RETURNING * INTO after_row;
    PERFORM tool_audit.governance_event('approval.' || decision,
        jsonb_build_object('request_id', after_row.request_id, 'action', after_row.action,
                           'before', to_jsonb(before_row) - 'payload_digest',
                           'after', to_jsonb(after_row) - 'payload_digest'),
        after_row.decision_note, after_row.tenant_id);
END
$$;
COMMENT ON FUNCTION tool_audit.decide_approval(bigint, text, text) IS
    'Approves or rejects an approval request (approve() and reject()); callable only by the owner';

CREATE FUNCTION tool_audit.approve(request_id bigint, note text DEFAULT NULL) RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT tool_audit.decide_approval(approve.request_id, 'approve', approve.note)
$$;
COMMENT ON FUNCTION tool_audit.approve(bigint, text) IS
    'Approves a pending, unexpired approval request of another person (tool_audit_admin only; a tool_audit.approval.approve admin event)';

CREATE FUNCTION tool_audit.reject(request_id bigint, note text DEFAULT NULL) RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT tool_audit.decide_approval(reject.request_id, 'reject', reject.note)
$$;
COMMENT ON FUNCTION tool_audit.reject(bigint, text) IS
    'Rejects a pending or approved, unused approval request; a requester may withdraw their own (tool_audit_admin only; a tool_audit.approval.reject admin event)';

-- consume_approval(action, payload): the caller's approved, unexpired,
-- unused request for exactly this action and payload is used, in the
-- caller's transaction (a rollback leaves it approved).  The operation's
-- caller must be the requester: the same login role acting as the same
-- role.  Without one: 42501, saying what was found instead.
CREATE FUNCTION tool_audit.consume_approval(action text, payload jsonb) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    full_payload jsonb;
    before_row tool_audit.approval_requests;
    after_row tool_audit.approval_requests;
    other text;
BEGIN
    IF action IS NULL THEN
        RAISE EXCEPTION 'invalid value for argument "action": must not be null'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    full_payload := tool_audit.approval_payload(action, coalesce(payload, '{}'));
    SELECT a.* INTO before_row FROM tool_audit.approval_requests a
     WHERE a.action = consume_approval.action
       AND a.requested_by = tool_audit.acting_role()
       AND a.requested_login = tool_audit.approval_person()
       AND a.state = 'approved' AND a.expires_at > clock_timestamp()
       AND a.payload_digest = tool_audit.approval_digest(consume_approval.action, full_payload, a.digest_key_id)
     ORDER BY a.request_id
     LIMIT 1
       FOR UPDATE;
    IF NOT FOUND THEN
        -- the newest matching request in another state says why
        SELECT CASE WHEN a.state = 'approved' THEN 'has expired'
                    WHEN a.state = 'pending' AND a.expires_at <= clock_timestamp() THEN 'expired unapproved'
                    WHEN a.state = 'pending' THEN 'is not approved yet'
                    ELSE 'was ' || a.state END
          INTO other
          FROM tool_audit.approval_requests a
         WHERE a.action = consume_approval.action
           AND a.requested_by = tool_audit.acting_role()
           AND a.requested_login = tool_audit.approval_person()
           AND a.payload_digest = tool_audit.approval_digest(consume_approval.action, full_payload, a.digest_key_id)
         ORDER BY a.request_id DESC
         LIMIT 1;
        RAISE EXCEPTION 'dual approval needed: no approved request of this role for this action and payload%',
                coalesce(' (the latest matching request ' || other || ')', '')
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = CASE WHEN action LIKE 'tool\_audit.%' THEN format('Action %s.', action)
                                ELSE 'The action and payload are not shown: they may hold secrets.' END,
                  HINT = 'Ask with tool_audit.request_approval(action, payload, reason), as the role that will act; another tool_audit_admin approves with tool_audit.approve(); each approval is used once.';
    END IF;
    UPDATE tool_audit.approval_requests a
       SET state = 'consumed', consumed_by = tool_audit.acting_role(), consumed_at = now()
     WHERE a.request_id = before_row.request_id
    RETURNING * INTO after_row;
    PERFORM tool_audit.governance_event('approval.consume',
        jsonb_build_object('request_id', after_row.request_id, 'action', after_row.action,
                           'before', to_jsonb(before_row) - 'payload_digest',
                           'after', to_jsonb(after_row) - 'payload_digest'),
        NULL, after_row.tenant_id);
    RETURN after_row.request_id;
END
$$;
COMMENT ON FUNCTION tool_audit.consume_approval(text, jsonb) IS
    'Uses the caller''s approved request for exactly this action and payload, once; raises 42501 when there is none (a tool_audit.approval.consume admin event)';

-- approval_gate(action, payload): consume_approval() when
-- tool_audit.require_dual_approval is on (returns the request id), nothing
-- when it is off (NULL).  What the extension's own sensitive operations
-- call; callable only by the owner (its own functions).
CREATE FUNCTION tool_audit.approval_gate(action text, payload jsonb) RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN tool_audit.dual_approval_required()
                THEN tool_audit.consume_approval(approval_gate.action, approval_gate.payload) END
$$;
COMMENT ON FUNCTION tool_audit.approval_gate(text, jsonb) IS
    'With tool_audit.require_dual_approval on, consume_approval(); with it off, NULL; for the extension''s own functions';
