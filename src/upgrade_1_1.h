/*-------------------------------------------------------------------------
 *
 * upgrade_1_1.h
 *		The 1.0 -> 1.1 upgrade's chaining of existing rows (upgrade_1_1.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_UPGRADE_1_1_H
#define TA_UPGRADE_1_1_H

extern bool ta_chaining_existing_rows(void);

#endif							/* TA_UPGRADE_1_1_H */
