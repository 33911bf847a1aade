# A physical streaming replica carries the chains as they are: verify() and
# verify_digest() of a digest taken on the primary pass on the hot standby,
# and the standby's own digest equals the primary's heads.  (1.5) A standby
# cannot record reads of the audit trail: they are refused there (25006)
# until its operator sets tool_audit.unrecorded_standby_reads.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', "shared_preload_libraries = 'tool_audit'");
$primary->start;
$primary->safe_psql('postgres', 'CREATE EXTENSION tool_audit');
$primary->backup('base');

my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->start;

$primary->safe_psql('postgres', q{
	INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success, arguments)
	  SELECT 'call_' || g, 't' || (g % 3), true, jsonb_build_object('n', g, 'x', g * 0.5)
	    FROM generate_series(1, 200) g;
	SELECT tool_audit.log_event('prompt.update', 'admin', '{"v": 2}', '{"tenant_id": "t1"}');
});
my $digest = $primary->safe_psql('postgres', 'SELECT tool_audit.digest()');
$primary->wait_for_catchup($standby);

is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'the standby is in recovery');
is($standby->safe_psql('postgres', 'SELECT count(*) FROM tool_audit.tool_calls'), '200',
	'the rows reached the standby');

# (1.5) reads cannot be recorded on a standby: refused, unless its configuration says so
my ($ret, $out, $err) = $standby->psql('postgres', 'SELECT count(*) FROM tool_audit.verify()',
	extra_params => ['-v', 'VERBOSITY=verbose']);
isnt($ret, 0, 'verify() on the standby is refused without the setting');
like($err, qr/25006.*cannot record verify\(\)/s, 'with 25006, naming the function');
like($err, qr/unrecorded_standby_reads/, 'and the hint names the setting');
($ret, $out, $err) = $standby->psql('postgres', q{SELECT tool_audit.access_report('s', '-infinity', 'infinity')});
like($err, qr/cannot record access_report\(\)/, 'a report is refused there too');
$standby->append_conf('postgresql.conf', 'tool_audit.unrecorded_standby_reads = on');
$standby->reload;
is($standby->safe_psql('postgres', 'SELECT count(*) FROM tool_audit.verify()'), '0',
	'verify() on the standby finds nothing');
is($standby->safe_psql('postgres', qq{SELECT count(*) FROM tool_audit.verify_digest('$digest')}), '0',
	"verify_digest() on the standby accepts the primary's digest");
is($standby->safe_psql('postgres', q{SELECT tool_audit.digest()->'heads'}),
	$primary->safe_psql('postgres', q{SELECT tool_audit.digest()->'heads'}),
	"the standby's digest has the primary's heads");

# a digest claiming more than the standby has is still caught there
my $more = $primary->safe_psql('postgres', qq{
	SELECT jsonb_set('$digest', '{heads,0,position}',
	                 to_jsonb(('$digest'::jsonb->'heads'->0->>'position')::int + 1))});
like($standby->safe_psql('postgres', qq{SELECT string_agg(problem, ',') FROM tool_audit.verify_digest('$more')}),
	qr/rows covered by the digest are missing/, 'a missing row is reported on the standby too');

$standby->stop;
$primary->stop;
done_testing();
