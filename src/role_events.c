/*-------------------------------------------------------------------------
 *
 * role_events.c
 *		Membership changes of the extension's roles, recorded as admin events.
 *
 * Who may write, read, administer and verify the audit trail is decided by
 * membership in tool_audit_writer, tool_audit_reader, tool_audit_admin and
 * tool_audit_verifier.  Event triggers do not fire for GRANT and REVOKE of
 * roles, so the ProcessUtility hook (guard.c, shared_preload_libraries
 * only) calls ta_record_role_grant() once such a statement has succeeded:
 * a GRANT or REVOKE naming one of those roles becomes a
 * tool_audit.role.grant or tool_audit.role.revoke admin event, written as
 * the audit tables' owner through the ordinary insert path (sanitizer,
 * chain, alert rules).  If the event cannot be written the statement fails
 * with it: a membership change is never left unrecorded where the
 * extension is installed.
 *
 * Roles are cluster-wide, the audit trail is per database: the event goes
 * to the database the statement ran in, and only if the extension is
 * installed there (doc/caveats.md).
 *
 * tool_audit.record_role_changes (on by default, postgresql.conf only) turns
 * it off: the pg_regress schedules run plain and preloaded against the same
 * expected files, and their setup grants the roles (test/preload.conf);
 * test/t/024_role_events.pl tests the default.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/objectaddress.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "catalog.h"
#include "guard.h"
#include "role_events.h"

static const char *const extension_roles[] = {
	"tool_audit_writer", "tool_audit_reader", "tool_audit_admin", "tool_audit_verifier"
};

bool		ta_record_role_changes = true;

void
ta_role_events_init(void)
{
	DefineCustomBoolVariable("tool_audit.record_role_changes",
							 "Record GRANT and REVOKE of the extension's roles as admin events (needs shared_preload_libraries).",
							 "Off: membership changes of tool_audit_writer, _reader, _admin and _verifier leave no event.",
							 &ta_record_role_changes,
							 true,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
}

static bool
is_extension_role(const char *name)
{
	for (int i = 0; i < (int) lengthof(extension_roles); i++)
		if (strcmp(name, extension_roles[i]) == 0)
			return true;
	return false;
}

/* WITH ADMIN OPTION (GRANT) or ADMIN OPTION FOR (REVOKE) */
static bool
admin_option(GrantRoleStmt *stmt)
{
#if PG_VERSION_NUM >= 160000
	ListCell   *lc;

	foreach(lc, stmt->opt)
	{
		DefElem    *opt = lfirst_node(DefElem, lc);

		if (strcmp(opt->defname, "admin") == 0)
			return stmt->is_grant ? defGetBoolean(opt) : true;
	}
	return false;
#else
	return stmt->admin_opt;
#endif
}

static const char *const insert_role_event =
"INSERT INTO tool_audit.admin_events (event_type, actor, actor_type, payload)"
" VALUES ($1, tool_audit.acting_role(), 'user',"
"         jsonb_build_object('roles', to_jsonb($2::text[]), 'grantees', to_jsonb($3::text[]),"
"                            'admin_option', $4::boolean, 'granted_by', $5::text))";

/*
 * After a successful GRANT or REVOKE of roles: record it when it names one
 * of the extension's roles and the extension is installed in this database.
 */
void
ta_record_role_grant(GrantRoleStmt *stmt)
{
	List	   *roles = NIL;
	List	   *grantees = NIL;
	bool		ours = false;
	ListCell   *lc;
	Oid			relid;
	Oid			argtypes[5] = {TEXTOID, TEXTARRAYOID, TEXTARRAYOID, BOOLOID, TEXTOID};
	Datum		args[5];

	if (!ta_record_role_changes || !IsTransactionState() || !OidIsValid(ta_schema_oid(true)) || ta_in_own_script())
		return;
	foreach(lc, stmt->granted_roles)
	{
		AccessPriv *priv = lfirst_node(AccessPriv, lc);

		if (priv->priv_name == NULL)
			continue;
		roles = lappend(roles, priv->priv_name);
		if (is_extension_role(priv->priv_name))
			ours = true;
	}
	if (!ours)
		return;
	relid = ta_schema_relid("admin_events", true);
	if (!OidIsValid(relid))
		return;
	foreach(lc, stmt->grantee_roles)
		grantees = lappend(grantees, get_rolespec_name(lfirst_node(RoleSpec, lc)));

	args[0] = CStringGetTextDatum(stmt->is_grant ? "tool_audit.role.grant" : "tool_audit.role.revoke");
	args[1] = PointerGetDatum(strlist_to_textarray(roles));
	args[2] = PointerGetDatum(strlist_to_textarray(grantees));
	args[3] = BoolGetDatum(admin_option(stmt));
	args[4] = CStringGetTextDatum(stmt->grantor != NULL ? get_rolespec_name(stmt->grantor)
								  : GetUserNameFromId(GetUserId(), false));

	SPI_connect();
	ta_spi_exec_as_owner(ta_relation_owner(relid), insert_role_event, 5, argtypes, args,
						 NULL, false);
	if (SPI_processed != 1)
		elog(ERROR, "tool_audit: could not record the role membership change");
	SPI_finish();
}
