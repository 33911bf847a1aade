# Backup and restore with the ordinary commands and no setting (issue 12):
# pg_dump -Fc + pg_restore (alone, --single-transaction, -j 2), a plain-SQL
# dump through psql (alone and --single-transaction), and pg_dumpall through
# psql into a new cluster, run as a superuser into an empty database, on a
# server with and one without shared_preload_libraries.  Every row comes back
# as it was (ids, times, hashes, chain positions), verify() finds nothing and
# a digest taken before the dump still verifies.
#
# And what must fail loudly, never leave an empty trail that verifies: a
# non-superuser's restore, a row edited in the dump, a row dropped from it,
# rows restored into a table that holds rows, a superuser's INSERT of a row
# with made-up hashes; a restore whose rows were refused leaves a trail that
# verify() reports as emptied.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use DumpFixture qw(fill_trail %same same_as);

my $counts = q{SELECT (SELECT count(*) FROM tool_audit.tool_calls) || '/' ||
                      (SELECT count(*) FROM tool_audit.admin_events)};

# psql on a file as it comes, as a restore runs it: exit status and stderr
sub psql_file
{
	my ($node, $db, $file, @opts) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'psql', '-X', '-q', @opts, '-d', $node->connstr($db), '-f', $file ],
		'>', \$out, '2>', \$err);
	return ($? >> 8, $err);
}

sub run_cmd
{
	my (@cmd) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run(\@cmd, '>', \$out, '2>', \$err);
	return ($? >> 8, $err);
}

# the ordinary commands, on a cluster preloaded or not
sub ordinary_commands
{
	my ($preload) = @_;
	my $kind = $preload ? 'preloaded' : 'not preloaded';
	my $node = PostgreSQL::Test::Cluster->new($preload ? 'plain_pre' : 'plain');
	$node->init;
	$node->append_conf('postgresql.conf', "shared_preload_libraries = 'tool_audit'") if $preload;
	$node->start;
	fill_trail($node, 'postgres');
	# the digest first: since 1.5 it records its read, an admin event the dump holds
	my $digest = $node->safe_psql('postgres', 'SELECT tool_audit.digest()');
	my %orig = map { $_ => $node->safe_psql('postgres', $same{$_}) } keys %same;
	my $n = $node->safe_psql('postgres', $counts);

	my $base = $node->basedir;
	$node->command_ok([ 'pg_dump', '-Fc', '-f', "$base/a.dump", '-d', $node->connstr('postgres') ], "$kind: pg_dump -Fc");
	$node->command_ok([ 'pg_dump', '-f', "$base/a.sql", '-d', $node->connstr('postgres') ], "$kind: pg_dump plain SQL");
	$node->command_ok([ 'pg_dumpall', '-f', "$base/all.sql", '-d', $node->connstr('postgres') ], "$kind: pg_dumpall");

	my @restores = (
		[ 'pg_restore', [ 'pg_restore', '--exit-on-error' ] ],
		[ 'pg_restore --single-transaction', [ 'pg_restore', '--single-transaction', '--exit-on-error' ] ],
		[ 'pg_restore -j 2', [ 'pg_restore', '-j', '2', '--exit-on-error' ] ]);
	my $i = 0;
	for my $r (@restores)
	{
		my ($how, $cmd) = @$r;
		my $db = 'r' . $i++;
		$node->safe_psql('postgres', "CREATE DATABASE $db");
		my ($rc, $err) = run_cmd(@$cmd, '-d', $node->connstr($db), "$base/a.dump");
		is($rc, 0, "$kind: $how with no setting exits 0") or diag($err);
		is($node->safe_psql($db, $counts), $n, "$kind, $how: every row restored ($n)");
		same_as($node, $db, \%orig, $digest, "$kind, $how");
	}
	for my $single (0, 1)
	{
		my $how = $single ? 'psql --single-transaction' : 'psql';
		my $db = 'r' . $i++;
		$node->safe_psql('postgres', "CREATE DATABASE $db");
		my ($rc, $err) = psql_file($node, $db, "$base/a.sql", '-v', 'ON_ERROR_STOP=1',
			$single ? ('--single-transaction') : ());
		is($rc, 0, "$kind: plain SQL dump through $how, no setting, exits 0") or diag($err);
		is($err, '', "$kind, $how: no error") ;
		is($node->safe_psql($db, $counts), $n, "$kind, $how: every row restored ($n)");
		same_as($node, $db, \%orig, $digest, "$kind, plain SQL + $how");
	}

	# new rows continue the restored chains
	is($node->safe_psql('r0', q{SELECT count(*) FROM (SELECT tool_audit.log_call('after', '{}', '{}', 1, '{"tenant_id": "acme"}')) x;
	                            SELECT count(*) FROM tool_audit.verify()}), "1\n0",
		"$kind: a row recorded after the restore continues its chain");

	# pg_dumpall into a fresh cluster of the same kind
	my $copy = PostgreSQL::Test::Cluster->new($preload ? 'plain_pre_copy' : 'plain_copy');
	$copy->init;
	$copy->append_conf('postgresql.conf', "shared_preload_libraries = 'tool_audit'") if $preload;
	$copy->start;
	my ($rc, $err) = psql_file($copy, 'postgres', "$base/all.sql");
	my @errors = grep { /ERROR/ && !/role "[^"]+" already exists/ } split /\n/, $err;
	is("@errors", '', "$kind: pg_dumpall + psql, no setting: no error but the existing superuser role")
	  or diag($err);
	is($copy->safe_psql('postgres', $counts), $n, "$kind, pg_dumpall: every row restored ($n)");
	same_as($copy, 'postgres', \%orig, $digest, "$kind, pg_dumpall + psql");
	$copy->stop;
	return $node;
}

ordinary_commands(1)->stop;
my $node = ordinary_commands(0);
my $base = $node->basedir;
my $sql = slurp_file("$base/a.sql");
my $digest = $node->safe_psql('postgres', 'SELECT tool_audit.digest()');

# pg_dump --inserts: one INSERT per row, which psql commits one by one unless
# told otherwise; a table's restored rows must come in one transaction
{
	my %orig = map { $_ => $node->safe_psql('postgres', $same{$_}) } keys %same;
	$node->command_ok([ 'pg_dump', '--inserts', '-f', "$base/ins.sql", '-d', $node->connstr('postgres') ],
		'pg_dump --inserts');
	$node->safe_psql('postgres', 'CREATE DATABASE ins1; CREATE DATABASE ins0');
	my ($rc, $err) = psql_file($node, 'ins1', "$base/ins.sql", '-v', 'ON_ERROR_STOP=1', '--single-transaction');
	is($rc, 0, 'a dump of INSERTs through psql --single-transaction') or diag($err);
	same_as($node, 'ins1', \%orig, $digest, 'pg_dump --inserts + psql -1');
	($rc, $err) = psql_file($node, 'ins0', "$base/ins.sql", '-v', 'ON_ERROR_STOP=1');
	isnt($rc, 0, 'a dump of INSERTs through psql, a transaction per row: refused (documented)');
	like($err, qr/restored rows of tool_audit.admin_events refused: the table already holds rows/,
		'... at the second row of a table');
}

# ---- what must fail loudly ----

# the dump's COPY of tool_calls: its header and its rows, in dump order
my ($copy_head, $copy_rows) = $sql =~ /^(COPY tool_audit\.tool_calls \([^\n]*\) FROM stdin;\n)(.*?)^\\\.\n/ms
  or die 'no COPY of tool_calls in the dump';
my @rows = split /\n/, $copy_rows;
my @cols = $copy_head =~ /\(([^)]*)\)/ && split /, /, $1;
my %at = map { $cols[$_] => $_ } 0 .. $#cols;
sub field { my ($row, $col) = @_; return (split /\t/, $row, -1)[ $at{$col} ]; }
sub dump_with_rows
{
	my ($name, @new) = @_;
	my $text = $sql;
	my $body = join('', map { "$_\n" } @new);
	$text =~ s/^\Q$copy_head\E.*?^\\\.\n/$copy_head$body\\.\n/ms or die;
	my $file = "$base/$name.sql";
	open my $fh, '>', $file or die;
	print $fh $text;
	close $fh;
	return $file;
}

# a non-superuser: cannot create the extension, nor restore rows into it
$node->safe_psql('postgres', q{CREATE ROLE restorer LOGIN CREATEDB; GRANT tool_audit_writer TO restorer;
	CREATE DATABASE nosu OWNER restorer});
{
	local $ENV{PGUSER} = 'restorer';
	my ($rc, $err) = run_cmd('pg_restore', '--exit-on-error', '-d', $node->connstr('nosu'), "$base/a.dump");
	isnt($rc, 0, 'a non-superuser pg_restore fails');
	like($err, qr/must be member of role|permission denied/, '... with a privilege error');
}
is($node->safe_psql('nosu', q{SELECT count(*) FROM pg_extension WHERE extname = 'tool_audit'}), '0',
	'... and restores no audit table');
$node->safe_psql('postgres', 'CREATE DATABASE nosu_data');
$node->safe_psql('nosu_data', 'CREATE EXTENSION tool_audit');
my $copy_only = "$base/copy_only.sql";
{
	open my $fh, '>', $copy_only or die;
	print $fh "$copy_head$copy_rows\\.\n";
	close $fh;
	# row-level security refuses a non-owner's COPY FROM: the rows as INSERTs
	my $json = $node->safe_psql('postgres', 'SELECT jsonb_agg(t ORDER BY id) FROM tool_audit.tool_calls t');
	my $file = "$base/inserts.sql";
	open $fh, '>', $file or die;
	print $fh "INSERT INTO tool_audit.tool_calls SELECT * FROM jsonb_populate_recordset(NULL::tool_audit.tool_calls, \$j\$$json\$j\$);\n";
	close $fh;
	local $ENV{PGUSER} = 'restorer';
	my ($rc, $err) = psql_file($node, 'nosu_data', $file, '-v', 'ON_ERROR_STOP=1');
	isnt($rc, 0, "a non-superuser's INSERT of the dumped rows fails");
	like($err, qr/ids of tool_audit.tool_calls are assigned by tool_audit.*\n.*id \d+ and a chain position.*\n.*Only a superuser restores/,
		'... loudly: only a superuser restores the rows of a dump');
}
is($node->safe_psql('nosu_data', 'SELECT count(*) FROM tool_audit.tool_calls'), '0', '... and stores none');

# a row edited in the dump: refused as it comes
{
	my @edited = @rows;
	$edited[1] =~ s/\tverify_identity\t/\tverify_identitx\t/ or die;
	my $file = dump_with_rows('edited', @edited);
	$node->safe_psql('postgres', 'CREATE DATABASE edited');
	my ($rc, $err) = psql_file($node, 'edited', $file, '-v', 'ON_ERROR_STOP=1', '--single-transaction');
	isnt($rc, 0, 'a dump with an edited row: psql -1 -v ON_ERROR_STOP=1 fails');
	like($err, qr/restored row \d+ of tool_audit.tool_calls refused: its content does not match its row hash/,
		'... naming the row whose content does not match its hash');
	is($node->safe_psql('edited', q{SELECT count(*) FROM pg_extension WHERE extname = 'tool_audit'}), '0',
		'... and nothing is restored');

	# the same restore with psql's defaults: it goes on, exits 0, but the
	# trail it leaves is reported as emptied, never clean
	$node->safe_psql('postgres', 'CREATE DATABASE edited_on');
	($rc, $err) = psql_file($node, 'edited_on', $file);
	like($err, qr/its content does not match its row hash/, 'without ON_ERROR_STOP: the error is printed');
	# (the admin events the dump holds: since 1.5 the source has more, the
	# reads of the digests taken after it)
	my ($events_dumped) = $sql =~ /^COPY tool_audit\.admin_events \([^\n]*\) FROM stdin;\n(.*?)^\\\.\n/ms
	  or die 'no COPY of admin_events in the dump';
	is($node->safe_psql('edited_on', $counts), '0/' . scalar(() = $events_dumped =~ /\n/g),
		'... the tool_calls rows are refused, the admin_events rows restored');
	like($node->safe_psql('edited_on', q{SELECT table_name || ': ' || problem FROM tool_audit.verify()}),
		qr/^tool_calls: the table holds no rows but its id sequence has handed out ids up to \d+: the trail was emptied/,
		'... and verify() reports the emptied trail');
	isnt($node->safe_psql('edited_on', qq{SELECT count(*) FROM tool_audit.verify_digest('$digest')}), '0',
		'... as does verify_digest()');
}

# a row dropped from the dump (one in the middle of its lane): refused at commit
{
	my ($lane_of) = grep { field($rows[$_], 'tool_name') eq 'verify_identity' && field($rows[$_], 'chain_seq') == 2 } 0 .. $#rows;
	my @dropped = @rows;
	splice @dropped, $lane_of, 1;
	my $file = dump_with_rows('dropped', @dropped);
	$node->safe_psql('postgres', 'CREATE DATABASE dropped');
	my ($rc, $err) = psql_file($node, 'dropped', $file, '-v', 'ON_ERROR_STOP=1');
	isnt($rc, 0, 'a dump with a row dropped from the middle of a lane fails');
	like($err, qr/restored rows of tool_audit.tool_calls refused: a row is missing before this position\n.*position 2\./,
		'... naming the missing position');
	is($node->safe_psql('dropped', 'SELECT count(*) FROM tool_audit.tool_calls'), '0', '... and stores none of its rows');

	# the same gap where a purge left an anchor (tool_audit.purge_anchors,
	# restored before the rows): accepted, and only with the anchor's links
	my $anchor = q{SELECT format('INSERT INTO tool_audit.purge_anchors (purge_event_id, table_name, chain_id,'
		|| ' chain_lane, first_seq, last_seq, link_before, link_after, rows_removed)'
		|| ' VALUES (0, %L, %s, %s, 2, 2, %L, %L, 1);', 'tool_calls', a.chain_id, a.chain_lane, LINK_BEFORE, b.chain_hash)
		FROM tool_audit.tool_calls a JOIN tool_audit.tool_calls b USING (chain_id, chain_lane)
		WHERE a.tool_name = 'verify_identity' AND a.chain_seq = 1 AND b.chain_seq = 2};
	for my $case ([ 'a.chain_hash', 0, 'accepted' ], [ 'b.chain_hash', 1, 'refused: its link before is not the lane\'s' ])
	{
		my ($before, $fails, $what) = @$case;
		my $db = $fails ? 'anchored_bad' : 'anchored';
		my $file = "$base/$db.sql";
		open my $fh, '>', $file or die;
		print $fh $node->safe_psql('postgres', $anchor =~ s/LINK_BEFORE/$before/r), "\n", $copy_head,
		  join('', map { "$_\n" } @dropped), "\\.\n";
		close $fh;
		$node->safe_psql('postgres', "CREATE DATABASE $db");
		$node->safe_psql($db, 'CREATE EXTENSION tool_audit');
		($rc, $err) = psql_file($node, $db, $file, '-v', 'ON_ERROR_STOP=1', '--single-transaction');
		if ($fails)
		{
			like($err, qr/a row is missing before this position/, "a gap with a purge anchor whose links do not fit: $what");
		}
		else
		{
			is($rc, 0, "a gap covered by a purge anchor with its links: $what") or diag($err);
			is($node->safe_psql($db, 'SELECT count(*) FROM tool_audit.tool_calls'), scalar(@dropped),
				'... every row of the dump restored');
		}
	}

	# the last row of a lane dropped: the shorter lane restores, and only a
	# digest taken before can tell
	my ($last) = grep { field($rows[$_], 'tool_name') eq 'verify_identity' && field($rows[$_], 'chain_seq') == 5 } 0 .. $#rows;
	@dropped = @rows;
	splice @dropped, $last, 1;
	$file = dump_with_rows('dropped_last', @dropped);
	$node->safe_psql('postgres', 'CREATE DATABASE dropped_last');
	($rc, $err) = psql_file($node, 'dropped_last', $file, '-v', 'ON_ERROR_STOP=1');
	is($rc, 0, 'the last row of a lane dropped: the restore succeeds (documented)') or diag($err);
	is($node->safe_psql('dropped_last', 'SELECT count(*) FROM tool_audit.verify()'), '0',
		'... verify() alone cannot tell');
	like($node->safe_psql('dropped_last', qq{SELECT problem FROM tool_audit.verify_digest('$digest')}),
		qr/rows covered by the digest are missing: the lane ends at position 4, the digest covers position 5/,
		'... verify_digest() with the earlier digest reports it');
}

# rows restored into a table that holds rows: refused at commit
{
	$node->safe_psql('postgres', 'CREATE DATABASE busy');
	$node->safe_psql('busy', q{CREATE EXTENSION tool_audit;
		SELECT setval('tool_audit.tool_calls_id_seq', 1000);
		SELECT tool_audit.log_call('live', '{}', '{}', 1, '{"tenant_id": "other"}')});
	my ($rc, $err) = psql_file($node, 'busy', $copy_only, '-v', 'ON_ERROR_STOP=1');
	isnt($rc, 0, 'rows restored into a table that holds rows: refused');
	like($err, qr/restored rows of tool_audit.tool_calls refused: the table already holds rows/, '... saying why');
	is($node->safe_psql('busy', 'SELECT count(*) FROM tool_audit.tool_calls'), '1', '... and the table keeps its own row only');
}

# not a forging tool: a superuser's INSERT that brings its own hashes
{
	$node->safe_psql('postgres', 'CREATE DATABASE forge');
	$node->safe_psql('forge', q{CREATE EXTENSION tool_audit;
		SELECT tool_audit.log_call('real', '{}', '{}', 1, '{"tenant_id": "acme"}')});
	# a made-up row with its row hash and link computed by hand, appended to the lane
	my ($rc, $out, $err) = $node->psql('forge', q{
		INSERT INTO tool_audit.tool_calls (id, event_id, recorded_at, recorded_by, tenant_id, tool_name, success,
		                                   row_hash, chain_id, chain_lane, chain_seq, chain_hash)
		SELECT 99, gen_random_uuid(), '2020-01-01', 'app', 'acme', 'forged', true,
		       decode(repeat('00', 32), 'hex'), chain_id, chain_lane, chain_seq + 1, chain_hash FROM tool_audit.tool_calls});
	like($err, qr/restored row 99 of tool_audit.tool_calls refused: its content does not match its row hash/,
		'a made-up row whose hash does not fit it is refused');
	# the same, hashed and linked properly (the row hash and the link are
	# public functions): refused at commit, the table holds rows
	my $forge = q{
		CREATE TEMP TABLE f AS SELECT * FROM tool_audit.tool_calls;
		UPDATE f SET id = 99, event_id = gen_random_uuid(), recorded_at = '2020-01-01', tool_name = 'forged';
		UPDATE f SET row_hash = tool_audit.compute_row_hash(jsonb_populate_record(NULL::tool_audit.tool_calls, to_jsonb(f))), chain_lane = %d, chain_seq = %d;
		UPDATE f SET chain_hash = tool_audit.chain_link(chain_id, chain_lane, chain_seq, %s, row_hash);
		INSERT INTO tool_audit.tool_calls SELECT * FROM f;};
	($rc, $out, $err) = $node->psql('forge', sprintf($forge, 0, 2,
		'(SELECT chain_hash FROM tool_audit.tool_calls)'));
	like($err, qr/restored rows of tool_audit.tool_calls refused: the table already holds rows/,
		'a made-up row, hashed and linked properly, appended to a lane: refused at commit');
	($rc, $out, $err) = $node->psql('forge', sprintf($forge, 7, 1, q{decode(repeat('00', 32), 'hex')}));
	like($err, qr/the table already holds rows/, '... and as the first row of a new lane');
	is($node->safe_psql('forge', 'SELECT count(*) FROM tool_audit.tool_calls'), '1', '... neither is stored');
	is($node->safe_psql('forge', 'SELECT count(*) FROM tool_audit.verify()'), '0', '... and the trail verifies');
}

# a trail with an erased row restores: the row no longer hashes to the stored
# row hash its links keep, and verify() accepts it through its erasure entry
$node->safe_psql('postgres', 'CREATE DATABASE er');
$node->safe_psql('er', q{CREATE EXTENSION tool_audit;
	SELECT tool_audit.log_call('lookup', '{"a": 1}', '{}', 1, '{"tenant_id": "acme", "subject_id": "s-9"}');
	SELECT tool_audit.log_call('lookup', '{"a": 2}', '{}', 1, '{"tenant_id": "acme", "subject_id": "s-8"}');
	SELECT tool_audit.erase_subject('s-9', 'request', 'GDPR Art. 17(1)(a)');});
my $erbase = $node->basedir;
$node->command_ok([ 'pg_dump', '-Fc', '-f', "$erbase/er.dump", '-d', $node->connstr('er') ],
	'pg_dump -Fc of a trail with an erased row');
for my $opt ([ '--single-transaction' ], [])
{
	my $db = @$opt ? 'er1' : 'er0';
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	my ($rc, $err) = run_cmd('pg_restore', @$opt, '--exit-on-error', '-d', $node->connstr($db), "$erbase/er.dump");
	is($rc, 0, "pg_restore @$opt of a trail with an erased row: exit status 0") or diag $err;
	is($node->safe_psql($db, 'SELECT count(*) FROM tool_audit.tool_calls'), '2', '... every row restored');
	is($node->safe_psql($db, q{SELECT count(*) FROM tool_audit.tool_calls WHERE subject_id = 's-9'}), '0',
		'... the erased subject still cannot be found');
	is($node->safe_psql($db, 'SELECT count(*) FROM tool_audit.verify()'), '0', '... and verify() finds nothing');
}
# restored rows in a transaction that also erased (or purged) rows are refused:
# the commit check would take the erased rows for restored ones
my ($erc, $eout, $eerr) = $node->psql('er', q{BEGIN;
	SELECT tool_audit.erase_subject('s-8', 'request', 'GDPR Art. 17(1)(a)');
	INSERT INTO tool_audit.tool_calls
	SELECT (jsonb_populate_record(t, '{"id": 999}')).* FROM tool_audit.tool_calls t LIMIT 1;
	COMMIT;});
like($eerr, qr/refused: this transaction also purged or erased rows/,
	'a restored row in the transaction of an erasure is refused');
is($node->safe_psql('er', q{SELECT count(*) FROM tool_audit.erasures}), '1', '... and the erasure rolled back with it');

$node->stop;
done_testing();
