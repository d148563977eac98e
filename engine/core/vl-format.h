/* vl-format.h: how the engine's numbers are shown to people, the same in the CLI and the app. */
#pragma once

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

/* A duration in seconds as "m:ss" or "h:mm:ss"; "--:--" when unknown (NaN, negative). */
void vl_format_duration (char *buf, gsize size, double seconds);
/* A count with thousands separators: 5717416 as "5,717,416" (g_free). */
char *vl_format_count (int64_t n);

G_END_DECLS
