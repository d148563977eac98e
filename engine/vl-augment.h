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

#include "vl-dataset.h"
#include "vl-image.h"

G_BEGIN_DECLS

/* Writes CHW floats (pp->channels * pp->size²) into out. img may have 1 to 4 channels; it is
 * converted to pp->channels as PIL's convert() does (luma L = (19595 R + 38470 G + 7471 B +
 * 2^15) >> 16, alpha dropped). */
void vl_augment_image   (const VlImage *img, const VlPreprocess *pp, VlAugment augment,
                         uint64_t seed, float *out);

/* Mirrors a CHW float image left-right in place. */
void vl_augment_flip_chw (float *x, int channels, int size);

G_END_DECLS
