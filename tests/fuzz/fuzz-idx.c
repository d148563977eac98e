/* fuzz-idx.c: a Fashion-MNIST folder (the gzip IDX files of `fashion-mnist:dir=DIR`) whose
 * train or test label or image file is the input: vl_dataset_open must open it or refuse it with
 * an error, and the first items it lists must load.
 *
 * The first byte picks the file (bits 0-1: train labels, train images, test labels, test
 * images), whether the rest is written as it is (bit 2: the gzip layer fuzzed) or gzipped by the
 * harness first (the IDX layer fuzzed, the usual case), and whether a per-class cap applies
 * (bit 3: per-class=1,val-per-class=1, records skipped on the way). The other three files are a
 * valid set of 4 x 4 images of classes 0 and 1 (the spec chooses classes=0-1). */
#include "fuzz-common.h"
#include "vl-dataset.h"

#include <gio/gio.h>
#include <string.h>

static const char *const idx_names[4] = {
  "train-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz",
  "t10k-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
};

/* Writes data to path gzipped (level 1). */
static void
write_gzip (const char *path, const uint8_t *data, size_t size)
{
  g_autoptr(GZlibCompressor) z = g_zlib_compressor_new (G_ZLIB_COMPRESSOR_FORMAT_GZIP, 1);
  gsize cap = size + size / 100 + 1024, used = 0;
  g_autofree uint8_t *out = g_malloc (cap);
  for (;;)
    {
      gsize nr = 0, nw = 0;
      g_autoptr(GError) error = NULL;
      GConverterResult r = g_converter_convert (G_CONVERTER (z), data, size, out + used,
                                                cap - used, G_CONVERTER_INPUT_AT_END, &nr, &nw,
                                                &error);
      g_assert (r != G_CONVERTER_ERROR || g_error_matches (error, G_IO_ERROR,
                                                           G_IO_ERROR_NO_SPACE));
      data += nr;
      size -= nr;
      used += nw;
      if (r == G_CONVERTER_FINISHED)
        break;
      if (cap - used < 1024)
        out = g_realloc (out, cap *= 2);
    }
  fuzz_write_file (path, out, used);
}

/* The valid file f: labels 0, 1, 1 (train) or 1, 0 (test), and as many 4 x 4 images. */
static void
write_valid (const char *dir, int f)
{
  static const uint8_t labels[2][3] = { { 0, 1, 1 }, { 1, 0, 0 } };
  int n = f < 2 ? 3 : 2;
  uint8_t buf[16 + 3 * 16];
  gsize len = 0;
  buf[0] = buf[1] = 0;
  buf[2] = 8;
  buf[3] = f % 2 == 0 ? 1 : 3;
  buf[4] = buf[5] = buf[6] = 0;
  buf[7] = (uint8_t) n;
  if (f % 2 == 0)
    {
      memcpy (buf + 8, labels[f / 2], n);
      len = 8 + n;
    }
  else
    {
      memset (buf + 8, 0, 8);
      buf[11] = buf[15] = 4;
      for (int i = 0; i < n * 16; i++)
        buf[16 + i] = (uint8_t) (i * 29);
      len = 16 + n * 16;
    }
  g_autofree char *path = g_build_filename (dir, idx_names[f], NULL);
  write_gzip (path, buf, len);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static char *dir;
  static int replaced = -1;   /* the file holding an earlier input; -1: all four to write */
  if (dir == NULL)
    {
      fuzz_fatal_criticals ();
      dir = fuzz_mkdirs ("fashion-mnist");
    }
  int flags = size > 0 ? data[0] : 0, which = flags & 3;
  for (int f = 0; f < 4; f++)
    if (f != which && (replaced == -1 || f == replaced))
      write_valid (dir, f);
  g_autofree char *path = g_build_filename (dir, idx_names[which], NULL);
  if (flags & 4)
    fuzz_write_file (path, data + (size > 0), size - (size > 0));
  else
    write_gzip (path, data + (size > 0), size - (size > 0));
  replaced = which;

  g_autofree char *spec = g_strconcat ("fashion-mnist:classes=0-1,",
                                       flags & 8 ? "per-class=1,val-per-class=1," : "",
                                       "dir=", dir, NULL);
  VlDatasetOptions opt = VL_DATASET_OPTIONS_DEFAULT;
  g_autoptr(GError) error = NULL;
  VlDataset *ds = vl_dataset_open (spec, &opt, &error);
  if (ds == NULL)
    g_assert (error != NULL);
  else
    {
      VlPreprocess pp = { .channels = 1, .size = 8, .crop_pct = 1.0, .interp = VL_INTERP_BICUBIC,
                          .mean = { 0.5f }, .std = { 0.5f } };
      float out[8 * 8];
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
