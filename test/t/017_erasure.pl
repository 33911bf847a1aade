# Erasure (1.4): rows changed by erase_subject() are accepted by verify(),
# verify_digest() (with a digest taken before the erasure) and the external
# verifier; what a superuser does with the guards switched off through the
# catalog is reported by all three: markers written by hand (with or without
# recomputing the row hash and every later link), an erasures entry inserted
# or changed by hand, an erased row altered afterwards.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $verifier = $ENV{TA_VERIFIER} // "$ENV{TESTDIR}/verifier/tool_audit_verify";
ok(-x $verifier, "the external verifier is built ($verifier)")
  or BAIL_OUT('build it with: make -C verifier');

my $node = PostgreSQL::Test::Cluster->new('erasure');
$node->init;
$node->start;
my $base = $node->basedir;
$node->safe_psql('postgres', q{
	CREATE EXTENSION tool_audit;
	CREATE ROLE auditor LOGIN IN ROLE tool_audit_verifier;
	CREATE ROLE dpo IN ROLE tool_audit_admin;
});

my $n = 0;

# A database with a subject's rows among others, a digest taken before the
# erasure, then the erasure of "cust-881" by an admin; returns (db, digest file).
sub setup_db
{
	my $db = 'erase' . ++$n;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, q{
		CREATE EXTENSION tool_audit;
		INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, user_id, subject_id, success, arguments,
		                                   error, client_ip, user_agent)
		  SELECT 'call_' || g, 'acme', 'agent' || g % 3, CASE WHEN g % 5 = 0 THEN 'cust-881' ELSE 'cust-' || g END,
		         g % 4 <> 0, jsonb_build_object('n', g, 'note', 'naïve'),
		         CASE WHEN g % 4 = 0 THEN 'failed for cust-' || g END, '10.0.0.1', 'ui/1'
		    FROM generate_series(1, 30) g;
		INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, user_id, success)
		  SELECT 'beta_' || g, 'beta', 'cust-881', true FROM generate_series(1, 4) g;
		INSERT INTO tool_audit.admin_events (event_type, actor, tenant_id, payload)
		  VALUES ('account.update', 'cust-881', 'beta', '{"field": "phone"}'),
		         ('support.note', 'agent1', 'acme', '{"subject_id": "cust-881", "note": "x"}'),
		         ('support.note', 'agent1', 'acme', '{"subject_id": "cust-7", "note": "y"}');
	});
	my $digest = $node->safe_psql($db, 'SELECT tool_audit.digest()');
	my $file = "$base/$db.digest.json";
	open my $fh, '>', $file or die "$file: $!";
	print $fh $digest;
	close $fh;
	$node->safe_psql($db, q{
		SET ROLE dpo;
		SELECT tool_audit.erase_subject('cust-881', 'request 2026-7', 'GDPR Art. 17(1)(a)');
	});
	return ($db, $file);
}

# run SQL as a superuser with the audit tables' and the erasures' triggers off
sub tamper
{
	my ($db, $sql) = @_;
	my $rels = q{('tool_audit.tool_calls'::regclass, 'tool_audit.admin_events'::regclass, 'tool_audit.erasures'::regclass)};
	$node->safe_psql($db, qq{
		UPDATE pg_trigger SET tgenabled = 'D' WHERE tgrelid IN $rels;
		$sql;
		UPDATE pg_trigger SET tgenabled = 'A' WHERE tgrelid IN $rels;
	});
}

# recompute the row hash of one row and every link after it in its lane, as
# a superuser covering their tracks would
my $rechain = q{
	DO $$
	DECLARE r record; prev bytea; first boolean := true; target record;
	BEGIN
		SELECT * INTO target FROM tool_audit.tool_calls WHERE tool_name = 'call_11';
		UPDATE tool_audit.tool_calls t SET row_hash = tool_audit.compute_row_hash(t) WHERE t.id = target.id;
		SELECT chain_hash INTO prev FROM tool_audit.tool_calls
		 WHERE chain_id = target.chain_id AND chain_lane = target.chain_lane AND chain_seq = target.chain_seq - 1;
		FOR r IN SELECT id, chain_id, chain_lane, chain_seq, row_hash FROM tool_audit.tool_calls
		          WHERE chain_id = target.chain_id AND chain_lane = target.chain_lane AND chain_seq >= target.chain_seq
		          ORDER BY chain_seq LOOP
			prev := tool_audit.chain_link(r.chain_id, r.chain_lane, r.chain_seq,
			                              coalesce(prev, decode(repeat('00', 32), 'hex')), r.row_hash);
			UPDATE tool_audit.tool_calls SET chain_hash = prev WHERE id = r.id;
		END LOOP;
	END $$
};

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
	my @cmd = ($verifier, '--all', '--digest', $file, $node->connstr($db) . ' user=auditor');
	my ($stdout, $stderr);
	IPC::Run::run(\@cmd, '>', \$stdout, '2>', \$stderr);
	return ($? >> 8, $stdout . $stderr);
}

sub id_of
{
	my ($db, $tool) = @_;
	return $node->safe_psql($db, "SELECT id FROM tool_audit.tool_calls WHERE tool_name = '$tool'");
}

# --- a sanctioned erasure passes every check, also against a digest taken before it
{
	my ($db, $file) = setup_db();
	is($node->safe_psql($db, q{SELECT count(*) FROM tool_audit.erasures}), '12',
		'erasure: one entry per erased row (6 calls naming the subject, 4 by it, 2 admin events)');
	is($node->safe_psql($db, q{SELECT count(*) FROM tool_audit.tool_calls t WHERE strpos(t::text, 'cust-881') > 0}),
		'0', 'erasure: no call can be found by the subject id');
	is($node->safe_psql($db, q{SELECT count(*) FROM tool_audit.admin_events a WHERE strpos(a::text, 'cust-881') > 0}),
		'0', 'erasure: no admin event can be found by the subject id');
	is(verify_out($db), '', 'erasure: verify() finds nothing');
	is(verify_digest_out($db, $file), '', 'erasure: verify_digest() with a digest from before finds nothing');
	my ($rc, $out) = external($db, $file);
	is($rc, 0, 'erasure: the external verifier exits 0') or diag $out;
	like($out, qr/^OK/m, 'erasure: the external verifier says OK');

	# the same rows erased again for another subject: the later entry counts
	$node->safe_psql($db, q{SET ROLE dpo; SELECT tool_audit.erase_subject('agent0', 'left', 'GDPR Art. 17(1)(a)')});
	is(verify_out($db), '', 'second erasure: verify() finds nothing');
	($rc, $out) = external($db, $file);
	is($rc, 0, 'second erasure: the external verifier exits 0') or diag $out;
}

# --- what is left on disk: the row versions from before the erasure stay in
# the table's pages (dead) until VACUUM; pageinspect reads them
{
	my ($db) = setup_db();
	$node->safe_psql($db, 'CREATE EXTENSION pageinspect');
	my $pages = q{SELECT count(*) FROM generate_series(0, pg_relation_size('tool_audit.tool_calls') / 8192 - 1) b,
	                     heap_page_items(get_raw_page('tool_audit.tool_calls', b::int)) i
	               WHERE i.t_data IS NOT NULL AND position('\x636173742d383831'::bytea IN i.t_data) > 0};
	$pages =~ s/636173742d383831/637573742d383831/;	# "cust-881"
	cmp_ok($node->safe_psql($db, $pages), '>', 0,
		'before VACUUM: the old row versions, with the subject id, are still in the pages');
	$node->safe_psql($db, 'VACUUM tool_audit.tool_calls');
	is($node->safe_psql($db, $pages), '0', 'after VACUUM: no tuple holds the subject id');
	is(verify_out($db), '', 'after VACUUM: verify() finds nothing');
	my $raw = q{SELECT count(*) FROM generate_series(0, pg_relation_size('tool_audit.tool_calls') / 8192 - 1) b
	             WHERE position('\x637573742d383831'::bytea IN get_raw_page('tool_audit.tool_calls', b::int)) > 0};
	# the bytes themselves stay in the pages' free space until overwritten
	diag('pages whose bytes still hold the subject id after VACUUM: ' . $node->safe_psql($db, $raw));
	my ($rc, $out, $err) = $node->psql($db, 'VACUUM FULL tool_audit.tool_calls');
	is($rc, 0, 'VACUUM FULL of an audit table is allowed') or diag $err;
	is($node->safe_psql($db, $raw), '0', 'after VACUUM FULL: no page of the table holds the bytes');
	is(verify_out($db), '', 'after VACUUM FULL: verify() finds nothing');
}

# --- markers written by hand: the row no longer matches its row hash
{
	my ($db, $file) = setup_db();
	my $id = id_of($db, 'call_11');
	tamper($db, q{UPDATE tool_audit.tool_calls SET subject_id = 'tool_audit:erased',
	                     arguments = '{"tool_audit:erased": true}' WHERE tool_name = 'call_11'});
	like(verify_out($db), qr/^tool_calls 11 $id erasure marker on a row that no verified erasure lists/m,
		'markers by hand: verify() names the row');
	my ($rc, $out) = external($db, $file);
	is($rc, 1, 'markers by hand: the external verifier exits 1');
	like($out, qr/position=11 row_id=$id: erasure marker without a verified erasure/,
		'markers by hand: and names the row') or diag $out;
}

# --- markers written by hand, the row hash and every later link recomputed:
# the chain is consistent again, the marker without an entry is not
{
	my ($db, $file) = setup_db();
	my $id = id_of($db, 'call_11');
	tamper($db, q{UPDATE tool_audit.tool_calls SET subject_id = 'tool_audit:erased' WHERE tool_name = 'call_11'});
	tamper($db, $rechain);
	is(verify_out($db), "tool_calls 11 $id erasure marker on a row that no verified erasure lists: written outside erase_subject()",
		'markers and hashes by hand: verify() reports the marker, and nothing else');
	like(verify_digest_out($db, $file), qr/chain head mismatch/,
		'markers and hashes by hand: verify_digest() reports the changed chain');
	my ($rc, $out) = external($db, $file);
	is($rc, 1, 'markers and hashes by hand: the external verifier exits 1');
	like($out, qr/row_id=$id: erasure marker without a verified erasure/,
		'markers and hashes by hand: and names the row') or diag $out;
}

# --- ... and an erasures entry inserted by hand for it, naming the real
# erasure event: the event does not commit to it
{
	my ($db, $file) = setup_db();
	my $id = id_of($db, 'call_11');
	tamper($db, q{UPDATE tool_audit.tool_calls SET subject_id = 'tool_audit:erased' WHERE tool_name = 'call_11'});
	tamper($db, q{INSERT INTO tool_audit.erasures
	              SELECT (SELECT id FROM tool_audit.admin_events WHERE event_type = 'tool_audit.retention.erase'),
	                     'tool_calls', t.id, '{subject_id}', tool_audit.compute_row_hash(t)
	                FROM tool_audit.tool_calls t WHERE tool_name = 'call_11'});
	my $v = verify_out($db);
	like($v, qr/^admin_events \d+ erasure event's entries in tool_audit.erasures \(\d+\) do not match its erasures_hash/m,
		'entry by hand: verify() reports the event that does not commit to it');
	like($v, qr/^tool_calls 11 $id erasure marker on a row that no verified erasure lists/m,
		'entry by hand: and the row is not accepted');
	my ($rc, $out) = external($db, $file);
	is($rc, 1, 'entry by hand: the external verifier exits 1');
	like($out, qr/erasure event does not commit to the erasure entries naming it/,
		'entry by hand: the external verifier reports the event') or diag $out;
	like($out, qr/row_id=$id: erasure marker without a verified erasure/,
		'entry by hand: and the row') or diag $out;
}

# --- an erasures entry naming an admin event that is no erasure
{
	my ($db, $file) = setup_db();
	tamper($db, q{INSERT INTO tool_audit.erasures
	              SELECT (SELECT min(id) FROM tool_audit.admin_events), 'tool_calls', t.id, '{error}',
	                     tool_audit.compute_row_hash(t)
	                FROM tool_audit.tool_calls t WHERE tool_name = 'call_12'});
	like(verify_out($db), qr/erasure entry names admin event \d+, which is not a tool_audit.retention.erase event/,
		'entry for another event: verify() reports it');
	my ($rc, $out) = external($db, $file);
	is($rc, 1, 'entry for another event: the external verifier exits 1');
	like($out, qr/which is not an erasure event/, 'entry for another event: and says so') or diag $out;
}

# --- an erased row altered afterwards
{
	my ($db, $file) = setup_db();
	my $id = id_of($db, 'call_10');
	tamper($db, q{UPDATE tool_audit.tool_calls SET purpose = 'changed later' WHERE tool_name = 'call_10'});
	like(verify_out($db), qr/^tool_calls 10 $id row altered after its erasure/m,
		'erased row altered: verify() names it');
	like(verify_digest_out($db, $file), qr/chain head mismatch/, 'erased row altered: verify_digest() too');
	my ($rc, $out) = external($db, $file);
	is($rc, 1, 'erased row altered: the external verifier exits 1');
	like($out, qr/position=10 row_id=$id: row altered after its erasure/, 'erased row altered: and names it')
	  or diag $out;

	# changing the entry's row_hash_after to match does not help: the event commits to the old one
	tamper($db, q{UPDATE tool_audit.erasures e SET row_hash_after = tool_audit.compute_row_hash(t)
	                FROM tool_audit.tool_calls t WHERE e.table_name = 'tool_calls' AND t.id = e.row_id
	                 AND t.tool_name = 'call_10'});
	like(verify_out($db), qr/do not match its erasures_hash/, 'entry changed to match: verify() reports the event');
	($rc, $out) = external($db, $file);
	is($rc, 1, 'entry changed to match: the external verifier exits 1');
	like($out, qr/does not commit/, 'entry changed to match: and reports the event') or diag $out;
}

# --- an erasures entry deleted: the row's markers are no longer accepted
{
	my ($db, $file) = setup_db();
	my $id = id_of($db, 'call_5');
	tamper($db, qq{DELETE FROM tool_audit.erasures WHERE table_name = 'tool_calls' AND row_id = $id});
	my $v = verify_out($db);
	like($v, qr/do not match its erasures_hash/, 'entry deleted: verify() reports the event');
	like($v, qr/^tool_calls 5 $id erasure marker/m, 'entry deleted: and the row');
	my ($rc, $out) = external($db, $file);
	is($rc, 1, 'entry deleted: the external verifier exits 1');
	like($out, qr/row_id=$id: erasure marker without a verified erasure/, 'entry deleted: and names the row')
	  or diag $out;
}

$node->stop;
done_testing();
