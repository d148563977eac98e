/* vl-window-det.c: the window's detection side. The head panel's note on the FCOS head (its
 * input size is the dense tasks' spin, shared with segmentation); the data panel's classes of a
 * detection set with their box counts and a few training images with their boxes
 * ("dataset-changed"); each epoch's AP, AP50 and per-class AP bars; and, once a run has a
 * trained model (finished or opened), its boxes on every validation image
 * (vl_det_predictions_compute of vl-predictions.c, in the same job as the other tasks'
 * predictions), with each image's missed and false boxes at score 0.5 for the strip of the
 * worst images under the box view (VlDetPanel). */
#include "vl-window-private.h"

#include <glib/gi18n.h>
#include <math.h>
#include <string.h>

#include "vl-box-view.h"
#include "vl-draw-boxes.h"
#include "vl-class-bars.h"
#include "vl-det-panel.h"
#include "vl-mask-view.h"

#define N_WORST VL_PREDICTIONS_WORST
#define N_THUMBS 8            /* training images on the data panel */


/* ------------------------------------------------------------------ the box view */

/* The boxes of one item (a copy of those with .image == item). */
static GArray *
boxes_of (GArray *all, int item)
{
  GArray *a = g_array_new (FALSE, FALSE, sizeof (VlCocoBox));
  for (guint i = 0; i < all->len; i++)
    if (g_array_index (all, VlCocoBox, i).image == item)
      g_array_append_val (a, g_array_index (all, VlCocoBox, i));
  return a;
}

static void
show_item (VlWindow *self, int item)
{
  VlDetPredictions *p = self->pred->det;
  if (p == NULL)
    return;
  for (int k = 0; k < p->n_kept; k++)
    if (p->kept[k] == item)
      {
        g_autoptr(GArray) gt = boxes_of (p->gt, item);
        g_autoptr(GArray) dt = boxes_of (p->dt, item);
        g_autofree char *title = g_strdup_printf (_("%s · %u true boxes"), p->names[k],
                                                  gt->len);
        vl_det_panel_set_sample (VL_DET_PANEL (self->det_panel), item, p->images[k],
                                 p->width[k], p->height[k], (const VlCocoBox *) gt->data,
                                 gt->len, (const VlCocoBox *) dt->data, dt->len, title);
        return;
      }
}

static void
on_item_activated (VlDetPanel *panel, int item, VlWindow *self)
{
  show_item (self, item);
}

void
vl_window_det_predictions_ready (VlWindow *self, VlDetPredictions *p)
{
  vl_det_predictions_free (self->pred->det);
  self->pred->det = p;
  VlDetPanel *panel = VL_DET_PANEL (self->det_panel);
  vl_det_panel_set_classes (panel, (const char *const *) p->class_names);
  int items[N_WORST];
  GdkTexture *thumbs[N_WORST];
  char *captions[N_WORST];
  int n = 0;
  for (int k = 1; k <= p->n_worst && n < N_WORST; k++, n++)
    {
      items[n] = p->kept[k];
      thumbs[n] = p->images[k];
      captions[n] = g_strdup_printf (_("%d missed\n%d false"), p->missed[items[n]],
                                     p->false_pos[items[n]]);
    }
  vl_det_panel_set_worst (panel, n, items, thumbs, (const char *const *) captions);
  for (int i = 0; i < n; i++)
    g_free (captions[i]);
  if (p->n_kept > 0)
    show_item (self, p->kept[0]);
}

void
vl_window_det_clear (VlWindow *self)
{
  g_clear_pointer (&self->pred->det, vl_det_predictions_free);
  if (self->det_panel)
    vl_det_panel_clear (VL_DET_PANEL (self->det_panel));
}

/* ------------------------------------------------------------------ metrics */

void
vl_window_det_show_epoch (VlWindow *self, const VlEpochMetrics *m, char **names)
{
  const VlDetResult *r = &m->det;
  if (names == NULL && self->data && vl_dataset_is_detection (self->data->ds))
    names = vl_window_class_names_from_data (self, r->n_classes);
  g_autofree char *acc = g_strdup_printf ("%.3f", r->ap50);
  g_autofree char *ap = g_strdup_printf (_("AP %.3f"), r->ap);
  VlStatCards *cards = VL_STAT_CARDS (self->stat_cards);
  vl_stat_cards_set (cards, VL_STAT_SCORE, acc);
  vl_stat_cards_set_detail (cards, VL_STAT_SCORE, ap);
  g_autofree char *vl = g_strdup_printf ("%.4f%s", r->loss, m->best ? " ★" : "");
  vl_stat_cards_set (cards, VL_STAT_VAL_LOSS, vl);
  if (names)
    vl_det_panel_set_classes (VL_DET_PANEL (self->det_panel), (const char *const *) names);
  /* AP50 per object class (the background, class 0, has no boxes) */
  vl_eval_card_clear_rows (VL_EVAL_CARD (self->eval_card));
  const int n = MAX (r->n_classes - 1, 0);
  const int n_names = names ? (int) g_strv_length (names) : 0;
  if (n > 0 && r->class_ap50)
    {
      GtkWidget *bars = vl_class_bars_new ();
      const char **obj = g_new0 (const char *, n + 1);
      for (int k = 1; k < r->n_classes; k++)
        obj[k - 1] = k < n_names ? names[k] : NULL;
      vl_class_bars_set (VL_CLASS_BARS (bars), _("AP50 per class"), obj, r->class_ap50 + 1, n, 1);
      g_free (obj);
      gtk_widget_set_tooltip_text (bars, _("COCO average precision at IoU 0.5 of each class's "
                                           "boxes over the validation split; — for a class "
                                           "without boxes there"));
      vl_eval_card_append_row (VL_EVAL_CARD (self->eval_card), bars);
    }
  g_autofree char *summary = g_strdup_printf (
    _("Epoch %d · %lld validation images at their own size, %lld boxes · AP %.3f · AP50 %.3f · "
      "AP75 %.3f · AR@100 %.3f · loss %.4f"), m->epoch + 1, (long long) r->n,
    (long long) r->n_gt, r->ap, r->ap50, r->ap75, r->ar100, r->loss);
  vl_eval_card_set_summary (VL_EVAL_CARD (self->eval_card), summary);
}

/* ------------------------------------------------------------------ the head panel */

char *
vl_window_det_head_note (VlWindow *self)
{
  const VlGeometry *g = vl_model_geometry (self->model);
  int K = self->data ? vl_dataset_n_classes (self->data->ds) : 0;
  int64_t params = (int64_t) 9 * g->width * (K + 5) + K + 5;
  g_autofree char *count = vl_format_count (params);
  int size = vl_window_dense_input_size (self);
  int S = size > 0 ? size : g->input_size;
  return g_strdup_printf (_("FCOS (torchvision) over the %d x %d patch grid of %d px inputs: a "
                            "3x3 convolution each for the %d class scores (the background "
                            "first), the box's four distances and its centerness; %s "
                            "parameters, freshly initialised (seeded) when training starts. It "
                            "is the last layer group: unlock 1 is the frozen probe."),
                          S / g->patch, S / g->patch, S, K, count);
}

/* ------------------------------------------------------------------ the data panel */

static void
thumb_to_box_view (VlWindow *self, int slot, GdkTexture *tex, gpointer user_data)
{
  GPtrArray *views = user_data;
  if (slot < (int) views->len && tex)
    vl_box_view_set_image (VL_BOX_VIEW (g_ptr_array_index (views, slot)), tex);
}

/* A few training images with their true boxes, drawn as the box view draws them. */
static GtkWidget *
thumbnails (VlWindow *self, VlDataset *ds)
{
  GtkWidget *flow = gtk_flow_box_new ();
  gtk_flow_box_set_selection_mode (GTK_FLOW_BOX (flow), GTK_SELECTION_NONE);
  gtk_flow_box_set_homogeneous (GTK_FLOW_BOX (flow), TRUE);
  gtk_flow_box_set_min_children_per_line (GTK_FLOW_BOX (flow), 2);
  gtk_flow_box_set_max_children_per_line (GTK_FLOW_BOX (flow), 4);
  int items[N_THUMBS], n = MIN (N_THUMBS, vl_dataset_n_items (ds, VL_SPLIT_TRAIN));
  GPtrArray *views = g_ptr_array_new_with_free_func (g_object_unref);
  const int K = vl_dataset_n_classes (ds);
  g_autofree const char **names = g_new0 (const char *, K + 1);
  for (int k = 0; k < K; k++)
    names[k] = vl_dataset_class_name (ds, k);
  for (int i = 0; i < n; i++)
    {
      items[i] = i;
      int w, h, nb;
      const int *labels;
      const float *b = vl_dataset_boxes (ds, VL_SPLIT_TRAIN, i, &labels, &nb);
      vl_dataset_boxes_size (ds, VL_SPLIT_TRAIN, i, &w, &h);
      g_autofree VlCocoBox *truth = g_new0 (VlCocoBox, MAX (nb, 1));
      for (int j = 0; j < nb; j++)
        {
          truth[j].category = labels ? labels[j] : 1;
          memcpy (truth[j].box, b + 4 * j, sizeof truth[j].box);
        }
      GtkWidget *view = vl_box_view_new ();
      vl_box_view_set_truth_only (VL_BOX_VIEW (view), TRUE);
      vl_box_view_set_boxes (VL_BOX_VIEW (view), w, h, truth, nb, NULL, 0, names);
      gtk_widget_set_size_request (view, 112, 112);
      g_autofree char *base = g_path_get_basename (vl_dataset_item_name (ds, VL_SPLIT_TRAIN, i));
      gtk_widget_set_tooltip_text (view, base);
      gtk_flow_box_append (GTK_FLOW_BOX (flow), view);
      g_ptr_array_add (views, g_object_ref (view));
    }
  if (self->thumbs_cancel)
    g_cancellable_cancel (self->thumbs_cancel);
  g_clear_object (&self->thumbs_cancel);
  self->thumbs_cancel = g_cancellable_new ();
  vl_window_load_thumbnails (self, self->data, VL_SPLIT_TRAIN, items, n, 160, self->thumbs_cancel,
                             thumb_to_box_view, views, (GDestroyNotify) g_ptr_array_unref);
  return flow;
}

/* "dataset-changed": a detection set's card (box counts, a few images with their boxes; a
 * set with masks too is segmentation's). */
static void
show_classes (VlWindow *self)
{
  VlDataset *ds = self->data->ds;
  if (!vl_dataset_is_detection (ds) || vl_dataset_is_segmentation (ds))
    return;
  const int K = vl_dataset_n_classes (ds);
  g_autofree int64_t *count = g_new0 (int64_t, 2 * MAX (K, 1));
  int64_t total[2] = { 0, 0 };
  for (int s = 0; s < 2; s++)
    for (int i = 0; i < vl_dataset_n_items (ds, (VlSplit) s); i++)
      {
        int nb;
        const int *labels;
        vl_dataset_boxes (ds, (VlSplit) s, i, &labels, &nb);
        for (int j = 0; j < nb; j++)
          if (labels && labels[j] >= 0 && labels[j] < K)
            count[2 * labels[j] + s]++;
        total[s] += nb;
      }
  GtkWidget *card = gtk_box_new (GTK_ORIENTATION_VERTICAL, 6);
  gtk_widget_add_css_class (card, "vl-card");
  g_autofree char *head = g_strdup_printf (_("Detection: %d train images (%lld boxes) · %d val "
                                             "(%lld boxes), %d object classes"),
                                           vl_dataset_n_items (ds, VL_SPLIT_TRAIN),
                                           (long long) total[0],
                                           vl_dataset_n_items (ds, VL_SPLIT_VAL),
                                           (long long) total[1], K - 1);
  GtkWidget *hl = gtk_label_new (head);
  gtk_label_set_wrap (GTK_LABEL (hl), TRUE);
  gtk_label_set_xalign (GTK_LABEL (hl), 0);
  gtk_widget_add_css_class (hl, "heading");
  gtk_box_append (GTK_BOX (card), hl);
  GtkWidget *grid = gtk_grid_new ();
  gtk_grid_set_column_spacing (GTK_GRID (grid), 12);
  for (int k = 1; k < K && k < 256; k++)
    {
      /* the box view's colour of class k (vl_draw_class_color: the palette's k + 1) */
      g_autofree char *markup = vl_mask_class_markup (k + 1, vl_dataset_class_name (ds, k));
      GtkWidget *l = gtk_label_new (NULL);
      gtk_label_set_markup (GTK_LABEL (l), markup);
      gtk_label_set_xalign (GTK_LABEL (l), 0);
      gtk_label_set_ellipsize (GTK_LABEL (l), PANGO_ELLIPSIZE_END);
      gtk_widget_set_hexpand (l, TRUE);
      gtk_grid_attach (GTK_GRID (grid), l, 0, k - 1, 1, 1);
      g_autofree char *c = g_strdup_printf (_("%lld train · %lld val boxes"),
                                            (long long) count[2 * k], (long long) count[2 * k + 1]);
      GtkWidget *cl = gtk_label_new (c);
      gtk_widget_add_css_class (cl, "dim-label");
      gtk_widget_add_css_class (cl, "caption");
      gtk_widget_add_css_class (cl, "vl-numeric");
      gtk_grid_attach (GTK_GRID (grid), cl, 1, k - 1, 1, 1);
    }
  gtk_box_append (GTK_BOX (card), grid);
  GtkWidget *note = gtk_label_new (_("Boxes dashed in their class's colour, as the evaluation "
                                     "page draws the true boxes. Images are squashed to the "
                                     "input size with their boxes."));
  gtk_label_set_wrap (GTK_LABEL (note), TRUE);
  gtk_label_set_xalign (GTK_LABEL (note), 0);
  gtk_widget_add_css_class (note, "dim-label");
  gtk_box_append (GTK_BOX (card), note);
  gtk_box_append (GTK_BOX (card), thumbnails (self, ds));
  vl_data_panel_add_classes_card (VL_DATA_PANEL (self->data_panel), card);
}

/* ------------------------------------------------------------------ setup */

void
vl_window_det_init (VlWindow *self)
{
  g_signal_connect (self->det_panel, "item-activated", G_CALLBACK (on_item_activated), self);
  g_signal_connect_swapped (self, "dataset-changed", G_CALLBACK (show_classes), self);
}

void
vl_window_det_dispose (VlWindow *self)
{
  g_clear_pointer (&self->pred->det, vl_det_predictions_free);
}
