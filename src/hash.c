/*-------------------------------------------------------------------------
 *
 * hash.c
 *		What is hashed, byte by byte, as doc/canonical-encoding.md specifies
 *		it: canonical JSON (section 3), the row hash (section 2), chain ids
 *		and links (section 4).  SHA-256 itself is crypto.c's.
 *
 * A row is hashed from its column values, never from a type's text output:
 * timestamps as microseconds since the Unix epoch, numbers as big-endian
 * binary, jsonb as canonical JSON (keys in bytewise order, numbers as exact
 * decimals without exponent).  Nothing depends on TimeZone, DateStyle,
 * extra_float_digits, client_encoding, the table's column order or the
 * server version's jsonb output.  Which columns are hashed, in which order
 * and with which type tags is the table's layout (layout.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>

#include "access/htup_details.h"
#include "access/table.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/inet.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "catalog.h"
#include "hash.h"

#define ROW_HASH_DOMAIN		"tool_audit row 1"
#define CHAIN_DOMAIN		"tool_audit chain 1"
#define CHAIN_DOMAIN_2		"tool_audit chain 2"
#define LINK_DOMAIN			"tool_audit link 1"

/* ---- canonical JSON ---- */

/* Text stored in the server encoding, as UTF-8. */
void
ta_append_utf8(StringInfo buf, const char *s, int len)
{
	char	   *conv;

	if (GetDatabaseEncoding() == PG_UTF8 || len == 0)
	{
		appendBinaryStringInfo(buf, s, len);
		return;
	}
	conv = pg_server_to_any(s, len, PG_UTF8);
	/* unconverted (SQL_ASCII), it is the input itself: not terminated */
	if (conv == s)
		appendBinaryStringInfo(buf, s, len);
	else
	{
		appendBinaryStringInfo(buf, conv, strlen(conv));
		pfree(conv);
	}
}

/* Escape a string whose bytes are UTF-8 already (section 3 of the spec). */
static void
canon_string_utf8(StringInfo buf, const char *s, int len)
{
	static const char hex[] = "0123456789abcdef";
	int			start = 0;

	appendStringInfoCharMacro(buf, '"');
	for (int i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];
		const char *esc = NULL;
		char		u[6];

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		appendBinaryStringInfo(buf, s + start, i - start);
		start = i + 1;
		switch (c)
		{
			case '"':
				esc = "\\\"";
				break;
			case '\\':
				esc = "\\\\";
				break;
			case '\b':
				esc = "\\b";
				break;
			case '\t':
				esc = "\\t";
				break;
			case '\n':
				esc = "\\n";
				break;
			case '\f':
				esc = "\\f";
				break;
			case '\r':
				esc = "\\r";
				break;
			default:
				memcpy(u, "\\u00", 4);
				u[4] = hex[c >> 4];
				u[5] = hex[c & 0xF];
				appendBinaryStringInfo(buf, u, 6);
				continue;
		}
		appendStringInfoString(buf, esc);
	}
	appendBinaryStringInfo(buf, s + start, len - start);
	appendStringInfoCharMacro(buf, '"');
}

/* A string in the server encoding. */
static void
canon_string(StringInfo buf, const char *s, int len)
{
	StringInfoData utf8;

	if (GetDatabaseEncoding() == PG_UTF8)
	{
		canon_string_utf8(buf, s, len);
		return;
	}
	initStringInfo(&utf8);
	ta_append_utf8(&utf8, s, len);
	canon_string_utf8(buf, utf8.data, utf8.len);
	pfree(utf8.data);
}

typedef struct CanonMember
{
	char	   *key;			/* UTF-8 */
	int			keylen;
	JsonbValue	value;
} CanonMember;

static int
member_cmp(const void *a, const void *b)
{
	const CanonMember *x = (const CanonMember *) a;
	const CanonMember *y = (const CanonMember *) b;
	int			r = memcmp(x->key, y->key, Min(x->keylen, y->keylen));

	if (r != 0)
		return r;
	return (x->keylen > y->keylen) - (x->keylen < y->keylen);
}

static void canon_container(StringInfo buf, JsonbContainer *c);

static void
canon_value(StringInfo buf, JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			appendBinaryStringInfo(buf, "null", 4);
			break;
		case jbvBool:
			if (v->val.boolean)
				appendBinaryStringInfo(buf, "true", 4);
			else
				appendBinaryStringInfo(buf, "false", 5);
			break;
		case jbvString:
			canon_string(buf, v->val.string.val, v->val.string.len);
			break;
		case jbvNumeric:
			{
				/* exact decimal, trailing fraction zeros and "." removed */
				char	   *s = numeric_normalize(v->val.numeric);

				appendStringInfoString(buf, s);
				pfree(s);
				break;
			}
		case jbvBinary:
			canon_container(buf, v->val.binary.data);
			break;
		default:
			elog(ERROR, "unexpected jsonb value type %d", (int) v->type);
	}
}

static void
canon_container(StringInfo buf, JsonbContainer *c)
{
	JsonbIterator *it = JsonbIteratorInit(c);
	JsonbValue	v;
	JsonbIteratorToken r;
	bool		first = true;

	check_stack_depth();
	CHECK_FOR_INTERRUPTS();
	r = JsonbIteratorNext(&it, &v, true);
	if (r == WJB_BEGIN_ARRAY)
	{
		bool		raw = v.val.array.rawScalar;

		if (!raw)
			appendStringInfoCharMacro(buf, '[');
		while ((r = JsonbIteratorNext(&it, &v, true)) == WJB_ELEM)
		{
			if (!first)
				appendStringInfoCharMacro(buf, ',');
			first = false;
			canon_value(buf, &v);
		}
		if (!raw)
			appendStringInfoCharMacro(buf, ']');
	}
	else if (r == WJB_BEGIN_OBJECT)
	{
		int			n = v.val.object.nPairs;
		CanonMember *m = palloc(sizeof(CanonMember) * Max(n, 1));
		int			i = 0;

		while ((r = JsonbIteratorNext(&it, &v, true)) == WJB_KEY)
		{
			Assert(i < n);
			/* keys are sorted as UTF-8: point into the jsonb when it is */
			if (GetDatabaseEncoding() == PG_UTF8)
			{
				m[i].key = v.val.string.val;
				m[i].keylen = v.val.string.len;
			}
			else
			{
				StringInfoData key;

				initStringInfo(&key);
				ta_append_utf8(&key, v.val.string.val, v.val.string.len);
				m[i].key = key.data;
				m[i].keylen = key.len;
			}
			r = JsonbIteratorNext(&it, &m[i].value, true);
			Assert(r == WJB_VALUE);
			i++;
		}
		qsort(m, i, sizeof(CanonMember), member_cmp);
		appendStringInfoCharMacro(buf, '{');
		for (int j = 0; j < i; j++)
		{
			if (j > 0)
				appendStringInfoCharMacro(buf, ',');
			canon_string_utf8(buf, m[j].key, m[j].keylen);
			appendStringInfoCharMacro(buf, ':');
			canon_value(buf, &m[j].value);
		}
		appendStringInfoCharMacro(buf, '}');
	}
	else
		elog(ERROR, "unexpected jsonb iterator token %d", (int) r);
}

/*
 * tool_audit.canonical_json(jsonb) RETURNS text
 *
 * The canonical JSON of section 3 of doc/canonical-encoding.md, in the
 * database encoding: what a row hash covers for a jsonb column.
 */
PG_FUNCTION_INFO_V1(canonical_json);
Datum
canonical_json(PG_FUNCTION_ARGS)
{
	Jsonb	   *j = PG_GETARG_JSONB_P(0);
	StringInfoData buf;
	char	   *out;

	initStringInfo(&buf);
	canon_container(&buf, &j->root);
	out = pg_any_to_server(buf.data, buf.len, PG_UTF8);
	PG_RETURN_TEXT_P(cstring_to_text(out));
}

/* ---- the row hash ---- */

static void
put_u32(StringInfo buf, uint32 v)
{
	unsigned char b[4] = {v >> 24, v >> 16, v >> 8, v};

	appendBinaryStringInfo(buf, (char *) b, 4);
}

static void
put_u64(StringInfo buf, uint64 v)
{
	put_u32(buf, (uint32) (v >> 32));
	put_u32(buf, (uint32) v);
}

static void
set_u32_at(StringInfo buf, int offset, uint32 v)
{
	unsigned char *p = (unsigned char *) buf->data + offset;

	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

/* One field: name, tag, then the value with its length patched in after. */
static void
put_field(StringInfo buf, const TaHashedColumn *col, Datum d)
{
	int			lenpos;
	char		tag = col->tag == 'e' ? 's' : col->tag;

	appendStringInfoCharMacro(buf, (char) col->namelen);
	appendBinaryStringInfo(buf, col->name, col->namelen);
	appendStringInfoCharMacro(buf, tag);
	lenpos = buf->len;
	put_u32(buf, 0);

	switch (col->tag)
	{
		case 'i':
			if (col->typlen == 2)
				put_u64(buf, (uint64) (int64) DatumGetInt16(d));
			else if (col->typlen == 4)
				put_u64(buf, (uint64) (int64) DatumGetInt32(d));
			else
				put_u64(buf, (uint64) DatumGetInt64(d));
			break;
		case 'f':
			{
				float8		f = DatumGetFloat8(d);
				uint64		bits;

				if (f == 0.0)
					f = 0.0;	/* -0 is +0 */
				memcpy(&bits, &f, sizeof(bits));
				put_u64(buf, bits);
				break;
			}
		case 'b':
			appendStringInfoCharMacro(buf, DatumGetBool(d) ? 1 : 0);
			break;
		case 's':
			{
				text	   *t = DatumGetTextPP(d);

				ta_append_utf8(buf, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
				break;
			}
		case 'e':
			{
				char	   *label = DatumGetCString(DirectFunctionCall1(enum_out, d));

				ta_append_utf8(buf, label, strlen(label));
				break;
			}
		case 'u':
			appendBinaryStringInfo(buf, (char *) DatumGetUUIDP(d)->data, UUID_LEN);
			break;
		case 't':
			{
				TimestampTz ts = DatumGetTimestampTz(d);

				if (!TIMESTAMP_NOT_FINITE(ts))
					ts += (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;
				put_u64(buf, (uint64) ts);
				break;
			}
		case 'n':
			{
				inet	   *ip = DatumGetInetPP(d);
				int			family = ip_family(ip);

				appendStringInfoCharMacro(buf, family == PGSQL_AF_INET ? 4 : 6);
				appendStringInfoCharMacro(buf, (char) ip_bits(ip));
				appendBinaryStringInfo(buf, (char *) ip_addr(ip),
									   family == PGSQL_AF_INET ? 4 : 16);
				break;
			}
		case 'j':
			canon_container(buf, &DatumGetJsonbP(d)->root);
			break;
	}
	set_u32_at(buf, lenpos, (uint32) (buf->len - lenpos - 4));
}

void
ta_canonical_json(StringInfo buf, Jsonb *j)
{
	canon_container(buf, &j->root);
}

/*
 * The row hash of a row given as deformed values (one per attribute of the
 * relation, heap_deform_tuple's layout).
 */
void
ta_row_hash(const TaLayout *layout, Datum *values, bool *nulls,
			unsigned char out[TA_HASH_LEN])
{
	StringInfoData buf;

	/* a table with such a column has no row hash at all, even while it is NULL */
	if (layout->unencodable >= 0)
	{
		const TaHashedColumn *col = &layout->hashed[layout->unencodable];

		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("column \"%s\" has type %s, which the row hash cannot encode",
						col->name, format_type_be(col->typid)),
				 errdetail("doc/canonical-encoding.md lists the types a row hash covers.")));
	}
	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, ROW_HASH_DOMAIN, sizeof(ROW_HASH_DOMAIN));	/* with the 0 */
	appendStringInfoChar(&buf, (char) layout->namelen);
	appendBinaryStringInfo(&buf, layout->name, layout->namelen);
	for (int i = 0; i < layout->nhashed; i++)
	{
		const TaHashedColumn *col = &layout->hashed[i];

		if (!nulls[col->index])
			put_field(&buf, col, values[col->index]);
	}
	ta_sha256(buf.data, buf.len, out);
	pfree(buf.data);
}

/*
 * tool_audit.compute_row_hash(tool_audit.tool_calls) RETURNS bytea
 * tool_audit.compute_row_hash(tool_audit.admin_events) RETURNS bytea
 * tool_audit.compute_row_hash(tool_audit.data_changes) RETURNS bytea (1.5)
 *
 * The row hash recomputed from a row's columns, to compare with the row_hash
 * it stores: what reports use to check the rows they cover.  It takes the
 * row itself rather than an id, so it reads nothing the caller could not.
 */
PG_FUNCTION_INFO_V1(compute_row_hash);
Datum
compute_row_hash(PG_FUNCTION_ARGS)
{
	HeapTupleHeader td = PG_GETARG_HEAPTUPLEHEADER(0);
	Oid			relid = get_typ_typrelid(HeapTupleHeaderGetTypeId(td));
	char	   *name = OidIsValid(relid) ? get_rel_name(relid) : NULL;
	Relation	rel;
	const TaLayout *layout;
	HeapTupleData tuple;
	Datum	   *values;
	bool	   *nulls;
	bytea	   *result;

	if (name == NULL || get_rel_namespace(relid) != ta_schema_oid(false) ||
		(strcmp(name, "tool_calls") != 0 && strcmp(name, "admin_events") != 0 &&
		 strcmp(name, "data_changes") != 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("compute_row_hash() takes a row of tool_audit.tool_calls, tool_audit.admin_events or tool_audit.data_changes")));
	rel = table_open(relid, AccessShareLock);
	layout = ta_layout_of(rel);
	tuple.t_len = HeapTupleHeaderGetDatumLength(td);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = relid;
	tuple.t_data = td;
	values = palloc(layout->natts * sizeof(Datum));
	nulls = palloc(layout->natts * sizeof(bool));
	heap_deform_tuple(&tuple, RelationGetDescr(rel), values, nulls);

	result = palloc(VARHDRSZ + TA_HASH_LEN);
	SET_VARSIZE(result, VARHDRSZ + TA_HASH_LEN);
	ta_row_hash(layout, values, nulls, (unsigned char *) VARDATA(result));
	table_close(rel, AccessShareLock);
	PG_RETURN_BYTEA_P(result);
}

/* ---- chain ids ---- */

/*
 * A chain is named by its table, tenant and retention policy (spec section
 * 4): derived, not registered, so the first writer of a new tenant waits for
 * nobody and a verifier can tell a row that was moved to another chain.  A
 * row with a policy (1.4 on) is in the chain of its table, policy and
 * tenant, so that the rows of a chain share one retention and a purge takes
 * (mostly) a prefix of each lane; a row without one (written before 1.4)
 * keeps the chain of its table and tenant, derivation 1.
 */
static int64
chain_id_of(const TaLayout *layout, const char *tenant, int tenant_len,
			const char *policy, int policy_len)
{
	StringInfoData buf;
	unsigned char h[TA_HASH_LEN];
	uint64		id = 0;

	initStringInfo(&buf);
	if (policy == NULL)
		appendBinaryStringInfo(&buf, CHAIN_DOMAIN, sizeof(CHAIN_DOMAIN));	/* with its 0 */
	else
		appendBinaryStringInfo(&buf, CHAIN_DOMAIN_2, sizeof(CHAIN_DOMAIN_2));
	appendStringInfoChar(&buf, (char) layout->namelen);
	appendBinaryStringInfo(&buf, layout->name, layout->namelen);
	if (policy != NULL)
	{
		/* policy names are 1 to 63 ASCII characters; a restored row's, any */
		int			at = buf.len;

		appendStringInfoChar(&buf, 0);
		ta_append_utf8(&buf, policy, policy_len);
		if (buf.len - at - 1 < 1 || buf.len - at - 1 > 255)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("retention_policy of a tool_audit.%s row must be 1 to 255 bytes long",
							layout->name)));
		buf.data[at] = (char) (buf.len - at - 1);
	}
	if (tenant == NULL)
		appendStringInfoChar(&buf, 0);
	else
	{
		appendStringInfoChar(&buf, 1);
		ta_append_utf8(&buf, tenant, tenant_len);
	}
	ta_sha256(buf.data, buf.len, h);
	pfree(buf.data);
	for (int i = 0; i < 8; i++)
		id = (id << 8) | h[i];
	return (int64) id;
}

/*
 * The last (table, tenant, policy) seen is remembered, since a backend
 * mostly writes for one tenant and tool at a time.
 */
typedef struct TextMemo
{
	bool		isnull;
	char	   *data;
	int			len;
} TextMemo;

static Oid	last_relid = InvalidOid;
static TextMemo last_tenant = {true, NULL, 0};
static TextMemo last_policy = {true, NULL, 0};
static int64 last_chain_id;

static bool
memo_matches(const TextMemo *m, const char *s, int len)
{
	if (s == NULL || m->isnull)
		return s == NULL && m->isnull;
	return m->len == len && memcmp(m->data, s, len) == 0;
}

static void
memo_store(TextMemo *m, const char *s, int len)
{
	if (m->data != NULL)
		pfree(m->data);
	m->isnull = (s == NULL);
	m->data = s ? MemoryContextAlloc(TopMemoryContext, len + 1) : NULL;
	if (s)
		memcpy(m->data, s, len);
	m->len = len;
}

/* A text column's bytes, or NULL for NULL or a column the table lacks. */
static const char *
text_column(const TaLayout *layout, TaColumn col, Datum *values, bool *nulls, int *len)
{
	int			i = layout->column[col];
	text	   *t;

	*len = 0;
	if (i < 0 || nulls[i])
		return NULL;
	t = DatumGetTextPP(values[i]);
	*len = VARSIZE_ANY_EXHDR(t);
	return VARDATA_ANY(t);
}

int64
ta_chain_id(const TaLayout *layout, Datum *values, bool *nulls)
{
	int			len,
				plen;
	const char *t;
	const char *p;

	(void) ta_column(layout, TA_COL_TENANT_ID);
	t = text_column(layout, TA_COL_TENANT_ID, values, nulls, &len);
	p = text_column(layout, TA_COL_RETENTION_POLICY, values, nulls, &plen);
	if (last_relid == layout->relid && memo_matches(&last_tenant, t, len) &&
		memo_matches(&last_policy, p, plen))
		return last_chain_id;
	last_chain_id = chain_id_of(layout, t, len, p, plen);
	last_relid = layout->relid;
	memo_store(&last_tenant, t, len);
	memo_store(&last_policy, p, plen);
	return last_chain_id;
}

/* ---- links ---- */

/* A hash as the bytea a chain column stores. */
Datum
ta_hash_datum(const unsigned char hash[TA_HASH_LEN])
{
	bytea	   *b = palloc(VARHDRSZ + TA_HASH_LEN);

	SET_VARSIZE(b, VARHDRSZ + TA_HASH_LEN);
	memcpy(VARDATA(b), hash, TA_HASH_LEN);
	return PointerGetDatum(b);
}

/* A stored hash column's bytes; false when NULL or not 32 bytes long. */
bool
ta_stored_hash(Datum d, bool isnull, unsigned char out[TA_HASH_LEN])
{
	bytea	   *b;

	if (isnull)
		return false;
	b = DatumGetByteaPP(d);
	if (VARSIZE_ANY_EXHDR(b) != TA_HASH_LEN)
		return false;
	memcpy(out, VARDATA_ANY(b), TA_HASH_LEN);
	return true;
}

/*
 * The same, of attribute attnum of a tuple.  One call rather than
 * ta_stored_hash(SPI_getbinval(..., &isnull), isnull, ...): the order in
 * which C evaluates arguments is unspecified, so isnull could be read before
 * SPI_getbinval() sets it (valgrind saw it read uninitialised in erase.c).
 */
bool
ta_stored_hash_attr(HeapTuple tup, TupleDesc desc, int attnum, unsigned char out[TA_HASH_LEN])
{
	bool		isnull;
	Datum		d = heap_getattr(tup, attnum, desc, &isnull);

	return ta_stored_hash(d, isnull, out);
}

void
ta_link_hash(int64 chain_id, int32 lane, int64 seq,
			 const unsigned char prev[TA_HASH_LEN],
			 const unsigned char row_hash[TA_HASH_LEN],
			 unsigned char out[TA_HASH_LEN])
{
	unsigned char buf[sizeof(LINK_DOMAIN) + 8 + 4 + 8 + 2 * TA_HASH_LEN];
	unsigned char *p = buf;
	uint64		c = (uint64) chain_id;
	uint32		l = (uint32) lane;
	uint64		s = (uint64) seq;

	memcpy(p, LINK_DOMAIN, sizeof(LINK_DOMAIN));	/* with its 0 byte */
	p += sizeof(LINK_DOMAIN);
	for (int i = 7; i >= 0; i--)
		*p++ = (unsigned char) (c >> (8 * i));
	for (int i = 3; i >= 0; i--)
		*p++ = (unsigned char) (l >> (8 * i));
	for (int i = 7; i >= 0; i--)
		*p++ = (unsigned char) (s >> (8 * i));
	memcpy(p, prev, TA_HASH_LEN);
	p += TA_HASH_LEN;
	memcpy(p, row_hash, TA_HASH_LEN);
	p += TA_HASH_LEN;
	ta_sha256(buf, p - buf, out);
}

static void
check_hash_arg(bytea *b, const char *name)
{
	if (VARSIZE_ANY_EXHDR(b) != TA_HASH_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a SHA-256 hash of %d bytes", name, TA_HASH_LEN),
				 errdetail("The value given has %d bytes.", (int) VARSIZE_ANY_EXHDR(b)),
				 errhint("The first row of a lane links to 32 zero bytes.")));
}

/*
 * tool_audit.chain_link(chain_id bigint, chain_lane integer, chain_seq bigint,
 *                       previous bytea, row_hash bytea) RETURNS bytea
 *
 * The chain_hash a row at this position must store, given the chain_hash of
 * the row before it in its lane (32 zero bytes for position 1) and its row
 * hash: section 4 of doc/canonical-encoding.md, for reports and auditors.
 */
PG_FUNCTION_INFO_V1(chain_link);
Datum
chain_link(PG_FUNCTION_ARGS)
{
	bytea	   *prev = PG_GETARG_BYTEA_PP(3);
	bytea	   *row_hash = PG_GETARG_BYTEA_PP(4);
	bytea	   *result;

	check_hash_arg(prev, "previous");
	check_hash_arg(row_hash, "row_hash");
	result = palloc(VARHDRSZ + TA_HASH_LEN);
	SET_VARSIZE(result, VARHDRSZ + TA_HASH_LEN);
	ta_link_hash(PG_GETARG_INT64(0), PG_GETARG_INT32(1), PG_GETARG_INT64(2),
				 (const unsigned char *) VARDATA_ANY(prev),
				 (const unsigned char *) VARDATA_ANY(row_hash),
				 (unsigned char *) VARDATA(result));
	PG_RETURN_BYTEA_P(result);
}
