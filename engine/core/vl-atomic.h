/* vl-atomic.h: the engine's one way of writing a file so that a reader (or a crash, a full disk,
 * a kill -9) only ever sees the old file or the whole new one: the bytes go to a temporary file
 * beside the target (.NAME.XXXXXX, so that the rename stays on one file system), which is
 * fsynced, closed and renamed over the target; then the folder is fsynced. On any failure the
 * temporary is removed and the old file is left as it was. Errors name the target path.
 *
 *   vl_write_file_atomic (path, json, -1, &error);           // small files in one call
 *
 *   VlAtomicFile *f = vl_atomic_file_new (path, &error);      // large ones streamed
 *   ok = vl_atomic_file_write (f, header, n, &error) && vl_atomic_file_write (f, data, m, &error);
 *   ok = ok ? vl_atomic_file_commit (f, &error) : (vl_atomic_file_abort (f), FALSE);
 *
 * The run folder's group commit (vl-run.h) writes each of its files this way. */
#pragma once

#include <glib.h>

#include "vl-error.h"

G_BEGIN_DECLS

typedef struct _VlAtomicFile VlAtomicFile;

/* A temporary file beside path, open for writing; NULL (error set) when it cannot be made. */
VlAtomicFile *vl_atomic_file_new    (const char *path, GError **error);
/* Appends len bytes; a short write (a full disk) is an error naming the path. */
gboolean      vl_atomic_file_write  (VlAtomicFile *f, const void *data, gsize len,
                                     GError **error);
/* fsync, close, rename over the path, fsync of the folder; frees f. On failure the temporary is
 * removed and the target is untouched. */
gboolean      vl_atomic_file_commit (VlAtomicFile *f, GError **error);
/* Removes the temporary and frees f (NULL: nothing). */
void          vl_atomic_file_abort  (VlAtomicFile *f);

/* fsyncs the folder dir, so that a rename into it lasts a power cut (best effort). */
void          vl_sync_dir           (const char *dir);

/* contents (length bytes; -1: a NUL-terminated string) as path's new contents, atomically. */
gboolean      vl_write_file_atomic  (const char *path, const char *contents, gssize length,
                                     GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (VlAtomicFile, vl_atomic_file_abort)

G_END_DECLS
