/*-------------------------------------------------------------------------
 *
 * constraints.c
 *	  The fork constraint of an audit table: a unique index on
 *	  (chain_id, chain_lane, chain_seq).
 *
 * Each audit table has one (tool_calls_chain_position,
 * admin_events_chain_position, data_changes_chain_position): it is what makes
 * two rows at one chain position impossible, whatever goes wrong in a
 * writer.  A superuser can drop it with the guards bypassed; the rows may
 * all still verify, but nothing stops a fork any more, so its absence is a
 * problem.  Any index of the table counts that is a valid, ready, live,
 * unique btree index whose key is exactly those three columns (in any
 * order), without a predicate or expressions: the name is not trusted, and
 * a non-unique, partial or invalid index of that name does not count.
 *
 * verifier/constraints.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <string.h>

#include <libpq-fe.h>

#include "verify.h"

/*
 * Report the table's fork constraint if it is missing; the table itself
 * missing is the walk's to report.  Returns false if the run should stop.
 */
bool
check_fork_constraint(PGconn *conn, const char *table)
{
	/* every name schema-qualified: the session's search_path is not ours */
	const char *sql =
		"WITH t AS (SELECT pg_catalog.to_regclass(pg_catalog.quote_ident('tool_audit')"
		"             OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident($1)) AS rel)"
		" SELECT t.rel IS NULL, EXISTS ("
		"   SELECT FROM pg_catalog.pg_index i"
		"     JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.indexrelid"
		"     JOIN pg_catalog.pg_am am ON am.oid OPERATOR(pg_catalog.=) c.relam"
		"    WHERE i.indrelid OPERATOR(pg_catalog.=) t.rel"
		"      AND i.indisunique AND i.indisvalid AND i.indisready AND i.indislive"
		"      AND i.indpred IS NULL AND i.indexprs IS NULL"
		"      AND am.amname OPERATOR(pg_catalog.=) 'btree'"
		"      AND i.indnkeyatts OPERATOR(pg_catalog.=) 3"
		"      AND (SELECT pg_catalog.array_agg(a.attname::pg_catalog.text ORDER BY a.attname)"
		"             FROM pg_catalog.pg_attribute a"
		"            WHERE a.attrelid OPERATOR(pg_catalog.=) t.rel"
		"              AND a.attnum OPERATOR(pg_catalog.=) ANY"
		"                  (ARRAY[i.indkey[0], i.indkey[1], i.indkey[2]]))"
		"          OPERATOR(pg_catalog.=) '{chain_id,chain_lane,chain_seq}'::pg_catalog.text[])"
		"   FROM t";
	const char *params[1] = {table};
	PGresult   *res;
	bool		missing_table;
	bool		present;
	char		problem[200];

	res = PQexecParams(conn, sql, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
		fatal("could not read the indexes of %s: %s", table, PQerrorMessage(conn));
	missing_table = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	present = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
	PQclear(res);
	if (missing_table || present)
		return true;
	snprintf(problem, sizeof(problem),
			 "fork constraint missing: no valid unique index on "
			 "(chain_id, chain_lane, chain_seq) (%s_chain_position)", table);
	return report_problem(table, POS_NONE, POS_NONE, POS_NONE, NULL, problem);
}
