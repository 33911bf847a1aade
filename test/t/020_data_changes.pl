# tool_audit.data_changes (1.5) against a superuser's tampering, as
# 005_tamper.pl does for the other two tables: with the append-only triggers
# switched off through the catalog, an edited change row, a deleted one, a
# forged one at the next position, two rows swapped, the newest rows removed
# and a forked position are each named by verify(), by verify_digest()
# against a signed digest taken before, and by the external verifier, which
# walks the third table too.  With the library preloaded, the superuser's
# UPDATE and DELETE are refused outright.  Dump and restore: DumpFixture.pm
# (004, 012, 015) carries change rows; purge and erasure: pg_regress
# data_changes_audit.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $verifier = $ENV{TA_VERIFIER} // "$ENV{TESTDIR}/verifier/tool_audit_verify";
ok(-x $verifier, "the external verifier is built ($verifier)")
  or BAIL_OUT('build it with: make -C verifier');

my $node = PostgreSQL::Test::Cluster->new('data_changes');
$node->init;
$node->start;
my $base = $node->basedir;

my $key = "$base/digest_key.pem";
system_or_bail('openssl', 'genpkey', '-algorithm', 'ed25519', '-out', $key);
chmod 0600, $key;
$node->safe_psql('postgres', qq{LOAD 'tool_audit'; ALTER SYSTEM SET tool_audit.signing_key_file = '$key'});
$node->reload;
$node->safe_psql('postgres', q{CREATE EXTENSION tool_audit; CREATE ROLE auditor LOGIN IN ROLE tool_audit_verifier});
my $pub = "$base/digest_pub.pem";
{
	open my $fh, '>', $pub or die "$pub: $!";
	print $fh $node->safe_psql('postgres', 'SELECT tool_audit.signing_public_key()') . "\n";
	close $fh;
}

my $n = 0;

# A database with a call, 12 changes of tenant acme made in it and 3 of
# tenant beta, and a signed digest; returns (db, digest file).
sub setup_db
{
	my $db = 'dc' . ++$n;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, q{
		CREATE EXTENSION tool_audit;
		INSERT INTO tool_audit.tool_calls (event_id, tool_name, tenant_id, success)
		  VALUES ('00000000-0000-4000-8000-0000000ca101', 'issue_refund', 'acme', true);
		INSERT INTO tool_audit.data_changes (table_name, operation, row_key, old_values, new_values, tenant_id, call_event_id)
		  SELECT 'public.orders', 'UPDATE', jsonb_build_object('id', g), '{"status": "paid"}',
		         jsonb_build_object('status', 'refunded', 'n', g), 'acme', '00000000-0000-4000-8000-0000000ca101'
		    FROM generate_series(1, 12) g;
		INSERT INTO tool_audit.data_changes (table_name, operation, row_key, new_values, tenant_id)
		  SELECT 'public.customers', 'INSERT', jsonb_build_object('id', 100 + g), '{"plan": "basic"}', 'beta'
		    FROM generate_series(1, 3) g;
	});
	my $digest = $node->safe_psql($db, 'SELECT tool_audit.digest()');
	my $file = "$base/$db.digest.json";
	open my $fh, '>', $file or die "$file: $!";
	print $fh $digest;
	close $fh;
	return ($db, $file);
}

# run SQL as a superuser with data_changes' triggers off, as an attacker would
sub tamper
{
	my ($db, $sql) = @_;
	$node->safe_psql($db, qq{
		UPDATE pg_trigger SET tgenabled = 'D' WHERE tgrelid = 'tool_audit.data_changes'::regclass;
		$sql;
		UPDATE pg_trigger SET tgenabled = 'A' WHERE tgrelid = 'tool_audit.data_changes'::regclass;
	});
}

sub verify_out
{
	my ($db) = @_;
	return $node->safe_psql($db,
		q{SELECT table_name || ' ' || coalesce(position::text, '') || ' ' || coalesce(row_id::text, '') || ' ' || problem
		    FROM tool_audit.verify()});
}

sub verify_digest_out
{
	my ($db, $file) = @_;
	my $digest = slurp_file($file);
	return $node->safe_psql($db,
		qq{SELECT table_name || ' ' || coalesce(position::text, '') || ' ' || coalesce(row_id::text, '') || ' ' || problem
		     FROM tool_audit.verify_digest('$digest')});
}

sub external
{
	my ($db, $file, @opts) = @_;
	my @cmd = ($verifier, '--digest', $file, '--public-key', $pub, @opts,
		$node->connstr($db) . ' user=auditor');
	my ($stdout, $stderr);
	IPC::Run::run(\@cmd, '>', \$stdout, '2>', \$stderr);
	return ($? >> 8, $stdout . $stderr);
}

sub id_at
{
	my ($db, $seq) = @_;
	return $node->safe_psql($db,
		"SELECT id FROM tool_audit.data_changes WHERE tenant_id = 'acme' AND chain_seq = $seq");
}

# --- untouched: every check passes, and the verifier counts the change rows
{
	my ($db, $file) = setup_db();
	like(slurp_file($file), qr/"table": "data_changes"/, 'the digest has data_changes heads');
	is(verify_out($db), '', 'untouched: verify() finds nothing');
	is(verify_digest_out($db, $file), '', 'untouched: verify_digest() finds nothing');
	my ($rc, $out) = external($db, $file);
	is($rc, 0, 'untouched: the external verifier exits 0') or diag $out;
	like($out, qr/^OK: .*data_changes 15 rows in 2 chains; digest heads checked: 3$/m,
		'untouched: the external verifier walked the 15 change rows and checked their heads');
}

# --- an edited change row
{
	my ($db, $file) = setup_db();
	my $id = id_at($db, 7);
	tamper($db, qq{UPDATE tool_audit.data_changes SET new_values = '{"status": "paid"}' WHERE id = $id});
	like(verify_out($db), qr/^data_changes 7 $id row altered/m, 'UPDATE: verify() names the altered change row');
	like(verify_digest_out($db, $file), qr/^data_changes 7 $id row altered/m, 'UPDATE: verify_digest() names it too');
	my ($rc, $out) = external($db, $file);
	is($rc, 1, 'UPDATE: the external verifier exits 1');
	like($out, qr/data_changes.*position=7 row_id=$id: row altered/, 'UPDATE: and names the row') or diag $out;
}

# --- a deleted change row
{
	my ($db, $file) = setup_db();
	my $id = id_at($db, 5);
	tamper($db, qq{DELETE FROM tool_audit.data_changes WHERE id = $id});
	like(verify_out($db), qr/^data_changes 5  row missing/m, 'DELETE: verify() names the position');
	my ($rc, $out) = external($db, $file);
	is($rc, 1, 'DELETE: the external verifier exits 1');
	like($out, qr/data_changes.*position=5 .*row missing/, 'DELETE: and names the position') or diag $out;
}

# --- the newest change rows removed: only the digest tells
{
	my ($db, $file) = setup_db();
	tamper($db, q{DELETE FROM tool_audit.data_changes WHERE tenant_id = 'acme' AND chain_seq > 10});
	is(verify_out($db), '', 'DELETE of the newest: verify() alone cannot tell (documented)');
	like(verify_digest_out($db, $file), qr/^data_changes 11  rows covered by the digest are missing: the lane ends at position 10, the digest covers position 12/m,
		'DELETE of the newest: verify_digest() reports them missing');
	my ($rc, $out) = external($db, $file);
	is($rc, 1, 'DELETE of the newest: the external verifier exits 1');
	like($out, qr/missing/, 'DELETE of the newest: and says rows are missing') or diag $out;
}

# --- a forged change row at the next position
{
	my ($db, $file) = setup_db();
	tamper($db, q{
		INSERT INTO tool_audit.data_changes (id, event_id, recorded_at, table_name, operation, tenant_id, recorded_by,
		                                     retention_policy, expires_at, row_hash, chain_id, chain_lane, chain_seq, chain_hash)
		SELECT 9999, gen_random_uuid(), now(), 'public.orders', 'DELETE', tenant_id, 'postgres',
		       retention_policy, expires_at, row_hash, chain_id, chain_lane, chain_seq + 1, chain_hash
		  FROM tool_audit.data_changes WHERE tenant_id = 'acme' AND chain_seq = 12});
	like(verify_out($db), qr/^data_changes 13 9999 row altered/m, 'forged INSERT: verify() names the row');
	my ($rc, $out) = external($db, $file);
	is($rc, 1, 'forged INSERT: the external verifier exits 1');
	like($out, qr/row_id=9999/, 'forged INSERT: and names it') or diag $out;
}

# --- two change rows swapped: each still matches its own hash, the links do not
{
	my ($db, $file) = setup_db();
	my $id4 = id_at($db, 4);
	tamper($db, q{
		CREATE TEMP TABLE a AS SELECT chain_seq, chain_hash FROM tool_audit.data_changes WHERE tenant_id = 'acme' AND chain_seq = 3;
		CREATE TEMP TABLE b AS SELECT chain_seq, chain_hash FROM tool_audit.data_changes WHERE tenant_id = 'acme' AND chain_seq = 4;
		UPDATE tool_audit.data_changes SET chain_seq = -1 WHERE tenant_id = 'acme' AND chain_seq = 3;
		UPDATE tool_audit.data_changes SET (chain_seq, chain_hash) = (SELECT chain_seq, chain_hash FROM a)
		 WHERE tenant_id = 'acme' AND chain_seq = 4;
		UPDATE tool_audit.data_changes SET (chain_seq, chain_hash) = (SELECT chain_seq, chain_hash FROM b)
		 WHERE tenant_id = 'acme' AND chain_seq = -1});
	like(verify_out($db), qr/^data_changes 3 $id4 chain link broken/m, 'swap: verify() reports the broken link');
	my ($rc, $out) = external($db, $file);
	is($rc, 1, 'swap: the external verifier exits 1');
	like($out, qr/position=3 row_id=$id4: chain link broken/, 'swap: and names the row') or diag $out;
}

# --- a forked position: a second row at a position already taken is refused
# by the unique chain position index; with the index dropped (event triggers
# switched off through the catalog) and the fork stored, verify() reports the
# index missing and the external verifier the position
{
	my ($db, $file) = setup_db();
	my ($ret, $stdout, $stderr) = $node->psql($db, q{
		UPDATE pg_trigger SET tgenabled = 'D' WHERE tgrelid = 'tool_audit.data_changes'::regclass;
		INSERT INTO tool_audit.data_changes (id, event_id, recorded_at, table_name, operation, tenant_id, recorded_by,
		                                     row_hash, chain_id, chain_lane, chain_seq, chain_hash)
		SELECT 9998, gen_random_uuid(), now(), 'public.orders', 'DELETE', tenant_id, 'postgres',
		       row_hash, chain_id, chain_lane, chain_seq, chain_hash
		  FROM tool_audit.data_changes WHERE tenant_id = 'acme' AND chain_seq = 6});
	like($stderr, qr/duplicate key value violates unique constraint "data_changes_chain_position"/,
		'fork: a second row at a taken position is refused by the unique index');
	$node->safe_psql($db, q{UPDATE pg_trigger SET tgenabled = 'A' WHERE tgrelid = 'tool_audit.data_changes'::regclass});
	$node->safe_psql($db, q{
		UPDATE pg_event_trigger SET evtenabled = 'D' WHERE evtname LIKE 'tool_audit_%';
		DROP INDEX tool_audit.data_changes_chain_position;
		UPDATE pg_event_trigger SET evtenabled = 'A' WHERE evtname LIKE 'tool_audit_%'});
	$node->safe_psql($db, q{
		UPDATE pg_trigger SET tgenabled = 'D' WHERE tgrelid = 'tool_audit.data_changes'::regclass;
		INSERT INTO tool_audit.data_changes (id, event_id, recorded_at, table_name, operation, tenant_id, recorded_by,
		                                     row_hash, chain_id, chain_lane, chain_seq, chain_hash)
		SELECT 9998, gen_random_uuid(), now(), 'public.orders', 'DELETE', tenant_id, 'postgres',
		       row_hash, chain_id, chain_lane, chain_seq, chain_hash
		  FROM tool_audit.data_changes WHERE tenant_id = 'acme' AND chain_seq = 6;
		UPDATE pg_trigger SET tgenabled = 'A' WHERE tgrelid = 'tool_audit.data_changes'::regclass});
	like(verify_out($db), qr/chain position index data_changes_chain_position missing/,
		'fork: with the index dropped, verify() reports it missing');
	# (--all: the missing fork constraint is reported first)
	my ($rc, $out) = external($db, $file, '--all');
	is($rc, 1, 'fork: the external verifier exits 1');
	like($out, qr/fork constraint missing/, 'fork: it reports the missing fork constraint') or diag $out;
	like($out, qr/table=data_changes .*position=6 /, 'fork: and names the forked position') or diag $out;
}

# --- a protective trigger left disabled is reported
{
	my ($db) = setup_db();
	$node->safe_psql($db, q{UPDATE pg_trigger SET tgenabled = 'D' WHERE tgname = 'data_changes_append_only_row'});
	like(verify_out($db), qr/^data_changes\s+protective trigger data_changes_append_only_row disabled/m,
		'a disabled data_changes trigger is reported');
}

# --- a database still at 1.4 (the library is 1.5): no data_changes, and
# verify(), digest() and the external verifier check it without one
{
	$node->safe_psql('postgres', 'CREATE DATABASE at14');
	$node->safe_psql('at14', q{
		CREATE EXTENSION tool_audit VERSION '1.4';
		INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('old_call', 'acme', true)});
	is($node->safe_psql('at14', 'SELECT count(*) FROM tool_audit.verify()'), '0', 'at 1.4: verify() finds nothing');
	is($node->safe_psql('at14', q{SELECT count(*) FROM jsonb_array_elements(tool_audit.digest()->'heads') h
	                               WHERE h->>'table' = 'data_changes'}), '0', 'at 1.4: the digest has no data_changes heads');
	is($node->safe_psql('at14', 'SELECT count(*) FROM tool_audit.verify_digest(tool_audit.digest())'), '0',
		'at 1.4: verify_digest() finds nothing');
	my ($stdout, $stderr);
	IPC::Run::run([ $verifier, $node->connstr('at14') . ' user=auditor' ], '>', \$stdout, '2>', \$stderr);
	is($? >> 8, 0, 'at 1.4: the external verifier exits 0') or diag $stdout . $stderr;
	like($stdout, qr/data_changes 0 rows in 0 chains/, 'at 1.4: and skips data_changes');
}

$node->stop;

# --- preloaded: a superuser's UPDATE and DELETE are refused even with the
# triggers off in the catalog
{
	my $pre = PostgreSQL::Test::Cluster->new('data_changes_pre');
	$pre->init;
	$pre->append_conf('postgresql.conf', "shared_preload_libraries = 'tool_audit'");
	$pre->start;
	$pre->safe_psql('postgres', q{
		CREATE EXTENSION tool_audit;
		INSERT INTO tool_audit.data_changes (table_name, operation, row_key, tenant_id)
		  VALUES ('public.orders', 'DELETE', '{"id": 1}', 'acme');
		UPDATE pg_trigger SET tgenabled = 'D' WHERE tgrelid = 'tool_audit.data_changes'::regclass});
	my ($ret, $stdout, $stderr) = $pre->psql('postgres', q{UPDATE tool_audit.data_changes SET row_key = '{"id": 2}'});
	like($stderr, qr/UPDATE is not allowed on tool_audit table data_changes/, 'preloaded: a superuser UPDATE is refused');
	($ret, $stdout, $stderr) = $pre->psql('postgres', q{DELETE FROM tool_audit.data_changes});
	like($stderr, qr/DELETE is not allowed on tool_audit table data_changes/, 'preloaded: a superuser DELETE is refused');
	is($pre->safe_psql('postgres', q{SELECT row_key FROM tool_audit.data_changes}), '{"id": 1}', 'preloaded: the row is as written');
	$pre->stop;
}

done_testing();
