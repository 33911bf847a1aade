/*-------------------------------------------------------------------------
 *
 * alerts.h
 *		Alert rules matched against each new audit row, and the one way
 *		alerts are raised from C (alerts.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_ALERTS_H
#define TA_ALERTS_H

#include "layout.h"

/* A new row of tool_calls or admin_events, about to be stored. */
extern void ta_alerts_tool_call(Relation rel, const TaLayout *layout,
								Datum *values, bool *nulls);
extern void ta_alerts_admin_event(const TaLayout *layout, Datum *values, bool *nulls);

/*
 * Raises (or grows) an alert of a rule (usually of kind "check"), for a
 * tenant (NULL: none) with a burst key and a JSON object of detail, through
 * tool_audit.raise_alert() as the owner, in the caller's transaction; does
 * nothing where nothing can be written (a standby, a read-only transaction)
 * or before the extension has alerts.  A disabled or missing rule raises
 * nothing.
 */
extern void ta_alert_raise(const char *rule, const char *tenant, const char *burst_key,
						   const char *detail_json);

#endif							/* TA_ALERTS_H */
