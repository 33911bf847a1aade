/* tool_audit--1.4--1.5.sql: calls that survive rollback and row changes
   linked to them (issue 14); alerts, audited reads, impersonation, dual
   approval and break-the-glass (issue 13) */

\echo Use "ALTER EXTENSION tool_audit UPDATE TO '1.5'" to load this file. \quit

-- Every object below is also in sql/install/*.sql, word for word:
-- test/t/010_fresh_vs_upgraded.pl compares a fresh and an upgraded database.
-- The new columns are nullable and NULL on older rows (a NULL column is not
-- hashed, so their row hashes do not change).

ALTER TABLE tool_audit.tool_calls
    ADD COLUMN call_phase text CONSTRAINT call_phase_is_known CHECK (call_phase IN ('started', 'ended')),
    ADD COLUMN call_event_id uuid,
    ADD COLUMN caller_txid bigint,
    ADD COLUMN impersonated_by text,
    ADD COLUMN break_glass boolean;
ALTER TABLE tool_audit.admin_events
    ADD COLUMN impersonated_by text;
COMMENT ON COLUMN tool_audit.tool_calls.call_phase IS 'NULL: a call recorded in one row; started or ended: one half of a call recorded by begin_call() and end_call()';
COMMENT ON COLUMN tool_audit.tool_calls.call_event_id IS 'On an ended row: the event_id of the started row it closes';
COMMENT ON COLUMN tool_audit.tool_calls.caller_txid IS 'On a row written autonomously: the caller''s transaction id, so that whether the caller committed can be known';
COMMENT ON COLUMN tool_audit.tool_calls.impersonated_by IS 'The admin impersonating user_id when the call was made (NULL: no impersonation)';
COMMENT ON COLUMN tool_audit.tool_calls.break_glass IS 'true: an emergency (break-the-glass) access, with its reason in session_metadata';
COMMENT ON COLUMN tool_audit.admin_events.impersonated_by IS 'The admin impersonating the actor when the event was recorded (NULL: no impersonation)';

-- ---------------------------------------------------------------------------
-- Impersonation and reads of the audit trail (issue 13): as in
-- sql/install/52_impersonation.sql and 58_read_audit.sql
-- ---------------------------------------------------------------------------

-- ---------------------------------------------------------------------------
-- Impersonation (1.5): an application's admin user (adm_7) acting as one of
-- its users (usr_1).  The application records it, as it records tool calls:
-- the admin and the user are the application's ids, not database roles, so
-- the writer role (the application) and the admin role may start and end
-- one.  While one is open, the insert triggers stamp impersonated_by on the
-- rows of that user in that tenant (src/impersonation.c); it stops by
-- itself at its expiry.  doc/governance.md.
-- ---------------------------------------------------------------------------
CREATE SEQUENCE tool_audit.impersonations_impersonation_id_seq;
CREATE TABLE tool_audit.impersonations (
    impersonation_id bigint PRIMARY KEY
                     DEFAULT nextval('tool_audit.impersonations_impersonation_id_seq'),
    tenant_id      text,
    admin_id       text NOT NULL,
    target_user    text NOT NULL,
    reason         text NOT NULL,
    started_at     timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    started_by     text NOT NULL,
    start_event_id bigint NOT NULL,
    ended_at       timestamptz,
    ended_by       text,
    end_event_id   bigint,
    CONSTRAINT expires_after_start CHECK (expires_at > started_at)
);
ALTER SEQUENCE tool_audit.impersonations_impersonation_id_seq
    OWNED BY tool_audit.impersonations.impersonation_id;
COMMENT ON TABLE tool_audit.impersonations IS
    'Impersonations started with start_impersonation(); open (ended_at NULL) until end_impersonation() or, after expires_at, close_expired_impersonations()';

-- every backend drops its copy of the open impersonations at a change
CREATE TRIGGER impersonations_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tool_audit.impersonations
    FOR EACH STATEMENT EXECUTE FUNCTION tool_audit.rules_changed();
ALTER TABLE tool_audit.impersonations ENABLE ALWAYS TRIGGER impersonations_changed;

-- impersonation_event(): an impersonation.* admin event, the admin as its
-- actor; returns the stored row's id and time
CREATE FUNCTION tool_audit.impersonation_event(event_type text, admin text, tenant_id text,
                                               payload jsonb, reason text,
                                               OUT event_id bigint, OUT occurred_at timestamptz)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO tool_audit.admin_events (event_type, actor, actor_type, tenant_id, payload, reason)
    VALUES ('impersonation.' || impersonation_event.event_type, impersonation_event.admin, 'user',
            impersonation_event.tenant_id, impersonation_event.payload, impersonation_event.reason)
    RETURNING id, occurred_at
$$;
COMMENT ON FUNCTION tool_audit.impersonation_event(text, text, text, jsonb, text) IS
    'Records an "impersonation." admin event with the admin as actor; callable only by the owner (its own functions)';

-- close_expired_impersonations(): closes every open impersonation past its
-- expiry, each with an impersonation.expire event (the rows written after
-- the expiry were never stamped: this makes the end visible in the trail)
CREATE FUNCTION tool_audit.close_expired_impersonations() RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    i tool_audit.impersonations;
    e record;
    closed integer := 0;
BEGIN
    FOR i IN SELECT * FROM tool_audit.impersonations m
              WHERE m.ended_at IS NULL AND m.expires_at <= statement_timestamp()
              ORDER BY m.impersonation_id FOR UPDATE
    LOOP
        e := tool_audit.impersonation_event('expire', i.admin_id, i.tenant_id,
                 jsonb_build_object('impersonation_id', i.impersonation_id, 'target_user', i.target_user,
                                    'started_at', tool_audit.iso8601_utc(i.started_at),
                                    'expired_at', tool_audit.iso8601_utc(i.expires_at)),
                 NULL);
        UPDATE tool_audit.impersonations m
           SET ended_at = i.expires_at, ended_by = 'expired', end_event_id = e.event_id
         WHERE m.impersonation_id = i.impersonation_id;
        closed := closed + 1;
    END LOOP;
    RETURN closed;
END
$$;
COMMENT ON FUNCTION tool_audit.close_expired_impersonations() IS
    'Closes the impersonations past their expiry, each with an impersonation.expire admin event; returns how many';

-- impersonation_caller_check(tenant_id): a caller bound to tenants may act
-- in those only
CREATE FUNCTION tool_audit.impersonation_caller_check(tenant_id text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bound text[] := tool_audit.bound_tenants();
BEGIN
    IF bound IS NOT NULL AND (tenant_id IS NULL OR NOT tenant_id = ANY (bound)) THEN
        RAISE EXCEPTION 'the caller is bound to other tenants than the impersonation''s'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'A role bound with tool_audit.bind_tenant() impersonates in its own tenants only.';
    END IF;
END
$$;
COMMENT ON FUNCTION tool_audit.impersonation_caller_check(text) IS
    'Raises 42501 when the caller is bound to tenants and the given tenant is not one of them';

CREATE FUNCTION tool_audit.start_impersonation(admin text, target_user text, reason text,
                                               max_minutes integer, tenant_id text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    clean_admin text;
    clean_target text;
    clean_tenant text;
    id bigint;
    e record;
BEGIN
    -- errors name the argument, never its value
    IF admin IS NULL OR admin = '' THEN
        RAISE EXCEPTION 'admin must not be null or empty' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF target_user IS NULL OR target_user = '' THEN
        RAISE EXCEPTION 'target_user must not be null or empty' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF reason IS NULL OR btrim(reason) = '' THEN
        RAISE EXCEPTION 'reason must not be null or empty'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Say why, for example the support ticket.';
    END IF;
    IF max_minutes IS NULL OR max_minutes < 1 OR max_minutes > 1440 THEN
        RAISE EXCEPTION 'invalid value for argument "max_minutes": expected 1 to 1440 minutes'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM tool_audit.impersonation_caller_check(tenant_id);
    -- the ids as the audit rows will hold them (the sanitizer's value rules:
    -- the trigger compares the sanitized row)
    clean_admin := tool_audit.sanitize_text(admin);
    clean_target := tool_audit.sanitize_text(target_user);
    clean_tenant := tool_audit.sanitize_text(tenant_id);
    IF clean_admin = clean_target THEN
        RAISE EXCEPTION 'invalid value for argument "target_user": an admin cannot impersonate itself'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    LOCK TABLE tool_audit.impersonations IN SHARE ROW EXCLUSIVE MODE;
    PERFORM tool_audit.close_expired_impersonations();
    IF EXISTS (SELECT FROM tool_audit.impersonations m
                WHERE m.ended_at IS NULL AND m.target_user = clean_target
                  AND m.tenant_id IS NOT DISTINCT FROM clean_tenant) THEN
        RAISE EXCEPTION 'the user is already being impersonated'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'End that impersonation with tool_audit.end_impersonation() first.';
    END IF;
    id := nextval('tool_audit.impersonations_impersonation_id_seq');
    e := tool_audit.impersonation_event('start', clean_admin, clean_tenant,
             jsonb_build_object('impersonation_id', id, 'target_user', clean_target,
                                'max_minutes', max_minutes),
             reason);
    INSERT INTO tool_audit.impersonations
        (impersonation_id, tenant_id, admin_id, target_user, reason, started_at, expires_at,
         started_by, start_event_id)
    VALUES (id, clean_tenant, clean_admin, clean_target,
            tool_audit.sanitize_text(reason), e.occurred_at,
            e.occurred_at + make_interval(mins => max_minutes), tool_audit.acting_role(), e.event_id);
    RETURN id;
END
$$;
COMMENT ON FUNCTION tool_audit.start_impersonation(text, text, text, integer, text) IS
    'Starts an impersonation of an application user by an application admin in a tenant, for at most max_minutes, as an impersonation.start admin event; returns its id';

CREATE FUNCTION tool_audit.end_impersonation(admin text, target_user text, tenant_id text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    i tool_audit.impersonations;
    e record;
BEGIN
    IF admin IS NULL OR target_user IS NULL THEN
        RAISE EXCEPTION 'admin and target_user must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM tool_audit.impersonation_caller_check(tenant_id);
    LOCK TABLE tool_audit.impersonations IN SHARE ROW EXCLUSIVE MODE;
    PERFORM tool_audit.close_expired_impersonations();
    SELECT * INTO i FROM tool_audit.impersonations m
     WHERE m.ended_at IS NULL AND m.admin_id = tool_audit.sanitize_text(end_impersonation.admin)
       AND m.target_user = tool_audit.sanitize_text(end_impersonation.target_user)
       AND m.tenant_id IS NOT DISTINCT FROM tool_audit.sanitize_text(end_impersonation.tenant_id);
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    e := tool_audit.impersonation_event('end', i.admin_id, i.tenant_id,
             jsonb_build_object('impersonation_id', i.impersonation_id, 'target_user', i.target_user,
                                'started_at', tool_audit.iso8601_utc(i.started_at)),
             NULL);
    UPDATE tool_audit.impersonations m
       SET ended_at = e.occurred_at, ended_by = i.admin_id, end_event_id = e.event_id
     WHERE m.impersonation_id = i.impersonation_id;
    RETURN i.impersonation_id;
END
$$;
COMMENT ON FUNCTION tool_audit.end_impersonation(text, text, text) IS
    'Ends the admin''s open impersonation of the user in the tenant, as an impersonation.end admin event; returns its id, or NULL if none was open';

-- ---------------------------------------------------------------------------
-- Reads of the audit trail (1.5): every report and export records who ran
-- it, with what arguments and how many rows it returned, as an audit.read
-- admin event in the same chains (written as the owner: the type is kept
-- for record_read(), like the reserved "tool_audit." types).  A read-only
-- transaction cannot write it: the report is refused (25006); a hot standby
-- too, unless its operator set tool_audit.unrecorded_standby_reads.
-- doc/governance.md.
-- ---------------------------------------------------------------------------
CREATE FUNCTION tool_audit.record_read(function_name text, arguments jsonb, row_count bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bound text[];
    tenant text;
BEGIN
    IF current_setting('transaction_read_only') = 'on' THEN
        IF pg_is_in_recovery() AND coalesce(current_setting('tool_audit.unrecorded_standby_reads', true), 'off') = 'on' THEN
            RETURN;
        END IF;
        RAISE EXCEPTION 'tool_audit records every read of the audit trail, and a read-only transaction cannot record %()', function_name
            USING ERRCODE = 'read_only_sql_transaction',
                  HINT = CASE WHEN pg_is_in_recovery()
                              THEN 'Run it on the primary, or let this standby run reports unrecorded with tool_audit.unrecorded_standby_reads = on in its configuration.'
                              ELSE 'Run it in a read-write transaction.' END;
    END IF;
    bound := tool_audit.bound_tenants();
    tenant := nullif(current_setting('tool_audit.tenant', true), '');
    IF tenant IS NULL AND cardinality(bound) = 1 THEN
        tenant := bound[1];
    END IF;
    INSERT INTO tool_audit.admin_events (event_type, actor, actor_type, tenant_id, payload)
    VALUES ('audit.read', tool_audit.acting_role(), 'user', tenant,
            jsonb_build_object('function', function_name, 'arguments', coalesce(arguments, '{}'),
                               'rows', row_count)
            || CASE WHEN bound IS NOT NULL THEN jsonb_build_object('bound_tenants', to_jsonb(bound))
                    ELSE '{}' END);
END
$$;
COMMENT ON FUNCTION tool_audit.record_read(text, jsonb, bigint) IS
    'Records a read of the audit trail (function, arguments, rows returned) as an audit.read admin event of the caller; the reports and exports call it';

-- read_report(): who ran which report, with what arguments and how many
-- rows; of one subject (the reports given that subject_id, compared as the
-- sanitizer stores it) or all, since a time.  Read through row-level
-- security as the caller; itself recorded.
CREATE FUNCTION tool_audit.read_report(subject_id text DEFAULT NULL, since timestamptz DEFAULT NULL)
RETURNS TABLE (occurred_at timestamptz, read_by text, function_name text, arguments jsonb,
               row_count bigint, tenant_id text, event_id bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    by_subject boolean := read_report.subject_id IS NOT NULL;
    stored_subject text;
    n bigint;
BEGIN
    IF by_subject THEN
        stored_subject := tool_audit.sanitize(jsonb_build_object('arguments',
                              jsonb_build_object('subject_id', read_report.subject_id)))->'arguments'->>'subject_id';
    END IF;
    RETURN QUERY
    SELECT e.occurred_at, e.actor, e.payload->>'function', e.payload->'arguments',
           (e.payload->>'rows')::bigint, e.tenant_id, e.id
      FROM tool_audit.admin_events e
     WHERE e.event_type = 'audit.read'
       AND e.occurred_at >= CASE WHEN since IS NULL THEN '-infinity'::timestamptz ELSE since END
       AND (NOT by_subject OR e.payload->'arguments'->>'subject_id' = stored_subject)
     ORDER BY e.occurred_at, e.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM tool_audit.record_read('read_report',
                                   jsonb_build_object('subject_id', read_report.subject_id,
                                                      'since', tool_audit.iso8601_utc(since)), n);
END
$$;
COMMENT ON FUNCTION tool_audit.read_report(text, timestamptz) IS
    'Who read the audit trail: every audit.read event since a time, or those of reports of one subject';

-- log_event() refuses audit.read, which only the reports record
CREATE OR REPLACE FUNCTION tool_audit.log_event(
    event_type text,
    actor      text,
    payload    jsonb,
    context    jsonb DEFAULT '{}')
RETURNS tool_audit.admin_events
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ctx jsonb := coalesce(context, '{}');
    stored tool_audit.admin_events;
BEGIN
    IF jsonb_typeof(ctx) <> 'object' THEN
        RAISE EXCEPTION 'context must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The value given is a JSON %s.', jsonb_typeof(ctx));
    END IF;
    IF event_type IS NULL OR actor IS NULL THEN
        RAISE EXCEPTION 'event_type and actor must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF jsonb_path_exists(ctx, '$.keyvalue() ? ((@.value.type() == "object" || @.value.type() == "array") && (@.key == "tenant_id" || @.key == "reason" || @.key == "actor_type" || @.key == "source_ip" || @.key == "event_id"))') THEN
        RAISE EXCEPTION 'tenant_id, reason, actor_type, source_ip and event_id in context must be scalars'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Put structured context under another key: it goes to metadata, sanitized.';
    END IF;
    -- the errors below name the field, never its value: a secret passed in
    -- the wrong place must not reach the server log
    IF starts_with(event_type, 'tool_audit.') THEN
        RAISE EXCEPTION 'event types starting with "tool_audit." are reserved for tool_audit itself'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF event_type = 'audit.read' THEN
        RAISE EXCEPTION 'event type "audit.read" is recorded by tool_audit''s reports only'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF event_type !~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$' THEN
        RAISE EXCEPTION 'invalid value for argument "event_type": expected a dotted lowercase name'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The value is not shown: it may be a secret put in the wrong place.',
                  HINT = 'For example prompt.update, policy.update, impersonation.start, killswitch.enable.';
    END IF;
    IF coalesce(ctx->>'actor_type', 'user') NOT IN ('user', 'service') THEN
        RAISE EXCEPTION 'invalid value for context field "actor_type": expected user or service'
            USING ERRCODE = 'check_violation',
                  DETAIL = 'The value is not shown: it may be a secret put in the wrong place.';
    END IF;

    INSERT INTO tool_audit.admin_events
        (event_id, event_type, actor, actor_type, tenant_id, payload, reason, source_ip, metadata)
    VALUES
        (coalesce(tool_audit.typed_value(ctx->>'event_id', NULL::uuid, 'event_id'), gen_random_uuid()),
         log_event.event_type, log_event.actor, coalesce(ctx->>'actor_type', 'user'),
         ctx->>'tenant_id', log_event.payload, ctx->>'reason',
         tool_audit.typed_value(ctx->>'source_ip', NULL::inet, 'source_ip'),
         ctx - ARRAY['event_id', 'actor_type', 'tenant_id', 'reason', 'source_ip'])
    RETURNING * INTO stored;

    IF NOT FOUND THEN
        RAISE EXCEPTION 'audit row for event "%" was not stored', event_type
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Something on tool_audit.admin_events discarded the insert.';
    END IF;
    RETURN stored;
END
$$;
COMMENT ON FUNCTION tool_audit.log_event(text, text, jsonb, jsonb) IS
    'Records one administrative event (sanitized, hashed and chained) and returns the stored admin_events row';

-- the reports and exports record their reads (VOLATILE now: they write);
-- attribution() and access_report() show an impersonation
CREATE OR REPLACE FUNCTION tool_audit.calls_by_conversation(conversation_id text)
RETURNS SETOF tool_audit.tool_calls
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    RETURN QUERY
    SELECT t.* FROM tool_audit.tool_calls t
     WHERE t.conversation_id OPERATOR(pg_catalog.=) tool_audit.required_arg($1, 'conversation_id'::pg_catalog.text)
     ORDER BY t.turn_number, t.recorded_at, t.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM tool_audit.record_read('calls_by_conversation', jsonb_build_object('conversation_id', $1), n);
END
$$;
COMMENT ON FUNCTION tool_audit.calls_by_conversation(text) IS
    'The tool calls of a conversation, by turn and then time';

CREATE OR REPLACE FUNCTION tool_audit.calls_by_user(user_id text, since timestamptz DEFAULT NULL)
RETURNS SETOF tool_audit.tool_calls
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    RETURN QUERY
    SELECT t.* FROM tool_audit.tool_calls t
     WHERE t.user_id OPERATOR(pg_catalog.=) tool_audit.required_arg($1, 'user_id'::pg_catalog.text)
       AND t.recorded_at OPERATOR(pg_catalog.>=)
           CASE WHEN $2 IS NULL THEN '-infinity'::pg_catalog.timestamptz ELSE $2 END
     ORDER BY t.recorded_at, t.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM tool_audit.record_read('calls_by_user', jsonb_build_object('user_id', $1, 'since', tool_audit.iso8601_utc($2)), n);
END
$$;
COMMENT ON FUNCTION tool_audit.calls_by_user(text, timestamptz) IS
    'The tool calls of a user since a time (all of them if NULL), by time';

CREATE OR REPLACE FUNCTION tool_audit.failures(since timestamptz DEFAULT NULL)
RETURNS SETOF tool_audit.tool_calls
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    RETURN QUERY
    SELECT t.* FROM tool_audit.tool_calls t
     WHERE NOT t.success
       AND t.recorded_at OPERATOR(pg_catalog.>=)
           CASE WHEN $1 IS NULL THEN '-infinity'::pg_catalog.timestamptz ELSE $1 END
     ORDER BY t.recorded_at, t.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM tool_audit.record_read('failures', jsonb_build_object('since', tool_audit.iso8601_utc($1)), n);
END
$$;
COMMENT ON FUNCTION tool_audit.failures(timestamptz) IS
    'The failed tool calls since a time (all of them if NULL), by time';

CREATE OR REPLACE FUNCTION tool_audit.tool_stats(tool_name text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    stats jsonb;
BEGIN
    SELECT CASE WHEN count(*) = 0
        THEN jsonb_build_object('tool', $1, 'total_calls', 0)
        ELSE jsonb_build_object(
            'tool', $1,
            'total_calls', count(*),
            'success_rate', round(count(*) FILTER (WHERE t.success)::numeric / count(*), 3),
            'avg_duration_ms', round(avg(t.duration_ms)::numeric, 1),
            'max_duration_ms', round(max(t.duration_ms)::numeric, 1),
            'unique_users', count(DISTINCT t.user_id))
        END
      FROM tool_audit.tool_calls t
     WHERE t.tool_name = tool_audit.required_arg($1, 'tool_name'::pg_catalog.text)
      INTO stats;
    PERFORM tool_audit.record_read('tool_stats', jsonb_build_object('tool_name', $1), 1);
    RETURN stats;
END
$$;
COMMENT ON FUNCTION tool_audit.tool_stats(text) IS
    'One tool''s call count, success rate, average and maximum duration and distinct users, as JSON';

CREATE OR REPLACE FUNCTION tool_audit.conversation_timeline(conversation_id text) RETURNS SETOF text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 1
AS $$
DECLARE
    n bigint;
BEGIN
    RETURN QUERY
    SELECT format('[Turn %s] %s %s(%s) %s %s [%sms]',
                  coalesce(t.turn_number::text, '?'),
                  tool_audit.report_mark(CASE WHEN t.success THEN 'ok' ELSE 'failed' END),
                  t.tool_name, t.arguments::text, tool_audit.report_mark('arrow'),
                  t.result_summary::text,
                  coalesce(t.duration_ms::text, '?'))
      FROM tool_audit.tool_calls t
     WHERE t.conversation_id = tool_audit.required_arg($1, 'conversation_id'::pg_catalog.text)
     ORDER BY t.turn_number, t.recorded_at, t.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM tool_audit.record_read('conversation_timeline', jsonb_build_object('conversation_id', $1), n);
END
$$;
COMMENT ON FUNCTION tool_audit.conversation_timeline(text) IS
    'A conversation as one line of text per tool call: turn, outcome, tool, arguments, result summary and duration';

CREATE OR REPLACE FUNCTION tool_audit.attribution(call_id bigint) RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    line text;
BEGIN
    SELECT format('User %s (%s)%s %s %s %s %s [%s]',
                  coalesce(nullif(t.user_id, ''), 'unknown'), coalesce(nullif(t.user_role, ''), 'unknown'),
                  CASE WHEN t.impersonated_by IS NOT NULL THEN ' impersonated by ' || t.impersonated_by ELSE '' END,
                  tool_audit.report_mark('arrow'), coalesce(nullif(t.model, ''), 'unknown'),
                  tool_audit.report_mark('arrow'), t.tool_name, t.call_trigger)
      INTO line
      FROM tool_audit.tool_calls t
     WHERE t.id = tool_audit.required_arg($1, 'call_id'::pg_catalog.text);
    PERFORM tool_audit.record_read('attribution', jsonb_build_object('call_id', $1),
                                   CASE WHEN line IS NULL THEN 0 ELSE 1 END);
    RETURN line;
END
$$;
COMMENT ON FUNCTION tool_audit.attribution(bigint) IS
    'Who made a tool call, as one line of text: user, role, model, tool and what prompted it';

CREATE OR REPLACE FUNCTION tool_audit.access_report(subject_id text, start_time timestamptz, end_time timestamptz)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    report jsonb;
    protections jsonb;
BEGIN
    PERFORM tool_audit.required_arg(access_report.subject_id, 'subject_id');
    PERFORM tool_audit.check_period(start_time, end_time);

    SELECT coalesce(jsonb_agg(jsonb_build_object('table', p.table_name, 'problem', p.problem)
                              ORDER BY p.table_name, p.problem), '[]')
      INTO protections
      FROM tool_audit.verify_protections() p;

    WITH covered AS MATERIALIZED (
        SELECT t, tool_audit.check_row(t) AS problem
          FROM tool_audit.tool_calls t
         WHERE t.subject_id = access_report.subject_id
           AND t.recorded_at >= start_time AND t.recorded_at <= end_time
    )
    SELECT jsonb_build_object(
        'subject_id', access_report.subject_id,
        'report_period', jsonb_build_object('start', tool_audit.iso8601_utc(start_time),
                                            'end', tool_audit.iso8601_utc(end_time)),
        'total_accesses', count(*),
        'unique_users', count(DISTINCT (c.t).user_id),
        'accesses', coalesce(jsonb_agg(jsonb_build_object(
                'timestamp', tool_audit.iso8601_utc((c.t).recorded_at),
                'accessed_by', (c.t).user_id,
                'role', (c.t).user_role,
                'tool', (c.t).tool_name,
                'purpose', (c.t).purpose,
                'success', (c.t).success,
                'break_glass', tool_audit.is_break_glass(c.t),
                'call_id', (c.t).id,
                'model', (c.t).model,
                'conversation_id', (c.t).conversation_id,
                'tenant_id', (c.t).tenant_id)
                || CASE WHEN (c.t).impersonated_by IS NOT NULL
                        THEN jsonb_build_object('impersonated_by', (c.t).impersonated_by) ELSE '{}' END
            ORDER BY (c.t).recorded_at, (c.t).id), '[]'),
        'break_glass_accesses', count(*) FILTER (WHERE tool_audit.is_break_glass(c.t)),
        'integrity_verified', count(c.problem) = 0 AND protections = '[]',
        'integrity', jsonb_build_object(
            'rows_checked', count(*),
            'row_problems', coalesce(jsonb_agg(jsonb_build_object('call_id', (c.t).id, 'problem', c.problem)
                                               ORDER BY (c.t).id) FILTER (WHERE c.problem IS NOT NULL), '[]'),
            'protection_problems', protections,
            'method', 'each row''s hash recomputed, its links to the rows before and after it in its chain checked, and the audit tables'' protections checked',
            'scope', 'the rows of this report: a row deleted elsewhere in a chain is found by tool_audit.verify(), rows cut off the newest end by tool_audit.verify_digest()'))
      INTO report
      FROM covered c;
    PERFORM tool_audit.record_read('access_report',
                                   jsonb_build_object('subject_id', access_report.subject_id,
                                                      'start_time', tool_audit.iso8601_utc(start_time),
                                                      'end_time', tool_audit.iso8601_utc(end_time)),
                                   (report->>'total_accesses')::bigint);
    RETURN report;
END
$$;
COMMENT ON FUNCTION tool_audit.access_report(text, timestamptz, timestamptz) IS
    'Every access to a subject''s data in a period, with the break-glass accesses and a verification of the rows, as JSON';

CREATE OR REPLACE FUNCTION tool_audit.export_jsonl(start_time timestamptz, end_time timestamptz)
RETURNS SETOF jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 1
AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM tool_audit.check_period(start_time, end_time);
    RETURN QUERY
    SELECT x.doc FROM (
        SELECT t.recorded_at AS at, 1 AS tab, t.id, jsonb_build_object(
            'table', 'tool_calls',
            'id', t.id, 'event_id', t.event_id, 'recorded_at', tool_audit.iso8601_utc(t.recorded_at),
            'tenant_id', t.tenant_id, 'conversation_id', t.conversation_id,
            'turn_number', t.turn_number, 'user_id', t.user_id, 'user_role', t.user_role,
            'model', t.model, 'tool_name', t.tool_name, 'tool_call_id', t.tool_call_id,
            'call_trigger', t.call_trigger, 'purpose', t.purpose, 'subject_id', t.subject_id,
            'arguments', t.arguments, 'result_summary', t.result_summary, 'success', t.success,
            'error', t.error, 'duration_ms', t.duration_ms, 'client_ip', abbrev(t.client_ip),
            'user_agent', t.user_agent, 'session_metadata', t.session_metadata,
            'recorded_by', t.recorded_by,
            'row_hash', encode(t.row_hash, 'hex'), 'chain_id', t.chain_id::text,
            'chain_lane', t.chain_lane, 'chain_seq', t.chain_seq,
            'chain_hash', encode(t.chain_hash, 'hex')) AS doc
          FROM tool_audit.tool_calls t
         WHERE t.recorded_at >= start_time AND t.recorded_at < end_time
        UNION ALL
        SELECT e.occurred_at, 0, e.id, jsonb_build_object(
            'table', 'admin_events',
            'id', e.id, 'event_id', e.event_id, 'occurred_at', tool_audit.iso8601_utc(e.occurred_at),
            'event_type', e.event_type, 'actor', e.actor, 'actor_type', e.actor_type,
            'tenant_id', e.tenant_id, 'payload', e.payload, 'reason', e.reason,
            'source_ip', abbrev(e.source_ip), 'metadata', e.metadata, 'recorded_by', e.recorded_by,
            'row_hash', encode(e.row_hash, 'hex'), 'chain_id', e.chain_id::text,
            'chain_lane', e.chain_lane, 'chain_seq', e.chain_seq,
            'chain_hash', encode(e.chain_hash, 'hex'))
          FROM tool_audit.admin_events e
         WHERE e.occurred_at >= start_time AND e.occurred_at < end_time
    ) x
    ORDER BY x.at, x.tab, x.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM tool_audit.record_read('export_jsonl',
                                   jsonb_build_object('start_time', tool_audit.iso8601_utc(start_time),
                                                      'end_time', tool_audit.iso8601_utc(end_time)), n);
END
$$;
COMMENT ON FUNCTION tool_audit.export_jsonl(timestamptz, timestamptz) IS
    'Both audit tables'' rows in a period as JSON documents with their hashes and chain positions, to check outside the database';

CREATE OR REPLACE FUNCTION tool_audit.export_fhir(start_time timestamptz, end_time timestamptz,
                                       subject_id text DEFAULT NULL)
RETURNS SETOF jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM tool_audit.check_period(start_time, end_time);
    IF export_fhir.subject_id IS NULL THEN
        RETURN QUERY
        SELECT tool_audit.fhir_audit_event(t) FROM tool_audit.tool_calls t
         WHERE t.recorded_at >= start_time AND t.recorded_at < end_time
         ORDER BY t.recorded_at, t.id;
    ELSE
        RETURN QUERY
        SELECT tool_audit.fhir_audit_event(t) FROM tool_audit.tool_calls t
         WHERE t.subject_id = export_fhir.subject_id
           AND t.recorded_at >= start_time AND t.recorded_at < end_time
         ORDER BY t.recorded_at, t.id;
    END IF;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM tool_audit.record_read('export_fhir',
                                   jsonb_build_object('start_time', tool_audit.iso8601_utc(start_time),
                                                      'end_time', tool_audit.iso8601_utc(end_time),
                                                      'subject_id', export_fhir.subject_id), n);
END
$$;
COMMENT ON FUNCTION tool_audit.export_fhir(timestamptz, timestamptz, text) IS
    'The tool calls in a period, of one subject if given, as FHIR R4 AuditEvent resources';

REVOKE ALL ON FUNCTION
    tool_audit.impersonation_event(text, text, text, jsonb, text),
    tool_audit.close_expired_impersonations(),
    tool_audit.impersonation_caller_check(text),
    tool_audit.start_impersonation(text, text, text, integer, text),
    tool_audit.end_impersonation(text, text, text),
    tool_audit.record_read(text, jsonb, bigint),
    tool_audit.read_report(text, timestamptz)
    FROM PUBLIC;

-- (1.5) impersonation: the application (writer) records its admins'
-- impersonations, as it records their calls; admins may too, and read the
-- table; the extension's helpers are the owner's
GRANT SELECT ON tool_audit.impersonations TO tool_audit_admin;
GRANT EXECUTE ON FUNCTION
    tool_audit.start_impersonation(text, text, text, integer, text),
    tool_audit.end_impersonation(text, text, text),
    tool_audit.close_expired_impersonations()
    TO tool_audit_writer, tool_audit_admin;

-- (1.5) reads of the audit trail: whoever may run a report records its read
-- (record_read() writes as the owner, and only the caller's own reads);
-- readers and admins list the reads their row-level security lets them see
GRANT EXECUTE ON FUNCTION tool_audit.record_read(text, jsonb, bigint)
    TO tool_audit_reader, tool_audit_admin, tool_audit_verifier;
GRANT EXECUTE ON FUNCTION tool_audit.read_report(text, timestamptz)
    TO tool_audit_reader, tool_audit_admin;

-- pg_dump keeps the impersonations (after the 1.4 tables, as in 95_dump_and_guards.sql)
SELECT pg_catalog.pg_extension_config_dump('tool_audit.impersonations', '');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.impersonations_impersonation_id_seq', '');
