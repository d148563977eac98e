/* vl-colormap.h: perceptually uniform colour maps for heatmaps (matplotlib's viridis and
 * inferno, as 256-entry lookup tables), and the few drawing helpers the widgets share
 * (theme colours, fonts, atomic PNG export).
 *
 *   guint8 rgb[3];
 *   vl_colormap_map_u8 (VL_COLORMAP_VIRIDIS, 0.75, rgb);
 *
 * A value t in [0, 1] picks entry floor (t * 256) clamped to 0..255, as matplotlib's
 * ListedColormap does (no interpolation between entries); values outside [0, 1] are clamped
 * and NaN maps to entry 0. */
#pragma once

#include <gtk/gtk.h>

G_BEGIN_DECLS

typedef enum {
  VL_COLORMAP_VIRIDIS,
  VL_COLORMAP_INFERNO,
} VlColormap;

#define VL_N_COLORMAPS 2
#define VL_TYPE_COLORMAP (vl_colormap_get_type ())
GType        vl_colormap_get_type (void);

/* The 256 entries (r, g, b in [0, 1]) of a map. */
const float (*vl_colormap_lut (VlColormap cmap))[3];
/* Its name: "viridis", "inferno". */
const char  *vl_colormap_name     (VlColormap cmap);
/* The entry index of t (see above). */
int          vl_colormap_index    (double t);
void         vl_colormap_map      (VlColormap cmap, double t, double rgb[3]);
void         vl_colormap_map_u8   (VlColormap cmap, double t, guint8 rgb[3]);
/* The map as 256 packed 0xffRRGGBB pixels (cairo's ARGB32/RGB24 layout in native order). */
const guint32 *vl_colormap_argb   (VlColormap cmap);

/* ---- drawing helpers shared by the widgets (vl_draw_*) ---- */

/* The colours a widget draws with: its style's foreground (GTK 4.8: the style context's
 * colour), a background for exports (white, or a dark grey under a dark style), and whether
 * the style is dark (a light foreground). */
typedef struct {
  GdkRGBA  fg;
  GdkRGBA  bg;
  gboolean dark;
} VlDrawColors;

void      vl_draw_colors_from_widget (GtkWidget *widget, VlDrawColors *colors);
void      vl_draw_set_source         (cairo_t *cr, const GdkRGBA *c, double alpha);
/* A Pango layout with the widget's font scaled by `scale` (1 = the widget's size), from the
 * widget's Pango context (cr may be NULL: measuring gives the same sizes as drawing). */
PangoLayout *vl_draw_layout          (cairo_t *cr, GtkWidget *widget, double scale);
/* Draws text with its top-left (xalign 0, yalign 0) … bottom-right (1, 1) at (x, y). */
void      vl_draw_text               (cairo_t *cr, PangoLayout *layout, const char *text,
                                      double x, double y, double xalign, double yalign);
/* The pixel size of text in layout. */
void      vl_draw_text_size          (PangoLayout *layout, const char *text, int *width,
                                      int *height);
/* Writes an image surface to path as PNG, atomically (a temporary file, then renamed). */
gboolean  vl_draw_write_png          (cairo_surface_t *surface, const char *path,
                                      GError **error);

G_END_DECLS
