/*-------------------------------------------------------------------------
 *
 * alerts.c
 *		Alert rules matched against each new audit row in its insert
 *		trigger, and alerts raised through tool_audit.raise_alert().
 *
 * The enabled rules are kept in a per-backend copy of
 * tool_audit.alert_rules (ta_cache_get(), catalog.c: read as the table's
 * owner, dropped on a relcache invalidation of the table, which its
 * statement trigger rules_changed() sends, so every backend sees a committed
 * change at its next insert).  A row is compared with each rule of its
 * table in C: its tenant, its event type or tool name against the rule's
 * names and patterns, its success and break_glass columns.  A row matching
 * no rule costs that loop and nothing more.
 *
 * Rate rules are decided with an index probe of bounded cost rather than
 * counters: a counter table would be an UPDATE (a new row version, WAL, a
 * row lock other writers wait on) for every row a rule covers, where a
 * probe reads at most `threshold` index entries of one key:
 *	- same_subject: tool_calls_user_subject (user_id, subject_id,
 *	  recorded_at), at most threshold - 1 entries;
 *	- tool_failures: tool_calls_tool_failures (tool_name, recorded_at)
 *	  WHERE NOT success, at most threshold entries, and only for a failure;
 *	- distinct_subjects: only for a row whose user and subject have no row
 *	  in the window yet (one entry of the first index), then the user's
 *	  rows of the window in tool_calls_user, at most TA_DISTINCT_SCAN_CAP
 *	  of them;
 *	- business_hours: no probe, the row's time in the rule's time zone.
 * An index is used only while it is what the probe needs (a plain index may
 * be dropped and another made under its name): else the reports' index on
 * the rule's first column, else the table read whole ("the rate rules'
 * probes" below): slower, never a wrong count.
 * The probes see committed rows and the transaction's own (SnapshotSelf):
 * another transaction's uncommitted rows, which may yet roll back, do not
 * count.  The row being inserted is not in the table yet: it counts as one.
 *
 * A rule that fires calls tool_audit.raise_alert() through SPI as the
 * tables' owner, in the row's transaction: the alert rolls back with it.
 * Only firing rows pay for SPI and PL/pgSQL.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "commands/async.h"
#include "catalog/pg_am.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/pg_list.h"
#include "optimizer/optimizer.h"
#include "pgtime.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgroids.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "alerts.h"
#include "catalog.h"
#include "retention.h"

#define TA_DISTINCT_SCAN_CAP 5000

typedef enum RuleKind
{
	RK_EVENT_TYPE,
	RK_TOOL_NAME,
	RK_FAILURE,
	RK_BREAK_GLASS,
	RK_SAME_SUBJECT,
	RK_TOOL_FAILURES,
	RK_DISTINCT_SUBJECTS,
	RK_BUSINESS_HOURS
} RuleKind;

static const char *const kind_names[] = {
	"event_type", "tool_name", "failure", "break_glass", "same_subject",
	"tool_failures", "distinct_subjects", "business_hours"
};

typedef struct Pattern
{
	const char *text;
	int			len;
	bool		glob;			/* has a '*' */
} Pattern;

typedef struct Rule
{
	const char *name;
	RuleKind	kind;
	int			npatterns;		/* 0: any name */
	Pattern    *patterns;
	const char *tenant;			/* NULL: any tenant */
	int			tenantlen;
	int32		threshold;
	int32		window_seconds;
	pg_tz	   *tz;				/* business_hours */
	int			days;			/* bit d: ISO weekday d (1 Monday) */
	int			start_min;
	int			end_min;
} Rule;

typedef struct Rules
{
	Oid			owner;
	int			nrules;
	Rule	   *rules;
	bool		tool_calls;		/* any rule on tool_calls */
	bool		admin_events;
} Rules;

static TaCache alert_cache = {.tables = {"alert_rules"}};

/* ta_cache_get()'s fill: the enabled rules that rows can fire */
static void *
fill_rules(MemoryContext cxt, Oid owner)
{
	Rules	   *rs = MemoryContextAllocZero(cxt, sizeof(Rules));
	MemoryContext spicxt;

	ta_spi_exec_as_owner(owner,
						 "SELECT rule_name, kind, matches, tenant_id, coalesce(threshold, 1),"
						 "       window_seconds, coalesce(params->>'time_zone', 'UTC'),"
						 "       (SELECT coalesce(sum(1 << d::int), 0)::int FROM jsonb_array_elements_text("
						 "            CASE WHEN jsonb_typeof(params->'days') = 'array' THEN params->'days'"
						 "                 ELSE '[1,2,3,4,5]' END) d WHERE d ~ '^[1-7]$'),"
						 /* set_alert_rule() checked them; a hand-made value must not break inserts */
						 "       CASE WHEN params->>'start' ~ '^[0-9]{1,2}:[0-9]{2}$'"
						 "            THEN split_part(params->>'start', ':', 1)::int * 60"
						 "                 + split_part(params->>'start', ':', 2)::int ELSE 0 END,"
						 "       CASE WHEN params->>'end' ~ '^[0-9]{1,2}:[0-9]{2}$'"
						 "            THEN split_part(params->>'end', ':', 1)::int * 60"
						 "                 + split_part(params->>'end', ':', 2)::int ELSE 1440 END"
						 "  FROM tool_audit.alert_rules"
						 " WHERE enabled AND kind <> 'check'"
						 " ORDER BY rule_name COLLATE \"C\"",
						 0, NULL, NULL, NULL, true);
	spicxt = MemoryContextSwitchTo(cxt);
	rs->owner = owner;
	rs->rules = palloc0(sizeof(Rule) * (SPI_processed + 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Rule	   *r = &rs->rules[rs->nrules];
		bool		isnull;
		char	   *kind;
		int			len;
		int			k;
		Datum	   *elems;
		bool	   *elem_nulls;
		int			nelems;
		Datum		d;

		r->name = ta_cache_text(SPI_getbinval(tup, desc, 1, &isnull), &len);
		kind = ta_cache_text(SPI_getbinval(tup, desc, 2, &isnull), &len);
		for (k = 0; k < (int) lengthof(kind_names); k++)
			if (strcmp(kind, kind_names[k]) == 0)
				break;
		if (k == (int) lengthof(kind_names))
			continue;			/* a kind this library does not know */
		r->kind = (RuleKind) k;
		deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(tup, desc, 3, &isnull)),
						  TEXTOID, -1, false, TYPALIGN_INT, &elems, &elem_nulls, &nelems);
		r->patterns = palloc0(sizeof(Pattern) * (nelems + 1));
		for (int j = 0; j < nelems; j++)
		{
			Pattern    *p;

			if (elem_nulls[j])
				continue;
			p = &r->patterns[r->npatterns++];
			p->text = ta_cache_text(elems[j], &p->len);
			p->glob = memchr(p->text, '*', p->len) != NULL;
		}
		d = SPI_getbinval(tup, desc, 4, &isnull);
		if (!isnull)
			r->tenant = ta_cache_text(d, &r->tenantlen);
		r->threshold = DatumGetInt32(SPI_getbinval(tup, desc, 5, &isnull));
		r->window_seconds = DatumGetInt32(SPI_getbinval(tup, desc, 6, &isnull));
		if (r->kind == RK_BUSINESS_HOURS)
		{
			char	   *tzname = TextDatumGetCString(SPI_getbinval(tup, desc, 7, &isnull));

			r->tz = pg_tzset(tzname);	/* cached for the backend's life */
			r->days = DatumGetInt32(SPI_getbinval(tup, desc, 8, &isnull));
			r->start_min = DatumGetInt32(SPI_getbinval(tup, desc, 9, &isnull));
			r->end_min = DatumGetInt32(SPI_getbinval(tup, desc, 10, &isnull));
			if (r->tz == NULL)
				continue;
		}
		if (r->kind == RK_EVENT_TYPE)
			rs->admin_events = true;
		else
			rs->tool_calls = true;
		rs->nrules++;
	}
	MemoryContextSwitchTo(spicxt);
	return rs;
}

/* The rules, or NULL before the extension has them (a library newer than its SQL). */
static const Rules *
get_rules(void)
{
	/* a valid copy needs no look-up; else the table may not exist (yet) */
	if (!(alert_cache.valid && alert_cache.data != NULL) &&
		!OidIsValid(ta_schema_relid("alert_rules", true)))
		return NULL;
	return ta_cache_get(&alert_cache, fill_rules);
}

/* ---- a row's values ---- */

typedef struct Text
{
	const char *s;				/* NULL: SQL NULL */
	int			len;
} Text;

static Text
text_value(const TaLayout *layout, Datum *values, bool *nulls, TaColumn col)
{
	Text		t = {NULL, 0};
	int			i = ta_column(layout, col);

	if (i >= 0 && !nulls[i])
	{
		text	   *v = DatumGetTextPP(values[i]);

		t.s = VARDATA_ANY(v);
		t.len = VARSIZE_ANY_EXHDR(v);
	}
	return t;
}

static bool
tenant_matches(const Rule *r, Text tenant)
{
	if (r->tenant == NULL)
		return true;
	return tenant.s != NULL && tenant.len == r->tenantlen &&
		memcmp(tenant.s, r->tenant, tenant.len) == 0;
}

/* Does the name match one of the rule's names or patterns (none: any)? */
static bool
name_matches(const Rule *r, Text name)
{
	if (r->npatterns == 0)
		return true;
	if (name.s == NULL)
		return false;
	for (int i = 0; i < r->npatterns; i++)
	{
		const Pattern *p = &r->patterns[i];

		if (p->glob ? ta_glob_match(p->text, p->len, name.s, name.len)
			: (p->len == name.len && memcmp(p->text, name.s, name.len) == 0))
			return true;
	}
	return false;
}

static char *
cstr(Text t)
{
	return t.s == NULL ? NULL : pnstrdup(t.s, t.len);
}

/* A burst key of two values: a JSON array, unambiguous whatever they hold. */
static char *
pair_key(Text a, Text b)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	escape_json(&buf, cstr(a));
	appendStringInfoChar(&buf, ',');
	escape_json(&buf, cstr(b));
	appendStringInfoChar(&buf, ']');
	return buf.data;
}

/* ---- raising ---- */

/*
 * tool_audit.raise_alert(rule, tenant, key, tool_call_id, admin_event_id,
 * detail, at) as the owner of the rules, in the caller's transaction.
 */
static void
call_raise(Oid owner, const char *rule, const char *tenant, const char *key,
		   int64 tool_call_id, int64 admin_event_id, const char *detail_json,
		   bool has_at, TimestampTz at)
{
	Oid			types[7] = {TEXTOID, TEXTOID, TEXTOID, INT8OID, INT8OID, JSONBOID, TIMESTAMPTZOID};
	Datum		values[7];
	char		nulls[8] = "       ";

	values[0] = CStringGetTextDatum(rule);
	values[1] = tenant ? CStringGetTextDatum(tenant) : (Datum) 0;
	nulls[1] = tenant ? ' ' : 'n';
	values[2] = CStringGetTextDatum(key ? key : "");
	values[3] = Int64GetDatum(tool_call_id);
	nulls[3] = tool_call_id > 0 ? ' ' : 'n';
	values[4] = Int64GetDatum(admin_event_id);
	nulls[4] = admin_event_id > 0 ? ' ' : 'n';
	values[5] = DirectFunctionCall1(jsonb_in, CStringGetDatum(detail_json ? detail_json : "{}"));
	values[6] = TimestampTzGetDatum(at);
	nulls[6] = has_at ? ' ' : 'n';

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ta_spi_exec_as_owner(owner,
						 "SELECT tool_audit.raise_alert($1, $2, $3, $4, $5, $6, $7)",
						 7, types, values, nulls, false);
	SPI_finish();
}

static void
fire(const Rules *rs, const Rule *r, Text tenant, const char *key, int64 tool_call_id,
	 int64 admin_event_id, const char *detail_json, TimestampTz at)
{
	call_raise(rs->owner, r->name, cstr(tenant), key, tool_call_id, admin_event_id,
			   detail_json, true, at);
}

typedef struct RaiseArgs
{
	Oid			relid;			/* the alerts table, whose owner raises */
	const char *rule;
	const char *tenant;
	const char *burst_key;
	const char *detail_json;
} RaiseArgs;

static void
raise_now(void *arg)
{
	RaiseArgs  *a = (RaiseArgs *) arg;

	call_raise(ta_relation_owner(a->relid), a->rule, a->tenant, a->burst_key, 0, 0, a->detail_json, false, 0);
}

void
ta_alert_raise(const char *rule, const char *tenant, const char *burst_key,
			   const char *detail_json)
{
	Oid			relid;
	RaiseArgs	a = {.rule = rule, .tenant = tenant, .burst_key = burst_key,
					 .detail_json = detail_json};
	ErrorData  *edata;

	if (RecoveryInProgress() || XactReadOnly || !IsTransactionState())
		return;
	relid = ta_schema_relid("alerts", true);
	if (!OidIsValid(relid))
		return;

	/*
	 * In a subtransaction: a check that found a problem reports it whatever
	 * happens to the alert (raise_alert() dropped by a superuser, say); a
	 * failure to raise is a warning.
	 */
	a.relid = relid;
	edata = ta_try_in_subtransaction(raise_now, &a);
	if (edata != NULL)
	{
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("tool_audit could not raise an alert of rule %s: %s", rule, edata->message)));
		FreeErrorData(edata);
	}
}

/* ---- notifications, sent at commit ---- */

/*
 * NOTIFY tool_audit_alerts for each alert raised or grown, queued here and
 * sent just before the commit (XACT_EVENT_PRE_COMMIT comes before
 * PostgreSQL's own PreCommit_Notify()), rather than by pg_notify() in the
 * transaction: PostgreSQL refuses to PREPARE a transaction that has
 * notified, and an alert must not stop a two-phase commit.  A prepared
 * transaction's alerts are not notified (a forwarder's polling finds them);
 * those of a rolled-back subtransaction are dropped with it.
 */
typedef struct PendingNotify
{
	SubTransactionId subid;
	char	   *payload;
} PendingNotify;

static List *pending_notifies = NIL;	/* in TopTransactionContext */
static bool notify_callbacks = false;

static void
notify_xact_callback(XactEvent event, void *arg)
{
	ListCell   *lc;

	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			foreach(lc, pending_notifies)
				Async_Notify("tool_audit_alerts", ((PendingNotify *) lfirst(lc))->payload);
			pending_notifies = NIL;
			break;
		case XACT_EVENT_PRE_PREPARE:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			pending_notifies = NIL;
			break;
		default:
			break;
	}
}

static void
notify_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	ListCell   *lc;

	if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		foreach(lc, pending_notifies)
		{
			PendingNotify *n = lfirst(lc);

			if (n->subid == mySubid)
				n->subid = parentSubid;
		}
	}
	else if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		foreach(lc, pending_notifies)
		{
			PendingNotify *n = lfirst(lc);

			if (n->subid == mySubid)
				pending_notifies = foreach_delete_current(pending_notifies, lc);
		}
	}
}

/*
 * tool_audit.notify_alert(payload text) RETURNS void: queues the
 * notification of an alert for the commit (raise_alert() calls it).
 */
PG_FUNCTION_INFO_V1(notify_alert);
Datum
notify_alert(PG_FUNCTION_ARGS)
{
	MemoryContext old;
	PendingNotify *n;

	if (PG_ARGISNULL(0))
		PG_RETURN_VOID();
	if (!notify_callbacks)
	{
		RegisterXactCallback(notify_xact_callback, NULL);
		RegisterSubXactCallback(notify_subxact_callback, NULL);
		notify_callbacks = true;
	}
	old = MemoryContextSwitchTo(TopTransactionContext);
	n = palloc(sizeof(PendingNotify));
	n->subid = GetCurrentSubTransactionId();
	n->payload = text_to_cstring(PG_GETARG_TEXT_PP(0));
	pending_notifies = lappend(pending_notifies, n);
	MemoryContextSwitchTo(old);
	PG_RETURN_VOID();
}

/* ---- the rate rules' probes ---- */

/*
 * The indexes a probe may read.  They are plain indexes, looked up by name:
 * the DDL guard lets the extension's owner drop any of them and make another
 * plain index under the name (on other columns, of another access method,
 * without the WHERE clause).  One is used only while it is a valid B-tree of
 * tool_calls whose first key columns are the ones below, with their types'
 * default operator classes and the columns' collations, and whose predicate
 * (if any) every row the probe looks for satisfies; rows it returns are
 * checked against the probe in the table anyway (a failure, say, through an
 * index that has successes too).  When a rule's own index is not usable,
 * the reports' index on the first of its columns is (tool_calls_user,
 * tool_calls_tool: more entries read, the same count); when neither is, the
 * table is read whole.  Slower, never a wrong count.  Checked once per
 * layout of tool_calls (a dropped or created index is a relcache
 * invalidation of the table: the layout is built again).
 */
typedef enum ProbeIndexId
{
	PI_USER_SUBJECT,
	PI_USER,
	PI_TOOL_FAILURES,
	PI_TOOL,
	PI_COUNT
} ProbeIndexId;

typedef struct ProbeIndexDef
{
	const char *name;
	int			nequal;			/* leading key columns: values compared */
	TaColumn	equal[2];		/* ... then recorded_at */
	bool		failures;		/* probes through it look for failures */
} ProbeIndexDef;

static const ProbeIndexDef probe_defs[PI_COUNT] = {
	[PI_USER_SUBJECT] = {"tool_calls_user_subject", 2, {TA_COL_USER_ID, TA_COL_SUBJECT_ID}, false},
	[PI_USER] = {"tool_calls_user", 1, {TA_COL_USER_ID}, false},
	[PI_TOOL_FAILURES] = {"tool_calls_tool_failures", 1, {TA_COL_TOOL_NAME}, true},
	[PI_TOOL] = {"tool_calls_tool", 1, {TA_COL_TOOL_NAME}, true},
};

static Oid	probe_oids[PI_COUNT];
static uint64 probe_generation = 0; /* of the layout they were checked for */

static Var *
column_var(Relation heap, int i)
{
	Form_pg_attribute att = TupleDescAttr(RelationGetDescr(heap), i);

	return makeVar(1, i + 1, att->atttypid, att->atttypmod, att->attcollation, 0);
}

/*
 * What every row a probe through the index looks for satisfies: its user
 * and subject (PI_USER's probes skip rows without one), or its tool, are
 * not null; a failure's success is false.
 */
static List *
probe_conditions(Relation heap, const TaLayout *layout, const ProbeIndexDef *d)
{
	List	   *conds = NIL;
	TaColumn	notnull[2] = {TA_COL_USER_ID, TA_COL_SUBJECT_ID};
	int			nnotnull = 2;

	if (d->failures)
	{
		notnull[0] = TA_COL_TOOL_NAME;
		nnotnull = 1;
		conds = lappend(conds, makeBoolExpr(NOT_EXPR,
											list_make1(column_var(heap, layout->column[TA_COL_SUCCESS])),
											-1));
	}
	for (int i = 0; i < nnotnull; i++)
	{
		NullTest   *nt = makeNode(NullTest);

		nt->arg = (Expr *) column_var(heap, layout->column[notnull[i]]);
		nt->nulltesttype = IS_NOT_NULL;
		nt->argisrow = false;
		nt->location = -1;
		conds = lappend(conds, nt);
	}
	return conds;
}

/* The index, if a probe can use it (above); else InvalidOid. */
static Oid
check_probe_index(Relation heap, const TaLayout *layout, const ProbeIndexDef *d)
{
	Oid			oid = get_relname_relid(d->name, RelationGetNamespace(heap));
	TupleDesc	desc = RelationGetDescr(heap);
	HeapTuple	tup;
	Form_pg_index idx;
	bool		ok;
	bool		isnull;

	if (!OidIsValid(oid))
		return InvalidOid;
	for (int k = 0; k < d->nequal; k++)
		if (layout->column[d->equal[k]] < 0)
			return InvalidOid;
	if (layout->column[TA_COL_RECORDED_AT] < 0 || layout->column[TA_COL_SUCCESS] < 0)
		return InvalidOid;
	/* a valid B-tree of tool_calls on the first column (catalog.c), then the rest */
	if (!ta_index_on_column(oid, RelationGetRelid(heap), ta_column_name(d->equal[0])))
		return InvalidOid;
	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(oid));
	if (!HeapTupleIsValid(tup))
		return InvalidOid;
	idx = (Form_pg_index) GETSTRUCT(tup);
	ok = idx->indnkeyatts > d->nequal;
	if (ok)
	{
		oidvector  *classes = (oidvector *) DatumGetPointer(SysCacheGetAttr(INDEXRELID, tup,
																			 Anum_pg_index_indclass, &isnull));
		oidvector  *collations = (oidvector *) DatumGetPointer(SysCacheGetAttr(INDEXRELID, tup,
																				Anum_pg_index_indcollation, &isnull));

		for (int k = 0; ok && k <= d->nequal; k++)
		{
			int			i = layout->column[k < d->nequal ? d->equal[k] : TA_COL_RECORDED_AT];
			Form_pg_attribute att = TupleDescAttr(desc, i);

			ok = idx->indkey.values[k] == i + 1 &&
				classes->values[k] == GetDefaultOpClass(att->atttypid, BTREE_AM_OID) &&
				collations->values[k] == att->attcollation;
		}
	}
	if (ok && !heap_attisnull(tup, Anum_pg_index_indpred, NULL))
	{
		Datum		pred = SysCacheGetAttr(INDEXRELID, tup, Anum_pg_index_indpred, &isnull);

		ok = predicate_implied_by(make_ands_implicit((Expr *) stringToNode(TextDatumGetCString(pred))),
								  probe_conditions(heap, layout, d), false);
	}
	ReleaseSysCache(tup);
	return ok ? oid : InvalidOid;
}

static Oid
probe_index(Relation heap, const TaLayout *layout, ProbeIndexId id)
{
	if (probe_generation != layout->generation)
	{
		for (int i = 0; i < PI_COUNT; i++)
			probe_oids[i] = check_probe_index(heap, layout, &probe_defs[i]);
		probe_generation = layout->generation;
	}
	return probe_oids[id];
}

/*
 * A probe: the rows of tool_calls with these values in these columns (text,
 * not null), recorded at or after `since`, and for failures with success
 * false; committed or this transaction's (SnapshotSelf).
 */
typedef struct Probe
{
	int			nequal;
	TaColumn	equal_col[2];
	Text		equal[2];
	bool		failures;
	TimestampTz since;
	ProbeIndexId indexes[2];	/* to use, the first usable one */
	int			nindexes;
} Probe;

typedef struct ProbeScan
{
	const Probe *p;
	const TaLayout *layout;
	Relation	irel;			/* NULL: the table read whole */
	IndexScanDesc iscan;
	TableScanDesc hscan;
	ScanDirection dir;
	TupleTableSlot *slot;
} ProbeScan;

static void
text_key(ScanKey key, Relation irel, AttrNumber att, Text v)
{
	ScanKeyEntryInitialize(key, 0, att, BTEqualStrategyNumber, InvalidOid,
						   irel->rd_indcollation[att - 1], F_TEXTEQ,
						   PointerGetDatum(cstring_to_text_with_len(v.s, v.len)));
}

static void
probe_begin(ProbeScan *s, Relation heap, const TaLayout *layout, const Probe *p,
			ScanDirection dir)
{
	Oid			indexoid = InvalidOid;
	int			nequal = 0;

	s->p = p;
	s->layout = layout;
	s->dir = dir;
	s->irel = NULL;
	s->iscan = NULL;
	s->hscan = NULL;
	s->slot = table_slot_create(heap, NULL);
	for (int i = 0; i < p->nindexes && !OidIsValid(indexoid); i++)
	{
		indexoid = probe_index(heap, layout, p->indexes[i]);
		nequal = probe_defs[p->indexes[i]].nequal;
	}
	if (OidIsValid(indexoid))
	{
		ScanKeyData keys[3];

		s->irel = index_open(indexoid, AccessShareLock);
		for (int k = 0; k < nequal; k++)
			text_key(&keys[k], s->irel, k + 1, p->equal[k]);
		ScanKeyInit(&keys[nequal], nequal + 1, BTGreaterEqualStrategyNumber, F_TIMESTAMPTZ_GE,
					TimestampTzGetDatum(p->since));
		s->iscan = ta_index_scan(heap, s->irel, SnapshotSelf, keys, nequal + 1);
	}
	else
		s->hscan = table_beginscan(heap, SnapshotSelf, 0, NULL);
}

/* Does the row in the slot satisfy the probe? */
static bool
probe_matches(ProbeScan *s)
{
	const Probe *p = s->p;
	bool		isnull;
	Datum		d;

	for (int k = 0; k < p->nequal; k++)
	{
		text	   *t;

		d = slot_getattr(s->slot, s->layout->column[p->equal_col[k]] + 1, &isnull);
		if (isnull)
			return false;
		t = DatumGetTextPP(d);
		if ((int) VARSIZE_ANY_EXHDR(t) != p->equal[k].len ||
			memcmp(VARDATA_ANY(t), p->equal[k].s, p->equal[k].len) != 0)
			return false;
	}
	d = slot_getattr(s->slot, s->layout->column[TA_COL_RECORDED_AT] + 1, &isnull);
	if (isnull || DatumGetTimestampTz(d) < p->since)
		return false;
	if (p->failures)
	{
		d = slot_getattr(s->slot, s->layout->column[TA_COL_SUCCESS] + 1, &isnull);
		if (isnull || DatumGetBool(d))
			return false;
	}
	return true;
}

/* The next row of the probe, in s->slot; false at the end. */
static bool
probe_next(ProbeScan *s)
{
	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (s->iscan != NULL ? !index_getnext_slot(s->iscan, s->dir, s->slot)
			: !table_scan_getnextslot(s->hscan, ForwardScanDirection, s->slot))
			return false;
		if (probe_matches(s))
			return true;
	}
}

static void
probe_end(ProbeScan *s)
{
	if (s->iscan != NULL)
		index_endscan(s->iscan);
	if (s->hscan != NULL)
		table_endscan(s->hscan);
	if (s->irel != NULL)
		index_close(s->irel, AccessShareLock);
	ExecDropSingleTupleTableSlot(s->slot);
}

/* How many rows of the probe, counting to `limit` at most. */
static int64
count_recent(Relation heap, const TaLayout *layout, const Probe *p, int64 limit)
{
	ProbeScan	s;
	int64		n = 0;

	if (limit <= 0)
		return 0;
	probe_begin(&s, heap, layout, p, ForwardScanDirection);
	while (n < limit && probe_next(&s))
		n++;
	probe_end(&s);
	return n;
}

/* A user's rows about a subject (same_subject, distinct_subjects). */
static Probe
user_subject_probe(Text user, Text subject, TimestampTz since)
{
	Probe		p = {.nequal = 2, .equal_col = {TA_COL_USER_ID, TA_COL_SUBJECT_ID},
		.equal = {user, subject}, .since = since,
	.indexes = {PI_USER_SUBJECT, PI_USER}, .nindexes = 2};

	return p;
}

/* A tool's failures (tool_failures). */
static Probe
tool_failures_probe(Text tool, TimestampTz since)
{
	Probe		p = {.nequal = 1, .equal_col = {TA_COL_TOOL_NAME}, .equal = {tool},
		.failures = true, .since = since,
	.indexes = {PI_TOOL_FAILURES, PI_TOOL}, .nindexes = 2};

	return p;
}

/*
 * The distinct subjects of a user's rows since the time, other than
 * `subject`, counted to `limit` at most, over TA_DISTINCT_SCAN_CAP rows at
 * most (the user's most recent first, when read through the index).
 */
static int
distinct_recent(Relation heap, const TaLayout *layout, Text user, Text subject,
				TimestampTz since, int limit)
{
	Probe		p = {.nequal = 1, .equal_col = {TA_COL_USER_ID}, .equal = {user},
		.since = since, .indexes = {PI_USER}, .nindexes = 1};
	int			subject_att = ta_column(layout, TA_COL_SUBJECT_ID) + 1;
	ProbeScan	s;
	text	  **seen;
	int			nseen = 0;
	int			nrows = 0;

	if (limit <= 0)
		return 0;
	limit = Min(limit, TA_DISTINCT_SCAN_CAP);
	seen = palloc(sizeof(text *) * limit);
	probe_begin(&s, heap, layout, &p, BackwardScanDirection);
	while (nseen < limit && nrows++ < TA_DISTINCT_SCAN_CAP && probe_next(&s))
	{
		bool		isnull;
		Datum		d = slot_getattr(s.slot, subject_att, &isnull);
		text	   *t;
		int			len;
		bool		dup = false;

		if (isnull)
			continue;
		t = DatumGetTextPP(d);
		len = VARSIZE_ANY_EXHDR(t);
		if (len == subject.len && memcmp(VARDATA_ANY(t), subject.s, len) == 0)
			continue;
		for (int i = 0; i < nseen && !dup; i++)
			dup = (int) VARSIZE_ANY_EXHDR(seen[i]) == len &&
				memcmp(VARDATA_ANY(seen[i]), VARDATA_ANY(t), len) == 0;
		if (!dup)
			seen[nseen++] = DatumGetTextPCopy(d);
	}
	probe_end(&s);
	return nseen;
}

/* Is the time outside the rule's business hours, in its time zone? */
static bool
outside_hours(const Rule *r, TimestampTz at)
{
	struct pg_tm tm;
	fsec_t		fsec;
	int			tzoff;
	int			wday;
	int			minutes;

	if (timestamp2tm(at, &tzoff, &tm, &fsec, NULL, r->tz) != 0)
		return false;
	wday = j2day(date2j(tm.tm_year, tm.tm_mon, tm.tm_mday));
	if (wday == 0)
		wday = 7;
	minutes = tm.tm_hour * 60 + tm.tm_min;
	return !((r->days & (1 << wday)) && minutes >= r->start_min && minutes < r->end_min);
}

static char *
count_detail(int64 seen, int32 threshold, int32 window_seconds)
{
	return psprintf("{\"seen\": " INT64_FORMAT ", \"threshold\": %d, \"window_seconds\": %d}",
					seen, threshold, window_seconds);
}

/* ---- the two tables ---- */

void
ta_alerts_tool_call(Relation rel, const TaLayout *layout, Datum *values, bool *nulls)
{
	const Rules *rs = get_rules();
	Text		tenant,
				tool,
				user,
				subject;
	int64		id;
	TimestampTz at;
	int			i;
	int			success_i;
	bool		failed;
	int			bg = -1;		/* break_glass: -1 unknown, 0 no, 1 yes */

	if (rs == NULL || !rs->tool_calls)
		return;
	tenant = text_value(layout, values, nulls, TA_COL_TENANT_ID);
	tool = text_value(layout, values, nulls, TA_COL_TOOL_NAME);
	user = text_value(layout, values, nulls, TA_COL_USER_ID);
	subject = text_value(layout, values, nulls, TA_COL_SUBJECT_ID);
	i = ta_column(layout, TA_COL_ID);
	id = nulls[i] ? 0 : DatumGetInt64(values[i]);
	i = ta_column(layout, TA_COL_RECORDED_AT);
	at = nulls[i] ? GetCurrentTimestamp() : DatumGetTimestampTz(values[i]);
	success_i = ta_column(layout, TA_COL_SUCCESS);
	failed = !nulls[success_i] && !DatumGetBool(values[success_i]);

	for (int r_i = 0; r_i < rs->nrules; r_i++)
	{
		const Rule *r = &rs->rules[r_i];
		TimestampTz since = at - (TimestampTz) r->window_seconds * USECS_PER_SEC;
		int64		n;
		Probe		probe;

		if (r->kind == RK_EVENT_TYPE || !tenant_matches(r, tenant))
			continue;
		switch (r->kind)
		{
			case RK_TOOL_NAME:
				if (name_matches(r, tool))
					fire(rs, r, tenant, cstr(tool), id, 0, NULL, at);
				break;
			case RK_FAILURE:
				if (failed && name_matches(r, tool))
					fire(rs, r, tenant, cstr(tool), id, 0, NULL, at);
				break;
			case RK_BREAK_GLASS:
				if (bg < 0)
				{
					AttrNumber att = get_attnum(RelationGetRelid(rel), "break_glass");

					bg = att > 0 && att <= layout->natts && !nulls[att - 1] &&
						DatumGetBool(values[att - 1]) ? 1 : 0;
				}
				if (bg == 1 && name_matches(r, tool))
					fire(rs, r, tenant, user.s ? cstr(user) : "", id, 0, NULL, at);
				break;
			case RK_SAME_SUBJECT:
				if (user.s == NULL || subject.s == NULL || !name_matches(r, tool))
					break;
				probe = user_subject_probe(user, subject, since);
				n = count_recent(rel, layout, &probe, r->threshold - 1);
				if (n + 1 >= r->threshold)
					fire(rs, r, tenant, pair_key(user, subject), id, 0,
						 count_detail(n + 1, r->threshold, r->window_seconds), at);
				break;
			case RK_TOOL_FAILURES:
				if (!failed || tool.s == NULL || !name_matches(r, tool))
					break;
				probe = tool_failures_probe(tool, since);
				n = count_recent(rel, layout, &probe, r->threshold);
				if (n + 1 > r->threshold)
					fire(rs, r, tenant, cstr(tool), id, 0,
						 count_detail(n + 1, r->threshold, r->window_seconds), at);
				break;
			case RK_DISTINCT_SUBJECTS:
				if (user.s == NULL || subject.s == NULL || !name_matches(r, tool))
					break;
				/* a subject the user already touched in the window adds none */
				probe = user_subject_probe(user, subject, since);
				if (count_recent(rel, layout, &probe, 1) != 0)
					break;
				n = distinct_recent(rel, layout, user, subject, since, r->threshold);
				if (n + 1 > r->threshold)
					fire(rs, r, tenant, cstr(user), id, 0,
						 count_detail(n + 1, r->threshold, r->window_seconds), at);
				break;
			case RK_BUSINESS_HOURS:
				if (name_matches(r, tool) && outside_hours(r, at))
					fire(rs, r, tenant, "", id, 0, NULL, at);
				break;
			case RK_EVENT_TYPE:
				break;
		}
	}
}

void
ta_alerts_admin_event(const TaLayout *layout, Datum *values, bool *nulls)
{
	const Rules *rs = get_rules();
	Text		tenant,
				type;
	int			i;
	int64		id;
	TimestampTz at;

	if (rs == NULL || !rs->admin_events)
		return;
	tenant = text_value(layout, values, nulls, TA_COL_TENANT_ID);
	type = text_value(layout, values, nulls, TA_COL_EVENT_TYPE);
	i = ta_column(layout, TA_COL_ID);
	id = nulls[i] ? 0 : DatumGetInt64(values[i]);
	i = ta_column(layout, TA_COL_OCCURRED_AT);
	at = nulls[i] ? GetCurrentTimestamp() : DatumGetTimestampTz(values[i]);
	for (int r_i = 0; r_i < rs->nrules; r_i++)
	{
		const Rule *r = &rs->rules[r_i];

		if (r->kind == RK_EVENT_TYPE && tenant_matches(r, tenant) && name_matches(r, type))
			fire(rs, r, tenant, cstr(type), 0, id, NULL, at);
	}
}
