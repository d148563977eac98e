/* fuzz-config.c: a checkpoint folder whose config.json (or, by the first byte,
 * open_clip_config.json, read when config.json is absent, or preprocessor_config.json) is the
 * input; vl_model_load must load it or refuse it with an error naming a file.
 *
 * preprocessor_config.json is read only beside a Hugging Face ViT's weights: for it the folder is
 * another, holding links to tests/data/fam-hf-vit's config.json and model.safetensors (a 32-wide,
 * 3-block HF ViT of 32 pixels, 186 KB), or (the first byte / 3 odd) to fam-hf-dinov2's, whose
 * crop_size and size.shortest_edge are read too.
 *
 * The weights beside it are a small timm ViT made once at start-up (TINY_GEOMETRY: the shipped
 * backbone's layout, 1 channel, patch 4, 3 heads, MLP ratio 4, 5 classes, cls token, patch bias,
 * but 12 wide, 2 blocks deep and 8 pixels): vl_model_load reads the weights in full for every
 * input, and with the shipped backbone's 680,000 values that, not the config, was most of the
 * time. The configs in corpus/config declare this geometry, so that they reach the checks after
 * the tensors' shapes. $VITLAB_FUZZ_BACKBONE (a folder with model.safetensors) replaces the
 * small weights; $VITLAB_FUZZ_CONFIG_FILE=0|1|2 gives every input to one of the three files. */
#include "fuzz-common.h"
#include "vl-model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define TINY_GEOMETRY "img=8,patch=4,chans=1,width=12,depth=2,heads=3"
#define TINY_CLASSES 5

static char *
make_checkpoint (void)
{
  char *dir = g_build_filename (fuzz_dir (), "ckpt", NULL);
  g_assert (g_mkdir (dir, 0700) == 0);
  g_autofree char *st = g_build_filename (dir, "model.safetensors", NULL);
  const char *src = g_getenv ("VITLAB_FUZZ_BACKBONE");
  if (src != NULL)
    {
      g_autofree char *target = g_build_filename (src, "model.safetensors", NULL);
      g_assert (symlink (target, st) == 0);
      return dir;
    }
  VlGeometry g;
  g_autoptr(GError) error = NULL;
  g_assert (vl_geometry_parse (TINY_GEOMETRY, &g, &error));
  g_autoptr(VlModel) m = vl_model_new_random (&g, TINY_CLASSES, 1);
  g_assert (vl_model_save (m, st, &error));
  return dir;
}

/* A folder of links to an HF fixture's config.json and model.safetensors. */
static char *
make_hf_checkpoint (const char *fixture)
{
  char *dir = g_build_filename (fuzz_dir (), fixture, NULL);
  g_assert (g_mkdir (dir, 0700) == 0);
  static const char *const files[] = { "config.json", "model.safetensors" };
  for (guint i = 0; i < G_N_ELEMENTS (files); i++)
    {
      g_autofree char *target = g_build_filename (VITLAB_TESTS_DATA_DIR, fixture, files[i], NULL);
      g_autofree char *link = g_build_filename (dir, files[i], NULL);
      g_assert (g_file_test (target, G_FILE_TEST_IS_REGULAR));
      g_assert (symlink (target, link) == 0);
    }
  return dir;
}

static const char *const names[] = { "config.json", "open_clip_config.json",
                                     "preprocessor_config.json" };
static guint64 counts[G_N_ELEMENTS (names)];   /* inputs per file, printed at exit */

static void
print_counts (void)
{
  fprintf (stderr, "fuzz-config: inputs as %s %" G_GUINT64_FORMAT ", %s %" G_GUINT64_FORMAT
           ", %s %" G_GUINT64_FORMAT "\n", names[0], counts[0], names[1], counts[1], names[2],
           counts[2]);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static char *tiny, *hf, *hf_dino;
  if (tiny == NULL)
    {
      tiny = make_checkpoint ();
      hf = make_hf_checkpoint ("fam-hf-vit");
      hf_dino = make_hf_checkpoint ("fam-hf-dinov2");
      atexit (print_counts);
    }
  /* $VITLAB_FUZZ_CONFIG_FILE (0, 1, 2) pins the file, so that one parser gets a run of its own
   * (the first byte is still taken) */
  static int pinned = -2;
  if (pinned == -2)
    {
      const char *env = g_getenv ("VITLAB_FUZZ_CONFIG_FILE");
      pinned = env && env[0] >= '0' && env[0] <= '2' && env[1] == '\0' ? env[0] - '0' : -1;
    }
  int which = pinned >= 0 ? pinned : size > 0 ? data[0] % 3 : 0;
  counts[which]++;
  const char *dir = which != 2 ? tiny : size > 0 && (data[0] / 3) % 2 ? hf_dino : hf;
  g_autofree char *cfg = g_build_filename (dir, names[which], NULL);
  fuzz_write_file (cfg, data + (size > 0), size - (size > 0));
  g_autoptr(GError) error = NULL;
  g_autoptr(VlModel) m = vl_model_load (dir, &error);
  if (m == NULL)
    g_assert (error != NULL && strstr (error->message, dir) != NULL);
  else
    {
      const VlGeometry *g = vl_model_geometry (m);
      g_assert (g->input_size >= g->patch && g->input_size <= VL_MAX_INPUT_SIZE);
      g_assert (g->input_size % g->patch == 0);
      g_assert (g->crop_pct >= VL_MIN_CROP_PCT && g->crop_pct <= VL_MAX_CROP_PCT);
      g_assert (g->heads >= 1 && g->width % g->heads == 0);
      g_assert (g->eps > 0 && g->eps <= 1);
      for (int c = 0; c < g->in_chans && c < 4; c++)
        g_assert (isfinite (g->mean[c]) && isfinite (g->std[c]) && g->std[c] > 0);
    }
  g_unlink (cfg);
  return 0;
}
