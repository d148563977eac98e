/* vl-model.c: loading a timm ViT checkpoint, the parameter table, layer groups, heads, AdamW. */
#include "vl-model-private.h"
#include "vl-kernels.h"
#include "vl-rng.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *block_names[B_N_PARAMS] = {
  "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias",
  "attn.proj.weight", "attn.proj.bias", "norm2.weight", "norm2.bias",
  "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias",
};

/* ------------------------------------------------------------------ parameter table */

static void
add_param (VlModel *m, const char *name, int group, int ndim, int64_t s0, int64_t s1,
           int64_t s2, int64_t s3)
{
  VlParam p = { 0 };
  int64_t s[4] = { s0, s1, s2, s3 };
  p.name = g_strdup (name);
  p.ndim = ndim;
  p.numel = 1;
  for (int i = 0; i < ndim; i++)
    {
      p.shape[i] = s[i];
      p.numel *= s[i];
    }
  p.group = group;
  /* timm's convention: no weight decay on 1-D parameters (biases, norms), pos_embed, cls_token */
  p.decay = ndim >= 2 && strcmp (name, "pos_embed") != 0 && strcmp (name, "cls_token") != 0;
  g_array_append_val (m->params, p);
}

static void
param_clear (gpointer data)
{
  VlParam *p = data;
  g_free (p->name);
}

/* Points params[first .. n) into block `which`, allocating it (zeroed). Each tensor starts on a
 * 64-byte boundary. */
static void
layout_block (VlModel *m, int which, int first, int n)
{
  int64_t total = 0;
  for (int i = first; i < n; i++)
    total += (vl_param (m, i)->numel + 15) & ~(int64_t) 15;
  g_aligned_free (m->block[which]);
  g_aligned_free (m->grad_block[which]);
  g_aligned_free (m->m_block[which]);
  g_aligned_free (m->v_block[which]);
  m->grad_block[which] = m->m_block[which] = m->v_block[which] = NULL;
  m->block[which] = total ? g_aligned_alloc0 (total, sizeof (float), 64) : NULL;
  m->block_size[which] = total;
  int64_t off = 0;
  for (int i = first; i < n; i++)
    {
      VlParam *p = vl_param (m, i);
      p->data = m->block[which] + off;
      p->grad = p->m = p->v = NULL;
      p->step = 0;
      off += (p->numel + 15) & ~(int64_t) 15;
    }
}

static void
build_backbone_params (VlModel *m)
{
  const VlGeometry *g = &m->geo;
  char name[128];
  add_param (m, "patch_embed.proj.weight", 0, 4, g->width, g->in_chans, g->patch, g->patch);
  add_param (m, "patch_embed.proj.bias", 0, 1, g->width, 0, 0, 0);
  add_param (m, "cls_token", 0, 3, 1, 1, g->width, 0);
  add_param (m, "pos_embed", 0, 3, 1, g->n_tokens, g->width, 0);
  for (int l = 0; l < g->depth; l++)
    {
      int grp = vl_group_of_block (l);
      int64_t shapes[B_N_PARAMS][2] = {
        { g->width, 0 }, { g->width, 0 }, { 3 * g->width, g->width }, { 3 * g->width, 0 },
        { g->width, g->width }, { g->width, 0 }, { g->width, 0 }, { g->width, 0 },
        { g->mlp, g->width }, { g->mlp, 0 }, { g->width, g->mlp }, { g->width, 0 },
      };
      for (int j = 0; j < B_N_PARAMS; j++)
        {
          g_snprintf (name, sizeof name, "blocks.%d.%s", l, block_names[j]);
          add_param (m, name, grp, shapes[j][1] ? 2 : 1, shapes[j][0], shapes[j][1], 0, 0);
        }
    }
  add_param (m, "norm.weight", g->depth + 1, 1, g->width, 0, 0, 0);
  add_param (m, "norm.bias", g->depth + 1, 1, g->width, 0, 0, 0);
  m->n_backbone = (int) m->params->len;
  layout_block (m, 0, 0, m->n_backbone);
}

static void
drop_head_params (VlModel *m)
{
  if ((int) m->params->len > m->n_backbone)
    g_array_set_size (m->params, m->n_backbone);
  layout_block (m, 1, m->n_backbone, m->n_backbone);
}

static void
build_head_params (VlModel *m, VlHeadKind kind, int num_classes, int hidden)
{
  drop_head_params (m);
  m->head_kind = num_classes > 0 ? kind : VL_HEAD_NONE;
  m->num_classes = m->head_kind == VL_HEAD_NONE ? 0 : num_classes;
  m->head_hidden = m->head_kind == VL_HEAD_MLP ? hidden : 0;
  int grp = vl_head_group (m);
  int W = m->geo.width;
  if (m->head_kind == VL_HEAD_LINEAR)
    {
      add_param (m, "head.weight", grp, 2, num_classes, W, 0, 0);
      add_param (m, "head.bias", grp, 1, num_classes, 0, 0, 0);
    }
  else if (m->head_kind == VL_HEAD_MLP)
    {
      add_param (m, "head.fc1.weight", grp, 2, hidden, W, 0, 0);
      add_param (m, "head.fc1.bias", grp, 1, hidden, 0, 0, 0);
      add_param (m, "head.fc2.weight", grp, 2, num_classes, hidden, 0, 0);
      add_param (m, "head.fc2.bias", grp, 1, num_classes, 0, 0, 0);
    }
  layout_block (m, 1, m->n_backbone, (int) m->params->len);

  gboolean *old = m->trainable;
  int old_n = m->n_groups;
  m->n_groups = m->geo.depth + 2 + (m->head_kind != VL_HEAD_NONE);
  m->trainable = g_new0 (gboolean, m->geo.depth + 3);
  if (old)
    memcpy (m->trainable, old, sizeof (gboolean) * MIN (old_n, m->geo.depth + 3));
  g_free (old);
  if (m->acts)
    {
      vl_acts_free (m->acts);
      m->acts = NULL;
    }
}

static VlModel *
model_new (void)
{
  VlModel *m = g_new0 (VlModel, 1);
  m->params = g_array_new (FALSE, TRUE, sizeof (VlParam));
  g_array_set_clear_func (m->params, param_clear);
  return m;
}

void
vl_model_free (VlModel *m)
{
  if (m == NULL)
    return;
  if (m->acts)
    vl_acts_free (m->acts);
  g_array_unref (m->params);
  for (int i = 0; i < 2; i++)
    {
      g_aligned_free (m->block[i]);
      g_aligned_free (m->grad_block[i]);
      g_aligned_free (m->m_block[i]);
      g_aligned_free (m->v_block[i]);
    }
  g_free (m->trainable);
  g_strfreev (m->class_names);
  g_free (m->geo.family);
  g_free (m->geo.architecture);
  g_free (m->geo.interpolation);
  g_free (m->path);
  g_free (m);
}

/* ------------------------------------------------------------------ config.json */

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

static JsonObject *
config_object (JsonObject *o, const char *key)
{
  if (o == NULL || !json_object_has_member (o, key))
    return NULL;
  JsonNode *n = json_object_get_member (o, key);
  return JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
}

/* Reads a number member; FALSE when absent (or null); an error when present but not a number. */
static gboolean
config_number (const Config *c, JsonObject *o, const char *key, double *out, gboolean *ok,
               GError **error)
{
  if (o == NULL || !json_object_has_member (o, key))
    return FALSE;
  JsonNode *n = json_object_get_member (o, key);
  if (JSON_NODE_HOLDS_NULL (n))
    return FALSE;
  if (!JSON_NODE_HOLDS_VALUE (n) ||
      (json_node_get_value_type (n) != G_TYPE_INT64 && json_node_get_value_type (n) != G_TYPE_DOUBLE))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: \"%s\" is not a number", c->path, key);
      *ok = FALSE;
      return FALSE;
    }
  *out = json_node_get_value_type (n) == G_TYPE_INT64 ? (double) json_node_get_int (n)
                                                       : json_node_get_double (n);
  return TRUE;
}

/* Reads an array of up to `max` numbers; returns the count, 0 when absent, -1 on error. */
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
    {
      JsonNode *e = json_array_get_element (a, i);
      if (!JSON_NODE_HOLDS_VALUE (e) || (json_node_get_value_type (e) != G_TYPE_INT64 &&
                                         json_node_get_value_type (e) != G_TYPE_DOUBLE))
        goto bad;
      out[i] = json_node_get_value_type (e) == G_TYPE_INT64 ? (double) json_node_get_int (e)
                                                             : json_node_get_double (e);
    }
  return len;
bad:
  g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: \"%s\" is not an array of at most %d numbers",
               c->path, key, max);
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

/* ------------------------------------------------------------------ loading */

static gboolean
check_shape (const char *file, const VlTensorInfo *t, int ndim, const int64_t *shape,
             GError **error)
{
  gboolean same = t->ndim == ndim;
  for (int i = 0; same && i < ndim; i++)
    same = t->shape[i] == shape[i];
  if (same)
    return TRUE;
  g_autofree char *found = vl_shape_to_string (t->ndim, t->shape);
  g_autofree char *want = vl_shape_to_string (ndim, shape);
  g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
               "%s: tensor %s has shape %s, expected %s", file, t->name, found, want);
  return FALSE;
}

static const VlTensorInfo *
require_tensor (VlSafetensors *st, const char *name, int min_dims, int max_dims, GError **error)
{
  const VlTensorInfo *t = vl_safetensors_lookup (st, name);
  if (t == NULL)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s: no tensor %s",
                   vl_safetensors_path (st), name);
      return NULL;
    }
  if (t->ndim < min_dims || t->ndim > max_dims)
    {
      g_autofree char *found = vl_shape_to_string (t->ndim, t->shape);
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                   "%s: tensor %s has shape %s, expected %d to %d dimensions",
                   vl_safetensors_path (st), name, found, min_dims, max_dims);
      return NULL;
    }
  switch (t->dtype)
    {
    case VL_DTYPE_F32: case VL_DTYPE_F16: case VL_DTYPE_BF16: case VL_DTYPE_F64:
      return t;
    default:
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                   "%s: tensor %s has dtype %s, expected a floating-point type (F32, F16, BF16)",
                   vl_safetensors_path (st), name, vl_dtype_name (t->dtype));
      return NULL;
    }
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

static gboolean
resolve_checkpoint (const char *path, char **st_path, char **config_path, GError **error)
{
  if (g_file_test (path, G_FILE_TEST_IS_DIR))
    {
      *st_path = g_build_filename (path, "model.safetensors", NULL);
      *config_path = g_build_filename (path, "config.json", NULL);
      if (!g_file_test (*st_path, G_FILE_TEST_EXISTS))
        {
          g_set_error (error, VL_ERROR, VL_ERROR_MISSING,
                       "%s: checkpoint folder has no model.safetensors", path);
          return FALSE;
        }
      if (!g_file_test (*config_path, G_FILE_TEST_EXISTS))
        {
          g_set_error (error, VL_ERROR, VL_ERROR_MISSING,
                       "%s: checkpoint folder has no config.json", path);
          return FALSE;
        }
      return TRUE;
    }
  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_IO, "%s: no such file or folder", path);
      return FALSE;
    }
  *st_path = g_strdup (path);
  g_autofree char *dir = g_path_get_dirname (path);
  char *beside = g_build_filename (dir, "config.json", NULL);
  if (g_file_test (beside, G_FILE_TEST_IS_REGULAR))
    *config_path = beside;
  else
    g_free (beside);
  return TRUE;
}

static char **
read_label_file (const char *path, int expected)
{
  g_autofree char *text = NULL;
  if (!g_file_get_contents (path, &text, NULL, NULL))
    return NULL;
  g_auto(GStrv) lines = g_strsplit (text, "\n", -1);
  GPtrArray *names = g_ptr_array_new ();
  for (int i = 0; lines[i]; i++)
    {
      char *l = g_strstrip (lines[i]);
      if (*l)
        g_ptr_array_add (names, g_strdup (l));
    }
  if ((int) names->len != expected)
    {
      g_ptr_array_set_free_func (names, g_free);
      g_ptr_array_free (names, TRUE);
      return NULL;
    }
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
  /* timm's hub config: "label_names": [...] */
  if (root && json_object_has_member (root, "label_names"))
    {
      JsonNode *n = json_object_get_member (root, "label_names");
      if (JSON_NODE_HOLDS_ARRAY (n) && (int) json_array_get_length (json_node_get_array (n)) == K)
        {
          JsonArray *a = json_node_get_array (n);
          m->class_names = g_new0 (char *, K + 1);
          for (int i = 0; i < K; i++)
            {
              const char *s = json_node_get_string (json_array_get_element (a, i));
              m->class_names[i] = g_strdup (s ? s : "");
            }
          return;
        }
    }
  g_autofree char *dir = g_path_get_dirname (st_path);
  const char *files[] = { "imagenet-classes.txt", "labels.txt", "classes.txt" };
  for (guint i = 0; i < G_N_ELEMENTS (files); i++)
    {
      g_autofree char *p = g_build_filename (dir, files[i], NULL);
      char **names = read_label_file (p, K);
      if (names)
        {
          m->class_names = names;
          return;
        }
    }
}

/* Recognises the layout and derives the geometry from the tensor shapes. */
static gboolean
read_geometry (VlModel *m, VlSafetensors *st, Config *c, GError **error)
{
  const char *file = vl_safetensors_path (st);
  VlGeometry *g = &m->geo;
  gboolean ok = TRUE;

  if (vl_safetensors_lookup (st, "patch_embed.proj.weight") == NULL ||
      vl_safetensors_lookup (st, "blocks.0.norm1.weight") == NULL)
    {
      const VlTensorInfo *first = vl_safetensors_n_tensors (st) ? vl_safetensors_get (st, 0) : NULL;
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                   "%s: not a ViT checkpoint in timm naming (no patch_embed.proj.weight / "
                   "blocks.0.norm1.weight; first tensor is %s)", file,
                   first ? first->name : "none: the file holds no tensors");
      return FALSE;
    }
  g->family = g_strdup ("timm");

  const VlTensorInfo *pw = require_tensor (st, "patch_embed.proj.weight", 4, 4, error);
  if (!pw)
    return FALSE;
  if (pw->shape[2] != pw->shape[3] || pw->shape[2] <= 0 || pw->shape[0] <= 0 || pw->shape[1] <= 0)
    {
      g_autofree char *s = vl_shape_to_string (pw->ndim, pw->shape);
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                   "%s: tensor patch_embed.proj.weight has shape %s, expected [width,channels,p,p] "
                   "with a square patch", file, s);
      return FALSE;
    }
  g->width = (int) pw->shape[0];
  g->in_chans = (int) pw->shape[1];
  g->patch = (int) pw->shape[2];
  if (g->width > 65536 || g->in_chans > 16 || g->patch > 1024)
    {
      g_autofree char *s = vl_shape_to_string (pw->ndim, pw->shape);
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                   "%s: tensor patch_embed.proj.weight has an implausible shape %s", file, s);
      return FALSE;
    }

  const VlTensorInfo *pos = require_tensor (st, "pos_embed", 3, 3, error);
  if (!pos)
    return FALSE;
  int64_t T = pos->shape[1];
  int grid = (int) llround (sqrt ((double) (T - 1)));
  if (pos->shape[0] != 1 || pos->shape[2] != g->width || T < 2 || (int64_t) grid * grid != T - 1)
    {
      g_autofree char *s = vl_shape_to_string (pos->ndim, pos->shape);
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                   "%s: tensor pos_embed has shape %s, expected [1,1+G*G,%d] (a CLS entry and a "
                   "square grid)", file, s, g->width);
      return FALSE;
    }
  g->grid = grid;
  g->n_tokens = (int) T;
  g->img_size = grid * g->patch;

  int depth = 0;
  for (;; depth++)
    {
      char name[64];
      g_snprintf (name, sizeof name, "blocks.%d.norm1.weight", depth);
      if (!vl_safetensors_lookup (st, name))
        break;
    }
  g->depth = depth;
  const VlTensorInfo *fc1 = require_tensor (st, "blocks.0.mlp.fc1.weight", 2, 2, error);
  if (!fc1)
    return FALSE;
  g->mlp = (int) fc1->shape[0];

  JsonObject *args = config_object (c->root, "model_args");
  GHashTable *meta = vl_safetensors_metadata (st);
  const char *meta_heads = meta ? g_hash_table_lookup (meta, "num_heads") : NULL;
  const char *meta_eps = meta ? g_hash_table_lookup (meta, "layer_norm_eps") : NULL;
  double v;
  if (config_number (c, args, "num_heads", &v, &ok, error))
    g->heads = (int) v;
  else if (!ok)
    return FALSE;
  else if (meta_heads)   /* files vitlab wrote record it */
    g->heads = atoi (meta_heads);
  else if (g->width % 64 == 0)
    g->heads = g->width / 64;   /* timm's ViTs use 64-wide heads */
  else
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISSING,
                   "%s: width %d is not a multiple of 64, so the number of heads cannot be "
                   "inferred; add model_args.num_heads to config.json", file, g->width);
      return FALSE;
    }
  if (g->heads <= 0 || g->width % g->heads != 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                   "%s: num_heads %d does not divide the width %d (tensor "
                   "patch_embed.proj.weight)", c->path ? c->path : file, g->heads, g->width);
      return FALSE;
    }
  g->head_dim = g->width / g->heads;

  g->eps = 1e-6f;
  if (config_number (c, c->root, "layer_norm_eps", &v, &ok, error) ||
      config_number (c, args, "layer_norm_eps", &v, &ok, error) ||
      config_number (c, args, "norm_eps", &v, &ok, error))
    g->eps = (float) v;
  else if (ok && meta_eps)
    g->eps = (float) g_ascii_strtod (meta_eps, NULL);
  if (!ok)
    return FALSE;
  if (!(g->eps > 0 && g->eps < 1))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: layer_norm_eps %g is out of range",
                   c->path ? c->path : file, g->eps);
      return FALSE;
    }

  /* The config must agree with the tensors. */
  if (!config_agrees (c, args, "embed_dim", g->width, "patch_embed.proj.weight", &ok, error) ||
      !config_agrees (c, args, "patch_size", g->patch, "patch_embed.proj.weight", &ok, error) ||
      !config_agrees (c, args, "in_chans", g->in_chans, "patch_embed.proj.weight", &ok, error) ||
      !config_agrees (c, args, "depth", g->depth, "blocks.N.*", &ok, error) ||
      !config_agrees (c, args, "img_size", g->img_size, "pos_embed", &ok, error) ||
      !config_agrees (c, args, "mlp_ratio", (double) g->mlp / g->width, "blocks.0.mlp.fc1.weight",
                      &ok, error))
    return FALSE;

  const char *arch = config_string (c->root, "architecture");
  g->architecture = g_strdup (arch ? arch : "vit");

  /* pretrained_cfg: preprocessing */
  JsonObject *pc = config_object (c->root, "pretrained_cfg");
  double nums[4];
  int n;
  g->input_size = g->img_size;
  g->crop_pct = 0.9;
  for (int i = 0; i < 4; i++)
    {
      g->mean[i] = 0.5f;
      g->std[i] = 0.5f;
    }
  if ((n = config_numbers (c, pc, "input_size", nums, 3, error)) < 0)
    return FALSE;
  if (n == 3)
    {
      if ((int) nums[0] != g->in_chans || nums[1] != nums[2] || nums[1] < g->patch)
        {
          g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                       "%s: pretrained_cfg.input_size [%g,%g,%g] disagrees with tensor "
                       "patch_embed.proj.weight (%d channels) or is not square",
                       c->path, nums[0], nums[1], nums[2], g->in_chans);
          return FALSE;
        }
      g->input_size = (int) nums[1];
    }
  if (config_number (c, pc, "crop_pct", &v, &ok, error))
    g->crop_pct = v;
  if (!ok)
    return FALSE;
  if (!(g->crop_pct > 0.05 && g->crop_pct <= 4.0))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: crop_pct %g is out of range", c->path,
                   g->crop_pct);
      return FALSE;
    }
  const char *keys[2] = { "mean", "std" };
  float *dst[2] = { g->mean, g->std };
  for (int k = 0; k < 2; k++)
    {
      if ((n = config_numbers (c, pc, keys[k], nums, 4, error)) < 0)
        return FALSE;
      if (n == 0)
        continue;
      if (n != g->in_chans && n != 1)
        {
          g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                       "%s: pretrained_cfg.%s has %d values for %d input channels", c->path,
                       keys[k], n, g->in_chans);
          return FALSE;
        }
      for (int i = 0; i < 4; i++)
        dst[k][i] = (float) nums[n == 1 ? 0 : MIN (i, n - 1)];
    }
  for (int i = 0; i < g->in_chans; i++)
    if (!(g->std[i] > 0))
      {
        g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: pretrained_cfg.std must be positive",
                     c->path);
        return FALSE;
      }
  const char *interp = config_string (pc, "interpolation");
  g->interpolation = g_strdup (interp ? interp : "bicubic");
  return TRUE;
}

static gboolean
copy_tensor (VlSafetensors *st, VlParam *p, GError **error)
{
  const char *file = vl_safetensors_path (st);
  const VlTensorInfo *t = vl_safetensors_lookup (st, p->name);
  if (t == NULL)
    {
      g_autofree char *want = vl_shape_to_string (p->ndim, p->shape);
      g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s: no tensor %s (expected shape %s)",
                   file, p->name, want);
      return FALSE;
    }
  if (!require_tensor (st, p->name, 0, VL_MAX_DIMS, error))
    return FALSE;
  if (!check_shape (file, t, p->ndim, p->shape, error))
    return FALSE;
  vl_tensor_to_f32 (t, p->data);
  return TRUE;
}

VlModel *
vl_model_load (const char *path, GError **error)
{
  g_autofree char *st_path = NULL, *config_path = NULL;
  if (!resolve_checkpoint (path, &st_path, &config_path, error))
    return NULL;
  g_autoptr(VlSafetensors) st = vl_safetensors_open (st_path, error);
  if (st == NULL)
    return NULL;

  Config c = { 0 };
  if (config_path && !config_load (&c, config_path, error))
    {
      config_clear (&c);
      return NULL;
    }

  g_autoptr(VlModel) m = model_new ();
  m->path = g_strdup (path);
  if (!read_geometry (m, st, &c, error))
    {
      config_clear (&c);
      return NULL;
    }

  /* the head: present when head.weight is */
  int K = 0;
  const VlTensorInfo *hw = vl_safetensors_lookup (st, "head.weight");
  if (hw)
    {
      if (hw->ndim != 2 || hw->shape[1] != m->geo.width || hw->shape[0] <= 0)
        {
          int64_t want[2] = { hw->ndim == 2 ? hw->shape[0] : 0, m->geo.width };
          check_shape (st_path, hw, 2, want, error);
          config_clear (&c);
          return NULL;
        }
      K = (int) hw->shape[0];
    }
  gboolean ok = TRUE;
  if (!config_agrees (&c, c.root, "num_classes", K, "head.weight", &ok, error))
    {
      config_clear (&c);
      return NULL;
    }

  build_backbone_params (m);
  build_head_params (m, VL_HEAD_LINEAR, K, 0);
  for (guint i = 0; i < m->params->len; i++)
    if (!copy_tensor (st, vl_param (m, (int) i), error))
      {
        config_clear (&c);
        return NULL;
      }

  /* Every tensor of the file must have been understood: a tensor we do not know means a model
   * we would compute wrongly. */
  for (guint i = 0; i < vl_safetensors_n_tensors (st); i++)
    {
      const char *name = vl_safetensors_get (st, i)->name;
      if (vl_model_find_tensor (m, name) < 0)
        {
          g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                       "%s: tensor %s is not part of a plain timm ViT (layer scale, register "
                       "or distillation tokens and fc_norm are not supported yet)", st_path, name);
          config_clear (&c);
          return NULL;
        }
    }

  const char *gp = config_string (c.root, "global_pool");
  if (gp && !vl_pool_from_string (gp, &m->pool))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                   "%s: global_pool \"%s\" is not one of token, avg, max", config_path, gp);
      config_clear (&c);
      return NULL;
    }
  load_class_names (m, &c, st_path);
  config_clear (&c);
  return g_steal_pointer (&m);
}

VlModel *
vl_model_new_random (const VlGeometry *geometry, int num_classes, uint64_t seed)
{
  VlModel *m = model_new ();
  m->geo = *geometry;
  m->geo.family = g_strdup ("timm");
  m->geo.architecture = g_strdup (geometry->architecture ? geometry->architecture : "vit");
  m->geo.interpolation = g_strdup (geometry->interpolation ? geometry->interpolation : "bicubic");
  m->geo.head_dim = m->geo.width / m->geo.heads;
  m->geo.img_size = m->geo.grid * m->geo.patch;
  m->geo.n_tokens = 1 + m->geo.grid * m->geo.grid;
  if (m->geo.input_size <= 0)
    m->geo.input_size = m->geo.img_size;
  if (m->geo.crop_pct <= 0)
    m->geo.crop_pct = 1.0;
  if (m->geo.eps <= 0)
    m->geo.eps = 1e-6f;
  m->path = g_strdup ("(random)");
  build_backbone_params (m);

  VlRng rng;
  vl_rng_seed (&rng, seed);
  for (int i = 0; i < m->n_backbone; i++)
    {
      VlParam *p = vl_param (m, i);
      gboolean is_norm_w = p->ndim == 1 && g_str_has_suffix (p->name, "weight");
      if (is_norm_w)
        for (int64_t k = 0; k < p->numel; k++)
          p->data[k] = 1.0f;
      else if (i == P_CLS)
        for (int64_t k = 0; k < p->numel; k++)
          p->data[k] = (float) (vl_rng_normal (&rng) * 1e-6);
      else if (p->ndim >= 2)
        for (int64_t k = 0; k < p->numel; k++)
          p->data[k] = (float) vl_rng_trunc_normal (&rng, 0.02);
    }
  vl_model_set_head (m, VL_HEAD_LINEAR, num_classes, 0, seed ^ 0x5eedull);
  return m;
}

/* ------------------------------------------------------------------ accessors */

const VlGeometry *vl_model_geometry (VlModel *m) { return &m->geo; }
const char *vl_model_path (VlModel *m) { return m->path; }
const char *const *vl_model_class_names (VlModel *m) { return (const char *const *) m->class_names; }
VlHeadKind vl_model_head_kind (VlModel *m) { return m->head_kind; }
int vl_model_num_classes (VlModel *m) { return m->num_classes; }
VlPoolKind vl_model_pool (VlModel *m) { return m->pool; }
void vl_model_set_pool (VlModel *m, VlPoolKind pool) { m->pool = pool; }
int vl_model_n_tensors (VlModel *m) { return (int) m->params->len; }
const char *vl_model_tensor_name (VlModel *m, int i) { return vl_param (m, i)->name; }
float *vl_model_tensor_grad (VlModel *m, int i) { return vl_param (m, i)->grad; }
int vl_model_tensor_group (VlModel *m, int i) { return vl_param (m, i)->group; }
gboolean vl_model_tensor_decays (VlModel *m, int i) { return vl_param (m, i)->decay; }

int64_t
vl_model_n_params (VlModel *m)
{
  int64_t n = 0;
  for (guint i = 0; i < m->params->len; i++)
    n += vl_param (m, (int) i)->numel;
  return n;
}

float *
vl_model_tensor_data (VlModel *m, int i, int *ndim, int64_t *shape, int64_t *numel)
{
  VlParam *p = vl_param (m, i);
  if (ndim)
    *ndim = p->ndim;
  if (shape)
    memcpy (shape, p->shape, sizeof (int64_t) * p->ndim);
  if (numel)
    *numel = p->numel;
  return p->data;
}

int
vl_model_find_tensor (VlModel *m, const char *name)
{
  for (guint i = 0; i < m->params->len; i++)
    if (strcmp (vl_param (m, (int) i)->name, name) == 0)
      return (int) i;
  return -1;
}

gboolean
vl_pool_from_string (const char *s, VlPoolKind *pool)
{
  if (g_strcmp0 (s, "token") == 0 || g_strcmp0 (s, "cls") == 0)
    *pool = VL_POOL_TOKEN;
  else if (g_strcmp0 (s, "avg") == 0 || g_strcmp0 (s, "mean") == 0)
    *pool = VL_POOL_AVG;
  else if (g_strcmp0 (s, "max") == 0)
    *pool = VL_POOL_MAX;
  else
    return FALSE;
  return TRUE;
}

void
vl_model_set_head (VlModel *m, VlHeadKind kind, int num_classes, int hidden, uint64_t seed)
{
  if (kind == VL_HEAD_MLP && hidden <= 0)
    hidden = m->geo.width;
  build_head_params (m, kind, num_classes, hidden);
  g_clear_pointer (&m->class_names, g_strfreev);
  /* nn.Linear's default initialisation, which timm's reset_classifier leaves in place */
  VlRng rng;
  vl_rng_seed (&rng, seed);
  for (int i = m->n_backbone; i < (int) m->params->len; i++)
    {
      VlParam *p = vl_param (m, i);
      int64_t fan_in = p->ndim == 2 ? p->shape[1] : vl_param (m, i - 1)->shape[1];
      double bound = 1.0 / sqrt ((double) fan_in);
      for (int64_t k = 0; k < p->numel; k++)
        p->data[k] = (float) ((2.0 * vl_rng_uniform (&rng) - 1.0) * bound);
    }
}

/* ------------------------------------------------------------------ groups */

int vl_model_n_groups (VlModel *m) { return m->n_groups; }

const char *
vl_model_group_name (VlModel *m, int group)
{
  static GMutex lock;
  static GHashTable *names;  /* interned "blocks.N" strings */
  if (group == 0)
    return "stem";
  if (group == vl_norm_group (m))
    return "norm";
  if (group == vl_head_group (m))
    return "head";
  g_mutex_lock (&lock);
  if (names == NULL)
    names = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL, g_free);
  char *s = g_hash_table_lookup (names, GINT_TO_POINTER (group));
  if (s == NULL)
    {
      s = g_strdup_printf ("blocks.%d", group - 1);
      g_hash_table_insert (names, GINT_TO_POINTER (group), s);
    }
  g_mutex_unlock (&lock);
  return s;
}

int64_t
vl_model_group_n_params (VlModel *m, int group)
{
  int64_t n = 0;
  for (guint i = 0; i < m->params->len; i++)
    if (vl_param (m, (int) i)->group == group)
      n += vl_param (m, (int) i)->numel;
  return n;
}

gboolean
vl_model_group_trainable (VlModel *m, int group)
{
  g_return_val_if_fail (group >= 0 && group < m->n_groups, FALSE);
  return m->trainable[group];
}

void
vl_model_set_group_trainable (VlModel *m, int group, gboolean trainable)
{
  g_return_if_fail (group >= 0 && group < m->n_groups);
  m->trainable[group] = trainable;
}

void
vl_model_lock (VlModel *m, int unlocked_groups)
{
  for (int g = 0; g < m->n_groups; g++)
    m->trainable[g] = g >= m->n_groups - unlocked_groups;
}

int64_t
vl_model_n_trainable (VlModel *m)
{
  int64_t n = 0;
  for (int g = 0; g < m->n_groups; g++)
    if (m->trainable[g])
      n += vl_model_group_n_params (m, g);
  return n;
}

/* ------------------------------------------------------------------ gradients and AdamW */

static float *
mirror (VlModel *m, float **blocks, int which)
{
  if (blocks[which] == NULL && m->block_size[which] > 0)
    blocks[which] = g_aligned_alloc0 (m->block_size[which], sizeof (float), 64);
  return blocks[which];
}

void
vl_model_prepare_grads (VlModel *m)
{
  for (guint i = 0; i < m->params->len; i++)
    {
      VlParam *p = vl_param (m, (int) i);
      int which = (int) i >= m->n_backbone;
      if (!m->trainable[p->group])
        continue;
      if (p->grad == NULL)
        p->grad = mirror (m, m->grad_block, which) + (p->data - m->block[which]);
      memset (p->grad, 0, sizeof (float) * p->numel);
    }
}

double
vl_model_clip_grad_norm (VlModel *m, double max_norm)
{
  double sq = 0.0;
  for (guint i = 0; i < m->params->len; i++)
    {
      VlParam *p = vl_param (m, (int) i);
      if (!m->trainable[p->group] || p->grad == NULL)
        continue;
      for (int64_t k = 0; k < p->numel; k++)
        sq += (double) p->grad[k] * p->grad[k];
    }
  double norm = sqrt (sq);
  if (max_norm > 0 && norm > max_norm)
    {
      float coef = (float) (max_norm / (norm + 1e-6));
      for (guint i = 0; i < m->params->len; i++)
        {
          VlParam *p = vl_param (m, (int) i);
          if (!m->trainable[p->group] || p->grad == NULL)
            continue;
          for (int64_t k = 0; k < p->numel; k++)
            p->grad[k] *= coef;
        }
    }
  return norm;
}

void
vl_model_adamw_step (VlModel *m, const VlAdamW *opt)
{
  for (guint i = 0; i < m->params->len; i++)
    {
      VlParam *p = vl_param (m, (int) i);
      int which = (int) i >= m->n_backbone;
      if (!m->trainable[p->group] || p->grad == NULL)
        continue;
      if (p->m == NULL)
        {
          p->m = mirror (m, m->m_block, which) + (p->data - m->block[which]);
          p->v = mirror (m, m->v_block, which) + (p->data - m->block[which]);
        }
      p->step++;
      float lr = opt->lr * (opt->group_lr_scale ? opt->group_lr_scale[p->group] : 1.0f);
      vl_adamw_update (p->data, p->grad, p->m, p->v, p->numel, lr, opt->beta1, opt->beta2,
                       opt->eps, p->decay ? opt->weight_decay : 0.0f, p->step);
    }
}

double
vl_model_group_grad_norm (VlModel *m, int group)
{
  double sq = 0.0;
  if (group < 0 || group >= m->n_groups || !m->trainable[group])
    return 0.0;
  for (guint i = 0; i < m->params->len; i++)
    {
      VlParam *p = vl_param (m, (int) i);
      if (p->group != group || p->grad == NULL)
        continue;
      for (int64_t k = 0; k < p->numel; k++)
        sq += (double) p->grad[k] * p->grad[k];
    }
  return sqrt (sq);
}

void
vl_model_tensor_optim_state (VlModel *m, int index, const float **exp_avg,
                             const float **exp_avg_sq, int *step)
{
  VlParam *p = vl_param (m, index);
  if (exp_avg)
    *exp_avg = p->m;
  if (exp_avg_sq)
    *exp_avg_sq = p->v;
  if (step)
    *step = p->step;
}

void
vl_model_tensor_set_optim_state (VlModel *m, int index, const float *exp_avg,
                                 const float *exp_avg_sq, int step)
{
  VlParam *p = vl_param (m, index);
  int which = index >= m->n_backbone;
  if (p->m == NULL)
    {
      p->m = mirror (m, m->m_block, which) + (p->data - m->block[which]);
      p->v = mirror (m, m->v_block, which) + (p->data - m->block[which]);
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

/* ------------------------------------------------------------------ saving */

gboolean
vl_model_save (VlModel *m, const char *path, GError **error)
{
  g_autoptr(VlSafetensorsWriter) w = vl_safetensors_writer_new ();
  for (guint i = 0; i < m->params->len; i++)
    {
      VlParam *p = vl_param (m, (int) i);
      vl_safetensors_writer_add_f32 (w, p->name, p->ndim, p->shape, p->data);
    }
  char heads[16], eps[32];
  g_snprintf (heads, sizeof heads, "%d", m->geo.heads);
  g_ascii_dtostr (eps, sizeof eps, m->geo.eps);
  vl_safetensors_writer_add_metadata (w, "format", "pt");
  vl_safetensors_writer_add_metadata (w, "num_heads", heads);
  vl_safetensors_writer_add_metadata (w, "layer_norm_eps", eps);
  return vl_safetensors_writer_write (w, path, error);
}
