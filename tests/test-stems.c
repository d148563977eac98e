/* test-stems.c: ViTs with CNN stems (vl-stem.h) against PyTorch references written from timm's
 * and vitlab's definitions (tests/data/stem-*, hybrid-*, made by gen-stems.py): eval logits
 * (BatchNorm on running statistics), a training step's loss, the gradients of the stem group and
 * the head with the transformer frozen, BatchNorm's running statistics after it; the transformer
 * unchanged bit for bit while the stem trains; replacing a model's patch embedding, saving and
 * reloading it. */
#include "vl-test-util.h"
#include "vl-model.h"

#include <math.h>
#include <string.h>
#include <sys/wait.h>

typedef struct {
  const char *name;
  VlStemKind  kind;
  int         patch;
} StemCase;

static const StemCase cases[] = {
  { "stem-conv", VL_STEM_CONV, 8 },
  { "stem-mbconv", VL_STEM_MBCONV, 8 },
  { "hybrid-r2", VL_STEM_RESNETV2, 8 },
  { "hybrid-s", VL_STEM_RESNETV2, 8 },
};

/* The stem group (0) and the head train, everything else is frozen. */
static void
lock_all_but_stem (VlModel *m)
{
  vl_model_lock (m, 1);
  vl_model_set_group_trainable (m, 0, TRUE);
}

static VlModel *
load_case (const char *name, float **images, int64_t *shape, int **targets)
{
  g_autofree char *dir = vl_test_data_path (name, NULL);
  g_autofree char *in = vl_test_data_path (name, "inputs.safetensors", NULL);
  g_autoptr(GError) error = NULL;
  VlModel *m = vl_model_load (dir, &error);
  g_assert_no_error (error);
  g_autoptr(VlSafetensors) st = vl_test_open (in);
  int64_t n;
  *images = vl_test_read (st, "images", &n);
  memcpy (shape, vl_safetensors_lookup (st, "images")->shape, sizeof (int64_t) * 4);
  g_autofree float *tf = vl_test_read (st, "targets", &n);
  *targets = g_new (int, n);
  for (int64_t i = 0; i < n; i++)
    (*targets)[i] = (int) tf[i];
  return m;
}

static void
test_reference (gconstpointer data)
{
  const StemCase *c = data;
  g_autofree float *images = NULL;
  g_autofree int *targets = NULL;
  int64_t sh[4];
  g_autoptr(VlModel) m = load_case (c->name, &images, sh, &targets);
  g_autoptr(GError) error = NULL;
  g_assert_cmpint (vl_model_stem_kind (m), ==, c->kind);
  g_assert_cmpint (vl_model_geometry (m)->patch, ==, c->patch);
  const int B = (int) sh[0], H = (int) sh[2], W = (int) sh[3];
  g_autofree char *exp_path = vl_test_data_path (c->name, "expected.safetensors", NULL);
  g_autoptr(VlSafetensors) exp = vl_test_open (exp_path);
  int64_t n;

  /* eval: the running statistics normalise */
  g_assert_true (vl_model_forward (m, images, B, H, W, VL_FORWARD_INFER, &error));
  g_autofree float *le = vl_test_read (exp, "logits_eval", &n);
  vl_test_assert_close ("logits_eval", vl_model_logits (m), le, n, 1e-4, 1e-3);

  /* a training step of the stem and the head */
  lock_all_but_stem (m);
  g_assert_true (vl_model_forward (m, images, B, H, W, VL_FORWARD_TRAIN, &error));
  g_autofree float *lt = vl_test_read (exp, "logits_train", &n);
  vl_test_assert_close ("logits_train", vl_model_logits (m), lt, n, 1e-4, 1e-3);
  double loss;
  g_assert_true (vl_model_backward (m, targets, 0.0f, &loss, &error));
  g_autofree float *want_loss = vl_test_read (exp, "loss_train", &n);
  g_assert_cmpfloat_with_epsilon (loss, want_loss[0], 1e-4);
  int n_grads = 0, n_after = 0;
  for (guint i = 0; i < vl_safetensors_n_tensors (exp); i++)
    {
      const char *name = vl_safetensors_get (exp, i)->name;
      gboolean grad = g_str_has_prefix (name, "grad."), after = g_str_has_prefix (name, "after.");
      if (!grad && !after)
        continue;
      const char *pname = strchr (name, '.') + 1;
      int ix = vl_model_find_tensor (m, pname);
      if (ix < 0)
        g_error ("%s: no tensor %s in the model", c->name, pname);
      g_autofree float *want = vl_test_read (exp, name, &n);
      int64_t numel;
      float *got = grad ? vl_model_tensor_grad (m, ix)
                        : vl_model_tensor_data (m, ix, NULL, NULL, &numel);
      g_assert_nonnull (got);
      vl_test_assert_close (name, got, want, n, grad ? 2e-4 : 1e-5, grad ? 3e-3 : 1e-5);
      n_grads += grad;
      n_after += after;
    }
  g_test_message ("%s: %d gradients, %d running statistics checked", c->name, n_grads, n_after);
  g_assert_cmpint (n_grads, >=, 6);
  if (c->kind != VL_STEM_RESNETV2)
    g_assert_cmpint (n_after, >=, 4);
}

/* Locked transformer parameters stay bit for bit while the stem trains; a locked stem's
 * BatchNorm keeps its running statistics (frozen BN). */
static void
test_frozen_transformer (void)
{
  g_autofree float *images = NULL;
  g_autofree int *targets = NULL;
  int64_t sh[4];
  g_autoptr(VlModel) m = load_case ("stem-mbconv", &images, sh, &targets);
  g_autoptr(GError) error = NULL;
  const int B = (int) sh[0], H = (int) sh[2], W = (int) sh[3];
  const int nt = vl_model_n_tensors (m);
  const int head_group = vl_model_n_groups (m) - 1;
  g_autofree float **before = g_new0 (float *, nt);
  for (int i = 0; i < nt; i++)
    {
      int64_t numel;
      const float *d = vl_model_tensor_data (m, i, NULL, NULL, &numel);
      before[i] = g_memdup2 (d, sizeof (float) * numel);
    }
  lock_all_but_stem (m);
  VlAdamW opt = VL_ADAMW_DEFAULTS;
  for (int step = 0; step < 3; step++)
    {
      double loss;
      g_assert_true (vl_model_forward (m, images, B, H, W, VL_FORWARD_TRAIN, &error));
      g_assert_true (vl_model_backward (m, targets, 0.0f, &loss, &error));
      g_assert_true (isfinite (loss));
      vl_model_adamw_step (m, &opt);
    }
  int changed_stem = 0;
  for (int i = 0; i < nt; i++)
    {
      int64_t numel;
      const float *d = vl_model_tensor_data (m, i, NULL, NULL, &numel);
      const int grp = vl_model_tensor_group (m, i);
      const gboolean same = memcmp (d, before[i], sizeof (float) * numel) == 0;
      if (grp != 0 && grp != head_group && !same)
        g_error ("%s changed while its group was locked", vl_model_tensor_name (m, i));
      changed_stem += grp == 0 && !same &&
                      g_str_has_prefix (vl_model_tensor_name (m, i), "patch_embed.");
      memcpy (before[i], d, sizeof (float) * numel);
    }
  g_assert_cmpint (changed_stem, >, 20);   /* weights and running statistics */

  /* the stem locked: its BatchNorm normalises with the running statistics and keeps them */
  vl_model_lock (m, 1);
  double loss;
  g_assert_true (vl_model_forward (m, images, B, H, W, VL_FORWARD_TRAIN, &error));
  g_assert_true (vl_model_backward (m, targets, 0.0f, &loss, &error));
  for (int i = 0; i < nt; i++)
    {
      int64_t numel;
      const float *d = vl_model_tensor_data (m, i, NULL, NULL, &numel);
      g_assert_true (memcmp (d, before[i], sizeof (float) * numel) == 0);
      g_free (before[i]);
    }
}

static gboolean
same_tensor (VlModel *a, VlModel *b, const char *name)
{
  int i = vl_model_find_tensor (a, name), j = vl_model_find_tensor (b, name);
  g_assert_cmpint (i, >=, 0);
  g_assert_cmpint (j, >=, 0);
  int64_t na, nb;
  const float *da = vl_model_tensor_data (a, i, NULL, NULL, &na);
  const float *db = vl_model_tensor_data (b, j, NULL, NULL, &nb);
  return na == nb && memcmp (da, db, sizeof (float) * na) == 0;
}

/* --stem: a model's patch embedding replaced; everything else kept; saved and read back. */
static void
test_replace (gconstpointer data)
{
  const VlStemKind kind = GPOINTER_TO_INT (data);
  g_autoptr(GError) error = NULL;
  VlGeometry geo;
  g_assert_true (vl_geometry_parse ("img=32,patch=8,chans=3,width=32,depth=2,heads=2", &geo,
                                    &error));
  g_autoptr(VlModel) orig = vl_model_new_random (&geo, 4, 7);
  g_autoptr(VlModel) m = vl_model_new_random (&geo, 4, 7);
  vl_model_lock (m, 2);
  g_assert_true (vl_model_replace_stem (m, kind, 11, &error));
  g_assert_cmpint (vl_model_stem_kind (m), ==, kind);
  g_assert_cmpint (vl_model_find_tensor (m, "patch_embed.stem.0.conv.weight"), >=, 0);
  g_assert_cmpint (vl_model_geometry (m)->patch, ==, 8);
  g_assert_cmpint (vl_model_n_groups (m), ==, vl_model_n_groups (orig));
  g_assert_false (vl_model_group_trainable (m, 0));   /* the locks stay */
  g_assert_true (vl_model_group_trainable (m, vl_model_n_groups (m) - 1));
  const char *kept[] = { "cls_token", "pos_embed", "blocks.1.mlp.fc2.weight", "norm.bias",
                         "head.weight" };
  for (guint i = 0; i < G_N_ELEMENTS (kept); i++)
    g_assert_true (same_tensor (m, orig, kept[i]));

  float images[2 * 3 * 32 * 32];
  for (guint i = 0; i < G_N_ELEMENTS (images); i++)
    images[i] = sinf ((float) i * 0.37f);
  g_assert_true (vl_model_forward (m, images, 2, 32, 32, VL_FORWARD_INFER, &error));
  g_assert_cmpint (vl_model_n_tokens_last (m), ==, 1 + 16);
  g_autofree float *logits = g_memdup2 (vl_model_logits (m), sizeof (float) * 2 * 4);

  /* the run folder's lossless checkpoint and the timm export both read back as they were */
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *st = g_build_filename (dir, "model.safetensors", NULL);
  g_autofree char *cfg = g_build_filename (dir, "config.json", NULL);
  g_assert_true (vl_model_save_checkpoint (m, st, cfg, &error));
  g_autoptr(VlModel) back = vl_model_load (dir, &error);
  g_assert_no_error (error);
  g_assert_cmpint (vl_model_stem_kind (back), ==, kind);
  g_assert_true (vl_model_forward (back, images, 2, 32, 32, VL_FORWARD_INFER, &error));
  g_assert_true (memcmp (vl_model_logits (back), logits, sizeof (float) * 8) == 0);
  g_autofree char *exp_dir = g_build_filename (dir, "export", NULL);
  g_assert_true (vl_model_export (m, exp_dir, &error));
  g_autoptr(VlModel) exported = vl_model_load (exp_dir, &error);
  g_assert_no_error (error);
  g_assert_true (vl_model_forward (exported, images, 2, 32, 32, VL_FORWARD_INFER, &error));
  g_assert_true (memcmp (vl_model_logits (exported), logits, sizeof (float) * 8) == 0);

  /* it trains: a step of the stem with the transformer frozen */
  vl_model_lock (m, 1);
  vl_model_set_group_trainable (m, 0, TRUE);
  int targets[2] = { 1, 3 };
  double loss;
  g_assert_true (vl_model_forward (m, images, 2, 32, 32, VL_FORWARD_TRAIN, &error));
  g_assert_true (vl_model_backward (m, targets, 0.0f, &loss, &error));
  g_assert_true (isfinite (loss));
  g_assert_cmpfloat (vl_model_group_grad_norm (m, 0), >, 0.0);
}

static void
test_replace_bad_patch (void)
{
  g_autoptr(GError) error = NULL;
  VlGeometry geo;
  g_assert_true (vl_geometry_parse ("img=28,patch=7,chans=1,width=32,depth=1,heads=2", &geo,
                                    &error));
  g_autoptr(VlModel) m = vl_model_new_random (&geo, 3, 1);
  g_assert_false (vl_model_replace_stem (m, VL_STEM_CONV, 1, &error));
  g_assert_error (error, VL_ERROR, VL_ERROR_INVALID);
  g_assert_nonnull (strstr (error->message, "power of two"));
  g_assert_cmpint (vl_model_stem_kind (m), ==, VL_STEM_PATCH);
}


/* A hybrid checkpoint with a tensor left out, or of another shape: an error naming it. */
static void
test_bad_checkpoint (void)
{
  g_autofree char *src = vl_test_data_path ("hybrid-s", "model.safetensors", NULL);
  g_autoptr(VlSafetensors) st = vl_test_open (src);
  const char *cases[][2] = {
    { "patch_embed.backbone.norm.bias", "is missing" },
    { "patch_embed.backbone.conv.weight", "a multiple of 32" },
  };
  for (guint k = 0; k < G_N_ELEMENTS (cases); k++)
    {
      g_autofree char *dir = vl_test_tmpdir ();
      g_autofree char *dst = g_build_filename (dir, "model.safetensors", NULL);
      g_autoptr(VlSafetensorsWriter) w = vl_safetensors_writer_new ();
      g_autoptr(GPtrArray) keep = g_ptr_array_new_with_free_func (g_free);
      for (guint i = 0; i < vl_safetensors_n_tensors (st); i++)
        {
          const VlTensorInfo *t = vl_safetensors_get (st, i);
          int64_t n;
          float *d = vl_test_read (st, t->name, &n);
          g_ptr_array_add (keep, d);
          if (strcmp (t->name, cases[k][0]) != 0)
            vl_safetensors_writer_add_f32 (w, t->name, t->ndim, t->shape, d);
          else if (k == 1)
            {
              /* 16 output channels: too few for GroupNorm's 32 groups */
              int64_t shape[4] = { 16, t->shape[1], t->shape[2], t->shape[3] };
              vl_safetensors_writer_add_f32 (w, t->name, 4, shape, d);
            }
        }
      g_autoptr(GError) error = NULL;
      g_assert_true (vl_safetensors_writer_write (w, dst, &error));
      g_autoptr(VlModel) m = vl_model_load (dst, &error);
      g_assert_null (m);
      g_assert_nonnull (error);
      g_test_message ("%s", error->message);
      g_assert_nonnull (strstr (error->message, cases[k][0]));
      g_assert_nonnull (strstr (error->message, cases[k][1]));
    }
}

/* vitlab-cli (VITLAB_CLI) with a command line; its stdout, failing the test unless it exits 0. */
static char *
cli (const char *args)
{
  const char *exe = g_getenv ("VITLAB_CLI");
  g_assert_nonnull (exe);
  g_autofree char *cmd = g_strdup_printf ("%s %s", exe, args);
  g_autofree char *err = NULL;
  char *out = NULL;
  int status = -1;
  g_autoptr(GError) error = NULL;
  g_assert_true (g_spawn_command_line_sync (cmd, &out, &err, &status, &error));
  g_test_message ("$ %s\n%s%s", cmd, out, err);
  if (!WIFEXITED (status) || WEXITSTATUS (status) != 0)
    g_error ("%s failed:\n%s", cmd, err);
  return out;
}

/* train --stem conv --train-groups stem,head: the transformer leaves the run bit for bit as the
 * backbone had it; run.json and config.json name the stem; the run resumes. */
static void
test_cli_train_resume (void)
{
  g_autofree char *bb = g_test_build_filename (G_TEST_DIST, "..", "data", "backbones",
                                               "vitlab-fmnist-tiny", NULL);
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *run = g_build_filename (dir, "run", NULL);
  const char *data = "fashion-mnist:classes=5-7,per-class=16,val-per-class=8";
  g_autofree char *a1 = g_strdup_printf ("train --backbone %s --data %s --stem conv "
                                         "--train-groups stem,head --epochs 1 --batch 16 "
                                         "--out %s", bb, data, run);
  g_free (cli (a1));
  g_autofree char *run_json = NULL, *cfg_json = NULL;
  g_autofree char *rj = g_build_filename (run, "run.json", NULL);
  g_autofree char *cj = g_build_filename (run, "config.json", NULL);
  g_assert_true (g_file_get_contents (rj, &run_json, NULL, NULL));
  g_assert_true (g_file_get_contents (cj, &cfg_json, NULL, NULL));
  g_assert_nonnull (strstr (run_json, "\"stem\" : \"conv\""));
  g_assert_nonnull (strstr (cfg_json, "\"kind\" : \"conv\""));

  /* only the stem group and the head trained */
  g_autoptr(GError) error = NULL;
  g_autoptr(VlModel) before = vl_model_load (bb, &error);
  g_assert_no_error (error);
  g_autoptr(VlModel) after = vl_model_load (run, &error);
  g_assert_no_error (error);
  g_assert_cmpint (vl_model_stem_kind (after), ==, VL_STEM_CONV);
  int n_same = 0;
  for (int i = 0; i < vl_model_n_tensors (before); i++)
    {
      const char *name = vl_model_tensor_name (before, i);
      if (g_str_has_prefix (name, "blocks.") || g_str_has_prefix (name, "norm."))
        {
          g_assert_true (same_tensor (before, after, name));
          n_same++;
        }
    }
  g_assert_cmpint (n_same, ==, 6 * 12 + 2);
  g_assert_false (same_tensor (before, after, "pos_embed"));

  g_autofree char *a2 = g_strdup_printf ("train --resume --out %s --epochs 2", run);
  g_autofree char *o2 = cli (a2);
  g_assert_nonnull (strstr (o2, "val_acc="));
  g_autofree char *a3 = g_strdup_printf ("info %s", run);
  g_autofree char *o3 = cli (a3);
  g_assert_nonnull (strstr (o3, "stem:         conv"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *path = g_strconcat ("/stems/reference/", cases[i].name, NULL);
      g_test_add_data_func (path, &cases[i], test_reference);
    }
  g_test_add_func ("/stems/frozen-transformer", test_frozen_transformer);
  g_test_add_data_func ("/stems/replace/conv", GINT_TO_POINTER (VL_STEM_CONV), test_replace);
  g_test_add_data_func ("/stems/replace/mbconv", GINT_TO_POINTER (VL_STEM_MBCONV), test_replace);
  g_test_add_func ("/stems/replace/bad-patch", test_replace_bad_patch);
  g_test_add_func ("/stems/cli/train-resume", test_cli_train_resume);
  g_test_add_func ("/stems/errors/bad-checkpoint", test_bad_checkpoint);
  return g_test_run ();
}
