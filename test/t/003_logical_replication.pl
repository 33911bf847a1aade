# Logical replication's apply worker fires neither statement triggers nor the
# executor permission hook: a subscription from a cluster that publishes a
# table of the same name could rewrite or delete audit rows.  The row-level
# append-only triggers (ENABLE ALWAYS) refuse it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $audit = PostgreSQL::Test::Cluster->new('audit');
$audit->init;
$audit->append_conf('postgresql.conf', "shared_preload_libraries = 'tool_audit'");
$audit->start;
$audit->safe_psql('postgres', q{
	CREATE EXTENSION tool_audit;
	SELECT tool_audit.log_call('t' || g, '{}', '{}', 1, '{"conversation_id": "c"}') FROM generate_series(1, 3) g;
});
my $before = $audit->safe_psql('postgres',
	'SELECT string_agg(id || tool_name, \',\' ORDER BY id) FROM tool_audit.tool_calls');

my $rogue = PostgreSQL::Test::Cluster->new('rogue');
$rogue->init(allows_streaming => 'logical');
$rogue->start;
$rogue->safe_psql('postgres', q{
	CREATE SCHEMA tool_audit;
	CREATE TABLE tool_audit.tool_calls (id bigint PRIMARY KEY, tool_name text);
	INSERT INTO tool_audit.tool_calls VALUES (1, 't1'), (2, 't2'), (3, 't3');
	CREATE PUBLICATION rogue FOR TABLE tool_audit.tool_calls WITH (publish = 'update, delete');
});
my $connstr = $rogue->connstr . ' dbname=postgres';
$audit->safe_psql('postgres',
	"CREATE SUBSCRIPTION rogue CONNECTION '$connstr' PUBLICATION rogue WITH (copy_data = false)");
$rogue->wait_for_catchup('rogue');

$rogue->safe_psql('postgres', q{
	UPDATE tool_audit.tool_calls SET tool_name = 'forged' WHERE id = 2;
	DELETE FROM tool_audit.tool_calls WHERE id = 3;
});

# the apply worker keeps failing on the row trigger and says so in the log
my $log_offset = 0;
ok($audit->wait_for_log(qr/(UPDATE|DELETE) is not allowed on tool_audit table tool_calls/, $log_offset),
	'the apply worker was refused by the append-only row trigger');
is($audit->safe_psql('postgres',
		'SELECT string_agg(id || tool_name, \',\' ORDER BY id) FROM tool_audit.tool_calls'),
	$before, 'no audit row was changed or deleted by replication');

$audit->safe_psql('postgres', 'DROP SUBSCRIPTION rogue');
$audit->stop;
$rogue->stop;
done_testing();
