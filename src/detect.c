/*-------------------------------------------------------------------------
 *
 * detect.c
 *		Secrets and personal data found by their value, where the key that
 *		holds them is innocent ("note": "my SSN is 123-45-6789").
 *
 * Each detector is a hand-written scanner over the bytes of one string: no
 * regular expression engine, no allocation but the span list, linear time.
 * They report byte spans; sanitize.c decides what replaces them.
 *
 *	bearer			"Bearer <token>" / "Basic <credentials>" (HTTP auth values)
 *	jwt				three base64url segments, the first starting "eyJ"
 *	pem_private_key	-----BEGIN ... PRIVATE KEY----- through its END line
 *	api_key			well-known key shapes: sk-..., sk_live_..., ghp_...,
 *					github_pat_..., xox?-..., AKIA/ASIA + 16, AIza + 35,
 *					glpat-..., hf_..., npm_..., whsec_...
 *	us_ssn			ddd-dd-dddd or ddd dd dddd, with the SSA's validity rules
 *	card_number		13 to 19 digits, optionally grouped by single spaces or
 *					dashes, passing the Luhn check
 *
 * Every scanner requires a boundary before and after a match, so "task-..."
 * is not an "sk-" key and the digits inside a longer number are not a card.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"

#include "detect.h"

/* check for query cancel every 64 kB scanned */
#define SCAN_CFI(i) do { if (((i) & 0xFFFF) == 0) CHECK_FOR_INTERRUPTS(); } while (0)

void
ta_span_add(TaSpanList *list, int start, int end, int rule)
{
	if (list->n == list->cap)
	{
		list->cap = list->cap ? list->cap * 2 : 4;
		list->items = list->items
			? repalloc(list->items, sizeof(TaSpan) * list->cap)
			: palloc(sizeof(TaSpan) * list->cap);
	}
	list->items[list->n].start = start;
	list->items[list->n].end = end;
	list->items[list->n].rule = rule;
	list->n++;
}

static inline bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static inline bool
is_alnum(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline bool
is_b64url(char c)
{
	return is_alnum(c) || c == '-' || c == '_';
}

static inline bool
is_token68(char c)
{
	return is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~' ||
		c == '+' || c == '/' || c == '=';
}

static inline bool
boundary_before(const char *s, int i)
{
	return i == 0 || !is_alnum(s[i - 1]);
}

static inline bool
boundary_after(const char *s, int len, int i)
{
	return i >= len || !is_alnum(s[i]);
}

/* Does s hold prefix (of plen bytes) at i?  ASCII case ignored if icase. */
static inline bool
has_prefix(const char *s, int len, int i, const char *prefix, int plen, bool icase)
{
	if (i + plen > len)
		return false;
	return icase ? pg_strncasecmp(s + i, prefix, plen) == 0
		: memcmp(s + i, prefix, plen) == 0;
}

static int
find(const char *s, int len, int from, const char *needle)
{
	int			nlen = strlen(needle);

	for (int i = from; i + nlen <= len; i++)
		if (memcmp(s + i, needle, nlen) == 0)
			return i;
	return -1;
}

static int
run_length(const char *s, int len, int i, bool (*member) (char))
{
	int			j = i;

	while (j < len && member(s[j]))
		j++;
	return j - i;
}

/*
 * run_length() for scanners that ask again and again from positions inside
 * the same run: the end of a maximal run is the same from any position in
 * it, so it is remembered, keeping the scan linear.
 */
typedef struct RunCache
{
	bool		(*member) (char);
	int			start;
	int			end;
} RunCache;

static int
cached_run_length(RunCache *rc, const char *s, int len, int i)
{
	if (i < rc->start || i >= rc->end)
	{
		rc->start = i;
		rc->end = i + run_length(s, len, i, rc->member);
		if (rc->end == i)
			return 0;
	}
	return rc->end - i;
}

static bool
b64url_member(char c)
{
	return is_b64url(c);
}

static bool
token68_member(char c)
{
	return is_token68(c);
}

static bool
upper_alnum_member(char c)
{
	return is_digit(c) || (c >= 'A' && c <= 'Z');
}

static void
detect_bearer(const char *s, int len, int rule, TaSpanList *out)
{
	for (int i = 0; i < len; i++)
	{
		int			scheme;
		int			j,
					tok;

		SCAN_CFI(i);
		/* both schemes start with a b: most positions end here */
		if ((s[i] | 0x20) != 'b' || !boundary_before(s, i))
			continue;
		if (has_prefix(s, len, i, "bearer", 6, true))
			scheme = 6;
		else if (has_prefix(s, len, i, "basic", 5, true))
			scheme = 5;
		else
			continue;
		j = i + scheme;
		if (j >= len || s[j] != ' ')
			continue;
		while (j < len && s[j] == ' ')
			j++;
		tok = run_length(s, len, j, token68_member);
		if (tok >= 8)
		{
			ta_span_add(out, i, j + tok, rule);
			i = j + tok - 1;
		}
	}
}

static void
detect_jwt(const char *s, int len, int rule, TaSpanList *out)
{
	for (int i = 0; i + 3 <= len; i++)
	{
		int			h,
					p,
					sig,
					j;

		SCAN_CFI(i);
		if (!(s[i] == 'e' && s[i + 1] == 'y' && s[i + 2] == 'J') ||
			(i > 0 && is_b64url(s[i - 1])))
			continue;
		h = run_length(s, len, i, b64url_member);
		j = i + h;
		if (h < 10 || j >= len || s[j] != '.')
			continue;
		p = run_length(s, len, j + 1, b64url_member);
		j = j + 1 + p;
		if (p < 2 || j >= len || s[j] != '.')
			continue;
		sig = run_length(s, len, j + 1, b64url_member);
		j = j + 1 + sig;
		ta_span_add(out, i, j, rule);
		i = j - 1;
	}
}

static void
detect_pem(const char *s, int len, int rule, TaSpanList *out)
{
	int			from = 0;
	int			eol = -1;		/* end of the line of the last BEGIN seen */
	int			label = -1;		/* next "PRIVATE KEY-----" on that line */

	for (;;)
	{
		int			begin = find(s, len, from, "-----BEGIN ");
		int			end,
					stop;

		if (begin < 0)
			return;
		CHECK_FOR_INTERRUPTS();
		/* line end and label are found once per line, so the scan is linear */
		if (begin > eol)
		{
			eol = find(s, len, begin, "\n");
			if (eol < 0)
				eol = len;
			label = -1;
		}
		if (label >= 0 && label < begin)
			label = -1;
		if (label < 0)
			label = find(s, eol, begin, "PRIVATE KEY-----");
		if (label < 0)
		{
			/* no private key label on this line: skip the line */
			from = eol;
			continue;
		}
		/* the END line closes it; an unterminated key runs to the end */
		end = find(s, len, label, "-----END ");
		stop = len;
		if (end >= 0)
		{
			int			close = find(s, len, end, "PRIVATE KEY-----");

			if (close >= 0)
				stop = close + strlen("PRIVATE KEY-----");
		}
		ta_span_add(out, begin, stop, rule);
		if (stop >= len)
			return;
		from = stop;
	}
}

/*
 * Key shapes: the prefixes of one kind of key and what must follow them.
 * No prefix is a prefix of another, so at most one can match at a place.
 */
typedef struct ApiKeyShape
{
	const char *prefixes[8];	/* NULL-terminated */
	int			min_tail;		/* shortest tail after the prefix */
	int			exact_tail;		/* if > 0: tail must be exactly this long */
	bool		upper_only;		/* tail of [A-Z0-9] only */
} ApiKeyShape;

static const ApiKeyShape api_key_shapes[] = {
	/* OpenAI, Anthropic (sk-ant-...); GitLab */
	{{"sk-", "glpat-"}, 20, 0, false},
	/* Stripe */
	{{"sk_live_", "sk_test_", "rk_live_", "rk_test_", "whsec_"}, 16, 0, false},
	/* GitHub; Hugging Face */
	{{"ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "hf_"}, 30, 0, false},
	/* Slack */
	{{"xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-"}, 10, 0, false},
	{{"npm_"}, 36, 0, false},
	/* AWS access key ids */
	{{"AKIA", "ASIA"}, 16, 16, true},
	/* Google API keys */
	{{"AIza"}, 35, 35, false},
};

/*
 * Every prefix with its shape, and the prefixes by their first byte (a bit
 * per prefix), so that a position is compared only with the prefixes that
 * can start there.
 */
typedef struct ApiKeyPrefix
{
	const char *prefix;
	int			len;
	const ApiKeyShape *shape;
} ApiKeyPrefix;

static ApiKeyPrefix api_key_prefixes[32];
static int	n_api_key_prefixes = 0;
static uint32 api_key_first[256];
static bool api_key_ready = false;

static void
api_key_prepare(void)
{
	for (int k = 0; k < (int) lengthof(api_key_shapes); k++)
	{
		const ApiKeyShape *shape = &api_key_shapes[k];

		for (int p = 0; p < (int) lengthof(shape->prefixes) && shape->prefixes[p]; p++)
		{
			ApiKeyPrefix *ap = &api_key_prefixes[n_api_key_prefixes];

			if (n_api_key_prefixes >= (int) lengthof(api_key_prefixes))
				elog(ERROR, "too many api key prefixes");	/* one bit each */
			ap->prefix = shape->prefixes[p];
			ap->len = strlen(ap->prefix);
			ap->shape = shape;
			api_key_first[(unsigned char) ap->prefix[0]] |= (uint32) 1 << n_api_key_prefixes;
			n_api_key_prefixes++;
		}
	}
	api_key_ready = true;
}

static void
detect_api_key(const char *s, int len, int rule, TaSpanList *out)
{
	RunCache	b64 = {b64url_member, 0, 0};
	RunCache	upper = {upper_alnum_member, 0, 0};

	if (!api_key_ready)
		api_key_prepare();
	for (int i = 0; i < len; i++)
	{
		uint32		candidates = api_key_first[(unsigned char) s[i]];

		SCAN_CFI(i);
		if (candidates == 0 || !boundary_before(s, i))
			continue;
		for (int k = 0; k < n_api_key_prefixes; k++)
		{
			const ApiKeyShape *shape = api_key_prefixes[k].shape;
			int			plen = api_key_prefixes[k].len;
			int			tail;

			if (!(candidates & ((uint32) 1 << k)) ||
				!has_prefix(s, len, i, api_key_prefixes[k].prefix, plen, false))
				continue;
			tail = cached_run_length(shape->upper_only ? &upper : &b64,
									 s, len, i + plen);
			if (tail < shape->min_tail ||
				(shape->exact_tail > 0 && tail != shape->exact_tail) ||
				!boundary_after(s, len, i + plen + tail))
				continue;
			ta_span_add(out, i, i + plen + tail, rule);
			i = i + plen + tail - 1;
			break;
		}
	}
}

static int
digits_value(const char *s, int n)
{
	int			v = 0;

	for (int i = 0; i < n; i++)
		v = v * 10 + (s[i] - '0');
	return v;
}

static void
detect_ssn(const char *s, int len, int rule, TaSpanList *out)
{
	for (int i = 0; i + 11 <= len; i++)
	{
		const char *p = s + i;
		char		sep = p[3];
		int			area,
					group,
					serial;

		SCAN_CFI(i);
		if (!boundary_before(s, i) || (i > 0 && s[i - 1] == '-') ||
			!(sep == '-' || sep == ' ') || p[6] != sep ||
			!is_digit(p[0]) || !is_digit(p[1]) || !is_digit(p[2]) ||
			!is_digit(p[4]) || !is_digit(p[5]) ||
			!is_digit(p[7]) || !is_digit(p[8]) || !is_digit(p[9]) ||
			!is_digit(p[10]) || !boundary_after(s, len, i + 11) ||
			(i + 11 < len && s[i + 11] == '-'))
			continue;
		area = digits_value(p, 3);
		group = digits_value(p + 4, 2);
		serial = digits_value(p + 7, 4);
		if (area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0)
			continue;
		ta_span_add(out, i, i + 11, rule);
		i += 10;
	}
}

static bool
luhn_valid(const char *digits, int n)
{
	int			sum = 0;

	for (int k = 0; k < n; k++)
	{
		int			d = digits[n - 1 - k] - '0';

		if (k % 2 == 1)
		{
			d *= 2;
			if (d > 9)
				d -= 9;
		}
		sum += d;
	}
	return sum % 10 == 0;
}

/*
 * Do groups a..b look like a printed card number?  One ungrouped run, or
 * groups of four with a last group of one to four (4-4-4-4, 4-4-4-4-3,
 * 4-4-4-1), or the 4-6-5 / 4-6-4 of American Express and Diners.  Lists of
 * other numbers (SSNs, dates, phone numbers) are not.
 */
static bool
card_grouping(const int *gcum, int a, int b)
{
	int			n = b - a + 1;

	if (n == 1)
		return true;
	if (n == 3 && gcum[a + 1] - gcum[a] == 4 && gcum[a + 2] - gcum[a + 1] == 6 &&
		(gcum[a + 3] - gcum[a + 2] == 5 || gcum[a + 3] - gcum[a + 2] == 4))
		return true;
	for (int g = a; g < b; g++)
		if (gcum[g + 1] - gcum[g] != 4)
			return false;
	return gcum[b + 1] - gcum[b] >= 1 && gcum[b + 1] - gcum[b] <= 4;
}

/*
 * Card numbers: a run of digit groups (digits, single spaces or dashes
 * between them) of 13 to 19 digits that passes Luhn, however grouped; and
 * inside longer runs, every window of whole groups that holds 13 to 19
 * digits, is grouped like a card and passes Luhn, so a card followed or
 * preceded by other groups ("4242 4242 4242 4242 05 27") is still found.
 * A window never exceeds 19 digits, so the work per group is bounded and
 * the scan stays linear.
 */
static void
detect_card(const char *s, int len, int rule, TaSpanList *out)
{
	for (int i = 0; i < len; i++)
	{
		int			j = i,
					ngroups = 0,
					ndigits = 0;
		int		   *gstart,
				   *gend,
				   *gcum;		/* digits before each group */
		char	   *digits;

		SCAN_CFI(i);
		if (!is_digit(s[i]) || !boundary_before(s, i))
			continue;
		/* measure the run */
		while (j < len)
		{
			if (is_digit(s[j]))
				j++;
			else if ((s[j] == ' ' || s[j] == '-') && j + 1 < len && is_digit(s[j + 1]))
				j++;
			else
				break;
		}
		if (!boundary_after(s, len, j) || j - i < 13)
		{
			i = j - 1;			/* never look inside a run */
			continue;
		}
		/* its groups and digits */
		gstart = palloc(sizeof(int) * (j - i + 1));
		gend = palloc(sizeof(int) * (j - i + 1));
		gcum = palloc(sizeof(int) * (j - i + 2));
		digits = palloc(j - i + 1);
		for (int k = i; k < j; k++)
		{
			if (!is_digit(s[k]))
				continue;
			if (k == i || !is_digit(s[k - 1]))
			{
				gstart[ngroups] = k;
				gcum[ngroups] = ndigits;
				ngroups++;
			}
			gend[ngroups - 1] = k + 1;
			digits[ndigits++] = s[k];
		}
		gcum[ngroups] = ndigits;
		/*
		 * The whole run if it is a card however grouped; then every window
		 * of whole groups grouped like a card.  Overlapping findings are
		 * reported as their union, so no digit of any of them stays.
		 */
		{
			int			ustart = -1,
						uend = -1;

			if (ndigits >= 13 && ndigits <= 19 && luhn_valid(digits, ndigits))
			{
				ustart = i;
				uend = j;
			}
			for (int a = 0; a < ngroups; a++)
			{
				int			best = -1;

				for (int b = a; b < ngroups; b++)
				{
					int			n = gcum[b + 1] - gcum[a];

					if (n > 19)
						break;
					if (n >= 13 && card_grouping(gcum, a, b) &&
						luhn_valid(digits + gcum[a], n))
						best = b;
				}
				if (best < 0)
					continue;
				if (ustart >= 0 && gstart[a] <= uend)
					uend = Max(uend, gend[best]);
				else
				{
					if (ustart >= 0)
						ta_span_add(out, ustart, uend, rule);
					ustart = gstart[a];
					uend = gend[best];
				}
			}
			if (ustart >= 0)
				ta_span_add(out, ustart, uend, rule);
		}
		pfree(gstart);
		pfree(gend);
		pfree(gcum);
		pfree(digits);
		i = j - 1;
	}
}

/*
 * The detectors: name (as rules name them), the shortest string each can
 * match, the characters one of which every match contains (NULL: none in
 * particular), and the scanner.
 */
typedef struct Detector
{
	const char *name;
	int			min_length;
	const char *needs;
	void		(*scan) (const char *s, int len, int rule, TaSpanList *out);
} Detector;

static const Detector detectors[TA_DETECT__COUNT] = {
	/* "basic " + 8 */
	[TA_DETECT_BEARER] = {"bearer", 14, " ", detect_bearer},
	/* 10 + "." + 2 + "." */
	[TA_DETECT_JWT] = {"jwt", 14, ".", detect_jwt},
	/* "-----BEGIN " + "PRIVATE KEY-----" */
	[TA_DETECT_PEM_PRIVATE_KEY] = {"pem_private_key", 27, "-", detect_pem},
	/* "xoxb-" + 10 */
	[TA_DETECT_API_KEY] = {"api_key", 15, NULL, detect_api_key},
	/* ddd-dd-dddd */
	[TA_DETECT_US_SSN] = {"us_ssn", 11, "- ", detect_ssn},
	[TA_DETECT_CARD_NUMBER] = {"card_number", 13, NULL, detect_card},
};

const char *
ta_detector_name(TaDetector d)
{
	return detectors[d].name;
}

bool
ta_detector_from_name(const char *name, TaDetector *d)
{
	for (int i = 0; i < TA_DETECT__COUNT; i++)
	{
		if (strcmp(name, detectors[i].name) == 0)
		{
			*d = (TaDetector) i;
			return true;
		}
	}
	return false;
}

/* The shortest string a detector can match. */
int
ta_detector_min_length(TaDetector d)
{
	return detectors[d].min_length;
}

/*
 * Can this detector match anything in s at all?  A length and a memchr() or
 * two rule out most strings (ids, names, statuses) before any scan.
 */
bool
ta_detect_possible(TaDetector d, const char *s, int len)
{
	const char *needs = detectors[d].needs;

	if (len < detectors[d].min_length)
		return false;
	if (needs == NULL)
		return true;
	for (; *needs != '\0'; needs++)
		if (memchr(s, *needs, len) != NULL)
			return true;
	return false;
}

void
ta_detect(TaDetector d, const char *s, int len, int rule, TaSpanList *out)
{
	detectors[d].scan(s, len, rule, out);
}
