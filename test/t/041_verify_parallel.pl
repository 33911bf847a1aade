# The parallel walk of verify() (verify_parallel.c, issue 16), beyond what
# test/sql/verify_parallel.sql shows:
# - parallel workers really walk parts of the table (the leader's DEBUG2
#   line counts the parts the workers took; a walk that silently stayed in
#   the leader fails here), and the result is the serial walk's;
# - a run cancelled halfway (statement_timeout) leaves no worker behind and
#   the session goes on;
# - with no worker to be had (max_worker_processes = 0) the leader walks
#   every part itself and reports the same problems;
# - thousands of problems, past work_mem: the same as the serial walk's.
# Runs without shared_preload_libraries: the workers load the library.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('verify_parallel');
$node->init;
$node->append_conf('postgresql.conf', qq{
max_worker_processes = 8
max_parallel_workers = 8
});
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION tool_audit;
	INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success, arguments)
	SELECT 'call_' || i, 'tenant_' || (i % 32), true, jsonb_build_object('n', i, 'note', repeat('x', 200))
	  FROM generate_series(1, 12000) i;
});

my $par = q{SET tool_audit.verify_parallel_min_pages = 0; SET tool_audit.verify_parallel_workers = 2; };
my $ser = q{SET tool_audit.verify_parallel_workers = 0; };
my $rows = q{SELECT string_agg(concat_ws('|', table_name, chain, position, row_id, problem), E'\n' ORDER BY o)
               FROM tool_audit.verify() WITH ORDINALITY v(table_name, chain, position, row_id, problem, o)};

# the workers take parts: on this loaded machine a worker may start after the
# leader took every part of a run, so up to five runs
my ($walked, $parts) = (0, 0);
for my $try (1 .. 5)
{
	my $offset = -s $node->logfile;
	is($node->safe_psql('postgres', $par . q{SET log_min_messages = debug2; SELECT count(*) FROM tool_audit.verify()}),
		'0', "intact rows: no problem (run $try)");
	my $log = slurp_file($node->logfile, $offset);
	like($log, qr/tool_audit verification of tool_calls: 13 parts, 2 parallel workers launched/,
		"two workers launched (run $try)");
	($walked, $parts) = $log =~ /verification of tool_calls: parallel workers walked (\d+) of (\d+) parts/;
	last if defined $walked && $walked > 0;
}
ok(defined $walked && $walked > 0, "parallel workers walked parts of tool_calls ($walked of $parts)");

# tampered: an altered row, a deleted row, a row with no chain position
$node->safe_psql('postgres', q{
	UPDATE pg_trigger SET tgenabled = 'D'
	 WHERE tgname IN ('tool_calls_before_insert', 'tool_calls_append_only', 'tool_calls_append_only_row')});
$node->safe_psql('postgres', q{
	UPDATE tool_audit.tool_calls SET tool_name = 'altered' WHERE tenant_id = 'tenant_3' AND chain_seq = 100;
	DELETE FROM tool_audit.tool_calls WHERE tenant_id = 'tenant_17' AND chain_seq = 200;
	INSERT INTO tool_audit.tool_calls
	SELECT (jsonb_populate_record(t, jsonb_build_object(
	        'id', nextval('tool_audit.tool_calls_id_seq'), 'event_id', gen_random_uuid(),
	        'chain_id', NULL, 'chain_lane', NULL, 'chain_seq', NULL))).*
	  FROM tool_audit.tool_calls t WHERE tenant_id = 'tenant_9' AND chain_seq = 1;
	UPDATE pg_trigger SET tgenabled = 'A'
	 WHERE tgname IN ('tool_calls_before_insert', 'tool_calls_append_only', 'tool_calls_append_only_row')});
my $serial = $node->safe_psql('postgres', $ser . $rows);
like($serial, qr/row altered.*\n.*row missing.*\n.*row not in a chain|row missing.*\n.*row altered.*\n.*row not in a chain/,
	'the serial walk finds the three');
is($node->safe_psql('postgres', $par . $rows), $serial, 'the parallel walk finds the same, in the same order');

# many problems: the leader keeps them on disk past its share of work_mem
$node->safe_psql('postgres', q{
	UPDATE pg_trigger SET tgenabled = 'D' WHERE tgname = 'tool_calls_before_insert'});
$node->safe_psql('postgres', q{
	INSERT INTO tool_audit.tool_calls
	SELECT (jsonb_populate_record(t, jsonb_build_object(
	        'id', nextval('tool_audit.tool_calls_id_seq'), 'event_id', gen_random_uuid(),
	        'chain_id', NULL, 'chain_lane', NULL, 'chain_seq', NULL))).*
	  FROM tool_audit.tool_calls t, generate_series(1, 8) g WHERE t.tenant_id = 'tenant_5';
	UPDATE pg_trigger SET tgenabled = 'A' WHERE tgname = 'tool_calls_before_insert'});
my $many = $node->safe_psql('postgres', $ser . $rows);
is(scalar(() = $many =~ /row not in a chain/g), 3001, 'the serial walk: 3,001 rows not in a chain');
is($node->safe_psql('postgres', $par . q{SET work_mem = '64kB'; } . $rows), $many,
	'the parallel walk, with 64 kB of work_mem: the same, in the same order');
$serial = $many;

# in a database of its own, twelve tenants whose chain ids leave the last
# parts without lanes: a row with a chain id there but no lane, a row with no
# chain id, and a digest whose head of the highest chain lies past the lane's
# end (a problem the serial walk reports only after the rows with no chain
# id): the parallel walk reports them in the serial walk's order
$node->safe_psql('postgres', q{CREATE DATABASE ordered});
$node->safe_psql('ordered', q{
	CREATE EXTENSION tool_audit;
	INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
	SELECT 'call_' || i, 'vp_' || lpad(t::text, 2, '0'), true
	  FROM generate_series(1, 12) t, generate_series(1, 5) i;
	CREATE TABLE past_end AS
	SELECT jsonb_set(d, '{heads}',
	       (SELECT jsonb_agg(CASE WHEN h->>'chain' = (SELECT max(chain_id)::text FROM tool_audit.tool_calls)
	                              THEN jsonb_set(h, '{position}', to_jsonb((h->>'position')::bigint + 30)) ELSE h END)
	          FROM jsonb_array_elements(d->'heads') h)) AS d
	  FROM (SELECT tool_audit.digest() AS d) x;
	UPDATE pg_trigger SET tgenabled = 'D' WHERE tgname = 'tool_calls_before_insert'});
$node->safe_psql('ordered', q{
	INSERT INTO tool_audit.tool_calls
	SELECT (jsonb_populate_record(t, jsonb_build_object(
	        'id', nextval('tool_audit.tool_calls_id_seq'), 'event_id', gen_random_uuid(), 'tool_name', n,
	        'chain_id', c, 'chain_lane', NULL, 'chain_seq', NULL))).*
	  FROM tool_audit.tool_calls t,
	       (VALUES ('no_lane', 9000000000000000000), ('no_chain', NULL)) v(n, c)
	 WHERE tenant_id = 'vp_09' AND chain_seq = 1;
	UPDATE pg_trigger SET tgenabled = 'A' WHERE tgname = 'tool_calls_before_insert'});
my $digest_rows = q{SELECT string_agg(concat_ws('|', position, row_id, problem), E'\n' ORDER BY o)
	FROM tool_audit.verify_digest((SELECT d FROM past_end)) WITH ORDINALITY v(table_name, chain, position, row_id, problem, o)
	WHERE table_name = 'tool_calls'};
my $serial_digest = $node->safe_psql('ordered', $ser . $digest_rows);
like($serial_digest, qr/row not in a chain.*\n.*row not in a chain.*\n.*lane ends/,
	'the serial walk: the two rows not in a chain, then the head past the lane\'s end');
is($node->safe_psql('ordered', $par . $digest_rows), $serial_digest,
	'the parallel walk: the same, in the same order');

# cancelled halfway: no worker left, the session goes on
my ($stdout, $stderr);
$node->psql('postgres', $par . q{SET statement_timeout = '30ms'; SELECT count(*) FROM tool_audit.verify();
	RESET statement_timeout; SELECT 'after'},
	stdout => \$stdout, stderr => \$stderr, on_error_stop => 0);
like($stderr, qr/canceling statement due to statement timeout/, 'the run is cancelled');
like($stdout, qr/after/, 'the session goes on');
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'parallel worker'}),
	'no parallel worker is left');

# no worker to be had: the leader walks every part
$node->append_conf('postgresql.conf', "max_worker_processes = 0\n");
$node->restart;
my $offset = -s $node->logfile;
is($node->safe_psql('postgres', $par . q{SET log_min_messages = debug1; } . $rows), $serial,
	'no worker launched: the same problems');
like(slurp_file($node->logfile, $offset), qr/verification of tool_calls: 13 parts, 0 parallel workers launched/,
	'the leader walked the parts alone');

$node->stop;
done_testing();
