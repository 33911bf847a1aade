/*-------------------------------------------------------------------------
 *
 * rules.h
 *		The sanitizing rules and pseudonymization keys, as cached per
 *		backend (rules.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_RULES_H
#define TA_RULES_H

#include "fmgr.h"

#include "detect.h"

#define TA_MAX_KEY_ID_LEN	63

typedef enum TaAction
{
	TA_ACTION_NONE = 0,
	TA_ACTION_KEEP,
	TA_ACTION_REDACT,
	TA_ACTION_PSEUDONYMIZE,
	TA_ACTION_DROP
} TaAction;

typedef enum TaMatch
{
	TA_MATCH_EXACT,
	TA_MATCH_PREFIX,
	TA_MATCH_SUFFIX,
	TA_MATCH_CONTAINS,
	TA_MATCH_REGEX,
	TA_MATCH_DETECTOR
} TaMatch;

typedef struct TaRule
{
	int			rule_id;
	TaMatch		match;
	TaAction	action;
	char	   *pattern;		/* normalized, for exact/prefix/suffix/contains */
	int			pattern_len;
	text	   *regex;			/* for TA_MATCH_REGEX */
	TaDetector	detector;		/* for TA_MATCH_DETECTOR */
} TaRule;

/*
 * What the key rules decided for a key, remembered for the life of the rule
 * set (sanitize.c): documents repeat the same few dozen keys.
 */
#define TA_KEY_MEMO_SIZE	128	/* entries; a power of two */
#define TA_KEY_MEMO_MAX_LEN 40	/* longer keys are not remembered */
#define TA_KEY_MEMO_PROBES	4	/* slots a key may take */

StaticAssertDecl(TA_KEY_MEMO_MAX_LEN <= PG_INT8_MAX, "a memo key length fits in int8");
StaticAssertDecl((TA_KEY_MEMO_SIZE & (TA_KEY_MEMO_SIZE - 1)) == 0, "memo size is a power of two");

typedef struct TaKeyMemo
{
	int8		len;			/* -1: empty */
	TaAction	action;
	char		key[TA_KEY_MEMO_MAX_LEN];
} TaKeyMemo;

typedef struct TaRuleSet TaRuleSet;

struct TaRuleSet
{
	int			nkey_rules;
	TaRule	   *key_rules;		/* in (priority, rule_id) order */
	int			nvalue_rules;
	TaRule	   *value_rules;	/* in (priority, rule_id) order */
	int			min_value_len;	/* shorter strings no value rule can match */
	TaKeyMemo  *key_memo;		/* TA_KEY_MEMO_SIZE entries */
	int			nkey_ids;
	char	  **key_ids;		/* every key id, active or retired */
	bool		has_key;
	char		key_id[TA_MAX_KEY_ID_LEN + 1];
	int			key_len;
	unsigned char key[64];
	const TaRuleSet *builtin;	/* the same keys, built-in rules only */
};

extern const TaRuleSet *ta_get_rules(void);
extern char *ta_normalize_key(const char *key, int len);

#endif							/* TA_RULES_H */
