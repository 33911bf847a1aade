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
 *	bearer			"Bearer <token>" / "Basic <credentials>" / "Token <token>"
 *					(HTTP auth values; any case, spaces, tabs or line breaks)
 *	jwt				three base64url segments, the first starting "eyJ"
 *	pem_private_key	-----BEGIN ... PRIVATE KEY----- through its END line
 *	api_key			well-known key shapes: sk-..., sk_live_..., ghp_...,
 *					github_pat_..., xox?-..., AKIA/ASIA + 16, AIza + 35,
 *					glpat-..., hf_..., npm_..., whsec_..., and the other
 *					providers' prefixes of api_key_shapes below
 *	url_credentials	the password of scheme://user:password@host
 *	us_ssn			ddd-dd-dddd or ddd dd dddd, with the SSA's validity rules;
 *					nine digits in a row only right after "SSN" or
 *					"social security" (so order ids of nine digits pass)
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

static const char *const detector_names[TA_DETECT__COUNT] = {
	[TA_DETECT_BEARER] = "bearer",
	[TA_DETECT_JWT] = "jwt",
	[TA_DETECT_PEM_PRIVATE_KEY] = "pem_private_key",
	[TA_DETECT_API_KEY] = "api_key",
	[TA_DETECT_US_SSN] = "us_ssn",
	[TA_DETECT_CARD_NUMBER] = "card_number",
	[TA_DETECT_URL_CREDENTIALS] = "url_credentials",
};

const char *
ta_detector_name(TaDetector d)
{
	return detector_names[d];
}

bool
ta_detector_from_name(const char *name, TaDetector *d)
{
	for (int i = 0; i < TA_DETECT__COUNT; i++)
	{
		if (strcmp(name, detector_names[i]) == 0)
		{
			*d = (TaDetector) i;
			return true;
		}
	}
	return false;
}

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
b64url_dot_member(char c)
{
	return is_b64url(c) || c == '.';
}

static bool
upper_alnum_member(char c)
{
	return is_digit(c) || (c >= 'A' && c <= 'Z');
}

static inline bool
is_auth_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/*
 * A word of prose rather than a credential: letters only, and either all
 * capitals or lower case after the first letter ("training",
 * "Authentication").  Base64 credentials mix cases, digits and "=".
 */
static bool
is_plain_word(const char *s, int len)
{
	bool		upper = true,
				lower_tail = true;

	for (int i = 0; i < len; i++)
	{
		char		c = s[i];

		if (c >= 'A' && c <= 'Z')
		{
			if (i > 0)
				lower_tail = false;
		}
		else if (c >= 'a' && c <= 'z')
			upper = false;
		else
			return false;
	}
	return upper || lower_tail;
}

static bool
has_digit(const char *s, int len)
{
	for (int i = 0; i < len; i++)
		if (is_digit(s[i]))
			return true;
	return false;
}

/*
 * "Bearer <token>", "Basic <credentials>" and "Token <token>", the scheme in
 * any case, then spaces, tabs or line breaks.  Bearer takes any token68 of
 * 8 or more; Basic must not be a plain word ("basic training"); Token (a
 * word of prose too) needs 16 or more with a digit in them.
 */
static void
detect_bearer(const char *s, int len, int rule, TaSpanList *out)
{
	for (int i = 0; i < len; i++)
	{
		int			scheme;
		int			j,
					tok;
		char		c;

		SCAN_CFI(i);
		/* the schemes start be, ba or to: most positions end here */
		c = s[i] | 0x20;
		if ((c != 'b' && c != 't') || i + 1 >= len)
			continue;
		c = s[i + 1] | 0x20;
		if ((c != 'e' && c != 'a' && c != 'o') || !boundary_before(s, i))
			continue;
		if (has_prefix(s, len, i, "bearer", 6, true))
			scheme = 6;
		else if (has_prefix(s, len, i, "basic", 5, true))
			scheme = 5;
		else if (has_prefix(s, len, i, "token", 5, true))
			scheme = -5;
		else
			continue;
		j = i + (scheme < 0 ? -scheme : scheme);
		if (j >= len || !is_auth_space(s[j]))
			continue;
		while (j < len && is_auth_space(s[j]))
			j++;
		tok = run_length(s, len, j, token68_member);
		if (tok < 8 ||
			(scheme == 5 && is_plain_word(s + j, tok)) ||
			(scheme == -5 && (tok < 16 || !has_digit(s + j, tok))))
			continue;
		ta_span_add(out, i, j + tok, rule);
		i = j + tok - 1;
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

typedef struct ApiKeyShape
{
	const char *prefix;
	int			prefix_len;		/* filled in on first use */
	int			min_tail;		/* shortest tail after the prefix */
	int			exact_tail;		/* if > 0: tail must be exactly this long */
	bool		upper_only;		/* tail of [A-Z0-9] only */
	bool		dots;			/* tail of base64url and "." */
} ApiKeyShape;

static ApiKeyShape api_key_shapes[] = {
	{"sk-", 0, 20, 0, false},		/* OpenAI, Anthropic (sk-ant-...) */
	{"sk_live_", 0, 16, 0, false},	/* Stripe */
	{"sk_test_", 0, 16, 0, false},
	{"rk_live_", 0, 16, 0, false},
	{"rk_test_", 0, 16, 0, false},
	{"whsec_", 0, 16, 0, false},
	{"ghp_", 0, 30, 0, false},		/* GitHub */
	{"gho_", 0, 30, 0, false},
	{"ghu_", 0, 30, 0, false},
	{"ghs_", 0, 30, 0, false},
	{"ghr_", 0, 30, 0, false},
	{"github_pat_", 0, 30, 0, false},
	{"xoxb-", 0, 10, 0, false},	/* Slack */
	{"xoxp-", 0, 10, 0, false},
	{"xoxa-", 0, 10, 0, false},
	{"xoxr-", 0, 10, 0, false},
	{"xoxs-", 0, 10, 0, false},
	{"glpat-", 0, 20, 0, false},	/* GitLab */
	{"hf_", 0, 30, 0, false},		/* Hugging Face */
	{"npm_", 0, 36, 0, false},
	{"AKIA", 0, 16, 16, true},		/* AWS access key ids */
	{"ASIA", 0, 16, 16, true},
	{"AIza", 0, 35, 35, false},	/* Google API keys */
	{"GOCSPX-", 0, 24, 0, false},	/* Google OAuth client secrets */
	{"ya29.", 0, 20, 0, false},	/* Google OAuth access tokens */
	{"SG.", 0, 40, 0, false, true},	/* SendGrid: SG.<22>.<43> */
	{"dop_v1_", 0, 40, 0, false},	/* DigitalOcean */
	{"doo_v1_", 0, 40, 0, false},
	{"dor_v1_", 0, 40, 0, false},
	{"shpat_", 0, 32, 0, false},	/* Shopify */
	{"shpss_", 0, 32, 0, false},
	{"shpca_", 0, 32, 0, false},
	{"shppa_", 0, 32, 0, false},
	{"dckr_pat_", 0, 20, 0, false},	/* Docker Hub */
	{"pypi-AgE", 0, 20, 0, false},	/* PyPI */
	{"xapp-", 0, 20, 0, false},	/* Slack app-level and refresh tokens */
	{"xoxe-", 0, 10, 0, false},
	{"sq0csp-", 0, 30, 0, false},	/* Square */
	{"sq0atp-", 0, 20, 0, false},
	{"ATATT", 0, 30, 0, false},	/* Atlassian API tokens */
	{"gldt-", 0, 20, 0, false},	/* GitLab deploy, runner, trigger tokens */
	{"glrt-", 0, 20, 0, false},
	{"glptt-", 0, 20, 0, false},
	{"glsa_", 0, 30, 0, false},	/* Grafana service accounts */
	{"hvs.", 0, 24, 0, false},		/* HashiCorp Vault */
	{"lin_api_", 0, 30, 0, false},	/* Linear */
	{"pscale_pw_", 0, 30, 0, false},	/* PlanetScale */
	{"rubygems_", 0, 40, 0, false},
	{"AGE-SECRET-KEY-1", 0, 40, 0, true},	/* age */
};

/*
 * The shapes by the first byte of their prefix (a bit per shape), so that a
 * position is compared only with the shapes that can start there.
 */
static uint64 api_key_first[256];
static bool api_key_ready = false;

static void
api_key_prepare(void)
{
	StaticAssertStmt(lengthof(api_key_shapes) <= 64, "one bit per shape");
	for (int k = 0; k < (int) lengthof(api_key_shapes); k++)
	{
		ApiKeyShape *shape = &api_key_shapes[k];

		shape->prefix_len = strlen(shape->prefix);
		api_key_first[(unsigned char) shape->prefix[0]] |= (uint64) 1 << k;
	}
	api_key_ready = true;
}

static void
detect_api_key(const char *s, int len, int rule, TaSpanList *out)
{
	RunCache	b64 = {b64url_member, 0, 0};
	RunCache	upper = {upper_alnum_member, 0, 0};
	RunCache	dotted = {b64url_dot_member, 0, 0};

	if (!api_key_ready)
		api_key_prepare();
	for (int i = 0; i < len; i++)
	{
		uint64		candidates = api_key_first[(unsigned char) s[i]];

		SCAN_CFI(i);
		if (candidates == 0 || !boundary_before(s, i))
			continue;
		for (int k = 0; k < (int) lengthof(api_key_shapes); k++)
		{
			const ApiKeyShape *shape = &api_key_shapes[k];
			int			plen = shape->prefix_len;
			int			tail;

			if (!(candidates & ((uint64) 1 << k)) ||
				!has_prefix(s, len, i, shape->prefix, plen, false))
				continue;
			tail = cached_run_length(shape->upper_only ? &upper :
									 shape->dots ? &dotted : &b64,
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

static bool
ssn_valid(int area, int group, int serial)
{
	return !(area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0);
}

/*
 * Do the bytes just before i name a social security number ("SSN",
 * "ssn#", "social security number: ", "soc. sec. no"), with no other number
 * in between?  A bounded look back, so the scan stays linear.
 */
#define SSN_CONTEXT 24

static bool
ssn_context_before(const char *s, int i)
{
	int			from = Max(0, i - SSN_CONTEXT);

	for (int k = i - 1; k >= from; k--)
	{
		if (is_digit(s[k]))
			return false;		/* another number comes between */
		if (((s[k] | 0x20) == 's' && has_prefix(s, i, k, "ssn", 3, true) &&
			 boundary_before(s, k)) ||
			has_prefix(s, i, k, "social security", 15, true) ||
			has_prefix(s, i, k, "soc. sec", 8, true) ||
			has_prefix(s, i, k, "soc sec", 7, true))
			return true;
	}
	return false;
}

/* The digits in a row at i, counted up to 10 (all the SSN scan needs). */
static inline int
ssn_digit_run(const char *s, int len, int i)
{
	int			n = 0;

	while (n < 10 && i + n < len && is_digit(s[i + n]))
		n++;
	return n;
}

static void
detect_ssn(const char *s, int len, int rule, TaSpanList *out)
{
	for (int i = 0; i + 9 <= len; i++)
	{
		const char *p = s + i;
		char		sep;

		SCAN_CFI(i);
		if (!is_digit(p[0]) || !boundary_before(s, i) || (i > 0 && s[i - 1] == '-'))
			continue;
		/* nine digits in a row, right after words that say SSN */
		if (ssn_digit_run(s, len, i) == 9)
		{
			if (!boundary_after(s, len, i + 9) || (i + 9 < len && s[i + 9] == '-') ||
				!ssn_valid(digits_value(p, 3), digits_value(p + 3, 2),
						   digits_value(p + 5, 4)) ||
				!ssn_context_before(s, i))
			{
				i += 8;
				continue;
			}
			ta_span_add(out, i, i + 9, rule);
			i += 8;
			continue;
		}
		if (i + 11 > len)
			continue;
		sep = p[3];
		if (!(sep == '-' || sep == ' ') || p[6] != sep ||
			!is_digit(p[1]) || !is_digit(p[2]) ||
			!is_digit(p[4]) || !is_digit(p[5]) ||
			!is_digit(p[7]) || !is_digit(p[8]) || !is_digit(p[9]) ||
			!is_digit(p[10]) || !boundary_after(s, len, i + 11) ||
			(i + 11 < len && s[i + 11] == '-'))
			continue;
		if (!ssn_valid(digits_value(p, 3), digits_value(p + 4, 2),
					   digits_value(p + 7, 4)))
			continue;
		ta_span_add(out, i, i + 11, rule);
		i += 10;
	}
}

/*
 * The password of a URL's user information, scheme://user:password@host:
 * from the first ":" after "://" to the last "@" before the authority ends
 * (at "/", "?", "#", a quote, a bracket or white space).  The user, host
 * and path stay readable; a URL without a password is left alone.
 */
static inline bool
ends_authority(char c)
{
	return c == '/' || c == '?' || c == '#' || c == ' ' || c == '\t' ||
		c == '\n' || c == '\r' || c == '"' || c == '\'' || c == '<' ||
		c == '>' || c == '\\';
}

/*
 * A URL with a password is longer than this ("ftp://u:p@h" is 11 bytes):
 * shorter strings are not looked at, which keeps the shortest match of all
 * the built-in detectors (rs->min_value_len) where short ids need no scan.
 */
#define URL_CREDENTIALS_MIN_LEN 11

static void
detect_url_credentials(const char *s, int len, int rule, TaSpanList *out)
{
	int			from = 0;

	if (len < URL_CREDENTIALS_MIN_LEN)
		return;

	for (;;)
	{
		int			k = find(s, len, from, "://");
		int			a,
					e,
					colon = -1,
					at = -1;

		if (k < 0)
			return;
		CHECK_FOR_INTERRUPTS();
		a = k + 3;
		from = a;
		if (k == 0 || !is_alnum(s[k - 1]))
			continue;			/* no scheme */
		for (e = a; e < len && !ends_authority(s[e]); e++)
		{
			if (s[e] == ':' && colon < 0)
				colon = e;
			else if (s[e] == '@')
				at = e;
		}
		from = Max(from, e);
		if (at < 0 || colon < 0 || colon > at || colon + 1 == at)
			continue;
		ta_span_add(out, colon + 1, at, rule);
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

/* The shortest string each detector can match. */
int
ta_detector_min_length(TaDetector d)
{
	switch (d)
	{
		case TA_DETECT_BEARER:	/* "basic " + 8 */
		case TA_DETECT_JWT:		/* 10 + "." + 2 + "." */
			return 14;
		case TA_DETECT_PEM_PRIVATE_KEY: /* "-----BEGIN " + "PRIVATE KEY-----" */
			return 27;
		case TA_DETECT_API_KEY: /* "xoxb-" + 10 */
			return 15;
		case TA_DETECT_US_SSN:	/* ddd-dd-dddd */
			return 11;
		case TA_DETECT_CARD_NUMBER:
			return 13;
		case TA_DETECT_URL_CREDENTIALS:
			return URL_CREDENTIALS_MIN_LEN;
		case TA_DETECT__COUNT:
			break;
	}
	return 0;
}

/*
 * Can this detector match anything in s at all?  A length and one memchr()
 * rule out most strings (ids, names, statuses) before any scan: the shortest
 * match of each detector, and a character every match contains.
 */
bool
ta_detect_possible(TaDetector d, const char *s, int len)
{
	if (len < ta_detector_min_length(d))
		return false;
	switch (d)
	{
		case TA_DETECT_BEARER:
			if (memchr(s, ' ', len) != NULL)
				return true;
			for (int i = 0; i < len; i++)
				if (s[i] == '\t' || s[i] == '\n' || s[i] == '\r')
					return true;
			return false;
		case TA_DETECT_JWT:
			return memchr(s, '.', len) != NULL;
		case TA_DETECT_PEM_PRIVATE_KEY:
			return memchr(s, '-', len) != NULL;
		case TA_DETECT_US_SSN:
			/* separated, or nine digits after "ssn<separator>" (13 or more) */
			return memchr(s, '-', len) != NULL || memchr(s, ' ', len) != NULL ||
				(len >= 13 &&
				 (memchr(s, 's', len) != NULL || memchr(s, 'S', len) != NULL));
		case TA_DETECT_URL_CREDENTIALS:
			return memchr(s, '@', len) != NULL;
		case TA_DETECT_API_KEY:
		case TA_DETECT_CARD_NUMBER:
		case TA_DETECT__COUNT:
			break;
	}
	return true;
}

void
ta_detect(TaDetector d, const char *s, int len, int rule, TaSpanList *out)
{
	switch (d)
	{
		case TA_DETECT_BEARER:
			detect_bearer(s, len, rule, out);
			break;
		case TA_DETECT_JWT:
			detect_jwt(s, len, rule, out);
			break;
		case TA_DETECT_PEM_PRIVATE_KEY:
			detect_pem(s, len, rule, out);
			break;
		case TA_DETECT_API_KEY:
			detect_api_key(s, len, rule, out);
			break;
		case TA_DETECT_US_SSN:
			detect_ssn(s, len, rule, out);
			break;
		case TA_DETECT_CARD_NUMBER:
			detect_card(s, len, rule, out);
			break;
		case TA_DETECT_URL_CREDENTIALS:
			detect_url_credentials(s, len, rule, out);
			break;
		case TA_DETECT__COUNT:
			elog(ERROR, "invalid detector");
	}
}
