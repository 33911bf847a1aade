# A central audit database (doc/scaling.md): the audit tables of an
# application database replicated by native logical replication into plain
# tables (sql/central/tool_audit_central.sql, no extension there).  The
# external verifier, pointed at the central copy with a digest signed at the
# source, finds nothing wrong, also after the source's erasures (replicated
# UPDATEs) and purges (replicated DELETEs); a row changed, removed or added
# on the central copy is reported, and so is a row a compromised source
# changes and sends on.  Local writers on the central copy are refused; the
# apply worker is not.  Calls recorded in two rows (begin_call(), end_call():
# a started row has success NULL) replicate, in the initial copy and in the
# stream, ended or not.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $verifier = $ENV{TA_VERIFIER} // "$ENV{TESTDIR}/verifier/tool_audit_verify";
ok(-x $verifier, "the external verifier is built ($verifier)")
  or BAIL_OUT('build it with: make -C verifier');
my $central_sql = "$ENV{TESTDIR}/sql/central/tool_audit_central.sql";
ok(-r $central_sql, 'the central schema script exists');

# --- the source: the extension (not preloaded, so that the "compromised
# source" below can switch its guards off through the catalog), a signing key
my $source = PostgreSQL::Test::Cluster->new('source');
$source->init(allows_streaming => 'logical');
$source->start;
my $base = $source->basedir;
my $key = "$base/digest_key.pem";
system_or_bail('openssl', 'genpkey', '-algorithm', 'ed25519', '-out', $key);
chmod 0600, $key;
$source->safe_psql('postgres', qq{LOAD 'tool_audit'; ALTER SYSTEM SET tool_audit.signing_key_file = '$key'});
$source->reload;
$source->safe_psql('postgres', q{CREATE DATABASE app});
$source->safe_psql('app', q{
	CREATE EXTENSION tool_audit;
	CREATE TABLE public.orders (id int PRIMARY KEY, status text);
	INSERT INTO public.orders SELECT g, 'new' FROM generate_series(1, 5) g;
	SELECT tool_audit.track('public.orders');
	-- rows born long ago (restored with their times), for the purge below
	SET tool_audit.restoring = on;
	INSERT INTO tool_audit.tool_calls (id, recorded_at, tool_name, tenant_id, success, retention_policy, expires_at)
	  SELECT nextval('tool_audit.tool_calls_id_seq'), now() - interval '800 days', 'search', 'old', true,
	         'general', now() - interval '435 days'
	    FROM generate_series(1, 6) g;
	RESET tool_audit.restoring;
	SELECT tool_audit.log_call('lookup_' || g, jsonb_build_object('n', g, 'note', 'naïve'), '{"ok": true}', g * 0.5,
	       jsonb_build_object('tenant_id', CASE WHEN g % 2 = 0 THEN 'acme' ELSE 'beta' END,
	                          'user_id', 'agent' || g % 3,
	                          'subject_id', CASE WHEN g % 4 = 0 THEN 'cust-881' ELSE 'cust-' || g END))
	  FROM generate_series(1, 20) g;
	SELECT tool_audit.log_event('prompt.update', 'admin', '{"v": 2}', '{"tenant_id": "acme"}');
	UPDATE public.orders SET status = 'paid' WHERE id <= 3;
	DELETE FROM public.orders WHERE id = 5;
	CREATE PUBLICATION tool_audit_central
	  FOR TABLE tool_audit.tool_calls, tool_audit.admin_events, tool_audit.data_changes,
	            tool_audit.purge_anchors, tool_audit.erasures
	  WITH (publish = 'insert, update, delete');
});
# calls in two rows, by a writer: one never ended (its started row, success
# NULL, is all there is), one ended in the transaction that changed a tracked
# row (its change row names the call), one whose caller rolled back and that
# was ended as failed afterwards (its started row survives, for a subject the
# erasure below erases)
$source->safe_psql('app', q{
	CREATE ROLE agent LOGIN IN ROLE tool_audit_writer;
	GRANT SELECT, UPDATE ON public.orders TO agent;
});
$source->safe_psql('app', q{
	SELECT tool_audit.begin_call('lookup', '{}', '{"tenant_id": "acme"}');
	BEGIN;
	SELECT tool_audit.begin_call('ship_order', '{"order_id": 1}', '{"tenant_id": "acme", "user_id": "agent1"}');
	UPDATE public.orders SET status = 'shipped' WHERE id = 1;
	SELECT tool_audit.end_call(current_setting('tool_audit.call')::uuid, '{"status": "shipped"}');
	COMMIT;
	BEGIN;
	SELECT tool_audit.begin_call('refund_order', '{"order_id": 4}', '{"tenant_id": "beta", "subject_id": "cust-881"}')
	    AS failed_call \gset
	UPDATE public.orders SET status = 'refunded' WHERE id = 4;
	ROLLBACK;
	SELECT tool_audit.end_call(:'failed_call', '{"error": "card declined"}');
}, extra_params => ['-U', 'agent']);
is($source->safe_psql('app', q{
		SELECT string_agg(tool_name || ':' || call_phase || ':' || coalesce(success::text, 'null'), ',' ORDER BY id)
		  FROM tool_audit.tool_calls WHERE call_phase IS NOT NULL}),
	'lookup:started:null,ship_order:started:null,ship_order:ended:true,refund_order:started:null,refund_order:ended:false',
	'the source holds started rows (success NULL) and ended ones');
is($source->safe_psql('app', q{SELECT count(*) FROM tool_audit.data_changes WHERE call_event_id IS NOT NULL}), '1',
	'and the change row of the ended call names it');
is($source->safe_psql('app', 'SELECT count(*) > 0 FROM tool_audit.data_changes'), 't',
	'the tracked table wrote data_changes at the source');
# the publication names the five tables the verifier reads, and nothing else of
# the schema: pseudonym_keys holds key material (FOR ALL TABLES or FOR TABLES
# IN SCHEMA would stream it to any subscriber)
is($source->safe_psql('app',
		q{SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_publication_tables WHERE pubname = 'tool_audit_central'}),
	'admin_events,data_changes,erasures,purge_anchors,tool_calls', 'the publication lists the five audit tables only');
# the DDL guard treats a table's membership in a publication like any object
# depending on an audit table: it cannot be dropped
my ($pret, $pout, $perr) = $source->psql('app', 'ALTER PUBLICATION tool_audit_central DROP TABLE tool_audit.erasures');
like($perr, qr/dropping tool_audit.erasures in publication tool_audit_central is not allowed/,
	'an audit table cannot be taken out of the publication');
($pret, $pout, $perr) = $source->psql('app', 'DROP PUBLICATION tool_audit_central');
like($perr, qr/in publication tool_audit_central is not allowed/, 'nor the publication dropped');
my $pub = "$base/digest_pub.pem";
{
	open my $fh, '>', $pub or die "$pub: $!";
	print $fh $source->safe_psql('app', 'SELECT tool_audit.signing_public_key()') . "\n";
	close $fh;
}

# --- the central cluster: plain tables from the script, a subscription
my $central = PostgreSQL::Test::Cluster->new('central');
$central->init;
$central->start;

# the last error a central cluster logged (why an initial copy does not finish:
# a row the central tables refuse, which the apply worker retries forever)
sub last_error
{
	my ($node) = @_;
	my @errors = grep { /ERROR:/ } split /\n/, slurp_file($node->logfile);
	return @errors ? $errors[-1] : 'no error logged';
}
$central->safe_psql('postgres', q{CREATE DATABASE audit_app; CREATE ROLE auditor LOGIN});
# run by anyone but a superuser, the script refuses (the tables' owner could
# switch their guard off), and leaves nothing behind
$central->safe_psql('postgres', q{CREATE ROLE central_owner LOGIN; GRANT CREATE ON DATABASE audit_app TO central_owner});
{
	my ($stdout, $stderr);
	my $ran = IPC::Run::run(['psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d',
			$central->connstr('audit_app') . ' user=central_owner', '-f', $central_sql],
		'>', \$stdout, '2>', \$stderr);
	ok(!$ran && $stderr =~ /must be run by a superuser/, 'the central schema script refuses a non-superuser');
	is($central->safe_psql('audit_app', q{SELECT count(*) FROM pg_namespace WHERE nspname = 'tool_audit'}), '0',
		'and makes nothing');
}
command_ok(['psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $central->connstr('audit_app'),
		'-f', $central_sql], 'the central schema script runs');
is($central->safe_psql('audit_app', q{SELECT count(*) FROM pg_extension WHERE extname = 'tool_audit'}), '0',
	'the central database has no extension');
# every column of the five tables as at the source: name, order, type and
# nullability (a NOT NULL the source has not stops the apply worker at the first
# row with the NULL; a missing column stops it too)
my $columns = q{
	SELECT string_agg(format('%s.%s %s%s', c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
	                         CASE WHEN a.attnotnull THEN ' not null' ELSE '' END), E'\n' ORDER BY c.relname, a.attnum)
	  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
	 WHERE c.relnamespace = 'tool_audit'::regnamespace
	   AND c.relname IN ('tool_calls', 'admin_events', 'data_changes', 'purge_anchors', 'erasures')
	   AND a.attnum > 0 AND NOT a.attisdropped};
is($central->safe_psql('audit_app', $columns), $source->safe_psql('app', $columns),
	"the central tables have the source's columns, types and nullability");
$central->safe_psql('audit_app', q{
	GRANT USAGE ON SCHEMA tool_audit TO auditor;
	GRANT SELECT ON ALL TABLES IN SCHEMA tool_audit TO auditor;
});
my $connstr = $source->connstr . ' dbname=app';
$central->safe_psql('audit_app',
	"CREATE SUBSCRIPTION tool_audit_central CONNECTION '$connstr' PUBLICATION tool_audit_central");
my $copied = $central->poll_query_until('audit_app',
	q{SELECT count(*) = 0 FROM pg_subscription_rel WHERE srsubstate NOT IN ('r', 's')});
ok($copied, 'the initial copy finishes: every row of the source fits the central tables')
  or diag('central log: ' . last_error($central));
die 'the initial copy did not finish' unless $copied;
$source->wait_for_catchup('tool_audit_central');

my $digest_no = 0;

# a signed digest of the source, in a file
sub source_digest
{
	my $file = "$base/digest" . ++$digest_no . '.json';
	open my $fh, '>', $file or die "$file: $!";
	print $fh $source->safe_psql('app', 'SELECT tool_audit.digest()');
	close $fh;
	return $file;
}

# the external verifier on the central copy, as the read-only role: (exit code, output)
sub central_verify
{
	my ($file) = @_;
	my @cmd = ($verifier, '--all', '--digest', $file, '--public-key', $pub,
		$central->connstr('audit_app') . ' user=auditor');
	my ($stdout, $stderr);
	IPC::Run::run(\@cmd, '>', \$stdout, '2>', \$stderr);
	return ($? >> 8, $stdout . $stderr);
}

sub central_count
{
	my ($table) = @_;
	return $central->safe_psql('audit_app', "SELECT count(*) FROM tool_audit.$table");
}

my $digest1 = source_digest();
$source->wait_for_catchup('tool_audit_central');
for my $t (qw(tool_calls admin_events data_changes))
{
	is(central_count($t), $source->safe_psql('app', "SELECT count(*) FROM tool_audit.$t"),
		"$t: the central copy holds the source's rows");
}
# the started rows and their NULL success, as at the source
my $phases = q{SELECT string_agg(id || ':' || call_phase || ':' || coalesce(success::text, 'null'), ',' ORDER BY id)
                 FROM tool_audit.tool_calls WHERE call_phase IS NOT NULL};
is($central->safe_psql('audit_app', $phases), $source->safe_psql('app', $phases),
	'the started and ended rows reached the central copy, success NULL included');
is($central->safe_psql('audit_app', q{SELECT count(*) FROM tool_audit.data_changes WHERE call_event_id IS NOT NULL}),
	'1', "and the call's change row");
my ($rc, $out) = central_verify($digest1);
is($rc, 0, 'central copy: the verifier exits 0 with the source digest') or diag($out);
my $source_calls = $source->safe_psql('app', 'SELECT count(*) FROM tool_audit.tool_calls');
like($out, qr/^OK: tool_calls $source_calls rows/m, 'and says OK, for every call row');
unlike($out, qr/PROBLEM/, 'with no problem');

# --- the source erases a subject (replicated UPDATEs) and purges expired
# rows (replicated DELETEs), then writes on: the copy still verifies against
# the digest taken before, and against a new one
$source->safe_psql('app', q{
	SELECT tool_audit.erase_subject('cust-881', 'request 2026-7', 'GDPR Art. 17(1)(a)');
	SELECT tool_audit.purge_expired();
	SELECT tool_audit.log_call('after_' || g, '{}', '{}', 1, '{"tenant_id": "acme"}') FROM generate_series(1, 3) g;
});
# calls in two rows through the stream: one not ended, one ended
$source->safe_psql('app', q{
	SELECT tool_audit.begin_call('after_started', '{}', '{"tenant_id": "acme"}');
	SELECT tool_audit.begin_call('after_ended', '{}', '{"tenant_id": "beta"}') AS c \gset
	SELECT tool_audit.end_call(:'c', '{"ok": true}', 3);
}, extra_params => ['-U', 'agent']);
$source->wait_for_catchup('tool_audit_central');
is($central->safe_psql('audit_app', $phases), $source->safe_psql('app', $phases),
	'started and ended rows sent after the initial copy arrived too');
is($central->safe_psql('audit_app', q{SELECT count(*) FROM tool_audit.tool_calls WHERE success IS NULL}), '5',
	'(five started rows, two of them never ended)');
is(central_count('erasures'), $source->safe_psql('app', 'SELECT count(*) FROM tool_audit.erasures'),
	'the erasures reached the central copy');
isnt(central_count('erasures'), '0', '(there are some)');
is($central->safe_psql('audit_app',
		q{SELECT count(*) FROM tool_audit.tool_calls WHERE subject_id = 'cust-881'}), '0',
	'the erased subject is gone from the central copy too');
is(central_count('purge_anchors'), '1', "the purge's anchor reached the central copy");
is($central->safe_psql('audit_app', q{SELECT count(*) FROM tool_audit.tool_calls WHERE tenant_id = 'old'}), '0',
	'the purged rows are gone from the central copy');
($rc, $out) = central_verify($digest1);
is($rc, 0, 'after erasure and purge: the old digest still verifies the central copy') or diag($out);
my $digest2 = source_digest();
$source->wait_for_catchup('tool_audit_central');
($rc, $out) = central_verify($digest2);
is($rc, 0, 'and so does a new one') or diag($out);

# --- local writers on the central copy are refused, the superuser included
my %refused = (
	'INSERT' => q{INSERT INTO tool_audit.admin_events (id, event_id, occurred_at, event_type, actor, actor_type, payload, metadata, recorded_by)
	              VALUES (999, gen_random_uuid(), now(), 'x.y', 'me', 'user', '{}', '{}', 'me')},
	'UPDATE' => q{UPDATE tool_audit.tool_calls SET tool_name = 'forged' WHERE tool_name = 'lookup_1'},
	'DELETE' => q{DELETE FROM tool_audit.tool_calls WHERE tool_name = 'lookup_2'},
	'TRUNCATE' => q{TRUNCATE tool_audit.erasures},
);
for my $op (sort keys %refused)
{
	my ($ret, $o, $err) = $central->psql('audit_app', $refused{$op});
	isnt($ret, 0, "central: a superuser's $op is refused");
	like($err, qr/$op is not allowed on tool_audit table \w+ of a central copy/, '  by the local-write trigger');
}
my ($ret, $o, $err) = $central->psql('audit_app', q{SELECT count(*) FROM tool_audit.tool_calls}, extra_params => ['-U', 'auditor']);
is($o, central_count('tool_calls'), 'the reader reads');
($ret, $o, $err) = $central->psql('audit_app', q{DELETE FROM tool_audit.tool_calls}, extra_params => ['-U', 'auditor']);
like($err, qr/permission denied/, 'the reader cannot write');
($rc, $out) = central_verify($digest2);
is($rc, 0, 'the refused writes left the copy clean') or diag($out);

# --- a superuser on the central side who gets past the trigger (as the apply
# worker runs) is caught by the verifier
sub central_tamper
{
	my ($sql) = @_;
	$central->safe_psql('audit_app', "SET session_replication_role = replica; $sql");
}
my $victim = $central->safe_psql('audit_app', q{SELECT id FROM tool_audit.tool_calls WHERE tool_name = 'lookup_3'});
central_tamper(qq{UPDATE tool_audit.tool_calls SET arguments = '{"n": 300}' WHERE id = $victim});
($rc, $out) = central_verify($digest2);
isnt($rc, 0, 'a row changed on the central copy: the verifier fails');
like($out, qr/PROBLEM table=tool_calls .*row_id=$victim\b.*row altered/, 'and names the altered row') or diag($out);

# the replicated stream carries on regardless (the subscription keeps applying)
$source->safe_psql('app', q{SELECT tool_audit.log_call('later', '{}', '{}', 1, '{"tenant_id": "beta"}')});
$source->wait_for_catchup('tool_audit_central');
is($central->safe_psql('audit_app', q{SELECT count(*) FROM tool_audit.tool_calls WHERE tool_name = 'later'}), '1',
	'replication still applies after the tampering');

# put it back (the source's stored value), then remove a row and forge one
my $orig = $source->safe_psql('app', qq{SELECT arguments FROM tool_audit.tool_calls WHERE id = $victim});
central_tamper(qq{UPDATE tool_audit.tool_calls SET arguments = '$orig' WHERE id = $victim});
($rc, $out) = central_verify($digest2);
is($rc, 0, 'restored to the source value: clean again') or diag($out);

# (a row the digest covers: one after it, at a chain's end, is the
# truncation no digest can see until the next one)
my $gone = $central->safe_psql('audit_app', q{SELECT min(id) FROM tool_audit.admin_events});
central_tamper(qq{DELETE FROM tool_audit.admin_events WHERE id = $gone});
($rc, $out) = central_verify($digest2);
isnt($rc, 0, 'an admin event deleted on the central copy: the verifier fails');
like($out, qr/PROBLEM table=admin_events/, 'and names the table') or diag($out);

# a forged row, copying a real row's hashes onto another position
central_tamper(q{
	INSERT INTO tool_audit.tool_calls
	SELECT id + 100000, gen_random_uuid(), recorded_at, tenant_id, conversation_id, turn_number, user_id, user_role,
	       model, 'forged_call', tool_call_id, call_trigger, purpose, subject_id, arguments, result_summary, success,
	       error, duration_ms, client_ip, user_agent, session_metadata, recorded_by, row_hash, chain_id, chain_lane,
	       chain_seq + 1000, chain_hash, retention_policy, expires_at, call_phase, call_event_id, caller_txid,
	       impersonated_by, break_glass, started_at
	  FROM tool_audit.tool_calls WHERE tool_name = 'lookup_5'});
($rc, $out) = central_verify($digest2);
like($out, qr/PROBLEM table=tool_calls .*row_id=\d+/, 'a row forged on the central copy is reported') or diag($out);

# --- a compromised source: its superuser switches the guards off and
# rewrites a row; the change replicates, and the central copy checked
# against the digest taken before reports it (a central copy launders nothing)
my $central2 = PostgreSQL::Test::Cluster->new('central2');
$central2->init;
$central2->start;
$central2->safe_psql('postgres', q{CREATE DATABASE audit_app; CREATE ROLE auditor LOGIN});
command_ok(['psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $central2->connstr('audit_app'),
		'-f', $central_sql], 'a second central copy');
$central2->safe_psql('audit_app', q{
	GRANT USAGE ON SCHEMA tool_audit TO auditor;
	GRANT SELECT ON ALL TABLES IN SCHEMA tool_audit TO auditor;
});
# this one replicates as a least-privileged role: REPLICATION and the
# verifier role, which reads every tenant's rows (a role that row-level
# security limits would copy only part of the trail at first)
$source->safe_psql('app', q{CREATE ROLE replicator LOGIN REPLICATION IN ROLE tool_audit_verifier});
my $connstr_repl = $connstr . ' user=replicator';
$central2->safe_psql('audit_app',
	"CREATE SUBSCRIPTION tool_audit_central2 CONNECTION '$connstr_repl' PUBLICATION tool_audit_central");
$central2->poll_query_until('audit_app',
	q{SELECT count(*) = 0 FROM pg_subscription_rel WHERE srsubstate NOT IN ('r', 's')})
  or die 'the initial copy did not finish: ' . last_error($central2);
$source->wait_for_catchup('tool_audit_central2');
my @cmd = ($verifier, '--digest', $digest2, '--public-key', $pub, $central2->connstr('audit_app') . ' user=auditor');
my ($stdout, $stderr);
IPC::Run::run(\@cmd, '>', \$stdout, '2>', \$stderr);
is($? >> 8, 0, 'the second copy verifies') or diag($stdout . $stderr);
is($central2->safe_psql('audit_app', 'SELECT count(*) FROM tool_audit.tool_calls'),
	$source->safe_psql('app', 'SELECT count(*) FROM tool_audit.tool_calls'),
	'the replication role without superuser or BYPASSRLS copied every row');

# a second source database into the same central database is refused by the
# unique indexes (ids repeat across sources, and so do chain ids: the same
# tenant has the same chain id in every database): one central database per
# source; the copy already there is left as it was
$source->safe_psql('postgres', 'CREATE DATABASE app2');
$source->safe_psql('app2', q{
	CREATE EXTENSION tool_audit;
	SELECT tool_audit.log_call('other_' || g, '{}', '{}', 1, '{"tenant_id": "acme"}') FROM generate_series(1, 3) g;
	CREATE PUBLICATION tool_audit_central FOR TABLE tool_audit.tool_calls, tool_audit.admin_events
	  WITH (publish = 'insert, update, delete');
});
my $log_offset = -s $central2->logfile;
my $connstr2 = $source->connstr . ' dbname=app2';
$central2->safe_psql('audit_app',
	"CREATE SUBSCRIPTION other_source CONNECTION '$connstr2' PUBLICATION tool_audit_central");
ok($central2->wait_for_log(qr/duplicate key value violates unique constraint "(tool_calls|admin_events)_\w+"/, $log_offset),
	'a second source into the same central database: its rows are refused');
$central2->safe_psql('audit_app', 'DROP SUBSCRIPTION other_source');
is($central2->safe_psql('audit_app', q{SELECT count(*) FROM tool_audit.tool_calls WHERE tool_name LIKE 'other%'}), '0',
	'none of them arrived');
IPC::Run::run(\@cmd, '>', \$stdout, '2>', \$stderr);
is($? >> 8, 0, 'and the first source\'s copy still verifies') or diag($stdout . $stderr);

my $forged = $source->safe_psql('app', q{SELECT id FROM tool_audit.tool_calls WHERE tool_name = 'lookup_7'});
$source->safe_psql('app', qq{
	UPDATE pg_trigger SET tgenabled = 'D' WHERE tgrelid = 'tool_audit.tool_calls'::regclass;
	UPDATE tool_audit.tool_calls SET success = false WHERE id = $forged;
	UPDATE pg_trigger SET tgenabled = 'A' WHERE tgrelid = 'tool_audit.tool_calls'::regclass;
});
$source->wait_for_catchup('tool_audit_central2');
is($central2->safe_psql('audit_app', qq{SELECT success FROM tool_audit.tool_calls WHERE id = $forged}), 'f',
	"the source's forged change reached the central copy");
IPC::Run::run(\@cmd, '>', \$stdout, '2>', \$stderr);
isnt($? >> 8, 0, 'the verifier fails on the central copy');
like($stdout, qr/PROBLEM table=tool_calls .*row_id=$forged\b.*row altered/, "and names the source's forged row")
  or diag($stdout . $stderr);

# --- a preloaded source (the production setting: the preloaded hooks refuse
# UPDATE and DELETE to everyone but the sanctioned erasure and purge) into a
# second database of the central cluster: clean, erasure included
my $pre = PostgreSQL::Test::Cluster->new('preloaded_source');
$pre->init(allows_streaming => 'logical');
$pre->append_conf('postgresql.conf', "shared_preload_libraries = 'tool_audit'");
$pre->append_conf('postgresql.conf', "tool_audit.signing_key_file = '$key'");
$pre->start;
$pre->safe_psql('postgres', q{
	CREATE EXTENSION tool_audit;
	SELECT tool_audit.log_call('pre_' || g, '{}', '{}', 1,
	       jsonb_build_object('tenant_id', 't' || g % 3, 'subject_id', CASE WHEN g % 5 = 0 THEN 'cust-9' END))
	  FROM generate_series(1, 15) g;
	CREATE ROLE agent LOGIN IN ROLE tool_audit_writer;
	CREATE PUBLICATION tool_audit_central
	  FOR TABLE tool_audit.tool_calls, tool_audit.admin_events, tool_audit.data_changes,
	            tool_audit.purge_anchors, tool_audit.erasures
	  WITH (publish = 'insert, update, delete');
});
$pre->safe_psql('postgres', q{
	SELECT tool_audit.begin_call('pre_started', '{}', '{"tenant_id": "t1"}');
	SELECT tool_audit.begin_call('pre_ended', '{}', '{"tenant_id": "t2", "subject_id": "cust-9"}') AS c \gset
	SELECT tool_audit.end_call(:'c', '{"ok": true}');
}, extra_params => ['-U', 'agent']);
$central2->safe_psql('postgres', 'CREATE DATABASE audit_pre');
command_ok(['psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $central2->connstr('audit_pre'),
		'-f', $central_sql], 'a central database for the preloaded source');
$central2->safe_psql('audit_pre', q{
	GRANT USAGE ON SCHEMA tool_audit TO auditor;
	GRANT SELECT ON ALL TABLES IN SCHEMA tool_audit TO auditor;
});
my $pre_connstr = $pre->connstr . ' dbname=postgres';
$central2->safe_psql('audit_pre',
	"CREATE SUBSCRIPTION tool_audit_pre CONNECTION '$pre_connstr' PUBLICATION tool_audit_central");
$central2->poll_query_until('audit_pre',
	q{SELECT count(*) = 0 FROM pg_subscription_rel WHERE srsubstate NOT IN ('r', 's')})
  or die 'the initial copy did not finish: ' . last_error($central2);
my $pre_digest = "$base/pre_digest.json";
{
	open my $fh, '>', $pre_digest or die "$pre_digest: $!";
	print $fh $pre->safe_psql('postgres', 'SELECT tool_audit.digest()');
	close $fh;
}
$pre->safe_psql('postgres', q{SELECT tool_audit.erase_subject('cust-9', 'request 2026-8', 'GDPR Art. 17(1)(a)')});
$pre->wait_for_catchup('tool_audit_pre');
is($central2->safe_psql('audit_pre', q{SELECT count(*) FROM tool_audit.erasures}),
	$pre->safe_psql('postgres', q{SELECT count(*) FROM tool_audit.erasures}), 'preloaded source: the erasure arrived');
is($central2->safe_psql('audit_pre', q{SELECT count(*) FROM tool_audit.erasures}), '5',
	'(its five rows: three one-row calls, the started and the ended row of a call)');
is($central2->safe_psql('audit_pre', $phases), $pre->safe_psql('postgres', $phases),
	'preloaded source: its started and ended rows arrived');
my @pre_cmd = ($verifier, '--digest', $pre_digest, '--public-key', $pub, $central2->connstr('audit_pre') . ' user=auditor');
my ($pre_out, $pre_err);
IPC::Run::run(\@pre_cmd, '>', \$pre_out, '2>', \$pre_err);
is($? >> 8, 0, 'preloaded source: its central copy verifies after the erasure') or diag($pre_out . $pre_err);
$central2->safe_psql('audit_pre', 'DROP SUBSCRIPTION tool_audit_pre');

# a central database made by the script before 1.5's started rows were let in
# (success NOT NULL): the apply worker stops at the first started row and
# retries; the statement doc/scaling.md gives lets it through, and the copy
# then verifies
$central2->safe_psql('postgres', 'CREATE DATABASE audit_old');
command_ok(['psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $central2->connstr('audit_old'),
		'-f', $central_sql], 'a central database as the earlier script made it');
$central2->safe_psql('audit_old', q{
	ALTER TABLE tool_audit.tool_calls ALTER COLUMN success SET NOT NULL;
	GRANT USAGE ON SCHEMA tool_audit TO auditor;
	GRANT SELECT ON ALL TABLES IN SCHEMA tool_audit TO auditor;
});
$log_offset = -s $central2->logfile;
$central2->safe_psql('audit_old',
	"CREATE SUBSCRIPTION tool_audit_old CONNECTION '$pre_connstr' PUBLICATION tool_audit_central");
ok($central2->wait_for_log(qr/null value in column "success" of relation "tool_calls" violates not-null constraint/,
		$log_offset), 'the earlier central tables refuse a started row');
$central2->safe_psql('audit_old', 'ALTER TABLE tool_audit.tool_calls ALTER COLUMN success DROP NOT NULL');
$central2->poll_query_until('audit_old',
	q{SELECT count(*) = 0 FROM pg_subscription_rel WHERE srsubstate NOT IN ('r', 's')})
  or die 'the initial copy did not finish: ' . last_error($central2);
$pre->wait_for_catchup('tool_audit_old');
is($central2->safe_psql('audit_old', $phases), $pre->safe_psql('postgres', $phases),
	'after DROP NOT NULL the stuck subscription copies the started rows');
my @old_cmd = ($verifier, '--digest', $pre_digest, '--public-key', $pub, $central2->connstr('audit_old') . ' user=auditor');
IPC::Run::run(\@old_cmd, '>', \$pre_out, '2>', \$pre_err);
is($? >> 8, 0, 'and the copy verifies') or diag($pre_out . $pre_err);
$central2->safe_psql('audit_old', 'DROP SUBSCRIPTION tool_audit_old');
$pre->stop;

# --- change data capture with wal2json (Kafka connectors read the same
# stream): the rows come with their chain columns and hashes, as stored
SKIP:
{
	my $libdir = `pg_config --pkglibdir`;
	chomp $libdir;
	skip 'wal2json is not installed', 3 unless -e "$libdir/wal2json.so";
	# (where the server keeps a list of trusted output plug-ins, wal2json must be on it)
	my $trusted = $source->safe_psql('app', q{SELECT current_setting('output_plugin_libraries', true)});
	if ($trusted ne '' && $trusted !~ /wal2json/)
	{
		$source->append_conf('postgresql.conf', "output_plugin_libraries = '$trusted, wal2json'");
		$source->reload;
	}
	$source->safe_psql('app', q{SELECT pg_create_logical_replication_slot('cdc', 'wal2json')});
	$source->safe_psql('app', q{SELECT tool_audit.log_call('cdc_call', '{"n": 1}', '{}', 1, '{"tenant_id": "acme"}')});
	my $stream = $source->safe_psql('app', q{
		SELECT string_agg(data, E'\n') FROM pg_logical_slot_get_changes('cdc', NULL, NULL,
		    'format-version', '2', 'add-tables', 'tool_audit.tool_calls', 'include-types', 'false')});
	my $stored = $source->safe_psql('app',
		q{SELECT encode(row_hash, 'hex') || ' ' || chain_seq FROM tool_audit.tool_calls WHERE tool_name = 'cdc_call'});
	my ($hash, $seq) = split / /, $stored;
	like($stream, qr/"name":"tool_name","value":"cdc_call"/, 'wal2json: the new row is in the stream');
	like($stream, qr/"name":"row_hash","value":"(?:\\\\\\\\x)?$hash"/, 'with its row hash as stored');
	like($stream, qr/"name":"chain_seq","value":$seq\b/, 'and its chain position');
	$source->safe_psql('app', q{SELECT pg_drop_replication_slot('cdc')});
}

$central->safe_psql('audit_app', 'DROP SUBSCRIPTION tool_audit_central');
$central2->safe_psql('audit_app', 'DROP SUBSCRIPTION tool_audit_central2');
$central->stop;
$central2->stop;
$source->stop;
done_testing();
