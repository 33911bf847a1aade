-- Fixtures of bench/track.sh: three copies of a typical application table
-- (10 columns, a primary key and one secondary index, 100,000 rows):
--   bench_acct_plain:   no trigger (the baseline);
--   bench_acct_tracked: tool_audit.track() (its C trigger into data_changes);
--   bench_acct_plpgsql: the supa_audit / pgMemento way, a PL/pgSQL AFTER ROW
--                       trigger writing to_jsonb(OLD) and to_jsonb(NEW) into a
--                       plain audit table (bench_audit_log) with the indexes
--                       of supa_audit's audit.record_version (see below).
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

-- the PL/pgSQL baseline (supa_audit / pgMemento style).  The audit table
-- has the index set of supa_audit's own audit.record_version (supabase/
-- supa_audit, 0.3.x): the bigserial primary key, btree indexes on record_id
-- and old_record_id (partial: WHERE ... IS NOT NULL), a btree on table_oid
-- and a BRIN index on the time column; a baseline with the primary key only
-- wrote one index entry a row where the original writes four (and a BRIN
-- summary check), so it looked cheaper than the tool it stands for.
-- record_id / old_record_id identify the changed row by table and primary
-- key, as supa_audit's audit.to_record_id() does (there a uuid v5 of the
-- table oid and the key values, from uuid-ossp, after looking the key
-- columns up in pg_index for every row); here an md5 of the same, which
-- needs no extension and costs less than the original, so the baseline is
-- not made heavier than what it models.
CREATE TABLE bench_audit_log (
    id            bigserial PRIMARY KEY,
    record_id     uuid,
    old_record_id uuid,
    table_oid     oid NOT NULL,
    table_name    text NOT NULL,
    op            text NOT NULL,
    old_record    jsonb,
    new_record    jsonb,
    recorded_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    recorded_by   text NOT NULL DEFAULT current_user,
    txid          bigint NOT NULL DEFAULT txid_current()
);
CREATE INDEX bench_audit_log_record_id ON bench_audit_log (record_id) WHERE record_id IS NOT NULL;
CREATE INDEX bench_audit_log_old_record_id ON bench_audit_log (old_record_id) WHERE old_record_id IS NOT NULL;
CREATE INDEX bench_audit_log_table_oid ON bench_audit_log (table_oid);
CREATE INDEX bench_audit_log_recorded_at ON bench_audit_log USING brin (recorded_at);
CREATE FUNCTION bench_audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    new_record jsonb := CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END;
    old_record jsonb := CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END;
BEGIN
    INSERT INTO bench_audit_log (record_id, old_record_id, table_oid, table_name, op,
                                 old_record, new_record)
    VALUES (md5(TG_RELID || ':' || (new_record ->> 'id'))::uuid,
            md5(TG_RELID || ':' || (old_record ->> 'id'))::uuid,
            TG_RELID, TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, TG_OP, old_record, new_record);
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
-- Both audit tables start with 5,000 rows, written by their triggers (one
-- UPDATE each, outside any tool call), as a table in use has rows: past the
-- first 128 pages, so that the VACUUM below summarizes the full block
-- ranges of their BRIN indexes and the bench's rows go to an unsummarized
-- last range, as they do in a table in service.  (In an empty table the
-- first range is summarized by CREATE INDEX, and every insert widens that
-- summary, a cost a table in service pays once per 128 pages.)
UPDATE bench_acct_tracked SET notes = 'before the bench' WHERE id <= 5000;
UPDATE bench_acct_plpgsql SET notes = 'before the bench' WHERE id <= 5000;
VACUUM ANALYZE;
