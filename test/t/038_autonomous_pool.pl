# The pool of autonomous workers (preloaded): a worker stays and takes the
# next autonomous write of the same database and login role; each write is
# made with its own caller's identity and settings, never with those a
# previous caller left in the worker (SET ROLE, SET SESSION AUTHORIZATION,
# a setting that changes the row); another login role gets a worker of its
# own, within tool_audit.max_autonomous_workers, and a login role that
# stops being a superuser a new one; a worker killed during a
# write is an error for its caller, with no row; a caller cancelled during a
# write takes its worker down, with no row; DROP DATABASE does not find idle
# workers in its way; the server stops without terminating a worker.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('autonomous_pool');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tool_audit'
max_worker_processes = 12
tool_audit.max_autonomous_workers = 2
});
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION tool_audit;
	ALTER DATABASE postgres SET tool_audit.test_database = on;
	CREATE ROLE pool_login LOGIN IN ROLE tool_audit_writer;
	CREATE ROLE pool_other LOGIN IN ROLE tool_audit_writer;
	CREATE ROLE pool_third LOGIN IN ROLE tool_audit_writer;
	CREATE ROLE pool_nologin IN ROLE tool_audit_writer;
	GRANT pool_nologin TO pool_login;
});

my $workers = q{SELECT string_agg(usename || ':' || pid, ',' ORDER BY usename, pid) FROM pg_stat_activity
	WHERE backend_type = 'tool_audit autonomous write'};

sub write_as
{
	my ($user, $setup, $tool, $ctx) = @_;
	$ctx //= '{"autonomous": true}';
	return $node->safe_psql('postgres',
		qq{$setup
		   SELECT (tool_audit.log_call('$tool', '{}', '{}', 1, '$ctx')).recorded_by;},
		extra_params => [ '-U', $user ]);
}

# one worker, kept: the second write of another session is taken by it
is(write_as('postgres', '', 'pool_first'), 'postgres', 'a pooled write records its caller');
my $w1 = $node->safe_psql('postgres', $workers);
like($w1, qr/^postgres:\d+$/, "one worker, logged in as the caller's login role ($w1)");

# the previous caller's identity and settings do not stay in the worker
is(write_as('postgres', q{SET tool_audit.test_clock_offset = '10 days'; SET application_name = 'pool_leak'; SET ROLE pool_nologin;}, 'pool_a',
	'{"autonomous": true, "tenant_id": "pool_clock"}'),
	'pool_nologin', 'SET ROLE: recorded as the role set');
is(write_as('postgres', '', 'pool_b'), 'postgres', 'the next caller, without SET ROLE: recorded as itself');
is(write_as('postgres', q{SET SESSION AUTHORIZATION pool_other;}, 'pool_c'),
	'pool_other', 'SET SESSION AUTHORIZATION: recorded as the session role');
is(write_as('postgres', '', 'pool_d'), 'postgres', 'the next caller: recorded as itself again');
is($node->safe_psql('postgres', q{
	SELECT string_agg(tool_name || '=' || (recorded_at < now() - interval '9 days'), ',' ORDER BY tool_name)
	  FROM tool_audit.tool_calls WHERE tool_name IN ('pool_a', 'pool_b', 'pool_d')}),
	'pool_a=true,pool_b=false,pool_d=false', "a setting of one caller (test clock offset) is not the next caller's");
is($node->safe_psql('postgres', $workers), $w1, 'all these writes were taken by the same worker');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity
	WHERE backend_type = 'tool_audit autonomous write' AND application_name = 'pool_leak'}),
	'0', "the worker does not keep a caller's application_name");

# a request larger than the worker's buffer in shared memory (32 kB) goes
# through a segment of its own, to the same worker
is($node->safe_psql('postgres', q{
	SELECT (tool_audit.log_call('pool_big', jsonb_build_object('text', repeat('word ', 20000)), '{}', 1,
	        '{"autonomous": true}')).recorded_by}),
	'postgres', 'a 100 kB request is written');
is($node->safe_psql('postgres', q{SELECT length(arguments->>'text') FROM tool_audit.tool_calls WHERE tool_name = 'pool_big'}),
	'100000', 'whole');
is($node->safe_psql('postgres', $workers), $w1, 'by the same worker');

# another login role: a worker of its own, and it cannot write as another
is(write_as('pool_login', '', 'pool_e'), 'pool_login', 'another login role writes as itself');
is(write_as('pool_login', 'SET ROLE pool_nologin;', 'pool_f'), 'pool_nologin', 'and as a role it may SET');
my ($ret, $out, $err) = $node->psql('postgres',
	q{SET SESSION AUTHORIZATION postgres; SELECT 1},
	extra_params => [ '-U', 'pool_login' ]);
like($err, qr/permission denied/, 'a writer cannot become the superuser whose worker is idle');
my $w2 = $node->safe_psql('postgres', $workers);
like($w2, qr/^pool_login:\d+,postgres:\d+$/, "two workers, one per login role ($w2)");
# a third login role: the pool is full (2): an idle worker makes room
is(write_as('pool_third', '', 'pool_g'), 'pool_third', 'a third login role writes, the pool full');
my $w3 = $node->safe_psql('postgres', $workers);
$node->poll_query_until('postgres', "SELECT count(*) <= 2 FROM pg_stat_activity WHERE backend_type = 'tool_audit autonomous write'")
  or die 'more than two workers';
like($node->safe_psql('postgres', $workers), qr/pool_third:\d+/, "the third has a worker, two at most ($w3)");

# the setting lowered: the idle workers past it leave
is(write_as('postgres', 'SET tool_audit.max_autonomous_workers = 1;', 'pool_lowered'), 'postgres',
	'a write with tool_audit.max_autonomous_workers lowered to 1');
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'tool_audit autonomous write'"),
	'the other idle worker left: one worker');

# a login role that stops being a superuser: no worker logged in while it
# was one (and so allowed SET SESSION AUTHORIZATION) takes its writes
$node->safe_psql('postgres', 'ALTER ROLE pool_other SUPERUSER');
is(write_as('pool_other', '', 'pool_su'), 'pool_other', 'a write while the login role is a superuser');
my $su_pid = $node->safe_psql('postgres', q{SELECT pid FROM pg_stat_activity
	WHERE backend_type = 'tool_audit autonomous write' AND usename = 'pool_other'});
$node->safe_psql('postgres', 'ALTER ROLE pool_other NOSUPERUSER');
is(write_as('pool_other', '', 'pool_nosu'), 'pool_other', 'a write once it is not');
is($node->safe_psql('postgres', qq{SELECT count(*) FROM pg_stat_activity
	WHERE backend_type = 'tool_audit autonomous write' AND usename = 'pool_other' AND pid <> $su_pid}),
	'1', 'taken by another worker than the one started while it was a superuser');

# a worker killed during a write: an error for its caller, no row
sub bg_psql
{
	my ($sql, $user) = @_;
	my %s = (in => "$sql\n", out => '', err => '');
	$s{h} = IPC::Run::start(
		[ 'psql', '-XAtq', '-d', $node->connstr('postgres'), '-U', $user // 'postgres' ],
		'<', \$s{in}, '>', \$s{out}, '2>', \$s{err});
	$s{h}->pump_nb while length $s{in};
	return \%s;
}

sub blocked_write
{
	my ($tool, $setup) = @_;
	my $blocker = bg_psql(q{
SET application_name = 'pool_blocker';
BEGIN;
LOCK TABLE tool_audit.tool_calls IN EXCLUSIVE MODE;
SELECT pg_sleep(120);
});
	$node->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'pool_blocker' AND query LIKE '%pg_sleep%'})
	  or die 'the blocker never took its lock';
	my $caller = bg_psql(qq{$setup
SELECT (tool_audit.log_call('$tool', '{}', '{}', 1, '{"autonomous": true}')).success;});
	$node->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'tool_audit autonomous write' AND wait_event_type = 'Lock'})
	  or die 'the worker never waited';
	return ($blocker, $caller);
}

my ($blocker, $caller) = blocked_write('pool_killed', '');
$node->safe_psql('postgres',
	q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'tool_audit autonomous write' AND wait_event_type = 'Lock'});
$caller->{h}->finish;
like($caller->{err}, qr/ended without a result/, 'a worker killed during a write: an error for its caller');
$node->safe_psql('postgres',
	q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pool_blocker'});
eval { $blocker->{h}->finish };

# a caller cancelled (statement_timeout) during a write: its worker goes, no row
($blocker, $caller) = blocked_write('pool_cancelled', q{SET statement_timeout = '3s';});
$caller->{h}->finish;
like($caller->{err}, qr/statement timeout/, 'a caller timed out during a write');
$node->poll_query_until('postgres',
	q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'tool_audit autonomous write' AND wait_event_type = 'Lock'})
  or die 'the worker of a cancelled caller stayed';
pass('the worker of a cancelled caller is gone');
$node->safe_psql('postgres',
	q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pool_blocker'});
eval { $blocker->{h}->finish };
is($node->safe_psql('postgres',
	q{SELECT count(*) FROM tool_audit.tool_calls WHERE tool_name IN ('pool_killed', 'pool_cancelled')}),
	'0', 'neither the killed nor the cancelled write stored a row');
is(write_as('postgres', '', 'pool_after'), 'postgres', 'writes go on after that');

# DROP DATABASE: the idle workers of the database leave
$node->safe_psql('postgres', 'CREATE DATABASE pool_db');
$node->safe_psql('pool_db', q{CREATE EXTENSION tool_audit;
	SELECT tool_audit.log_call('pool_db', '{}', '{}', 1, '{"autonomous": true}');});
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity
	WHERE backend_type = 'tool_audit autonomous write' AND datname = 'pool_db'}), '1', 'a worker in another database');
my ($dret, $dout, $derr) = $node->psql('postgres', 'DROP DATABASE pool_db');
is($dret, 0, "DROP DATABASE with an idle worker in it succeeds $derr");

is($node->safe_psql('postgres', 'SELECT count(*) FROM tool_audit.verify()'), '0', 'verify() is clean');
my $offset = -s $node->logfile;
$node->stop;
my $log = slurp_file($node->logfile, $offset);
unlike($log, qr/terminating background worker/, 'the server stopped without terminating a worker');
unlike($log, qr/PANIC|TRAP/, 'no crash');
done_testing();
