/* vl-augment.h: training augmentation of 8-bit images (seeded, deterministic).
 *
 * none    vl_preprocess_eval (timm's eval transform)
 * light   torchvision RandomResizedCrop(size, scale=(0.35, 1), ratio=(3/4, 4/3)) with bicubic
 *         resampling (Pillow-exact vl_image_resize of the cropped region), then
 *         RandomHorizontalFlip(0.5), then ToTensor + Normalize(pp->mean, pp->std)
 * strong  light, then ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4) in a random
 *         order (ImageEnhance semantics), then two RandAugment operations (magnitude 9 of 30)
 *
 * Every random draw comes from one VlRng seeded with `seed`: the same (image, pp, augment,
 * seed) always gives the same floats. */
#pragma once

#include <glib.h>
#include <stdint.h>

#include "vl-image.h"
#include "vl-rng.h"

G_BEGIN_DECLS

typedef enum {
  VL_AUGMENT_NONE,    /* eval transform (vl_preprocess_eval) */
  VL_AUGMENT_LIGHT,   /* random resized crop (scale 0.35-1, ratio 3/4-4/3) + horizontal flip */
  VL_AUGMENT_STRONG,  /* light + colour jitter + RandAugment-style operations */
} VlAugment;

/* "none", "light", "strong" (run.json, the CLI). */
const char *vl_augment_name        (VlAugment augment);
gboolean    vl_augment_from_string (const char *s, VlAugment *out);

/* One augmentation, drawn once and applied to an image and to its targets alike: the source
 * rectangle of the random resized crop (the whole image for none) and the flip, and the
 * generator's state for the colour operations of strong (drawn after them). */
typedef struct {
  VlAugment kind;
  int       src_w, src_h;                   /* the image it was drawn for */
  int       crop_x, crop_y, crop_w, crop_h;  /* in its pixels */
  gboolean  flip;                           /* mirrored left-right after resizing */
  VlRng     rng;
} VlAugmentParams;

/* Draws the parameters for an image of width x height: the same seed, the same draw. */
void vl_augment_draw    (VlAugment augment, uint64_t seed, int width, int height,
                         VlAugmentParams *p);
/* The image under drawn parameters (see vl_augment_image). */
void vl_augment_apply   (const VlImage *img, const VlPreprocess *pp, const VlAugmentParams *p,
                         float *out);
/* A label mask (src_w x src_h, one byte per pixel) under the same parameters: nearest
 * neighbour onto pp->size x pp->size, pixels outside the source filled with `fill` (e.g. 255,
 * ignored). For none, the eval transform's centre crop. */
void vl_augment_apply_mask  (const uint8_t *mask, const VlAugmentParams *p,
                             const VlPreprocess *pp, uint8_t fill, uint8_t *out);
/* Boxes (n, 4: x0, y0, x1, y1 in source pixels) under the same affine map, in output pixels,
 * clipped to the output; a box left with a side under min_size pixels is dropped. Writes the
 * kept boxes (and their labels) in order; returns how many. */
int  vl_augment_apply_boxes (const float *boxes, const int *labels, int n,
                             const VlAugmentParams *p, const VlPreprocess *pp, float min_size,
                             float *out, int *out_labels);

/* Writes CHW floats (pp->channels * pp->size²) into out. img may have 1 to 4 channels; it is
 * converted to pp->channels as PIL's convert() does (luma L = (19595 R + 38470 G + 7471 B +
 * 2^15) >> 16, alpha dropped). */
void vl_augment_image   (const VlImage *img, const VlPreprocess *pp, VlAugment augment,
                         uint64_t seed, float *out);

/* Segmentation's evaluation transform: the whole image resized (squashed, no crop) to
 * pp->size x pp->size with bicubic resampling, then ToTensor + Normalize; CHW floats. */
void vl_preprocess_squash (const VlImage *img, const VlPreprocess *pp, float *out);
/* Mirrors a CHW float image left-right in place. */
void vl_augment_flip_chw (float *x, int channels, int size);

G_END_DECLS
