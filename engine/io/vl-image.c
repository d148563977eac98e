/* vl-image.c: decoding (libjpeg-turbo, libpng, libwebp, libtiff, stb_image), Pillow-exact
 * resampling and timm's eval preprocessing.
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
 * Gray models: the decoders' 1-channel conversion (stb_image's 77 R + 150 G + 29 B) >> 8 is
 * not PIL's convert('L'); load with 0 or 3 channels and let vl_preprocess_eval convert.
 *
 * Weights and sums are plain double arithmetic; on a target with fused multiply-add and
 * contraction enabled a weight could round differently (x86-64 baseline has no FMA). */
#include "vl-image.h"
#include "vl-atomic.h"
#include "vl-error.h"
#include "vl-stb.h"
#include "vl-sync.h"

#include <limits.h>
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <jpeglib.h>
#include <jerror.h>
#include <libexif/exif-data.h>
#include <png.h>
#include <tiffio.h>
#include <webp/decode.h>
#include <webp/demux.h>
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
/* Decoding                                                                               *
 *
 * JPEG through libjpeg-turbo and PNG through libpng (both fuzzed continuously upstream), BMP,
 * GIF, TGA, PNM, HDR and PSD through vitlab's own build of stb_image (vl-stb.c, no JPEG, PNG or
 * PIC in it). Each decoder first reads the header only; the image's side lengths, its pixel count and what
 * decoding it would allocate (VL_IMAGE_MAX_BYTES: 16-bit samples, HDR's floats, GIF's frame
 * buffers and libjpeg's progressive coefficients counted) are checked, and for the formats that
 * can declare pixels they do not carry (TGA, BMP, PNM, HDR; PNG through deflate's largest
 * ratio, 1032:1; PSD through PackBits' 64:1) the file must be at least as large as the smallest
 * encoding of that many pixels, before any pixel is decoded. Pixels go into a
 * buffer from g_try_malloc, so that an allocation the machine cannot make is an error.
 *
 * libjpeg runs with the settings Pillow leaves it at (accurate integer IDCT, fancy
 * upsampling), so that decoded pixels are Pillow's. Conversions to another channel count follow
 * stb_image's (gray replicated, alpha 255 added or dropped, luma (77 R + 150 G + 29 B) >> 8),
 * as before. */

#define JPEG_MAX_SCANS     1000        /* progressive JPEGs with more scans are refused */
#define HEADER_PREFIX      (64 << 10)  /* bytes read to check a stb format's header */

typedef enum {
  FORMAT_JPEG,
  FORMAT_PNG,
  FORMAT_GIF,
  FORMAT_BMP,
  FORMAT_PNM,
  FORMAT_HDR,
  FORMAT_PSD,
  FORMAT_WEBP,
  FORMAT_TIFF,
  FORMAT_TGA,     /* no signature: what is left */
} Format;

static const char *const format_names[] = {
  "JPEG", "PNG", "GIF", "BMP", "PNM", "HDR", "PSD", "WebP", "TIFF", "TGA",
};

static Format
sniff_format (const uint8_t *d, size_t n)
{
  static const uint8_t png_sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
  if (n >= 3 && d[0] == 0xff && d[1] == 0xd8 && d[2] == 0xff)
    return FORMAT_JPEG;
  if (n >= 8 && memcmp (d, png_sig, 8) == 0)
    return FORMAT_PNG;
  if (n >= 4 && memcmp (d, "GIF8", 4) == 0)
    return FORMAT_GIF;
  if (n >= 2 && d[0] == 'B' && d[1] == 'M')
    return FORMAT_BMP;
  if (n >= 2 && d[0] == 'P' && (d[1] == '5' || d[1] == '6'))
    return FORMAT_PNM;
  if ((n >= 11 && memcmp (d, "#?RADIANCE\n", 11) == 0) ||
      (n >= 7 && memcmp (d, "#?RGBE\n", 7) == 0))
    return FORMAT_HDR;
  if (n >= 4 && memcmp (d, "8BPS", 4) == 0)
    return FORMAT_PSD;
  if (n >= 12 && memcmp (d, "RIFF", 4) == 0 && memcmp (d + 8, "WEBP", 4) == 0)
    return FORMAT_WEBP;
  if (n >= 4 && (memcmp (d, "II*\0", 4) == 0 || memcmp (d, "MM\0*", 4) == 0 ||
                 memcmp (d, "II+\0", 4) == 0 || memcmp (d, "MM\0+", 4) == 0))
    return FORMAT_TIFF;
  return FORMAT_TGA;
}

/* Where a header is read from: the whole file in memory (decoding), or an open file with a
 * prefix of it in memory (a dataset scan's check). */
typedef struct {
  const char    *what;       /* the file's name, for messages */
  const uint8_t *data;
  size_t         size;       /* bytes at data */
  FILE          *f;          /* JPEG and PNG headers are read from it when set */
  guint64        file_size;
  Format         format;
} Input;

typedef struct {
  int     width, height;
  int     channels;     /* what the decoder produces (1 to 4) */
  guint64 cost;         /* bytes decoding allocates, before the conversion to other channels */
  guint64 min_file;     /* smallest file that can hold the pixels declared; 0: no such rule */
  int     orientation;  /* EXIF orientation, 1 (as stored) to 8 */
} Header;

static inline guint64
n_pixels (const Header *h)
{
  return (guint64) h->width * (guint64) h->height;
}

/* Everything decided before a pixel is decoded: sides, pixel count, bytes, file size. */
static gboolean
check_header (const Input *in, const Header *h, int channels, GError **error)
{
  if (h->width <= 0 || h->height <= 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: image has no pixels (%dx%d)",
                   in->what, h->width, h->height);
      return FALSE;
    }
  guint64 n = n_pixels (h);
  if (n > VL_IMAGE_MAX_PIXELS)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                   "%s: image is %dx%d = %.6g megapixels, above the %d megapixel limit",
                   in->what, h->width, h->height, (double) n / 1e6,
                   VL_IMAGE_MAX_PIXELS / 1000000);
      return FALSE;
    }
  if (h->min_file > in->file_size)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                   "%s: the %s header declares a %dx%d image, which takes at least %"
                   G_GUINT64_FORMAT " bytes, but the file has %" G_GUINT64_FORMAT,
                   in->what, format_names[in->format], h->width, h->height, h->min_file,
                   in->file_size);
      return FALSE;
    }
  int out_channels = channels != 0 ? channels : h->channels;
  guint64 cost = h->cost + (out_channels != h->channels ? n * out_channels : 0);
  if (cost > VL_IMAGE_MAX_BYTES)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                   "%s: decoding the %dx%d %s image takes %.0f MB, above the %d MB limit",
                   in->what, h->width, h->height, format_names[in->format], (double) cost / 1e6,
                   (int) (VL_IMAGE_MAX_BYTES >> 20));
      return FALSE;
    }
  return TRUE;
}

static uint8_t *
try_alloc_pixels (const Input *in, int width, int height, int channels, GError **error)
{
  gsize bytes = (gsize) width * (gsize) height * (gsize) channels;
  uint8_t *p = g_try_malloc (bytes);
  if (p == NULL)
    g_set_error (error, VL_ERROR, VL_ERROR_IO,
                 "%s: cannot allocate %.0f MB for the %dx%d image", in->what, bytes / 1e6,
                 width, height);
  return p;
}

/* stb_image's conversion between channel counts (stbi__convert_format), into a new buffer. */
static uint8_t *
convert_channels (const Input *in, const uint8_t *src, int width, int height, int from, int to,
                  GError **error)
{
  uint8_t *dst = try_alloc_pixels (in, width, height, to, error);
  if (dst == NULL)
    return NULL;
  gsize n = (gsize) width * height;
  for (gsize i = 0; i < n; i++)
    {
      const uint8_t *s = src + i * from;
      uint8_t *d = dst + i * to;
      uint8_t y = from >= 3 ? (uint8_t) ((s[0] * 77 + s[1] * 150 + s[2] * 29) >> 8) : s[0];
      uint8_t a = from == 2 ? s[1] : from == 4 ? s[3] : 255;
      switch (to)
        {
        case 1: d[0] = y; break;
        case 2: d[0] = y; d[1] = a; break;
        case 3:
        case 4:
          if (from >= 3)
            memcpy (d, s, 3);
          else
            d[0] = d[1] = d[2] = s[0];
          if (to == 4)
            d[3] = a;
          break;
        default:
          g_assert_not_reached ();
        }
    }
  return dst;
}

static VlImage *
image_take (uint8_t *pixels, int width, int height, int channels)
{
  VlImage *img = g_new0 (VlImage, 1);
  img->width = width;
  img->height = height;
  img->channels = channels;
  img->pixels = pixels;
  return img;
}

/* Pixels decoded with `from` channels become the image, converted when channels asks for
 * another count. */
static VlImage *
finish_image (const Input *in, uint8_t *pixels, int width, int height, int from, int channels,
              GError **error)
{
  if (channels == 0 || channels == from)
    return image_take (pixels, width, height, from);
  uint8_t *converted = convert_channels (in, pixels, width, height, from, channels, error);
  g_free (pixels);
  return converted != NULL ? image_take (converted, width, height, channels) : NULL;
}

/* ---- EXIF orientation (libexif) ---- */

/* The Orientation tag (0x0112) of IFD 0 in an EXIF block ("Exif\0\0" and a TIFF structure: a
 * JPEG's APP1 segment), as Pillow's ImageOps.exif_transpose reads it; 1 when there is none or
 * its value is not 1 to 8. */
static int
exif_orientation (const uint8_t *data, size_t n)
{
  if (n < 6 || n > G_MAXUINT || memcmp (data, "Exif\0\0", 6) != 0)
    return 1;
  ExifData *ed = exif_data_new ();
  if (ed == NULL)
    return 1;
  /* read what is there; do not add the tags the specification requires */
  exif_data_unset_option (ed, EXIF_DATA_OPTION_FOLLOW_SPECIFICATION);
  exif_data_load_data (ed, data, (unsigned int) n);
  int o = 1;
  ExifEntry *e = exif_content_get_entry (ed->ifd[EXIF_IFD_0], EXIF_TAG_ORIENTATION);
  if (e != NULL && e->format == EXIF_FORMAT_SHORT && e->components >= 1 && e->size >= 2 &&
      e->data != NULL)
    {
      const int v = exif_get_short (e->data, exif_data_get_byte_order (ed));
      if (v >= 1 && v <= 8)
        o = v;
    }
  exif_data_unref (ed);
  return o;
}

/* The same for a bare TIFF structure (PNG's eXIf chunk, WebP's EXIF chunk), or one that
 * already starts with "Exif\0\0" as some WebP writers store it. */
static int
exif_orientation_tiff (const uint8_t *data, size_t n)
{
  if (n >= 6 && memcmp (data, "Exif\0\0", 6) == 0)
    return exif_orientation (data, n);
  if (n == 0 || n >= (1u << 24))
    return 1;
  g_autofree uint8_t *block = g_malloc (n + 6);
  memcpy (block, "Exif\0\0", 6);
  memcpy (block + 6, data, n);
  return exif_orientation (block, n + 6);
}

/* The geometry of each orientation: the stored pixel (xi, yi) shown at upright (x, y) is
 * xi = a[0] x + a[1] y + a[2] (W - 1), yi = a[3] x + a[4] y + a[5] (H - 1), W x H stored;
 * 5 to 8 swap the sides. As Pillow's exif_transpose: 2 FLIP_LEFT_RIGHT, 3 ROTATE_180,
 * 4 FLIP_TOP_BOTTOM, 5 TRANSPOSE, 6 ROTATE_270, 7 TRANSVERSE, 8 ROTATE_90. */
static const int orient_map[9][6] = {
  { 1, 0, 0, 0, 1, 0 },     /* (unused) */
  { 1, 0, 0, 0, 1, 0 },
  { -1, 0, 1, 0, 1, 0 },
  { -1, 0, 1, 0, -1, 1 },
  { 1, 0, 0, 0, -1, 1 },
  { 0, 1, 0, 1, 0, 0 },
  { 0, 1, 0, -1, 0, 1 },
  { 0, -1, 1, -1, 0, 1 },
  { 0, -1, 1, 1, 0, 0 },
};

uint8_t *
vl_orient_pixels (const uint8_t *src, int width, int height, int channels, int orientation,
                  int *out_width, int *out_height)
{
  g_return_val_if_fail (src != NULL && width > 0 && height > 0 && channels > 0, NULL);
  if (orientation < 1 || orientation > 8)
    orientation = 1;
  const int *a = orient_map[orientation];
  const gboolean swap = orientation >= 5;
  const int ow = swap ? height : width, oh = swap ? width : height;
  uint8_t *dst = g_try_malloc ((gsize) width * height * channels);
  if (dst == NULL)
    return NULL;
  for (int y = 0; y < oh; y++)
    for (int x = 0; x < ow; x++)
      {
        const int xi = a[0] * x + a[1] * y + a[2] * (width - 1);
        const int yi = a[3] * x + a[4] * y + a[5] * (height - 1);
        uint8_t *d = dst + ((gsize) y * ow + x) * channels;
        const uint8_t *s = src + ((gsize) yi * width + xi) * channels;
        for (int c = 0; c < channels; c++)   /* a few bytes: no call per pixel */
          d[c] = s[c];
      }
  if (out_width != NULL)
    *out_width = ow;
  if (out_height != NULL)
    *out_height = oh;
  return dst;
}

void
vl_orient_box (float box[4], int width, int height, int orientation)
{
  if (orientation < 2 || orientation > 8)
    return;
  const int *a = orient_map[orientation];
  /* the inverse of the map (a signed permutation: its transpose), on edges, not pixel centres:
   * x = a[0] (xi - c0) + a[3] (yi - c1), y = a[1] (xi - c0) + a[4] (yi - c1) */
  const float c0 = (float) (a[2] * width), c1 = (float) (a[5] * height);
  float x[2], y[2];
  for (int k = 0; k < 2; k++)
    {
      const float xi = box[2 * k] - c0, yi = box[2 * k + 1] - c1;
      x[k] = (float) a[0] * xi + (float) a[3] * yi;
      y[k] = (float) a[1] * xi + (float) a[4] * yi;
    }
  box[0] = MIN (x[0], x[1]);
  box[1] = MIN (y[0], y[1]);
  box[2] = MAX (x[0], x[1]);
  box[3] = MAX (y[0], y[1]);
}

/* ---- JPEG (libjpeg-turbo) ---- */

typedef struct {
  struct jpeg_error_mgr   pub;
  struct jpeg_progress_mgr progress;
  jmp_buf                 jump;
  char                    message[JMSG_LENGTH_MAX + 64];
} JpegGuard;

static void
jpeg_fail (j_common_ptr cinfo)
{
  JpegGuard *g = (JpegGuard *) cinfo->err;
  g->pub.format_message (cinfo, g->message);
  longjmp (g->jump, 1);
}

/* Warnings are ignored as Pillow ignores them, except the end of the data arriving before the
 * end of the image: Pillow refuses a truncated image, and libjpeg would pad it with gray. */
static void
jpeg_message (j_common_ptr cinfo, int level)
{
  JpegGuard *g = (JpegGuard *) cinfo->err;
  if (level < 0 && g->pub.msg_code == JWRN_JPEG_EOF)
    jpeg_fail (cinfo);
}

static void
jpeg_progress (j_common_ptr cinfo)
{
  JpegGuard *g = (JpegGuard *) cinfo->err;
  j_decompress_ptr d = (j_decompress_ptr) cinfo;
  if (d->input_scan_number > JPEG_MAX_SCANS)
    {
      g_snprintf (g->message, sizeof g->message, "more than %d progressive scans",
                  JPEG_MAX_SCANS);
      longjmp (g->jump, 1);
    }
}

/* Pillow's CMYK -> RGB: (255 - C) (255 - K) / 255 with MULDIV255's rounding; Adobe's JPEGs
 * store the inks inverted. */
static void
cmyk_to_rgb (uint8_t *row, int width, gboolean inverted)
{
  for (int x = 0; x < width; x++)
    {
      const uint8_t *s = row + x * 4;
      uint8_t *d = row + x * 3;   /* in place: d never passes s */
      unsigned k = inverted ? s[3] : 255u - s[3];   /* 255 - K */
      uint8_t c[3];
      for (int i = 0; i < 3; i++)
        {
          unsigned ink = inverted ? 255u - s[i] : s[i];
          unsigned t = ink * k + 128;
          unsigned muldiv = ((t >> 8) + t) >> 8;
          c[i] = (uint8_t) (k - muldiv);
        }
      memcpy (d, c, 3);
    }
}

static VlImage *
jpeg_decode (const Input *in, int channels, gboolean decode, Header *hdr, GError **error)
{
  struct jpeg_decompress_struct cinfo;
  JpegGuard guard;
  uint8_t *volatile pixels = NULL;

  memset (&cinfo, 0, sizeof cinfo);
  cinfo.err = jpeg_std_error (&guard.pub);
  guard.pub.error_exit = jpeg_fail;
  guard.pub.emit_message = jpeg_message;
  guard.message[0] = '\0';
  if (setjmp (guard.jump))
    {
      g_free (pixels);
      jpeg_destroy_decompress (&cinfo);
      if (error != NULL && *error == NULL)
        g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: cannot decode image: %s", in->what,
                     guard.message);
      return NULL;
    }
  jpeg_create_decompress (&cinfo);
  guard.progress.progress_monitor = jpeg_progress;
  cinfo.progress = &guard.progress;
  if (in->f != NULL)
    jpeg_stdio_src (&cinfo, in->f);
  else
    jpeg_mem_src (&cinfo, in->data, (unsigned long) in->size);
  jpeg_save_markers (&cinfo, JPEG_APP0 + 1, 0xffff);   /* EXIF */
  jpeg_read_header (&cinfo, TRUE);
  hdr->orientation = 1;
  for (jpeg_saved_marker_ptr m = cinfo.marker_list; m != NULL; m = m->next)
    if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 && memcmp (m->data, "Exif\0\0", 6) == 0)
      {
        hdr->orientation = exif_orientation (m->data, m->data_length);
        break;
      }

  int file_channels = cinfo.num_components;
  gboolean cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
  if (cinfo.jpeg_color_space == JCS_GRAYSCALE)
    cinfo.out_color_space = JCS_GRAYSCALE;
  else if (cmyk)
    cinfo.out_color_space = JCS_CMYK;
  else
    cinfo.out_color_space = JCS_RGB;
  cinfo.dct_method = JDCT_ISLOW;
  cinfo.do_fancy_upsampling = TRUE;
  cinfo.do_block_smoothing = TRUE;

  hdr->width = (int) cinfo.image_width;
  hdr->height = (int) cinfo.image_height;
  hdr->channels = cinfo.out_color_space == JCS_GRAYSCALE ? 1 : 3;
  guint64 n = n_pixels (hdr);
  /* the output (CMYK decoded 4 wide, then 3), and a progressive image's coefficients */
  hdr->cost = n * (cmyk ? 4 : hdr->channels)
              + (jpeg_has_multiple_scans (&cinfo) ? n * 2 * (guint64) file_channels : 0);
  hdr->min_file = 0;
  if (!check_header (in, hdr, channels, error))
    longjmp (guard.jump, 1);
  if (!decode)
    {
      jpeg_destroy_decompress (&cinfo);
      return NULL;
    }

  /* libjpeg's own large arrays stay within the budget too */
  cinfo.mem->max_memory_to_use = (long) MIN (VL_IMAGE_MAX_BYTES, (guint64) LONG_MAX);
  jpeg_start_decompress (&cinfo);
  const int W = (int) cinfo.output_width, H = (int) cinfo.output_height;
  const int comps = cinfo.output_components;
  if (W != hdr->width || H != hdr->height || comps != (cmyk ? 4 : hdr->channels))
    {
      g_snprintf (guard.message, sizeof guard.message,
                  "decoder output %dx%d with %d components, not what the header says", W, H,
                  comps);
      longjmp (guard.jump, 1);
    }
  pixels = try_alloc_pixels (in, W, H, comps, error);
  if (pixels == NULL)
    longjmp (guard.jump, 1);
  const gsize stride = (gsize) W * comps, out_stride = (gsize) W * hdr->channels;
  while (cinfo.output_scanline < cinfo.output_height)
    {
      JSAMPROW row = pixels + (gsize) cinfo.output_scanline * stride;
      jpeg_read_scanlines (&cinfo, &row, 1);
    }
  if (cmyk)
    for (int y = 0; y < H; y++)
      {
        /* compacting 4 -> 3 row by row, front to back, in place */
        uint8_t *row = pixels + (gsize) y * stride;
        cmyk_to_rgb (row, W, cinfo.saw_Adobe_marker);
        memmove (pixels + (gsize) y * out_stride, row, out_stride);
      }
  jpeg_finish_decompress (&cinfo);
  jpeg_destroy_decompress (&cinfo);
  uint8_t *done = pixels;
  pixels = NULL;
  return finish_image (in, done, W, H, hdr->channels, channels, error);
}

/* ---- PNG (libpng) ---- */

typedef struct {
  const uint8_t *data;
  size_t         size, pos;
  char           message[256];
} PngSource;

static void
png_fail (png_structp png, png_const_charp msg)
{
  PngSource *src = png_get_error_ptr (png);
  g_strlcpy (src->message, msg, sizeof src->message);
  png_longjmp (png, 1);
}

static void
png_warn (png_structp png, png_const_charp msg)
{
}

static void
png_read_memory (png_structp png, png_bytep out, size_t n)
{
  PngSource *src = png_get_io_ptr (png);
  if (n > src->size - src->pos)
    png_error (png, "unexpected end of file (truncated?)");
  memcpy (out, src->data + src->pos, n);
  src->pos += n;
}

static VlImage *
png_decode (const Input *in, int channels, gboolean decode, Header *hdr, GError **error)
{
  PngSource src = { in->data, in->size, 0, "" };
  png_structp png = png_create_read_struct (PNG_LIBPNG_VER_STRING, &src, png_fail, png_warn);
  png_infop info = png != NULL ? png_create_info_struct (png) : NULL;
  uint8_t *volatile pixels = NULL;
  png_bytep *volatile rows = NULL;
  if (info == NULL)
    {
      png_destroy_read_struct (&png, NULL, NULL);
      g_set_error (error, VL_ERROR, VL_ERROR_IO, "%s: cannot start the PNG decoder", in->what);
      return NULL;
    }
  if (setjmp (png_jmpbuf (png)))
    {
      g_free (pixels);
      g_free (rows);
      png_destroy_read_struct (&png, &info, NULL);
      if (error != NULL && *error == NULL)
        g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: cannot decode image: %s", in->what,
                     src.message);
      return NULL;
    }
  /* limits before anything is read: sides, and ancillary chunks (text, ICC profiles) */
  png_set_user_limits (png, VL_IMAGE_MAX_SIDE, VL_IMAGE_MAX_SIDE);
  png_set_chunk_cache_max (png, 1000);
  png_set_chunk_malloc_max (png, 16 << 20);
  if (in->f != NULL)
    png_init_io (png, in->f);
  else
    png_set_read_fn (png, &src, png_read_memory);
  png_read_info (png, info);

  hdr->orientation = 1;
#ifdef PNG_eXIf_SUPPORTED
  png_uint_32 n_exif = 0;
  png_bytep exif = NULL;
  if (png_get_eXIf_1 (png, info, &n_exif, &exif) != 0 && exif != NULL)
    hdr->orientation = exif_orientation_tiff (exif, n_exif);   /* the TIFF structure alone */
#endif

  png_uint_32 w = 0, h = 0;
  int depth = 0, color = 0, interlace = 0;
  png_get_IHDR (png, info, &w, &h, &depth, &color, &interlace, NULL, NULL);
  /* deflate packs at most 1032 bytes into one: the rows (a filter byte each) of the image
   * declared cannot come from a smaller file */
  guint64 row_bytes = ((guint64) w * depth * png_get_channels (png, info) + 7) / 8;
  guint64 min_file = 8 + 25 + 12 + (guint64) h * (1 + row_bytes) / 1032;
  /* 8-bit gray, gray + alpha, RGB or RGBA, as stb_image made them: palettes expanded, tRNS as
   * alpha, low bit depths scaled, 16-bit samples to their high byte */
  if (color == PNG_COLOR_TYPE_PALETTE)
    png_set_palette_to_rgb (png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8)
    png_set_expand_gray_1_2_4_to_8 (png);
  if (png_get_valid (png, info, PNG_INFO_tRNS))
    png_set_tRNS_to_alpha (png);
  if (depth == 16)
    png_set_strip_16 (png);
  int passes = png_set_interlace_handling (png);
  png_read_update_info (png, info);

  hdr->width = (int) w;
  hdr->height = (int) h;
  hdr->channels = png_get_channels (png, info);
  hdr->cost = n_pixels (hdr) * (guint64) hdr->channels;   /* rows decode into the output */
  hdr->min_file = min_file;
  if (hdr->channels < 1 || hdr->channels > 4 || png_get_bit_depth (png, info) != 8
      || png_get_rowbytes (png, info) != (size_t) w * hdr->channels)
    {
      g_snprintf (src.message, sizeof src.message, "unsupported PNG layout (%d channels)",
                  hdr->channels);
      png_longjmp (png, 1);
    }
  if (!check_header (in, hdr, channels, error))
    png_longjmp (png, 1);
  if (!decode)
    {
      png_destroy_read_struct (&png, &info, NULL);
      return NULL;
    }
  pixels = try_alloc_pixels (in, (int) w, (int) h, hdr->channels, error);
  rows = pixels != NULL ? g_try_new (png_bytep, h) : NULL;
  if (rows == NULL)
    {
      if (error != NULL && *error == NULL)
        g_set_error (error, VL_ERROR, VL_ERROR_IO, "%s: cannot allocate the row table", in->what);
      png_longjmp (png, 1);
    }
  for (png_uint_32 y = 0; y < h; y++)
    rows[y] = pixels + (gsize) y * w * hdr->channels;
  for (int pass = 0; pass < passes; pass++)
    png_read_rows (png, rows, NULL, h);
  png_read_end (png, NULL);
  png_destroy_read_struct (&png, &info, NULL);
  g_free (rows);
  uint8_t *done = pixels;
  return finish_image (in, done, (int) w, (int) h, hdr->channels, channels, error);
}

/* ---- WebP (libwebp) ---- */

/* Whether a WebP file's extended header (VP8X) says it carries EXIF (a chunk that comes after
 * the image data, so a header check needs the whole file). */
static gboolean
webp_has_exif (const uint8_t *d, size_t n)
{
  return n >= 21 && memcmp (d + 12, "VP8X", 4) == 0 && (d[20] & 0x08) != 0;
}

/* As Pillow 9.4 decodes WebP (its WebPAnimDecoder, straight RGBA, the first frame of an
 * animation), so that pixels are Pillow's: RGB, or RGBA when the file has alpha. */
static VlImage *
webp_decode (const Input *in, int channels, gboolean decode, Header *hdr, GError **error)
{
  WebPBitstreamFeatures f;
  if (WebPGetFeatures (in->data, in->size, &f) != VP8_STATUS_OK)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: cannot decode image: not a valid WebP "
                   "header", in->what);
      return NULL;
    }
  hdr->width = f.width;
  hdr->height = f.height;
  hdr->channels = f.has_alpha ? 4 : 3;
  /* the decoder's canvas and its copy of the previous frame (RGBA each), then ours */
  hdr->cost = n_pixels (hdr) * (8 + (guint64) hdr->channels);
  hdr->min_file = 0;
  hdr->orientation = 1;
  const WebPData data = { in->data, in->size };
  if (webp_has_exif (in->data, in->size))
    {
      WebPDemuxer *demux = WebPDemux (&data);
      WebPChunkIterator it;
      if (demux != NULL && WebPDemuxGetChunk (demux, "EXIF", 1, &it))
        {
          hdr->orientation = exif_orientation_tiff (it.chunk.bytes, it.chunk.size);
          WebPDemuxReleaseChunkIterator (&it);
        }
      WebPDemuxDelete (demux);
    }
  if (!check_header (in, hdr, channels, error) || !decode)
    return NULL;

  WebPAnimDecoderOptions opt;
  if (!WebPAnimDecoderOptionsInit (&opt))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_IO, "%s: cannot start the WebP decoder", in->what);
      return NULL;
    }
  opt.color_mode = MODE_RGBA;
  opt.use_threads = 0;
  WebPAnimDecoder *dec = WebPAnimDecoderNew (&data, &opt);
  uint8_t *frame = NULL;
  int timestamp = 0;
  WebPAnimInfo info;
  if (dec == NULL || !WebPAnimDecoderGetInfo (dec, &info) ||
      (int) info.canvas_width != hdr->width || (int) info.canvas_height != hdr->height ||
      !WebPAnimDecoderGetNext (dec, &frame, &timestamp) || frame == NULL)
    {
      WebPAnimDecoderDelete (dec);
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: cannot decode image: the WebP data is "
                   "truncated or corrupt", in->what);
      return NULL;
    }
  const int W = hdr->width, H = hdr->height, C = hdr->channels;
  uint8_t *pixels = try_alloc_pixels (in, W, H, C, error);
  if (pixels == NULL)
    {
      WebPAnimDecoderDelete (dec);
      return NULL;
    }
  const gsize n = (gsize) W * H;
  if (C == 4)
    memcpy (pixels, frame, n * 4);
  else
    for (gsize p = 0; p < n; p++)
      memcpy (pixels + p * 3, frame + p * 4, 3);
  WebPAnimDecoderDelete (dec);
  return finish_image (in, pixels, W, H, C, channels, error);
}

/* ---- TIFF (libtiff) ---- */

/* libtiff reads through these, from the file (a header check) or the bytes in memory. */
typedef struct {
  const Input *in;
  guint64      pos;
  char         message[256];   /* libtiff's first error */
} TiffSource;

static guint64
tiff_source_size (const TiffSource *s)
{
  return s->in->f != NULL ? s->in->file_size : s->in->size;
}

static tmsize_t
tiff_read (thandle_t h, void *buf, tmsize_t n)
{
  TiffSource *s = h;
  if (n < 0)
    return -1;
  if (s->in->f != NULL)
    {
      if (s->pos > (guint64) G_MAXINT64 || fseeko (s->in->f, (off_t) s->pos, SEEK_SET) != 0)
        return -1;
      size_t got = fread (buf, 1, (size_t) n, s->in->f);
      s->pos += got;
      return (tmsize_t) got;
    }
  if (s->pos >= s->in->size)
    return 0;
  size_t k = (size_t) MIN ((guint64) n, s->in->size - s->pos);
  memcpy (buf, s->in->data + s->pos, k);
  s->pos += k;
  return (tmsize_t) k;
}

static tmsize_t
tiff_write (thandle_t h, void *buf, tmsize_t n)
{
  return -1;
}

static toff_t
tiff_seek (thandle_t h, toff_t off, int whence)
{
  TiffSource *s = h;
  guint64 base = whence == SEEK_CUR ? s->pos : whence == SEEK_END ? tiff_source_size (s) : 0;
  s->pos = base + off;
  return s->pos;
}

static int
tiff_close (thandle_t h)
{
  return 0;
}

static toff_t
tiff_size (thandle_t h)
{
  return tiff_source_size (h);
}

static int
tiff_map (thandle_t h, void **base, toff_t *size)
{
  return 0;
}

static void
tiff_unmap (thandle_t h, void *base, toff_t size)
{
}

static int tiff_error (TIFF *tif, void *user, const char *module, const char *fmt, va_list ap)
  G_GNUC_PRINTF (4, 0);

static int
tiff_error (TIFF *tif, void *user, const char *module, const char *fmt, va_list ap)
{
  TiffSource *s = user;
  if (s->message[0] == '\0')
    g_vsnprintf (s->message, sizeof s->message, fmt, ap);
  return 1;   /* not to stderr */
}

static int
tiff_warning (TIFF *tif, void *user, const char *module, const char *fmt, va_list ap)
{
  return 1;
}

/* The first page of a TIFF with 8 or 1 bits per sample (gray, RGB, palette, YCbCr, CMYK; any
 * compression libtiff reads), through libtiff's RGBA reader: gray comes out with 1 channel,
 * everything else RGB, as Pillow gives them, and its Orientation tag is applied afterwards like
 * an EXIF one. Alpha, 16-bit and float samples are refused with the reason. */
static VlImage *
tiff_decode (const Input *in, int channels, gboolean decode, Header *hdr, GError **error)
{
  TiffSource src = { in, 0, "" };
  TIFFOpenOptions *opts = TIFFOpenOptionsAlloc ();
  TIFFOpenOptionsSetMaxSingleMemAlloc (opts, (tmsize_t) VL_IMAGE_MAX_BYTES);
  TIFFOpenOptionsSetErrorHandlerExtR (opts, tiff_error, &src);
  TIFFOpenOptionsSetWarningHandlerExtR (opts, tiff_warning, &src);
  TIFF *tif = TIFFClientOpenExt (in->what, "rm", &src, tiff_read, tiff_write, tiff_seek,
                                 tiff_close, tiff_size, tiff_map, tiff_unmap, opts);
  TIFFOpenOptionsFree (opts);
  if (tif == NULL)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: cannot decode image: %s", in->what,
                   src.message[0] ? src.message : "not a readable TIFF");
      return NULL;
    }
  uint32_t w = 0, h = 0;
  uint16_t bps = 1, spp = 1, photometric = PHOTOMETRIC_MINISBLACK, orientation = 1, fmt = 1;
  uint16_t n_extra = 0, *extra = NULL;
  TIFFGetField (tif, TIFFTAG_IMAGEWIDTH, &w);
  TIFFGetField (tif, TIFFTAG_IMAGELENGTH, &h);
  TIFFGetFieldDefaulted (tif, TIFFTAG_BITSPERSAMPLE, &bps);
  TIFFGetFieldDefaulted (tif, TIFFTAG_SAMPLESPERPIXEL, &spp);
  TIFFGetFieldDefaulted (tif, TIFFTAG_SAMPLEFORMAT, &fmt);
  TIFFGetFieldDefaulted (tif, TIFFTAG_ORIENTATION, &orientation);
  TIFFGetFieldDefaulted (tif, TIFFTAG_EXTRASAMPLES, &n_extra, &extra);
  TIFFGetField (tif, TIFFTAG_PHOTOMETRIC, &photometric);
  char why[1024] = "";
  if (bps != 8 && bps != 1)
    g_snprintf (why, sizeof why, "%u bits per sample (vitlab reads 8-bit and 1-bit TIFFs; "
                "convert it to 8 bits)", bps);
  else if (fmt != SAMPLEFORMAT_UINT)
    g_snprintf (why, sizeof why, "samples that are not unsigned integers");
  else if (n_extra > 0)
    g_snprintf (why, sizeof why, "an alpha or extra channel (vitlab reads TIFFs without one)");
  else if (!TIFFRGBAImageOK (tif, why))
    ;
  else
    why[0] = '\0';
  if (why[0] != '\0' || w > INT_MAX || h > INT_MAX)
    {
      TIFFClose (tif);
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: cannot decode image: TIFF with %s",
                   in->what, why[0] ? why : "sides beyond the limits");
      return NULL;
    }
  const gboolean gray = spp == 1 && (photometric == PHOTOMETRIC_MINISBLACK ||
                                     photometric == PHOTOMETRIC_MINISWHITE);
  hdr->width = (int) w;
  hdr->height = (int) h;
  hdr->channels = gray ? 1 : 3;
  hdr->cost = n_pixels (hdr) * (4 + (guint64) hdr->channels);   /* libtiff's RGBA, then ours */
  hdr->min_file = 0;
  hdr->orientation = orientation >= 1 && orientation <= 8 ? orientation : 1;
  if (!check_header (in, hdr, channels, error) || !decode)
    {
      TIFFClose (tif);
      return NULL;
    }
  const gsize n = (gsize) w * h;
  uint32_t *raster = g_try_malloc (n * 4);
  uint8_t *pixels = raster != NULL ? try_alloc_pixels (in, (int) w, (int) h, hdr->channels,
                                                       error) : NULL;
  /* asked for in the file's own orientation: rows as stored, top to bottom */
  if (pixels == NULL ||
      !TIFFReadRGBAImageOriented (tif, w, h, raster, hdr->orientation, 0))
    {
      if (error != NULL && *error == NULL)
        g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: cannot decode image: %s", in->what,
                     raster == NULL ? "out of memory" : src.message[0] ? src.message
                     : "the TIFF data is truncated or corrupt");
      g_free (raster);
      g_free (pixels);
      TIFFClose (tif);
      return NULL;
    }
  TIFFClose (tif);
  for (gsize p = 0; p < n; p++)
    {
      const uint32_t v = raster[p];
      if (hdr->channels == 1)
        pixels[p] = (uint8_t) TIFFGetR (v);
      else
        {
          pixels[p * 3] = (uint8_t) TIFFGetR (v);
          pixels[p * 3 + 1] = (uint8_t) TIFFGetG (v);
          pixels[p * 3 + 2] = (uint8_t) TIFFGetB (v);
        }
    }
  g_free (raster);
  return finish_image (in, pixels, (int) w, (int) h, hdr->channels, channels, error);
}

/* ---- everything else (stb_image) ---- */

static inline guint32
le16 (const uint8_t *p)
{
  return p[0] | (guint32) p[1] << 8;
}

/* The smallest file that can carry the pixels the header declares, for the formats whose
 * decoders fill pixels the file does not have (0 when there is no such rule). */
static guint64
stb_min_file (const Input *in, const Header *h, int file_channels, gboolean is16)
{
  const uint8_t *d = in->data;
  guint64 n = n_pixels (h);
  switch (in->format)
    {
    case FORMAT_TGA:
      {
        /* a file cut inside the 18-byte header still declares a size (stb reads zeros past
         * the end): it carries no pixels at all */
        guint64 bpp = in->size > 16 ? (d[16] + 7) / 8 : 0;   /* bytes per stored pixel */
        if (bpp == 0)
          bpp = 1;
        if (in->size > 2 && d[2] >= 9)   /* RLE: a packet carries at most 128 pixels */
          return 18 + (n + 127) / 128 * (1 + bpp);
        return 18 + n * bpp;
      }
    case FORMAT_BMP:
      {
        /* stb reads no RLE BMP: every row is stored. The bit count follows the sides, 16-bit
         * in OS/2's 12-byte header (offset 24), 32-bit in the others (28); a file cut before
         * it, or one that says 0, still declares its sides (stb reads zeros past the end):
         * 1 bit a pixel, the least any BMP stores (fuzz-image, corpus/image/bmp-os2-bomb-c0) */
        size_t at = in->size >= 18 && le16 (d + 14) == 12 && le16 (d + 16) == 0 ? 24 : 28;
        guint64 bits = in->size >= at + 2 ? le16 (d + at) : 0;
        return 14 + (((guint64) h->width * MAX (bits, 1) + 31) / 32 * 4) * h->height;
      }
    case FORMAT_PNM:
      return n * file_channels * (is16 ? 2 : 1);
    case FORMAT_PSD:
      /* PackBits (stb reads up to four channels): at most 128 samples in 2 bytes */
      if (in->size < 14)
        return 0;
      return 26 + n * MIN ((guint32) (d[12] << 8 | d[13]), 4u) / 64;
    case FORMAT_HDR:
      /* run-length scanlines: 4 bytes, then per component runs of up to 127 in 2 bytes */
      if (h->width >= 8 && h->width < 32768)
        return (guint64) h->height * (4 + 8 * (((guint64) h->width + 126) / 127));
      return n * 4;
    default:
      return 0;
    }
}

/* stb_image's run-length HDR decoder loops forever on a run of length 0, and on data that ends
 * inside a scanline (it reads zeros there). Walks the scanlines as it will and returns the reason
 * it would hang, or NULL. Scanlines that are not run-length encoded make stb decode the rest
 * flat, which ends. */
static const char *
hdr_rle_problem (const uint8_t *d, size_t n, int width, int height)
{
  if (width < 8 || width >= 32768)
    return NULL;   /* stb decodes these flat */
  /* The pixels follow the resolution line, which follows the header's first empty line after
   * the signature line; as stb reads lines, one that starts with a NUL is empty too. */
  size_t pos = 0;
  gboolean header_done = FALSE;
  for (int line = 0;; line++)
    {
      if (pos >= n)
        return NULL;   /* stb refuses the header itself */
      gboolean empty = d[pos] == '\n' || d[pos] == '\0';
      const uint8_t *eol = memchr (d + pos, '\n', n - pos);
      if (eol == NULL)
        return NULL;
      pos = (size_t) (eol + 1 - d);
      if (header_done)
        break;         /* that was the resolution line */
      header_done = line > 0 && empty;
    }
  for (int y = 0; y < height; y++)
    {
      if (pos > n || n - pos < 4)   /* pos passes n when the last values were cut off */
        return "the pixel data ends early";
      if (d[pos] != 2 || d[pos + 1] != 2 || (d[pos + 2] & 0x80))
        return NULL;   /* flat from here on */
      if (((int) d[pos + 2] << 8 | d[pos + 3]) != width)
        return NULL;   /* stb refuses the scanline length */
      pos += 4;
      for (int k = 0; k < 4; k++)
        for (int x = 0; x < width;)
          {
            if (pos >= n)
              return "the pixel data ends early";
            int count = d[pos++];
            if (count > 128)
              {
                count -= 128;
                pos++;                    /* the value repeated */
              }
            else if (count == 0)
              return "a run-length packet of length 0";
            else
              pos += (size_t) count;      /* the values */
            if (count > width - x)
              return NULL;                /* stb refuses the run */
            x += count;
          }
    }
  return NULL;
}

/* stb_image reads a PNM header's numbers into an int without a bound (signed overflow, found by
 * fuzz-image with UBSan): the three numbers after the signature, read as it reads them
 * (whitespace, '#' comments to the end of the line), must stay below a billion. */
static gboolean
pnm_numbers_ok (const uint8_t *d, size_t n)
{
  size_t pos = 2;
  for (int k = 0; k < 3; k++)
    {
      for (;;)
        {
          while (pos < n && (d[pos] == ' ' || (d[pos] >= '\t' && d[pos] <= '\r')))
            pos++;
          if (pos >= n || d[pos] != '#')
            break;
          while (pos < n && d[pos] != '\n' && d[pos] != '\r')
            pos++;
        }
      guint64 value = 0;
      for (; pos < n && d[pos] >= '0' && d[pos] <= '9'; pos++)
        if ((value = value * 10 + (guint64) (d[pos] - '0')) >= 1000000000)
          return FALSE;
    }
  return TRUE;
}

static VlImage *
stb_decode (const Input *in, int channels, gboolean decode, Header *hdr, GError **error)
{
  const int size = (int) MIN (in->size, (size_t) INT_MAX);
  int w = 0, h = 0, comp = 0;
  if (in->format == FORMAT_PNM && !pnm_numbers_ok (in->data, in->size))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                   "%s: cannot decode image: a number in the PNM header is too large", in->what);
      return NULL;
    }
  if (!vl_stb_info_memory (in->data, size, &w, &h, &comp))
    {
      const char *why = vl_stb_failure_reason ();
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: cannot decode image: %s", in->what,
                   why != NULL ? why : "unknown error");
      return NULL;
    }
  gboolean hdr_float = vl_stb_is_hdr_memory (in->data, size);
  gboolean is16 = !hdr_float && vl_stb_is_16_bit_memory (in->data, size);
  hdr->width = w;
  hdr->height = h;
  hdr->channels = comp;
  guint64 n = (w > 0 && h > 0) ? n_pixels (hdr) : 0;
  /* what stb allocates: its samples (16-bit, float), then 8 bits per sample; stb converts to
   * the channels asked for itself, which check_header adds */
  if (in->format == FORMAT_GIF)
    hdr->cost = n * (4 + 4 + 1) + n * comp;   /* frame, background, history, result */
  else if (hdr_float)
    hdr->cost = n * comp * 4 + n * comp;
  else if (is16)
    hdr->cost = n * comp * 2 + n * comp;
  else
    hdr->cost = n * comp;
  hdr->min_file = n > 0 ? stb_min_file (in, hdr, comp, is16) : 0;
  if (comp < 1 || comp > 4)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: image has %d channels", in->what,
                   comp);
      return NULL;
    }
  if (!check_header (in, hdr, channels, error) || !decode)
    return NULL;

  const char *hang = in->format == FORMAT_HDR ? hdr_rle_problem (in->data, in->size, w, h) : NULL;
  if (hang != NULL)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: cannot decode image: corrupt HDR: %s",
                   in->what, hang);
      return NULL;
    }
  /* stb 2.27 converts the channels of a 16-bit PNM as if its samples were 8-bit, into a buffer
   * half the size its 16-to-8 step then reads (a heap overflow; fuzz-image): such a file is
   * decoded with its own channels and converted here */
  gboolean convert_here = in->format == FORMAT_PNM && is16 && channels != 0 && channels != comp;
  int file_channels = 0;
  uint8_t *pixels = vl_stb_load_memory (in->data, size, &w, &h, &file_channels,
                                        convert_here ? 0 : channels);
  if (pixels != NULL && convert_here)
    {
      if (w != hdr->width || h != hdr->height || file_channels != comp)
        {
          g_free (pixels);
          g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                       "%s: decoded image is %dx%d with %d channels, not what its header says",
                       in->what, w, h, file_channels);
          return NULL;
        }
      return finish_image (in, pixels, w, h, file_channels, channels, error);
    }
  if (pixels == NULL)
    {
      const char *why = vl_stb_failure_reason ();
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: cannot decode image: %s", in->what,
                   why != NULL ? why : "unknown error");
      return NULL;
    }
  int out_channels = channels != 0 ? channels : file_channels;
  if (w != hdr->width || h != hdr->height || out_channels < 1 || out_channels > 4)
    {
      /* The header said otherwise (a GIF frame larger than its screen, say). */
      g_free (pixels);
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                   "%s: decoded image is %dx%d with %d channels, not what its header says",
                   in->what, w, h, out_channels);
      return NULL;
    }
  return image_take (pixels, w, h, out_channels);
}

static VlImage *
decode_input (const Input *in, int channels, gboolean decode, Header *hdr, GError **error)
{
  switch (in->format)
    {
    case FORMAT_JPEG:
      return jpeg_decode (in, channels, decode, hdr, error);
    case FORMAT_PNG:
      return png_decode (in, channels, decode, hdr, error);
    case FORMAT_WEBP:
      return webp_decode (in, channels, decode, hdr, error);
    case FORMAT_TIFF:
      return tiff_decode (in, channels, decode, hdr, error);
    default:
      return stb_decode (in, channels, decode, hdr, error);
    }
}

/* Decodes running at once (the loader's thread, the window's tasks) share one budget of
 * VL_IMAGE_DECODE_BUDGET bytes: a decode whose header says it would pass it waits for the
 * others to finish; one decode alone always runs (its own limit is VL_IMAGE_MAX_BYTES). */
static GMutex decode_lock;
static GCond decode_done;
static guint64 decode_in_flight;

static void
decode_reserve (guint64 bytes)
{
  vl_mutex_lock (&decode_lock);
  while (decode_in_flight > 0 && decode_in_flight + bytes > VL_IMAGE_DECODE_BUDGET)
    vl_cond_wait (&decode_done, &decode_lock);
  decode_in_flight += bytes;
  vl_mutex_unlock (&decode_lock);
}

static void
decode_release (guint64 bytes)
{
  vl_mutex_lock (&decode_lock);
  decode_in_flight -= bytes;
  g_cond_broadcast (&decode_done);
  vl_mutex_unlock (&decode_lock);
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
  if (size > VL_IMAGE_MAX_FILE)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                   "%s: file is %" G_GSIZE_FORMAT " bytes, above the %d MB limit for an image",
                   what, (gsize) size, (int) (VL_IMAGE_MAX_FILE >> 20));
      return NULL;
    }
  Input in = { what, data, size, NULL, size, sniff_format (data, size) };
  Header hdr = { 0 };
  GError *local = NULL;
  decode_input (&in, channels, FALSE, &hdr, &local);   /* the header and its checks */
  if (local != NULL)
    {
      g_propagate_error (error, local);
      return NULL;
    }
  int out_channels = channels != 0 ? channels : hdr.channels;
  const gboolean turn = hdr.orientation >= 2 && hdr.orientation <= 8;
  guint64 cost = hdr.cost + (out_channels != hdr.channels ? n_pixels (&hdr) * out_channels : 0)
                 + (turn ? n_pixels (&hdr) * out_channels : 0);
  decode_reserve (cost);
  VlImage *img = decode_input (&in, channels, TRUE, &hdr, error);
  if (img != NULL && turn)
    {
      /* upright, as the camera meant it and as image viewers show it */
      int w = 0, h = 0;
      uint8_t *up = vl_orient_pixels (img->pixels, img->width, img->height, img->channels,
                                      hdr.orientation, &w, &h);
      if (up == NULL)
        {
          g_set_error (error, VL_ERROR, VL_ERROR_IO, "%s: cannot allocate %dx%d pixels to turn "
                       "the image upright", what, img->width, img->height);
          g_clear_pointer (&img, vl_image_free);
        }
      else
        {
          g_free (img->pixels);
          img->pixels = up;
          img->width = w;
          img->height = h;
        }
    }
  decode_release (cost);
  return img;
}

gboolean
vl_image_check_file (const char *path, int *width, int *height, GError **error)
{
  return vl_image_probe_file (path, width, height, NULL, error);
}

gboolean
vl_image_probe_file (const char *path, int *width, int *height, int *orientation,
                     GError **error)
{
  g_return_val_if_fail (path != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  FILE *f = fopen (path, "rb");
  if (f == NULL)
    {
      int e = errno;
      g_set_error (error, VL_ERROR, VL_ERROR_IO, "%s: cannot read: %s", path, g_strerror (e));
      return FALSE;
    }
  struct stat st;
  guint64 file_size = fstat (fileno (f), &st) == 0 ? (guint64) st.st_size : 0;
  g_autofree uint8_t *prefix = g_malloc (HEADER_PREFIX);
  size_t got = fread (prefix, 1, HEADER_PREFIX, f);
  gboolean ok = FALSE;
  Header hdr = { 0 };
  if (got == 0)
    g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: file is empty", path);
  else if (file_size > VL_IMAGE_MAX_FILE)
    g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                 "%s: file is %" G_GUINT64_FORMAT " bytes, above the %d MB limit for an image",
                 path, file_size, (int) (VL_IMAGE_MAX_FILE >> 20));
  else
    {
      Input in = { path, prefix, got, NULL, file_size, sniff_format (prefix, got) };
      if (in.format == FORMAT_JPEG || in.format == FORMAT_PNG || in.format == FORMAT_TIFF)
        {
          rewind (f);
          in.f = f;
        }
      else if (in.format == FORMAT_WEBP && webp_has_exif (prefix, got) && file_size > got)
        {
          /* its EXIF chunk follows the image data: the orientation needs the whole file */
          uint8_t *all = g_try_realloc (prefix, file_size);
          if (all != NULL)
            {
              prefix = all;
              got += fread (prefix + got, 1, file_size - got, f);
              in.data = prefix;
              in.size = got;
            }
        }
      GError *local = NULL;
      decode_input (&in, 0, FALSE, &hdr, &local);
      ok = local == NULL;
      if (local != NULL)
        g_propagate_error (error, local);
    }
  fclose (f);
  const int o = hdr.orientation >= 2 && hdr.orientation <= 8 ? hdr.orientation : 1;
  if (ok && width != NULL)
    *width = o >= 5 ? hdr.height : hdr.width;
  if (ok && height != NULL)
    *height = o >= 5 ? hdr.width : hdr.height;
  if (ok && orientation != NULL)
    *orientation = o;
  return ok;
}

const char *const vl_image_extensions[] = {
  "jpg", "jpeg", "jpe", "jfif", "png", "webp", "tif", "tiff", "bmp", "dib", "gif", "pnm", "ppm",
  "pgm", "tga", "psd", "hdr", NULL
};

static const char *const undecodable_extensions[] = {
  "pbm", "pic", NULL
};

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

char *
vl_image_find_stem (const char *dir, const char *stem)
{
  for (int e = 0; vl_image_extensions[e] != NULL; e++)
    for (int upper = 0; upper < 2; upper++)
      {
        g_autofree char *ext = upper ? g_ascii_strup (vl_image_extensions[e], -1)
                                     : g_strdup (vl_image_extensions[e]);
        g_autofree char *base = g_strconcat (stem, ".", ext, NULL);
        char *p = g_build_filename (dir, base, NULL);
        if (g_file_test (p, G_FILE_TEST_EXISTS))
          return p;
        g_free (p);
      }
  return NULL;
}

VlImage *
vl_image_load (const char *path, int channels, GError **error)
{
  g_return_val_if_fail (path != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  g_autofree char *contents = NULL;
  gsize size = 0;
  g_autoptr(GError) local = NULL;
  struct stat st;
  if (stat (path, &st) == 0 && S_ISREG (st.st_mode) && (guint64) st.st_size > VL_IMAGE_MAX_FILE)
    {
      /* not read into memory at all */
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                   "%s: file is %" G_GUINT64_FORMAT " bytes, above the %d MB limit for an image",
                   path, (guint64) st.st_size, (int) (VL_IMAGE_MAX_FILE >> 20));
      return NULL;
    }
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
  if (pp->squash)
    new_w = new_h = size;   /* timm's crop_mode "squash", transformers' resize to (size, size) */

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

static void
png_append (png_structp png, png_bytep data, png_size_t len)
{
  g_byte_array_append (png_get_io_ptr (png), data, (guint) len);
}

static void
png_no_flush (png_structp png)
{
  (void) png;
}

/* Writes rows of `channels` bytes (palette: an index PNG) to path atomically: encoded in memory,
 * then one vl_write_file_atomic. */
static gboolean
png_write_atomic (const char *path, const uint8_t *pixels, int width, int height, int type,
                  const uint8_t *palette, int n_colors, GError **error)
{
  g_autoptr(GByteArray) bytes = g_byte_array_new ();
  PngErr e = { path, "" };
  png_structp png = png_create_write_struct (PNG_LIBPNG_VER_STRING, &e, png_err_fn,
                                             png_warn_fn);
  png_infop info = png != NULL ? png_create_info_struct (png) : NULL;
  if (png == NULL || info == NULL || setjmp (png_jmpbuf (png)))
    {
      png_destroy_write_struct (&png, &info);
      g_set_error (error, VL_ERROR, VL_ERROR_IO, "%s: cannot write PNG: %s", path,
                   e.msg[0] ? e.msg : "out of memory");
      return FALSE;
    }
  png_set_write_fn (png, bytes, png_append, png_no_flush);
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
  return vl_write_file_atomic (path, (const char *) bytes->data, bytes->len, error);
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
