/* vl-head-param.c: parameter tensors of the heads outside the model (see vl-head-param.h). */
#include "vl-head-param.h"

#include <json-glib/json-glib.h>

#include <string.h>

#include "vl-kernels.h"
#include "vl-json.h"

void
vl_head_param_init (VlHeadParam *p, const char *name, int ndim, const int64_t *shape)
{
  memset (p, 0, sizeof *p);
  p->name = name;
  p->ndim = ndim;
  p->numel = 1;
  for (int d = 0; d < ndim; d++)
    {
      p->shape[d] = shape[d];
      p->numel *= shape[d];
    }
  p->data = g_new0 (float, p->numel);
}

void
vl_head_param_clear (VlHeadParam *p)
{
  g_clear_pointer (&p->data, g_free);
  g_clear_pointer (&p->grad, g_free);
  g_clear_pointer (&p->m, g_free);
  g_clear_pointer (&p->v, g_free);
}

float *
vl_head_param_zero_grad (VlHeadParam *p)
{
  if (p->grad == NULL)
    p->grad = g_new0 (float, p->numel);
  else
    memset (p->grad, 0, sizeof (float) * p->numel);
  return p->grad;
}

void
vl_head_param_adamw (VlHeadParam *p, const VlAdamW *opt, float lr_scale)
{
  if (p->grad == NULL)
    return;
  if (p->m == NULL)
    {
      p->m = g_new0 (float, p->numel);
      p->v = g_new0 (float, p->numel);
    }
  p->step++;
  vl_adamw_update (p->data, p->grad, p->m, p->v, p->numel, opt->lr * lr_scale, opt->beta1,
                   opt->beta2, opt->eps, p->ndim >= 2 ? opt->weight_decay : 0.0f, p->step);
}

void
vl_head_param_set_optim_state (VlHeadParam *p, const float *exp_avg, const float *exp_avg_sq,
                               int step)
{
  if (p->m == NULL)
    {
      p->m = g_new0 (float, p->numel);
      p->v = g_new0 (float, p->numel);
    }
  if (exp_avg)
    memcpy (p->m, exp_avg, sizeof (float) * p->numel);
  else
    memset (p->m, 0, sizeof (float) * p->numel);
  if (exp_avg_sq)
    memcpy (p->v, exp_avg_sq, sizeof (float) * p->numel);
  else
    memset (p->v, 0, sizeof (float) * p->numel);
  p->step = step;
}

gboolean
vl_head_param_read (VlHeadParam *p, VlSafetensors *st, const char *what, GError **error)
{
  const char *path = vl_safetensors_path (st);
  const VlTensorInfo *t = vl_safetensors_lookup (st, p->name);
  if (t == NULL)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s: no tensor %s (the %s needs it)", path,
                   p->name, what);
      return FALSE;
    }
  gboolean same = t->ndim == p->ndim;
  for (int d = 0; same && d < p->ndim; d++)
    same = t->shape[d] == p->shape[d];
  if (!same)
    {
      g_autofree char *found = vl_shape_to_string (t->ndim, t->shape);
      g_autofree char *want = vl_shape_to_string (p->ndim, p->shape);
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH, "%s: %s has shape %s, expected %s", path,
                   p->name, found, want);
      return FALSE;
    }
  g_autofree float *data = vl_safetensors_read_f32 (st, p->name, NULL, error);
  if (data == NULL)
    return FALSE;
  memcpy (p->data, data, sizeof (float) * p->numel);
  return TRUE;
}

VlSafetensors *
vl_head_source_open (const char *source, const char *head_file, const char *tensor)
{
  gboolean dir = g_file_test (source, G_FILE_TEST_IS_DIR);
  g_autofree char *c1 = dir ? g_build_filename (source, "model.safetensors", NULL)
                            : g_strdup (source);
  g_autofree char *c2 = dir ? g_build_filename (source, head_file, NULL) : NULL;
  const char *cands[] = { c1, c2 };
  for (guint i = 0; i < G_N_ELEMENTS (cands); i++)
    {
      if (cands[i] == NULL || !g_file_test (cands[i], G_FILE_TEST_IS_REGULAR))
        continue;
      VlSafetensors *st = vl_safetensors_open (cands[i], NULL);
      if (st != NULL && vl_safetensors_lookup (st, tensor) != NULL)
        return st;
      g_clear_pointer (&st, vl_safetensors_free);
    }
  return NULL;
}

void
vl_head_params_adamw (VlHeadParam *p, int n, const VlAdamW *opt, float lr_scale)
{
  for (int i = 0; i < n; i++)
    vl_head_param_adamw (&p[i], opt, lr_scale);
}

void
vl_head_params_add (VlHeadParam *p, int n, VlSafetensorsWriter *w)
{
  for (int i = 0; i < n; i++)
    vl_safetensors_writer_add_f32 (w, p[i].name, p[i].ndim, p[i].shape, p[i].data);
}

VlSafetensorsWriter *
vl_head_params_writer (VlHeadParam *p, int n, const char *format, const char *kind_key,
                       const char *kind)
{
  VlSafetensorsWriter *w = vl_safetensors_writer_new ();
  g_autoptr(JsonBuilder) steps = json_builder_new ();
  json_builder_begin_object (steps);
  vl_head_params_add (p, n, w);
  for (int i = 0; i < n; i++)
    {
      json_builder_set_member_name (steps, p[i].name);
      json_builder_add_int_value (steps, p[i].step);
      if (p[i].m == NULL)
        continue;
      g_autofree char *n1 = g_strconcat ("exp_avg.", p[i].name, NULL);
      g_autofree char *n2 = g_strconcat ("exp_avg_sq.", p[i].name, NULL);
      vl_safetensors_writer_add_f32 (w, n1, p[i].ndim, p[i].shape, p[i].m);
      vl_safetensors_writer_add_f32 (w, n2, p[i].ndim, p[i].shape, p[i].v);
    }
  json_builder_end_object (steps);
  g_autoptr(JsonGenerator) gen = json_generator_new ();
  g_autoptr(JsonNode) root = json_builder_get_root (steps);
  json_generator_set_root (gen, root);
  g_autofree char *text = json_generator_to_data (gen, NULL);
  vl_safetensors_writer_add_metadata (w, "format", format);
  vl_safetensors_writer_add_metadata (w, kind_key, kind);
  vl_safetensors_writer_add_metadata (w, "steps", text);
  return w;
}

gboolean
vl_head_params_restore (VlHeadParam *p, int n, VlSafetensors *st, const char *what,
                        GError **error)
{
  const char *path = vl_safetensors_path (st);
  const char *steps_json = g_hash_table_lookup (vl_safetensors_metadata (st), "steps");
  g_autoptr(JsonParser) parser = json_parser_new ();
  JsonObject *steps = NULL;
  if (steps_json && json_parser_load_from_data (parser, steps_json, -1, NULL))
    steps = vl_json_root_object (parser);
  for (int i = 0; i < n; i++)
    {
      if (!vl_head_param_read (&p[i], st, what, error))
        return FALSE;
      JsonNode *sn = steps ? json_object_get_member (steps, p[i].name) : NULL;
      const int step = sn && JSON_NODE_HOLDS_VALUE (sn) ? (int) json_node_get_int (sn) : 0;
      g_autofree char *n1 = g_strconcat ("exp_avg.", p[i].name, NULL);
      g_autofree char *n2 = g_strconcat ("exp_avg_sq.", p[i].name, NULL);
      if (vl_safetensors_lookup (st, n1) == NULL)
        continue;   /* never stepped */
      const VlTensorInfo *t1 = NULL, *t2 = NULL;
      g_autofree float *ea = vl_safetensors_read_f32 (st, n1, &t1, error);
      g_autofree float *eas = ea ? vl_safetensors_read_f32 (st, n2, &t2, error) : NULL;
      if (eas == NULL)
        return FALSE;
      if (t1->numel != p[i].numel || t2->numel != p[i].numel)
        {
          g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH, "%s: the moments of %s do not have "
                       "its %" G_GINT64_FORMAT " elements", path, p[i].name, p[i].numel);
          return FALSE;
        }
      vl_head_param_set_optim_state (&p[i], ea, eas, step);
    }
  return TRUE;
}
