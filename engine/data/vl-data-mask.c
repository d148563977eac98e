/* vl-data-mask.c: segmentation sources: the Pascal VOC layout and mask-pair folders. */
#include "vl-dataset-private.h"
#include "vl-error.h"
#include "vl-seg.h"

/* ------------------------------------------------------------------------------------- */
/* Segmentation sources: Pascal VOC layout, mask-pair folders, fashion-mnist-scenes        */

static gboolean
is_dir (const char *a, const char *b)
{
  g_autofree char *p = g_build_filename (a, b, NULL);
  return g_file_test (p, G_FILE_TEST_IS_DIR);
}

gboolean
vl_ds_is_voc_folder (const char *root)
{
  return is_dir (root, "JPEGImages") && is_dir (root, "SegmentationClass");
}

gboolean
vl_ds_is_mask_pair_folder (const char *root)
{
  return is_dir (root, "images") && is_dir (root, "masks");
}

/* Class names from root/labels.txt (one a line, blank lines skipped); NULL when absent. */
static GPtrArray *
read_labels_txt (const char *root, GError **error)
{
  g_autofree char *path = g_build_filename (root, "labels.txt", NULL);
  g_autofree char *text = NULL;
  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    return NULL;
  if (!g_file_get_contents (path, &text, NULL, error))
    return NULL;
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  g_auto(GStrv) lines = g_strsplit (text, "\n", -1);
  for (int i = 0; lines[i] != NULL; i++)
    {
      char *l = g_strstrip (lines[i]);
      if (*l != '\0')
        g_ptr_array_add (names, g_strdup (l));
    }
  if (names->len < 1 || names->len > 255)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: %u class names; a segmentation set "
                   "has 1 to 255 classes (255 is the ignored label)", path, names->len);
      g_ptr_array_unref (names);
      return NULL;
    }
  return names;
}

/* Checks that an image and its mask exist and have one size; adds the pair to split, or skips
 * an image that cannot be decoded (listed, as in classification folders). */
static gboolean
add_mask_pair (VlDataset *ds, VlSplit split, const char *image, const char *mask,
               GError **error)
{
  GStatBuf st;
  if (g_stat (image, &st) != 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s: no such image (its mask %s exists)",
                   image, mask);
      return FALSE;
    }
  if (!g_file_test (mask, G_FILE_TEST_EXISTS))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s: the image has no mask %s", image,
                   mask);
      return FALSE;
    }
  g_autofree char *reason = vl_ds_check_image_header (image, st.st_size);
  if (reason != NULL)
    {
      vl_ds_add_skipped (ds, image, reason);
      return TRUE;
    }
  int w = 0, h = 0, orientation = 1;
  vl_image_probe_file (image, &w, &h, &orientation, NULL);   /* the header was checked above */
  int mw = 0, mh = 0;
  g_autoptr(GError) local = NULL;
  if (!vl_mask_size (mask, &mw, &mh, &local))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s (the mask of %s)", local->message,
                   image);
      return FALSE;
    }
  /* The photo is read upright (its EXIF orientation applied); a mask of its stored, sideways
   * size was drawn on the stored pixels and is turned with them. */
  const gboolean stored = orientation >= 5 && w != h && mw == h && mh == w;
  if ((mw != w || mh != h) && !stored)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH, "%s: the mask is %dx%d but its image %s "
                   "is %dx%d", mask, mw, mh, image, w, h);
      return FALSE;
    }
  vl_ds_add_item (ds, split, image, 0);
  Item *it = &g_array_index (ds->splits[split].items, Item, ds->splits[split].items->len - 1);
  it->mask = g_string_chunk_insert (ds->names, mask);
  it->mask_orientation = stored ? orientation : 1;
  return TRUE;
}

/* Class names from labels.txt, else "class 0" … up to the largest value in any mask. */
static gboolean
seg_set_classes (VlDataset *ds, const char *root, GError **error)
{
  g_autoptr(GError) local = NULL;
  g_autoptr(GPtrArray) names = read_labels_txt (root, &local);
  if (local != NULL)
    {
      g_propagate_error (error, g_steal_pointer (&local));
      return FALSE;
    }
  int K = 0;
  if (names != NULL)
    K = (int) names->len;
  else
    for (int s = 0; s < 2; s++)
      for (guint i = 0; i < ds->splits[s].items->len; i++)
        {
          const Item *it = vl_ds_get_item (ds, (VlSplit) s, (int) i);
          int w, h;
          g_autofree uint8_t *m = vl_mask_load (it->mask, &w, &h, error);
          if (m == NULL)
            return FALSE;
          for (gsize p = 0; p < (gsize) w * h; p++)
            if (m[p] != VL_SEG_IGNORE && m[p] + 1 > K)
              K = m[p] + 1;
        }
  if (K < 1)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: every mask pixel is 255 (ignored): "
                   "no class to learn", root);
      return FALSE;
    }
  g_strfreev (ds->class_names);
  g_free (ds->splits[0].class_counts);
  g_free (ds->splits[1].class_counts);
  ds->n_classes = K;
  ds->class_names = g_new0 (char *, K + 1);
  for (int k = 0; k < K; k++)
    ds->class_names[k] = names != NULL ? g_strdup (g_ptr_array_index (names, k))
                                       : g_strdup_printf ("class %d", k);
  for (int s = 0; s < 2; s++)
    {
      ds->splits[s].class_counts = g_new0 (int, K);
      ds->splits[s].class_counts[0] = (int) ds->splits[s].items->len;
    }
  return TRUE;
}

VlDataset *
vl_ds_open_voc (const char *root, GError **error)
{
  g_autoptr(VlDataset) ds = vl_ds_new (SOURCE_FOLDER, 1);
  ds->channels = 3;
  ds->segment = TRUE;
  static const char *const split_files[2] = { "train.txt", "val.txt" };
  g_autofree char *jdir = g_build_filename (root, "JPEGImages", NULL);
  for (int s = 0; s < 2; s++)
    {
      g_autofree char *list = g_build_filename (root, "ImageSets", "Segmentation",
                                                split_files[s], NULL);
      g_autofree char *text = NULL;
      g_autoptr(GError) local = NULL;
      if (!g_file_get_contents (list, &text, NULL, &local))
        {
          g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s: cannot read the %s split of "
                       "the Pascal VOC layout: %s", list, s == 0 ? "training" : "validation",
                       local->message);
          return NULL;
        }
      g_auto(GStrv) lines = g_strsplit (text, "\n", -1);
      for (int i = 0; lines[i] != NULL; i++)
        {
          char *id = g_strstrip (lines[i]);
          if (*id == '\0')
            continue;
          if (strchr (id, '/') != NULL || strcmp (id, "..") == 0)
            {
              g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: line %d: '%s' is not an image "
                           "name", list, i + 1, id);
              return NULL;
            }
          g_autofree char *image = vl_image_find_stem (jdir, id);
          g_autofree char *mbase = g_strconcat (id, ".png", NULL);
          g_autofree char *mask = g_build_filename (root, "SegmentationClass", mbase, NULL);
          if (image == NULL)
            {
              g_autofree char *jbase = g_strconcat (id, ".jpg", NULL);
              g_autofree char *want = g_build_filename (jdir, jbase, NULL);
              g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s lists %s: no image %s (mask "
                           "%s)", list, id, want, mask);
              return NULL;
            }
          if (!add_mask_pair (ds, (VlSplit) s, image, mask, error))
            return NULL;
        }
      if (ds->splits[s].items->len == 0)
        {
          g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s: no usable image", list);
          return NULL;
        }
    }
  if (!seg_set_classes (ds, root, error))
    return NULL;
  g_autofree char *base = g_path_get_basename (root);
  ds->description = g_strdup_printf ("%s (Pascal VOC layout, %d classes)", base, ds->n_classes);
  return g_steal_pointer (&ds);
}

/* The image files of images_dir paired with masks_dir/STEM.png. */
static gboolean
add_mask_pair_folder (VlDataset *ds, VlSplit split, const char *images_dir,
                      const char *masks_dir, GError **error)
{
  g_autoptr(GPtrArray) names = vl_ds_list_folder (images_dir, error);
  if (names == NULL)
    return FALSE;
  for (guint i = 0; i < names->len; i++)
    {
      const char *name = g_ptr_array_index (names, i);
      const char *dot = strrchr (name, '.');
      if (!vl_image_has_extension (name, FALSE))
        continue;
      g_autofree char *stem = g_strndup (name, dot - name);
      g_autofree char *mbase = g_strconcat (stem, ".png", NULL);
      g_autofree char *path = g_build_filename (images_dir, name, NULL);
      g_autofree char *mask = g_build_filename (masks_dir, mbase, NULL);
      if (!add_mask_pair (ds, split, path, mask, error))
        return FALSE;
    }
  if (ds->splits[split].items->len == 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s: no usable image", images_dir);
      return FALSE;
    }
  return TRUE;
}

VlDataset *
vl_ds_open_mask_pairs (const char *root, const VlDatasetOptions *opt, GError **error)
{
  g_autoptr(VlDataset) ds = vl_ds_new (SOURCE_FOLDER, 1);
  ds->channels = 3;
  ds->segment = TRUE;
  g_autofree char *images = g_build_filename (root, "images", NULL);
  g_autofree char *masks = g_build_filename (root, "masks", NULL);
  g_autofree char *base = g_path_get_basename (root);
  if (is_dir (images, "train"))
    {
      static const char *const sp[2] = { "train", "val" };
      for (int s = 0; s < 2; s++)
        {
          g_autofree char *id = g_build_filename (images, sp[s], NULL);
          g_autofree char *md = g_build_filename (masks, sp[s], NULL);
          if (!add_mask_pair_folder (ds, (VlSplit) s, id, md, error))
            return NULL;
        }
      ds->description = g_strdup_printf ("%s (image/mask pairs, train/val)", base);
    }
  else
    {
      if (!vl_ds_check_fraction (root, opt->val_fraction, error) ||
          !add_mask_pair_folder (ds, VL_SPLIT_TRAIN, images, masks, error))
        return NULL;
      vl_ds_split_stratified (ds, opt->val_fraction, opt->seed);
      ds->description = g_strdup_printf ("%s (image/mask pairs, %g%% held out for validation, "
                                         "seed %" G_GUINT64_FORMAT ")", base,
                                         opt->val_fraction * 100.0, opt->seed);
    }
  if (!seg_set_classes (ds, root, error))
    return NULL;
  return g_steal_pointer (&ds);
}
