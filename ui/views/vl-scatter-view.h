/* vl-scatter-view.h: a regression's validation predictions against the true values.
 *
 * One point per image (x: the true value, y: the predicted one, in the target's units), the
 * line y = x on which a perfect model's points would lie, the MAE, RMSE and R² in the corner.
 * Points are coloured by their absolute error (viridis, the worst in yellow). Hovering picks
 * the nearest point within a few pixels: it is ringed, its file and values are read out, and
 * ::point-hovered (index, or -1) lets the owner fetch its image, shown beside the read-out once
 * given with vl_scatter_view_set_thumbnail.
 *
 *   view = vl_scatter_view_new ();
 *   vl_scatter_view_set_result (view, &ev->metrics->reg, 0, "angle", names);
 *   g_signal_connect (view, "point-hovered", G_CALLBACK (load_thumbnail), win);
 *
 * Implements VlTaskView: it applies to regression. */
#pragma once

#include <gtk/gtk.h>

#include "vl-task.h"

G_BEGIN_DECLS

#define VL_TYPE_SCATTER_VIEW (vl_scatter_view_get_type ())
G_DECLARE_FINAL_TYPE (VlScatterView, vl_scatter_view, VL, SCATTER_VIEW, GtkWidget)

GtkWidget *vl_scatter_view_new            (void);
/* Copies target `target`'s predictions and true values from r (r->n points) with the names of
 * their images (r->n entries, indexed like r->pred's rows; NULL: none). */
void       vl_scatter_view_set_result     (VlScatterView *view, const VlRegressResult *r,
                                           int target, const char *target_name,
                                           const char *const *names);
void       vl_scatter_view_clear          (VlScatterView *view);
int        vl_scatter_view_get_n_points   (VlScatterView *view);
/* The point under the pointer (-1: none). */
int        vl_scatter_view_get_hovered    (VlScatterView *view);
/* The image of point `index` (shown while it is hovered); NULL removes it. */
void       vl_scatter_view_set_thumbnail  (VlScatterView *view, int index, GdkTexture *texture);
/* The pixel position of point `index` in the widget (for tests and keyboard users). */
gboolean   vl_scatter_view_point_position (VlScatterView *view, int index, double *x,
                                           double *y);
/* What the pointer handlers call: hover at (x, y), or x < 0 to leave. */
void       vl_scatter_view_hover_at       (VlScatterView *view, double x, double y);

G_END_DECLS
