# The periodic alert checks as a real pg_cron job (issue 13): a server with
# pg_cron preloaded, schedule_alert_checks() called by a login admin that is
# not a superuser, and the job, started by pg_cron on a short schedule (not
# called by the test), raising tenant_silent for a tenant that logged on 5
# of the last 7 days and not since, and signing_key_missing for a signing
# key file that cannot be read; scheduling and unscheduling audited, and
# unscheduling gated by dual approval when it is required.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('alertcron');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tool_audit,pg_cron'
cron.database_name = 'postgres'
cron.host = '@{[ $node->host ]}'
tool_audit.signing_key_file = '@{[ $node->basedir ]}/no_such_key.pem'
});
$node->start;

my $cron_version = $node->safe_psql('postgres', q{
	CREATE EXTENSION pg_cron;
	CREATE EXTENSION tool_audit;
	SELECT extversion FROM pg_extension WHERE extname = 'pg_cron';
});
my $short = ($cron_version =~ /^1\.[0-4]\b/) ? '* * * * *' : '2 seconds';

$node->safe_psql('postgres', q{
	CREATE ROLE alert_job LOGIN IN ROLE tool_audit_admin;
	-- a tenant that logged on 5 of the last 7 days and not for a day; and one
	-- that logs now
	INSERT INTO tool_audit.tenant_activity (tenant_id, day, calls, last_at)
	SELECT 'quiet_co', (now() AT TIME ZONE 'UTC')::date - d, 500, now() - d * interval '1 day'
	  FROM generate_series(1, 5) d;
	INSERT INTO tool_audit.tenant_activity (tenant_id, day, calls, last_at)
	SELECT 'busy_co', (now() AT TIME ZONE 'UTC')::date - d, 500, now() - d * interval '1 day'
	  FROM generate_series(1, 6) d;
	SELECT tool_audit.log_call('get_weather', '{}', '{}', 1, '{"tenant_id": "busy_co"}');
});

my @as_job = (extra_params => [ '-U', 'alert_job' ]);
my $jobid = $node->safe_psql('postgres', "SELECT tool_audit.schedule_alert_checks('$short')", @as_job);
like($jobid, qr/^\d+$/, 'schedule_alert_checks() returns the job id');
is($node->safe_psql('postgres', qq{
	SELECT jobname || ' | ' || command || ' | ' || username FROM cron.job WHERE jobid = $jobid}),
	'tool_audit alert checks in postgres | SELECT tool_audit.run_alert_checks() | alert_job',
	'the job runs run_alert_checks() in this database, as the caller');
is($node->safe_psql('postgres', q{
	SELECT actor || ' ' || (payload->'after'->>'username')
	  FROM tool_audit.admin_events WHERE event_type = 'tool_audit.alert.schedule'}),
	'alert_job alert_job', 'the scheduling is an audited event (tool_audit.alert.schedule)');

ok($node->poll_query_until('postgres', q{
		SELECT count(*) = 2 FROM tool_audit.alerts
		 WHERE rule_name IN ('tenant_silent', 'signing_key_missing')}),
	'pg_cron ran the checks and they raised their alerts');
is($node->safe_psql('postgres', q{
	SELECT string_agg(rule_name || ' ' || coalesce(tenant_id, '-') || ' ' || severity, ', ' ORDER BY rule_name)
	  FROM tool_audit.alerts WHERE kind = 'check'}),
	'signing_key_missing - high, tenant_silent quiet_co medium',
	'the silent tenant (not the busy one) and the missing key');
like($node->safe_psql('postgres', qq{
	SELECT status || ' | ' || username FROM cron.job_run_details WHERE jobid = $jobid ORDER BY runid LIMIT 1}),
	qr/^succeeded \| alert_job$/, 'the run succeeded, as alert_job (not a superuser)');
# later runs grow the same alerts (one per silence), raise no new ones
ok($node->poll_query_until('postgres', q{
		SELECT min(count) > 1 FROM tool_audit.alerts WHERE kind = 'check'}),
	'later runs grow the same two alerts');
is($node->safe_psql('postgres', q{SELECT count(*) FROM tool_audit.alerts WHERE kind = 'check'}), '2',
	'still two alerts');
is($node->safe_psql('postgres', q{
	SELECT burst_key || ' ' || count FROM tool_audit.alerts WHERE rule_name = 'audit_changes'}),
	'tool_audit.alert.schedule 1', 'the scheduling raised audit_changes');

# with tool_audit.require_dual_approval on, unscheduling needs a second
# admin's approval (1.5)
$node->safe_psql('postgres', q{
	CREATE ROLE alert_bob LOGIN IN ROLE tool_audit_admin;
	ALTER DATABASE postgres SET tool_audit.require_dual_approval = on;
});
my @as_bob = (extra_params => [ '-U', 'alert_bob' ]);
my ($rc, $out, $err) = $node->psql('postgres', 'SELECT tool_audit.unschedule_alert_checks()', @as_job);
like($err, qr/dual approval needed/, 'unschedule_alert_checks() refused without an approved request');
is($node->safe_psql('postgres', q{SELECT count(*) FROM cron.job}), '1', 'the job is still there');
my $req = $node->safe_psql('postgres', q{
	SELECT tool_audit.request_approval('tool_audit.alert_checks.unschedule', '{}', 'maintenance')}, @as_job);
$node->safe_psql('postgres', "SELECT tool_audit.approve($req, 'ok')", @as_bob);
is($node->safe_psql('postgres', 'SELECT tool_audit.unschedule_alert_checks()', @as_job),
	't', 'unschedule_alert_checks(): true');
is($node->safe_psql('postgres', "SELECT state FROM tool_audit.approval_requests WHERE request_id = $req"),
	'consumed', 'the approval is used');
$node->safe_psql('postgres', 'ALTER DATABASE postgres RESET tool_audit.require_dual_approval');
is($node->safe_psql('postgres', q{SELECT count(*) FROM cron.job}), '0', 'no job left');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM tool_audit.admin_events WHERE event_type = 'tool_audit.alert.schedule'}),
	'2', 'unscheduling is audited too');
# the approval is used once: scheduled again, unscheduling is refused again
$node->safe_psql('postgres', "SELECT tool_audit.schedule_alert_checks('\@hourly')", @as_job);
$node->safe_psql('postgres', 'ALTER DATABASE postgres SET tool_audit.require_dual_approval = on');
($rc, $out, $err) = $node->psql('postgres', 'SELECT tool_audit.unschedule_alert_checks()', @as_job);
like($err, qr/dual approval needed.*consumed/, 'a second unscheduling is refused: the approval was used');
is($node->safe_psql('postgres', q{SELECT count(*) FROM cron.job}), '1', 'the job is still there');
$node->safe_psql('postgres', 'ALTER DATABASE postgres RESET tool_audit.require_dual_approval');
is($node->safe_psql('postgres', 'SELECT count(*) FROM tool_audit.verify()'), '0', 'verify() clean');

$node->stop;
done_testing();
