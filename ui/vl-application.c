/* vl-application.c: the GtkApplication subclass: options, the style sheet and dark style, app
 * actions (about, quit), the main window with its default backbone and dataset (and a probe
 * image), and the --screenshot demo mode. */
#include "vl-application.h"
#include <glib/gi18n.h>

#include <epoxy/gl.h>
#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>

#include "vl-attention-view.h"
#include "vl-embedding-panel.h"
#include "vl-embedding-view.h"
#include "vl-knn-panel.h"
#include "vl-try-panel.h"
#include "vl-loss-chart.h"
#include "vl-atomic.h"
#include "vl-pool.h"
#include "vl-threads.h"
#include "vl-data-panel.h"
#include "vl-window.h"
#include "vl-preset.h"

struct _VlApplication
{
  GtkApplication parent_instance;

  char     *backbone;
  char     *data;
  char     *run;
  char     *probe;
  char     *preset;
  int       epochs;
  gboolean  train;
  gboolean  dark;
  char    **pages;
  char    **try_files;       /* --try: images or folders for "Try it" */
  gboolean  knn_layers;      /* --knn-layers: the per-block k-NN once the probe is there */
  gboolean  knn_layers_started;
  char     *screenshot;
  char     *screenshot_when;
  guint     poll_source;
  gboolean  train_started;
  gboolean  shot_unhovered;
  gint64    started;
  int       exit_status;     /* 1 when --screenshot gave up on a backbone or dataset that failed */
};

G_DEFINE_FINAL_TYPE (VlApplication, vl_application, GTK_TYPE_APPLICATION)

/* ------------------------------------------------------------------ settings schema
 *
 * g_settings_new aborts when its schema is not installed: a copy run from the build folder
 * without `make run`, or a prefix that is not in XDG_DATA_DIRS. Before anything reads a setting,
 * vl_application_new looks for the schema where GIO will; when it is not there, the compiled
 * copy built into the resources is written to a private folder that GSETTINGS_SCHEMA_DIR then
 * names, with the in-memory backend (nothing is saved), and the window says so. */

#define SCHEMA_ID "org.vitlab.Vitlab"

static char *settings_fallback_reason;   /* set when the fallback is in use */

static gboolean
schema_in_dir (const char *dir)
{
  g_autoptr(GSettingsSchemaSource) src =
    g_settings_schema_source_new_from_directory (dir, NULL, FALSE, NULL);
  if (src == NULL)
    return FALSE;
  g_autoptr(GSettingsSchema) schema = g_settings_schema_source_lookup (src, SCHEMA_ID, FALSE);
  return schema != NULL;
}

/* The folders GIO's default schema source reads, without creating that source (it is made
 * once, from the environment of that moment). */
static gboolean
schema_installed (void)
{
  const char *env = g_getenv ("GSETTINGS_SCHEMA_DIR");
  if (env != NULL)
    {
      g_auto(GStrv) dirs = g_strsplit (env, G_SEARCHPATH_SEPARATOR_S, -1);
      for (int i = 0; dirs[i]; i++)
        if (*dirs[i] && schema_in_dir (dirs[i]))
          return TRUE;
    }
  g_autofree char *user = g_build_filename (g_get_user_data_dir (), "glib-2.0", "schemas", NULL);
  if (schema_in_dir (user))
    return TRUE;
  const char *const *sys = g_get_system_data_dirs ();
  for (int i = 0; sys[i]; i++)
    {
      g_autofree char *dir = g_build_filename (sys[i], "glib-2.0", "schemas", NULL);
      if (schema_in_dir (dir))
        return TRUE;
    }
  return FALSE;
}

static gboolean
write_schema_copy (const char *dir, GBytes *compiled)
{
  if (g_mkdir_with_parents (dir, 0700) != 0)
    return FALSE;
  g_autofree char *file = g_build_filename (dir, "gschemas.compiled", NULL);
  gsize size = 0;
  const char *data = g_bytes_get_data (compiled, &size);
  return vl_write_file_atomic (file, data, (gssize) size, NULL) && schema_in_dir (dir);
}

static void
ensure_settings_schema (void)
{
  if (settings_fallback_reason != NULL || schema_installed ())
    return;
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) compiled =
    g_resources_lookup_data ("/org/vitlab/Vitlab/gschemas.compiled", 0, &error);
  g_assert_no_error (error);   /* built into the program */
  g_autofree char *dir = g_build_filename (g_get_user_runtime_dir (), "vitlab-" VITLAB_VERSION,
                                           "schemas", NULL);
  if (!write_schema_copy (dir, compiled))
    {
      g_free (dir);
      dir = g_dir_make_tmp ("vitlab-schemas-XXXXXX", NULL);
      if (dir == NULL || !write_schema_copy (dir, compiled))
        {
          g_printerr ("vitlab: the GSettings schema %s is not installed, and no copy of it "
                      "could be written\n", SCHEMA_ID);
          return;
        }
    }
  const char *old = g_getenv ("GSETTINGS_SCHEMA_DIR");
  g_autofree char *path = old && *old ? g_strjoin (G_SEARCHPATH_SEPARATOR_S, dir, old, NULL)
                                      : g_strdup (dir);
  g_setenv ("GSETTINGS_SCHEMA_DIR", path, TRUE);
  g_setenv ("GSETTINGS_BACKEND", "memory", TRUE);
  settings_fallback_reason =
    g_strdup_printf (_("Settings will not be kept: the GSettings schema %s is not installed "
                       "(meson install, or make run, installs it)."), SCHEMA_ID);
}

const char *
vl_application_settings_fallback (void)
{
  return settings_fallback_reason;
}

/* ------------------------------------------------------------------ screenshots */

gboolean
vl_window_save_screenshot (GtkWindow *window, const char *path, GError **error)
{
  GtkWidget *w = GTK_WIDGET (window);
  int width = gtk_widget_get_width (w), height = gtk_widget_get_height (w);
  GskRenderer *renderer = gtk_native_get_renderer (GTK_NATIVE (window));
  if (width <= 0 || height <= 0 || renderer == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "the window is not shown yet");
      return FALSE;
    }
  g_autoptr(GdkPaintable) paintable = gtk_widget_paintable_new (w);
  GtkSnapshot *snapshot = gtk_snapshot_new ();
  /* an opaque background: the window's own is drawn by its CSS node */
  gdk_paintable_snapshot (paintable, snapshot, width, height);
  g_autoptr(GskRenderNode) node = gtk_snapshot_free_to_node (snapshot);
  if (node == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "nothing to render");
      return FALSE;
    }
  g_autoptr(GdkTexture) texture =
    gsk_renderer_render_texture (renderer, node, &GRAPHENE_RECT_INIT (0, 0, width, height));
  g_autoptr(GBytes) png = gdk_texture_save_to_png_bytes (texture);
  gsize size;
  const char *data = g_bytes_get_data (png, &size);
  return vl_write_file_atomic (path, data, (gssize) size, error);
}

/* ------------------------------------------------------------------ defaults */

static char *
shared_default (const char *first, ...)
{
  const char *env = g_getenv ("VITLAB_SHARED");
  g_autofree char *cwd = g_get_current_dir ();
  g_autofree char *beside = g_build_filename (cwd, "..", "shared", NULL);
  g_autofree char *inside = g_build_filename (cwd, "shared", NULL);
  const char *roots[] = { env, beside, inside };
  for (guint i = 0; i < G_N_ELEMENTS (roots); i++)
    {
      if (roots[i] == NULL)
        continue;
      g_autofree char *path = g_build_filename (roots[i], first, NULL);
      if (g_file_test (path, G_FILE_TEST_EXISTS))
        {
          g_autoptr(GFile) f = g_file_new_for_path (path);
          return g_file_get_path (f);   /* canonical */
        }
    }
  return NULL;
}

static char *
choose_default (GSettings *settings, const char *key, const char *fallback_dir,
                const char *fallback_name, gboolean is_spec)
{
  g_autofree char *last = g_settings_get_string (settings, key);
  if (last && *last && (g_file_test (last, G_FILE_TEST_EXISTS) || (is_spec && !g_path_is_absolute (last))))
    return g_steal_pointer (&last);
  g_autofree char *rel = g_build_filename (fallback_dir, fallback_name, NULL);
  return shared_default (rel, NULL);
}

static char *
absolute (const char *path)
{
  if (path == NULL)
    return NULL;
  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    return g_strdup (path);   /* a spec such as fashion-mnist:... */
  g_autoptr(GFile) f = g_file_new_for_commandline_arg (path);
  return g_file_get_path (f);
}

/* ------------------------------------------------------------------ demo mode */

/* A widget of the window's template by its name in vl-window.ui. */
static GtkWidget *
window_child (VlWindow *win, const char *name)
{
  GObject *child = gtk_widget_get_template_child (GTK_WIDGET (win), VL_TYPE_WINDOW, name);
  g_assert (GTK_IS_WIDGET (child));
  return GTK_WIDGET (child);
}

static void
take_screenshot (VlApplication *self, VlWindow *win)
{
  g_autoptr(GError) error = NULL;
  if (!vl_window_save_screenshot (GTK_WINDOW (win), self->screenshot, &error))
    g_printerr ("vitlab: screenshot: %s\n", error->message);
  else
    g_print ("%s\n", self->screenshot);
  if (vl_window_is_running (win))
    {
      vl_window_stop_and_close (win);
    }
  else
    g_application_quit (G_APPLICATION (self));
}

/* Polls the window (100 ms): starts training once everything is loaded, and takes the
 * screenshot when the asked-for state arrives. */
static gboolean
poll_window (gpointer user_data)
{
  VlApplication *self = user_data;
  GtkWindow *active = gtk_application_get_active_window (GTK_APPLICATION (self));
  if (active == NULL || !VL_IS_WINDOW (active))
    return G_SOURCE_CONTINUE;
  VlWindow *win = VL_WINDOW (active);
  /* loaded: the backbone, the dataset (when one was asked for), the attention of the probes
   * and of the probe file, the predictions of an opened run */
  VlWindowProbeState probe;
  vl_window_get_probe_state (win, &probe);
  gboolean loaded = !vl_window_is_loading (win) && !vl_window_attention_busy (win) &&
                    vl_window_dataset_shown (win) && vl_window_get_model (win) != NULL &&
                    !vl_window_predictions_busy (win) && !probe.busy;
  VlKnnPanel *knn =
    VL_KNN_PANEL (vl_data_panel_get_knn_panel (VL_DATA_PANEL (window_child (win, "data_panel"))));
  /* a shot also waits for the k-NN probe, the maps and Try It (training need not) */
  gboolean ready = loaded && !vl_window_features_busy (win);
  if (self->knn_layers && !self->knn_layers_started && ready &&
      vl_knn_panel_get_features (knn))
    {
      self->knn_layers_started = TRUE;
      vl_knn_panel_start_layers (knn);
      return G_SOURCE_CONTINUE;
    }
  if (self->train && !self->train_started && loaded)
    {
      if (vl_window_can_train (win))
        {
          self->train_started = TRUE;
          gtk_widget_activate_action (GTK_WIDGET (win), "win.train", NULL);
        }
    }
  if (self->screenshot == NULL)
    {
      if (!self->train || self->train_started)
        {
          self->poll_source = 0;
          return G_SOURCE_REMOVE;
        }
      return G_SOURCE_CONTINUE;
    }
  const char *when = self->screenshot_when ? self->screenshot_when
                   : self->train ? "finished" : "ready";
  gboolean now = FALSE;
  double waited = (g_get_monotonic_time () - self->started) / 1e6;
  if (g_str_equal (when, "ready"))
    now = ready && waited > 1.5;
  else if (g_str_equal (when, "training"))
    now = vl_window_is_running (win) && vl_window_get_n_epochs_done (win) >= 1 &&
          vl_window_get_n_probe_events (win) > 0;
  else if (g_str_equal (when, "features"))
    {
      /* the k-NN probe's features a third extracted: its progress and time left */
      gboolean shown = FALSE;
      double frac = vl_knn_panel_get_progress (knn, &shown);
      now = vl_knn_panel_is_busy (knn) && shown && frac >= 0.3;
    }
  else if (g_str_equal (when, "finished"))
    now = self->train_started && vl_window_run_finished (win) &&
          !vl_window_predictions_busy (win) && !vl_window_features_busy (win);
  if (waited > 600)
    now = TRUE;   /* give up waiting: show what there is */
  /* the backbone or the dataset failed to load: what was asked for will never come; the shot
   * shows the error banner, which stderr repeats, and the program exits with status 1 */
  if (!now && waited > 1.0 && vl_window_load_failed (win))
    {
      g_printerr ("vitlab: %s\n", gtk_label_get_text (GTK_LABEL (window_child (win, "banner_label"))));
      self->exit_status = 1;
      now = TRUE;
      self->shot_unhovered = TRUE;
    }
  if (!now)
    return G_SOURCE_CONTINUE;
  if (!self->shot_unhovered)
    {
      /* where Xvfb's pointer happens to rest is not part of the picture: no hover outline or
       * read-out (drawn by the next frame, the shot waits for the next poll) */
      self->shot_unhovered = TRUE;
      vl_attention_view_hover_at (VL_ATTENTION_VIEW (window_child (win, "attention")), -1, -1);
      vl_loss_chart_hover_at (VL_LOSS_CHART (window_child (win, "chart")), -1, -1);
      for (int side = 0; side < 2; side++)
        vl_embedding_view_hover_at (VL_EMBEDDING_VIEW (vl_embedding_panel_get_view (
                                      VL_EMBEDDING_PANEL (window_child (win, "embedding_panel")), side)), -1, -1);
      return G_SOURCE_CONTINUE;
    }
  self->poll_source = 0;
  take_screenshot (self, win);
  return G_SOURCE_REMOVE;
}

/* ------------------------------------------------------------------ actions */

static void
action_about (GSimpleAction *action, GVariant *param, gpointer user_data)
{
  GtkApplication *app = user_data;
  static const char *authors[] = { "The vitlab developers", NULL };
  gtk_show_about_dialog (gtk_application_get_active_window (app),
                         "program-name", "vitlab",
                         "logo-icon-name", "org.vitlab.Vitlab",
                         "version", VITLAB_VERSION,
                         "comments", "Transfer learning with Vision Transformers: unlock layer "
                                     "groups, train a head, watch the loss and the attention.",
                         "license-type", GTK_LICENSE_MIT_X11,
                         "authors", authors,
                         NULL);
}

static void
action_quit (GSimpleAction *action, GVariant *param, gpointer user_data)
{
  GtkApplication *app = user_data;
  /* each window may ask (a run in progress) */
  GList *windows = g_list_copy (gtk_application_get_windows (app));
  for (GList *l = windows; l; l = l->next)
    gtk_window_close (GTK_WINDOW (l->data));
  g_list_free (windows);
}

static const GActionEntry app_actions[] = {
  { .name = "about", .activate = action_about },
  { .name = "quit", .activate = action_quit },
};

/* ------------------------------------------------------------------ GApplication */

/* TRUE when OpenGL on this display is a software rasteriser (Mesa's llvmpipe or softpipe, as in
 * a VM without a GPU or under Xvfb). GTK 4.8 renders with GL whenever there is GL, and there
 * every frame is rasterised on the CPU by llvmpipe's own threads, beside the training: the demo
 * preset's Train under Xvfb took 44.8 s with GL against 38.6 s with the cairo renderer (epochs
 * 37.9 against 32.7 s). Every view of vitlab is drawn with cairo anyway. */
static gboolean
gl_is_software (GdkDisplay *display, char **renderer)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GdkGLContext) ctx = gdk_display_create_gl_context (display, &error);
  if (ctx == NULL || !gdk_gl_context_realize (ctx, &error))
    return FALSE;   /* no GL at all: GSK picks cairo by itself */
  gdk_gl_context_make_current (ctx);
  const char *name = (const char *) glGetString (GL_RENDERER);
  *renderer = g_strdup (name ? name : "");
  gdk_gl_context_clear_current ();
  return name && (strstr (name, "llvmpipe") || strstr (name, "softpipe") ||
                  strstr (name, "Software Rasterizer") || strstr (name, "SWR"));
}

/* Before the first window is realised (GSK reads GSK_RENDERER once, then): the cairo renderer
 * where GL is software, unless the user chose a renderer. VITLAB_RENDERER_NOTE=1 prints the
 * choice. */
static void
choose_renderer (void)
{
  GdkDisplay *display = gdk_display_get_default ();
  if (display == NULL || g_getenv ("GSK_RENDERER") != NULL)
    return;
  g_autofree char *renderer = NULL;
  gboolean software = gl_is_software (display, &renderer);
  if (software)
    g_setenv ("GSK_RENDERER", "cairo", TRUE);
  if (g_strcmp0 (g_getenv ("VITLAB_RENDERER_NOTE"), "1") == 0)
    g_printerr ("vitlab: OpenGL renderer \"%s\": %s\n", renderer ? renderer : "none",
                software ? "software, drawing with cairo" : "drawing with GSK's default");
}

static void
vl_application_startup (GApplication *app)
{
  G_APPLICATION_CLASS (vl_application_parent_class)->startup (app);
  choose_renderer ();
  vl_ui_start_compute_pool ();
  g_action_map_add_action_entries (G_ACTION_MAP (app), app_actions, G_N_ELEMENTS (app_actions), app);
  static const char *quit[] = { "<Control>q", NULL };
  static const char *help[] = { "<Control>question", "F1", NULL };
  gtk_application_set_accels_for_action (GTK_APPLICATION (app), "app.quit", quit);
  gtk_application_set_accels_for_action (GTK_APPLICATION (app), "win.show-help-overlay", help);

  GtkCssProvider *css = gtk_css_provider_new ();
  gtk_css_provider_load_from_resource (css, "/org/vitlab/Vitlab/style.css");
  gtk_style_context_add_provider_for_display (gdk_display_get_default (), GTK_STYLE_PROVIDER (css),
                                              GTK_STYLE_PROVIDER_PRIORITY_APPLICATION);
  g_object_unref (css);
  gtk_window_set_default_icon_name ("org.vitlab.Vitlab");

  g_autoptr(GSettings) settings = g_settings_new ("org.vitlab.Vitlab");
  g_object_set (gtk_settings_get_default (), "gtk-application-prefer-dark-theme",
                g_settings_get_boolean (settings, "dark"), NULL);
}

static void
vl_application_activate (GApplication *app)
{
  VlApplication *self = VL_APPLICATION (app);
  GtkWindow *existing = gtk_application_get_active_window (GTK_APPLICATION (app));
  if (existing)
    {
      gtk_window_present (existing);
      return;
    }
  VlWindow *win = vl_window_new (GTK_APPLICATION (app));
  /* epochs first: the progressive preset's schedule is laid out over them */
  if (self->epochs > 0)
    g_object_set (window_child (win, "training_panel"), "epochs", self->epochs, NULL);
  gboolean named_preset = FALSE;
  if (self->preset)
    {
      named_preset = vl_preset_find (self->preset) != NULL;
      if (!named_preset)   /* a recipe of the training panel's dropdown */
        gtk_widget_activate_action (GTK_WIDGET (win), "win.open-preset", "s", self->preset);
    }
  if (self->dark)
    g_object_set (win, "dark", TRUE, NULL);
  if (self->probe)
    gtk_widget_activate_action (GTK_WIDGET (win), "win.page", "s", "attention");
  for (int i = 0; self->pages && self->pages[i]; i++)
    gtk_widget_activate_action (GTK_WIDGET (win), "win.page", "s", self->pages[i]);

  g_autoptr(GSettings) settings = g_settings_new ("org.vitlab.Vitlab");
  if (self->run)
    vl_window_open_run (win, self->run);
  else if (named_preset && !self->backbone && !self->data)
    {
      /* a demo of vl-preset.h: its backbone, data and recipe (--epochs still applies) */
      gtk_widget_activate_action (GTK_WIDGET (win), "win.open-preset", "s", self->preset);
      if (self->epochs > 0)
        g_object_set (window_child (win, "training_panel"), "epochs", self->epochs, NULL);
    }
  else
    {
      g_autofree char *backbone = self->backbone ? g_strdup (self->backbone)
                                : choose_default (settings, "last-backbone", "weights",
                                                  "vit-tiny-augreg-in1k", FALSE);
      g_autofree char *data = self->data ? g_strdup (self->data)
                            : choose_default (settings, "last-data", "datasets", "hymenoptera",
                                              TRUE);
      if (backbone)
        vl_window_open_backbone (win, backbone);
      if (data)
        vl_window_open_data (win, data);
    }
  if (self->probe)
    vl_window_open_probe (win, self->probe);
  if (self->try_files)
    vl_try_panel_add_files (VL_TRY_PANEL (window_child (win, "try_panel")),
                            (const char *const *) self->try_files);
  if (settings_fallback_reason != NULL)
    {
      g_printerr ("vitlab: %s\n", settings_fallback_reason);
      vl_window_show_info (win, "%s", settings_fallback_reason);
    }
  gtk_window_present (GTK_WINDOW (win));
  self->started = g_get_monotonic_time ();
  if ((self->train || self->screenshot) && self->poll_source == 0)
    self->poll_source = g_timeout_add (100, poll_window, self);
}

static int
vl_application_handle_local_options (GApplication *app, GVariantDict *options)
{
  VlApplication *self = VL_APPLICATION (app);
  g_autofree char *backbone = NULL, *data = NULL, *run = NULL, *probe = NULL;
  g_variant_dict_lookup (options, "backbone", "^ay", &backbone);
  g_variant_dict_lookup (options, "data", "s", &data);
  g_variant_dict_lookup (options, "run", "^ay", &run);
  g_variant_dict_lookup (options, "probe", "^ay", &probe);
  g_variant_dict_lookup (options, "preset", "s", &self->preset);
  g_variant_dict_lookup (options, "epochs", "i", &self->epochs);
  g_variant_dict_lookup (options, "train", "b", &self->train);
  g_variant_dict_lookup (options, "dark", "b", &self->dark);
  g_variant_dict_lookup (options, "page", "^as", &self->pages);
  g_auto(GStrv) try_files = NULL;
  if (g_variant_dict_lookup (options, "try", "^aay", &try_files))
    {
      self->try_files = g_new0 (char *, g_strv_length (try_files) + 1);
      for (int i = 0; try_files[i]; i++)
        self->try_files[i] = absolute (try_files[i]);
    }
  g_variant_dict_lookup (options, "knn-layers", "b", &self->knn_layers);
  g_variant_dict_lookup (options, "screenshot", "^ay", &self->screenshot);
  g_variant_dict_lookup (options, "screenshot-when", "s", &self->screenshot_when);
  self->backbone = absolute (backbone);
  self->data = absolute (data);
  self->run = absolute (run);
  self->probe = absolute (probe);
  if (g_variant_dict_contains (options, "version"))
    {
      g_print ("vitlab %s\n", VITLAB_VERSION);
      return 0;
    }
  if (self->screenshot_when && !g_str_equal (self->screenshot_when, "ready") &&
      !g_str_equal (self->screenshot_when, "training") &&
      !g_str_equal (self->screenshot_when, "finished") &&
      !g_str_equal (self->screenshot_when, "features"))
    {
      g_printerr ("vitlab: --screenshot-when %s: expected ready, training, finished or "
                  "features\n",
                  self->screenshot_when);
      return 2;
    }
  return -1;
}

static void
vl_application_finalize (GObject *object)
{
  VlApplication *self = VL_APPLICATION (object);
  if (self->poll_source)
    g_source_remove (self->poll_source);
  g_free (self->backbone);
  g_free (self->data);
  g_free (self->run);
  g_free (self->probe);
  g_free (self->preset);
  g_strfreev (self->pages);
  g_strfreev (self->try_files);
  g_free (self->screenshot);
  g_free (self->screenshot_when);
  G_OBJECT_CLASS (vl_application_parent_class)->finalize (object);
}

static void
vl_application_class_init (VlApplicationClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GApplicationClass *app_class = G_APPLICATION_CLASS (klass);
  object_class->finalize = vl_application_finalize;
  app_class->startup = vl_application_startup;
  app_class->activate = vl_application_activate;
  app_class->handle_local_options = vl_application_handle_local_options;
}

static void
vl_application_init (VlApplication *self)
{
  static const GOptionEntry entries[] = {
    { "backbone", 0, 0, G_OPTION_ARG_FILENAME, NULL,
      N_("Checkpoint to open (.safetensors, PyTorch .pth/.bin/.ckpt or JAX .npz file, or folder)"), "PATH" },
    { "data", 0, 0, G_OPTION_ARG_STRING, NULL,
      N_("Dataset: an image folder, or fashion-mnist[:classes=5-9,per-class=100]"), "SPEC" },
    { "run", 0, 0, G_OPTION_ARG_FILENAME, NULL, N_("Run folder to open"), "DIR" },
    { "probe", 0, 0, G_OPTION_ARG_FILENAME, NULL,
      N_("Image to show the attention on (PNG, JPEG, BMP, GIF, TGA…), as if dropped on the "
         "window"),
      "IMAGE" },
    { "preset", 0, 0, G_OPTION_ARG_STRING, NULL,
      N_("linear-probe, last-blocks, full or progressive; or a demo with its backbone and data: "
         "demo, rotate, scenes, boxes"), "NAME" },
    { "epochs", 0, 0, G_OPTION_ARG_INT, NULL, N_("Epochs to train"), "N" },
    { "train", 0, 0, G_OPTION_ARG_NONE, NULL,
      N_("Start training once everything is loaded"), NULL },
    { "dark", 0, 0, G_OPTION_ARG_NONE, NULL, N_("Use the dark style"), NULL },
    { "page", 0, 0, G_OPTION_ARG_STRING_ARRAY, NULL,
      N_("Show a page: curves, attention, evaluation, embedding, try; backbone, groups, head, "
         "data, training"),
      "NAME" },
    { "try", 0, 0, G_OPTION_ARG_FILENAME_ARRAY, NULL,
      N_("Images or folders for the Try It page (run once a trained model is there)"), "PATH" },
    { "knn-layers", 0, 0, G_OPTION_ARG_NONE, NULL,
      N_("Compute the k-NN accuracy at every block once the k-NN probe is done"), NULL },
    { "screenshot", 0, 0, G_OPTION_ARG_FILENAME, NULL, N_("Save the window as a PNG, then quit"),
      "PNG" },
    { "screenshot-when", 0, 0, G_OPTION_ARG_STRING, NULL,
      N_("ready (default), training (after an epoch), finished (with --train) or features (the "
         "k-NN probe's progress)"), "WHEN" },
    { "version", 0, 0, G_OPTION_ARG_NONE, NULL, N_("Print the version and quit"), NULL },
    { NULL },
  };
  g_application_add_main_option_entries (G_APPLICATION (self), entries);
}

VlApplication *
vl_application_new (void)
{
  ensure_settings_schema ();
  return g_object_new (VL_TYPE_APPLICATION,
                       "application-id", "org.vitlab.Vitlab",
                       "flags", G_APPLICATION_NON_UNIQUE,
                       "resource-base-path", "/org/vitlab/Vitlab",
                       NULL);
}

int
vl_application_get_exit_status (VlApplication *self)
{
  g_return_val_if_fail (VL_IS_APPLICATION (self), 1);
  return self->exit_status;
}
