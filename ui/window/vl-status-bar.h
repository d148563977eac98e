/* vl-status-bar.h: the window's status bar as a widget of its own (its template,
 * vl-status-bar.ui): a spinner while something loads, the status text, the training speed and
 * ETA, and the run's progress bar. It remembers the text it returns to when a run ends (the
 * "idle" text) and throttles the text a run writes. Main thread only. */
#pragma once

#include <gtk/gtk.h>

G_BEGIN_DECLS

#define VL_TYPE_STATUS_BAR (vl_status_bar_get_type ())
G_DECLARE_FINAL_TYPE (VlStatusBar, vl_status_bar, VL, STATUS_BAR, GtkBox)

GtkWidget  *vl_status_bar_new          (void);
/* The status text (NULL: empty); the label is only touched when the text changes. */
void        vl_status_bar_set_text     (VlStatusBar *bar, const char *text);
const char *vl_status_bar_get_text     (VlStatusBar *bar);
/* The text after a run (NULL: none) becomes the status text too; get: NULL when none. */
void        vl_status_bar_set_idle     (VlStatusBar *bar, const char *text);
const char *vl_status_bar_get_idle     (VlStatusBar *bar);
void        vl_status_bar_set_busy     (VlStatusBar *bar, gboolean busy);   /* the spinner */
void        vl_status_bar_set_fraction (VlStatusBar *bar, double fraction);
double      vl_status_bar_get_fraction (VlStatusBar *bar);
/* "N img/s" and "ETA …" (eta_s in seconds); vl_status_bar_clear_rate empties both. */
void        vl_status_bar_set_rate     (VlStatusBar *bar, double images_per_s, double eta_s);
void        vl_status_bar_clear_rate   (VlStatusBar *bar);
/* TRUE at most five times a second (each change re-lays out the window), or when force; a TRUE
 * starts the next interval. */
gboolean    vl_status_bar_due          (VlStatusBar *bar, gboolean force);
/* The status text's label (tests write long texts into it). */
GtkWidget  *vl_status_bar_get_label    (VlStatusBar *bar);

G_END_DECLS
