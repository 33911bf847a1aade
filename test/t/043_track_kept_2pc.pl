# Tracked changes and two-phase commit (1.5, issue 14: track_write.c keeps
# data_changes and its indexes open for the transaction and closes them
# before commit and before PREPARE TRANSACTION).  With the library
# preloaded and without: a prepared transaction of tracked changes commits
# its change rows (COMMIT PREPARED, from another session) or leaves none
# (ROLLBACK PREPARED); the server log has no resource leak warning ("relcache
# reference leak", "resource was not closed"); verify() finds nothing; and
# the same session goes on writing change rows after its PREPARE.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

for my $preload (1, 0)
{
	my $label = $preload ? 'preloaded' : 'not preloaded';
	my $node = PostgreSQL::Test::Cluster->new($preload ? 'kept_pre' : 'kept_plain');
	$node->init;
	$node->append_conf('postgresql.conf',
		"max_prepared_transactions = 4\n"
		  . ($preload ? "shared_preload_libraries = 'tool_audit'\n" : ''));
	$node->start;
	$node->safe_psql('postgres', q{
CREATE EXTENSION tool_audit;
CREATE TABLE public.acct (id integer PRIMARY KEY, balance integer);
INSERT INTO public.acct SELECT i, 0 FROM generate_series(1, 10) i;
SELECT tool_audit.track('public.acct');
});
	my $log_start = -s $node->logfile;

	# several change rows, prepared, committed from another session
	my ($ret, $out, $err) = $node->psql('postgres', q{
BEGIN;
UPDATE public.acct SET balance = 1 WHERE id = 1;
UPDATE public.acct SET balance = 1 WHERE id = 2;
UPDATE public.acct SET balance = 1 WHERE id = 3;
PREPARE TRANSACTION 'kept_a';
UPDATE public.acct SET balance = 2 WHERE id = 4;
});
	is($ret, 0, "$label: PREPARE TRANSACTION after tracked changes");
	is($err, '', "$label: no warning from the session");
	is($node->safe_psql('postgres', q{SELECT count(*) FROM tool_audit.data_changes
 WHERE row_key IN ('{"id": 1}', '{"id": 2}', '{"id": 3}')}),
		'0', "$label: prepared change rows not visible before COMMIT PREPARED");
	$node->safe_psql('postgres', "COMMIT PREPARED 'kept_a'");
	is($node->safe_psql('postgres', q{SELECT string_agg(row_key::text || new_values::text, ' ' ORDER BY id)
  FROM tool_audit.data_changes}),
		'{"id": 1}{"balance": 1} {"id": 2}{"balance": 1} {"id": 3}{"balance": 1} {"id": 4}{"balance": 2}',
		"$label: COMMIT PREPARED stores the prepared change rows, the session's next one too");

	# prepared, rolled back: no change row
	($ret, $out, $err) = $node->psql('postgres', q{
BEGIN;
UPDATE public.acct SET balance = 9 WHERE id = 5;
UPDATE public.acct SET balance = 9 WHERE id = 6;
PREPARE TRANSACTION 'kept_b';
});
	is($ret, 0, "$label: second PREPARE TRANSACTION");
	$node->safe_psql('postgres', "ROLLBACK PREPARED 'kept_b'");
	is($node->safe_psql('postgres', q{SELECT count(*) FROM tool_audit.data_changes
 WHERE new_values = '{"balance": 9}'}),
		'0', "$label: ROLLBACK PREPARED leaves no change row");

	# and the chain is whole
	is($node->safe_psql('postgres', q{SELECT count(*) FROM tool_audit.verify()}),
		'0', "$label: verify() finds nothing");
	my $log = slurp_file($node->logfile, $log_start);
	unlike($log, qr/leak|was not closed|WARNING/, "$label: no leak warning in the server log");
	$node->stop;
}

done_testing();
