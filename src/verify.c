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
#include "catalog/objectaddress.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "alerts.h"
#include "catalog.h"
#include "protections.h"
#include "security_state.h"
#include "crypto.h"
#include "digest.h"
#include "erase.h"
#include "hash.h"
#include "impersonation.h"
#include "jsonb_util.h"
#include "layout.h"
#include "purge.h"
#include "restore.h"
#include "tenant_verify.h"
#include "time_order.h"
#include "verify_incremental.h"
#include "verify_parallel.h"

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

/* A span of lane positions a purge removed (tool_audit.purge_anchors). */
typedef struct Anchor
{
	int64		chain_id;
	int32		lane;
	int64		first_seq;
	int64		last_seq;
	unsigned char before[TA_HASH_LEN];
	unsigned char after[TA_HASH_LEN];
	int64		event_id;
	bool		sanctioned;		/* tied to its verified purge event */
	bool		has_purged_at;
	TimestampTz purged_at;		/* the purge event's time */
} Anchor;

/* One run of verify(), verify_digest() or verify_protections(). */
typedef struct Verification
{
	ReturnSetInfo *rsinfo;
	bool		has_since;
	TimestampTz since;
	HTAB	   *checkpoints;	/* NULL for verify() */
	bool		has_taken_at;	/* the digest's time */
	TimestampTz taken_at;
	int			nproblems;
	HTAB	   *erased;			/* accepted erasures, by row; NULL when none */
	const TaTenantScope *scope; /* a bound caller's tenants; NULL: all */
	const TaTenantScope *digest_tenants;	/* a tenant digest's tenants; NULL: all */
	const TaSecState *secstate; /* the security state read; NULL: not yet */
	bool		incremental;	/* verify_since(): lanes resume at the digest's heads */
	TaWalkScan *ws;			/* the walk's scan of the table being walked */
	TaProblemSink sink;			/* a part of a parallel walk: problems go here */
	void	   *sink_arg;
	char		part_table[NAMEDATALEN];	/* and the table it walks */
	Anchor	   *part_anchors;	/* with that table's anchors */
	int			part_nanchors;
	bool		part_lanes;		/* the part's walk met a row in a lane */
	bool		part_tail;		/* and is past its last row */
} Verification;

/* An audit row as an accepted erasure left it: the latest entry wins. */
typedef struct ErasedKey
{
	int64		row_id;
	int32		table;			/* its index in ta_audit_tables */
	int32		pad;
} ErasedKey;

typedef struct ErasedRow
{
	ErasedKey	key;
	int64		erase_event_id;
	unsigned char hash_after[TA_HASH_LEN];
} ErasedRow;

/* A tool_audit.retention.erase event and what the entries naming it hash to. */
typedef struct EraseEvent
{
	int64		id;
	bool		has_hash;
	unsigned char committed[TA_HASH_LEN];
	TaErasuresHash entries;
	bool		ok;
} EraseEvent;

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
	const Anchor *anchor;		/* the last anchor the lane went across */
	bool		has_time;		/* latest_time is set (time_order.c) */
	TimestampTz latest_time;	/* the latest time of a row so far */
	int64		latest_seq;		/* that row's position */
	bool		whole;			/* verify_since(): walked from its start all the same */
	bool		pending;		/* verify_since(): sought its head, not there yet */
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

	if (w->sink != NULL)
	{
		/* a part of a parallel walk: the leader merges and emits them */
		w->sink(w->sink_arg, w->part_tail, has_chain, chain_id, lane, position, row_id, problem);
		return;
	}
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

/* a problem of the security state (security_state.c) */
static void
security_problem(void *arg, const char *problem)
{
	report((Verification *) arg, "", false, 0, 0, -1, -1, problem);
}

static void
check_protections(Verification *w)
{
	static const char *const sql =
	"SELECT x.relname::text, x.problem FROM ("
	"  SELECT c.relname, 'table not logged' AS problem"
	"    FROM pg_catalog.pg_class c"
	"   WHERE c.relnamespace OPERATOR(pg_catalog.=) $1"
	"     AND c.relname OPERATOR(pg_catalog.=) ANY ('{tool_calls,admin_events,data_changes}'::pg_catalog.name[])"
	"     AND c.relpersistence OPERATOR(pg_catalog.<>) 'p'"
	"  UNION ALL"
	"  SELECT c.relname, pg_catalog.concat('rule on audit table: ', r.rulename)"
	"    FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) r.ev_class"
	"   WHERE c.relnamespace OPERATOR(pg_catalog.=) $1"
	"     AND c.relname OPERATOR(pg_catalog.=) ANY ('{tool_calls,admin_events,data_changes}'::pg_catalog.name[])"
	"  UNION ALL"
	"  SELECT e.tab, pg_catalog.concat('protective trigger ', e.tg,"
	"                 CASE WHEN t.oid IS NULL THEN ' missing' ELSE ' disabled' END)"
	"    FROM ROWS FROM (pg_catalog.unnest($3), pg_catalog.unnest($4)) AS e(tab, tg)"
	"    LEFT JOIN pg_catalog.pg_class c ON c.relname OPERATOR(pg_catalog.=) e.tab"
	"                                  AND c.relnamespace OPERATOR(pg_catalog.=) $1"
	"    LEFT JOIN pg_catalog.pg_trigger t ON t.tgrelid OPERATOR(pg_catalog.=) c.oid"
	"                                    AND t.tgname OPERATOR(pg_catalog.=) e.tg"
	"   WHERE (t.oid IS NULL OR t.tgenabled OPERATOR(pg_catalog.<>) 'A')"
	"     AND (e.tab OPERATOR(pg_catalog.<>) 'data_changes' OR $2)"
	"  UNION ALL"
	"  SELECT NULL, pg_catalog.concat('event trigger ', e.evt,"
	"                 CASE WHEN t.oid IS NULL THEN ' missing' ELSE ' disabled' END)"
	"    FROM pg_catalog.unnest($5) AS e(evt)"
	"    LEFT JOIN pg_catalog.pg_event_trigger t ON t.evtname OPERATOR(pg_catalog.=) e.evt"
	"   WHERE t.oid IS NULL OR t.evtenabled OPERATOR(pg_catalog.<>) 'A'"
	"  UNION ALL"
	"  SELECT e.tab, pg_catalog.concat('chain position index ', e.idx, ' missing, invalid or not unique')"
	"    FROM (VALUES ('tool_calls', 'tool_calls_chain_position'),"
	"                 ('admin_events', 'admin_events_chain_position'),"
	"                 ('data_changes', 'data_changes_chain_position')) AS e(tab, idx)"
	"    LEFT JOIN pg_catalog.pg_class ic ON ic.relname OPERATOR(pg_catalog.=) e.idx"
	"                                   AND ic.relnamespace OPERATOR(pg_catalog.=) $1"
	"    LEFT JOIN pg_catalog.pg_index i ON i.indexrelid OPERATOR(pg_catalog.=) ic.oid"
	"   WHERE (i.indexrelid IS NULL OR NOT i.indisunique OR NOT i.indisvalid)"
	"     AND (e.tab OPERATOR(pg_catalog.<>) 'data_changes' OR $2)"
	") x(relname, problem)"
	" ORDER BY 1 NULLS FIRST, 2";
	/*
	 * $2: the schema's version has data_changes (1.5 on); $3 and $4: the
	 * protective triggers' tables and names, $5: the event triggers
	 * (protections.h)
	 */
	Oid			argtypes[5] = {OIDOID, BOOLOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
	Datum		args[5];
	List	   *tables = NIL;
	List	   *triggers = NIL;
	List	   *event_triggers = NIL;

	for (size_t i = 0; i < lengthof(ta_protective_triggers); i++)
	{
		tables = lappend(tables, (char *) ta_protective_triggers[i].table);
		triggers = lappend(triggers, (char *) ta_protective_triggers[i].trigger);
	}
	for (size_t i = 0; i < lengthof(ta_protective_event_triggers); i++)
		event_triggers = lappend(event_triggers, (char *) ta_protective_event_triggers[i]);
	args[0] = ObjectIdGetDatum(ta_schema_oid(false));
	args[1] = BoolGetDatum(ta_audit_table_expected("data_changes"));
	args[2] = PointerGetDatum(strlist_to_textarray(tables));
	args[3] = PointerGetDatum(strlist_to_textarray(triggers));
	args[4] = PointerGetDatum(strlist_to_textarray(event_triggers));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args(sql, 5, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not check the audit tables' protections");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *table = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char	   *problem = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);

		report(w, table ? table : "", false, 0, 0, -1, -1, problem);
	}
	SPI_finish();
	/* a tenant run names no binding: they name other tenants and their roles */
	ta_security_state_check_install(w->secstate, w->scope == NULL, security_problem, w);
}

/*
 * What the id sequence says of the table.  Moved with setval: when the next
 * id it hands out is one a row already has, every insert fails on the
 * primary key; at its maximum, every insert fails in nextval.  Either stops
 * recording and no hook sees setval(), so verify() says so.  (A sequence
 * merely behind a restored row's higher id fails nothing yet, and is not
 * reported.)  And a table with no rows whose sequence has handed out ids,
 * no purge anchor, and a mark that it once committed a row (trail_mark.c:
 * without it, every insert so far was rolled back), was emptied: a restore
 * whose rows were refused (without --single-transaction) leaves exactly
 * that, and an empty trail must not verify.  Read as the table's owner: the verifier has no
 * privilege on the sequences, and needs none to learn where they stand.
 */
static void
check_id_sequence(Verification *w, const char *table)
{
	Oid			relid = ta_schema_relid(table, true);
	char	   *seqname = psprintf("%s_id_seq", table);
	Oid			seqid = ta_schema_relid(seqname, true);
	Oid			save_user;
	int			save_sec;
	char	   *problem = NULL;
	bool		has_marks = OidIsValid(ta_schema_relid("trail_marks", true));

	if (!OidIsValid(relid) || !OidIsValid(seqid))
		return;
	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(ta_relation_owner(relid),
						   save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	PG_TRY();
	{
		/* a schema older than 1.4 has no anchors: the purge does not exist */
		const char *no_anchor =
			OidIsValid(ta_schema_relid("purge_anchors", true)) ?
			psprintf("NOT EXISTS (SELECT 1 FROM %s.purge_anchors a"
					 "             WHERE a.table_name OPERATOR(pg_catalog.=) %s)",
					 TA_SCHEMA, quote_literal_cstr(table)) : "true";
		/* 1.5 on: only a table that has committed a row (trail_mark.c) */
		const char *marked = has_marks ?
			psprintf("EXISTS (SELECT 1 FROM %s.trail_marks m"
					 "         WHERE m.table_name OPERATOR(pg_catalog.=) %s)",
					 TA_SCHEMA, quote_literal_cstr(table)) : "true";
		char	   *sql = psprintf("SELECT n.next IS NULL,"
								   "       n.next IS NOT NULL AND EXISTS (SELECT 1 FROM %s.%s t"
								   "                                       WHERE t.id OPERATOR(pg_catalog.=) n.next),"
								   "       n.next,"
								   "       s.is_called AND NOT EXISTS (SELECT 1 FROM %s.%s t) AND %s AND %s,"
								   "       s.last_value"
								   "  FROM %s.%s s, pg_catalog.pg_sequence q,"
								   "       LATERAL (SELECT CASE WHEN NOT s.is_called THEN s.last_value"
								   "                            WHEN s.last_value OPERATOR(pg_catalog.>=) q.seqmax THEN NULL"
								   "                            ELSE s.last_value OPERATOR(pg_catalog.+) q.seqincrement END) n(next)"
								   " WHERE q.seqrelid OPERATOR(pg_catalog.=) %u",
								   TA_SCHEMA, quote_identifier(table),
								   TA_SCHEMA, quote_identifier(table), no_anchor, marked,
								   TA_SCHEMA, quote_identifier(seqname), seqid);
		bool		isnull;
		bool		exhausted;
		bool		taken;
		bool		emptied;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (SPI_execute(sql, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "could not read sequence %s", seqname);
		exhausted = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		taken = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
		emptied = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull));
		if (emptied)
			problem = psprintf("the table holds no rows but its id sequence has handed out ids up to %s: "
							   "the trail was emptied (a restore whose rows were refused?)%s",
							   SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5),
							   has_marks ? "" :
							   ", or every insert so far was rolled back");
		else if (exhausted)
			problem = psprintf("id sequence %s is at its maximum: every insert fails (moved with setval?)",
							   seqname);
		else if (taken)
			problem = psprintf("id sequence %s hands out id %s next, which a row already has: "
							   "inserts fail on the primary key (moved back with setval?)",
							   seqname,
							   SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3));
		SPI_finish();
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_user, save_sec);
	}
	PG_END_TRY();
	if (problem != NULL)
		report(w, table, false, 0, 0, -1, -1, problem);
}

/* ---- erasures ---- */

/* An audit table's index in ta_audit_tables; -1 for any other name. */
static int32
table_index(const char *table)
{
	for (int i = 0; i < TA_NAUDIT_TABLES; i++)
		if (strcmp(table, ta_audit_tables[i]) == 0)
			return i;
	return -1;
}

/*
 * The erasures verify() accepts: the entries of tool_audit.erasures whose
 * tool_audit.retention.erase event commits to exactly the set of entries
 * naming it (its "erasures_hash").  An entry naming no such event, and an
 * event whose entries do not hash to its commitment (an entry inserted,
 * changed or removed by hand), are problems, and their entries are not
 * accepted: the rows they would cover are then reported by the walk.  The
 * event row itself is checked by the walk like any other.
 */
static void
load_erasures(Verification *w)
{
	static const char *const events_sql =
	"SELECT a.id, a.payload OPERATOR(pg_catalog.->>) '" TA_ERASURES_HASH_KEY "'"
	"  FROM tool_audit.admin_events a"
	" WHERE a.event_type OPERATOR(pg_catalog.=) 'tool_audit.retention.erase'";
	static const char *const entries_sql =
	"SELECT e.erase_event_id, e.table_name, e.row_id, e.erased_columns, e.row_hash_after"
	"  FROM tool_audit.erasures e"
	" ORDER BY e.erase_event_id, e.table_name COLLATE \"C\", e.row_id";
	MemoryContext cxt = CurrentMemoryContext;
	HASHCTL		ctl;
	HTAB	   *events;
	HASH_SEQ_STATUS status;
	EraseEvent *ev;

	/* a database still at a version before 1.4 has no erasures */
	if (!OidIsValid(ta_schema_relid("erasures", true)))
		return;
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(EraseEvent);
	ctl.hcxt = cxt;
	events = hash_create("tool_audit erase events", 16, &ctl,
						 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute(events_sql, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the erasure events");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		char	   *hex = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		MemoryContext old = MemoryContextSwitchTo(cxt);

		ev = hash_search(events, &id, HASH_ENTER, NULL);
		ev->has_hash = hex != NULL && strlen(hex) == 2 * TA_HASH_LEN &&
			strspn(hex, "0123456789abcdef") == 2 * TA_HASH_LEN;
		if (ev->has_hash)
			(void) hex_decode(hex, 2 * TA_HASH_LEN, (char *) ev->committed);
		ta_erasures_hash_begin(&ev->entries);
		MemoryContextSwitchTo(old);
	}

	if (SPI_execute(entries_sql, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read tool_audit.erasures");
	/* first pass: what each event's entries hash to */
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int64		event_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		char	   *table = SPI_getvalue(tup, desc, 2);
		int64		row_id = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		Datum		columns = SPI_getbinval(tup, desc, 4, &isnull);
		unsigned char after[TA_HASH_LEN];
		bool		after_ok = ta_stored_hash_attr(tup, desc, 5, after);
		MemoryContext old;

		ev = hash_search(events, &event_id, HASH_FIND, NULL);
		if (ev == NULL)
		{
			if (w->scope == NULL)	/* names rows of any tenant */
				report(w, table, false, 0, 0, -1, row_id,
					   psprintf("erasure entry names admin event " INT64_FORMAT
								", which is not a tool_audit.retention.erase event: not written by erase_subject()",
								event_id));
			continue;
		}
		if (!after_ok)
			memset(after, 0, TA_HASH_LEN);	/* cannot match any commitment */
		old = MemoryContextSwitchTo(cxt);
		ta_erasures_hash_add(&ev->entries, table, row_id, columns, after);
		MemoryContextSwitchTo(old);
	}
	hash_seq_init(&status, events);
	while ((ev = hash_seq_search(&status)) != NULL)
	{
		unsigned char got[TA_HASH_LEN];

		ta_erasures_hash_end(&ev->entries, got);
		ev->ok = ev->has_hash && ta_hash_equal(got, ev->committed);
		if (!ev->ok && w->scope == NULL)	/* names rows of any tenant */
			report(w, "admin_events", false, 0, 0, -1, ev->id,
				   psprintf("erasure event's entries in tool_audit.erasures (" INT64_FORMAT
							") do not match its erasures_hash: entries inserted, changed or removed outside erase_subject()",
							ev->entries.count));
	}
	/* second pass: the entries of events that commit to them */
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int64		event_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		char	   *table = SPI_getvalue(tup, desc, 2);
		ErasedKey	key;
		ErasedRow  *row;

		ev = hash_search(events, &event_id, HASH_FIND, NULL);
		if (ev == NULL || !ev->ok)
			continue;
		if (w->erased == NULL)
		{
			memset(&ctl, 0, sizeof(ctl));
			ctl.keysize = sizeof(ErasedKey);
			ctl.entrysize = sizeof(ErasedRow);
			ctl.hcxt = cxt;
			w->erased = hash_create("tool_audit erased rows", 64, &ctl,
									HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		}
		memset(&key, 0, sizeof(key));
		key.row_id = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		key.table = table_index(table);
		/* entries come in event order: a later erasure of the row wins */
		row = hash_search(w->erased, &key, HASH_ENTER, NULL);
		row->erase_event_id = event_id;
		(void) ta_stored_hash_attr(tup, desc, 5, row->hash_after);
	}
	SPI_finish();
	hash_destroy(events);
}

static const ErasedRow *
find_erased(Verification *w, const char *table, int64 row_id)
{
	ErasedKey	key;

	if (w->erased == NULL || row_id < 0)
		return NULL;
	memset(&key, 0, sizeof(key));
	key.row_id = row_id;
	key.table = table_index(table);
	return hash_search(w->erased, &key, HASH_FIND, NULL);
}


/* ---- the walk ---- */

static void
finish_lane(Verification *w, const char *table, LaneCheck *ln)
{
	/* verify_since() skipped the rows: where the lane really ends */
	if (ln->active && ln->pending)
		ln->last_seq = ta_walk_lane_end(w->ws, ln->chain_id, ln->lane);
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
	ln->anchor = NULL;
	ln->has_time = false;
	ln->whole = false;
	ln->pending = false;
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

/*
 * The purge anchors of a table in chain position order; what is wrong with
 * any of them (purge_anchor_check()) is reported here, and such an anchor
 * still continues its lane (so that one forged anchor is reported once) but
 * is no sanctioned purge for a digest.
 */
static Anchor *
load_anchors(Verification *w, const char *table, int *nanchors)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(table)};
	Anchor	   *anchors = NULL;
	MemoryContext outer = CurrentMemoryContext;

	*nanchors = 0;
	if (!OidIsValid(ta_schema_relid("purge_anchors", true)))
		return NULL;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args("SELECT * FROM tool_audit.purge_anchor_check($1)",
							  1, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read tool_audit.purge_anchors");
	if (SPI_processed > 0)
		anchors = MemoryContextAllocZero(outer, sizeof(Anchor) * SPI_processed);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Anchor	   *a = &anchors[*nanchors];
		bool		n[11];
		Datum		v[11];
		char	   *problem;

		for (int c = 0; c < 11; c++)
			v[c] = SPI_getbinval(tup, desc, c + 1, &n[c]);
		if (!ta_tenant_scope_has_datum(w->scope, v[7], n[7]))
			continue;			/* another tenant's, in a tenant run */
		problem = n[10] ? NULL : TextDatumGetCString(v[10]);
		a->has_purged_at = !n[9];
		a->purged_at = n[9] ? 0 : DatumGetTimestampTz(v[9]);
		a->chain_id = DatumGetInt64(v[0]);
		a->lane = DatumGetInt32(v[1]);
		a->first_seq = DatumGetInt64(v[2]);
		a->last_seq = DatumGetInt64(v[3]);
		a->event_id = DatumGetInt64(v[6]);
		if (!ta_stored_hash(v[4], n[4], a->before) || !ta_stored_hash(v[5], n[5], a->after))
		{
			report(w, table, true, a->chain_id, a->lane, a->first_seq, -1,
				   "purge anchor malformed: a link is not 32 bytes");
			continue;
		}
		a->sanctioned = problem == NULL;
		if (problem != NULL)
			report(w, table, true, a->chain_id, a->lane, a->first_seq, -1, problem);
		(*nanchors)++;
	}
	SPI_finish();
	return anchors;
}

static int
lane_cmp(int64 chain_a, int32 lane_a, int64 chain_b, int32 lane_b)
{
	if (chain_a != chain_b)
		return chain_a < chain_b ? -1 : 1;
	if (lane_a != lane_b)
		return lane_a < lane_b ? -1 : 1;
	return 0;
}

/*
 * The lane goes across a purged span: its link before must be the lane's
 * link so far, and the lane goes on from its link after.  A digest head in
 * the span is reported once, as removed by that purge when the anchor is
 * sanctioned and the rows before it still hash to what the digest saw.
 */
static void
cross_anchor(Verification *w, const char *table, LaneCheck *ln, const Anchor *a)
{
	bool		contiguous = a->first_seq == ln->last_seq + 1;

	if (a->first_seq > ln->last_seq + 1)
	{
		report(w, table, true, ln->chain_id, ln->lane, ln->last_seq + 1, -1,
			   a->first_seq == ln->last_seq + 2 ? "row missing" :
			   psprintf("rows missing: positions " INT64_FORMAT " to " INT64_FORMAT,
						ln->last_seq + 1, a->first_seq - 1));
		ln->strict_ok = false;
	}
	else if (a->first_seq <= ln->last_seq)
	{
		report(w, table, true, ln->chain_id, ln->lane, a->first_seq, -1,
			   psprintf("purge anchor (admin event " INT64_FORMAT ") overlaps positions already seen, up to " INT64_FORMAT,
						a->event_id, ln->last_seq));
		ln->strict_ok = false;
	}
	else if (!ta_hash_equal(a->before, ln->prev))
		report(w, table, true, ln->chain_id, ln->lane, a->first_seq, -1,
			   psprintf("purge anchor (admin event " INT64_FORMAT ") does not continue the lane: its link before position " INT64_FORMAT " is not the lane's",
						a->event_id, a->first_seq));

	if (ln->cp != NULL && !ln->cp->reached &&
		ln->cp->position >= a->first_seq && ln->cp->position <= a->last_seq)
	{
		ln->cp->reached = true;
		if (a->sanctioned && ln->cp->position == a->last_seq &&
			ta_hash_equal(ln->cp->hash, a->after) && w->has_taken_at &&
			a->has_purged_at && w->taken_at >= a->purged_at)
			;					/* taken after the purge: its head was the anchor */
		else if (!a->sanctioned || !contiguous)
			report(w, table, true, ln->chain_id, ln->lane, ln->cp->position, -1,
				   psprintf("rows covered by the digest are missing: positions " INT64_FORMAT " to " INT64_FORMAT " were removed without a sanctioned purge",
							a->first_seq, a->last_seq));
		else if (!ln->strict_ok || !ta_hash_equal(ln->strict, a->before) ||
				 (ln->cp->position == a->last_seq && !ta_hash_equal(ln->cp->hash, a->after)))
			report(w, table, true, ln->chain_id, ln->lane, ln->cp->position, -1,
				   "chain head mismatch: rows changed since the digest (the chain up to a purged span no longer hashes to what the digest covers)");
		else
			report(w, table, true, ln->chain_id, ln->lane, ln->cp->position, -1,
				   psprintf("removed by sanctioned purge (admin event " INT64_FORMAT "): positions " INT64_FORMAT " to " INT64_FORMAT ", which the digest covered up to position " INT64_FORMAT,
							a->event_id, a->first_seq, a->last_seq, ln->cp->position));
	}

	else if (ln->cp != NULL && !ln->cp->reached && ln->cp->position > a->last_seq &&
			 a->sanctioned && contiguous && w->has_taken_at && a->has_purged_at &&
			 a->purged_at > w->taken_at)
	{
		/*
		 * The digest covered the whole span and rows after it: the span is
		 * named as purged since the digest was taken, and the strict link
		 * must still reach the digest's head (checked there).
		 */
		report(w, table, true, ln->chain_id, ln->lane, a->first_seq, -1,
			   psprintf("removed by sanctioned purge (admin event " INT64_FORMAT "): positions " INT64_FORMAT " to " INT64_FORMAT ", which the digest covered up to position " INT64_FORMAT,
						a->event_id, a->first_seq, a->last_seq, ln->cp->position));
	}

	/* the strict link resumes from the link the purge left */
	if (!a->sanctioned || !contiguous || !ta_hash_equal(ln->strict, a->before))
		ln->strict_ok = false;
	memcpy(ln->strict, a->after, TA_HASH_LEN);
	memcpy(ln->prev, a->after, TA_HASH_LEN);
	if (a->last_seq > ln->last_seq)
		ln->last_seq = a->last_seq;
	ln->anchor = a;
}

/*
 * Anchors of lanes before (chain_id, lane) that have no row left: each such
 * lane is walked across its anchors alone.
 */
static void
anchor_only_lanes(Verification *w, const char *table, LaneCheck *ln,
				  const Anchor *anchors, int nanchors, int *next,
				  bool bounded, int64 chain_id, int32 lane)
{
	while (*next < nanchors &&
		   (!bounded || lane_cmp(anchors[*next].chain_id, anchors[*next].lane, chain_id, lane) < 0))
	{
		const Anchor *a = &anchors[*next];

		if (!ln->active || ln->chain_id != a->chain_id || ln->lane != a->lane)
		{
			finish_lane(w, table, ln);
			start_lane(w, table, ln, a->chain_id, a->lane);
		}
		cross_anchor(w, table, ln, a);
		(*next)++;
	}
}

/*
 * Time along the lane, and before a digest the row is not covered by
 * (time_order.c).  With verify(since), a row is checked when the latest
 * row before it in its lane is in scope.
 */
static void
check_time(Verification *w, const char *table, LaneCheck *ln, const TaLayout *layout,
		   Datum *values, bool *nulls, int64 seq, int64 row_id)
{
	TimestampTz at;
	char	   *problem;

	if (layout->time_column < 0 || nulls[layout->time_column])
		return;
	at = DatumGetTimestampTz(values[layout->time_column]);
	if (ln->has_time && (!w->has_since || ln->latest_time >= w->since) &&
		(problem = ta_time_order_problem(at, ln->latest_time, ln->latest_seq)) != NULL)
		report(w, table, true, ln->chain_id, ln->lane, seq, row_id, problem);
	if (w->checkpoints != NULL && w->has_taken_at &&
		(ln->cp == NULL || seq > ln->cp->position) &&
		ta_tenant_row_in_scope(w->digest_tenants, layout, values, nulls) &&
		(problem = ta_time_uncovered_problem(at, w->taken_at, ln->cp != NULL)) != NULL)
		report(w, table, true, ln->chain_id, ln->lane, seq, row_id, problem);
	if (!ln->has_time || at > ln->latest_time)
	{
		ln->has_time = true;
		ln->latest_time = at;
		ln->latest_seq = seq;
	}
}

/*
 * verify_since(): a lane the digest covers resumes just before its head
 * (the row at the digest's position must still link to the digest's hash,
 * checked by the walk as for verify_digest()), from the stored link of the
 * row two before the head, whose own content and link are not checked
 * again: the row before the head is checked as verify() checks it (its
 * content against its row hash, its link from that stored link), so that
 * an edit of it that leaves the head's link alone is found too.  Returns
 * true when the walk is to skip the row it just read.  A lane whose row two
 * before the head is gone, or where a purge reached it, the row after it
 * or the head, is walked from its start instead (verify_digest()'s checks
 * of a purged head).
 */
static bool
resume_at_head(Verification *w, const char *table, LaneCheck *ln, TaWalkScan *ws,
			   const Anchor *anchors, int nanchors, int *next_anchor,
			   int64 seq, int64 row_id, Datum link, bool link_null)
{
	int64		from = ln->cp->position - 2;

	if (from < 1)
	{
		ln->whole = true;
		return false;
	}
	for (int i = *next_anchor; i < nanchors && anchors[i].chain_id == ln->chain_id &&
		 anchors[i].lane == ln->lane; i++)
		if (anchors[i].first_seq <= from + 2 && anchors[i].last_seq >= from)
		{
			ln->whole = true;
			break;
		}
	if (ln->whole)
		return false;			/* this is the lane's first row: nothing skipped */
	if (seq < from)
	{
		ta_walk_seek(ws, ln->chain_id, ln->lane, from);
		ln->pending = true;
		return true;
	}
	ln->pending = false;
	if (seq > from || !ta_stored_hash(link, link_null, ln->prev))
	{
		/* the row two before the head is missing or has no link: the whole lane */
		ln->whole = true;
		ta_walk_seek(ws, ln->chain_id, ln->lane, PG_INT64_MIN);
		return true;
	}
	memcpy(ln->strict, ln->prev, TA_HASH_LEN);
	ln->last_seq = from;
	ln->last_row_id = row_id;
	/*
	 * The lane's purged spans before the head are behind it (each anchor was
	 * checked against its purge event by load_anchors()); one purged since
	 * the digest is named, as verify_digest() names it.
	 */
	while (*next_anchor < nanchors && anchors[*next_anchor].chain_id == ln->chain_id &&
		   anchors[*next_anchor].lane == ln->lane && anchors[*next_anchor].last_seq < from)
	{
		const Anchor *a = &anchors[(*next_anchor)++];

		if (a->sanctioned && w->has_taken_at && a->has_purged_at && a->purged_at > w->taken_at)
			report(w, table, true, ln->chain_id, ln->lane, a->first_seq, -1,
				   psprintf("removed by sanctioned purge (admin event " INT64_FORMAT "): positions " INT64_FORMAT " to " INT64_FORMAT ", which the digest covered up to position " INT64_FORMAT,
							a->event_id, a->first_seq, a->last_seq, ln->cp->position));
	}
	return true;
}

/*
 * The rows of the table in chain order, or (range) of a part of its chain
 * ids only, with the table's anchors (of those chain ids).
 */
static void
walk_rows(Verification *w, const char *table, Relation rel, Relation irel,
		  const TaLayout *layout, Snapshot snap, Anchor *anchors, int nanchors,
		  const TaChainRange *range)
{
	const int  *col = layout->column;
	TaWalkScan *ws;
	TupleTableSlot *slot;
	MemoryContext rowcxt,
				old;
	LaneCheck	ln = {0};
	int			next_anchor = 0;

	slot = table_slot_create(rel, NULL);
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "tool_audit verify row",
								   ALLOCSET_DEFAULT_SIZES);

	if (range == NULL)
		ws = ta_walk_begin(rel, irel, snap, w->incremental);
	else
		ws = ta_walk_begin_part(rel, irel, snap, w->incremental, range->nulls,
								range->lo, range->hi);
	w->ws = ws;
	w->part_lanes = false;
	w->part_tail = false;
	while (ta_walk_next(ws, slot))
	{
		Datum	   *values;
		bool	   *nulls;
		unsigned char row_hash[TA_HASH_LEN],
					stored_row[TA_HASH_LEN],
					stored_link[TA_HASH_LEN],
					link[TA_HASH_LEN];
		const ErasedRow *erased;
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
		old = MemoryContextSwitchTo(rowcxt);
		slot_getallattrs(slot);
		values = slot->tts_values;
		nulls = slot->tts_isnull;
		if (w->scope != NULL && !ta_tenant_row_in_scope(w->scope, layout, values, nulls))
			goto next;			/* another tenant's, in a tenant run */
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
		w->part_lanes = true;
		if (!ln.active || ln.chain_id != chain_id || ln.lane != lane)
		{
			/* the rest of this lane's anchors, then lanes of anchors alone */
			if (ln.active)
				anchor_only_lanes(w, table, &ln, anchors, nanchors, &next_anchor,
								  true, ln.chain_id, ln.lane + 1);
			if (ln.active && (ln.chain_id != chain_id || ln.lane != lane))
				finish_lane(w, table, &ln);
			anchor_only_lanes(w, table, &ln, anchors, nanchors, &next_anchor,
							  true, chain_id, lane);
			if (!ln.active || ln.chain_id != chain_id || ln.lane != lane)
			{
				finish_lane(w, table, &ln);
				start_lane(w, table, &ln, chain_id, lane);
			}
		}
		if (w->incremental && ln.cp != NULL && !ln.whole && ln.last_seq == 0 &&
			resume_at_head(w, table, &ln, ws, anchors, nanchors, &next_anchor, seq, row_id,
						   values[col[TA_COL_CHAIN_HASH]], nulls[col[TA_COL_CHAIN_HASH]]))
			goto next;
		/* spans purged before this row */
		while (next_anchor < nanchors &&
			   anchors[next_anchor].chain_id == chain_id && anchors[next_anchor].lane == lane &&
			   anchors[next_anchor].first_seq <= seq)
			cross_anchor(w, table, &ln, &anchors[next_anchor++]);

		if (in_scope && chain_id != ta_chain_id(layout, values, nulls))
			report(w, table, true, chain_id, lane, seq, row_id,
				   "row in the wrong chain: its chain id does not match its table and tenant");
		ta_row_hash(layout, values, nulls, row_hash);
		has_row_hash = ta_stored_hash(values[col[TA_COL_ROW_HASH]], nulls[col[TA_COL_ROW_HASH]], stored_row);
		has_link = ta_stored_hash(values[col[TA_COL_CHAIN_HASH]], nulls[col[TA_COL_CHAIN_HASH]], stored_link);
		erased = find_erased(w, table, row_id);
		row_ok = has_row_hash &&
			ta_hash_equal(row_hash, erased ? erased->hash_after : stored_row);
		/* a properly erased row links by the row hash it was written with */
		if (erased != NULL && row_ok)
			memcpy(row_hash, stored_row, TA_HASH_LEN);

		if (seq > ln.last_seq + 1)
		{
			report(w, table, true, chain_id, lane, ln.last_seq + 1, -1,
				   seq == ln.last_seq + 2 ? "row missing" :
				   psprintf("rows missing: positions " INT64_FORMAT " to " INT64_FORMAT,
							ln.last_seq + 1, seq - 1));
			ln.strict_ok = false;
		}
		else if (ln.anchor != NULL && seq >= ln.anchor->first_seq && seq <= ln.anchor->last_seq)
			report(w, table, true, chain_id, lane, seq, row_id,
				   psprintf("row inside a span purged by admin event " INT64_FORMAT " (positions " INT64_FORMAT " to " INT64_FORMAT ")",
							ln.anchor->event_id, ln.anchor->first_seq, ln.anchor->last_seq));
		else if (seq <= ln.last_seq)
			report(w, table, true, chain_id, lane, seq, row_id,
				   "row inserted: position already taken");

		ta_link_hash(chain_id, lane, seq, ln.prev, row_hash, link);
		link_ok = has_link && ta_hash_equal(link, stored_link);
		if (in_scope && erased == NULL && ta_row_has_erasure_marker(layout, values, nulls))
			report(w, table, true, chain_id, lane, seq, row_id,
				   "erasure marker on a row that no verified erasure lists: written outside erase_subject()");
		else if (in_scope && !row_ok)
			report(w, table, true, chain_id, lane, seq, row_id,
				   !has_row_hash ? "row hash missing or malformed" :
				   erased ? "row altered after its erasure: its content does not match the erasure's row_hash_after" :
				   "row altered: its content does not match its row hash");
		else if (in_scope && !link_ok && seq == ln.last_seq + 1)
			report(w, table, true, chain_id, lane, seq, row_id,
				   "chain link broken: row reordered, inserted or its link edited");
		/* after a gap the link cannot be checked: the gap was reported */

		check_time(w, table, &ln, layout, values, nulls, seq, row_id);

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
	w->part_tail = true;
	anchor_only_lanes(w, table, &ln, anchors, nanchors, &next_anchor, false, 0, 0);
	finish_lane(w, table, &ln);
	w->part_tail = false;
	ta_walk_end(ws);
	w->ws = NULL;
	ExecDropSingleTupleTableSlot(slot);
	MemoryContextDelete(rowcxt);
}

static char *serialize_walk(Verification *w, const char *table, const Anchor *anchors,
							int nanchors, Size *len);

static void
walk_table(Verification *w, const char *table)
{
	const TaLayout *layout;
	Relation	rel;
	Relation	irel;
	Snapshot	snap;
	Anchor	   *anchors;
	int			nanchors;
	int			nworkers;

	/* a verifier reports what it cannot check, as a row, and goes on */
	if (!OidIsValid(ta_schema_relid(table, true)))
	{
		report(w, table, false, 0, 0, -1, -1, "table or its chain position index is missing");
		return;
	}
	rel = ta_layout_open(table, AccessShareLock, &layout);
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
	anchors = load_anchors(w, table, &nanchors);
	nworkers = ta_verify_parallel_plan(rel);
	if (nworkers > 0)
	{
		/* in parts, by parallel workers and this process (verify_parallel.c) */
		Size		len;
		char	   *state = serialize_walk(w, table, anchors, nanchors, &len);

		ta_verify_parallel_walk(w, table, rel, irel, nworkers, state, len);
	}
	else
		walk_rows(w, table, rel, irel, layout, snap, anchors, nanchors, NULL);
	index_close(irel, AccessShareLock);
	table_close(rel, AccessShareLock);
	UnregisterSnapshot(snap);
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

/*
 * A run that found problems raises an alert of the rule (alerts.c: not on a
 * standby or in a read-only transaction), one per burst of runs.
 */
static void
raise_if_problems(Verification *w, const char *rule, const char *function)
{
	if (w->nproblems > 0)
		ta_alert_raise(rule, NULL, function,
					   psprintf("{\"function\": \"%s\", \"problems\": %d}", function, w->nproblems));
}

static void
run_walk_body(void *arg)
{
	Verification *w = arg;

	check_protections(w);
	/* the sequences count every tenant's rows: not in a tenant run */
	for (int i = 0; i < TA_NAUDIT_TABLES && w->scope == NULL; i++)
		check_id_sequence(w, ta_audit_tables[i]);
	load_erasures(w);
	/* in name order; a table the schema's version predates is not walked */
	for (int i = 0; i < TA_NAUDIT_TABLES; i++)
		if (ta_audit_table_expected(ta_audit_tables[i]))
			walk_table(w, ta_audit_tables[i]);
	report_unreached(w);
}

/* A tenant run (or a reader's) reads anchors and erasures as the owner (tenant_verify.c). */
static void
run_walk(Verification *w)
{
	if (ta_tenant_run_as_owner(w->scope))
		ta_as_extension_owner(run_walk_body, w);
	else
		run_walk_body(w);
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
	w.scope = ta_tenant_scope_checked("verify");
	if (!PG_ARGISNULL(0))
	{
		w.has_since = true;
		w.since = PG_GETARG_TIMESTAMPTZ(0);
	}
	run_walk(&w);
	raise_if_problems(&w, "audit_integrity", "verify");
	{
		Oid			type = TIMESTAMPTZOID;
		Datum		since = PG_ARGISNULL(0) ? (Datum) 0 : PG_GETARG_DATUM(0);

		ta_record_read("verify", "jsonb_build_object('since', " TA_SCHEMA ".iso8601_utc($1))", 1, &type, &since,
					   PG_ARGISNULL(0) ? "n" : " ", w.nproblems, w.nproblems > 0);
	}
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
load_checkpoints(Jsonb *d, const TaTenantScope *scope)
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
		format->val.string.len != strlen(DIGEST_FORMAT) ||
		memcmp(format->val.string.val, DIGEST_FORMAT, format->val.string.len) != 0)
		bad_digest("Its \"format\" is not \"" DIGEST_FORMAT "\".");
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
		if (table == NULL || table->type != jbvString || table->val.string.len >= NAMEDATALEN ||
			table_index(pnstrdup(table->val.string.val, table->val.string.len)) < 0)
			bad_digest("A head's \"table\" is not tool_calls, admin_events or data_changes.");
		memcpy(key.table, table->val.string.val, table->val.string.len);
		if (!ta_tenant_head_in_scope(scope, head))
			continue;			/* another tenant's head, in a tenant run */
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
 * The digest's "taken_at" (YYYY-MM-DDTHH:MM:SS.ffffffZ, as digest() writes
 * it); false if it has none in that form.
 */
static bool
digest_taken_at(Jsonb *d, TimestampTz *out)
{
	char	   *s = ta_jsonb_string(&d->root, "taken_at");
	char		iso[40];

	if (s == NULL || strlen(s) != 27 || s[10] != 'T' || s[26] != 'Z' ||
		strspn(s, "0123456789-:.TZ") != 27)
		return false;
	/* timestamptz_in reads "YYYY-MM-DD HH:MM:SS.ffffff+00" */
	snprintf(iso, sizeof(iso), "%.10s %.15s+00", s, s + 11);
	*out = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in, CStringGetDatum(iso),
												   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
	return true;
}

/*
 * A tenant's digest ("scope": "tenant", tool_audit.tenant_digest()) covers
 * the chains of the tenants its heads name and says nothing of the others:
 * the rows of other tenants are not "after" it (NULL: a full digest).
 */
static const TaTenantScope *
digest_tenant_scope(Jsonb *d)
{
	JsonbValue *scope = ta_jsonb_key(&d->root, "scope");
	JsonbValue *heads = ta_jsonb_key(&d->root, "heads");
	TaTenantScope *ts;
	int			n;

	if (scope == NULL || scope->type != jbvString ||
		scope->val.string.len != strlen("tenant") ||
		memcmp(scope->val.string.val, "tenant", scope->val.string.len) != 0)
		return NULL;
	n = JsonContainerSize(heads->val.binary.data);	/* checked by load_checkpoints */
	ts = palloc0(sizeof(TaTenantScope));
	ts->tenants = palloc(sizeof(char *) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		JsonbValue *hv = getIthJsonbValueFromContainer(heads->val.binary.data, i);
		JsonbValue *t = ta_jsonb_key(hv->val.binary.data, "tenant");

		if (t != NULL && t->type == jbvString &&
			!ta_tenant_scope_has(ts, t->val.string.val, t->val.string.len))
			ts->tenants[ts->ntenants++] = pnstrdup(t->val.string.val, t->val.string.len);
	}
	return ts;
}

/*
 * verify_digest() and verify_since(): the walk against a digest's heads, in
 * full or (incremental) from the heads on, recorded as a read of the
 * function that ran it.
 */
static Datum
check_against_digest(FunctionCallInfo fcinfo, const char *function, bool incremental)
{
	Jsonb	   *d = PG_GETARG_JSONB_P(0);
	Verification w;
	const TaTenantScope *scope = ta_tenant_scope_checked(function);
	HTAB	   *checkpoints = load_checkpoints(d, scope);
	char	   *sig_problem = ta_digest_signature_problem(d);

	start_verification(&w, fcinfo);
	w.scope = scope;
	w.checkpoints = checkpoints;
	w.incremental = incremental;
	w.has_taken_at = digest_taken_at(d, &w.taken_at);
	w.digest_tenants = digest_tenant_scope(d);
	if (sig_problem != NULL)
		report(&w, "", false, 0, 0, -1, -1, sig_problem);
	/* read once for the digest's check and the install's (check_protections()) */
	w.secstate = ta_security_state_read();
	ta_security_state_check_digest(d, w.secstate, security_problem, &w);
	run_walk(&w);
	raise_if_problems(&w, "audit_integrity", function);
	{
		Oid			type = JSONBOID;
		Datum		arg = JsonbPGetDatum(d);

		/* the digest is named by its time, not copied */
		ta_record_read(function,
					   "jsonb_build_object('digest_taken_at', $1->'taken_at')",
					   1, &type, &arg, NULL, w.nproblems, w.nproblems > 0);
	}
	return (Datum) 0;
}

/*
 * tool_audit.verify_digest(digest jsonb)
 *	RETURNS TABLE (table_name text, chain text, position bigint, row_id bigint, problem text)
 */
PG_FUNCTION_INFO_V1(verify_digest);
Datum
verify_digest(PG_FUNCTION_ARGS)
{
	return check_against_digest(fcinfo, "verify_digest", false);
}

/*
 * tool_audit.verify_since(digest jsonb)
 *	RETURNS TABLE (table_name text, chain text, position bigint, row_id bigint, problem text)
 *
 * verify_digest()'s checks of the rows after the digest's heads only
 * (verify_incremental.c): each lane the digest covers from the row before
 * its head, whose stored link with the head row's recomputed hash must give
 * the digest's hash; lanes it does not cover from their start.
 */
PG_FUNCTION_INFO_V1(verify_since);
Datum
verify_since(PG_FUNCTION_ARGS)
{
	return check_against_digest(fcinfo, "verify_since", true);
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
	for (int i = 0; i < TA_NAUDIT_TABLES; i++)
		check_id_sequence(&w, ta_audit_tables[i]);
	raise_if_problems(&w, "audit_protections", "verify_protections");
	return (Datum) 0;
}


/* ---- the state of a parallel walk (verify_parallel.c) ---- */

/*
 * What a part of the walk of one table needs of the run, flat, for the
 * parallel workers' shared memory: the scope, the digest's heads of the
 * table, the accepted erasures of its rows and its purge anchors (read and
 * checked once, by the leader: a worker reads none of them again).  The
 * workers mark in their copy the heads they reached.
 */
typedef struct WalkState
{
	char		table[NAMEDATALEN];
	bool		has_since;
	bool		has_taken_at;
	bool		incremental;
	bool		has_checkpoints;
	TimestampTz since;
	TimestampTz taken_at;
	int32		scope_n;		/* -1: every tenant */
	int32		digest_tenants_n;	/* -1: a full digest, or none */
	int32		ncheckpoints;
	int32		nerased;
	int32		nanchors;
	Size		scope_off;		/* tenants, each NUL-terminated */
	Size		digest_tenants_off;
	Size		checkpoints_off;
	Size		erased_off;
	Size		anchors_off;
} WalkState;

static Size
state_align(StringInfo buf)
{
	while ((Size) buf->len != MAXALIGN(buf->len))
		appendStringInfoChar(buf, '\0');
	return buf->len;
}

static Size
append_tenants(StringInfo buf, const TaTenantScope *scope, int32 *n)
{
	Size		off = state_align(buf);

	*n = scope == NULL ? -1 : scope->ntenants;
	for (int i = 0; scope != NULL && i < scope->ntenants; i++)
		appendBinaryStringInfo(buf, scope->tenants[i], strlen(scope->tenants[i]) + 1);
	return off;
}

static const TaTenantScope *
restore_tenants(const char *state, Size off, int32 n)
{
	TaTenantScope *scope;
	const char *p = state + off;

	if (n < 0)
		return NULL;
	scope = palloc0(sizeof(TaTenantScope));
	scope->tenants = palloc(sizeof(char *) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		scope->tenants[scope->ntenants++] = pstrdup(p);
		p += strlen(p) + 1;
	}
	return scope;
}

static char *
serialize_walk(Verification *w, const char *table, const Anchor *anchors, int nanchors, Size *len)
{
	StringInfoData buf;
	WalkState	st;
	int32		tindex = table_index(table);

	memset(&st, 0, sizeof(st));
	strlcpy(st.table, table, NAMEDATALEN);
	st.has_since = w->has_since;
	st.since = w->since;
	st.has_taken_at = w->has_taken_at;
	st.taken_at = w->taken_at;
	st.incremental = w->incremental;
	st.has_checkpoints = w->checkpoints != NULL;
	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, (char *) &st, sizeof(st));
	st.scope_off = append_tenants(&buf, w->scope, &st.scope_n);
	st.digest_tenants_off = append_tenants(&buf, w->digest_tenants, &st.digest_tenants_n);
	st.checkpoints_off = state_align(&buf);
	if (w->checkpoints != NULL)
	{
		HASH_SEQ_STATUS status;
		Checkpoint *cp;

		hash_seq_init(&status, w->checkpoints);
		while ((cp = hash_seq_search(&status)) != NULL)
			if (strcmp(cp->key.table, table) == 0)
			{
				appendBinaryStringInfo(&buf, (char *) cp, sizeof(Checkpoint));
				st.ncheckpoints++;
			}
	}
	st.erased_off = state_align(&buf);
	if (w->erased != NULL)
	{
		HASH_SEQ_STATUS status;
		ErasedRow  *row;

		hash_seq_init(&status, w->erased);
		while ((row = hash_seq_search(&status)) != NULL)
			if (row->key.table == tindex)
			{
				appendBinaryStringInfo(&buf, (char *) row, sizeof(ErasedRow));
				st.nerased++;
			}
	}
	st.anchors_off = state_align(&buf);
	if (nanchors > 0)
		appendBinaryStringInfo(&buf, (char *) anchors, sizeof(Anchor) * nanchors);
	st.nanchors = nanchors;
	memcpy(buf.data, &st, sizeof(st));
	*len = buf.len;
	return buf.data;
}

/* A run of a part of the walk, from a state serialize_walk() wrote. */
void *
ta_verify_restore(const char *state, TaProblemSink sink, void *sink_arg)
{
	const WalkState *st = (const WalkState *) state;
	Verification *w = palloc0(sizeof(Verification));
	HASHCTL		ctl;

	strlcpy(w->part_table, st->table, NAMEDATALEN);
	w->has_since = st->has_since;
	w->since = st->since;
	w->has_taken_at = st->has_taken_at;
	w->taken_at = st->taken_at;
	w->incremental = st->incremental;
	w->scope = restore_tenants(state, st->scope_off, st->scope_n);
	w->digest_tenants = restore_tenants(state, st->digest_tenants_off, st->digest_tenants_n);
	if (st->has_checkpoints)
	{
		const Checkpoint *cps = (const Checkpoint *) (state + st->checkpoints_off);

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(CheckpointKey);
		ctl.entrysize = sizeof(Checkpoint);
		ctl.hcxt = CurrentMemoryContext;
		w->checkpoints = hash_create("tool_audit digest heads", Max(st->ncheckpoints, 16), &ctl,
									 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		for (int i = 0; i < st->ncheckpoints; i++)
		{
			Checkpoint *cp = hash_search(w->checkpoints, &cps[i].key, HASH_ENTER, NULL);

			memcpy(cp, &cps[i], sizeof(Checkpoint));
			cp->reached = false;
		}
	}
	if (st->nerased > 0)
	{
		const ErasedRow *rows = (const ErasedRow *) (state + st->erased_off);

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(ErasedKey);
		ctl.entrysize = sizeof(ErasedRow);
		ctl.hcxt = CurrentMemoryContext;
		w->erased = hash_create("tool_audit erased rows", st->nerased, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		for (int i = 0; i < st->nerased; i++)
			memcpy(hash_search(w->erased, &rows[i].key, HASH_ENTER, NULL), &rows[i], sizeof(ErasedRow));
	}
	w->part_nanchors = st->nanchors;
	if (st->nanchors > 0)
	{
		w->part_anchors = palloc(sizeof(Anchor) * st->nanchors);
		memcpy(w->part_anchors, state + st->anchors_off, sizeof(Anchor) * st->nanchors);
	}
	w->sink = sink;
	w->sink_arg = sink_arg;
	return w;
}

/*
 * The part of the table's chain ids, with the anchors of its lanes; true if
 * it met a row in a lane.
 */
bool
ta_verify_walk_part(void *arg, const TaChainRange *range)
{
	Verification *w = arg;
	const TaLayout *layout;
	Relation	rel;
	Relation	irel;
	Snapshot	snap;
	int			first = 0,
				n = 0;

	if (!range->nulls && range->lo > range->hi)
		return false;			/* an empty part */
	rel = ta_layout_open(w->part_table, AccessShareLock, &layout);
	irel = index_open(ta_chain_index(layout), AccessShareLock);
	snap = RegisterSnapshot(GetActiveSnapshot());

	/* the anchors come in chain position order (load_anchors()) */
	if (!range->nulls)
	{
		while (first < w->part_nanchors && w->part_anchors[first].chain_id < range->lo)
			first++;
		while (first + n < w->part_nanchors && w->part_anchors[first + n].chain_id <= range->hi)
			n++;
	}
	walk_rows(w, w->part_table, rel, irel, layout, snap,
			  w->part_anchors == NULL ? NULL : w->part_anchors + first, n, range);
	UnregisterSnapshot(snap);
	index_close(irel, AccessShareLock);
	table_close(rel, AccessShareLock);
	return w->part_lanes;
}

/* A part's run marks in the shared state the heads it reached... */
void
ta_verify_save_reached(void *arg, char *state)
{
	Verification *w = arg;
	WalkState  *st = (WalkState *) state;
	Checkpoint *cps = (Checkpoint *) (state + st->checkpoints_off);

	for (int i = 0; w->checkpoints != NULL && i < st->ncheckpoints; i++)
	{
		Checkpoint *cp = hash_search(w->checkpoints, &cps[i].key, HASH_FIND, NULL);

		if (cp != NULL && cp->reached)
			cps[i].reached = true;
	}
}

/* ...which the leader's run takes once all parts are done (report_unreached()). */
void
ta_verify_merge_reached(void *arg, const char *state)
{
	Verification *w = arg;
	const WalkState *st = (const WalkState *) state;
	const Checkpoint *cps = (const Checkpoint *) (state + st->checkpoints_off);

	for (int i = 0; w->checkpoints != NULL && i < st->ncheckpoints; i++)
		if (cps[i].reached)
		{
			Checkpoint *cp = hash_search(w->checkpoints, &cps[i].key, HASH_FIND, NULL);

			if (cp != NULL)
				cp->reached = true;
		}
}

/* A problem a part found, as a row of the run's result, in the merged order. */
void
ta_verify_report(void *arg, const char *table, bool has_chain, int64 chain_id, int32 lane,
				 int64 position, int64 row_id, const char *problem)
{
	report((Verification *) arg, table, has_chain, chain_id, lane, position, row_id, problem);
}
