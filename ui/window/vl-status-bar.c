/* vl-status-bar.c: the window's status bar (see vl-status-bar.h). */
#include "vl-status-bar.h"

#include <glib/gi18n.h>

#include "vl-format.h"

struct _VlStatusBar {
  GtkBox     parent_instance;
  GtkWidget *status_spinner, *status_label, *speed_label, *eta_label, *progress_bar;
  char      *idle;           /* what the bar says after a run ends */
  gint64     last_us;        /* the last time vl_status_bar_due said TRUE */
};

G_DEFINE_FINAL_TYPE (VlStatusBar, vl_status_bar, GTK_TYPE_BOX)

void
vl_status_bar_set_text (VlStatusBar *bar, const char *text)
{
  g_return_if_fail (VL_IS_STATUS_BAR (bar));
  if (g_strcmp0 (gtk_label_get_text (GTK_LABEL (bar->status_label)), text ? text : "") != 0)
    gtk_label_set_text (GTK_LABEL (bar->status_label), text ? text : "");
}

const char *
vl_status_bar_get_text (VlStatusBar *bar)
{
  g_return_val_if_fail (VL_IS_STATUS_BAR (bar), NULL);
  return gtk_label_get_text (GTK_LABEL (bar->status_label));
}

void
vl_status_bar_set_idle (VlStatusBar *bar, const char *text)
{
  g_return_if_fail (VL_IS_STATUS_BAR (bar));
  g_free (bar->idle);
  bar->idle = g_strdup (text);
  if (text)
    vl_status_bar_set_text (bar, text);
}

const char *
vl_status_bar_get_idle (VlStatusBar *bar)
{
  g_return_val_if_fail (VL_IS_STATUS_BAR (bar), NULL);
  return bar->idle;
}

void
vl_status_bar_set_busy (VlStatusBar *bar, gboolean busy)
{
  g_return_if_fail (VL_IS_STATUS_BAR (bar));
  gtk_spinner_set_spinning (GTK_SPINNER (bar->status_spinner), busy);
}

void
vl_status_bar_set_fraction (VlStatusBar *bar, double fraction)
{
  g_return_if_fail (VL_IS_STATUS_BAR (bar));
  gtk_progress_bar_set_fraction (GTK_PROGRESS_BAR (bar->progress_bar), CLAMP (fraction, 0, 1));
}

double
vl_status_bar_get_fraction (VlStatusBar *bar)
{
  g_return_val_if_fail (VL_IS_STATUS_BAR (bar), 0);
  return gtk_progress_bar_get_fraction (GTK_PROGRESS_BAR (bar->progress_bar));
}

void
vl_status_bar_set_rate (VlStatusBar *bar, double images_per_s, double eta_s)
{
  g_return_if_fail (VL_IS_STATUS_BAR (bar));
  g_autofree char *speed = g_strdup_printf (_("%.0f img/s"), images_per_s);
  gtk_label_set_text (GTK_LABEL (bar->speed_label), speed);
  char eta[32];
  vl_format_duration (eta, sizeof eta, eta_s);
  g_autofree char *eta_text = g_strdup_printf ("ETA %s", eta);
  gtk_label_set_text (GTK_LABEL (bar->eta_label), eta_text);
}

void
vl_status_bar_clear_rate (VlStatusBar *bar)
{
  g_return_if_fail (VL_IS_STATUS_BAR (bar));
  gtk_label_set_text (GTK_LABEL (bar->speed_label), "");
  gtk_label_set_text (GTK_LABEL (bar->eta_label), "");
}

gboolean
vl_status_bar_due (VlStatusBar *bar, gboolean force)
{
  g_return_val_if_fail (VL_IS_STATUS_BAR (bar), FALSE);
  gint64 now = g_get_monotonic_time ();
  if (now - bar->last_us < 200000 && !force)
    return FALSE;
  bar->last_us = now;
  return TRUE;
}

GtkWidget *
vl_status_bar_get_label (VlStatusBar *bar)
{
  g_return_val_if_fail (VL_IS_STATUS_BAR (bar), NULL);
  return bar->status_label;
}

static void
vl_status_bar_dispose (GObject *object)
{
  gtk_widget_dispose_template (GTK_WIDGET (object), VL_TYPE_STATUS_BAR);
  G_OBJECT_CLASS (vl_status_bar_parent_class)->dispose (object);
}

static void
vl_status_bar_finalize (GObject *object)
{
  g_free (VL_STATUS_BAR (object)->idle);
  G_OBJECT_CLASS (vl_status_bar_parent_class)->finalize (object);
}

static void
vl_status_bar_class_init (VlStatusBarClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);
  object_class->dispose = vl_status_bar_dispose;
  object_class->finalize = vl_status_bar_finalize;
  gtk_widget_class_set_template_from_resource (widget_class, "/org/vitlab/Vitlab/vl-status-bar.ui");
#define CHILD(name) gtk_widget_class_bind_template_child (widget_class, VlStatusBar, name)
  CHILD (status_spinner);
  CHILD (status_label);
  CHILD (speed_label);
  CHILD (eta_label);
  CHILD (progress_bar);
#undef CHILD
}

static void
vl_status_bar_init (VlStatusBar *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
}

GtkWidget *
vl_status_bar_new (void)
{
  return g_object_new (VL_TYPE_STATUS_BAR, NULL);
}
