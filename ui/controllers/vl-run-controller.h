/* vl-run-controller.h: one training run as the app sees it — a GObject without widgets that
 * owns the engine's VlTrainer and turns its events into signals on the main loop.
 *
 *   VlRunController *run = vl_run_controller_new ();
 *   g_signal_connect (run, "event::epoch", G_CALLBACK (on_epoch), win);  // any VlTrainEventKind
 *   g_signal_connect (run, "drained", G_CALLBACK (update_actions), win);
 *   vl_run_controller_start (run, &cfg, &error);
 *
 * The trainer's worker notifies at most once per drain; the controller then queues one idle
 * (at most one drain per 250 ms, so a small model's dozens of steps a second redraw nothing
 * more often than that) which takes every queued event and emits ::event for each, detailed by
 * its kind's name (vl_train_event_kind_name: "ready", "lock", "step", "epoch", "probes",
 * "message", "paused", "resumed", "finished"), then ::drained once. An idle queued for a run
 * that is no longer the controller's current one, or for a controller that is gone, does
 * nothing (a weak reference and the trainer it was queued for). The worker thread is
 * reniced below the UI at its first event, like the engine's pool.
 *
 * Properties: "running" (a run started and its FINISHED event not yet emitted).
 *
 * The controller also holds the run's counters as its owner follows them from the events and
 * the user's commands (VlRunProgress, vl_run_controller_get_progress; zero when new): the
 * owner writes them, the controller only keeps them for the controller's lifetime. */
#pragma once

#include <glib-object.h>

#include "vl-trainer.h"

G_BEGIN_DECLS

/* The run's counters and state (main thread only). */
typedef struct {
  VlTrainerState state;           /* as the events told */
  gboolean       paused;
  gboolean       stop_requested;
  VlTrainEnd     last_end;
  int            epochs_total;
  int64_t        total_steps;
  int64_t        steps_done;
  int            n_groups;        /* the run's layer groups */
  int            unlocked_now;
  int64_t        n_points;        /* STEP points fed to the chart (tests read it) */
  int            n_epochs_done;
  int            n_probe_events;
} VlRunProgress;

#define VL_TYPE_RUN_CONTROLLER (vl_run_controller_get_type ())
G_DECLARE_FINAL_TYPE (VlRunController, vl_run_controller, VL, RUN_CONTROLLER, GObject)

VlRunController *vl_run_controller_new         (void);
/* Starts a run of a copy of cfg, replacing the previous (finished) one. Fails, starting
 * nothing, while a run is going or when the trainer refuses the configuration. */
gboolean   vl_run_controller_start             (VlRunController *run, const VlTrainConfig *cfg,
                                                GError **error);
/* The current run's trainer (kept after it finishes, for its model); NULL before any. */
VlTrainer *vl_run_controller_get_trainer       (VlRunController *run);
/* Forgets a finished run (an opened run folder replaces it). */
void       vl_run_controller_clear             (VlRunController *run);
gboolean   vl_run_controller_get_running       (VlRunController *run);
/* The run's counters (see above): valid while run lives. */
VlRunProgress *vl_run_controller_get_progress  (VlRunController *run);
void       vl_run_controller_pause             (VlRunController *run);
void       vl_run_controller_resume            (VlRunController *run);
void       vl_run_controller_stop              (VlRunController *run);

G_END_DECLS
