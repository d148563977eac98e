/* test-dataset.c: datasets (memory, image folders, Fashion-MNIST, CIFAR), augmentation and the
 * prefetching loader.
 *
 * Folder datasets are written at test time into a temporary folder (PNG, BMP, JPEG, TGA, HDR
 * through stb_image_write; PGM/PPM by hand), so nothing but the shared hymenoptera folder and
 * Debian's Fashion-MNIST is read from outside. */
#include <glib.h>
#include <glib/gstdio.h>
#include <gio/gio.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <stb/stb_image_write.h>

#include "vl-augment.h"
#include "vl-dataset.h"
#include "vl-image.h"
#include "vl-safetensors.h"
#include "vl-test-util.h"

/* ---- helpers ---- */

static const VlPreprocess pp_rgb32 = {
  .channels = 3, .size = 32, .crop_pct = 0.875, .interp = VL_INTERP_BICUBIC,
  .mean = { 0.485f, 0.456f, 0.406f }, .std = { 0.229f, 0.224f, 0.225f },
};

/* Identity preprocessing at the native size: out = pixel / 255. */
static VlPreprocess
pp_identity (int channels, int size)
{
  VlPreprocess pp = { .channels = channels, .size = size, .crop_pct = 1.0,
                      .interp = VL_INTERP_BICUBIC };
  for (int c = 0; c < 4; c++)
    {
      pp.mean[c] = 0.0f;
      pp.std[c] = 1.0f;
    }
  return pp;
}

static uint8_t *
pattern (int w, int h, int c, int seed)
{
  uint8_t *px = g_malloc ((gsize) w * h * c);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int k = 0; k < c; k++)
        px[((gsize) y * w + x) * c + k] =
          (uint8_t) ((x * 7 + y * 13 + k * 50 + seed * 31) ^ ((x * y + seed) & 63));
  return px;
}

static char *
join (const char *dir, const char *name)
{
  return g_build_filename (dir, name, NULL);
}

static void
make_dir (const char *dir, const char *name)
{
  g_autofree char *path = join (dir, name);
  g_assert_cmpint (g_mkdir_with_parents (path, 0755), ==, 0);
}

static void
write_file (const char *dir, const char *name, const void *data, gsize size)
{
  g_autofree char *path = join (dir, name);
  g_autoptr(GError) error = NULL;
  g_file_set_contents (path, data, (gssize) size, &error);
  g_assert_no_error (error);
}

/* Writes an image in the format of the name's extension. */
static void
write_image (const char *dir, const char *name, int w, int h, int c, int seed)
{
  g_autofree char *path = join (dir, name);
  g_autofree uint8_t *px = pattern (w, h, c, seed);
  const char *ext = strrchr (name, '.') + 1;
  int ok = 0;
  if (g_ascii_strcasecmp (ext, "png") == 0)
    ok = stbi_write_png (path, w, h, c, px, w * c);
  else if (g_ascii_strcasecmp (ext, "bmp") == 0)
    ok = stbi_write_bmp (path, w, h, c, px);
  else if (g_ascii_strcasecmp (ext, "tga") == 0)
    ok = stbi_write_tga (path, w, h, c, px);
  else if (g_ascii_strcasecmp (ext, "jpg") == 0)
    ok = stbi_write_jpg (path, w, h, c, px, 90);
  else if (g_ascii_strcasecmp (ext, "hdr") == 0)
    {
      g_autofree float *f = g_new (float, (gsize) w * h * c);
      for (gsize i = 0; i < (gsize) w * h * c; i++)
        f[i] = px[i] / 255.0f;
      ok = stbi_write_hdr (path, w, h, c, f);
    }
  else if (g_ascii_strcasecmp (ext, "pgm") == 0 || g_ascii_strcasecmp (ext, "ppm") == 0)
    {
      g_assert_cmpint (c, ==, g_ascii_strcasecmp (ext, "pgm") == 0 ? 1 : 3);
      g_autofree char *head = g_strdup_printf ("P%d\n%d %d\n255\n", c == 1 ? 5 : 6, w, h);
      gsize n = strlen (head), m = (gsize) w * h * c;
      g_autofree char *buf = g_malloc (n + m);
      memcpy (buf, head, n);
      memcpy (buf + n, px, m);
      write_file (dir, name, buf, n + m);
      ok = 1;
    }
  else
    g_assert_not_reached ();
  g_assert_true (ok);
}

static VlDataset *
open_ok (const char *spec, double val_fraction, uint64_t seed)
{
  VlDatasetOptions opt = { .val_fraction = val_fraction, .seed = seed };
  g_autoptr(GError) error = NULL;
  VlDataset *ds = vl_dataset_open (spec, &opt, &error);
  g_assert_no_error (error);
  g_assert_nonnull (ds);
  return ds;
}

/* Opening fails with an error message containing `needle` (the folder). */
static void
open_fails (const char *spec, const char *needle)
{
  VlDatasetOptions opt = VL_DATASET_OPTIONS_DEFAULT;
  g_autoptr(GError) error = NULL;
  VlDataset *ds = vl_dataset_open (spec, &opt, &error);
  g_assert_null (ds);
  g_assert_nonnull (error);
  g_assert_true (error->domain == VL_ERROR);
  g_test_message ("%s -> %s", spec, error->message);
  if (strstr (error->message, needle) == NULL)
    g_error ("error '%s' does not name '%s'", error->message, needle);
}

static float *
load_ok (VlDataset *ds, VlSplit split, int i, const VlPreprocess *pp, VlAugment aug,
         uint64_t seed)
{
  float *out = g_new (float, (gsize) pp->channels * pp->size * pp->size);
  g_autoptr(GError) error = NULL;
  gboolean ok = vl_dataset_load (ds, split, i, pp, aug, seed, out, &error);
  g_assert_no_error (error);
  g_assert_true (ok);
  return out;
}

static int
find_item (VlDataset *ds, VlSplit split, const char *suffix)
{
  for (int i = 0; i < vl_dataset_n_items (ds, split); i++)
    if (g_str_has_suffix (vl_dataset_item_name (ds, split, i), suffix))
      return i;
  return -1;
}

static gboolean
skipped_has (GPtrArray *skipped, const char *file, const char *reason)
{
  for (guint i = 0; i < skipped->len; i++)
    {
      const VlSkipped *s = g_ptr_array_index (skipped, i);
      if (g_str_has_suffix (s->path, file) && strstr (s->reason, reason) != NULL)
        return TRUE;
    }
  return FALSE;
}

/* ---- memory datasets ---- */

static VlDataset *
memory_dataset (int n_train, int n_val, int C, int S, int K)
{
  gsize per = (gsize) C * S * S;
  g_autofree float *train = g_new (float, per * MAX (n_train, 1));
  g_autofree float *val = g_new (float, per * MAX (n_val, 1));
  g_autofree int *tl = g_new (int, MAX (n_train, 1));
  g_autofree int *vlab = g_new (int, MAX (n_val, 1));
  /* Image i: first float = i, then its position, so order and flips show. */
  for (int i = 0; i < n_train; i++)
    {
      for (gsize j = 0; j < per; j++)
        train[i * per + j] = j == 0 ? (float) i : (float) (j % S) * 0.01f;
      tl[i] = i % K;
    }
  for (int i = 0; i < n_val; i++)
    {
      for (gsize j = 0; j < per; j++)
        val[i * per + j] = j == 0 ? (float) -i : 0.5f;
      vlab[i] = (i * 7) % K;
    }
  const char *names[] = { "zero", "one", "two", "three", NULL };
  return vl_dataset_new_memory (K, K <= 4 ? names : NULL, C, S, train, tl, n_train,
                                val, vlab, n_val);
}

static void
test_memory (void)
{
  g_autoptr(VlDataset) ds = memory_dataset (10, 4, 3, 8, 3);
  g_assert_cmpint (vl_dataset_n_classes (ds), ==, 3);
  g_assert_cmpstr (vl_dataset_class_name (ds, 2), ==, "two");
  g_assert_cmpint (vl_dataset_n_items (ds, VL_SPLIT_TRAIN), ==, 10);
  g_assert_cmpint (vl_dataset_n_items (ds, VL_SPLIT_VAL), ==, 4);
  g_assert_cmpint (vl_dataset_class_count (ds, VL_SPLIT_TRAIN, 0), ==, 4);
  g_assert_cmpint (vl_dataset_class_count (ds, VL_SPLIT_TRAIN, 1), ==, 3);
  g_assert_cmpint (vl_dataset_label (ds, VL_SPLIT_VAL, 1), ==, 1);
  g_assert_cmpint (vl_dataset_channels (ds), ==, 3);
  g_assert_nonnull (vl_dataset_description (ds));

  VlPreprocess pp = pp_identity (3, 8);
  g_autofree float *plain = load_ok (ds, VL_SPLIT_TRAIN, 5, &pp, VL_AUGMENT_NONE, 1);
  g_assert_cmpfloat (plain[0], ==, 5.0f);
  g_assert_cmpfloat (plain[1], ==, 0.01f);

  /* light = a seeded horizontal flip: both outcomes over seeds, each exact. */
  int flipped = 0, kept = 0;
  for (uint64_t seed = 0; seed < 32; seed++)
    {
      g_autofree float *a = load_ok (ds, VL_SPLIT_TRAIN, 5, &pp, VL_AUGMENT_LIGHT, seed);
      g_autofree float *b = load_ok (ds, VL_SPLIT_TRAIN, 5, &pp, VL_AUGMENT_LIGHT, seed);
      g_assert_cmpmem (a, 3 * 64 * sizeof (float), b, 3 * 64 * sizeof (float));
      if (memcmp (a, plain, 3 * 64 * sizeof (float)) == 0)
        kept++;
      else
        {
          vl_augment_flip_chw (a, 3, 8);
          g_assert_cmpmem (a, 3 * 64 * sizeof (float), plain, 3 * 64 * sizeof (float));
          flipped++;
        }
    }
  g_assert_cmpint (flipped, >, 4);
  g_assert_cmpint (kept, >, 4);

  /* NULL preprocessing is allowed for memory datasets; another size is refused. */
  g_autofree float *out = g_new (float, 3 * 64);
  g_assert_true (vl_dataset_load (ds, VL_SPLIT_VAL, 0, NULL, VL_AUGMENT_NONE, 0, out, NULL));
  VlPreprocess wrong = pp_identity (3, 16);
  g_autofree float *big = g_new (float, 3 * 256);
  g_autoptr(GError) error = NULL;
  g_assert_false (vl_dataset_load (ds, VL_SPLIT_VAL, 0, &wrong, VL_AUGMENT_NONE, 0, big,
                                   &error));
  g_assert_error (error, VL_ERROR, VL_ERROR_MISMATCH);
}

/* ---- image folders ---- */

static char *
make_class_folders (void)
{
  char *root = vl_test_tmpdir ();
  make_dir (root, "cat");
  make_dir (root, "dog");
  make_dir (root, "eel/deeper");
  for (int i = 0; i < 5; i++)
    {
      g_autofree char *name = g_strdup_printf ("cat/c%d.png", i);
      write_image (root, name, 20 + i, 17, 3, i);
    }
  for (int i = 0; i < 4; i++)
    {
      g_autofree char *name = g_strdup_printf ("dog/d%d.bmp", i);
      write_image (root, name, 16, 24, 3, 10 + i);
    }
  write_image (root, "eel/e0.pgm", 13, 11, 1, 20);
  write_image (root, "eel/e1.PPM", 12, 12, 3, 21);
  write_image (root, "eel/deeper/e2.png", 9, 30, 4, 22);
  /* ignored silently: no image extension, hidden files, a stray folder name */
  write_file (root, "cat/README.txt", "not an image", 12);
  write_file (root, "cat/.DS_Store", "\0\0\0\1Bud1", 9);
  write_file (root, "dog/._d0.bmp", "AppleDouble", 11);
  write_file (root, "notes.txt", "hello", 5);
  return root;
}

static void
test_folder_classes (void)
{
  g_autofree char *root = make_class_folders ();
  g_autoptr(VlDataset) ds = open_ok (root, 0.2, 1);
  g_assert_cmpint (vl_dataset_n_classes (ds), ==, 3);
  g_assert_cmpstr (vl_dataset_class_name (ds, 0), ==, "cat");
  g_assert_cmpstr (vl_dataset_class_name (ds, 1), ==, "dog");
  g_assert_cmpstr (vl_dataset_class_name (ds, 2), ==, "eel");
  g_assert_cmpint (vl_dataset_channels (ds), ==, 3);
  g_test_message ("%s", vl_dataset_description (ds));
  /* 5, 4, 3 images: round(n * 0.2) = 1, 1, 1 for validation (at least one each). */
  g_assert_cmpint (vl_dataset_class_count (ds, VL_SPLIT_TRAIN, 0), ==, 4);
  g_assert_cmpint (vl_dataset_class_count (ds, VL_SPLIT_TRAIN, 1), ==, 3);
  g_assert_cmpint (vl_dataset_class_count (ds, VL_SPLIT_TRAIN, 2), ==, 2);
  for (int k = 0; k < 3; k++)
    g_assert_cmpint (vl_dataset_class_count (ds, VL_SPLIT_VAL, k), ==, 1);
  g_assert_cmpint (vl_dataset_n_items (ds, VL_SPLIT_TRAIN), ==, 9);
  g_assert_cmpint (vl_dataset_n_items (ds, VL_SPLIT_VAL), ==, 3);
  g_autoptr(GPtrArray) skipped = vl_dataset_skipped (ds);
  g_assert_cmpuint (skipped->len, ==, 0);

  /* Labels agree with the folder; every file appears exactly once over both splits. */
  GHashTable *seen = g_hash_table_new (g_str_hash, g_str_equal);
  for (int s = 0; s < 2; s++)
    for (int i = 0; i < vl_dataset_n_items (ds, (VlSplit) s); i++)
      {
        const char *name = vl_dataset_item_name (ds, (VlSplit) s, i);
        int label = vl_dataset_label (ds, (VlSplit) s, i);
        g_autofree char *cls = g_build_filename (root, vl_dataset_class_name (ds, label), "",
                                                 NULL);
        g_assert_true (g_str_has_prefix (name, cls));
        g_assert_true (g_hash_table_add (seen, (gpointer) name));
      }
  g_assert_cmpuint (g_hash_table_size (seen), ==, 12);
  g_hash_table_unref (seen);

  /* Every format loads, to a 3-channel and a 1-channel model; `none` is the eval transform. */
  VlPreprocess pp1 = pp_rgb32;
  pp1.channels = 1;
  for (int s = 0; s < 2; s++)
    for (int i = 0; i < vl_dataset_n_items (ds, (VlSplit) s); i++)
      {
        const char *name = vl_dataset_item_name (ds, (VlSplit) s, i);
        g_autofree float *got = load_ok (ds, (VlSplit) s, i, &pp_rgb32, VL_AUGMENT_NONE, 0);
        g_autoptr(VlImage) img = vl_image_load (name, 0, NULL);
        g_assert_nonnull (img);
        g_autofree float *want = g_new (float, 3 * 32 * 32);
        vl_preprocess_eval (img, &pp_rgb32, want);
        g_assert_cmpmem (got, 3 * 32 * 32 * sizeof (float), want, 3 * 32 * 32 * sizeof (float));
        g_autofree float *gray = load_ok (ds, (VlSplit) s, i, &pp1, VL_AUGMENT_STRONG, 3);
      }
}

static void
test_folder_split (void)
{
  /* Stratified counts: 10, 7, 2, 1 images at 25% -> round: 3 (2.5 up), 2, 1 (at least one),
   * 0 (a single image stays in training). */
  g_autofree char *root = vl_test_tmpdir ();
  const int counts[4] = { 10, 7, 2, 1 };
  for (int k = 0; k < 4; k++)
    for (int i = 0; i < counts[k]; i++)
      {
        g_autofree char *name = g_strdup_printf ("k%d/img%02d.png", k, i);
        g_autofree char *dir = g_strdup_printf ("k%d", k);
        make_dir (root, dir);
        write_image (root, name, 8, 8, 3, k * 100 + i);
      }
  g_autoptr(VlDataset) a = open_ok (root, 0.25, 7);
  const int want_val[4] = { 3, 2, 1, 0 };
  for (int k = 0; k < 4; k++)
    {
      g_assert_cmpint (vl_dataset_class_count (a, VL_SPLIT_VAL, k), ==, want_val[k]);
      g_assert_cmpint (vl_dataset_class_count (a, VL_SPLIT_TRAIN, k), ==,
                       counts[k] - want_val[k]);
    }

  /* The same seed gives the same split; some other seed gives another one. */
  g_autoptr(VlDataset) b = open_ok (root, 0.25, 7);
  g_assert_cmpint (vl_dataset_n_items (b, VL_SPLIT_VAL), ==, 6);
  for (int i = 0; i < 6; i++)
    g_assert_cmpstr (vl_dataset_item_name (a, VL_SPLIT_VAL, i), ==,
                     vl_dataset_item_name (b, VL_SPLIT_VAL, i));
  gboolean differs = FALSE;
  for (uint64_t seed = 8; seed < 16 && !differs; seed++)
    {
      g_autoptr(VlDataset) c = open_ok (root, 0.25, seed);
      for (int i = 0; i < 6; i++)
        differs |= strcmp (vl_dataset_item_name (a, VL_SPLIT_VAL, i),
                           vl_dataset_item_name (c, VL_SPLIT_VAL, i)) != 0;
    }
  g_assert_true (differs);

  /* A fraction of zero keeps everything for training; a fraction of one is refused. */
  g_autoptr(VlDataset) z = open_ok (root, 0.0, 7);
  g_assert_cmpint (vl_dataset_n_items (z, VL_SPLIT_VAL), ==, 0);
  g_assert_cmpint (vl_dataset_n_items (z, VL_SPLIT_TRAIN), ==, 20);
  VlDatasetOptions bad = { .val_fraction = 1.0 };
  g_autoptr(GError) error = NULL;
  g_assert_null (vl_dataset_open (root, &bad, &error));
  g_assert_error (error, VL_ERROR, VL_ERROR_INVALID);
}

static void
test_folder_train_val (void)
{
  g_autofree char *root = vl_test_tmpdir ();
  const char *classes[] = { "b_second", "a_first" };
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < 3 + k; i++)
      {
        g_autofree char *t = g_strdup_printf ("train/%s/t%d.jpg", classes[k], i);
        g_autofree char *dir = g_strdup_printf ("train/%s", classes[k]);
        make_dir (root, dir);
        write_image (root, t, 24, 18, 3, k * 10 + i);
      }
  make_dir (root, "val/a_first");
  make_dir (root, "val/b_second");
  write_image (root, "val/a_first/v0.tga", 10, 10, 3, 50);
  write_image (root, "val/b_second/v0.hdr", 10, 10, 3, 51);
  write_image (root, "val/b_second/v1.png", 10, 10, 2, 52);
  /* a GIF (its first frame) */
  g_autofree char *gif_src = vl_test_data_path ("synth-2frames.gif", NULL);
  g_autofree char *gif = NULL;
  gsize gif_len = 0;
  g_assert_true (g_file_get_contents (gif_src, &gif, &gif_len, NULL));
  write_file (root, "val/a_first/v1.gif", gif, gif_len);

  g_autoptr(VlDataset) ds = open_ok (root, 0.5, 3);
  g_test_message ("%s", vl_dataset_description (ds));
  g_assert_nonnull (strstr (vl_dataset_description (ds), "train/val"));
  g_assert_cmpstr (vl_dataset_class_name (ds, 0), ==, "a_first");
  g_assert_cmpint (vl_dataset_class_count (ds, VL_SPLIT_TRAIN, 0), ==, 4);
  g_assert_cmpint (vl_dataset_class_count (ds, VL_SPLIT_TRAIN, 1), ==, 3);
  g_assert_cmpint (vl_dataset_class_count (ds, VL_SPLIT_VAL, 0), ==, 2);
  g_assert_cmpint (vl_dataset_class_count (ds, VL_SPLIT_VAL, 1), ==, 2);
  int i = find_item (ds, VL_SPLIT_VAL, "v0.tga");
  g_assert_cmpint (i, >=, 0);
  g_assert_cmpint (vl_dataset_label (ds, VL_SPLIT_VAL, i), ==, 0);
  for (int j = 0; j < 4; j++)
    g_free (load_ok (ds, VL_SPLIT_VAL, j, &pp_rgb32, VL_AUGMENT_LIGHT, j));

  /* A val class that training does not have is an error naming it. */
  make_dir (root, "val/c_extra");
  write_image (root, "val/c_extra/x.png", 8, 8, 3, 1);
  g_autofree char *extra = join (root, "val/c_extra");
  open_fails (root, extra);
}

/* A PNG whose header is valid but whose pixel data is cut short. */
static void
write_broken_png (const char *dir, const char *name)
{
  write_image (dir, name, 16, 16, 3, 99);
  g_autofree char *path = join (dir, name);
  g_autofree char *data = NULL;
  gsize len = 0;
  g_assert_true (g_file_get_contents (path, &data, &len, NULL));
  /* signature (8) + IHDR (25) + 20 bytes of IDAT: the header still reads */
  g_assert_cmpuint (len, >, 33 + 20);
  write_file (dir, name, data, 33 + 20);
}

static void
test_folder_bad_files (void)
{
  g_autofree char *root = vl_test_tmpdir ();
  make_dir (root, "good");
  make_dir (root, "mixed");
  for (int i = 0; i < 6; i++)
    {
      g_autofree char *a = g_strdup_printf ("good/g%d.png", i);
      g_autofree char *b = g_strdup_printf ("mixed/m%d.png", i);
      write_image (root, a, 12, 12, 3, i);
      write_image (root, b, 12, 12, 3, 10 + i);
    }
  static const char corrupt_jpeg[] = "\xff\xd8\xff\xe0\x00\x10JFIF\x00garbage garbage garbage";
  write_file (root, "mixed/corrupt.jpg", corrupt_jpeg, sizeof corrupt_jpeg - 1);
  write_file (root, "mixed/empty.png", "", 0);
  static const char huge[] = "P6\n20000 20000\n255\n";
  write_file (root, "mixed/huge.pnm", huge, sizeof huge - 1);
  write_file (root, "mixed/notes.jpg", "these are my notes\n", 19);
  write_file (root, "mixed/README.txt", "ignored", 7);
  write_broken_png (root, "mixed/truncated.png");

  g_autoptr(VlDataset) ds = open_ok (root, 0.0, 0);
  /* Found at open time from the headers: */
  g_autoptr(GPtrArray) skipped = vl_dataset_skipped (ds);
  for (guint i = 0; i < skipped->len; i++)
    {
      const VlSkipped *s = g_ptr_array_index (skipped, i);
      g_test_message ("skipped %s: %s", s->path, s->reason);
    }
  g_assert_cmpuint (skipped->len, ==, 4);
  g_assert_true (skipped_has (skipped, "mixed/corrupt.jpg", "cannot decode"));
  g_assert_true (skipped_has (skipped, "mixed/empty.png", "empty file"));
  g_assert_true (skipped_has (skipped, "mixed/huge.pnm", "20000x20000"));
  g_assert_true (skipped_has (skipped, "mixed/notes.jpg", "cannot decode"));
  /* ... the truncated PNG only when decoded. */
  g_assert_cmpint (vl_dataset_n_items (ds, VL_SPLIT_TRAIN), ==, 13);
  int bad = find_item (ds, VL_SPLIT_TRAIN, "truncated.png");
  g_assert_cmpint (bad, >=, 0);

  /* Training goes on: one epoch yields the 12 good images, the bad one is left out of its
   * batch and listed (read concurrently from this thread while the loader runs). */
  g_autoptr(VlLoader) loader = vl_loader_new (ds, VL_SPLIT_TRAIN, &pp_rgb32, VL_AUGMENT_LIGHT,
                                              4, TRUE, 5);
  for (int epoch = 0; epoch < 2; epoch++)
    {
      vl_loader_start_epoch (loader, epoch, 0);
      VlBatch batch;
      int total = 0;
      while (vl_loader_next (loader, &batch))
        {
          g_autoptr(GPtrArray) now = vl_dataset_skipped (ds);
          g_assert_cmpuint (now->len, >=, 4);
          total += batch.n;
          for (int j = 0; j < batch.n; j++)
            g_assert_cmpint (batch.indices[j], !=, bad);
        }
      g_assert_cmpint (total, ==, 12);
    }
  g_autoptr(GPtrArray) after = vl_dataset_skipped (ds);
  g_assert_cmpuint (after->len, ==, 5);   /* listed once, though it failed in two epochs */
  g_assert_true (skipped_has (after, "mixed/truncated.png", "cannot decode"));

  g_autoptr(GError) error = NULL;
  g_autofree float *out = g_new (float, 3 * 32 * 32);
  g_assert_false (vl_dataset_load (ds, VL_SPLIT_TRAIN, bad, &pp_rgb32, VL_AUGMENT_NONE, 0, out,
                                   &error));
  g_assert_error (error, VL_ERROR, VL_ERROR_FORMAT);
  g_assert_nonnull (strstr (error->message, "truncated.png"));
}

static void
test_folder_errors (void)
{
  g_autofree char *root = vl_test_tmpdir ();

  /* nonexistent */
  g_autofree char *missing = join (root, "missing");
  open_fails (missing, missing);

  /* a file, not a folder */
  write_file (root, "file.png", "x", 1);
  g_autofree char *file = join (root, "file.png");
  open_fails (file, file);

  /* no images at all */
  make_dir (root, "empty");
  g_autofree char *empty = join (root, "empty");
  open_fails (empty, empty);

  /* images but no class folders */
  make_dir (root, "flat");
  write_image (root, "flat/a.png", 8, 8, 3, 0);
  g_autofree char *flat = join (root, "flat");
  open_fails (flat, flat);

  /* one class only */
  make_dir (root, "one/only");
  write_image (root, "one/only/a.png", 8, 8, 3, 0);
  write_image (root, "one/only/b.png", 8, 8, 3, 1);
  g_autofree char *one = join (root, "one");
  open_fails (one, one);

  /* an empty class folder (it holds only a text file) */
  make_dir (root, "holes/full");
  make_dir (root, "holes/hollow");
  write_image (root, "holes/full/a.png", 8, 8, 3, 0);
  write_file (root, "holes/hollow/readme.txt", "x", 1);
  g_autofree char *hollow = join (root, "holes/hollow");
  g_autofree char *holes = join (root, "holes");
  open_fails (holes, hollow);

  /* a class folder of broken images only */
  make_dir (root, "broken/fine");
  make_dir (root, "broken/bad");
  write_image (root, "broken/fine/a.png", 8, 8, 3, 0);
  write_file (root, "broken/bad/x.jpg", "nope", 4);
  g_autofree char *bad = join (root, "broken/bad");
  g_autofree char *broken = join (root, "broken");
  open_fails (broken, bad);

  /* train/ with an empty class folder */
  make_dir (root, "tv/train/a");
  make_dir (root, "tv/train/b");
  write_image (root, "tv/train/a/x.png", 8, 8, 3, 0);
  g_autofree char *tvb = join (root, "tv/train/b");
  g_autofree char *tv = join (root, "tv");
  open_fails (tv, tvb);

  open_fails ("cifar10:", "cifar10");
  open_fails ("", "empty");
}

static void
test_hymenoptera (void)
{
  g_autofree char *root = vl_test_shared_path ("datasets", "hymenoptera", NULL);
  g_autoptr(VlDataset) ds = open_ok (root, 0.2, 0);
  g_test_message ("%s", vl_dataset_description (ds));
  g_assert_cmpint (vl_dataset_n_classes (ds), ==, 2);
  g_assert_cmpstr (vl_dataset_class_name (ds, 0), ==, "ants");
  g_assert_cmpstr (vl_dataset_class_name (ds, 1), ==, "bees");
  g_assert_cmpint (vl_dataset_class_count (ds, VL_SPLIT_TRAIN, 0), ==, 124);
  g_assert_cmpint (vl_dataset_class_count (ds, VL_SPLIT_TRAIN, 1), ==, 121);
  g_assert_cmpint (vl_dataset_class_count (ds, VL_SPLIT_VAL, 0), ==, 70);
  g_assert_cmpint (vl_dataset_class_count (ds, VL_SPLIT_VAL, 1), ==, 83);
  g_autoptr(GPtrArray) skipped = vl_dataset_skipped (ds);
  g_assert_cmpuint (skipped->len, ==, 0);

  /* One real photo through both transforms. */
  VlPreprocess pp = { .channels = 3, .size = 224, .crop_pct = 0.9, .interp = VL_INTERP_BICUBIC,
                      .mean = { 0.5f, 0.5f, 0.5f }, .std = { 0.5f, 0.5f, 0.5f } };
  g_autofree float *got = load_ok (ds, VL_SPLIT_VAL, 0, &pp, VL_AUGMENT_NONE, 0);
  g_autoptr(VlImage) img = vl_image_load (vl_dataset_item_name (ds, VL_SPLIT_VAL, 0), 0, NULL);
  g_autofree float *want = g_new (float, 3 * 224 * 224);
  vl_preprocess_eval (img, &pp, want);
  g_assert_cmpmem (got, 3 * 224 * 224 * sizeof (float), want, 3 * 224 * 224 * sizeof (float));
  g_autofree float *strong = load_ok (ds, VL_SPLIT_VAL, 0, &pp, VL_AUGMENT_STRONG, 11);
  for (int i = 0; i < 3 * 224 * 224; i++)
    g_assert_true (strong[i] >= -1.0f && strong[i] <= 1.0f);

  /* A validation epoch through the loader at a small size: every image once. */
  VlPreprocess small = pp;
  small.size = 48;
  gint64 t0 = g_get_monotonic_time ();
  g_autoptr(VlLoader) loader = vl_loader_new (ds, VL_SPLIT_VAL, &small, VL_AUGMENT_NONE, 32,
                                              FALSE, 0);
  vl_loader_start_epoch (loader, 0, 0);
  VlBatch batch;
  int total = 0;
  while (vl_loader_next (loader, &batch))
    {
      for (int j = 0; j < batch.n; j++)
        g_assert_cmpint (batch.indices[j], ==, total + j);
      total += batch.n;
    }
  g_assert_cmpint (total, ==, 153);
  g_test_message ("hymenoptera val epoch (153 JPEGs at 48 px): %.2f s",
                  (g_get_monotonic_time () - t0) / 1e6);
}

/* ---- Fashion-MNIST ---- */

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"

static GBytes *
gunzip (const char *path)
{
  g_autoptr(GFile) f = g_file_new_for_path (path);
  g_autoptr(GFileInputStream) raw = g_file_read (f, NULL, NULL);
  g_assert_nonnull (raw);
  g_autoptr(GZlibDecompressor) z = g_zlib_decompressor_new (G_ZLIB_COMPRESSOR_FORMAT_GZIP);
  g_autoptr(GInputStream) in = g_converter_input_stream_new (G_INPUT_STREAM (raw),
                                                             G_CONVERTER (z));
  g_autoptr(GOutputStream) out = g_memory_output_stream_new_resizable ();
  g_autoptr(GError) error = NULL;
  g_output_stream_splice (out, in, G_OUTPUT_STREAM_SPLICE_CLOSE_TARGET, NULL, &error);
  g_assert_no_error (error);
  return g_memory_output_stream_steal_as_bytes (G_MEMORY_OUTPUT_STREAM (out));
}

static void
test_fashion_mnist (void)
{
  g_autoptr(VlDataset) ds = open_ok ("fashion-mnist:classes=5-9,per-class=100", 0.2, 0);
  g_test_message ("%s", vl_dataset_description (ds));
  g_assert_cmpint (vl_dataset_n_classes (ds), ==, 5);
  g_assert_cmpint (vl_dataset_channels (ds), ==, 1);
  const char *names[] = { "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot" };
  for (int k = 0; k < 5; k++)
    {
      g_assert_cmpstr (vl_dataset_class_name (ds, k), ==, names[k]);
      g_assert_cmpint (vl_dataset_class_count (ds, VL_SPLIT_TRAIN, k), ==, 100);
      g_assert_cmpint (vl_dataset_class_count (ds, VL_SPLIT_VAL, k), ==, 1000);
    }
  g_assert_cmpint (vl_dataset_n_items (ds, VL_SPLIT_TRAIN), ==, 500);
  g_assert_cmpint (vl_dataset_n_items (ds, VL_SPLIT_VAL), ==, 5000);
  for (int i = 0; i < 500; i++)
    {
      int label = vl_dataset_label (ds, VL_SPLIT_TRAIN, i);
      g_assert_cmpint (label, >=, 0);
      g_assert_cmpint (label, <=, 4);
    }

  /* Pixels and labels against the raw IDX bytes (the first 100 of each class in file order:
   * the last train item is the 100th of its class). */
  g_autoptr(GBytes) lab = gunzip (FMNIST_DIR "/train-labels-idx1-ubyte.gz");
  g_autoptr(GBytes) img = gunzip (FMNIST_DIR "/train-images-idx3-ubyte.gz");
  const uint8_t *L = g_bytes_get_data (lab, NULL), *P = g_bytes_get_data (img, NULL);
  int taken[10] = { 0 }, expect_i = 0;
  for (int r = 0; r < 60000 && expect_i < 500; r++)
    {
      int c = L[8 + r];
      if (c < 5 || taken[c] >= 100)
        continue;
      taken[c]++;
      g_autofree char *want = g_strdup_printf ("fashion-mnist:train#%d", r);
      g_assert_cmpstr (vl_dataset_item_name (ds, VL_SPLIT_TRAIN, expect_i), ==, want);
      g_assert_cmpint (vl_dataset_label (ds, VL_SPLIT_TRAIN, expect_i), ==, c - 5);
      if (expect_i == 0 || expect_i == 499)
        {
          VlPreprocess pp = pp_identity (1, 28);
          g_autofree float *x = load_ok (ds, VL_SPLIT_TRAIN, expect_i, &pp, VL_AUGMENT_NONE,
                                         0);
          for (int p = 0; p < 784; p++)
            g_assert_cmpfloat (x[p], ==, P[16 + (gsize) r * 784 + p] / 255.0f);
          /* and as RGB: the gray plane replicated */
          VlPreprocess pp3 = pp_identity (3, 28);
          g_autofree float *y = load_ok (ds, VL_SPLIT_TRAIN, expect_i, &pp3, VL_AUGMENT_NONE,
                                         0);
          for (int c3 = 0; c3 < 3; c3++)
            g_assert_cmpmem (y + c3 * 784, 784 * sizeof (float), x, 784 * sizeof (float));
        }
      expect_i++;
    }
  g_assert_cmpint (expect_i, ==, 500);

  /* A list of classes, a validation cap. */
  g_autoptr(VlDataset) d2 = open_ok ("fashion-mnist:classes=0,2,5,per-class=10,val-per-class=7",
                                     0.2, 0);
  g_assert_cmpint (vl_dataset_n_classes (d2), ==, 3);
  g_assert_cmpstr (vl_dataset_class_name (d2, 0), ==, "T-shirt/top");
  g_assert_cmpstr (vl_dataset_class_name (d2, 1), ==, "Pullover");
  g_assert_cmpstr (vl_dataset_class_name (d2, 2), ==, "Sandal");
  g_assert_cmpint (vl_dataset_n_items (d2, VL_SPLIT_TRAIN), ==, 30);
  g_assert_cmpint (vl_dataset_n_items (d2, VL_SPLIT_VAL), ==, 21);
  g_assert_true (g_str_has_prefix (vl_dataset_item_name (d2, VL_SPLIT_VAL, 0),
                                   "fashion-mnist:test#"));

  /* Augmented at model size. */
  VlPreprocess pp = pp_rgb32;
  g_autofree float *a = load_ok (d2, VL_SPLIT_TRAIN, 3, &pp, VL_AUGMENT_STRONG, 1);
  g_autofree float *b = load_ok (d2, VL_SPLIT_TRAIN, 3, &pp, VL_AUGMENT_STRONG, 1);
  g_assert_cmpmem (a, 3 * 32 * 32 * sizeof (float), b, 3 * 32 * 32 * sizeof (float));

  open_fails ("fashion-mnist:classes=3", "one class");
  open_fails ("fashion-mnist:classes=3-12", "3-12");
  open_fails ("fashion-mnist:classes=3,3", "twice");
  open_fails ("fashion-mnist:classes=1-2,per-class=0", "per-class=0");
  open_fails ("fashion-mnist:colour=red", "colour");
  open_fails ("fashion-mnist:classes=1-2,dir=/nonexistent", "/nonexistent");
}

/* ---- CIFAR ---- */

static uint8_t
cifar_pixel (int r, int c, int p)
{
  return (uint8_t) (r * 37 + c * 91 + p * 3 + (p >> 5));
}

static void
write_cifar (const char *dir, const char *name, int label_bytes, const int *labels, int n,
             int first)
{
  gsize rec = label_bytes + 3072;
  g_autofree uint8_t *buf = g_malloc (rec * n);
  for (int r = 0; r < n; r++)
    {
      uint8_t *p = buf + rec * r;
      if (label_bytes == 2)
        p[0] = (uint8_t) (labels[r] / 5);   /* coarse */
      p[label_bytes - 1] = (uint8_t) labels[r];
      for (int c = 0; c < 3; c++)
        for (int q = 0; q < 1024; q++)
          p[label_bytes + c * 1024 + q] = cifar_pixel (first + r, c, q);
    }
  write_file (dir, name, buf, rec * n);
}

static void
check_cifar_pixels (VlDataset *ds, VlSplit split, int i, int r)
{
  VlPreprocess pp = pp_identity (3, 32);
  g_autofree float *x = load_ok (ds, split, i, &pp, VL_AUGMENT_NONE, 0);
  for (int c = 0; c < 3; c++)
    for (int q = 0; q < 1024; q++)
      g_assert_cmpfloat (x[c * 1024 + q], ==, cifar_pixel (r, c, q) / 255.0f);
}

static void
test_cifar10 (void)
{
  g_autofree char *root = vl_test_tmpdir ();
  const int l1[] = { 0, 1, 2, 0, 1, 2 }, l2[] = { 9, 9 }, lt[] = { 2, 1, 0 };
  write_cifar (root, "data_batch_1.bin", 1, l1, 6, 0);
  write_cifar (root, "data_batch_2.bin", 1, l2, 2, 6);
  write_cifar (root, "test_batch.bin", 1, lt, 3, 100);
  g_autofree char *spec = g_strconcat ("cifar10:", root, NULL);
  {
    g_autoptr(VlDataset) ds = open_ok (spec, 0.2, 0);
    g_test_message ("%s", vl_dataset_description (ds));
    g_assert_cmpint (vl_dataset_n_classes (ds), ==, 10);
    g_assert_cmpstr (vl_dataset_class_name (ds, 0), ==, "airplane");
    g_assert_cmpstr (vl_dataset_class_name (ds, 9), ==, "truck");
    g_assert_cmpint (vl_dataset_n_items (ds, VL_SPLIT_TRAIN), ==, 8);
    g_assert_cmpint (vl_dataset_n_items (ds, VL_SPLIT_VAL), ==, 3);
    g_assert_cmpint (vl_dataset_class_count (ds, VL_SPLIT_TRAIN, 9), ==, 2);
    g_assert_cmpint (vl_dataset_label (ds, VL_SPLIT_TRAIN, 7), ==, 9);
    g_assert_cmpint (vl_dataset_label (ds, VL_SPLIT_VAL, 0), ==, 2);
    g_assert_true (g_str_has_suffix (vl_dataset_item_name (ds, VL_SPLIT_TRAIN, 7),
                                     "data_batch_2.bin#1"));
    check_cifar_pixels (ds, VL_SPLIT_TRAIN, 4, 4);
    check_cifar_pixels (ds, VL_SPLIT_TRAIN, 7, 7);
    check_cifar_pixels (ds, VL_SPLIT_VAL, 2, 102);
  }

  /* Names from batches.meta.txt; no test batch -> a stratified split. */
  const char *meta = "a0\nb1\nc2\nd3\ne4\nf5\ng6\nh7\ni8\nj9\n\n";
  write_file (root, "batches.meta.txt", meta, strlen (meta));
  g_autofree char *test_batch = join (root, "test_batch.bin");
  g_assert_cmpint (g_unlink (test_batch), ==, 0);
  {
    g_autoptr(VlDataset) ds = open_ok (spec, 0.2, 0);
    g_assert_cmpstr (vl_dataset_class_name (ds, 3), ==, "d3");
    g_assert_cmpint (vl_dataset_n_items (ds, VL_SPLIT_VAL), ==, 4);   /* one per class */
    g_assert_cmpint (vl_dataset_n_items (ds, VL_SPLIT_TRAIN), ==, 4);
  }

  /* A truncated batch is an error naming the file. */
  write_file (root, "data_batch_3.bin", "\1\2\3", 3);
  g_autofree char *b3 = join (root, "data_batch_3.bin");
  open_fails (spec, b3);
  g_autofree char *nothing = g_strconcat ("cifar10:", root, "/nothing", NULL);
  open_fails (nothing, "nothing");
}

static void
test_cifar100 (void)
{
  g_autofree char *root = vl_test_tmpdir ();
  make_dir (root, "cifar-100-binary");
  g_autofree char *inner = join (root, "cifar-100-binary");
  const int lt[] = { 57, 0, 99, 57 }, lv[] = { 99, 0 };
  write_cifar (inner, "train.bin", 2, lt, 4, 0);
  write_cifar (inner, "test.bin", 2, lv, 2, 10);
  g_autofree char *spec = g_strconcat ("cifar100:", root, NULL);   /* finds the inner folder */
  {
    g_autoptr(VlDataset) ds = open_ok (spec, 0.2, 0);
    g_assert_cmpint (vl_dataset_n_classes (ds), ==, 100);
    g_assert_cmpstr (vl_dataset_class_name (ds, 0), ==, "apple");
    g_assert_cmpstr (vl_dataset_class_name (ds, 57), ==, "pear");
    g_assert_cmpstr (vl_dataset_class_name (ds, 99), ==, "worm");
    g_assert_cmpint (vl_dataset_label (ds, VL_SPLIT_TRAIN, 0), ==, 57);   /* fine, not coarse */
    g_assert_cmpint (vl_dataset_label (ds, VL_SPLIT_TRAIN, 2), ==, 99);
    g_assert_cmpint (vl_dataset_class_count (ds, VL_SPLIT_TRAIN, 57), ==, 2);
    g_assert_cmpint (vl_dataset_n_items (ds, VL_SPLIT_VAL), ==, 2);
    check_cifar_pixels (ds, VL_SPLIT_TRAIN, 3, 3);
    check_cifar_pixels (ds, VL_SPLIT_VAL, 1, 11);
  }
  GString *names = g_string_new (NULL);
  for (int k = 0; k < 100; k++)
    g_string_append_printf (names, "name_%d\n", k);
  write_file (inner, "fine_label_names.txt", names->str, names->len);
  g_string_free (names, TRUE);
  {
    g_autoptr(VlDataset) ds = open_ok (spec, 0.2, 0);
    g_assert_cmpstr (vl_dataset_class_name (ds, 57), ==, "name_57");
  }
  /* A fine label above 99 is an error naming the file. */
  const int bad[] = { 120, 1 };
  write_cifar (inner, "train.bin", 2, bad, 2, 0);
  g_autofree char *train = join (inner, "train.bin");
  open_fails (spec, train);
}

/* ---- augmentation ---- */

static void
test_augment_determinism (void)
{
  g_autoptr(VlImage) img = vl_image_new (61, 43, 3);
  g_autofree uint8_t *px = pattern (61, 43, 3, 5);
  memcpy (img->pixels, px, 61 * 43 * 3);
  const gsize n = 3 * 32 * 32;
  for (VlAugment aug = VL_AUGMENT_LIGHT; aug <= VL_AUGMENT_STRONG; aug++)
    {
      g_autofree float *a = g_new (float, n);
      g_autofree float *b = g_new (float, n);
      g_autofree float *c = g_new (float, n);
      vl_augment_image (img, &pp_rgb32, aug, 42, a);
      vl_augment_image (img, &pp_rgb32, aug, 42, b);
      vl_augment_image (img, &pp_rgb32, aug, 43, c);
      g_assert_cmpmem (a, n * sizeof (float), b, n * sizeof (float));
      g_assert_true (memcmp (a, c, n * sizeof (float)) != 0);
    }
  /* none = the eval transform */
  g_autofree float *e = g_new (float, n);
  g_autofree float *f = g_new (float, n);
  vl_augment_image (img, &pp_rgb32, VL_AUGMENT_NONE, 1, e);
  vl_preprocess_eval (img, &pp_rgb32, f);
  g_assert_cmpmem (e, n * sizeof (float), f, n * sizeof (float));

  /* The aug seed is a function of (seed, epoch, index) alone. */
  g_assert_cmpuint (vl_augment_seed (1, 2, 3), ==, vl_augment_seed (1, 2, 3));
  g_assert_cmpuint (vl_augment_seed (1, 2, 3), !=, vl_augment_seed (1, 3, 3));
  g_assert_cmpuint (vl_augment_seed (1, 2, 3), !=, vl_augment_seed (1, 2, 4));
  g_assert_cmpuint (vl_augment_seed (1, 2, 3), !=, vl_augment_seed (2, 2, 3));

  /* Through loaders: the same (seed, epoch) gives the same floats per item, whatever the batch
   * size; another epoch gives others. */
  g_autofree char *root = make_class_folders ();
  g_autoptr(VlDataset) ds = open_ok (root, 0.0, 0);
  int N = vl_dataset_n_items (ds, VL_SPLIT_TRAIN);
  float *per_epoch[2][2];
  for (int e2 = 0; e2 < 2; e2++)
    for (int run = 0; run < 2; run++)
      {
        per_epoch[e2][run] = g_new0 (float, n * N);
        g_autoptr(VlLoader) l = vl_loader_new (ds, VL_SPLIT_TRAIN, &pp_rgb32,
                                               VL_AUGMENT_STRONG, run == 0 ? 3 : 5, TRUE, 9);
        vl_loader_start_epoch (l, e2, 0);
        VlBatch batch;
        while (vl_loader_next (l, &batch))
          for (int j = 0; j < batch.n; j++)
            memcpy (per_epoch[e2][run] + n * batch.indices[j], batch.images + n * j,
                    n * sizeof (float));
      }
  g_assert_cmpmem (per_epoch[0][0], n * N * sizeof (float), per_epoch[0][1],
                   n * N * sizeof (float));
  g_assert_cmpmem (per_epoch[1][0], n * N * sizeof (float), per_epoch[1][1],
                   n * N * sizeof (float));
  for (int i = 0; i < N; i++)
    g_assert_true (memcmp (per_epoch[0][0] + n * i, per_epoch[1][0] + n * i,
                           n * sizeof (float)) != 0);
  for (int e2 = 0; e2 < 2; e2++)
    for (int run = 0; run < 2; run++)
      g_free (per_epoch[e2][run]);
}

static void
test_augment_sanity (void)
{
  /* A horizontal ramp, the same on every row: any crop keeps it increasing, a flip makes it
   * decreasing. */
  const int W = 90, H = 50;
  g_autoptr(VlImage) img = vl_image_new (W, H, 3);
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++)
      for (int c = 0; c < 3; c++)
        img->pixels[((gsize) y * W + x) * 3 + c] = (uint8_t) (x * 255 / (W - 1));
  const int S = 32;
  const gsize n = 3 * S * S;
  int increasing = 0, decreasing = 0;
  g_autofree float *out = g_new (float, n);
  for (uint64_t seed = 0; seed < 40; seed++)
    {
      vl_augment_image (img, &pp_rgb32, VL_AUGMENT_LIGHT, seed, out);
      for (int c = 0; c < 3; c++)
        {
          float lo = (0.0f - pp_rgb32.mean[c]) / pp_rgb32.std[c];
          float hi = (1.0f - pp_rgb32.mean[c]) / pp_rgb32.std[c];
          for (int i = 0; i < S * S; i++)
            {
              float v = out[c * S * S + i];
              g_assert_true (v >= lo - 1e-5f && v <= hi + 1e-5f);
            }
        }
      const float *row = out + 5 * S;   /* channel 0, row 5 */
      gboolean up = TRUE, down = TRUE;
      for (int x = 1; x < S; x++)
        {
          up &= row[x] >= row[x - 1];
          down &= row[x] <= row[x - 1];
        }
      g_assert_true (up || down);
      g_assert_true (row[S - 1] != row[0]);
      increasing += up;
      decreasing += down;
    }
  g_test_message ("light on a ramp: %d kept, %d flipped of 40", increasing, decreasing);
  g_assert_cmpint (increasing, >=, 8);
  g_assert_cmpint (decreasing, >=, 8);

  /* Strong: in range, varied, and a gray source for a gray model works too. */
  g_autoptr(VlImage) photo = vl_image_new (70, 55, 4);
  g_autofree uint8_t *px = pattern (70, 55, 4, 3);
  memcpy (photo->pixels, px, 70 * 55 * 4);
  VlPreprocess pp1 = pp_rgb32;
  pp1.channels = 1;
  for (uint64_t seed = 0; seed < 40; seed++)
    {
      vl_augment_image (photo, &pp_rgb32, VL_AUGMENT_STRONG, seed, out);
      for (gsize i = 0; i < n; i++)
        {
          int c = (int) (i / (S * S));
          g_assert_true (out[i] >= (0.0f - pp_rgb32.mean[c]) / pp_rgb32.std[c] - 1e-5f);
          g_assert_true (out[i] <= (1.0f - pp_rgb32.mean[c]) / pp_rgb32.std[c] + 1e-5f);
        }
      vl_augment_image (photo, &pp1, VL_AUGMENT_STRONG, seed, out);
    }

  /* A tall thin image takes the centre-crop fallback without trouble; so does 1x1. */
  g_autoptr(VlImage) thin = vl_image_new (2, 300, 1);
  g_autoptr(VlImage) dot = vl_image_new (1, 1, 3);
  for (uint64_t seed = 0; seed < 5; seed++)
    {
      vl_augment_image (thin, &pp_rgb32, VL_AUGMENT_STRONG, seed, out);
      vl_augment_image (dot, &pp_rgb32, VL_AUGMENT_LIGHT, seed, out);
    }
}

/* ---- the loader ---- */

static void
collect_epoch (VlLoader *l, int epoch, int start_batch, int *order, int *n_out, int bs,
               int n_items)
{
  vl_loader_start_epoch (l, epoch, start_batch);
  VlBatch batch;
  int n = 0, expect_index = start_batch;
  while (vl_loader_next (l, &batch))
    {
      g_assert_cmpint (batch.index, ==, expect_index);
      int want = MIN (bs, n_items - expect_index * bs);
      g_assert_cmpint (batch.n, ==, want);
      for (int j = 0; j < batch.n; j++)
        {
          /* the memory image i starts with the float i; labels follow */
          g_assert_cmpfloat (batch.images[(gsize) j * 3 * 4 * 4], ==,
                             (float) batch.indices[j]);
          g_assert_cmpint (batch.labels[j], ==, batch.indices[j] % 3);
          order[n++] = batch.indices[j];
        }
      expect_index++;
    }
  g_assert_cmpint (expect_index, ==, vl_loader_n_batches (l));
  g_assert_false (vl_loader_next (l, &batch));   /* stays at the end */
  *n_out = n;
}

static void
test_loader_order (void)
{
  const int N = 103, BS = 10;
  g_autoptr(VlDataset) ds = memory_dataset (N, 0, 3, 4, 3);
  g_autoptr(VlLoader) l = vl_loader_new (ds, VL_SPLIT_TRAIN, NULL, VL_AUGMENT_NONE, BS, TRUE,
                                         77);
  g_assert_cmpint (vl_loader_n_batches (l), ==, 11);
  int o0[103], o0b[103], o1[103], n = 0;
  collect_epoch (l, 0, 0, o0, &n, BS, N);
  g_assert_cmpint (n, ==, N);
  gboolean seen[103] = { FALSE };
  int moved = 0;
  for (int i = 0; i < N; i++)
    {
      g_assert_false (seen[o0[i]]);
      seen[o0[i]] = TRUE;
      moved += o0[i] != i;
    }
  g_assert_cmpint (moved, >, N / 2);   /* shuffled */
  collect_epoch (l, 1, 0, o1, &n, BS, N);
  g_assert_cmpint (n, ==, N);
  g_assert_true (memcmp (o0, o1, sizeof o0) != 0);
  collect_epoch (l, 0, 0, o0b, &n, BS, N);   /* epoch 0 again: the same order */
  g_assert_cmpmem (o0, sizeof o0, o0b, sizeof o0b);

  /* Resuming at batch 4 gives the rest of the same order. */
  int rest[103];
  collect_epoch (l, 0, 4, rest, &n, BS, N);
  g_assert_cmpint (n, ==, N - 40);
  g_assert_cmpmem (rest, (gsize) n * sizeof (int), o0 + 40, (gsize) n * sizeof (int));
  collect_epoch (l, 0, 11, rest, &n, BS, N);
  g_assert_cmpint (n, ==, 0);

  /* Another loader with the same seed agrees; without shuffle the order is the identity. */
  g_autoptr(VlLoader) l2 = vl_loader_new (ds, VL_SPLIT_TRAIN, NULL, VL_AUGMENT_NONE, BS, TRUE,
                                          77);
  collect_epoch (l2, 1, 0, o0b, &n, BS, N);
  g_assert_cmpmem (o1, sizeof o1, o0b, sizeof o0b);
  g_autoptr(VlLoader) seq = vl_loader_new (ds, VL_SPLIT_TRAIN, NULL, VL_AUGMENT_NONE, 32,
                                           FALSE, 77);
  collect_epoch (seq, 0, 0, o0b, &n, 32, N);
  for (int i = 0; i < N; i++)
    g_assert_cmpint (o0b[i], ==, i);

  /* An empty split: no batches. */
  g_autoptr(VlLoader) none = vl_loader_new (ds, VL_SPLIT_VAL, NULL, VL_AUGMENT_NONE, 4, TRUE,
                                            1);
  g_assert_cmpint (vl_loader_n_batches (none), ==, 0);
  VlBatch batch;
  vl_loader_start_epoch (none, 0, 0);
  g_assert_false (vl_loader_next (none, &batch));
}

static void
test_loader_cancel (void)
{
  g_autofree char *root = vl_test_tmpdir ();
  make_dir (root, "a");
  make_dir (root, "b");
  for (int i = 0; i < 24; i++)
    {
      g_autofree char *name = g_strdup_printf ("%s/i%02d.png", i % 2 ? "a" : "b", i);
      write_image (root, name, 150, 120, 3, i);
    }
  g_autoptr(VlDataset) ds = open_ok (root, 0.0, 0);
  VlPreprocess pp = pp_rgb32;
  pp.size = 64;
  const gsize n = 3 * 64 * 64;

  g_autoptr(VlLoader) ref = vl_loader_new (ds, VL_SPLIT_TRAIN, &pp, VL_AUGMENT_STRONG, 4, TRUE,
                                           3);
  vl_loader_start_epoch (ref, 2, 0);
  VlBatch first;
  g_assert_true (vl_loader_next (ref, &first));
  g_autofree float *want = g_memdup2 (first.images, n * first.n * sizeof (float));
  int want_n = first.n;

  /* Cancel mid-epoch, repeatedly, at every stage of prefetching; the restarted epoch gives the
   * same first batch. */
  g_autoptr(VlLoader) l = vl_loader_new (ds, VL_SPLIT_TRAIN, &pp, VL_AUGMENT_STRONG, 4, TRUE,
                                         3);
  for (int round = 0; round < 6; round++)
    {
      vl_loader_start_epoch (l, round, 0);
      VlBatch b;
      for (int k = 0; k < round % 3; k++)
        g_assert_true (vl_loader_next (l, &b));
      if (round % 2)
        g_usleep (2000);
    }
  vl_loader_start_epoch (l, 2, 0);
  VlBatch b;
  g_assert_true (vl_loader_next (l, &b));
  g_assert_cmpint (b.n, ==, want_n);
  g_assert_cmpmem (b.images, n * b.n * sizeof (float), want, n * want_n * sizeof (float));

  /* Freed while prefetching, and freed having never started. */
  VlLoader *busy = vl_loader_new (ds, VL_SPLIT_TRAIN, &pp, VL_AUGMENT_STRONG, 4, TRUE, 3);
  vl_loader_start_epoch (busy, 0, 0);
  vl_loader_free (busy);
  vl_loader_free (vl_loader_new (ds, VL_SPLIT_TRAIN, &pp, VL_AUGMENT_NONE, 4, FALSE, 3));
}

static void
test_loader_thread (void)
{
  /* The prefetch thread is not the caller's... */
  g_autofree char *root = vl_test_tmpdir ();
  make_dir (root, "a");
  make_dir (root, "b");
  for (int i = 0; i < 16; i++)
    {
      g_autofree char *name = g_strdup_printf ("%s/i%02d.png", i < 8 ? "a" : "b", i);
      write_image (root, name, 16, 16, 3, i);
    }
  g_autoptr(VlDataset) ds = open_ok (root, 0.0, 0);
  g_autoptr(VlLoader) l = vl_loader_new (ds, VL_SPLIT_TRAIN, &pp_rgb32, VL_AUGMENT_LIGHT, 4,
                                         FALSE, 0);
  g_assert_nonnull (vl_loader_thread (l));
  g_assert_true (vl_loader_thread (l) != g_thread_self ());

  /* ... and it works ahead: batches decoded while this thread sleeps are complete although
   * their files are deleted before they are asked for. */
  vl_loader_start_epoch (l, 0, 0);
  g_usleep (G_USEC_PER_SEC / 2);
  for (int i = 0; i < vl_dataset_n_items (ds, VL_SPLIT_TRAIN); i++)
    g_assert_cmpint (g_unlink (vl_dataset_item_name (ds, VL_SPLIT_TRAIN, i)), ==, 0);
  VlBatch batch;
  for (int k = 0; k < 2; k++)
    {
      g_assert_true (vl_loader_next (l, &batch));
      g_assert_cmpint (batch.index, ==, k);
      g_assert_cmpint (batch.n, ==, 4);
    }
  /* The rest were not decoded yet and fail: left out, listed, the epoch still ends. */
  while (vl_loader_next (l, &batch))
    ;
  g_autoptr(GPtrArray) skipped = vl_dataset_skipped (ds);
  g_assert_cmpuint (skipped->len, >=, 4);
  g_assert_true (skipped_has (skipped, ".png", "cannot read"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/dataset/memory", test_memory);
  g_test_add_func ("/dataset/folder/classes", test_folder_classes);
  g_test_add_func ("/dataset/folder/split", test_folder_split);
  g_test_add_func ("/dataset/folder/train-val", test_folder_train_val);
  g_test_add_func ("/dataset/folder/bad-files", test_folder_bad_files);
  g_test_add_func ("/dataset/folder/errors", test_folder_errors);
  g_test_add_func ("/dataset/hymenoptera", test_hymenoptera);
  g_test_add_func ("/dataset/fashion-mnist", test_fashion_mnist);
  g_test_add_func ("/dataset/cifar10", test_cifar10);
  g_test_add_func ("/dataset/cifar100", test_cifar100);
  g_test_add_func ("/dataset/augment/determinism", test_augment_determinism);
  g_test_add_func ("/dataset/augment/sanity", test_augment_sanity);
  g_test_add_func ("/dataset/loader/order", test_loader_order);
  g_test_add_func ("/dataset/loader/cancel", test_loader_cancel);
  g_test_add_func ("/dataset/loader/thread", test_loader_thread);
  return g_test_run ();
}
