/* vl-window.h: vitlab's main window.
 *
 * A sidebar of settings (Backbone, Layer groups, Head, Data, Training) beside the main area
 * (Loss curves, Attention, Evaluation). Everything a user does goes through the window's actions
 * ("win.train", "win.pause", "win.stop", "win.load-backbone" (s), "win.load-data" (s),
 * "win.head" (s), "win.dark", ...); vl_window_update_actions decides what is enabled. Long work
 * (loading a checkpoint, scanning a dataset, decoding thumbnails, attention of the probe images,
 * training, export) runs on worker threads that get copies of their inputs; results come back
 * to the main loop, which only draws and drains coalesced events. */
#pragma once

#include <gtk/gtk.h>

#include "vl-model.h"

G_BEGIN_DECLS

#define VL_TYPE_WINDOW (vl_window_get_type ())
G_DECLARE_FINAL_TYPE (VlWindow, vl_window, VL, WINDOW, GtkApplicationWindow)

VlWindow *vl_window_new            (GtkApplication *app);
/* Opens a checkpoint (file or folder) on a worker thread; the spinner shows meanwhile. */
void      vl_window_open_backbone  (VlWindow *self, const char *path);
/* Opens a dataset (a vl_dataset_open spec: an image folder, fashion-mnist[:...], ...). */
void      vl_window_open_data      (VlWindow *self, const char *spec);
/* Opens a run folder: its settings, metrics and trained model. */
void      vl_window_open_run       (VlWindow *self, const char *run_dir);
/* Makes one image file (any format vl_image_load decodes: PNG, JPEG, BMP, GIF, TGA, PNM, ...)
 * the attention probe: the Attention page shows it with the pretrained backbone's attention,
 * beside the trained model's once a run has one. Decoding and attention run on a worker
 * thread; a file that does not decode is named in the error banner and the previous probe
 * stays. Without a backbone the image is shown alone until one is loaded. */
void      vl_window_open_probe     (VlWindow *self, const char *path);
/* What a drop on the window does (the GtkDropTarget's handler calls it): an image file becomes
 * the probe, a run folder opens the run, a checkpoint (.safetensors, or a folder with one) the
 * backbone, any other folder the dataset. Only the first file counts. FALSE when nothing was
 * opened (the banner says why). */
gboolean  vl_window_drop_files     (VlWindow *self, GSList *files);
/* The probe file (dropped, opened, --probe, or the shipped sample shown while no dataset is
 * open); NULL when there is none. */
const char *vl_window_get_probe_path (VlWindow *self);
/* The pretrained backbone whose layer groups the sidebar shows (NULL while none is loaded). */
VlModel  *vl_window_get_model      (VlWindow *self);
/* TRUE while anything loads in the background (backbone, dataset, run). */
gboolean  vl_window_is_loading     (VlWindow *self);
/* The backbone or the dataset asked for failed to load (an error banner says why). */
gboolean  vl_window_load_failed    (VlWindow *self);

G_END_DECLS
