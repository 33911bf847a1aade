/*-------------------------------------------------------------------------
 *
 * catalog.h
 *		Finding the extension's objects in the catalogs (catalog.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_CATALOG_H
#define TA_CATALOG_H

#include "access/genam.h"
#include "utils/relcache.h"
#include "utils/snapshot.h"

#define TA_SCHEMA	"tool_audit"

extern Oid	ta_schema_oid(bool missing_ok);
extern Oid	ta_schema_relid(const char *name, bool missing_ok);
extern void ta_missing_relation(const char *name) pg_attribute_noreturn();
extern Oid	ta_relation_owner(Oid relid);
extern IndexScanDesc ta_index_scan(Relation rel, Relation irel, Snapshot snap,
								   ScanKey keys, int nkeys);
extern void ta_spi_exec_as_owner(Oid owner, const char *sql, int nargs, Oid *argtypes,
								 Datum *values, const char *nulls, bool read_only);

#endif							/* TA_CATALOG_H */
