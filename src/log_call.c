/*-------------------------------------------------------------------------
 *
 * log_call.c
 *		tool_audit.log_call(): record one tool call with one SQL call.
 *
 * The function checks its arguments, spreads the context object over the
 * attribution columns (what is left goes to session_metadata) and inserts
 * the row through a saved SPI plan, as the table owner, so that the insert
 * trigger sanitizes, hashes and chains it like any other row and the
 * caller, who may only insert, still gets the stored row back.  The row is
 * attributed (recorded_by) to the role that called.
 *
 * It was PL/pgSQL in 1.0; in C it skips setting up PL/pgSQL expressions in
 * every transaction, the jsonpath scan of the context and the function-level
 * search_path, which together cost as much as the audited insert itself.
 * Conversions (turn_number, call_trigger, client_ip, event_id) are left to
 * the casts of the INSERT, so bad values fail as they did.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "tool_audit.h"

/* context keys that go to columns, in the order of the INSERT's parameters */
static const char *const context_columns[] = {
	"event_id", "tenant_id", "conversation_id", "turn_number", "user_id",
	"user_role", "model", "tool_call_id", "call_trigger", "purpose",
	"subject_id", "client_ip", "user_agent"
};

#define NCONTEXT	lengthof(context_columns)
#define NPARAMS		(NCONTEXT + 5)	/* + tool_name, arguments, result, duration, metadata */

static SPIPlanPtr insert_plan = NULL;
static Oid	insert_plan_relid = InvalidOid;

static SPIPlanPtr
get_insert_plan(Oid relid)
{
	Oid			argtypes[NPARAMS];
	SPIPlanPtr	plan;

	if (insert_plan != NULL && insert_plan_relid == relid)
		return insert_plan;
	for (int i = 0; i < (int) NCONTEXT; i++)
		argtypes[i] = TEXTOID;
	argtypes[NCONTEXT] = TEXTOID;	/* tool_name */
	argtypes[NCONTEXT + 1] = JSONBOID;	/* arguments */
	argtypes[NCONTEXT + 2] = JSONBOID;	/* result */
	argtypes[NCONTEXT + 3] = FLOAT8OID; /* duration_ms */
	argtypes[NCONTEXT + 4] = JSONBOID;	/* session_metadata */
	plan = SPI_prepare(
					   "INSERT INTO tool_audit.tool_calls"
					   " (event_id, tenant_id, conversation_id, turn_number, user_id, user_role, model,"
					   "  tool_call_id, call_trigger, purpose, subject_id, client_ip, user_agent,"
					   "  tool_name, arguments, result_summary, duration_ms, session_metadata)"
					   " VALUES ($1::pg_catalog.uuid, $2, $3, $4::pg_catalog.int4, $5, $6, $7,"
					   "  $8, COALESCE($9, 'user_request')::tool_audit.call_trigger, $10, $11,"
					   "  $12::pg_catalog.inet, $13, $14, $15, $16, $17, $18)"
					   " RETURNING *",
					   NPARAMS, argtypes);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	if (insert_plan != NULL)
		SPI_freeplan(insert_plan);
	insert_plan = plan;
	insert_plan_relid = relid;
	return plan;
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

/*
 * tool_audit.log_call(tool_name text, arguments jsonb, result jsonb,
 *					   duration_ms double precision, context jsonb DEFAULT '{}')
 *	RETURNS tool_audit.tool_calls
 */
PG_FUNCTION_INFO_V1(log_call);
Datum
log_call(PG_FUNCTION_ARGS)
{
	Datum		values[NPARAMS];
	char		nulls[NPARAMS];
	Jsonb	   *ctx = PG_ARGISNULL(4) ? NULL : PG_GETARG_JSONB_P(4);
	JsonbParseState *state = NULL;
	JsonbValue *res;
	Oid			relid,
				owner,
				save_userid;
	int			save_sec_context;
	volatile int rc = 0;
	HeapTupleHeader result;

	if (ctx != NULL && !JB_ROOT_IS_OBJECT(ctx))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("context must be a JSON object"),
				 errdetail("The value given is a JSON %s.", ta_jsonb_type_name(ctx))));
	if (PG_ARGISNULL(0) || VARSIZE_ANY_EXHDR(PG_GETARG_TEXT_PP(0)) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("tool_name must not be empty")));

	memset(nulls, 'n', sizeof(nulls));
	/* attribution columns from the context, the rest to session_metadata */
	if (ctx != NULL)
	{
		for (int i = 0; i < (int) NCONTEXT; i++)
		{
			JsonbValue *v = getKeyJsonValueFromContainer(&ctx->root, context_columns[i],
														 strlen(context_columns[i]), NULL);
			text	   *t;

			if (v == NULL)
				continue;
			if (v->type == jbvBinary)
				(void) context_text(v); /* raises the error */
			t = context_text(v);
			if (t != NULL)
			{
				values[i] = PointerGetDatum(t);
				nulls[i] = ' ';
			}
		}
	}
	values[NCONTEXT] = PG_GETARG_DATUM(0);
	nulls[NCONTEXT] = ' ';
	for (int a = 1; a <= 3; a++)
		if (!PG_ARGISNULL(a))
		{
			values[NCONTEXT + a] = PG_GETARG_DATUM(a);
			nulls[NCONTEXT + a] = ' ';
		}

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
			bool		taken = false;

			(void) JsonbIteratorNext(&it, &v, true);
			for (int i = 0; i < (int) NCONTEXT && !taken; i++)
				taken = strlen(context_columns[i]) == (size_t) k.val.string.len &&
					memcmp(context_columns[i], k.val.string.val, k.val.string.len) == 0;
			if (taken)
				continue;
			(void) pushJsonbValue(&state, WJB_KEY, &k);
			(void) pushJsonbValue(&state, WJB_VALUE, &v);
		}
	}
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	values[NCONTEXT + 4] = JsonbPGetDatum(JsonbValueToJsonb(res));
	nulls[NCONTEXT + 4] = ' ';

	/* insert as the table owner: the caller may insert but not read the row */
	relid = get_relname_relid("tool_calls", ta_schema_oid(false));
	owner = ta_relation_owner(relid);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(owner, save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	PG_TRY();
	{
		rc = SPI_execute_plan(get_insert_plan(relid), values, nulls, false, 1);
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_userid, save_sec_context);
	}
	PG_END_TRY();
	if (rc != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("audit row for tool call \"%s\" was not stored",
						text_to_cstring(PG_GETARG_TEXT_PP(0))),
				 errdetail("Something on tool_audit.tool_calls discarded the insert.")));
	result = SPI_returntuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc);
	SPI_finish();
	PG_RETURN_HEAPTUPLEHEADER(result);
}
