/* vl-window-task.c: the task and its views. The task chosen in the head panel (or by the
 * dataset, a run, a preset) shows its views, labels and head settings (vl_window_set_task;
 * VlTaskView decides which views); each epoch's evaluation goes to them (vl_window_show_epoch:
 * the statistics, the confusion matrix and per-class accuracy, the regression scatter and its
 * hovered image, or the segmentation and detection sides). */
#include "vl-window-private.h"
#include <glib/gi18n.h>

#include <math.h>

#include "vl-confusion-view.h"
#include "vl-loss-chart.h"
#include "vl-scatter-view.h"
#include "vl-task-view.h"

/* ------------------------------------------------------------------ formatting */

static char *
format_pct (double v)
{
  return isfinite (v) ? g_strdup_printf ("%.1f %%", 100.0 * v) : g_strdup ("—");
}

/* The Training card: how many groups train, and under it which, their parameters (n_trainable
 * < 0: not known, as for a run opened from disk) and whether the frozen part's features are
 * cached. */
void
vl_window_show_training_groups (VlWindow *self, int unlocked, gint64 n_trainable, gboolean cached)
{
  VlStatCards *cards = VL_STAT_CARDS (self->stat_cards);
  const int n_groups = self->model ? vl_model_n_groups (self->model) : 0;
  g_autofree char *value = g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "%d group", "%d groups",
                                                          unlocked), unlocked);
  g_autoptr(GString) detail = g_string_new (NULL);
  if (n_groups > 0 && unlocked >= n_groups)
    g_string_append_printf (detail, _("all %d"), n_groups);
  else if (n_groups > 0)
    g_string_append_printf (detail, _("the last %d of %d"), unlocked, n_groups);
  else
    g_string_append_printf (detail, _("the last %d"), unlocked);
  if (n_trainable >= 0)
    {
      g_autofree char *count = vl_format_count (n_trainable);
      g_string_append (detail, " · ");
      g_string_append_printf (detail, _("%s params"), count);
    }
  if (cached)
    {
      g_string_append (detail, " · ");
      g_string_append (detail, _("cached"));
    }
  vl_stat_cards_set (cards, VL_STAT_TRAINING, value);
  vl_stat_cards_set_detail (cards, VL_STAT_TRAINING, detail->str);
  g_autofree char *tip = g_strdup_printf ("%s · %s", value, detail->str);
  vl_stat_cards_set_tooltip (cards, VL_STAT_TRAINING, tip);
}

/* ------------------------------------------------------------------ the task */

void
vl_window_set_task (VlWindow *self, VlTaskKind task)
{
  self->task = task;
  vl_head_panel_set_task (VL_HEAD_PANEL (self->head_panel), task);   /* its settings follow */
  const gboolean reg = task == VL_TASK_REGRESS, seg = task == VL_TASK_SEGMENT,
                 det = task == VL_TASK_DETECT;
  if (!seg)
    vl_window_seg_clear (self);   /* the other tasks' results go */
  if (!det)
    vl_window_det_clear (self);
  vl_task_view_show_for (self->confusion_frame, task);
  vl_loss_chart_set_task (VL_LOSS_CHART (self->chart), task);
  vl_eval_card_set_title (VL_EVAL_CARD (self->eval_card),
                          reg ? _("Per-target error") : seg ? _("Per-class IoU")
                      : det ? _("Per-class AP") : _("Per-class accuracy"));
  gtk_label_set_text (GTK_LABEL (self->eval_caption),
                      reg ? _("Predicted against true values of the validation split after the "
                              "last epoch; points on the dashed line are exact. Point at one to "
                              "see its image.")
                      : seg ? _("The trained model's masks of validation images (at the input "
                                "size), the median image first; below, the worst by their own "
                                "IoU. The bars are each class's IoU over the split.")
                      : det ? _("The trained model's boxes on validation images (solid; the true "
                                "boxes dashed), the median image first; below, the worst by "
                                "their missed and false boxes. The bars are each class's AP50 "
                                "over the split.")
                          : _("Confusion matrix of the validation split after the last epoch "
                              "(rows: true class, columns: predicted). Click a cell to see its "
                              "images."));
  VlStatCards *cards = VL_STAT_CARDS (self->stat_cards);
  vl_stat_cards_set_score_title (cards, reg ? "R²" : seg ? "mIoU" : det ? "AP50" : _("Accuracy"));
  vl_stat_cards_set_card_tooltip (cards, VL_STAT_SCORE,
    reg ? _("R²: the share of the targets' variance the model explains on the validation images "
            "(1 is exact), the mean over the targets; under it their mean absolute error, in the "
            "targets' own units")
  : seg ? _("Mean IoU over the classes on the validation images; under it the share of their "
            "pixels labelled right")
  : det ? _("COCO average precision at IoU 0.5 on the validation images; under it AP over IoU "
            "0.5 to 0.95")
        : _("Share of validation images whose most likely class is the right one (top-1); "
            "under it, with more than five classes, the share whose right class is among the "
            "five most likely (top-5)"));
  vl_stat_cards_set_card_tooltip (cards, VL_STAT_TRAIN_LOSS,
    reg ? _("Mean loss (MSE or smooth L1) on the standardised targets of the training images in "
            "the last epoch")
  : seg ? _("Mean cross-entropy over the pixels of the training images in the last epoch")
  : det ? _("Mean FCOS loss on the training images in the last epoch: focal loss on the classes, "
            "GIoU on the boxes and the centerness' cross-entropy")
        : _("Mean cross-entropy on the training images in the last epoch (with label smoothing)"));
  vl_stat_cards_set_card_tooltip (cards, VL_STAT_VAL_LOSS,
    reg ? _("Mean loss on the standardised targets of the validation images after the last "
            "epoch; ★ marks the lowest so far")
  : seg ? _("Mean cross-entropy over the pixels of the validation images after the last epoch; "
            "★ marks the lowest so far")
  : det ? _("Mean FCOS loss on the validation images after the last epoch; ★ marks the lowest "
            "so far")
        : _("Mean cross-entropy on the validation images after the last epoch; ★ marks the "
            "lowest so far"));
  if (!vl_window_is_running (self) && self->head)
    vl_window_set_head (self, self->head);   /* one output per class, or per target */
}

static void
on_task_selected (VlWindow *self)
{
  VlTaskKind task = vl_head_panel_get_task (VL_HEAD_PANEL (self->head_panel));
  if (task != self->task && !vl_window_is_running (self))
    {
      vl_window_set_task (self, task);
      /* the same folder read the other way: boxes for detection (a VOC folder has masks too) */
      if (self->data && self->data_cancel == NULL &&
          vl_dataset_is_detection (self->data->ds) != (task == VL_TASK_DETECT))
        {
          g_autofree char *spec = g_strdup (self->data->spec);
          vl_window_open_data (self, spec);
        }
      vl_window_update_actions (self);
    }
}

/* The image of a hovered scatter point, decoded on a worker thread. */
static void
scatter_thumb_done (VlWindow *self, int slot, GdkTexture *tex, gpointer user_data)
{
  int point = GPOINTER_TO_INT (user_data);
  if (tex && vl_scatter_view_get_hovered (VL_SCATTER_VIEW (self->scatter)) == point)
    vl_scatter_view_set_thumbnail (VL_SCATTER_VIEW (self->scatter), point, tex);
}

static void
on_scatter_hovered (VlScatterView *view, int point, VlWindow *self)
{
  if (self->scatter_thumb_cancel)
    g_cancellable_cancel (self->scatter_thumb_cancel);
  g_clear_object (&self->scatter_thumb_cancel);
  const int *items = g_object_get_data (G_OBJECT (view), "items");
  int n = GPOINTER_TO_INT (g_object_get_data (G_OBJECT (view), "n-items"));
  if (point < 0 || items == NULL || point >= n || self->data == NULL ||
      vl_dataset_n_values (self->data->ds) == 0)
    return;
  self->scatter_thumb_cancel = g_cancellable_new ();
  vl_window_load_thumbnails (self, self->data, VL_SPLIT_VAL, items + point, 1, 96,
                             self->scatter_thumb_cancel, scatter_thumb_done,
                             GINT_TO_POINTER (point), NULL);
}

/* A regression epoch: the scatter of its predictions, the error per target. */
static void
show_regress_epoch (VlWindow *self, const VlEpochMetrics *m)
{
  const VlRegressResult *r = &m->reg;
  g_autofree char *acc = g_strdup_printf ("%.3f", r->r2_mean);
  g_autofree char *mae = g_strdup_printf ("MAE %.4g", r->mae_mean);
  vl_stat_cards_set (VL_STAT_CARDS (self->stat_cards), VL_STAT_SCORE, acc);
  vl_stat_cards_set_detail (VL_STAT_CARDS (self->stat_cards), VL_STAT_SCORE, mae);
  g_autofree char *vl = g_strdup_printf ("%.4f%s", r->loss, m->best ? " ★" : "");
  vl_stat_cards_set (VL_STAT_CARDS (self->stat_cards), VL_STAT_VAL_LOSS, vl);
  const char *target = self->value_names && self->value_names[0] ? self->value_names[0] : NULL;
  if (r->pred != NULL)
    {
      /* the images' names, when the open dataset is the run's */
      g_autofree char **names = NULL;
      VlDataset *ds = self->data ? self->data->ds : NULL;
      gboolean same = ds && vl_dataset_n_values (ds) == r->n_values;
      if (same)
        {
          names = g_new0 (char *, r->n + 1);
          for (int64_t i = 0; i < r->n; i++)
            same = same && r->items[i] < vl_dataset_n_items (ds, VL_SPLIT_VAL);
          for (int64_t i = 0; same && i < r->n; i++)
            names[i] = (char *) vl_dataset_item_name (ds, VL_SPLIT_VAL, r->items[i]);
        }
      vl_scatter_view_set_result (VL_SCATTER_VIEW (self->scatter), r, 0, target,
                                  same ? (const char *const *) names : NULL);
      g_object_set_data_full (G_OBJECT (self->scatter), "items",
                              same ? g_memdup2 (r->items, sizeof (int) * MAX (r->n, 1)) : NULL,
                              g_free);
      g_object_set_data (G_OBJECT (self->scatter), "n-items", GINT_TO_POINTER ((int) r->n));
    }
  vl_eval_card_clear_rows (VL_EVAL_CARD (self->eval_card));
  for (int j = 0; j < r->n_values; j++)
    {
      const char *name = self->value_names && j < (int) g_strv_length (self->value_names)
                         ? self->value_names[j] : "?";
      g_autofree char *t = g_strdup_printf ("<b>%s</b>\nMAE %.4g · RMSE %.4g · R² %.3f",
                                            name, r->mae[j], r->rmse[j], r->r2[j]);
      GtkWidget *l = gtk_label_new (NULL);
      gtk_label_set_markup (GTK_LABEL (l), t);
      gtk_label_set_xalign (GTK_LABEL (l), 0);
      gtk_label_set_ellipsize (GTK_LABEL (l), PANGO_ELLIPSIZE_END);
      vl_eval_card_append_row (VL_EVAL_CARD (self->eval_card), l);
      GtkWidget *bar = gtk_level_bar_new_for_interval (0, 1);
      gtk_level_bar_set_value (GTK_LEVEL_BAR (bar), isfinite (r->r2[j]) ? CLAMP (r->r2[j], 0, 1)
                                                                          : 0);
      gtk_widget_set_tooltip_text (bar, _("R²: the share of the targets' variance the model "
                                          "explains (1: every value exact)"));
      vl_eval_card_append_row (VL_EVAL_CARD (self->eval_card), bar);
    }
  g_autofree char *summary = g_strdup_printf (_("Epoch %d · %lld validation images · MAE %.4g "
                                                "· RMSE %.4g · R² %.3f · loss %.4f"),
                                              m->epoch + 1, (long long) r->n, r->mae_mean,
                                              r->rmse_mean, r->r2_mean, r->loss);
  vl_eval_card_set_summary (VL_EVAL_CARD (self->eval_card), summary);
}

/* ------------------------------------------------------------------ metrics */

static void
show_class_accuracy (VlWindow *self, const VlEvalResult *r, char **names)
{
  vl_eval_card_clear_rows (VL_EVAL_CARD (self->eval_card));
  for (int k = 0; k < r->n_classes && k < 1000; k++)
    {
      GtkWidget *row = gtk_box_new (GTK_ORIENTATION_VERTICAL, 2);
      GtkWidget *line = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 6);
      GtkWidget *name = gtk_label_new (names && names[k] ? names[k] : "?");
      gtk_label_set_xalign (GTK_LABEL (name), 0);
      gtk_label_set_ellipsize (GTK_LABEL (name), PANGO_ELLIPSIZE_END);
      gtk_widget_set_hexpand (name, TRUE);
      gtk_box_append (GTK_BOX (line), name);
      g_autofree char *pct = format_pct (r->class_acc[k]);
      GtkWidget *v = gtk_label_new (pct);
      gtk_widget_add_css_class (v, "vl-numeric");
      gtk_box_append (GTK_BOX (line), v);
      gtk_box_append (GTK_BOX (row), line);
      GtkWidget *bar = gtk_level_bar_new_for_interval (0, 1);
      gtk_level_bar_set_value (GTK_LEVEL_BAR (bar), isfinite (r->class_acc[k]) ? r->class_acc[k] : 0);
      gtk_box_append (GTK_BOX (row), bar);
      vl_eval_card_append_row (VL_EVAL_CARD (self->eval_card), row);
    }
  int64_t correct = 0;
  for (int k = 0; k < r->n_classes; k++)
    correct += r->confusion[(gsize) k * r->n_classes + k];
  g_autofree char *top1 = format_pct (r->top1);
  g_autofree char *top5 = format_pct (r->top5);
  g_autofree char *with_top5 = isfinite (r->top5) && r->n_classes > 5
                                 ? g_strdup_printf (" · top-5 %s", top5) : g_strdup ("");
  g_autofree char *summary = g_strdup_printf (_("Top-1 %s (%lld of %lld)%s · loss %.4f"), top1,
                                              (long long) correct, (long long) r->n,
                                              with_top5, r->loss);
  vl_eval_card_set_summary (VL_EVAL_CARD (self->eval_card), summary);
}

void
vl_window_show_epoch (VlWindow *self, const VlEpochMetrics *m, char **names)
{
  VlLossChart *chart = VL_LOSS_CHART (self->chart);
  vl_loss_chart_add_epoch (chart, m);
  self->progress->n_epochs_done = m->epoch + 1;
  g_autofree char *ep = g_strdup_printf ("%d / %d", m->epoch + 1,
                                         MAX (self->progress->epochs_total, m->epoch + 1));
  vl_stat_cards_set (VL_STAT_CARDS (self->stat_cards), VL_STAT_EPOCH, ep);
  g_autofree char *tl = g_strdup_printf ("%.4f", m->train_loss);
  vl_stat_cards_set (VL_STAT_CARDS (self->stat_cards), VL_STAT_TRAIN_LOSS, tl);
  if (!vl_window_is_running (self))   /* while running, the lock events say it, with the parameters */
    vl_window_show_training_groups (self, m->unlocked, -1, m->cached);
  if (m->task == VL_TASK_REGRESS)
    {
      show_regress_epoch (self, m);
      return;
    }
  if (m->task == VL_TASK_SEGMENT)
    {
      vl_window_seg_show_epoch (self, m, names);
      return;
    }
  if (m->task == VL_TASK_DETECT)
    {
      vl_window_det_show_epoch (self, m, names);
      return;
    }
  g_autofree char *vl = g_strdup_printf ("%.4f%s", m->val.loss, m->best ? " ★" : "");
  vl_stat_cards_set (VL_STAT_CARDS (self->stat_cards), VL_STAT_VAL_LOSS, vl);
  g_autofree char *top1 = format_pct (m->val.top1);
  g_autofree char *top5 = format_pct (m->val.top5);
  /* with 5 classes or fewer the right class is always among the top five */
  g_autofree char *acc5 = isfinite (m->val.top5) && m->val.n_classes > 5
                            ? g_strdup_printf ("top-5 %s", top5) : NULL;
  vl_stat_cards_set (VL_STAT_CARDS (self->stat_cards), VL_STAT_SCORE, top1);
  vl_stat_cards_set_detail (VL_STAT_CARDS (self->stat_cards), VL_STAT_SCORE, acc5);

  const VlEvalResult *r = &m->val;
  vl_confusion_view_set_result (VL_CONFUSION_VIEW (self->confusion), r,
                                (const char *const *) names);
  g_autofree char *title = g_strdup_printf (_("Epoch %d · validation · %lld images"),
                                            m->epoch + 1, (long long) r->n);
  vl_confusion_view_set_title (VL_CONFUSION_VIEW (self->confusion), title);
  g_free (self->confusion_counts);
  self->confusion_counts = g_memdup2 (r->confusion, sizeof (int64_t) * r->n_classes * r->n_classes);
  show_class_accuracy (self, r, names);
}

void
vl_window_task_init (VlWindow *self)
{
  g_signal_connect_swapped (self->head_panel, "notify::task",
                            G_CALLBACK (on_task_selected), self);
  g_signal_connect (self->scatter, "point-hovered", G_CALLBACK (on_scatter_hovered), self);
}
