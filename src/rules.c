/*-------------------------------------------------------------------------
 *
 * rules.c
 *		Backend-local cache of the sanitizing rules and the active
 *		pseudonymization key.
 *
 * The rules live in tool_audit.sanitize_rules and the keys in
 * tool_audit.pseudonym_keys; neither is readable by the roles that write
 * audit rows, so the cache is filled through SPI as the owner of those
 * tables (SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION), the
 * way PostgreSQL itself runs maintenance code on behalf of a table owner.
 *
 * Invalidation: a statement trigger on both tables calls
 * tool_audit.rules_changed(), which queues a relcache invalidation for the
 * table.  Every backend (this one at the next command, others at commit)
 * receives it in rules_inval_callback and drops its cache; the next
 * sanitizing call reloads.  The previous set is freed when the next one is
 * built; that is safe because nothing a caller does while it holds a set (C
 * scanners, the regex engine with the C collation, numeric output, HMAC)
 * reads the catalogs, so no reload can happen under it.
 *
 * The first key is made by CREATE EXTENSION; this file only reads keys, so
 * that concurrent writers never wait on each other here.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "catalog.h"
#include "rules.h"

static MemoryContext rules_context = NULL;	/* holds cached_rules */
static TaRuleSet *cached_rules = NULL;
static bool cache_valid = false;
static uint64 inval_generation = 0;
static bool callback_registered = false;
static Oid	rules_relid = InvalidOid;
static Oid	keys_relid = InvalidOid;

static void
rules_inval_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == rules_relid || relid == keys_relid)
	{
		cache_valid = false;
		inval_generation++;
	}
}

/*
 * The ASCII letter (lowercase) or digit a non-ASCII code point stands for in
 * a key name, 0 if it is to be left out (zero-width and invisible format
 * characters, combining marks, full-width punctuation), or -1 if it is kept
 * as it is.  The folding NFKC does for full-width forms, mathematical and
 * circled letters, plus the Cyrillic and Greek letters that look like Latin
 * ones, so that "ｐａｓｓｗｏｒｄ", "pass<U+200B>word" and "pаsswоrd" (Cyrillic
 * a and o) are all "password".
 */
static int
fold_code_point(pg_wchar c)
{
	/* Cyrillic and Greek look-alikes of Latin letters */
	static const struct
	{
		uint16		cp;
		char		latin;
	}			lookalike[] = {
		{0x0391, 'a'}, {0x0392, 'b'}, {0x0395, 'e'}, {0x0396, 'z'}, {0x0397, 'h'},
		{0x0399, 'i'}, {0x039A, 'k'}, {0x039C, 'm'}, {0x039D, 'n'}, {0x039F, 'o'},
		{0x03A1, 'p'}, {0x03A4, 't'}, {0x03A5, 'y'}, {0x03A7, 'x'}, {0x03B1, 'a'},
		{0x03B9, 'i'}, {0x03BA, 'k'}, {0x03BD, 'v'}, {0x03BF, 'o'}, {0x03C1, 'p'},
		{0x03C4, 't'}, {0x03C5, 'u'}, {0x03C7, 'x'}, {0x0405, 's'}, {0x0406, 'i'},
		{0x0408, 'j'}, {0x0410, 'a'}, {0x0412, 'b'}, {0x0415, 'e'}, {0x041A, 'k'},
		{0x041C, 'm'}, {0x041D, 'h'}, {0x041E, 'o'}, {0x0420, 'p'}, {0x0421, 'c'},
		{0x0422, 't'}, {0x0423, 'y'}, {0x0425, 'x'}, {0x0430, 'a'}, {0x0435, 'e'},
		{0x043E, 'o'}, {0x0440, 'p'}, {0x0441, 'c'}, {0x0443, 'y'}, {0x0445, 'x'},
		{0x0455, 's'}, {0x0456, 'i'}, {0x0458, 'j'}, {0x04BB, 'h'}, {0x04CF, 'l'},
		{0x0501, 'd'},
	};

	if ((c >= 0x0300 && c <= 0x036F) ||	/* combining diacritical marks */
		c == 0x00AD || c == 0x034F || c == 0x180E ||	/* soft hyphen, CGJ, MVS */
		(c >= 0x200B && c <= 0x200F) ||	/* zero-width, direction marks */
		(c >= 0x202A && c <= 0x202E) ||	/* direction embeddings */
		(c >= 0x2060 && c <= 0x2064) || c == 0xFEFF)	/* joiners, BOM */
		return 0;
	if (c >= 0xFF01 && c <= 0xFF5E)	/* full-width ASCII */
	{
		c -= 0xFEE0;
		if (c >= 'A' && c <= 'Z')
			return c - 'A' + 'a';
		if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
			return c;
		return 0;				/* punctuation, as for ASCII */
	}
	if (c >= 0x24B6 && c <= 0x24CF)	/* circled capitals */
		return 'a' + (c - 0x24B6);
	if (c >= 0x24D0 && c <= 0x24E9)	/* circled small letters */
		return 'a' + (c - 0x24D0);
	if (c >= 0x1D400 && c <= 0x1D6A3)	/* mathematical alphabets */
		return 'a' + ((c - 0x1D400) % 52) % 26;
	if (c >= 0x1D7CE && c <= 0x1D7FF)	/* mathematical digits */
		return '0' + (c - 0x1D7CE) % 10;
	if (c == 0x0131)			/* dotless i */
		return 'i';
	if (c == 0x0251)			/* Latin alpha */
		return 'a';
	if (c >= 0x0391 && c <= 0x0501)
	{
		int			lo = 0,
					hi = lengthof(lookalike) - 1;

		while (lo <= hi)
		{
			int			mid = (lo + hi) / 2;

			if (lookalike[mid].cp == c)
				return lookalike[mid].latin;
			if (lookalike[mid].cp < c)
				lo = mid + 1;
			else
				hi = mid - 1;
		}
	}
	return -1;
}

/*
 * The slow path of ta_normalize_key(), for a key with a byte >= 0x80 in a
 * UTF-8 database: code points folded as above, ASCII as on the fast path.
 */
static char *
normalize_key_unicode(const char *key, int len)
{
	char	   *out = palloc(len + 1);
	int			j = 0;
	int			i = 0;

	while (i < len)
	{
		unsigned char c = (unsigned char) key[i];
		int			n;
		pg_wchar	cp;
		int			f;

		if (c < 0x80)
		{
			if (c >= 'A' && c <= 'Z')
				out[j++] = (char) (c - 'A' + 'a');
			else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
				out[j++] = (char) c;
			i++;
			continue;
		}
		n = pg_utf_mblen((const unsigned char *) key + i);
		if (n < 2 || i + n > len || !pg_utf8_islegal((const unsigned char *) key + i, n))
		{
			out[j++] = (char) c;	/* not UTF-8: kept byte by byte */
			i++;
			continue;
		}
		cp = utf8_to_unicode((const unsigned char *) key + i);
		f = fold_code_point(cp);
		if (f > 0)
			out[j++] = (char) f;
		else if (f < 0)
		{
			memcpy(out + j, key + i, n);
			j += n;
		}
		i += n;
	}
	out[j] = '\0';
	return out;
}

/*
 * Key names are compared in a normal form: ASCII letters lowered, ASCII
 * punctuation and spaces removed, other bytes kept.  "apiKey", "API-KEY" and
 * "api_key" all become "apikey".  In a UTF-8 database, a key with non-ASCII
 * characters is folded too (normalize_key_unicode): look-alike letters
 * become the Latin ones, invisible characters and combining marks go.  An
 * ASCII key takes the fast path; the verdict for a key is remembered
 * anyway (sanitize.c), so each key is normalized once per rule set.
 */
char *
ta_normalize_key(const char *key, int len)
{
	char	   *out;
	int			j = 0;

	for (int i = 0; i < len; i++)
		if ((unsigned char) key[i] >= 0x80)
		{
			if (GetDatabaseEncoding() == PG_UTF8)
				return normalize_key_unicode(key, len);
			break;
		}
	out = palloc(len + 1);
	for (int i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) key[i];

		if (c >= 'A' && c <= 'Z')
			out[j++] = (char) (c - 'A' + 'a');
		else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c >= 0x80)
			out[j++] = (char) c;
	}
	out[j] = '\0';
	return out;
}

/* The words of the rules table's action and match columns, in enum order. */
static const char *const action_names[] = {NULL, "keep", "redact", "pseudonymize", "drop"};
static const char *const match_names[] = {"exact", "prefix", "suffix", "contains", "regex", "detector"};

StaticAssertDecl(lengthof(action_names) == TA_ACTION_DROP + 1, "one name per action");
StaticAssertDecl(lengthof(match_names) == TA_MATCH_DETECTOR + 1, "one name per match");

/* The enum value of a word (the table's CHECK constraints allow no other). */
static int
parse_word(const char *const *names, int n, const char *s, const char *column)
{
	for (int i = 0; i < n; i++)
		if (names[i] != NULL && strcmp(s, names[i]) == 0)
			return i;
	elog(ERROR, "unexpected sanitize rule %s \"%s\"", column, s);
	return 0;					/* keep compiler quiet */
}

/*
 * The derived parts of a rule set: the shortest string its value rules can
 * match (a regular expression may match one character), and an empty key
 * memo.
 */
static void
prepare_rule_set(TaRuleSet *rs, MemoryContext cxt)
{
	rs->min_value_len = PG_INT32_MAX;
	for (int i = 0; i < rs->nvalue_rules; i++)
	{
		const TaRule *r = &rs->value_rules[i];
		int			n = r->match == TA_MATCH_DETECTOR ? ta_detector_min_length(r->detector) : 1;

		rs->min_value_len = Min(rs->min_value_len, n);
	}
	rs->key_memo = MemoryContextAlloc(cxt, sizeof(TaKeyMemo) * TA_KEY_MEMO_SIZE);
	for (int i = 0; i < TA_KEY_MEMO_SIZE; i++)
		rs->key_memo[i].len = -1;
}

/*
 * Fill rs from the rules table.  SPI returns to its own memory context after
 * every call, so everything kept is allocated in cxt explicitly.
 */
static void
load_rules(TaRuleSet *rs, TaRuleSet *builtin, Oid owner, MemoryContext cxt)
{
	int			nkey = 0,
				nvalue = 0;
	MemoryContext spicxt;

	ta_spi_exec_as_owner(owner,
					  "SELECT applies_to, match, pattern, action, rule_id, builtin"
					  "  FROM tool_audit.sanitize_rules"
					  " WHERE enabled"
					  " ORDER BY priority, rule_id",
					  0, NULL, NULL, NULL, true);
	spicxt = MemoryContextSwitchTo(cxt);

	rs->key_rules = palloc0(sizeof(TaRule) * (SPI_processed + 1));
	rs->value_rules = palloc0(sizeof(TaRule) * (SPI_processed + 1));
	builtin->key_rules = palloc0(sizeof(TaRule) * (SPI_processed + 1));
	builtin->value_rules = palloc0(sizeof(TaRule) * (SPI_processed + 1));

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *applies_to = SPI_getvalue(tup, desc, 1);
		char	   *pattern = SPI_getvalue(tup, desc, 3);
		bool		on_key = strcmp(applies_to, "key") == 0;
		TaRule	   *r = on_key ? &rs->key_rules[nkey++] : &rs->value_rules[nvalue++];

		r->match = (TaMatch) parse_word(match_names, lengthof(match_names),
										 SPI_getvalue(tup, desc, 2), "match");
		r->action = (TaAction) parse_word(action_names, lengthof(action_names),
										   SPI_getvalue(tup, desc, 4), "action");
		r->rule_id = pg_strtoint32(SPI_getvalue(tup, desc, 5));
		switch (r->match)
		{
			case TA_MATCH_EXACT:
			case TA_MATCH_PREFIX:
			case TA_MATCH_SUFFIX:
			case TA_MATCH_CONTAINS:
				r->pattern = ta_normalize_key(pattern, strlen(pattern));
				r->pattern_len = strlen(r->pattern);
				break;
			case TA_MATCH_REGEX:
				r->regex = cstring_to_text(pattern);
				break;
			case TA_MATCH_DETECTOR:
				if (!ta_detector_from_name(pattern, &r->detector))
					elog(ERROR, "unknown detector \"%s\" in sanitize rule %d",
						 pattern, r->rule_id);
				break;
		}
		if (strcmp(SPI_getvalue(tup, desc, 6), "t") == 0)
		{
			if (on_key)
				builtin->key_rules[builtin->nkey_rules++] = *r;
			else
				builtin->value_rules[builtin->nvalue_rules++] = *r;
		}
	}
	rs->nkey_rules = nkey;
	rs->nvalue_rules = nvalue;
	MemoryContextSwitchTo(spicxt);
}

/*
 * Every key id (pseudonyms made with any of them are left alone), and the
 * bytes of the active key.
 */
static void
load_keys(TaRuleSet *rs, Oid owner, MemoryContext cxt)
{
	ta_spi_exec_as_owner(owner,
					  "SELECT key_id, key, active FROM tool_audit.pseudonym_keys",
					  0, NULL, NULL, NULL, true);
	rs->key_ids = MemoryContextAllocZero(cxt, sizeof(char *) * (SPI_processed + 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *key_id = SPI_getvalue(tup, desc, 1);
		bool		isnull;
		bool		active = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
		bytea	   *key;

		if (strlen(key_id) > TA_MAX_KEY_ID_LEN)
			elog(ERROR, "malformed pseudonymization key id \"%s\"", key_id);
		rs->key_ids[rs->nkey_ids++] = MemoryContextStrdup(cxt, key_id);
		if (!active)
			continue;
		key = DatumGetByteaPP(SPI_getbinval(tup, desc, 2, &isnull));
		if (isnull || VARSIZE_ANY_EXHDR(key) > (int) sizeof(rs->key))
			elog(ERROR, "malformed pseudonymization key \"%s\"", key_id);
		strlcpy(rs->key_id, key_id, sizeof(rs->key_id));
		rs->key_len = VARSIZE_ANY_EXHDR(key);
		memcpy(rs->key, VARDATA_ANY(key), rs->key_len);
		rs->has_key = true;
	}
}

const TaRuleSet *
ta_get_rules(void)
{
	MemoryContext newcxt;
	MemoryContext callercxt = CurrentMemoryContext;
	TaRuleSet  *rs;
	Oid			owner;
	uint64		generation;

	if (cache_valid && cached_rules != NULL)
		return cached_rules;

	rules_relid = ta_schema_relid("sanitize_rules", false);
	keys_relid = ta_schema_relid("pseudonym_keys", false);
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(rules_inval_callback, (Datum) 0);
		callback_registered = true;
	}
	owner = ta_relation_owner(rules_relid);
	generation = inval_generation;

	newcxt = AllocSetContextCreate(CacheMemoryContext, "tool_audit rules",
								   ALLOCSET_SMALL_SIZES);
	PG_TRY();
	{
		TaRuleSet  *builtin;
		TaRule	   *krules,
				   *vrules;
		int			nk,
					nv;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");

		/*
		 * Read under a fresh snapshot, not the transaction's: a REPEATABLE
		 * READ transaction older than a rule change would otherwise cache
		 * the old rules, and no later invalidation would come to correct it.
		 */
		PushActiveSnapshot(GetLatestSnapshot());
		rs = MemoryContextAllocZero(newcxt, sizeof(TaRuleSet));
		builtin = MemoryContextAllocZero(newcxt, sizeof(TaRuleSet));
		load_rules(rs, builtin, owner, newcxt);
		load_keys(rs, owner, newcxt);
		PopActiveSnapshot();
		SPI_finish();

		/* the built-in-only set: the same keys, its own rule arrays */
		krules = builtin->key_rules;
		vrules = builtin->value_rules;
		nk = builtin->nkey_rules;
		nv = builtin->nvalue_rules;
		*builtin = *rs;
		builtin->key_rules = krules;
		builtin->value_rules = vrules;
		builtin->nkey_rules = nk;
		builtin->nvalue_rules = nv;
		builtin->builtin = builtin;
		rs->builtin = builtin;
		prepare_rule_set(rs, newcxt);
		prepare_rule_set(builtin, newcxt);
	}
	PG_CATCH();
	{
		/* never delete the context we are in */
		MemoryContextSwitchTo(callercxt);
		MemoryContextDelete(newcxt);
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (rules_context != NULL)
		MemoryContextDelete(rules_context);
	rules_context = newcxt;
	cached_rules = rs;
	/* our own key insert invalidates; that costs one extra reload, no more */
	cache_valid = (generation == inval_generation);
	return cached_rules;
}

/*
 * tool_audit.rules_changed() RETURNS trigger
 *
 * Statement trigger on the rules and keys tables: tell every backend to
 * reload its cache.
 */
PG_FUNCTION_INFO_V1(rules_changed);
Datum
rules_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("rules_changed: not called by trigger manager")));
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	return PointerGetDatum(NULL);
}
