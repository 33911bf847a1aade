/*-------------------------------------------------------------------------
 *
 * timeorder.c
 *	  Time only moves forward along a lane: the external verifier's side
 *	  of the extension's src/time_order.c.
 *
 * Each row's time of recording (recorded_at; occurred_at for admin_events)
 * must not be earlier than the latest time of the rows before it in its
 * lane, and a row a digest does not cover (after the digest's head of its
 * lane, or in a lane the digest does not know) must not claim a time
 * before the digest's "taken_at".  Both allow a tolerance (--time-tolerance,
 * 60 seconds by default, the extension's default; never read from the
 * server): steps back of the server's clock, and audit-writing transactions
 * open while the digest was taken.
 *
 * Times are microseconds since 2000-01-01 00:00:00 UTC, as PostgreSQL's
 * binary timestamptz.
 *
 * verifier/timeorder.c
 *
 *-------------------------------------------------------------------------
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "verify.h"

#define USECS_PER_DAY	INT64_C(86400000000)
#define USECS_PER_SEC	INT64_C(1000000)
#define DAYS_1970_2000	INT64_C(10957)

int64_t		time_tolerance_usec = 60 * USECS_PER_SEC;

/* days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm) */
static int64_t
days_from_civil(int64_t y, int64_t m, int64_t d)
{
	int64_t		era,
				yoe,
				doy,
				doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static void
civil_from_days(int64_t z, int64_t *y, int64_t *m, int64_t *d)
{
	int64_t		era,
				doe,
				yoe,
				doy,
				mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp + (mp < 10 ? 3 : -9);
	*y = yoe + era * 400 + (*m <= 2);
}

static int64_t
digits(const char *s, int n)
{
	int64_t		v = 0;

	for (int i = 0; i < n; i++)
		v = v * 10 + (s[i] - '0');
	return v;
}

/*
 * A digest's "taken_at": YYYY-MM-DDTHH:MM:SS.ffffffZ, as tool_audit.digest()
 * writes it.  False for anything else.
 */
bool
parse_digest_time(const char *s, size_t len, int64_t *out)
{
	static const char shape[] = "dddd-dd-ddTdd:dd:dd.ddddddZ";
	int64_t		mo,
				d,
				h,
				mi,
				se;

	if (len != sizeof(shape) - 1)
		return false;
	for (size_t i = 0; i < len; i++)
		if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i])
			return false;
	mo = digits(s + 5, 2);
	d = digits(s + 8, 2);
	h = digits(s + 11, 2);
	mi = digits(s + 14, 2);
	se = digits(s + 17, 2);
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
		return false;
	*out = (days_from_civil(digits(s, 4), mo, d) - DAYS_1970_2000) * USECS_PER_DAY +
		((h * 60 + mi) * 60 + se) * USECS_PER_SEC + digits(s + 20, 6);
	return true;
}

static void
format_time(int64_t t, char out[64])
{
	int64_t		days,
				rem,
				y,
				m,
				d;

	if (t == INT64_MAX || t == INT64_MIN)
	{
		snprintf(out, 64, "%s", t == INT64_MAX ? "infinity" : "-infinity");
		return;
	}
	days = t / USECS_PER_DAY;
	rem = t % USECS_PER_DAY;
	if (rem < 0)
	{
		rem += USECS_PER_DAY;
		days--;
	}
	civil_from_days(days + DAYS_1970_2000, &y, &m, &d);
	snprintf(out, 64, "%04" PRId64 "-%02" PRId64 "-%02" PRId64 "T%02" PRId64 ":%02" PRId64 ":%02" PRId64 ".%06" PRId64 "Z",
			 y, m, d, rem / (3600 * USECS_PER_SEC), rem / (60 * USECS_PER_SEC) % 60,
			 rem / USECS_PER_SEC % 60, rem % USECS_PER_SEC);
}

/* at earlier than limit by more than the tolerance, without overflow */
static bool
too_early(int64_t at, int64_t limit)
{
	if (at >= limit)
		return false;
	if (at < 0 && limit > INT64_MAX + at)
		return true;
	return limit - at > time_tolerance_usec;
}

bool
time_check_row(const char *table, int64_t chain, int64_t lane, int64_t seq,
			   const char *row_id, const char *tenant, size_t tenant_len,
			   LaneTime *lt, int64_t at,
			   const Digest *digest, int64_t head_position)
{
	char		what[400];
	char		a[64],
				b[64];
	bool		go_on = true;

	if (lt->has && too_early(at, lt->latest))
	{
		format_time(at, a);
		format_time(lt->latest, b);
		snprintf(what, sizeof(what),
				 "time goes back along the lane: row recorded at %s, before the row at position %" PRId64 " (%s)",
				 a, lt->latest_seq, b);
		go_on = report_problem(table, chain, lane, seq, row_id, what);
	}
	if (go_on && digest->has_taken_at && seq > head_position &&
		too_early(at, digest->taken_at) &&
		(!digest->tenant_scoped || digest_names_tenant(digest, tenant, tenant_len)))
	{
		format_time(at, a);
		format_time(digest->taken_at, b);
		snprintf(what, sizeof(what),
				 "row recorded at %s, before the digest was taken (%s), but not covered by it (%s)",
				 a, b, head_position < 0 ? "a lane the digest does not know" :
				 "after the digest's head of its lane");
		go_on = report_problem(table, chain, lane, seq, row_id, what);
	}
	if (!lt->has || at > lt->latest)
	{
		lt->has = true;
		lt->latest = at;
		lt->latest_seq = seq;
	}
	return go_on;
}
