# kill -9 between begin_call() and end_call(): the started row, committed
# by the autonomous worker before begin_call() returned, survives crash
# recovery (even with synchronous_commit = off in the caller's settings),
# verify() is clean, and tool_audit.calls shows the call as never ended,
# its caller's transaction aborted; and without a free worker slot an
# autonomous write is an error (53400).  The caller's own row (a log_call() in
# its transaction) and its change to an application table are gone.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('call_crash');
$node->init;
# asynchronous commits stay unflushed for a while: only the worker's
# synchronous commit can make the started row survive
$node->append_conf('postgresql.conf', qq{
wal_writer_delay = 10000ms
wal_writer_flush_after = 0
synchronous_commit = off
restart_after_crash = on
});
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION tool_audit;
	CREATE TABLE accounts (id int PRIMARY KEY, balance int);
	INSERT INTO accounts VALUES (1, 100);
});

# the caller: begins a call, changes a row, logs in its own transaction,
# then sleeps inside the transaction until it is killed
my ($in, $out, $err) = ('', '', '');
my $h = IPC::Run::start(
	[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres') ],
	'<', \$in, '>', \$out, '2>', \$err);
$in .= q{
SET application_name = 'crash_caller';
BEGIN;
SELECT tool_audit.begin_call('transfer', '{"from": 1}', '{"conversation_id": "crash", "turn_number": 1}');
UPDATE accounts SET balance = balance - 10 WHERE id = 1;
SELECT tool_calls FROM tool_audit.log_call('in_caller_xact', '{}', '{}', 1, '{"conversation_id": "crash"}') AS tool_calls \gset
SELECT 'slept', pg_sleep(600);
};
$h->pump_nb;
$node->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM pg_stat_activity
	   WHERE application_name = 'crash_caller' AND query LIKE '%pg_sleep%' AND state = 'active'})
  or die 'the caller never reached its sleep';
$h->pump_nb until $out =~ /[0-9a-f]{8}-[0-9a-f-]{27}/ || !$h->pumpable;
my ($call) = $out =~ /([0-9a-f]{8}-[0-9a-f-]{27})/;
ok(defined $call, 'begin_call() returned the call id');

my $pid = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE application_name = 'crash_caller'});
ok(kill('KILL', $pid), "kill -9 of the caller's backend $pid");
eval { $h->finish };    # psql lost its server

# the postmaster reinitializes after a backend's crash: crash recovery
$node->poll_query_until('postgres', 'SELECT 1', '1')
  or die 'the server did not come back';

is($node->safe_psql('postgres',
		qq{SELECT call_phase || ' ' || tool_name || ' ' || (caller_txid IS NOT NULL)
		     FROM tool_audit.tool_calls WHERE event_id = '$call'}),
	'started transfer true', 'the started row survived the crash');
is($node->safe_psql('postgres',
		qq{SELECT state || ' ' || coalesce(caller_committed::text, 'unknown') || ' ' || (success IS NULL)
		     FROM tool_audit.calls WHERE call_id = '$call'}),
	'never_ended false true', 'the call shows as never ended, its caller aborted');
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM tool_audit.tool_calls WHERE tool_name = 'in_caller_xact'}),
	'0', "the row written in the caller's transaction is gone");
is($node->safe_psql('postgres', 'SELECT balance FROM accounts'), '100',
	"the caller's change is gone");
is($node->safe_psql('postgres', 'SELECT count(*) FROM tool_audit.verify()'), '0',
	'verify() is clean after recovery');
like($node->safe_psql('postgres', q{SELECT * FROM tool_audit.conversation_timeline('crash')}),
	qr/transfer\(\{"from": 1\}\) \S+ \(never ended\)/, 'the timeline shows the call as never ended');

# the call can still be ended, once, after the restart
is($node->safe_psql('postgres',
		qq{SELECT success FROM tool_audit.end_call('$call', '{"error": "server crashed"}')}),
	'f', 'the call can be ended after recovery');
is($node->safe_psql('postgres',
		qq{SELECT state FROM tool_audit.calls WHERE call_id = '$call'}),
	'ended', 'and then shows as ended');
is($node->safe_psql('postgres', 'SELECT count(*) FROM tool_audit.verify()'), '0',
	'verify() is clean');

# no free worker slot: a loud error, nothing recorded, nothing dropped
# silently (the logical replication launcher takes the only slot)
$node->append_conf('postgresql.conf', 'max_worker_processes = 1');
$node->restart;
my ($rc, $stdout, $stderr) = $node->psql('postgres',
	q{SELECT tool_audit.log_call('no_slot', '{}', '{}', 1, '{"autonomous": true}')},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
isnt($rc, 0, 'an autonomous write without a free worker slot fails');
like($stderr, qr/53400: .*no background worker slot is free/, 'with SQLSTATE 53400');
like($stderr, qr/max_worker_processes/, 'and a hint about max_worker_processes');
is($node->safe_psql('postgres', q{SELECT count(*) FROM tool_audit.tool_calls WHERE tool_name = 'no_slot'}),
	'0', 'and nothing was recorded');

$node->stop;
done_testing();
