/* vl-npz.c: the arrays of a NumPy .npz archive.
 *
 * An .npz is a zip of NAME.npy files (stored, or deflated by np.savez_compressed). An .npy file is
 * the magic "\x93NUMPY", a version (1.0: a 2-byte header length; 2.0 and 3.0: 4 bytes), then a
 * header that is a Python dict literal ({'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), })
 * padded with spaces to a newline, then the raw bytes. The header is parsed here as the three
 * keys numpy writes and nothing else; Fortran-ordered arrays are reordered to C order,
 * big-endian ones byte-swapped. */
#include "vl-npz.h"

#include "vl-error.h"
#include "vl-jax-vit.h"
#include "vl-zip.h"

#include <string.h>

#define NPY_HEADER_MAX (1u << 20)

typedef struct {
  const char *path, *entry;
  const char *p, *end;
  GError    **error;
} Header;

static gboolean G_GNUC_PRINTF (2, 3)
header_fail (Header *h, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (h->error, VL_ERROR, VL_ERROR_FORMAT, "%s: %s: its .npy header: %s", h->path,
               h->entry, msg);
  return FALSE;
}

static void
skip_space (Header *h)
{
  while (h->p < h->end && (*h->p == ' ' || *h->p == '\t'))
    h->p++;
}

static gboolean
expect_char (Header *h, char c)
{
  skip_space (h);
  if (h->p >= h->end || *h->p != c)
    return header_fail (h, "expected '%c'", c);
  h->p++;
  return TRUE;
}

/* A quoted string without escapes (numpy writes none in these keys) into out[cap]. */
static gboolean
read_string (Header *h, char *out, size_t cap)
{
  skip_space (h);
  if (h->p >= h->end || (*h->p != '\'' && *h->p != '"'))
    return header_fail (h, "expected a quoted string");
  const char q = *h->p++;
  size_t n = 0;
  while (h->p < h->end && *h->p != q)
    {
      if (*h->p == '\\' || n + 1 >= cap)
        return header_fail (h, "a string numpy would not write");
      out[n++] = *h->p++;
    }
  if (h->p >= h->end)
    return header_fail (h, "a string without its closing quote");
  h->p++;
  out[n] = '\0';
  return TRUE;
}

static gboolean
read_shape (Header *h, VlTensorInfo *t)
{
  if (!expect_char (h, '('))
    return FALSE;
  t->ndim = 0;
  t->numel = 1;
  for (;;)
    {
      skip_space (h);
      if (h->p < h->end && *h->p == ')')
        {
          h->p++;
          return TRUE;
        }
      if (h->p >= h->end || !g_ascii_isdigit (*h->p))
        return header_fail (h, "the shape is not a tuple of whole numbers");
      guint64 v = 0;
      while (h->p < h->end && g_ascii_isdigit (*h->p))
        {
          if (v > ((guint64) G_MAXINT64 - 9) / 10)
            return header_fail (h, "a dimension too large");
          v = v * 10 + (guint64) (*h->p++ - '0');
        }
      if (t->ndim == VL_MAX_DIMS)
        return header_fail (h, "more than %d dimensions", VL_MAX_DIMS);
      if (v != 0 && (guint64) t->numel > (guint64) G_MAXINT64 / v)
        return header_fail (h, "a shape whose element count overflows");
      t->shape[t->ndim++] = (int64_t) v;
      t->numel *= (int64_t) v;
      skip_space (h);
      if (h->p < h->end && *h->p == ',')
        h->p++;
    }
}

static const struct {
  const char *descr;
  VlDtype     dtype;
} descrs[] = {
  { "f4", VL_DTYPE_F32 }, { "f2", VL_DTYPE_F16 }, { "f8", VL_DTYPE_F64 },
  { "i8", VL_DTYPE_I64 }, { "i4", VL_DTYPE_I32 }, { "i2", VL_DTYPE_I16 },
  { "i1", VL_DTYPE_I8 },  { "u1", VL_DTYPE_U8 },  { "b1", VL_DTYPE_BOOL },
  /* bfloat16 (ml_dtypes), which numpy itself can only save as two raw bytes, as JAX does */
  { "V2", VL_DTYPE_BF16 },
};

static gboolean
read_descr (Header *h, VlTensorInfo *t, gboolean *swap)
{
  char d[32];
  if (!read_string (h, d, sizeof d))
    return FALSE;
  const char order = d[0];
  if (order != '<' && order != '>' && order != '|' && order != '=')
    return header_fail (h, "dtype '%s' is not one numpy writes", d);
  for (guint i = 0; i < G_N_ELEMENTS (descrs); i++)
    if (strcmp (d + 1, descrs[i].descr) == 0)
      {
        t->dtype = descrs[i].dtype;
        *swap = order == '>' && vl_dtype_size (t->dtype) > 1;
        return TRUE;
      }
  return header_fail (h, "dtype '%s' is not a number type vitlab reads (float16/32/64, "
                      "bfloat16, integers, bool)%s", d,
                      strcmp (d + 1, "O") == 0 ? "; an object array needs a pickle, which "
                      "vitlab never runs" : "");
}

/* The header dict: descr, fortran_order, shape, each once, nothing else. */
static gboolean
parse_header (Header *h, VlTensorInfo *t, gboolean *fortran, gboolean *swap)
{
  gboolean seen_descr = FALSE, seen_fortran = FALSE, seen_shape = FALSE;
  if (!expect_char (h, '{'))
    return FALSE;
  for (;;)
    {
      skip_space (h);
      if (h->p < h->end && *h->p == '}')
        break;
      char key[32];
      if (!read_string (h, key, sizeof key) || !expect_char (h, ':'))
        return FALSE;
      skip_space (h);
      if (strcmp (key, "descr") == 0 && !seen_descr)
        {
          if (!read_descr (h, t, swap))
            return FALSE;
          seen_descr = TRUE;
        }
      else if (strcmp (key, "fortran_order") == 0 && !seen_fortran)
        {
          if ((size_t) (h->end - h->p) >= 4 && memcmp (h->p, "True", 4) == 0)
            *fortran = TRUE, h->p += 4;
          else if ((size_t) (h->end - h->p) >= 5 && memcmp (h->p, "False", 5) == 0)
            *fortran = FALSE, h->p += 5;
          else
            return header_fail (h, "fortran_order is neither True nor False");
          seen_fortran = TRUE;
        }
      else if (strcmp (key, "shape") == 0 && !seen_shape)
        {
          if (!read_shape (h, t))
            return FALSE;
          seen_shape = TRUE;
        }
      else
        return header_fail (h, "key '%s' is not one numpy writes, or comes twice", key);
      skip_space (h);
      if (h->p < h->end && *h->p == ',')
        h->p++;
    }
  if (!seen_descr || !seen_fortran || !seen_shape)
    return header_fail (h, "lacks %s", !seen_descr ? "descr" : !seen_fortran ? "fortran_order"
                                                             : "shape");
  return TRUE;
}

static void
byteswap (guint8 *data, size_t es, int64_t n)
{
  for (int64_t i = 0; i < n; i++)
    for (size_t a = 0, b = es - 1; a < b; a++, b--)
      {
        guint8 *e = data + (size_t) i * es;
        const guint8 tmp = e[a];
        e[a] = e[b];
        e[b] = tmp;
      }
}

/* Fortran order (the first index fastest) to C order (the last fastest). */
static void
to_c_order (const guint8 *src, guint8 *dst, size_t es, const VlTensorInfo *t)
{
  int64_t idx[VL_MAX_DIMS] = { 0 };
  for (int64_t c = 0; c < t->numel; c++)
    {
      int64_t f = 0, stride = 1;
      for (int d = 0; d < t->ndim; d++)
        {
          f += idx[d] * stride;
          stride *= t->shape[d];
        }
      memcpy (dst + (size_t) c * es, src + (size_t) f * es, es);
      for (int d = t->ndim - 1; d >= 0; d--)
        {
          if (++idx[d] < t->shape[d])
            break;
          idx[d] = 0;
        }
    }
}

/* One NAME.npy entry's bytes (len of them, owned by the caller) as the tensor `t`, its data
 * pointing into `bytes` (or into a reordered copy appended to `owned`). */
static gboolean
parse_npy (const char *path, const char *entry, guint8 *bytes, guint64 len, VlTensorInfo *t,
           GPtrArray *owned, GError **error)
{
  Header h = { path, entry, NULL, NULL, error };
  if (len < 10 || memcmp (bytes, "\x93NUMPY", 6) != 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: %s: not an .npy array (no \\x93NUMPY "
                   "magic)", path, entry);
      return FALSE;
    }
  const guint major = bytes[6];
  if (major < 1 || major > 3)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: %s: .npy format version %u.%u is not "
                   "one vitlab reads (1.0 to 3.0)", path, entry, major, bytes[7]);
      return FALSE;
    }
  const guint64 at = major == 1 ? 10 : 12;
  guint64 hlen = bytes[8] | (guint64) bytes[9] << 8;
  if (major > 1)
    hlen = len < 12 ? G_MAXUINT64 : bytes[8] | (guint64) bytes[9] << 8 |
                                    (guint64) bytes[10] << 16 | (guint64) bytes[11] << 24;
  if (hlen > NPY_HEADER_MAX || hlen > len - MIN (at, len))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: %s: its .npy header length %"
                   G_GUINT64_FORMAT " runs past the entry's %" G_GUINT64_FORMAT " bytes",
                   path, entry, hlen, len);
      return FALSE;
    }
  h.p = (const char *) bytes + at;
  h.end = h.p + hlen;
  gboolean fortran = FALSE, swap = FALSE;
  if (!parse_header (&h, t, &fortran, &swap))
    return FALSE;
  const size_t es = vl_dtype_size (t->dtype);
  const guint64 data_len = len - at - hlen;
  if ((guint64) t->numel > data_len / es || (guint64) t->numel * es != data_len)
    {
      g_autofree char *shape = vl_shape_to_string (t->ndim, t->shape);
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: %s: shape %s of %s needs %"
                   G_GUINT64_FORMAT " bytes, the entry holds %" G_GUINT64_FORMAT
                   " (truncated, or a lying header)", path, entry, shape,
                   vl_dtype_name (t->dtype), (guint64) t->numel * es, data_len);
      return FALSE;
    }
  guint8 *data = bytes + at + hlen;
  t->nbytes = (size_t) data_len;
  if (swap)
    byteswap (data, es, t->numel);
  if (fortran && t->ndim > 1)
    {
      guint8 *c = g_malloc (MAX (t->nbytes, 1));
      to_c_order (data, c, es, t);
      g_ptr_array_add (owned, c);
      data = c;
    }
  t->data = data;
  return TRUE;
}

/* Every NAME.npy of the archive into `raw` (name without .npy), the bytes read capped against
 * the file's size (np.savez stores them; np.savez_compressed deflates weights only a little). */
static gboolean
read_arrays (const char *path, zip_t *za, size_t size, VlTensorTable *raw, GError **error)
{
  const guint64 budget = vl_zip_budget (size);
  guint64 spent = 0;
  const zip_int64_t n = zip_get_num_entries (za, 0);
  for (zip_int64_t e = 0; e < n; e++)
    {
      const char *name = zip_get_name (za, (zip_uint64_t) e, 0);
      if (name == NULL || !g_str_has_suffix (name, ".npy"))
        continue;
      zip_stat_t st;
      if (zip_stat_index (za, (zip_uint64_t) e, 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE))
        {
          g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: %s: %s", path, name,
                       zip_strerror (za));
          return FALSE;
        }
      if (st.size > budget - spent)
        {
          g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: %s claims %" G_GUINT64_FORMAT
                       " bytes, beyond what this archive's size allows", path, name,
                       (guint64) st.size);
          return FALSE;
        }
      guint8 *bytes = vl_zip_read_entry (za, (zip_uint64_t) e, st.size, path, name, error);
      if (bytes == NULL)
        return FALSE;
      spent += st.size;
      g_ptr_array_add (raw->owned, bytes);
      VlTensorInfo t = { 0 };
      if (!parse_npy (path, name, bytes, st.size, &t, raw->owned, error))
        return FALSE;
      g_autofree char *key = g_strndup (name, strlen (name) - strlen (".npy"));
      vl_tensor_table_add (raw, key, &t);
    }
  return TRUE;
}

gboolean
vl_npz_read (const char *path, zip_t *za, size_t size, VlTensorTable *table,
             GHashTable *metadata, GError **error)
{
  VlTensorTable raw = { g_array_new (FALSE, TRUE, sizeof (VlTensorInfo)),
                        g_string_chunk_new (4096), g_hash_table_new (g_str_hash, g_str_equal),
                        g_ptr_array_new_with_free_func (g_free) };
  gboolean ok = read_arrays (path, za, size, &raw, error) &&
                vl_jax_vit_translate (path, &raw, table, metadata, error);
  g_array_unref (raw.tensors);
  g_string_chunk_free (raw.names);
  g_hash_table_unref (raw.index);
  g_ptr_array_unref (raw.owned);
  return ok;
}
