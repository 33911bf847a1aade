/*-------------------------------------------------------------------------
 *
 * erase.c
 *		tool_audit.erase_subject(): a data subject's personal fields in
 *		audit rows replaced by markers (GDPR Art. 17), every chain still
 *		verifiable.
 *
 * The rows are tool_calls naming the subject in subject_id or user_id,
 * admin_events naming it as actor or in payload->>'subject_id', and (1.5)
 * data_changes made in such a tool call or whose row key, old or new values
 * have the subject id as a value (in a call or not).  Rows an
 * active legal hold covers are kept as they are and reported (Art.
 * 17(3)(e)).  Every other row is changed by one UPDATE per table, run
 * between ta_sanctioned_change_begin() and _end() (guard.c), which replaces:
 *
 *	- tool_calls: arguments, result_summary and session_metadata by the
 *	  jsonb marker, error and user_agent (when set) by the text marker,
 *	  client_ip by NULL, and every identifying text column that contains
 *	  the subject id (subject_id, user_id, conversation_id, user_role,
 *	  model, tool_call_id, purpose, recorded_by) by the text marker;
 *	- admin_events written by applications: payload and metadata by the
 *	  jsonb marker, reason (when set) by the text marker, source_ip by NULL,
 *	  actor and recorded_by by the text marker when they contain the id;
 *	- data_changes (1.5): old_values and new_values by the jsonb marker
 *	  (an empty {} stays), row_key by it when it contains the id,
 *	  recorded_by and application_name by the text marker when they do;
 *	- the extension's own "tool_audit." events: only the columns that
 *	  contain the subject id (actor, recorded_by, reason, payload,
 *	  metadata), and never the payload of a tool_audit.retention.erase or
 *	  .purge event, which is the proof of what was removed;
 *	- alerts (1.5, not hash-chained: changed in place, counted in the event,
 *	  no erasures entry): burst_key, acknowledged_note and acknowledged_by
 *	  by the text marker and detail by the jsonb marker where they contain
 *	  the id (alerts_guard lets the sanctioned change through);
 *	- impersonations (1.5, likewise in place): admin_id, target_user and
 *	  reason by the text marker where they contain the id; the
 *	  impersonation.* events, which name the user as target_user, are
 *	  erased as applications' admin events.
 *
 * The structural columns (id, event_id, times, tenant_id, tool_name,
 * event_type, call_trigger, success, turn_number, duration_ms, the row and
 * chain hashes, the retention columns) are never touched: the stored
 * row_hash and every link stay as they were, and the row keeps its place.
 *
 * For each changed row one tool_audit.erasures row records the columns
 * replaced and row_hash_after, the row hash of the row as it now is; the
 * tool_audit.retention.erase event (written first, so the entries can name
 * it) commits to all its entries with "erasures_hash"
 * (doc/canonical-encoding.md, "Erasures").  verify() accepts an erased row
 * only through such an entry.  The event never contains the subject id:
 * a reason or legal basis that contains it is refused, and so is an
 * erasure run by a role whose name contains it.
 *
 * With tool_audit.require_dual_approval on (1.5), an erasure first uses
 * an approved request for the subject (approval.c, consume_approval()).
 *
 * Locks: erasures in SHARE ROW EXCLUSIVE mode (one erasure at a time, so
 * the entries of one row are in event order), legal_holds in SHARE mode
 * (no hold placed or released until the erasure commits).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/xact.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"

#include "approval.h"
#include "catalog.h"
#include "crypto.h"
#include "erase.h"
#include "guard.h"
#include "hash.h"
#include "jsonb_util.h"

#define ERASURES_DOMAIN		"tool_audit erasures 1"
#define GDPR_HOLD_EXCEPTION	"GDPR Art. 17(3)(e)"

/* ---- the commitment to an event's erasures rows ---- */

void
ta_erasures_hash_begin(TaErasuresHash *h)
{
	initStringInfo(&h->buf);
	appendBinaryStringInfo(&h->buf, ERASURES_DOMAIN, sizeof(ERASURES_DOMAIN));	/* with its 0 */
	h->count = 0;
}

static void
put_be(StringInfo buf, uint64 v, int n)
{
	for (int i = n - 1; i >= 0; i--)
		appendStringInfoCharMacro(buf, (char) (v >> (8 * i)));
}

void
ta_erasures_hash_add(TaErasuresHash *h, const char *table, int64 row_id,
					 Datum erased_columns, const unsigned char row_hash_after[TA_HASH_LEN])
{
	ArrayType  *arr = DatumGetArrayTypeP(erased_columns);
	Datum	   *names;
	bool	   *nulls;
	int			n;

	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &names, &nulls, &n);
	appendStringInfoCharMacro(&h->buf, (char) strlen(table));
	appendStringInfoString(&h->buf, table);
	put_be(&h->buf, (uint64) row_id, 8);
	put_be(&h->buf, (uint64) n, 4);
	for (int i = 0; i < n; i++)
	{
		text	   *t;
		int			len;

		/* column names: never NULL, at most 63 bytes (erase_subject() writes them) */
		if (nulls[i])
		{
			appendStringInfoCharMacro(&h->buf, (char) 0xFF);
			continue;
		}
		t = DatumGetTextPP(names[i]);
		len = Min(VARSIZE_ANY_EXHDR(t), 254);
		appendStringInfoCharMacro(&h->buf, (char) len);
		ta_append_utf8(&h->buf, VARDATA_ANY(t), len);
	}
	appendBinaryStringInfo(&h->buf, (const char *) row_hash_after, TA_HASH_LEN);
	h->count++;
}

void
ta_erasures_hash_end(TaErasuresHash *h, unsigned char out[TA_HASH_LEN])
{
	ta_sha256(h->buf.data, h->buf.len, out);
	pfree(h->buf.data);
}

/*
 * Whether a column value is an erasure marker: the text marker in a text
 * column ('s'), the jsonb marker (an object whose only member is the
 * marker key with true) in a jsonb column ('j').  Sizes are compared before anything is detoasted.
 */
bool
ta_is_erasure_marker(char tag, Datum value)
{
	Size		raw = toast_raw_datum_size(value);

	if (tag == 's')
	{
		text	   *t;

		if (raw != VARHDRSZ + strlen(TA_ERASED_TEXT))
			return false;
		t = DatumGetTextPP(value);
		return memcmp(VARDATA_ANY(t), TA_ERASED_TEXT, strlen(TA_ERASED_TEXT)) == 0;
	}
	if (tag == 'j')
	{
		Jsonb	   *j;
		JsonbValue *v;

		if (raw > 128)
			return false;
		j = DatumGetJsonbP(value);
		if (!JB_ROOT_IS_OBJECT(j) || JB_ROOT_COUNT(j) != 1)
			return false;
		v = ta_jsonb_key(&j->root, TA_ERASED_KEY);
		return v != NULL && v->type == jbvBool && v->val.boolean;
	}
	return false;
}

/* ---- an erased row, as the reports check it ---- */

/* hash.c */
extern Datum compute_row_hash(PG_FUNCTION_ARGS);

/*
 * Whether the erase event commits to the entries naming it: its
 * erasures_hash, recomputed from tool_audit.erasures.  Inside SPI.
 */
static bool
event_commits(int64 event_id)
{
	Oid			types[1] = {INT8OID};
	Datum		args[1] = {Int64GetDatum(event_id)};
	char	   *hex;
	unsigned char committed[TA_HASH_LEN],
				got[TA_HASH_LEN];
	TaErasuresHash h;

	if (SPI_execute_with_args("SELECT a.payload ->> '" TA_ERASURES_HASH_KEY "'"
							  "  FROM tool_audit.admin_events a"
							  " WHERE a.id = $1 AND a.event_type = 'tool_audit.retention.erase'",
							  1, types, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read an erasure event");
	if (SPI_processed != 1)
		return false;
	hex = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (hex == NULL || strlen(hex) != 2 * TA_HASH_LEN ||
		strspn(hex, "0123456789abcdef") != 2 * TA_HASH_LEN)
		return false;
	(void) hex_decode(hex, 2 * TA_HASH_LEN, (char *) committed);

	if (SPI_execute_with_args("SELECT e.table_name, e.row_id, e.erased_columns, e.row_hash_after"
							  "  FROM tool_audit.erasures e WHERE e.erase_event_id = $1"
							  " ORDER BY e.table_name COLLATE \"C\", e.row_id",
							  1, types, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read tool_audit.erasures");
	ta_erasures_hash_begin(&h);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		unsigned char after[TA_HASH_LEN];

		if (!ta_stored_hash_attr(tup, desc, 4, after))
			memset(after, 0, TA_HASH_LEN);
		ta_erasures_hash_add(&h, SPI_getvalue(tup, desc, 1),
							 DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull)),
							 SPI_getbinval(tup, desc, 3, &isnull), after);
	}
	ta_erasures_hash_end(&h, got);
	return ta_hash_equal(got, committed);
}

/*
 * Whether a row hashing to "hash" is the row as its latest erasure whose
 * event commits to it left it (what verify() accepts).
 */
static bool
erasure_accepts(const char *table, int64 row_id, const unsigned char hash[TA_HASH_LEN])
{
	Oid			types[2] = {TEXTOID, INT8OID};
	Datum		args[2] = {CStringGetTextDatum(table), Int64GetDatum(row_id)};
	int64	   *events;
	unsigned char (*afters)[TA_HASH_LEN];
	int			n;
	bool		accepted = false;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args("SELECT e.erase_event_id, e.row_hash_after FROM tool_audit.erasures e"
							  " WHERE e.table_name = $1 AND e.row_id = $2"
							  " ORDER BY e.erase_event_id DESC",
							  2, types, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read tool_audit.erasures");
	n = (int) SPI_processed;
	events = palloc(sizeof(int64) * Max(n, 1));
	afters = palloc(TA_HASH_LEN * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		bool		isnull;

		events[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		if (!ta_stored_hash_attr(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, afters[i]))
			memset(afters[i], 0, TA_HASH_LEN);
	}
	for (int i = 0; i < n; i++)
	{
		if (!event_commits(events[i]))
			continue;
		accepted = ta_hash_equal(afters[i], hash);
		break;
	}
	SPI_finish();
	return accepted;
}

/*
 * tool_audit.accepted_row_hash(tool_audit.tool_calls) RETURNS bytea
 * tool_audit.accepted_row_hash(tool_audit.admin_events) RETURNS bytea
 *
 * The row hash recomputed from the row (compute_row_hash()), except for a
 * row as a verified erasure left it: then the row_hash it stores, which its
 * links use.  check_row() compares it with the stored row_hash, so that the
 * reports accept erased rows as verify() does.  It answers only for the row
 * it is given whole: a made-up row value would have to match the erased
 * row's every column, its random event_id included.
 */
PG_FUNCTION_INFO_V1(accepted_row_hash);
Datum
accepted_row_hash(PG_FUNCTION_ARGS)
{
	HeapTupleHeader td = PG_GETARG_HEAPTUPLEHEADER(0);
	Datum		computed = DirectFunctionCall1(compute_row_hash, PointerGetDatum(td));
	bytea	   *hash = DatumGetByteaPP(computed);
	bool		isnull,
				id_null;
	Datum		stored = GetAttributeByName(td, "row_hash", &isnull);
	Datum		id = GetAttributeByName(td, "id", &id_null);
	unsigned char stored_hash[TA_HASH_LEN];
	char	   *table;

	if (!ta_stored_hash(stored, isnull, stored_hash) || id_null ||
		ta_hash_equal(stored_hash, (unsigned char *) VARDATA_ANY(hash)))
		PG_RETURN_DATUM(computed);
	table = get_rel_name(get_typ_typrelid(HeapTupleHeaderGetTypeId(td)));
	if (erasure_accepts(table, DatumGetInt64(id), (unsigned char *) VARDATA_ANY(hash)))
		PG_RETURN_DATUM(ta_hash_datum(stored_hash));
	PG_RETURN_DATUM(computed);
}

/* ---- erase_subject() ---- */

static text *
required_text_arg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	text	   *t;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("argument \"%s\" of erase_subject() must not be NULL", name)));
	t = PG_GETARG_TEXT_PP(argno);
	if (VARSIZE_ANY_EXHDR(t) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("argument \"%s\" of erase_subject() must not be empty", name)));
	return t;
}

/* Whether haystack contains needle (both text); never quoted in errors. */
static bool
text_contains(text *haystack, text *needle)
{
	return DatumGetInt32(DirectFunctionCall2Coll(textpos, C_COLLATION_OID,
												 PointerGetDatum(haystack),
												 PointerGetDatum(needle))) > 0;
}

static void
refuse_subject_in(const char *field, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s contains the subject id", field),
			 errdetail("%s", why),
			 errhint("The value is not shown: the subject id is personal data.")));
}

/*
 * The UPDATE of each table.  $1: the subject id, $2: the text marker, $3:
 * the jsonb marker, $4: the subject id as it appears inside JSON text.  "o"
 * is the row before, "t" after; RETURNING gives the columns that changed,
 * in name order, and the new row hash.
 */
#define CONTAINS(col) "CASE WHEN strpos(o." col ", $1) > 0 THEN $2 ELSE o." col " END"
#define CONTAINS_JSON(col) "CASE WHEN strpos(o." col "::text, $4) > 0 THEN $3 ELSE o." col " END"
#define CHANGED(col) "CASE WHEN o." col " IS DISTINCT FROM t." col " THEN '" col "' END"

#define HELD_BY_TOOL_CALLS \
	"ARRAY(SELECT h.hold_id FROM tool_audit.legal_holds h" \
	"       WHERE h.released_at IS NULL" \
	"         AND tool_audit.hold_covers(h.scope, x.tenant_id, x.subject_id, x.user_id," \
	"                                    x.conversation_id, x.tool_name, x.recorded_at)" \
	"       ORDER BY h.hold_id)"
#define HELD_BY_ADMIN_EVENTS \
	"ARRAY(SELECT h.hold_id FROM tool_audit.legal_holds h" \
	"       WHERE h.released_at IS NULL" \
	"         AND tool_audit.hold_covers(h.scope, x.tenant_id, x.payload ->> 'subject_id', x.actor," \
	"                                    x.payload ->> 'conversation_id', x.payload ->> 'tool_name'," \
	"                                    x.occurred_at)" \
	"       ORDER BY h.hold_id)"

/*
 * A row change (1.5) is the subject's when the tool call it was made in
 * names the subject (subject_id or user_id), or when a value of its row key,
 * or (1.5, also for a change made outside any tool call) of its values
 * before or after, is the subject id; a hold covers it through that call, as
 * for a purge (a change made outside any call is covered by a hold's
 * tenant and time only, as a purge covers it).
 */
#define HELD_BY_DATA_CHANGES \
	"ARRAY(SELECT h.hold_id FROM tool_audit.legal_holds h" \
	"       WHERE h.released_at IS NULL" \
	"         AND tool_audit.hold_covers(h.scope, x.tenant_id, k.subject_id, k.user_id," \
	"                                    k.conversation_id, k.tool_name, x.recorded_at)" \
	"       ORDER BY h.hold_id)"

/* a change's values are objects; anything else is read as none */
#define OBJECT_OR_EMPTY(col) "CASE WHEN jsonb_typeof(" col ") = 'object' THEN " col " ELSE '{}' END"

static const char *const select_data_changes =
"SELECT x.id, " HELD_BY_DATA_CHANGES " AS holds"
"  FROM tool_audit.data_changes x"
"  LEFT JOIN tool_audit.tool_calls k ON k.event_id = x.call_event_id"
" WHERE k.subject_id = $1 OR k.user_id = $1"
"    OR EXISTS (SELECT FROM jsonb_each_text(x.row_key) kv WHERE kv.value = $1)"
"    OR EXISTS (SELECT FROM jsonb_each_text(" OBJECT_OR_EMPTY("x.old_values") ") kv WHERE kv.value = $1)"
"    OR EXISTS (SELECT FROM jsonb_each_text(" OBJECT_OR_EMPTY("x.new_values") ") kv WHERE kv.value = $1)"
" FOR UPDATE OF x";

static const char *const select_tool_calls =
"SELECT x.id, " HELD_BY_TOOL_CALLS " AS holds"
"  FROM tool_audit.tool_calls x"
" WHERE x.subject_id = $1 OR x.user_id = $1"
" FOR UPDATE OF x";

static const char *const select_admin_events =
"SELECT x.id, " HELD_BY_ADMIN_EVENTS " AS holds"
"  FROM tool_audit.admin_events x"
" WHERE x.actor = $1 OR x.payload ->> 'subject_id' = $1"
"    OR (x.event_type LIKE 'impersonation.%' AND x.payload ->> 'target_user' = $1)"
" FOR UPDATE OF x";

static const char *const update_tool_calls =
"UPDATE tool_audit.tool_calls t SET"
"   subject_id = " CONTAINS("subject_id") ","
"   user_id = " CONTAINS("user_id") ","
"   conversation_id = " CONTAINS("conversation_id") ","
"   user_role = " CONTAINS("user_role") ","
"   model = " CONTAINS("model") ","
"   tool_call_id = " CONTAINS("tool_call_id") ","
"   purpose = " CONTAINS("purpose") ","
"   recorded_by = " CONTAINS("recorded_by") ","
"   arguments = $3, result_summary = $3, session_metadata = $3,"
"   error = CASE WHEN o.error IS NULL THEN NULL ELSE $2 END,"
"   user_agent = CASE WHEN o.user_agent IS NULL THEN NULL ELSE $2 END,"
"   client_ip = NULL"
"  FROM tool_audit.tool_calls o"
" WHERE o.id = t.id AND t.id = ANY ($5)"
" RETURNING t.id, ARRAY(SELECT c FROM unnest(ARRAY["
CHANGED("arguments") ", " CHANGED("client_ip") ", " CHANGED("conversation_id") ", "
CHANGED("error") ", " CHANGED("model") ", " CHANGED("purpose") ", "
CHANGED("recorded_by") ", " CHANGED("result_summary") ", " CHANGED("session_metadata") ", "
CHANGED("subject_id") ", " CHANGED("tool_call_id") ", " CHANGED("user_agent") ", "
CHANGED("user_id") ", " CHANGED("user_role")
"   ]) c WHERE c IS NOT NULL ORDER BY c COLLATE \"C\"),"
"   tool_audit.compute_row_hash(t)";

/* own events: only what contains the id; erase and purge events keep their payload */
#define OWN "o.event_type LIKE 'tool\\_audit.%'"
#define PROOF "o.event_type IN ('tool_audit.retention.erase', 'tool_audit.retention.purge')"

static const char *const update_admin_events =
"UPDATE tool_audit.admin_events t SET"
"   actor = " CONTAINS("actor") ","
"   recorded_by = " CONTAINS("recorded_by") ","
"   reason = CASE WHEN " OWN " THEN " CONTAINS("reason")
"                 WHEN o.reason IS NULL THEN NULL ELSE $2 END,"
"   payload = CASE WHEN " PROOF " THEN o.payload"
"                  WHEN " OWN " THEN " CONTAINS_JSON("payload") " ELSE $3 END,"
"   metadata = CASE WHEN " OWN " THEN " CONTAINS_JSON("metadata") " ELSE $3 END,"
"   source_ip = CASE WHEN " OWN " THEN o.source_ip ELSE NULL END"
"  FROM tool_audit.admin_events o"
" WHERE o.id = t.id AND t.id = ANY ($5)"
" RETURNING t.id, ARRAY(SELECT c FROM unnest(ARRAY["
CHANGED("actor") ", " CHANGED("metadata") ", " CHANGED("payload") ", "
CHANGED("reason") ", " CHANGED("recorded_by") ", " CHANGED("source_ip")
"   ]) c WHERE c IS NOT NULL ORDER BY c COLLATE \"C\"),"
"   tool_audit.compute_row_hash(t)";

/*
 * A row change keeps its table, operation, times and links; its values
 * (before and after) are replaced by the jsonb marker (an INSERT's empty
 * before and a DELETE's empty after stay empty), and the row key, recorder
 * and application name where they contain the subject id.
 */
static const char *const update_data_changes =
"UPDATE tool_audit.data_changes t SET"
"   row_key = " CONTAINS_JSON("row_key") ","
"   old_values = CASE WHEN o.old_values = '{}' THEN o.old_values ELSE $3 END,"
"   new_values = CASE WHEN o.new_values = '{}' THEN o.new_values ELSE $3 END,"
"   recorded_by = " CONTAINS("recorded_by") ","
"   application_name = " CONTAINS("application_name")
"  FROM tool_audit.data_changes o"
" WHERE o.id = t.id AND t.id = ANY ($5)"
" RETURNING t.id, ARRAY(SELECT c FROM unnest(ARRAY["
CHANGED("application_name") ", " CHANGED("new_values") ", " CHANGED("old_values") ", "
CHANGED("recorded_by") ", " CHANGED("row_key")
"   ]) c WHERE c IS NOT NULL ORDER BY c COLLATE \"C\"),"
"   tool_audit.compute_row_hash(t)";

/*
 * Alerts (1.5) are not hash-chained: they are changed in place, and no
 * erasures entry is written for them (the event counts them).  An alert is
 * the subject's when its burst key is the subject id (a user's burst) or a
 * pair of ids one of which is it (a user's calls about one subject; for the
 * rules whose keys name people only, PERSON_KEYED), its
 * detail has it as a JSON string, or its acknowledgement note contains it.
 * (An alert that only lists the subject's rows by id holds nothing of the
 * subject and stays as it is.)  It is kept when a hold covers a row it
 * lists, or would cover a row of its tenant naming the subject (as subject
 * or as user) at its last_at.
 */
#define HELD_BY_ALERTS \
	"ARRAY(SELECT h.hold_id FROM tool_audit.legal_holds h" \
	"       WHERE h.released_at IS NULL" \
	"         AND (tool_audit.hold_covers(h.scope, x.tenant_id, $1, NULL, NULL, NULL, x.last_at)" \
	"              OR tool_audit.hold_covers(h.scope, x.tenant_id, NULL, $1, NULL, NULL, x.last_at)" \
	"              OR EXISTS (SELECT FROM tool_audit.tool_calls c WHERE c.id = ANY (x.tool_call_ids)" \
	"                            AND tool_audit.hold_covers(h.scope, c.tenant_id, c.subject_id, c.user_id," \
	"                                                       c.conversation_id, c.tool_name, c.recorded_at))" \
	"              OR EXISTS (SELECT FROM tool_audit.admin_events e WHERE e.id = ANY (x.admin_event_ids)" \
	"                            AND tool_audit.hold_covers(h.scope, e.tenant_id, e.payload ->> 'subject_id', e.actor," \
	"                                                       e.payload ->> 'conversation_id'," \
	"                                                       e.payload ->> 'tool_name', e.occurred_at)))" \
	"       ORDER BY h.hold_id)"

/*
 * The rules whose burst key names a person: a user (break_glass,
 * distinct_subjects) or a user and a subject (same_subject).  The other
 * keys are tool names, event types or the checks' own names: an erasure
 * does not touch them, so that no subject id given to erase_subject() can
 * blank the key of an alert about something else.
 */
#define PERSON_KEYED "'break_glass', 'distinct_subjects', 'same_subject'"

static const char *const select_alerts =
"SELECT x.alert_id, " HELD_BY_ALERTS " AS holds"
"  FROM tool_audit.alerts x"
" WHERE (x.kind IN (" PERSON_KEYED ") AND x.burst_key = $1)"
"    OR (x.kind = 'same_subject' AND left(x.burst_key, 1) = '['"
"        AND strpos(x.burst_key, '\"' || $4 || '\"') > 0)"
"    OR strpos(x.detail::text, '\"' || $4 || '\"') > 0"
"    OR strpos(x.acknowledged_note, $1) > 0"
" FOR UPDATE OF x";

/*
 * The burst key, acknowledgement note and acknowledging role by the text
 * marker, the detail by the jsonb marker, where they contain the subject
 * id; the rule, times, count and listed row ids stay.
 */
static const char *const update_alerts =
"UPDATE tool_audit.alerts t SET"
"   burst_key = CASE WHEN o.kind IN (" PERSON_KEYED ") THEN " CONTAINS("burst_key") " ELSE o.burst_key END,"
"   detail = " CONTAINS_JSON("detail") ","
"   acknowledged_note = " CONTAINS("acknowledged_note") ","
"   acknowledged_by = " CONTAINS("acknowledged_by")
"  FROM tool_audit.alerts o"
" WHERE o.alert_id = t.alert_id AND t.alert_id = ANY ($5)"
" RETURNING t.alert_id, ARRAY(SELECT c FROM unnest(ARRAY["
CHANGED("acknowledged_by") ", " CHANGED("acknowledged_note") ", " CHANGED("burst_key") ", "
CHANGED("detail")
"   ]) c WHERE c IS NOT NULL ORDER BY c COLLATE \"C\")";

/*
 * Impersonations (1.5, not hash-chained: changed in place, counted in the
 * event): the admin or the user impersonated, and the reason where it
 * contains the id.  Kept when a hold covers the subject in its tenant (as
 * subject or as user) at its start.  Its impersonation.* events name the
 * user as payload ->> 'target_user' and are erased as admin events.
 */
static const char *const select_impersonations =
"SELECT x.impersonation_id, ARRAY(SELECT h.hold_id FROM tool_audit.legal_holds h"
"       WHERE h.released_at IS NULL"
"         AND (tool_audit.hold_covers(h.scope, x.tenant_id, $1, NULL, NULL, NULL, x.started_at)"
"              OR tool_audit.hold_covers(h.scope, x.tenant_id, NULL, $1, NULL, NULL, x.started_at))"
"       ORDER BY h.hold_id) AS holds"
"  FROM tool_audit.impersonations x"
" WHERE x.target_user = $1 OR x.admin_id = $1"
" FOR UPDATE OF x";

static const char *const update_impersonations =
"UPDATE tool_audit.impersonations t SET"
"   target_user = " CONTAINS("target_user") ","
"   admin_id = " CONTAINS("admin_id") ","
"   reason = " CONTAINS("reason")
"  FROM tool_audit.impersonations o"
" WHERE o.impersonation_id = t.impersonation_id AND t.impersonation_id = ANY ($5)"
" RETURNING t.impersonation_id, ARRAY(SELECT c FROM unnest(ARRAY["
CHANGED("admin_id") ", " CHANGED("reason") ", " CHANGED("target_user")
"   ]) c WHERE c IS NOT NULL ORDER BY c COLLATE \"C\")";

/* The ids of the holds that kept rows (with repeats until sorted). */
typedef struct HoldIds
{
	int64	   *ids;
	int			n;
	int			cap;
} HoldIds;

/* What one table's erasure did. */
typedef struct TableErasure
{
	const char *table;
	int64		erased;			/* rows changed (one erasures row each) */
	int64		held;			/* rows kept under a hold */
	int			nentries;
	int64	   *row_ids;
	Datum	   *columns;		/* text[] */
	unsigned char (*hashes)[TA_HASH_LEN];
} TableErasure;

static Datum
int8_array(int64 *values, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int64GetDatum(values[i]);
	return PointerGetDatum(construct_array(d, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * The ids of one table's rows of the subject that no hold covers; counts
 * the others in te->held and collects the ids of their holds in hold_ids
 * (allocated in "keep").  select_sql takes $1 (the subject id) and $4 (as
 * JSON text spells it).
 */
static int64 *
rows_to_erase(TableErasure *te, const char *select_sql, Datum *args,
			  HoldIds *hold_ids, MemoryContext keep, int *nids_out)
{
	Oid			select_types[4] = {TEXTOID, TEXTOID, JSONBOID, TEXTOID};
	int64	   *ids;
	int			nids = 0;
	uint64		n;

	if (SPI_execute_with_args(select_sql, 4, select_types, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not find the subject's rows in tool_audit.%s", te->table);
	n = SPI_processed;
	ids = palloc(sizeof(int64) * Max(n, 1));
	for (uint64 i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		ArrayType  *holds = DatumGetArrayTypeP(SPI_getbinval(tup, desc, 2, &isnull));
		Datum	   *hv;
		bool	   *hn;
		int			nh;

		deconstruct_array(holds, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &hv, &hn, &nh);
		if (nh == 0)
		{
			ids[nids++] = id;
			continue;
		}
		te->held++;
		for (int k = 0; k < nh; k++)
		{
			if (hold_ids->n == hold_ids->cap)
			{
				hold_ids->cap = Max(16, 2 * hold_ids->cap);
				hold_ids->ids = hold_ids->ids == NULL ?
					MemoryContextAlloc(keep, sizeof(int64) * hold_ids->cap) :
					repalloc(hold_ids->ids, sizeof(int64) * hold_ids->cap);
			}
			hold_ids->ids[hold_ids->n++] = DatumGetInt64(hv[k]);
		}
	}
	*nids_out = nids;
	return ids;
}

/* The UPDATE of the rows, through the guards (the sanctioned change). */
static void
update_rows(TableErasure *te, const char *update_sql, Datum *args, int64 *ids, int nids)
{
	Oid			update_types[5] = {TEXTOID, TEXTOID, JSONBOID, TEXTOID, INT8ARRAYOID};

	args[4] = int8_array(ids, nids);
	ta_sanctioned_change_begin();
	PG_TRY();
	{
		if (SPI_execute_with_args(update_sql, 5, update_types, args, NULL, false, 0) !=
			SPI_OK_UPDATE_RETURNING)
			elog(ERROR, "could not erase the subject's rows in tool_audit.%s", te->table);
	}
	PG_FINALLY();
	{
		ta_sanctioned_change_end();
	}
	PG_END_TRY();
}

/*
 * Erase one audit table's rows of the subject.  hold_ids collects the ids
 * of the holds that kept rows.  Runs inside SPI; what it keeps is allocated
 * in "keep".
 */
static void
erase_table(TableErasure *te, const char *select_sql, const char *update_sql,
			Datum *args, HoldIds *hold_ids, MemoryContext keep)
{
	int			nids;
	int64	   *ids = rows_to_erase(te, select_sql, args, hold_ids, keep, &nids);
	uint64		n;
	MemoryContext old;

	if (nids == 0)
		return;
	update_rows(te, update_sql, args, ids, nids);

	n = SPI_processed;
	old = MemoryContextSwitchTo(keep);
	te->row_ids = palloc(sizeof(int64) * Max(n, 1));
	te->columns = palloc(sizeof(Datum) * Max(n, 1));
	te->hashes = palloc(TA_HASH_LEN * Max(n, 1));
	for (uint64 i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		cols = SPI_getbinval(tup, desc, 2, &isnull);
		bytea	   *hash = DatumGetByteaPP(SPI_getbinval(tup, desc, 3, &isnull));

		te->erased++;
		/* a row whose fields were all erased already needs no new entry */
		if (ArrayGetNItems(ARR_NDIM(DatumGetArrayTypeP(cols)),
						   ARR_DIMS(DatumGetArrayTypeP(cols))) == 0)
			continue;
		te->row_ids[te->nentries] = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		te->columns[te->nentries] = PointerGetDatum(DatumGetArrayTypePCopy(cols));
		memcpy(te->hashes[te->nentries], VARDATA_ANY(hash), TA_HASH_LEN);
		te->nentries++;
	}
	MemoryContextSwitchTo(old);
}

/*
 * Erase the subject from a table that is not hash-chained (1.5: alerts,
 * impersonations): counts in te->erased the rows changed; no entries.
 */
static void
erase_side_table(TableErasure *te, const char *select_sql, const char *update_sql,
				 Datum *args, HoldIds *hold_ids, MemoryContext keep)
{
	int			nids;
	int64	   *ids = rows_to_erase(te, select_sql, args, hold_ids, keep, &nids);

	if (nids == 0)
		return;
	update_rows(te, update_sql, args, ids, nids);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		ArrayType  *cols = DatumGetArrayTypeP(SPI_getbinval(SPI_tuptable->vals[i],
															 SPI_tuptable->tupdesc, 2, &isnull));

		if (ArrayGetNItems(ARR_NDIM(cols), ARR_DIMS(cols)) > 0)
			te->erased++;
	}
}

static int
int64_cmp(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return (x > y) - (x < y);
}

/* Entries of one table, sorted by row id (the commitment's order). */
static void
sort_entries(TableErasure *te)
{
	int		   *order;
	int64	   *keys;
	Datum	   *cols;
	unsigned char (*hashes)[TA_HASH_LEN];

	if (te->nentries < 2)
		return;
	/* sort (row id, index) pairs, then permute */
	keys = palloc(sizeof(int64) * 2 * te->nentries);
	for (int i = 0; i < te->nentries; i++)
	{
		keys[2 * i] = te->row_ids[i];
		keys[2 * i + 1] = i;
	}
	qsort(keys, te->nentries, 2 * sizeof(int64), int64_cmp);
	order = palloc(sizeof(int) * te->nentries);
	cols = palloc(sizeof(Datum) * te->nentries);
	hashes = palloc(TA_HASH_LEN * te->nentries);
	for (int i = 0; i < te->nentries; i++)
	{
		order[i] = (int) keys[2 * i + 1];
		cols[i] = te->columns[order[i]];
		memcpy(hashes[i], te->hashes[order[i]], TA_HASH_LEN);
		te->row_ids[i] = keys[2 * i];
	}
	te->columns = cols;
	te->hashes = hashes;
}

static const char *const insert_event =
"INSERT INTO tool_audit.admin_events (event_type, actor, actor_type, payload, reason)"
" VALUES ('tool_audit.retention.erase', tool_audit.acting_role(), 'user',"
"         jsonb_build_object("
"           'legal_basis', $1::text,"
"           'status', $2::text,"
"           'rows_erased', jsonb_build_object('tool_calls', $3::bigint, 'admin_events', $4::bigint)"
"                          || CASE WHEN $12::bigint IS NOT NULL"
"                                  THEN jsonb_build_object('data_changes', $12::bigint) ELSE '{}' END"
"                          || CASE WHEN $14::bigint IS NOT NULL"
"                                  THEN jsonb_build_object('alerts', $14::bigint,"
"                                                          'impersonations', $16::bigint) ELSE '{}' END,"
"           'rows_kept', jsonb_build_object('tool_calls', $5::bigint, 'admin_events', $6::bigint)"
"                        || CASE WHEN $13::bigint IS NOT NULL"
"                                THEN jsonb_build_object('data_changes', $13::bigint) ELSE '{}' END"
"                        || CASE WHEN $15::bigint IS NOT NULL"
"                                THEN jsonb_build_object('alerts', $15::bigint,"
"                                                        'impersonations', $17::bigint) ELSE '{}' END,"
"           'exception', $7::text,"
"           'hold_ids', to_jsonb($8::bigint[]),"
"           'erasures', $9::bigint,"
"           '" TA_ERASURES_HASH_KEY "', $10::text),"
"         $11::text)"
" RETURNING id, payload || jsonb_build_object('erase_event_id', id)";

/*
 * tool_audit.erase_subject(subject_id text, reason text, legal_basis text)
 *	RETURNS jsonb
 */
PG_FUNCTION_INFO_V1(erase_subject);
Datum
erase_subject(PG_FUNCTION_ARGS)
{
	text	   *subject = required_text_arg(fcinfo, 0, "subject_id");
	text	   *reason = required_text_arg(fcinfo, 1, "reason");
	text	   *legal_basis = required_text_arg(fcinfo, 2, "legal_basis");
	text	   *actor = cstring_to_text(GetUserNameFromId(GetOuterUserId(), false));
	MemoryContext keep = CurrentMemoryContext;
	TableErasure tc = {"tool_calls"},
				ae = {"admin_events"},
				dc = {"data_changes"},
				al = {"alerts"},
				im = {"impersonations"};
	/*
	 * data_changes, alerts and impersonations (1.5) are not there in a
	 * schema of an earlier version
	 */
	bool		has_dc = OidIsValid(ta_schema_relid("data_changes", true));
	bool		has_al = OidIsValid(ta_schema_relid("alerts", true));
	HoldIds		hold_ids = {NULL, 0, 0};
	Datum		args[17];
	char		nulls[17];
	Oid			types[17] = {TEXTOID, TEXTOID, INT8OID, INT8OID, INT8OID, INT8OID, TEXTOID,
		INT8ARRAYOID, INT8OID, TEXTOID, TEXTOID, INT8OID, INT8OID, INT8OID, INT8OID,
	INT8OID, INT8OID};
	TaErasuresHash h;
	unsigned char commitment[TA_HASH_LEN];
	char		hex[2 * TA_HASH_LEN + 1];
	const char *status;
	int64		event_id;
	int64	   *holds;
	int			nholds;
	Datum		result;
	bool		isnull;
	SPIPlanPtr	plan;

	/* the erasure event keeps all of these: none may hold the subject id */
	if (text_contains(cstring_to_text(TA_ERASED_TEXT), subject) ||
		text_contains(cstring_to_text(TA_ERASED_JSONB), subject))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("argument \"subject_id\" of erase_subject() occurs in the erasure markers themselves"),
				 errdetail("Erased rows could still be found by it."),
				 errhint("The value is not shown: the subject id is personal data.")));
	if (text_contains(reason, subject))
		refuse_subject_in("argument \"reason\" of erase_subject()",
						  "The erasure event keeps the reason, and must not name the subject.");
	if (text_contains(legal_basis, subject))
		refuse_subject_in("argument \"legal_basis\" of erase_subject()",
						  "The erasure event keeps the legal basis, and must not name the subject.");
	if (text_contains(actor, subject))
		refuse_subject_in("the role running erase_subject()",
						  "The erasure event names the role that ran it; another administrator must run it.");

	/*
	 * The holds must be read after the lock below, with a snapshot taken
	 * then: a transaction snapshot taken before it would miss a hold
	 * committed in between (as in purge_expired()).
	 */
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("erase_subject() must run at isolation level READ COMMITTED"),
				 errhint("Call it in its own transaction, or after SET TRANSACTION ISOLATION LEVEL READ COMMITTED.")));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* (1.5) with tool_audit.require_dual_approval on, an approved request */
	ta_approval_gate("tool_audit.erase_subject", "subject_id", subject);
	if (SPI_execute("LOCK TABLE tool_audit.erasures IN SHARE ROW EXCLUSIVE MODE", false, 0) != SPI_OK_UTILITY ||
		SPI_execute("LOCK TABLE tool_audit.legal_holds IN SHARE MODE", false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not lock tool_audit.erasures and tool_audit.legal_holds");

	{
		Datum		qargs[5];
		StringInfoData quoted;

		initStringInfo(&quoted);
		escape_json(&quoted, text_to_cstring(subject));

		qargs[0] = PointerGetDatum(subject);
		qargs[1] = CStringGetTextDatum(TA_ERASED_TEXT);
		qargs[2] = DirectFunctionCall1(jsonb_in, CStringGetDatum(TA_ERASED_JSONB));
		/* the subject id as JSON text spells it, without the quotes */
		qargs[3] = PointerGetDatum(cstring_to_text_with_len(quoted.data + 1, quoted.len - 2));
		qargs[4] = (Datum) 0;
		/* alerts and row changes first: found through the rows not yet erased */
		if (has_al)
		{
			erase_side_table(&al, select_alerts, update_alerts, qargs, &hold_ids, keep);
			erase_side_table(&im, select_impersonations, update_impersonations, qargs, &hold_ids, keep);
		}
		if (has_dc)
			erase_table(&dc, select_data_changes, update_data_changes, qargs, &hold_ids, keep);
		erase_table(&tc, select_tool_calls, update_tool_calls, qargs, &hold_ids, keep);
		erase_table(&ae, select_admin_events, update_admin_events, qargs, &hold_ids, keep);
	}

	/*
	 * the commitment: tables in name order ("admin_events" < "data_changes"
	 * < "tool_calls"), rows by id
	 */
	sort_entries(&tc);
	sort_entries(&ae);
	sort_entries(&dc);
	ta_erasures_hash_begin(&h);
	for (int i = 0; i < ae.nentries; i++)
		ta_erasures_hash_add(&h, ae.table, ae.row_ids[i], ae.columns[i], ae.hashes[i]);
	for (int i = 0; i < dc.nentries; i++)
		ta_erasures_hash_add(&h, dc.table, dc.row_ids[i], dc.columns[i], dc.hashes[i]);
	for (int i = 0; i < tc.nentries; i++)
		ta_erasures_hash_add(&h, tc.table, tc.row_ids[i], tc.columns[i], tc.hashes[i]);
	ta_erasures_hash_end(&h, commitment);
	hex_encode((const char *) commitment, TA_HASH_LEN, hex);
	hex[2 * TA_HASH_LEN] = '\0';

	/* each hold once, in id order */
	holds = hold_ids.ids;
	nholds = 0;
	if (hold_ids.n > 0)
	{
		qsort(holds, hold_ids.n, sizeof(int64), int64_cmp);
		nholds = 1;
		for (int i = 1; i < hold_ids.n; i++)
			if (holds[i] != holds[nholds - 1])
				holds[nholds++] = holds[i];
	}

	if (tc.held + ae.held + dc.held + al.held + im.held > 0)
		status = (tc.erased + ae.erased + dc.erased + al.erased + im.erased > 0) ?
			"partly erased: rows under legal hold kept" :
			"not erased: every row is under legal hold";
	else if (tc.erased + ae.erased + dc.erased + al.erased + im.erased > 0)
		status = "erased";
	else
		status = "nothing to erase: no row names the subject";

	memset(nulls, ' ', sizeof(nulls));
	args[0] = PointerGetDatum(legal_basis);
	args[1] = CStringGetTextDatum(status);
	args[2] = Int64GetDatum(tc.erased);
	args[3] = Int64GetDatum(ae.erased);
	args[4] = Int64GetDatum(tc.held);
	args[5] = Int64GetDatum(ae.held);
	args[6] = CStringGetTextDatum(GDPR_HOLD_EXCEPTION);
	nulls[6] = (tc.held + ae.held + dc.held + al.held + im.held > 0) ? ' ' : 'n';
	args[7] = int8_array(holds, nholds);
	args[8] = Int64GetDatum((int64) (tc.nentries + ae.nentries + dc.nentries));
	args[9] = CStringGetTextDatum(hex);
	args[10] = PointerGetDatum(reason);
	args[11] = Int64GetDatum(dc.erased);
	args[12] = Int64GetDatum(dc.held);
	nulls[11] = nulls[12] = has_dc ? ' ' : 'n';
	args[13] = Int64GetDatum(al.erased);
	args[14] = Int64GetDatum(al.held);
	args[15] = Int64GetDatum(im.erased);
	args[16] = Int64GetDatum(im.held);
	nulls[13] = nulls[14] = nulls[15] = nulls[16] = has_al ? ' ' : 'n';
	if (SPI_execute_with_args(insert_event, 17, types, args, nulls, false, 0) != SPI_OK_INSERT_RETURNING ||
		SPI_processed != 1)
		elog(ERROR, "could not record the erasure event");
	event_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	{
		MemoryContext old = MemoryContextSwitchTo(keep);

		result = PointerGetDatum(DatumGetJsonbPCopy(result));
		MemoryContextSwitchTo(old);
	}

	{
		Oid			etypes[5] = {INT8OID, TEXTOID, INT8OID, TEXTARRAYOID, BYTEAOID};

		plan = SPI_prepare("INSERT INTO tool_audit.erasures"
						   " (erase_event_id, table_name, row_id, erased_columns, row_hash_after)"
						   " VALUES ($1, $2, $3, $4, $5)", 5, etypes);
		if (plan == NULL)
			elog(ERROR, "could not prepare the erasures insert");
		for (int t = 0; t < 3; t++)
		{
			TableErasure *te = t == 0 ? &ae : t == 1 ? &dc : &tc;

			for (int i = 0; i < te->nentries; i++)
			{
				Datum		eargs[5];

				CHECK_FOR_INTERRUPTS();
				eargs[0] = Int64GetDatum(event_id);
				eargs[1] = CStringGetTextDatum(te->table);
				eargs[2] = Int64GetDatum(te->row_ids[i]);
				eargs[3] = te->columns[i];
				eargs[4] = ta_hash_datum(te->hashes[i]);
				if (SPI_execute_plan(plan, eargs, NULL, false, 0) != SPI_OK_INSERT)
					elog(ERROR, "could not record an erasure");
			}
		}
	}
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/* Whether any text or jsonb column of the row holds an erasure marker. */
bool
ta_row_has_erasure_marker(const TaLayout *layout, Datum *values, bool *nulls)
{
	for (int i = 0; i < layout->nhashed; i++)
	{
		const TaHashedColumn *c = &layout->hashed[i];

		if ((c->tag == 's' || c->tag == 'j') && !nulls[c->index] &&
			ta_is_erasure_marker(c->tag, values[c->index]))
			return true;
	}
	return false;
}
