/*-------------------------------------------------------------------------
 *
 * retention.c
 *		The retention a new audit row gets when it is written: the policy
 *		that covers its tool name (tool_calls), event type (admin_events)
 *		or tracked table (data_changes, 1.5),
 *		and its expiry, the longest of the policy's days, the tenant's
 *		contract override and the floor, counted from its time.  And the
 *		test clock, which makes rows born old in a test database.
 *
 * The decision is the one the SQL functions retention_policy_for() and
 * current_retention_days() make (sql/install/45_retention.sql), over a
 * per-backend copy of the three tables:
 *	- a policy whose names list the name, else the policy with the longest
 *	  (in characters) matching pattern ('*' stands for any characters, all
 *	  else is literal), else the table's default policy; ties go to the
 *	  first policy name in the database's collation (the policies are read
 *	  in that order, and the first of equals wins);
 *	- days = greatest(floor, policy's days, tenant's override), NULLs
 *	  ignored; expires_at = time + days * 86400 s, exactly (so the expiry
 *	  does not depend on the session's TimeZone).
 * test/sql/retention_policies.sql compares the two over many names.
 *
 * The copy is read through SPI as the tables' owner (the writing roles
 * cannot read them) under a fresh snapshot, and dropped on a relcache
 * invalidation of any of the three tables: their statement triggers call
 * rules_changed(), as the sanitizing rules' do (ta_cache_get(), catalog.c),
 * so every backend sees a committed change at its next insert, and this
 * backend at its next command.  A reload frees the previous copy: callers
 * copy what they keep.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_db_role_setting.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "catalog.h"
#include "retention.h"

/* ---- the copy of the policies, overrides and floor ---- */

typedef struct Match
{
	const char *text;
	int			len;			/* bytes */
	int			chars;			/* characters, as length() counts them */
	bool		pattern;		/* has a '*' */
} Match;

typedef struct Policy
{
	const char *name;
	int			namelen;
	int			table;			/* applies_to: its index in ta_audit_tables */
	bool		is_default;
	int32		days;
	int			nmatches;
	Match	   *matches;
} Policy;

typedef struct Override
{
	const char *policy;
	const char *tenant;
	int			tenantlen;
	int32		days;
} Override;

typedef struct Retention
{
	int			npolicies;
	Policy	   *policies;		/* in policy_name order (the database's) */
	int			noverrides;
	Override   *overrides;		/* in (policy, tenant) bytewise order */
	bool		has_floor;
	int32		floor_days;
} Retention;

static TaCache retention_cache =
{.tables = {"retention_policies", "retention_overrides", "retention_floor"}};

/* the last decision, for the next row of the same tool and tenant */
static struct
{
	uint64		loads;			/* of the copy it was made with; 0: none */
	int			table;
	char	   *name;			/* NULL: a NULL name */
	int			namelen;
	const Policy *policy;
	bool		days_known;		/* days, has_days are for this tenant */
	char	   *tenant;			/* NULL: a NULL tenant */
	int			tenantlen;
	int32		days;
	bool		has_days;
}			memo;

static int
char_length(const char *s, int len)
{
	return pg_mbstrlen_with_len(s, len);
}

/* applies_to as an index in ta_audit_tables (-1: none, covers no row) */
static int
table_of(const char *applies_to)
{
	for (int i = 0; i < TA_NAUDIT_TABLES; i++)
		if (strcmp(applies_to, ta_audit_tables[i]) == 0)
			return i;
	return -1;
}

static void
load_policies(Retention *r, Oid owner, MemoryContext cxt)
{
	MemoryContext spicxt;

	/* ORDER BY in the column's collation: the SQL function's tie-break */
	ta_spi_exec_as_owner(owner,
						 "SELECT policy_name, applies_to, is_default,"
						 "       retention_days, matches"
						 "  FROM tool_audit.retention_policies"
						 " ORDER BY policy_name",
						 0, NULL, NULL, NULL, true);
	spicxt = MemoryContextSwitchTo(cxt);
	r->policies = palloc0(sizeof(Policy) * (SPI_processed + 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Policy	   *p = &r->policies[r->npolicies++];
		bool		isnull;
		Datum	   *elems;
		bool	   *elem_nulls;
		int			nelems;

		p->name = ta_cache_text(SPI_getbinval(tup, desc, 1, &isnull), &p->namelen);
		p->table = table_of(TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull)));
		p->is_default = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
		p->days = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
		deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(tup, desc, 5, &isnull)),
						  TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &elem_nulls, &nelems);
		p->matches = palloc0(sizeof(Match) * (nelems + 1));
		for (int j = 0; j < nelems; j++)
		{
			Match	   *m;

			if (elem_nulls[j])	/* matches nothing, in SQL too */
				continue;
			m = &p->matches[p->nmatches++];
			m->text = ta_cache_text(elems[j], &m->len);
			m->chars = char_length(m->text, m->len);
			m->pattern = memchr(m->text, '*', m->len) != NULL;
		}
	}
	MemoryContextSwitchTo(spicxt);
}

static void
load_overrides(Retention *r, Oid owner, MemoryContext cxt)
{
	MemoryContext spicxt;

	ta_spi_exec_as_owner(owner,
						 "SELECT policy_name, tenant_id, retention_days"
						 "  FROM tool_audit.retention_overrides"
						 " ORDER BY policy_name COLLATE \"C\", tenant_id COLLATE \"C\"",
						 0, NULL, NULL, NULL, true);
	spicxt = MemoryContextSwitchTo(cxt);
	r->overrides = palloc0(sizeof(Override) * (SPI_processed + 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Override   *o = &r->overrides[r->noverrides++];
		bool		isnull;
		int			len;

		o->policy = ta_cache_text(SPI_getbinval(tup, desc, 1, &isnull), &len);
		o->tenant = ta_cache_text(SPI_getbinval(tup, desc, 2, &isnull), &o->tenantlen);
		o->days = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
	}
	MemoryContextSwitchTo(spicxt);
}

static void
load_floor(Retention *r, Oid owner)
{
	ta_spi_exec_as_owner(owner, "SELECT floor_days FROM tool_audit.retention_floor",
						 0, NULL, NULL, NULL, true);
	if (SPI_processed > 0)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		r->has_floor = !isnull;
		r->floor_days = isnull ? 0 : DatumGetInt32(d);
	}
}

/* ta_cache_get()'s fill */
static void *
fill_retention(MemoryContext cxt, Oid owner)
{
	Retention  *r = MemoryContextAllocZero(cxt, sizeof(Retention));

	load_policies(r, owner, cxt);
	load_overrides(r, owner, cxt);
	load_floor(r, owner);
	return r;
}

/* ---- the decision ---- */

/* Does name match the pattern, '*' standing for any characters? */
bool
ta_glob_match(const char *p, int plen, const char *s, int slen)
{
	int			pi = 0,
				si = 0,
				star = -1,
				mark = 0;

	/* bytewise: with only literals and '*', the same as LIKE on characters */
	while (si < slen)
	{
		if (pi < plen && p[pi] == '*')
		{
			star = pi++;
			mark = si;
		}
		else if (pi < plen && p[pi] == s[si])
		{
			pi++;
			si++;
		}
		else if (star >= 0)
		{
			pi = star + 1;
			si = ++mark;
		}
		else
			return false;
	}
	while (pi < plen && p[pi] == '*')
		pi++;
	return pi == plen;
}

static const Policy *
resolve_policy(const Retention *r, int table, const char *name, int namelen)
{
	const Policy *best = NULL;
	int			best_rank = 0;
	int			best_chars = -1;

	for (int i = 0; i < r->npolicies; i++)
	{
		const Policy *p = &r->policies[i];
		bool		listed = false;
		int			chars = -1; /* the longest matching pattern; -1: none */
		int			rank;

		if (p->table != table)
			continue;
		for (int j = 0; name != NULL && j < p->nmatches; j++)
		{
			const Match *m = &p->matches[j];

			if (m->len == namelen && memcmp(m->text, name, namelen) == 0)
				listed = true;
			if (m->pattern && m->chars > chars &&
				ta_glob_match(m->text, m->len, name, namelen))
				chars = m->chars;
		}
		rank = listed ? 3 : chars >= 0 ? 2 : p->is_default ? 1 : 0;

		/*
		 * ORDER BY rank DESC, plen DESC NULLS LAST, policy_name: strictly
		 * better only, so the first in name order wins a tie
		 */
		if (rank > best_rank || (rank == best_rank && rank > 0 && chars > best_chars))
		{
			best = p;
			best_rank = rank;
			best_chars = chars;
		}
	}
	return best;
}

static int
override_cmp(const char *policy, const char *tenant, int tenantlen, const Override *o)
{
	int			c = strcmp(policy, o->policy);

	if (c != 0)
		return c;
	c = memcmp(tenant, o->tenant, Min(tenantlen, o->tenantlen));
	return c != 0 ? c : tenantlen - o->tenantlen;
}

static int32
retention_days(const Retention *r, const Policy *p, const char *tenant, int tenantlen,
			   bool *has_days)
{
	int32		days = r->floor_days;

	*has_days = r->has_floor;
	if (p == NULL)
		return days;
	if (!*has_days || p->days > days)
		days = p->days;
	*has_days = true;
	if (tenant != NULL && r->noverrides > 0)
	{
		int			lo = 0,
					hi = r->noverrides - 1;

		while (lo <= hi)
		{
			int			mid = (lo + hi) / 2;
			int			c = override_cmp(p->name, tenant, tenantlen, &r->overrides[mid]);

			if (c == 0)
			{
				days = Max(days, r->overrides[mid].days);
				break;
			}
			if (c < 0)
				hi = mid - 1;
			else
				lo = mid + 1;
		}
	}
	return days;
}

static void
memo_set(char **field, int *fieldlen, const char *s, int len)
{
	if (*field != NULL)
		pfree(*field);
	*field = s == NULL ? NULL : MemoryContextAlloc(TopMemoryContext, len + 1);
	if (s != NULL)
		memcpy(*field, s, len);
	*fieldlen = len;
}

static bool
memo_same(const char *field, int fieldlen, const char *s, int len)
{
	if (field == NULL || s == NULL)
		return field == NULL && s == NULL;
	return fieldlen == len && memcmp(field, s, len) == 0;
}

void
ta_retention_decide(bool admin_events, const char *name, int namelen,
					const char *tenant, int tenantlen, bool tenant_null,
					const char **policy, int *policylen, int32 *days)
{
	ta_retention_decide_for(admin_events ? "admin_events" : "tool_calls", name, namelen,
							tenant, tenantlen, tenant_null, policy, policylen, days);
}

void
ta_retention_decide_for(const char *table_name, const char *name, int namelen,
						const char *tenant, int tenantlen, bool tenant_null,
						const char **policy, int *policylen, int32 *days)
{
	const Retention *r = ta_cache_get(&retention_cache, fill_retention);
	int			table = table_of(table_name);

	if (memo.loads != retention_cache.loads || memo.table != table ||
		!memo_same(memo.name, memo.namelen, name, namelen))
	{
		memo.policy = resolve_policy(r, table, name, namelen);
		memo.table = table;
		memo_set(&memo.name, &memo.namelen, name, namelen);
		memo.loads = retention_cache.loads;
		memo.days_known = false;
	}
	if (tenant_null)
		tenant = NULL;
	if (!memo.days_known || !memo_same(memo.tenant, memo.tenantlen, tenant, tenantlen))
	{
		memo.days = retention_days(r, memo.policy, tenant, tenantlen, &memo.has_days);
		memo_set(&memo.tenant, &memo.tenantlen, tenant, tenantlen);
		memo.days_known = true;
	}
	*policy = memo.policy ? memo.policy->name : NULL;
	*policylen = memo.policy ? memo.policy->namelen : 0;
	*days = memo.has_days ? memo.days : -1;
}

/*
 * at + days whole days of 86400 s; infinity when that is past the last
 * timestamp PostgreSQL can store.
 */
TimestampTz
ta_expiry(TimestampTz at, int32 days)
{
	int64		span;
	TimestampTz result;

	if (TIMESTAMP_NOT_FINITE(at))
		return at;
	if (pg_mul_s64_overflow((int64) days, USECS_PER_DAY, &span) ||
		pg_add_s64_overflow(at, span, &result) || !IS_VALID_TIMESTAMP(result))
		return DT_NOEND;
	return result;
}

/* ---- the test clock ---- */

bool		ta_test_clock_set = false;
static Interval test_clock_offset;
static char *test_clock_offset_text = NULL;
static bool test_database = false;

/*
 * An interval, parsed without raising an error (a GUC check hook must not):
 * the decoding steps of interval_in, which return a status instead.
 */
static bool
parse_interval(const char *str, Interval *out)
{
	char		workbuf[256];
	char	   *field[MAXDATEFIELDS];
	int			ftype[MAXDATEFIELDS];
	int			nf;
	int			dtype;
	struct pg_itm_in itm;

	if (ParseDateTime(str, workbuf, sizeof(workbuf), field, ftype, MAXDATEFIELDS, &nf) != 0)
		return false;
	if (DecodeInterval(field, ftype, nf, INTERVAL_FULL_RANGE, &dtype, &itm) != 0 &&
		DecodeISO8601Interval((char *) str, &dtype, &itm) != 0)
		return false;
	return dtype == DTK_DELTA && itmin2interval(&itm, out) == 0;
}

static bool
check_test_clock_offset(char **newval, void **extra, GucSource source)
{
	Interval	v;
	Interval   *keep;

	if (!parse_interval(*newval, &v))
	{
		GUC_check_errdetail("The value is not an interval, for example '400 days'.");
		return false;
	}
	if (v.month < 0 || v.day < 0 || v.time < 0)
	{
		GUC_check_errdetail("The offset must not be negative: rows can be born old, not young.");
		return false;
	}
	keep = malloc(sizeof(Interval));
	if (keep == NULL)
		return false;
	*keep = v;
	*extra = keep;
	return true;
}

static void
assign_test_clock_offset(const char *newval, void *extra)
{
	test_clock_offset = *(Interval *) extra;
	ta_test_clock_set = test_clock_offset.month != 0 || test_clock_offset.day != 0 ||
		test_clock_offset.time != 0;
}

/*
 * Is this database marked as a test database, by ALTER DATABASE ... SET
 * tool_audit.test_database = on (the database's own setting, for every
 * role: setrole = 0)?  A SET in a session, or a role's setting, is not a
 * mark.  The setting is PGC_SUSET: only a superuser can make the mark.
 */
static bool
database_is_marked(void)
{
	Relation	rel = table_open(DbRoleSettingRelationId, AccessShareLock);
	ScanKeyData keys[2];
	SysScanDesc scan;
	HeapTuple	tup;
	bool		marked = false;
	static const char prefix[] = "tool_audit.test_database=";

	ScanKeyInit(&keys[0], Anum_pg_db_role_setting_setdatabase, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(MyDatabaseId));
	ScanKeyInit(&keys[1], Anum_pg_db_role_setting_setrole, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(InvalidOid));
	scan = systable_beginscan(rel, DbRoleSettingDatidRolidIndexId, true, NULL, 2, keys);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_pg_db_role_setting_setconfig,
									 RelationGetDescr(rel), &isnull);
		Datum	   *elems;
		bool	   *elem_nulls;
		int			n = 0;

		if (!isnull)
			deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
							  &elems, &elem_nulls, &n);
		for (int i = 0; i < n; i++)
		{
			char	   *s;
			bool		on;

			if (elem_nulls[i])
				continue;
			s = TextDatumGetCString(elems[i]);
			if (strncmp(s, prefix, sizeof(prefix) - 1) == 0 &&
				parse_bool(s + sizeof(prefix) - 1, &on))
				marked = on;
		}
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return marked;
}

/*
 * The time a new row is recorded at: the server's clock, or, while
 * tool_audit.test_clock_offset is set, that much earlier, in a test
 * database only; elsewhere the insert fails rather than ignore the offset.
 */
TimestampTz
ta_record_time(void)
{
	TimestampTz now = GetCurrentTimestamp();

	if (!ta_test_clock_set)
		return now;
	if (!test_database || !database_is_marked())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("tool_audit.test_clock_offset is honoured only in a test database"),
				 errdetail("This database is not marked with ALTER DATABASE ... SET tool_audit.test_database = on, or the session turned the setting off."),
				 errhint("RESET tool_audit.test_clock_offset; a test clock never applies to real data.")));
	return DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
												   TimestampTzGetDatum(now),
												   IntervalPGetDatum(&test_clock_offset)));
}

void
ta_retention_init(void)
{
	DefineCustomStringVariable("tool_audit.test_clock_offset",
							   "Tests only: new audit rows are recorded this long ago (an interval).",
							   "Honoured only in a database marked with ALTER DATABASE ... SET tool_audit.test_database = on; elsewhere an insert fails while it is set.",
							   &test_clock_offset_text,
							   "0",
							   PGC_SUSET, 0,
							   check_test_clock_offset, assign_test_clock_offset, NULL);

	DefineCustomBoolVariable("tool_audit.test_database",
							 "Marks a database as a test database, where tool_audit.test_clock_offset is honoured.",
							 "Only as a database's own setting: ALTER DATABASE name SET tool_audit.test_database = on.",
							 &test_database,
							 false,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);
}
