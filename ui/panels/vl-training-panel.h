/* vl-training-panel.h: the Training sidebar page: the recipe preset, the hyperparameters and the
 * run folder (its own template, vl-training-panel.ui).
 *
 * Every hyperparameter is a property ("epochs", "batch-size", "lr", "weight-decay",
 * "warmup-epochs", "layer-decay", "label-smoothing", "seed"), notified when it changes; a change
 * made by the user or through a property turns the preset to Custom and emits ::hyper-edited.
 * Choosing a preset in its dropdown emits ::preset-chosen (the owner fills in what the preset
 * covers beyond this page, then calls vl_training_panel_apply_preset). "editable" FALSE greys
 * the page while a run uses it; "run-dir" is the folder shown.
 *
 *   panel = vl_training_panel_new ();
 *   g_object_set (panel, "epochs", 3, "lr", 0.01, NULL);
 *   vl_training_panel_to_config (panel, &cfg);
 */
#pragma once

#include <gtk/gtk.h>

#include "vl-trainer.h"

G_BEGIN_DECLS

/* The recipes of the preset dropdown, in its order. */
typedef enum {
  VL_PRESET_LINEAR_PROBE,
  VL_PRESET_LAST_BLOCKS,
  VL_PRESET_FULL,
  VL_PRESET_PROGRESSIVE,
  VL_PRESET_CUSTOM,
} VlRecipePreset;

#define VL_TYPE_TRAINING_PANEL (vl_training_panel_get_type ())
G_DECLARE_FINAL_TYPE (VlTrainingPanel, vl_training_panel, VL, TRAINING_PANEL, GtkBox)

GtkWidget     *vl_training_panel_new          (void);
/* epochs, batch size, lr, weight decay, warmup, layer decay, label smoothing and seed into cfg. */
void           vl_training_panel_to_config    (VlTrainingPanel *panel, VlTrainConfig *cfg);
/* The same from cfg, the preset then Custom; no ::hyper-edited. */
void           vl_training_panel_from_config  (VlTrainingPanel *panel, const VlTrainConfig *cfg);
/* The preset's values of this page (lr, weight decay, warmup, layer decay, label smoothing;
 * the others stay) and the dropdown on it; no ::hyper-edited, no ::preset-chosen. */
void           vl_training_panel_apply_preset (VlTrainingPanel *panel, VlRecipePreset preset);
VlRecipePreset vl_training_panel_get_preset   (VlTrainingPanel *panel);
/* The dropdown on Custom (something the preset sets elsewhere changed); no signal. */
void           vl_training_panel_set_custom   (VlTrainingPanel *panel);
void           vl_training_panel_set_run_dir  (VlTrainingPanel *panel, const char *text,
                                               const char *tooltip);
int            vl_training_panel_get_epochs   (VlTrainingPanel *panel);
double         vl_training_panel_get_layer_decay (VlTrainingPanel *panel);
uint64_t       vl_training_panel_get_seed     (VlTrainingPanel *panel);

G_END_DECLS
