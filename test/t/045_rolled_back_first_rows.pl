# A new database whose first inserts into an audit table were all rolled
# back (a tool call whose transaction failed, a tracked change rolled back)
# verifies clean: its id sequence has handed out ids while the table holds
# no rows, which verify() reports as an emptied trail only when the table
# once committed a row (tool_audit.trail_marks, src/trail_mark.c).  The
# mark commits only with a row: not after a rollback, not after a rolled
# back savepoint, and a backend that wrote one in a transaction that rolled
# back writes it again.  It is dumped, so a restore whose rows are refused
# still carries it (TAP 015 checks that such a trail is reported); rows
# restored from a dump taken before 1.5 (which has none) mark their tables;
# only the extension writes marks.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $node = PostgreSQL::Test::Cluster->new('rolled_back_first');
$node->init;
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION tool_audit;
	CREATE ROLE rb_writer LOGIN IN ROLE tool_audit_writer;
	CREATE TABLE customers (id int PRIMARY KEY, name text, balance numeric);
	INSERT INTO customers VALUES (1, 'Ada', 10), (2, 'Bob', 20);
	SELECT tool_audit.track('public.customers');
	GRANT SELECT, UPDATE ON customers TO rb_writer;
});

sub marks
{
	my ($table) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM tool_audit.trail_marks WHERE table_name = '$table'");
}

sub problems
{
	return $node->safe_psql('postgres',
		q{SELECT coalesce(string_agg(table_name || ': ' || problem, E'\n'), '') FROM tool_audit.verify()});
}

# every first insert rolled back: a tool call by INSERT and by log_call(), and
# a tracked change, each in a transaction that fails
$node->safe_psql('postgres', q{
	BEGIN;
	INSERT INTO tool_audit.tool_calls (tool_name, tenant_id) VALUES ('lookup_order', 'acme');
	ROLLBACK;
	BEGIN;
	SELECT tool_audit.log_call('refund_order', '{"order_id": "ORD-1"}', '{"ok": false}', 12.5,
	                           '{"tenant_id": "acme"}');
	ROLLBACK;
	BEGIN;
	UPDATE customers SET balance = balance - 5 WHERE id = 1;
	ROLLBACK;
}, connstr => $node->connstr('postgres') . ' user=rb_writer');
is($node->safe_psql('postgres', q{
	SELECT (SELECT is_called FROM tool_audit.tool_calls_id_seq)::text || ' ' ||
	       (SELECT is_called FROM tool_audit.data_changes_id_seq)::text || ' ' ||
	       (SELECT count(*) FROM tool_audit.tool_calls) || ' ' ||
	       (SELECT count(*) FROM tool_audit.data_changes)}),
	'true true 0 0', 'the sequences handed out ids and the tables hold no rows');
is(marks('tool_calls') . ' ' . marks('data_changes'), '0 0', 'no mark after rolled back inserts');
is(problems(), '', 'verify() reports nothing on a new database whose inserts were rolled back');

# a savepoint rolled back takes its mark away; the row committed after it
# marks the table again
$node->safe_psql('postgres', q{
	BEGIN;
	SAVEPOINT a;
	INSERT INTO tool_audit.tool_calls (tool_name, tenant_id) VALUES ('lookup_order', 'acme');
	ROLLBACK TO a;
	INSERT INTO tool_audit.tool_calls (tool_name, tenant_id) VALUES ('lookup_order', 'acme');
	COMMIT;
}, connstr => $node->connstr('postgres') . ' user=rb_writer');
is(marks('tool_calls'), '1', 'a row committed after a rolled back savepoint marks its table');

# one session: the mark its rolled back transaction wrote is written again by
# the next transaction, whose row commits
$node->safe_psql('postgres', q{
	BEGIN;
	UPDATE customers SET balance = balance - 5 WHERE id = 1;
	ROLLBACK;
	BEGIN;
	SAVEPOINT s;
	UPDATE customers SET balance = balance + 5 WHERE id = 2;
	RELEASE s;
	COMMIT;
}, connstr => $node->connstr('postgres') . ' user=rb_writer');
is(marks('data_changes'), '1', 'the session marks the table again after its rollback (released savepoint)');
is(problems(), '', 'verify() clean with rows');

# only the extension writes the marks; nobody edits them
my ($ret, $out, $err) = $node->psql('postgres',
	q{INSERT INTO tool_audit.trail_marks (table_name) VALUES ('tool_calls')},
	connstr => $node->connstr('postgres') . ' user=rb_writer');
like($err, qr/permission denied for table trail_marks/, 'a writer cannot write a mark');
($ret, $out, $err) = $node->psql('postgres', q{DELETE FROM tool_audit.trail_marks});
like($err, qr/not allowed|append-only|refuse/i, 'a superuser\'s DELETE of the marks is refused');
is(marks('tool_calls'), '1', '... and the mark stays');

# pg_dump keeps the marks with the configuration
my $dumpfile = $node->basedir . '/marks.sql';
$node->command_ok([ 'pg_dump', '-f', $dumpfile, '-d', $node->connstr('postgres') ], 'pg_dump');
my $dump = slurp_file($dumpfile);
like($dump, qr/COPY tool_audit\.trail_marks .*\n(?:.*\n)*?tool_calls\t/, 'pg_dump carries the marks');

# a dump taken before 1.5 carries no marks: the rows it restores mark their
# tables, so that a later dump of the restored database carries them
$node->safe_psql('postgres', q{CREATE DATABASE at14; CREATE DATABASE from14});
$node->safe_psql('at14', q{
	CREATE EXTENSION tool_audit VERSION '1.4';
	SELECT tool_audit.log_call('lookup_order', '{}', '{}', 1, '{"tenant_id": "acme"}') FROM generate_series(1, 2);
});
my $dump14 = $node->basedir . '/at14.sql';
$node->command_ok([ 'pg_dump', '-f', $dump14, '-d', $node->connstr('at14') ], 'pg_dump of a 1.4 database');
unlike(slurp_file($dump14), qr/trail_marks/, '... which has no marks');
$node->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-1', '-f', $dump14, '-d', $node->connstr('from14') ],
	'restored into 1.5');
is($node->safe_psql('from14', q{SELECT (SELECT count(*) FROM tool_audit.tool_calls) || ' ' ||
	(SELECT count(*) FROM tool_audit.trail_marks WHERE table_name = 'tool_calls')}),
	'2 1', 'the restored rows marked their table');

# two SERIALIZABLE transactions writing a table's first rows at once both
# commit: the mark is looked for without an MVCC read (no predicate lock, so
# no write skew between the two looks and inserts)
$node->safe_psql('postgres', q{CREATE DATABASE ssi});
$node->safe_psql('ssi', q{CREATE EXTENSION tool_audit});
my @ssi;
for my $n (1, 2)
{
	my %h = (in => '', out => '', err => '');
	$h{h} = IPC::Run::start([ 'psql', '-XAtq', '-d', $node->connstr('ssi') ],
		'<', \$h{in}, '>', \$h{out}, '2>', \$h{err});
	push @ssi, \%h;
}
sub ssi_step
{
	my ($h, $sql) = @_;
	$h->{in} .= "$sql;\n\\echo done\n";
	$h->{h}->pump until $h->{out} =~ /done\n\z/ || $h->{err} ne '';
	$h->{out} = '';
}
ssi_step($_, q{BEGIN ISOLATION LEVEL SERIALIZABLE}) for @ssi;
ssi_step($_, q{INSERT INTO tool_audit.tool_calls (tool_name, tenant_id) VALUES ('lookup_order', 'acme')}) for @ssi;
ssi_step($_, q{COMMIT}) for @ssi;
$_->{in} .= "\\q\n", $_->{h}->finish for @ssi;
is(join('', map { $_->{err} } @ssi), '', 'two SERIALIZABLE first writes both commit');
is($node->safe_psql('ssi', q{SELECT count(*) FROM tool_audit.tool_calls}), '2', '... both rows stored');

$node->stop;
done_testing();
