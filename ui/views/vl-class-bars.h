/* vl-class-bars.h: one horizontal bar per class for a score in [0, 1] (per-class AP of a
 * detector, per-class IoU of a segmenter).
 *
 * A row per class: its name, a bar in the class's colour (vl_draw_class_color, so a class
 * looks the same here as on the image), the value to three decimals; a class without a value
 * (NaN or negative: no ground truth) reads "—" with no bar. A dashed line marks the mean of the
 * values that exist, named in the title ("AP per class · mean 0.412").
 *
 *   bars = vl_class_bars_new ();
 *   vl_class_bars_set (VL_CLASS_BARS (bars), _("AP per class"), names, ap, K, 0);
 *
 * The widget asks for one row's height per class. */
#pragma once

#include <gtk/gtk.h>

G_BEGIN_DECLS

#define VL_TYPE_CLASS_BARS (vl_class_bars_get_type ())
G_DECLARE_FINAL_TYPE (VlClassBars, vl_class_bars, VL, CLASS_BARS, GtkWidget)

GtkWidget *vl_class_bars_new   (void);
/* Copies n values and names (NULL: "class k"). Value i is drawn in the colour of class
 * i + colour_offset (vl_draw_class_color): 0 for a detector; -1 for segmentation's per-class
 * IoU, whose class 0 is the background (drawn grey), so each class has its mask's colour. */
void       vl_class_bars_set   (VlClassBars *bars, const char *title, const char *const *names,
                                const double *values, int n, int colour_offset);
void       vl_class_bars_clear (VlClassBars *bars);
int        vl_class_bars_get_n (VlClassBars *bars);
/* The mean of the values that exist (NaN when none does). */
double     vl_class_bars_get_mean (VlClassBars *bars);

G_END_DECLS
