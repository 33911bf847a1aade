/*-------------------------------------------------------------------------
 *
 * read_audit.c
 *		The record of a read of the audit trail by verify(), verify_digest()
 *		and digest(): the C side of tool_audit.record_read()
 *		(sql/install/58_read_audit.sql), which every report and export
 *		calls once it knows how many rows it returns.
 *
 * The call goes through SPI as the caller, so the caller needs EXECUTE on
 * record_read() (granted to the reader, admin and verifier roles), which
 * writes the audit.read event as the extension's owner.  A database whose
 * extension is not yet at 1.5 has no record_read(): nothing is recorded
 * until ALTER EXTENSION UPDATE, as the 1.4 functions did.
 *
 * tool_audit.unrecorded_standby_reads (sighup, off): a hot standby cannot
 * write, so reads there are refused (25006) unless its operator turns this
 * on in the standby's configuration; record_read() reads it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "catalog.h"
#include "impersonation.h"

bool		ta_unrecorded_standby_reads = false;

void
ta_read_audit_init(void)
{
	DefineCustomBoolVariable("tool_audit.unrecorded_standby_reads",
							 "Lets the reports run unrecorded on a hot standby, which cannot write their audit.read events.",
							 "Off: on a hot standby, a report or export is refused (25006). Set it in the standby's configuration only.",
							 &ta_unrecorded_standby_reads,
							 false,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
}

/* The SPI call of record_read() (ta_record_read()). */
static void
call_record_read(const char *function, const char *arguments_sql,
				 int nargs, Oid *argtypes, Datum *args, const char *argnulls, int64 rows)
{
	Oid			spitypes[FUNC_MAX_ARGS];
	Datum		values[FUNC_MAX_ARGS];
	char		nulls[FUNC_MAX_ARGS];
	StringInfoData sql;
	int			rc;

	Assert(nargs + 2 <= FUNC_MAX_ARGS);
	for (int i = 0; i < nargs; i++)
	{
		spitypes[i] = argtypes[i];
		values[i] = args[i];
		nulls[i] = argnulls ? argnulls[i] : ' ';
	}
	spitypes[nargs] = TEXTOID;
	values[nargs] = CStringGetTextDatum(function);
	nulls[nargs] = ' ';
	spitypes[nargs + 1] = INT8OID;
	values[nargs + 1] = Int64GetDatum(rows);
	nulls[nargs + 1] = ' ';

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT " TA_SCHEMA ".record_read($%d, %s, $%d)",
					 nargs + 1, arguments_sql, nargs + 2);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rc = SPI_execute_with_args(sql.data, nargs + 2, spitypes, values, nulls, false, 0);
	if (rc < 0)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
	SPI_finish();
}

/*
 * Records one read: SELECT tool_audit.record_read(function, <arguments_sql>,
 * rows), where arguments_sql is a jsonb expression over $1..$nargs (the
 * function's arguments).  Nothing when record_read() does not exist yet.
 *
 * found_problems: the caller (verify(), verify_digest()) found the trail
 * damaged.  A damaged trail may be one that cannot take another row (its id
 * sequence at its end, a lane's head missing): then the failure to record is
 * a warning, so that the problems are still reported.  A read-only
 * transaction is refused all the same (record_read() says so before it
 * writes anything).
 */
typedef struct RecordReadArgs
{
	const char *function;
	const char *arguments_sql;
	int			nargs;
	Oid		   *argtypes;
	Datum	   *args;
	const char *argnulls;
	int64		rows;
} RecordReadArgs;

static void
record_read_now(void *arg)
{
	RecordReadArgs *a = (RecordReadArgs *) arg;

	call_record_read(a->function, a->arguments_sql, a->nargs, a->argtypes, a->args,
					 a->argnulls, a->rows);
}

void
ta_record_read(const char *function, const char *arguments_sql,
			   int nargs, Oid *argtypes, Datum *args, const char *argnulls,
			   int64 rows, bool found_problems)
{
	Oid			types[3] = {TEXTOID, JSONBOID, INT8OID};
	List	   *name = list_make2(makeString(TA_SCHEMA), makeString("record_read"));
	RecordReadArgs a = {function, arguments_sql, nargs, argtypes, args, argnulls, rows};
	ErrorData  *edata;

	if (!OidIsValid(ta_schema_oid(true)) ||
		!OidIsValid(LookupFuncName(name, 3, types, true)))
		return;
	if (!found_problems || XactReadOnly)
	{
		call_record_read(function, arguments_sql, nargs, argtypes, args, argnulls, rows);
		return;
	}
	edata = ta_try_in_subtransaction(record_read_now, &a);
	if (edata != NULL)
	{
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("%s() could not record its read of the audit trail: %s",
						function, edata->message),
				 errdetail("The problems it found are reported all the same.")));
		FreeErrorData(edata);
	}
}
