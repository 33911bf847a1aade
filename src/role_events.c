/*-------------------------------------------------------------------------
 *
 * role_events.c
 *		Membership changes of the extension's roles, recorded as admin events.
 *
 * Who may write, read, administer and verify the audit trail is decided by
 * membership in tool_audit_writer, tool_audit_reader, tool_audit_admin and
 * tool_audit_verifier.  Event triggers do not fire for role statements, so
 * the ProcessUtility hook (guard.c, shared_preload_libraries only) calls
 * ta_record_role_change() once a statement has succeeded: a GRANT or REVOKE
 * naming one of those roles (or CREATE ROLE ... IN ROLE one of them, ALTER
 * GROUP one of them ADD/DROP USER) becomes a tool_audit.role.grant or
 * tool_audit.role.revoke admin event, written as the audit tables' owner
 * through the ordinary insert path (sanitizer, chain, alert rules).  If the
 * event cannot be written the statement fails with it: a membership change
 * is never left unrecorded where the extension is installed.  Roles are
 * matched by name, so ALTER ROLE ... RENAME from or to one of the names is
 * recorded too (tool_audit.role.rename), and DROP ROLE of a member as a
 * revoke with "role_dropped": true.
 *
 * Membership through other roles counts too: after GRANT tool_audit_admin TO
 * mid, a GRANT mid TO eve makes eve an administrator.  Such a statement
 * (GRANT, REVOKE, CREATE ROLE ... IN ROLE, ALTER GROUP naming a role that is
 * a member of one of the extension's roles, directly or further up) is
 * recorded the same way, its payload's "indirect" saying which extension
 * roles each named role carries: {"mid": ["tool_audit_admin"]}.  Not
 * recorded: DROP ROLE of a role whose only path to an extension role was
 * through another role (the memberships it loses are not the extension's).
 *
 * Roles are cluster-wide, the audit trail is per database: the event goes
 * to the database the statement ran in, and only if the extension is
 * installed there (doc/caveats.md).
 *
 * tool_audit.record_role_changes (on by default, postgresql.conf only) turns
 * it off: the pg_regress schedules run plain and preloaded against the same
 * expected files, and their setup grants the roles (test/preload.conf);
 * test/t/025_role_events.pl tests the default.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/objectaddress.h"
#include "catalog/pg_auth_members.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/catcache.h"
#include "utils/guc.h"
#include "utils/syscache.h"

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
							 "Record membership changes and renames of the extension's roles as admin events (needs shared_preload_libraries).",
							 "Off: GRANT, REVOKE, CREATE ROLE ... IN ROLE, ALTER GROUP, DROP ROLE and RENAME touching tool_audit_writer, _reader, _admin and _verifier leave no event.",
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

/*
 * "indirect": for each granted role that is not one of the extension's but
 * is a member of some (GRANT tool_audit_admin TO mid; GRANT mid TO eve), the
 * extension roles it carries: {"mid": ["tool_audit_admin"]}.  $7 and $8 are
 * parallel arrays of (role, extension role) pairs.
 */
static const char *const insert_role_event =
"INSERT INTO tool_audit.admin_events (event_type, actor, actor_type, payload)"
" VALUES ($1, tool_audit.acting_role(), 'user',"
"         jsonb_build_object('roles', to_jsonb($2::text[]), 'grantees', to_jsonb($3::text[]),"
"                            'admin_option', $4::boolean, 'granted_by', $5::text)"
"         || CASE WHEN $6 THEN jsonb_build_object('role_dropped', true) ELSE '{}' END"
"         || CASE WHEN cardinality($7::text[]) > 0 THEN jsonb_build_object('indirect',"
"              (SELECT jsonb_object_agg(r, e) FROM"
"                 (SELECT r, jsonb_agg(e ORDER BY e) AS e"
"                    FROM unnest($7::text[], $8::text[]) AS u(r, e) GROUP BY r) AS g))"
"            ELSE '{}' END)";

/* Whether any of these names (a List of char *) is one of the extension's roles */
static bool
names_extension_role(List *names)
{
	ListCell   *lc;

	foreach(lc, names)
		if (is_extension_role((const char *) lfirst(lc)))
			return true;
	return false;
}

/*
 * The extension roles that the other roles named carry by membership,
 * directly or through further roles: pairs appended to *via (the role
 * named) and *carried (an extension role it is a member of).  Membership
 * counts whatever INHERIT says (SET ROLE reaches it).  Returns whether any.
 */
static bool
names_indirect_extension_role(List *names, List **via, List **carried)
{
	ListCell   *lc;
	bool		any = false;

	foreach(lc, names)
	{
		const char *name = (const char *) lfirst(lc);
		Oid			member;

		if (is_extension_role(name))
			continue;
		member = get_role_oid(name, true);
		if (!OidIsValid(member))
			continue;
		for (int i = 0; i < (int) lengthof(extension_roles); i++)
		{
			Oid			ext = get_role_oid(extension_roles[i], true);

			if (OidIsValid(ext) && is_member_of_role_nosuper(member, ext))
			{
				*via = lappend(*via, (char *) name);
				*carried = lappend(*carried, (char *) extension_roles[i]);
				any = true;
			}
		}
	}
	return any;
}

static List *
rolespec_names(List *specs)
{
	List	   *names = NIL;
	ListCell   *lc;

	foreach(lc, specs)
		names = lappend(names, get_rolespec_name(lfirst_node(RoleSpec, lc)));
	return names;
}

/*
 * Record one membership change (roles and grantees: Lists of char *) when it
 * names one of the extension's roles, or a role that carries one, and the
 * extension is installed in this database.  This is the only test of the
 * roles: callers pass every change.
 */
static void
record_change(bool is_grant, List *roles, List *grantees, bool admin, const char *grantor,
			  bool dropped)
{
	Oid			relid;
	Oid			argtypes[8] = {TEXTOID, TEXTARRAYOID, TEXTARRAYOID, BOOLOID, TEXTOID, BOOLOID,
	TEXTARRAYOID, TEXTARRAYOID};
	Datum		args[8];
	List	   *via = NIL;
	List	   *carried = NIL;

	if (!names_indirect_extension_role(roles, &via, &carried) && !names_extension_role(roles))
		return;
	relid = ta_schema_relid("admin_events", true);
	if (!OidIsValid(relid))
		return;
	args[6] = PointerGetDatum(strlist_to_textarray(via));
	args[7] = PointerGetDatum(strlist_to_textarray(carried));
	args[0] = CStringGetTextDatum(is_grant ? "tool_audit.role.grant" : "tool_audit.role.revoke");
	args[1] = PointerGetDatum(strlist_to_textarray(roles));
	args[2] = PointerGetDatum(strlist_to_textarray(grantees));
	args[3] = BoolGetDatum(admin);
	args[4] = CStringGetTextDatum(grantor);
	args[5] = BoolGetDatum(dropped);

	SPI_connect();
	ta_spi_exec_as_owner(ta_relation_owner(relid), insert_role_event, 8, argtypes, args,
						 NULL, false);
	if (SPI_processed != 1)
		elog(ERROR, "tool_audit: could not record the role membership change");
	SPI_finish();
}

static const char *const insert_rename_event =
"INSERT INTO tool_audit.admin_events (event_type, actor, actor_type, payload)"
" VALUES ('tool_audit.role.rename', tool_audit.acting_role(), 'user',"
"         jsonb_build_object('role', $1::text, 'new_name', $2::text))";

/*
 * ALTER ROLE ... RENAME from or to one of the extension's names: a renamed
 * role is no longer matched by name, so the rename itself is the trace.
 */
static void
record_rename(RenameStmt *r)
{
	Oid			relid;
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		args[2];

	if (r->renameType != OBJECT_ROLE || r->subname == NULL || r->newname == NULL ||
		(!is_extension_role(r->subname) && !is_extension_role(r->newname)))
		return;
	relid = ta_schema_relid("admin_events", true);
	if (!OidIsValid(relid))
		return;
	args[0] = CStringGetTextDatum(r->subname);
	args[1] = CStringGetTextDatum(r->newname);
	SPI_connect();
	ta_spi_exec_as_owner(ta_relation_owner(relid), insert_rename_event, 2, argtypes, args,
						 NULL, false);
	if (SPI_processed != 1)
		elog(ERROR, "tool_audit: could not record the role rename");
	SPI_finish();
}

/* The List (of RoleSpec) of a CREATE ROLE or ALTER GROUP option, or NIL */
static List *
role_option(List *options, const char *name)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *opt = lfirst_node(DefElem, lc);

		if (strcmp(opt->defname, name) == 0)
			return (List *) opt->arg;
	}
	return NIL;
}

/*
 * After a successful utility statement: record it when it changed the
 * membership of one of the extension's roles.  GRANT/REVOKE of roles,
 * CREATE ROLE ... IN ROLE (the new role becomes a member) and ALTER GROUP
 * ... ADD/DROP USER; the grantor is the current user unless GRANTED BY says
 * otherwise, as PostgreSQL records it.
 */
void
ta_record_role_change(Node *stmt)
{
	const char *me;

	if (!IsA(stmt, GrantRoleStmt) && !IsA(stmt, CreateRoleStmt) && !IsA(stmt, AlterRoleStmt) &&
		!IsA(stmt, RenameStmt))
		return;
	if (!ta_record_role_changes || !IsTransactionState() ||
		!OidIsValid(ta_schema_oid(true)) || ta_in_own_script())
		return;
	if (IsA(stmt, RenameStmt))
	{
		record_rename((RenameStmt *) stmt);
		return;
	}
	me = GetUserNameFromId(GetUserId(), false);
	if (IsA(stmt, GrantRoleStmt))
	{
		GrantRoleStmt *g = (GrantRoleStmt *) stmt;
		List	   *roles = NIL;
		ListCell   *lc;

		foreach(lc, g->granted_roles)
		{
			AccessPriv *priv = lfirst_node(AccessPriv, lc);

			if (priv->priv_name != NULL)
				roles = lappend(roles, priv->priv_name);
		}
		record_change(g->is_grant, roles, rolespec_names(g->grantee_roles), admin_option(g),
					  g->grantor != NULL ? get_rolespec_name(g->grantor) : me, false);
	}
	else if (IsA(stmt, CreateRoleStmt))
	{
		CreateRoleStmt *c = (CreateRoleStmt *) stmt;
		List	   *roles = rolespec_names(role_option(c->options, "addroleto"));

		record_change(true, roles, list_make1(c->role), false, me, false);
	}
	else
	{
		AlterRoleStmt *a = (AlterRoleStmt *) stmt;
		List	   *members = role_option(a->options, "rolemembers");
		List	   *roles;

		if (members == NIL)
			return;
		roles = list_make1(get_rolespec_name(a->role));
		record_change(a->action > 0, roles, rolespec_names(members), false, me, false);
	}
}

/*
 * DROP ROLE removes the dropped roles' memberships without naming them, and
 * after it they cannot be read: before the statement, collect for each
 * dropped role the extension's roles it is a direct member of (a List of
 * Lists: the member's name, then those roles); after it succeeded,
 * ta_record_role_drops() records one revoke per member.
 */
List *
ta_role_drop_memberships(Node *stmt)
{
	List	   *result = NIL;
	ListCell   *lc;

	if (!IsA(stmt, DropRoleStmt) || !ta_record_role_changes || !IsTransactionState() ||
		!OidIsValid(ta_schema_oid(true)))
		return NIL;
	foreach(lc, ((DropRoleStmt *) stmt)->roles)
	{
		RoleSpec   *spec = lfirst_node(RoleSpec, lc);
		Oid			member;
		CatCList   *memlist;
		List	   *item = NIL;

		if (spec->roletype != ROLESPEC_CSTRING)
			continue;			/* DROP ROLE refuses the others */
		member = get_role_oid(spec->rolename, true);
		if (!OidIsValid(member))
			continue;
		memlist = SearchSysCacheList1(AUTHMEMMEMROLE, ObjectIdGetDatum(member));
		for (int i = 0; i < memlist->n_members; i++)
		{
			Form_pg_auth_members m = (Form_pg_auth_members) GETSTRUCT(&memlist->members[i]->tuple);
			char	   *name = GetUserNameFromId(m->roleid, true);

			if (name != NULL && is_extension_role(name))
				item = lappend(item, name);
		}
		ReleaseSysCacheList(memlist);
		if (item != NIL)
			result = lappend(result, lcons(pstrdup(spec->rolename), item));
	}
	return result;
}

void
ta_record_role_drops(List *memberships)
{
	ListCell   *lc;
	const char *me;

	if (memberships == NIL)
		return;
	me = GetUserNameFromId(GetUserId(), false);
	foreach(lc, memberships)
	{
		List	   *item = (List *) lfirst(lc);

		record_change(false, list_copy_tail(item, 1), list_make1(linitial(item)), false, me, true);
	}
}
