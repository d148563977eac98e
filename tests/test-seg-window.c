/* test-seg-window.c: segmentation in the app, driven through its actions, signals and properties
 * under Xvfb.
 *
 * The mask view alone (the colour drawn at each pixel in the three modes and at two opacities,
 * the legend, the worst strip's ::item-activated); a segmentation run in the window on the
 * shipped Fashion-MNIST backbone and a small fashion-mnist-scenes set (the dataset chooses the
 * task; the head panel shows the seg head; the per-class IoU bars; the mask view's masks equal
 * the trained model's own prediction of that image, recomputed here; the difference mode's wrong
 * pixels counted against the true mask; a worst image opened from the strip; the attention
 * view's fine-tuned maps), the run folder opened again in a new window (its seg head loaded:
 * the same masks), the window's minimum size within 1366x768 on the evaluation page, the scenes
 * demo opened from the Demos menu's action, and a folder of image/mask pairs written here taken
 * by the data panel as segmentation. */
#include "vl-test-util.h"
#include "vl-test-window.h"
#include "vl-data-panel.h"
#include "vl-dataset.h"
#include "vl-groups-panel.h"
#include "vl-head-panel.h"
#include "vl-image.h"
#include "vl-knn-panel.h"
#include "vl-mask-view.h"
#include "vl-preset.h"
#include "vl-task-view.h"
#include "vl-training-panel.h"
#include "vl-try-panel.h"

#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

static char *run_dir;   /* the finished run of /ui/seg/train, opened by /ui/seg/open-run */

#define SCENES "fashion-mnist-scenes:train=48,val=16,size=28,classes=0-2"

/* ------------------------------------------------------------------ helpers */

static gboolean
have_masks (VlWindow *win)
{
  return vl_window_has_seg_predictions (win) && !vl_window_predictions_busy (win);
}

/* pixel p of img with colour c laid over at opacity (what the view draws) */
static void
expected_pixel (const VlImage *img, gsize p, const guint8 *c, double opacity, guint8 out[3])
{
  for (int k = 0; k < 3; k++)
    {
      double v = img->pixels[p * img->channels + (img->channels >= 3 ? k : 0)];
      if (c)
        v = (1.0 - opacity) * v + opacity * c[k];
      out[k] = (guint8) CLAMP ((int) (v + 0.5), 0, 255);
    }
}

/* ------------------------------------------------------------------ the view alone */

static int activated_item;

static void
on_activated (VlMaskView *view, int item, gpointer data)
{
  activated_item = item;
}

static void
test_mask_view (void)
{
  GtkWidget *window = gtk_window_new ();
  VlMaskView *view = VL_MASK_VIEW (vl_mask_view_new ());
  gtk_window_set_child (GTK_WINDOW (window), GTK_WIDGET (view));
  gtk_window_present (GTK_WINDOW (window));
  g_assert_true (vl_task_view_applies_to (VL_TASK_VIEW (view), VL_TASK_SEGMENT));
  g_assert_false (vl_task_view_applies_to (VL_TASK_VIEW (view), VL_TASK_CLASSIFY));
  const char *names[] = { "background", "cat", "dog", NULL };
  vl_mask_view_set_classes (view, 3, names);
  g_assert_cmpint (vl_mask_view_get_n_legend (view), ==, 3);

  g_autoptr(VlImage) img = vl_image_new (4, 2, 1);
  for (int p = 0; p < 8; p++)
    img->pixels[p] = (uint8_t) (30 * p);
  const uint8_t pred[8] = { 0, 1, 2, 1, 0, 0, 2, 2 };
  const uint8_t truth[8] = { 0, 1, 1, 255, 1, 0, 2, 0 };
  vl_mask_view_set_sample (view, 7, img, pred, truth, "test");
  g_assert_cmpint (vl_mask_view_get_item (view), ==, 7);
  uint8_t pal[256 * 3];
  vl_seg_palette (pal);
  static const guint8 red[3] = { 230, 40, 40 }, green[3] = { 40, 200, 70 };
  const double opacities[] = { 0.5, 0.8 };
  for (int o = 0; o < 2; o++)
    {
      g_object_set (view, "opacity", opacities[o], NULL);
      for (int mode = 0; mode < 3; mode++)
        {
          g_object_set (view, "mode", mode, NULL);
          g_assert_cmpint (vl_mask_view_get_n_legend (view), ==, 3);
          for (int p = 0; p < 8; p++)
            {
              const guint8 *c = NULL;
              if (mode == VL_MASK_MODE_PREDICTED && pred[p] != 0)
                c = pal + 3 * pred[p];
              else if (mode == VL_MASK_MODE_TRUE && truth[p] != 0 && truth[p] != 255)
                c = pal + 3 * truth[p];
              else if (mode == VL_MASK_MODE_DIFFERENCE && truth[p] != 255)
                c = pred[p] != truth[p] ? red : truth[p] != 0 ? green : NULL;
              guint8 want[3], got[3];
              expected_pixel (img, p, c, opacities[o], want);
              g_assert_true (vl_mask_view_pixel (view, p % 4, p / 4, got));
              g_assert_cmpmem (got, 3, want, 3);
            }
        }
    }
  guint8 rgb[3];
  g_assert_false (vl_mask_view_pixel (view, 4, 0, rgb));
  g_object_set (view, "opacity", 0.0, "mode", VL_MASK_MODE_PREDICTED, NULL);
  g_assert_true (vl_mask_view_pixel (view, 1, 0, rgb));
  g_assert_cmpint (rgb[0], ==, 30);   /* no mask at opacity 0 */

  const int items[] = { 11, 3 };
  const double ious[] = { 0.1, 0.4 };
  const char *wnames[] = { "a.png", "b.png" };
  vl_mask_view_set_worst (view, 2, items, ious, NULL, wnames);
  g_assert_cmpint (vl_mask_view_get_n_worst (view), ==, 2);
  g_signal_connect (view, "item-activated", G_CALLBACK (on_activated), NULL);
  activated_item = -1;
  vl_mask_view_activate_worst (view, 1);
  g_assert_cmpint (activated_item, ==, 3);
  vl_mask_view_clear (view);
  g_assert_cmpint (vl_mask_view_get_item (view), ==, -1);
  g_assert_cmpint (vl_mask_view_get_n_worst (view), ==, 0);
  gtk_window_destroy (GTK_WINDOW (window));
}


/* ------------------------------------------------------------------ a run in the window */

/* The masks the view shows for its current item: the trained model's own prediction of that
 * image (recomputed here at the run's input size) in the predicted mode, and in the difference
 * mode as many wrong pixels as the prediction has against the true mask. */
static void
check_shown_masks (VlWindow *win)
{
  VlMaskView *view = VL_MASK_VIEW (vl_test_child (win, "mask_view"));
  int item = vl_mask_view_get_item (view);
  g_assert_cmpint (item, >=, 0);
  VlModel *m = vl_trained_model (vl_window_get_trained (win));
  VlSegHead *h = vl_trained_seg_head (vl_window_get_trained (win));
  g_assert_nonnull (m);
  g_assert_nonnull (h);
  VlDataset *ds = vl_window_get_predictions_data (win)->ds;
  VlPreprocess pp;
  vl_preprocess_from_model (m, &pp);
  const int S = pp.size, K = vl_seg_head_n_classes (h);
  const VlGeometry *g = vl_model_geometry (m);
  g_autofree float *px = g_new (float, (gsize) pp.channels * S * S);
  g_autofree uint8_t *truth = g_new (uint8_t, (gsize) S * S);
  g_autofree uint8_t *pred = g_new (uint8_t, (gsize) S * S);
  VlTarget t = { .mask = truth };
  g_autoptr(GError) error = NULL;
  g_assert_true (vl_dataset_load_target (ds, VL_SPLIT_VAL, item, &pp, VL_AUGMENT_NONE, 0, px, &t,
                                         &error));
  g_mutex_lock (&vl_window_get_trained (win)->lock);
  g_assert_true (vl_model_forward (m, px, 1, S, S, VL_FORWARD_INFER, &error));
  const float *z = vl_seg_head_forward (h, vl_model_tokens_final (m), 1,
                                        vl_model_n_tokens_last (m), g->n_prefix, S / g->patch,
                                        S / g->patch, S, S);
  vl_seg_argmax (pred, z, (int64_t) S * S, K);
  g_mutex_unlock (&vl_window_get_trained (win)->lock);
  g_autoptr(VlImage) img = vl_image_from_chw (px, &pp);
  uint8_t pal[256 * 3];
  vl_seg_palette (pal);
  g_object_set (view, "mode", VL_MASK_MODE_PREDICTED, "opacity", 0.6, NULL);
  int n_object = 0;
  for (int p = 0; p < S * S; p++)
    {
      const guint8 *c = pred[p] != 0 ? pal + 3 * pred[p] : NULL;
      guint8 want[3], got[3];
      expected_pixel (img, p, c, 0.6, want);
      g_assert_true (vl_mask_view_pixel (view, p % S, p / S, got));
      g_assert_cmpmem (got, 3, want, 3);
      n_object += pred[p] != 0;
    }
  g_object_set (view, "mode", VL_MASK_MODE_DIFFERENCE, "opacity", 1.0, NULL);
  int wrong = 0, want_wrong = 0;
  for (int p = 0; p < S * S; p++)
    {
      guint8 got[3];
      g_assert_true (vl_mask_view_pixel (view, p % S, p / S, got));
      wrong += got[0] == 230 && got[1] == 40 && got[2] == 40;
      want_wrong += truth[p] != 255 && truth[p] != pred[p];
    }
  g_test_message ("item %d: %d object pixels predicted, %d wrong", item, n_object, wrong);
  g_assert_cmpint (wrong, ==, want_wrong);
  g_object_set (view, "mode", VL_MASK_MODE_PREDICTED, "opacity", 0.5, NULL);
}

/* The evaluation page after a segmentation run: the per-class IoU bars, the mask view's sample,
 * the worst strip (a click shows that image) and the window's size. */
static void
check_results (VlWindow *win, int K)
{
  g_assert_cmpint (vl_window_get_task (win), ==, VL_TASK_SEGMENT);
  g_assert_true (gtk_widget_get_visible (vl_test_child (win, "mask_view")));
  g_assert_false (gtk_widget_get_visible (vl_test_child (win, "confusion")));
  g_assert_cmpint (vl_test_n_children (vl_eval_card_get_rows (vl_test_eval_card (win))), ==, K);
  for (GtkWidget *row = gtk_widget_get_first_child (vl_eval_card_get_rows (vl_test_eval_card (win))); row;
       row = gtk_widget_get_next_sibling (row))
    {
      GtkWidget *bar = gtk_widget_get_last_child (row);
      g_assert_true (GTK_IS_LEVEL_BAR (bar));
      double v = gtk_level_bar_get_value (GTK_LEVEL_BAR (bar));
      g_assert_true (v >= 0 && v <= 1);
    }
  const char *acc = vl_stat_cards_get (vl_test_stat_cards (win), VL_STAT_SCORE);
  g_assert_true (g_str_has_prefix (vl_stat_cards_get_detail (vl_test_stat_cards (win), VL_STAT_SCORE),
                                   "pixel accuracy "));
  g_assert_true (g_str_has_prefix (acc, "0.") || g_str_has_prefix (acc, "1."));
  VlMaskView *view = VL_MASK_VIEW (vl_test_child (win, "mask_view"));
  g_assert_cmpint (vl_mask_view_get_n_legend (view), ==, K);
  check_shown_masks (win);
  int n_worst = vl_mask_view_get_n_worst (view);
  g_assert_cmpint (n_worst, >, 1);
  g_assert_cmpint (n_worst, <=, 12);
  int second = vl_mask_view_get_worst_item (view, 1);
  vl_mask_view_activate_worst (view, 1);
  g_assert_cmpint (vl_mask_view_get_item (view), ==, second);
  check_shown_masks (win);

  vl_test_window_assert_fits (win, "evaluation");
}

/* needle among len bytes that may hold NULs (a protobuf) */
static gboolean
has_bytes (const char *buf, gsize len, const char *needle)
{
  const gsize n = strlen (needle);
  for (gsize i = 0; i + n <= len; i++)
    if (memcmp (buf + i, needle, n) == 0)
      return TRUE;
  return FALSE;
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
  /* the dataset chose the task; the head panel shows the seg head */
  g_assert_cmpint (vl_window_get_task (win), ==, VL_TASK_SEGMENT);
  g_assert_cmpint (vl_head_panel_get_task (vl_test_head_panel (win)), ==, VL_TASK_SEGMENT);
  g_autofree char *settings = vl_head_panel_get_settings (vl_test_head_panel (win));
  g_assert_cmpstr (settings, ==, "seg-head,input-size");
  g_assert_nonnull (strstr (vl_head_panel_get_note (vl_test_head_panel (win)),
                            "4 classes"));
  /* no k-NN figure: every image's label is 0 when the classes are per pixel */
  vl_test_wait_for (win, vl_test_window_features_idle, 120, "the k-NN probe's features");
  g_assert_nonnull (vl_knn_panel_get_features (vl_test_knn_panel (win)));   /* it ran */
  double knn = 0;
  g_object_get (vl_test_knn_panel (win), "accuracy", &knn, NULL);
  g_assert_true (isnan (knn));
  g_object_set (vl_test_training_panel (win), "epochs", 2, NULL);
  g_object_set (vl_test_training_panel (win), "batch-size", 16, NULL);
  g_object_set (vl_test_training_panel (win), "lr", 0.01, NULL);
  g_object_set (vl_test_data_panel (win), "augment", VL_AUGMENT_NONE, NULL);
  g_object_set (vl_test_groups_panel (win), "unlock", 2, NULL);
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (win), "win.train", NULL));
  g_assert_true (vl_window_is_running (win));
  vl_test_wait_for (win, vl_test_window_finished, 300, "the run to finish");
  g_assert_cmpint (vl_window_get_last_end (win), ==, VL_TRAIN_END_COMPLETED);
  vl_test_wait_for (win, have_masks, 120, "the masks of the validation images");
  g_assert_cmpint (vl_window_get_n_epochs_done (win), ==, 2);
  /* the attention view's "now" maps, and the fine-tuned ones */
  g_assert_cmpint (vl_window_get_n_probe_events (win), >, 0);
  g_assert_true (vl_window_has_probe_maps (win, VL_WINDOW_MAPS_FINE_TUNED));
  check_results (win, 4);
  const char *summary = vl_test_window_try_scene (win);
  g_assert_nonnull (strstr (summary, " %"));   /* the classes' shares of the mask */
  run_dir = g_strdup (vl_window_get_run_dir (win));

  /* Export as ONNX: the seg head from the run folder, seg_logits at the run's input size
   * (tests/test-onnx.c checks such files with python3-onnx, make interop in ONNX Runtime) */
  g_autofree char *tmp = vl_test_tmpdir ();
  g_autofree char *onnx = g_build_filename (tmp, "seg.onnx", NULL);
  g_object_set_data_full (G_OBJECT (win), "export-onnx-override", g_strdup (onnx), g_free);
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (win), "win.export-onnx", NULL));
  vl_test_wait_for (win, vl_test_window_not_exporting, 60, "the ONNX export");
  g_autofree char *bytes = NULL;
  gsize len = 0;
  g_assert_true (g_file_get_contents (onnx, &bytes, &len, NULL));
  g_assert_true (has_bytes (bytes, len, "seg_logits"));
  g_assert_true (has_bytes (bytes, len, "decode_head.conv_seg.weight"));
  g_assert_true (has_bytes (bytes, len, "Trouser"));   /* the classes in metadata_props */
  /* Export as a timm folder: the backbone and the seg head, config.json marked segmentation */
  g_autofree char *out = g_build_filename (tmp, "exported", NULL);
  g_object_set_data_full (G_OBJECT (win), "export-dir-override", g_strdup (out), g_free);
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (win), "win.export", NULL));
  vl_test_wait_for (win, vl_test_window_not_exporting, 60, "the export");
  g_autofree char *hpath = g_build_filename (out, "seg_head.safetensors", NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(VlSegHead) h = vl_seg_head_load (hpath, 96, &error);
  g_assert_no_error (error);
  g_assert_cmpint (vl_seg_head_n_classes (h), ==, 4);
  g_autofree char *cpath = g_build_filename (out, "config.json", NULL);
  g_autofree char *text = NULL;
  g_assert_true (g_file_get_contents (cpath, &text, NULL, NULL));
  g_assert_nonnull (strstr (text, "\"segmentation\""));
  g_assert_nonnull (strstr (text, "Trouser"));
  vl_test_window_destroy (win);
}

static void
test_open_run (void)
{
  g_assert_nonnull (run_dir);
  VlWindow *win = vl_test_window_new ();
  vl_window_open_run (win, run_dir);
  vl_test_wait_for (win, have_masks, 120, "the opened run's masks");
  g_assert_nonnull (vl_window_get_trained (win));
  g_assert_nonnull (vl_window_get_trained (win)->seg_head);   /* seg_head.safetensors */
  int unlock = 0;
  g_object_get (vl_test_groups_panel (win), "unlock", &unlock, NULL);
  g_assert_cmpint (unlock, ==, 2);
  /* the class names from run.json, before the dataset is back */
  g_assert_nonnull (vl_window_get_class_names (win));
  g_assert_cmpstr (vl_window_get_class_names (win)[1], ==, "T-shirt/top");
  check_results (win, 4);
  vl_test_window_destroy (win);
}

static void
test_preset (void)
{
  VlWindow *win = vl_test_window_new ();
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (win), "win.open-preset", "s",
                                             "scenes"));
  vl_test_wait_for (win, vl_test_window_loaded, 120, "the scenes demo");
  const VlPreset *p = vl_preset_find ("scenes");
  g_assert_nonnull (vl_window_get_data (win));
  g_assert_cmpstr (vl_window_get_data (win)->spec, ==, p->data);
  g_assert_true (g_str_has_suffix (vl_window_get_backbone_path (win), "vitlab-fmnist-tiny"));
  g_assert_cmpint (vl_window_get_task (win), ==, VL_TASK_SEGMENT);
  g_assert_cmpint (vl_training_panel_get_epochs (vl_test_training_panel (win)), ==,
                   p->epochs);
  g_assert_cmpint (vl_head_panel_get_input_size (vl_test_head_panel (win)), ==,
                   p->img_size);
  VlTrainConfig c;
  vl_window_config_from_ui (win, &c);
  g_assert_cmpint (c.task, ==, VL_TASK_SEGMENT);
  g_assert_cmpint (c.img_size, ==, p->img_size);
  g_assert_cmpint (c.seg_head, ==, p->seg_head);
  g_assert_cmpstr (c.unlock_schedule, ==, p->unlock_schedule);
  g_assert_cmpfloat (c.lr, ==, p->lr);
  vl_train_config_clear (&c);
  /* the probes' pretrained attention at the preset's input size */
  int gh = 0;
  vl_window_get_attention_grid (win, &gh, NULL);
  g_assert_cmpint (gh, ==, p->img_size / 4);
  /* the data panel's scenes button: the classes of its entry, the input size to the canvas */
  g_object_set (vl_test_head_panel (win), "input-size", 0, NULL);
  g_object_set (vl_test_data_panel (win), "fmnist-classes", "5-9", NULL);
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (win), "win.use-fashion-mnist-scenes",
                                             NULL));
  vl_test_wait_for (win, vl_test_window_loaded, 120, "the scenes of classes 5-9");
  g_assert_nonnull (strstr (vl_window_get_data (win)->spec, "classes=5-9"));
  g_assert_cmpint (vl_dataset_n_classes (vl_window_get_data (win)->ds), ==, 6);
  g_assert_cmpint (vl_window_get_task (win), ==, VL_TASK_SEGMENT);
  g_assert_cmpint (vl_head_panel_get_input_size (vl_test_head_panel (win)), ==,
                   40);
  /* a name without a backbone is refused with a message */
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (win), "win.open-preset", "s",
                                             "pretrain-fmnist"));
  g_assert_true (gtk_widget_get_visible (vl_test_child (win, "banner")));
  vl_test_window_destroy (win);
}

/* A folder with images/ and masks/ (no split level) opens as segmentation. */
static void
test_mask_folder (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *images = g_build_filename (dir, "images", NULL);
  g_autofree char *masks = g_build_filename (dir, "masks", NULL);
  g_assert_cmpint (g_mkdir_with_parents (images, 0755), ==, 0);
  g_assert_cmpint (g_mkdir_with_parents (masks, 0755), ==, 0);
  uint8_t pal[256 * 3];
  vl_seg_palette (pal);
  for (int i = 0; i < 10; i++)
    {
      g_autoptr(VlImage) img = vl_image_new (32, 32, 3);
      g_autofree uint8_t *m = g_new (uint8_t, 32 * 32);
      for (int p = 0; p < 32 * 32; p++)
        {
          gboolean in = (p % 32) < 8 + i && (p / 32) > i;
          img->pixels[3 * p] = in ? 220 : 20;
          img->pixels[3 * p + 1] = (uint8_t) (10 * i);
          img->pixels[3 * p + 2] = in ? 30 : 200;
          m[p] = in ? 1 + i % 2 : 0;
        }
      g_autofree char *name = g_strdup_printf ("img%02d.png", i);
      g_autofree char *ip = g_build_filename (images, name, NULL);
      g_autofree char *mp = g_build_filename (masks, name, NULL);
      g_autoptr(GError) error = NULL;
      g_assert_true (vl_image_save_png (ip, img, &error));
      g_assert_true (vl_mask_save (mp, m, 32, 32, pal, 256, &error));
    }
  VlWindow *win = vl_test_window_new ();
  g_autofree char *backbone = vl_test_shared_path ("fixtures", "vit-timm-tiny", NULL);
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (win), "win.load-backbone", "s",
                                             backbone));
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (win), "win.load-data", "s", dir));
  vl_test_wait_for (win, vl_test_window_loaded, 60, "the mask folder");
  g_assert_nonnull (vl_window_get_data (win));
  g_assert_true (vl_dataset_is_segmentation (vl_window_get_data (win)->ds));
  g_assert_cmpint (vl_window_get_task (win), ==, VL_TASK_SEGMENT);
  g_assert_cmpint (vl_data_panel_get_n_classes_cards (vl_test_data_panel (win)), ==, 1);   /* one card: no counts per class */
  vl_test_window_destroy (win);
}

int
main (int argc, char **argv)
{
  vl_test_window_init (&argc, &argv);
  g_test_add_func ("/ui/seg/mask-view", test_mask_view);
  g_test_add_func ("/ui/seg/train", test_train);
  g_test_add_func ("/ui/seg/open-run", test_open_run);
  g_test_add_func ("/ui/seg/preset", test_preset);
  g_test_add_func ("/ui/seg/mask-folder", test_mask_folder);
  int rc = vl_test_window_run ();
  g_free (run_dir);
  return rc;
}
