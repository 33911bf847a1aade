-- Benchmark fixtures.
--   bench_plain:    the baseline, a plain table with the content columns of
--                   tool_audit.tool_calls (not the five chain columns), the
--                   same defaults and CHECKs, PK on id, UNIQUE on event_id,
--                   the same other (content) indexes, no triggers.
--   bench_pgcrypto: what a user would write instead of the extension: the
--                   same table plus prev_hash/row_hash, chained by a PL/pgSQL
--                   BEFORE INSERT trigger with pgcrypto's digest().
CREATE EXTENSION IF NOT EXISTS tool_audit;
CREATE EXTENSION IF NOT EXISTS pgcrypto;

-- The tables are built from the catalog rather than with LIKE: LIKE always
-- copies NOT NULL, so it would bring the chain columns along as NOT NULL
-- columns nobody fills, and dropping them afterwards would leave dropped
-- attributes in every tuple.  Reading the catalog also keeps the baseline in
-- step if tool_calls gains a content column.
DO $build$
DECLARE
    chain_columns CONSTANT text[] := '{row_hash,chain_id,chain_lane,chain_seq,chain_hash}';
    cols   text;
    checks text;
    idx    text;
    t      text;
BEGIN
    SELECT string_agg(format('%I %s%s%s', a.attname, format_type(a.atttypid, a.atttypmod),
                             CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END,
                             ' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid)),
                      ', ' ORDER BY a.attnum)
      INTO cols
      FROM pg_attribute a
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE a.attrelid = 'tool_audit.tool_calls'::regclass AND a.attnum > 0
       AND NOT a.attisdropped AND a.attname <> ALL (chain_columns);
    SELECT coalesce(string_agg(format(', CONSTRAINT %I %s', conname, pg_get_constraintdef(oid)), '' ORDER BY conname), '')
      INTO checks
      FROM pg_constraint
     WHERE conrelid = 'tool_audit.tool_calls'::regclass AND contype = 'c';
    FOREACH t IN ARRAY '{bench_plain,bench_pgcrypto}'::text[] LOOP
        EXECUTE format('CREATE TABLE %I (%s%s)', t, cols, checks);
        -- what the audit trigger fills in for tool_calls, defaults do here
        EXECUTE format('CREATE SEQUENCE %I OWNED BY %I.id', t || '_id_seq', t);
        EXECUTE format($$ALTER TABLE %I ALTER COLUMN id SET DEFAULT nextval(%L),
                                        ALTER COLUMN recorded_by SET DEFAULT current_user,
                                        ALTER COLUMN event_id SET DEFAULT gen_random_uuid(),
                                        ALTER COLUMN success SET DEFAULT true,
                                        ADD PRIMARY KEY (id), ADD UNIQUE (event_id)$$,
                       t, t || '_id_seq');
        -- the same content indexes as tool_calls (the reports' indexes of
        -- 1.2); the chain position index is the chain's own cost
        FOR idx IN
            SELECT pg_get_indexdef(i.indexrelid)
              FROM pg_index i
             WHERE i.indrelid = 'tool_audit.tool_calls'::regclass
               AND NOT i.indisprimary AND NOT i.indisunique
        LOOP
            EXECUTE replace(replace(idx, 'ON tool_audit.tool_calls ', format('ON %I ', t)),
                            'INDEX tool_calls_', format('INDEX %I', t || '_'));
        END LOOP;
    END LOOP;
END
$build$;

-- The user-written chain.  One chain, serialized on its head row: the trigger
-- locks the head (SELECT ... FOR UPDATE), links the new row to it and moves it.
-- A concurrent writer blocks on the lock and, once the holder commits, reads
-- the head that holder wrote (READ COMMITTED re-reads the locked row), so two
-- rows never get the same predecessor; the lock is held to commit, so chain
-- order is commit order and a rolled-back row leaves the head untouched.  The
-- UNIQUE on prev_hash makes a fork a constraint violation, as the extension's
-- unique chain position index does.
ALTER TABLE bench_pgcrypto ADD COLUMN prev_hash bytea NOT NULL,
                           ADD COLUMN row_hash  bytea NOT NULL,
                           ADD UNIQUE (prev_hash);
CREATE TABLE bench_pgcrypto_head (
    chain int PRIMARY KEY,
    head  bytea NOT NULL
);
INSERT INTO bench_pgcrypto_head VALUES (1, '\x'::bytea);   -- genesis: the empty hash

CREATE FUNCTION bench_pgcrypto_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    prev bytea;
BEGIN
    SELECT head INTO STRICT prev FROM bench_pgcrypto_head WHERE chain = 1 FOR UPDATE;
    -- the row's content as text: every column, the two hash columns NULL
    -- (whatever the caller brought), so a checker can recompute it
    NEW.prev_hash := NULL;
    NEW.row_hash := NULL;
    NEW.row_hash := digest(prev || convert_to(NEW::text, 'UTF8'), 'sha256');
    NEW.prev_hash := prev;
    UPDATE bench_pgcrypto_head SET head = NEW.row_hash WHERE chain = 1;
    RETURN NEW;
END
$$;
CREATE TRIGGER bench_pgcrypto_chain BEFORE INSERT ON bench_pgcrypto
    FOR EACH ROW EXECUTE FUNCTION bench_pgcrypto_chain();
