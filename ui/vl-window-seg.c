/* vl-window-seg.c: the window's segmentation side. The head panel's seg head (linear, upconv)
 * and input size (the input size detection's too); the data panel's classes of a segmentation dataset; each epoch's mIoU and
 * per-class IoU bars; and, once a run has a trained model (finished or opened), its masks of
 * every validation image with each image's own IoU, computed on a worker thread (the same
 * GTask as classification's per-image predictions), for the mask view and its strip of the
 * worst images. */
#include "vl-window-private.h"

#include <glib/gi18n.h>
#include <math.h>
#include <string.h>

#include "vl-mask-view.h"

#define N_WORST 12
#define N_THUMBS 12   /* training images on the data panel */

struct _VlSegPredictions {
  int       n, S, K;
  double   *iou;            /* (n) each image's mean IoU over its classes (NaN: none counted) */
  int      *order;          /* (n) items by IoU, the worst first (NaN last) */
  int       n_kept;         /* the median image and the worst N_WORST, for display */
  int      *kept;           /* (n_kept) items */
  uint8_t  *pred, *truth;   /* (n_kept, S, S) their masks at the input size */
  VlImage **images;         /* (n_kept) the crops the model saw */
  char    **names;          /* (n_kept + 1) base names */
  char    **class_names;    /* (K + 1) the dataset's */
};

void
vl_seg_predictions_free (VlSegPredictions *p)
{
  if (p == NULL)
    return;
  g_free (p->pred);
  g_free (p->truth);
  g_free (p->iou);
  g_free (p->order);
  for (int i = 0; p->images && i < p->n_kept; i++)
    vl_image_free (p->images[i]);
  g_free (p->images);
  g_free (p->kept);
  g_strfreev (p->names);
  g_strfreev (p->class_names);
  g_free (p);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (VlSegPredictions, vl_seg_predictions_free)

/* ------------------------------------------------------------------ the worker's part */

#define BATCH 16

/* Up to BATCH validation items through the model and its seg head at pp's size: slot j of pred
 * and truth (pp->size² bytes each) receives items[j]'s predicted and true masks, of px its
 * pixels; loaded[j] whether it decoded. FALSE (error set) when the forward fails. */
static gboolean
predict_batch (VlModel *m, VlSegHead *h, VlDataset *ds, const VlPreprocess *pp,
               const int *items, int n, uint8_t *pred, uint8_t *truth, float *px,
               gboolean *loaded, GError **error)
{
  const VlGeometry *g = vl_model_geometry (m);
  const int S = pp->size, G = S / g->patch, K = vl_seg_head_n_classes (h);
  const gsize plane = (gsize) S * S, per = (gsize) pp->channels * plane;
  g_autofree float *batch = g_new (float, per * BATCH);
  int slot[BATCH], b = 0;
  for (int j = 0; j < n; j++)
    {
      memset (truth + plane * j, VL_SEG_IGNORE, plane);
      memset (pred + plane * j, 0, plane);
      VlTarget t = { .mask = truth + plane * j };
      loaded[j] = vl_dataset_load_target (ds, VL_SPLIT_VAL, items[j], pp, VL_AUGMENT_NONE, 0,
                                          batch + per * b, &t, NULL);
      if (loaded[j])
        slot[b++] = j;
    }
  if (b == 0)
    return TRUE;
  if (!vl_model_forward (m, batch, b, S, S, VL_FORWARD_INFER, error))
    return FALSE;
  const float *z = vl_seg_head_forward (h, vl_model_tokens_final (m), b,
                                        vl_model_n_tokens_last (m), g->n_prefix, G, G, S, S);
  for (int r = 0; r < b; r++)
    {
      vl_seg_argmax (pred + plane * slot[r], z + plane * K * r, (int64_t) plane, K);
      if (px)
        memcpy (px + per * slot[r], batch + per * r, sizeof (float) * per);
    }
  return TRUE;
}

static const double *sort_iou;
static G_LOCK_DEFINE (sort_lock);

static int
by_iou (const void *a, const void *b)
{
  double x = sort_iou[*(const int *) a], y = sort_iou[*(const int *) b];
  if (isnan (x) || isnan (y))
    return isnan (x) - isnan (y);
  return x < y ? -1 : x > y ? 1 : *(const int *) a - *(const int *) b;
}

/* The median image and the worst ones, run again: their masks, crops and names. */
static gboolean
keep_for_display (VlSegPredictions *p, VlModel *m, VlSegHead *h, VlDataset *ds,
                  const VlPreprocess *pp, GError **error)
{
  p->order = g_new (int, MAX (p->n, 1));
  for (int i = 0; i < p->n; i++)
    p->order[i] = i;
  G_LOCK (sort_lock);
  sort_iou = p->iou;
  qsort (p->order, p->n, sizeof (int), by_iou);
  G_UNLOCK (sort_lock);
  int n_defined = 0;
  while (n_defined < p->n && !isnan (p->iou[p->order[n_defined]]))
    n_defined++;
  int want[N_WORST + 1], n_want = 0;
  if (n_defined > 0)
    want[n_want++] = p->order[n_defined / 2];   /* the median: shown first */
  for (int i = 0; i < MIN (N_WORST, n_defined); i++)
    if (p->order[i] != want[0])
      want[n_want++] = p->order[i];
  const gsize plane = (gsize) pp->size * pp->size, per = (gsize) pp->channels * plane;
  g_autofree uint8_t *pred = g_new (uint8_t, plane * MAX (n_want, 1));
  g_autofree uint8_t *truth = g_new (uint8_t, plane * MAX (n_want, 1));
  g_autofree float *px = g_new (float, per * MAX (n_want, 1));
  gboolean loaded[N_WORST + 1];
  if (n_want > 0 && !predict_batch (m, h, ds, pp, want, n_want, pred, truth, px, loaded, error))
    return FALSE;
  p->kept = g_new (int, N_WORST + 1);
  p->images = g_new0 (VlImage *, N_WORST + 1);
  p->names = g_new0 (char *, N_WORST + 2);
  p->pred = g_new (uint8_t, plane * MAX (n_want, 1));
  p->truth = g_new (uint8_t, plane * MAX (n_want, 1));
  for (int w = 0; w < n_want; w++)
    if (loaded[w])
      {
        int k = p->n_kept++;
        p->kept[k] = want[w];
        memcpy (p->pred + plane * k, pred + plane * w, plane);
        memcpy (p->truth + plane * k, truth + plane * w, plane);
        p->images[k] = vl_image_from_chw (px + per * w, pp);
        p->names[k] = g_path_get_basename (vl_dataset_item_name (ds, VL_SPLIT_VAL, want[w]));
      }
  return TRUE;
}

/* Every validation image's own IoU, a batch at a time (only a batch of masks is held), then
 * the median and the worst images again for display. */
VlSegPredictions *
vl_seg_predictions_compute (VlModel *m, VlSegHead *h, VlDataset *ds, int size,
                            GCancellable *cancel, GError **error)
{
  const int K = vl_seg_head_n_classes (h);
  if (K != vl_dataset_n_classes (ds) || !vl_dataset_is_segmentation (ds))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, _("the seg head has %d classes, "
                   "the dataset %d%s"), K, vl_dataset_n_classes (ds),
                   vl_dataset_is_segmentation (ds) ? "" : _(" and no masks"));
      return NULL;
    }
  VlPreprocess pp;
  vl_preprocess_from_model (m, &pp);
  if (size > 0)
    pp.size = size;
  const gsize plane = (gsize) pp.size * pp.size;
  g_autoptr(VlSegPredictions) p = g_new0 (VlSegPredictions, 1);
  p->n = vl_dataset_n_items (ds, VL_SPLIT_VAL);
  p->S = pp.size;
  p->K = K;
  p->iou = g_new (double, MAX (p->n, 1));
  p->class_names = g_new0 (char *, K + 1);
  for (int k = 0; k < K; k++)
    p->class_names[k] = g_strdup (vl_dataset_class_name (ds, k));
  g_autofree uint8_t *pred = g_new (uint8_t, plane * BATCH);
  g_autofree uint8_t *truth = g_new (uint8_t, plane * BATCH);
  g_autoptr(VlSegMetric) metric = vl_seg_metric_new (K, VL_SEG_IGNORE);
  for (int i0 = 0; i0 < p->n; i0 += BATCH)
    {
      if (g_cancellable_set_error_if_cancelled (cancel, error))
        return NULL;
      int items[BATCH], n = MIN (BATCH, p->n - i0);
      gboolean loaded[BATCH];
      for (int j = 0; j < n; j++)
        items[j] = i0 + j;
      if (!predict_batch (m, h, ds, &pp, items, n, pred, truth, NULL, loaded, error))
        return NULL;
      for (int j = 0; j < n; j++)
        {
          p->iou[i0 + j] = NAN;
          if (!loaded[j])
            continue;
          vl_seg_metric_reset (metric);
          vl_seg_metric_add (metric, pred + plane * j, truth + plane * j, (int64_t) plane);
          p->iou[i0 + j] = vl_seg_metric_compute (metric, NULL, NULL, NULL, NULL);
        }
    }
  if (!keep_for_display (p, m, h, ds, &pp, error))
    return NULL;
  return g_steal_pointer (&p);
}

/* ------------------------------------------------------------------ the mask view */

static void
show_item (VlWindow *self, int item)
{
  VlSegPredictions *p = self->seg_pred;
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
  vl_seg_predictions_free (self->seg_pred);
  self->seg_pred = p;
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
  g_clear_pointer (&self->seg_pred, vl_seg_predictions_free);
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
  g_autofree char *acc = g_strdup_printf (_("%.3f · %.1f %%"), r->miou, 100.0 * r->aacc);
  gtk_label_set_text (GTK_LABEL (self->stat_acc), acc);
  gtk_widget_set_tooltip_text (self->stat_acc, _("mean IoU over the classes · pixel accuracy"));
  g_autofree char *vl = g_strdup_printf ("%.4f%s", r->loss, m->best ? " ★" : "");
  gtk_label_set_text (GTK_LABEL (self->stat_val_loss), vl);
  if (names)
    vl_mask_view_set_classes (VL_MASK_VIEW (self->mask_view), r->n_classes,
                              (const char *const *) names);
  GtkWidget *child;
  while ((child = gtk_widget_get_first_child (self->class_acc_box)))
    gtk_box_remove (GTK_BOX (self->class_acc_box), child);
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
      gtk_box_append (GTK_BOX (self->class_acc_box), row);
    }
  g_autofree char *summary = g_strdup_printf (
    _("Epoch %d · %lld validation images at their own size · mIoU %.3f · "
      "pixel accuracy %.1f %% · mean class accuracy %.1f %% · loss %.4f"),
    m->epoch + 1, (long long) r->n, r->miou, 100.0 * r->aacc, 100.0 * r->macc, r->loss);
  gtk_label_set_text (GTK_LABEL (self->eval_summary_label), summary);
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
  g_clear_pointer (&self->seg_pred, vl_seg_predictions_free);
}
