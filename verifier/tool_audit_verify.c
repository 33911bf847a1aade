/*-------------------------------------------------------------------------
 *
 * tool_audit_verify.c
 *	  Command line entry point of tool_audit_verify, the external verifier
 *	  of tool_audit's row hashes, chain links and signed digests.
 *
 *	  tool_audit_verify --vectors DIR
 *	  tool_audit_verify [--digest FILE] [--public-key FILE] [--all] [--tenant NAME]
 *						[--time-tolerance SECONDS] CONNINFO
 *
 * Exit status: 0 all intact, 1 a problem was found (the first one is
 * printed, or all of them with --all), 2 usage, connection or input error.
 * Problems go to stdout, one line each, so that a cron job can mail them;
 * errors go to stderr.
 *
 * verifier/tool_audit_verify.c
 *
 *-------------------------------------------------------------------------
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verify.h"

bool		problems_found = false;
static bool report_all = false;

static void
usage(FILE *out)
{
	fprintf(out,
			"Usage:\n"
			"  tool_audit_verify --vectors DIR\n"
			"  tool_audit_verify [--digest FILE] [--public-key FILE] [--all] [--tenant NAME]\n"
			"                    [--time-tolerance SECONDS] CONNINFO\n"
			"\n"
			"Recomputes the row hashes and chain links of tool_audit.tool_calls,\n"
			"tool_audit.admin_events and tool_audit.data_changes and compares them\n"
			"with the stored ones and, with --digest, with the lane heads of a digest\n"
			"taken earlier by tool_audit.digest().\n"
			"\n"
			"Options:\n"
			"  --digest FILE      JSON output of tool_audit.digest() to check against\n"
			"  --public-key FILE  Ed25519 public key (PEM) that signed the digest\n"
			"  --all              report every problem, not only the first\n"
			"  --tenant NAME      check only the chains of tenant NAME (and the digest's\n"
			"                     heads of it), e.g. as a reader bound to that tenant\n"
			"  --time-tolerance SECONDS\n"
			"                     how far a row's time may go back along its lane, or\n"
			"                     before the digest when the digest does not cover it\n"
			"                     (default 60)\n"
			"  --vectors DIR      check this program against the test vectors in DIR\n"
			"  --help             show this help\n"
			"\n"
			"Exit status: 0 intact, 1 problem found, 2 error.\n");
}

/* Print a digest-supplied name without letting it forge output lines. */
static void
print_name(const char *s)
{
	for (; *s; s++)
	{
		char		c = *s;

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			(c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-')
			putchar(c);
		else
			putchar('?');
	}
}

static void
print_number(const char *label, int64_t v)
{
	if (v == POS_NONE)
		printf(" %s=-", label);
	else
		printf(" %s=%" PRId64, label, v);
}

/*
 * Report one problem.  Returns true if the run should go on (--all), false
 * if it should stop at this first problem.
 */
bool
report_problem(const char *table, int64_t chain, int64_t lane,
			   int64_t position, const char *row_id, const char *problem)
{
	problems_found = true;
	fputs("PROBLEM table=", stdout);
	print_name(table);
	print_number("chain", chain);
	print_number("lane", lane);
	print_number("position", position);
	printf(" row_id=%s: %s\n", row_id ? row_id : "-", problem);
	fflush(stdout);
	return report_all;
}

/* A digest head a sanctioned purge removed: not a problem, said anyway. */
void
report_purged(const char *table, int64_t chain, int64_t lane,
			  int64_t position, const char *what)
{
	fputs("PURGED table=", stdout);
	print_name(table);
	print_number("chain", chain);
	print_number("lane", lane);
	print_number("position", position);
	printf(": %s\n", what);
	fflush(stdout);
}

bool
report_digest_problem(const char *problem)
{
	problems_found = true;
	printf("PROBLEM digest: %s\n", problem);
	fflush(stdout);
	return report_all;
}

int
main(int argc, char **argv)
{
	static const struct option options[] = {
		{"digest", required_argument, NULL, 'd'},
		{"public-key", required_argument, NULL, 'k'},
		{"all", no_argument, NULL, 'a'},
		{"tenant", required_argument, NULL, 't'},
		{"time-tolerance", required_argument, NULL, 'T'},
		{"vectors", required_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}
	};
	const char *digest_path = NULL;
	const char *pubkey_path = NULL;
	const char *vectors_dir = NULL;
	bool		tolerance_given = false;
	Digest		digest;
	TableStats	stats[3] = {{"tool_calls", 0, 0}, {"admin_events", 0, 0}, {"data_changes", 0, 0}};
	bool		go_on = true;
	int			c;
	int			rc;

	while ((c = getopt_long(argc, argv, "", options, NULL)) != -1)
	{
		switch (c)
		{
			case 'd':
				digest_path = optarg;
				break;
			case 'k':
				pubkey_path = optarg;
				break;
			case 'a':
				report_all = true;
				break;
			case 't':
				tenant_only = optarg;
				break;
			case 'T':
				{
					int64_t		secs;

					if (!parse_int64(optarg, strlen(optarg), &secs) || secs < 0 ||
						secs > INT64_MAX / 1000000)
					{
						fprintf(stderr, "tool_audit_verify: --time-tolerance takes a number of seconds\n");
						return EXIT_ERROR;
					}
					time_tolerance_usec = secs * 1000000;
					tolerance_given = true;
				}
				break;
			case 'v':
				vectors_dir = optarg;
				break;
			case 'h':
				usage(stdout);
				return EXIT_OK;
			default:
				usage(stderr);
				return EXIT_ERROR;
		}
	}

	if (vectors_dir != NULL)
	{
		if (optind != argc || digest_path || pubkey_path || report_all || tenant_only ||
			tolerance_given)
		{
			fprintf(stderr, "tool_audit_verify: --vectors takes no other options\n");
			return EXIT_ERROR;
		}
		rc = run_vectors(vectors_dir);
		crypto_cleanup();
		return rc;
	}
	if (optind != argc - 1)
	{
		usage(stderr);
		return EXIT_ERROR;
	}
	if (pubkey_path != NULL && digest_path == NULL)
	{
		fprintf(stderr, "tool_audit_verify: --public-key needs --digest\n");
		return EXIT_ERROR;
	}

	memset(&digest, 0, sizeof(digest));
	if (digest_path != NULL)
		go_on = digest_load(digest_path, pubkey_path, &digest);
	if (go_on)
		go_on = verify_database(argv[optind], &digest, stats, 3);

	if (!problems_found)
		printf("OK: %s %" PRIu64 " rows in %" PRIu64 " chains, "
			   "%s %" PRIu64 " rows in %" PRIu64 " chains, "
			   "%s %" PRIu64 " rows in %" PRIu64 " chains; "
			   "digest heads checked: %zu\n",
			   stats[0].table, stats[0].rows, stats[0].chains,
			   stats[1].table, stats[1].rows, stats[1].chains,
			   stats[2].table, stats[2].rows, stats[2].chains,
			   digest.checked);
	if (!problems_found && digest.purged > 0)
		printf("digest heads removed by sanctioned purges: %zu\n", digest.purged);
	digest_free(&digest);
	crypto_cleanup();
	return problems_found ? EXIT_PROBLEM : EXIT_OK;
}
