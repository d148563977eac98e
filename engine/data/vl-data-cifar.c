/* vl-data-cifar.c: CIFAR-10 and CIFAR-100 binary batches. */
#include "vl-dataset-private.h"
#include "vl-error.h"

/* ------------------------------------------------------------------------------------- */
/* CIFAR binary batches                                                                   */

static const char *const cifar10_names[10] = {
  "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
};

static const char *const cifar100_names[100] = {
  "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
  "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
  "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
  "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
  "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
  "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
  "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
  "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
  "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
  "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
  "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
  "willow_tree", "wolf", "woman", "worm",
};

#define CIFAR_PIXELS 3072   /* 3 x 32 x 32, planar */

/* Maps a CIFAR batch file and adds its records to split. */
static gboolean
cifar_add_file (VlDataset *ds, VlSplit split, const char *path, int label_bytes,
                int label_byte, GError **error)
{
  g_autoptr(GError) local = NULL;
  GMappedFile *mf = g_mapped_file_new (path, FALSE, &local);
  if (mf == NULL)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_IO, "%s: cannot read: %s", path, local->message);
      return FALSE;
    }
  GBytes *blob = g_mapped_file_get_bytes (mf);
  g_mapped_file_unref (mf);
  g_ptr_array_add (ds->blobs, blob);

  gsize size = 0;
  const uint8_t *data = g_bytes_get_data (blob, &size);
  gsize rec = (gsize) label_bytes + CIFAR_PIXELS;
  if (size == 0 || size % rec != 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                   "%s: %" G_GSIZE_FORMAT " bytes is not a whole number of %" G_GSIZE_FORMAT
                   "-byte records (%d label byte%s + 3072 pixel bytes)", path, size, rec,
                   label_bytes, label_bytes > 1 ? "s" : "");
      return FALSE;
    }
  for (gsize r = 0; r < size / rec; r++)
    {
      const uint8_t *p = data + r * rec;
      int label = p[label_byte];
      if (label >= ds->n_classes)
        {
          g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                       "%s: record %" G_GSIZE_FORMAT " has label %d, not 0..%d", path, r,
                       label, ds->n_classes - 1);
          return FALSE;
        }
      char name[32];
      g_snprintf (name, sizeof name, "#%" G_GSIZE_FORMAT, r);
      g_autofree char *full = g_strconcat (path, name, NULL);
      vl_ds_add_item (ds, split, full, label);
      Item *it = &g_array_index (ds->splits[split].items, Item,
                                 ds->splits[split].items->len - 1);
      it->record = p + label_bytes;
    }
  return TRUE;
}

/* Fills class_names[0..n) from a text file of one name a line when it has exactly n of them,
 * else from defaults. */
static void
cifar_read_names (char **class_names, const char *path, const char *const *defaults, int n)
{
  g_autofree char *text = NULL;
  g_auto(GStrv) names = NULL;
  int found = 0;
  if (g_file_get_contents (path, &text, NULL, NULL))
    {
      names = g_strsplit (text, "\n", -1);
      for (int i = 0; names[i] != NULL; i++)
        if (*g_strstrip (names[i]) != '\0')
          found++;
    }
  int k = 0;
  for (int i = 0; found == n && names[i] != NULL; i++)
    if (*names[i] != '\0')
      class_names[k++] = g_strdup (names[i]);
  for (; k < n; k++)
    class_names[k] = g_strdup (defaults[k]);
}

VlDataset *
vl_ds_open_cifar (gboolean hundred, const char *dir_spec, const VlDatasetOptions *opt,
                  GError **error)
{
  const char *kind = hundred ? "cifar100" : "cifar10";
  if (dir_spec == NULL || *dir_spec == '\0')
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "%s: name the folder of the binary batches (%s:DIR)", kind, kind);
      return NULL;
    }
  g_autofree char *dir = g_strdup (dir_spec);
  if (!g_file_test (dir, G_FILE_TEST_IS_DIR))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_IO, "%s: no such folder", dir);
      return NULL;
    }
  /* The folder the archives unpack to, when given the one around it. */
  const char *first = hundred ? "train.bin" : "data_batch_1.bin";
  g_autofree char *probe = g_build_filename (dir, first, NULL);
  g_autofree char *inner = g_build_filename (dir, hundred ? "cifar-100-binary"
                                                          : "cifar-10-batches-bin", NULL);
  if (!g_file_test (probe, G_FILE_TEST_EXISTS) && g_file_test (inner, G_FILE_TEST_IS_DIR))
    {
      g_free (dir);
      dir = g_steal_pointer (&inner);
    }

  int K = hundred ? 100 : 10;
  g_autoptr(VlDataset) ds = vl_ds_new (SOURCE_RECORDS, K);
  ds->channels = 3;
  ds->rec_w = ds->rec_h = 32;
  ds->rec_planar = TRUE;
  g_autofree char *names_path = g_build_filename (dir, hundred ? "fine_label_names.txt"
                                                               : "batches.meta.txt", NULL);
  cifar_read_names (ds->class_names, names_path, hundred ? cifar100_names : cifar10_names, K);

  int label_bytes = hundred ? 2 : 1, label_byte = hundred ? 1 : 0;
  int n_files = 0;
  for (int b = 1; b <= (hundred ? 1 : 5); b++)
    {
      g_autofree char *name = hundred ? g_strdup ("train.bin")
                                      : g_strdup_printf ("data_batch_%d.bin", b);
      g_autofree char *path = g_build_filename (dir, name, NULL);
      if (!g_file_test (path, G_FILE_TEST_EXISTS))
        continue;
      if (!cifar_add_file (ds, VL_SPLIT_TRAIN, path, label_bytes, label_byte, error))
        return NULL;
      n_files++;
    }
  if (n_files == 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISSING,
                   "%s: no %s (expected the binary version of %s: %s)", dir, first,
                   hundred ? "CIFAR-100" : "CIFAR-10",
                   hundred ? "train.bin, test.bin" : "data_batch_1..5.bin, test_batch.bin");
      return NULL;
    }
  g_autofree char *test_path = g_build_filename (dir, hundred ? "test.bin" : "test_batch.bin",
                                                 NULL);
  gboolean has_test = g_file_test (test_path, G_FILE_TEST_EXISTS);
  if (has_test)
    {
      if (!cifar_add_file (ds, VL_SPLIT_VAL, test_path, label_bytes, label_byte, error))
        return NULL;
    }
  else
    {
      if (!vl_ds_check_fraction (dir, opt->val_fraction, error))
        return NULL;
      vl_ds_split_stratified (ds, opt->val_fraction, opt->seed);
    }

  int n_present = 0;
  for (int k = 0; k < K; k++)
    n_present += ds->splits[VL_SPLIT_TRAIN].class_counts[k] > 0;
  if (n_present < 2)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISSING,
                   "%s: the training records hold %d class%s; at least two are needed",
                   dir, n_present, n_present == 1 ? "" : "es");
      return NULL;
    }
  ds->description = g_strdup_printf ("%s (%s%s)", hundred ? "CIFAR-100" : "CIFAR-10", dir,
                                     has_test ? "" : ", validation split from training");
  return g_steal_pointer (&ds);
}
