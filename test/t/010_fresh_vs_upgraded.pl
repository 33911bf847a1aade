# A fresh install and an upgraded one are the same extension.
#
# CREATE EXTENSION tool_audit runs the current version's install script,
# built from sql/install/*.sql; a database created at 1.0 reaches the same
# version through every upgrade script in turn.  This test makes one of each
# and shows that
#  - the fresh one ran its own script (the chain columns came with CREATE
#    TABLE, where the upgraded one had them from ALTER TABLE);
#  - pg_dump --schema-only --binary-upgrade prints the same schema for both
#    (binary-upgrade mode dumps the extension's member objects one by one,
#    with their column order, comments and privileges; the lines that only
#    carry OIDs and transaction ids are left out);
#  - the catalog rows pg_dump does not print are the same too: attribute
#    numbers and flags, function attributes (SECURITY DEFINER, settings,
#    volatility, parallel safety, cost), ACLs and initial privileges,
#    pg_extension_config_dump's tables and conditions, the extension's member
#    objects and every dependency of its objects, the comments;
#  - every function and view has a comment;
#  - the seeded configuration rows are the same;
#  - the same calls give the same results on both: log_call and log_event
#    (sanitized and summarized alike), rows restored with fixed ids and times
#    get the same row hashes and chain links, verify() and verify_digest()
#    find nothing, the access report, statistics, timeline and exports are
#    equal, and the same mistakes raise the same errors.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('fresh_vs_upgraded');
$node->init;
$node->start;
my $tmp = PostgreSQL::Test::Utils::tempdir;

$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('postgres', 'CREATE DATABASE upgraded');

my $current = $node->safe_psql('postgres',
	q{SELECT default_version FROM pg_available_extensions WHERE name = 'tool_audit'});

$node->safe_psql('fresh', 'CREATE EXTENSION tool_audit');

# 1.0, then one ALTER EXTENSION UPDATE per script on the path to the current
# version, so that a new version's script is walked too
$node->safe_psql('upgraded', q{CREATE EXTENSION tool_audit VERSION '1.0'});
my $path = $node->safe_psql('upgraded',
	qq{SELECT path FROM pg_extension_update_paths('tool_audit')
	    WHERE source = '1.0' AND target = '$current'});
my @steps = split /--/, $path;
shift @steps;
ok(@steps >= 3, "the upgrade path from 1.0 to $current: $path");
for my $v (@steps)
{
	$node->safe_psql('upgraded', "ALTER EXTENSION tool_audit UPDATE TO '$v'");
}
is($node->safe_psql($_, q{SELECT extversion FROM pg_extension WHERE extname = 'tool_audit'}),
	$current, "$_ is at $current")
  for qw(fresh upgraded);

# CREATE EXTENSION ran the current version's own script, not 1.0 and the
# upgrades: the chain columns' catalog rows were written by the command that
# wrote the table's first columns (the same transaction and command id),
# where ALTER TABLE ADD COLUMN wrote them later in the upgraded database
my $same_command = q{
	SELECT count(DISTINCT (xmin::text, cmin::text)) = 1 FROM pg_attribute
	 WHERE attrelid = 'tool_audit.tool_calls'::regclass AND attname IN ('recorded_by', 'row_hash')};
is($node->safe_psql('fresh', $same_command), 't',
	'fresh: the chain columns were created with the table, not added by ALTER TABLE');
is($node->safe_psql('upgraded', $same_command), 'f',
	'upgraded: they were added later (so the check above can tell)');

# same(LABEL, FRESH, UPGRADED): equal texts, or a unified diff of them
sub same
{
	my ($label, $fresh, $upgraded) = @_;
	if ($fresh eq $upgraded)
	{
		pass($label);
		return;
	}
	open my $f, '>', "$tmp/fresh.txt" or die $!;
	print $f "$fresh\n";
	close $f;
	open my $u, '>', "$tmp/upgraded.txt" or die $!;
	print $u "$upgraded\n";
	close $u;
	my $diff = `diff -u $tmp/upgraded.txt $tmp/fresh.txt`;
	fail($label);
	diag("--- upgraded, +++ fresh:\n$diff");
}

# both(LABEL, SQL): the query gives the same rows in both databases
sub both
{
	my ($label, $sql) = @_;
	my %out = map { $_ => $node->safe_psql($_, $sql) } qw(fresh upgraded);
	$out{$_} =~ s/tool_audit\@$_\b/tool_audit\@<database>/g for keys %out;    # FHIR's observer
	same($label, $out{fresh}, $out{upgraded});
}

# ---------------------------------------------------------------------------
# pg_dump
# ---------------------------------------------------------------------------
sub schema_dump
{
	my ($db) = @_;
	my ($out, $err);
	IPC::Run::run([ 'pg_dump', '--schema-only', '--binary-upgrade', '-d', $node->connstr($db) ],
		'>', \$out, '2>', \$err)
	  or die "pg_dump $db: $err";
	my @lines = grep {
		!/binary_upgrade_set_next_/        # preserved OIDs, attribute versions
		  && !/relfrozenxid|WHERE oid = '\d+'/    # transaction ids of the tables
		  && !/^\\(?:un)?restrict /               # psql's per-dump key
	} split /\n/, $out;
	# the extension's config tables by OID: compared below by name
	s/(binary_upgrade_create_empty_extension\(.*?, ')\{[\d,]+\}'/$1\{oids\}'/ for @lines;
	return join("\n", @lines);
}
my $fresh_dump = schema_dump('fresh');
like($fresh_dump, qr/CREATE TABLE tool_audit\.tool_calls/, 'the dump has the member objects');
same('pg_dump --schema-only --binary-upgrade is the same', $fresh_dump, schema_dump('upgraded'));

# ---------------------------------------------------------------------------
# Catalog rows, named (no OIDs), ordered
# ---------------------------------------------------------------------------
# an object's description, with toast relations' OID-derived names masked
my $obj = q{regexp_replace(pg_describe_object(%s), 'pg_toast_[0-9]+', 'pg_toast_N', 'g')};
my $desc = sprintf($obj, 'classid, objid, objsubid');
my $refdesc = sprintf($obj, 'refclassid, refobjid, refobjsubid');
my $ns = q{'tool_audit'::regnamespace};

my @catalog = (
	[ 'pg_extension' => q{
		SELECT extname, extowner::regrole, extnamespace::regnamespace, extrelocatable, extversion,
		       extconfig::regclass[]::text, extcondition
		  FROM pg_extension WHERE extname = 'tool_audit'} ],
	[ 'pg_namespace' => q{
		SELECT nspname, nspowner::regrole, nspacl FROM pg_namespace WHERE nspname = 'tool_audit'} ],
	[ 'extension members (pg_depend)' => qq{
		SELECT $desc FROM pg_depend
		 WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
		   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'tool_audit')
		 ORDER BY 1} ],
	[ 'dependencies of and on the extension\'s objects (pg_depend)' => qq{
		SELECT * FROM (SELECT $desc AS object, $refdesc AS referenced, deptype FROM pg_depend) d
		 WHERE object LIKE '%tool_audit%' OR referenced LIKE '%tool_audit%'
		 ORDER BY 1, 2, 3} ],
	[ 'pg_class' => qq{
		SELECT c.relname, c.relkind, c.relpersistence, c.reltype::regtype, c.reloftype::regtype,
		       c.relowner::regrole, a.amname, c.relnatts, c.relchecks, c.relhasindex, c.relhasrules,
		       c.relhastriggers, c.relhassubclass, c.relrowsecurity, c.relforcerowsecurity,
		       c.relreplident, c.relispartition, c.reloptions, c.relacl, c.reltoastrelid <> 0 AS has_toast
		  FROM pg_class c LEFT JOIN pg_am a ON a.oid = c.relam
		 WHERE c.relnamespace = $ns ORDER BY 1} ],
	[ 'pg_attribute (column numbers, dropped columns, flags, ACLs)' => qq{
		SELECT a.attrelid::regclass::text, a.attnum, a.attname, a.atttypid::regtype, a.atttypmod,
		       a.attnotnull, a.atthasdef, a.atthasmissing, a.attmissingval::text, a.attidentity,
		       a.attgenerated, a.attisdropped, a.attislocal, a.attinhcount, a.attstattarget,
		       a.attcollation::regcollation, a.attstorage, a.attcompression, a.attlen, a.attalign,
		       a.attbyval, a.attndims, a.attacl,
		       -- this server build records a per-column version in attoptions: not schema
		       array(SELECT o FROM unnest(a.attoptions) o WHERE o NOT LIKE 'pg\\_attver=%')
		  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
		 WHERE c.relnamespace = $ns AND a.attnum > 0 ORDER BY 1, 2} ],
	[ 'pg_attrdef' => qq{
		SELECT d.adrelid::regclass::text, d.adnum, pg_get_expr(d.adbin, d.adrelid)
		  FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid
		 WHERE c.relnamespace = $ns ORDER BY 1, 2} ],
	[ 'pg_constraint' => qq{
		SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid), condeferrable,
		       condeferred, convalidated, conislocal, coninhcount, connoinherit, conindid::regclass
		  FROM pg_constraint WHERE connamespace = $ns ORDER BY 1, 2} ],
	[ 'pg_index' => qq{
		SELECT i.indexrelid::regclass::text, i.indrelid::regclass, pg_get_indexdef(i.indexrelid),
		       i.indnatts, i.indnkeyatts, i.indisunique, i.indnullsnotdistinct, i.indisprimary,
		       i.indisexclusion, i.indimmediate, i.indisclustered, i.indisvalid, i.indisready,
		       i.indislive, i.indisreplident, i.indkey::text
		  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
		 WHERE c.relnamespace = $ns ORDER BY 1} ],
	[ 'pg_trigger' => qq{
		SELECT t.tgrelid::regclass::text, t.tgname, t.tgfoid::regprocedure, t.tgtype, t.tgenabled,
		       t.tgisinternal, t.tgdeferrable, t.tginitdeferred, t.tgnargs, t.tgattr::text,
		       t.tgargs, pg_get_triggerdef(t.oid)
		  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
		 WHERE c.relnamespace = $ns ORDER BY 1, 2} ],
	[ 'pg_event_trigger' => q{
		SELECT evtname, evtevent, evtowner::regrole, evtfoid::regprocedure, evtenabled, evttags
		  FROM pg_event_trigger ORDER BY 1} ],
	[ 'pg_policy' => qq{
		SELECT p.polrelid::regclass::text, p.polname, p.polcmd, p.polpermissive, p.polroles::regrole[]::text,
		       pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)
		  FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
		 WHERE c.relnamespace = $ns ORDER BY 1, 2} ],
	[ 'pg_rewrite' => qq{
		SELECT r.ev_class::regclass::text, r.rulename, r.ev_type, r.ev_enabled, r.is_instead,
		       pg_get_ruledef(r.oid)
		  FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
		 WHERE c.relnamespace = $ns ORDER BY 1, 2} ],
	[ 'pg_proc (SECURITY DEFINER, settings, volatility, parallel safety, ACLs)' => qq{
		SELECT p.oid::regprocedure::text, p.proowner::regrole, l.lanname, p.procost, p.prorows,
		       p.provariadic::regtype, p.prosupport, p.prokind, p.prosecdef, p.proleakproof,
		       p.proisstrict, p.proretset, p.provolatile, p.proparallel, p.pronargs,
		       p.pronargdefaults, p.prorettype::regtype, p.proargtypes::oid[]::regtype[]::text,
		       p.proallargtypes::regtype[]::text, p.proargmodes, p.proargnames,
		       pg_get_function_arguments(p.oid), pg_get_function_result(p.oid),
		       md5(p.prosrc), p.probin, p.proconfig, p.proacl
		  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
		 WHERE p.pronamespace = $ns ORDER BY 1} ],
	[ 'pg_type and pg_enum' => qq{
		SELECT t.typname, t.typtype, t.typlen, t.typbyval, t.typcategory, t.typrelid::regclass,
		       t.typelem::regtype, t.typarray::regtype, t.typnotnull, t.typcollation::regcollation,
		       t.typacl, (SELECT array_agg(e.enumlabel || ':' || e.enumsortorder ORDER BY e.enumsortorder)
		                    FROM pg_enum e WHERE e.enumtypid = t.oid)
		  FROM pg_type t WHERE t.typnamespace = $ns ORDER BY 1} ],
	[ 'pg_sequence' => qq{
		SELECT s.seqrelid::regclass::text, s.seqtypid::regtype, s.seqstart, s.seqincrement, s.seqmax,
		       s.seqmin, s.seqcache, s.seqcycle
		  FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
		 WHERE c.relnamespace = $ns ORDER BY 1} ],
	[ 'pg_description' => q{
		SELECT * FROM (SELECT } . sprintf($obj, 'classoid, objoid, objsubid') . q{ AS object, description
		                 FROM pg_description) d
		 WHERE object LIKE '%tool_audit%' ORDER BY 1} ],
	[ 'pg_init_privs' => q{
		SELECT * FROM (SELECT } . sprintf($obj, 'classoid, objoid, objsubid') . q{ AS object,
		                      privtype, initprivs::text FROM pg_init_privs) p
		 WHERE object LIKE '%tool_audit%' ORDER BY 1} ],
);
for my $c (@catalog)
{
	my ($what, $sql) = @$c;
	my $fresh = $node->safe_psql('fresh', $sql);
	isnt($fresh, '', "$what: rows found") unless $what =~ /pg_rewrite/;
	same("$what: the same", $fresh, $node->safe_psql('upgraded', $sql));
}

# every function and view says what it is for
for my $db (qw(fresh upgraded))
{
	is($node->safe_psql($db, qq{
		SELECT string_agg(o, ', ' ORDER BY o) FROM (
		  SELECT p.oid::regprocedure::text AS o FROM pg_proc p
		   WHERE p.pronamespace = $ns AND obj_description(p.oid, 'pg_proc') IS NULL
		  UNION ALL
		  SELECT c.oid::regclass::text FROM pg_class c
		   WHERE c.relnamespace = $ns AND c.relkind IN ('r', 'v')
		     AND obj_description(c.oid, 'pg_class') IS NULL) x}),
		'', "$db: every function, table and view has a comment");
}

# ---------------------------------------------------------------------------
# The configuration the install seeds
# ---------------------------------------------------------------------------
both('the built-in sanitize rules', q{SELECT * FROM tool_audit.sanitize_rules ORDER BY rule_id});
both('one active install key, named after the time of installation', q{
	SELECT count(*), count(*) FILTER (WHERE active), bool_and(key_id ~ '^k[0-9]{20}$')
	  FROM tool_audit.pseudonym_keys});
both('the sequences', q{
	SELECT 'tool_calls', last_value, is_called FROM tool_audit.tool_calls_id_seq
	UNION ALL SELECT 'admin_events', last_value, is_called FROM tool_audit.admin_events_id_seq
	UNION ALL SELECT 'rules', last_value, is_called FROM tool_audit.sanitize_rules_rule_id_seq});
both('no rows recorded by the install', q{
	SELECT (SELECT count(*) FROM tool_audit.tool_calls), (SELECT count(*) FROM tool_audit.admin_events),
	       (SELECT count(*) FROM tool_audit.tenant_bindings)});

# ---------------------------------------------------------------------------
# The same behaviour
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', q{
	CREATE ROLE app LOGIN;
	GRANT tool_audit_writer TO app;
	CREATE ROLE auditor LOGIN;
	GRANT tool_audit_reader TO auditor;});
for my $db (qw(fresh upgraded))
{
	$node->safe_psql($db, q{
		SELECT tool_audit.rotate_pseudonym_key('test', decode(repeat('ab', 32), 'hex'));
		INSERT INTO tool_audit.sanitize_rules (applies_to, match, pattern, action) VALUES ('key', 'exact', 'secret_sauce', 'redact');
		SET ROLE app;
		SELECT tool_audit.log_call('verify_identity',
		  '{"ssn": "078-05-1120", "password": "p", "note": "Bearer abcdefghijklmnop", "secret_sauce": 1}',
		  '{"error": "no", "order_id": 7, "rows": [1, 2]}', 5,
		  '{"conversation_id": "c1", "turn_number": 1, "user_id": "u1", "tenant_id": "acme", "subject_id": "pat_1", "extra": {"email": "a@b.test"}}');
		SELECT tool_audit.log_call('get_order', '{"order_id": 7}', NULL, 1.5,
		  '{"conversation_id": "c1", "turn_number": 2, "tenant_id": "acme", "call_trigger": "follow_up"}');
		INSERT INTO tool_audit.tool_calls (tool_name, success, tenant_id, arguments) VALUES ('plain_insert', true, 'beta', '{"card": "4111 1111 1111 1111"}');
		SELECT tool_audit.log_event('prompt.update', 'admin', '{"after": {"h": "x"}, "email": "a@b.test"}', '{"tenant_id": "acme", "reason": "r"}');
		RESET ROLE;
		-- restored rows: fixed ids, event ids and times, in chains of their own
		-- (tenant "restored"), so that their hashes and links can be compared
		SET tool_audit.restoring = on;
		INSERT INTO tool_audit.tool_calls (id, event_id, recorded_at, tenant_id, conversation_id, turn_number,
		                                   user_id, user_role, model, tool_name, tool_call_id, call_trigger,
		                                   purpose, subject_id, arguments, result_summary, success, error,
		                                   duration_ms, client_ip, user_agent, session_metadata, recorded_by)
		SELECT 1000 + g, ('00000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid,
		       '2020-01-01 00:00:00+00'::timestamptz + g * interval '1 minute', 'restored', 'conv_r', g,
		       'usr_' || g % 3, 'clinician', 'gpt-4.1', CASE WHEN g % 4 = 0 THEN 'update_note' ELSE 'read_chart' END,
		       'call_' || g, 'user_request', CASE WHEN g = 5 THEN 'emergency' END, 'pat_r',
		       jsonb_build_object('n', g, 'f', g / 3.0), '{"success": true}', g % 5 <> 0,
		       CASE WHEN g % 5 = 0 THEN 'timeout' END, g * 1.25, '10.0.0.1', 'agent/1', '{}', 'someone'
		  FROM generate_series(1, 12) g;
		INSERT INTO tool_audit.admin_events (id, event_id, occurred_at, event_type, actor, tenant_id, payload, recorded_by)
		VALUES (1000, '00000000-0000-4000-8000-100000000000', '2020-01-01 00:30:00+00', 'policy.update', 'ops', 'restored',
		        '{"before": 1, "after": 2}', 'someone');
		-- (1.5) row changes: restored ones with fixed values, and a new one
		INSERT INTO tool_audit.data_changes (id, event_id, recorded_at, tenant_id, table_name, operation,
		                                     row_key, old_values, new_values, call_event_id, recorded_by)
		SELECT 1000 + g, ('00000000-0000-4000-8000-2' || lpad(g::text, 11, '0'))::uuid,
		       '2020-01-01 00:00:30+00'::timestamptz + g * interval '1 minute', 'restored', 'public.charts', 'UPDATE',
		       jsonb_build_object('id', g), '{"note": "old"}', jsonb_build_object('note', 'n' || g),
		       ('00000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid, 'someone'
		  FROM generate_series(1, 3) g;
		RESET tool_audit.restoring;
		INSERT INTO tool_audit.data_changes (table_name, operation, row_key, new_values, tenant_id)
		VALUES ('public.orders', 'INSERT', '{"id": 1}', '{"ssn": "078-05-1120", "total": 5}', 'acme');
		SELECT tool_audit.bind_tenant('auditor', 'restored');});
}

# what log_call and log_event stored, without the event ids, times and the
# hashes that cover them (random and clock values)
both('log_call, INSERT and log_event store the same sanitized rows', q{
	SELECT id, tenant_id, conversation_id, turn_number, user_id, tool_name, call_trigger, subject_id,
	       arguments, result_summary, success, error, duration_ms, session_metadata, recorded_by,
	       chain_id, chain_lane, chain_seq, octet_length(row_hash), octet_length(chain_hash)
	  FROM tool_audit.tool_calls WHERE id < 1000 ORDER BY id});
both('the admin events', q{
	SELECT id, event_type, actor, actor_type, tenant_id,
	       CASE WHEN event_type = 'tool_audit.pseudonym_key.rotate' THEN payload - 'before' ELSE payload END,
	       reason, metadata, recorded_by, chain_id, chain_lane, chain_seq
	  FROM tool_audit.admin_events WHERE id < 1000 ORDER BY id});
both('restored rows get the same row hashes and chain links', q{
	SELECT t.id, encode(t.row_hash, 'hex'), encode(t.chain_hash, 'hex'), t.chain_id, t.chain_lane, t.chain_seq,
	       t.row_hash = tool_audit.compute_row_hash(t), tool_audit.check_row(t)
	  FROM tool_audit.tool_calls t WHERE id >= 1000 ORDER BY id});
both('and so does a restored admin event', q{
	SELECT e.id, encode(e.row_hash, 'hex'), encode(e.chain_hash, 'hex'), e.chain_seq,
	       e.row_hash = tool_audit.compute_row_hash(e)
	  FROM tool_audit.admin_events e WHERE id >= 1000});
both('and so do restored row changes, and a new one is sanitized and placed alike', q{
	SELECT d.id, encode(d.row_hash, 'hex'), encode(d.chain_hash, 'hex'), d.chain_id, d.chain_seq,
	       d.row_hash = tool_audit.compute_row_hash(d), tool_audit.check_row(d)
	  FROM tool_audit.data_changes d WHERE id >= 1000 ORDER BY id;
	SELECT id, table_name, new_values, retention_policy, chain_id, chain_seq FROM tool_audit.data_changes WHERE id < 1000;
	SELECT * FROM tool_audit.data_changes_csv WHERE id >= 1000 ORDER BY id});
both('verify() finds nothing', q{SELECT count(*) FROM tool_audit.verify()});
both('verify_digest(digest()) finds nothing', q{SELECT count(*) FROM tool_audit.verify_digest(tool_audit.digest())});
both('verify_protections() finds nothing', q{SELECT count(*) FROM tool_audit.verify_protections()});
both('the access report', q{
	SELECT jsonb_pretty(tool_audit.access_report('pat_r', '2020-01-01', '2020-01-02'))});
both('the access report as a bound reader',
	q{SET ROLE auditor; SELECT tool_audit.access_report('pat_r', '2020-01-01', '2020-01-02')->'total_accesses'});
both('tool_stats, the timeline, attribution and calls_by_conversation', q{
	SELECT tool_audit.tool_stats('read_chart');
	SELECT * FROM tool_audit.conversation_timeline('conv_r');
	SELECT tool_audit.attribution(1005);
	SELECT id, turn_number FROM tool_audit.calls_by_conversation('conv_r');
	SELECT id FROM tool_audit.failures('2020-01-01') WHERE id >= 1000});
both('export_jsonl', q{SELECT * FROM tool_audit.export_jsonl('2020-01-01', '2020-01-02')});
both('export_fhir', q{SELECT * FROM tool_audit.export_fhir('2020-01-01', '2020-01-02', 'pat_r')});
both('the CSV and OpenTelemetry views', q{
	SELECT * FROM tool_audit.tool_calls_csv WHERE id >= 1000 ORDER BY id;
	SELECT * FROM tool_audit.admin_events_csv WHERE id >= 1000 ORDER BY id;
	SELECT * FROM tool_audit.otel_tool_spans WHERE "tool_audit.call_id" >= 1000 ORDER BY "tool_audit.call_id"});
both('tool_usage', q{SELECT * FROM tool_audit.tool_usage ORDER BY all_tenants, tenant_id, tool_name});
both('sanitize, sanitize_text, summarize_result and pseudonymize', q{
	SELECT tool_audit.sanitize('{"email": "x@y.test", "token": "t", "deep": [{"ssn": "1"}]}'),
	       tool_audit.sanitize_text('key sk-abcdefghijklmnopqrstuvwxyz1234 and 078-05-1120'),
	       tool_audit.summarize_result('{"status": "ok", "id": 3, "payload": "big"}'),
	       tool_audit.pseudonymize('078-05-1120')});

# the same mistakes, the same errors
for my $bad (
	q{SET ROLE app; SELECT tool_audit.log_call('t', '{}', '{}', 1, '[]')},
	q{SET ROLE app; SELECT tool_audit.log_call('t', '{}', '{}', 1, '{"user_id": {"a": 1}}')},
	q{SET ROLE app; SELECT tool_audit.log_event('tool_audit.x', 'a', '{}')},
	q{SET ROLE app; SELECT * FROM tool_audit.tool_calls},
	q{UPDATE tool_audit.tool_calls SET error = 'x' WHERE id = 1001},
	q{DELETE FROM tool_audit.sanitize_rules WHERE rule_id = 1},
	q{ALTER TABLE tool_audit.tool_calls DISABLE TRIGGER tool_calls_append_only},
	q{SELECT tool_audit.access_report('pat_r', '2020-01-02', '2020-01-01')})
{
	my %got;
	for my $db (qw(fresh upgraded))
	{
		my ($ret, $out, $err) = $node->psql($db, "\\set VERBOSITY terse\n$bad");
		$got{$db} = "$ret $err";
	}
	isnt($got{fresh}, '0 ', "refused: $bad");
	same("the same error: $bad", $got{fresh}, $got{upgraded});
}

$node->stop;
done_testing();
