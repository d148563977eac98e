/* vl-box-view.h: a detector's boxes over their image.
 *
 * The image scaled to fit (aspect kept); the ground truth dashed, the predictions solid, each
 * in its class's colour (the Pascal VOC colour of class k + 1, as the segmentation masks colour
 * class k + 1 over the background) with "class 0.87" on a tab. Only predictions scoring at least
 * the score threshold are drawn; a ground-truth box no shown prediction matches (same class, IoU
 * >= 0.5, COCO's greedy rule: vl_det_image_errors) is tagged "missed", a shown prediction that
 * matches none "false". A line under the image counts them.
 *
 *   view = vl_box_view_new ();
 *   vl_box_view_set_image (view, texture);          // boxes are in its pixels
 *   vl_box_view_set_boxes (view, truth, n_truth, dets, n_dets, class_names);
 *   g_object_set (view, "score-threshold", 0.3, NULL);
 *
 * Implements VlTaskView: it applies to detection. */
#pragma once

#include <gtk/gtk.h>

#include "vl-coco-eval.h"

G_BEGIN_DECLS

#define VL_TYPE_BOX_VIEW (vl_box_view_get_type ())
G_DECLARE_FINAL_TYPE (VlBoxView, vl_box_view, VL, BOX_VIEW, GtkWidget)

GtkWidget *vl_box_view_new                 (void);
/* The image the boxes are drawn over (NULL: none; the boxes alone over a blank of the size
 * set by vl_box_view_set_boxes' image_w / image_h). */
void       vl_box_view_set_image           (VlBoxView *view, GdkTexture *image);
/* Copies the boxes (x1, y1, x2, y2 in the image's pixels; .image is ignored, .score of truth
 * too) and the class names (NULL-terminated; NULL: "class k"). image_w, image_h: the size the
 * boxes refer to (the image's own size). */
void       vl_box_view_set_boxes           (VlBoxView *view, int image_w, int image_h,
                                            const VlCocoBox *truth, int n_truth,
                                            const VlCocoBox *dets, int n_dets,
                                            const char *const *class_names);
void       vl_box_view_clear               (VlBoxView *view);
/* A dataset's own boxes (TRUE): each true box tagged with its class name, none "missed", no
 * line of counts under the image (the Data panel's training images). */
void       vl_box_view_set_truth_only      (VlBoxView *view, gboolean truth_only);
void       vl_box_view_set_score_threshold (VlBoxView *view, double threshold);
double     vl_box_view_get_score_threshold (VlBoxView *view);
/* What is drawn at the current threshold: predictions shown, missed ground truth, false
 * predictions (any may be NULL). */
void       vl_box_view_get_counts          (VlBoxView *view, int *shown, int *missed,
                                            int *false_pos);
/* Where the last drawing put prediction det's tab of text (x, y, width, height in the widget);
 * FALSE when it drew none (under the threshold, or not drawn yet). Tabs are placed the best
 * score first, each where it covers no other if it can. */
gboolean   vl_box_view_get_tab             (VlBoxView *view, int det, double rect[4]);
/* The text the last drawing put on true box g's tab ("dog · missed"; in truth-only mode the
 * class name), or NULL when it drew none. */
const char *vl_box_view_get_truth_tab      (VlBoxView *view, int g);

G_END_DECLS
