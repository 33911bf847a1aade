# No secret in the server log (issue 12, section 3).
#
# An application that passes values as bind parameters keeps them out of the
# statement text that PostgreSQL logs; what remains is the error message,
# with its detail, hint and context, which goes to the client and to the
# server log.  This test calls every entry point with a secret-looking value
# of the wrong type in every field that is not text, as a bind parameter
# (pgbench's extended protocol sends each :variable as one), and then reads
# the server log: no secret may appear in it, nor in what the client printed.
#
# One case is the control: a malformed JSON literal bound to a jsonb
# parameter is refused by PostgreSQL before tool_audit runs, and its error
# quotes the text (doc/caveats.md); the log must show that secret, which
# proves that the log is read and that a leak would be seen.  The same text
# passed to log_call_text() is not quoted.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('no_secret_in_log');
$node->init;
# the most a default log says about an error: message, detail, hint, context,
# statement, and the source location.  The test framework's log_statement =
# all logs every statement with its parameters (doc/caveats.md says to keep
# it off for writers): back to PostgreSQL's default.
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'tool_audit'
log_statement = none
log_error_verbosity = verbose
log_min_error_statement = error
log_parameter_max_length_on_error = 0
});
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION tool_audit;
	CREATE ROLE app LOGIN;
	GRANT tool_audit_writer TO app;
	CREATE ROLE keeper LOGIN;
	GRANT tool_audit_admin TO keeper;
});

my $tmp = PostgreSQL::Test::Utils::tempdir;
my $n = 0;

# run(SQL, VARIABLES): SQL once through pgbench's extended protocol as role
# app (keeper if the SQL rotates a key), each :name bound to its value;
# returns pgbench's exit status and what it printed
sub run
{
	my ($sql, %vars) = @_;
	my $user = $sql =~ /rotate_pseudonym_key/ ? 'keeper' : 'app';
	my $file = "$tmp/script" . ++$n . '.sql';
	open my $fh, '>', $file or die "$file: $!";
	print $fh "$sql\n";
	close $fh;
	my @cmd = ('pgbench', '-n', '-t', '1', '-M', 'extended', '-f', $file,
		'-h', $node->host, '-p', $node->port, '-U', $user, 'postgres');
	push @cmd, '-D', "$_=$vars{$_}" for sort keys %vars;
	my ($out, $err) = ('', '');
	IPC::Run::run(\@cmd, '>', \$out, '2>', \$err);
	return ($? >> 8, $out . $err);
}

my $call = q{SELECT tool_audit.log_call('t', '{}', '{}', 1, :ctx);};
my $event = q{SELECT tool_audit.log_event(:type, 'a', '{}', :ctx);};
my $call_text = q{SELECT tool_audit.log_call_text('t', :args, :result, 1, :ctx);};
my $event_text = q{SELECT tool_audit.log_event_text('prompt.update', 'a', :payload, :ctx);};

# [label, secret (unique), SQL, variables]
my @cases = (
	['log_call context turn_number', 'sk-ant-FAKE01', $call, ctx => '{"turn_number": "sk-ant-FAKE01-xxxx"}'],
	['log_call context turn_number (a number)', '41111111123456789012', $call,
		ctx => '{"turn_number": 41111111123456789012}'],
	['log_call context call_trigger', 'sk-ant-FAKE03', $call, ctx => '{"call_trigger": "sk-ant-FAKE03-xxxx"}'],
	['log_call context client_ip', 'sk-ant-FAKE04', $call, ctx => '{"client_ip": "sk-ant-FAKE04-xxxx"}'],
	['log_call context event_id', 'sk-ant-FAKE05', $call, ctx => '{"event_id": "sk-ant-FAKE05-xxxx"}'],
	['log_call context started_at', 'sk-ant-FAKE06', $call, ctx => '{"started_at": "sk-ant-FAKE06-xxxx"}'],
	# a time zone name: timestamptz_in's error would quote it
	['log_call context started_at (a time zone name)', 'sk_ant_FAKE07', $call,
		ctx => '{"started_at": "2026-01-02 03:04:05 sk_ant_FAKE07"}'],
	['log_event event_type', 'sk-ant-FAKE11', $event, type => 'sk-ant-FAKE11-xxxx', ctx => '{}'],
	['log_event reserved event_type', 'sk_ant_fake12', $event, type => 'tool_audit.sk_ant_fake12', ctx => '{}'],
	['log_event context actor_type', 'sk-ant-FAKE13', $event, type => 'prompt.update',
		ctx => '{"actor_type": "sk-ant-FAKE13-xxxx"}'],
	['log_event context source_ip', 'sk-ant-FAKE14', $event, type => 'prompt.update',
		ctx => '{"source_ip": "sk-ant-FAKE14-xxxx"}'],
	['log_event context event_id', 'sk-ant-FAKE15', $event, type => 'prompt.update',
		ctx => '{"event_id": "sk-ant-FAKE15-xxxx"}'],
	['INSERT reserved event_type', 'sk_ant_fake16',
		q{INSERT INTO tool_audit.admin_events (event_type, actor) VALUES (:type, 'a');},
		type => 'tool_audit.sk_ant_fake16'],
	['rotate_pseudonym_key key_id (a key in the wrong argument)', 'fa4e' . ('0' x 56) . 'fa4e',
		q{SELECT tool_audit.rotate_pseudonym_key(:kid);}, kid => 'fa4e' . ('0' x 56) . 'fa4e'],
	['log_call_text arguments', 'sk_ant_FAKE21', $call_text,
		args => '{"api_key": sk_ant_FAKE21_xxxx}', result => '{}', ctx => '{}'],
	['log_call_text result', 'sk-ant-FAKE22', $call_text,
		args => '{}', result => '{"token": "sk-ant-FAKE22-xxxx"', ctx => '{}'],
	['log_call_text context', 'sk_ant_FAKE23', $call_text,
		args => '{}', result => '{}', ctx => '{"a": 1} sk_ant_FAKE23_xxxx'],
	['log_call_text context turn_number', 'sk-ant-FAKE24', $call_text,
		args => '{}', result => '{}', ctx => '{"turn_number": "sk-ant-FAKE24-xxxx"}'],
	['log_event_text payload', 'sk_ant_FAKE25', $event_text, payload => 'sk_ant_FAKE25_xxxx', ctx => '{}'],
	['log_event_text context', 'sk-ant-FAKE26', $event_text, payload => '{}', ctx => '{"x": "sk-ant-FAKE26\q"}'],
);

for my $c (@cases)
{
	my ($label, $secret, $sql, %vars) = @$c;
	my ($status, $printed) = run($sql, %vars);
	isnt($status, 0, "$label: refused");
	unlike($printed, qr/\Q$secret\E/, "$label: the client's error does not quote the value");
}

# the control: jsonb parameters are read by PostgreSQL, which quotes them
# (one JSON token: PostgreSQL's error quotes the token and the text up to it)
my ($status, $printed) = run($call, ctx => '{"api_key": sk_ant_FAKE99_xxxx}');
isnt($status, 0, 'malformed jsonb parameter: refused');

# the calls that work, through the same path
($status, $printed) = run($call_text, args => '{"q": "x"}', result => '{"rows": 1}', ctx => '{"turn_number": 2}');
is($status, 0, 'log_call_text with bind parameters records') or diag $printed;
($status, $printed) = run($event_text, payload => '{"a": 1}', ctx => '{"source_ip": "192.0.2.1"}');
is($status, 0, 'log_event_text with bind parameters records') or diag $printed;
is($node->safe_psql('postgres', 'SELECT count(*) FROM tool_audit.tool_calls'), '1', 'one tool call stored');
is($node->safe_psql('postgres', 'SELECT count(*) FROM tool_audit.admin_events WHERE event_type = \'prompt.update\''),
	'1', 'one event stored');

$node->stop;
my $log = slurp_file($node->logfile);

like($log, qr/\Q$_\E/, "the server log has the error: $_") for (
	'invalid value for context field "turn_number": expected an integer',
	'invalid value for context field "call_trigger"',
	'invalid value for context field "client_ip": expected an IP address',
	'invalid value for context field "event_id": expected a UUID',
	'invalid value for context field "started_at": expected an ISO 8601 time',
	'invalid value for argument "event_type": expected a dotted lowercase name',
	'invalid value for context field "actor_type"',
	'invalid value for context field "source_ip": expected an IP address',
	'invalid value for argument "arguments": expected a JSON document',
	'invalid value for argument "payload": expected a JSON document',
	'invalid value for argument "key_id"',
	'STATEMENT:  SELECT tool_audit.log_call(\'t\', \'{}\', \'{}\', 1, $1);');
like($log, qr/sk_ant_FAKE99/, 'control: the malformed jsonb parameter is quoted by PostgreSQL (documented)');
for my $c (@cases)
{
	my ($label, $secret) = @$c;
	unlike($log, qr/\Q$secret\E/i, "$label: the server log does not quote the value");
}

done_testing();
