/*-------------------------------------------------------------------------
 *
 * tenant.c
 *	  --tenant NAME: verify one tenant's chains only.
 *
 *	  Chains are per tenant (the chain id is derived from the table, the
 *	  tenant and the retention policy), so one tenant's part of the trail is
 *	  a set of whole chains.  With --tenant, rows, purge anchors and digest
 *	  heads of any other tenant (or of none) are skipped: a reader bound to
 *	  the tenant, who sees only its tenant's rows through row-level security,
 *	  gets no "rows covered by the digest are missing" for the rows it cannot
 *	  see, and a change to a row of the tenant is still reported.  The digest
 *	  may be the tenant's (tool_audit.digest() taken by the bound role, or
 *	  tool_audit.tenant_digest(NAME) taken by an admin) or a full one, of
 *	  which the tenant's heads are checked (its signature covers them all).
 *
 *	  A bound reader may not read tool_audit.purge_anchors and
 *	  tool_audit.erasures: the run then says so on stderr and goes on
 *	  without them (spans purged and rows erased in the tenant are then
 *	  reported); a verifier role reads them.
 *
 * verifier/tenant.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verify.h"

#include <libpq-fe.h>

const char *tenant_only = NULL;

/* A row's or head's tenant (NULL for none) is the one verified. */
bool
tenant_wanted(const char *tenant, size_t len)
{
	if (tenant_only == NULL)
		return true;
	return tenant != NULL && len == strlen(tenant_only) &&
		memcmp(tenant, tenant_only, len) == 0;
}

/* Drop the heads of other tenants; the rest keep their order. */
void
tenant_filter_heads(Digest *d)
{
	size_t		kept = 0;

	if (tenant_only == NULL)
		return;
	for (size_t i = 0; i < d->nheads; i++)
	{
		DigestHead *h = &d->heads[i];

		if (tenant_wanted(h->tenant, h->tenant ? strlen(h->tenant) : 0))
			d->heads[kept++] = *h;
		else
		{
			free(h->table);
			free(h->tenant);
		}
	}
	d->nheads = kept;
}

/*
 * Whether the run may read a table of the schema: always outside --tenant
 * (where a missing privilege is an error, as before); with --tenant, false
 * for a role without SELECT on it, said once on stderr.
 */
bool
tenant_may_read(PGconn *conn, const char *table)
{
	const char *sql =
		"SELECT pg_catalog.to_regclass('tool_audit.' OPERATOR(pg_catalog.||) $1) IS NULL"
		"    OR pg_catalog.has_table_privilege('tool_audit.' OPERATOR(pg_catalog.||) $1, 'SELECT')";
	const char *params[1] = {table};
	PGresult   *res;
	bool		may;
	static const char *known[4];	/* tables asked already, and the answers */
	static bool answers[4];

	if (tenant_only == NULL)
		return true;
	for (int i = 0; i < 4 && known[i] != NULL; i++)
		if (strcmp(known[i], table) == 0)
			return answers[i];
	res = PQexecParams(conn, sql, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
		fatal("could not check the privileges on tool_audit.%s: %s", table, PQerrorMessage(conn));
	may = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	if (!may)
		fprintf(stderr, "tool_audit_verify: note: this role may not read tool_audit.%s: "
				"%s are not taken into account (connect as a verifier role to check them)\n",
				table, strcmp(table, "erasures") == 0 ? "erasures" : "purges");
	for (int i = 0; i < 4; i++)
		if (known[i] == NULL)
		{
			known[i] = table;	/* a literal of the caller's */
			answers[i] = may;
			break;
		}
	return may;
}
