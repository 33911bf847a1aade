
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
