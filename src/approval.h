/*-------------------------------------------------------------------------
 *
 * approval.h
 *		Dual approval (approval.c): its settings, the person behind a
 *		session, and the check the extension's C functions make.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_APPROVAL_H
#define TA_APPROVAL_H

/* tool_audit.require_dual_approval */
extern bool ta_require_dual_approval;

extern void ta_approval_init(void);

/*
 * With tool_audit.require_dual_approval on, consumes the caller's approved
 * request for action with payload {key: value} (tool_audit.consume_approval())
 * or raises its error; does nothing with the setting off.  SPI connected.
 */
extern void ta_approval_gate(const char *action, const char *key, text *value);

#endif							/* TA_APPROVAL_H */
