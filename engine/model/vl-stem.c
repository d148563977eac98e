/* vl-stem.c: see vl-stem.h. */
#include "vl-stem.h"
#include "vl-cnn.h"
#include "vl-pool.h"
#include "vl-rng.h"

#include <math.h>
#include <string.h>

/* the layer kinds (vl-stem.h's VlStemOpKind) under short names */
typedef VlStemOpKind OpKind;
#define OP_CONV VL_STEM_OP_CONV
#define OP_BN   VL_STEM_OP_BN
#define OP_GN   VL_STEM_OP_GN
#define OP_RELU VL_STEM_OP_RELU
#define OP_SILU VL_STEM_OP_SILU
#define OP_POOL VL_STEM_OP_POOL
#define OP_SE   VL_STEM_OP_SE
#define OP_ADD  VL_STEM_OP_ADD

/* BatchNorm's and GroupNorm's eps (PyTorch's default, as timm's) and BatchNorm's momentum */
#define NORM_EPS    1e-5f
#define BN_MOMENTUM 0.1f

/* One layer: reads buffer `in` (and in2 for OP_ADD), writes buffer `out`. Parameters p[]:
 * conv w, b; BatchNorm w, b, running mean, running var; GroupNorm w, b; SE reduce w, b,
 * expand w, b (-1: none). */
typedef struct {
  OpKind   kind;
  int      in, in2, out;
  int      p[4];
  int      k, stride, pad, groups;   /* conv, pool */
  gboolean same;                     /* TF "same" padding (conv, pool) */
  float    std_eps;                  /* > 0: weight-standardized conv */
  int      G;                        /* GroupNorm groups; SE reduced channels */
  /* the last forward's */
  gboolean train;
  float   *mean, *rstd;              /* BN (C), GN (B G), std conv rstd (Cout) */
  float   *wstd;                     /* std conv: the standardized weight */
  int     *argmax;
  float   *se_pool, *se_h, *se_gate;
} StemOp;

typedef struct {
  int64_t v[5];   /* ndim, then the shape */
} Shape5;

typedef struct {
  int    C, H, W;
  float *x, *dx;
} StemBuf;

struct _VlStem {
  VlStemKind kind;
  GArray    *ops;    /* of StemOp */
  GArray    *bufs;   /* of StemBuf; 0 is the input image, channels-last */
  GPtrArray *names;  /* parameter names, in order, with their shapes in `shapes` */
  GArray    *shapes; /* of Shape5: ndim, shape */
  GArray    *is_buf; /* of gboolean */
  int        first;  /* index of the first stem parameter in the model */
  int        in_chans, patch, width;
  int        B, H, W;   /* the allocation's */
  GPtrArray *allocs;
};

static StemOp *op_at (VlStem *s, int i) { return &g_array_index (s->ops, StemOp, i); }
static StemBuf *buf_at (VlStem *s, int i) { return &g_array_index (s->bufs, StemBuf, i); }
VlStemKind vl_stem_kind (const VlStem *s) { return s->kind; }

/* ------------------------------------------------------------------ building */

/* A parameter (stem-local index, or -1 when name is NULL). */
static int
add_p (VlStem *s, const char *name, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
       gboolean buffer)
{
  if (name == NULL)
    return -1;
  Shape5 sh = { { ndim, d0, d1, d2, d3 } };
  g_ptr_array_add (s->names, g_strdup (name));
  g_array_append_val (s->shapes, sh);
  g_array_append_val (s->is_buf, buffer);
  return (int) s->names->len - 1;
}

static int
new_buf (VlStem *s, int C)
{
  StemBuf b = { C, 0, 0, NULL, NULL };
  g_array_append_val (s->bufs, b);
  return (int) s->bufs->len - 1;
}

static int
push (VlStem *s, StemOp op, int C_out)
{
  op.out = new_buf (s, C_out);
  g_array_append_val (s->ops, op);
  return op.out;
}

static int
conv (VlStem *s, int in, const char *prefix, int Cout, int k, int stride, int pad,
      int groups, gboolean bias, gboolean same, float std_eps)
{
  const int Cin = buf_at (s, in)->C;
  g_autofree char *wn = g_strconcat (prefix, ".weight", NULL);
  g_autofree char *bn = g_strconcat (prefix, ".bias", NULL);
  StemOp op = { OP_CONV, in, -1, -1, { -1, -1, -1, -1 }, k, stride, pad, groups, same, std_eps };
  op.p[0] = add_p (s, wn, 4, Cout, Cin / groups, k, k, FALSE);
  op.p[1] = bias ? add_p (s, bn, 1, Cout, 0, 0, 0, FALSE) : -1;
  return push (s, op, Cout);
}

static int
norm (VlStem *s, int in, const char *prefix, gboolean batch, int G)
{
  const int C = buf_at (s, in)->C;
  const char *suffix[4] = { ".weight", ".bias", ".running_mean", ".running_var" };
  StemOp op = { batch ? OP_BN : OP_GN, in, -1, -1, { -1, -1, -1, -1 } };
  op.G = G;
  for (int i = 0; i < (batch ? 4 : 2); i++)
    {
      g_autofree char *n = g_strconcat (prefix, suffix[i], NULL);
      op.p[i] = add_p (s, n, 1, C, 0, 0, 0, i >= 2);
    }
  return push (s, op, C);
}

static int
act (VlStem *s, int in, OpKind kind)
{
  StemOp op = { kind, in, -1, -1, { -1, -1, -1, -1 } };
  return push (s, op, buf_at (s, in)->C);
}

static int
se (VlStem *s, int in, const char *prefix, int R)
{
  const int C = buf_at (s, in)->C;
  StemOp op = { OP_SE, in, -1, -1, { -1, -1, -1, -1 } };
  op.G = R;
  g_autofree char *w1 = g_strconcat (prefix, ".conv_reduce.weight", NULL);
  g_autofree char *b1 = g_strconcat (prefix, ".conv_reduce.bias", NULL);
  g_autofree char *w2 = g_strconcat (prefix, ".conv_expand.weight", NULL);
  g_autofree char *b2 = g_strconcat (prefix, ".conv_expand.bias", NULL);
  op.p[0] = add_p (s, w1, 4, R, C, 1, 1, FALSE);
  op.p[1] = add_p (s, b1, 1, R, 0, 0, 0, FALSE);
  op.p[2] = add_p (s, w2, 4, C, R, 1, 1, FALSE);
  op.p[3] = add_p (s, b2, 1, C, 0, 0, 0, FALSE);
  return push (s, op, C);
}

static int
add_residual (VlStem *s, int a, int b)
{
  StemOp op = { OP_ADD, a, b, -1, { -1, -1, -1, -1 } };
  return push (s, op, buf_at (s, a)->C);
}

static VlStem *
stem_alloc (VlStemKind kind, int in_chans, int width)
{
  VlStem *s = g_new0 (VlStem, 1);
  s->kind = kind;
  s->ops = g_array_new (FALSE, TRUE, sizeof (StemOp));
  s->bufs = g_array_new (FALSE, TRUE, sizeof (StemBuf));
  s->names = g_ptr_array_new_with_free_func (g_free);
  s->shapes = g_array_new (FALSE, TRUE, sizeof (Shape5));
  s->is_buf = g_array_new (FALSE, TRUE, sizeof (gboolean));
  s->in_chans = in_chans;
  s->width = width;
  new_buf (s, in_chans);
  return s;
}

void
vl_stem_free (VlStem *s)
{
  if (s == NULL)
    return;
  g_array_unref (s->ops);
  g_array_unref (s->bufs);
  g_ptr_array_unref (s->names);
  g_array_unref (s->shapes);
  g_array_unref (s->is_buf);
  if (s->allocs)
    g_ptr_array_unref (s->allocs);
  g_free (s);
}

/* Channels of stage i of n (the last one has `width`): halving from it, at least 8. */
static int
stage_channels (int width, int n, int i)
{
  return MAX (8, width >> (n - 1 - i));
}

static void
build_conv (VlStem *s, int n)
{
  int x = 0;
  for (int i = 0; i < n; i++)
    {
      char pre[64];
      g_snprintf (pre, sizeof pre, "patch_embed.stem.%d.conv", i);
      x = conv (s, x, pre, stage_channels (s->width, n, i), 3, 2, 1, 1, FALSE, FALSE, 0);
      g_snprintf (pre, sizeof pre, "patch_embed.stem.%d.bn", i);
      x = act (s, norm (s, x, pre, TRUE, 0), OP_RELU);
    }
  conv (s, x, "patch_embed.proj", s->width, 1, 1, 0, 1, TRUE, FALSE, 0);
}

static void
build_mbconv (VlStem *s, int n)
{
  int x = conv (s, 0, "patch_embed.stem.0.conv", 16, 3, 2, 1, 1, FALSE, FALSE, 0);
  x = act (s, norm (s, x, "patch_embed.stem.0.bn", TRUE, 0), OP_SILU);
  for (int i = 1; i < n; i++)
    {
      const int cin = buf_at (s, x)->C, mid = 4 * cin;
      char pre[80];
#define PRE(fmt) (g_snprintf (pre, sizeof pre, "patch_embed.stem.%d." fmt, i), pre)
      x = conv (s, x, PRE ("conv_pw"), mid, 1, 1, 0, 1, FALSE, FALSE, 0);
      x = act (s, norm (s, x, PRE ("bn1"), TRUE, 0), OP_SILU);
      x = conv (s, x, PRE ("conv_dw"), mid, 3, 2, 1, mid, FALSE, FALSE, 0);
      x = act (s, norm (s, x, PRE ("bn2"), TRUE, 0), OP_SILU);
      x = se (s, x, PRE ("se"), MAX (1, cin / 4));
      x = conv (s, x, PRE ("conv_pwl"), stage_channels (s->width, n, i), 1, 1, 0, 1, FALSE,
                FALSE, 0);
      x = norm (s, x, PRE ("bn3"), TRUE, 0);
#undef PRE
    }
  conv (s, x, "patch_embed.proj", s->width, 1, 1, 0, 1, TRUE, FALSE, 0);
}

VlStem *
vl_stem_new (VlStemKind kind, int in_chans, int patch, int width, GError **error)
{
  int n = 0;
  while ((1 << n) < patch)
    n++;
  if ((kind != VL_STEM_CONV && kind != VL_STEM_MBCONV) || (1 << n) != patch || n < 1 || n > 6)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "a %s stem needs a patch size that is a "
                   "power of two from 2 to 64 (this model's is %d)", vl_stem_kind_name (kind),
                   patch);
      return NULL;
    }
  VlStem *s = stem_alloc (kind, in_chans, width);
  s->patch = patch;
  if (kind == VL_STEM_CONV)
    build_conv (s, n);
  else
    build_mbconv (s, n);
  return s;
}

/* ------------------------------------------------------------------ from a checkpoint */

static const VlTensorInfo *
tensor (VlSafetensors *st, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

static const VlTensorInfo *
tensor (VlSafetensors *st, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *name = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  return vl_safetensors_lookup (st, name);
}

/* How many of before0after, before1after, … exist (from `from` on, consecutively). */
static int
count (VlSafetensors *st, const char *before, const char *after, int from)
{
  int n = from;
  while (n < 64 && tensor (st, "%s%d%s", before, n, after))
    n++;
  return n - from;
}

/* timm's ResNetV2 (preact=False, stem_type 'same', StdConv2dSame eps 1e-8, GroupNorm 32). */
static int
build_resnetv2 (VlStem *s, VlSafetensors *st, const char *bb, int *stride)
{
  char pre[128];
  const VlTensorInfo *c0 = tensor (st, "%sconv.weight", bb);
  int x = conv (s, 0, (g_snprintf (pre, sizeof pre, "%sconv", bb), pre), (int) c0->shape[0],
                (int) c0->shape[2], 2, 0, 1, FALSE, TRUE, 1e-8f);
  x = act (s, norm (s, x, (g_snprintf (pre, sizeof pre, "%snorm", bb), pre), FALSE, 32),
           OP_RELU);
  StemOp pool = { OP_POOL, x, -1, -1, { -1, -1, -1, -1 }, 3, 2, 0, 1, TRUE };
  x = push (s, pool, buf_at (s, x)->C);
  *stride = 4;
  const int n_stages = count (st, "patch_embed.backbone.stages.", ".blocks.0.conv1.weight", 0);
  for (int si = 0; si < n_stages; si++)
    {
      g_autofree char *sp = g_strdup_printf ("patch_embed.backbone.stages.%d.blocks.", si);
      const int depth = count (st, sp, ".conv1.weight", 0);
      for (int bi = 0; bi < depth; bi++)
        {
          const int stride = si > 0 && bi == 0 ? 2 : 1;
          char b[96];
          g_snprintf (b, sizeof b, "patch_embed.backbone.stages.%d.blocks.%d.", si, bi);
          const VlTensorInfo *w1 = tensor (st, "%sconv1.weight", b);
          const VlTensorInfo *w3 = tensor (st, "%sconv3.weight", b);
          if (!w1 || !w3)
            return -1;
          int shortcut = x;
          if (tensor (st, "%sdownsample.conv.weight", b))
            {
              g_snprintf (pre, sizeof pre, "%sdownsample.conv", b);
              shortcut = conv (s, x, pre, (int) w3->shape[0], 1, stride, 0, 1, FALSE, TRUE, 1e-8f);
              g_snprintf (pre, sizeof pre, "%sdownsample.norm", b);
              shortcut = norm (s, shortcut, pre, FALSE, 32);
            }
          g_snprintf (pre, sizeof pre, "%sconv1", b);
          int y = conv (s, x, pre, (int) w1->shape[0], 1, 1, 0, 1, FALSE, TRUE, 1e-8f);
          g_snprintf (pre, sizeof pre, "%snorm1", b);
          y = act (s, norm (s, y, pre, FALSE, 32), OP_RELU);
          g_snprintf (pre, sizeof pre, "%sconv2", b);
          y = conv (s, y, pre, (int) w1->shape[0], 3, stride, 0, 1, FALSE, TRUE, 1e-8f);
          g_snprintf (pre, sizeof pre, "%snorm2", b);
          y = act (s, norm (s, y, pre, FALSE, 32), OP_RELU);
          g_snprintf (pre, sizeof pre, "%sconv3", b);
          y = conv (s, y, pre, (int) w3->shape[0], 1, 1, 0, 1, FALSE, TRUE, 1e-8f);
          g_snprintf (pre, sizeof pre, "%snorm3", b);
          y = norm (s, y, pre, FALSE, 32);
          x = act (s, add_residual (s, y, shortcut), OP_RELU);
        }
      if (si > 0)
        *stride *= 2;
    }
  return x;
}

/* Every tensor the stem declared must be in the file with that shape. */
static gboolean
check_shapes (VlStem *s, VlSafetensors *st, const char *file, GError **error)
{
  for (guint i = 0; i < s->names->len; i++)
    {
      const char *name = g_ptr_array_index (s->names, i);
      const int64_t *sh = g_array_index (s->shapes, Shape5, i).v;
      const VlTensorInfo *t = vl_safetensors_lookup (st, name);
      gboolean ok = t && t->ndim == sh[0];
      for (int d = 0; ok && d < sh[0]; d++)
        ok = t->shape[d] == sh[1 + d];
      if (!ok)
        {
          g_autofree char *want = vl_shape_to_string ((int) sh[0], sh + 1);
          g_autofree char *got = t ? vl_shape_to_string (t->ndim, t->shape) : NULL;
          g_set_error (error, VL_ERROR, t ? VL_ERROR_MISMATCH : VL_ERROR_MISSING,
                       "%s: tensor %s %s%s, expected %s", file, name, t ? "has shape " : "is missing",
                       t ? got : "", want);
          return FALSE;
        }
    }
  return TRUE;
}

/* What the shapes alone do not rule out: kernels of 1 to 15, GroupNorm's channels a multiple
 * of its groups. */
static gboolean
check_layers (VlStem *s, const char *file, GError **error)
{
  for (guint i = 0; i < s->ops->len; i++)
    {
      const StemOp *op = op_at (s, (int) i);
      const int C = buf_at (s, op->in)->C;
      if ((op->kind == OP_CONV && (op->k < 1 || op->k > 15) && op->out != (int) s->bufs->len - 1) ||
          (op->kind == OP_GN && (C < op->G || C % op->G != 0)))
        {
          g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH, "%s: tensor %s: %s", file,
                       (const char *) g_ptr_array_index (s->names, op->p[0]),
                       op->kind == OP_GN ? "a GroupNorm of 32 groups needs a multiple of 32 "
                       "channels" : "a convolution kernel must be 1 to 15 wide");
          return FALSE;
        }
    }
  return TRUE;
}

VlStem *
vl_stem_from_tensors (VlSafetensors *st, const char *file, int width, int *in_chans, int *patch,
                      gboolean *found, GError **error)
{
  const VlTensorInfo *first = tensor (st, "patch_embed.stem.0.conv.weight");
  const gboolean hybrid = tensor (st, "patch_embed.backbone.stem.conv.weight") ||
                          tensor (st, "patch_embed.backbone.conv.weight");
  const VlTensorInfo *proj = tensor (st, "patch_embed.proj.weight");
  *found = first || hybrid;
  if (!*found)
    return NULL;
  if (!proj || proj->ndim != 4 || proj->shape[0] != width || proj->shape[2] != proj->shape[3] ||
      proj->shape[2] < 1 || proj->shape[2] > 64)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH, "%s: a CNN stem needs patch_embed.proj."
                   "weight of shape [%d,C,k,k]", file, width);
      return NULL;
    }
  VlStem *s = NULL;
  if (hybrid)
    {
      const char *bb = tensor (st, "patch_embed.backbone.stem.conv.weight")
                     ? "patch_embed.backbone.stem." : "patch_embed.backbone.";
      const VlTensorInfo *c0 = tensor (st, "%sconv.weight", bb);
      if (c0->ndim != 4 || c0->shape[1] < 1 || c0->shape[1] > 16 || c0->shape[0] % 32)
        {
          g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH, "%s: tensor %sconv.weight is not a "
                       "ResNetV2 stem convolution [C (a multiple of 32),channels,k,k]", file, bb);
          return NULL;
        }
      s = stem_alloc (VL_STEM_RESNETV2, (int) c0->shape[1], width);
      int stride = 0;
      int x = build_resnetv2 (s, st, bb, &stride);
      const int pk = (int) proj->shape[2];
      if (x < 0)
        {
          g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s: a ResNetV2 block misses conv1 or "
                       "conv3", file);
          vl_stem_free (s);
          return NULL;
        }
      conv (s, x, "patch_embed.proj", width, pk, pk, 0, 1, tensor (st, "patch_embed.proj.bias") != NULL,
            FALSE, 0);
      s->patch = stride * pk;
    }
  else
    {
      const gboolean mb = tensor (st, "patch_embed.stem.1.conv_pw.weight") != NULL;
      int stages = count (st, "patch_embed.stem.", ".conv.weight", 0);
      if (mb)
        stages += count (st, "patch_embed.stem.", ".conv_pw.weight", 1);
      s = vl_stem_new (mb ? VL_STEM_MBCONV : VL_STEM_CONV, (int) first->shape[1], 1 << stages,
                       width, error);
      if (s == NULL)
        return NULL;
    }
  if (!check_shapes (s, st, file, error) || !check_layers (s, file, error))
    {
      vl_stem_free (s);
      return NULL;
    }
  *in_chans = s->in_chans;
  *patch = s->patch;
  return s;
}

/* ------------------------------------------------------------------ parameters */

void
vl_stem_add_params (VlStem *s, VlModel *m)
{
  s->first = (int) m->params->len;
  for (guint i = 0; i < s->names->len; i++)
    {
      const int64_t *sh = g_array_index (s->shapes, Shape5, i).v;
      int ix = vl_model_add_param (m, g_ptr_array_index (s->names, i), 0, C_STEM, (int) sh[0],
                                   sh + 1);
      vl_param (m, ix)->buffer = g_array_index (s->is_buf, gboolean, i);
    }
}

void
vl_stem_init_random (VlStem *s, VlModel *m, uint64_t seed)
{
  VlRng rng;
  vl_rng_seed (&rng, seed);
  for (guint i = 0; i < s->names->len; i++)
    {
      VlParam *p = vl_param (m, s->first + (int) i);
      const char *name = p->name;
      const gboolean proj = g_str_has_prefix (name, "patch_embed.proj.");
      if (proj)
        {
          const int64_t fan_in = vl_param (m, s->first + (int) (g_str_has_suffix (name, "bias")
                                                                ? i - 1 : i))->numel / p->shape[0];
          const double bound = 1.0 / sqrt ((double) fan_in);
          for (int64_t k = 0; k < p->numel; k++)
            p->data[k] = (float) ((2.0 * vl_rng_uniform (&rng) - 1.0) * bound);
        }
      else if (p->ndim == 4)
        {
          /* fan_out = Cout kh kw / groups = numel / Cin-per-group */
          const double std = sqrt (2.0 / (double) (p->numel / p->shape[1]));
          for (int64_t k = 0; k < p->numel; k++)
            p->data[k] = (float) (vl_rng_normal (&rng) * std);
        }
      else
        {
          const gboolean one = g_str_has_suffix (name, "running_var") ||
                               (g_str_has_suffix (name, ".weight") && p->ndim == 1);
          for (int64_t k = 0; k < p->numel; k++)
            p->data[k] = one ? 1.0f : 0.0f;
        }
    }
}

/* ------------------------------------------------------------------ compute */

static float *
pdata (VlStem *s, VlModel *m, int local)
{
  return local >= 0 ? vl_param (m, s->first + local)->data : NULL;
}

static float *
pgrad (VlStem *s, VlModel *m, int local)
{
  if (local < 0)
    return NULL;
  VlParam *p = vl_param (m, s->first + local);
  return m->trainable[p->group] ? p->grad : NULL;
}

#define SALLOC(s, n) ((float *) stem_alloc_mem ((s), (n), sizeof (float)))
static void *
stem_alloc_mem (VlStem *s, int64_t n, size_t size)
{
  void *p = g_malloc0 ((gsize) MAX (n, 1) * size);
  g_ptr_array_add (s->allocs, p);
  return p;
}

static VlConv2d
conv_geometry (VlStem *s, const StemOp *op, int B)
{
  const StemBuf *in = buf_at (s, op->in), *out = buf_at (s, op->out);
  return (VlConv2d) { .B = B, .H = in->H, .W = in->W, .Cin = in->C, .Cout = out->C,
                      .kh = op->k, .kw = op->k, .stride = op->stride, .pad = op->pad,
                      .groups = op->groups };
}

/* Sizes every buffer for B images of H x W and allocates what the layers keep. */
static void
stem_ensure (VlStem *s, int B, int H, int W)
{
  if (s->allocs && s->B == B && s->H == H && s->W == W)
    return;
  if (s->allocs)
    g_ptr_array_unref (s->allocs);
  s->allocs = g_ptr_array_new_with_free_func (g_free);
  s->B = B, s->H = H, s->W = W;
  buf_at (s, 0)->H = H;
  buf_at (s, 0)->W = W;
  for (guint i = 0; i < s->ops->len; i++)
    {
      StemOp *op = op_at (s, (int) i);
      StemBuf *in = buf_at (s, op->in), *out = buf_at (s, op->out);
      out->H = in->H, out->W = in->W;
      if (op->kind == OP_CONV || op->kind == OP_POOL)
        {
          if (op->same)
            {
              out->H = (in->H + op->stride - 1) / op->stride;
              out->W = (in->W + op->stride - 1) / op->stride;
            }
          else
            {
              out->H = (in->H + 2 * op->pad - op->k) / op->stride + 1;
              out->W = (in->W + 2 * op->pad - op->k) / op->stride + 1;
            }
        }
      const int64_t n_out = (int64_t) B * out->H * out->W * out->C;
      op->mean = SALLOC (s, MAX (out->C, B * op->G));
      op->rstd = SALLOC (s, MAX (out->C, B * op->G));
      if (op->kind == OP_CONV && op->std_eps > 0)
        op->wstd = SALLOC (s, (int64_t) out->C * (in->C / op->groups) * op->k * op->k);
      if (op->kind == OP_POOL)
        op->argmax = stem_alloc_mem (s, n_out, sizeof (int));
      if (op->kind == OP_SE)
        {
          op->se_pool = SALLOC (s, (int64_t) B * in->C);
          op->se_h = SALLOC (s, (int64_t) B * op->G);
          op->se_gate = SALLOC (s, (int64_t) B * in->C);
        }
    }
  for (guint i = 0; i < s->bufs->len; i++)
    {
      StemBuf *b = buf_at (s, (int) i);
      const int64_t n = (int64_t) B * b->H * b->W * b->C;
      b->x = SALLOC (s, n);
      b->dx = i > 0 ? SALLOC (s, n) : NULL;
    }
}

/* A convolution over the thread pool: images split into one chunk per thread; the backward's
 * weight and bias gradients summed from one partial per chunk. */
typedef struct {
  VlConv2d     c;
  gboolean     same;
  const float *inp, *w, *b, *dout;
  float       *out, *dinp, *dw_part, *db_part;
  int64_t      in_img, out_img, wn;   /* floats per input image, output image, weight */
  int          per;                   /* images per chunk */
} ConvJob;

static void
conv_chunk (void *ctx, int64_t i, int worker)
{
  const ConvJob *j = ctx;
  const int b0 = (int) i * j->per, b1 = MIN (j->c.B, b0 + j->per);
  if (b0 >= b1)
    return;
  VlConv2d c = j->c;
  c.B = b1 - b0;
  const float *x = j->inp + b0 * j->in_img;
  if (j->dout == NULL)
    {
      if (j->same)
        vl_conv2d_same_forward (j->out + b0 * j->out_img, x, j->w, j->b, &c, NULL);
      else
        vl_conv2d_forward (j->out + b0 * j->out_img, x, j->w, j->b, &c, NULL);
      return;
    }
  float *dw = j->dw_part ? j->dw_part + i * j->wn : NULL;
  float *db = j->db_part ? j->db_part + i * c.Cout : NULL;
  float *dx = j->dinp ? j->dinp + b0 * j->in_img : NULL;
  if (j->same)
    vl_conv2d_same_backward (dx, dw, db, j->dout + b0 * j->out_img, x, j->w, &c);
  else
    vl_conv2d_backward (dx, dw, db, j->dout + b0 * j->out_img, x, j->w, &c, NULL);
}

/* Forward (dout NULL: out = conv (inp)) or backward (dinp, dw, db +=) of one conv layer. */
static void
conv_parallel (const StemOp *op, const VlConv2d *c, const StemBuf *in, const StemBuf *out,
               const float *w, const float *b, const float *dout, float *dinp, float *dw,
               float *db)
{
  const int n = MAX (1, MIN (c->B, vl_pool_n_threads ()));
  ConvJob j = { *c, op->same, in->x, w, b, dout, out->x, dinp, NULL, NULL,
                (int64_t) in->H * in->W * in->C, (int64_t) out->H * out->W * out->C,
                (int64_t) c->Cout * (c->Cin / c->groups) * c->kh * c->kw, (c->B + n - 1) / n };
  if (dout && dw)
    j.dw_part = g_new0 (float, n * j.wn);
  if (dout && db)
    j.db_part = g_new0 (float, (int64_t) n * c->Cout);
  vl_parallel_for (n, conv_chunk, &j);
  for (int i = 0; i < n; i++)
    {
      for (int64_t k = 0; dw && k < j.wn; k++)
        dw[k] += j.dw_part[i * j.wn + k];
      for (int k = 0; db && k < c->Cout; k++)
        db[k] += j.db_part[(int64_t) i * c->Cout + k];
    }
  g_free (j.dw_part);
  g_free (j.db_part);
}

static void
op_forward (VlStem *s, VlModel *m, StemOp *op, int B)
{
  const StemBuf *in = buf_at (s, op->in), *out = buf_at (s, op->out);
  const int64_t HW = (int64_t) in->H * in->W, n = B * HW * in->C;
  switch (op->kind)
    {
    case OP_CONV:
      {
        VlConv2d c = conv_geometry (s, op, B);
        const float *w = pdata (s, m, op->p[0]);
        if (op->std_eps > 0)
          {
            vl_weight_std_forward (op->wstd, op->rstd, w, c.Cout,
                                   (int64_t) (c.Cin / c.groups) * c.kh * c.kw, op->std_eps);
            w = op->wstd;
          }
        conv_parallel (op, &c, in, out, w, pdata (s, m, op->p[1]), NULL, NULL, NULL, NULL);
        break;
      }
    case OP_BN:
      {
        /* the running statistics change: a new version of those parameters */
        if (op->train)
          vl_param (m, s->first + op->p[2])->version++, vl_param (m, s->first + op->p[3])->version++;
        vl_batchnorm_forward (out->x, op->mean, op->rstd, in->x, pdata (s, m, op->p[0]),
                              pdata (s, m, op->p[1]), pdata (s, m, op->p[2]),
                              pdata (s, m, op->p[3]), B * HW, in->C, NORM_EPS, BN_MOMENTUM,
                              op->train);
        break;
      }
    case OP_GN:
      vl_groupnorm_forward (out->x, op->mean, op->rstd, in->x, pdata (s, m, op->p[0]),
                            pdata (s, m, op->p[1]), B, HW, in->C, op->G, NORM_EPS);
      break;
    case OP_RELU:
      vl_relu_forward (out->x, in->x, n);
      break;
    case OP_SILU:
      vl_silu_forward (out->x, in->x, n);
      break;
    case OP_POOL:
      {
        int top = op->pad, left = op->pad, hi;
        if (op->same)
          {
            vl_same_pad (in->H, op->k, op->stride, &top, &hi);
            vl_same_pad (in->W, op->k, op->stride, &left, &hi);
          }
        vl_maxpool2d_forward (out->x, op->argmax, in->x, B, in->H, in->W, in->C, op->k,
                              op->stride, top, left, out->H, out->W);
        break;
      }
    case OP_SE:
      vl_se_forward (out->x, op->se_pool, op->se_h, op->se_gate, in->x, pdata (s, m, op->p[0]),
                     pdata (s, m, op->p[1]), pdata (s, m, op->p[2]), pdata (s, m, op->p[3]), B,
                     HW, in->C, op->G);
      break;
    case OP_ADD:
      {
        const float *b = buf_at (s, op->in2)->x;
        for (int64_t i = 0; i < n; i++)
          out->x[i] = in->x[i] + b[i];
        break;
      }
    }
}

void
vl_stem_forward (VlStem *s, VlModel *m, float *out, const float *images, int B, int H, int W,
                 gboolean train)
{
  stem_ensure (s, B, H, W);
  const int C = s->in_chans;
  const gboolean bn_train = train && s->names->len > 0 &&
                            m->trainable[vl_param (m, s->first)->group];
  /* (B, C, H, W) -> channels-last */
  float *x0 = buf_at (s, 0)->x;
  for (int b = 0; b < B; b++)
    for (int c = 0; c < C; c++)
      for (int64_t p = 0; p < (int64_t) H * W; p++)
        x0[((int64_t) b * H * W + p) * C + c] = images[((int64_t) b * C + c) * H * W + p];
  for (guint i = 0; i < s->ops->len; i++)
    {
      StemOp *op = op_at (s, (int) i);
      op->train = bn_train;
      op_forward (s, m, op, B);
    }
  const StemBuf *last = buf_at (s, (int) s->bufs->len - 1);
  g_assert (last->H == H / s->patch && last->W == W / s->patch && last->C == s->width);
  memcpy (out, last->x, sizeof (float) * B * last->H * last->W * last->C);
}

static void
op_backward (VlStem *s, VlModel *m, StemOp *op, int B)
{
  const StemBuf *in = buf_at (s, op->in), *out = buf_at (s, op->out);
  const int64_t HW = (int64_t) in->H * in->W, n = B * HW * in->C;
  float *dinp = in->dx;   /* NULL for the image */
  const float *dout = out->dx;
  switch (op->kind)
    {
    case OP_CONV:
      {
        VlConv2d c = conv_geometry (s, op, B);
        float *dw = pgrad (s, m, op->p[0]);
        const float *w = op->std_eps > 0 ? op->wstd : pdata (s, m, op->p[0]);
        const int64_t K = (int64_t) (c.Cin / c.groups) * c.kh * c.kw;
        g_autofree float *dws = op->std_eps > 0 && dw ? g_new0 (float, c.Cout * K) : NULL;
        float *dwc = op->std_eps > 0 ? dws : dw;
        conv_parallel (op, &c, in, out, w, NULL, dout, dinp, dwc, pgrad (s, m, op->p[1]));
        if (dws)
          vl_weight_std_backward (dw, dws, op->wstd, op->rstd, c.Cout, K);
        break;
      }
    case OP_BN:
      vl_batchnorm_backward (dinp, pgrad (s, m, op->p[0]), pgrad (s, m, op->p[1]), dout, in->x,
                             pdata (s, m, op->p[0]), op->mean, op->rstd, B * HW, in->C, op->train);
      break;
    case OP_GN:
      vl_groupnorm_backward (dinp, pgrad (s, m, op->p[0]), pgrad (s, m, op->p[1]), dout, in->x,
                             pdata (s, m, op->p[0]), op->mean, op->rstd, B, HW, in->C, op->G);
      break;
    case OP_RELU:
      if (dinp)
        vl_relu_backward (dinp, dout, out->x, n);
      break;
    case OP_SILU:
      if (dinp)
        vl_silu_backward (dinp, dout, in->x, n);
      break;
    case OP_POOL:
      if (dinp)
        vl_maxpool2d_backward (dinp, dout, op->argmax, B, in->H, in->W, in->C, out->H, out->W);
      break;
    case OP_SE:
      vl_se_backward (dinp, pgrad (s, m, op->p[0]), pgrad (s, m, op->p[1]),
                      pgrad (s, m, op->p[2]), pgrad (s, m, op->p[3]), dout, in->x,
                      pdata (s, m, op->p[0]), pdata (s, m, op->p[2]), op->se_pool, op->se_h,
                      op->se_gate, B, HW, in->C, op->G);
      break;
    case OP_ADD:
      {
        float *db = buf_at (s, op->in2)->dx;
        for (int64_t i = 0; i < n; i++)
          {
            if (dinp)
              dinp[i] += dout[i];
            if (db)
              db[i] += dout[i];
          }
        break;
      }
    }
}

void
vl_stem_backward (VlStem *s, VlModel *m, const float *dout)
{
  const int B = s->B;
  for (guint i = 1; i < s->bufs->len; i++)
    {
      StemBuf *b = buf_at (s, (int) i);
      memset (b->dx, 0, sizeof (float) * B * b->H * b->W * b->C);
    }
  StemBuf *last = buf_at (s, (int) s->bufs->len - 1);
  memcpy (last->dx, dout, sizeof (float) * B * last->H * last->W * last->C);
  for (int i = (int) s->ops->len - 1; i >= 0; i--)
    op_backward (s, m, op_at (s, i), B);
}

/* ------------------------------------------------------------------ the layers */

int vl_stem_n_layers (const VlStem *s) { return (int) s->ops->len; }
int vl_stem_n_buffers (const VlStem *s) { return (int) s->bufs->len; }

int
vl_stem_buffer_channels (const VlStem *s, int i)
{
  return g_array_index (s->bufs, StemBuf, i).C;
}

void
vl_stem_layer (const VlStem *s, int i, VlStemLayer *out)
{
  const StemOp *op = &g_array_index (s->ops, StemOp, i);
  *out = (VlStemLayer) { op->kind, op->in, op->in2, op->out, { -1, -1, -1, -1 }, op->k,
                         op->stride, op->pad, op->groups, op->same, op->std_eps, op->G,
                         NORM_EPS };
  for (int k = 0; k < 4; k++)
    out->param[k] = op->p[k] >= 0 ? s->first + op->p[k] : -1;
}

/* ------------------------------------------------------------------ names */

const char *
vl_stem_kind_name (VlStemKind kind)
{
  switch (kind)
    {
    case VL_STEM_CONV: return "conv";
    case VL_STEM_MBCONV: return "mbconv";
    case VL_STEM_RESNETV2: return "resnetv2";
    case VL_STEM_PATCH:
    default: return "patch";
    }
}

gboolean
vl_stem_kind_from_string (const char *str, VlStemKind *kind)
{
  for (int k = VL_STEM_PATCH; k <= VL_STEM_RESNETV2; k++)
    if (g_strcmp0 (str, vl_stem_kind_name (k)) == 0)
      {
        *kind = k;
        return TRUE;
      }
  return FALSE;
}

VlStemKind
vl_model_stem_kind (VlModel *m)
{
  return m->stem ? m->stem->kind : VL_STEM_PATCH;
}

/* ------------------------------------------------------------------ replacing the stem */

static void
copy_by_name (VlModel *to, VlModel *from, int first, int end)
{
  for (int i = first; i < end; i++)
    {
      VlParam *p = vl_param (to, i);
      int j = vl_model_find_tensor (from, p->name);
      if (j >= 0 && vl_param (from, j)->numel == p->numel)
        memcpy (p->data, vl_param (from, j)->data, sizeof (float) * p->numel);
    }
}

gboolean
vl_model_replace_stem (VlModel *m, VlStemKind kind, uint64_t seed, GError **error)
{
  const VlGeometry *g = &m->geo;
  VlStem *stem = vl_stem_new (kind, g->in_chans, g->patch, g->width, error);
  if (stem == NULL)
    return FALSE;
  /* a new table built as the loader builds it, the stem in place of the patch embedding */
  g_autoptr(VlModel) n = vl_model_alloc ();
  n->geo = *g;
  n->geo.family = g_strdup ("timm");   /* the new tensors have timm's names only */
  n->geo.architecture = g_strdup (g->architecture);
  n->geo.interpolation = g_strdup (g->interpolation);
  n->stem = stem;
  n->path = g_strdup (m->path);
  vl_families_build (n, FALSE, m->n_body_groups != g->depth + 2 + (g->embed_dim > 0));
  if (!vl_model_blocks_allocated (n, error))
    return FALSE;
  copy_by_name (n, m, 0, n->n_backbone);
  vl_stem_init_random (stem, n, seed);
  vl_model_build_head (n, m->head_kind, m->num_classes, m->head_hidden, m->ix.hdist_w >= 0);
  if (!vl_model_blocks_allocated (n, error))
    return FALSE;
  copy_by_name (n, m, n->n_backbone, (int) n->params->len);
  for (int grp = 0; grp < MIN (n->n_groups, m->n_groups); grp++)
    n->trainable[grp] = m->trainable[grp];
  n->class_names = g_strdupv (m->class_names);
  n->pool = m->pool;
  g_set_object (&n->cancellable, m->cancellable);
  /* swap the insides: the caller's handle now holds the new model */
  VlModel tmp = *m;
  *m = *n;
  *n = tmp;
  return TRUE;
}
