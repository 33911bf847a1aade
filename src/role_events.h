/*-------------------------------------------------------------------------
 *
 * role_events.h
 *		Membership changes of the extension's roles as admin events
 *		(role_events.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_ROLE_EVENTS_H
#define TA_ROLE_EVENTS_H

#include "nodes/parsenodes.h"

extern bool ta_record_role_changes;

extern void ta_role_events_init(void);
extern void ta_record_role_change(Node *stmt);
extern List *ta_role_drop_memberships(Node *stmt);
extern void ta_record_role_drops(List *memberships);

#endif							/* TA_ROLE_EVENTS_H */
