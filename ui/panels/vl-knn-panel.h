/* vl-knn-panel.h: how good a backbone's features are for a dataset, before any training: DINO's
 * weighted k-NN (k 20, T 0.07) of the validation images among the training images, on the
 * pretrained features (CLS token after the final norm; the patch mean for a model without CLS),
 * shown on the data panel as "k-NN on these features: 97.4%" (pooled as the head is: CLS token,
 * patch mean or patch max); and, on request, the same at every
 * block's output from one pass (vl_features_extract_all_layers), drawn as a small chart.
 *
 *   panel = vl_knn_panel_new ();
 *   vl_knn_panel_start (VL_KNN_PANEL (panel), backbone_path, data, VL_FEATURE_POOL_TOKEN);
 *   g_signal_connect (panel, "features-changed", G_CALLBACK (show_map), self);
 *
 * The work runs as a GTask on a copy of its inputs (the backbone's path: the worker loads its own
 * model; a reference to the shared dataset), checks its cancellable between batches, and reports
 * progress coalesced (at most one idle queued); a result whose cancellable is no longer the
 * panel's is dropped. While it runs longer than a second the panel shows a progress bar with the
 * time left. */
#pragma once

#include <gtk/gtk.h>

#include "vl-features.h"
#include "vl-refs.h"

G_BEGIN_DECLS

#define VL_TYPE_KNN_PANEL (vl_knn_panel_get_type ())
G_DECLARE_FINAL_TYPE (VlKnnPanel, vl_knn_panel, VL, KNN_PANEL, GtkBox)

#define VL_KNN_K 20
#define VL_KNN_TEMPERATURE 0.07

GtkWidget        *vl_knn_panel_new                (void);
/* Starts (again) the k-NN probe of `data` under the backbone at `backbone`, on features pooled
 * as `pool` (the head's choice; the CLS token falls back to the patch mean for a model without
 * one); cancels the one in flight and clears the per-block chart. Nothing happens when those
 * very inputs already have a result or a job in flight. */
void              vl_knn_panel_start              (VlKnnPanel *panel, const char *backbone,
                                                   VlDataRef *data, VlFeaturePool pool);
/* Every block's k-NN (what the panel's button does); needs vl_knn_panel_start's inputs. */
void              vl_knn_panel_start_layers       (VlKnnPanel *panel);
/* The pooling of the panel's features. */
VlFeaturePool     vl_knn_panel_get_pool           (VlKnnPanel *panel);
/* Cancels any job and forgets the results. */
void              vl_knn_panel_clear              (VlKnnPanel *panel);
gboolean          vl_knn_panel_is_busy            (VlKnnPanel *panel);
/* The k-NN accuracy on the validation split (NAN before a result). */
double            vl_knn_panel_get_accuracy       (VlKnnPanel *panel);
/* Accuracy at each block's output, then after the final norm (n = depth + 1); NULL before. */
const double     *vl_knn_panel_get_layer_accuracy (VlKnnPanel *panel, int *n);
/* The pretrained features of train then val (NULL before a result). */
const VlFeatures *vl_knn_panel_get_features       (VlKnnPanel *panel);
/* The dataset those features are of (NULL before a result). */
VlDataRef        *vl_knn_panel_get_data           (VlKnnPanel *panel);
/* What the panel says (the result line, or the error). */
const char       *vl_knn_panel_get_text           (VlKnnPanel *panel);
/* The progress bar's fraction and whether it is shown. */
double            vl_knn_panel_get_progress       (VlKnnPanel *panel, gboolean *shown);

G_END_DECLS
