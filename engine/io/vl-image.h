/* vl-image.h: decoding (libjpeg-turbo, libpng, stb_image for the rarer formats) and
 * timm-style evaluation preprocessing.
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

/* Largest image accepted, in pixels (width * height), and per side. */
#define VL_IMAGE_MAX_PIXELS (100 * 1000 * 1000)
#define VL_IMAGE_MAX_SIDE   65535
/* Most bytes decoding one image may allocate: 16-bit samples, HDR's floats and the decoders'
 * own frame buffers counted at their real size, and the conversion to other channels. */
#define VL_IMAGE_MAX_BYTES  ((guint64) 512 << 20)
/* Most bytes all the decodes running at once may allocate; a decode that would pass it waits
 * for the others. */
#define VL_IMAGE_DECODE_BUDGET ((guint64) 1 << 30)
/* Largest image file read. */
#define VL_IMAGE_MAX_FILE   ((guint64) 512 << 20)

/* Decodes JPEG (libjpeg-turbo), PNG (libpng), WebP (libwebp: the first frame of an animation),
 * TIFF (libtiff: the first page; 8-bit and 1-bit without alpha), BMP, GIF, TGA, PNM, HDR and PSD
 * (stb_image),
 * converting to `channels` (1 to 4; 0 keeps the file's). Errors (VL_ERROR) name the file and the
 * reason; empty, truncated and corrupt files, images above the limits above, and files smaller
 * than the pixels their header declares are refused before any pixel is decoded.
 * A JPEG's, PNG's or WebP's EXIF orientation (a phone's portrait photo is stored sideways with
 * tag 6) is applied: the image comes out upright, as image viewers, browsers and Pillow's
 * ImageOps.exif_transpose show it (Image.open alone does not turn it). */
VlImage *vl_image_load        (const char *path, int channels, GError **error);
VlImage *vl_image_load_memory (const uint8_t *data, size_t size, const char *name,
                               int channels, GError **error);
/* Reads only the header of the image file at path (what a dataset scan does for every file):
 * FALSE with an error "PATH: reason" when vl_image_load would refuse it for its header, its
 * size or the limits; else its size. */
gboolean vl_image_check_file  (const char *path, int *width, int *height, GError **error);
/* The same, with the upright size (as vl_image_load gives it) and the EXIF orientation the file
 * stores (1 to 8; 1 when it has none): the stored pixels are width x height when it is 1 to 4,
 * height x width when 5 to 8. */
gboolean vl_image_probe_file  (const char *path, int *width, int *height, int *orientation,
                               GError **error);
/* Pixels stored width x height (interleaved, `channels` bytes each) turned upright for an EXIF
 * orientation (1 to 8: 2 mirrored, 3 turned half round, 4 upside down, 5 transposed, 6 turned a
 * quarter clockwise to be upright, 7 transversed, 8 a quarter anticlockwise), as Pillow's
 * ImageOps.exif_transpose; NULL when the memory cannot be had. g_free the result. */
uint8_t *vl_orient_pixels     (const uint8_t *src, int width, int height, int channels,
                               int orientation, int *out_width, int *out_height);
/* A box (x0, y0, x1, y1) in the stored width x height frame of an image with that orientation,
 * moved to the upright frame in place. */
void     vl_orient_box        (float box[4], int width, int height, int orientation);
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
  gboolean squash;       /* the whole image resized to size x size instead (no crop, the aspect
                          * not kept: SigLIP's processors, timm's crop_mode "squash") */
  VlInterp interp;
  float    mean[4];
  float    std[4];
} VlPreprocess;

/* timm eval transform: shorter side to floor(size / crop_pct) keeping aspect (torchvision
 * Resize rule: long side int(new_short * long / short)), center crop size x size (top/left =
 * round((dim - size) / 2)), scale to [0,1], (x - mean) / std; with pp->squash the whole image
 * resized to size x size. Writes CHW floats (channels * size * size) into out. */
void     vl_preprocess_eval   (const VlImage *img, const VlPreprocess *pp, float *out);

/* File-name extensions (lower case, without the dot; NULL-terminated) of the formats
 * vl_image_load decodes. */
extern const char *const vl_image_extensions[];
/* Whether name ends in one of those extensions (any case) or, with also_undecodable, in one of an
 * image format vitlab cannot read (PBM, PIC: a dataset lists those as skipped). */
gboolean vl_image_has_extension (const char *name, gboolean also_undecodable);
/* The image dir/stem.EXT for the first of vl_image_extensions (lower, then upper case) that
 * exists, as a dataset layout names its images by stem (VOC's JPEGImages/); NULL when none does.
 * g_free the result. */
char    *vl_image_find_stem     (const char *dir, const char *stem);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (VlImage, vl_image_free)

G_END_DECLS
