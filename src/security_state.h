/*-------------------------------------------------------------------------
 *
 * security_state.h
 *		The fingerprint of who can see and change what (security_state.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_SECURITY_STATE_H
#define TA_SECURITY_STATE_H

#include "lib/stringinfo.h"
#include "utils/jsonb.h"

/* reports one problem; verify.c adapts it to its result rows */
typedef void (*TaSecStateReport) (void *arg, const char *problem);

/* the state read once, for the checks of one run */
typedef struct TaSecState TaSecState;
extern TaSecState *ta_security_state_read(void);

/* appends ,"security_state":{component: hex, ..., "overall": hex} */
extern void ta_security_state_append(StringInfo buf);

/*
 * verify(): the state (NULL: read it now) against the expectation recorded
 * at install/upgrade
 */
extern void ta_security_state_check_install(const TaSecState *state, bool name_bindings,
											TaSecStateReport report, void *arg);

/* verify_digest(): the state against the digest's, when it has one */
extern void ta_security_state_check_digest(Jsonb *d, const TaSecState *state,
										   TaSecStateReport report, void *arg);

#endif							/* TA_SECURITY_STATE_H */
