/*-------------------------------------------------------------------------
 *
 * purge.c
 *		tool_audit.purge_expired(dry_run): the one sanctioned way rows leave
 *		the audit tables (doc/retention.md, "Purge").
 *
 * A row is purgeable when it has a chain position, is not an event that
 * proves a purge or an erasure (those are never purged), no active legal
 * hold covers it (hold_covers()'s rule), its expires_at has passed (rows
 * written before 1.4 have none) and so has its recorded time plus the
 * retention its policy gives its tenant today (current_retention_days():
 * lengthening a policy keeps old rows longer).  Its policy is the row's
 * retention_policy, or for a row written before 1.4 the one
 * retention_policy_for() gives its tool or event type today.
 *
 * Each table is purged by one statement: the candidates come through the
 * time index (no row is purgeable before the floor has passed), the
 * retention is computed once per (policy, tool or event type, tenant) and
 * not per row, and the rows removed from each lane are grouped into maximal
 * runs of consecutive positions.  A run becomes an anchor: its positions,
 * the link before it (the row before it, or the anchor of an earlier purge
 * that ends right before it, or zeros at position 1) and the link of its
 * last row, so that verify() and a lane's next writer continue the lane
 * across the gap.  A run whose link before cannot be found (the row before
 * it is missing: tampering, which verify() reports) is kept.
 *
 * One purge at a time (EXCLUSIVE on purge_anchors); legal_holds is locked
 * in SHARE mode, so that a hold being placed commits before the purge reads
 * the holds, and one placed during the purge waits for it.  The statement
 * that deletes runs between ta_sanctioned_change_begin() and _end() (guard.c),
 * the only code that does; the event and the anchors are written after it
 * in the same transaction, the anchors from the event's stored payload, so
 * that each anchor is listed exactly in its event.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "storage/bufmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/rel.h"

#include "catalog.h"
#include "guard.h"
#include "hash.h"
#include "purge.h"

/* A column of purge_anchors, by name (the table gained two in 1.4's own script). */
static AttrNumber
attnum_of(Relation rel, const char *name)
{
	int			i = ta_attribute_index(RelationGetDescr(rel), name);

	if (i < 0)
		ta_missing_relation("purge_anchors");
	return (AttrNumber) (i + 1);
}

typedef struct PurgeTable
{
	const char *table;
	const char *time_column;
	const char *name_column;	/* what retention_policy_for() takes */
	const char *subject;		/* hold_covers()'s arguments for this table */
	const char *user;
	const char *conversation;
	const char *tool;
	const char *never;			/* rows never purged */
	const char *join;			/* what the hold arguments read besides the row */
} PurgeTable;

/*
 * A row change (1.5) is held by what holds the tool call it was made in
 * (its subject, user, conversation and tool, read from the call's row), by
 * its own tenant and time, and is purged by the policy of its tracked table.
 */
static const PurgeTable purge_tables[] = {
	{"tool_calls", "recorded_at", "tool_name",
		"t.subject_id", "t.user_id", "t.conversation_id", "t.tool_name", "true", ""},
	{"admin_events", "occurred_at", "event_type",
		"t.payload ->> 'subject_id'", "t.actor", "t.payload ->> 'conversation_id'",
		"t.payload ->> 'tool_name'",
		"t.event_type NOT IN ('tool_audit.retention.purge', 'tool_audit.retention.erase')", ""},
	{"data_changes", "recorded_at", "table_name",
		"k.subject_id", "k.user_id", "k.conversation_id", "k.tool_name", "true",
		" LEFT JOIN tool_audit.tool_calls k ON k.event_id = t.call_event_id"},
};

/*
 * The statement that purges one table (or, for a dry run, selects what it
 * would purge) and returns {"rows", "counts", "anchors", "rows_kept"}.
 * Runs at pg_catalog, pg_temp (the function's search_path).
 */
static char *
purge_sql(const PurgeTable *p, bool dry_run)
{
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfo(&sql,
	/* the active holds, their keys taken apart once */
					 "WITH holds AS MATERIALIZED ("
					 " SELECT h.scope ? 'tenant_id' AS has_tenant, h.scope ->> 'tenant_id' AS tenant,"
					 "        h.scope ? 'subject_id' AS has_subject, h.scope ->> 'subject_id' AS subject,"
					 "        h.scope ? 'user_id' AS has_user, h.scope ->> 'user_id' AS usr,"
					 "        h.scope ? 'conversation_id' AS has_conv, h.scope ->> 'conversation_id' AS conv,"
					 "        h.scope ? 'tool_name' AS has_tool, h.scope ->> 'tool_name' AS tool,"
					 "        h.scope ? 'from' AS has_from, (h.scope ->> 'from')::timestamptz AS t_from,"
					 "        h.scope ? 'to' AS has_to, (h.scope ->> 'to')::timestamptz AS t_to"
					 "   FROM tool_audit.legal_holds h WHERE h.released_at IS NULL),"
	/* candidates: past the floor (through the time index) and their expires_at */
					 " cand AS MATERIALIZED ("
					 " SELECT t.id, t.chain_id, t.chain_lane, t.chain_seq, t.tenant_id, t.retention_policy,"
					 "        t.expires_at, t.%2$s AS at,"
					 "        CASE WHEN t.retention_policy IS NULL THEN t.%3$s END AS name_for_policy,"
					 "        %4$s AS subject, %5$s AS usr, %6$s AS conv, %7$s AS tool"
					 "   FROM tool_audit.%1$s t%10$s"
					 "  WHERE t.%2$s <= now() - (SELECT f.floor_days FROM tool_audit.retention_floor f) * interval '86400 seconds'"
					 "    AND coalesce(t.expires_at, '-infinity') <= now()"
					 "    AND t.chain_id IS NOT NULL AND t.chain_lane IS NOT NULL AND t.chain_seq IS NOT NULL"
					 "    AND %8$s),"
	/* the retention of each (policy, tool or event type, tenant), once */
					 " keys AS MATERIALIZED ("
					 " SELECT d.retention_policy, d.name_for_policy, d.tenant_id, d.policy,"
					 "        CASE WHEN d.retention_policy IS NULL"
					 "             THEN tool_audit.legacy_retention_days('%1$s', d.name_for_policy, d.tenant_id)"
					 "             ELSE tool_audit.current_retention_days(d.policy, d.tenant_id) END AS days"
					 "   FROM (SELECT x.*, coalesce(x.retention_policy,"
					 "                tool_audit.retention_policy_for('%1$s', x.name_for_policy)) AS policy"
					 "           FROM (SELECT DISTINCT c.retention_policy, c.name_for_policy, c.tenant_id FROM cand c) x) d),"
					 " doomed AS MATERIALIZED ("
					 " SELECT c.id, c.chain_id, c.chain_lane, c.chain_seq, c.tenant_id, k.policy,"
					 "        greatest(c.expires_at, c.at + k.days * interval '86400 seconds') AS expiry,"
					 "        c.chain_seq - row_number() OVER (PARTITION BY c.chain_id, c.chain_lane"
					 "                                         ORDER BY c.chain_seq) AS grp"
					 "   FROM cand c"
					 "   JOIN keys k ON coalesce(k.retention_policy, '') = coalesce(c.retention_policy, '')"
					 "              AND coalesce(k.name_for_policy, '') = coalesce(c.name_for_policy, '')"
					 "              AND (k.tenant_id IS NULL) = (c.tenant_id IS NULL)"
					 "              AND coalesce(k.tenant_id, '') = coalesce(c.tenant_id, '')"
					 "  WHERE c.at + k.days * interval '86400 seconds' <= now()"
	/* hold_covers(), written out: every key a hold gives must match */
					 "    AND NOT EXISTS (SELECT FROM holds h WHERE coalesce("
					 "            (NOT h.has_tenant OR h.tenant = c.tenant_id)"
					 "        AND (NOT h.has_subject OR h.subject = c.subject)"
					 "        AND (NOT h.has_user OR h.usr = c.usr)"
					 "        AND (NOT h.has_conv OR h.conv = c.conv)"
					 "        AND (NOT h.has_tool OR h.tool = c.tool)"
					 "        AND (NOT h.has_from OR c.at >= h.t_from)"
					 "        AND (NOT h.has_to OR c.at <= h.t_to), false))),"
	/* maximal runs of consecutive positions, with the links either side */
					 " runs AS MATERIALIZED ("
					 " SELECT r.chain_id, r.chain_lane, r.grp, r.first_seq, r.last_seq, r.n, r.max_expiry,"
					 "        CASE WHEN r.first_seq = 1 THEN '\\x%9$s'::bytea"
					 "             ELSE coalesce(p.chain_hash, pa.link_after) END AS link_before,"
					 "        l.chain_hash AS link_after, l.tenant_id, l.retention_policy"
					 "   FROM (SELECT d.chain_id, d.chain_lane, d.grp, min(d.chain_seq) AS first_seq,"
					 "                max(d.chain_seq) AS last_seq, count(*) AS n, max(d.expiry) AS max_expiry"
					 "           FROM doomed d GROUP BY d.chain_id, d.chain_lane, d.grp) r"
					 "   JOIN tool_audit.%1$s l ON l.chain_id = r.chain_id AND l.chain_lane = r.chain_lane"
					 "                          AND l.chain_seq = r.last_seq"
					 "   LEFT JOIN tool_audit.%1$s p ON r.first_seq > 1 AND p.chain_id = r.chain_id"
					 "                              AND p.chain_lane = r.chain_lane AND p.chain_seq = r.first_seq - 1"
					 "   LEFT JOIN tool_audit.purge_anchors pa ON r.first_seq > 1 AND pa.table_name = '%1$s'"
					 "                              AND pa.chain_id = r.chain_id AND pa.chain_lane = r.chain_lane"
					 "                              AND pa.last_seq = r.first_seq - 1),"
					 " ok_runs AS MATERIALIZED ("
					 " SELECT * FROM runs r"
					 "  WHERE octet_length(r.link_before) = 32 AND octet_length(r.link_after) = 32),",
					 p->table, p->time_column, p->name_column,
					 p->subject, p->user, p->conversation, p->tool, p->never,
					 "0000000000000000000000000000000000000000000000000000000000000000",
					 p->join);
	if (dry_run)
		appendStringInfoString(&sql,
							   " gone AS ("
							   " SELECT d.policy, d.tenant_id FROM doomed d"
							   "   JOIN ok_runs r ON r.chain_id = d.chain_id AND r.chain_lane = d.chain_lane"
							   "                 AND r.grp = d.grp)");
	else
		appendStringInfo(&sql,
						 " gone AS ("
						 " DELETE FROM tool_audit.%1$s t USING doomed d, ok_runs r"
						 "  WHERE t.id = d.id AND r.chain_id = d.chain_id AND r.chain_lane = d.chain_lane"
						 "    AND r.grp = d.grp"
						 " RETURNING d.policy, d.tenant_id)",
						 p->table);
	appendStringInfo(&sql,
					 " SELECT jsonb_build_object("
					 "  'rows', (SELECT count(*) FROM gone),"
					 "  'counts', (SELECT coalesce(jsonb_agg(jsonb_build_object('table', '%1$s',"
					 "                 'policy', g.policy, 'tenant', g.tenant_id, 'rows', g.n)"
					 "                 ORDER BY g.policy, g.tenant_id), '[]')"
					 "               FROM (SELECT policy, tenant_id, count(*) AS n FROM gone GROUP BY 1, 2) g),"
					 "  'anchors', (SELECT coalesce(jsonb_agg(jsonb_build_object('table', '%1$s',"
					 "                 'chain', r.chain_id::text, 'lane', r.chain_lane,"
					 "                 'first', r.first_seq, 'last', r.last_seq,"
					 "                 'link_before', encode(r.link_before, 'hex'),"
					 "                 'link_after', encode(r.link_after, 'hex'), 'rows', r.n,"
					 "                 'max_expires_at', to_char(r.max_expiry AT TIME ZONE 'UTC',"
					 "                                           'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
					 "                 'tenant', r.tenant_id, 'retention_policy', r.retention_policy)"
					 "                 ORDER BY r.chain_id, r.chain_lane, r.first_seq), '[]')"
					 "               FROM ok_runs r),"
					 "  'rows_kept', (SELECT coalesce(sum(r.n), 0) FROM runs r"
					 "                 WHERE NOT (octet_length(r.link_before) = 32"
					 "                            AND octet_length(r.link_after) = 32)"
					 "                    OR r.link_before IS NULL OR r.link_after IS NULL))",
					 p->table);
	return sql.data;
}

/* The one statement that deletes audit rows, with the guards letting it. */
static int
execute_sanctioned(const char *sql)
{
	volatile int rc = 0;

	ta_sanctioned_change_begin();
	PG_TRY();
	{
		rc = SPI_execute(sql, false, 0);
	}
	PG_FINALLY();
	{
		ta_sanctioned_change_end();
	}
	PG_END_TRY();
	return rc;
}

static Jsonb *
run_purge_statement(const PurgeTable *p, bool dry_run)
{
	char	   *sql = purge_sql(p, dry_run);
	int			rc;
	bool		isnull;
	Datum		d;

	rc = dry_run ? SPI_execute(sql, false, 0) : execute_sanctioned(sql);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "tool_audit: could not purge %s", p->table);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		elog(ERROR, "tool_audit: could not purge %s", p->table);
	return DatumGetJsonbP(d);
}

/*
 * Alerts (1.5, doc/retention.md "Alerts"): not hash-chained, so removed
 * without anchors and counted as "alerts_removed".  An alert goes when
 *	- its last_at is older than the longest retention any policy gives its
 *	  tenant today (so every row of its burst, listed or not, had expired,
 *	  and an alert listing no row lives as long as the longest-kept row),
 *	- none of the rows it lists is still there (purged with its evidence,
 *	  never before it: a held or erased row keeps its alert),
 *	- it is acknowledged, or its severity is low or medium (an
 *	  unacknowledged high or critical alert waits for someone to look), and
 *	- no active hold covers its tenant at its first_at or last_at.
 */
static const char *const alerts_expired =
"   FROM tool_audit.alerts a"
"  WHERE a.last_at + (SELECT max(tool_audit.current_retention_days(p.policy_name, a.tenant_id))"
"                       FROM tool_audit.retention_policies p) * interval '86400 seconds' <= now()"
"    AND (a.acknowledged_at IS NOT NULL OR a.severity IN ('low', 'medium'))"
"    AND NOT EXISTS (SELECT FROM tool_audit.tool_calls c WHERE c.id = ANY (a.tool_call_ids))"
"    AND NOT EXISTS (SELECT FROM tool_audit.admin_events e WHERE e.id = ANY (a.admin_event_ids))"
"    AND NOT EXISTS (SELECT FROM tool_audit.legal_holds h WHERE h.released_at IS NULL"
"                       AND (tool_audit.hold_covers(h.scope, a.tenant_id, NULL, NULL, NULL, NULL, a.first_at)"
"                            OR tool_audit.hold_covers(h.scope, a.tenant_id, NULL, NULL, NULL, NULL, a.last_at)))";

static int64
purge_alerts(bool dry_run)
{
	char	   *sql = dry_run ?
		psprintf("SELECT count(*) %s", alerts_expired) :
		psprintf("WITH gone AS (DELETE FROM tool_audit.alerts x USING (SELECT a.alert_id %s) d"
				 " WHERE x.alert_id = d.alert_id RETURNING 1) SELECT count(*) FROM gone",
				 alerts_expired);
	int			rc;
	bool		isnull;

	rc = dry_run ? SPI_execute(sql, false, 0) : execute_sanctioned(sql);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "tool_audit: could not purge alerts");
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * tool_audit.purge_expired(dry_run boolean DEFAULT false) RETURNS jsonb
 *
 * {"dry_run", "rows", "rows_kept", "counts": [{table, policy, tenant, rows}],
 *  "anchors": [{table, chain, lane, first, last, link_before, link_after,
 *  rows, max_expires_at, tenant, retention_policy}], "alerts_removed" (1.5),
 *  "purge_event_id"}; the event's payload is the same without
 * purge_event_id and dry_run.  "rows" counts the audit tables' rows only
 * (the anchors' total).
 */
PG_FUNCTION_INFO_V1(purge_expired);
Datum
purge_expired(PG_FUNCTION_ARGS)
{
	bool		dry_run;
	Jsonb	   *parts[lengthof(purge_tables)];
	int			nparts = 0;
	Oid			argtypes[3] = {JSONBOID, JSONBOID, BOOLOID};
	Datum		args[3];
	Datum		result;
	bool		isnull;
	int64		event_id = 0;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("dry_run must not be null")));
	dry_run = PG_GETARG_BOOL(0);

	/*
	 * The holds must be read after the lock: a transaction snapshot taken
	 * before it would miss a hold committed in between.
	 */
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("purge_expired() must run at isolation level READ COMMITTED"),
				 errhint("Call it in its own transaction, or after SET TRANSACTION ISOLATION LEVEL READ COMMITTED.")));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (!dry_run &&
		(SPI_execute("LOCK TABLE tool_audit.purge_anchors IN EXCLUSIVE MODE", false, 0) != SPI_OK_UTILITY ||
		 SPI_execute("LOCK TABLE tool_audit.legal_holds IN SHARE MODE", false, 0) != SPI_OK_UTILITY))
		elog(ERROR, "tool_audit: could not lock the purge tables");

	/* data_changes (1.5) is not there in a schema of an earlier version */
	for (int i = 0; i < (int) lengthof(purge_tables); i++)
		if (OidIsValid(ta_schema_relid(purge_tables[i].table, true)))
			parts[nparts++] = run_purge_statement(&purge_tables[i], dry_run);

	/* the tables' reports in one */
	result = JsonbPGetDatum(parts[0]);
	for (int i = 1; i < nparts; i++)
	{
		args[0] = result;
		args[1] = JsonbPGetDatum(parts[i]);
		if (SPI_execute_with_args("SELECT jsonb_build_object("
								  " 'rows', ($1 ->> 'rows')::bigint + ($2 ->> 'rows')::bigint,"
								  " 'rows_kept', ($1 ->> 'rows_kept')::bigint + ($2 ->> 'rows_kept')::bigint,"
								  " 'counts', ($1 -> 'counts') || ($2 -> 'counts'),"
								  " 'anchors', ($1 -> 'anchors') || ($2 -> 'anchors'))",
								  2, argtypes, args, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "tool_audit: could not report the purge");
		result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	}
	args[0] = result;
	args[2] = BoolGetDatum(dry_run);
	if (SPI_execute_with_args("SELECT $1, (SELECT coalesce(sum((a ->> 'rows')::bigint), 0)"
							  "              FROM jsonb_array_elements($1 -> 'anchors') a)"
							  "            = ($1 ->> 'rows')::bigint",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "tool_audit: could not report the purge");
	result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("tool_audit: the purge removed a different number of rows than its anchors count"),
				 errhint("Nothing was purged.  Run tool_audit.verify().")));

	/* (1.5) alerts, after the rows they list */
	if (OidIsValid(ta_schema_relid("alerts", true)))
	{
		args[1] = Int64GetDatum(purge_alerts(dry_run));
		argtypes[1] = INT8OID;
		args[0] = result;
		if (SPI_execute_with_args("SELECT $1 || jsonb_build_object('alerts_removed', $2)",
								  2, argtypes, args, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "tool_audit: could not report the purge");
		result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		argtypes[1] = JSONBOID;
	}

	if (!dry_run)
	{
		/* the event, then its anchors from the payload it stored */
		args[0] = result;
		if (SPI_execute_with_args("INSERT INTO tool_audit.admin_events"
								  " (event_type, actor, actor_type, payload)"
								  " VALUES ('tool_audit.retention.purge', tool_audit.acting_role(), 'user', $1)"
								  " RETURNING id, payload, payload = $1",
								  1, argtypes, args, NULL, false, 0) != SPI_OK_INSERT_RETURNING ||
			SPI_processed != 1)
			elog(ERROR, "tool_audit: could not record the purge event");
		event_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull)))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("tool_audit: the purge event was stored with a payload other than the purge's"),
					 errhint("Nothing was purged.  Check the built-in sanitize rules.")));
		args[0] = Int64GetDatum(event_id);
		args[1] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
		argtypes[0] = INT8OID;
		if (SPI_execute_with_args("INSERT INTO tool_audit.purge_anchors"
								  " (purge_event_id, table_name, chain_id, chain_lane, first_seq, last_seq,"
								  "  link_before, link_after, rows_removed, max_expires_at, tenant_id, retention_policy)"
								  " SELECT $1, a ->> 'table', (a ->> 'chain')::bigint, (a ->> 'lane')::integer,"
								  "        (a ->> 'first')::bigint, (a ->> 'last')::bigint,"
								  "        decode(a ->> 'link_before', 'hex'), decode(a ->> 'link_after', 'hex'),"
								  "        (a ->> 'rows')::bigint, (a ->> 'max_expires_at')::timestamptz,"
								  "        a ->> 'tenant', a ->> 'retention_policy'"
								  "   FROM jsonb_array_elements($2 -> 'anchors') a",
								  2, argtypes, args, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "tool_audit: could not record the purge anchors");
	}

	/* the report: the payload, the event's id and whether it was a dry run */
	argtypes[0] = JSONBOID;
	argtypes[1] = INT8OID;
	args[0] = result;
	args[1] = Int64GetDatum(event_id);
	if (SPI_execute_with_args("SELECT $1 || jsonb_build_object('dry_run', $3,"
							  " 'purge_event_id', CASE WHEN NOT $3 THEN $2 END)",
							  3, argtypes, args, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "tool_audit: could not report the purge");
	result = SPI_datumTransfer(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull),
							   false, -1);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/*
 * The head an anchor gives a lane: the anchor with the highest positions of
 * (table, chain, lane), read through purge_anchors' primary key (table_name,
 * chain_id, chain_lane, first_seq) with the caller's snapshot.  False if
 * the lane has none (or the database has no purge_anchors yet: before 1.4).
 *
 * Every lane a writer takes asks (chain.c's read_head()), and most databases
 * have never purged: a table of no block has no anchor any snapshot can see
 * (one committed before the snapshot was taken extended the table before it
 * committed), so the index is not opened then.  The locks stay to the end of
 * the transaction, as a statement's would.
 */
bool
ta_anchor_head(const char *table, int64 chain_id, int32 lane, Snapshot snap,
			   int64 *seq, unsigned char link[TA_HASH_LEN])
{
	Oid			relid = ta_schema_relid("purge_anchors", true);
	Oid			indexid = ta_schema_relid("purge_anchors_pkey", true);
	Relation	rel,
				irel;
	ScanKeyData keys[3];
	IndexScanDesc scan;
	TupleTableSlot *slot;
	bool		found = false;

	if (!OidIsValid(relid) || !OidIsValid(indexid))
		return false;
	rel = table_open(relid, AccessShareLock);
	if (RelationGetNumberOfBlocks(rel) == 0)
	{
		table_close(rel, NoLock);
		return false;
	}
	irel = index_open(indexid, AccessShareLock);
	ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   irel->rd_indcollation[0], F_TEXTEQ,
						   CStringGetTextDatum(table));
	ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(chain_id));
	ScanKeyInit(&keys[2], 3, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(lane));
	slot = table_slot_create(rel, NULL);
	scan = ta_index_scan(rel, irel, snap, keys, 3);
	if (index_getnext_slot(scan, BackwardScanDirection, slot))
	{
		bool		seq_null,
					link_null;
		Datum		s = slot_getattr(slot, attnum_of(rel, "last_seq"), &seq_null);
		Datum		l = slot_getattr(slot, attnum_of(rel, "link_after"), &link_null);

		if (seq_null || !ta_stored_hash(l, link_null, link))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("purge anchor of chain " INT64_FORMAT " lane %d of tool_audit.%s is damaged",
							chain_id, lane, table),
					 errhint("Run tool_audit.verify() to see what is wrong.")));
		*seq = DatumGetInt64(s);
		found = true;
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(irel, NoLock);
	table_close(rel, NoLock);
	return found;
}
