/* vl-draw-boxes.h: a detector's boxes drawn onto an image as the app shows them, for the Try It
 * page and vitlab-cli predict's NAME-boxes.png: each box a frame in its class's colour with a
 * "class 0.87" tab on it, the tabs placed so none covers another (vl_det_place_labels), the best
 * drawn on top. Needs cairo and Pango only (vitlab-cli links it without GTK).
 *
 *   vl_draw_detections (cr, dets, n, scale, names, line, font_px, width, height);
 */
#pragma once

#include <cairo.h>
#include <glib.h>

#include "vl-fcos.h"   /* VlDetection */

G_BEGIN_DECLS

/* The RGB colour of class k (0-based) wherever the app draws one: the Pascal VOC palette's
 * entry k + 1, as the segmentation masks colour class k + 1 over the background. */
void vl_draw_class_color (int k, double rgb[3]);

/* Draws the n detections (the best first; boxes in image pixels, drawn times scale) on cr, over
 * a width x height picture: frames line wide, tabs in a font_px Sans with line of padding,
 * labelled names[label] ("class K" past the NULL-terminated names). */
void vl_draw_detections (cairo_t *cr, const VlDetection *dets, int n, double scale,
                         const char *const *names, double line, double font_px, double width,
                         double height);

G_END_DECLS
