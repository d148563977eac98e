/* vl-task-view.c: the interface result views implement (see vl-task-view.h). */
#include "vl-task-view.h"

G_DEFINE_INTERFACE (VlTaskView, vl_task_view, GTK_TYPE_WIDGET)

static void
vl_task_view_default_init (VlTaskViewInterface *iface)
{
}

gboolean
vl_task_view_applies_to (VlTaskView *view, VlTaskKind task)
{
  g_return_val_if_fail (VL_IS_TASK_VIEW (view), FALSE);
  VlTaskViewInterface *iface = VL_TASK_VIEW_GET_IFACE (view);
  return iface->applies_to == NULL || iface->applies_to (view, task);
}

int
vl_task_view_show_for (GtkWidget *root, VlTaskKind task)
{
  int shown = 0;
  for (GtkWidget *c = gtk_widget_get_first_child (root); c; c = gtk_widget_get_next_sibling (c))
    {
      if (VL_IS_TASK_VIEW (c))
        {
          gboolean on = vl_task_view_applies_to (VL_TASK_VIEW (c), task);
          gtk_widget_set_visible (c, on);
          shown += on;
        }
      else
        shown += vl_task_view_show_for (c, task);
    }
  return shown;
}
