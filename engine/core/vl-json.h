/* vl-json.h: the engine's one set of json-glib helpers: typed getters that look at a member's
 * type first (checkpoint configs in vl-families.c, run.json, run folders, COCO), and the writers
 * run.json, metrics.jsonl and the exported config.json are built with. Engine-internal. */
#pragma once

#include <json-glib/json-glib.h>
#include <stdint.h>

#include "vl-error.h"

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

/* The parsed document when it is an object; NULL for anything else, and for a document of
 * nothing (json_parser_load_from_data accepts an empty or comment-only text with no root, and
 * JSON_NODE_HOLDS_OBJECT of that NULL root is a critical). */
static inline JsonObject *
vl_json_root_object (JsonParser *p)
{
  JsonNode *n = json_parser_get_root (p);
  return n != NULL && JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
}

/* Member `key` of o when it is a string; def when o is NULL or the member is absent or null;
 * NULL when it is of another type. (json_object_get_string_member and its _with_default refuse a
 * member that is an object or an array with a critical.) */
static inline const char *
vl_json_string_member (JsonObject *o, const char *key, const char *def)
{
  JsonNode *n = o != NULL ? json_object_get_member (o, key) : NULL;
  if (n == NULL || JSON_NODE_HOLDS_NULL (n))
    return def;
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING)
    return NULL;
  return json_node_get_string (n);
}

/* Member `key` of o when it is a boolean; def for anything else. */
static inline gboolean
vl_json_bool_member (JsonObject *o, const char *key, gboolean def)
{
  JsonNode *n = o != NULL ? json_object_get_member (o, key) : NULL;
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_BOOLEAN)
    return def;
  return json_node_get_boolean (n);
}

/* Element i of a when it is an object; NULL for anything else (json_array_get_object_element
 * refuses a number or a string with a critical). */
static inline JsonObject *
vl_json_array_object (JsonArray *a, guint i)
{
  JsonNode *n = json_array_get_element (a, i);
  return n != NULL && JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
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

/* Parses a JSON file whose top level is an object: the parser (owning *root), or NULL with an
 * error naming the file (VL_ERROR_MISSING when it does not exist, else VL_ERROR_FORMAT). */
static inline JsonParser *
vl_json_load_object_file (const char *path, JsonObject **root, GError **error)
{
  JsonParser *p = json_parser_new ();
  GError *local = NULL;
  if (!json_parser_load_from_file (p, path, &local))
    {
      if (g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s: no such file", path);
      else
        g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: %s", path, local->message);
      g_error_free (local);
      g_object_unref (p);
      return NULL;
    }
  JsonNode *n = json_parser_get_root (p);
  if (n == NULL || !JSON_NODE_HOLDS_OBJECT (n))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: the top level is not a JSON object",
                   path);
      g_object_unref (p);
      return NULL;
    }
  *root = json_node_get_object (n);
  return p;
}

/* ---- writing (vl-json.c): a member `key` with its value; non-finite numbers and NULL strings
 * are written as null */
void   vl_json_add_num    (JsonBuilder *b, const char *key, double v);
void   vl_json_add_int    (JsonBuilder *b, const char *key, int64_t v);
void   vl_json_add_str    (JsonBuilder *b, const char *key, const char *v);
void   vl_json_add_bool   (JsonBuilder *b, const char *key, gboolean v);
void   vl_json_add_strv   (JsonBuilder *b, const char *key, const char *const *v, int n);
void   vl_json_add_floats (JsonBuilder *b, const char *key, const float *v, int n);
/* The builder's document as text (g_free), pretty with a final newline or on one line; doubles
 * in a form every JSON reader takes (json-glib 1.6 writes 1e-08 as 1e-08.0). */
char  *vl_json_to_string  (JsonBuilder *b, gboolean pretty);

/* ---- reading (vl-json.c): FALSE / NULL when o is NULL or the member is absent or of another
 * type */
gboolean    vl_json_get_num    (JsonObject *o, const char *key, double *out);
gboolean    vl_json_get_int    (JsonObject *o, const char *key, int64_t *out);
const char *vl_json_get_str    (JsonObject *o, const char *key);
/* An array of strings (g_strfreev; a non-string element reads ""). */
char      **vl_json_get_strv   (JsonObject *o, const char *key);
/* An array of exactly n finite numbers as floats (g_free). */
float      *vl_json_get_floats (JsonObject *o, const char *key, int n);
