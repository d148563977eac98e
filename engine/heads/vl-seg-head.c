/* vl-seg-head.c: the linear and upconv segmentation heads (see vl-seg-head.h). */
#include "vl-seg-head.h"
#include "vl-head-param.h"

#include <math.h>
#include <string.h>

#include "vl-conv.h"
#include "vl-head-param.h"
#include "vl-kernels.h"
#include "vl-pool.h"
#include "vl-rng.h"

#define SEG_LN_EPS 1e-6f

enum { T_SEG_W, T_SEG_B, T_UP0_W, T_UP0_B, T_UP1_W, T_UP1_B, T_UP3_W, T_UP3_B, N_T };

static const char *const tensor_names[N_T] = {
  "decode_head.conv_seg.weight", "decode_head.conv_seg.bias",
  "decode_head.up.0.weight", "decode_head.up.0.bias",
  "decode_head.up.1.weight", "decode_head.up.1.bias",
  "decode_head.up.3.weight", "decode_head.up.3.bias",
};

struct _VlSegHead {
  VlSegHeadKind kind;
  int           W, K, C;        /* token width, classes, conv_seg's input channels */
  int           n;              /* tensors in use: 2 (linear) or 8 (upconv) */
  VlHeadParam      p[N_T];
  /* the last forward */
  int           B, T, n_prefix, gh, gw, Ho, Wo;
  float        *g0;             /* (B, gh, gw, W) patch tokens */
  float        *u0;             /* (B, 2gh, 2gw, W/2) up.0 out */
  float        *u1;             /* (B, 2gh, 2gw, W/2) LayerNorm out */
  float        *ln_mean, *ln_rstd;   /* (B, 2gh, 2gw) */
  float        *u2;             /* (B, 2gh, 2gw, W/2) GELU out */
  float        *u3;             /* (B, 4gh, 4gw, W/4) up.3 out */
  float        *s;              /* (B, sh, sw, K) conv_seg out */
  float        *out;            /* (B, Ho, Wo, K) */
  int64_t       cap_g0, cap_u, cap_u3, cap_s, cap_out;
};

const char *
vl_seg_head_kind_name (VlSegHeadKind kind)
{
  return kind == VL_SEG_HEAD_UPCONV ? "upconv" : "linear";
}

gboolean
vl_seg_head_kind_from_string (const char *s, VlSegHeadKind *out)
{
  if (s == NULL)
    return FALSE;
  if (strcmp (s, "linear") == 0)
    *out = VL_SEG_HEAD_LINEAR;
  else if (strcmp (s, "upconv") == 0)
    *out = VL_SEG_HEAD_UPCONV;
  else
    return FALSE;
  return TRUE;
}

VlSegHead *
vl_seg_head_new (VlSegHeadKind kind, int width, int n_classes, uint64_t seed)
{
  if (width <= 0 || n_classes <= 0 || n_classes > 255 ||
      (kind == VL_SEG_HEAD_UPCONV && width % 4 != 0))
    return NULL;
  VlSegHead *h = g_new0 (VlSegHead, 1);
  h->kind = kind;
  h->W = width;
  h->K = n_classes;
  h->C = kind == VL_SEG_HEAD_UPCONV ? width / 4 : width;
  h->n = kind == VL_SEG_HEAD_UPCONV ? N_T : 2;
  VlRng rng;
  vl_rng_seed (&rng, seed);

  int64_t sw[4] = { n_classes, h->C, 1, 1 }, sb[1] = { n_classes };
  vl_head_param_init (&h->p[T_SEG_W], tensor_names[T_SEG_W], 4, sw);
  vl_head_param_init (&h->p[T_SEG_B], tensor_names[T_SEG_B], 1, sb);
  if (kind == VL_SEG_HEAD_UPCONV)
    {
      int W2 = width / 2, W4 = width / 4;
      int64_t s0[4] = { width, W2, 2, 2 }, s0b[1] = { W2 }, s3[4] = { W2, W4, 2, 2 },
              s3b[1] = { W4 };
      vl_head_param_init (&h->p[T_UP0_W], tensor_names[T_UP0_W], 4, s0);
      vl_head_param_init (&h->p[T_UP0_B], tensor_names[T_UP0_B], 1, s0b);
      vl_head_param_init (&h->p[T_UP1_W], tensor_names[T_UP1_W], 1, s0b);
      vl_head_param_init (&h->p[T_UP1_B], tensor_names[T_UP1_B], 1, s0b);
      vl_head_param_init (&h->p[T_UP3_W], tensor_names[T_UP3_W], 4, s3);
      vl_head_param_init (&h->p[T_UP3_B], tensor_names[T_UP3_B], 1, s3b);
      /* PyTorch's ConvTranspose2d default: fan_in = weight.size (1) * kh * kw = Cout * 4 */
      double b0 = 1.0 / sqrt (W2 * 4.0), b3 = 1.0 / sqrt (W4 * 4.0);
      for (int64_t i = 0; i < h->p[T_UP0_W].numel; i++)
        h->p[T_UP0_W].data[i] = (float) ((2 * vl_rng_uniform (&rng) - 1) * b0);
      for (int64_t i = 0; i < W2; i++)
        h->p[T_UP0_B].data[i] = (float) ((2 * vl_rng_uniform (&rng) - 1) * b0);
      for (int64_t i = 0; i < W2; i++)
        h->p[T_UP1_W].data[i] = 1.0f;
      for (int64_t i = 0; i < h->p[T_UP3_W].numel; i++)
        h->p[T_UP3_W].data[i] = (float) ((2 * vl_rng_uniform (&rng) - 1) * b3);
      for (int64_t i = 0; i < W4; i++)
        h->p[T_UP3_B].data[i] = (float) ((2 * vl_rng_uniform (&rng) - 1) * b3);
    }
  /* mmsegmentation's BaseDecodeHead.init_weights: normal_init (conv_seg, mean=0, std=0.01) */
  for (int64_t i = 0; i < h->p[T_SEG_W].numel; i++)
    h->p[T_SEG_W].data[i] = (float) (vl_rng_normal (&rng) * 0.01);
  return h;
}

void
vl_seg_head_free (VlSegHead *h)
{
  if (h == NULL)
    return;
  for (int i = 0; i < N_T; i++)
    vl_head_param_clear (&h->p[i]);
  g_free (h->g0);
  g_free (h->u0);
  g_free (h->u1);
  g_free (h->u2);
  g_free (h->u3);
  g_free (h->ln_mean);
  g_free (h->ln_rstd);
  g_free (h->s);
  g_free (h->out);
  g_free (h);
}

VlSegHeadKind vl_seg_head_kind (VlSegHead *h) { return h->kind; }
int vl_seg_head_width (VlSegHead *h) { return h->W; }
int vl_seg_head_n_classes (VlSegHead *h) { return h->K; }
int vl_seg_head_n_tensors (VlSegHead *h) { return h->n; }

int64_t
vl_seg_head_n_params (VlSegHead *h)
{
  int64_t n = 0;
  for (int i = 0; i < h->n; i++)
    n += h->p[i].numel;
  return n;
}

const char *
vl_seg_head_tensor_name (VlSegHead *h, int i)
{
  g_return_val_if_fail (i >= 0 && i < h->n, NULL);
  return h->p[i].name;
}

float *
vl_seg_head_tensor_data (VlSegHead *h, int i, int *ndim, int64_t *shape, int64_t *numel)
{
  g_return_val_if_fail (i >= 0 && i < h->n, NULL);
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
vl_seg_head_tensor_grad (VlSegHead *h, int i)
{
  g_return_val_if_fail (i >= 0 && i < h->n, NULL);
  return h->p[i].grad;
}

int
vl_seg_head_find_tensor (VlSegHead *h, const char *name)
{
  for (int i = 0; i < h->n; i++)
    if (strcmp (h->p[i].name, name) == 0)
      return i;
  return -1;
}

gboolean
vl_seg_head_tensor_decays (VlSegHead *h, int i)
{
  g_return_val_if_fail (i >= 0 && i < h->n, FALSE);
  return h->p[i].ndim >= 2;
}

static float *
ensure (float **buf, int64_t *cap, int64_t n)
{
  if (*cap < n)
    {
      g_free (*buf);
      *buf = g_new (float, n);
      *cap = n;
    }
  return *buf;
}

/* The final bilinear resize, one image per task (each image's rows are independent, so the
 * result does not depend on the number of threads). */
typedef struct {
  float       *dst;
  const float *src;
  int          sh, sw, K, Ho, Wo;
  gboolean     backward;
} ResizeJob;

static void
resize_one (void *data, int64_t b, int worker)
{
  const ResizeJob *j = data;
  const int64_t in = (int64_t) j->sh * j->sw * j->K, out = (int64_t) j->Ho * j->Wo * j->K;
  if (j->backward)
    vl_bilinear_backward (j->dst + b * in, j->src + b * out, 1, j->sh, j->sw, j->K, j->Ho,
                          j->Wo);
  else
    vl_bilinear_forward (j->dst + b * out, j->src + b * in, 1, j->sh, j->sw, j->K, j->Ho, j->Wo);
}

/* (B, sh, sw) of conv_seg's grid */
static void
seg_grid (VlSegHead *h, int *sh, int *sw)
{
  int f = h->kind == VL_SEG_HEAD_UPCONV ? 4 : 1;
  *sh = f * h->gh;
  *sw = f * h->gw;
}

const float *
vl_seg_head_forward (VlSegHead *h, const float *tokens, int B, int T, int n_prefix, int gh,
                     int gw, int Ho, int Wo)
{
  g_return_val_if_fail (T == n_prefix + gh * gw && B > 0 && Ho > 0 && Wo > 0, NULL);
  const int W = h->W, K = h->K;
  h->B = B;
  h->T = T;
  h->n_prefix = n_prefix;
  h->gh = gh;
  h->gw = gw;
  h->Ho = Ho;
  h->Wo = Wo;
  const int64_t G = (int64_t) gh * gw;

  /* the patch rows of every image: (B, gh, gw, W) */
  float *g0 = ensure (&h->g0, &h->cap_g0, B * G * W);
  for (int b = 0; b < B; b++)
    memcpy (g0 + b * G * W, tokens + ((int64_t) b * T + n_prefix) * W, sizeof (float) * G * W);

  const float *x = g0;
  int sh, sw;
  seg_grid (h, &sh, &sw);
  if (h->kind == VL_SEG_HEAD_UPCONV)
    {
      const int W2 = W / 2, W4 = W / 4;
      const int64_t n1 = (int64_t) B * 4 * G * W2;
      if (h->cap_u < n1)
        {
          g_free (h->u0);
          g_free (h->u1);
          g_free (h->u2);
          g_free (h->ln_mean);
          g_free (h->ln_rstd);
          h->u0 = g_new (float, n1);
          h->u1 = g_new (float, n1);
          h->u2 = g_new (float, n1);
          h->ln_mean = g_new (float, (int64_t) B * 4 * G);
          h->ln_rstd = g_new (float, (int64_t) B * 4 * G);
          h->cap_u = n1;
        }
      vl_convt2x2_forward (h->u0, g0, h->p[T_UP0_W].data, h->p[T_UP0_B].data, B, gh, gw, W, W2,
                           NULL);
      vl_layernorm2d_forward (h->u1, h->ln_mean, h->ln_rstd, h->u0, h->p[T_UP1_W].data,
                              h->p[T_UP1_B].data, B, 2 * gh, 2 * gw, W2, SEG_LN_EPS);
      vl_gelu_forward (h->u2, h->u1, n1);
      float *u3 = ensure (&h->u3, &h->cap_u3, (int64_t) B * 16 * G * W4);
      vl_convt2x2_forward (u3, h->u2, h->p[T_UP3_W].data, h->p[T_UP3_B].data, B, 2 * gh,
                           2 * gw, W2, W4, NULL);
      x = u3;
    }
  float *s = ensure (&h->s, &h->cap_s, (int64_t) B * sh * sw * K);
  VlConv2d c = { .B = B, .H = sh, .W = sw, .Cin = h->C, .Cout = K, .kh = 1, .kw = 1,
                 .stride = 1, .pad = 0, .groups = 1 };
  vl_conv2d_forward (s, x, h->p[T_SEG_W].data, h->p[T_SEG_B].data, &c, NULL);
  float *out = ensure (&h->out, &h->cap_out, (int64_t) B * Ho * Wo * K);
  ResizeJob rj = { out, s, sh, sw, K, Ho, Wo, FALSE };
  vl_parallel_for (B, resize_one, &rj);
  return out;
}

const float *
vl_seg_head_grid_logits (VlSegHead *h, int *gho, int *gwo)
{
  int sh, sw;
  seg_grid (h, &sh, &sw);
  if (gho)
    *gho = sh;
  if (gwo)
    *gwo = sw;
  return h->s;
}

void
vl_seg_head_backward (VlSegHead *h, const float *dlogits, float *d_tokens)
{
  g_return_if_fail (h->out != NULL);
  const int B = h->B, W = h->W, K = h->K, gh = h->gh, gw = h->gw;
  const int64_t G = (int64_t) gh * gw;
  int sh, sw;
  seg_grid (h, &sh, &sw);
  for (int i = 0; i < h->n; i++)
    vl_head_param_zero_grad (&h->p[i]);

  /* d s (B, sh, sw, K) */
  float *ds = g_new0 (float, (int64_t) B * sh * sw * K);
  ResizeJob rj = { ds, dlogits, sh, sw, K, h->Ho, h->Wo, TRUE };
  vl_parallel_for (B, resize_one, &rj);
  VlConv2d c = { .B = B, .H = sh, .W = sw, .Cin = h->C, .Cout = K, .kh = 1, .kw = 1,
                 .stride = 1, .pad = 0, .groups = 1 };
  /* d of conv_seg's input: the patch grid (linear) or up.3's output (upconv) */
  float *dx = g_new0 (float, (int64_t) B * sh * sw * h->C);
  const float *x = h->kind == VL_SEG_HEAD_UPCONV ? h->u3 : h->g0;
  vl_conv2d_backward (dx, h->p[T_SEG_W].grad, h->p[T_SEG_B].grad, ds, x, h->p[T_SEG_W].data,
                      &c, NULL);
  g_free (ds);

  float *dg0 = dx;
  if (h->kind == VL_SEG_HEAD_UPCONV)
    {
      const int W2 = W / 2, W4 = W / 4;
      const int64_t n1 = (int64_t) B * 4 * G * W2;
      float *du2 = g_new0 (float, n1);
      vl_convt2x2_backward (du2, h->p[T_UP3_W].grad, h->p[T_UP3_B].grad, dx, h->u2,
                            h->p[T_UP3_W].data, B, 2 * gh, 2 * gw, W2, W4, NULL);
      g_free (dx);
      /* GELU: in place, du1 = du2 * gelu' (u1) */
      vl_gelu_backward (du2, h->u1, du2, n1);
      float *du0 = g_new0 (float, n1);
      vl_layernorm2d_backward (du0, h->p[T_UP1_W].grad, h->p[T_UP1_B].grad, du2, h->u0,
                               h->p[T_UP1_W].data, h->ln_mean, h->ln_rstd, B, 2 * gh, 2 * gw,
                               W2);
      g_free (du2);
      dg0 = g_new0 (float, (int64_t) B * G * W);
      vl_convt2x2_backward (dg0, h->p[T_UP0_W].grad, h->p[T_UP0_B].grad, du0, h->g0,
                            h->p[T_UP0_W].data, B, gh, gw, W, W2, NULL);
      g_free (du0);
    }
  if (d_tokens != NULL)
    for (int b = 0; b < B; b++)
      {
        float *dt = d_tokens + (int64_t) b * h->T * W;
        memset (dt, 0, sizeof (float) * h->n_prefix * W);
        memcpy (dt + (int64_t) h->n_prefix * W, dg0 + b * G * W, sizeof (float) * G * W);
      }
  g_free (dg0);
}

void
vl_seg_head_adamw_step (VlSegHead *h, const VlAdamW *opt, float lr_scale)
{
  for (int i = 0; i < h->n; i++)
    vl_head_param_adamw (&h->p[i], opt, lr_scale);
}

void
vl_seg_head_optim_state (VlSegHead *h, int i, const float **exp_avg, const float **exp_avg_sq,
                         int *step)
{
  g_return_if_fail (i >= 0 && i < h->n);
  if (exp_avg)
    *exp_avg = h->p[i].m;
  if (exp_avg_sq)
    *exp_avg_sq = h->p[i].v;
  if (step)
    *step = h->p[i].step;
}


void
vl_seg_head_add_to_writer (VlSegHead *h, VlSafetensorsWriter *w)
{
  vl_head_params_add (h->p, h->n, w);
}

gboolean
vl_seg_head_in_safetensors (VlSafetensors *st)
{
  return vl_safetensors_lookup (st, tensor_names[T_SEG_W]) != NULL;
}

VlSegHead *
vl_seg_head_from_safetensors (VlSafetensors *st, int width, GError **error)
{
  const char *path = vl_safetensors_path (st);
  const VlTensorInfo *ws = vl_safetensors_lookup (st, tensor_names[T_SEG_W]);
  if (ws == NULL)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s: no tensor %s (not a segmentation "
                   "checkpoint)", path, tensor_names[T_SEG_W]);
      return NULL;
    }
  VlSegHeadKind kind = vl_safetensors_lookup (st, tensor_names[T_UP0_W]) != NULL
                       ? VL_SEG_HEAD_UPCONV : VL_SEG_HEAD_LINEAR;
  int64_t K = ws->ndim == 4 ? ws->shape[0] : 0;
  g_autoptr(VlSegHead) h = K >= 1 && K <= 255 ? vl_seg_head_new (kind, width, (int) K, 0)
                                               : NULL;
  if (h == NULL)
    {
      g_autofree char *s = vl_shape_to_string (ws->ndim, ws->shape);
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH, "%s: %s has shape %s, which is no %s "
                   "head of 1 to 255 classes over tokens of width %d", path,
                   tensor_names[T_SEG_W], s, vl_seg_head_kind_name (kind), width);
      return NULL;
    }
  g_autofree char *what = g_strdup_printf ("%s seg head", vl_seg_head_kind_name (kind));
  for (int i = 0; i < h->n; i++)
    if (!vl_head_param_read (&h->p[i], st, what, error))
      return NULL;
  return g_steal_pointer (&h);
}

VlSegHead *
vl_seg_head_load (const char *path, int width, GError **error)
{
  g_autoptr(VlSafetensors) st = vl_safetensors_open (path, error);
  return st ? vl_seg_head_from_safetensors (st, width, error) : NULL;
}

void
vl_seg_palette (uint8_t palette[256 * 3])
{
  /* bit j of k goes to bit 7 - i of channel j % 3, for the i-th triple of bits */
  for (int k = 0; k < 256; k++)
    {
      int r = 0, g = 0, b = 0, c = k;
      for (int i = 0; i < 8; i++, c >>= 3)
        {
          r |= ((c >> 0) & 1) << (7 - i);
          g |= ((c >> 1) & 1) << (7 - i);
          b |= ((c >> 2) & 1) << (7 - i);
        }
      palette[3 * k] = (uint8_t) r;
      palette[3 * k + 1] = (uint8_t) g;
      palette[3 * k + 2] = (uint8_t) b;
    }
}

gboolean
vl_seg_head_find (const char *source, int width, VlSegHead **out, GError **error)
{
  g_autoptr(VlSafetensors) st = vl_head_source_open (source, "seg_head.safetensors", tensor_names[T_SEG_W]);
  *out = st ? vl_seg_head_from_safetensors (st, width, error) : NULL;
  return st == NULL || *out != NULL;
}

VlHeadParam *
vl_seg_head_params (VlSegHead *h, int *n)
{
  *n = h->n;
  return h->p;
}
