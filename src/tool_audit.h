/*-------------------------------------------------------------------------
 *
 * tool_audit.h
 *		The extension's settings (GUCs) and the commit-time durability
 *		guarantee (tool_audit.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TOOL_AUDIT_H
#define TOOL_AUDIT_H

extern int	ta_max_jsonb_size_kb;
extern int	ta_max_depth;
extern char *ta_summary_keys;
extern bool ta_restoring;
extern char *ta_signing_key_file;
extern char *ta_call;

extern void ta_note_audit_write(void);

#endif							/* TOOL_AUDIT_H */
