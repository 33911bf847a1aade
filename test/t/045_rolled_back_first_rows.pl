# A new database whose first inserts into an audit table were all rolled
# back (a tool call whose transaction failed, a tracked change rolled back)
# verifies clean: its id sequence has handed out ids while the table holds
# no rows, which verify() reports as an emptied trail only when the table
# once committed a row (tool_audit.trail_marks, src/trail_mark.c).  The
# mark commits only with a row: not after a rollback, not after a rolled
# back savepoint, and a backend that wrote one in a transaction that rolled
# back writes it again.  It is dumped, so a restore whose rows are refused
# still carries it (TAP 015 checks that such a trail is reported), and only
# the extension writes it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

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

$node->stop;
done_testing();
