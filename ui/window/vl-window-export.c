/* vl-window-export.c: exporting the trained model (a timm folder, an ONNX file, the run's recipe
 * for PyTorch) and saving the run folder elsewhere: the file choosers, then vl_job_export and
 * vl_job_copy_run (vl-jobs.c) on worker threads, and what the banner says when they are done.
 * It calls only vl-window-status.c. */
#include "vl-window-private.h"
#include <glib/gi18n.h>

/* ------------------------------------------------------------------ export */

static void
export_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  VlWindow *self = VL_WINDOW (source);
  if (self->disposed)
    return;   /* the window closed meanwhile */
  g_autoptr(GError) error = NULL;
  VlExportInfo j;
  self->exporting = FALSE;
  if (vl_job_export_finish (result, &j, &error) && j.kind == VL_EXPORT_RECIPE)
    vl_window_show_info (self, _("Exported the run's recipe to %s: train.py for python3 or "
                         "torchrun, run.json, backbone/ and README.md with the commands%s%s"),
                         j.dest, j.note ? _(". Note: ") : "", j.note ? j.note : "");
  else if (error == NULL && j.kind == VL_EXPORT_ONNX)
    vl_window_show_info (self, _("Exported the fine-tuned model to %s (ONNX, opset 17: "
                                 "pixel_values in, %s and features out)"), j.dest,
                         j.task == VL_TASK_REGRESS ? "values"
                         : j.task == VL_TASK_SEGMENT ? "seg_logits"
                         : j.task == VL_TASK_DETECT ? "cls_logits, bbox_regression, bbox_ctrness"
                         : "logits");
  else if (error == NULL)
    vl_window_show_info (self, _("Exported the fine-tuned model to %s (timm layout: "
                                 "model.safetensors and config.json)"), j.dest);
  else
    vl_window_show_error (self, _("Export failed: %s"), error->message);
  vl_window_update_actions (self);
}

static void
export_to (VlWindow *self, const char *dir, VlExportKind kind)
{
  if (self->trained == NULL || vl_trained_model (self->trained) == NULL ||
      (kind == VL_EXPORT_RECIPE && self->run_dir == NULL))
    return;
  self->exporting = TRUE;
  vl_job_export (G_OBJECT (self), kind, dir, self->trained, self->task, self->run_dir,
                 (const char *const *) self->class_names, export_done, NULL);
  vl_window_update_actions (self);
}

static void
export_chosen (VlWindow *self, GFile *file)
{
  g_autofree char *path = g_file_get_path (file);
  if (path)
    export_to (self, path, VL_EXPORT_TIMM);
}

static void
export_onnx_chosen (VlWindow *self, GFile *file)
{
  g_autofree char *path = g_file_get_path (file);
  if (path)
    export_to (self, path, VL_EXPORT_ONNX);
}

static void
export_recipe_chosen (VlWindow *self, GFile *file)
{
  g_autofree char *path = g_file_get_path (file);
  if (path)
    export_to (self, path, VL_EXPORT_RECIPE);
}

void
vl_window_export (VlWindow *self)
{
  if (self->trained == NULL || self->exporting)
    return;
  const char *dir = g_object_get_data (G_OBJECT (self), "export-dir-override");
  if (dir)   /* tests */
    {
      export_to (self, dir, VL_EXPORT_TIMM);
      return;
    }
  vl_window_choose_file (self, _("Export Fine-Tuned Model (choose or create a folder)"),
                         GTK_FILE_CHOOSER_ACTION_SELECT_FOLDER, _("_Export"), "export-folder", NULL,
                         export_chosen);
}

void
vl_window_export_onnx (VlWindow *self)
{
  if (self->trained == NULL || self->exporting)
    return;
  const char *file = g_object_get_data (G_OBJECT (self), "export-onnx-override");
  if (file)   /* tests */
    {
      export_to (self, file, VL_EXPORT_ONNX);
      return;
    }
  GtkFileFilter *filter = gtk_file_filter_new ();
  gtk_file_filter_set_name (filter, "ONNX models");
  gtk_file_filter_add_pattern (filter, "*.onnx");
  vl_window_choose_file (self, _("Export Fine-Tuned Model as ONNX (a .onnx file)"),
                         GTK_FILE_CHOOSER_ACTION_SAVE, _("_Export"), "export-folder", filter,
                         export_onnx_chosen);
  g_object_unref (filter);
}

/* The run's recipe as a PyTorch DDP script folder (vl_recipe_export). */
void
vl_window_export_recipe (VlWindow *self)
{
  if (self->trained == NULL || self->run_dir == NULL || self->exporting)
    return;
  const char *dir = g_object_get_data (G_OBJECT (self), "export-recipe-override");
  if (dir)   /* tests */
    {
      export_to (self, dir, VL_EXPORT_RECIPE);
      return;
    }
  vl_window_choose_file (self, _("Export the Recipe for PyTorch (choose or create a folder)"),
                         GTK_FILE_CHOOSER_ACTION_SELECT_FOLDER, _("_Export"), "export-folder", NULL,
                         export_recipe_chosen);
}

/* ------------------------------------------------------------------ save a run */

static void
copy_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  VlWindow *self = VL_WINDOW (source);
  if (self->disposed)
    return;   /* the window closed meanwhile */
  g_autoptr(GError) error = NULL;
  const char *dest = NULL;
  self->saving = FALSE;
  if (vl_job_copy_run_finish (result, &dest, &error))
    {
      g_free (self->run_dir);
      self->run_dir = g_strdup (dest);
      vl_training_panel_set_run_dir (VL_TRAINING_PANEL (self->training_panel), self->run_dir,
                                     self->run_dir);
      vl_window_show_info (self, _("Saved the run to %s"), dest);
    }
  else
    vl_window_show_error (self, _("Saving the run failed: %s"), error->message);
  vl_window_update_actions (self);
}

static void
save_chosen (VlWindow *self, GFile *file)
{
  g_autofree char *path = g_file_get_path (file);
  if (path == NULL || self->run_dir == NULL)
    return;
  g_autofree char *base = g_path_get_basename (self->run_dir);
  g_autofree char *dest = g_build_filename (path, base, NULL);
  self->saving = TRUE;
  vl_job_copy_run (G_OBJECT (self), self->run_dir, dest, NULL, copy_done, NULL);
  vl_window_update_actions (self);
}

void
vl_window_save_run (VlWindow *self)
{
  if (self->run_dir == NULL || vl_window_is_running (self) || self->saving)
    return;
  vl_window_choose_file (self, _("Save Run Into Folder"), GTK_FILE_CHOOSER_ACTION_SELECT_FOLDER,
                         _("_Save"), "run-folder", NULL, save_chosen);
}
