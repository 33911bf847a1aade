/*-------------------------------------------------------------------------
 *
 * erasure.c
 *	  Erased rows (tool_audit 1.4): which rows tool_audit.erase_subject()
 *	  changed, and the row hash each must have now.
 *
 * An erased row keeps the row_hash it was written with (its links use it)
 * and is checked against the row_hash_after of its entry in
 * tool_audit.erasures instead.  An entry counts only if its
 * tool_audit.retention.erase admin event commits to it: the event's payload
 * member "erasures_hash" is the SHA-256 of all the entries naming the event
 * (doc/canonical-encoding.md, "Erasures"), recomputed here.  The event row
 * itself is checked by the walk like any other row.  Entries naming no such
 * event, and events whose entries do not hash to their commitment, are
 * problems; their entries are not used, so the rows they would cover are
 * reported by the walk (as altered, or as carrying an erasure marker that
 * no verified erasure lists).
 *
 * verifier/erasure.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "json.h"

#define ERASURES_DOMAIN "tool_audit erasures 1"
#define MARKER_TEXT "tool_audit:erased"
#define MARKER_JSON "{\"tool_audit:erased\":true}"

typedef struct Entry
{
	int			table;			/* 0: admin_events, 1: data_changes, 2: tool_calls */
	int64_t		row_id;
	int64_t		event_id;
	unsigned char hash_after[HASH_LEN];
} Entry;

/* the accepted entries, sorted by (table, row_id, event_id) */
static Entry *entries;
static size_t nentries;

static int
table_number(const char *table)
{
	if (strcmp(table, "tool_calls") == 0)
		return 2;
	return strcmp(table, "data_changes") == 0 ? 1 : 0;
}

static int
entry_cmp(const void *a, const void *b)
{
	const Entry *x = a;
	const Entry *y = b;

	if (x->table != y->table)
		return x->table - y->table;
	if (x->row_id != y->row_id)
		return x->row_id < y->row_id ? -1 : 1;
	return (x->event_id > y->event_id) - (x->event_id < y->event_id);
}

/*
 * One entry of the erasures commitment: table, row id, the erased column
 * names (a JSON array of strings), row_hash_after.
 */
void
erasure_preimage_add(Buf *pre, const char *table, int64_t row_id,
					 const struct JsonValue *columns, const unsigned char after[HASH_LEN])
{
	size_t		i;

	buf_putc(pre, (unsigned char) strlen(table));
	buf_puts(pre, table);
	buf_put_u64(pre, (uint64_t) row_id);
	buf_put_u32(pre, (uint32_t) columns->count);
	for (i = 0; i < columns->count; i++)
	{
		const JsonValue *name = columns->items[i];
		size_t		len = name->len > 254 ? 254 : name->len;

		if (name->kind != JSON_STRING)
		{
			buf_putc(pre, 0xFF);
			continue;
		}
		buf_putc(pre, (unsigned char) len);
		buf_append(pre, name->str, len);
	}
	buf_append(pre, after, HASH_LEN);
}

void
erasure_preimage_begin(Buf *pre)
{
	buf_append(pre, ERASURES_DOMAIN, sizeof(ERASURES_DOMAIN));	/* with its 0 */
}

typedef struct Event
{
	int64_t		id;
	bool		has_hash;
	unsigned char committed[HASH_LEN];
	Buf			pre;			/* the entries' preimage */
	size_t		count;
	bool		ok;
} Event;

static Event *
find_event(Event *events, size_t n, int64_t id)
{
	size_t		lo = 0,
				hi = n;

	while (lo < hi)
	{
		size_t		mid = lo + (hi - lo) / 2;

		if (events[mid].id == id)
			return &events[mid];
		if (events[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static PGresult *
query(PGconn *conn, const char *sql)
{
	PGresult   *res = PQexec(conn, sql);

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		fatal("query failed: %s", PQerrorMessage(conn));
	return res;
}

/*
 * Read the erasures and their events; false if a problem stopped the run.
 * A database without tool_audit.erasures (before 1.4) has none.
 */
bool
erasures_load(PGconn *conn)
{
	PGresult   *res;
	Event	   *events;
	size_t		nevents;
	size_t		i;
	bool		go_on = true;
	char		idbuf[24];

	res = query(conn, "SELECT pg_catalog.to_regclass('tool_audit.erasures') IS NOT NULL");
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
	{
		PQclear(res);
		return true;
	}
	PQclear(res);

	res = query(conn,
				"SELECT a.id, a.payload OPERATOR(pg_catalog.->>) 'erasures_hash'"
				"  FROM tool_audit.admin_events a"
				" WHERE a.event_type OPERATOR(pg_catalog.=) 'tool_audit.retention.erase'"
				" ORDER BY a.id");
	nevents = (size_t) PQntuples(res);
	events = xmalloc(sizeof(Event) * (nevents ? nevents : 1));
	for (i = 0; i < nevents; i++)
	{
		const char *hex = PQgetvalue(res, (int) i, 1);

		if (!parse_int64(PQgetvalue(res, (int) i, 0), strlen(PQgetvalue(res, (int) i, 0)),
						 &events[i].id))
			fatal("tool_audit.admin_events: unexpected id");
		events[i].has_hash = !PQgetisnull(res, (int) i, 1) &&
			strlen(hex) == 2 * HASH_LEN && strspn(hex, "0123456789abcdef") == 2 * HASH_LEN &&
			hex_decode(hex, 2 * HASH_LEN, events[i].committed, HASH_LEN);
		buf_init(&events[i].pre);
		erasure_preimage_begin(&events[i].pre);
		events[i].count = 0;
	}
	PQclear(res);

	res = query(conn,
				"SELECT e.erase_event_id, e.table_name, e.row_id,"
				"       pg_catalog.array_to_json(e.erased_columns),"
				"       pg_catalog.encode(e.row_hash_after, 'hex')"
				"  FROM tool_audit.erasures e"
				" ORDER BY e.erase_event_id, e.table_name COLLATE \"C\", e.row_id");
	entries = xmalloc(sizeof(Entry) * (PQntuples(res) ? (size_t) PQntuples(res) : 1));
	nentries = 0;
	/* first pass: each event's entries into its preimage */
	for (i = 0; i < (size_t) PQntuples(res) && go_on; i++)
	{
		int64_t		event_id,
					row_id;
		const char *table = PQgetvalue(res, (int) i, 1);
		const char *hex = PQgetvalue(res, (int) i, 4);
		unsigned char after[HASH_LEN];
		Event	   *ev;
		JsonValue  *columns;
		char		err[256];

		if (!parse_int64(PQgetvalue(res, (int) i, 0), strlen(PQgetvalue(res, (int) i, 0)), &event_id) ||
			!parse_int64(PQgetvalue(res, (int) i, 2), strlen(PQgetvalue(res, (int) i, 2)), &row_id))
			fatal("tool_audit.erasures: unexpected id");
		ev = find_event(events, nevents, event_id);
		if (ev == NULL)
		{
			char		problem[160];

			snprintf(problem, sizeof(problem),
					 "erasure entry names admin event %lld, which is not an erasure event",
					 (long long) event_id);
			snprintf(idbuf, sizeof(idbuf), "%lld", (long long) row_id);
			go_on = report_problem(table, POS_NONE, POS_NONE, POS_NONE, idbuf, problem);
			continue;
		}
		if (strlen(hex) != 2 * HASH_LEN || !hex_decode(hex, strlen(hex), after, HASH_LEN))
			memset(after, 0, HASH_LEN);	/* cannot match any commitment */
		columns = json_parse(PQgetvalue(res, (int) i, 3), strlen(PQgetvalue(res, (int) i, 3)),
							 err, sizeof(err));
		if (columns == NULL || columns->kind != JSON_ARRAY)
			fatal("tool_audit.erasures: erased_columns is not an array");
		erasure_preimage_add(&ev->pre, table, row_id, columns, after);
		json_free(columns);
		ev->count++;
	}
	for (i = 0; i < nevents && go_on; i++)
	{
		unsigned char got[HASH_LEN];

		sha256(events[i].pre.data, events[i].pre.len, got);
		events[i].ok = events[i].has_hash && memcmp(got, events[i].committed, HASH_LEN) == 0;
		if (!events[i].ok)
		{
			snprintf(idbuf, sizeof(idbuf), "%lld", (long long) events[i].id);
			go_on = report_problem("admin_events", POS_NONE, POS_NONE, POS_NONE, idbuf,
								   "erasure event does not commit to the erasure entries naming it");
		}
	}
	/* second pass: the entries of events that commit to them */
	for (i = 0; i < (size_t) PQntuples(res) && go_on; i++)
	{
		Entry	   *e = &entries[nentries];
		Event	   *ev;

		(void) parse_int64(PQgetvalue(res, (int) i, 0), strlen(PQgetvalue(res, (int) i, 0)), &e->event_id);
		ev = find_event(events, nevents, e->event_id);
		if (ev == NULL || !ev->ok)
			continue;
		e->table = table_number(PQgetvalue(res, (int) i, 1));
		(void) parse_int64(PQgetvalue(res, (int) i, 2), strlen(PQgetvalue(res, (int) i, 2)), &e->row_id);
		if (!hex_decode(PQgetvalue(res, (int) i, 4), 2 * HASH_LEN, e->hash_after, HASH_LEN))
			continue;
		nentries++;
	}
	PQclear(res);
	for (i = 0; i < nevents; i++)
		buf_free(&events[i].pre);
	free(events);
	qsort(entries, nentries, sizeof(Entry), entry_cmp);
	return go_on;
}

/* The row hash an erased row must have now, or NULL if it was not erased. */
const unsigned char *
erasure_hash_after(const char *table, int64_t row_id)
{
	int			t = table_number(table);
	size_t		lo = 0,
				hi = nentries;
	const Entry *found = NULL;

	/* the last entry of (table, row_id): the latest erasure */
	while (lo < hi)
	{
		size_t		mid = lo + (hi - lo) / 2;
		const Entry *e = &entries[mid];

		if (e->table < t || (e->table == t && e->row_id <= row_id))
		{
			if (e->table == t && e->row_id == row_id)
				found = e;
			lo = mid + 1;
		}
		else
			hi = mid;
	}
	return found ? found->hash_after : NULL;
}

void
erasures_free(void)
{
	free(entries);
	entries = NULL;
	nentries = 0;
}

/* Whether a text value, or a jsonb value's canonical JSON, is an erasure marker. */
bool
erasure_marker_text(const void *v, size_t len)
{
	return len == strlen(MARKER_TEXT) && memcmp(v, MARKER_TEXT, len) == 0;
}

bool
erasure_marker_json(const void *canonical, size_t len)
{
	return len == strlen(MARKER_JSON) && memcmp(canonical, MARKER_JSON, len) == 0;
}
