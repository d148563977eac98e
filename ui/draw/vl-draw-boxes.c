/* vl-draw-boxes.c: a detector's boxes drawn onto an image (see vl-draw-boxes.h). */
#include "vl-draw-boxes.h"
#include "vl-detect.h"     /* vl_det_place_labels */
#include "vl-seg-head.h"   /* vl_seg_palette: one colour per class across the app */

#include <pango/pangocairo.h>

void
vl_draw_class_color (int k, double rgb[3])
{
  static uint8_t palette[256 * 3];
  static gsize once = 0;
  if (g_once_init_enter (&once))
    {
      vl_seg_palette (palette);
      g_once_init_leave (&once, 1);
    }
  const int i = 1 + (k % 255);
  for (int c = 0; c < 3; c++)
    rgb[c] = palette[3 * i + c] / 255.0;
}

void
vl_draw_detections (cairo_t *cr, const VlDetection *dets, int n, double scale,
                    const char *const *names, double line, double font_px, double width,
                    double height)
{
  PangoLayout *font = pango_cairo_create_layout (cr);
  PangoFontDescription *desc = pango_font_description_from_string ("Sans");
  pango_font_description_set_absolute_size (desc, font_px * PANGO_SCALE);
  pango_layout_set_font_description (font, desc);
  pango_font_description_free (desc);
  const int n_names = names ? (int) g_strv_length ((char **) names) : 0;
  g_autofree double *boxes = g_new (double, 4 * MAX (n, 1));
  g_autofree double *tw = g_new (double, MAX (n, 1)), *th = g_new (double, MAX (n, 1));
  g_autofree double *xy = g_new (double, 2 * MAX (n, 1));
  g_auto(GStrv) tabs = g_new0 (char *, n + 1);
  for (int i = 0; i < n; i++)
    {
      for (int c = 0; c < 4; c++)
        boxes[4 * i + c] = dets[i].box[c] * scale;
      const int k = dets[i].label;
      tabs[i] = k >= 0 && k < n_names ? g_strdup_printf ("%s %.2f", names[k], dets[i].score)
                                      : g_strdup_printf ("class %d %.2f", k, dets[i].score);
      int pw, ph;
      pango_layout_set_text (font, tabs[i], -1);
      pango_layout_get_pixel_size (font, &pw, &ph);
      tw[i] = pw + 2 * line;
      th[i] = ph;
    }
  vl_det_place_labels (boxes, tw, th, n, width, 0, height, xy);
  cairo_set_line_width (cr, line);
  for (int pass = 0; pass < 2; pass++)   /* the frames, then the tabs over them */
    for (int i = n - 1; i >= 0; i--)     /* the best drawn last, on top */
      {
        double rgb[3];
        vl_draw_class_color (dets[i].label, rgb);
        cairo_set_source_rgb (cr, rgb[0], rgb[1], rgb[2]);
        const double *b = &boxes[4 * i];
        if (pass == 0)
          {
            /* inside the box, so that a box at the image's edge keeps its whole frame */
            cairo_rectangle (cr, b[0] + line / 2, b[1] + line / 2, MAX (b[2] - b[0] - line, 1),
                             MAX (b[3] - b[1] - line, 1));
            cairo_stroke (cr);
            continue;
          }
        cairo_rectangle (cr, xy[2 * i], xy[2 * i + 1], tw[i], th[i]);
        cairo_fill (cr);
        /* black or white text, whichever reads on the class colour */
        const double ink = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2] > 0.5 ? 0 : 1;
        cairo_set_source_rgb (cr, ink, ink, ink);
        cairo_move_to (cr, xy[2 * i] + line, xy[2 * i + 1]);
        pango_layout_set_text (font, tabs[i], -1);
        pango_cairo_show_layout (cr, font);
      }
  g_object_unref (font);
}
