/* vl-skipped.h: a file a dataset reader left out, and why ("cannot decode image: ...",
 * "data.xml:12: a box outside its image"), as every reader lists them (engine-internal
 * readers and the public VlDataset alike). */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct {
  char *path;              /* file (or "fashion-mnist:train#123" for a record) */
  char *reason;            /* "cannot decode image: ...", "empty file", "20000x20000 is above ..." */
} VlSkipped;

VlSkipped *vl_skipped_new  (const char *path, const char *reason);
VlSkipped *vl_skipped_copy (const VlSkipped *s);
/* A GDestroyNotify for GPtrArrays of VlSkipped. */
void       vl_skipped_free (gpointer s);

G_END_DECLS
