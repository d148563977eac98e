/* vl-window-seg.c: the window's segmentation side. The head panel's seg head (linear, upconv)
 * and input size to and from a run's configuration (the input size is detection's too), the
 * seg head's note; the data panel's card of a segmentation dataset ("dataset-changed"); each epoch's mIoU and
 * per-class IoU bars; and, once a run has a trained model (finished or opened), its masks of
 * every validation image with each image's own IoU (vl_seg_predictions_compute of
 * vl-predictions.c, in the same job as classification's per-image predictions) in the mask view
 * and its strip of the worst images. */
#include "vl-window-private.h"

#include <glib/gi18n.h>
#include <math.h>
#include <string.h>

#include "vl-mask-view.h"

#define N_WORST VL_PREDICTIONS_WORST
#define N_THUMBS 12   /* training images on the data panel */


/* ------------------------------------------------------------------ the mask view */

static void
show_item (VlWindow *self, int item)
{
  VlSegPredictions *p = self->pred->seg;
  if (p == NULL)
    return;
  for (int k = 0; k < p->n_kept; k++)
    if (p->kept[k] == item)
      {
        gsize plane = (gsize) p->S * p->S;
        g_autofree char *title = g_strdup_printf (_("%s · IoU %.3f"), p->names[k],
                                                  p->iou[item]);
        vl_mask_view_set_sample (VL_MASK_VIEW (self->mask_view), item, p->images[k],
                                 p->pred + plane * k, p->truth + plane * k, title);
        return;
      }
}

static void
on_item_activated (VlMaskView *view, int item, VlWindow *self)
{
  show_item (self, item);
}

void
vl_window_seg_predictions_ready (VlWindow *self, VlSegPredictions *p)
{
  vl_seg_predictions_free (self->pred->seg);
  self->pred->seg = p;
  VlMaskView *view = VL_MASK_VIEW (self->mask_view);
  vl_mask_view_set_classes (view, p->K, (const char *const *) p->class_names);
  /* the strip: the worst first (kept[0] is the median unless it is among them) */
  int items[N_WORST], n = 0;
  double ious[N_WORST];
  GdkTexture *thumbs[N_WORST];
  const char *names[N_WORST];
  gsize plane = (gsize) p->S * p->S;
  for (int w = 0; w < N_WORST && w < p->n; w++)
    for (int k = 0; k < p->n_kept; k++)
      if (p->kept[k] == p->order[w] && !isnan (p->iou[p->order[w]]))
        {
          items[n] = p->kept[k];
          ious[n] = p->iou[items[n]];
          thumbs[n] = vl_mask_texture (p->images[k], p->pred + plane * k, 0.5);
          names[n] = p->names[k];
          n++;
        }
  vl_mask_view_set_worst (view, n, items, ious, thumbs, names);
  for (int i = 0; i < n; i++)
    g_object_unref (thumbs[i]);
  if (p->n_kept > 0)
    show_item (self, p->kept[0]);
}

void
vl_window_seg_clear (VlWindow *self)
{
  g_clear_pointer (&self->pred->seg, vl_seg_predictions_free);
  if (self->mask_view)
    vl_mask_view_clear (VL_MASK_VIEW (self->mask_view));
}

/* ------------------------------------------------------------------ metrics */

void
vl_window_seg_show_epoch (VlWindow *self, const VlEpochMetrics *m, char **names)
{
  const VlSegResult *r = &m->seg;
  if (names == NULL && self->data && vl_dataset_is_segmentation (self->data->ds))
    names = vl_window_class_names_from_data (self, r->n_classes);
  g_autofree char *acc = g_strdup_printf ("%.3f", r->miou);
  g_autofree char *aacc = g_strdup_printf (_("pixel accuracy %.1f %%"), 100.0 * r->aacc);
  VlStatCards *cards = VL_STAT_CARDS (self->stat_cards);
  vl_stat_cards_set (cards, VL_STAT_SCORE, acc);
  vl_stat_cards_set_detail (cards, VL_STAT_SCORE, aacc);
  g_autofree char *vl = g_strdup_printf ("%.4f%s", r->loss, m->best ? " ★" : "");
  vl_stat_cards_set (cards, VL_STAT_VAL_LOSS, vl);
  if (names)
    vl_mask_view_set_classes (VL_MASK_VIEW (self->mask_view), r->n_classes,
                              (const char *const *) names);
  vl_eval_card_clear_rows (VL_EVAL_CARD (self->eval_card));
  for (int k = 0; k < r->n_classes && k < 256; k++)
    {
      const char *name = names && k < (int) g_strv_length (names) ? names[k] : "?";
      g_autofree char *markup = vl_mask_class_markup (k, name);
      GtkWidget *row = gtk_box_new (GTK_ORIENTATION_VERTICAL, 2);
      GtkWidget *line = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 6);
      GtkWidget *l = gtk_label_new (NULL);
      gtk_label_set_markup (GTK_LABEL (l), markup);
      gtk_label_set_xalign (GTK_LABEL (l), 0);
      gtk_label_set_ellipsize (GTK_LABEL (l), PANGO_ELLIPSIZE_END);
      gtk_widget_set_hexpand (l, TRUE);
      gtk_box_append (GTK_BOX (line), l);
      g_autofree char *v = isfinite (r->iou[k]) ? g_strdup_printf ("%.3f", r->iou[k])
                                                : g_strdup ("—");
      GtkWidget *vl_ = gtk_label_new (v);
      gtk_widget_add_css_class (vl_, "vl-numeric");
      gtk_box_append (GTK_BOX (line), vl_);
      gtk_box_append (GTK_BOX (row), line);
      GtkWidget *bar = gtk_level_bar_new_for_interval (0, 1);
      gtk_level_bar_set_value (GTK_LEVEL_BAR (bar), isfinite (r->iou[k]) ? r->iou[k] : 0);
      gtk_widget_set_tooltip_text (bar, isfinite (r->iou[k])
                                   ? _("Intersection over union of this class's pixels over the "
                                       "validation split")
                                   : _("Neither labelled nor predicted in the validation split"));
      gtk_box_append (GTK_BOX (row), bar);
      vl_eval_card_append_row (VL_EVAL_CARD (self->eval_card), row);
    }
  g_autofree char *summary = g_strdup_printf (
    _("Epoch %d · %lld validation images at their own size · mIoU %.3f · "
      "pixel accuracy %.1f %% · mean class accuracy %.1f %% · loss %.4f"),
    m->epoch + 1, (long long) r->n, r->miou, 100.0 * r->aacc, 100.0 * r->macc, r->loss);
  vl_eval_card_set_summary (VL_EVAL_CARD (self->eval_card), summary);
}

/* ------------------------------------------------------------------ the head panel */

void
vl_window_seg_to_config (VlWindow *self, VlTrainConfig *cfg)
{
  if (cfg->task == VL_TASK_DETECT)
    cfg->img_size = vl_window_dense_input_size (self);
  if (cfg->task != VL_TASK_SEGMENT)
    return;
  cfg->seg_head = vl_head_panel_get_seg_head (VL_HEAD_PANEL (self->head_panel));
  cfg->img_size = vl_window_dense_input_size (self);
}

void
vl_window_seg_from_config (VlWindow *self, const VlTrainConfig *cfg)
{
  if (cfg->task != VL_TASK_SEGMENT && cfg->task != VL_TASK_DETECT)
    return;
  gboolean was = self->syncing;
  self->syncing = TRUE;
  g_object_set (self->head_panel, "seg-head", cfg->seg_head, "input-size", cfg->img_size, NULL);
  self->syncing = was;
}

char *
vl_window_seg_head_note (VlWindow *self)
{
  const VlGeometry *g = vl_model_geometry (self->model);
  int K = self->data ? vl_dataset_n_classes (self->data->ds) : 0;
  gboolean up = vl_head_panel_get_seg_head (VL_HEAD_PANEL (self->head_panel)) == VL_SEG_HEAD_UPCONV;
  int W = g->width, c = up ? W / 4 : W;
  int64_t params = (int64_t) c * K + K;
  if (up)
    params += (int64_t) W * (W / 2) * 4 + W / 2 + 2 * (W / 2) + (int64_t) (W / 2) * c * 4 + c;
  g_autofree char *count = vl_format_count (params);
  int size = vl_window_dense_input_size (self);
  int S = size > 0 ? size : g->input_size;
  return g_strdup_printf (_("%s for %d classes over the %d x %d patch grid of %d px inputs, "
                            "upsampled to the input: %s parameters, freshly initialised (seeded) "
                            "when training starts. It is the last layer group: unlock 1 is the "
                            "frozen probe."),
                          up ? _("Two transposed convolutions (4x) and a 1x1 convolution")
                             : _("A 1x1 convolution"),
                          K, S / g->patch, S / g->patch, S, count);
}

/* ------------------------------------------------------------------ the data panel */

/* "dataset-changed": a segmentation set's card (its classes' colours, a few images). */
static void
show_classes (VlWindow *self)
{
  VlDataset *ds = self->data->ds;
  if (!vl_dataset_is_segmentation (ds))
    return;
  const int K = vl_dataset_n_classes (ds);
  GtkWidget *card = gtk_box_new (GTK_ORIENTATION_VERTICAL, 6);
  gtk_widget_add_css_class (card, "vl-card");
  g_autofree char *head = g_strdup_printf (_("Segmentation: %d train · %d val images with masks, "
                                             "%d classes"),
                                           vl_dataset_n_items (ds, VL_SPLIT_TRAIN),
                                           vl_dataset_n_items (ds, VL_SPLIT_VAL), K);
  GtkWidget *hl = gtk_label_new (head);
  gtk_label_set_wrap (GTK_LABEL (hl), TRUE);
  gtk_label_set_xalign (GTK_LABEL (hl), 0);
  gtk_widget_add_css_class (hl, "heading");
  gtk_box_append (GTK_BOX (card), hl);
  GtkWidget *legend = gtk_flow_box_new ();
  gtk_flow_box_set_selection_mode (GTK_FLOW_BOX (legend), GTK_SELECTION_NONE);
  gtk_flow_box_set_max_children_per_line (GTK_FLOW_BOX (legend), 3);
  for (int k = 0; k < K && k < 256; k++)
    {
      g_autofree char *markup = vl_mask_class_markup (k, vl_dataset_class_name (ds, k));
      GtkWidget *l = gtk_label_new (NULL);
      gtk_label_set_markup (GTK_LABEL (l), markup);
      gtk_label_set_xalign (GTK_LABEL (l), 0);
      gtk_label_set_ellipsize (GTK_LABEL (l), PANGO_ELLIPSIZE_END);
      gtk_widget_add_css_class (l, "caption");
      gtk_flow_box_append (GTK_FLOW_BOX (legend), l);
    }
  gtk_box_append (GTK_BOX (card), legend);
  GtkWidget *note = gtk_label_new (_("Each pixel's class comes from the image's mask (the "
                                     "colours above); 255 in a mask is ignored."));
  gtk_label_set_wrap (GTK_LABEL (note), TRUE);
  gtk_label_set_xalign (GTK_LABEL (note), 0);
  gtk_widget_add_css_class (note, "dim-label");
  gtk_box_append (GTK_BOX (card), note);
  /* the first training images */
  GtkWidget *flow = gtk_flow_box_new ();
  gtk_flow_box_set_selection_mode (GTK_FLOW_BOX (flow), GTK_SELECTION_NONE);
  gtk_flow_box_set_homogeneous (GTK_FLOW_BOX (flow), TRUE);
  gtk_flow_box_set_min_children_per_line (GTK_FLOW_BOX (flow), 3);
  gtk_flow_box_set_max_children_per_line (GTK_FLOW_BOX (flow), 6);
  gtk_flow_box_set_column_spacing (GTK_FLOW_BOX (flow), 4);
  gtk_flow_box_set_row_spacing (GTK_FLOW_BOX (flow), 4);
  gtk_box_append (GTK_BOX (card), flow);
  vl_data_panel_add_classes_card (VL_DATA_PANEL (self->data_panel), card);
  int items[N_THUMBS], n = MIN (N_THUMBS, vl_dataset_n_items (ds, VL_SPLIT_TRAIN));
  GPtrArray *pictures = g_ptr_array_new_with_free_func (g_object_unref);
  for (int i = 0; i < n; i++)
    {
      items[i] = i;
      GtkWidget *pic = gtk_picture_new ();
      gtk_picture_set_content_fit (GTK_PICTURE (pic), GTK_CONTENT_FIT_COVER);
      gtk_picture_set_can_shrink (GTK_PICTURE (pic), TRUE);
      gtk_widget_set_size_request (pic, 52, 52);
      gtk_widget_add_css_class (pic, "vl-thumb");
      g_autofree char *base = g_path_get_basename (vl_dataset_item_name (ds, VL_SPLIT_TRAIN, i));
      gtk_widget_set_tooltip_text (pic, base);
      gtk_flow_box_append (GTK_FLOW_BOX (flow), pic);
      g_ptr_array_add (pictures, g_object_ref (pic));
    }
  if (self->thumbs_cancel)
    g_cancellable_cancel (self->thumbs_cancel);
  g_clear_object (&self->thumbs_cancel);
  self->thumbs_cancel = g_cancellable_new ();
  vl_job_thumbnails (G_OBJECT (self), self->data, VL_SPLIT_TRAIN, items, n, 96, self->thumbs_cancel,
                     vl_thumb_to_picture, pictures, (GDestroyNotify) g_ptr_array_unref);
}

/* ------------------------------------------------------------------ setup */

void
vl_window_seg_init (VlWindow *self)
{
  g_signal_connect (self->mask_view, "item-activated", G_CALLBACK (on_item_activated), self);
  g_signal_connect_swapped (self, "dataset-changed", G_CALLBACK (show_classes), self);
}

void
vl_window_seg_dispose (VlWindow *self)
{
  g_clear_pointer (&self->pred->seg, vl_seg_predictions_free);
}
