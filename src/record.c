/*-------------------------------------------------------------------------
 *
 * record.c
 *		BEFORE INSERT row triggers of tool_audit.tool_calls and
 *		tool_audit.admin_events: the single path every audit row takes,
 *		whether it comes from log_call()/log_event(), a plain INSERT, COPY
 *		or an ORM.
 *
 * For tool_calls the trigger
 *	- assigns id from tool_audit.tool_calls_id_seq; a caller-supplied id is
 *	  refused (it could squat on ids and block other writers),
 *	- stamps recorded_at with the server's clock (a client cannot backdate)
 *	  and recorded_by with the database role acting (after SET ROLE; through
 *	  SECURITY DEFINER functions),
 *	- gives the row an event_id when it has none,
 *	- requires arguments and session_metadata to be JSON objects (NULL
 *	  becomes {}) and sanitizes them,
 *	- summarizes result_summary (so an ORM that stores a whole result still
 *	  stores only its summary) and derives success and error from it when
 *	  the caller left them NULL,
 *	- applies the value rules to every text column (ids included: a token
 *	  pasted into user_id is caught like one in the arguments).
 * For admin_events it does the same for id, occurred_at, recorded_by,
 * event_id, payload, metadata and the text columns, and reserves event types
 * starting "tool_audit." for the extension's own functions.
 *
 * Restoring a dump: with tool_audit.restoring = on, a row a superuser
 * inserts that brings its id keeps it, with its timestamp, recorded_by and event_id,
 * so a restored row is the row that was dumped; sanitizing is idempotent, so
 * the rest is unchanged too.  A row without an id is recorded as usual.
 *
 * Either way the transaction is marked as having written audit data, so
 * that it commits with synchronous_commit = on (tool_audit.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "tool_audit.h"

/*
 * The row a trigger rewrites: deformed once, read and fixed in place, then
 * hashed, chained and formed once (apply_fixes).
 */
typedef struct RowFix
{
	HeapTuple	tuple;			/* the trigger's row; NULL for log_call() */
	TupleDesc	desc;
	Oid			relid;
	bool		event_id_given; /* by the caller, not generated here */
	Datum	   *values;
	bool	   *nulls;
} RowFix;

/*
 * Column numbers by name, remembered per backend: the trigger asks for the
 * same ~25 (relation, name) pairs on every row.  Names are this file's string
 * literals, so the pointer is the key (hashed into an open-addressing
 * table).  Column numbers cannot change under us: dropping or renaming a
 * column of an audit table is refused, and a new extension gets new relation
 * oids.
 */
typedef struct AttCacheEntry
{
	Oid			relid;
	const char *name;			/* NULL: free */
	int			attnum;
} AttCacheEntry;

#define ATT_CACHE_SIZE 128		/* a power of two */
StaticAssertDecl((ATT_CACHE_SIZE & (ATT_CACHE_SIZE - 1)) == 0, "a power of two");

static AttCacheEntry att_cache[ATT_CACHE_SIZE];
static int	att_cache_n = 0;

static int
attnum_of(Oid relid, TupleDesc desc, const char *name)
{
	uint32		h = murmurhash32((uint32) (uintptr_t) name ^ relid);
	AttCacheEntry *e = NULL;
	int			attnum;

	for (int probe = 0; probe < ATT_CACHE_SIZE; probe++)
	{
		e = &att_cache[(h + probe) & (ATT_CACHE_SIZE - 1)];
		if (e->name == NULL)
			break;
		if (e->name == name && e->relid == relid)
			return e->attnum;
	}
	attnum = SPI_fnumber(desc, name);
	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("audit table has no column \"%s\"", name)));
	/* keep the table at most half full, so a probe ends at a free entry */
	if (e->name == NULL && att_cache_n < ATT_CACHE_SIZE / 2)
	{
		e->relid = relid;
		e->name = name;
		e->attnum = attnum;
		att_cache_n++;
	}
	return attnum;
}

static void
row_fix_init(RowFix *fix, Relation rel, HeapTuple tuple, Datum *values, bool *nulls)
{
	fix->tuple = tuple;
	fix->desc = RelationGetDescr(rel);
	fix->relid = RelationGetRelid(rel);
	fix->event_id_given = false;
	fix->values = values;
	fix->nulls = nulls;
	if (tuple != NULL)
	{
		fix->values = palloc(sizeof(Datum) * fix->desc->natts);
		fix->nulls = palloc(sizeof(bool) * fix->desc->natts);
		heap_deform_tuple(tuple, fix->desc, fix->values, fix->nulls);
	}
}

static Datum
get_col(RowFix *fix, const char *name, bool *isnull)
{
	int			i = attnum_of(fix->relid, fix->desc, name) - 1;

	*isnull = fix->nulls[i];
	return fix->values[i];
}

static void
set_col(RowFix *fix, const char *name, Datum value, bool isnull)
{
	int			i = attnum_of(fix->relid, fix->desc, name) - 1;

	fix->values[i] = value;
	fix->nulls[i] = isnull;
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

/* A jsonb column that must hold an object: NULL becomes {}, then sanitized. */
static void
fix_object_column(RowFix *fix, const TaRuleSet *rs, const char *name)
{
	bool		isnull;
	Datum		d = get_col(fix, name, &isnull);
	Jsonb	   *in,
			   *out;

	if (isnull)
	{
		set_col(fix, name, DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")), false);
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
		set_col(fix, name, JsonbPGetDatum(out), false);
}

static void
fix_text_column(RowFix *fix, const TaRuleSet *rs, const char *name)
{
	bool		isnull;
	Datum		d = get_col(fix, name, &isnull);
	text	   *t;
	char	   *clean;

	if (isnull)
		return;
	t = DatumGetTextPP(d);
	clean = ta_sanitize_text(rs, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), name);
	if (clean != NULL)
		set_col(fix, name, CStringGetTextDatum(clean), false);
}

/*
 * The id sequence of an audit table ("<table>_id_seq" beside it), looked up
 * once per table and backend: a sequence cannot change under its table
 * without the table changing too (its oid is the cache key).
 */
static Oid
id_sequence(Relation rel)
{
	static Oid	relids[4];
	static Oid	seqs[4];
	Oid			relid = RelationGetRelid(rel);
	char	   *seqname;
	Oid			seq;

	for (int i = 0; i < (int) lengthof(relids); i++)
		if (relids[i] == relid)
			return seqs[i];
	seqname = psprintf("%s_id_seq", RelationGetRelationName(rel));
	seq = get_relname_relid(seqname, RelationGetNamespace(rel));
	if (!OidIsValid(seq))
		elog(ERROR, "sequence tool_audit.%s is missing", seqname);
	for (int i = 0; i < (int) lengthof(relids); i++)
		if (!OidIsValid(relids[i]))
		{
			relids[i] = relid;
			seqs[i] = seq;
			break;
		}
	return seq;
}

/*
 * A new event id: a version 4 UUID, like gen_random_uuid(), from the same
 * source (pg_strong_random), drawn a batch at a time.  One call into
 * OpenSSL's generator costs more than the rest of a row's identity columns
 * together (perf: ~30% of the insert trigger at one id per call); event ids
 * are identifiers, not secrets, so holding the next few in backend memory
 * gives nothing away.
 */
#define EVENT_ID_BATCH 64

static unsigned char event_id_pool[EVENT_ID_BATCH * UUID_LEN];
static int	event_id_next = EVENT_ID_BATCH;

static Datum
new_event_id(void)
{
	pg_uuid_t  *u = palloc(sizeof(pg_uuid_t));

	if (event_id_next == EVENT_ID_BATCH)
	{
		ta_random_bytes(event_id_pool, sizeof(event_id_pool));
		event_id_next = 0;
	}
	memcpy(u->data, event_id_pool + event_id_next * UUID_LEN, UUID_LEN);
	event_id_next++;
	u->data[6] = (u->data[6] & 0x0F) | 0x40;	/* version 4 */
	u->data[8] = (u->data[8] & 0x3F) | 0x80;	/* RFC 4122 variant */
	return UUIDPGetDatum(u);
}

static Datum
acting_role_name(void)
{
	return CStringGetTextDatum(GetUserNameFromId(GetOuterUserId(), false));
}

/*
 * id, time, recorded_by and event_id: assigned here, except for a restore
 * (tool_audit.restoring), which keeps what the dump says.  Returns true for
 * a restored row (a superuser's row that brought its id while restoring).
 */
static bool
fix_identity(RowFix *fix, Relation rel, const char *time_column)
{
	bool		isnull;
	Datum		id = get_col(fix, "id", &isnull);

	/* superuser(): a setting left on for a database must not help others */
	bool		restored = ta_restoring && !isnull && superuser();

	if (restored)
	{
		(void) get_col(fix, time_column, &isnull);
		if (isnull)
			set_col(fix, time_column, TimestampTzGetDatum(GetCurrentTimestamp()), false);
		(void) get_col(fix, "recorded_by", &isnull);
		if (isnull)
			set_col(fix, "recorded_by", acting_role_name(), false);
	}
	else
	{
		if (!isnull)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("ids of tool_audit.%s are assigned by tool_audit",
							RelationGetRelationName(rel)),
					 errdetail("The row came with id " INT64_FORMAT ".", DatumGetInt64(id)),
					 errhint("Leave the id column out of the INSERT.")));
		set_col(fix, "id", Int64GetDatum(nextval_internal(id_sequence(rel), false)), false);
		set_col(fix, time_column, TimestampTzGetDatum(GetCurrentTimestamp()), false);
		set_col(fix, "recorded_by", acting_role_name(), false);
	}
	(void) get_col(fix, "event_id", &isnull);
	fix->event_id_given = !isnull;
	if (isnull)
		set_col(fix, "event_id", new_event_id(), false);
	return restored;
}

/*
 * A column with a default that an ORM sent as an explicit NULL gets the
 * default, like the columns the trigger fills itself.
 */
static void
fix_default(RowFix *fix, const char *name, const char *value)
{
	bool		isnull;
	Oid			typid;

	(void) get_col(fix, name, &isnull);
	if (!isnull)
		return;
	typid = TupleDescAttr(fix->desc, attnum_of(fix->relid, fix->desc, name) - 1)->atttypid;
	if (typid == TEXTOID)
		set_col(fix, name, CStringGetTextDatum(value), false);
	else						/* the call_trigger enum */
		set_col(fix, name, DirectFunctionCall2(enum_in, CStringGetDatum(value),
											   ObjectIdGetDatum(typid)), false);
}

/*
 * Build the stored row: the fixes applied, then its row hash and place in a
 * chain (chain.c).  A restored row that brings its hash keeps it, and its
 * chain position, as dumped.
 */
static HeapTuple
apply_fixes(RowFix *fix, Relation rel, bool restored)
{
	TupleDesc	desc = fix->desc;
	Datum	   *values = fix->values;
	bool	   *nulls = fix->nulls;
	TaChainColumns cols;
	HeapTuple	out;

	ta_note_audit_write();
	ta_chain_columns(rel, &cols);
	if (cols.row_hash >= 0 && (!restored || nulls[cols.row_hash]))
	{
		/* a row that will not be stored must not take a chain position */
		int			e = attnum_of(fix->relid, desc, "event_id") - 1;

		if (!(fix->event_id_given && ta_event_id_taken(rel, values[e])))
			ta_chain_row(rel, values, nulls);
	}
	out = heap_form_tuple(desc, values, nulls);
	if (fix->tuple != NULL)
	{
		/* what heap_modify_tuple would keep of the original */
		out->t_data->t_ctid = fix->tuple->t_data->t_ctid;
		out->t_self = fix->tuple->t_self;
		out->t_tableOid = fix->tuple->t_tableOid;
	}
	return out;
}

/* Free-text columns: every one goes through the value rules. */
static const char *const tool_call_text_columns[] = {
	"tenant_id", "conversation_id", "user_id", "user_role", "model",
	"tool_name", "tool_call_id", "purpose", "subject_id", "user_agent"
};
static const char *const admin_event_text_columns[] = {
	"actor", "tenant_id", "reason"
};

/*
 * Event types under "tool_audit." record the extension's own administration
 * (rule changes, key rotations, tenant bindings); only its own functions,
 * which run as the table owner, may write them.  tool_audit.log_event()
 * refuses them for the same reason.
 */
static bool
check_reserved_event_type(RowFix *fix, Relation rel)
{
	bool		isnull;
	Datum		d = get_col(fix, "event_type", &isnull);
	text	   *t;
	bool		reserved;

	if (isnull)
		return false;
	t = DatumGetTextPP(d);
	reserved = VARSIZE_ANY_EXHDR(t) >= 11 &&
		memcmp(VARDATA_ANY(t), "tool_audit.", 11) == 0;
	if (reserved && !(ta_restoring && superuser()) &&
		GetUserId() != rel->rd_rel->relowner)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("event types starting with \"tool_audit.\" are reserved for tool_audit itself"),
				 errdetail("The event type given was \"%s\".", TextDatumGetCString(d))));
	return reserved;
}

/*
 * The row of tool_audit.tool_calls that is stored for the given one:
 * stamped, sanitized, summarized, hashed and chained.  The insert trigger's
 * work on its tuple; log_call() passes the columns instead (tuple NULL;
 * values and nulls, one per column, are fixed in place).
 */
HeapTuple
ta_record_tool_call(Relation rel, HeapTuple tuple, Datum *values, bool *nulls)
{
	const TaRuleSet *rs = ta_get_rules();
	RowFix		fix;
	bool		isnull,
				success_null,
				error_null,
				success;
	int			override;
	Datum		d;
	Jsonb	   *summary;
	text	   *error;

	row_fix_init(&fix, rel, tuple, values, nulls);

	/* a dumped row was sanitized when it was first stored: keep it as it is */
	if (fix_identity(&fix, rel, "recorded_at"))
		return apply_fixes(&fix, rel, true);
	fix_default(&fix, "call_trigger", "user_request");
	fix_object_column(&fix, rs, "arguments");
	fix_object_column(&fix, rs, "session_metadata");
	for (int i = 0; i < (int) lengthof(tool_call_text_columns); i++)
		fix_text_column(&fix, rs, tool_call_text_columns[i]);

	d = get_col(&fix, "success", &success_null);
	override = success_null ? -1 : (DatumGetBool(d) ? 1 : 0);
	d = get_col(&fix, "result_summary", &isnull);
	summary = ta_summarize_result(rs, isnull ? NULL : DatumGetJsonbP(d), override,
								  &success, &error);
	set_col(&fix, "result_summary", JsonbPGetDatum(summary), false);
	if (success_null)
		set_col(&fix, "success", BoolGetDatum(success), false);
	(void) get_col(&fix, "error", &error_null);
	if (error_null && error != NULL)
		set_col(&fix, "error", PointerGetDatum(error), false);
	else
		fix_text_column(&fix, rs, "error");

	return apply_fixes(&fix, rel, false);
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
	const TaRuleSet *rs = ta_get_rules();
	RowFix		fix;

	row_fix_init(&fix, trigdata->tg_relation, trigdata->tg_trigtuple, NULL, NULL);

	/*
	 * The extension's own events are sanitized by the built-in rules only:
	 * rules an admin can edit must not be able to blank the record of their
	 * own edits.
	 */
	if (check_reserved_event_type(&fix, trigdata->tg_relation))
		rs = rs->builtin;
	if (fix_identity(&fix, trigdata->tg_relation, "occurred_at"))
		return PointerGetDatum(apply_fixes(&fix, trigdata->tg_relation, true));
	fix_default(&fix, "actor_type", "user");
	fix_object_column(&fix, rs, "payload");
	fix_object_column(&fix, rs, "metadata");
	for (int i = 0; i < (int) lengthof(admin_event_text_columns); i++)
		fix_text_column(&fix, rs, admin_event_text_columns[i]);

	return PointerGetDatum(apply_fixes(&fix, trigdata->tg_relation, false));
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
