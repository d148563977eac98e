/* vl-atomic.c: atomic file writes (vl-atomic.h). */
#include "vl-atomic.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

struct _VlAtomicFile {
  char *path;
  char *tmp;
  int   fd;
};

static gboolean
io_error (GError **error, const char *path, int err, const char *what)
{
  g_set_error (error, VL_ERROR, VL_ERROR_IO, "%s: %s: %s", path, what, g_strerror (err));
  return FALSE;
}

VlAtomicFile *
vl_atomic_file_new (const char *path, GError **error)
{
  g_autofree char *dir = g_path_get_dirname (path);
  g_autofree char *base = g_path_get_basename (path);
  g_autofree char *tmp = g_strdup_printf ("%s/.%s.XXXXXX", dir, base);
  int fd = g_mkstemp_full (tmp, O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0)
    {
      io_error (error, path, errno, "cannot create a file beside it");
      return NULL;
    }
  VlAtomicFile *f = g_new (VlAtomicFile, 1);
  f->path = g_strdup (path);
  f->tmp = g_steal_pointer (&tmp);
  f->fd = fd;
  return f;
}

gboolean
vl_atomic_file_write (VlAtomicFile *f, const void *data, gsize len, GError **error)
{
  const char *p = data;
  while (len > 0)
    {
      ssize_t n = write (f->fd, p, MIN (len, (gsize) 1 << 30));
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)   /* 0: not expected for a regular file; do not spin */
        return io_error (error, f->path, n < 0 ? errno : ENOSPC, "cannot write");
      p += n;
      len -= (gsize) n;
    }
  return TRUE;
}

static void
atomic_file_free (VlAtomicFile *f)
{
  g_free (f->path);
  g_free (f->tmp);
  g_free (f);
}

void
vl_atomic_file_abort (VlAtomicFile *f)
{
  if (f == NULL)
    return;
  if (f->fd >= 0)
    close (f->fd);
  g_unlink (f->tmp);
  atomic_file_free (f);
}

void
vl_sync_dir (const char *dir)
{
  int fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0)
    {
      fsync (fd);
      close (fd);
    }
}

gboolean
vl_atomic_file_commit (VlAtomicFile *f, GError **error)
{
  int fd = f->fd;
  f->fd = -1;
  gboolean synced = fsync (fd) == 0;
  int err = errno;
  if (close (fd) != 0 && synced)
    {
      synced = FALSE;
      err = errno;
    }
  if (!synced)
    {
      io_error (error, f->path, err, "cannot write to disk");
      vl_atomic_file_abort (f);
      return FALSE;
    }
  if (g_rename (f->tmp, f->path) != 0)
    {
      io_error (error, f->path, errno, "cannot replace");
      vl_atomic_file_abort (f);
      return FALSE;
    }
  /* the rename itself made durable; best effort: the new file is in place already */
  g_autofree char *dir = g_path_get_dirname (f->path);
  vl_sync_dir (dir);
  atomic_file_free (f);
  return TRUE;
}

gboolean
vl_write_file_atomic (const char *path, const char *contents, gssize length, GError **error)
{
  const gsize len = length < 0 ? strlen (contents) : (gsize) length;
  VlAtomicFile *f = vl_atomic_file_new (path, error);
  if (f == NULL)
    return FALSE;
  if (!vl_atomic_file_write (f, contents, len, error))
    {
      vl_atomic_file_abort (f);
      return FALSE;
    }
  return vl_atomic_file_commit (f, error);
}
