/* fuzz-mask.c: a mask-pair segmentation folder (images/{train,val}/ and masks/{train,val}/)
 * whose masks/train/a.png (first byte even) or labels.txt (odd; the mask then valid) is the
 * input. The images are two fixed 4 x 4 PNGs and the validation mask a valid one of classes 0
 * and 1, made once at start-up. vl_dataset_open must open the set or refuse it with an error, and
 * every item's mask must load (vl_dataset_load_mask) or be refused, its values within the classes
 * or 255, and so must its target (vl_dataset_load_target with a mask). */
#include "fuzz-common.h"
#include "vl-dataset.h"

#include <string.h>

static const uint8_t valid_mask[16] = { 0, 0, 1, 1, 0, 0, 1, 1, 0, 255, 1, 1, 0, 0, 0, 1 };
static uint8_t palette[256 * 3];   /* all black but class 1: 255 needs a full palette */

/* Writes valid_mask to path. */
static void
save_valid_mask (const char *path)
{
  palette[3] = 200;
  g_autoptr(GError) error = NULL;
  g_assert (vl_mask_save (path, valid_mask, 4, 4, palette, 256, &error));
}

static char *
make_folder (void)
{
  char *root = fuzz_mkdirs ("maskpair");
  static const char *const split[2] = { "train", "val" };
  for (int s = 0; s < 2; s++)
    {
      g_autofree char *idir = g_build_filename (root, "images", split[s], NULL);
      g_autofree char *mdir = g_build_filename (root, "masks", split[s], NULL);
      g_assert (g_mkdir_with_parents (idir, 0700) == 0);
      g_assert (g_mkdir_with_parents (mdir, 0700) == 0);
      fuzz_write_png (idir, s == 0 ? "a.png" : "b.png", 4, 4, 3);
    }
  g_autofree char *val = g_build_filename (root, "masks", "val", "b.png", NULL);
  save_valid_mask (val);
  return root;
}

/* Every item's mask, alone and as a target. */
static void
load_masks (VlDataset *ds)
{
  VlPreprocess pp = { .channels = 3, .size = 4, .crop_pct = 1.0, .interp = VL_INTERP_BILINEAR,
                      .mean = { 0.5f, 0.5f, 0.5f }, .std = { 0.5f, 0.5f, 0.5f } };
  float out[3 * 4 * 4];
  uint8_t target_mask[4 * 4];
  int K = vl_dataset_n_classes (ds);
  for (int s = 0; s < 2; s++)
    for (int i = 0; i < vl_dataset_n_items (ds, s); i++)
      {
        int w = 0, h = 0;
        g_autoptr(GError) e = NULL;
        g_autofree uint8_t *m = vl_dataset_load_mask (ds, s, i, &w, &h, &e);
        g_assert (m != NULL || e != NULL);
        for (int p = 0; m != NULL && p < w * h; p++)
          g_assert (m[p] < K || m[p] == 255);
        VlTarget t = { .mask = target_mask };
        g_autoptr(GError) e2 = NULL;
        if (vl_dataset_load_target (ds, s, i, &pp, VL_AUGMENT_NONE, 0, out, &t, &e2))
          for (int p = 0; p < 16; p++)
            g_assert (target_mask[p] < K || target_mask[p] == 255);
      }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static char *root, *mask, *labels;
  static int last = -1;   /* which file the earlier input was */
  if (root == NULL)
    {
      fuzz_fatal_criticals ();
      root = make_folder ();
      mask = g_build_filename (root, "masks", "train", "a.png", NULL);
      labels = g_build_filename (root, "labels.txt", NULL);
    }
  int which = size > 0 ? data[0] % 2 : 0;
  const uint8_t *in = data + (size > 0);
  size_t n = size - (size > 0);
  if (which == 0)
    {
      fuzz_write_file (mask, in, n);
      g_unlink (labels);
    }
  else
    {
      if (last != 1)
        save_valid_mask (mask);
      fuzz_write_file (labels, in, n);
    }
  last = which;

  VlDatasetOptions opt = VL_DATASET_OPTIONS_DEFAULT;
  g_autoptr(GError) error = NULL;
  VlDataset *ds = vl_dataset_open (root, &opt, &error);
  if (ds == NULL)
    g_assert (error != NULL);
  else
    {
      g_assert (vl_dataset_is_segmentation (ds));
      load_masks (ds);
      vl_dataset_free (ds);
    }
  return 0;
}
