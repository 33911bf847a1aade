# With shared_preload_libraries = 'tool_audit', a GRANT or REVOKE of one of
# the extension's roles (they decide who writes, reads, administers and
# verifies the trail) is recorded as a tool_audit.role.grant/revoke admin
# event in the database it ran in, once it succeeded (src/role_events.c).
# Unrelated roles, failed statements and databases without the extension
# record nothing; without preloading nothing is recorded (doc/caveats.md).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('role_events');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'tool_audit'");
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION tool_audit;
	CREATE ROLE re_alice LOGIN;
	CREATE ROLE re_bob LOGIN;
	CREATE ROLE re_plain NOLOGIN;
	CREATE ROLE re_mgr LOGIN CREATEROLE;
	CREATE DATABASE re_other;
});
my $super = $node->safe_psql('postgres', 'SELECT current_user');

sub role_events
{
	my ($db) = @_;
	return $node->safe_psql($db || 'postgres', q{
		SELECT event_type || ' ' || actor || ' ' || payload::text
		  FROM tool_audit.admin_events
		 WHERE event_type LIKE 'tool_audit.role.%' ORDER BY id});
}

sub nevents
{
	return $node->safe_psql('postgres',
		q{SELECT count(*) FROM tool_audit.admin_events WHERE event_type LIKE 'tool_audit.role.%'});
}

$node->safe_psql('postgres', 'GRANT tool_audit_reader TO re_alice');
is(role_events(),
	qq{tool_audit.role.grant $super {"roles": ["tool_audit_reader"], "grantees": ["re_alice"], "granted_by": "$super", "admin_option": false}},
	'GRANT of an extension role is recorded with who granted it');

$node->safe_psql('postgres', 'REVOKE tool_audit_reader FROM re_alice');
like((split /\n/, role_events())[-1],
	qr/^tool_audit\.role\.revoke \Q$super\E \{"roles": \["tool_audit_reader"\], "grantees": \["re_alice"\], "granted_by": "\Q$super\E", "admin_option": false\}$/,
	'REVOKE is recorded');

$node->safe_psql('postgres', 'GRANT tool_audit_admin, re_plain TO re_alice, re_bob WITH ADMIN OPTION');
like((split /\n/, role_events())[-1],
	qr/"roles": \["tool_audit_admin", "re_plain"\], "grantees": \["re_alice", "re_bob"\].*"admin_option": true/,
	'a GRANT naming several roles and grantees, with ADMIN OPTION, is recorded whole');

is(nevents(), 3, 'three events so far');

$node->safe_psql('postgres', 'GRANT re_plain TO re_mgr');
$node->safe_psql('postgres', 'REVOKE re_plain FROM re_mgr');
is(nevents(), 3, 'GRANT/REVOKE of an unrelated role records nothing');

my ($ret, $out, $err) = $node->psql('postgres', 'GRANT tool_audit_writer TO re_nosuchrole');
isnt($ret, 0, 'a GRANT to a missing role fails');
($ret, $out, $err) = $node->psql('postgres',
	'BEGIN; GRANT tool_audit_writer TO re_bob; SELECT 1/0; COMMIT;');
isnt($ret, 0, 'a transaction with a GRANT that fails later is rolled back');
is(nevents(), 3, 'failed or rolled-back GRANTs record nothing');
is($node->safe_psql('postgres', q{SELECT pg_has_role('re_bob', 'tool_audit_writer', 'MEMBER')}),
	'f', 'and the rolled-back grant did not happen');

# PostgreSQL 15: a CREATEROLE role may grant itself any non-superuser role
$node->safe_psql('postgres', 'SET ROLE re_mgr; GRANT tool_audit_admin TO re_mgr');
like((split /\n/, role_events())[-1],
	qr/^tool_audit\.role\.grant re_mgr \{"roles": \["tool_audit_admin"\], "grantees": \["re_mgr"\], "granted_by": "re_mgr", "admin_option": false\}$/,
	'a CREATEROLE role granting itself tool_audit_admin is recorded, with it as actor and grantor');

# GRANTED BY another role
$node->safe_psql('postgres', 'GRANT tool_audit_verifier TO re_bob GRANTED BY re_mgr');
like((split /\n/, role_events())[-1], qr/"granted_by": "re_mgr"/, 'GRANTED BY names the grantor');

# the other ways of changing membership: CREATE ROLE ... IN ROLE, ALTER GROUP
$node->safe_psql('postgres', 'CREATE ROLE re_carol IN ROLE tool_audit_reader, re_plain');
like((split /\n/, role_events())[-1],
	qr/^tool_audit\.role\.grant \Q$super\E \{"roles": \["tool_audit_reader", "re_plain"\], "grantees": \["re_carol"\], "granted_by": "\Q$super\E", "admin_option": false\}$/,
	'CREATE ROLE ... IN ROLE an extension role is recorded as a grant');
$node->safe_psql('postgres', 'ALTER GROUP tool_audit_writer ADD USER re_carol, re_alice');
like((split /\n/, role_events())[-1],
	qr/^tool_audit\.role\.grant \Q$super\E \{"roles": \["tool_audit_writer"\], "grantees": \["re_carol", "re_alice"\]/,
	'ALTER GROUP ... ADD USER is recorded as a grant');
$node->safe_psql('postgres', 'ALTER GROUP tool_audit_writer DROP USER re_carol');
like((split /\n/, role_events())[-1],
	qr/^tool_audit\.role\.revoke \Q$super\E \{"roles": \["tool_audit_writer"\], "grantees": \["re_carol"\]/,
	'ALTER GROUP ... DROP USER is recorded as a revoke');
$node->safe_psql('postgres', 'CREATE ROLE re_dave IN ROLE re_plain; ALTER GROUP re_plain ADD USER re_carol');
is(nevents(), 8, 'CREATE ROLE ... IN ROLE and ALTER GROUP of an unrelated role record nothing');

# a renamed role is no longer matched by name: the rename is recorded, both ways
$node->safe_psql('postgres', 'ALTER ROLE tool_audit_admin RENAME TO re_hidden');
$node->safe_psql('postgres', 'GRANT re_hidden TO re_dave');
$node->safe_psql('postgres', 'ALTER ROLE re_hidden RENAME TO tool_audit_admin');
$node->safe_psql('postgres', 'ALTER ROLE re_dave RENAME TO re_david');
is($node->safe_psql('postgres', q{SELECT string_agg(payload::text, ' ' ORDER BY id) FROM tool_audit.admin_events
	WHERE event_type = 'tool_audit.role.rename' AND actor = current_user}),
	'{"role": "tool_audit_admin", "new_name": "re_hidden"} {"role": "re_hidden", "new_name": "tool_audit_admin"}',
	'ALTER ROLE ... RENAME from and to an extension role is recorded, an unrelated rename is not');
is(nevents(), 10, 'two rename events');

# DROP ROLE of a member removes its memberships: recorded as a revoke
$node->safe_psql('postgres', 'CREATE ROLE re_eve IN ROLE tool_audit_writer, tool_audit_reader, re_plain');
$node->safe_psql('postgres', 'DROP ROLE re_eve');
like((split /\n/, role_events())[-1],
	qr/^tool_audit\.role\.revoke \Q$super\E \{"roles": \["tool_audit_(writer|reader)", "tool_audit_(writer|reader)"\], "grantees": \["re_eve"\], "granted_by": "\Q$super\E", "admin_option": false, "role_dropped": true\}$/,
	'DROP ROLE of a member of extension roles is recorded as a revoke of them');
($ret, $out, $err) = $node->psql('postgres', 'DROP ROLE re_nosuchrole');
isnt($ret, 0, 'DROP ROLE of a missing role fails');
$node->safe_psql('postgres', 'CREATE ROLE re_frank IN ROLE re_plain; DROP ROLE re_frank; DROP ROLE IF EXISTS re_nosuchrole');
is(nevents(), 12, 'DROP ROLE of a role in no extension role, or of a missing one, records nothing');

# a grant made from a database without the extension is not recorded anywhere
$node->safe_psql('re_other', 'GRANT tool_audit_reader TO re_bob');
is(nevents(), 12, 'a grant from a database without the extension is not recorded here');
is($node->safe_psql('postgres', q{SELECT pg_has_role('re_bob', 'tool_audit_reader', 'MEMBER')}),
	't', 'though it did happen (roles are cluster-wide)');

# the events are chained like any other
is($node->safe_psql('postgres', 'SELECT count(*) FROM tool_audit.verify()'), '0', 'verify() is clean');

# the default rule extension_roles (1.5) alerts on these events: the
# self-grant of tool_audit_admin above raised a high alert
is($node->safe_psql('postgres', q{SELECT count(*) FROM tool_audit.alerts a
	 WHERE rule_name = 'extension_roles' AND severity = 'high'
	   AND admin_event_ids && ARRAY(SELECT id FROM tool_audit.admin_events
	                                 WHERE event_type = 'tool_audit.role.grant' AND actor = 're_mgr')}),
	'1', 'the default rule extension_roles raised a high alert for the self-grant');
$node->safe_psql('postgres', q{SELECT tool_audit.acknowledge_alert(alert_id, 'seen') FROM tool_audit.alerts
	WHERE rule_name = 'extension_roles' AND acknowledged_at IS NULL});
$node->safe_psql('postgres', 'REVOKE tool_audit_verifier FROM re_bob');
is(nevents(), 13, 'the REVOKE is recorded');
is($node->safe_psql('postgres', q{SELECT severity || ' ' || count FROM tool_audit.alerts
	WHERE rule_name = 'extension_roles' AND burst_key = 'tool_audit.role.revoke' AND acknowledged_at IS NULL}),
	'high 1', 'and raises a new alert');

# the setting is postgresql.conf's alone: a session cannot switch it off
($ret, $out, $err) = $node->psql('postgres', 'SET tool_audit.record_role_changes = off');
like($err, qr/cannot be changed now/, 'a session cannot turn the recording off');
$node->append_conf('postgresql.conf', 'tool_audit.record_role_changes = off');
$node->reload;
$node->poll_query_until('postgres', q{SELECT current_setting('tool_audit.record_role_changes') = 'off'});
$node->safe_psql('postgres', 'GRANT tool_audit_reader TO re_alice');
is(nevents(), 13, 'tool_audit.record_role_changes = off in postgresql.conf turns it off');
$node->append_conf('postgresql.conf', 'tool_audit.record_role_changes = on');

# without preloading nothing is recorded
$node->append_conf('postgresql.conf', "shared_preload_libraries = ''");
$node->restart;
$node->safe_psql('postgres', 'REVOKE tool_audit_reader FROM re_bob');
is(nevents(), 13, 'without preloading a REVOKE is not recorded (documented caveat)');

$node->stop;
done_testing();
