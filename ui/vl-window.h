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
/* The pretrained backbone whose layer groups the sidebar shows (NULL while none is loaded). */
VlModel  *vl_window_get_model      (VlWindow *self);
/* TRUE while anything loads in the background (backbone, dataset, run). */
gboolean  vl_window_is_loading     (VlWindow *self);

G_END_DECLS
