/*-------------------------------------------------------------------------
 *
 * insert.c
 *		The insert path: BEFORE INSERT row triggers of tool_audit.tool_calls
 *		and tool_audit.admin_events, the single path every audit row takes,
 *		whether it comes from log_call()/log_event(), a plain INSERT, COPY or
 *		an ORM.
 *
 * A row goes through, in this order:
 *	1. identity: id from tool_audit.<table>_id_seq (a caller-supplied id is
 *	   refused: it could squat on ids and block other writers; so are a
 *	   retention_policy and an expires_at: a caller could shorten its own
 *	   retention), the time (recorded_at / occurred_at) from the server's
 *	   clock (a client cannot backdate; only the test clock of a test
 *	   database moves it, retention.c), recorded_by from the database role
 *	   acting (after SET ROLE; through SECURITY DEFINER functions), an
 *	   event_id when it has none, and the defaults an ORM may have sent as
 *	   explicit NULLs;
 *	   then (1.5 on) break-the-glass: a call whose session_metadata says
 *	   "break_glass": true, or that brings break_glass = true, needs a
 *	   "break_glass_reason" there and gets break_glass = true;
 *	   then (1.5) the halves of a call: a started row has no outcome yet, an
 *	   ended row names a started row of the same tenant and role, once;
 *	   caller_txid comes from the autonomous writer only (autonomous.c);
 *	2. sanitize: the jsonb columns must be objects (NULL becomes {}) and are
 *	   sanitized, and the value rules apply to every text column (ids
 *	   included: a token pasted into user_id is caught like one in the
 *	   arguments);
 *	3. summarize (tool_calls): result_summary is reduced to a summary (so an
 *	   ORM that stores a whole result still stores only its summary), and
 *	   success and error are derived from it when the caller left them NULL;
 *	3b. impersonation (1.5 on): impersonated_by, the admin impersonating the
 *	   row's user or actor when it is written (impersonation.c); a caller
 *	   that brings one is refused, like a retention_policy;
 *	4. retention (1.4 on): retention_policy, the policy covering the tool
 *	   name or event type, and expires_at, the expiry it gives the row's
 *	   tenant (retention.c), from the final (sanitized) values;
 *	5. hash: the row hash over the final column values (hash.c);
 *	6. chain: the next position of a lane of the row's chain (chain.c),
 *	   which is named by its table, tenant and retention policy;
 *	7. store: the row is formed once, for the executor (or log_call()) to
 *	   insert.
 * admin_events reserves event types starting "tool_audit." for the
 * extension's own functions, and sanitizes those with the built-in rules.
 *
 * Restoring a dump, with no setting: a row that brings its id, its row hash
 * and its chain position (every chain column), as a dump's rows do, is a
 * restored row: a superuser's is kept as it is, after restore.c has checked
 * that its hashes recompute from it (and, at commit, that its lane links),
 * and skips steps 2 to 6 (it was sanitized, its retention decided, and it
 * was hashed and chained when first stored).  With tool_audit.restoring =
 * on, a superuser's row that brings its id but no chain position (a dump of
 * 1.0) keeps its id, timestamp, recorded_by and event_id, skips steps 2 to
 * 4, and is hashed and chained as it loads.  A row without an id is
 * recorded as usual.
 *
 * Either way the transaction is marked as having written audit data, so
 * that it commits with synchronous_commit = on (tool_audit.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "alerts.h"
#include "catalog.h"
#include "chain.h"
#include "crypto.h"
#include "hash.h"
#include "impersonation.h"
#include "idempotency.h"
#include "insert.h"
#include "jsonb_util.h"
#include "lane_hint.h"
#include "layout.h"
#include "restore.h"
#include "retention.h"
#include "rules.h"
#include "sanitize.h"
#include "summarize.h"
#include "tool_audit.h"
#include "trail_mark.h"

/*
 * Under valgrind, every row formed here is checked for uninitialised bytes
 * before it reaches a page: test/valgrind.supp has to suppress the WAL
 * writes of PostgreSQL's own padding, which would hide ours too.  Without
 * valgrind the check costs a few instructions.
 */
#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#endif
#endif
#ifndef VALGRIND_CHECK_MEM_IS_DEFINED
#define VALGRIND_CHECK_MEM_IS_DEFINED(addr, size) ((void) 0)
#endif

#define TA_LOCKTAG_EVENT_ID		0x5445

/*
 * The row on its way: deformed once, read and changed in place by each step,
 * formed once at the end.
 */
typedef struct AuditRow
{
	Relation	rel;
	const TaLayout *layout;
	HeapTuple	tuple;			/* the trigger's row; NULL for log_call() */
	bool		event_id_given; /* by the caller, not generated here */
	bool		skipped;		/* its event_id is taken: it will not be stored */
	Datum	   *values;
	bool	   *nulls;
} AuditRow;

static void
row_begin(AuditRow *row, Relation rel, HeapTuple tuple, Datum *values, bool *nulls)
{
	row->rel = rel;
	row->layout = ta_layout_of(rel);
	row->tuple = tuple;
	row->event_id_given = false;
	row->skipped = false;
	row->values = values;
	row->nulls = nulls;
	if (tuple != NULL)
	{
		row->values = palloc(sizeof(Datum) * row->layout->natts);
		row->nulls = palloc(sizeof(bool) * row->layout->natts);
		heap_deform_tuple(tuple, RelationGetDescr(rel), row->values, row->nulls);
	}
}

static Datum
get_col(AuditRow *row, TaColumn col, bool *isnull)
{
	int			i = ta_column(row->layout, col);

	*isnull = row->nulls[i];
	return row->values[i];
}

static void
set_col(AuditRow *row, TaColumn col, Datum value)
{
	int			i = ta_column(row->layout, col);

	row->values[i] = value;
	row->nulls[i] = false;
}

static bool
col_is_null(AuditRow *row, TaColumn col)
{
	return row->nulls[ta_column(row->layout, col)];
}

static TriggerData *
check_trigger(FunctionCallInfo fcinfo, const char *fname)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s: not called by trigger manager", fname)));
	if (!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s must be fired BEFORE INSERT FOR EACH ROW", fname)));
	return trigdata;
}

/* ---- 1. identity ---- */

static Datum
acting_role_name(void)
{
	return CStringGetTextDatum(GetUserNameFromId(GetOuterUserId(), false));
}

/* Does the table have the retention columns (1.4 on)? */
static bool
has_retention(const TaLayout *layout)
{
	return layout->column[TA_COL_RETENTION_POLICY] >= 0 &&
		layout->column[TA_COL_EXPIRES_AT] >= 0;
}

/*
 * A row's retention is decided here, like its id: a caller that could set
 * it could shorten it.  The value is not quoted (it could be anything).
 */
static void
refuse_retention_columns(AuditRow *row)
{
	static const TaColumn cols[] = {TA_COL_RETENTION_POLICY, TA_COL_EXPIRES_AT};

	if (!has_retention(row->layout))
		return;
	for (int i = 0; i < (int) lengthof(cols); i++)
		if (!col_is_null(row, cols[i]))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("%s of tool_audit.%s is decided by tool_audit",
							ta_column_name(cols[i]), row->layout->name),
					 errdetail("The retention policy and expiry of a row come from tool_audit.retention_policies when it is written."),
					 errhint("Leave the %s column out of the INSERT.", ta_column_name(cols[i]))));
}

/* Does the table have impersonated_by (1.5 on)? */
static bool
has_impersonation(const TaLayout *layout)
{
	return layout->column[TA_COL_IMPERSONATED_BY] >= 0;
}

/*
 * impersonated_by is decided here too, from the open impersonations: a
 * caller that could set it could blame an admin, or claim one, for a call.
 */
static void
refuse_impersonation_column(AuditRow *row)
{
	if (has_impersonation(row->layout) && !col_is_null(row, TA_COL_IMPERSONATED_BY))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("impersonated_by of tool_audit.%s is decided by tool_audit",
						row->layout->name),
				 errdetail("A row is marked impersonated when it is written during an impersonation started with tool_audit.start_impersonation()."),
				 errhint("Leave the impersonated_by column out of the INSERT.")));
}

/*
 * id, time, recorded_by and event_id: assigned here, except for a restored
 * row, which keeps what the dump says.  Returns true for a restored row: one
 * that brought its place in its chain (checked by restore.c), or, with
 * tool_audit.restoring = on, a superuser's row that brought its id.
 */
static bool
stamp_identity(AuditRow *row, TaColumn time_column)
{
	bool		isnull;
	Datum		id = get_col(row, TA_COL_ID, &isnull);
	bool		restored;

	if (ta_row_brings_place(row->layout, row->values, row->nulls))
	{
		ta_check_restored_row(row->rel, row->layout, row->values, row->nulls);
		row->event_id_given = true;
		return true;
	}
	/* superuser(): a setting left on for a database must not help others */
	restored = ta_restoring && !isnull && superuser();
	if (restored)
	{
		if (col_is_null(row, time_column))
			set_col(row, time_column, TimestampTzGetDatum(GetCurrentTimestamp()));
		if (col_is_null(row, TA_COL_RECORDED_BY))
			set_col(row, TA_COL_RECORDED_BY, acting_role_name());
	}
	else
	{
		if (!isnull)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("ids of tool_audit.%s are assigned by tool_audit",
							row->layout->name),
					 errdetail("The row came with id " INT64_FORMAT ".", DatumGetInt64(id)),
					 errhint("Leave the id column out of the INSERT.")));
		refuse_retention_columns(row);
		refuse_impersonation_column(row);
		set_col(row, TA_COL_ID,
				Int64GetDatum(nextval_internal(ta_id_sequence(row->layout), false)));
		set_col(row, time_column, TimestampTzGetDatum(ta_record_time()));
		set_col(row, TA_COL_RECORDED_BY, acting_role_name());
	}
	row->event_id_given = !col_is_null(row, TA_COL_EVENT_ID);
	if (!row->event_id_given)
		set_col(row, TA_COL_EVENT_ID, ta_new_event_id());
	return restored;
}

/*
 * A column with a default that an ORM sent as an explicit NULL gets the
 * default, like the columns the trigger fills itself.
 */
static void
fill_default(AuditRow *row, TaColumn col, const char *value)
{
	Oid			typid;

	if (!col_is_null(row, col))
		return;
	typid = TupleDescAttr(RelationGetDescr(row->rel), ta_column(row->layout, col))->atttypid;
	if (typid == TEXTOID)
		set_col(row, col, CStringGetTextDatum(value));
	else						/* the call_trigger enum */
		set_col(row, col, DirectFunctionCall2(enum_in, CStringGetDatum(value),
											  ObjectIdGetDatum(typid)));
}

/* ---- 1b. break-the-glass (1.5 on) ---- */

/* -1: absent or null; 0: false; 1: true */
static int
bool_state(const JsonbValue *v)
{
	if (v == NULL || v->type == jbvNull)
		return -1;
	if (v->type != jbvBool)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("break_glass in session_metadata must be true or false"),
				 errdetail("The value given is not a JSON boolean."),
				 errhint("An emergency access is logged with \"break_glass\": true and its \"break_glass_reason\" in the context.")));
	return v->val.boolean ? 1 : 0;
}

static bool
is_blank(const char *s, int len)
{
	for (int i = 0; i < len; i++)
		if (!isspace((unsigned char) s[i]))
			return false;
	return true;
}

/*
 * An emergency access: the context (session_metadata) says "break_glass":
 * true, or the INSERT brings break_glass = true.  Either needs a reason,
 * "break_glass_reason" in session_metadata, a non-empty string; the row
 * gets break_glass = true.  Read before sanitizing, so that no sanitizing
 * rule (which an admin can add) unflags an access or takes its reason
 * away; the reason is stored sanitized like the rest of session_metadata.
 * A row whose column and context disagree is refused.  Errors never quote
 * the values.
 */
static void
flag_break_glass(AuditRow *row)
{
	int			i = row->layout->column[TA_COL_BREAK_GLASS];
	bool		isnull;
	Datum		d;
	JsonbValue *reason = NULL;
	int			in_context = -1;
	int			in_column;

	if (i < 0)					/* a table not yet at 1.5 */
		return;
	in_column = row->nulls[i] ? -1 : (DatumGetBool(row->values[i]) ? 1 : 0);
	d = get_col(row, TA_COL_SESSION_METADATA, &isnull);
	if (!isnull)
	{
		Jsonb	   *m = DatumGetJsonbP(d);

		if (!JB_ROOT_IS_OBJECT(m))
			return;				/* refused by the sanitizing step */
		in_context = bool_state(ta_jsonb_key(&m->root, "break_glass"));
		reason = ta_jsonb_key(&m->root, "break_glass_reason");
	}
	if (in_context != 1 && in_column != 1)
		return;
	if (in_context >= 0 && in_column >= 0 && in_context != in_column)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("break_glass of tool_audit.tool_calls and \"break_glass\" in session_metadata disagree")));
	if (reason == NULL || reason->type != jbvString ||
		is_blank(reason->val.string.val, reason->val.string.len))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a break-the-glass call needs a reason"),
				 errdetail("\"break_glass_reason\" in the context (session_metadata) must be a non-empty string."),
				 errhint("Log it with \"break_glass\": true, \"break_glass_reason\": \"why\" in the context.")));
	set_col(row, TA_COL_BREAK_GLASS, BoolGetDatum(true));
}

/* ---- 2. sanitize ---- */

/* A jsonb column that must hold an object: NULL becomes {}, then sanitized. */
static void
sanitize_object_column(AuditRow *row, const TaRuleSet *rs, TaColumn col)
{
	const char *name = ta_column_name(col);
	bool		isnull;
	Datum		d = get_col(row, col, &isnull);
	Jsonb	   *in,
			   *out;

	if (isnull)
	{
		set_col(row, col, DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
		return;
	}
	in = DatumGetJsonbP(d);
	if (!JB_ROOT_IS_OBJECT(in))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a JSON object", name),
				 errdetail("The value given is a JSON %s.", ta_jsonb_type_name(in)),
				 errhint("Wrap the value in an object, for example {\"value\": ...}.")));
	out = ta_sanitize_jsonb(rs, in, name);
	if (out != in)
		set_col(row, col, JsonbPGetDatum(out));
}

static void
sanitize_text_column(AuditRow *row, const TaRuleSet *rs, TaColumn col)
{
	bool		isnull;
	Datum		d = get_col(row, col, &isnull);
	text	   *t;
	char	   *clean;

	if (isnull)
		return;
	t = DatumGetTextPP(d);
	clean = ta_sanitize_text(rs, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), ta_column_name(col));
	if (clean != NULL)
		set_col(row, col, CStringGetTextDatum(clean));
}

/* The columns each table sanitizes: jsonb objects, then free text. */
typedef struct SanitizedColumns
{
	int			nobjects;
	TaColumn	objects[3];
	int			ntexts;
	TaColumn	texts[10];
} SanitizedColumns;

static const SanitizedColumns tool_call_columns = {
	2, {TA_COL_ARGUMENTS, TA_COL_SESSION_METADATA},
	10, {TA_COL_TENANT_ID, TA_COL_CONVERSATION_ID, TA_COL_USER_ID, TA_COL_USER_ROLE,
		TA_COL_MODEL, TA_COL_TOOL_NAME, TA_COL_TOOL_CALL_ID, TA_COL_PURPOSE,
	TA_COL_SUBJECT_ID, TA_COL_USER_AGENT}
};

static const SanitizedColumns admin_event_columns = {
	2, {TA_COL_PAYLOAD, TA_COL_METADATA},
	3, {TA_COL_ACTOR, TA_COL_TENANT_ID, TA_COL_REASON}
};

static const SanitizedColumns data_change_columns = {
	3, {TA_COL_ROW_KEY, TA_COL_OLD_VALUES, TA_COL_NEW_VALUES},
	2, {TA_COL_TENANT_ID, TA_COL_APPLICATION_NAME}
};

static void
sanitize_columns(AuditRow *row, const TaRuleSet *rs, const SanitizedColumns *cols)
{
	for (int i = 0; i < cols->nobjects; i++)
		sanitize_object_column(row, rs, cols->objects[i]);
	for (int i = 0; i < cols->ntexts; i++)
		sanitize_text_column(row, rs, cols->texts[i]);
}

/* ---- 3. summarize ---- */

/*
 * result_summary becomes the summary of what it holds; success and error,
 * when the caller left them NULL, come from it (an error the caller gave is
 * sanitized instead).
 */
static void
summarize_result_column(AuditRow *row, const TaRuleSet *rs)
{
	bool		isnull,
				success_null,
				success;
	Datum		d = get_col(row, TA_COL_SUCCESS, &success_null);
	int			override = success_null ? -1 : (DatumGetBool(d) ? 1 : 0);
	Jsonb	   *summary;
	text	   *error;

	d = get_col(row, TA_COL_RESULT_SUMMARY, &isnull);
	summary = ta_summarize_result(rs, isnull ? NULL : DatumGetJsonbP(d), override,
								  &success, &error);
	set_col(row, TA_COL_RESULT_SUMMARY, JsonbPGetDatum(summary));
	if (success_null)
		set_col(row, TA_COL_SUCCESS, BoolGetDatum(success));
	if (col_is_null(row, TA_COL_ERROR) && error != NULL)
		set_col(row, TA_COL_ERROR, PointerGetDatum(error));
	else
		sanitize_text_column(row, rs, TA_COL_ERROR);
}

/*
 * The identifiers the report indexes hold: a btree entry cannot exceed about
 * a third of a page, so a longer value would fail with an "index row size"
 * error naming no column.  The documented limit (doc/recording.md) is
 * checked on the stored, sanitized value.
 */
#define TA_MAX_INDEXED_BYTES 2000

static void
check_indexed_lengths(AuditRow *row)
{
	static const TaColumn indexed[] = {
		TA_COL_TOOL_NAME, TA_COL_USER_ID, TA_COL_SUBJECT_ID, TA_COL_CONVERSATION_ID
	};

	for (int i = 0; i < (int) lengthof(indexed); i++)
	{
		bool		isnull;
		Datum		d;
		int			len;

		if (row->layout->column[indexed[i]] < 0)
			continue;
		d = get_col(row, indexed[i], &isnull);
		if (isnull)
			continue;
		len = VARSIZE_ANY_EXHDR(DatumGetTextPP(d));
		if (len > TA_MAX_INDEXED_BYTES)
			ereport(ERROR,
					(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
					 errmsg("%s is longer than %d bytes",
							ta_column_name(indexed[i]), TA_MAX_INDEXED_BYTES),
					 errdetail("It is %d bytes long.", len),
					 errhint("Identifiers are indexed for reports; keep long text in arguments or session_metadata.")));
	}
}

/* ---- 4. retention ---- */

static const char *
text_col(AuditRow *row, TaColumn col, int *len)
{
	bool		isnull;
	Datum		d = get_col(row, col, &isnull);
	text	   *t;

	*len = 0;
	if (isnull)
		return NULL;
	t = DatumGetTextPP(d);
	*len = VARSIZE_ANY_EXHDR(t);
	return VARDATA_ANY(t);
}

/*
 * impersonated_by: the admin impersonating the row's user (tool_calls) or
 * actor (admin_events) in the row's tenant at the row's time, in an
 * impersonation started by the row's recorded_by, if any (impersonation.c),
 * compared on the sanitized values.
 */
static void
stamp_impersonation(AuditRow *row, TaColumn user_column, TaColumn time_column)
{
	int			userlen,
				tenantlen,
				recorderlen,
				adminlen;
	const char *user;
	const char *tenant;
	const char *recorder;
	const char *admin;
	bool		isnull;
	Datum		at;

	if (!has_impersonation(row->layout))
		return;
	user = text_col(row, user_column, &userlen);
	tenant = text_col(row, TA_COL_TENANT_ID, &tenantlen);
	recorder = text_col(row, TA_COL_RECORDED_BY, &recorderlen);
	at = get_col(row, time_column, &isnull);
	if (user == NULL || recorder == NULL || isnull)
		return;
	admin = ta_impersonator(tenant, tenantlen, user, userlen, recorder, recorderlen,
							DatumGetTimestampTz(at), &adminlen);
	if (admin != NULL)
		set_col(row, TA_COL_IMPERSONATED_BY,
				PointerGetDatum(cstring_to_text_with_len(admin, adminlen)));
}

/*
 * retention_policy and expires_at of a new row, as retention_policy_for()
 * and current_retention_days() would decide them now.  A row of a table
 * not yet at 1.4 has neither.
 */
static void
decide_retention(AuditRow *row, TaColumn name_column, TaColumn time_column)
{
	int			namelen,
				tenantlen,
				policylen;
	const char *name = text_col(row, name_column, &namelen);
	const char *tenant = text_col(row, TA_COL_TENANT_ID, &tenantlen);
	const char *policy;
	int32		days;
	bool		isnull;
	Datum		at;

	if (!has_retention(row->layout))
		return;
	ta_retention_decide_for(row->layout->name, name, namelen,
							tenant, tenantlen, tenant == NULL, &policy, &policylen, &days);
	if (policy != NULL)
		set_col(row, TA_COL_RETENTION_POLICY, PointerGetDatum(cstring_to_text_with_len(policy, policylen)));
	at = get_col(row, time_column, &isnull);
	if (days >= 0 && !isnull)
		set_col(row, TA_COL_EXPIRES_AT,
				TimestampTzGetDatum(ta_expiry(DatumGetTimestampTz(at), days)));
}

/* ---- 5. and 6. hash and chain, unless the row will not be stored ---- */

/* the event_id lock of the last row that brought one, if still held */
static LOCKTAG event_id_lock;
static bool event_id_locked = false;

static void
release_event_id_lock(void)
{
	if (event_id_locked && IsTransactionState())
		ta_xact_unlock(&event_id_lock);
	event_id_locked = false;
}

/* transaction locks are gone at its end, or pass to a prepared transaction */
static void
insert_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PRE_PREPARE)
		event_id_locked = false;
}

void
ta_insert_init(void)
{
	RegisterXactCallback(insert_xact_callback, NULL);
}

/*
 * Will this row be stored?  An INSERT ... ON CONFLICT DO NOTHING skips a row
 * whose event_id is taken *after* the BEFORE trigger gave it a position, which
 * would leave a hole in the chain.  So when the caller brings an event_id,
 * the trigger first serializes on it (a transaction-level lock on its value)
 * and looks for a live row holding it, its own transaction's rows included;
 * an insert still in progress elsewhere is waited for, as a unique index
 * would.  A row whose event_id is taken gets no chain position: it is either
 * skipped (DO NOTHING) or refused by the unique index (23505), never stored.
 */
static bool
event_id_taken(AuditRow *row)
{
	bool		isnull;
	Datum		event_id = get_col(row, TA_COL_EVENT_ID, &isnull);
	Relation	irel;
	SnapshotData dirty;
	ScanKeyData key;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	LOCKTAG		tag;
	const unsigned char *u = DatumGetUUIDP(event_id)->data;
	bool		taken;

	/*
	 * The previous row's lock is not needed any more: that row is in the
	 * unique index now, where the probe below (with a dirty snapshot) sees
	 * it, and waits for its transaction.  So a transaction holds one such
	 * lock at a time, however many rows it inserts.
	 */
	release_event_id_lock();
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId,
						 ((uint32) u[0] << 24) | (u[1] << 16) | (u[2] << 8) | u[3],
						 ((uint32) u[12] << 24) | (u[13] << 16) | (u[14] << 8) | u[15],
						 TA_LOCKTAG_EVENT_ID);
	(void) ta_xact_lock(&tag, true);
	event_id_lock = tag;
	event_id_locked = true;

	irel = index_open(ta_event_id_index(row->layout), AccessShareLock);
	slot = table_slot_create(row->rel, NULL);
	for (;;)
	{
		TransactionId xwait;

		InitDirtySnapshot(dirty);
		ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_UUID_EQ, event_id);
		scan = ta_index_scan(row->rel, irel, &dirty, &key, 1);
		taken = index_getnext_slot(scan, ForwardScanDirection, slot);
		/* the dirty snapshot says who holds the row only when it found one */
		xwait = !taken ? InvalidTransactionId :
			TransactionIdIsValid(dirty.xmin) ? dirty.xmin : dirty.xmax;
		index_endscan(scan);
		if (!TransactionIdIsValid(xwait))
			break;
		/* another transaction is inserting or deleting it: wait, look again */
		XactLockTableWait(xwait, row->rel, NULL, XLTW_InsertIndex);
	}
	ExecDropSingleTupleTableSlot(slot);
	index_close(irel, AccessShareLock);
	/* a row that will not be stored needs no lock: nobody waits for it */
	if (taken)
		release_event_id_lock();
	return taken;
}

/*
 * Does the row get a row hash and a chain position?  Not on a table still
 * at version 1.0 (the library was updated, ALTER EXTENSION UPDATE not yet
 * run: rows are recorded unchained, as 1.0 did, until the upgrade chains
 * them), not for a restored row that brings its hash (it keeps its place),
 * and not for a row that will not be stored.
 */
static bool
takes_chain_position(AuditRow *row, bool restored)
{
	if (!row->layout->chained)
		return false;
	if (restored && !col_is_null(row, TA_COL_ROW_HASH))
		return false;
	row->skipped = row->event_id_given && event_id_taken(row);
	return !row->skipped;
}

/* ---- 1b. the two halves of a call (1.5 on) ---- */

#define TA_LOCKTAG_CALL_END		0x5443

/* set by the autonomous worker (autonomous.c) while it writes */
bool		ta_autonomous_writer = false;

/*
 * The stored tool_calls row with this event_id that the given snapshot
 * sees (GetLatestSnapshot(): committed rows, and this transaction's), as a
 * copy; NULL if there is none.
 */
HeapTuple
ta_fetch_tool_call(Relation rel, Datum event_id)
{
	const TaLayout *layout = ta_layout_of(rel);
	Relation	irel = index_open(ta_event_id_index(layout), AccessShareLock);
	Snapshot	snap = RegisterSnapshot(GetLatestSnapshot());
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	ScanKeyData key;
	IndexScanDesc scan;
	HeapTuple	found = NULL;

	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_UUID_EQ, event_id);
	scan = ta_index_scan(rel, irel, snap, &key, 1);
	if (index_getnext_slot(scan, ForwardScanDirection, slot))
		found = ExecCopySlotHeapTuple(slot);
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	UnregisterSnapshot(snap);
	index_close(irel, AccessShareLock);
	return found;
}

/* The error for an end of a call that no started row records. */
void
ta_call_not_begun(Datum call)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("tool call %s was not begun",
					DatumGetCString(DirectFunctionCall1(uuid_out, call))),
			 errdetail("No committed started row of tool_audit.tool_calls has that event_id."),
			 errhint("Pass the uuid that tool_audit.begin_call() returned.")));
}

static const char *
phase_of(AuditRow *row)
{
	bool		isnull;
	Datum		d;

	if (row->layout->column[TA_COL_CALL_PHASE] < 0)
		return NULL;
	d = get_col(row, TA_COL_CALL_PHASE, &isnull);
	return isnull ? NULL : TextDatumGetCString(d);
}

/*
 * Has the call this ended row closes been ended already?  As for event_id
 * above: serialize on the value (a transaction-level lock, kept to the end
 * of the transaction: no unique index makes a second writer wait), then look
 * with a dirty snapshot.  A second end is refused, never skipped.
 */
static bool
call_already_ended(AuditRow *row, Datum call)
{
	const unsigned char *u = DatumGetUUIDP(call)->data;
	LOCKTAG		tag;
	Relation	irel;
	SnapshotData dirty;
	ScanKeyData key;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	bool		found;

	if (!OidIsValid(row->layout->call_event_index))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("index tool_audit.tool_calls_call_event_id is missing"),
				 errhint("Run ALTER EXTENSION tool_audit UPDATE, or reinstall the extension.")));
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId,
						 ((uint32) u[0] << 24) | (u[1] << 16) | (u[2] << 8) | u[3],
						 ((uint32) u[12] << 24) | (u[13] << 16) | (u[14] << 8) | u[15],
						 TA_LOCKTAG_CALL_END);
	(void) ta_xact_lock(&tag, true);

	irel = index_open(row->layout->call_event_index, AccessShareLock);
	slot = table_slot_create(row->rel, NULL);
	InitDirtySnapshot(dirty);
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_UUID_EQ, call);
	scan = ta_index_scan(row->rel, irel, &dirty, &key, 1);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(irel, AccessShareLock);
	return found;
}

/*
 * call_phase, call_event_id and caller_txid of a new row.  A started row
 * names no call and records no outcome yet (success stays NULL); an ended
 * row names the started row it closes, which must exist (committed, or
 * written earlier in this transaction), be of the same tenant and have
 * been recorded by the same role, and not be ended yet.  caller_txid is
 * written by the autonomous worker only: anyone else could claim that a
 * transaction of their choice was the caller.
 */
static void
check_call_phase(AuditRow *row)
{
	const char *phase = phase_of(row);
	bool		isnull;
	Datum		call;

	if (row->layout->column[TA_COL_CALL_PHASE] < 0)
		return;					/* a table not yet at 1.5 */
	if (!col_is_null(row, TA_COL_CALLER_TXID) && !ta_autonomous_writer)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("caller_txid of tool_audit.tool_calls is written by tool_audit's autonomous writes only"),
				 errhint("Leave the caller_txid column out of the INSERT; use begin_call(), end_call() or \"autonomous\": true in log_call()'s context.")));
	call = get_col(row, TA_COL_CALL_EVENT_ID, &isnull);
	if (phase == NULL || strcmp(phase, "started") == 0)
	{
		if (!isnull)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("call_event_id is for ended rows only"),
					 errdetail("A %s row names no other call.", phase ? "started" : "one-row call's")));
		if (phase == NULL)
			return;
		if (!col_is_null(row, TA_COL_SUCCESS) || !col_is_null(row, TA_COL_ERROR) ||
			!col_is_null(row, TA_COL_DURATION_MS) ||
			(!col_is_null(row, TA_COL_RESULT_SUMMARY) &&
			 JB_ROOT_COUNT(DatumGetJsonbP(get_col(row, TA_COL_RESULT_SUMMARY, &isnull))) != 0))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a started call has no result, success, error or duration yet"),
					 errhint("Record the outcome in the ended row (tool_audit.end_call()).")));
		return;
	}
	/* ended (the check constraint knows no other phase) */
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("an ended row must name the started call in call_event_id")));
	{
		HeapTuple	started = ta_fetch_tool_call(row->rel, call);
		TupleDesc	desc = RelationGetDescr(row->rel);
		char	   *callstr = DatumGetCString(DirectFunctionCall1(uuid_out, call));
		bool		snull,
					tnull,
					ok;
		Datum		s,
					t;

		ok = started != NULL;
		if (ok)
		{
			s = heap_getattr(started, ta_column(row->layout, TA_COL_CALL_PHASE) + 1, desc, &snull);
			ok = !snull && strcmp(TextDatumGetCString(s), "started") == 0;
		}
		if (!ok)
			ta_call_not_begun(call);
		s = heap_getattr(started, ta_column(row->layout, TA_COL_TENANT_ID) + 1, desc, &snull);
		t = get_col(row, TA_COL_TENANT_ID, &tnull);
		if (!ta_same_text(s, snull, t, tnull))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("tool call %s was begun for another tenant", callstr)));
		s = heap_getattr(started, ta_column(row->layout, TA_COL_RECORDED_BY) + 1, desc, &snull);
		t = get_col(row, TA_COL_RECORDED_BY, &tnull);
		if (!ta_same_text(s, snull, t, tnull))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("tool call %s was begun by another role", callstr),
					 errdetail("A call is ended by the database role that began it.")));
		if (call_already_ended(row, call))
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("tool call %s has already ended", callstr)));
	}
}

/* A started row: its outcome is recorded by the ended row. */
static bool
started_row(AuditRow *row)
{
	const char *phase = phase_of(row);

	return phase != NULL && strcmp(phase, "started") == 0;
}

/* ---- 7. store ---- */

/* The stored row, formed once; a trigger's keeps its original's identity. */
static HeapTuple
form_row(AuditRow *row)
{
	HeapTuple	out = heap_form_tuple(RelationGetDescr(row->rel), row->values, row->nulls);

	VALGRIND_CHECK_MEM_IS_DEFINED(out->t_data, out->t_len);

	if (row->tuple != NULL)
	{
		/* what heap_modify_tuple would keep of the original */
		out->t_data->t_ctid = row->tuple->t_data->t_ctid;
		out->t_self = row->tuple->t_self;
		out->t_tableOid = row->tuple->t_tableOid;
	}
	return out;
}

/* Steps 5 to 7, shared by both tables and by restored rows. */
static HeapTuple
hash_chain_and_form(AuditRow *row, bool restored)
{
	bool		chained;

	ta_note_audit_write();
	/* a restored row may bring a position in a lane nobody took */
	if (restored)
		ta_lane_hint_invalidate();
	chained = takes_chain_position(row, restored);
	/* a row that will be stored, restored ones too, marks its table (trail_mark.c) */
	if (!row->skipped)
		ta_trail_mark(row->rel);
	if (chained)
	{
		unsigned char row_hash[TA_HASH_LEN];
		TaChainHead placed;

		ta_row_hash(row->layout, row->values, row->nulls, row_hash);
		ta_chain_append(row->rel, row->layout,
						ta_chain_id(row->layout, row->values, row->nulls),
						row_hash, &placed);
		ta_chain_store(row->layout, row->values, row->nulls, row_hash, &placed);
	}
	return form_row(row);
}

/* ---- the three tables ---- */

/*
 * The row of tool_audit.tool_calls that is stored for the given one.  The
 * insert trigger's work on its tuple; log_call() passes the columns instead
 * (tuple NULL; values and nulls, one per column, are changed in place).
 * For log_call(), a retry of a call already stored gives the stored row
 * instead, not to be inserted (ta_is_stored_row(), idempotency.c).
 */
HeapTuple
ta_record_tool_call(Relation rel, HeapTuple tuple, Datum *values, bool *nulls)
{
	const TaRuleSet *rs = ta_get_rules();
	AuditRow	row;
	HeapTuple	retry;
	HeapTuple	stored;

	row_begin(&row, rel, tuple, values, nulls);
	/* a dumped row was sanitized when it was first stored: keep it as it is */
	if (stamp_identity(&row, TA_COL_RECORDED_AT))
		return hash_chain_and_form(&row, true);
	fill_default(&row, TA_COL_CALL_TRIGGER, "user_request");
	flag_break_glass(&row);
	sanitize_columns(&row, rs, &tool_call_columns);
	check_call_phase(&row);		/* after sanitize: tenants compare as stored */
	check_indexed_lengths(&row);
	if (started_row(&row))
		set_col(&row, TA_COL_RESULT_SUMMARY, DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
	else
		summarize_result_column(&row, rs);
	stamp_impersonation(&row, TA_COL_USER_ID, TA_COL_RECORDED_AT);
	decide_retention(&row, TA_COL_TOOL_NAME, TA_COL_RECORDED_AT);
	/* the client's started_at; a retry of a stored call (idempotency.c) */
	ta_check_started_at(row.layout, row.values, row.nulls);
	retry = ta_stored_retry(rel, row.layout, row.values, row.nulls, row.event_id_given,
							tuple == NULL);
	if (retry != NULL)
		return retry;
	stored = hash_chain_and_form(&row, false);
	/* alerts (alerts.c), for a row that will be stored */
	if (!row.skipped)
		ta_alerts_tool_call(rel, row.layout, row.values, row.nulls);
	return stored;
}

/*
 * Event types under "tool_audit." record the extension's own administration
 * (rule changes, key rotations, tenant bindings); only its own functions,
 * which run as the table owner, may write them.  tool_audit.log_event()
 * refuses them for the same reason.
 */
static bool
check_reserved_event_type(AuditRow *row)
{
	bool		isnull;
	Datum		d = get_col(row, TA_COL_EVENT_TYPE, &isnull);
	text	   *t;
	bool		reserved;
	bool		read_event;

	if (isnull)
		return false;
	t = DatumGetTextPP(d);
	reserved = VARSIZE_ANY_EXHDR(t) >= 11 &&
		memcmp(VARDATA_ANY(t), "tool_audit.", 11) == 0;
	/* (1.5) audit.read: the reports' record_read() only, sanitized as usual */
	read_event = VARSIZE_ANY_EXHDR(t) == 10 && memcmp(VARDATA_ANY(t), "audit.read", 10) == 0;
	if ((reserved || read_event) &&
		!((ta_restoring || ta_row_brings_place(row->layout, row->values, row->nulls)) &&
		  superuser()) &&
		GetUserId() != row->rel->rd_rel->relowner)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 read_event ?
				 errmsg("event type \"audit.read\" is recorded by tool_audit's reports only") :
				 errmsg("event types starting with \"tool_audit.\" are reserved for tool_audit itself")));
	return reserved;
}

/* A tool_audit.retention.purge event (its type already checked as reserved). */
static bool
is_purge_event(AuditRow *row)
{
	static const char type[] = "tool_audit.retention.purge";
	bool		isnull;
	Datum		d = get_col(row, TA_COL_EVENT_TYPE, &isnull);
	text	   *t;

	if (isnull)
		return false;
	t = DatumGetTextPP(d);
	return VARSIZE_ANY_EXHDR(t) == strlen(type) &&
		memcmp(VARDATA_ANY(t), type, strlen(type)) == 0;
}

/* The row of tool_audit.admin_events that is stored for the given one. */
static HeapTuple
record_admin_event(Relation rel, HeapTuple tuple)
{
	const TaRuleSet *rs = ta_get_rules();
	AuditRow	row;
	HeapTuple	stored;

	row_begin(&row, rel, tuple, NULL, NULL);

	/*
	 * The extension's own events are sanitized by the built-in rules only:
	 * rules an admin can edit must not be able to blank the record of their
	 * own edits.
	 */
	if (check_reserved_event_type(&row))
		rs = rs->builtin;
	if (stamp_identity(&row, TA_COL_OCCURRED_AT))
		return hash_chain_and_form(&row, true);
	fill_default(&row, TA_COL_ACTOR_TYPE, "user");

	/*
	 * A purge event is the proof of what a purge removed, written by
	 * purge_expired() (as the owner: the type is reserved) from the audit
	 * tables' own stored values: chain ids, links, counts, tenants already
	 * sanitized when their rows were stored.  Sanitizing it again could only
	 * corrupt the proof (a chain id can pass for a card number).
	 */
	if (!is_purge_event(&row))
	{
		sanitize_columns(&row, rs, &admin_event_columns);
		stamp_impersonation(&row, TA_COL_ACTOR, TA_COL_OCCURRED_AT);
	}
	decide_retention(&row, TA_COL_EVENT_TYPE, TA_COL_OCCURRED_AT);
	stored = hash_chain_and_form(&row, false);
	if (!row.skipped)
		ta_alerts_admin_event(row.layout, row.values, row.nulls);
	return stored;
}

/*
 * The transaction that made a change is the one writing its record; a row
 * that names another is refused (it would attribute the change elsewhere).
 */
static void
stamp_txid(AuditRow *row)
{
	bool		isnull;
	Datum		given = get_col(row, TA_COL_TXID, &isnull);
	int64		mine = (int64) U64FromFullTransactionId(GetTopFullTransactionId());

	if (!isnull && DatumGetInt64(given) != mine)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("txid of tool_audit.data_changes is the transaction that writes the row"),
				 errhint("Leave the txid column out of the INSERT.")));
	set_col(row, TA_COL_TXID, Int64GetDatum(mine));
}

/* The row of tool_audit.data_changes that is stored for the given one. */
static HeapTuple
record_data_change(Relation rel, HeapTuple tuple)
{
	const TaRuleSet *rs = ta_get_rules();
	AuditRow	row;

	row_begin(&row, rel, tuple, NULL, NULL);
	if (stamp_identity(&row, TA_COL_RECORDED_AT))
		return hash_chain_and_form(&row, true);
	stamp_txid(&row);
	sanitize_columns(&row, rs, &data_change_columns);
	check_indexed_lengths(&row);
	/* the policy covering the tracked table (doc/retention.md) */
	decide_retention(&row, TA_COL_TABLE_NAME, TA_COL_RECORDED_AT);
	return hash_chain_and_form(&row, false);
}

/* tool_audit.tool_calls_before_insert() RETURNS trigger */
PG_FUNCTION_INFO_V1(tool_calls_before_insert);
Datum
tool_calls_before_insert(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = check_trigger(fcinfo, "tool_calls_before_insert");

	return PointerGetDatum(ta_record_tool_call(trigdata->tg_relation,
											   trigdata->tg_trigtuple, NULL, NULL));
}

/* tool_audit.admin_events_before_insert() RETURNS trigger */
PG_FUNCTION_INFO_V1(admin_events_before_insert);
Datum
admin_events_before_insert(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = check_trigger(fcinfo, "admin_events_before_insert");

	return PointerGetDatum(record_admin_event(trigdata->tg_relation,
											  trigdata->tg_trigtuple));
}

/* tool_audit.data_changes_before_insert() RETURNS trigger */
PG_FUNCTION_INFO_V1(data_changes_before_insert);
Datum
data_changes_before_insert(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = check_trigger(fcinfo, "data_changes_before_insert");

	return PointerGetDatum(record_data_change(trigdata->tg_relation,
											  trigdata->tg_trigtuple));
}

/*
 * tool_audit.acting_role() RETURNS text
 *
 * The role the session acts as (after SET ROLE), which a SECURITY DEFINER
 * function cannot see through current_user: admin events logged from inside
 * the extension's own functions are attributed to it.
 */
PG_FUNCTION_INFO_V1(acting_role);
Datum
acting_role(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(acting_role_name());
}
