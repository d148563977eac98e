/* vl-confusion-view.h: the confusion matrix of an evaluation.
 *
 * Rows are the true classes, columns the predicted ones (VlEvalResult->confusion, K x K,
 * row-major). Each cell shows its count and is coloured by its share of the row (the fraction
 * of that class's images predicted as the column's class): blue on the diagonal, orange off
 * it. The per-class accuracy (the diagonal over the row's total) stands beside each row, the
 * overall accuracy below. Hovering outlines the cell and explains it in a tooltip; a click
 * emits ::cell-activated (true_class, predicted_class), e.g. to open those images.
 *
 *   view = vl_confusion_view_new ();
 *   g_signal_connect (view, "cell-activated", G_CALLBACK (show_gallery), win);
 *   vl_confusion_view_set_result (view, &ev->metrics->val, (const char *const *) class_names);
 */
#pragma once

#include <gtk/gtk.h>
#include <stdint.h>

#include "vl-trainer.h"

G_BEGIN_DECLS

#define VL_TYPE_CONFUSION_VIEW (vl_confusion_view_get_type ())
G_DECLARE_FINAL_TYPE (VlConfusionView, vl_confusion_view, VL, CONFUSION_VIEW, GtkWidget)

GtkWidget *vl_confusion_view_new          (void);

/* Copies the K x K counts (row = true class) and the class names (K entries; NULL: "0",
 * "1", …). K = 0 clears the view. */
void       vl_confusion_view_set_data     (VlConfusionView *view, int n_classes,
                                           const int64_t *confusion,
                                           const char *const *class_names);
/* The same from an evaluation (its confusion matrix). */
void       vl_confusion_view_set_result   (VlConfusionView *view, const VlEvalResult *result,
                                           const char *const *class_names);
/* A line above the matrix (e.g. "epoch 7 · validation"); NULL: none. */
void       vl_confusion_view_set_title    (VlConfusionView *view, const char *title);

int        vl_confusion_view_get_n_classes (VlConfusionView *view);
int64_t    vl_confusion_view_get_count    (VlConfusionView *view, int true_class,
                                           int predicted_class);
/* Diagonal over row total; NAN for a class without images. */
double     vl_confusion_view_get_class_accuracy (VlConfusionView *view, int true_class);

/* Where a cell is, in widget coordinates (FALSE for indices out of range). */
gboolean   vl_confusion_view_get_cell_rect (VlConfusionView *view, int true_class,
                                            int predicted_class, graphene_rect_t *rect);
/* The cell under widget coordinates (x, y): TRUE and its indices, or FALSE. */
gboolean   vl_confusion_view_cell_at      (VlConfusionView *view, double x, double y,
                                           int *true_class, int *predicted_class);
/* What a click does: emits ::cell-activated for the cell under (x, y); FALSE beside it. */
gboolean   vl_confusion_view_activate_at  (VlConfusionView *view, double x, double y);
/* What pointer motion does: outlines the cell under (x, y) (x < 0: none). */
void       vl_confusion_view_hover_at     (VlConfusionView *view, double x, double y);

/* Renders the matrix on an opaque background (width, height <= 0: its natural size) and
 * writes it atomically. */
gboolean   vl_confusion_view_export_png   (VlConfusionView *view, const char *path, int width,
                                           int height, GError **error);

G_END_DECLS
