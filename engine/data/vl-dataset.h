/* vl-dataset.h: labelled image datasets, augmentation, and a prefetching batch loader.
 *
 * Sources (the spec string of vl_dataset_open):
 *   DIR                      one subfolder per class (DIR/CLASS/x.jpg), or DIR/train/CLASS and
 *                            DIR/val/CLASS; without val/, a stratified split by val_fraction
 *   fashion-mnist[:classes=5-9,per-class=100,val-per-class=N]
 *                            Debian's dataset-fashion-mnist (gzip IDX under
 *                            /usr/share/datasets/fashion-mnist/); train = its training images,
 *                            val = its test images, of the chosen classes; per-class caps train
 *   fashion-mnist-rotate[:classes=…,per-class=…,max-angle=45]
 *                            regression: each image rotated by a seeded uniform angle in
 *                            [-max-angle, max-angle] degrees, the target being that angle
 *   DIR with targets.csv     regression: DIR/targets.csv (file,target1[,target2…]; a seeded
 *                            split by val_fraction) or DIR/train/ and DIR/val/ each with one
 *   cifar10:DIR | cifar100:DIR
 *                            CIFAR binary batches (data_batch_*.bin / test_batch.bin, or
 *                            train.bin / test.bin for CIFAR-100 fine labels)
 * Segmentation (vl_dataset_is_segmentation):
 *   DIR in the Pascal VOC layout
 *                            JPEGImages/NAME.jpg (any decodable image), SegmentationClass/NAME.png
 *                            (8-bit index masks, palette or gray, 255 ignored),
 *                            ImageSets/Segmentation/{train,val}.txt; class names from
 *                            DIR/labels.txt (one a line), else "class N" up to the largest value
 *   DIR with images/ and masks/
 *                            images/{train,val}/NAME.ext + masks/{train,val}/NAME.png, or
 *                            images/NAME.ext + masks/NAME.png and a seeded split by val_fraction;
 *                            class names from DIR/labels.txt as above
 *   fashion-mnist-scenes[:train=1000,val=500,size=84,classes=0-9,seed=0]
 *                            S x S black canvases holding 1-3 garments (uniform), each placed
 *                            at a seeded uniform integer position such that its tight box (pixels
 *                            >= 26) lies in the canvas and meets no earlier item's box (50 tries,
 *                            else dropped); pixel = max over the items; mask = class + 1 where the
 *                            item's pixel >= 26, else 0 (background). Train scenes from the
 *                            training images, val scenes from the test images.
 *   A mask whose size differs from its image, or an image without a mask, is an error naming
 *   both files at opening; a value outside the classes, when the item is loaded.
 * Detection (options->detect; vl_dataset_is_detection): each item has 0 or more boxes (x0, y0,
 * x1, y1 in its image's pixels) with a class; class 0 is "background" (torchvision's FCOS
 * numbering: no box has it) and the object classes follow from 1:
 *   DIR in the Pascal VOC layout with Annotations/NAME.xml and ImageSets/Main/{train,val}.txt
 *                            classes: the objects' names, sorted
 *   DIR with annotations/instances_{train,val}.json (COCO) and images/{train,val}/
 *                            classes: the categories in id order
 *   DIR with images/{train,val}/ and labels/{train,val}/NAME.txt (YOLO: class cx cy w h,
 *                            normalised; names from classes.txt or data.yaml's names)
 *   fashion-mnist-scenes[:…] the scenes above, each garment's tight box (class = garment + 1)
 *   Degenerate and out-of-image boxes and unknown classes are dropped and listed as skipped
 *   (the file and line, or the annotation's id); a label file without an image likewise.
 * Classes are numbered in sorted folder-name order (or the dataset's own order), labels 0..K-1. */
#pragma once

#include <glib.h>
#include <stdint.h>

#include "vl-augment.h"   /* VlAugment */
#include "vl-image.h"
#include "vl-skipped.h"

G_BEGIN_DECLS

typedef enum {
  VL_SPLIT_TRAIN,
  VL_SPLIT_VAL,
} VlSplit;

typedef struct {
  double   val_fraction;   /* 0.2: used when the source has no validation split */
  uint64_t seed;           /* split and shuffling */
  gboolean detect;         /* open the source as an object-detection set (boxes): see
                            * "Detection" above */
} VlDatasetOptions;

#define VL_DATASET_OPTIONS_DEFAULT { .val_fraction = 0.2, .seed = 0 }

typedef struct _VlDataset VlDataset;

/* Scans the source (image headers only, not pixels). Files that are not images, empty, or above
 * VL_IMAGE_MAX_PIXELS are skipped and listed. Fewer than two classes, an empty class, or no
 * images at all is an error naming the folder. */
VlDataset  *vl_dataset_open          (const char *spec, const VlDatasetOptions *options,
                                      GError **error);
void        vl_dataset_free          (VlDataset *ds);
/* A dataset of in-memory images, already preprocessed (CHW floats, channels x size x size), for
 * tests and synthetic data. The arrays are copied. Augmentation on them: none, or a horizontal
 * flip (light and strong). */
VlDataset  *vl_dataset_new_memory    (int n_classes, const char *const *class_names,
                                      int channels, int size,
                                      const float *train_images, const int *train_labels,
                                      int n_train,
                                      const float *val_images, const int *val_labels, int n_val);
const char *vl_dataset_description   (VlDataset *ds);   /* e.g. "hymenoptera (train/val folders)" */
int         vl_dataset_n_classes     (VlDataset *ds);
const char *vl_dataset_class_name    (VlDataset *ds, int k);
int         vl_dataset_n_items       (VlDataset *ds, VlSplit split);
int         vl_dataset_class_count   (VlDataset *ds, VlSplit split, int k);
int         vl_dataset_label         (VlDataset *ds, VlSplit split, int i);
/* File path (or record name) of item i. */
const char *vl_dataset_item_name     (VlDataset *ds, VlSplit split, int i);
/* Regression targets: how many numbers each item carries (0 for a dataset of classes only),
 * their names, and item i's (n_values floats, in the targets' own units). */
int         vl_dataset_n_values      (VlDataset *ds);
const char *vl_dataset_value_name    (VlDataset *ds, int j);
const float*vl_dataset_values        (VlDataset *ds, VlSplit split, int i);
/* Segmentation: TRUE when every item has a mask of class indices (VOC layout, mask-pair
 * folders, fashion-mnist-scenes). Classes then include the background (class 0 of the
 * built-in sets) and vl_dataset_label is 0 for every item. */
gboolean    vl_dataset_is_segmentation (VlDataset *ds);
/* The mask file (or record name) of item i; NULL without masks. */
const char *vl_dataset_mask_name     (VlDataset *ds, VlSplit split, int i);
/* Item i's mask at its image's own size (g_free): class indices, 255 ignored. A mask that does
 * not decode or holds a value outside the classes (and not 255) is an error naming the mask
 * and its image, and the item is added to the skipped list. */
uint8_t    *vl_dataset_load_mask     (VlDataset *ds, VlSplit split, int i, int *width,
                                      int *height, GError **error);
/* Detection: TRUE for a set opened with options->detect; the most boxes any item has; item i's
 * boxes (n, 4) in its image's pixels and their classes (labels may be NULL). */
gboolean    vl_dataset_is_detection  (VlDataset *ds);
int         vl_dataset_max_boxes     (VlDataset *ds);
const float*vl_dataset_boxes         (VlDataset *ds, VlSplit split, int i, const int **labels,
                                      int *n);
/* The size of the image item i's boxes are in (its own, read from its header at opening). */
void        vl_dataset_boxes_size    (VlDataset *ds, VlSplit split, int i, int *width,
                                      int *height);
/* Native channel count of the source (1 for Fashion-MNIST, 3 for folders and CIFAR). */
int         vl_dataset_channels      (VlDataset *ds);

/* Skipped items so far (scan and decode); a copy, safe to call from any thread. Free with
 * g_ptr_array_unref. */
GPtrArray  *vl_dataset_skipped       (VlDataset *ds);

/* Decodes item i and writes it preprocessed, CHW floats (pp->channels * pp->size²), into out.
 * aug_seed makes the augmentation deterministic. An image that fails to decode returns FALSE
 * with an error naming the file and is added to the skipped list. Thread-safe. */
gboolean    vl_dataset_load          (VlDataset *ds, VlSplit split, int i,
                                      const VlPreprocess *pp, VlAugment augment,
                                      uint64_t aug_seed, float *out, GError **error);

/* What an image is to be learnt as, after the augmentation its pixels went through: its class,
 * and its regression targets (values: the caller's n_values floats; NULL: not wanted). A
 * target that the augmentation changes follows it: the angle of fashion-mnist-rotate changes
 * sign with a mirrored image. (Targets.csv values are taken as they are: choose augment none
 * when yours depend on left and right.) Masks and boxes follow their images through
 * vl_augment_apply_mask and vl_augment_apply_boxes (vl-augment.h). */
typedef struct {
  int      label;
  float   *values;
  uint8_t *mask;   /* segmentation: pp->size² bytes receive the item's mask (class indices,
                    * 255 ignored) under the image's augmentation, nearest neighbour; NULL: not
                    * wanted. Ignored for a dataset without masks. */
  float   *boxes;  /* detection: room for vl_dataset_max_boxes (n, 4) boxes, which receive the
                    * item's boxes under the augmentation in output pixels (clipped; those left
                    * under 1 pixel wide or high dropped); NULL: not wanted */
  int     *box_labels;   /* their classes (room as boxes) */
  int      n_boxes;      /* out: how many */
} VlTarget;

/* vl_dataset_load, and the item's target under the same augmentation. */
gboolean    vl_dataset_load_target   (VlDataset *ds, VlSplit split, int i,
                                      const VlPreprocess *pp, VlAugment augment,
                                      uint64_t aug_seed, float *out, VlTarget *target,
                                      GError **error);

/* A loader yields batches of one split in a (seed, epoch)-determined order, decoding and
 * augmenting on its own prefetch thread while the caller computes. */
typedef struct _VlLoader VlLoader;

typedef struct {
  const float *images;     /* (n, C, S, S) */
  const int   *labels;     /* (n) */
  const float *values;     /* (n, n_values) regression targets after augmentation (VlTarget);
                            * NULL when the dataset has none */
  int          n_values;
  const uint8_t *masks;    /* (n, S, S) segmentation masks after augmentation (VlTarget.mask);
                            * NULL for a dataset without masks */
  const float *boxes;      /* (n, max_boxes, 4) detection: the boxes after augmentation
                            * (VlTarget.boxes), n_boxes[j] of them for image j; NULL without */
  const int   *box_labels; /* (n, max_boxes) */
  const int   *n_boxes;    /* (n) */
  int          max_boxes;
  const int   *indices;    /* (n) item indices in the split */
  int          n;          /* images in this batch (items that failed to decode are left out) */
  int          index;      /* batch number in the epoch, 0 .. vl_loader_n_batches - 1 (resume
                            * at index + 1); a batch whose every item failed is not returned */
} VlBatch;

/* pp may be NULL for a memory dataset (its own channels and size); otherwise it must match a
 * memory dataset's shape. */
VlLoader   *vl_loader_new            (VlDataset *ds, VlSplit split, const VlPreprocess *pp,
                                      VlAugment augment, int batch_size, gboolean shuffle,
                                      uint64_t seed);
/* Starts an epoch (cancelling any prefetch in progress): order and augmentation are a function
 * of (seed, epoch) only. start_batch skips the first batches (for resuming mid-epoch). */
void        vl_loader_start_epoch    (VlLoader *loader, int epoch, int start_batch);
/* Blocks until the next batch is ready; FALSE at the end of the epoch. The batch stays valid
 * until the next call. */
gboolean    vl_loader_next           (VlLoader *loader, VlBatch *batch);
int         vl_loader_n_batches      (VlLoader *loader);
void        vl_loader_free           (VlLoader *loader);
/* The prefetch thread (decoding and augmentation run there, never on the caller's thread). */
GThread    *vl_loader_thread         (VlLoader *loader);

/* The aug_seed a loader passes to vl_dataset_load for item `index` (of its split) in `epoch`:
 * a function of (seed, epoch, index) only, so batch size and order do not change pixels. */
uint64_t    vl_augment_seed          (uint64_t seed, int epoch, int index);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (VlDataset, vl_dataset_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VlLoader, vl_loader_free)

/* A path under vitlab's own shipped files (the backbone, the sample images): $VITLAB_DATA_DIR
 * when set, else the installed data folder (PREFIX/share/vitlab) when the program runs from an
 * installed bindir, else the source tree's data/. */
char *vl_data_path (const char *rel);

G_END_DECLS
