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

#include "access/htup_details.h"
#include "access/relscan.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/lsyscache.h"
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
