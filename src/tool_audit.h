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

#include "access/genam.h"
#include "access/htup.h"
#include "lib/stringinfo.h"
#include "utils/jsonb.h"
#include "utils/relcache.h"

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
	TA_DETECT_URL_CREDENTIALS,
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
extern int	ta_detector_min_length(TaDetector d);
extern bool ta_detect_possible(TaDetector d, const char *s, int len);
extern void ta_detect(TaDetector d, const char *s, int len, int rule,
					  TaSpanList *out);

/* ---- sanitize.c: the jsonb walker ---- */
extern Jsonb *ta_sanitize_jsonb(const TaRuleSet *rs, Jsonb *in,
								const char *what);
extern char *ta_sanitize_text(const TaRuleSet *rs, const char *s, int len,
							  const char *what);

/* ---- summarize.c: result summaries ---- */
extern const char *ta_jsonb_type_name(Jsonb *j);
extern Jsonb *ta_summarize_result(const TaRuleSet *rs, Jsonb *result,
								  int success_override, bool *success,
								  text **error);

/* ---- rowhash.c: canonical encoding and row hashes ---- */
#define TA_HASH_LEN 32

typedef struct TaChainColumns
{
	int			row_hash;		/* indexes in the tuple descriptor, from 0 */
	int			chain_id;
	int			chain_lane;
	int			chain_seq;
	int			chain_hash;
	int			tenant_id;
	int			id;
} TaChainColumns;

extern void ta_sha256(const void *data, size_t len,
					  unsigned char out[TA_HASH_LEN]);
extern void ta_append_utf8(StringInfo buf, const char *s, int len);
extern void ta_canonical_json(StringInfo buf, Jsonb *j);
extern void ta_chain_columns(Relation rel, TaChainColumns *cols);
extern void ta_row_hash(Relation rel, Datum *values, bool *nulls,
						unsigned char out[TA_HASH_LEN]);

/* ---- chain.c: chains in commit order ---- */
extern IndexScanDesc ta_index_scan(Relation rel, Relation irel, Snapshot snap,
								   ScanKey keys, int nkeys);
extern void ta_chain_init(void);
extern int64 ta_chain_id(const char *table, const char *tenant, int tenant_len);
extern int64 ta_row_chain_id(Relation rel, text *tenant);
extern void ta_link_hash(int64 chain_id, int32 lane, int64 seq,
						 const unsigned char prev[TA_HASH_LEN],
						 const unsigned char row_hash[TA_HASH_LEN],
						 unsigned char out[TA_HASH_LEN]);
extern void ta_chain_row(Relation rel, Datum *values, bool *nulls);
extern bool ta_event_id_taken(Relation rel, Datum event_id);

/* ---- digest.c: signed digests ---- */
extern char *ta_signing_key_file;
extern char *ta_digest_signature_problem(Jsonb *d);

/* ---- record.c: the insert triggers ---- */
extern HeapTuple ta_record_tool_call(Relation rel, HeapTuple tuple,
									 Datum *values, bool *nulls);

/* ---- guard.c: append-only enforcement ---- */
extern bool ta_is_protected_relation(Oid relid);
extern void ta_guard_install_hooks(void);
extern bool ta_in_own_script(void);
extern void ta_allow_sealing(bool allow);

#endif							/* TOOL_AUDIT_H */
