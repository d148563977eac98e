/* vl-json.c: see vl-json.h (the builder and getter helpers). */
#include "vl-json.h"

#include <math.h>

void
vl_json_add_num (JsonBuilder *b, const char *key, double v)
{
  json_builder_set_member_name (b, key);
  if (isfinite (v))
    json_builder_add_double_value (b, v);
  else
    json_builder_add_null_value (b);
}

void
vl_json_add_int (JsonBuilder *b, const char *key, int64_t v)
{
  json_builder_set_member_name (b, key);
  json_builder_add_int_value (b, v);
}

void
vl_json_add_str (JsonBuilder *b, const char *key, const char *v)
{
  json_builder_set_member_name (b, key);
  if (v)
    json_builder_add_string_value (b, v);
  else
    json_builder_add_null_value (b);
}

void
vl_json_add_bool (JsonBuilder *b, const char *key, gboolean v)
{
  json_builder_set_member_name (b, key);
  json_builder_add_boolean_value (b, v);
}

/* json-glib 1.6 writes a double without a '.' in its shortest form with ".0" appended, which
 * turns 1e-08 into the invalid 1e-08.0: drop that suffix after an exponent (outside strings). */
static void
fix_exponents (char *s)
{
  gboolean in_string = FALSE;
  char *w = s;
  for (char *p = s; *p; p++)
    {
      if (in_string)
        {
          if (*p == '\\' && p[1])
            {
              *w++ = *p++;
            }
          else if (*p == '"')
            in_string = FALSE;
        }
      else if (*p == '"')
        in_string = TRUE;
      else if ((*p == 'e' || *p == 'E') && p > s && g_ascii_isdigit (p[-1]))
        {
          char *q = p + 1;
          if (*q == '+' || *q == '-')
            q++;
          while (g_ascii_isdigit (*q))
            q++;
          if (q[0] == '.' && q[1] == '0' && !g_ascii_isdigit (q[2]))
            {
              while (p < q)
                *w++ = *p++;
              p = q + 1;   /* skip ".0"; the loop's p++ moves past the '0' */
              continue;
            }
        }
      *w++ = *p;
    }
  *w = '\0';
}

char *
vl_json_to_string (JsonBuilder *b, gboolean pretty)
{
  g_autoptr(JsonNode) root = json_builder_get_root (b);
  g_autoptr(JsonGenerator) gen = json_generator_new ();
  json_generator_set_pretty (gen, pretty);
  json_generator_set_indent (gen, 2);
  json_generator_set_root (gen, root);
  char *s = json_generator_to_data (gen, NULL);
  fix_exponents (s);
  if (pretty)
    {
      char *t = g_strconcat (s, "\n", NULL);
      g_free (s);
      s = t;
    }
  return s;
}

gboolean
vl_json_get_num (JsonObject *o, const char *key, double *out)
{
  return o != NULL && json_object_has_member (o, key) &&
         vl_json_number (json_object_get_member (o, key), out);
}

gboolean
vl_json_get_int (JsonObject *o, const char *key, int64_t *out)
{
  if (o == NULL || !json_object_has_member (o, key))
    return FALSE;
  JsonNode *n = json_object_get_member (o, key);
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64)
    return FALSE;
  *out = json_node_get_int (n);
  return TRUE;
}

const char *
vl_json_get_str (JsonObject *o, const char *key)
{
  if (o == NULL || !json_object_has_member (o, key))
    return NULL;
  JsonNode *n = json_object_get_member (o, key);
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING)
    return NULL;
  return json_node_get_string (n);
}

char **
vl_json_get_strv (JsonObject *o, const char *key)
{
  if (o == NULL || !json_object_has_member (o, key))
    return NULL;
  JsonNode *n = json_object_get_member (o, key);
  if (!JSON_NODE_HOLDS_ARRAY (n))
    return NULL;
  JsonArray *a = json_node_get_array (n);
  guint len = json_array_get_length (a);
  char **v = g_new0 (char *, len + 1);
  for (guint i = 0; i < len; i++)
    {
      const char *s = json_node_get_string (json_array_get_element (a, i));
      v[i] = g_strdup (s ? s : "");
    }
  return v;
}

void
vl_json_add_strv (JsonBuilder *b, const char *key, const char *const *v, int n)
{
  json_builder_set_member_name (b, key);
  json_builder_begin_array (b);
  for (int i = 0; i < n; i++)
    json_builder_add_string_value (b, v[i]);
  json_builder_end_array (b);
}



/* A JSON array of n numbers into floats (g_free); NULL when it is not one. */
float *
vl_json_get_floats (JsonObject *o, const char *key, int n)
{
  if (o == NULL || !json_object_has_member (o, key) ||
      !JSON_NODE_HOLDS_ARRAY (json_object_get_member (o, key)))
    return NULL;
  JsonArray *a = json_object_get_array_member (o, key);
  if ((int) json_array_get_length (a) != n)
    return NULL;
  float *v = g_new (float, MAX (n, 1));
  for (int i = 0; i < n; i++)
    {
      double x;
      if (!vl_json_number (json_array_get_element (a, i), &x) || !isfinite (x))
        {
          g_free (v);
          return NULL;
        }
      v[i] = (float) x;
    }
  return v;
}

void
vl_json_add_floats (JsonBuilder *b, const char *key, const float *v, int n)
{
  json_builder_set_member_name (b, key);
  json_builder_begin_array (b);
  for (int i = 0; i < n; i++)
    if (isfinite (v[i]))
      json_builder_add_double_value (b, (double) v[i]);
    else
      json_builder_add_null_value (b);
  json_builder_end_array (b);
}
