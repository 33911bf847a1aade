/*-------------------------------------------------------------------------
 *
 * impersonation.c
 *		The admin impersonating a user when a row of that user is written.
 *
 * start_impersonation() and end_impersonation() (sql/install/
 * 52_impersonation.sql) keep tool_audit.impersonations, one row per
 * impersonation, open (ended_at NULL) until ended or closed after its
 * expiry.  The insert triggers stamp impersonated_by on a row whose user
 * (tool_calls.user_id, admin_events.actor) and tenant are those of an open
 * impersonation and whose time is within [started_at, expires_at): an
 * impersonation that is not ended stops by itself at its expiry, without a
 * job, since the trigger compares the row's time.
 *
 * An impersonation is that of the role that started it (started_by, the
 * application): only rows that role records (recorded_by) are stamped.  The
 * ids are the application's own, so another application (another writer
 * role) with a user of the same id in the same tenant is not affected, and
 * cannot make this one's rows carry an impersonator.
 *
 * The open impersonations are a per-backend copy (ta_cache_get(),
 * catalog.c), dropped when the table changes: its statement trigger calls
 * rules_changed(), as the retention tables' do.  With none open, a row
 * costs one test of a count.  The values compared are the sanitized ones on
 * both sides: start_impersonation() stores the target and admin as the
 * sanitizer leaves them, and the trigger compares after sanitizing.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "catalog.h"
#include "impersonation.h"

typedef struct Impersonation
{
	char	   *tenant;			/* NULL: rows without a tenant */
	int			tenantlen;
	char	   *target;
	int			targetlen;
	char	   *admin;
	int			adminlen;
	char	   *started_by;		/* the role whose rows it stamps */
	int			started_bylen;
	TimestampTz started_at;
	TimestampTz expires_at;
} Impersonation;

typedef struct OpenImpersonations
{
	int			n;
	Impersonation *items;
} OpenImpersonations;

static TaCache impersonation_cache = {.tables = {"impersonations"}};

/* ta_cache_get()'s fill */
static void *
fill_impersonations(MemoryContext cxt, Oid owner)
{
	OpenImpersonations *o;
	MemoryContext spicxt;

	ta_spi_exec_as_owner(owner,
						 "SELECT tenant_id, target_user, admin_id, started_at, expires_at, started_by"
						 "  FROM tool_audit.impersonations WHERE ended_at IS NULL",
						 0, NULL, NULL, NULL, true);
	spicxt = MemoryContextSwitchTo(cxt);
	o = palloc0(sizeof(OpenImpersonations));
	o->items = palloc0(sizeof(Impersonation) * (SPI_processed + 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Impersonation *m = &o->items[o->n++];
		bool		isnull;
		Datum		d;

		d = SPI_getbinval(tup, desc, 1, &isnull);
		m->tenant = isnull ? NULL : ta_cache_text(d, &m->tenantlen);
		m->target = ta_cache_text(SPI_getbinval(tup, desc, 2, &isnull), &m->targetlen);
		m->admin = ta_cache_text(SPI_getbinval(tup, desc, 3, &isnull), &m->adminlen);
		m->started_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 4, &isnull));
		m->expires_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 5, &isnull));
		m->started_by = ta_cache_text(SPI_getbinval(tup, desc, 6, &isnull), &m->started_bylen);
	}
	MemoryContextSwitchTo(spicxt);
	return o;
}

/*
 * The admin impersonating this user of this tenant (tenant NULL: a row
 * without one) at this time, in an impersonation started by the role that
 * records the row (recorder), or NULL.  The result lives in the cache: copy
 * it before anything may reload it.
 */
const char *
ta_impersonator(const char *tenant, int tenantlen, const char *user, int userlen,
				const char *recorder, int recorderlen, TimestampTz at, int *adminlen)
{
	const OpenImpersonations *o;

	if (user == NULL || recorder == NULL)
		return NULL;
	o = ta_cache_get(&impersonation_cache, fill_impersonations);
	for (int i = 0; i < o->n; i++)
	{
		const Impersonation *m = &o->items[i];

		if (m->targetlen != userlen || memcmp(m->target, user, userlen) != 0)
			continue;
		if ((m->tenant == NULL) != (tenant == NULL))
			continue;
		if (tenant != NULL &&
			(m->tenantlen != tenantlen || memcmp(m->tenant, tenant, tenantlen) != 0))
			continue;
		if (at < m->started_at || at >= m->expires_at)
			continue;
		if (m->started_bylen != recorderlen ||
			memcmp(m->started_by, recorder, recorderlen) != 0)
			continue;
		*adminlen = m->adminlen;
		return m->admin;
	}
	return NULL;
}
