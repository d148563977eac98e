/* vl-backbone-panel.h: the Backbone sidebar page: the checkpoint (loading, its name and path,
 * the buttons to open one, the recent ones), its facts (family, geometry, parameters, input,
 * normalization, pretrained head, layer groups) and the stem choice with a note on what it
 * builds (its own template, vl-backbone-panel.ui). The owner loads the model and tells the panel.
 *
 * Properties: "stem" (a VlStemKind: VL_STEM_PATCH for the checkpoint's own, or a new conv or
 * mbconv stem), "loading" (read only), "editable" (FALSE while a run uses the backbone).
 *
 *   vl_backbone_panel_set_loading (panel, path);
 *   vl_backbone_panel_show_model (panel, model, path, seconds);   // or _set_failed
 */
#pragma once

#include <gtk/gtk.h>

#include "vl-model.h"

G_BEGIN_DECLS

#define VL_TYPE_BACKBONE_PANEL (vl_backbone_panel_get_type ())
G_DECLARE_FINAL_TYPE (VlBackbonePanel, vl_backbone_panel, VL, BACKBONE_PANEL, GtkBox)

GtkWidget  *vl_backbone_panel_new            (void);
void        vl_backbone_panel_set_loading    (VlBackbonePanel *panel, const char *path);
/* The load failed: the panel shows what it showed before (the model still open, or none). */
void        vl_backbone_panel_set_failed     (VlBackbonePanel *panel);
/* m's facts; the name is the checkpoint's own (its folder, or its file without .safetensors). */
void        vl_backbone_panel_show_model     (VlBackbonePanel *panel, VlModel *m, const char *path,
                                              double seconds);
/* The layer-groups row (the head changes it). */
void        vl_backbone_panel_set_groups_text (VlBackbonePanel *panel, const char *text);
void        vl_backbone_panel_set_recent     (VlBackbonePanel *panel, const char *const *paths);
int         vl_backbone_panel_get_n_recent   (VlBackbonePanel *panel);
VlStemKind  vl_backbone_panel_get_stem       (VlBackbonePanel *panel);
void        vl_backbone_panel_set_stem       (VlBackbonePanel *panel, VlStemKind kind);
/* What the panel says: the name shown, a fact ("family", "geometry", "params", "input",
 * "norm", "head", "groups"), the stem's note. */
const char *vl_backbone_panel_get_name       (VlBackbonePanel *panel);
const char *vl_backbone_panel_get_fact       (VlBackbonePanel *panel, const char *fact);
const char *vl_backbone_panel_get_stem_note  (VlBackbonePanel *panel);
/* Sets the name shown (tests of long names). */
void        vl_backbone_panel_set_name       (VlBackbonePanel *panel, const char *name);

G_END_DECLS
