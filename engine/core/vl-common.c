#include "vl-safetensors.h"

G_DEFINE_QUARK (vl-error-quark, vl_error)

#include "vl-format.h"

#include <string.h>

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

char *
vl_format_count (int64_t n)
{
  /* 5717416 -> "5,717,416" */
  char digits[32];
  g_snprintf (digits, sizeof digits, "%" G_GINT64_FORMAT, n < 0 ? -n : n);
  GString *s = g_string_new (n < 0 ? "-" : "");
  int len = (int) strlen (digits);
  for (int i = 0; i < len; i++)
    {
      g_string_append_c (s, digits[i]);
      if ((len - i - 1) % 3 == 0 && i < len - 1)
        g_string_append_c (s, ',');
    }
  return g_string_free (s, FALSE);
}
