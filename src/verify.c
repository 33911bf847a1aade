/*-------------------------------------------------------------------------
 *
 * verify.c
 *		tool_audit.verify() and tool_audit.verify_digest(): the in-database
 *		verifiers, amcheck style.
 *
 * Both report rather than stop: one row per problem, none when everything is
 * intact.  They walk each audit table once through its chain position index
 * (chain_id, chain_lane, chain_seq), so rows come lane by lane in chain
 * order, recompute every row hash from the row's columns (hash.c) and
 * every link from the recomputed hash, and keep only the current lane's
 * state: memory stays flat however long the table.  Each row is handled in
 * a scratch memory context reset per row; CHECK_FOR_INTERRUPTS() per row.
 *
 * After a broken link the walk continues from the stored chain_hash, so one
 * altered row is reported once and the rows after it are still checked.
 * For a digest, a second, strict link is carried from the lane's start using
 * recomputed row hashes only: a superuser who rewrote rows and recomputed
 * every stored hash still cannot make it match the digest.
 *
 * Besides the rows, verify() checks what protects them: the append-only and
 * insert triggers (enabled ALWAYS), the event triggers, the tables' WAL
 * logging, rules, and the unique chain position index.
 *
 * Locks: AccessShareLock on the tables and indexes; the walk reads with the
 * statement's snapshot, so concurrent inserts are not blocked and rows
 * committed later are not seen.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "catalog.h"
#include "crypto.h"
#include "digest.h"
#include "hash.h"
#include "jsonb_util.h"
#include "layout.h"
#include "restore.h"

/* a lane head a digest committed to */
typedef struct CheckpointKey
{
	char		table[NAMEDATALEN];
	int64		chain_id;
	int32		lane;
} CheckpointKey;

typedef struct Checkpoint
{
	CheckpointKey key;
	int64		position;
	unsigned char hash[TA_HASH_LEN];
	bool		reached;
} Checkpoint;

/* One run of verify(), verify_digest() or verify_protections(). */
typedef struct Verification
{
	ReturnSetInfo *rsinfo;
	bool		has_since;
	TimestampTz since;
	HTAB	   *checkpoints;	/* NULL for verify() */
	int			nproblems;
} Verification;

/* What the walk knows of the lane it is in. */
typedef struct LaneCheck
{
	bool		active;
	int64		chain_id;
	int32		lane;
	int64		last_seq;
	int64		last_row_id;
	unsigned char prev[TA_HASH_LEN];	/* stored link of the last row */
	unsigned char strict[TA_HASH_LEN];	/* link from recomputed hashes only */
	bool		strict_ok;		/* false once a gap makes it meaningless */
	Checkpoint *cp;
} LaneCheck;

/* A run whose problems are the rows of the function's result. */
static void
start_verification(Verification *w, FunctionCallInfo fcinfo)
{
	memset(w, 0, sizeof(*w));
	InitMaterializedSRF(fcinfo, 0);
	w->rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
}

static void
report(Verification *w, const char *table, bool has_chain, int64 chain_id, int32 lane,
	   int64 position, int64 row_id, const char *problem)
{
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};

	values[0] = CStringGetTextDatum(table);
	if (!has_chain)
		nulls[1] = true;
	else
		values[1] = CStringGetTextDatum(psprintf(INT64_FORMAT "/%d", chain_id, lane));
	values[2] = Int64GetDatum(position);
	nulls[2] = position < 0;
	values[3] = Int64GetDatum(row_id);
	nulls[3] = row_id < 0;
	values[4] = CStringGetTextDatum(problem);
	tuplestore_putvalues(w->rsinfo->setResult, w->rsinfo->setDesc, values, nulls);
	w->nproblems++;
}

/* ---- the protections around the rows ---- */

static void
check_protections(Verification *w)
{
	static const char *const sql =
	"SELECT x.relname::text, x.problem FROM ("
	"  SELECT c.relname, 'table not logged' AS problem"
	"    FROM pg_catalog.pg_class c"
	"   WHERE c.relnamespace OPERATOR(pg_catalog.=) $1"
	"     AND c.relname OPERATOR(pg_catalog.=) ANY ('{tool_calls,admin_events}'::pg_catalog.name[])"
	"     AND c.relpersistence OPERATOR(pg_catalog.<>) 'p'"
	"  UNION ALL"
	"  SELECT c.relname, pg_catalog.concat('rule on audit table: ', r.rulename)"
	"    FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) r.ev_class"
	"   WHERE c.relnamespace OPERATOR(pg_catalog.=) $1"
	"     AND c.relname OPERATOR(pg_catalog.=) ANY ('{tool_calls,admin_events}'::pg_catalog.name[])"
	"  UNION ALL"
	"  SELECT e.tab, pg_catalog.concat('protective trigger ', e.tg,"
	"                 CASE WHEN t.oid IS NULL THEN ' missing' ELSE ' disabled' END)"
	"    FROM (VALUES ('tool_calls', 'tool_calls_before_insert'),"
	"                 ('tool_calls', 'tool_calls_append_only'),"
	"                 ('tool_calls', 'tool_calls_append_only_row'),"
	"                 ('admin_events', 'admin_events_before_insert'),"
	"                 ('admin_events', 'admin_events_append_only'),"
	"                 ('admin_events', 'admin_events_append_only_row')) AS e(tab, tg)"
	"    LEFT JOIN pg_catalog.pg_class c ON c.relname OPERATOR(pg_catalog.=) e.tab"
	"                                  AND c.relnamespace OPERATOR(pg_catalog.=) $1"
	"    LEFT JOIN pg_catalog.pg_trigger t ON t.tgrelid OPERATOR(pg_catalog.=) c.oid"
	"                                    AND t.tgname OPERATOR(pg_catalog.=) e.tg"
	"   WHERE t.oid IS NULL OR t.tgenabled OPERATOR(pg_catalog.<>) 'A'"
	"  UNION ALL"
	"  SELECT NULL, pg_catalog.concat('event trigger ', e.evt,"
	"                 CASE WHEN t.oid IS NULL THEN ' missing' ELSE ' disabled' END)"
	"    FROM (VALUES ('tool_audit_ddl_start'), ('tool_audit_sql_drop'),"
	"                 ('tool_audit_table_rewrite')) AS e(evt)"
	"    LEFT JOIN pg_catalog.pg_event_trigger t ON t.evtname OPERATOR(pg_catalog.=) e.evt"
	"   WHERE t.oid IS NULL OR t.evtenabled OPERATOR(pg_catalog.<>) 'A'"
	"  UNION ALL"
	"  SELECT e.tab, pg_catalog.concat('chain position index ', e.idx, ' missing, invalid or not unique')"
	"    FROM (VALUES ('tool_calls', 'tool_calls_chain_position'),"
	"                 ('admin_events', 'admin_events_chain_position')) AS e(tab, idx)"
	"    LEFT JOIN pg_catalog.pg_class ic ON ic.relname OPERATOR(pg_catalog.=) e.idx"
	"                                   AND ic.relnamespace OPERATOR(pg_catalog.=) $1"
	"    LEFT JOIN pg_catalog.pg_index i ON i.indexrelid OPERATOR(pg_catalog.=) ic.oid"
	"   WHERE i.indexrelid IS NULL OR NOT i.indisunique OR NOT i.indisvalid"
	") x(relname, problem)"
	" ORDER BY 1 NULLS FIRST, 2";
	Oid			argtypes[1] = {OIDOID};
	Datum		args[1] = {ObjectIdGetDatum(ta_schema_oid(false))};

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args(sql, 1, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not check the audit tables' protections");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *table = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char	   *problem = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);

		report(w, table ? table : "", false, 0, 0, -1, -1, problem);
	}
	SPI_finish();
}

/* ---- the walk ---- */

static void
finish_lane(Verification *w, const char *table, LaneCheck *ln)
{
	if (ln->active && ln->cp != NULL && !ln->cp->reached)
	{
		ln->cp->reached = true;
		report(w, table, true, ln->chain_id, ln->lane, ln->last_seq + 1, -1,
			   psprintf("rows covered by the digest are missing: the lane ends at position "
						INT64_FORMAT ", the digest covers position " INT64_FORMAT,
						ln->last_seq, ln->cp->position));
	}
	ln->active = false;
}

static void
start_lane(Verification *w, const char *table, LaneCheck *ln, int64 chain_id, int32 lane)
{
	ln->active = true;
	ln->chain_id = chain_id;
	ln->lane = lane;
	ln->last_seq = 0;
	ln->last_row_id = -1;
	memset(ln->prev, 0, TA_HASH_LEN);
	memset(ln->strict, 0, TA_HASH_LEN);
	ln->strict_ok = true;
	ln->cp = NULL;
	if (w->checkpoints != NULL)
	{
		CheckpointKey key;

		memset(&key, 0, sizeof(key));
		strlcpy(key.table, table, NAMEDATALEN);
		key.chain_id = chain_id;
		key.lane = lane;
		ln->cp = hash_search(w->checkpoints, &key, HASH_FIND, NULL);
	}
}

static void
walk_table(Verification *w, const char *table)
{
	const TaLayout *layout;
	Relation	rel;
	Relation	irel;
	const int  *col;
	Snapshot	snap;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	MemoryContext rowcxt,
				old;
	LaneCheck	ln = {0};
	bool		any_row = false;
	int64		last_id;

	/* a verifier reports what it cannot check, as a row, and goes on */
	if (!OidIsValid(ta_schema_relid(table, true)))
	{
		report(w, table, false, 0, 0, -1, -1, "table or its chain position index is missing");
		return;
	}
	rel = ta_layout_open(table, AccessShareLock, &layout);
	col = layout->column;
	if (!OidIsValid(layout->chain_index))
	{
		table_close(rel, AccessShareLock);
		report(w, table, false, 0, 0, -1, -1, "table or its chain position index is missing");
		return;
	}
	if (!layout->chained)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("tool_audit.%s has no chain columns", table),
				 errhint("Run ALTER EXTENSION tool_audit UPDATE.")));
	irel = index_open(ta_chain_index(layout), AccessShareLock);
	snap = RegisterSnapshot(GetActiveSnapshot());
	slot = table_slot_create(rel, NULL);
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "tool_audit verify row",
								   ALLOCSET_DEFAULT_SIZES);

	scan = ta_index_scan(rel, irel, snap, NULL, 0);
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		Datum	   *values;
		bool	   *nulls;
		unsigned char row_hash[TA_HASH_LEN],
					stored_row[TA_HASH_LEN],
					stored_link[TA_HASH_LEN],
					link[TA_HASH_LEN];
		bool		row_ok,
					link_ok,
					has_row_hash,
					has_link,
					in_scope = true;
		int64		chain_id;
		int32		lane;
		int64		seq,
					row_id;

		CHECK_FOR_INTERRUPTS();
		any_row = true;
		old = MemoryContextSwitchTo(rowcxt);
		slot_getallattrs(slot);
		values = slot->tts_values;
		nulls = slot->tts_isnull;
		row_id = nulls[col[TA_COL_ID]] ? -1 : DatumGetInt64(values[col[TA_COL_ID]]);
		if (w->has_since && layout->time_column >= 0 && !nulls[layout->time_column])
			in_scope = DatumGetTimestampTz(values[layout->time_column]) >= w->since;

		if (nulls[col[TA_COL_CHAIN_ID]] || nulls[col[TA_COL_CHAIN_LANE]] || nulls[col[TA_COL_CHAIN_SEQ]])
		{
			report(w, table, false, 0, 0, -1, row_id,
				   "row not in a chain (inserted without the insert trigger)");
			goto next;
		}
		chain_id = DatumGetInt64(values[col[TA_COL_CHAIN_ID]]);
		lane = DatumGetInt32(values[col[TA_COL_CHAIN_LANE]]);
		seq = DatumGetInt64(values[col[TA_COL_CHAIN_SEQ]]);
		if (!ln.active || ln.chain_id != chain_id || ln.lane != lane)
		{
			finish_lane(w, table, &ln);
			start_lane(w, table, &ln, chain_id, lane);
		}

		if (in_scope && chain_id != ta_chain_id(layout, values, nulls))
			report(w, table, true, chain_id, lane, seq, row_id,
				   "row in the wrong chain: its chain id does not match its table and tenant");
		ta_row_hash(layout, values, nulls, row_hash);
		has_row_hash = ta_stored_hash(values[col[TA_COL_ROW_HASH]], nulls[col[TA_COL_ROW_HASH]], stored_row);
		has_link = ta_stored_hash(values[col[TA_COL_CHAIN_HASH]], nulls[col[TA_COL_CHAIN_HASH]], stored_link);
		row_ok = has_row_hash && ta_hash_equal(row_hash, stored_row);

		if (seq > ln.last_seq + 1)
		{
			report(w, table, true, chain_id, lane, ln.last_seq + 1, -1,
				   seq == ln.last_seq + 2 ? "row missing" :
				   psprintf("rows missing: positions " INT64_FORMAT " to " INT64_FORMAT,
							ln.last_seq + 1, seq - 1));
			ln.strict_ok = false;
		}
		else if (seq <= ln.last_seq)
			report(w, table, true, chain_id, lane, seq, row_id,
				   "row inserted: position already taken");

		ta_link_hash(chain_id, lane, seq, ln.prev, row_hash, link);
		link_ok = has_link && ta_hash_equal(link, stored_link);
		if (in_scope && !row_ok)
			report(w, table, true, chain_id, lane, seq, row_id,
				   has_row_hash ? "row altered: its content does not match its row hash" :
				   "row hash missing or malformed");
		else if (in_scope && !link_ok && seq == ln.last_seq + 1)
			report(w, table, true, chain_id, lane, seq, row_id,
				   "chain link broken: row reordered, inserted or its link edited");
		/* after a gap the link cannot be checked: the gap was reported */

		/* the strict link, for digests */
		ta_link_hash(chain_id, lane, seq, ln.strict, row_hash, ln.strict);
		if (ln.cp != NULL && seq == ln.cp->position)
		{
			ln.cp->reached = true;
			if (!ln.strict_ok)
				report(w, table, true, chain_id, lane, seq, row_id,
					   "rows covered by the digest are missing before this position");
			else if (!ta_hash_equal(ln.strict, ln.cp->hash))
				report(w, table, true, chain_id, lane, seq, row_id,
					   "chain head mismatch: rows changed since the digest (the chain up to this position no longer hashes to the digest's head)");
		}

		if (has_link)
			memcpy(ln.prev, stored_link, TA_HASH_LEN);
		else
			memcpy(ln.prev, link, TA_HASH_LEN);
		if (seq > ln.last_seq)
			ln.last_seq = seq;
		ln.last_row_id = row_id;
next:
		MemoryContextSwitchTo(old);
		MemoryContextReset(rowcxt);
	}
	finish_lane(w, table, &ln);

	/*
	 * A restore whose rows were refused (without --single-transaction)
	 * leaves the table empty and its sequence set: an empty trail must not
	 * verify.
	 */
	if (!any_row && ta_sequence_handed_out(layout, &last_id))
		report(w, table, false, 0, 0, -1, -1,
			   psprintf("the table holds no rows but its id sequence has handed out ids up to "
						INT64_FORMAT ": the trail was emptied (a restore whose rows were refused?), "
						"or every insert so far was rolled back", last_id));
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(irel, AccessShareLock);
	table_close(rel, AccessShareLock);
	UnregisterSnapshot(snap);
	MemoryContextDelete(rowcxt);
}

/* Checkpoints of a digest whose lanes were never met: the lane is gone. */
static void
report_unreached(Verification *w)
{
	HASH_SEQ_STATUS status;
	Checkpoint *cp;

	if (w->checkpoints == NULL)
		return;
	hash_seq_init(&status, w->checkpoints);
	while ((cp = hash_seq_search(&status)) != NULL)
		if (!cp->reached)
			report(w, cp->key.table, true, cp->key.chain_id, cp->key.lane, 1, -1,
				   psprintf("rows covered by the digest are missing: the whole lane (up to position "
							INT64_FORMAT ") is gone", cp->position));
}

static void
run_walk(Verification *w)
{
	check_protections(w);
	walk_table(w, "admin_events");
	walk_table(w, "tool_calls");
	report_unreached(w);
}

/*
 * tool_audit.verify(since timestamptz DEFAULT NULL)
 *	RETURNS TABLE (table_name text, chain text, position bigint, row_id bigint, problem text)
 */
PG_FUNCTION_INFO_V1(verify);
Datum
verify(PG_FUNCTION_ARGS)
{
	Verification w;

	start_verification(&w, fcinfo);
	if (!PG_ARGISNULL(0))
	{
		w.has_since = true;
		w.since = PG_GETARG_TIMESTAMPTZ(0);
	}
	run_walk(&w);
	return (Datum) 0;
}

static void
bad_digest(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("not a tool_audit digest"),
			 errdetail("%s", detail),
			 errhint("Pass the jsonb that tool_audit.digest() returned.")));
}

static int64
head_int(JsonbContainer *head, const char *key, int64 min, int64 max)
{
	JsonbValue *v = ta_jsonb_key(head, key);
	int64		n;

	if (v == NULL || v->type != jbvNumeric)
		bad_digest(psprintf("A head has no numeric \"%s\".", key));
	n = DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(v->val.numeric)));
	if (!DatumGetBool(DirectFunctionCall2(numeric_eq, NumericGetDatum(v->val.numeric),
										  DirectFunctionCall1(int8_numeric, Int64GetDatum(n)))))
		bad_digest(psprintf("A head's \"%s\" is not an integer.", key));
	if (n < min || n > max)
		bad_digest(psprintf("A head's \"%s\" is out of range.", key));
	return n;
}

static int64
head_chain(JsonbContainer *head)
{
	JsonbValue *v = ta_jsonb_key(head, "chain");
	char	   *str,
			   *end;
	long long	n;

	if (v == NULL || v->type != jbvString || v->val.string.len == 0 || v->val.string.len > 20)
		bad_digest("A head's \"chain\" is not a chain id in decimal.");
	str = pnstrdup(v->val.string.val, v->val.string.len);
	errno = 0;
	n = strtoll(str, &end, 10);
	if (errno != 0 || *end != '\0' || !(isdigit((unsigned char) str[0]) || str[0] == '-'))
		bad_digest("A head's \"chain\" is not a chain id in decimal.");
	return (int64) n;
}

static HTAB *
load_checkpoints(Jsonb *d)
{
	HASHCTL		ctl;
	HTAB	   *h;
	JsonbValue *format;
	JsonbValue *heads;
	int			n;

	/* before any key lookup: those assume an object */
	if (!JB_ROOT_IS_OBJECT(d))
		bad_digest("The value is not a JSON object.");
	format = ta_jsonb_key(&d->root, "format");
	heads = ta_jsonb_key(&d->root, "heads");
	if (format == NULL || format->type != jbvString ||
		format->val.string.len != strlen("tool_audit digest 1") ||
		memcmp(format->val.string.val, "tool_audit digest 1", format->val.string.len) != 0)
		bad_digest("Its \"format\" is not \"tool_audit digest 1\".");
	if (heads == NULL || heads->type != jbvBinary ||
		!JsonContainerIsArray(heads->val.binary.data))
		bad_digest("It has no \"heads\" array.");

	ctl.keysize = sizeof(CheckpointKey);
	ctl.entrysize = sizeof(Checkpoint);
	ctl.hcxt = CurrentMemoryContext;
	h = hash_create("tool_audit digest heads", 64, &ctl,
					HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	n = JsonContainerSize(heads->val.binary.data);
	for (int i = 0; i < n; i++)
	{
		JsonbValue *hv = getIthJsonbValueFromContainer(heads->val.binary.data, i);
		JsonbContainer *head;
		JsonbValue *table,
				   *hash;
		CheckpointKey key;
		Checkpoint *cp;
		bool		found;

		if (hv == NULL || hv->type != jbvBinary || !JsonContainerIsObject(hv->val.binary.data))
			bad_digest("A head is not an object.");
		head = hv->val.binary.data;
		table = ta_jsonb_key(head, "table");
		hash = ta_jsonb_key(head, "hash");
		memset(&key, 0, sizeof(key));
		if (table == NULL || table->type != jbvString ||
			!((table->val.string.len == 10 && memcmp(table->val.string.val, "tool_calls", 10) == 0) ||
			  (table->val.string.len == 12 && memcmp(table->val.string.val, "admin_events", 12) == 0)))
			bad_digest("A head's \"table\" is not tool_calls or admin_events.");
		memcpy(key.table, table->val.string.val, table->val.string.len);
		key.chain_id = head_chain(head);
		key.lane = (int32) head_int(head, "lane", 0, PG_INT32_MAX);
		cp = hash_search(h, &key, HASH_ENTER, &found);
		if (found)
			bad_digest("Two heads name the same chain and lane.");
		cp->position = head_int(head, "position", 1, PG_INT64_MAX);
		cp->reached = false;
		if (hash == NULL || hash->type != jbvString || hash->val.string.len != 2 * TA_HASH_LEN ||
			strspn(pnstrdup(hash->val.string.val, hash->val.string.len),
				   "0123456789abcdef") != 2 * TA_HASH_LEN)
			bad_digest("A head's \"hash\" is not 64 lower-case hex digits.");
		(void) hex_decode(hash->val.string.val, 2 * TA_HASH_LEN, (char *) cp->hash);
	}
	return h;
}

/*
 * tool_audit.verify_digest(digest jsonb)
 *	RETURNS TABLE (table_name text, chain text, position bigint, row_id bigint, problem text)
 */
PG_FUNCTION_INFO_V1(verify_digest);
Datum
verify_digest(PG_FUNCTION_ARGS)
{
	Jsonb	   *d = PG_GETARG_JSONB_P(0);
	Verification w;
	HTAB	   *checkpoints = load_checkpoints(d);
	char	   *sig_problem = ta_digest_signature_problem(d);

	start_verification(&w, fcinfo);
	w.checkpoints = checkpoints;
	if (sig_problem != NULL)
		report(&w, "", false, 0, 0, -1, -1, sig_problem);
	run_walk(&w);
	return (Datum) 0;
}

/*
 * tool_audit.verify_protections()
 *	RETURNS TABLE (table_name text, chain text, position bigint, row_id bigint, problem text)
 *
 * verify()'s checks of what protects the rows (triggers, event triggers, WAL
 * logging, rules, chain position index), without the walk over the rows:
 * cheap enough for a report that checks only the rows it covers.
 */
PG_FUNCTION_INFO_V1(verify_protections);
Datum
verify_protections(PG_FUNCTION_ARGS)
{
	Verification w;

	start_verification(&w, fcinfo);
	check_protections(&w);
	return (Datum) 0;
}
