# Statements sent to a background psql session (PostgreSQL::Test::Cluster's
# background_psql) without waiting for them, so that a test can hold one
# session blocked while others go on (the lane TAP tests 007, 048, 049).
# BackgroundPsql's query() would wait, and note every query and its output.
package Sessions;

use strict;
use warnings;
use Exporter 'import';
use Test::More;

our @EXPORT_OK = qw(send_sql wait_sent sq);

my $tagn = 0;

# Send $sql to session $s without waiting for it (it may block); returns the
# tag that wait_sent() waits for.
sub send_sql
{
	my ($s, $sql) = @_;
	my $tag = 'TA_DONE_' . ++$tagn;
	$s->{stderr} = '';
	$s->{stdin} .= "$sql\n;\n\\echo $tag\n\\warn $tag\n";
	# IPC::Run takes from stdin what it wrote to psql
	$s->{run}->pump_nb while length($s->{stdin}) && !$s->{timeout}->is_expired;
	return $tag;
}

# Wait until $s has run what send_sql() sent with $tag; returns what it
# printed on stdout, and leaves what it printed on stderr in $s->{stderr}.
# $s->{ta_name} names the session when it times out.
sub wait_sent
{
	my ($s, $tag) = @_;
	$s->{run}->pump
	  until ($s->{stdout} =~ /$tag\n/ && $s->{stderr} =~ /$tag\n/)
	  || $s->{timeout}->is_expired;
	die "$s->{ta_name}: timed out waiting for $tag" if $s->{timeout}->is_expired;
	my $out = $s->{stdout};
	$s->{stdout} = '';
	$out =~ s/\n?$tag\n//;
	$s->{stderr} =~ s/$tag\n//;
	return $out;
}

# Run $sql in session $s and return its output; a step that printed anything
# on stderr (an error, a warning) fails a test named after it.
sub sq
{
	my ($s, $sql) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $out = wait_sent($s, send_sql($s, $sql));
	if ($s->{stderr} ne '')
	{
		fail("$s->{ta_name}: " . (length($sql) > 300 ? substr($sql, 0, 300) . '...' : $sql));
		diag("stderr: $s->{stderr}");
	}
	return $out;
}

1;
