# kill -9 of the whole server during a many-tenant load (issue 16): 16
# writers, each statement for a tenant drawn at random among 2,000, so that
# every session keeps taking and giving back lanes (a session keeps at most
# 32 chains' lanes, src/chain.c), then crash recovery: every row whose commit
# a client saw acknowledged is there, no rolled back row is, verify() is
# clean, every lane holds positions 1..n, and writing resumes on the same
# chains.
#
# Writers are psql processes running generated scripts with ON_ERROR_STOP: a
# transaction's markers are echoed only after its COMMIT returned, so the
# echoed markers are exactly the acknowledged commits (as in
# 006_crash_chain.pl, whose kill -9 this test shares).  The writers run with
# synchronous_commit = off and the WAL writer slowed down: the extension
# commits audit transactions with synchronous_commit = on anyway, which is
# what this test checks under lane churn.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use IPC::Run;
use Test::More;

my $tmp = PostgreSQL::Test::Utils::tempdir;
my $ntenants = 2000;
my $nwriters = 16;

my $node = PostgreSQL::Test::Cluster->new('many_tenants_crash');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tool_audit'
max_connections = 40
wal_writer_delay = 10000ms
wal_writer_flush_after = 0
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION tool_audit');

sub tenant { return 'tenant_' . (1 + int(rand($ntenants))); }

# A psql script of $ntx transactions for writer $c; markers "$tag-$c-$t-$k"
# go to tool_calls.tool_name; those starting with "rb" are rolled back.
sub writer_script
{
	my ($tag, $c, $ntx, $rolled_back) = @_;
	my $s = "\\set ON_ERROR_STOP 1\n\\o /dev/null\nSET synchronous_commit = off;\n";
	for my $t (1 .. $ntx)
	{
		my $m = sub { "$tag-$c-$t-$_[0]" };
		my $kind = int(rand(6));
		my @acked;
		if ($kind <= 2)
		{
			$s .= "INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success, arguments)"
			  . " VALUES ('" . $m->(0) . "', '" . tenant() . "', true, '{\"n\": $t}');\n";
			@acked = ($m->(0));
		}
		elsif ($kind == 3)
		{
			$s .= "SELECT 1 FROM tool_audit.log_call('" . $m->(0) . "', '{\"n\": $t}', '{\"ok\": true}', 1.5, "
			  . "'{\"tenant_id\": \"" . tenant() . "\", \"conversation_id\": \"conv-$c\"}');\n";
			@acked = ($m->(0));
		}
		elsif ($kind == 4)
		{
			# three tenants' chains in one transaction
			$s .= "BEGIN;\nINSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES "
			  . join(', ', map { "('" . $m->($_) . "', '" . tenant() . "', true)" } 0 .. 2) . ";\nCOMMIT;\n";
			@acked = map { $m->($_) } 0 .. 2;
		}
		else
		{
			my $x = "rb$tag-$c-$t-0";
			push @$rolled_back, $x;
			$s .= "BEGIN;\nINSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('"
			  . $x . "', '" . tenant() . "', true);\nROLLBACK;\n";
		}
		$s .= "\\echo ACK @acked\n" if @acked;
	}
	return $s;
}

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

sub finish_writers
{
	my (@w) = @_;
	my @acked;
	for my $w (@w)
	{
		eval { $w->{h}->finish; 1 } or do { $w->{h}->kill_kill; $w->{timed_out} = 1; };
		$w->{status} = $w->{h}->result(0);
		$w->{stderr} = slurp_file("$w->{base}.err");
		$w->{acked} = 0;
		for (split /\n/, slurp_file("$w->{base}.out"))
		{
			next unless /^ACK (.*)$/;
			push @acked, split / /, $1;
			$w->{acked}++;
		}
	}
	return @acked;
}

# ---- kill -9 of every server process at once (as 006_crash_chain.pl) ----

sub ppid_of
{
	my ($pid) = @_;
	open my $fh, '<', "/proc/$pid/stat" or return -1;
	my $stat = <$fh>;
	close $fh;
	return $stat =~ /.*\)\s+\S+\s+(\d+)/s ? $1 : -1;
}

sub alive
{
	my ($pid) = @_;
	open my $fh, '<', "/proc/$pid/stat" or return 0;
	my $stat = <$fh> // '';
	close $fh;
	return $stat !~ /.*\)\s+[ZX]\s/s;
}

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
		BAIL_OUT("tool_calls holds $rows rows, not $n") if time > $deadline;
		select undef, undef, undef, 0.2;
	}
}

# ---- load, crash ----

my @rolled_back;
my @writers = start_writers('ok', $nwriters, 20000, \@rolled_back);
wait_for_rows(2500, @writers);
my $killed = kill9_server($node);
note "killed the postmaster and $killed child processes";
my @acked = finish_writers(@writers);

for my $w (@writers)
{
	ok(!$w->{timed_out}, "writer $w->{c} ended with the server");
	cmp_ok($w->{acked}, '>', 0, "writer $w->{c} had commits acknowledged");
	isnt($w->{status}, 0, "writer $w->{c} was still writing when the server was killed");
	my @errors = grep { !/connection|terminat|server closed|abnormally|before or while processing|could not receive/i }
	  grep { /\S/ } split /\n/, $w->{stderr};
	is_deeply(\@errors, [], "writer $w->{c} saw no error but the lost connection")
	  or diag $w->{stderr};
}

# ---- recovery ----

$node->start;
ok($node->log_contains('database system was interrupted|was not properly shut down'),
	'the server went through crash recovery');

sub present_markers
{
	my %n;
	$n{$_}++ for split /\n/, $node->safe_psql('postgres', 'SELECT tool_name FROM tool_audit.tool_calls');
	return %n;
}

sub check_chains
{
	my ($when) = @_;
	my $problems = $node->safe_psql('postgres', 'SELECT * FROM tool_audit.verify()');
	is($problems, '', "$when: verify() finds no problem") or diag $problems;
	my $bad = $node->safe_psql('postgres', q{
		SELECT chain_id, chain_lane, count(*), min(chain_seq), max(chain_seq)
		  FROM tool_audit.tool_calls GROUP BY 1, 2
		HAVING min(chain_seq) <> 1 OR max(chain_seq) <> count(*)
		    OR count(DISTINCT chain_seq) <> count(*)});
	is($bad, '', "$when: every lane holds positions 1..n without a gap") or diag $bad;
	return;
}

my %present = present_markers();
my @missing = grep { !$present{$_} } @acked;
my @doubled = grep { $present{$_} > 1 } keys %present;
my @rb_present = grep { $present{$_} } @rolled_back;
my $shape = $node->safe_psql('postgres', q{
	SELECT format('%s rows, %s tenants, %s chains, %s lanes', count(*), count(DISTINCT tenant_id),
	              count(DISTINCT chain_id), count(DISTINCT (chain_id, chain_lane)))
	  FROM tool_audit.tool_calls});
note sprintf('%d writers, %d markers acknowledged; after recovery: %s', $nwriters, scalar @acked, $shape);

cmp_ok(scalar @acked, '>=', 2000, 'many commits were acknowledged before the crash');
my ($tenants_written) = $shape =~ /, (\d+) tenants/;
cmp_ok($tenants_written, '>=', 500, 'the load wrote for many tenants');
is(scalar @missing, 0, 'every row whose commit was acknowledged survived the crash')
  or diag 'missing: ' . join(' ', @missing[ 0 .. ($#missing < 20 ? $#missing : 19) ]);
is(scalar @doubled, 0, 'no row is there twice') or diag "@doubled";
is(scalar @rb_present, 0, 'no rolled back row is there') or diag "@rb_present";
check_chains('after the crash');

# ---- writing resumes ----

my @rolled_back2;
my @writers2 = start_writers('ok2', 4, 300, \@rolled_back2);
my @acked2 = finish_writers(@writers2);
is($_->{status}, 0, "writer $_->{c} after recovery ran all its transactions") or diag $_->{stderr}
  for @writers2;
%present = present_markers();
is(scalar(grep { !$present{$_} } @acked2), 0, 'every row written after recovery is there');
is(scalar(grep { $present{$_} } @rolled_back2), 0, 'no row rolled back after recovery is there');
check_chains('after more writes');
my $continued = $node->safe_psql('postgres', q{
	SELECT count(*) FROM (
		SELECT chain_id, chain_lane FROM tool_audit.tool_calls GROUP BY 1, 2
		HAVING bool_or(tool_name LIKE 'ok-%') AND bool_or(tool_name LIKE 'ok2-%')) s});
cmp_ok($continued, '>', 0, 'lanes written before the crash were continued after it');

$node->stop;
done_testing();
