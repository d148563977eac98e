/* test-runs.c: run folders survive anything. Drives the real vitlab-cli (VITLAB_CLI) train on a
 * tiny image folder and the 4x48 fixture backbone, and interrupts it:
 *   - at every step of its checkpoint commit (VITLAB_FAULT_COMMIT=N: _exit(9) there), resuming
 *     each time, until a run ends on its own;
 *   - with real kill -9 at random (seeded) times;
 * and checks after every interruption that an opening of the folder (vl_run_recover) leaves a
 * consistent checkpoint: no pending file, metrics.jsonl holding exactly the epochs of the
 * checkpoint, the optimizer state belonging to model.safetensors; and at the end that the model,
 * the optimizer state and best.safetensors are bit for bit those of an uninterrupted run with
 * the same seed and every epoch is in metrics.jsonl once. Also: a run that never saved a
 * checkpoint resumes from epoch 0 or takes a new run, a complete run refuses a new one, a second
 * trainer is refused, run.json holds absolute paths and the run evaluates and resumes from
 * another folder. */
#include "vl-test-util.h"
#include "vl-model.h"
#include "vl-run.h"
#include "vl-trainer.h"

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define EPOCHS "10"
#define N_EPOCHS 10

/* The training every case runs: 10 short epochs, every group training from epoch 1 (so the
 * optimizer holds moments for every tensor), best.safetensors kept (early stopping on, with a
 * patience longer than the run). At this learning rate the validation loss falls every epoch,
 * so every commit holds best.safetensors and has the same steps. */
static const char *const train_opts[] = {
  "--epochs", EPOCHS, "--batch", "4", "--unlock-schedule", "0:2,1:all", "--lr", "0.001",
  "--seed", "1", "--early-stop", "20", NULL,
};

/* ------------------------------------------------------------------ running the CLI */

typedef struct {
  int   status;   /* exit status; -1 when killed by a signal */
  int   signal;
  char *out;
  char *err;
} CliRun;

static void
cli_run_free (CliRun *r)
{
  g_free (r->out);
  g_free (r->err);
  g_free (r);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (CliRun, cli_run_free)

static const char *
cli_path (void)
{
  const char *cli = g_getenv ("VITLAB_CLI");
  if (cli == NULL || !g_file_test (cli, G_FILE_TEST_IS_EXECUTABLE))
    g_error ("VITLAB_CLI must name the built vitlab-cli (got %s)", cli ? cli : "nothing");
  return cli;
}

/* argv: the CLI, then `args` (NULL-terminated), then `more` (NULL-terminated, may be NULL). */
static GPtrArray *
build_argv (const char *const *args, const char *const *more)
{
  GPtrArray *argv = g_ptr_array_new ();
  g_ptr_array_add (argv, (gpointer) cli_path ());
  for (const char *const *a = args; *a; a++)
    g_ptr_array_add (argv, (gpointer) *a);
  for (const char *const *a = more; a && *a; a++)
    g_ptr_array_add (argv, (gpointer) *a);
  g_ptr_array_add (argv, NULL);
  return argv;
}

static char **
env_with_fault (const char *fault)
{
  char **env = g_get_environ ();
  env = g_environ_unsetenv (env, "VITLAB_FAULT_COMMIT");
  if (fault)
    env = g_environ_setenv (env, "VITLAB_FAULT_COMMIT", fault, TRUE);
  return env;
}

/* Runs the CLI in `cwd` (NULL: here) with VITLAB_FAULT_COMMIT=fault (NULL: unset). */
static CliRun *
cli (const char *cwd, const char *fault, const char *const *args, const char *const *more)
{
  g_autoptr(GPtrArray) argv = build_argv (args, more);
  g_auto(GStrv) env = env_with_fault (fault);
  CliRun *r = g_new0 (CliRun, 1);
  g_autoptr(GError) error = NULL;
  int wait_status = 0;
  gboolean ok = g_spawn_sync (cwd, (char **) argv->pdata, env, G_SPAWN_STDIN_FROM_DEV_NULL,
                              NULL, NULL, &r->out, &r->err, &wait_status, &error);
  g_assert_no_error (error);
  g_assert_true (ok);
  g_autofree char *cmd = g_strjoinv (" ", (char **) argv->pdata);
  g_test_message ("$ %s%s%s (in %s)\n%s%s", fault ? "VITLAB_FAULT_COMMIT=" : "",
                  fault ? fault : "", cmd, cwd ? cwd : ".", r->out, r->err);
  if (WIFSIGNALED (wait_status))
    {
      r->status = -1;
      r->signal = WTERMSIG (wait_status);
    }
  else
    r->status = WEXITSTATUS (wait_status);
  if (strstr (r->err, "Sanitizer") || strstr (r->err, "runtime error:"))
    g_error ("%s: sanitizer report:\n%s", cmd, r->err);
  return r;
}

static void
expect_success (CliRun *r)
{
  if (r->status != 0)
    g_error ("exit %d (signal %d), expected success; stderr:\n%s", r->status, r->signal, r->err);
}

/* ------------------------------------------------------------------ files */

static void
rm_rf (const char *path)
{
  if (g_file_test (path, G_FILE_TEST_IS_DIR) && !g_file_test (path, G_FILE_TEST_IS_SYMLINK))
    {
      GDir *dir = g_dir_open (path, 0, NULL);
      if (dir)
        {
          const char *name;
          while ((name = g_dir_read_name (dir)) != NULL)
            {
              g_autofree char *child = g_build_filename (path, name, NULL);
              rm_rf (child);
            }
          g_dir_close (dir);
        }
      g_rmdir (path);
    }
  else
    g_remove (path);
}

static void
write_ppm (const char *path, int w, int h, int cls, GRand *rand)
{
  GString *s = g_string_new (NULL);
  g_string_append_printf (s, "P6\n%d %d\n255\n", w, h);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < 3; c++)
        {
          int v = g_rand_int_range (rand, 0, 80) + ((y < h / 2) == (cls == 0) ? 160 : 0);
          g_string_append_c (s, (char) MIN (v, 255));
        }
  g_assert_true (g_file_set_contents (path, s->str, (gssize) s->len, NULL));
  g_string_free (s, TRUE);
}

/* tmp/data: two classes of eight 40x36 images (12 train, 4 val at the default split). */
static char *
make_data (const char *tmp)
{
  GRand *rand = g_rand_new_with_seed (5);
  const char *classes[] = { "down", "up" };
  for (int k = 0; k < 2; k++)
    {
      g_autofree char *dir = g_build_filename (tmp, "data", classes[k], NULL);
      g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
      for (int i = 0; i < 8; i++)
        {
          g_autofree char *name = g_strdup_printf ("img%02d.ppm", i);
          g_autofree char *path = g_build_filename (dir, name, NULL);
          write_ppm (path, 40, 36, k, rand);
        }
    }
  g_rand_free (rand);
  return g_build_filename (tmp, "data", NULL);
}

static GBytes *
read_bytes (const char *dir, const char *name)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  char *data = NULL;
  gsize n = 0;
  g_autoptr(GError) error = NULL;
  if (!g_file_get_contents (path, &data, &n, &error))
    g_error ("%s", error->message);
  return g_bytes_new_take (data, n);
}

static void
write_bytes (const char *dir, const char *name, GBytes *b)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  gsize n;
  const char *data = g_bytes_get_data (b, &n);
  g_assert_true (g_file_set_contents (path, data, (gssize) n, NULL));
}

static gboolean
has_file (const char *dir, const char *name)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  return g_file_test (path, G_FILE_TEST_EXISTS);
}

/* The run folder holds no hidden file: no pending copy, temporary file or manifest. */
static void
assert_no_leftovers (const char *dir)
{
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
  g_assert_nonnull (d);
  const char *name;
  while ((name = g_dir_read_name (d)) != NULL)
    if (name[0] == '.')
      g_error ("%s: %s left behind", dir, name);
}

/* The "epoch" of each line of metrics.jsonl, in order (none when there is no file). */
static GArray *
metrics_epochs (const char *dir)
{
  GArray *epochs = g_array_new (FALSE, FALSE, sizeof (int));
  g_autofree char *path = g_build_filename (dir, "metrics.jsonl", NULL);
  g_autofree char *text = NULL;
  if (!g_file_get_contents (path, &text, NULL, NULL))
    return epochs;
  g_assert_true (text[0] == '\0' || g_str_has_suffix (text, "\n"));
  g_auto(GStrv) lines = g_strsplit (text, "\n", -1);
  for (int i = 0; lines[i] && lines[i][0]; i++)
    {
      g_autoptr(JsonParser) p = json_parser_new ();
      g_autoptr(GError) error = NULL;
      json_parser_load_from_data (p, lines[i], -1, &error);
      g_assert_no_error (error);
      int e = (int) json_object_get_int_member (json_node_get_object (json_parser_get_root (p)),
                                                "epoch");
      g_array_append_val (epochs, e);
    }
  return epochs;
}

/* metrics.jsonl lists the epochs 0 .. n-1, each once, in order. */
static void
assert_metrics_epochs (const char *dir, int n)
{
  g_autoptr(GArray) e = metrics_epochs (dir);
  GString *s = g_string_new (NULL);
  for (guint i = 0; i < e->len; i++)
    g_string_append_printf (s, " %d", g_array_index (e, int, i));
  g_test_message ("%s: metrics epochs%s (checkpoint: %d)", dir, s->str, n);
  g_string_free (s, TRUE);
  g_assert_cmpint (e->len, ==, n);
  for (int i = 0; i < n; i++)
    g_assert_cmpint (g_array_index (e, int, i), ==, i);
}

/* SHA-256 of every parameter as the trainer computes it for optimizer.safetensors'
 * model_sha256 (names with their NUL, float32 data, in the model's order). */
static char *
params_sha256 (VlModel *m)
{
  g_autoptr(GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);
  for (int i = 0; i < vl_model_n_tensors (m); i++)
    {
      int64_t numel;
      const float *d = vl_model_tensor_data (m, i, NULL, NULL, &numel);
      const char *name = vl_model_tensor_name (m, i);
      g_checksum_update (sum, (const guchar *) name, strlen (name) + 1);
      g_checksum_update (sum, (const guchar *) d, (gssize) (numel * sizeof (float)));
    }
  return g_strdup (g_checksum_get_string (sum));
}

/* What any opening of the folder sees once it has recovered: a whole checkpoint (the optimizer
 * state of this very model, metrics of exactly its epochs) or none at all (and no metrics).
 * Returns the checkpoint's epoch count (0: none). */
static int
recover_and_check (const char *dir)
{
  g_autoptr(GError) error = NULL;
  g_assert_true (vl_run_recover (dir, NULL, &error));
  g_assert_no_error (error);
  assert_no_leftovers (dir);
  g_assert_true (has_file (dir, "run.json"));
  if (!vl_run_has_checkpoint (dir))
    {
      assert_metrics_epochs (dir, 0);
      return 0;
    }
  g_autofree char *opt = g_build_filename (dir, "optimizer.safetensors", NULL);
  g_autoptr(VlSafetensors) st = vl_safetensors_open (opt, &error);
  g_assert_no_error (error);
  GHashTable *meta = vl_safetensors_metadata (st);
  int epoch = atoi (g_hash_table_lookup (meta, "epoch"));
  g_assert_cmpstr (g_hash_table_lookup (meta, "batch"), ==, "0");
  g_autoptr(VlModel) m = vl_run_load_model (dir, NULL, &error);
  g_assert_no_error (error);
  g_autofree char *sha = params_sha256 (m);
  g_assert_cmpstr (g_hash_table_lookup (meta, "model_sha256"), ==, sha);
  assert_metrics_epochs (dir, epoch);
  return epoch;
}

/* A metrics line without the fields that measure time. */
static char *
metrics_without_timing (const char *line)
{
  g_autoptr(JsonParser) p = json_parser_new ();
  g_assert_true (json_parser_load_from_data (p, line, -1, NULL));
  JsonObject *o = json_node_get_object (json_parser_get_root (p));
  json_object_remove_member (o, "seconds");
  json_object_remove_member (o, "images_per_s");
  return json_to_string (json_parser_get_root (p), FALSE);
}

/* The finished run equals the uninterrupted one: every epoch once, the same metrics (timing
 * aside), and bit for bit the same model, optimizer state and best model. */
static void
assert_same_as (const char *dir, const char *ref)
{
  g_assert_cmpint (recover_and_check (dir), ==, N_EPOCHS);
  assert_metrics_epochs (dir, N_EPOCHS);
  const char *files[] = { "model.safetensors", "optimizer.safetensors", "best.safetensors",
                          "config.json" };
  for (guint i = 0; i < G_N_ELEMENTS (files); i++)
    {
      g_autoptr(GBytes) a = read_bytes (dir, files[i]);
      g_autoptr(GBytes) b = read_bytes (ref, files[i]);
      if (!g_bytes_equal (a, b))
        g_error ("%s/%s differs from the uninterrupted run's", dir, files[i]);
    }
  g_autoptr(GBytes) ma = read_bytes (dir, "metrics.jsonl");
  g_autoptr(GBytes) mb = read_bytes (ref, "metrics.jsonl");
  g_auto(GStrv) la = g_strsplit (g_bytes_get_data (ma, NULL), "\n", -1);
  g_auto(GStrv) lb = g_strsplit (g_bytes_get_data (mb, NULL), "\n", -1);
  g_assert_cmpint (g_strv_length (la), ==, g_strv_length (lb));
  for (int i = 0; la[i] && la[i][0]; i++)
    {
      g_autofree char *x = metrics_without_timing (la[i]);
      g_autofree char *y = metrics_without_timing (lb[i]);
      g_assert_cmpstr (x, ==, y);
    }
}

/* ------------------------------------------------------------------ fixtures */

typedef struct {
  char *tmp;
  char *data;
  char *backbone;
  char *ref;      /* the uninterrupted run */
  double ref_s;   /* its wall time */
} Env;

static Env shared_env;

/* The data, the backbone and the uninterrupted run, made by the first test that needs them. */
static Env *
env_get (void)
{
  Env *e = &shared_env;
  if (e->tmp)
    return e;
  e->tmp = vl_test_tmpdir ();
  e->data = make_data (e->tmp);
  e->backbone = vl_test_shared_path ("fixtures", "vit-timm-tiny", NULL);
  e->ref = g_build_filename (e->tmp, "ref", NULL);
  const char *args[] = { "train", "--backbone", e->backbone, "--data", e->data, "--out", e->ref,
                         NULL };
  gint64 t0 = g_get_monotonic_time ();
  g_autoptr(CliRun) r = cli (NULL, NULL, args, train_opts);
  e->ref_s = (g_get_monotonic_time () - t0) / 1e6;
  expect_success (r);
  g_assert_cmpint (recover_and_check (e->ref), ==, N_EPOCHS);
  g_assert_true (has_file (e->ref, "best.safetensors"));
  return e;
}

static void
env_teardown (Env *e)
{
  if (e->tmp == NULL)
    return;
  rm_rf (e->tmp);
  g_free (e->tmp);
  g_free (e->data);
  g_free (e->backbone);
  g_free (e->ref);
}

/* One start of the run in dir: a new run while it has no run.json (or, with `fresh`, no
 * checkpoint), else --resume. */
static CliRun *
start_run (Env *e, const char *dir, const char *fault, gboolean fresh)
{
  if (!has_file (dir, "run.json") || (fresh && !vl_run_has_checkpoint (dir)))
    {
      const char *args[] = { "train", "--backbone", e->backbone, "--data", e->data, "--out", dir,
                             NULL };
      return cli (NULL, fault, args, train_opts);
    }
  const char *args[] = { "train", "--resume", "--out", dir, NULL };
  return cli (NULL, fault, args, NULL);
}

/* ------------------------------------------------------------------ cases */

/* VITLAB_FAULT_COMMIT=k, k = 1, 2, ...: each process dies at step k of its first commit and the
 * next one resumes (some as a new run while there is no checkpoint), until a process no longer
 * meets its step and the run ends. Every other interruption is recovered and checked from here
 * first; the others by the next start itself. */
static void
test_fault_injection (void)
{
  Env *e = env_get ();
  g_autofree char *dir = g_build_filename (e->tmp, "faults", NULL);
  {
    g_autoptr(GBytes) m = read_bytes (e->ref, "metrics.jsonl");
    g_auto(GStrv) lines = g_strsplit (g_bytes_get_data (m, NULL), "\n", -1);
    for (int i = 0; lines[i] && lines[i][0]; i++)
      if (!strstr (lines[i], "\"best\":true"))
        g_error ("the uninterrupted run's epoch %d is not its best so far: the steps of its "
                 "commit differ from the others'; choose options where the loss keeps falling", i);
  }
  g_autoptr(GPtrArray) steps = g_ptr_array_new_with_free_func (g_free);
  int k;
  for (k = 1; k <= 40; k++)
    {
      g_autofree char *fault = g_strdup_printf ("%d", k);
      g_autoptr(CliRun) r = start_run (e, dir, fault, k % 3 == 0);
      if (r->status == 0)
        break;
      g_assert_cmpint (r->status, ==, 9);
      g_autofree char *want = g_strdup_printf ("vitlab: fault injection: exit at commit 1 step %d "
                                               "(before ", k);
      const char *at = strstr (r->err, want);
      if (at == NULL)
        g_error ("step %d: no fault report in stderr:\n%s", k, r->err);
      at += strlen (want);
      g_ptr_array_add (steps, g_strndup (at, strcspn (at, ")")));
      if (k % 2 == 0)
        recover_and_check (dir);
    }
  g_assert_cmpint (k, <=, 40);
  /* every kind of step was met: the writes, the commit point, the renames, the metrics, the end */
  const char *kinds[] = {
    "writing .model.safetensors.pending and .config.json.pending",
    "writing .optimizer.safetensors.pending", "writing .best.safetensors.pending",
    "writing .run.json.pending", "writing .metrics.jsonl.pending", "writing the manifest",
    "renaming model.safetensors", "renaming config.json", "renaming optimizer.safetensors",
    "renaming best.safetensors", "renaming run.json", "appending to metrics.jsonl",
    "removing .metrics.jsonl.pending", "removing the manifest",
  };
  for (guint i = 0; i < G_N_ELEMENTS (kinds); i++)
    {
      gboolean met = FALSE;
      for (guint j = 0; j < steps->len; j++)
        met |= g_str_equal (g_ptr_array_index (steps, j), kinds[i]);
      if (!met)
        g_error ("no fault injected before \"%s\"", kinds[i]);
    }
  g_assert_cmpstr (g_ptr_array_index (steps, steps->len - 1), ==, "removing the manifest");
  assert_same_as (dir, e->ref);
}

/* Real kill -9 at random times (seeded) within the time an uninterrupted run takes, each start
 * resuming the folder (or starting anew while it has no checkpoint); a run that gets to its end
 * is compared with the uninterrupted one and started again from nothing. */
static void
test_kill (void)
{
  Env *e = env_get ();
  g_autofree char *dir = g_build_filename (e->tmp, "killed", NULL);
  GRand *rand = g_rand_new_with_seed (20261206);
  const int n_starts = 12;
  int killed = 0, finished = 0, with_checkpoint = 0, checked = 0;
  for (int i = 0; i < n_starts; i++)
    {
      gboolean fresh = !has_file (dir, "run.json") || (i % 2 == 1 && !vl_run_has_checkpoint (dir));
      const char *resume[] = { "train", "--resume", "--out", dir, NULL };
      const char *anew[] = { "train", "--backbone", e->backbone, "--data", e->data, "--out", dir,
                             NULL };
      g_autoptr(GPtrArray) argv = build_argv (fresh ? anew : resume, fresh ? train_opts : NULL);
      g_auto(GStrv) env = env_with_fault (NULL);
      GPid pid;
      g_autoptr(GError) error = NULL;
      gboolean ok = g_spawn_async (NULL, (char **) argv->pdata, env,
                                   G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_STDOUT_TO_DEV_NULL |
                                   G_SPAWN_STDERR_TO_DEV_NULL | G_SPAWN_STDIN_FROM_DEV_NULL,
                                   NULL, NULL, &pid, &error);
      g_assert_no_error (error);
      g_assert_true (ok);
      gulong delay = (gulong) g_rand_double_range (rand, 0, e->ref_s * 1e6);
      g_usleep (delay);
      kill (pid, SIGKILL);
      int status = 0;
      g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
      g_spawn_close_pid (pid);
      gboolean was_killed = WIFSIGNALED (status) && WTERMSIG (status) == SIGKILL;
      if (!was_killed && !(WIFEXITED (status) && WEXITSTATUS (status) == 0))
        g_error ("start %d: ended by itself with status 0x%x", i, status);
      killed += was_killed;
      g_test_message ("start %d (%s): %s after %.3f s", i, fresh ? "new" : "resume",
                      was_killed ? "killed" : "finished", delay / 1e6);
      if (!was_killed)
        {
          /* the end: the same as without interruptions; then again from nothing */
          assert_same_as (dir, e->ref);
          finished++;
          rm_rf (dir);
          continue;
        }
      if (!has_file (dir, "run.json"))
        continue;   /* killed before the run began */
      if (i % 2 == 0)
        {
          with_checkpoint += recover_and_check (dir) > 0;
          checked++;
        }
    }
  g_test_message ("%d of %d starts killed, %d runs finished; %d of %d folders checked had a "
                  "checkpoint", killed, n_starts, finished, with_checkpoint, checked);
  g_assert_cmpint (killed, >=, n_starts / 3);
  g_autoptr(CliRun) r = start_run (e, dir, NULL, FALSE);
  expect_success (r);
  assert_same_as (dir, e->ref);
  g_rand_free (rand);
}

/* A run that never saved a checkpoint (killed in its first commit, or its first save failed as
 * on a full disk) takes a new run or resumes from epoch 0; a complete run refuses a new one;
 * a folder in use by a trainer refuses a second. */
static void
test_no_checkpoint (void)
{
  Env *e = env_get ();
  const char *const anew_opts[] = { "--backbone", e->backbone, "--data", e->data, NULL };

  /* killed at the start of its first commit: run.json alone; a new run is accepted */
  g_autofree char *a = g_build_filename (e->tmp, "a", NULL);
  const char *train_a[] = { "train", "--out", a, NULL };
  {
    g_autoptr(GPtrArray) opts = g_ptr_array_new ();
    for (const char *const *o = anew_opts; *o; o++)
      g_ptr_array_add (opts, (gpointer) *o);
    for (const char *const *o = train_opts; *o; o++)
      g_ptr_array_add (opts, (gpointer) *o);
    g_ptr_array_add (opts, NULL);
    g_autoptr(CliRun) r1 = cli (NULL, "1", train_a, (const char *const *) opts->pdata);
    g_assert_cmpint (r1->status, ==, 9);
    g_assert_cmpint (recover_and_check (a), ==, 0);
    g_autoptr(CliRun) r2 = cli (NULL, NULL, train_a, (const char *const *) opts->pdata);
    expect_success (r2);
    assert_same_as (a, e->ref);
    /* now complete: a new run is refused (as before), naming the folder */
    g_autoptr(CliRun) r3 = cli (NULL, NULL, train_a, (const char *const *) opts->pdata);
    g_assert_cmpint (r3->status, ==, 1);
    g_assert_nonnull (strstr (r3->err, a));
    g_assert_nonnull (strstr (r3->err, "already holds a run"));
  }

  /* the first save fails (a directory squats a pending name, as a full disk fails a write):
   * the run ends with the error, run.json alone stays, and --resume starts at epoch 0 */
  g_autofree char *b = g_build_filename (e->tmp, "b", NULL);
  g_autofree char *squat = g_build_filename (b, ".optimizer.safetensors.pending", "x", NULL);
  g_assert_cmpint (g_mkdir_with_parents (squat, 0755), ==, 0);
  {
    g_autoptr(CliRun) r1 = start_run (e, b, NULL, FALSE);
    g_assert_cmpint (r1->status, ==, 1);
    g_assert_nonnull (strstr (r1->err, "optimizer.safetensors.pending"));
    g_assert_nonnull (strstr (r1->err, "saving the checkpoint of epoch 1"));
    g_assert_false (vl_run_has_checkpoint (b));
    g_assert_false (has_file (b, ".model.safetensors.pending"));
    g_autofree char *squat_dir = g_path_get_dirname (squat);
    rm_rf (squat_dir);
    g_assert_cmpint (recover_and_check (b), ==, 0);
    g_autoptr(CliRun) r2 = start_run (e, b, NULL, FALSE);   /* --resume */
    expect_success (r2);
    g_assert_null (strstr (r2->err, "resuming at"));
    g_assert_nonnull (strstr (r2->out, "epoch 1/" EPOCHS));
    assert_same_as (b, e->ref);
  }

  /* a folder a trainer holds: a second trainer is refused, an opening leaves it alone */
  {
    g_autoptr(GError) error = NULL;
    g_autoptr(VlRunLock) lock = vl_run_lock (b, &error);
    g_assert_no_error (error);
    g_autofree char *manifest = g_build_filename (b, VL_RUN_MANIFEST, NULL);
    g_autofree char *stray = g_build_filename (b, ".model.safetensors.pending", NULL);
    g_assert_true (g_file_set_contents (stray, "x", 1, NULL));
    g_assert_true (vl_run_recover (b, NULL, &error));
    g_assert_true (has_file (b, ".model.safetensors.pending"));
    const char *resume[] = { "train", "--resume", "--out", b, NULL };
    g_autoptr(CliRun) r = cli (NULL, NULL, resume, NULL);
    g_assert_cmpint (r->status, ==, 1);
    g_assert_nonnull (strstr (r->err, "another training run"));
    g_clear_pointer (&lock, vl_run_unlock);
    g_assert_cmpint (recover_and_check (b), ==, N_EPOCHS);   /* the stray file goes */
  }
}

/* run.json holds absolute paths beside the typed ones: the run trained from one folder with
 * relative paths evaluates and resumes from another (/, where the relative ones name nothing);
 * a resume drops metrics lines past its checkpoint. */
static void
test_paths (void)
{
  Env *e = env_get ();
  g_autofree char *work = g_build_filename (e->tmp, "work", NULL);
  const char *other = "/";
  g_autofree char *bb = g_build_filename (e->tmp, "bb", NULL);
  g_autofree char *run = g_build_filename (work, "run", NULL);
  g_assert_cmpint (g_mkdir (work, 0755), ==, 0);
  g_assert_cmpint (symlink (e->backbone, bb), ==, 0);
  const char *args[] = { "train", "--backbone", "../bb", "--data", "../data", "--out", "run",
                         NULL };
  g_autoptr(CliRun) r1 = cli (work, NULL, args, train_opts);
  expect_success (r1);

  g_autofree char *json = g_build_filename (run, "run.json", NULL);
  g_autoptr(JsonParser) p = json_parser_new ();
  g_autoptr(GError) error = NULL;
  g_assert_true (json_parser_load_from_file (p, json, &error));
  JsonObject *root = json_node_get_object (json_parser_get_root (p));
  JsonObject *bbo = json_object_get_object_member (root, "backbone");
  JsonObject *data = json_object_get_object_member (root, "data");
  g_assert_cmpstr (json_object_get_string_member (bbo, "path"), ==, bb);
  g_assert_cmpstr (json_object_get_string_member (bbo, "path_typed"), ==, "../bb");
  g_assert_cmpstr (json_object_get_string_member (data, "spec"), ==, e->data);
  g_assert_cmpstr (json_object_get_string_member (data, "spec_typed"), ==, "../data");

  /* eval from another folder, with the run's absolute path */
  const char *eval[] = { "eval", run, NULL };
  g_autoptr(CliRun) r2 = cli (other, NULL, eval, NULL);
  expect_success (r2);
  g_assert_nonnull (strstr (r2->out, "val_acc="));

  /* metrics lines past the checkpoint (a repeated epoch, one never saved) go on resume */
  g_autofree char *metrics = g_build_filename (run, "metrics.jsonl", NULL);
  g_autofree char *text = NULL;
  g_assert_true (g_file_get_contents (metrics, &text, NULL, NULL));
  g_autofree char *first = g_strndup (text, strcspn (text, "\n") + 1);
  g_autofree char *more = g_strconcat (text, first, "{\"epoch\":" EPOCHS ",\"val_loss\":1}\n",
                                       NULL);
  g_assert_true (g_file_set_contents (metrics, more, -1, NULL));
  const char *resume[] = { "train", "--resume", "--epochs", "12", "--out", run, NULL };
  g_autoptr(CliRun) r3 = cli (other, NULL, resume, NULL);
  expect_success (r3);
  g_assert_cmpint (recover_and_check (run), ==, 12);
  /* the typed forms stay through the resume */
  g_autoptr(JsonParser) p2 = json_parser_new ();
  g_assert_true (json_parser_load_from_file (p2, json, &error));
  root = json_node_get_object (json_parser_get_root (p2));
  bbo = json_object_get_object_member (root, "backbone");
  g_assert_cmpstr (json_object_get_string_member (bbo, "path"), ==, bb);
  g_assert_cmpstr (json_object_get_string_member (bbo, "path_typed"), ==, "../bb");
}

/* Folders that earlier versions left when killed between two renames of their save (model
 * renamed, optimizer state still pending; or the checkpoint renamed, its metrics still pending)
 * resume once opened, to the same end as a run never interrupted. */
static void
test_legacy (void)
{
  Env *e = env_get ();
  for (int variant = 0; variant < 2; variant++)
    {
      g_autofree char *name = g_strdup_printf ("legacy-%d", variant);
      g_autofree char *dir = g_build_filename (e->tmp, name, NULL);
      /* the checkpoints of epochs 2 and 3, by faults at the start of a commit */
      g_autoptr(CliRun) r1 = start_run (e, dir, "3:1", FALSE);
      g_assert_cmpint (r1->status, ==, 9);
      g_assert_cmpint (recover_and_check (dir), ==, 2);
      g_autoptr(GBytes) opt2 = read_bytes (dir, "optimizer.safetensors");
      g_autoptr(GBytes) metrics2 = read_bytes (dir, "metrics.jsonl");
      g_autoptr(CliRun) r2 = start_run (e, dir, "2:1", FALSE);
      g_assert_cmpint (r2->status, ==, 9);
      g_assert_cmpint (recover_and_check (dir), ==, 3);
      g_autoptr(GBytes) opt3 = read_bytes (dir, "optimizer.safetensors");
      g_autoptr(GBytes) metrics3 = read_bytes (dir, "metrics.jsonl");
      g_autoptr(GBytes) run3 = read_bytes (dir, "run.json");
      /* the old save wrote every file whole under .NAME.pending, then renamed model, config,
       * optimizer, metrics, run.json in turn; killed after the model (0) or the optimizer (1) */
      if (variant == 0)
        {
          write_bytes (dir, "optimizer.safetensors", opt2);
          write_bytes (dir, ".optimizer.safetensors.pending", opt3);
        }
      write_bytes (dir, "metrics.jsonl", metrics2);
      write_bytes (dir, ".metrics.jsonl.pending", metrics3);
      write_bytes (dir, ".run.json.pending", run3);
      g_autoptr(CliRun) r3 = start_run (e, dir, NULL, FALSE);
      expect_success (r3);
      g_assert_nonnull (strstr (r3->err, "resuming at epoch 4"));
      assert_same_as (dir, e->ref);
    }
}

/* A manifest that is not one (damaged by hand or by another program) is an error naming it, on
 * every opening, and nothing is renamed; it never names a file outside the run's own. */
static void
test_bad_manifest (void)
{
  Env *e = env_get ();
  g_autofree char *dir = g_build_filename (e->tmp, "bad-manifest", NULL);
  g_autofree char *manifest = g_build_filename (dir, VL_RUN_MANIFEST, NULL);
  g_autofree char *victim = g_build_filename (e->tmp, "victim", NULL);
  g_assert_cmpint (g_mkdir (dir, 0755), ==, 0);
  g_assert_true (g_file_set_contents (victim, "keep", -1, NULL));
  g_autoptr(GBytes) run = read_bytes (e->ref, "run.json");
  write_bytes (dir, "run.json", run);
  struct {
    const char *text;
    const char *says;
  } cases[] = {
    { "{\"files\": [\"model.safetensors\"", VL_RUN_MANIFEST },
    { "[]", "not a JSON object" },
    { "{\"files\": 3}", "not a commit manifest" },
    { "{\"files\": [\"model.safetensors\"], \"metrics_length\": \"x\"}",
      "not a commit manifest" },
    { "{\"files\": [\"../victim\"]}", "\"../victim\", not a file of a run" },
    { "{\"files\": [{}]}", "not a file of a run" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_assert_true (g_file_set_contents (manifest, cases[i].text, -1, NULL));
      g_autoptr(GError) error = NULL;
      VlTrainConfig c;
      g_assert_false (vl_train_config_load (&c, dir, &error));
      g_assert_nonnull (error);
      g_test_message ("%s -> %s", cases[i].text, error->message);
      g_assert_nonnull (strstr (error->message, manifest));
      g_assert_nonnull (strstr (error->message, cases[i].says));
      g_clear_error (&error);
      g_assert_null (vl_run_load_model (dir, NULL, &error));
      g_assert_nonnull (strstr (error->message, manifest));
      g_autofree char *kept = NULL;
      g_assert_true (g_file_get_contents (victim, &kept, NULL, NULL));
      g_assert_cmpstr (kept, ==, "keep");
      g_assert_true (g_file_test (manifest, G_FILE_TEST_EXISTS));
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/cli/runs/fault-injection", test_fault_injection);
  g_test_add_func ("/cli/runs/kill", test_kill);
  g_test_add_func ("/cli/runs/no-checkpoint", test_no_checkpoint);
  g_test_add_func ("/cli/runs/paths", test_paths);
  g_test_add_func ("/cli/runs/legacy", test_legacy);
  g_test_add_func ("/cli/runs/bad-manifest", test_bad_manifest);
  int rc = g_test_run ();
  env_teardown (&shared_env);
  return rc;
}
