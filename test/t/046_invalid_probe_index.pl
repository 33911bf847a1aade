# An index left invalid under the name of one the C code probes (1.5,
# catalog.c ta_index_on_column()): the extension's owner may drop
# tool_calls_tool_call_id (a plain index) and make another under its name;
# a CREATE INDEX CONCURRENTLY that fails leaves that index invalid, never
# built.  Every call that brought a tool_call_id was probed through it and
# failed with XX001 "could not read block 0", an error that says the data
# are damaged; an invalid index is now not used, and the call is refused
# (55000, as without the index) until a valid one is back.  The
# CREATE INDEX CONCURRENTLY is made to fail by a prepared transaction that
# holds a lock on tool_calls and a lock_timeout: deterministic.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

for my $preload (1, 0)
{
	my $label = $preload ? 'preloaded' : 'not preloaded';
	my $node = PostgreSQL::Test::Cluster->new($preload ? 'invalid_pre' : 'invalid_plain');
	$node->init;
	$node->append_conf('postgresql.conf',
		"max_prepared_transactions = 2\n"
		  . ($preload ? "shared_preload_libraries = 'tool_audit'\n" : ''));
	$node->start;
	$node->safe_psql('postgres', q{
CREATE EXTENSION tool_audit;
DROP INDEX tool_audit.tool_calls_tool_call_id;
BEGIN;
INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success) VALUES ('held', 'acme', true);
PREPARE TRANSACTION 'holds_tool_calls';
});
	my ($ret, $out, $err) = $node->psql('postgres', q{
SET lock_timeout = '200ms';
CREATE INDEX CONCURRENTLY tool_calls_tool_call_id ON tool_audit.tool_calls (tool_call_id);
});
	like($err, qr/lock timeout/, "$label: CREATE INDEX CONCURRENTLY fails on the prepared transaction's lock");
	$node->safe_psql('postgres', "COMMIT PREPARED 'holds_tool_calls'");
	is($node->safe_psql('postgres', q{
SELECT indisvalid FROM pg_index WHERE indexrelid = 'tool_audit.tool_calls_tool_call_id'::regclass}),
		'f', "$label: an invalid index is left under the name");

	my $call = q{INSERT INTO tool_audit.tool_calls (tool_name, tool_call_id, tenant_id, conversation_id, success)
                 VALUES ('search', 'tc-1', 'acme', 'conv', true)};
	for my $try (1, 2)
	{
		($ret, $out, $err) = $node->psql('postgres', $call, extra_params => [ '-v', 'VERBOSITY=verbose' ]);
		like($err, qr/55000/, "$label: call $try refused while the index is invalid");
	}
	is($node->safe_psql('postgres', "SELECT count(*) FROM tool_audit.tool_calls WHERE tool_call_id = 'tc-1'"),
		'0', "$label: no call stored twice (none stored)");

	# a valid index back under the name: the retry is recognised again
	$node->safe_psql('postgres', q{
DROP INDEX tool_audit.tool_calls_tool_call_id;
CREATE INDEX tool_calls_tool_call_id ON tool_audit.tool_calls (tool_call_id);
});
	$node->safe_psql('postgres', $call);
	($ret, $out, $err) = $node->psql('postgres', $call);
	like($err, qr/tool_call_id is already recorded/, "$label: with a valid index, the retry is recognised");
	is($node->safe_psql('postgres', "SELECT count(*) FROM tool_audit.tool_calls WHERE tool_call_id = 'tc-1'"),
		'1', "$label: and the call is stored once");
	is($node->safe_psql('postgres', 'SELECT count(*) FROM tool_audit.verify()'), '0', "$label: verify() is clean");
	$node->stop;
}

done_testing();
