/*-------------------------------------------------------------------------
 *
 * database.c
 *	  Walking tool_audit.tool_calls, tool_audit.admin_events and (1.5)
 *	  tool_audit.data_changes: recompute
 *	  every row hash and chain link and compare them with the stored ones
 *	  and with the heads of a digest.
 *
 * The tables are read in one REPEATABLE READ READ ONLY transaction, in
 * binary format (exact values, no dependence on DateStyle or
 * extra_float_digits) and in libpq's single-row mode, so memory stays flat
 * however many rows there are.  Rows arrive ordered by (chain_id,
 * chain_lane, chain_seq), one lane after another.
 *
 * Every row's chain_id must be the one derived from its table and tenant_id
 * (section 4 of the spec); rows of one chain arrive together, so the last
 * tenant's id is kept and most rows cost no extra hash.
 *
 * Per lane two links are kept: one built on each row's stored chain_hash
 * as "prev", so that one edited row is reported once and does not make
 * every later row look broken, and a strict one built only from recomputed
 * row hashes, which is what a digest head must match.
 *
 * verifier/database.c
 *
 *-------------------------------------------------------------------------
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <openssl/crypto.h>

#include "json.h"

/* built-in type OIDs; stable across PostgreSQL versions */
#define BOOLOID			16
#define BYTEAOID		17
#define INT8OID			20
#define INT2OID			21
#define INT4OID			23
#define TEXTOID			25
#define INETOID			869
#define FLOAT8OID		701
#define VARCHAROID		1043
#define TIMESTAMPTZOID	1184
#define UUIDOID			2950
#define JSONBOID		3802

/* microseconds from 1970-01-01 to 2000-01-01, PostgreSQL's epoch */
#define PG_EPOCH_OFFSET_USEC INT64_C(946684800000000)

/* PostgreSQL's on-the-wire address families for inet */
#define PGSQL_AF_INET	2
#define PGSQL_AF_INET6	3

/* the result's first columns, in this order */
enum
{
	RES_ROW_HASH,
	RES_CHAIN_ID,
	RES_CHAIN_LANE,
	RES_CHAIN_SEQ,
	RES_CHAIN_HASH,
	RES_FIRST_DATA
};

static const char *const chain_columns[] = {
	"row_hash", "chain_id", "chain_lane", "chain_seq", "chain_hash"
};

typedef enum ColKind
{
	COL_INT,
	COL_FLOAT8,
	COL_BOOL,
	COL_TEXT,
	COL_ENUM,
	COL_UUID,
	COL_TIMESTAMPTZ,
	COL_INET,
	COL_JSONB
} ColKind;

typedef struct Column
{
	char	   *name;
	size_t		namelen;
	ColKind		kind;
} Column;

typedef struct TableInfo
{
	const char *table;
	Column	   *cols;			/* hashed columns, sorted by name bytes */
	size_t		ncols;
	int			id_col;			/* index of "id" in cols, or -1 */
	int			tenant_col;		/* index of "tenant_id" in cols */
	int			policy_col;		/* of "retention_policy" (1.4 on), or -1 */
	int			time_col;		/* of its time of recording, or -1 */
} TableInfo;

/*
 * A span of lane positions a purge removed (tool_audit.purge_anchors), and
 * whether its purge event backs it: the event is a tool_audit.retention.purge
 * event written after the rows expired whose payload lists the anchor
 * exactly (the event's own row hash is checked by the walk of admin_events).
 */
typedef struct Anchor
{
	int64_t		chain;
	int64_t		lane;
	int64_t		first;
	int64_t		last;
	unsigned char before[HASH_LEN];
	unsigned char after[HASH_LEN];
	char		event[24];
	bool		tied;
} Anchor;

typedef struct Walk
{
	TableInfo  *t;
	Digest	   *digest;
	TableStats *stats;
	RowFields	row;
	Buf			scratch;
	bool		has_marker;		/* the row holds an erasure marker */

	/* the current lane */
	bool		in_lane;
	int64_t		chain;
	int64_t		lane;
	int64_t		expected;		/* next chain_seq */
	bool		prev_ok;
	unsigned char prev[HASH_LEN];	/* stored link of the previous row */
	bool		strict_ok;		/* false after a gap */
	unsigned char strict[HASH_LEN]; /* link from recomputed hashes only */
	size_t		hk;				/* next digest head of this lane */
	size_t		hend;			/* end of this lane's digest heads */
	int64_t		head_position;	/* the digest's last head of this lane, or -1 */
	LaneTime	time;			/* time along the lane (timeorder.c) */

	/* the table's purge anchors in chain order, and the next one to cross */
	Anchor	   *anchors;
	size_t		nanchors;
	size_t		next_anchor;

	bool		have_chain;		/* for counting chains */
	int64_t		last_chain;

	/* the chain id derived for the last tenant and policy seen */
	bool		have_derived;
	bool		derived_null;	/* for a NULL tenant_id */
	Buf			derived_tenant;
	bool		derived_policy_null;
	Buf			derived_policy;
	int64_t		derived_id;
} Walk;

static const unsigned char zero_hash[HASH_LEN];

static PGresult *
exec_ok(PGconn *conn, const char *sql, ExecStatusType want)
{
	PGresult   *res = PQexec(conn, sql);

	if (PQresultStatus(res) != want)
		fatal("query failed: %s", PQerrorMessage(conn));
	return res;
}

static int64_t
get_be(const unsigned char *p, int n)
{
	uint64_t	v = 0;
	int			i;

	for (i = 0; i < n; i++)
		v = (v << 8) | p[i];
	/* sign-extend */
	if (n < 8 && (v & (UINT64_C(1) << (8 * n - 1))))
		v |= ~UINT64_C(0) << (8 * n);
	return (int64_t) v;
}

static int
column_cmp(const void *a, const void *b)
{
	const Column *ca = a;
	const Column *cb = b;

	return bytes_cmp(ca->name, ca->namelen, cb->name, cb->namelen);
}

/*
 * Learn the table's columns from the catalogs.  The hashed columns are all
 * but the five chain columns; a type the canonical encoding does not cover
 * is an error, as it is for the extension.
 */
static void
discover_columns(PGconn *conn, TableInfo *t)
{
	const char *sql =
		"SELECT a.attname, a.atttypid::pg_catalog.int8, t.typtype,"
		"       pg_catalog.format_type(a.atttypid, a.atttypmod)"
		"  FROM pg_catalog.pg_attribute a"
		"  JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid"
		" WHERE a.attrelid OPERATOR(pg_catalog.=)"
		"       (SELECT c.oid FROM pg_catalog.pg_class c"
		"          JOIN pg_catalog.pg_namespace n"
		"            ON n.oid OPERATOR(pg_catalog.=) c.relnamespace"
		"         WHERE n.nspname OPERATOR(pg_catalog.=) 'tool_audit'"
		"           AND c.relname OPERATOR(pg_catalog.=) $1)"
		"   AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped";
	const char *params[1] = {t->table};
	PGresult   *res = PQexecParams(conn, sql, 1, NULL, params, NULL, NULL, 0);
	bool		have_chain[RES_FIRST_DATA] = {false};
	int			ntuples;
	int			i;
	size_t		j;

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		fatal("could not read the columns of tool_audit.%s: %s", t->table,
			  PQerrorMessage(conn));
	ntuples = PQntuples(res);
	if (ntuples == 0)
		fatal("table tool_audit.%s does not exist", t->table);

	t->cols = xmalloc(sizeof(Column) * (size_t) ntuples);
	t->ncols = 0;
	for (i = 0; i < ntuples; i++)
	{
		const char *name = PQgetvalue(res, i, 0);
		long		oid = strtol(PQgetvalue(res, i, 1), NULL, 10);
		char		typtype = PQgetvalue(res, i, 2)[0];
		const char *typname = PQgetvalue(res, i, 3);
		bool		is_int = (oid == INT2OID || oid == INT4OID || oid == INT8OID);
		Column	   *c;
		int			k;

		for (k = 0; k < RES_FIRST_DATA; k++)
		{
			if (strcmp(name, chain_columns[k]) != 0)
				continue;
			if ((k == RES_ROW_HASH || k == RES_CHAIN_HASH) ? oid != BYTEAOID : !is_int)
				fatal("column tool_audit.%s.%s has unexpected type %s",
					  t->table, name, typname);
			have_chain[k] = true;
			break;
		}
		if (k < RES_FIRST_DATA)
			continue;

		c = &t->cols[t->ncols++];
		c->name = xstrndup(name, strlen(name));
		c->namelen = strlen(name);
		if (is_int)
			c->kind = COL_INT;
		else if (oid == FLOAT8OID)
			c->kind = COL_FLOAT8;
		else if (oid == BOOLOID)
			c->kind = COL_BOOL;
		else if (oid == TEXTOID || oid == VARCHAROID)
			c->kind = COL_TEXT;
		else if (typtype == 'e')
			c->kind = COL_ENUM;
		else if (oid == UUIDOID)
			c->kind = COL_UUID;
		else if (oid == TIMESTAMPTZOID)
			c->kind = COL_TIMESTAMPTZ;
		else if (oid == INETOID)
			c->kind = COL_INET;
		else if (oid == JSONBOID)
			c->kind = COL_JSONB;
		else
			fatal("column tool_audit.%s.%s has type %s, which the canonical "
				  "encoding (format 1) does not cover", t->table, name, typname);
	}
	PQclear(res);

	for (i = 0; i < RES_FIRST_DATA; i++)
	{
		if (!have_chain[i])
			fatal("table tool_audit.%s has no column %s: is the hash chain "
				  "installed?", t->table, chain_columns[i]);
	}
	qsort(t->cols, t->ncols, sizeof(Column), column_cmp);
	t->id_col = -1;
	t->tenant_col = -1;
	t->policy_col = -1;
	t->time_col = -1;
	for (j = 0; j < t->ncols; j++)
	{
		if (strcmp(t->cols[j].name, strcmp(t->table, "admin_events") == 0 ?
				   "occurred_at" : "recorded_at") == 0 &&
			t->cols[j].kind == COL_TIMESTAMPTZ)
			t->time_col = (int) j;
		if (strcmp(t->cols[j].name, "retention_policy") == 0)
		{
			if (t->cols[j].kind != COL_TEXT)
				fatal("column tool_audit.%s.retention_policy is not of type text",
					  t->table);
			t->policy_col = (int) j;
		}
		if (strcmp(t->cols[j].name, "id") == 0 && t->cols[j].kind == COL_INT)
			t->id_col = (int) j;
		if (strcmp(t->cols[j].name, "tenant_id") == 0)
		{
			if (t->cols[j].kind != COL_TEXT)
				fatal("column tool_audit.%s.tenant_id is not of type text",
					  t->table);
			t->tenant_col = (int) j;
		}
	}
	/* the chain id is derived from it */
	if (t->tenant_col < 0)
		fatal("table tool_audit.%s has no column tenant_id", t->table);
}

static void
free_table_info(TableInfo *t)
{
	size_t		i;

	for (i = 0; i < t->ncols; i++)
		free(t->cols[i].name);
	free(t->cols);
	t->cols = NULL;
	t->ncols = 0;
}

static void
append_identifier(PGconn *conn, Buf *b, const char *name)
{
	char	   *q = PQescapeIdentifier(conn, name, strlen(name));

	if (q == NULL)
		fatal("could not quote identifier: %s", PQerrorMessage(conn));
	buf_puts(b, q);
	PQfreemem(q);
}

static char *
build_query(PGconn *conn, const TableInfo *t)
{
	Buf			b;
	size_t		i;

	buf_init(&b);
	buf_puts(&b, "SELECT row_hash, chain_id::pg_catalog.int8,"
			 " chain_lane::pg_catalog.int8, chain_seq::pg_catalog.int8,"
			 " chain_hash");
	for (i = 0; i < t->ncols; i++)
	{
		buf_puts(&b, ", ");
		append_identifier(conn, &b, t->cols[i].name);
		/* an enum is hashed as its label */
		if (t->cols[i].kind == COL_ENUM)
			buf_puts(&b, "::pg_catalog.text");
	}
	buf_puts(&b, " FROM tool_audit.");
	append_identifier(conn, &b, t->table);
	buf_puts(&b, " ORDER BY chain_id, chain_lane, chain_seq");
	if (t->id_col >= 0)
		buf_puts(&b, ", id");
	buf_putc(&b, '\0');
	return (char *) b.data;
}

static void
bad_value(const TableInfo *t, const Column *c, const char *what)
{
	fatal("column tool_audit.%s.%s: %s", t->table, c->name, what);
}

/* Encode one non-NULL binary value as the field of section 2. */
static void
add_column(Walk *w, const Column *c, const unsigned char *v, int len)
{
	unsigned char bytes[18];
	size_t		n = 0;
	int64_t		ts;
	JsonValue  *json;
	char		err[256];

	switch (c->kind)
	{
		case COL_INT:
			if (len != 2 && len != 4 && len != 8)
				bad_value(w->t, c, "unexpected binary integer length");
			encode_i64(get_be(v, len), bytes);
			n = 8;
			break;
		case COL_FLOAT8:
			if (len != 8)
				bad_value(w->t, c, "unexpected binary float8 length");
			encode_f64_bits((uint64_t) get_be(v, 8), bytes);
			n = 8;
			break;
		case COL_BOOL:
			if (len != 1)
				bad_value(w->t, c, "unexpected binary boolean length");
			bytes[0] = v[0] ? 1 : 0;
			n = 1;
			break;
		case COL_TEXT:
		case COL_ENUM:
			if (c->kind == COL_TEXT && erasure_marker_text(v, (size_t) len))
				w->has_marker = true;
			row_add(&w->row, c->name, c->namelen, 's', v, (size_t) len);
			return;
		case COL_UUID:
			if (len != 16)
				bad_value(w->t, c, "unexpected binary uuid length");
			memcpy(bytes, v, 16);
			n = 16;
			break;
		case COL_TIMESTAMPTZ:
			if (len != 8)
				bad_value(w->t, c, "unexpected binary timestamptz length");
			ts = get_be(v, 8);
			/* infinities stay at the ends of the int64 range */
			if (ts != INT64_MAX && ts != INT64_MIN &&
				__builtin_add_overflow(ts, PG_EPOCH_OFFSET_USEC, &ts))
				bad_value(w->t, c, "timestamp does not fit the canonical encoding");
			encode_i64(ts, bytes);
			n = 8;
			break;
		case COL_INET:
			if (len < 4 ||
				!((v[0] == PGSQL_AF_INET && v[3] == 4 && len == 8 && v[1] <= 32) ||
				  (v[0] == PGSQL_AF_INET6 && v[3] == 16 && len == 20 && v[1] <= 128)))
				bad_value(w->t, c, "unexpected binary inet value");
			n = encode_inet(v[0] == PGSQL_AF_INET ? 4 : 6, v[1], v + 4, bytes);
			break;
		case COL_JSONB:
			if (len < 1 || v[0] != 1)
				bad_value(w->t, c, "unknown binary jsonb version");
			json = json_parse((const char *) v + 1, (size_t) len - 1, err,
							  sizeof(err));
			if (json == NULL)
				bad_value(w->t, c, err);
			buf_reset(&w->scratch);
			canonical_json(json, &w->scratch);
			json_free(json);
			if (erasure_marker_json(w->scratch.data, w->scratch.len))
				w->has_marker = true;
			row_add(&w->row, c->name, c->namelen, 'j', w->scratch.data,
					w->scratch.len);
			return;
	}
	row_add(&w->row, c->name, c->namelen, c->kind == COL_INT ? 'i' :
			c->kind == COL_FLOAT8 ? 'f' : c->kind == COL_BOOL ? 'b' :
			c->kind == COL_UUID ? 'u' : c->kind == COL_TIMESTAMPTZ ? 't' : 'n',
			bytes, n);
}

static void
recompute_row_hash(Walk *w, PGresult *res, unsigned char out[HASH_LEN])
{
	char		err[256];
	size_t		i;

	row_reset(&w->row);
	w->has_marker = false;
	for (i = 0; i < w->t->ncols; i++)
	{
		int			col = RES_FIRST_DATA + (int) i;

		if (PQgetisnull(res, 0, col))
			continue;
		add_column(w, &w->t->cols[i],
				   (const unsigned char *) PQgetvalue(res, 0, col),
				   PQgetlength(res, 0, col));
	}
	if (!row_hash(&w->row, w->t->table, out, err, sizeof(err)))
		fatal("tool_audit.%s: %s", w->t->table, err);
}

static const char *
row_id(Walk *w, PGresult *res, char buf[24])
{
	int			col;
	int			len;

	if (w->t->id_col < 0)
		return NULL;
	col = RES_FIRST_DATA + w->t->id_col;
	len = PQgetlength(res, 0, col);
	if (PQgetisnull(res, 0, col) || (len != 2 && len != 4 && len != 8))
		return NULL;
	snprintf(buf, 24, "%lld",
			 (long long) get_be((const unsigned char *) PQgetvalue(res, 0, col), len));
	return buf;
}

static bool
stored_hash(PGresult *res, int col, unsigned char out[HASH_LEN])
{
	if (PQgetisnull(res, 0, col) || PQgetlength(res, 0, col) != HASH_LEN)
		return false;
	memcpy(out, PQgetvalue(res, 0, col), HASH_LEN);
	return true;
}

static const char anchor_query[] =
"SELECT a.chain_id, a.chain_lane, a.first_seq, a.last_seq,"
"       pg_catalog.encode(a.link_before, 'hex'), pg_catalog.encode(a.link_after, 'hex'),"
"       a.purge_event_id,"
"       coalesce(e.event_type OPERATOR(pg_catalog.=) 'tool_audit.retention.purge'"
"                AND a.max_expires_at OPERATOR(pg_catalog.<=) e.occurred_at"
"                AND EXISTS (SELECT FROM pg_catalog.jsonb_array_elements("
"                       CASE WHEN pg_catalog.jsonb_typeof(e.payload OPERATOR(pg_catalog.->) 'anchors')"
"                                 OPERATOR(pg_catalog.=) 'array'"
"                            THEN e.payload OPERATOR(pg_catalog.->) 'anchors' ELSE '[]' END) x"
"                     WHERE x OPERATOR(pg_catalog.->>) 'table' OPERATOR(pg_catalog.=) a.table_name"
"                       AND x OPERATOR(pg_catalog.->>) 'chain' OPERATOR(pg_catalog.=) a.chain_id::pg_catalog.text"
"                       AND x OPERATOR(pg_catalog.->>) 'lane' OPERATOR(pg_catalog.=) a.chain_lane::pg_catalog.text"
"                       AND x OPERATOR(pg_catalog.->>) 'first' OPERATOR(pg_catalog.=) a.first_seq::pg_catalog.text"
"                       AND x OPERATOR(pg_catalog.->>) 'last' OPERATOR(pg_catalog.=) a.last_seq::pg_catalog.text"
"                       AND x OPERATOR(pg_catalog.->>) 'link_before' OPERATOR(pg_catalog.=) pg_catalog.encode(a.link_before, 'hex')"
"                       AND x OPERATOR(pg_catalog.->>) 'link_after' OPERATOR(pg_catalog.=) pg_catalog.encode(a.link_after, 'hex')"
"                       AND x OPERATOR(pg_catalog.->>) 'rows' OPERATOR(pg_catalog.=) a.rows_removed::pg_catalog.text),"
"                false)"
"  FROM tool_audit.purge_anchors a"
"  LEFT JOIN tool_audit.admin_events e ON e.id OPERATOR(pg_catalog.=) a.purge_event_id"
" WHERE a.table_name OPERATOR(pg_catalog.=) $1"
"   AND ($2::pg_catalog.text IS NULL OR a.tenant_id OPERATOR(pg_catalog.=) $2)"
" ORDER BY a.chain_id, a.chain_lane, a.first_seq";

/* The table's purge anchors (none in a database from before 1.4). */
static void
load_anchors(PGconn *conn, Walk *w)
{
	PGresult   *res;
	const char *params[2] = {w->t->table, tenant_only};	/* --tenant: its anchors */
	int			i;

	res = exec_ok(conn, "SELECT pg_catalog.to_regclass('tool_audit.purge_anchors') IS NOT NULL",
				  PGRES_TUPLES_OK);
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0 || !tenant_may_read(conn, "purge_anchors"))
	{
		PQclear(res);
		return;
	}
	PQclear(res);
	res = PQexecParams(conn, anchor_query, 2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		fatal("reading tool_audit.purge_anchors failed: %s", PQerrorMessage(conn));
	w->nanchors = (size_t) PQntuples(res);
	w->anchors = w->nanchors ? xmalloc(sizeof(Anchor) * w->nanchors) : NULL;
	for (i = 0; i < PQntuples(res); i++)
	{
		Anchor	   *a = &w->anchors[i];
		const char *ev = PQgetvalue(res, i, 6);

		if (!parse_int64(PQgetvalue(res, i, 0), strlen(PQgetvalue(res, i, 0)), &a->chain) ||
			!parse_int64(PQgetvalue(res, i, 1), strlen(PQgetvalue(res, i, 1)), &a->lane) ||
			!parse_int64(PQgetvalue(res, i, 2), strlen(PQgetvalue(res, i, 2)), &a->first) ||
			!parse_int64(PQgetvalue(res, i, 3), strlen(PQgetvalue(res, i, 3)), &a->last) ||
			!hex_decode(PQgetvalue(res, i, 4), strlen(PQgetvalue(res, i, 4)), a->before, HASH_LEN) ||
			!hex_decode(PQgetvalue(res, i, 5), strlen(PQgetvalue(res, i, 5)), a->after, HASH_LEN) ||
			strlen(ev) >= sizeof(a->event))
			fatal("tool_audit.purge_anchors: malformed anchor");
		memcpy(a->event, ev, strlen(ev) + 1);
		a->tied = strcmp(PQgetvalue(res, i, 7), "t") == 0;
	}
	PQclear(res);
}

static bool
report_missing_head(DigestHead *h)
{
	h->done = true;
	return report_problem(h->table, h->chain, h->lane, h->position, NULL,
						  "rows covered by the digest are missing");
}

/* Heads of the lane that were never reached: their rows are gone. */
static bool
finish_lane(Walk *w)
{
	bool		go_on = true;

	if (!w->in_lane)
		return true;
	for (; w->hk < w->hend && go_on; w->hk++)
	{
		if (!w->digest->heads[w->hk].done)
			go_on = report_missing_head(&w->digest->heads[w->hk]);
	}
	w->in_lane = false;
	return go_on;
}

static void
start_lane(Walk *w, int64_t chain, int64_t lane)
{
	Digest	   *d = w->digest;
	size_t		lo = 0;
	size_t		hi = d->nheads;

	w->in_lane = true;
	w->chain = chain;
	w->lane = lane;
	w->expected = 1;
	w->prev_ok = true;
	memcpy(w->prev, zero_hash, HASH_LEN);
	w->strict_ok = true;
	memcpy(w->strict, zero_hash, HASH_LEN);

	/* first head at or after (table, chain, lane, -inf) */
	while (lo < hi)
	{
		size_t		mid = lo + (hi - lo) / 2;

		if (digest_head_cmp(&d->heads[mid], w->t->table, chain, lane,
							INT64_MIN) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	w->hk = lo;
	w->hend = lo;
	while (w->hend < d->nheads &&
		   strcmp(d->heads[w->hend].table, w->t->table) == 0 &&
		   d->heads[w->hend].chain == chain && d->heads[w->hend].lane == lane)
		w->hend++;
	w->head_position = w->hend > w->hk ? d->heads[w->hend - 1].position : -1;
	memset(&w->time, 0, sizeof(w->time));
}

/* A text column of the row: NULL for SQL NULL (or no such column). */
static const char *
text_value(PGresult *res, int col, size_t *len)
{
	*len = 0;
	if (col < 0 || PQgetisnull(res, 0, RES_FIRST_DATA + col))
		return NULL;
	*len = (size_t) PQgetlength(res, 0, RES_FIRST_DATA + col);
	return PQgetvalue(res, 0, RES_FIRST_DATA + col);
}

/* The row's time of recording, along its lane and before a digest. */
static bool
check_time(Walk *w, PGresult *res, int64_t chain, int64_t lane, int64_t seq,
		   const char *id)
{
	int			col;
	size_t		tenant_len;
	const char *tenant;

	if (w->t->time_col < 0)
		return true;
	col = RES_FIRST_DATA + w->t->time_col;
	if (PQgetisnull(res, 0, col) || PQgetlength(res, 0, col) != 8)
		return true;
	tenant = text_value(res, w->t->tenant_col, &tenant_len);
	return time_check_row(w->t->table, chain, lane, seq, id, tenant, tenant_len, &w->time,
						  get_be((const unsigned char *) PQgetvalue(res, 0, col), 8),
						  w->digest, w->head_position);
}

/*
 * The lane goes across a purged span: the anchor's link before must be the
 * lane's link so far, and the lane goes on from its link after.  A digest
 * head inside the span was removed by that purge when the anchor is tied to
 * its event and the rows before it still hash to what the digest saw.
 */
static bool
cross_anchor(Walk *w, const Anchor *a)
{
	bool		contiguous = a->first == w->expected;
	bool		strict_before = w->strict_ok &&
		CRYPTO_memcmp(w->strict, a->before, HASH_LEN) == 0;
	char		what[200];

	if (a->first > w->expected)
	{
		if (!report_problem(w->t->table, w->chain, w->lane, w->expected, NULL,
							"row missing"))
			return false;
	}
	else if (a->first < w->expected)
	{
		snprintf(what, sizeof(what),
				 "purge anchor (admin event %s) overlaps positions already seen",
				 a->event);
		if (!report_problem(w->t->table, w->chain, w->lane, a->first, NULL, what))
			return false;
	}
	else if (w->prev_ok && CRYPTO_memcmp(w->prev, a->before, HASH_LEN) != 0)
	{
		snprintf(what, sizeof(what),
				 "purge anchor (admin event %s) does not continue the lane", a->event);
		if (!report_problem(w->t->table, w->chain, w->lane, a->first, NULL, what))
			return false;
	}
	if (!a->tied)
	{
		snprintf(what, sizeof(what),
				 "purge anchor not backed by its purge event (admin event %s)", a->event);
		if (!report_problem(w->t->table, w->chain, w->lane, a->first, NULL, what))
			return false;
	}

	for (; w->hk < w->hend; w->hk++)
	{
		DigestHead *h = &w->digest->heads[w->hk];

		if (h->position > a->last)
			break;
		if (h->done)
			continue;
		if (h->position < a->first || !a->tied || !contiguous || !strict_before)
		{
			if (!report_missing_head(h))
				return false;
			continue;
		}
		h->done = true;
		w->digest->purged++;
		snprintf(what, sizeof(what),
				 "removed by sanctioned purge (admin event %s): positions %" PRId64 " to %" PRId64,
				 a->event, a->first, a->last);
		report_purged(h->table, h->chain, h->lane, h->position, what);
	}

	if (!a->tied || !contiguous || !strict_before)
		w->strict_ok = false;
	memcpy(w->strict, a->after, HASH_LEN);
	memcpy(w->prev, a->after, HASH_LEN);
	w->prev_ok = true;
	if (a->last >= w->expected)
		w->expected = (a->last == INT64_MAX) ? INT64_MAX : a->last + 1;
	return true;
}

/*
 * Cross the anchors before (chain, lane, seq): those of lanes before it,
 * each such lane walked across its anchors alone, then those of its own
 * lane that start at or before seq.  bounded false: every anchor left.
 */
static bool
cross_anchors_before(Walk *w, bool bounded, int64_t chain, int64_t lane, int64_t seq)
{
	while (w->next_anchor < w->nanchors)
	{
		const Anchor *a = &w->anchors[w->next_anchor];

		if (bounded && (a->chain > chain || (a->chain == chain && a->lane > lane) ||
						(a->chain == chain && a->lane == lane && a->first > seq)))
			break;
		if (!w->in_lane || a->chain != w->chain || a->lane != w->lane)
		{
			if (!finish_lane(w))
				return false;
			start_lane(w, a->chain, a->lane);
			if (!w->have_chain || a->chain != w->last_chain)
				w->stats->chains++;
			w->have_chain = true;
			w->last_chain = a->chain;
		}
		w->next_anchor++;
		if (!cross_anchor(w, a))
			return false;
	}
	return true;
}

/* Compare the strict link at this position with the digest's heads. */
static bool
check_heads(Walk *w, int64_t seq, const char *id)
{
	bool		go_on = true;

	for (; w->hk < w->hend && go_on; w->hk++)
	{
		DigestHead *h = &w->digest->heads[w->hk];

		if (h->position > seq)
			break;
		if (h->done)
			continue;
		if (h->position < seq || !w->strict_ok)
			go_on = report_missing_head(h);
		else
		{
			h->done = true;
			if (CRYPTO_memcmp(w->strict, h->hash, HASH_LEN) == 0)
				w->digest->checked++;
			else
				go_on = report_problem(h->table, h->chain, h->lane,
									   h->position, id,
									   "row changed since the digest");
		}
	}
	return go_on;
}

static bool
same_text(bool was_null, const Buf *was, const char *s, size_t len)
{
	if (s == NULL || was_null)
		return s == NULL && was_null;
	return was->len == len && memcmp(was->data, s, len) == 0;
}

/*
 * The chain id this row belongs in, from its table, tenant_id and
 * retention_policy.
 */
static int64_t
derived_chain_id(Walk *w, PGresult *res)
{
	size_t		len,
				plen;
	const char *tenant = text_value(res, w->t->tenant_col, &len);
	const char *policy = text_value(res, w->t->policy_col, &plen);
	char		err[256];

	if (w->have_derived && same_text(w->derived_null, &w->derived_tenant, tenant, len) &&
		same_text(w->derived_policy_null, &w->derived_policy, policy, plen))
		return w->derived_id;
	if (!chain_id(w->t->table, tenant, len, policy, plen, &w->derived_id, err, sizeof(err)))
		fatal("tool_audit.%s: %s", w->t->table, err);
	w->have_derived = true;
	w->derived_null = (tenant == NULL);
	buf_reset(&w->derived_tenant);
	if (tenant != NULL)
		buf_append(&w->derived_tenant, tenant, len);
	w->derived_policy_null = (policy == NULL);
	buf_reset(&w->derived_policy);
	if (policy != NULL)
		buf_append(&w->derived_policy, policy, plen);
	return w->derived_id;
}

/* Check one row; false if the run should stop. */
static bool
check_row(Walk *w, PGresult *res)
{
	unsigned char row[HASH_LEN];
	unsigned char stored_row[HASH_LEN];
	unsigned char stored_link[HASH_LEN];
	unsigned char link[HASH_LEN];
	bool		stored_link_ok;
	bool		in_chain;
	bool		altered;
	int64_t		chain = POS_NONE;
	int64_t		lane = POS_NONE;
	int64_t		seq = POS_NONE;
	char		idbuf[24];
	const char *id = row_id(w, res, idbuf);
	int64_t		id_value;
	const unsigned char *erased = NULL;
	size_t		tenant_len;
	const char *tenant = text_value(res, w->t->tenant_col, &tenant_len);

	if (!tenant_wanted(tenant, tenant_len))
		return true;			/* --tenant: another tenant's row */
	w->stats->rows++;
	recompute_row_hash(w, res, row);
	if (id != NULL && parse_int64(id, strlen(id), &id_value))
		erased = erasure_hash_after(w->t->table, id_value);

	in_chain = true;
	if (!PQgetisnull(res, 0, RES_CHAIN_ID) && PQgetlength(res, 0, RES_CHAIN_ID) == 8)
		chain = get_be((const unsigned char *) PQgetvalue(res, 0, RES_CHAIN_ID), 8);
	else
		in_chain = false;
	if (!PQgetisnull(res, 0, RES_CHAIN_LANE) && PQgetlength(res, 0, RES_CHAIN_LANE) == 8)
		lane = get_be((const unsigned char *) PQgetvalue(res, 0, RES_CHAIN_LANE), 8);
	else
		in_chain = false;
	if (!PQgetisnull(res, 0, RES_CHAIN_SEQ) && PQgetlength(res, 0, RES_CHAIN_SEQ) == 8)
		seq = get_be((const unsigned char *) PQgetvalue(res, 0, RES_CHAIN_SEQ), 8);
	else
		in_chain = false;

	if (in_chain && chain != derived_chain_id(w, res))
	{
		if (!report_problem(w->t->table, chain, lane, seq, id,
							"row in the wrong chain"))
			return false;
	}
	altered = (!stored_hash(res, RES_ROW_HASH, stored_row) ||
			   CRYPTO_memcmp(erased ? erased : stored_row, row, HASH_LEN) != 0);
	/* a properly erased row links by the row hash it was written with */
	if (erased && !altered)
		memcpy(row, stored_row, HASH_LEN);
	if (!erased && w->has_marker)
	{
		if (!report_problem(w->t->table, chain, lane, seq, id,
							"erasure marker without a verified erasure"))
			return false;
		altered = true;
	}
	else if (altered)
	{
		if (!report_problem(w->t->table, chain, lane, seq, id,
							erased ? "row altered after its erasure" : "row altered"))
			return false;
	}
	if (!in_chain)
		return report_problem(w->t->table, chain, lane, seq, id,
							  "row not in a chain");

	/* a new lane? */
	if (!w->in_lane || chain != w->chain || lane != w->lane)
	{
		if (w->in_lane && (chain < w->chain || (chain == w->chain && lane < w->lane)))
			fatal("tool_audit.%s: rows did not arrive in chain order", w->t->table);
		/* the rest of the lane's anchors, and lanes left with anchors only */
		if (!cross_anchors_before(w, true, chain, lane, INT64_MIN))
			return false;
		if (!w->in_lane || chain != w->chain || lane != w->lane)
		{
			if (!finish_lane(w))
				return false;
			start_lane(w, chain, lane);
			if (!w->have_chain || chain != w->last_chain)
				w->stats->chains++;
			w->have_chain = true;
			w->last_chain = chain;
		}
	}
	/* spans purged before this row */
	if (!cross_anchors_before(w, true, chain, lane, seq))
		return false;

	if (seq < w->expected)
		return report_problem(w->t->table, chain, lane, seq, id,
							  seq < 1 ? "invalid position" : "duplicate position");
	if (seq > w->expected)
	{
		/* rows expected..seq-1 are gone: this row's prev is unknown */
		if (!report_problem(w->t->table, chain, lane, w->expected, NULL,
							"row missing"))
			return false;
		w->prev_ok = false;
		w->strict_ok = false;
	}

	if (!check_time(w, res, chain, lane, seq, id))
		return false;

	stored_link_ok = stored_hash(res, RES_CHAIN_HASH, stored_link);
	if (w->prev_ok)
	{
		link_hash(chain, (uint32_t) lane, (uint64_t) seq, w->prev, row, link);
		/* an altered row's link cannot match: it is reported once */
		if (!altered &&
			(!stored_link_ok || CRYPTO_memcmp(link, stored_link, HASH_LEN) != 0))
		{
			if (!report_problem(w->t->table, chain, lane, seq, id,
								"chain link broken (reordered or edited)"))
				return false;
		}
	}
	if (w->strict_ok)
		link_hash(chain, (uint32_t) lane, (uint64_t) seq, w->strict, row,
				  w->strict);
	if (!check_heads(w, seq, id))
		return false;

	/* the next row links to this row's stored link, so errors don't cascade */
	if (stored_link_ok)
		memcpy(w->prev, stored_link, HASH_LEN);
	else if (w->prev_ok)
		memcpy(w->prev, link, HASH_LEN);
	w->prev_ok = stored_link_ok || w->prev_ok;
	w->expected = (seq == INT64_MAX) ? INT64_MAX : seq + 1;
	return true;
}

/* Heads of this table whose lanes had no rows at all. */
static bool
finish_table(Walk *w)
{
	size_t		i;

	if (!cross_anchors_before(w, false, 0, 0, 0) || !finish_lane(w))
		return false;
	for (i = 0; i < w->digest->nheads; i++)
	{
		DigestHead *h = &w->digest->heads[i];

		if (!h->done && strcmp(h->table, w->t->table) == 0 &&
			!report_missing_head(h))
			return false;
	}
	return true;
}

/* Walk one table; false if the run should stop. */
static bool
walk_table(PGconn *conn, TableInfo *t, Digest *digest, TableStats *stats)
{
	Walk		w;
	char	   *sql;
	PGresult   *res;
	bool		go_on = true;
	bool		complete = false;

	discover_columns(conn, t);
	sql = build_query(conn, t);
	memset(&w, 0, sizeof(w));
	w.t = t;
	w.digest = digest;
	w.stats = stats;
	row_init(&w.row);
	buf_init(&w.scratch);
	buf_init(&w.derived_tenant);
	buf_init(&w.derived_policy);
	load_anchors(conn, &w);

	if (!PQsendQueryParams(conn, sql, 0, NULL, NULL, NULL, NULL, 1))
		fatal("could not send query: %s", PQerrorMessage(conn));
	if (!PQsetSingleRowMode(conn))
		fatal("could not enter single-row mode");
	free(sql);

	while (go_on && (res = PQgetResult(conn)) != NULL)
	{
		switch (PQresultStatus(res))
		{
			case PGRES_SINGLE_TUPLE:
				if (PQnfields(res) != RES_FIRST_DATA + (int) t->ncols)
					fatal("unexpected number of result columns");
				go_on = check_row(&w, res);
				break;
			case PGRES_TUPLES_OK:
				complete = true;
				break;
			default:
				fatal("reading tool_audit.%s failed: %s", t->table,
					  PQerrorMessage(conn));
		}
		PQclear(res);
	}
	if (go_on && !complete)
		fatal("reading tool_audit.%s ended early", t->table);
	if (go_on)
		go_on = finish_table(&w);

	row_free(&w.row);
	free(w.anchors);
	buf_free(&w.scratch);
	buf_free(&w.derived_tenant);
	buf_free(&w.derived_policy);
	free_table_info(t);
	return go_on;
}

static void
check_database_name(PGconn *conn, const Digest *digest)
{
	PGresult   *res;

	if (digest->database == NULL)
		return;
	res = exec_ok(conn, "SELECT pg_catalog.current_database()", PGRES_TUPLES_OK);
	if (strcmp(PQgetvalue(res, 0, 0), digest->database) != 0)
		fprintf(stderr, "tool_audit_verify: note: the digest was taken in "
				"database \"%s\", this is \"%s\"\n",
				digest->database, PQgetvalue(res, 0, 0));
	PQclear(res);
}

/*
 * data_changes came with 1.5: a database whose extension is at an earlier
 * version has none, and is verified without it.  Missing from a database
 * at 1.5 or later, it is a problem (it was dropped).
 */
static bool
table_predates_schema(PGconn *conn, const char *table)
{
	const char *sql =
		"SELECT pg_catalog.to_regclass(pg_catalog.quote_ident('tool_audit') OPERATOR(pg_catalog.||) '.'"
		"                              OPERATOR(pg_catalog.||) pg_catalog.quote_ident($1)) IS NULL"
		"   AND (SELECT e.extversion FROM pg_catalog.pg_extension e"
		"         WHERE e.extname OPERATOR(pg_catalog.=) 'tool_audit')"
		"       OPERATOR(pg_catalog.=) ANY ('{1.0,1.1,1.2,1.3,1.4}'::pg_catalog.text[])";
	const char *params[1] = {table};
	PGresult   *res;
	bool		predates;

	if (strcmp(table, "data_changes") != 0)
		return false;
	res = PQexecParams(conn, sql, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
		fatal("could not read the extension's version: %s", PQerrorMessage(conn));
	predates = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return predates;
}

/*
 * Verify the audit tables; stats gets one entry per table.  Returns false
 * if a problem stopped the run early.
 */
bool
verify_database(const char *conninfo, Digest *digest, TableStats *stats,
				int nstats)
{
	PGconn	   *conn = PQconnectdb(conninfo);
	bool		go_on = true;
	int			i;
	size_t		h;

	if (PQstatus(conn) != CONNECTION_OK)
		fatal("could not connect: %s", PQerrorMessage(conn));
	if (PQsetClientEncoding(conn, "UTF8") != 0)
		fatal("could not set client_encoding to UTF8: %s", PQerrorMessage(conn));

	PQclear(exec_ok(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
					PGRES_COMMAND_OK));
	PQclear(exec_ok(conn, "SET LOCAL statement_timeout = 0", PGRES_COMMAND_OK));
	check_database_name(conn, digest);
	go_on = !tenant_may_read(conn, "erasures") || erasures_load(conn);

	for (i = 0; i < nstats && go_on; i++)
	{
		TableInfo	t;

		memset(&t, 0, sizeof(t));
		t.table = stats[i].table;
		if (table_predates_schema(conn, t.table))
			continue;
		go_on = check_fork_constraint(conn, t.table);
		if (go_on)
			go_on = walk_table(conn, &t, digest, &stats[i]);
	}

	/* heads naming a table that is not an audit table */
	for (h = 0; h < digest->nheads && go_on; h++)
	{
		DigestHead *head = &digest->heads[h];

		if (!head->done)
		{
			head->done = true;
			go_on = report_problem(head->table, head->chain, head->lane,
								   head->position, NULL,
								   "rows covered by the digest are missing");
		}
	}

	erasures_free();
	if (go_on)
		go_on = security_state_check(conn, digest);
	if (go_on)
		PQclear(exec_ok(conn, "COMMIT", PGRES_COMMAND_OK));
	/* when stopping early this abandons the running query */
	PQfinish(conn);
	return go_on;
}
