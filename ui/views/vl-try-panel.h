/* vl-try-panel.h: "Try it": new images (dropped, opened, or every image of a folder) through a
 * trained model — the finished run's or an opened run's — each shown with its top classes and
 * their probabilities (a regression run: its predicted values, in the targets' own units), the
 * crop the model saw and its attention rollout; a segmentation run's mask over the image it saw
 * (at the run's input size) with the classes' shares, a detection run's boxes scoring at least
 * 0.5 drawn on the image with their list; all predictions export as one CSV table.
 *
 *   vl_try_panel_set_model (panel, trained, run_dir, VL_TASK_CLASSIFY, class_names, NULL);
 *   const char *files[] = { "bee.jpg", "more-images/", NULL };
 *   vl_try_panel_add_files (panel, files);
 *
 * A GTask with a copy of its inputs (the paths, a reference to the model) expands folders,
 * decodes each image, runs it with VL_FORWARD_CAPTURE_ATTN under the model's lock and takes
 * vl_model_rollout; results are queued under a mutex and drained by at most one idle, so rows
 * appear while it works. A new model cancels the job in flight (its late results are dropped)
 * and runs the panel's images again. An image that cannot be read is a row naming the file and
 * the problem. It applies to every task (VlTaskView). A failure of its own (the CSV could not be
 * written) is emitted as ::failed with a message for the owner to show. */
#pragma once

#include <gtk/gtk.h>

#include "vl-refs.h"

G_BEGIN_DECLS

#define VL_TYPE_TRY_PANEL (vl_try_panel_get_type ())
G_DECLARE_FINAL_TYPE (VlTryPanel, vl_try_panel, VL, TRY_PANEL, GtkBox)

#define VL_TRY_TOP 3

GtkWidget  *vl_try_panel_new             (void);
/* The model to try (NULL: none). run_dir (may be NULL) gives a regression run's
 * standardisation (run.json); class_names (K) or value_names (the targets) name the outputs. */
void        vl_try_panel_set_model       (VlTryPanel *panel, VlTrainedRef *trained,
                                          const char *run_dir, VlTaskKind task,
                                          const char *const *class_names,
                                          const char *const *value_names);
gboolean    vl_try_panel_has_model       (VlTryPanel *panel);
/* Images or folders (their images, sorted by name, not recursing) to add. */
void        vl_try_panel_add_files       (VlTryPanel *panel, const char *const *paths);
void        vl_try_panel_clear           (VlTryPanel *panel);
gboolean    vl_try_panel_is_busy         (VlTryPanel *panel);
int         vl_try_panel_get_n_results   (VlTryPanel *panel);
/* Result i: its file, and either the error (the rest unset) or, classifying, the top class
 * index and its probability, or, regressing, the first predicted value (in *prob). */
const char *vl_try_panel_get_result      (VlTryPanel *panel, int i, const char **error,
                                          int *top_class, double *prob);
/* Result i's rollout over the patch grid (gh * gw floats; NULL for an error). */
const float *vl_try_panel_get_rollout    (VlTryPanel *panel, int i, int *gh, int *gw);
/* A segmentation or detection result's text (the classes' shares; the boxes); NULL otherwise. */
const char  *vl_try_panel_get_summary    (VlTryPanel *panel, int i);
/* Every prediction as CSV: "file,predicted,probability,p_<class>…" (classification) or
 * "file,<target>…" (regression); images that could not be read are left out. */
gboolean    vl_try_panel_export_csv      (VlTryPanel *panel, const char *path, GError **error);

G_END_DECLS
