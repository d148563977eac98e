/* vl-embedding-view.h: a map of pooled features, projected to 2-D by PCA, one point per image
 * coloured by its class. Hovering a point names its file (tooltip); a click emits
 * ::point-activated (index), e.g. to open the image.
 *
 *   view = vl_embedding_view_new ();
 *   vl_embedding_view_set_features (view, f->features, f->n, f->dim, f->labels, f->n_classes,
 *                                   (const char *const *) f->class_names,
 *                                   (const char *const *) f->files);
 *
 * PCA: the rows are centred and projected on the two leading eigenvectors of their covariance
 * (orthogonal iteration in double, then the 2 x 2 Rayleigh-Ritz step), each axis signed so that
 * its largest-magnitude loading is positive. The compute is small (D x D for D features) and runs
 * on the caller's thread: give it pooled features (hundreds of dimensions), not all tokens. */
#pragma once

#include <gtk/gtk.h>
#include <stdint.h>

G_BEGIN_DECLS

#define VL_TYPE_EMBEDDING_VIEW (vl_embedding_view_get_type ())
G_DECLARE_FINAL_TYPE (VlEmbeddingView, vl_embedding_view, VL, EMBEDDING_VIEW, GtkWidget)

GtkWidget  *vl_embedding_view_new            (void);

/* Copies the rows (n, dim), their labels (0 … n_classes-1), the class names (NULL: "0", "1", …)
 * and the file names (NULL: none) and projects them. n = 0 clears the view. */
void        vl_embedding_view_set_features   (VlEmbeddingView *view, const float *features,
                                              int64_t n, int dim, const int *labels,
                                              int n_classes, const char *const *class_names,
                                              const char *const *files);
/* A line above the map (e.g. "pretrained · CLS token"); NULL: none. */
void        vl_embedding_view_set_title      (VlEmbeddingView *view, const char *title);

int64_t     vl_embedding_view_get_n_points   (VlEmbeddingView *view);
/* Point i's coordinates on the two principal axes. */
void        vl_embedding_view_get_coords     (VlEmbeddingView *view, int64_t i, double *pc1,
                                              double *pc2);
/* The share of the total variance on axis 0 or 1. */
double      vl_embedding_view_get_explained  (VlEmbeddingView *view, int axis);
/* Where point i is drawn, in widget coordinates. */
gboolean    vl_embedding_view_get_point_position (VlEmbeddingView *view, int64_t i, double *x,
                                                  double *y);
/* The point nearest to (x, y) within 8 pixels, or -1. */
int64_t     vl_embedding_view_point_at       (VlEmbeddingView *view, double x, double y);
/* What pointer motion does: highlights the point under (x, y) (x < 0: none) and returns it. */
int64_t     vl_embedding_view_hover_at       (VlEmbeddingView *view, double x, double y);
/* The tooltip of the point under the pointer: its file and class (NULL when none). */
const char *vl_embedding_view_get_hover_text (VlEmbeddingView *view);
/* What a click does: emits ::point-activated for the point under (x, y); FALSE when none. */
gboolean    vl_embedding_view_activate_at    (VlEmbeddingView *view, double x, double y);
/* The colour of class k (r, g, b in [0, 1]). */
void        vl_embedding_view_class_colour   (int k, double rgb[3]);

/* Renders the map on an opaque background (width, height <= 0: 480 x 400) and writes it
 * atomically as PNG. */
gboolean    vl_embedding_view_export_png     (VlEmbeddingView *view, const char *path,
                                              int width, int height, GError **error);

G_END_DECLS
