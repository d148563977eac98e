/* vl-det-head.c: torchvision's FCOS head over the patch-token grid (see vl-det-head.h).
 *
 * The three convolutions read the same input with the same 3x3 window, so they run as one
 * convolution W -> K + 5 whose weight is the three weights stacked along Cout (the rows of a
 * [Cout, W, 3, 3] tensor are contiguous): one im2col per image, then the output is split. */
#include "vl-det-head.h"

#include <math.h>
#include <string.h>

#include "vl-conv.h"
#include "vl-head-param.h"
#include "vl-rng.h"

enum { T_CLS_W, T_CLS_B, T_REG_W, T_REG_B, T_CTR_W, T_CTR_B, N_T };

static const char *const tensor_names[N_T] = {
  "head.classification_head.cls_logits.weight", "head.classification_head.cls_logits.bias",
  "head.regression_head.bbox_reg.weight", "head.regression_head.bbox_reg.bias",
  "head.regression_head.bbox_ctrness.weight", "head.regression_head.bbox_ctrness.bias",
};

/* output channels of each convolution's rows in the stacked one */
#define COUT(h, t) ((t) == T_CLS_W ? (h)->K : (t) == T_REG_W ? 4 : 1)

struct _VlDetHead {
  int          W, K;
  VlHeadParam  p[N_T];
  /* the last forward */
  int          B, T, n_prefix, gh, gw, stride;
  float       *g0;            /* (B, gh, gw, W) patch tokens */
  float       *y;             /* (B, A, K + 5) the stacked convolution's output */
  float       *cls, *reg, *ctr, *anchors;
  float       *dcls, *dreg, *dctr;   /* the last loss's gradient */
  float       *wc, *bc;       /* stacked weight and bias */
  int64_t      cap_g0, cap_a, cap_anchor;
};

VlDetHead *
vl_det_head_new (int width, int n_classes, uint64_t seed)
{
  if (width <= 0 || n_classes < 2 || n_classes > 1000)
    return NULL;
  VlDetHead *h = g_new0 (VlDetHead, 1);
  h->W = width;
  h->K = n_classes;
  for (int t = T_CLS_W; t < N_T; t += 2)
    {
      int64_t sw[4] = { COUT (h, t), width, 3, 3 }, sb[1] = { COUT (h, t) };
      vl_head_param_init (&h->p[t], tensor_names[t], 4, sw);
      vl_head_param_init (&h->p[t + 1], tensor_names[t + 1], 1, sb);
    }
  VlRng rng;
  vl_rng_seed (&rng, seed);
  /* FCOSClassificationHead / FCOSRegressionHead: normal_(std=0.01) in this order */
  for (int t = T_CLS_W; t < N_T; t += 2)
    for (int64_t i = 0; i < h->p[t].numel; i++)
      h->p[t].data[i] = (float) (vl_rng_normal (&rng) * 0.01);
  const float prior = (float) -log ((1.0 - 0.01) / 0.01);
  for (int k = 0; k < h->K; k++)
    h->p[T_CLS_B].data[k] = prior;
  h->wc = g_new (float, (int64_t) (h->K + 5) * width * 9);
  h->bc = g_new (float, h->K + 5);
  return h;
}

void
vl_det_head_free (VlDetHead *h)
{
  if (h == NULL)
    return;
  for (int i = 0; i < N_T; i++)
    vl_head_param_clear (&h->p[i]);
  g_free (h->g0);
  g_free (h->y);
  g_free (h->cls);
  g_free (h->reg);
  g_free (h->ctr);
  g_free (h->dcls);
  g_free (h->dreg);
  g_free (h->dctr);
  g_free (h->anchors);
  g_free (h->wc);
  g_free (h->bc);
  g_free (h);
}

int vl_det_head_width (VlDetHead *h) { return h->W; }
int vl_det_head_n_classes (VlDetHead *h) { return h->K; }
int vl_det_head_n_tensors (VlDetHead *h) { return N_T; }
int vl_det_head_n_locations (VlDetHead *h) { return h->gh * h->gw; }
const float *vl_det_head_cls_logits (VlDetHead *h) { return h->cls; }
const float *vl_det_head_bbox_regression (VlDetHead *h) { return h->reg; }
const float *vl_det_head_bbox_ctrness (VlDetHead *h) { return h->ctr; }
const float *vl_det_head_anchors (VlDetHead *h) { return h->anchors; }

int64_t
vl_det_head_n_params (VlDetHead *h)
{
  int64_t n = 0;
  for (int i = 0; i < N_T; i++)
    n += h->p[i].numel;
  return n;
}

const char *
vl_det_head_tensor_name (VlDetHead *h, int i)
{
  g_return_val_if_fail (i >= 0 && i < N_T, NULL);
  return h->p[i].name;
}

float *
vl_det_head_tensor_data (VlDetHead *h, int i, int *ndim, int64_t *shape, int64_t *numel)
{
  g_return_val_if_fail (i >= 0 && i < N_T, NULL);
  VlHeadParam *p = &h->p[i];
  if (ndim)
    *ndim = p->ndim;
  if (shape)
    memcpy (shape, p->shape, sizeof (int64_t) * p->ndim);
  if (numel)
    *numel = p->numel;
  return p->data;
}

float *
vl_det_head_tensor_grad (VlDetHead *h, int i)
{
  g_return_val_if_fail (i >= 0 && i < N_T, NULL);
  return h->p[i].grad;
}

int
vl_det_head_find_tensor (VlDetHead *h, const char *name)
{
  for (int i = 0; i < N_T; i++)
    if (strcmp (h->p[i].name, name) == 0)
      return i;
  return -1;
}

static VlConv2d
det_conv (VlDetHead *h)
{
  return (VlConv2d) { .B = 1, .H = h->gh, .W = h->gw, .Cin = h->W, .Cout = h->K + 5, .kh = 3,
                      .kw = 3, .stride = 1, .pad = 1, .groups = 1 };
}

void
vl_det_head_forward (VlDetHead *h, const float *tokens, int B, int T, int n_prefix, int gh,
                     int gw, int stride)
{
  g_return_if_fail (T == n_prefix + gh * gw && B > 0 && stride > 0);
  const int W = h->W, K = h->K, Kc = K + 5;
  const int64_t A = (int64_t) gh * gw;
  h->B = B;
  h->T = T;
  h->n_prefix = n_prefix;
  h->gh = gh;
  h->gw = gw;
  h->stride = stride;
  if (h->cap_g0 < B * A * W)
    {
      g_free (h->g0);
      h->g0 = g_new (float, B * A * W);
      h->cap_g0 = B * A * W;
    }
  if (h->cap_a < B * A)
    {
      g_free (h->y);
      g_free (h->cls);
      g_free (h->reg);
      g_free (h->ctr);
      g_free (h->dcls);
      g_free (h->dreg);
      g_free (h->dctr);
      h->y = g_new (float, B * A * Kc);
      h->cls = g_new (float, B * A * K);
      h->reg = g_new (float, B * A * 4);
      h->ctr = g_new (float, B * A);
      h->dcls = g_new (float, B * A * K);
      h->dreg = g_new (float, B * A * 4);
      h->dctr = g_new (float, B * A);
      h->cap_a = B * A;
    }
  if (h->cap_anchor < A)
    {
      g_free (h->anchors);
      h->anchors = g_new (float, A * 4);
      h->cap_anchor = A;
    }
  vl_fcos_anchors (h->anchors, gh, gw, stride);
  for (int b = 0; b < B; b++)
    memcpy (h->g0 + b * A * W, tokens + ((int64_t) b * T + n_prefix) * W, sizeof (float) * A * W);

  /* the stacked weight and bias */
  int64_t off = 0;
  for (int t = T_CLS_W, o = 0; t < N_T; t += 2)
    {
      memcpy (h->wc + off, h->p[t].data, sizeof (float) * h->p[t].numel);
      memcpy (h->bc + o, h->p[t + 1].data, sizeof (float) * h->p[t + 1].numel);
      off += h->p[t].numel;
      o += COUT (h, t);
    }
  VlConv2d c = det_conv (h);
  g_autofree float *work = g_new (float, vl_conv2d_work_size (&c));
  for (int b = 0; b < B; b++)
    vl_conv2d_forward (h->y + b * A * Kc, h->g0 + b * A * W, h->wc, h->bc, &c, work);
  for (int64_t r = 0; r < B * A; r++)
    {
      const float *y = h->y + r * Kc;
      memcpy (h->cls + r * K, y, sizeof (float) * K);
      for (int j = 0; j < 4; j++)
        h->reg[r * 4 + j] = y[K + j] > 0.0f ? y[K + j] : 0.0f;
      h->ctr[r] = y[K + 4];
    }
}

double
vl_det_head_loss (VlDetHead *h, const VlFcosTarget *targets, VlFcosLosses *out)
{
  g_return_val_if_fail (h->cls != NULL, NAN);
  const int64_t A = (int64_t) h->gh * h->gw, n = h->B * A;
  memset (h->dcls, 0, sizeof (float) * n * h->K);
  memset (h->dreg, 0, sizeof (float) * n * 4);
  memset (h->dctr, 0, sizeof (float) * n);
  VlFcosLosses l;
  vl_fcos_loss (&l, h->dcls, h->dreg, h->dctr, NULL, h->cls, h->reg, h->ctr, h->anchors, targets,
                h->B, (int) A, h->K);
  if (out)
    *out = l;
  return l.classification + l.bbox_regression + l.bbox_ctrness;
}

void
vl_det_head_backward (VlDetHead *h, float *d_tokens)
{
  g_return_if_fail (h->cls != NULL);
  const int W = h->W, K = h->K, Kc = K + 5, B = h->B;
  const int64_t A = (int64_t) h->gh * h->gw;
  g_autofree float *dy = g_new (float, B * A * Kc);
  for (int64_t r = 0; r < B * A; r++)
    {
      float *d = dy + r * Kc;
      memcpy (d, h->dcls + r * K, sizeof (float) * K);
      for (int j = 0; j < 4; j++)   /* ReLU: through where its output is positive */
        d[K + j] = h->reg[r * 4 + j] > 0.0f ? h->dreg[r * 4 + j] : 0.0f;
      d[K + 4] = h->dctr[r];
    }
  g_autofree float *dwc = g_new0 (float, (int64_t) Kc * W * 9);
  g_autofree float *dbc = g_new0 (float, Kc);
  g_autofree float *dg = d_tokens ? g_new0 (float, A * W) : NULL;
  VlConv2d c = det_conv (h);
  g_autofree float *work = g_new (float, vl_conv2d_work_size (&c));
  for (int b = 0; b < B; b++)
    {
      if (dg)
        memset (dg, 0, sizeof (float) * A * W);
      vl_conv2d_backward (dg, dwc, dbc, dy + b * A * Kc, h->g0 + b * A * W, h->wc, &c, work);
      if (d_tokens)
        {
          float *dt = d_tokens + (int64_t) b * h->T * W;
          memset (dt, 0, sizeof (float) * h->n_prefix * W);
          memcpy (dt + (int64_t) h->n_prefix * W, dg, sizeof (float) * A * W);
        }
    }
  int64_t off = 0;
  for (int t = T_CLS_W, o = 0; t < N_T; t += 2)
    {
      memcpy (vl_head_param_zero_grad (&h->p[t]), dwc + off, sizeof (float) * h->p[t].numel);
      memcpy (vl_head_param_zero_grad (&h->p[t + 1]), dbc + o,
              sizeof (float) * h->p[t + 1].numel);
      off += h->p[t].numel;
      o += COUT (h, t);
    }
}

int
vl_det_head_detect (VlDetHead *h, int b, int img_h, int img_w, const VlFcosPostprocess *p,
                    VlDetection *dets)
{
  g_return_val_if_fail (h->cls != NULL && b >= 0 && b < h->B, 0);
  const int64_t A = (int64_t) h->gh * h->gw;
  return vl_fcos_postprocess (dets, h->cls + b * A * h->K, h->reg + b * A * 4, h->ctr + b * A,
                              h->anchors, (int) A, h->K, img_h, img_w, p);
}

void
vl_det_head_add_to_writer (VlDetHead *h, VlSafetensorsWriter *w)
{
  vl_head_params_add (h->p, N_T, w);
}

gboolean
vl_det_head_in_safetensors (VlSafetensors *st)
{
  return vl_safetensors_lookup (st, tensor_names[T_CLS_W]) != NULL;
}

VlDetHead *
vl_det_head_from_safetensors (VlSafetensors *st, int width, GError **error)
{
  const char *path = vl_safetensors_path (st);
  const VlTensorInfo *ws = vl_safetensors_lookup (st, tensor_names[T_CLS_W]);
  if (ws == NULL)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s: no tensor %s (not a detection "
                   "checkpoint)", path, tensor_names[T_CLS_W]);
      return NULL;
    }
  int64_t K = ws->ndim == 4 ? ws->shape[0] : 0;
  g_autoptr(VlDetHead) h = K >= 2 && K <= 1000 ? vl_det_head_new (width, (int) K, 0) : NULL;
  if (h == NULL)
    {
      g_autofree char *s = vl_shape_to_string (ws->ndim, ws->shape);
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH, "%s: %s has shape %s, which is no FCOS "
                   "head of 2 to 1000 classes over tokens of width %d", path,
                   tensor_names[T_CLS_W], s, width);
      return NULL;
    }
  for (int i = 0; i < N_T; i++)
    if (!vl_head_param_read (&h->p[i], st, "FCOS head", error))
      return NULL;
  return g_steal_pointer (&h);
}

VlDetHead *
vl_det_head_load (const char *path, int width, GError **error)
{
  g_autoptr(VlSafetensors) st = vl_safetensors_open (path, error);
  return st ? vl_det_head_from_safetensors (st, width, error) : NULL;
}

gboolean
vl_det_head_find (const char *source, int width, VlDetHead **out, GError **error)
{
  g_autoptr(VlSafetensors) st = vl_head_source_open (source, "det_head.safetensors", tensor_names[T_CLS_W]);
  *out = st ? vl_det_head_from_safetensors (st, width, error) : NULL;
  return st == NULL || *out != NULL;
}

VlHeadParam *
vl_det_head_params (VlDetHead *h, int *n)
{
  *n = N_T;
  return h->p;
}
