# pg_advisory_unlock_all() against the lanes (chain.c).  A lane is held by
# two advisory-type locks whose field4 (objsubid 21569 for the session's,
# 21592 for the writing transaction's) no user function can name:
# pg_advisory_lock/unlock use 1 (a bigint key) or 2 (two integer keys), so
# pg_advisory_unlock() with the lane's own numbers does not touch it.  But
# pg_advisory_unlock_all() (and DISCARD ALL) drops every session-level lock
# of the advisory lock method, the lanes' session locks with them, while the
# session still believes it holds its lanes.  Writers A, B and C of a few
# tenants, with the unlock between transactions, inside a transaction that
# wrote, in the middle of a multi-row statement, before a PREPARE, and before
# the session forgets a lane whose lock it lost (past MAX_SESSION_LANES
# chains): no write fails, no row acknowledged is lost, every lane holds
# positions 1..n (no fork, no hole), the positions are the ones a lane
# handed on in commit order gives, and verify() is clean.  Plain and
# preloaded (preloaded, a lane given back leaves its head in shared memory:
# a session whose lock went must not leave one, lane_hint.c).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Sessions qw(send_sql wait_sent sq);

my $LANE_TAG = 21569;    # 0x5441, field4 of a lane's session lock
my $XACT_TAG = 21592;    # 0x5458, field4 of the writing transaction's lock

my $node;

# ---- sessions that stay open across steps (as in 007_lanes.pl) ----

sub session
{
	my ($name) = @_;
	my $s = $node->background_psql('postgres', on_error_stop => 0);
	$s->{ta_name} = $name;
	$s->{ta_pid} = wait_sent($s, send_sql($s, 'SELECT pg_backend_pid()'));
	return $s;
}

# ---- SQL ----

my %acked;    # tool_name => 1 for every row whose statement succeeded

# $n rows into tool_calls for $tenant, named "$mark-1" .. "$mark-$n", written
# by session $s; remembered as acknowledged when the session reports no error
# (inside a transaction: when it commits, see commit())
my %pending;
sub w
{
	my ($s, $tenant, $mark, $n) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	$n //= 1;
	wait_sent($s, send_sql($s, "INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)"
		  . " SELECT '$mark-' || g, '$tenant', true FROM generate_series(1, $n) g"));
	if ($s->{stderr} ne '')
	{
		fail("$s->{ta_name}: write $mark for $tenant");
		diag("stderr: $s->{stderr}");
		return;
	}
	push @{ $pending{ $s->{ta_name} } }, map { "$mark-$_" } 1 .. $n;
	commit($s) unless $s->{ta_in_xact};
	return;
}

sub begin { my ($s) = @_; sq($s, 'BEGIN'); $s->{ta_in_xact} = 1; return; }

sub commit
{
	my ($s, $sql) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	sq($s, $sql) if defined $sql;
	$acked{$_} = 1 for @{ $pending{ $s->{ta_name} } // [] };
	$pending{ $s->{ta_name} } = [];
	$s->{ta_in_xact} = 0;
	return;
}

# rows for fresh tenants, so that the session gives its lanes back at the
# end of its transactions (chain.c, "Nor does a session keep lanes it would
# not come back to"), with a hint when preloaded
sub fill
{
	my ($s, $n) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	sq($s, "INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)"
		  . " SELECT 'fill', 'ua_fill_' || nextval('ua_fill'), true FROM generate_series(1, $n)");
	return;
}

# "lane|seq" of the tool_calls row named $name
sub pos_of
{
	my ($name) = @_;
	return $node->safe_psql('postgres',
		"SELECT chain_lane || '|' || chain_seq FROM tool_audit.tool_calls WHERE tool_name = '$name'");
}

# lane session locks of backend $pid on the lane of row $name
sub lane_locks
{
	my ($pid, $name, $tag) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT count(*) FROM pg_locks l, tool_audit.tool_calls t
		 WHERE t.tool_name = '$name' AND l.locktype = 'advisory' AND l.granted AND l.pid = $pid
		   AND l.objsubid = $tag
		   AND l.classid::bigint = ((t.chain_id & 4294967295) # ((t.chain_id >> 32) & 4294967295))
		   AND l.objid::bigint = t.chain_lane});
}

sub check_chains
{
	my ($label) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $n = $node->safe_psql('postgres', 'SELECT count(*) FROM tool_audit.verify()');
	is($n, 0, "$label: verify() finds no problem")
	  or diag $node->safe_psql('postgres', 'SELECT * FROM tool_audit.verify() LIMIT 20');
	my $bad = $node->safe_psql('postgres', q{
		SELECT chain_id, chain_lane, count(*), count(DISTINCT chain_seq), min(chain_seq), max(chain_seq)
		  FROM tool_audit.tool_calls GROUP BY 1, 2
		HAVING min(chain_seq) <> 1 OR max(chain_seq) <> count(*) OR count(DISTINCT chain_seq) <> count(*)});
	is($bad, '', "$label: every lane holds positions 1..n, each once");
	my %stored = map { $_ => 1 } split /\n/, $node->safe_psql('postgres',
		"SELECT tool_name FROM tool_audit.tool_calls WHERE tool_name LIKE 'u%'");
	my @lost = grep { !$stored{$_} } sort keys %acked;
	is_deeply(\@lost, [], "$label: every acknowledged row is stored");
	return;
}

for my $preload (0, 1)
{
	my $label = $preload ? 'preloaded' : 'plain';
	%acked = ();
	%pending = ();
	$node = PostgreSQL::Test::Cluster->new($preload ? 'unlock_pre' : 'unlock_plain');
	$node->init;
	$node->append_conf('postgresql.conf',
		"max_prepared_transactions = 4\n"
		  . ($preload ? "shared_preload_libraries = 'tool_audit'\n" : ''));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION tool_audit; CREATE SEQUENCE public.ua_fill');
	my $a = session('A');
	my $b = session('B');

	# ==== 0. the lane locks are out of reach of pg_advisory_unlock(keys) ====
	w($a, 'ua_0', 'u0-a', 1);
	my ($classid, $objid) = split /\|/, $node->safe_psql('postgres', qq{
		SELECT classid || '|' || objid FROM pg_locks
		 WHERE locktype = 'advisory' AND pid = $a->{ta_pid} AND objsubid = $LANE_TAG});
	my ($k1, $k2) = map { $_ >= 2**31 ? $_ - 2**32 : $_ } $classid, $objid;
	my $out = wait_sent($a, send_sql($a,
		"SELECT pg_advisory_unlock($k1, $k2) AS two_keys,"
		  . " pg_advisory_unlock((${classid}::bigint << 32) | ${objid}::bigint) AS one_key"));
	is($out, 'f|f', "$label: pg_advisory_unlock() with the lane's numbers unlocks nothing");
	like($a->{stderr}, qr/you don't own a lock of type ExclusiveLock/, "$label: (it says so)");
	is(lane_locks($a->{ta_pid}, 'u0-a-1', $LANE_TAG), '1', "$label: A still holds its lane");
	my $log_start = -s $node->logfile;

	# ==== 1. between transactions: A's lane taken by B, A writes again ====
	w($a, 'ua_1', 'u1-a1', 2);
	is(pos_of('u1-a1-2'), '0|2', "$label: 1: A writes lane 0");
	sq($a, 'SELECT pg_advisory_unlock_all()');
	is(lane_locks($a->{ta_pid}, 'u1-a1-1', $LANE_TAG), '0', "$label: 1: pg_advisory_unlock_all() dropped A's lane lock");
	fill($b, 12);
	w($b, 'ua_1', 'u1-b1', 1);
	is(pos_of('u1-b1-1'), '0|3', "$label: 1: B takes the lane A lost and continues it (and gives it back)");
	w($a, 'ua_1', 'u1-a2', 1);
	is(pos_of('u1-a2-1'), '0|4', "$label: 1: A takes the lane again, after B's row");
	my $c = session('C');
	w($c, 'ua_1', 'u1-c1', 1);
	is(pos_of('u1-c1-1'), '1|1', "$label: 1: C takes another lane while A holds lane 0");
	$c->quit;
	check_chains("$label: 1");

	# ==== 2. a lane whose lock went, forgotten past MAX_SESSION_LANES ====
	w($a, 'ua_2', 'u2-a1', 2);
	is(pos_of('u2-a1-2'), '0|2', "$label: 2: A writes lane 0");
	sq($a, 'SELECT pg_advisory_unlock_all()');
	w($b, 'ua_2', 'u2-b1', 1);
	is(pos_of('u2-b1-1'), '0|3', "$label: 2: B takes the lane A lost (and gives it back)");
	# one transaction of A for 40 new chains: at its end A forgets its oldest
	# ones, ua_2's among them (the lane it believes it holds)
	fill($a, 40);
	$c = session('C');
	w($c, 'ua_2', 'u2-c1', 1);
	is(pos_of('u2-c1-1'), '0|4', "$label: 2: C continues lane 0 after B's row");
	w($a, 'ua_2', 'u2-a2', 1);
	is(pos_of('u2-a2-1'), '1|1', "$label: 2: A, the lane forgotten, takes another one");
	$c->quit;
	check_chains("$label: 2");

	# ==== 3. inside a transaction that wrote to the lane ====
	w($a, 'ua_3', 'u3-a0', 1);
	is(pos_of('u3-a0-1'), '0|1', "$label: 3: A writes lane 0 (and gives it back)");
	begin($a);
	w($a, 'ua_3', 'u3-a1', 2);
	sq($a, 'SELECT pg_advisory_unlock_all()');
	is(lane_locks($a->{ta_pid}, 'u3-a0-1', $XACT_TAG), '1', "$label: 3: A's transaction still holds its lane");
	w($b, 'ua_3', 'u3-b1', 1);
	is(pos_of('u3-b1-1'), '1|1', "$label: 3: B does not take A's lane during A's transaction");
	w($a, 'ua_3', 'u3-a2', 1);
	commit($a, 'COMMIT');
	is(pos_of('u3-a2-1'), '0|4', "$label: 3: A's transaction stayed on its lane");
	$c = session('C');
	w($c, 'ua_3', 'u3-c1', 1);
	is(pos_of('u3-c1-1'), '0|5', "$label: 3: C continues A's lane after A's commit");
	w($a, 'ua_3', 'u3-a3', 1);
	is(pos_of('u3-a3-1'), '1|2', "$label: 3: A takes B's lane, given back, and continues it");
	check_chains("$label: 3");

	# ==== 4. in the middle of a statement, between its rows ====
	begin($a);
	wait_sent($a, send_sql($a, q{INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
		SELECT 'u4-a1-' || g || left(pg_advisory_unlock_all()::text, 0), 'ua_4', true FROM generate_series(1, 3) g}));
	is($a->{stderr}, '', "$label: 4: a statement dropping the locks between its rows");
	push @{ $pending{A} }, map { "u4-a1-$_" } 1 .. 3;
	w($b, 'ua_4', 'u4-b1', 1);
	w($a, 'ua_4', 'u4-a2', 1);
	commit($a, 'COMMIT');
	is(pos_of('u4-a2-1') . ' ' . pos_of('u4-b1-1'), '0|4 1|1', "$label: 4: A's rows in lane 0, B's beside them");
	w($c, 'ua_4', 'u4-c1', 1);
	w($a, 'ua_4', 'u4-a3', 1);
	check_chains("$label: 4");

	# ==== 5. dropped, then the transaction prepared ====
	w($a, 'ua_5', 'u5-a0', 1);
	begin($a);
	w($a, 'ua_5', 'u5-a1', 2);
	sq($a, 'SELECT pg_advisory_unlock_all()');
	w($a, 'ua_5', 'u5-a2', 1);
	sq($a, "PREPARE TRANSACTION 'ua_5'");
	$a->{ta_in_xact} = 0;
	my @prepared = @{ $pending{A} };
	$pending{A} = [];
	w($b, 'ua_5', 'u5-b1', 1);
	w($c, 'ua_5', 'u5-c1', 1);
	w($a, 'ua_5', 'u5-a3', 1);
	my %lanes_open = map { (split /\|/, pos_of($_))[0] => 1 } qw(u5-b1-1 u5-c1-1 u5-a3-1);
	ok(!$lanes_open{ (split /\|/, pos_of('u5-a0-1'))[0] }, "$label: 5: nobody writes into the prepared transaction's lane");
	$node->safe_psql('postgres', "COMMIT PREPARED 'ua_5'");
	$acked{$_} = 1 for @prepared;
	is(pos_of('u5-a2-1'), '0|4', "$label: 5: the prepared rows in lane 0");
	w($b, 'ua_5', 'u5-b2', 1);
	w($c, 'ua_5', 'u5-c2', 1);
	w($a, 'ua_5', 'u5-a4', 1);
	fill($a, 3);
	check_chains("$label: 5");

	# ==== 6. DISCARD ALL and pg_advisory_unlock_all() by all three, every step ====
	for my $i (1 .. 6)
	{
		for my $s ($a, $b, $c)
		{
			sq($s, $i % 2 ? 'SELECT pg_advisory_unlock_all()' : 'DISCARD ALL');
			w($s, 'ua_6', "u6-$s->{ta_name}$i", 2);
			fill($s, 1) if $i % 3 == 0;
		}
	}
	check_chains("$label: 6");

	$_->quit for $a, $b, $c;
	my $log = slurp_file($node->logfile, $log_start);
	unlike($log, qr/WARNING|ERROR/, "$label: no warning or error in the server log after the first check");
	$node->stop;
}

done_testing();
