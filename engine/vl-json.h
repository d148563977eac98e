/* vl-json.h: small json-glib helpers the engine's config readers share (checkpoint configs in
 * vl-families.c, run.json in vl-trainer.c). Engine-internal. */
#pragma once

#include <json-glib/json-glib.h>

/* Member `key` of o when it is an object; NULL when o is NULL, or the member is absent or of
 * another type. */
static inline JsonObject *
vl_json_object_member (JsonObject *o, const char *key)
{
  if (o == NULL || !json_object_has_member (o, key))
    return NULL;
  JsonNode *n = json_object_get_member (o, key);
  return JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
}

/* A number (or boolean, as 0/1) held by n; FALSE for anything else, null included. */
static inline gboolean
vl_json_number (JsonNode *n, double *out)
{
  if (!JSON_NODE_HOLDS_VALUE (n))
    return FALSE;
  GType t = json_node_get_value_type (n);
  if (t == G_TYPE_INT64)
    *out = (double) json_node_get_int (n);
  else if (t == G_TYPE_DOUBLE)
    *out = json_node_get_double (n);
  else if (t == G_TYPE_BOOLEAN)
    *out = json_node_get_boolean (n);
  else
    return FALSE;
  return TRUE;
}
