
-- ---------------------------------------------------------------------------
-- (1.5) pg_dump keeps which tables are tracked: the triggers on the
-- application tables are dumped with them, and tracked_tables names each
-- table as a regclass, so a restore points its rows at the restored tables
-- (tracking_status() is then what it was)
-- ---------------------------------------------------------------------------
SELECT pg_catalog.pg_extension_config_dump('tool_audit.tracked_tables', '');
