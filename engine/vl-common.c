#include "vl-safetensors.h"

G_DEFINE_QUARK (vl-error-quark, vl_error)

#include "vl-format.h"

#include <math.h>

void
vl_format_duration (char *buf, gsize size, double s)
{
  if (!isfinite (s) || s < 0)
    g_snprintf (buf, size, "--:--");
  else if (s >= 3600)
    g_snprintf (buf, size, "%d:%02d:%02d", (int) (s / 3600), (int) fmod (s / 60, 60),
                (int) fmod (s, 60));
  else
    g_snprintf (buf, size, "%d:%02d", (int) (s / 60), (int) fmod (s, 60));
}
