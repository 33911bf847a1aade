/*-------------------------------------------------------------------------
 *
 * security_state.c
 *		The external verifier's side of the security-state fingerprint.
 *
 * A digest taken by 1.5 or later carries "security_state": one SHA-256 per
 * component of who can see and change what (row-level security, policies,
 * privileges, the extension's functions, triggers, event triggers, rules,
 * tenant bindings, key fingerprints, rule sets).  This file recomputes each
 * from the database it reads, with the very queries the extension runs
 * (src/security_state_sql.h) and the encoding of doc/canonical-encoding.md,
 * section 8, and reports each component that differs.  A configuration
 * component (tenant bindings, keys, rule sets) that differs is reported only
 * when no admin event of its kind was recorded since the digest: the
 * extension's own functions change them, and say so.  tool_audit_verifier
 * may read everything the queries name (the keys only through their
 * fingerprints' view); a component this role may not read is not compared,
 * with a note.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "verify.h"
#include "json.h"
#include "../src/security_state_sql.h"

static const TaSecStateComponent components[] = TA_SECSTATE_COMPONENTS;

static int
row_cmp(const void *a, const void *b)
{
	const Buf  *x = a;
	const Buf  *y = b;

	return bytes_cmp(x->data, x->len, y->data, y->len);
}

static void
put_domain(Buf *b, const char *name)
{
	buf_append(b, TA_SECSTATE_DOMAIN, strlen(TA_SECSTATE_DOMAIN) + 1);
	buf_putc(b, (unsigned char) strlen(name));
	buf_puts(b, name);
}

/* Appends one column to a row's encoding (NULL: value == NULL). */
void
security_state_put_column(Buf *row, const char *value, size_t len)
{
	if (value == NULL)
		buf_put_u32(row, 0xFFFFFFFFu);
	else
	{
		buf_put_u32(row, (uint32_t) len);
		buf_append(row, value, len);
	}
}

/* A component's hash over its rows' encodings (sorted here). */
void
security_state_component_hash(const char *name, Buf *rows, size_t n,
							  unsigned char out[HASH_LEN])
{
	Buf			h;
	size_t		i;

	qsort(rows, n, sizeof(Buf), row_cmp);
	buf_init(&h);
	put_domain(&h, name);
	buf_put_u32(&h, (uint32_t) n);
	for (i = 0; i < n; i++)
		buf_append(&h, rows[i].data, rows[i].len);
	sha256(h.data, h.len, out);
	buf_free(&h);
}

/* The overall hash over (name, 32-byte hash) pairs in the components' order. */
void
security_state_overall_hash(const char *const *names, const unsigned char (*hashes)[HASH_LEN],
							size_t n, unsigned char out[HASH_LEN])
{
	Buf			h;
	size_t		i;

	buf_init(&h);
	buf_append(&h, TA_SECSTATE_DOMAIN, strlen(TA_SECSTATE_DOMAIN) + 1);
	for (i = 0; i < n; i++)
	{
		buf_putc(&h, (unsigned char) strlen(names[i]));
		buf_puts(&h, names[i]);
		buf_append(&h, hashes[i], HASH_LEN);
	}
	sha256(h.data, h.len, out);
	buf_free(&h);
}

/* Keeps the digest's member; called by digest_load(). */
void
security_state_load(const JsonValue *root, Digest *d)
{
	const JsonValue *ss = json_get(root, "security_state");
	size_t		i;

	d->nsecstate = 0;
	if (ss == NULL || ss->kind != JSON_OBJECT)
		return;					/* a digest from before 1.5 */
	d->secstate = xmalloc(sizeof(DigestSecState) * (ss->count ? ss->count : 1));
	for (i = 0; i < ss->count; i++)
	{
		const JsonValue *v = ss->members[i].value;

		if (v->kind != JSON_STRING || v->len != 2 * HASH_LEN)
			fatal("digest: \"security_state\" member \"%s\" must be a SHA-256 in hex",
				  ss->members[i].key);
		d->secstate[d->nsecstate].name = xstrndup(ss->members[i].key, ss->members[i].keylen);
		d->secstate[d->nsecstate].hash = xstrndup(v->str, v->len);
		d->nsecstate++;
	}
}

void
security_state_free(Digest *d)
{
	size_t		i;

	for (i = 0; i < d->nsecstate; i++)
	{
		free(d->secstate[i].name);
		free(d->secstate[i].hash);
	}
	free(d->secstate);
	free(d->taken_at_text);
}

static const char *
digest_hash(const Digest *d, const char *name)
{
	size_t		i;

	for (i = 0; i < d->nsecstate; i++)
		if (strcmp(d->secstate[i].name, name) == 0)
			return d->secstate[i].hash;
	return NULL;
}

static void
exec_cmd(PGconn *conn, const char *sql)
{
	PGresult   *res = PQexec(conn, sql);

	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		fatal("query failed: %s", PQerrorMessage(conn));
	PQclear(res);
}

/*
 * One component's hash in hex (out: 65 bytes; empty when it cannot be read,
 * e.g. its table was dropped, which compares as changed); false, with a
 * note, if this role may not read it.
 */
static bool
component_hash(PGconn *conn, const TaSecStateComponent *c, char *out)
{
	PGresult   *res;
	Buf		   *rows;
	int			n,
				i,
				j;
	unsigned char hash[HASH_LEN];

	exec_cmd(conn, "SAVEPOINT security_state");
	res = PQexec(conn, c->sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		bool		denied = state != NULL && strcmp(state, "42501") == 0;

		/* a role that may not read it: not compared; anything else (its table dropped): changed */
		if (denied)
			fprintf(stderr, "tool_audit_verify: note: security state \"%s\" not compared: %s",
					c->name, PQerrorMessage(conn));
		PQclear(res);
		exec_cmd(conn, "ROLLBACK TO SAVEPOINT security_state");
		out[0] = '\0';
		return !denied;
	}
	exec_cmd(conn, "RELEASE SAVEPOINT security_state");
	n = PQntuples(res);
	rows = xmalloc(sizeof(Buf) * (n ? n : 1));
	for (i = 0; i < n; i++)
	{
		buf_init(&rows[i]);
		buf_put_u32(&rows[i], (uint32_t) PQnfields(res));
		for (j = 0; j < PQnfields(res); j++)
			security_state_put_column(&rows[i],
									  PQgetisnull(res, i, j) ? NULL : PQgetvalue(res, i, j),
									  (size_t) PQgetlength(res, i, j));
	}
	PQclear(res);
	security_state_component_hash(c->name, rows, (size_t) n, hash);
	for (i = 0; i < n; i++)
		buf_free(&rows[i]);
	free(rows);
	hex_encode(hash, HASH_LEN, out);
	out[2 * HASH_LEN] = '\0';
	return true;
}

static bool
events_since(PGconn *conn, const TaSecStateComponent *c, const char *taken_at)
{
	const char *params[2] = {c->event_pattern, taken_at};
	PGresult   *res = PQexecParams(conn,
								   "SELECT 1 FROM tool_audit.admin_events"
								   " WHERE event_type LIKE $1 AND occurred_at >= $2::timestamptz LIMIT 1",
								   2, NULL, params, NULL, NULL, 0);
	bool		found;

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		fatal("query failed: %s", PQerrorMessage(conn));
	found = PQntuples(res) > 0;
	PQclear(res);
	return found;
}

/*
 * The extension is installed here (not a copy of its tables: a central
 * database holds plain tables, doc/scaling.md): its row in pg_extension, or
 * its digest() function (a row removed from the catalog by hand does not
 * make a source database a copy).
 */
static bool
has_extension(PGconn *conn)
{
	PGresult   *res = PQexec(conn,
							 "SELECT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'tool_audit')"
							 " OR pg_catalog.to_regprocedure('tool_audit.digest()') IS NOT NULL");
	bool		yes;

	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
		fatal("query failed: %s", PQerrorMessage(conn));
	yes = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return yes;
}

/*
 * Compare the database's security state with the digest's.  Returns true
 * if the run should go on.
 */
bool
security_state_check(PGconn *conn, const Digest *d)
{
	size_t		i;
	bool		go_on = true;

	if (d->nsecstate == 0)
		return true;
	exec_cmd(conn, "SET LOCAL search_path = pg_catalog, pg_temp");
	if (!has_extension(conn))
	{
		fprintf(stderr, "tool_audit_verify: note: security state not compared: this database has "
				"no tool_audit extension (a copy of the audit tables, such as a central database); "
				"the source's is compared where the extension is\n");
		return true;
	}
	for (i = 0; i < sizeof(components) / sizeof(components[0]) && go_on; i++)
	{
		const TaSecStateComponent *c = &components[i];
		const char *theirs = digest_hash(d, c->name);
		char		ours[2 * HASH_LEN + 1];
		char		problem[256];

		if (theirs == NULL)
			continue;
		if (!component_hash(conn, c, ours))
			continue;
		if (strcmp(ours, theirs) == 0)
			continue;
		if (c->event_pattern != NULL && d->taken_at_text != NULL &&
			events_since(conn, c, d->taken_at_text))
			continue;
		snprintf(problem, sizeof(problem), "security state changed since the digest: %s%s",
				 c->name, c->event_pattern != NULL ?
				 " (and no admin event since the digest records a change)" : "");
		go_on = report_digest_problem(problem);
	}
	return go_on;
}
