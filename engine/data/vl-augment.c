/* vl-augment.c: seeded training augmentation of 8-bit images.
 *
 * The operations follow the PIL code paths torchvision uses for PIL images, on 8-bit pixels:
 *  - RandomResizedCrop.get_params (10 attempts, Python round(), then the centre-crop fallback
 *    clamped to the ratio range), then crop + Pillow-exact bicubic resize to size x size;
 *  - ImageEnhance (Brightness, Contrast, Color, Sharpness) = Image.blend(degenerate, img, f),
 *    computed in float and truncated to 0..255 as Pillow's ImagingBlend does;
 *  - ImageOps.equalize / autocontrast / posterize / solarize with PIL's lookup tables;
 *  - geometric RandAugment operations (rotate, shear, translate) as PIL's affine transform
 *    with nearest-neighbour sampling (torchvision RandAugment's default), filled with black.
 * Gray sources feeding an RGB model are augmented as one plane and replicated at the end: every
 * operation here gives the same bytes on three equal planes (PIL's luma of (v, v, v) is v). */
#include "vl-augment.h"
#include "vl-rng.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------------------------- */
/* Helpers                                                                                */

/* Uniform integer in [0, n), n >= 1. */
static int
rand_below (VlRng *r, int n)
{
  int v = (int) (vl_rng_uniform (r) * n);
  return v < n ? v : n - 1;
}

static double
rand_range (VlRng *r, double lo, double hi)
{
  return lo + (hi - lo) * vl_rng_uniform (r);
}

/* Python's round() for the values met here: halves to even. */
static int
py_round (double x)
{
  double f = floor (x);
  double d = x - f;
  if (d > 0.5 || (d == 0.5 && fmod (f, 2.0) != 0.0))
    f += 1.0;
  return (int) f;
}

static uint8_t
clip8f (float v)
{
  /* Pillow's ImagingBlend: clamp, then truncate toward zero. */
  if (v <= 0.0f)
    return 0;
  if (v >= 255.0f)
    return 255;
  return (uint8_t) v;
}

static VlImage *
crop_image (const VlImage *img, int x0, int y0, int w, int h)
{
  const int C = img->channels;
  VlImage *out = vl_image_new (w, h, C);
  for (int y = 0; y < h; y++)
    memcpy (out->pixels + (gsize) y * w * C,
            img->pixels + ((gsize) (y0 + y) * img->width + x0) * C, (gsize) w * C);
  return out;
}

static void
flip_horizontal (VlImage *img)
{
  const int C = img->channels;
  for (int y = 0; y < img->height; y++)
    {
      uint8_t *row = img->pixels + (gsize) y * img->width * C;
      for (int a = 0, b = img->width - 1; a < b; a++, b--)
        for (int c = 0; c < C; c++)
          {
            uint8_t t = row[a * C + c];
            row[a * C + c] = row[b * C + c];
            row[b * C + c] = t;
          }
    }
}

void
vl_augment_flip_chw (float *x, int channels, int size)
{
  for (int r = 0; r < channels * size; r++)
    {
      float *row = x + (gsize) r * size;
      for (int a = 0, b = size - 1; a < b; a++, b--)
        {
          float t = row[a];
          row[a] = row[b];
          row[b] = t;
        }
    }
}

/* ------------------------------------------------------------------------------------- */
/* RandomResizedCrop                                                                      */

typedef struct { int x, y, w, h; } Rect;

#define RRC_SCALE_MIN 0.35
#define RRC_SCALE_MAX 1.0
#define RRC_RATIO_MIN (3.0 / 4.0)
#define RRC_RATIO_MAX (4.0 / 3.0)

/* torchvision RandomResizedCrop.get_params */
static Rect
rrc_params (VlRng *r, int width, int height)
{
  double area = (double) width * height;
  double log_lo = log (RRC_RATIO_MIN), log_hi = log (RRC_RATIO_MAX);
  for (int attempt = 0; attempt < 10; attempt++)
    {
      double target_area = area * rand_range (r, RRC_SCALE_MIN, RRC_SCALE_MAX);
      double aspect = exp (rand_range (r, log_lo, log_hi));
      int w = py_round (sqrt (target_area * aspect));
      int h = py_round (sqrt (target_area / aspect));
      if (w > 0 && w <= width && h > 0 && h <= height)
        {
          int i = rand_below (r, height - h + 1);
          int j = rand_below (r, width - w + 1);
          return (Rect) { j, i, w, h };
        }
    }
  /* Fallback: central crop at the nearest allowed ratio. */
  double in_ratio = (double) width / height;
  int w, h;
  if (in_ratio < RRC_RATIO_MIN)
    {
      w = width;
      h = py_round (w / RRC_RATIO_MIN);
    }
  else if (in_ratio > RRC_RATIO_MAX)
    {
      h = height;
      w = py_round (h * RRC_RATIO_MAX);
    }
  else
    {
      w = width;
      h = height;
    }
  w = CLAMP (w, 1, width);
  h = CLAMP (h, 1, height);
  return (Rect) { (width - w) / 2, (height - h) / 2, w, h };
}

/* ------------------------------------------------------------------------------------- */
/* ImageEnhance                                                                           */

/* Image.blend(degenerate, img, f): degenerate + f * (img - degenerate), in place on img. */
static void
blend_into (VlImage *img, const uint8_t *degenerate, float f)
{
  gsize n = (gsize) img->width * img->height * img->channels;
  for (gsize i = 0; i < n; i++)
    {
      float d = degenerate[i];
      img->pixels[i] = clip8f (d + f * ((float) img->pixels[i] - d));
    }
}

static uint8_t
luma (const uint8_t *p, int C)
{
  if (C < 3)
    return p[0];
  return (uint8_t) ((p[0] * 19595u + p[1] * 38470u + p[2] * 7471u + 0x8000u) >> 16);
}

static void
enhance_brightness (VlImage *img, float f)
{
  gsize n = (gsize) img->width * img->height * img->channels;
  uint8_t *black = g_malloc0 (n);
  blend_into (img, black, f);
  g_free (black);
}

static void
enhance_contrast (VlImage *img, float f)
{
  const int C = img->channels;
  gsize n = (gsize) img->width * img->height;
  double sum = 0.0;
  for (gsize i = 0; i < n; i++)
    sum += luma (img->pixels + i * C, C);
  int mean = (int) (sum / (double) n + 0.5);
  uint8_t *deg = g_malloc (n * C);
  memset (deg, mean, n * C);
  blend_into (img, deg, f);
  g_free (deg);
}

static void
enhance_color (VlImage *img, float f)
{
  const int C = img->channels;
  if (C < 3)
    return;   /* convert("L") of a gray image is itself: blend(img, img) */
  gsize n = (gsize) img->width * img->height;
  uint8_t *deg = g_malloc (n * C);
  for (gsize i = 0; i < n; i++)
    memset (deg + i * C, luma (img->pixels + i * C, C), C);
  blend_into (img, deg, f);
  g_free (deg);
}

/* ImageFilter.SMOOTH (3x3: 1 1 1 / 1 5 1 / 1 1 1, scale 13); PIL copies the border pixels. */
static void
enhance_sharpness (VlImage *img, float f)
{
  const int C = img->channels, W = img->width, H = img->height;
  gsize n = (gsize) W * H * C;
  uint8_t *deg = g_memdup2 (img->pixels, n);
  for (int y = 1; y < H - 1; y++)
    for (int x = 1; x < W - 1; x++)
      for (int c = 0; c < C; c++)
        {
          float s = 0.0f;
          for (int dy = -1; dy <= 1; dy++)
            for (int dx = -1; dx <= 1; dx++)
              {
                float w = dx == 0 && dy == 0 ? 5.0f : 1.0f;
                s += w * img->pixels[((gsize) (y + dy) * W + (x + dx)) * C + c];
              }
          deg[((gsize) y * W + x) * C + c] = clip8f (s / 13.0f + 0.5f);
        }
  blend_into (img, deg, f);
  g_free (deg);
}

/* ------------------------------------------------------------------------------------- */
/* ImageOps                                                                               */

static void
apply_lut (VlImage *img, int c, const uint8_t lut[256])
{
  const int C = img->channels;
  gsize n = (gsize) img->width * img->height;
  for (gsize i = 0; i < n; i++)
    img->pixels[i * C + c] = lut[img->pixels[i * C + c]];
}

static void
histogram (const VlImage *img, int c, guint64 h[256])
{
  const int C = img->channels;
  gsize n = (gsize) img->width * img->height;
  memset (h, 0, 256 * sizeof h[0]);
  for (gsize i = 0; i < n; i++)
    h[img->pixels[i * C + c]]++;
}

/* ImageOps.equalize, per channel */
static void
op_equalize (VlImage *img)
{
  for (int c = 0; c < img->channels; c++)
    {
      guint64 h[256];
      histogram (img, c, h);
      guint64 total = 0, last = 0;
      int nonzero = 0;
      for (int i = 0; i < 256; i++)
        if (h[i] != 0)
          {
            nonzero++;
            total += h[i];
            last = h[i];
          }
      if (nonzero <= 1)
        continue;
      guint64 step = (total - last) / 255;
      if (step == 0)
        continue;
      uint8_t lut[256];
      guint64 acc = step / 2;
      for (int i = 0; i < 256; i++)
        {
          guint64 v = acc / step;
          lut[i] = (uint8_t) (v > 255 ? 255 : v);
          acc += h[i];
        }
      apply_lut (img, c, lut);
    }
}

/* ImageOps.autocontrast (cutoff 0), per channel */
static void
op_autocontrast (VlImage *img)
{
  for (int c = 0; c < img->channels; c++)
    {
      guint64 h[256];
      histogram (img, c, h);
      int lo = 0, hi = 255;
      while (lo < 256 && h[lo] == 0)
        lo++;
      while (hi >= 0 && h[hi] == 0)
        hi--;
      if (hi <= lo)
        continue;
      double scale = 255.0 / (hi - lo);
      double offset = -lo * scale;
      uint8_t lut[256];
      for (int i = 0; i < 256; i++)
        {
          int v = (int) (i * scale + offset);
          lut[i] = (uint8_t) CLAMP (v, 0, 255);
        }
      apply_lut (img, c, lut);
    }
}

static void
op_posterize (VlImage *img, int bits)
{
  uint8_t mask = (uint8_t) (0xff << (8 - bits));
  gsize n = (gsize) img->width * img->height * img->channels;
  for (gsize i = 0; i < n; i++)
    img->pixels[i] &= mask;
}

static void
op_solarize (VlImage *img, double threshold)
{
  gsize n = (gsize) img->width * img->height * img->channels;
  for (gsize i = 0; i < n; i++)
    if (img->pixels[i] >= threshold)
      img->pixels[i] = (uint8_t) (255 - img->pixels[i]);
}

/* PIL Image.transform(AFFINE, (a, b, c, d, e, f), NEAREST): output pixel centre (x, y) reads
 * input (a x + b y + c, d x + e y + f); outside the input is black. */
static void
op_affine (VlImage *img, const double m[6])
{
  const int C = img->channels, W = img->width, H = img->height;
  g_autoptr(VlImage) src = crop_image (img, 0, 0, W, H);
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++)
      {
        double xx = x + 0.5, yy = y + 0.5;
        double xi = m[0] * xx + m[1] * yy + m[2];
        double yi = m[3] * xx + m[4] * yy + m[5];
        uint8_t *dst = img->pixels + ((gsize) y * W + x) * C;
        if (xi >= 0.0 && xi < W && yi >= 0.0 && yi < H)
          memcpy (dst, src->pixels + ((gsize) (int) yi * W + (int) xi) * C, C);
        else
          memset (dst, 0, C);
      }
}

/* ------------------------------------------------------------------------------------- */
/* RandAugment (torchvision's magnitudes, 31 bins, magnitude 9)                           */

typedef enum {
  OP_ROTATE,
  OP_SHEAR_X,
  OP_SHEAR_Y,
  OP_TRANSLATE_X,
  OP_TRANSLATE_Y,
  OP_POSTERIZE,
  OP_SOLARIZE,
  OP_EQUALIZE,
  OP_AUTOCONTRAST,
  OP_SHARPNESS,
  N_OPS
} RandOp;

#define RA_NUM_OPS   2
#define RA_LEVEL     (9.0 / 30.0)   /* magnitude 9 of num_magnitude_bins - 1 = 30 */

static void
rand_augment (VlRng *r, VlImage *img)
{
  for (int k = 0; k < RA_NUM_OPS; k++)
    {
      RandOp op = (RandOp) rand_below (r, N_OPS);
      double sign = vl_rng_uniform (r) < 0.5 ? -1.0 : 1.0;
      double W = img->width, H = img->height;
      switch (op)
        {
        case OP_ROTATE:
          {
            double a = sign * 30.0 * RA_LEVEL * G_PI / 180.0;   /* 9 degrees */
            double cs = cos (a), sn = sin (a), cx = W / 2, cy = H / 2;
            double m[6] = { cs, sn, cx - cs * cx - sn * cy, -sn, cs, cy + sn * cx - cs * cy };
            op_affine (img, m);
          }
          break;
        case OP_SHEAR_X:
          {
            double m[6] = { 1, sign * 0.3 * RA_LEVEL, 0, 0, 1, 0 };
            op_affine (img, m);
          }
          break;
        case OP_SHEAR_Y:
          {
            double m[6] = { 1, 0, 0, sign * 0.3 * RA_LEVEL, 1, 0 };
            op_affine (img, m);
          }
          break;
        case OP_TRANSLATE_X:
          {
            double m[6] = { 1, 0, sign * (int) (150.0 / 331.0 * W * RA_LEVEL), 0, 1, 0 };
            op_affine (img, m);
          }
          break;
        case OP_TRANSLATE_Y:
          {
            double m[6] = { 1, 0, 0, 0, 1, sign * (int) (150.0 / 331.0 * H * RA_LEVEL) };
            op_affine (img, m);
          }
          break;
        case OP_POSTERIZE:
          op_posterize (img, 8 - py_round (4.0 * RA_LEVEL));   /* 7 bits */
          break;
        case OP_SOLARIZE:
          op_solarize (img, 255.0 * (1.0 - RA_LEVEL));         /* 178.5 */
          break;
        case OP_EQUALIZE:
          op_equalize (img);
          break;
        case OP_AUTOCONTRAST:
          op_autocontrast (img);
          break;
        case OP_SHARPNESS:
          enhance_sharpness (img, (float) (1.0 + sign * 0.9 * RA_LEVEL));
          break;
        case N_OPS:
        default:
          g_assert_not_reached ();
        }
    }
}

/* ColorJitter(0.4, 0.4, 0.4): factors uniform in [0.6, 1.4], operations in a random order. */
static void
color_jitter (VlRng *r, VlImage *img)
{
  int order[3] = { 0, 1, 2 };
  for (int i = 2; i > 0; i--)
    {
      int j = rand_below (r, i + 1);
      int t = order[i];
      order[i] = order[j];
      order[j] = t;
    }
  for (int k = 0; k < 3; k++)
    {
      float f = (float) rand_range (r, 0.6, 1.4);
      switch (order[k])
        {
        case 0: enhance_brightness (img, f); break;
        case 1: enhance_contrast (img, f); break;
        default: enhance_color (img, f); break;
        }
    }
}

/* ------------------------------------------------------------------------------------- */

/* ToTensor + Normalize of a size x size image (1 plane replicated when the model wants 3). */
static void
to_chw (const VlImage *img, const VlPreprocess *pp, float *out)
{
  const int S = pp->size, WC = img->channels;
  for (int c = 0; c < pp->channels; c++)
    {
      int sc = WC == 1 ? 0 : c;
      float *plane = out + (gsize) c * S * S;   /* (S, S) */
      for (gsize i = 0; i < (gsize) S * S; i++)
        {
          float px = (float) img->pixels[i * WC + sc] / 255.0f;
          plane[i] = (px - pp->mean[c]) / pp->std[c];
        }
    }
}

void
vl_augment_draw (VlAugment augment, uint64_t seed, int width, int height, VlAugmentParams *p)
{
  memset (p, 0, sizeof *p);
  p->kind = augment;
  p->src_w = width;
  p->src_h = height;
  p->crop_w = width;
  p->crop_h = height;
  if (augment == VL_AUGMENT_NONE)
    return;
  vl_rng_seed (&p->rng, seed);
  Rect rc = rrc_params (&p->rng, width, height);
  p->crop_x = rc.x;
  p->crop_y = rc.y;
  p->crop_w = rc.w;
  p->crop_h = rc.h;
  p->flip = vl_rng_uniform (&p->rng) < 0.5;
}

void
vl_augment_apply (const VlImage *img, const VlPreprocess *pp, const VlAugmentParams *p,
                  float *out)
{
  g_return_if_fail (img != NULL && img->pixels != NULL && pp != NULL && out != NULL && p != NULL);
  g_return_if_fail (img->channels >= 1 && img->channels <= 4);
  g_return_if_fail (pp->channels == 1 || pp->channels == 3);
  g_return_if_fail (pp->size > 0);
  g_return_if_fail (img->width == p->src_w && img->height == p->src_h);

  if (p->kind == VL_AUGMENT_NONE)
    {
      vl_preprocess_eval (img, pp, out);
      return;
    }
  VlRng rng = p->rng;   /* the colour operations' draws follow the crop's and the flip's */

  int work_channels = pp->channels == 3 && img->channels <= 2 ? 1 : pp->channels;
  g_autoptr(VlImage) converted = vl_image_convert (img, work_channels);
  const VlImage *src = converted != NULL ? converted : img;

  g_autoptr(VlImage) crop = crop_image (src, p->crop_x, p->crop_y, p->crop_w, p->crop_h);
  g_autoptr(VlImage) im = vl_image_resize (crop, pp->size, pp->size, VL_INTERP_BICUBIC);

  if (p->flip)
    flip_horizontal (im);

  if (p->kind == VL_AUGMENT_STRONG)
    {
      color_jitter (&rng, im);
      rand_augment (&rng, im);
    }

  to_chw (im, pp, out);
}

void
vl_augment_image (const VlImage *img, const VlPreprocess *pp, VlAugment augment,
                  uint64_t seed, float *out)
{
  g_return_if_fail (img != NULL);
  VlAugmentParams p;
  vl_augment_draw (augment, seed, img->width, img->height, &p);
  vl_augment_apply (img, pp, &p, out);
}

/* The source rectangle the output's size x size pixels show, in source pixel units: the
 * random crop, or for the eval transform the centre crop of the resized image mapped back (the
 * shorter side resized to floor (size / crop_pct), as vl_preprocess_eval does). */
static void
source_rect (const VlAugmentParams *p, const VlPreprocess *pp, double *x0, double *y0,
             double *sx, double *sy)
{
  if (p->kind != VL_AUGMENT_NONE)
    {
      *x0 = p->crop_x;
      *y0 = p->crop_y;
      *sx = (double) p->crop_w / pp->size;
      *sy = (double) p->crop_h / pp->size;
      return;
    }
  const int W = p->src_w, H = p->src_h;
  double crop_pct = pp->crop_pct > 0 ? pp->crop_pct : 1.0;
  int scale = (int) floor (pp->size / crop_pct);
  int nw, nh;
  if (W <= H)
    {
      nw = scale;
      nh = (int) ((int64_t) scale * H / W);
    }
  else
    {
      nh = scale;
      nw = (int) ((int64_t) scale * W / H);
    }
  double f_x = (double) W / nw, f_y = (double) H / nh;
  int left = (int) round ((nw - pp->size) / 2.0), top = (int) round ((nh - pp->size) / 2.0);
  *x0 = left * f_x;
  *y0 = top * f_y;
  *sx = f_x;
  *sy = f_y;
}

void
vl_augment_apply_mask (const uint8_t *mask, const VlAugmentParams *p, const VlPreprocess *pp,
                       uint8_t fill, uint8_t *out)
{
  double x0, y0, sx, sy;
  source_rect (p, pp, &x0, &y0, &sx, &sy);
  const int S = pp->size;
  for (int y = 0; y < S; y++)
    for (int x = 0; x < S; x++)
      {
        /* the output pixel's centre, back in the source (nearest neighbour) */
        int ox = p->flip ? S - 1 - x : x;
        int u = (int) floor (x0 + (ox + 0.5) * sx), v = (int) floor (y0 + (y + 0.5) * sy);
        out[(gsize) y * S + x] = u >= 0 && v >= 0 && u < p->src_w && v < p->src_h
                                 ? mask[(gsize) v * p->src_w + u] : fill;
      }
}

int
vl_augment_apply_boxes (const float *boxes, const int *labels, int n, const VlAugmentParams *p,
                        const VlPreprocess *pp, float min_size, float *out, int *out_labels)
{
  double x0, y0, sx, sy;
  source_rect (p, pp, &x0, &y0, &sx, &sy);
  const double S = pp->size;
  int kept = 0;
  for (int i = 0; i < n; i++)
    {
      const float *b = boxes + 4 * (gsize) i;
      double a = (b[0] - x0) / sx, c = (b[2] - x0) / sx;
      double t = (b[1] - y0) / sy, d = (b[3] - y0) / sy;
      if (p->flip)
        {
          double na = S - c, nc = S - a;
          a = na;
          c = nc;
        }
      a = CLAMP (a, 0, S);
      c = CLAMP (c, 0, S);
      t = CLAMP (t, 0, S);
      d = CLAMP (d, 0, S);
      if (c - a < min_size || d - t < min_size)
        continue;   /* left the crop, or too little of it is inside */
      float *o = out + 4 * (gsize) kept;
      o[0] = (float) a;
      o[1] = (float) t;
      o[2] = (float) c;
      o[3] = (float) d;
      if (out_labels)
        out_labels[kept] = labels ? labels[i] : 0;
      kept++;
    }
  return kept;
}

void
vl_preprocess_squash (const VlImage *img, const VlPreprocess *pp, float *out)
{
  VlAugmentParams p;
  vl_augment_draw (VL_AUGMENT_NONE, 0, img->width, img->height, &p);
  p.kind = VL_AUGMENT_LIGHT;   /* the crop is the whole image, no flip: a plain resize */
  vl_augment_apply (img, pp, &p, out);
}

const char *
vl_augment_name (VlAugment a)
{
  return a == VL_AUGMENT_LIGHT ? "light" : a == VL_AUGMENT_STRONG ? "strong" : "none";
}

gboolean
vl_augment_from_string (const char *s, VlAugment *out)
{
  if (g_strcmp0 (s, "none") == 0)
    *out = VL_AUGMENT_NONE;
  else if (g_strcmp0 (s, "light") == 0)
    *out = VL_AUGMENT_LIGHT;
  else if (g_strcmp0 (s, "strong") == 0)
    *out = VL_AUGMENT_STRONG;
  else
    return FALSE;
  return TRUE;
}
