/* vl-det-data.h: the object-detection annotation readers behind vl_dataset_open with
 * options->detect (engine-internal): Pascal VOC XML (GMarkup), COCO JSON (json-glib) and YOLO
 * text labels, each giving images with boxes in their own pixels (x0, y0, x1, y1) and classes
 * numbered from 1 (class 0 is "background", as torchvision's FCOS counts it).
 *
 * Every image's header is read (its size bounds its boxes). Dropped and listed as skipped,
 * with the file and line (or the annotation's id): a box with no area, a box outside its image
 * (by more than a pixel; within that it is clipped), a class the set does not name, a crowd
 * annotation (COCO), an annotation or label file without its image, an image that does not
 * decode. A missing split list, annotation file or class list is an error naming the file.
 * Besides the layouts above, Roboflow's exports read too (COCO's SPLIT/_annotations.coco.json,
 * YOLO's SPLIT/images with SPLIT/labels; "valid" for val, and its dataset-name category that only
 * groups the others is not a class), COCO's own instances_train2017.json naming, and YOLO
 * segmentation labels (each polygon's extent, as Ultralytics reads them for detection). */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct {
  char  *image;       /* path */
  int    width, height;
  float *boxes;       /* (n, 4) */
  int   *labels;      /* (n) in [1, K) */
  int    n;
} VlDetItem;

typedef struct {
  GPtrArray *items[2];      /* VlDetItem *, train and val */
  GPtrArray *class_names;   /* char *, [0] = "background" */
  GPtrArray *skipped;       /* VlSkipped * */
  char      *description;
} VlDetSource;

/* Reads the layout found at root (VOC: Annotations/ and ImageSets/Main/; COCO:
 * annotations/instances_train.json; YOLO: labels/); an error names root when it is none. */
VlDetSource *vl_det_source_read (const char *root, GError **error);
void         vl_det_source_free (VlDetSource *s);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (VlDetSource, vl_det_source_free)

G_END_DECLS
