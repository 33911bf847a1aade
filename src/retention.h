/*-------------------------------------------------------------------------
 *
 * retention.h
 *		The retention a new audit row gets when it is written: its policy
 *		and its expiry (retention.c), and the test clock.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_RETENTION_H
#define TA_RETENTION_H

#include "datatype/timestamp.h"

/* tool_audit.test_clock_offset, in microseconds (0: the real clock) */
extern bool ta_test_clock_set;

extern void ta_retention_init(void);
extern TimestampTz ta_record_time(void);

/*
 * The policy of a row of tool_calls (admin_events false) or admin_events,
 * from its tool name or event type (NULL: none), and the days of retention
 * it gives the tenant (NULL: none).  *policy is NULL when no policy covers
 * the row (the table has no default policy); the days are then the floor's.
 */
extern void ta_retention_decide(bool admin_events, const char *name, int namelen,
								const char *tenant, int tenantlen, bool tenant_null,
								const char **policy, int *policylen, int32 *days);
/* The same for a row of any audit table (data_changes: by tracked table name). */
extern void ta_retention_decide_for(const char *table, const char *name, int namelen,
									const char *tenant, int tenantlen, bool tenant_null,
									const char **policy, int *policylen, int32 *days);
extern TimestampTz ta_expiry(TimestampTz at, int32 days);
/* Does the name match the pattern, '*' standing for any characters? (bytewise) */
extern bool ta_glob_match(const char *p, int plen, const char *s, int slen);

#endif							/* TA_RETENTION_H */
