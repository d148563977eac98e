/* vl-stb.c: vitlab's own build of Debian's stb_image (the header in libstb-dev), for the formats
 * libjpeg-turbo and libpng do not cover: BMP, GIF, TGA, PNM, HDR, PSD.
 *
 * Compiled here rather than taken from libstb.so so that it is built with the project's
 * sanitizers, and without its JPEG, PNG and PIC decoders (stb 2.27's JPEG Huffman-table builder
 * writes out of bounds on a DHT whose counts sum past 256; vl-image.c decodes JPEG and PNG with
 * the libraries their formats are fuzzed with upstream). Everything of stb stays static to this
 * file; vl-image.c calls the few wrappers below. */
#include "vl-stb.h"

#include <glib.h>

#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_JPEG
#define STBI_NO_PNG
#define STBI_NO_PIC    /* Softimage PIC: not a format a dataset has */
/* Larger sides are refused before stb allocates anything (vl-image.c's limits are smaller). */
#define STBI_MAX_DIMENSIONS (1 << 16)
#define STBI_MALLOC(sz)        g_try_malloc (sz)
#define STBI_REALLOC(p, newsz) g_try_realloc (p, newsz)
#define STBI_FREE(p)           g_free (p)

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wmissing-prototypes"
#pragma GCC diagnostic ignored "-Wtype-limits"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#include <stb/stb_image.h>
#pragma GCC diagnostic pop

int
vl_stb_info_memory (const unsigned char *data, int size, int *w, int *h, int *comp)
{
  return stbi_info_from_memory (data, size, w, h, comp);
}

int
vl_stb_info_file (FILE *f, int *w, int *h, int *comp)
{
  return stbi_info_from_file (f, w, h, comp);
}

int
vl_stb_is_16_bit_memory (const unsigned char *data, int size)
{
  return stbi_is_16_bit_from_memory (data, size);
}

int
vl_stb_is_hdr_memory (const unsigned char *data, int size)
{
  return stbi_is_hdr_from_memory (data, size);
}

unsigned char *
vl_stb_load_memory (const unsigned char *data, int size, int *w, int *h, int *comp,
                    int req_comp)
{
  return stbi_load_from_memory (data, size, w, h, comp, req_comp);
}

const char *
vl_stb_failure_reason (void)
{
  return stbi_failure_reason ();
}
