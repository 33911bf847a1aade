# A tenant's compliance officer verifies its tenant's chains (issue 12, 2):
# connected as a reader bound to the tenant, which row-level security limits
# to the tenant's rows, the external verifier with --tenant checks them
# against the tenant's digest or the tenant's part of a full one, with no
# false alarm for the rows it cannot see, and still reports a change to a row
# of the tenant; in the database, digest() taken by the bound reader names no
# other tenant, and the bound reader cannot take another tenant's digest.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $verifier = $ENV{TA_VERIFIER} // "$ENV{TESTDIR}/verifier/tool_audit_verify";
ok(-x $verifier, "the external verifier is built ($verifier)")
  or BAIL_OUT('build it with: make -C verifier');

my $node = PostgreSQL::Test::Cluster->new('tenant_verify');
$node->init;
$node->start;
my $base = $node->basedir;

my $key = "$base/digest_key.pem";
system_or_bail('openssl', 'genpkey', '-algorithm', 'ed25519', '-out', $key);
chmod 0600, $key;
$node->safe_psql('postgres', qq{LOAD 'tool_audit'; ALTER SYSTEM SET tool_audit.signing_key_file = '$key'});
$node->reload;
$node->safe_psql('postgres', q{
	CREATE EXTENSION tool_audit;
	CREATE ROLE acme_officer LOGIN IN ROLE tool_audit_reader;
	CREATE ROLE acme_verifier LOGIN IN ROLE tool_audit_verifier;
	CREATE ROLE auditor LOGIN IN ROLE tool_audit_verifier;
	SELECT tool_audit.bind_tenant('acme_officer', 'acme');
	SELECT tool_audit.bind_tenant('acme_verifier', 'acme');
	INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success, arguments)
	  SELECT 'call_' || g, 'acme', true, jsonb_build_object('n', g) FROM generate_series(1, 20) g;
	INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
	  SELECT 'beta_' || g, 'beta-secret-name', true FROM generate_series(1, 10) g;
	INSERT INTO tool_audit.tool_calls (tool_name, success)
	  SELECT 'none_' || g, true FROM generate_series(1, 5) g;
	INSERT INTO tool_audit.admin_events (event_type, actor, tenant_id, payload)
	  SELECT 'prompt.change', 'admin', t, '{}' FROM unnest(ARRAY['acme', 'beta-secret-name']) t, generate_series(1, 3);
});

my $pub = "$base/pub.pem";
sub write_file
{
	my ($file, $text) = @_;
	open my $fh, '>', $file or die "$file: $!";
	print $fh $text;
	close $fh;
}
write_file($pub, $node->safe_psql('postgres', 'SELECT tool_audit.signing_public_key()') . "\n");

# digests: the admin's full one, the bound officer's, the admin's of acme
my $full = "$base/full.json";
write_file($full, $node->safe_psql('postgres', 'SELECT tool_audit.digest()'));
my $officer_digest = $node->safe_psql('postgres', 'SELECT tool_audit.digest()',
	connstr => $node->connstr('postgres') . ' user=acme_officer');
my $acme = "$base/acme.json";
write_file($acme, $officer_digest);
my $admin_acme = "$base/admin_acme.json";
write_file($admin_acme, $node->safe_psql('postgres', q{SELECT tool_audit.tenant_digest('acme')}));

# and one derived later from the full digest
my $derived = "$base/derived.json";
write_file($derived, $node->safe_psql('postgres',
	q{SELECT tool_audit.derive_tenant_digest(pg_read_file('} . $full . q{')::jsonb, 'acme')}));
unlike(slurp_file($derived), qr/beta/, 'the digest derived from the full one names no other tenant');

like($officer_digest, qr/"scope": "tenant"/, 'the bound officer\'s digest is a tenant digest');
unlike($officer_digest, qr/beta/, 'the bound officer\'s digest names no other tenant');
like(slurp_file($full), qr/beta-secret-name/, 'the admin\'s full digest is unchanged: it lists every tenant');

# the external verifier: (exit code, output)
sub external
{
	my ($user, $file, @opts) = @_;
	my @cmd = ($verifier, (defined $file ? ('--digest', $file, '--public-key', $pub) : ()), '--all', @opts,
		$node->connstr('postgres') . " user=$user");
	my ($stdout, $stderr);
	IPC::Run::run(\@cmd, '>', \$stdout, '2>', \$stderr);
	return ($? >> 8, $stdout . $stderr);
}

my ($rc, $out);

# before: the bound officer with the full digest got a false alarm
($rc, $out) = external('acme_officer', $full, '--tenant', 'acme');
is($rc, 0, 'bound officer, full digest, --tenant: exits 0') or diag $out;
like($out, qr/^OK: tool_calls 20 rows/m, 'bound officer, full digest: the tenant\'s 20 rows checked') or diag $out;
unlike($out, qr/missing/, 'bound officer, full digest: no false alarm for rows it cannot see');
unlike($out, qr/beta/, 'bound officer: the output names no other tenant');

($rc, $out) = external('acme_officer', $acme, '--tenant', 'acme');
is($rc, 0, 'bound officer, its own tenant digest: exits 0') or diag $out;
like($out, qr/digest heads checked: [1-9]/, 'bound officer: the tenant digest\'s heads are checked') or diag $out;

($rc, $out) = external('acme_officer', $admin_acme, '--tenant', 'acme');
is($rc, 0, 'bound officer, the admin\'s tenant_digest(acme): exits 0') or diag $out;

($rc, $out) = external('acme_officer', $derived, '--tenant', 'acme');
is($rc, 0, 'bound officer, the tenant digest derived from the full one: exits 0') or diag $out;
like($out, qr/digest heads checked: [1-9]/, 'bound officer: the derived digest\'s heads are checked') or diag $out;

($rc, $out) = external('acme_verifier', $full, '--tenant', 'acme');
is($rc, 0, 'bound verifier role, full digest, --tenant: exits 0') or diag $out;
like($out, qr/^OK: tool_calls 20 rows/m, 'bound verifier role: only the tenant\'s rows checked') or diag $out;

# an admin's run is as before
($rc, $out) = external('auditor', $full);
is($rc, 0, 'unbound verifier, full digest: exits 0') or diag $out;
like($out, qr/^OK: tool_calls 35 rows/m, 'unbound verifier: every row checked') or diag $out;

# a tenant's digest says nothing of other tenants' chains: a row restored
# from 2020 into a chain of its own (tenant gamma) is "before the digest but
# not covered" for the full digest, not for acme's
$node->safe_psql('postgres', q{
	SET tool_audit.restoring = on;
	INSERT INTO tool_audit.tool_calls (id, recorded_at, recorded_by, tool_name, tenant_id, success)
	  VALUES (nextval('tool_audit.tool_calls_id_seq'), '2020-01-01 00:00:00+00', 'postgres', 'gamma_old', 'gamma', true);
});
($rc, $out) = external('auditor', $admin_acme);
is($rc, 0, 'unbound verifier, acme\'s tenant digest: another tenant\'s older row is not "after" it') or diag $out;
is($node->safe_psql('postgres', q{SELECT count(*) FROM tool_audit.verify_digest(pg_read_file('} . $admin_acme . q{')::jsonb)}),
	'0', 'verify_digest(acme\'s tenant digest) by an admin: no false alarm either');
($rc, $out) = external('auditor', $full);
like($out, qr/before the digest was taken .* not covered by it/, 'the full digest reports that row') or diag $out;
$node->safe_psql('postgres', q{
	UPDATE pg_trigger SET tgenabled = 'D' WHERE tgrelid = 'tool_audit.tool_calls'::regclass;
	DELETE FROM tool_audit.tool_calls WHERE tool_name = 'gamma_old';
	UPDATE pg_trigger SET tgenabled = 'A' WHERE tgrelid = 'tool_audit.tool_calls'::regclass;
});

# in the database: the bound officer verifies, and cannot take another
# tenant's digest nor learn its name from the error
my $officer = $node->connstr('postgres') . ' user=acme_officer';
is($node->safe_psql('postgres', 'SELECT count(*) FROM tool_audit.verify()', connstr => $officer),
	'0', 'verify() by the bound officer: nothing wrong');
is($node->safe_psql('postgres', 'SELECT count(*) FROM tool_audit.verify_digest(' . $node->safe_psql('postgres', q{SELECT quote_literal(tool_audit.digest()::text)}) . ')',
		connstr => $officer),
	'0', 'verify_digest(full digest) by the bound officer: no false alarm');
my ($prc, $pout, $perr) = $node->psql('postgres', q{SELECT tool_audit.tenant_digest('beta-secret-name')}, connstr => $officer);
isnt($prc, 0, 'the bound officer cannot take another tenant\'s digest');
like($perr, qr/permission denied/, 'refused with permission denied');

# a row of the other tenant changed: the officer's run is not alarmed, the admin's is
sub tamper
{
	my ($sql) = @_;
	$node->safe_psql('postgres', qq{
		UPDATE pg_trigger SET tgenabled = 'D'
		 WHERE tgrelid IN ('tool_audit.tool_calls'::regclass, 'tool_audit.admin_events'::regclass);
		$sql;
		UPDATE pg_trigger SET tgenabled = 'A'
		 WHERE tgrelid IN ('tool_audit.tool_calls'::regclass, 'tool_audit.admin_events'::regclass);
	});
}
tamper(q{UPDATE tool_audit.tool_calls SET success = false WHERE tool_name = 'beta_4'});
($rc, $out) = external('acme_officer', $full, '--tenant', 'acme');
is($rc, 0, 'another tenant\'s row changed: the officer\'s run exits 0') or diag $out;
($rc, $out) = external('auditor', $full);
is($rc, 1, 'another tenant\'s row changed: the admin\'s run exits 1') or diag $out;

# a row of the tenant changed: reported to the officer
tamper(q{UPDATE tool_audit.tool_calls SET arguments = '{"n": 700}' WHERE tool_name = 'call_7'});
($rc, $out) = external('acme_officer', $acme, '--tenant', 'acme');
is($rc, 1, 'the tenant\'s row changed: the officer\'s run exits 1') or diag $out;
like($out, qr/PROBLEM table=tool_calls .*row altered/, 'the tenant\'s row changed: reported as altered') or diag $out;
unlike($out, qr/beta/, 'the report names no other tenant');
is($node->safe_psql('postgres', q{SELECT string_agg(problem, '; ') FROM tool_audit.verify()}, connstr => $officer),
	'row altered: its content does not match its row hash',
	'verify() by the bound officer reports its tenant\'s row only');

# the same against the derived digest
($rc, $out) = external('acme_officer', $derived, '--tenant', 'acme');
is($rc, 1, 'the tenant\'s row changed: reported against the derived digest too') or diag $out;

# the tenant's newest rows deleted: the tenant digest tells
tamper(q{DELETE FROM tool_audit.tool_calls WHERE tool_name IN ('call_19', 'call_20')});
($rc, $out) = external('acme_officer', $acme, '--tenant', 'acme');
is($rc, 1, 'the tenant\'s newest rows deleted: the officer\'s run exits 1') or diag $out;
like($out, qr/rows covered by the digest are missing/, 'the deletion is reported against the tenant digest') or diag $out;

$node->stop;
done_testing();
