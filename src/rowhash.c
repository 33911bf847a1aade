/*-------------------------------------------------------------------------
 *
 * rowhash.c
 *		The canonical encoding of an audit row and its SHA-256 row hash, as
 *		specified byte by byte in doc/canonical-encoding.md.
 *
 * A row is hashed from its column values, never from a type's text output:
 * timestamps as microseconds since the Unix epoch, numbers as big-endian
 * binary, jsonb as the canonical JSON of section 3 of that document (keys in
 * bytewise order, numbers as exact decimals without exponent).  Nothing
 * depends on TimeZone, DateStyle, extra_float_digits, client_encoding, the
 * table's column order or the server version's jsonb output.
 *
 * The set of hashed columns of a table (its "plan": non-chain columns in
 * name order, with their type tags) is worked out once per table and
 * backend.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>

#include <openssl/evp.h>

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_type.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/inet.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "tool_audit.h"

#define ROW_HASH_DOMAIN		"tool_audit row 1"

/* the columns that hold the chain and so are not part of the row hash */
static const char *const chain_columns[] = {
	"row_hash", "chain_id", "chain_lane", "chain_seq", "chain_hash"
};

static EVP_MD *sha256 = NULL;

static const EVP_MD *
get_sha256(void)
{
	if (sha256 == NULL)
	{
		sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
		if (sha256 == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
					 errmsg("could not load SHA-256 from OpenSSL")));
	}
	return sha256;
}

/* one digest context for the backend's life: no allocation per hash */
static EVP_MD_CTX *sha256_ctx = NULL;

void
ta_sha256(const void *data, size_t len, unsigned char out[TA_HASH_LEN])
{
	unsigned int outlen = 0;

	if (sha256_ctx == NULL)
	{
		sha256_ctx = EVP_MD_CTX_new();
		if (sha256_ctx == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory")));
	}
	if (EVP_DigestInit_ex2(sha256_ctx, get_sha256(), NULL) != 1 ||
		EVP_DigestUpdate(sha256_ctx, data, len) != 1 ||
		EVP_DigestFinal_ex(sha256_ctx, out, &outlen) != 1 ||
		outlen != TA_HASH_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("SHA-256 failed in OpenSSL")));
}

static bool
is_chain_column(const char *name)
{
	for (int i = 0; i < (int) lengthof(chain_columns); i++)
		if (strcmp(name, chain_columns[i]) == 0)
			return true;
	return false;
}

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

typedef struct HashCol
{
	int			index;			/* in the tuple descriptor, from 0 */
	char		tag;			/* 'i', 'f', 'b', 's', 'e' (enum, as 's'), ... */
	int16		typlen;			/* for 'i': 2, 4 or 8 */
	int			namelen;
	char		name[NAMEDATALEN];
} HashCol;

typedef struct RowPlan
{
	Oid			relid;
	int			natts;			/* a new column makes a new plan */
	int			tablelen;
	char		table[NAMEDATALEN];
	TaChainColumns chain;		/* where the chain columns are */
	int			ncols;
	HashCol		cols[FLEXIBLE_ARRAY_MEMBER];
} RowPlan;

static RowPlan *plans[4];

static char
type_tag(Oid typid, const char *column)
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
	if (type_is_enum(typid))
		return 'e';
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("column \"%s\" has type %s, which the row hash cannot encode",
					column, format_type_be(typid)),
			 errdetail("doc/canonical-encoding.md lists the types a row hash covers.")));
	return 0;					/* keep the compiler quiet */
}

static int
hashcol_cmp(const void *a, const void *b)
{
	const HashCol *x = (const HashCol *) a;
	const HashCol *y = (const HashCol *) b;

	return strcmp(x->name, y->name);
}

/* A column's index in the descriptor; -1 if it has none. */
static int
column_index(TupleDesc desc, const char *name)
{
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return i;
	}
	return -1;
}

static RowPlan *
row_plan(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Oid			relid = RelationGetRelid(rel);
	RowPlan    *plan;
	int			slot = -1;

	for (int i = 0; i < (int) lengthof(plans); i++)
	{
		if (plans[i] != NULL && plans[i]->relid == relid &&
			plans[i]->natts == desc->natts)
			return plans[i];
		if (slot < 0 && (plans[i] == NULL || plans[i]->relid == relid))
			slot = i;
	}
	if (slot < 0)
		slot = 0;

	plan = MemoryContextAllocZero(TopMemoryContext,
								  offsetof(RowPlan, cols) + sizeof(HashCol) * desc->natts);
	plan->relid = relid;
	plan->natts = desc->natts;
	strlcpy(plan->table, RelationGetRelationName(rel), NAMEDATALEN);
	plan->tablelen = strlen(plan->table);
	plan->chain.row_hash = column_index(desc, "row_hash");
	plan->chain.chain_id = column_index(desc, "chain_id");
	plan->chain.chain_lane = column_index(desc, "chain_lane");
	plan->chain.chain_seq = column_index(desc, "chain_seq");
	plan->chain.chain_hash = column_index(desc, "chain_hash");
	plan->chain.tenant_id = column_index(desc, "tenant_id");
	plan->chain.id = column_index(desc, "id");
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		HashCol    *col;

		if (att->attisdropped || is_chain_column(NameStr(att->attname)))
			continue;
		col = &plan->cols[plan->ncols++];
		col->index = i;
		strlcpy(col->name, NameStr(att->attname), NAMEDATALEN);
		col->namelen = strlen(col->name);
		col->tag = type_tag(att->atttypid, col->name);
		col->typlen = att->attlen;
	}
	/* names are ASCII: strcmp is the bytewise order of the spec */
	qsort(plan->cols, plan->ncols, sizeof(HashCol), hashcol_cmp);
	if (plans[slot] != NULL)
		pfree(plans[slot]);
	plans[slot] = plan;
	return plan;
}

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
put_field(StringInfo buf, const HashCol *col, Datum d)
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

/*
 * Where the chain columns are.  A table still at version 1.0 (the library
 * was updated, ALTER EXTENSION UPDATE not yet run) has none: cols->row_hash
 * is then -1 and rows are recorded unchained, as 1.0 did, until the upgrade
 * chains them.
 */
void
ta_chain_columns(Relation rel, TaChainColumns *cols)
{
	*cols = row_plan(rel)->chain;
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
ta_row_hash(Relation rel, Datum *values, bool *nulls,
			unsigned char out[TA_HASH_LEN])
{
	RowPlan    *plan = row_plan(rel);
	StringInfoData buf;

	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, ROW_HASH_DOMAIN, sizeof(ROW_HASH_DOMAIN));	/* with the 0 */
	appendStringInfoChar(&buf, (char) plan->tablelen);
	appendBinaryStringInfo(&buf, plan->table, plan->tablelen);
	for (int i = 0; i < plan->ncols; i++)
	{
		const HashCol *col = &plan->cols[i];

		if (!nulls[col->index])
			put_field(&buf, col, values[col->index]);
	}
	ta_sha256(buf.data, buf.len, out);
	pfree(buf.data);
}

/*
 * tool_audit.compute_row_hash(tool_audit.tool_calls) RETURNS bytea
 * tool_audit.compute_row_hash(tool_audit.admin_events) RETURNS bytea
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
	TupleDesc	desc;
	HeapTupleData tuple;
	Datum	   *values;
	bool	   *nulls;
	bytea	   *result;

	if (name == NULL || get_rel_namespace(relid) != ta_schema_oid(false) ||
		(strcmp(name, "tool_calls") != 0 && strcmp(name, "admin_events") != 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("compute_row_hash() takes a row of tool_audit.tool_calls or tool_audit.admin_events")));
	rel = table_open(relid, AccessShareLock);
	desc = RelationGetDescr(rel);
	tuple.t_len = HeapTupleHeaderGetDatumLength(td);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = relid;
	tuple.t_data = td;
	values = palloc(desc->natts * sizeof(Datum));
	nulls = palloc(desc->natts * sizeof(bool));
	heap_deform_tuple(&tuple, desc, values, nulls);

	result = palloc(VARHDRSZ + TA_HASH_LEN);
	SET_VARSIZE(result, VARHDRSZ + TA_HASH_LEN);
	ta_row_hash(rel, values, nulls, (unsigned char *) VARDATA(result));
	table_close(rel, AccessShareLock);
	PG_RETURN_BYTEA_P(result);
}
