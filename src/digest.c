/*-------------------------------------------------------------------------
 *
 * digest.c
 *		Digests: a signed commitment to every chain lane's head.
 *
 * tool_audit.digest() lists the head (position and chain_hash) of every lane
 * of every chain, with the database's identity and the time, and signs the
 * canonical JSON of that object with Ed25519 when tool_audit.signing_key_file
 * names a PEM private key (doc/canonical-encoding.md, section 5).  Kept
 * outside the database, a digest lets tool_audit.verify_digest() and the
 * external verifier tell that rows covered by it were removed or rewritten
 * later, even by a superuser who recomputed every hash.
 *
 * The key file is read on each call (digests are rare) by the server
 * process; it should be readable by the server's OS user only.  A superuser
 * can read it too (pg_read_binary_file), so the signature proves where a
 * digest came from against everyone else, not against a superuser: the
 * protection against a superuser is the copy of the digest kept elsewhere.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "commands/dbcommands.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgtime.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgroids.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "catalog.h"
#include "crypto.h"
#include "digest.h"
#include "impersonation.h"
#include "hash.h"
#include "jsonb_util.h"
#include "layout.h"
#include "security_state.h"
#include "tenant_verify.h"
#include "tool_audit.h"

/* ---- heads ---- */

/*
 * One descent of the chain position index: the first entry of the first
 * chain after "after" (forward), or the last entry of a chain, or of its
 * lanes below "below" (backward).
 */
static bool
index_probe(Relation rel, Relation irel, Snapshot snap, ScanDirection dir,
			ScanKey keys, int nkeys, TupleTableSlot *slot)
{
	IndexScanDesc scan;
	bool		found;

	scan = ta_index_scan(rel, irel, snap, keys, nkeys);
	found = index_getnext_slot(scan, dir, slot);
	index_endscan(scan);
	return found;
}

static void
append_hex_field(StringInfo buf, const char *name, Datum d, bool isnull)
{
	appendStringInfo(buf, ",\"%s\":", name);
	if (isnull)
		appendStringInfoString(buf, "null");
	else
	{
		bytea	   *b = DatumGetByteaPP(d);
		int			len = VARSIZE_ANY_EXHDR(b);
		char	   *hex = palloc(2 * len + 1);

		hex_encode(VARDATA_ANY(b), len, hex);
		hex[2 * len] = '\0';
		appendStringInfo(buf, "\"%s\"", hex);
		pfree(hex);
	}
}

/* A column of the head row in the slot (slot_getattr numbers from 1). */
static Datum
head_column(TupleTableSlot *slot, const TaLayout *layout, TaColumn col, bool *isnull)
{
	return slot_getattr(slot, ta_column(layout, col) + 1, isnull);
}

/*
 * A lane's head as a JSON object; the tenant and the retention policy (which
 * with the table name the chain id) come from the head row.
 */
static char *
head_json(TupleTableSlot *slot, const TaLayout *layout)
{
	StringInfoData head;
	bool		isnull;
	Datum		tenant = head_column(slot, layout, TA_COL_TENANT_ID, &isnull);
	bool		hash_null;
	Datum		hash = head_column(slot, layout, TA_COL_CHAIN_HASH, &hash_null);
	bool		policy_null = true;
	Datum		policy;
	bool		n1,
				n2,
				n3;
	int64		chain_id = DatumGetInt64(head_column(slot, layout, TA_COL_CHAIN_ID, &n1));
	int32		lane = DatumGetInt32(head_column(slot, layout, TA_COL_CHAIN_LANE, &n2));
	int64		seq = DatumGetInt64(head_column(slot, layout, TA_COL_CHAIN_SEQ, &n3));

	initStringInfo(&head);
	appendStringInfo(&head, "{\"chain\":\"" INT64_FORMAT "\",\"table\":", chain_id);
	escape_json(&head, layout->name);
	appendStringInfoString(&head, ",\"tenant\":");
	if (isnull)
		appendStringInfoString(&head, "null");
	else
		escape_json(&head, TextDatumGetCString(tenant));
	appendStringInfoString(&head, ",\"retention_policy\":");
	policy = layout->column[TA_COL_RETENTION_POLICY] < 0 ? (Datum) 0 :
		head_column(slot, layout, TA_COL_RETENTION_POLICY, &policy_null);
	if (layout->column[TA_COL_RETENTION_POLICY] < 0 || policy_null)
		appendStringInfoString(&head, "null");
	else
		escape_json(&head, TextDatumGetCString(policy));
	appendStringInfo(&head, ",\"lane\":%d,\"position\":" INT64_FORMAT, lane, seq);
	append_hex_field(&head, "hash", hash, hash_null);
	appendStringInfoChar(&head, '}');
	return head.data;
}

/* A lane's head: from its last row, or from the purge anchor beyond it. */
typedef struct LaneHead
{
	int64		chain_id;
	int32		lane;
	int64		seq;
	char	   *json;
	char	   *tenant;			/* NULL for none (tenant_verify.c filters by it) */
} LaneHead;

/*
 * The head each purge anchor beyond a lane's last row gives it, as a row's
 * head would read (the tenant and retention policy are the span's last
 * row's).
 * Ordered by chain and lane, one per lane.
 */
static List *
anchor_heads(const char *table)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(table)};
	List	   *heads = NIL;
	MemoryContext outer = CurrentMemoryContext;

	if (!OidIsValid(ta_schema_relid("purge_anchors", true)))
		return NIL;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args("SELECT DISTINCT ON (a.chain_id, a.chain_lane)"
							  "       a.chain_id, a.chain_lane, a.last_seq, a.link_after, a.tenant_id,"
							  "       a.retention_policy"
							  "  FROM tool_audit.purge_anchors a"
							  " WHERE a.table_name OPERATOR(pg_catalog.=) $1"
							  " ORDER BY a.chain_id, a.chain_lane, a.last_seq DESC",
							  1, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read tool_audit.purge_anchors");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		n[6];
		Datum		v[6];
		MemoryContext spi = MemoryContextSwitchTo(outer);
		LaneHead   *h = palloc(sizeof(LaneHead));
		StringInfoData head;

		for (int c = 0; c < 6; c++)
			v[c] = SPI_getbinval(tup, desc, c + 1, &n[c]);
		h->chain_id = DatumGetInt64(v[0]);
		h->lane = DatumGetInt32(v[1]);
		h->seq = DatumGetInt64(v[2]);
		h->tenant = n[4] ? NULL : TextDatumGetCString(v[4]);
		initStringInfo(&head);
		appendStringInfo(&head, "{\"chain\":\"" INT64_FORMAT "\",\"table\":", h->chain_id);
		escape_json(&head, table);
		appendStringInfoString(&head, ",\"tenant\":");
		if (n[4])
			appendStringInfoString(&head, "null");
		else
			escape_json(&head, TextDatumGetCString(v[4]));
		appendStringInfoString(&head, ",\"retention_policy\":");
		if (n[5])
			appendStringInfoString(&head, "null");
		else
			escape_json(&head, TextDatumGetCString(v[5]));
		appendStringInfo(&head, ",\"lane\":%d,\"position\":" INT64_FORMAT, h->lane, h->seq);
		append_hex_field(&head, "hash", v[3], n[3]);
		appendStringInfoChar(&head, '}');
		h->json = head.data;
		heads = lappend(heads, h);
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	return heads;
}

/*
 * The heads of every lane of every chain of one table, found by skipping
 * through the chain position index: one descent per chain and per lane;
 * then merged with the heads purge anchors keep (a lane whose last rows
 * were purged has its head in its last anchor).
 */
static void
append_heads(StringInfo buf, const char *table, bool *first, const TaTenantScope *scope)
{
	List	   *row_heads = NIL;
	List	   *purged = anchor_heads(table);
	ListCell   *rc,
			   *ac;

	const TaLayout *layout;
	Relation	rel = ta_layout_open(table, AccessShareLock, &layout);
	Relation	irel = index_open(ta_chain_index(layout), AccessShareLock);
	Snapshot	snap = GetActiveSnapshot();
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	bool		have_chain = false;
	int64		chain_id = 0;

	for (;;)
	{
		ScanKeyData keys[2];
		List	   *lanes = NIL;
		ListCell   *lc;
		bool		isnull;

		CHECK_FOR_INTERRUPTS();
		/* the next chain: NULL chain ids sort last and end the walk */
		ScanKeyInit(&keys[0], 1, BTGreaterStrategyNumber, F_INT8GT, Int64GetDatum(chain_id));
		if (!index_probe(rel, irel, snap, ForwardScanDirection, keys, have_chain ? 1 : 0, slot))
			break;
		chain_id = DatumGetInt64(head_column(slot, layout, TA_COL_CHAIN_ID, &isnull));
		if (isnull)
			break;
		have_chain = true;

		/* its highest lane first, then each lower one */
		ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(chain_id));
		for (int nkeys = 1;; nkeys = 2)
		{
			int32		lane;

			CHECK_FOR_INTERRUPTS();
			if (!index_probe(rel, irel, snap, BackwardScanDirection, keys, nkeys, slot))
				break;
			lane = DatumGetInt32(head_column(slot, layout, TA_COL_CHAIN_LANE, &isnull));
			if (isnull)
				break;
			(void) head_column(slot, layout, TA_COL_CHAIN_SEQ, &isnull);
			if (!isnull)
			{
				LaneHead   *h = palloc(sizeof(LaneHead));

				h->chain_id = chain_id;
				h->lane = lane;
				h->seq = DatumGetInt64(head_column(slot, layout, TA_COL_CHAIN_SEQ, &isnull));
				h->json = head_json(slot, layout);
				{
					bool		tnull;
					Datum		t = head_column(slot, layout, TA_COL_TENANT_ID, &tnull);

					h->tenant = tnull ? NULL : TextDatumGetCString(t);
				}
				lanes = lcons(h, lanes);
			}
			if (lane <= 0)
				break;
			ScanKeyInit(&keys[1], 2, BTLessStrategyNumber, F_INT4LT, Int32GetDatum(lane));
		}
		foreach(lc, lanes)
			row_heads = lappend(row_heads, lfirst(lc));
	}
	ExecDropSingleTupleTableSlot(slot);
	index_close(irel, AccessShareLock);
	table_close(rel, AccessShareLock);

	/* both lists are in (chain, lane) order: merge them */
	rc = list_head(row_heads);
	ac = list_head(purged);
	while (rc != NULL || ac != NULL)
	{
		LaneHead   *r = rc ? lfirst(rc) : NULL;
		LaneHead   *a = ac ? lfirst(ac) : NULL;
		LaneHead   *h;

		if (r != NULL && a != NULL && r->chain_id == a->chain_id && r->lane == a->lane)
		{
			h = a->seq > r->seq ? a : r;
			rc = lnext(row_heads, rc);
			ac = lnext(purged, ac);
		}
		else if (a == NULL || (r != NULL && (r->chain_id < a->chain_id ||
											 (r->chain_id == a->chain_id && r->lane < a->lane))))
		{
			h = r;
			rc = lnext(row_heads, rc);
		}
		else
		{
			h = a;
			ac = lnext(purged, ac);
		}
		if (scope != NULL &&
			!ta_tenant_scope_has(scope, h->tenant, h->tenant ? strlen(h->tenant) : 0))
			continue;
		if (!*first)
			appendStringInfoChar(buf, ',');
		*first = false;
		appendStringInfoString(buf, h->json);
	}
}

typedef struct HeadsArgs
{
	StringInfo	buf;
	const TaTenantScope *scope; /* NULL: every tenant's heads */
} HeadsArgs;

/*
 * The heads of every audit table, ordered by (table, chain, lane); no
 * data_changes heads in a schema still at a version before 1.5.
 */
static void
append_all_heads(void *arg)
{
	HeadsArgs  *a = arg;
	bool		first = true;

	for (int i = 0; i < TA_NAUDIT_TABLES; i++)
		if (ta_audit_table_expected(ta_audit_tables[i]))
			append_heads(a->buf, ta_audit_tables[i], &first, a->scope);
}

/* a time as digests write it: YYYY-MM-DDTHH:MM:SS.ffffffZ */
char *
ta_digest_time_text(TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (TIMESTAMP_NOT_FINITE(ts) || timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		return pstrdup(ts == DT_NOBEGIN ? "-infinity" : ts == DT_NOEND ? "infinity" : "?");
	return psprintf("%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
					tm.tm_year, tm.tm_mon, tm.tm_mday,
					tm.tm_hour, tm.tm_min, tm.tm_sec, (int) fsec);
}

/*
 * tool_audit.digest() RETURNS jsonb
 */
PG_FUNCTION_INFO_V1(digest);
Datum
digest(PG_FUNCTION_ARGS)
{
	/* a caller bound to tenants gets their digest (tenant_verify.c) */
	return ta_digest_scoped(ta_tenant_scope_checked("digest"));
}

/*
 * The digest of every chain (scope NULL), or of the scope's tenants' chains
 * only, marked "scope": "tenant" (read as the extension's owner).
 */
Datum
ta_digest_scoped(const TaTenantScope *scope)
{
	HeadsArgs	heads_args;
	StringInfoData buf;
	Datum		result;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"format\":\"" DIGEST_FORMAT "\",");
	if (scope != NULL)
		appendStringInfoString(&buf, "\"scope\":\"tenant\",");
	appendStringInfoString(&buf, "\"database\":");
	escape_json(&buf, get_database_name(MyDatabaseId));
	appendStringInfo(&buf, ",\"system_identifier\":\"" UINT64_FORMAT "\",\"taken_at\":\"%s\",\"heads\":[",
					 GetSystemIdentifier(), ta_digest_time_text(GetCurrentTimestamp()));
	heads_args.buf = &buf;
	heads_args.scope = scope;
	if (ta_tenant_run_as_owner(scope))
		ta_as_extension_owner(append_all_heads, &heads_args);
	else
		append_all_heads(&heads_args);
	appendStringInfoChar(&buf, ']');
	/* read as the extension's owner, whoever the caller (security_state.c) */
	ta_security_state_append(&buf);
	result = ta_digest_sign(&buf);
	ta_record_read("digest", "'{}'::jsonb", 0, NULL, NULL, NULL, 1, false);
	return result;
}

/*
 * A digest's text, open (no closing brace), completed with "key_id" and
 * "signature": Ed25519 over the canonical form of everything but the
 * signature, with tool_audit.signing_key_file's key; both null without one.
 */
Datum
ta_digest_sign(StringInfo buf)
{
	EVP_PKEY   *pkey = ta_ed25519_load(ta_signing_key_file);
	char		key_id[TA_ED25519_KEY_ID_HEX + 1];
	StringInfoData canon;
	char	   *sig;

	if (pkey == NULL)
	{
		appendStringInfoString(buf, ",\"key_id\":null,\"signature\":null}");
		return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf->data));
	}
	ta_ed25519_key_id(pkey, key_id);
	appendStringInfo(buf, ",\"key_id\":\"%s\"}", key_id);
	initStringInfo(&canon);
	PG_TRY();
	{
		ta_canonical_json(&canon, DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
																	 CStringGetDatum(buf->data))));
	}
	PG_CATCH();
	{
		EVP_PKEY_free(pkey);
		PG_RE_THROW();
	}
	PG_END_TRY();
	sig = ta_ed25519_sign_hex(pkey, canon.data, canon.len);
	EVP_PKEY_free(pkey);
	buf->data[--buf->len] = '\0';
	appendStringInfo(buf, ",\"signature\":\"%s\"}", sig);
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf->data));
}

/*
 * tool_audit.signing_public_key() RETURNS text
 */
PG_FUNCTION_INFO_V1(signing_public_key);
Datum
signing_public_key(PG_FUNCTION_ARGS)
{
	EVP_PKEY   *pkey = ta_ed25519_load(ta_signing_key_file);
	text	   *result;

	if (pkey == NULL)
		PG_RETURN_NULL();
	result = ta_ed25519_public_pem(pkey);
	EVP_PKEY_free(pkey);
	PG_RETURN_TEXT_P(result);
}

/*
 * Checks a digest's signature against the configured key; returns a problem
 * text, or NULL if the signature is good (or absent with no key configured).
 */
char *
ta_digest_signature_problem(Jsonb *d)
{
	char	   *sig_hex = ta_jsonb_string(&d->root, "signature");
	char	   *their_key = ta_jsonb_string(&d->root, "key_id");
	EVP_PKEY   *pkey = ta_ed25519_load(ta_signing_key_file);
	char		key_id[TA_ED25519_KEY_ID_HEX + 1];
	Jsonb	   *payload;
	StringInfoData canon;
	unsigned char sig[64];
	bool		ok;

	if (pkey == NULL)
		return sig_hex == NULL ? NULL :
			pstrdup("digest signature not checked: tool_audit.signing_key_file is not set");
	ta_ed25519_key_id(pkey, key_id);
	if (sig_hex == NULL)
	{
		EVP_PKEY_free(pkey);
		return pstrdup("digest is not signed");
	}
	if (their_key == NULL || strcmp(their_key, key_id) != 0)
	{
		EVP_PKEY_free(pkey);
		return psprintf("digest signed with another key (key_id %s, configured %s)",
						their_key ? their_key : "null", key_id);
	}
	if (strlen(sig_hex) != 2 * sizeof(sig) ||
		strspn(sig_hex, "0123456789abcdef") != 2 * sizeof(sig))
	{
		EVP_PKEY_free(pkey);
		return pstrdup("digest signature invalid");
	}
	(void) hex_decode(sig_hex, 2 * sizeof(sig), (char *) sig);
	payload = DatumGetJsonbP(DirectFunctionCall2(jsonb_delete, JsonbPGetDatum(d),
												 CStringGetTextDatum("signature")));
	initStringInfo(&canon);
	PG_TRY();
	{
		ta_canonical_json(&canon, payload);
	}
	PG_CATCH();
	{
		EVP_PKEY_free(pkey);
		PG_RE_THROW();
	}
	PG_END_TRY();
	ok = ta_ed25519_verify(pkey, canon.data, canon.len, sig, sizeof(sig));
	EVP_PKEY_free(pkey);
	return ok ? NULL : pstrdup("digest signature invalid");
}
