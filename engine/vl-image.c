/* vl-image.c: decoding (stb_image), Pillow-exact resampling and timm's eval preprocessing.
 *
 * The resampler follows Pillow's src/libImaging/Resample.c (ImagingResample) step by step,
 * because only the same arithmetic gives the same bytes:
 *  - per output index, a window [xmin, xmin + n) and n double weights of the filter at
 *    (x + xmin - center + 0.5) / filterscale, normalized by their sum; then converted to
 *    fixed point with PRECISION_BITS = 22 fractional bits, rounding away from zero;
 *  - horizontal pass first (only over the rows the vertical pass reads), then vertical,
 *    each skipped when that dimension does not change; each pass rounds to uint8
 *    (accumulator starts at one half, shifted right, clamped to 0..255).
 * Image.resize (Python side) premultiplies alpha for LA/RGBA before filtering and divides it
 * out again afterwards; so do we for 2 and 4 channels. NEAREST goes through Pillow's
 * ImagingScaleAffine instead, whose source positions are accumulated by repeated addition.
 * Every output pixel depends only on its own coordinates, so the preprocessing resizes just
 * the centre-crop window of the resized image: the same bytes, bounded memory.
 *
 * Gray models: stb_image's own 1-channel conversion (77 R + 150 G + 29 B) >> 8 is not
 * PIL's convert('L'); load with 0 or 3 channels and let vl_preprocess_eval convert.
 *
 * Weights and sums are plain double arithmetic; on a target with fused multiply-add and
 * contraction enabled a weight could round differently (x86-64 baseline has no FMA). */
#include "vl-image.h"
#include "vl-safetensors.h"   /* VL_ERROR */

#include <limits.h>
#include <errno.h>
#include <math.h>
#include <string.h>

#include <stb/stb_image.h>
#include <png.h>
#include <glib/gstdio.h>
#include <unistd.h>

#define PRECISION_BITS (32 - 8 - 2)
#define HALF_UNIT      (1 << (PRECISION_BITS - 1))

VlImage *
vl_image_new (int width, int height, int channels)
{
  g_return_val_if_fail (width > 0 && height > 0, NULL);
  g_return_val_if_fail (channels >= 1 && channels <= 4, NULL);

  VlImage *img = g_new0 (VlImage, 1);
  img->width = width;
  img->height = height;
  img->channels = channels;
  img->pixels = g_malloc0_n ((gsize) width * (gsize) height, (gsize) channels);
  return img;
}

void
vl_image_free (VlImage *img)
{
  if (img == NULL)
    return;
  /* Pixels come from g_malloc or from stb_image's malloc; GLib >= 2.46 allocates with the
   * system malloc, so g_free releases both. */
  g_free (img->pixels);
  g_free (img);
}

/* ------------------------------------------------------------------------------------- */
/* Decoding                                                                               */

static const char *
stb_reason (void)
{
  const char *reason = stbi_failure_reason ();
  return reason != NULL ? reason : "unknown error";
}

VlImage *
vl_image_load_memory (const uint8_t *data, size_t size, const char *name, int channels,
                      GError **error)
{
  const char *what = name != NULL ? name : "<memory>";

  g_return_val_if_fail (data != NULL || size == 0, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (channels < 0 || channels > 4)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "%s: cannot convert an image to %d channels (1 to 4, or 0 to keep)",
                   what, channels);
      return NULL;
    }
  if (size == 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: file is empty", what);
      return NULL;
    }
  if (size > INT_MAX)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                   "%s: file is %" G_GSIZE_FORMAT " bytes, too large to decode",
                   what, (gsize) size);
      return NULL;
    }

  /* Check the dimensions before anything is allocated for the pixels. */
  int w = 0, h = 0, comp = 0;
  if (!stbi_info_from_memory (data, (int) size, &w, &h, &comp))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: cannot decode image: %s",
                   what, stb_reason ());
      return NULL;
    }
  if (w <= 0 || h <= 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: image has no pixels (%dx%d)",
                   what, w, h);
      return NULL;
    }
  guint64 n_pixels = (guint64) w * (guint64) h;
  if (n_pixels > VL_IMAGE_MAX_PIXELS)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                   "%s: image is %dx%d = %.6g megapixels, above the %d megapixel limit",
                   what, w, h, (double) n_pixels / 1e6, VL_IMAGE_MAX_PIXELS / 1000000);
      return NULL;
    }

  int file_channels = 0;
  uint8_t *pixels = stbi_load_from_memory (data, (int) size, &w, &h, &file_channels,
                                           channels);
  if (pixels == NULL)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: cannot decode image: %s",
                   what, stb_reason ());
      return NULL;
    }
  int out_channels = channels != 0 ? channels : file_channels;
  if (w <= 0 || h <= 0 || (guint64) w * (guint64) h > VL_IMAGE_MAX_PIXELS
      || out_channels < 1 || out_channels > 4)
    {
      /* The header said otherwise (a GIF frame larger than its screen, say). */
      stbi_image_free (pixels);
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                   "%s: decoded image is %dx%d with %d channels, not what its header says",
                   what, w, h, out_channels);
      return NULL;
    }

  VlImage *img = g_new0 (VlImage, 1);
  img->width = w;
  img->height = h;
  img->channels = out_channels;
  img->pixels = pixels;
  return img;
}

const char *const vl_image_extensions[] = {
  "jpg", "jpeg", "jpe", "jfif", "png", "bmp", "dib", "gif", "pnm", "ppm", "pgm", "tga", "psd",
  "hdr", "pic", NULL
};

static const char *const undecodable_extensions[] = { "pbm", "tif", "tiff", "webp", NULL };

static gboolean
extension_in (const char *ext, const char *const *list)
{
  for (int i = 0; list[i]; i++)
    if (g_ascii_strcasecmp (ext, list[i]) == 0)
      return TRUE;
  return FALSE;
}

gboolean
vl_image_has_extension (const char *name, gboolean also_undecodable)
{
  const char *dot = strrchr (name, '.');
  if (dot == NULL || dot == name)
    return FALSE;
  return extension_in (dot + 1, vl_image_extensions) ||
         (also_undecodable && extension_in (dot + 1, undecodable_extensions));
}

VlImage *
vl_image_load (const char *path, int channels, GError **error)
{
  g_return_val_if_fail (path != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  g_autofree char *contents = NULL;
  gsize size = 0;
  g_autoptr(GError) local = NULL;
  if (!g_file_get_contents (path, &contents, &size, &local))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_IO, "%s: cannot read: %s", path,
                   g_strerror (local->domain == G_FILE_ERROR &&
                               local->code == G_FILE_ERROR_NOENT ? ENOENT :
                               local->domain == G_FILE_ERROR &&
                               local->code == G_FILE_ERROR_ACCES ? EACCES :
                               local->domain == G_FILE_ERROR &&
                               local->code == G_FILE_ERROR_ISDIR ? EISDIR : EIO));
      return NULL;
    }
  return vl_image_load_memory ((const uint8_t *) contents, size, path, channels, error);
}

/* ------------------------------------------------------------------------------------- */
/* Resampling                                                                             */

typedef struct {
  int      ksize;    /* taps per output index (the widest window) */
  int     *bounds;   /* (n_out, 2): first input index, number of taps */
  int32_t *k;        /* (n_out, ksize): weights, PRECISION_BITS fractional bits */
} Coeffs;

static void
coeffs_clear (Coeffs *co)
{
  g_free (co->bounds);
  g_free (co->k);
}

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for the box (0, in_size), computed for
 * the output indices first .. first + count of out_size (entry 0 is index `first`). */
static void
coeffs_compute (Coeffs *co, int in_size, int out_size, int first, int count,
                VlInterp interp)
{
  const gboolean cubic = interp == VL_INTERP_BICUBIC;
  double scale = (double) in_size / out_size;
  double filterscale = scale < 1.0 ? 1.0 : scale;
  double support = (cubic ? 2.0 : 1.0) * filterscale;
  double ss = 1.0 / filterscale;
  int ksize = (int) ceil (support) * 2 + 1;

  double *kd = g_new (double, (gsize) count * ksize);   /* (count, ksize) */
  co->ksize = ksize;
  co->bounds = g_new (int, (gsize) count * 2);
  co->k = g_new (int32_t, (gsize) count * ksize);

  for (int i = 0; i < count; i++)
    {
      int xx = first + i;
      double center = (xx + 0.5) * scale;
      double *k = kd + (gsize) i * ksize;
      double ww = 0.0;
      int xmin = (int) (center - support + 0.5);
      if (xmin < 0)
        xmin = 0;
      int xmax = (int) (center + support + 0.5);
      if (xmax > in_size)
        xmax = in_size;
      xmax -= xmin;
      g_assert (xmax >= 1 && xmax <= ksize);

      int x;
      for (x = 0; x < xmax; x++)
        {
          double t = (x + xmin - center + 0.5) * ss;
          double w;
          if (t < 0.0)
            t = -t;
          if (cubic)
            {
              /* Keys' cubic convolution, a = -0.5 */
              const double a = -0.5;
              if (t < 1.0)
                w = ((a + 2.0) * t - (a + 3.0)) * t * t + 1;
              else if (t < 2.0)
                w = (((t - 5) * t + 8) * t - 4) * a;
              else
                w = 0.0;
            }
          else
            w = t < 1.0 ? 1.0 - t : 0.0;   /* triangle */
          k[x] = w;
          ww += w;
        }
      for (x = 0; x < xmax; x++)
        if (ww != 0.0)
          k[x] /= ww;
      for (; x < ksize; x++)
        k[x] = 0.0;
      co->bounds[i * 2 + 0] = xmin;
      co->bounds[i * 2 + 1] = xmax;
    }

  for (gsize i = 0; i < (gsize) count * ksize; i++)
    co->k[i] = kd[i] < 0 ? (int32_t) (-0.5 + kd[i] * (1 << PRECISION_BITS))
                         : (int32_t) (0.5 + kd[i] * (1 << PRECISION_BITS));
  g_free (kd);
}

#define CLIP8(acc) ((acc) >> PRECISION_BITS < 0 ? 0                                  \
                    : (acc) >> PRECISION_BITS > 255 ? 255 : (acc) >> PRECISION_BITS)

/* in (in_h, in_w, C) rows row0 .. row0 + n_rows  ->  out (n_rows, out_w, C) */
static void
resample_horizontal (const uint8_t *in, int in_w, int row0, int n_rows, int C,
                     uint8_t *out, int out_w, const Coeffs *co)
{
  for (int yy = 0; yy < n_rows; yy++)
    {
      const uint8_t *src = in + (gsize) (row0 + yy) * in_w * C;
      uint8_t *dst = out + (gsize) yy * out_w * C;
      for (int xx = 0; xx < out_w; xx++)
        {
          const int32_t *k = co->k + (gsize) xx * co->ksize;
          const uint8_t *s = src + (gsize) co->bounds[xx * 2] * C;
          int n = co->bounds[xx * 2 + 1];
          int32_t acc[4] = { HALF_UNIT, HALF_UNIT, HALF_UNIT, HALF_UNIT };
          for (int x = 0; x < n; x++)
            for (int c = 0; c < C; c++)
              acc[c] += s[x * C + c] * k[x];
          for (int c = 0; c < C; c++)
            dst[xx * C + c] = (uint8_t) CLIP8 (acc[c]);
        }
    }
}

/* Input row r (as the coefficients count it) at in + (r - row0) * stride, row_len bytes of
 * it used  ->  out (out_h, row_len); acc is a row_len scratch row. The sums are exact
 * integers, so accumulating a whole row per tap gives Pillow's per-pixel result. */
static void
resample_vertical (const uint8_t *in, gsize stride, int row0, gsize row_len,
                   uint8_t *out, int out_h, const Coeffs *co, int32_t *acc)
{
  for (int yy = 0; yy < out_h; yy++)
    {
      const int32_t *k = co->k + (gsize) yy * co->ksize;
      int ymin = co->bounds[yy * 2] - row0;
      int n = co->bounds[yy * 2 + 1];
      for (gsize i = 0; i < row_len; i++)
        acc[i] = HALF_UNIT;
      for (int y = 0; y < n; y++)
        {
          const uint8_t *src = in + (gsize) (ymin + y) * stride;
          int32_t w = k[y];
          for (gsize i = 0; i < row_len; i++)
            acc[i] += src[i] * w;
        }
      uint8_t *dst = out + (gsize) yy * row_len;
      for (gsize i = 0; i < row_len; i++)
        dst[i] = (uint8_t) CLIP8 (acc[i]);
    }
}

/* A window of the output of a resize: columns x0 .. x0 + w, rows y0 .. y0 + h of the
 * width x height result. Every output pixel depends only on its own coordinates, so the
 * window holds exactly the bytes of the full resize, without its memory. */
typedef struct {
  int width, height;   /* the full resize */
  int x0, y0, w, h;    /* the window computed */
} Window;

/* Pillow's ImagingScaleAffine with a = (in_w / width, 0, 0, 0, in_h / height, 0): source
 * positions accumulate by repeated addition from the first output pixel. */
static VlImage *
resize_nearest (const VlImage *img, const Window *win)
{
  const int C = img->channels;
  VlImage *out = vl_image_new (win->w, win->h, C);   /* zeroed: Pillow's fill */
  double ax = (double) img->width / win->width;
  double ay = (double) img->height / win->height;
  int *xin = g_new (int, win->w);

  double xo = ax * 0.5;
  for (int x = 0; x < win->x0 + win->w; x++)
    {
      if (x >= win->x0)
        {
          int xi = xo < 0.0 ? -1 : (int) xo;
          xin[x - win->x0] = xi < img->width ? xi : -1;
        }
      xo += ax;
    }
  double yo = ay * 0.5;
  for (int y = 0; y < win->y0 + win->h; y++)
    {
      int yi = yo < 0.0 ? -1 : (int) yo;
      if (y >= win->y0 && yi >= 0 && yi < img->height)
        {
          const uint8_t *src = img->pixels + (gsize) yi * img->width * C;
          uint8_t *dst = out->pixels + (gsize) (y - win->y0) * win->w * C;
          for (int x = 0; x < win->w; x++)
            if (xin[x] >= 0)
              memcpy (dst + (gsize) x * C, src + (gsize) xin[x] * C, C);
        }
      yo += ay;
    }
  g_free (xin);
  return out;
}

static VlImage *
image_crop (const VlImage *img, int x0, int y0, int w, int h)
{
  const int C = img->channels;
  VlImage *out = vl_image_new (w, h, C);
  for (int y = 0; y < h; y++)
    memcpy (out->pixels + (gsize) y * w * C,
            img->pixels + ((gsize) (y0 + y) * img->width + x0) * C, (gsize) w * C);
  return out;
}

/* Pillow's RGBA -> RGBa (and LA -> La): color *= alpha / 255, rounded (MULDIV255). */
static void
premultiply_alpha (VlImage *img)
{
  const int C = img->channels;
  gsize n = (gsize) img->width * img->height;
  for (gsize i = 0; i < n; i++)
    {
      uint8_t *p = img->pixels + i * C;
      unsigned a = p[C - 1];
      for (int c = 0; c < C - 1; c++)
        {
          unsigned t = p[c] * a + 128;
          p[c] = (uint8_t) (((t >> 8) + t) >> 8);
        }
    }
}

/* Pillow's RGBa -> RGBA (and La -> LA): color * 255 / alpha, truncated, clamped. */
static void
unpremultiply_alpha (VlImage *img)
{
  const int C = img->channels;
  gsize n = (gsize) img->width * img->height;
  for (gsize i = 0; i < n; i++)
    {
      uint8_t *p = img->pixels + i * C;
      unsigned a = p[C - 1];
      if (a == 0 || a == 255)
        continue;
      for (int c = 0; c < C - 1; c++)
        {
          unsigned v = 255u * p[c] / a;
          p[c] = (uint8_t) (v > 255 ? 255 : v);
        }
    }
}

/* Image.resize without the alpha handling: ImagingResampleInner, over a window. */
static VlImage *
resample (const VlImage *img, const Window *win, VlInterp interp)
{
  const int C = img->channels;
  gboolean need_h = win->width != img->width;
  gboolean need_v = win->height != img->height;

  /* Rows of the input the vertical pass reads (the window's rows without it). */
  Coeffs cv = { 0 };
  int ybox_first = win->y0, ybox_last = win->y0 + win->h;
  if (need_v)
    {
      coeffs_compute (&cv, img->height, win->height, win->y0, win->h, interp);
      ybox_first = cv.bounds[0];
      ybox_last = cv.bounds[win->h * 2 - 2] + cv.bounds[win->h * 2 - 1];
    }

  /* Horizontal pass: the window's columns, over rows ybox_first .. ybox_last. */
  VlImage *tmp = NULL;
  const uint8_t *src = img->pixels + (gsize) win->x0 * C;   /* when !need_h */
  gsize stride = (gsize) img->width * C;
  int row0 = 0;
  if (need_h)
    {
      Coeffs ch = { 0 };
      coeffs_compute (&ch, img->width, win->width, win->x0, win->w, interp);
      tmp = vl_image_new (win->w, ybox_last - ybox_first, C);
      resample_horizontal (img->pixels, img->width, ybox_first, tmp->height, C,
                           tmp->pixels, win->w, &ch);
      coeffs_clear (&ch);
      src = tmp->pixels;
      stride = (gsize) win->w * C;
      row0 = ybox_first;
    }

  VlImage *out;
  if (need_v)
    {
      out = vl_image_new (win->w, win->h, C);
      gsize row_len = (gsize) win->w * C;
      int32_t *acc = g_new (int32_t, row_len);
      resample_vertical (src, stride, row0, row_len, out->pixels, win->h, &cv, acc);
      g_free (acc);
      g_clear_pointer (&tmp, vl_image_free);
      coeffs_clear (&cv);
    }
  else
    {
      /* The horizontal pass made exactly the window's rows. */
      g_assert (tmp != NULL && tmp->height == win->h);
      out = g_steal_pointer (&tmp);
    }
  return out;
}

static VlImage *
resize_window (const VlImage *img, const Window *win, VlInterp interp)
{
  g_assert (win->x0 >= 0 && win->w > 0 && win->x0 + win->w <= win->width);
  g_assert (win->y0 >= 0 && win->h > 0 && win->y0 + win->h <= win->height);

  if (win->width == img->width && win->height == img->height)
    return image_crop (img, win->x0, win->y0, win->w, win->h);
  if (interp == VL_INTERP_NEAREST)
    return resize_nearest (img, win);
  if (img->channels == 2 || img->channels == 4)
    {
      /* Image.resize filters LA and RGBA as premultiplied La and RGBa. */
      g_autoptr(VlImage) pre = image_crop (img, 0, 0, img->width, img->height);
      premultiply_alpha (pre);
      VlImage *out = resample (pre, win, interp);
      unpremultiply_alpha (out);
      return out;
    }
  return resample (img, win, interp);
}

VlImage *
vl_image_resize (const VlImage *img, int width, int height, VlInterp interp)
{
  g_return_val_if_fail (img != NULL && img->pixels != NULL, NULL);
  g_return_val_if_fail (img->channels >= 1 && img->channels <= 4, NULL);
  g_return_val_if_fail (width > 0 && height > 0, NULL);
  g_return_val_if_fail (interp == VL_INTERP_BICUBIC || interp == VL_INTERP_BILINEAR
                        || interp == VL_INTERP_NEAREST, NULL);

  Window win = { width, height, 0, 0, width, height };
  return resize_window (img, &win, interp);
}

/* ------------------------------------------------------------------------------------- */
/* timm evaluation transform                                                              */

/* Python's int(round(d / 2.0)) for d >= 0: halves go to the even neighbour. */
static int
round_half_even_div2 (int d)
{
  int q = d / 2;
  if (d % 2 != 0 && q % 2 != 0)
    q++;
  return q;
}

VlImage *
vl_image_convert (const VlImage *img, int channels)
{
  const int C = img->channels;
  if (C == channels)
    return NULL;
  gsize n = (gsize) img->width * img->height;
  VlImage *out = vl_image_new (img->width, img->height, channels);
  const uint8_t *p = img->pixels;
  uint8_t *q = out->pixels;
  if (channels == 1 && C >= 3)
    for (gsize i = 0; i < n; i++, p += C)
      q[i] = (uint8_t) ((p[0] * 19595u + p[1] * 38470u + p[2] * 7471u + 0x8000u) >> 16);
  else if (channels == 1)           /* LA */
    for (gsize i = 0; i < n; i++, p += C)
      q[i] = p[0];
  else if (C >= 3)                  /* RGBA */
    for (gsize i = 0; i < n; i++, p += C, q += 3)
      memcpy (q, p, 3);
  else                              /* L, LA */
    for (gsize i = 0; i < n; i++, p += C, q += 3)
      memset (q, p[0], 3);
  return out;
}

void
vl_preprocess_eval (const VlImage *img, const VlPreprocess *pp, float *out)
{
  g_return_if_fail (img != NULL && img->pixels != NULL && pp != NULL && out != NULL);
  g_return_if_fail (img->channels >= 1 && img->channels <= 4);
  g_return_if_fail (pp->channels == 1 || pp->channels == 3);
  g_return_if_fail (pp->size > 0 && pp->crop_pct > 0);

  const int size = pp->size;
  const int C = pp->channels;

  /* Work in as few channels as the result needs: a gray image for an RGB model is resized
   * once and replicated at the end (the same bytes as resizing three equal planes). */
  int work_channels = C == 3 && img->channels <= 2 ? 1 : C;
  g_autoptr(VlImage) converted = vl_image_convert (img, work_channels);
  const VlImage *src = converted != NULL ? converted : img;

  /* timm: scale_size = floor(size / crop_pct); torchvision Resize(int): shorter side to
   * scale_size, longer side int(scale_size * long / short). (Clamped only where the
   * sizes would not fit an int anyway.) */
  const double limit = INT_MAX / 8;
  double scale_d = floor (size / pp->crop_pct);
  int scale_size = scale_d < 1.0 ? 1 : scale_d > limit ? (int) limit : (int) scale_d;
  int w = src->width, h = src->height;
  double new_long_d = (double) scale_size * MAX (w, h) / MIN (w, h);
  int new_long = new_long_d > limit ? (int) limit : (int) new_long_d;
  int new_w = w <= h ? scale_size : new_long;
  int new_h = w <= h ? new_long : scale_size;

  /* torchvision CenterCrop: pad with zeros to at least size x size (left/top get the
   * smaller half), then crop at round((dim - size) / 2). Crop pixel (i, j) is resized
   * pixel (i + top, j + left), zero outside; only that window is resized. */
  int pad_left = new_w < size ? (size - new_w) / 2 : 0;
  int pad_top = new_h < size ? (size - new_h) / 2 : 0;
  int left = round_half_even_div2 (MAX (new_w, size) - size) - pad_left;
  int top = round_half_even_div2 (MAX (new_h, size) - size) - pad_top;
  Window win;
  win.width = new_w;
  win.height = new_h;
  win.x0 = MAX (left, 0);
  win.y0 = MAX (top, 0);
  win.w = MIN (left + size, new_w) - win.x0;
  win.h = MIN (top + size, new_h) - win.y0;
  g_autoptr(VlImage) crop = resize_window (src, &win, pp->interp);

  const int WC = crop->channels;
  for (int c = 0; c < C; c++)
    {
      int sc = WC == 1 ? 0 : c;
      float *plane = out + (gsize) c * size * size;   /* (size, size) */
      for (int i = 0; i < size; i++)
        {
          int y = i + top - win.y0;
          float *row = plane + (gsize) i * size;
          const uint8_t *srow = y >= 0 && y < win.h
                                ? crop->pixels + (gsize) y * win.w * WC : NULL;
          for (int j = 0; j < size; j++)
            {
              int x = j + left - win.x0;
              float px = 0.0f;
              if (srow != NULL && x >= 0 && x < win.w)
                px = (float) srow[(gsize) x * WC + sc] / 255.0f;
              /* ToTensor then Normalize, in float32: (px / 255 - mean) / std */
              row[j] = (px - pp->mean[c]) / pp->std[c];
            }
        }
    }
}

/* ------------------------------------------------------------------ index masks (libpng) */

typedef struct {
  const char *path;
  char        msg[256];
} PngErr;

static void
png_err_fn (png_structp png, png_const_charp msg)
{
  PngErr *e = png_get_error_ptr (png);
  g_strlcpy (e->msg, msg, sizeof e->msg);
  png_longjmp (png, 1);
}

static void
png_warn_fn (png_structp png, png_const_charp msg)
{
}

/* Reads the PNG at path: the size always; the pixels (as indices) when out != NULL. */
static gboolean
mask_read (const char *path, int *width, int *height, uint8_t **out, GError **error)
{
  FILE *f = fopen (path, "rb");
  if (f == NULL)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_IO, "%s: cannot read: %s", path, g_strerror (errno));
      return FALSE;
    }
  uint8_t sig[8];
  if (fread (sig, 1, 8, f) != 8 || png_sig_cmp (sig, 0, 8) != 0)
    {
      fclose (f);
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: not a PNG file (a mask must be an "
                   "8-bit index PNG, palette or gray)", path);
      return FALSE;
    }
  PngErr e = { path, "" };
  png_structp png = png_create_read_struct (PNG_LIBPNG_VER_STRING, &e, png_err_fn, png_warn_fn);
  png_infop info = png != NULL ? png_create_info_struct (png) : NULL;
  uint8_t *volatile pixels = NULL;
  png_bytep *volatile rows = NULL;
  if (png == NULL || info == NULL || setjmp (png_jmpbuf (png)))
    {
      png_destroy_read_struct (&png, &info, NULL);
      fclose (f);
      g_free (pixels);
      g_free (rows);
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: cannot decode PNG: %s", path,
                   e.msg[0] ? e.msg : "out of memory");
      return FALSE;
    }
  png_init_io (png, f);
  png_set_sig_bytes (png, 8);
  png_read_info (png, info);
  png_uint_32 w = png_get_image_width (png, info), h = png_get_image_height (png, info);
  int depth = png_get_bit_depth (png, info), type = png_get_color_type (png, info);
  const char *bad = NULL;
  if (type != PNG_COLOR_TYPE_PALETTE && type != PNG_COLOR_TYPE_GRAY)
    bad = type == PNG_COLOR_TYPE_RGB || type == PNG_COLOR_TYPE_RGB_ALPHA
          ? "colour PNG" : "gray PNG with alpha";
  else if (depth > 8)
    bad = "16-bit PNG";
  else if (w == 0 || h == 0 || (guint64) w * h > VL_IMAGE_MAX_PIXELS)
    bad = "PNG of no pixels or above the pixel limit";
  if (bad != NULL)
    {
      png_destroy_read_struct (&png, &info, NULL);
      fclose (f);
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: a %s (%ux%u, bit depth %d), not an "
                   "8-bit index mask (palette or gray)", path, bad, (unsigned) w, (unsigned) h,
                   depth);
      return FALSE;
    }
  *width = (int) w;
  *height = (int) h;
  if (out != NULL)
    {
      if (depth < 8)
        png_set_packing (png);   /* one byte per pixel, the index unscaled */
      png_set_interlace_handling (png);   /* Adam7 rows come out whole from png_read_image */
      png_read_update_info (png, info);
      pixels = g_malloc ((gsize) w * h);
      rows = g_new (png_bytep, h);
      for (png_uint_32 y = 0; y < h; y++)
        rows[y] = pixels + (gsize) y * w;
      png_read_image (png, rows);
      png_read_end (png, NULL);
      *out = pixels;
      pixels = NULL;
    }
  png_destroy_read_struct (&png, &info, NULL);
  fclose (f);
  g_free (rows);
  return TRUE;
}

uint8_t *
vl_mask_load (const char *path, int *width, int *height, GError **error)
{
  uint8_t *out = NULL;
  if (!mask_read (path, width, height, &out, error))
    return NULL;
  return out;
}

gboolean
vl_mask_size (const char *path, int *width, int *height, GError **error)
{
  return mask_read (path, width, height, NULL, error);
}

/* Writes rows of `channels` bytes (palette: an index PNG) to path atomically. */
static gboolean
png_write_atomic (const char *path, const uint8_t *pixels, int width, int height, int type,
                  const uint8_t *palette, int n_colors, GError **error)
{
  g_autofree char *tmp = g_strdup_printf ("%s.tmp-%d", path, (int) getpid ());
  FILE *f = fopen (tmp, "wb");
  if (f == NULL)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_IO, "%s: cannot write: %s", path,
                   g_strerror (errno));
      return FALSE;
    }
  PngErr e = { path, "" };
  png_structp png = png_create_write_struct (PNG_LIBPNG_VER_STRING, &e, png_err_fn,
                                             png_warn_fn);
  png_infop info = png != NULL ? png_create_info_struct (png) : NULL;
  if (png == NULL || info == NULL || setjmp (png_jmpbuf (png)))
    {
      png_destroy_write_struct (&png, &info);
      fclose (f);
      g_unlink (tmp);
      g_set_error (error, VL_ERROR, VL_ERROR_IO, "%s: cannot write PNG: %s", path,
                   e.msg[0] ? e.msg : "out of memory");
      return FALSE;
    }
  png_init_io (png, f);
  png_set_IHDR (png, info, width, height, 8, type, PNG_INTERLACE_NONE,
                PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  int channels = type == PNG_COLOR_TYPE_RGB ? 3 : 1;
  if (type == PNG_COLOR_TYPE_PALETTE)
    {
      png_color pal[256];
      for (int i = 0; i < n_colors; i++)
        {
          pal[i].red = palette[3 * i];
          pal[i].green = palette[3 * i + 1];
          pal[i].blue = palette[3 * i + 2];
        }
      png_set_PLTE (png, info, pal, n_colors);
    }
  png_write_info (png, info);
  for (int y = 0; y < height; y++)
    png_write_row (png, (png_const_bytep) (pixels + (gsize) y * width * channels));
  png_write_end (png, NULL);
  png_destroy_write_struct (&png, &info);
  if (fclose (f) != 0 || g_rename (tmp, path) != 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_IO, "%s: cannot write: %s", path,
                   g_strerror (errno));
      g_unlink (tmp);
      return FALSE;
    }
  return TRUE;
}

gboolean
vl_mask_save (const char *path, const uint8_t *mask, int width, int height,
              const uint8_t *palette, int n_colors, GError **error)
{
  g_return_val_if_fail (n_colors >= 1 && n_colors <= 256, FALSE);
  return png_write_atomic (path, mask, width, height, PNG_COLOR_TYPE_PALETTE, palette, n_colors,
                           error);
}

gboolean
vl_image_save_png (const char *path, const VlImage *img, GError **error)
{
  g_return_val_if_fail (img->channels == 1 || img->channels == 3, FALSE);
  return png_write_atomic (path, img->pixels, img->width, img->height,
                           img->channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY, NULL,
                           0, error);
}
