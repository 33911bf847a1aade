
-- ---------------------------------------------------------------------------
-- Alerts (1.5): rules an admin edits through functions (each edit a
-- tool_audit.alert.rule admin event), matched by the insert triggers in C
-- from a per-backend copy (src/alerts.c), and the alerts they raise, in the
-- transaction of the row that fires them, with a NOTIFY tool_audit_alerts
-- delivered at commit.  doc/alerts.md.
-- ---------------------------------------------------------------------------

-- Rule kinds: on admin_events, event_type (event types or patterns, '*' any
-- characters); on tool_calls, tool_name, failure, break_glass (a row with
-- break_glass = true), and the rate rules same_subject (one user, one
-- subject, threshold or more rows within window_seconds), tool_failures
-- (more than threshold failures of a tool within window_seconds),
-- distinct_subjects (one user, more than threshold distinct subjects within
-- window_seconds) and business_hours (a call of the rule's tenant outside
-- params' hours); check: raised by the extension's own checks (verify(),
-- verify_digest(), run_alert_checks()), never by a row.  matches narrows
-- event_type, tool_name, failure, break_glass and the rate rules to event
-- types or tool names (empty: any); tenant_id to one tenant (NULL: any).
-- window_seconds is also how long a burst lasts: a row that fires a rule
-- within window_seconds of the last row of its open (unacknowledged) alert
-- updates that alert instead of raising another.
CREATE TABLE tool_audit.alert_rules (
    rule_name      text PRIMARY KEY
                   CONSTRAINT rule_name_is_identifier CHECK (rule_name ~ '^[a-z][a-z0-9_]{0,62}$'),
    kind           text NOT NULL
                   CONSTRAINT kind_is_known CHECK (kind IN ('event_type', 'tool_name', 'failure',
                       'break_glass', 'same_subject', 'tool_failures', 'distinct_subjects',
                       'business_hours', 'check')),
    severity       text NOT NULL
                   CONSTRAINT severity_is_known CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    enabled        boolean NOT NULL DEFAULT true,
    matches        text[] NOT NULL DEFAULT '{}',
    tenant_id      text,
    threshold      integer CONSTRAINT threshold_in_range CHECK (threshold BETWEEN 1 AND 10000),
    window_seconds integer NOT NULL DEFAULT 3600
                   CONSTRAINT window_seconds_positive CHECK (window_seconds > 0),
    params         jsonb NOT NULL DEFAULT '{}',
    description    text,
    changed_at     timestamptz NOT NULL DEFAULT now(),
    changed_by     text NOT NULL DEFAULT 'tool_audit'
);
COMMENT ON TABLE tool_audit.alert_rules IS
    'Alert rules, matched against every new audit row; changed by admins through set_alert_rule() and disable_alert_rule() only';

CREATE SEQUENCE tool_audit.alerts_alert_id_seq;
CREATE TABLE tool_audit.alerts (
    alert_id          bigint PRIMARY KEY DEFAULT nextval('tool_audit.alerts_alert_id_seq'),
    rule_name         text NOT NULL,
    kind              text NOT NULL,
    severity          text NOT NULL,
    tenant_id         text,
    burst_key         text NOT NULL DEFAULT '',
    first_at          timestamptz NOT NULL,
    last_at           timestamptz NOT NULL,
    count             bigint NOT NULL DEFAULT 1,
    tool_call_ids     bigint[] NOT NULL DEFAULT '{}',
    admin_event_ids   bigint[] NOT NULL DEFAULT '{}',
    detail            jsonb NOT NULL DEFAULT '{}',
    acknowledged_by   text,
    acknowledged_at   timestamptz,
    acknowledged_note text
);
ALTER SEQUENCE tool_audit.alerts_alert_id_seq OWNED BY tool_audit.alerts.alert_id;
COMMENT ON TABLE tool_audit.alerts IS
    'Alerts raised by alert_rules: one row per burst, updated while it lasts; changed by the extension''s functions only';
COMMENT ON COLUMN tool_audit.alerts.burst_key IS
    'What a burst is about (event type, tool, user, user and subject); rows of one rule, tenant and key within its window update one alert';
COMMENT ON COLUMN tool_audit.alerts.tool_call_ids IS 'The first 100 tool_calls rows that fired the alert (count has them all)';
COMMENT ON COLUMN tool_audit.alerts.admin_event_ids IS 'The first 100 admin_events rows that fired the alert (count has them all)';
CREATE INDEX alerts_open ON tool_audit.alerts (rule_name, burst_key, last_at)
    WHERE acknowledged_at IS NULL;

-- the rate rules' index probes (src/alerts.c): one user's rows about one
-- subject, and one tool's failures, within a window
CREATE INDEX tool_calls_user_subject
    ON tool_audit.tool_calls (user_id, subject_id, recorded_at)
    WHERE user_id IS NOT NULL AND subject_id IS NOT NULL;
CREATE INDEX tool_calls_tool_failures
    ON tool_audit.tool_calls (tool_name, recorded_at) WHERE NOT success;

-- every backend drops its copy of the rules at a change (a relcache
-- invalidation of the table, as for the sanitizing rules)
CREATE TRIGGER alert_rules_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tool_audit.alert_rules
    FOR EACH STATEMENT EXECUTE FUNCTION tool_audit.rules_changed();

-- An alert is never deleted, and of a raised alert only the burst
-- (last_at, count, rows: growing) and, once, its acknowledgement change.
CREATE FUNCTION tool_audit.alerts_guard() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- (1.5) erase_subject() and purge_expired() change and remove alerts
    IF TG_LEVEL = 'ROW' AND tool_audit.in_sanctioned_change() THEN
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        RETURN NEW;
    END IF;
    IF TG_OP <> 'UPDATE' THEN
        RAISE EXCEPTION '% is not allowed on tool_audit.alerts', TG_OP
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Alerts are acknowledged with tool_audit.acknowledge_alert(); only purge_expired() and erase_subject() remove or change them.';
    END IF;
    IF NEW.alert_id <> OLD.alert_id OR NEW.rule_name <> OLD.rule_name OR NEW.kind <> OLD.kind
       OR NEW.severity <> OLD.severity OR NEW.tenant_id IS DISTINCT FROM OLD.tenant_id
       OR NEW.burst_key <> OLD.burst_key OR NEW.first_at <> OLD.first_at
       OR NEW.last_at < OLD.last_at OR NEW.count < OLD.count
       OR NOT (OLD.tool_call_ids <@ NEW.tool_call_ids) OR NOT (OLD.admin_event_ids <@ NEW.admin_event_ids)
       OR (OLD.acknowledged_at IS NOT NULL AND
           (NEW.acknowledged_at IS DISTINCT FROM OLD.acknowledged_at
            OR NEW.acknowledged_by IS DISTINCT FROM OLD.acknowledged_by
            OR NEW.acknowledged_note IS DISTINCT FROM OLD.acknowledged_note)) THEN
        RAISE EXCEPTION 'an alert can only grow while its burst lasts, and be acknowledged once'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION tool_audit.alerts_guard() IS
    'Trigger: refuses DELETE and TRUNCATE on alerts, and any UPDATE but a burst growing or a first acknowledgement';
CREATE TRIGGER alerts_guard
    BEFORE UPDATE OR DELETE ON tool_audit.alerts
    FOR EACH ROW EXECUTE FUNCTION tool_audit.alerts_guard();
CREATE TRIGGER alerts_guard_truncate
    BEFORE TRUNCATE ON tool_audit.alerts
    FOR EACH STATEMENT EXECUTE FUNCTION tool_audit.alerts_guard();
ALTER TABLE tool_audit.alerts
    ENABLE ALWAYS TRIGGER alerts_guard,
    ENABLE ALWAYS TRIGGER alerts_guard_truncate;

-- A dump holds the seeded rules that were changed (changed_by <>
-- 'tool_audit'); restored into a database that has the seeds, the restored
-- row replaces the seed.
CREATE FUNCTION tool_audit.alert_rules_restore_seed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE tool_audit.alert_rules r
       SET kind = NEW.kind, severity = NEW.severity, enabled = NEW.enabled,
           matches = NEW.matches, tenant_id = NEW.tenant_id, threshold = NEW.threshold,
           window_seconds = NEW.window_seconds, params = NEW.params,
           description = NEW.description, changed_at = NEW.changed_at, changed_by = NEW.changed_by
     WHERE r.rule_name = NEW.rule_name;
    IF FOUND THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION tool_audit.alert_rules_restore_seed() IS
    'Trigger: a rule inserted under the name of an existing one (a restore of a changed seed) updates that rule instead';
CREATE TRIGGER alert_rules_restore_seed
    BEFORE INSERT ON tool_audit.alert_rules
    FOR EACH ROW EXECUTE FUNCTION tool_audit.alert_rules_restore_seed();
ALTER TABLE tool_audit.alert_rules
    ENABLE ALWAYS TRIGGER alert_rules_changed,
    ENABLE ALWAYS TRIGGER alert_rules_restore_seed;

-- On at install (an admin changes or disables them, audited)
INSERT INTO tool_audit.alert_rules
    (rule_name, kind, severity, enabled, matches, threshold, window_seconds, description)
VALUES
    ('high_risk_events', 'event_type', 'high', true,
     '{prompt.update,impersonation.*,killswitch.*,policy.update,billing.*}', NULL, 3600,
     'A high-risk administrative action'),
    ('audit_changes', 'event_type', 'high', true,
     '{tool_audit.alert.rule,tool_audit.alert.schedule,tool_audit.sanitize_rule.*,tool_audit.pseudonym_key.*,tool_audit.retention.policy,tool_audit.retention.override,tool_audit.retention.floor,tool_audit.retention.schedule,tool_audit.hold.*,tool_audit.tenant_binding.*}',
     NULL, 3600,
     'A change to the audit trail''s alert rules, sanitizing rules, keys, retention policies, legal holds or tenant bindings'),
    ('break_glass', 'break_glass', 'high', true, '{}', NULL, 3600,
     'A break-the-glass (emergency) access'),
    ('extension_roles', 'event_type', 'high', true, '{tool_audit.role.*}', NULL, 3600,
     'A grant, revoke or rename of one of the extension''s roles (tool_audit_writer, _reader, _admin, _verifier), directly or through another role'),
    ('same_subject_hourly', 'same_subject', 'medium', true, '{}', 10, 3600,
     'One user accessed the same subject 10 or more times within an hour'),
    ('tool_failures', 'tool_failures', 'medium', false, '{}', 5, 600,
     'More than 5 failures of one tool within 10 minutes'),
    ('distinct_subjects_hourly', 'distinct_subjects', 'medium', false, '{}', 50, 3600,
     'One user touched more than 50 distinct subjects within an hour'),
    ('audit_integrity', 'check', 'critical', true, '{}', NULL, 86400,
     'verify() or verify_digest() found problems'),
    ('audit_protections', 'check', 'critical', true, '{}', NULL, 86400,
     'A protection of the audit trail is disabled (verify_protections())'),
    ('signing_key_missing', 'check', 'high', true, '{}', NULL, 86400,
     'tool_audit.signing_key_file is set but the key cannot be loaded'),
    ('tenant_silent', 'check', 'medium', true, '{}', 5, 21600,
     'A tenant that logged on at least 5 of the previous 7 days has logged nothing for 6 hours');

-- notify_alert(): queues NOTIFY tool_audit_alerts with the payload, sent
-- just before the commit (src/alerts.c): a NOTIFY made in the transaction
-- would stop it from being prepared (two-phase commit).  Owner only.
CREATE FUNCTION tool_audit.notify_alert(payload text) RETURNS void
    AS 'MODULE_PATHNAME', 'notify_alert' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION tool_audit.notify_alert(text) IS
    'Queues a NOTIFY tool_audit_alerts with the payload, sent at commit (none for a prepared transaction); callable only by the owner (raise_alert())';

-- raise_alert(): the one way alerts are raised, by the insert triggers (C,
-- as the owner), the extension's checks and other extension functions.  A
-- disabled or missing rule raises nothing (NULL), except the alert of a rule
-- disabled or weakened (detail with "weakened_rule", raised by
-- set_alert_rule() and disable_alert_rule() under audit_changes): it is
-- raised even when audit_changes itself is disabled, and high at least.  Within the rule's window
-- of the last row of the open alert of the same rule, tenant and key, the
-- alert grows (count, last_at, rows) instead.  A transaction lock on the
-- burst keeps two transactions from growing one alert at once; it is only
-- tried, never waited for: a row whose burst another open transaction is
-- raising raises an alert of its own (writers never wait on each other).  NOTIFY
-- tool_audit_alerts carries the alert's id, rule, severity, count and
-- whether it is new, and no tenant or key: any role can LISTEN to any
-- channel, so a listener reads the alert itself, through row-level security.
-- Callable by the owner only.
CREATE FUNCTION tool_audit.raise_alert(rule_name text, tenant_id text DEFAULT NULL,
                                       burst_key text DEFAULT '', tool_call_id bigint DEFAULT NULL,
                                       admin_event_id bigint DEFAULT NULL, detail jsonb DEFAULT '{}',
                                       at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r tool_audit.alert_rules;
    t timestamptz := coalesce(at, clock_timestamp());
    k text := coalesce(burst_key, '');
    a tool_audit.alerts;
    is_new boolean := false;
BEGIN
    SELECT * INTO r FROM tool_audit.alert_rules ar WHERE ar.rule_name = raise_alert.rule_name;
    IF NOT FOUND OR (NOT r.enabled AND NOT coalesce(raise_alert.detail ? 'weakened_rule', false)) THEN
        RETURN NULL;
    END IF;
    IF raise_alert.detail ? 'weakened_rule' AND r.severity IN ('low', 'medium') THEN
        r.severity := 'high';
    END IF;
    -- never wait: a transaction still raising the same burst keeps it, and
    -- this row raises an alert of its own
    IF pg_try_advisory_xact_lock(hashtextextended(concat_ws(E'\x1f', 'tool_audit alert', r.rule_name,
                                                            raise_alert.tenant_id, k), 0)) THEN
    UPDATE tool_audit.alerts x
       SET last_at = greatest(x.last_at, t), count = x.count + 1,
           tool_call_ids = CASE WHEN raise_alert.tool_call_id IS NOT NULL AND cardinality(x.tool_call_ids) < 100
                                THEN x.tool_call_ids || raise_alert.tool_call_id ELSE x.tool_call_ids END,
           admin_event_ids = CASE WHEN raise_alert.admin_event_id IS NOT NULL AND cardinality(x.admin_event_ids) < 100
                                  THEN x.admin_event_ids || raise_alert.admin_event_id ELSE x.admin_event_ids END,
           detail = x.detail || coalesce(raise_alert.detail, '{}')
     WHERE x.alert_id = (SELECT o.alert_id FROM tool_audit.alerts o
                          WHERE o.rule_name = r.rule_name AND o.burst_key = k
                            AND o.tenant_id IS NOT DISTINCT FROM raise_alert.tenant_id
                            AND o.acknowledged_at IS NULL
                            AND o.last_at >= t - make_interval(secs => r.window_seconds)
                          ORDER BY o.alert_id DESC LIMIT 1)
    RETURNING * INTO a;
    is_new := NOT FOUND;
    ELSE
        is_new := true;
    END IF;
    IF is_new THEN
        INSERT INTO tool_audit.alerts (rule_name, kind, severity, tenant_id, burst_key, first_at, last_at,
                                       tool_call_ids, admin_event_ids, detail)
        VALUES (r.rule_name, r.kind, r.severity, raise_alert.tenant_id, k, t, t,
                CASE WHEN raise_alert.tool_call_id IS NULL THEN '{}'::bigint[]
                     ELSE ARRAY[raise_alert.tool_call_id] END,
                CASE WHEN raise_alert.admin_event_id IS NULL THEN '{}'::bigint[]
                     ELSE ARRAY[raise_alert.admin_event_id] END,
                coalesce(raise_alert.detail, '{}'))
        RETURNING * INTO a;
    END IF;
    PERFORM tool_audit.notify_alert(json_build_object(
        'alert_id', a.alert_id, 'rule_name', a.rule_name, 'severity', a.severity,
        'count', a.count, 'new', is_new)::text);
    RETURN a.alert_id;
END
$$;
COMMENT ON FUNCTION tool_audit.raise_alert(text, text, text, bigint, bigint, jsonb, timestamptz) IS
    'Raises an alert of a rule, or grows the open alert of its burst, and notifies tool_audit_alerts; callable only by the owner (the extension''s own code)';

-- alert_event(): the admin event of an alert rule change or acknowledgement
CREATE FUNCTION tool_audit.alert_event(event_type text, before jsonb, after jsonb,
                                       reason text, tenant_id text DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH e AS (
        INSERT INTO tool_audit.admin_events (event_type, actor, actor_type, tenant_id, payload, reason)
        VALUES ('tool_audit.alert.' || alert_event.event_type, tool_audit.acting_role(), 'user',
                alert_event.tenant_id,
                jsonb_build_object('before', alert_event.before, 'after', alert_event.after),
                alert_event.reason)
        RETURNING id)
    SELECT jsonb_build_object('before', alert_event.before, 'after', alert_event.after,
                              'admin_event_id', e.id)
      FROM e
$$;
COMMENT ON FUNCTION tool_audit.alert_event(text, jsonb, jsonb, text, text) IS
    'Records an alert rule change or acknowledgement as a "tool_audit.alert." admin event with before/after; callable only by the owner (its own functions)';

-- set_alert_rule(): creates a rule or changes one; an argument left NULL
-- keeps an existing rule's value.  The kind of a rule never changes.
CREATE FUNCTION tool_audit.set_alert_rule(rule_name text, kind text DEFAULT NULL,
                                          severity text DEFAULT NULL, matches text[] DEFAULT NULL,
                                          threshold integer DEFAULT NULL,
                                          window_seconds integer DEFAULT NULL,
                                          tenant_id text DEFAULT NULL, params jsonb DEFAULT NULL,
                                          enabled boolean DEFAULT NULL, reason text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    before_row tool_audit.alert_rules;
    after_row tool_audit.alert_rules;
    had_one boolean;
    k text;
    p jsonb;
    result jsonb;
BEGIN
    -- errors name the argument, never its value
    IF rule_name IS NULL OR rule_name !~ '^[a-z][a-z0-9_]{0,62}$' THEN
        RAISE EXCEPTION 'invalid value for argument "rule_name": expected a lowercase identifier of 1 to 63 characters'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The value is not shown: it may be a secret put in the wrong place.';
    END IF;
    LOCK TABLE tool_audit.alert_rules IN SHARE ROW EXCLUSIVE MODE;
    SELECT * INTO before_row FROM tool_audit.alert_rules r WHERE r.rule_name = set_alert_rule.rule_name;
    had_one := FOUND;
    IF had_one AND kind IS NOT NULL AND kind <> before_row.kind THEN
        RAISE EXCEPTION 'invalid value for argument "kind": the rule is of kind %', before_row.kind
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Disable this rule and create another one of the other kind.';
    END IF;
    k := coalesce(kind, before_row.kind);
    IF k IS NULL OR k NOT IN ('event_type', 'tool_name', 'failure', 'break_glass', 'same_subject',
                              'tool_failures', 'distinct_subjects', 'business_hours', 'check') THEN
        RAISE EXCEPTION 'invalid value for argument "kind": expected event_type, tool_name, failure, break_glass, same_subject, tool_failures, distinct_subjects, business_hours or check'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF coalesce(severity, before_row.severity) IS NULL
       OR coalesce(severity, before_row.severity) NOT IN ('low', 'medium', 'high', 'critical') THEN
        RAISE EXCEPTION 'invalid value for argument "severity": expected low, medium, high or critical'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF matches IS NOT NULL AND (array_ndims(matches) > 1 OR
        EXISTS (SELECT FROM unnest(matches) m WHERE m IS NULL OR m = '')) THEN
        RAISE EXCEPTION 'invalid value for argument "matches": expected a list of event types, tool names or patterns (''*'': any characters), none empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF k = 'event_type' AND coalesce(cardinality(coalesce(matches, before_row.matches)), 0) = 0 THEN
        RAISE EXCEPTION 'invalid value for argument "matches": an event_type rule needs event types or patterns'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF threshold IS NOT NULL AND (threshold <= 0 OR threshold > 10000) THEN
        RAISE EXCEPTION 'invalid value for argument "threshold": expected a number from 1 to 10000'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF k IN ('same_subject', 'tool_failures', 'distinct_subjects')
       AND coalesce(threshold, before_row.threshold) IS NULL THEN
        RAISE EXCEPTION 'invalid value for argument "threshold": a % rule needs one', k
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF window_seconds IS NOT NULL AND window_seconds <= 0 THEN
        RAISE EXCEPTION 'invalid value for argument "window_seconds": expected a positive number of seconds'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF tenant_id = '' THEN
        RAISE EXCEPTION 'invalid value for argument "tenant_id": expected a tenant id or NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    p := coalesce(params, before_row.params, '{}');
    IF k = 'business_hours' THEN
        IF coalesce(tenant_id, before_row.tenant_id) IS NULL THEN
            RAISE EXCEPTION 'invalid value for argument "tenant_id": a business_hours rule is for one tenant'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF jsonb_typeof(p) <> 'object'
           OR coalesce(p->>'start', '') !~ '^([01][0-9]|2[0-3]):[0-5][0-9]$'
           OR coalesce(p->>'end', '') !~ '^([01][0-9]|2[0-4]):[0-5][0-9]$'
           OR (p ? 'days' AND (jsonb_typeof(p->'days') <> 'array' OR jsonb_array_length(p->'days') = 0
               OR EXISTS (SELECT FROM jsonb_array_elements(p->'days') d
                           WHERE jsonb_typeof(d) <> 'number' OR d::text NOT IN ('1','2','3','4','5','6','7'))))
           OR (p ? 'time_zone' AND (jsonb_typeof(p->'time_zone') <> 'string'
               OR NOT EXISTS (SELECT FROM pg_timezone_names z WHERE z.name = p->>'time_zone'))) THEN
            RAISE EXCEPTION 'invalid value for argument "params": expected {"start": "HH:MM", "end": "HH:MM", "days": [1..7, Monday 1], "time_zone": a time zone name}'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    ELSIF jsonb_typeof(p) <> 'object' THEN
        RAISE EXCEPTION 'invalid value for argument "params": expected a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- disabling a rule needs a second admin's approval when
    -- tool_audit.require_dual_approval is on
    IF had_one AND before_row.enabled AND set_alert_rule.enabled IS FALSE THEN
        PERFORM tool_audit.approval_gate('tool_audit.alert_rule.disable',
                                         jsonb_build_object('rule_name', set_alert_rule.rule_name));
    END IF;
    IF had_one THEN
        UPDATE tool_audit.alert_rules r
           SET severity = coalesce(set_alert_rule.severity, r.severity),
               matches = coalesce(set_alert_rule.matches, r.matches),
               threshold = coalesce(set_alert_rule.threshold, r.threshold),
               window_seconds = coalesce(set_alert_rule.window_seconds, r.window_seconds),
               tenant_id = coalesce(set_alert_rule.tenant_id, r.tenant_id),
               params = p,
               enabled = coalesce(set_alert_rule.enabled, r.enabled),
               changed_at = now(), changed_by = tool_audit.acting_role()
         WHERE r.rule_name = set_alert_rule.rule_name
        RETURNING * INTO after_row;
    ELSE
        INSERT INTO tool_audit.alert_rules
            (rule_name, kind, severity, enabled, matches, tenant_id, threshold, window_seconds,
             params, changed_by)
        VALUES (set_alert_rule.rule_name, k, severity, coalesce(enabled, true),
                coalesce(matches, '{}'), set_alert_rule.tenant_id, set_alert_rule.threshold,
                coalesce(set_alert_rule.window_seconds, 3600), p, tool_audit.acting_role())
        RETURNING * INTO after_row;
    END IF;
    result := tool_audit.alert_event('rule', CASE WHEN had_one THEN to_jsonb(before_row) END,
                                     to_jsonb(after_row), reason);
    -- a rule disabled or weakened (it would fire less, or lower) raises a
    -- high alert, unless a rule already raised one for this event (as
    -- audit_changes does while it is on and unchanged)
    IF had_one AND before_row.enabled
       AND (NOT after_row.enabled
            OR array_position(ARRAY['low', 'medium', 'high', 'critical'], after_row.severity)
               < array_position(ARRAY['low', 'medium', 'high', 'critical'], before_row.severity)
            OR NOT (before_row.matches <@ after_row.matches)
            OR (cardinality(before_row.matches) = 0 AND cardinality(after_row.matches) > 0
                AND k <> 'event_type')
            OR after_row.threshold > before_row.threshold
            OR (k IN ('same_subject', 'tool_failures', 'distinct_subjects')
                AND after_row.window_seconds < before_row.window_seconds)
            OR after_row.tenant_id IS DISTINCT FROM before_row.tenant_id
            OR after_row.params IS DISTINCT FROM before_row.params)
       AND NOT EXISTS (SELECT FROM tool_audit.alerts a
                        WHERE a.admin_event_ids @> ARRAY[(result->>'admin_event_id')::bigint]
                          AND a.severity IN ('high', 'critical')) THEN
        PERFORM tool_audit.raise_alert('audit_changes', NULL, 'weakened:' || set_alert_rule.rule_name, NULL,
                                       (result->>'admin_event_id')::bigint,
                                       jsonb_build_object('weakened_rule', set_alert_rule.rule_name));
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION tool_audit.set_alert_rule(text, text, text, text[], integer, integer, text, jsonb, boolean, text) IS
    'Creates or changes an alert rule (NULL arguments keep the rule''s values) and records it as a tool_audit.alert.rule admin event; disabling or weakening a rule raises a high alert, and disabling needs dual approval when it is required';

CREATE FUNCTION tool_audit.disable_alert_rule(rule_name text, reason text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    before_row tool_audit.alert_rules;
    after_row tool_audit.alert_rules;
    result jsonb;
BEGIN
    SELECT * INTO before_row FROM tool_audit.alert_rules r
     WHERE r.rule_name = disable_alert_rule.rule_name FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'invalid value for argument "rule_name": no such alert rule'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The value is not shown: it may be a secret put in the wrong place.';
    END IF;
    IF before_row.enabled THEN
        PERFORM tool_audit.approval_gate('tool_audit.alert_rule.disable',
                                         jsonb_build_object('rule_name', disable_alert_rule.rule_name));
    END IF;
    UPDATE tool_audit.alert_rules r
       SET enabled = false, changed_at = now(), changed_by = tool_audit.acting_role()
     WHERE r.rule_name = disable_alert_rule.rule_name
    RETURNING * INTO after_row;
    result := tool_audit.alert_event('rule', to_jsonb(before_row), to_jsonb(after_row), reason);
    -- as set_alert_rule(): a rule switched off raises a high alert
    IF before_row.enabled
       AND NOT EXISTS (SELECT FROM tool_audit.alerts a
                        WHERE a.admin_event_ids @> ARRAY[(result->>'admin_event_id')::bigint]
                          AND a.severity IN ('high', 'critical')) THEN
        PERFORM tool_audit.raise_alert('audit_changes', NULL, 'weakened:' || disable_alert_rule.rule_name, NULL,
                                       (result->>'admin_event_id')::bigint,
                                       jsonb_build_object('weakened_rule', disable_alert_rule.rule_name));
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION tool_audit.disable_alert_rule(text, text) IS
    'Disables an alert rule and records it as a tool_audit.alert.rule admin event; raises a high alert, and needs dual approval when it is required';

CREATE FUNCTION tool_audit.acknowledge_alert(id bigint, note text)
RETURNS tool_audit.alerts
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    before_row tool_audit.alerts;
    after_row tool_audit.alerts;
    -- stored as the audit tables store free text: a secret pasted in the
    -- note is not kept in clear (the event's reason is sanitized by its
    -- insert trigger, the alerts row is not an audit row)
    clean_note text := tool_audit.sanitize_text(acknowledge_alert.note);
BEGIN
    SELECT * INTO before_row FROM tool_audit.alerts a WHERE a.alert_id = acknowledge_alert.id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'invalid value for argument "id": no such alert'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF before_row.acknowledged_at IS NOT NULL THEN
        RAISE EXCEPTION 'the alert is already acknowledged'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    UPDATE tool_audit.alerts a
       SET acknowledged_by = tool_audit.acting_role(), acknowledged_at = now(),
           acknowledged_note = clean_note
     WHERE a.alert_id = acknowledge_alert.id
    RETURNING * INTO after_row;
    PERFORM tool_audit.alert_event('acknowledge',
        jsonb_build_object('alert_id', before_row.alert_id, 'rule_name', before_row.rule_name,
                           'count', before_row.count, 'first_at', before_row.first_at,
                           'last_at', before_row.last_at),
        jsonb_build_object('alert_id', after_row.alert_id, 'acknowledged_by', after_row.acknowledged_by,
                           'acknowledged_at', after_row.acknowledged_at),
        clean_note, before_row.tenant_id);
    RETURN after_row;
END
$$;
COMMENT ON FUNCTION tool_audit.acknowledge_alert(bigint, text) IS
    'Acknowledges an alert (once) with a note, recorded as a tool_audit.alert.acknowledge admin event; its burst then ends';

-- ---------------------------------------------------------------------------
-- The periodic checks: protections, the signing key, silent tenants.
-- "Normally logs": a tenant with tool_calls rows on at least threshold (5)
-- of the 7 days before today (UTC); silent: none of its rows in the last
-- window_seconds (6 hours) of rule tenant_silent.  The daily counts are kept
-- in tenant_activity, filled from the rows recorded since the last check (an
-- index range scan on recorded_at), so a check never reads a week of rows.
-- ---------------------------------------------------------------------------
CREATE TABLE tool_audit.tenant_activity (
    tenant_id text NOT NULL,
    day       date NOT NULL,
    calls     bigint NOT NULL,
    last_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, day)
);
COMMENT ON TABLE tool_audit.tenant_activity IS
    'Calls per tenant and day (UTC) seen by run_alert_checks(), for the silent-tenant check; the last 30 days';
CREATE TABLE tool_audit.alert_check_mark (
    one_row     boolean PRIMARY KEY DEFAULT true CONSTRAINT one_row CHECK (one_row),
    recorded_at timestamptz NOT NULL,
    id          bigint NOT NULL
);
COMMENT ON TABLE tool_audit.alert_check_mark IS
    'The last tool_calls row run_alert_checks() counted in tenant_activity';

CREATE FUNCTION tool_audit.run_alert_checks()
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mark tool_audit.alert_check_mark;
    last_row record;
    silent_rule tool_audit.alert_rules;
    problems jsonb;
    key_file text := current_setting('tool_audit.signing_key_file', true);
    key_problem text;
    raised jsonb := '[]';
    t record;
    id bigint;
BEGIN
    -- protections, and tracked tables whose triggers are gone or disabled
    SELECT jsonb_agg(x.problem) INTO problems
      FROM (SELECT jsonb_build_object('table', p.table_name, 'problem', p.problem) AS problem
              FROM tool_audit.verify_protections() p
            UNION ALL
            SELECT jsonb_build_object('table', s.table_name, 'problem', 'tracking: ' || s.status)
              FROM tool_audit.tracking_status() s
             WHERE s.status NOT IN ('ok', 'table renamed')) x;
    IF problems IS NOT NULL THEN
        id := tool_audit.raise_alert('audit_protections', NULL, 'verify_protections', NULL, NULL,
                                     jsonb_build_object('problems', problems));
        raised := raised || jsonb_build_object('rule', 'audit_protections', 'alert_id', id);
    END IF;
    -- the signing key, when one is configured
    IF coalesce(key_file, '') <> '' THEN
        BEGIN
            IF tool_audit.signing_public_key() IS NULL THEN
                key_problem := 'no key';
            END IF;
        EXCEPTION WHEN OTHERS THEN
            key_problem := SQLSTATE;
        END;
        IF key_problem IS NOT NULL THEN
            id := tool_audit.raise_alert('signing_key_missing', NULL, 'signing_key_file', NULL, NULL,
                                         jsonb_build_object('sqlstate', key_problem));
            raised := raised || jsonb_build_object('rule', 'signing_key_missing', 'alert_id', id);
        END IF;
    END IF;
    -- silent tenants: count the rows since the last check, by tenant and day
    LOCK TABLE tool_audit.alert_check_mark IN EXCLUSIVE MODE;
    SELECT * INTO mark FROM tool_audit.alert_check_mark;
    SELECT c.recorded_at, c.id INTO last_row FROM tool_audit.tool_calls c
     ORDER BY c.recorded_at DESC, c.id DESC LIMIT 1;
    IF last_row.id IS NOT NULL THEN
        INSERT INTO tool_audit.tenant_activity AS a (tenant_id, day, calls, last_at)
        SELECT c.tenant_id, (c.recorded_at AT TIME ZONE 'UTC')::date, count(*), max(c.recorded_at)
          FROM tool_audit.tool_calls c
         WHERE c.tenant_id IS NOT NULL
           AND c.recorded_at >= coalesce(mark.recorded_at, c.recorded_at)
           AND (mark.id IS NULL OR (c.recorded_at, c.id) > (mark.recorded_at, mark.id))
           AND (c.recorded_at, c.id) <= (last_row.recorded_at, last_row.id)
           AND c.recorded_at >= now() - interval '30 days'
         GROUP BY 1, 2
        ON CONFLICT (tenant_id, day) DO UPDATE
           SET calls = a.calls + excluded.calls, last_at = greatest(a.last_at, excluded.last_at);
        INSERT INTO tool_audit.alert_check_mark AS m (one_row, recorded_at, id)
        VALUES (true, last_row.recorded_at, last_row.id)
        ON CONFLICT (one_row) DO UPDATE SET recorded_at = excluded.recorded_at, id = excluded.id;
    END IF;
    DELETE FROM tool_audit.tenant_activity a WHERE a.day < (now() AT TIME ZONE 'UTC')::date - 30;
    SELECT * INTO silent_rule FROM tool_audit.alert_rules r WHERE r.rule_name = 'tenant_silent';
    IF FOUND AND silent_rule.enabled THEN
        FOR t IN
            SELECT a.tenant_id, max(a.last_at) AS last_at,
                   count(*) FILTER (WHERE a.day >= (now() AT TIME ZONE 'UTC')::date - 7
                                      AND a.day < (now() AT TIME ZONE 'UTC')::date) AS days
              FROM tool_audit.tenant_activity a
             GROUP BY a.tenant_id
            HAVING count(*) FILTER (WHERE a.day >= (now() AT TIME ZONE 'UTC')::date - 7
                                      AND a.day < (now() AT TIME ZONE 'UTC')::date)
                       >= coalesce(silent_rule.threshold, 5)
               AND max(a.last_at) < now() - make_interval(secs => silent_rule.window_seconds)
             ORDER BY a.tenant_id
        LOOP
            id := tool_audit.raise_alert('tenant_silent', t.tenant_id, 'silent', NULL, NULL,
                                         jsonb_build_object('last_call_at', t.last_at, 'active_days', t.days));
            raised := raised || jsonb_build_object('rule', 'tenant_silent', 'tenant_id', t.tenant_id,
                                                   'alert_id', id);
        END LOOP;
    END IF;
    RETURN raised;
END
$$;
COMMENT ON FUNCTION tool_audit.run_alert_checks() IS
    'The periodic alert checks: protections disabled, tracked tables whose triggers are gone or disabled, the signing key missing, tenants that normally log gone silent; returns the alerts raised';

-- The checks as a pg_cron job, as the retention job (48_retention_schedule.sql)
CREATE FUNCTION tool_audit.schedule_alert_checks(schedule text DEFAULT '*/15 * * * *')
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job_name constant text := 'tool_audit alert checks in ' || current_database();
    command constant text := 'SELECT tool_audit.run_alert_checks()';
    job_role constant text := tool_audit.acting_role();
    spec constant text := btrim(schedule);
    replaced jsonb;
    job_id bigint;
BEGIN
    IF spec IS NULL OR length(spec) > 100
       OR spec !~ '^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|[0-9]{1,2} seconds?|[0-9A-Za-z*,/$-]+( +[0-9A-Za-z*,/$-]+){4})$' THEN
        RAISE EXCEPTION 'invalid value for argument "schedule": expected a cron schedule'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The value is not shown: it may be a secret put in the wrong place.',
                  HINT = 'Five fields, minute hour day-of-month month day-of-week, as in ''*/15 * * * *'' (every 15 minutes); or @hourly; pg_cron 1.5 and later also take ''N seconds''.';
    END IF;
    IF NOT coalesce((SELECT r.rolcanlogin FROM pg_roles r WHERE r.rolname = job_role), false) THEN
        RAISE EXCEPTION 'the alert check job runs as the role that schedules it, and role % cannot log in', quote_ident(job_role)
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Call schedule_alert_checks() as a login role that is a member of tool_audit_admin.';
    END IF;
    IF NOT has_function_privilege(job_role, 'tool_audit.run_alert_checks()', 'EXECUTE') THEN
        RAISE EXCEPTION 'the alert check job runs as the role that schedules it, and role % may not execute tool_audit.run_alert_checks()', quote_ident(job_role)
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Grant tool_audit_admin to that role, or schedule as one that has it.';
    END IF;
    PERFORM tool_audit.require_pg_cron(
        format('SELECT cron.schedule_in_database(%L, %L, %L, %L, %L);',
               job_name, spec, command, current_database(), job_role));
    LOCK TABLE cron.job IN SHARE ROW EXCLUSIVE MODE;
    SELECT jsonb_agg(jsonb_build_object('job_id', j.jobid, 'schedule', j.schedule, 'command', j.command,
                                        'username', j.username) ORDER BY j.jobid)
      INTO replaced FROM cron.job j WHERE j.jobname = job_name AND j.database = current_database();
    PERFORM cron.unschedule(j.jobid) FROM cron.job j
      WHERE j.jobname = job_name AND j.database = current_database();
    BEGIN
        job_id := cron.schedule_in_database(job_name, spec, command, current_database(), job_role);
    EXCEPTION WHEN invalid_parameter_value THEN
        RAISE EXCEPTION 'invalid value for argument "schedule": pg_cron does not accept it'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The value is not shown: it may be a secret put in the wrong place.';
    END;
    PERFORM tool_audit.alert_event('schedule', replaced,
        jsonb_build_object('job_id', job_id, 'job_name', job_name, 'schedule', spec, 'command', command,
                           'database', current_database(), 'username', job_role), NULL);
    RETURN job_id;
END
$$;
COMMENT ON FUNCTION tool_audit.schedule_alert_checks(text) IS
    'Schedules run_alert_checks() as this database''s pg_cron job, run as the calling role, replacing any earlier one; returns the job id';

CREATE FUNCTION tool_audit.unschedule_alert_checks()
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job_name constant text := 'tool_audit alert checks in ' || current_database();
    removed jsonb;
BEGIN
    PERFORM tool_audit.require_pg_cron(
        format('SELECT cron.unschedule(j.jobid) FROM cron.job j WHERE j.jobname = %L AND j.database = %L;',
               job_name, current_database()));
    LOCK TABLE cron.job IN SHARE ROW EXCLUSIVE MODE;
    SELECT jsonb_agg(jsonb_build_object('job_id', j.jobid, 'schedule', j.schedule, 'command', j.command,
                                        'username', j.username) ORDER BY j.jobid)
      INTO removed FROM cron.job j WHERE j.jobname = job_name AND j.database = current_database();
    IF removed IS NULL THEN
        RETURN false;
    END IF;
    PERFORM tool_audit.approval_gate('tool_audit.alert_checks.unschedule', '{}');
    PERFORM cron.unschedule(j.jobid) FROM cron.job j
      WHERE j.jobname = job_name AND j.database = current_database();
    PERFORM tool_audit.alert_event('schedule', removed, NULL, NULL);
    RETURN true;
END
$$;
COMMENT ON FUNCTION tool_audit.unschedule_alert_checks() IS
    'Removes this database''s pg_cron alert check job; true if there was one; needs dual approval when it is required';

-- ---------------------------------------------------------------------------
-- Who sees alerts: row-level security as on tool_calls.  Nobody but the
-- extension's functions (the owner) writes them.
-- ---------------------------------------------------------------------------
ALTER TABLE tool_audit.alerts ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_read ON tool_audit.alerts
    FOR SELECT TO tool_audit_admin USING (true);
CREATE POLICY verifier_read ON tool_audit.alerts
    FOR SELECT TO tool_audit_verifier USING (true);
CREATE POLICY reader_tenant ON tool_audit.alerts
    FOR SELECT TO tool_audit_reader
    USING (((SELECT tool_audit.bound_tenants()) IS NULL
            OR tenant_id IN (SELECT pg_catalog.unnest(tool_audit.bound_tenants())))
           AND (coalesce(pg_catalog.current_setting('tool_audit.tenant', true), '') = ''
            OR tenant_id = pg_catalog.current_setting('tool_audit.tenant', true)));
