/*-------------------------------------------------------------------------
 *
 * tenant_verify.c
 *		Verification and digests limited to the caller's tenants.
 *
 * Chains are per tenant (hash.c: the chain id is derived from the table,
 * the tenant and the retention policy), so a tenant's part of the trail is
 * a set of whole chains: its rows, its purge anchors and the heads of its
 * lanes.  A caller bound to tenants (tool_audit.bound_tenants() is not
 * NULL) who is not a tool_audit_admin gets verify(), verify_digest() and
 * digest() limited to those tenants: the walk skips every row and anchor of
 * another tenant (or of none), a digest lists only the heads of its
 * tenants' lanes ("scope": "tenant"), and the heads of a digest that belong
 * to other tenants are not checked.  Nothing of another tenant reaches the
 * result: not its name, not its chain ids, not its row counts (the id
 * sequences, which count every tenant's rows, are not checked in a tenant
 * run; the protections of the tables, which name no tenant, are).
 *
 * The walk and the digest read the tables directly (no row-level security)
 * and, for a tenant run, read the purge anchors and erasures as the
 * extension's owner: a reader has no privilege on them, and the scope, not
 * the caller's privileges, decides what is reported.  Admins, the unbound
 * verifier and superusers are not limited: their runs are as before.
 * An unbound reader, which may execute the functions for the sake of bound
 * ones, is refused as before (ta_tenant_scope_checked()).
 * tool_audit.tenant_digest(tenant) gives an admin (or the verifier) the
 * digest of one tenant, to hand to that tenant's auditor, and
 * tool_audit.derive_tenant_digest(digest, tenant) derives it later from a
 * full digest kept elsewhere.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "catalog.h"
#include "crypto.h"
#include "digest.h"
#include "hash.h"
#include "jsonb_util.h"
#include "tenant_verify.h"
#include "tool_audit.h"

/*
 * The tenants the caller's runs are limited to, or NULL: bound readers and
 * bound verifier roles are limited, admins (who read every row) are not.
 */
TaTenantScope *
ta_tenant_scope_for_caller(void)
{
	List	   *name = list_make2(makeString(TA_SCHEMA), makeString("bound_tenants"));
	Oid			fn;
	Oid			admin = get_role_oid("tool_audit_admin", true);
	FmgrInfo	flinfo;
	LOCAL_FCINFO(fcinfo, 0);
	Datum		result;
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *enulls;
	int			n;
	TaTenantScope *scope;

	if (superuser() || (OidIsValid(admin) && has_privs_of_role(GetUserId(), admin)))
		return NULL;
	if (!OidIsValid(ta_schema_oid(true)))
		return NULL;
	fn = LookupFuncName(name, 0, NULL, true);
	if (!OidIsValid(fn))
		return NULL;
	/* called as the function it is (SECURITY DEFINER): no EXECUTE needed */
	fmgr_info(fn, &flinfo);
	InitFunctionCallInfoData(*fcinfo, &flinfo, 0, InvalidOid, NULL, NULL);
	result = FunctionCallInvoke(fcinfo);
	if (fcinfo->isnull)
		return NULL;
	arr = DatumGetArrayTypeP(result);
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &enulls, &n);
	scope = palloc0(sizeof(TaTenantScope));
	scope->tenants = palloc(sizeof(char *) * Max(n, 1));
	for (int i = 0; i < n; i++)
		if (!enulls[i])
			scope->tenants[scope->ntenants++] = TextDatumGetCString(elems[i]);
	return scope;
}

/*
 * The scope of a run of verify(), verify_digest() or digest(), which
 * readers may execute: a reader bound to tenants gets its tenants; an
 * unbound reader is refused as it was before 1.5 (it has the reports);
 * admins, verifier roles and superusers get NULL (every tenant), or their
 * binding for a bound verifier role.
 */
TaTenantScope *
ta_tenant_scope_checked(const char *function)
{
	TaTenantScope *scope = ta_tenant_scope_for_caller();
	Oid			verifier = get_role_oid("tool_audit_verifier", true);
	Oid			admin = get_role_oid("tool_audit_admin", true);

	if (scope == NULL && !superuser() &&
		!(OidIsValid(verifier) && has_privs_of_role(GetUserId(), verifier)) &&
		!(OidIsValid(admin) && has_privs_of_role(GetUserId(), admin)))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function %s", function),
				 errdetail("A reader verifies only when it is bound to a tenant.")));
	return scope;
}

TaTenantScope *
ta_tenant_scope_of(const char *tenant)
{
	TaTenantScope *scope = palloc0(sizeof(TaTenantScope));

	scope->tenants = palloc(sizeof(char *));
	scope->tenants[0] = pstrdup(tenant);
	scope->ntenants = 1;
	return scope;
}

/* A tenant (len bytes, not terminated) is in the scope; NULL never is. */
bool
ta_tenant_scope_has(const TaTenantScope *scope, const char *tenant, int len)
{
	if (scope == NULL)
		return true;
	if (tenant == NULL)
		return false;
	for (int i = 0; i < scope->ntenants; i++)
		if ((int) strlen(scope->tenants[i]) == len && memcmp(scope->tenants[i], tenant, len) == 0)
			return true;
	return false;
}

bool
ta_tenant_scope_has_datum(const TaTenantScope *scope, Datum tenant, bool isnull)
{
	text	   *t;

	if (scope == NULL)
		return true;
	if (isnull)
		return false;
	t = DatumGetTextPP(tenant);
	return ta_tenant_scope_has(scope, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
}

bool
ta_tenant_row_in_scope(const TaTenantScope *scope, const TaLayout *layout,
					   Datum *values, bool *nulls)
{
	int			c;

	if (scope == NULL)
		return true;
	c = layout->column[TA_COL_TENANT_ID];
	if (c < 0)
		return false;
	return ta_tenant_scope_has_datum(scope, values[c], nulls[c]);
}

/* A digest head's "tenant" is one of the scope's (a null tenant is not). */
bool
ta_tenant_head_in_scope(const TaTenantScope *scope, JsonbContainer *head)
{
	JsonbValue *t;

	if (scope == NULL)
		return true;
	t = ta_jsonb_key(head, "tenant");
	if (t == NULL || t->type != jbvString)
		return false;
	return ta_tenant_scope_has(scope, t->val.string.val, t->val.string.len);
}

/*
 * A run reads the purge anchors and erasures as the extension's owner when
 * it is a tenant run, or when the caller may not read them (an unbound
 * reader, who reads every row of the audit tables anyway): what is
 * reported is decided by the scope, not by these privileges.
 */
bool
ta_tenant_run_as_owner(const TaTenantScope *scope)
{
	const char *const tables[] = {"purge_anchors", "erasures"};

	if (scope != NULL)
		return true;
	for (int i = 0; i < (int) lengthof(tables); i++)
	{
		Oid			relid = ta_schema_relid(tables[i], true);

		if (OidIsValid(relid) && pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
			return true;
	}
	return false;
}

/*
 * Runs fn(arg) as the owner of the extension's schema, in a restricted
 * security context (it may read, not change settings or roles).
 */
void
ta_as_extension_owner(void (*fn) (void *), void *arg)
{
	Oid			owner = ta_relation_owner(ta_schema_relid("tool_calls", false));
	Oid			save_user;
	int			save_sec;

	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	PG_TRY();
	{
		fn(arg);
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_user, save_sec);
	}
	PG_END_TRY();
}

/* A bound caller (a bound verifier role) gets only its own tenants' digests. */
static void
check_tenant_allowed(const char *tenant)
{
	TaTenantScope *bound = ta_tenant_scope_for_caller();

	if (bound != NULL && !ta_tenant_scope_has(bound, tenant, strlen(tenant)))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for the digest of that tenant"),
				 errdetail("The caller is bound to other tenants.")));
}

/*
 * tool_audit.tenant_digest(tenant text) RETURNS jsonb
 *
 * The digest of one tenant's chains, as digest() gives a caller bound to
 * that tenant: for an admin to hand to the tenant's auditor.  EXECUTE is
 * granted to admins and the verifier only.
 */
PG_FUNCTION_INFO_V1(tenant_digest);
Datum
tenant_digest(PG_FUNCTION_ARGS)
{
	char	   *tenant = text_to_cstring(PG_GETARG_TEXT_PP(0));

	check_tenant_allowed(tenant);
	return ta_digest_scoped(ta_tenant_scope_of(tenant));
}

/* A value of the digest copied as JSON text ("null" when absent). */
static void
append_value(StringInfo buf, JsonbContainer *root, const char *key)
{
	JsonbValue *v = ta_jsonb_key(root, key);

	if (v == NULL)
		appendStringInfoString(buf, "null");
	else if (v->type == jbvBinary)
		(void) JsonbToCString(buf, v->val.binary.data, v->val.binary.len);
	else
		(void) JsonbToCString(buf, &JsonbValueToJsonb(v)->root, 0);
}

/*
 * tool_audit.derive_tenant_digest(digest jsonb, tenant text) RETURNS jsonb
 *
 * One tenant's digest derived from a digest kept earlier (a full one, as an
 * admin takes): its signature must check with the configured key; the
 * result has its database, system identifier and time, the heads of that
 * tenant only, "scope": "tenant", and "derived_from", the SHA-256 of the
 * digest's canonical text, and is signed again.  It commits to nothing the
 * signed digest did not: it cannot forge a head.
 */
PG_FUNCTION_INFO_V1(derive_tenant_digest);
Datum
derive_tenant_digest(PG_FUNCTION_ARGS)
{
	Jsonb	   *d = PG_GETARG_JSONB_P(0);
	char	   *tenant = text_to_cstring(PG_GETARG_TEXT_PP(1));
	TaTenantScope *scope = ta_tenant_scope_of(tenant);
	JsonbValue *format;
	JsonbValue *heads;
	char	   *problem;
	StringInfoData canon;
	StringInfoData buf;
	unsigned char hash[TA_HASH_LEN];
	char		hex[2 * TA_HASH_LEN + 1];
	bool		first = true;
	int			n;

	check_tenant_allowed(tenant);
	if (!JB_ROOT_IS_OBJECT(d) ||
		(format = ta_jsonb_key(&d->root, "format")) == NULL || format->type != jbvString ||
		format->val.string.len != strlen(DIGEST_FORMAT) ||
		memcmp(format->val.string.val, DIGEST_FORMAT, format->val.string.len) != 0 ||
		(heads = ta_jsonb_key(&d->root, "heads")) == NULL || heads->type != jbvBinary ||
		!JsonContainerIsArray(heads->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("not a tool_audit digest"),
				 errhint("Pass the jsonb that tool_audit.digest() returned.")));
	problem = ta_digest_signature_problem(d);
	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the digest's signature does not check: nothing is derived from it"),
				 errdetail("%s", problem)));

	initStringInfo(&canon);
	ta_canonical_json(&canon, d);
	ta_sha256(canon.data, canon.len, hash);
	hex_encode((const char *) hash, TA_HASH_LEN, hex);
	hex[2 * TA_HASH_LEN] = '\0';

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"format\":\"" DIGEST_FORMAT "\",\"scope\":\"tenant\",\"database\":");
	append_value(&buf, &d->root, "database");
	appendStringInfoString(&buf, ",\"system_identifier\":");
	append_value(&buf, &d->root, "system_identifier");
	appendStringInfoString(&buf, ",\"taken_at\":");
	append_value(&buf, &d->root, "taken_at");
	appendStringInfo(&buf, ",\"derived_from\":\"%s\",\"heads\":[", hex);
	n = JsonContainerSize(heads->val.binary.data);
	for (int i = 0; i < n; i++)
	{
		JsonbValue *hv = getIthJsonbValueFromContainer(heads->val.binary.data, i);

		if (hv == NULL || hv->type != jbvBinary || !JsonContainerIsObject(hv->val.binary.data) ||
			!ta_tenant_head_in_scope(scope, hv->val.binary.data))
			continue;
		if (!first)
			appendStringInfoChar(&buf, ',');
		first = false;
		(void) JsonbToCString(&buf, hv->val.binary.data, hv->val.binary.len);
	}
	appendStringInfoChar(&buf, ']');
	/* the security state the signed digest committed to, as tenant_digest() has it */
	if (ta_jsonb_key(&d->root, "security_state") != NULL)
	{
		appendStringInfoString(&buf, ",\"security_state\":");
		append_value(&buf, &d->root, "security_state");
	}
	PG_RETURN_DATUM(ta_digest_sign(&buf));
}
