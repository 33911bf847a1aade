# The security state (1.5): a digest fingerprints who can see and change
# what around the rows (row-level security, policies, privileges, the
# extension's function definitions, triggers, event triggers, rules, tenant
# bindings, pseudonymization key fingerprints, rule sets).  What a superuser
# changes through the catalogs, with the DDL guards switched off or with
# triggers off is reported by verify_digest() and the external verifier with
# a saved digest (and, for the parts only the install script defines, by
# verify() with no digest); an untouched database and a dump restored into a
# new database still verify clean with that digest.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $verifier = $ENV{TA_VERIFIER} // "$ENV{TESTDIR}/verifier/tool_audit_verify";
ok(-x $verifier, "the external verifier is built ($verifier)")
  or BAIL_OUT('build it with: make -C verifier');

my $node = PostgreSQL::Test::Cluster->new('secstate');
$node->init;
$node->start;
my $base = $node->basedir;
$node->safe_psql('postgres', q{
	CREATE EXTENSION tool_audit;
	CREATE ROLE auditor LOGIN IN ROLE tool_audit_verifier;
	CREATE ROLE clinic_reader LOGIN IN ROLE tool_audit_reader;
});

my $n = 0;

# a database with rows of two tenants, a binding, a rule of its own and a
# digest; returns (db, digest file)
sub setup_db
{
	my $db = 'sec' . ++$n;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, q{
		CREATE EXTENSION tool_audit;
		SELECT tool_audit.bind_tenant('clinic_reader', 'clinic_a');
		INSERT INTO tool_audit.sanitize_rules (applies_to, match, pattern, action, priority)
		  VALUES ('key', 'exact', 'ward_code', 'redact', 50);
		INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, user_id, subject_id, success, arguments)
		  SELECT 'lookup', CASE WHEN g % 2 = 0 THEN 'clinic_a' ELSE 'clinic_b' END, 'agent',
		         'patient_' || g % 4, true, jsonb_build_object('n', g)
		    FROM generate_series(1, 20) g;
	});
	my $digest = $node->safe_psql($db, 'SELECT tool_audit.digest()');
	my $file = "$base/$db.digest.json";
	open my $fh, '>', $file or die "$file: $!";
	print $fh $digest;
	close $fh;
	return ($db, $file);
}

sub run_verifier
{
	my ($db, $file, $user) = @_;
	my $conn = $node->connstr($db) . ($user ? " user=$user" : '');
	my ($out, $err) = ('', '');
	my $rc = IPC::Run::run([ $verifier, '--all', '--digest', $file, $conn ], '>', \$out, '2>', \$err);
	return ($rc ? 0 : $? >> 8, $out, $err);
}

sub problems
{
	my ($db, $sql) = @_;
	return $node->safe_psql($db, "SELECT string_agg(problem, E'\\n' ORDER BY problem) FROM $sql");
}

# untouched: clean everywhere, as a superuser and as the verifier role (which
# reads the keys' fingerprints, never the keys)
my ($db, $file) = setup_db();
my ($rc, $out, $err) = run_verifier($db, $file);
is($rc, 0, 'untouched: the verifier passes') or diag("$out\n$err");
like($out, qr/^OK: /m, 'untouched: OK');
($rc, $out, $err) = run_verifier($db, $file, 'auditor');
is($rc, 0, 'untouched: the verifier passes as the verifier role') or diag("$out\n$err");
is($err, '', 'untouched: as the verifier role, every component compared (no note)');
is(problems($db, 'tool_audit.verify()'), '', 'untouched: verify() clean');
is(problems($db, "tool_audit.verify_digest(pg_read_file('$file')::jsonb)"), '',
	'untouched: verify_digest() clean');

# changes made through the extension's own functions, recorded as admin
# events, are no problem
$node->safe_psql($db, q{
	SELECT tool_audit.bind_tenant('clinic_reader', 'clinic_c');
	SELECT tool_audit.rotate_pseudonym_key();
});
($rc, $out, $err) = run_verifier($db, $file);
is($rc, 0, 'bindings and keys changed by the admin functions: the verifier passes') or diag("$out\n$err");

# a dump restored into a new database verifies with the earlier digest
my $dump = "$base/$db.dump";
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr($db) ], 'pg_dump');
$node->safe_psql('postgres', "CREATE DATABASE ${db}_copy");
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', $node->connstr("${db}_copy"), $dump ], 'pg_restore');
($rc, $out, $err) = run_verifier("${db}_copy", $file);
is($rc, 0, 'restored copy: the verifier passes with the earlier digest') or diag("$out\n$err");
is(problems("${db}_copy", "tool_audit.verify_digest(pg_read_file('$file')::jsonb)"), '',
	'restored copy: verify_digest() clean');
is(problems("${db}_copy", 'tool_audit.verify()'), '', 'restored copy: verify() clean');

# a digest without the member (taken before 1.5) still verifies: nothing of
# the security state is compared
{
	my ($odb, $ofile) = setup_db();
	my $old = $node->safe_psql($odb, "SELECT pg_read_file('$ofile')::jsonb - 'security_state'");
	open my $fh, '>', "$ofile.old" or die "$ofile.old: $!";
	print $fh $old;
	close $fh;
	$node->safe_psql($odb, q{UPDATE pg_class SET relrowsecurity = false WHERE oid = 'tool_audit.tool_calls'::regclass});
	my ($orc, $oout, $oerr) = run_verifier($odb, "$ofile.old");
	is($orc, 0, 'a digest without security_state: the verifier passes') or diag("$oout\n$oerr");
	($orc, $oout, $oerr) = run_verifier($odb, $ofile);
	is($orc, 1, 'the same database with the 1.5 digest: the verifier fails');
	$node->safe_psql('postgres', "DROP DATABASE $odb");
}

# each attack on a database of its own: [name, SQL, component, verify() too]
my $guards_off = q{ALTER EVENT TRIGGER tool_audit_ddl_start DISABLE;};
my $guards_on = q{ALTER EVENT TRIGGER tool_audit_ddl_start ENABLE;};
my @attacks = (
	[ 'row-level security off through pg_class',
	  q{UPDATE pg_class SET relrowsecurity = false WHERE oid = 'tool_audit.tool_calls'::regclass},
	  'rls', qr/rls: tool_calls changed/ ],
	[ 'force row-level security turned on (owner locked out) through pg_class',
	  q{UPDATE pg_class SET relforcerowsecurity = true WHERE oid = 'tool_audit.admin_events'::regclass},
	  'rls', qr/rls: admin_events changed/ ],
	[ 'the body of bound_tenants() replaced through pg_proc',
	  q{UPDATE pg_proc SET prosrc = 'SELECT NULL::text[]' WHERE oid = 'tool_audit.bound_tenants()'::regprocedure},
	  'functions', qr/functions: tool_audit.bound_tenants\(\) changed/ ],
	[ 'a C function pointed at another symbol',
	  q{UPDATE pg_proc SET prosrc = 'signing_public_key' WHERE oid = 'tool_audit.verify_protections()'::regprocedure},
	  'functions', qr/functions: tool_audit.verify_protections\(\) changed/ ],
	[ 'a restrictive policy hiding one patient, the DDL guard off',
	  qq{$guards_off CREATE POLICY hide_one ON tool_audit.tool_calls AS RESTRICTIVE FOR SELECT
	     USING (subject_id IS DISTINCT FROM 'patient_1'); $guards_on},
	  'policies', qr/policies: tool_calls.hide_one added/ ],
	[ 'GRANT SELECT ON the audit table TO PUBLIC, the DDL guard off',
	  qq{$guards_off GRANT SELECT ON tool_audit.tool_calls TO PUBLIC; $guards_on},
	  'grants', qr/grants: tool_audit.tool_calls changed/ ],
	[ 'a column granted to PUBLIC, the DDL guard off',
	  qq{$guards_off GRANT SELECT (subject_id) ON tool_audit.tool_calls TO PUBLIC; $guards_on},
	  'grants', qr/grants: tool_audit.tool_calls.subject_id added/ ],
	[ 'an append-only trigger disabled through pg_trigger',
	  q{UPDATE pg_trigger SET tgenabled = 'D' WHERE tgname = 'tool_calls_append_only_row'},
	  'triggers', qr/protective trigger tool_calls_append_only_row disabled/ ],
	[ 'an append-only trigger pointed at another function through pg_trigger',
	  q{UPDATE pg_trigger SET tgfoid = 'tool_audit.rules_changed()'::regprocedure
	     WHERE tgname = 'tool_calls_append_only_row'},
	  'triggers', qr/triggers: tool_calls.tool_calls_append_only_row changed/ ],
	[ 'the alerts guard trigger disabled through pg_trigger',
	  q{UPDATE pg_trigger SET tgenabled = 'D' WHERE tgname = 'alerts_guard'},
	  'triggers', qr/triggers: alerts.alerts_guard changed/ ],
	[ 'an event trigger disabled',
	  q{ALTER EVENT TRIGGER tool_audit_table_rewrite DISABLE},
	  'event_triggers', qr/event trigger tool_audit_table_rewrite disabled/ ],
	[ 'a view redefined through pg_rewrite',
	  q{UPDATE pg_rewrite SET ev_enabled = 'D' WHERE ev_class = 'tool_audit.pseudonym_key_ids'::regclass},
	  'rules', qr/rules: pseudonym_key_ids._RETURN changed/ ],
	[ 'tenant bindings deleted with triggers off',
	  q{SET session_replication_role = replica; DELETE FROM tool_audit.tenant_bindings},
	  'tenant_bindings', qr/tenant binding of role clinic_reader to tenant clinic_a: gone, and no admin event/ ],
	[ 'a tenant binding inserted by hand',
	  q{INSERT INTO tool_audit.tenant_bindings VALUES ('auditor', 'clinic_b')},
	  'tenant_bindings', qr/tenant binding of role auditor to tenant clinic_b: no admin event records it/ ],
	[ 'a pseudonymization key replaced with tool_audit.restoring',
	  q{SET tool_audit.restoring = on; SET session_replication_role = replica;
	    UPDATE tool_audit.pseudonym_keys SET key = decode(repeat('00', 32), 'hex') WHERE active},
	  'pseudonym_keys', undef ],
	[ 'a sanitize rule neutered with tool_audit.restoring',
	  q{SET tool_audit.restoring = on; SET session_replication_role = replica;
	    UPDATE tool_audit.sanitize_rules SET action = 'keep' WHERE pattern = 'ward_code'},
	  'sanitize_rules', undef ],
	[ 'an alert rule disabled with triggers off',
	  q{SET session_replication_role = replica;
	    UPDATE tool_audit.alert_rules SET enabled = false WHERE rule_name = 'audit_changes'},
	  'alert_rules', undef ],
);

for my $a (@attacks)
{
	my ($name, $sql, $component, $verify_re) = @$a;
	my ($adb, $afile) = setup_db();
	$node->safe_psql($adb, $sql);
	my ($arc, $aout, $aerr) = run_verifier($adb, $afile);
	is($arc, 1, "$name: the verifier fails");
	like($aout, qr/^PROBLEM digest: security state changed since the digest: \Q$component\E\b/m,
		"$name: the verifier names $component") or diag("$aout\n$aerr");
	($arc, $aout, $aerr) = run_verifier($adb, $afile, 'auditor');
	like($aout, qr/^PROBLEM digest: security state changed since the digest: \Q$component\E\b/m,
		"$name: the verifier run as tool_audit_verifier names $component") or diag("$aout\n$aerr");
	like(problems($adb, "tool_audit.verify_digest(pg_read_file('$afile')::jsonb)"),
		qr/security state changed since the digest: \Q$component\E\b/,
		"$name: verify_digest() names $component");
	like(problems($adb, 'tool_audit.verify()'), $verify_re, "$name: verify() names it")
	  if $verify_re;
	$node->safe_psql('postgres', "DROP DATABASE $adb");
}

$node->stop;
done_testing();
