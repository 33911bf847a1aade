
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
    -- a bound reader names only its own tenants: one that set tool_audit.tenant
    -- to another read none of that tenant's rows, and its read is not written
    -- into that tenant's chain (where its role and tenants would show)
    IF tenant IS NOT NULL AND bound IS NOT NULL AND NOT (tenant = ANY (bound)) THEN
        tenant := NULL;
    END IF;
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
