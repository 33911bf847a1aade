# The purge as a real pg_cron job (issue 11): a server with pg_cron
# preloaded, schedule_retention() called by a login admin that is not a
# superuser, and the job, started by pg_cron on a short schedule (not called
# by the test), purging the expired rows and leaving verify() clean.  In a
# second database, where pg_cron is not installed, schedule_retention() is
# refused (55000) with a hint whose command, run in pg_cron's database as it
# says, schedules a job that purges that database too.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('cron');
$node->init;
# pg_cron connects through libpq (its default) to the socket directory
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tool_audit,pg_cron'
cron.database_name = 'postgres'
cron.host = '@{[ $node->host ]}'
});
$node->start;

my $cron_version = $node->safe_psql('postgres', q{
	CREATE EXTENSION pg_cron;
	CREATE EXTENSION tool_audit;
	SELECT extversion FROM pg_extension WHERE extname = 'pg_cron';
});
note "pg_cron $cron_version";
# pg_cron 1.5 and later run jobs every few seconds; 1.4 every minute at the
# shortest
my $short = ($cron_version =~ /^1\.[0-4]\b/) ? '* * * * *' : '2 seconds';

# the job's role: an admin that can log in, and nothing more
$node->safe_psql('postgres', q{
	CREATE ROLE retention_job LOGIN IN ROLE tool_audit_admin;
	CREATE DATABASE other;
});

# each database: 30 calls a year and a bit old (expired under "general", 365
# days), then 5 new ones.  The old ones are written under the test clock
# (tool_audit.test_clock_offset, in a database marked as a test database)
# where the extension has it; else brought by a restore (tool_audit.restoring:
# a superuser's rows that bring their id and time).
my $has_clock = $node->safe_psql('postgres',
	"SELECT count(*) FROM pg_settings WHERE name = 'tool_audit.test_clock_offset'");
note $has_clock ? 'rows aged with the test clock' : 'rows aged as restored rows';
my $old_calls = $has_clock
  ? q{
		SET tool_audit.test_clock_offset = '400 days';
		SELECT tool_audit.log_call('get_weather', '{"city": "Oslo"}', '{"ok": true}', 3,
		                           jsonb_build_object('tenant_id', 'acme', 'conversation_id', 'conv_old',
		                                              'user_id', 'usr_' || i))
		  FROM generate_series(1, 30) i;
		RESET tool_audit.test_clock_offset;}
  : q{
		SET tool_audit.restoring = on;
		INSERT INTO tool_audit.tool_calls
		    (id, recorded_at, tool_name, tenant_id, conversation_id, user_id, arguments, success)
		SELECT nextval('tool_audit.tool_calls_id_seq'),
		       now() - interval '400 days' + i * interval '1 minute',
		       'get_weather', 'acme', 'conv_old', 'usr_' || i, jsonb_build_object('city', 'Oslo'), true
		  FROM generate_series(1, 30) i;
		RESET tool_audit.restoring;};
sub fill
{
	my ($db) = @_;
	$node->safe_psql($db, 'CREATE EXTENSION IF NOT EXISTS tool_audit');
	$node->safe_psql($db, "ALTER DATABASE $db SET tool_audit.test_database = on") if $has_clock;
	$node->safe_psql($db, $old_calls . q{
		SELECT tool_audit.log_call('get_weather', '{"city": "Bergen"}', '{"ok": true}', 3,
		                           jsonb_build_object('tenant_id', 'acme', 'conversation_id', 'conv_new'))
		  FROM generate_series(1, 5);
	});
	is($node->safe_psql($db, q{
		SELECT count(*) FILTER (WHERE conversation_id = 'conv_old') || '/' || count(*)
		  FROM tool_audit.tool_calls}), '30/35', "$db: 30 old calls out of 35");
	is($node->safe_psql($db, 'SELECT count(*) FROM tool_audit.verify()'), '0',
		"$db: verify() clean before the purge");
}
fill('postgres');
fill('other');

# scheduled by the job's role itself: the job runs as that role
my @as_job = (extra_params => [ '-U', 'retention_job' ]);
my $jobid = $node->safe_psql('postgres',
	"SELECT tool_audit.schedule_retention('$short')", @as_job);
like($jobid, qr/^\d+$/, 'schedule_retention() returns the job id');
is($node->safe_psql('postgres', qq{
	SELECT jobname || ' | ' || schedule || ' | ' || command || ' | ' || database || ' | ' || username || ' | ' || active
	  FROM cron.job WHERE jobid = $jobid}),
	"tool_audit retention in postgres | $short | SELECT tool_audit.purge_expired() | postgres | retention_job | true",
	'the job is registered with pg_cron: purge_expired() in this database, as the caller');
is($node->safe_psql('postgres', q{
	SELECT actor || ' | ' || (payload->'before')::text || ' | ' || (payload->'after'->>'job_id') || ' | ' ||
	       (payload->'after'->>'username')
	  FROM tool_audit.admin_events WHERE event_type = 'tool_audit.retention.schedule'}),
	"retention_job | [] | $jobid | retention_job",
	'the scheduling is an audited event (tool_audit.retention.schedule)');

# the second database: pg_cron is not installed there
my ($ret, $out, $err) = $node->psql('other',
	"\\set VERBOSITY verbose\nSELECT tool_audit.schedule_retention('$short')", @as_job);
isnt($ret, 0, 'other database: schedule_retention() refused');
like($err, qr/ERROR:  55000: pg_cron is installed in database postgres, not in this one/,
	'other database: 55000, naming pg_cron\'s database');
my ($hint) = $err =~ /HINT:  In database postgres, as a superuser, run: (.*)$/m;
is($hint,
	"SELECT cron.schedule_in_database('tool_audit retention in other', '$short', "
	  . "'SELECT tool_audit.purge_expired()', 'other', 'retention_job');",
	'other database: the hint is the exact command to run in pg_cron\'s database');
is($node->safe_psql('other',
	"SELECT count(*) FROM tool_audit.admin_events WHERE event_type LIKE 'tool_audit.retention.%'"),
	'0', 'other database: the refusal wrote no event');
# run as the hint says
my $other_jobid = $node->safe_psql('postgres', $hint);
like($other_jobid, qr/^\d+$/, 'the hint\'s command schedules the other database\'s job');

# wait for pg_cron to run both jobs
for my $j ([ $jobid, 'postgres' ], [ $other_jobid, 'other' ])
{
	my ($id, $db) = @$j;
	ok( $node->poll_query_until('postgres', qq{
			SELECT count(*) > 0 FROM cron.job_run_details
			 WHERE jobid = $id AND status IN ('succeeded', 'failed')}),
		"$db: pg_cron ran the job");
	my $run = $node->safe_psql('postgres', qq{
		SELECT status || ' | ' || username || ' | ' || database || ' | ' || return_message
		  FROM cron.job_run_details WHERE jobid = $id ORDER BY runid LIMIT 1});
	like($run, qr/^succeeded \| retention_job \| $db \| /,
		"$db: the run succeeded, as retention_job (not a superuser), in $db")
	  or diag($run);
}

for my $db ('postgres', 'other')
{
	is($node->safe_psql($db, q{
		SELECT count(*) FILTER (WHERE conversation_id = 'conv_old') || '/' || count(*)
		  FROM tool_audit.tool_calls}), '0/5', "$db: the expired calls were purged, the new ones kept");
	is($node->safe_psql($db, q{
		SELECT count(*) > 0 AND every(actor = 'retention_job') AND max((payload->>'rows')::int) = 30
		  FROM tool_audit.admin_events WHERE event_type = 'tool_audit.retention.purge'}),
		't', "$db: the purge of the 30 rows is recorded (tool_audit.retention.purge), by the job's role");
	is($node->safe_psql($db, 'SELECT count(*) FROM tool_audit.verify()'), '0',
		"$db: verify() clean after the purge");
}

# scheduling again replaces the job; unscheduling removes it, audited
my $jobid2 = $node->safe_psql('postgres', "SELECT tool_audit.schedule_retention()", @as_job);
is($node->safe_psql('postgres', q{
	SELECT string_agg(jobid || ' ' || schedule, ', ') FROM cron.job WHERE database = 'postgres'}),
	"$jobid2 0 3 * * *", 'scheduling again replaces the job (one per database), nightly by default');
is($node->safe_psql('postgres', q{
	SELECT (payload->'before'->0->>'job_id') || ' ' || (payload->'after'->>'schedule')
	  FROM tool_audit.admin_events WHERE event_type = 'tool_audit.retention.schedule'
	 ORDER BY id DESC LIMIT 1}),
	"$jobid 0 3 * * *", 'its event names the job it replaced');
# with tool_audit.require_dual_approval on, unscheduling (which stops the
# purge) needs a second admin's approval, used once (1.5, issue 12)
$node->safe_psql('postgres', q{
	CREATE ROLE retention_bob LOGIN IN ROLE tool_audit_admin;
	ALTER DATABASE postgres SET tool_audit.require_dual_approval = on;
});
my @as_bob = (extra_params => [ '-U', 'retention_bob' ]);
my ($rc, $out, $err) = $node->psql('postgres', 'SELECT tool_audit.unschedule_retention()', @as_job);
like($err, qr/dual approval needed/, 'dual approval on: unschedule_retention() refused without an approved request');
is($node->safe_psql('postgres', q{SELECT count(*) FROM cron.job WHERE database = 'postgres'}),
	'1', 'the job is still there');
my $req = $node->safe_psql('postgres', q{
	SELECT tool_audit.request_approval('tool_audit.retention.unschedule', '{}', 'maintenance')}, @as_job);
($rc, $out, $err) = $node->psql('postgres', "SELECT tool_audit.approve($req, 'self')", @as_job);
like($err, qr/ERROR/, 'the requester cannot approve its own request');
($rc, $out, $err) = $node->psql('postgres', 'SELECT tool_audit.unschedule_retention()', @as_job);
like($err, qr/dual approval needed/, 'a pending request is not enough');
$node->safe_psql('postgres', "SELECT tool_audit.approve($req, 'ok')", @as_bob);
is($node->safe_psql('postgres', 'SELECT tool_audit.unschedule_retention()', @as_job),
	't', 'unschedule_retention(): true');
is($node->safe_psql('postgres', "SELECT state FROM tool_audit.approval_requests WHERE request_id = $req"),
	'consumed', 'the approval is used');
# used once: scheduled again, unscheduling is refused again
my $jobid3 = $node->safe_psql('postgres', "SELECT tool_audit.schedule_retention()", @as_job);
($rc, $out, $err) = $node->psql('postgres', 'SELECT tool_audit.unschedule_retention()', @as_job);
like($err, qr/dual approval needed/, 'a second unscheduling is refused: the approval was used');
$node->safe_psql('postgres', 'ALTER DATABASE postgres RESET tool_audit.require_dual_approval');
is($node->safe_psql('postgres', 'SELECT tool_audit.unschedule_retention()', @as_job),
	't', 'dual approval off: unschedule_retention() needs none');
$jobid2 = $jobid3;
is($node->safe_psql('postgres', q{SELECT count(*) FROM cron.job WHERE database = 'postgres'}),
	'0', 'no job left');
is($node->safe_psql('postgres', q{
	SELECT (payload->'before'->0->>'job_id') || ' ' || coalesce(payload->>'after', 'null')
	  FROM tool_audit.admin_events WHERE event_type = 'tool_audit.retention.schedule'
	 ORDER BY id DESC LIMIT 1}),
	"$jobid2 null", 'unscheduling is audited (before: the job, after: null)');
is($node->safe_psql('postgres', 'SELECT tool_audit.unschedule_retention()', @as_job),
	'f', 'unschedule_retention() again: false');
is($node->safe_psql('postgres', 'SELECT count(*) FROM tool_audit.verify()'), '0',
	'verify() clean at the end');

$node->stop;
done_testing();
