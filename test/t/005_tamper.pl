# What a superuser can still do without the preload hooks (switch the
# append-only triggers off through the catalog, then edit, delete, insert,
# swap, rewrite a head, restore an older copy) is detected: by verify() where
# the rows themselves tell, and by verify_digest() and the external verifier
# against a signed digest taken before, where only an outside commitment can.
# A dropped fork constraint (the unique chain position index) is reported by
# the external verifier.  Each attack runs in a fresh database of one cluster.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $verifier = $ENV{TA_VERIFIER} // "$ENV{TESTDIR}/verifier/tool_audit_verify";
ok(-x $verifier, "the external verifier is built ($verifier)")
  or BAIL_OUT('build it with: make -C verifier');

my $node = PostgreSQL::Test::Cluster->new('tamper');
$node->init;
$node->start;
my $base = $node->basedir;

# a signing key readable by the server only
my $key = "$base/digest_key.pem";
system_or_bail('openssl', 'genpkey', '-algorithm', 'ed25519', '-out', $key);
chmod 0600, $key;
# (the library must be loaded for ALTER SYSTEM to know the setting)
$node->safe_psql('postgres', qq{LOAD 'tool_audit'; ALTER SYSTEM SET tool_audit.signing_key_file = '$key'});
$node->reload;
$node->safe_psql('postgres', q{CREATE EXTENSION tool_audit; CREATE ROLE auditor LOGIN IN ROLE tool_audit_verifier});

my $n = 0;

# A database with rows of two tenants and admin events, and a signed digest
# of it; returns (db, digest file).
sub setup_db
{
	my $db = 'attack' . ++$n;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, q{
		CREATE EXTENSION tool_audit;
		INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, user_id, success, arguments, duration_ms)
		  SELECT 'call_' || g, 'acme', 'u' || g % 3, g % 4 <> 0,
		         jsonb_build_object('n', g, 'amount', g * 1.25, 'note', 'naïve'), g * 0.5
		    FROM generate_series(1, 30) g;
		INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
		  SELECT 'beta_' || g, 'beta', true FROM generate_series(1, 10) g;
		INSERT INTO tool_audit.admin_events (event_type, actor, tenant_id, payload)
		  SELECT 'prompt.change', 'admin', 'acme', jsonb_build_object('v', g) FROM generate_series(1, 5) g;
	});
	my $digest = $node->safe_psql($db, 'SELECT tool_audit.digest()');
	my $file = "$base/$db.digest.json";
	open my $fh, '>', $file or die "$file: $!";
	print $fh $digest;
	close $fh;
	return ($db, $file);
}

sub pubkey_file
{
	my $file = "$base/digest_pub.pem";
	open my $fh, '>', $file or die "$file: $!";
	print $fh $node->safe_psql('postgres', 'SELECT tool_audit.signing_public_key()') . "\n";
	close $fh;
	return $file;
}
my $pub = pubkey_file();

# run SQL as a superuser with the audit tables' triggers off, as an attacker would
sub tamper
{
	my ($db, $sql) = @_;
	$node->safe_psql($db, qq{
		UPDATE pg_trigger SET tgenabled = 'D'
		 WHERE tgrelid IN ('tool_audit.tool_calls'::regclass, 'tool_audit.admin_events'::regclass);
		$sql;
		UPDATE pg_trigger SET tgenabled = 'A'
		 WHERE tgrelid IN ('tool_audit.tool_calls'::regclass, 'tool_audit.admin_events'::regclass);
	});
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

# the external verifier, connected as the read-only role: (exit code, output)
sub external
{
	my ($db, $file) = @_;
	my @cmd = ($verifier, '--digest', $file, '--public-key', $pub,
		$node->connstr($db) . ' user=auditor');
	my ($stdout, $stderr);
	IPC::Run::run(\@cmd, '>', \$stdout, '2>', \$stderr);
	return ($? >> 8, $stdout . $stderr);
}

sub id_of
{
	my ($db, $tool) = @_;
	return $node->safe_psql($db, "SELECT id FROM tool_audit.tool_calls WHERE tool_name = '$tool'");
}

# --- an untouched database passes every check
{
	my ($db, $file) = setup_db();
	is(verify_out($db), '', 'untouched: verify() finds nothing');
	is(verify_digest_out($db, $file), '', 'untouched: verify_digest() finds nothing');
	my ($rc, $out) = external($db, $file);
	is($rc, 0, 'untouched: the external verifier exits 0') or diag $out;
	like($out, qr/^OK/m, 'untouched: the external verifier says OK');
}

# --- triggers left disabled
{
	my ($db) = setup_db();
	$node->safe_psql($db, q{UPDATE pg_trigger SET tgenabled = 'D' WHERE tgname = 'tool_calls_append_only_row'});
	like(verify_out($db), qr/protective trigger tool_calls_append_only_row disabled/,
		'a protective trigger disabled through the catalog is reported');
	$node->safe_psql($db, q{UPDATE pg_class SET relpersistence = 'u' WHERE oid = 'tool_audit.admin_events'::regclass});
	like(verify_out($db), qr/admin_events\s+table not logged/, 'an unlogged audit table is reported');
}

# --- update a row's content
{
	my ($db, $file) = setup_db();
	my $id = id_of($db, 'call_7');
	tamper($db, q{UPDATE tool_audit.tool_calls SET arguments = '{"n": 7, "amount": 0}' WHERE tool_name = 'call_7'});
	like(verify_out($db), qr/^tool_calls 7 $id row altered/m, 'UPDATE: verify() names the altered row');
	my ($rc, $out) = external($db, $file);
	is($rc, 1, 'UPDATE: the external verifier exits 1');
	like($out, qr/position=7 row_id=$id: row altered/, 'UPDATE: and names the row') or diag $out;
}

# --- delete a middle row
{
	my ($db, $file) = setup_db();
	tamper($db, q{DELETE FROM tool_audit.tool_calls WHERE tool_name = 'call_12'});
	like(verify_out($db), qr/^tool_calls 12 row missing/m, 'DELETE in the middle: verify() names the position');
	my ($rc, $out) = external($db, $file);
	is($rc, 1, 'DELETE in the middle: the external verifier exits 1');
	like($out, qr/position=12 .*row missing/, 'DELETE in the middle: and names the position') or diag $out;
}

# --- delete the newest rows: the rest is a consistent chain; only a digest tells
{
	my ($db, $file) = setup_db();
	tamper($db, q{DELETE FROM tool_audit.tool_calls WHERE tool_name IN ('call_28', 'call_29', 'call_30')});
	is(verify_out($db), '', 'DELETE of the newest rows: verify() alone cannot tell (documented)');
	like(verify_digest_out($db, $file), qr/rows covered by the digest are missing: the lane ends at position 27, the digest covers position 30/,
		'DELETE of the newest rows: verify_digest() reports them missing');
	my ($rc, $out) = external($db, $file);
	is($rc, 1, 'DELETE of the newest rows: the external verifier exits 1');
	like($out, qr/missing/, 'DELETE of the newest rows: and says rows are missing') or diag $out;
}

# --- insert a forged row at the next position
{
	my ($db, $file) = setup_db();
	tamper($db, q{
		INSERT INTO tool_audit.tool_calls (id, event_id, recorded_at, tool_name, tenant_id, success, recorded_by,
		                                   row_hash, chain_id, chain_lane, chain_seq, chain_hash)
		SELECT 9999, gen_random_uuid(), now(), 'forged', tenant_id, true, 'postgres',
		       row_hash, chain_id, chain_lane, chain_seq + 1, chain_hash
		  FROM tool_audit.tool_calls WHERE tool_name = 'call_30'});
	like(verify_out($db), qr/^tool_calls 31 9999 row altered/m, 'forged INSERT: verify() names the row');
	my ($rc, $out) = external($db, $file);
	is($rc, 1, 'forged INSERT: the external verifier exits 1');
	like($out, qr/row_id=9999/, 'forged INSERT: and names it') or diag $out;
}

# --- swap the contents of two rows: every column but the position and its
# link changes places, so each row still matches its own row hash
{
	my ($db, $file) = setup_db();
	tamper($db, q{
		CREATE TEMP TABLE a AS SELECT chain_seq, chain_hash FROM tool_audit.tool_calls WHERE tool_name = 'call_5';
		CREATE TEMP TABLE b AS SELECT chain_seq, chain_hash FROM tool_audit.tool_calls WHERE tool_name = 'call_6';
		UPDATE tool_audit.tool_calls SET chain_seq = -1 WHERE tool_name = 'call_5';
		UPDATE tool_audit.tool_calls SET (chain_seq, chain_hash) = (SELECT chain_seq, chain_hash FROM a)
		 WHERE tool_name = 'call_6';
		UPDATE tool_audit.tool_calls SET (chain_seq, chain_hash) = (SELECT chain_seq, chain_hash FROM b)
		 WHERE tool_name = 'call_5'});
	my $id6 = id_of($db, 'call_6');
	like(verify_out($db), qr/^tool_calls 5 $id6 chain link broken/m, 'swap: verify() reports the broken link');
	my ($rc, $out) = external($db, $file);
	is($rc, 1, 'swap: the external verifier exits 1');
	like($out, qr/position=5 row_id=$id6: chain link broken/, 'swap: and names the row') or diag $out;
}

# --- rewrite a chain head through the normal insert path: a consistent chain
{
	my ($db, $file) = setup_db();
	tamper($db, q{DELETE FROM tool_audit.tool_calls WHERE tool_name = 'beta_10'});
	$node->safe_psql($db, q{INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('beta_10_forged', 'beta', false)});
	is($node->safe_psql($db, q{SELECT chain_seq FROM tool_audit.tool_calls WHERE tool_name = 'beta_10_forged'}),
		'10', 'head rewrite: the forged row took the old head position');
	is(verify_out($db), '', 'head rewrite: verify() alone cannot tell (documented)');
	like(verify_digest_out($db, $file), qr/^tool_calls 10 \d+ chain head mismatch: rows changed since the digest/m,
		'head rewrite: verify_digest() reports it');
	my ($rc, $out) = external($db, $file);
	is($rc, 1, 'head rewrite: the external verifier exits 1');
	like($out, qr/position=10 .*changed since the digest/, 'head rewrite: and says what') or diag $out;
}

# --- restore an older copy
{
	my ($db) = setup_db();
	my $dump = "$base/$db.dump";
	$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr($db) ], 'older copy: pg_dump');
	$node->safe_psql($db, q{INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
	                        SELECT 'later_' || g, 'acme', true FROM generate_series(1, 3) g});
	my $digest = $node->safe_psql($db, 'SELECT tool_audit.digest()');
	my $file = "$base/$db.later.json";
	open my $fh, '>', $file or die;
	print $fh $digest;
	close $fh;
	$node->safe_psql('postgres', "DROP DATABASE $db WITH (FORCE)");
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	{
		local $ENV{PGOPTIONS} = '-c tool_audit.restoring=on';
		$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', $node->connstr($db), $dump ],
			'older copy: restored');
	}
	is(verify_out($db), '', 'older copy: verify() alone cannot tell (documented)');
	like(verify_digest_out($db, $file), qr/lane ends at position 30, the digest covers position 33/,
		'older copy: verify_digest() against the later digest reports the missing rows');
	my ($rc, $out) = external($db, $file);
	is($rc, 1, 'older copy: the external verifier exits 1') or diag $out;
}

# --- a digest edited after it was signed
{
	my ($db, $file) = setup_db();
	my $digest = slurp_file($file);
	$digest =~ s/"position": (\d+)/'"position": ' . ($1 - 1)/e;
	my $edited = "$base/$db.edited.json";
	open my $fh, '>', $edited or die;
	print $fh $digest;
	close $fh;
	like(verify_digest_out($db, $edited), qr/digest signature invalid/, 'edited digest: verify_digest() rejects the signature');
	my ($rc, $out) = external($db, $edited);
	is($rc, 1, 'edited digest: the external verifier exits 1');
	like($out, qr/signature invalid/, 'edited digest: because of the signature') or diag $out;
}

# --- the fork constraint dropped (issue 12 §2): the rows still verify, but
# nothing stops two rows at one position any more; the external verifier says so
{
	my ($db, $file) = setup_db();
	# the DDL guards switched off through the catalog, as an attacker would
	my $drop = sub {
		$node->safe_psql($db, qq{
			UPDATE pg_event_trigger SET evtenabled = 'D' WHERE evtname LIKE 'tool_audit%';
			$_[0];
			UPDATE pg_event_trigger SET evtenabled = 'A' WHERE evtname LIKE 'tool_audit%';
		});
	};
	$drop->('DROP INDEX tool_audit.tool_calls_chain_position');
	my ($rc, $out) = external($db, $file);
	is($rc, 1, 'fork constraint dropped: the external verifier exits 1');
	like($out, qr/^PROBLEM table=tool_calls .*fork constraint missing/m,
		'fork constraint dropped: the external verifier reports it') or diag $out;

	$drop->('CREATE INDEX tool_calls_chain_position ON tool_audit.tool_calls (chain_id, chain_lane, chain_seq)');
	($rc, $out) = external($db, $file);
	like($out, qr/^PROBLEM table=tool_calls .*fork constraint missing/m,
		'a non-unique index of the same name does not count') or diag $out;

	$drop->('DROP INDEX tool_audit.tool_calls_chain_position;
	         CREATE UNIQUE INDEX tool_calls_chain_position ON tool_audit.tool_calls (chain_id, chain_lane, chain_seq)
	          WHERE chain_seq > 0');
	($rc, $out) = external($db, $file);
	like($out, qr/^PROBLEM table=tool_calls .*fork constraint missing/m,
		'a partial unique index does not count') or diag $out;

	$drop->('DROP INDEX tool_audit.tool_calls_chain_position;
	         CREATE UNIQUE INDEX tool_calls_chain_position ON tool_audit.tool_calls (chain_id, chain_lane, chain_seq)');
	($rc, $out) = external($db, $file);
	is($rc, 0, 'fork constraint recreated: the external verifier exits 0') or diag $out;

	$drop->('DROP INDEX tool_audit.admin_events_chain_position; DROP INDEX tool_audit.data_changes_chain_position');
	my @cmd = ($verifier, '--all', '--digest', $file, '--public-key', $pub, $node->connstr($db) . ' user=auditor');
	my ($stdout, $stderr);
	IPC::Run::run(\@cmd, '>', \$stdout, '2>', \$stderr);
	like($stdout, qr/^PROBLEM table=admin_events .*fork constraint missing: .*\(admin_events_chain_position\)/m,
		'admin_events: a dropped fork constraint is reported') or diag "$stdout$stderr";
	like($stdout, qr/^PROBLEM table=data_changes .*fork constraint missing: .*\(data_changes_chain_position\)/m,
		'data_changes: a dropped fork constraint is reported');
	unlike($stdout, qr/table=tool_calls/, 'tool_calls (recreated) is not reported');
}

$node->stop;
done_testing();
