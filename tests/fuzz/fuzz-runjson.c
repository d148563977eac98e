/* fuzz-runjson.c: a run folder whose run.json is the input: vl_train_config_load must read it
 * or refuse it with an error, and what it reads must pass or fail vl_train_config_check
 * cleanly. */
#include "fuzz-common.h"
#include "vl-trainer.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static char *dir;
  if (dir == NULL)
    {
      dir = g_build_filename (fuzz_dir (), "run", NULL);
      g_mkdir (dir, 0700);
    }
  g_autofree char *path = g_build_filename (dir, "run.json", NULL);
  fuzz_write_file (path, data, size);
  VlTrainConfig c;
  g_autoptr(GError) error = NULL;
  if (vl_train_config_load (&c, dir, &error))
    {
      g_autoptr(GError) e = NULL;
      vl_train_config_check (&c, &e);
    }
  else
    g_assert (error != NULL);
  vl_train_config_clear (&c);
  return 0;
}
