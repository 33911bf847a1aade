# export_since() and two-phase commit.  A session writes audited rows
# (log_call(), INSERT into tool_calls, log_event()) for a tenant and
# PREPAREs; other sessions write rows for that tenant and others and commit;
# a loader pages through export_since() with small pages while the
# transaction is prepared, then after COMMIT PREPARED (round 1), ROLLBACK
# PREPARED (round 2), a server restart with the transaction still prepared
# and then COMMIT PREPARED (round 3), and PREPAREs refused after the lanes
# were given up (round 4: a GID in use, a temporary table); and the loader
# paging inside a transaction of its own that is prepared and rolled back,
# or rolled back (round 5: each page's read record is a row of that
# transaction, which its next page sees; before the fix export_since()
# handed those rows out, and missed the rows that took their positions
# after the rollback).  The prepared transaction keeps its lanes closed
# (chain.c: the transaction-level lane lock passes to it, and is recovered
# at startup), so no later position of those lanes commits before its rows,
# and the loader's per-lane cursor picks them up after it commits.  At the end: every committed row exported
# exactly once with the database's row hash, nothing rolled back exported,
# each lane's rows received in chain order (positions 1, 2, 3, ... with no
# gap), the last line of each tool_calls lane carrying the lane's head link,
# and verify() clean.  Plain and preloaded (lane head hints in shared
# memory: a lane whose transaction was prepared is given back without one,
# or the lane would go on after rolled back rows).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Sessions qw(send_sql wait_sent sq);
use ExportLoader qw(page_sql store_page cursor_after);

my $node;

# ---- sessions that stay open across steps (as in 007_lanes.pl) ----

sub session
{
	my ($name) = @_;
	my $s = $node->background_psql('postgres', on_error_stop => 0);
	$s->{ta_name} = $name;
	# waiting for a prepared transaction is a failure, not a hang
	wait_sent($s, send_sql($s, "SET lock_timeout = '5s'"));
	return $s;
}

# ---- SQL ----

# $n rows into tool_calls for $tenant, named "$mark-1" .. "$mark-$n"
sub ins
{
	my ($tenant, $mark, $n) = @_;
	$n //= 1;
	return "INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)"
	  . " SELECT '$mark-' || g, '$tenant', true FROM generate_series(1, $n) g";
}

# a log_call() row and an admin event for $tenant
sub logged
{
	my ($tenant, $mark) = @_;
	return "SELECT (tool_audit.log_call('$mark-call', '{\"q\": 1}', '{\"ok\": true}', 3,"
	  . " '{\"tenant_id\": \"$tenant\"}')).id IS NOT NULL AS logged;"
	  . " SELECT tool_audit.log_event('test.twophase', 'tester', '{\"m\": \"$mark\"}',"
	  . " '{\"tenant_id\": \"$tenant\"}') IS NOT NULL AS event";
}

# a writer that is not the preparing session: a new connection, committed;
# a lock wait of more than a few seconds is an error (a lane of the prepared
# transaction taken would make its unique check wait for it)
sub write_committed
{
	my ($label, $sql) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($ret, $out, $err) = $node->psql('postgres', "SET lock_timeout = '5s'; $sql");
	is($ret . $err, '0', "$label: committed writer: " . substr($sql, 0, 60));
	return;
}

# "lane|seq" of the tool_calls row named $name
sub pos_of
{
	my ($name) = @_;
	return $node->safe_psql('postgres',
		"SELECT chain_lane || '|' || chain_seq FROM tool_audit.tool_calls WHERE tool_name = '$name'");
}

# ---- the loader ----

my @copy;    # [line, cursor or ''] in the order received

# one page after the last stored line; the number of rows
sub page
{
	return store_page(\@copy, $node->safe_psql('postgres', page_sql(cursor_after(\@copy), 3)));
}

# the same in session $s (which may be inside a transaction)
sub page_in
{
	my ($s) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	return store_page(\@copy, sq($s, page_sql(cursor_after(\@copy), 3)));
}

# page until a short page (each page's own read row is the next page's)
sub drain
{
	while (page() == 3) { }
	return;
}

sub copy_has
{
	my ($re) = @_;
	return scalar grep { $_->[0] =~ $re } @copy;
}

for my $preload (0, 1)
{
	my $label = $preload ? 'preloaded' : 'plain';
	@copy = ();
	$node = PostgreSQL::Test::Cluster->new($preload ? 'e2pc_pre' : 'e2pc_plain');
	$node->init;
	$node->append_conf('postgresql.conf',
		"max_prepared_transactions = 4\n"
		  . ($preload ? "shared_preload_libraries = 'tool_audit'\n" : ''));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION tool_audit');

	# ==== round 1: prepared, rows exported around it, COMMIT PREPARED ====
	my $p = session('P');
	my $w = session('W');
	sq($p, ins('e2pc_t', 'r1-p0', 2));    # P keeps lane 0 of tenant e2pc_t
	is(pos_of('r1-p0-2'), '0|2', "$label: P writes lane 0");
	sq($p, 'BEGIN');
	sq($p, ins('e2pc_t', 'r1-prep', 2));
	sq($p, logged('e2pc_t', 'r1-prep'));
	sq($p, ins('e2pc_u', 'r1-prep-u', 1));
	sq($p, "PREPARE TRANSACTION 'e2pc_r1'");
	drain();
	sq($w, ins('e2pc_t', 'r1-w', 2));
	write_committed($label, ins('e2pc_t', 'r1-c1', 2));
	write_committed($label, ins('e2pc_u', 'r1-c2', 2) . '; ' . logged('e2pc_u', 'r1-c2'));
	sq($p, ins('e2pc_t', 'r1-p1', 1));    # the same session goes on, in another lane
	page();
	write_committed($label, logged('e2pc_t', 'r1-c3'));
	drain();
	isnt((split /\|/, pos_of('r1-w-1'))[0], '0', "$label: W does not write into the prepared transaction's lane");
	isnt((split /\|/, pos_of('r1-p1-1'))[0], '0', "$label: P's next write goes to another lane");
	is(copy_has(qr/"tool_name": "r1-prep/), 0, "$label: nothing of the prepared transaction exported before COMMIT PREPARED");
	$node->safe_psql('postgres', "COMMIT PREPARED 'e2pc_r1'");
	is(pos_of('r1-prep-2'), '0|4', "$label: the prepared rows are at lane 0, positions 3 and 4");
	sq($w, ins('e2pc_t', 'r1-w2', 1));
	write_committed($label, ins('e2pc_t', 'r1-c4', 3));
	drain();
	is(copy_has(qr/"tool_name": "r1-prep-[12]"/), 2, "$label: the prepared rows exported after COMMIT PREPARED");

	# ==== round 2: prepared, ROLLBACK PREPARED, its positions used again ====
	sq($p, ins('e2pc_v', 'r2-p0', 1));
	my $lane_v = (split /\|/, pos_of('r2-p0-1'))[0];
	sq($p, 'BEGIN');
	sq($p, ins('e2pc_v', 'r2-rb', 3));
	sq($p, logged('e2pc_v', 'r2-rb'));
	sq($p, "PREPARE TRANSACTION 'e2pc_r2'");
	my $rb_pos = $node->safe_psql('postgres', q{SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'e2pc_r2'});
	is($rb_pos, '1', "$label: round 2 prepared");
	write_committed($label, ins('e2pc_v', 'r2-c1', 2));
	sq($w, ins('e2pc_v', 'r2-w', 1));
	page();
	drain();
	$node->safe_psql('postgres', "ROLLBACK PREPARED 'e2pc_r2'");
	# P takes its lane of e2pc_v again: the rolled back positions are reused
	sq($p, ins('e2pc_v', 'r2-p1', 2));
	is(pos_of('r2-p1-1'), "$lane_v|2", "$label: after ROLLBACK PREPARED the lane goes on at the first rolled back position");
	write_committed($label, ins('e2pc_v', 'r2-c2', 1));
	drain();
	is(copy_has(qr/r2-rb/), 0, "$label: nothing of the rolled back transaction exported");

	# ==== round 3: a restart while prepared, then COMMIT PREPARED ====
	sq($p, 'BEGIN');
	sq($p, ins('e2pc_t', 'r3-prep', 2));
	sq($p, logged('e2pc_t', 'r3-prep'));
	sq($p, ins('e2pc_u', 'r3-prep-u', 2));
	sq($p, "PREPARE TRANSACTION 'e2pc_r3'");
	write_committed($label, ins('e2pc_t', 'r3-c1', 2));
	drain();
	$p->quit;
	$w->quit;
	$node->stop('immediate');
	$node->start;
	is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'e2pc_r3'}),
		'1', "$label: the prepared transaction survived the restart");
	page();
	# sessions keep the lanes of e2pc_t below the prepared transaction's:
	# P2 probes them all, then that one (its lock recovered at startup)
	my $plane = (split /\|/, pos_of('r1-p1-1'))[0];
	my @holders = map { session("H$_") } 1 .. $plane;
	sq($holders[$_], ins('e2pc_t', "r3-h$_", 1)) for 0 .. $#holders;
	write_committed($label, ins('e2pc_t', 'r3-c2', 3));
	write_committed($label, ins('e2pc_u', 'r3-c3', 2));
	$p = session('P2');
	sq($p, ins('e2pc_t', 'r3-p2', 2));
	sq($p, logged('e2pc_t', 'r3-p2'));
	is((split /\|/, pos_of('r3-p2-1'))[0], $plane + 1,
		"$label: after the restart the prepared transaction's lane ($plane) is still closed");
	drain();
	is(copy_has(qr/"tool_name": "r3-prep/), 0, "$label: nothing of the prepared transaction exported before COMMIT PREPARED");
	$node->safe_psql('postgres', "COMMIT PREPARED 'e2pc_r3'");
	write_committed($label, ins('e2pc_t', 'r3-c4', 2));
	sq($p, ins('e2pc_t', 'r3-p3', 1));
	drain();
	is(copy_has(qr/"tool_name": "r3-prep-[12]"/), 2, "$label: the prepared rows exported after the restart and COMMIT PREPARED");
	is((split /\|/, pos_of('r3-prep-1'))[0], (split /\|/, pos_of('r1-p1-1'))[0],
		"$label: round 3 prepared in P's lane of round 1");
	$p->quit;
	$_->quit for @holders;

	# ==== round 4: PREPARE TRANSACTION that fails after the lanes were given
	# up (chain.c lets go of them at XACT_EVENT_PRE_PREPARE; a GID in use and
	# a temporary table are refused after that): the transaction rolls back
	# and its positions are used again ====
	$node->safe_psql('postgres', "BEGIN; SELECT 1; PREPARE TRANSACTION 'e2pc_dup'");
	$p = session('P3');
	$w = session('W3');
	sq($p, ins('e2pc_t', 'r4-p0', 1));
	my ($lane_p3, $seq_p3) = split /\|/, pos_of('r4-p0-1');
	for my $how ('gid', 'temp')
	{
		sq($p, 'BEGIN');
		sq($p, 'CREATE TEMP TABLE e2pc_tmp (x int)') if $how eq 'temp';
		sq($p, ins('e2pc_t', "r4-fail-$how", 2));
		sq($p, logged('e2pc_t', "r4-fail-$how"));
		wait_sent($p, send_sql($p, "PREPARE TRANSACTION '" . ($how eq 'gid' ? 'e2pc_dup' : 'e2pc_r4') . "'"));
		like($p->{stderr}, $how eq 'gid' ? qr/transaction identifier "e2pc_dup" is already in use/
			: qr/cannot PREPARE a transaction that has operated on temporary objects/,
			"$label: PREPARE TRANSACTION refused ($how)");
		page();
		sq($p, ins('e2pc_t', "r4-after-$how", 1));
		sq($w, ins('e2pc_t', "r4-w-$how", 1));
		write_committed($label, ins('e2pc_t', "r4-c-$how", 1));
		page();
	}
	is(pos_of('r4-after-gid-1'), "$lane_p3|" . ($seq_p3 + 1),
		"$label: after the refused PREPARE the session's lane goes on at the first rolled back position");
	is($node->safe_psql('postgres', q{SELECT count(*) FROM tool_audit.tool_calls WHERE tool_name LIKE 'r4-fail%'}),
		'0', "$label: nothing of the refused PREPAREs stored");
	$node->safe_psql('postgres', "ROLLBACK PREPARED 'e2pc_dup'");
	drain();
	is(copy_has(qr/r4-fail/), 0, "$label: nothing of the refused PREPAREs exported");
	$p->quit;
	$w->quit;

	# ==== round 5: the loader itself pages inside a transaction (as a
	# driver that opens one implicitly does) that is prepared and rolled
	# back, then one that is rolled back (a loader that crashes): each page
	# records its read (an admin event) in that transaction, which the next
	# page of the same transaction sees ====
	my $l = session('L');
	drain();
	for my $end ('prepared', 'rollback')
	{
		sq($l, 'BEGIN');
		write_committed($label, ins('e2pc_t', "r5-c-$end", 1));
		page_in($l) for 1 .. 3;
		if ($end eq 'prepared')
		{
			sq($l, "PREPARE TRANSACTION 'e2pc_loader'");
			$node->safe_psql('postgres', "ROLLBACK PREPARED 'e2pc_loader'");
		}
		else
		{
			sq($l, 'ROLLBACK');
		}
		# the loader goes on, its pages committed now
		page_in($l) for 1 .. 2;
		write_committed($label, logged('e2pc_t', "r5-after-$end"));
	}
	page_in($l) for 1 .. 2;
	$l->quit;
	drain();

	# ==== the copy against the database ====
	my %db = map { my ($k, $h) = split /\|/; ($k => $h) } split /\n/, $node->safe_psql('postgres', q{
	    SELECT 'tool_calls:' || id || '|' || encode(row_hash, 'hex') FROM tool_audit.tool_calls
	    UNION ALL SELECT 'admin_events:' || id || '|' || encode(row_hash, 'hex') FROM tool_audit.admin_events
	    UNION ALL SELECT 'data_changes:' || id || '|' || encode(row_hash, 'hex') FROM tool_audit.data_changes});
	my (%seen, $repeated, $wrong_hash, %last, @order);
	for my $r (@copy)
	{
		my ($table) = $r->[0] =~ /"table": "(\w+)"/;
		my ($id) = $r->[0] =~ /"id": (\d+)[,}]/;
		my ($hash) = $r->[0] =~ /"row_hash": "([0-9a-f]+)"/;
		my ($chain) = $r->[0] =~ /"chain_id": "(-?\d+)"/;
		my ($lane) = $r->[0] =~ /"chain_lane": (\d+)[,}]/;
		my ($seq) = $r->[0] =~ /"chain_seq": (\d+)[,}]/;
		my ($link) = $r->[0] =~ /"chain_hash": "([0-9a-f]+)"/;
		my $k = "$table:$id";
		$repeated++ if $seen{$k}++;
		$wrong_hash++ if !defined $db{$k} || $db{$k} ne $hash;
		# in each lane, positions 1, 2, 3, ... in the order received
		my $lk = "$table:$chain:$lane";
		my $want = ($last{$lk} // [0])->[0] + 1;
		push @order, "$lk: got $seq after " . ($want - 1) if $seq != $want;
		$last{$lk} = [ $seq, $link ];
	}
	my @missing = grep { !$seen{$_} } sort keys %db;
	is($repeated // 0, 0, "$label: no row exported twice");
	is($wrong_hash // 0, 0, "$label: every line has the row hash of a database row");
	is(scalar(@missing), 1, "$label: every committed row exported but the last page's own read")
	  or diag explain \@missing;
	like($node->safe_psql('postgres',
			"SELECT event_type || ' ' || (payload->>'function') FROM tool_audit.admin_events WHERE id = "
			  . (split /:/, $missing[0] // 'x:0')[1]),
		qr/^audit\.read export_since$/, "$label: the row not exported is the last page's read");
	is_deeply(\@order, [], "$label: each lane's rows received in chain order, no gap");
	# each lane's last received link is the lane's head in the database
	my %head = map { my ($k, $h) = split /\|/; ($k => $h) } split /\n/, $node->safe_psql('postgres', q{
	    SELECT DISTINCT ON (chain_id, chain_lane) 'tool_calls:' || chain_id || ':' || chain_lane || '|' || encode(chain_hash, 'hex')
	      FROM tool_audit.tool_calls ORDER BY chain_id, chain_lane, chain_seq DESC});
	my @heads = grep { !defined $last{$_} || $last{$_}[1] ne $head{$_} } sort keys %head;
	is_deeply(\@heads, [], "$label: the last line of each tool_calls lane carries the lane's head link");
	is($node->safe_psql('postgres', q{SELECT count(*) FROM tool_audit.tool_calls WHERE tool_name LIKE 'r2-rb%'}),
		'0', "$label: the rolled back rows are not in the table");
	is($node->safe_psql('postgres', 'SELECT count(*) FROM tool_audit.verify()'), '0',
		"$label: verify() finds nothing wrong");
	$node->stop;
}

done_testing();
