/* fuzz-common.h: what the libFuzzer harnesses share: a private scratch folder and writing the
 * input to a file there (the parsers under test read files, as vitlab does); the checks on what
 * a checkpoint reader hands out. */
#pragma once

#include <glib.h>
#include <glib/gstdio.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "vl-image.h"
#include "vl-safetensors.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* Removes a file, or a folder and what it holds (a symbolic link is removed, not followed). */
static inline void
fuzz_remove_tree (const char *path)
{
  if (g_file_test (path, G_FILE_TEST_IS_DIR) && !g_file_test (path, G_FILE_TEST_IS_SYMLINK))
    {
      GDir *d = g_dir_open (path, 0, NULL);
      const char *name;
      while (d != NULL && (name = g_dir_read_name (d)) != NULL)
        {
          g_autofree char *child = g_build_filename (path, name, NULL);
          fuzz_remove_tree (child);
        }
      if (d != NULL)
        g_dir_close (d);
    }
  g_remove (path);
}

static char *fuzz_dir_path;

static void
fuzz_dir_remove (void)
{
  fuzz_remove_tree (fuzz_dir_path);
}

/* A folder of this process's own, made once on tmpfs (/dev/shm when it is there and writable,
 * else g_get_tmp_dir ()), so that writing an input costs no disk I/O; removed at exit. */
static inline const char *
fuzz_dir (void)
{
  if (fuzz_dir_path == NULL)
    {
      const char *base = access ("/dev/shm", W_OK | X_OK) == 0 ? "/dev/shm" : g_get_tmp_dir ();
      fuzz_dir_path = g_build_filename (base, "vitlab-fuzz-XXXXXX", NULL);
      g_assert (g_mkdtemp (fuzz_dir_path) != NULL);
      atexit (fuzz_dir_remove);
    }
  return fuzz_dir_path;
}

/* Writes data to path, replacing what it held: a plain write, no temporary file or fsync
 * (g_file_set_contents does both, and that cost more than most parsers under test). */
static inline void
fuzz_write_file (const char *path, const void *data, size_t size)
{
  int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  g_assert (fd >= 0);
  const char *p = data;
  while (size > 0)
    {
      ssize_t n = write (fd, p, size);
      g_assert (n > 0);
      p += n;
      size -= (size_t) n;
    }
  g_assert (close (fd) == 0);
}

/* Writes data to fuzz_dir ()/name; returns the path (g_free). */
static inline char *
fuzz_write (const char *name, const uint8_t *data, size_t size)
{
  char *path = g_build_filename (fuzz_dir (), name, NULL);
  fuzz_write_file (path, data, size);
  return path;
}

/* Makes a GLib critical (a g_return_if_fail refusing what a parser passed, as json-glib's
 * getters do for a member of the wrong type) abort, as it does in the GLib tests: a finding. */
static inline void
fuzz_log (const char *domain, GLogLevelFlags level, const char *message, gpointer data)
{
  g_log_default_handler (domain, level, message, data);
  if (level & (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_ERROR | G_LOG_FLAG_FATAL))
    abort ();   /* SIGABRT, which libFuzzer catches and keeps the input of (not G_BREAKPOINT's
                 * SIGTRAP) */
}

static inline void
fuzz_fatal_criticals (void)
{
  g_log_set_default_handler (fuzz_log, NULL);
}

/* Makes fuzz_dir ()/rel and the folders above it; returns its path (g_free). */
static inline char *
fuzz_mkdirs (const char *rel)
{
  char *path = g_build_filename (fuzz_dir (), rel, NULL);
  g_assert (g_mkdir_with_parents (path, 0700) == 0);
  return path;
}

/* Writes dir/name, a w x h PNG of `channels` (1 or 3) holding a fixed pattern: the small valid
 * images that the dataset harnesses put beside their input (vl-image.h's own writer). */
static inline void
fuzz_write_png (const char *dir, const char *name, int w, int h, int channels)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  VlImage *img = vl_image_new (w, h, channels);
  for (int i = 0; i < w * h * channels; i++)
    img->pixels[i] = (uint8_t) (i * 37);
  g_autoptr(GError) error = NULL;
  g_assert (vl_image_save_png (path, img, &error));
  vl_image_free (img);
}

/* Every tensor a checkpoint reader handed out: found by its name, its byte size its shape's,
 * convertible to float32 (the reader must have refused anything whose header lies). */
static inline void
fuzz_check_tensors (VlSafetensors *st)
{
  for (guint i = 0; i < vl_safetensors_n_tensors (st); i++)
    {
      const VlTensorInfo *t = vl_safetensors_get (st, i);
      g_assert (vl_safetensors_lookup (st, t->name) == t);
      g_assert (t->nbytes == (size_t) t->numel * vl_dtype_size (t->dtype));
      if (t->numel > (1 << 20))
        continue;
      g_autofree float *f = g_new (float, MAX (t->numel, 1));
      vl_tensor_to_f32 (t, f);
    }
}
