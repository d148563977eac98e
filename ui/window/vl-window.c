/* vl-window.c: the window type, its actions and shortcuts, drag and drop (checkpoints, image
 * folders, runs, probe images), the remembered settings, and the parts' init and dispose. It
 * sits on top: the other vl-window*.c files never call into it (vl-window-status.c holds what
 * they share: the status bar, the banner, what is enabled, the dialogs). */
#include "vl-window-private.h"
#include <glib/gi18n.h>

#include "vl-attention-view.h"
#include "vl-confusion-view.h"
#include "vl-scatter-view.h"
#include "vl-mask-view.h"
#include "vl-det-panel.h"
#include "vl-knn-panel.h"
#include "vl-embedding-panel.h"
#include "vl-try-panel.h"
#include "vl-task-view.h"
#include "vl-loss-chart.h"
#include "vl-resources.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#ifdef __linux__
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "vl-pool.h"

G_DEFINE_FINAL_TYPE (VlWindow, vl_window, GTK_TYPE_APPLICATION_WINDOW)

enum {
  PROP_0,
  PROP_HEAD,
  PROP_DARK,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

/* ------------------------------------------------------------------ helpers */

VlModel *
vl_window_get_model (VlWindow *self)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), NULL);
  return self->model;
}

static void
on_banner_response (GtkInfoBar *bar, int response, VlWindow *self)
{
  gtk_info_bar_set_revealed (bar, FALSE);
}

/* ------------------------------------------------------------------ actions */

static void
backbone_chosen (VlWindow *self, GFile *file)
{
  g_autofree char *path = g_file_get_path (file);
  if (path)
    vl_window_open_backbone (self, path);
}

static void
data_chosen (VlWindow *self, GFile *file)
{
  g_autofree char *path = g_file_get_path (file);
  if (path)
    vl_window_open_data (self, path);
}

static void
run_chosen (VlWindow *self, GFile *file)
{
  g_autofree char *path = g_file_get_path (file);
  if (path)
    vl_window_open_run (self, path);
}

static void
action_open_backbone (GtkWidget *widget, const char *name, GVariant *param)
{
  VlWindow *self = VL_WINDOW (widget);
  GtkFileFilter *filter = gtk_file_filter_new ();
  gtk_file_filter_set_name (filter, _("Checkpoints (.safetensors, PyTorch .pth, .pt, .bin, .ckpt, JAX .npz)"));
  gtk_file_filter_add_suffix (filter, "safetensors");
  gtk_file_filter_add_suffix (filter, "pth");
  gtk_file_filter_add_suffix (filter, "pt");
  gtk_file_filter_add_suffix (filter, "bin");
  gtk_file_filter_add_suffix (filter, "ckpt");
  gtk_file_filter_add_suffix (filter, "npz");
  vl_window_choose_file (self, _("Open Backbone"), GTK_FILE_CHOOSER_ACTION_OPEN, _("_Open"),
                         "backbone-folder", filter, backbone_chosen);
  g_object_unref (filter);
}

static void
action_open_backbone_folder (GtkWidget *widget, const char *name, GVariant *param)
{
  vl_window_choose_file (VL_WINDOW (widget), _("Open Backbone Folder"),
                         GTK_FILE_CHOOSER_ACTION_SELECT_FOLDER, _("_Open"), "backbone-folder", NULL,
                         backbone_chosen);
}

static void
action_load_backbone (GtkWidget *widget, const char *name, GVariant *param)
{
  vl_window_open_backbone (VL_WINDOW (widget), g_variant_get_string (param, NULL));
}

static void
action_open_data (GtkWidget *widget, const char *name, GVariant *param)
{
  vl_window_choose_file (VL_WINDOW (widget), _("Open Image Folder"),
                         GTK_FILE_CHOOSER_ACTION_SELECT_FOLDER, _("_Open"), "data-folder", NULL,
                         data_chosen);
}

static void
action_load_data (GtkWidget *widget, const char *name, GVariant *param)
{
  vl_window_open_data (VL_WINDOW (widget), g_variant_get_string (param, NULL));
}

static void
action_use_fashion_mnist (GtkWidget *widget, const char *name, GVariant *param)
{
  VlWindow *self = VL_WINDOW (widget);
  g_autofree char *classes = NULL;
  int cap = 0, val = 0;
  g_object_get (self->data_panel, "fmnist-classes", &classes, "fmnist-per-class", &cap,
                "fmnist-val-per-class", &val, NULL);
  g_autofree char *spec = g_strdup_printf ("fashion-mnist:classes=%s,per-class=%d,"
                                           "val-per-class=%d", *classes ? classes : "0-9", cap,
                                           val);
  vl_data_panel_close_fmnist (VL_DATA_PANEL (self->data_panel));
  vl_window_open_data (self, spec);
}

/* The same classes as scenes for segmentation: 1-3 garments on a canvas, a mask per pixel. */
static void
action_use_fashion_mnist_scenes (GtkWidget *widget, const char *name, GVariant *param)
{
  VlWindow *self = VL_WINDOW (widget);
  g_autofree char *classes = NULL;
  g_object_get (self->data_panel, "fmnist-classes", &classes, NULL);
  /* the scenes demo's size: 40 px canvases, the input at that size (a 10 x 10 grid at patch 4) */
  g_autofree char *spec = g_strdup_printf ("fashion-mnist-scenes:classes=%s,train=400,val=200,"
                                           "size=40", *classes ? classes : "0-9");
  vl_data_panel_close_fmnist (VL_DATA_PANEL (self->data_panel));
  g_object_set (self->head_panel, "input-size", 40, NULL);
  vl_window_open_data (self, spec);
}

/* A recipe by its id: the training panel's, or a demo of vl-preset.h (the Demos menu, --preset). */
static void
action_open_preset (GtkWidget *widget, const char *name, GVariant *param)
{
  vl_window_open_preset (VL_WINDOW (widget), g_variant_get_string (param, NULL));
}

static void
action_open_probe (GtkWidget *widget, const char *name, GVariant *param)
{
  vl_window_choose_probe (VL_WINDOW (widget));
}

static void
action_open_run (GtkWidget *widget, const char *name, GVariant *param)
{
  vl_window_choose_file (VL_WINDOW (widget), _("Open Run Folder"),
                         GTK_FILE_CHOOSER_ACTION_SELECT_FOLDER, _("_Open"), "run-folder", NULL,
                         run_chosen);
}

static void
action_save_run (GtkWidget *widget, const char *name, GVariant *param)
{
  vl_window_save_run (VL_WINDOW (widget));
}

static void
action_export (GtkWidget *widget, const char *name, GVariant *param)
{
  vl_window_export (VL_WINDOW (widget));
}

static void
action_export_onnx (GtkWidget *widget, const char *name, GVariant *param)
{
  vl_window_export_onnx (VL_WINDOW (widget));
}

static void
action_export_recipe (GtkWidget *widget, const char *name, GVariant *param)
{
  vl_window_export_recipe (VL_WINDOW (widget));
}

static void
action_train (GtkWidget *widget, const char *name, GVariant *param)
{
  vl_window_start_training (VL_WINDOW (widget), FALSE);
}

static void
action_resume_run (GtkWidget *widget, const char *name, GVariant *param)
{
  vl_window_start_training (VL_WINDOW (widget), TRUE);
}

static void
action_pause (GtkWidget *widget, const char *name, GVariant *param)
{
  vl_window_toggle_pause (VL_WINDOW (widget));
}

static void
action_stop (GtkWidget *widget, const char *name, GVariant *param)
{
  vl_window_stop_training (VL_WINDOW (widget));
}

static void
action_page (GtkWidget *widget, const char *name, GVariant *param)
{
  VlWindow *self = VL_WINDOW (widget);
  const char *page = g_variant_get_string (param, NULL);
  if (gtk_stack_get_child_by_name (GTK_STACK (self->main_stack), page))
    gtk_stack_set_visible_child_name (GTK_STACK (self->main_stack), page);
  else if (gtk_stack_get_child_by_name (GTK_STACK (self->side_stack), page))
    gtk_stack_set_visible_child_name (GTK_STACK (self->side_stack), page);
}

static void
action_unlock_step (GtkWidget *widget, const char *name, GVariant *param)
{
  VlWindow *self = VL_WINDOW (widget);
  int delta = g_str_equal (name, "win.unlock-more") ? 1 : -1;
  int n = 0;
  g_object_get (self->groups_panel, "unlock", &n, NULL);
  g_object_set (self->groups_panel, "unlock", MAX (n + delta, 0), NULL);
}

static void
action_close (GtkWidget *widget, const char *name, GVariant *param)
{
  gtk_window_close (GTK_WINDOW (widget));
}

/* ------------------------------------------------------------------ head and dark properties */

static void
head_confirmed (VlWindow *self, gboolean accepted)
{
  if (!accepted)
    return;
  const char *pending = g_object_get_data (G_OBJECT (self), "pending-head");
  g_autofree char *head = g_strdup (pending);
  g_object_set_data (G_OBJECT (self), "pending-head", NULL);
  vl_window_discard_trained (self);
  vl_window_set_head (self, head);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_HEAD]);
}

static void
request_head (VlWindow *self, const char *head)
{
  if (head == NULL || g_strcmp0 (head, self->head) == 0)
    return;
  if (self->have_trained)
    {
      /* the trained head would be lost: ask first (the radio stays until then) */
      g_object_set_data_full (G_OBJECT (self), "pending-head", g_strdup (head), g_free);
      vl_window_confirm (self, &self->head_dialog, _("Discard the trained head?"),
                         _("A new head starts from fresh random weights. The run folder keeps the "
                           "trained model; export it first to use it elsewhere."),
                         _("_Discard"), head_confirmed);
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_HEAD]);
      return;
    }
  vl_window_set_head (self, head);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_HEAD]);
}

static void
apply_dark (VlWindow *self, gboolean dark)
{
  self->dark = dark;
  g_object_set (gtk_settings_get_default (), "gtk-application-prefer-dark-theme", dark, NULL);
  if (g_settings_get_boolean (self->settings, "dark") != dark)
    g_settings_set_boolean (self->settings, "dark", dark);
}

static void
vl_window_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  VlWindow *self = VL_WINDOW (object);
  switch (prop_id)
    {
    case PROP_HEAD:
      g_value_set_string (value, self->head);
      break;
    case PROP_DARK:
      g_value_set_boolean (value, self->dark);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
vl_window_set_property (GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec)
{
  VlWindow *self = VL_WINDOW (object);
  switch (prop_id)
    {
    case PROP_HEAD:
      request_head (self, g_value_get_string (value));
      break;
    case PROP_DARK:
      if (self->dark != g_value_get_boolean (value))
        {
          apply_dark (self, g_value_get_boolean (value));
          g_object_notify_by_pspec (object, pspec);
        }
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

/* ------------------------------------------------------------------ drag and drop */

static gboolean
looks_like_checkpoint (GFile *file)
{
  g_autofree char *path = g_file_get_path (file);
  if (path == NULL)
    return FALSE;
  if (g_file_test (path, G_FILE_TEST_IS_REGULAR))
    return vl_checkpoint_has_extension (path);
  g_autofree char *inside = vl_checkpoint_in_folder (path);
  if (inside != NULL)
    return TRUE;
  g_autoptr(GDir) dir = g_dir_open (path, 0, NULL);
  const char *name;
  while (dir && (name = g_dir_read_name (dir)))
    if (g_str_has_suffix (name, ".safetensors"))
      return TRUE;
  return FALSE;
}

gboolean
vl_window_drop_files (VlWindow *self, GSList *files)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), FALSE);
  if (files == NULL)
    return FALSE;
  GFile *file = files->data;
  g_autofree char *path = g_file_get_path (file);
  if (path == NULL)
    {
      vl_window_show_error (self, _("Only local files and folders can be opened"));
      return FALSE;
    }
  /* an image becomes the attention probe (also during a run: the trainer then runs it with
   * its own probes, which leaves the training unchanged) */
  if (vl_looks_like_image (path))
    {
      vl_window_open_probe (self, path);
      gtk_widget_activate_action (GTK_WIDGET (self), "win.page", "s", "attention");
      return TRUE;
    }
  if (vl_window_is_running (self))
    {
      vl_window_show_error (self, _("Stop training before opening another backbone or dataset"));
      return FALSE;
    }
  g_autofree char *run_json = g_build_filename (path, "run.json", NULL);
  if (g_file_test (run_json, G_FILE_TEST_IS_REGULAR))
    vl_window_open_run (self, path);
  else if (looks_like_checkpoint (file))
    vl_window_open_backbone (self, path);
  else if (g_file_test (path, G_FILE_TEST_IS_DIR))
    vl_window_open_data (self, path);
  else
    {
      vl_window_show_error (self, _("%s: not a checkpoint (.safetensors, .pth, .bin, .ckpt, .npz), an image folder, a run "
                                    "folder or an image"), path);
      return FALSE;
    }
  return TRUE;
}

static gboolean
on_drop (GtkDropTarget *target, const GValue *value, double x, double y, VlWindow *self)
{
  if (!G_VALUE_HOLDS (value, GDK_TYPE_FILE_LIST))
    return FALSE;
  return vl_window_drop_files (self, g_value_get_boxed (value));
}

/* ------------------------------------------------------------------ closing */

static void
close_confirmed (VlWindow *self, gboolean accepted)
{
  if (!accepted)
    return;
  if (!vl_window_is_running (self))
    {
      gtk_window_destroy (GTK_WINDOW (self));
      return;
    }
  self->close_after_stop = TRUE;
  vl_window_stop_training (self);   /* the FINISHED event destroys the window */
  vl_window_set_status (self, _("Stopping and saving a checkpoint before closing…"));
}

static void
save_window_state (VlWindow *self)
{
  int w, h;
  gtk_window_get_default_size (GTK_WINDOW (self), &w, &h);
  gboolean maximized = gtk_window_is_maximized (GTK_WINDOW (self));
  if (!maximized && w > 0 && h > 0)
    {
      g_settings_set_int (self->settings, "window-width", w);
      g_settings_set_int (self->settings, "window-height", h);
    }
  g_settings_set_boolean (self->settings, "window-maximized", maximized);
  g_settings_set_int (self->settings, "sidebar-width", gtk_paned_get_position (GTK_PANED (self->paned)));
}

static gboolean
vl_window_close_request (GtkWindow *window)
{
  VlWindow *self = VL_WINDOW (window);
  save_window_state (self);
  if (vl_window_is_running (self))
    {
      if (self->close_after_stop)
        return TRUE;   /* already stopping */
      vl_window_confirm (self, &self->close_dialog, _("Stop training and close?"),
                         _("The run stops at the next batch and its folder keeps a checkpoint of "
                           "the exact position: open the run and press Resume to continue later."),
                         _("_Stop and Close"), close_confirmed);
      return TRUE;
    }
  return GTK_WINDOW_CLASS (vl_window_parent_class)->close_request (window);
}

/* ------------------------------------------------------------------ type */

static void
vl_window_dispose (GObject *object)
{
  VlWindow *self = VL_WINDOW (object);
  self->disposed = TRUE;
  vl_window_features_dispose (self);
  vl_window_train_dispose (self);
  vl_window_attention_dispose (self);
  vl_window_seg_dispose (self);
  vl_window_det_dispose (self);
  vl_window_probe_dispose (self);
  vl_window_data_dispose (self);
  vl_window_backbone_dispose (self);
  /* no gtk_widget_dispose_template: GtkWindow disposes its child and titlebar itself (the
   * template's titlebar would be unparented twice in GTK 4.8) */
  G_OBJECT_CLASS (vl_window_parent_class)->dispose (object);
}

static void
vl_window_finalize (GObject *object)
{
  VlWindow *self = VL_WINDOW (object);
  g_clear_object (&self->settings);
  g_free (self->head);
  g_free (self->probes);   /* emptied by the attention and probe parts' dispose */
  g_free (self->pred);     /* emptied by the training, seg and det parts' dispose */
  g_clear_object (&self->run);   /* stopped and disconnected by the training part's dispose */
  G_OBJECT_CLASS (vl_window_parent_class)->finalize (object);
}

/* The window's actions and the shortcuts bound to them (the shortcuts window lists them). */
static void
install_actions (GtkWidgetClass *widget_class)
{
  /* training */
  gtk_widget_class_install_action (widget_class, "win.train", NULL, action_train);
  gtk_widget_class_install_action (widget_class, "win.pause", NULL, action_pause);
  gtk_widget_class_install_action (widget_class, "win.stop", NULL, action_stop);
  gtk_widget_class_install_action (widget_class, "win.resume-run", NULL, action_resume_run);
  /* files */
  gtk_widget_class_install_action (widget_class, "win.open-backbone", NULL, action_open_backbone);
  gtk_widget_class_install_action (widget_class, "win.open-backbone-folder", NULL,
                                   action_open_backbone_folder);
  gtk_widget_class_install_action (widget_class, "win.load-backbone", "s", action_load_backbone);
  gtk_widget_class_install_action (widget_class, "win.open-data", NULL, action_open_data);
  gtk_widget_class_install_action (widget_class, "win.load-data", "s", action_load_data);
  gtk_widget_class_install_action (widget_class, "win.use-fashion-mnist", NULL,
                                   action_use_fashion_mnist);
  gtk_widget_class_install_action (widget_class, "win.use-fashion-mnist-scenes", NULL,
                                   action_use_fashion_mnist_scenes);
  gtk_widget_class_install_action (widget_class, "win.open-preset", "s", action_open_preset);
  gtk_widget_class_install_action (widget_class, "win.open-probe", NULL, action_open_probe);
  gtk_widget_class_install_action (widget_class, "win.open-run", NULL, action_open_run);
  gtk_widget_class_install_action (widget_class, "win.save-run", NULL, action_save_run);
  gtk_widget_class_install_action (widget_class, "win.export", NULL, action_export);
  gtk_widget_class_install_action (widget_class, "win.export-onnx", NULL, action_export_onnx);
  gtk_widget_class_install_action (widget_class, "win.export-recipe", NULL,
                                   action_export_recipe);
  /* view and settings */
  gtk_widget_class_install_action (widget_class, "win.page", "s", action_page);
  gtk_widget_class_install_action (widget_class, "win.unlock-more", NULL, action_unlock_step);
  gtk_widget_class_install_action (widget_class, "win.unlock-fewer", NULL, action_unlock_step);
  gtk_widget_class_install_action (widget_class, "win.close", NULL, action_close);
  gtk_widget_class_install_property_action (widget_class, "win.head", "head");
  gtk_widget_class_install_property_action (widget_class, "win.dark", "dark");

  /* shortcuts, all bound to actions (the shortcuts window lists them) */
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_Return, GDK_CONTROL_MASK, "win.train", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_KP_Enter, GDK_CONTROL_MASK, "win.train", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_p, GDK_CONTROL_MASK, "win.pause", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_Escape, 0, "win.stop", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_period, GDK_CONTROL_MASK, "win.stop", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_o, GDK_CONTROL_MASK, "win.open-backbone", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_o, GDK_CONTROL_MASK | GDK_SHIFT_MASK, "win.open-data", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_r, GDK_CONTROL_MASK, "win.open-run", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_s, GDK_CONTROL_MASK, "win.save-run", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_e, GDK_CONTROL_MASK, "win.export", NULL);
  /* not Ctrl+Shift+D (nor Ctrl+Shift+I): GtkWindow binds those to the Inspector */
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_l, GDK_CONTROL_MASK | GDK_SHIFT_MASK, "win.dark", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_w, GDK_CONTROL_MASK, "win.close", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_bracketright, GDK_CONTROL_MASK, "win.unlock-more", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_bracketleft, GDK_CONTROL_MASK, "win.unlock-fewer", NULL);
  static const char *main_pages[] = { "curves", "attention", "evaluation", "embedding", "try" };
  for (int i = 0; i < 5; i++)
    gtk_widget_class_add_binding_action (widget_class, GDK_KEY_1 + i, GDK_CONTROL_MASK,
                                         "win.page", "s", main_pages[i]);
  static const char *side_pages[] = { "backbone", "groups", "head", "data", "training" };
  for (int i = 0; i < 5; i++)
    gtk_widget_class_add_binding_action (widget_class, GDK_KEY_1 + i, GDK_ALT_MASK,
                                         "win.page", "s", side_pages[i]);
}

static void
vl_window_class_init (VlWindowClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);
  GtkWindowClass *window_class = GTK_WINDOW_CLASS (klass);

  object_class->dispose = vl_window_dispose;
  object_class->finalize = vl_window_finalize;
  object_class->get_property = vl_window_get_property;
  object_class->set_property = vl_window_set_property;
  window_class->close_request = vl_window_close_request;

  properties[PROP_HEAD] = g_param_spec_string ("head", NULL, NULL, "linear-token",
                                               G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY |
                                               G_PARAM_STATIC_STRINGS);
  properties[PROP_DARK] = g_param_spec_boolean ("dark", NULL, NULL, FALSE,
                                                G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY |
                                                G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  /* What the parts tell each other without naming one another: a part that loads something
   * emits, the parts that follow it connect in their init (vl-window-private.h). */
  g_signal_new ("backbone-changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                NULL, G_TYPE_NONE, 0);
  g_signal_new ("dataset-changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                NULL, G_TYPE_NONE, 0);
  g_signal_new ("probes-changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                NULL, G_TYPE_NONE, 0);

  /* links the compiled resources into every program that uses the window (the static
   * library's resource constructor is dropped otherwise) */
  vl_ui_start_compute_pool ();
  GResource *resources = vl_get_resource ();
  g_return_if_fail (resources != NULL);
  g_type_ensure (VL_TYPE_LOSS_CHART);
  g_type_ensure (VL_TYPE_ATTENTION_VIEW);
  g_type_ensure (VL_TYPE_CONFUSION_VIEW);
  g_type_ensure (VL_TYPE_SCATTER_VIEW);
  g_type_ensure (VL_TYPE_MASK_VIEW);
  g_type_ensure (VL_TYPE_DET_PANEL);
  g_type_ensure (VL_TYPE_TRAINING_PANEL);
  g_type_ensure (VL_TYPE_HEAD_PANEL);
  g_type_ensure (VL_TYPE_BACKBONE_PANEL);
  g_type_ensure (VL_TYPE_DATA_PANEL);
  g_type_ensure (VL_TYPE_GROUPS_PANEL);
  g_type_ensure (VL_TYPE_STATUS_BAR);
  g_type_ensure (VL_TYPE_STAT_CARDS);
  g_type_ensure (VL_TYPE_EVAL_CARD);
  g_type_ensure (VL_TYPE_ATTENTION_BAR);
  g_type_ensure (VL_TYPE_KNN_PANEL);
  g_type_ensure (VL_TYPE_EMBEDDING_PANEL);
  g_type_ensure (VL_TYPE_TRY_PANEL);
  gtk_widget_class_set_template_from_resource (widget_class, "/org/vitlab/Vitlab/vl-window.ui");
#define CHILD(name) gtk_widget_class_bind_template_child (widget_class, VlWindow, name)
  CHILD (header_bar);
  CHILD (train_button);
  CHILD (train_button_label);
  CHILD (pause_button);
  CHILD (stop_button);
  CHILD (dark_button);
  CHILD (banner);
  CHILD (banner_label);
  CHILD (paned);
  CHILD (side_stack);
  CHILD (main_stack);
  CHILD (main_scroller);
  CHILD (chart_frame);
  CHILD (chart);
  CHILD (attention);
  CHILD (confusion);
  CHILD (embedding_panel);
  CHILD (try_panel);
  CHILD (attention_frame);
  CHILD (confusion_frame);
  CHILD (message_label);
  CHILD (scatter);
  CHILD (mask_view);
  CHILD (det_panel);
  CHILD (training_panel);
  CHILD (head_panel);
  CHILD (backbone_panel);
  CHILD (data_panel);
  CHILD (groups_panel);
  CHILD (eval_caption);
  CHILD (status_bar);
  CHILD (stat_cards);
  CHILD (eval_card);
  CHILD (attn_bar);
#undef CHILD
  gtk_widget_class_bind_template_callback (widget_class, on_banner_response);

  install_actions (widget_class);
}

static void
on_augment_changed (VlWindow *self)
{
  vl_window_update_actions (self);
}

static void
vl_window_init (VlWindow *self)
{
  self->head = g_strdup ("linear-token");
  self->probes = g_new0 (VlProbeState, 1);
  self->pred = g_new0 (VlPredState, 1);
  self->run = vl_run_controller_new ();   /* the training part connects to it */
  self->progress = vl_run_controller_get_progress (self->run);
  self->settings = g_settings_new ("org.vitlab.Vitlab");
  gtk_widget_init_template (GTK_WIDGET (self));

  int w = g_settings_get_int (self->settings, "window-width");
  int h = g_settings_get_int (self->settings, "window-height");
  /* a size saved on a larger screen would open past this one's edges */
  GListModel *monitors = gdk_display_get_monitors (gdk_display_get_default ());
  g_autoptr (GdkMonitor) monitor = g_list_model_get_item (monitors, 0);
  if (monitor != NULL)
    {
      GdkRectangle geo;
      gdk_monitor_get_geometry (monitor, &geo);
      w = MIN (w, geo.width);
      h = MIN (h, geo.height - 48);
    }
  if (w > 0 && h > 0)
    gtk_window_set_default_size (GTK_WINDOW (self), w, h);
  if (g_settings_get_boolean (self->settings, "window-maximized"))
    gtk_window_maximize (GTK_WINDOW (self));
  int sw = g_settings_get_int (self->settings, "sidebar-width");
  if (sw > 0)
    gtk_paned_set_position (GTK_PANED (self->paned), sw);
  self->dark = g_settings_get_boolean (self->settings, "dark");

  GtkDropTarget *drop = gtk_drop_target_new (GDK_TYPE_FILE_LIST, GDK_ACTION_COPY);
  g_signal_connect (drop, "drop", G_CALLBACK (on_drop), self);
  gtk_widget_add_controller (GTK_WIDGET (self), GTK_EVENT_CONTROLLER (drop));

  self->knn_panel = vl_data_panel_get_knn_panel (VL_DATA_PANEL (self->data_panel));
  g_signal_connect_swapped (self->data_panel, "notify::augment",
                            G_CALLBACK (on_augment_changed), self);

  /* the order in which the parts connect is the order in which they hear the window's
   * "backbone-changed" and "dataset-changed" (the training part hears the dataset last) */
  vl_window_backbone_init (self);
  vl_window_data_init (self);
  vl_window_attention_init (self);
  vl_window_probe_init (self);
  vl_window_task_init (self);
  vl_window_train_init (self);
  vl_window_gallery_init (self);
  vl_window_seg_init (self);
  vl_window_det_init (self);
  vl_window_features_init (self);
  vl_window_update_actions (self);
}

VlWindow *
vl_window_new (GtkApplication *app)
{
  return g_object_new (VL_TYPE_WINDOW, "application", app, NULL);
}

/* ------------------------------------------------------------------ what others may read */

VlTaskKind
vl_window_get_task (VlWindow *self)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), VL_TASK_CLASSIFY);
  return self->task;
}

const char *
vl_window_get_backbone_path (VlWindow *self)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), NULL);
  return self->backbone_path;
}

VlDataRef *
vl_window_get_data (VlWindow *self)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), NULL);
  return self->data;
}

VlTrainedRef *
vl_window_get_trained (VlWindow *self)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), NULL);
  return self->trained;
}

gboolean
vl_window_has_trained (VlWindow *self)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), FALSE);
  return self->have_trained;
}

const char *
vl_window_get_run_dir (VlWindow *self)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), NULL);
  return self->run_dir;
}

const char * const *
vl_window_get_class_names (VlWindow *self)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), NULL);
  return (const char * const *) self->class_names;
}

VlRunController *
vl_window_get_run_controller (VlWindow *self)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), NULL);
  return self->run;
}

gboolean
vl_window_run_finished (VlWindow *self)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), FALSE);
  return vl_window_trainer (self) != NULL && self->progress->state == VL_TRAINER_FINISHED;
}

gboolean
vl_window_is_paused (VlWindow *self)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), FALSE);
  return self->progress->paused;
}

gboolean
vl_window_stop_requested (VlWindow *self)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), FALSE);
  return self->progress->stop_requested;
}

gboolean
vl_window_is_resumable (VlWindow *self)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), FALSE);
  return self->run_resumable;
}

VlTrainEnd
vl_window_get_last_end (VlWindow *self)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), VL_TRAIN_END_COMPLETED);
  return self->progress->last_end;
}

int64_t
vl_window_get_steps_done (VlWindow *self)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), 0);
  return self->progress->steps_done;
}

int
vl_window_get_n_epochs_done (VlWindow *self)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), 0);
  return self->progress->n_epochs_done;
}

int
vl_window_get_n_probe_events (VlWindow *self)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), 0);
  return self->progress->n_probe_events;
}

gboolean
vl_window_is_exporting (VlWindow *self)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), FALSE);
  return self->exporting;
}

gboolean
vl_window_predictions_busy (VlWindow *self)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), FALSE);
  return self->pred->cancel != NULL;
}

int
vl_window_get_n_predictions (VlWindow *self)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), 0);
  return self->pred->cls.n;
}

void
vl_window_get_prediction (VlWindow *self, int i, int *label, int *predicted)
{
  g_return_if_fail (VL_IS_WINDOW (self));
  g_return_if_fail (i >= 0 && i < self->pred->cls.n);
  if (label)
    *label = self->pred->cls.label[i];
  if (predicted)
    *predicted = self->pred->cls.predicted[i];
}

VlDataRef *
vl_window_get_predictions_data (VlWindow *self)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), NULL);
  return self->pred->data;
}

gboolean
vl_window_has_seg_predictions (VlWindow *self)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), FALSE);
  return self->pred->seg != NULL;
}

gboolean
vl_window_has_det_predictions (VlWindow *self)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), FALSE);
  return self->pred->det != NULL;
}

gboolean
vl_window_attention_busy (VlWindow *self)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), FALSE);
  return self->probes->cancel != NULL;
}

int
vl_window_get_n_probes (VlWindow *self)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), 0);
  return self->probes->n;
}

int
vl_window_get_n_probe_images (VlWindow *self)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), 0);
  return self->probes->n_images;
}

const VlImage *
vl_window_get_probe_image (VlWindow *self, int i)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), NULL);
  g_return_val_if_fail (i >= 0 && i < self->probes->n_images, NULL);
  return self->probes->images[i];
}

void
vl_window_get_attention_grid (VlWindow *self, int *gh, int *gw)
{
  g_return_if_fail (VL_IS_WINDOW (self));
  if (gh)
    *gh = self->probes->gh;
  if (gw)
    *gw = self->probes->gw;
}

gboolean
vl_window_has_probe_maps (VlWindow *self, VlWindowMaps which)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), FALSE);
  switch (which)
    {
    case VL_WINDOW_MAPS_PRETRAINED:
      return self->probes->ref_attn != NULL;
    case VL_WINDOW_MAPS_RUN:
      return self->probes->rollout != NULL;
    case VL_WINDOW_MAPS_FINE_TUNED:
      return self->probes->final_attn != NULL;
    }
  return FALSE;
}

void
vl_window_get_probe_state (VlWindow *self, VlWindowProbeState *state)
{
  g_return_if_fail (VL_IS_WINDOW (self));
  g_return_if_fail (state != NULL);
  const VlProbeFile *pf = &self->probes->file;
  *state = (VlWindowProbeState) {
    .path = pf->path, .shown = self->probes->file_shown, .is_sample = pf->is_sample,
    .busy = self->probes->file_cancel != NULL, .image = pf->image, .ref_attn = pf->ref_attn,
    .now_attn = pf->now_attn, .live_attn = pf->live_attn,
    .attn_len = (gsize) pf->depth * pf->heads * pf->T * pf->T, .live_step = pf->live_step,
    .live_serial = pf->live_serial, .ref_class = pf->ref_class, .now_class = pf->now_class,
    .live_class = pf->live_class,
  };
}

GtkWidget *
vl_window_get_close_dialog (VlWindow *self)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), NULL);
  return self->close_dialog;
}

GtkWidget *
vl_window_get_head_dialog (VlWindow *self)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), NULL);
  return self->head_dialog;
}

GtkWidget *
vl_window_get_gallery (VlWindow *self)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), NULL);
  return self->gallery;
}

void
vl_window_set_ask_confirmation (VlWindow *self, gboolean ask)
{
  g_return_if_fail (VL_IS_WINDOW (self));
  self->suppress_confirm = !ask;
}

void
vl_window_stop_and_close (VlWindow *self)
{
  g_return_if_fail (VL_IS_WINDOW (self));
  self->suppress_confirm = TRUE;
  close_confirmed (self, TRUE);
}

gboolean
vl_window_dataset_shown (VlWindow *self)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), FALSE);
  return self->thumbs_cancel != NULL || self->data_spec == NULL;
}
