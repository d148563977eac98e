/* vl-stb.h: the stb_image entry points vl-image.c uses, from vitlab's own build of it
 * (vl-stb.c: no JPEG, no PNG). Engine-internal. Pixels are freed with g_free. */
#pragma once

#include <stdio.h>

int            vl_stb_info_memory      (const unsigned char *data, int size, int *w, int *h,
                                        int *comp);
int            vl_stb_info_file        (FILE *f, int *w, int *h, int *comp);
int            vl_stb_is_16_bit_memory (const unsigned char *data, int size);
int            vl_stb_is_hdr_memory    (const unsigned char *data, int size);
unsigned char *vl_stb_load_memory      (const unsigned char *data, int size, int *w, int *h,
                                        int *comp, int req_comp);
const char    *vl_stb_failure_reason   (void);
