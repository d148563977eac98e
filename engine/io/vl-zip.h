/* vl-zip.h: a zip archive mapped in memory (libzip), as PyTorch's and NumPy's checkpoints are:
 * opening it and reading an entry whole, with errors that name the file and the entry. */
#pragma once

#include <glib.h>
#include <zip.h>

G_BEGIN_DECLS

/* The leading bytes of a zip archive. */
gboolean  vl_zip_is_zip      (const guint8 *map,
                              size_t        size);
/* The archive mapped at map (kept by the caller until zip_discard). `kind` names what the file
 * should be in the error ("a PyTorch checkpoint"). */
zip_t    *vl_zip_open        (const char   *path,
                              const guint8 *map,
                              size_t        size,
                              const char   *kind,
                              GError      **error);
/* TRUE when an entry's name is `name` or ends in "/" + `name` ("data.pkl"), or, with a leading
 * '.', ends in it (".npy"). */
gboolean  vl_zip_has_entry   (zip_t        *za,
                              const char   *name);
/* The bytes a reader may take out of an archive of `size` bytes, stored or deflated: eight times
 * its size (weights barely compress), at least 64 MiB; beyond it an entry is a zip bomb. */
guint64   vl_zip_budget      (size_t        size);
/* Entry `index` whole, `size` bytes (its stated size), in a new buffer (g_free). */
guint8   *vl_zip_read_entry  (zip_t        *za,
                              zip_uint64_t  index,
                              guint64       size,
                              const char   *path,
                              const char   *name,
                              GError      **error);

G_END_DECLS
