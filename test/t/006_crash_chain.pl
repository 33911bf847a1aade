# kill -9 of the whole server during a concurrent load, then crash recovery:
# every audit row whose commit a client saw acknowledged is there, no rolled
# back row is, the chains are intact (verify(), and positions 1..n in every
# lane), a digest taken during the load still verifies, and writers after
# recovery continue the same lanes.
#
# Writers are psql processes running generated scripts with
# synchronous_commit = off (the extension commits audit transactions with
# synchronous_commit = on anyway) and ON_ERROR_STOP: a transaction's markers
# are echoed only after its COMMIT returned, so the echoed markers are
# exactly the acknowledged commits.  The WAL writer is slowed down as in
# 002_durability.pl, so an asynchronous commit would really be lost.
#
# fsync stays off (PostgreSQL::Test::Cluster's default): killing processes
# does not lose the kernel's page cache, only what the server had not yet
# written out of its own memory, which is what this test is about.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use IPC::Run;
use Test::More;

my $tmp = PostgreSQL::Test::Utils::tempdir;
my @tenants = ('acme', 'globex', undef);

my $node = PostgreSQL::Test::Cluster->new('crash_chain');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tool_audit'
wal_writer_delay = 10000ms
wal_writer_flush_after = 0
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION tool_audit');

# ---- the writers ----

sub lit { my ($v) = @_; return defined $v ? "'$v'" : 'NULL'; }

sub ctx
{
	my ($tenant, %more) = @_;
	$more{tenant_id} = $tenant if defined $tenant;
	return "'{" . join(', ', map { qq{"$_": "$more{$_}"} } sort keys %more) . "}'";
}

# A psql script of $ntx transactions for writer $c; markers ("$tag-$c-$t-$k")
# go to tool_calls.tool_name or admin_events.actor.  Markers starting with
# "rb" are rolled back (transaction, savepoint or PL/pgSQL exception block);
# all of them are added to $rolled_back.
sub writer_script
{
	my ($tag, $c, $ntx, $rolled_back) = @_;
	my $s = "\\set ON_ERROR_STOP 1\n\\o /dev/null\n"
	  . "SET synchronous_commit = off;\n"
	  . "SELECT current_setting('synchronous_commit') AS sc \\gset\n"
	  . "\\echo SYNC :sc\n";
	for my $t (1 .. $ntx)
	{
		my $m = sub { "$tag-$c-$t-$_[0]" };
		my $r = sub { my $x = "rb$tag-$c-$t-$_[0]"; push @$rolled_back, $x; $x };
		my $tn = sub { $tenants[ int(rand(@tenants)) ] };
		my $kind = int(rand(8));
		my @acked;
		if ($kind == 0)
		{
			$s .= "INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success, arguments)"
			  . " VALUES ('" . $m->(0) . "', " . lit($tn->()) . ", true, '{\"n\": $t}') RETURNING id;\n";
			@acked = ($m->(0));
		}
		elsif ($kind == 1)
		{
			$s .= "SELECT id FROM tool_audit.log_call('" . $m->(0) . "', '{\"n\": $t}', '{\"ok\": true}', 1.5, "
			  . ctx($tn->(), conversation_id => "conv-$c") . ");\n";
			@acked = ($m->(0));
		}
		elsif ($kind == 2)
		{
			# several rows, several chains (both tables) in one transaction
			my @rows = map { "('" . $m->($_) . "', " . lit($tn->()) . ", " . ($_ % 2 ? 'true' : 'false') . ")" } 0 .. 2;
			$s .= "BEGIN;\n"
			  . "INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES "
			  . join(', ', @rows) . " RETURNING id;\n"
			  . "SELECT id FROM tool_audit.log_event('policy.update', '" . $m->(3) . "', '{\"n\": $t}', "
			  . ctx($tn->(), reason => 'load') . ");\n"
			  . "COMMIT;\n";
			@acked = map { $m->($_) } 0 .. 3;
		}
		elsif ($kind == 3)
		{
			$s .= "BEGIN;\n"
			  . "INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('"
			  . $r->(0) . "', " . lit($tn->()) . ", true), ('" . $r->(1) . "', " . lit($tn->()) . ", true);\n"
			  . "INSERT INTO tool_audit.admin_events (event_type, actor, tenant_id) VALUES ('prompt.update', '"
			  . $r->(2) . "', " . lit($tn->()) . ");\n"
			  . "ROLLBACK;\n";
		}
		elsif ($kind == 4)
		{
			my $tenant = $tn->();
			$s .= "BEGIN;\n"
			  . "INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('"
			  . $m->(0) . "', " . lit($tenant) . ", true);\n"
			  . "SAVEPOINT s;\n"
			  . "INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('"
			  . $r->(1) . "', " . lit($tenant) . ", true), ('" . $r->(2) . "', " . lit($tn->()) . ", true);\n"
			  . "ROLLBACK TO SAVEPOINT s;\n"
			  . "INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('"
			  . $m->(3) . "', " . lit($tenant) . ", true), ('" . $m->(4) . "', " . lit($tn->()) . ", true);\n"
			  . "COMMIT;\n";
			@acked = ($m->(0), $m->(3), $m->(4));
		}
		elsif ($kind == 5)
		{
			my $tenant = $tn->();
			$s .= "BEGIN;\n"
			  . "DO \$d\$ BEGIN\n"
			  . "  INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('"
			  . $r->(0) . "', " . lit($tenant) . ", true);\n"
			  . "  RAISE EXCEPTION 'undo';\n"
			  . "EXCEPTION WHEN raise_exception THEN NULL;\n"
			  . "END \$d\$;\n"
			  . "INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('"
			  . $m->(1) . "', " . lit($tenant) . ", true);\n"
			  . "COMMIT;\n";
			@acked = ($m->(1));
		}
		else
		{
			$s .= "INSERT INTO tool_audit.admin_events (event_type, actor, tenant_id) VALUES ('prompt.update', '"
			  . $m->(0) . "', " . lit($tn->()) . ") RETURNING id;\n";
			@acked = ($m->(0));
		}
		# runs only once the statements above, COMMIT included, succeeded
		$s .= "\\echo ACK @acked\n" if @acked;
	}
	return $s;
}

# Start $n writers running $ntx transactions each; returns their handles.
sub start_writers
{
	my ($tag, $n, $ntx, $rolled_back) = @_;
	my @w;
	for my $c (1 .. $n)
	{
		my $base = "$tmp/$tag-$c";
		open my $fh, '>', "$base.sql" or die "$base.sql: $!";
		print $fh writer_script($tag, $c, $ntx, $rolled_back);
		close $fh;
		my $h = IPC::Run::start(
			[ 'psql', '-X', '-q', '-d', $node->connstr('postgres'), '-f', "$base.sql" ],
			'<', \undef, '>', "$base.out", '2>', "$base.err",
			IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
		push @w, { c => $c, h => $h, base => $base };
	}
	return @w;
}

# Wait for the writers to exit; returns the acknowledged markers, and fills
# in each writer's exit status, stderr, number of acknowledged transactions,
# last acknowledged transaction and the synchronous_commit it ran with.
sub finish_writers
{
	my (@w) = @_;
	my @acked;
	for my $w (@w)
	{
		eval { $w->{h}->finish; 1 } or do
		{
			$w->{h}->kill_kill;
			$w->{timed_out} = 1;
		};
		$w->{status} = $w->{h}->result(0);
		$w->{stderr} = slurp_file("$w->{base}.err");
		$w->{acked} = 0;
		$w->{last} = 0;
		for (split /\n/, slurp_file("$w->{base}.out"))
		{
			if (/^ACK (.*)$/)
			{
				push @acked, split / /, $1;
				$w->{acked}++;
				$w->{last} = $1 if /^ACK \S+-(\d+)-\d+( |$)/;
			}
			elsif (/^SYNC (.*)$/) { $w->{sync} = $1; }
		}
	}
	return @acked;
}

# ---- kill -9 of every server process at once ----

sub ppid_of
{
	my ($pid) = @_;
	open my $fh, '<', "/proc/$pid/stat" or return -1;
	my $stat = <$fh>;
	close $fh;
	# "pid (comm) state ppid ...", comm may hold anything
	return $stat =~ /.*\)\s+\S+\s+(\d+)/s ? $1 : -1;
}

sub alive
{
	my ($pid) = @_;
	open my $fh, '<', "/proc/$pid/stat" or return 0;
	my $stat = <$fh> // '';
	close $fh;
	return $stat !~ /.*\)\s+[ZX]\s/s;    # a zombie holds no memory any more
}

# SIGSTOP the postmaster so it cannot fork or react, SIGKILL its children,
# then the postmaster; wait until all are gone.
sub kill9_server
{
	my ($node) = @_;
	my $pm = $node->{_pid};
	kill 'STOP', $pm or die "cannot stop postmaster $pm: $!";
	opendir my $d, '/proc' or die "/proc: $!";
	my @children = grep { /^\d+$/ && ppid_of($_) == $pm } readdir $d;
	closedir $d;
	kill 'KILL', @children;
	$node->kill9;
	# the new postmaster refuses to start while the old one's pid exists,
	# zombie included: wait for whoever inherited it to reap it.  Where
	# nobody reaps orphans (a container whose PID 1 never waits), only a
	# zombie is left: it holds no memory, so after a few seconds its lock
	# file is removed instead.
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	my $zombie_since;
	while (kill(0, $pm) || grep { alive($_) } @children)
	{
		if (!alive($pm) && !grep { alive($_) } @children)
		{
			$zombie_since //= time;
			if (time - $zombie_since > 5)
			{
				diag "postmaster $pm left as an unreaped zombie: removing postmaster.pid";
				unlink $node->data_dir . '/postmaster.pid';
				last;
			}
		}
		die "server processes were not gone after SIGKILL" if time > $deadline;
		select undef, undef, undef, 0.05;
	}
	return scalar @children;
}

# ---- load, digest, crash ----

my (@rolled_back, $digest);
my $nwriters = 6;
my @writers = start_writers('ok', $nwriters, 20000, \@rolled_back);

# Wait until tool_calls holds $n rows; stop at once if a writer failed.
sub wait_for_rows
{
	my ($n, @w) = @_;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	for (;;)
	{
		for my $w (@w)
		{
			my $err = slurp_file("$w->{base}.err");
			BAIL_OUT("writer $w->{c} failed: $err") if $err ne '';
		}
		my $rows = $node->safe_psql('postgres', 'SELECT count(*) FROM tool_audit.tool_calls');
		return $rows if $rows >= $n;
		BAIL_OUT("tool_calls holds $rows rows, not $n, after $PostgreSQL::Test::Utils::timeout_default s")
		  if time > $deadline;
		select undef, undef, undef, 0.1;
	}
}

wait_for_rows(300, @writers);
# a digest while the writers run
$digest = $node->safe_psql('postgres', 'SELECT tool_audit.digest()');
my $rows_at_digest = wait_for_rows(0);
wait_for_rows($rows_at_digest + 3000, @writers);

my $killed = kill9_server($node);
note "killed the postmaster and $killed child processes";
my @acked = finish_writers(@writers);

for my $w (@writers)
{
	ok(!$w->{timed_out}, "writer $w->{c} ended with the server");
	is($w->{sync}, 'off', "writer $w->{c} ran with synchronous_commit = off");
	cmp_ok($w->{acked}, '>', 0, "writer $w->{c} had commits acknowledged");
	# ON_ERROR_STOP: psql stopped at the first error, which must be the crash
	my @errors = grep { !/connection|terminat|server closed|abnormally|before or while processing|could not receive/i }
	  grep { /\S/ } split /\n/, $w->{stderr};
	isnt($w->{status}, 0, "writer $w->{c} was still writing when the server was killed");
	is_deeply(\@errors, [], "writer $w->{c} saw no error but the lost connection")
	  or diag $w->{stderr};
}

# ---- recovery ----

$node->start;
ok($node->log_contains('database system was interrupted|was not properly shut down'),
	'the server went through crash recovery');

# (1.5: verify() and digest() record their reads as audit.read events, which
# no writer wrote)
sub present_markers
{
	my %n;
	$n{$_}++ for split /\n/, $node->safe_psql('postgres', q{
		SELECT tool_name FROM tool_audit.tool_calls
		UNION ALL SELECT actor FROM tool_audit.admin_events WHERE event_type <> 'audit.read'});
	return %n;
}

sub check_chains
{
	my ($when) = @_;
	my $problems = $node->safe_psql('postgres', 'SELECT * FROM tool_audit.verify()');
	is($problems, '', "$when: verify() finds no problem") or diag $problems;
	for my $table (qw(tool_calls admin_events))
	{
		# per lane: positions 1..n, each once (the unique index aside)
		my $bad = $node->safe_psql('postgres', qq{
			SELECT chain_id, chain_lane, count(*), count(DISTINCT chain_seq), min(chain_seq), max(chain_seq)
			  FROM tool_audit.$table GROUP BY 1, 2
			HAVING min(chain_seq) <> 1 OR max(chain_seq) <> count(*)
			    OR count(DISTINCT chain_seq) <> count(*)});
		is($bad, '', "$when: every lane of $table holds positions 1..n without a gap") or diag $bad;
	}
	return;
}

my %present = present_markers();
my @missing = grep { !$present{$_} } @acked;
my @doubled = grep { $present{$_} > 1 } keys %present;
my @rb_present = grep { $present{$_} } @rolled_back;
my @unknown = grep { !/^ok-/ } keys %present;
my $rows = scalar keys %present;
# rolled back markers of transactions the writers got to (before the last
# acknowledged one, or the one after it)
my %last = map { ($_->{c} => $_->{last}) } @writers;
my $rb_run = grep { /-(\d+)-(\d+)-\d+$/ && $2 <= $last{$1} + 1 } @rolled_back;
my $lanes = $node->safe_psql('postgres', q{
	SELECT string_agg(format('%s: %s chains, %s lanes', t, chains, lanes), '; ')
	  FROM (SELECT 'tool_calls' AS t, count(DISTINCT chain_id) AS chains,
	               count(DISTINCT (chain_id, chain_lane)) AS lanes FROM tool_audit.tool_calls
	        UNION ALL
	        SELECT 'admin_events', count(DISTINCT chain_id), count(DISTINCT (chain_id, chain_lane))
	          FROM tool_audit.admin_events) s});
note sprintf('%d writers, %d markers acknowledged, %d rows present after recovery (%d '
	  . 'committed unacknowledged), about %d rows rolled back; %s',
	$nwriters, scalar @acked, $rows, $rows - scalar @acked, $rb_run, $lanes);

cmp_ok(scalar @acked, '>=', 3000, 'many commits were acknowledged before the crash');
is(scalar @missing, 0, 'every row whose commit was acknowledged survived the crash')
  or diag 'missing: ' . join(' ', @missing[ 0 .. ($#missing < 20 ? $#missing : 19) ]);
is(scalar @doubled, 0, 'no row is there twice') or diag "@doubled";
is(scalar @rb_present, 0, 'no rolled back row is there') or diag "@rb_present";
is(scalar @unknown, 0, 'no row is there that the writers did not write') or diag "@unknown";
check_chains('after the crash');

my $vd = $node->safe_psql('postgres',
	"SELECT * FROM tool_audit.verify_digest('$digest'::jsonb)");
is($vd, '', 'the digest taken during the load still verifies after recovery') or diag $vd;

# ---- writers after recovery continue the chains ----

my @rolled_back2;
my @writers2 = start_writers('ok2', 4, 150, \@rolled_back2);
my @acked2 = finish_writers(@writers2);
for my $w (@writers2)
{
	is($w->{status}, 0, "writer $w->{c} after recovery ran all its transactions")
	  or diag $w->{stderr};
}
%present = present_markers();
is(scalar(grep { !$present{$_} } @acked2), 0, 'every row written after recovery is there');
is(scalar(grep { $present{$_} } @rolled_back2), 0, 'no row rolled back after recovery is there');
is(scalar(grep { $present{$_} > 1 } keys %present), 0, 'still no row is there twice');
check_chains('after more writes');
my $continued = $node->safe_psql('postgres', q{
	SELECT count(*) FROM (
		SELECT chain_id, chain_lane FROM tool_audit.tool_calls GROUP BY 1, 2
		HAVING bool_or(tool_name LIKE 'ok-%') AND bool_or(tool_name LIKE 'ok2-%')) s});
cmp_ok($continued, '>', 0, 'lanes written before the crash were continued after it');
$vd = $node->safe_psql('postgres', "SELECT * FROM tool_audit.verify_digest('$digest'::jsonb)");
is($vd, '', 'the digest from before the crash still verifies after more writes') or diag $vd;
note sprintf('after recovery: %d more markers acknowledged, %d lanes continued across the crash',
	scalar @acked2, $continued);

$node->stop;
done_testing();
