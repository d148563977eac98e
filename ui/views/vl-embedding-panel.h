/* vl-embedding-panel.h: the embedding map as a result view of the window: the pretrained
 * features' 2-D PCA (VlEmbeddingView) and, after a run, the fine-tuned model's, side by side.
 * Hovering a point shows its thumbnail beside the maps (decoded on a worker thread with
 * vl_job_thumbnails); a click emits ::image-activated (path), whose default handler
 * opens the image in the desktop's viewer. It applies to every task (VlTaskView).
 *
 *   vl_embedding_panel_set_pretrained (panel, features, data);       // from VlKnnPanel
 *   vl_embedding_panel_start_finetuned (panel, trained, data);       // after a run
 *
 * The fine-tuned features come from a GTask that holds the trained model's lock while it runs
 * vl_features_extract over the same dataset (train, then val); a result whose cancellable is no
 * longer the panel's is dropped. */
#pragma once

#include <gtk/gtk.h>

#include "vl-features.h"
#include "vl-refs.h"

G_BEGIN_DECLS

#define VL_TYPE_EMBEDDING_PANEL (vl_embedding_panel_get_type ())
G_DECLARE_FINAL_TYPE (VlEmbeddingPanel, vl_embedding_panel, VL, EMBEDDING_PANEL, GtkBox)

/* The most points a map shows: a larger dataset is shown by every k-th image (the PCA and the
 * drawing run on the main thread). */
#define VL_EMBEDDING_MAX_POINTS 4000

typedef enum {
  VL_EMBEDDING_PRETRAINED,
  VL_EMBEDDING_FINETUNED,
} VlEmbeddingSide;

GtkWidget  *vl_embedding_panel_new              (void);
/* The pretrained map (f NULL: cleared, and the fine-tuned one with it). */
void        vl_embedding_panel_set_pretrained   (VlEmbeddingPanel *panel, const VlFeatures *f,
                                                 VlDataRef *data);
/* Extracts the trained model's features of data on a worker thread, then shows them. */
void        vl_embedding_panel_start_finetuned  (VlEmbeddingPanel *panel, VlTrainedRef *trained,
                                                 VlDataRef *data);
void        vl_embedding_panel_clear_finetuned  (VlEmbeddingPanel *panel);
gboolean    vl_embedding_panel_is_busy          (VlEmbeddingPanel *panel);
/* The map of one side (a VlEmbeddingView). */
GtkWidget  *vl_embedding_panel_get_view         (VlEmbeddingPanel *panel, VlEmbeddingSide side);
/* Points shown on a side (0: none). */
int64_t     vl_embedding_panel_get_n_points     (VlEmbeddingPanel *panel, VlEmbeddingSide side);
/* What hovering point i of a side does (i < 0: nothing hovered): the preview shows its name at
 * once and its thumbnail when decoded. */
void        vl_embedding_panel_hover            (VlEmbeddingPanel *panel, VlEmbeddingSide side,
                                                 int64_t i);
/* The thumbnail the preview shows (NULL: none yet) and the point it is of (-1: none). */
GdkPaintable *vl_embedding_panel_get_preview    (VlEmbeddingPanel *panel, int64_t *point);
/* The file of point i (the dataset's item name). */
const char *vl_embedding_panel_get_file         (VlEmbeddingPanel *panel, int64_t i);

G_END_DECLS
