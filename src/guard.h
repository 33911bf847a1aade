/*-------------------------------------------------------------------------
 *
 * guard.h
 *		Append-only enforcement for the audit tables (guard.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_GUARD_H
#define TA_GUARD_H

extern bool ta_is_protected_relation(Oid relid);
extern bool ta_in_own_script(void);
extern void ta_guard_install_hooks(void);
extern void ta_sanctioned_change_begin(void);
extern void ta_sanctioned_change_end(void);
extern bool ta_sanctioned_change(void);
extern bool ta_sanctioned_change_in_xact(void);

#endif							/* TA_GUARD_H */
