# A caller that sets synchronous_commit = off must not lose audit rows in a
# crash: the transaction that wrote them commits with synchronous_commit = on.
# A control table written the same way after them shows that this test can
# fail: its last commits are not flushed before the crash and are lost.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('durability');
$node->init;
# the WAL writer must not flush asynchronous commits behind our back
$node->append_conf('postgresql.conf', qq{
wal_writer_delay = 10000ms
wal_writer_flush_after = 0
synchronous_commit = off
});
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION tool_audit;
	CREATE TABLE control (n int);
});

# one session, every statement its own transaction, synchronous_commit off
my $sql = '';
$sql .= "SELECT tool_audit.log_call('call_$_', '{}', '{}', 1, '{\"conversation_id\": \"durable\"}');\n"
  for 1 .. 20;
$sql .= "INSERT INTO tool_audit.tool_calls (tool_name, conversation_id) VALUES ('insert_$_', 'durable');\n"
  for 1 .. 20;
$sql .= "SELECT tool_audit.log_event('prompt.update', 'a', '{}', '{\"reason\": \"durable\"}');\n"
  for 1 .. 10;
$sql .= "INSERT INTO control VALUES ($_);\n" for 1 .. 20;
$sql .= "SHOW synchronous_commit;\n";
my $out = $node->safe_psql('postgres', $sql);
like($out, qr/off$/, 'the session really ran with synchronous_commit = off');

$node->stop('immediate');
$node->start;

is($node->safe_psql('postgres',
		"SELECT count(*) FROM tool_audit.tool_calls WHERE conversation_id = 'durable'"),
	'40', 'every audit row whose commit was acknowledged survived the crash');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM tool_audit.admin_events WHERE reason = 'durable'"),
	'10', 'every admin event survived the crash');
cmp_ok($node->safe_psql('postgres', 'SELECT count(*) FROM control'),
	'<', 20, 'control: asynchronous commits without audit rows were lost (the test can fail)');

$node->stop;
done_testing();
