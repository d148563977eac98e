/* vl-window-status.c: what every part of the window uses and that calls no other part: the
 * status bar, the error banner, whether a run is going or something loads, the one function
 * that decides what is enabled (vl_window_update_actions), confirmations and file choosers,
 * and small queries of the panels (the unlock count and schedule, the dense tasks' input
 * size). The other vl-window*.c files call down into this one; it calls none of them. */
#include "vl-window-private.h"
#include <glib/gi18n.h>

/* ------------------------------------------------------------------ helpers */

gboolean
vl_window_is_running (VlWindow *self)
{
  return vl_window_trainer (self) != NULL &&
         (self->progress->state == VL_TRAINER_RUNNING ||
          self->progress->state == VL_TRAINER_PAUSED);
}

gboolean
vl_window_is_loading (VlWindow *self)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), FALSE);
  return self->backbone_cancel != NULL || vl_window_data_loading (self) || self->opening_run;
}

/* ------------------------------------------------------------------ queries of the panels */

gboolean
vl_window_data_loading (VlWindow *self)
{
  return self->data_cancel != NULL;
}

/* N when the unlocked groups are the last N (the groups panel edits the model's lock state),
 * else -1. */
int
vl_window_unlocked_suffix (VlWindow *self)
{
  return vl_groups_panel_unlocked_suffix (VL_GROUPS_PANEL (self->groups_panel));
}

char *
vl_window_unlock_schedule (VlWindow *self)
{
  return vl_groups_panel_get_schedule (VL_GROUPS_PANEL (self->groups_panel));
}

int
vl_window_dense_input_size (VlWindow *self)
{
  if (self->task != VL_TASK_SEGMENT && self->task != VL_TASK_DETECT)
    return 0;
  return vl_head_panel_get_input_size (VL_HEAD_PANEL (self->head_panel));
}

/* ------------------------------------------------------------------ the banner */

static void
show_banner (VlWindow *self, GtkMessageType type, const char *text)
{
  gtk_info_bar_set_message_type (GTK_INFO_BAR (self->banner), type);
  gtk_label_set_text (GTK_LABEL (self->banner_label), text);
  gtk_info_bar_set_revealed (GTK_INFO_BAR (self->banner), TRUE);
}

/* Whether the backbone or the dataset asked for failed to load (an error banner shows and
 * nothing is loading): what waits for them will wait for ever. */
gboolean
vl_window_load_failed (VlWindow *self)
{
  if (vl_window_is_loading (self) || !gtk_info_bar_get_revealed (GTK_INFO_BAR (self->banner)) ||
      gtk_info_bar_get_message_type (GTK_INFO_BAR (self->banner)) != GTK_MESSAGE_ERROR)
    return FALSE;
  return self->model == NULL || (self->data_spec != NULL && self->data == NULL);
}

void
vl_window_show_error (VlWindow *self, const char *format, ...)
{
  va_list ap;
  va_start (ap, format);
  g_autofree char *text = g_strdup_vprintf (format, ap);
  va_end (ap);
  g_message ("%s", text);
  show_banner (self, GTK_MESSAGE_ERROR, text);
}

void
vl_window_show_info (VlWindow *self, const char *format, ...)
{
  va_list ap;
  va_start (ap, format);
  g_autofree char *text = g_strdup_vprintf (format, ap);
  va_end (ap);
  show_banner (self, GTK_MESSAGE_INFO, text);
}

void
vl_window_set_status (VlWindow *self, const char *text)
{
  vl_status_bar_set_text (VL_STATUS_BAR (self->status_bar), text);
}

/* The status bar's idle text and spinner: what loads, or what the user can do next. */
void
vl_window_update_status (VlWindow *self)
{
  gboolean loading = vl_window_is_loading (self);
  /* not while training: a spinner redraws every frame, and training needs both cores; the
   * progress bar and the status text already move with every batch */
  vl_status_bar_set_busy (VL_STATUS_BAR (self->status_bar),
                          loading || self->exporting || self->saving);
  if (vl_window_is_running (self))
    return;   /* the training events write it */
  if (self->backbone_cancel)
    vl_window_set_status (self, _("Loading the backbone…"));
  else if (vl_window_data_loading (self))
    vl_window_set_status (self, _("Scanning the dataset…"));
  else if (self->opening_run)
    vl_window_set_status (self, _("Opening the run…"));
  else if (self->exporting)
    vl_window_set_status (self, _("Exporting the model…"));
  else if (self->saving)
    vl_window_set_status (self, _("Copying the run folder…"));
  else if (self->model == NULL)
    vl_window_set_status (self, _("Open a backbone to start"));
  else if (self->data == NULL)
    vl_window_set_status (self, _("Open a dataset to train on"));
  else if (vl_status_bar_get_idle (VL_STATUS_BAR (self->status_bar)))
    vl_window_set_status (self, vl_status_bar_get_idle (VL_STATUS_BAR (self->status_bar)));
  else
    vl_window_set_status (self, _("Ready: press Train (Ctrl+Return)"));
}

/* ------------------------------------------------------------------ sensitivity */

/* A backbone and a dataset are there, nothing loads or runs, and something trains: the last N
 * groups, any other set of switches (a fixed pattern), or a valid schedule. */
gboolean
vl_window_can_train (VlWindow *self)
{
  if (vl_window_is_running (self) || vl_window_is_loading (self) || self->exporting ||
      self->model == NULL || self->data == NULL)
    return FALSE;
  g_autofree char *schedule = vl_window_unlock_schedule (self);
  if (schedule == NULL)
    return FALSE;
  /* the task needs its targets: numbers per image, or two classes at least */
  if (self->task == VL_TASK_REGRESS ? vl_dataset_n_values (self->data->ds) == 0
                                    : vl_dataset_n_classes (self->data->ds) < 2)
    return FALSE;
  gboolean progressive = FALSE;
  g_object_get (self->groups_panel, "progressive", &progressive, NULL);
  if (vl_window_unlocked_suffix (self) >= 0 || progressive)
    return TRUE;
  return vl_model_n_trainable (self->model) > 0;   /* a custom pattern */
}

/* The one place that decides what can be done now. */
void
vl_window_update_actions (VlWindow *self)
{
  GtkWidget *w = GTK_WIDGET (self);
  gboolean running = vl_window_is_running (self);
  gboolean loading = vl_window_is_loading (self);
  int suffix = vl_window_unlocked_suffix (self);
  g_autofree char *schedule = vl_window_unlock_schedule (self);
  gboolean schedule_ok = schedule != NULL;
  gboolean can_train = vl_window_can_train (self);

  gtk_widget_action_set_enabled (w, "win.train", can_train);
  gtk_widget_action_set_enabled (w, "win.pause", running && !self->progress->stop_requested);
  gtk_widget_action_set_enabled (w, "win.stop", running && !self->progress->stop_requested);
  gtk_widget_action_set_enabled (w, "win.resume-run",
                                 !running && !loading && self->run_resumable && self->run_dir);
  gtk_widget_action_set_enabled (w, "win.open-backbone", !running);
  gtk_widget_action_set_enabled (w, "win.open-backbone-folder", !running);
  gtk_widget_action_set_enabled (w, "win.load-backbone", !running);
  gtk_widget_action_set_enabled (w, "win.open-data", !running);
  gtk_widget_action_set_enabled (w, "win.load-data", !running);
  gtk_widget_action_set_enabled (w, "win.use-fashion-mnist", !running);
  gtk_widget_action_set_enabled (w, "win.use-fashion-mnist-scenes", !running);
  gtk_widget_action_set_enabled (w, "win.open-preset", !running && !self->opening_run);
  gtk_widget_action_set_enabled (w, "win.open-run", !running && !self->opening_run);
  gtk_widget_action_set_enabled (w, "win.save-run",
                                 !running && self->run_dir != NULL && !self->saving &&
                                 g_file_test (self->run_dir, G_FILE_TEST_IS_DIR));
  gtk_widget_action_set_enabled (w, "win.export",
                                 !running && self->trained != NULL && !self->exporting);
  /* a dense task's ONNX file takes its head from the run folder (vl_onnx_run_init) */
  const gboolean needs_run = self->task != VL_TASK_CLASSIFY;
  gtk_widget_action_set_enabled (w, "win.export-onnx",
                                 !running && self->trained != NULL && !self->exporting &&
                                 (!needs_run || self->run_dir != NULL));
  gtk_widget_action_set_enabled (w, "win.export-recipe",
                                 !running && self->trained != NULL && self->run_dir != NULL &&
                                 !self->exporting);
  gtk_widget_action_set_enabled (w, "win.head", !running);
  gtk_widget_action_set_enabled (w, "win.unlock-more", self->model != NULL);
  gtk_widget_action_set_enabled (w, "win.unlock-fewer", self->model != NULL);

  /* settings that must not change while a run uses them; the unlock count stays live (it
   * becomes vl_trainer_set_unlock from the next epoch) */
  g_object_set (self->head_panel, "mlp-editable",
                !running && g_strcmp0 (self->head, "mlp") == 0, NULL);
  g_object_set (self->groups_panel, "running", running, NULL);
  g_object_set (self->data_panel, "editable", !running, NULL);
  g_object_set (self->training_panel, "editable", !running, NULL);
  g_object_set (self->backbone_panel, "editable", !running, NULL);

  /* the header bar buttons (set only what changed: this runs at every drain) */
  const char *icon = self->progress->paused ? "media-playback-start-symbolic"
                                            : "media-playback-pause-symbolic";
  if (g_strcmp0 (gtk_button_get_icon_name (GTK_BUTTON (self->pause_button)), icon) != 0)
    {
      gtk_button_set_icon_name (GTK_BUTTON (self->pause_button), icon);
      gtk_widget_set_tooltip_text (self->pause_button,
                                   self->progress->paused ? _("Resume training (Ctrl+P)")
                                                : _("Pause training at the next batch (Ctrl+P)"));
    }
  const char *label = running ? (self->progress->stop_requested ? _("Stopping…")
                                 : self->progress->paused ? _("Paused") : _("Training…"))
                              : _("_Train");
  if (g_strcmp0 (gtk_label_get_label (GTK_LABEL (self->train_button_label)), label) != 0)
    gtk_label_set_text_with_mnemonic (GTK_LABEL (self->train_button_label), label);
  const char *tip = _("Start training with the settings in the sidebar (Ctrl+Return)");
  if (!can_train && !running)
    tip = self->model == NULL ? _("Open a backbone first")
        : self->data == NULL ? _("Open a dataset first")
        : loading ? _("Wait until loading ends")
        : !schedule_ok ? _("The unfreezing schedule is not valid")
        : suffix < 0 ? _("Unlock at least one layer group")
        : tip;
  if (g_strcmp0 (gtk_widget_get_tooltip_text (self->train_button), tip) != 0)
    gtk_widget_set_tooltip_text (self->train_button, tip);
  vl_window_update_status (self);
}

/* ------------------------------------------------------------------ dialogs */

typedef struct {
  VlWindow *self;
  GtkWidget **slot;
  void (*done) (VlWindow *self, gboolean accepted);
} ConfirmData;

static void
on_confirm_response (GtkDialog *dialog, int response, gpointer user_data)
{
  ConfirmData *cd = user_data;
  VlWindow *self = cd->self;
  if (cd->slot && *cd->slot == GTK_WIDGET (dialog))
    *cd->slot = NULL;
  gtk_window_destroy (GTK_WINDOW (dialog));
  cd->done (self, response == GTK_RESPONSE_ACCEPT);
  g_object_unref (self);
  g_free (cd);
}

/* A modal question; the answer goes to done. The dialog is kept in *slot while it is open (so
 * tests can answer it with gtk_dialog_response). */
void
vl_window_confirm (VlWindow *self, GtkWidget **slot, const char *primary, const char *secondary,
                   const char *accept, void (*done) (VlWindow *self, gboolean accepted))
{
  if (self->suppress_confirm)
    {
      done (self, TRUE);
      return;
    }
  GtkWidget *dialog = gtk_message_dialog_new (GTK_WINDOW (self), GTK_DIALOG_MODAL |
                                              GTK_DIALOG_DESTROY_WITH_PARENT,
                                              GTK_MESSAGE_QUESTION, GTK_BUTTONS_NONE, "%s",
                                              primary);
  gtk_message_dialog_format_secondary_text (GTK_MESSAGE_DIALOG (dialog), "%s", secondary);
  gtk_dialog_add_button (GTK_DIALOG (dialog), "_Cancel", GTK_RESPONSE_CANCEL);
  GtkWidget *ok = gtk_dialog_add_button (GTK_DIALOG (dialog), accept, GTK_RESPONSE_ACCEPT);
  gtk_widget_add_css_class (ok, "destructive-action");
  gtk_dialog_set_default_response (GTK_DIALOG (dialog), GTK_RESPONSE_CANCEL);
  ConfirmData *cd = g_new0 (ConfirmData, 1);
  cd->self = g_object_ref (self);
  cd->slot = slot;
  cd->done = done;
  if (slot)
    *slot = dialog;
  g_signal_connect (dialog, "response", G_CALLBACK (on_confirm_response), cd);
  gtk_window_present (GTK_WINDOW (dialog));
}

typedef struct {
  VlWindow *self;
  char *settings_key;
  void (*done) (VlWindow *self, GFile *file);
} ChooserData;

static void
on_chooser_response (GtkNativeDialog *native, int response, gpointer user_data)
{
  ChooserData *cd = user_data;
  if (response == GTK_RESPONSE_ACCEPT)
    {
      g_autoptr(GFile) file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (native));
      if (file)
        {
          if (cd->settings_key)
            {
              g_autoptr(GFile) parent = g_file_get_parent (file);
              g_autofree char *dir = parent ? g_file_get_path (parent) : NULL;
              if (dir)
                g_settings_set_string (cd->self->settings, cd->settings_key, dir);
            }
          cd->done (cd->self, file);
        }
    }
  gtk_native_dialog_destroy (native);
  g_object_unref (native);
  g_object_unref (cd->self);
  g_free (cd->settings_key);
  g_free (cd);
}

/* A file or folder chooser (GtkFileChooserNative: GTK 4.8 has no GtkFileDialog) that starts in
 * the folder remembered under settings_key and remembers the new one. */
void
vl_window_choose_file (VlWindow *self, const char *title, GtkFileChooserAction action,
                       const char *accept, const char *settings_key, GtkFileFilter *filter,
                       void (*done) (VlWindow *self, GFile *file))
{
  GtkFileChooserNative *native = gtk_file_chooser_native_new (title, GTK_WINDOW (self), action,
                                                              accept, _("_Cancel"));
  gtk_native_dialog_set_modal (GTK_NATIVE_DIALOG (native), TRUE);
  if (filter)
    gtk_file_chooser_add_filter (GTK_FILE_CHOOSER (native), filter);
  if (settings_key)
    {
      g_autofree char *dir = g_settings_get_string (self->settings, settings_key);
      if (dir && *dir && g_file_test (dir, G_FILE_TEST_IS_DIR))
        {
          g_autoptr(GFile) f = g_file_new_for_path (dir);
          gtk_file_chooser_set_current_folder (GTK_FILE_CHOOSER (native), f, NULL);
        }
    }
  ChooserData *cd = g_new0 (ChooserData, 1);
  cd->self = g_object_ref (self);
  cd->settings_key = g_strdup (settings_key);
  cd->done = done;
  g_signal_connect (native, "response", G_CALLBACK (on_chooser_response), cd);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (native));
}

