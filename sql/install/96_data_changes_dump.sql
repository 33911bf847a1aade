
-- ---------------------------------------------------------------------------
-- (1.5) pg_dump keeps the change rows and where their ids stand; after the
-- other tables' (95_dump_and_guards.sql), so that the extension's list of
-- configuration tables reads the same in a fresh and an upgraded database
-- ---------------------------------------------------------------------------
SELECT pg_catalog.pg_extension_config_dump('tool_audit.data_changes', '');
SELECT pg_catalog.pg_extension_config_dump('tool_audit.data_changes_id_seq', '');
