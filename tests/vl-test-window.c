/* vl-test-window.c: the window tests' shared set-up and waiting (see vl-test-window.h). */
#include "vl-test-window.h"
#include "vl-test-util.h"

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
  win->suppress_confirm = TRUE;
  return win;
}

void
vl_test_window_destroy (VlWindow *win)
{
  GtkWidget *w = GTK_WIDGET (win);
  g_object_add_weak_pointer (G_OBJECT (w), (gpointer *) &w);
  win->suppress_confirm = TRUE;
  gtk_window_destroy (GTK_WINDOW (win));
  gint64 deadline = g_get_monotonic_time () + 30 * G_USEC_PER_SEC;
  while (w != NULL && g_get_monotonic_time () < deadline)
    {
      g_main_context_iteration (NULL, FALSE);
      g_usleep (1000);
    }
  g_assert_null (w);
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
  return !vl_window_is_loading (win) && win->attn_cancel == NULL;
}

gboolean
vl_test_window_finished (VlWindow *win)
{
  return vl_window_trainer (win) != NULL && win->run_state == VL_TRAINER_FINISHED;
}

gboolean
vl_test_window_features_idle (VlWindow *win)
{
  return !vl_window_features_busy (win);
}

gboolean
vl_test_window_not_exporting (VlWindow *win)
{
  return !win->exporting;
}
