/* fuzz-mask.c: the files of a segmentation folder, the first byte (% 4) picking which is the
 * input:
 *   0  a mask-pair folder's (images/{train,val}/, masks/{train,val}/) masks/train/a.png
 *   1  the same folder's labels.txt (the mask then valid)
 *   2  a Pascal VOC layout's list ImageSets/Segmentation/train.txt (val.txt valid)
 *   3  a Pascal VOC layout's list ImageSets/Segmentation/val.txt (train.txt valid)
 * The images are fixed 4 x 4 PNGs (a.png for training, b.png for validation) and the other
 * masks valid ones of classes 0 and 1, made once at start-up; the two VOC layouts (JPEGImages/,
 * SegmentationClass/) are folders of their own. vl_dataset_open must open the set or refuse it
 * with an error, and the first items' masks must load (vl_dataset_load_mask) or be refused,
 * their values within the classes or 255, and so must their targets (vl_dataset_load_target
 * with a mask). */
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
make_mask_pair_folder (void)
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

/* A Pascal VOC segmentation layout: JPEGImages/{a,b}.png, SegmentationClass/{a,b}.png and the
 * lists ImageSets/Segmentation/{train,val}.txt ("a", "b"). */
static char *
make_voc_folder (const char *name)
{
  char *root = fuzz_mkdirs (name);
  g_autofree char *jdir = g_build_filename (root, "JPEGImages", NULL);
  g_autofree char *sdir = g_build_filename (root, "SegmentationClass", NULL);
  g_autofree char *ldir = g_build_filename (root, "ImageSets", "Segmentation", NULL);
  g_assert (g_mkdir_with_parents (jdir, 0700) == 0 && g_mkdir_with_parents (sdir, 0700) == 0 &&
            g_mkdir_with_parents (ldir, 0700) == 0);
  static const char *const stem[2] = { "a", "b" };
  for (int s = 0; s < 2; s++)
    {
      g_autofree char *png = g_strconcat (stem[s], ".png", NULL);
      g_autofree char *list = g_strconcat (s == 0 ? "train" : "val", ".txt", NULL);
      g_autofree char *mask = g_build_filename (sdir, png, NULL);
      g_autofree char *line = g_strconcat (stem[s], "\n", NULL);
      g_autofree char *lpath = g_build_filename (ldir, list, NULL);
      fuzz_write_png (jdir, png, 4, 4, 3);
      save_valid_mask (mask);
      fuzz_write_file (lpath, line, strlen (line));
    }
  return root;
}

/* The first items' masks (a list may name one image many times), alone and as targets. */
static void
load_masks (VlDataset *ds)
{
  VlPreprocess pp = { .channels = 3, .size = 4, .crop_pct = 1.0, .interp = VL_INTERP_BILINEAR,
                      .mean = { 0.5f, 0.5f, 0.5f }, .std = { 0.5f, 0.5f, 0.5f } };
  float out[3 * 4 * 4];
  uint8_t target_mask[4 * 4];
  int K = vl_dataset_n_classes (ds);
  for (int s = 0; s < 2; s++)
    for (int i = 0; i < MIN (vl_dataset_n_items (ds, s), 8); i++)
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
  static char *root, *mask, *labels, *voc[2], *voc_list[2];
  static int last = -1;   /* which file the earlier input was */
  if (root == NULL)
    {
      fuzz_fatal_criticals ();
      root = make_mask_pair_folder ();
      mask = g_build_filename (root, "masks", "train", "a.png", NULL);
      labels = g_build_filename (root, "labels.txt", NULL);
      voc[0] = make_voc_folder ("voc-train-list");
      voc[1] = make_voc_folder ("voc-val-list");
      voc_list[0] = g_build_filename (voc[0], "ImageSets", "Segmentation", "train.txt", NULL);
      voc_list[1] = g_build_filename (voc[1], "ImageSets", "Segmentation", "val.txt", NULL);
    }
  int which = size > 0 ? data[0] % 4 : 0;
  const uint8_t *in = data + (size > 0);
  size_t n = size - (size > 0);
  const char *folder = root;
  if (which == 0)
    {
      fuzz_write_file (mask, in, n);
      g_unlink (labels);
    }
  else if (which == 1)
    {
      if (last != 1)
        save_valid_mask (mask);
      fuzz_write_file (labels, in, n);
    }
  else
    {
      folder = voc[which - 2];
      fuzz_write_file (voc_list[which - 2], in, n);
    }
  if (which <= 1)
    last = which;

  VlDatasetOptions opt = VL_DATASET_OPTIONS_DEFAULT;
  g_autoptr(GError) error = NULL;
  VlDataset *ds = vl_dataset_open (folder, &opt, &error);
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
