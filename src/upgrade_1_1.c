/*-------------------------------------------------------------------------
 *
 * upgrade_1_1.c
 *		tool_audit.chain_existing_rows(): for the 1.0 -> 1.1 upgrade script
 *		only, which hashes and chains the rows 1.0 recorded before chains
 *		existed.
 *
 * The rows go in id order (their commit order is not known any more), every
 * chain in lane 0.  The script's caller holds a lock on the table that keeps
 * writers out, so the heads are kept here rather than through lane locks (a
 * table with many tenants would need one lock per tenant in one
 * transaction).  Each row gets its chain columns by an UPDATE, which the
 * append-only guards (guard.c) let through only while
 * ta_chaining_existing_rows() is true: a backend-local flag, never a GUC,
 * and only inside the extension's own script.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "chain.h"
#include "guard.h"
#include "hash.h"
#include "lane_hint.h"
#include "layout.h"
#include "upgrade_1_1.h"

static bool chaining_existing_rows = false;

bool
ta_chaining_existing_rows(void)
{
	return chaining_existing_rows;
}

/* The head of a chain's lane 0, as the rows chained so far leave it. */
static TaChainHead *
lane_zero(HTAB *heads, int64 chain_id)
{
	bool		found;
	TaChainHead *h = hash_search(heads, &chain_id, HASH_ENTER, &found);

	if (!found)
	{
		h->lane = 0;
		h->seq = 0;
		memset(h->link, 0, TA_HASH_LEN);
	}
	return h;
}

/* Hash and chain one row, and store its chain columns by the prepared UPDATE. */
static void
chain_one_row(const TaLayout *layout, HTAB *heads, SPIPlanPtr update,
			  Datum *values, bool *nulls)
{
	const int  *col = layout->column;
	unsigned char row_hash[TA_HASH_LEN];
	TaChainHead *head;
	Datum		args[6];
	int			rc;

	ta_row_hash(layout, values, nulls, row_hash);
	head = lane_zero(heads, ta_chain_id(layout, values, nulls));
	ta_chain_advance(head, row_hash);
	ta_chain_store(layout, values, nulls, row_hash, head);
	args[0] = values[col[TA_COL_ROW_HASH]];
	args[1] = values[col[TA_COL_CHAIN_ID]];
	args[2] = values[col[TA_COL_CHAIN_LANE]];
	args[3] = values[col[TA_COL_CHAIN_SEQ]];
	args[4] = values[col[TA_COL_CHAIN_HASH]];
	args[5] = values[ta_column(layout, TA_COL_ID)];
	rc = SPI_execute_plan(update, args, NULL, false, 0);
	if (rc != SPI_OK_UPDATE || SPI_processed != 1)
		elog(ERROR, "could not chain row " INT64_FORMAT " of tool_audit.%s",
			 DatumGetInt64(args[5]), layout->name);
}

/*
 * tool_audit.chain_existing_rows(regclass) RETURNS bigint
 *
 * Chains the table's unchained rows and returns how many.  The function is
 * dropped again by the script that created it.
 */
PG_FUNCTION_INFO_V1(chain_existing_rows);
Datum
chain_existing_rows(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	Relation	rel;
	const TaLayout *layout;
	HTAB	   *heads;
	HASHCTL		ctl;
	Datum	   *values;
	bool	   *nulls;
	int		   *spi_col;
	SPIPlanPtr	update;
	Portal		portal;
	volatile int64 count = 0;
	Oid			argtypes[6] = {BYTEAOID, INT8OID, INT4OID, INT8OID, BYTEAOID, INT8OID};
	MemoryContext rowcxt;

	if (!ta_in_own_script() || !ta_is_protected_relation(relid))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("chain_existing_rows() is for tool_audit's upgrade script only")));

	rel = table_open(relid, ShareRowExclusiveLock);
	layout = ta_layout_of(rel);
	if (!layout->chained)
		(void) ta_column(layout, TA_COL_ROW_HASH);	/* raises the error */
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(TaChainHead);
	ctl.hcxt = CurrentMemoryContext;
	heads = hash_create("tool_audit chain heads", 1024, &ctl,
						HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	values = palloc(sizeof(Datum) * layout->natts);
	nulls = palloc(sizeof(bool) * layout->natts);
	spi_col = palloc(sizeof(int) * layout->natts);
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "chain_existing_rows",
								   ALLOCSET_DEFAULT_SIZES);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	update = SPI_prepare(psprintf("UPDATE tool_audit.%s SET row_hash = $1, chain_id = $2,"
								  " chain_lane = $3, chain_seq = $4, chain_hash = $5"
								  " WHERE id OPERATOR(pg_catalog.=) $6", layout->name),
						 6, argtypes);
	if (update == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	portal = SPI_cursor_open_with_args(NULL,
									   psprintf("SELECT * FROM tool_audit.%s"
												" WHERE row_hash IS NULL ORDER BY id", layout->name),
									   0, NULL, NULL, NULL, true, 0);
	chaining_existing_rows = true;
	ta_lane_hint_invalidate();
	PG_TRY();
	{
		TupleDesc	desc = RelationGetDescr(rel);

		for (;;)
		{
			SPITupleTable *tt;
			uint64		nrows;

			SPI_cursor_fetch(portal, true, 1000);
			nrows = SPI_processed;
			if (nrows == 0)
				break;
			tt = SPI_tuptable;
			for (int i = 0; i < layout->natts; i++)
				spi_col[i] = TupleDescAttr(desc, i)->attisdropped ? 0 :
					SPI_fnumber(tt->tupdesc, NameStr(TupleDescAttr(desc, i)->attname));
			for (uint64 r = 0; r < nrows; r++)
			{
				MemoryContext old = MemoryContextSwitchTo(rowcxt);

				CHECK_FOR_INTERRUPTS();
				for (int i = 0; i < layout->natts; i++)
				{
					nulls[i] = true;
					values[i] = (Datum) 0;
					if (spi_col[i] > 0)
						values[i] = SPI_getbinval(tt->vals[r], tt->tupdesc, spi_col[i], &nulls[i]);
				}
				chain_one_row(layout, heads, update, values, nulls);
				MemoryContextSwitchTo(old);
				MemoryContextReset(rowcxt);
				count++;
			}
			SPI_freetuptable(tt);
		}
	}
	PG_FINALLY();
	{
		chaining_existing_rows = false;
	}
	PG_END_TRY();
	SPI_cursor_close(portal);
	SPI_finish();
	table_close(rel, NoLock);
	PG_RETURN_INT64(count);
}
