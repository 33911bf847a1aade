/*-------------------------------------------------------------------------
 *
 * security_state.c
 *		A fingerprint of who can see and change what around the rows.
 *
 * The chains prove that rows were not changed; they say nothing of the
 * state around them: row-level security, policies, privileges, the
 * extension's function definitions, triggers, rules, tenant bindings,
 * pseudonymization keys and the rule sets.  A superuser can change all of
 * it through the catalogs or with triggers off.  This file fingerprints
 * that state (the queries are in security_state_sql.h, shared with the
 * external verifier; the encoding is doc/canonical-encoding.md, section 8):
 *
 *	- digest() carries one hash per component and an overall hash, signed
 *	  with the rest, and verify_digest() names each component that differs
 *	  (the four configuration components only when no admin event of their
 *	  kind was recorded since the digest: their own functions change them);
 *	- verify() compares the structural components (those the extension's
 *	  install or upgrade script alone defines) object by object with the
 *	  expectation recorded in tool_audit.security_expectation at the end of
 *	  CREATE EXTENSION or ALTER EXTENSION UPDATE (record_security_expectation()
 *	  refuses to run anywhere else, and a trigger refuses every other write).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "nodes/pg_list.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"

#include "catalog.h"
#include "crypto.h"
#include "guard.h"
#include "jsonb_util.h"
#include "protections.h"
#include "security_state.h"
#include "security_state_sql.h"

static const TaSecStateComponent components[] = TA_SECSTATE_COMPONENTS;

StaticAssertDecl(lengthof(components) == TA_SECSTATE_NCOMPONENTS,
				 "TA_SECSTATE_NCOMPONENTS");

typedef struct SecRow
{
	char	   *enc;			/* the row's encoding (section 8) */
	int			len;
	char	   *key;			/* its first column */
	char	  **vals;			/* its columns (NULL: SQL NULL) */
	int			ncols;
} SecRow;

/*
 * A trigger (key: "table.trigger") or event trigger (key: its name) that
 * verify() already checks (protections.h).
 */
static bool
is_protective(const char *component, const char *key)
{
	if (strcmp(component, "triggers") != 0 && strcmp(component, "event_triggers") != 0)
		return false;
	for (size_t i = 0; i < lengthof(ta_protective_triggers); i++)
	{
		const TaProtectiveTrigger *t = &ta_protective_triggers[i];
		size_t		len = strlen(t->table);

		if (strncmp(key, t->table, len) == 0 && key[len] == '.' &&
			strcmp(key + len + 1, t->trigger) == 0)
			return true;
	}
	for (size_t i = 0; i < lengthof(ta_protective_event_triggers); i++)
		if (strcmp(key, ta_protective_event_triggers[i]) == 0)
			return true;
	return false;
}

typedef struct SecComp
{
	const TaSecStateComponent *c;
	bool		present;		/* its table exists (configuration components) */
	int			nrows;
	SecRow	   *rows;			/* sorted by encoding */
	unsigned char hash[TA_HASH_LEN];
} SecComp;

static void
put_u32(StringInfo buf, uint32 v)
{
	appendStringInfoChar(buf, (char) (v >> 24));
	appendStringInfoChar(buf, (char) (v >> 16));
	appendStringInfoChar(buf, (char) (v >> 8));
	appendStringInfoChar(buf, (char) v);
}

static void
put_domain(StringInfo buf, const char *name)
{
	appendBinaryStringInfo(buf, TA_SECSTATE_DOMAIN, strlen(TA_SECSTATE_DOMAIN) + 1);
	appendStringInfoChar(buf, (char) strlen(name));
	appendStringInfoString(buf, name);
}

/*
 * A row as canonical-encoding.md section 8 hashes it: its column count, then
 * each value's length and bytes (NULL: 0xFFFFFFFF); column null_col (-1:
 * none) as NULL.
 */
static void
encode_row(StringInfo buf, const SecRow *row, int null_col)
{
	put_u32(buf, (uint32) row->ncols);
	for (int col = 0; col < row->ncols; col++)
	{
		const char *v = col == null_col ? NULL : row->vals[col];

		if (v == NULL)
			put_u32(buf, 0xFFFFFFFF);
		else
		{
			put_u32(buf, (uint32) strlen(v));
			appendStringInfoString(buf, v);
		}
	}
}

static int
row_cmp(const void *a, const void *b)
{
	const SecRow *x = a;
	const SecRow *y = b;
	int			c = memcmp(x->enc, y->enc, Min(x->len, y->len));

	return c != 0 ? c : (x->len > y->len) - (x->len < y->len);
}

static int
key_cmp(const void *a, const void *b)
{
	return strcmp(((const SecRow *) a)->key, ((const SecRow *) b)->key);
}

static bool
is_config(const TaSecStateComponent *c)
{
	return c->event_pattern != NULL;
}

/* Runs every component's query; fills comps[TA_SECSTATE_NCOMPONENTS]. */
static void
compute(SecComp *comps)
{
	MemoryContext callercxt = CurrentMemoryContext;
	Oid			owner = ta_relation_owner(ta_schema_relid("tool_calls", false));
	int			nest = NewGUCNestLevel();

	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	for (int i = 0; i < TA_SECSTATE_NCOMPONENTS; i++)
	{
		SecComp    *sc = &comps[i];
		StringInfoData h;
		MemoryContext spicxt;

		memset(sc, 0, sizeof(*sc));
		sc->c = &components[i];
		/* the keys are read through their fingerprints' view (1.5) */
		sc->present = !is_config(sc->c) ||
			OidIsValid(ta_schema_relid(strcmp(sc->c->name, "pseudonym_keys") == 0 ?
									   "pseudonym_key_fingerprints" : sc->c->name, true));
		if (!sc->present)
			continue;
		/* as the extension's owner: nobody else may read the keys */
		ta_spi_exec_as_owner(owner, sc->c->sql, 0, NULL, NULL, NULL, true);
		spicxt = MemoryContextSwitchTo(callercxt);
		sc->nrows = (int) SPI_processed;
		sc->rows = palloc0(sizeof(SecRow) * Max(sc->nrows, 1));
		for (int r = 0; r < sc->nrows; r++)
		{
			HeapTuple	tup = SPI_tuptable->vals[r];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			StringInfoData e;

			sc->rows[r].ncols = desc->natts;
			sc->rows[r].vals = palloc0(sizeof(char *) * desc->natts);
			for (int col = 1; col <= desc->natts; col++)
				sc->rows[r].vals[col - 1] = SPI_getvalue(tup, desc, col);
			sc->rows[r].key = pstrdup(sc->rows[r].vals[0] ? sc->rows[r].vals[0] : "");
			initStringInfo(&e);
			encode_row(&e, &sc->rows[r], -1);
			sc->rows[r].enc = e.data;
			sc->rows[r].len = e.len;
		}
		qsort(sc->rows, sc->nrows, sizeof(SecRow), row_cmp);
		initStringInfo(&h);
		put_domain(&h, sc->c->name);
		put_u32(&h, (uint32) sc->nrows);
		for (int r = 0; r < sc->nrows; r++)
			appendBinaryStringInfo(&h, sc->rows[r].enc, sc->rows[r].len);
		ta_sha256(h.data, h.len, sc->hash);
		MemoryContextSwitchTo(spicxt);
	}
	SPI_finish();
	AtEOXact_GUC(true, nest);
}

static char *
hex(const unsigned char *h)
{
	char	   *out = palloc(2 * TA_HASH_LEN + 1);

	out[hex_encode((const char *) h, TA_HASH_LEN, out)] = '\0';
	return out;
}

/*
 * One object's hash: what the expectation records.  The row's encoding, but
 * with a protective trigger's enabled state as NULL.
 */
static char *
object_hash(const SecComp *sc, const SecRow *row)
{
	StringInfoData h;
	unsigned char out[TA_HASH_LEN];
	/* the enabled state: second column of triggers, third of event triggers */
	int			mask = !is_protective(sc->c->name, row->key) ? -1 :
		strcmp(sc->c->name, "triggers") == 0 ? 1 : 2;

	initStringInfo(&h);
	put_domain(&h, sc->c->name);
	encode_row(&h, row, mask);
	ta_sha256(h.data, h.len, out);
	pfree(h.data);
	return hex(out);
}

struct TaSecState
{
	SecComp		comps[TA_SECSTATE_NCOMPONENTS];
};

TaSecState *
ta_security_state_read(void)
{
	TaSecState *state = palloc(sizeof(TaSecState));

	compute(state->comps);
	return state;
}

void
ta_security_state_append(StringInfo buf)
{
	SecComp		comps[TA_SECSTATE_NCOMPONENTS];
	StringInfoData all;
	unsigned char overall[TA_HASH_LEN];

	compute(comps);
	initStringInfo(&all);
	appendBinaryStringInfo(&all, TA_SECSTATE_DOMAIN, strlen(TA_SECSTATE_DOMAIN) + 1);
	appendStringInfoString(buf, ",\"security_state\":{");
	for (int i = 0; i < TA_SECSTATE_NCOMPONENTS; i++)
	{
		if (!comps[i].present)
			continue;
		appendStringInfoChar(&all, (char) strlen(comps[i].c->name));
		appendStringInfoString(&all, comps[i].c->name);
		appendBinaryStringInfo(&all, (char *) comps[i].hash, TA_HASH_LEN);
		appendStringInfo(buf, "\"%s\":\"%s\",", comps[i].c->name, hex(comps[i].hash));
	}
	ta_sha256(all.data, all.len, overall);
	appendStringInfo(buf, "\"overall\":\"%s\"}", hex(overall));
}

/*
 * tool_audit.security_state() RETURNS jsonb
 */
PG_FUNCTION_INFO_V1(security_state);
Datum
security_state(PG_FUNCTION_ARGS)
{
	StringInfoData buf;

	initStringInfo(&buf);
	ta_security_state_append(&buf);
	/* drop the leading ,"security_state": */
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in,
										CStringGetDatum(strchr(buf.data, '{'))));
}

/* ---- verify_digest() ---- */

static bool
events_since(const TaSecStateComponent *c, const char *taken_at)
{
	static const char *const sql =
	"SELECT 1 FROM tool_audit.admin_events"
	" WHERE event_type OPERATOR(pg_catalog.~~) $1"
	"   AND occurred_at OPERATOR(pg_catalog.>=) $2::pg_catalog.timestamptz LIMIT 1";
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		args[2] = {CStringGetTextDatum(c->event_pattern),
	CStringGetTextDatum(taken_at)};
	bool		found;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ta_spi_exec_as_owner(ta_relation_owner(ta_schema_relid("admin_events", false)),
						 sql, 2, types, args, NULL, true);
	found = SPI_processed > 0;
	SPI_finish();
	return found;
}

void
ta_security_state_check_digest(Jsonb *d, const TaSecState *state,
							   TaSecStateReport report, void *arg)
{
	JsonbValue *ss = ta_jsonb_key(&d->root, "security_state");
	char	   *taken_at = ta_jsonb_string(&d->root, "taken_at");
	const SecComp *comps = state->comps;

	/* a digest taken before 1.5 has none: nothing to compare */
	if (ss == NULL || ss->type != jbvBinary || !JsonContainerIsObject(ss->val.binary.data))
		return;
	for (int i = 0; i < TA_SECSTATE_NCOMPONENTS; i++)
	{
		const TaSecStateComponent *c = comps[i].c;
		char	   *theirs = ta_jsonb_string(ss->val.binary.data, c->name);

		if (theirs == NULL)
			continue;
		if (comps[i].present && strcmp(theirs, hex(comps[i].hash)) == 0)
			continue;
		if (is_config(c) && comps[i].present && taken_at != NULL &&
			events_since(c, taken_at))
			continue;
		report(arg, psprintf("security state changed since the digest: %s%s", c->name,
							 is_config(c) ? " (and no admin event since the digest records a change)" : ""));
	}
}

/* ---- verify(): the expectation recorded by the install or upgrade script ---- */

typedef struct Expected
{
	char	   *component;
	char	   *object;
	char	   *hash;
} Expected;

static int
expected_cmp(const void *a, const void *b)
{
	const Expected *x = a;
	const Expected *y = b;
	int			c = strcmp(x->component, y->component);

	return c != 0 ? c : strcmp(x->object, y->object);
}

/*
 * Tenant bindings against the admin events bind_tenant() and unbind_tenant()
 * record (since 1.0): a binding the events do not account for was made, or
 * removed, by another path (direct DML as a superuser).  A binding with no
 * event at all is reported only while no admin event was ever purged (its
 * event may be one of them).  The keys and the rule sets cannot be checked
 * this way: a rotation's event names key ids, not key bytes; the built-in
 * rules and the seeded alert rules have no event.  A digest covers those.
 */
static void
check_bindings(bool name_bindings, TaSecStateReport report, void *arg)
{
	static const char *const sql =
	"WITH ev AS ("
	"  SELECT DISTINCT ON (x.r, x.t) x.r, x.t, x.added FROM ("
	"    SELECT e.id, e.payload->'after'->>'role', e.payload->'after'->>'tenant_id', true"
	"      FROM tool_audit.admin_events e WHERE e.event_type = 'tool_audit.tenant_binding.add'"
	"    UNION ALL"
	"    SELECT e.id, e.payload->'before'->>'role', e.payload->'before'->>'tenant_id', false"
	"      FROM tool_audit.admin_events e WHERE e.event_type = 'tool_audit.tenant_binding.remove'"
	"  ) x(id, r, t, added) ORDER BY x.r, x.t, x.id DESC),"
	" cur AS (SELECT b.role::text AS r, b.tenant_id AS t FROM tool_audit.tenant_bindings b)"
	" SELECT c.r, c.t, true FROM cur c"
	"  WHERE NOT EXISTS (SELECT 1 FROM ev WHERE ev.r = c.r AND ev.t = c.t AND ev.added)"
	"    AND NOT EXISTS (SELECT 1 FROM tool_audit.purge_anchors p WHERE p.table_name = 'admin_events')"
	" UNION ALL"
	" SELECT ev.r, ev.t, false FROM ev"
	"  WHERE ev.added AND NOT EXISTS (SELECT 1 FROM cur c WHERE c.r = ev.r AND c.t = ev.t)"
	" ORDER BY 1, 2";
	MemoryContext callercxt = CurrentMemoryContext;
	List	   *problems = NIL;
	ListCell   *lc;
	int			nest;

	if (!OidIsValid(ta_schema_relid("tenant_bindings", true)) ||
		!OidIsValid(ta_schema_relid("purge_anchors", true)))
		return;
	nest = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ta_spi_exec_as_owner(ta_relation_owner(ta_schema_relid("tenant_bindings", false)),
						 sql, 0, NULL, NULL, NULL, true);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *r = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char	   *t = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		char	   *present = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3);
		MemoryContext spicxt = MemoryContextSwitchTo(callercxt);

		/* a tenant's run: the roles and tenants are other tenants' to know */
		if (!name_bindings)
			problems = lappend(problems,
							   pstrdup("a tenant binding was changed outside bind_tenant() and unbind_tenant() "
									   "(not named in a tenant's run: an admin's verify() names it)"));
		else
			problems = lappend(problems,
							   psprintf(strcmp(present, "t") == 0 ?
										"tenant binding of role %s to tenant %s: no admin event records it (not made by bind_tenant())" :
										"tenant binding of role %s to tenant %s: gone, and no admin event records its removal (not removed by unbind_tenant())",
										r ? r : "?", t ? t : "?"));
		MemoryContextSwitchTo(spicxt);
	}
	SPI_finish();
	AtEOXact_GUC(true, nest);
	foreach(lc, problems)
		report(arg, (const char *) lfirst(lc));
}

void
ta_security_state_check_install(const TaSecState *state, bool name_bindings,
								TaSecStateReport report, void *arg)
{
	Oid			relid = ta_schema_relid("security_expectation", true);
	MemoryContext callercxt = CurrentMemoryContext;
	const SecComp *comps;
	Expected   *exp;
	int			nexp;
	int			e = 0;

	if (!OidIsValid(relid))
		return;					/* a schema older than 1.5 */
	check_bindings(name_bindings, report, arg);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ta_spi_exec_as_owner(ta_relation_owner(relid),
						 "SELECT component, object, hash FROM tool_audit.security_expectation",
						 0, NULL, NULL, NULL, true);
	{
		MemoryContext spicxt = MemoryContextSwitchTo(callercxt);

		nexp = (int) SPI_processed;
		exp = palloc0(sizeof(Expected) * Max(nexp, 1));
		for (int i = 0; i < nexp; i++)
		{
			exp[i].component = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
			exp[i].object = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
			exp[i].hash = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3);
		}
		MemoryContextSwitchTo(spicxt);
	}
	SPI_finish();
	if (nexp == 0)
	{
		report(arg, "security state: no expectation recorded (tool_audit.security_expectation is empty)");
		return;
	}
	qsort(exp, nexp, sizeof(Expected), expected_cmp);

	comps = (state != NULL ? state : ta_security_state_read())->comps;
	for (int i = 0; i < TA_SECSTATE_NCOMPONENTS; i++)
	{
		const SecComp *sc = &comps[i];
		const char *name = sc->c->name;
		int			r = 0;

		if (is_config(sc->c))
			continue;
		/* by object (the hashes, all check_digest() reads, are made) */
		qsort(sc->rows, sc->nrows, sizeof(SecRow), key_cmp);
		while (e < nexp && strcmp(exp[e].component, name) < 0)
			e++;				/* a component this library does not know */
		while (r < sc->nrows || (e < nexp && strcmp(exp[e].component, name) == 0))
		{
			bool		have_exp = e < nexp && strcmp(exp[e].component, name) == 0;
			int			c = !have_exp ? -1 : r >= sc->nrows ? 1 :
			strcmp(sc->rows[r].key, exp[e].object);

			if (c < 0)
				report(arg, psprintf("security state differs from the install: %s: %s added",
									 name, sc->rows[r++].key));
			else if (c > 0)
			{
				if (!is_protective(name, exp[e].object))
					report(arg, psprintf("security state differs from the install: %s: %s missing",
										 name, exp[e].object));
				e++;
			}
			else
			{
				if (strcmp(object_hash(sc, &sc->rows[r]), exp[e].hash) != 0)
					report(arg, psprintf("security state differs from the install: %s: %s changed",
										 name, sc->rows[r].key));
				r++;
				e++;
			}
		}
	}
}

/*
 * tool_audit.record_security_expectation() RETURNS void
 *
 * Called by the install and upgrade scripts, last: records the structural
 * components object by object.  Nothing else may call it.
 */
PG_FUNCTION_INFO_V1(record_security_expectation);
Datum
record_security_expectation(PG_FUNCTION_ARGS)
{
	SecComp		comps[TA_SECSTATE_NCOMPONENTS];
	Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};

	if (!ta_in_own_script())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("record_security_expectation() runs only in the extension's install or upgrade script")));
	compute(comps);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("DELETE FROM tool_audit.security_expectation", false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not clear tool_audit.security_expectation");
	for (int i = 0; i < TA_SECSTATE_NCOMPONENTS; i++)
	{
		if (is_config(comps[i].c))
			continue;
		for (int r = 0; r < comps[i].nrows; r++)
		{
			Datum		args[3] = {CStringGetTextDatum(comps[i].c->name),
				CStringGetTextDatum(comps[i].rows[r].key),
			CStringGetTextDatum(object_hash(&comps[i], &comps[i].rows[r]))};

			if (SPI_execute_with_args("INSERT INTO tool_audit.security_expectation"
									  " (component, object, hash) VALUES ($1, $2, $3)"
									  " ON CONFLICT DO NOTHING",
									  3, types, args, NULL, false, 0) != SPI_OK_INSERT)
				elog(ERROR, "could not record the security expectation");
		}
	}
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * tool_audit.security_expectation_guard() RETURNS trigger
 *
 * The expectation changes only with the extension's scripts.
 */
PG_FUNCTION_INFO_V1(security_expectation_guard);
Datum
security_expectation_guard(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("security_expectation_guard: not called by trigger manager")));
	if (!ta_in_own_script())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("tool_audit.security_expectation is written only by CREATE EXTENSION and ALTER EXTENSION UPDATE")));
	if (TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event))
		return PointerGetDatum(NULL);
	return PointerGetDatum(TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
						   trigdata->tg_newtuple : trigdata->tg_trigtuple);
}
