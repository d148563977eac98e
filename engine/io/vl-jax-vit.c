/* vl-jax-vit.c: a Flax ViT's arrays under timm's names (the table in vl-jax-vit.h). */
#include "vl-jax-vit.h"

#include "vl-error.h"

#include <string.h>

#define MAX_DEPTH 1024

typedef struct {
  const char    *path;
  VlTensorTable *raw, *out;
  const char    *prefix;
  GHashTable    *used;    /* raw names converted */
  int            width, heads;
  GError       **error;
} Jx;

static const VlTensorInfo *
jx_find (Jx *j, const char *rel)
{
  g_autofree char *name = g_strconcat (j->prefix, rel, NULL);
  guint at = GPOINTER_TO_UINT (g_hash_table_lookup (j->raw->index, name));
  return at ? &g_array_index (j->raw->tensors, VlTensorInfo, at - 1) : NULL;
}

/* prefix + rel as float32 (a new buffer), its `ndim` dimensions checked against want (-1: any)
 * and written to shape; `layer` >= 0 takes that slice of an array stacked over the blocks. */
static float *
jx_read (Jx *j, const char *rel, int layer, int ndim, const int64_t *want, int64_t *shape)
{
  const VlTensorInfo *t = jx_find (j, rel);
  if (t == NULL)
    {
      g_set_error (j->error, VL_ERROR, VL_ERROR_MISSING, "%s: no array %s%s, which a Flax "
                   "ViT has", j->path, j->prefix, rel);
      return NULL;
    }
  const int lead = layer >= 0;
  gboolean ok = t->ndim == ndim + lead && (!lead || layer < t->shape[0]);
  int64_t n = 1;
  for (int d = 0; ok && d < ndim; d++)
    {
      shape[d] = t->shape[d + lead];
      n *= shape[d];
      ok = want[d] < 0 || want[d] == shape[d];
    }
  if (!ok)
    {
      g_autofree char *found = vl_shape_to_string (t->ndim, t->shape);
      GString *exp = g_string_new (lead ? "[depth" : "[");
      for (int d = 0; d < ndim; d++)
        {
          if (d || lead)
            g_string_append_c (exp, ',');
          if (want[d] < 0)
            g_string_append_c (exp, '*');
          else
            g_string_append_printf (exp, "%" G_GINT64_FORMAT, want[d]);
        }
      g_string_append_c (exp, ']');
      g_set_error (j->error, VL_ERROR, VL_ERROR_MISMATCH, "%s: array %s has shape %s, expected "
                   "%s", j->path, t->name, found, exp->str);
      g_string_free (exp, TRUE);
      return NULL;
    }
  VlTensorInfo slice = *t;
  slice.numel = n;
  slice.data = (const guint8 *) t->data + (size_t) (lead ? layer : 0) * (size_t) n *
               vl_dtype_size (t->dtype);
  float *f = g_new (float, MAX (n, 1));
  vl_tensor_to_f32 (&slice, f);
  g_hash_table_add (j->used, (gpointer) t->name);
  return f;
}

static void
emit (Jx *j, const char *name, float *data, int ndim, const int64_t *shape)
{
  vl_tensor_table_add_f32 (j->out, name, ndim, shape, data);
}

/* dst (cols, rows) = src (rows, cols) transposed */
static void
transpose (float *dst, const float *src, int64_t rows, int64_t cols)
{
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++)
      dst[c * rows + r] = src[r * cols + c];
}

/* rel (R, C) read, emitted transposed as name (C, R). */
static gboolean
emit_transposed (Jx *j, const char *rel, int layer, int64_t rows, int64_t cols, const char *name)
{
  int64_t want[2] = { rows, cols }, shape[2];
  g_autofree float *src = jx_read (j, rel, layer, 2, want, shape);
  if (src == NULL)
    return FALSE;
  float *dst = g_new (float, MAX (shape[0] * shape[1], 1));
  transpose (dst, src, shape[0], shape[1]);
  int64_t out[2] = { shape[1], shape[0] };
  emit (j, name, dst, 2, out);
  return TRUE;
}

/* rel read with its shape checked, emitted as name with shape `as` (the same elements). */
static gboolean
emit_as (Jx *j, const char *rel, int layer, int ndim, const int64_t *want, const char *name,
         int out_ndim, const int64_t *as)
{
  int64_t shape[VL_MAX_DIMS];
  float *f = jx_read (j, rel, layer, ndim, want, shape);
  if (f == NULL)
    return FALSE;
  emit (j, name, f, out_ndim ? out_ndim : ndim, out_ndim ? as : shape);
  return TRUE;
}

static gboolean
emit_layernorm (Jx *j, const char *at, int layer, const char *name)
{
  const int64_t w[1] = { j->width };
  g_autofree char *scale = g_strconcat (at, "/scale", NULL);
  g_autofree char *bias = g_strconcat (at, "/bias", NULL);
  g_autofree char *weight_name = g_strconcat (name, ".weight", NULL);
  g_autofree char *bias_name = g_strconcat (name, ".bias", NULL);
  return emit_as (j, scale, layer, 1, w, weight_name, 1, w) &&
         emit_as (j, bias, layer, 1, w, bias_name, 1, w);
}

/* Block i's attention: query/key/value kernels (W, H, W/H) -> qkv (3W, W), out (H, W/H, W) ->
 * proj (W, W), under blk + "attn.qkv.*", "attn.proj.*"; for the MAP head (pool), under
 * blk + "q.*" (the query's rows), "kv.*" (the key's and value's), "proj.*". */
static gboolean
emit_attention (Jx *j, const char *mha, int layer, const char *blk, gboolean pool)
{
  const int64_t W = j->width;
  const int64_t any3[3] = { W, -1, -1 };
  int64_t qs[3];
  g_autofree char *qname = g_strconcat (mha, "query/kernel", NULL);
  g_autofree float *q = jx_read (j, qname, layer, 3, any3, qs);
  if (q == NULL)
    return FALSE;
  if (qs[1] < 1 || qs[1] * qs[2] != W || (j->heads && qs[1] != j->heads))
    {
      g_set_error (j->error, VL_ERROR, VL_ERROR_MISMATCH, "%s: array %s%s: %" G_GINT64_FORMAT
                   " heads of %" G_GINT64_FORMAT " do not make the width %" G_GINT64_FORMAT
                   "%s", j->path, j->prefix, qname, qs[1], qs[2], W,
                   j->heads ? " (or differ from block 0's)" : "");
      return FALSE;
    }
  j->heads = (int) qs[1];
  const int64_t kern[3] = { W, qs[1], qs[2] }, bias[2] = { qs[1], qs[2] };
  float *qkv = g_new (float, 3 * W * W), *qkv_b = g_new (float, 3 * W);
  static const char *const parts[] = { "query", "key", "value" };
  gboolean ok = TRUE;
  for (int p = 0; ok && p < 3; p++)
    {
      int64_t s[3];
      g_autofree char *kn = g_strconcat (mha, parts[p], "/kernel", NULL);
      g_autofree char *bn = g_strconcat (mha, parts[p], "/bias", NULL);
      g_autofree float *k = p == 0 ? g_steal_pointer (&q) : jx_read (j, kn, layer, 3, kern, s);
      g_autofree float *b = k ? jx_read (j, bn, layer, 2, bias, s) : NULL;
      ok = k != NULL && b != NULL;
      if (ok)   /* the kernel (W, H, W/H) viewed as (W, W): output feature head * W/H + d */
        {
          transpose (qkv + p * W * W, k, W, W);
          memcpy (qkv_b + p * W, b, sizeof (float) * (size_t) W);
        }
    }
  if (!ok)
    {
      g_free (qkv);
      g_free (qkv_b);
      return FALSE;
    }
  if (pool)
    {
      const int64_t q_shape[2] = { W, W }, q_b_shape[1] = { W };
      const int64_t kv_shape[2] = { 2 * W, W }, kv_b_shape[1] = { 2 * W };
      g_autofree char *qn = g_strconcat (blk, "q.weight", NULL);
      g_autofree char *qbn = g_strconcat (blk, "q.bias", NULL);
      g_autofree char *kvn = g_strconcat (blk, "kv.weight", NULL);
      g_autofree char *kvbn = g_strconcat (blk, "kv.bias", NULL);
      emit (j, qn, g_memdup2 (qkv, sizeof (float) * W * W), 2, q_shape);
      emit (j, qbn, g_memdup2 (qkv_b, sizeof (float) * W), 1, q_b_shape);
      emit (j, kvn, g_memdup2 (qkv + W * W, sizeof (float) * 2 * W * W), 2, kv_shape);
      emit (j, kvbn, g_memdup2 (qkv_b + W, sizeof (float) * 2 * W), 1, kv_b_shape);
      g_free (qkv);
      g_free (qkv_b);
    }
  else
    {
      const int64_t qkv_shape[2] = { 3 * W, W }, qkv_b_shape[1] = { 3 * W };
      g_autofree char *qkv_name = g_strconcat (blk, "attn.qkv.weight", NULL);
      g_autofree char *qkv_b_name = g_strconcat (blk, "attn.qkv.bias", NULL);
      emit (j, qkv_name, qkv, 2, qkv_shape);
      emit (j, qkv_b_name, qkv_b, 1, qkv_b_shape);
    }
  /* out (H, W/H, W) viewed as (W, W) [head * W/H + d, o] -> proj (o, head * W/H + d) */
  const int64_t out_shape[3] = { qs[1], qs[2], W }, w1[1] = { W };
  g_autofree char *on = g_strconcat (mha, "out/kernel", NULL);
  g_autofree char *ob = g_strconcat (mha, "out/bias", NULL);
  g_autofree char *proj_name = g_strconcat (blk, pool ? "proj.weight" : "attn.proj.weight", NULL);
  g_autofree char *proj_b_name = g_strconcat (blk, pool ? "proj.bias" : "attn.proj.bias", NULL);
  int64_t s[3];
  g_autofree float *o = jx_read (j, on, layer, 3, out_shape, s);
  if (o == NULL)
    return FALSE;
  float *proj = g_new (float, W * W);
  transpose (proj, o, W, W);
  const int64_t proj_shape[2] = { W, W };
  emit (j, proj_name, proj, 2, proj_shape);
  return emit_as (j, ob, layer, 1, w1, proj_b_name, 1, w1);
}

typedef struct {
  int mha, mlp, ln2;     /* AugReg: MultiHeadDotProductAttention_1, MlpBlock_3, LayerNorm_2 */
} Subs;

static gboolean emit_mlp (Jx *j, const char *at, int layer, const char *blk);

static gboolean
emit_block (Jx *j, int i, gboolean scan, const Subs *s)
{
  const int layer = scan ? i : -1;
  g_autofree char *bp = scan ? g_strdup ("Transformer/encoderblock/")
                             : g_strdup_printf ("Transformer/encoderblock_%d/", i);
  g_autofree char *blk = g_strdup_printf ("blocks.%d.", i);
  g_autofree char *ln1 = g_strconcat (bp, "LayerNorm_0", NULL);
  g_autofree char *ln2 = g_strdup_printf ("%sLayerNorm_%d", bp, s->ln2);
  g_autofree char *mha = g_strdup_printf ("%sMultiHeadDotProductAttention_%d/", bp, s->mha);
  g_autofree char *norm1 = g_strconcat (blk, "norm1", NULL);
  g_autofree char *norm2 = g_strconcat (blk, "norm2", NULL);
  if (!emit_layernorm (j, ln1, layer, norm1) || !emit_attention (j, mha, layer, blk, FALSE) ||
      !emit_layernorm (j, ln2, layer, norm2))
    return FALSE;
  g_autofree char *mlp = g_strdup_printf ("%sMlpBlock_%d/", bp, s->mlp);
  return emit_mlp (j, mlp, layer, blk);
}

/* An MlpBlock's Dense_0 and Dense_1 under `at` as blk + "mlp.fc1.*", "mlp.fc2.*". */
static gboolean
emit_mlp (Jx *j, const char *at, int layer, const char *blk)
{
  const int scan = layer >= 0;
  g_autofree char *d0 = g_strconcat (at, "Dense_0/kernel", NULL);
  g_autofree char *d0b = g_strconcat (at, "Dense_0/bias", NULL);
  g_autofree char *d1 = g_strconcat (at, "Dense_1/kernel", NULL);
  g_autofree char *d1b = g_strconcat (at, "Dense_1/bias", NULL);
  g_autofree char *fc1 = g_strconcat (blk, "mlp.fc1.weight", NULL);
  g_autofree char *fc1b = g_strconcat (blk, "mlp.fc1.bias", NULL);
  g_autofree char *fc2 = g_strconcat (blk, "mlp.fc2.weight", NULL);
  g_autofree char *fc2b = g_strconcat (blk, "mlp.fc2.bias", NULL);
  const VlTensorInfo *k0 = jx_find (j, d0);
  const int64_t M = k0 && k0->ndim == 2 + scan ? k0->shape[1 + scan] : -1;
  const int64_t m1[1] = { M }, w1[1] = { j->width };
  return emit_transposed (j, d0, layer, j->width, M, fc1) &&
         emit_as (j, d0b, layer, 1, m1, fc1b, 1, m1) &&
         emit_transposed (j, d1, layer, M, j->width, fc2) &&
         emit_as (j, d1b, layer, 1, w1, fc2b, 1, w1);
}

/* The patch embedding, tokens, final norm and head. */
static gboolean
emit_embedding (Jx *j)
{
  const int64_t any4[4] = { -1, -1, -1, -1 };
  int64_t ks[4];
  g_autofree float *k = jx_read (j, "embedding/kernel", -1, 4, any4, ks);
  if (k == NULL)
    return FALSE;
  /* (P, Q, C, W) -> (W, C, P, Q) */
  const int64_t P = ks[0], Q = ks[1], C = ks[2], W = ks[3];
  j->width = (int) MIN (W, G_MAXINT);
  float *w = g_new (float, MAX (P * Q * C * W, 1));
  for (int64_t y = 0; y < P; y++)
    for (int64_t x = 0; x < Q; x++)
      for (int64_t c = 0; c < C; c++)
        for (int64_t o = 0; o < W; o++)
          w[((o * C + c) * P + y) * Q + x] = k[((y * Q + x) * C + c) * W + o];
  const int64_t wshape[4] = { W, C, P, Q }, w1[1] = { W }, tok[3] = { 1, 1, W };
  const int64_t pos[3] = { 1, -1, W };
  emit (j, "patch_embed.proj.weight", w, 4, wshape);
  if (jx_find (j, "embedding/bias") &&
      !emit_as (j, "embedding/bias", -1, 1, w1, "patch_embed.proj.bias", 1, w1))
    return FALSE;
  if (jx_find (j, "cls") && !emit_as (j, "cls", -1, 3, tok, "cls_token", 0, NULL))
    return FALSE;
  const char *pos_name = jx_find (j, "Transformer/posembed_input/pos_embedding")
                         ? "Transformer/posembed_input/pos_embedding" : "pos_embedding";
  if (!jx_find (j, pos_name))
    {
      g_set_error (j->error, VL_ERROR, VL_ERROR_MISSING, "%s: no learnt position embedding "
                   "(%sTransformer/posembed_input/pos_embedding or %spos_embedding); a "
                   "big_vision model with fixed sin-cos positions is not one vitlab reads",
                   j->path, j->prefix, j->prefix);
      return FALSE;
    }
  if (!emit_as (j, pos_name, -1, 3, pos, "pos_embed", 0, NULL) ||
      !emit_layernorm (j, "Transformer/encoder_norm", -1, "norm"))
    return FALSE;
  if (jx_find (j, "pre_logits/kernel"))
    {
      /* the 21k models' tanh representation layer: left out with the head it feeds */
      static const char *const skip[] = { "pre_logits/kernel", "pre_logits/bias",
                                          "head/kernel", "head/bias" };
      for (guint i = 0; i < G_N_ELEMENTS (skip); i++)
        if (jx_find (j, skip[i]))
          g_hash_table_add (j->used, (gpointer) jx_find (j, skip[i])->name);
      return TRUE;
    }
  const VlTensorInfo *hk = jx_find (j, "head/kernel");
  if (hk && hk->ndim == 2 && hk->shape[1] == 0)
    {
      g_hash_table_add (j->used, (gpointer) hk->name);   /* big_vision's num_classes 0 */
      if (jx_find (j, "head/bias"))
        g_hash_table_add (j->used, (gpointer) jx_find (j, "head/bias")->name);
      return TRUE;
    }
  if (hk == NULL)
    return TRUE;
  const int64_t K = hk->ndim == 2 ? hk->shape[1] : -1, k1[1] = { K };
  return emit_transposed (j, "head/kernel", -1, W, K, "head.weight") &&
         emit_as (j, "head/bias", -1, 1, k1, "head.bias", 1, k1);
}

/* big_vision's MAPHead (pool_type "map", SigLIP's) as timm's attn_pool, as timm's
 * _load_weights converts it: probe -> latent, the attention's query -> q, key and value -> kv,
 * out -> proj, LayerNorm_0 -> norm, MlpBlock_0 -> mlp. Nothing without one. */
static gboolean
emit_map_head (Jx *j)
{
  if (!jx_find (j, "MAPHead_0/probe"))
    return TRUE;
  const int64_t probe[3] = { 1, 1, j->width };
  return emit_as (j, "MAPHead_0/probe", -1, 3, probe, "attn_pool.latent", 0, NULL) &&
         emit_attention (j, "MAPHead_0/MultiHeadDotProductAttention_0/", -1, "attn_pool.", TRUE) &&
         emit_layernorm (j, "MAPHead_0/LayerNorm_0", -1, "attn_pool.norm") &&
         emit_mlp (j, "MAPHead_0/MlpBlock_0/", -1, "attn_pool.");
}

static gboolean
refuse_parts (Jx *j)
{
  if (jx_find (j, "conv_root/kernel"))
    {
      g_set_error (j->error, VL_ERROR, VL_ERROR_FORMAT, "%s: a ResNet + ViT hybrid "
                   "(%sconv_root); vitlab reads plain ViTs from JAX checkpoints", j->path,
                   j->prefix);
      return FALSE;
    }
  return TRUE;
}

/* The blocks: Transformer/encoderblock_N/, or one stacked Transformer/encoderblock/. */
static gboolean
emit_blocks (Jx *j, const char **layout)
{
  const VlTensorInfo *stacked = jx_find (j, "Transformer/encoderblock/LayerNorm_0/scale");
  int depth = 0;
  if (stacked)
    depth = stacked->ndim == 2 ? (int) MIN (stacked->shape[0], MAX_DEPTH + 1) : 0;
  else
    while (depth <= MAX_DEPTH)
      {
        g_autofree char *n = g_strdup_printf ("Transformer/encoderblock_%d/LayerNorm_0/scale",
                                              depth);
        if (!jx_find (j, n))
          break;
        depth++;
      }
  if (depth < 1 || depth > MAX_DEPTH)
    {
      g_set_error (j->error, VL_ERROR, VL_ERROR_FORMAT, "%s: %s blocks (%sTransformer/"
                   "encoderblock_N/ or a stacked Transformer/encoderblock/); a ViT has 1 to %d",
                   j->path, depth < 1 ? "no" : "too many", j->prefix, MAX_DEPTH);
      return FALSE;
    }
  g_autofree char *first = stacked ? g_strdup ("Transformer/encoderblock/")
                                   : g_strdup ("Transformer/encoderblock_0/");
  g_autofree char *augreg = g_strconcat (first, "MultiHeadDotProductAttention_1/query/kernel",
                                         NULL);
  const gboolean is_augreg = jx_find (j, augreg) != NULL;
  const Subs s = is_augreg ? (Subs) { 1, 3, 2 } : (Subs) { 0, 0, 1 };
  *layout = is_augreg ? "augreg" : "big_vision";
  for (int i = 0; i < depth; i++)
    if (!emit_block (j, i, stacked != NULL, &s))
      return FALSE;
  return TRUE;
}

/* A copy of every raw tensor named `under` (or all with NULL) that was not converted. */
static void
copy_unconverted (Jx *j, const char *under)
{
  for (guint i = 0; i < j->raw->tensors->len; i++)
    {
      const VlTensorInfo *t = &g_array_index (j->raw->tensors, VlTensorInfo, i);
      if (g_hash_table_contains (j->used, t->name) || (under && !g_str_has_prefix (t->name, under)))
        continue;
      VlTensorInfo copy = *t;
      guint8 *bytes = g_malloc (MAX (t->nbytes, 1));   /* an empty array's data is its end */
      if (t->nbytes)
        memcpy (bytes, t->data, t->nbytes);
      copy.data = bytes;
      g_ptr_array_add (j->out->owned, bytes);
      vl_tensor_table_add (j->out, t->name, &copy);
    }
}

gboolean
vl_jax_vit_translate (const char *path, VlTensorTable *raw, VlTensorTable *out,
                      GHashTable *metadata, GError **error)
{
  static const char *const prefixes[] = { "", "opt/target/", "params/", "params/img/" };
  Jx j = { .path = path, .raw = raw, .out = out, .error = error };
  j.used = g_hash_table_new (g_str_hash, g_str_equal);
  for (guint i = 0; i < G_N_ELEMENTS (prefixes) && j.prefix == NULL; i++)
    {
      j.prefix = prefixes[i];
      if (!jx_find (&j, "embedding/kernel"))
        j.prefix = NULL;
    }
  gboolean ok = TRUE;
  const char *layout = NULL;
  if (j.prefix == NULL)
    copy_unconverted (&j, NULL);     /* not a Flax ViT: the arrays under their own names */
  else
    ok = refuse_parts (&j) && emit_embedding (&j) && emit_blocks (&j, &layout) &&
         emit_map_head (&j);
  if (ok && j.prefix != NULL)
    {
      /* what lies under the prefix and was not converted stays, so the loader names it */
      copy_unconverted (&j, j.prefix);
      g_hash_table_replace (metadata, g_strdup ("num_heads"), g_strdup_printf ("%d", j.heads));
      g_hash_table_replace (metadata, g_strdup ("vitlab.converted_from"), g_strdup (layout));
      /* Flax's nn.gelu is the tanh approximation; timm reads the classifiers with the exact GELU,
       * but SigLIP's towers with the approximation their training used (as transformers'
       * gelu_pytorch_tanh and timm's later SigLIP definitions) */
      if (jx_find (&j, "MAPHead_0/probe"))
        g_hash_table_replace (metadata, g_strdup ("vitlab.act_layer"), g_strdup ("gelu_tanh"));
    }
  g_hash_table_unref (j.used);
  return ok;
}
