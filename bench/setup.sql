-- Benchmark fixtures: the baseline is a plain table with the same columns and
-- the same indexes as tool_audit.tool_calls, no triggers.
CREATE EXTENSION IF NOT EXISTS tool_audit;
CREATE TABLE bench_plain (LIKE tool_audit.tool_calls INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
CREATE SEQUENCE bench_plain_id_seq OWNED BY bench_plain.id;
ALTER TABLE bench_plain ALTER COLUMN id SET DEFAULT nextval('bench_plain_id_seq'),
                        ALTER COLUMN recorded_by SET DEFAULT current_user,
                        ALTER COLUMN success SET DEFAULT true,
                        ADD PRIMARY KEY (id), ADD UNIQUE (event_id);
