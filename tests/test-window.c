/* test-window.c: the main window, driven through its actions as a user would, with the main
 * context spun until the expected state arrives (with a timeout).
 *
 * The backbone is ../shared/fixtures/vit-timm-tiny (32x32 input, 7 layer groups); the dataset
 * is a small image folder written here (two classes of coloured PNGs); probe images are PNGs
 * written here too, and the sample fallback reads data/samples. Runs go to a temporary
 * XDG_DATA_HOME. A private D-Bus session (GTestDBus) keeps GtkApplication quiet. */
#include "vl-test-util.h"

#include <gtk/gtk.h>
#include <math.h>
#include <stb_image_write.h>
#include <string.h>

#include "vl-application.h"
#include "vl-attention-view.h"
#include "vl-backbone-panel.h"
#include "vl-confusion-view.h"
#include "vl-data-panel.h"
#include "vl-groups-panel.h"
#include "vl-head-panel.h"
#include "vl-loss-chart.h"
#include "vl-test-whitebox.h"
#include "vl-test-window.h"
#include "vl-scatter-view.h"
#include "vl-embedding-panel.h"
#include "vl-embedding-view.h"
#include "vl-knn-panel.h"
#include "vl-probe.h"
#include "vl-run.h"
#include "vl-training-panel.h"
#include "vl-try-panel.h"
#include "vl-task-view.h"

static VlApplication *app;
static char *dataset_dir;
static char *trained_run_dir;   /* a finished run, for the open-run test */

/* ------------------------------------------------------------------ helpers */

typedef gboolean (*Condition) (VlWindow *win);

/* A main-loop latency probe: a 10 ms timeout that records how late it fires. */
typedef struct {
  gint64 expected;
  gint64 worst;
  guint  source;
  int    ticks;
} Probe;

static gboolean
probe_tick (gpointer data)
{
  Probe *p = data;
  gint64 now = g_get_monotonic_time ();
  p->worst = MAX (p->worst, now - p->expected);
  p->expected = now + 10000;
  p->ticks++;
  return G_SOURCE_CONTINUE;
}

static void
probe_start (Probe *p)
{
  memset (p, 0, sizeof *p);
  p->expected = g_get_monotonic_time () + 10000;
  p->source = g_timeout_add (10, probe_tick, p);
}

/* The bound on lateness: 50 ms (VITLAB_LATENCY_MS raises it for sanitizer builds). */
static gint64
latency_bound_us (void)
{
  const char *env = g_getenv ("VITLAB_LATENCY_MS");
  return (env ? g_ascii_strtoll (env, NULL, 10) : 50) * 1000;
}

static void
probe_stop (Probe *p)
{
  g_source_remove (p->source);
  g_test_message ("main loop: %d ticks, worst lateness %.1f ms", p->ticks, p->worst / 1000.0);
  g_assert_cmpint (p->worst, <, latency_bound_us ());
}

/* Spins the default main context until cond holds; fails the test after timeout_s. */
static void
wait_for (VlWindow *win, Condition cond, double timeout_s, const char *what)
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

static void
spin_for (double seconds)
{
  gint64 end = g_get_monotonic_time () + (gint64) (seconds * G_USEC_PER_SEC);
  while (g_get_monotonic_time () < end)
    {
      g_main_context_iteration (NULL, FALSE);
      g_usleep (1000);
    }
}

/* The template's widgets the tests read most, by type. */
static VlAttentionView *
attention_view (VlWindow *win)
{
  return VL_ATTENTION_VIEW (vl_test_child (win, "attention"));
}

static VlLossChart *
loss_chart (VlWindow *win)
{
  return VL_LOSS_CHART (vl_test_child (win, "chart"));
}

static VlConfusionView *
confusion_view (VlWindow *win)
{
  return VL_CONFUSION_VIEW (vl_test_child (win, "confusion"));
}

static VlEmbeddingPanel *
embedding_panel (VlWindow *win)
{
  return VL_EMBEDDING_PANEL (vl_test_child (win, "embedding_panel"));
}

static GtkStack *
main_stack (VlWindow *win)
{
  return GTK_STACK (vl_test_child (win, "main_stack"));
}

static GtkStack *
side_stack (VlWindow *win)
{
  return GTK_STACK (vl_test_child (win, "side_stack"));
}

static GtkInfoBar *
banner (VlWindow *win)
{
  return GTK_INFO_BAR (vl_test_child (win, "banner"));
}

static const char *
banner_text (VlWindow *win)
{
  return gtk_label_get_text (GTK_LABEL (vl_test_child (win, "banner_label")));
}

static gboolean
loaded (VlWindow *win)
{
  return !vl_window_is_loading (win);
}

static gboolean
running (VlWindow *win)
{
  return vl_window_is_running (win);
}

static gboolean
finished (VlWindow *win)
{
  return vl_window_run_finished (win);
}

static gboolean
has_points (VlWindow *win)
{
  return vl_loss_chart_get_n_points (loss_chart (win)) > 0;
}

static gboolean
has_epoch (VlWindow *win)
{
  return vl_loss_chart_get_n_epochs (loss_chart (win)) > 0;
}

static gboolean
has_run_attention (VlWindow *win)
{
  return vl_window_get_n_probe_events (win) > 0 &&
         vl_window_has_probe_maps (win, VL_WINDOW_MAPS_RUN);
}

static gboolean
has_pretrained_attention (VlWindow *win)
{
  return vl_window_has_probe_maps (win, VL_WINDOW_MAPS_PRETRAINED) &&
         !vl_window_attention_busy (win);
}

static gboolean
has_predictions (VlWindow *win)
{
  return vl_window_get_n_predictions (win) > 0;
}

static gboolean
is_paused (VlWindow *win)
{
  return vl_window_is_paused (win);
}

static gboolean
not_paused (VlWindow *win)
{
  return !vl_window_is_paused (win);
}

static gboolean
not_exporting (VlWindow *win)
{
  return !vl_window_is_exporting (win);
}

/* Exports the window's trained model as ONNX (win.export-onnx) and checks the file with
 * python3-onnx (VITLAB_PYTHON): check_model with full shape inference, then its outputs and
 * task, which must read `expect` ("logits,features classify"). */
static void
export_onnx_and_check (VlWindow *win, const char *dir, const char *expect)
{
  g_autofree char *file = g_build_filename (dir, "model.onnx", NULL);
  g_object_set_data_full (G_OBJECT (win), "export-onnx-override", g_strdup (file), g_free);
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (win), "win.export-onnx", NULL));
  g_assert_true (vl_window_is_exporting (win));
  while (vl_window_is_exporting (win))
    g_main_context_iteration (NULL, TRUE);
  g_assert_false (gtk_info_bar_get_message_type (banner (win)) == GTK_MESSAGE_ERROR &&
                  gtk_info_bar_get_revealed (banner (win)));
  const char *py = g_getenv ("VITLAB_PYTHON");
  const char *argv[] = {
    py ? py : "/usr/bin/python3", "-c",
    "import onnx, sys\n"
    "m = onnx.load(sys.argv[1])\n"
    "onnx.checker.check_model(m, full_check=True)\n"
    "meta = {p.key: p.value for p in m.metadata_props}\n"
    "print(','.join(o.name for o in m.graph.output), meta['vitlab.task'])\n",
    file, NULL
  };
  g_autofree char *out = NULL, *err = NULL;
  int status = 0;
  g_autoptr(GError) error = NULL;
  g_assert_true (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_STDIN_FROM_DEV_NULL, NULL,
                               NULL, &out, &err, &status, &error));
  g_assert_no_error (error);
  if (!g_spawn_check_wait_status (status, NULL))
    g_error ("%s: onnx.checker failed:\n%s", file, err);
  g_assert_cmpstr (g_strstrip (out), ==, expect);
}

static gboolean
action (VlWindow *win, const char *name)
{
  return gtk_widget_activate_action (GTK_WIDGET (win), name, NULL);
}

static gboolean
action_s (VlWindow *win, const char *name, const char *arg)
{
  return gtk_widget_activate_action (GTK_WIDGET (win), name, "s", arg);
}

/* Whether an action is enabled, as the buttons bound to it show. */
static gboolean
train_enabled (VlWindow *win)
{
  return gtk_widget_get_sensitive (vl_test_child (win, "train_button"));
}

static gboolean
panel_bool (gpointer panel, const char *property)
{
  gboolean v = FALSE;
  g_object_get (panel, property, &v, NULL);
  return v;
}

static int
panel_int (gpointer panel, const char *property)
{
  int v = 0;
  g_object_get (panel, property, &v, NULL);
  return v;
}

static VlTaskKind
panel_task (VlWindow *win)
{
  int task = -1;
  g_object_get (vl_test_head_panel (win), "task", &task, NULL);
  return (VlTaskKind) task;
}

static char *
fixture_backbone (void)
{
  return vl_test_shared_path ("fixtures", "vit-timm-tiny", NULL);
}

/* A fresh window with the fixture backbone and the test dataset, everything loaded. */
static VlWindow *
new_window (gboolean with_data)
{
  VlWindow *win = vl_window_new (GTK_APPLICATION (app));
  gtk_window_present (GTK_WINDOW (win));
  g_autofree char *backbone = fixture_backbone ();
  g_assert_true (action_s (win, "win.load-backbone", backbone));
  if (with_data)
    g_assert_true (action_s (win, "win.load-data", dataset_dir));
  wait_for (win, loaded, 30, "the backbone and the dataset");
  g_assert_nonnull (vl_window_get_model (win));
  if (with_data)
    g_assert_nonnull (vl_window_get_data (win));
  return win;
}

static void
destroy_window (VlWindow *win)
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
  /* tasks still finishing hold a reference until they report back */
  g_assert_null (w);
}

/* The screen the window must fit: a 1366x768 laptop. */
#define FIT_WIDTH  1366
#define FIT_HEIGHT 768

/* The window's minimum size with the current pages shown: the width it asks for, and the height
 * it asks for at its present width. */
static void
window_min_size (VlWindow *win, int *min_w, int *min_h)
{
  gtk_widget_measure (GTK_WIDGET (win), GTK_ORIENTATION_HORIZONTAL, -1, min_w, NULL, NULL, NULL);
  int width = MAX (gtk_widget_get_width (GTK_WIDGET (win)), *min_w);
  gtk_widget_measure (GTK_WIDGET (win), GTK_ORIENTATION_VERTICAL, width, min_h, NULL, NULL, NULL);
}

/* Every main page and every sidebar page in turn: the window asks for no more than a
 * 1366x768 screen, and (presented at its default size) has not grown past it. The pages shown
 * before are shown again after. */
static void
assert_fits (VlWindow *win, const char *state)
{
  static const char *main_pages[] = { "curves", "attention", "evaluation", "embedding", "try" };
  static const char *side_pages[] = { "backbone", "groups", "head", "data", "training" };
  g_autofree char *main_was = g_strdup (gtk_stack_get_visible_child_name (main_stack (win)));
  g_autofree char *side_was = g_strdup (gtk_stack_get_visible_child_name (side_stack (win)));
  int worst_w = 0, worst_h = 0;
  for (int m = 0; m < 5; m++)
    for (int s = 0; s < 5; s++)
      {
        gtk_stack_set_visible_child_name (main_stack (win), main_pages[m]);
        gtk_stack_set_visible_child_name (side_stack (win), side_pages[s]);
        spin_for (0.02);
        int min_w, min_h;
        window_min_size (win, &min_w, &min_h);
        worst_w = MAX (worst_w, min_w);
        worst_h = MAX (worst_h, min_h);
        if (min_w > FIT_WIDTH || min_h > FIT_HEIGHT)
          g_error ("%s, pages %s and %s: the window asks for at least %dx%d, more than %dx%d",
                   state, main_pages[m], side_pages[s], min_w, min_h, FIT_WIDTH, FIT_HEIGHT);
        int w = gtk_widget_get_width (GTK_WIDGET (win));
        int h = gtk_widget_get_height (GTK_WIDGET (win));
        /* and at the default width no page needs the main area's sideways scrolling */
        GtkWidget *scroller = vl_test_child (win, "main_scroller");
        GtkAdjustment *adj = gtk_scrolled_window_get_hadjustment (GTK_SCROLLED_WINDOW (scroller));
        if (w <= 1200 && gtk_adjustment_get_upper (adj) > gtk_adjustment_get_page_size (adj) + 1)
          g_error ("%s, pages %s and %s: the main area is %.0f px wide, %.0f px shown",
                   state, main_pages[m], side_pages[s], gtk_adjustment_get_upper (adj),
                   gtk_adjustment_get_page_size (adj));
        if (w > FIT_WIDTH || h > FIT_HEIGHT)
          g_error ("%s, pages %s and %s: the window is %dx%d, more than %dx%d",
                   state, main_pages[m], side_pages[s], w, h, FIT_WIDTH, FIT_HEIGHT);
      }
  g_test_message ("%s: the window asks for at most %dx%d", state, worst_w, worst_h);
  gtk_stack_set_visible_child_name (main_stack (win), main_was);
  gtk_stack_set_visible_child_name (side_stack (win), side_was);
  spin_for (0.02);
}

/* Long names and numbers everywhere a name or a number shows: they ellipsize or wrap instead of
 * widening the window. */
static void
assert_fits_long_names (VlWindow *win)
{
  GString *longer = g_string_new (NULL);
  for (int i = 0; i < 40; i++)
    g_string_append (longer, "very_long_name_without_spaces_");
  vl_backbone_panel_set_name (vl_test_backbone_panel (win), longer->str);
  vl_data_panel_set_name (vl_test_data_panel (win), longer->str);
  GtkWidget *labels[] = { vl_status_bar_get_label (vl_test_status_bar (win)),
                          vl_test_child (win, "banner_label") };
  for (guint i = 0; i < G_N_ELEMENTS (labels); i++)
    gtk_label_set_text (GTK_LABEL (labels[i]), longer->str);
  for (VlStat s = 0; s < VL_N_STATS; s++)
    vl_stat_cards_set (vl_test_stat_cards (win), s, longer->str);
  vl_training_panel_set_run_dir (vl_test_training_panel (win), longer->str, NULL);
  g_string_free (longer, TRUE);
  assert_fits (win, "long names");
}

/* The first descendant of widget of the given type (widget itself included). */
static GtkWidget *
find_widget (GtkWidget *widget, GType type)
{
  if (G_TYPE_CHECK_INSTANCE_TYPE (widget, type))
    return widget;
  for (GtkWidget *c = gtk_widget_get_first_child (widget); c; c = gtk_widget_get_next_sibling (c))
    {
      GtkWidget *found = find_widget (c, type);
      if (found)
        return found;
    }
  return NULL;
}

static const char *gallery_probe;

static gboolean
probe_is_gallery_item (VlWindow *win)
{
  return !vl_test_probe_state (win).busy && vl_test_probe_state (win).image != NULL &&
         g_strcmp0 (vl_window_get_probe_path (win), gallery_probe) == 0;
}

/* A few training settings that make the fixture train in well under a second per epoch. */
static void
quick_settings (VlWindow *win, int epochs)
{
  g_object_set (vl_test_training_panel (win), "epochs", epochs, NULL);
  g_object_set (vl_test_training_panel (win), "batch-size", 4, NULL);
  g_object_set (vl_test_training_panel (win), "lr", 0.01, NULL);
}

/* ------------------------------------------------------------------ the dataset */

static void
write_dataset (void)
{
  dataset_dir = vl_test_tmpdir ();
  const char *classes[] = { "reds", "blues" };
  GRand *rand = g_rand_new_with_seed (7);
  for (int k = 0; k < 2; k++)
    {
      g_autofree char *dir = g_build_filename (dataset_dir, classes[k], NULL);
      g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
      for (int i = 0; i < 10; i++)
        {
          guint8 px[40 * 40 * 3];
          for (int p = 0; p < 40 * 40; p++)
            {
              int noise = g_rand_int_range (rand, -40, 40);
              px[p * 3 + 0] = (guint8) CLAMP ((k == 0 ? 200 : 40) + noise, 0, 255);
              px[p * 3 + 1] = (guint8) CLAMP (80 + noise, 0, 255);
              px[p * 3 + 2] = (guint8) CLAMP ((k == 0 ? 40 : 200) + noise, 0, 255);
            }
          g_autofree char *name = g_strdup_printf ("%s-%02d.png", classes[k], i);
          g_autofree char *path = g_build_filename (dir, name, NULL);
          g_assert_cmpint (stbi_write_png (path, 40, 40, 3, px, 40 * 3), !=, 0);
        }
    }
  /* a file that is not an image: listed as skipped */
  g_autofree char *junk = g_build_filename (dataset_dir, "reds", "notes.jpg", NULL);
  g_assert_true (g_file_set_contents (junk, "not a jpeg", -1, NULL));
  g_rand_free (rand);
}

/* ------------------------------------------------------------------ tests */

static void
test_startup (void)
{
  gint64 t0 = g_get_monotonic_time ();
  VlWindow *win = vl_window_new (GTK_APPLICATION (app));
  gtk_window_present (GTK_WINDOW (win));
  g_autofree char *backbone = fixture_backbone ();
  vl_window_open_backbone (win, backbone);
  /* the load runs on a worker thread: the spinner shows meanwhile */
  g_assert_true (vl_window_is_loading (win));
  g_assert_true (panel_bool (vl_test_backbone_panel (win), "loading"));
  g_assert_false (train_enabled (win));
  wait_for (win, loaded, 10, "the backbone");
  double seconds = (g_get_monotonic_time () - t0) / 1e6;
  g_test_message ("window and backbone in %.3f s", seconds);
  g_assert_cmpfloat (seconds, <, 2.0);
  g_assert_false (panel_bool (vl_test_backbone_panel (win), "loading"));

  VlModel *m = vl_window_get_model (win);
  g_assert_nonnull (m);
  g_assert_cmpint (vl_model_n_groups (m), ==, 7);
  g_assert_cmpint (vl_model_geometry (m)->input_size, ==, 32);
  g_assert_cmpint (vl_groups_panel_get_n_groups (vl_test_groups_panel (win)), ==, 7);
  g_assert_cmpstr (vl_backbone_panel_get_fact (vl_test_backbone_panel (win), "params"), ==, "123,557");
  /* the default lock is a linear probe: the head alone */
  g_assert_cmpint (vl_groups_panel_unlocked_suffix (vl_test_groups_panel (win)), ==, 1);
  g_assert_true (vl_model_group_trainable (m, 6));
  g_assert_false (vl_model_group_trainable (m, 0));
  /* no dataset yet: nothing to train on */
  g_assert_false (train_enabled (win));
  /* the shortcuts window and the recent list */
  g_assert_nonnull (g_action_map_lookup_action (G_ACTION_MAP (win), "show-help-overlay"));
  GtkShortcutsWindow *help = gtk_application_window_get_help_overlay (GTK_APPLICATION_WINDOW (win));
  g_assert_nonnull (help);
  g_action_group_activate_action (G_ACTION_GROUP (win), "show-help-overlay", NULL);
  spin_for (0.2);
  g_assert_true (gtk_widget_get_visible (GTK_WIDGET (help)));
  gtk_widget_set_visible (GTK_WIDGET (help), FALSE);
  g_assert_cmpint (vl_backbone_panel_get_n_recent (vl_test_backbone_panel (win)), >=, 1);
  assert_fits (win, "start");
  destroy_window (win);
}

static void
test_bad_backbone (void)
{
  VlWindow *win = vl_window_new (GTK_APPLICATION (app));
  gtk_window_present (GTK_WINDOW (win));
  g_assert_true (action_s (win, "win.load-backbone", "/nonexistent/model.safetensors"));
  wait_for (win, loaded, 10, "the failed load");
  g_assert_null (vl_window_get_model (win));
  /* the error is shown in the window, not only on the terminal */
  g_assert_true (gtk_info_bar_get_revealed (banner (win)));
  g_assert_nonnull (strstr (banner_text (win), "nonexistent"));
  destroy_window (win);
}

static void
test_groups (void)
{
  VlWindow *win = new_window (FALSE);
  VlModel *m = vl_window_get_model (win);
  const int G = vl_model_n_groups (m);

  /* a switch sets the engine's lock state; a suffix sets N */
  vl_groups_panel_set_switch (vl_test_groups_panel (win), 5, TRUE);
  g_assert_true (vl_model_group_trainable (m, 5));
  g_assert_cmpint (panel_int (vl_test_groups_panel (win), "unlock"), ==, 2);
  g_assert_false (panel_bool (vl_test_groups_panel (win), "custom"));
  g_assert_cmpint (vl_model_n_trainable (m), ==,
                   vl_model_group_n_params (m, 5) + vl_model_group_n_params (m, 6));

  /* a hole in the suffix is "custom": the trainer gets exactly those groups as a mask */
  vl_groups_panel_set_switch (vl_test_groups_panel (win), 2, TRUE);
  g_assert_true (vl_model_group_trainable (m, 2));
  g_assert_false (vl_model_group_trainable (m, 3));
  g_assert_cmpint (vl_groups_panel_unlocked_suffix (vl_test_groups_panel (win)), ==, -1);
  g_assert_true (panel_bool (vl_test_groups_panel (win), "custom"));
  g_assert_cmpint (vl_training_panel_get_preset (vl_test_training_panel (win)), ==, 4);
  {
    VlTrainConfig cfg;
    vl_window_config_from_ui (win, &cfg);
    guint64 want = 0;
    for (int g = 0; g < G; g++)
      if (vl_model_group_trainable (m, g))
        want |= G_GUINT64_CONSTANT (1) << g;
    g_assert_cmpuint (cfg.unlock_mask, ==, want);
    g_assert_cmpuint (cfg.unlock_mask & (1u << 2), !=, 0);
    vl_train_config_clear (&cfg);
  }

  /* N sets the switches */
  for (int n = 0; n <= G; n++)
    {
      g_object_set (vl_test_groups_panel (win), "unlock", n, NULL);
      for (int g = 0; g < G; g++)
        {
          gboolean want = g >= G - n;
          g_assert_cmpint (vl_groups_panel_get_switch (vl_test_groups_panel (win), g), ==, want);
          g_assert_cmpint (vl_model_group_trainable (m, g), ==, want);
        }
      g_assert_false (panel_bool (vl_test_groups_panel (win), "custom"));
    }
  g_autofree char *all = vl_groups_panel_get_schedule (vl_test_groups_panel (win));
  g_assert_cmpstr (all, ==, "all");
  /* the keyboard actions step N */
  g_assert_true (action (win, "win.unlock-fewer"));
  g_assert_cmpint (vl_groups_panel_unlocked_suffix (vl_test_groups_panel (win)), ==, G - 1);
  g_assert_true (action (win, "win.unlock-more"));
  g_assert_cmpint (vl_groups_panel_unlocked_suffix (vl_test_groups_panel (win)), ==, G);

  /* layer decay shows each group's learning-rate multiplier */
  g_object_set (vl_test_training_panel (win), "layer-decay", 0.5, NULL);
  g_assert_nonnull (vl_groups_panel_get_lr_text (vl_test_groups_panel (win), 0));
  g_assert_cmpstr (vl_groups_panel_get_lr_text (vl_test_groups_panel (win), G - 1), ==, "lr ×1");
  float scales[16];
  vl_train_layer_scales (m, 0.5, scales);
  g_autofree char *want = g_strdup_printf ("lr ×%.3g", scales[0]);
  g_assert_cmpstr (vl_groups_panel_get_lr_text (vl_test_groups_panel (win), 0), ==, want);

  /* progressive unfreezing: a schedule of (epoch -> groups) steps */
  g_object_set (vl_test_groups_panel (win), "unlock", 1, NULL);
  g_object_set (vl_test_groups_panel (win), "progressive", TRUE, NULL);
  g_assert_cmpint (vl_groups_panel_get_n_steps (vl_test_groups_panel (win)), ==, 1);
  g_autofree char *s1 = vl_groups_panel_get_schedule (vl_test_groups_panel (win));
  g_assert_cmpstr (s1, ==, "0:1,2:3");
  vl_groups_panel_add_step (vl_test_groups_panel (win));
  g_autofree char *s2 = vl_groups_panel_get_schedule (vl_test_groups_panel (win));
  g_assert_cmpstr (s2, ==, "0:1,2:3,4:5");
  int n_steps;
  g_autofree VlUnlockStep *steps = vl_unlock_schedule_parse (s2, &n_steps, NULL);
  g_assert_nonnull (steps);
  g_assert_cmpint (n_steps, ==, 3);
  /* a schedule from a preset or a run fills the editor */
  g_assert_true (vl_groups_panel_set_schedule (vl_test_groups_panel (win), "0:1,3:4,6:all", NULL));
  g_autofree char *s3 = vl_groups_panel_get_schedule (vl_test_groups_panel (win));
  g_assert_cmpstr (s3, ==, "0:1,3:4,6:all");
  g_assert_true (vl_groups_panel_set_schedule (vl_test_groups_panel (win), "2", NULL));
  g_assert_false (panel_bool (vl_test_groups_panel (win), "progressive"));
  g_assert_cmpint (vl_groups_panel_unlocked_suffix (vl_test_groups_panel (win)), ==, 2);
  destroy_window (win);
}

static void
test_heads (void)
{
  VlWindow *win = new_window (TRUE);
  VlModel *m = vl_window_get_model (win);
  const struct { const char *id; VlHeadKind kind; VlPoolKind pool; } heads[] = {
    { "linear-avg", VL_HEAD_LINEAR, VL_POOL_AVG },
    { "linear-max", VL_HEAD_LINEAR, VL_POOL_MAX },
    { "mlp", VL_HEAD_MLP, VL_POOL_TOKEN },
    { "linear-token", VL_HEAD_LINEAR, VL_POOL_TOKEN },
  };
  g_object_set (vl_test_groups_panel (win), "unlock", 3, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (heads); i++)
    {
      g_assert_true (action_s (win, "win.head", heads[i].id));
      g_autofree char *head = NULL;
      g_object_get (win, "head", &head, NULL);
      g_assert_cmpstr (head, ==, heads[i].id);
      g_assert_cmpint (vl_model_head_kind (m), ==, heads[i].kind);
      g_assert_cmpint (vl_model_pool (m), ==, heads[i].pool);
      /* a head for the dataset's two classes; the lock is kept */
      g_assert_cmpint (vl_model_num_classes (m), ==, 2);
      g_assert_cmpint (vl_groups_panel_unlocked_suffix (vl_test_groups_panel (win)), ==, 3);
      gboolean mlp_editable = FALSE;
      g_object_get (vl_test_head_panel (win), "mlp-editable", &mlp_editable, NULL);
      g_assert_cmpint (mlp_editable, ==, heads[i].kind == VL_HEAD_MLP);
      VlTrainConfig cfg;
      vl_window_config_from_ui (win, &cfg);
      g_assert_cmpint (cfg.head, ==, heads[i].kind);
      g_assert_cmpint (cfg.pool, ==, heads[i].pool);
      vl_train_config_clear (&cfg);
    }
  /* the hidden width of the MLP head */
  g_assert_true (action_s (win, "win.head", "mlp"));
  g_object_set (vl_test_head_panel (win), "mlp-hidden", 32, NULL);
  int idx = vl_model_find_tensor (m, "head.fc1.weight");
  g_assert_cmpint (idx, >=, 0);
  int ndim;
  int64_t shape[4], numel;
  vl_model_tensor_data (m, idx, &ndim, shape, &numel);
  g_assert_cmpint (shape[0], ==, 32);
  destroy_window (win);
}

static void
test_data_panel (void)
{
  VlWindow *win = new_window (TRUE);
  VlDataset *ds = vl_window_get_data (win)->ds;
  g_assert_cmpint (vl_dataset_n_classes (ds), ==, 2);
  /* one card per class, the skipped file listed with its reason */
  g_assert_cmpint (vl_data_panel_get_n_classes_cards (vl_test_data_panel (win)), ==, 2);
  /* the folder's name shows as the dataset's; the Fashion-MNIST button offers it, not names it */
  g_autofree char *folder = g_path_get_basename (dataset_dir);
  g_assert_cmpstr (vl_data_panel_get_name (vl_test_data_panel (win)), ==, folder);
  g_assert_cmpstr (vl_data_panel_get_fmnist_label (vl_test_data_panel (win)), ==, "Use Fashion-MNIST");
  g_assert_cmpint (vl_data_panel_get_n_skipped (vl_test_data_panel (win)), >=, 1);
  g_assert_nonnull (strstr (vl_data_panel_get_skipped (vl_test_data_panel (win), 0), ": "));   /* FILE: reason */
  /* the folder has no val/: the validation share applies */
  g_assert_true (panel_bool (vl_test_data_panel (win), "show-val-fraction"));
  /* thumbnails and the pretrained attention of the probes arrive from worker threads */
  wait_for (win, has_pretrained_attention, 30, "the pretrained attention");
  g_assert_cmpint (vl_window_get_n_probe_images (win), ==, 4);   /* 4 validation images: 2 per class */
  int gh = 0;
  vl_window_get_attention_grid (win, &gh, NULL);
  g_assert_cmpint (gh, ==, 4);
  float heat[16];
  g_assert_true (vl_attention_view_get_heatmap (attention_view (win), FALSE, heat));
  /* with augmentation the cache stays on (as `vitlab-cli train --augment light --cache-features`:
   * the validation images' frozen features), and a note under the switch says what it holds */
  VlDataPanel *dp = vl_test_data_panel (win);
  g_object_set (dp, "augment", VL_AUGMENT_NONE, "cache", TRUE, NULL);
  g_assert_null (vl_data_panel_get_cache_note (dp));
  g_object_set (dp, "augment", VL_AUGMENT_LIGHT, NULL);
  g_assert_nonnull (vl_data_panel_get_cache_note (dp));
  VlTrainConfig cfg;
  vl_window_config_from_ui (win, &cfg);
  g_assert_cmpint (cfg.augment, ==, VL_AUGMENT_LIGHT);
  g_assert_true (cfg.cache_features);
  g_assert_cmpstr (cfg.data, ==, dataset_dir);
  vl_train_config_clear (&cfg);
  /* switched off, nothing is cached and the note goes */
  g_object_set (dp, "cache", FALSE, NULL);
  g_assert_null (vl_data_panel_get_cache_note (dp));
  vl_window_config_from_ui (win, &cfg);
  g_assert_false (cfg.cache_features);
  vl_train_config_clear (&cfg);
  destroy_window (win);
}

static void
test_presets (void)
{
  VlWindow *win = new_window (TRUE);
  g_object_set (vl_test_training_panel (win), "preset", 2, NULL);   /* full fine-tune */
  g_assert_cmpint (vl_groups_panel_unlocked_suffix (vl_test_groups_panel (win)), ==, 7);
  g_assert_cmpfloat (vl_training_panel_get_layer_decay (vl_test_training_panel (win)), ==, 0.75);
  g_object_set (vl_test_training_panel (win), "preset", 0, NULL);   /* linear probe */
  g_assert_cmpint (vl_groups_panel_unlocked_suffix (vl_test_groups_panel (win)), ==, 1);
  g_assert_true (panel_bool (vl_test_data_panel (win), "cache"));
  g_object_set (vl_test_training_panel (win), "preset", 3, NULL);   /* progressive */
  g_assert_true (panel_bool (vl_test_groups_panel (win), "progressive"));
  g_autofree char *s = vl_groups_panel_get_schedule (vl_test_groups_panel (win));
  g_assert_true (g_str_has_prefix (s, "0:1,"));
  /* editing a value makes it "Custom"; the values stay editable */
  g_object_set (vl_test_training_panel (win), "lr", 0.002, NULL);
  g_assert_cmpint (vl_training_panel_get_preset (vl_test_training_panel (win)), ==, 4);
  destroy_window (win);
}

static void
test_train (void)
{
  VlWindow *win = new_window (TRUE);
  wait_for (win, has_pretrained_attention, 30, "the pretrained attention");
  quick_settings (win, 20);
  g_assert_true (train_enabled (win));

  g_assert_true (action (win, "win.train"));
  g_assert_true (running (win));
  /* what must not change mid-run is insensitive */
  g_assert_false (train_enabled (win));
  {
    gboolean editable = TRUE;
    g_object_get (vl_test_training_panel (win), "editable", &editable, NULL);
    g_assert_false (editable);
  }
  g_assert_false (panel_bool (vl_test_data_panel (win), "editable"));
  g_assert_false (vl_groups_panel_switch_sensitive (vl_test_groups_panel (win), 0));
  g_assert_true (gtk_widget_get_sensitive (vl_test_child (win, "stop_button")));
  /* a second train while running does nothing */
  action (win, "win.train");

  wait_for (win, has_points, 60, "training steps on the chart");
  /* from the first step to the end of the run, the main loop stays responsive */
  Probe probe;
  probe_start (&probe);
  wait_for (win, has_run_attention, 60, "the run's attention maps");
  float heat[16];
  g_assert_true (vl_attention_view_get_heatmap (attention_view (win), FALSE, heat));
  double sum = 0;
  for (int i = 0; i < 16; i++)
    sum += heat[i];
  g_assert_cmpfloat (sum, >, 0);
  g_assert_true (vl_attention_view_get_heatmap (attention_view (win), TRUE, heat));
  wait_for (win, finished, 120, "the end of the run");
  probe_stop (&probe);
  g_assert_cmpint (vl_window_get_last_end (win), ==, VL_TRAIN_END_COMPLETED);
  assert_fits (win, "finished");

  VlLossChart *chart = loss_chart (win);
  /* 16 training images in batches of 4, 20 epochs */
  g_assert_cmpint (vl_loss_chart_get_n_points (chart), ==, 80);
  g_assert_cmpint (vl_loss_chart_get_n_epochs (chart), ==, 20);
  g_assert_cmpint (vl_confusion_view_get_n_classes (confusion_view (win)), ==, 2);
  int64_t n = 0;
  for (int t = 0; t < 2; t++)
    for (int p = 0; p < 2; p++)
      n += vl_confusion_view_get_count (confusion_view (win), t, p);
  g_assert_cmpint (n, ==, 4);
  /* the switches show the user's setting again */
  g_assert_true (vl_groups_panel_switch_sensitive (vl_test_groups_panel (win), 0));
  g_assert_true (train_enabled (win));

  /* the gallery: each validation image's prediction, from a worker thread */
  wait_for (win, has_predictions, 60, "the predictions");
  g_assert_cmpint (vl_window_get_n_predictions (win), ==, 4);
  int t = -1, p = -1;
  vl_window_get_prediction (win, 0, &t, &p);
  g_signal_emit_by_name (vl_test_child (win, "confusion"), "cell-activated", t, p);
  g_assert_nonnull (vl_window_get_gallery (win));
  if (g_getenv ("VL_SHOTS"))
    {
      spin_for (1.0);
      g_autofree char *shot = g_build_filename (g_getenv ("VL_SHOTS"), "gallery.png", NULL);
      vl_window_save_screenshot (GTK_WINDOW (vl_window_get_gallery (win)), shot, NULL);
    }
  /* a click on an image makes it the attention probe, on the Attention page */
  GtkWidget *flow = find_widget (vl_window_get_gallery (win), GTK_TYPE_FLOW_BOX);
  g_assert_nonnull (flow);
  GtkFlowBoxChild *first_card = gtk_flow_box_get_child_at_index (GTK_FLOW_BOX (flow), 0);
  g_assert_nonnull (first_card);
  const char *item = vl_dataset_item_name (vl_window_get_predictions_data (win)->ds, VL_SPLIT_VAL,
                                           0);
  g_signal_emit_by_name (flow, "child-activated", first_card);
  g_assert_cmpstr (gtk_stack_get_visible_child_name (main_stack (win)), ==, "attention");
  gallery_probe = item;
  wait_for (win, probe_is_gallery_item, 30, "the clicked image as the probe");
  gtk_window_destroy (GTK_WINDOW (vl_window_get_gallery (win)));
  g_assert_null (vl_window_get_gallery (win));

  /* export on a worker thread */
  g_autofree char *out = vl_test_tmpdir ();
  g_autofree char *export_dir = g_build_filename (out, "exported", NULL);
  g_object_set_data_full (G_OBJECT (win), "export-dir-override", g_strdup (export_dir), g_free);
  g_assert_true (action (win, "win.export"));
  wait_for (win, not_exporting, 60, "the export");
  g_assert_false (gtk_info_bar_get_message_type (banner (win)) == GTK_MESSAGE_ERROR &&
                  gtk_info_bar_get_revealed (banner (win)));
  g_autoptr(GError) error = NULL;
  g_autoptr(VlModel) exported = vl_model_load (export_dir, &error);
  g_assert_no_error (error);
  g_assert_cmpint (vl_model_num_classes (exported), ==, 2);
  /* and as ONNX (File menu: Export as ONNX…) */
  export_onnx_and_check (win, out, "logits,features classify");
  /* and the run's recipe for PyTorch (File menu: Export the Recipe for PyTorch…): train.py,
   * the run's own run.json byte for byte, the backbone in timm's layout with the run's classes */
  g_autofree char *recipe_dir = g_build_filename (out, "recipe", NULL);
  g_object_set_data_full (G_OBJECT (win), "export-recipe-override", g_strdup (recipe_dir), g_free);
  g_assert_true (action (win, "win.export-recipe"));
  g_assert_true (vl_window_is_exporting (win));
  wait_for (win, not_exporting, 60, "the recipe's export");
  g_assert_false (gtk_info_bar_get_message_type (banner (win)) == GTK_MESSAGE_ERROR &&
                  gtk_info_bar_get_revealed (banner (win)));
  {
    g_autofree char *script = g_build_filename (recipe_dir, "train.py", NULL);
    g_autofree char *run_a = g_build_filename (vl_window_get_run_dir (win), "run.json", NULL);
    g_autofree char *run_b = g_build_filename (recipe_dir, "run.json", NULL);
    g_autofree char *bb = g_build_filename (recipe_dir, "backbone", NULL);
    g_autofree char *ta = NULL, *tb = NULL;
    g_assert_true (g_file_test (script, G_FILE_TEST_IS_REGULAR));
    g_assert_true (g_file_get_contents (run_a, &ta, NULL, NULL));
    g_assert_true (g_file_get_contents (run_b, &tb, NULL, NULL));
    g_assert_cmpstr (ta, ==, tb);
    g_autoptr(VlModel) rb = vl_model_load (bb, &error);
    g_assert_no_error (error);
    g_assert_cmpint (vl_model_num_classes (rb), ==, 2);
  }

  /* the run folder */
  g_autofree char *metrics = g_build_filename (vl_window_get_run_dir (win), "metrics.jsonl", NULL);
  g_assert_true (g_file_test (metrics, G_FILE_TEST_IS_REGULAR));
  g_free (trained_run_dir);
  trained_run_dir = g_strdup (vl_window_get_run_dir (win));

  /* changing the head now asks first: cancel keeps it, accept discards the trained one */
  g_assert_true (action_s (win, "win.head", "linear-avg"));
  g_assert_nonnull (vl_window_get_head_dialog (win));
  gtk_dialog_response (GTK_DIALOG (vl_window_get_head_dialog (win)), GTK_RESPONSE_CANCEL);
  g_assert_null (vl_window_get_head_dialog (win));
  g_autofree char *head_kept = NULL;
  g_object_get (win, "head", &head_kept, NULL);
  g_assert_cmpstr (head_kept, ==, "linear-token");
  g_assert_true (vl_window_has_trained (win));
  g_assert_true (action_s (win, "win.head", "linear-avg"));
  gtk_dialog_response (GTK_DIALOG (vl_window_get_head_dialog (win)), GTK_RESPONSE_ACCEPT);
  g_autofree char *head_new = NULL;
  g_object_get (win, "head", &head_new, NULL);
  g_assert_cmpstr (head_new, ==, "linear-avg");
  g_assert_false (vl_window_has_trained (win));
  destroy_window (win);
}


/* A regression folder: 40 x 40 images of a grey level, the target being that level. Opening it
 * switches the task to regression; a run fills the scatter view, hides the confusion matrix,
 * and the run controller's ::event::epoch signal carries regression metrics. */
static char *
write_regress_dataset (void)
{
  char *dir = vl_test_tmpdir ();
  GString *csv = g_string_new ("file,level\n");
  for (int i = 0; i < 24; i++)
    {
      guint8 px[40 * 40 * 3];
      int level = 20 + 9 * i;
      memset (px, level, sizeof px);
      g_autofree char *path = g_strdup_printf ("%s/g%02d.png", dir, i);
      g_assert_cmpint (stbi_write_png (path, 40, 40, 3, px, 40 * 3), !=, 0);
      g_string_append_printf (csv, "g%02d.png,%d\n", i, level);
    }
  g_autofree char *csv_path = g_build_filename (dir, "targets.csv", NULL);
  g_assert_true (g_file_set_contents (csv_path, csv->str, -1, NULL));
  g_string_free (csv, TRUE);
  return dir;
}

static void
count_epoch (VlRunController *run, VlTrainEvent *ev, int *n)
{
  g_assert_cmpint (ev->kind, ==, VL_TRAIN_EVENT_EPOCH);
  g_assert_cmpint (ev->metrics->task, ==, VL_TASK_REGRESS);
  (*n)++;
}

static gboolean knn_idle (VlWindow *win);
static VlTryPanel *the_try;
static gboolean try_idle (VlWindow *win);

static void
test_regression (void)
{
  VlWindow *win = new_window (FALSE);
  g_autofree char *dir = write_regress_dataset ();
  g_assert_true (action_s (win, "win.load-data", dir));
  wait_for (win, loaded, 30, "the regression dataset");
  /* the data decides the task; the head follows it */
  g_assert_cmpint (panel_task (win), ==, VL_TASK_REGRESS);
  g_autofree char *settings = NULL;
  g_object_get (vl_test_head_panel (win), "settings", &settings, NULL);
  g_assert_cmpstr (settings, ==, "classifier,loss");
  g_assert_cmpint (vl_model_num_classes (vl_window_get_model (win)), ==, 1);
  quick_settings (win, 8);
  g_object_set (vl_test_head_panel (win), "reg-loss", VL_REG_LOSS_SMOOTH_L1, NULL);
  int epochs = 0;
  gulong id = g_signal_connect (vl_window_get_run_controller (win), "event::epoch",
                                G_CALLBACK (count_epoch), &epochs);
  g_assert_true (train_enabled (win));
  g_assert_true (action (win, "win.train"));
  wait_for (win, finished, 120, "the end of the regression run");
  g_signal_handler_disconnect (vl_window_get_run_controller (win), id);
  g_assert_cmpint (vl_window_get_last_end (win), ==, VL_TRAIN_END_COMPLETED);
  g_assert_cmpint (epochs, ==, 8);
  assert_fits (win, "a finished regression run");
  g_assert_false (gtk_widget_get_visible (vl_test_child (win, "confusion")));
  g_assert_true (gtk_widget_get_visible (vl_test_child (win, "scatter")));
  VlScatterView *sv = VL_SCATTER_VIEW (vl_test_child (win, "scatter"));
  g_assert_cmpint (vl_scatter_view_get_n_points (sv), ==, 5);   /* 20% of 24, seeded */
  /* pointing at a point picks it */
  double x, y;
  g_assert_true (vl_scatter_view_point_position (sv, 2, &x, &y));
  vl_scatter_view_hover_at (sv, x, y);
  g_assert_cmpint (vl_scatter_view_get_hovered (sv), >=, 0);
  vl_scatter_view_hover_at (sv, -1, -1);
  g_assert_cmpint (vl_scatter_view_get_hovered (sv), ==, -1);
  g_assert_cmpint (vl_loss_chart_get_n_epochs (loss_chart (win)), ==, 8);
  VlRunTask task;
  g_autoptr(GError) error = NULL;
  g_assert_true (vl_run_read_task (vl_window_get_run_dir (win), &task, &error));
  g_assert_cmpint (task.kind, ==, VL_TASK_REGRESS);
  g_assert_cmpint (task.reg_loss, ==, VL_REG_LOSS_SMOOTH_L1);
  g_assert_cmpstr (task.value_names[0], ==, "level");

  /* no classes: no k-NN figure, but the features for the map */
  wait_for (win, knn_idle, 60, "the features of the regression dataset");
  VlKnnPanel *knn = vl_test_knn_panel (win);
  g_assert_cmpstr (vl_knn_panel_get_text (knn), ==, "k-NN: the dataset has no classes");
  g_assert_true (isnan (vl_knn_panel_get_accuracy (knn)));
  g_assert_nonnull (vl_knn_panel_get_features (knn));
  g_assert_cmpint (vl_embedding_panel_get_n_points (embedding_panel (win),
                                                    VL_EMBEDDING_PRETRAINED), ==, 24);

  /* Try it on a regression run: the value in the targets' units, as the run's model gives it */
  the_try = VL_TRY_PANEL (vl_test_child (win, "try_panel"));
  g_assert_true (vl_try_panel_has_model (the_try));
  g_autofree char *g05 = g_build_filename (dir, "g05.png", NULL);
  const char *files[] = { g05, NULL };
  vl_try_panel_add_files (the_try, files);
  wait_for (win, try_idle, 60, "Try it on the regression run");
  g_assert_cmpint (vl_try_panel_get_n_results (the_try), ==, 1);
  const char *err = NULL;
  double value = NAN;
  vl_try_panel_get_result (the_try, 0, &err, NULL, &value);
  g_assert_null (err);
  {
    g_autoptr(VlModel) m = vl_run_load_model (vl_window_get_run_dir (win), NULL, &error);
    g_assert_no_error (error);
    VlPreprocess pp;
    vl_preprocess_from_model (m, &pp);
    g_autoptr(VlImage) img = vl_image_load (g05, 0, &error);
    g_assert_no_error (error);
    g_autofree float *px = g_new (float, (gsize) pp.channels * pp.size * pp.size);
    vl_preprocess_eval (img, &pp, px);
    g_assert_true (vl_model_forward (m, px, 1, pp.size, pp.size, VL_FORWARD_INFER, &error));
    VlTaskSpec spec = vl_run_task_spec (&task);
    float v;
    vl_task_unstandardize (&spec, vl_model_logits (m), &v);
    g_test_message ("g05.png (level 65): predicted %.3f", v);
    g_assert_cmpfloat_with_epsilon (value, v, 1e-3);
    g_assert_cmpfloat (fabs (value - vl_model_logits (m)[0]), >, 1e-3);   /* mapped back */
  }
  g_autofree char *csv = g_build_filename (dir, "try.csv", NULL);
  g_assert_true (vl_try_panel_export_csv (the_try, csv, &error));
  g_autofree char *text = NULL;
  g_assert_true (g_file_get_contents (csv, &text, NULL, NULL));
  g_assert_true (g_str_has_prefix (text, "file,level\n"));
  the_try = NULL;
  vl_run_task_clear (&task);
  /* as ONNX: the values in the targets' units */
  g_autofree char *onnx_dir = vl_test_tmpdir ();
  export_onnx_and_check (win, onnx_dir, "values,features regress");
  if (g_getenv ("VL_SHOTS"))
    {
      g_assert_true (action_s (win, "win.page", "evaluation"));
      spin_for (0.5);
      g_autofree char *shot = g_build_filename (g_getenv ("VL_SHOTS"), "regression.png", NULL);
      vl_window_save_screenshot (GTK_WINDOW (win), shot, NULL);
    }
  /* back to a dataset of classes: classification again, the matrix back */
  g_assert_true (action_s (win, "win.load-data", dataset_dir));
  wait_for (win, loaded, 30, "the class folders");
  g_assert_cmpint (panel_task (win), ==, VL_TASK_CLASSIFY);
  g_assert_true (gtk_widget_get_visible (vl_test_child (win, "confusion")));
  g_assert_false (gtk_widget_get_visible (vl_test_child (win, "scatter")));
  destroy_window (win);
}

static void
test_pause_stop_resume (void)
{
  VlWindow *win = new_window (TRUE);
  quick_settings (win, 500);
  g_assert_true (action (win, "win.train"));
  wait_for (win, has_epoch, 60, "the first epoch");
  g_assert_true (action (win, "win.pause"));
  wait_for (win, is_paused, 30, "the pause");
  assert_fits (win, "training, after the first epoch");
  int64_t at = vl_loss_chart_get_n_points (loss_chart (win));
  spin_for (0.3);
  g_assert_cmpint (vl_loss_chart_get_n_points (loss_chart (win)), <=, at + 1);
  g_assert_true (action (win, "win.pause"));
  wait_for (win, not_paused, 30, "the resume");

  Probe probe;
  probe_start (&probe);
  spin_for (1.0);
  g_assert_true (action (win, "win.stop"));
  g_assert_true (vl_window_stop_requested (win));
  wait_for (win, finished, 60, "the stop");
  probe_stop (&probe);
  g_assert_cmpint (vl_window_get_last_end (win), ==, VL_TRAIN_END_STOPPED);
  /* the window is responsive and the stopped run can be resumed from its checkpoint */
  g_assert_true (vl_window_is_resumable (win));
  g_autofree char *opt = g_build_filename (vl_window_get_run_dir (win), "optimizer.safetensors",
                                           NULL);
  g_assert_true (g_file_test (opt, G_FILE_TEST_IS_REGULAR));
  int64_t before = vl_window_get_steps_done (win);
  g_assert_true (action (win, "win.resume-run"));
  g_assert_true (running (win));
  wait_for (win, has_points, 60, "steps after resuming");
  spin_for (0.5);
  g_assert_true (action (win, "win.stop"));
  wait_for (win, finished, 60, "the second stop");
  g_assert_cmpint (vl_window_get_steps_done (win), >, before);
  destroy_window (win);
}

static gboolean
close_dialog_shown (VlWindow *win)
{
  return vl_window_get_close_dialog (win) != NULL;
}

static void
test_close_during_training (void)
{
  VlWindow *win = new_window (TRUE);
  quick_settings (win, 500);
  g_assert_true (action (win, "win.train"));
  wait_for (win, has_epoch, 60, "an epoch");
  g_autofree char *run_dir = g_strdup (vl_window_get_run_dir (win));

  /* closing asks; "Cancel" keeps training */
  gtk_window_close (GTK_WINDOW (win));
  wait_for (win, close_dialog_shown, 10, "the confirmation");
  gtk_dialog_response (GTK_DIALOG (vl_window_get_close_dialog (win)), GTK_RESPONSE_CANCEL);
  g_assert_null (vl_window_get_close_dialog (win));
  spin_for (0.2);
  g_assert_true (running (win));

  /* "Stop and Close" stops the worker cleanly, keeps the checkpoint and closes */
  GtkWidget *w = GTK_WIDGET (win);
  g_object_add_weak_pointer (G_OBJECT (w), (gpointer *) &w);
  gtk_window_close (GTK_WINDOW (win));
  wait_for (win, close_dialog_shown, 10, "the confirmation");
  gtk_dialog_response (GTK_DIALOG (vl_window_get_close_dialog (win)), GTK_RESPONSE_ACCEPT);
  gint64 deadline = g_get_monotonic_time () + 60 * G_USEC_PER_SEC;
  while (w != NULL && g_get_monotonic_time () < deadline)
    {
      g_main_context_iteration (NULL, FALSE);
      g_usleep (1000);
    }
  g_assert_null (w);
  g_autofree char *model = g_build_filename (run_dir, "model.safetensors", NULL);
  g_autofree char *opt = g_build_filename (run_dir, "optimizer.safetensors", NULL);
  g_assert_true (g_file_test (model, G_FILE_TEST_IS_REGULAR));
  g_assert_true (g_file_test (opt, G_FILE_TEST_IS_REGULAR));
  /* the checkpoint is whole: the run folder loads */
  g_autoptr(GError) error = NULL;
  g_autoptr(VlModel) m = vl_run_load_model (run_dir, NULL, &error);
  g_assert_no_error (error);
}

static gboolean
run_opened (VlWindow *win)
{
  return !vl_window_is_loading (win);   /* an opening run included */
}

static void
test_open_run (void)
{
  if (trained_run_dir == NULL)
    {
      g_test_skip ("needs /ui/window/train");
      return;
    }
  VlWindow *win = vl_window_new (GTK_APPLICATION (app));
  gtk_window_present (GTK_WINDOW (win));
  vl_window_open_run (win, trained_run_dir);
  wait_for (win, run_opened, 30, "the run");
  g_assert_cmpint (vl_loss_chart_get_n_epochs (loss_chart (win)), ==, 20);
  g_assert_true (vl_window_has_trained (win));
  g_assert_nonnull (vl_window_get_model (win));
  g_assert_nonnull (vl_window_get_data (win));
  g_assert_cmpint (vl_training_panel_get_epochs (vl_test_training_panel (win)), ==, 20);
  g_assert_cmpint (vl_confusion_view_get_n_classes (confusion_view (win)), ==, 2);
  g_assert_false (vl_window_is_resumable (win));
  wait_for (win, has_predictions, 60, "the predictions of the opened run");
  /* its model exports */
  g_autofree char *out = vl_test_tmpdir ();
  g_object_set_data_full (G_OBJECT (win), "export-dir-override", g_strdup (out), g_free);
  g_assert_true (action (win, "win.export"));
  g_assert_true (vl_window_is_exporting (win));
  wait_for (win, not_exporting, 60, "the export");
  g_autofree char *config = g_build_filename (out, "config.json", NULL);
  g_assert_true (g_file_test (config, G_FILE_TEST_IS_REGULAR));
  assert_fits (win, "an opened run");
  assert_fits_long_names (win);
  destroy_window (win);
}

/* ------------------------------------------------------------------ features: k-NN, map, try it */

static gboolean
knn_done (VlWindow *win)
{
  VlKnnPanel *knn = vl_test_knn_panel (win);
  return !vl_knn_panel_is_busy (knn) && vl_knn_panel_get_features (knn) != NULL;
}

static gboolean
knn_idle (VlWindow *win)
{
  return !vl_knn_panel_is_busy (vl_test_knn_panel (win));
}

/* DINO's weighted k-NN written out plainly (double precision, selection of the k largest): the
 * validation rows' accuracy among the training rows. */
static double
reference_knn (const VlFeatures *f, int k, double T)
{
  const int64_t nt = f->n_train, D = f->dim;
  g_autofree double *unit = g_new (double, f->n * D);
  for (int64_t i = 0; i < f->n; i++)
    {
      double s = 0;
      for (int64_t d = 0; d < D; d++)
        s += (double) f->features[i * D + d] * f->features[i * D + d];
      s = s > 0 ? sqrt (s) : 1;
      for (int64_t d = 0; d < D; d++)
        unit[i * D + d] = f->features[i * D + d] / s;
    }
  k = MIN (k, (int) nt);
  g_autofree double *sim = g_new (double, nt);
  g_autofree gboolean *used = g_new (gboolean, nt);
  g_autofree double *votes = g_new (double, f->n_classes);
  int correct = 0;
  for (int64_t q = nt; q < f->n; q++)
    {
      for (int64_t t = 0; t < nt; t++)
        {
          sim[t] = 0;
          for (int64_t d = 0; d < D; d++)
            sim[t] += unit[q * D + d] * unit[t * D + d];
          used[t] = FALSE;
        }
      memset (votes, 0, sizeof (double) * f->n_classes);
      for (int r = 0; r < k; r++)
        {
          int64_t best = -1;
          for (int64_t t = 0; t < nt; t++)
            if (!used[t] && (best < 0 || sim[t] > sim[best]))
              best = t;
          used[best] = TRUE;
          votes[f->labels[best]] += exp (sim[best] / T);
        }
      int win = 0;
      for (int c = 1; c < f->n_classes; c++)
        if (votes[c] > votes[win])
          win = c;
      correct += win == f->labels[q];
    }
  return (double) correct / (double) (f->n - nt);
}

static void
record_path (VlEmbeddingPanel *panel, const char *path, char **out)
{
  g_free (*out);
  *out = g_strdup (path);
  g_signal_stop_emission_by_name (panel, "image-activated");   /* no viewer in a test */
}

static VlEmbeddingPanel *the_map;

static gboolean
preview_ready (VlWindow *win)
{
  return vl_embedding_panel_get_preview (the_map, NULL) != NULL;
}

/* train/ and val/ folders of three classes of 40 x 40 PNGs whose colour is mostly noise, with a
 * small bias per class: a k-NN gets some, not all, right. */
static char *
write_hard_dataset (void)
{
  char *dir = vl_test_tmpdir ();
  GRand *rand = g_rand_new_with_seed (11);
  const char *splits[] = { "train", "val" };
  for (int s = 0; s < 2; s++)
    for (int k = 0; k < 3; k++)
      {
        g_autofree char *cdir = g_strdup_printf ("%s/%s/c%d", dir, splits[s], k);
        g_assert_cmpint (g_mkdir_with_parents (cdir, 0755), ==, 0);
        for (int i = 0; i < (s == 0 ? 8 : 4); i++)
          {
            guint8 px[40 * 40 * 3];
            int base[3];
            for (int c = 0; c < 3; c++)
              base[c] = g_rand_int_range (rand, 30, 220) + (c == k ? 30 : 0);
            for (int p = 0; p < 40 * 40; p++)
              for (int c = 0; c < 3; c++)
                px[p * 3 + c] = (guint8) CLAMP (base[c] + g_rand_int_range (rand, -60, 60), 0, 255);
            g_autofree char *path = g_strdup_printf ("%s/%d.png", cdir, i);
            g_assert_cmpint (stbi_write_png (path, 40, 40, 3, px, 40 * 3), !=, 0);
          }
      }
  g_rand_free (rand);
  return dir;
}

/* Opening a dataset with a backbone runs the k-NN probe on a worker: the figure equals a plain
 * k-NN over the features, and the features are the backbone's own; the per-block chart comes
 * from one pass, its last bar being the same figure; the embedding map shows the same rows, a
 * hover shows a thumbnail, a click names the image; a cancelled probe's result is dropped. */
static void
test_features_knn (void)
{
  VlWindow *win = new_window (TRUE);
  VlKnnPanel *knn = vl_test_knn_panel (win);
  g_assert_true (gtk_widget_get_visible (GTK_WIDGET (vl_test_knn_panel (win))));
  Probe probe;
  probe_start (&probe);
  wait_for (win, knn_done, 60, "the k-NN probe");
  probe_stop (&probe);
  const VlFeatures *f = vl_knn_panel_get_features (knn);
  g_assert_cmpint (f->n, ==, 20);
  g_assert_cmpint (f->n_train, ==, 16);
  g_assert_cmpint (f->n_classes, ==, 2);
  double acc = vl_knn_panel_get_accuracy (knn);
  g_test_message ("k-NN %.4f; with k = 1: %.4f", acc, reference_knn (f, 1, VL_KNN_TEMPERATURE));
  g_assert_cmpfloat (acc, ==, reference_knn (f, VL_KNN_K, VL_KNN_TEMPERATURE));
  g_autofree char *want = g_strdup_printf ("k-NN on these features: %.1f%%", 100 * acc);
  g_assert_cmpstr (vl_knn_panel_get_text (knn), ==, want);
  gboolean shown = TRUE;
  vl_knn_panel_get_progress (knn, &shown);
  g_assert_false (shown);   /* hidden again once done */

  /* row 0 is the backbone's own pooled features of training image 0 */
  g_autofree char *backbone = fixture_backbone ();
  g_autoptr(GError) error = NULL;
  g_autoptr(VlModel) m = vl_model_load (backbone, &error);
  g_assert_no_error (error);
  VlPreprocess pp;
  vl_preprocess_from_model (m, &pp);
  g_autofree float *px = g_new (float, (gsize) pp.channels * pp.size * pp.size);
  g_assert_true (vl_dataset_load (vl_window_get_data (win)->ds, VL_SPLIT_TRAIN, 0, &pp,
                                  VL_AUGMENT_NONE, 0, px, NULL));
  g_assert_true (vl_model_forward (m, px, 1, pp.size, pp.size, VL_FORWARD_INFER, &error));
  const float *want_f = vl_model_features (m);
  for (int64_t d = 0; d < f->dim; d++)
    g_assert_cmpfloat_with_epsilon (f->features[d], want_f[d], 1e-5);

  /* every block's output, from the panel's button */
  const int depth = vl_model_geometry (m)->depth;
  int n = 0;
  g_assert_null (vl_knn_panel_get_layer_accuracy (knn, &n));
  vl_knn_panel_start_layers (knn);
  g_assert_true (vl_knn_panel_is_busy (knn));
  wait_for (win, knn_idle, 60, "the per-block k-NN");
  const double *layers = vl_knn_panel_get_layer_accuracy (knn, &n);
  g_assert_nonnull (layers);
  g_assert_cmpint (n, ==, depth + 1);
  g_assert_cmpfloat (layers[depth], ==, acc);
  for (int l = 0; l < n; l++)
    {
      g_test_message ("block %d: k-NN %.4f", l, layers[l]);
      g_assert_true (layers[l] >= 0 && layers[l] <= 1);
    }

  /* the embedding map: the same rows, hover and click */
  g_assert_true (action_s (win, "win.page", "embedding"));
  g_assert_cmpstr (gtk_stack_get_visible_child_name (main_stack (win)), ==, "embedding");
  VlEmbeddingPanel *emb = embedding_panel (win);
  the_map = emb;
  g_assert_cmpint (vl_embedding_panel_get_n_points (emb, VL_EMBEDDING_PRETRAINED), ==, 20);
  g_assert_cmpint (vl_embedding_panel_get_n_points (emb, VL_EMBEDDING_FINETUNED), ==, 0);
  g_assert_true (vl_task_view_applies_to (VL_TASK_VIEW (emb), VL_TASK_REGRESS));
  spin_for (0.3);   /* laid out */
  vl_embedding_panel_hover (emb, VL_EMBEDDING_PRETRAINED, 17);
  wait_for (win, preview_ready, 30, "the hovered point's thumbnail");
  int64_t point = -1;
  GdkPaintable *thumb = vl_embedding_panel_get_preview (emb, &point);
  g_assert_cmpint (point, ==, 17);
  g_assert_cmpint (gdk_paintable_get_intrinsic_width (thumb), ==, 160);
  g_autofree char *clicked = NULL;
  g_signal_connect (emb, "image-activated", G_CALLBACK (record_path), &clicked);
  GtkWidget *view = vl_embedding_panel_get_view (emb, VL_EMBEDDING_PRETRAINED);
  double x, y;
  g_assert_true (vl_embedding_view_get_point_position (VL_EMBEDDING_VIEW (view), 5, &x, &y));
  int64_t at = vl_embedding_view_point_at (VL_EMBEDDING_VIEW (view), x, y);
  g_assert_true (vl_embedding_view_activate_at (VL_EMBEDDING_VIEW (view), x, y));
  g_assert_cmpstr (clicked, ==, f->files[at]);
  g_assert_true (g_file_test (clicked, G_FILE_TEST_IS_REGULAR));

  /* a harder dataset (train/ and val/ folders, three classes only weakly told apart by colour):
   * the figure is neither 0 nor 1 and still equals the plain k-NN's */
  g_autofree char *hard = write_hard_dataset ();
  vl_window_open_data (win, hard);
  wait_for (win, loaded, 30, "the second dataset");
  wait_for (win, knn_done, 60, "the k-NN probe of the second dataset");
  f = vl_knn_panel_get_features (knn);
  g_assert_cmpint (f->n, ==, 36);
  g_assert_cmpint (f->n_train, ==, 24);
  acc = vl_knn_panel_get_accuracy (knn);
  g_test_message ("hard dataset: k-NN %.4f", acc);
  g_assert_cmpfloat (acc, ==, reference_knn (f, VL_KNN_K, VL_KNN_TEMPERATURE));
  g_assert_cmpfloat (acc, >, 0);
  g_assert_cmpfloat (acc, <, 1);
  g_assert_null (vl_knn_panel_get_layer_accuracy (knn, &n));   /* of the previous dataset */
  g_assert_cmpint (vl_embedding_panel_get_n_points (emb, VL_EMBEDDING_PRETRAINED), ==, 36);

  /* the head's pooling is the probe's: max-pooled patches now */
  g_assert_cmpint (vl_knn_panel_get_pool (knn), ==, VL_FEATURE_POOL_TOKEN);
  g_assert_true (action_s (win, "win.head", "linear-max"));
  g_assert_true (vl_knn_panel_is_busy (knn));
  g_assert_cmpint (vl_knn_panel_get_pool (knn), ==, VL_FEATURE_POOL_MAX);
  wait_for (win, knn_done, 60, "the k-NN probe on max-pooled features");
  f = vl_knn_panel_get_features (knn);
  g_assert_cmpint (f->pool, ==, VL_FEATURE_POOL_MAX);
  acc = vl_knn_panel_get_accuracy (knn);
  g_test_message ("hard dataset, max pooling: k-NN %.4f", acc);
  g_assert_cmpfloat (acc, ==, reference_knn (f, VL_KNN_K, VL_KNN_TEMPERATURE));
  /* the same inputs again start nothing */
  vl_test_whitebox_features_inputs_changed (win);
  g_assert_false (vl_knn_panel_is_busy (knn));

  /* a probe cancelled before it reports is dropped: the panel keeps nothing of it */
  vl_knn_panel_start (knn, backbone, vl_window_get_data (win), VL_FEATURE_POOL_AVG);
  g_assert_true (vl_knn_panel_is_busy (knn));
  vl_knn_panel_clear (knn);
  g_assert_false (vl_knn_panel_is_busy (knn));
  spin_for (3.0);
  g_assert_null (vl_knn_panel_get_features (knn));
  g_assert_false (gtk_widget_get_visible (GTK_WIDGET (vl_test_knn_panel (win))));
  g_assert_cmpint (vl_embedding_panel_get_n_points (emb, VL_EMBEDDING_PRETRAINED), ==, 0);
  the_map = NULL;
  destroy_window (win);
}

static gboolean
try_idle (VlWindow *win)
{
  return !vl_try_panel_is_busy (the_try);
}

static gboolean
finetuned_map (VlWindow *win)
{
  return knn_done (win) &&
         !vl_embedding_panel_is_busy (embedding_panel (win)) &&
         vl_embedding_panel_get_n_points (embedding_panel (win),
                                          VL_EMBEDDING_FINETUNED) > 0;
}

static char *write_probe_png (const char *dir, const char *name, int w, int h, int sx, int sy);
static gboolean emit_drop_on (GtkWidget *widget, GFile *file);

/* An opened run: its fine-tuned map beside the pretrained one, and "Try it" on images, a bad
 * file and a folder — each answer equal to the run's model's own (probabilities and rollout,
 * computed here), the bad file named, the CSV export read back. */
static void
test_features_try (void)
{
  if (trained_run_dir == NULL)
    {
      g_test_skip ("needs /ui/window/train");
      return;
    }
  VlWindow *win = vl_window_new (GTK_APPLICATION (app));
  gtk_window_present (GTK_WINDOW (win));
  vl_window_open_run (win, trained_run_dir);
  wait_for (win, run_opened, 30, "the run");
  the_try = VL_TRY_PANEL (vl_test_child (win, "try_panel"));
  g_assert_true (vl_try_panel_has_model (the_try));
  g_assert_true (action_s (win, "win.page", "try"));
  g_assert_cmpstr (gtk_stack_get_visible_child_name (main_stack (win)), ==, "try");

  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *a = write_probe_png (dir, "a.png", 48, 40, 4, 4);
  g_autofree char *bad = g_build_filename (dir, "bad.png", NULL);
  g_assert_true (g_file_set_contents (bad, "\x89PNG\r\n\x1a\n truncated", -1, NULL));
  g_autofree char *sub = g_build_filename (dir, "more", NULL);
  g_assert_cmpint (g_mkdir_with_parents (sub, 0755), ==, 0);
  g_autofree char *c = write_probe_png (sub, "c.png", 40, 40, 20, 20);
  g_autofree char *d = write_probe_png (sub, "d.png", 32, 64, 0, 30);
  g_autofree char *txt = g_build_filename (sub, "notes.txt", NULL);
  g_assert_true (g_file_set_contents (txt, "not an image", -1, NULL));
  const char *files[] = { a, bad, sub, NULL };
  Probe probe;
  probe_start (&probe);
  vl_try_panel_add_files (the_try, files);
  g_assert_true (vl_try_panel_is_busy (the_try));
  wait_for (win, try_idle, 60, "the predictions of Try it");
  probe_stop (&probe);
  g_assert_cmpint (vl_try_panel_get_n_results (the_try), ==, 4);   /* a, bad, c, d */

  const char *err = NULL;
  g_assert_cmpstr (vl_try_panel_get_result (the_try, 1, &err, NULL, NULL), ==, bad);
  g_assert_nonnull (err);
  g_assert_nonnull (strstr (err, "bad.png"));

  g_autoptr(GError) error = NULL;
  g_auto(GStrv) names = NULL;
  g_autoptr(VlModel) m = vl_run_load_model (trained_run_dir, &names, &error);
  g_assert_no_error (error);
  VlPreprocess pp;
  vl_preprocess_from_model (m, &pp);
  const char *expect[] = { a, NULL, c, d };
  for (int i = 0; i < 4; i++)
    {
      if (expect[i] == NULL)
        continue;
      int top = -1;
      double prob = 0;
      g_assert_cmpstr (vl_try_panel_get_result (the_try, i, &err, &top, &prob), ==, expect[i]);
      g_assert_null (err);
      g_autoptr(VlImage) img = vl_image_load (expect[i], 0, &error);
      g_assert_no_error (error);
      g_autofree float *px = g_new (float, (gsize) pp.channels * pp.size * pp.size);
      vl_preprocess_eval (img, &pp, px);
      g_assert_true (vl_model_forward (m, px, 1, pp.size, pp.size, VL_FORWARD_CAPTURE_ATTN,
                                       &error));
      const float *z = vl_model_logits (m);
      int best = z[1] > z[0];
      double p = 1.0 / (1.0 + exp ((double) z[1 - best] - z[best]));
      g_assert_cmpint (top, ==, best);
      g_assert_cmpfloat_with_epsilon (prob, p, 1e-5);
      int gh = 0, gw = 0;
      const float *roll = vl_try_panel_get_rollout (the_try, i, &gh, &gw);
      g_assert_cmpint (gh * gw, ==, vl_model_n_tokens_last (m) - vl_model_geometry (m)->n_prefix);
      g_autofree float *want = g_new (float, vl_model_n_tokens_last (m));
      g_assert_true (vl_model_rollout (m, want, &error));
      for (int t = 0; t < gh * gw; t++)
        g_assert_cmpfloat_with_epsilon (roll[t], want[t], 1e-5);
    }

  /* the CSV: a header naming the classes, one row per image that ran */
  g_autofree char *csv = g_build_filename (dir, "predictions.csv", NULL);
  g_assert_true (vl_try_panel_export_csv (the_try, csv, &error));
  g_assert_no_error (error);
  g_autofree char *text = NULL;
  g_assert_true (g_file_get_contents (csv, &text, NULL, NULL));
  g_auto(GStrv) lines = g_strsplit (text, "\n", -1);
  g_assert_cmpint (g_strv_length (lines), ==, 5);   /* header, 3 rows, the empty end */
  g_autofree char *header = g_strdup_printf ("file,predicted,probability,p_%s,p_%s", names[0],
                                             names[1]);
  g_assert_cmpstr (lines[0], ==, header);
  g_assert_true (g_str_has_prefix (lines[1], a));
  g_assert_true (g_str_has_prefix (lines[3], d));
  g_auto(GStrv) cells = g_strsplit (lines[1], ",", -1);
  g_assert_cmpint (g_strv_length (cells), ==, 5);
  int top = -1;
  double prob = 0;
  vl_try_panel_get_result (the_try, 0, NULL, &top, &prob);
  g_assert_cmpstr (cells[1], ==, names[top]);
  g_assert_cmpfloat_with_epsilon (g_ascii_strtod (cells[2], NULL), prob, 1e-7);

  /* an image dropped on the page (its own drop target) joins them */
  g_autofree char *e = write_probe_png (dir, "e.png", 40, 40, 10, 0);
  g_autoptr(GFile) ef = g_file_new_for_path (e);
  g_assert_true (emit_drop_on (vl_test_child (win, "try_panel"), ef));
  g_assert_true (vl_try_panel_is_busy (the_try));
  wait_for (win, try_idle, 60, "the dropped image's prediction");
  g_assert_cmpint (vl_try_panel_get_n_results (the_try), ==, 5);
  g_assert_cmpstr (vl_try_panel_get_result (the_try, 4, &err, NULL, NULL), ==, e);
  g_assert_null (err);

  /* the fine-tuned map beside the pretrained one, once the run's dataset is open */
  wait_for (win, finetuned_map, 60, "the fine-tuned embedding map");
  VlEmbeddingPanel *emb = embedding_panel (win);
  g_assert_cmpint (vl_embedding_panel_get_n_points (emb, VL_EMBEDDING_FINETUNED), ==,
                   vl_embedding_panel_get_n_points (emb, VL_EMBEDDING_PRETRAINED));

  /* clearing forgets the images */
  vl_try_panel_clear (the_try);
  g_assert_cmpint (vl_try_panel_get_n_results (the_try), ==, 0);
  the_try = NULL;
  destroy_window (win);
}

/* ------------------------------------------------------------------ the probe file */

static gboolean
probe_idle (VlWindow *win)
{
  return !vl_test_probe_state (win).busy;
}

static gboolean
probe_file_ready (VlWindow *win)
{
  return !vl_test_probe_state (win).busy && vl_test_probe_state (win).image != NULL &&
         vl_test_probe_state (win).ref_attn != NULL;
}

static gboolean
probe_file_fine_tuned (VlWindow *win)
{
  return !vl_test_probe_state (win).busy && vl_test_probe_state (win).now_attn != NULL;
}

static gboolean
banner_error_shown (VlWindow *win)
{
  return gtk_info_bar_get_revealed (banner (win)) &&
         gtk_info_bar_get_message_type (banner (win)) == GTK_MESSAGE_ERROR;
}

/* A w x h RGB PNG: a gradient with a bright square at (sx, sy), so the attention has something
 * to look at. */
static char *
write_probe_png (const char *dir, const char *name, int w, int h, int sx, int sy)
{
  g_autofree guint8 *px = g_new (guint8, (gsize) w * h * 3);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      {
        guint8 *p = px + ((gsize) y * w + x) * 3;
        gboolean square = x >= sx && x < sx + w / 4 && y >= sy && y < sy + h / 4;
        p[0] = square ? 250 : (guint8) (x * 200 / w);
        p[1] = square ? 240 : (guint8) (y * 160 / h);
        p[2] = square ? 60 : (guint8) (90 + (x + y) % 40);
      }
  char *path = g_build_filename (dir, name, NULL);
  g_assert_cmpint (stbi_write_png (path, w, h, 3, px, w * 3), !=, 0);
  return path;
}

/* What the attention page must show for image_path under the window's backbone: the exact
 * crop the model sees, and its rollout (computed here with a model of our own). */
static void
assert_view_shows (VlWindow *win, const char *image_path)
{
  VlAttentionView *view = attention_view (win);
  g_autoptr(GError) error = NULL;
  g_autoptr(VlImage) img = vl_image_load (image_path, 0, &error);
  g_assert_no_error (error);
  g_autoptr(VlModel) m = vl_model_load (vl_window_get_backbone_path (win), &error);
  g_assert_no_error (error);
  VlPreprocess pp;
  vl_preprocess_from_model (m, &pp);
  g_autoptr(VlImage) want = vl_attention_crop_for_display (img, &pp);
  g_autoptr(VlImage) shown = vl_attention_view_get_image (view);
  g_assert_nonnull (shown);
  g_assert_cmpint (shown->width, ==, want->width);
  g_assert_cmpint (shown->height, ==, want->height);
  g_assert_cmpmem (shown->pixels, (gsize) shown->width * shown->height * 3, want->pixels,
                   (gsize) want->width * want->height * 3);

  /* the heatmap is this image's rollout under the pretrained backbone */
  g_assert_cmpint (vl_attention_view_get_mode (view), ==, VL_ATTN_MODE_ROLLOUT);
  g_autofree float *px = g_new (float, (gsize) pp.channels * pp.size * pp.size);
  vl_preprocess_eval (img, &pp, px);
  g_assert_true (vl_model_forward (m, px, 1, pp.size, pp.size, VL_FORWARD_CAPTURE_ATTN, &error));
  g_assert_no_error (error);
  const int T = vl_model_n_tokens_last (m);
  g_autofree float *roll = g_new (float, T);
  g_assert_true (vl_model_rollout (m, roll, &error));
  int gh = 0, gw = 0;
  vl_attention_view_get_grid (view, &gh, &gw);
  const int P = gh * gw;
  g_assert_cmpint (P, ==, T - vl_model_geometry (m)->n_prefix);
  g_autofree float *heat = g_new (float, P);
  /* beside a trained or a training model's maps, it is the reference side */
  VlWindowProbeState pf = vl_test_probe_state (win);
  gboolean beside = pf.now_attn != NULL || pf.live_attn != NULL;
  g_assert_true (vl_attention_view_get_heatmap (view, beside, heat));
  vl_test_assert_close ("probe rollout", heat, roll, P, 1e-6, 1e-4);
}

/* The view as drawn has both the image and a heatmap: many colours, not one flat fill. */
static void
assert_view_drawn (VlWindow *win)
{
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *png = g_build_filename (dir, "attention.png", NULL);
  g_autoptr(GError) error = NULL;
  g_assert_true (vl_attention_view_export_png (attention_view (win), png, 0, 0,
                                               &error));
  g_assert_no_error (error);
  g_autoptr(VlImage) drawn = vl_image_load (png, 3, &error);
  g_assert_no_error (error);
  g_autoptr(GHashTable) colours = g_hash_table_new (NULL, NULL);
  for (int i = 0; i < drawn->width * drawn->height; i++)
    {
      const uint8_t *p = drawn->pixels + (gsize) i * 3;
      g_hash_table_add (colours, GUINT_TO_POINTER ((p[0] << 16) | (p[1] << 8) | p[2]));
    }
  g_test_message ("attention view drawn %dx%d, %u colours", drawn->width, drawn->height,
                  g_hash_table_size (colours));
  g_assert_cmpuint (g_hash_table_size (colours), >, 64);
}

/* Drops files on a widget through its real GtkDropTarget (its "drop" signal). */
static gboolean
emit_drop_on (GtkWidget *widget, GFile *file)
{
  GtkDropTarget *target = NULL;
  g_autoptr(GListModel) controllers = gtk_widget_observe_controllers (widget);
  for (guint i = 0; i < g_list_model_get_n_items (controllers) && target == NULL; i++)
    {
      g_autoptr(GObject) c = g_list_model_get_item (controllers, i);
      if (GTK_IS_DROP_TARGET (c))
        target = GTK_DROP_TARGET (c);
    }
  g_assert_nonnull (target);
  GSList *list = g_slist_prepend (NULL, file);
  GValue value = G_VALUE_INIT;
  g_value_init (&value, GDK_TYPE_FILE_LIST);
  g_value_take_boxed (&value, gdk_file_list_new_from_list (list));
  g_slist_free (list);
  gboolean accepted = FALSE;
  g_signal_emit_by_name (target, "drop", &value, 10.0, 10.0, &accepted);
  g_value_unset (&value);
  return accepted;
}

static gboolean
emit_drop (VlWindow *win, GFile *file)
{
  return emit_drop_on (GTK_WIDGET (win), file);
}

/* A PNG dropped on the window becomes the probe: the attention page shows its crop with the
 * pretrained backbone's rollout; a second drop through the window's drop target replaces it. */
static void
test_probe_drop (void)
{
  VlWindow *win = new_window (TRUE);
  wait_for (win, has_pretrained_attention, 30, "the dataset's probes");
  wait_for (win, probe_idle, 30, "the probe file (none)");
  g_assert_null (vl_window_get_probe_path (win));   /* a dataset is open: no sample */
  g_assert_false (vl_test_probe_state (win).shown);
  g_autoptr(VlImage) before = vl_attention_view_get_image (attention_view (win));
  g_assert_nonnull (before);

  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *png = write_probe_png (dir, "dropped.png", 48, 40, 30, 6);
  g_autoptr(GFile) file = g_file_new_for_path (png);
  GSList *files = g_slist_prepend (NULL, file);
  GdkFileList *list = gdk_file_list_new_from_list (files);
  g_slist_free (files);
  GSList *dropped = gdk_file_list_get_files (list);
  g_assert_true (vl_window_drop_files (win, dropped));
  g_slist_free (dropped);
  g_boxed_free (GDK_TYPE_FILE_LIST, list);
  wait_for (win, probe_file_ready, 30, "the dropped image's attention");
  g_assert_cmpstr (vl_window_get_probe_path (win), ==, png);
  g_assert_true (vl_test_probe_state (win).shown);
  g_assert_false (vl_test_probe_state (win).is_sample);
  g_assert_cmpstr (gtk_stack_get_visible_child_name (main_stack (win)), ==,
                   "attention");
  /* the dataset's probes are still there, after the probe file's button */
  g_assert_cmpint (vl_window_get_n_probe_images (win), >, 0);
  int n_buttons = 0;
  for (GtkWidget *c = gtk_widget_get_first_child (vl_attention_bar_get_probe_box (vl_test_attention_bar (win))); c;
       c = gtk_widget_get_next_sibling (c))
    n_buttons++;
  g_assert_cmpint (n_buttons, ==, vl_window_get_n_probe_images (win) + 1);
  GtkWidget *first = gtk_widget_get_first_child (vl_attention_bar_get_probe_box (vl_test_attention_bar (win)));
  g_assert_true (gtk_toggle_button_get_active (GTK_TOGGLE_BUTTON (first)));
  assert_view_shows (win, png);
  assert_view_drawn (win);
  g_assert_false (banner_error_shown (win));

  /* through the drop target itself: another image replaces it */
  g_autofree char *png2 = write_probe_png (dir, "second.png", 32, 56, 2, 40);
  g_autoptr(GFile) file2 = g_file_new_for_path (png2);
  g_assert_true (emit_drop (win, file2));
  wait_for (win, probe_file_ready, 30, "the second image's attention");
  g_assert_cmpstr (vl_window_get_probe_path (win), ==, png2);
  assert_view_shows (win, png2);

  /* a dataset probe's button shows that probe; the probe file's button brings it back */
  GtkWidget *probe_box = vl_attention_bar_get_probe_box (vl_test_attention_bar (win));
  GtkWidget *second = gtk_widget_get_next_sibling (gtk_widget_get_first_child (probe_box));
  gtk_toggle_button_set_active (GTK_TOGGLE_BUTTON (second), TRUE);
  g_assert_false (vl_test_probe_state (win).shown);
  g_autoptr(VlImage) dataset_probe = vl_attention_view_get_image (attention_view (win));
  const VlImage *probe0 = vl_window_get_probe_image (win, 0);
  g_assert_cmpmem (dataset_probe->pixels, (gsize) dataset_probe->width * dataset_probe->height * 3,
                   probe0->pixels, (gsize) probe0->width * probe0->height * probe0->channels);
  gtk_toggle_button_set_active (GTK_TOGGLE_BUTTON (gtk_widget_get_first_child (probe_box)),
                                TRUE);
  g_assert_true (vl_test_probe_state (win).shown);
  assert_view_shows (win, png2);
  destroy_window (win);
}

/* A truncated or empty image: the banner names the file, the previous probe stays. */
static void
test_probe_bad_image (void)
{
  VlWindow *win = new_window (FALSE);
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *good = write_probe_png (dir, "good.png", 40, 40, 4, 4);
  vl_window_open_probe (win, good);
  wait_for (win, probe_file_ready, 30, "the good image's attention");
  g_assert_cmpstr (vl_window_get_probe_path (win), ==, good);
  g_autoptr(VlImage) before = vl_attention_view_get_image (attention_view (win));
  g_assert_nonnull (before);

  /* the first 100 bytes of a valid PNG, and an empty "JPEG" */
  g_autofree char *contents = NULL;
  gsize length = 0;
  g_assert_true (g_file_get_contents (good, &contents, &length, NULL));
  g_assert_cmpuint (length, >, 200);
  g_autofree char *truncated = g_build_filename (dir, "truncated.png", NULL);
  g_assert_true (g_file_set_contents (truncated, contents, 100, NULL));
  g_autofree char *empty = g_build_filename (dir, "empty.jpg", NULL);
  g_assert_true (g_file_set_contents (empty, "", 0, NULL));
  const char *bad[] = { truncated, empty };
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      gtk_info_bar_set_revealed (banner (win), FALSE);
      g_autoptr(GFile) file = g_file_new_for_path (bad[i]);
      g_assert_true (emit_drop (win, file));   /* taken as an image; decoding is what fails */
      wait_for (win, probe_idle, 30, "the bad image");
      g_assert_true (banner_error_shown (win));
      const char *text = banner_text (win);
      g_test_message ("banner: %s", text);
      g_autofree char *base = g_path_get_basename (bad[i]);
      g_assert_nonnull (strstr (text, base));
      /* the previous probe, untouched */
      g_assert_cmpstr (vl_window_get_probe_path (win), ==, good);
      g_assert_true (vl_test_probe_state (win).shown);
      g_autoptr(VlImage) after = vl_attention_view_get_image (attention_view (win));
      g_assert_nonnull (after);
      g_assert_cmpmem (after->pixels, (gsize) after->width * after->height * 3, before->pixels,
                       (gsize) before->width * before->height * 3);
      assert_view_shows (win, good);
    }
  /* a file that is neither an image nor anything else the window opens */
  g_autofree char *notes = g_build_filename (dir, "notes.txt", NULL);
  g_assert_true (g_file_set_contents (notes, "plain text, not a picture\n", -1, NULL));
  g_autoptr(GFile) nf = g_file_new_for_path (notes);
  GSList *files = g_slist_prepend (NULL, nf);
  g_assert_false (vl_window_drop_files (win, files));
  g_slist_free (files);
  g_assert_true (banner_error_shown (win));
  g_assert_nonnull (strstr (banner_text (win), "notes.txt"));
  g_assert_cmpstr (vl_window_get_probe_path (win), ==, good);
  destroy_window (win);
}

static int
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

/* The first shipped sample (data/samples, in name order) as written there. */
static char *
first_shipped_sample (void)
{
  g_autofree char *dir = g_test_build_filename (G_TEST_DIST, "..", "data", "samples", NULL);
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
  g_assert_nonnull (d);
  g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  const char *name;
  while ((name = g_dir_read_name (d)))
    if (g_str_has_suffix (name, ".png"))
      g_ptr_array_add (names, g_strdup (name));
  g_assert_cmpuint (names->len, >, 0);
  g_ptr_array_sort (names, compare_names);
  return g_build_filename (dir, g_ptr_array_index (names, 0), NULL);
}

/* A backbone and no dataset: the attention page shows the first shipped sample; the dataset's
 * probes replace it once they arrive. */
static void
test_probe_sample (void)
{
  VlWindow *win = new_window (FALSE);
  g_assert_null (vl_window_get_data (win));
  wait_for (win, probe_file_ready, 30, "the sample's attention");
  g_autofree char *want = first_shipped_sample ();
  g_autofree char *want_base = g_path_get_basename (want);
  g_autofree char *got_base = g_path_get_basename (vl_window_get_probe_path (win));
  g_assert_cmpstr (got_base, ==, "0-t-shirt-top-0.png");
  g_assert_cmpstr (got_base, ==, want_base);
  g_assert_true (vl_test_probe_state (win).is_sample);
  g_assert_true (vl_test_probe_state (win).shown);
  assert_view_shows (win, want);
  assert_view_drawn (win);

  g_assert_true (action_s (win, "win.load-data", dataset_dir));
  wait_for (win, loaded, 30, "the dataset");
  wait_for (win, has_pretrained_attention, 30, "the dataset's probes");
  g_assert_null (vl_window_get_probe_path (win));
  g_assert_false (vl_test_probe_state (win).shown);
  g_autoptr(VlImage) shown = vl_attention_view_get_image (attention_view (win));
  const VlImage *probe0 = vl_window_get_probe_image (win, 0);
  g_assert_cmpmem (shown->pixels, (gsize) shown->width * shown->height * 3,
                   probe0->pixels, (gsize) probe0->width * probe0->height * probe0->channels);
  destroy_window (win);
}

static const char *live_path;   /* the probe file probe_file_live waits for */
static int64_t live_after;      /* ... with a map of a later step than this */

static gboolean
probe_file_live (VlWindow *win)
{
  VlWindowProbeState pf = vl_test_probe_state (win);
  return !pf.busy && g_strcmp0 (pf.path, live_path) == 0 &&
         pf.live_attn != NULL && pf.live_step > live_after;
}

/* The largest difference between the view's two sides (the current mode's maps). */
static double
sides_differ (VlWindow *win)
{
  VlAttentionView *view = attention_view (win);
  float now[16], ref[16];
  int gh = 0, gw = 0;
  vl_attention_view_get_grid (view, &gh, &gw);
  g_assert_cmpint (gh * gw, ==, 16);
  g_assert_true (vl_attention_view_get_heatmap (view, FALSE, now));
  g_assert_true (vl_attention_view_get_heatmap (view, TRUE, ref));
  double d = 0;
  for (int i = 0; i < 16; i++)
    d = MAX (d, fabs (now[i] - ref[i]));
  return d;
}

/* The view shows the probe file with the run's map at live_step beside the pretrained one. */
static void
assert_live_shown (VlWindow *win, const char *png)
{
  VlAttentionView *view = attention_view (win);
  g_assert_true (vl_test_probe_state (win).shown);
  assert_view_shows (win, png);   /* its crop; the reference is its pretrained rollout */
  g_autofree char *label = NULL;
  g_object_get (view, "label", &label, NULL);
  g_autofree char *want = g_strdup_printf ("step %" G_GINT64_FORMAT,
                                           vl_test_probe_state (win).live_step);
  g_assert_cmpstr (label, ==, want);
  /* the "now" side is the rollout of the event's attention */
  float heat[16];
  g_assert_true (vl_attention_view_get_heatmap (view, FALSE, heat));
  double mass = 0;
  for (int i = 0; i < 16; i++)
    {
      g_assert_cmpfloat (heat[i], >=, 0);
      mass += heat[i];
    }
  g_assert_cmpfloat (mass, >, 0);
  g_assert_cmpfloat (mass, <=, 1.0 + 1e-5);
  g_assert_nonnull (vl_test_probe_state (win).live_class);
}

/* Opened before a run: the run takes it along, its "now" side is the run's (a linear probe:
 * the backbone, so the attention, does not move), then the fine-tuned model's. */
static void
test_probe_fine_tuned (void)
{
  VlWindow *win = new_window (TRUE);
  wait_for (win, has_pretrained_attention, 30, "the dataset's probes");
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *png = write_probe_png (dir, "probe.png", 40, 40, 20, 20);
  vl_window_open_probe (win, png);
  wait_for (win, probe_file_ready, 30, "the probe file");
  g_assert_null (vl_test_probe_state (win).now_attn);
  float heat[16];
  g_assert_false (vl_attention_view_get_heatmap (attention_view (win), TRUE, heat));

  /* a linear probe whatever preset an earlier test left in the settings (a progressive
   * schedule would unlock blocks in the second epoch, and the maps would move) */
  g_signal_emit_by_name (vl_test_training_panel (win), "preset-chosen", 0);   /* linear probe */
  quick_settings (win, 500);          /* long enough to look at it while it runs */
  g_assert_true (action (win, "win.train"));
  g_assert_true (running (win));
  wait_for (win, has_run_attention, 60, "the run's attention maps");
  /* the run's PROBES events leave the probe file in the view, with its own map beside; paused,
   * so that the run cannot end (and hand over to the fine-tuned side) while we look */
  wait_for (win, has_points, 60, "training steps");
  g_assert_true (action (win, "win.pause"));
  wait_for (win, is_paused, 30, "the pause");
  live_path = png;
  live_after = -1;
  wait_for (win, probe_file_live, 60, "the probe file's map from the run");
  assert_live_shown (win, png);
  g_assert_cmpint (vl_test_probe_state (win).live_step, >, 0);
  g_assert_cmpfloat (sides_differ (win), <, 1e-6);
  g_assert_true (action (win, "win.stop"));
  wait_for (win, finished, 120, "the end of the run");
  wait_for (win, probe_file_fine_tuned, 60, "the probe file under the trained model");
  g_assert_cmpstr (vl_window_get_probe_path (win), ==, png);
  VlAttentionView *view = attention_view (win);
  /* both sides: the reference is the pretrained rollout (checked against the engine) */
  assert_view_shows (win, png);
  g_assert_true (vl_attention_view_get_heatmap (view, FALSE, heat));
  double sum = 0;
  for (int i = 0; i < 16; i++)
    sum += heat[i];
  g_assert_cmpfloat (sum, >, 0);
  g_assert_nonnull (vl_test_probe_state (win).now_class);
  g_assert_true (g_str_equal (vl_test_probe_state (win).now_class, "reds") ||
                 g_str_equal (vl_test_probe_state (win).now_class, "blues"));
  assert_view_drawn (win);
  destroy_window (win);
}

/* An image dropped during a run gets the run's "now" attention beside the pretrained one,
 * updated as it trains: dropped while training, then another one while paused; after the run,
 * the fine-tuned side is the model the last live map came from. */
static void
test_probe_live (void)
{
  VlWindow *win = new_window (TRUE);
  wait_for (win, has_pretrained_attention, 30, "the dataset's probes");
  /* every group: attention moves */
  g_object_set (vl_test_groups_panel (win), "unlock",
                vl_model_n_groups (vl_window_get_model (win)), NULL);
  quick_settings (win, 500);   /* 2000 steps: stopped below */
  g_assert_true (action (win, "win.train"));
  wait_for (win, has_points, 60, "training steps");
  g_assert_null (vl_window_get_probe_path (win));

  /* dropped while it trains */
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *png = write_probe_png (dir, "live.png", 40, 40, 20, 4);
  g_autoptr(GFile) file = g_file_new_for_path (png);
  g_assert_true (emit_drop (win, file));
  live_path = png;
  live_after = 0;
  wait_for (win, probe_file_live, 60, "the dropped image's attention from the run");
  g_assert_true (running (win));
  g_assert_cmpint (vl_test_probe_state (win).live_serial, >, 0);
  assert_live_shown (win, png);
  int64_t first_step = vl_test_probe_state (win).live_step;
  g_test_message ("first live map at step %" G_GINT64_FORMAT, first_step);

  /* it follows the training, and the main loop stays responsive while the maps arrive (the
   * checks run on it, so they are left out) */
  live_after = first_step + 40;
  Probe probe;
  probe_start (&probe);
  wait_for (win, probe_file_live, 60, "a later map of the dropped image");
  probe_stop (&probe);
  g_assert_true (running (win));
  assert_live_shown (win, png);
  double moved = sides_differ (win);
  g_test_message ("step %" G_GINT64_FORMAT ": now vs pretrained, max difference %.4f",
                  vl_test_probe_state (win).live_step, moved);
  g_assert_cmpfloat (moved, >, 1e-3);

  /* another image while paused: the paused worker computes it at once */
  g_assert_true (action (win, "win.pause"));
  wait_for (win, is_paused, 30, "the pause");
  g_autofree char *png2 = write_probe_png (dir, "paused.png", 48, 40, 6, 24);
  g_autoptr(GFile) file2 = g_file_new_for_path (png2);
  GSList *files = g_slist_prepend (NULL, file2);
  g_assert_true (vl_window_drop_files (win, files));
  g_slist_free (files);
  live_path = png2;
  live_after = 0;
  wait_for (win, probe_file_live, 60, "the second image's attention while paused");
  g_assert_true (vl_window_is_paused (win));
  g_assert_cmpint (vl_test_probe_state (win).live_step, ==, vl_window_get_steps_done (win));
  assert_live_shown (win, png2);
  g_assert_cmpfloat (sides_differ (win), >, 1e-3);
  gsize per = vl_test_probe_state (win).attn_len;
  g_autofree float *live = g_memdup2 (vl_test_probe_state (win).live_attn, sizeof (float) * per);

  /* stopped while paused: the trained model is the one of that map, as its fine-tuned side */
  g_assert_true (action (win, "win.stop"));
  wait_for (win, finished, 60, "the stop");
  g_assert_cmpint (vl_window_get_last_end (win), ==, VL_TRAIN_END_STOPPED);
  wait_for (win, probe_file_fine_tuned, 60, "the probe file under the trained model");
  g_assert_cmpstr (vl_window_get_probe_path (win), ==, png2);
  vl_test_assert_close ("live vs fine-tuned attention", vl_test_probe_state (win).now_attn, live,
                        per, 1e-5, 1e-4);
  assert_view_shows (win, png2);
  g_autofree char *label = NULL;
  g_object_get (vl_test_child (win, "attention"), "label", &label, NULL);
  g_assert_cmpstr (label, ==, "fine-tuned");
  g_assert_cmpfloat (sides_differ (win), >, 1e-3);
  destroy_window (win);
}

/* An image folder with train/ and val/ splits of n flat-coloured classes. */
static char *
write_n_class_dataset (int n)
{
  char *dir = vl_test_tmpdir ();
  const char *splits[] = { "train", "val" };
  for (int s = 0; s < 2; s++)
    for (int k = 0; k < n; k++)
      {
        g_autofree char *cdir = g_strdup_printf ("%s/%s/c%d", dir, splits[s], k);
        g_assert_cmpint (g_mkdir_with_parents (cdir, 0755), ==, 0);
        for (int i = 0; i < (s == 0 ? 4 : 2); i++)
          {
            guint8 px[40 * 40 * 3];
            for (int p = 0; p < 40 * 40; p++)
              {
                px[p * 3 + 0] = (guint8) (k * 40 + i);
                px[p * 3 + 1] = (guint8) (255 - k * 40);
                px[p * 3 + 2] = (guint8) (p % 40 * 6);
              }
            g_autofree char *path = g_strdup_printf ("%s/%d.png", cdir, i);
            g_assert_cmpint (stbi_write_png (path, 40, 40, 3, px, 40 * 3), !=, 0);
          }
      }
  return dir;
}

/* Runs the app with --screenshot and arguments that cannot load: it must exit within a minute
 * with status 1, the error on stderr and the shot (showing the error banner) written. */
static void
screenshot_of_failure (const char *backbone, const char *data, const char *expect)
{
  g_autofree char *app_path = g_test_build_filename (G_TEST_BUILT, "..", "app", "vitlab", NULL);
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *png = g_build_filename (dir, "shot.png", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (GSubprocessLauncher) l = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_SILENCE |
                                                                 G_SUBPROCESS_FLAGS_STDERR_PIPE);
  g_subprocess_launcher_unsetenv (l, "DBUS_SESSION_BUS_ADDRESS");
  /* timeout(1) ends a run that never exits (status 124) */
  g_autoptr (GSubprocess) p = g_subprocess_launcher_spawn (l, &error, "timeout", "60", app_path,
                                                           "--backbone", backbone, "--data", data,
                                                           "--screenshot", png, NULL);
  g_assert_no_error (error);
  g_autofree char *err = NULL;
  g_assert_true (g_subprocess_communicate_utf8 (p, NULL, NULL, NULL, &err, &error));
  g_assert_no_error (error);
  g_assert_true (g_subprocess_wait (p, NULL, NULL));
  g_test_message ("%s", err);
  g_assert_true (g_subprocess_get_if_exited (p));
  g_assert_cmpint (g_subprocess_get_exit_status (p), ==, 1);
  g_assert_nonnull (strstr (err, expect));
  g_assert_true (g_file_test (png, G_FILE_TEST_IS_REGULAR));
}

static void
test_screenshot_load_failed (void)
{
  g_autofree char *backbone = fixture_backbone ();
  g_autofree char *missing = g_build_filename (dataset_dir, "no-such-thing", NULL);
  screenshot_of_failure (missing, dataset_dir, "no-such-thing");
  screenshot_of_failure (backbone, missing, "no-such-thing");
}

/* Top-5 accuracy shows only with more than five classes: with five it is always 100 %. */
static void
test_top5 (void)
{
  for (int n = 5; n <= 6; n++)
    {
      VlWindow *win = new_window (FALSE);
      g_autofree char *dir = write_n_class_dataset (n);
      g_assert_true (action_s (win, "win.load-data", dir));
      wait_for (win, loaded, 30, "the dataset");
      quick_settings (win, 1);
      g_assert_true (action (win, "win.train"));
      wait_for (win, finished, 120, "the run");
      g_assert_cmpint (vl_window_get_last_end (win), ==, VL_TRAIN_END_COMPLETED);
      const char *acc = vl_stat_cards_get (vl_test_stat_cards (win), VL_STAT_SCORE);
      const char *acc5 = vl_stat_cards_get_detail (vl_test_stat_cards (win), VL_STAT_SCORE);
      const char *summary = vl_eval_card_get_summary (vl_test_eval_card (win));
      g_test_message ("%d classes: \"%s\" over \"%s\", \"%s\"", n, acc, acc5, summary);
      g_assert_true (g_str_has_suffix (acc, "%"));
      g_assert_true ((strstr (acc5, "top-5") != NULL) == (n > 5));
      /* the Training card: how many groups, under it which and their parameters */
      const char *groups = vl_stat_cards_get (vl_test_stat_cards (win), VL_STAT_TRAINING);
      const char *which = vl_stat_cards_get_detail (vl_test_stat_cards (win), VL_STAT_TRAINING);
      g_test_message ("Training: \"%s\" over \"%s\"", groups, which);
      g_assert_true (g_str_has_suffix (groups, " group") || g_str_has_suffix (groups, " groups"));
      g_assert_true (g_str_has_prefix (which, "the last ") || g_str_has_prefix (which, "all "));
      g_assert_true ((strstr (summary, "top-5") != NULL) == (n > 5));
      destroy_window (win);
    }
}

/* A run opened over a dataset of other classes: the run's own dataset replaces it and the
 * gallery's predictions come from it, with no stale "the model has N classes" banner. */
static void
test_open_run_over_other_data (void)
{
  if (trained_run_dir == NULL)
    {
      g_test_skip ("needs /ui/window/train");
      return;
    }
  VlWindow *win = new_window (FALSE);
  g_autofree char *dir = write_n_class_dataset (5);
  g_assert_true (action_s (win, "win.load-data", dir));
  wait_for (win, loaded, 30, "the five-class dataset");
  g_assert_cmpint (vl_dataset_n_classes (vl_window_get_data (win)->ds), ==, 5);
  vl_window_open_run (win, trained_run_dir);
  wait_for (win, run_opened, 30, "the run");
  wait_for (win, has_predictions, 60, "the predictions of the opened run");
  g_assert_cmpint (vl_dataset_n_classes (vl_window_get_data (win)->ds), ==, 2);
  spin_for (0.3);
  if (gtk_info_bar_get_revealed (banner (win)))
    g_assert_cmpint (gtk_info_bar_get_message_type (banner (win)), !=,
                     GTK_MESSAGE_ERROR);
  destroy_window (win);
}

static void
test_dark (void)
{
  VlWindow *win = vl_window_new (GTK_APPLICATION (app));
  gboolean dark;
  g_assert_true (action (win, "win.dark"));
  g_object_get (gtk_settings_get_default (), "gtk-application-prefer-dark-theme", &dark, NULL);
  g_assert_true (dark);
  g_assert_true (action (win, "win.dark"));
  g_object_get (gtk_settings_get_default (), "gtk-application-prefer-dark-theme", &dark, NULL);
  g_assert_false (dark);

  /* its shortcut is one no other binding of the window (GtkWindow's Inspector on Ctrl+Shift+D
   * and Ctrl+Shift+I among them) shares, and the button's tooltip names it */
  guint dark_key = 0;
  GdkModifierType dark_mods = 0;
  GPtrArray *others = g_ptr_array_new_with_free_func (g_object_unref);
  GListModel *controllers = gtk_widget_observe_controllers (GTK_WIDGET (win));
  for (guint i = 0; i < g_list_model_get_n_items (controllers); i++)
    {
      g_autoptr (GObject) c = g_list_model_get_item (controllers, i);
      if (!GTK_IS_SHORTCUT_CONTROLLER (c))
        continue;
      for (guint j = 0; j < g_list_model_get_n_items (G_LIST_MODEL (c)); j++)
        {
          GtkShortcut *sc = g_list_model_get_item (G_LIST_MODEL (c), j);
          GtkShortcutAction *a = gtk_shortcut_get_action (sc);
          GtkShortcutTrigger *t = gtk_shortcut_get_trigger (sc);
          if (GTK_IS_NAMED_ACTION (a) &&
              g_strcmp0 (gtk_named_action_get_action_name (GTK_NAMED_ACTION (a)), "win.dark") == 0)
            {
              g_assert_true (GTK_IS_KEYVAL_TRIGGER (t));
              dark_key = gtk_keyval_trigger_get_keyval (GTK_KEYVAL_TRIGGER (t));
              dark_mods = gtk_keyval_trigger_get_modifiers (GTK_KEYVAL_TRIGGER (t));
              g_object_unref (sc);
            }
          else
            g_ptr_array_add (others, sc);
        }
    }
  g_object_unref (controllers);
  g_assert_cmpuint (dark_key, !=, 0);
  guint n_inspector = 0;
  for (guint i = 0; i < others->len; i++)
    {
      GtkShortcutTrigger *t = gtk_shortcut_get_trigger (g_ptr_array_index (others, i));
      if (!GTK_IS_KEYVAL_TRIGGER (t))
        continue;
      guint key = gdk_keyval_to_lower (gtk_keyval_trigger_get_keyval (GTK_KEYVAL_TRIGGER (t)));
      GdkModifierType mods = gtk_keyval_trigger_get_modifiers (GTK_KEYVAL_TRIGGER (t));
      if (mods == (GDK_CONTROL_MASK | GDK_SHIFT_MASK) && (key == GDK_KEY_d || key == GDK_KEY_i))
        n_inspector++;
      g_assert_false (key == gdk_keyval_to_lower (dark_key) && mods == dark_mods);
    }
  g_assert_cmpuint (n_inspector, >=, 2);   /* the check above saw GtkWindow's bindings */
  g_ptr_array_unref (others);
  g_autofree char *shown = g_strdup_printf ("%s%s%s", dark_mods & GDK_CONTROL_MASK ? "Ctrl+" : "",
                                            dark_mods & GDK_SHIFT_MASK ? "Shift+" : "",
                                            gdk_keyval_name (gdk_keyval_to_upper (dark_key)));
  GtkWidget *dark_button = vl_test_child (win, "dark_button");
  g_assert_nonnull (strstr (gtk_widget_get_tooltip_text (dark_button), shown));
  destroy_window (win);
}

/* The backbone panel's stem choice: a new conv stem switches the stem's group on beside the
 * head (the transformer frozen), goes into the run's configuration, and the trained model has
 * it (the run folder's model.safetensors loads back with a conv stem). */
static void
test_stem (void)
{
  VlWindow *win = new_window (TRUE);
  g_object_set (vl_test_training_panel (win), "preset", VL_PRESET_LINEAR_PROBE, NULL);
  quick_settings (win, 2);
  g_assert_cmpint (vl_backbone_panel_get_stem (vl_test_backbone_panel (win)), ==, VL_STEM_PATCH);
  g_assert_nonnull (strstr (vl_backbone_panel_get_stem_note (vl_test_backbone_panel (win)),
                            "patch embedding"));
  g_assert_cmpint (vl_groups_panel_unlocked_suffix (vl_test_groups_panel (win)), ==, 1);   /* the linear probe */
  g_object_set (vl_test_backbone_panel (win), "stem", VL_STEM_CONV, NULL);
  g_assert_cmpint (vl_backbone_panel_get_stem (vl_test_backbone_panel (win)), ==, VL_STEM_CONV);
  const char *note = vl_backbone_panel_get_stem_note (vl_test_backbone_panel (win));
  g_assert_nonnull (strstr (note, "conv stem"));
  g_assert_nonnull (strstr (note, "4 x 4 grid"));   /* 32 px at patch 8 */
  const int n = vl_model_n_groups (vl_window_get_model (win));
  for (int g = 0; g < n; g++)
    g_assert_cmpint (vl_model_group_trainable (vl_window_get_model (win), g), ==,
                     g == 0 || g == n - 1);
  VlTrainConfig c;
  vl_window_config_from_ui (win, &c);
  g_assert_cmpint (c.stem, ==, VL_STEM_CONV);
  g_assert_cmphex (c.unlock_mask, ==, 1u | (1u << (n - 1)));
  vl_train_config_clear (&c);
  g_assert_true (action (win, "win.train"));
  wait_for (win, finished, 120, "the end of the run");
  g_assert_cmpint (vl_window_get_last_end (win), ==, VL_TRAIN_END_COMPLETED);
  g_autoptr(GError) error = NULL;
  g_autoptr(VlModel) m = vl_run_load_model (vl_window_get_run_dir (win), NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (vl_model_stem_kind (m), ==, VL_STEM_CONV);
  destroy_window (win);
}

/* What the window's parts hear of each other (ui/window/vl-window-private.h): a loaded backbone,
 * an opened dataset and the probe file's maps are each announced once, by the window's own
 * signals; by the time a handler connected after the parts' runs, they have taken it in (the
 * probes chosen and their pretrained attention started); a dataset that fails to open is not
 * announced. */
typedef struct {
  int backbone, dataset, probes;
  gboolean data_in, attention_started, probes_chosen;
} Heard;

static void
heard_backbone (VlWindow *win, Heard *h)
{
  h->backbone++;
}

static void
heard_dataset (VlWindow *win, Heard *h)
{
  h->dataset++;
  h->data_in = vl_window_get_data (win) != NULL;
  h->probes_chosen = vl_window_get_n_probes (win) > 0;
  h->attention_started = vl_window_attention_busy (win);
}

static void
heard_probes (VlWindow *win, Heard *h)
{
  h->probes++;
}

static void
test_parts_signals (void)
{
  VlWindow *win = vl_window_new (GTK_APPLICATION (app));
  gtk_window_present (GTK_WINDOW (win));
  Heard h = { 0 };
  g_signal_connect (win, "backbone-changed", G_CALLBACK (heard_backbone), &h);
  g_signal_connect (win, "dataset-changed", G_CALLBACK (heard_dataset), &h);
  g_signal_connect (win, "probes-changed", G_CALLBACK (heard_probes), &h);
  g_autofree char *backbone = fixture_backbone ();
  g_assert_true (action_s (win, "win.load-backbone", backbone));
  wait_for (win, loaded, 30, "the backbone");
  g_assert_cmpint (h.backbone, ==, 1);
  g_assert_cmpint (h.dataset, ==, 0);

  g_assert_true (action_s (win, "win.load-data", dataset_dir));
  wait_for (win, loaded, 30, "the dataset");
  g_assert_cmpint (h.dataset, ==, 1);
  g_assert_true (h.data_in);
  g_assert_true (h.probes_chosen);
  g_assert_true (h.attention_started);
  wait_for (win, has_pretrained_attention, 30, "the dataset's probes");

  /* a folder that is no dataset: the banner, and nothing announced */
  g_autofree char *tmp = vl_test_tmpdir ();
  g_autofree char *empty = g_build_filename (tmp, "empty", NULL);
  g_assert_cmpint (g_mkdir_with_parents (empty, 0755), ==, 0);
  g_assert_true (action_s (win, "win.load-data", empty));
  wait_for (win, loaded, 30, "the failed dataset");
  g_assert_cmpint (h.dataset, ==, 1);
  g_assert_cmpint (h.backbone, ==, 1);

  int before = h.probes;
  g_autofree char *png = write_probe_png (tmp, "probe.png", 40, 40, 20, 20);
  vl_window_open_probe (win, png);
  wait_for (win, probe_file_ready, 30, "the probe file");
  g_assert_cmpint (h.probes, ==, before + 1);
  g_signal_handlers_disconnect_by_data (win, &h);
  destroy_window (win);
}

int
main (int argc, char **argv)
{
  /* the software GL renderer under Xvfb is slow enough to starve the main loop on two busy
   * cores; cairo is what a headless test wants */
  g_setenv ("GSK_RENDERER", "cairo", FALSE);
  g_setenv ("GTK_A11Y", "none", TRUE);   /* no accessibility bus on the private session bus */
  g_setenv ("GSETTINGS_BACKEND", "memory", TRUE);
  g_autofree char *xdg = vl_test_tmpdir ();
  g_setenv ("XDG_DATA_HOME", xdg, TRUE);
  g_test_init (&argc, &argv, NULL);
  /* GTestDBus unsets DISPLAY (against X11 autolaunch): keep Xvfb's */
  g_autofree char *display = g_strdup (g_getenv ("DISPLAY"));
  GTestDBus *bus = g_test_dbus_new (G_TEST_DBUS_NONE);
  g_test_dbus_up (bus);
  if (display)
    g_setenv ("DISPLAY", display, TRUE);
  gtk_init ();

  write_dataset ();
  app = vl_application_new ();
  g_assert_true (g_application_register (G_APPLICATION (app), NULL, NULL));
  g_application_hold (G_APPLICATION (app));

  g_test_add_func ("/ui/window/startup", test_startup);
  g_test_add_func ("/ui/window/bad-backbone", test_bad_backbone);
  g_test_add_func ("/ui/window/groups", test_groups);
  g_test_add_func ("/ui/window/heads", test_heads);
  g_test_add_func ("/ui/window/data-panel", test_data_panel);
  g_test_add_func ("/ui/window/presets", test_presets);
  g_test_add_func ("/ui/window/train", test_train);
  g_test_add_func ("/ui/window/stem", test_stem);
  g_test_add_func ("/ui/window/regression", test_regression);
  g_test_add_func ("/ui/window/pause-stop-resume", test_pause_stop_resume);
  g_test_add_func ("/ui/window/close-during-training", test_close_during_training);
  g_test_add_func ("/ui/window/open-run", test_open_run);
  g_test_add_func ("/ui/window/features/knn", test_features_knn);
  g_test_add_func ("/ui/window/features/try", test_features_try);
  g_test_add_func ("/ui/window/top5", test_top5);
  g_test_add_func ("/ui/window/open-run-over-other-data", test_open_run_over_other_data);
  g_test_add_func ("/ui/window/screenshot-load-failed", test_screenshot_load_failed);
  g_test_add_func ("/ui/window/dark", test_dark);
  g_test_add_func ("/ui/window/probe/drop", test_probe_drop);
  g_test_add_func ("/ui/window/probe/bad-image", test_probe_bad_image);
  g_test_add_func ("/ui/window/probe/sample", test_probe_sample);
  g_test_add_func ("/ui/window/probe/fine-tuned", test_probe_fine_tuned);
  g_test_add_func ("/ui/window/probe/live", test_probe_live);
  g_test_add_func ("/ui/window/parts-signals", test_parts_signals);
  int rc = g_test_run ();

  g_application_release (G_APPLICATION (app));
  g_clear_object (&app);
  /* stop, not down: GTK keeps its session-bus connection until exit */
  g_test_dbus_stop (bus);
  g_free (dataset_dir);
  g_free (trained_run_dir);
  return rc;
}
