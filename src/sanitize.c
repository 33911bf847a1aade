/*-------------------------------------------------------------------------
 *
 * sanitize.c
 *		Remove secrets and personal data from a jsonb document before it is
 *		stored: the walker behind tool_audit.sanitize() and the insert
 *		triggers.
 *
 * The document is read with a jsonb iterator and, only if the rules change
 * something, read again and rebuilt with pushJsonbValue, at any depth and
 * inside arrays.  For every object key the
 * first matching key rule (in priority order) decides:
 *
 *	keep			the value is stored as it is, all of its subtree included
 *	redact			the value, scalar or container, becomes "***REDACTED***"
 *	pseudonymize	every non-null scalar below becomes a keyed pseudonym
 *	drop			the key and its value are left out
 *
 * Strings (and numbers, as their text) that no key rule settled are then
 * scanned by the value rules: built-in detectors and regular expressions.
 * Their spans are claimed in priority order, a span overlapping one already
 * claimed is ignored, and each claimed span is replaced by
 * "***REDACTED:<detector>***" (or a pseudonym, or the element is dropped).
 *
 * A document the rules leave alone is returned as the same datum, so the
 * common case costs one read and no copy.  A changed one costs the read up
 * to the first change, then the rebuild, which does not scan again the
 * tokens before that change.  Sanitizing is idempotent:
 * markers and pseudonyms pass through unchanged.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_collation.h"
#include "common/hashfn.h"
#include "common/jsonapi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "regex/regex.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "pseudonym.h"
#include "rules.h"
#include "sanitize.h"
#include "tool_audit.h"

#define TA_REDACTED "***REDACTED***"

/* One pass of the sanitizer over a document (sanitize_pass()). */
typedef struct SanitizePass
{
	const TaRuleSet *rs;
	const char *what;
	bool		build;			/* false: only find out whether anything changes */
	int			token;			/* tokens read so far */
	int			clean;			/* the first this many tokens change nothing */
	bool		changed;
	int			depth;			/* current nesting depth */
	List	  **rewritten;		/* per depth: keys rewritten in this object */
	JsonbParseState *ps;
	JsonbValue *res;
} SanitizePass;

/* Documents and strings alike are limited by tool_audit.max_jsonb_size. */
static void
check_size(Size size, const char *what)
{
	if (size > (Size) ta_max_jsonb_size_kb * 1024)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("value for %s is too large to audit", what),
				 errdetail("The value takes %zu bytes; tool_audit.max_jsonb_size is %d kB.",
						   size, ta_max_jsonb_size_kb),
				 errhint("Summarize the value before logging it, or raise tool_audit.max_jsonb_size.")));
}

/* Does the regular expression match anywhere in s? */
static bool
regex_matches(text *re, const char *s, int len)
{
	return RE_compile_and_execute(re, (char *) s, len, REG_ADVANCED,
								  C_COLLATION_OID, 0, NULL);
}

/* All matches of a regular expression in s, as byte spans. */
static void
regex_spans(text *re, const char *s, int len, int rule, TaSpanList *out)
{
	regex_t    *compiled = RE_compile_and_cache(re, REG_ADVANCED, C_COLLATION_OID);
	pg_wchar   *wide = palloc((len + 1) * sizeof(pg_wchar));
	int			wlen = pg_mb2wchar_with_len(s, wide, len);
	int		   *byte_at = palloc((wlen + 1) * sizeof(int));
	int			off = 0;
	size_t		start = 0;
	regmatch_t	m[1];

	for (int i = 0; i < wlen; i++)
	{
		byte_at[i] = off;
		off += pg_mblen_range(s + off, s + len);
	}
	byte_at[wlen] = len;

	while (start <= (size_t) wlen &&
		   pg_regexec(compiled, wide, wlen, start, NULL, 1, m, 0) == REG_OKAY)
	{
		if (m[0].rm_eo > m[0].rm_so)
		{
			ta_span_add(out, byte_at[m[0].rm_so], byte_at[m[0].rm_eo], rule);
			start = m[0].rm_eo;
		}
		else
			start = m[0].rm_eo + 1;
	}
	pfree(wide);
	pfree(byte_at);
}

static TaAction
key_action_uncached(const TaRuleSet *rs, const char *key, int len)
{
	char	   *norm;
	int			normlen;
	TaAction	action = TA_ACTION_NONE;

	norm = ta_normalize_key(key, len);
	normlen = strlen(norm);
	for (int i = 0; i < rs->nkey_rules && action == TA_ACTION_NONE; i++)
	{
		const TaRule *r = &rs->key_rules[i];
		bool		hit = false;

		switch (r->match)
		{
			case TA_MATCH_EXACT:
				hit = normlen == r->pattern_len &&
					memcmp(norm, r->pattern, normlen) == 0;
				break;
			case TA_MATCH_PREFIX:
				hit = normlen >= r->pattern_len &&
					memcmp(norm, r->pattern, r->pattern_len) == 0;
				break;
			case TA_MATCH_SUFFIX:
				hit = normlen >= r->pattern_len &&
					memcmp(norm + normlen - r->pattern_len, r->pattern, r->pattern_len) == 0;
				break;
			case TA_MATCH_CONTAINS:
				hit = normlen >= r->pattern_len && strstr(norm, r->pattern) != NULL;
				break;
			case TA_MATCH_REGEX:
				hit = regex_matches(r->regex, norm, normlen);
				break;
			case TA_MATCH_DETECTOR:
				break;
		}
		if (hit)
			action = r->action;
	}
	pfree(norm);
	return action;
}

/*
 * The action the first matching key rule gives a key.  The verdict depends
 * on the key and the rule set only, so it is remembered in the rule set's
 * memo (open addressing on a hash of the key; a rule change builds a new set
 * with an empty memo).
 */
static TaAction
key_action(const TaRuleSet *rs, const char *key, int len)
{
	uint32		h;
	TaKeyMemo  *m = NULL;

	if (rs->nkey_rules == 0)
		return TA_ACTION_NONE;
	if (len > TA_KEY_MEMO_MAX_LEN)
		return key_action_uncached(rs, key, len);
	/* a few slots from the key's hash; a key finding none free takes the first */
	h = hash_bytes((const unsigned char *) key, len);
	for (int probe = 0; probe < TA_KEY_MEMO_PROBES; probe++)
	{
		TaKeyMemo  *slot = &rs->key_memo[(h + probe) & (TA_KEY_MEMO_SIZE - 1)];

		if (slot->len == len && memcmp(slot->key, key, len) == 0)
			return slot->action;
		if (slot->len < 0 && m == NULL)
			m = slot;
	}
	if (m == NULL)
		m = &rs->key_memo[h & (TA_KEY_MEMO_SIZE - 1)];
	m->action = key_action_uncached(rs, key, len);
	memcpy(m->key, key, len);
	m->len = (int8) len;
	return m->action;
}

/*
 * Merge the spans one rule found (sorted, disjoint) into the spans claimed by
 * earlier rules (sorted, disjoint).  Where a found span overlaps claimed
 * ones, the parts of it they do not cover are claimed for this rule, so a
 * secret that only partly overlaps an earlier finding ("Bearer <jwt>/rest")
 * is still removed whole.  One pass over both lists.
 */
static void
merge_spans(TaSpanList *claimed, const TaSpanList *found)
{
	TaSpanList	merged = {0};
	int			c = 0;

	for (int f = 0; f < found->n; f++)
	{
		const TaSpan *s = &found->items[f];
		int			pos;

		/* claimed spans wholly before this one go first */
		while (c < claimed->n && claimed->items[c].end <= s->start)
		{
			ta_span_add(&merged, claimed->items[c].start, claimed->items[c].end,
						claimed->items[c].rule);
			c++;
		}
		/* never before what is already out: a claimed span may reach past it */
		pos = s->start;
		if (merged.n > 0)
			pos = Max(pos, merged.items[merged.n - 1].end);
		if (pos >= s->end)
			continue;
		/* the gaps this span leaves between the claimed spans it overlaps */
		while (c < claimed->n && claimed->items[c].start < s->end)
		{
			if (claimed->items[c].start > pos)
				ta_span_add(&merged, pos, claimed->items[c].start, s->rule);
			ta_span_add(&merged, claimed->items[c].start, claimed->items[c].end,
						claimed->items[c].rule);
			pos = Max(pos, claimed->items[c].end);
			c++;
		}
		if (pos < s->end)
			ta_span_add(&merged, pos, s->end, s->rule);
	}
	for (; c < claimed->n; c++)
		ta_span_add(&merged, claimed->items[c].start, claimed->items[c].end,
					claimed->items[c].rule);
	if (claimed->items)
		pfree(claimed->items);
	*claimed = merged;
}

static void
append_marker(StringInfo buf, const TaRule *r)
{
	if (r->match == TA_MATCH_DETECTOR)
		appendStringInfo(buf, "***REDACTED:%s***", ta_detector_name(r->detector));
	else
		appendStringInfo(buf, "***REDACTED:rule_%d***", r->rule_id);
}

/*
 * Apply the value rules to one string.  Returns NULL when nothing matched,
 * otherwise the new string (palloc'd); *dropped is set when a "drop" rule
 * claimed any part of it.
 */
static char *
sanitize_string_rs(const TaRuleSet *rs, const char *s, int len, bool *dropped)
{
	TaSpanList	accepted = {0};
	StringInfoData buf;
	int			pos = 0;
	bool		replaced = false;

	*dropped = false;
	/*
	 * Pseudonym-shaped strings are scanned too: their hex never forms a
	 * detector's match (no boundaries inside it), and the shape must not be
	 * a way to carry a card number or a token past the rules.
	 */
	if (len < rs->min_value_len)	/* 0 too: min_value_len is at least 1 */
		return NULL;

	for (int i = 0; i < rs->nvalue_rules; i++)
	{
		const TaRule *r = &rs->value_rules[i];
		TaSpanList	found = {0};

		if (r->match == TA_MATCH_DETECTOR)
		{
			if (ta_detect_possible(r->detector, s, len))
				ta_detect(r->detector, s, len, i, &found);
		}
		else
			regex_spans(r->regex, s, len, i, &found);
		if (found.n > 0)
			merge_spans(&accepted, &found);
		if (found.items)
			pfree(found.items);
	}
	if (accepted.n == 0)
		return NULL;

	initStringInfo(&buf);
	for (int k = 0; k < accepted.n; k++)
	{
		const TaSpan *sp = &accepted.items[k];
		const TaRule *r = &rs->value_rules[sp->rule];

		appendBinaryStringInfo(&buf, s + pos, sp->start - pos);
		switch (r->action)
		{
			case TA_ACTION_KEEP:
			case TA_ACTION_NONE:
				appendBinaryStringInfo(&buf, s + sp->start, sp->end - sp->start);
				break;
			case TA_ACTION_DROP:
				*dropped = true;
				/* FALLTHROUGH */
			case TA_ACTION_REDACT:
				append_marker(&buf, r);
				replaced = true;
				break;
			case TA_ACTION_PSEUDONYMIZE:
				appendStringInfoString(&buf, ta_pseudonymize(rs, s + sp->start,
															 sp->end - sp->start));
				replaced = true;
				break;
		}
		pos = sp->end;
	}
	appendBinaryStringInfo(&buf, s + pos, len - pos);
	pfree(accepted.items);
	if (!replaced)
	{
		pfree(buf.data);
		return NULL;
	}
	return buf.data;
}

/* ---- strings that hold structure: parameters and JSON ---- */

static inline bool
is_param_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		(c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
}

static inline bool
is_param_separator(char c)
{
	return c == '?' || c == '&' || c == ';' || c == ' ' || c == '\t' ||
		c == '\n' || c == '\r' || c == ',' || c == '(';
}

static inline bool
ends_param_value(char c)
{
	return c == '&' || c == ';' || c == '#' || c == ' ' || c == '\t' ||
		c == '\n' || c == '\r' || c == '"' || c == '\'' || c == '<' || c == '>';
}

/*
 * Parameters in a string: query strings (?a=1&password=x), connection
 * strings in keyword/value form (host=db password=x, Server=.;Password=x;),
 * form bodies.  A name=value pair whose name starts the string or follows
 * one of ?&;, white space, "," or "(" has its value treated as the key rules
 * treat the value of an object key of that name: redacted (a "drop" rule
 * redacts too: a string has no element to drop), pseudonymized, or left.
 * A value runs to &, ;, #, white space, a quote or an angle bracket; a value
 * in single quotes (libpq) to the closing quote.  Markers and pseudonyms
 * are left as they are, so sanitizing stays idempotent.  Returns the new
 * string, or NULL when nothing changed.
 */
static char *
sanitize_params(const TaRuleSet *rs, const char *s, int len)
{
	StringInfoData buf;
	int			copied = 0;
	bool		changed = false;

	if (rs->nkey_rules == 0)
		return NULL;
	for (int i = 1; i < len; i++)
	{
		int			n = i,
					v,
					e;
		TaAction	act;

		if ((i & 0xFFFF) == 0)
			CHECK_FOR_INTERRUPTS();
		if (s[i] != '=')
			continue;
		/* the name before it: name characters back to a separator */
		while (n > 0 && is_param_name_char(s[n - 1]) && i - n <= 64)
			n--;
		if (n == i || i - n > 64 || (n > 0 && !is_param_separator(s[n - 1])) ||
			!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z') || s[n] == '_'))
			continue;
		/* the value */
		v = i + 1;
		if (v < len && s[v] == '\'')
		{
			e = v + 1;
			while (e < len && s[e] != '\'')
				e++;
			if (e < len)
				e++;			/* the closing quote */
		}
		else
		{
			e = v;
			while (e < len && !ends_param_value(s[e]))
				e++;
		}
		if (e == v)
			continue;
		act = key_action(rs, s + n, i - n);
		if (act == TA_ACTION_REDACT || act == TA_ACTION_DROP ||
			act == TA_ACTION_PSEUDONYMIZE)
		{
			const char *val = s + v;
			int			vlen = e - v;
			const char *repl = NULL;

			if (act == TA_ACTION_PSEUDONYMIZE)
			{
				if (!ta_looks_like_pseudonym(rs, val, vlen))
					repl = ta_pseudonymize(rs, val, vlen);
			}
			else if (!(vlen >= 11 && strncmp(val, "***REDACTED", 11) == 0))
				repl = TA_REDACTED;
			if (repl != NULL)
			{
				if (!changed)
					initStringInfo(&buf);
				appendBinaryStringInfo(&buf, s + copied, v - copied);
				appendStringInfoString(&buf, repl);
				copied = e;
				changed = true;
			}
		}
		i = e - 1;
	}
	if (!changed)
		return NULL;
	appendBinaryStringInfo(&buf, s + copied, len - copied);
	return buf.data;
}

/* JSON held in a string is sanitized as JSON up to this many levels deep. */
#define TA_MAX_EMBED_LEVEL 4
static int	embed_level = 0;

typedef struct EmbedCheck
{
	bool		ok;
} EmbedCheck;

/*
 * Numbers that numeric_in could refuse (an exponent past a thousand, a
 * thousand digits) make the string text, not JSON: jsonb_in must not fail.
 */
static void
embed_check_scalar(void *state, char *token, JsonTokenType tokentype)
{
	EmbedCheck *chk = (EmbedCheck *) state;
	char	   *e;

	if (tokentype != JSON_TOKEN_NUMBER)
		return;
	if (strlen(token) > 1000)
		chk->ok = false;
	else if ((e = strpbrk(token, "eE")) != NULL)
	{
		e++;
		if (*e == '+' || *e == '-')
			e++;
		if (strlen(e) > 4 || atoi(e) > 1000)
			chk->ok = false;
	}
}

/*
 * Does s look like a JSON object or array ("{...}" or "[...]", white space
 * around allowed), nested no deeper than tool_audit.max_depth?
 */
static bool
looks_like_json(const char *s, int len)
{
	int			a = 0,
				b = len - 1,
				depth = 0;
	bool		in_string = false;

	while (a < len && (s[a] == ' ' || s[a] == '\t' || s[a] == '\n' || s[a] == '\r'))
		a++;
	while (b > a && (s[b] == ' ' || s[b] == '\t' || s[b] == '\n' || s[b] == '\r'))
		b--;
	if (b <= a || !((s[a] == '{' && s[b] == '}') || (s[a] == '[' && s[b] == ']')))
		return false;
	for (int i = a; i <= b; i++)
	{
		char		c = s[i];

		if (in_string)
		{
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
		}
		else if (c == '"')
			in_string = true;
		else if (c == '{' || c == '[')
		{
			if (++depth > ta_max_depth)
				return false;
		}
		else if (c == '}' || c == ']')
			depth--;
	}
	return true;
}

/*
 * JSON inside a string ("body": "{\"password\": ...}"): a string that is a
 * JSON object or array is parsed, sanitized as a document, and, if that
 * changed anything, re-serialized (jsonb's text form: keys in jsonb's
 * order, one space after ":" and ","); left as written otherwise.  Strings
 * that do not parse, or that jsonb could not hold (a NUL character, a
 * number numeric cannot hold, more than tool_audit.max_jsonb_size as
 * jsonb), stay text.  *parsed says whether it was JSON.  Returns the new
 * string, or NULL.
 */
static char *
sanitize_embedded_json(const TaRuleSet *rs, const char *s, int len,
					   const char *what, bool *parsed)
{
	JsonLexContext *lex;
	JsonSemAction sem = {0};
	EmbedCheck	chk = {true};
	Jsonb	   *jb,
			   *out = NULL;

	*parsed = false;
	if (embed_level >= TA_MAX_EMBED_LEVEL || !looks_like_json(s, len))
		return NULL;
	lex = makeJsonLexContextCstringLen((char *) s, len, GetDatabaseEncoding(), true);
	sem.semstate = &chk;
	sem.scalar = embed_check_scalar;
	if (pg_parse_json(lex, &sem) != JSON_SUCCESS || !chk.ok)
		return NULL;
	jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(pnstrdup(s, len))));
	if (VARSIZE_ANY_EXHDR(jb) > (Size) ta_max_jsonb_size_kb * 1024)
		return NULL;
	*parsed = true;
	check_stack_depth();
	embed_level++;
	PG_TRY();
	{
		out = ta_sanitize_jsonb(rs, jb, what);
	}
	PG_FINALLY();
	{
		embed_level--;
	}
	PG_END_TRY();
	if (out == jb)
		return NULL;
	return JsonbToCString(NULL, &out->root, VARSIZE(out));
}

/*
 * Everything that applies to one string value: JSON inside it, or else its
 * parameters, then the value rules.  NULL when nothing changed.
 */
static char *
sanitize_string_deep(const TaRuleSet *rs, const char *s, int len,
					 bool *dropped, const char *what)
{
	char	   *cur = NULL;
	char	   *res;
	bool		parsed = false;

	if (len >= 2 && (s[0] == '{' || s[0] == '[' || s[0] == ' ' ||
					 s[0] == '\n' || s[0] == '\t' || s[0] == '\r'))
		cur = sanitize_embedded_json(rs, s, len, what, &parsed);
	if (!parsed && len >= 3 && memchr(s, '=', len) != NULL)
		cur = sanitize_params(rs, s, len);
	if (cur != NULL)
	{
		s = cur;
		len = strlen(cur);
	}
	res = sanitize_string_rs(rs, s, len, dropped);
	return res ? res : cur;
}

/*
 * The value rules applied to one text value: the new string, or NULL when
 * nothing changed.  A "drop" finding leaves its marker: a text column has no
 * element to drop.
 */
char *
ta_sanitize_text(const TaRuleSet *rs, const char *s, int len, const char *what)
{
	bool		dropped;

	check_size(len, what);
	return sanitize_string_deep(rs, s, len, &dropped, what);
}

static void
push(SanitizePass *w, JsonbIteratorToken tok, JsonbValue *v)
{
	if (w->build)
		w->res = pushJsonbValue(&w->ps, tok, v);
}

static void
push_string(SanitizePass *w, JsonbIteratorToken tok, const char *s)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) s;
	v.val.string.len = strlen(s);
	push(w, tok, &v);
}

/* The text a scalar stands for, for pseudonyms and value rules. */
static char *
scalar_text(const JsonbValue *v, int *len)
{
	char	   *s;

	switch (v->type)
	{
		case jbvString:
			*len = v->val.string.len;
			return v->val.string.val;
		case jbvNumeric:
			s = DatumGetCString(DirectFunctionCall1(numeric_out,
													NumericGetDatum(v->val.numeric)));
			break;
		case jbvBool:
			s = pstrdup(v->val.boolean ? "true" : "false");
			break;
		default:
			s = NULL;
			break;
	}
	*len = s ? strlen(s) : 0;
	return s;
}

/*
 * Emit one scalar (an object value or an array element) under the action
 * the key rules decided.  key is NULL for array elements.
 */
static void
emit_scalar(SanitizePass *w, JsonbIteratorToken tok, JsonbValue *key, JsonbValue *v,
			TaAction act, bool raw_scalar)
{
	int			len;
	char	   *text;
	char	   *clean;
	bool		dropped;

	switch (act)
	{
		case TA_ACTION_DROP:
			w->changed = true;
			return;
		case TA_ACTION_REDACT:
			if (key)
				push(w, WJB_KEY, key);
			push_string(w, tok, TA_REDACTED);
			w->changed = true;
			return;
		case TA_ACTION_PSEUDONYMIZE:
			if (key)
				push(w, WJB_KEY, key);
			text = scalar_text(v, &len);
			if (text == NULL || (v->type == jbvString &&
								 ta_looks_like_pseudonym(w->rs, text, len)))
				push(w, tok, v);
			else
			{
				push_string(w, tok, ta_pseudonymize(w->rs, text, len));
				w->changed = true;
			}
			return;
		case TA_ACTION_KEEP:
			break;
		case TA_ACTION_NONE:
			if (v->type != jbvString && v->type != jbvNumeric)
				break;
			if (w->token <= w->clean)
				break;			/* the first pass found nothing here */
			text = scalar_text(v, &len);
			clean = v->type == jbvString
				? sanitize_string_deep(w->rs, text, len, &dropped, w->what)
				: sanitize_string_rs(w->rs, text, len, &dropped);
			if (clean == NULL)
				break;
			w->changed = true;
			if (dropped && !raw_scalar)
				return;
			if (key)
				push(w, WJB_KEY, key);
			/* a number with a secret in it becomes a string */
			push_string(w, tok, clean);
			return;
	}
	if (key)
		push(w, WJB_KEY, key);
	push(w, tok, v);
}

/* A key that reads like a field name: [A-Za-z_][A-Za-z0-9_]* */
static bool
is_identifier_like(const char *s, int len)
{
	if (len == 0 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') || s[0] == '_'))
		return false;
	for (int i = 1; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
			  (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return false;
	return true;
}

/*
 * Keys can carry data too ({"078-05-1120": {...}}): the value rules apply to
 * them.  Below a pseudonymized key, a key that does not read like a field
 * name ("jane.doe@example.com" in an "email" object keyed by address) is
 * pseudonymized like the values, while field names ("street", "zip") keep
 * the structure readable.  A key a "drop" rule hits is dropped with its value.
 */
static void
sanitize_key(SanitizePass *w, JsonbValue *key, TaAction *pending, bool in_pii)
{
	const char *s = key->val.string.val;
	int			len = key->val.string.len;
	char	   *clean;
	bool		dropped;

	if (in_pii && !is_identifier_like(s, len))
	{
		if (len == 0 || ta_looks_like_pseudonym(w->rs, s, len))
			return;
		clean = ta_pseudonymize(w->rs, s, len);
	}
	else
	{
		clean = sanitize_string_rs(w->rs, s, len, &dropped);
		if (clean == NULL)
			return;
		if (dropped)
		{
			*pending = TA_ACTION_DROP;
			w->changed = true;
			return;
		}
	}
	/*
	 * Two keys may become the same ("078-05-1120" and "078 05 1120", two
	 * redacted tokens) and jsonb would keep only the last value: a rewritten
	 * key already used in this object gets "#2", "#3", ...
	 */
	{
		int			seen = 0;
		ListCell   *lc;

		foreach(lc, w->rewritten[w->depth])
			if (strcmp((char *) lfirst(lc), clean) == 0)
				seen++;
		w->rewritten[w->depth] = lappend(w->rewritten[w->depth], clean);
		if (seen > 0)
			clean = psprintf("%s#%d", clean, seen + 1);
	}
	key->val.string.val = clean;
	key->val.string.len = strlen(clean);
	w->changed = true;
}

/*
 * Name/value lists ([{"name": "Authorization", "value": "..."}], HAR files,
 * HTTP libraries, cloud tags): in an object with a "name" (or "key") and a
 * "value" member, the value gets what the key rules give the name, as if it
 * were {"Authorization": "..."}.  Names compare case-insensitively; jsonb
 * orders "key" and "name" before "value", so the name is known when the
 * value comes.
 */
static bool
is_pair_name(const JsonbValue *k)
{
	return (k->val.string.len == 4 && pg_strncasecmp(k->val.string.val, "name", 4) == 0) ||
		(k->val.string.len == 3 && pg_strncasecmp(k->val.string.val, "key", 3) == 0);
}

static bool
is_pair_value(const JsonbValue *k)
{
	return k->val.string.len == 5 && pg_strncasecmp(k->val.string.val, "value", 5) == 0;
}

/*
 * One pass over the document: does anything change?  With out NULL it stops
 * at the first change; otherwise it builds the sanitized document in *out
 * (when something changed).
 */
static bool
sanitize_pass(const TaRuleSet *rs, Jsonb *in, const char *what, int *clean, Jsonb **out)
{
	bool		build = (out != NULL);
	SanitizePass w = {0};
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	v,
				key;
	bool		have_key = false;
	bool		pair_name = false;	/* the current key is "name" or "key" */
	TaAction   *pair_action;	/* per depth: what a "value" member gets */
	bool		raw_scalar = false;
	TaAction	pending = TA_ACTION_NONE;
	int			depth = 0,
				skip_depth = 0,	/* >0: skipping a redacted/dropped subtree */
				keep_depth = 0, /* >0: inside a subtree kept as is */
				pii_depth = 0;	/* >0: inside a subtree being pseudonymized */

	w.rs = rs;
	w.rewritten = palloc0(sizeof(List *) * (ta_max_depth + 2));
	pair_action = NULL;			/* allocated at the first "name" or "key" */
	w.what = what;
	w.build = build;
	w.clean = build ? *clean : 0;

	it = JsonbIteratorInit(&in->root);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		TaAction	act;

		CHECK_FOR_INTERRUPTS();
		if (w.changed && !build)
		{
			/* every token before the last one read changed nothing */
			*clean = w.token - 1;
			break;
		}
		w.token++;
		switch (tok)
		{
			case WJB_BEGIN_OBJECT:
			case WJB_BEGIN_ARRAY:
				w.depth = depth + 1;
				if (++depth > ta_max_depth)
					ereport(ERROR,
							(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
							 errmsg("value for %s is nested too deeply", what),
							 errdetail("Nesting is limited to tool_audit.max_depth (%d) levels.",
									   ta_max_depth)));
				if (skip_depth)
					break;
				if (tok == WJB_BEGIN_ARRAY && depth == 1)
					raw_scalar = v.val.array.rawScalar;
				w.rewritten[depth] = NIL;
				if (pair_action)
					pair_action[depth] = TA_ACTION_NONE;
				act = have_key ? pending : TA_ACTION_NONE;
				if (act == TA_ACTION_REDACT || act == TA_ACTION_DROP)
				{
					if (act == TA_ACTION_REDACT)
					{
						push(&w, WJB_KEY, &key);
						push_string(&w, WJB_VALUE, TA_REDACTED);
					}
					skip_depth = depth;
					w.changed = true;
					have_key = false;
					break;
				}
				if (have_key)
					push(&w, WJB_KEY, &key);
				have_key = false;
				if (act == TA_ACTION_KEEP && !keep_depth)
					keep_depth = depth;
				if (act == TA_ACTION_PSEUDONYMIZE && !pii_depth)
					pii_depth = depth;
				/* only a raw scalar's array header carries a value */
				push(&w, tok, (tok == WJB_BEGIN_ARRAY && v.val.array.rawScalar) ? &v : NULL);
				break;

			case WJB_END_OBJECT:
			case WJB_END_ARRAY:
				if (skip_depth)
				{
					if (skip_depth == depth)
						skip_depth = 0;
					depth--;
					w.depth = depth;
					break;
				}
				push(&w, tok, NULL);
				if (keep_depth == depth)
					keep_depth = 0;
				if (pii_depth == depth)
					pii_depth = 0;
				depth--;
				w.depth = depth;
				break;

			case WJB_KEY:
				if (skip_depth)
					break;
				key = v;
				have_key = true;
				pending = keep_depth ? TA_ACTION_KEEP
					: key_action(w.rs, v.val.string.val, v.val.string.len);
				pair_name = pending == TA_ACTION_NONE && is_pair_name(&v);
				if (pair_name && pair_action == NULL)
					pair_action = palloc0(sizeof(TaAction) * (ta_max_depth + 2));
				if (pending == TA_ACTION_NONE && pair_action &&
					pair_action[depth] != TA_ACTION_NONE && is_pair_value(&v))
					pending = pair_action[depth];
				if (pending != TA_ACTION_KEEP && pending != TA_ACTION_DROP &&
					w.token > w.clean)
					sanitize_key(&w, &key, &pending, pii_depth > 0);
				break;

			case WJB_VALUE:
			case WJB_ELEM:
				if (skip_depth)
					break;
				if (tok == WJB_VALUE && pair_name && v.type == jbvString)
				{
					/* with both "key" and "name", a sensitive one decides */
					TaAction	pa = key_action(w.rs, v.val.string.val,
												v.val.string.len);

					if (pa != TA_ACTION_NONE)
						pair_action[depth] = pa;
				}
				pair_name = false;
				act = (tok == WJB_VALUE) ? pending : TA_ACTION_NONE;
				if (act == TA_ACTION_NONE)
					act = keep_depth ? TA_ACTION_KEEP
						: pii_depth ? TA_ACTION_PSEUDONYMIZE : TA_ACTION_NONE;
				emit_scalar(&w, tok, tok == WJB_VALUE ? &key : NULL, &v, act,
							raw_scalar && depth == 1);
				have_key = false;
				break;

			case WJB_DONE:
				break;
		}
	}

	if (w.changed && build)
		*out = JsonbValueToJsonb(w.res);
	return w.changed;
}

/*
 * The document with the rules applied, or the same datum when they change
 * nothing.  A first pass only looks, and stops at the first change; the
 * document is rebuilt only when something changes, so the common case (a
 * document with nothing to remove) costs a read and no copy.
 */
Jsonb *
ta_sanitize_jsonb(const TaRuleSet *rs, Jsonb *in, const char *what)
{
	Jsonb	   *out = in;
	int			clean = 0;

	check_size(VARSIZE_ANY_EXHDR(in), what);
	if (JB_ROOT_COUNT(in) == 0 && !JB_ROOT_IS_SCALAR(in))
		return in;				/* {} or []: nothing to look at */
	if (sanitize_pass(rs, in, what, &clean, NULL) &&
		!sanitize_pass(rs, in, what, &clean, &out))
		elog(ERROR, "sanitizing %s: the second pass found no change", what);	/* fail closed */
	return out;
}

/* tool_audit.sanitize(document jsonb) RETURNS jsonb */
PG_FUNCTION_INFO_V1(sanitize);
Datum
sanitize(PG_FUNCTION_ARGS)
{
	PG_RETURN_JSONB_P(ta_sanitize_jsonb(ta_get_rules(), PG_GETARG_JSONB_P(0), "sanitize()"));
}

/* tool_audit.sanitize_text(value text) RETURNS text */
PG_FUNCTION_INFO_V1(sanitize_text);
Datum
sanitize_text(PG_FUNCTION_ARGS)
{
	text	   *in = PG_GETARG_TEXT_PP(0);
	char	   *out = ta_sanitize_text(ta_get_rules(), VARDATA_ANY(in),
									   VARSIZE_ANY_EXHDR(in), "sanitize_text()");

	if (out == NULL)
		PG_RETURN_TEXT_P(in);
	PG_RETURN_TEXT_P(cstring_to_text(out));
}
