/*-------------------------------------------------------------------------
 *
 * verify.h
 *	  Declarations shared by the files of tool_audit_verify, the external
 *	  verifier of tool_audit's row hashes, chain links and digests.
 *
 * The verifier is an independent re-implementation of
 * doc/canonical-encoding.md: it uses libpq, OpenSSL and yajl (for JSON)
 * only, never any PostgreSQL server code nor any of the extension's, so
 * that a bug in the extension's hashing cannot hide in both places at
 * once.
 *
 * verifier/verify.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TOOL_AUDIT_VERIFY_H
#define TOOL_AUDIT_VERIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HASH_LEN 32

/* exit codes */
#define EXIT_OK			0
#define EXIT_PROBLEM	1
#define EXIT_ERROR		2

/* util.c: memory, growable buffers, hex, files, fatal errors */
typedef struct Buf
{
	unsigned char *data;
	size_t		len;
	size_t		cap;
} Buf;

extern void *xmalloc(size_t n);
extern void *xrealloc(void *p, size_t n);
extern void *xgrow(void *p, size_t *cap, size_t need, size_t elemsize);
extern char *xstrndup(const char *s, size_t n);
extern int	bytes_cmp(const void *a, size_t alen, const void *b, size_t blen);
extern void fatal(const char *fmt,...) __attribute__((format(printf, 1, 2), noreturn));

extern void buf_init(Buf *b);
extern void buf_free(Buf *b);
extern void buf_reset(Buf *b);
extern void buf_reserve(Buf *b, size_t extra);
extern void buf_append(Buf *b, const void *p, size_t n);
extern void buf_putc(Buf *b, unsigned char c);
extern void buf_puts(Buf *b, const char *s);
extern void buf_put_u32(Buf *b, uint32_t v);
extern void buf_put_u64(Buf *b, uint64_t v);

extern void hex_encode(const unsigned char *in, size_t n, char *out);
extern bool hex_decode(const char *in, size_t inlen, unsigned char *out,
					   size_t outlen);
extern bool parse_int64(const char *s, size_t len, int64_t *out);
extern bool read_whole_file(const char *path, size_t maxlen, Buf *out,
							char *err, size_t errlen);

/* encoding.c: sections 2 and 4 of the spec (row hash, chain id and link) */
typedef struct RowField
{
	const char *name;			/* not copied: owned by the caller */
	size_t		namelen;
	char		tag;
	size_t		off;			/* value's offset in RowFields.values */
	size_t		len;
} RowField;

typedef struct RowFields
{
	RowField   *fields;
	size_t		nfields;
	size_t		cap;
	Buf			values;
	Buf			preimage;
} RowFields;

extern void sha256(const void *data, size_t len, unsigned char out[HASH_LEN]);
extern void crypto_cleanup(void);
extern void row_init(RowFields *r);
extern void row_free(RowFields *r);
extern void row_reset(RowFields *r);
extern void row_add(RowFields *r, const char *name, size_t namelen, char tag,
					const void *value, size_t len);
extern bool row_hash(RowFields *r, const char *table,
					 unsigned char out[HASH_LEN], char *err, size_t errlen);
extern bool chain_id(const char *table, const char *tenant, size_t tenantlen,
					 const char *policy, size_t policylen,
					 int64_t *out, char *err, size_t errlen);
extern void link_hash(int64_t chain, uint32_t lane, uint64_t seq,
					  const unsigned char prev[HASH_LEN],
					  const unsigned char row[HASH_LEN],
					  unsigned char out[HASH_LEN]);
extern void encode_i64(int64_t v, unsigned char out[8]);
extern int64_t get_i64(const unsigned char p[8]);
extern void encode_f64_bits(uint64_t bits, unsigned char out[8]);
extern void encode_f64(double d, unsigned char out[8]);
extern size_t encode_inet(int family, int bits, const unsigned char *addr,
						  unsigned char out[18]);

/* vectors.c: --vectors mode */
extern int	run_vectors(const char *dir);

/* digest.c: section 5 of the spec */
typedef struct DigestHead
{
	char	   *table;
	int64_t		chain;
	int64_t		lane;
	int64_t		position;
	unsigned char hash[HASH_LEN];
	bool		done;			/* compared, or reported as a problem */
	char	   *tenant;			/* NULL for none (tenant.c) */
} DigestHead;

typedef struct DigestSecState
{
	char	   *name;
	char	   *hash;			/* hex */
} DigestSecState;

typedef struct Digest
{
	char	   *database;
	char	   *taken_at_text;	/* as written (security_state.c) */
	DigestSecState *secstate;	/* "security_state" members (1.5 on) */
	size_t		nsecstate;
	DigestHead *heads;			/* sorted by (table, chain, lane, position) */
	size_t		nheads;
	size_t		checked;		/* heads found intact */
	size_t		purged;			/* heads inside spans a sanctioned purge removed */
	bool		has_taken_at;	/* its "taken_at" (timeorder.c) */
	int64_t		taken_at;
	bool		tenant_scoped;	/* "scope": "tenant": it covers only its tenants' chains */
} Digest;

extern bool digest_load(const char *path, const char *pubkey_path, Digest *d);
extern bool digest_names_tenant(const Digest *d, const char *tenant, size_t len);

/* tenant.c: --tenant, one tenant's chains only */
struct pg_conn;
extern const char *tenant_only;
extern bool tenant_wanted(const char *tenant, size_t len);
extern void tenant_filter_heads(Digest *d);
extern bool tenant_may_read(struct pg_conn *conn, const char *table);
extern void digest_free(Digest *d);
extern int	digest_head_cmp(const DigestHead *a, const char *table,
							int64_t chain, int64_t lane, int64_t position);

/* timeorder.c: time along a lane, and before a digest */
typedef struct LaneTime
{
	bool		has;
	int64_t		latest;			/* latest time of the lane's rows so far */
	int64_t		latest_seq;		/* that row's position */
} LaneTime;

extern int64_t time_tolerance_usec;
extern bool parse_digest_time(const char *s, size_t len, int64_t *out);
extern bool time_check_row(const char *table, int64_t chain, int64_t lane, int64_t seq,
						   const char *row_id, const char *tenant, size_t tenant_len,
						   LaneTime *lt, int64_t at,
						   const Digest *digest, int64_t head_position);

/* database.c: walking the audit tables */
typedef struct TableStats
{
	const char *table;
	uint64_t	rows;
	uint64_t	chains;
} TableStats;

/* security_state.c */
struct JsonValue;
struct pg_conn;
extern void security_state_load(const struct JsonValue *root, Digest *d);
extern void security_state_free(Digest *d);
extern bool security_state_check(struct pg_conn *conn, const Digest *d);
extern void security_state_put_column(Buf *row, const char *value, size_t len);
extern void security_state_component_hash(const char *name, Buf *rows, size_t n,
										  unsigned char out[HASH_LEN]);
extern void security_state_overall_hash(const char *const *names,
										const unsigned char (*hashes)[HASH_LEN],
										size_t n, unsigned char out[HASH_LEN]);

extern bool verify_database(const char *conninfo, Digest *digest,
							TableStats *stats, int nstats);

/* tool_audit_verify.c: reporting problems */
#define POS_NONE INT64_MIN		/* print "-" */

extern bool report_problem(const char *table, int64_t chain, int64_t lane,
						   int64_t position, const char *row_id,
						   const char *problem);
extern bool report_digest_problem(const char *problem);
extern void report_purged(const char *table, int64_t chain, int64_t lane,
						  int64_t position, const char *what);
extern bool problems_found;

/* erasure.c: rows changed by tool_audit.erase_subject() (1.4) */
typedef struct pg_conn PGconn;
extern bool erasures_load(PGconn *conn);
extern const unsigned char *erasure_hash_after(const char *table, int64_t row_id);
extern void erasures_free(void);
extern bool erasure_marker_text(const void *v, size_t len);
extern bool erasure_marker_json(const void *canonical, size_t len);
struct JsonValue;
extern void erasure_preimage_begin(Buf *pre);
extern void erasure_preimage_add(Buf *pre, const char *table, int64_t row_id,
								 const struct JsonValue *columns,
								 const unsigned char after[HASH_LEN]);

/* constraints.c: the fork constraint (unique chain position index) */
extern bool check_fork_constraint(PGconn *conn, const char *table);

#endif							/* TOOL_AUDIT_VERIFY_H */
