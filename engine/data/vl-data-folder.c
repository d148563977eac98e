/* vl-data-folder.c: image-folder datasets (class folders, train/ and val/, or a targets.csv
 * folder handed to vl-data-regress.c); vl_ds_list_folder and vl_ds_check_image_header, which
 * the mask and regression readers use too. */
#include "vl-dataset-private.h"
#include "vl-error.h"

/* ------------------------------------------------------------------------------------- */
/* Image folders                                                                          *
 *
 * Files are found recursively under each class folder, in byte order of their names. Names
 * starting with '.' (hidden files, .DS_Store, AppleDouble "._x.jpg") are ignored, as are files
 * without an image extension (README.txt, labels.csv). A file with an image extension is read
 * up to its header: when that fails, or the file is empty, or above VL_IMAGE_MAX_PIXELS, it is
 * skipped and listed with its reason. TIFF and WebP count as image files that vitlab
 * cannot decode, so they are listed as skipped rather than silently ignored. */

#define MAX_FOLDER_DEPTH 16

static int
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

/* Visible entries of a folder, sorted by byte order. */
GPtrArray *
vl_ds_list_folder (const char *path, GError **error)
{
  g_autoptr(GError) local = NULL;
  GDir *dir = g_dir_open (path, 0, &local);
  if (dir == NULL)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_IO, "%s: cannot read folder: %s", path,
                   local->message);
      return NULL;
    }
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  const char *name;
  while ((name = g_dir_read_name (dir)) != NULL)
    if (name[0] != '.')
      g_ptr_array_add (names, g_strdup (name));
  g_dir_close (dir);
  g_ptr_array_sort (names, compare_names);
  return names;
}

/* Reads the header of an image file; NULL when usable, else the reason it is skipped. */
char *
vl_ds_check_image_header (const char *path, gint64 size)
{
  if (size == 0)
    return g_strdup ("empty file");
  g_autoptr(GError) local = NULL;
  if (vl_image_check_file (path, NULL, NULL, &local))
    return NULL;
  /* the message is "PATH: reason" */
  const char *reason = local->message;
  if (g_str_has_prefix (reason, path) && strncmp (reason + strlen (path), ": ", 2) == 0)
    reason += strlen (path) + 2;
  return g_strdup (reason);
}

/* Folders and files already taken by a scan, by device and inode: a symbolic link to a folder
 * is followed once, and one file reached twice (links, hard links) is one item. */
static gboolean
mark_seen (GHashTable *seen, char kind, const GStatBuf *st)
{
  return g_hash_table_add (seen, g_strdup_printf ("%c%" G_GUINT64_FORMAT ":%" G_GUINT64_FORMAT,
                                                  kind, (guint64) st->st_dev,
                                                  (guint64) st->st_ino));
}

static void
mark_folder_seen (GHashTable *seen, const char *path)
{
  GStatBuf st;
  if (g_stat (path, &st) == 0 && S_ISDIR (st.st_mode))
    mark_seen (seen, 'd', &st);
}

static void
note_skipped (VlDataset *ds, const char *path, const char *reason, char **first_skip)
{
  vl_ds_add_skipped (ds, path, reason);
  if (*first_skip == NULL)
    *first_skip = g_strdup_printf ("%s: %s", path, reason);
}

/* Appends the usable images under `path` to `out` (paths), recording skipped ones. Returns
 * the number of image files skipped; *first_skip receives the first one's description. A
 * symbolic link to a folder seen before (`seen`: the dataset's folders, and every folder and
 * file taken so far) is skipped, as is a dangling link; both are listed. */
static int
collect_images (VlDataset *ds, GHashTable *seen, const char *path, int depth, GPtrArray *out,
                char **first_skip)
{
  g_autoptr(GError) local = NULL;
  GPtrArray *names = vl_ds_list_folder (path, &local);
  int n_skipped = 0;
  if (names == NULL)
    {
      /* An unreadable subfolder: listed, the rest goes on. */
      const char *reason = local->message + strlen (path) + 2;   /* after "path: " */
      vl_ds_add_skipped (ds, path, reason);
      if (*first_skip == NULL)
        *first_skip = g_strdup (local->message);
      return 1;
    }
  for (guint i = 0; i < names->len; i++)
    {
      g_autofree char *full = g_build_filename (path, g_ptr_array_index (names, i), NULL);
      GStatBuf lst, st;
      gboolean is_link = g_lstat (full, &lst) == 0 && S_ISLNK (lst.st_mode);
      if (g_stat (full, &st) != 0)
        {
          if (is_link)
            {
              note_skipped (ds, full, "dangling symbolic link (its target does not exist)",
                            first_skip);
              n_skipped++;
            }
          continue;
        }
      if (S_ISDIR (st.st_mode))
        {
          if (!mark_seen (seen, 'd', &st))
            {
              /* a link back up (to .., say) or to another class's folder */
              if (is_link)
                {
                  note_skipped (ds, full, "symbolic link to a folder the dataset already "
                                "includes", first_skip);
                  n_skipped++;
                }
              continue;
            }
          if (depth < MAX_FOLDER_DEPTH)
            n_skipped += collect_images (ds, seen, full, depth + 1, out, first_skip);
          continue;
        }
      if (!S_ISREG (st.st_mode) || !vl_image_has_extension (full, TRUE))
        continue;
      if (!mark_seen (seen, 'f', &st))
        {
          note_skipped (ds, full, "the same file as another image of the dataset (a link)",
                        first_skip);
          n_skipped++;
          continue;
        }
      char *reason = vl_ds_check_image_header (full, st.st_size);
      if (reason == NULL)
        {
          g_ptr_array_add (out, g_steal_pointer (&full));
          continue;
        }
      note_skipped (ds, full, reason, first_skip);
      n_skipped++;
      g_free (reason);
    }
  g_ptr_array_unref (names);
  return n_skipped;
}

/* Adds the images of class folder `path` to `split`; an error when there is none. */
static gboolean
add_class_folder (VlDataset *ds, GHashTable *seen, VlSplit split, const char *path, int label,
                  GError **error)
{
  GPtrArray *files = g_ptr_array_new_with_free_func (g_free);
  char *first_skip = NULL;
  int n_skipped = collect_images (ds, seen, path, 0, files, &first_skip);
  gboolean ok = files->len > 0;
  if (!ok && n_skipped > 0)
    g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                 "%s: class folder has no usable image (%d skipped; first: %s)",
                 path, n_skipped, first_skip);
  else if (!ok)
    g_set_error (error, VL_ERROR, VL_ERROR_MISSING,
                 "%s: class folder has no image files (jpg, png, bmp, gif, pnm, tga, psd, hdr)",
                 path);
  for (guint i = 0; i < files->len; i++)
    vl_ds_add_item (ds, split, g_ptr_array_index (files, i), label);
  g_free (first_skip);
  g_ptr_array_unref (files);
  return ok;
}

/* Subfolders of path (the class folders), sorted. */
static GPtrArray *
list_subfolders (const char *path, GError **error)
{
  GPtrArray *names = vl_ds_list_folder (path, error);
  if (names == NULL)
    return NULL;
  GPtrArray *dirs = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < names->len; i++)
    {
      const char *name = g_ptr_array_index (names, i);
      g_autofree char *full = g_build_filename (path, name, NULL);
      if (g_file_test (full, G_FILE_TEST_IS_DIR))
        g_ptr_array_add (dirs, g_strdup (name));
    }
  g_ptr_array_unref (names);
  return dirs;
}

static gboolean
folder_has_images (const char *path)
{
  GPtrArray *names = vl_ds_list_folder (path, NULL);
  gboolean found = FALSE;
  for (guint i = 0; names != NULL && i < names->len && !found; i++)
    found = vl_image_has_extension (g_ptr_array_index (names, i), TRUE);
  if (names != NULL)
    g_ptr_array_unref (names);
  return found;
}

VlDataset *
vl_ds_open_folder (const char *spec, const VlDatasetOptions *opt, GError **error)
{
  g_autofree char *root = g_strdup (spec);
  gsize len = strlen (root);
  while (len > 1 && G_IS_DIR_SEPARATOR (root[len - 1]))
    root[--len] = '\0';

  if (!g_file_test (root, G_FILE_TEST_EXISTS))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_IO, "%s: no such folder", root);
      return NULL;
    }
  if (!g_file_test (root, G_FILE_TEST_IS_DIR))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "%s: not a folder (a dataset is a folder with one subfolder per class, "
                   "or train/ and val/ folders of class folders)", root);
      return NULL;
    }

  g_autofree char *csv = g_build_filename (root, "targets.csv", NULL);
  g_autofree char *train_csv = g_build_filename (root, "train", "targets.csv", NULL);
  if (g_file_test (csv, G_FILE_TEST_EXISTS) || g_file_test (train_csv, G_FILE_TEST_EXISTS))
    return vl_ds_open_targets_folder (root, opt, error);

  g_autofree char *train_dir = g_build_filename (root, "train", NULL);
  g_autofree char *val_dir = g_build_filename (root, "val", NULL);
  gboolean split_layout = g_file_test (train_dir, G_FILE_TEST_IS_DIR);
  gboolean has_val = split_layout && g_file_test (val_dir, G_FILE_TEST_IS_DIR);
  const char *class_root = split_layout ? train_dir : root;

  g_autoptr(GPtrArray) classes = list_subfolders (class_root, error);
  if (classes == NULL)
    return NULL;
  if (classes->len == 0)
    {
      if (folder_has_images (class_root))
        g_set_error (error, VL_ERROR, VL_ERROR_MISSING,
                     "%s: no class folders; put the images in one subfolder per class "
                     "(%s/CLASS/image.jpg)", class_root, class_root);
      else
        g_set_error (error, VL_ERROR, VL_ERROR_MISSING,
                     "%s: no images (expected one subfolder per class, or train/ and val/ "
                     "folders of class folders)", class_root);
      return NULL;
    }
  if (classes->len < 2)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISSING,
                   "%s: only one class folder (%s); at least two classes are needed",
                   class_root, (const char *) g_ptr_array_index (classes, 0));
      return NULL;
    }
  if (!has_val && !vl_ds_check_fraction (root, opt->val_fraction, error))
    return NULL;

  g_autoptr(VlDataset) ds = vl_ds_new (SOURCE_FOLDER, (int) classes->len);
  ds->channels = 3;
  for (guint k = 0; k < classes->len; k++)
    ds->class_names[k] = g_strdup (g_ptr_array_index (classes, k));

  /* The dataset's own folders are taken before any is scanned, so that a link to one of them
   * from inside a class folder is not followed (its images would get that class's label). */
  g_autoptr(GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr(GPtrArray) val_classes = NULL;
  mark_folder_seen (seen, root);
  mark_folder_seen (seen, class_root);
  for (guint k = 0; k < classes->len; k++)
    {
      g_autofree char *dir = g_build_filename (class_root, ds->class_names[k], NULL);
      mark_folder_seen (seen, dir);
    }
  if (has_val)
    {
      val_classes = list_subfolders (val_dir, error);
      if (val_classes == NULL)
        return NULL;
      mark_folder_seen (seen, val_dir);
      for (guint j = 0; j < val_classes->len; j++)
        {
          g_autofree char *dir = g_build_filename (val_dir, g_ptr_array_index (val_classes, j),
                                                   NULL);
          mark_folder_seen (seen, dir);
        }
    }

  for (guint k = 0; k < classes->len; k++)
    {
      g_autofree char *dir = g_build_filename (class_root, ds->class_names[k], NULL);
      if (!add_class_folder (ds, seen, VL_SPLIT_TRAIN, dir, (int) k, error))
        return NULL;
    }

  g_autofree char *base = g_path_get_basename (root);
  if (has_val)
    {
      for (guint j = 0; j < val_classes->len; j++)
        {
          const char *name = g_ptr_array_index (val_classes, j);
          g_autofree char *dir = g_build_filename (val_dir, name, NULL);
          int k = -1;
          for (int c = 0; c < ds->n_classes && k < 0; c++)
            if (strcmp (ds->class_names[c], name) == 0)
              k = c;
          if (k < 0)
            {
              g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                           "%s: class folder '%s' has no counterpart in %s",
                           dir, name, train_dir);
              return NULL;
            }
          if (!add_class_folder (ds, seen, VL_SPLIT_VAL, dir, k, error))
            return NULL;
        }
      ds->description = g_strdup_printf ("%s (train/val folders)", base);
    }
  else
    {
      vl_ds_split_stratified (ds, opt->val_fraction, opt->seed);
      ds->description = g_strdup_printf ("%s (%s, %g%% held out for validation, seed %"
                                         G_GUINT64_FORMAT ")", base,
                                         split_layout ? "train folder" : "class folders",
                                         opt->val_fraction * 100.0, opt->seed);
    }
  return g_steal_pointer (&ds);
}
