/* test-hardening.c: what a downloaded or hostile file may declare, and what vitlab must do with
 * it: a checkpoint config with an absurd input size, crop_pct or head count, weights with NaN
 * or infinity, images whose header declares far more than the file carries (TGA, PNG, HDR,
 * PNM, BMP), a JPEG with an oversized Huffman table (stb_image 2.27 writes out of bounds on it),
 * and dataset folders with symbolic links back up the tree. Every case must end in an error
 * naming the file and the problem, quickly, without a crash or a sanitizer report. */
#include "vl-test-util.h"

#include "vl-dataset.h"
#include "vl-image.h"
#include "vl-model.h"
#include "vl-trainer.h"

#include <glib/gstdio.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <stb/stb_image_write.h>

/* ------------------------------------------------------------------ helpers */

static void
assert_error_names (const GError *error, const char *first, ...) G_GNUC_NULL_TERMINATED;

/* The error exists and its message contains every string given. */
static void
assert_error_names (const GError *error, const char *first, ...)
{
  g_assert_nonnull (error);
  g_test_message ("error: %s", error->message);
  va_list ap;
  va_start (ap, first);
  for (const char *s = first; s != NULL; s = va_arg (ap, const char *))
    if (strstr (error->message, s) == NULL)
      g_error ("error message does not contain \"%s\": %s", s, error->message);
  va_end (ap);
}

static char *
write_bytes (const char *dir, const char *name, const void *data, gsize size)
{
  g_autoptr(GError) error = NULL;
  char *path = g_build_filename (dir, name, NULL);
  g_file_set_contents (path, data, (gssize) size, &error);
  g_assert_no_error (error);
  return path;
}

/* A checkpoint folder's config.json with `from` replaced by `to` (which must occur), beside a
 * link to its weights, in a fresh folder. Returns the folder. */
static char *
checkpoint_with_config (const char *src, const char *from, const char *to)
{
  g_autofree char *src_cfg = g_build_filename (src, "config.json", NULL);
  g_autofree char *src_st = g_build_filename (src, "model.safetensors", NULL);
  g_autofree char *text = NULL;
  g_autoptr(GError) error = NULL;
  g_file_get_contents (src_cfg, &text, NULL, &error);
  g_assert_no_error (error);
  char *dir = vl_test_tmpdir ();
  g_autofree char *st = g_build_filename (dir, "model.safetensors", NULL);
  g_assert_cmpint (symlink (src_st, st), ==, 0);
  g_autofree char *edited = NULL;
  if (from != NULL)
    {
      g_auto(GStrv) parts = g_strsplit (text, from, -1);
      if (g_strv_length (parts) < 2)
        g_error ("%s does not contain %s", src_cfg, from);
      edited = g_strjoinv (to, parts);
    }
  g_autofree char *cfg = write_bytes (dir, "config.json", edited ? edited : text,
                                      strlen (edited ? edited : text));
  return dir;
}

/* The same with the shipped backbone (one input channel, patch 4, 28x28). */
static char *
backbone_with_config (const char *from, const char *to)
{
  g_autofree char *src = vl_data_path ("backbones/vitlab-fmnist-tiny");
  return checkpoint_with_config (src, from, to);
}

/* Loading the backbone with one config edit fails, naming config.json and each string. */
static void
assert_config_refused (const char *from, const char *to, const char *must1, const char *must2)
{
  g_autofree char *dir = backbone_with_config (from, to);
  g_autofree char *cfg = g_build_filename (dir, "config.json", NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(VlModel) m = vl_model_load (dir, &error);
  g_assert_null (m);
  g_assert_true (error->domain == VL_ERROR);
  assert_error_names (error, cfg, must1, must2, NULL);
}

/* ------------------------------------------------------------------ configs */

#define INPUT_SIZE "\"input_size\" : [\n      1,\n      28,\n      28\n    ]"

static void
test_config_input_size (void)
{
  /* the audit's reproducers: a 480 GB allocation on one number of the file */
  assert_config_refused (INPUT_SIZE, "\"input_size\" : [1, 100000, 100000]", "input_size",
                         "at most 2048 pixels");
  assert_config_refused (INPUT_SIZE, "\"input_size\" : [1, 20000, 20000]", "input_size",
                         "2048");
  assert_config_refused (INPUT_SIZE, "\"input_size\" : [1, 1e300, 1e300]", "input_size",
                         "2048");
  /* not a multiple of the patch (4) */
  assert_config_refused (INPUT_SIZE, "\"input_size\" : [1, 30, 30]", "input_size",
                         "multiple of the patch size 4");
  /* a channel count that would not fit an int */
  assert_config_refused (INPUT_SIZE, "\"input_size\" : [1e20, 28, 28]", "input_size",
                         "channels");

  /* an RGB checkpoint (tests/data/fam-timm-gap, patch 8): the audit's [3,100000,100000] */
  g_autofree char *rgb = vl_test_data_path ("fam-timm-gap", NULL);
  const char *rgb_size = "\"input_size\": [\n      3,\n      32,\n      32\n    ]";
  const char *huge[] = { "\"input_size\": [3, 100000, 100000]",
                         "\"input_size\": [3, 20000, 20000]" };
  for (guint i = 0; i < G_N_ELEMENTS (huge); i++)
    {
      g_autofree char *d = checkpoint_with_config (rgb, rgb_size, huge[i]);
      g_autofree char *cfg = g_build_filename (d, "config.json", NULL);
      g_autoptr(GError) e = NULL;
      g_autoptr(VlModel) bad = vl_model_load (d, &e);
      g_assert_null (bad);
      assert_error_names (e, cfg, "input_size", "at most 2048 pixels", NULL);
    }

  /* a sane other size loads, and is the one used */
  g_autofree char *dir = backbone_with_config (INPUT_SIZE, "\"input_size\" : [1, 56, 56]");
  g_autoptr(GError) error = NULL;
  g_autoptr(VlModel) m = vl_model_load (dir, &error);
  g_assert_no_error (error);
  g_assert_cmpint (vl_model_geometry (m)->input_size, ==, 56);
}

/* The audit's reproducers through the real vitlab-cli: classify on a checkpoint whose config
 * declares a 100000-pixel input (it aborted on a 480 GB allocation) or crop_pct 0 (it printed a
 * prediction computed from uninitialised memory): exit status 1, the file named, no signal. */
static void
test_config_cli_classify (void)
{
  const char *cli = g_getenv ("VITLAB_CLI");
  g_assert_nonnull (cli);
  g_autofree char *sample = vl_data_path ("samples/0-t-shirt-top-0.png");
  struct { const char *from, *to, *says; } cases[] = {
    { INPUT_SIZE, "\"input_size\" : [1, 100000, 100000]", "input_size" },
    { "\"crop_pct\" : 1.0", "\"crop_pct\" : 0", "crop_pct" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *dir = backbone_with_config (cases[i].from, cases[i].to);
      const char *argv[] = { cli, "classify", dir, sample, NULL };
      g_autofree char *out = NULL, *err = NULL;
      int status = 0;
      g_autoptr(GError) error = NULL;
      g_assert_true (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_STDIN_FROM_DEV_NULL, NULL,
                                   NULL, &out, &err, &status, &error));
      g_assert_no_error (error);
      g_test_message ("classify: %s", err);
      g_assert_true (WIFEXITED (status));
      g_assert_cmpint (WEXITSTATUS (status), ==, 1);
      g_assert_cmpstr (out, ==, "");
      g_assert_nonnull (strstr (err, dir));
      g_assert_nonnull (strstr (err, cases[i].says));
      g_assert_null (strstr (err, "Sanitizer"));
      g_assert_null (strstr (err, "runtime error"));
    }
}

static void
test_config_crop_pct (void)
{
  const char *bad[] = { "0", "-0.5", "0.01", "3", "1e999" };
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autofree char *to = g_strdup_printf ("\"crop_pct\" : %s", bad[i]);
      g_autofree char *dir = backbone_with_config ("\"crop_pct\" : 1.0", to);
      g_autofree char *cfg = g_build_filename (dir, "config.json", NULL);
      g_autoptr(GError) error = NULL;
      g_autoptr(VlModel) m = vl_model_load (dir, &error);
      g_assert_null (m);
      /* json-glib may refuse 1e999 itself; either way the file is named */
      assert_error_names (error, cfg, NULL);
      if (i < 4)
        assert_error_names (error, "crop_pct", "0.05", NULL);
    }
  assert_config_refused ("\"crop_pct\" : 1.0", "\"crop_pct\" : \"wide\"", "crop_pct",
                         "not a finite number");

  g_autofree char *dir = backbone_with_config ("\"crop_pct\" : 1.0", "\"crop_pct\" : 0.875");
  g_autoptr(GError) error = NULL;
  g_autoptr(VlModel) m = vl_model_load (dir, &error);
  g_assert_no_error (error);
  g_assert_cmpfloat (vl_model_geometry (m)->crop_pct, ==, 0.875);
}

/* A mean or std finite as a double but beyond float's range (fuzz-config: 9e99) became
 * infinity in the float the geometry keeps; now refused. */
static void
test_config_mean_std_range (void)
{
  assert_config_refused ("\"std\" : [\n      0.3529999852180481", "\"std\" : [\n      9e99",
                         "std", "float's range");
  assert_config_refused ("\"mean\" : [\n      0.28600001335144043",
                         "\"mean\" : [\n      -9e99", "mean", "float's range");
}

/* A random small timm ViT saved without a config (its layer_norm_eps only in the safetensors
 * metadata), that value overwritten in place by `first` and then `rest` repeated: refused,
 * naming the weights' file. Unedited, it loads (the control). */
static void
assert_metadata_eps_refused (char first, char rest)
{
  VlGeometry g;
  g_autoptr(GError) error = NULL;
  g_assert_true (vl_geometry_parse ("img=8,patch=4,chans=1,width=12,depth=1,heads=3", &g,
                                    &error));
  g_autoptr(VlModel) m = vl_model_new_random (&g, 3, 1);
  g_free (g.family);
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *st = g_build_filename (dir, "model.safetensors", NULL);
  g_assert_true (vl_model_save (m, st, &error));
  g_autoptr(VlModel) control = vl_model_load (dir, &error);
  g_assert_no_error (error);
  g_autofree char *bytes = NULL;
  gsize len = 0;
  g_assert_true (g_file_get_contents (st, &bytes, &len, &error));
  /* in the JSON header, after its 8-byte length (which holds NULs) */
  g_assert_cmpuint (len, >, 8);
  char *key = g_strstr_len (bytes + 8, (gssize) len - 8, "\"layer_norm_eps\"");
  g_assert_nonnull (key);
  char *open = strchr (key + strlen ("\"layer_norm_eps\""), '"');
  char *close = strchr (open + 1, '"');
  g_assert_cmpint (close - open, >, 3);
  open[1] = first;
  memset (open + 2, rest, (size_t) (close - open - 2));
  g_autofree char *edited = write_bytes (dir, "model.safetensors", bytes, len);
  g_autoptr(VlModel) bad = vl_model_load (dir, &error);
  g_assert_null (bad);
  assert_error_names (error, st, "layer_norm_eps", "at most 1", NULL);
}

/* LayerNorm's epsilon: one beyond a float's range (1e300) became infinity, with which every
 * LayerNorm put out its bias alone (a prediction from nothing, no error); a negative one NaN.
 * Read from a timm config, from the weights' metadata and from a Hugging Face config. */
static void
test_config_layer_norm_eps (void)
{
  const char *eps = "\"layer_norm_eps\" : 9.9999999999999995e-07";
  assert_config_refused (eps, "\"layer_norm_eps\" : 1e300", "layer_norm_eps", "at most 1");
  assert_config_refused (eps, "\"layer_norm_eps\" : -1e-6", "layer_norm_eps", "above 0");
  assert_config_refused (eps, "\"layer_norm_eps\" : 0", "layer_norm_eps", "above 0");
  assert_config_refused (eps, "\"layer_norm_eps\" : 1e-60", "layer_norm_eps", "above 0");

  assert_metadata_eps_refused ('1', '0');   /* 1e21 */
  assert_metadata_eps_refused ('-', '1');
  assert_metadata_eps_refused ('n', 'a');   /* "naaa...": no number, read as 0 */

  g_autofree char *hf = vl_test_data_path ("fam-hf-vit", NULL);
  g_autofree char *d = checkpoint_with_config (hf, "\"layer_norm_eps\": 1e-12",
                                               "\"layer_norm_eps\": 1e300");
  g_autofree char *cfg = g_build_filename (d, "config.json", NULL);
  g_autoptr(GError) e = NULL;
  g_autoptr(VlModel) bad = vl_model_load (d, &e);
  g_assert_null (bad);
  assert_error_names (e, cfg, "layer_norm_eps", "at most 1", NULL);

  /* the shipped backbone's own value still loads */
  g_autofree char *dir = backbone_with_config (NULL, NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(VlModel) m = vl_model_load (dir, &error);
  g_assert_no_error (error);
  g_assert_cmpfloat (vl_model_geometry (m)->eps, ==, 1e-6f);
}

static void
test_config_heads (void)
{
  /* (int) 1e20 was undefined behaviour (clang's UBSan: float-cast-overflow) */
  assert_config_refused ("\"num_heads\" : 3", "\"num_heads\" : 1e20", "num_heads",
                         "from 1 to 96");
  assert_config_refused ("\"num_heads\" : 3", "\"num_heads\" : 2.5", "num_heads", "whole");
  assert_config_refused ("\"num_heads\" : 3", "\"num_heads\" : 7", "7 heads", "width 96");
  assert_config_refused ("\"num_heads\" : 3", "\"num_heads\" : -4", "num_heads", "96");

  /* the geometry of a random model, from the command line */
  VlGeometry g;
  g_autoptr(GError) error = NULL;
  g_assert_false (vl_geometry_parse ("img=28,patch=4,width=96,depth=2,heads=1e20", &g, &error));
  assert_error_names (error, "heads=1e20", NULL);
  g_clear_error (&error);
  g_assert_false (vl_geometry_parse ("img=1e30,patch=4,width=96,depth=2", &g, &error));
  assert_error_names (error, "img=1e30", NULL);
  g_free (g.family);
}

/* ------------------------------------------------------------------ weights */

static void
assert_weights_refused (const char *tensor, float value)
{
  g_autofree char *src = vl_data_path ("backbones/vitlab-fmnist-tiny");
  g_autoptr(GError) error = NULL;
  g_autoptr(VlModel) m = vl_model_load (src, &error);
  g_assert_no_error (error);
  int i = vl_model_find_tensor (m, tensor);
  g_assert_cmpint (i, >=, 0);
  int64_t numel = 0;
  float *data = vl_model_tensor_data (m, i, NULL, NULL, &numel);
  g_assert_cmpint (numel, >, 3);
  data[3] = value;

  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *st = g_build_filename (dir, "model.safetensors", NULL);
  g_assert_true (vl_model_save (m, st, &error));
  g_assert_no_error (error);
  g_autoptr(VlModel) again = vl_model_load (st, &error);
  g_assert_null (again);
  g_assert_error (error, VL_ERROR, VL_ERROR_NUMERIC);
  assert_error_names (error, st, tensor, "element 3", NULL);
}

static void
test_weights_non_finite (void)
{
  assert_weights_refused ("blocks.2.mlp.fc1.weight", NAN);
  assert_weights_refused ("head.bias", INFINITY);
  assert_weights_refused ("pos_embed", -INFINITY);
}

/* A checkpoint larger than the machine will allocate: a valid one-block ViT of width 4096 and
 * MLP 131072 (4.3 GB of float32, a sparse file), loaded where allocations above 2 GB fail
 * (an address-space limit; under AddressSanitizer its max_allocation_size_mb). Loading it is an
 * error naming the file, not an abort. */
#define HUGE_W 4096
#define HUGE_M 131072

static char *
write_huge_checkpoint (const char *dir)
{
  struct { const char *name; int ndim; int64_t shape[4]; } t[] = {
    { "patch_embed.proj.weight", 4, { HUGE_W, 1, 1, 1 } },
    { "patch_embed.proj.bias", 1, { HUGE_W } },
    { "cls_token", 3, { 1, 1, HUGE_W } },
    { "pos_embed", 3, { 1, 2, HUGE_W } },
    { "blocks.0.norm1.weight", 1, { HUGE_W } },
    { "blocks.0.norm1.bias", 1, { HUGE_W } },
    { "blocks.0.attn.qkv.weight", 2, { 3 * HUGE_W, HUGE_W } },
    { "blocks.0.attn.qkv.bias", 1, { 3 * HUGE_W } },
    { "blocks.0.attn.proj.weight", 2, { HUGE_W, HUGE_W } },
    { "blocks.0.attn.proj.bias", 1, { HUGE_W } },
    { "blocks.0.norm2.weight", 1, { HUGE_W } },
    { "blocks.0.norm2.bias", 1, { HUGE_W } },
    { "blocks.0.mlp.fc1.weight", 2, { HUGE_M, HUGE_W } },
    { "blocks.0.mlp.fc1.bias", 1, { HUGE_M } },
    { "blocks.0.mlp.fc2.weight", 2, { HUGE_W, HUGE_M } },
    { "blocks.0.mlp.fc2.bias", 1, { HUGE_W } },
    { "norm.weight", 1, { HUGE_W } },
    { "norm.bias", 1, { HUGE_W } },
  };
  GString *json = g_string_new ("{");
  guint64 offset = 0;
  for (guint i = 0; i < G_N_ELEMENTS (t); i++)
    {
      guint64 n = 1;
      g_string_append_printf (json, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[", i ? "," : "",
                              t[i].name);
      for (int d = 0; d < t[i].ndim; d++)
        {
          g_string_append_printf (json, "%s%" G_GINT64_FORMAT, d ? "," : "", t[i].shape[d]);
          n *= (guint64) t[i].shape[d];
        }
      g_string_append_printf (json, "],\"data_offsets\":[%" G_GUINT64_FORMAT ",%"
                              G_GUINT64_FORMAT "]}", offset, offset + 4 * n);
      offset += 4 * n;
    }
  g_string_append (json, "}");
  while (json->len % 8 != 0)
    g_string_append_c (json, ' ');
  char *path = g_build_filename (dir, "model.safetensors", NULL);
  FILE *f = fopen (path, "wb");
  g_assert_nonnull (f);
  uint8_t len[8];
  for (int i = 0; i < 8; i++)
    len[i] = (uint8_t) ((guint64) json->len >> (8 * i));
  g_assert_cmpuint (fwrite (len, 1, 8, f), ==, 8);
  g_assert_cmpuint (fwrite (json->str, 1, json->len, f), ==, json->len);
  g_assert_cmpint (ftruncate (fileno (f), (off_t) (8 + json->len + offset)), ==, 0);
  fclose (f);
  g_string_free (json, TRUE);
  return path;
}

#if defined(__SANITIZE_ADDRESS__)
#define VL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define VL_ASAN 1
#endif
#endif

#if defined(__SANITIZE_THREAD__)
#define VL_TSAN_BUILD 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define VL_TSAN_BUILD 1
#endif
#endif

/* This program only, in sanitizer builds (whose shadow memory an address-space limit would
 * break): a refused allocation returns NULL, as on a machine without the memory. */
#define SANITIZER_LIMITS "allocator_may_return_null=1:max_allocation_size_mb=2048"
#ifdef VL_ASAN
const char *__asan_default_options (void);

const char *
__asan_default_options (void)
{
  return SANITIZER_LIMITS;
}
#endif
#ifdef VL_TSAN_BUILD
const char *__tsan_default_options (void);

const char *
__tsan_default_options (void)
{
  return SANITIZER_LIMITS;
}
#endif

/* A forward whose outputs are not finite is an error naming the output and the block where the
 * activations first went non-finite, whether a corrupted weight (here set in memory, past the
 * load-time check) or an input that overflows made it; the next forward on good weights works. */
static void
assert_forward_refused (VlModel *m, const float *px, int S, const char *where)
{
  g_autoptr(GError) error = NULL;
  g_assert_false (vl_model_forward (m, px, 2, S, S, VL_FORWARD_INFER, &error));
  g_assert_error (error, VL_ERROR, VL_ERROR_NUMERIC);
  assert_error_names (error, "the model's output features", "image 0", where, NULL);
}

static void
test_forward_non_finite (void)
{
  g_autofree char *src = vl_data_path ("backbones/vitlab-fmnist-tiny");
  g_autoptr(GError) error = NULL;
  g_autoptr(VlModel) m = vl_model_load (src, &error);
  g_assert_no_error (error);
  const VlGeometry *g = vl_model_geometry (m);
  const int S = g->img_size;
  const gsize n = (gsize) 2 * g->in_chans * S * S;
  g_autofree float *px = g_new (float, n);
  for (gsize i = 0; i < n; i++)
    px[i] = 0.25f * (float) (i % 7) - 0.5f;
  g_assert_true (vl_model_forward (m, px, 2, S, S, VL_FORWARD_INFER, &error));
  g_assert_no_error (error);

  int i = vl_model_find_tensor (m, "blocks.2.mlp.fc1.bias");
  g_assert_cmpint (i, >=, 0);
  int64_t numel = 0;
  float *bias = vl_model_tensor_data (m, i, NULL, NULL, &numel);
  float kept = bias[5];
  bias[5] = INFINITY;
  assert_forward_refused (m, px, S, "leaving block 2 (blocks.2)");
  bias[5] = NAN;
  assert_forward_refused (m, px, S, "leaving block 2 (blocks.2)");
  bias[5] = kept;

  /* finite inputs whose patch embedding overflows */
  g_autofree float *huge = g_new (float, n);
  for (gsize k = 0; k < n; k++)
    huge[k] = (k % 2 ? 1 : -1) * FLT_MAX;
  assert_forward_refused (m, huge, S, "leaving the patch embedding (stem)");

  g_assert_true (vl_model_forward (m, px, 2, S, S, VL_FORWARD_INFER, &error));
  g_assert_no_error (error);
  for (int k = 0; k < 2 * vl_model_num_classes (m); k++)
    g_assert_true (isfinite (vl_model_logits (m)[k]));
}

static void
test_weights_too_large (void)
{
  if (g_test_subprocess ())
    {
#if !defined(VL_ASAN) && !defined(VL_TSAN_BUILD)
      struct rlimit lim;
      g_assert_cmpint (getrlimit (RLIMIT_AS, &lim), ==, 0);
      lim.rlim_cur = (rlim_t) 6 << 30;   /* the 4.3 GB mapping fits, a copy of it does not */
      g_assert_cmpint (setrlimit (RLIMIT_AS, &lim), ==, 0);
#endif
      const char *path = g_getenv ("VITLAB_TEST_HUGE");
      g_autoptr(GError) error = NULL;
      g_autoptr(VlModel) m = vl_model_load (path, &error);
      g_assert_null (m);
      g_assert_error (error, VL_ERROR, VL_ERROR_IO);
      assert_error_names (error, path, "cannot allocate", "backbone", NULL);
      g_print ("%s\n", error->message);
      return;
    }
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *path = write_huge_checkpoint (dir);
  g_setenv ("VITLAB_TEST_HUGE", path, TRUE);
  g_test_trap_subprocess (NULL, 120 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
  g_test_trap_assert_stdout ("*cannot allocate*MB for the model's backbone parameters*");
  g_unlink (path);
}

/* ------------------------------------------------------------------ images */

/* Loads from memory and from a file, and checks the header as a dataset scan does: all three
 * fail within a second, naming the file and each string. */
static void
assert_image_refused (const char *dir, const char *name, const void *data, gsize size,
                      int channels, const char *must1, const char *must2)
{
  g_autofree char *path = write_bytes (dir, name, data, size);
  gint64 t0 = g_get_monotonic_time ();
  g_autoptr(GError) error = NULL;
  g_autoptr(VlImage) img = vl_image_load (path, channels, &error);
  g_assert_null (img);
  g_assert_true (error->domain == VL_ERROR);
  assert_error_names (error, path, must1, must2, NULL);
  g_clear_error (&error);

  g_autoptr(VlImage) img2 = vl_image_load_memory (data, size, name, channels, &error);
  g_assert_null (img2);
  assert_error_names (error, name, must1, must2, NULL);
  g_clear_error (&error);

  if (channels == 0)
    {
      int w = -1, h = -1;
      g_assert_false (vl_image_check_file (path, &w, &h, &error));
      assert_error_names (error, path, must1, must2, NULL);
      g_assert_cmpint (w, ==, -1);
    }
  double seconds = (g_get_monotonic_time () - t0) / 1e6;
  g_test_message ("%s: refused in %.3f s", name, seconds);
  g_assert_cmpfloat (seconds, <, 2.0);
}

static void
put_le16 (uint8_t *p, unsigned v)
{
  p[0] = v & 0xff;
  p[1] = (v >> 8) & 0xff;
}

static void
put_be32 (uint8_t *p, guint32 v)
{
  p[0] = v >> 24;
  p[1] = v >> 16;
  p[2] = v >> 8;
  p[3] = v;
}

static void
test_image_tga_bomb (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  /* the audit's 18-byte TGA: an uncompressed 24-bit header, no pixels */
  uint8_t tga[18] = { 0, 0, 2 };
  put_le16 (tga + 12, 9000);
  put_le16 (tga + 14, 9000);
  tga[16] = 24;
  assert_image_refused (dir, "bomb.tga", tga, sizeof tga, 0, "9000x9000", "243000018 bytes");
  /* run-length encoded: at most 128 pixels a packet */
  tga[2] = 10;
  assert_image_refused (dir, "bomb-rle.tga", tga, sizeof tga, 3, "9000x9000", "bytes");
  /* cut inside the header (fuzz-image, corpus/image/tga-short-header-c0): 17 bytes declaring
   * 4112x5136 at 16 bits, which stb decoded from zeros in seconds */
  static const uint8_t short_tga[17] = { 0, 0, 2, 2, 8, 0x36, 1, 0x10, 0x63, 0, 0, 0,
                                         0x10, 0x10, 0x10, 0x14, 0x10 };
  assert_image_refused (dir, "short.tga", short_tga, sizeof short_tga, 0, "4112x5136",
                        "bytes");
  /* above the pixel limit */
  put_le16 (tga + 12, 60000);
  put_le16 (tga + 14, 60000);
  assert_image_refused (dir, "huge.tga", tga, sizeof tga, 0, "60000x60000", "megapixel");

  /* a real small TGA still decodes */
  uint8_t px[4 * 3 * 3];
  for (guint i = 0; i < sizeof px; i++)
    px[i] = (uint8_t) (i * 7);
  g_autofree char *ok = g_build_filename (dir, "ok.tga", NULL);
  g_assert_cmpint (stbi_write_tga (ok, 4, 3, 3, px), !=, 0);
  g_autoptr(GError) error = NULL;
  g_autoptr(VlImage) img = vl_image_load (ok, 0, &error);
  g_assert_no_error (error);
  g_assert_cmpmem (img->pixels, sizeof px, px, sizeof px);
}

static guint32
crc32_png (const uint8_t *p, gsize n)
{
  guint32 c = 0xffffffffu;
  for (gsize i = 0; i < n; i++)
    {
      c ^= p[i];
      for (int k = 0; k < 8; k++)
        c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
    }
  return c ^ 0xffffffffu;
}

static void
png_chunk (GByteArray *out, const char *type, const uint8_t *data, guint32 n)
{
  uint8_t be[4];
  put_be32 (be, n);
  g_byte_array_append (out, be, 4);
  guint start = out->len;
  g_byte_array_append (out, (const uint8_t *) type, 4);
  if (n > 0)
    g_byte_array_append (out, data, n);
  put_be32 (be, crc32_png (out->data + start, n + 4));
  g_byte_array_append (out, be, 4);
}

/* A PNG whose IHDR declares w x h at `depth` bits of colour type `color`, with a token IDAT,
 * padded with zeros after IEND to `pad_to` bytes. */
static GByteArray *
png_bomb (guint32 w, guint32 h, int depth, int color, gsize pad_to)
{
  static const uint8_t sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
  static const uint8_t idat[] = { 0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01 };
  GByteArray *png = g_byte_array_new ();
  g_byte_array_append (png, sig, 8);
  uint8_t ihdr[13] = { 0 };
  put_be32 (ihdr, w);
  put_be32 (ihdr + 4, h);
  ihdr[8] = (uint8_t) depth;
  ihdr[9] = (uint8_t) color;
  png_chunk (png, "IHDR", ihdr, 13);
  png_chunk (png, "IDAT", idat, sizeof idat);
  png_chunk (png, "IEND", NULL, 0);
  if (png->len < pad_to)
    g_byte_array_set_size (png, (guint) pad_to);   /* new bytes: zeroed below */
  for (gsize i = 8 + 25 + 12 + sizeof idat + 12; i < png->len; i++)
    png->data[i] = 0;
  return png;
}

static void
test_image_png_bomb (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  /* 9000x9000 16-bit RGBA in 79 bytes: 648 MB of rows cannot come out of 79 bytes of deflate */
  g_autoptr(GByteArray) small = png_bomb (9000, 9000, 16, 6, 0);
  assert_image_refused (dir, "bomb.png", small->data, small->len, 0, "9000x9000",
                        "takes at least");
  /* above the pixel limit */
  g_autoptr(GByteArray) huge = png_bomb (30000, 30000, 8, 2, 0);
  assert_image_refused (dir, "huge.png", huge->data, huge->len, 0, "30000x30000", "megapixel");
  /* large enough a file for its rows, but 10000x10000 RGBA converted to RGB is 700 MB */
  g_autoptr(GByteArray) padded = png_bomb (10000, 10000, 8, 6, 400 * 1000);
  assert_image_refused (dir, "budget.png", padded->data, padded->len, 3, "10000x10000",
                        "above the 512 MB limit");
}

static void
test_image_hdr_bomb (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  const char *head = "#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 9000 +X 9000\n";
  assert_image_refused (dir, "bomb.hdr", head, strlen (head), 0, "9000x9000",
                        "takes at least");
  /* as large as run-length scanlines of that size can be: then the float buffer (972 MB and
   * the 8-bit result) is above the budget, and nothing is decoded */
  gsize size = 6 * 1000 * 1000;
  g_autofree char *big = g_malloc0 (size);
  memcpy (big, head, strlen (head));
  assert_image_refused (dir, "budget.hdr", big, size, 0, "9000x9000", "above the 512 MB limit");
}

/* stb_image's run-length HDR decoder loops forever on a run of length 0 or on data that ends
 * inside a scanline (found by fuzz-image); such files are refused before it runs. */
static void
test_image_hdr_rle_hang (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  const int w = 12, h = 9;
  float f[12 * 9 * 3];
  for (int i = 0; i < w * h * 3; i++)
    f[i] = (float) (i % 17) / 4.0f;
  g_autofree char *ok = g_build_filename (dir, "ok.hdr", NULL);
  g_assert_cmpint (stbi_write_hdr (ok, w, h, 3, f), !=, 0);
  g_autofree char *data = NULL;
  gsize size = 0;
  g_assert_true (g_file_get_contents (ok, &data, &size, NULL));
  g_autoptr(GError) error = NULL;
  g_autoptr(VlImage) img = vl_image_load (ok, 0, &error);
  g_assert_no_error (error);
  g_assert_cmpint (img->width, ==, w);

  /* the pixels start after the header's empty line and the resolution line */
  const char *blank = g_strstr_len (data, (gssize) size, "\n\n");
  g_assert_nonnull (blank);
  const char *eol = memchr (blank + 2, '\n', size - (gsize) (blank + 2 - data));
  g_assert_nonnull (eol);
  gsize start = (gsize) (eol + 1 - data);
  g_assert_cmpint (data[start], ==, 2);   /* a run-length scanline */
  /* (the header check a dataset scan runs reads no pixels: these fail when decoded) */
  assert_image_refused (dir, "cut.hdr", data, size - 25, 3, "corrupt HDR", "ends early");
  data[start + 4] = 0;                     /* the first packet: a dump of 0 values */
  assert_image_refused (dir, "zero.hdr", data, size, 3, "corrupt HDR", "length 0");

  /* what fuzz-image found (tests/fuzz/corpus/image; the first byte is the harness's channel
   * count): the hang; a file whose last values are cut off where a scanline ends, which made
   * the check itself read past the data; a header ended by a line that starts with a NUL, which
   * stb reads as empty and the check did not */
  const char *found[] = { "hdr-rle-truncated-c0", "hdr-rle-overread-c0",
                          "hdr-rle-nul-line-c0" };
  for (guint i = 0; i < G_N_ELEMENTS (found); i++)
    {
      g_autofree char *path = g_test_build_filename (G_TEST_DIST, "fuzz", "corpus", "image",
                                                     found[i], NULL);
      g_autofree char *bytes = NULL;
      gsize n = 0;
      g_assert_true (g_file_get_contents (path, &bytes, &n, NULL));
      assert_image_refused (dir, found[i], bytes + 1, n - 1, 3, found[i], "corrupt HDR");
    }
}

/* A 16-bit PNM asked for other channels: stb 2.27 converts it as 8-bit into a buffer half the
 * size its 16-to-8 step reads (fuzz-image, corpus/image/pnm16-convert-overflow-c3); vitlab
 * converts such files itself. The crasher, then a 2x1 gray image read as RGB: each pixel's gray
 * value in all three channels. */
static void
test_image_pnm16_channels (void)
{
  static const char crash[] = "P5\n1\n2\n3333 \006";
  g_autoptr(GError) error = NULL;
  g_autoptr(VlImage) bad = vl_image_load_memory ((const uint8_t *) crash, sizeof crash,
                                                 "crash.pgm", 3, &error);
  if (bad == NULL)
    assert_error_names (error, "crash.pgm", NULL);
  g_clear_error (&error);

  static const uint8_t pgm[] = { 'P', '5', '\n', '2', ' ', '1', '\n', '6', '5', '5', '3', '5',
                                 '\n', 0x12, 0x34, 0xff, 0x00 };
  g_autoptr(VlImage) gray = vl_image_load_memory (pgm, sizeof pgm, "two.pgm", 0, &error);
  g_assert_no_error (error);
  g_assert_cmpint (gray->channels, ==, 1);
  g_autoptr(VlImage) rgb = vl_image_load_memory (pgm, sizeof pgm, "two.pgm", 3, &error);
  g_assert_no_error (error);
  g_assert_cmpint (rgb->width, ==, 2);
  g_assert_cmpint (rgb->channels, ==, 3);
  for (int x = 0; x < 2; x++)
    for (int c = 0; c < 3; c++)
      g_assert_cmpint (rgb->pixels[x * 3 + c], ==, gray->pixels[x]);
  g_assert_cmpint (gray->pixels[0], !=, gray->pixels[1]);
}

static void
test_image_pnm_bmp_psd_bomb (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  const char *pnm = "P6\n9000 9000\n255\n\x01\x02\x03";
  assert_image_refused (dir, "bomb.ppm", pnm, strlen (pnm), 0, "9000x9000", "bytes");
  /* stb reads these numbers into an int without a bound (signed overflow; found by fuzz-image) */
  const char *pnm_long = "P6\n# a comment\n111111111111111111111111 9000\n255\n";
  assert_image_refused (dir, "long.ppm", pnm_long, strlen (pnm_long), 0, "PNM header",
                        "too large");
  const char *pnm16 = "P5\n9000 9000\n65535\n";
  assert_image_refused (dir, "bomb16.pgm", pnm16, strlen (pnm16), 0, "9000x9000",
                        "162000000 bytes");

  uint8_t bmp[54] = { 'B', 'M' };
  bmp[10] = 54;               /* pixel data offset */
  bmp[14] = 40;               /* BITMAPINFOHEADER */
  put_le16 (bmp + 18, 9000);  /* width (32-bit LE, low half) */
  put_le16 (bmp + 22, 9000);  /* height */
  bmp[26] = 1;                /* planes */
  bmp[28] = 24;               /* bits per pixel */
  assert_image_refused (dir, "bomb.bmp", bmp, sizeof bmp, 0, "9000x9000", "bytes");
  /* cut before the bit count: stb reads zeros there, the sides stand */
  assert_image_refused (dir, "short.bmp", bmp, 27, 0, "9000x9000", "bytes");
  /* OS/2's 12-byte header has 16-bit sides and the bit count at 24 (fuzz-image,
   * corpus/image/bmp-os2-bomb-c0): 33 bytes declaring 65527x1470 at 8 bits, which stb decoded
   * from zeros into 289 MB for over 30 s under ASan */
  static const uint8_t os2[33] = { 'B', 'M', 0x7a, 0x01, 0x10, 0, 0, 0, 0, 0, 0x31, 0, 0, 0,
                                   12, 0, 0, 0, 0xf7, 0xff, 0xbe, 0x05, 1, 0, 8, 0, 0, 8, 0, 0,
                                   0, 0x1e, 0xcb };
  assert_image_refused (dir, "os2.bmp", os2, sizeof os2, 0, "65527x1470", "bytes");
  /* a real OS/2 BMP, 2x1 at 24 bits (rows padded to 4 bytes, stored as BGR), still decodes */
  static const uint8_t os2_ok[34] = { 'B', 'M', 34, 0, 0, 0, 0, 0, 0, 0, 26, 0, 0, 0,
                                      12, 0, 0, 0, 2, 0, 1, 0, 1, 0, 24, 0,
                                      30, 20, 10, 60, 50, 40, 0, 0 };
  g_autoptr(GError) error = NULL;
  g_autoptr(VlImage) img = vl_image_load_memory (os2_ok, sizeof os2_ok, "ok.bmp", 3, &error);
  g_assert_no_error (error);
  static const uint8_t rgb[6] = { 10, 20, 30, 40, 50, 60 };
  g_assert_cmpint (img->width, ==, 2);
  g_assert_cmpint (img->height, ==, 1);
  g_assert_cmpmem (img->pixels, sizeof rgb, rgb, sizeof rgb);

  /* PSD: an RGB header declaring 9000x9000 in four channels, run-length compressed, and no
   * data (stb would decode 324 MB of zeros out of it) */
  uint8_t psd[40] = { '8', 'B', 'P', 'S', 0, 1 };
  psd[13] = 4;                /* channels */
  put_be32 (psd + 14, 9000);  /* height */
  put_be32 (psd + 18, 9000);  /* width */
  psd[23] = 8;                /* depth */
  psd[25] = 3;                /* RGB */
  psd[39] = 1;                /* after three empty sections: RLE */
  assert_image_refused (dir, "bomb.psd", psd, sizeof psd, 0, "9000x9000", "5062526 bytes");
}

/* stb_image 2.27's JPEG Huffman-table builder writes past its 257-entry table when a DHT's
 * sixteen counts sum past 256; JPEG is libjpeg-turbo's now, which refuses the table. */
static GByteArray *
jpeg_oversized_dht (void)
{
  GByteArray *j = g_byte_array_new ();
  static const uint8_t soi[] = { 0xff, 0xd8 };
  g_byte_array_append (j, soi, 2);
  /* DQT: table 0, all ones */
  static const uint8_t dqt_head[] = { 0xff, 0xdb, 0x00, 0x43, 0x00 };
  g_byte_array_append (j, dqt_head, sizeof dqt_head);
  for (int i = 0; i < 64; i++)
    g_byte_array_append (j, (const uint8_t[]) { 1 }, 1);
  /* SOF0: 8-bit, 8x8, one component, table 0 */
  static const uint8_t sof[] = { 0xff, 0xc0, 0x00, 0x0b, 0x08, 0x00, 0x08, 0x00, 0x08, 0x01,
                                 0x01, 0x11, 0x00 };
  g_byte_array_append (j, sof, sizeof sof);
  /* DHT: DC table 0, counts summing to 845, and a few symbols */
  static const uint8_t dht[] = { 0xff, 0xc4, 0x00, 0x1f, 0x00,
                                 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 80, 0, 0, 0, 0,
                                 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
  g_byte_array_append (j, dht, sizeof dht);
  /* SOS, a little entropy-coded data, EOI */
  static const uint8_t sos[] = { 0xff, 0xda, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3f, 0x00,
                                 0x12, 0x34, 0x56, 0x78, 0xff, 0xd9 };
  g_byte_array_append (j, sos, sizeof sos);
  return j;
}

static void
test_image_jpeg_dht (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  g_autoptr(GByteArray) j = jpeg_oversized_dht ();
  g_test_message ("JPEG with an oversized DHT: %u bytes", j->len);
  g_assert_cmpuint (j->len, <, 160);
  assert_image_refused (dir, "dht.jpg", j->data, j->len, 0, "cannot decode image",
                        "Huffman table");
  assert_image_refused (dir, "dht3.jpg", j->data, j->len, 3, "cannot decode image",
                        "Huffman table");

  /* a dataset scan reads its header: listed as skipped, nothing else happens */
  g_autofree char *root = vl_test_tmpdir ();
  const char *classes[] = { "a", "b" };
  for (int k = 0; k < 2; k++)
    {
      g_autofree char *cls = g_build_filename (root, classes[k], NULL);
      g_assert_cmpint (g_mkdir (cls, 0755), ==, 0);
      for (int i = 0; i < 3; i++)
        {
          uint8_t px[8 * 8 * 3];
          memset (px, 40 * (i + 1) + k, sizeof px);
          g_autofree char *name = g_strdup_printf ("%d.png", i);
          g_autofree char *p = g_build_filename (cls, name, NULL);
          g_assert_cmpint (stbi_write_png (p, 8, 8, 3, px, 8 * 3), !=, 0);
        }
      g_autofree char *bad = write_bytes (cls, "dht.jpg", j->data, j->len);
    }
  VlDatasetOptions opt = VL_DATASET_OPTIONS_DEFAULT;
  g_autoptr(GError) error = NULL;
  VlDataset *ds = vl_dataset_open (root, &opt, &error);
  g_assert_no_error (error);
  g_assert_cmpint (vl_dataset_n_items (ds, VL_SPLIT_TRAIN) + vl_dataset_n_items (ds, VL_SPLIT_VAL),
                   ==, 6);
  g_autoptr(GPtrArray) skipped = vl_dataset_skipped (ds);
  g_assert_cmpuint (skipped->len, ==, 2);
  for (guint i = 0; i < skipped->len; i++)
    {
      const VlSkipped *s = g_ptr_array_index (skipped, i);
      g_test_message ("skipped %s: %s", s->path, s->reason);
      g_assert_true (g_str_has_suffix (s->path, "dht.jpg"));
      g_assert_nonnull (strstr (s->reason, "Huffman table"));
    }
  vl_dataset_free (ds);
}

/* Pixels of a few formats still come out as before (the decoders changed under them). */
static void
test_image_formats_exact (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  const int w = 13, h = 7;
  uint8_t px[13 * 7 * 4];
  for (guint i = 0; i < sizeof px; i++)
    px[i] = (uint8_t) (i * 37 + (i >> 3));
  for (int c = 1; c <= 4; c++)
    {
      g_autofree char *name = g_strdup_printf ("c%d.png", c);
      g_autofree char *p = g_build_filename (dir, name, NULL);
      g_assert_cmpint (stbi_write_png (p, w, h, c, px, w * c), !=, 0);
      g_autoptr(GError) error = NULL;
      g_autoptr(VlImage) img = vl_image_load (p, 0, &error);
      g_assert_no_error (error);
      g_assert_cmpint (img->channels, ==, c);
      g_assert_cmpmem (img->pixels, (gsize) w * h * c, px, (gsize) w * h * c);
      int cw = 0, ch = 0;
      g_assert_true (vl_image_check_file (p, &cw, &ch, &error));
      g_assert_cmpint (cw, ==, w);
      g_assert_cmpint (ch, ==, h);

      /* conversions as stb_image made them: RGBA -> RGB drops alpha, gray -> RGB replicates */
      g_autoptr(VlImage) rgb = vl_image_load (p, 3, &error);
      g_assert_no_error (error);
      for (int i = 0; i < w * h; i++)
        for (int k = 0; k < 3; k++)
          g_assert_cmpint (rgb->pixels[i * 3 + k], ==, px[i * c + (c >= 3 ? k : 0)]);
    }
  /* BMP through stb_image */
  g_autofree char *bmp = g_build_filename (dir, "x.bmp", NULL);
  g_assert_cmpint (stbi_write_bmp (bmp, w, h, 3, px), !=, 0);
  g_autoptr(GError) error = NULL;
  g_autoptr(VlImage) img = vl_image_load (bmp, 0, &error);
  g_assert_no_error (error);
  g_assert_cmpmem (img->pixels, (gsize) w * h * 3, px, (gsize) w * h * 3);
}

/* ------------------------------------------------------------------ dataset links */

static void
write_pngs (const char *dir, int n, int seed)
{
  g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
  for (int i = 0; i < n; i++)
    {
      uint8_t px[6 * 6 * 3];
      memset (px, (seed * 31 + i * 7) & 0xff, sizeof px);
      g_autofree char *name = g_strdup_printf ("img%02d.png", i);
      g_autofree char *p = g_build_filename (dir, name, NULL);
      g_assert_cmpint (stbi_write_png (p, 6, 6, 3, px, 6 * 3), !=, 0);
    }
}

static void
link_in (const char *dir, const char *name, const char *target)
{
  g_autofree char *p = g_build_filename (dir, name, NULL);
  g_assert_cmpint (symlink (target, p), ==, 0);
}

/* Every item of the dataset, by its real path: each at most once over both splits. */
static int
assert_items_unique (VlDataset *ds)
{
  g_autoptr(GHashTable) real = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  int n = 0;
  for (int s = 0; s < 2; s++)
    for (int i = 0; i < vl_dataset_n_items (ds, s); i++, n++)
      {
        char *r = realpath (vl_dataset_item_name (ds, s, i), NULL);
        g_assert_nonnull (r);
        if (!g_hash_table_add (real, r))
          g_error ("%s is in the dataset twice (as %s)", r, vl_dataset_item_name (ds, s, i));
      }
  return n;
}

static gboolean
skipped_has (GPtrArray *skipped, const char *suffix, const char *reason)
{
  for (guint i = 0; i < skipped->len; i++)
    {
      const VlSkipped *s = g_ptr_array_index (skipped, i);
      if (g_str_has_suffix (s->path, suffix) && strstr (s->reason, reason) != NULL)
        return TRUE;
    }
  return FALSE;
}

static void
test_dataset_symlinks (void)
{
  /* class folders: a link to .. (the audit's: 24 files became 2 million items), a link to the
   * other class, a link to an outside folder (followed, once), a dangling link */
  g_autofree char *root = vl_test_tmpdir ();
  g_autofree char *a = g_build_filename (root, "a", NULL);
  g_autofree char *b = g_build_filename (root, "b", NULL);
  g_autofree char *outside = vl_test_tmpdir ();
  write_pngs (a, 5, 1);
  write_pngs (b, 5, 2);
  write_pngs (outside, 2, 3);
  link_in (a, "up", "..");
  link_in (a, "again", ".");
  link_in (b, "up", "..");
  link_in (b, "to-a", "../a");
  link_in (b, "more", outside);
  link_in (b, "more-again", outside);
  link_in (a, "gone.png", "/nonexistent/vitlab/gone.png");
  link_in (a, "img00-link.png", "img00.png");

  VlDatasetOptions opt = VL_DATASET_OPTIONS_DEFAULT;
  g_autoptr(GError) error = NULL;
  VlDataset *ds = vl_dataset_open (root, &opt, &error);
  g_assert_no_error (error);
  g_assert_cmpint (assert_items_unique (ds), ==, 12);
  g_assert_cmpint (vl_dataset_class_count (ds, VL_SPLIT_TRAIN, 0)
                   + vl_dataset_class_count (ds, VL_SPLIT_VAL, 0), ==, 5);
  g_assert_cmpint (vl_dataset_class_count (ds, VL_SPLIT_TRAIN, 1)
                   + vl_dataset_class_count (ds, VL_SPLIT_VAL, 1), ==, 7);
  g_autoptr(GPtrArray) skipped = vl_dataset_skipped (ds);
  for (guint i = 0; i < skipped->len; i++)
    {
      const VlSkipped *s = g_ptr_array_index (skipped, i);
      g_test_message ("skipped %s: %s", s->path, s->reason);
    }
  g_assert_true (skipped_has (skipped, "a/gone.png", "dangling"));
  g_assert_true (skipped_has (skipped, "a/up", "already includes"));
  g_assert_true (skipped_has (skipped, "a/again", "already includes"));
  g_assert_true (skipped_has (skipped, "b/to-a", "already includes"));
  g_assert_true (skipped_has (skipped, "b/more-again", "already includes"));
  /* the link sorts first, so it is the one taken and the file itself the duplicate */
  g_assert_true (skipped_has (skipped, "a/img00.png", "same file"));
  g_assert_cmpuint (skipped->len, ==, 7);
  vl_dataset_free (ds);

  /* train/ and val/: links from val into train's classes (and back) must not put a file in
   * both splits */
  g_autofree char *tv = vl_test_tmpdir ();
  g_autofree char *ta = g_build_filename (tv, "train", "a", NULL);
  g_autofree char *tb = g_build_filename (tv, "train", "b", NULL);
  g_autofree char *va = g_build_filename (tv, "val", "a", NULL);
  g_autofree char *vb = g_build_filename (tv, "val", "b", NULL);
  write_pngs (ta, 4, 4);
  write_pngs (tb, 4, 5);
  write_pngs (va, 2, 6);
  write_pngs (vb, 2, 7);
  link_in (va, "train-a", "../../train/a");
  link_in (vb, "root", "../..");
  link_in (ta, "val-b", "../../val/b");
  VlDataset *ds2 = vl_dataset_open (tv, &opt, &error);
  g_assert_no_error (error);
  g_assert_cmpint (assert_items_unique (ds2), ==, 12);
  g_assert_cmpint (vl_dataset_n_items (ds2, VL_SPLIT_TRAIN), ==, 8);
  g_assert_cmpint (vl_dataset_n_items (ds2, VL_SPLIT_VAL), ==, 4);
  vl_dataset_free (ds2);
}

/* ------------------------------------------------------------------ targets.csv */

/* A target finite as a double but beyond float's range (fuzz-csv: 0.2e53) became infinity in
 * the float the dataset keeps; now refused, naming the file and line. */
static void
test_csv_float_range (void)
{
  g_autofree char *root = vl_test_tmpdir ();
  write_pngs (root, 2, 1);
  static const char csv[] = "file,x\nimg00.png,1\nimg01.png,0.2e53\n";
  g_autofree char *p = write_bytes (root, "targets.csv", csv, strlen (csv));
  VlDatasetOptions opt = VL_DATASET_OPTIONS_DEFAULT;
  g_autoptr(GError) error = NULL;
  g_assert_null (vl_dataset_open (root, &opt, &error));
  g_autofree char *where = g_strconcat (p, ":3", NULL);
  assert_error_names (error, where, "0.2e53", "float", NULL);
  g_clear_error (&error);
  /* FLT_MAX itself still reads */
  static const char edge[] = "file,x\nimg00.png,1\nimg01.png,-3.4028234e38\n";
  g_free (write_bytes (root, "targets.csv", edge, strlen (edge)));
  VlDataset *ds = vl_dataset_open (root, &opt, &error);
  g_assert_no_error (error);
  vl_dataset_free (ds);
}

/* ------------------------------------------------------------------ JSON of the wrong type */

/* metrics.jsonl with members of the wrong type (fuzz-metrics): json-glib's string and boolean
 * getters refused them with a critical, which a GLib test makes fatal. Now a "task" that is not
 * a string is an error naming the line, and the rest reads as absent. */
static void
test_metrics_wrong_types (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  static const char good[] =
    "{\"task\":\"segment\",\"epoch\":0,\"cached\":[1],\"best\":{},\"val_at\":[\"own size\"],"
    "\"val_miou\":0.5,\"val_iou\":[0.25,0.75]}\n";
  g_autofree char *p = write_bytes (dir, "metrics.jsonl", good, strlen (good));
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) epochs = vl_run_read_metrics (dir, VL_TASK_SEGMENT, 2, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (epochs->len, ==, 1);
  const VlEpochMetrics *m = g_ptr_array_index (epochs, 0);
  g_assert_false (m->cached);
  g_assert_false (m->best);
  g_assert_false (m->seg.own_size);
  g_assert_cmpfloat (m->seg.iou[1], ==, 0.75);

  /* a line of only a comment parses to no document at all (a NULL root): left out */
  static const char comment[] = "/* c */\n{\"task\":\"classify\",\"epoch\":3}\n";
  g_free (write_bytes (dir, "metrics.jsonl", comment, strlen (comment)));
  g_autoptr(GPtrArray) one = vl_run_read_metrics (dir, VL_TASK_CLASSIFY, 2, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (one->len, ==, 1);
  g_assert_cmpint (((VlEpochMetrics *) g_ptr_array_index (one, 0))->epoch, ==, 3);

  static const char bad[] = "{\"task\":\"classify\",\"epoch\":0}\n{\"task\":[\"classify\"]}\n";
  g_free (write_bytes (dir, "metrics.jsonl", bad, strlen (bad)));
  g_assert_null (vl_run_read_metrics (dir, VL_TASK_CLASSIFY, 2, &error));
  g_autofree char *line = g_strconcat (p, ":2", NULL);
  assert_error_names (error, line, "not a string", NULL);
}

/* A COCO folder whose instances JSON holds elements and members of the wrong type
 * (fuzz-detect): refused or skipped with the file named, no critical. */
static void
test_coco_wrong_types (void)
{
  g_autofree char *root = vl_test_tmpdir ();
  g_autofree char *ann = g_build_filename (root, "annotations", NULL);
  g_autofree char *train = g_build_filename (root, "images", "train", NULL);
  g_autofree char *val = g_build_filename (root, "images", "val", NULL);
  g_assert_cmpint (g_mkdir_with_parents (ann, 0755), ==, 0);
  write_pngs (train, 1, 1);
  write_pngs (val, 1, 2);
  static const char val_json[] =
    "{\"images\":[{\"id\":1,\"file_name\":\"img00.png\"}],\"annotations\":[\"x\",7,"
    "{\"image_id\":1,\"category_id\":1,\"bbox\":[1,1,2,2]}],"
    "\"categories\":[{\"id\":1,\"name\":\"cat\"}]}";
  g_free (write_bytes (ann, "instances_val.json", val_json, strlen (val_json)));
  static const char *const train_json[] = {
    "{\"images\":[3],\"categories\":[]}",
    "{\"images\":[],\"categories\":[\"cat\"]}",
    "{\"images\":[],\"categories\":[{\"id\":1,\"name\":[\"cat\"]}]}",
  };
  static const char *const reasons[] = { "images[0]", "categories[0]", "categories[0]" };
  VlDatasetOptions opt = VL_DATASET_OPTIONS_DEFAULT;
  opt.detect = TRUE;
  for (guint i = 0; i < G_N_ELEMENTS (train_json); i++)
    {
      g_autofree char *p = write_bytes (ann, "instances_train.json", train_json[i],
                                        strlen (train_json[i]));
      g_autoptr(GError) error = NULL;
      g_assert_null (vl_dataset_open (root, &opt, &error));
      assert_error_names (error, p, reasons[i], NULL);
    }
  /* a file_name that is not a string: that image skipped, its box with it */
  static const char named[] =
    "{\"images\":[{\"id\":1,\"file_name\":\"img00.png\"},{\"id\":2,\"file_name\":{}}],"
    "\"annotations\":[{\"image_id\":1,\"category_id\":1,\"bbox\":[1,1,2,2]}],"
    "\"categories\":[{\"id\":1,\"name\":\"cat\"}]}";
  g_free (write_bytes (ann, "instances_train.json", named, strlen (named)));
  g_autoptr(GError) error = NULL;
  VlDataset *ds = vl_dataset_open (root, &opt, &error);
  g_assert_no_error (error);
  g_assert_cmpint (vl_dataset_n_items (ds, VL_SPLIT_TRAIN), ==, 1);
  g_assert_cmpint (vl_dataset_n_items (ds, VL_SPLIT_VAL), ==, 1);
  g_autoptr(GPtrArray) skipped = vl_dataset_skipped (ds);
  g_assert_true (skipped_has (skipped, "instances_train.json: image 2", "(no name)"));
  g_assert_true (skipped_has (skipped, "instances_val.json: annotation 0", "no image_id"));
  vl_dataset_free (ds);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/hardening/config/input-size", test_config_input_size);
  g_test_add_func ("/hardening/config/crop-pct", test_config_crop_pct);
  g_test_add_func ("/hardening/config/cli-classify", test_config_cli_classify);
  g_test_add_func ("/hardening/config/heads", test_config_heads);
  g_test_add_func ("/hardening/config/mean-std-range", test_config_mean_std_range);
  g_test_add_func ("/hardening/config/layer-norm-eps", test_config_layer_norm_eps);
  g_test_add_func ("/hardening/weights/non-finite", test_weights_non_finite);
  g_test_add_func ("/hardening/weights/too-large", test_weights_too_large);
  g_test_add_func ("/hardening/forward/non-finite", test_forward_non_finite);
  g_test_add_func ("/hardening/image/tga-bomb", test_image_tga_bomb);
  g_test_add_func ("/hardening/image/png-bomb", test_image_png_bomb);
  g_test_add_func ("/hardening/image/hdr-bomb", test_image_hdr_bomb);
  g_test_add_func ("/hardening/image/hdr-rle-hang", test_image_hdr_rle_hang);
  g_test_add_func ("/hardening/image/pnm-bmp-psd-bomb", test_image_pnm_bmp_psd_bomb);
  g_test_add_func ("/hardening/image/pnm16-channels", test_image_pnm16_channels);
  g_test_add_func ("/hardening/image/jpeg-oversized-dht", test_image_jpeg_dht);
  g_test_add_func ("/hardening/image/formats-exact", test_image_formats_exact);
  g_test_add_func ("/hardening/dataset/symlinks", test_dataset_symlinks);
  g_test_add_func ("/hardening/csv/float-range", test_csv_float_range);
  g_test_add_func ("/hardening/json/metrics-wrong-types", test_metrics_wrong_types);
  g_test_add_func ("/hardening/json/coco-wrong-types", test_coco_wrong_types);
  return g_test_run ();
}
