/*-------------------------------------------------------------------------
 *
 * restore.h
 *		Rows restored from a dump with no setting, checked as they come and
 *		at commit; the emptied-trail check of verify() (restore.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_RESTORE_H
#define TA_RESTORE_H

#include "layout.h"

extern bool ta_row_brings_place(const TaLayout *layout, const Datum *values,
								const bool *nulls);
extern void ta_check_restored_row(Relation rel, const TaLayout *layout,
								  Datum *values, bool *nulls);

#endif							/* TA_RESTORE_H */
