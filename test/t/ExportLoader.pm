# A loader's copy of export_since() pages, shared by the export TAP tests
# (024, 048): rows [line, cursor], the cursor '' on every row but a page's
# last (export_since() gives the cursor after the page on its last row only).
package ExportLoader;

use strict;
use warnings;
use Exporter 'import';
use JSON::PP;

our @EXPORT_OK = qw(page_sql store_page cursor_after);

# The statement that fetches a page of $max_rows after $cursor, one row a
# line: the line, a tab, the cursor or nothing.
sub page_sql
{
	my ($cursor, $max_rows) = @_;
	return "SELECT line::text || E'\\t' || coalesce(next_cursor::text, '') "
	  . "FROM tool_audit.export_since(\$c\$$cursor\$c\$, $max_rows)";
}

# Appends the rows psql printed for page_sql() to @$copy; the number of rows.
sub store_page
{
	my ($copy, $out) = @_;
	my @rows = grep { length } split /\n/, $out;
	push @$copy, [ split /\t/, $_, -1 ] for @rows;
	return scalar @rows;
}

# The cursor after the last row of @$copy, as a loader that kept only part of
# a page works it out: the cursor of the last whole page it kept, each later
# line's lane moved to that line's position ("table", "chain_id",
# "chain_lane", "chain_seq" of the line).  '{}' for an empty copy.
sub cursor_after
{
	my ($copy) = @_;
	my $i = $#$copy;
	$i-- while $i >= 0 && $copy->[$i][1] eq '';
	my $c = decode_json($i >= 0 ? $copy->[$i][1] : '{}');
	for my $r (@$copy[ $i + 1 .. $#$copy ])
	{
		my $l = decode_json($r->[0]);
		$c->{ $l->{table} }{"$l->{chain_id}:$l->{chain_lane}"} = $l->{chain_seq};
	}
	return JSON::PP->new->canonical->encode($c);
}

1;
