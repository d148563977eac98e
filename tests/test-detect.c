/* test-detect.c: object detection end to end: the box readers (Pascal VOC XML, COCO JSON, YOLO)
 * on small synthetic sets written into a temp folder, with their bad boxes, unknown classes and
 * orphan labels listed by file and line; pets-voc's real photos read alike in all three
 * layouts; boxes through the loader and its augmentation; the scenes set's boxes; training (the
 * token cache against images, a run folder with metrics.jsonl and det_head.safetensors, stop and
 * resume); and the CLI (train --task detect, eval, predict, forward). */
#include "vl-test-util.h"
#include "vl-dataset.h"
#include "vl-detect.h"
#include "vl-trainer.h"
#include "vl-seg-head.h"   /* vl_seg_palette: the boxes' colours */

#include <math.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>

static void
write_image (const char *path, int w, int h)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VlImage) img = vl_image_new (w, h, 3);
  for (gsize p = 0; p < (gsize) w * h * 3; p++)
    img->pixels[p] = (uint8_t) ((p * 37) % 251);
  g_assert_true (vl_image_save_png (path, img, &error));
}

static void
write_text (const char *path, const char *text)
{
  g_autofree char *dir = g_path_get_dirname (path);
  g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
  g_assert_true (g_file_set_contents (path, text, -1, NULL));
}

static char *
path_in (const char *root, const char *rel)
{
  char *p = g_build_filename (root, rel, NULL);
  g_autofree char *dir = g_path_get_dirname (p);
  g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
  return p;
}

static gboolean
skipped_has (VlDataset *ds, const char *path_part, const char *reason_part)
{
  g_autoptr(GPtrArray) sk = vl_dataset_skipped (ds);
  for (guint i = 0; i < sk->len; i++)
    {
      const VlSkipped *s = g_ptr_array_index (sk, i);
      if (strstr (s->path, path_part) && strstr (s->reason, reason_part))
        return TRUE;
    }
  for (guint i = 0; i < sk->len; i++)
    {
      const VlSkipped *s = g_ptr_array_index (sk, i);
      g_test_message ("skipped: %s: %s", s->path, s->reason);
    }
  return FALSE;
}

static VlDataset *
open_det (const char *root)
{
  VlDatasetOptions o = VL_DATASET_OPTIONS_DEFAULT;
  o.detect = TRUE;
  g_autoptr(GError) error = NULL;
  VlDataset *ds = vl_dataset_open (root, &o, &error);
  g_assert_no_error (error);
  g_assert_true (vl_dataset_is_detection (ds));
  return ds;
}

#define VOC_OBJ(name, x0, y0, x1, y1) \
  "  <object>\n    <name>" name "</name>\n    <bndbox><xmin>" #x0 "</xmin><ymin>" #y0 \
  "</ymin><xmax>" #x1 "</xmax><ymax>" #y1 "</ymax></bndbox>\n  </object>\n"

static char *
make_voc (const char *dir)
{
  char *root = g_build_filename (dir, "voc", NULL);
  const char *ids[] = { "a", "b", "c" };
  for (int i = 0; i < 3; i++)
    {
      g_autofree char *rel = g_strdup_printf ("JPEGImages/%s.png", ids[i]);
      g_autofree char *p = path_in (root, rel);
      write_image (p, 40, 30);
    }
  g_autofree char *a = path_in (root, "Annotations/a.xml");
  /* line 3: dog; line 7: cat; line 11: no area; line 15: outside the 40x30 image */
  write_text (a, "<annotation>\n  <size><width>40</width></size>\n"
              VOC_OBJ ("dog", 2, 3, 20, 25) VOC_OBJ ("cat", 10, 5, 38, 29)
              VOC_OBJ ("cat", 10, 5, 10, 20) VOC_OBJ ("dog", 5, 5, 60, 20) "</annotation>\n");
  g_autofree char *b = path_in (root, "Annotations/b.xml");
  write_text (b, "<annotation>\n" VOC_OBJ ("cat", 0, 0, 40, 30) "</annotation>\n");
  g_autofree char *c = path_in (root, "Annotations/c.xml");
  write_text (c, "<annotation>\n</annotation>\n");   /* an image without objects */
  g_autofree char *tr = path_in (root, "ImageSets/Main/train.txt");
  write_text (tr, "a\nc\nmissing\n");
  g_autofree char *va = path_in (root, "ImageSets/Main/val.txt");
  write_text (va, "b\n");
  return root;
}

/* VOC: classes are the sorted names from 1; the bad boxes and the listed image without files
 * are dropped and listed by file and line; an image without objects stays. */
static void
test_voc (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *root = make_voc (dir);
  g_autoptr(VlDataset) ds = open_det (root);
  g_assert_cmpint (vl_dataset_n_classes (ds), ==, 3);
  g_assert_cmpstr (vl_dataset_class_name (ds, 0), ==, "background");
  g_assert_cmpstr (vl_dataset_class_name (ds, 1), ==, "cat");
  g_assert_cmpstr (vl_dataset_class_name (ds, 2), ==, "dog");
  g_assert_cmpint (vl_dataset_n_items (ds, VL_SPLIT_TRAIN), ==, 2);
  g_assert_cmpint (vl_dataset_n_items (ds, VL_SPLIT_VAL), ==, 1);
  const int *l;
  int n, w, h;
  const float *bx = vl_dataset_boxes (ds, VL_SPLIT_TRAIN, 0, &l, &n);
  g_assert_cmpint (n, ==, 2);
  g_assert_cmpint (l[0], ==, 2);
  g_assert_cmpint (l[1], ==, 1);
  g_assert_cmpfloat (bx[0], ==, 2);
  g_assert_cmpfloat (bx[7], ==, 29);
  vl_dataset_boxes_size (ds, VL_SPLIT_TRAIN, 0, &w, &h);
  g_assert_cmpint (w, ==, 40);
  g_assert_cmpint (h, ==, 30);
  vl_dataset_boxes (ds, VL_SPLIT_TRAIN, 1, NULL, &n);
  g_assert_cmpint (n, ==, 0);
  g_assert_cmpint (vl_dataset_class_count (ds, VL_SPLIT_TRAIN, 2), ==, 1);
  g_assert_true (skipped_has (ds, "a.xml:11", "no area"));
  g_assert_true (skipped_has (ds, "a.xml:15", "outside its 40x30 image"));
  g_assert_true (skipped_has (ds, "train.txt:3", "no image"));

  /* a broken annotation: an error naming the file and the line */
  g_autofree char *a = g_build_filename (root, "Annotations", "a.xml", NULL);
  write_text (a, "<annotation>\n<object><name>cat</name>\n<bndbox><xmin>x</xmin></bndbox>"
              "</object></annotation>\n");
  VlDatasetOptions o = VL_DATASET_OPTIONS_DEFAULT;
  o.detect = TRUE;
  g_autoptr(GError) error = NULL;
  g_autoptr(VlDataset) bad = vl_dataset_open (root, &o, &error);
  g_assert_null (bad);
  g_assert_nonnull (strstr (error->message, "a.xml:3"));
  g_assert_nonnull (strstr (error->message, "not a number"));
}

/* COCO: categories in id order from 1; an unknown category, an unknown image, a crowd box and an
 * image file that is missing are dropped and listed with the annotation's id. */
static void
test_coco (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *root = g_build_filename (dir, "coco", NULL);
  const char *files[] = { "images/train/x.png", "images/train/y.png", "images/val/z.png" };
  for (int i = 0; i < 3; i++)
    {
      g_autofree char *p = path_in (root, files[i]);
      write_image (p, 50, 40);
    }
  const char *cats = "\"categories\": [{\"id\": 7, \"name\": \"zebra\"}, "
                     "{\"id\": 3, \"name\": \"apple\"}]";
  g_autofree char *tr = g_strdup_printf (
    "{\"images\": [{\"id\": 1, \"file_name\": \"x.png\"}, {\"id\": 2, \"file_name\": \"y.png\"},"
    " {\"id\": 9, \"file_name\": \"gone.png\"}],\n"
    " \"annotations\": [{\"id\": 10, \"image_id\": 1, \"category_id\": 3, \"bbox\": [1, 2, 10, 20]},"
    " {\"id\": 11, \"image_id\": 1, \"category_id\": 7, \"bbox\": [5, 5, 30, 30]},"
    " {\"id\": 12, \"image_id\": 2, \"category_id\": 99, \"bbox\": [5, 5, 3, 3]},"
    " {\"id\": 13, \"image_id\": 4, \"category_id\": 3, \"bbox\": [5, 5, 3, 3]},"
    " {\"id\": 14, \"image_id\": 2, \"category_id\": 3, \"bbox\": [5, 5, 3, 3], \"iscrowd\": 1},"
    " {\"id\": 15, \"image_id\": 2, \"category_id\": 3, \"bbox\": [5, 5, 0, 3]}],\n %s}", cats);
  g_autofree char *va = g_strdup_printf (
    "{\"images\": [{\"id\": 5, \"file_name\": \"z.png\"}], \"annotations\": "
    "[{\"id\": 20, \"image_id\": 5, \"category_id\": 7, \"bbox\": [0, 0, 50, 40]}], %s}", cats);
  g_autofree char *ptr = path_in (root, "annotations/instances_train.json");
  g_autofree char *pva = path_in (root, "annotations/instances_val.json");
  write_text (ptr, tr);
  write_text (pva, va);
  g_autoptr(VlDataset) ds = open_det (root);
  g_assert_cmpint (vl_dataset_n_classes (ds), ==, 3);
  g_assert_cmpstr (vl_dataset_class_name (ds, 1), ==, "apple");
  g_assert_cmpstr (vl_dataset_class_name (ds, 2), ==, "zebra");
  g_assert_cmpint (vl_dataset_n_items (ds, VL_SPLIT_TRAIN), ==, 2);
  const int *l;
  int n;
  const float *bx = vl_dataset_boxes (ds, VL_SPLIT_TRAIN, 0, &l, &n);
  g_assert_cmpint (n, ==, 2);
  g_assert_cmpint (l[0], ==, 1);
  g_assert_cmpint (l[1], ==, 2);
  g_assert_cmpfloat (bx[2], ==, 11);   /* x + w */
  g_assert_cmpfloat (bx[3], ==, 22);
  vl_dataset_boxes (ds, VL_SPLIT_TRAIN, 1, NULL, &n);
  g_assert_cmpint (n, ==, 0);
  g_assert_true (skipped_has (ds, "annotation 12", "category_id 99"));
  g_assert_true (skipped_has (ds, "annotation 13", "image_id 4"));
  g_assert_true (skipped_has (ds, "annotation 14", "crowd"));
  g_assert_true (skipped_has (ds, "annotation 15", "no area"));
  g_assert_true (skipped_has (ds, "image 9", "gone.png"));
}

/* YOLO: names from data.yaml's list; a class beyond the names, a malformed line and a label
 * without its image are listed by file and line; an image without labels has no boxes. */
static void
test_yolo (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *root = g_build_filename (dir, "yolo", NULL);
  const char *files[] = { "images/train/p.png", "images/train/q.png", "images/val/r.png" };
  for (int i = 0; i < 3; i++)
    {
      g_autofree char *p = path_in (root, files[i]);
      write_image (p, 100, 50);
    }
  g_autofree char *y = path_in (root, "data.yaml");
  write_text (y, "path: .\ntrain: images/train\nnames:\n  0: car\n  1: 'bus'\nnc: 2\n");
  g_autofree char *lp = path_in (root, "labels/train/p.txt");
  write_text (lp, "1 0.5 0.5 0.2 0.4\n\n2 0.5 0.5 0.1 0.1\n0 0.5 oops\n");
  g_autofree char *lo = path_in (root, "labels/train/orphan.txt");
  write_text (lo, "0 0.5 0.5 0.1 0.1\n");
  g_autofree char *lr = path_in (root, "labels/val/r.txt");
  write_text (lr, "0 0.25 0.5 0.5 1.0\n");
  g_autoptr(VlDataset) ds = open_det (root);
  g_assert_cmpint (vl_dataset_n_classes (ds), ==, 3);
  g_assert_cmpstr (vl_dataset_class_name (ds, 1), ==, "car");
  g_assert_cmpstr (vl_dataset_class_name (ds, 2), ==, "bus");
  const int *l;
  int n;
  const float *bx = vl_dataset_boxes (ds, VL_SPLIT_TRAIN, 0, &l, &n);
  g_assert_cmpint (n, ==, 1);
  g_assert_cmpint (l[0], ==, 2);
  g_assert_cmpfloat (fabsf (bx[0] - 40), <=, 1e-4);
  g_assert_cmpfloat (fabsf (bx[3] - 35), <=, 1e-4);
  vl_dataset_boxes (ds, VL_SPLIT_TRAIN, 1, NULL, &n);
  g_assert_cmpint (n, ==, 0);
  bx = vl_dataset_boxes (ds, VL_SPLIT_VAL, 0, &l, &n);
  g_assert_cmpint (n, ==, 1);
  g_assert_cmpfloat (bx[2], ==, 50);
  g_assert_true (skipped_has (ds, "p.txt:3", "class 2 is not one of the 2"));
  g_assert_true (skipped_has (ds, "p.txt:4", "neither 'class cx cy w h'"));
  g_assert_true (skipped_has (ds, "orphan.txt", "no image"));
  /* no names at all: an error naming the folder */
  g_assert_cmpint (g_unlink (y), ==, 0);
  VlDatasetOptions o = VL_DATASET_OPTIONS_DEFAULT;
  o.detect = TRUE;
  g_autoptr(GError) error = NULL;
  g_autoptr(VlDataset) bad = vl_dataset_open (root, &o, &error);
  g_assert_null (bad);
  g_assert_nonnull (strstr (error->message, "classes.txt or data.yaml"));
}

/* Every image of the split has one box, (4, 3, 18, 11) within tol, on an upright 23x37 image. */
static void
assert_upright_boxes (VlDataset *ds, VlSplit split, int n_items, float tol)
{
  static const float upright[4] = { 4, 3, 18, 11 };
  g_assert_cmpint (vl_dataset_n_items (ds, split), ==, n_items);
  for (int i = 0; i < n_items; i++)
    {
      const int *l;
      int n, w, h;
      const float *bx = vl_dataset_boxes (ds, split, i, &l, &n);
      g_assert_cmpint (n, ==, 1);
      for (int c = 0; c < 4; c++)
        g_assert_cmpfloat (fabsf (bx[c] - upright[c]), <=, tol);
      vl_dataset_boxes_size (ds, split, i, &w, &h);
      g_assert_cmpint (w, ==, 23);
      g_assert_cmpint (h, ==, 37);
    }
}

/* Photos are read upright (EXIF orientation applied), and so are their boxes: a box of a
 * VOC file or COCO image that declares the stored, sideways size of a quarter-turned photo is
 * turned with it; one that declares the upright size, or none (YOLO), is taken as drawn.
 * tests/data/exif/o6.jpg is stored 37x23, upright 23x37; stored (3, 5, 11, 19) is upright
 * (4, 3, 18, 11). */
static void
test_exif_orientation (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *photo = vl_test_data_path ("exif", "o6.jpg", NULL);
  g_autofree char *bytes = NULL;
  gsize len = 0;
  g_assert_true (g_file_get_contents (photo, &bytes, &len, NULL));

  /* VOC: a stored size, an upright size, no size; the validation image has no <size> */
  g_autofree char *voc = g_build_filename (dir, "voc", NULL);
  const char *ids[] = { "s", "u", "n", "v" };
  for (int i = 0; i < 4; i++)
    {
      g_autofree char *rel = g_strdup_printf ("JPEGImages/%s.jpg", ids[i]);
      g_autofree char *p = path_in (voc, rel);
      g_assert_true (g_file_set_contents (p, bytes, (gssize) len, NULL));
    }
  g_autofree char *xs = path_in (voc, "Annotations/s.xml");
  write_text (xs, "<annotation>\n" VOC_OBJ ("cat", 3, 5, 11, 19)
              "  <size><width>37</width><height>23</height><depth>3</depth></size>\n"
              "</annotation>\n");
  g_autofree char *xu = path_in (voc, "Annotations/u.xml");
  write_text (xu, "<annotation>\n  <size><width>23</width><height>37</height></size>\n"
              VOC_OBJ ("cat", 4, 3, 18, 11) "</annotation>\n");
  g_autofree char *xn = path_in (voc, "Annotations/n.xml");
  write_text (xn, "<annotation>\n" VOC_OBJ ("cat", 4, 3, 18, 11) "</annotation>\n");
  g_autofree char *xv = path_in (voc, "Annotations/v.xml");
  write_text (xv, "<annotation>\n" VOC_OBJ ("dog", 4, 3, 18, 11) "</annotation>\n");
  g_autofree char *tr = path_in (voc, "ImageSets/Main/train.txt");
  write_text (tr, "s\nu\nn\n");
  g_autofree char *va = path_in (voc, "ImageSets/Main/val.txt");
  write_text (va, "v\n");
  g_autoptr(VlDataset) ds = open_det (voc);
  assert_upright_boxes (ds, VL_SPLIT_TRAIN, 3, 0);

  /* COCO: the same with the images' width and height */
  g_autofree char *coco = g_build_filename (dir, "coco", NULL);
  const char *files[] = { "images/train/s.jpg", "images/train/u.jpg", "images/val/v.jpg" };
  for (int i = 0; i < 3; i++)
    {
      g_autofree char *p = path_in (coco, files[i]);
      g_assert_true (g_file_set_contents (p, bytes, (gssize) len, NULL));
    }
  const char *cats = "\"categories\": [{\"id\": 1, \"name\": \"cat\"}]";
  g_autofree char *ctr = g_strdup_printf (
    "{\"images\": [{\"id\": 1, \"file_name\": \"s.jpg\", \"width\": 37, \"height\": 23},"
    " {\"id\": 2, \"file_name\": \"u.jpg\", \"width\": 23, \"height\": 37}],\n"
    " \"annotations\": [{\"id\": 1, \"image_id\": 1, \"category_id\": 1, \"bbox\": [3, 5, 8, 14]},"
    " {\"id\": 2, \"image_id\": 2, \"category_id\": 1, \"bbox\": [4, 3, 14, 8]}], %s}", cats);
  g_autofree char *cva = g_strdup_printf (
    "{\"images\": [{\"id\": 5, \"file_name\": \"v.jpg\", \"width\": 1e300, \"height\": -2}],"
    " \"annotations\": [{\"id\": 3, \"image_id\": 5, \"category_id\": 1, \"bbox\": [4, 3, 14, 8]}],"
    " %s}", cats);
  g_autofree char *ptr = path_in (coco, "annotations/instances_train.json");
  g_autofree char *pva = path_in (coco, "annotations/instances_val.json");
  write_text (ptr, ctr);
  write_text (pva, cva);
  g_autoptr(VlDataset) dc = open_det (coco);
  assert_upright_boxes (dc, VL_SPLIT_TRAIN, 2, 0);
  assert_upright_boxes (dc, VL_SPLIT_VAL, 1, 0);

  /* YOLO: centre and size over the upright image's */
  g_autofree char *yolo = g_build_filename (dir, "yolo", NULL);
  const char *yfiles[] = { "images/train/a.jpg", "images/val/b.jpg" };
  for (int i = 0; i < 2; i++)
    {
      g_autofree char *p = path_in (yolo, yfiles[i]);
      g_assert_true (g_file_set_contents (p, bytes, (gssize) len, NULL));
    }
  /* and a WebP photo with the same orientation (its EXIF chunk) */
  g_autofree char *webp = vl_test_data_path ("webp", "o6.webp", NULL);
  g_autofree char *wbytes = NULL;
  gsize wlen = 0;
  g_assert_true (g_file_get_contents (webp, &wbytes, &wlen, NULL));
  g_autofree char *wp = path_in (yolo, "images/train/w.webp");
  g_assert_true (g_file_set_contents (wp, wbytes, (gssize) wlen, NULL));
  g_autofree char *names = path_in (yolo, "classes.txt");
  write_text (names, "cat\n");
  g_autofree char *la = path_in (yolo, "labels/train/a.txt");
  write_text (la, "0 0.47826087 0.18918919 0.60869565 0.21621622\n");
  g_autofree char *lw = path_in (yolo, "labels/train/w.txt");
  write_text (lw, "0 0.47826087 0.18918919 0.60869565 0.21621622\n");
  g_autofree char *lb = path_in (yolo, "labels/val/b.txt");
  write_text (lb, "0 0.5 0.5 0.2 0.2\n");
  g_autoptr(VlDataset) dy = open_det (yolo);
  assert_upright_boxes (dy, VL_SPLIT_TRAIN, 2, 1e-5f);
}

/* The scenes set with boxes: each garment's tight box with its class + 1; through the loader
 * under light augmentation the boxes stay inside the crop and keep their classes. */
static void
test_scenes_and_loader (void)
{
  g_autoptr(VlDataset) ds = open_det ("fashion-mnist-scenes:train=8,val=4,size=56,classes=0-2");
  g_assert_cmpint (vl_dataset_n_classes (ds), ==, 4);
  g_assert_false (vl_dataset_is_segmentation (ds));
  int total = 0;
  for (int i = 0; i < 8; i++)
    {
      const int *l;
      int n;
      const float *b = vl_dataset_boxes (ds, VL_SPLIT_TRAIN, i, &l, &n);
      g_assert_cmpint (n, >=, 1);
      for (int j = 0; j < n; j++)
        {
          g_assert_cmpint (l[j], >=, 1);
          g_assert_cmpint (l[j], <=, 3);
          g_assert_true (b[4 * j] >= 0 && b[4 * j + 2] <= 56 && b[4 * j + 2] > b[4 * j]);
        }
      total += n;
    }
  VlPreprocess pp = { .channels = 1, .size = 28, .crop_pct = 1.0, .interp = VL_INTERP_BICUBIC,
                      .mean = { 0.5f }, .std = { 0.5f } };
  for (int aug = 0; aug < 2; aug++)
    {
      g_autoptr(VlLoader) l = vl_loader_new (ds, VL_SPLIT_TRAIN, &pp,
                                             aug ? VL_AUGMENT_LIGHT : VL_AUGMENT_NONE, 8, FALSE,
                                             1);
      vl_loader_start_epoch (l, 0, 0);
      VlBatch b;
      g_assert_true (vl_loader_next (l, &b));
      g_assert_nonnull (b.boxes);
      int seen = 0;
      for (int j = 0; j < b.n; j++)
        for (int k = 0; k < b.n_boxes[j]; k++)
          {
            const float *x = b.boxes + ((gsize) j * b.max_boxes + k) * 4;
            g_assert_true (x[0] >= 0 && x[2] <= 28 && x[2] - x[0] >= 1 && x[3] - x[1] >= 1);
            g_assert_cmpint (b.box_labels[j * b.max_boxes + k], >=, 1);
            seen++;
          }
      if (!aug)   /* squashed 56 -> 28: every box kept, half its size */
        {
          g_assert_cmpint (seen, ==, total);
          const float *src = vl_dataset_boxes (ds, VL_SPLIT_TRAIN, b.indices[0], NULL, NULL);
          g_assert_cmpfloat (fabsf (b.boxes[2] - src[2] / 2), <=, 1e-4);
        }
    }
}

static void
det_config (VlTrainConfig *c, const char *out)
{
  vl_train_config_init (c);
  c->task = VL_TASK_DETECT;
  c->init_random = TRUE;
  c->geometry = g_strdup ("img=28,patch=4,chans=1,width=32,depth=2,heads=2");
  c->data = g_strdup ("fashion-mnist-scenes:train=48,val=16,size=28,classes=0-2");
  c->epochs = 3;
  c->batch_size = 16;
  c->lr = 1e-2;
  c->warmup_epochs = 0.5;
  c->seed = 5;
  c->out_dir = out ? g_strdup (out) : NULL;
}

static float *
head_params (VlTrainer *t, int64_t *n)
{
  VlDetHead *h = vl_trainer_get_det_head (t);
  g_assert_nonnull (h);
  *n = vl_det_head_n_params (h);
  float *all = g_new (float, *n), *p = all;
  for (int i = 0; i < vl_det_head_n_tensors (h); i++)
    {
      int64_t numel;
      const float *d = vl_det_head_tensor_data (h, i, NULL, NULL, &numel);
      memcpy (p, d, sizeof (float) * numel);
      p += numel;
    }
  return all;
}

/* The frozen probe from the token-grid cache trains the same head as from images. */
static void
test_train_cache (void)
{
  float *p[2] = { NULL, NULL };
  int64_t n = 0;
  for (int cached = 0; cached < 2; cached++)
    {
      VlTrainConfig c;
      det_config (&c, NULL);
      c.cache_features = cached;
      g_autoptr(GError) error = NULL;
      g_autoptr(VlTrainer) t = vl_trainer_new (&c, &error);
      vl_train_config_clear (&c);
      g_assert_no_error (error);
      g_assert_true (vl_trainer_start (t, &error));
      VlTrainEnd end;
      vl_test_run_to_end (t, &end, NULL);
      g_assert_cmpint (end, ==, VL_TRAIN_END_COMPLETED);
      g_assert_cmpint (vl_model_head_kind (vl_trainer_get_model (t)), ==, VL_HEAD_NONE);
      p[cached] = head_params (t, &n);
    }
  vl_test_assert_close ("det head, cached vs images", p[1], p[0], n, 1e-5, 1e-4);
  g_free (p[0]);
  g_free (p[1]);
}

/* A run folder: metrics.jsonl says "detect" with val_map and per-class AP (read back),
 * det_head.safetensors holds the head under torchvision's names; unlock 2 trains the final norm
 * too; stopping after epoch 1 and resuming gives the parameters of an uninterrupted run. */
static void
test_train_run_folder (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  float *p[2] = { NULL, NULL };
  int64_t n = 0;
  for (int split = 0; split < 2; split++)
    {
      g_autofree char *out = g_build_filename (dir, split ? "resumed" : "straight", NULL);
      VlTrainConfig c;
      det_config (&c, out);
      g_free (c.unlock_schedule);
      c.unlock_schedule = g_strdup ("0:1,1:2");
      c.cache_features = TRUE;
      c.stop_after_epoch = split ? 2 : 0;
      g_autoptr(GError) error = NULL;
      VlTrainEnd end;
      {
        g_autoptr(VlTrainer) t = vl_trainer_new (&c, &error);
        g_assert_true (vl_trainer_start (t, &error));
        vl_test_run_to_end (t, &end, NULL);
        if (!split)
          p[0] = head_params (t, &n);
      }
      vl_train_config_clear (&c);
      if (split)
        {
          g_assert_cmpint (end, ==, VL_TRAIN_END_STOPPED);
          VlTrainConfig r;
          g_assert_true (vl_train_config_load (&r, out, &error));
          g_assert_cmpint (r.task, ==, VL_TASK_DETECT);
          r.resume = TRUE;
          g_autoptr(VlTrainer) t = vl_trainer_new (&r, &error);
          vl_train_config_clear (&r);
          g_assert_true (vl_trainer_start (t, &error));
          vl_test_run_to_end (t, &end, NULL);
          p[1] = head_params (t, &n);
        }
      g_assert_cmpint (end, ==, VL_TRAIN_END_COMPLETED);
      g_autoptr(GPtrArray) ms = vl_run_read_metrics (out, VL_TASK_DETECT, 4, &error);
      g_assert_no_error (error);
      g_assert_cmpint (ms->len, ==, 3);
      VlEpochMetrics *last = g_ptr_array_index (ms, 2);
      g_assert_true (last->det.ap50 >= 0 && last->det.ap50 <= 1);
      g_assert_true (isfinite (last->det.loss));
      g_assert_true (isnan (last->det.class_ap[0]));   /* the background: no box */
      g_assert_cmpint (last->det.n, ==, 16);
      g_autofree char *mpath = g_build_filename (out, "metrics.jsonl", NULL);
      g_autofree char *text = NULL;
      g_assert_true (g_file_get_contents (mpath, &text, NULL, NULL));
      g_assert_nonnull (strstr (text, "\"task\":\"detect\""));
      g_assert_nonnull (strstr (text, "\"val_map50\""));
      g_autofree char *hpath = g_build_filename (out, "det_head.safetensors", NULL);
      g_autoptr(VlDetHead) h = vl_det_head_load (hpath, 32, &error);
      g_assert_no_error (error);
      g_assert_cmpint (vl_det_head_n_classes (h), ==, 4);
    }
  vl_test_assert_close ("det head, resumed vs straight", p[1], p[0], n, 1e-6, 1e-5);
  g_free (p[0]);
  g_free (p[1]);
}

/* train --task detect ends with val_map= and val_map50=, eval prints the same AP with per-class
 * AP, predict writes NAME.json and NAME-boxes.png, forward writes the three head outputs. */
static void
test_cli (void)
{
  g_assert_nonnull (g_getenv ("VITLAB_CLI"));
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *root = make_voc (dir);
  g_autofree char *run = g_build_filename (dir, "run", NULL);
  int st;
  g_autofree char *o1 = vl_test_cli (&st, "train", "--task", "detect", "--init", "random", "--geometry",
                             "img=16,patch=4,chans=3,width=32,depth=1,heads=2", "--data", root,
                             "--out", run, "--epochs", "2", "--batch", "2", "--lr", "1e-2",
                             "--unlock-schedule", "0:all", "--augment", "light", NULL);
  g_assert_cmpint (st, ==, 0);
  const char *m1 = strstr (o1, "val_map=");
  g_assert_nonnull (m1);
  g_assert_nonnull (strstr (o1, "val_map50="));
  double map = g_ascii_strtod (m1 + 8, NULL);
  g_assert_true (map >= 0 && map <= 1);

  g_autofree char *o2 = vl_test_cli (&st, "eval", run, NULL);
  g_assert_cmpint (st, ==, 0);
  g_assert_nonnull (strstr (o2, "AP50:"));
  g_assert_nonnull (strstr (o2, "cat"));
  const char *m2 = strstr (o2, "val_map=");
  g_assert_nonnull (m2);
  g_assert_cmpfloat (fabs (g_ascii_strtod (m2 + 8, NULL) - map), <=, 1e-4);

  g_autofree char *img = g_build_filename (root, "JPEGImages", "a.png", NULL);
  g_autofree char *pred = g_build_filename (dir, "pred", NULL);
  g_autofree char *o3 = vl_test_cli (&st, "predict", run, img, "--score", "0.0", "--out", pred, NULL);
  g_assert_cmpint (st, ==, 0);
  g_autofree char *json = g_build_filename (pred, "a.json", NULL);
  g_autofree char *png = g_build_filename (pred, "a-boxes.png", NULL);
  g_autofree char *text = NULL;
  g_assert_true (g_file_get_contents (json, &text, NULL, NULL));
  g_assert_nonnull (strstr (text, "\"bbox\""));
  int w = 0, h = 0;
  g_assert_true (vl_image_check_file (png, &w, &h, NULL));
  g_assert_cmpint (w, ==, 40);
  g_assert_cmpint (h, ==, 30);
  /* the image under its boxes and their tabs in the classes' colours */
  {
    g_autoptr(VlImage) drawn = vl_image_load (png, 3, NULL);
    g_autoptr(VlImage) orig = vl_image_load (img, 3, NULL);
    g_assert_nonnull (drawn);
    g_assert_nonnull (orig);
    uint8_t palette[256 * 3];
    vl_seg_palette (palette);
    int changed = 0, coloured = 0;
    for (int p = 0; p < w * h; p++)
      {
        const uint8_t *a = drawn->pixels + 3 * p, *b = orig->pixels + 3 * p;
        changed += memcmp (a, b, 3) != 0;
        /* classes 1 and 2 in the app's colours (vl_draw_class_color: entries 2 and 3) */
        coloured += memcmp (a, palette + 6, 3) == 0 || memcmp (a, palette + 9, 3) == 0;
      }
    g_test_message ("predict's boxes: %d of %d pixels drawn over, %d in a class colour", changed,
                    w * h, coloured);
    g_assert_cmpint (changed, >, w * h / 10);
    g_assert_cmpint (coloured, >, 20);
  }

  /* a folder stands for the images in it (in name order); one without any is refused */
  {
    g_autofree char *jdir = g_build_filename (root, "JPEGImages", NULL);
    g_autofree char *pred_dir = g_build_filename (dir, "pred-folder", NULL);
    g_autofree char *o = vl_test_cli (&st, "predict", run, jdir, "--out", pred_dir, NULL);
    g_assert_cmpint (st, ==, 0);
    g_autoptr(GDir) d = g_dir_open (jdir, 0, NULL);
    int n_images = 0;
    for (const char *n; (n = g_dir_read_name (d)) != NULL;)
      n_images++;
    g_auto(GStrv) lines = g_strsplit (g_strstrip (o), "\n", -1);
    g_assert_cmpint (n_images, >=, 2);
    g_assert_cmpint (g_strv_length (lines), ==, n_images);
    g_assert_true (strcmp (lines[0], lines[1]) < 0);
    g_autofree char *empty = g_build_filename (dir, "no-images", NULL);
    g_assert_cmpint (g_mkdir_with_parents (empty, 0755), ==, 0);
    g_autofree char *o2 = vl_test_cli (&st, "predict", run, empty, "--out", pred_dir, NULL);
    g_assert_cmpint (st, ==, 1);
  }

  /* forward: the FCOS outputs as torchvision's head returns them */
  g_autofree char *ipath = g_build_filename (dir, "x.safetensors", NULL);
  g_autofree char *fpath = g_build_filename (dir, "f.safetensors", NULL);
  float x[2 * 3 * 16 * 16];
  for (int i = 0; i < 2 * 3 * 16 * 16; i++)
    x[i] = (float) sin (i * 0.1);
  VlSafetensorsWriter *wr = vl_safetensors_writer_new ();
  int64_t sx[4] = { 2, 3, 16, 16 };
  vl_safetensors_writer_add_f32 (wr, "images", 4, sx, x);
  g_autoptr(GError) error = NULL;
  g_assert_true (vl_safetensors_writer_write (wr, ipath, &error));
  vl_safetensors_writer_free (wr);
  g_autofree char *o4 = vl_test_cli (&st, "forward", run, "--images", ipath, "--out", fpath, NULL);
  g_assert_cmpint (st, ==, 0);
  g_autoptr(VlSafetensors) f = vl_test_open (fpath);
  const VlTensorInfo *tc = vl_safetensors_lookup (f, "cls_logits");
  const VlTensorInfo *tr = vl_safetensors_lookup (f, "bbox_regression");
  const VlTensorInfo *tt = vl_safetensors_lookup (f, "bbox_ctrness");
  g_assert_nonnull (tc);
  g_assert_nonnull (tr);
  g_assert_nonnull (tt);
  g_assert_cmpint (tc->shape[0], ==, 2);
  g_assert_cmpint (tc->shape[1], ==, 16);
  g_assert_cmpint (tc->shape[2], ==, 3);
  g_assert_cmpint (tr->shape[2], ==, 4);
  g_assert_cmpint (tt->shape[2], ==, 1);

  /* export: the head beside the backbone, config.json marked; forward on the export gives the
   * same outputs */
  g_autofree char *exp = g_build_filename (dir, "exported", NULL);
  g_autofree char *f2path = g_build_filename (dir, "f2.safetensors", NULL);
  g_autofree char *o5 = vl_test_cli (&st, "export", run, "--out", exp, NULL);
  g_assert_cmpint (st, ==, 0);
  g_autofree char *cfg = g_build_filename (exp, "config.json", NULL);
  g_autofree char *ctext = NULL;
  g_assert_true (g_file_get_contents (cfg, &ctext, NULL, NULL));
  g_assert_nonnull (strstr (ctext, "\"detection\""));
  g_autofree char *o6 = vl_test_cli (&st, "forward", exp, "--images", ipath, "--out", f2path, NULL);
  g_assert_cmpint (st, ==, 0);
  g_autoptr(VlSafetensors) f2 = vl_test_open (f2path);
  int64_t n1, n2;
  g_autofree float *c1 = vl_test_read (f, "cls_logits", &n1);
  g_autofree float *c2 = vl_test_read (f2, "cls_logits", &n2);
  g_assert_cmpint (n1, ==, n2);
  vl_test_assert_close ("cls_logits of the export", c2, c1, n1, 1e-5, 1e-5);
}

/* Roboflow's COCO export: SPLIT/_annotations.coco.json with the images beside it, "valid" for
 * the validation split, and a category 0 named after the dataset that only groups the others
 * (their supercategory, no boxes): not a class, listed. */
static void
test_coco_roboflow (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *root = g_build_filename (dir, "rf-coco", NULL);
  const char *files[] = { "train/a.jpg.rf.1.png", "valid/b.png" };
  for (int i = 0; i < 2; i++)
    {
      g_autofree char *p = path_in (root, files[i]);
      write_image (p, 64, 48);
    }
  const char *cats = "\"categories\": [{\"id\": 0, \"name\": \"pets\", \"supercategory\": \"none\"}, "
                     "{\"id\": 1, \"name\": \"cat\", \"supercategory\": \"pets\"}, "
                     "{\"id\": 2, \"name\": \"dog\", \"supercategory\": \"pets\"}]";
  g_autofree char *tr = g_strdup_printf (
    "{\"images\": [{\"id\": 0, \"file_name\": \"a.jpg.rf.1.png\", \"width\": 64, \"height\": 48}],"
    " \"annotations\": [{\"id\": 0, \"image_id\": 0, \"category_id\": 2, \"bbox\": [4, 4, 20, 10]}],"
    " %s}", cats);
  g_autofree char *va = g_strdup_printf (
    "{\"images\": [{\"id\": 0, \"file_name\": \"b.png\"}], \"annotations\": "
    "[{\"id\": 0, \"image_id\": 0, \"category_id\": 1, \"bbox\": [0, 0, 32, 24]}], %s}", cats);
  g_autofree char *ptr = path_in (root, "train/_annotations.coco.json");
  g_autofree char *pva = path_in (root, "valid/_annotations.coco.json");
  write_text (ptr, tr);
  write_text (pva, va);
  g_autoptr(VlDataset) ds = open_det (root);
  g_assert_cmpint (vl_dataset_n_classes (ds), ==, 3);
  g_assert_cmpstr (vl_dataset_class_name (ds, 1), ==, "cat");
  g_assert_cmpstr (vl_dataset_class_name (ds, 2), ==, "dog");
  g_assert_true (skipped_has (ds, "category 0", "only groups"));
  g_assert_cmpint (vl_dataset_n_items (ds, VL_SPLIT_TRAIN), ==, 1);
  g_assert_cmpint (vl_dataset_n_items (ds, VL_SPLIT_VAL), ==, 1);
  const int *l;
  int n;
  const float *bx = vl_dataset_boxes (ds, VL_SPLIT_TRAIN, 0, &l, &n);
  g_assert_cmpint (n, ==, 1);
  g_assert_cmpint (l[0], ==, 2);
  g_assert_cmpfloat (bx[2], ==, 24);
  /* a category without boxes that groups nothing stays a class */
  write_text (ptr, "{\"images\": [{\"id\": 0, \"file_name\": \"a.jpg.rf.1.png\"}], \"annotations\": "
                   "[{\"id\": 0, \"image_id\": 0, \"category_id\": 2, \"bbox\": [4, 4, 20, 10]}], "
                   "\"categories\": [{\"id\": 0, \"name\": \"pets\"}, {\"id\": 1, \"name\": \"cat\"}, "
                   "{\"id\": 2, \"name\": \"dog\"}]}");
  write_text (pva, "{\"images\": [{\"id\": 0, \"file_name\": \"b.png\"}], \"annotations\": [], "
                   "\"categories\": []}");
  g_autoptr(VlDataset) four = open_det (root);
  g_assert_cmpint (vl_dataset_n_classes (four), ==, 4);
  g_assert_cmpstr (vl_dataset_class_name (four, 1), ==, "pets");

  /* trained as classes, the folder fails with what it is and the option that reads it */
  const char *cli = g_getenv ("VITLAB_CLI");
  g_assert_nonnull (cli);
  g_autofree char *run = g_build_filename (dir, "run", NULL);
  const char *argv[] = { cli, "train", "--init", "random", "--geometry",
                         "img=16,patch=4,chans=3,width=32,depth=1,heads=2", "--data", root,
                         "--out", run, "--epochs", "1", NULL };
  g_autofree char *err = NULL;
  int status = 0;
  g_autoptr(GError) error = NULL;
  g_assert_true (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL,
                               NULL, &err, &status, &error));
  g_test_message ("%s", err);
  g_assert_false (g_spawn_check_wait_status (status, NULL));
  g_assert_nonnull (strstr (err, root));
  g_assert_nonnull (strstr (err, "COCO boxes"));
  g_assert_nonnull (strstr (err, "train it with --task detect"));
}

/* COCO's own naming: annotations/instances_train2017.json and instances_val2017.json, the
 * images in train2017/ and val2017/ beside annotations/; a file_name written as a path from the
 * dataset's folder, or as the path where it was labelled (its last part found in the split's
 * folder), finds its image. */
static void
test_coco_2017 (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *root = g_build_filename (dir, "coco2017", NULL);
  const char *files[] = { "train2017/000000000009.jpg", "val2017/000000000139.jpg" };
  for (int i = 0; i < 2; i++)
    {
      g_autofree char *p = path_in (root, files[i]);
      write_image (p, 40, 40);
    }
  const char *cats = "\"categories\": [{\"id\": 18, \"name\": \"dog\", \"supercategory\": \"animal\"}]";
  g_autofree char *tr = g_strdup_printf (
    "{\"images\": [{\"id\": 9, \"file_name\": \"/where/it/was/labelled/000000000009.jpg\"}], "
    "\"annotations\": "
    "[{\"id\": 1, \"image_id\": 9, \"category_id\": 18, \"bbox\": [1, 1, 10, 10]}], %s}", cats);
  g_autofree char *va = g_strdup_printf (
    "{\"images\": [{\"id\": 139, \"file_name\": \"val2017/000000000139.jpg\"}], "
    "\"annotations\": "
    "[{\"id\": 2, \"image_id\": 139, \"category_id\": 18, \"bbox\": [2, 2, 10, 10]}], %s}", cats);
  g_autofree char *ptr = path_in (root, "annotations/instances_train2017.json");
  g_autofree char *pva = path_in (root, "annotations/instances_val2017.json");
  g_autofree char *other = path_in (root, "annotations/person_keypoints_val2017.json");
  write_text (ptr, tr);
  write_text (pva, va);
  write_text (other, "not read");
  g_autoptr(VlDataset) ds = open_det (root);
  g_assert_cmpint (vl_dataset_n_classes (ds), ==, 2);
  g_assert_cmpstr (vl_dataset_class_name (ds, 1), ==, "dog");
  g_assert_cmpint (vl_dataset_n_items (ds, VL_SPLIT_TRAIN), ==, 1);
  g_assert_cmpint (vl_dataset_n_items (ds, VL_SPLIT_VAL), ==, 1);
  g_assert_nonnull (strstr (vl_dataset_item_name (ds, VL_SPLIT_VAL, 0), "val2017"));
  /* no validation annotations at all: an error that says what was looked for */
  g_assert_cmpint (g_unlink (pva), ==, 0);
  VlDatasetOptions o = VL_DATASET_OPTIONS_DEFAULT;
  o.detect = TRUE;
  g_autoptr(GError) error = NULL;
  g_autoptr(VlDataset) bad = vl_dataset_open (root, &o, &error);
  g_assert_null (bad);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, "annotations/instances_val.json"));
}

/* Roboflow's and Ultralytics' other YOLO layout: SPLIT/images with SPLIT/labels, "valid" for
 * the validation split, data.yaml's names as a flow mapping or list; a segmentation label's
 * polygon gives its extent as the box; a line of six numbers is neither and is listed. */
static void
test_yolo_roboflow (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *root = g_build_filename (dir, "rf-yolo", NULL);
  const char *files[] = { "train/images/p.jpg", "valid/images/r.png" };
  for (int i = 0; i < 2; i++)
    {
      g_autofree char *p = path_in (root, files[i]);
      write_image (p, 100, 50);
    }
  g_autofree char *y = path_in (root, "data.yaml");
  write_text (y, "train: ../train/images\nval: ../valid/images\n\nnc: 2\nnames: {0: cat, 1: 'dog'}\n");
  g_autofree char *lp = path_in (root, "train/labels/p.txt");
  g_autoptr(GString) labels = g_string_new ("1 0.1 0.2 0.5 0.2 0.5 0.8 0.3 0.9 0.1 0.8\n"
                                            "0 0.5 0.5 0.2 0.2 0.9\n0 0.5 0.5 0.2 0.4\n0");
  for (int i = 0; i < 1001; i++)   /* 1002 numbers: no polygon, and too long to quote whole */
    g_string_append (labels, " 0.5");
  g_string_append (labels, "\n");
  write_text (lp, labels->str);
  g_autofree char *lr = path_in (root, "valid/labels/r.txt");
  write_text (lr, "0 0.25 0.5 0.5 1.0\n");
  g_autoptr(VlDataset) ds = open_det (root);
  g_assert_cmpint (vl_dataset_n_classes (ds), ==, 3);
  g_assert_cmpstr (vl_dataset_class_name (ds, 1), ==, "cat");
  g_assert_cmpstr (vl_dataset_class_name (ds, 2), ==, "dog");
  g_assert_cmpint (vl_dataset_n_items (ds, VL_SPLIT_VAL), ==, 1);
  const int *l;
  int n;
  const float *bx = vl_dataset_boxes (ds, VL_SPLIT_TRAIN, 0, &l, &n);
  g_assert_cmpint (n, ==, 2);
  g_assert_cmpint (l[0], ==, 2);   /* the polygon: x 0.1-0.5, y 0.2-0.9 of 100 x 50 */
  g_assert_cmpfloat (fabsf (bx[0] - 10), <=, 1e-4);
  g_assert_cmpfloat (fabsf (bx[1] - 10), <=, 1e-4);
  g_assert_cmpfloat (fabsf (bx[2] - 50), <=, 1e-4);
  g_assert_cmpfloat (fabsf (bx[3] - 45), <=, 1e-4);
  g_assert_cmpint (l[1], ==, 1);
  g_assert_true (skipped_has (ds, "p.txt:2", "neither 'class cx cy w h'"));
  g_assert_true (skipped_has (ds, "p.txt:4", "0.5 0.5 0.…' is neither"));
  {
    g_autoptr(GPtrArray) sk = vl_dataset_skipped (ds);
    for (guint i = 0; i < sk->len; i++)
      g_assert_cmpint (strlen (((const VlSkipped *) g_ptr_array_index (sk, i))->reason), <, 200);
  }
  /* the list form of names */
  write_text (y, "names: ['cat', 'dog']\n");
  g_autoptr(VlDataset) again = open_det (root);
  g_assert_cmpstr (vl_dataset_class_name (again, 2), ==, "dog");
  /* without a validation split: an error naming both layouts */
  g_autofree char *vdir = g_build_filename (root, "valid", NULL);
  g_autofree char *moved = g_build_filename (root, "later", NULL);
  g_assert_cmpint (g_rename (vdir, moved), ==, 0);
  VlDatasetOptions o = VL_DATASET_OPTIONS_DEFAULT;
  o.detect = TRUE;
  g_autoptr(GError) error = NULL;
  g_autoptr(VlDataset) bad = vl_dataset_open (root, &o, &error);
  g_assert_null (bad);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, "no validation images"));
  g_assert_nonnull (strstr (error->message, "val/images/"));
}

/* The same real photos in the three layouts: pets-voc's head boxes as VOC, and written out from
 * what the VOC reader gave as COCO (x, y, w, h in pixels) and YOLO (centre and size over the
 * image's, nine decimals), the photos linked in. The three readers give the same images in the
 * same order with the same sizes and classes; COCO's boxes are VOC's exactly (so a training run
 * is the same to the bit: checked by hand, seed 0 AP50 0.4655 both), YOLO's to within the
 * rounding of its text. */
static void
test_pets_three_layouts (void)
{
  g_autofree char *voc = vl_test_shared_path ("datasets", "pets-voc", NULL);
  g_autoptr(VlDataset) a = open_det (voc);
  g_assert_cmpint (vl_dataset_n_classes (a), ==, 3);
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *coco = g_build_filename (dir, "coco", NULL);
  g_autofree char *yolo = g_build_filename (dir, "yolo", NULL);
  static const char *const split_names[2] = { "train", "val" };
  for (int sp = 0; sp < 2; sp++)
    {
      const VlSplit split = sp == 0 ? VL_SPLIT_TRAIN : VL_SPLIT_VAL;
      g_autofree char *ann_dir = g_build_filename (coco, "annotations", NULL);
      g_autofree char *labels = g_build_filename (yolo, "labels", split_names[sp], NULL);
      g_assert_cmpint (g_mkdir_with_parents (ann_dir, 0755), ==, 0);
      g_assert_cmpint (g_mkdir_with_parents (labels, 0755), ==, 0);
      g_autoptr(GString) images = g_string_new (NULL), anns = g_string_new (NULL);
      int n_ann = 0;
      for (int i = 0; i < vl_dataset_n_items (a, split); i++)
        {
          const char *path = vl_dataset_item_name (a, split, i);
          g_autofree char *base = g_path_get_basename (path);
          g_autofree char *stem = g_strndup (base, strrchr (base, '.') - base);
          for (int l = 0; l < 2; l++)
            {
              g_autofree char *img_dir = g_build_filename (l ? yolo : coco, "images",
                                                           split_names[sp], NULL);
              g_assert_cmpint (g_mkdir_with_parents (img_dir, 0755), ==, 0);
              g_autofree char *link = g_build_filename (img_dir, base, NULL);
              g_assert_cmpint (symlink (path, link), ==, 0);
            }
          int w, h, n;
          const int *lab;
          vl_dataset_boxes_size (a, split, i, &w, &h);
          const float *b = vl_dataset_boxes (a, split, i, &lab, &n);
          g_string_append_printf (images, "%s{\"id\": %d, \"file_name\": \"%s\", \"width\": %d, "
                                  "\"height\": %d}", i ? ", " : "", i + 1, base, w, h);
          g_autoptr(GString) txt = g_string_new (NULL);
          for (int k = 0; k < n; k++)
            {
              const float *q = b + 4 * k;
              g_string_append_printf (anns, "%s{\"id\": %d, \"image_id\": %d, \"category_id\": %d, "
                                      "\"bbox\": [%.9g, %.9g, %.9g, %.9g], \"iscrowd\": 0}",
                                      n_ann ? ", " : "", n_ann + 1, i + 1, lab[k], q[0], q[1],
                                      q[2] - q[0], q[3] - q[1]);
              n_ann++;
              g_string_append_printf (txt, "%d %.9f %.9f %.9f %.9f\n", lab[k] - 1,
                                      (q[0] + q[2]) / 2.0 / w, (q[1] + q[3]) / 2.0 / h,
                                      (q[2] - q[0]) / (double) w, (q[3] - q[1]) / (double) h);
            }
          g_autofree char *name = g_strconcat (stem, ".txt", NULL);
          g_autofree char *label = g_build_filename (labels, name, NULL);
          write_text (label, txt->str);
        }
      g_autofree char *json = g_strdup_printf (
        "{\"images\": [%s], \"annotations\": [%s], \"categories\": [{\"id\": 1, \"name\": \"%s\"}, "
        "{\"id\": 2, \"name\": \"%s\"}]}", images->str, anns->str, vl_dataset_class_name (a, 1),
        vl_dataset_class_name (a, 2));
      g_autofree char *fname = g_strdup_printf ("instances_%s.json", split_names[sp]);
      g_autofree char *jpath = g_build_filename (ann_dir, fname, NULL);
      write_text (jpath, json);
    }
  g_autofree char *classes = g_strdup_printf ("%s\n%s\n", vl_dataset_class_name (a, 1),
                                              vl_dataset_class_name (a, 2));
  g_autofree char *cpath = g_build_filename (yolo, "classes.txt", NULL);
  write_text (cpath, classes);

  g_autoptr(VlDataset) c = open_det (coco);
  g_autoptr(VlDataset) y = open_det (yolo);
  VlDataset *other[2] = { c, y };
  int n_boxes = 0;
  double worst_yolo = 0;
  for (int o = 0; o < 2; o++)
    {
      g_assert_cmpint (vl_dataset_n_classes (other[o]), ==, 3);
      for (int k = 0; k < 3; k++)
        g_assert_cmpstr (vl_dataset_class_name (other[o], k), ==, vl_dataset_class_name (a, k));
      g_autoptr(GPtrArray) sk0 = vl_dataset_skipped (a);
      g_autoptr(GPtrArray) sk1 = vl_dataset_skipped (other[o]);
      g_assert_cmpint (sk1->len, ==, sk0->len);
      for (int sp = 0; sp < 2; sp++)
        {
          const VlSplit split = sp == 0 ? VL_SPLIT_TRAIN : VL_SPLIT_VAL;
          g_assert_cmpint (vl_dataset_n_items (other[o], split), ==, vl_dataset_n_items (a, split));
          for (int i = 0; i < vl_dataset_n_items (a, split); i++)
            {
              g_autofree char *b0 = g_path_get_basename (vl_dataset_item_name (a, split, i));
              g_autofree char *b1 = g_path_get_basename (vl_dataset_item_name (other[o], split, i));
              g_assert_cmpstr (b0, ==, b1);
              int w0, h0, w1, h1, n0, n1;
              const int *l0, *l1;
              vl_dataset_boxes_size (a, split, i, &w0, &h0);
              vl_dataset_boxes_size (other[o], split, i, &w1, &h1);
              g_assert_cmpint (w0, ==, w1);
              g_assert_cmpint (h0, ==, h1);
              const float *q0 = vl_dataset_boxes (a, split, i, &l0, &n0);
              const float *q1 = vl_dataset_boxes (other[o], split, i, &l1, &n1);
              g_assert_cmpint (n0, ==, n1);
              for (int k = 0; k < n0; k++)
                {
                  g_assert_cmpint (l0[k], ==, l1[k]);
                  for (int e = 0; e < 4; e++)
                    if (o == 0)
                      g_assert_cmpfloat (q0[4 * k + e], ==, q1[4 * k + e]);
                    else
                      worst_yolo = MAX (worst_yolo, fabs (q0[4 * k + e] - q1[4 * k + e]));
                }
              n_boxes += o == 0 ? n0 : 0;
            }
        }
    }
  g_test_message ("%d boxes; YOLO's at most %.2g px from VOC's", n_boxes, worst_yolo);
  g_assert_cmpint (n_boxes, >=, 296);
  g_assert_cmpfloat (worst_yolo, <, 1e-3);
}

/* Labels of boxes placed so none covers another: two boxes sharing a top edge and one at the
 * image's top right corner (its label pushed left and inside); the best keeps the spot over its
 * box's top edge; five on one box take its four spots within the image, then the least
 * covered. */
static void
test_place_labels (void)
{
  const double boxes[] = { 10, 30, 80, 95,     /* the best */
                           20, 30, 90, 95,     /* the same top edge */
                           180, 0, 199, 60 };  /* at the image's top, by its right edge */
  const double w[] = { 40, 40, 40 }, h[] = { 12, 12, 12 };
  double xy[6];
  vl_det_place_labels (boxes, w, h, 3, 200, 0, 100, xy);
  for (int i = 0; i < 3; i++)
    g_test_message ("label %d at %.0f, %.0f", i, xy[2 * i], xy[2 * i + 1]);
  g_assert_cmpfloat (xy[0], ==, 10);
  g_assert_cmpfloat (xy[1], ==, 30 - 12);   /* over the top edge */
  g_assert_cmpfloat (xy[3], ==, 30);        /* inside it: the spot above is taken */
  g_assert_cmpfloat (xy[4], ==, 160);       /* ends by the image's right edge */
  g_assert_cmpfloat (xy[5], ==, 0);         /* inside: nothing above the image */
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < i; j++)
      g_assert_true (xy[2 * i] >= xy[2 * j] + w[j] || xy[2 * j] >= xy[2 * i] + w[i] ||
                     xy[2 * i + 1] >= xy[2 * j + 1] + h[j] || xy[2 * j + 1] >= xy[2 * i + 1] + h[i]);
  /* when every spot is taken, the least covered */
  const double same[] = { 10, 30, 80, 95, 10, 30, 80, 95, 10, 30, 80, 95, 10, 30, 80, 95,
                          10, 30, 80, 95 };
  const double w5[] = { 40, 40, 40, 40, 40 }, h5[] = { 12, 12, 12, 12, 12 };
  double xy5[10];
  vl_det_place_labels (same, w5, h5, 5, 200, 0, 100, xy5);
  g_assert_cmpfloat (xy5[1], ==, 18);
  g_assert_cmpfloat (xy5[3], ==, 30);
  g_assert_cmpfloat (xy5[5], ==, 83);   /* under the bottom edge (95) would leave the image */
  g_assert_cmpfloat (xy5[7], ==, 18);   /* each spot covered once: the first */
  g_assert_cmpfloat (xy5[9], ==, 30);   /* the first now twice: the next */
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/detect/voc", test_voc);
  g_test_add_func ("/detect/coco", test_coco);
  g_test_add_func ("/detect/yolo", test_yolo);
  g_test_add_func ("/detect/coco-roboflow", test_coco_roboflow);
  g_test_add_func ("/detect/coco-2017", test_coco_2017);
  g_test_add_func ("/detect/yolo-roboflow", test_yolo_roboflow);
  g_test_add_func ("/detect/pets-three-layouts", test_pets_three_layouts);
  g_test_add_func ("/detect/exif-orientation", test_exif_orientation);
  g_test_add_func ("/detect/place-labels", test_place_labels);
  g_test_add_func ("/detect/scenes-loader", test_scenes_and_loader);
  g_test_add_func ("/detect/train-cache", test_train_cache);
  g_test_add_func ("/detect/train-run-folder", test_train_run_folder);
  g_test_add_func ("/detect/cli", test_cli);
  return g_test_run ();
}
