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

#include <glib/gstdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
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

/* The shipped backbone's config.json with `from` replaced by `to` (each must occur), beside a
 * link to its weights, in a fresh folder. Returns the folder. */
static char *
backbone_with_config (const char *from, const char *to)
{
  g_autofree char *src = vl_data_path ("backbones/vitlab-fmnist-tiny");
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

  /* a sane other size loads, and is the one used */
  g_autofree char *dir = backbone_with_config (INPUT_SIZE, "\"input_size\" : [1, 56, 56]");
  g_autoptr(GError) error = NULL;
  g_autoptr(VlModel) m = vl_model_load (dir, &error);
  g_assert_no_error (error);
  g_assert_cmpint (vl_model_geometry (m)->input_size, ==, 56);
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

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/hardening/config/input-size", test_config_input_size);
  g_test_add_func ("/hardening/config/crop-pct", test_config_crop_pct);
  g_test_add_func ("/hardening/config/heads", test_config_heads);
  g_test_add_func ("/hardening/weights/non-finite", test_weights_non_finite);
  return g_test_run ();
}
