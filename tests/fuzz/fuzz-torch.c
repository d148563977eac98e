/* fuzz-torch.c: the pickle of a PyTorch checkpoint. The input becomes data.pkl of a valid zip
 * archive (written with libzip, so its CRCs hold and the bytes reach the pickle machine), beside
 * four 256-byte storages data/0 … data/3; then vl_safetensors_open, as for any checkpoint, and
 * every tensor it hands out converted to float32. Nothing in a pickle may be called: a pickle
 * that would run os.system must come back as an error or as tensors, nothing else. */
#include "fuzz-common.h"
#include "vl-safetensors.h"

#include <string.h>
#include <zip.h>

static void
add (zip_t *za, const char *name, const void *data, size_t size)
{
  zip_source_t *src = zip_source_buffer (za, data, size, 0);
  g_assert (src != NULL);
  g_assert (zip_file_add (za, name, src, ZIP_FL_OVERWRITE) >= 0);
  zip_set_file_compression (za, (zip_uint64_t) zip_name_locate (za, name, 0), ZIP_CM_STORE, 0);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static guint8 storage[256];
  for (guint k = 0; k < sizeof storage; k++)
    storage[k] = (guint8) (k * 37 + 11);
  g_autofree char *path = g_build_filename (fuzz_dir (), "ckpt.pth", NULL);
  int zerr = 0;
  zip_t *za = zip_open (path, ZIP_CREATE | ZIP_TRUNCATE, &zerr);
  g_assert (za != NULL);
  add (za, "archive/data.pkl", data, size);
  add (za, "archive/byteorder", "little", 6);
  for (int k = 0; k < 4; k++)
    {
      char name[32];
      g_snprintf (name, sizeof name, "archive/data/%d", k);
      add (za, name, storage, sizeof storage);
    }
  g_assert (zip_close (za) == 0);

  g_autoptr(GError) error = NULL;
  g_autoptr(VlSafetensors) st = vl_safetensors_open (path, &error);
  if (st == NULL)
    {
      g_assert (error != NULL && strstr (error->message, path) != NULL);
      return 0;
    }
  g_assert (vl_safetensors_n_tensors (st) > 0);
  fuzz_check_tensors (st);
  return 0;
}
