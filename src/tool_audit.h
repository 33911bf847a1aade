/*-------------------------------------------------------------------------
 *
 * tool_audit.h
 *		Declarations shared by the C files of the tool_audit extension.
 *
 * Every C file has one job (see the header block of each); this header is
 * the only place where they meet.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TOOL_AUDIT_H
#define TOOL_AUDIT_H

#include "postgres.h"

#include "utils/jsonb.h"

#define TA_SCHEMA				"tool_audit"
#define TA_REDACTED				"***REDACTED***"
#define TA_RESULT_SIZE_LIMIT	1000	/* characters, as in the seed */
#define TA_MAX_KEY_ID_LEN		63

/* ---- tool_audit.c: settings ---- */
extern int	ta_max_jsonb_size_kb;
extern int	ta_max_depth;
extern char *ta_summary_keys;
extern bool ta_restoring;

extern void ta_note_audit_write(void);

/* ---- rules.c: the rule and key cache ---- */
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

typedef enum TaDetector
{
	TA_DETECT_BEARER,
	TA_DETECT_JWT,
	TA_DETECT_PEM_PRIVATE_KEY,
	TA_DETECT_API_KEY,
	TA_DETECT_US_SSN,
	TA_DETECT_CARD_NUMBER,
	TA_DETECT__COUNT
} TaDetector;

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

typedef struct TaRuleSet TaRuleSet;

struct TaRuleSet
{
	int			nkey_rules;
	TaRule	   *key_rules;		/* in (priority, rule_id) order */
	int			nvalue_rules;
	TaRule	   *value_rules;	/* in (priority, rule_id) order */
	int			nkey_ids;
	char	  **key_ids;		/* every key id, active or retired */
	bool		has_key;
	char		key_id[TA_MAX_KEY_ID_LEN + 1];
	int			key_len;
	unsigned char key[64];
	const TaRuleSet *builtin;	/* the same keys, built-in rules only */
};

extern const TaRuleSet *ta_get_rules(void);
extern Oid	ta_schema_oid(bool missing_ok);
extern char *ta_normalize_key(const char *key, int len);
extern Oid	ta_relation_owner(Oid relid);

/* ---- pseudonym.c: keyed pseudonyms ---- */
extern char *ta_pseudonymize(const TaRuleSet *rs, const char *value, int len);
extern bool ta_looks_like_pseudonym(const TaRuleSet *rs, const char *value,
									int len);
extern void ta_random_bytes(unsigned char *buf, int len);

/* ---- detect.c: secrets found by value ---- */
typedef struct TaSpan
{
	int			start;			/* byte offset */
	int			end;			/* byte offset, exclusive */
	int			rule;			/* index of the value rule that found it */
} TaSpan;

typedef struct TaSpanList
{
	TaSpan	   *items;
	int			n;
	int			cap;
} TaSpanList;

extern const char *ta_detector_name(TaDetector d);
extern bool ta_detector_from_name(const char *name, TaDetector *d);
extern void ta_span_add(TaSpanList *list, int start, int end, int rule);
extern bool ta_detect_possible(TaDetector d, const char *s, int len);
extern void ta_detect(TaDetector d, const char *s, int len, int rule,
					  TaSpanList *out);

/* ---- sanitize.c: the jsonb walker ---- */
extern Jsonb *ta_sanitize_jsonb(const TaRuleSet *rs, Jsonb *in,
								const char *what);
extern char *ta_sanitize_text(const TaRuleSet *rs, const char *s, int len,
							  const char *what);

/* ---- summarize.c: result summaries ---- */
extern Jsonb *ta_summarize_result(const TaRuleSet *rs, Jsonb *result,
								  int success_override, bool *success,
								  text **error);

/* ---- guard.c: append-only enforcement ---- */
extern bool ta_is_protected_relation(Oid relid);
extern void ta_guard_install_hooks(void);

#endif							/* TOOL_AUDIT_H */
