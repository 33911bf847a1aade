# pg_dump / pg_restore keeps the audit trail: with the tool_audit.restoring
# setting (PGOPTIONS='-c tool_audit.restoring=on') as with none, every row
# comes back identical (ids, times, roles, row hashes and chain positions, so
# verify() and a digest taken before the dump still pass), the
# pseudonymization key comes back active so new pseudonyms still link to old
# ones, and the id sequences continue.  test/t/015_restore_plain.pl runs
# every ordinary command with no setting, and what a restore refuses.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use DumpFixture qw(fill_trail %same);

my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init;
$node->start;
fill_trail($node, 'postgres');
my ($rows, $events, $pseudonym) = @same{qw(rows events pseudonym)};

# a digest of the chains before the dump: the restored copy must still match it
# (taken first: since 1.5 it records its read, an admin event the dump holds)
my $digest = $node->safe_psql('postgres', 'SELECT tool_audit.digest()');
my %orig = map { $_ => $node->safe_psql('postgres', $same{$_}) } keys %same;

my $dump = $node->basedir . '/audit.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('postgres') ], 'pg_dump');

# without the restoring setting (issue 12: the rows used to be refused, and
# the copy had an empty trail that verified)
$node->safe_psql('postgres', 'CREATE DATABASE plain_restore');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', $node->connstr('plain_restore'), $dump ],
	'a plain pg_restore, with no setting, succeeds');
is($node->safe_psql('plain_restore', $rows), $orig{rows}, 'no setting: tool_calls rows are identical');
is($node->safe_psql('plain_restore', $events), $orig{events}, 'no setting: admin_events rows are identical');

# the documented procedure
$node->safe_psql('postgres', 'CREATE DATABASE restored');
{
	local $ENV{PGOPTIONS} = '-c tool_audit.restoring=on';
	$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', $node->connstr('restored'), $dump ],
		'pg_restore with tool_audit.restoring = on');
}
is($node->safe_psql('restored', $rows), $orig{rows}, 'tool_calls rows are identical');
is($node->safe_psql('restored', $events), $orig{events}, 'admin_events rows are identical');
is($node->safe_psql('restored', $pseudonym), $orig{pseudonym}, 'the same key is active: pseudonyms still link');
is($node->safe_psql('restored', q{SELECT count(*) FROM tool_audit.sanitize_rules WHERE NOT builtin}),
	'2', 'the deployment rules came back, the built-in ones are not duplicated');
cmp_ok($node->safe_psql('restored',
		q{SELECT (tool_audit.log_call('after', '{}', '{}', 1, '{}')).id}),
	'>', 5, 'new ids continue after the restored ones');
is($node->safe_psql('restored', q{SELECT count(*) FROM tool_audit.pseudonym_key_ids WHERE active}),
	'1', 'exactly one active key');
is($node->safe_psql('restored', q{SELECT count(*) FROM tool_audit.verify()}),
	'0', 'verify(): the restored chains are intact, new rows included');
is($node->safe_psql('restored', qq{SELECT count(*) FROM tool_audit.verify_digest('$digest')}),
	'0', 'verify_digest(): the restored copy matches the digest taken before the dump');

$node->stop;
done_testing();
