# The lanes of chain.c on their special paths: two-phase commit, dropped
# session locks (DISCARD ALL, pg_advisory_unlock_all()), a session writing
# for more tenants than it keeps lanes for, one transaction writing to more
# chains than that, rolled back savepoints and PL/pgSQL exception blocks,
# REPEATABLE READ and SERIALIZABLE writers taking over lanes, and
# ON CONFLICT (event_id) DO NOTHING racing an open insert of the same
# event_id.  After each: verify() finds nothing, and every lane holds the
# positions 1..n, each once.  The cases that broke a chain when this test
# was written run in databases of their own (unlock, subxact), so that the
# others are still checked.
#
# Sessions that must stay open across steps are background psql processes
# (ON_ERROR_STOP off); any output on stderr (errors, warnings) fails the step
# that produced it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Sessions qw(send_sql wait_sent sq);

my $LANE_TAG = 21569;    # 0x5441, field4 of a lane's session lock
my $XACT_TAG = 21592;    # 0x5458, field4 of the writing transaction's lock on it

my $node = PostgreSQL::Test::Cluster->new('lanes');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tool_audit'
max_prepared_transactions = 10
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION tool_audit');

# ---- sessions ----

sub session
{
	my ($name, $db) = @_;
	my $s = $node->background_psql($db // 'postgres', on_error_stop => 0);
	$s->{ta_name} = $name;
	$s->{ta_pid} = wait_sent($s, send_sql($s, 'SELECT pg_backend_pid()'));
	return $s;
}

# sq() (test/t/Sessions.pm) for a step expected to fail: returns (output, stderr).
sub sq_err
{
	my ($s, $sql) = @_;
	my $out = wait_sent($s, send_sql($s, $sql));
	return ($out, $s->{stderr});
}

# End a session and wait until its backend is gone (its lanes are free).
sub end_session
{
	my ($s) = @_;
	$s->quit;
	$node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $s->{ta_pid}")
	  or die "backend $s->{ta_pid} did not exit";
	return;
}

# Wait until session $s waits for a lock.
sub wait_blocked
{
	my ($s) = @_;
	return $node->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM pg_locks WHERE pid = $s->{ta_pid} AND NOT granted");
}

# ---- SQL ----

# $n rows for $tenant into tool_calls, tool_name "$mark-1" .. "$mark-$n"
sub ins
{
	my ($tenant, $mark, $n) = @_;
	$n //= 1;
	return "INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)"
	  . " SELECT '$mark-' || g, '$tenant', true FROM generate_series(1, $n) g";
}

# "lane|seq" of the tool_calls row named $name (in $db), '' if there is none
sub pos_of
{
	my ($name, $db) = @_;
	return $node->safe_psql($db // 'postgres',
		"SELECT chain_lane || '|' || chain_seq FROM tool_audit.tool_calls WHERE tool_name = '$name'");
}

# the advisory lock tag (classid, objid) of the lane row $name is on
sub lane_lock_of
{
	my ($name) = @_;
	return split /\|/, $node->safe_psql('postgres', qq{
		SELECT ((chain_id & 4294967295) # ((chain_id >> 32) & 4294967295)) || '|' || chain_lane
		  FROM tool_audit.tool_calls WHERE tool_name = '$name'});
}

# lane locks held by backend $pid (NULL: by prepared transactions)
sub lane_locks
{
	my ($pid, $classid, $objid, $tag) = @_;
	$tag //= $LANE_TAG;
	my $who = defined $pid ? "pid = $pid" : 'pid IS NULL';
	my $which = defined $classid ? " AND classid::bigint = $classid AND objid::bigint = $objid" : '';
	return $node->safe_psql('postgres', qq{
		SELECT count(*) FROM pg_locks
		 WHERE locktype = 'advisory' AND objsubid = $tag AND granted AND $who$which});
}

sub check_chains
{
	my ($when, $db) = @_;
	$db //= 'postgres';
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $n = $node->safe_psql($db, 'SELECT count(*) FROM tool_audit.verify()');
	is($n, 0, "$when: verify() finds no problem")
	  or diag $node->safe_psql($db, 'SELECT * FROM tool_audit.verify() LIMIT 20');
	for my $table (qw(tool_calls admin_events))
	{
		my $bad = $node->safe_psql($db, qq{
			SELECT chain_id, chain_lane, count(*), count(DISTINCT chain_seq), min(chain_seq), max(chain_seq)
			  FROM tool_audit.$table WHERE chain_id IS NOT NULL GROUP BY 1, 2
			HAVING min(chain_seq) <> 1 OR max(chain_seq) <> count(*)
			    OR count(DISTINCT chain_seq) <> count(*)});
		is($bad, '', "$when: every lane of $table holds positions 1..n without a gap");
	}
	my $unchained = $node->safe_psql($db, q{
		SELECT count(*) FROM (SELECT id FROM tool_audit.tool_calls WHERE chain_seq IS NULL
		                      UNION ALL SELECT id FROM tool_audit.admin_events WHERE chain_seq IS NULL) s});
	is($unchained, 0, "$when: every stored row has a chain position");
	return;
}

# ==== 1. two-phase commit ====
{
	my $a = session('A');
	my $b = session('B');

	# COMMIT PREPARED
	sq($a, ins('p', 'p-a0'));
	is(pos_of('p-a0-1'), '0|1', '2pc: A writes lane 0 of tenant p');
	my ($classid, $lane) = lane_lock_of('p-a0-1');
	sq($a, 'BEGIN');
	sq($a, ins('p', 'p-x', 3));
	sq($a, q{INSERT INTO tool_audit.admin_events (event_type, actor, tenant_id) VALUES ('policy.update', 'p-x', 'p')});
	sq($a, "PREPARE TRANSACTION 'x'");
	is(lane_locks(undef, $classid, $lane, $XACT_TAG), 1, '2pc: the prepared transaction holds its lane');
	is(lane_locks($a->{ta_pid}, $classid, $lane), 0, '2pc: the session let go of that lane');
	sq($a, ins('p', "p-a$_")) for 1 .. 3;
	sq($b, ins('p', "p-b$_", 2)) for 1 .. 2;
	my @a_lanes = split /\n/, $node->safe_psql('postgres',
		q{SELECT DISTINCT chain_lane FROM tool_audit.tool_calls WHERE tool_name ~ '^p-a[1-3]-'});
	is_deeply(\@a_lanes, [1], '2pc: A writes on in another lane while its prepared transaction holds lane 0');
	is(pos_of('p-a3-1'), '1|3', '2pc: A keeps that lane across its transactions');
	is(pos_of('p-b2-2'), '2|4', '2pc: B takes a third lane');
	sq($b, "COMMIT PREPARED 'x'");
	is(pos_of('p-x-3'), '0|4', '2pc: the prepared rows are at lane 0, positions 2..4');
	check_chains('after COMMIT PREPARED');
	my $c = session('C');
	sq($c, ins('p', 'p-c1', 2));
	is(pos_of('p-c1-1'), '0|5', '2pc: the next writer of lane 0 continues after the prepared rows');
	sq($a, ins('p', 'p-a4'));
	sq($b, ins('p', 'p-b3'));
	is(pos_of('p-a4-1'), '1|4', '2pc: A still writes its lane');
	check_chains('after writes following COMMIT PREPARED');

	# ROLLBACK PREPARED
	sq($a, ins('q', 'q-a0'));
	is(pos_of('q-a0-1'), '0|1', '2pc rollback: A writes lane 0 of tenant q');
	($classid, $lane) = lane_lock_of('q-a0-1');
	sq($a, 'BEGIN');
	sq($a, ins('q', 'q-y', 3));
	sq($a, "PREPARE TRANSACTION 'y'");
	is(lane_locks(undef, $classid, $lane, $XACT_TAG), 1, '2pc rollback: the prepared transaction holds its lane');
	sq($a, ins('q', "q-a$_")) for 1 .. 2;
	sq($b, ins('q', 'q-b1', 2));
	sq($c, ins('q', 'q-c1'));
	is(pos_of('q-a1-1'), '1|1', '2pc rollback: A writes on in another lane');
	sq($a, "ROLLBACK PREPARED 'y'");
	is(lane_locks(undef, $classid, $lane), 0, '2pc rollback: the lane is free again');
	is($node->safe_psql('postgres', q{SELECT count(*) FROM tool_audit.tool_calls WHERE tool_name LIKE 'q-y-%'}),
		0, '2pc rollback: the prepared rows are gone');
	check_chains('after ROLLBACK PREPARED');
	my $d = session('D');
	sq($d, ins('q', 'q-d1', 2));
	is(pos_of('q-d1-1'), '0|2', '2pc rollback: the next writer of lane 0 continues after the last commit, no hole');
	sq($a, ins('q', 'q-a3'));
	sq($b, ins('q', 'q-b2'));
	sq($c, ins('q', 'q-c2'));
	check_chains('after writes following ROLLBACK PREPARED');

	# a lane taken in a rolled back savepoint passes to the prepared transaction too
	sq($a, 'BEGIN');
	sq($a, 'SAVEPOINT s');
	sq($a, ins('p2', 'p2-z', 2));
	sq($a, 'ROLLBACK TO SAVEPOINT s');
	sq($a, ins('q', 'q-z'));
	sq($a, "PREPARE TRANSACTION 'z'");
	sq($b, ins('p2', 'p2-b1'));
	sq($a, ins('p2', 'p2-a1'));
	sq($d, "COMMIT PREPARED 'z'");
	sq($c, ins('p2', 'p2-c1'));
	sq($a, ins('p2', 'p2-a2'));
	sq($a, ins('q', 'q-a4'));
	check_chains('after a prepared transaction with a rolled back savepoint');

	$_->quit for ($a, $b, $c, $d);
}

# ==== 2. dropped session locks ====
{
	my $a = session('A');
	my $b = session('B');

	# DISCARD ALL between transactions
	sq($a, ins('d', 'd-a1', 2));
	is(pos_of('d-a1-1'), '0|1', 'discard: A writes lane 0');
	my ($classid, $lane) = lane_lock_of('d-a1-1');
	sq($a, 'DISCARD ALL');
	is(lane_locks($a->{ta_pid}, $classid, $lane), 0, 'discard: DISCARD ALL dropped A\'s lane lock');
	sq($b, ins('d', 'd-b1', 2));
	is(pos_of('d-b1-1'), '0|3', 'discard: B takes A\'s old lane and continues it');
	sq($a, ins('d', 'd-a2', 2));
	is(pos_of('d-a2-1'), '1|1', 'discard: A takes another lane');
	check_chains('after DISCARD ALL');
	end_session($b);
	sq($a, 'DISCARD ALL');
	sq($a, ins('d', 'd-a3'));
	is(pos_of('d-a3-1'), '1|3', 'discard: A takes its last lane back after a second DISCARD ALL');
	sq($a, 'SELECT pg_advisory_unlock_all()');
	sq($a, ins('d', 'd-a4'));
	is(pos_of('d-a4-1'), '1|4', 'discard: and after pg_advisory_unlock_all()');
	$b = session('B');
	sq($b, ins('d', 'd-b2'));
	is(pos_of('d-b2-1'), '0|5', 'discard: B\'s old lane continues');
	check_chains('after DISCARD ALL and pg_advisory_unlock_all() between transactions');

	# pg_advisory_unlock_all() inside a transaction
	sq($a, ins('u', 'u-a0'));
	($classid, $lane) = lane_lock_of('u-a0-1');
	sq($a, 'BEGIN');
	sq($a, ins('u', 'u-a1', 2));
	sq($a, 'SELECT pg_advisory_unlock_all()');
	is(lane_locks($a->{ta_pid}, $classid, $lane, $XACT_TAG), 1, 'unlock_all: the transaction still holds A\'s lane');
	sq($b, ins('u', 'u-b1', 2));
	is(pos_of('u-b1-1'), '1|1', 'unlock_all: B does not take A\'s lane during A\'s transaction');
	sq($a, ins('u', 'u-a2', 2));
	sq($a, 'COMMIT');
	is(pos_of('u-a2-2'), '0|5', 'unlock_all: A\'s transaction stayed on its lane');
	is(lane_locks($a->{ta_pid}, $classid, $lane), 0, 'unlock_all: A holds its lane no more after commit');
	# a newcomer takes the free lane 0, A then needs another one
	my $c = session('C');
	sq($c, ins('u', 'u-c1', 2));
	is(pos_of('u-c1-1'), '0|6', 'unlock_all: a new session continues A\'s old lane');
	sq($a, ins('u', 'u-a3', 2));
	is(pos_of('u-a3-1'), '2|1', 'unlock_all: A takes a free lane');
	sq($b, ins('u', 'u-b2'));
	check_chains('after pg_advisory_unlock_all() inside a transaction');

	# the same in a transaction that is then prepared
	sq($a, 'BEGIN');
	sq($a, ins('u', 'u-w1'));
	sq($a, 'SELECT pg_advisory_unlock_all()');
	sq($a, ins('u', 'u-w2'));
	my ($out, $err) = sq_err($a, "PREPARE TRANSACTION 'w'");
	is($err, '', 'unlock_all: PREPARE TRANSACTION after pg_advisory_unlock_all() says nothing');
	sq($b, ins('u', 'u-b3'));
	sq($c, "COMMIT PREPARED 'w'");
	sq($a, ins('u', 'u-a4'));
	end_session($c);
	my $d = session('D');
	sq($d, ins('u', 'u-d1'));
	check_chains('after PREPARE following pg_advisory_unlock_all()');

	$_->quit for ($a, $b, $d);

	# A savepoint that took a lane's transaction lock is rolled back, then the
	# session's lock goes with pg_advisory_unlock_all(): the transaction lock
	# belongs to the top transaction, so the lane stays A's until it ends and
	# B takes another.  In a database of its own: a chain broken here would
	# fail every later check.
	$node->safe_psql('postgres', 'CREATE DATABASE unlock');
	$node->safe_psql('unlock', 'CREATE EXTENSION tool_audit');
	$a = session('A', 'unlock');
	$b = session('B', 'unlock');
	for my $end ('COMMIT', 'ROLLBACK')
	{
		my $t = lc $end;
		sq($a, ins($t, "$t-a1", 2));
		sq($a, 'BEGIN');
		sq($a, 'SAVEPOINT s');
		sq($a, ins($t, "$t-rb"));
		sq($a, 'ROLLBACK TO SAVEPOINT s');
		sq($a, 'RELEASE SAVEPOINT s');
		sq($a, 'SELECT pg_advisory_unlock_all()');
		sq($b, ins($t, "$t-b1"));
		is(pos_of("$t-b1-1", 'unlock'), '1|1',
			"unlock_all after a savepoint, $end: B does not take A's lane (A's transaction keeps it)");
		sq($a, ins($t, "$t-a2"));
		sq($a, $end);
		sq($a, ins($t, "$t-a3"));
		is(pos_of("$t-a3-1", 'unlock'), $end eq 'COMMIT' ? '0|4' : '0|3',
			"unlock_all after a savepoint, $end: A's next row follows what is in its lane");
		sq($b, ins($t, "$t-b2"));
		check_chains("unlock_all after a savepoint, then $end", 'unlock');
	}
	$_->quit for ($a, $b);
}

# ==== 3. a session writing for many tenants ====
{
	my $m = session('M');
	my $n = session('N');
	my $script = sub {
		my ($who, $round) = @_;
		return join(";\n", map { ins(sprintf('m%03d', $_), "$who$round-$_") } 1 .. 100);
	};
	# N writes the same tenants at the same time, in the opposite order
	my $tag = send_sql($n, join(";\n", reverse split /;\n/, $script->('mn', 1)));
	sq($m, $script->('mm', 1));
	sq($m, $script->('mm', 2));
	wait_sent($n, $tag);
	is($n->{stderr}, '', 'many tenants: N wrote without error') or diag $n->{stderr};
	$n->{stderr} = '';
	sq($n, $script->('mn', 2));
	my $held = lane_locks($m->{ta_pid});
	cmp_ok($held, '<=', 32, "many tenants: M keeps at most 32 lanes between transactions ($held)");
	# M never came back to a chain it still remembered (100 tenants in
	# turn, it remembers 16 to 32): it gives every lane back at the end of
	# the transaction rather than have N probe past them (chain.c, "Nor
	# does a session keep lanes it would not come back to")
	is($held, 0, 'many tenants: M, never back to a chain it remembers, keeps no lane');
	$held = lane_locks($n->{ta_pid});
	cmp_ok($held, '<=', 32, "many tenants: N keeps at most 32 lanes between transactions ($held)");
	is($node->safe_psql('postgres', q{SELECT count(*) FROM tool_audit.tool_calls WHERE tenant_id LIKE 'm___'}),
		400, 'many tenants: all rows are there');
	check_chains('after a session wrote for 100 tenants');
	# lanes given back are taken again
	sq($m, $script->('mm', 3));
	sq($n, $script->('mn', 3));
	check_chains('after a third round for 100 tenants');

	# ==== 4. one transaction writing to 50 chains ====
	sq($m, 'BEGIN');
	sq($m, q{INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
	           SELECT 'w1-' || g, 'w' || g, true FROM generate_series(1, 50) g});
	$held = lane_locks($m->{ta_pid});
	cmp_ok($held, '>=', 50, "50 chains: the transaction holds a lane of each ($held)");
	sq($n, q{INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
	           SELECT 'wn-' || g, 'w' || g, true FROM generate_series(1, 50) g});
	sq($m, q{INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
	           SELECT 'w2-' || g, 'w' || (51 - g), true FROM generate_series(1, 50) g});
	sq($m, q{INSERT INTO tool_audit.admin_events (event_type, actor, tenant_id)
	           SELECT 'policy.update', 'w3-' || g, 'w' || g FROM generate_series(1, 40) g});
	sq($m, 'COMMIT');
	$held = lane_locks($m->{ta_pid});
	cmp_ok($held, '<=', 32, "50 chains: after commit the session keeps at most 32 lanes ($held)");
	is($node->safe_psql('postgres',
			q{SELECT count(DISTINCT chain_lane) FROM tool_audit.tool_calls WHERE tool_name LIKE 'w_-%'}),
		2, '50 chains: M and N each wrote one lane of each chain');
	check_chains('after a transaction writing to 90 chains');
	sq($m, q{INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
	           SELECT 'w4-' || g, 'w' || g, true FROM generate_series(1, 50) g});
	sq($n, q{INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
	           SELECT 'wn2-' || g, 'w' || g, true FROM generate_series(1, 50) g});
	# rolled back: nothing stored, the heads go back
	sq($m, 'BEGIN');
	sq($m, q{INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
	           SELECT 'w5-' || g, 'v' || g, true FROM generate_series(1, 50) g});
	sq($m, 'ROLLBACK');
	$held = lane_locks($m->{ta_pid});
	cmp_ok($held, '<=', 32,
		"50 chains: after a rolled back transaction too, M keeps at most 32 lanes ($held)");
	sq($n, q{INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
	           SELECT 'vn-' || g, 'v' || g, true FROM generate_series(1, 50) g});
	sq($m, q{INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
	           SELECT 'w6-' || g, 'v' || g, true FROM generate_series(1, 50) g});
	$held = lane_locks($m->{ta_pid});
	cmp_ok($held, '<=', 32, "50 chains: after the next commit M keeps at most 32 lanes ($held)");
	check_chains('after more transactions writing to 50 chains');

	$_->quit for ($m, $n);
}

# ==== 5. savepoints and exception blocks ====
{
	my $a = session('A');
	my $b = session('B');

	sq($a, 'BEGIN');
	sq($a, 'SAVEPOINT s');
	sq($a, ins('sp', 'sp-a1', 2));
	is(pos_of('sp-a1-1'), '', 'savepoint: (rows not visible yet)');
	my ($lanes_before) = lane_locks($a->{ta_pid});
	sq($a, 'ROLLBACK TO SAVEPOINT s');
	is(lane_locks($a->{ta_pid}), $lanes_before, 'savepoint: A keeps the lane after ROLLBACK TO SAVEPOINT');
	sq($b, ins('sp', 'sp-b1', 2));
	is(pos_of('sp-b1-1'), '1|1', 'savepoint: B takes another lane');
	sq($a, ins('sp', 'sp-a2', 2));
	sq($a, 'COMMIT');
	is(pos_of('sp-a2-1'), '0|1', 'savepoint: A\'s rows after the rolled back ones start lane 0');
	sq($b, ins('sp', 'sp-b2'));
	sq($a, ins('sp', 'sp-a3'));
	is(pos_of('sp-a3-1'), '0|3', 'savepoint: A continues');
	check_chains('after a lane first taken in a rolled back savepoint');

	# savepoints after rows of the transaction, released and rolled back, nested
	sq($a, 'BEGIN');
	sq($a, ins('sp', 'sp-a4', 2));
	sq($a, 'SAVEPOINT s1');
	sq($a, ins('sp', 'sp-rb1', 2));
	sq($a, 'SAVEPOINT s2');
	sq($a, ins('sp', 'sp-a5', 1));
	sq($a, 'RELEASE SAVEPOINT s2');
	sq($a, 'ROLLBACK TO SAVEPOINT s1');
	sq($a, ins('sp', 'sp-a6', 2));
	sq($a, 'SAVEPOINT s3');
	sq($a, ins('sp', 'sp-a7', 1));
	sq($a, 'RELEASE SAVEPOINT s3');
	sq($b, ins('sp', 'sp-b3'));
	sq($a, 'COMMIT');
	is(pos_of('sp-a6-1'), '0|6', 'savepoint: rows after ROLLBACK TO follow the transaction\'s earlier rows');
	is(pos_of('sp-a7-1'), '0|8', 'savepoint: and a released savepoint\'s rows follow them');
	check_chains('after nested savepoints');

	# PL/pgSQL exception blocks, 100 times, in one transaction and across
	my $undo = q{DO $d$ BEGIN
	  INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('rb-x', 'ex', true);
	  INSERT INTO tool_audit.admin_events (event_type, actor, tenant_id) VALUES ('policy.update', 'rb-x', 'ex');
	  RAISE EXCEPTION 'undo';
	EXCEPTION WHEN OTHERS THEN NULL;
	END $d$};
	my $s = "BEGIN;\n";
	for my $i (1 .. 100)
	{
		$s .= "$undo;\n" . ins('ex', "ex-a$i") . ";\n";
		$s .= "COMMIT;\nBEGIN;\n" if $i % 10 == 0;
		$s .= "$undo;\n" if $i % 7 == 0;
	}
	$s .= "COMMIT;\n";
	my $tag = send_sql($b, join('', map { ins('ex', "ex-b$_") . ";\n" } 1 .. 100));
	sq($a, $s);
	wait_sent($b, $tag);
	is($b->{stderr}, '', 'exception blocks: B wrote without error') or diag $b->{stderr};
	$b->{stderr} = '';
	# the same inside one PL/pgSQL block
	sq($a, q{DO $d$ BEGIN
	  FOR i IN 1 .. 100 LOOP
	    BEGIN
	      INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('rb-y', 'ex', true);
	      RAISE EXCEPTION 'undo';
	    EXCEPTION WHEN OTHERS THEN NULL;
	    END;
	    INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('ex-c' || i, 'ex', true);
	  END LOOP;
	END $d$});
	is($node->safe_psql('postgres', q{
			SELECT count(*) FROM tool_audit.tool_calls
			 WHERE tool_name LIKE 'rb-%' OR tenant_id = 'ex' AND tool_name NOT LIKE 'ex-%'}),
		0, 'exception blocks: no rolled back row is there');
	is($node->safe_psql('postgres', q{SELECT count(*) FROM tool_audit.admin_events WHERE actor LIKE 'rb-%'}),
		0, 'exception blocks: nor a rolled back admin event');
	is($node->safe_psql('postgres', q{SELECT count(*) FROM tool_audit.tool_calls WHERE tenant_id = 'ex'}),
		300, 'exception blocks: every other row is');
	check_chains('after PL/pgSQL exception blocks');

	$_->quit for ($a, $b);
}

# ==== 5b. a subtransaction rolled back between the rows of one INSERT ====
# A function with an exception block, called for each row, rolls back a
# subtransaction after the statement stored its first row: the heads of the
# lanes the transaction wrote are read again for the next row, which must
# still see the statement's own earlier rows.  In a database of its own: a
# chain broken here would fail every later check.
{
	$node->safe_psql('postgres', 'CREATE DATABASE subxact');
	$node->safe_psql('subxact', q{
		CREATE EXTENSION tool_audit;
		CREATE FUNCTION public.undo(i int) RETURNS int LANGUAGE plpgsql VOLATILE AS $f$
		  BEGIN
		    BEGIN
		      RAISE EXCEPTION 'undo';
		    EXCEPTION WHEN OTHERS THEN RETURN i;
		    END;
		  END $f$});
	my $a = session('A', 'subxact');
	my $b = session('B', 'subxact');
	my $stored = sub {
		$node->safe_psql('subxact',
			"SELECT count(*) FROM tool_audit.tool_calls WHERE tool_name LIKE '$_[0]%'");
	};

	sq($a, ins('fx', 'fx-a0'));
	my ($out, $err) = sq_err($a, q{INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
	  SELECT 'fx-a1-' || public.undo(g), 'fx', true FROM generate_series(1, 3) g});
	is($err, '', 'INSERT ... SELECT with a subtransaction rolled back between its rows');
	($out, $err) = sq_err($a, q{INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
	  VALUES ('fx-a2-1', 'fx', true), ('fx-a2-' || public.undo(2), 'fx', true), ('fx-a2-' || public.undo(3), 'fx', true)});
	is($err, '', 'INSERT ... VALUES with a subtransaction rolled back between its rows');
	sq($a, ins('fx', 'fx-a3'));
	sq($b, ins('fx', 'fx-b1'));
	check_chains('after subtransactions rolled back within one INSERT', 'subxact');

	# with ON CONFLICT DO NOTHING and no conflict target, a clash on the
	# chain position index would skip the row without a word
	sq($a, ins('fy', 'fy-a0'));
	sq($a, q{INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
	  SELECT 'fy-a1-' || public.undo(g), 'fy', true FROM generate_series(1, 3) g ON CONFLICT DO NOTHING});
	is($stored->('fy-a1-'), 3, 'ON CONFLICT DO NOTHING: every row of the INSERT is stored');
	sq($a, ins('fy', 'fy-a2'));
	sq($b, ins('fy', 'fy-b1'));
	check_chains('after ON CONFLICT DO NOTHING with subtransactions rolled back within it', 'subxact');

	$_->quit for ($a, $b);
}

# ==== 6. REPEATABLE READ and SERIALIZABLE writers taking over lanes ====
{
	for my $round (1 .. 4)
	{
		my $rr = session("RR$round");
		my $ser = session("SER$round");
		# their snapshots are taken before anybody writes in this round
		sq($rr, 'BEGIN ISOLATION LEVEL REPEATABLE READ');
		sq($rr, 'SELECT 1');
		sq($ser, 'BEGIN ISOLATION LEVEL SERIALIZABLE');
		sq($ser, 'SELECT 1');
		my $rc = session("RC$round");
		sq($rc, ins('iso', "iso-rc$round", 3));
		my ($lane, $seq) = split /\|/, pos_of("iso-rc$round-3");
		end_session($rc);    # its lane is free now
		sq($rr, ins('iso', "iso-rr$round", 2));
		is(pos_of("iso-rr$round-1"), '', "isolation round $round: (not committed yet)");
		sq($ser, ins('iso', "iso-ser$round", 2));
		my $rc2 = session("RC2-$round");
		sq($rc2, ins('iso', "iso-rc2-$round", 2));
		end_session($rc2);
		sq($rr, ins('iso', "iso-rr$round-b", 1));
		sq($ser, ins('iso', "iso-ser$round-b", 1));
		sq($rr, 'COMMIT');
		sq($ser, 'COMMIT');
		is(pos_of("iso-rr$round-1"), $lane . '|' . ($seq + 1),
			"isolation round $round: the REPEATABLE READ writer continued the lane a later commit left");
		# the next transaction, in READ COMMITTED, on the same lanes
		sq($rr, ins('iso', "iso-rr$round-c"));
		sq($ser, ins('iso', "iso-ser$round-c"));
		end_session($rr);
		end_session($ser);
		check_chains("isolation round $round");
	}

	# two SERIALIZABLE transactions taking lanes of the same chain at once
	my $s1 = session('SER-A');
	my $s2 = session('SER-B');
	for my $i (1 .. 3)
	{
		sq($_, 'BEGIN ISOLATION LEVEL SERIALIZABLE') for ($s1, $s2);
		sq($_, 'SELECT 1') for ($s1, $s2);
		sq($s1, ins('ser', "ser-a$i", 2));
		sq($s2, ins('ser', "ser-b$i", 2));
		sq($s1, q{INSERT INTO tool_audit.admin_events (event_type, actor, tenant_id) VALUES ('policy.update', 'ser-a', 'ser')});
		sq($s2, q{INSERT INTO tool_audit.admin_events (event_type, actor, tenant_id) VALUES ('policy.update', 'ser-b', 'ser')});
		sq($_, 'COMMIT') for ($s1, $s2);
		sq($s1, 'DISCARD ALL') if $i == 2;    # lanes taken again, with a fresh read
	}
	$_->quit for ($s1, $s2);
	check_chains('after concurrent SERIALIZABLE writers');
}

# ==== 7. ON CONFLICT (event_id) DO NOTHING against an open insert ====
{
	my $a = session('A');
	my $b = session('B');
	my $eid = sub { sprintf('00000000-0000-4000-8000-%012d', $_[0]) };
	my $oc = sub {
		my ($tenant, $mark, $e) = @_;
		return "INSERT INTO tool_audit.tool_calls (event_id, tool_name, tenant_id, success)"
		  . " VALUES ('$e', '$mark', '$tenant', true) ON CONFLICT (event_id) DO NOTHING"
		  . " RETURNING chain_lane || '|' || chain_seq";
	};
	sq($a, ins('oc', 'oc-a0'));
	sq($b, ins('oc', 'oc-b0', 2));
	is(pos_of('oc-b0-2'), '1|2', 'on conflict: B writes lane 1');

	# A commits: B's row is skipped
	sq($a, 'BEGIN');
	sq($a, "INSERT INTO tool_audit.tool_calls (event_id, tool_name, tenant_id, success)"
		  . " VALUES ('" . $eid->(1) . "', 'oc-a1', 'oc', true)");
	my $tag = send_sql($b, $oc->('oc', 'oc-b1', $eid->(1)));
	ok(wait_blocked($b), 'on conflict: B waits for A\'s insert of the same event_id');
	sq($a, 'COMMIT');
	my $out = wait_sent($b, $tag);
	is($b->{stderr}, '', 'on conflict: B\'s insert ends without error') or diag $b->{stderr};
	$b->{stderr} = '';
	is($out, '', 'on conflict: B\'s row is skipped');
	sq($b, ins('oc', 'oc-b2', 2));
	is(pos_of('oc-b2-1'), '1|3', 'on conflict: B\'s next row takes the next position, no hole');
	is(pos_of('oc-a1'), '0|2', 'on conflict: A\'s row is chained');
	check_chains('after ON CONFLICT DO NOTHING skipped a row');

	# A rolls back: B's row is stored and chained
	sq($a, 'BEGIN');
	sq($a, ins('oc', 'oc-a2'));
	sq($a, "INSERT INTO tool_audit.tool_calls (event_id, tool_name, tenant_id, success)"
		  . " VALUES ('" . $eid->(2) . "', 'oc-a3', 'oc', true)");
	$tag = send_sql($b, $oc->('oc', 'oc-b3', $eid->(2)));
	ok(wait_blocked($b), 'on conflict rollback: B waits');
	sq($a, 'ROLLBACK');
	$out = wait_sent($b, $tag);
	is($b->{stderr}, '', 'on conflict rollback: B\'s insert ends without error') or diag $b->{stderr};
	$b->{stderr} = '';
	is($out, '1|5', 'on conflict rollback: B\'s row is stored at the next position');
	sq($b, ins('oc', 'oc-b4'));
	is(pos_of('oc-b4-1'), '1|6', 'on conflict rollback: and B continues');
	sq($a, ins('oc', 'oc-a4'));
	is(pos_of('oc-a4-1'), '0|3', 'on conflict rollback: A\'s lane went back to its last commit');
	check_chains('after ON CONFLICT DO NOTHING waited for a rolled back insert');

	# several rows in one statement, one of them skipped; and inside B's transaction
	sq($a, 'BEGIN');
	sq($a, "INSERT INTO tool_audit.tool_calls (event_id, tool_name, tenant_id, success)"
		  . " VALUES ('" . $eid->(3) . "', 'oc-a5', 'oc', true)");
	sq($b, 'BEGIN');
	sq($b, ins('oc', 'oc-b5'));
	$tag = send_sql($b, "INSERT INTO tool_audit.tool_calls (event_id, tool_name, tenant_id, success) VALUES"
		  . " ('" . $eid->(4) . "', 'oc-b6', 'oc', true), ('" . $eid->(3) . "', 'oc-b7', 'oc', true),"
		  . " ('" . $eid->(5) . "', 'oc-b8', 'oc', true), ('" . $eid->(4) . "', 'oc-b9', 'oc', true)"
		  . " ON CONFLICT (event_id) DO NOTHING RETURNING tool_name || '\@' || chain_lane || '|' || chain_seq");
	ok(wait_blocked($b), 'on conflict, several rows: B waits');
	sq($a, 'COMMIT');
	$out = wait_sent($b, $tag);
	is($b->{stderr}, '', 'on conflict, several rows: no error') or diag $b->{stderr};
	$b->{stderr} = '';
	is($out, "oc-b6\@1|8\noc-b8\@1|9", 'on conflict, several rows: the others are chained in a row');
	sq($b, ins('oc', 'oc-b10'));
	sq($b, 'COMMIT');
	is(pos_of('oc-b10-1'), '1|10', 'on conflict, several rows: B continues');

	# without ON CONFLICT: refused, and no hole either
	sq($a, 'BEGIN');
	sq($a, "INSERT INTO tool_audit.tool_calls (event_id, tool_name, tenant_id, success)"
		  . " VALUES ('" . $eid->(6) . "', 'oc-a6', 'oc', true)");
	$tag = send_sql($b, "INSERT INTO tool_audit.tool_calls (event_id, tool_name, tenant_id, success)"
		  . " VALUES ('" . $eid->(6) . "', 'oc-b11', 'oc', true)");
	ok(wait_blocked($b), 'duplicate event_id: B waits');
	sq($a, 'COMMIT');
	wait_sent($b, $tag);
	like($b->{stderr}, qr/duplicate key value violates unique constraint "tool_calls_event_id_key"/,
		'duplicate event_id: B\'s row is refused by the unique index');
	$b->{stderr} = '';
	sq($b, ins('oc', 'oc-b12'));
	is(pos_of('oc-b12-1'), '1|11', 'duplicate event_id: B continues without a hole');

	# admin_events, A rolling back
	sq($a, 'BEGIN');
	sq($a, "INSERT INTO tool_audit.admin_events (event_id, event_type, actor, tenant_id)"
		  . " VALUES ('" . $eid->(7) . "', 'policy.update', 'oc-a7', 'oc')");
	$tag = send_sql($b, "INSERT INTO tool_audit.admin_events (event_id, event_type, actor, tenant_id)"
		  . " VALUES ('" . $eid->(7) . "', 'policy.update', 'oc-b13', 'oc') ON CONFLICT (event_id) DO NOTHING"
		  . " RETURNING chain_seq");
	ok(wait_blocked($b), 'admin_events: B waits');
	sq($a, 'ROLLBACK');
	$out = wait_sent($b, $tag);
	is($b->{stderr}, '', 'admin_events: no error') or diag $b->{stderr};
	$b->{stderr} = '';
	is($out, '1', 'admin_events: B\'s row is stored, first of its lane');
	check_chains('after ON CONFLICT DO NOTHING races');

	$_->quit for ($a, $b);
}

ok(!$node->log_contains('TRAP:|terminated by signal|PANIC'), 'no backend crashed');
$node->stop;
done_testing();
