#include "vl-test-util.h"

#include <stdarg.h>
#include <sys/wait.h>

#include <math.h>
#include <stdarg.h>

static char *
build_path_va (const char *root, const char *first, va_list ap)
{
  GPtrArray *parts = g_ptr_array_new ();
  g_ptr_array_add (parts, (gpointer) root);
  for (const char *p = first; p != NULL; p = va_arg (ap, const char *))
    g_ptr_array_add (parts, (gpointer) p);
  g_ptr_array_add (parts, NULL);
  char *path = g_build_filenamev ((char **) parts->pdata);
  g_ptr_array_free (parts, TRUE);
  return path;
}

char *
vl_test_shared_path (const char *first, ...)
{
  const char *root = g_getenv ("VITLAB_SHARED");
  if (root == NULL)
    root = "../shared";
  if (!g_file_test (root, G_FILE_TEST_IS_DIR))
    g_error ("shared data folder %s not found (set VITLAB_SHARED)", root);
  va_list ap;
  va_start (ap, first);
  char *path = build_path_va (root, first, ap);
  va_end (ap);
  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    g_error ("required test data %s is missing", path);
  return path;
}

char *
vl_test_data_path (const char *first, ...)
{
  const char *root = g_getenv ("G_TEST_SRCDIR");
  char *data = g_build_filename (root ? root : ".", "data", NULL);
  va_list ap;
  va_start (ap, first);
  char *path = build_path_va (data, first, ap);
  va_end (ap);
  g_free (data);
  return path;
}

VlSafetensors *
vl_test_open (const char *path)
{
  g_autoptr(GError) error = NULL;
  VlSafetensors *st = vl_safetensors_open (path, &error);
  g_assert_no_error (error);
  g_assert_nonnull (st);
  return st;
}

float *
vl_test_read (VlSafetensors *st, const char *name, int64_t *numel)
{
  g_autoptr(GError) error = NULL;
  const VlTensorInfo *info = NULL;
  float *data = vl_safetensors_read_f32 (st, name, &info, &error);
  g_assert_no_error (error);
  g_assert_nonnull (data);
  if (numel)
    *numel = info->numel;
  return data;
}

double
vl_test_max_abs_diff (const float *a, const float *b, int64_t n)
{
  double worst = 0;
  for (int64_t i = 0; i < n; i++)
    {
      double d = fabs ((double) a[i] - (double) b[i]);
      if (!(d <= worst))
        worst = isnan (d) ? INFINITY : d;
    }
  return worst;
}

void
vl_test_assert_close (const char *what, const float *got, const float *want, int64_t n,
                      double atol, double rtol)
{
  int64_t worst_i = -1;
  double worst_excess = 0, max_diff = 0;
  for (int64_t i = 0; i < n; i++)
    {
      double d = fabs ((double) got[i] - (double) want[i]);
      double tol = atol + rtol * fabs ((double) want[i]);
      if (isnan (d))
        d = INFINITY;
      if (d > max_diff)
        max_diff = d;
      if (d > tol && (worst_i < 0 || d - tol > worst_excess))
        {
          worst_i = i;
          worst_excess = d - tol;
        }
    }
  g_test_message ("%s: max abs diff %.3g over %" G_GINT64_FORMAT " elements", what, max_diff, n);
  if (worst_i >= 0)
    g_error ("%s: element %" G_GINT64_FORMAT " is %.8g, expected %.8g (atol %.1g, rtol %.1g)",
             what, worst_i, got[worst_i], want[worst_i], atol, rtol);
}

char *
vl_test_tmpdir (void)
{
  g_autoptr(GError) error = NULL;
  char *dir = g_dir_make_tmp ("vitlab-test-XXXXXX", &error);
  g_assert_no_error (error);
  return dir;
}

void
vl_test_copy_file (const char *from, const char *to)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *data = NULL;
  gsize len = 0;
  g_file_get_contents (from, &data, &len, &error);
  g_assert_no_error (error);
  g_file_set_contents (to, data, (gssize) len, &error);
  g_assert_no_error (error);
}

void
vl_test_run_to_end (VlTrainer *t, VlTrainEnd *end, GPtrArray *lock_events)
{
  for (;;)
    {
      vl_trainer_wait (t, 100000);
      g_autoptr(GPtrArray) evs = vl_trainer_drain (t);
      for (guint i = 0; i < evs->len; i++)
        {
          VlTrainEvent *ev = g_ptr_array_index (evs, i);
          if (ev->kind == VL_TRAIN_EVENT_LOCK && lock_events)
            g_ptr_array_add (lock_events, g_memdup2 (&ev->n_trainable, sizeof (int64_t)));
          if (ev->kind == VL_TRAIN_EVENT_FINISHED)
            {
              if (ev->error)
                g_test_message ("finished: %s", ev->error->message);
              *end = ev->end;
              vl_trainer_join (t);
              return;
            }
        }
    }
}

char *
vl_test_cli (int *status, const char *first, ...)
{
  g_autoptr(GPtrArray) args = g_ptr_array_new ();
  g_ptr_array_add (args, (char *) g_getenv ("VITLAB_CLI"));
  va_list ap;
  va_start (ap, first);
  for (const char *a = first; a != NULL; a = va_arg (ap, const char *))
    g_ptr_array_add (args, (char *) a);
  va_end (ap);
  g_ptr_array_add (args, NULL);
  char *out = NULL, *err = NULL;
  g_autoptr(GError) error = NULL;
  g_assert_true (g_spawn_sync (NULL, (char **) args->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL,
                               &out, &err, status, &error));
  g_test_message ("stderr: %s", err);
  g_free (err);
  *status = WIFEXITED (*status) ? WEXITSTATUS (*status) : -1;
  return out;
}
