/* test-cli.c: runs the real vitlab-cli (VITLAB_CLI) on the reference fixtures and on broken
 * input, and checks exit status, stdout, stderr and the files it writes.
 *
 * Every run goes through g_spawn_sync with an argv array (no shell). A run that ends by a
 * signal, or whose stderr carries a sanitizer report, fails the test whatever was expected. */
#include "vl-test-util.h"

#include <glib/gstdio.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define FORWARD_ATOL 1e-4   /* logits, features, tokens, attention, rollout (fixtures README) */
#define STEP_ATOL    1e-6   /* stepped parameters: 1e-6 + 1e-4 * |ref| ... */
#define STEP_RTOL    1e-4
#define ZERO_GRAD    1e-6   /* ... except where |grad| < 1e-6: tolerance lr */

/* ------------------------------------------------------------------ running the CLI */

typedef struct {
  char *cmdline;  /* for messages */
  int   status;   /* exit status (a signal fails the test before this is read) */
  char *out;
  char *err;
} CliRun;

static void
cli_run_free (CliRun *r)
{
  g_free (r->cmdline);
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

static CliRun *
cli_runv (const char *const *args)
{
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();
  g_ptr_array_add (argv, (gpointer) cli_path ());
  for (const char *const *a = args; *a != NULL; a++)
    g_ptr_array_add (argv, (gpointer) *a);
  g_ptr_array_add (argv, NULL);

  CliRun *r = g_new0 (CliRun, 1);
  r->cmdline = g_strjoinv (" ", (char **) argv->pdata);
  g_autoptr(GError) error = NULL;
  int wait_status = 0;
  gboolean ok = g_spawn_sync (NULL, (char **) argv->pdata, NULL, G_SPAWN_STDIN_FROM_DEV_NULL,
                              NULL, NULL, &r->out, &r->err, &wait_status, &error);
  g_assert_no_error (error);
  g_assert_true (ok);
  g_test_message ("$ %s\n%s%s", r->cmdline, r->out, r->err);
  if (WIFSIGNALED (wait_status))
    g_error ("%s: killed by signal %d (%s)\nstderr:\n%s", r->cmdline, WTERMSIG (wait_status),
             g_strsignal (WTERMSIG (wait_status)), r->err);
  g_assert_true (WIFEXITED (wait_status));
  r->status = WEXITSTATUS (wait_status);
  if (strstr (r->err, "Sanitizer") || strstr (r->err, "runtime error:"))
    g_error ("%s: sanitizer report:\n%s", r->cmdline, r->err);
  return r;
}

static CliRun *
cli_run (const char *first, ...) G_GNUC_NULL_TERMINATED;

static CliRun *
cli_run (const char *first, ...)
{
  g_autoptr(GPtrArray) args = g_ptr_array_new ();
  va_list ap;
  va_start (ap, first);
  for (const char *a = first; a != NULL; a = va_arg (ap, const char *))
    g_ptr_array_add (args, (gpointer) a);
  va_end (ap);
  g_ptr_array_add (args, NULL);
  return cli_runv ((const char *const *) args->pdata);
}

static void
expect_success (CliRun *r)
{
  if (r->status != 0 || r->err[0] != '\0')
    g_error ("%s: exit %d, expected success; stderr:\n%s", r->cmdline, r->status, r->err);
}

/* Lines of a text (a last line without '\n' counts; "" has none). */
static char **
split_lines (const char *text)
{
  if (text[0] == '\0')
    return g_new0 (char *, 1);
  g_autofree char *body = g_strdup (text);
  gsize len = strlen (body);
  if (body[len - 1] == '\n')
    body[len - 1] = '\0';
  return g_strsplit (body, "\n", -1);
}

/* TRUE when `line` contains one of the '|'-separated alternatives of `needle`, ignoring case. */
static gboolean
line_mentions (const char *line, const char *needle)
{
  g_autofree char *l = g_ascii_strdown (line, -1);
  g_auto(GStrv) alts = g_strsplit (needle, "|", -1);
  for (int i = 0; alts[i] != NULL; i++)
    {
      g_autofree char *a = g_ascii_strdown (alts[i], -1);
      if (strstr (l, a))
        return TRUE;
    }
  return FALSE;
}

/* A failure of the given exit status whose stderr is exactly one line containing every needle
 * (NULL-terminated; each may list '|'-separated alternatives). */
static void
expect_failure (CliRun *r, int status, ...) G_GNUC_NULL_TERMINATED;

static void
expect_failure (CliRun *r, int status, ...)
{
  if (r->status != status)
    g_error ("%s: exit %d, expected %d; stderr:\n%s", r->cmdline, r->status, status, r->err);
  g_auto(GStrv) lines = split_lines (r->err);
  if (g_strv_length (lines) != 1 || !g_str_has_suffix (r->err, "\n"))
    g_error ("%s: expected exactly one line on stderr, got %u:\n%s", r->cmdline,
             g_strv_length (lines), r->err);
  va_list ap;
  va_start (ap, status);
  for (const char *n = va_arg (ap, const char *); n != NULL; n = va_arg (ap, const char *))
    if (!line_mentions (lines[0], n))
      g_error ("%s: stderr does not mention \"%s\":\n%s", r->cmdline, n, r->err);
  va_end (ap);
}

/* A malformed command line: exit 2, stdout empty, a first stderr line naming the problem; the
 * CLI adds a second line pointing at --help, which is accepted (and nothing else). */
static void
expect_usage_error (CliRun *r, const char *needle)
{
  if (r->status != 2)
    g_error ("%s: exit %d, expected 2 (usage); stderr:\n%s", r->cmdline, r->status, r->err);
  g_assert_cmpstr (r->out, ==, "");
  g_auto(GStrv) lines = split_lines (r->err);
  guint n = g_strv_length (lines);
  if (n < 1 || n > 2 || (n == 2 && !strstr (lines[1], "--help")))
    g_error ("%s: expected one error line (and a --help hint) on stderr, got:\n%s",
             r->cmdline, r->err);
  if (needle && !line_mentions (lines[0], needle))
    g_error ("%s: stderr does not mention \"%s\":\n%s", r->cmdline, needle, r->err);
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
make_dir (const char *path)
{
  g_assert_cmpint (g_mkdir (path, 0755), ==, 0);
}

static void
write_text (const char *path, const char *text)
{
  g_autoptr(GError) error = NULL;
  g_file_set_contents (path, text, -1, &error);
  g_assert_no_error (error);
}

/* Asserts that `dir` holds exactly the given entries (NULL-terminated), so that a failed run
 * left neither its output nor a temporary file behind. */
static void
assert_dir_holds (const char *dir, ...) G_GNUC_NULL_TERMINATED;

static void
assert_dir_holds (const char *dir, ...)
{
  g_autoptr(GPtrArray) want = g_ptr_array_new ();
  va_list ap;
  va_start (ap, dir);
  for (const char *n = va_arg (ap, const char *); n != NULL; n = va_arg (ap, const char *))
    g_ptr_array_add (want, (gpointer) n);
  va_end (ap);

  g_autoptr(GError) error = NULL;
  GDir *d = g_dir_open (dir, 0, &error);
  g_assert_no_error (error);
  guint found = 0;
  const char *name;
  while ((name = g_dir_read_name (d)) != NULL)
    {
      gboolean expected = FALSE;
      for (guint i = 0; i < want->len; i++)
        expected |= g_str_equal (name, want->pdata[i]);
      if (!expected)
        g_error ("%s: unexpected file %s left behind", dir, name);
      found++;
    }
  g_dir_close (d);
  g_assert_cmpuint (found, ==, want->len);
}

/* Writes one F32 tensor to a new safetensors file. */
static void
write_tensor (const char *path, const char *name, int ndim, const int64_t *shape,
              const float *data)
{
  g_autoptr(VlSafetensorsWriter) w = vl_safetensors_writer_new ();
  g_autoptr(GError) error = NULL;
  vl_safetensors_writer_add_f32 (w, name, ndim, shape, data);
  g_assert_true (vl_safetensors_writer_write (w, path, &error));
  g_assert_no_error (error);
}

/* Tensor `name` of `st` with exactly this shape. */
static const VlTensorInfo *
assert_tensor_shape (VlSafetensors *st, const char *name, int ndim, const int64_t *shape)
{
  const VlTensorInfo *t = vl_safetensors_lookup (st, name);
  if (t == NULL)
    g_error ("%s: no tensor %s", vl_safetensors_path (st), name);
  g_autofree char *got = vl_shape_to_string (t->ndim, t->shape);
  g_autofree char *want = vl_shape_to_string (ndim, shape);
  if (!g_str_equal (got, want))
    g_error ("%s: tensor %s has shape %s, expected %s", vl_safetensors_path (st), name, got, want);
  return t;
}

/* Compares tensor `name` of `out` with `ref_name` of `ref` (same shape) to FORWARD_ATOL. */
static void
assert_tensor_close (VlSafetensors *out, const char *name, VlSafetensors *ref,
                     const char *ref_name)
{
  const VlTensorInfo *r = vl_safetensors_lookup (ref, ref_name);
  if (r == NULL)
    g_error ("%s: no reference tensor %s", vl_safetensors_path (ref), ref_name);
  assert_tensor_shape (out, name, r->ndim, r->shape);
  int64_t n = 0;
  g_autofree float *got = vl_test_read (out, name, &n);
  g_autofree float *want = vl_test_read (ref, ref_name, NULL);
  g_autofree char *what = g_strdup_printf ("%s vs %s", name, ref_name);
  vl_test_assert_close (what, got, want, n, FORWARD_ATOL, 0.0);
}

/* ------------------------------------------------------------------ /cli/info */

/* Checks the group table of `info` output: n groups stem, blocks.0.., norm, head, whose
 * counts add up to `total`; returns the counts (g_free). */
static int64_t *
check_info_groups (const char *out, int depth, int64_t total)
{
  const int n_groups = depth + 3;
  g_autofree char *header = g_strdup_printf ("layer groups: %d ", n_groups);
  g_assert_nonnull (strstr (out, header));
  g_autofree char *params = g_strdup_printf ("parameters:   %" G_GINT64_FORMAT "\n", total);
  g_assert_nonnull (strstr (out, params));

  int64_t *counts = g_new0 (int64_t, n_groups);
  int seen = 0;
  int64_t sum = 0;
  g_auto(GStrv) lines = split_lines (out);
  for (int i = 0; lines[i] != NULL; i++)
    {
      g_auto(GStrv) f = g_strsplit_set (g_strstrip (lines[i]), " ", -1);
      g_autoptr(GPtrArray) w = g_ptr_array_new ();
      for (int k = 0; f[k] != NULL; k++)
        if (f[k][0] != '\0')
          g_ptr_array_add (w, f[k]);
      if (w->len < 4 || !g_str_equal (w->pdata[3], "params"))
        continue;
      int idx = atoi (w->pdata[0]);
      g_assert_cmpint (idx, ==, seen);
      g_autofree char *want_name = idx == 0 ? g_strdup ("stem")
                                 : idx <= depth ? g_strdup_printf ("blocks.%d", idx - 1)
                                 : g_strdup (idx == depth + 1 ? "norm" : "head");
      g_assert_cmpstr (w->pdata[1], ==, want_name);
      counts[idx] = g_ascii_strtoll (w->pdata[2], NULL, 10);
      g_assert_cmpint (counts[idx], >, 0);
      sum += counts[idx];
      seen++;
    }
  g_assert_cmpint (seen, ==, n_groups);
  g_assert_cmpint (sum, ==, total);
  return counts;
}

static void
test_info (void)
{
  g_autofree char *tiny = vl_test_shared_path ("fixtures", "vit-timm-tiny", NULL);
  g_autofree char *real = vl_test_shared_path ("weights", "vit-tiny-augreg-in1k", NULL);

  g_autoptr(CliRun) a = cli_run ("info", tiny, NULL);
  expect_success (a);
  g_assert_nonnull (strstr (a->out, "family:       timm"));
  g_assert_nonnull (strstr (a->out, "patch 8, 3 input channels, width 48, depth 4, 3 heads of 16, "
                                    "MLP 192"));
  g_assert_nonnull (strstr (a->out, "linear, 5 classes"));
  g_assert_nonnull (strstr (a->out, "eps 1e-06"));
  /* stem = 3*8*8*48 + 48 + 48 + 17*48; block = 2*96 + 48*144+144 + 48*48+48 + 2*48*192+192+48 */
  g_autofree int64_t *c = check_info_groups (a->out, 4, 123557);
  g_assert_cmpint (c[0], ==, 10128);
  for (int l = 1; l <= 4; l++)
    g_assert_cmpint (c[l], ==, 28272);
  g_assert_cmpint (c[5], ==, 96);
  g_assert_cmpint (c[6], ==, 245);

  g_autoptr(CliRun) b = cli_run ("info", real, NULL);
  expect_success (b);
  g_assert_nonnull (strstr (b->out, "family:       timm"));
  g_assert_nonnull (strstr (b->out, "patch 16, 3 input channels, width 192, depth 12, 3 heads of "
                                    "64, MLP 768"));
  g_assert_nonnull (strstr (b->out, "linear, 1000 classes"));
  g_assert_nonnull (strstr (b->out, "197 (CLS + 14x14 grid at 224x224"));
  g_autofree int64_t *d = check_info_groups (b->out, 12, 5717416);
  g_assert_cmpint (d[0], ==, 185664);
  for (int l = 1; l <= 12; l++)
    g_assert_cmpint (d[l], ==, 444864);
  g_assert_cmpint (d[13], ==, 384);
  g_assert_cmpint (d[14], ==, 193000);
}

/* ------------------------------------------------------------------ /cli/forward */

/* Runs `forward` on `images` (FILE or FILE:TENSOR) with `pool` (NULL: the default), checks the
 * output's tensor set and shapes ([B,W], [B,T,W], [B,H,T,T], [B,T-1], [B,K] with B and T from
 * the images tensor), then compares output/reference pairs (NULL-terminated list). */
static void
check_forward (const char *ckpt, const char *inputs, const char *tensor, const char *pool,
               int patch, int width, int heads, int depth, int classes,
               const char *expected, ...) G_GNUC_NULL_TERMINATED;

static void
check_forward (const char *ckpt, const char *inputs, const char *tensor, const char *pool,
               int patch, int width, int heads, int depth, int classes,
               const char *expected, ...)
{
  g_autofree char *tmp = vl_test_tmpdir ();
  g_autofree char *out = g_build_filename (tmp, "out.safetensors", NULL);
  g_autofree char *spec = tensor ? g_strdup_printf ("%s:%s", inputs, tensor) : g_strdup (inputs);

  g_autoptr(CliRun) r = pool ? cli_run ("forward", ckpt, "--images", spec, "--pool", pool,
                                        "--out", out, NULL)
                             : cli_run ("forward", ckpt, "--images", spec, "--out", out, NULL);
  expect_success (r);

  g_autoptr(VlSafetensors) in = vl_test_open (inputs);
  const VlTensorInfo *img = vl_safetensors_lookup (in, tensor ? tensor : "images");
  g_assert_nonnull (img);
  const int64_t B = img->shape[0];
  const int64_t T = 1 + (img->shape[2] / patch) * (img->shape[3] / patch);

  g_autoptr(VlSafetensors) o = vl_test_open (out);
  g_assert_cmpuint (vl_safetensors_n_tensors (o), ==, 4 + depth);
  assert_tensor_shape (o, "features", 2, (int64_t[]) { B, width });
  assert_tensor_shape (o, "tokens_final", 3, (int64_t[]) { B, T, width });
  for (int l = 0; l < depth; l++)
    {
      g_autofree char *name = g_strdup_printf ("attn.%d", l);
      assert_tensor_shape (o, name, 4, (int64_t[]) { B, heads, T, T });
    }
  assert_tensor_shape (o, "rollout", 2, (int64_t[]) { B, T - 1 });
  assert_tensor_shape (o, "logits", 2, (int64_t[]) { B, classes });
  GHashTable *meta = vl_safetensors_metadata (o);
  g_assert_nonnull (meta);
  g_assert_cmpstr (g_hash_table_lookup (meta, "pool"), ==, pool ? pool : "token");

  g_autoptr(VlSafetensors) ref = vl_test_open (expected);
  va_list ap;
  va_start (ap, expected);
  for (const char *name = va_arg (ap, const char *); name != NULL;
       name = va_arg (ap, const char *))
    {
      const char *ref_name = va_arg (ap, const char *);
      g_assert_nonnull (ref_name);
      assert_tensor_close (o, name, ref, ref_name);
    }
  va_end (ap);
  rm_rf (tmp);
}

static void
test_forward_fixture (void)
{
  g_autofree char *dir = vl_test_shared_path ("fixtures", "vit-timm-tiny", NULL);
  g_autofree char *in = vl_test_shared_path ("fixtures", "vit-timm-tiny", "inputs.safetensors",
                                             NULL);
  g_autofree char *exp = vl_test_shared_path ("fixtures", "vit-timm-tiny",
                                              "expected.safetensors", NULL);

  check_forward (dir, in, NULL, NULL, 8, 48, 3, 4, 5, exp,
                 "features", "features_token", "tokens_final", "tokens_final",
                 "attn.0", "attn.0", "attn.1", "attn.1", "attn.2", "attn.2", "attn.3", "attn.3",
                 "rollout", "rollout", "logits", "logits_token", NULL);
  check_forward (dir, in, NULL, "avg", 8, 48, 3, 4, 5, exp,
                 "features", "features_avg", "logits", "logits_avg",
                 "tokens_final", "tokens_final", "rollout", "rollout", NULL);
  check_forward (dir, in, NULL, "max", 8, 48, 3, 4, 5, exp,
                 "features", "features_max", "logits", "logits_max",
                 "tokens_final", "tokens_final", "attn.3", "attn.3", NULL);
  /* FILE:TENSOR, 48x48 images: a 6x6 grid, 37 tokens, resampled position embedding */
  check_forward (dir, in, "images48", NULL, 8, 48, 3, 4, 5, exp,
                 "logits", "logits_token_48", NULL);
  /* the checkpoint given as the .safetensors file itself (config.json beside it) */
  g_autofree char *file = vl_test_shared_path ("fixtures", "vit-timm-tiny", "model.safetensors",
                                               NULL);
  check_forward (file, in, "images", NULL, 8, 48, 3, 4, 5, exp,
                 "logits", "logits_token", NULL);
}

/* SigLIP's tower (tests/data/fam-timm-siglip): the attention pool's probabilities as attn_pool
 * [B,H,patches] beside the features and logits it pools into; pooled by the mean on request (no
 * attn_pool then); --pool map on a model without an attention pool is refused naming it. */
static void
test_forward_siglip (void)
{
  g_autofree char *dir = vl_test_data_path ("fam-timm-siglip", NULL);
  g_autofree char *in = vl_test_data_path ("fam-timm-siglip", "inputs.safetensors", NULL);
  g_autofree char *exp = vl_test_data_path ("fam-timm-siglip", "expected.safetensors", NULL);
  g_autofree char *tmp = vl_test_tmpdir ();
  g_autofree char *out = g_build_filename (tmp, "out.safetensors", NULL);
  g_autoptr(VlSafetensors) ref = vl_test_open (exp);
  for (int avg = 0; avg < 2; avg++)
    {
      g_autoptr(CliRun) r = avg ? cli_run ("forward", dir, "--images", in, "--pool", "avg",
                                           "--out", out, NULL)
                                : cli_run ("forward", dir, "--images", in, "--out", out, NULL);
      expect_success (r);
      g_autoptr(VlSafetensors) o = vl_test_open (out);
      assert_tensor_close (o, "features", ref, avg ? "features_avg" : "features");
      assert_tensor_close (o, "logits", ref, avg ? "logits_avg" : "logits");
      assert_tensor_close (o, "tokens_final", ref, "tokens_final");
      g_assert_true ((vl_safetensors_lookup (o, "attn_pool") != NULL) == !avg);
      if (!avg)
        {
          assert_tensor_shape (o, "attn_pool", 3, (int64_t[]) { 2, 4, 9 });
          int64_t n = 0;
          g_autofree float *got = vl_test_read (o, "attn_pool", &n);
          g_autofree float *want = vl_test_read (ref, "attn_pool.attn", NULL);   /* [B,H,1,N] */
          vl_test_assert_close ("attn_pool", got, want, n, FORWARD_ATOL, 0.0);
        }
    }
  g_autofree char *gap = vl_test_data_path ("fam-timm-gap", NULL);
  g_autofree char *gap_in = vl_test_data_path ("fam-timm-gap", "inputs.safetensors", NULL);
  g_autoptr(CliRun) bad = cli_run ("forward", gap, "--images", gap_in, "--pool", "map", "--out",
                                   out, NULL);
  expect_failure (bad, 1, "fam-timm-gap", "no attention pool", NULL);
  rm_rf (tmp);
}

static void
test_forward_geometries (void)
{
  g_autofree char *gray = vl_test_data_path ("geom-p7-d3-h2-gray", NULL);
  g_autofree char *gray_in = vl_test_data_path ("geom-p7-d3-h2-gray", "inputs.safetensors", NULL);
  g_autofree char *gray_exp = vl_test_data_path ("geom-p7-d3-h2-gray", "expected.safetensors",
                                                 NULL);
  check_forward (gray, gray_in, NULL, NULL, 7, 24, 2, 3, 4, gray_exp,
                 "features", "features_token", "tokens_final", "tokens_final",
                 "attn.0", "attn.0", "attn.1", "attn.1", "attn.2", "attn.2",
                 "rollout", "rollout", "logits", "logits_token", NULL);
  check_forward (gray, gray_in, NULL, "avg", 7, 24, 2, 3, 4, gray_exp,
                 "features", "features_avg", "logits", "logits_avg", NULL);
  check_forward (gray, gray_in, "images_alt", NULL, 7, 24, 2, 3, 4, gray_exp,
                 "logits", "logits_token_alt", NULL);
  check_forward (gray, gray_in, "images_small", NULL, 7, 24, 2, 3, 4, gray_exp,
                 "logits", "logits_token_small", NULL);

  g_autofree char *nh = vl_test_data_path ("geom-noheads", NULL);
  g_autofree char *nh_in = vl_test_data_path ("geom-noheads", "inputs.safetensors", NULL);
  g_autofree char *nh_exp = vl_test_data_path ("geom-noheads", "expected.safetensors", NULL);
  check_forward (nh, nh_in, NULL, NULL, 16, 128, 2, 1, 6, nh_exp,
                 "logits", "logits_token", "attn.0", "attn.0", "features", "features_token",
                 "rollout", "rollout", NULL);
}

/* ------------------------------------------------------------------ /cli/step */

/* Runs `step` with the given hyperparameters and checks the output against `prefix.<name>` of
 * the expected file for the stepped parameters; every other parameter must equal the
 * checkpoint's bit for bit, and the output holds every parameter under its own name.
 * prefix NULL: nothing is unlocked, so nothing may change. */
static void
check_step (const char *dir, const char *prefix, const char *unlock, const char *lr,
            const char *wd, const char *ls)
{
  g_autofree char *model = g_build_filename (dir, "model.safetensors", NULL);
  g_autofree char *inputs = g_build_filename (dir, "inputs.safetensors", NULL);
  g_autofree char *expected = g_build_filename (dir, "expected.safetensors", NULL);
  g_autofree char *tmp = vl_test_tmpdir ();
  g_autofree char *out = g_build_filename (tmp, "stepped.safetensors", NULL);

  g_autoptr(GPtrArray) args = g_ptr_array_new ();
  const char *base[] = { "step", dir, "--images", inputs, "--targets", inputs, "--unlock", unlock,
                         "--lr", lr, "--wd", wd, "--out", out };
  for (guint i = 0; i < G_N_ELEMENTS (base); i++)
    g_ptr_array_add (args, (gpointer) base[i]);
  if (ls)
    {
      g_ptr_array_add (args, (gpointer) "--label-smoothing");
      g_ptr_array_add (args, (gpointer) ls);
    }
  g_ptr_array_add (args, NULL);
  g_autoptr(CliRun) r = cli_runv ((const char *const *) args->pdata);
  expect_success (r);

  g_autoptr(VlSafetensors) ck = vl_test_open (model);
  g_autoptr(VlSafetensors) ref = vl_test_open (expected);
  g_autoptr(VlSafetensors) o = vl_test_open (out);
  const double lr_v = g_ascii_strtod (lr, NULL);

  /* stdout: loss=L grad_norm=G trainable=N */
  double loss = 0, gnorm = 0;
  gint64 trainable = -1;
  g_assert_cmpint (sscanf (r->out, "loss=%lf grad_norm=%lf trainable=%" G_GINT64_FORMAT,
                           &loss, &gnorm, &trainable), ==, 3);
  g_autofree char *loss_name = ls ? g_strdup_printf ("loss_token_ls%s", ls)
                                  : g_strdup ("loss_token");
  g_autofree float *want_loss = vl_test_read (ref, loss_name, NULL);
  g_assert_cmpfloat_with_epsilon (loss, want_loss[0], 1e-5);
  if (prefix)
    g_assert_cmpfloat (gnorm, >, 0);
  else
    g_assert_cmpfloat (gnorm, ==, 0);

  g_assert_cmpuint (vl_safetensors_n_tensors (o), ==, vl_safetensors_n_tensors (ck));
  int64_t stepped_numel = 0;
  guint n_stepped = 0;
  for (guint i = 0; i < vl_safetensors_n_tensors (ck); i++)
    {
      const VlTensorInfo *c = vl_safetensors_get (ck, i);
      const VlTensorInfo *t = assert_tensor_shape (o, c->name, c->ndim, c->shape);
      g_autofree float *got = vl_test_read (o, c->name, NULL);
      g_autofree char *step_name = g_strdup_printf ("%s.%s", prefix ? prefix : "-", c->name);
      if (vl_safetensors_lookup (ref, step_name) == NULL)
        {
          g_autofree float *orig = vl_test_read (ck, c->name, NULL);
          if (memcmp (got, orig, c->numel * sizeof (float)) != 0)
            g_error ("%s: locked parameter %s changed", out, c->name);
          continue;
        }
      n_stepped++;
      stepped_numel += t->numel;
      g_autofree char *grad_name = g_strdup_printf ("grad.%s", c->name);
      g_autofree float *want = vl_test_read (ref, step_name, NULL);
      g_autofree float *grad = vl_test_read (ref, grad_name, NULL);
      int64_t n_zero = 0;
      double worst = 0;
      for (int64_t k = 0; k < t->numel; k++)
        {
          gboolean zero = fabsf (grad[k]) < ZERO_GRAD;
          double tol = zero ? lr_v : STEP_ATOL + STEP_RTOL * fabsf (want[k]);
          double d = fabs ((double) got[k] - (double) want[k]);
          n_zero += zero;
          worst = MAX (worst, d);
          if (!(d <= tol))
            g_error ("%s: %s element %" G_GINT64_FORMAT " is %.9g, expected %.9g (grad %.3g, "
                     "tolerance %.3g)", out, c->name, k, got[k], want[k], grad[k], tol);
        }
      g_test_message ("%s: max abs diff %.3g, %" G_GINT64_FORMAT " near-zero gradients",
                      step_name, worst, n_zero);
    }
  /* every stepped reference tensor was matched by a checkpoint parameter */
  guint n_ref = 0;
  g_autofree char *dot = g_strdup_printf ("%s.", prefix ? prefix : "-");
  for (guint i = 0; i < vl_safetensors_n_tensors (ref); i++)
    n_ref += g_str_has_prefix (vl_safetensors_get (ref, i)->name, dot);
  g_assert_cmpuint (n_stepped, ==, n_ref);
  g_assert_cmpuint (n_stepped > 0, ==, prefix != NULL);
  g_assert_cmpint (trainable, ==, stepped_numel);
  rm_rf (tmp);
}

static void
test_step_fixture (void)
{
  g_autofree char *tiny = vl_test_shared_path ("fixtures", "vit-timm-tiny", NULL);
  g_autofree char *model = vl_test_shared_path ("fixtures", "vit-timm-tiny", "model.safetensors",
                                                NULL);
  g_autoptr(VlSafetensors) ck = vl_test_open (model);
  g_assert_cmpuint (vl_safetensors_n_tensors (ck), ==, 56);
  check_step (tiny, "step.unlock3", "3", "1e-3", "0.05", NULL);
  check_step (tiny, NULL, "0", "1e-3", "0.05", NULL);

  /* geom-p4-d2-h4: every step recorded in the expected file's __metadata__, as
   * "step_ls.unlock2": "lr=0.005 wd=0.1 ls=0.1 unlock=2" */
  g_autofree char *p4 = vl_test_data_path ("geom-p4-d2-h4", NULL);
  g_autofree char *p4_exp = vl_test_data_path ("geom-p4-d2-h4", "expected.safetensors", NULL);
  g_autoptr(VlSafetensors) ref = vl_test_open (p4_exp);
  GHashTable *meta = vl_safetensors_metadata (ref);
  g_assert_nonnull (meta);
  g_assert_nonnull (g_hash_table_lookup (meta, "step_ls.unlock2"));
  g_autoptr(GList) keys = g_hash_table_get_keys (meta);
  keys = g_list_sort (keys, (GCompareFunc) strcmp);
  guint n_runs = 0;
  for (GList *k = keys; k; k = k->next)
    {
      const char *key = k->data;
      if (!g_str_has_prefix (key, "step"))
        continue;
      g_auto(GStrv) kv = g_strsplit (g_hash_table_lookup (meta, key), " ", -1);
      const char *lr = NULL, *wd = NULL, *ls = NULL, *unlock = NULL;
      for (int i = 0; kv[i]; i++)
        {
          char *eq = strchr (kv[i], '=');
          g_assert_nonnull (eq);
          *eq = '\0';
          const char *v = eq + 1;
          if (g_str_equal (kv[i], "lr"))
            lr = v;
          else if (g_str_equal (kv[i], "wd"))
            wd = v;
          else if (g_str_equal (kv[i], "ls"))
            ls = g_str_equal (v, "0") ? NULL : v;
          else if (g_str_equal (kv[i], "unlock"))
            unlock = v;
        }
      g_assert_true (lr && wd && unlock);
      check_step (p4, key, unlock, lr, wd, ls);
      n_runs++;
    }
  g_assert_cmpuint (n_runs, ==, 4);
}

/* ------------------------------------------------------------------ /cli/classify */

static void
test_classify_imagenet (void)
{
  g_autofree char *real = vl_test_shared_path ("weights", "vit-tiny-augreg-in1k", NULL);
  g_autofree char *labels = vl_test_shared_path ("datasets", "imagenet-samples", "labels.tsv",
                                                 NULL);
  g_autofree char *text = NULL;
  g_autoptr(GError) error = NULL;
  g_file_get_contents (labels, &text, NULL, &error);
  g_assert_no_error (error);

  g_autoptr(GPtrArray) files = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GArray) index = g_array_new (FALSE, FALSE, sizeof (int));
  g_auto(GStrv) lines = split_lines (text);
  for (int i = 1; lines[i]; i++)  /* line 0 is the header */
    {
      g_auto(GStrv) f = g_strsplit (lines[i], "\t", -1);
      g_assert_cmpuint (g_strv_length (f), ==, 3);
      g_ptr_array_add (files, vl_test_shared_path ("datasets", "imagenet-samples", f[0], NULL));
      int idx = atoi (f[1]);
      g_array_append_val (index, idx);
      g_ptr_array_add (names, g_strdup (f[2]));
    }
  const guint n = files->len;
  g_assert_cmpuint (n, ==, 9);

  double top1[9];
  for (int pass = 0; pass < 2; pass++)
    {
      const int top = pass == 0 ? 1 : 3;
      g_autoptr(GPtrArray) args = g_ptr_array_new ();
      g_ptr_array_add (args, (gpointer) "classify");
      g_ptr_array_add (args, real);
      for (guint i = 0; i < n; i++)
        g_ptr_array_add (args, files->pdata[i]);
      if (top > 1)
        {
          g_ptr_array_add (args, (gpointer) "--top");
          g_ptr_array_add (args, (gpointer) "3");
        }
      g_ptr_array_add (args, NULL);
      g_autoptr(CliRun) r = cli_runv ((const char *const *) args->pdata);
      expect_success (r);

      g_auto(GStrv) out = split_lines (r->out);
      g_assert_cmpuint (g_strv_length (out), ==, n * top);
      for (guint i = 0; i < n; i++)
        {
          double prev = 2.0, sum = 0;
          for (int k = 0; k < top; k++)
            {
              g_auto(GStrv) f = g_strsplit (out[i * top + k], "\t", -1);
              g_assert_cmpuint (g_strv_length (f), ==, 4);
              g_assert_cmpstr (f[0], ==, files->pdata[i]);
              char *end = NULL;
              double p = g_ascii_strtod (f[3], &end);
              g_assert_true (end != f[3] && *end == '\0');
              g_assert_cmpfloat (p, >, 0.0);
              g_assert_cmpfloat (p, <=, 1.0);
              g_assert_cmpfloat (p, <=, prev);
              prev = p;
              sum += p;
              if (k == 0)
                {
                  g_assert_cmpint (atoi (f[1]), ==, g_array_index (index, int, i));
                  g_assert_cmpstr (f[2], ==, names->pdata[i]);
                  if (pass == 0)
                    top1[i] = p;
                  else
                    g_assert_cmpfloat_with_epsilon (p, top1[i], 2e-6);
                }
            }
          g_assert_cmpfloat (sum, <=, 1.0 + 1e-5);
        }
    }
}

/* --top above the number of classes prints every class once, most probable first. */
static void
test_classify_top (void)
{
  g_autofree char *tiny = vl_test_shared_path ("fixtures", "vit-timm-tiny", NULL);
  g_autofree char *jpeg = vl_test_shared_path ("datasets", "imagenet-samples",
                                               "n02125311_10473.JPEG", NULL);
  g_autoptr(CliRun) r = cli_run ("classify", tiny, jpeg, "--top", "10", NULL);
  expect_success (r);
  g_auto(GStrv) lines = split_lines (r->out);
  g_assert_cmpuint (g_strv_length (lines), ==, 5);
  gboolean seen[5] = { FALSE };
  double prev = 2.0, sum = 0;
  for (int k = 0; k < 5; k++)
    {
      g_auto(GStrv) f = g_strsplit (lines[k], "\t", -1);
      g_assert_cmpuint (g_strv_length (f), ==, 4);
      g_assert_cmpstr (f[0], ==, jpeg);
      int idx = atoi (f[1]);
      g_assert_cmpint (idx, >=, 0);
      g_assert_cmpint (idx, <, 5);
      g_assert_false (seen[idx]);
      seen[idx] = TRUE;
      g_assert_cmpstr (f[2], ==, f[1]);  /* no class names: the index */
      double p = g_ascii_strtod (f[3], NULL);
      g_assert_cmpfloat (p, <=, prev);
      prev = p;
      sum += p;
    }
  g_assert_cmpfloat_with_epsilon (sum, 1.0, 1e-5);

  /* a folder stands for the images in it, in name order (not labels.tsv); one without images
   * is refused naming it */
  g_autofree char *folder = vl_test_shared_path ("datasets", "imagenet-samples", NULL);
  g_autoptr(CliRun) all = cli_run ("classify", tiny, folder, NULL);
  expect_success (all);
  g_auto(GStrv) rows = split_lines (all->out);
  g_assert_cmpuint (g_strv_length (rows), ==, 9);
  for (guint k = 0; k < 9; k++)
    {
      g_assert_true (g_str_has_suffix (strtok (rows[k], "\t"), ".JPEG"));
      g_assert_true (k == 0 || strcmp (rows[k - 1], rows[k]) < 0);
    }
  g_autofree char *tmp = vl_test_tmpdir ();
  g_autoptr(CliRun) none = cli_run ("classify", tiny, tmp, NULL);
  expect_failure (none, 1, tmp, "without images", NULL);
}

/* ------------------------------------------------------------------ /cli/errors */

typedef struct {
  char *tmp;
  char *tiny;     /* ../shared/fixtures/vit-timm-tiny */
  char *inputs;   /* its inputs.safetensors */
  char *jpeg;     /* a real photo */
} Env;

static void
env_init (Env *e)
{
  e->tmp = vl_test_tmpdir ();
  e->tiny = vl_test_shared_path ("fixtures", "vit-timm-tiny", NULL);
  e->inputs = vl_test_shared_path ("fixtures", "vit-timm-tiny", "inputs.safetensors", NULL);
  e->jpeg = vl_test_shared_path ("datasets", "imagenet-samples", "n01514668_10054.JPEG", NULL);
}

static void
env_clear (Env *e)
{
  rm_rf (e->tmp);
  g_free (e->tmp);
  g_free (e->tiny);
  g_free (e->inputs);
  g_free (e->jpeg);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Env, env_clear)

static char *
env_path (Env *e, const char *name)
{
  return g_build_filename (e->tmp, name, NULL);
}

/* A copy of the tiny fixture's config.json and model.safetensors in TMP/name. */
static char *
copy_tiny (Env *e, const char *name)
{
  char *dir = env_path (e, name);
  make_dir (dir);
  const char *files[] = { "config.json", "model.safetensors" };
  for (guint i = 0; i < G_N_ELEMENTS (files); i++)
    {
      g_autofree char *from = g_build_filename (e->tiny, files[i], NULL);
      g_autofree char *to = g_build_filename (dir, files[i], NULL);
      vl_test_copy_file (from, to);
    }
  return dir;
}

/* Every command that loads `ckpt` fails with one line containing the needles (NULL-terminated,
 * at most 4), and forward/step leave their output folder empty. */
static void
expect_checkpoint_error (Env *e, const char *ckpt, ...) G_GNUC_NULL_TERMINATED;

static void
expect_checkpoint_error (Env *e, const char *ckpt, ...)
{
  const char *needle[5] = { NULL };
  va_list ap;
  va_start (ap, ckpt);
  for (int i = 0; i < 4; i++)
    if ((needle[i] = va_arg (ap, const char *)) == NULL)
      break;
  va_end (ap);

  g_autofree char *outdir = env_path (e, "out-ckpt");
  make_dir (outdir);
  g_autofree char *out = g_build_filename (outdir, "out.safetensors", NULL);

  g_autoptr(CliRun) a = cli_run ("info", ckpt, NULL);
  g_autoptr(CliRun) b = cli_run ("forward", ckpt, "--images", e->inputs, "--out", out, NULL);
  g_autoptr(CliRun) c = cli_run ("step", ckpt, "--images", e->inputs, "--targets", e->inputs,
                                 "--unlock", "1", "--lr", "1e-3", "--wd", "0", "--out", out, NULL);
  g_autoptr(CliRun) d = cli_run ("classify", ckpt, e->jpeg, NULL);
  CliRun *runs[] = { a, b, c, d };
  for (guint i = 0; i < G_N_ELEMENTS (runs); i++)
    {
      expect_failure (runs[i], 1, needle[0], needle[1], needle[2], needle[3], NULL);
      g_assert_cmpstr (runs[i]->out, ==, "");
    }
  assert_dir_holds (outdir, NULL);
  rm_rf (outdir);
}

static void
test_errors_checkpoint (void)
{
  g_auto(Env) e = { 0 };
  env_init (&e);

  /* a path that does not exist */
  g_autofree char *missing = env_path (&e, "no-such-checkpoint");
  expect_checkpoint_error (&e, missing, missing, "no such|not found|does not exist|missing",
                           NULL);

  /* a folder without model.safetensors */
  g_autofree char *empty = env_path (&e, "empty-folder");
  make_dir (empty);
  expect_checkpoint_error (&e, empty, empty, "model.safetensors", NULL);

  /* model.safetensors cut in half */
  g_autofree char *model = g_build_filename (e.tiny, "model.safetensors", NULL);
  g_autofree char *bytes = NULL;
  gsize len = 0;
  g_autoptr(GError) error = NULL;
  g_file_get_contents (model, &bytes, &len, &error);
  g_assert_no_error (error);
  g_autofree char *trunc = env_path (&e, "truncated.safetensors");
  g_file_set_contents (trunc, bytes, len / 2, &error);
  g_assert_no_error (error);
  expect_checkpoint_error (&e, trunc, trunc, "truncat", NULL);
  /* ... and inside a folder with its config.json */
  g_autofree char *trunc_dir = copy_tiny (&e, "truncated-folder");
  g_autofree char *trunc_model = g_build_filename (trunc_dir, "model.safetensors", NULL);
  g_file_set_contents (trunc_model, bytes, len / 2, &error);
  g_assert_no_error (error);
  expect_checkpoint_error (&e, trunc_dir, trunc_model, "truncat", NULL);

  /* a checkpoint rewritten by the writer: as is it loads; with blocks.1.attn.qkv.weight
   * stored as [100,48] it must be refused, naming the tensor and both shapes */
  for (int lie = 0; lie < 2; lie++)
    {
      g_autofree char *dir = copy_tiny (&e, lie ? "lying" : "honest");
      g_autofree char *path = g_build_filename (dir, "model.safetensors", NULL);
      g_autoptr(VlSafetensors) st = vl_test_open (model);
      g_autoptr(VlSafetensorsWriter) w = vl_safetensors_writer_new ();
      g_autoptr(GPtrArray) keep = g_ptr_array_new_with_free_func (g_free);
      for (guint i = 0; i < vl_safetensors_n_tensors (st); i++)
        {
          const VlTensorInfo *t = vl_safetensors_get (st, i);
          float *data = vl_test_read (st, t->name, NULL);
          g_ptr_array_add (keep, data);
          if (lie && g_str_equal (t->name, "blocks.1.attn.qkv.weight"))
            {
              g_assert_cmpint (t->shape[0], ==, 144);
              vl_safetensors_writer_add_f32 (w, t->name, 2, (int64_t[]) { 100, 48 }, data);
            }
          else
            vl_safetensors_writer_add_f32 (w, t->name, t->ndim, t->shape, data);
        }
      g_assert_true (vl_safetensors_writer_write (w, path, &error));
      g_assert_no_error (error);
      if (!lie)
        {
          g_autoptr(CliRun) r = cli_run ("info", dir, NULL);
          expect_success (r);
        }
      else
        expect_checkpoint_error (&e, dir, dir, "blocks.1.attn.qkv.weight", "[100,48]",
                                 "[144,48]", NULL);
    }

  /* config.json that disagrees with the tensors (embed_dim 64 for 48-wide tensors) */
  g_autofree char *cfg_dir = copy_tiny (&e, "config-mismatch");
  {
    g_autoptr(CliRun) r = cli_run ("info", cfg_dir, NULL);
    expect_success (r);
  }
  g_autofree char *cfg = g_build_filename (cfg_dir, "config.json", NULL);
  g_autofree char *json = NULL;
  g_file_get_contents (cfg, &json, NULL, &error);
  g_assert_no_error (error);
  char *at = strstr (json, "\"embed_dim\": 48");
  g_assert_nonnull (at);
  memcpy (at + strlen ("\"embed_dim\": "), "64", 2);
  write_text (cfg, json);
  expect_checkpoint_error (&e, cfg_dir, cfg, "embed_dim|64", NULL);

  /* config.json that is not JSON */
  g_autofree char *bad_dir = copy_tiny (&e, "config-garbage");
  g_autofree char *bad_cfg = g_build_filename (bad_dir, "config.json", NULL);
  write_text (bad_cfg, "{ \"architecture\": \"vit_custom\", this is not JSON\n");
  expect_checkpoint_error (&e, bad_dir, bad_cfg, "json", NULL);

  /* a file that is not safetensors at all */
  g_autofree char *garbage = env_path (&e, "garbage.safetensors");
  write_text (garbage, "hello, I am not a checkpoint\n");
  expect_checkpoint_error (&e, garbage, garbage, NULL);
}

/* forward and step on the tiny fixture with these --images fail with one line containing the
 * needles, and write nothing. */
static void
expect_images_error (Env *e, const char *images, const char *n1, const char *n2, const char *n3)
{
  g_autofree char *outdir = env_path (e, "out-images");
  make_dir (outdir);
  g_autofree char *out = g_build_filename (outdir, "out.safetensors", NULL);
  g_autoptr(CliRun) a = cli_run ("forward", e->tiny, "--images", images, "--out", out, NULL);
  g_autoptr(CliRun) b = cli_run ("step", e->tiny, "--images", images, "--targets", e->inputs,
                                 "--unlock", "2", "--lr", "1e-3", "--wd", "0.05", "--out", out,
                                 NULL);
  expect_failure (a, 1, n1, n2, n3, NULL);
  expect_failure (b, 1, n1, n2, n3, NULL);
  g_assert_cmpstr (a->out, ==, "");
  g_assert_cmpstr (b->out, ==, "");
  assert_dir_holds (outdir, NULL);
  rm_rf (outdir);
}

static void
test_errors_images (void)
{
  g_auto(Env) e = { 0 };
  env_init (&e);

  g_autofree char *nosuch = g_strdup_printf ("%s:nosuchtensor", e.inputs);
  expect_images_error (&e, nosuch, e.inputs, "nosuchtensor", NULL);

  g_autofree char *missing = env_path (&e, "missing.safetensors");
  expect_images_error (&e, missing, missing, "no such|not found|does not exist|missing", NULL);

  g_autofree char *garbage = env_path (&e, "garbage.safetensors");
  write_text (garbage, "not a safetensors file at all, but long enough to have a header\n");
  expect_images_error (&e, garbage, garbage, NULL, NULL);

  /* labels where images belong: rank 1 */
  g_autofree char *targets = g_strdup_printf ("%s:targets", e.inputs);
  expect_images_error (&e, targets, e.inputs, "targets", "[4]");

  /* one channel for a 3-channel model */
  g_autofree float *px = g_new0 (float, 4 * 3 * 32 * 32);
  g_autofree char *gray = env_path (&e, "gray.safetensors");
  write_tensor (gray, "images", 4, (int64_t[]) { 4, 1, 32, 32 }, px);
  expect_images_error (&e, gray, gray, "[4,1,32,32]", "channel");

  /* 30x30: not a multiple of the patch (8) */
  g_autofree char *odd = env_path (&e, "odd.safetensors");
  write_tensor (odd, "images", 4, (int64_t[]) { 4, 3, 30, 30 }, px);
  expect_images_error (&e, odd, odd, "30", "patch|multiple|divisible");

  /* 32x24: not square, but both sides multiples of the patch: must work */
  g_autofree char *rect = env_path (&e, "rect.safetensors");
  write_tensor (rect, "images", 4, (int64_t[]) { 4, 3, 32, 24 }, px);
  {
    g_autofree char *out = env_path (&e, "rect-out.safetensors");
    g_autoptr(CliRun) r = cli_run ("forward", e.tiny, "--images", rect, "--out", out, NULL);
    expect_success (r);
    g_autoptr(VlSafetensors) o = vl_test_open (out);
    assert_tensor_shape (o, "tokens_final", 3, (int64_t[]) { 4, 1 + 4 * 3, 48 });
    assert_tensor_shape (o, "rollout", 2, (int64_t[]) { 4, 12 });
  }

  /* a NaN pixel */
  px[1000] = NAN;
  g_autofree char *nan = env_path (&e, "nan.safetensors");
  write_tensor (nan, "images", 4, (int64_t[]) { 4, 3, 32, 32 }, px);
  expect_images_error (&e, nan, nan, "finite|nan", NULL);
}

static void
test_errors_targets (void)
{
  g_auto(Env) e = { 0 };
  env_init (&e);
  g_autofree char *outdir = env_path (&e, "out");
  make_dir (outdir);
  g_autofree char *out = g_build_filename (outdir, "out.safetensors", NULL);

  /* the fixture has 5 classes and 4 images */
  const struct {
    const char *label;
    float       values[4];
    int         n;
    const char *needle;
  } cases[] = {
    { "too-big", { 0, 1, 5, 2 }, 4, "5" },
    { "negative", { 0, -1, 2, 3 }, 4, "-1" },
    { "fraction", { 0, 1, 2.5f, 3 }, 4, "2.5" },
    { "too-few", { 0, 1, 2 }, 3, "[3]" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *name = g_strdup_printf ("targets-%s.safetensors", cases[i].label);
      g_autofree char *path = env_path (&e, name);
      write_tensor (path, "targets", 1, (int64_t[]) { cases[i].n }, cases[i].values);
      g_autoptr(CliRun) r = cli_run ("step", e.tiny, "--images", e.inputs, "--targets", path,
                                     "--unlock", "1", "--lr", "1e-3", "--wd", "0", "--out", out,
                                     NULL);
      expect_failure (r, 1, path, "targets", cases[i].needle, NULL);
      g_assert_cmpstr (r->out, ==, "");
      assert_dir_holds (outdir, NULL);
    }

  g_autofree char *nosuch = g_strdup_printf ("%s:labels", e.inputs);
  g_autoptr(CliRun) r = cli_run ("step", e.tiny, "--images", e.inputs, "--targets", nosuch,
                                 "--unlock", "1", "--lr", "1e-3", "--wd", "0", "--out", out, NULL);
  expect_failure (r, 1, e.inputs, "labels", NULL);
  assert_dir_holds (outdir, NULL);
}

static void
test_errors_classify (void)
{
  g_auto(Env) e = { 0 };
  env_init (&e);

  g_autofree char *text = env_path (&e, "x.jpg");
  write_text (text, "this is not a JPEG\n");
  g_autofree char *empty = env_path (&e, "empty.jpg");
  write_text (empty, "");
  g_autofree char *missing = env_path (&e, "missing.jpg");
  g_autofree char *cut = env_path (&e, "cut.jpg");
  {
    g_autofree char *bytes = NULL;
    gsize len = 0;
    g_autoptr(GError) error = NULL;
    g_file_get_contents (e.jpeg, &bytes, &len, &error);
    g_assert_no_error (error);
    g_file_set_contents (cut, bytes, 3000, &error);
    g_assert_no_error (error);
  }

  /* each bad image alone */
  const char *bad[] = { text, empty, missing, cut };
  const char *word[] = { "decode", "empty", "no such|not found|does not exist|missing",
                         "decode|truncat|corrupt" };
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr(CliRun) r = cli_run ("classify", e.tiny, bad[i], NULL);
      expect_failure (r, 1, bad[i], word[i], NULL);
      g_assert_cmpstr (r->out, ==, "");
    }

  /* one good and one bad: the good one is still classified */
  {
    g_autoptr(CliRun) r = cli_run ("classify", e.tiny, e.jpeg, text, NULL);
    expect_failure (r, 1, text, "decode", NULL);
    g_auto(GStrv) lines = split_lines (r->out);
    g_assert_cmpuint (g_strv_length (lines), ==, 1);
    g_autofree char *prefix = g_strdup_printf ("%s\t", e.jpeg);
    g_assert_true (g_str_has_prefix (lines[0], prefix));
  }

  /* good, bad, bad, good: two lines out, one line per bad file on stderr */
  {
    g_autoptr(CliRun) r = cli_run ("classify", e.tiny, e.jpeg, text, missing, e.jpeg, NULL);
    g_assert_cmpint (r->status, ==, 1);
    g_auto(GStrv) out = split_lines (r->out);
    g_assert_cmpuint (g_strv_length (out), ==, 2);
    g_auto(GStrv) err = split_lines (r->err);
    g_assert_cmpuint (g_strv_length (err), ==, 2);
    g_assert_nonnull (strstr (err[0], text));
    g_assert_nonnull (strstr (err[1], missing));
  }
}

static void
test_errors_usage (void)
{
  g_auto(Env) e = { 0 };
  env_init (&e);
  g_autofree char *out = env_path (&e, "out.safetensors");
  const char *in = e.inputs, *ck = e.tiny;

  {
    g_autoptr(CliRun) r = cli_run ("frobnicate", ck, NULL);
    expect_usage_error (r, "frobnicate");
  }
  {
    const char *none[] = { NULL };
    g_autoptr(CliRun) r = cli_runv (none);
    g_assert_cmpint (r->status, ==, 2);
    g_assert_true (line_mentions (r->err, "usage"));
  }
  {
    g_autoptr(CliRun) r = cli_run ("--help", NULL);
    expect_success (r);
    g_assert_true (line_mentions (r->out, "usage"));
  }

  const char *const cases[][20] = {
    { "info", NULL },
    { "info", ck, ck, NULL },
    { "forward", ck, "--out", out, NULL },                                /* no --images */
    { "forward", ck, "--images", in, NULL },                              /* no --out */
    { "forward", "--images", in, "--out", out, NULL },                    /* no checkpoint */
    { "forward", ck, "--images", in, "--out", out, "--pool", "median", NULL },
    { "forward", ck, "--images", in, "--out", out, "--bogus", NULL },
    { "step", ck, "--images", in, "--targets", in, "--lr", "1e-3", "--wd", "0", "--out", out,
      NULL },                                                             /* no --unlock */
    { "step", ck, "--images", in, "--targets", in, "--unlock", "1", "--wd", "0", "--out", out,
      NULL },                                                             /* no --lr */
    { "step", ck, "--images", in, "--unlock", "1", "--lr", "1e-3", "--wd", "0", "--out", out,
      NULL },                                                             /* no --targets */
    { "step", ck, "--images", in, "--targets", in, "--unlock", "-1", "--lr", "1e-3", "--wd", "0",
      "--out", out, NULL },
    { "step", ck, "--images", in, "--targets", in, "--unlock", "x", "--lr", "1e-3", "--wd", "0",
      "--out", out, NULL },
    { "classify", ck, NULL },                                             /* no image */
    { "classify", ck, e.jpeg, "--top", "0", NULL },
  };
  const char *needles[] = { NULL, NULL, NULL, NULL, NULL, "median", "bogus", NULL, NULL, NULL,
                            NULL, "x", NULL, "0" };
  G_STATIC_ASSERT (G_N_ELEMENTS (cases) == G_N_ELEMENTS (needles));
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr(CliRun) r = cli_runv (cases[i]);
      expect_usage_error (r, needles[i]);
      g_assert_false (g_file_test (out, G_FILE_TEST_EXISTS));
    }

  /* option values out of range: one line, exit 2 */
  const char *const floats[][3] = {
    { "--lr", "abc", "abc" }, { "--lr", "-1", "-1" }, { "--wd", "nan", "nan" },
    { "--label-smoothing", "1.5", "1.5" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (floats); i++)
    {
      const char *lr = g_str_equal (floats[i][0], "--lr") ? floats[i][1] : "1e-3";
      const char *wd = g_str_equal (floats[i][0], "--wd") ? floats[i][1] : "0";
      const char *ls = g_str_equal (floats[i][0], "--label-smoothing") ? floats[i][1] : "0";
      g_autoptr(CliRun) r = cli_run ("step", ck, "--images", in, "--targets", in, "--unlock", "1",
                                     "--lr", lr, "--wd", wd, "--label-smoothing", ls,
                                     "--out", out, NULL);
      expect_failure (r, 2, floats[i][0], floats[i][2], NULL);
      g_assert_false (g_file_test (out, G_FILE_TEST_EXISTS));
    }
}

static void
test_errors_output (void)
{
  g_auto(Env) e = { 0 };
  env_init (&e);

  /* --out in a folder that does not exist */
  g_autofree char *nodir = env_path (&e, "no-such-dir");
  g_autofree char *out = g_build_filename (nodir, "out.safetensors", NULL);
  {
    g_autoptr(CliRun) a = cli_run ("forward", e.tiny, "--images", e.inputs, "--out", out, NULL);
    g_autoptr(CliRun) b = cli_run ("step", e.tiny, "--images", e.inputs, "--targets", e.inputs,
                                   "--unlock", "1", "--lr", "1e-3", "--wd", "0", "--out", out,
                                   NULL);
    expect_failure (a, 1, nodir, NULL);
    expect_failure (b, 1, nodir, NULL);
    g_assert_cmpstr (a->out, ==, "");
    g_assert_cmpstr (b->out, ==, "");
    g_assert_false (g_file_test (nodir, G_FILE_TEST_EXISTS));
  }

  /* --out naming an existing folder */
  g_autofree char *keepdir = env_path (&e, "keep");
  make_dir (keepdir);
  g_autofree char *adir = g_build_filename (keepdir, "adir", NULL);
  make_dir (adir);
  {
    g_autoptr(CliRun) r = cli_run ("forward", e.tiny, "--images", e.inputs, "--out", adir, NULL);
    expect_failure (r, 1, "adir", NULL);
    g_assert_true (g_file_test (adir, G_FILE_TEST_IS_DIR));
    assert_dir_holds (adir, NULL);
    assert_dir_holds (keepdir, "adir", NULL);
  }

  /* an existing output survives every later failure byte for byte */
  g_autofree char *kept = g_build_filename (keepdir, "out.safetensors", NULL);
  {
    g_autoptr(CliRun) r = cli_run ("forward", e.tiny, "--images", e.inputs, "--out", kept, NULL);
    expect_success (r);
  }
  g_autofree char *before = NULL;
  gsize before_len = 0;
  g_autoptr(GError) error = NULL;
  g_file_get_contents (kept, &before, &before_len, &error);
  g_assert_no_error (error);

  g_autofree char *nosuch = g_strdup_printf ("%s:nosuchtensor", e.inputs);
  g_autofree char *badlabels = env_path (&e, "bad-targets.safetensors");
  write_tensor (badlabels, "targets", 1, (int64_t[]) { 4 }, (float[]) { 0, 1, 2, 9 });
  g_autofree char *missing_ck = env_path (&e, "no-such-checkpoint");
  g_autoptr(CliRun) f1 = cli_run ("forward", e.tiny, "--images", nosuch, "--out", kept, NULL);
  g_autoptr(CliRun) f2 = cli_run ("forward", missing_ck, "--images", e.inputs, "--out", kept,
                                  NULL);
  g_autoptr(CliRun) f3 = cli_run ("step", e.tiny, "--images", e.inputs, "--targets", badlabels,
                                  "--unlock", "1", "--lr", "1e-3", "--wd", "0", "--out", kept,
                                  NULL);
  g_autoptr(CliRun) f4 = cli_run ("forward", e.tiny, "--images", e.inputs, "--pool", "median",
                                  "--out", kept, NULL);
  expect_failure (f1, 1, "nosuchtensor", NULL);
  expect_failure (f2, 1, missing_ck, NULL);
  expect_failure (f3, 1, badlabels, NULL);
  expect_usage_error (f4, "median");
  g_autofree char *after = NULL;
  gsize after_len = 0;
  g_file_get_contents (kept, &after, &after_len, &error);
  g_assert_no_error (error);
  g_assert_cmpmem (after, after_len, before, before_len);
  assert_dir_holds (keepdir, "adir", "out.safetensors", NULL);
}

/* ------------------------------------------------------------------ /cli/families */

/* info names each family; forward writes what its PyTorch reference holds (OpenCLIP: embedding
 * too; registers and a distillation token: rollout over the patches only). */
static void
test_families_forward (void)
{
  static const struct { const char *dir, *family; } fams[] = {
    { "fam-openclip", "openclip" }, { "fam-openclip-gelu", "openclip" },
    { "fam-hf-vit", "hf-vit" }, { "fam-hf-dino", "hf-vit" },
    { "fam-timm-reg-ls", "timm" }, { "fam-timm-gap", "timm" }, { "fam-deit-dist", "timm" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (fams); i++)
    {
      g_autofree char *ckpt = vl_test_data_path (fams[i].dir, NULL);
      g_autofree char *inputs = vl_test_data_path (fams[i].dir, "inputs.safetensors", NULL);
      g_autofree char *expected = vl_test_data_path (fams[i].dir, "expected.safetensors", NULL);
      g_autoptr(CliRun) info = cli_run ("info", ckpt, NULL);
      expect_success (info);
      g_autofree char *fam_line = g_strdup_printf ("family:       %s", fams[i].family);
      if (!strstr (info->out, fam_line))
        g_error ("info %s does not say \"%s\":\n%s", ckpt, fam_line, info->out);

      g_autofree char *tmp = vl_test_tmpdir ();
      g_autofree char *out = g_build_filename (tmp, "out.safetensors", NULL);
      g_autoptr(CliRun) r = cli_run ("forward", ckpt, "--images", inputs, "--out", out, NULL);
      expect_success (r);
      g_autoptr(VlSafetensors) o = vl_test_open (out);
      g_autoptr(VlSafetensors) ref = vl_test_open (expected);
      const char *names[] = { "features", "tokens_final", "rollout", "logits", "embedding",
                              "attn.0", "attn.1" };
      int compared = 0;
      for (guint k = 0; k < G_N_ELEMENTS (names); k++)
        if (vl_safetensors_lookup (ref, names[k]))
          {
            assert_tensor_close (o, names[k], ref, names[k]);
            compared++;
          }
        else
          g_assert_null (vl_safetensors_lookup (o, names[k]));
      g_assert_cmpint (compared, >=, 5);
      rm_rf (tmp);
    }
}

/* export writes a timm-named folder that loads and classifies like the original. */
static void
test_families_export (void)
{
  g_autofree char *real = vl_test_shared_path ("weights", "vit-tiny-augreg-in1k", NULL);
  g_autofree char *tmp = vl_test_tmpdir ();
  g_autofree char *dir = g_build_filename (tmp, "exported", NULL);
  g_autoptr(CliRun) e = cli_run ("export", real, "--out", dir, NULL);
  expect_success (e);
  assert_dir_holds (dir, "config.json", "model.safetensors", NULL);
  g_autofree char *photo = vl_test_shared_path ("datasets", "imagenet-samples",
                                                "n02125311_10473.JPEG", NULL);
  g_autoptr(CliRun) c = cli_run ("classify", dir, photo, NULL);
  expect_success (c);
  if (!strstr (c->out, "\t286\tcougar\t"))
    g_error ("the exported model does not name the cougar:\n%s", c->out);
  /* a failed export (a file where the folder should be) is an error that names it */
  g_autofree char *blocker = g_build_filename (tmp, "file", NULL);
  write_text (blocker, "x");
  g_autofree char *under = g_build_filename (blocker, "out", NULL);
  g_autoptr(CliRun) bad = cli_run ("export", real, "--out", under, NULL);
  expect_failure (bad, 1, under, NULL);
  rm_rf (tmp);
}

static void
test_families_unknown (void)
{
  g_autofree char *tmp = vl_test_tmpdir ();
  g_autofree char *path = g_build_filename (tmp, "resnet.safetensors", NULL);
  float x[4] = { 0 };
  write_tensor (path, "layer1.0.conv1.weight", 2, (int64_t[]) { 2, 2 }, x);
  g_autoptr(CliRun) r = cli_run ("info", path, NULL);
  expect_failure (r, 1, path, "layer1.0.conv1.weight", NULL);
  if (!strstr (r->err, "OpenCLIP") || !strstr (r->err, "torchvision"))
    g_error ("the error does not list the known families: %s", r->err);
  rm_rf (tmp);
}

/* ------------------------------------------------------------------ bench, dense heads */

/* The value of key=NUMBER in text (the first), failing when it is missing or not a number. */
static double
kv_number (const CliRun *r, const char *key)
{
  g_autofree char *pat = g_strdup_printf ("%s=", key);
  const char *at = r->out;
  while ((at = strstr (at, pat)) && at != r->out && at[-1] != ' ' && at[-1] != '\n')
    at++;
  if (at == NULL)
    g_error ("%s: no %s= in its output:\n%s", r->cmdline, key, r->out);
  char *end;
  double v = g_ascii_strtod (at + strlen (pat), &end);
  if (end == at + strlen (pat))
    g_error ("%s: %s= is not a number:\n%s", r->cmdline, key, r->out);
  return v;
}

/* `bench --task segment|detect` on a tiny random ViT (32 px, a 4 x 4 grid): each head and lock
 * runs, names its head, ends with the two lines bench/run.py reads, and its step trains (the loss
 * of the same batch falls over 6 steps); --cached gives the same losses as the uncached step; the
 * options that do not fit are usage errors. */
/* bench on a backbone without a head (transformers' SigLIP tower, tests/data/fam-hf-siglip)
 * trains a new linear head on its attention pool, as a run would; and a SigLIP-shaped random
 * geometry (no class token, an attention pool, the tanh GELU) trains all of it: the loss of the
 * same batch falls. */
static void
test_bench_siglip (void)
{
  g_autofree char *sig = vl_test_data_path ("fam-hf-siglip", NULL);
  const char *const cases[][14] = {
    { "bench", "--backbone", sig, "--batch", "3", "--reps", "5", "--warmup", "1", "--mode",
      "unlock2", NULL },
    { "bench", "--geometry", "img=32,patch=8,width=64,depth=2,heads=2,cls=0,map=1,gelu_tanh=1",
      "--batch", "3", "--reps", "5", "--warmup", "1", "--mode", "full", NULL },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr(CliRun) r = cli_runv (cases[i]);
      expect_success (r);
      double l0 = kv_number (r, "loss_first"), l1 = kv_number (r, "loss_last");
      g_assert_true (isfinite (l0) && isfinite (l1) && l0 > 0);
      if (!(l1 < l0))
        g_error ("%s: the loss of the same batch did not fall (%g -> %g)", r->cmdline, l0, l1);
      g_assert_cmpfloat (kv_number (r, "images_per_s"), >, 0);
    }
}

static void
test_bench_dense (void)
{
  const char *geo = "img=32,patch=8,width=64,depth=2,heads=2";
  const struct { const char *task, *head, *mode, *name; } cases[] = {
    { "segment", "linear", "unlock1", "linear" },
    { "segment", "upconv", "unlock1", "upconv" },
    { "segment", "linear", "unlock3", "linear" },
    { "segment", "upconv", "full", "upconv" },
    { "detect", NULL, "unlock1", "fcos" },
    { "detect", NULL, "unlock3", "fcos" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      const char *args[20] = { "bench", "--geometry", geo, "--batch", "3", "--reps", "5",
                               "--warmup", "1", "--task", cases[i].task, "--mode",
                               cases[i].mode };
      int n = 13;
      if (cases[i].head)
        {
          args[n++] = "--seg-head";
          args[n++] = cases[i].head;
        }
      g_autoptr(CliRun) r = cli_runv (args);
      expect_success (r);
      g_autofree char *head = g_strdup_printf ("dense_head=%s cached=no\n", cases[i].name);
      g_autofree char *mode = g_strdup_printf (" mode=%s ", cases[i].mode);
      if (!strstr (r->out, head) || !strstr (r->out, mode))
        g_error ("%s: expected %s and%s in:\n%s", r->cmdline, head, mode, r->out);
      g_auto(GStrv) lines = split_lines (r->out);
      guint nl = g_strv_length (lines);
      g_assert_cmpuint (nl, >=, 2);
      g_assert_true (g_str_has_prefix (lines[nl - 2], "images_per_s="));
      g_assert_true (g_str_has_prefix (lines[nl - 1], "peak_rss_mib="));
      double ips = kv_number (r, "images_per_s");
      g_assert_true (isfinite (ips) && ips > 0);
      g_assert_cmpfloat (kv_number (r, "peak_rss_mib"), >, 0);
      double l0 = kv_number (r, "loss_first"), l1 = kv_number (r, "loss_last");
      g_assert_true (isfinite (l0) && isfinite (l1) && l0 > 0);
      if (!(l1 < l0))
        g_error ("%s: the loss of the same batch did not fall over 6 steps (%g -> %g)",
                 r->cmdline, l0, l1);
    }
  /* --cached: the tokens once, then the head alone: the same losses as the uncached step */
  for (int det = 0; det < 2; det++)
    {
      const char *task = det ? "detect" : "segment";
      g_autoptr(CliRun) a = cli_run ("bench", "--geometry", geo, "--batch", "3", "--reps", "3",
                                     "--task", task, "--mode", "unlock1", NULL);
      g_autoptr(CliRun) b = cli_run ("bench", "--geometry", geo, "--batch", "3", "--reps", "3",
                                     "--task", task, "--mode", "unlock1", "--cached", NULL);
      expect_success (a);
      expect_success (b);
      g_assert_nonnull (strstr (a->out, " cached=no\n"));
      g_assert_nonnull (strstr (b->out, " cached=yes\n"));
      g_assert_cmpfloat (kv_number (a, "loss_first"), ==, kv_number (b, "loss_first"));
      g_assert_cmpfloat (kv_number (a, "loss_last"), ==, kv_number (b, "loss_last"));
      g_assert_cmpfloat (kv_number (a, "loss_last"), <, kv_number (a, "loss_first"));
    }
  const char *const bad[][16] = {
    { "bench", "--geometry", geo, "--mode", "unlock1", "--task", "regress", NULL },
    { "bench", "--geometry", geo, "--mode", "unlock1", "--task", "detect", "--seg-head",
      "linear", NULL },
    { "bench", "--geometry", geo, "--mode", "unlock1", "--task", "segment", "--seg-head",
      "deeplab", NULL },
    { "bench", "--geometry", geo, "--mode", "stem-conv", "--task", "segment", NULL },
    { "bench", "--geometry", geo, "--mode", "unlock0", "--task", "segment", NULL },
    { "bench", "--geometry", geo, "--mode", "unlock1", "--classes", "4", NULL },
    { "bench", "--geometry", geo, "--mode", "unlock3", "--task", "segment", "--cached", NULL },
    { "bench", "--geometry", geo, "--mode", "unlock1", "--cached", NULL },
  };
  const char *needles[] = { "--task", "--seg-head", "--seg-head", "stem", "--mode", "--classes",
                            "--cached", "--cached" };
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr(CliRun) r = cli_runv (bad[i]);
      expect_usage_error (r, needles[i]);
    }
  /* heads that do not fit the model: errors naming the problem */
  {
    g_autoptr(CliRun) r = cli_run ("bench", "--geometry", geo, "--mode", "unlock1", "--task",
                                   "segment", "--classes", "1", NULL);
    expect_failure (r, 1, "--classes 1", NULL);
  }
  {
    g_autoptr(CliRun) r = cli_run ("bench", "--geometry", "img=32,patch=8,width=66,depth=1,heads=2",
                                   "--mode", "unlock1", "--task", "segment", "--seg-head",
                                   "upconv", NULL);
    expect_failure (r, 1, "upconv", "66", NULL);
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/cli/info", test_info);
  g_test_add_func ("/cli/forward/fixture", test_forward_fixture);
  g_test_add_func ("/cli/forward/geometries", test_forward_geometries);
  g_test_add_func ("/cli/forward/siglip", test_forward_siglip);
  g_test_add_func ("/cli/bench/siglip", test_bench_siglip);
  g_test_add_func ("/cli/step/fixture", test_step_fixture);
  g_test_add_func ("/cli/classify/imagenet", test_classify_imagenet);
  g_test_add_func ("/cli/classify/top", test_classify_top);
  g_test_add_func ("/cli/errors/checkpoint", test_errors_checkpoint);
  g_test_add_func ("/cli/errors/images", test_errors_images);
  g_test_add_func ("/cli/errors/targets", test_errors_targets);
  g_test_add_func ("/cli/errors/classify", test_errors_classify);
  g_test_add_func ("/cli/errors/usage", test_errors_usage);
  g_test_add_func ("/cli/errors/output", test_errors_output);
  g_test_add_func ("/cli/families/forward", test_families_forward);
  g_test_add_func ("/cli/families/export", test_families_export);
  g_test_add_func ("/cli/families/unknown", test_families_unknown);
  g_test_add_func ("/cli/bench/dense", test_bench_dense);
  return g_test_run ();
}
