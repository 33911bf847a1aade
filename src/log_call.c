/*-------------------------------------------------------------------------
 *
 * log_call.c
 *		tool_audit.log_call(): record one tool call with one SQL call.
 *
 * The function checks its arguments, spreads the context object over the
 * attribution columns (what is left goes to session_metadata), runs the
 * insert trigger's work on the row (insert.c: stamped, sanitized, summarized,
 * hashed, chained) and inserts the result itself: constraints, heap, indexes,
 * as the executor would.  The caller, who may only insert, gets the stored
 * row back; it is attributed (recorded_by) to the role that called.
 *
 * It was PL/pgSQL in 1.0, then an INSERT ... RETURNING through SPI; each
 * step was measured.  PL/pgSQL set its expressions up again in every
 * transaction; SPI started an executor (plan, projection for RETURNING) for
 * each call.  Done directly, a call costs what an audited INSERT does.
 * Conversions (turn_number, call_trigger, client_ip, event_id) read what
 * the column types' input functions read, as the casts from text did, but a
 * value that is not one fails with an error naming the field and the type
 * it expects, never quoting the value (quiet_input.c): a secret in the
 * wrong field must not reach the server log.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "nodes/execnodes.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/uuid.h"

#include "idempotency.h"
#include "insert.h"
#include "jsonb_util.h"
#include "layout.h"
#include "quiet_input.h"
#include "autonomous.h"

/* context keys that go to the columns of the same name */
static const TaColumn context_columns[] = {
	TA_COL_EVENT_ID, TA_COL_TENANT_ID, TA_COL_CONVERSATION_ID, TA_COL_TURN_NUMBER,
	TA_COL_USER_ID, TA_COL_USER_ROLE, TA_COL_MODEL, TA_COL_TOOL_CALL_ID,
	TA_COL_CALL_TRIGGER, TA_COL_PURPOSE, TA_COL_SUBJECT_ID, TA_COL_CLIENT_IP,
	TA_COL_USER_AGENT, TA_COL_STARTED_AT
};

#define NCONTEXT	lengthof(context_columns)

/*
 * Insert the stored row as the executor would after the BEFORE trigger:
 * constraints, heap, indexes (unique violations raise 23505 as usual).  No
 * other trigger exists on the table (tool_audit refuses to create one), and
 * the function acts as the table's owner: no privilege or row security
 * check applies, as none did for the SECURITY DEFINER function of 1.0.
 */
static void
insert_stored_row(Relation rel, HeapTuple tuple)
{
	EState	   *estate = CreateExecutorState();
	ResultRelInfo *rri = makeNode(ResultRelInfo);
	TupleTableSlot *slot;

	/* range table index 0: error details do not look for one */
	InitResultRelInfo(rri, rel, 0, NULL, 0);
	ExecOpenIndices(rri, false);
	slot = ExecInitExtraTupleSlot(estate, RelationGetDescr(rel), &TTSOpsHeapTuple);
	ExecStoreHeapTuple(tuple, slot, false);
	if (rel->rd_att->constr)
		ExecConstraints(rri, slot, estate);
	table_tuple_insert(rel, slot, GetCurrentCommandId(true), 0, NULL);
#if PG_VERSION_NUM >= 160000
	(void) ExecInsertIndexTuples(rri, slot, estate, false, false, NULL, NIL, false);
#else
	(void) ExecInsertIndexTuples(rri, slot, estate, false, false, NULL, NIL);
#endif
	ExecCloseIndices(rri);
	ExecResetTupleTable(estate->es_tupleTable, false);
	FreeExecutorState(estate);
	/* later statements of the transaction see it, as after an INSERT */
	CommandCounterIncrement();
}

static void
set_arg(const TaLayout *layout, Datum *values, bool *nulls, TaColumn col, Datum d, bool isnull)
{
	int			i = ta_column(layout, col);

	values[i] = isnull ? (Datum) 0 : d;
	nulls[i] = isnull;
}

/*
 * A context value converted to its column's type, as a cast from text
 * would; the error for a value that is not one does not quote it.
 */
static Datum
column_value(TupleDesc desc, int index, text *t)
{
	Form_pg_attribute att = TupleDescAttr(desc, index);

	if (att->atttypid == TEXTOID)
		return PointerGetDatum(t);
	return ta_quiet_input(att->atttypid, att->atttypmod, text_to_cstring(t),
						  "context field", NameStr(att->attname));
}

/* A context value as text (jsonb's ->> of a scalar); NULL if absent or null. */
static text *
context_text(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return NULL;
		case jbvString:
			return cstring_to_text_with_len(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return cstring_to_text(DatumGetCString(DirectFunctionCall1(numeric_out,
																	   NumericGetDatum(v->val.numeric))));
		case jbvBool:
			return cstring_to_text(v->val.boolean ? "true" : "false");
		default:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("attribution values in context must be scalars"),
					 errdetail("conversation_id, turn_number, user_id, user_role, model, tenant_id, call_trigger, purpose, subject_id, tool_call_id, client_ip, user_agent and event_id are stored as text or numbers."),
					 errhint("Put structured context under another key: it goes to session_metadata, sanitized.")));
	}
	return NULL;				/* keep the compiler quiet */
}

/* Is this context key spread over a column (or taken by the call itself)? */
static bool
context_key_taken(const JsonbValue *k)
{
	for (int i = 0; i < (int) NCONTEXT; i++)
	{
		const char *name = ta_column_name(context_columns[i]);

		if (strlen(name) == (size_t) k->val.string.len &&
			memcmp(name, k->val.string.val, k->val.string.len) == 0)
			return true;
	}
	/* "autonomous" says how the call is written, not what it was */
	return k->val.string.len == 10 && memcmp(k->val.string.val, "autonomous", 10) == 0;
}

/*
 * Does the context ask for an autonomous write ("autonomous": true)?  Any
 * value other than true or false is refused: a typo must not quietly make
 * a failure's record roll back with the caller.
 */
bool
ta_context_autonomous(Jsonb *ctx)
{
	JsonbValue *v;

	if (ctx == NULL || !JB_ROOT_IS_OBJECT(ctx))
		return false;
	v = ta_jsonb_key(&ctx->root, "autonomous");
	if (v == NULL)
		return false;
	if (v->type != jbvBool)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("context field \"autonomous\" must be true or false")));
	return v->val.boolean;
}

/*
 * Record one call: the work of log_call(), begin_call() and end_call(), in
 * the caller's backend or in the autonomous worker (autonomous.c).  args
 * are log_call()'s five (tool_name, arguments, result, duration_ms,
 * context); call says which half of a call the row is, and for an ended
 * row carries the started row it closes.  Returns the stored row (and its
 * event_id, if asked).
 */
Datum
ta_record_call(Datum *args, bool *argnulls, const TaCallRow *call, pg_uuid_t *event_id)
{
	Jsonb	   *ctx = argnulls[4] ? NULL : DatumGetJsonbP(args[4]);
	JsonbParseState *state = NULL;
	JsonbValue *res;
	Relation	rel;
	const TaLayout *layout;
	TupleDesc	desc;
	Datum	   *values;
	bool	   *nulls;
	HeapTuple	stored;
	Datum		result;

	if (ctx != NULL && !JB_ROOT_IS_OBJECT(ctx))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("context must be a JSON object"),
				 errdetail("The value given is a JSON %s.", ta_jsonb_type_name(ctx))));
	if (call->started == NULL &&
		(argnulls[0] || VARSIZE_ANY_EXHDR(DatumGetTextPP(args[0])) == 0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("tool_name must not be empty")));

	rel = ta_layout_open("tool_calls", RowExclusiveLock, &layout);
	desc = RelationGetDescr(rel);
	values = palloc0(sizeof(Datum) * layout->natts);
	nulls = palloc(sizeof(bool) * layout->natts);
	memset(nulls, true, sizeof(bool) * layout->natts);

	/* attribution columns from the context, the rest to session_metadata */
	if (ctx != NULL)
	{
		for (int i = 0; i < (int) NCONTEXT; i++)
		{
			JsonbValue *v = ta_jsonb_key(&ctx->root, ta_column_name(context_columns[i]));
			text	   *t;
			int			index;

			if (v == NULL)
				continue;
			t = context_text(v);	/* raises the error for objects and arrays */
			if (t == NULL)
				continue;
			index = ta_column(layout, context_columns[i]);
			values[index] = column_value(desc, index, t);
			nulls[index] = false;
		}
	}
	/* an ended row is attributed as the call it closes was */
	if (call->started != NULL)
	{
		for (int i = 0; i < (int) NCONTEXT; i++)
		{
			int			index;

			if (context_columns[i] == TA_COL_EVENT_ID)
				continue;
			index = ta_column(layout, context_columns[i]);
			values[index] = heap_getattr(call->started, index + 1, desc, &nulls[index]);
		}
		args[0] = heap_getattr(call->started, ta_column(layout, TA_COL_TOOL_NAME) + 1, desc,
							   &argnulls[0]);
	}
	set_arg(layout, values, nulls, TA_COL_TOOL_NAME, args[0], argnulls[0]);
	set_arg(layout, values, nulls, TA_COL_ARGUMENTS, args[1], argnulls[1]);
	set_arg(layout, values, nulls, TA_COL_RESULT_SUMMARY, args[2], argnulls[2]);
	set_arg(layout, values, nulls, TA_COL_DURATION_MS, args[3], argnulls[3]);
	if (call->phase != NULL)
		set_arg(layout, values, nulls, TA_COL_CALL_PHASE, CStringGetTextDatum(call->phase), false);
	if (call->started != NULL)
		set_arg(layout, values, nulls, TA_COL_CALL_EVENT_ID,
				heap_getattr(call->started, ta_column(layout, TA_COL_EVENT_ID) + 1, desc, &(bool){false}),
				false);
	if (call->autonomous)
		set_arg(layout, values, nulls, TA_COL_CALLER_TXID, Int64GetDatum(call->caller_txid), false);

	/* session_metadata: the context without the keys that went to columns */
	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	if (ctx != NULL)
	{
		JsonbIterator *it = JsonbIteratorInit(&ctx->root);
		JsonbValue	k,
					v;
		JsonbIteratorToken r;

		(void) JsonbIteratorNext(&it, &k, true);	/* WJB_BEGIN_OBJECT */
		while ((r = JsonbIteratorNext(&it, &k, true)) == WJB_KEY)
		{
			(void) JsonbIteratorNext(&it, &v, true);
			if (context_key_taken(&k))
				continue;
			(void) pushJsonbValue(&state, WJB_KEY, &k);
			(void) pushJsonbValue(&state, WJB_VALUE, &v);
		}
	}
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	set_arg(layout, values, nulls, TA_COL_SESSION_METADATA, JsonbPGetDatum(JsonbValueToJsonb(res)), false);

	/* the insert trigger's work, then the insert itself */
	stored = ta_record_tool_call(rel, NULL, values, nulls);
	/* a retry of a stored call gets the stored row back (idempotency.c) */
	if (!ta_is_stored_row(stored))
		insert_stored_row(rel, stored);
	result = heap_copy_tuple_as_datum(stored, desc);
	if (event_id != NULL)
		*event_id = *DatumGetUUIDP(heap_getattr(stored, ta_column(layout, TA_COL_EVENT_ID) + 1,
												desc, &(bool){false}));
	table_close(rel, NoLock);
	return result;
}

/*
 * tool_audit.log_call(tool_name text, arguments jsonb, result jsonb,
 *					   duration_ms double precision, context jsonb DEFAULT '{}')
 *	RETURNS tool_audit.tool_calls
 *
 * With "autonomous": true in the context the row is written by the
 * autonomous worker (autonomous.c) and survives the caller's rollback.
 */
PG_FUNCTION_INFO_V1(log_call);
Datum
log_call(PG_FUNCTION_ARGS)
{
	Datum		args[5];
	bool		argnulls[5];
	TaCallRow	call = {0};

	for (int i = 0; i < 5; i++)
	{
		argnulls[i] = PG_ARGISNULL(i);
		args[i] = argnulls[i] ? (Datum) 0 : PG_GETARG_DATUM(i);
	}
	if (!argnulls[4])
		args[4] = PointerGetDatum(PG_DETOAST_DATUM(args[4]));
	if (!argnulls[4] && ta_context_autonomous(DatumGetJsonbP(args[4])))
		PG_RETURN_DATUM(ta_autonomous_call(TA_AUTO_LOG_CALL, args, argnulls, NULL, true));

	PG_RETURN_DATUM(ta_record_call(args, argnulls, &call, NULL));
}
