# The README's SQL examples run as written, so that they cannot rot.
#
# Every ```sql block of README.md is run, in order, on a fresh cluster with
# tool_audit preloaded (as the README recommends) and not yet created: the
# README's first block creates the extension, and every role an example uses is
# created by an earlier example.  Blocks that must not run (shell steps, psql
# meta-commands, output) use another fence: ```sh or ```text.
#
# The examples run in a database named app, as the README's shell steps call
# it; the backup-and-restore shell block is run too, against the same cluster.
#
# Two ways, as a reader could paste them:
#  1. all blocks in one psql session: no block may fail, and the outputs are
#     checked (below, and every comment line "--  text" in a block, two spaces
#     after the dashes, is output the README promises: it must appear in that
#     block's output, or among that block's notices for a notice);
#  2. each block in a session of its own, on a second fresh cluster: a block
#     may not depend on a SET ROLE or a temporary object left by the one before.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $readme = "$ENV{TESTDIR}/README.md";
open my $fh, '<:raw', $readme or die "$readme: $!";
my $text = do { local $/; <$fh> };
close $fh;

my @blocks;
push @blocks, $1 while $text =~ /^```sql\n(.*?)^```[ \t]*$/gms;
cmp_ok(scalar @blocks, '>=', 10, 'README.md has its SQL examples (' . scalar(@blocks) . ' blocks)');

# a fence opened with anything else must still be closed: an unclosed or
# mistyped fence would hide a block from this test
my $fences = () = $text =~ /^```/gm;
is($fences % 2, 0, 'every fence in README.md is closed');
# and an example fenced as SQL under another name (SQL, psql, postgresql)
# would be skipped silently: only these fences are allowed
my %opened;
my $open = 0;
for my $fence ($text =~ /^```(\S*)[ \t]*$/gm)
{
	$opened{$fence}++ unless $open;
	$open = !$open;
}
my @other = grep { $_ !~ /\A(sql|sh|text)\z/ } sort keys %opened;
is("@other", '', 'every README fence is ```sql, ```sh or ```text');

# a reader runs the examples in psql, whose application_name is "psql": the
# README's outputs name it (PostgreSQL::Test::Utils sets the test's own name)
$ENV{PGAPPNAME} = 'psql';

sub new_node
{
	my $name = shift;
	my $node = PostgreSQL::Test::Cluster->new($name);
	# UTF-8, as the README's outputs (the timeline's marks) are
	$node->init(extra => [ '--encoding=UTF8', '--no-locale' ]);
	$node->append_conf('postgresql.conf', "shared_preload_libraries = 'tool_audit'");
	$node->start;
	$node->safe_psql('postgres', 'CREATE DATABASE app');
	return $node;
}

# the index of the one block matching $re
sub block_with
{
	my $re = shift;
	my @found = grep { $blocks[$_] =~ $re } 0 .. $#blocks;
	ok(@found == 1, "one README block matches $re") or diag("found " . scalar(@found));
	return $found[0] // -1;
}

# ---- 1. one session, in order ----
my $node = new_node('readme');
my $script = '';
$script .= "\\echo '\@\@ block $_'\n\\warn '\@\@ block $_'\n$blocks[$_]\n" for 0 .. $#blocks;
my ($stdout, $stderr) = ('', '');
my $ret = $node->psql('app', $script,
	stdout => \$stdout, stderr => \$stderr, on_error_stop => 1);
is($ret, 0, 'every SQL block of the README runs in one session, in order')
  or diag($stderr);
unlike($stderr, qr/\b(ERROR|WARNING|FATAL)\b/, 'no error or warning') or diag($stderr);

my @out = ('') x @blocks;
my $cur;
my $seen = 0;
for my $line (split /\n/, $stdout)
{
	if ($line =~ /^\@\@ block (\d+)$/) { $cur = $1; $seen++; next; }
	$out[$cur] .= "$line\n" if defined $cur;
}
is($seen, scalar @blocks, 'every block was reached');
# the notices, warnings and errors of each block (\warn marks where one starts)
my @err = ('') x @blocks;
undef $cur;
for my $line (split /\n/, $stderr)
{
	if ($line =~ /^\@\@ block (\d+)$/) { $cur = $1; next; }
	$err[$cur] .= "$line\n" if defined $cur;
}

# the outputs the README writes down, as "--  text" lines
for my $i (0 .. $#blocks)
{
	for my $expected ($blocks[$i] =~ /^--  (.+?)\s*$/gm)
	{
		ok(index($out[$i], $expected) >= 0 || index($err[$i], $expected) >= 0,
			"block $i prints what the README says: $expected")
		  or diag("block $i printed:\n$out[$i]");
	}
}

# getting started: the key is redacted, the auditor reads the row
my $i = block_with(qr/log_call\(\s*'update_order_status'/);
like($out[$i], qr/^t\|\{.*"api_key": "\*\*\*REDACTED\*\*\*"/m, 'getting started: the call is recorded, its key redacted')
  or diag($out[$i]);
unlike($out[$i], qr/sk-live/, 'getting started: the key itself is not returned');
$i = block_with(qr/FROM tool_audit\.tool_calls WHERE conversation_id/);
like($out[$i], qr/\|my_app\|usr_98765\|gpt-4\.1\|update_order_status\|/, 'getting started: the auditor reads the row')
  or diag($out[$i]);

# recording: the patient's name is pseudonymized
$i = block_with(qr/"patient_name"/);
like($out[$i], qr/"patient_name": "hmac:k\w+:[0-9a-f]{32}"/, 'recording: a patient name is stored as a pseudonym')
  or diag($out[$i]);
unlike($out[$i], qr/Jane Roe/, 'recording: the name itself is not stored');

# sanitizing: the three rules of the example, and the built-in ones
$i = block_with(qr/tool_audit\.sanitize\(/);
like($out[$i], qr/"internal_note": "\*\*\*REDACTED\*\*\*"/, 'sanitizing: a key of your own is redacted');
like($out[$i], qr/"password_policy": "12 chars"/, 'sanitizing: an exempted key is kept');
like($out[$i], qr/"password": "\*\*\*REDACTED\*\*\*"/, 'sanitizing: a password is redacted');
like($out[$i], qr/"Authorization": "\*\*\*REDACTED\*\*\*"/, 'sanitizing: a nested header is redacted');
like($out[$i], qr/"note": "hmac:k\w+:[0-9a-f]{32}, SSN hmac:k\w+:[0-9a-f]{32}"/,
	'sanitizing: a medical record number and an SSN in text are pseudonymized')
  or diag($out[$i]);
unlike($out[$i], qr/MRN-123456|078-05-1120|jane\@example/, 'sanitizing: no original value is left');

# append-only: refused, and the row is still there
like($stderr, qr/refused: DELETE is not allowed on tool_audit table tool_calls/, 'append-only: the DELETE is refused');
is($node->safe_psql('app', q{SELECT count(*) FROM tool_audit.tool_calls WHERE tool_name = 'cancel_order'}),
	'1', 'append-only: the row is still there');

# tamper evidence: verify() finds nothing, digest() gives one digest
$i = block_with(qr/tool_audit\.verify\(\);.*tool_audit\.digest\(\)/s);
like($out[$i], qr/\A\{"heads": \[.*\}\n\z/, 'tamper evidence: verify() returns no row, then one digest')
  or diag($out[$i]);

# reports and exports return rows, and the access report is verified
$i = block_with(qr/access_report\(/);
like($out[$i], qr/"total_accesses": 2\b/, 'access report: two accesses') or diag($out[$i]);
like($out[$i], qr/"break_glass_accesses": 1\b/, 'access report: one break-glass access');
like($out[$i], qr/"integrity_verified": true/, 'access report: integrity verified');
like($out[$i], qr/^update_order_status\|.*\nget_customer\|.*\ncancel_order\|/m, 'calls_by_user() returns the user\'s calls');
like($out[$i], qr/^cancel_order\|Cannot cancel shipped order$/m, 'failures() returns the failed call');
my $calls = () = $out[$i] =~ /^\{.*"table": "tool_calls"/mg;
is($calls, 5, 'export_jsonl() returns the five calls');
my $events = () = $out[$i] =~ /"resourceType": "AuditEvent"/g;
is($events, 2, 'export_fhir() returns the patient\'s two accesses');
like($out[$i], qr/^execute_tool cancel_order\|conv_abc123\|ERROR$/m, 'otel_tool_spans shows the failed call');

# tenants: a bound reader sees its tenant only
$i = block_with(qr/bind_tenant\(/);
is($out[$i], "t\nacme\n", 'tenants: the binding is new, and alice sees acme only');

# upgrading: already at the latest version, still intact
$i = block_with(qr/ALTER EXTENSION tool_audit UPDATE/);
like($out[$i], qr/\A\d+\.\d+\n\z/, 'upgrading: the version, and verify() returns no row') or diag($out[$i]);

is($node->safe_psql('app', 'SELECT count(*) FROM tool_audit.verify()'), '0',
	'after every example, verify() finds nothing');

# backup and restore: the README's shell block, as written, on this preloaded
# server; the copy has the same rows, verifies, and links pseudonyms the same way
my @sh;
push @sh, $1 while $text =~ /^```sh\n(.*?)^```[ \t]*$/gms;
my @restore = grep { /pg_dump/ && /pg_restore/ } @sh;
is(scalar @restore, 1, 'README has one backup-and-restore shell block');
{
	local $ENV{PGHOST} = $node->host;
	local $ENV{PGPORT} = $node->port;
	my ($o, $e) = ('', '');
	my $ok = IPC::Run::run([ 'bash', '-euo', 'pipefail', '-c', "cd '" . $node->basedir . "'\n$restore[0]" ],
		'>', \$o, '2>', \$e);
	ok($ok, "the README's backup and restore commands run") or diag("$o$e");
}
my $rows = q{SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM tool_audit.tool_calls t};
is($node->safe_psql('restored', $rows), $node->safe_psql('app', $rows), 'restored: the same rows');
is($node->safe_psql('restored', 'SELECT count(*) FROM tool_audit.verify()'), '0', 'restored: verify() finds nothing');
my $pseudonym = q{SELECT tool_audit.pseudonymize('078-05-1120')};
is($node->safe_psql('restored', $pseudonym), $node->safe_psql('app', $pseudonym), 'restored: pseudonyms still link');
$node->stop;

# ---- 2. each block in a session of its own ----
my $fresh = new_node('readme_sessions');
for my $j (0 .. $#blocks)
{
	my ($o, $e) = ('', '');
	my $r = $fresh->psql('app', $blocks[$j], stdout => \$o, stderr => \$e, on_error_stop => 1);
	is($r, 0, "block $j runs in a session of its own") or diag("$blocks[$j]\n$e");
}
$fresh->stop;

done_testing();
