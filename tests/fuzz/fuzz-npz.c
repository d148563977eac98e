/* fuzz-npz.c: the arrays of a NumPy .npz. The input is a list of records, each "NAME\n" and
 * then the bytes of NAME.npy, separated by "#NPY#"; the harness writes them into a valid zip
 * (libzip, so the CRCs hold and the bytes reach the .npy parser and the JAX ViT conversion),
 * then vl_safetensors_open, as for any checkpoint, every tensor it hands out converted to
 * float32, and vl_model_load on the same file. Seeds: a ViT of width 4 in the AugReg and the
 * big_vision (stacked blocks) layouts, and a SigLIP image tower with a MAPHead
 * (tests/data/gen-families.py --fuzz-seeds). */
#include "fuzz-common.h"
#include "vl-model.h"
#include "vl-safetensors.h"

#include <string.h>
#include <zip.h>

#define SEP "#NPY#"

/* The next separator at or after p, or NULL. */
static const uint8_t *
find_sep (const uint8_t *p, const uint8_t *end)
{
  const size_t n = strlen (SEP);
  for (; (size_t) (end - p) >= n; p++)
    if (memcmp (p, SEP, n) == 0)
      return p;
  return NULL;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autofree char *path = g_build_filename (fuzz_dir (), "model.npz", NULL);
  int zerr = 0;
  zip_t *za = zip_open (path, ZIP_CREATE | ZIP_TRUNCATE, &zerr);
  g_assert (za != NULL);
  const uint8_t *p = data, *end = data + size;
  while (p < end)
    {
      const uint8_t *next = find_sep (p, end);
      const uint8_t *stop = next ? next : end;
      const uint8_t *nl = memchr (p, '\n', (size_t) (stop - p));
      if (nl && nl > p && nl - p < 200)
        {
          g_autofree char *name = g_strndup ((const char *) p, (gsize) (nl - p));
          g_autofree char *entry = g_strconcat (name, ".npy", NULL);
          zip_source_t *src = zip_source_buffer (za, nl + 1, (zip_uint64_t) (stop - nl - 1), 0);
          g_assert (src != NULL);
          zip_int64_t at = zip_file_add (za, entry, src, ZIP_FL_OVERWRITE | ZIP_FL_ENC_UTF_8);
          if (at < 0)
            zip_source_free (src);   /* a name libzip refuses */
          else
            zip_set_file_compression (za, (zip_uint64_t) at, ZIP_CM_STORE, 0);
        }
      p = next ? next + strlen (SEP) : end;
    }
  if (zip_close (za) != 0)
    {
      zip_discard (za);
      return 0;
    }

  g_autoptr(GError) error = NULL;
  g_autoptr(VlSafetensors) st = vl_safetensors_open (path, &error);
  if (st == NULL)
    {
      g_assert (error != NULL && strstr (error->message, path) != NULL);
      return 0;
    }
  fuzz_check_tensors (st);
  g_autoptr(GError) model_error = NULL;
  g_autoptr(VlModel) m = vl_model_load (path, &model_error);
  g_assert (m != NULL || strstr (model_error->message, path) != NULL);
  return 0;
}
