/*-------------------------------------------------------------------------
 *
 * tenant_verify.h
 *		Verification and digests limited to the caller's tenants
 *		(tenant_verify.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_TENANT_VERIFY_H
#define TA_TENANT_VERIFY_H

#include "fmgr.h"
#include "utils/jsonb.h"

#include "layout.h"

/* The tenants a run is limited to; a NULL scope is every tenant. */
typedef struct TaTenantScope
{
	int			ntenants;
	char	  **tenants;
} TaTenantScope;

extern TaTenantScope *ta_tenant_scope_for_caller(void);
extern TaTenantScope *ta_tenant_scope_checked(const char *function);
extern TaTenantScope *ta_tenant_scope_of(const char *tenant);
extern bool ta_tenant_scope_has(const TaTenantScope *scope, const char *tenant, int len);
extern bool ta_tenant_scope_has_datum(const TaTenantScope *scope, Datum tenant, bool isnull);
extern bool ta_tenant_row_in_scope(const TaTenantScope *scope, const TaLayout *layout,
								   Datum *values, bool *nulls);
extern bool ta_tenant_head_in_scope(const TaTenantScope *scope, JsonbContainer *head);
extern bool ta_tenant_run_as_owner(const TaTenantScope *scope);
extern void ta_as_extension_owner(void (*fn) (void *), void *arg);

/* digest.c */
extern Datum ta_digest_scoped(const TaTenantScope *scope);

#endif							/* TA_TENANT_VERIFY_H */
