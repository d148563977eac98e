/* fuzz-config.c: a checkpoint folder whose weights are the shipped backbone's and whose
 * config.json (or, by the first byte, open_clip_config.json, read when config.json is absent)
 * is the input; vl_model_load must load it or refuse it with an error
 * naming a file. The weights come from $VITLAB_FUZZ_BACKBONE (default: the source tree's). */
#include "fuzz-common.h"
#include "vl-model.h"

#include <string.h>
#include <unistd.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static char *dir;
  if (dir == NULL)
    {
      const char *src = g_getenv ("VITLAB_FUZZ_BACKBONE");
      g_autofree char *st = g_build_filename (src ? src : VITLAB_SOURCE_DATA_DIR
                                              "/backbones/vitlab-fmnist-tiny",
                                              "model.safetensors", NULL);
      dir = g_build_filename (fuzz_dir (), "ckpt", NULL);
      g_mkdir (dir, 0700);
      g_autofree char *link = g_build_filename (dir, "model.safetensors", NULL);
      g_assert (symlink (st, link) == 0);
    }
  static const char *names[] = { "config.json", "open_clip_config.json" };
  const char *name = names[size > 0 ? data[0] % 2 : 0];
  g_autofree char *cfg = g_build_filename (dir, name, NULL);
  g_assert (g_file_set_contents (cfg, (const char *) data + (size > 0), (gssize) size - (size > 0),
                                 NULL));
  g_autoptr(GError) error = NULL;
  g_autoptr(VlModel) m = vl_model_load (dir, &error);
  if (m == NULL)
    g_assert (error != NULL && strstr (error->message, dir) != NULL);
  else
    {
      const VlGeometry *g = vl_model_geometry (m);
      g_assert (g->input_size >= g->patch && g->input_size <= VL_MAX_INPUT_SIZE);
      g_assert (g->crop_pct >= VL_MIN_CROP_PCT && g->crop_pct <= VL_MAX_CROP_PCT);
      g_assert (g->heads >= 1 && g->width % g->heads == 0);
    }
  g_unlink (cfg);
  return 0;
}
