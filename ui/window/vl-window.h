/* vl-window.h: vitlab's main window.
 *
 * A sidebar of settings (Backbone, Layer groups, Head, Data, Training) beside the main area
 * (Loss curves, Attention, Evaluation). Everything a user does goes through the window's actions
 * ("win.train", "win.pause", "win.stop", "win.load-backbone" (s), "win.load-data" (s),
 * "win.head" (s), "win.dark", "win.open-preset" (s: a demo of vl-preset.h, or a recipe of the
 * training panel: linear-probe, last-blocks, full, progressive), ...); vl_window_update_actions
 * decides what is enabled. Long work
 * (loading a checkpoint, scanning a dataset, decoding thumbnails, attention of the probe images,
 * training, export) runs on worker threads that get copies of their inputs; results come back
 * to the main loop, which only draws and drains coalesced events. */
#pragma once

#include <gtk/gtk.h>

#include "vl-model.h"
#include "vl-image.h"
#include "vl-refs.h"
#include "vl-run-controller.h"

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

/* ---- What an embedding application or a test may read (main thread; nothing here is owned
 * by the caller, and nothing is notified: read it when a signal or a wait says it changed).
 * The widgets the window's template binds are reached with gtk_widget_get_template_child
 * (widget, VL_TYPE_WINDOW, "banner"), "main_stack", "chart", "head_panel", ... as named in
 * vl-window.ui; the k-NN panel is the data panel's (vl_data_panel_get_knn_panel). */

/* A run is training or paused. */
gboolean  vl_window_is_running     (VlWindow *self);
/* A backbone and a dataset are there and nothing stops a run ("win.train" is enabled so). */
gboolean  vl_window_can_train      (VlWindow *self);
/* The features pages (k-NN, embedding map, Try It) have work in flight. */
gboolean  vl_window_features_busy  (VlWindow *self);
/* The training configuration the panels describe (what "win.train" would start; a fresh run
 * folder in cfg->out_dir). Clear it with vl_train_config_clear. */
void      vl_window_config_from_ui (VlWindow *self, VlTrainConfig *cfg);

/* The task of the current (or last, or opened) run, or the one the dataset chose. */
VlTaskKind    vl_window_get_task          (VlWindow *self);
/* The backbone's checkpoint path (NULL while none is loaded). */
const char   *vl_window_get_backbone_path (VlWindow *self);
/* The dataset open (NULL while none is); take a vl_data_ref to keep it. */
VlDataRef    *vl_window_get_data          (VlWindow *self);
/* The trained model (after a run or an opened run folder; NULL before); hold its lock while
 * using its model. */
VlTrainedRef *vl_window_get_trained       (VlWindow *self);
/* A trained head exists (changing the head then asks first). */
gboolean      vl_window_has_trained       (VlWindow *self);
/* The current (or last, or opened) run's folder; NULL before any. */
const char   *vl_window_get_run_dir       (VlWindow *self);
/* The class names of the current (or opened) run, NULL-terminated; NULL before any. */
const char * const *vl_window_get_class_names (VlWindow *self);
/* The run controller whose signals (::event::KIND, ::drained) the window follows. */
VlRunController *vl_window_get_run_controller (VlWindow *self);
/* The current run's trainer is there and has finished (completed, stopped or failed). */
gboolean      vl_window_run_finished      (VlWindow *self);
gboolean      vl_window_is_paused         (VlWindow *self);
/* "win.stop" was asked and the run has not finished yet. */
gboolean      vl_window_stop_requested    (VlWindow *self);
/* The last run stopped with a checkpoint: "win.resume-run" continues it. */
gboolean      vl_window_is_resumable      (VlWindow *self);
/* How the last run ended. */
VlTrainEnd    vl_window_get_last_end      (VlWindow *self);
/* Steps and epochs of the current run as its events told; the PROBES events received. */
int64_t       vl_window_get_steps_done    (VlWindow *self);
int           vl_window_get_n_epochs_done (VlWindow *self);
int           vl_window_get_n_probe_events (VlWindow *self);
/* An export (folder, ONNX, recipe) is writing. */
gboolean      vl_window_is_exporting      (VlWindow *self);

/* The trained model's predictions of the validation split: being computed; classification's
 * per image (label and predicted class of image i < n); the dataset they index; whether a
 * segmentation run's masks or a detection run's boxes are there. */
gboolean      vl_window_predictions_busy  (VlWindow *self);
int           vl_window_get_n_predictions (VlWindow *self);
void          vl_window_get_prediction    (VlWindow *self, int i, int *label, int *predicted);
VlDataRef    *vl_window_get_predictions_data (VlWindow *self);
gboolean      vl_window_has_seg_predictions (VlWindow *self);
gboolean      vl_window_has_det_predictions (VlWindow *self);

/* The dataset's probe images: the pretrained attention being computed; how many are chosen and
 * how many loaded; image i (the crop the model sees); the patch grid of their maps; which of
 * their maps are there. */
typedef enum {
  VL_WINDOW_MAPS_PRETRAINED,   /* the pretrained backbone's attention */
  VL_WINDOW_MAPS_RUN,          /* the current run's rollout (PROBES events) */
  VL_WINDOW_MAPS_FINE_TUNED,   /* the trained model's attention */
} VlWindowMaps;
gboolean      vl_window_attention_busy    (VlWindow *self);
/* The validation items chosen as probes (their images may still be loading). */
int           vl_window_get_n_probes      (VlWindow *self);
int           vl_window_get_n_probe_images (VlWindow *self);
const VlImage *vl_window_get_probe_image  (VlWindow *self, int i);
void          vl_window_get_attention_grid (VlWindow *self, int *gh, int *gw);
gboolean      vl_window_has_probe_maps    (VlWindow *self, VlWindowMaps which);

/* The probe file (vl_window_open_probe) as the window holds it; the pointers are borrowed and
 * valid until the main loop runs again. */
typedef struct {
  const char    *path;          /* NULL: none */
  gboolean       shown;         /* the Attention page shows it (not a dataset probe) */
  gboolean       is_sample;     /* the shipped sample shown while no dataset is open */
  gboolean       busy;          /* its attention is being computed */
  const VlImage *image;         /* the crop the model sees; NULL before the first result */
  const float   *ref_attn;      /* (depth, heads, T, T) the pretrained backbone's, or NULL */
  const float   *now_attn;      /* the trained model's, or NULL */
  const float   *live_attn;     /* the running trainer's at live_step, or NULL */
  gsize          attn_len;      /* floats in each map: depth * heads * T * T */
  int64_t        live_step;
  guint64        live_serial;   /* the trainer's handle of it; 0: not given to a trainer */
  const char    *ref_class, *now_class, *live_class;   /* top classes, or NULL */
} VlWindowProbeState;
void          vl_window_get_probe_state   (VlWindow *self, VlWindowProbeState *state);

/* The dialogs open: the close and head-change confirmations, the last gallery (NULL: none). */
GtkWidget    *vl_window_get_close_dialog  (VlWindow *self);
GtkWidget    *vl_window_get_head_dialog   (VlWindow *self);
GtkWidget    *vl_window_get_gallery       (VlWindow *self);
/* FALSE: confirmations are answered yes without a dialog (scripted use, tests). */
void          vl_window_set_ask_confirmation (VlWindow *self, gboolean ask);
/* An information banner (dismissable) above the main area. */
void          vl_window_show_info         (VlWindow *self, const char *format, ...)
                                           G_GNUC_PRINTF (2, 3);
/* Stops the run without asking and closes the window once it has stopped (a checkpoint of the
 * position saved, as the close button's "Stop and Close" does); closes at once when none runs. */
void          vl_window_stop_and_close    (VlWindow *self);
/* The dataset asked for is open and its images are being shown, or none was asked for. */
gboolean      vl_window_dataset_shown     (VlWindow *self);

G_END_DECLS
