# With shared_preload_libraries = 'tool_audit', the hooks refuse what event
# triggers cannot see, even to a superuser: dropping or disabling the event
# triggers, and UPDATE/DELETE/TRUNCATE after the row triggers were switched
# off behind the extension's back (a catalog edit).  Without preloading, the
# same catalog edit does switch the row triggers off: the contrast shows the
# hooks, not the triggers, did the refusing.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

sub refused
{
	my ($node, $sql, $pattern, $name) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', $sql);
	isnt($ret, 0, "$name: refused");
	like($err, $pattern, "$name: says why");
}

my $node = PostgreSQL::Test::Cluster->new('preload');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'tool_audit'");
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION tool_audit;
	SELECT tool_audit.log_call('t', '{}', '{}', 1, '{"conversation_id": "c"}');
});

refused($node, 'DROP EVENT TRIGGER tool_audit_ddl_start',
	qr/DROP EVENT TRIGGER is not allowed/, 'DROP EVENT TRIGGER');
refused($node, 'ALTER EVENT TRIGGER tool_audit_sql_drop DISABLE',
	qr/ALTER EVENT TRIGGER is not allowed/, 'ALTER EVENT TRIGGER DISABLE');
refused($node, 'ALTER EVENT TRIGGER tool_audit_table_rewrite RENAME TO x',
	qr/ALTER EVENT TRIGGER \.\.\. RENAME is not allowed/, 'ALTER EVENT TRIGGER RENAME');

# switch the row triggers off through the catalog, as only a superuser can
$node->safe_psql('postgres', q{
	UPDATE pg_trigger SET tgenabled = 'D'
	 WHERE tgrelid = 'tool_audit.tool_calls'::regclass AND NOT tgisinternal;
});
refused($node, 'UPDATE tool_audit.tool_calls SET success = false',
	qr/UPDATE is not allowed on tool_audit table tool_calls/, 'UPDATE with triggers off');
refused($node, 'DELETE FROM tool_audit.tool_calls',
	qr/DELETE is not allowed on tool_audit table tool_calls/, 'DELETE with triggers off');
refused($node, 'TRUNCATE tool_audit.tool_calls',
	qr/TRUNCATE is not allowed on tool_audit table tool_calls/, 'TRUNCATE with triggers off');
refused($node, q{INSERT INTO tool_audit.tool_calls (tool_name, success) VALUES ('x', true)
	ON CONFLICT (id) DO UPDATE SET success = false},
	qr/UPDATE is not allowed/, 'upsert with triggers off');
is($node->safe_psql('postgres', 'SELECT count(*) FROM tool_audit.tool_calls'),
	'1', 'the row is still there');

# the same edit without preloading: the row triggers are really off, so the
# refusal above came from the hook
$node->append_conf('postgresql.conf', "shared_preload_libraries = ''");
$node->restart;
my ($ret) = $node->psql('postgres', 'DELETE FROM tool_audit.tool_calls');
is($ret, 0, 'without preload, a catalog edit does disable the row triggers (documented caveat)');
is($node->safe_psql('postgres', 'SELECT count(*) FROM tool_audit.tool_calls'),
	'0', 'and the row is gone: only detection (the hash chain) can catch this');
# and without preload a superuser may disable the event triggers
($ret) = $node->psql('postgres', 'ALTER EVENT TRIGGER tool_audit_ddl_start DISABLE');
is($ret, 0, 'without preload, ALTER EVENT TRIGGER ... DISABLE is not refused (documented caveat)');

$node->stop;
done_testing();
