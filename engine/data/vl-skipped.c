/* vl-skipped.c: see vl-skipped.h. */
#include "vl-skipped.h"

VlSkipped *
vl_skipped_new (const char *path, const char *reason)
{
  VlSkipped *s = g_new0 (VlSkipped, 1);
  s->path = g_strdup (path);
  s->reason = g_strdup (reason);
  return s;
}

VlSkipped *
vl_skipped_copy (const VlSkipped *s)
{
  return vl_skipped_new (s->path, s->reason);
}

void
vl_skipped_free (gpointer p)
{
  VlSkipped *s = p;
  if (s == NULL)
    return;
  g_free (s->path);
  g_free (s->reason);
  g_free (s);
}
