/* vl-mask-view.h: a segmentation run's masks over its validation images.
 *
 * The image the model saw (squashed to its input size) with, at the chosen opacity, the
 * predicted mask, the true mask, or their difference (correct pixels green, wrong ones red,
 * ignored ones left bare), in the Pascal VOC colours of vl_seg_palette; a legend names each
 * class's colour (or the difference's three). Below, a strip of the validation images the model
 * does worst on (by their own IoU): activating one emits ::item-activated with its item, and the
 * owner shows it with vl_mask_view_set_sample.
 *
 *   view = vl_mask_view_new ();
 *   vl_mask_view_set_classes (view, K, names);
 *   vl_mask_view_set_sample (view, item, image, pred, truth, "cat_12.jpg · IoU 0.41");
 *   vl_mask_view_set_worst (view, n, items, ious, thumbs, names);
 *   g_signal_connect (view, "item-activated", G_CALLBACK (show_item), win);
 *
 * Implements VlTaskView: it applies to segmentation. */
#pragma once

#include <gtk/gtk.h>

#include "vl-image.h"
#include "vl-task.h"

G_BEGIN_DECLS

typedef enum {
  VL_MASK_MODE_PREDICTED,
  VL_MASK_MODE_TRUE,
  VL_MASK_MODE_DIFFERENCE,
} VlMaskMode;

#define VL_TYPE_MASK_VIEW (vl_mask_view_get_type ())
G_DECLARE_FINAL_TYPE (VlMaskView, vl_mask_view, VL, MASK_VIEW, GtkWidget)

GtkWidget *vl_mask_view_new          (void);
/* The classes (K names, class k drawn in palette colour k) for the legend. */
void       vl_mask_view_set_classes  (VlMaskView *view, int n_classes, const char *const *names);
/* Shows item `item`: image (RGB or gray, w x h) with its predicted and true masks (w x h class
 * indices, 255 in truth = ignored; either may be NULL), all copied. image NULL clears. */
void       vl_mask_view_set_sample   (VlMaskView *view, int item, const VlImage *image,
                                      const uint8_t *pred, const uint8_t *truth,
                                      const char *title);
/* The worst validation images: n items with their IoU and thumbnails (may be NULL) and names. */
void       vl_mask_view_set_worst    (VlMaskView *view, int n, const int *items,
                                      const double *iou, GdkTexture *const *thumbs,
                                      const char *const *names);
void       vl_mask_view_clear        (VlMaskView *view);
/* The item shown (-1: none), the worst strip's length, its i-th item. */
int        vl_mask_view_get_item     (VlMaskView *view);
int        vl_mask_view_get_n_worst  (VlMaskView *view);
int        vl_mask_view_get_worst_item (VlMaskView *view, int i);
/* Activates the i-th image of the worst strip (what a click does). */
void       vl_mask_view_activate_worst (VlMaskView *view, int i);
/* The legend's entries (classes, or 3 in difference mode). */
int        vl_mask_view_get_n_legend (VlMaskView *view);
/* The colour drawn at image pixel (x, y) in the current mode at the current opacity: the
 * image's pixel blended with the mask's colour. FALSE outside the image or without one. */
gboolean   vl_mask_view_pixel        (VlMaskView *view, int x, int y, guint8 rgb[3]);

/* A texture of image with mask's colours (class indices, NULL: none) laid over at opacity, as
 * the view draws the predicted mask (for thumbnails). */
GdkTexture *vl_mask_texture          (const VlImage *image, const uint8_t *mask, double opacity);

/* Pango markup of a legend entry: a square in rgb (NULL: an empty square) and the name; the
 * class form takes class k's palette colour (black, e.g. VOC's background, as the empty one). */
char       *vl_mask_swatch_markup    (const guint8 *rgb, const char *name);
char       *vl_mask_class_markup     (int k, const char *name);

VlMaskMode vl_mask_view_get_mode     (VlMaskView *view);
void       vl_mask_view_set_mode     (VlMaskView *view, VlMaskMode mode);
double     vl_mask_view_get_opacity  (VlMaskView *view);
void       vl_mask_view_set_opacity  (VlMaskView *view, double opacity);

G_END_DECLS
