# Backup and restore with the library preloaded (the recommended setup).
#
# pg_dump writes the schema tool_audit on its own (CREATE SCHEMA, ALTER SCHEMA
# ... OWNER TO) before CREATE EXTENSION: the schema is not a member of the
# extension.  The preload hook protects that schema only in a database where
# the extension exists, so the ordinary commands (pg_restore with and without
# -j 2, a plain-SQL dump through psql, pg_dumpall through psql) restore
# everything, in one transaction where they can, with no hand-made list; where
# the extension exists, the hook still refuses to hand its schema to anyone
# but the role that owns it or the extension's owner.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use DumpFixture qw(fill_trail %same);

my $node = PostgreSQL::Test::Cluster->new('restore_preloaded');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'tool_audit'");
$node->start;

my $super = $node->safe_psql('postgres', 'SELECT current_user');

fill_trail($node, 'postgres');
my ($rows, $events, $pseudonym) = @same{qw(rows events pseudonym)};
# the digest first: since 1.5 it records its read, an admin event the dump holds
my $digest = $node->safe_psql('postgres', 'SELECT tool_audit.digest()');
my %orig = map { $_ => $node->safe_psql('postgres', $same{$_}) } keys %same;

# ---- a database without the extension: the schema tool_audit is nobody's ----
$node->safe_psql('postgres', 'CREATE DATABASE bare');
my ($ret, $out, $err) = $node->psql('bare', qq{
	CREATE SCHEMA tool_audit;
	ALTER SCHEMA tool_audit OWNER TO app;
	ALTER SCHEMA tool_audit OWNER TO "$super";
	DROP SCHEMA tool_audit;
}, on_error_stop => 1);
is($ret, 0, 'without the extension, CREATE/ALTER ... OWNER TO/DROP SCHEMA tool_audit are not refused')
  or diag($err);

# ---- the ordinary commands ----
my $restoring = '-c tool_audit.restoring=on';
my $dump = $node->basedir . '/audit.dump';
my $sql = $node->basedir . '/audit.sql';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('postgres') ], 'pg_dump -Fc');
$node->command_ok([ 'pg_dump', '-f', $sql, '-d', $node->connstr('postgres') ], 'pg_dump (plain SQL)');
my $all = $node->basedir . '/all.sql';
$node->command_ok([ 'pg_dumpall', '-f', $all, '-d', $node->connstr('postgres') ], 'pg_dumpall');
like(slurp_file($sql), qr/^ALTER SCHEMA tool_audit OWNER TO /m,
	'the dump sets the owner of the schema tool_audit (what the hook used to refuse)');

sub restored_ok
{
	my ($n, $db, $how) = @_;
	is($n->safe_psql($db, $rows), $orig{rows}, "$how: tool_calls rows are identical");
	is($n->safe_psql($db, $events), $orig{events}, "$how: admin_events rows are identical");
	is($n->safe_psql($db, $pseudonym), $orig{pseudonym}, "$how: pseudonyms still link");
	is($n->safe_psql($db, 'SELECT count(*) FROM tool_audit.verify()'), '0', "$how: verify() finds nothing");
	is($n->safe_psql($db, qq{SELECT count(*) FROM tool_audit.verify_digest('$digest')}),
		'0', "$how: the digest taken before the dump still verifies");
}

$node->safe_psql('postgres', 'CREATE DATABASE restored_fc');
{
	local $ENV{PGOPTIONS} = $restoring;
	$node->command_ok([ 'pg_restore', '--single-transaction', '--exit-on-error',
			'-d', $node->connstr('restored_fc'), $dump ],
		'pg_restore --single-transaction --exit-on-error, no list, preloaded');
}
restored_ok($node, 'restored_fc', 'pg_restore -Fc');

$node->safe_psql('postgres', 'CREATE DATABASE restored_sql');
{
	local $ENV{PGOPTIONS} = $restoring;
	$node->command_ok([ 'psql', '-X', '-q', '--single-transaction', '-v', 'ON_ERROR_STOP=1',
			'-d', $node->connstr('restored_sql'), '-f', $sql ],
		'plain-SQL dump through psql --single-transaction, preloaded');
}
restored_ok($node, 'restored_sql', 'plain SQL + psql');

$node->safe_psql('postgres', 'CREATE DATABASE restored_j2');
{
	local $ENV{PGOPTIONS} = $restoring;
	$node->command_ok([ 'pg_restore', '-j', '2', '--exit-on-error',
			'-d', $node->connstr('restored_j2'), $dump ],
		'pg_restore -j 2 --exit-on-error, preloaded');
}
restored_ok($node, 'restored_j2', 'pg_restore -j 2');

# pg_dumpall into a fresh preloaded cluster, as psql runs it: the only errors
# are the roles the new cluster already has (its bootstrap superuser)
my $copy = PostgreSQL::Test::Cluster->new('restore_preloaded_copy');
$copy->init;
$copy->append_conf('postgresql.conf', "shared_preload_libraries = 'tool_audit'");
$copy->start;
{
	local $ENV{PGOPTIONS} = $restoring;
	my ($o, $e) = ('', '');
	IPC::Run::run([ 'psql', '-X', '-q', '-d', $copy->connstr('postgres'), '-f', $all ],
		'>', \$o, '2>', \$e);
	my @errors = grep { /ERROR/ && !/role "[^"]+" already exists/ } split /\n/, $e;
	is("@errors", '', 'pg_dumpall + psql into a preloaded cluster: no error but the existing superuser role')
	  or diag($e);
}
restored_ok($copy, 'postgres', 'pg_dumpall + psql');
$copy->stop;

# ---- where the extension exists, its schema stays protected ----
($ret, $out, $err) = $node->psql('restored_fc', qq{ALTER SCHEMA tool_audit OWNER TO "$super"});
is($ret, 0, 'ALTER SCHEMA tool_audit OWNER TO the role that owns it (a restore replayed) is allowed')
  or diag($err);
($ret, $out, $err) = $node->psql('restored_fc', 'ALTER SCHEMA tool_audit OWNER TO app');
like($err, qr/OWNER TO is not allowed on objects of extension tool_audit/,
	'ALTER SCHEMA tool_audit OWNER TO another role is refused');
is($node->safe_psql('restored_fc',
		q{SELECT nspowner::regrole FROM pg_namespace WHERE nspname = 'tool_audit'}),
	$super, 'the schema still belongs to the extension owner');
# a schema made by another superuser before CREATE EXTENSION (as a restore by
# another role does) may go to the extension's owner, and not back
$node->safe_psql('postgres', q{CREATE DATABASE other_owner; CREATE ROLE boss SUPERUSER});
$node->safe_psql('other_owner', q{SET ROLE boss; CREATE SCHEMA tool_audit; RESET ROLE; CREATE EXTENSION tool_audit});
($ret, $out, $err) = $node->psql('other_owner', qq{ALTER SCHEMA tool_audit OWNER TO "$super"});
is($ret, 0, "ALTER SCHEMA tool_audit OWNER TO the extension's owner is allowed") or diag($err);
($ret, $out, $err) = $node->psql('other_owner', 'ALTER SCHEMA tool_audit OWNER TO boss');
like($err, qr/OWNER TO is not allowed on objects of extension tool_audit/,
	'... and back to the role that owned it before is refused');
($ret, $out, $err) = $node->psql('restored_fc', 'ALTER SCHEMA tool_audit RENAME TO elsewhere');
like($err, qr/RENAME is not allowed on objects of extension tool_audit/, 'renaming the schema is refused');
($ret, $out, $err) = $node->psql('restored_fc', 'DROP SCHEMA tool_audit CASCADE');
like($err, qr/DROP SCHEMA tool_audit would drop tool_audit tables that hold audit rows/,
	'dropping the schema that holds audit rows is refused');

$node->stop;
done_testing();
