/* vl-test-window.c: the window tests' shared set-up and waiting (see vl-test-window.h). */
#include "vl-test-window.h"
#include "vl-test-util.h"
#include "vl-try-panel.h"

VlApplication *vl_test_app;
static GTestDBus *bus;

void
vl_test_window_init (int *argc, char ***argv)
{
  g_setenv ("GSK_RENDERER", "cairo", FALSE);
  g_setenv ("GTK_A11Y", "none", TRUE);
  g_setenv ("GSETTINGS_BACKEND", "memory", TRUE);
  g_autofree char *xdg = vl_test_tmpdir ();
  g_setenv ("XDG_DATA_HOME", xdg, TRUE);
  g_test_init (argc, argv, NULL);
  g_autofree char *display = g_strdup (g_getenv ("DISPLAY"));
  bus = g_test_dbus_new (G_TEST_DBUS_NONE);
  g_test_dbus_up (bus);
  if (display)
    g_setenv ("DISPLAY", display, TRUE);
  gtk_init ();
  vl_test_app = vl_application_new ();
  g_assert_true (g_application_register (G_APPLICATION (vl_test_app), NULL, NULL));
  g_application_hold (G_APPLICATION (vl_test_app));
}

int
vl_test_window_run (void)
{
  int rc = g_test_run ();
  g_application_release (G_APPLICATION (vl_test_app));
  g_clear_object (&vl_test_app);
  /* stop, not down: GTK keeps its session-bus connection until exit */
  g_test_dbus_stop (bus);
  return rc;
}

void
vl_test_wait_for (VlWindow *win, VlTestCondition cond, double timeout_s, const char *what)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) (timeout_s * G_USEC_PER_SEC);
  while (!cond (win))
    {
      if (g_get_monotonic_time () > deadline)
        g_error ("timed out after %.0f s waiting for: %s", timeout_s, what);
      g_main_context_iteration (NULL, FALSE);
      g_usleep (1000);
    }
}

VlWindow *
vl_test_window_new (void)
{
  VlWindow *win = vl_window_new (GTK_APPLICATION (vl_test_app));
  gtk_window_present (GTK_WINDOW (win));
  vl_window_set_ask_confirmation (win, FALSE);
  return win;
}

void
vl_test_window_destroy (VlWindow *win)
{
  GtkWidget *w = GTK_WIDGET (win);
  g_object_add_weak_pointer (G_OBJECT (w), (gpointer *) &w);
  vl_window_set_ask_confirmation (win, FALSE);
  gtk_window_destroy (GTK_WINDOW (win));
  gint64 deadline = g_get_monotonic_time () + 30 * G_USEC_PER_SEC;
  while (w != NULL && g_get_monotonic_time () < deadline)
    {
      g_main_context_iteration (NULL, FALSE);
      g_usleep (1000);
    }
  g_assert_null (w);
}

GtkWidget *
vl_test_child (VlWindow *win, const char *name)
{
  GObject *child = gtk_widget_get_template_child (GTK_WIDGET (win), VL_TYPE_WINDOW, name);
  if (child == NULL)
    g_error ("the window's template binds no \"%s\"", name);
  return GTK_WIDGET (child);
}

VlBackbonePanel *
vl_test_backbone_panel (VlWindow *win)
{
  return VL_BACKBONE_PANEL (vl_test_child (win, "backbone_panel"));
}

VlGroupsPanel *
vl_test_groups_panel (VlWindow *win)
{
  return VL_GROUPS_PANEL (vl_test_child (win, "groups_panel"));
}

VlHeadPanel *
vl_test_head_panel (VlWindow *win)
{
  return VL_HEAD_PANEL (vl_test_child (win, "head_panel"));
}

VlDataPanel *
vl_test_data_panel (VlWindow *win)
{
  return VL_DATA_PANEL (vl_test_child (win, "data_panel"));
}

VlTrainingPanel *
vl_test_training_panel (VlWindow *win)
{
  return VL_TRAINING_PANEL (vl_test_child (win, "training_panel"));
}

VlStatCards *
vl_test_stat_cards (VlWindow *win)
{
  return VL_STAT_CARDS (vl_test_child (win, "stat_cards"));
}

VlEvalCard *
vl_test_eval_card (VlWindow *win)
{
  return VL_EVAL_CARD (vl_test_child (win, "eval_card"));
}

VlAttentionBar *
vl_test_attention_bar (VlWindow *win)
{
  return VL_ATTENTION_BAR (vl_test_child (win, "attn_bar"));
}

VlStatusBar *
vl_test_status_bar (VlWindow *win)
{
  return VL_STATUS_BAR (vl_test_child (win, "status_bar"));
}

VlKnnPanel *
vl_test_knn_panel (VlWindow *win)
{
  return VL_KNN_PANEL (vl_data_panel_get_knn_panel (vl_test_data_panel (win)));
}

VlWindowProbeState
vl_test_probe_state (VlWindow *win)
{
  VlWindowProbeState state;
  vl_window_get_probe_state (win, &state);
  return state;
}

int
vl_test_n_children (GtkWidget *widget)
{
  int n = 0;
  for (GtkWidget *c = gtk_widget_get_first_child (widget); c; c = gtk_widget_get_next_sibling (c))
    n++;
  return n;
}

gboolean
vl_test_window_loaded (VlWindow *win)
{
  return !vl_window_is_loading (win) && !vl_window_attention_busy (win);
}

gboolean
vl_test_window_finished (VlWindow *win)
{
  return vl_window_run_finished (win);
}

gboolean
vl_test_window_features_idle (VlWindow *win)
{
  return !vl_window_features_busy (win);
}

gboolean
vl_test_window_not_exporting (VlWindow *win)
{
  return !vl_window_is_exporting (win);
}

static gboolean
try_idle (VlWindow *win)
{
  return !vl_try_panel_is_busy (VL_TRY_PANEL (vl_test_child (win, "try_panel"))) &&
         vl_try_panel_get_n_results (VL_TRY_PANEL (vl_test_child (win, "try_panel"))) > 0;
}

/* Try It on a validation image written as a PNG: one row, no error, the run's summary. */
const char *
vl_test_window_try_scene (VlWindow *win)
{
  VlDataset *ds = vl_window_get_predictions_data (win)->ds;
  VlPreprocess pp;
  vl_preprocess_from_model (vl_trained_model (vl_window_get_trained (win)), &pp);
  g_autofree float *px = g_new (float, (gsize) pp.channels * pp.size * pp.size);
  g_assert_true (vl_dataset_load (ds, VL_SPLIT_VAL, 0, &pp, VL_AUGMENT_NONE, 0, px, NULL));
  g_autoptr(VlImage) img = vl_image_from_chw (px, &pp);
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *path = g_build_filename (dir, "scene.png", NULL);
  g_autoptr(GError) error = NULL;
  g_assert_true (vl_image_save_png (path, img, &error));
  VlTryPanel *panel = VL_TRY_PANEL (vl_test_child (win, "try_panel"));
  const char *files[] = { path, NULL };
  vl_try_panel_add_files (panel, files);
  vl_test_wait_for (win, try_idle, 60, "Try It's result");
  const char *err = NULL;
  int top = 0;
  vl_try_panel_get_result (panel, 0, &err, &top, NULL);
  g_assert_null (err);
  g_assert_cmpint (top, ==, -1);   /* no class for the whole image */
  const char *summary = vl_try_panel_get_summary (panel, 0);
  g_assert_nonnull (summary);
  g_test_message ("Try It: %s", summary);
  return summary;
}

void
vl_test_window_assert_fits (VlWindow *win, const char *page)
{
  gtk_stack_set_visible_child_name (GTK_STACK (vl_test_child (win, "main_stack")), page);
  const char *side[] = { "head", "data" };
  for (int s = 0; s < 2; s++)
    {
      gtk_stack_set_visible_child_name (GTK_STACK (vl_test_child (win, "side_stack")), side[s]);
      for (int i = 0; i < 20; i++)
        g_main_context_iteration (NULL, FALSE);
      int min_w, min_h;
      gtk_widget_measure (GTK_WIDGET (win), GTK_ORIENTATION_HORIZONTAL, -1, &min_w, NULL, NULL,
                          NULL);
      gtk_widget_measure (GTK_WIDGET (win), GTK_ORIENTATION_VERTICAL, MAX (min_w, 1200), &min_h,
                          NULL, NULL, NULL);
      g_test_message ("%s + %s: the window asks for %dx%d", page, side[s], min_w, min_h);
      g_assert_cmpint (min_w, <=, 1366);
      g_assert_cmpint (min_h, <=, 768);
    }
}
