/* vl-families.c: reading the ViT checkpoints people have, onto the one internal model.
 *
 * The internal parameter table uses timm's names. Each family recognises itself from its tensor
 * names, reads the geometry off the tensor shapes (and its config file), builds the internal
 * table, and records for every internal tensor where it comes from (VlSource: name, rows,
 * transposition), so the same table loads the checkpoint and saves it back in its own naming.
 *
 *   timm          patch_embed.proj, cls_token, pos_embed, blocks.N.*, norm, head  (+ variants:
 *                 layer scale, register tokens, no class token with fc_norm, DeiT distillation,
 *                 no_embed_class, norm_pre)
 *   openclip      [visual.]conv1, class_embedding, positional_embedding, ln_pre,
 *                 transformer.resblocks.N.*, ln_post, proj (text tower ignored)
 *   hf-vit        [vit.]embeddings.*, encoder.layer.N.*, layernorm, classifier (pooler ignored)
 *   hf-clip       vision_model.{embeddings.*, pre_layrnorm, encoder.layers.N.*, post_layernorm},
 *                 visual_projection (text tower ignored)
 *   hf-siglip     vision_model.{embeddings.*, encoder.layers.N.*, post_layernorm, head.* (the
 *                 attention pool)}, classifier (text tower ignored)
 *   hf-deit       deit.embeddings.* (+ distillation_token), then as hf-vit; classifier or
 *                 cls_classifier + distillation_classifier
 *   hf-dinov2     [dinov2.]embeddings.*, encoder.layer.N.{norm1, attention.*, layer_scale1,
 *                 norm2, mlp.fc1/2, layer_scale2}, layernorm (mask_token, classifier ignored)
 *   dinov2        Meta's torch.hub files: timm's names with a mask_token (ignored)
 *   torchvision   conv_proj, class_token, encoder.pos_embedding,
 *                 encoder.layers.encoder_layer_N.*, encoder.ln, heads.head
 *   jax           an .npz of Google's vision_transformer (AugReg) or big_vision, handed out by
 *                 the reader under timm's names (vl-jax-vit.h) and loaded as timm's
 */
#include "vl-json.h"
#include "vl-model-private.h"
#include "vl-rng.h"
#include "vl-stem.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ config files */

typedef struct {
  JsonParser *parser;
  JsonObject *root;
  char       *path;
} Config;

static void
config_clear (Config *c)
{
  g_clear_object (&c->parser);
  g_clear_pointer (&c->path, g_free);
  c->root = NULL;
}

static gboolean
config_load (Config *c, const char *path, GError **error)
{
  g_autoptr(GError) local = NULL;
  c->path = g_strdup (path);
  c->parser = json_parser_new ();
  if (!json_parser_load_from_file (c->parser, path, &local))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: not valid JSON: %s", path,
                   local->message);
      return FALSE;
    }
  JsonNode *root = json_parser_get_root (c->parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: the top level is not a JSON object",
                   path);
      return FALSE;
    }
  c->root = json_node_get_object (root);
  return TRUE;
}

/* A number (or boolean) member: FALSE when absent or null; *ok = FALSE with an error when present
 * but of another type. */
static gboolean
config_number (const Config *c, JsonObject *o, const char *key, double *out, gboolean *ok,
               GError **error)
{
  if (o == NULL || !*ok || !json_object_has_member (o, key))
    return FALSE;
  JsonNode *n = json_object_get_member (o, key);
  if (JSON_NODE_HOLDS_NULL (n))
    return FALSE;
  if (!vl_json_number (n, out) || !isfinite (*out))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: \"%s\" is not a finite number",
                   c->path, key);
      *ok = FALSE;
      return FALSE;
    }
  return TRUE;
}

/* LayerNorm's epsilon as a file declares it (a config key, the weights' metadata): above 0 and
 * at most 1, also as the float kept. A negative one gave NaN outputs, and one beyond a float's
 * range (1e300) infinity, with which every LayerNorm put out its bias alone: a prediction from
 * nothing, without an error. */
static gboolean
set_eps (VlGeometry *g, const char *file, const char *key, double v, GError **error)
{
  if (!(v > 0 && v <= 1 && (float) v > 0))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: \"%s\" is %g; LayerNorm's epsilon "
                   "must be above 0 and at most 1 (1e-6 in timm's ViTs)", file, key, v);
      return FALSE;
    }
  g->eps = (float) v;
  return TRUE;
}

/* A count a config file declares (a head count): an integer in [1, limit], checked before it
 * is converted, so that no value of the file reaches a cast it does not fit. */
static gboolean
config_count_ok (const char *file, const char *key, double v, int limit, GError **error)
{
  if (!(v >= 1 && v <= limit && v == floor (v)))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                   "%s: \"%s\" is %g; expected a whole number from 1 to %d", file, key, v,
                   limit);
      return FALSE;
    }
  return TRUE;
}

/* An array of up to `max` numbers: the count, 0 when absent, -1 with an error otherwise. */
static int
config_numbers (const Config *c, JsonObject *o, const char *key, double *out, int max,
                GError **error)
{
  if (o == NULL || !json_object_has_member (o, key))
    return 0;
  JsonNode *n = json_object_get_member (o, key);
  if (JSON_NODE_HOLDS_NULL (n))
    return 0;
  if (!JSON_NODE_HOLDS_ARRAY (n))
    goto bad;
  JsonArray *a = json_node_get_array (n);
  int len = (int) json_array_get_length (a);
  if (len > max)
    goto bad;
  for (int i = 0; i < len; i++)
    if (!vl_json_number (json_array_get_element (a, i), &out[i]) || !isfinite (out[i]))
      goto bad;
  return len;
bad:
  g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
               "%s: \"%s\" is not an array of at most %d finite numbers", c->path, key, max);
  return -1;
}

static const char *
config_string (JsonObject *o, const char *key)
{
  if (o == NULL || !json_object_has_member (o, key))
    return NULL;
  JsonNode *n = json_object_get_member (o, key);
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING)
    return NULL;
  return json_node_get_string (n);
}

/* A config value that must agree with what the tensors say. */
static gboolean
config_agrees (const Config *c, JsonObject *o, const char *key, double from_tensors,
               const char *tensor, gboolean *ok, GError **error)
{
  double v;
  if (!config_number (c, o, key, &v, ok, error))
    return *ok;
  if (fabs (v - from_tensors) > 1e-6 * fabs (from_tensors))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                   "%s: \"%s\" is %g but tensor %s says %g", c->path, key, v, tensor,
                   from_tensors);
      *ok = FALSE;
    }
  return *ok;
}

/* ------------------------------------------------------------------ tensors */

typedef struct {
  VlSafetensors *st;
  const char    *file;
  const char    *prefix;   /* prepended to every name looked up ("visual.", "vit.", "") */
  GHashTable    *used;     /* names consumed */
  GHashTable    *made;     /* full name -> VlTensorInfo computed from the file's (DINOv2's
                            * register layout, see dinov2_registers), looked up first; or NULL */
} Source;

/* A tensor by its full name: one computed at load, else the file's. */
static const VlTensorInfo *
source_tensor (Source *s, const char *full)
{
  const VlTensorInfo *t = s->made ? g_hash_table_lookup (s->made, full) : NULL;
  return t ? t : vl_safetensors_lookup (s->st, full);
}

static const VlTensorInfo *
src_lookup (Source *s, const char *name)
{
  g_autofree char *full = g_strconcat (s->prefix, name, NULL);
  return source_tensor (s, full);
}

static gboolean
check_float (Source *s, const VlTensorInfo *t, GError **error)
{
  switch (t->dtype)
    {
    case VL_DTYPE_F32: case VL_DTYPE_F16: case VL_DTYPE_BF16: case VL_DTYPE_F64:
      return TRUE;
    default:
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                   "%s: tensor %s has dtype %s, expected a floating-point type (F32, F16, BF16)",
                   s->file, t->name, vl_dtype_name (t->dtype));
      return FALSE;
    }
}

/* A tensor that must exist with ndim in [lo, hi]. */
static const VlTensorInfo *
src_require (Source *s, const char *name, int lo, int hi, GError **error)
{
  const VlTensorInfo *t = src_lookup (s, name);
  if (t == NULL)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s: no tensor %s%s", s->file, s->prefix,
                   name);
      return NULL;
    }
  if (t->ndim < lo || t->ndim > hi)
    {
      g_autofree char *found = vl_shape_to_string (t->ndim, t->shape);
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                   "%s: tensor %s has shape %s, expected %d to %d dimensions", s->file, t->name,
                   found, lo, hi);
      return NULL;
    }
  return check_float (s, t, error) ? t : NULL;
}

/* Counts consecutive blocks "<before>N<after>" from N = 0. */
static int
count_indexed (Source *s, const char *before, const char *after)
{
  int n = 0;
  for (;; n++)
    {
      g_autofree char *name = g_strdup_printf ("%s%d%s", before, n, after);
      if (!src_lookup (s, name))
        return n;
    }
}

/* g->depth: the consecutive blocks "<before>N<after>" from N = 0; FALSE naming the first
 * block's tensor when there is none. */
static gboolean
read_depth (Source *s, const char *before, const char *after, VlGeometry *g, GError **error)
{
  g->depth = count_indexed (s, before, after);
  if (g->depth > 0)
    return TRUE;
  g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s: no tensor %s%s0%s", s->file, s->prefix,
               before, after);
  return FALSE;
}

static gboolean
is_square (int64_t n, int *side)
{
  if (n <= 0)
    return FALSE;
  int r = (int) llround (sqrt ((double) n));
  *side = r;
  return (int64_t) r * r == n;
}

/* Copies every source of every parameter into the parameter blocks, checking shapes. */
static gboolean
copy_tensors (VlModel *m, Source *s, GError **error)
{
  for (guint i = 0; i < m->params->len; i++)
    {
      VlParam *p = vl_param (m, (int) i);
      int64_t row = p->ndim >= 2 ? p->numel / p->shape[0] : 1;
      for (int k = 0; k < p->n_src; k++)
        {
          const VlSource *src = &p->src[k];
          const VlTensorInfo *t = source_tensor (s, src->name);
          if (t == NULL)
            {
              g_autofree char *want = vl_shape_to_string (src->ndim, src->shape);
              g_set_error (error, VL_ERROR, VL_ERROR_MISSING,
                           "%s: no tensor %s (expected shape %s)", s->file, src->name, want);
              return FALSE;
            }
          if (!check_float (s, t, error))
            return FALSE;
          gboolean same = t->ndim == src->ndim;
          for (int d = 0; same && d < src->ndim; d++)
            same = t->shape[d] == src->shape[d];
          if (!same)
            {
              g_autofree char *found = vl_shape_to_string (t->ndim, t->shape);
              g_autofree char *want = vl_shape_to_string (src->ndim, src->shape);
              g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                           "%s: tensor %s has shape %s, expected %s", s->file, t->name, found,
                           want);
              return FALSE;
            }
          float *dst = p->data + src->row0 * row;
          if (src->sliced)
            {
              /* the file tensor's elements [slice0, slice0 + the parameter's numel) */
              g_autofree float *tmp = g_new (float, t->numel);
              vl_tensor_to_f32 (t, tmp);
              g_assert (src->slice0 + p->numel <= t->numel);
              memcpy (p->data, tmp + src->slice0, sizeof (float) * p->numel);
            }
          else if (src->transpose)
            {
              /* source (C, R) -> internal (R, C) */
              g_autofree float *tmp = g_new (float, t->numel);
              vl_tensor_to_f32 (t, tmp);
              int64_t R = p->shape[0], C = p->shape[1];
              for (int64_t r = 0; r < R; r++)
                for (int64_t c = 0; c < C; c++)
                  p->data[r * C + c] = tmp[c * R + r];
            }
          else
            vl_tensor_to_f32 (t, dst);
          /* a NaN or an infinity in a weight gives NaN everywhere, with exit 0 */
          const int64_t n = src->transpose || src->sliced ? p->numel : t->numel;
          const float *first = src->transpose || src->sliced ? p->data : dst;
          for (int64_t e = 0; e < n; e++)
            if (!isfinite (first[e]))
              {
                g_set_error (error, VL_ERROR, VL_ERROR_NUMERIC,
                             "%s: tensor %s has a non-finite value (%g) at element %"
                             G_GINT64_FORMAT,
                             s->file, t->name, (double) first[e], e);
                return FALSE;
              }
          g_hash_table_add (s->used, (gpointer) t->name);
        }
    }
  return TRUE;
}

/* ------------------------------------------------------------------ the internal table */

static const char *block_names[] = {
  "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias",
  "attn.proj.weight", "attn.proj.bias", "norm2.weight", "norm2.bias",
  "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias",
  "ls1.gamma", "ls2.gamma",
};

/* Builds the backbone's parameters (timm names, default sources = those names) from m->geo.
 * Groups are assigned afterwards by the family. */
static void
build_internal (VlModel *m, gboolean patch_bias)
{
  VlGeometry *g = &m->geo;
  const int64_t W = g->width;
  int64_t s[4];
  g->n_prefix = g->class_token + g->dist_token + g->reg_tokens;
  g->n_tokens = g->n_prefix + g->grid * g->grid;
  g->img_size = g->grid * g->patch;
  g->head_dim = g->width / g->heads;

  if (m->stem)
    vl_stem_add_params (m->stem, m);   /* a CNN stem in place of the patch embedding */
  else
    m->ix.patch_w = vl_model_add_param (m, "patch_embed.proj.weight", 0, C_STEM, 4,
                                        (s[0] = W, s[1] = g->in_chans, s[2] = s[3] = g->patch, s));
  if (patch_bias && !m->stem)
    m->ix.patch_b = vl_model_add_param (m, "patch_embed.proj.bias", 0, C_STEM, 1, (s[0] = W, s));
  if (g->class_token)
    m->ix.cls = vl_model_add_param (m, "cls_token", 0, C_STEM, 3, (s[0] = 1, s[1] = 1, s[2] = W, s));
  if (g->dist_token)
    m->ix.dist = vl_model_add_param (m, "dist_token", 0, C_STEM, 3, (s[0] = 1, s[1] = 1, s[2] = W, s));
  if (g->reg_tokens)
    m->ix.reg = vl_model_add_param (m, "reg_token", 0, C_STEM, 3,
                                    (s[0] = 1, s[1] = g->reg_tokens, s[2] = W, s));
  int64_t n_pos = (g->no_embed_class ? 0 : g->n_prefix) + (int64_t) g->grid * g->grid;
  m->ix.pos = vl_model_add_param (m, "pos_embed", 0, C_STEM, 3, (s[0] = 1, s[1] = n_pos, s[2] = W, s));
  if (g->pre_norm)
    {
      m->ix.pre_w = vl_model_add_param (m, "norm_pre.weight", 0, C_STEM, 1, (s[0] = W, s));
      m->ix.pre_b = vl_model_add_param (m, "norm_pre.bias", 0, C_STEM, 1, s);
    }
  g_free (m->ix.block);
  m->ix.block = g_new (int, g->depth);
  for (int l = 0; l < g->depth; l++)
    {
      int64_t shapes[14][2] = {
        { W, 0 }, { W, 0 }, { 3 * W, W }, { 3 * W, 0 }, { W, W }, { W, 0 }, { W, 0 }, { W, 0 },
        { g->mlp, W }, { g->mlp, 0 }, { W, g->mlp }, { W, 0 }, { W, 0 }, { W, 0 },
      };
      int n = g->layer_scale ? 14 : 12;
      for (int j = 0; j < n; j++)
        {
          char name[96];
          g_snprintf (name, sizeof name, "blocks.%d.%s", l, block_names[j]);
          int idx = vl_model_add_param (m, name, 1 + l, vl_comp_block (l), shapes[j][1] ? 2 : 1,
                                        shapes[j]);
          if (j == 0)
            m->ix.block[l] = idx;
        }
    }
  const char *norm = g->fc_norm ? "fc_norm" : "norm";
  g_autofree char *nw = g_strconcat (norm, ".weight", NULL);
  g_autofree char *nb = g_strconcat (norm, ".bias", NULL);
  m->ix.norm_w = vl_model_add_param (m, nw, g->depth + 1, C_NORM (m), 1, (s[0] = W, s));
  m->ix.norm_b = vl_model_add_param (m, nb, g->depth + 1, C_NORM (m), 1, s);
  if (g->attn_pool)
    {
      /* timm's AttentionPoolLatent: computed with the final norm, a group of its own after it */
      static const char *ap_names[AP_N] = {
        "latent", "q.weight", "q.bias", "kv.weight", "kv.bias", "proj.weight", "proj.bias",
        "norm.weight", "norm.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight",
        "mlp.fc2.bias",
      };
      const int64_t shapes[AP_N][3] = {
        { 1, 1, W }, { W, W }, { W }, { 2 * W, W }, { 2 * W }, { W, W }, { W }, { W }, { W },
        { g->mlp, W }, { g->mlp }, { W, g->mlp }, { W },
      };
      for (int j = 0; j < AP_N; j++)
        {
          char name[64];
          g_snprintf (name, sizeof name, "attn_pool.%s", ap_names[j]);
          const int ndim = j == AP_LATENT ? 3 : shapes[j][1] ? 2 : 1;
          const int idx = vl_model_add_param (m, name, g->depth + 2, C_NORM (m), ndim, shapes[j]);
          if (j == 0)
            m->ix.ap = idx;
        }
    }
  if (g->embed_dim > 0)
    m->ix.proj = vl_model_add_param (m, "proj.weight", g->depth + 2 + g->attn_pool, C_PROJ (m), 2,
                                     (s[0] = g->embed_dim, s[1] = W, s));
}

/* timm's grouping: stem, each block, the final norm (then the head). */
static void
groups_timm (VlModel *m)
{
  vl_model_add_group (m, "stem");
  for (int l = 0; l < m->geo.depth; l++)
    {
      char name[32];
      g_snprintf (name, sizeof name, "blocks.%d", l);
      vl_model_add_group (m, name);
    }
  vl_model_add_group (m, m->geo.fc_norm ? "fc_norm" : "norm");
  if (m->geo.attn_pool)
    vl_model_add_group (m, "attn_pool");
  if (m->geo.embed_dim > 0)
    vl_model_add_group (m, "proj");
}

/* OpenCLIP's VisionTransformer.lock: [conv1, class_embedding, positional_embedding, ln_pre],
 * blocks 0 … L-2, [last block, ln_post], [proj] (then the user's head). */
static void
groups_openclip (VlModel *m)
{
  const int L = m->geo.depth;
  vl_model_add_group (m, "stem");
  for (int l = 0; l < L - 1; l++)
    {
      char name[32];
      g_snprintf (name, sizeof name, "blocks.%d", l);
      vl_model_add_group (m, name);
    }
  char last[48];
  g_snprintf (last, sizeof last, "blocks.%d+ln_post", L - 1);
  vl_model_add_group (m, last);
  if (m->geo.embed_dim > 0)
    vl_model_add_group (m, "proj");
  for (guint i = 0; i < m->params->len; i++)
    {
      VlParam *p = vl_param (m, (int) i);
      if (p->comp == C_NORM (m))
        p->group = L;               /* with the last block */
      else if (p->comp == C_PROJ (m))
        p->group = L + 1;
    }
}

void
vl_families_build (VlModel *m, gboolean patch_bias, gboolean openclip_groups)
{
  build_internal (m, patch_bias);
  if (openclip_groups)
    groups_openclip (m);
  else
    groups_timm (m);
  vl_model_finish_backbone (m);
}

static void
set_source (VlModel *m, int index, const char *name, gboolean squeeze_to, int ndim,
            const int64_t *shape)
{
  VlParam *p = vl_param (m, index);
  vl_model_add_source (m, index, name, squeeze_to ? ndim : p->ndim, squeeze_to ? shape : p->shape,
                       0, FALSE);
}

/* ------------------------------------------------------------------ families */

typedef struct {
  const char *name;
  const char *config_file;   /* preferred config file name */
} Family;

static void
default_preprocess (VlGeometry *g, double crop_pct, const char *interp, const float *mean,
                    const float *std)
{
  g->input_size = g->img_size;
  g->crop_pct = crop_pct;
  g_free (g->interpolation);
  g->interpolation = g_strdup (interp);
  for (int i = 0; i < 4; i++)
    {
      g->mean[i] = mean[MIN (i, 2)];
      g->std[i] = std[MIN (i, 2)];
    }
}

/* An input size vitlab can run: a multiple of the patch, at most VL_MAX_INPUT_SIZE pixels and
 * VL_MAX_PATCHES patches. */
static gboolean
input_size_supported (double side, int patch)
{
  const double grid = side / patch;
  return side <= VL_MAX_INPUT_SIZE && grid >= 1 && grid == floor (grid) &&
         grid * grid <= VL_MAX_PATCHES;
}

static const float imagenet_mean[3] = { 0.485f, 0.456f, 0.406f };
static const float imagenet_std[3] = { 0.229f, 0.224f, 0.225f };
static const float half[3] = { 0.5f, 0.5f, 0.5f };
static const float openai_mean[3] = { 0.48145466f, 0.4578275f, 0.40821073f };
static const float openai_std[3] = { 0.26862954f, 0.26130258f, 0.27577711f };

static gboolean
read_mean_std (const Config *c, JsonObject *o, const char *mean_key, const char *std_key,
               VlGeometry *g, GError **error)
{
  const char *keys[2] = { mean_key, std_key };
  float *dst[2] = { g->mean, g->std };
  double nums[4];
  for (int k = 0; k < 2; k++)
    {
      int n = config_numbers (c, o, keys[k], nums, 4, error);
      if (n < 0)
        return FALSE;
      if (n == 0)
        continue;
      if (n != g->in_chans && n != 1)
        {
          g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                       "%s: %s has %d values for %d input channels", c->path, keys[k], n,
                       g->in_chans);
          return FALSE;
        }
      for (int i = 0; i < 4; i++)
        dst[k][i] = (float) nums[n == 1 ? 0 : MIN (i, n - 1)];
    }
  for (int i = 0; i < g->in_chans; i++)
    if (!isfinite (g->mean[i]) || !isfinite (g->std[i]))
      {
        /* finite as doubles (config_numbers checks), not as the floats kept */
        g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: %s or %s is beyond a float's range "
                     "(±3.4e38)", c->path, mean_key, std_key);
        return FALSE;
      }
  for (int i = 0; i < g->in_chans; i++)
    if (!(g->std[i] > 0))
      {
        g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: %s must be positive", c->path,
                     std_key);
        return FALSE;
      }
  return TRUE;
}

/* transformers' BitImageProcessor (DINOv2's): an image resized to size.shortest_edge and
 * center-cropped to crop_size, the position embedding resampled to that grid by the model.
 * vitlab runs at crop_size (resampling as timm does) with crop_pct = crop / shortest_edge. */
static gboolean
hf_crop_size (const Config *pc, VlGeometry *g, GError **error)
{
  JsonObject *crop = vl_json_object_member (pc->root, "crop_size");
  JsonObject *size = vl_json_object_member (pc->root, "size");
  gboolean ok = TRUE;
  double h = 0, w = 0, edge = 0;
  if (!config_number (pc, crop, "height", &h, &ok, error) ||
      !config_number (pc, crop, "width", &w, &ok, error))
    return ok;
  if (h != w || !input_size_supported (h, g->patch))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: crop_size %gx%g is not supported: a "
                   "square whose side is a multiple of the patch size %d, at most %d pixels and "
                   "%d patches", pc->path, h, w, g->patch, VL_MAX_INPUT_SIZE, VL_MAX_PATCHES);
      return FALSE;
    }
  g->input_size = (int) h;
  if (config_number (pc, size, "shortest_edge", &edge, &ok, error))
    {
      const double pct = h / edge;
      if (!(pct >= VL_MIN_CROP_PCT && pct <= VL_MAX_CROP_PCT))
        {
          g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: crop_size %g of size.shortest_edge "
                       "%g is a crop_pct of %g; expected %g to %g", pc->path, h, edge, pct,
                       VL_MIN_CROP_PCT, VL_MAX_CROP_PCT);
          return FALSE;
        }
      g->crop_pct = pct;
    }
  return ok;
}

/* Heads: from the config (0: it has none), the file's own metadata (files vitlab wrote), or
 * width / 64. */
/* The heads of the timm architectures whose heads are not 64 wide (timm 1.0's
 * vision_transformer.py: the huge, giant, gigantic, SigLIP so400m and giantopt models, 16 heads
 * of 80, 88, 104, 72 and 96; vit_base_patch16_gap_224, 16 of 48), with or without a pretrained
 * tag: a config.json from the hub names the architecture, not model_args; 0 for another. */
static int
timm_arch_heads (const char *arch)
{
  static const char *const sixteen[] = {
    "vit_huge_", "vit_giant_", "vit_gigantic_", "vit_giantopt_", "vit_so400m_",
    "vit_base_patch16_gap_224",
  };
  for (guint i = 0; arch && i < G_N_ELEMENTS (sixteen); i++)
    if (g_str_has_prefix (arch, sixteen[i]))
      return 16;
  return 0;
}

static gboolean
resolve_heads (VlModel *m, Source *s, const Config *c, double from_config, GError **error)
{
  VlGeometry *g = &m->geo;
  GHashTable *meta = vl_safetensors_metadata (s->st);
  const char *meta_heads = meta ? g_hash_table_lookup (meta, "num_heads") : NULL;
  if (from_config != 0)
    {
      /* a head count above the width cannot divide it; checked before the cast */
      if (!config_count_ok (c->path ? c->path : s->file, "num_heads", from_config, g->width,
                            error))
        return FALSE;
      g->heads = (int) from_config;
    }
  else if (meta_heads)
    {
      char *end = NULL;
      gint64 v = g_ascii_strtoll (meta_heads, &end, 10);
      if (end == meta_heads || *end != '\0' || v < 1 || v > g->width)
        {
          g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                       "%s: metadata num_heads \"%s\" is not a whole number from 1 to the "
                       "width %d", s->file, meta_heads, g->width);
          return FALSE;
        }
      g->heads = (int) v;
    }
  else if (timm_arch_heads (g->architecture) > 0)
    g->heads = timm_arch_heads (g->architecture);
  else if (g->width % 64 == 0)
    g->heads = g->width / 64;    /* timm's and most ViTs' 64-wide heads */
  else
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISSING,
                   "%s: width %d is not a multiple of 64, so the number of heads cannot be "
                   "inferred; add model_args.num_heads to config.json", s->file, g->width);
      return FALSE;
    }
  if (g->heads <= 0 || g->width % g->heads != 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                   "%s: %d heads do not divide the width %d", c->path ? c->path : s->file,
                   g->heads, g->width);
      return FALSE;
    }
  return TRUE;
}

static gboolean
check_patch (Source *s, const VlTensorInfo *pw, VlGeometry *g, GError **error)
{
  if (pw->ndim != 4 || pw->shape[2] != pw->shape[3] || pw->shape[2] <= 0 || pw->shape[0] <= 0 ||
      pw->shape[1] <= 0 || pw->shape[0] > 65536 || pw->shape[1] > 16 || pw->shape[2] > 1024)
    {
      g_autofree char *shape = vl_shape_to_string (pw->ndim, pw->shape);
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                   "%s: tensor %s has shape %s, expected [width,channels,p,p] with a square patch",
                   s->file, pw->name, shape);
      return FALSE;
    }
  g->width = (int) pw->shape[0];
  g->in_chans = (int) pw->shape[1];
  g->patch = (int) pw->shape[2];
  return TRUE;
}

static gboolean
check_pos (Source *s, const VlTensorInfo *pos, int lead, int n_prefix_in_pos, VlGeometry *g,
           GError **error)
{
  /* lead = 1 for [1,T,W], 0 for [T,W] */
  int64_t T = pos->shape[lead];
  int grid;
  if ((lead && pos->shape[0] != 1) || pos->shape[lead + 1] != g->width ||
      !is_square (T - n_prefix_in_pos, &grid))
    {
      g_autofree char *shape = vl_shape_to_string (pos->ndim, pos->shape);
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                   "%s: tensor %s has shape %s, expected %s%d+G*G,%d] (%d prefix entries and a "
                   "square grid)", s->file, pos->name, shape, lead ? "[1," : "[",
                   n_prefix_in_pos, g->width, n_prefix_in_pos);
      return FALSE;
    }
  g->grid = grid;
  return TRUE;
}

static gboolean
check_mlp (Source *s, const char *fc1_name, VlGeometry *g, GError **error)
{
  const VlTensorInfo *fc1 = src_require (s, fc1_name, 2, 2, error);
  if (!fc1)
    return FALSE;
  g->mlp = (int) fc1->shape[0];
  return TRUE;
}

/* --- timm --- */

/* A CNN stem in place of the patch embedding (vl-stem.h): vitlab's conv / mbconv stems
 * (patch_embed.stem.*, and config.json's vitlab.stem naming the kind) or timm's hybrid ResNetV2
 * (patch_embed.backbone.*). The input channels and the patch size (the stem's total stride) then
 * come from the stem, not from patch_embed.proj.weight. */
static gboolean
load_stem (VlModel *m, Source *s, Config *c, GError **error)
{
  gboolean found;
  int chans, patch;
  m->stem = vl_stem_from_tensors (s->st, s->file, m->geo.width, &chans, &patch, &found, error);
  const char *declared = config_string (vl_json_object_member (vl_json_object_member (c->root,
                                                                                      "vitlab"),
                                                               "stem"), "kind");
  if (found && m->stem == NULL)
    return FALSE;
  if (declared && g_strcmp0 (declared, vl_stem_kind_name (vl_model_stem_kind (m))) != 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH, "%s: vitlab.stem.kind is \"%s\" but the "
                   "tensors hold a %s stem", c->path, declared,
                   vl_stem_kind_name (vl_model_stem_kind (m)));
      return FALSE;
    }
  if (found)
    {
      m->geo.in_chans = chans;
      m->geo.patch = patch;
    }
  return TRUE;
}

/* timm: the prefix tokens, the norms and projection present, and pos_embed's layout. */
static gboolean
timm_tokens (VlModel *m, Source *s, Config *c, JsonObject *args, GError **error)
{
  VlGeometry *g = &m->geo;
  gboolean ok = TRUE;
  double v;
  g->class_token = src_lookup (s, "cls_token") != NULL;
  g->dist_token = src_lookup (s, "dist_token") != NULL;
  const VlTensorInfo *reg = src_lookup (s, "reg_token");
  g->reg_tokens = reg && reg->ndim == 3 ? (int) reg->shape[1] : 0;
  if (reg && (reg->ndim != 3 || reg->shape[0] != 1 || reg->shape[2] != g->width))
    {
      g_autofree char *shape = vl_shape_to_string (reg->ndim, reg->shape);
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH, "%s: tensor reg_token has shape %s, "
                   "expected [1,R,%d]", s->file, shape, g->width);
      return FALSE;
    }
  g->n_prefix = g->class_token + g->dist_token + g->reg_tokens;
  g->pre_norm = src_lookup (s, "norm_pre.weight") != NULL;
  g->layer_scale = src_lookup (s, "blocks.0.ls1.gamma") != NULL;
  /* OpenCLIP's projection, as vitlab's lossless checkpoints keep it */
  const VlTensorInfo *proj = src_lookup (s, "proj.weight");
  if (proj)
    {
      if (proj->ndim != 2 || proj->shape[1] != g->width || proj->shape[0] <= 0)
        {
          g_autofree char *shape = vl_shape_to_string (proj->ndim, proj->shape);
          g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                       "%s: tensor proj.weight has shape %s, expected [embed_dim,%d]", s->file,
                       shape, g->width);
          return FALSE;
        }
      g->embed_dim = (int) proj->shape[0];
    }
  g->fc_norm = src_lookup (s, "fc_norm.weight") != NULL && src_lookup (s, "norm.weight") == NULL;
  g->attn_pool = src_lookup (s, "attn_pool.latent") != NULL;
  if (g->attn_pool && (g->fc_norm || g->dist_token || g->embed_dim > 0 ||
                       src_lookup (s, "attn_pool.pos_embed") || src_lookup (s, "attn_pool.q_norm.weight")))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: this attention pool (attn_pool.*) comes "
                   "with %s, which vitlab does not compute: it reads timm's AttentionPoolLatent "
                   "after the final norm, as SigLIP's", s->file,
                   g->fc_norm ? "an fc_norm" : g->dist_token ? "a distillation token"
                   : g->embed_dim > 0 ? "a projection" : src_lookup (s, "attn_pool.pos_embed")
                   ? "a position embedding of its own" : "query/key norms");
      return FALSE;
    }

  const VlTensorInfo *pos = src_require (s, "pos_embed", 3, 3, error);
  if (!pos)
    return FALSE;
  /* pos_embed covers the prefix tokens unless no_embed_class: the config says, else the shape */
  int side;
  if (config_number (c, args, "no_embed_class", &v, &ok, error))
    g->no_embed_class = v != 0;
  else if (!ok)
    return FALSE;
  else
    g->no_embed_class = g->n_prefix > 0 && !is_square (pos->shape[1] - g->n_prefix, &side) &&
                        is_square (pos->shape[1], &side);
  if (!check_pos (s, pos, 1, g->no_embed_class ? 0 : g->n_prefix, g, error))
    return FALSE;

  return TRUE;
}

/* OpenCLIP's model_cfg.vision_cfg (open_clip_config.json beside a TimmModel's trunk), or
 * NULL. */
static JsonObject *
openclip_vision_cfg (Config *c)
{
  return vl_json_object_member (vl_json_object_member (c->root, "model_cfg"), "vision_cfg");
}

/* The timm architectures whose definition sets act_layer='gelu_tanh' (timm 1.0's
 * vision_transformer.py: the later SigLIP and SigLIP 2 towers; the first SigLIP ports use the
 * exact GELU), with or without a pretrained tag after a dot. */
static gboolean
timm_arch_gelu_tanh (const char *arch)
{
  static const char *const tanh_archs[] = {
    "vit_base_patch32_siglip_256", "vit_large_patch16_siglip_512",
    "vit_so400m_patch16_siglip_256", "vit_so400m_patch16_siglip_384",
    "vit_so400m_patch16_siglip_512", "vit_giantopt_patch16_siglip_256",
    "vit_giantopt_patch16_siglip_384", "vit_base_patch32_siglip_gap_256",
    "vit_large_patch16_siglip_gap_512", "vit_so400m_patch16_siglip_gap_256",
    "vit_so400m_patch16_siglip_gap_384", "vit_so400m_patch16_siglip_gap_512",
    "vit_giantopt_patch16_siglip_gap_256", "vit_giantopt_patch16_siglip_gap_384",
  };
  if (arch == NULL)
    return FALSE;
  const size_t len = strcspn (arch, ".");
  for (guint i = 0; i < G_N_ELEMENTS (tanh_archs); i++)
    if (strlen (tanh_archs[i]) == len && strncmp (arch, tanh_archs[i], len) == 0)
      return TRUE;
  return FALSE;
}

/* timm: the blocks, heads, activation and eps, and what the config says against the tensors. */
static gboolean
timm_blocks (VlModel *m, Source *s, Config *c, JsonObject *args, GError **error)
{
  VlGeometry *g = &m->geo;
  gboolean ok = TRUE;
  double v;
  if (!read_depth (s, "blocks.", ".norm1.weight", g, error))
    return FALSE;
  if (!check_mlp (s, "blocks.0.mlp.fc1.weight", g, error))
    return FALSE;

  double heads = 0;
  if (!config_number (c, args, "num_heads", &heads, &ok, error) && !ok)
    return FALSE;
  if (!resolve_heads (m, s, c, heads, error))
    return FALSE;
  const char *act = config_string (args, "act_layer");
  if (act && strcmp (act, "quick_gelu") != 0 && strcmp (act, "gelu") != 0 &&
      strcmp (act, "gelu_tanh") != 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                   "%s: model_args.act_layer \"%s\" is not supported (gelu, gelu_tanh, "
                   "quick_gelu)", c->path, act);
      return FALSE;
    }
  g->quick_gelu = act && strcmp (act, "quick_gelu") == 0;
  /* timm's SigLIP architectures that set act_layer='gelu_tanh' themselves: a config.json from
   * the hub (or OpenCLIP's timm_model_name) names the architecture without model_args */
  GHashTable *meta = vl_safetensors_metadata (s->st);
  const char *meta_act = meta ? g_hash_table_lookup (meta, "vitlab.act_layer") : NULL;
  g->gelu_tanh = act ? strcmp (act, "gelu_tanh") == 0
                     : g_strcmp0 (meta_act, "gelu_tanh") == 0 ||
                       timm_arch_gelu_tanh (g->architecture);

  g->eps = 1e-6f;
  const char *meta_eps = meta ? g_hash_table_lookup (meta, "layer_norm_eps") : NULL;
  const char *eps_key = NULL;
  if (config_number (c, c->root, "layer_norm_eps", &v, &ok, error) ||
      config_number (c, args, "layer_norm_eps", &v, &ok, error))
    eps_key = "layer_norm_eps";
  else if (config_number (c, args, "norm_eps", &v, &ok, error))
    eps_key = "norm_eps";
  if (!ok)
    return FALSE;
  if (eps_key != NULL ? !set_eps (g, c->path, eps_key, v, error)
      : meta_eps != NULL && !set_eps (g, s->file, "layer_norm_eps",
                                      g_ascii_strtod (meta_eps, NULL), error))
    return FALSE;

  /* the config must agree with the tensors */
  if (!config_agrees (c, args, "embed_dim", g->width, "patch_embed.proj.weight", &ok, error) ||
      (!m->stem &&   /* with a stem, timm's patch_size is HybridEmbed's, not the stride */
       !config_agrees (c, args, "patch_size", g->patch, "patch_embed.proj.weight", &ok, error)) ||
      !config_agrees (c, args, "in_chans", g->in_chans, "patch_embed.proj.weight", &ok, error) ||
      !config_agrees (c, args, "depth", g->depth, "blocks.N.*", &ok, error) ||
      !config_agrees (c, args, "img_size", g->grid * g->patch, "pos_embed", &ok, error) ||
      !config_agrees (c, args, "mlp_ratio", (double) g->mlp / g->width, "blocks.0.mlp.fc1.weight",
                      &ok, error) ||
      !config_agrees (c, args, "reg_tokens", g->reg_tokens, "reg_token", &ok, error))
    return FALSE;
  if (config_number (c, args, "class_token", &v, &ok, error) && (v != 0) != g->class_token)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                   "%s: \"class_token\" is %s but the checkpoint %s a cls_token", c->path,
                   v != 0 ? "true" : "false", g->class_token ? "has" : "has no");
      return FALSE;
    }
  if (!ok)
    return FALSE;

  return TRUE;
}

/* timm: vitlab's MLP head, a linear head (DeiT: two) or none. */
static gboolean
timm_head (VlModel *m, Source *s, Config *c, GError **error)
{
  VlGeometry *g = &m->geo;
  gboolean ok = TRUE;
  const int head_in = g->embed_dim > 0 ? g->embed_dim : g->width;
  /* vitlab's MLP head (Linear -> GELU -> Linear), as vl_model_export writes it */
  const VlTensorInfo *f1 = src_lookup (s, "head.fc1.weight");
  const VlTensorInfo *f2 = src_lookup (s, "head.fc2.weight");
  if (f1 || f2)
    {
      if (!f1 || !f2 || f1->ndim != 2 || f2->ndim != 2 || f1->shape[1] != head_in ||
          f2->shape[1] != f1->shape[0] || f2->shape[0] <= 0 || g->dist_token)
        {
          g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                       "%s: tensors head.fc1.weight / head.fc2.weight do not form an MLP head "
                       "[hidden,%d] / [classes,hidden]", s->file, head_in);
          return FALSE;
        }
      if (!config_agrees (c, c->root, "num_classes", f2->shape[0], "head.fc2.weight", &ok, error))
        return FALSE;
      vl_model_build_head (m, VL_HEAD_MLP, (int) f2->shape[0], (int) f1->shape[0], FALSE);
    }
  const VlTensorInfo *hw = f1 ? NULL : src_lookup (s, "head.weight");
  int K = 0;
  if (f1)
    ;
  else if (hw)
    {
      if (hw->ndim != 2 || hw->shape[1] != head_in || hw->shape[0] <= 0)
        {
          g_autofree char *found = vl_shape_to_string (hw->ndim, hw->shape);
          g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                       "%s: tensor head.weight has shape %s, expected [classes,%d]", s->file,
                       found, head_in);
          return FALSE;
        }
      K = (int) hw->shape[0];
    }
  if (g->dist_token && (!hw || !src_lookup (s, "head_dist.weight")))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISSING,
                   "%s: a distilled model (dist_token) needs head.weight and head_dist.weight",
                   s->file);
      return FALSE;
    }
  if (!f1)
    {
      if (!config_agrees (c, c->root, "num_classes", K, "head.weight", &ok, error))
        return FALSE;
      vl_model_build_head (m, VL_HEAD_LINEAR, K, 0, g->dist_token);
    }

  return TRUE;
}

/* timm: the pooling and pretrained_cfg's preprocessing. */
static gboolean
timm_preprocess (VlModel *m, Config *c, JsonObject *args, GError **error)
{
  VlGeometry *g = &m->geo;
  gboolean ok = TRUE;
  double v;
  const char *gp = config_string (c->root, "global_pool");
  if (!gp)
    gp = config_string (args, "global_pool");
  m->pool = g->attn_pool ? VL_POOL_MAP : g->class_token ? VL_POOL_TOKEN : VL_POOL_AVG;
  if (gp && *gp && !vl_pool_from_string (gp, &m->pool))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                   "%s: global_pool \"%s\" is not one of token, avg, max, map", c->path, gp);
      return FALSE;
    }
  if (m->pool == VL_POOL_MAP && !g->attn_pool)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s: global_pool is \"map\" but the "
                   "checkpoint has no attention pool (attn_pool.latent)", c->path);
      return FALSE;
    }
  vl_model_set_pool (m, m->pool);

  /* OpenCLIP's TimmModel: its preprocess_cfg (a resize of the whole image, "squash", or of
   * the shorter side: no crop either way at the native size), CLIP's mean and std by default */
  JsonObject *vc = openclip_vision_cfg (c);
  if (vc != NULL)
    {
      default_preprocess (g, 1.0, "bicubic", openai_mean, openai_std);
      JsonObject *pp = vl_json_object_member (c->root, "preprocess_cfg");
      if (!config_agrees (c, vc, "image_size", g->img_size, "pos_embed", &ok, error) ||
          !read_mean_std (c, pp, "mean", "std", g, error))
        return FALSE;
      const char *interp = config_string (pp, "interpolation");
      if (interp)
        {
          g_free (g->interpolation);
          g->interpolation = g_strdup (interp);
        }
      g->squash = g_strcmp0 (config_string (pp, "resize_mode"), "squash") == 0;
      return TRUE;
    }
  /* pretrained_cfg: preprocessing */
  default_preprocess (g, 0.9, "bicubic", half, half);
  JsonObject *pc = vl_json_object_member (c->root, "pretrained_cfg");
  double nums[3];
  int n = config_numbers (c, pc, "input_size", nums, 3, error);
  if (n < 0)
    return FALSE;
  if (n == 3)
    {
      if (nums[0] != g->in_chans || nums[1] != nums[2] || nums[1] < g->patch)
        {
          g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                       "%s: pretrained_cfg.input_size [%g,%g,%g] disagrees with tensor "
                       "patch_embed.proj.weight (%d channels) or is not square",
                       c->path, nums[0], nums[1], nums[2], g->in_chans);
          return FALSE;
        }
      /* one number of a downloaded file decides every buffer of the forward */
      if (!input_size_supported (nums[1], g->patch))
        {
          g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                       "%s: pretrained_cfg.input_size [%g,%g,%g] is not supported: the size must "
                       "be a multiple of the patch size %d, at most %d pixels and %d patches",
                       c->path, nums[0], nums[1], nums[2], g->patch, VL_MAX_INPUT_SIZE,
                       VL_MAX_PATCHES);
          return FALSE;
        }
      g->input_size = (int) nums[1];
    }
  if (config_number (c, pc, "crop_pct", &v, &ok, error))
    {
      if (!(v >= VL_MIN_CROP_PCT && v <= VL_MAX_CROP_PCT))
        {
          g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                       "%s: pretrained_cfg.crop_pct is %g; expected a number from %g to %g",
                       c->path, v, VL_MIN_CROP_PCT, VL_MAX_CROP_PCT);
          return FALSE;
        }
      g->crop_pct = v;
    }
  if (!ok || !read_mean_std (c, pc, "mean", "std", g, error))
    return FALSE;
  const char *interp = config_string (pc, "interpolation");
  if (interp)
    {
      g_free (g->interpolation);
      g->interpolation = g_strdup (interp);
    }
  /* timm's crop_mode "squash" (SigLIP's); "center", the default, otherwise ("border", which
   * pads instead of cropping, is taken as center) */
  g->squash = g_strcmp0 (config_string (pc, "crop_mode"), "squash") == 0;
  return TRUE;
}

static gboolean
load_timm (VlModel *m, Source *s, Config *c, GError **error)
{
  VlGeometry *g = &m->geo;
  JsonObject *args = vl_json_object_member (c->root, "model_args");
  const VlTensorInfo *pw = src_require (s, "patch_embed.proj.weight", 4, 4, error);
  if (!pw)
    return FALSE;
  g->width = pw->shape[0] > 0 && pw->shape[0] <= 65536 ? (int) pw->shape[0] : 0;
  if (!load_stem (m, s, c, error) || (!m->stem && !check_patch (s, pw, g, error)) ||
      !timm_tokens (m, s, c, args, error) || !timm_blocks (m, s, c, args, error))
    return FALSE;
  vl_families_build (m, src_lookup (s, "patch_embed.proj.bias") != NULL,
                     g_strcmp0 (config_string (vl_json_object_member (c->root, "vitlab"),
                                               "group_layout"), "openclip") == 0);
  return timm_head (m, s, c, error) && timm_preprocess (m, c, args, error);
}

/* --- DINOv2 in Meta's own names (timm's, with a mask_token) --- */

static void made_add (Source *s, const char *name, int ndim, const int64_t *shape, float *data);

/* transformers' Dinov2WithRegistersModel (facebook/dinov2-with-registers-*): x = [cls,
 * patches] + position_embeddings, then embeddings.register_tokens after the class token, as
 * Meta's (dinov2_registers). The same conversion, kept in transformers' names so that they are
 * saved back: the class token is read as cls_token + position_embeddings[:, 0], pos_embed as the
 * patches' rows (a slice of the file's tensor), no_embed_class; saved back, the class token
 * holds the sum and the class row of position_embeddings zeros, which computes the same. */
static gboolean
hf_dinov2_registers (Source *s, VlGeometry *g, GError **error)
{
  const VlTensorInfo *reg = src_lookup (s, "embeddings.register_tokens");
  if (reg == NULL)
    return TRUE;
  const VlTensorInfo *cls = src_require (s, "embeddings.cls_token", 3, 3, error);
  const VlTensorInfo *pos = cls ? src_require (s, "embeddings.position_embeddings", 3, 3, error)
                                : NULL;
  if (pos == NULL || !check_float (s, reg, error))
    return FALSE;
  const int64_t W = cls->shape[2];
  if (W != g->width || cls->shape[0] != 1 || cls->shape[1] != 1 || pos->shape[0] != 1 ||
      pos->shape[1] < 2 || pos->shape[2] != W || reg->ndim != 3 || reg->shape[0] != 1 ||
      reg->shape[1] < 1 || reg->shape[1] > 256 || reg->shape[2] != W || g->dist_token)
    {
      g_autofree char *c = vl_shape_to_string (cls->ndim, cls->shape);
      g_autofree char *p = vl_shape_to_string (pos->ndim, pos->shape);
      g_autofree char *r = vl_shape_to_string (reg->ndim, reg->shape);
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH, "%s: %sembeddings.cls_token %s, "
                   "position_embeddings %s and register_tokens %s do not make a DINOv2 with "
                   "registers ([1,1,%d], [1,1+N,%d], [1,R,%d])", s->file, s->prefix, c, p, r,
                   g->width, g->width, g->width);
      return FALSE;
    }
  float *c = g_new (float, W);
  g_autofree float *p = g_new (float, W * pos->shape[1]);
  vl_tensor_to_f32 (cls, c);
  vl_tensor_to_f32 (pos, p);
  for (int64_t i = 0; i < W; i++)
    c[i] += p[i];
  made_add (s, "embeddings.cls_token", 3, cls->shape, c);
  g->reg_tokens = (int) reg->shape[1];
  g->no_embed_class = TRUE;
  return TRUE;
}

/* DINOv2's variant vitlab does not compute, refused by name: the giant model's SwiGLU MLP. */
static gboolean
dinov2_supported (Source *s, const char *swiglu, GError **error)
{
  if (src_lookup (s, swiglu))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: a SwiGLU MLP (%s%s, DINOv2's giant "
                   "model) is not supported: vitlab's blocks have a GELU MLP", s->file,
                   s->prefix, swiglu);
      return FALSE;
    }
  return TRUE;
}

static void
made_free (gpointer p)
{
  VlTensorInfo *t = p;
  g_free ((gpointer) t->data);
  g_free (t);
}

/* A float32 tensor computed at load, under `name` (timm's, after the source's prefix). */
static void
made_add (Source *s, const char *name, int ndim, const int64_t *shape, float *data)
{
  if (s->made == NULL)
    s->made = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, made_free);
  VlTensorInfo *t = g_new0 (VlTensorInfo, 1);
  g_autofree char *full = g_strconcat (s->prefix, name, NULL);
  t->name = g_intern_string (full);
  vl_tensor_info_set_f32 (t, ndim, shape, data);
  g_hash_table_replace (s->made, (gpointer) t->name, t);
}

/* Meta's DINOv2 with registers: x = [cls, patches] + pos_embed, then the registers inserted
 * after the class token, so the position embedding covers the class token but not the
 * registers. As timm's _convert_dinov2 does: cls_token + pos_embed[:, 0] becomes the class
 * token, pos_embed[:, 1:] the patches' (no_embed_class), register_tokens the reg_token. */
static gboolean
dinov2_registers (Source *s, GError **error)
{
  const VlTensorInfo *reg = src_lookup (s, "register_tokens");
  if (reg == NULL)
    return TRUE;
  const VlTensorInfo *cls = src_require (s, "cls_token", 3, 3, error);
  const VlTensorInfo *pos = cls ? src_require (s, "pos_embed", 3, 3, error) : NULL;
  if (pos == NULL || !check_float (s, reg, error))
    return FALSE;
  const int64_t W = cls->shape[2];
  if (cls->shape[0] != 1 || cls->shape[1] != 1 || pos->shape[0] != 1 || pos->shape[1] < 2 ||
      pos->shape[2] != W || reg->ndim != 3 || reg->shape[0] != 1 || reg->shape[1] < 1 ||
      reg->shape[2] != W)
    {
      g_autofree char *c = vl_shape_to_string (cls->ndim, cls->shape);
      g_autofree char *p = vl_shape_to_string (pos->ndim, pos->shape);
      g_autofree char *r = vl_shape_to_string (reg->ndim, reg->shape);
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH, "%s: cls_token %s, pos_embed %s and "
                   "register_tokens %s do not make a DINOv2 with registers ([1,1,W], [1,1+N,W], "
                   "[1,R,W])", s->file, c, p, r);
      return FALSE;
    }
  float *c = g_new (float, W), *p = g_new (float, pos->numel), *r = g_new (float, reg->numel);
  vl_tensor_to_f32 (cls, c);
  vl_tensor_to_f32 (pos, p);
  vl_tensor_to_f32 (reg, r);
  for (int64_t i = 0; i < W; i++)
    c[i] += p[i];
  memmove (p, p + W, sizeof (float) * (size_t) (pos->numel - W));
  const int64_t pos_shape[3] = { 1, pos->shape[1] - 1, W };
  made_add (s, "cls_token", 3, cls->shape, c);
  made_add (s, "pos_embed", 3, pos_shape, p);
  made_add (s, "reg_token", 3, reg->shape, r);
  g_hash_table_add (s->used, (gpointer) reg->name);
  return TRUE;
}

static gboolean
load_dinov2 (VlModel *m, Source *s, Config *c, GError **error)
{
  if (!dinov2_supported (s, "blocks.0.mlp.w12.weight", error) ||
      !dinov2_registers (s, error) || !load_timm (m, s, c, error))
    return FALSE;
  /* torch.hub's files come without a config: timm's DINOv2 defaults */
  if (vl_json_object_member (c->root, "pretrained_cfg") == NULL)
    default_preprocess (&m->geo, 1.0, "bicubic", imagenet_mean, imagenet_std);
  return TRUE;
}

/* --- OpenCLIP / OpenAI CLIP visual tower --- */

static gboolean
load_openclip (VlModel *m, Source *s, Config *c, GError **error)
{
  VlGeometry *g = &m->geo;
  gboolean ok = TRUE;
  JsonObject *mc = vl_json_object_member (c->root, "model_cfg");
  JsonObject *vc = vl_json_object_member (mc, "vision_cfg");
  double v;

  const VlTensorInfo *pw = src_require (s, "conv1.weight", 4, 4, error);
  if (!pw || !check_patch (s, pw, g, error))
    return FALSE;
  const VlTensorInfo *ce = src_require (s, "class_embedding", 1, 1, error);
  if (!ce)
    return FALSE;
  if (ce->shape[0] != g->width)
    {
      g_autofree char *shape = vl_shape_to_string (ce->ndim, ce->shape);
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                   "%s: tensor %s has shape %s, expected [%d]", s->file, ce->name, shape, g->width);
      return FALSE;
    }
  g->class_token = TRUE;
  g->n_prefix = 1;
  g->pre_norm = TRUE;
  const VlTensorInfo *pos = src_require (s, "positional_embedding", 2, 2, error);
  if (!pos || !check_pos (s, pos, 0, 1, g, error))
    return FALSE;
  if (!read_depth (s, "transformer.resblocks.", ".ln_1.weight", g, error))
    return FALSE;
  if (!check_mlp (s, "transformer.resblocks.0.mlp.c_fc.weight", g, error))
    return FALSE;
  const VlTensorInfo *proj = src_lookup (s, "proj");
  if (proj)
    {
      if (proj->ndim != 2 || proj->shape[0] != g->width || proj->shape[1] <= 0)
        {
          g_autofree char *shape = vl_shape_to_string (proj->ndim, proj->shape);
          g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                       "%s: tensor %s has shape %s, expected [%d,embed_dim]", s->file, proj->name,
                       shape, g->width);
          return FALSE;
        }
      g->embed_dim = (int) proj->shape[1];
    }

  double head_width = 0;
  if (config_number (c, vc, "head_width", &head_width, &ok, error) &&
      (head_width <= 0 || g->width % (int) head_width != 0))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                   "%s: head_width %g does not divide the width %d", c->path, head_width,
                   g->width);
      return FALSE;
    }
  /* without a config: the file's own metadata, else OpenCLIP's default 64-wide heads */
  if (!ok || !resolve_heads (m, s, c, head_width > 0 ? g->width / head_width : 0, error))
    return FALSE;
  g->quick_gelu = config_number (c, mc, "quick_gelu", &v, &ok, error) && v != 0;
  if (!ok)
    return FALSE;
  g->eps = 1e-5f;   /* torch.nn.LayerNorm's default, which OpenCLIP uses */
  if (!config_agrees (c, vc, "width", g->width, "conv1.weight", &ok, error) ||
      !config_agrees (c, vc, "layers", g->depth, "transformer.resblocks.N.*", &ok, error) ||
      !config_agrees (c, vc, "patch_size", g->patch, "conv1.weight", &ok, error) ||
      !config_agrees (c, vc, "image_size", g->grid * g->patch, "positional_embedding", &ok, error) ||
      !config_agrees (c, vc, "mlp_ratio", (double) g->mlp / g->width,
                      "transformer.resblocks.0.mlp.c_fc.weight", &ok, error) ||
      !config_agrees (c, mc, "embed_dim", g->embed_dim, "proj", &ok, error))
    return FALSE;

  build_internal (m, FALSE);
  /* sources */
  const int64_t W = g->width;
  int64_t sh[2];
  g_autofree char *n_conv = g_strconcat (s->prefix, "conv1.weight", NULL);
  g_autofree char *n_cls = g_strconcat (s->prefix, "class_embedding", NULL);
  g_autofree char *n_pos = g_strconcat (s->prefix, "positional_embedding", NULL);
  g_autofree char *n_prew = g_strconcat (s->prefix, "ln_pre.weight", NULL);
  g_autofree char *n_preb = g_strconcat (s->prefix, "ln_pre.bias", NULL);
  g_autofree char *n_postw = g_strconcat (s->prefix, "ln_post.weight", NULL);
  g_autofree char *n_postb = g_strconcat (s->prefix, "ln_post.bias", NULL);
  g_autofree char *n_proj = g_strconcat (s->prefix, "proj", NULL);
  set_source (m, m->ix.patch_w, n_conv, FALSE, 0, NULL);
  set_source (m, m->ix.cls, n_cls, TRUE, 1, (sh[0] = W, sh));
  set_source (m, m->ix.pos, n_pos, TRUE, 2, (sh[0] = g->n_tokens, sh[1] = W, sh));
  set_source (m, m->ix.pre_w, n_prew, FALSE, 0, NULL);
  set_source (m, m->ix.pre_b, n_preb, FALSE, 0, NULL);
  static const char *names[12] = {
    "ln_1.weight", "ln_1.bias", "attn.in_proj_weight", "attn.in_proj_bias",
    "attn.out_proj.weight", "attn.out_proj.bias", "ln_2.weight", "ln_2.bias",
    "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias",
  };
  for (int l = 0; l < g->depth; l++)
    for (int j = 0; j < 12; j++)
      {
        g_autofree char *name = g_strdup_printf ("%stransformer.resblocks.%d.%s", s->prefix, l,
                                                 names[j]);
        set_source (m, vl_block_param (m, l, j), name, FALSE, 0, NULL);
      }
  set_source (m, m->ix.norm_w, n_postw, FALSE, 0, NULL);
  set_source (m, m->ix.norm_b, n_postb, FALSE, 0, NULL);
  if (g->embed_dim > 0)
    vl_model_add_source (m, m->ix.proj, n_proj, 2, (sh[0] = W, sh[1] = g->embed_dim, sh), 0, TRUE);
  groups_openclip (m);
  vl_model_finish_backbone (m);
  vl_model_build_head (m, VL_HEAD_NONE, 0, 0, FALSE);
  m->pool = VL_POOL_TOKEN;

  default_preprocess (g, 1.0, "bicubic", openai_mean, openai_std);
  JsonObject *pp = vl_json_object_member (c->root, "preprocess_cfg");
  if (!read_mean_std (c, pp, "mean", "std", g, error))
    return FALSE;
  const char *interp = config_string (pp, "interpolation");
  if (interp)
    {
      g_free (g->interpolation);
      g->interpolation = g_strdup (interp);
    }
  return TRUE;
}

/* Each block's sources for transformers' layouts: names[j] (NULL: none) at
 * PREFIX + LAYERS + "N." + names[j], and the qkv weight and bias from the three tensors
 * PREFIX + LAYERS + "N." + ATTN + parts[k] + ".weight" / ".bias", one after the other. */
static void
split_qkv_sources (VlModel *m, Source *s, const char *layers, const char *const *names,
                   int n_names, const char *attn, const char *const parts[3])
{
  const int64_t W = m->geo.width;
  int64_t sh[2];
  for (int l = 0; l < m->geo.depth; l++)
    {
      for (int j = 0; j < n_names; j++)
        if (names[j])
          {
            g_autofree char *name = g_strdup_printf ("%s%s%d.%s", s->prefix, layers, l,
                                                     names[j]);
            set_source (m, vl_block_param (m, l, j), name, FALSE, 0, NULL);
          }
      for (int k = 0; k < 3; k++)
        {
          g_autofree char *wn = g_strdup_printf ("%s%s%d.%s%s.weight", s->prefix, layers, l,
                                                 attn, parts[k]);
          g_autofree char *bn = g_strdup_printf ("%s%s%d.%s%s.bias", s->prefix, layers, l, attn,
                                                 parts[k]);
          vl_model_add_source (m, vl_block_param (m, l, B_QKV_W), wn, 2,
                               (sh[0] = W, sh[1] = W, sh), k * W, FALSE);
          vl_model_add_source (m, vl_block_param (m, l, B_QKV_B), bn, 1, (sh[0] = W, sh), k * W,
                               FALSE);
        }
    }
}

/* --- Hugging Face transformers CLIP's vision tower --- */

/* transformers' CLIPModel / CLIPVisionModel(WithProjection) (openai/clip-vit-*): the vision tower
 * under "vision_model." onto the OpenCLIP-shaped internal model (pre-norm, post_layernorm,
 * visual_projection, OpenCLIP's groups); the text tower beside it left out. */
static gboolean
load_hf_clip (VlModel *m, Source *s, Config *c, GError **error)
{
  VlGeometry *g = &m->geo;
  gboolean ok = TRUE;
  JsonObject *vc = vl_json_object_member (c->root, "vision_config");
  if (vc == NULL)
    vc = c->root;   /* a CLIPVisionConfig of its own */
  double v;
  const VlTensorInfo *pw = src_require (s, "embeddings.patch_embedding.weight", 4, 4, error);
  if (!pw || !check_patch (s, pw, g, error))
    return FALSE;
  const VlTensorInfo *ce = src_require (s, "embeddings.class_embedding", 1, 1, error);
  if (!ce)
    return FALSE;
  g->class_token = TRUE;
  g->n_prefix = 1;
  g->pre_norm = TRUE;
  const VlTensorInfo *pos = src_require (s, "embeddings.position_embedding.weight", 2, 2, error);
  if (!pos || !check_pos (s, pos, 0, 1, g, error))
    return FALSE;
  if (!read_depth (s, "encoder.layers.", ".layer_norm1.weight", g, error))
    return FALSE;
  if (!check_mlp (s, "encoder.layers.0.mlp.fc1.weight", g, error))
    return FALSE;
  const VlTensorInfo *proj = vl_safetensors_lookup (s->st, "visual_projection.weight");
  if (proj)
    {
      if (proj->ndim != 2 || proj->shape[1] != g->width || proj->shape[0] <= 0)
        {
          g_autofree char *shape = vl_shape_to_string (proj->ndim, proj->shape);
          g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH, "%s: tensor visual_projection.weight "
                       "has shape %s, expected [projection_dim,%d]", s->file, shape, g->width);
          return FALSE;
        }
      g->embed_dim = (int) proj->shape[0];
    }
  double heads = 0;
  if ((!config_number (c, vc, "num_attention_heads", &heads, &ok, error) && !ok) ||
      !resolve_heads (m, s, c, heads, error))
    return FALSE;
  const char *act = config_string (vc, "hidden_act");
  if (act && strcmp (act, "gelu") != 0 && strcmp (act, "quick_gelu") != 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                   "%s: hidden_act \"%s\" is not supported (gelu, quick_gelu)", c->path, act);
      return FALSE;
    }
  g->quick_gelu = act == NULL || strcmp (act, "quick_gelu") == 0;   /* CLIP's default */
  g->eps = 1e-5f;
  if (config_number (c, vc, "layer_norm_eps", &v, &ok, error) &&
      !set_eps (g, c->path, "layer_norm_eps", v, error))
    return FALSE;
  if (!ok ||
      !config_agrees (c, vc, "hidden_size", g->width, "embeddings.patch_embedding.weight", &ok,
                      error) ||
      !config_agrees (c, vc, "num_hidden_layers", g->depth, "encoder.layers.N.*", &ok, error) ||
      !config_agrees (c, vc, "intermediate_size", g->mlp, "mlp.fc1.weight", &ok, error) ||
      !config_agrees (c, vc, "patch_size", g->patch, "embeddings.patch_embedding.weight", &ok,
                      error) ||
      !config_agrees (c, vc, "image_size", g->grid * g->patch,
                      "embeddings.position_embedding.weight", &ok, error) ||
      !config_agrees (c, c->root, "projection_dim", g->embed_dim, "visual_projection.weight",
                      &ok, error))
    return FALSE;

  build_internal (m, FALSE);
  const int64_t W = g->width;
  int64_t sh[2];
  static const struct {
    const char *name;
    int         squeeze;   /* 1: the internal tensor's [1,1,W]/[1,T,W] from [W]/[T,W] */
  } top[] = {
    { "embeddings.patch_embedding.weight", 0 }, { "embeddings.class_embedding", 1 },
    { "embeddings.position_embedding.weight", 1 }, { "pre_layrnorm.weight", 0 },
    { "pre_layrnorm.bias", 0 }, { "post_layernorm.weight", 0 }, { "post_layernorm.bias", 0 },
  };
  const int index[G_N_ELEMENTS (top)] = { m->ix.patch_w, m->ix.cls, m->ix.pos, m->ix.pre_w,
                                          m->ix.pre_b, m->ix.norm_w, m->ix.norm_b };
  for (guint i = 0; i < G_N_ELEMENTS (top); i++)
    {
      g_autofree char *name = g_strconcat (s->prefix, top[i].name, NULL);
      if (index[i] == m->ix.pos)
        set_source (m, index[i], name, TRUE, 2, (sh[0] = g->n_tokens, sh[1] = W, sh));
      else
        set_source (m, index[i], name, top[i].squeeze != 0, 1, (sh[0] = W, sh));
    }
  static const char *names[12] = {
    "layer_norm1.weight", "layer_norm1.bias", NULL, NULL,
    "self_attn.out_proj.weight", "self_attn.out_proj.bias", "layer_norm2.weight",
    "layer_norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias",
  };
  static const char *const qkv[3] = { "q_proj", "k_proj", "v_proj" };
  split_qkv_sources (m, s, "encoder.layers.", names, 12, "self_attn.", qkv);
  if (g->embed_dim > 0)
    set_source (m, m->ix.proj, "visual_projection.weight", FALSE, 0, NULL);
  groups_openclip (m);
  vl_model_finish_backbone (m);
  vl_model_build_head (m, VL_HEAD_NONE, 0, 0, FALSE);
  m->pool = VL_POOL_TOKEN;
  default_preprocess (g, 1.0, "bicubic", openai_mean, openai_std);
  return TRUE;
}

static gboolean hf_head (VlModel *m, Source *s, gboolean dino, GError **error);

/* --- Hugging Face transformers SigLIP's vision tower --- */

/* The attention pool's sources in transformers' SiglipMultiheadAttentionPoolingHead (`head.`):
 * nn.MultiheadAttention's in_proj holds timm's q (rows 0 … W-1) and kv (W … 3W-1). */
static void
hf_siglip_pool_sources (VlModel *m, Source *s)
{
  const int64_t W = m->geo.width;
  int64_t sh[3];
  static const char *names[AP_N] = {
    "head.probe", NULL, NULL, NULL, NULL, "head.attention.out_proj.weight",
    "head.attention.out_proj.bias", "head.layernorm.weight", "head.layernorm.bias",
    "head.mlp.fc1.weight", "head.mlp.fc1.bias", "head.mlp.fc2.weight", "head.mlp.fc2.bias",
  };
  for (int j = 0; j < AP_N; j++)
    if (names[j])
      {
        g_autofree char *name = g_strconcat (s->prefix, names[j], NULL);
        set_source (m, m->ix.ap + j, name, FALSE, 0, NULL);
      }
  g_autofree char *iw = g_strconcat (s->prefix, "head.attention.in_proj_weight", NULL);
  g_autofree char *ib = g_strconcat (s->prefix, "head.attention.in_proj_bias", NULL);
  vl_model_add_source_slice (m, m->ix.ap + AP_Q_W, iw, 2, (sh[0] = 3 * W, sh[1] = W, sh), 0);
  vl_model_add_source_slice (m, m->ix.ap + AP_KV_W, iw, 2, sh, W * W);
  vl_model_add_source_slice (m, m->ix.ap + AP_Q_B, ib, 1, (sh[0] = 3 * W, sh), 0);
  vl_model_add_source_slice (m, m->ix.ap + AP_KV_B, ib, 1, sh, W);
}

/* The configuration of transformers' SiglipModel / SiglipVisionModel against the tensors. */
static gboolean
hf_siglip_config (VlModel *m, Source *s, Config *c, JsonObject *vc, GError **error)
{
  VlGeometry *g = &m->geo;
  gboolean ok = TRUE;
  double v, heads = 0;
  if ((!config_number (c, vc, "num_attention_heads", &heads, &ok, error) && !ok) ||
      !resolve_heads (m, s, c, heads, error))
    return FALSE;
  const char *act = config_string (vc, "hidden_act");
  if (act && strcmp (act, "gelu_pytorch_tanh") != 0 && strcmp (act, "gelu") != 0 &&
      strcmp (act, "quick_gelu") != 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: hidden_act \"%s\" is not supported "
                   "(gelu_pytorch_tanh, gelu, quick_gelu)", c->path, act);
      return FALSE;
    }
  g->gelu_tanh = act == NULL || strcmp (act, "gelu_pytorch_tanh") == 0;   /* SigLIP's default */
  g->quick_gelu = act && strcmp (act, "quick_gelu") == 0;
  g->eps = 1e-6f;
  if (config_number (c, vc, "layer_norm_eps", &v, &ok, error) &&
      !set_eps (g, c->path, "layer_norm_eps", v, error))
    return FALSE;
  return ok &&
         config_agrees (c, vc, "hidden_size", g->width, "embeddings.patch_embedding.weight", &ok,
                        error) &&
         config_agrees (c, vc, "num_hidden_layers", g->depth, "encoder.layers.N.*", &ok, error) &&
         config_agrees (c, vc, "intermediate_size", g->mlp, "mlp.fc1.weight", &ok, error) &&
         config_agrees (c, vc, "patch_size", g->patch, "embeddings.patch_embedding.weight", &ok,
                        error) &&
         config_agrees (c, vc, "image_size", g->grid * g->patch,
                        "embeddings.position_embedding.weight", &ok, error);
}

/* transformers' SiglipModel / SiglipVisionModel (google/siglip-*, siglip2-* of fixed
 * resolution): the vision tower under "vision_model." without class token, pooled by its
 * attention-pooling head (`head.`, when vision_use_head) or by the mean of the tokens
 * (SiglipForImageClassification, with its `classifier`); the text tower left out. */
static gboolean
load_hf_siglip (VlModel *m, Source *s, Config *c, GError **error)
{
  VlGeometry *g = &m->geo;
  JsonObject *vc = vl_json_object_member (c->root, "vision_config");
  if (vc == NULL)
    vc = c->root;   /* a SiglipVisionConfig of its own */
  const VlTensorInfo *pw = src_require (s, "embeddings.patch_embedding.weight", 4, 4, error);
  if (!pw || !check_patch (s, pw, g, error))
    return FALSE;
  const VlTensorInfo *pos = src_require (s, "embeddings.position_embedding.weight", 2, 2, error);
  if (!pos || !check_pos (s, pos, 0, 0, g, error))
    return FALSE;
  if (!read_depth (s, "encoder.layers.", ".layer_norm1.weight", g, error))
    return FALSE;
  if (!check_mlp (s, "encoder.layers.0.mlp.fc1.weight", g, error) ||
      !hf_siglip_config (m, s, c, vc, error))
    return FALSE;
  g->attn_pool = src_lookup (s, "head.probe") != NULL;

  build_internal (m, TRUE);
  const int64_t W = g->width;
  int64_t sh[2];
  static const char *top[] = {
    "embeddings.patch_embedding.weight", "embeddings.patch_embedding.bias",
    "embeddings.position_embedding.weight", "post_layernorm.weight", "post_layernorm.bias",
  };
  const int index[G_N_ELEMENTS (top)] = { m->ix.patch_w, m->ix.patch_b, m->ix.pos, m->ix.norm_w,
                                          m->ix.norm_b };
  for (guint i = 0; i < G_N_ELEMENTS (top); i++)
    {
      g_autofree char *name = g_strconcat (s->prefix, top[i], NULL);
      if (index[i] == m->ix.pos)
        set_source (m, index[i], name, TRUE, 2, (sh[0] = g->n_tokens, sh[1] = W, sh));
      else
        set_source (m, index[i], name, FALSE, 0, NULL);
    }
  static const char *names[12] = {
    "layer_norm1.weight", "layer_norm1.bias", NULL, NULL,
    "self_attn.out_proj.weight", "self_attn.out_proj.bias", "layer_norm2.weight",
    "layer_norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias",
  };
  static const char *const qkv[3] = { "q_proj", "k_proj", "v_proj" };
  split_qkv_sources (m, s, "encoder.layers.", names, 12, "self_attn.", qkv);
  if (g->attn_pool)
    hf_siglip_pool_sources (m, s);
  groups_timm (m);
  vl_model_finish_backbone (m);
  if (!hf_head (m, s, FALSE, error))
    return FALSE;
  m->pool = g->attn_pool ? VL_POOL_MAP : VL_POOL_AVG;
  /* SiglipImageProcessor: a bicubic resize to the size, no crop, mean and std 0.5 */
  default_preprocess (g, 1.0, "bicubic", half, half);
  g->squash = TRUE;
  return TRUE;
}

/* --- Hugging Face transformers ViT --- */

/* The classifier of transformers' models, outside the "vit." / "deit." prefix: `classifier` on
 * the class token, or DeiT-with-teacher's `cls_classifier` and `distillation_classifier`
 * (averaged, as timm's distilled head). Dinov2ForImageClassification's reads the class token
 * beside the mean of the patches (2W inputs), which vitlab's heads do not: its backbone loads
 * without it. */
static gboolean
hf_head (VlModel *m, Source *s, gboolean dino, GError **error)
{
  const VlGeometry *g = &m->geo;
  const gboolean teacher = g->dist_token && vl_safetensors_lookup (s->st, "cls_classifier.weight");
  const char *head = teacher ? "cls_classifier" : "classifier";
  g_autofree char *hw = g_strconcat (head, ".weight", NULL);
  g_autofree char *hb = g_strconcat (head, ".bias", NULL);
  const VlTensorInfo *cw = dino ? NULL : vl_safetensors_lookup (s->st, hw);
  const VlTensorInfo *dw = teacher ? vl_safetensors_lookup (s->st, "distillation_classifier.weight")
                                   : NULL;
  int K = 0;
  if (cw)
    {
      if (cw->ndim != 2 || cw->shape[1] != g->width || cw->shape[0] <= 0 ||
          (teacher && (dw == NULL || dw->ndim != 2 || dw->shape[0] != cw->shape[0] ||
                       dw->shape[1] != g->width)))
        {
          g_autofree char *found = vl_shape_to_string (cw->ndim, cw->shape);
          g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                       "%s: tensor %s has shape %s, expected [classes,%d]%s", s->file, hw, found,
                       g->width, teacher ? ", and distillation_classifier.weight the same" : "");
          return FALSE;
        }
      K = (int) cw->shape[0];
    }
  vl_model_build_head (m, VL_HEAD_LINEAR, K, 0, teacher);
  if (K > 0)
    {
      set_source (m, m->ix.head_w, hw, FALSE, 0, NULL);
      set_source (m, m->ix.head_b, hb, FALSE, 0, NULL);
    }
  if (K > 0 && teacher)
    {
      set_source (m, m->ix.hdist_w, "distillation_classifier.weight", FALSE, 0, NULL);
      set_source (m, m->ix.hdist_b, "distillation_classifier.bias", FALSE, 0, NULL);
    }
  return TRUE;
}

static gboolean
load_hf (VlModel *m, Source *s, Config *c, GError **error)
{
  VlGeometry *g = &m->geo;
  gboolean ok = TRUE;
  JsonObject *r = c->root;
  double v;

  const VlTensorInfo *pw = src_require (s, "embeddings.patch_embeddings.projection.weight", 4, 4,
                                        error);
  if (!pw || !check_patch (s, pw, g, error))
    return FALSE;
  g->class_token = TRUE;
  /* DeiT's distillation token follows the class token; the position embedding covers both */
  g->dist_token = src_lookup (s, "embeddings.distillation_token") != NULL;
  /* transformers' Dinov2Model names its blocks' parts as timm does, with layer scale */
  const gboolean dino = src_lookup (s, "encoder.layer.0.norm1.weight") != NULL;
  /* Dinov2WithRegistersModel: the registers follow the class token, outside the position
   * embedding (see hf_dinov2_registers) */
  if (dino && !hf_dinov2_registers (s, g, error))
    return FALSE;
  g->n_prefix = 1 + g->dist_token + g->reg_tokens;
  const VlTensorInfo *pos = src_require (s, "embeddings.position_embeddings", 3, 3, error);
  if (!pos || !check_pos (s, pos, 1, g->reg_tokens ? 1 : g->n_prefix, g, error))
    return FALSE;
  if (dino && !dinov2_supported (s, "encoder.layer.0.mlp.weights_in.weight", error))
    return FALSE;
  const char *ln1 = dino ? ".norm1.weight" : ".layernorm_before.weight";
  if (!read_depth (s, "encoder.layer.", ln1, g, error))
    return FALSE;
  g->layer_scale = dino;
  if (!check_mlp (s, dino ? "encoder.layer.0.mlp.fc1.weight"
                          : "encoder.layer.0.intermediate.dense.weight", g, error))
    return FALSE;
  double heads = 0;
  if (!config_number (c, r, "num_attention_heads", &heads, &ok, error) && !ok)
    return FALSE;
  if (!resolve_heads (m, s, c, heads, error))
    return FALSE;
  g->eps = 1e-12f;   /* transformers' default, and what its ViTs use */
  if (config_number (c, r, "layer_norm_eps", &v, &ok, error) &&
      !set_eps (g, c->path, "layer_norm_eps", v, error))
    return FALSE;
  if (!ok)
    return FALSE;
  const char *act = config_string (r, "hidden_act");
  if (act && strcmp (act, "gelu") != 0 && strcmp (act, "quick_gelu") != 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                   "%s: hidden_act \"%s\" is not supported (gelu, quick_gelu)", c->path, act);
      return FALSE;
    }
  g->quick_gelu = act && strcmp (act, "quick_gelu") == 0;
  if (config_number (c, r, "qkv_bias", &v, &ok, error) && v == 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: qkv_bias false is not supported",
                   c->path);
      return FALSE;
    }
  if (config_number (c, r, "use_swiglu_ffn", &v, &ok, error) && v != 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: use_swiglu_ffn (DINOv2's giant "
                   "model) is not supported: vitlab's blocks have a GELU MLP", c->path);
      return FALSE;
    }
  if (!config_agrees (c, r, "hidden_size", g->width,
                      "embeddings.patch_embeddings.projection.weight", &ok, error) ||
      !config_agrees (c, r, "num_hidden_layers", g->depth, "encoder.layer.N.*", &ok, error) ||
      !config_agrees (c, r, "intermediate_size", g->mlp, "intermediate.dense.weight", &ok, error) ||
      !config_agrees (c, r, "mlp_ratio", (double) g->mlp / g->width, "mlp.fc1.weight", &ok,
                      error) ||
      !config_agrees (c, r, "patch_size", g->patch, "patch_embeddings.projection.weight", &ok,
                      error) ||
      !config_agrees (c, r, "num_channels", g->in_chans, "patch_embeddings.projection.weight",
                      &ok, error) ||
      !config_agrees (c, r, "image_size", g->grid * g->patch, "embeddings.position_embeddings",
                      &ok, error) ||
      !config_agrees (c, r, "num_register_tokens", g->reg_tokens, "embeddings.register_tokens",
                      &ok, error))
    return FALSE;

  build_internal (m, TRUE);
#define HF(name) g_strconcat (s->prefix, name, NULL)
  char *n;
  set_source (m, m->ix.patch_w, n = HF ("embeddings.patch_embeddings.projection.weight"), FALSE, 0, NULL); g_free (n);
  set_source (m, m->ix.patch_b, n = HF ("embeddings.patch_embeddings.projection.bias"), FALSE, 0, NULL); g_free (n);
  set_source (m, m->ix.cls, n = HF ("embeddings.cls_token"), FALSE, 0, NULL); g_free (n);
  if (g->dist_token)
    {
      set_source (m, m->ix.dist, n = HF ("embeddings.distillation_token"), FALSE, 0, NULL);
      g_free (n);
    }
  if (g->reg_tokens)
    {
      /* the patches' rows of the position embedding; its class row is in the class token */
      int64_t sh[3] = { 1, 1 + (int64_t) g->grid * g->grid, g->width };
      vl_model_add_source_slice (m, m->ix.pos, n = HF ("embeddings.position_embeddings"), 3, sh,
                                 g->width);
      g_free (n);
      set_source (m, m->ix.reg, n = HF ("embeddings.register_tokens"), FALSE, 0, NULL);
      g_free (n);
    }
  else
    {
      set_source (m, m->ix.pos, n = HF ("embeddings.position_embeddings"), FALSE, 0, NULL);
      g_free (n);
    }
  set_source (m, m->ix.norm_w, n = HF ("layernorm.weight"), FALSE, 0, NULL); g_free (n);
  set_source (m, m->ix.norm_b, n = HF ("layernorm.bias"), FALSE, 0, NULL); g_free (n);
#undef HF
  static const char *vit_names[14] = {
    "layernorm_before.weight", "layernorm_before.bias", NULL, NULL,
    "attention.output.dense.weight", "attention.output.dense.bias",
    "layernorm_after.weight", "layernorm_after.bias",
    "intermediate.dense.weight", "intermediate.dense.bias",
    "output.dense.weight", "output.dense.bias",
  };
  static const char *dino_names[14] = {
    "norm1.weight", "norm1.bias", NULL, NULL,
    "attention.output.dense.weight", "attention.output.dense.bias",
    "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
    "mlp.fc2.weight", "mlp.fc2.bias", "layer_scale1.lambda1", "layer_scale2.lambda1",
  };
  const char *const *names = dino ? dino_names : vit_names;
  static const char *const qkv[3] = { "query", "key", "value" };
  split_qkv_sources (m, s, "encoder.layer.", names, dino ? 14 : 12, "attention.attention.", qkv);
  groups_timm (m);
  vl_model_finish_backbone (m);

  if (!hf_head (m, s, dino, error))
    return FALSE;
  m->pool = VL_POOL_TOKEN;
  if (dino)   /* timm's DINOv2 defaults: the native size, ImageNet's mean and std */
    default_preprocess (g, 1.0, "bicubic", imagenet_mean, imagenet_std);
  else if (g->dist_token || g_str_has_prefix (s->prefix, "deit."))   /* timm's DeiT defaults */
    default_preprocess (g, 0.875, "bicubic", imagenet_mean, imagenet_std);
  else
    default_preprocess (g, 1.0, "bilinear", half, half);
  return TRUE;
}

/* --- torchvision --- */

static gboolean
load_torchvision (VlModel *m, Source *s, Config *c, GError **error)
{
  VlGeometry *g = &m->geo;
  const VlTensorInfo *pw = src_require (s, "conv_proj.weight", 4, 4, error);
  if (!pw || !check_patch (s, pw, g, error))
    return FALSE;
  g->class_token = TRUE;
  g->n_prefix = 1;
  const VlTensorInfo *pos = src_require (s, "encoder.pos_embedding", 3, 3, error);
  if (!pos || !check_pos (s, pos, 1, 1, g, error))
    return FALSE;
  if (!read_depth (s, "encoder.layers.encoder_layer_", ".ln_1.weight", g, error))
    return FALSE;
  gboolean old_mlp = src_lookup (s, "encoder.layers.encoder_layer_0.mlp.linear_1.weight") != NULL;
  if (!check_mlp (s, old_mlp ? "encoder.layers.encoder_layer_0.mlp.linear_1.weight"
                             : "encoder.layers.encoder_layer_0.mlp.0.weight", g, error))
    return FALSE;
  if (src_lookup (s, "heads.pre_logits.weight"))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                   "%s: tensor heads.pre_logits.weight: torchvision's representation layer is "
                   "not supported", s->file);
      return FALSE;
    }
  /* torchvision saves no config: its ViTs have 64-wide heads, except vit_h_14 (16 heads of 80);
   * a config.json beside the file may say otherwise (num_heads, or model_args.num_heads) */
  double heads = g->width == 1280 ? 16 : 0;
  gboolean ok = TRUE;
  if (!config_number (c, c->root, "num_heads", &heads, &ok, error))
    config_number (c, vl_json_object_member (c->root, "model_args"), "num_heads", &heads, &ok, error);
  if (!ok || !resolve_heads (m, s, c, heads, error))
    return FALSE;
  g->eps = 1e-6f;

  build_internal (m, TRUE);
  set_source (m, m->ix.patch_w, "conv_proj.weight", FALSE, 0, NULL);
  set_source (m, m->ix.patch_b, "conv_proj.bias", FALSE, 0, NULL);
  set_source (m, m->ix.cls, "class_token", FALSE, 0, NULL);
  set_source (m, m->ix.pos, "encoder.pos_embedding", FALSE, 0, NULL);
  set_source (m, m->ix.norm_w, "encoder.ln.weight", FALSE, 0, NULL);
  set_source (m, m->ix.norm_b, "encoder.ln.bias", FALSE, 0, NULL);
  const char *names[12] = {
    "ln_1.weight", "ln_1.bias", "self_attention.in_proj_weight", "self_attention.in_proj_bias",
    "self_attention.out_proj.weight", "self_attention.out_proj.bias", "ln_2.weight", "ln_2.bias",
    old_mlp ? "mlp.linear_1.weight" : "mlp.0.weight", old_mlp ? "mlp.linear_1.bias" : "mlp.0.bias",
    old_mlp ? "mlp.linear_2.weight" : "mlp.3.weight", old_mlp ? "mlp.linear_2.bias" : "mlp.3.bias",
  };
  for (int l = 0; l < g->depth; l++)
    for (int j = 0; j < 12; j++)
      {
        g_autofree char *name = g_strdup_printf ("encoder.layers.encoder_layer_%d.%s", l, names[j]);
        set_source (m, vl_block_param (m, l, j), name, FALSE, 0, NULL);
      }
  groups_timm (m);
  vl_model_finish_backbone (m);
  const VlTensorInfo *hw = src_lookup (s, "heads.head.weight");
  int K = hw && hw->ndim == 2 ? (int) hw->shape[0] : 0;
  if (hw && (hw->ndim != 2 || hw->shape[1] != g->width))
    {
      g_autofree char *found = vl_shape_to_string (hw->ndim, hw->shape);
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                   "%s: tensor heads.head.weight has shape %s, expected [classes,%d]", s->file,
                   found, g->width);
      return FALSE;
    }
  vl_model_build_head (m, VL_HEAD_LINEAR, K, 0, FALSE);
  if (K > 0)
    {
      set_source (m, m->ix.head_w, "heads.head.weight", FALSE, 0, NULL);
      set_source (m, m->ix.head_b, "heads.head.bias", FALSE, 0, NULL);
    }
  m->pool = VL_POOL_TOKEN;
  default_preprocess (g, 0.875, "bilinear", imagenet_mean, imagenet_std);
  return TRUE;
}

/* ------------------------------------------------------------------ recognising */

static char *
file_beside (const char *st_path, const char *name)
{
  g_autofree char *dir = g_path_get_dirname (st_path);
  char *p = g_build_filename (dir, name, NULL);
  if (g_file_test (p, G_FILE_TEST_IS_REGULAR))
    return p;
  g_free (p);
  return NULL;
}

char *
vl_checkpoint_in_folder (const char *dir)
{
  /* safetensors first; PyTorch's pickled format (read without running it) where a folder has
   * only that, as older Hugging Face and OpenCLIP uploads do */
  static const char *const names[] = { "model.safetensors", "open_clip_model.safetensors",
                                       "pytorch_model.bin", "open_clip_pytorch_model.bin" };
  for (guint k = 0; k < G_N_ELEMENTS (names); k++)
    {
      char *p = g_build_filename (dir, names[k], NULL);
      if (g_file_test (p, G_FILE_TEST_EXISTS))
        return p;
      g_free (p);
    }
  return NULL;
}

static gboolean
resolve_checkpoint (const char *path, char **st_path, GError **error)
{
  if (g_file_test (path, G_FILE_TEST_IS_DIR))
    {
      *st_path = vl_checkpoint_in_folder (path);
      if (*st_path == NULL)
        {
          g_set_error (error, VL_ERROR, VL_ERROR_MISSING,
                       "%s: checkpoint folder has no model.safetensors (nor "
                       "open_clip_model.safetensors, pytorch_model.bin or "
                       "open_clip_pytorch_model.bin)", path);
          return FALSE;
        }
      /* config.json (or open_clip_config.json) is read when present; torchvision saves none,
       * and the geometry comes from the tensors anyway */
      return TRUE;
    }
  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_IO, "%s: no such file or folder", path);
      return FALSE;
    }
  *st_path = g_strdup (path);
  return TRUE;
}

static char **
read_label_file (const char *path, int expected)
{
  g_autofree char *text = NULL;
  if (!g_file_get_contents (path, &text, NULL, NULL))
    return NULL;
  g_auto(GStrv) lines = g_strsplit (text, "\n", -1);
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  for (int i = 0; lines[i]; i++)
    {
      char *l = g_strstrip (lines[i]);
      if (*l)
        g_ptr_array_add (names, g_strdup (l));
    }
  if ((int) names->len != expected)
    {
      g_ptr_array_unref (names);
      return NULL;
    }
  g_ptr_array_set_free_func (names, NULL);
  g_ptr_array_add (names, NULL);
  return (char **) g_ptr_array_free (names, FALSE);
}

static void
load_class_names (VlModel *m, const Config *c, const char *st_path)
{
  int K = m->num_classes;
  if (K <= 0)
    return;
  JsonObject *root = c->root;
  if (root && json_object_has_member (root, "label_names"))   /* timm's hub config */
    {
      JsonNode *n = json_object_get_member (root, "label_names");
      if (JSON_NODE_HOLDS_ARRAY (n) && (int) json_array_get_length (json_node_get_array (n)) == K)
        {
          JsonArray *a = json_node_get_array (n);
          m->class_names = g_new0 (char *, K + 1);
          for (int i = 0; i < K; i++)
            {
              JsonNode *e = json_array_get_element (a, i);
              const char *str = JSON_NODE_HOLDS_VALUE (e) &&
                                json_node_get_value_type (e) == G_TYPE_STRING ?
                                json_node_get_string (e) : NULL;
              m->class_names[i] = g_strdup (str ? str : "");
            }
          return;
        }
    }
  JsonObject *id2label = vl_json_object_member (root, "id2label");   /* transformers */
  if (id2label && (int) json_object_get_size (id2label) == K)
    {
      char **names = g_new0 (char *, K + 1);
      gboolean complete = TRUE;
      for (int i = 0; i < K && complete; i++)
        {
          char key[16];
          g_snprintf (key, sizeof key, "%d", i);
          const char *str = config_string (id2label, key);
          complete = str != NULL;
          names[i] = g_strdup (str);
        }
      if (complete)
        {
          m->class_names = names;
          return;
        }
      g_strfreev (names);
    }
  const char *files[] = { "imagenet-classes.txt", "labels.txt", "classes.txt" };
  for (guint i = 0; i < G_N_ELEMENTS (files); i++)
    {
      g_autofree char *p = file_beside (st_path, files[i]);
      char **names = p ? read_label_file (p, K) : NULL;
      if (names)
        {
          m->class_names = names;
          return;
        }
    }
}

/* Tensors a family may leave unread: OpenCLIP's text tower (outside "visual."), HF's pooler. */
static gboolean
ignorable (const char *family, const char *prefix, const char *name)
{
  /* a segmentation head's tensors (mmseg's names): read by vl-seg-head, not by the model */
  if (g_str_has_prefix (name, "decode_head."))
    return TRUE;
  /* PyTorch's BatchNorm counter: the stems use a fixed momentum, which does not read it */
  if (g_str_has_prefix (name, "patch_embed.") && g_str_has_suffix (name, ".num_batches_tracked"))
    return TRUE;
  /* beside a nested ViT or CLIP's visual tower: the rest of the checkpoint (a text tower, a
   * training framework's loss or teacher modules) */
  if ((strcmp (family, "openclip") == 0 || strcmp (family, "timm") == 0 ||
       strcmp (family, "dinov2") == 0) && *prefix && !g_str_has_prefix (name, prefix))
    return TRUE;
  /* a pretraining model's parts beside the ViT: the pooler, the mask token and the decoder of
   * ViTMAEForPreTraining (MAE) or ViTForMaskedImageModeling (SimMIM) */
  if (strcmp (family, "hf-vit") == 0 || strcmp (family, "hf-deit") == 0)
    {
      g_autofree char *pooler = g_strconcat (prefix, "pooler.", NULL);
      g_autofree char *mask = g_strconcat (prefix, "embeddings.mask_token", NULL);
      return g_str_has_prefix (name, pooler) || strcmp (name, mask) == 0 ||
             (*prefix && g_str_has_prefix (name, "decoder."));
    }
  /* CLIP's text tower and logit scale beside its vision tower; the position ids older
   * transformers saved as a buffer */
  if (strcmp (family, "hf-clip") == 0)
    return (!g_str_has_prefix (name, prefix) && strcmp (name, "visual_projection.weight") != 0) ||
           strcmp (name, "vision_model.embeddings.position_ids") == 0;
  /* SigLIP's text tower, logit scale and bias beside its vision tower */
  if (strcmp (family, "hf-siglip") == 0)
    return (!g_str_has_prefix (name, prefix) && !g_str_has_prefix (name, "classifier.")) ||
           strcmp (name, "vision_model.embeddings.position_ids") == 0;
  /* DINOv2's mask token serves its masked-image training only; a Dinov2ForImageClassification
   * head reads 2W features (see load_hf) */
  if (strcmp (family, "dinov2") == 0)
    return g_str_has_prefix (name, prefix) && strcmp (name + strlen (prefix), "mask_token") == 0;
  if (strcmp (family, "hf-dinov2") == 0)
    {
      g_autofree char *mask = g_strconcat (prefix, "embeddings.mask_token", NULL);
      return strcmp (name, mask) == 0 || g_str_has_prefix (name, "classifier.");
    }
  return FALSE;
}

/* A timm ViT nested in a training framework's checkpoint (PyTorch Lightning's state_dict keeps
 * the module's attribute name: "model.", "backbone.", "net.encoder."): the one prefix before
 * patch_embed.proj.weight, or NULL (an error when there are several). */
static char *
nested_timm_prefix (VlSafetensors *st, const char *file, GError **error)
{
  static const char anchor[] = "patch_embed.proj.weight";
  const size_t alen = strlen (anchor);
  g_autoptr(GPtrArray) found = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < vl_safetensors_n_tensors (st); i++)
    {
      const char *name = vl_safetensors_get (st, i)->name;
      const size_t len = strlen (name);
      if (len > alen + 1 && strcmp (name + len - alen, anchor) == 0 && name[len - alen - 1] == '.')
        g_ptr_array_add (found, g_strndup (name, len - alen));
    }
  if (found->len == 1 && g_str_has_suffix (found->pdata[0], "visual.trunk."))
    {
      /* OpenCLIP's TimmModel: the trunk is read as timm's, its preprocessing from
       * open_clip_config.json; a head after it (timm_proj linear or mlp) is not */
      g_autofree char *head = g_strndup (found->pdata[0],
                                         strlen (found->pdata[0]) - strlen ("trunk."));
      for (guint i = 0; i < vl_safetensors_n_tensors (st); i++)
        {
          const char *name = vl_safetensors_get (st, i)->name;
          if (g_str_has_prefix (name, head) && g_str_has_prefix (name + strlen (head), "head."))
            {
              g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: an OpenCLIP model with a timm "
                           "trunk and a projection head after it (%s) is not read; its trunk "
                           "alone (timm_proj none, as OpenCLIP's SigLIP models) is", file, name);
              return NULL;
            }
        }
    }
  if (found->len == 1)
    return g_strdup (found->pdata[0]);
  if (found->len > 1)
    {
      GString *list = g_string_new (NULL);
      for (guint i = 0; i < MIN (found->len, 4u); i++)
        g_string_append_printf (list, "%s\"%s\"", i ? ", " : "", (char *) found->pdata[i]);
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: %u ViTs in one checkpoint (under %s%s); "
                   "save the one to open on its own (its state_dict)", file, found->len,
                   list->str, found->len > 4 ? ", …" : "");
      g_string_free (list, TRUE);
    }
  return NULL;
}

gboolean
vl_families_load (VlModel *m, const char *path, GError **error)
{
  g_autofree char *st_path = NULL;
  if (!resolve_checkpoint (path, &st_path, error))
    return FALSE;
  g_autoptr(VlSafetensors) st = vl_safetensors_open (st_path, error);
  if (st == NULL)
    return FALSE;

  Source s = { st, vl_safetensors_path (st), "", g_hash_table_new (g_str_hash, g_str_equal),
               NULL };
  const char *family = NULL;
  gboolean (*load) (VlModel *, Source *, Config *, GError **) = NULL;
  const char *config_name = "config.json";
  if (vl_safetensors_lookup (st, "patch_embed.proj.weight") &&
      vl_safetensors_lookup (st, "mask_token"))
    family = "dinov2", load = load_dinov2;
  else if (vl_safetensors_lookup (st, "patch_embed.proj.weight"))
    family = "timm", load = load_timm;
  else if (vl_safetensors_lookup (st, "visual.conv1.weight"))
    family = "openclip", load = load_openclip, s.prefix = "visual.", config_name = "open_clip_config.json";
  else if (vl_safetensors_lookup (st, "conv1.weight") && vl_safetensors_lookup (st, "class_embedding"))
    family = "openclip", load = load_openclip, config_name = "open_clip_config.json";
  else if (vl_safetensors_lookup (st, "vit.embeddings.patch_embeddings.projection.weight"))
    family = "hf-vit", load = load_hf, s.prefix = "vit.";
  else if (vl_safetensors_lookup (st, "vision_model.embeddings.patch_embedding.weight") &&
           !vl_safetensors_lookup (st, "vision_model.embeddings.class_embedding"))
    family = "hf-siglip", load = load_hf_siglip, s.prefix = "vision_model.";
  else if (vl_safetensors_lookup (st, "vision_model.embeddings.patch_embedding.weight"))
    family = "hf-clip", load = load_hf_clip, s.prefix = "vision_model.";
  else if (vl_safetensors_lookup (st, "deit.embeddings.patch_embeddings.projection.weight"))
    family = "hf-deit", load = load_hf, s.prefix = "deit.";
  else if (vl_safetensors_lookup (st, "dinov2.embeddings.patch_embeddings.projection.weight"))
    family = "hf-dinov2", load = load_hf, s.prefix = "dinov2.";
  else if (vl_safetensors_lookup (st, "dinov2_with_registers.embeddings.patch_embeddings."
                                      "projection.weight"))
    family = "hf-dinov2", load = load_hf, s.prefix = "dinov2_with_registers.";
  else if (vl_safetensors_lookup (st, "embeddings.patch_embeddings.projection.weight"))
    family = vl_safetensors_lookup (st, "encoder.layer.0.norm1.weight") ? "hf-dinov2" : "hf-vit",
    load = load_hf;
  else if (vl_safetensors_lookup (st, "conv_proj.weight") && vl_safetensors_lookup (st, "class_token"))
    family = "torchvision", load = load_torchvision;
  g_autofree char *nested = family ? NULL : nested_timm_prefix (st, s.file, error);
  if (nested)
    {
      s.prefix = nested;
      family = src_lookup (&s, "mask_token") ? "dinov2" : "timm";
      load = src_lookup (&s, "mask_token") ? load_dinov2 : load_timm;
      if (g_str_has_suffix (nested, "visual.trunk."))
        config_name = "open_clip_config.json";   /* OpenCLIP's TimmModel */
    }
  else if (family == NULL && error && *error)
    {
      g_hash_table_unref (s.used);
      return FALSE;
    }

  if (family == NULL)
    {
      GString *names = g_string_new (NULL);
      guint n = vl_safetensors_n_tensors (st);
      for (guint i = 0; i < MIN (n, 5u); i++)
        g_string_append_printf (names, "%s%s", i ? ", " : "", vl_safetensors_get (st, i)->name);
      if (n > 5)
        g_string_append (names, ", …");
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                   "%s: not a ViT checkpoint vitlab knows (tensors: %s); it reads timm (DINOv2 "
                   "too), OpenCLIP / OpenAI CLIP visual towers, Hugging Face ViT, DeiT, DINOv2 "
                   "and CLIP, torchvision ViT naming, and JAX ViTs (AugReg, big_vision)",
                   s.file, n ? names->str : "none");
      g_string_free (names, TRUE);
      g_hash_table_unref (s.used);
      return FALSE;
    }

  Config c = { 0 };
  g_autofree char *cfg_path = file_beside (st_path, config_name);
  if (cfg_path == NULL)
    cfg_path = file_beside (st_path, strcmp (config_name, "config.json") ? "config.json"
                                                                         : "open_clip_config.json");
  gboolean ok = cfg_path == NULL || config_load (&c, cfg_path, error);
  if (ok)
    {
      /* a JAX ViT read under timm's names (vl-jax-vit.h) keeps the name of where it came from */
      GHashTable *meta = vl_safetensors_metadata (st);
      const char *jax = meta ? g_hash_table_lookup (meta, "vitlab.converted_from") : NULL;
      if (jax && load == load_timm)
        family = "jax";
      m->geo.family = g_strdup (family);
      const char *arch = config_string (c.root, "architecture");
      if (!arch && jax)
        arch = jax;
      JsonObject *mc = vl_json_object_member (c.root, "model_cfg");
      if (!arch && c.root && json_object_has_member (c.root, "architectures"))
        {
          JsonNode *a = json_object_get_member (c.root, "architectures");
          if (JSON_NODE_HOLDS_ARRAY (a) && json_array_get_length (json_node_get_array (a)) > 0)
            arch = json_array_get_string_element (json_node_get_array (a), 0);
        }
      /* OpenCLIP's TimmModel names its trunk's timm architecture */
      if (!arch && mc)
        arch = config_string (vl_json_object_member (mc, "vision_cfg"), "timm_model_name");
      m->geo.architecture = g_strdup (arch ? arch : mc ? "open_clip" : family);
      /* a nested ViT's tensors keep their prefix, and so do those of a head built later */
      m->source_prefix = g_strdup (nested);
      ok = load (m, &s, &c, error) && vl_model_blocks_allocated (m, error) &&
           copy_tensors (m, &s, error);
    }
  /* every tensor must have been understood: a tensor we do not know means a model we would
   * compute wrongly */
  for (guint i = 0; ok && i < vl_safetensors_n_tensors (st); i++)
    {
      const char *name = vl_safetensors_get (st, i)->name;
      if (!g_hash_table_contains (s.used, name) && !ignorable (family, s.prefix, name))
        {
          /* the parts people meet most, said by name */
          const char *what = strstr (name, "attn_pool.") ? " (an attention-pooling head in a "
                             "form vitlab does not compute: it reads timm's AttentionPoolLatent "
                             "as SigLIP's)"
                           : strstr (name, "rope") || strstr (name, "freqs") ? " (rotary "
                             "position embeddings, as EVA-02's; vitlab's are learnt and added)"
                           : strstr (name, "relative_position") ? " (relative position biases, "
                             "as BEiT's)" : "";
          g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                       "%s: tensor %s is not part of the %s ViT layout vitlab reads%s", s.file,
                       name, family, what);
          ok = FALSE;
        }
    }
  if (ok)
    load_class_names (m, &c, st_path);
  /* HF keeps preprocessing in preprocessor_config.json */
  if (ok && g_str_has_prefix (family, "hf-"))
    {
      g_autofree char *pp_path = file_beside (st_path, "preprocessor_config.json");
      Config pc = { 0 };
      if (pp_path)
        ok = config_load (&pc, pp_path, error) &&
             read_mean_std (&pc, pc.root, "image_mean", "image_std", &m->geo, error) &&
             (strcmp (family, "hf-dinov2") != 0 || hf_crop_size (&pc, &m->geo, error));
      config_clear (&pc);
    }
  config_clear (&c);
  g_hash_table_unref (s.used);
  g_clear_pointer (&s.made, g_hash_table_unref);
  return ok;
}

/* ------------------------------------------------------------------ random models */

gboolean
vl_geometry_parse (const char *spec, VlGeometry *g, GError **error)
{
  memset (g, 0, sizeof *g);
  g->in_chans = 3;
  g->class_token = TRUE;
  g->eps = 1e-6f;
  int img = 0, mlp = 0;
  double mean[4] = { 0.5, 0.5, 0.5, 0.5 }, std[4] = { 0.5, 0.5, 0.5, 0.5 };
  int n_mean = 0, n_std = 0;
  g_auto(GStrv) parts = g_strsplit (spec ? spec : "", ",", -1);
  const char *pending = NULL;   /* mean/std take several values: "mean=0.5,0.4,0.3" */
  for (int i = 0; parts[i]; i++)
    {
      char *item = g_strstrip (parts[i]);
      if (*item == '\0')
        continue;
      char *eq = strchr (item, '=');
      const char *key = pending, *val = item;
      if (eq)
        {
          *eq = '\0';
          key = item;
          val = eq + 1;
          pending = NULL;
        }
      char *end = NULL;
      double v = key ? g_ascii_strtod (val, &end) : 0;
      if (!key || end == val || *end != '\0' || !isfinite (v))
        {
          g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                       "geometry \"%s\": \"%s\" is not KEY=NUMBER", spec, item);
          return FALSE;
        }
      if (strcmp (key, "mean") == 0 || strcmp (key, "std") == 0)
        {
          double *dst = key[0] == 'm' ? mean : std;
          int *n = key[0] == 'm' ? &n_mean : &n_std;
          if (*n < 4)
            dst[(*n)++] = v;
          pending = key[0] == 'm' ? "mean" : "std";
          continue;
        }
      /* every integer key is bounded below; a larger value would not fit the cast */
      int iv = v >= -1e6 && v <= 1e6 ? (int) v : -1;
      if (strcmp (key, "img") == 0) img = iv;
      else if (strcmp (key, "patch") == 0) g->patch = iv;
      else if (strcmp (key, "chans") == 0) g->in_chans = iv;
      else if (strcmp (key, "width") == 0) g->width = iv;
      else if (strcmp (key, "depth") == 0) g->depth = iv;
      else if (strcmp (key, "heads") == 0) g->heads = iv;
      else if (strcmp (key, "mlp") == 0) mlp = iv;
      else if (strcmp (key, "eps") == 0) g->eps = (float) v;
      /* SigLIP's shape: no class token, an attention pool, the tanh GELU (0 or 1 each) */
      else if (strcmp (key, "cls") == 0 && (iv == 0 || iv == 1)) g->class_token = iv;
      else if (strcmp (key, "map") == 0 && (iv == 0 || iv == 1)) g->attn_pool = iv;
      else if (strcmp (key, "gelu_tanh") == 0 && (iv == 0 || iv == 1)) g->gelu_tanh = iv;
      else
        {
          g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                       "geometry \"%s\": unknown key \"%s\" or value (img, patch, chans, "
                       "width, depth, heads, mlp, mean, std, eps; cls, map, gelu_tanh: 0 or 1)",
                       spec, key);
          return FALSE;
        }
    }
  if (g->heads == 0 && g->width % 64 == 0)
    g->heads = g->width / 64;
  if (img <= 0 || g->patch <= 0 || img % g->patch || g->width <= 0 || g->depth <= 0 ||
      g->heads <= 0 || g->width % g->heads || g->in_chans < 1 || g->in_chans > 4 ||
      img / g->patch > 128 || g->width > 8192 || g->depth > 256 || !(g->eps > 0))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "geometry \"%s\": needs img (a multiple of patch), patch, width, depth and "
                   "heads (dividing width) within sane limits", spec);
      return FALSE;
    }
  g->grid = img / g->patch;
  g->mlp = mlp > 0 ? mlp : 4 * g->width;
  for (int c = 0; c < 4; c++)
    {
      g->mean[c] = (float) mean[n_mean > 1 ? MIN (c, n_mean - 1) : 0];
      g->std[c] = (float) std[n_std > 1 ? MIN (c, n_std - 1) : 0];
      if (!(g->std[c] > 0))
        {
          g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "geometry \"%s\": std must be positive",
                       spec);
          return FALSE;
        }
    }
  g->input_size = img;
  g->crop_pct = 1.0;
  return TRUE;
}

VlModel *
vl_model_new_random (const VlGeometry *geometry, int num_classes, uint64_t seed)
{
  VlModel *m = vl_model_alloc ();
  VlGeometry *g = &m->geo;
  *g = *geometry;
  g->family = g_strdup ("timm");
  g->architecture = g_strdup (geometry->architecture ? geometry->architecture : "vit");
  g->interpolation = g_strdup (geometry->interpolation ? geometry->interpolation : "bicubic");
  if (g->eps <= 0)
    g->eps = 1e-6f;
  m->path = g_strdup ("(random)");
  build_internal (m, !g->pre_norm);
  groups_timm (m);
  vl_model_finish_backbone (m);
  g_autoptr(GError) error = NULL;
  if (!vl_model_blocks_allocated (m, &error))
    g_error ("%s", error->message);   /* callers have no error to report it through */
  if (g->input_size <= 0)
    g->input_size = g->img_size;
  if (g->crop_pct <= 0)
    g->crop_pct = 1.0;
  if (g->std[0] <= 0)
    for (int i = 0; i < 4; i++)
      g->mean[i] = g->std[i] = 0.5f;

  VlRng rng;
  vl_rng_seed (&rng, seed);
  for (int i = 0; i < m->n_backbone; i++)
    {
      VlParam *p = vl_param (m, i);
      if (p->ndim == 1 && i != m->ix.patch_b && !g_str_has_suffix (p->name, "weight") &&
          !g_str_has_suffix (p->name, ".gamma"))
        continue;   /* biases stay zero */
      if (g_str_has_suffix (p->name, ".gamma"))
        for (int64_t k = 0; k < p->numel; k++)
          p->data[k] = 1e-5f;          /* timm's init_values for layer scale */
      else if (p->ndim == 1 && g_str_has_suffix (p->name, "weight"))
        for (int64_t k = 0; k < p->numel; k++)
          p->data[k] = 1.0f;
      else if (i == m->ix.cls || i == m->ix.dist || i == m->ix.reg)
        for (int64_t k = 0; k < p->numel; k++)
          p->data[k] = (float) (vl_rng_normal (&rng) * 1e-6);
      else if (i == m->ix.patch_w || i == m->ix.patch_b)
        {
          /* timm leaves the patch conv at PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
          double bound = 1.0 / sqrt ((double) g->in_chans * g->patch * g->patch);
          for (int64_t k = 0; k < p->numel; k++)
            p->data[k] = (float) ((2.0 * vl_rng_uniform (&rng) - 1.0) * bound);
        }
      else if (i == m->ix.ap + AP_LATENT && m->ix.ap >= 0)
        for (int64_t k = 0; k < p->numel; k++)   /* AttentionPoolLatent: std latent_dim^-0.5 */
          p->data[k] = (float) vl_rng_trunc_normal (&rng, 1.0 / sqrt ((double) g->width));
      else if (p->ndim >= 2)
        for (int64_t k = 0; k < p->numel; k++)
          p->data[k] = (float) vl_rng_trunc_normal (&rng, 0.02);
    }
  m->pool = g->attn_pool ? VL_POOL_MAP : g->class_token ? VL_POOL_TOKEN : VL_POOL_AVG;
  vl_model_set_head (m, VL_HEAD_LINEAR, num_classes, 0, seed ^ 0x5eedull);
  return m;
}
