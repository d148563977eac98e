/* vl-preset.h: the named recipes that `vitlab-cli train --preset NAME` and the app's
 * `--preset NAME` (and its Demos menu) share — one table, so both run the same experiment:
 *
 *   demo             the default transfer experiment: vitlab's own Fashion-MNIST backbone
 *                    (pretrained on classes 0-4) to classes 5-9 with 100 images per class,
 *                    validated on their 5,000 test images; progressive unfreezing
 *   rotate           regression: the angle each garment was turned by, on the shipped backbone
 *   scenes           segmentation: Fashion-MNIST garments placed on a canvas, a mask per pixel,
 *                    on the shipped backbone; progressive unfreezing
 *   boxes            detection: the same scenes, each garment's box (FCOS), on the shipped
 *                    backbone; progressive unfreezing
 *   pretrain-fmnist  how the shipped backbone was made, from scratch
 *
 *   VlTrainConfig c;
 *   vl_train_config_init (&c);
 *   if (!vl_preset_apply (&c, "scenes")) ...;   // options given after it override it
 */
#pragma once

#include <glib.h>

#include "vl-trainer.h"

G_BEGIN_DECLS

typedef struct {
  const char   *name;
  const char   *title;          /* for menus: "Fashion-MNIST scenes (segmentation)" */
  VlTaskKind    task;
  const char   *backbone;       /* under vl_data_path (NULL: none, e.g. from scratch) */
  gboolean      init_random;
  const char   *geometry;       /* with init_random and no backbone */
  const char   *data;           /* a vl_dataset_open spec */
  const char   *unlock_schedule;
  int           epochs, batch_size;
  double        lr, weight_decay, warmup_epochs, label_smoothing;
  double        layer_decay;    /* 0: none (1) */
  VlAugment     augment;
  gboolean      cache_features;
  VlSegHeadKind seg_head;       /* segment */
  int           img_size;       /* segment, detect: 0 = the backbone's input size */
} VlPreset;

/* The presets, in menu order; *n receives their number. */
const VlPreset *vl_presets      (int *n);
/* NULL when there is no preset of that name. */
const VlPreset *vl_preset_find  (const char *name);
/* Fills c (set up by vl_train_config_init) with the preset's recipe; FALSE when name is none. */
gboolean        vl_preset_apply (VlTrainConfig *c, const char *name);
/* "demo, rotate, scenes, pretrain-fmnist" (g_free). */
char           *vl_preset_names (void);

G_END_DECLS
