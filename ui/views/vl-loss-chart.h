/* vl-loss-chart.h: training curves of the runs of this session.
 *
 * Training loss per step (the raw batch losses as a faint line, and a bias-corrected
 * exponential moving average over them on top), validation loss per epoch (left axis, shared
 * with the training loss) and validation top-1 accuracy (right axis), earlier runs of the
 * session overlaid in muted colours, and below the plot a heat strip of per-layer-group
 * gradient norms over the steps (one row per group, viridis over log10 of the norm; a frozen
 * group's zero norm is left blank).
 *
 * Hovering shows a vertical rule and a read-out of the step under the pointer. Drawing
 * decimates to pixel columns (first, min, max and last value per column), so a run of
 * hundreds of thousands of steps draws as fast as one of a few hundred.
 *
 *   chart = vl_loss_chart_new ();
 *   vl_loss_chart_set_total_steps (chart, ev->total_steps);            // READY
 *   vl_loss_chart_add_steps (chart, ev->points, ev->n_points);         // STEP
 *   vl_loss_chart_set_group_norms (chart, n_groups, names, ev->group_grad_norms, ev->step);
 *   vl_loss_chart_add_epoch (chart, ev->metrics);                      // EPOCH
 *   vl_loss_chart_new_run (chart, "lr 3e-4, last 4 groups");          // before the next run
 *
 * Properties: "log-scale" (the loss axis), "smoothing" (the EMA weight, 0 … 0.999),
 * "total-steps" (the x axis spans at least this many steps; 0: the data), "n-points"
 * (read-only). The property action "chart.log-scale" toggles the scale from a menu or a
 * toggle button inside the chart. */
#pragma once

#include <gtk/gtk.h>

#include "vl-trainer.h"

G_BEGIN_DECLS

#define VL_TYPE_LOSS_CHART (vl_loss_chart_get_type ())
G_DECLARE_FINAL_TYPE (VlLossChart, vl_loss_chart, VL, LOSS_CHART, GtkWidget)

GtkWidget *vl_loss_chart_new             (void);

/* Appends training steps to the current run (copied; steps should increase). */
void       vl_loss_chart_add_steps       (VlLossChart *chart, const VlStepPoint *points, int n);
/* Adds (or replaces, by epoch number) one epoch's validation metrics; drawn at m->step. */
void       vl_loss_chart_add_epoch       (VlLossChart *chart, const VlEpochMetrics *m);
/* Records the gradient norm of each layer group at `step` (names[n_groups], norms[n_groups]).
 * A different set of names starts the strip afresh. */
void       vl_loss_chart_set_group_norms (VlLossChart *chart, int n_groups,
                                          const char *const *names, const double *norms,
                                          int64_t step);
/* Moves the current run (when it has any data) to the overlaid history under its label and
 * starts a new, empty one called `label` (NULL: "run N"). */
void       vl_loss_chart_new_run         (VlLossChart *chart, const char *label);
/* Relabels the current run. */
void       vl_loss_chart_set_run_label   (VlLossChart *chart, const char *label);
/* Forgets everything: the current run, the history and the gradient strip. */
void       vl_loss_chart_clear           (VlLossChart *chart);
/* What the right axis will plot (accuracy, R², mIoU, AP50) before the first epoch says it. */
void       vl_loss_chart_set_task        (VlLossChart *chart, VlTaskKind task);

void       vl_loss_chart_set_log_scale   (VlLossChart *chart, gboolean log_scale);
gboolean   vl_loss_chart_get_log_scale   (VlLossChart *chart);
void       vl_loss_chart_set_smoothing   (VlLossChart *chart, double smoothing);
double     vl_loss_chart_get_smoothing   (VlLossChart *chart);
void       vl_loss_chart_set_total_steps (VlLossChart *chart, int64_t total_steps);

/* Steps in the current run, epochs in it, and runs in the history. */
int        vl_loss_chart_get_n_points    (VlLossChart *chart);
int        vl_loss_chart_get_n_epochs    (VlLossChart *chart);
int        vl_loss_chart_get_n_history   (VlLossChart *chart);
/* The smoothed loss of the current run's i-th step. */
double     vl_loss_chart_get_smoothed    (VlLossChart *chart, int i);

/* Renders the chart (without the hover read-out) on an opaque background of the current
 * style at width x height pixels and writes it atomically. */
gboolean   vl_loss_chart_export_png      (VlLossChart *chart, const char *path, int width,
                                          int height, GError **error);
/* Writes every step of every run, oldest run first, atomically, one line per step:
 *   run,step,epoch,loss,loss_smoothed,lr,grad_norm,val_loss,val_top1,val_top5
 * The validation columns are filled on the row of the step that ended the epoch (and empty
 * elsewhere); an epoch whose last step is not among the steps gets a row of its own with the
 * step columns empty. Numbers use '.' whatever the locale; labels are quoted when needed. */
gboolean   vl_loss_chart_export_csv      (VlLossChart *chart, const char *path,
                                          GError **error);

/* What the pointer handlers call: set (or, with x < 0, clear) the hover position. */
void       vl_loss_chart_hover_at        (VlLossChart *chart, double x, double y);

G_END_DECLS
