
-- ---------------------------------------------------------------------------
-- pg_dump keeps the audit data (extension tables are otherwise not dumped)
-- ---------------------------------------------------------------------------
SELECT pg_catalog.pg_extension_config_dump('tool_audit.tool_calls', '');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.tool_calls_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.admin_events_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.admin_events', '');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.sanitize_rules', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.sanitize_rules_rule_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.pseudonym_keys', '');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.tenant_bindings', '');
-- (1.4) seeded rows are dumped once changed (a restore's rows replace the
-- seeds: see the retention tables' restore triggers)
SELECT pg_catalog.pg_extension_config_dump('tool_audit.retention_policies', 'WHERE changed_by <> ''tool_audit''');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.retention_floor', 'WHERE changed_by <> ''tool_audit''');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.retention_overrides', '');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.legal_holds', '');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.legal_holds_hold_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.purge_anchors', '');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.erasures', '');
-- (1.5) alerts, and the alert rules once changed (a restore's rules replace
-- the seeds: alert_rules_restore_seed)
SELECT pg_catalog.pg_extension_config_dump('tool_audit.alert_rules', 'WHERE changed_by <> ''tool_audit''');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.alerts', '');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.alerts_alert_id_seq', '');

-- ---------------------------------------------------------------------------
-- DDL guards: last, so that the script's own DDL above is not inspected
-- ---------------------------------------------------------------------------
CREATE EVENT TRIGGER tool_audit_ddl_start ON ddl_command_start
    EXECUTE FUNCTION tool_audit.ddl_guard();
CREATE EVENT TRIGGER tool_audit_sql_drop ON sql_drop
    EXECUTE FUNCTION tool_audit.ddl_guard();
CREATE EVENT TRIGGER tool_audit_table_rewrite ON table_rewrite
    EXECUTE FUNCTION tool_audit.ddl_guard();
ALTER EVENT TRIGGER tool_audit_ddl_start ENABLE ALWAYS;
ALTER EVENT TRIGGER tool_audit_sql_drop ENABLE ALWAYS;
ALTER EVENT TRIGGER tool_audit_table_rewrite ENABLE ALWAYS;
