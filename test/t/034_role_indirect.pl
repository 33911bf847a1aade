# Membership of the extension's roles through intermediate roles (issue 12
# §5): after GRANT tool_audit_admin TO mid, a GRANT mid TO eve makes eve an
# administrator without naming tool_audit_admin.  With shared_preload_libraries
# such a GRANT (and REVOKE, CREATE ROLE ... IN ROLE mid, ALTER GROUP mid ADD
# USER) is recorded as tool_audit.role.grant/revoke, its payload's "indirect"
# naming the extension roles the granted role carries, through any depth of
# roles (src/role_events.c).  A role carrying none records nothing.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('role_indirect');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'tool_audit'");
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION tool_audit;
	CREATE ROLE ri_mid NOLOGIN;
	CREATE ROLE ri_top NOLOGIN;
	CREATE ROLE ri_plain NOLOGIN;
	CREATE ROLE ri_eve LOGIN;
	CREATE ROLE ri_zed LOGIN;
});
my $super = $node->safe_psql('postgres', 'SELECT current_user');

sub last_event
{
	return $node->safe_psql('postgres', q{
		SELECT event_type || ' ' || payload::text FROM tool_audit.admin_events
		 WHERE event_type LIKE 'tool_audit.role.%' ORDER BY id DESC LIMIT 1});
}

sub nevents
{
	return $node->safe_psql('postgres',
		q{SELECT count(*) FROM tool_audit.admin_events WHERE event_type LIKE 'tool_audit.role.%'});
}

$node->safe_psql('postgres', 'GRANT tool_audit_admin TO ri_mid');
is(nevents(), 1, 'the direct grant to the intermediate role is recorded');

$node->safe_psql('postgres', 'GRANT ri_mid TO ri_eve');
is($node->safe_psql('postgres', q{SELECT pg_has_role('ri_eve', 'tool_audit_admin', 'USAGE')}), 't',
	'eve is an administrator through ri_mid');
is(last_event(),
	qq{tool_audit.role.grant {"roles": ["ri_mid"], "grantees": ["ri_eve"], "indirect": {"ri_mid": ["tool_audit_admin"]}, "granted_by": "$super", "admin_option": false}},
	'GRANT mid TO eve is recorded as granting tool_audit_admin through ri_mid');

# two levels: top -> mid -> tool_audit_admin, and a role carrying two extension roles
$node->safe_psql('postgres', 'GRANT tool_audit_reader TO ri_mid; GRANT ri_mid TO ri_top');
like(last_event(), qr/"indirect": \{"ri_mid": \["tool_audit_admin", "tool_audit_reader"\]\}/,
	'a role carrying two extension roles names both');
$node->safe_psql('postgres', 'GRANT ri_top, ri_plain TO ri_zed');
is(last_event(),
	qq{tool_audit.role.grant {"roles": ["ri_top", "ri_plain"], "grantees": ["ri_zed"], "indirect": {"ri_top": ["tool_audit_admin", "tool_audit_reader"]}, "granted_by": "$super", "admin_option": false}},
	'through two levels of roles, only the carrying role is listed');

my $n = nevents();
$node->safe_psql('postgres', 'REVOKE ri_top FROM ri_zed');
like(last_event(), qr/^tool_audit\.role\.revoke \{"roles": \["ri_top"\], "grantees": \["ri_zed"\], "indirect": \{"ri_top": \[/,
	'REVOKE of the intermediate role is recorded as an indirect revoke');

$node->safe_psql('postgres', 'CREATE ROLE ri_new IN ROLE ri_mid');
like(last_event(), qr/^tool_audit\.role\.grant \{"roles": \["ri_mid"\], "grantees": \["ri_new"\], "indirect": \{"ri_mid": /,
	'CREATE ROLE ... IN ROLE mid is recorded');
$node->safe_psql('postgres', 'ALTER GROUP ri_mid ADD USER ri_zed');
like(last_event(), qr/^tool_audit\.role\.grant \{"roles": \["ri_mid"\], "grantees": \["ri_zed"\], "indirect": /,
	'ALTER GROUP mid ADD USER is recorded');
is(nevents(), $n + 3, 'one event each');

# roles carrying no extension role record nothing
$node->safe_psql('postgres', 'GRANT ri_plain TO ri_eve; REVOKE ri_plain FROM ri_eve');
is(nevents(), $n + 3, 'a role that carries no extension role records nothing');

# a direct grant gets no "indirect" member
$node->safe_psql('postgres', 'GRANT tool_audit_writer TO ri_plain');
unlike(last_event(), qr/indirect/, 'a direct grant has no "indirect"');
# now ri_plain carries tool_audit_writer: a grant of it is recorded
$node->safe_psql('postgres', 'GRANT ri_plain TO ri_eve');
like(last_event(), qr/"indirect": \{"ri_plain": \["tool_audit_writer"\]\}/,
	'once the role carries an extension role, granting it is recorded');

is($node->safe_psql('postgres', 'SELECT count(*) FROM tool_audit.verify()'), '0', 'verify() is clean');

$node->stop;
done_testing();
