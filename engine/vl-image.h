/* vl-image.h: decoding (stb_image) and timm-style evaluation preprocessing.
 *
 * The resize reproduces Pillow's Image.resize(BICUBIC) on 8-bit images exactly as
 * torchvision's Resize uses it (separable, antialiased, a = -0.5, horizontal pass first,
 * fixed-point coefficients, rounding to uint8 after each pass), so preprocessed pixels match
 * timm's evaluation transform to within JPEG-decoder differences. */
#pragma once

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

typedef struct {
  int      width;
  int      height;
  int      channels;   /* 1..4, interleaved */
  uint8_t *pixels;     /* width * height * channels bytes */
} VlImage;

/* Largest image accepted, in pixels (width * height). */
#define VL_IMAGE_MAX_PIXELS (100 * 1000 * 1000)

/* Decodes any format stb_image knows, converting to `channels` (1 or 3; 0 keeps the file's).
 * Errors (VL_ERROR) name the file and stb_image's reason; empty files, truncated data and
 * images above VL_IMAGE_MAX_PIXELS are refused. */
VlImage *vl_image_load        (const char *path, int channels, GError **error);
VlImage *vl_image_load_memory (const uint8_t *data, size_t size, const char *name,
                               int channels, GError **error);
VlImage *vl_image_new         (int width, int height, int channels);

/* A label mask: an 8-bit index PNG (palette or gray, bit depth 1 to 8), one byte per pixel
 * holding the pixel's index as stored (a palette PNG's indices, not its colours), row-major.
 * Returns NULL with an error naming the file for anything else (RGB, 16-bit, not a PNG,
 * truncated, empty, above VL_IMAGE_MAX_PIXELS). g_free the result. */
uint8_t *vl_mask_load         (const char *path, int *width, int *height, GError **error);
/* Only the size, from the PNG header. */
gboolean vl_mask_size         (const char *path, int *width, int *height, GError **error);
/* Writes an index mask as an 8-bit palette PNG (palette: n_colors RGB triples, at most 256),
 * atomically. */
gboolean vl_mask_save         (const char *path, const uint8_t *mask, int width, int height,
                               const uint8_t *palette, int n_colors, GError **error);
/* Writes an 8-bit image (1 or 3 channels) as a PNG, atomically. */
gboolean vl_image_save_png    (const char *path, const VlImage *img, GError **error);
void     vl_image_free        (VlImage *img);

typedef enum {
  VL_INTERP_BICUBIC,
  VL_INTERP_BILINEAR,
  VL_INTERP_NEAREST,
} VlInterp;

/* PIL's convert (): to 1 channel (L24 luma, alpha ignored) or to 3 channels (gray replicated,
 * alpha dropped). Returns NULL when img already has `channels`. */
VlImage *vl_image_convert     (const VlImage *img, int channels);

/* Pillow-exact resize of an 8-bit image. */
VlImage *vl_image_resize      (const VlImage *img, int width, int height, VlInterp interp);

typedef struct {
  int      channels;     /* model input channels (1 or 3) */
  int      size;         /* crop size (square), e.g. 224 */
  double   crop_pct;     /* e.g. 0.9 -> shorter side to floor(size / crop_pct) */
  VlInterp interp;
  float    mean[4];
  float    std[4];
} VlPreprocess;

/* timm eval transform: shorter side to floor(size / crop_pct) keeping aspect (torchvision
 * Resize rule: long side int(new_short * long / short)), center crop size x size (top/left =
 * round((dim - size) / 2)), scale to [0,1], (x - mean) / std. Writes CHW floats
 * (channels * size * size) into out. */
void     vl_preprocess_eval   (const VlImage *img, const VlPreprocess *pp, float *out);

/* File-name extensions (lower case, without the dot; NULL-terminated) of the formats
 * vl_image_load decodes (stb_image). */
extern const char *const vl_image_extensions[];
/* Whether name ends in one of those extensions (any case) or, with also_undecodable, in one of an
 * image format stb_image cannot read (TIFF, WebP, PBM: a dataset lists those as skipped). */
gboolean vl_image_has_extension (const char *name, gboolean also_undecodable);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (VlImage, vl_image_free)

G_END_DECLS
