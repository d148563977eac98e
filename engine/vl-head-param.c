/* vl-head-param.c: parameter tensors of the heads outside the model (see vl-head-param.h). */
#include "vl-head-param.h"

#include <string.h>

#include "vl-kernels.h"

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
