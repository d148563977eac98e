/* test-torch-ckpt.c: PyTorch checkpoints (torch.save's zip format: .pth, .pt, pytorch_model.bin)
 * read through vl_safetensors_open without running their pickle, against the tensors they were
 * saved from (tests/data/torch-ckpt, made by tests/data/gen-torch-ckpt.py from
 * tests/data/fam-torchvision/model.safetensors), and a torchvision .pth through the whole model
 * against torchvision's own outputs. */
#include "vl-test-util.h"
#include "vl-model.h"

#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

#define EVIL_TARGET "/tmp/vitlab-torch-ckpt-must-not-exist"

static VlSafetensors *
open_ckpt (const char *name)
{
  g_autofree char *path = vl_test_data_path ("torch-ckpt", name, NULL);
  return vl_test_open (path);
}

static VlSafetensors *
open_reference (void)
{
  g_autofree char *path = vl_test_data_path ("fam-torchvision", "model.safetensors", NULL);
  return vl_test_open (path);
}

/* Every tensor of the reference is in `st` under the same name, shape and values (within
 * tol relative: 0 for the same dtype, half's rounding for float16), and nothing else is. */
static void
assert_same_tensors (VlSafetensors *st, VlSafetensors *ref, VlDtype dtype, double rtol)
{
  g_assert_cmpuint (vl_safetensors_n_tensors (st), ==, vl_safetensors_n_tensors (ref));
  for (guint i = 0; i < vl_safetensors_n_tensors (ref); i++)
    {
      const VlTensorInfo *r = vl_safetensors_get (ref, i);
      const VlTensorInfo *t = vl_safetensors_lookup (st, r->name);
      g_assert_nonnull (t);
      g_assert_cmpint (t->dtype, ==, dtype);
      g_assert_cmpint (t->ndim, ==, r->ndim);
      for (int d = 0; d < r->ndim; d++)
        g_assert_cmpint (t->shape[d], ==, r->shape[d]);
      g_assert_cmpint (t->numel, ==, r->numel);
      g_autofree float *got = vl_test_read (st, r->name, NULL);
      g_autofree float *want = vl_test_read (ref, r->name, NULL);
      if (rtol == 0)
        g_assert_cmpmem (got, r->numel * sizeof (float), want, r->numel * sizeof (float));
      else
        vl_test_assert_close (r->name, got, want, r->numel, 6e-8, rtol);
    }
}

static void
test_torchvision_state_dict (void)
{
  g_autoptr(VlSafetensors) st = open_ckpt ("torchvision.pth");
  g_autoptr(VlSafetensors) ref = open_reference ();
  assert_same_tensors (st, ref, VL_DTYPE_F32, 0);
  g_assert_null (vl_safetensors_metadata (st));
  /* in the order torchvision's state_dict lists them */
  g_assert_cmpstr (vl_safetensors_get (st, 0)->name, ==, "class_token");
  g_assert_cmpstr (vl_safetensors_get (st, 1)->name, ==, "conv_proj.weight");
}

/* A training checkpoint: the weights under "state_dict" in float16 with DDP's "module." prefix,
 * beside an optimizer state, argparse.Namespace and a numpy scalar (opaque, never called). */
static void
test_training_checkpoint (void)
{
  g_autoptr(VlSafetensors) st = open_ckpt ("training.pth");
  g_autoptr(VlSafetensors) ref = open_reference ();
  assert_same_tensors (st, ref, VL_DTYPE_F16, 1.0 / 2048);
  g_assert_null (vl_safetensors_lookup (st, "module.class_token"));
}

static void
assert_values (VlSafetensors *st, const char *name, int ndim, const int64_t *shape,
               const float *want, int64_t n)
{
  const VlTensorInfo *t = vl_safetensors_lookup (st, name);
  g_assert_nonnull (t);
  g_assert_cmpint (t->ndim, ==, ndim);
  for (int d = 0; d < ndim; d++)
    g_assert_cmpint (t->shape[d], ==, shape[d]);
  g_assert_cmpint (t->numel, ==, n);
  if (n == 0)
    return;
  int64_t got_n;
  g_autofree float *got = vl_test_read (st, name, &got_n);
  g_assert_cmpint (got_n, ==, n);
  g_assert_cmpmem (got, n * sizeof (float), want, n * sizeof (float));
}

/* Views: a transpose and a column (strided copies), a slice at an offset, two names on one
 * storage, bfloat16, int64 and an empty tensor. */
static void
test_views (void)
{
  g_autoptr(VlSafetensors) st = open_ckpt ("views.pth");
  g_assert_cmpuint (vl_safetensors_n_tensors (st), ==, 8);
  float base[24], transposed[24], rows[12], column[4];
  for (int i = 0; i < 24; i++)
    base[i] = (float) i;
  for (int r = 0; r < 6; r++)
    for (int c = 0; c < 4; c++)
      transposed[r * 4 + c] = base[c * 6 + r];
  for (int i = 0; i < 12; i++)
    rows[i] = (float) (6 + i);
  for (int r = 0; r < 4; r++)
    column[r] = base[r * 6 + 2];
  assert_values (st, "base", 2, (int64_t[]) { 4, 6 }, base, 24);
  assert_values (st, "transposed", 2, (int64_t[]) { 6, 4 }, transposed, 24);
  assert_values (st, "rows_1_3", 2, (int64_t[]) { 2, 6 }, rows, 12);
  assert_values (st, "column_2", 1, (int64_t[]) { 4 }, column, 4);
  assert_values (st, "same_storage", 1, (int64_t[]) { 24 }, base, 24);
  /* bfloat16 keeps 8 bits of mantissa: 65504 is stored as 65536 */
  assert_values (st, "brain", 2, (int64_t[]) { 2, 2 }, (float[]) { 0.5f, -1.25f, 3.0f, 65536.0f },
                 4);
  g_assert_cmpint (vl_safetensors_lookup (st, "brain")->dtype, ==, VL_DTYPE_BF16);
  assert_values (st, "steps", 1, (int64_t[]) { 3 }, (float[]) { 7.0f, -3.0f, 0x1p40f }, 3);
  g_assert_cmpint (vl_safetensors_lookup (st, "steps")->dtype, ==, VL_DTYPE_I64);
  assert_values (st, "empty", 2, (int64_t[]) { 0, 5 }, NULL, 0);
}

/* A torchvision .pth loads as a model (as a file with config.json beside it, and as
 * pytorch_model.bin in a folder) and computes what torchvision computes. */
/* Runs `m` on the family fixture's inputs: its logits (and features) those of the fixture. */
static void
assert_fixture_outputs (VlModel *m, const char *fixture, gboolean features)
{
  g_autofree char *in = vl_test_data_path (fixture, "inputs.safetensors", NULL);
  g_autofree char *ex_path = vl_test_data_path (fixture, "expected.safetensors", NULL);
  g_autoptr(VlSafetensors) inputs = vl_test_open (in);
  g_autoptr(VlSafetensors) ex = vl_test_open (ex_path);
  g_autofree float *images = vl_test_read (inputs, "images", NULL);
  const VlTensorInfo *t = vl_safetensors_lookup (inputs, "images");
  g_autoptr(GError) error = NULL;
  g_assert_true (vl_model_forward (m, images, (int) t->shape[0], (int) t->shape[2],
                                   (int) t->shape[3], VL_FORWARD_INFER, &error));
  g_assert_no_error (error);
  int64_t n;
  g_autofree float *want = vl_test_read (ex, "logits", &n);
  vl_test_assert_close ("logits", vl_model_logits (m), want, n, 1e-4, 0);
  if (features)
    {
      g_autofree float *feat = vl_test_read (ex, "features", &n);
      vl_test_assert_close ("features", vl_model_features (m), feat, n, 1e-4, 0);
    }
}

static void
test_model_parity (void)
{
  g_autofree char *tmp = vl_test_tmpdir ();
  g_autofree char *from = vl_test_data_path ("torch-ckpt", "torchvision.pth", NULL);
  g_autofree char *file = g_build_filename (tmp, "vit.pth", NULL);
  g_autofree char *bin = g_build_filename (tmp, "pytorch_model.bin", NULL);
  g_autofree char *cfg = g_build_filename (tmp, "config.json", NULL);
  vl_test_copy_file (from, file);
  vl_test_copy_file (from, bin);
  /* torchvision saves no config; the fixture's 4 heads of 8 cannot be read off the tensors */
  g_assert_true (g_file_set_contents (cfg, "{\"num_heads\": 4}", -1, NULL));
  const char *paths[] = { file, tmp };
  for (guint k = 0; k < G_N_ELEMENTS (paths); k++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(VlModel) m = vl_model_load (paths[k], &error);
      g_assert_no_error (error);
      g_assert_cmpstr (vl_model_geometry (m)->family, ==, "torchvision");
      assert_fixture_outputs (m, "fam-torchvision", TRUE);
    }
  g_unlink (file);
  g_unlink (bin);
  g_unlink (cfg);
  g_rmdir (tmp);
}

/* torch.save (model) and a TorchScript archive (torch.jit.save): the modules' tensors read from
 * their pickled states (a module's _parameters, _buffers and _modules; TorchScript's attributes)
 * under their state-dict names, nothing called; the same tensors as the weights they came from. */
static void
test_whole_models (void)
{
  g_autoptr(VlSafetensors) ref = open_reference ();
  static const char *const files[] = { "whole-model.pth", "torchscript.pt", "model-in-dict.pth" };
  for (guint i = 0; i < G_N_ELEMENTS (files); i++)
    {
      g_autoptr(VlSafetensors) st = open_ckpt (files[i]);
      assert_same_tensors (st, ref, VL_DTYPE_F32, 0);
    }
}

/* A PyTorch Lightning checkpoint of a module holding a timm ViT as self.model: the ViT found under
 * "model.", the loss module beside it left out, the outputs fam-timm-reg-ls's; saved back under
 * the same prefixed names. Two ViTs in one checkpoint are refused, naming both prefixes. */
static void
test_lightning (void)
{
  g_assert_true (vl_checkpoint_has_extension ("epoch=3-step=120.ckpt"));
  g_autofree char *tmp = vl_test_tmpdir ();
  g_autofree char *from = vl_test_data_path ("torch-ckpt", "lightning.ckpt", NULL);
  g_autofree char *file = g_build_filename (tmp, "epoch=3-step=120.ckpt", NULL);
  g_autofree char *cfg_from = vl_test_data_path ("fam-timm-reg-ls", "config.json", NULL);
  g_autofree char *cfg = g_build_filename (tmp, "config.json", NULL);
  vl_test_copy_file (from, file);
  vl_test_copy_file (cfg_from, cfg);
  g_autoptr(GError) error = NULL;
  g_autoptr(VlModel) m = vl_model_load (file, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (vl_model_geometry (m)->family, ==, "timm");
  g_assert_cmpint (vl_model_geometry (m)->reg_tokens, ==, 4);
  assert_fixture_outputs (m, "fam-timm-reg-ls", FALSE);

  g_autofree char *saved = g_build_filename (tmp, "saved.safetensors", NULL);
  g_assert_true (vl_model_save (m, saved, &error));
  g_autoptr(VlSafetensors) st = vl_test_open (saved);
  g_assert_nonnull (vl_safetensors_lookup (st, "model.blocks.0.attn.qkv.weight"));
  g_assert_nonnull (vl_safetensors_lookup (st, "model.reg_token"));
  g_assert_null (vl_safetensors_lookup (st, "criterion.weight"));
  g_autoptr(VlModel) again = vl_model_load (saved, &error);
  g_assert_no_error (error);
  /* a new head (another task's classes) is saved under the same prefix, so it comes back */
  vl_model_set_head (again, VL_HEAD_LINEAR, 3, 0, 1);
  g_autofree char *sub = g_build_filename (tmp, "new-head", NULL);
  g_autofree char *headed_path = g_build_filename (sub, "vit.safetensors", NULL);
  g_assert_cmpint (g_mkdir (sub, 0700), ==, 0);
  g_assert_true (vl_model_save (again, headed_path, &error));
  g_autoptr(VlModel) headed = vl_model_load (headed_path, &error);
  g_assert_no_error (error);
  g_assert_cmpint (vl_model_num_classes (headed), ==, 3);
  g_unlink (headed_path);
  g_rmdir (sub);

  /* a teacher beside the student: which one to open is the user's choice */
  g_autoptr(VlSafetensorsWriter) w = vl_safetensors_writer_new ();
  g_autoptr(GPtrArray) keep = g_ptr_array_new_with_free_func (g_free);
  static const char *const prefixes[] = { "student.", "teacher." };
  for (guint p = 0; p < G_N_ELEMENTS (prefixes); p++)
    for (guint i = 0; i < vl_safetensors_n_tensors (st); i++)
      {
        const VlTensorInfo *ti = vl_safetensors_get (st, i);
        float *d = g_new (float, MAX (ti->numel, 1));
        vl_tensor_to_f32 (ti, d);
        g_ptr_array_add (keep, d);
        g_autofree char *name = g_strconcat (prefixes[p], ti->name, NULL);
        vl_safetensors_writer_add_f32 (w, name, ti->ndim, ti->shape, d);
      }
  g_autofree char *two = g_build_filename (tmp, "distill.safetensors", NULL);
  g_assert_true (vl_safetensors_writer_write (w, two, &error));
  g_autoptr(VlModel) none = vl_model_load (two, &error);
  g_assert_null (none);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, "2 ViTs in one checkpoint"));
  g_assert_nonnull (strstr (error->message, "\"student.model.\""));
  g_assert_nonnull (strstr (error->message, "\"teacher.model.\""));
  g_clear_error (&error);

  /* OpenCLIP's timm trunks: read as timm's (test-families /families/openclip-siglip); a
   * projection head after the trunk is not, and is named */
  g_autoptr(VlSafetensorsWriter) w2 = vl_safetensors_writer_new ();
  for (guint i = 0; i < vl_safetensors_n_tensors (st); i++)
    {
      const VlTensorInfo *ti = vl_safetensors_get (st, i);
      g_autofree char *name = g_strconcat ("visual.trunk.", ti->name + strlen ("model."), NULL);
      vl_safetensors_writer_add_f32 (w2, name, ti->ndim, ti->shape, keep->pdata[i]);
    }
  const VlTensorInfo *first = vl_safetensors_get (st, 0);
  vl_safetensors_writer_add_f32 (w2, "visual.head.proj.weight", first->ndim, first->shape,
                                 keep->pdata[0]);
  g_autofree char *trunk = g_build_filename (tmp, "open_clip_model.safetensors", NULL);
  g_assert_true (vl_safetensors_writer_write (w2, trunk, &error));
  g_autoptr(VlModel) clip = vl_model_load (trunk, &error);
  g_assert_null (clip);
  g_assert_nonnull (strstr (error->message, "OpenCLIP model with a timm trunk"));
  g_assert_nonnull (strstr (error->message, "visual.head.proj.weight"));
  g_unlink (trunk);
  g_unlink (file);
  g_unlink (cfg);
  g_unlink (saved);
  g_unlink (two);
  g_rmdir (tmp);
}

static void
assert_fails (const char *path, const char *needle)
{
  g_autoptr(GError) error = NULL;
  VlSafetensors *st = vl_safetensors_open (path, &error);
  g_assert_null (st);
  g_assert_nonnull (error);
  g_test_message ("%s", error->message);
  g_assert_true (g_str_has_prefix (error->message, path));
  g_assert_nonnull (strstr (error->message, needle));
}

static void
test_errors (void)
{
  g_unlink (EVIL_TARGET);
  static const struct {
    const char *file, *needle;
  } cases[] = {
    { "legacy.pth", "legacy format" },
    { "evil.pth", "no state dict" },
    { "no-storage.pth", "missing from the archive" },
  };
  for (guint k = 0; k < G_N_ELEMENTS (cases); k++)
    {
      g_autofree char *path = vl_test_data_path ("torch-ckpt", cases[k].file, NULL);
      assert_fails (path, cases[k].needle);
    }
  /* the pickle's os.system was never called */
  g_assert_false (g_file_test (EVIL_TARGET, G_FILE_TEST_EXISTS));

  /* cut anywhere: the central directory gone, or data.pkl / a storage cut short */
  g_autofree char *tmp = vl_test_tmpdir ();
  g_autofree char *from = vl_test_data_path ("torch-ckpt", "torchvision.pth", NULL);
  g_autofree char *cut = g_build_filename (tmp, "cut.pth", NULL);
  gsize len;
  g_autofree char *whole = NULL;
  g_assert_true (g_file_get_contents (from, &whole, &len, NULL));
  const gsize keep[] = { 4, 100, len / 2, len - 30 };
  for (guint k = 0; k < G_N_ELEMENTS (keep); k++)
    {
      g_assert_true (g_file_set_contents (cut, whole, (gssize) keep[k], NULL));
      assert_fails (cut, "");
    }
  /* a byte flipped in the archive's first 600 (its first headers and the start of data.pkl)
   * never crashes: the file loads or the error names it (fuzz-torch reaches the pickle itself) */
  for (gsize at = 0; at < 600 && at < len; at += 7)
    {
      g_autofree char *bad = g_memdup2 (whole, len);
      bad[at] ^= 0x5a;
      g_assert_true (g_file_set_contents (cut, bad, (gssize) len, NULL));
      g_autoptr(GError) error = NULL;
      g_autoptr(VlSafetensors) st = vl_safetensors_open (cut, &error);
      if (st == NULL)
        g_assert_true (g_str_has_prefix (error->message, cut));
    }
  g_unlink (cut);
  g_rmdir (tmp);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/torch-ckpt/torchvision-state-dict", test_torchvision_state_dict);
  g_test_add_func ("/torch-ckpt/training-checkpoint", test_training_checkpoint);
  g_test_add_func ("/torch-ckpt/views", test_views);
  g_test_add_func ("/torch-ckpt/model-parity", test_model_parity);
  g_test_add_func ("/torch-ckpt/lightning", test_lightning);
  g_test_add_func ("/torch-ckpt/whole-models", test_whole_models);
  g_test_add_func ("/torch-ckpt/errors", test_errors);
  return g_test_run ();
}
