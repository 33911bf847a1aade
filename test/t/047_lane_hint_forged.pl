# A wrong lane head hint costs one failed insert, not every later one
# (src/lane_hint.c, preloaded).  A superuser who writes a row after a lane's
# head with the insert trigger disabled makes the next taker's write collide
# in the chain position index, when that taker got the head from a hint.
# The writer's transaction rolls back; the lane must then be given back
# without a hint, so that the next taker reads the head from the index and
# chains after the forged row.  (Before the fix, the abort put the same
# wrong head back and every writer of the tenant failed until something
# moved the hint epoch.)
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('lane_hint_forged');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tool_audit'
tool_audit.record_role_changes = off
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION tool_audit');

# A session writing round robin for 40 tenants gives every lane back at
# each commit (chain.c, "Nor does a session keep lanes"), leaving its head
# as a hint: first for tenants hf_t0 .. hf_t39, later for others, before one
# more write for tenant hf_t1.
my $proc = q{
CREATE PROCEDURE pg_temp.w(prefix text, n int) LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. n LOOP
        INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
            VALUES ('spread', prefix || (i % 40), true);
        COMMIT;
    END LOOP;
END $$;
};
my $spread = $proc . q{CALL pg_temp.w('hf_s', 80);};
my $one = q{INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
            VALUES ('after', 'hf_t1', true);};

$node->safe_psql('postgres', $proc . q{CALL pg_temp.w('hf_t', 81);});
my $head = $node->safe_psql('postgres',
	q{SELECT max(chain_seq) FROM tool_audit.tool_calls WHERE tenant_id = 'hf_t1' AND chain_lane = 0});
ok($head > 0, "tenant hf_t1 has lane 0 up to $head");

# the forged row, one past the head, written by a new session (the trigger
# disabled in the catalog, which a session's relation cache sees when built)
$node->safe_psql('postgres', q{
	UPDATE pg_trigger SET tgenabled = 'D' WHERE tgname = 'tool_calls_before_insert'});
$node->safe_psql('postgres', q{
	INSERT INTO tool_audit.tool_calls (id, event_id, tenant_id, tool_name, recorded_by, success,
	                                   row_hash, chain_id, chain_lane, chain_seq, chain_hash)
	SELECT 999999, gen_random_uuid(), 'hf_t1', 'forged', 'x', true, decode(repeat('00', 32), 'hex'),
	       chain_id, chain_lane, max(chain_seq) + 1, decode(repeat('00', 32), 'hex')
	  FROM tool_audit.tool_calls WHERE tenant_id = 'hf_t1' AND chain_lane = 0
	 GROUP BY chain_id, chain_lane});
$node->safe_psql('postgres', q{
	UPDATE pg_trigger SET tgenabled = 'A' WHERE tgname = 'tool_calls_before_insert'});

# three sessions, each giving lanes back, then writing for hf_t1
my @failed;
for my $s (1 .. 3)
{
	my ($out, $err) = ('', '');
	$node->psql('postgres', $spread . $one, stdout => \$out, stderr => \$err);
	push @failed, $s if $err =~ /tool_calls_chain_position/;
	note "session $s: $err" if $err ne '';
}
ok(@failed <= 1, 'at most one write collides with the forged row (failed: ' . join(',', @failed) . ')');
is($node->safe_psql('postgres', q{
	SELECT string_agg(tool_name || ':' || (chain_seq - } . $head . q{), ' ' ORDER BY chain_seq)
	  FROM tool_audit.tool_calls WHERE tenant_id = 'hf_t1' AND chain_lane = 0 AND chain_seq > } . $head),
	@failed == 1 ? 'forged:1 after:2 after:3' : 'forged:1 after:2 after:3 after:4',
	'the later writes chain after the forged row');

$node->stop;
done_testing();
