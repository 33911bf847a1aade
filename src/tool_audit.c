/*-------------------------------------------------------------------------
 *
 * tool_audit.c
 *		Module entry point: settings (GUCs), the commit-time durability
 *		guarantee, and installation of the optional preload hooks.
 *
 * The library works when loaded lazily (the first call of one of its
 * functions in a session) and when listed in shared_preload_libraries.
 * Only the latter installs the utility and executor hooks of guard.c, which
 * refuse what event triggers cannot see (DROP EVENT TRIGGER, TRUNCATE with
 * the trigger disabled through the catalog, UPDATE/DELETE by a superuser).
 *
 * Durability: an audit row whose commit the client saw must survive a
 * crash, even if the caller set synchronous_commit = off.  Every insert into
 * an audit table notes the fact; at PRE_COMMIT we raise synchronous_commit
 * to "on" for the rest of that transaction.  Doing it at PRE_COMMIT (rather
 * than in the trigger) means a function-level SET clause that ended before
 * the commit cannot undo it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/varlena.h"

#include "approval.h"
#include "autonomous.h"
#include "chain.h"
#include "guard.h"
#include "impersonation.h"
#include "insert.h"
#include "lane_hint.h"
#include "layout.h"
#include "retention.h"
#include "role_events.h"
#include "time_order.h"
#include "verify_parallel.h"
#include "tool_audit.h"
#include "trail_mark.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

int			ta_max_jsonb_size_kb = 1024;
int			ta_max_depth = 64;
char	   *ta_summary_keys = NULL;
bool		ta_restoring = false;
char	   *ta_signing_key_file = NULL;
char	   *ta_call = NULL;
static char *ta_tenant = NULL;

/* set by the insert triggers, cleared at transaction end */
static bool ta_wrote_in_xact = false;

void
ta_note_audit_write(void)
{
	ta_wrote_in_xact = true;
}

static void
ta_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
			if (ta_wrote_in_xact && synchronous_commit < SYNCHRONOUS_COMMIT_ON)
				(void) set_config_option("synchronous_commit", "on",
										 PGC_USERSET, PGC_S_SESSION,
										 GUC_ACTION_LOCAL, true, 0, false);
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			ta_wrote_in_xact = false;
			break;
		default:
			break;
	}
}

static bool
check_summary_keys(char **newval, void **extra, GucSource source)
{
	char	   *raw = pstrdup(*newval);
	List	   *names;

	if (!SplitGUCList(raw, ',', &names))
	{
		GUC_check_errdetail("List syntax is invalid.");
		pfree(raw);
		return false;
	}
	list_free(names);
	pfree(raw);
	return true;
}

/*
 * tool_audit.call: empty, or a uuid in the form uuid_out writes
 * (8-4-4-4-12 hex digits) or without its hyphens.
 */
static bool
check_call(char **newval, void **extra, GucSource source)
{
	const char *v = *newval;
	size_t		len = v ? strlen(v) : 0;

	if (len == 0)
		return true;
	if (len == 32 || len == 36)
	{
		size_t		i;

		for (i = 0; i < len; i++)
		{
			bool		hyphen = (len == 36 && (i == 8 || i == 13 || i == 18 || i == 23));

			if (hyphen ? v[i] != '-' : !isxdigit((unsigned char) v[i]))
				break;
		}
		if (i == len)
			return true;
	}
	/*
	 * Our own message, not PostgreSQL's "invalid value for parameter ...:
	 * <value>": an application that puts something else than a call's id
	 * here (a token, a prompt) must not find it in the error and the log.
	 */
	GUC_check_errmsg("invalid value for parameter \"tool_audit.call\"");
	GUC_check_errdetail("The value must be a uuid, or empty.");
	return false;
}

void
_PG_init(void)
{
	DefineCustomIntVariable("tool_audit.max_jsonb_size",
							"Largest jsonb document (arguments, metadata, payload) an audit row may store.",
							"Larger documents are refused with an error rather than stored or cut.",
							&ta_max_jsonb_size_kb,
							1024, 1, 1024 * 1024,
							PGC_SUSET, GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("tool_audit.max_depth",
							"Deepest nesting of jsonb the sanitizer accepts.",
							NULL,
							&ta_max_depth,
							64, 1, 10000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("tool_audit.summary_keys",
							   "Result keys copied into result_summary.",
							   "A comma-separated list of top-level keys of a tool result.",
							   &ta_summary_keys,
							   "id,order_id,customer_id,status,count",
							   PGC_SUSET, GUC_LIST_INPUT,
							   check_summary_keys, NULL, NULL);

	DefineCustomStringVariable("tool_audit.tenant",
							   "Narrows what tool_audit_reader sees to one tenant for this session.",
							   "Row-level security also applies the tenant bindings set by tool_audit_admin; this setting can only narrow them.",
							   &ta_tenant,
							   "",
							   PGC_USERSET, 0,
							   NULL, NULL, NULL);

	DefineCustomBoolVariable("tool_audit.restoring",
							 "Keep the ids, timestamps and roles of rows without hashes restored from a dump of 1.0.",
							 "Other dumps need no setting: a superuser's row that brings its id, row hash and chain position is restored as it is once its hashes check.",
							 &ta_restoring,
							 false,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("tool_audit.signing_key_file",
							   "Ed25519 private key (PEM) that signs tool_audit.digest().",
							   "Readable by the server's OS user only; empty: digests are not signed.",
							   &ta_signing_key_file,
							   "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("tool_audit.call",
							   "The tool call in progress (its event_id), to which tracked row changes are linked.",
							   "Set by begin_call() for the rest of the transaction, or by the application (SET LOCAL) before a tool's statements; empty: no call in progress.",
							   &ta_call,
							   "",
							   PGC_USERSET, 0,
							   check_call, NULL, NULL);

	ta_retention_init();		/* the test clock's settings */
	ta_approval_init();			/* dual approval's settings */
	ta_read_audit_init();		/* tool_audit.unrecorded_standby_reads */
	ta_role_events_init();		/* tool_audit.record_role_changes */
	ta_autonomous_init();		/* tool_audit.max_autonomous_workers */
	ta_time_order_init();		/* tool_audit.time_tolerance */
	ta_verify_parallel_init();	/* tool_audit.verify_parallel_* */
	ta_lane_hint_settings();	/* tool_audit.lane_hints, preloaded only */

	MarkGUCPrefixReserved("tool_audit");

	RegisterXactCallback(ta_xact_callback, NULL);
	ta_layout_init();
	ta_chain_init();
	ta_lane_hint_init();		/* shared memory when preloaded */
	ta_insert_init();
	ta_trail_mark_init();

	if (process_shared_preload_libraries_in_progress)
		ta_guard_install_hooks();
}
