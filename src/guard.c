/*-------------------------------------------------------------------------
 *
 * guard.c
 *		Append-only enforcement for the audit tables.
 *
 * Three layers, each catching what the one before cannot:
 *
 * 1. refuse_change(): a BEFORE UPDATE OR DELETE OR TRUNCATE statement
 *	  trigger, ENABLE ALWAYS so session_replication_role = replica does not
 *	  skip it.  Statement level, so even an UPDATE that matches no row fails.
 *
 * 2. ddl_guard(): one event trigger function for ddl_command_start,
 *	  sql_drop and table_rewrite (all ENABLE ALWAYS).  It refuses the DDL
 *	  that would switch layer 1 off or lose rows silently: enabling or
 *	  disabling triggers or rules, creating triggers, rules or policies on an
 *	  audit table, dropping or altering columns and constraints, SET
 *	  UNLOGGED, inheritance and partition tricks, renames, replacing or
 *	  dropping the extension's functions, and any table rewrite.  DROP
 *	  EXTENSION, DROP SCHEMA tool_audit and DROP OWNED are allowed only while
 *	  both audit tables are empty.
 *
 * 3. With shared_preload_libraries = 'tool_audit', a ProcessUtility hook
 *	  protects the event triggers themselves (DROP/ALTER EVENT TRIGGER are
 *	  not seen by event triggers), refuses TRUNCATE, and repeats layer 2's
 *	  checks, which then also hold in single-user mode; an
 *	  ExecutorCheckPerms hook refuses UPDATE and DELETE on audit tables to
 *	  every role, superusers included, even with the triggers disabled
 *	  through the catalog.
 *
 * Commands run by tool_audit's own install and upgrade scripts are exempt,
 * and so are the UPDATEs of the 1.0 -> 1.1 upgrade that chain the rows 1.0
 * recorded (upgrade_1_1.c).
 * What none of this stops (a superuser editing files, catalogs or backups,
 * pg_surgery) can only be detected, not prevented: that is the job of the
 * hash chain (chain.c, verify.c) and the signed digests (digest.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/objectaddress.h"
#include "catalog/partition.h"
#include "catalog/pg_depend.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_index.h"
#include "catalog/pg_namespace.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/parsenodes.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "catalog.h"
#include "autonomous_pool.h"
#include "guard.h"
#include "lane_hint.h"
#include "role_events.h"
#include "track.h"
#include "track_write.h"
#include "upgrade_1_1.h"

static const char *const protected_tables[] = {"tool_calls", "admin_events", "data_changes"};

/* set by ddl_command_start for an approved DROP EXTENSION/SCHEMA/OWNED */
static bool drop_approved = false;

static ProcessUtility_hook_type prev_process_utility = NULL;
static ExecutorCheckPerms_hook_type prev_check_perms = NULL;

/*
 * The schema the guards protect: tool_audit's, where the extension exists.
 * A schema of that name in a database without the extension is nobody's:
 * pg_restore creates it, sets its owner and may drop it before (or without)
 * CREATE EXTENSION, since the schema is not a member of the extension.
 */
static Oid	guarded_nsp = InvalidOid;

/*
 * Every utility statement and every UPDATE or DELETE asks this, and
 * get_extension_oid() scans pg_extension (it has no syscache in 15): the
 * schema is looked up first (syscache), and a schema found to belong to the
 * extension is remembered by oid for the life of the backend.  Only that
 * positive answer is kept.  DROP EXTENSION in this backend forgets it; one
 * in another backend leaves this one guarding the schema by name, as 1.2
 * did, until it ends (or the schema is dropped: its oid then changes).
 */
static Oid
guarded_schema(void)
{
	Oid			nsp = ta_schema_oid(true);

	if (!OidIsValid(nsp) || nsp == guarded_nsp)
		return nsp;
	if (!OidIsValid(get_extension_oid("tool_audit", true)))
		return InvalidOid;
	guarded_nsp = nsp;
	return nsp;
}

static bool
is_protected_name(const char *relname)
{
	for (int i = 0; i < (int) lengthof(protected_tables); i++)
		if (strcmp(relname, protected_tables[i]) == 0)
			return true;
	return false;
}

bool
ta_is_protected_relation(Oid relid)
{
	Oid			nsp;
	char	   *name;

	if (!OidIsValid(relid))
		return false;
	nsp = guarded_schema();
	if (!OidIsValid(nsp))
		return false;
	if (get_rel_relispartition(relid))
	{
		List	   *ancestors = get_partition_ancestors(relid);
		ListCell   *lc;

		foreach(lc, ancestors)
			if (ta_is_protected_relation(lfirst_oid(lc)))
				return true;
	}
	if (get_rel_namespace(relid) != nsp)
		return false;
	name = get_rel_name(relid);
	return name != NULL && is_protected_name(name);
}

/* A relation of the extension's schema (audit tables, rules, keys, ...). */
static bool
is_own_relation(Oid relid)
{
	Oid			nsp = guarded_schema();

	return OidIsValid(relid) && OidIsValid(nsp) &&
		(get_rel_namespace(relid) == nsp || ta_is_protected_relation(relid));
}

bool
ta_in_own_script(void)
{
	return creating_extension &&
		CurrentExtensionObject == get_extension_oid("tool_audit", true);
}

static bool
rangevar_is_protected(RangeVar *rv)
{
	return rv != NULL &&
		ta_is_protected_relation(RangeVarGetRelid(rv, NoLock, true));
}

static bool
rangevar_is_own(RangeVar *rv)
{
	return rv != NULL && is_own_relation(RangeVarGetRelid(rv, NoLock, true));
}

static void
refuse(const char *what, const char *relname)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("%s is not allowed on tool_audit table %s", what, relname),
			 errdetail("Audit tables are append-only; this command could disable that or lose rows."),
			 errhint("Rows leave an audit table only through tool_audit's retention purge.")));
}

static void
refuse_object(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("%s is not allowed on objects of extension tool_audit", what),
			 errdetail("The extension's functions, triggers and tables protect the audit trail.")));
}

static bool
audit_tables_empty(void)
{
	bool		isnull;
	bool		any;
	Oid			nsp = ta_schema_oid(false);

	/*
	 * Lock first: a row committed between this check and the drop would
	 * otherwise be dropped with the table.
	 */
	for (int i = 0; i < (int) lengthof(protected_tables); i++)
	{
		Oid			relid = get_relname_relid(protected_tables[i], nsp);

		if (OidIsValid(relid))
			LockRelationOid(relid, AccessExclusiveLock);
	}
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* data_changes (1.5) is not there in a schema of an earlier version */
	if (SPI_execute(OidIsValid(get_relname_relid("data_changes", nsp)) ?
					"SELECT EXISTS (SELECT FROM tool_audit.tool_calls)"
					"    OR EXISTS (SELECT FROM tool_audit.admin_events)"
					"    OR EXISTS (SELECT FROM tool_audit.data_changes)" :
					"SELECT EXISTS (SELECT FROM tool_audit.tool_calls)"
					"    OR EXISTS (SELECT FROM tool_audit.admin_events)",
					true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not count audit rows");
	any = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
									 SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	return !any;
}

static void
require_empty(const char *what)
{
	if (!audit_tables_empty())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("%s would drop tool_audit tables that hold audit rows", what),
				 errdetail("An audit trail that holds rows cannot be dropped."),
				 errhint("Rows leave an audit table only through tool_audit's retention purge.")));
	drop_approved = true;
}

/* ALTER TABLE subcommands that could disable protection or lose rows. */
static const char *
denied_subcommand(AlterTableType t)
{
	switch (t)
	{
		case AT_EnableTrig:
		case AT_EnableAlwaysTrig:
		case AT_EnableReplicaTrig:
		case AT_EnableTrigAll:
		case AT_EnableTrigUser:
			return "ALTER TABLE ... ENABLE TRIGGER";
		case AT_DisableTrig:
		case AT_DisableTrigAll:
		case AT_DisableTrigUser:
			return "ALTER TABLE ... DISABLE TRIGGER";
		case AT_EnableRule:
		case AT_EnableAlwaysRule:
		case AT_EnableReplicaRule:
		case AT_DisableRule:
			return "ALTER TABLE ... ENABLE/DISABLE RULE";
		case AT_DisableRowSecurity:
		case AT_NoForceRowSecurity:
			return "ALTER TABLE ... DISABLE ROW LEVEL SECURITY";
		case AT_SetUnLogged:
			return "ALTER TABLE ... SET UNLOGGED";
		case AT_DropColumn:
			return "ALTER TABLE ... DROP COLUMN";
		case AT_AlterColumnType:
			return "ALTER TABLE ... ALTER COLUMN TYPE";
		case AT_DropConstraint:
			return "ALTER TABLE ... DROP CONSTRAINT";
		case AT_DropNotNull:
			return "ALTER TABLE ... DROP NOT NULL";
		case AT_DropIdentity:
			return "ALTER TABLE ... DROP IDENTITY";
		case AT_DropExpression:
			return "ALTER TABLE ... DROP EXPRESSION";
		case AT_AttachPartition:
			return "ALTER TABLE ... ATTACH PARTITION";
		case AT_DetachPartition:
		case AT_DetachPartitionFinalize:
			return "ALTER TABLE ... DETACH PARTITION";
		case AT_AddInherit:
		case AT_DropInherit:
			return "ALTER TABLE ... INHERIT";
		case AT_AddOf:
		case AT_DropOf:
			return "ALTER TABLE ... OF";
		case AT_SetAccessMethod:
			return "ALTER TABLE ... SET ACCESS METHOD";
		case AT_ChangeOwner:
			return "ALTER TABLE ... OWNER TO";
		case AT_AddConstraint:
		case AT_AddIndexConstraint:
			/* a CHECK or a foreign key can refuse or cascade away rows */
			return "ALTER TABLE ... ADD CONSTRAINT";
		case AT_AddIndex:
			return "ALTER TABLE ... ADD index";
		case AT_AddColumn:
			/* a column can bring a CHECK, a default that fails, a generated expression */
			return "ALTER TABLE ... ADD COLUMN";
		default:
			return NULL;
	}
}

static void
guard_alter_table(AlterTableStmt *stmt)
{
	bool		target_is_own = rangevar_is_own(stmt->relation);
	ListCell   *lc;

	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);
		const char *what = denied_subcommand(cmd->subtype);

		if (target_is_own && what != NULL)
			refuse(what, stmt->relation->relname);
		/* making another table a child of an audit table, or attaching ours */
		if (cmd->subtype == AT_AddInherit &&
			rangevar_is_protected((RangeVar *) cmd->def))
			refuse("ALTER TABLE ... INHERIT", ((RangeVar *) cmd->def)->relname);
		if (cmd->subtype == AT_AttachPartition &&
			rangevar_is_protected(((PartitionCmd *) cmd->def)->name))
			refuse("ALTER TABLE ... ATTACH PARTITION",
				   ((PartitionCmd *) cmd->def)->name->relname);
	}
}

static bool
name_list_in_schema(List *names)
{
	Oid			nsp = guarded_schema();
	char	   *objname;

	if (!OidIsValid(nsp))
		return false;
	return QualifiedNameGetCreationNamespace(names, &objname) == nsp;
}

/*
 * Does a statement's target belong to tool_audit: a relation of its schema
 * (or a trigger, policy, rule, column or constraint on one), the schema or
 * the extension itself, or any object that is a member of the extension or
 * lives in its schema?  The name is resolved the way the command will resolve
 * it (search_path included), not the way a new object would be created.
 */
static bool
object_is_ours(ObjectType type, Node *object, RangeVar *relation)
{
	Relation	rel = NULL;
	ObjectAddress addr;
	Oid			nsp = guarded_schema();
	Oid			ext = get_extension_oid("tool_audit", true);
	bool		ours;

	if (!OidIsValid(nsp))
		return false;
	if (relation != NULL)
		return rangevar_is_own(relation);
	if (object == NULL)
		return false;

	/*
	 * RENAME, SET SCHEMA and OWNER TO name some objects differently from
	 * DROP, whose shapes get_object_address expects: a type or domain comes
	 * as a plain name list, a domain constraint as the domain's name list.
	 * Objects outside any schema and any extension are never ours.
	 */
	switch (type)
	{
		case OBJECT_TYPE:
		case OBJECT_DOMAIN:
			if (IsA(object, List) && list_length((List *) object) > 0 &&
				!IsA(linitial((List *) object), TypeName))
				object = (Node *) makeTypeNameFromNameList((List *) object);
			break;
		case OBJECT_DOMCONSTRAINT:
			if (IsA(object, List) && list_length((List *) object) > 0 &&
				IsA(linitial((List *) object), String))
			{
				type = OBJECT_DOMAIN;
				object = (Node *) makeTypeNameFromNameList((List *) object);
			}
			break;
		case OBJECT_LARGEOBJECT:
		case OBJECT_DATABASE:
		case OBJECT_ROLE:
		case OBJECT_TABLESPACE:
			return false;
		default:
			break;
	}
	addr = get_object_address(type, object, &rel, AccessShareLock, true);
	if (rel != NULL)
	{
		ours = is_own_relation(RelationGetRelid(rel));
		relation_close(rel, AccessShareLock);
		return ours;
	}
	if (!OidIsValid(addr.objectId))
		return false;
	if (type == OBJECT_SCHEMA)
		return addr.objectId == nsp;
	if (type == OBJECT_EXTENSION)
		return addr.objectId == ext;
	if (OidIsValid(ext) && getExtensionOfObject(addr.classId, addr.objectId) == ext)
		return true;
	/* get_object_namespace() raises an error for classes it does not know */
	return is_objectclass_supported(addr.classId) &&
		get_object_namespace(&addr) == nsp;
}

/*
 * A unique index on a relation of the extension's schema: the chain position
 * indexes (a fork is a constraint violation only while they exist) and the
 * other unique indexes of the install script.  Plain indexes a user added
 * for reports may be dropped.
 */
static bool
index_is_guarded(Node *object)
{
	Oid			indexid = RangeVarGetRelid(makeRangeVarFromNameList(castNode(List, object)),
										   NoLock, true);
	HeapTuple	tup;
	bool		unique;

	if (!OidIsValid(indexid) || !is_own_relation(indexid))
		return false;
	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexid));
	if (!HeapTupleIsValid(tup))
		return false;
	unique = ((Form_pg_index) GETSTRUCT(tup))->indisunique;
	ReleaseSysCache(tup);
	return unique;
}

/* Is the object a DROP names one of ours?  Of indexes, only unique ones. */
static bool
drop_target_is_ours(ObjectType type, Node *object)
{
	if (type == OBJECT_INDEX)
		return index_is_guarded(object);
	return object_is_ours(type, object, NULL);
}

static void
guard_grant(GrantStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->objects)
	{
		Node	   *obj = lfirst(lc);
		bool		ours = false;

		if (stmt->targtype == ACL_TARGET_ALL_IN_SCHEMA)
			ours = strcmp(strVal(obj), TA_SCHEMA) == 0;
		else if (stmt->targtype != ACL_TARGET_OBJECT)
			ours = false;
		else if (stmt->objtype == OBJECT_TABLE || stmt->objtype == OBJECT_SEQUENCE)
			ours = rangevar_is_own((RangeVar *) obj);
		else if (stmt->objtype == OBJECT_SCHEMA)
			ours = strcmp(strVal(obj), TA_SCHEMA) == 0;
		else if (stmt->objtype == OBJECT_FUNCTION ||
				 stmt->objtype == OBJECT_PROCEDURE ||
				 stmt->objtype == OBJECT_ROUTINE)
			ours = object_is_ours(stmt->objtype, obj, NULL);
		if (ours)
			refuse_object(stmt->is_grant ? "GRANT" : "REVOKE");
	}
}

/* Only plain column indexes: UNIQUE, expressions or WHERE can refuse rows. */
static void
guard_index(IndexStmt *stmt)
{
	ListCell   *lc;
	bool		plain = !stmt->unique && !stmt->primary && !stmt->isconstraint &&
		stmt->whereClause == NULL;

	if (!rangevar_is_own(stmt->relation))
		return;
	foreach(lc, stmt->indexParams)
		if (lfirst_node(IndexElem, lc)->expr != NULL)
			plain = false;
	if (!plain)
		refuse("CREATE UNIQUE, expression or partial INDEX", stmt->relation->relname);
}

static void
guard_drop_objects(DropStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->objects)
	{
		if (!drop_target_is_ours(stmt->removeType, lfirst(lc)))
			continue;
		if (stmt->removeType == OBJECT_EXTENSION)
			require_empty("DROP EXTENSION tool_audit");
		else if (stmt->removeType == OBJECT_SCHEMA)
			require_empty("DROP SCHEMA tool_audit");
		else
			refuse_object("DROP");
	}
}

static void
guard_drop_owned(DropOwnedStmt *stmt)
{
	Oid			nsp = guarded_schema();
	Oid			relid;
	Oid			owner;
	ListCell   *lc;

	if (!OidIsValid(nsp) ||
		!OidIsValid(relid = get_relname_relid("tool_calls", nsp)))
		return;
	owner = ta_relation_owner(relid);
	foreach(lc, stmt->roles)
		if (get_rolespec_oid(lfirst(lc), true) == owner)
			require_empty("DROP OWNED");
}

/* Refuse a command on a relation of the extension's schema. */
static void
refuse_on_own(RangeVar *rv, const char *what)
{
	if (rangevar_is_own(rv))
		refuse(what, rv->relname);
}

/*
 * DROP of one of our objects (the extension or its schema only while the
 * audit tables are empty), or DROP OWNED by the role that owns them.
 */
static void
guard_drop(Node *stmt)
{
	if (IsA(stmt, DropOwnedStmt))
		guard_drop_owned((DropOwnedStmt *) stmt);
	else
		guard_drop_objects((DropStmt *) stmt);
}

/*
 * Commands refused on every relation of the extension's schema: the node,
 * where its target relation is, and what to call it.
 */
static const struct
{
	NodeTag		tag;
	size_t		target;
	const char *what;
}			relation_commands[] =
{
	{T_CreateTrigStmt, offsetof(CreateTrigStmt, relation), "CREATE TRIGGER"},
	{T_RuleStmt, offsetof(RuleStmt, relation), "CREATE RULE"},
	{T_CreatePolicyStmt, offsetof(CreatePolicyStmt, table), "CREATE POLICY"},
	{T_AlterPolicyStmt, offsetof(AlterPolicyStmt, table), "ALTER POLICY"},
	/* restarting an id sequence would make every later insert fail */
	{T_AlterSeqStmt, offsetof(AlterSeqStmt, sequence), "ALTER SEQUENCE"},
};

/* Refuse a command on an object of the extension. */
static void
refuse_if_ours(ObjectType type, Node *object, RangeVar *relation, const char *what)
{
	if (object_is_ours(type, object, relation))
		refuse_object(what);
}

/* The owner of a catalog object (a schema, the extension), or InvalidOid. */
static Oid
object_owner(Oid classId, Oid objectId)
{
	Relation	catalog = table_open(classId, AccessShareLock);
	HeapTuple	tup = get_catalog_object_by_oid(catalog, get_object_attnum_oid(classId),
												objectId);
	Oid			owner = InvalidOid;
	bool		isnull = true;
	Datum		d = (Datum) 0;

	if (HeapTupleIsValid(tup))
		d = heap_getattr(tup, get_object_attnum_owner(classId),
						 RelationGetDescr(catalog), &isnull);
	if (!isnull)
		owner = DatumGetObjectId(d);
	table_close(catalog, AccessShareLock);
	return owner;
}

/*
 * OWNER TO on our objects is refused, but for the schema set to the role that
 * owns it already or to the extension's owner: what a restore replays (ALTER
 * SCHEMA tool_audit OWNER TO ...), which hands the schema to no one new.
 */
static void
guard_owner(AlterOwnerStmt *stmt)
{
	if (!object_is_ours(stmt->objectType, stmt->object, stmt->relation))
		return;
	if (stmt->objectType == OBJECT_SCHEMA)
	{
		Oid			to = get_rolespec_oid(stmt->newowner, true);

		if (OidIsValid(to) &&
			(to == object_owner(NamespaceRelationId, guarded_schema()) ||
			 to == object_owner(ExtensionRelationId,
								get_extension_oid("tool_audit", true))))
			return;
	}
	refuse_object("OWNER TO");
}

/*
 * The checks shared by the ddl_command_start event trigger and the
 * ProcessUtility hook.
 */
static void
guard_utility(Node *stmt)
{
	drop_approved = false;
	if (stmt == NULL || ta_in_own_script())
		return;
	ta_guard_tracked(stmt);		/* (1.5) the triggers of tracked tables */

	for (int i = 0; i < (int) lengthof(relation_commands); i++)
		if (nodeTag(stmt) == relation_commands[i].tag)
			refuse_on_own(*(RangeVar **) ((char *) stmt + relation_commands[i].target),
						  relation_commands[i].what);

	switch (nodeTag(stmt))
	{
		case T_AlterTableStmt:
			guard_alter_table((AlterTableStmt *) stmt);
			break;
		case T_RenameStmt:
			{
				RenameStmt *rs = (RenameStmt *) stmt;

				if (rs->renameType == OBJECT_SCHEMA)
				{
					if (strcmp(rs->subname, TA_SCHEMA) == 0)
						refuse_object("ALTER SCHEMA ... RENAME");
				}
				else
					refuse_if_ours(rs->renameType, rs->object, rs->relation, "RENAME");
				break;
			}
		case T_AlterObjectSchemaStmt:
			refuse_if_ours(((AlterObjectSchemaStmt *) stmt)->objectType,
						   ((AlterObjectSchemaStmt *) stmt)->object,
						   ((AlterObjectSchemaStmt *) stmt)->relation, "SET SCHEMA");
			break;
		case T_AlterOwnerStmt:
			guard_owner((AlterOwnerStmt *) stmt);
			break;
		case T_AlterEnumStmt:
			refuse_if_ours(OBJECT_TYPE,
						   (Node *) makeTypeNameFromNameList(((AlterEnumStmt *) stmt)->typeName),
						   NULL, "ALTER TYPE");
			break;
		case T_GrantStmt:
			guard_grant((GrantStmt *) stmt);
			break;
		case T_IndexStmt:
			guard_index((IndexStmt *) stmt);
			break;
		case T_CreateForeignTableStmt:
		case T_CreateStmt:
			{
				ListCell   *lc;

				foreach(lc, ((CreateStmt *) stmt)->inhRelations)
					refuse_on_own(lfirst(lc), "CREATE TABLE ... INHERITS/PARTITION OF");
				break;
			}
		case T_CreateFunctionStmt:
			if (name_list_in_schema(((CreateFunctionStmt *) stmt)->funcname))
				refuse_object("CREATE FUNCTION");
			break;
		case T_AlterFunctionStmt:
			{
				AlterFunctionStmt *af = (AlterFunctionStmt *) stmt;

				if (object_is_ours(af->objtype, (Node *) af->func, NULL))
					refuse_object("ALTER FUNCTION");
				break;
			}
		case T_AlterExtensionContentsStmt:
			if (strcmp(((AlterExtensionContentsStmt *) stmt)->extname, "tool_audit") == 0)
				refuse_object("ALTER EXTENSION ... ADD/DROP");
			break;
		case T_DropStmt:
		case T_DropOwnedStmt:
			guard_drop(stmt);
			break;
		default:
			break;
	}
}

/* sql_drop: catch what reached our objects some other way (CASCADE, ...). */
static void
guard_sql_drop(void)
{
	if (ta_in_own_script() || drop_approved)
		return;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SELECT object_identity"
					"  FROM pg_catalog.pg_event_trigger_dropped_objects()"
					" WHERE object_type OPERATOR(pg_catalog.<>) 'index'"
					"   AND (schema_name OPERATOR(pg_catalog.=) 'tool_audit'"
					"        OR address_names[1] OPERATOR(pg_catalog.=) 'tool_audit')",
					true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read dropped objects");
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("dropping %s is not allowed",
						SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1)),
				 errdetail("The extension's functions, triggers and tables protect the audit trail.")));
	SPI_finish();
}

static void
guard_table_rewrite(void)
{
	Oid			relid = DatumGetObjectId(DirectFunctionCall1(pg_event_trigger_table_rewrite_oid,
															 (Datum) 0));

	if (!ta_in_own_script() && ta_is_protected_relation(relid))
		refuse("a table rewrite", get_rel_name(relid));
}

/* tool_audit.ddl_guard() RETURNS event_trigger */
PG_FUNCTION_INFO_V1(ddl_guard);
Datum
ddl_guard(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ddl_guard: not fired by event trigger manager")));
	trigdata = (EventTriggerData *) fcinfo->context;

	if (strcmp(trigdata->event, "ddl_command_start") == 0)
	{
		ta_track_write_release();	/* DDL refuses a table held open */
		guard_utility(trigdata->parsetree);
	}
	else if (strcmp(trigdata->event, "sql_drop") == 0)
		guard_sql_drop();
	else if (strcmp(trigdata->event, "table_rewrite") == 0)
		guard_table_rewrite();
	PG_RETURN_VOID();
}

/*
 * The one sanctioned change of stored rows (1.4): purge_expired() deletes
 * expired rows and erase_subject() replaces personal fields, each from C
 * between ta_sanctioned_change_begin() and _end() (the end in PG_FINALLY).
 * Nothing reachable from SQL sets it; refuse_change() and the
 * ExecutorCheckPerms hook let the change through only while it is set, and
 * the retention code that sets it runs its own statements only.
 */
static bool sanctioned_change = false;
static LocalTransactionId sanctioned_lxid = InvalidLocalTransactionId;

void
ta_sanctioned_change_begin(void)
{
	Assert(!sanctioned_change);
	sanctioned_change = true;
	ta_lane_hint_invalidate();	/* stored rows change: lane_hint.c */
	sanctioned_lxid = MyProc->lxid;
}

/*
 * Whether this transaction changed stored rows through the sanctioned path:
 * a restore must not be mixed with it (its commit-time check takes the rows
 * this transaction wrote for restored ones).
 */
bool
ta_sanctioned_change_in_xact(void)
{
	return sanctioned_lxid != InvalidLocalTransactionId && sanctioned_lxid == MyProc->lxid;
}

void
ta_sanctioned_change_end(void)
{
	sanctioned_change = false;
}

bool
ta_sanctioned_change(void)
{
	return sanctioned_change;
}

/*
 * tool_audit.in_sanctioned_change() RETURNS boolean (1.5): whether the
 * running statement is purge_expired()'s or erase_subject()'s own, for the
 * guards written in PL/pgSQL (alerts_guard).  It only reads the flag.
 */
PG_FUNCTION_INFO_V1(in_sanctioned_change);
Datum
in_sanctioned_change(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(sanctioned_change);
}

/* tool_audit.refuse_change() RETURNS trigger */
PG_FUNCTION_INFO_V1(refuse_change);
Datum
refuse_change(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	const char *what;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("refuse_change: not called by trigger manager")));

	if (sanctioned_change && !TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
	{
		if (!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
			return PointerGetDatum(NULL);
		return TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
			PointerGetDatum(trigdata->tg_newtuple) : PointerGetDatum(trigdata->tg_trigtuple);
	}
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		if (ta_chaining_existing_rows() && ta_in_own_script())
			return TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ?
				PointerGetDatum(trigdata->tg_newtuple) : PointerGetDatum(NULL);
		what = "UPDATE";
	}
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		what = "DELETE";
	else if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		what = "TRUNCATE";
	else
		what = "this operation";
	refuse(what, RelationGetRelationName(trigdata->tg_relation));
	return PointerGetDatum(NULL);	/* not reached */
}

/* ---- preload hooks ---- */

static bool
is_own_event_trigger(const char *name)
{
	return strncmp(name, "tool_audit_", strlen("tool_audit_")) == 0;
}

static void
guard_event_triggers(Node *stmt)
{
	if (ta_in_own_script())
		return;
	if (IsA(stmt, AlterEventTrigStmt) &&
		is_own_event_trigger(((AlterEventTrigStmt *) stmt)->trigname))
		refuse_object("ALTER EVENT TRIGGER");
	if (IsA(stmt, DropStmt) &&
		((DropStmt *) stmt)->removeType == OBJECT_EVENT_TRIGGER)
	{
		ListCell   *lc;

		foreach(lc, ((DropStmt *) stmt)->objects)
			if (is_own_event_trigger(strVal(lfirst(lc))))
				refuse_object("DROP EVENT TRIGGER");
	}
	if (IsA(stmt, RenameStmt) &&
		((RenameStmt *) stmt)->renameType == OBJECT_EVENT_TRIGGER &&
		is_own_event_trigger(strVal(((RenameStmt *) stmt)->object)))
		refuse_object("ALTER EVENT TRIGGER ... RENAME");
	if (IsA(stmt, TruncateStmt))
	{
		ListCell   *lc;

		foreach(lc, ((TruncateStmt *) stmt)->relations)
			if (rangevar_is_protected(lfirst(lc)))
				refuse("TRUNCATE", ((RangeVar *) lfirst(lc))->relname);
	}
}

static void
ta_process_utility(PlannedStmt *pstmt, const char *queryString,
				   bool readOnlyTree, ProcessUtilityContext context,
				   ParamListInfo params, QueryEnvironment *queryEnv,
				   DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	List	   *dropped_memberships;

	if (IsA(stmt, DropStmt) && ((DropStmt *) stmt)->removeType == OBJECT_EXTENSION)
		guarded_nsp = InvalidOid;
	/* audit tables made, dropped or rewritten: no lane head hint holds */
	if (IsA(stmt, CreateExtensionStmt) || IsA(stmt, AlterExtensionStmt) ||
		(IsA(stmt, DropStmt) && ((DropStmt *) stmt)->removeType == OBJECT_EXTENSION) ||
		IsA(stmt, DropdbStmt))
		ta_lane_hint_invalidate();
	if (IsTransactionState() && OidIsValid(guarded_schema()))
	{
		guard_event_triggers(stmt);
		guard_utility(stmt);
	}
	/* DDL refuses a table held open; not for what cannot touch it */
	if (IsTransactionState() && !IsA(stmt, TransactionStmt) &&
		!IsA(stmt, VariableSetStmt) && !IsA(stmt, VariableShowStmt))
		ta_track_write_release();
	dropped_memberships = ta_role_drop_memberships(stmt);
	ta_pool_before_utility(stmt);
	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context,
							 params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
	/* after it succeeded: role_events.c */
	ta_record_role_change(stmt);
	ta_record_role_drops(dropped_memberships);
}

/*
 * An UPDATE or DELETE of an audit table, refused for every role (the 1.0 ->
 * 1.1 upgrade's own UPDATEs excepted).
 */
static void
refuse_write(Oid relid, AclMode required, Bitmapset *updated_cols)
{
	if (sanctioned_change)
		return;
	if (((required & ACL_DELETE) ||
		 (!bms_is_empty(updated_cols) && !ta_chaining_existing_rows())) &&
		ta_is_protected_relation(relid))
		refuse((required & ACL_DELETE) ? "DELETE" : "UPDATE", get_rel_name(relid));
}

#if PG_VERSION_NUM >= 160000
static bool
ta_check_perms(List *rangeTable, List *rtePermInfos, bool ereport_on_violation)
{
	ListCell   *lc;

	foreach(lc, rtePermInfos)
	{
		RTEPermissionInfo *perm = lfirst_node(RTEPermissionInfo, lc);

		refuse_write(perm->relid, perm->requiredPerms, perm->updatedCols);
	}
	if (prev_check_perms)
		return prev_check_perms(rangeTable, rtePermInfos, ereport_on_violation);
	return true;
}
#else
static bool
ta_check_perms(List *rangeTable, bool ereport_on_violation)
{
	ListCell   *lc;

	foreach(lc, rangeTable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

		if (rte->rtekind == RTE_RELATION)
			refuse_write(rte->relid, rte->requiredPerms, rte->updatedCols);
	}
	if (prev_check_perms)
		return prev_check_perms(rangeTable, ereport_on_violation);
	return true;
}
#endif

void
ta_guard_install_hooks(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = ta_process_utility;
	prev_check_perms = ExecutorCheckPerms_hook;
	ExecutorCheckPerms_hook = ta_check_perms;
}
