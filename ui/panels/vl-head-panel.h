/* vl-head-panel.h: the Head sidebar page: the task, the settings of its head and a note on what
 * the head will be (its own template, vl-head-panel.ui).
 *
 * Properties: "task" (a VlTaskKind: the dropdown, and which settings show: the classifier's
 * pooling and MLP for classification and regression, the loss for regression, the seg head for
 * segmentation, the input size for segmentation and detection), "reg-loss" (VlRegLoss),
 * "seg-head" (VlSegHeadKind), "input-size" (0: the backbone's), "mlp-hidden", "mlp-editable";
 * "settings" (read only) names the settings shown, e.g. "seg-head,input-size".
 * The classifier's four choices are buttons of the window's "win.head" action. A change by the
 * user notifies the property; the owner writes the note (vl_head_panel_set_note).
 *
 *   g_object_set (panel, "task", VL_TASK_SEGMENT, "input-size", 40, NULL);
 *   g_signal_connect_swapped (panel, "notify::task", G_CALLBACK (on_task), win);
 */
#pragma once

#include <gtk/gtk.h>

#include "vl-trainer.h"

G_BEGIN_DECLS

#define VL_TYPE_HEAD_PANEL (vl_head_panel_get_type ())
G_DECLARE_FINAL_TYPE (VlHeadPanel, vl_head_panel, VL, HEAD_PANEL, GtkBox)

GtkWidget    *vl_head_panel_new            (void);
VlTaskKind    vl_head_panel_get_task       (VlHeadPanel *panel);
void          vl_head_panel_set_task       (VlHeadPanel *panel, VlTaskKind task);
VlRegLoss     vl_head_panel_get_reg_loss   (VlHeadPanel *panel);
VlSegHeadKind vl_head_panel_get_seg_head   (VlHeadPanel *panel);
int           vl_head_panel_get_input_size (VlHeadPanel *panel);
int           vl_head_panel_get_mlp_hidden (VlHeadPanel *panel);
void          vl_head_panel_set_note       (VlHeadPanel *panel, const char *note);
/* The settings shown for the task, comma-separated: classifier, loss, seg-head, input-size. */
char         *vl_head_panel_get_settings   (VlHeadPanel *panel);
const char   *vl_head_panel_get_note       (VlHeadPanel *panel);

G_END_DECLS
