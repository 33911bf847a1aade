# pg_dump / pg_restore keeps the retention settings: a dump holds the seeded
# policies and floor only once changed (changed_by <> 'tool_audit'), and the
# database restored into has the seeds already under the same keys; the
# restored rows replace the seeds (retention_restore_seed()), overrides and
# new policies come back, the audit rows keep the retention they were
# written with, and rows written after the restore follow the restored
# settings.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('policy_restore');
$node->init;
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION tool_audit;
	SELECT tool_audit.set_retention_policy('general', 400, reason => 'contract minimum');
	SELECT tool_audit.set_retention_policy('payments', 3000, '{pay_*}', reason => 'ledger');
	SELECT tool_audit.set_retention_policy('admin', 500, applies_to => 'admin_events');
	SELECT tool_audit.set_retention_override('acme', 'general', 600, 'acme contract');
	SELECT tool_audit.set_retention_floor(200, 'stricter floor');
	SELECT tool_audit.log_call('lookup', '{}', '{}', 1, '{"tenant_id": "acme"}');
	SELECT tool_audit.log_call('pay_card', '{}', '{}', 1, '{"tenant_id": "acme"}');
	SELECT tool_audit.log_call('lookup', '{}', '{}', 1, '{"tenant_id": "other"}');
});

my %same = (
	# (a seed never changed is not dumped: its changed_at is its CREATE EXTENSION's)
	policies => q{SELECT policy_name, applies_to, retention_days, matches, is_default, description,
	                     CASE WHEN changed_by <> 'tool_audit' THEN changed_at END, changed_by
	                FROM tool_audit.retention_policies ORDER BY 1},
	overrides => q{SELECT * FROM tool_audit.retention_overrides ORDER BY 1, 2},
	floor => q{SELECT * FROM tool_audit.retention_floor},
	rows => q{SELECT id, tool_name, tenant_id, retention_policy, expires_at, chain_id, row_hash
	            FROM tool_audit.tool_calls ORDER BY id},
);
my %orig = map { $_ => $node->safe_psql('postgres', $same{$_}) } keys %same;
like($orig{policies}, qr/^general\|tool_calls\|400\|/m, 'the changed seed is in the source');

my $dump = $node->basedir . '/policy.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('postgres') ], 'pg_dump');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
{
	local $ENV{PGOPTIONS} = '-c tool_audit.restoring=on';
	$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', $node->connstr('restored'), $dump ],
		'pg_restore with tool_audit.restoring = on: changed seeds do not clash with the seeds');
}
for my $k (sort keys %same)
{
	is($node->safe_psql('restored', $same{$k}), $orig{$k}, "$k are identical after the restore");
}
is($node->safe_psql('restored', q{SELECT count(*) FROM tool_audit.retention_policies}), '6',
	'no seed duplicated: five seeds (row_changes since 1.5) and one new policy');
$node->safe_psql('restored', q{
	SELECT tool_audit.log_call(t, '{}', '{}', 1, jsonb_build_object('tenant_id', n))
	  FROM (VALUES (1, 'lookup', 'acme'), (2, 'pay_card', 'x'), (3, 'lookup', 'other')) v(i, t, n) ORDER BY i});
is($node->safe_psql('restored', q{
	SELECT string_agg(retention_policy || ':' || (extract(epoch FROM expires_at - recorded_at) / 86400)::int, ',' ORDER BY id)
	  FROM (SELECT * FROM tool_audit.tool_calls ORDER BY id DESC LIMIT 3) t}),
	'general:600,payments:3000,general:400',
	'rows written after the restore follow the restored policies, override and floor');
is($node->safe_psql('restored', q{SELECT count(*) FROM tool_audit.verify()}), '0',
	'verify(): restored chains intact');

$node->stop;
done_testing();
