/*-------------------------------------------------------------------------
 *
 * protections.h
 *		The audit tables' protective triggers and the extension's event
 *		triggers, in one list.
 *
 * verify() reports each one missing or not enabled (check_protections() in
 * verify.c: "protective trigger ... missing/disabled", "event trigger ...
 * missing/disabled"), so the security state's expectation (security_state.c)
 * leaves their enabled state out and does not report one missing again.
 * Both files read these tables: a trigger added here is checked by both.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_PROTECTIONS_H
#define TA_PROTECTIONS_H

typedef struct TaProtectiveTrigger
{
	const char *table;			/* an audit table of the extension's schema */
	const char *trigger;
} TaProtectiveTrigger;

static const TaProtectiveTrigger ta_protective_triggers[] = {
	{"tool_calls", "tool_calls_before_insert"},
	{"tool_calls", "tool_calls_append_only"},
	{"tool_calls", "tool_calls_append_only_row"},
	{"admin_events", "admin_events_before_insert"},
	{"admin_events", "admin_events_append_only"},
	{"admin_events", "admin_events_append_only_row"},
	{"data_changes", "data_changes_before_insert"},
	{"data_changes", "data_changes_append_only"},
	{"data_changes", "data_changes_append_only_row"}
};

static const char *const ta_protective_event_triggers[] = {
	"tool_audit_ddl_start", "tool_audit_sql_drop", "tool_audit_table_rewrite"
};

#endif							/* TA_PROTECTIONS_H */
