/* fuzz-csv.c: the targets.csv of a regression folder, the first byte picking which (0: DIR's
 * own, a seeded split; 1: train/targets.csv beside a valid val/targets.csv; 2: val/targets.csv
 * beside a valid train/targets.csv). The images it may name (a.png, b.png, c.png, d.png, fixed
 * 4 x 4 PNGs in each folder) are made once at start-up. vl_dataset_open must open the set or
 * refuse it with an error, and the first items must load with their finite targets. */
#include "fuzz-common.h"
#include "vl-dataset.h"

#include <math.h>
#include <string.h>

static const char valid_csv[] = "file,x,y\na.png,1.5,-2\nb.png,0.25,3e2\nc.png,-7,0\n"
                                "\"d.png\",4,\"5\"\n";

static void
make_images (const char *dir)
{
  static const char *const names[4] = { "a.png", "b.png", "c.png", "d.png" };
  for (int i = 0; i < 4; i++)
    fuzz_write_png (dir, names[i], 4, 4, i % 2 ? 1 : 3);
}

static void
load_items (VlDataset *ds)
{
  VlPreprocess pp = { .channels = 3, .size = 4, .crop_pct = 1.0, .interp = VL_INTERP_BILINEAR,
                      .mean = { 0.5f, 0.5f, 0.5f }, .std = { 0.5f, 0.5f, 0.5f } };
  float out[3 * 4 * 4];
  int nv = vl_dataset_n_values (ds);
  g_assert (nv >= 1);
  g_autofree float *values = g_new (float, nv);
  for (int s = 0; s < 2; s++)
    for (int i = 0; i < MIN (vl_dataset_n_items (ds, s), 4); i++)
      {
        VlTarget t = { .values = values };
        g_autoptr(GError) e = NULL;
        if (vl_dataset_load_target (ds, s, i, &pp, VL_AUGMENT_NONE, 0, out, &t, &e))
          for (int j = 0; j < nv; j++)
            g_assert (isfinite (values[j]));
      }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static char *flat, *split, *csvs[3];
  if (flat == NULL)
    {
      fuzz_fatal_criticals ();
      flat = fuzz_mkdirs ("targets");
      split = fuzz_mkdirs ("targets-split");
      g_autofree char *train = fuzz_mkdirs ("targets-split/train");
      g_autofree char *val = fuzz_mkdirs ("targets-split/val");
      make_images (flat);
      make_images (train);
      make_images (val);
      csvs[0] = g_build_filename (flat, "targets.csv", NULL);
      csvs[1] = g_build_filename (train, "targets.csv", NULL);
      csvs[2] = g_build_filename (val, "targets.csv", NULL);
    }
  int which = size > 0 ? data[0] % 3 : 0;
  /* in the split folder, the other file valid (an earlier input may have been it) */
  if (which > 0)
    fuzz_write_file (csvs[3 - which], valid_csv, strlen (valid_csv));
  fuzz_write_file (csvs[which], data + (size > 0), size - (size > 0));

  VlDatasetOptions opt = VL_DATASET_OPTIONS_DEFAULT;
  opt.val_fraction = 0.25;
  g_autoptr(GError) error = NULL;
  VlDataset *ds = vl_dataset_open (which == 0 ? flat : split, &opt, &error);
  if (ds == NULL)
    g_assert (error != NULL);
  else
    {
      load_items (ds);
      vl_dataset_free (ds);
    }
  return 0;
}
