/* test-det-window.c: detection in the app under Xvfb.
 *
 * The detection panel alone (it applies to detection only; the boxes drawn and the missed and
 * false ones counted at two thresholds against vl_det_match's; its threshold property, the box
 * view's and the slider agree; the worst strip's ::item-activated); a detection run in the window
 * on the shipped Fashion-MNIST backbone and small fashion-mnist-scenes, opened as segmentation
 * and turned to boxes by choosing Detection in the head panel (the data read again with boxes,
 * the FCOS head's note), trained through win.train: the AP50 bars per object class, the loss
 * chart's validation AP50, the box view's boxes equal to the trained model's own detections of
 * that image recomputed here (at two thresholds), a worst image opened from the strip, the
 * window within 1366x768; the run folder opened again in a new window (its FCOS head loaded:
 * the same boxes); the boxes demo from the Demos menu's action; and a YOLO folder written here,
 * which the data panel opens as detection by itself. */
#include "vl-test-util.h"
#include "vl-test-window.h"
#include "vl-box-view.h"
#include "vl-class-bars.h"
#include "vl-data-panel.h"
#include "vl-dataset.h"
#include "vl-det-panel.h"
#include "vl-groups-panel.h"
#include "vl-head-panel.h"
#include "vl-image.h"
#include "vl-loss-chart.h"
#include "vl-mask-view.h"
#include "vl-preset.h"
#include "vl-task-view.h"
#include "vl-training-panel.h"
#include "vl-try-panel.h"

#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

static char *run_dir;   /* the finished run of /ui/det/train, opened by /ui/det/open-run */

#define SCENES "fashion-mnist-scenes:train=64,val=24,size=48,classes=0-2"

static gboolean
have_boxes (VlWindow *win)
{
  return vl_window_has_det_predictions (win) && !vl_window_predictions_busy (win);
}

static gboolean
is_detection_data (VlWindow *win)
{
  VlDataRef *data = vl_window_get_data (win);
  return vl_test_window_loaded (win) && data && vl_dataset_is_detection (data->ds);
}

/* ------------------------------------------------------------------ the panel alone */

static int activated_item;

static void
on_activated (VlDetPanel *panel, int item, gpointer data)
{
  activated_item = item;
}

/* What the box view counts at its threshold, against vl_det_match on the same boxes. */
static void
check_counts (VlBoxView *view, const VlCocoBox *gt, int n_gt, const VlCocoBox *dt, int n_dt)
{
  float t = (float) vl_box_view_get_score_threshold (view);
  g_autofree gboolean *dm = g_new0 (gboolean, MAX (n_dt, 1));
  g_autofree gboolean *gm = g_new0 (gboolean, MAX (n_gt, 1));
  vl_det_match (dm, gm, gt, n_gt, dt, n_dt, t, 0.5f);
  int shown = 0, missed = 0, false_pos = 0;
  for (int i = 0; i < n_dt; i++)
    if (dt[i].score >= t)
      {
        shown++;
        false_pos += !dm[i];
      }
  for (int g = 0; g < n_gt; g++)
    missed += !gm[g];
  int s, m, f;
  vl_box_view_get_counts (view, &s, &m, &f);
  g_test_message ("threshold %.2f: %d shown, %d missed, %d false", t, s, m, f);
  g_assert_cmpint (s, ==, shown);
  g_assert_cmpint (m, ==, missed);
  g_assert_cmpint (f, ==, false_pos);
}

static void
test_panel (void)
{
  GtkWidget *window = gtk_window_new ();
  VlDetPanel *panel = VL_DET_PANEL (vl_det_panel_new ());
  gtk_window_set_child (GTK_WINDOW (window), GTK_WIDGET (panel));
  gtk_window_present (GTK_WINDOW (window));
  g_assert_true (vl_task_view_applies_to (VL_TASK_VIEW (panel), VL_TASK_DETECT));
  g_assert_false (vl_task_view_applies_to (VL_TASK_VIEW (panel), VL_TASK_SEGMENT));
  g_assert_false (vl_task_view_applies_to (VL_TASK_VIEW (panel), VL_TASK_CLASSIFY));
  const char *names[] = { "background", "cat", "dog", NULL };
  vl_det_panel_set_classes (panel, names);
  const VlCocoBox gt[] = { { 0, 1, { 10, 10, 50, 50 }, 0 }, { 0, 2, { 60, 20, 90, 70 }, 0 } };
  const VlCocoBox dt[] = {
    { 0, 1, { 12, 11, 49, 52 }, 0.9f },   /* matches the cat */
    { 0, 2, { 0, 0, 20, 20 }, 0.6f },     /* a false dog */
    { 0, 2, { 61, 22, 88, 69 }, 0.2f },   /* the dog, under 0.3 */
  };
  g_autoptr(GdkTexture) tex = NULL;
  {
    g_autoptr(VlImage) img = vl_image_new (50, 40, 3);
    memset (img->pixels, 120, 50 * 40 * 3);
    tex = vl_mask_texture (img, NULL, 0);
  }
  vl_det_panel_set_sample (panel, 5, tex, 100, 80, gt, 2, dt, 3, "x.jpg");
  g_assert_cmpint (vl_det_panel_get_item (panel), ==, 5);
  VlBoxView *view = VL_BOX_VIEW (vl_det_panel_get_box_view (panel));
  g_assert_cmpfloat (vl_det_panel_get_score_threshold (panel), ==, VL_DET_PANEL_SCORE);
  check_counts (view, gt, 2, dt, 3);
  g_object_set (panel, "score-threshold", 0.3, NULL);
  check_counts (view, gt, 2, dt, 3);
  int s, m, f;
  vl_box_view_get_counts (view, &s, &m, &f);
  g_assert_cmpint (s, ==, 2);
  g_assert_cmpint (m, ==, 1);   /* the dog's detection scores 0.2 */
  g_assert_cmpint (f, ==, 1);
  /* the property moves the view's threshold; the view's moves the panel's */
  g_object_set (panel, "score-threshold", 0.1, NULL);
  g_assert_cmpfloat (vl_box_view_get_score_threshold (view), ==, 0.1);
  check_counts (view, gt, 2, dt, 3);
  vl_box_view_get_counts (view, &s, &m, &f);
  g_assert_cmpint (m, ==, 0);
  vl_box_view_set_score_threshold (view, 0.7);
  double t = 0;
  g_object_get (panel, "score-threshold", &t, NULL);
  g_assert_cmpfloat (t, ==, 0.7);
  check_counts (view, gt, 2, dt, 3);

  const int items[] = { 9, 4 };
  GdkTexture *thumbs[] = { tex, NULL };
  const char *captions[] = { "2 missed\n0 false", "0 missed\n1 false" };
  vl_det_panel_set_worst (panel, 2, items, thumbs, captions);
  g_assert_cmpint (vl_det_panel_get_n_worst (panel), ==, 2);
  g_assert_cmpint (vl_det_panel_get_worst_item (panel, 1), ==, 4);
  g_signal_connect (panel, "item-activated", G_CALLBACK (on_activated), NULL);
  activated_item = -1;
  vl_det_panel_activate_worst (panel, 1);
  g_assert_cmpint (activated_item, ==, 4);
  vl_det_panel_clear (panel);
  g_assert_cmpint (vl_det_panel_get_item (panel), ==, -1);
  g_assert_cmpint (vl_det_panel_get_n_worst (panel), ==, 0);
  gtk_window_destroy (GTK_WINDOW (window));
}

/* ------------------------------------------------------------------ a run in the window */

/* The boxes the view shows for its item: the trained model's own detections of that image,
 * recomputed here at the run's input size (score >= 0.05, background dropped, in the image's
 * own pixels), the dataset's true boxes; counted at two thresholds. */
static void
check_shown_boxes (VlWindow *win, int S)
{
  VlDetPanel *panel = VL_DET_PANEL (vl_test_child (win, "det_panel"));
  VlBoxView *view = VL_BOX_VIEW (vl_det_panel_get_box_view (panel));
  int item = vl_det_panel_get_item (panel);
  g_assert_cmpint (item, >=, 0);
  VlModel *m = vl_trained_model (vl_window_get_trained (win));
  VlDetHead *h = vl_trained_det_head (vl_window_get_trained (win));
  g_assert_nonnull (m);
  g_assert_nonnull (h);
  VlDataset *ds = vl_window_get_predictions_data (win)->ds;
  VlPreprocess pp;
  vl_preprocess_from_model (m, &pp);
  pp.size = S;
  const VlGeometry *g = vl_model_geometry (m);
  const int G = S / g->patch;
  g_autofree float *px = g_new (float, (gsize) pp.channels * S * S);
  g_autoptr(GError) error = NULL;
  g_assert_true (vl_dataset_load (ds, VL_SPLIT_VAL, item, &pp, VL_AUGMENT_NONE, 0, px, &error));
  VlFcosPostprocess post = VL_FCOS_POSTPROCESS_DEFAULT;
  post.score_thresh = VL_DETECT_EVAL_SCORE;
  g_autofree VlDetection *dets = g_new (VlDetection, post.max_dets);
  int w, hh;
  vl_dataset_boxes_size (ds, VL_SPLIT_VAL, item, &w, &hh);
  g_mutex_lock (&vl_window_get_trained (win)->lock);
  g_assert_true (vl_model_forward (m, px, 1, S, S, VL_FORWARD_INFER, &error));
  vl_det_head_forward (h, vl_model_tokens_final (m), 1, g->n_prefix + G * G, g->n_prefix, G, G,
                       g->patch);
  int n = vl_det_head_detect (h, 0, S, S, &post, dets);
  g_mutex_unlock (&vl_window_get_trained (win)->lock);
  vl_detections_to_image (dets, n, S, w, hh);
  g_autofree VlCocoBox *dt = g_new0 (VlCocoBox, MAX (n, 1));
  int n_dt = 0;
  for (int i = 0; i < n; i++)
    if (dets[i].label != 0)
      {
        dt[n_dt] = (VlCocoBox) { 0, dets[i].label, { 0 }, dets[i].score };
        memcpy (dt[n_dt].box, dets[i].box, sizeof dt[n_dt].box);
        n_dt++;
      }
  int n_gt;
  const int *labels;
  const float *b = vl_dataset_boxes (ds, VL_SPLIT_VAL, item, &labels, &n_gt);
  g_autofree VlCocoBox *gt = g_new0 (VlCocoBox, MAX (n_gt, 1));
  for (int i = 0; i < n_gt; i++)
    {
      gt[i].category = labels[i];
      memcpy (gt[i].box, b + 4 * i, sizeof gt[i].box);
    }
  g_test_message ("item %d: %d true boxes, %d detections at score >= 0.05", item, n_gt, n_dt);
  const double thresholds[] = { VL_DET_PANEL_SCORE, 0.05 };
  for (int k = 0; k < 2; k++)
    {
      g_object_set (panel, "score-threshold", thresholds[k], NULL);
      check_counts (view, gt, n_gt, dt, n_dt);
    }
  int shown;
  vl_box_view_get_counts (view, &shown, NULL, NULL);
  g_assert_cmpint (shown, ==, n_dt);   /* at 0.05 every detection kept is drawn */
  g_object_set (panel, "score-threshold", VL_DET_PANEL_SCORE, NULL);
}

/* The evaluation page after a detection run of K classes (the background included). */
static void
check_results (VlWindow *win, int K, int S)
{
  g_assert_cmpint (vl_window_get_task (win), ==, VL_TASK_DETECT);
  g_assert_true (gtk_widget_get_visible (vl_test_child (win, "det_panel")));
  g_assert_false (gtk_widget_get_visible (vl_test_child (win, "confusion")));
  g_assert_false (gtk_widget_get_visible (vl_test_child (win, "mask_view")));
  g_assert_cmpint (vl_test_n_children (vl_eval_card_get_rows (vl_test_eval_card (win))), ==, 1);
  GtkWidget *bars = gtk_widget_get_first_child (vl_eval_card_get_rows (vl_test_eval_card (win)));
  g_assert_true (VL_IS_CLASS_BARS (bars));
  g_assert_cmpint (vl_class_bars_get_n (VL_CLASS_BARS (bars)), ==, K - 1);
  double mean = vl_class_bars_get_mean (VL_CLASS_BARS (bars));
  g_assert_true (mean >= 0 && mean <= 1);
  const char *acc = vl_stat_cards_get (vl_test_stat_cards (win), VL_STAT_SCORE);
  g_assert_true (g_str_has_prefix (acc, "0.") || g_str_has_prefix (acc, "1."));
  g_assert_true (g_str_has_prefix (vl_stat_cards_get_detail (vl_test_stat_cards (win), VL_STAT_SCORE),
                                   "AP 0."));
  g_assert_nonnull (strstr (vl_stat_cards_get_card_tooltip (vl_test_stat_cards (win), VL_STAT_SCORE),
                            "IoU 0.5"));
  check_shown_boxes (win, S);
  VlDetPanel *panel = VL_DET_PANEL (vl_test_child (win, "det_panel"));
  int n_worst = vl_det_panel_get_n_worst (panel);
  g_test_message ("%d images in the worst strip", n_worst);
  g_assert_cmpint (n_worst, >=, 1);
  g_assert_cmpint (n_worst, <=, 12);
  int last = vl_det_panel_get_worst_item (panel, n_worst - 1);
  vl_det_panel_activate_worst (panel, n_worst - 1);
  g_assert_cmpint (vl_det_panel_get_item (panel), ==, last);
  check_shown_boxes (win, S);

  vl_test_window_assert_fits (win, "evaluation");
}

/* The loss chart's CSV: the validation AP50 and AP of every epoch, numbers in [0, 1]. */
static void
check_chart (VlWindow *win, int epochs)
{
  g_autofree char *tmp = vl_test_tmpdir ();
  g_autofree char *csv = g_build_filename (tmp, "curves.csv", NULL);
  g_autoptr(GError) error = NULL;
  VlLossChart *chart = VL_LOSS_CHART (vl_test_child (win, "chart"));
  g_assert_true (vl_loss_chart_export_csv (chart, csv, &error));
  g_autofree char *text = NULL;
  g_assert_true (g_file_get_contents (csv, &text, NULL, NULL));
  g_auto(GStrv) lines = g_strsplit (text, "\n", -1);
  g_assert_true (g_str_has_suffix (lines[0], ",val_loss,val_map50,val_map"));
  int with_ap = 0;
  for (int i = 1; lines[i]; i++)
    {
      g_auto(GStrv) f = g_strsplit (lines[i], ",", -1);
      guint n = g_strv_length (f);
      if (n < 3 || f[n - 2][0] == '\0')
        continue;
      double ap50 = g_ascii_strtod (f[n - 2], NULL), ap = g_ascii_strtod (f[n - 1], NULL);
      g_assert_true (ap50 >= 0 && ap50 <= 1 && ap >= 0 && ap <= ap50);
      with_ap++;
    }
  g_assert_cmpint (with_ap, >=, epochs);
}

static void
test_train (void)
{
  VlWindow *win = vl_test_window_new ();
  g_autofree char *backbone = vl_data_path ("backbones/vitlab-fmnist-tiny");
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (win), "win.load-backbone", "s",
                                             backbone));
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (win), "win.load-data", "s", SCENES));
  vl_test_wait_for (win, vl_test_window_loaded, 60, "the backbone and the scenes");
  /* the scenes open with masks; choosing Detection reads them again with boxes */
  g_assert_cmpint (vl_window_get_task (win), ==, VL_TASK_SEGMENT);
  g_object_set (vl_test_head_panel (win), "task", VL_TASK_DETECT, NULL);
  g_assert_cmpint (vl_window_get_task (win), ==, VL_TASK_DETECT);
  vl_test_wait_for (win, is_detection_data, 60, "the scenes with boxes");
  g_assert_cmpint (vl_window_get_task (win), ==, VL_TASK_DETECT);
  g_assert_cmpint (vl_dataset_n_classes (vl_window_get_data (win)->ds), ==, 4);
  g_autofree char *settings = vl_head_panel_get_settings (vl_test_head_panel (win));
  g_assert_cmpstr (settings, ==, "input-size");   /* no classifier, no seg head */
  g_object_set (vl_test_head_panel (win), "input-size", 48, NULL);
  const char *note = vl_head_panel_get_note (vl_test_head_panel (win));
  g_assert_nonnull (strstr (note, "FCOS"));
  g_assert_nonnull (strstr (note, "12 x 12"));
  g_assert_nonnull (strstr (note, "4 class scores"));
  g_assert_nonnull (strstr (note, "7,785"));   /* 9 * 96 * (4 + 5) + 4 + 5 */
  /* the data panel: one card with the boxes per class */
  g_assert_cmpint (vl_data_panel_get_n_classes_cards (vl_test_data_panel (win)), ==, 1);
  vl_test_wait_for (win, vl_test_window_features_idle, 120, "the k-NN probe's features");
  double knn = 0;
  g_object_get (vl_test_knn_panel (win), "accuracy", &knn, NULL);
  g_assert_true (isnan (knn));   /* no class per image */

  g_object_set (vl_test_training_panel (win), "epochs", 3, NULL);
  g_object_set (vl_test_training_panel (win), "batch-size", 16, NULL);
  g_object_set (vl_test_training_panel (win), "lr", 0.003, NULL);
  g_object_set (vl_test_data_panel (win), "augment", VL_AUGMENT_NONE, NULL);
  g_object_set (vl_test_groups_panel (win), "unlock", 1, NULL);
  VlTrainConfig c;
  vl_window_config_from_ui (win, &c);
  g_assert_cmpint (c.task, ==, VL_TASK_DETECT);
  g_assert_cmpint (c.img_size, ==, 48);
  vl_train_config_clear (&c);
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (win), "win.train", NULL));
  g_assert_true (vl_window_is_running (win));
  vl_test_wait_for (win, vl_test_window_finished, 300, "the run to finish");
  g_assert_cmpint (vl_window_get_last_end (win), ==, VL_TRAIN_END_COMPLETED);
  vl_test_wait_for (win, have_boxes, 120, "the boxes of the validation images");
  g_assert_cmpint (vl_window_get_n_epochs_done (win), ==, 3);
  check_results (win, 4, 48);
  check_chart (win, 3);
  const char *summary = vl_test_window_try_scene (win);
  g_assert_nonnull (strstr (summary, "at score"));   /* "N boxes at score >= 0.5: ..." */

  run_dir = g_strdup (vl_window_get_run_dir (win));
  g_autofree char *head = g_build_filename (run_dir, VL_RUN_DET_HEAD, NULL);
  g_assert_true (g_file_test (head, G_FILE_TEST_EXISTS));
  vl_test_window_destroy (win);
}

static void
test_open_run (void)
{
  g_assert_nonnull (run_dir);
  VlWindow *win = vl_test_window_new ();
  vl_window_open_run (win, run_dir);
  vl_test_wait_for (win, have_boxes, 120, "the opened run's boxes");
  g_assert_nonnull (vl_window_get_trained (win));
  g_assert_nonnull (vl_window_get_trained (win)->det_head);   /* det_head.safetensors */
  g_assert_true (vl_dataset_is_detection (vl_window_get_data (win)->ds));
  g_assert_cmpint (vl_head_panel_get_input_size (vl_test_head_panel (win)), ==,
                   48);
  g_assert_nonnull (vl_window_get_class_names (win));
  g_assert_cmpstr (vl_window_get_class_names (win)[1], ==, "T-shirt/top");
  check_results (win, 4, 48);
  vl_test_window_destroy (win);
}

static void
test_preset (void)
{
  VlWindow *win = vl_test_window_new ();
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (win), "win.open-preset", "s", "boxes"));
  vl_test_wait_for (win, is_detection_data, 120, "the boxes demo");
  const VlPreset *p = vl_preset_find ("boxes");
  g_assert_cmpstr (vl_window_get_data (win)->spec, ==, p->data);
  g_assert_cmpint (vl_window_get_task (win), ==, VL_TASK_DETECT);
  g_assert_cmpint (vl_head_panel_get_task (vl_test_head_panel (win)), ==, VL_TASK_DETECT);
  VlTrainConfig c;
  vl_window_config_from_ui (win, &c);
  g_assert_cmpint (c.task, ==, VL_TASK_DETECT);
  g_assert_cmpint (c.img_size, ==, p->img_size);
  g_assert_cmpstr (c.unlock_schedule, ==, p->unlock_schedule);
  g_assert_cmpfloat (c.lr, ==, p->lr);
  vl_train_config_clear (&c);
  /* back to segmentation: the same scenes with masks */
  g_object_set (vl_test_head_panel (win), "task", VL_TASK_SEGMENT, NULL);
  vl_test_wait_for (win, vl_test_window_loaded, 60, "the scenes with masks");
  g_assert_true (vl_dataset_is_segmentation (vl_window_get_data (win)->ds));
  g_assert_cmpint (vl_window_get_task (win), ==, VL_TASK_SEGMENT);
  vl_test_window_destroy (win);
}

static void
write_file (const char *path, const char *text)
{
  g_autofree char *dir = g_path_get_dirname (path);
  g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
  g_assert_true (g_file_set_contents (path, text, -1, NULL));
}

/* A YOLO folder (images/, labels/, classes.txt) opens as detection by itself. */
static void
test_yolo_folder (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  for (int i = 0; i < 8; i++)
    {
      const char *split = i < 6 ? "train" : "val";
      g_autoptr(VlImage) img = vl_image_new (40, 32, 3);
      memset (img->pixels, 30, 40 * 32 * 3);
      g_autofree char *ip = g_strdup_printf ("%s/images/%s/im%d.png", dir, split, i);
      g_autofree char *idir = g_path_get_dirname (ip);
      g_assert_cmpint (g_mkdir_with_parents (idir, 0755), ==, 0);
      g_autoptr(GError) error = NULL;
      g_assert_true (vl_image_save_png (ip, img, &error));
      g_autofree char *lp = g_strdup_printf ("%s/labels/%s/im%d.txt", dir, split, i);
      write_file (lp, i % 2 ? "0 0.5 0.5 0.4 0.5\n" : "1 0.3 0.3 0.2 0.2\n0 0.7 0.7 0.2 0.3\n");
    }
  g_autofree char *names = g_build_filename (dir, "classes.txt", NULL);
  write_file (names, "ant\nbee\n");
  VlWindow *win = vl_test_window_new ();
  g_autofree char *backbone = vl_test_shared_path ("fixtures", "vit-timm-tiny", NULL);
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (win), "win.load-backbone", "s",
                                             backbone));
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (win), "win.load-data", "s", dir));
  vl_test_wait_for (win, vl_test_window_loaded, 60, "the YOLO folder");
  g_assert_nonnull (vl_window_get_data (win));
  g_assert_true (vl_dataset_is_detection (vl_window_get_data (win)->ds));
  g_assert_cmpint (vl_window_get_task (win), ==, VL_TASK_DETECT);
  g_assert_cmpint (vl_dataset_n_classes (vl_window_get_data (win)->ds), ==, 3);
  g_assert_cmpstr (vl_dataset_class_name (vl_window_get_data (win)->ds, 2), ==, "bee");
  g_assert_true (vl_window_can_train (win));
  vl_test_window_destroy (win);
}

int
main (int argc, char **argv)
{
  vl_test_window_init (&argc, &argv);
  g_test_add_func ("/ui/det/panel", test_panel);
  g_test_add_func ("/ui/det/train", test_train);
  g_test_add_func ("/ui/det/open-run", test_open_run);
  g_test_add_func ("/ui/det/preset", test_preset);
  g_test_add_func ("/ui/det/yolo-folder", test_yolo_folder);
  int rc = vl_test_window_run ();
  g_free (run_dir);
  return rc;
}
