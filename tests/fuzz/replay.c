/* replay.c: a main for a harness outside libFuzzer, so that the GCC and clang sanitizer builds
 * of `make test` run every checked-in corpus input (tests/fuzz/corpus/NAME, and the crashers
 * kept there) through it once. Arguments: files or folders of inputs. Scratch files go to the
 * harness's own folder (fuzz_dir, removed at exit); a sanitizer report or a failed assertion fails
 * the test. */
#include "fuzz-common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
compare_paths (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

static int
replay_file (const char *path)
{
  g_autofree char *data = NULL;
  gsize size = 0;
  g_autoptr(GError) error = NULL;
  if (!g_file_get_contents (path, &data, &size, &error))
    {
      fprintf (stderr, "replay: %s\n", error->message);
      exit (EXIT_FAILURE);
    }
  /* a copy of exactly `size` bytes, as libFuzzer passes: ASan sees a read past the end */
  g_autofree uint8_t *copy = g_memdup2 (data, size);
  LLVMFuzzerTestOneInput (copy, size);
  return 1;
}

int
main (int argc, char **argv)
{
  int n = 0;
  for (int i = 1; i < argc; i++)
    {
      if (!g_file_test (argv[i], G_FILE_TEST_IS_DIR))
        {
          n += replay_file (argv[i]);
          continue;
        }
      g_autoptr(GError) error = NULL;
      GDir *d = g_dir_open (argv[i], 0, &error);
      if (d == NULL)
        {
          fprintf (stderr, "replay: %s\n", error->message);
          return EXIT_FAILURE;
        }
      g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
      const char *name;
      while ((name = g_dir_read_name (d)) != NULL)
        g_ptr_array_add (names, g_build_filename (argv[i], name, NULL));
      g_dir_close (d);
      g_ptr_array_sort (names, compare_paths);
      for (guint k = 0; k < names->len; k++)
        {
          printf ("%s\n", (const char *) g_ptr_array_index (names, k));
          fflush (stdout);
          n += replay_file (g_ptr_array_index (names, k));
        }
    }
  if (n == 0)
    {
      fprintf (stderr, "replay: no inputs\n");
      return EXIT_FAILURE;
    }
  printf ("replayed %d inputs\n", n);
  return EXIT_SUCCESS;
}
