/*-------------------------------------------------------------------------
 *
 * security_state_sql.h
 *		The queries that define the security-state fingerprint
 *		(doc/canonical-encoding.md, section 8).
 *
 * Shared word for word by the extension (src/security_state.c, over SPI)
 * and the external verifier (verifier/security_state.c, over libpq), so
 * both hash the same rows.  Each query returns text columns only, the first
 * one naming the object (unique within the components verify() compares with
 * the install's expectation).  Rows come in no particular order: both sides
 * sort them by their encoding (security_state.c).  They name objects by schema-qualified names, role names
 * and regprocedure text, never by OID, so that the same state restored by
 * pg_dump into new OIDs gives the same rows.  Run them with search_path set
 * to "pg_catalog, pg_temp" (the text of expressions, regprocedure and rule
 * definitions depends on it).
 *
 * Plain C string constants only: the verifier includes this file without
 * any PostgreSQL server header.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TA_SECURITY_STATE_SQL_H
#define TA_SECURITY_STATE_SQL_H

#define TA_SECSTATE_DOMAIN "tool_audit security state 1"

/* the extension's member objects of one catalog */
#define TA_SECSTATE_MEMBERS(catalog) \
	"(SELECT d.objid FROM pg_catalog.pg_depend d" \
	" JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid" \
	" WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass" \
	" AND d.classid = '" catalog "'::pg_catalog.regclass" \
	" AND d.deptype = 'e' AND e.extname = 'tool_audit')"

/* an ACL as a sorted text array of grantee=privilege[*]; NULL means the default */
#define TA_SECSTATE_ACL(acl, kind, owner) \
	"(SELECT pg_catalog.array_agg(x ORDER BY x COLLATE \"C\")::text FROM" \
	" (SELECT CASE WHEN ae.grantee = 0 THEN 'PUBLIC'" \
	" ELSE pg_catalog.pg_get_userbyid(ae.grantee)::text END" \
	" || '=' || ae.privilege_type || CASE WHEN ae.is_grantable THEN '*' ELSE '' END" \
	" FROM pg_catalog.aclexplode(COALESCE(" acl ", pg_catalog.acldefault(" kind ", " owner "))) ae) s(x))"

typedef struct TaSecStateComponent
{
	const char *name;
	/* changed through the extension's functions, which record admin events */
	const char *event_pattern;	/* LIKE pattern of their event types, or NULL */
	const char *sql;
} TaSecStateComponent;

/* in name order ("C" collation): the overall hash lists them in this order */
#define TA_SECSTATE_COMPONENTS { \
	{"alert_rules", "tool_audit.alert.rule", \
	 "SELECT r.rule_name::text, r.kind, r.severity, r.enabled::text, r.matches::text, r.tenant_id," \
	 " r.threshold::text, r.window_seconds::text, r.params::text, r.description, r.changed_by" \
	 " FROM tool_audit.alert_rules r"}, \
	{"event_triggers", NULL, \
	 "SELECT t.evtname::text, t.evtevent::text, t.evtenabled::text, t.evtfoid::pg_catalog.regprocedure::text," \
	 " t.evttags::text FROM pg_catalog.pg_event_trigger t" \
	 " WHERE t.oid IN " TA_SECSTATE_MEMBERS("pg_catalog.pg_event_trigger") \
	 " OR t.evtfoid IN " TA_SECSTATE_MEMBERS("pg_catalog.pg_proc")}, \
	{"functions", NULL, \
	 "SELECT p.oid::pg_catalog.regprocedure::text, l.lanname::text, p.prosrc, p.probin, p.proconfig::text," \
	 " p.prosecdef::text, p.proleakproof::text, p.proisstrict::text, p.provolatile::text, p.proparallel::text," \
	 " p.prokind::text, pg_catalog.pg_get_function_result(p.oid)" \
	 " FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang" \
	 " WHERE p.oid IN " TA_SECSTATE_MEMBERS("pg_catalog.pg_proc")}, \
	{"grants", NULL, \
	 "SELECT o.ident, o.owner, o.acl FROM (" \
	 " SELECT (pg_catalog.pg_identify_object('pg_catalog.pg_class'::pg_catalog.regclass, c.oid, 0)).identity," \
	 " pg_catalog.pg_get_userbyid(c.relowner)::text," \
	 TA_SECSTATE_ACL("c.relacl", "CASE c.relkind WHEN 'S' THEN 's'::\"char\" ELSE 'r'::\"char\" END", "c.relowner") \
	 " FROM pg_catalog.pg_class c WHERE c.oid IN " TA_SECSTATE_MEMBERS("pg_catalog.pg_class") \
	 " UNION ALL" \
	 " SELECT (pg_catalog.pg_identify_object('pg_catalog.pg_class'::pg_catalog.regclass, a.attrelid, a.attnum)).identity," \
	 " NULL, " TA_SECSTATE_ACL("a.attacl", "'c'::\"char\"", "c.relowner") \
	 " FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid" \
	 " WHERE a.attacl IS NOT NULL AND a.attnum > 0 AND c.oid IN " TA_SECSTATE_MEMBERS("pg_catalog.pg_class") \
	 " UNION ALL" \
	 " SELECT 'function ' || p.oid::pg_catalog.regprocedure::text, pg_catalog.pg_get_userbyid(p.proowner)::text," \
	 TA_SECSTATE_ACL("p.proacl", "'f'::\"char\"", "p.proowner") \
	 " FROM pg_catalog.pg_proc p WHERE p.oid IN " TA_SECSTATE_MEMBERS("pg_catalog.pg_proc") \
	 " UNION ALL" \
	 " SELECT 'schema ' || n.nspname::text, pg_catalog.pg_get_userbyid(n.nspowner)::text," \
	 TA_SECSTATE_ACL("n.nspacl", "'n'::\"char\"", "n.nspowner") \
	 " FROM pg_catalog.pg_namespace n WHERE n.nspname = 'tool_audit'" \
	 ") o(ident, owner, acl)"}, \
	{"policies", NULL, \
	 "SELECT c.relname::text || '.' || p.polname::text, p.polcmd::text, p.polpermissive::text," \
	 " (SELECT pg_catalog.array_agg(x ORDER BY x COLLATE \"C\")::text FROM" \
	 " (SELECT CASE WHEN r = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(r)::text END" \
	 " FROM pg_catalog.unnest(p.polroles) u(r)) s(x))," \
	 " pg_catalog.pg_get_expr(p.polqual, p.polrelid), pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid)" \
	 " FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid" \
	 " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'tool_audit'"}, \
	{"pseudonym_keys", "tool_audit.pseudonym\\_key.%", \
	 "SELECT k.key_id::text, k.fingerprint, k.active::text" \
	 " FROM tool_audit.pseudonym_key_fingerprints k" \
	 " WHERE k.active OR NOT EXISTS (SELECT 1 FROM tool_audit.pseudonym_key_fingerprints a" \
	 " WHERE a.active AND a.created_at < k.created_at)"}, \
	{"rls", NULL, \
	 "SELECT c.relname::text, c.relrowsecurity::text, c.relforcerowsecurity::text" \
	 " FROM pg_catalog.pg_class c WHERE c.relkind IN ('r', 'p')" \
	 " AND c.oid IN " TA_SECSTATE_MEMBERS("pg_catalog.pg_class")}, \
	{"rules", NULL, \
	 "SELECT c.relname::text || '.' || r.rulename::text, r.ev_type::text, r.ev_enabled::text," \
	 " pg_catalog.pg_get_ruledef(r.oid)" \
	 " FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid = r.ev_class" \
	 " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'tool_audit'"}, \
	{"sanitize_rules", "tool_audit.sanitize\\_rule.%", \
	 "SELECT r.applies_to, r.match, r.pattern, r.action, r.priority::text, r.enabled::text," \
	 " r.builtin::text, r.note FROM tool_audit.sanitize_rules r"}, \
	{"tenant_bindings", "tool_audit.tenant\\_binding.%", \
	 "SELECT b.role::text, b.tenant_id FROM tool_audit.tenant_bindings b"}, \
	{"triggers", NULL, \
	 "SELECT c.relname::text || '.' || t.tgname::text, t.tgenabled::text," \
	 " t.tgfoid::pg_catalog.regprocedure::text, pg_catalog.pg_get_triggerdef(t.oid)" \
	 " FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid" \
	 " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace" \
	 " WHERE n.nspname = 'tool_audit' AND NOT t.tgisinternal"} \
}
#define TA_SECSTATE_NCOMPONENTS 11

#endif							/* TA_SECURITY_STATE_SQL_H */
