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
extern bool ta_index_on_column(Oid indexid, Oid relid, const char *column);

#define TA_NAUDIT_TABLES 3
extern const char *const ta_audit_tables[TA_NAUDIT_TABLES];
extern bool ta_audit_table_expected(const char *table);
extern IndexScanDesc ta_index_scan(Relation rel, Relation irel, Snapshot snap,
								   ScanKey keys, int nkeys);
extern void ta_spi_exec_as_owner(Oid owner, const char *sql, int nargs, Oid *argtypes,
								 Datum *values, const char *nulls, bool read_only);
extern int	ta_attribute_index(TupleDesc desc, const char *name);
extern bool ta_same_text(Datum a, bool anull, Datum b, bool bnull);
extern ErrorData *ta_try_in_subtransaction(void (*fn) (void *arg), void *arg);

/*
 * A per-backend copy of some extension tables (rules.c, retention.c):
 * declare it static with its tables, the first the one whose owner reads
 * them, e.g. {.tables = {"sanitize_rules", "pseudonym_keys"}}.
 */
#define TA_CACHE_MAX_TABLES 3

typedef struct TaCache
{
	const char *tables[TA_CACHE_MAX_TABLES];	/* NULL after the last */
	uint64		loads;			/* bumped at every reload */
	/* private to catalog.c */
	Oid			relids[TA_CACHE_MAX_TABLES];
	void	   *data;
	bool		valid;
	bool		registered;
	uint64		invalidations;
	MemoryContext context;
} TaCache;

typedef void *(*TaCacheFill) (MemoryContext cxt, Oid owner);
extern void *ta_cache_get(TaCache *cache, TaCacheFill fill);
extern char *ta_cache_text(Datum d, int *len);

#endif							/* TA_CATALOG_H */
