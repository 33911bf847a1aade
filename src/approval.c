/*-------------------------------------------------------------------------
 *
 * approval.c
 *		Dual approval: the settings, the person a session acts for, and the
 *		check the extension's C functions make (erase_subject()).  The
 *		requests, approvals and their consumption are SQL
 *		(sql/install/86_dual_approval.sql, doc/governance.md).
 *
 * tool_audit.require_dual_approval is PGC_SUSET: tool_audit_admin, whose
 * operations it guards, cannot turn it off; a superuser can (in
 * postgresql.conf, ALTER SYSTEM, ALTER DATABASE or SET).  It is read here,
 * in C, so that the library, and with it the setting's definition, is
 * loaded before it is read: a value a non-superuser gave the placeholder
 * before the library was loaded is then discarded by PostgreSQL.
 *
 * The person behind a session is its authenticated login role: neither
 * SET ROLE nor SET SESSION AUTHORIZATION (a superuser's) changes it, so a
 * requester cannot approve their own request by acting as another role.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "approval.h"

bool		ta_require_dual_approval = false;
static int	approval_lifetime_min = 1440;

void
ta_approval_init(void)
{
	DefineCustomBoolVariable("tool_audit.require_dual_approval",
							 "The extension's sensitive operations need a request approved by a second administrator.",
							 "Shortening retention, releasing a legal hold, erasing a subject, rotating the pseudonymization key; superusers only can change it.",
							 &ta_require_dual_approval,
							 false,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("tool_audit.approval_lifetime",
							"How long an approval request stays open: it can be approved, then used, until then.",
							NULL,
							&approval_lifetime_min,
							1440, 1, 30 * 1440,
							PGC_SUSET, GUC_UNIT_MIN,
							NULL, NULL, NULL);
}

/* tool_audit.approval_person() RETURNS text: the session's login role */
PG_FUNCTION_INFO_V1(approval_person);
Datum
approval_person(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(GetUserNameFromId(GetAuthenticatedUserId(), false)));
}

/*
 * tool_audit.approval_same_person(a text, b text) RETURNS boolean
 *
 * Two login roles are one person when they are the same role or either is
 * a member of the other (it can SET ROLE to it and act as it), directly or
 * through other roles.  Superuser status is not membership here: a
 * superuser is not every role's person.
 */
PG_FUNCTION_INFO_V1(approval_same_person);
Datum
approval_same_person(PG_FUNCTION_ARGS)
{
	char	   *a = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *b = text_to_cstring(PG_GETARG_TEXT_PP(1));
	Oid			ra = get_role_oid(a, true);
	Oid			rb = get_role_oid(b, true);

	if (strcmp(a, b) == 0)
		PG_RETURN_BOOL(true);
	if (!OidIsValid(ra) || !OidIsValid(rb))
		PG_RETURN_BOOL(false);	/* a dropped role: only its name is left */
	PG_RETURN_BOOL(is_member_of_role_nosuper(ra, rb) || is_member_of_role_nosuper(rb, ra));
}

/* tool_audit.dual_approval_required() RETURNS boolean */
PG_FUNCTION_INFO_V1(dual_approval_required);
Datum
dual_approval_required(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(ta_require_dual_approval);
}

/* tool_audit.approval_lifetime() RETURNS interval */
PG_FUNCTION_INFO_V1(approval_lifetime);
Datum
approval_lifetime(PG_FUNCTION_ARGS)
{
	Interval   *result = palloc0(sizeof(Interval));

	result->time = (TimeOffset) approval_lifetime_min * USECS_PER_MINUTE;
	PG_RETURN_INTERVAL_P(result);
}

void
ta_approval_gate(const char *action, const char *key, text *value)
{
	Datum		args[3];
	Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};

	if (!ta_require_dual_approval)
		return;
	args[0] = CStringGetTextDatum(action);
	args[1] = CStringGetTextDatum(key);
	args[2] = PointerGetDatum(value);
	/* consume_approval() raises the error when there is no approval */
	if (SPI_execute_with_args("SELECT tool_audit.consume_approval($1, "
							  "pg_catalog.jsonb_build_object($2, $3))",
							  3, types, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not consume an approval for %s", action);
}
