/* fuzz-cifar.c: a CIFAR-10 folder whose data_batch_1.bin, test_batch.bin or batches.meta.txt
 * (by the first byte) is the input: vl_dataset_open must open it or refuse it, and every item
 * it lists must load. */
#include "fuzz-common.h"
#include "vl-dataset.h"

#include <string.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static char *dir;
  if (dir == NULL)
    {
      dir = g_build_filename (fuzz_dir (), "cifar", NULL);
      g_mkdir (dir, 0700);
    }
  /* the input is one of the three files (by its first byte), the other two a valid record and
   * the class names: all three written at the start, then the input's file, and the file an
   * earlier input replaced is written back, so that no run depends on an earlier one (and each
   * input costs one write, not three) */
  static const char *names[] = { "data_batch_1.bin", "test_batch.bin", "batches.meta.txt" };
  static uint8_t record[1 + 3072];
  static const char meta[] = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\n"
                             "ship\ntruck\n";
  static int replaced = -1;   /* the file holding an earlier input; -1: all three to write */
  record[0] = 3;
  int which = size > 0 ? data[0] % 3 : 0;
  for (int f = 0; f < 3; f++)
    if (f != which && (replaced == -1 || f == replaced))
      {
        g_autofree char *p = g_build_filename (dir, names[f], NULL);
        if (f == 2)
          fuzz_write_file (p, meta, strlen (meta));
        else
          fuzz_write_file (p, record, sizeof record);
      }
  g_autofree char *path = g_build_filename (dir, names[which], NULL);
  fuzz_write_file (path, data + (size > 0), size - (size > 0));
  replaced = which;
  g_autofree char *spec = g_strconcat ("cifar10:", dir, NULL);
  VlDatasetOptions opt = VL_DATASET_OPTIONS_DEFAULT;
  g_autoptr(GError) error = NULL;
  VlDataset *ds = vl_dataset_open (spec, &opt, &error);
  if (ds == NULL)
    g_assert (error != NULL);
  else
    {
      VlPreprocess pp = { .channels = 3, .size = 8, .crop_pct = 1.0, .interp = VL_INTERP_BICUBIC,
                          .mean = { 0.5f, 0.5f, 0.5f }, .std = { 0.5f, 0.5f, 0.5f } };
      float out[3 * 8 * 8];
      for (int s = 0; s < 2; s++)
        for (int i = 0; i < MIN (vl_dataset_n_items (ds, s), 4); i++)
          {
            g_autoptr(GError) e = NULL;
            vl_dataset_load (ds, s, i, &pp, VL_AUGMENT_NONE, 0, out, &e);
          }
      vl_dataset_free (ds);
    }
  return 0;
}
