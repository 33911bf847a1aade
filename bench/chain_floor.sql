-- bench_chained: what storing a chain costs PostgreSQL alone, with no audit
-- work at all.  bench_plain (bench/setup.sql) plus tool_calls' five chain
-- columns, filled without a trigger (two constant 32-byte hashes, the chain
-- id from the tenant, one lane, a position from a sequence, so that each
-- chain's tail lies inside the index as a lane head does), and the unique
-- chain position index.  No sanitizing, no hashing, no lane locks: whatever
-- chains its rows in the row itself pays at least this, so bench_chained
-- against bench_plain is a ceiling for the audited INSERT against the plain one.
CREATE TABLE bench_chained (LIKE bench_plain INCLUDING ALL);
CREATE SEQUENCE bench_chained_position;
ALTER TABLE bench_chained
    ADD COLUMN row_hash   bytea   NOT NULL DEFAULT sha256('row'::bytea),
    ADD COLUMN chain_id   bigint  GENERATED ALWAYS AS (hashtextextended(tenant_id, 0)) STORED,
    ADD COLUMN chain_lane integer NOT NULL DEFAULT 0,
    ADD COLUMN chain_seq  bigint  NOT NULL DEFAULT nextval('bench_chained_position'),
    ADD COLUMN chain_hash bytea   NOT NULL DEFAULT sha256('link'::bytea);
CREATE UNIQUE INDEX bench_chained_position_idx ON bench_chained (chain_id, chain_lane, chain_seq);
