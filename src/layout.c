/*-------------------------------------------------------------------------
 *
 * layout.c
 *		The one place that knows how an audit table is laid out: where each
 *		column the C code uses is in the tuple descriptor, which columns the
 *		row hash covers (in hash order, with their type tags), the id
 *		sequence, the chain position index and the event_id index.
 *
 * A layout is worked out once per table and backend, from the open
 * relation's descriptor and the catalogs, and kept until a relcache
 * invalidation names the table, its sequence or one of those indexes (or
 * all relations): ALTER EXTENSION UPDATE adding the chain columns, REINDEX
 * CONCURRENTLY giving the chain position index a new oid, a dropped and
 * recreated extension.  The library also runs against tables of an older
 * version during an upgrade: a column or index the table does not have yet
 * is recorded as absent (-1, InvalidOid), and only a caller that needs it
 * fails (ta_column, ta_chain_index, ...), with SQLSTATE 55000 naming it.
 *
 * A caller may hold a layout while it takes locks (which can process
 * invalidations), so a replaced layout is not freed at once: it is kept
 * until the end of the transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "catalog.h"
#include "layout.h"

static const char *const column_names[TA_NCOLUMNS] = {
	[TA_COL_ID] = "id",
	[TA_COL_EVENT_ID] = "event_id",
	[TA_COL_RECORDED_AT] = "recorded_at",
	[TA_COL_OCCURRED_AT] = "occurred_at",
	[TA_COL_RECORDED_BY] = "recorded_by",
	[TA_COL_TENANT_ID] = "tenant_id",
	[TA_COL_CONVERSATION_ID] = "conversation_id",
	[TA_COL_TURN_NUMBER] = "turn_number",
	[TA_COL_USER_ID] = "user_id",
	[TA_COL_USER_ROLE] = "user_role",
	[TA_COL_MODEL] = "model",
	[TA_COL_TOOL_NAME] = "tool_name",
	[TA_COL_TOOL_CALL_ID] = "tool_call_id",
	[TA_COL_CALL_TRIGGER] = "call_trigger",
	[TA_COL_PURPOSE] = "purpose",
	[TA_COL_SUBJECT_ID] = "subject_id",
	[TA_COL_ARGUMENTS] = "arguments",
	[TA_COL_RESULT_SUMMARY] = "result_summary",
	[TA_COL_SUCCESS] = "success",
	[TA_COL_ERROR] = "error",
	[TA_COL_DURATION_MS] = "duration_ms",
	[TA_COL_CLIENT_IP] = "client_ip",
	[TA_COL_USER_AGENT] = "user_agent",
	[TA_COL_SESSION_METADATA] = "session_metadata",
	[TA_COL_EVENT_TYPE] = "event_type",
	[TA_COL_ACTOR] = "actor",
	[TA_COL_ACTOR_TYPE] = "actor_type",
	[TA_COL_PAYLOAD] = "payload",
	[TA_COL_METADATA] = "metadata",
	[TA_COL_REASON] = "reason",
	[TA_COL_TABLE_NAME] = "table_name",
	[TA_COL_OPERATION] = "operation",
	[TA_COL_ROW_KEY] = "row_key",
	[TA_COL_OLD_VALUES] = "old_values",
	[TA_COL_NEW_VALUES] = "new_values",
	[TA_COL_TXID] = "txid",
	[TA_COL_APPLICATION_NAME] = "application_name",
	[TA_COL_RETENTION_POLICY] = "retention_policy",
	[TA_COL_EXPIRES_AT] = "expires_at",
	[TA_COL_BREAK_GLASS] = "break_glass",
	[TA_COL_IMPERSONATED_BY] = "impersonated_by",
	[TA_COL_CALL_PHASE] = "call_phase",
	[TA_COL_CALL_EVENT_ID] = "call_event_id",
	[TA_COL_CALLER_TXID] = "caller_txid",
	[TA_COL_STARTED_AT] = "started_at",
	[TA_COL_ROW_HASH] = "row_hash",
	[TA_COL_CHAIN_ID] = "chain_id",
	[TA_COL_CHAIN_LANE] = "chain_lane",
	[TA_COL_CHAIN_SEQ] = "chain_seq",
	[TA_COL_CHAIN_HASH] = "chain_hash",
};

/*
 * The cache: a few entries (three tables, and room for tables of a dropped
 * extension not yet reused).  "retired" holds replaced layouts until the
 * transaction ends.
 */
typedef struct CachedLayout
{
	TaLayout   *layout;			/* NULL: free */
	bool		valid;
} CachedLayout;

static CachedLayout cache[6];
static List *retired = NIL;
static MemoryContext layout_context = NULL;
static uint64 inval_count = 0;
static uint64 generations = 0;

static void
layout_inval_callback(Datum arg, Oid relid)
{
	inval_count++;
	for (int i = 0; i < (int) lengthof(cache); i++)
	{
		TaLayout   *l = cache[i].layout;

		if (l != NULL &&
			(relid == InvalidOid || relid == l->relid || relid == l->id_sequence ||
			 relid == l->chain_index || relid == l->event_id_index))
			cache[i].valid = false;
	}
}

static void
layout_xact_callback(XactEvent event, void *arg)
{
	ListCell   *lc;

	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			foreach(lc, retired)
				pfree(lfirst(lc));
			list_free(retired);
			retired = NIL;
			break;
		default:
			break;
	}
}

void
ta_layout_init(void)
{
	CacheRegisterRelcacheCallback(layout_inval_callback, (Datum) 0);
	RegisterXactCallback(layout_xact_callback, NULL);
}

const char *
ta_column_name(TaColumn col)
{
	return column_names[col];
}

/* A column the caller needs: its index in the descriptor, from 0. */
int
ta_column(const TaLayout *layout, TaColumn col)
{
	if (layout->column[col] < 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("audit table tool_audit.%s has no column \"%s\"",
						layout->name, column_names[col]),
				 errhint("Run ALTER EXTENSION tool_audit UPDATE, or reinstall the extension.")));
	return layout->column[col];
}

static Oid
required(const TaLayout *layout, Oid relid, const char *suffix)
{
	if (!OidIsValid(relid))
		ta_missing_relation(psprintf("%s%s", layout->name, suffix));
	return relid;
}

Oid
ta_id_sequence(const TaLayout *layout)
{
	return required(layout, layout->id_sequence, "_id_seq");
}

/* The unique index on (chain_id, chain_lane, chain_seq). */
Oid
ta_chain_index(const TaLayout *layout)
{
	return required(layout, layout->chain_index, "_chain_position");
}

Oid
ta_event_id_index(const TaLayout *layout)
{
	return required(layout, layout->event_id_index, "_event_id_key");
}

/* The type tag of section 2 of the spec; '?' for a type it does not cover. */
static char
type_tag(Oid typid)
{
	typid = getBaseType(typid);
	switch (typid)
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
			return 'i';
		case FLOAT8OID:
			return 'f';
		case BOOLOID:
			return 'b';
		case TEXTOID:
		case VARCHAROID:
			return 's';
		case UUIDOID:
			return 'u';
		case TIMESTAMPTZOID:
			return 't';
		case INETOID:
			return 'n';
		case JSONBOID:
			return 'j';
	}
	return type_is_enum(typid) ? 'e' : '?';
}

static int
hashed_cmp(const void *a, const void *b)
{
	/* names are ASCII: strcmp is the bytewise order of the spec */
	return strcmp(((const TaHashedColumn *) a)->name, ((const TaHashedColumn *) b)->name);
}

static int
column_by_name(const char *name)
{
	for (int c = 0; c < TA_NCOLUMNS; c++)
		if (strcmp(name, column_names[c]) == 0)
			return c;
	return -1;
}

static Oid
sibling(Relation rel, const char *suffix)
{
	return get_relname_relid(psprintf("%s%s", RelationGetRelationName(rel), suffix),
							 RelationGetNamespace(rel));
}

static TaLayout *
build_layout(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	TaLayout   *l;

	if (layout_context == NULL)
		layout_context = AllocSetContextCreate(CacheMemoryContext, "tool_audit layouts",
											   ALLOCSET_SMALL_SIZES);
	l = MemoryContextAllocZero(layout_context,
							   offsetof(TaLayout, hashed) + sizeof(TaHashedColumn) * desc->natts);
	l->relid = RelationGetRelid(rel);
	l->generation = ++generations;
	strlcpy(l->name, RelationGetRelationName(rel), NAMEDATALEN);
	l->namelen = strlen(l->name);
	l->natts = desc->natts;
	l->in_schema = RelationGetNamespace(rel) == ta_schema_oid(true);
	for (int c = 0; c < TA_NCOLUMNS; c++)
		l->column[c] = -1;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		int			c;
		TaHashedColumn *h;

		if (att->attisdropped)
			continue;
		c = column_by_name(NameStr(att->attname));
		if (c >= 0)
			l->column[c] = i;
		if (c >= TA_FIRST_CHAIN_COLUMN)
			continue;
		h = &l->hashed[l->nhashed++];
		h->index = i;
		strlcpy(h->name, NameStr(att->attname), NAMEDATALEN);
		h->namelen = strlen(h->name);
		h->typid = att->atttypid;
		h->tag = type_tag(att->atttypid);
		h->typlen = att->attlen;
	}
	qsort(l->hashed, l->nhashed, sizeof(TaHashedColumn), hashed_cmp);
	l->unencodable = -1;
	for (int h = 0; h < l->nhashed && l->unencodable < 0; h++)
		if (l->hashed[h].tag == '?')
			l->unencodable = h;
	/* what verify(since) compares: each table's own time of recording */
	l->time_column = strcmp(l->name, "admin_events") == 0 ?
		l->column[TA_COL_OCCURRED_AT] : l->column[TA_COL_RECORDED_AT];
	l->chained = true;
	for (int c = TA_FIRST_CHAIN_COLUMN; c < TA_NCOLUMNS; c++)
		l->chained = l->chained && l->column[c] >= 0;
	l->id_sequence = sibling(rel, "_id_seq");
	l->chain_index = sibling(rel, "_chain_position");
	l->event_id_index = sibling(rel, "_event_id_key");
	l->call_event_index = sibling(rel, "_call_event_id");
	l->tool_call_index = sibling(rel, "_tool_call_id");
	/* plain indexes: another may be made under their names (catalog.c) */
	if (!ta_index_on_column(l->call_event_index, RelationGetRelid(rel), "call_event_id"))
		l->call_event_index = InvalidOid;
	if (!ta_index_on_column(l->tool_call_index, RelationGetRelid(rel), "tool_call_id"))
		l->tool_call_index = InvalidOid;
	return l;
}

/* The layout of an open audit table. */
const TaLayout *
ta_layout_of(Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	CachedLayout *slot = NULL;
	uint64		count;
	TaLayout   *l;

	for (int i = 0; i < (int) lengthof(cache); i++)
	{
		if (cache[i].layout != NULL && cache[i].layout->relid == relid)
		{
			/*
			 * Callers size their value arrays by layout->natts and deform with
			 * the relation's descriptor: never hand out a layout of another
			 * shape, whatever an invalidation may have missed.
			 */
			if (cache[i].valid && cache[i].layout->natts == RelationGetDescr(rel)->natts)
				return cache[i].layout;
			slot = &cache[i];
		}
	}
	for (int i = 0; i < (int) lengthof(cache) && slot == NULL; i++)
		if (cache[i].layout == NULL || !cache[i].valid)
			slot = &cache[i];
	if (slot == NULL)
		slot = &cache[0];

	count = inval_count;
	l = build_layout(rel);
	if (slot->layout != NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(layout_context);

		retired = lappend(retired, slot->layout);
		MemoryContextSwitchTo(old);
	}
	slot->layout = l;
	/* an invalidation that came while building may have outdated it */
	slot->valid = (count == inval_count);
	return l;
}

/*
 * Open an audit table of the extension's schema by name, and its layout.
 * The relation is found from the cached layout when there is one, so that a
 * call does not look the name up each time.
 */
Relation
ta_layout_open(const char *table, LOCKMODE lockmode, const TaLayout **layout)
{
	Oid			relid = InvalidOid;
	Relation	rel;

	for (int i = 0; i < (int) lengthof(cache) && !OidIsValid(relid); i++)
		if (cache[i].valid && cache[i].layout->in_schema &&
			strcmp(cache[i].layout->name, table) == 0)
			relid = cache[i].layout->relid;
	if (!OidIsValid(relid))
		relid = ta_schema_relid(table, false);
	rel = table_open(relid, lockmode);
	*layout = ta_layout_of(rel);
	return rel;
}
