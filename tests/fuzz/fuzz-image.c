/* fuzz-image.c: vl_image_load_memory on any bytes (the first byte picks the channels asked for,
 * 0 to 4), and the header check a dataset scan runs (vl_image_check_file); a decoded image is
 * then run through timm's eval preprocessing at a small size. */
#include "fuzz-common.h"
#include "vl-image.h"

#include <string.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  int channels = data[0] % 5;
  data++, size--;
  g_autoptr(GError) error = NULL;
  g_autoptr(VlImage) img = vl_image_load_memory (data, size, "fuzz.img", channels, &error);
  if (img == NULL)
    g_assert (error != NULL && strstr (error->message, "fuzz.img") != NULL);
  else
    {
      g_assert (img->width > 0 && img->height > 0);
      g_assert (channels == 0 || img->channels == channels);
      VlPreprocess pp = { .channels = 3, .size = 8, .crop_pct = 0.875, .interp = VL_INTERP_BICUBIC,
                          .mean = { 0.5f, 0.5f, 0.5f }, .std = { 0.5f, 0.5f, 0.5f } };
      float out[3 * 8 * 8];
      vl_preprocess_eval (img, &pp, out);
    }
  g_autofree char *path = fuzz_write ("check.img", data, size);
  g_clear_error (&error);
  int w = 0, h = 0;
  if (!vl_image_check_file (path, &w, &h, &error))
    g_assert (error != NULL);
  else if (img != NULL)
    g_assert (w == img->width && h == img->height);
  return 0;
}
