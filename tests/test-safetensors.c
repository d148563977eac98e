/* test-safetensors.c: the safetensors reader and writer, on hand-made and real files. */
#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "vl-test-util.h"
#include "vl-atomic.h"

/* ---- helpers ----------------------------------------------------------------------- */

static char *
write_bytes (const char *dir, const char *name, const void *bytes, size_t len)
{
  g_autoptr(GError) error = NULL;
  char *path = g_build_filename (dir, name, NULL);
  g_file_set_contents (path, bytes, (gssize) len, &error);
  g_assert_no_error (error);
  return path;
}

/* A safetensors file: u64 LE header length, `header` as is, then `data`. */
static char *
write_st (const char *dir, const char *name, const char *header, const void *data, size_t data_len)
{
  size_t hlen = strlen (header);
  GByteArray *buf = g_byte_array_new ();
  guint64 le = GUINT64_TO_LE ((guint64) hlen);
  g_byte_array_append (buf, (const guint8 *) &le, 8);
  g_byte_array_append (buf, (const guint8 *) header, (guint) hlen);
  if (data_len)
    g_byte_array_append (buf, data, (guint) data_len);
  char *path = write_bytes (dir, name, buf->data, buf->len);
  g_byte_array_unref (buf);
  return path;
}

/* Opening `path` must fail with `code`, a message starting with the path and holding
 * every one of the NULL-terminated words. */
static void
assert_open_fails (const char *path, VlErrorCode code, ...)
{
  g_autoptr(GError) error = NULL;
  VlSafetensors *st = vl_safetensors_open (path, &error);
  g_assert_null (st);
  g_assert_error (error, VL_ERROR, (gint) code);
  g_test_message ("%s", error->message);
  g_assert_true (g_str_has_prefix (error->message, path));
  va_list ap;
  va_start (ap, code);
  for (const char *w = va_arg (ap, const char *); w != NULL; w = va_arg (ap, const char *))
    if (strstr (error->message, w) == NULL)
      g_error ("error message \"%s\" does not contain \"%s\"", error->message, w);
  va_end (ap);
}

static guint
count_entries (const char *dir)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GDir) d = g_dir_open (dir, 0, &error);
  g_assert_no_error (error);
  guint n = 0;
  while (g_dir_read_name (d) != NULL)
    n++;
  return n;
}

static void
rm_rf (const char *dir)
{
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
  if (d == NULL)
    return;
  const char *name;
  while ((name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *p = g_build_filename (dir, name, NULL);
      if (g_file_test (p, G_FILE_TEST_IS_DIR))
        rm_rf (p);
      else
        g_unlink (p);
    }
  g_rmdir (dir);
}

static guint32
f32_bits (float f)
{
  guint32 b;
  memcpy (&b, &f, 4);
  return b;
}

static void
assert_shape (const VlTensorInfo *t, const char *want)
{
  g_autofree char *s = vl_shape_to_string (t->ndim, t->shape);
  g_assert_cmpstr (s, ==, want);
}

/* ---- small API pieces -------------------------------------------------------------- */

static void
test_shape_string (void)
{
  const int64_t s[] = { 4, 3, 32, 32 };
  g_autofree char *a = vl_shape_to_string (4, s);
  g_autofree char *b = vl_shape_to_string (0, NULL);
  const int64_t big[] = { 0, 9007199254740993 };
  g_autofree char *c = vl_shape_to_string (2, big);
  g_assert_cmpstr (a, ==, "[4,3,32,32]");
  g_assert_cmpstr (b, ==, "[]");
  g_assert_cmpstr (c, ==, "[0,9007199254740993]");
}

static void
test_dtypes (void)
{
  static const struct { VlDtype d; const char *name; size_t size; } want[] = {
    { VL_DTYPE_F32, "F32", 4 }, { VL_DTYPE_F16, "F16", 2 }, { VL_DTYPE_BF16, "BF16", 2 },
    { VL_DTYPE_F64, "F64", 8 }, { VL_DTYPE_I64, "I64", 8 }, { VL_DTYPE_I32, "I32", 4 },
    { VL_DTYPE_I16, "I16", 2 }, { VL_DTYPE_I8, "I8", 1 }, { VL_DTYPE_U8, "U8", 1 },
    { VL_DTYPE_BOOL, "BOOL", 1 },
  };
  for (guint i = 0; i < G_N_ELEMENTS (want); i++)
    {
      g_assert_cmpstr (vl_dtype_name (want[i].d), ==, want[i].name);
      g_assert_cmpuint (vl_dtype_size (want[i].d), ==, want[i].size);
    }
}

/* ---- writer -> reader -------------------------------------------------------------- */

static void
test_roundtrip (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *path = g_build_filename (dir, "rt.safetensors", NULL);
  const char *weird = "we\"ird\\name/\n\t\x01 é";

  float w[6] = { 1, -2, 3.5f, -0.0f, 1e-30f, 3e38f };
  float scalar = 42.25f;
  float m[4] = { NAN, INFINITY, -INFINITY, 0.1f };
  float odd[3] = { 7, 8, 9 };
  const int64_t sw[] = { 2, 3 }, sm[] = { 4 }, se[] = { 0, 5 }, so[] = { 3 };

  g_autoptr(VlSafetensorsWriter) wr = vl_safetensors_writer_new ();
  vl_safetensors_writer_add_f32 (wr, "z.weight", 2, sw, w);
  vl_safetensors_writer_add_f32 (wr, "a", 0, NULL, &scalar);
  vl_safetensors_writer_add_f32 (wr, "m", 1, sm, m);
  vl_safetensors_writer_add_f32 (wr, "empty", 2, se, NULL);
  vl_safetensors_writer_add_f32 (wr, weird, 1, so, odd);
  vl_safetensors_writer_add_metadata (wr, "format", "pt");
  vl_safetensors_writer_add_metadata (wr, "note", "quote \" and \\ and \n");
  vl_safetensors_writer_add_metadata (wr, "format", "vitlab");   /* replaces */
  g_autoptr(GError) error = NULL;
  g_assert_true (vl_safetensors_writer_write (wr, path, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (count_entries (dir), ==, 1);   /* no temporary left */

  /* Layout: header length makes the data start 8-byte aligned; nothing after the data. */
  g_autofree char *bytes = NULL;
  gsize len = 0;
  g_file_get_contents (path, &bytes, &len, &error);
  g_assert_no_error (error);
  guint64 n;
  memcpy (&n, bytes, 8);
  n = GUINT64_FROM_LE (n);
  g_assert_cmpuint ((8 + n) % 8, ==, 0);
  g_assert_cmpuint (len, ==, 8 + n + 4 * (6 + 1 + 4 + 0 + 3));
  g_assert_cmpint (bytes[8], ==, '{');

  g_autoptr(VlSafetensors) st = vl_test_open (path);
  g_assert_cmpstr (vl_safetensors_path (st), ==, path);
  g_assert_cmpuint (vl_safetensors_n_tensors (st), ==, 5);
  const char *order[] = { "z.weight", "a", "m", "empty", weird };
  const char *shapes[] = { "[2,3]", "[]", "[4]", "[0,5]", "[3]" };
  const int64_t numels[] = { 6, 1, 4, 0, 3 };
  for (guint i = 0; i < 5; i++)
    {
      const VlTensorInfo *t = vl_safetensors_get (st, i);
      g_assert_cmpstr (t->name, ==, order[i]);
      g_assert_true (t->dtype == VL_DTYPE_F32);
      assert_shape (t, shapes[i]);
      g_assert_cmpint (t->numel, ==, numels[i]);
      g_assert_cmpuint (t->nbytes, ==, 4 * (size_t) numels[i]);
      g_assert_true (vl_safetensors_lookup (st, order[i]) == t);
    }
  /* The mapping is page-aligned, so an aligned data area gives aligned float tensors. */
  g_assert_cmpuint (((guintptr) vl_safetensors_get (st, 0)->data) % 8, ==, 0);
  g_assert_null (vl_safetensors_lookup (st, "missing"));
  g_assert_null (vl_safetensors_lookup (st, "__metadata__"));

  const float *want[] = { w, &scalar, m, NULL, odd };
  for (guint i = 0; i < 5; i++)
    {
      const VlTensorInfo *t = NULL;
      g_autofree float *got = vl_safetensors_read_f32 (st, order[i], &t, &error);
      g_assert_no_error (error);
      g_assert_nonnull (got);
      g_assert_true (t == vl_safetensors_get (st, i));
      if (t->numel)
        g_assert_cmpmem (got, t->numel * 4, want[i], t->numel * 4);   /* bit exact, NaN too */
    }

  GHashTable *meta = vl_safetensors_metadata (st);
  g_assert_nonnull (meta);
  g_assert_cmpuint (g_hash_table_size (meta), ==, 2);
  g_assert_cmpstr (g_hash_table_lookup (meta, "format"), ==, "vitlab");
  g_assert_cmpstr (g_hash_table_lookup (meta, "note"), ==, "quote \" and \\ and \n");

  /* Writing again replaces the file; no metadata means none is read back. */
  g_autoptr(VlSafetensorsWriter) wr2 = vl_safetensors_writer_new ();
  vl_safetensors_writer_add_f32 (wr2, "only", 1, so, odd);
  g_assert_true (vl_safetensors_writer_write (wr2, path, &error));
  g_assert_no_error (error);
  g_autoptr(VlSafetensors) st2 = vl_test_open (path);
  g_assert_cmpuint (vl_safetensors_n_tensors (st2), ==, 1);
  g_assert_cmpstr (vl_safetensors_get (st2, 0)->name, ==, "only");
  g_assert_null (vl_safetensors_metadata (st2));
  g_assert_cmpuint (count_entries (dir), ==, 1);

  g_clear_pointer (&st, vl_safetensors_free);
  g_clear_pointer (&st2, vl_safetensors_free);
  rm_rf (dir);
}

/* An empty writer gives a valid file with no tensors. */
static void
test_roundtrip_empty (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *path = g_build_filename (dir, "empty.safetensors", NULL);
  g_autoptr(VlSafetensorsWriter) wr = vl_safetensors_writer_new ();
  g_autoptr(GError) error = NULL;
  g_assert_true (vl_safetensors_writer_write (wr, path, &error));
  g_assert_no_error (error);
  g_autoptr(VlSafetensors) st = vl_test_open (path);
  g_assert_cmpuint (vl_safetensors_n_tensors (st), ==, 0);
  g_autofree float *x = vl_safetensors_read_f32 (st, "x", NULL, &error);
  g_assert_null (x);
  g_assert_error (error, VL_ERROR, VL_ERROR_MISSING);
  g_assert_nonnull (strstr (error->message, "no tensor named 'x'"));
  g_clear_pointer (&st, vl_safetensors_free);
  rm_rf (dir);
}

/* ---- dtype conversion -------------------------------------------------------------- */

static void
test_read_f16 (void)
{
  static const guint16 h[] = {
    0x3c00, 0xc000, 0x7bff, 0x3555, 0x0400, 0x0001, 0x03ff, 0x8001,
    0x7c00, 0xfc00, 0x7e00, 0xfc01, 0x8000, 0x0000,
  };
  const float want[] = {
    1.0f, -2.0f, 65504.0f, 0.333251953125f, 0x1p-14f, 0x1p-24f, 1023 * 0x1p-24f, -0x1p-24f,
    INFINITY, -INFINITY, NAN, NAN, -0.0f, 0.0f,
  };
  /* One U8 byte first, so the F16 data sit at an odd address. */
  guint8 data[1 + sizeof h];
  data[0] = 9;
  memcpy (data + 1, h, sizeof h);
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *path = write_st (dir, "f16.safetensors",
    "{\"pad\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
    "\"h\":{\"dtype\":\"F16\",\"shape\":[2,7],\"data_offsets\":[1,29]}}", data, sizeof data);
  g_autoptr(VlSafetensors) st = vl_test_open (path);
  int64_t n = 0;
  g_autofree float *got = vl_test_read (st, "h", &n);
  g_assert_cmpint (n, ==, 14);
  g_assert_true (vl_safetensors_lookup (st, "h")->dtype == VL_DTYPE_F16);
  for (int i = 0; i < 14; i++)
    {
      if (isnan (want[i]))
        {
          g_assert_true (isnan (got[i]));
          g_assert_cmpint (!!signbit (got[i]), ==, h[i] >> 15);
        }
      else
        g_assert_cmphex (f32_bits (got[i]), ==, f32_bits (want[i]));   /* sign of zero too */
    }
  g_clear_pointer (&st, vl_safetensors_free);
  rm_rf (dir);
}

/* Every one of the 65536 half-precision patterns against a reference built with ldexp. */
static void
test_read_f16_exhaustive (void)
{
  g_autofree guint16 *h = g_new (guint16, 65536);
  for (guint i = 0; i < 65536; i++)
    h[i] = GUINT16_TO_LE ((guint16) i);
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *path = write_st (dir, "all.safetensors",
    "{\"h\":{\"dtype\":\"F16\",\"shape\":[256,256],\"data_offsets\":[0,131072]}}  ",
    h, 65536 * 2);
  g_autoptr(VlSafetensors) st = vl_test_open (path);
  g_autofree float *got = vl_test_read (st, "h", NULL);
  for (guint i = 0; i < 65536; i++)
    {
      int sign = i >> 15, exp = (i >> 10) & 31, mant = i & 1023;
      double v;
      if (exp == 31)
        v = mant ? NAN : INFINITY;
      else if (exp == 0)
        v = ldexp (mant, -24);
      else
        v = ldexp (1024 + mant, exp - 25);
      float want = (float) (sign ? -v : v);
      if (isnan (want))
        {
          if (!isnan (got[i]))
            g_error ("half 0x%04x: got %g, want nan", i, got[i]);
        }
      else if (f32_bits (got[i]) != f32_bits (want))
        g_error ("half 0x%04x: got %.9g (0x%08x), want %.9g (0x%08x)",
                 i, got[i], f32_bits (got[i]), want, f32_bits (want));
    }
  g_clear_pointer (&st, vl_safetensors_free);
  rm_rf (dir);
}

static void
test_read_bf16 (void)
{
  static const guint16 h[] = { 0x3f80, 0xc040, 0x7f80, 0xff80, 0x7fc0, 0x8000, 0x0001, 0x3e2a };
  static const guint32 want[] = {
    0x3f800000, 0xc0400000, 0x7f800000, 0xff800000, 0x7fc00000, 0x80000000, 0x00010000, 0x3e2a0000,
  };
  guint8 data[3 + sizeof h] = { 0 };
  memcpy (data + 3, h, sizeof h);
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *path = write_st (dir, "bf16.safetensors",
    "{\"b\":{\"dtype\":\"BF16\",\"shape\":[8],\"data_offsets\":[3,19]},"
    "\"pad\":{\"dtype\":\"I8\",\"shape\":[3],\"data_offsets\":[0,3]}}", data, sizeof data);
  g_autoptr(VlSafetensors) st = vl_test_open (path);
  g_assert_cmpstr (vl_safetensors_get (st, 0)->name, ==, "b");    /* header order, not offsets */
  g_autofree float *got = vl_test_read (st, "b", NULL);
  for (int i = 0; i < 8; i++)
    g_assert_cmphex (f32_bits (got[i]), ==, want[i]);
  g_assert_cmpfloat (got[0], ==, 1.0f);
  g_assert_cmpfloat (got[1], ==, -3.0f);
  g_assert_true (isnan (got[4]));
  g_clear_pointer (&st, vl_safetensors_free);
  rm_rf (dir);
}

static void
test_read_other_dtypes (void)
{
  GByteArray *d = g_byte_array_new ();
#define PUT(T, ...) G_STMT_START { T v_[] = { __VA_ARGS__ }; g_byte_array_append (d, (guint8 *) v_, sizeof v_); } G_STMT_END
  PUT (guint8, 5);                                       /* [0,1)   U8: misaligns the rest */
  PUT (gint64, -3, (gint64) 1 << 40);                    /* [1,17)  I64 */
  PUT (gint32, -7, 2147483647);                          /* [17,25) I32 */
  PUT (gint16, -300, 32767);                             /* [25,29) I16 */
  PUT (gint8, -128, 127);                                /* [29,31) I8 */
  PUT (guint8, 0, 1, 2);                                 /* [31,34) BOOL */
  PUT (double, 1e-3, -2.5, 1e300);                       /* [34,58) F64 */
  PUT (float, 0.1f, -7.0f);                              /* [58,66) F32 */
#undef PUT
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *path = write_st (dir, "mixed.safetensors",
    "{\"u8\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
    "\"i64\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[1,17]},"
    "\"i32\":{\"dtype\":\"I32\",\"shape\":[1,2],\"data_offsets\":[17,25]},"
    "\"i16\":{\"dtype\":\"I16\",\"shape\":[2],\"data_offsets\":[25,29]},"
    "\"i8\":{\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[29,31]},"
    "\"bool\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[31,34]},"
    "\"f64\":{\"dtype\":\"F64\",\"shape\":[3],\"data_offsets\":[34,58]},"
    "\"f32\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[58,66]},"
    "\"none\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[66,66]},"
    "\"none2\":{\"dtype\":\"I64\",\"shape\":[3,0],\"data_offsets\":[0,0]}}",
    d->data, d->len);
  g_byte_array_unref (d);
  g_autoptr(VlSafetensors) st = vl_test_open (path);
  g_assert_cmpuint (vl_safetensors_n_tensors (st), ==, 10);

  static const struct { const char *name; VlDtype dtype; int n; float want[3]; } cases[] = {
    { "u8", VL_DTYPE_U8, 1, { 5 } },
    { "i64", VL_DTYPE_I64, 2, { -3, 1099511627776.0f } },
    { "i32", VL_DTYPE_I32, 2, { -7, 2147483648.0f } },
    { "i16", VL_DTYPE_I16, 2, { -300, 32767 } },
    { "i8", VL_DTYPE_I8, 2, { -128, 127 } },
    { "bool", VL_DTYPE_BOOL, 3, { 0, 1, 1 } },
    { "f64", VL_DTYPE_F64, 3, { 1e-3f, -2.5f, INFINITY } },
    { "f32", VL_DTYPE_F32, 2, { 0.1f, -7.0f } },
    { "none", VL_DTYPE_F32, 0, { 0 } },
    { "none2", VL_DTYPE_I64, 0, { 0 } },
  };
  for (guint c = 0; c < G_N_ELEMENTS (cases); c++)
    {
      const VlTensorInfo *t = vl_safetensors_get (st, c);
      g_assert_cmpstr (t->name, ==, cases[c].name);
      g_assert_cmpstr (vl_dtype_name (t->dtype), ==, vl_dtype_name (cases[c].dtype));
      int64_t n = -1;
      g_autofree float *got = vl_test_read (st, cases[c].name, &n);
      g_assert_cmpint (n, ==, cases[c].n);
      for (int i = 0; i < cases[c].n; i++)
        g_assert_cmpfloat (got[i], ==, cases[c].want[i]);
    }
  g_clear_pointer (&st, vl_safetensors_free);
  rm_rf (dir);
}

/* ---- the real fixtures ------------------------------------------------------------- */

static void
test_fixture_model (void)
{
  g_autofree char *path = vl_test_shared_path ("fixtures", "vit-timm-tiny", "model.safetensors", NULL);
  g_autoptr(VlSafetensors) st = vl_test_open (path);
  guint n = vl_safetensors_n_tensors (st);
  g_assert_cmpuint (n, ==, 56);
  g_assert_cmpstr (vl_safetensors_get (st, 0)->name, ==, "blocks.0.attn.proj.bias");
  g_assert_cmpstr (vl_safetensors_get (st, 55)->name, ==, "pos_embed");
  size_t total = 0;
  for (guint i = 0; i < n; i++)
    {
      const VlTensorInfo *t = vl_safetensors_get (st, i);
      g_assert_true (t->dtype == VL_DTYPE_F32);
      total += t->nbytes;
    }
  g_assert_cmpuint (total, ==, 498972 - 8 - 4736);   /* the whole data area, no gaps */

  const VlTensorInfo *pe = vl_safetensors_lookup (st, "pos_embed");
  g_assert_nonnull (pe);
  assert_shape (pe, "[1,17,48]");
  g_assert_cmpint (pe->numel, ==, 17 * 48);
  int64_t numel = 0;
  g_autofree float *v = vl_test_read (st, "pos_embed", &numel);
  g_assert_cmpint (numel, ==, 816);
  g_assert_cmpfloat (v[0], ==, 0.5933218598365784f);
  g_assert_cmpfloat (v[1], ==, 1.0107226371765137f);
  g_assert_cmpfloat (v[815], ==, 0.8530312776565552f);

  const VlTensorInfo *qkv = vl_safetensors_lookup (st, "blocks.0.attn.qkv.weight");
  g_assert_nonnull (qkv);
  assert_shape (qkv, "[144,48]");
  g_assert_cmpuint (qkv->nbytes, ==, 27648);
  g_assert_null (vl_safetensors_metadata (st));   /* this file has no __metadata__ */
}

static void
test_fixture_inputs (void)
{
  g_autofree char *path = vl_test_shared_path ("fixtures", "vit-timm-tiny", "inputs.safetensors", NULL);
  g_autoptr(VlSafetensors) st = vl_test_open (path);
  g_assert_cmpuint (vl_safetensors_n_tensors (st), ==, 3);
  const VlTensorInfo *t = vl_safetensors_lookup (st, "targets");
  g_assert_nonnull (t);
  g_assert_true (t->dtype == VL_DTYPE_I64);
  assert_shape (t, "[4]");
  g_autofree float *y = vl_test_read (st, "targets", NULL);
  const float want[] = { 3, 1, 3, 2 };
  g_assert_cmpmem (y, sizeof want, want, sizeof want);
  const VlTensorInfo *im = vl_safetensors_lookup (st, "images");
  assert_shape (im, "[4,3,32,32]");
  g_autofree float *x = vl_test_read (st, "images", NULL);
  g_assert_cmpfloat (x[0], ==, -1.1892017126083374f);
  g_assert_cmpfloat (x[4 * 3 * 32 * 32 - 1], ==, 2.1121349334716797f);
}

static void
test_missing_name (void)
{
  g_autofree char *path = vl_test_shared_path ("fixtures", "vit-timm-tiny", "model.safetensors", NULL);
  g_autoptr(VlSafetensors) st = vl_test_open (path);
  g_autoptr(GError) error = NULL;
  const VlTensorInfo *info = NULL;
  float *v = vl_safetensors_read_f32 (st, "blocks.9.attn.qkv.weight", &info, &error);
  g_assert_null (v);
  g_assert_null (info);
  g_assert_error (error, VL_ERROR, VL_ERROR_MISSING);
  g_test_message ("%s", error->message);
  g_assert_true (g_str_has_prefix (error->message, path));
  g_assert_nonnull (strstr (error->message, "no tensor named 'blocks.9.attn.qkv.weight'"));
  g_assert_nonnull (strstr (error->message, "it has: blocks.0.attn.proj.bias, blocks.0.attn.proj.weight"));
  g_assert_nonnull (strstr (error->message, "and 46 more"));
}

/* ---- bad files --------------------------------------------------------------------- */

typedef struct {
  const char *test;     /* test path suffix */
  const char *header;
  guint       data_len; /* zero bytes after the header */
  const char *word1, *word2;
} BadCase;

static const BadCase bad_cases[] = {
  { "not-json", "{\"a\": {\"dtype\": ", 0, "not valid JSON", NULL },
  { "garbage-after-json", "{} trailing", 0, "not valid JSON", NULL },
  { "empty-header", "", 0, "header is empty", NULL },
  { "blank-header", "        ", 0, "header is empty", NULL },
  { "root-not-object", "[1,2,3]", 0, "not a JSON object", "an array" },
  { "root-string", "\"F32\"", 0, "not a JSON object", NULL },
  { "entry-not-object", "{\"a\":3}", 0, "tensor a:", "not an object" },
  { "missing-dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor a: has no 'dtype'", NULL },
  { "unknown-dtype", "{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
    "tensor a:", "unknown dtype 'F8_E4M3'" },
  { "negative-dim", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1,4],\"data_offsets\":[0,0]}}", 0,
    "tensor w:", "negative (-1)" },
  { "shape-not-array", "{\"w\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,16]}}", 16,
    "tensor w:", "'shape' is a number, not an array" },
  { "shape-missing", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,16]}}", 16,
    "tensor w: has no 'shape'", NULL },
  { "shape-fraction", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4,
    "tensor w:", "not an integer" },
  { "shape-huge-literal", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-18446744073709551615],\"data_offsets\":[0,4]}}", 4,
    "-18446744073709551615", "out of range" },
  { "offsets-huge-literal", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,9223372036854775808]}}", 4,
    "9223372036854775808", "out of range" },
  { "too-many-dims", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
    "tensor w:", "9 dimensions" },
  { "numel-overflow", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,0]}}", 0,
    "tensor w:", "overflow" },
  { "bytes-overflow", "{\"w\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}", 0,
    "tensor w:", "byte size overflows" },
  { "offsets-not-pair", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4,
    "tensor w:", "'data_offsets' has 1 entries" },
  { "offsets-negative", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4,
    "tensor w:", "negative" },
  { "offsets-beyond", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4,
    "tensor w: data_offsets [0,8] end beyond the data area of 4 bytes", NULL },
  { "offsets-reversed", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8,
    "tensor w:", "begin is after end" },
  { "size-mismatch", "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 12,
    "tensor w: shape [3] (3 elements of F32 = 12 bytes) does not match its data_offsets span of 8 bytes", NULL },
  { "overlap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
    "tensors a (bytes [0,8]) and b (bytes [4,12]) overlap", NULL },
  { "overlap-nested", "{\"big\":{\"dtype\":\"U8\",\"shape\":[16],\"data_offsets\":[0,16]},"
                      "\"e\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[2,2]},"
                      "\"in\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[4,6]}}", 16,
    "big", "overlap" },
  { "same-range", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"b\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
    "overlap", NULL },
  { "metadata-not-string", "{\"__metadata__\":{\"k\":1}}", 0, "'__metadata__' entry 'k'", "not a string" },
  { "metadata-not-object", "{\"__metadata__\":[\"k\"]}", 0, "'__metadata__' is an array", NULL },
};

static void
test_bad_case (gconstpointer p)
{
  const BadCase *c = p;
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree guint8 *zeros = g_malloc0 (MAX (c->data_len, 1));
  g_autofree char *name = g_strdup_printf ("%s.safetensors", c->test);
  g_autofree char *path = write_st (dir, name, c->header, zeros, c->data_len);
  assert_open_fails (path, VL_ERROR_FORMAT, c->word1, c->word2, NULL);
  rm_rf (dir);
}

/* Neighbours of the bad cases that must be accepted: zero-sized tensors sharing offsets,
 * touching ranges, gaps, trailing bytes, unknown entry keys. */
static void
test_edge_accepted (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  guint8 data[32] = { 0 };
  g_autofree char *path = write_st (dir, "edge.safetensors",
    "{\"__metadata__\":{},"
    "\"e1\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[4,4]},"
    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
    "\"e2\":{\"dtype\":\"BF16\",\"shape\":[2,0],\"data_offsets\":[4,4]},"
    "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8],\"extra\":[1,2]},"
    "\"c\":{\"dtype\":\"I16\",\"shape\":[],\"data_offsets\":[16,18]}}   ", data, sizeof data);
  g_autoptr(VlSafetensors) st = vl_test_open (path);
  g_assert_cmpuint (vl_safetensors_n_tensors (st), ==, 5);
  g_assert_cmpstr (vl_safetensors_get (st, 0)->name, ==, "e1");
  g_assert_cmpstr (vl_safetensors_get (st, 4)->name, ==, "c");
  assert_shape (vl_safetensors_get (st, 4), "[]");
  g_assert_cmpint (vl_safetensors_get (st, 4)->numel, ==, 1);
  g_assert_nonnull (vl_safetensors_metadata (st));
  g_assert_cmpuint (g_hash_table_size (vl_safetensors_metadata (st)), ==, 0);
  g_clear_pointer (&st, vl_safetensors_free);
  rm_rf (dir);
}

static void
test_bad_missing_file (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *path = g_build_filename (dir, "nothere.safetensors", NULL);
  assert_open_fails (path, VL_ERROR_IO, "cannot open", g_strerror (ENOENT), NULL);
  rm_rf (dir);
}

static void
test_bad_directory (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  assert_open_fails (dir, VL_ERROR_IO, "not a regular file", "directory", NULL);
  rm_rf (dir);
}

static void
test_bad_empty (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *path = write_bytes (dir, "empty.safetensors", "", 0);
  assert_open_fails (path, VL_ERROR_FORMAT, "file is empty", NULL);
  rm_rf (dir);
}

static void
test_bad_short (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *path = write_bytes (dir, "short.safetensors", "\x02\0\0\0\0", 5);
  assert_open_fails (path, VL_ERROR_FORMAT, "too short", "5 bytes", NULL);
  rm_rf (dir);
}

static void
test_bad_header_length (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  guint8 buf[4096] = { 0 };
  guint64 n = GUINT64_TO_LE (123456789);
  memcpy (buf, &n, 8);
  g_autofree char *path = write_bytes (dir, "x.safetensors", buf, sizeof buf);
  assert_open_fails (path, VL_ERROR_FORMAT,
                     "header length 123456789 exceeds the file size 4096 (truncated, or not a safetensors file)", NULL);

  /* N + 8 would wrap around to 7. */
  n = G_MAXUINT64;
  memcpy (buf, &n, 8);
  g_autofree char *path2 = write_bytes (dir, "wrap.safetensors", buf, sizeof buf);
  assert_open_fails (path2, VL_ERROR_FORMAT, "header length 18446744073709551615 exceeds", NULL);

  /* Exactly the file minus 8: the header fits, an empty data area. */
  n = GUINT64_TO_LE (4096 - 8 + 1);
  memcpy (buf, &n, 8);
  g_autofree char *path3 = write_bytes (dir, "plus1.safetensors", buf, sizeof buf);
  assert_open_fails (path3, VL_ERROR_FORMAT, "exceeds the file size", NULL);
  rm_rf (dir);
}

/* A valid file cut short by a few bytes: the last tensor's end lies past the data. */
static void
test_bad_truncated (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *path = g_build_filename (dir, "cut.safetensors", NULL);
  float v[10] = { 0 };
  const int64_t s[] = { 2, 5 };
  g_autoptr(VlSafetensorsWriter) w = vl_safetensors_writer_new ();
  vl_safetensors_writer_add_f32 (w, "first", 1, s, v);
  vl_safetensors_writer_add_f32 (w, "last.weight", 2, s, v);
  g_autoptr(GError) error = NULL;
  g_assert_true (vl_safetensors_writer_write (w, path, &error));
  g_assert_no_error (error);
  g_clear_pointer (&w, vl_safetensors_writer_free);
  g_autoptr(VlSafetensors) ok = vl_test_open (path);   /* valid before the cut */
  g_clear_pointer (&ok, vl_safetensors_free);

  g_autofree char *bytes = NULL;
  gsize len;
  g_file_get_contents (path, &bytes, &len, &error);
  g_assert_no_error (error);
  g_file_set_contents (path, bytes, (gssize) len - 3, &error);
  g_assert_no_error (error);
  assert_open_fails (path, VL_ERROR_FORMAT, "tensor last.weight", "beyond the data area of 45 bytes",
                     "truncated", NULL);
  rm_rf (dir);
}

/* ---- writer failures --------------------------------------------------------------- */

static VlSafetensorsWriter *
small_writer (const float *v)
{
  const int64_t s[] = { 2 };
  VlSafetensorsWriter *w = vl_safetensors_writer_new ();
  vl_safetensors_writer_add_f32 (w, "v", 1, s, v);
  return w;
}

static void
assert_write_fails (VlSafetensorsWriter *w, const char *path, VlErrorCode code, const char *word)
{
  g_autoptr(GError) error = NULL;
  g_assert_false (vl_safetensors_writer_write (w, path, &error));
  g_assert_error (error, VL_ERROR, (gint) code);
  g_test_message ("%s", error->message);
  g_assert_true (g_str_has_prefix (error->message, path));
  if (strstr (error->message, word) == NULL)
    g_error ("error message \"%s\" does not contain \"%s\"", error->message, word);
}

static void
test_write_no_directory (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *sub = g_build_filename (dir, "no-such-dir", NULL);
  g_autofree char *path = g_build_filename (sub, "out.safetensors", NULL);
  const float v[2] = { 1, 2 };
  g_autoptr(VlSafetensorsWriter) w = small_writer (v);
  assert_write_fails (w, path, VL_ERROR_IO, g_strerror (ENOENT));
  g_assert_false (g_file_test (sub, G_FILE_TEST_EXISTS));
  g_assert_cmpuint (count_entries (dir), ==, 0);
  rm_rf (dir);
}

static void
test_write_target_is_directory (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *path = g_build_filename (dir, "model.safetensors", NULL);
  g_assert_cmpint (g_mkdir (path, 0755), ==, 0);
  const float v[2] = { 1, 2 };
  g_autoptr(VlSafetensorsWriter) w = small_writer (v);
  assert_write_fails (w, path, VL_ERROR_IO, "cannot replace");
  g_assert_true (g_file_test (path, G_FILE_TEST_IS_DIR));
  g_assert_cmpuint (count_entries (dir), ==, 1);        /* the temporary is gone */
  g_assert_cmpuint (count_entries (path), ==, 0);
  rm_rf (dir);
}

static void
test_write_invalid (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *path = g_build_filename (dir, "bad.safetensors", NULL);
  const float v[2] = { 1, 2 };
  const int64_t s[] = { 2 }, neg[] = { -2 }, nine[9] = { 1, 1, 1, 1, 1, 1, 1, 1, 2 };
  const int64_t huge[] = { (int64_t) 1 << 40, (int64_t) 1 << 40 };

  g_autoptr(VlSafetensorsWriter) dup = small_writer (v);
  vl_safetensors_writer_add_f32 (dup, "other", 1, s, v);
  vl_safetensors_writer_add_f32 (dup, "v", 1, s, v);
  assert_write_fails (dup, path, VL_ERROR_INVALID, "tensor v: added twice");

  g_autoptr(VlSafetensorsWriter) w1 = vl_safetensors_writer_new ();
  vl_safetensors_writer_add_f32 (w1, "n", 1, neg, v);
  assert_write_fails (w1, path, VL_ERROR_INVALID, "tensor n: shape entry 0 is negative");

  g_autoptr(VlSafetensorsWriter) w2 = vl_safetensors_writer_new ();
  vl_safetensors_writer_add_f32 (w2, "deep", 9, nine, v);
  assert_write_fails (w2, path, VL_ERROR_INVALID, "tensor deep: 9 dimensions");

  g_autoptr(VlSafetensorsWriter) w3 = vl_safetensors_writer_new ();
  vl_safetensors_writer_add_f32 (w3, "huge", 2, huge, v);
  assert_write_fails (w3, path, VL_ERROR_INVALID, "overflow");

  g_autoptr(VlSafetensorsWriter) w4 = vl_safetensors_writer_new ();
  vl_safetensors_writer_add_f32 (w4, "__metadata__", 1, s, v);
  assert_write_fails (w4, path, VL_ERROR_INVALID, "__metadata__");

  g_autoptr(VlSafetensorsWriter) w5 = small_writer (v);
  vl_safetensors_writer_add_metadata (w5, "k", "\xff\xfe");
  assert_write_fails (w5, path, VL_ERROR_INVALID, "UTF-8");

  g_assert_cmpuint (count_entries (dir), ==, 0);
  rm_rf (dir);
}

/* A write that fails part-way (here: the file size limit, EFBIG, standing in for a full
 * disk) reports the file, removes the temporary and leaves the old file as it was. */
static void
test_write_failure_keeps_old (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *path = g_build_filename (dir, "keep.safetensors", NULL);
  const float old[2] = { 3, 4 };
  g_autoptr(VlSafetensorsWriter) w = small_writer (old);
  g_autoptr(GError) error = NULL;
  g_assert_true (vl_safetensors_writer_write (w, path, &error));
  g_assert_no_error (error);
  g_autofree char *before = NULL;
  gsize before_len;
  g_file_get_contents (path, &before, &before_len, &error);
  g_assert_no_error (error);

  g_autofree float *big = g_new0 (float, 1 << 16);
  const int64_t s[] = { 256, 256 };
  g_autoptr(VlSafetensorsWriter) w2 = vl_safetensors_writer_new ();
  vl_safetensors_writer_add_f32 (w2, "big", 2, s, big);

  struct rlimit saved, lim;
  g_assert_cmpint (getrlimit (RLIMIT_FSIZE, &saved), ==, 0);
  lim = saved;
  lim.rlim_cur = 4096;
  void (*old_handler) (int) = signal (SIGXFSZ, SIG_IGN);
  g_assert_cmpint (setrlimit (RLIMIT_FSIZE, &lim), ==, 0);
  gboolean ok = vl_safetensors_writer_write (w2, path, &error);
  g_assert_cmpint (setrlimit (RLIMIT_FSIZE, &saved), ==, 0);
  signal (SIGXFSZ, old_handler);

  g_assert_false (ok);
  g_assert_error (error, VL_ERROR, VL_ERROR_IO);
  g_test_message ("%s", error->message);
  g_assert_true (g_str_has_prefix (error->message, path));
  g_assert_nonnull (strstr (error->message, g_strerror (EFBIG)));
  g_clear_error (&error);
  g_assert_cmpuint (count_entries (dir), ==, 1);

  g_autofree char *after = NULL;
  gsize after_len;
  g_file_get_contents (path, &after, &after_len, &error);
  g_assert_no_error (error);
  g_assert_cmpmem (after, after_len, before, before_len);
  g_autoptr(VlSafetensors) st = vl_test_open (path);
  g_autofree float *got = vl_test_read (st, "v", NULL);
  g_assert_cmpmem (got, sizeof old, old, sizeof old);
  g_clear_pointer (&st, vl_safetensors_free);
  rm_rf (dir);
}

/* ---- the atomic writer under it (vl-atomic.h), which every file the engine writes goes through */

static void
test_atomic_replace_and_abort (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *path = g_build_filename (dir, "run.json", NULL);
  g_autoptr(GError) error = NULL;
  g_assert_true (vl_write_file_atomic (path, "old", -1, &error));
  g_assert_no_error (error);

  /* streamed in pieces, then committed: the whole new contents, no temporary left */
  VlAtomicFile *f = vl_atomic_file_new (path, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (count_entries (dir), ==, 2);   /* the old file and the temporary */
  g_assert_true (vl_atomic_file_write (f, "{\"a\":", 5, &error));
  g_assert_true (vl_atomic_file_write (f, " 1}", 3, &error));
  g_autofree char *mid = NULL;
  g_assert_true (g_file_get_contents (path, &mid, NULL, NULL));
  g_assert_cmpstr (mid, ==, "old");                /* unchanged until the commit */
  g_assert_true (vl_atomic_file_commit (f, &error));
  g_assert_no_error (error);
  g_autofree char *now = NULL;
  g_assert_true (g_file_get_contents (path, &now, NULL, NULL));
  g_assert_cmpstr (now, ==, "{\"a\": 1}");
  g_assert_cmpuint (count_entries (dir), ==, 1);

  /* abandoned: the temporary goes, the file stays */
  f = vl_atomic_file_new (path, &error);
  g_assert_true (vl_atomic_file_write (f, "half", 4, &error));
  vl_atomic_file_abort (f);
  g_autofree char *after = NULL;
  g_assert_true (g_file_get_contents (path, &after, NULL, NULL));
  g_assert_cmpstr (after, ==, "{\"a\": 1}");
  g_assert_cmpuint (count_entries (dir), ==, 1);
  rm_rf (dir);
}

/* A folder that does not exist, or a target that is a folder: errors that name the file, and
 * nothing left behind. */
static void
test_atomic_errors_name_the_file (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *missing = g_build_filename (dir, "no-such-dir", "metrics.jsonl", NULL);
  g_autoptr(GError) error = NULL;
  g_assert_false (vl_write_file_atomic (missing, "x", -1, &error));
  g_assert_error (error, VL_ERROR, VL_ERROR_IO);
  g_assert_nonnull (strstr (error->message, missing));
  g_assert_nonnull (strstr (error->message, g_strerror (ENOENT)));
  g_clear_error (&error);

  g_autofree char *sub = g_build_filename (dir, "config.json", NULL);
  g_assert_cmpint (g_mkdir (sub, 0755), ==, 0);
  g_assert_false (vl_write_file_atomic (sub, "{}", -1, &error));
  g_assert_error (error, VL_ERROR, VL_ERROR_IO);
  g_assert_nonnull (strstr (error->message, sub));
  g_assert_nonnull (strstr (error->message, "cannot replace"));
  g_assert_cmpuint (count_entries (dir), ==, 1);   /* only the folder */
  rm_rf (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/safetensors/shape-string", test_shape_string);
  g_test_add_func ("/safetensors/dtypes", test_dtypes);
  g_test_add_func ("/safetensors/roundtrip", test_roundtrip);
  g_test_add_func ("/safetensors/roundtrip/empty", test_roundtrip_empty);
  g_test_add_func ("/safetensors/read/f16", test_read_f16);
  g_test_add_func ("/safetensors/read/f16-exhaustive", test_read_f16_exhaustive);
  g_test_add_func ("/safetensors/read/bf16", test_read_bf16);
  g_test_add_func ("/safetensors/read/other-dtypes", test_read_other_dtypes);
  g_test_add_func ("/safetensors/read/edge-accepted", test_edge_accepted);
  g_test_add_func ("/safetensors/read/fixture-model", test_fixture_model);
  g_test_add_func ("/safetensors/read/fixture-inputs", test_fixture_inputs);
  g_test_add_func ("/safetensors/read/missing-name", test_missing_name);

  g_test_add_func ("/safetensors/bad/missing-file", test_bad_missing_file);
  g_test_add_func ("/safetensors/bad/directory", test_bad_directory);
  g_test_add_func ("/safetensors/bad/empty-file", test_bad_empty);
  g_test_add_func ("/safetensors/bad/short-file", test_bad_short);
  g_test_add_func ("/safetensors/bad/header-length", test_bad_header_length);
  g_test_add_func ("/safetensors/bad/truncated", test_bad_truncated);
  for (guint i = 0; i < G_N_ELEMENTS (bad_cases); i++)
    {
      g_autofree char *name = g_strdup_printf ("/safetensors/bad/%s", bad_cases[i].test);
      g_test_add_data_func (name, &bad_cases[i], test_bad_case);
    }

  g_test_add_func ("/safetensors/write/no-directory", test_write_no_directory);
  g_test_add_func ("/safetensors/write/target-is-directory", test_write_target_is_directory);
  g_test_add_func ("/safetensors/write/invalid", test_write_invalid);
  g_test_add_func ("/safetensors/write/failure-keeps-old", test_write_failure_keeps_old);
  g_test_add_func ("/atomic/replace-and-abort", test_atomic_replace_and_abort);
  g_test_add_func ("/atomic/errors-name-the-file", test_atomic_errors_name_the_file);

  return g_test_run ();
}
