/*-------------------------------------------------------------------------
 *
 * layout.h
 *		What the C code knows of an audit table's layout: where its columns
 *		are, which it hashes, its id sequence and its indexes (layout.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_LAYOUT_H
#define TA_LAYOUT_H

#include "utils/rel.h"

/* Every column of an audit table the C code reads or writes. */
typedef enum TaColumn
{
	TA_COL_ID,
	TA_COL_EVENT_ID,
	TA_COL_RECORDED_AT,
	TA_COL_OCCURRED_AT,
	TA_COL_RECORDED_BY,
	TA_COL_TENANT_ID,
	TA_COL_CONVERSATION_ID,
	TA_COL_TURN_NUMBER,
	TA_COL_USER_ID,
	TA_COL_USER_ROLE,
	TA_COL_MODEL,
	TA_COL_TOOL_NAME,
	TA_COL_TOOL_CALL_ID,
	TA_COL_CALL_TRIGGER,
	TA_COL_PURPOSE,
	TA_COL_SUBJECT_ID,
	TA_COL_ARGUMENTS,
	TA_COL_RESULT_SUMMARY,
	TA_COL_SUCCESS,
	TA_COL_ERROR,
	TA_COL_DURATION_MS,
	TA_COL_CLIENT_IP,
	TA_COL_USER_AGENT,
	TA_COL_SESSION_METADATA,
	TA_COL_EVENT_TYPE,
	TA_COL_ACTOR,
	TA_COL_ACTOR_TYPE,
	TA_COL_PAYLOAD,
	TA_COL_METADATA,
	TA_COL_REASON,
	TA_COL_TABLE_NAME,			/* data_changes (1.5 on) */
	TA_COL_OPERATION,
	TA_COL_ROW_KEY,
	TA_COL_OLD_VALUES,
	TA_COL_NEW_VALUES,
	TA_COL_TXID,
	TA_COL_APPLICATION_NAME,
	TA_COL_RETENTION_POLICY,	/* 1.4 on */
	TA_COL_EXPIRES_AT,
	TA_COL_BREAK_GLASS,			/* 1.5 on, tool_calls */
	TA_COL_IMPERSONATED_BY,	/* 1.5 on */
	TA_COL_CALL_PHASE,			/* 1.5 on */
	TA_COL_CALL_EVENT_ID,
	TA_COL_CALLER_TXID,
	TA_COL_STARTED_AT,			/* tool_calls (1.5 on): the client's time */
	/* the chain columns (1.1 on), which the row hash does not cover */
	TA_COL_ROW_HASH,
	TA_COL_CHAIN_ID,
	TA_COL_CHAIN_LANE,
	TA_COL_CHAIN_SEQ,
	TA_COL_CHAIN_HASH,
	TA_NCOLUMNS
} TaColumn;

#define TA_FIRST_CHAIN_COLUMN	TA_COL_ROW_HASH

/* A column the row hash covers, in the order it is hashed (by name). */
typedef struct TaHashedColumn
{
	int			index;			/* in the tuple descriptor, from 0 */
	Oid			typid;
	char		tag;			/* doc/canonical-encoding.md: 'i', 'f', 's', ...;
								 * '?': a type the row hash cannot encode */
	int16		typlen;			/* for 'i': 2, 4 or 8 */
	int			namelen;
	char		name[NAMEDATALEN];
} TaHashedColumn;

typedef struct TaLayout
{
	Oid			relid;
	char		name[NAMEDATALEN];	/* tool_calls, admin_events or data_changes */
	int			namelen;
	int			natts;			/* attributes of the tuple descriptor */
	bool		in_schema;		/* a relation of schema tool_audit */
	int			column[TA_NCOLUMNS];	/* index from 0; -1: the table has none */
	int			time_column;	/* recorded_at or occurred_at */
	bool		chained;		/* has the chain columns (1.1 on) */
	Oid			id_sequence;	/* <table>_id_seq */
	Oid			chain_index;	/* <table>_chain_position; invalid before 1.1 */
	Oid			event_id_index; /* <table>_event_id_key */
	Oid			call_event_index;	/* tool_calls_call_event_id (1.5 on); else
									 * invalid */
	Oid			tool_call_index;	/* tool_calls_tool_call_id (1.5 on); else
									 * invalid */
	uint64		generation;		/* a new number at every build: what a
								 * cache checked against this layout keys on */
	int			unencodable;	/* index in hashed[] of a column the row hash
								 * cannot encode, or -1 */
	int			nhashed;
	TaHashedColumn hashed[FLEXIBLE_ARRAY_MEMBER];
} TaLayout;

extern void ta_layout_init(void);
extern const TaLayout *ta_layout_of(Relation rel);
extern Relation ta_layout_open(const char *table, LOCKMODE lockmode,
							   const TaLayout **layout);
extern const char *ta_column_name(TaColumn col);
extern int	ta_column(const TaLayout *layout, TaColumn col);
extern Oid	ta_id_sequence(const TaLayout *layout);
extern Oid	ta_chain_index(const TaLayout *layout);
extern Oid	ta_event_id_index(const TaLayout *layout);

#endif							/* TA_LAYOUT_H */
