/*-------------------------------------------------------------------------
 *
 * catalog.c
 *		Finding the extension's objects: its schema, a relation in it, a
 *		relation's owner, and an index scan started the same way on every
 *		supported server version.
 *
 * A relation the extension needs and cannot find is always reported the
 * same way (ta_missing_relation): SQLSTATE 55000 naming the relation.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_index.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "catalog.h"

Oid
ta_schema_oid(bool missing_ok)
{
	Oid			nsp = get_namespace_oid(TA_SCHEMA, true);

	if (!OidIsValid(nsp) && !missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"tool_audit\" is not installed in this database"),
				 errhint("Run CREATE EXTENSION tool_audit.")));
	return nsp;
}

void
ta_missing_relation(const char *name)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("relation tool_audit.%s is missing", name),
			 errhint("Run ALTER EXTENSION tool_audit UPDATE, or reinstall the extension.")));
}

/* A table, sequence or index of the extension's schema, by name. */
Oid
ta_schema_relid(const char *name, bool missing_ok)
{
	Oid			relid = get_relname_relid(name, ta_schema_oid(false));

	if (!OidIsValid(relid) && !missing_ok)
		ta_missing_relation(name);
	return relid;
}

/*
 * The audit tables, in name order: the order of verify()'s walks and of a
 * digest's heads.  data_changes came with 1.5.
 */
const char *const ta_audit_tables[TA_NAUDIT_TABLES] = {"admin_events", "data_changes", "tool_calls"};

/*
 * Does the installed version of the extension have this audit table?  True
 * when the table exists, and when it is missing but the version should have
 * it (so that whoever asks reports it missing); false only for data_changes
 * in a database still at a version before 1.5 (the library is newer than
 * the schema until ALTER EXTENSION UPDATE runs).
 */
bool
ta_audit_table_expected(const char *table)
{
	static const char *const before_1_5[] = {"1.0", "1.1", "1.2", "1.3", "1.4"};
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	bool		expected = true;

	if (OidIsValid(ta_schema_relid(table, true)) || strcmp(table, "data_changes") != 0)
		return true;
	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum("tool_audit"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		v = heap_getattr(tup, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);
		char	   *version = isnull ? NULL : TextDatumGetCString(v);

		for (int i = 0; version != NULL && i < (int) lengthof(before_1_5); i++)
			if (strcmp(version, before_1_5[i]) == 0)
				expected = false;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return expected;
}

/*
 * Is the index (looked up by its name) still a B-tree of the relation whose
 * first key column is the given one?  A plain index may be dropped by the
 * extension's owner, and another plain one made under its name (the DDL
 * guard allows both): a probe through that one would compare the value
 * with another column, and find the wrong rows or none.  Nor one still
 * being built (CREATE INDEX CONCURRENTLY), which lacks rows.
 */
bool
ta_index_on_column(Oid indexid, Oid relid, const char *column)
{
	HeapTuple	tup;
	Form_pg_index idx;
	bool		ok;

	if (!OidIsValid(indexid))
		return false;
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(indexid));
	if (!HeapTupleIsValid(tup))
		return false;
	ok = ((Form_pg_class) GETSTRUCT(tup))->relam == BTREE_AM_OID;
	ReleaseSysCache(tup);
	if (!ok)
		return false;
	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexid));
	if (!HeapTupleIsValid(tup))
		return false;
	idx = (Form_pg_index) GETSTRUCT(tup);
	ok = idx->indrelid == relid && idx->indisvalid && idx->indnkeyatts >= 1 &&
		idx->indkey.values[0] != 0 &&
		idx->indkey.values[0] == get_attnum(relid, column);
	ReleaseSysCache(tup);
	return ok;
}

Oid
ta_relation_owner(Oid relid)
{
	HeapTuple	tp = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tp))->relowner;
	ReleaseSysCache(tp);
	return owner;
}

/*
 * An index scan started with its keys (index_beginscan's arguments changed
 * in PostgreSQL 18).
 */
IndexScanDesc
ta_index_scan(Relation rel, Relation irel, Snapshot snap, ScanKey keys, int nkeys)
{
	IndexScanDesc scan;

#if PG_VERSION_NUM >= 180000
	scan = index_beginscan(rel, irel, snap, NULL, nkeys, 0);
#else
	scan = index_beginscan(rel, irel, snap, nkeys, 0);
#endif
	index_rescan(scan, keys, nkeys, NULL, 0);
	return scan;
}

/*
 * Run one query as the owner of an extension table (SPI is connected): the
 * per-backend caches (rules.c, retention.c) read tables the writing roles
 * cannot, as PostgreSQL runs maintenance code on behalf of a table owner.
 */
void
ta_spi_exec_as_owner(Oid owner, const char *sql, int nargs, Oid *argtypes,
					 Datum *values, const char *nulls, bool read_only)
{
	Oid			save_userid;
	int			save_sec_context;
	int			rc;

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(owner, save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	rc = SPI_execute_with_args(sql, nargs, argtypes, values, nulls,
							   read_only, 0);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	if (rc < 0)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
}

/* The index in desc of the column named so, not dropped (-1: none). */
int
ta_attribute_index(TupleDesc desc, const char *name)
{
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return i;
	}
	return -1;
}

/* Two values of a text column, NULL equal to NULL, compared bytewise. */
bool
ta_same_text(Datum a, bool anull, Datum b, bool bnull)
{
	text	   *x,
			   *y;

	if (anull || bnull)
		return anull && bnull;
	x = DatumGetTextPP(a);
	y = DatumGetTextPP(b);
	return VARSIZE_ANY_EXHDR(x) == VARSIZE_ANY_EXHDR(y) &&
		memcmp(VARDATA_ANY(x), VARDATA_ANY(y), VARSIZE_ANY_EXHDR(x)) == 0;
}

/*
 * Run fn(arg) in an internal subtransaction.  Returns NULL when it succeeded,
 * or the error it raised, copied into the caller's memory context once the
 * subtransaction is rolled back: for a write whose failure must not undo the
 * caller's work (alerts.c, read_audit.c), which reports it as a warning.
 */
ErrorData *
ta_try_in_subtransaction(void (*fn) (void *arg), void *arg)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_END_TRY();
	return edata;
}

/* ---- per-backend caches of extension tables ---- */

static void
cache_inval_callback(Datum arg, Oid relid)
{
	TaCache    *cache = (TaCache *) DatumGetPointer(arg);

	for (int i = 0; i < TA_CACHE_MAX_TABLES && cache->tables[i] != NULL; i++)
		if (relid == InvalidOid || relid == cache->relids[i])
		{
			cache->valid = false;
			cache->invalidations++;
			return;
		}
}

/*
 * The cache's contents, built by fill() when there are none or a relcache
 * invalidation named one of its tables (their statement triggers call
 * rules_changed(), which sends one: every backend drops its copy, this one
 * at its next command, others at commit).  fill() runs with SPI connected,
 * as the first table's owner may read them (ta_spi_exec_as_owner()), under
 * a fresh snapshot rather than the transaction's (a REPEATABLE READ
 * transaction older than a change would otherwise cache the old contents,
 * and no later invalidation would come to correct it), and allocates what
 * it keeps in the context it is given.  The previous contents are freed:
 * callers copy what they keep across a call that may reload.
 */
void *
ta_cache_get(TaCache *cache, TaCacheFill fill)
{
	MemoryContext callercxt = CurrentMemoryContext;
	MemoryContext newcxt;
	Oid			owner;
	uint64		invalidations;
	void	   *data = NULL;

	if (cache->valid && cache->data != NULL)
		return cache->data;

	for (int i = 0; i < TA_CACHE_MAX_TABLES && cache->tables[i] != NULL; i++)
		cache->relids[i] = ta_schema_relid(cache->tables[i], false);
	if (!cache->registered)
	{
		CacheRegisterRelcacheCallback(cache_inval_callback, PointerGetDatum(cache));
		cache->registered = true;
	}
	owner = ta_relation_owner(cache->relids[0]);
	invalidations = cache->invalidations;

	newcxt = AllocSetContextCreate(CacheMemoryContext, "tool_audit cache",
								   ALLOCSET_SMALL_SIZES);
	MemoryContextSetIdentifier(newcxt, cache->tables[0]);
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		PushActiveSnapshot(GetLatestSnapshot());
		data = fill(newcxt, owner);
		PopActiveSnapshot();
		SPI_finish();
	}
	PG_CATCH();
	{
		/* never delete the context we are in */
		MemoryContextSwitchTo(callercxt);
		MemoryContextDelete(newcxt);
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (cache->context != NULL)
		MemoryContextDelete(cache->context);
	cache->context = newcxt;
	cache->data = data;
	cache->loads++;
	/* a change of our own invalidates at once; that costs one more reload */
	cache->valid = (invalidations == cache->invalidations);
	return data;
}

/* A text value copied for a cache's fill: its bytes, NUL-terminated, and its length. */
char *
ta_cache_text(Datum d, int *len)
{
	text	   *t = DatumGetTextPP(d);

	*len = VARSIZE_ANY_EXHDR(t);
	return pnstrdup(VARDATA_ANY(t), *len);
}
