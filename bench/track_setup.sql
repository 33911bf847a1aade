-- Fixtures of bench/track.sh: three copies of a typical application table
-- (10 columns, a primary key and one secondary index, 100,000 rows):
--   bench_acct_plain:   no trigger (the baseline);
--   bench_acct_tracked: tool_audit.track() (its C trigger into data_changes);
--   bench_acct_plpgsql: the supa_audit / pgMemento way, a PL/pgSQL AFTER ROW
--                       trigger writing to_jsonb(OLD) and to_jsonb(NEW) into a
--                       plain audit table (bench_audit_log).
CREATE EXTENSION IF NOT EXISTS tool_audit;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['bench_acct_plain', 'bench_acct_tracked', 'bench_acct_plpgsql'] LOOP
        EXECUTE format($f$
            CREATE TABLE %1$I (
                id          integer PRIMARY KEY,
                email       text NOT NULL,
                name        text NOT NULL,
                plan        text NOT NULL,
                balance     numeric(12, 2) NOT NULL,
                status      text NOT NULL,
                country     text NOT NULL,
                created_at  timestamptz NOT NULL,
                updated_at  timestamptz NOT NULL,
                notes       text)$f$, t);
        EXECUTE format('CREATE INDEX %I ON %I (email)', t || '_email', t);
        EXECUTE format($f$
            INSERT INTO %I
            SELECT i, 'user' || i || '@example.com', 'User ' || i, 'basic', 100, 'active', 'FR',
                   '2026-01-01', '2026-01-01', NULL
              FROM generate_series(1, 100000) i$f$, t);
    END LOOP;
END $$;

-- the PL/pgSQL baseline (supa_audit / pgMemento style)
CREATE TABLE bench_audit_log (
    id          bigserial PRIMARY KEY,
    table_name  text NOT NULL,
    op          text NOT NULL,
    old_record  jsonb,
    new_record  jsonb,
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    recorded_by text NOT NULL DEFAULT current_user,
    txid        bigint NOT NULL DEFAULT txid_current()
);
CREATE FUNCTION bench_audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench_audit_log (table_name, op, old_record, new_record)
    VALUES (TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, TG_OP,
            CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END,
            CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END);
    RETURN NULL;
END $$;
CREATE TRIGGER bench_audit AFTER INSERT OR UPDATE OR DELETE ON bench_acct_plpgsql
    FOR EACH ROW EXECUTE FUNCTION bench_audit_row();

-- tracked, every column; the changes are made inside a tool call (the
-- bench sets tool_audit.call through PGOPTIONS) whose row is logged here
-- first, so each transaction also looks up the call's tenant
SELECT tool_audit.track('bench_acct_tracked');
SELECT tool_name FROM tool_audit.log_call('bench_update', '{}', '{}', 1,
    '{"event_id": "0b0b0b0b-0b0b-4b0b-8b0b-0b0b0b0b0b0b", "tenant_id": "bench"}');
VACUUM ANALYZE;
