/* vl-format.h: how the engine's numbers are shown to people, the same in the CLI and the app. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* A duration in seconds as "m:ss" or "h:mm:ss"; "--:--" when unknown (NaN, negative). */
void vl_format_duration (char *buf, gsize size, double seconds);

G_END_DECLS
