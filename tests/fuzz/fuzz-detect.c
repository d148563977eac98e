/* fuzz-detect.c: the box annotations of a detection folder (vl_dataset_open with
 * options.detect), the first byte picking the format and so the file that is the input:
 *   0  COCO: annotations/instances_train.json (instances_val.json valid)
 *   1  YOLO: labels/train/a.txt (classes.txt and labels/val/b.txt valid)
 *   2  YOLO: data.yaml, its names (no classes.txt; the label files valid)
 *   3  Pascal VOC: Annotations/a.xml (Annotations/b.xml and ImageSets/Main valid)
 * Each format has its own folder, made once at start-up with two fixed 8 x 8 PNGs (a.png in
 * train, b.png in val). The set must open or be refused with an error, and the first items it
 * lists must load with their boxes. */
#include "fuzz-common.h"
#include "vl-dataset.h"

#include <string.h>

static const char coco_val[] =
  "{\"images\": [{\"id\": 7, \"file_name\": \"b.png\", \"width\": 8, \"height\": 8}],\n"
  " \"annotations\": [{\"id\": 1, \"image_id\": 7, \"category_id\": 2, \"bbox\": [1, 1, 4, 5],"
  " \"iscrowd\": 0}],\n"
  " \"categories\": [{\"id\": 1, \"name\": \"cat\"}, {\"id\": 2, \"name\": \"dog\"}]}\n";
static const char voc_val[] =
  "<annotation><filename>b.png</filename><size><width>8</width><height>8</height>"
  "<depth>3</depth></size><object><name>dog</name><bndbox><xmin>1</xmin><ymin>2</ymin>"
  "<xmax>6</xmax><ymax>7</ymax></bndbox></object></annotation>\n";

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

/* The four folders (coco, yolo, yaml, voc) under fuzz_dir (). */
static void
make_folders (char *roots[4])
{
  static const char *const names[4] = { "coco", "yolo", "yaml", "voc" };
  for (int f = 0; f < 4; f++)
    roots[f] = fuzz_mkdirs (names[f]);
  images (roots[0], "images/train", "images/val");
  put (roots[0], "annotations/instances_val.json", coco_val);
  for (int f = 1; f <= 2; f++)
    {
      images (roots[f], "images/train", "images/val");
      put (roots[f], "labels/train/a.txt", "0 0.5 0.5 0.25 0.5\n");
      put (roots[f], "labels/val/b.txt", "1 0.5 0.5 0.5 0.5\n");
    }
  put (roots[1], "classes.txt", "cat\ndog\n");
  images (roots[3], "JPEGImages", "JPEGImages");
  put (roots[3], "ImageSets/Main/train.txt", "a\n");
  put (roots[3], "ImageSets/Main/val.txt", "b\n");
  put (roots[3], "Annotations/b.xml", voc_val);
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
  static char *roots[4];
  static const char *const inputs[4] = {
    "annotations/instances_train.json", "labels/train/a.txt", "data.yaml", "Annotations/a.xml",
  };
  if (roots[0] == NULL)
    {
      fuzz_fatal_criticals ();
      make_folders (roots);
    }
  int which = size > 0 ? data[0] % 4 : 0;
  g_autofree char *path = g_build_filename (roots[which], inputs[which], NULL);
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
