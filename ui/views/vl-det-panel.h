/* vl-det-panel.h: the evaluation page's view of a detector: one validation image with its boxes
 * (VlBoxView: the truth dashed, the predictions solid, missed and false ones tagged), a slider
 * for the score threshold the boxes are drawn at, and a strip of the images the model does worst
 * on (most missed plus false boxes), each a button: activating one emits ::item-activated with
 * its item and the owner shows it with vl_det_panel_set_sample.
 *
 *   panel = vl_det_panel_new ();
 *   vl_det_panel_set_classes (panel, names);               // background first
 *   vl_det_panel_set_sample (panel, item, texture, w, h, truth, n_truth, dets, n_dets, title);
 *   vl_det_panel_set_worst (panel, n, items, thumbs, captions);
 *   g_signal_connect (panel, "item-activated", G_CALLBACK (show_item), win);
 *
 * Its "score-threshold" property is the box view's (VL_DET_PANEL_SCORE at first). Implements
 * VlTaskView: it applies to detection. */
#pragma once

#include <gtk/gtk.h>

#include "vl-coco-eval.h"

G_BEGIN_DECLS

/* The threshold the panel starts at, and the score the window ranks the worst images at. */
#define VL_DET_PANEL_SCORE 0.5

#define VL_TYPE_DET_PANEL (vl_det_panel_get_type ())
G_DECLARE_FINAL_TYPE (VlDetPanel, vl_det_panel, VL, DET_PANEL, GtkBox)

GtkWidget *vl_det_panel_new             (void);
/* The class names (NULL-terminated, the background first; copied). */
void       vl_det_panel_set_classes     (VlDetPanel *panel, const char *const *names);
/* Item `item` of the validation split: its picture (any size: drawn at width x height, the size
 * its boxes are in), its true boxes and the model's detections (copied), a title above it. */
void       vl_det_panel_set_sample      (VlDetPanel *panel, int item, GdkTexture *image,
                                         int width, int height, const VlCocoBox *truth,
                                         int n_truth, const VlCocoBox *dets, int n_dets,
                                         const char *title);
/* The strip: n items, their thumbnails and captions ("3 missed · 1 false"). */
void       vl_det_panel_set_worst       (VlDetPanel *panel, int n, const int *items,
                                         GdkTexture *const *thumbs, const char *const *captions);
void       vl_det_panel_clear           (VlDetPanel *panel);
/* The item shown (-1: none); the strip's length and its i-th item; activating it as a click
 * would (tests). */
int        vl_det_panel_get_item        (VlDetPanel *panel);
int        vl_det_panel_get_n_worst     (VlDetPanel *panel);
int        vl_det_panel_get_worst_item  (VlDetPanel *panel, int i);
void       vl_det_panel_activate_worst  (VlDetPanel *panel, int i);
GtkWidget *vl_det_panel_get_box_view    (VlDetPanel *panel);
double     vl_det_panel_get_score_threshold (VlDetPanel *panel);
void       vl_det_panel_set_score_threshold (VlDetPanel *panel, double threshold);

G_END_DECLS
