/* test-image.c: image loading, Pillow-exact resizing and timm's eval preprocessing.
 *
 * tests/data/pil-resize.safetensors and tests/data/synth-*.{png,gif} come from
 * tests/data/gen-pil-resize.py (Pillow 9.4); synth_value() below is its formula.
 * tests/data/exif/ comes from tests/data/gen-exif.py (the same image, EXIF-oriented), and
 * tests/data/webp/ from tests/data/gen-webp.py, tests/data/tiff/ from tests/data/gen-tiff.py. */
#include <glib.h>
#include <glib/gstdio.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vl-image.h"
#include "vl-test-util.h"

/* ---- the synthetic 37x23 image of gen-pil-resize.py ---- */

#define SYNTH_W 37
#define SYNTH_H 23

static int
synth_value (int x, int y, int c)
{
  return ((x * 7 + y * 13 + c * 50) ^ ((x * y * 3) & 63)) & 255;
}

static int
synth_alpha (int x, int y)
{
  if (x < 4)
    return 0;
  if (x > 30)
    return 255;
  return (x * y * 5 + 17) & 255;
}

/* mode: "L", "LA", "RGB" or "RGBA" */
static VlImage *
synth_image (const char *mode)
{
  int C = (int) strlen (mode);
  gboolean gray = mode[0] == 'L';
  gboolean has_alpha = mode[C - 1] == 'A';
  VlImage *img = vl_image_new (SYNTH_W, SYNTH_H, C);
  for (int y = 0; y < SYNTH_H; y++)
    for (int x = 0; x < SYNTH_W; x++)
      {
        uint8_t *p = img->pixels + ((gsize) y * SYNTH_W + x) * C;
        int n_color = has_alpha ? C - 1 : C;
        for (int c = 0; c < n_color; c++)
          p[c] = (uint8_t) synth_value (x, y, gray ? 1 : c);
        if (has_alpha)
          p[C - 1] = (uint8_t) synth_alpha (x, y);
      }
  return img;
}

static VlInterp
interp_from_name (const char *name)
{
  if (g_str_equal (name, "bicubic"))
    return VL_INTERP_BICUBIC;
  if (g_str_equal (name, "bilinear"))
    return VL_INTERP_BILINEAR;
  if (g_str_equal (name, "nearest"))
    return VL_INTERP_NEAREST;
  g_error ("unknown filter %s in pil-resize.safetensors", name);
}

static const VlTensorInfo *
lookup_u8 (VlSafetensors *st, const char *name)
{
  const VlTensorInfo *t = vl_safetensors_lookup (st, name);
  if (t == NULL)
    g_error ("pil-resize.safetensors: tensor %s is missing", name);
  g_assert_cmpint (t->dtype, ==, VL_DTYPE_U8);
  g_assert_cmpint (t->ndim, ==, 3);
  return t;
}

/* ---- /image/resize/pillow ---- */

static void
test_resize_pillow (void)
{
  g_autofree char *path = vl_test_data_path ("pil-resize.safetensors", NULL);
  g_autoptr(VlSafetensors) st = vl_test_open (path);
  const char *modes[] = { "L", "LA", "RGB", "RGBA" };

  /* Our copy of the formula is Python's. */
  for (guint m = 0; m < G_N_ELEMENTS (modes); m++)
    {
      g_autofree char *name = g_strconcat ("in.", modes[m], NULL);
      const VlTensorInfo *t = lookup_u8 (st, name);
      g_autoptr(VlImage) img = synth_image (modes[m]);
      g_assert_cmpint (t->nbytes, ==, (gsize) SYNTH_W * SYNTH_H * img->channels);
      g_assert_cmpmem (t->data, t->nbytes, img->pixels, t->nbytes);
    }

  guint n_cases = 0;
  for (guint i = 0; i < vl_safetensors_n_tensors (st); i++)
    {
      const VlTensorInfo *t = vl_safetensors_get (st, i);
      if (!g_str_has_prefix (t->name, "out."))
        continue;
      /* out.<MODE>.<filter>.<W>x<H> */
      g_auto(GStrv) parts = g_strsplit (t->name, ".", -1);
      g_assert_cmpuint (g_strv_length (parts), ==, 4);
      int w = 0, h = 0;
      g_assert_cmpint (sscanf (parts[3], "%dx%d", &w, &h), ==, 2);
      g_assert_cmpint (t->dtype, ==, VL_DTYPE_U8);
      g_assert_cmpint (t->shape[0], ==, h);
      g_assert_cmpint (t->shape[1], ==, w);

      g_autoptr(VlImage) in = synth_image (parts[1]);
      g_assert_cmpint (t->shape[2], ==, in->channels);
      g_autoptr(VlImage) out = vl_image_resize (in, w, h, interp_from_name (parts[2]));
      g_assert_nonnull (out);
      g_assert_cmpint (out->width, ==, w);
      g_assert_cmpint (out->height, ==, h);
      g_assert_cmpint (out->channels, ==, in->channels);

      const uint8_t *want = t->data;
      gsize n = (gsize) w * h * in->channels, n_diff = 0, first = 0;
      for (gsize j = 0; j < n; j++)
        if (out->pixels[j] != want[j] && n_diff++ == 0)
          first = j;
      if (n_diff > 0)
        g_error ("%s: %" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT " bytes differ from Pillow, "
                 "first at byte %" G_GSIZE_FORMAT ": %d, Pillow %d",
                 t->name, n_diff, n, first, out->pixels[first], want[first]);
      n_cases++;
    }
  g_test_message ("%u Pillow resizes reproduced byte for byte", n_cases);
  g_assert_cmpuint (n_cases, >=, 30);
}

/* Upscale then downscale of a flat image stays flat (weights sum to one in fixed point). */
/* The file dir/name decodes (keeping its channels, or to `channels`) to exactly the reference
 * tensor t, [height, width, channels], and its header check gives that size and the stored
 * orientation `orientation`. */
static void
check_decode (const char *dir, const char *name, const VlTensorInfo *t, int channels,
              int orientation)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(VlImage) img = vl_image_load (path, channels, &error);
  g_assert_no_error (error);
  g_test_message ("%s: %dx%d, %d channels", name, img->width, img->height, img->channels);
  g_assert_cmpint (t->dtype, ==, VL_DTYPE_U8);
  g_assert_cmpint (img->height, ==, (int) t->shape[0]);
  g_assert_cmpint (img->width, ==, (int) t->shape[1]);
  g_assert_cmpint (img->channels, ==, (int) t->shape[2]);
  g_assert_cmpmem (img->pixels, (gsize) img->width * img->height * img->channels, t->data,
                   t->nbytes);
  int w = 0, h = 0, o = 0;
  g_assert_true (vl_image_probe_file (path, &w, &h, &o, &error));
  g_assert_cmpint (w, ==, img->width);
  g_assert_cmpint (h, ==, img->height);
  g_assert_cmpint (o, ==, orientation);
}

/* Decoding `n` bytes under the name `name` fails with an error holding `needle`. */
static void
assert_refused_memory (const char *bytes, gsize n, const char *name, const char *needle)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VlImage) img = vl_image_load_memory ((const uint8_t *) bytes, n, name, 3, &error);
  g_assert_null (img);
  g_assert_nonnull (error);
  g_assert_nonnull (strstr (error->message, needle));
}

/* ---- /image/load/webp ---- */

/* WebP (libwebp, as Pillow 9.4 decodes it): each file of tests/data/webp (gen-webp.py) gives
 * exactly Pillow's pixels in Pillow's mode (RGB, RGBA with alpha), the first frame of an
 * animation, upright by its EXIF chunk; truncated and corrupt files are errors naming them. */
static void
test_load_webp (void)
{
  g_autofree char *dir = vl_test_data_path ("webp", NULL);
  g_autofree char *ref_path = g_build_filename (dir, "webp.safetensors", NULL);
  g_autoptr(VlSafetensors) st = vl_test_open (ref_path);
  static const char *const files[] = { "alpha-lossy.webp", "alpha.webp", "anim.webp",
                                       "lossless.webp", "lossy.webp", "o6.webp" };
  g_assert_cmpuint (vl_safetensors_n_tensors (st), ==, G_N_ELEMENTS (files));
  g_assert_true (vl_image_has_extension ("photo.WebP", FALSE));
  for (guint i = 0; i < G_N_ELEMENTS (files); i++)
    check_decode (dir, files[i], lookup_u8 (st, files[i]), 0,
                  g_str_equal (files[i], "o6.webp") ? 6 : 1);

  /* cut short, and a header that lies */
  g_autofree char *lossy = g_build_filename (dir, "lossy.webp", NULL);
  g_autofree char *bytes = NULL;
  gsize n = 0;
  g_assert_true (g_file_get_contents (lossy, &bytes, &n, NULL));
  assert_refused_memory (bytes, n / 2, "cut.webp", "cut.webp");
  memset (bytes + 12, 'x', 8);   /* the first chunk's tag and size */
  assert_refused_memory (bytes, n, "bad.webp", "bad.webp: cannot decode image");
}

/* ---- /image/load/tiff ---- */

/* TIFF (libtiff): each file of tests/data/tiff (gen-tiff.py) gives exactly the pixels Pillow's
 * Image.open + convert gives (gray as 1 channel, the rest RGB; compressions raw, LZW, Deflate,
 * PackBits, JPEG; 1-bit, palette, tiled; the first page; upright by the Orientation tag, as
 * Pillow's TIFF loader turns it); alpha and 16-bit files are refused naming the file and why. */
static void
test_load_tiff (void)
{
  g_autofree char *dir = vl_test_data_path ("tiff", NULL);
  g_autofree char *ref_path = g_build_filename (dir, "tiff.safetensors", NULL);
  g_autoptr(VlSafetensors) st = vl_test_open (ref_path);
  g_assert_cmpuint (vl_safetensors_n_tensors (st), ==, 11);
  g_assert_true (vl_image_has_extension ("scan.TIF", FALSE));
  for (guint i = 0; i < vl_safetensors_n_tensors (st); i++)
    {
      const VlTensorInfo *t = vl_safetensors_get (st, i);
      check_decode (dir, t->name, t, 0, g_str_equal (t->name, "o6.tif") ? 6 : 1);
    }
  static const struct { const char *file, *why; } refused[] = {
    { "rgba.tif", "alpha" }, { "gray16.tif", "16 bits per sample" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (refused); i++)
    {
      g_autofree char *path = g_build_filename (dir, refused[i].file, NULL);
      g_autoptr(GError) error = NULL;
      g_autoptr(VlImage) img = vl_image_load (path, 3, &error);
      g_assert_null (img);
      g_assert_nonnull (strstr (error->message, refused[i].file));
      g_assert_nonnull (strstr (error->message, refused[i].why));
      g_clear_error (&error);
      g_assert_false (vl_image_check_file (path, NULL, NULL, &error));
      g_assert_nonnull (strstr (error->message, refused[i].why));
    }
  /* cut short */
  g_autofree char *lzw = g_build_filename (dir, "rgb-lzw.tif", NULL);
  g_autofree char *bytes = NULL;
  gsize n = 0;
  g_assert_true (g_file_get_contents (lzw, &bytes, &n, NULL));
  assert_refused_memory (bytes, n / 2, "cut.tif", "cut.tif: cannot decode image");
}

/* ---- /image/load/exif-orientation ---- */

/* Photos are decoded upright: each file of tests/data/exif (gen-exif.py) gives exactly the
 * pixels of Pillow's ImageOps.exif_transpose, and the header check gives that size and the
 * orientation stored. */
static void
test_load_exif_orientation (void)
{
  g_autofree char *dir = vl_test_data_path ("exif", NULL);
  g_autofree char *ref_path = g_build_filename (dir, "exif.safetensors", NULL);
  g_autoptr(VlSafetensors) st = vl_test_open (ref_path);
  static const struct { const char *file; int orientation; } cases[] = {
    { "o1.jpg", 1 }, { "o2.jpg", 2 }, { "o3.jpg", 3 }, { "o4.jpg", 4 }, { "o5.jpg", 5 },
    { "o6.jpg", 6 }, { "o7.jpg", 7 }, { "o8.jpg", 8 }, { "o6-be.jpg", 6 }, { "o6.png", 6 },
    { "o9.jpg", 1 },   /* not an orientation: as stored */
  };
  g_assert_cmpuint (vl_safetensors_n_tensors (st), ==, G_N_ELEMENTS (cases));
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      const VlTensorInfo *t = lookup_u8 (st, cases[i].file);
      g_assert_cmpint ((int) t->shape[1], ==, cases[i].orientation >= 5 ? SYNTH_H : SYNTH_W);
      check_decode (dir, cases[i].file, t, 3, cases[i].orientation);
    }
  g_autofree char *o1 = g_build_filename (dir, "o1.jpg", NULL);
  g_autoptr(VlImage) stored = vl_image_load (o1, 3, NULL);

  /* A box on the stored pixels lands where vl_orient_pixels puts those pixels: mark a
   * rectangle, turn the marks, and compare their extent with the turned box. */
  const int W = 37, H = 23;
  const float box[4] = { 3, 5, 11, 19 };   /* x0, y0, x1, y1: pixels 3..10 x 5..18 */
  g_autofree uint8_t *marks = g_new0 (uint8_t, W * H);
  for (int y = 5; y < 19; y++)
    for (int x = 3; x < 11; x++)
      marks[y * W + x] = 1;
  for (int o = 1; o <= 8; o++)
    {
      int ow = 0, oh = 0;
      g_autofree uint8_t *up = vl_orient_pixels (marks, W, H, 1, o, &ow, &oh);
      g_assert_cmpint (ow, ==, o >= 5 ? H : W);
      g_assert_cmpint (oh, ==, o >= 5 ? W : H);
      int x0 = ow, y0 = oh, x1 = 0, y1 = 0;
      for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++)
          if (up[y * ow + x])
            {
              x0 = MIN (x0, x), y0 = MIN (y0, y), x1 = MAX (x1, x + 1), y1 = MAX (y1, y + 1);
            }
      float b[4] = { box[0], box[1], box[2], box[3] };
      vl_orient_box (b, W, H, o);
      g_assert_cmpfloat (b[0], ==, x0);
      g_assert_cmpfloat (b[1], ==, y0);
      g_assert_cmpfloat (b[2], ==, x1);
      g_assert_cmpfloat (b[3], ==, y1);
    }
  /* and the photo's own pixels turn as the decoder turned them (orientation 6) */
  g_assert_nonnull (stored);
  int ow = 0, oh = 0;
  g_autofree uint8_t *turned = vl_orient_pixels (stored->pixels, stored->width, stored->height,
                                                 3, 6, &ow, &oh);
  const VlTensorInfo *t6 = lookup_u8 (st, "o6.jpg");
  g_assert_cmpmem (turned, (gsize) ow * oh * 3, t6->data, t6->nbytes);
}

static void
test_resize_flat (void)
{
  const VlInterp interps[] = { VL_INTERP_BICUBIC, VL_INTERP_BILINEAR, VL_INTERP_NEAREST };
  for (guint i = 0; i < G_N_ELEMENTS (interps); i++)
    {
      g_autoptr(VlImage) img = vl_image_new (13, 7, 3);
      memset (img->pixels, 200, 13 * 7 * 3);
      g_autoptr(VlImage) up = vl_image_resize (img, 101, 53, interps[i]);
      g_autoptr(VlImage) down = vl_image_resize (up, 5, 3, interps[i]);
      for (gsize j = 0; j < 101 * 53 * 3; j++)
        g_assert_cmpint (up->pixels[j], ==, 200);
      for (gsize j = 0; j < 5 * 3 * 3; j++)
        g_assert_cmpint (down->pixels[j], ==, 200);
    }
}

/* ---- /image/preprocess/timm-parity ---- */

static int
cmp_float (const void *a, const void *b)
{
  float x = *(const float *) a, y = *(const float *) b;
  return (x > y) - (x < y);
}

static int
cmp_name (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

typedef struct {
  int new_w, new_h;   /* after the shorter-side resize */
  int left, top;      /* of the centre crop */
} Geometry;

/* torchvision (what timm runs): long side int(s * long / short), crop at
 * round((dim - size) / 2) with Python's round (halves to even). */
static Geometry
geometry_torchvision (int w, int h, int s, int size)
{
  Geometry g;
  int new_long = (int) ((double) s * MAX (w, h) / MIN (w, h));
  g.new_w = w <= h ? s : new_long;
  g.new_h = w <= h ? new_long : s;
  int dx = g.new_w - size, dy = g.new_h - size;
  g.left = dx / 2 + (dx % 2 != 0 && (dx / 2) % 2 != 0);
  g.top = dy / 2 + (dy % 2 != 0 && (dy / 2) % 2 != 0);
  return g;
}

/* What the vit-tiny-real fixture's generator did instead (found by trying rules against
 * it with Pillow: it reproduces all four images to 6e-8, torchvision's rule only two):
 * long side rounded, crop at floor((dim - size) / 2). */
static Geometry
geometry_fixture (int w, int h, int s, int size)
{
  Geometry g;
  int new_long = (int) floor ((double) s * MAX (w, h) / MIN (w, h) + 0.5);
  g.new_w = w <= h ? s : new_long;
  g.new_h = w <= h ? new_long : s;
  g.left = (g.new_w - size) / 2;
  g.top = (g.new_h - size) / 2;
  return g;
}

/* Full resize, then crop and (x / 255 - 0.5) / 0.5 with an explicit geometry, RGB. */
static void
preprocess_with (const VlImage *img, Geometry g, int size, VlInterp interp, float *out)
{
  g_autoptr(VlImage) r = vl_image_resize (img, g.new_w, g.new_h, interp);
  for (int c = 0; c < 3; c++)
    for (int i = 0; i < size; i++)
      for (int j = 0; j < size; j++)
        {
          uint8_t px = r->pixels[((gsize) (i + g.top) * r->width + j + g.left) * 3 + c];
          out[((gsize) c * size + i) * size + j] = ((float) px / 255.0f - 0.5f) / 0.5f;
        }
}

/* Compares with the reference. JPEGs are decoded by libjpeg-turbo with the settings Pillow
 * leaves it at (accurate integer IDCT, fancy upsampling), as the fixture's were, so every value
 * must be the same (with stb_image's decoder: mean 0.010-0.024 levels, max 2). A wrong filter,
 * a crop one pixel off or a wrong normalization gives a mean of several levels. */
static void
assert_decoder_close (const char *what, const float *got, const float *ref, gsize n,
                      float *scratch)
{
  const double level = 2.0 / 255.0;   /* one 8-bit step after (x - 0.5) / 0.5 */
  double sum = 0;
  gsize n_exact = 0;
  for (gsize j = 0; j < n; j++)
    {
      scratch[j] = fabsf (got[j] - ref[j]);
      sum += scratch[j];
      n_exact += scratch[j] < 1e-6f;
    }
  qsort (scratch, n, sizeof (float), cmp_float);
  double mean = sum / n / level;
  double p99 = scratch[(gsize) (0.99 * (n - 1))] / level;
  double max = scratch[n - 1] / level;
  g_test_message ("%s: |diff| in 8-bit levels: mean %.3f, p99 %.0f, max %.0f; "
                  "%.1f%% identical", what, mean, p99, max, 100.0 * n_exact / n);
  g_assert_cmpfloat (mean, ==, 0.0);
  g_assert_cmpfloat (p99, ==, 0.0);
  g_assert_cmpfloat (max, ==, 0.0);
  g_assert_cmpuint (n_exact, ==, n);
}

static void
test_preprocess_timm_parity (void)
{
  g_autofree char *inputs = vl_test_shared_path ("fixtures", "vit-tiny-real",
                                                 "inputs.safetensors", NULL);
  g_autofree char *dir = vl_test_shared_path ("datasets", "imagenet-samples", NULL);
  g_autoptr(VlSafetensors) st = vl_test_open (inputs);
  int64_t numel = 0;
  g_autofree float *want = vl_test_read (st, "images", &numel);
  const int n_images = 4, size = 224, scale_size = 248;
  const gsize per_image = 3 * (gsize) size * size;
  g_assert_cmpint (numel, ==, n_images * (int64_t) per_image);

  /* The first four images, sorted by file name. */
  g_autoptr(GError) error = NULL;
  g_autoptr(GDir) d = g_dir_open (dir, 0, &error);
  g_assert_no_error (error);
  g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  for (const char *n; (n = g_dir_read_name (d)) != NULL;)
    if (g_str_has_suffix (n, ".JPEG"))
      g_ptr_array_add (names, g_strdup (n));
  g_ptr_array_sort (names, cmp_name);
  g_assert_cmpuint (names->len, >=, n_images);

  VlPreprocess pp = {
    .channels = 3, .size = size, .crop_pct = 0.9, .interp = VL_INTERP_BICUBIC,
    .mean = { 0.5f, 0.5f, 0.5f }, .std = { 0.5f, 0.5f, 0.5f },
  };
  g_autofree float *got = g_new (float, per_image);
  g_autofree float *scratch = g_new (float, per_image);
  int n_eval_checked = 0;
  for (int i = 0; i < n_images; i++)
    {
      const char *name = g_ptr_array_index (names, i);
      g_autofree char *path = g_build_filename (dir, name, NULL);
      g_autoptr(VlImage) img = vl_image_load (path, 3, &error);
      g_assert_no_error (error);
      const float *ref = want + i * per_image;
      Geometry tv = geometry_torchvision (img->width, img->height, scale_size, size);
      Geometry fx = geometry_fixture (img->width, img->height, scale_size, size);

      /* Decoding + Pillow resize, in the fixture's own geometry: all four images. */
      g_autofree char *what = g_strdup_printf ("%s %dx%d -> %dx%d +%d+%d (fixture)", name,
                                               img->width, img->height, fx.new_w, fx.new_h,
                                               fx.left, fx.top);
      preprocess_with (img, fx, size, VL_INTERP_BICUBIC, got);
      assert_decoder_close (what, got, ref, per_image, scratch);

      /* vl_preprocess_eval, timm's rule, where the fixture agrees with it. */
      vl_preprocess_eval (img, &pp, got);
      g_autofree char *what_tv = g_strdup_printf ("%s %dx%d -> %dx%d +%d+%d (timm)", name,
                                                  img->width, img->height, tv.new_w,
                                                  tv.new_h, tv.left, tv.top);
      if (memcmp (&tv, &fx, sizeof tv) == 0)
        {
          assert_decoder_close (what_tv, got, ref, per_image, scratch);
          n_eval_checked++;
        }
      else
        {
          /* It must then equal timm's geometry done by hand. */
          g_autofree float *by_hand = g_new (float, per_image);
          preprocess_with (img, tv, size, VL_INTERP_BICUBIC, by_hand);
          g_assert_cmpmem (got, per_image * sizeof (float), by_hand,
                           per_image * sizeof (float));
          g_test_message ("%s: fixture used another geometry; checked against "
                          "resize + crop by hand", what_tv);
        }
    }
  g_assert_cmpint (n_eval_checked, >=, 2);
}

/* ---- /image/load/... ---- */

static void
assert_load_fails (const char *path, int channels)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VlImage) img = vl_image_load (path, channels, &error);
  g_assert_null (img);
  g_assert_nonnull (error);
  g_assert_true (error->domain == VL_ERROR);
  g_test_message ("%s", error->message);
  if (strstr (error->message, path) == NULL)
    g_error ("error message does not name %s: %s", path, error->message);
}

static char *
write_file (const char *dir, const char *name, const void *data, gsize size)
{
  g_autoptr(GError) error = NULL;
  char *path = g_build_filename (dir, name, NULL);
  g_file_set_contents (path, data, (gssize) size, &error);
  g_assert_no_error (error);
  return path;
}

static void
test_load_bad (void)
{
  g_autofree char *dir = vl_test_tmpdir ();

  /* missing */
  g_autofree char *missing = g_build_filename (dir, "missing.jpg", NULL);
  assert_load_fails (missing, 3);
  {
    g_autoptr(GError) error = NULL;
    g_autoptr(VlImage) img = vl_image_load (missing, 3, &error);
    g_assert_null (img);
    g_assert_error (error, VL_ERROR, VL_ERROR_IO);
  }

  /* empty */
  g_autofree char *empty = write_file (dir, "empty.png", "", 0);
  assert_load_fails (empty, 3);

  /* text named .jpg */
  const char *text = "This is not a JPEG, just some text that happens to be named .jpg\n";
  g_autofree char *textjpg = write_file (dir, "text.jpg", text, strlen (text));
  assert_load_fails (textjpg, 3);

  /* truncated PNG: the first 100 bytes of a valid one */
  g_autofree char *png = vl_test_data_path ("synth-rgb.png", NULL);
  g_autofree char *png_data = NULL;
  gsize png_size = 0;
  g_assert_true (g_file_get_contents (png, &png_data, &png_size, NULL));
  g_assert_cmpuint (png_size, >, 100);
  g_autofree char *trunc_png = write_file (dir, "truncated.png", png_data, 100);
  assert_load_fails (trunc_png, 3);
  /* ... and every shorter prefix neither crashes nor succeeds */
  for (gsize n = 1; n < 100; n += 7)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(VlImage) img = vl_image_load_memory ((const uint8_t *) png_data, n,
                                                     "prefix.png", 3, &error);
      g_assert_null (img);
      g_assert_error (error, VL_ERROR, VL_ERROR_FORMAT);
    }

  /* a header claiming 20000x20000 */
  const char pgm[] = "P5\n20000 20000\n255\n\x01\x02\x03\x04";
  g_autofree char *huge = write_file (dir, "huge.pgm", pgm, sizeof pgm - 1);
  {
    g_autoptr(GError) error = NULL;
    g_autoptr(VlImage) img = vl_image_load (huge, 3, &error);
    g_assert_null (img);
    g_assert_error (error, VL_ERROR, VL_ERROR_FORMAT);
    g_autofree char *want = g_strdup_printf ("%s: image is 20000x20000 = 400 megapixels, "
                                             "above the 100 megapixel limit", huge);
    g_assert_cmpstr (error->message, ==, want);
  }

  /* a directory */
  assert_load_fails (dir, 3);

  /* bad channel count */
  {
    g_autoptr(GError) error = NULL;
    g_autoptr(VlImage) img = vl_image_load (png, 5, &error);
    g_assert_null (img);
    g_assert_error (error, VL_ERROR, VL_ERROR_INVALID);
  }

  g_remove (missing);
  g_remove (empty);
  g_remove (textjpg);
  g_remove (trunc_png);
  g_remove (huge);
  g_rmdir (dir);
}

/* A heavily truncated JPEG: the decoder may decode what it has, or refuse (libjpeg-turbo, as
 * Pillow, refuses); either way no crash, and a result has the size the header announced. */
static void
test_load_truncated_jpeg (void)
{
  g_autofree char *jpeg = vl_test_shared_path ("datasets", "imagenet-samples",
                                               "n01514668_10054.JPEG", NULL);
  g_autofree char *data = NULL;
  gsize size = 0;
  g_assert_true (g_file_get_contents (jpeg, &data, &size, NULL));
  g_autoptr(VlImage) full = vl_image_load_memory ((const uint8_t *) data, size, jpeg, 3,
                                                  NULL);
  g_assert_nonnull (full);
  const gsize cuts[] = { 2, 20, 200, 600, size / 10, size / 2, size - 10 };
  for (guint i = 0; i < G_N_ELEMENTS (cuts); i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(VlImage) img = vl_image_load_memory ((const uint8_t *) data, cuts[i],
                                                     "cut.jpg", 3, &error);
      g_test_message ("JPEG cut to %" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT " bytes: %s",
                      cuts[i], size, img ? "decoded" : error->message);
      if (img != NULL)
        {
          g_assert_no_error (error);
          g_assert_cmpint (img->width, ==, full->width);
          g_assert_cmpint (img->height, ==, full->height);
        }
      else
        {
          g_assert_error (error, VL_ERROR, VL_ERROR_FORMAT);
          g_assert_nonnull (strstr (error->message, "cut.jpg"));
        }
    }
}

static void
assert_synth_pixels (const VlImage *img, const char *mode)
{
  g_autoptr(VlImage) want = synth_image (mode);
  g_assert_cmpint (img->width, ==, SYNTH_W);
  g_assert_cmpint (img->height, ==, SYNTH_H);
  g_assert_cmpint (img->channels, ==, want->channels);
  g_assert_cmpmem (img->pixels, (gsize) SYNTH_W * SYNTH_H * img->channels,
                   want->pixels, (gsize) SYNTH_W * SYNTH_H * want->channels);
}

static VlImage *
load_data (const char *name, int channels)
{
  g_autofree char *path = vl_test_data_path (name, NULL);
  g_autoptr(GError) error = NULL;
  VlImage *img = vl_image_load (path, channels, &error);
  g_assert_no_error (error);
  g_assert_nonnull (img);
  return img;
}

static void
test_load_formats (void)
{
  /* channels 0 keeps the file's */
  const char *modes[] = { "L", "LA", "RGB", "RGBA" };
  for (guint i = 0; i < G_N_ELEMENTS (modes); i++)
    {
      g_autofree char *lower = g_ascii_strdown (modes[i], -1);
      g_autofree char *name = g_strdup_printf ("synth-%s.png", lower);
      g_autoptr(VlImage) img = load_data (name, 0);
      assert_synth_pixels (img, modes[i]);
    }

  /* gray -> 3 channels replicates; RGBA -> 3 drops alpha; 1 from gray is exact */
  g_autoptr(VlImage) gray3 = load_data ("synth-l.png", 3);
  g_autoptr(VlImage) gray1 = load_data ("synth-la.png", 1);
  g_autoptr(VlImage) rgba3 = load_data ("synth-rgba.png", 3);
  g_autoptr(VlImage) rgb = synth_image ("RGB");
  g_assert_cmpint (gray3->channels, ==, 3);
  g_assert_cmpint (gray1->channels, ==, 1);
  for (int y = 0; y < SYNTH_H; y++)
    for (int x = 0; x < SYNTH_W; x++)
      {
        gsize i = (gsize) y * SYNTH_W + x;
        for (int c = 0; c < 3; c++)
          {
            g_assert_cmpint (gray3->pixels[i * 3 + c], ==, synth_value (x, y, 1));
            g_assert_cmpint (rgba3->pixels[i * 3 + c], ==, rgb->pixels[i * 3 + c]);
          }
        g_assert_cmpint (gray1->pixels[i], ==, synth_value (x, y, 1));
      }

  /* GIF: the first frame (the second is its negative) */
  g_autoptr(VlImage) gif = load_data ("synth-2frames.gif", 1);
  assert_synth_pixels (gif, "L");
}

/* ---- /image/preprocess/... ---- */

static const VlPreprocess pp_plain = {
  .channels = 3, .size = 8, .crop_pct = 1.0, .interp = VL_INTERP_BICUBIC,
  .mean = { 0, 0, 0 }, .std = { 1, 1, 1 },
};

static void
test_preprocess_channels (void)
{
  /* gray image, RGB model: three equal planes, equal to the gray model's one plane */
  g_autoptr(VlImage) gray = synth_image ("L");
  g_autoptr(VlImage) rgb_from_gray = vl_image_new (SYNTH_W, SYNTH_H, 3);
  for (gsize i = 0; i < (gsize) SYNTH_W * SYNTH_H; i++)
    for (int c = 0; c < 3; c++)
      rgb_from_gray->pixels[i * 3 + c] = gray->pixels[i];

  VlPreprocess pp = pp_plain;
  pp.size = 16;
  pp.crop_pct = 0.875;
  pp.mean[0] = 0.1f, pp.mean[1] = 0.2f, pp.mean[2] = 0.3f;
  pp.std[0] = 0.5f, pp.std[1] = 0.25f, pp.std[2] = 2.0f;
  const gsize plane = 16 * 16;
  float a[3 * 16 * 16], b[3 * 16 * 16], g1[16 * 16];
  vl_preprocess_eval (gray, &pp, a);
  vl_preprocess_eval (rgb_from_gray, &pp, b);
  g_assert_cmpmem (a, sizeof a, b, sizeof b);
  VlPreprocess pp1 = pp;
  pp1.channels = 1;
  vl_preprocess_eval (gray, &pp1, g1);
  for (gsize i = 0; i < plane; i++)
    for (int c = 0; c < 3; c++)
      {
        float px = g1[i] * pp.std[0] + pp.mean[0];   /* back to [0, 1] */
        g_assert_cmpfloat_with_epsilon (a[c * plane + i],
                                        (px - pp.mean[c]) / pp.std[c], 1e-5);
      }

  /* RGBA, RGB model: alpha dropped before resizing (PIL's convert('RGB')) */
  g_autoptr(VlImage) rgba = synth_image ("RGBA");
  g_autoptr(VlImage) rgb = synth_image ("RGB");
  vl_preprocess_eval (rgba, &pp, a);
  vl_preprocess_eval (rgb, &pp, b);
  g_assert_cmpmem (a, sizeof a, b, sizeof b);

  /* RGB, gray model: PIL's convert('L') luma, L = (19595 R + 38470 G + 7471 B + 2^15) >> 16
   * (R*299/1000 + G*587/1000 + B*114/1000, rounded), computed before resizing */
  const uint8_t colors[][3] = { { 255, 0, 0 }, { 0, 255, 0 }, { 0, 0, 255 },
                                { 10, 200, 77 }, { 255, 255, 255 }, { 1, 2, 3 } };
  const int luma[] = { 76, 150, 29, 129, 255, 2 };   /* from Pillow 9.4 */
  for (guint i = 0; i < G_N_ELEMENTS (colors); i++)
    {
      g_autoptr(VlImage) px = vl_image_new (3, 3, 3);
      for (int j = 0; j < 9; j++)
        memcpy (px->pixels + j * 3, colors[i], 3);
      VlPreprocess pl = pp_plain;
      pl.channels = 1;
      pl.size = 2;
      float out[4];
      vl_preprocess_eval (px, &pl, out);
      for (int j = 0; j < 4; j++)
        g_assert_cmpfloat (out[j], ==, luma[i] / 255.0f);
    }
}

/* The value at crop pixel (i, j) of plane 0 with mean 0, std 1, as an 8-bit level. */
static int
level_at (const float *out, int size, int i, int j)
{
  return (int) lrintf (out[i * size + j] * 255.0f);
}

/* crop_mode squash (SigLIP's processors): the whole image resized to the square, whatever its
 * aspect, Pillow's resize to the byte, no padding, no crop; crop_pct has no say. */
static void
test_preprocess_squash (void)
{
  const int sizes[][2] = { { 23, 9 }, { 5, 17 }, { 8, 8 }, { 40, 3 } };
  for (guint k = 0; k < G_N_ELEMENTS (sizes); k++)
    {
      const int w = sizes[k][0], h = sizes[k][1];
      g_autoptr(VlImage) img = vl_image_new (w, h, 3);
      for (int i = 0; i < w * h * 3; i++)
        img->pixels[i] = (uint8_t) ((i * 37 + k * 11) % 251);
      VlPreprocess pp = pp_plain;
      pp.squash = TRUE;
      pp.crop_pct = 0.875;   /* ignored */
      float out[3 * 8 * 8];
      vl_preprocess_eval (img, &pp, out);
      g_autoptr(VlImage) want = vl_image_resize (img, 8, 8, VL_INTERP_BICUBIC);
      for (int c = 0; c < 3; c++)
        for (int i = 0; i < 8; i++)
          for (int j = 0; j < 8; j++)
            g_assert_cmpint (level_at (out + c * 64, 8, i, j), ==,
                             want->pixels[(i * 8 + j) * 3 + c]);
    }
}

static void
test_preprocess_crop (void)
{
  /* 6x4 gray, crop 8 at crop_pct 2: scale_size 4 = the short side, so no resize, and
   * torchvision pads left 1, right 1, top 2, bottom 2 with zeros. */
  g_autoptr(VlImage) small = vl_image_new (6, 4, 1);
  for (int i = 0; i < 24; i++)
    small->pixels[i] = (uint8_t) (10 + i);
  VlPreprocess pp = pp_plain;
  pp.crop_pct = 2.0;
  float out[3 * 8 * 8];
  vl_preprocess_eval (small, &pp, out);
  for (int c = 0; c < 3; c++)
    for (int i = 0; i < 8; i++)
      for (int j = 0; j < 8; j++)
        {
          int y = i - 2, x = j - 1;
          int want = y >= 0 && y < 4 && x >= 0 && x < 6 ? 10 + y * 6 + x : 0;
          g_assert_cmpint (level_at (out + c * 64, 8, i, j), ==, want);
        }

  /* wider than the crop, lower than it: pad top/bottom 2, crop the width at
   * round((W - 8) / 2) with Python's round: W = 11 -> round(1.5) = 2, W = 13 ->
   * round(2.5) = 2, W = 15 -> round(3.5) = 4, W = 9 -> round(0.5) = 0. */
  const int widths[] = { 11, 13, 15, 9, 12 };
  const int lefts[] = { 2, 2, 4, 0, 2 };
  for (guint k = 0; k < G_N_ELEMENTS (widths); k++)
    {
      int W = widths[k];
      g_autoptr(VlImage) wide = vl_image_new (W, 4, 1);
      for (int i = 0; i < W * 4; i++)
        wide->pixels[i] = (uint8_t) (1 + i);
      vl_preprocess_eval (wide, &pp, out);
      for (int i = 0; i < 8; i++)
        for (int j = 0; j < 8; j++)
          {
            int y = i - 2, x = j + lefts[k];
            int want = y >= 0 && y < 4 ? 1 + y * W + x : 0;
            g_assert_cmpint (level_at (out, 8, i, j), ==, want);
          }
    }

  /* a 1x1 image and a 1-pixel-wide strip: resized, no crash, finite */
  g_autoptr(VlImage) dot = vl_image_new (1, 1, 3);
  memset (dot->pixels, 128, 3);
  pp.crop_pct = 0.9;
  vl_preprocess_eval (dot, &pp, out);
  for (int i = 0; i < 3 * 64; i++)
    g_assert_cmpint (level_at (out, 8, 0, i), ==, 128);
  g_autoptr(VlImage) strip = vl_image_new (1, 300, 3);
  vl_preprocess_eval (strip, &pp, out);
  pp.crop_pct = 7.5;   /* scale_size 1: a 1 x 300 -> 1 x 300 strip, padded to 8 wide */
  vl_preprocess_eval (strip, &pp, out);

  /* vl_preprocess_eval resizes only the crop window: the same bytes as a full resize */
  {
    g_autoptr(VlImage) rgb = synth_image ("RGB");
    const VlInterp interps[] = { VL_INTERP_BICUBIC, VL_INTERP_BILINEAR, VL_INTERP_NEAREST };
    const struct { int size; double crop_pct; } cases[] = {
      { 16, 0.875 }, { 8, 0.5 }, { 30, 0.9 }, { 21, 1.0 }, { 5, 0.3 },
    };
    for (guint i = 0; i < G_N_ELEMENTS (interps); i++)
      for (guint k = 0; k < G_N_ELEMENTS (cases); k++)
        {
          VlPreprocess pw = {
            .channels = 3, .size = cases[k].size, .crop_pct = cases[k].crop_pct,
            .interp = interps[i], .mean = { 0.5f, 0.5f, 0.5f }, .std = { 0.5f, 0.5f, 0.5f },
          };
          gsize n = 3 * (gsize) pw.size * pw.size;
          g_autofree float *a = g_new (float, n);
          g_autofree float *b = g_new (float, n);
          int s = (int) floor (pw.size / pw.crop_pct);
          vl_preprocess_eval (rgb, &pw, a);
          preprocess_with (rgb, geometry_torchvision (SYNTH_W, SYNTH_H, s, pw.size), pw.size,
                           interps[i], b);
          g_assert_cmpmem (a, n * sizeof (float), b, n * sizeof (float));
        }
  }

  /* 1 x 20000: the full resize would be 248 x 4960000; the window is 224 x 224 */
  {
    g_autoptr(VlImage) thin = vl_image_new (1, 20000, 3);
    for (int i = 0; i < 20000 * 3; i++)
      thin->pixels[i] = (uint8_t) (i / 3 / 100);
    VlPreprocess pt = pp_plain;
    pt.size = 224;
    pt.crop_pct = 0.9;
    g_autofree float *o = g_new (float, 3 * 224 * 224);
    vl_preprocess_eval (thin, &pt, o);
    /* rows of the crop come from source rows near 10000 - 112 / 20 .. 10000 + 112 / 20 */
    g_assert_cmpint (level_at (o, 224, 0, 0), ==, 99);
    g_assert_cmpint (level_at (o, 224, 223, 223), ==, 100);
  }

  /* rounding of the crop on a resized image: 10x7, crop 8 at 1.0: short side 7 -> 8,
   * long side int(8 * 10 / 7) = 11, left round(1.5) = 2; compare with resize + slice */
  g_autoptr(VlImage) img = synth_image ("RGB");
  g_autoptr(VlImage) ten = vl_image_resize (img, 10, 7, VL_INTERP_BICUBIC);
  g_autoptr(VlImage) resized = vl_image_resize (ten, 11, 8, VL_INTERP_BICUBIC);
  pp.crop_pct = 1.0;
  vl_preprocess_eval (ten, &pp, out);
  for (int c = 0; c < 3; c++)
    for (int i = 0; i < 8; i++)
      for (int j = 0; j < 8; j++)
        g_assert_cmpint (level_at (out + c * 64, 8, i, j), ==,
                         resized->pixels[(i * 11 + j + 2) * 3 + c]);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/image/resize/pillow", test_resize_pillow);
  g_test_add_func ("/image/resize/flat", test_resize_flat);
  g_test_add_func ("/image/load/bad-input", test_load_bad);
  g_test_add_func ("/image/load/truncated-jpeg", test_load_truncated_jpeg);
  g_test_add_func ("/image/load/formats", test_load_formats);
  g_test_add_func ("/image/load/exif-orientation", test_load_exif_orientation);
  g_test_add_func ("/image/load/webp", test_load_webp);
  g_test_add_func ("/image/load/tiff", test_load_tiff);
  g_test_add_func ("/image/preprocess/channels", test_preprocess_channels);
  g_test_add_func ("/image/preprocess/center-crop", test_preprocess_crop);
  g_test_add_func ("/image/preprocess/squash", test_preprocess_squash);
  g_test_add_func ("/image/preprocess/timm-parity", test_preprocess_timm_parity);
  return g_test_run ();
}
