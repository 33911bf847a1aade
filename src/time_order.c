/*-------------------------------------------------------------------------
 *
 * time_order.c
 *		Time only moves forward along a lane.
 *
 * A row's time of recording (recorded_at, occurred_at) is the server's
 * clock when the insert trigger ran (insert.c), and a lane has one writer
 * at a time, whose rows are in its commit order (chain.c): along a lane the
 * times never go back, give or take a step of the server's clock.  A row
 * that claims a time earlier than a row before it in its lane was written
 * with a time it did not get from the clock: a superuser's INSERT with
 * tool_audit.restoring = on that brings its id and time, or the test clock
 * of a test database (retention.c).  verify() reports it (walk_table()):
 * rows "recorded in 2020" chained after rows of 2026 would otherwise count
 * in a report of 2020.
 *
 * The rows a digest does not cover were committed after it was taken; they
 * cannot claim a time before it, except those of a transaction that was
 * open while the digest was taken.  verify_digest() reports the others: a
 * back-dated row in a lane of its own (a lane, or a chain, the digest does
 * not know) has no earlier row to be compared with, but cannot hide from
 * a digest taken before it was written.
 *
 * Both checks allow tool_audit.time_tolerance (a minute by default): a step
 * back of the server's clock (NTP, a virtual machine resumed), the moment
 * between a row's time and the lane it takes, and audit-writing
 * transactions open across a digest.  Back-dating by less than that is not
 * detected.  The external verifier (verifier/timeorder.c) makes the same
 * checks with a tolerance of its own, never the server's setting.
 *
 * Rows restored from a dump of 1.4 on bring their place and their time: the
 * order they had is kept.  A purged span is crossed keeping the latest time
 * before it (the rows after it are later still).  An erasure changes no
 * time.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "utils/datetime.h"
#include "utils/guc.h"

#include "digest.h"
#include "time_order.h"

int			ta_time_tolerance = 60;

/* at + tolerance < limit, without overflow */
static bool
earlier_beyond_tolerance(TimestampTz at, TimestampTz limit)
{
	int64		tol = (int64) ta_time_tolerance * USECS_PER_SEC;

	if (at >= limit)
		return false;
	/* limit - at > tol, computed without overflow */
	if (at < 0 && limit > PG_INT64_MAX + at)
		return true;
	return limit - at > tol;
}

char *
ta_time_order_problem(TimestampTz at, TimestampTz latest, int64 latest_seq)
{
	if (!earlier_beyond_tolerance(at, latest))
		return NULL;
	return psprintf("time goes back along the lane: row recorded at %s, before the row at position "
					INT64_FORMAT " (%s), by more than tool_audit.time_tolerance: a back-dated row, "
					"or the server's clock was set back",
					ta_digest_time_text(at), latest_seq, ta_digest_time_text(latest));
}

char *
ta_time_uncovered_problem(TimestampTz at, TimestampTz taken_at, bool lane_in_digest)
{
	if (!earlier_beyond_tolerance(at, taken_at))
		return NULL;
	return psprintf("row recorded at %s, before the digest was taken (%s), but not covered by it "
					"(%s): added since the digest with an earlier time, "
					"or written by a transaction open longer than tool_audit.time_tolerance when the digest was taken",
					ta_digest_time_text(at), ta_digest_time_text(taken_at),
					lane_in_digest ? "after the digest's head of its lane" : "a lane the digest does not know");
}

void
ta_time_order_init(void)
{
	DefineCustomIntVariable("tool_audit.time_tolerance",
							"How far back of earlier rows of its lane, or of a digest not covering it, a row's time may be before verify() and verify_digest() report it.",
							"Allows for steps back of the server's clock and for audit-writing transactions open across a digest.",
							&ta_time_tolerance,
							60, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
}
