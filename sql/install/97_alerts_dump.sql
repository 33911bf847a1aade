
-- After 96_data_changes_dump.sql, so that a fresh database lists the
-- extension's dumped tables in the order the 1.4 -> 1.5 upgrade adds them
-- (1.5) alerts, and the alert rules once changed (a restore's rules replace
-- the seeds: alert_rules_restore_seed)
SELECT pg_catalog.pg_extension_config_dump('tool_audit.alert_rules', 'WHERE changed_by <> ''tool_audit''');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.alerts', '');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.alerts_alert_id_seq', '');
