# tool_audit.max_autonomous_workers bounds the autonomous writes running at
# once in the cluster.  Two callers whose workers are held up (a third
# session locks tool_calls) take both slots of a cap of 2; a third caller
# waits about a second for a slot and fails with 53400, recording nothing,
# while two background workers at most are ever ours.  Once the lock goes,
# the held-up writes commit.  Then many sessions writing autonomously at once
# against the same cap: every call either stored its row or failed with
# 53400 (never a row silently dropped); and sessions looping on writes, four
# times as many as the slots, are served in turn: none is refused.  Without
# shared_preload_libraries, then with it.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = PostgreSQL::Test::Cluster->new('autonomous_slots');
$node->init;
$node->append_conf('postgresql.conf', qq{
max_worker_processes = 12
tool_audit.max_autonomous_workers = 2
});
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION tool_audit;
	CREATE FUNCTION try_log(n int, tool text) RETURNS text LANGUAGE plpgsql AS $$
	DECLARE
		ok int := 0;
		failed int := 0;
		other text := '';
	BEGIN
		FOR i IN 1..n LOOP
			BEGIN
				PERFORM tool_audit.log_call(tool, '{}', '{}', 1, '{"autonomous": true}');
				ok := ok + 1;
			EXCEPTION WHEN configuration_limit_exceeded THEN
				failed := failed + 1;
			WHEN OTHERS THEN
				other := other || SQLSTATE || ' ';
			END;
		END LOOP;
		RETURN format('ok=%s busy=%s other=%s', ok, failed, other);
	END $$;
});

my $ours = q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'tool_audit autonomous write'};
my $slots = q{SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = 0 AND objsubid = 21591};

sub bg_psql
{
	my ($sql) = @_;
	my %s = (in => "$sql\n", out => '', err => '');
	$s{h} = IPC::Run::start(
		[ 'psql', '-XAtq', '-d', $node->connstr('postgres') ],
		'<', \$s{in}, '>', \$s{out}, '2>', \$s{err});
	$s{h}->pump_nb while length $s{in};
	return \%s;
}

sub phase
{
	my ($label) = @_;

	# the blocker: holds tool_calls so that a worker's insert waits (up to
	# its lock_timeout, 5 s)
	my $blocker = bg_psql(q{
SET application_name = 'slots_blocker';
BEGIN;
LOCK TABLE tool_audit.tool_calls IN EXCLUSIVE MODE;
SELECT pg_sleep(120);
});
	$node->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'slots_blocker' AND query LIKE '%pg_sleep%'})
	  or die 'the blocker never took its lock';

	my @held = map {
		bg_psql(qq{SELECT (tool_audit.log_call('held_$label', '{}', '{}', 1, '{"autonomous": true}')).success;})
	} 1 .. 2;
	$node->poll_query_until('postgres', "$slots", '2')
	  or die 'the two held-up writes never took their slots';

	my $t0 = time;
	my ($ret, $stdout, $stderr) = $node->psql('postgres',
		qq{SELECT tool_audit.log_call('refused_$label', '{}', '{}', 1, '{"autonomous": true}')},
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	my $waited = time - $t0;
	isnt($ret, 0, "$label: a third autonomous write fails while two hold both slots");
	like($stderr, qr/53400: tool_audit\.log_call\(\) could not start its autonomous write: all 2 autonomous workers are busy/,
		"$label: with 53400, naming the bound");
	like($stderr, qr/Nothing was recorded/, "$label: saying nothing was recorded");
	cmp_ok($waited, '>=', 1.0, "$label: after waiting a second for a slot (${waited}s)");
	cmp_ok($node->safe_psql('postgres', $ours), '<=', 2, "$label: two workers of ours at most");

	# the blocker goes: the held-up writes commit
	$node->safe_psql('postgres',
		q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'slots_blocker'});
	eval { $blocker->{h}->finish };
	for my $s (@held)
	{
		$s->{h}->finish;
		is($s->{out}, "t\n", "$label: a held-up write committed once the lock went") or diag($s->{err});
	}
	is($node->safe_psql('postgres',
			qq{SELECT count(*) FILTER (WHERE tool_name = 'held_$label') || ' ' || count(*) FILTER (WHERE tool_name = 'refused_$label')
			     FROM tool_audit.tool_calls}),
		'2 0', "$label: the two held-up rows are stored, the refused one is not");
	is($node->safe_psql('postgres', $slots), '0', "$label: no slot is left held");

	# many sessions at once: each call stored or refused loudly
	my @many = map { bg_psql(qq{SELECT try_log(10, 'many_$label');}) } 1 .. 6;
	my ($ok, $busy) = (0, 0);
	for my $s (@many)
	{
		$s->{h}->finish;
		if ($s->{out} =~ /^ok=(\d+) busy=(\d+) other=$/m)
		{
			$ok += $1;
			$busy += $2;
		}
		else
		{
			fail("$label: a session's writes: $s->{out} $s->{err}");
		}
	}
	is($ok + $busy, 60, "$label: 60 autonomous writes from 6 sessions: $ok stored, $busy refused with 53400, no other error");
	is($node->safe_psql('postgres', qq{SELECT count(*) FROM tool_audit.tool_calls WHERE tool_name = 'many_$label'}),
		$ok, "$label: every write reported stored is stored");
	is($node->safe_psql('postgres', 'SELECT count(*) FROM tool_audit.verify()'), '0', "$label: verify() is clean");

	# in turn: sessions looping on autonomous writes, four times as many as the
	# slots, each waiting far less than the second a caller waits as first in
	# line; a caller that has just given its slot back queues behind those
	# already waiting instead of taking it again, so nobody waits out the second
	my $n = $label eq 'plain' ? 40 : 300;
	my @turn = map { bg_psql(qq{SELECT try_log($n, 'turn_$label');}) } 1 .. 8;
	($ok, $busy) = (0, 0);
	my $t_turn = time;
	for my $s (@turn)
	{
		$s->{h}->finish;
		if ($s->{out} =~ /^ok=(\d+) busy=(\d+) other=$/m)
		{
			$ok += $1;
			$busy += $2;
		}
		else
		{
			fail("$label: a session's writes in turn: $s->{out} $s->{err}");
		}
	}
	is("$ok $busy", 8 * $n . ' 0', sprintf("$label: %d autonomous writes from 8 sessions on 2 slots, none refused (%.1f s)", 8 * $n, time - $t_turn));
}

phase('plain');
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'tool_audit'");
$node->restart;
phase('preloaded');

$node->stop;
done_testing();
