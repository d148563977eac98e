/* test-cli-features.c: vitlab-cli features and probe (VITLAB_CLI) on a small image folder the
 * test writes, with the vit-timm-tiny fixture as the backbone.
 *
 * The features equal vitlab-cli forward's on the same preprocessed pixels; the .npy and CSV
 * exports are read by numpy (VITLAB_PYTHON: Debian's python3 with python3-numpy); the probe's
 * printed accuracies are those of vl-probe on the exported features; a run folder gives the
 * same features as its backbone (only its head trained); bad input fails with one line naming
 * it. Every run goes through g_spawn_sync with an argv array. */
#include "vl-test-util.h"

#include "vl-dataset.h"
#include "vl-features.h"
#include "vl-model.h"
#include "vl-pool.h"
#include "vl-probe.h"
#include "vl-trainer.h"

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define TINT 20

#include <stb/stb_image_write.h>

/* ------------------------------------------------------------------ running programs */

typedef struct {
  char *cmdline;
  int   status;
  char *out;
  char *err;
} Run;

static void
run_free (Run *r)
{
  g_free (r->cmdline);
  g_free (r->out);
  g_free (r->err);
  g_free (r);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Run, run_free)

static Run *
spawn (GPtrArray *argv)
{
  g_ptr_array_add (argv, NULL);
  Run *r = g_new0 (Run, 1);
  r->cmdline = g_strjoinv (" ", (char **) argv->pdata);
  g_autoptr(GError) error = NULL;
  int wait_status = 0;
  g_assert_true (g_spawn_sync (NULL, (char **) argv->pdata, NULL, G_SPAWN_STDIN_FROM_DEV_NULL,
                               NULL, NULL, &r->out, &r->err, &wait_status, &error));
  g_assert_no_error (error);
  g_test_message ("$ %s\n%s%s", r->cmdline, r->out, r->err);
  if (WIFSIGNALED (wait_status))
    g_error ("%s: killed by signal %d\nstderr:\n%s", r->cmdline, WTERMSIG (wait_status), r->err);
  r->status = WEXITSTATUS (wait_status);
  if (strstr (r->err, "Sanitizer") || strstr (r->err, "runtime error:"))
    g_error ("%s: sanitizer report:\n%s", r->cmdline, r->err);
  return r;
}

static Run *
cli (const char *first, ...) G_GNUC_NULL_TERMINATED;

static Run *
cli (const char *first, ...)
{
  const char *path = g_getenv ("VITLAB_CLI");
  if (path == NULL || !g_file_test (path, G_FILE_TEST_IS_EXECUTABLE))
    g_error ("VITLAB_CLI must name the built vitlab-cli (got %s)", path ? path : "nothing");
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();
  g_ptr_array_add (argv, (gpointer) path);
  va_list ap;
  va_start (ap, first);
  for (const char *a = first; a; a = va_arg (ap, const char *))
    g_ptr_array_add (argv, (gpointer) a);
  va_end (ap);
  return spawn (argv);
}

static void
expect_success (Run *r)
{
  if (r->status != 0 || r->err[0] != '\0')
    g_error ("%s: exit %d, expected success with nothing on stderr:\n%s", r->cmdline, r->status,
             r->err);
}

/* Exit status `status`, one line on stderr that mentions `needle` (case-insensitive). */
static void
expect_failure (Run *r, int status, const char *needle)
{
  if (r->status != status)
    g_error ("%s: exit %d, expected %d; stderr:\n%s", r->cmdline, r->status, status, r->err);
  g_autofree char *low = g_ascii_strdown (r->err, -1), *want = g_ascii_strdown (needle, -1);
  if (strstr (low, want) == NULL)
    g_error ("%s: stderr does not mention \"%s\":\n%s", r->cmdline, needle, r->err);
  g_assert_true (g_str_has_prefix (r->err, "vitlab-cli: "));
  g_assert_cmpint (strchr (r->err, '\n') - r->err, ==, (long) strlen (r->err) - 1);
}

/* ------------------------------------------------------------------ the data */

typedef struct {
  char *dir;        /* the temporary folder */
  char *data;       /* DIR/images: train/{ants,bees}, val/{ants,bees} */
  char *ckpt;       /* the fixture backbone */
} Env;

static Env env;

/* A w x h RGB image: a faint class tint under a per-image brightness and gradient and pixel
 * noise from the seed (so that the probes are not all right: their accuracies mean something). */
static void
write_png (const char *path, int w, int h, int cls, int seed)
{
  g_autofree guint8 *px = g_new (guint8, w * h * 3);
  guint32 s = 2166136261u ^ (guint32) (seed * 7919);
  s = s * 1664525u + 1013904223u;
  int bright = (int) (s >> 26) - 32, tilt = (int) ((s >> 20) & 63) - 32;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < 3; c++)
        {
          s = s * 1664525u + 1013904223u;
          int base = 120 + (cls == 0 ? (c == 0 ? TINT : 0) : (c == 2 ? TINT : 0));
          int v = base + bright + (x * tilt) / w - (y * 30) / h + (int) (s >> 26) - 32;
          px[(y * w + x) * 3 + c] = (guint8) CLAMP (v, 0, 255);
        }
  g_assert_true (stbi_write_png (path, w, h, 3, px, w * 3));
}

static void
env_setup (void)
{
  env.dir = vl_test_tmpdir ();
  env.data = g_build_filename (env.dir, "images", NULL);
  env.ckpt = vl_test_shared_path ("fixtures", "vit-timm-tiny", NULL);
  const char *splits[] = { "train", "val" };
  const char *classes[] = { "ants", "bees" };
  for (int s = 0; s < 2; s++)
    for (int k = 0; k < 2; k++)
      {
        g_autofree char *d = g_build_filename (env.data, splits[s], classes[k], NULL);
        g_assert_cmpint (g_mkdir_with_parents (d, 0755), ==, 0);
        int n = s == 0 ? 7 : 4;
        for (int i = 0; i < n; i++)
          {
            /* one name with a comma and a quote: the CSVs must quote it */
            g_autofree char *name = i == 2 && k == 1 ? g_strdup_printf ("say \"%d\", then.png", i)
                                                     : g_strdup_printf ("%d.png", i);
            g_autofree char *p = g_build_filename (d, name, NULL);
            write_png (p, 36 + 3 * i, 40 - i, k, 100 * s + 10 * k + i);
          }
      }
}

static char *
tmp_path (const char *name)
{
  return g_build_filename (env.dir, name, NULL);
}

/* ------------------------------------------------------------------ features = forward */

/* The files of a features safetensors (metadata "files"). */
static char **
metadata_files (VlSafetensors *st)
{
  GHashTable *meta = vl_safetensors_metadata (st);
  g_assert_nonnull (meta);
  g_autoptr(JsonParser) p = json_parser_new ();
  g_assert_true (json_parser_load_from_data (p, g_hash_table_lookup (meta, "files"), -1, NULL));
  JsonArray *a = json_node_get_array (json_parser_get_root (p));
  guint n = json_array_get_length (a);
  char **files = g_new0 (char *, n + 1);
  for (guint i = 0; i < n; i++)
    files[i] = g_strdup (json_array_get_string_element (a, i));
  return files;
}

static void
test_features_equal_forward (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VlModel) m = vl_model_load (env.ckpt, &error);
  g_assert_no_error (error);
  VlDatasetOptions opts = VL_DATASET_OPTIONS_DEFAULT;
  g_autoptr(VlDataset) ds = vl_dataset_open (env.data, &opts, &error);
  g_assert_no_error (error);
  const int n_train = vl_dataset_n_items (ds, VL_SPLIT_TRAIN), n_val = vl_dataset_n_items (ds,
                                                                                          VL_SPLIT_VAL);
  g_assert_cmpint (n_train, ==, 14);
  g_assert_cmpint (n_val, ==, 8);
  const int N = n_train + n_val;

  /* the eval preprocessing of every image, written as the forward's input */
  VlPreprocess pp;
  vl_preprocess_from_model (m, &pp);
  const int64_t per = 3 * pp.size * pp.size;
  g_autofree float *pixels = g_new (float, N * per);
  for (int i = 0; i < N; i++)
    {
      VlSplit s = i < n_train ? VL_SPLIT_TRAIN : VL_SPLIT_VAL;
      g_assert_true (vl_dataset_load (ds, s, i < n_train ? i : i - n_train, &pp, VL_AUGMENT_NONE,
                                      0, pixels + i * per, &error));
      g_assert_no_error (error);
    }
  g_autofree char *images = tmp_path ("pixels.safetensors");
  {
    g_autoptr(VlSafetensorsWriter) w = vl_safetensors_writer_new ();
    int64_t shape[4] = { N, 3, pp.size, pp.size };
    vl_safetensors_writer_add_f32 (w, "images", 4, shape, pixels);
    g_assert_true (vl_safetensors_writer_write (w, images, &error));
  }

  const char *pools[] = { "token", "avg", "max" };
  for (guint p = 0; p < G_N_ELEMENTS (pools); p++)
    {
      g_autofree char *feat = tmp_path ("feat.safetensors"), *fw = tmp_path ("fw.safetensors");
      g_autoptr(Run) r = cli ("features", env.ckpt, "--data", env.data, "--pool", pools[p],
                              "--batch", "5", "--out", feat, NULL);
      expect_success (r);
      g_assert_nonnull (strstr (r->out, "22 images x 48 features"));
      g_autoptr(Run) r2 = cli ("forward", env.ckpt, "--images", images, "--pool", pools[p],
                               "--out", fw, NULL);
      expect_success (r2);

      g_autoptr(VlSafetensors) a = vl_test_open (feat);
      g_autoptr(VlSafetensors) b = vl_test_open (fw);
      int64_t na, nb, nl;
      g_autofree float *fa = vl_test_read (a, "features", &na);
      g_autofree float *fb = vl_test_read (b, "features", &nb);
      g_assert_cmpint (na, ==, (int64_t) N * 48);
      g_assert_cmpint (nb, ==, na);
      g_autofree char *what = g_strdup_printf ("features --pool %s vs forward", pools[p]);
      /* the same pixels in batches of 5 against one batch of 22: float rounding only */
      vl_test_assert_close (what, fa, fb, na, 1e-5, 1e-5);
      g_assert_cmpint (vl_safetensors_lookup (a, "labels")->dtype, ==, VL_DTYPE_I64);
      g_autofree float *labels = vl_test_read (a, "labels", &nl);
      g_auto(GStrv) files = metadata_files (a);
      g_assert_cmpint (g_strv_length (files), ==, N);
      for (int i = 0; i < N; i++)
        {
          VlSplit s = i < n_train ? VL_SPLIT_TRAIN : VL_SPLIT_VAL;
          int j = i < n_train ? i : i - n_train;
          g_assert_cmpstr (files[i], ==, vl_dataset_item_name (ds, s, j));
          g_assert_cmpfloat (labels[i], ==, vl_dataset_label (ds, s, j));
        }
      GHashTable *meta = vl_safetensors_metadata (a);
      g_assert_cmpstr (g_hash_table_lookup (meta, "n_train"), ==, "14");
      g_assert_cmpstr (g_hash_table_lookup (meta, "pool"), ==, pools[p]);
      g_assert_cmpstr (g_hash_table_lookup (meta, "layer"), ==, "final");
    }

  /* --split val: the last 8 rows of the above */
  g_autofree char *val = tmp_path ("val.safetensors");
  g_autoptr(Run) r = cli ("features", env.ckpt, "--data", env.data, "--split", "val", "--out",
                          val, NULL);
  expect_success (r);
  g_autoptr(VlSafetensors) st = vl_test_open (val);
  g_assert_cmpint (vl_safetensors_lookup (st, "features")->shape[0], ==, n_val);
  g_assert_cmpstr (g_hash_table_lookup (vl_safetensors_metadata (st), "split"), ==, "val");
}

/* ------------------------------------------------------------------ numpy reads the exports */

static const char *numpy_check =
  "import csv, sys\n"
  "import numpy as np\n"
  "npy, side, table, alltok = sys.argv[1:5]\n"
  "x = np.load(npy)\n"
  "assert x.dtype == np.float32 and x.flags['C_CONTIGUOUS'], x.dtype\n"
  "rows = list(csv.reader(open(side, newline='')))\n"
  "assert rows[0] == ['file', 'label'], rows[0]\n"
  "t = list(csv.reader(open(table, newline='')))\n"
  "assert t[0][:3] == ['file', 'label', 'f0'] and t[0][-1] == 'f%d' % (x.shape[1] - 1), t[0][:3]\n"
  "vals = np.array([[np.float32(v) for v in r[2:]] for r in t[1:]], dtype=np.float32)\n"
  "assert vals.shape == x.shape and (vals == x).all(), abs(vals - x).max()\n"
  "assert [r[:2] for r in t[1:]] == rows[1:]\n"
  "a = np.load(alltok)\n"
  "print(x.shape[0], x.shape[1], a.shape, ' '.join(r[1] for r in rows[1:]))\n"
  "print(max(len(r[0]) for r in rows[1:]), sum(',' in r[0] for r in rows[1:]))\n";

static void
test_numpy_reads_exports (void)
{
  g_autofree char *npy = tmp_path ("l2.npy"), *side = tmp_path ("l2.csv");
  g_autofree char *table = tmp_path ("table.csv"), *alltok = tmp_path ("all.npy");
  g_autoptr(Run) r1 = cli ("features", env.ckpt, "--data", env.data, "--layer", "2", "--pool",
                           "avg", "--out", npy, NULL);
  expect_success (r1);
  g_assert_nonnull (strstr (r1->out, "after block 2"));
  g_autoptr(Run) r2 = cli ("features", env.ckpt, "--data", env.data, "--layer", "-2", "--pool",
                           "avg", "--out", table, NULL);
  expect_success (r2);
  g_autoptr(Run) r3 = cli ("features", env.ckpt, "--data", env.data, "--split", "train", "--pool",
                           "all", "--out", alltok, NULL);
  expect_success (r3);

  const char *python = g_getenv ("VITLAB_PYTHON");
  if (python == NULL)
    g_error ("VITLAB_PYTHON must name a python3 with numpy (Debian's python3-numpy)");
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();
  const char *args[] = { python, "-c", numpy_check, npy, side, table, alltok };
  for (guint i = 0; i < G_N_ELEMENTS (args); i++)
    g_ptr_array_add (argv, (gpointer) args[i]);
  g_autoptr(Run) r = spawn (argv);
  if (r->status != 0)
    g_error ("numpy could not read the exports:\n%s", r->err);
  g_auto(GStrv) lines = g_strsplit (r->out, "\n", -1);
  /* 22 rows of 48; all tokens of the 14 train images: (14, 17, 48); labels in dataset order */
  g_assert_cmpstr (lines[0], ==, "22 48 (14, 17, 48) ants ants ants ants ants ants ants bees bees "
                                 "bees bees bees bees bees ants ants ants ants bees bees bees bees");
  g_auto(GStrv) counts = g_strsplit (lines[1], " ", -1);
  g_assert_cmpint (atoi (counts[1]), ==, 2);   /* the two names with a comma came through */
}

/* ------------------------------------------------------------------ probe */

static double
printed (const char *out, const char *key)
{
  g_autofree char *needle = g_strdup_printf ("\n%s=", key);
  const char *p = strstr (out, needle);
  g_assert_nonnull (p);
  return g_ascii_strtod (p + strlen (needle), NULL);
}

static void
test_probe (void)
{
  g_autoptr(Run) r = cli ("probe", env.ckpt, "--data", env.data, NULL);
  expect_success (r);
  g_assert_nonnull (strstr (r->out, "14 train, 8 val images, 2 classes"));
  g_assert_nonnull (strstr (r->out, "\n  ants  "));
  g_assert_nonnull (strstr (r->out, "\n  bees  "));
  g_assert_nonnull (strstr (r->out, "<- chosen"));
  /* the closing lines */
  g_auto(GStrv) lines = g_strsplit (g_strchomp (r->out), "\n", -1);
  guint n = g_strv_length (lines);
  g_assert_true (g_str_has_prefix (lines[n - 2], "knn_acc="));
  g_assert_true (g_str_has_prefix (lines[n - 1], "logreg_acc="));
  double knn = printed (r->out, "knn_acc"), lr = printed (r->out, "logreg_acc");

  /* the same probes on the exported features */
  g_autofree char *feat = tmp_path ("probe.safetensors");
  g_autoptr(Run) rf = cli ("features", env.ckpt, "--data", env.data, "--out", feat, NULL);
  expect_success (rf);
  g_autoptr(VlSafetensors) st = vl_test_open (feat);
  int64_t nf, nl;
  g_autofree float *x = vl_test_read (st, "features", &nf);
  g_autofree float *lf = vl_test_read (st, "labels", &nl);
  g_autofree int *y = g_new (int, nl);
  for (int64_t i = 0; i < nl; i++)
    y[i] = (int) lf[i];
  const int ntr = 14, nva = 8, D = 48;
  g_autofree int *pred = g_new (int, nva);
  g_autoptr(GError) error = NULL;
  g_assert_true (vl_knn_predict (x, y, ntr, x + ntr * D, nva, D, 2, 20, 0.07, pred, &error));
  VlProbeScore s;
  vl_probe_score (pred, y + ntr, nva, 2, &s);
  g_assert_cmpfloat (fabs (s.acc - knn), <, 1e-4);
  vl_probe_score_clear (&s);
  g_autoptr(VlLogreg) m = vl_logreg_fit_sweep (x, y, ntr, D, 2, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  vl_logreg_predict (m, x + ntr * D, nva, pred, NULL);
  vl_probe_score (pred, y + ntr, nva, 2, &s);
  g_assert_cmpfloat (fabs (s.acc - lr), <, 1e-4);
  vl_probe_score_clear (&s);
  g_test_message ("knn_acc %.4f, logreg_acc %.4f", knn, lr);

  /* one method, another k, a layer and a pooling */
  g_autoptr(Run) r2 = cli ("probe", env.ckpt, "--data", env.data, "--method", "knn", "--k", "3",
                           "--layer", "1", "--pool", "max", NULL);
  expect_success (r2);
  g_assert_nonnull (strstr (r2->out, "k-NN (k 3,"));
  g_assert_nonnull (strstr (r2->out, "after block 1, pool max"));
  g_assert_null (strstr (r2->out, "logreg_acc="));
  g_assert_nonnull (strstr (r2->out, "\nknn_acc="));

  /* every layer in one pass: a row per block and the final one, each the figure of that
   * layer alone; the closing line is the final layer's */
  g_autoptr(Run) r3 = cli ("probe", env.ckpt, "--data", env.data, "--method", "knn", "--k", "3",
                           "--layer", "all", "--pool", "max", NULL);
  expect_success (r3);
  g_auto(GStrv) rows = g_strsplit (r3->out, "\n", -1);
  int header = -1;
  for (int i = 0; rows[i]; i++)
    if (g_str_has_prefix (rows[i], "layer "))
      header = i;
  g_assert_cmpint (header, >=, 0);
  const char *names[] = { "0", "1", "2", "3", "final" };
  for (int j = 0; j < 5; j++)
    {
      g_auto(GStrv) cells = g_strsplit_set (rows[header + 1 + j], " ", -1);
      g_assert_cmpstr (cells[0], ==, names[j]);
      double acc = g_ascii_strtod (rows[header + 1 + j] + 5, NULL);
      if (j == 1)
        g_assert_cmpfloat (fabs (acc - printed (r2->out, "knn_acc")), <, 1e-9);
      if (j == 4)
        g_assert_cmpfloat (fabs (acc - printed (r3->out, "knn_acc")), <, 1e-9);
    }
  g_assert_true (g_str_has_prefix (rows[header + 6], "knn_acc="));
}

/* A run folder: its dataset is the default; only its head trained, so its features are the
 * backbone's. */
static void
test_run_folder (void)
{
  g_autofree char *run = tmp_path ("run");
  g_autoptr(Run) t = cli ("train", "--backbone", env.ckpt, "--data", env.data, "--out", run,
                          "--epochs", "1", "--batch", "8", NULL);
  if (t->status != 0)
    g_error ("%s: exit %d\n%s", t->cmdline, t->status, t->err);
  g_autofree char *a = tmp_path ("run-feat.safetensors"), *b = tmp_path ("ckpt-feat.safetensors");
  g_autoptr(Run) r1 = cli ("features", run, "--out", a, NULL);
  expect_success (r1);
  g_autoptr(Run) r2 = cli ("features", env.ckpt, "--data", env.data, "--out", b, NULL);
  expect_success (r2);
  g_autoptr(VlSafetensors) sa = vl_test_open (a);
  g_autoptr(VlSafetensors) sb = vl_test_open (b);
  int64_t na, nb;
  g_autofree float *fa = vl_test_read (sa, "features", &na);
  g_autofree float *fb = vl_test_read (sb, "features", &nb);
  g_assert_cmpint (na, ==, nb);
  vl_test_assert_close ("run vs backbone features", fa, fb, na, 1e-6, 0);
  g_autoptr(Run) r3 = cli ("probe", run, "--method", "knn", NULL);
  expect_success (r3);
  g_assert_nonnull (strstr (r3->out, "14 train, 8 val images"));
}

/* ------------------------------------------------------------------ bad input */

static void
test_errors (void)
{
  g_autofree char *out = tmp_path ("e.safetensors");
  g_autofree char *missing = tmp_path ("no-such-model");
  g_autofree char *nodata = tmp_path ("no-such-data");
  g_autofree char *nodir = g_build_filename (env.dir, "no", "dir", "e.csv", NULL);
  struct {
    const char *args[12];
    int status;
    const char *needle;
  } cases[] = {
    { { "features", env.ckpt, "--out", out }, 2, "give --data" },
    { { "features", env.ckpt, "--data", env.data }, 2, "--out" },
    { { "features", env.ckpt, "--data", env.data, "--pool", "mean", "--out", out }, 2, "--pool mean" },
    { { "features", env.ckpt, "--data", env.data, "--layer", "4", "--out", out }, 2, "layer 4" },
    { { "features", env.ckpt, "--data", env.data, "--layer", "x", "--out", out }, 2, "layer x" },
    { { "features", env.ckpt, "--data", env.data, "--split", "test", "--out", out }, 2, "--split test" },
    { { "features", env.ckpt, "--data", env.data, "--out", "x.txt" }, 2, "x.txt" },
    { { "features", env.ckpt, "--data", env.data, "--batch", "0", "--out", out }, 2, "--batch 0" },
    { { "features", missing, "--data", env.data, "--out", out }, 1, "no-such-model" },
    { { "features", env.ckpt, "--data", nodata, "--out", out }, 1, "no-such-data" },
    { { "features", env.ckpt, "--data", env.data, "--out", nodir }, 1, "e.csv" },
    { { "probe", env.ckpt, "--data", env.data, "--pool", "all" }, 2, "--pool all" },
    { { "probe", env.ckpt, "--data", env.data, "--method", "svm" }, 2, "--method svm" },
    { { "probe", env.ckpt, "--data", env.data, "--k", "0" }, 2, "--k 0" },
    { { "probe", env.ckpt, "--data", env.data, "--temperature", "-1" }, 2, "--temperature -1" },
    { { "probe", env.ckpt }, 2, "give --data" },
    { { "probe", missing, "--data", env.data }, 1, "no-such-model" },
    { { "probe" }, 2, "needs one" },
  };
  for (guint c = 0; c < G_N_ELEMENTS (cases); c++)
    {
      g_autoptr(GPtrArray) argv = g_ptr_array_new ();
      g_ptr_array_add (argv, (gpointer) g_getenv ("VITLAB_CLI"));
      for (int i = 0; cases[c].args[i]; i++)
        g_ptr_array_add (argv, (gpointer) cases[c].args[i]);
      g_autoptr(Run) r = spawn (argv);
      expect_failure (r, cases[c].status, cases[c].needle);
      g_assert_cmpstr (r->out, ==, "");
    }
  g_assert_false (g_file_test (out, G_FILE_TEST_EXISTS));
}

/* A tower without a class token (SigLIP's, tests/data/fam-timm-siglip): without --pool its
 * attention pool at the final layer (the features equal the model's own pooled features), the
 * mean at a block; a model without an attention pool refuses --pool map naming it. */
static void
test_siglip_pooling (void)
{
  g_autofree char *sig = vl_test_data_path ("fam-timm-siglip", NULL);
  g_autofree char *a = tmp_path ("sig-default.safetensors");
  g_autofree char *b = tmp_path ("sig-map.safetensors");
  g_autofree char *c = tmp_path ("sig-block0.safetensors");
  g_autoptr(Run) r1 = cli ("features", sig, "--data", env.data, "--out", a, NULL);
  g_autoptr(Run) r2 = cli ("features", sig, "--data", env.data, "--pool", "map", "--out", b, NULL);
  g_autoptr(Run) r3 = cli ("features", sig, "--data", env.data, "--layer", "0", "--out", c, NULL);
  g_assert_cmpint (r1->status, ==, 0);
  g_assert_cmpint (r2->status, ==, 0);
  g_assert_cmpint (r3->status, ==, 0);
  g_autoptr(VlSafetensors) fa = vl_test_open (a);
  g_autoptr(VlSafetensors) fb = vl_test_open (b);
  g_autoptr(VlSafetensors) fc = vl_test_open (c);
  g_assert_cmpstr (g_hash_table_lookup (vl_safetensors_metadata (fa), "pool"), ==, "map");
  g_assert_cmpstr (g_hash_table_lookup (vl_safetensors_metadata (fc), "pool"), ==, "avg");
  int64_t n = 0, n2 = 0;
  g_autofree float *xa = vl_test_read (fa, "features", &n);
  g_autofree float *xb = vl_test_read (fb, "features", &n2);
  g_assert_cmpint (n, ==, n2);
  g_assert_cmpmem (xa, n * sizeof (float), xb, n2 * sizeof (float));
  /* the model's own pooled features of the first training image */
  g_autoptr(GError) error = NULL;
  g_autoptr(VlModel) m = vl_model_load (sig, &error);
  g_assert_no_error (error);
  VlDatasetOptions opts = VL_DATASET_OPTIONS_DEFAULT;
  g_autoptr(VlDataset) ds = vl_dataset_open (env.data, &opts, &error);
  g_assert_no_error (error);
  VlPreprocess pp;
  vl_preprocess_from_model (m, &pp);
  g_autofree float *px = g_new (float, pp.channels * pp.size * pp.size);
  g_assert_true (vl_dataset_load (ds, VL_SPLIT_TRAIN, 0, &pp, VL_AUGMENT_NONE, 0, px, &error));
  g_assert_true (vl_model_forward (m, px, 1, pp.size, pp.size, VL_FORWARD_INFER, &error));
  vl_test_assert_close ("features of image 0", xa, vl_model_features (m), 32, 1e-5, 0);
  g_autofree char *gap = vl_test_data_path ("fam-timm-gap", NULL);
  g_autoptr(Run) bad = cli ("features", gap, "--data", env.data, "--pool", "map", "--out", a,
                            NULL);
  expect_failure (bad, 1, "no attention pool");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  vl_pool_init (0);
  env_setup ();
  g_test_add_func ("/cli-features/features-equal-forward", test_features_equal_forward);
  g_test_add_func ("/cli-features/numpy", test_numpy_reads_exports);
  g_test_add_func ("/cli-features/probe", test_probe);
  g_test_add_func ("/cli-features/run-folder", test_run_folder);
  g_test_add_func ("/cli-features/errors", test_errors);
  g_test_add_func ("/cli-features/siglip-pooling", test_siglip_pooling);
  int rc = g_test_run ();
  g_free (env.dir);
  g_free (env.data);
  g_free (env.ckpt);
  return rc;
}
