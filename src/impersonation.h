/*-------------------------------------------------------------------------
 *
 * impersonation.h
 *		Who impersonates a user when a row is written (impersonation.c), and
 *		the record of a read of the audit trail (read_audit.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_IMPERSONATION_H
#define TA_IMPERSONATION_H

#include "datatype/timestamp.h"

extern const char *ta_impersonator(const char *tenant, int tenantlen,
								   const char *user, int userlen,
								   const char *recorder, int recorderlen,
								   TimestampTz at, int *adminlen);

extern bool ta_unrecorded_standby_reads;
extern void ta_read_audit_init(void);
extern void ta_record_read(const char *function, const char *arguments_sql,
						   int nargs, Oid *argtypes, Datum *args, const char *argnulls,
						   int64 rows, bool found_problems);

#endif							/* TA_IMPERSONATION_H */
