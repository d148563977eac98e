/* vl-zip.c: a zip archive mapped in memory, read with libzip. */
#include "vl-zip.h"

#include "vl-error.h"

#include <string.h>

gboolean
vl_zip_is_zip (const guint8 *map, size_t size)
{
  return size >= 4 && memcmp (map, "PK\x03\x04", 4) == 0;
}

zip_t *
vl_zip_open (const char *path, const guint8 *map, size_t size, const char *kind, GError **error)
{
  zip_error_t ze;
  zip_error_init (&ze);
  zip_source_t *src = zip_source_buffer_create (map, size, 0, &ze);
  zip_t *za = src ? zip_open_from_source (src, ZIP_RDONLY, &ze) : NULL;
  if (za == NULL)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: not a readable zip archive (%s is "
                   "one; truncated?): %s", path, kind, zip_error_strerror (&ze));
      if (src)
        zip_source_free (src);
    }
  zip_error_fini (&ze);
  return za;
}

gboolean
vl_zip_has_entry (zip_t *za, const char *name)
{
  const size_t n = strlen (name);
  const zip_int64_t count = zip_get_num_entries (za, 0);
  for (zip_int64_t e = 0; e < count; e++)
    {
      const char *en = zip_get_name (za, (zip_uint64_t) e, 0);
      const size_t len = en ? strlen (en) : 0;
      if (en == NULL || len < n || strcmp (en + len - n, name) != 0)
        continue;
      if (name[0] == '.' || len == n || en[len - n - 1] == '/')
        return TRUE;
    }
  return FALSE;
}

guint64
vl_zip_budget (size_t size)
{
  return MAX ((guint64) size * 8, (guint64) 64 << 20);
}

guint8 *
vl_zip_read_entry (zip_t *za, zip_uint64_t index, guint64 size, const char *path,
                   const char *name, GError **error)
{
  zip_file_t *f = zip_fopen_index (za, index, 0);
  if (f == NULL)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: %s: %s", path, name,
                   zip_strerror (za));
      return NULL;
    }
  guint8 *buf = g_try_malloc (MAX (size, 1));
  if (buf == NULL)
    {
      zip_fclose (f);
      g_set_error (error, VL_ERROR, VL_ERROR_IO, "%s: %s: cannot allocate %" G_GUINT64_FORMAT
                   " bytes", path, name, size);
      return NULL;
    }
  guint64 got = 0;
  while (got < size)
    {
      zip_int64_t n = zip_fread (f, buf + got, size - got);
      if (n <= 0)
        {
          g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: %s: %s after %" G_GUINT64_FORMAT
                       " of %" G_GUINT64_FORMAT " bytes", path, name,
                       n < 0 ? zip_file_strerror (f) : "ends early (truncated)", got, size);
          zip_fclose (f);
          g_free (buf);
          return NULL;
        }
      got += (guint64) n;
    }
  /* reading on to the end makes libzip check the entry's CRC-32: a flipped byte in a weight
   * is an error, not a silently different model */
  guint8 more;
  zip_int64_t tail = zip_fread (f, &more, 1);
  if (tail != 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: %s: %s", path, name,
                   tail < 0 ? zip_file_strerror (f) : "longer than its stated size");
      zip_fclose (f);
      g_free (buf);
      return NULL;
    }
  zip_fclose (f);
  return buf;
}
