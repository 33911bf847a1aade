/*-------------------------------------------------------------------------
 *
 * jsonb_util.c
 *		Small jsonb helpers several files share: a value's JSON type name
 *		for error messages, and an object's member by a C string key.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "jsonb_util.h"

/* The JSON type of a jsonb value, as jsonb_typeof() names it. */
const char *
ta_jsonb_type_name(Jsonb *j)
{
	if (JB_ROOT_IS_OBJECT(j))
		return "object";
	if (JB_ROOT_IS_SCALAR(j))
	{
		JsonbValue	v;

		if (JsonbExtractScalar(&j->root, &v))
		{
			switch (v.type)
			{
				case jbvString:
					return "string";
				case jbvNumeric:
					return "number";
				case jbvBool:
					return "boolean";
				default:
					return "null";
			}
		}
	}
	return "array";
}

/* The member of an object under key, or NULL. */
JsonbValue *
ta_jsonb_key(JsonbContainer *obj, const char *key)
{
	return getKeyJsonValueFromContainer(obj, key, strlen(key), NULL);
}

/* A string member of an object, or NULL if absent, null or not a string. */
char *
ta_jsonb_string(JsonbContainer *obj, const char *key)
{
	JsonbValue *v = ta_jsonb_key(obj, key);

	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}
