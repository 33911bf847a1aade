/*-------------------------------------------------------------------------
 *
 * track.c
 *		The row-change trigger that tool_audit.track() installs on an
 *		application table (doc/changes.md).
 *
 * tool_audit.track_change() is an AFTER ROW trigger for INSERT, UPDATE and
 * DELETE, and a BEFORE statement trigger for TRUNCATE.  For each changed row
 * it inserts one row into tool_audit.data_changes: the table, the operation,
 * the primary key as a jsonb object, the tracked columns before and after
 * (for an UPDATE only the columns whose value changed; an UPDATE that changed
 * no tracked column records nothing), the tool call in progress (the
 * tool_audit.call setting; empty: made outside any tool call) and
 * application_name.  The insert trigger of data_changes (insert.c) gives the
 * row its id, time, recorder and transaction, sanitizes it by the same rules
 * as a tool's arguments (a tracked ssn column is pseudonymized), hashes and
 * chains it.
 *
 * The application's roles cannot write data_changes: the row is inserted as
 * the table's owner (like the per-backend caches read the rules), through
 * the executor's single-row insert (track_write.c: no SPI, no statement per
 * row; its insert trigger, constraints and indexes apply as to an INSERT).
 * Each column's value becomes jsonb as to_jsonb() makes it, built directly
 * for the common types.  Only the current user changes, not the
 * outer one, so recorded_by (insert.c, GetOuterUserId()) is the role that
 * changed the application's row, not the owner.
 *
 * The trigger's arguments (kept in pg_trigger by track()) say which columns
 * are tracked, which gives the tenant and what TRUNCATE does:
 *		mode ("all", "include" or "exclude"), tenant column ("" : the call's),
 *		truncate ("refuse" or "record"), then the column names of the mode.
 * What they mean for one table is worked out once per backend and trigger,
 * and again after any relcache invalidation of the table (ALTER TABLE,
 * CREATE/DROP TRIGGER).
 *
 * The DDL guard (guard.c) asks ta_guard_tracked() about each utility
 * statement: the table's owner cannot disable, drop, rename or replace the
 * tracking triggers (untrack(), an audited admin function, removes them).
 * Nor can it make them depend on an extension (ALTER TRIGGER ... DEPENDS
 * ON EXTENSION, then DROP EXTENSION), detach a partition of a tracked
 * partitioned table (its clone of the trigger would go), or create a
 * trigger that runs track_change() (EXECUTE on it is granted to everyone,
 * for the clones a new or attached partition gets).  What a superuser or
 * the extension's owner does to them anyway shows in
 * tool_audit.tracking_status(), and run_alert_checks() raises an alert.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/genam.h"
#include "access/htup_details.h"
#include "access/sysattr.h"
#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/bitmapset.h"
#include "nodes/makefuncs.h"
#include "nodes/parsenodes.h"
#include "parser/parse_func.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "storage/lmgr.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/uuid.h"

#include "catalog.h"
#include "tool_audit.h"
#include "track.h"
#include "track_write.h"

/* What the trigger's arguments mean for one table (by its trigger's oid). */
typedef struct TrackInfo
{
	Oid			tgoid;			/* hash key */
	Oid			relid;
	bool		valid;
	MemoryContext cxt;
	int			natts;
	bool	   *tracked;		/* by attribute index */
	bool	   *is_key;			/* by attribute index */
	int			tenant_att;		/* attribute index; -1: the call's tenant */
	FmgrInfo	tenant_out;		/* its type's output function */
	bool		record_truncate;
	char	   *table_name;		/* schema.table, quoted as needed */
	Datum		table_name_datum;	/* ... as text */
	FmgrInfo   *to_jsonb;		/* by attribute index; fn_oid 0 until used */
	char	   *kind;			/* JsonKind, by attribute index */
} TrackInfo;

static HTAB *track_infos = NULL;

/* data_changes: how many attributes (-1: to look up), see data_changes_lookup() */
static int	change_natts = -1;
static void data_changes_lookup(void);
static char json_kind(Oid typid);

/* The lookup of a call's tenant, as the owner of data_changes. */
static SPIPlanPtr tenant_plan = NULL;
static Oid	data_changes_relid = InvalidOid;
static Oid	data_changes_owner = InvalidOid;

/*
 * The tenant of the last call looked up.  tool_calls is append-only: the
 * tenant of a row committed by another transaction never changes, so it is
 * kept across transactions (lasting); one written by this transaction only
 * for the rest of it (it may roll back), a miss for the rest of the command.
 */
static struct
{
	LocalTransactionId lxid;
	CommandId	cid;
	bool		found;
	bool		lasting;
	char		call[UUID_LEN * 2 + 5];
	char	   *tenant;			/* NULL: the call has none (or is not visible) */
	char	   *recorder;		/* its recorded_by; NULL: not visible */
	Oid			checked_user;	/* the outer user recorder was compared with */
	bool		other_recorder; /* ... and whether it differed */
} call_tenant;

static void
track_inval_callback(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	TrackInfo  *info;

	if (relid == InvalidOid || relid == data_changes_relid)
	{
		/* the plan revalidates itself; the owner, the columns may have changed */
		data_changes_owner = InvalidOid;
		change_natts = -1;
	}
	if (track_infos == NULL)
		return;
	hash_seq_init(&status, track_infos);
	while ((info = hash_seq_search(&status)) != NULL)
		if (relid == InvalidOid || relid == info->relid)
			info->valid = false;
}

static void
build_info(TrackInfo *info, Relation rel, Trigger *tg)
{
	TupleDesc	desc = RelationGetDescr(rel);
	MemoryContext old;
	Bitmapset  *pk;
	int			x;
	const char *mode;
	Oid			outfunc;
	bool		varlena;

	if (tg->tgnargs < 3)
		elog(ERROR, "tool_audit.track_change() needs the arguments tool_audit.track() gives it");
	if (info->cxt != NULL)
		MemoryContextDelete(info->cxt);
	info->cxt = AllocSetContextCreate(CacheMemoryContext, "tool_audit track",
									  ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(info->cxt);

	info->relid = RelationGetRelid(rel);
	info->natts = desc->natts;
	info->tracked = palloc0(sizeof(bool) * desc->natts);
	info->is_key = palloc0(sizeof(bool) * desc->natts);
	info->to_jsonb = palloc0(sizeof(FmgrInfo) * desc->natts);
	info->kind = palloc0(sizeof(char) * desc->natts);
	for (int i = 0; i < desc->natts; i++)
		info->kind[i] = json_kind(TupleDescAttr(desc, i)->atttypid);
	/*
	 * A partition fires the trigger track() put on its partitioned table (a
	 * clone, with a parent): its changes are the partitioned table's, under
	 * its name, so that the reports find them by the table that was tracked.
	 */
	{
		Oid			named = RelationGetRelid(rel);

		if (tg->tgisclone && rel->rd_rel->relispartition)
			named = llast_oid(get_partition_ancestors(named));
		info->table_name = quote_qualified_identifier(get_namespace_name(get_rel_namespace(named)),
													  get_rel_name(named));
		info->table_name_datum = CStringGetTextDatum(info->table_name);
	}
	mode = tg->tgargs[0];
	for (int i = 0; i < desc->natts; i++)
		info->tracked[i] = !TupleDescAttr(desc, i)->attisdropped &&
			strcmp(mode, "include") != 0;
	for (int a = 3; a < tg->tgnargs; a++)
	{
		int			i = ta_attribute_index(desc, tg->tgargs[a]);

		if (i >= 0)
			info->tracked[i] = (strcmp(mode, "include") == 0);
		else if (strcmp(mode, "include") == 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("tracked column \"%s\" of table %s does not exist",
							tg->tgargs[a], info->table_name),
					 errhint("Run tool_audit.track() again with the table's current columns.")));
	}

	pk = RelationGetIndexAttrBitmap(rel, INDEX_ATTR_BITMAP_PRIMARY_KEY);
	if (bms_is_empty(pk))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("tracked table %s has no primary key", info->table_name),
				 errhint("A change row names its row by the primary key: add one, or untrack the table.")));
	x = -1;
	while ((x = bms_next_member(pk, x)) >= 0)
	{
		AttrNumber	attnum = x + FirstLowInvalidHeapAttributeNumber;

		if (attnum > 0)
			info->is_key[attnum - 1] = true;
	}

	info->tenant_att = -1;
	if (tg->tgargs[1][0] != '\0')
	{
		info->tenant_att = ta_attribute_index(desc, tg->tgargs[1]);
		if (info->tenant_att < 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("tenant column \"%s\" of tracked table %s does not exist",
							tg->tgargs[1], info->table_name),
					 errhint("Run tool_audit.track() again with the table's current columns.")));
		getTypeOutputInfo(TupleDescAttr(desc, info->tenant_att)->atttypid, &outfunc, &varlena);
		fmgr_info_cxt(outfunc, &info->tenant_out, info->cxt);
	}
	info->record_truncate = (strcmp(tg->tgargs[2], "record") == 0);
	MemoryContextSwitchTo(old);
	info->valid = true;
}

static TrackInfo *
get_info(Relation rel, Trigger *tg)
{
	TrackInfo  *info;
	bool		found;

	if (track_infos == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(TrackInfo);
		ctl.hcxt = CacheMemoryContext;
		track_infos = hash_create("tool_audit tracked tables", 16, &ctl,
								  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		CacheRegisterRelcacheCallback(track_inval_callback, (Datum) 0);
	}
	info = hash_search(track_infos, &tg->tgoid, HASH_ENTER, &found);
	if (!found)
	{
		info->cxt = NULL;
		info->valid = false;
	}
	if (!info->valid)
		build_info(info, rel, tg);
	return info;
}

/* Does the column's value differ between the two rows? */
static bool
value_changed(Form_pg_attribute att, Datum a, bool anull, Datum b, bool bnull)
{
	if (anull || bnull)
		return anull != bnull;
	/* an unchanged toasted value keeps its pointer: no need to fetch it */
	if (att->attlen == -1 &&
		VARATT_IS_EXTERNAL_ONDISK(DatumGetPointer(a)) &&
		VARATT_IS_EXTERNAL_ONDISK(DatumGetPointer(b)) &&
		VARSIZE_EXTERNAL(DatumGetPointer(a)) == VARSIZE_EXTERNAL(DatumGetPointer(b)) &&
		memcmp(DatumGetPointer(a), DatumGetPointer(b),
			   VARSIZE_EXTERNAL(DatumGetPointer(a))) == 0)
		return false;
	return !datum_image_eq(a, b, att->attbyval, att->attlen);
}

/*
 * The jsonb value of a column of one of these types is built directly, as
 * to_jsonb() would build it, without a call through fmgr and to_jsonb()'s
 * look-up of the type's category on every call; other types (domains
 * included) go through to_jsonb().
 */
typedef enum
{
	JK_GENERIC = 0,
	JK_INT2,
	JK_INT4,
	JK_INT8,
	JK_NUMERIC,
	JK_TEXT,					/* text, varchar: the string itself */
	JK_BOOL,
	JK_DATETIME					/* date, timestamp, timestamptz: ISO 8601 */
} JsonKind;

static char
json_kind(Oid typid)
{
	switch (typid)
	{
		case INT2OID:
			return JK_INT2;
		case INT4OID:
			return JK_INT4;
		case INT8OID:
			return JK_INT8;
		case NUMERICOID:
			return JK_NUMERIC;
		case TEXTOID:
		case VARCHAROID:
			return JK_TEXT;
		case BOOLOID:
			return JK_BOOL;
		case DATEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			return JK_DATETIME;
		default:
			return JK_GENERIC;
	}
}

/* to_jsonb(value) of a column, as a JsonbValue in *v. */
static void
column_jsonb(TrackInfo *info, Form_pg_attribute att, int i, Datum value, JsonbValue *v)
{
	switch (info->kind[i])
	{
		case JK_INT2:
			v->type = jbvNumeric;
			v->val.numeric = int64_to_numeric(DatumGetInt16(value));
			return;
		case JK_INT4:
			v->type = jbvNumeric;
			v->val.numeric = int64_to_numeric(DatumGetInt32(value));
			return;
		case JK_INT8:
			v->type = jbvNumeric;
			v->val.numeric = int64_to_numeric(DatumGetInt64(value));
			return;
		case JK_NUMERIC:
			{
				Numeric		num = DatumGetNumeric(value);

				/* to_jsonb() makes NaN and the infinities strings */
				if (!numeric_is_nan(num) && !numeric_is_inf(num))
				{
					v->type = jbvNumeric;
					v->val.numeric = num;
					return;
				}
				break;
			}
		case JK_TEXT:
			{
				text	   *t = DatumGetTextPP(value);

				v->type = jbvString;
				v->val.string.val = VARDATA_ANY(t);
				v->val.string.len = VARSIZE_ANY_EXHDR(t);
				return;
			}
		case JK_BOOL:
			v->type = jbvBool;
			v->val.boolean = DatumGetBool(value);
			return;
		case JK_DATETIME:
			v->type = jbvString;
			v->val.string.val = JsonEncodeDateTime(NULL, value, att->atttypid, NULL);
			v->val.string.len = strlen(v->val.string.val);
			return;
		default:
			break;
	}
	{
		FmgrInfo   *f = &info->to_jsonb[i];
		Jsonb	   *j;

		if (f->fn_oid == InvalidOid)
		{
			/* to_jsonb() learns the value's type from its call expression */
			MemoryContext old = MemoryContextSwitchTo(info->cxt);

			fmgr_info_cxt(F_TO_JSONB, f, info->cxt);
			f->fn_expr = (Node *) makeFuncExpr(F_TO_JSONB, JSONBOID,
											   list_make1(makeNullConst(att->atttypid,
																		att->atttypmod,
																		att->attcollation)),
											   InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
			MemoryContextSwitchTo(old);
		}
		j = DatumGetJsonbP(FunctionCall1(f, value));
		if (JB_ROOT_IS_SCALAR(j))
			JsonbExtractScalar(&j->root, v);
		else
		{
			v->type = jbvBinary;
			v->val.binary.data = &j->root;
			v->val.binary.len = VARSIZE(j) - VARHDRSZ;
		}
	}
}

/* Adds "column": to_jsonb(value) to the object being built. */
static void
push_column(JsonbParseState **state, TrackInfo *info, TupleDesc desc, int i,
			Datum value, bool isnull)
{
	Form_pg_attribute att = TupleDescAttr(desc, i);
	JsonbValue	k;
	JsonbValue	v;

	k.type = jbvString;
	k.val.string.val = NameStr(att->attname);
	k.val.string.len = strlen(NameStr(att->attname));
	pushJsonbValue(state, WJB_KEY, &k);
	if (isnull)
		v.type = jbvNull;
	else
		column_jsonb(info, att, i, value, &v);
	pushJsonbValue(state, WJB_VALUE, &v);
}

/* A row's columns, deformed once for every object built from it. */
typedef struct
{
	Datum	   *values;
	bool	   *nulls;
} RowValues;

static void
deform_row(RowValues *r, HeapTuple tuple, TupleDesc desc)
{
	r->values = palloc(sizeof(Datum) * desc->natts);
	r->nulls = palloc(sizeof(bool) * desc->natts);
	heap_deform_tuple(tuple, desc, r->values, r->nulls);
}

typedef enum
{
	COLS_KEY,					/* the primary key */
	COLS_TRACKED,				/* every tracked column */
	COLS_CHANGED				/* the tracked columns marked in changed[] */
} ColumnSet;

/*
 * Marks the tracked columns whose value differs between the two rows;
 * returns how many.
 */
static int
changed_columns(TrackInfo *info, TupleDesc desc, RowValues *a, RowValues *b, bool *changed)
{
	int			n = 0;

	for (int i = 0; i < info->natts && i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		changed[i] = !att->attisdropped && info->tracked[i] &&
			value_changed(att, a->values[i], a->nulls[i], b->values[i], b->nulls[i]);
		if (changed[i])
			n++;
	}
	return n;
}

/* The object of the row's columns of the set. */
static Datum
columns_object(TrackInfo *info, TupleDesc desc, RowValues *row, ColumnSet set,
			   const bool *changed)
{
	JsonbParseState *state = NULL;
	JsonbValue *res;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (int i = 0; i < info->natts && i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped ||
			!(set == COLS_KEY ? info->is_key[i] :
			  set == COLS_CHANGED ? changed[i] : info->tracked[i]))
			continue;
		push_column(&state, info, desc, i, row->values[i], row->nulls[i]);
	}
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbPGetDatum(JsonbValueToJsonb(res));
}

/*
 * Runs a plan as the owner of data_changes (SPI is connected); prepares it
 * first if needed.
 */
static int
exec_as_owner(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes,
			  Datum *values, const char *nulls, bool read_only)
{
	Oid			save_userid;
	int			save_sec_context;
	int			rc;

	data_changes_lookup();
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(data_changes_owner, save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, argtypes);

		if (p == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(p) != 0)
			elog(ERROR, "SPI_keepplan failed");
		*plan = p;
	}
	rc = SPI_execute_plan(*plan, values, nulls, read_only, read_only ? 1 : 0);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	if (rc < 0)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
	return rc;
}

/*
 * The tenant of the call in progress: that of its tool_calls row, if this
 * transaction can see one (begin_call(), or log_call() before the changes);
 * NULL otherwise.  A found tenant is kept for the rest of the transaction,
 * a miss for the rest of the command.
 *
 * A visible call recorded by another role than the one changing the row is
 * refused (42501): tool_audit.call is the session's own claim, and naming
 * another application's call would give the change that call's tenant and
 * its user -> model -> tool attribution.  Refused rather than recorded as
 * outside any call, so that neither a forged link nor a silently dropped
 * one goes unnoticed (doc/changes.md).  A call not visible yet (SET LOCAL
 * tool_audit.call, the statements, then log_call() with that event_id) is
 * accepted, without a tenant, as before.
 */
/*
 * A call row this transaction wrote goes with a rolled back subtransaction
 * that wrote it: a tenant learnt from it is looked up again (it may be gone).
 */
static void
call_tenant_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
							 SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB && !call_tenant.lasting)
		call_tenant.call[0] = '\0';
}

static Datum
call_tenant_of(Datum call, bool *isnull)
{
	static bool registered = false;
	LocalTransactionId lxid = MyProc->lxid;
	CommandId	cid = GetCurrentCommandId(false);

	if (!registered)
	{
		RegisterSubXactCallback(call_tenant_subxact_callback, NULL);
		registered = true;
	}

	if (!(strcmp(call_tenant.call, ta_call) == 0 &&
		  (call_tenant.lasting ||
		   (call_tenant.lxid == lxid && (call_tenant.found || call_tenant.cid == cid)))))
	{
		Oid			argtypes[1] = {UUIDOID};
		Datum		values[1] = {call};

		if (call_tenant.tenant != NULL)
			pfree(call_tenant.tenant);
		if (call_tenant.recorder != NULL)
			pfree(call_tenant.recorder);
		call_tenant.tenant = NULL;
		call_tenant.recorder = NULL;
		call_tenant.checked_user = InvalidOid;
		call_tenant.lxid = InvalidLocalTransactionId;
		call_tenant.lasting = false;
		call_tenant.call[0] = '\0';
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		exec_as_owner(&tenant_plan,
					  "SELECT tenant_id, xmin, recorded_by FROM tool_audit.tool_calls"
					  " WHERE event_id = $1",
					  1, argtypes, values, NULL, true);
		call_tenant.found = (SPI_processed > 0);
		if (SPI_processed > 0)
		{
			HeapTuple	tup = SPI_tuptable->vals[0];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			char	   *t = SPI_getvalue(tup, desc, 1);
			char	   *r = SPI_getvalue(tup, desc, 3);
			bool		isnull;
			Datum		xmin = SPI_getbinval(tup, desc, 2, &isnull);

			if (t != NULL)
				call_tenant.tenant = MemoryContextStrdup(TopMemoryContext, t);
			call_tenant.recorder = MemoryContextStrdup(TopMemoryContext, r != NULL ? r : "");
			call_tenant.lasting = !isnull &&
				!TransactionIdIsCurrentTransactionId(DatumGetTransactionId(xmin));
		}
		SPI_finish();
		strlcpy(call_tenant.call, ta_call, sizeof(call_tenant.call));
		call_tenant.cid = cid;
		call_tenant.lxid = lxid;
	}
	/*
	 * the role insert.c records as recorded_by of the change row, looked up
	 * once per call and outer user, not per changed row
	 */
	if (call_tenant.recorder != NULL && GetOuterUserId() != call_tenant.checked_user)
	{
		call_tenant.checked_user = GetOuterUserId();
		call_tenant.other_recorder =
			strcmp(call_tenant.recorder, GetUserNameFromId(call_tenant.checked_user, false)) != 0;
	}
	if (call_tenant.recorder != NULL && call_tenant.other_recorder)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("tool_audit.call names a tool call recorded by another role"),
				 errdetail("A row change is linked only to a call recorded by the role that changes the row."),
				 errhint("Set tool_audit.call to a call this role began or logged, or reset it.")));
	*isnull = (call_tenant.tenant == NULL);
	return *isnull ? (Datum) 0 : CStringGetTextDatum(call_tenant.tenant);
}

/* The columns of data_changes the trigger fills, in this order. */
static const char *const change_columns[] = {
	"table_name", "operation", "row_key", "old_values", "new_values",
	"call_event_id", "application_name", "tenant_id"
};
#define N_CHANGE_COLUMNS lengthof(change_columns)

/* Their attribute indexes in data_changes, and its number of attributes. */
static int	change_attno[N_CHANGE_COLUMNS];

/*
 * The owner of data_changes and where the trigger's columns are in it,
 * looked up again after a relcache invalidation of the table.
 */
static void
data_changes_lookup(void)
{
	Relation	rel;
	TupleDesc	desc;

	if (data_changes_owner != InvalidOid && change_natts >= 0)
		return;
	data_changes_relid = ta_schema_relid("data_changes", false);
	rel = table_open(data_changes_relid, AccessShareLock);
	desc = RelationGetDescr(rel);
	for (int c = 0; c < (int) N_CHANGE_COLUMNS; c++)
	{
		change_attno[c] = ta_attribute_index(desc, change_columns[c]);
		if (change_attno[c] < 0)
			elog(ERROR, "tool_audit.data_changes has no column \"%s\"", change_columns[c]);
	}
	change_natts = desc->natts;
	table_close(rel, AccessShareLock);
	data_changes_owner = ta_relation_owner(data_changes_relid);
}

/*
 * Inserts the change row as the owner of data_changes: its insert trigger
 * stamps, sanitizes, hashes and chains it (track_write.c).
 */
static void
insert_change(Datum *values, const bool *isnull)
{
	Oid			save_userid;
	int			save_sec_context;
	Datum	   *row;
	bool	   *nulls;

	/*
	 * The layout is read under the lock the write takes: an ALTER of
	 * data_changes committed since the last lookup is seen (the lock
	 * processes its invalidation) and the columns looked up again.
	 */
	data_changes_lookup();
	LockRelationOid(data_changes_relid, RowExclusiveLock);
	data_changes_lookup();
	row = palloc0(sizeof(Datum) * change_natts);
	nulls = palloc(sizeof(bool) * change_natts);
	memset(nulls, true, sizeof(bool) * change_natts);
	for (int c = 0; c < (int) N_CHANGE_COLUMNS; c++)
	{
		row[change_attno[c]] = values[c];
		nulls[change_attno[c]] = isnull[c];
	}
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(data_changes_owner, save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	/* an error restores the user with the (sub)transaction's abort */
	ta_track_write_row(data_changes_relid, row, nulls, change_natts);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	pfree(row);
	pfree(nulls);
}

/* tool_audit.call as a uuid, parsed again only when the setting changes */
static Datum
call_uuid(void)
{
	static char parsed[UUID_LEN * 2 + 5] = "";
	static pg_uuid_t uuid;
	pg_uuid_t  *copy;

	if (strcmp(parsed, ta_call) != 0)
	{
		pg_uuid_t  *u = DatumGetUUIDP(DirectFunctionCall1(uuid_in, CStringGetDatum(ta_call)));

		memcpy(&uuid, u, sizeof(pg_uuid_t));
		/* longer than any uuid's text: not kept, parsed each time */
		strlcpy(parsed, strlen(ta_call) < sizeof(parsed) ? ta_call : "", sizeof(parsed));
	}
	copy = palloc(sizeof(pg_uuid_t));
	memcpy(copy, &uuid, sizeof(pg_uuid_t));
	return UUIDPGetDatum(copy);
}

static void
record_change(TrackInfo *info, const char *operation, Datum row_key,
			  Datum old_values, Datum new_values, const RowValues *tenant_row)
{
	Datum		values[N_CHANGE_COLUMNS];
	bool		nulls[N_CHANGE_COLUMNS] = {false};
	Datum		tenant_of_call = (Datum) 0;

	values[0] = info->table_name_datum;
	values[1] = CStringGetTextDatum(operation);
	values[2] = row_key;
	values[3] = old_values;
	values[4] = new_values;
	if (ta_call != NULL && ta_call[0] != '\0')
	{
		bool		isnull;

		values[5] = call_uuid();
		/* refuses another role's call (for a table with a tenant column too) */
		tenant_of_call = call_tenant_of(values[5], &isnull);
		if (isnull)
			tenant_of_call = (Datum) 0;
	}
	else
		nulls[5] = true;
	if (application_name != NULL && application_name[0] != '\0')
		values[6] = CStringGetTextDatum(application_name);
	else
		nulls[6] = true;
	if (info->tenant_att >= 0)
	{
		/* the row's own tenant column (none for a TRUNCATE) */
		if (tenant_row == NULL || tenant_row->nulls[info->tenant_att])
			nulls[7] = true;
		else
			values[7] = CStringGetTextDatum(OutputFunctionCall(&info->tenant_out,
															   tenant_row->values[info->tenant_att]));
	}
	else if (tenant_of_call == (Datum) 0)
		nulls[7] = true;
	else
		values[7] = tenant_of_call;

	insert_change(values, nulls);
	ta_note_audit_write();
}

/* The jsonb {} */
static Datum
empty_object(void)
{
	JsonbParseState *state = NULL;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	return JsonbPGetDatum(JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL)));
}

/*
 * Does an UPDATE move the row to another tenant (a tenant column, its value
 * changed, NULL included)?
 */
static bool
tenant_moved(TrackInfo *info, TupleDesc desc, RowValues *old, RowValues *new)
{
	int			t = info->tenant_att;
	Form_pg_attribute att;

	if (t < 0)
		return false;
	if (old->nulls[t] || new->nulls[t])
		return old->nulls[t] != new->nulls[t];
	att = TupleDescAttr(desc, t);
	return !datum_image_eq(old->values[t], new->values[t], att->attbyval, att->attlen);
}

/* tool_audit.track_change() RETURNS trigger */
PG_FUNCTION_INFO_V1(track_change);
Datum
track_change(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	desc;
	TrackInfo  *info;
	Datum		key = (Datum) 0;
	Datum		oldv;
	Datum		newv;
	HeapTuple	result = NULL;
	const RowValues *tenant_row = NULL;
	const char *operation;
	RowValues	row;
	RowValues	newrow;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("tool_audit.track_change() is a trigger; tool_audit.track() installs it")));
	rel = td->tg_relation;
	desc = RelationGetDescr(rel);

	if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
	{
		if (!TRIGGER_FIRED_FOR_STATEMENT(td->tg_event))
			elog(ERROR, "tool_audit.track_change() fired in an unexpected way");
		info = get_info(rel, td->tg_trigger);
		if (!info->record_truncate)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("TRUNCATE of tracked table %s is refused", info->table_name),
					 errdetail("Its rows would go without a change row each."),
					 errhint("Delete the rows, or track the table with {\"truncate\": \"record\"}.")));
		operation = "TRUNCATE";
		key = oldv = newv = empty_object();
	}
	else
	{
		if (!TRIGGER_FIRED_AFTER(td->tg_event) || !TRIGGER_FIRED_FOR_ROW(td->tg_event))
			elog(ERROR, "tool_audit.track_change() fired in an unexpected way");
		info = get_info(rel, td->tg_trigger);
		deform_row(&row, td->tg_trigtuple, desc);
		if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
		{
			operation = "INSERT";
			tenant_row = &row;
			key = columns_object(info, desc, &row, COLS_KEY, NULL);
			oldv = empty_object();
			newv = columns_object(info, desc, &row, COLS_TRACKED, NULL);
			result = td->tg_trigtuple;
		}
		else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
		{
			bool	   *changed = palloc(sizeof(bool) * desc->natts);

			operation = "UPDATE";
			deform_row(&newrow, td->tg_newtuple, desc);
			if (tenant_moved(info, desc, &row, &newrow))
			{
				/*
				 * The row leaves one tenant for another: recorded as its
				 * DELETE under the old tenant and its INSERT under the new
				 * one (same transaction and call), so that neither tenant's
				 * readers see the other's values, and each tenant's history
				 * of the row stays whole.
				 */
				record_change(info, "DELETE", columns_object(info, desc, &row, COLS_KEY, NULL),
							  columns_object(info, desc, &row, COLS_TRACKED, NULL),
							  empty_object(), &row);
				record_change(info, "INSERT", columns_object(info, desc, &newrow, COLS_KEY, NULL),
							  empty_object(),
							  columns_object(info, desc, &newrow, COLS_TRACKED, NULL), &newrow);
				return PointerGetDatum(td->tg_newtuple);
			}
			tenant_row = &newrow;
			if (changed_columns(info, desc, &newrow, &row, changed) == 0)
				return PointerGetDatum(td->tg_newtuple);	/* no tracked column changed */
			newv = columns_object(info, desc, &newrow, COLS_CHANGED, changed);
			oldv = columns_object(info, desc, &row, COLS_CHANGED, changed);
			key = columns_object(info, desc, &row, COLS_KEY, NULL);
			result = td->tg_newtuple;
		}
		else
		{
			operation = "DELETE";
			tenant_row = &row;
			key = columns_object(info, desc, &row, COLS_KEY, NULL);
			oldv = columns_object(info, desc, &row, COLS_TRACKED, NULL);
			newv = empty_object();
			result = td->tg_trigtuple;
		}
	}

	record_change(info, operation, key, oldv, newv, tenant_row);
	return PointerGetDatum(result);
}

/* ---- the DDL guard of tracked tables ---- */

static bool
is_track_trigger_name(const char *name)
{
	return strcmp(name, "tool_audit_track") == 0 ||
		strcmp(name, "tool_audit_track_truncate") == 0;
}

/*
 * Does the relation have a tracking trigger (that one, if a name is given)?
 * One of track()'s names, calling a function of the extension's schema.
 */
static bool
has_track_trigger(Oid relid, const char *name, Oid nsp)
{
	Relation	tgrel;
	ScanKeyData keys[2];
	SysScanDesc scan;
	HeapTuple	tup;
	bool		found = false;

	if (name != NULL && !is_track_trigger_name(name))
		return false;
	tgrel = table_open(TriggerRelationId, AccessShareLock);
	ScanKeyInit(&keys[0], Anum_pg_trigger_tgrelid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	if (name != NULL)
		ScanKeyInit(&keys[1], Anum_pg_trigger_tgname, BTEqualStrategyNumber, F_NAMEEQ,
					CStringGetDatum(name));
	scan = systable_beginscan(tgrel, TriggerRelidNameIndexId, true, NULL,
							  name != NULL ? 2 : 1, keys);
	while (!found && HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_trigger tg = (Form_pg_trigger) GETSTRUCT(tup);

		found = is_track_trigger_name(NameStr(tg->tgname)) &&
			get_func_namespace(tg->tgfoid) == nsp;
	}
	systable_endscan(scan);
	table_close(tgrel, AccessShareLock);
	return found;
}

/*
 * Does a CREATE TRIGGER name tool_audit.track_change()?  Everyone may
 * execute it (a partition created or attached by the table's owner gets a
 * clone of the partitioned table's trigger, which checks EXECUTE), so only
 * this guard keeps anyone but track() from installing it.  An unqualified
 * name is looked up in the search path, where it may be the extension's.
 */
static bool
is_track_change(List *funcname, Oid nsp)
{
	char	   *schema;
	char	   *name;
	Oid			fn;

	if (funcname == NIL)
		return false;
	DeconstructQualifiedName(funcname, &schema, &name);
	if (strcmp(name, "track_change") != 0)
		return false;
	if (schema != NULL)
		return get_namespace_oid(schema, true) == nsp;
	fn = LookupFuncName(funcname, 0, NULL, true);
	return OidIsValid(fn) && get_func_namespace(fn) == nsp;
}

/*
 * Does a tracking trigger of the relation name this column in its
 * arguments (the tenant column, or one of the columns its mode includes or
 * excludes)?  Read from pg_trigger, without locking the table the statement
 * is about to lock.
 */
static bool
column_named_by_tracking(Oid relid, const char *column, Oid nsp)
{
	Relation	tgrel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	bool		found = false;

	tgrel = table_open(TriggerRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_trigger_tgrelid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	scan = systable_beginscan(tgrel, TriggerRelidNameIndexId, true, NULL, 1, &key);
	while (!found && HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_trigger tg = (Form_pg_trigger) GETSTRUCT(tup);
		bool		isnull;
		Datum		args;
		bytea	   *raw;
		const char *p;
		const char *end;

		if (!is_track_trigger_name(NameStr(tg->tgname)) ||
			get_func_namespace(tg->tgfoid) != nsp || tg->tgnargs < 2)
			continue;
		args = heap_getattr(tup, Anum_pg_trigger_tgargs, RelationGetDescr(tgrel), &isnull);
		if (isnull)
			continue;
		raw = DatumGetByteaPP(args);
		p = VARDATA_ANY(raw);
		end = p + VARSIZE_ANY_EXHDR(raw);
		/* mode, tenant column, truncate, then the mode's columns: NUL-ended */
		for (int a = 0; a < tg->tgnargs && p < end; a++)
		{
			if ((a == 1 || a >= 3) && strcmp(p, column) == 0)
				found = true;
			p += strnlen(p, end - p) + 1;
		}
	}
	systable_endscan(scan);
	table_close(tgrel, AccessShareLock);
	return found;
}

/*
 * ALTER TABLE ... RENAME COLUMN of a tracked table, from or to a name its
 * tracking names: the trigger keeps columns by name, so an excluded column
 * renamed would be tracked with its values (a secret kept out of the trail
 * would reach it), another column renamed to an excluded name would drop
 * out of the trail, and a tenant or included column renamed would stop
 * the table's writes.
 */
static void
guard_rename_of(Oid relid, RenameStmt *rs, Oid nsp)
{
	const char *column;

	if (!has_track_trigger(relid, NULL, nsp))
		return;
	if (column_named_by_tracking(relid, rs->subname, nsp))
		column = rs->subname;
	else if (column_named_by_tracking(relid, rs->newname, nsp))
		column = rs->newname;
	else
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("RENAME COLUMN is not allowed on column \"%s\" of tracked table %s",
					column, get_rel_name(relid)),
			 errdetail("tool_audit.track() names the column in the table's options, which keep columns by name."),
			 errhint("An admin stops the tracking with tool_audit.untrack(), which is audited, and tracks the table again after the rename.")));
}

/*
 * A rename reaches more tables than the one it names: ALTER TABLE ...
 * RENAME COLUMN (without ONLY) renames the column in every inheritance
 * child and partition too (a table tracked on its own may be one), and
 * ALTER TYPE ... RENAME ATTRIBUTE ... CASCADE in every table of the type
 * (CREATE TABLE ... OF) and their children.  Each is checked.
 */
static void
guard_column_rename(RenameStmt *rs, Oid nsp)
{
	Oid			relid;
	List	   *tables = NIL;
	ListCell   *lc;

	if (rs->relation == NULL || rs->subname == NULL || rs->newname == NULL)
		return;
	relid = RangeVarGetRelid(rs->relation, NoLock, true);
	if (!OidIsValid(relid))
		return;
	if (rs->renameType == OBJECT_ATTRIBUTE)
	{
		/* the tables of the composite type (refused without CASCADE anyway) */
		Oid			typid = get_rel_type_id(relid);
		Relation	classrel;
		ScanKeyData key;
		TableScanDesc scan;
		HeapTuple	tup;

		if (!OidIsValid(typid))
			return;
		classrel = table_open(RelationRelationId, AccessShareLock);
		ScanKeyInit(&key, Anum_pg_class_reloftype, BTEqualStrategyNumber, F_OIDEQ,
					ObjectIdGetDatum(typid));
		scan = table_beginscan_catalog(classrel, 1, &key);
		while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
			tables = list_concat(tables,
								 find_all_inheritors(((Form_pg_class) GETSTRUCT(tup))->oid,
													 NoLock, NULL));
		table_endscan(scan);
		table_close(classrel, AccessShareLock);
	}
	else if (rs->relation->inh)
		tables = find_all_inheritors(relid, NoLock, NULL);
	else
		tables = list_make1_oid(relid);
	foreach(lc, tables)
		guard_rename_of(lfirst_oid(lc), rs, nsp);
}

static void
refuse_on_tracked(const char *what, RangeVar *rv)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("%s is not allowed on the tracking triggers of table %s", what, rv->relname),
			 errdetail("Its row changes are recorded in tool_audit.data_changes."),
			 errhint("An admin stops the tracking with tool_audit.untrack(), which is audited.")));
}

void
ta_guard_tracked(Node *stmt)
{
	Oid			nsp;
	Oid			dc;
	RangeVar   *rv = NULL;
	const char *trigger = NULL;
	const char *what = NULL;

	if (stmt == NULL)
		return;
	/* every utility statement comes here: the catalogs only for these */
	switch (nodeTag(stmt))
	{
		case T_AlterTableStmt:
			break;
		case T_DropStmt:
			if (((DropStmt *) stmt)->removeType != OBJECT_TRIGGER)
				return;
			break;
		case T_RenameStmt:
			if (((RenameStmt *) stmt)->renameType != OBJECT_TRIGGER &&
				((RenameStmt *) stmt)->renameType != OBJECT_COLUMN &&
				((RenameStmt *) stmt)->renameType != OBJECT_ATTRIBUTE)
				return;
			break;
		case T_CreateTrigStmt:
			break;
		case T_AlterObjectDependsStmt:
			if (((AlterObjectDependsStmt *) stmt)->objectType != OBJECT_TRIGGER)
				return;
			break;
		default:
			return;
	}
	/* where there is nothing to track into, there is nothing to guard */
	nsp = ta_schema_oid(true);
	if (!OidIsValid(nsp))
		return;
	dc = ta_schema_relid("data_changes", true);
	if (!OidIsValid(dc))
		return;
	/* track() and untrack() run as the extension's owner */
	if (GetUserId() == ta_relation_owner(dc))
		return;

	switch (nodeTag(stmt))
	{
		case T_AlterTableStmt:
			{
				AlterTableStmt *at = (AlterTableStmt *) stmt;
				ListCell   *lc;
				Oid			relid;

				if (at->objtype != OBJECT_TABLE)
					return;
				relid = RangeVarGetRelid(at->relation, NoLock, true);
				if (!OidIsValid(relid))
					return;
				foreach(lc, at->cmds)
				{
					AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);
					bool		hit = false;

					switch (cmd->subtype)
					{
						case AT_DetachPartition:
						case AT_DetachPartitionFinalize:
							/* the partition's clone of the trigger would go */
							if (has_track_trigger(relid, "tool_audit_track", nsp))
								ereport(ERROR,
										(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
										 errmsg("DETACH PARTITION is not allowed on tracked table %s",
												at->relation->relname),
										 errdetail("The partition's row changes would no longer be recorded in tool_audit.data_changes."),
										 errhint("An admin stops the tracking with tool_audit.untrack() first, which is audited, and tracks the table again after.")));
							break;
						case AT_EnableTrig:
						case AT_EnableReplicaTrig:
						case AT_DisableTrig:
							hit = has_track_trigger(relid, cmd->name, nsp);
							break;
						case AT_EnableTrigAll:
						case AT_EnableTrigUser:
						case AT_DisableTrigAll:
						case AT_DisableTrigUser:
							hit = has_track_trigger(relid, NULL, nsp);
							break;
						default:
							break;
					}
					if (hit)
						refuse_on_tracked("ALTER TABLE ... ENABLE/DISABLE TRIGGER", at->relation);
				}
				return;
			}
		case T_DropStmt:
			{
				DropStmt   *ds = (DropStmt *) stmt;
				ListCell   *lc;

				if (ds->removeType != OBJECT_TRIGGER)
					return;
				foreach(lc, ds->objects)
				{
					List	   *names = lfirst(lc);
					RangeVar   *target;
					Oid			relid;

					if (list_length(names) < 2)
						continue;
					target = makeRangeVarFromNameList(list_truncate(list_copy(names),
																	list_length(names) - 1));
					relid = RangeVarGetRelid(target, NoLock, true);
					if (OidIsValid(relid) &&
						has_track_trigger(relid, strVal(llast(names)), nsp))
						refuse_on_tracked("DROP TRIGGER", target);
				}
				return;
			}
		case T_RenameStmt:
			if (((RenameStmt *) stmt)->renameType == OBJECT_COLUMN ||
				((RenameStmt *) stmt)->renameType == OBJECT_ATTRIBUTE)
			{
				guard_column_rename((RenameStmt *) stmt, nsp);
				return;
			}
			rv = ((RenameStmt *) stmt)->relation;
			trigger = ((RenameStmt *) stmt)->subname;
			what = "ALTER TRIGGER ... RENAME";
			break;
		case T_CreateTrigStmt:
			if (is_track_change(((CreateTrigStmt *) stmt)->funcname, nsp))
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("permission denied for function tool_audit.track_change"),
						 errdetail("Only tool_audit.track() installs it (a new partition of a tracked table gets it from its partitioned table)."),
						 errhint("An admin tracks a table with tool_audit.track(), which is audited.")));
			if (!((CreateTrigStmt *) stmt)->replace)
				return;
			rv = ((CreateTrigStmt *) stmt)->relation;
			trigger = ((CreateTrigStmt *) stmt)->trigname;
			what = "CREATE OR REPLACE TRIGGER";
			break;
		case T_AlterObjectDependsStmt:
			/* DEPENDS ON EXTENSION: DROP EXTENSION would drop the trigger */
			rv = ((AlterObjectDependsStmt *) stmt)->relation;
			trigger = strVal(llast(castNode(List, ((AlterObjectDependsStmt *) stmt)->object)));
			what = "ALTER TRIGGER ... DEPENDS ON EXTENSION";
			break;
		default:
			return;
	}
	if (rv != NULL && trigger != NULL)
	{
		Oid			relid = RangeVarGetRelid(rv, NoLock, true);

		if (OidIsValid(relid) && has_track_trigger(relid, trigger, nsp))
			refuse_on_tracked(what, rv);
	}
}
