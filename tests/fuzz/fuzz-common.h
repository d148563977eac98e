/* fuzz-common.h: what the libFuzzer harnesses share: a private scratch folder and writing the
 * input to a file there (the parsers under test read files, as vitlab does). */
#pragma once

#include <glib.h>
#include <glib/gstdio.h>
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* A folder of this process's own, made once. */
static inline const char *
fuzz_dir (void)
{
  static char *dir;
  if (dir == NULL)
    {
      dir = g_dir_make_tmp ("vitlab-fuzz-XXXXXX", NULL);
      g_assert (dir != NULL);
    }
  return dir;
}

/* Writes data to fuzz_dir ()/name; returns the path (g_free). */
static inline char *
fuzz_write (const char *name, const uint8_t *data, size_t size)
{
  char *path = g_build_filename (fuzz_dir (), name, NULL);
  g_assert (g_file_set_contents (path, (const char *) data, (gssize) size, NULL));
  return path;
}
