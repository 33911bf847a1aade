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
 *	2. sanitize: the jsonb columns must be objects (NULL becomes {}) and are
 *	   sanitized, and the value rules apply to every text column (ids
 *	   included: a token pasted into user_id is caught like one in the
 *	   arguments);
 *	3. summarize (tool_calls): result_summary is reduced to a summary (so an
 *	   ORM that stores a whole result still stores only its summary), and
 *	   success and error are derived from it when the caller left them NULL;
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
#include "insert.h"
#include "jsonb_util.h"
#include "layout.h"
#include "restore.h"
#include "retention.h"
#include "rules.h"
#include "sanitize.h"
#include "summarize.h"
#include "tool_audit.h"

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
	TaColumn	objects[2];
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

		if (ta_column(row->layout, indexed[i]) < 0)
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
	ta_retention_decide(name_column == TA_COL_EVENT_TYPE, name, namelen,
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
		xwait = TransactionIdIsValid(dirty.xmin) ? dirty.xmin : dirty.xmax;
		index_endscan(scan);
		if (!taken || !TransactionIdIsValid(xwait))
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

/* ---- 7. store ---- */

/* The stored row, formed once; a trigger's keeps its original's identity. */
static HeapTuple
form_row(AuditRow *row)
{
	HeapTuple	out = heap_form_tuple(RelationGetDescr(row->rel), row->values, row->nulls);

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
	ta_note_audit_write();
	if (takes_chain_position(row, restored))
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

/* ---- the two tables ---- */

/*
 * The row of tool_audit.tool_calls that is stored for the given one.  The
 * insert trigger's work on its tuple; log_call() passes the columns instead
 * (tuple NULL; values and nulls, one per column, are changed in place).
 */
HeapTuple
ta_record_tool_call(Relation rel, HeapTuple tuple, Datum *values, bool *nulls)
{
	const TaRuleSet *rs = ta_get_rules();
	AuditRow	row;
	HeapTuple	stored;

	row_begin(&row, rel, tuple, values, nulls);
	/* a dumped row was sanitized when it was first stored: keep it as it is */
	if (stamp_identity(&row, TA_COL_RECORDED_AT))
		return hash_chain_and_form(&row, true);
	fill_default(&row, TA_COL_CALL_TRIGGER, "user_request");
	sanitize_columns(&row, rs, &tool_call_columns);
	check_indexed_lengths(&row);
	summarize_result_column(&row, rs);
	decide_retention(&row, TA_COL_TOOL_NAME, TA_COL_RECORDED_AT);
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

	if (isnull)
		return false;
	t = DatumGetTextPP(d);
	reserved = VARSIZE_ANY_EXHDR(t) >= 11 &&
		memcmp(VARDATA_ANY(t), "tool_audit.", 11) == 0;
	if (reserved && !((ta_restoring || ta_row_brings_place(row->layout, row->values, row->nulls)) &&
					  superuser()) &&
		GetUserId() != row->rel->rd_rel->relowner)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
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
		sanitize_columns(&row, rs, &admin_event_columns);
	decide_retention(&row, TA_COL_EVENT_TYPE, TA_COL_OCCURRED_AT);
	stored = hash_chain_and_form(&row, false);
	if (!row.skipped)
		ta_alerts_admin_event(row.layout, row.values, row.nulls);
	return stored;
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
