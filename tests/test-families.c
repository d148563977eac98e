/* test-families.c: checkpoints in OpenCLIP, Hugging Face, torchvision, timm-variant and JAX naming
 * against PyTorch references computed in each family's own semantics (tests/data/fam-*, made by
 * tests/data/gen-families.py); saving back under the family's names; exporting to timm naming and
 * reloading; and finite differences through the structures these families add. */
#include "vl-test-util.h"
#include "vl-model.h"

#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

typedef struct {
  const char *name;
  const char *family;
  gboolean    avg;        /* also features_avg / logits_avg */
  const char *file;       /* the checkpoint file in the folder, or NULL: the folder */
  const char *config;     /* a config.json written beside a copy of the file, or NULL */
} FamCase;

/* torchvision and Meta's torch.hub files come without a config, and these fixtures' heads cannot
 * be read off the tensors (width 32 is not a multiple of 64): their copies get a config.json that
 * names them. Google publishes a bare .npz. */
static const FamCase cases[] = {
  { "fam-openclip", "openclip", FALSE, NULL, NULL },
  { "fam-openclip-gelu", "openclip", FALSE, NULL, NULL },
  { "fam-hf-vit", "hf-vit", FALSE, NULL, NULL },
  { "fam-hf-dino", "hf-vit", FALSE, NULL, NULL },
  { "fam-torchvision", "torchvision", FALSE, "model.safetensors", "{\"num_heads\": 4}" },
  { "fam-timm-reg-ls", "timm", TRUE, NULL, NULL },
  { "fam-timm-gap", "timm", FALSE, NULL, NULL },
  { "fam-deit-dist", "timm", FALSE, NULL, NULL },
  { "fam-jax-augreg", "jax", FALSE, "model.npz", NULL },
  { "fam-jax-bv-gap", "jax", FALSE, "model.npz", NULL },
  { "fam-jax-bv-tok", "jax", FALSE, "model.npz", NULL },
  { "fam-hf-clip", "hf-clip", FALSE, NULL, NULL },
  { "fam-hf-deit", "hf-deit", FALSE, NULL, NULL },
  { "fam-hf-dinov2", "hf-dinov2", FALSE, NULL, NULL },
  { "fam-hf-dinov2-reg", "hf-dinov2", FALSE, NULL, NULL },
  { "fam-timm-siglip", "timm", TRUE, NULL, NULL },
  { "fam-hf-siglip", "hf-siglip", FALSE, NULL, NULL },
  { "fam-jax-siglip", "jax", FALSE, "model.npz", NULL },
  { "fam-dinov2-meta-reg", "dinov2", FALSE, "dinov2_vits8_reg4_pretrain.pth",
    "{\"model_args\": {\"num_heads\": 2}}" },
  { "fam-dinov2-meta", "dinov2", FALSE, "dinov2_vits8_pretrain.pth",
    "{\"model_args\": {\"num_heads\": 2}}" },
};

/* The checkpoint path of a case (a copy beside its config.json in a new folder, *tmpdir, when
 * the case has one). */
static char *
case_path (const FamCase *c, char **tmpdir)
{
  *tmpdir = NULL;
  if (c->file == NULL)
    return vl_test_data_path (c->name, NULL);
  if (c->config == NULL)
    return vl_test_data_path (c->name, c->file, NULL);
  *tmpdir = vl_test_tmpdir ();
  g_autofree char *from = vl_test_data_path (c->name, c->file, NULL);
  g_autofree char *to = g_build_filename (*tmpdir, c->file, NULL);
  g_autofree char *cfg = g_build_filename (*tmpdir, "config.json", NULL);
  vl_test_copy_file (from, to);
  g_assert_true (g_file_set_contents (cfg, c->config, -1, NULL));
  /* torchvision's folder is read as a folder (its model.safetensors found there) */
  return g_strdup (strcmp (c->name, "fam-torchvision") == 0 ? *tmpdir : to);
}

static void
rm_tree (const char *dir)
{
  if (dir == NULL)
    return;
  GDir *d = g_dir_open (dir, 0, NULL);
  const char *n;
  while (d && (n = g_dir_read_name (d)))
    {
      g_autofree char *p = g_build_filename (dir, n, NULL);
      if (g_file_test (p, G_FILE_TEST_IS_DIR))
        rm_tree (p);
      else
        g_unlink (p);
    }
  if (d)
    g_dir_close (d);
  g_rmdir (dir);
}

/* Adds st's tensors (as float32, their data kept alive in keep) to w: those whose names start
 * with `only` (NULL: all) and not with `skip` (NULL: none), each under prefix + its name. */
static void
add_tensors (VlSafetensorsWriter *w, VlSafetensors *st, GPtrArray *keep, const char *only,
             const char *skip, const char *prefix)
{
  for (guint i = 0; i < vl_safetensors_n_tensors (st); i++)
    {
      const VlTensorInfo *ti = vl_safetensors_get (st, i);
      if ((only && !g_str_has_prefix (ti->name, only)) ||
          (skip && g_str_has_prefix (ti->name, skip)))
        continue;
      float *d = g_new (float, MAX (ti->numel, 1));
      vl_tensor_to_f32 (ti, d);
      g_ptr_array_add (keep, d);
      g_autofree char *name = g_strconcat (prefix, ti->name, NULL);
      vl_safetensors_writer_add_f32 (w, name, ti->ndim, ti->shape, d);
    }
}

static void
expect (VlSafetensors *ex, const char *name, const float *got, double atol)
{
  g_assert_nonnull (got);
  int64_t n;
  g_autofree float *want = vl_test_read (ex, name, &n);
  vl_test_assert_close (name, got, want, n, atol, 0);
}

static void
forward (VlModel *m, const float *images, const VlTensorInfo *t, VlForwardFlags flags)
{
  g_autoptr(GError) error = NULL;
  g_assert_true (vl_model_forward (m, images, (int) t->shape[0], (int) t->shape[2],
                                   (int) t->shape[3], flags, &error));
  g_assert_no_error (error);
}

static void
test_parity (gconstpointer data)
{
  const FamCase *c = data;
  g_autoptr(GError) error = NULL;
  g_autofree char *tmp = NULL;
  g_autofree char *path = case_path (c, &tmp);
  g_autofree char *in = vl_test_data_path (c->name, "inputs.safetensors", NULL);
  g_autofree char *ex_path = vl_test_data_path (c->name, "expected.safetensors", NULL);
  g_autoptr(VlModel) m = vl_model_load (path, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (vl_model_geometry (m)->family, ==, c->family);
  g_autoptr(VlSafetensors) inputs = vl_test_open (in);
  g_autoptr(VlSafetensors) ex = vl_test_open (ex_path);
  g_autofree float *images = vl_test_read (inputs, "images", NULL);
  const VlTensorInfo *t = vl_safetensors_lookup (inputs, "images");
  const VlGeometry *g = vl_model_geometry (m);

  forward (m, images, t, VL_FORWARD_CAPTURE_ATTN);
  expect (ex, "tokens_final", vl_model_tokens_final (m), 1e-4);
  expect (ex, "features", vl_model_features (m), 1e-4);
  for (int l = 0; l < g->depth; l++)
    {
      char name[16];
      g_snprintf (name, sizeof name, "attn.%d", l);
      expect (ex, name, vl_model_attention (m, l), 1e-4);
    }
  int B = (int) t->shape[0];
  g_autofree float *rollout = g_new (float, B * (vl_model_n_tokens_last (m) - g->n_prefix));
  g_assert_true (vl_model_rollout (m, rollout, &error));
  expect (ex, "rollout", rollout, 1e-4);
  if (vl_safetensors_lookup (ex, "logits"))
    expect (ex, "logits", vl_model_logits (m), 1e-4);
  else
    g_assert_null (vl_model_logits (m));
  if (vl_safetensors_lookup (ex, "embedding"))
    expect (ex, "embedding", vl_model_embedding (m), 1e-4);
  /* the attention pool's probabilities (SigLIP's MAP head) */
  g_assert_true ((vl_safetensors_lookup (ex, "attn_pool.attn") != NULL) == g->attn_pool);
  if (g->attn_pool)
    {
      g_assert_cmpint (vl_model_pool (m), ==, VL_POOL_MAP);
      g_assert_true (g->gelu_tanh);
      expect (ex, "attn_pool.attn", vl_model_pool_attention (m), 1e-5);
    }
  else
    g_assert_null (vl_model_pool_attention (m));
  if (c->avg)
    {
      vl_model_set_pool (m, VL_POOL_AVG);
      forward (m, images, t, VL_FORWARD_INFER);
      expect (ex, "features_avg", vl_model_features (m), 1e-4);
      expect (ex, "logits_avg", vl_model_logits (m), 1e-4);
    }
  rm_tree (tmp);
}

/* Saving writes the family's own names and layout back: reloading gives the same tensors. */
static void
test_save_native (gconstpointer data)
{
  const FamCase *c = data;
  g_autoptr(GError) error = NULL;
  g_autofree char *tmp = NULL;
  g_autofree char *path = case_path (c, &tmp);
  g_autoptr(VlModel) m = vl_model_load (path, &error);
  g_assert_no_error (error);
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *out = g_build_filename (dir, "model.safetensors", NULL);
  g_assert_true (vl_model_save (m, out, &error));
  g_assert_no_error (error);

  /* same tensor names as the source file (OpenCLIP's text tower aside); Meta's DINOv2 with
   * registers is saved as timm's conversion of it (the class token with pos_embed's first row,
   * the rest for the patches, reg_token), which reloads to the same outputs */
  g_autofree char *src_file = g_file_test (path, G_FILE_TEST_IS_DIR)
                              ? g_build_filename (path, "model.safetensors", NULL) : g_strdup (path);
  g_autoptr(VlSafetensors) src = vl_test_open (src_file);
  g_autoptr(VlSafetensors) saved = vl_test_open (out);
  const gboolean registers = vl_safetensors_lookup (src, "register_tokens") != NULL ||
                             vl_safetensors_lookup (src, "embeddings.register_tokens") != NULL;
  if (registers)
    {
      g_autofree char *in = vl_test_data_path (c->name, "inputs.safetensors", NULL);
      g_autoptr(VlSafetensors) inputs = vl_test_open (in);
      g_autofree float *images = vl_test_read (inputs, "images", NULL);
      const VlTensorInfo *t = vl_safetensors_lookup (inputs, "images");
      /* its config beside it (transformers' names the heads) */
      g_autofree char *src_dir = g_file_test (path, G_FILE_TEST_IS_DIR) ? g_strdup (path)
                                 : g_path_get_dirname (path);
      g_autofree char *cfg_from = g_build_filename (src_dir, "config.json", NULL);
      g_autofree char *cfg_to = g_build_filename (dir, "config.json", NULL);
      if (g_file_test (cfg_from, G_FILE_TEST_EXISTS))
        vl_test_copy_file (cfg_from, cfg_to);
      g_autoptr(VlModel) again = vl_model_load (out, &error);
      g_assert_no_error (error);
      g_assert_cmpint (vl_model_geometry (again)->reg_tokens, ==, vl_model_geometry (m)->reg_tokens);
      forward (m, images, t, VL_FORWARD_INFER);
      const int64_t n = t->shape[0] * vl_model_n_tokens_last (m) * vl_model_geometry (m)->width;
      g_autofree float *want = g_memdup2 (vl_model_tokens_final (m), sizeof (float) * n);
      forward (again, images, t, VL_FORWARD_INFER);
      vl_test_assert_close ("tokens after saving", vl_model_tokens_final (again), want, n, 0, 0);
    }
  for (guint i = 0; i < vl_safetensors_n_tensors (saved); i++)
    {
      const VlTensorInfo *s = vl_safetensors_get (saved, i);
      if (registers && (strcmp (s->name, "cls_token") == 0 || strcmp (s->name, "pos_embed") == 0 ||
                        strcmp (s->name, "reg_token") == 0 ||
                        strcmp (s->name, "embeddings.cls_token") == 0 ||
                        strcmp (s->name, "embeddings.position_embeddings") == 0))
        continue;
      const VlTensorInfo *o = vl_safetensors_lookup (src, s->name);
      if (o == NULL)
        g_error ("saved tensor %s is not in the source checkpoint", s->name);
      g_assert_cmpint (s->ndim, ==, o->ndim);
      for (int d = 0; d < s->ndim; d++)
        g_assert_cmpint (s->shape[d], ==, o->shape[d]);
      g_autofree float *a = g_new (float, s->numel);
      g_autofree float *b = g_new (float, o->numel);
      vl_tensor_to_f32 (s, a);
      vl_tensor_to_f32 (o, b);
      g_assert_cmpmem (a, s->numel * sizeof (float), b, o->numel * sizeof (float));
    }
  rm_tree (dir);
  rm_tree (tmp);
}

/* Export to timm naming, reload: the same outputs (OpenCLIP: the projection became the head). */
static void
test_export_roundtrip (gconstpointer data)
{
  const FamCase *c = data;
  g_autoptr(GError) error = NULL;
  g_autofree char *tmp = NULL;
  g_autofree char *path = case_path (c, &tmp);
  g_autofree char *in = vl_test_data_path (c->name, "inputs.safetensors", NULL);
  g_autoptr(VlModel) m = vl_model_load (path, &error);
  g_assert_no_error (error);
  g_autoptr(VlSafetensors) inputs = vl_test_open (in);
  g_autofree float *images = vl_test_read (inputs, "images", NULL);
  const VlTensorInfo *t = vl_safetensors_lookup (inputs, "images");
  const VlGeometry *g = vl_model_geometry (m);
  int B = (int) t->shape[0];

  forward (m, images, t, VL_FORWARD_CAPTURE_ATTN);
  int T = vl_model_n_tokens_last (m);
  g_autofree float *tokens = g_memdup2 (vl_model_tokens_final (m), sizeof (float) * B * T * g->width);
  g_autofree float *out = NULL;
  int K = 0;
  if (g->embed_dim > 0)
    {
      K = g->embed_dim;
      out = g_memdup2 (vl_model_embedding (m), sizeof (float) * B * K);
    }
  else if (vl_model_logits (m))
    {
      K = vl_model_num_classes (m);
      out = g_memdup2 (vl_model_logits (m), sizeof (float) * B * K);
    }

  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *exp = g_build_filename (dir, "export", NULL);
  g_assert_true (vl_model_export (m, exp, &error));
  g_assert_no_error (error);
  g_autoptr(VlModel) again = vl_model_load (exp, &error);
  g_assert_no_error (error);
  const VlGeometry *g2 = vl_model_geometry (again);
  g_assert_cmpstr (g2->family, ==, "timm");
  g_assert_cmpint (g2->depth, ==, g->depth);
  g_assert_cmpint (g2->heads, ==, g->heads);
  g_assert_cmpint (g2->n_prefix, ==, g->n_prefix);
  g_assert_cmpfloat (g2->eps, ==, g->eps);
  g_assert_cmpint (g2->quick_gelu, ==, g->quick_gelu);
  g_assert_cmpint (g2->gelu_tanh, ==, g->gelu_tanh);
  g_assert_cmpint (g2->squash, ==, g->squash);
  g_assert_cmpint (g2->attn_pool, ==, g->attn_pool);
  g_assert_cmpint (g2->pre_norm, ==, g->pre_norm);
  g_assert_cmpint (vl_model_pool (again), ==, vl_model_pool (m));
  for (int c2 = 0; c2 < g->in_chans; c2++)
    g_assert_cmpfloat_with_epsilon (g2->mean[c2], g->mean[c2], 1e-6);
  forward (again, images, t, VL_FORWARD_INFER);
  vl_test_assert_close ("tokens after export", vl_model_tokens_final (again), tokens,
                        (int64_t) B * T * g->width, 0, 0);
  if (out)
    {
      g_assert_cmpint (vl_model_num_classes (again), ==, K);
      vl_test_assert_close ("head output after export", vl_model_logits (again), out,
                            (int64_t) B * K, g->embed_dim > 0 ? 1e-5 : 0, 0);
    }
  rm_tree (dir);
  rm_tree (tmp);
}

/* OpenCLIP with a new head: the export folds the projection into it. */
static void
test_export_openclip_head (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *path = vl_test_data_path ("fam-openclip", NULL);
  g_autofree char *in = vl_test_data_path ("fam-openclip", "inputs.safetensors", NULL);
  g_autoptr(VlModel) m = vl_model_load (path, &error);
  g_assert_no_error (error);
  /* groups as OpenCLIP's lock: stem, blocks 0..L-2, [last block + ln_post], proj, head */
  vl_model_set_head (m, VL_HEAD_LINEAR, 3, 0, 7);
  g_assert_cmpint (vl_model_n_groups (m), ==, 1 + 1 + 1 + 1 + 1);
  g_assert_cmpstr (vl_model_group_name (m, 2), ==, "blocks.1+ln_post");
  g_assert_cmpstr (vl_model_group_name (m, 3), ==, "proj");
  g_assert_cmpstr (vl_model_group_name (m, 4), ==, "head");
  g_assert_cmpint (vl_model_group_n_params (m, 3), ==, 32 * 24);
  g_assert_cmpint (vl_model_group_n_params (m, 4), ==, 3 * 24 + 3);
  g_autoptr(VlSafetensors) inputs = vl_test_open (in);
  g_autofree float *images = vl_test_read (inputs, "images", NULL);
  const VlTensorInfo *t = vl_safetensors_lookup (inputs, "images");
  forward (m, images, t, VL_FORWARD_INFER);
  float want[6];
  memcpy (want, vl_model_logits (m), sizeof want);
  g_autofree char *dir = vl_test_tmpdir ();
  g_assert_true (vl_model_export (m, dir, &error));
  g_autoptr(VlModel) again = vl_model_load (dir, &error);
  g_assert_no_error (error);
  g_assert_cmpint (vl_model_geometry (again)->embed_dim, ==, 0);
  forward (again, images, t, VL_FORWARD_INFER);
  vl_test_assert_close ("folded head", vl_model_logits (again), want, 6, 1e-5, 0);
  rm_tree (dir);
}

/* SigLIP's attention pool against PyTorch's autograd (fam-timm-siglip: the gradients of
 * sum (features * dfeatures)); the pool's group trained alone (its own gradients, nothing below),
 * and from cached tokens (the same gradients). */
static void
test_siglip_gradients (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *path = vl_test_data_path ("fam-timm-siglip", NULL);
  g_autofree char *in = vl_test_data_path ("fam-timm-siglip", "inputs.safetensors", NULL);
  g_autofree char *ex_path = vl_test_data_path ("fam-timm-siglip", "expected.safetensors", NULL);
  g_autoptr(VlModel) m = vl_model_load (path, &error);
  g_assert_no_error (error);
  g_autoptr(VlSafetensors) inputs = vl_test_open (in);
  g_autoptr(VlSafetensors) ex = vl_test_open (ex_path);
  g_autofree float *images = vl_test_read (inputs, "images", NULL);
  g_autofree float *dfeat = vl_test_read (ex, "dfeatures", NULL);
  const VlTensorInfo *t = vl_safetensors_lookup (inputs, "images");
  const int B = (int) t->shape[0], H = (int) t->shape[2];
  vl_model_lock (m, 1000);
  forward (m, images, t, VL_FORWARD_TRAIN);
  g_assert_true (vl_model_backward_from (m, VL_GRAD_FEATURES, dfeat, &error));
  g_assert_no_error (error);
  int n_checked = 0;
  for (guint i = 0; i < vl_safetensors_n_tensors (ex); i++)
    {
      const char *name = vl_safetensors_get (ex, i)->name;
      if (!g_str_has_prefix (name, "grad."))
        continue;
      const int ix = vl_model_find_tensor (m, name + 5);
      g_assert_cmpint (ix, >=, 0);
      expect (ex, name, vl_model_tensor_grad (m, ix), 2e-5);
      n_checked++;
    }
  g_assert_cmpint (n_checked, ==, 16);

  /* the pool's group alone (unlock 2: the head and attn_pool): its gradients as above, the norm
   * below it untouched; then the same from the tokens entering the final norm, cached */
  const int group = vl_model_tensor_group (m, vl_model_find_tensor (m, "attn_pool.latent"));
  g_assert_cmpstr (vl_model_group_name (m, group), ==, "attn_pool");
  g_assert_cmpint (group, ==, vl_model_n_groups (m) - 2);
  vl_model_lock (m, 2);
  const int64_t numel = vl_model_boundary_numel (m, H, H);
  g_assert_cmpint (numel, ==, (int64_t) vl_model_geometry (m)->n_tokens * vl_model_geometry (m)->width);
  g_autofree float *cache = g_new (float, numel * B);
  g_assert_true (vl_model_forward_to_boundary (m, images, B, H, H, cache, &error));
  for (int pass = 0; pass < 2; pass++)
    {
      if (pass == 0)
        forward (m, images, t, VL_FORWARD_TRAIN);
      else
        g_assert_true (vl_model_forward_from_boundary (m, cache, B, H, H, VL_FORWARD_TRAIN, &error));
      g_assert_no_error (error);
      g_assert_true (vl_model_backward_from (m, VL_GRAD_FEATURES, dfeat, &error));
      g_assert_no_error (error);
      for (guint i = 0; i < vl_safetensors_n_tensors (ex); i++)
        {
          const char *name = vl_safetensors_get (ex, i)->name;
          if (g_str_has_prefix (name, "grad.attn_pool."))
            expect (ex, name, vl_model_tensor_grad (m, vl_model_find_tensor (m, name + 5)), 2e-5);
        }
      g_assert_false (vl_model_group_trainable (m, group - 1));   /* the final norm */
    }
  /* only the head: the pooled features are the boundary; a forward from them runs no pool, so
   * it has no pool map of its own (not the last batch's) */
  vl_model_lock (m, 1);
  g_assert_cmpint (vl_model_boundary_numel (m, H, H), ==, vl_model_geometry (m)->width);
  g_autofree float *pooled = g_new (float, (int64_t) B * vl_model_geometry (m)->width);
  g_assert_true (vl_model_forward_to_boundary (m, images, B, H, H, pooled, &error));
  forward (m, images, t, VL_FORWARD_INFER);
  g_assert_nonnull (vl_model_pool_attention (m));
  g_assert_true (vl_model_forward_from_boundary (m, pooled, B, H, H, VL_FORWARD_TRAIN, &error));
  g_assert_no_error (error);
  g_assert_null (vl_model_pool_attention (m));

  /* a run folder's lossless checkpoint keeps timm's grouping with the pool's group */
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *st = g_build_filename (dir, "model.safetensors", NULL);
  g_autofree char *cfg = g_build_filename (dir, "config.json", NULL);
  g_assert_true (vl_model_save_checkpoint (m, st, cfg, &error));
  g_assert_no_error (error);
  g_autoptr(VlModel) again = vl_model_load (dir, &error);
  g_assert_no_error (error);
  g_assert_cmpint (vl_model_n_groups (again), ==, vl_model_n_groups (m));
  for (int i = 0; i < vl_model_n_groups (m); i++)
    g_assert_cmpstr (vl_model_group_name (again, i), ==, vl_model_group_name (m, i));
  g_assert_cmpint (vl_model_pool (again), ==, VL_POOL_MAP);
  g_assert_true (vl_model_geometry (again)->gelu_tanh);
  rm_tree (dir);
}

/* OpenCLIP's SigLIP models (a TimmModel: visual.trunk.* with the attention pool, no projection
 * head, the text tower beside it; open_clip_config.json): the trunk is read as timm's, with
 * OpenCLIP's preprocessing; a projection head after the trunk is refused naming it. And timm's
 * SigLIP architectures named by a hub config.json without model_args: the heads (so400m's 16)
 * and the activation come from the name. */
static void
test_openclip_siglip (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *from = vl_test_data_path ("fam-timm-siglip", "model.safetensors", NULL);
  g_autofree char *in = vl_test_data_path ("fam-timm-siglip", "inputs.safetensors", NULL);
  g_autofree char *ex_path = vl_test_data_path ("fam-timm-siglip", "expected.safetensors", NULL);
  g_autoptr(VlSafetensors) st = vl_test_open (from);
  g_autofree char *dir = vl_test_tmpdir ();
  for (int with_head = 0; with_head < 2; with_head++)
    {
      g_autoptr(VlSafetensorsWriter) w = vl_safetensors_writer_new ();
      g_autoptr(GPtrArray) keep = g_ptr_array_new_with_free_func (g_free);
      /* OpenCLIP's trunk has num_classes 0: no head.* */
      add_tensors (w, st, keep, NULL, "head.", "visual.trunk.");
      static const float text[8] = { 0 };
      const int64_t t2[2] = { 2, 4 }, t1[1] = { 1 }, h2[2] = { 2, 4 };
      vl_safetensors_writer_add_f32 (w, "text.token_embedding.weight", 2, t2, text);
      vl_safetensors_writer_add_f32 (w, "logit_scale", 1, t1, text);
      vl_safetensors_writer_add_f32 (w, "logit_bias", 1, t1, text);
      if (with_head)
        vl_safetensors_writer_add_f32 (w, "visual.head.proj.weight", 2, h2, text);
      vl_safetensors_writer_add_metadata (w, "num_heads", "4");
      g_autofree char *path = g_build_filename (dir, "open_clip_model.safetensors", NULL);
      g_assert_true (vl_safetensors_writer_write (w, path, &error));
      g_autofree char *cfg = g_build_filename (dir, "open_clip_config.json", NULL);
      g_assert_true (g_file_set_contents (cfg,
        "{\"model_cfg\": {\"embed_dim\": 32, \"init_logit_bias\": -10, \"vision_cfg\": "
        "{\"image_size\": 24, \"timm_model_name\": \"vit_custom_siglip\", \"timm_pool\": "
        "\"map\", \"timm_proj\": \"none\"}, \"text_cfg\": {\"width\": 4}}, "
        "\"preprocess_cfg\": {\"mean\": [0.5, 0.5, 0.5], \"std\": [0.5, 0.5, 0.5], "
        "\"interpolation\": \"bicubic\", \"resize_mode\": \"squash\"}}", -1, NULL));
      g_autoptr(VlModel) m = vl_model_load (path, &error);
      if (with_head)
        {
          g_assert_null (m);
          g_assert_nonnull (strstr (error->message, "visual.head.proj.weight"));
          g_clear_error (&error);
          continue;
        }
      g_assert_no_error (error);
      const VlGeometry *g = vl_model_geometry (m);
      g_assert_cmpstr (g->family, ==, "timm");
      g_assert_cmpstr (g->architecture, ==, "vit_custom_siglip");
      g_assert_true (g->attn_pool);
      g_assert_cmpint (vl_model_pool (m), ==, VL_POOL_MAP);
      g_assert_cmpint (vl_model_num_classes (m), ==, 0);
      g_assert_cmpfloat_with_epsilon (g->mean[0], 0.5, 1e-6);
      g_assert_cmpfloat_with_epsilon (g->crop_pct, 1.0, 1e-9);
      g_assert_true (g->squash);   /* resize_mode squash */
      /* the tower's activation is timm's default here (the fixture's is tanh): the features
       * move by the GELU's difference only, which the fixture's note puts at 3.8e-4 */
      g_autoptr(VlSafetensors) inputs = vl_test_open (in);
      g_autoptr(VlSafetensors) ex = vl_test_open (ex_path);
      g_autofree float *images = vl_test_read (inputs, "images", NULL);
      forward (m, images, vl_safetensors_lookup (inputs, "images"), VL_FORWARD_INFER);
      int64_t n;
      g_autofree float *want = vl_test_read (ex, "features", &n);
      vl_test_assert_close ("OpenCLIP trunk's features", vl_model_features (m), want, n, 2e-3, 0);
      /* saved back under OpenCLIP's names, the text tower left out */
      g_autofree char *saved = g_build_filename (dir, "saved.safetensors", NULL);
      g_assert_true (vl_model_save (m, saved, &error));
      g_autoptr(VlSafetensors) sv = vl_test_open (saved);
      g_assert_nonnull (vl_safetensors_lookup (sv, "visual.trunk.attn_pool.latent"));
      g_assert_null (vl_safetensors_lookup (sv, "logit_scale"));
    }
  rm_tree (dir);

  /* hub configs that name a timm SigLIP architecture only */
  static const struct {
    const char *arch, *crop_mode;
    int heads;
    gboolean tanh;
  } archs[] = {
    { "vit_so400m_patch16_siglip_256.v2_webli", "squash", 16, TRUE },
    { "vit_so400m_patch14_siglip_224.webli", "center", 16, FALSE },
  };
  for (guint i = 0; i < G_N_ELEMENTS (archs); i++)
    {
      g_autofree char *d = vl_test_tmpdir ();
      g_autofree char *to = g_build_filename (d, "model.safetensors", NULL);
      g_autofree char *cfg = g_build_filename (d, "config.json", NULL);
      g_autofree char *text = g_strdup_printf ("{\"architecture\": \"%s\", \"num_classes\": 4, "
                                               "\"global_pool\": \"map\", \"pretrained_cfg\": "
                                               "{\"crop_mode\": \"%s\"}}", archs[i].arch,
                                               archs[i].crop_mode);
      vl_test_copy_file (from, to);
      g_assert_true (g_file_set_contents (cfg, text, -1, NULL));
      g_autoptr(VlModel) m = vl_model_load (d, &error);
      g_assert_no_error (error);
      g_assert_cmpint (vl_model_geometry (m)->heads, ==, archs[i].heads);
      g_assert_cmpint (vl_model_geometry (m)->gelu_tanh, ==, archs[i].tanh);
      g_assert_cmpint (vl_model_geometry (m)->squash, ==, i == 0);
      rm_tree (d);
    }
}

/* transformers' SiglipForImageClassification: the tower without its attention head
 * (vision_use_head false) and a classifier on the mean of the final norm's tokens. */
static void
test_hf_siglip_classifier (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *from = vl_test_data_path ("fam-hf-siglip", "model.safetensors", NULL);
  g_autofree char *cfg_from = vl_test_data_path ("fam-hf-siglip", "config.json", NULL);
  g_autofree char *in = vl_test_data_path ("fam-hf-siglip", "inputs.safetensors", NULL);
  g_autofree char *ex_path = vl_test_data_path ("fam-hf-siglip", "expected.safetensors", NULL);
  g_autoptr(VlSafetensors) st = vl_test_open (from);
  g_autoptr(VlSafetensorsWriter) w = vl_safetensors_writer_new ();
  g_autoptr(GPtrArray) keep = g_ptr_array_new_with_free_func (g_free);
  add_tensors (w, st, keep, "vision_model.", "vision_model.head.", "");
  enum { K = 3 };
  const int64_t W = vl_safetensors_lookup (st, "vision_model.post_layernorm.weight")->shape[0];
  float *cw = g_new (float, K * W), *cb = g_new (float, K);
  for (int64_t i = 0; i < K * W; i++)
    cw[i] = (float) sin (0.7 * (double) i);
  for (int k = 0; k < K; k++)
    cb[k] = 0.1f * (float) k;
  g_ptr_array_add (keep, cw);
  g_ptr_array_add (keep, cb);
  const int64_t sw[2] = { K, W }, sb[1] = { K };
  vl_safetensors_writer_add_f32 (w, "classifier.weight", 2, sw, cw);
  vl_safetensors_writer_add_f32 (w, "classifier.bias", 1, sb, cb);
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *path = g_build_filename (dir, "model.safetensors", NULL);
  g_autofree char *cfg = g_build_filename (dir, "config.json", NULL);
  g_assert_true (vl_safetensors_writer_write (w, path, &error));
  vl_test_copy_file (cfg_from, cfg);
  g_autoptr(VlModel) m = vl_model_load (dir, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (vl_model_geometry (m)->family, ==, "hf-siglip");
  g_assert_true (vl_model_geometry (m)->squash);   /* SiglipImageProcessor: no crop */
  g_assert_false (vl_model_geometry (m)->attn_pool);
  g_assert_cmpint (vl_model_pool (m), ==, VL_POOL_AVG);
  g_assert_cmpint (vl_model_num_classes (m), ==, K);
  g_autoptr(VlSafetensors) inputs = vl_test_open (in);
  g_autoptr(VlSafetensors) ex = vl_test_open (ex_path);
  g_autofree float *images = vl_test_read (inputs, "images", NULL);
  const VlTensorInfo *t = vl_safetensors_lookup (inputs, "images");
  forward (m, images, t, VL_FORWARD_INFER);
  /* the classifier of the mean of the reference's tokens, in double */
  int64_t n;
  g_autofree float *tok = vl_test_read (ex, "tokens_final", &n);
  const int B = (int) t->shape[0];
  const int64_t T = n / B / W;
  float want[16 * K];
  for (int b = 0; b < B; b++)
    for (int k = 0; k < K; k++)
      {
        double acc = cb[k];
        for (int64_t c = 0; c < W; c++)
          {
            double mean = 0;
            for (int64_t i = 0; i < T; i++)
              mean += tok[((int64_t) b * T + i) * W + c];
            acc += cw[k * W + c] * mean / (double) T;
          }
        want[b * K + k] = (float) acc;
      }
  vl_test_assert_close ("classifier on the mean", vl_model_logits (m), want, B * K, 1e-4, 0);
  /* saved back under transformers' names, the classifier outside the prefix */
  g_autofree char *saved = g_build_filename (dir, "saved.safetensors", NULL);
  g_assert_true (vl_model_save (m, saved, &error));
  g_autoptr(VlSafetensors) sv = vl_test_open (saved);
  g_assert_nonnull (vl_safetensors_lookup (sv, "classifier.weight"));
  g_assert_nonnull (vl_safetensors_lookup (sv, "vision_model.post_layernorm.weight"));
  rm_tree (dir);
}

/* Finite differences of the loss through every structure the families add (ln_pre and
 * QuickGELU, the projection, layer scale, registers without pos entries, fc_norm without CLS,
 * the distillation head): a few elements of every tensor. */
static void
test_backward_fd (gconstpointer data)
{
  const FamCase *c = data;
  g_autoptr(GError) error = NULL;
  g_autofree char *tmp = NULL;
  g_autofree char *path = case_path (c, &tmp);
  g_autofree char *in = vl_test_data_path (c->name, "inputs.safetensors", NULL);
  g_autoptr(VlModel) m = vl_model_load (path, &error);
  g_assert_no_error (error);
  if (vl_model_num_classes (m) == 0)
    vl_model_set_head (m, VL_HEAD_LINEAR, 3, 0, 11);
  g_autoptr(VlSafetensors) inputs = vl_test_open (in);
  g_autofree float *images = vl_test_read (inputs, "images", NULL);
  const VlTensorInfo *t = vl_safetensors_lookup (inputs, "images");
  int B = (int) t->shape[0], K = vl_model_num_classes (m);
  int targets[16];
  for (int b = 0; b < B; b++)
    targets[b] = (b * 7 + 1) % K;
  vl_model_lock (m, 1000);

  double loss;
  forward (m, images, t, VL_FORWARD_TRAIN);
  g_assert_true (vl_model_backward (m, targets, 0.1f, &loss, &error));
  g_assert_no_error (error);
  int n = vl_model_n_tensors (m), checked = 0;
  /* every analytic gradient, before the finite differences overwrite the gradient buffers */
  float **grads = g_new0 (float *, n);
  for (int i = 0; i < n; i++)
    {
      int64_t numel;
      vl_model_tensor_data (m, i, NULL, NULL, &numel);
      grads[i] = g_memdup2 (vl_model_tensor_grad (m, i), sizeof (float) * numel);
    }
  for (int i = 0; i < n; i++)
    {
      int64_t numel;
      float *w = vl_model_tensor_data (m, i, NULL, NULL, &numel);
      const float *grad = grads[i];
      /* the largest gradient in each half of the tensor (an element whose true gradient is ~0,
       * like the key part of qkv.bias, would only measure float32 noise) */
      int64_t picks[2] = { 0, numel / 2 };
      for (int64_t k = 0; k < numel; k++)
        {
          int half = k >= numel / 2 && numel > 1;
          if (fabsf (grad[k]) > fabsf (grad[picks[half]]))
            picks[half] = k;
        }
      /* the step follows the tensor's scale: the fixtures shrink some prefix tokens to ~0.005 so
       * that the LayerNorm eps matters, and there a step of 1e-2 is no longer small */
      double rms = 0;  /* the tensor's scale */
      for (int64_t k = 0; k < numel; k++)
        rms += (double) w[k] * w[k];
      rms = sqrt (rms / numel);
      for (int p = 0; p < 2; p++)
        {
          int64_t k = picks[p];
          float orig = w[k];
          double g = grad[k], fd = 0;
          gboolean agree = FALSE;
          /* a ladder of steps: large ones keep float32 rounding noise small, small ones follow
           * a strongly curved loss (a near-degenerate LayerNorm row); the derivative is the
           * limit, so agreement on any rung counts */
          double h0 = 1e-2 * MAX (MAX (fabs (orig), rms), 1e-3);
          for (int r = 0; r < 4 && !agree; r++)
            {
              float h = (float) (h0 / (1 << (2 * r)));
              double lp, lm;
              w[k] = orig + h;
              forward (m, images, t, VL_FORWARD_TRAIN);
              g_assert_true (vl_model_backward (m, targets, 0.1f, &lp, &error));
              w[k] = orig - h;
              forward (m, images, t, VL_FORWARD_TRAIN);
              g_assert_true (vl_model_backward (m, targets, 0.1f, &lm, &error));
              w[k] = orig;
              double step = (double) (orig + h) - (double) (orig - h);
              fd = (lp - lm) / step;
              agree = fabs (fd - g) <= 2e-2 * MAX (fabs (fd), fabs (g)) + 2e-4;
            }
          if (!agree)
            g_error ("%s: %s[%" G_GINT64_FORMAT "]: analytic %.6g, finite difference %.6g",
                     c->name, vl_model_tensor_name (m, i), k, g, fd);
          checked++;
        }
    }
  for (int i = 0; i < n; i++)
    g_free (grads[i]);
  g_free (grads);
  g_test_message ("%s: %d elements checked", c->name, checked);
  g_assert_cmpint (checked, ==, 2 * n);
  rm_tree (tmp);
}

static void
test_unknown_family (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *path = g_build_filename (dir, "weird.safetensors", NULL);
  g_autoptr(VlSafetensorsWriter) w = vl_safetensors_writer_new ();
  float x[4] = { 0 };
  int64_t shape[2] = { 2, 2 };
  vl_safetensors_writer_add_f32 (w, "encoder.stem.conv.weight", 2, shape, x);
  vl_safetensors_writer_add_f32 (w, "decoder.out.weight", 2, shape, x);
  g_assert_true (vl_safetensors_writer_write (w, path, &error));
  g_autoptr(VlModel) m = vl_model_load (path, &error);
  g_assert_null (m);
  g_assert_error (error, VL_ERROR, VL_ERROR_FORMAT);
  g_assert_nonnull (strstr (error->message, path));
  g_assert_nonnull (strstr (error->message, "encoder.stem.conv.weight"));
  g_assert_nonnull (strstr (error->message, "OpenCLIP"));
  g_assert_nonnull (strstr (error->message, "torchvision"));
  g_assert_nonnull (strstr (error->message, "JAX"));
  rm_tree (dir);
}

/* A CLIP checkpoint that carries a visual tensor vitlab does not know is refused, naming it. */
static void
test_openclip_unknown_tensor (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *src = vl_test_data_path ("fam-openclip", NULL);
  g_autoptr(VlModel) m = vl_model_load (src, &error);
  g_assert_no_error (error);
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *path = g_build_filename (dir, "model.safetensors", NULL);
  g_assert_true (vl_model_save (m, path, &error));
  /* add an attention-pool tensor by rewriting with one more entry */
  g_autoptr(VlSafetensors) st = vl_test_open (path);
  g_autoptr(VlSafetensorsWriter) w = vl_safetensors_writer_new ();
  GPtrArray *keep = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < vl_safetensors_n_tensors (st); i++)
    {
      const VlTensorInfo *ti = vl_safetensors_get (st, i);
      float *d = g_new (float, ti->numel);
      vl_tensor_to_f32 (ti, d);
      g_ptr_array_add (keep, d);
      vl_safetensors_writer_add_f32 (w, ti->name, ti->ndim, ti->shape, d);
    }
  float extra[4] = { 0 };
  int64_t shape[1] = { 4 };
  vl_safetensors_writer_add_f32 (w, "visual.attn_pool.query", 1, shape, extra);
  g_autofree char *path2 = g_build_filename (dir, "with-extra.safetensors", NULL);
  g_autofree char *cfg_from = vl_test_data_path ("fam-openclip", "open_clip_config.json", NULL);
  g_autofree char *cfg_to = g_build_filename (dir, "open_clip_config.json", NULL);
  vl_test_copy_file (cfg_from, cfg_to);
  g_assert_true (vl_safetensors_writer_write (w, path2, &error));
  g_ptr_array_unref (keep);
  g_autoptr(VlModel) bad = vl_model_load (path2, &error);
  g_assert_null (bad);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, "visual.attn_pool.query"));
  g_assert_nonnull (strstr (error->message, "an attention-pooling head"));
  rm_tree (dir);
}

/* Copies the checkpoint `from` to dir/name with one more tensor `extra` (4 zeros), and
 * config.json (`config`) beside it; returns the new file's path. */
static char *
copy_with_extra (const char *from, const char *dir, const char *name, const char *extra,
                 const char *config)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VlSafetensors) st = vl_test_open (from);
  g_autoptr(VlSafetensorsWriter) w = vl_safetensors_writer_new ();
  g_autoptr(GPtrArray) keep = g_ptr_array_new_with_free_func (g_free);
  add_tensors (w, st, keep, NULL, NULL, "");
  static const float zeros[4] = { 0 };
  const int64_t shape[1] = { 4 };
  vl_safetensors_writer_add_f32 (w, extra, 1, shape, zeros);
  char *path = g_build_filename (dir, name, NULL);
  g_assert_true (vl_safetensors_writer_write (w, path, &error));
  g_autofree char *cfg = g_build_filename (dir, "config.json", NULL);
  g_assert_true (g_file_set_contents (cfg, config, -1, NULL));
  return path;
}

/* Hugging Face's pretraining models around a ViT: MAE's decoder (ViTMAEForPreTraining), SimMIM's
 * mask token and decoder (ViTForMaskedImageModeling): the ViT loads, the rest is left out. */
static void
test_hf_pretraining (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *from = vl_test_data_path ("fam-hf-vit", "model.safetensors", NULL);
  g_autofree char *cfg_path = vl_test_data_path ("fam-hf-vit", "config.json", NULL);
  g_autofree char *cfg = NULL;
  g_assert_true (g_file_get_contents (cfg_path, &cfg, NULL, NULL));
  g_autofree char *mae = copy_with_extra (from, dir, "mae.safetensors",
                                          "decoder.decoder_embed.weight", cfg);
  g_autofree char *simmim = copy_with_extra (mae, dir, "simmim.safetensors",
                                             "vit.embeddings.mask_token", cfg);
  g_autoptr(VlModel) m = vl_model_load (simmim, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (vl_model_geometry (m)->family, ==, "hf-vit");
  g_autofree char *in = vl_test_data_path ("fam-hf-vit", "inputs.safetensors", NULL);
  g_autofree char *ex_path = vl_test_data_path ("fam-hf-vit", "expected.safetensors", NULL);
  g_autoptr(VlSafetensors) inputs = vl_test_open (in);
  g_autoptr(VlSafetensors) ex = vl_test_open (ex_path);
  g_autofree float *images = vl_test_read (inputs, "images", NULL);
  forward (m, images, vl_safetensors_lookup (inputs, "images"), VL_FORWARD_INFER);
  expect (ex, "logits", vl_model_logits (m), 1e-4);
  /* outside a "vit." prefix a decoder is not the ViT's: still refused */
  g_autofree char *bare_from = vl_test_data_path ("fam-hf-dino", "model.safetensors", NULL);
  g_autofree char *bare_cfg_path = vl_test_data_path ("fam-hf-dino", "config.json", NULL);
  g_autofree char *bare_cfg = NULL;
  g_assert_true (g_file_get_contents (bare_cfg_path, &bare_cfg, NULL, NULL));
  g_autofree char *bare = copy_with_extra (bare_from, dir, "bare.safetensors", "decoder.weight",
                                           bare_cfg);
  g_autoptr(VlModel) none = vl_model_load (bare, &error);
  g_assert_null (none);
  g_assert_nonnull (strstr (error->message, "decoder.weight"));
  rm_tree (dir);
}

/* DINOv2: the preprocessing of each source (transformers' preprocessor_config.json; timm's
 * DINOv2 defaults for Meta's bare file), Meta's register layout, and the variant vitlab does not
 * compute refused by name (the giant model's SwiGLU MLP). */
static void
test_dinov2 (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *hf = vl_test_data_path ("fam-hf-dinov2", NULL);
  g_autoptr(VlModel) m = vl_model_load (hf, &error);
  g_assert_no_error (error);
  const VlGeometry *g = vl_model_geometry (m);
  g_assert_cmpstr (g->architecture, ==, "Dinov2Model");
  g_assert_true (g->layer_scale);
  g_assert_cmpint (g->input_size, ==, 24);
  g_assert_cmpfloat_with_epsilon (g->mean[0], 0.485, 1e-6);
  g_assert_cmpfloat_with_epsilon (g->std[2], 0.225, 1e-6);
  g_assert_cmpint (vl_model_num_classes (m), ==, 0);

  /* transformers' own processing: resized to size.shortest_edge, cropped to crop_size; the
   * position embedding resampled to that grid */
  g_autofree char *small = vl_test_tmpdir ();
  static const char *const files[] = { "model.safetensors", "config.json" };
  for (guint i = 0; i < G_N_ELEMENTS (files); i++)
    {
      g_autofree char *from = vl_test_data_path ("fam-hf-dinov2", files[i], NULL);
      g_autofree char *to = g_build_filename (small, files[i], NULL);
      vl_test_copy_file (from, to);
    }
  g_autofree char *pre = g_build_filename (small, "preprocessor_config.json", NULL);
  g_assert_true (g_file_set_contents (pre, "{\"crop_size\": {\"height\": 16, \"width\": 16}, "
                                      "\"size\": {\"shortest_edge\": 20}, "
                                      "\"image_mean\": [0.485, 0.456, 0.406], "
                                      "\"image_std\": [0.229, 0.224, 0.225]}", -1, NULL));
  g_autoptr(VlModel) cropped = vl_model_load (small, &error);
  g_assert_no_error (error);
  g_assert_cmpint (vl_model_geometry (cropped)->input_size, ==, 16);
  g_assert_cmpint (vl_model_geometry (cropped)->img_size, ==, 24);
  g_assert_cmpfloat_with_epsilon (vl_model_geometry (cropped)->crop_pct, 0.8, 1e-9);
  g_assert_true (g_file_set_contents (pre, "{\"crop_size\": {\"height\": 20, \"width\": 20}}",
                                      -1, NULL));
  g_autoptr(VlModel) odd = vl_model_load (small, &error);
  g_assert_null (odd);
  g_assert_nonnull (strstr (error->message, "crop_size 20x20 is not supported"));
  g_clear_error (&error);
  rm_tree (small);

  const FamCase *meta = &cases[G_N_ELEMENTS (cases) - 1];
  g_autofree char *tmp = NULL;
  g_autofree char *path = case_path (meta, &tmp);
  g_autoptr(VlModel) d = vl_model_load (path, &error);
  g_assert_no_error (error);
  g = vl_model_geometry (d);
  g_assert_cmpfloat_with_epsilon (g->mean[1], 0.456, 1e-6);
  g_assert_cmpfloat_with_epsilon (g->crop_pct, 1.0, 1e-9);
  g_assert_cmpstr (g->interpolation, ==, "bicubic");
  g_assert_cmpint (g->input_size, ==, 24);

  /* Meta's registers: the class token takes pos_embed's first row, the patches the rest */
  const FamCase *reg = &cases[G_N_ELEMENTS (cases) - 2];
  g_autofree char *reg_tmp = NULL;
  g_autofree char *reg_path = case_path (reg, &reg_tmp);
  g_autoptr(VlModel) r = vl_model_load (reg_path, &error);
  g_assert_no_error (error);
  g_assert_cmpint (vl_model_geometry (r)->reg_tokens, ==, 4);
  g_assert_true (vl_model_geometry (r)->no_embed_class);
  g_assert_cmpint (vl_model_geometry (r)->n_prefix, ==, 5);
  rm_tree (reg_tmp);
  /* transformers' Dinov2WithRegistersModel: the same layout, from its own names and config */
  g_autofree char *hf_reg = vl_test_data_path ("fam-hf-dinov2-reg", NULL);
  g_autoptr(VlModel) hr = vl_model_load (hf_reg, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (vl_model_geometry (hr)->family, ==, "hf-dinov2");
  g_assert_cmpint (vl_model_geometry (hr)->reg_tokens, ==, 4);
  g_assert_true (vl_model_geometry (hr)->no_embed_class);
  g_assert_cmpint (vl_model_geometry (hr)->n_prefix, ==, 5);
  /* a config that says otherwise than the tensors is refused, naming both */
  g_autofree char *lie = vl_test_tmpdir ();
  g_autofree char *lie_st = g_build_filename (lie, "model.safetensors", NULL);
  g_autofree char *lie_cfg = g_build_filename (lie, "config.json", NULL);
  g_autofree char *st_from = vl_test_data_path ("fam-hf-dinov2-reg", "model.safetensors", NULL);
  vl_test_copy_file (st_from, lie_st);
  g_assert_true (g_file_set_contents (lie_cfg, "{\"model_type\": \"dinov2_with_registers\", "
                                      "\"num_attention_heads\": 4, \"num_register_tokens\": 2}",
                                      -1, NULL));
  g_autoptr(VlModel) liar = vl_model_load (lie, &error);
  g_assert_null (liar);
  g_assert_nonnull (strstr (error->message, "num_register_tokens"));
  g_assert_nonnull (strstr (error->message, "embeddings.register_tokens"));
  g_clear_error (&error);
  rm_tree (lie);

  static const struct {
    const char *fixture, *extra, *expect;
  } refused[] = {
    { "fam-hf-dinov2", "encoder.layer.0.mlp.weights_in.weight", "SwiGLU" },
    { "fam-dinov2-meta", "blocks.0.mlp.w12.weight", "SwiGLU" },
  };
  g_autofree char *dir = vl_test_tmpdir ();
  for (guint i = 0; i < G_N_ELEMENTS (refused); i++)
    {
      const gboolean is_hf = strcmp (refused[i].fixture, "fam-hf-dinov2") == 0;
      g_autofree char *from = is_hf ? vl_test_data_path (refused[i].fixture, "model.safetensors",
                                                         NULL)
                                    : g_strdup (path);
      g_autofree char *cfg = NULL;
      if (is_hf)
        {
          g_autofree char *cfg_path = vl_test_data_path (refused[i].fixture, "config.json", NULL);
          g_assert_true (g_file_get_contents (cfg_path, &cfg, NULL, NULL));
        }
      g_autofree char *bad = copy_with_extra (from, dir, "model.safetensors", refused[i].extra,
                                              is_hf ? cfg : meta->config);
      g_autoptr(GError) e2 = NULL;
      g_autoptr(VlModel) none = vl_model_load (bad, &e2);
      g_assert_null (none);
      g_test_message ("%s", e2->message);
      g_assert_nonnull (strstr (e2->message, refused[i].extra));
      g_assert_nonnull (strstr (e2->message, refused[i].expect));
    }
  rm_tree (dir);
  rm_tree (tmp);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *p1 = g_strdup_printf ("/families/parity/%s", cases[i].name + 4);
      g_autofree char *p2 = g_strdup_printf ("/families/save-native/%s", cases[i].name + 4);
      g_autofree char *p3 = g_strdup_printf ("/families/export/%s", cases[i].name + 4);
      g_autofree char *p4 = g_strdup_printf ("/families/backward/%s", cases[i].name + 4);
      g_test_add_data_func (p1, &cases[i], test_parity);
      g_test_add_data_func (p2, &cases[i], test_save_native);
      g_test_add_data_func (p3, &cases[i], test_export_roundtrip);
      g_test_add_data_func (p4, &cases[i], test_backward_fd);
    }
  g_test_add_func ("/families/export/openclip-folded-head", test_export_openclip_head);
  g_test_add_func ("/families/dinov2", test_dinov2);
  g_test_add_func ("/families/siglip-gradients", test_siglip_gradients);
  g_test_add_func ("/families/openclip-siglip", test_openclip_siglip);
  g_test_add_func ("/families/hf-siglip-classifier", test_hf_siglip_classifier);
  g_test_add_func ("/families/hf-pretraining", test_hf_pretraining);
  g_test_add_func ("/families/errors/unknown-family", test_unknown_family);
  g_test_add_func ("/families/errors/openclip-unknown-tensor", test_openclip_unknown_tensor);
  return g_test_run ();
}
