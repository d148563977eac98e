/* fuzz-detect.c: the box annotations of a detection folder (vl_dataset_open with
 * options.detect), the first byte picking the format and the file that is the input:
 *   0  COCO: annotations/instances_train.json (instances_val.json valid)
 *   1  YOLO: labels/train/a.txt (classes.txt and labels/val/b.txt valid)
 *   2  YOLO: data.yaml, its names (no classes.txt; the label files valid)
 *   3  Pascal VOC: Annotations/a.xml (Annotations/b.xml and ImageSets/Main valid)
 *   4  Pascal VOC: the list ImageSets/Main/train.txt (val.txt and both annotations valid)
 *   5  Pascal VOC: the list ImageSets/Main/val.txt (train.txt and both annotations valid)
 *   6  YOLO: classes.txt (the label files valid)
 * Each choice has its own folder, made once at start-up with two fixed 8 x 8 PNGs (a.png in
 * train, b.png in val) and the valid files of its format, so that only the input's file
 * changes from one input to the next. The set must open or be refused with an error, and the
 * first items it lists must load with their boxes. */
#include "fuzz-common.h"
#include "vl-dataset.h"

#include <string.h>

static const char coco_val[] =
  "{\"images\": [{\"id\": 7, \"file_name\": \"b.png\", \"width\": 8, \"height\": 8}],\n"
  " \"annotations\": [{\"id\": 1, \"image_id\": 7, \"category_id\": 2, \"bbox\": [1, 1, 4, 5],"
  " \"iscrowd\": 0}],\n"
  " \"categories\": [{\"id\": 1, \"name\": \"cat\"}, {\"id\": 2, \"name\": \"dog\"}]}\n";
static const char voc_train[] =
  "<annotation><filename>a.png</filename><size><width>8</width><height>8</height>"
  "<depth>3</depth></size><object><name>cat</name><bndbox><xmin>2</xmin><ymin>1</ymin>"
  "<xmax>7</xmax><ymax>5</ymax></bndbox></object></annotation>\n";
static const char voc_val[] =
  "<annotation><filename>b.png</filename><size><width>8</width><height>8</height>"
  "<depth>3</depth></size><object><name>dog</name><bndbox><xmin>1</xmin><ymin>2</ymin>"
  "<xmax>6</xmax><ymax>7</ymax></bndbox></object></annotation>\n";

enum { COCO, YOLO, YAML, VOC };

/* By the first byte % N_CHOICES: the folder's format, its name, the input's file. */
#define N_CHOICES 7
static const struct {
  int         format;
  const char *folder, *input;
} choices[N_CHOICES] = {
  { COCO, "coco", "annotations/instances_train.json" },
  { YOLO, "yolo", "labels/train/a.txt" },
  { YAML, "yaml", "data.yaml" },
  { VOC, "voc", "Annotations/a.xml" },
  { VOC, "voc-train-list", "ImageSets/Main/train.txt" },
  { VOC, "voc-val-list", "ImageSets/Main/val.txt" },
  { YOLO, "yolo-classes", "classes.txt" },
};

/* Writes text to root/rel (its folder made). */
static void
put (const char *root, const char *rel, const char *text)
{
  g_autofree char *path = g_build_filename (root, rel, NULL);
  g_autofree char *parent = g_path_get_dirname (path);
  g_assert (g_mkdir_with_parents (parent, 0700) == 0);
  fuzz_write_file (path, text, strlen (text));
}

/* Makes root's two images: a.png in train_dir, b.png in val_dir. */
static void
images (const char *root, const char *train_dir, const char *val_dir)
{
  g_autofree char *t = g_build_filename (root, train_dir, NULL);
  g_autofree char *v = g_build_filename (root, val_dir, NULL);
  g_assert (g_mkdir_with_parents (t, 0700) == 0 && g_mkdir_with_parents (v, 0700) == 0);
  fuzz_write_png (t, "a.png", 8, 8, 3);
  fuzz_write_png (v, "b.png", 8, 8, 3);
}

/* Makes root, a valid folder of that format (the input's file then replaces one of its files;
 * COCO's instances_train.json is always the input). */
static void
make_folder (const char *root, int format)
{
  switch (format)
    {
    case COCO:
      images (root, "images/train", "images/val");
      put (root, "annotations/instances_val.json", coco_val);
      break;
    case YOLO:
    case YAML:
      images (root, "images/train", "images/val");
      put (root, "labels/train/a.txt", "0 0.5 0.5 0.25 0.5\n");
      put (root, "labels/val/b.txt", "1 0.5 0.5 0.5 0.5\n");
      if (format == YOLO)
        put (root, "classes.txt", "cat\ndog\n");
      break;
    default:
      images (root, "JPEGImages", "JPEGImages");
      put (root, "ImageSets/Main/train.txt", "a\n");
      put (root, "ImageSets/Main/val.txt", "b\n");
      put (root, "Annotations/a.xml", voc_train);
      put (root, "Annotations/b.xml", voc_val);
    }
}

/* Loads the first items of each split with their boxes. */
static void
load_items (VlDataset *ds)
{
  int max = vl_dataset_max_boxes (ds);
  g_autofree float *boxes = g_new (float, 4 * MAX (max, 1));
  g_autofree int *labels = g_new (int, MAX (max, 1));
  VlPreprocess pp = { .channels = 3, .size = 8, .crop_pct = 1.0, .interp = VL_INTERP_BILINEAR,
                      .mean = { 0.5f, 0.5f, 0.5f }, .std = { 0.5f, 0.5f, 0.5f } };
  float out[3 * 8 * 8];
  for (int s = 0; s < 2; s++)
    for (int i = 0; i < MIN (vl_dataset_n_items (ds, s), 4); i++)
      {
        VlTarget t = { .boxes = boxes, .box_labels = labels };
        g_autoptr(GError) e = NULL;
        if (vl_dataset_load_target (ds, s, i, &pp, VL_AUGMENT_NONE, 0, out, &t, &e))
          {
            g_assert (t.n_boxes >= 0 && t.n_boxes <= max);
            for (int b = 0; b < t.n_boxes; b++)
              g_assert (labels[b] >= 1 && labels[b] < vl_dataset_n_classes (ds));
          }
      }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static char *roots[N_CHOICES];
  if (roots[0] == NULL)
    {
      fuzz_fatal_criticals ();
      for (int c = 0; c < N_CHOICES; c++)
        {
          roots[c] = fuzz_mkdirs (choices[c].folder);
          make_folder (roots[c], choices[c].format);
        }
    }
  int which = size > 0 ? data[0] % N_CHOICES : 0;
  g_autofree char *path = g_build_filename (roots[which], choices[which].input, NULL);
  fuzz_write_file (path, data + (size > 0), size - (size > 0));

  VlDatasetOptions opt = VL_DATASET_OPTIONS_DEFAULT;
  opt.detect = TRUE;
  g_autoptr(GError) error = NULL;
  VlDataset *ds = vl_dataset_open (roots[which], &opt, &error);
  if (ds == NULL)
    g_assert (error != NULL);
  else
    {
      g_assert (vl_dataset_is_detection (ds));
      load_items (ds);
      vl_dataset_free (ds);
    }
  return 0;
}
