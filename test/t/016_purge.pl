# Purges against a superuser, with and without shared_preload_libraries:
# a sanctioned purge leaves verify(), verify_digest() and the external
# verifier satisfied (a digest taken before names the purged spans as such)
# and survives pg_dump/pg_restore with its lanes continuing; a forged purge
# (rows deleted with the guards bypassed, a faked anchor, a faked purge
# event) is reported by all three.  With the library preloaded the forged
# DELETE itself is refused.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $verifier = $ENV{TA_VERIFIER} // "$ENV{TESTDIR}/verifier/tool_audit_verify";
ok(-x $verifier, "the external verifier is built ($verifier)")
  or BAIL_OUT('build it with: make -C verifier');

my $node = PostgreSQL::Test::Cluster->new('purge');
$node->init;
$node->start;
my $base = $node->basedir;
$node->safe_psql('postgres', q{CREATE EXTENSION tool_audit; CREATE ROLE auditor LOGIN IN ROLE tool_audit_verifier});
my $n = 0;

# A database with rows born long ago (restored with their times and the
# policy and expiry the insert trigger gives: tenants "old" and "old2", and
# admin events of "old") and recent rows ("new"), and a digest of it;
# returns (db, digest file).
sub setup_db
{
	my $db = 'purge' . ++$n;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, q{
		CREATE EXTENSION tool_audit;
		SET tool_audit.restoring = on;
		INSERT INTO tool_audit.tool_calls (id, recorded_at, tool_name, tenant_id, success, retention_policy, expires_at)
		  SELECT nextval('tool_audit.tool_calls_id_seq'), now() - interval '800 days', 'search', t, true,
		         'general', now() - interval '435 days'
		    FROM generate_series(1, 10) g, unnest(ARRAY['old', 'old2']) t;
		INSERT INTO tool_audit.admin_events (id, occurred_at, event_type, actor, tenant_id, retention_policy, expires_at)
		  SELECT nextval('tool_audit.admin_events_id_seq'), now() - interval '800 days', 'prompt.change', 'a', 'old',
		         'admin', now() - interval '435 days'
		    FROM generate_series(1, 3);
		RESET tool_audit.restoring;
		INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
		  SELECT 'search', 'new', true FROM generate_series(1, 5);
	});
	my $file = "$base/$db.digest.json";
	open my $fh, '>', $file or die "$file: $!";
	print $fh $node->safe_psql($db, 'SELECT tool_audit.digest()');
	close $fh;
	return ($db, $file);
}

sub verify_out
{
	my ($db) = @_;
	return $node->safe_psql($db,
		q{SELECT coalesce(string_agg(concat_ws(' ', table_name, "position", problem), E'\n' ORDER BY table_name, "position", problem), '')
		    FROM tool_audit.verify()});
}

sub verify_digest_out
{
	my ($db, $file) = @_;
	my $digest = slurp_file($file);
	return $node->safe_psql($db,
		qq{SELECT coalesce(string_agg(concat_ws(' ', table_name, "position", problem), E'\\n' ORDER BY table_name, "position", problem), '')
		     FROM tool_audit.verify_digest('$digest')});
}

sub external
{
	my ($db, $file) = @_;
	my @cmd = ($verifier, '--all', ($file ? ('--digest', $file) : ()), $node->connstr($db) . ' user=auditor');
	my ($stdout, $stderr);
	IPC::Run::run(\@cmd, '>', \$stdout, '2>', \$stderr);
	return ($? >> 8, $stdout . $stderr);
}

# run SQL as a superuser with the audit tables' triggers off, as an attacker would
sub tamper
{
	my ($db, $sql) = @_;
	return $node->psql($db, qq{
		BEGIN;
		UPDATE pg_trigger SET tgenabled = 'D'
		 WHERE tgrelid IN ('tool_audit.tool_calls'::regclass, 'tool_audit.admin_events'::regclass);
		$sql;
		UPDATE pg_trigger SET tgenabled = 'A'
		 WHERE tgrelid IN ('tool_audit.tool_calls'::regclass, 'tool_audit.admin_events'::regclass);
		COMMIT;
	});
}

sub purge
{
	my ($db) = @_;
	return $node->safe_psql($db, q{SELECT tool_audit.purge_expired() ->> 'purge_event_id'});
}

# the chain_hash of a row of tenant "new" at a position, for a forger who
# read it before deleting
sub link_of
{
	my ($db, $seq) = @_;
	return $node->safe_psql($db,
		"SELECT encode(chain_hash, 'hex') FROM tool_audit.tool_calls WHERE tenant_id = 'new' AND chain_seq = $seq");
}

sub faked_anchor_sql
{
	my ($db, $event, $after) = @_;
	return qq{INSERT INTO tool_audit.purge_anchors (purge_event_id, table_name, chain_id, chain_lane, first_seq, last_seq,
	                                               link_before, link_after, rows_removed, max_expires_at, tenant_id)
	          SELECT $event, 'tool_calls', chain_id, chain_lane, 1, 2, decode(repeat('00', 32), 'hex'),
	                 decode('$after', 'hex'), 2, now() - interval '1 day', 'new'
	            FROM tool_audit.tool_calls WHERE tenant_id = 'new' LIMIT 1};
}

for my $mode ('plain', 'preloaded')
{
	if ($mode eq 'preloaded')
	{
		$node->append_conf('postgresql.conf', "shared_preload_libraries = 'tool_audit'");
		$node->restart;
	}

	# --- a sanctioned purge
	{
		my ($db, $file) = setup_db();
		my $ev = purge($db);
		is($node->safe_psql($db, q{SELECT string_agg(DISTINCT tenant_id, ',') FROM tool_audit.tool_calls}),
			'new', "$mode: the purge removed the expired rows only");
		is(verify_out($db), '', "$mode: verify() is clean after a purge");
		is(verify_digest_out($db, $file),
			join("\n",
				"admin_events 3 removed by sanctioned purge (admin event $ev): positions 1 to 3, which the digest covered up to position 3",
				"tool_calls 10 removed by sanctioned purge (admin event $ev): positions 1 to 10, which the digest covered up to position 10",
				"tool_calls 10 removed by sanctioned purge (admin event $ev): positions 1 to 10, which the digest covered up to position 10"),
			"$mode: verify_digest() with a digest taken before names exactly the purged spans");
		my ($rc, $out) = external($db, $file);
		is($rc, 0, "$mode: the external verifier accepts the purge") or diag $out;
		is(scalar(() = $out =~ /^PURGED .*removed by sanctioned purge \(admin event $ev\): positions 1 to \d+$/mg), 3,
			"$mode: and names the three purged heads") or diag $out;

		# dump/restore after the purge: clean, and the lanes go on
		my $dump = "$base/$db.dump";
		$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr($db) ], "$mode: pg_dump after a purge");
		$node->safe_psql('postgres', "CREATE DATABASE ${db}_restored");
		{
			local $ENV{PGOPTIONS} = '-c tool_audit.restoring=on';
			$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', $node->connstr("${db}_restored"), $dump ],
				"$mode: pg_restore into an empty database");
		}
		is($node->safe_psql("${db}_restored", q{SELECT count(*) FROM tool_audit.purge_anchors}), '3',
			"$mode: the anchors came back");
		is(verify_out("${db}_restored"), '', "$mode: verify() is clean on the restored copy");
		$node->safe_psql("${db}_restored", q{
			INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('search', 'old', true);
			INSERT INTO tool_audit.admin_events (event_type, actor, tenant_id) VALUES ('prompt.change', 'a', 'old')});
		is($node->safe_psql("${db}_restored",
				q{SELECT string_agg(chain_seq::text, ',') FROM tool_audit.tool_calls WHERE tenant_id = 'old'}),
			'11', "$mode: a lane purged whole goes on after its anchor in the restored copy");
		is(verify_out("${db}_restored"), '', "$mode: and verify() stays clean");
		($rc, $out) = external("${db}_restored", $file);
		is($rc, 0, "$mode: the external verifier accepts the restored copy with the old digest") or diag $out;
	}

	# --- rows deleted with the guards bypassed
	{
		my ($db, $file) = setup_db();
		my ($ret, $stdout, $stderr) =
		  tamper($db, q{DELETE FROM tool_audit.tool_calls WHERE tenant_id = 'new' AND chain_seq <= 2});
		if ($mode eq 'plain')
		{
			is($ret, 0, 'plain: a superuser deletes rows with the triggers disabled');
			like(verify_out($db), qr/^tool_calls 1 rows missing: positions 1 to 2$/m,
				'plain: verify() reports the forged purge as rows missing');
			my ($rc, $out) = external($db, $file);
			is($rc, 1, 'plain: the external verifier exits 1');
			like($out, qr/position=1 .*row missing/, 'plain: and names the position') or diag $out;
		}
		else
		{
			isnt($ret, 0, 'preloaded: the DELETE is refused even with the triggers disabled');
			like($stderr, qr/DELETE is not allowed on tool_audit table tool_calls/, 'preloaded: by the guard');
			is(verify_out($db), '', 'preloaded: nothing was removed');
		}
	}

	# --- a faked anchor over rows deleted by hand, naming a real purge event
	{
		my ($db, $file) = setup_db();
		my $ev = purge($db);
		my $after = link_of($db, 2);
		my ($ret) = tamper($db, "DELETE FROM tool_audit.tool_calls WHERE tenant_id = 'new' AND chain_seq <= 2");
		$node->safe_psql($db, faked_anchor_sql($db, $ev, $after));
		my $v = verify_out($db);
		like($v, qr/^tool_calls 1 purge anchor not listed by its purge event \(admin event $ev\)$/m,
			"$mode: a faked anchor is reported: its event does not list it");
		if ($mode eq 'plain')
		{
			like(verify_digest_out($db, $file), qr/^tool_calls 5 rows covered by the digest are missing before this position$/m,
				'plain: verify_digest() does not take the faked span for a purge');
		}
		my ($rc, $out) = external($db, $file);
		is($rc, 1, "$mode: the external verifier exits 1 on the faked anchor");
		like($out, qr/purge anchor not backed by its purge event \(admin event $ev\)/, "$mode: and says why") or diag $out;
	}

	# --- a faked purge event: written with the triggers off (no row hash,
	# no chain position), and one written as a restore would, chained, that
	# lists rows which had not expired
	{
		my ($db, $file) = setup_db();
		my $after = link_of($db, 2);
		my $payload = qq{'{"rows": 2, "anchors": [{"table": "tool_calls", "lane": 0, "first": 1, "last": 2, "rows": 2}]}'};
		tamper($db, qq{
			INSERT INTO tool_audit.admin_events (id, event_id, occurred_at, event_type, actor, payload, recorded_by)
			VALUES (1000, gen_random_uuid(), now(), 'tool_audit.retention.purge', 'postgres', $payload, 'postgres')});
		tamper($db, "DELETE FROM tool_audit.tool_calls WHERE tenant_id = 'new' AND chain_seq <= 2") if $mode eq 'plain';
		$node->safe_psql($db, faked_anchor_sql($db, 1000, $after));
		my $v = verify_out($db);
		like($v, qr/^admin_events row not in a chain/m, "$mode: a purge event written behind the trigger is not in a chain");
		like($v, qr/^tool_calls 1 purge anchor's event \(admin event 1000\) does not match its row hash$/m,
			"$mode: and its anchor is reported");

		($db, $file) = setup_db();
		$after = link_of($db, 2);
		my $chain = $node->safe_psql($db, q{SELECT chain_id FROM tool_audit.tool_calls WHERE tenant_id = 'new' LIMIT 1});
		my $until = $node->safe_psql($db, q{SELECT to_char((now() + interval '1 year') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')});
		tamper($db, "DELETE FROM tool_audit.tool_calls WHERE tenant_id = 'new' AND chain_seq <= 2") if $mode eq 'plain';
		$node->safe_psql($db, qq{
			SET tool_audit.restoring = on;
			INSERT INTO tool_audit.admin_events (id, event_type, actor, payload)
			VALUES (2000, 'tool_audit.retention.purge', 'postgres',
			        jsonb_build_object('rows', 2, 'anchors', jsonb_build_array(jsonb_build_object(
			          'table', 'tool_calls', 'chain', '$chain', 'lane', 0, 'first', 1, 'last', 2,
			          'link_before', repeat('00', 32), 'link_after', '$after', 'rows', 2,
			          'max_expires_at', '$until', 'tenant', 'new', 'retention_policy', NULL))));
			RESET tool_audit.restoring;
			INSERT INTO tool_audit.purge_anchors (purge_event_id, table_name, chain_id, chain_lane, first_seq, last_seq,
			                                      link_before, link_after, rows_removed, max_expires_at, tenant_id)
			VALUES (2000, 'tool_calls', $chain, 0, 1, 2, decode(repeat('00', 32), 'hex'), decode('$after', 'hex'), 2,
			        '$until', 'new')});
		$v = verify_out($db);
		like($v, qr/^tool_calls 1 purge anchor removed rows that had not expired when its purge event \(admin event 2000\) was written$/m,
			"$mode: a chained fake purge event of rows not expired is reported");
		my ($rc, $out) = external($db, $file);
		is($rc, 1, "$mode: the external verifier exits 1 on the fake event");
		like($out, qr/purge anchor not backed by its purge event \(admin event 2000\)/, "$mode: and names it") or diag $out;
	}
}

$node->stop;
done_testing();
