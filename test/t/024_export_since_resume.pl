# export_since() (issue 16) with a loader that crashes and a server that
# crashes: writers insert into several tenants' chains concurrently (some
# transactions held open while later ids commit); a loader pages with small
# pages and stores each line, and each page's cursor with its last line; the
# server is killed
# (immediate stop) after the loader's 15th page (writers may still be
# running), and the loader loses the tail of what it had stored (as a loader
# killed before its last writes reached disk would), often in the middle of
# a page.  After recovery the loader resumes from the cursor after the last
# line it kept (ExportLoader::cursor_after: the last whole page's cursor and
# the positions of the lines after it).  At the end the copy holds every row of the database exactly
# once (all but the last page's own read), with the database's row hashes.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use IPC::Run;
use Test::More;
use ExportLoader qw(page_sql store_page cursor_after);

my $node = PostgreSQL::Test::Cluster->new('export_since');
$node->init;
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION tool_audit');

my $tmp = PostgreSQL::Test::Utils::tempdir;

# a writer: 60 transactions, every third one holding its first row while it
# sleeps, so that rows with higher ids commit before it
sub writer_script
{
	my ($c) = @_;
	my $s = "\\set ON_ERROR_STOP 1\n\\o /dev/null\n";
	for my $t (1 .. 60)
	{
		my $tenant = ('es_a', 'es_b', 'es_c')[ ($c + $t) % 3 ];
		my $ins = "INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('w$c-$t', '$tenant', true);\n";
		if ($t % 3 == 0)
		{
			$s .= "BEGIN;\n$ins SELECT pg_sleep(0.02);\n"
			  . "SELECT tool_audit.log_event('es.w', 'w$c', '{\"t\": $t}', '{\"tenant_id\": \"$tenant\"}');\nCOMMIT;\n";
		}
		else
		{
			$s .= $ins;
		}
	}
	return $s;
}

sub start_writers
{
	my ($round) = @_;
	my @h;
	for my $c (1 .. 3)
	{
		my $f = "$tmp/writer-$round-$c.sql";
		open my $fh, '>', $f or die $!;
		print $fh writer_script("$round$c");
		close $fh;
		my ($out, $err) = ('', '');
		push @h, IPC::Run::start(
			[ 'psql', '-X', '-q', '-d', $node->connstr('postgres'), '-f', $f ],
			'>', \$out, '2>', \$err);
	}
	return @h;
}

# the loader's copy: [line, cursor] in the order received
my @copy;

# one page after the last stored line; returns the number of rows, or
# undef if the server was not there
sub page
{
	my ($ret, $out, $err) = $node->psql('postgres', page_sql(cursor_after(\@copy), 7));
	return undef if $ret != 0;
	return store_page(\@copy, $out);
}

# round 1: writers and the loader at once, then the server is killed
my @w = start_writers(1);
my $pages = 0;
while ($pages < 15)
{
	my $n = page();
	$pages++ if defined $n;
}
$node->stop('immediate');
$_->finish for @w;    # they fail: the server is gone
ok(scalar(@copy) > 0, 'the loader had stored rows before the crash');

# the loader lost the tail of what it had stored
my $kept = int(@copy / 2);
splice @copy, $kept;
note "kept $kept lines after the crash";

$node->start;

# round 2: writers again while the loader resumes; when they are done, the
# loader pages until a short page
@w = start_writers(2);
$pages = 0;
while ($pages < 15)
{
	my $n = page();
	$pages++ if defined $n;
}
$_->finish for @w;
while (1) { my $n = page(); last if defined $n && $n < 7; }

# every row exactly once, with the database's hashes
my %db = map { my ($k, $h) = split /\|/; ($k => $h) } split /\n/, $node->safe_psql('postgres', q{
    SELECT 'tool_calls:' || id || '|' || encode(row_hash, 'hex') FROM tool_audit.tool_calls
    UNION ALL SELECT 'admin_events:' || id || '|' || encode(row_hash, 'hex') FROM tool_audit.admin_events
    UNION ALL SELECT 'data_changes:' || id || '|' || encode(row_hash, 'hex') FROM tool_audit.data_changes});
my (%seen, $repeated, $wrong_hash);
for my $r (@copy)
{
	my ($table) = $r->[0] =~ /"table": "(\w+)"/;
	my ($id) = $r->[0] =~ /"id": (\d+)[,}]/;
	my ($hash) = $r->[0] =~ /"row_hash": "([0-9a-f]+)"/;
	my $k = "$table:$id";
	$repeated++ if $seen{$k}++;
	$wrong_hash++ if !defined $db{$k} || $db{$k} ne $hash;
}
my @missing = grep { !$seen{$_} } sort keys %db;
is($repeated // 0, 0, 'no row repeated');
is($wrong_hash // 0, 0, 'every line has the row hash of the database row');
is(scalar(@missing), 1, 'every row delivered but the last page\'s own read')
  or diag explain \@missing;
like($node->safe_psql('postgres',
		"SELECT event_type || ' ' || (payload->>'function') FROM tool_audit.admin_events WHERE id = "
		  . (split /:/, $missing[0] // 'x:0')[1]),
	qr/^audit\.read export_since$/, 'the row not delivered is the last page\'s read');
my $writers_rows = $node->safe_psql('postgres',
	"SELECT count(*) FROM tool_audit.tool_calls WHERE tool_name LIKE 'w%'");
ok($writers_rows > 100, "the writers wrote ($writers_rows rows)");
is($node->safe_psql('postgres', 'SELECT count(*) FROM tool_audit.verify()'), '0', 'verify() finds nothing wrong');

$node->stop;
done_testing();
