# Alerts leaving the database (issue 13): a real LISTEN client receives the
# NOTIFY payload of an alert after its commit (and nothing for a rolled-back
# one, nor one rolled back to a savepoint; a prepared transaction's alert is
# found by polling), and forwarder/alert_forwarder.py delivers every alert to a local
# webhook (Slack's shape, then Google Chat's) across a database restart, a
# webhook failing, and a restart of the forwarder itself, with nothing lost
# and nothing posted twice, and a burst that grows tenfold posted again,
# once.  Needs Debian's python3-psycopg (skipped
# without it).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run qw(start);
use Time::HiRes qw(usleep);

my $python = '/usr/bin/python3';
if (system("$python -c 'import psycopg' >/dev/null 2>&1") != 0)
{
	plan skip_all => 'python3-psycopg (psycopg 3) is not installed';
}
my $dir = "$ENV{TESTDIR}/forwarder";

my $node = PostgreSQL::Test::Cluster->new('forwarder');
$node->init;
$node->append_conf('postgresql.conf', 'max_prepared_transactions = 2');
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION tool_audit;
	CREATE ROLE alert_forwarder LOGIN IN ROLE tool_audit_reader;
	CREATE ROLE app_writer LOGIN IN ROLE tool_audit_writer;
});
my $dsn_for = sub { my ($user) = @_; $node->connstr('postgres') . " user=$user" };

sub wait_for
{
	my ($what, $check, $secs) = @_;
	$secs //= 60;
	for (1 .. $secs * 10)
	{
		return 1 if $check->();
		usleep(100_000);
	}
	diag "timed out waiting for $what";
	return 0;
}

sub fire_event
{
	my ($type, $tenant) = @_;
	$node->safe_psql('postgres',
		"SELECT (tool_audit.log_event('$type', 'adm_1', '{}', '{\"tenant_id\": \"$tenant\"}')).id",
		extra_params => [ '-U', 'app_writer' ]);
}

# ---- a real LISTEN client ----
{
	my ($out, $err) = ('', '');
	my $h = start([ $python, "$dir/tests/listen_once.py", $dsn_for->('alert_forwarder') ],
		'>', \$out, '2>', \$err);
	wait_for('the listener', sub { $h->pump_nb; $out =~ /listening/ });
	# a rolled-back alert notifies nothing
	$node->safe_psql('postgres', q{
		BEGIN;
		SELECT tool_audit.log_event('killswitch.enable', 'adm_1', '{}', '{"tenant_id": "acme"}');
		ROLLBACK;
		BEGIN;
		SAVEPOINT s;
		SELECT tool_audit.log_event('killswitch.enable', 'adm_1', '{}', '{"tenant_id": "acme"}');
		ROLLBACK TO SAVEPOINT s;
		COMMIT;});
	$node->safe_psql('postgres',
		q{INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, user_id, success, break_glass, session_metadata)
		  VALUES ('read_chart', 'acme', 'dr_house', true, true, '{"break_glass_reason": "patient unresponsive"}')},
		extra_params => [ '-U', 'app_writer' ]);
	wait_for('the notification', sub { $h->pump_nb; $out =~ /tool_audit_alerts \{/ });
	$h->finish;
	my ($payload) = $out =~ /tool_audit_alerts (\{.*\})/;
	my $id = $node->safe_psql('postgres',
		"SELECT alert_id FROM tool_audit.alerts WHERE rule_name = 'break_glass'");
	is($payload, qq({"alert_id" : $id, "rule_name" : "break_glass", "severity" : "high", "count" : 1, "new" : true}),
		'the LISTEN client received the break-the-glass alert, after commit, and not the rolled-back ones (transaction, savepoint)');
	unlike($payload, qr/acme|dr_house/, 'the payload names no tenant and no user');
}

# ---- the forwarder ----
my $received = "$PostgreSQL::Test::Utils::tmp_check/webhook.jsonl";
my $state = "$PostgreSQL::Test::Utils::tmp_check/forwarder_state.json";
unlink $received;
# the webhook fails its 2nd and 3rd requests: the forwarder must retry
my ($port, $rerr) = ('', '');
my $receiver = start([ $python, "$dir/tests/webhook_receiver.py", $received, '2,3' ],
	'>', \$port, '2>', \$rerr);
wait_for('the webhook', sub { $receiver->pump_nb; $port =~ /^\d+\n/ });
chomp $port;

my $flog_file = "$PostgreSQL::Test::Utils::tmp_check/forwarder.log";
my $forwarder;
sub flog { return slurp_file($flog_file) }
sub start_forwarder
{
	my ($format) = @_;
	$forwarder = start(
		[
			$python, "$dir/alert_forwarder.py", '--dsn', $dsn_for->('alert_forwarder'),
			'--webhook', "http://127.0.0.1:$port/hook", '--format', $format,
			'--state', $state, '--poll', '1', '--max-backoff', '2', '--settle-seconds', '0', '-v'
		],
		'>>', $flog_file, '2>>', $flog_file);
}

sub received_ids
{
	return () unless -e $received;
	open my $fh, '<', $received or die;
	my @ids = map { /alert #(\d+)/ ? $1 : () } <$fh>;
	close $fh;
	return @ids;
}

sub all_ids
{
	return split /\n/, $node->safe_psql('postgres', 'SELECT alert_id FROM tool_audit.alerts ORDER BY alert_id');
}

start_forwarder('slack');
# the break-the-glass alert raised before it started is caught up
fire_event('prompt.update', 'acme');
fire_event('impersonation.start', 'globex');
wait_for('3 alerts delivered', sub { scalar(received_ids()) >= 3 });
is_deeply([ sort { $a <=> $b } received_ids() ], [ all_ids() ], 'the first 3 alerts arrived, once each, despite 2 failed posts');
like(flog(), qr/webhook answered 500/, 'the forwarder retried after the webhook failed');

# the database restarts; alerts raised right after it is back are caught up
$node->stop('fast');
sleep 2;
$node->start;
fire_event('billing.override', 'acme');
fire_event('policy.update', 'acme');
wait_for('5 alerts delivered', sub { scalar(received_ids()) >= 5 });
like(flog(), qr/connection lost or refused/, 'the forwarder saw the database go away');
is_deeply([ sort { $a <=> $b } received_ids() ], [ all_ids() ], 'after the restart: every alert, once each');

# the forwarder stops; alerts raised meanwhile are delivered when it starts
# again from its state file, now in Google Chat's shape
$forwarder->signal('TERM');
$forwarder->finish;
fire_event('killswitch.enable', 'acme');
$node->safe_psql('postgres', q{
	SELECT tool_audit.log_call('read_chart', '{}', '{}', 1,
	                           '{"tenant_id": "acme", "user_id": "u9", "subject_id": "p9"}')
	  FROM generate_series(1, 10)}, extra_params => [ '-U', 'app_writer' ]);
# an alert raised in a prepared transaction (two-phase commit: the alert
# does not stop PREPARE; it is not notified, the forwarder's polling finds it)
$node->safe_psql('postgres', q{
	BEGIN;
	SELECT tool_audit.log_event('billing.refund', 'adm_1', '{}', '{"tenant_id": "globex"}');
	PREPARE TRANSACTION 'alert_2pc';}, extra_params => [ '-U', 'app_writer' ]);
$node->safe_psql('postgres', "COMMIT PREPARED 'alert_2pc'");
start_forwarder('google_chat');
wait_for('8 alerts delivered', sub { scalar(received_ids()) >= 8 });
sleep 2;    # anything doubled would have arrived by now
is_deeply([ sort { $a <=> $b } received_ids() ], [ all_ids() ], 'after the forwarder restarted: every alert, once each');
is(scalar(all_ids()), 8, '8 alerts in all (the same-subject burst of 10 calls is one; the prepared one is there)');

open my $fh, '<', $received or die;
my @lines = <$fh>;
close $fh;
like($lines[0], qr/^\{"text": "\[HIGH\] tool_audit alert #\d+: break_glass \(break_glass\), tenant acme - dr_house; 1 row\(s\) since [^"]+", "blocks": \[\{"type": "section", "text": \{"type": "mrkdwn", "text": "\*\[HIGH\]/,
	"Slack's shape: text and a mrkdwn section");
my ($chat) = grep { /same_subject_hourly/ } @lines;
like($chat, qr/^\{"text": "\[MEDIUM\] tool_audit alert #\d+: same_subject_hourly \(same_subject\), tenant acme - \[\\"u9\\",\\"p9\\"\]; 1 row\(s\) since [^"]+", "thread": \{"threadKey": "tool_audit-alert-\d+"\}\}$/,
	"Google Chat's shape: text and a thread key");

# a burst that escalates is posted again, as grown, each time its count
# reaches ten times the count last posted; not for every row
my ($burst, $posted_count) = split / /, $node->safe_psql('postgres',
	q{SELECT alert_id || ' ' || count FROM tool_audit.alerts
	   WHERE rule_name = 'high_risk_events' AND burst_key = 'prompt.update'});
is($posted_count, '1', 'the prompt.update burst was posted at 1 row');
sub grew_lines { return grep { /alert #$burst grew:/ } split /\n/, (-e $received ? slurp_file($received) : '') }
fire_event('prompt.update', 'acme') for 1 .. 8;    # 9 rows: not ten times 1
sleep 3;
is(scalar(grew_lines()), 0, 'at 9 rows the burst is not posted again');
fire_event('prompt.update', 'acme');                # 10 rows
wait_for('the grown burst', sub { scalar(grew_lines()) >= 1 });
fire_event('prompt.update', 'acme') for 1 .. 5;    # 15 rows: not ten times 10
sleep 3;
my @grew = grew_lines();
is(scalar(@grew), 1, 'the burst was posted once more when it reached ten times its posted count, not for the rows after');
like($grew[0], qr/^\{"text": "\[HIGH\] tool_audit alert #$burst grew: high_risk_events \(event_type\), tenant acme - prompt\.update; 10 row\(s\) since [^"]+, the last at [^"]+", "thread": \{"threadKey": "tool_audit-alert-$burst"\}\}$/,
	'... in the alert\'s thread, with its count and last row');
# a restart of the forwarder does not post the growth again
sub listens { my @l = flog() =~ /listening on tool_audit_alerts/g; return scalar @l }
my $listened = listens();
$forwarder->signal('TERM');
$forwarder->finish;
start_forwarder('google_chat');
wait_for('the forwarder to listen again', sub { listens() > $listened });
sleep 3;
is(scalar(grew_lines()), 1, 'after a restart of the forwarder, the growth is not posted again');

$forwarder->signal('TERM');
$forwarder->finish;
$receiver->kill_kill;
$node->stop;
done_testing();
