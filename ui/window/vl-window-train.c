/* vl-window-train.c: presets and the configuration, the training run (the trainer's worker
 * thread posts events; at most one idle is queued and it drains them all; an idle of an older
 * run is dropped), what the events feed (loss chart, status, and through vl-window-task.c and
 * vl-window-attention.c the task's views and the attention view), the trained model's
 * predictions (vl_job_predict) for the views, and opening runs. */
#include "vl-format.h"
#include <glib/gi18n.h>
#include "vl-preset.h"
#include "vl-window-private.h"

#include <math.h>
#include <string.h>

#include "vl-loss-chart.h"

static const char *preset_ids[] = { "linear-probe", "last-blocks", "full", "progressive", "custom" };

static void maybe_predict (VlWindow *self);

/* ------------------------------------------------------------------ presets */

void
vl_window_apply_preset (VlWindow *self, int preset)
{
  if (preset < 0 || preset >= VL_PRESET_CUSTOM)
    return;
  gboolean was = self->syncing;
  self->syncing = TRUE;
  VlTrainingPanel *panel = VL_TRAINING_PANEL (self->training_panel);
  int epochs = vl_training_panel_get_epochs (panel);
  const char *schedule = "1";
  g_autofree char *progressive = NULL;
  gboolean augment = TRUE, cache = FALSE;
  switch (preset)
    {
    case VL_PRESET_LINEAR_PROBE:
      schedule = "1";
      augment = FALSE;
      cache = TRUE;
      break;
    case VL_PRESET_LAST_BLOCKS:
      schedule = "4";   /* head, final norm and the last two blocks */
      break;
    case VL_PRESET_FULL:
      schedule = "all";
      break;
    case VL_PRESET_PROGRESSIVE:
      {
        /* the head first, then the top of the network (last block, final norm, head), then
         * everything: at 12 epochs "0:1,2:3,4:all", the recipe of `vitlab-cli train --preset
         * demo` (app/cli-train.c) that make run opens. The cache holds the validation images'
         * frozen features while the stem is locked. */
        int e1 = MAX (1, epochs / 6), e2 = MAX (e1 + 1, epochs / 3);
        progressive = g_strdup_printf ("0:1,%d:3,%d:all", e1, e2);
        schedule = progressive;
        cache = TRUE;
        break;
      }
    }
  /* lr, weight decay, warmup, layer decay, label smoothing: the training panel's part */
  vl_training_panel_apply_preset (panel, preset);
  g_object_set (self->data_panel, "augment", augment ? VL_AUGMENT_LIGHT : VL_AUGMENT_NONE,
                "cache", cache, NULL);
  vl_window_set_unlock_schedule (self, schedule);
  g_settings_set_string (self->settings, "preset", preset_ids[preset]);
  self->syncing = was;
  vl_window_update_actions (self);
}

static void
on_preset_chosen (VlTrainingPanel *panel, int preset, VlWindow *self)
{
  if (!self->syncing)
    vl_window_apply_preset (self, preset);
}

/* A hyperparameter edited (the panel turned itself to Custom), or the augmentation or the cache
 * of the data panel, which the presets set too. */
static void
on_hyper_changed (VlWindow *self)
{
  if (self->syncing)
    return;
  vl_training_panel_set_custom (VL_TRAINING_PANEL (self->training_panel));
  vl_window_update_actions (self);
}

/* ------------------------------------------------------------------ the configuration */

static char *
new_run_dir (void)
{
  g_autoptr(GDateTime) now = g_date_time_new_now_local ();
  g_autofree char *stamp = g_date_time_format (now, "%Y%m%d-%H%M%S");
  g_autofree char *root = g_build_filename (g_get_user_data_dir (), "vitlab", "runs", NULL);
  char *dir = g_build_filename (root, stamp, NULL);
  for (int i = 2; g_file_test (dir, G_FILE_TEST_EXISTS); i++)
    {
      g_free (dir);
      g_autofree char *name = g_strdup_printf ("%s-%d", stamp, i);
      dir = g_build_filename (root, name, NULL);
    }
  return dir;
}

void
vl_window_config_from_ui (VlWindow *self, VlTrainConfig *cfg)
{
  vl_train_config_init (cfg);
  cfg->backbone = g_strdup (self->backbone_path);
  cfg->data = g_strdup (self->data ? self->data->spec : self->data_spec);
  vl_window_head_to_config (self, cfg);
  int augment = 0;
  gboolean cache = FALSE;
  g_object_get (self->data_panel, "val-fraction", &cfg->val_fraction, "augment", &augment,
                "cache", &cache, NULL);
  cfg->augment = (VlAugment) augment;
  cfg->cache_features = cache;   /* with augmentation: the validation images' features */
  g_free (cfg->unlock_schedule);
  cfg->unlock_schedule = vl_window_unlock_schedule (self);
  if (cfg->unlock_schedule == NULL)
    cfg->unlock_schedule = g_strdup ("1");
  /* switches that are not the last N (and no progressive schedule): exactly those groups */
  gboolean progressive = FALSE;
  g_object_get (self->groups_panel, "progressive", &progressive, NULL);
  if (self->model && vl_window_unlocked_suffix (self) < 0 && !progressive)
    for (int g = 0; g < vl_model_n_groups (self->model) && g < 64; g++)
      if (vl_model_group_trainable (self->model, g))
        cfg->unlock_mask |= G_GUINT64_CONSTANT (1) << g;
  vl_training_panel_to_config (VL_TRAINING_PANEL (self->training_panel), cfg);
  /* attention rollout of the probes about four times an epoch */
  int n_train = self->data ? vl_dataset_n_items (self->data->ds, VL_SPLIT_TRAIN) : 0;
  int spe = MAX (1, (n_train + cfg->batch_size - 1) / cfg->batch_size);
  cfg->probe_every = MAX (1, spe / 4);
  cfg->n_probes = MAX (1, self->probes->n);
  cfg->out_dir = new_run_dir ();
  cfg->task = vl_head_panel_get_task (VL_HEAD_PANEL (self->head_panel));
  cfg->stem = vl_window_stem_choice (self);
  vl_window_seg_to_config (self, cfg);
  cfg->reg_loss = vl_head_panel_get_reg_loss (VL_HEAD_PANEL (self->head_panel));
}

/* ------------------------------------------------------------------ the run's events */

static const char *const *
group_names (VlWindow *self, int n)
{
  static const char *none[] = { NULL };
  const char **names = g_object_get_data (G_OBJECT (self), "group-names");
  if (names && (int) g_strv_length ((char **) names) == n)
    return names;
  GStrvBuilder *b = g_strv_builder_new ();
  for (int g = 0; g < n; g++)
    {
      if (self->model && n == vl_model_n_groups (self->model))
        g_strv_builder_add (b, vl_model_group_name (self->model, g));
      else
        {
          g_autofree char *s = g_strdup_printf ("group %d", g);
          g_strv_builder_add (b, s);
        }
    }
  GStrv strv = g_strv_builder_end (b);
  g_strv_builder_unref (b);
  g_object_set_data_full (G_OBJECT (self), "group-names", strv, (GDestroyNotify) g_strfreev);
  return n > 0 ? (const char *const *) strv : none;
}

static void
show_step (VlWindow *self, const VlTrainEvent *ev)
{
  VlLossChart *chart = VL_LOSS_CHART (self->chart);
  if (ev->n_points > 0)
    {
      vl_loss_chart_add_steps (chart, ev->points, ev->n_points);
      self->progress->n_points += ev->n_points;
    }
  if (ev->group_grad_norms && self->progress->n_groups > 0)
    vl_loss_chart_set_group_norms (chart, self->progress->n_groups,
                                   group_names (self, self->progress->n_groups),
                                   ev->group_grad_norms, ev->step);
  self->progress->steps_done = ev->step;
  /* the text and bars at most five times a second: each change re-lays out the window */
  VlStatusBar *bar = VL_STATUS_BAR (self->status_bar);
  if (!vl_status_bar_due (bar, FALSE))
    return;
  if (ev->group_grad_norms && self->progress->n_groups > 0)
    vl_window_set_group_grad_norms (self, ev->group_grad_norms, self->progress->n_groups);
  if (self->progress->total_steps > 0)
    vl_status_bar_set_fraction (bar, (double) ev->step / self->progress->total_steps);
  vl_status_bar_set_rate (bar, ev->images_per_s, ev->eta_s);
  if (ev->n_points > 0)
    {
      const VlStepPoint *pt = &ev->points[ev->n_points - 1];
      g_autofree char *status = g_strdup_printf (_("Epoch %d/%d · batch %d/%d · loss %.4f · "
                                                   "lr %.2e"),
                                                 ev->epoch + 1, self->progress->epochs_total,
                                                 ev->batch, ev->n_batches, pt->loss, pt->lr);
      vl_window_set_status (self, status);
    }
}

/* caching and validation: the pass's own fraction in the progress bar, its ETA and rate, and
 * the status saying which pass it is (a step or the epoch's end takes the bar back) */
static void
show_pass_progress (VlWindow *self, const VlTrainEvent *ev)
{
  VlStatusBar *bar = VL_STATUS_BAR (self->status_bar);
  if (!vl_status_bar_due (bar, ev->done >= ev->total))
    return;
  if (ev->total > 0)
    vl_status_bar_set_fraction (bar, (double) ev->done / ev->total);
  /* a pass over cached features is over in milliseconds: its rate (millions of images a
   * second) says nothing to the user, so the rate and ETA show only once a pass has run 0.5 s */
  if (ev->images_per_s > 0 && ev->done / ev->images_per_s >= 0.5)
    vl_status_bar_set_rate (bar, ev->images_per_s, ev->eta_s);
  else
    vl_status_bar_clear_rate (bar);
  g_autofree char *status =
    ev->phase == VL_TRAIN_PHASE_CACHE
    ? g_strdup_printf (_("Epoch %d/%d · caching the frozen features of %d/%d images"),
                       ev->epoch + 1, self->progress->epochs_total, (int) ev->done,
                       (int) ev->total)
    : g_strdup_printf (_("Epoch %d/%d · validating %d/%d images"), ev->epoch + 1,
                       self->progress->epochs_total, (int) ev->done, (int) ev->total);
  vl_window_set_status (self, status);
}

static void
set_idle_status (VlWindow *self, const char *text)
{
  vl_status_bar_set_idle (VL_STATUS_BAR (self->status_bar), text);
  vl_window_set_status (self, text);
}

static void
run_finished (VlWindow *self, const VlTrainEvent *ev)
{
  self->progress->state = VL_TRAINER_FINISHED;
  self->progress->last_end = ev->end;
  self->progress->paused = FALSE;
  self->progress->stop_requested = FALSE;
  vl_status_bar_clear_rate (VL_STATUS_BAR (self->status_bar));
  vl_window_backbone_run_ended (self);
  if (ev->skipped && ev->skipped[0])
    vl_window_show_skipped (self, ev->skipped);
  gboolean trained = vl_trainer_get_model (vl_window_trainer (self)) != NULL && ev->step > 0;
  if (trained)
    {
      g_clear_pointer (&self->trained, vl_trained_unref);
      self->trained = vl_trained_new (vl_window_trainer (self), NULL);
      self->have_trained = TRUE;
    }
  self->run_resumable = self->run_dir != NULL && ev->end == VL_TRAIN_END_STOPPED && ev->step > 0;
  switch (ev->end)
    {
    case VL_TRAIN_END_COMPLETED:
    case VL_TRAIN_END_EARLY_STOPPED:
      {
        g_autofree char *t = g_strdup_printf (_("%s after %d epoch%s · run folder %s"),
                                              ev->end == VL_TRAIN_END_COMPLETED
                                              ? _("Finished") : _("Stopped early"),
                                              self->progress->n_epochs_done,
                                              self->progress->n_epochs_done == 1 ? "" : "s",
                                              self->run_dir ? self->run_dir : _("(none)"));
        set_idle_status (self, t);
        vl_status_bar_set_fraction (VL_STATUS_BAR (self->status_bar), 1.0);
        break;
      }
    case VL_TRAIN_END_STOPPED:
      {
        g_autofree char *t = g_strdup_printf (_("Stopped at epoch %d, step %lld; the run folder "
                                                "keeps this position (Resume continues it)"),
                                              ev->epoch + 1, (long long) ev->step);
        set_idle_status (self, t);
        break;
      }
    case VL_TRAIN_END_FAILED:
      set_idle_status (self, _("Training failed"));
      vl_window_show_error (self, _("Training failed: %s"),
                            ev->error ? ev->error->message : "unknown error");
      break;
    }
  if (self->have_trained && !self->close_after_stop)
    {
      maybe_predict (self);
      if (trained)
        {
          vl_window_refresh_probe_file (self, TRUE);   /* the probe file's fine-tuned side */
          vl_window_features_trained_changed (self);   /* the fine-tuned map, "Try it" */
        }
    }
}

/* ::event of the run controller: one event of the current run. */
static void
on_run_event (VlRunController *run, VlTrainEvent *ev, VlWindow *self)
{
  switch (ev->kind)
    {
    case VL_TRAIN_EVENT_READY:
      self->n_classes = ev->n_classes;
      g_strfreev (self->class_names);
      self->class_names = g_strdupv (ev->class_names);
      g_strfreev (self->value_names);
      self->value_names = g_strdupv (ev->value_names);
      vl_window_set_task (self, ev->task);
      self->progress->total_steps = ev->total_steps;
      self->progress->n_groups = ev->n_groups;
      vl_loss_chart_set_total_steps (VL_LOSS_CHART (self->chart), ev->total_steps);
      vl_window_show_skipped (self, ev->skipped);
      {
        g_autofree char *t = g_strdup_printf (_("Training on %d images, validating on %d…"),
                                              ev->n_train, ev->n_val);
        vl_window_set_status (self, t);
      }
      break;
    case VL_TRAIN_EVENT_LOCK:
      {
        self->progress->unlocked_now = ev->unlocked;
        vl_window_show_live_lock (self, ev->unlocked);
        vl_window_show_training_groups (self, ev->unlocked, ev->n_trainable, ev->cached);
        gtk_widget_set_visible (self->message_label, FALSE);
        break;
      }
    case VL_TRAIN_EVENT_STEP:
      show_step (self, ev);
      break;
    case VL_TRAIN_EVENT_PROGRESS:
      show_pass_progress (self, ev);
      break;
    case VL_TRAIN_EVENT_EPOCH:
      vl_window_show_epoch (self, ev->metrics, self->class_names);
      break;
    case VL_TRAIN_EVENT_PROBES:
      vl_window_attention_probes_event (self, ev);
      break;
    case VL_TRAIN_EVENT_MESSAGE:
      gtk_label_set_text (GTK_LABEL (self->message_label), ev->message);
      gtk_widget_set_visible (self->message_label, TRUE);
      break;
    case VL_TRAIN_EVENT_PAUSED:
      self->progress->paused = TRUE;
      vl_window_set_status (self, _("Paused (Ctrl+P resumes)"));
      break;
    case VL_TRAIN_EVENT_RESUMED:
      self->progress->paused = FALSE;
      break;
    case VL_TRAIN_EVENT_FINISHED:
      run_finished (self, ev);
      self->finished_in_drain = TRUE;
      break;
    }
}

/* ::drained: after the events of one drain */
static void
on_run_drained (VlRunController *run, VlWindow *self)
{
  vl_window_update_actions (self);
  if (self->finished_in_drain && self->close_after_stop)
    gtk_window_destroy (GTK_WINDOW (self));
  self->finished_in_drain = FALSE;
}

/* ------------------------------------------------------------------ start, pause, stop */

static void
clear_predictions (VlWindow *self)
{
  if (self->pred->cancel)
    g_cancellable_cancel (self->pred->cancel);
  g_clear_object (&self->pred->cancel);
  g_clear_pointer (&self->pred->cls.label, g_free);
  g_clear_pointer (&self->pred->cls.predicted, g_free);
  g_clear_pointer (&self->pred->cls.confidence, g_free);
  self->pred->cls.n = 0;
  g_clear_pointer (&self->pred->data, vl_data_unref);
  vl_window_seg_clear (self);
  vl_window_det_clear (self);
}

static char *
run_label (const VlTrainConfig *cfg, int preset)
{
  static const char *names[] = { N_("linear probe"), N_("last blocks"), N_("full fine-tune"),
                                 N_("progressive"), N_("custom") };
  return g_strdup_printf (_("%s · lr %.0e · unlock %s"), _(names[CLAMP (preset, 0, 4)]), cfg->lr,
                          cfg->unlock_schedule);
}

void
vl_window_start_training (VlWindow *self, gboolean resume)
{
  if (vl_window_is_running (self))
    return;
  g_autoptr(GError) error = NULL;
  VlTrainConfig cfg;
  if (resume)
    {
      if (self->run_dir == NULL || !vl_train_config_load (&cfg, self->run_dir, &error))
        {
          vl_window_show_error (self, _("Cannot resume: %s"),
                                error ? error->message : "no run folder");
          return;
        }
      cfg.resume = TRUE;
    }
  else
    {
      if (!vl_window_can_train (self))
        return;
      vl_window_config_from_ui (self, &cfg);
    }
  if (cfg.out_dir)
    {
      g_autofree char *parent = g_path_get_dirname (cfg.out_dir);
      g_mkdir_with_parents (parent, 0755);
    }
  /* the new run replaces the previous one (its folder keeps its model) */
  if (!vl_run_controller_start (self->run, &cfg, &error))
    {
      vl_window_show_error (self, _("Cannot start training: %s"), error->message);
      vl_train_config_clear (&cfg);
      return;
    }
  clear_predictions (self);
  vl_window_set_task (self, cfg.task);
  self->progress->state = VL_TRAINER_RUNNING;
  self->progress->paused = FALSE;
  self->progress->stop_requested = FALSE;
  self->run_resumable = FALSE;
  self->progress->n_probe_events = 0;
  self->progress->epochs_total = cfg.epochs;
  self->progress->total_steps = 0;
  self->progress->steps_done = 0;
  g_clear_pointer (&self->probes->final_attn, g_free);
  g_clear_pointer (&self->probes->final_pool, g_free);
  g_clear_pointer (&self->probes->rollout, g_free);
  self->probes->n_rollout = 0;
  vl_status_bar_set_idle (VL_STATUS_BAR (self->status_bar), NULL);
  /* the previous run's model is not "now": the probe file goes to the trainer, whose events
   * bring its "now" side; until then it (and every probe) shows the pretrained maps alone */
  vl_window_probe_file_to_trainer (self);
  vl_window_show_selected_probe (self);
  g_free (self->run_dir);
  self->run_dir = g_strdup (cfg.out_dir);
  vl_training_panel_set_run_dir (VL_TRAINING_PANEL (self->training_panel), self->run_dir,
                                 self->run_dir);
  if (!resume)
    {
      int preset = (int) vl_training_panel_get_preset (VL_TRAINING_PANEL (self->training_panel));
      g_autofree char *label = run_label (&cfg, preset);
      vl_loss_chart_new_run (VL_LOSS_CHART (self->chart), label);
      self->progress->n_points = 0;
      self->progress->n_epochs_done = 0;
    }
  vl_status_bar_set_fraction (VL_STATUS_BAR (self->status_bar), 0);
  vl_window_set_status (self, resume ? _("Resuming the run…")
                                     : _("Loading the model and the data…"));
  gtk_widget_set_visible (self->message_label, FALSE);
  vl_train_config_clear (&cfg);
  vl_window_update_actions (self);
}

void
vl_window_toggle_pause (VlWindow *self)
{
  if (!vl_window_is_running (self))
    return;
  if (self->progress->paused)
    vl_run_controller_resume (self->run);
  else
    vl_run_controller_pause (self->run);
}

void
vl_window_stop_training (VlWindow *self)
{
  if (!vl_window_is_running (self) || self->progress->stop_requested)
    return;
  self->progress->stop_requested = TRUE;
  /* a paused run stops where it is (resuming it first could train one more batch, and the
   * trained model would no longer be the one the paused maps showed) */
  vl_run_controller_stop (self->run);
  vl_window_set_status (self, _("Stopping at the next batch and saving the position…"));
  vl_window_update_actions (self);
}

/* The trained head is given up (the user chose another head). */
void
vl_window_discard_trained (VlWindow *self)
{
  clear_predictions (self);
  g_clear_pointer (&self->trained, vl_trained_unref);
  g_clear_pointer (&self->probes->final_attn, g_free);
  g_clear_pointer (&self->probes->final_pool, g_free);
  g_clear_pointer (&self->probes->file.now_attn, g_free);
  g_clear_pointer (&self->probes->file.now_pool, g_free);
  g_clear_pointer (&self->probes->file.now_class, g_free);
  if (self->probes->file_shown)
    vl_window_show_probe_file (self);
  self->have_trained = FALSE;
  vl_window_features_trained_changed (self);
  vl_window_update_actions (self);
}

/* ------------------------------------------------------------------ predictions */

static void
predict_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  VlWindow *self = VL_WINDOW (source);
  if (self->disposed)
    return;   /* the window closed meanwhile */
  g_autoptr(GError) error = NULL;
  if (g_task_get_cancellable (G_TASK (result)) != self->pred->cancel)
    return;   /* stale */
  g_autoptr(VlPredictResult) j = vl_job_predict_finish (result, &error);
  if (j == NULL)
    {
      g_clear_object (&self->pred->cancel);
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        vl_window_show_error (self, _("Predictions of the trained model: %s"), error->message);
      return;
    }
  g_clear_object (&self->pred->cancel);
  self->pred->cls = j->pred;
  memset (&j->pred, 0, sizeof j->pred);
  self->pred->data = vl_data_ref (j->data);
  if (j->seg)
    vl_window_seg_predictions_ready (self, g_steal_pointer (&j->seg));
  if (j->det)
    vl_window_det_predictions_ready (self, g_steal_pointer (&j->det));
  if (j->final_attn)
    {
      g_free (self->probes->final_attn);
      self->probes->final_attn = g_steal_pointer (&j->final_attn);
      g_free (self->probes->final_pool);
      self->probes->final_pool = g_steal_pointer (&j->final_pool);
      self->probes->final_T = j->attn_T;
      if (self->probes->n_images > 0 && !self->probes->file_shown)
        vl_window_show_probe (self, self->probes->selected);
    }
  vl_window_update_actions (self);
}

/* After a run (or when a run was opened and its dataset is there): every validation image's
 * prediction, for the gallery, on a worker thread. */
static void
maybe_predict (VlWindow *self)
{
  if (self->trained == NULL || self->pred->cancel || self->pred->cls.n > 0 ||
      self->pred->seg != NULL || self->pred->det != NULL || self->task == VL_TASK_REGRESS)
    return;   /* the confusion cells' per-image predictions, the masks or the boxes */
  const gboolean seg = self->task == VL_TASK_SEGMENT, det = self->task == VL_TASK_DETECT;
  VlDataRef *data = NULL;
  VlTrainedRef *tr = self->trained;
  if (tr->trainer)
    data = vl_data_ref_new_for_trainer (tr->trainer);
  else if (self->data_cancel != NULL)
    return;   /* an opened run's dataset is on its way: "dataset-changed" comes back */
  else if (self->data)
    data = vl_data_ref (self->data);
  if (data == NULL)
    return;
  int K = seg ? (vl_trained_seg_head (tr) ? vl_seg_head_n_classes (vl_trained_seg_head (tr)) : -1)
        : det ? (vl_trained_det_head (tr) ? vl_det_head_n_classes (vl_trained_det_head (tr)) : -1)
              : vl_model_num_classes (vl_trained_model (tr));
  if (tr->trainer == NULL &&
      (K != vl_dataset_n_classes (data->ds) || seg != vl_dataset_is_segmentation (data->ds) ||
       det != vl_dataset_is_detection (data->ds)))
    {
      /* another dataset than the run's (its own is gone): no per-image predictions, no alarm */
      vl_data_unref (data);
      return;
    }
  self->pred->cancel = g_cancellable_new ();
  vl_job_predict (G_OBJECT (self), tr, data, self->task, vl_window_dense_input_size (self),
                  self->probes->index, self->probes->index ? self->probes->n : 0,
                  self->pred->cancel, predict_done, NULL);
  vl_data_unref (data);
}

/* ------------------------------------------------------------------ open a run */

static void
set_spins_from_config (VlWindow *self, const VlTrainConfig *c)
{
  self->syncing = TRUE;
  vl_training_panel_from_config (VL_TRAINING_PANEL (self->training_panel), c);
  g_object_set (self->data_panel, "val-fraction", c->val_fraction, "augment", (int) c->augment,
                "cache", c->cache_features, NULL);
  self->syncing = FALSE;
}

/* The panels from a configuration (an opened run's, a named preset's): hyperparameters, seg
 * head, head, unlock schedule, and the backbone and data, opened when they are others. */
static void
apply_config (VlWindow *self, const VlTrainConfig *c)
{
  set_spins_from_config (self, c);
  vl_window_seg_from_config (self, c);
  vl_window_set_stem_choice (self, c->stem);
  vl_window_set_head_from_config (self, c);
  if (c->backbone && g_file_test (c->backbone, G_FILE_TEST_EXISTS) &&
      g_strcmp0 (c->backbone, self->backbone_path) != 0)
    {
      g_object_set_data_full (G_OBJECT (self), "pending-schedule", g_strdup (c->unlock_schedule),
                              g_free);
      vl_window_open_backbone (self, c->backbone);
    }
  else
    vl_window_set_unlock_schedule (self, c->unlock_schedule);
  /* the data again when it is another, or the same read otherwise (boxes, or not) */
  if (c->data && (g_file_test (c->data, G_FILE_TEST_EXISTS) || !g_path_is_absolute (c->data)) &&
      (self->data == NULL || g_strcmp0 (c->data, self->data->spec) != 0 ||
       vl_dataset_is_detection (self->data->ds) != (c->task == VL_TASK_DETECT)))
    vl_window_open_data (self, c->data);
}

void
vl_window_apply_named_preset (VlWindow *self, const char *name)
{
  if (vl_window_is_running (self))
    return;
  VlTrainConfig c;
  vl_train_config_init (&c);
  if (!vl_preset_apply (&c, name) || c.backbone == NULL)
    {
      g_autofree char *names = vl_preset_names ();
      vl_window_show_error (self, _("No demo \"%s\" to open here (the app opens those with a "
                                    "backbone: %s)"), name, names);
      vl_train_config_clear (&c);
      return;
    }
  vl_window_set_task (self, c.task);
  apply_config (self, &c);
  vl_train_config_clear (&c);
  vl_window_update_actions (self);
}

void
vl_window_open_preset (VlWindow *self, const char *id)
{
  for (int i = 0; i < VL_PRESET_CUSTOM; i++)
    if (g_str_equal (id, preset_ids[i]))
      {
        vl_window_apply_preset (self, i);
        return;
      }
  vl_window_apply_named_preset (self, id);
}

static void
open_run_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  VlWindow *self = VL_WINDOW (source);
  if (self->disposed)
    return;   /* the window closed meanwhile */
  g_autoptr(GError) error = NULL;
  g_autoptr(VlRunContents) j = vl_job_read_run_finish (result, &error);
  self->opening_run = FALSE;
  if (j == NULL)
    {
      vl_window_show_error (self, _("Could not open the run: %s"), error->message);
      vl_window_update_actions (self);
      return;
    }
  if (vl_window_is_running (self))
    {
      vl_window_update_actions (self);
      return;
    }
  const VlTrainConfig *c = &j->cfg;
  vl_window_set_task (self, j->task.kind);   /* before the data: a detection run's is boxes */
  apply_config (self, c);

  /* the run's results */
  clear_predictions (self);
  vl_run_controller_clear (self->run);
  self->progress->state = VL_TRAINER_IDLE;
  g_clear_pointer (&self->trained, vl_trained_unref);
  self->have_trained = j->model != NULL;
  if (j->model)
    {
      self->trained = vl_trained_new (NULL, g_steal_pointer (&j->model));
      self->trained->seg_head = g_steal_pointer (&j->seg_head);
      self->trained->det_head = g_steal_pointer (&j->det_head);
    }
  g_free (self->run_dir);
  self->run_dir = g_strdup (j->dir);
  vl_training_panel_set_run_dir (VL_TRAINING_PANEL (self->training_panel), self->run_dir,
                                 self->run_dir);
  self->progress->epochs_total = c->epochs;
  self->run_resumable = (int) j->epochs->len < c->epochs;
  g_strfreev (self->class_names);
  self->class_names = g_steal_pointer (&j->class_names);
  self->n_classes = self->class_names ? (int) g_strv_length (self->class_names) : 0;
  g_strfreev (self->value_names);
  self->value_names = g_strdupv (j->task.value_names);
  vl_window_set_task (self, j->task.kind);
  g_autofree char *base = g_path_get_basename (j->dir);
  VlLossChart *chart = VL_LOSS_CHART (self->chart);
  vl_loss_chart_new_run (chart, base);
  self->progress->n_points = 0;
  if (j->epochs->len > 0)
    {
      const VlEpochMetrics *last = g_ptr_array_index (j->epochs, j->epochs->len - 1);
      vl_loss_chart_set_total_steps (chart, last->step / (last->epoch + 1) * c->epochs);
    }
  for (guint i = 0; i < j->epochs->len; i++)
    vl_window_show_epoch (self, g_ptr_array_index (j->epochs, i), self->class_names);
  g_autofree char *status = g_strdup_printf (_("Opened run %s: %u of %d epochs%s"), base,
                                             j->epochs->len, c->epochs,
                                             self->run_resumable ? _(" (Resume continues it)")
                                                                 : "");
  set_idle_status (self, status);
  maybe_predict (self);
  vl_window_refresh_probe_file (self, TRUE);   /* the probe file beside the run's model */
  vl_window_features_trained_changed (self);
  vl_window_update_actions (self);
}

void
vl_window_open_run (VlWindow *self, const char *run_dir)
{
  g_return_if_fail (VL_IS_WINDOW (self));
  if (vl_window_is_running (self) || self->opening_run)
    return;
  self->opening_run = TRUE;
  vl_job_read_run (G_OBJECT (self), run_dir, open_run_done, NULL);
  vl_window_update_actions (self);
}

/* A dataset arrived (an opened run waits for it): its task. */
static void
on_dataset_changed (VlWindow *self)
{
  /* a dataset with numbers per image is for regression; one of classes only for classification */
  if (!vl_window_is_running (self) && self->data)
    vl_window_set_task (self, vl_dataset_is_detection (self->data->ds) ? VL_TASK_DETECT
                              : vl_dataset_is_segmentation (self->data->ds) ? VL_TASK_SEGMENT
                              : vl_dataset_n_values (self->data->ds) > 0 ? VL_TASK_REGRESS
                              : VL_TASK_CLASSIFY);
  maybe_predict (self);
}

/* ------------------------------------------------------------------ setup */

void
vl_window_train_init (VlWindow *self)
{
  g_signal_connect_swapped (self->training_panel, "hyper-edited",
                            G_CALLBACK (vl_window_update_actions), self);
  g_signal_connect_swapped (self->data_panel, "notify::augment", G_CALLBACK (on_hyper_changed),
                            self);
  g_signal_connect_swapped (self->data_panel, "notify::cache", G_CALLBACK (on_hyper_changed),
                            self);
  g_signal_connect (self->training_panel, "preset-chosen", G_CALLBACK (on_preset_chosen), self);
  g_signal_connect (self->run, "event", G_CALLBACK (on_run_event), self);
  g_signal_connect (self->run, "drained", G_CALLBACK (on_run_drained), self);
  /* after the other parts have taken the dataset in */
  g_signal_connect_data (self, "dataset-changed", G_CALLBACK (on_dataset_changed), self, NULL,
                         G_CONNECT_AFTER | G_CONNECT_SWAPPED);

  /* the remembered preset */
  g_autofree char *preset = g_settings_get_string (self->settings, "preset");
  int p = VL_PRESET_LINEAR_PROBE;
  for (int i = 0; i < VL_PRESET_CUSTOM; i++)
    if (g_strcmp0 (preset, preset_ids[i]) == 0)
      p = i;
  vl_window_apply_preset (self, p);
}

void
vl_window_train_dispose (VlWindow *self)
{
  if (self->run)
    {
      /* stops the worker (it saves the position) and waits for it */
      vl_run_controller_stop (self->run);
      g_signal_handlers_disconnect_by_data (self->run, self);
    }
  clear_predictions (self);
  g_clear_pointer (&self->trained, vl_trained_unref);
  g_clear_pointer (&self->class_names, g_strfreev);
  g_clear_pointer (&self->value_names, g_strfreev);
  if (self->scatter_thumb_cancel)
    g_cancellable_cancel (self->scatter_thumb_cancel);
  g_clear_object (&self->scatter_thumb_cancel);
  g_clear_pointer (&self->confusion_counts, g_free);
  g_clear_pointer (&self->run_dir, g_free);
}
