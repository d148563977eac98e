/* vl-task-view.h: what every result view says of itself — the tasks it applies to — so that
 * the window shows the views of the task at hand and hides the others (sysprof's sections
 * say the same of the documents they can show).
 *
 *   static gboolean scatter_applies_to (VlTaskView *v, VlTaskKind t) { return t == VL_TASK_REGRESS; }
 *   ...
 *   gtk_widget_set_visible (view, vl_task_view_applies_to (VL_TASK_VIEW (view), task));
 *
 * The loss curves and the attention view apply to every task; the confusion matrix to
 * classification; the scatter of predicted against true values to regression. */
#pragma once

#include <gtk/gtk.h>

#include "vl-task.h"

G_BEGIN_DECLS

#define VL_TYPE_TASK_VIEW (vl_task_view_get_type ())
G_DECLARE_INTERFACE (VlTaskView, vl_task_view, VL, TASK_VIEW, GtkWidget)

struct _VlTaskViewInterface {
  GTypeInterface parent_iface;
  gboolean (*applies_to) (VlTaskView *view, VlTaskKind task);
};

/* TRUE when the view shows something for runs of `task` (a view that does not say: every
 * task). */
gboolean vl_task_view_applies_to (VlTaskView *view, VlTaskKind task);
/* Shows each VlTaskView among the descendants of `root` that applies to task, hides the
 * others; returns how many are shown. */
int      vl_task_view_show_for   (GtkWidget *root, VlTaskKind task);

G_END_DECLS
