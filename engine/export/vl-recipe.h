/* vl-recipe.h: a run's recipe as a PyTorch script, for a cluster (vitlab-cli export-recipe).
 *
 * vl_recipe_export (run, out) writes into the folder out:
 *   train.py     data/recipe/train.py (vl_data_path), as is: it reads everything of the run
 *                from run.json at run time (DDP under torchrun, or one process)
 *   run.json     the run's own
 *   backbone/    the run's pretrained backbone in timm's layout (vl_model_export), with the head
 *                initialised as the trainer initialises it for the run's seed
 *   order.json   with with_order: the trainer's order of the training items in each epoch
 *                (paths relative to the dataset folder), for train.py --vitlab-order
 *   README.md    the commands: one process, torchrun on one machine, on several
 * It covers classify, regress and segment runs (backbone/seg_head.safetensors: the seg head as
 * the trainer initialises it) from a pretrained backbone with timm's layer grouping
 * (stem, blocks, norm, head) and an unlock schedule; anything else is refused with an error
 * naming run.json and the reason. *note (may be NULL) gets advice the caller should show, or
 * NULL. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

gboolean vl_recipe_export (const char *run_dir, const char *out_dir, gboolean with_order,
                           char **note, GError **error);

G_END_DECLS
