/* vl-application.h: vitlab's GtkApplication: command line, styles, app actions, main window.
 *
 *   vitlab [--backbone PATH] [--data SPEC] [--run DIR] [--probe IMAGE] [--preset NAME]
 *          [--epochs N] [--train] [--page NAME]...
 *          [--screenshot PNG [--screenshot-when ready|training|finished]]
 *   vitlab --version
 *
 * Without --backbone/--data, the last ones used (GSettings) or the defaults found beside the
 * checkout ($VITLAB_SHARED or ../shared: weights/vit-tiny-augreg-in1k, datasets/hymenoptera)
 * are opened, so a first-time user can press Train at once. --probe makes an image the
 * attention probe, as a drop on the window does. --screenshot renders the window to
 * a PNG (once loaded, after an epoch of training, or when the run has finished) and quits. */
#pragma once

#include <gtk/gtk.h>

G_BEGIN_DECLS

#define VL_TYPE_APPLICATION (vl_application_get_type ())
G_DECLARE_FINAL_TYPE (VlApplication, vl_application, VL, APPLICATION, GtkApplication)

/* Also makes sure GSettings has vitlab's schema: when it is not installed, a compiled copy
 * from the program's resources, with the in-memory backend
 * (see vl_application_settings_fallback). */
VlApplication *vl_application_new (void);
/* Why settings are not kept (the schema is not installed), or NULL when they are. */
const char    *vl_application_settings_fallback (void);

/* 1 when --screenshot gave up because the backbone or the dataset failed to load, else 0. */
int            vl_application_get_exit_status (VlApplication *self);

/* Renders a window (its widget tree, no window-manager frame) to a PNG file. */
gboolean vl_window_save_screenshot (GtkWindow *window, const char *path, GError **error);

G_END_DECLS
