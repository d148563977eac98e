/* vl-window-private.h: the window's state, shared by the files that implement it. Tests
 * include it to read the window's state. Everything here is main-thread only.
 *
 * The files call each other only downward (tests/check-window-calls.py checks that no
 * circle forms and that no part calls up into vl-window.c; the "window-calls" test runs it),
 * from the top:
 *   vl-window.c           the type, actions, drag and drop; init and dispose of the parts
 *   vl-window-train.c     the run: configuration, events, predictions, opening runs
 *   vl-window-task.c      the task's views and labels, each epoch's evaluation in them
 *   vl-window-export.c    export, saving the run folder
 *   vl-window-gallery.c   the confusion cells' gallery
 *   vl-window-backbone.c  the backbone, layer groups and head
 *   vl-window-seg.c, vl-window-det.c   the dense tasks' views
 *   vl-window-data.c      the dataset, thumbnails
 *   vl-window-attention.c the dataset's probes and their attention
 *   vl-window-probe.c     the probe file
 *   vl-window-features.c  k-NN, embedding map, "Try it"
 *   vl-window-status.c    the status bar, banner, what is enabled, dialogs (calls none)
 * What a lower part has to tell a higher one goes through the window's signals, emitted by
 * name (g_signal_emit_by_name) and connected in the listeners' init, in the order of
 * vl_window_init:
 *   "backbone-changed"  a backbone was loaded (vl-window-backbone.c)
 *   "dataset-changed"   a dataset was opened (vl-window-data.c)
 *   "probes-changed"    the probe file's maps arrived (vl-window-probe.c) */
#pragma once

#include "vl-window.h"
#include "vl-trainer.h"
#include "vl-threads.h"
#include "vl-attention.h"
#include "vl-run-controller.h"
#include "vl-training-panel.h"
#include "vl-head-panel.h"
#include "vl-backbone-panel.h"
#include "vl-data-panel.h"
#include "vl-groups-panel.h"
#include "vl-status-bar.h"
#include "vl-stat-cards.h"
#include "vl-eval-card.h"
#include "vl-attention-bar.h"
#include "vl-jobs.h"
#include "vl-predictions.h"
#include "vl-refs.h"
#include "vl-format.h"

G_BEGIN_DECLS



/* The probes' attention: the dataset's probe images (vl-window-attention.c) and the probe file
 * (vl-window-probe.c), their pretrained attention (the reference side) and the run's maps. The
 * window holds one (self->probes), from its init to its finalize. */
typedef struct
{
  GCancellable *cancel;              /* pretrained attention of the probe images */
  int           n;
  int          *index;               /* val items of the probes (the trainer's choice) */
  int           selected;
  int           n_images;
  VlImage     **images;              /* (n_images) the crops the model sees */
  int          *labels;              /* (n_images) */
  char        **names;               /* (n_images + 1) */
  float        *ref_attn;            /* (n_images, depth, heads, T, T) pretrained */
  float        *ref_rollout;         /* (n_images, gh * gw) pretrained */
  float        *ref_pool;            /* (n_images, heads, gh * gw) its attention pool's; NULL */
  int           depth, heads, T, prefix, gh, gw;
  gboolean      cls;
  float        *rollout;             /* (n_images, gh * gw) latest PROBES event; NULL before */
  float        *live_pool;           /* (n_images, heads, gh * gw) its attention pool's, or NULL */
  int          *predicted;           /* (n_images) */
  int           n_rollout;
  float        *final_attn;          /* (n_images, depth, heads, T, T) the trained model's */
  float        *final_pool;          /* (n_images, heads, gh * gw) its attention pool's; NULL */
  int           final_T;
  /* the probe file, shown instead of a dataset probe while file_shown */
  VlProbeFile   file;
  gboolean      file_shown;
  gboolean      file_stale;          /* its maps are not of the current models: recompute */
  GCancellable *file_cancel;         /* a probe file's attention in flight; NULL when none */
  char         *pending;             /* the file in flight (not yet file.path) */
  gboolean      pending_sample, pending_user;
} VlProbeState;

/* The trained model's predictions of the validation split (vl-window-train.c starts them; the
 * gallery, vl-window-seg.c and vl-window-det.c show them). The window holds one (self->pred),
 * from its init to its finalize. */
typedef struct
{
  GCancellable     *cancel;          /* the job in flight; NULL when none */
  VlPredictions     cls;             /* a classifier's, for the confusion cells' gallery */
  VlDataRef        *data;            /* the dataset the predictions index */
  VlSegPredictions *seg;             /* segmentation: the masks */
  VlDetPredictions *det;             /* detection: the boxes */
} VlPredState;

struct _VlWindow
{
  GtkApplicationWindow parent_instance;

  GSettings *settings;

  /* ---- template children ---- */
  GtkWidget *header_bar;
  GtkWidget *train_button;
  GtkWidget *train_button_label;
  GtkWidget *pause_button;
  GtkWidget *stop_button;
  GtkWidget *dark_button;
  GtkWidget *banner;
  GtkWidget *banner_label;
  GtkWidget *paned;
  GtkWidget *side_stack;
  GtkWidget *main_stack;
  GtkWidget *main_scroller;   /* the main area scrolls rather than widen the window */
  /* backbone page: VlBackbonePanel (the checkpoint, its facts, the stem choice) */
  GtkWidget *backbone_panel;
  /* layer groups page: VlGroupsPanel (N, a switch per group, the schedule; the model's lock) */
  GtkWidget *groups_panel;
  /* head page: VlHeadPanel (the task, its head's settings, the note) */
  GtkWidget *head_panel;
  /* data page: VlDataPanel (the dataset, its classes' cards, skipped files, augmentation) */
  GtkWidget *data_panel;
  /* training page: VlTrainingPanel (the preset, the hyperparameters, the run folder) */
  GtkWidget *training_panel;
  /* main area */
  GtkWidget *stat_cards;      /* VlStatCards: epoch, losses, the task's score, what trains */
  GtkWidget *chart_frame, *attention_frame, *confusion_frame;
  GtkWidget *message_label;
  GtkWidget *eval_card;        /* VlEvalCard: the rows per class or target, the summary */
  /* the task: its choice in the head panel, the views and labels that follow it */
  GtkWidget *scatter, *eval_caption;
  GCancellable *scatter_thumb_cancel;
  char        **value_names;         /* regression: the targets' names (the run's) */
  /* status bar: VlStatusBar (the text, spinner, speed, ETA, progress; the text after a run) */
  GtkWidget *status_bar;

  /* the embedded views */
  GtkWidget *chart;          /* VlLossChart */
  GtkWidget *attention;      /* VlAttentionView */
  GtkWidget *confusion;      /* VlConfusionView */
  GtkWidget *attn_bar;       /* VlAttentionBar: the probe buttons, the view's controls */
  /* features (vl-window-features.c): k-NN on the data panel, the embedding map, "Try it" */
  GtkWidget *knn_panel, *embedding_panel, *try_panel;

  /* ---- the backbone (the pretrained model; its lock state is what the switches show) ---- */
  char         *backbone_path;
  VlModel      *model;
  GCancellable *backbone_cancel;     /* the load in flight; NULL when none */
  gboolean      syncing;             /* set while code moves switches/spin (no feedback) */

  /* head */
  char         *head;                /* "linear-token", "linear-avg", "linear-max", "mlp" */

  /* ---- the dataset ---- */
  VlDataRef    *data;
  char         *data_spec;           /* the spec chosen (may still be loading) */
  GCancellable *data_cancel;
  GCancellable *thumbs_cancel;
  /* the probes and their attention (vl-window-attention.c, vl-window-probe.c) */
  VlProbeState *probes;

  /* ---- training ---- */
  VlRunController *run;              /* the current run's trainer and its events as signals;
                                      * from the window's init to its finalize */
  VlRunProgress *progress;           /* the run's counters and state (the controller's) */
  VlTaskKind    task;                /* of the current (or last, or opened) run */
  gboolean      finished_in_drain;   /* the drain being handled carried FINISHED */
  VlTrainedRef *trained;             /* the trained model (after a run, or an opened run) */
  gboolean      close_after_stop;
  gboolean      suppress_confirm;    /* tests: skip confirmation dialogs (answer yes) */
  char         *run_dir;
  gboolean      run_resumable;       /* stopped with a checkpoint: win.resume-run */
  gboolean      have_trained;        /* a trained head exists (changing the head asks) */
  int           n_classes;
  char        **class_names;
  int64_t      *confusion_counts;    /* (K, K) of the last EPOCH */
  /* the trained model's predictions of the validation images (the gallery's, the mask and
   * box views') */
  VlPredState  *pred;
  gboolean      exporting;
  gboolean      saving;
  gboolean      opening_run;

  /* confirmations (tests answer them through these) */
  GtkWidget    *close_dialog;
  GtkWidget    *head_dialog;
  GtkWidget    *gallery;             /* the last gallery dialog */

  /* segmentation (vl-window-seg.c): the seg head and input size in the head panel, the mask
   * view (the trained model's masks of the validation images: pred->seg) */
  GtkWidget    *mask_view;
  /* detection (vl-window-det.c): the box view, its threshold and worst strip (VlDetPanel; the
   * trained model's boxes of the validation images: pred->det); the input size is the head
   * panel's */
  GtkWidget    *det_panel;

  gboolean      dark;
  gboolean      disposed;            /* late task results are dropped */
};

/* vl-window-status.c: the leaf every part calls (it calls none of them) */
void  vl_window_update_actions   (VlWindow *self);
void  vl_window_show_error       (VlWindow *self, const char *format, ...) G_GNUC_PRINTF (2, 3);
void  vl_window_set_status       (VlWindow *self, const char *text);
void  vl_window_update_status    (VlWindow *self);
gboolean vl_window_is_running    (VlWindow *self);
gboolean vl_window_can_train     (VlWindow *self);
void  vl_window_choose_file      (VlWindow *self, const char *title, GtkFileChooserAction action,
                                  const char *accept, const char *settings_key,
                                  GtkFileFilter *filter,
                                  void (*done) (VlWindow *self, GFile *file));
void  vl_window_confirm          (VlWindow *self, GtkWidget **slot, const char *primary,
                                  const char *secondary, const char *accept,
                                  void (*done) (VlWindow *self, gboolean accepted));
gboolean vl_window_data_loading  (VlWindow *self);
int   vl_window_unlocked_suffix  (VlWindow *self);          /* N, or -1 when not a suffix */
char *vl_window_unlock_schedule  (VlWindow *self);          /* the schedule string */
/* The input side of a segmentation or detection run (0: the backbone's; always 0 for the
 * other tasks). */
int   vl_window_dense_input_size (VlWindow *self);

/* vl-window-backbone.c */
void  vl_window_backbone_init    (VlWindow *self);
void  vl_window_backbone_dispose (VlWindow *self);
void  vl_window_refresh_recent   (VlWindow *self);
void  vl_window_sync_groups      (VlWindow *self);          /* switches, N, counts from the model */
void  vl_window_update_layer_scales (VlWindow *self);
void  vl_window_show_live_lock   (VlWindow *self, int unlocked);
void  vl_window_show_training_groups (VlWindow *self, int unlocked, gint64 n_trainable,
                                      gboolean cached);
void  vl_window_set_group_grad_norms (VlWindow *self, const double *norms, int n);
void  vl_window_set_unlock_schedule (VlWindow *self, const char *schedule);
void  vl_window_set_head         (VlWindow *self, const char *head);
void  vl_window_head_to_config   (VlWindow *self, VlTrainConfig *cfg);
void  vl_window_set_head_from_config (VlWindow *self, const VlTrainConfig *cfg);
void  vl_window_backbone_run_ended (VlWindow *self);
/* The stem choice: VL_STEM_PATCH for the checkpoint's own, else the new stem's kind. */
VlStemKind vl_window_stem_choice     (VlWindow *self);
void  vl_window_set_stem_choice      (VlWindow *self, VlStemKind kind);

/* vl-window-data.c */
void  vl_window_data_init        (VlWindow *self);
void  vl_window_data_dispose     (VlWindow *self);
void  vl_window_load_thumbnails  (VlWindow *self, VlDataRef *data, VlSplit split,
                                  const int *items, int n_items, int size, GCancellable *cancel,
                                  void (*done) (VlWindow *self, int slot, GdkTexture *tex,
                                                gpointer user_data),
                                  gpointer user_data, GDestroyNotify destroy);
void  vl_window_show_skipped     (VlWindow *self, char **skipped);
/* The open dataset's class names for a run that names none; NULL when its class count is not
 * K. */
char **vl_window_class_names_from_data (VlWindow *self, int K);

/* vl-window-probe.c (emits "probes-changed" when its file's maps arrive) */
void  vl_window_probe_init       (VlWindow *self);
void  vl_window_probe_dispose    (VlWindow *self);
gboolean vl_looks_like_image     (const char *path);
char *vl_first_sample_image      (void);
/* The models changed (backbone loaded, a run finished or was opened, a dataset came or
 * failed): the sample fallback is chosen or dropped, and the probe file's maps are recomputed
 * when they are not of the current models. */
void  vl_window_refresh_probe_file (VlWindow *self, gboolean models_changed);
void  vl_window_show_probe_file  (VlWindow *self);
void  vl_window_drop_probe_sample (VlWindow *self);
void  vl_window_choose_probe     (VlWindow *self);
/* A run has just started, or the probe file's result arrives during one: the run's trainer
 * gets the probe file's pixels (its maps come with the PROBES events), and the maps of a
 * previous model are dropped. */
void  vl_window_probe_file_to_trainer (VlWindow *self);

/* The current run's trainer (NULL before any run, or after an opened run folder replaced it;
 * the run controller's). */
static inline VlTrainer *
vl_window_trainer (VlWindow *self)
{
  return vl_run_controller_get_trainer (self->run);
}
/* A PROBES event of the current run: the probe file's "now" side, when it carries it (its
 * attention is taken from the event). */
void  vl_window_probe_file_event (VlWindow *self, VlTrainEvent *ev);

/* vl-window-attention.c: the dataset's probes and the Attention page's buttons */
void  vl_window_attention_init    (VlWindow *self);
void  vl_window_attention_dispose (VlWindow *self);
/* The pretrained backbone's attention of the dataset's probe images, on a worker thread (when a
 * backbone and a dataset are there). */
void  vl_window_start_pretrained_attention (VlWindow *self);
/* The probe buttons (the probe file first) and the selected probe in the view. */
void  vl_window_show_probes      (VlWindow *self);
void  vl_window_show_probe       (VlWindow *self, int i);
void  vl_window_show_selected_probe (VlWindow *self);
void  vl_window_probes_clear     (VlWindow *self);
/* A PROBES event of the current run: the rollout of the probes, the probe file's "now" side. */
void  vl_window_attention_probes_event (VlWindow *self, VlTrainEvent *ev);

/* vl-window-seg.c */
void  vl_window_seg_init         (VlWindow *self);
void  vl_window_seg_dispose      (VlWindow *self);
char *vl_window_seg_head_note    (VlWindow *self);
void  vl_window_seg_to_config    (VlWindow *self, VlTrainConfig *cfg);
void  vl_window_seg_from_config  (VlWindow *self, const VlTrainConfig *cfg);
void  vl_window_seg_show_epoch   (VlWindow *self, const VlEpochMetrics *m, char **names);
/* Main thread: p (taken) to the mask view and its worst-images strip. */
void  vl_window_seg_predictions_ready (VlWindow *self, VlSegPredictions *p);
void  vl_window_seg_clear        (VlWindow *self);

/* vl-window-det.c */
void  vl_window_det_init         (VlWindow *self);
void  vl_window_det_dispose      (VlWindow *self);
char *vl_window_det_head_note    (VlWindow *self);
void  vl_window_det_show_epoch   (VlWindow *self, const VlEpochMetrics *m, char **names);
/* Main thread: p (taken) to the box view and its strip of the worst images. */
void  vl_window_det_predictions_ready (VlWindow *self, VlDetPredictions *p);
void  vl_window_det_clear        (VlWindow *self);

/* vl-window-features.c */
void  vl_window_features_init    (VlWindow *self);
void  vl_window_features_dispose (VlWindow *self);
void  vl_window_features_inputs_changed  (VlWindow *self);   /* backbone or dataset */
void  vl_window_features_trained_changed (VlWindow *self);   /* the trained model */
gboolean vl_window_features_busy (VlWindow *self);

/* vl-window-task.c */
void  vl_window_task_init        (VlWindow *self);
/* Shows the views, labels and head settings of `task` (VlTaskView decides which views). */
void  vl_window_set_task         (VlWindow *self, VlTaskKind task);
/* An epoch's evaluation in the statistics and the task's views (names: the classes). */
void  vl_window_show_epoch       (VlWindow *self, const VlEpochMetrics *m, char **names);

/* vl-window-gallery.c: the confusion cells' gallery (its dialog in self->gallery) */
void  vl_window_gallery_init     (VlWindow *self);
void  vl_window_show_gallery     (VlWindow *self, int true_class, int predicted_class);

/* vl-window-export.c: the file chooser, then the job (tests set "export-dir-override",
 * "export-onnx-override", "export-recipe-override" on the window to skip the chooser) */
void  vl_window_export           (VlWindow *self);
void  vl_window_export_onnx      (VlWindow *self);
void  vl_window_export_recipe    (VlWindow *self);
void  vl_window_save_run         (VlWindow *self);

/* vl-window-train.c */
void  vl_window_train_init       (VlWindow *self);
void  vl_window_train_dispose    (VlWindow *self);
void  vl_window_apply_preset     (VlWindow *self, int preset);
/* A named recipe of vl-preset.h (demo, rotate, scenes): its backbone, data, task and
 * hyperparameters in the panels; an error for a name without a backbone. */
void  vl_window_apply_named_preset (VlWindow *self, const char *name);
/* "win.open-preset": a recipe of the training panel by its id (linear-probe, last-blocks, full,
 * progressive), else a named recipe of vl-preset.h. */
void  vl_window_open_preset      (VlWindow *self, const char *id);
void  vl_window_config_from_ui   (VlWindow *self, VlTrainConfig *cfg);
void  vl_window_start_training   (VlWindow *self, gboolean resume);
void  vl_window_toggle_pause     (VlWindow *self);
void  vl_window_stop_training    (VlWindow *self);
void  vl_window_discard_trained  (VlWindow *self);

G_END_DECLS
