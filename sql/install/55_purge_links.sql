
-- ---------------------------------------------------------------------------
-- (1.4) The links purge anchors keep, for check_row(): the row after a
-- purged span links to the span's last link, and the row before it is
-- followed by the span.  SECURITY DEFINER: readers check rows they can see
-- without reading purge_anchors themselves; a reader bound to tenants learns
-- of their spans only (other tenants' chain ids are computable).
-- ---------------------------------------------------------------------------
CREATE FUNCTION tool_audit.purged_link(table_name text, chain_id bigint, chain_lane integer, chain_seq bigint)
RETURNS bytea
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.link_after FROM tool_audit.purge_anchors a
     WHERE a.table_name = purged_link.table_name AND a.chain_id = purged_link.chain_id
       AND a.chain_lane = purged_link.chain_lane AND a.last_seq = purged_link.chain_seq
       AND (tool_audit.bound_tenants() IS NULL OR a.tenant_id = ANY (tool_audit.bound_tenants()))
     ORDER BY a.first_seq DESC LIMIT 1
$$;
COMMENT ON FUNCTION tool_audit.purged_link(text, bigint, integer, bigint) IS
    'The chain_hash a purge anchor keeps for the last position of a purged span, or NULL';

CREATE FUNCTION tool_audit.purge_link_before(table_name text, chain_id bigint, chain_lane integer, chain_seq bigint)
RETURNS bytea
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.link_before FROM tool_audit.purge_anchors a
     WHERE a.table_name = purge_link_before.table_name AND a.chain_id = purge_link_before.chain_id
       AND a.chain_lane = purge_link_before.chain_lane AND a.first_seq = purge_link_before.chain_seq
       AND (tool_audit.bound_tenants() IS NULL OR a.tenant_id = ANY (tool_audit.bound_tenants()))
$$;
COMMENT ON FUNCTION tool_audit.purge_link_before(text, bigint, integer, bigint) IS
    'The link before a purged span that starts at this position, or NULL';
