# Lanes are given back (chain.c, "Lanes are given back"): many writer
# connections that stay connected no longer leave one lane each in a chain.
# A session keeps a lane between its transactions only among the first 16
# of the chain; a higher one is given back at the end of the transaction.
#
# - 18 sessions write in turn and stay connected: the chain has 17 lanes
#   (it had 18 before), 16 of them held by idle sessions, and the 17th is
#   used by the two sessions that did not get one of the first 16.
# - 120 pgbench connections, each writing one row while all are connected
#   (their writing transactions one after another): at most a few lanes past
#   16 (120 before), and a second burst takes the same lanes again.
# After each: every lane holds positions 1..n, verify() finds nothing, and
# the external verifier with a digest taken after the bursts says OK; the
# lane counts and digest sizes are printed.
# Runs without shared_preload_libraries (the lanes do not need it).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $verifier = $ENV{TA_VERIFIER} // "$ENV{TESTDIR}/verifier/tool_audit_verify";
ok(-x $verifier, "the external verifier is built ($verifier)")
  or BAIL_OUT('build it with: make -C verifier');

my $LANE_TAG = 21569;    # 0x5441, field4 of a lane's session lock
my $N = 120;

my $node = PostgreSQL::Test::Cluster->new('lane_bound');
$node->init;
$node->append_conf('postgresql.conf', qq{
max_connections = @{[$N + 30]}
});
$node->start;
$node->safe_psql('postgres', q{CREATE EXTENSION tool_audit; CREATE ROLE auditor LOGIN IN ROLE tool_audit_verifier});

sub lanes
{
	my ($tenant) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT count(DISTINCT chain_lane) FROM tool_audit.tool_calls WHERE tenant_id = '$tenant'});
}

# every lane of every chain holds 1..n, each once
sub positions_ok
{
	my ($what) = @_;
	is($node->safe_psql('postgres', q{
		SELECT count(*) FROM (
		  SELECT chain_id, chain_lane FROM tool_audit.tool_calls
		   GROUP BY chain_id, chain_lane
		  HAVING min(chain_seq) <> 1 OR max(chain_seq) <> count(*)
		      OR count(DISTINCT chain_seq) <> count(*)) bad}), '0',
		"$what: every lane holds positions 1..n");
	is($node->safe_psql('postgres',
		q{SELECT count(*) FROM tool_audit.verify()}), '0', "$what: verify() finds nothing");
}

sub digest_size
{
	return $node->safe_psql('postgres', 'SELECT length(tool_audit.digest()::text)');
}

# ---- 18 sessions writing in turn, all staying connected ----
{
	my @s;
	for my $i (1 .. 18)
	{
		my $s = $node->background_psql('postgres', on_error_stop => 1);
		$s->query_safe(qq{INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
		                  VALUES ('turn_$i', 'turns', true)});
		push @s, $s;
	}
	# the two late sessions write again, one after the other
	$s[16]->query_safe(q{INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('again_17', 'turns', true)});
	$s[17]->query_safe(q{INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('again_18', 'turns', true)});
	is(lanes('turns'), '17', '18 connected sessions writing in turn: 17 lanes (16 kept, one shared)');
	is($node->safe_psql('postgres', qq{
		SELECT count(*) FROM pg_locks
		 WHERE locktype = 'advisory' AND objsubid = $LANE_TAG AND granted}), '16',
		'idle sessions keep 16 lanes, the others were given back');
	is($node->safe_psql('postgres', q{
		SELECT string_agg(DISTINCT chain_lane::text, ',') FROM tool_audit.tool_calls
		 WHERE tool_name IN ('turn_17', 'turn_18', 'again_17', 'again_18')}), '16',
		'the sessions past the 16th took the same given-back lane');
	is($node->safe_psql('postgres', q{
		SELECT max(chain_seq) FROM tool_audit.tool_calls WHERE tenant_id = 'turns' AND chain_lane = 16}), '4',
		'the given-back lane goes on where it was');
	# a kept lane is still kept: the first session writes on its lane 0
	$s[0]->query_safe(q{INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('again_1', 'turns', true)});
	is($node->safe_psql('postgres', q{SELECT chain_lane || '/' || chain_seq FROM tool_audit.tool_calls WHERE tool_name = 'again_1'}),
		'0/2', 'a session keeps a lane among the first 16');
	positions_ok('18 sessions');
	$_->quit for @s;
}

# ---- pgbench: $N connections, each writes one row while all are connected ----
my $script = $node->basedir . '/write.sql';
open my $fh, '>', $script or die "$script: $!";
# the advisory lock makes the writing transactions run one after another, so
# that the lane count depends on the lanes kept, not on the machine's timing
print $fh q{BEGIN;
SELECT pg_advisory_xact_lock(4242);
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('burst', 'acme', true);
COMMIT;
\sleep 2 s
};
close $fh;

sub burst
{
	my ($what) = @_;
	my ($out, $err);
	my $ok = IPC::Run::run(['pgbench', '-n', '-c', $N, '-j', 2, '-t', 1, '-f', $script,
		'-h', $node->host, '-p', $node->port, 'postgres'], '>', \$out, '2>', \$err);
	ok($ok, "$what: pgbench with $N connections ran") or diag "$out\n$err";
}

burst('first burst');
is($node->safe_psql('postgres', q{SELECT count(*) FROM tool_audit.tool_calls WHERE tenant_id = 'acme'}),
	$N, "first burst: $N rows");
my $lanes1 = lanes('acme');
cmp_ok($lanes1, '<=', 24, "first burst: $N connections left $lanes1 lanes (at most 16 kept + a few given back), not $N");
positions_ok('first burst');
my $size1 = digest_size();

burst('second burst');
my $lanes2 = lanes('acme');
cmp_ok($lanes2, '<=', 24, "second burst: still $lanes2 lanes");
cmp_ok($lanes2, '<=', $lanes1 + 2, 'second burst: the lanes of the first are taken again (lowest first)');
positions_ok('second burst');
my $size2 = digest_size();
diag "lanes for $N connections: $lanes1 after the first burst, $lanes2 after the second; "
  . "digest $size1 then $size2 bytes (before lanes were given back: $N lanes)";
# a digest lists each lane's head in about 210 bytes: $N lanes of one chain
# alone would take over 25 KB
cmp_ok($size2, '<', 12000, 'the digest stays small (two chains of 17 lanes)');

# ---- the external verifier, with a digest taken now ----
my $file = $node->basedir . '/digest.json';
open $fh, '>', $file or die "$file: $!";
print $fh $node->safe_psql('postgres', 'SELECT tool_audit.digest()');
close $fh;
my ($stdout, $stderr);
IPC::Run::run([ $verifier, '--digest', $file, $node->connstr('postgres') . ' user=auditor' ],
	'>', \$stdout, '2>', \$stderr);
is($? >> 8, 0, 'the external verifier exits 0') or diag "$stdout$stderr";
like($stdout . $stderr, qr/^OK/m, 'the external verifier says OK');

$node->stop;
done_testing();
