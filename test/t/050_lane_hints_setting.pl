# tool_audit.lane_hints (src/lane_hint.c): the number of slots for the heads
# of lanes given back, fixed at server start.  Whether a write took its
# lane's head from a hint shows in one case only, and this test makes it:
# a superuser forges a row after the head of a lane with the trigger
# disabled, so that a write that trusts a hint collides in the chain
# position index, and a write that reads the head from the index chains
# after the forged row.
# A wrong hint must cost one failed insert, not every later one: the
# writer's transaction rolls back, and the lane must then be given back
# without a hint, so that the next taker reads the head from the index and
# chains after the forged row.  (Before that fix, the abort put the same
# wrong head back and every writer of the tenant failed until something
# moved the hint epoch.)
#  - default (131,072 slots): the lane's hint survives writes for 40 other
#    tenants, and the first write after the forgery fails;
#  - 1 slot (one set of 4): those writes put their hints into that set, so the
#    lane's hint is replaced, and no write fails;
#  - 0: no hints, no write fails.
# Each case then checks that the lane goes on after the forged row with no
# hole, and that verify() finds nothing but the forged row.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

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
my $one = q{INSERT INTO tool_audit.tool_calls (tool_name, tenant_id, success)
            VALUES ('after', 'hs_t1', true);};

sub run_case
{
	my ($name, $setting, $expect_failed) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tool_audit'
tool_audit.record_role_changes = off
} . (defined $setting ? "tool_audit.lane_hints = $setting\n" : ''));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION tool_audit');
	is($node->safe_psql('postgres',
			q{SELECT setting || ' ' || context FROM pg_settings WHERE name = 'tool_audit.lane_hints'}),
		(defined $setting ? $setting : '131072') . ' postmaster', "$name: the setting, fixed at start");

	# lanes given back at each commit, hs_t1's last (81 % 40 = 1)
	$node->safe_psql('postgres', $proc . q{CALL pg_temp.w('hs_t', 81);});
	my $head = $node->safe_psql('postgres',
		q{SELECT max(chain_seq) FROM tool_audit.tool_calls WHERE tenant_id = 'hs_t1' AND chain_lane = 0});
	$node->safe_psql('postgres', q{
		UPDATE pg_trigger SET tgenabled = 'D' WHERE tgname = 'tool_calls_before_insert'});
	$node->safe_psql('postgres', q{
		INSERT INTO tool_audit.tool_calls (id, event_id, tenant_id, tool_name, recorded_by, success,
		                                   row_hash, chain_id, chain_lane, chain_seq, chain_hash)
		SELECT 999999, gen_random_uuid(), 'hs_t1', 'forged', 'x', true, decode(repeat('00', 32), 'hex'),
		       chain_id, chain_lane, max(chain_seq) + 1, decode(repeat('00', 32), 'hex')
		  FROM tool_audit.tool_calls WHERE tenant_id = 'hs_t1' AND chain_lane = 0
		 GROUP BY chain_id, chain_lane});
	$node->safe_psql('postgres', q{
		UPDATE pg_trigger SET tgenabled = 'A' WHERE tgname = 'tool_calls_before_insert'});

	# three sessions, each writing for 40 other tenants, then for hs_t1
	my $failed = 0;
	for my $s (1 .. 3)
	{
		my ($out, $err) = ('', '');
		$node->psql('postgres', $proc . q{CALL pg_temp.w('hs_s', 80);} . $one,
			stdout => \$out, stderr => \$err);
		$failed++ if $err =~ /tool_calls_chain_position/;
		note "$name, session $s: $err" if $err ne '';
	}
	is($failed, $expect_failed, "$name: writes that trusted a hint and collided with the forged row");
	is($node->safe_psql('postgres', q{
		SELECT string_agg(tool_name || ':' || (chain_seq - } . $head . q{), ' ' ORDER BY chain_seq)
		  FROM tool_audit.tool_calls WHERE tenant_id = 'hs_t1' AND chain_lane = 0 AND chain_seq > } . $head),
		$expect_failed ? 'forged:1 after:2 after:3' : 'forged:1 after:2 after:3 after:4',
		"$name: the later writes chain after the forged row");
	is($node->safe_psql('postgres', q{
		SELECT count(*) FROM tool_audit.verify() v
		 WHERE v.table_name = 'tool_calls' AND v.row_id IS DISTINCT FROM 999999}),
		'0', "$name: verify() finds nothing but the forged row");
	$node->stop;
}

run_case('hints_default', undef, 1);
run_case('hints_one_slot', 1, 0);
run_case('hints_off', 0, 0);

done_testing();
