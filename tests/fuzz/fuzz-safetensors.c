/* fuzz-safetensors.c: vl_safetensors_open on any file, then every tensor converted to float32
 * (the reader must have refused anything whose header lies about its data). */
#include "fuzz-common.h"
#include "vl-safetensors.h"

#include <string.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autofree char *path = fuzz_write ("model.safetensors", data, size);
  g_autoptr(GError) error = NULL;
  g_autoptr(VlSafetensors) st = vl_safetensors_open (path, &error);
  if (st == NULL)
    {
      g_assert (error != NULL && strstr (error->message, path) != NULL);
      return 0;
    }
  GHashTable *meta = vl_safetensors_metadata (st);
  if (meta != NULL)
    g_assert (g_hash_table_size (meta) < size);
  fuzz_check_tensors (st);
  return 0;
}
