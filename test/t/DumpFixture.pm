# What the dump-and-restore TAP tests (004, 012) dump and compare: an audit
# trail with rows in the audit tables (data_changes from 1.5), a deployment's own sanitizing rules and its
# pseudonymization key, and the queries whose answers a restored copy must
# give exactly as the original did.
package DumpFixture;

use strict;
use warnings;
use Exporter 'import';

our @EXPORT_OK = qw(fill_trail %same same_as);

# rows, events and a pseudonym: identical in a copy restored row for row
our %same = (
	rows => q{SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM tool_audit.tool_calls t},
	events => q{SELECT md5(string_agg(e::text, '|' ORDER BY id)) FROM tool_audit.admin_events e},
	pseudonym => q{SELECT tool_audit.pseudonymize('078-05-1120')},
	# (1.5) row changes, as the tracking trigger writes them (as the owner)
	changes => q{SELECT count(*) || ':' || md5(string_agg(d::text, '|' ORDER BY id)) FROM tool_audit.data_changes d},
	# (1.5) which tables are tracked, and their triggers in place
	tracking => q{SELECT string_agg(table_name || ' ' || options::text || ' ' || status, ',' ORDER BY table_name)
	                FROM tool_audit.tracking_status()});

# CREATE EXTENSION in $db of $node and record into it (the role app writes)
sub fill_trail
{
	my ($node, $db) = @_;
	$node->safe_psql($db, q{
	CREATE EXTENSION tool_audit;
	CREATE ROLE app;
	GRANT tool_audit_writer TO app;
	SET ROLE app;
	SELECT tool_audit.log_call('verify_identity', '{"ssn": "078-05-1120", "password": "p"}',
		'{"error": "no"}', 5, '{"conversation_id": "c1", "user_id": "u1", "tenant_id": "acme"}')
	  FROM generate_series(1, 5);
	SELECT tool_audit.log_event('prompt.update', 'admin', '{"after": {"h": "x"}}', '{"tenant_id": "acme"}');
	RESET ROLE;
	INSERT INTO tool_audit.sanitize_rules (applies_to, match, pattern, action) VALUES ('key', 'exact', 'secret_sauce', 'redact');
	-- a deployment exemption, and personal data in an admin event: restored rows
	-- must not be sanitized again (with a fresh key, before the rules are back)
	INSERT INTO tool_audit.sanitize_rules (applies_to, match, pattern, action, priority) VALUES ('key', 'exact', 'ticket', 'keep', 1);
	SELECT tool_audit.log_event('user.update', 'ops', '{"email": "jane@x.test", "ticket": "Bearer abcdefghijklmnop"}', '{}');
	SELECT tool_audit.log_call('lookup', '{"email": "jane@x.test", "ticket": "Bearer abcdefghijklmnop"}', '{}', 1, '{}');
	-- row changes of two tenants, one linked to a call, with a pseudonymized column
	INSERT INTO tool_audit.data_changes (table_name, operation, row_key, old_values, new_values, tenant_id, call_event_id)
	  SELECT 'public.customers', 'UPDATE', jsonb_build_object('id', g), '{"ssn": "078-05-1120", "plan": "basic"}',
	         '{"plan": "pro"}', CASE WHEN g % 2 = 0 THEN 'acme' ELSE 'globex' END,
	         (SELECT t.event_id FROM tool_audit.tool_calls t WHERE t.tool_name = 'lookup')
	    FROM generate_series(1, 4) g;
	-- a tracked application table, changed once outside any call
	CREATE TABLE public.accounts (id int PRIMARY KEY, plan text, ssn text);
	SELECT tool_audit.track('public.accounts', '{"exclude": ["ssn"]}');
	INSERT INTO public.accounts VALUES (1, 'basic', '078-05-1120');
	});
	return;
}

# The answers of %same in $db of $node, compared with %$orig (the original's),
# and verify() and verify_digest($digest) finding nothing: the checks of a
# restored copy ($how names it in the test names)
sub same_as
{
	my ($node, $db, $orig, $digest, $how) = @_;
	for my $k (sort keys %same)
	{
		Test::More::is($node->safe_psql($db, $same{$k}), $orig->{$k}, "$how: $k identical");
	}
	Test::More::is($node->safe_psql($db, 'SELECT count(*) FROM tool_audit.verify()'), '0',
		"$how: verify() finds nothing");
	Test::More::is($node->safe_psql($db, qq{SELECT count(*) FROM tool_audit.verify_digest('$digest')}),
		'0', "$how: the digest taken before the dump still verifies");
	return;
}

1;
