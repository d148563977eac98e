/* vl-safetensors.c: validated, memory-mapped safetensors reader and an atomic writer.
 *
 * File layout: u64 little-endian header length N, N bytes of JSON, then the data area.
 * The JSON maps tensor names to {"dtype", "shape", "data_offsets": [begin, end]} with
 * offsets relative to the data area, plus an optional "__metadata__" string map.
 *
 * The reader trusts nothing: every number in the header is checked against the file
 * before vl_safetensors_open returns, so a tensor handed out always lies inside the
 * mapping. Tensor data are read in host byte order, which must be little-endian. */
#include "vl-safetensors.h"
#include "vl-npz.h"
#include "vl-torch-ckpt.h"
#include "vl-zip.h"
#include "vl-atomic.h"

#include <errno.h>
#include <fcntl.h>
#include <json-glib/json-glib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

G_STATIC_ASSERT (G_BYTE_ORDER == G_LITTLE_ENDIAN);
G_STATIC_ASSERT (sizeof (float) == 4 && sizeof (double) == 8);

#define HEADER_MAX      (100u * 1024 * 1024)  /* a larger JSON header is not a model */
#define METADATA_KEY    "__metadata__"
#define MAX_NAMES_LISTED 10

struct _VlSafetensors {
  char         *path;
  guint8       *map;        /* the whole file, read-only */
  size_t        map_size;
  VlTensorInfo *tensors;    /* (n_tensors) in header order */
  guint         n_tensors;
  GStringChunk *names;      /* storage for tensors[i].name */
  GHashTable   *index;      /* name -> GUINT_TO_POINTER (i + 1) */
  GHashTable   *metadata;   /* string -> string, or NULL */
  GPtrArray    *owned;      /* a PyTorch checkpoint's tensor bytes (then map is NULL), or NULL */
};

gboolean
vl_checkpoint_has_extension (const char *name)
{
  static const char *const exts[] = { ".safetensors", ".pth", ".pt", ".bin", ".ckpt", ".npz" };
  const char *dot = name ? strrchr (name, '.') : NULL;
  if (dot == NULL)
    return FALSE;
  for (guint k = 0; k < G_N_ELEMENTS (exts); k++)
    if (g_ascii_strcasecmp (dot, exts[k]) == 0)
      return TRUE;
  return FALSE;
}

static gboolean
dtype_from_name (const char *name, VlDtype *out)
{
  for (int i = 0; i <= VL_DTYPE_BOOL; i++)
    if (strcmp (name, vl_dtype_name ((VlDtype) i)) == 0)
      {
        *out = (VlDtype) i;
        return TRUE;
      }
  return FALSE;
}

/* Sets `error` to "PATH: message". Always returns FALSE. */
static gboolean G_GNUC_PRINTF (4, 5)
set_error (GError **error, VlErrorCode code, const char *path, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, VL_ERROR, code, "%s: %s", path, msg);
  g_free (msg);
  return FALSE;
}

/* ---- reader ---------------------------------------------------------------------- */

void
vl_safetensors_free (VlSafetensors *st)
{
  if (st == NULL)
    return;
  if (st->map != NULL)
    munmap (st->map, st->map_size);
  g_free (st->tensors);
  if (st->names)
    g_string_chunk_free (st->names);
  if (st->index)
    g_hash_table_unref (st->index);
  if (st->metadata)
    g_hash_table_unref (st->metadata);
  if (st->owned)
    g_ptr_array_unref (st->owned);
  g_free (st->path);
  g_free (st);
}

/* json-glib 1.6 parses integer literals with strtoull and a cast, so 2^63 comes back as
 * INT64_MIN and "-18446744073709551615" as 1. No valid shape or offset reaches 2^63, so
 * reject every integer literal of that magnitude before parsing. Quoted text is skipped
 * (json-glib also accepts single quotes). Returns the offending literal or NULL. */
static char *
find_oversized_integer (const char *text, size_t len)
{
  static const char max[] = "9223372036854775807";
  char quote = 0;
  for (size_t i = 0; i < len; i++)
    {
      char c = text[i];
      if (quote)
        {
          if (c == '\\')
            i++;
          else if (c == quote)
            quote = 0;
          continue;
        }
      if (c == '"' || c == '\'')
        {
          quote = c;
          continue;
        }
      if (c != '-' && !g_ascii_isdigit (c))
        continue;
      size_t start = i, j = i + (c == '-');
      while (j < len && text[j] == '0')
        j++;
      size_t first = j;
      while (j < len && g_ascii_isdigit (text[j]))
        j++;
      size_t ndigits = j - first;
      gboolean is_int = !(j < len && (text[j] == '.' || text[j] == 'e' || text[j] == 'E'));
      while (j < len && (g_ascii_isdigit (text[j]) || strchr (".eE+-", text[j]) != NULL))
        j++;
      if (is_int && (ndigits > sizeof max - 1
                     || (ndigits == sizeof max - 1 && memcmp (text + first, max, ndigits) > 0)))
        return g_strndup (text + start, MIN (j - start, 40));
      i = j - 1;
    }
  return NULL;
}

/* An integer JSON value, or FALSE. */
static gboolean
node_get_int (JsonNode *node, int64_t *out)
{
  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_INT64)
    return FALSE;
  *out = json_node_get_int (node);
  return TRUE;
}

static const char *
node_describe (JsonNode *node)
{
  if (node == NULL)
    return "missing";
  if (JSON_NODE_HOLDS_VALUE (node))
    {
      GType t = json_node_get_value_type (node);
      return t == G_TYPE_STRING ? "a string" : t == G_TYPE_DOUBLE ? "a fraction"
           : t == G_TYPE_BOOLEAN ? "a boolean" : "a number";
    }
  return JSON_NODE_HOLDS_OBJECT (node) ? "an object" : JSON_NODE_HOLDS_ARRAY (node) ? "an array"
       : "null";
}

/* Fills t (except data) from one header entry; *begin and *end receive data_offsets. */
static gboolean
parse_entry (const char *path, const char *name, JsonNode *node, size_t data_size,
             VlTensorInfo *t, uint64_t *begin, uint64_t *end, GError **error)
{
  if (!JSON_NODE_HOLDS_OBJECT (node))
    return set_error (error, VL_ERROR_FORMAT, path, "tensor %s: entry is %s, not an object",
                      name, node_describe (node));
  JsonObject *obj = json_node_get_object (node);

  JsonNode *dn = json_object_get_member (obj, "dtype");
  if (dn == NULL)
    return set_error (error, VL_ERROR_FORMAT, path, "tensor %s: has no 'dtype'", name);
  if (!JSON_NODE_HOLDS_VALUE (dn) || json_node_get_value_type (dn) != G_TYPE_STRING)
    return set_error (error, VL_ERROR_FORMAT, path, "tensor %s: 'dtype' is %s, not a string",
                      name, node_describe (dn));
  const char *dname = json_node_get_string (dn);
  if (!dtype_from_name (dname, &t->dtype))
    return set_error (error, VL_ERROR_FORMAT, path,
                      "tensor %s: unknown dtype '%s' (supported: F32 F16 BF16 F64 I64 I32 I16 I8 U8 BOOL)",
                      name, dname);

  JsonNode *sn = json_object_get_member (obj, "shape");
  if (sn == NULL)
    return set_error (error, VL_ERROR_FORMAT, path, "tensor %s: has no 'shape'", name);
  if (!JSON_NODE_HOLDS_ARRAY (sn))
    return set_error (error, VL_ERROR_FORMAT, path, "tensor %s: 'shape' is %s, not an array",
                      name, node_describe (sn));
  JsonArray *sa = json_node_get_array (sn);
  guint ndim = json_array_get_length (sa);
  if (ndim > VL_MAX_DIMS)
    return set_error (error, VL_ERROR_FORMAT, path,
                      "tensor %s: shape has %u dimensions, more than the %d supported",
                      name, ndim, VL_MAX_DIMS);
  t->ndim = (int) ndim;
  uint64_t numel = 1;
  gboolean overflow = FALSE;
  for (guint i = 0; i < ndim; i++)
    {
      JsonNode *e = json_array_get_element (sa, i);
      if (!node_get_int (e, &t->shape[i]))
        return set_error (error, VL_ERROR_FORMAT, path,
                          "tensor %s: shape entry %u is %s, not an integer",
                          name, i, node_describe (e));
      if (t->shape[i] < 0)
        return set_error (error, VL_ERROR_FORMAT, path,
                          "tensor %s: shape entry %u is negative (%" G_GINT64_FORMAT ")",
                          name, i, t->shape[i]);
      overflow |= __builtin_mul_overflow (numel, (uint64_t) t->shape[i], &numel);
    }
  uint64_t nbytes = 0;
  size_t dsize = vl_dtype_size (t->dtype);
  if (overflow || numel > (uint64_t) INT64_MAX)
    {
      g_autofree char *s = vl_shape_to_string (t->ndim, t->shape);
      return set_error (error, VL_ERROR_FORMAT, path,
                        "tensor %s: shape %s has too many elements (element count overflows 63 bits)",
                        name, s);
    }
  if (__builtin_mul_overflow (numel, dsize, &nbytes) || nbytes > G_MAXSIZE)
    {
      g_autofree char *s = vl_shape_to_string (t->ndim, t->shape);
      return set_error (error, VL_ERROR_FORMAT, path,
                        "tensor %s: shape %s of %s is too large (byte size overflows)",
                        name, s, dname);
    }
  t->numel = (int64_t) numel;

  JsonNode *on = json_object_get_member (obj, "data_offsets");
  if (on == NULL)
    return set_error (error, VL_ERROR_FORMAT, path, "tensor %s: has no 'data_offsets'", name);
  if (!JSON_NODE_HOLDS_ARRAY (on))
    return set_error (error, VL_ERROR_FORMAT, path,
                      "tensor %s: 'data_offsets' is %s, not an array [begin,end]",
                      name, node_describe (on));
  JsonArray *oa = json_node_get_array (on);
  if (json_array_get_length (oa) != 2)
    return set_error (error, VL_ERROR_FORMAT, path,
                      "tensor %s: 'data_offsets' has %u entries, not 2 [begin,end]",
                      name, json_array_get_length (oa));
  int64_t b, e;
  if (!node_get_int (json_array_get_element (oa, 0), &b)
      || !node_get_int (json_array_get_element (oa, 1), &e))
    return set_error (error, VL_ERROR_FORMAT, path,
                      "tensor %s: 'data_offsets' must hold two integers", name);
  if (b < 0 || e < 0)
    return set_error (error, VL_ERROR_FORMAT, path,
                      "tensor %s: data_offsets [%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT "] is negative",
                      name, b, e);
  if (b > e)
    return set_error (error, VL_ERROR_FORMAT, path,
                      "tensor %s: data_offsets [%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT "]: begin is after end",
                      name, b, e);
  if ((uint64_t) e > data_size)
    return set_error (error, VL_ERROR_FORMAT, path,
                      "tensor %s: data_offsets [%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT "] end beyond "
                      "the data area of %" G_GSIZE_FORMAT " bytes (file truncated?)",
                      name, b, e, data_size);
  if (nbytes != (uint64_t) (e - b))
    {
      g_autofree char *s = vl_shape_to_string (t->ndim, t->shape);
      return set_error (error, VL_ERROR_FORMAT, path,
                        "tensor %s: shape %s (%" G_GINT64_FORMAT " elements of %s = %" G_GUINT64_FORMAT
                        " bytes) does not match its data_offsets span of %" G_GINT64_FORMAT " bytes",
                        name, s, t->numel, dname, nbytes, e - b);
    }
  t->nbytes = (size_t) nbytes;
  *begin = (uint64_t) b;
  *end = (uint64_t) e;
  return TRUE;
}

static gboolean
parse_metadata (VlSafetensors *st, JsonNode *node, GError **error)
{
  if (!JSON_NODE_HOLDS_OBJECT (node))
    return set_error (error, VL_ERROR_FORMAT, st->path, "'%s' is %s, not an object",
                      METADATA_KEY, node_describe (node));
  JsonObject *obj = json_node_get_object (node);
  st->metadata = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  g_autoptr(GList) keys = json_object_get_members (obj);
  for (GList *l = keys; l != NULL; l = l->next)
    {
      JsonNode *v = json_object_get_member (obj, l->data);
      if (!JSON_NODE_HOLDS_VALUE (v) || json_node_get_value_type (v) != G_TYPE_STRING)
        return set_error (error, VL_ERROR_FORMAT, st->path, "'%s' entry '%s' is %s, not a string",
                          METADATA_KEY, (const char *) l->data, node_describe (v));
      g_hash_table_insert (st->metadata, g_strdup (l->data), g_strdup (json_node_get_string (v)));
    }
  return TRUE;
}

typedef struct {
  uint64_t begin, end;
  guint    index;
} Span;

static int
span_compare (const void *a, const void *b)
{
  const Span *x = a, *y = b;
  if (x->begin != y->begin)
    return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end)
    return x->end < y->end ? -1 : 1;
  return 0;
}

/* Header JSON (not NUL-terminated) -> tensors, metadata. data_size is the data area's. */
static gboolean
parse_header (VlSafetensors *st, const char *json, size_t len, size_t data_size, GError **error)
{
  const char *path = st->path;
  g_autofree char *big = find_oversized_integer (json, len);
  if (big != NULL)
    return set_error (error, VL_ERROR_FORMAT, path,
                      "header holds the integer %s, which is out of range (more than 2^63-1)", big);

  g_autoptr(JsonParser) parser = json_parser_new_immutable ();
  g_autoptr(GError) jerr = NULL;
  if (!json_parser_load_from_data (parser, json, (gssize) len, &jerr))
    return set_error (error, VL_ERROR_FORMAT, path,
                      "not a safetensors file: header is not valid JSON (%s)", jerr->message);
  JsonNode *root = json_parser_get_root (parser);
  if (root == NULL)
    return set_error (error, VL_ERROR_FORMAT, path,
                      "not a safetensors file: header is empty, not a JSON object");
  if (!JSON_NODE_HOLDS_OBJECT (root))
    return set_error (error, VL_ERROR_FORMAT, path,
                      "not a safetensors file: header root is %s, not a JSON object",
                      node_describe (root));
  JsonObject *obj = json_node_get_object (root);

  /* json-glib keeps members in insertion order (a repeated key keeps its first place). */
  g_autoptr(GList) members = json_object_get_members (obj);
  guint n = g_list_length (members);
  st->tensors = g_new0 (VlTensorInfo, MAX (n, 1));
  st->names = g_string_chunk_new (4096);
  st->index = g_hash_table_new (g_str_hash, g_str_equal);
  g_autofree Span *spans = g_new (Span, MAX (n, 1));
  const guint8 *data = (const guint8 *) json + len;   /* the data area follows the header */

  for (GList *l = members; l != NULL; l = l->next)
    {
      const char *name = l->data;
      JsonNode *node = json_object_get_member (obj, name);
      if (strcmp (name, METADATA_KEY) == 0)
        {
          if (!parse_metadata (st, node, error))
            return FALSE;
          continue;
        }
      guint i = st->n_tensors;
      VlTensorInfo *t = &st->tensors[i];
      if (!parse_entry (path, name, node, data_size, t, &spans[i].begin, &spans[i].end, error))
        return FALSE;
      t->name = g_string_chunk_insert (st->names, name);
      t->data = data + spans[i].begin;
      spans[i].index = i;
      g_hash_table_insert (st->index, (gpointer) t->name, GUINT_TO_POINTER (i + 1));
      st->n_tensors++;
    }

  /* No two non-empty byte ranges may overlap; empty tensors may sit anywhere. */
  qsort (spans, st->n_tensors, sizeof *spans, span_compare);
  const Span *prev = NULL;
  for (guint k = 0; k < st->n_tensors; k++)
    {
      const Span *s = &spans[k];
      if (s->begin == s->end)
        continue;
      if (prev != NULL && s->begin < prev->end)
        return set_error (error, VL_ERROR_FORMAT, path,
                          "tensors %s (bytes [%" G_GUINT64_FORMAT ",%" G_GUINT64_FORMAT "]) and %s "
                          "(bytes [%" G_GUINT64_FORMAT ",%" G_GUINT64_FORMAT "]) overlap",
                          st->tensors[prev->index].name, prev->begin, prev->end,
                          st->tensors[s->index].name, s->begin, s->end);
      prev = s;   /* sorted and stopping at the first overlap: prev has the largest end */
    }
  return TRUE;
}

/* A zip archive: a PyTorch checkpoint (NAME/data.pkl) or a NumPy .npz (NAME.npy entries); its
 * tensors are copied out of the archive (the mapping is released once they are), listed and
 * indexed as a safetensors header's would be. */
static VlSafetensors *
open_zip (VlSafetensors *st_in, GError **error)
{
  g_autoptr(VlSafetensors) st = st_in;
  zip_t *za = vl_zip_open (st->path, st->map, st->map_size, "a PyTorch checkpoint or a NumPy "
                           ".npz", error);
  if (za == NULL)
    return NULL;
  GArray *tensors = g_array_new (FALSE, TRUE, sizeof (VlTensorInfo));
  st->names = g_string_chunk_new (4096);
  st->owned = g_ptr_array_new_with_free_func (g_free);
  st->index = g_hash_table_new (g_str_hash, g_str_equal);
  VlTensorTable table = { tensors, st->names, st->index, st->owned };
  gboolean ok;
  if (vl_zip_has_entry (za, "data.pkl"))
    ok = vl_torch_ckpt_read (st->path, za, st->map_size, &table, error);
  else if (!vl_zip_has_entry (za, ".npy"))
    {
      set_error (error, VL_ERROR_FORMAT, st->path, "a zip archive with neither NAME/data.pkl "
                 "(a PyTorch checkpoint) nor NAME.npy arrays (a NumPy .npz)");
      ok = FALSE;
    }
  else
    {
      st->metadata = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
      ok = vl_npz_read (st->path, za, st->map_size, &table, st->metadata, error);
    }
  zip_discard (za);
  st->n_tensors = tensors->len;
  st->tensors = (VlTensorInfo *) (void *) g_array_free (tensors, FALSE);
  munmap (st->map, st->map_size);
  st->map = NULL;
  return ok ? g_steal_pointer (&st) : NULL;
}

VlSafetensors *
vl_safetensors_open (const char *path, GError **error)
{
  g_return_val_if_fail (path != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  /* O_NONBLOCK: a FIFO named by mistake must not hang open(); no effect on files. */
  int fd = open (path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    {
      int errsv = errno;
      set_error (error, VL_ERROR_IO, path, "cannot open: %s", g_strerror (errsv));
      return NULL;
    }
  struct stat sb;
  if (fstat (fd, &sb) != 0)
    {
      int errsv = errno;
      close (fd);
      set_error (error, VL_ERROR_IO, path, "cannot stat: %s", g_strerror (errsv));
      return NULL;
    }
  if (!S_ISREG (sb.st_mode))
    {
      close (fd);
      set_error (error, VL_ERROR_IO, path, "not a regular file%s",
                 S_ISDIR (sb.st_mode) ? " (it is a directory)" : "");
      return NULL;
    }
  if (sb.st_size < 8)
    {
      close (fd);
      set_error (error, VL_ERROR_FORMAT, path,
                 "not a safetensors file: %s (%" G_GINT64_FORMAT " bytes, less than the 8-byte header length)",
                 sb.st_size == 0 ? "file is empty" : "file is too short", (gint64) sb.st_size);
      return NULL;
    }
  if ((guint64) sb.st_size > G_MAXSIZE)
    {
      close (fd);
      set_error (error, VL_ERROR_IO, path, "file too large to map (%" G_GINT64_FORMAT " bytes)",
                 (gint64) sb.st_size);
      return NULL;
    }
  size_t size = (size_t) sb.st_size;
  void *map = mmap (NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
  int errsv = errno;
  close (fd);
  if (map == MAP_FAILED)
    {
      set_error (error, VL_ERROR_IO, path, "cannot map %" G_GSIZE_FORMAT " bytes: %s",
                 size, g_strerror (errsv));
      return NULL;
    }

  g_autoptr(VlSafetensors) st = g_new0 (VlSafetensors, 1);
  st->path = g_strdup (path);
  st->map = map;
  st->map_size = size;

  if (vl_torch_ckpt_is_legacy (st->map, size))
    {
      set_error (error, VL_ERROR_FORMAT, path,
                 "a PyTorch checkpoint in the legacy format (PyTorch before 1.6, or "
                 "_use_new_zipfile_serialization=False); load and save it again with a current "
                 "PyTorch (torch.save (torch.load (F), F2)), or convert it to safetensors");
      return NULL;
    }
  if (vl_zip_is_zip (st->map, size))
    return open_zip (g_steal_pointer (&st), error);

  guint64 n;
  memcpy (&n, st->map, 8);
  n = GUINT64_FROM_LE (n);
  if (n > size - 8)
    {
      set_error (error, VL_ERROR_FORMAT, path,
                 "header length %" G_GUINT64_FORMAT " exceeds the file size %" G_GSIZE_FORMAT
                 " (truncated, or not a safetensors file)", n, size);
      return NULL;
    }
  if (n > HEADER_MAX)
    {
      set_error (error, VL_ERROR_FORMAT, path,
                 "header length %" G_GUINT64_FORMAT " is larger than the %u bytes allowed",
                 n, HEADER_MAX);
      return NULL;
    }
  if (!parse_header (st, (const char *) st->map + 8, (size_t) n, size - 8 - (size_t) n, error))
    return NULL;
  return g_steal_pointer (&st);
}

const char *
vl_safetensors_path (VlSafetensors *st)
{
  g_return_val_if_fail (st != NULL, NULL);
  return st->path;
}

guint
vl_safetensors_n_tensors (VlSafetensors *st)
{
  g_return_val_if_fail (st != NULL, 0);
  return st->n_tensors;
}

const VlTensorInfo *
vl_safetensors_get (VlSafetensors *st, guint index)
{
  g_return_val_if_fail (st != NULL, NULL);
  g_return_val_if_fail (index < st->n_tensors, NULL);
  return &st->tensors[index];
}

const VlTensorInfo *
vl_safetensors_lookup (VlSafetensors *st, const char *name)
{
  g_return_val_if_fail (st != NULL, NULL);
  g_return_val_if_fail (name != NULL, NULL);
  guint i = GPOINTER_TO_UINT (g_hash_table_lookup (st->index, name));
  return i ? &st->tensors[i - 1] : NULL;
}

GHashTable *
vl_safetensors_metadata (VlSafetensors *st)
{
  g_return_val_if_fail (st != NULL, NULL);
  return st->metadata;
}

float *
vl_safetensors_read_f32 (VlSafetensors *st, const char *name, const VlTensorInfo **info_out,
                         GError **error)
{
  g_return_val_if_fail (st != NULL, NULL);
  g_return_val_if_fail (name != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  const VlTensorInfo *t = vl_safetensors_lookup (st, name);
  if (t == NULL)
    {
      GString *have = g_string_new (NULL);
      for (guint i = 0; i < st->n_tensors && i < MAX_NAMES_LISTED; i++)
        g_string_append_printf (have, "%s%s", i ? ", " : "", st->tensors[i].name);
      if (st->n_tensors > MAX_NAMES_LISTED)
        g_string_append_printf (have, " and %u more", st->n_tensors - MAX_NAMES_LISTED);
      set_error (error, VL_ERROR_MISSING, st->path, "no tensor named '%s' (%s%s)", name,
                 st->n_tensors ? "it has: " : "it holds no tensors", have->str);
      g_string_free (have, TRUE);
      return NULL;
    }
  /* Every supported dtype converts; at least one float so an empty tensor is not NULL. */
  float *out = g_new (float, MAX (t->numel, 1));
  vl_tensor_to_f32 (t, out);
  if (info_out)
    *info_out = t;
  return out;
}

/* ---- writer ---------------------------------------------------------------------- */

typedef struct {
  char        *name;
  int          ndim;
  int64_t     *shape;   /* (ndim) */
  const void  *data;    /* referenced, not copied */
  VlDtype      dtype;   /* F32 or I64 */
} WriterTensor;

struct _VlSafetensorsWriter {
  GArray    *tensors;   /* WriterTensor, in the order added */
  GPtrArray *meta;      /* key, value, key, value, ... in the order added */
};

static void
writer_tensor_clear (gpointer p)
{
  WriterTensor *t = p;
  g_free (t->name);
  g_free (t->shape);
}

VlSafetensorsWriter *
vl_safetensors_writer_new (void)
{
  VlSafetensorsWriter *w = g_new0 (VlSafetensorsWriter, 1);
  w->tensors = g_array_new (FALSE, TRUE, sizeof (WriterTensor));
  g_array_set_clear_func (w->tensors, writer_tensor_clear);
  w->meta = g_ptr_array_new_with_free_func (g_free);
  return w;
}

void
vl_safetensors_writer_free (VlSafetensorsWriter *w)
{
  if (w == NULL)
    return;
  g_array_unref (w->tensors);
  g_ptr_array_unref (w->meta);
  g_free (w);
}

/* Shape problems (too many dims, negative sizes, NULL data) are reported by write(),
 * naming the tensor, like duplicate names. */
void
vl_safetensors_writer_add_f32 (VlSafetensorsWriter *w, const char *name, int ndim,
                               const int64_t *shape, const float *data)
{
  g_return_if_fail (w != NULL);
  g_return_if_fail (name != NULL);
  g_return_if_fail (ndim >= 0);
  g_return_if_fail (ndim == 0 || shape != NULL);
  WriterTensor t = {
    .name = g_strdup (name),
    .ndim = ndim,
    .shape = g_memdup2 (shape, sizeof (int64_t) * (size_t) ndim),
    .data = data,
    .dtype = VL_DTYPE_F32,
  };
  g_array_append_val (w->tensors, t);
}

void
vl_safetensors_writer_add_i64 (VlSafetensorsWriter *w, const char *name, int ndim,
                               const int64_t *shape, const int64_t *data)
{
  g_return_if_fail (w != NULL);
  g_return_if_fail (name != NULL);
  g_return_if_fail (ndim >= 0);
  g_return_if_fail (ndim == 0 || shape != NULL);
  WriterTensor t = {
    .name = g_strdup (name),
    .ndim = ndim,
    .shape = g_memdup2 (shape, sizeof (int64_t) * (size_t) ndim),
    .data = data,
    .dtype = VL_DTYPE_I64,
  };
  g_array_append_val (w->tensors, t);
}

void
vl_safetensors_writer_add_metadata (VlSafetensorsWriter *w, const char *key, const char *value)
{
  g_return_if_fail (w != NULL);
  g_return_if_fail (key != NULL && value != NULL);
  for (guint i = 0; i < w->meta->len; i += 2)
    if (strcmp (w->meta->pdata[i], key) == 0)
      {
        g_free (w->meta->pdata[i + 1]);
        w->meta->pdata[i + 1] = g_strdup (value);
        return;
      }
  g_ptr_array_add (w->meta, g_strdup (key));
  g_ptr_array_add (w->meta, g_strdup (value));
}

/* Checks every tensor; fills nbytes[i]. */
static gboolean
writer_validate (VlSafetensorsWriter *w, const char *path, size_t *nbytes, GError **error)
{
  g_autoptr(GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
  uint64_t total = 0;
  for (guint i = 0; i < w->meta->len; i++)
    if (!g_utf8_validate (w->meta->pdata[i], -1, NULL))
      return set_error (error, VL_ERROR_INVALID, path, "metadata %s '%s' is not valid UTF-8",
                        i % 2 ? "value for" : "key", (const char *) w->meta->pdata[i - i % 2]);
  for (guint i = 0; i < w->tensors->len; i++)
    {
      const WriterTensor *t = &g_array_index (w->tensors, WriterTensor, i);
      if (!g_utf8_validate (t->name, -1, NULL))
        return set_error (error, VL_ERROR_INVALID, path, "tensor name '%s' is not valid UTF-8", t->name);
      if (strcmp (t->name, METADATA_KEY) == 0)
        return set_error (error, VL_ERROR_INVALID, path, "a tensor cannot be named '%s'", METADATA_KEY);
      if (!g_hash_table_add (seen, t->name))
        return set_error (error, VL_ERROR_INVALID, path, "tensor %s: added twice (duplicate name)",
                          t->name);
      if (t->ndim > VL_MAX_DIMS)
        return set_error (error, VL_ERROR_INVALID, path,
                          "tensor %s: %d dimensions, more than the %d supported",
                          t->name, t->ndim, VL_MAX_DIMS);
      uint64_t numel = 1;
      gboolean overflow = FALSE;
      for (int d = 0; d < t->ndim; d++)
        {
          if (t->shape[d] < 0)
            return set_error (error, VL_ERROR_INVALID, path,
                              "tensor %s: shape entry %d is negative (%" G_GINT64_FORMAT ")",
                              t->name, d, t->shape[d]);
          overflow |= __builtin_mul_overflow (numel, (uint64_t) t->shape[d], &numel);
        }
      uint64_t bytes;
      if (overflow || numel > (uint64_t) INT64_MAX ||
          __builtin_mul_overflow (numel, (uint64_t) vl_dtype_size (t->dtype), &bytes)
          || bytes > G_MAXSIZE || __builtin_add_overflow (total, bytes, &total) || total > INT64_MAX)
        {
          g_autofree char *s = vl_shape_to_string (t->ndim, t->shape);
          return set_error (error, VL_ERROR_INVALID, path,
                            "tensor %s: shape %s is too large (size overflows)", t->name, s);
        }
      if (bytes > 0 && t->data == NULL)
        return set_error (error, VL_ERROR_INVALID, path, "tensor %s: data is NULL", t->name);
      nbytes[i] = (size_t) bytes;
    }
  return TRUE;
}

/* The JSON header padded with spaces so that the data area starts 8-byte aligned,
 * preceded by its length. */
static GBytes *
writer_build_header (VlSafetensorsWriter *w, const size_t *nbytes)
{
  g_autoptr(JsonBuilder) b = json_builder_new_immutable ();
  json_builder_begin_object (b);
  if (w->meta->len)
    {
      json_builder_set_member_name (b, METADATA_KEY);
      json_builder_begin_object (b);
      for (guint i = 0; i < w->meta->len; i += 2)
        {
          json_builder_set_member_name (b, w->meta->pdata[i]);
          json_builder_add_string_value (b, w->meta->pdata[i + 1]);
        }
      json_builder_end_object (b);
    }
  uint64_t offset = 0;
  for (guint i = 0; i < w->tensors->len; i++)
    {
      const WriterTensor *t = &g_array_index (w->tensors, WriterTensor, i);
      json_builder_set_member_name (b, t->name);
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "dtype");
      json_builder_add_string_value (b, vl_dtype_name (t->dtype));
      json_builder_set_member_name (b, "shape");
      json_builder_begin_array (b);
      for (int d = 0; d < t->ndim; d++)
        json_builder_add_int_value (b, t->shape[d]);
      json_builder_end_array (b);
      json_builder_set_member_name (b, "data_offsets");
      json_builder_begin_array (b);
      json_builder_add_int_value (b, (gint64) offset);
      json_builder_add_int_value (b, (gint64) (offset + nbytes[i]));
      json_builder_end_array (b);
      json_builder_end_object (b);
      offset += nbytes[i];
    }
  json_builder_end_object (b);

  g_autoptr(JsonGenerator) gen = json_generator_new ();
  g_autoptr(JsonNode) root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  gsize len = 0;
  g_autofree char *json = json_generator_to_data (gen, &len);

  size_t padded = (len + 7) & ~(size_t) 7;
  guint8 *buf = g_malloc (8 + padded);
  guint64 le = GUINT64_TO_LE ((guint64) padded);
  memcpy (buf, &le, 8);
  memcpy (buf + 8, json, len);
  memset (buf + 8 + len, ' ', padded - len);
  return g_bytes_new_take (buf, 8 + padded);
}

gboolean
vl_safetensors_writer_write (VlSafetensorsWriter *w, const char *path, GError **error)
{
  g_return_val_if_fail (w != NULL, FALSE);
  g_return_val_if_fail (path != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  g_autofree size_t *nbytes = g_new0 (size_t, MAX (w->tensors->len, 1));
  if (!writer_validate (w, path, nbytes, error))
    return FALSE;
  g_autoptr(GBytes) header = writer_build_header (w, nbytes);

  /* streamed: the model's tensors are not copied into one buffer */
  VlAtomicFile *f = vl_atomic_file_new (path, error);
  if (f == NULL)
    return FALSE;
  gsize hlen;
  const void *hdata = g_bytes_get_data (header, &hlen);
  gboolean ok = vl_atomic_file_write (f, hdata, hlen, error);
  for (guint i = 0; ok && i < w->tensors->len; i++)
    if (nbytes[i] > 0)
      ok = vl_atomic_file_write (f, g_array_index (w->tensors, WriterTensor, i).data, nbytes[i],
                                 error);
  if (!ok)
    {
      vl_atomic_file_abort (f);
      return FALSE;
    }
  return vl_atomic_file_commit (f, error);
}
