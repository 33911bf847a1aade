# Back-dated rows appended to a chain (issue 12, section 2): a superuser with
# tool_audit.restoring = on can INSERT a row "recorded in 2020 by" a writer
# role.  Chained after rows of today, it makes time go back along its lane:
# verify(), verify_digest() and the external verifier report it.  In a lane
# or chain of its own it has no earlier row to be compared with, but a digest
# taken before it does not cover it: verify_digest() and the external
# verifier with that digest report it.  An untouched copy passes everything.
# Each case runs in a fresh database of one cluster.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $verifier = $ENV{TA_VERIFIER} // "$ENV{TESTDIR}/verifier/tool_audit_verify";
ok(-x $verifier, "the external verifier is built ($verifier)")
  or BAIL_OUT('build it with: make -C verifier');

my $node = PostgreSQL::Test::Cluster->new('back_dated');
$node->init;
$node->start;
my $base = $node->basedir;

my $key = "$base/digest_key.pem";
system_or_bail('openssl', 'genpkey', '-algorithm', 'ed25519', '-out', $key);
chmod 0600, $key;
$node->safe_psql('postgres', qq{LOAD 'tool_audit'; ALTER SYSTEM SET tool_audit.signing_key_file = '$key'});
$node->reload;
$node->safe_psql('postgres', q{CREATE EXTENSION tool_audit;
	CREATE ROLE auditor LOGIN IN ROLE tool_audit_verifier;
	CREATE ROLE app LOGIN IN ROLE tool_audit_writer});

my $pub = "$base/digest_pub.pem";
{
	open my $fh, '>', $pub or die "$pub: $!";
	print $fh $node->safe_psql('postgres', 'SELECT tool_audit.signing_public_key()') . "\n";
	close $fh;
}

my $n = 0;

# A database with a writer's rows of today for patient pat_1 (tenant acme),
# and a signed digest of it saved to a file; returns (db, digest file).
sub setup_db
{
	my $db = 'back' . ++$n;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, q{CREATE EXTENSION tool_audit});
	$node->safe_psql($db, q{
		SET ROLE app;
		INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, user_id, subject_id, success)
		  SELECT 'get_patient_record', 'acme', 'dr_' || g % 3, 'pat_1', true FROM generate_series(1, 10) g;
		INSERT INTO tool_audit.admin_events (event_type, actor, tenant_id) VALUES ('prompt.change', 'admin', 'acme');
	});
	my $digest = $node->safe_psql($db, 'SELECT tool_audit.digest()');
	my $file = "$base/$db.digest.json";
	open my $fh, '>', $file or die "$file: $!";
	print $fh $digest;
	close $fh;
	return ($db, $file);
}

sub verify_out
{
	my ($db) = @_;
	return $node->safe_psql($db,
		q{SELECT coalesce(string_agg(concat_ws(' ', table_name, "position", row_id, problem), E'\n'), '')
		    FROM tool_audit.verify()});
}

sub verify_digest_out
{
	my ($db, $file) = @_;
	my $digest = slurp_file($file);
	return $node->safe_psql($db,
		qq{SELECT coalesce(string_agg(concat_ws(' ', table_name, "position", row_id, problem), E'\\n'), '')
		     FROM tool_audit.verify_digest('$digest')});
}

# the external verifier, as the read-only role: (exit code, output)
sub external
{
	my ($db, @opts) = @_;
	my @cmd = ($verifier, '--all', @opts, $node->connstr($db) . ' user=auditor');
	my ($stdout, $stderr);
	IPC::Run::run(\@cmd, '>', \$stdout, '2>', \$stderr);
	return ($? >> 8, $stdout . $stderr);
}

# the superuser's back-dated rows: brought with an id and a time of 2020,
# "recorded by" the writer role, with the retention of the tenant's latest
# row (so in its chain) if it has one
my $back_dated = q{
	SET tool_audit.restoring = on;
	INSERT INTO tool_audit.tool_calls (id, recorded_at, recorded_by, tool_name, tenant_id, user_id, subject_id, success,
	                                   retention_policy, expires_at)
	  VALUES (nextval('tool_audit.tool_calls_id_seq'), '2020-06-01 09:00:00+00', 'app',
	          'get_patient_record', '%1$s', 'dr_x', 'pat_1', true,
	          (SELECT retention_policy FROM tool_audit.tool_calls WHERE tenant_id = '%1$s' ORDER BY id DESC LIMIT 1),
	          (SELECT expires_at FROM tool_audit.tool_calls WHERE tenant_id = '%1$s' ORDER BY id DESC LIMIT 1));
	INSERT INTO tool_audit.admin_events (id, occurred_at, recorded_by, event_type, actor, tenant_id, retention_policy, expires_at)
	  VALUES (nextval('tool_audit.admin_events_id_seq'), '2020-06-01 09:00:00+00', 'app',
	          'prompt.change', 'admin', '%1$s',
	          (SELECT retention_policy FROM tool_audit.admin_events WHERE tenant_id = '%1$s' ORDER BY id DESC LIMIT 1),
	          (SELECT expires_at FROM tool_audit.admin_events WHERE tenant_id = '%1$s' ORDER BY id DESC LIMIT 1));
	RESET tool_audit.restoring;
};

# --- an untouched database passes every check
{
	my ($db, $file) = setup_db();
	$node->safe_psql($db, q{SET ROLE app; INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('later', 'acme', true)});
	is(verify_out($db), '', 'untouched: verify() finds nothing');
	is(verify_digest_out($db, $file), '', 'untouched: verify_digest() finds nothing');
	my ($rc, $out) = external($db, '--digest', $file, '--public-key', $pub);
	is($rc, 0, 'untouched: the external verifier exits 0') or diag $out;
	like($out, qr/^OK/m, 'untouched: the external verifier says OK');
}

# --- back-dated rows chained after today's rows of the same lane
{
	my ($db, $file) = setup_db();
	# the superuser's session writes today's rows, then the back-dated ones
	$node->safe_psql($db, q{
		INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, subject_id, success) VALUES ('today', 'acme', 'pat_1', true);
		INSERT INTO tool_audit.admin_events (event_type, actor, tenant_id) VALUES ('prompt.change', 'admin', 'acme');
	} . sprintf($back_dated, 'acme'));
	is($node->safe_psql($db, q{SELECT count(*) FROM tool_audit.tool_calls WHERE subject_id = 'pat_1' AND recorded_at < '2021-01-01'}),
		'1', 'same lane: the patient\'s trail counts the back-dated access');
	my $v = verify_out($db);
	like($v, qr/^tool_calls \d+ \d+ time goes back along the lane: row recorded at 2020-06-01T09:00:00.000000Z/m,
		'same lane: verify() names the back-dated tool call') or diag $v;
	like($v, qr/^admin_events \d+ \d+ time goes back along the lane: row recorded at 2020-06-01T09:00:00.000000Z/m,
		'same lane: verify() names the back-dated admin event') or diag $v;
	my $vd = verify_digest_out($db, $file);
	like($vd, qr/^tool_calls \d+ \d+ time goes back/m, 'same lane: verify_digest() names it too') or diag $vd;
	my ($rc, $out) = external($db, '--digest', $file, '--public-key', $pub);
	is($rc, 1, 'same lane: the external verifier exits 1') or diag $out;
	like($out, qr/^PROBLEM table=tool_calls .* position=\d+ row_id=\d+: time goes back along the lane: row recorded at 2020-06-01T09:00:00.000000Z/m,
		'same lane: the external verifier names the tool call') or diag $out;
	like($out, qr/^PROBLEM table=admin_events .* position=\d+ row_id=\d+: time goes back along the lane/m,
		'same lane: and the admin event') or diag $out;
	($rc, $out) = external($db);
	is($rc, 1, 'same lane: without a digest too') or diag $out;
	# a tolerance larger than the step hides it (the option is the verifier's own)
	($rc, $out) = external($db, '--digest', $file, '--public-key', $pub, '--time-tolerance', 10 * 366 * 86400);
	is($rc, 0, 'same lane: within --time-tolerance, nothing is reported') or diag $out;
}

# --- back-dated rows in chains of their own: no earlier row to compare with,
# but the digest taken before does not cover them
{
	my ($db, $file) = setup_db();
	$node->safe_psql($db, sprintf($back_dated, 'newco'));
	is(verify_out($db), '', 'own chain: verify() alone cannot tell (no earlier row in the lane)');
	my $vd = verify_digest_out($db, $file);
	like($vd, qr/^tool_calls 1 \d+ row recorded at 2020-06-01T09:00:00.000000Z, before the digest was taken .*a lane the digest does not know/m,
		'own chain: verify_digest() names the tool call') or diag $vd;
	like($vd, qr/^admin_events 1 \d+ row recorded at 2020-06-01T09:00:00.000000Z, before the digest was taken/m,
		'own chain: verify_digest() names the admin event') or diag $vd;
	my ($rc, $out) = external($db, '--digest', $file, '--public-key', $pub);
	is($rc, 1, 'own chain: the external verifier with the digest exits 1') or diag $out;
	like($out, qr/^PROBLEM table=tool_calls .* position=1 row_id=\d+: row recorded at 2020-06-01T09:00:00.000000Z, before the digest was taken \(\d{4}-.*\), but not covered by it \(a lane the digest does not know\)/m,
		'own chain: the external verifier names the tool call') or diag $out;
	like($out, qr/^PROBLEM table=admin_events .* position=1 row_id=\d+: row recorded at 2020-06-01T09:00:00.000000Z, before the digest was taken/m,
		'own chain: and the admin event') or diag $out;
	# a digest taken after the rows covers them: nothing to say
	my $later = "$base/$db.later.json";
	open my $fh, '>', $later or die "$later: $!";
	print $fh $node->safe_psql($db, 'SELECT tool_audit.digest()');
	close $fh;
	($rc, $out) = external($db, '--digest', $later, '--public-key', $pub);
	is($rc, 0, 'own chain: a digest taken after covers them (exit 0)') or diag $out;
}

# --- a row after the digest's head of its lane, later than the lane's rows
# but earlier than the digest
{
	my ($db, $file) = setup_db();
	# the lane of a session that wrote a 2019 row, then the digest, then 2021
	$node->safe_psql($db, q{
		SET tool_audit.restoring = on;
		INSERT INTO tool_audit.tool_calls (id, recorded_at, recorded_by, tool_name, tenant_id, success)
		  VALUES (nextval('tool_audit.tool_calls_id_seq'), '2019-01-01 00:00:00+00', 'app', 'old', 'oldco', true)});
	my $digest = $node->safe_psql($db, 'SELECT tool_audit.digest()');
	open my $fh, '>', $file or die "$file: $!";
	print $fh $digest;
	close $fh;
	$node->safe_psql($db, q{
		SET tool_audit.restoring = on;
		INSERT INTO tool_audit.tool_calls (id, recorded_at, recorded_by, tool_name, tenant_id, success)
		  VALUES (nextval('tool_audit.tool_calls_id_seq'), '2021-01-01 00:00:00+00', 'app', 'after_head', 'oldco', true)});
	is($node->safe_psql($db, q{SELECT count(DISTINCT chain_lane) FROM tool_audit.tool_calls WHERE tenant_id = 'oldco'}),
		'1', 'after the head: one lane');
	is(verify_out($db), '', 'after the head: verify() finds time moving forward');
	like(verify_digest_out($db, $file), qr/^tool_calls 2 \d+ row recorded at 2021-01-01T00:00:00.000000Z, before the digest was taken .*after the digest's head of its lane/m,
		'after the head: verify_digest() names it');
	my ($rc, $out) = external($db, '--digest', $file, '--public-key', $pub);
	is($rc, 1, 'after the head: the external verifier exits 1') or diag $out;
	like($out, qr/^PROBLEM table=tool_calls .* position=2 row_id=\d+: row recorded at 2021-01-01T00:00:00.000000Z, .*after the digest's head of its lane/m,
		'after the head: the external verifier names it') or diag $out;
}

$node->stop;
done_testing();
