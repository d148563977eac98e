/* test-npz.c: NumPy .npz archives read through vl_safetensors_open: every dtype and layout numpy
 * writes (Fortran order, big-endian, float16, bfloat16 as two raw bytes, scalars), headers and
 * archives refused with the file and the entry named, a zip bomb refused, truncations and flipped
 * bytes that never crash (a flipped byte in a weight is a CRC error, not another model); and the JAX ViT conversion's refusals (an attention-pool head, a ResNet
 * stem, a missing or misshapen array, an array it does not know) on copies of
 * tests/data/fam-jax-augreg/model.npz, whose parity test-families checks. */
#include "vl-test-util.h"
#include "vl-model.h"

#include <glib/gstdio.h>
#include <string.h>
#include <zip.h>

/* An .npy file: the magic, version 1.0, the header dict padded with spaces to a multiple of 64
 * bytes ending in a newline (as numpy pads it), then `n` bytes of data. */
static GBytes *
npy (const char *dict, const void *data, size_t n)
{
  GByteArray *b = g_byte_array_new ();
  g_byte_array_append (b, (const guint8 *) "\x93NUMPY\x01\x00", 8);
  GString *h = g_string_new (dict);
  while ((10 + h->len + 1) % 64 != 0)
    g_string_append_c (h, ' ');
  g_string_append_c (h, '\n');
  const guint8 len[2] = { h->len & 0xff, h->len >> 8 };
  g_byte_array_append (b, len, 2);
  g_byte_array_append (b, (const guint8 *) h->str, h->len);
  g_byte_array_append (b, data, n);
  g_string_free (h, TRUE);
  return g_byte_array_free_to_bytes (b);
}

/* Adds (or replaces) entry `name` in the archive at `path` (created when absent), deflated or
 * stored. */
static void
zip_put (const char *path, const char *name, GBytes *bytes, gboolean deflate)
{
  int err = 0;
  zip_t *za = zip_open (path, ZIP_CREATE, &err);
  g_assert_nonnull (za);
  gsize n;
  const void *data = g_bytes_get_data (bytes, &n);
  zip_source_t *src = zip_source_buffer (za, data, n, 0);
  g_assert_nonnull (src);
  zip_int64_t at = zip_file_add (za, name, src, ZIP_FL_OVERWRITE);
  g_assert_cmpint (at, >=, 0);
  g_assert_cmpint (zip_set_file_compression (za, (zip_uint64_t) at,
                                             deflate ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 0), ==, 0);
  g_assert_cmpint (zip_close (za), ==, 0);
}

static void
zip_remove (const char *path, const char *name)
{
  int err = 0;
  zip_t *za = zip_open (path, 0, &err);
  g_assert_nonnull (za);
  zip_int64_t at = zip_name_locate (za, name, 0);
  g_assert_cmpint (at, >=, 0);
  g_assert_cmpint (zip_delete (za, (zip_uint64_t) at), ==, 0);
  g_assert_cmpint (zip_close (za), ==, 0);
}

static void
put_npy (const char *path, const char *name, const char *dict, const void *data, size_t n)
{
  g_autoptr(GBytes) b = npy (dict, data, n);
  g_autofree char *entry = g_strconcat (name, ".npy", NULL);
  zip_put (path, entry, b, FALSE);
}

static void
assert_values (VlSafetensors *st, const char *name, VlDtype dtype, int ndim,
               const int64_t *shape, const float *want, int64_t n)
{
  const VlTensorInfo *t = vl_safetensors_lookup (st, name);
  if (t == NULL)
    g_error ("no tensor %s", name);
  g_assert_cmpint (t->dtype, ==, dtype);
  g_assert_cmpint (t->ndim, ==, ndim);
  for (int d = 0; d < ndim; d++)
    g_assert_cmpint (t->shape[d], ==, shape[d]);
  g_assert_cmpint (t->numel, ==, n);
  g_autofree float *got = vl_test_read (st, name, NULL);
  g_assert_cmpmem (got, n * sizeof (float), want, n * sizeof (float));
}

/* Every layout numpy writes, read in C order with the values it holds. */
static void
test_values (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *path = g_build_filename (dir, "arrays.npz", NULL);
  const double f8[6] = { 1, -2, 3.5, 4, 5, 6.25 };
  put_npy (path, "f8", "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", f8,
           sizeof f8);
  /* (2, 3, 4) in Fortran order: element (i, j, k) = 100 i + 10 j + k at i + 2 j + 6 k */
  float fo[24], c_order[24];
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 3; j++)
      for (int k = 0; k < 4; k++)
        {
          fo[i + 2 * j + 6 * k] = (float) (100 * i + 10 * j + k);
          c_order[(i * 3 + j) * 4 + k] = (float) (100 * i + 10 * j + k);
        }
  put_npy (path, "fortran", "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3, 4), }",
           fo, sizeof fo);
  const guint8 be[8] = { 0, 0, 1, 2, 0xff, 0xff, 0xff, 0xfe };   /* 258, -2 */
  put_npy (path, "big", "{'descr': '>i4', 'fortran_order': False, 'shape': (2,), }", be, 8);
  const guint16 half[2] = { 0x3c00, 0xc000 };                   /* 1, -2 */
  put_npy (path, "half", "{'descr': '<f2', 'fortran_order': False, 'shape': (2,), }", half, 4);
  const guint16 bf[2] = { 0x3f80, 0x4040 };                     /* bfloat16 1, 3 */
  put_npy (path, "bf16", "{'descr': '<V2', 'fortran_order': False, 'shape': (2,), }", bf, 4);
  const guint8 flags[3] = { 1, 0, 1 };
  put_npy (path, "flags", "{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }", flags, 3);
  const float scalar = 7.5f;
  put_npy (path, "scalar", "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", &scalar,
           4);
  put_npy (path, "empty", "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 5), }", NULL,
           0);
  /* a version 2.0 header (4-byte length), keys in another order, double quotes */
  {
    const char *dict = "{\"shape\": (1,), \"fortran_order\": False, \"descr\": \"<f4\"}\n";
    GByteArray *b = g_byte_array_new ();
    g_byte_array_append (b, (const guint8 *) "\x93NUMPY\x02\x00", 8);
    const guint32 len = GUINT32_TO_LE ((guint32) strlen (dict));
    g_byte_array_append (b, (const guint8 *) &len, 4);
    g_byte_array_append (b, (const guint8 *) dict, strlen (dict));
    const float one = 1.0f;
    g_byte_array_append (b, (const guint8 *) &one, 4);
    g_autoptr(GBytes) bytes = g_byte_array_free_to_bytes (b);
    zip_put (path, "v2.npy", bytes, TRUE);
  }

  g_autoptr(GError) error = NULL;
  g_autoptr(VlSafetensors) st = vl_safetensors_open (path, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (vl_safetensors_n_tensors (st), ==, 9);
  const float f8v[6] = { 1, -2, 3.5f, 4, 5, 6.25f };
  assert_values (st, "f8", VL_DTYPE_F64, 2, (int64_t[]) { 2, 3 }, f8v, 6);
  assert_values (st, "fortran", VL_DTYPE_F32, 3, (int64_t[]) { 2, 3, 4 }, c_order, 24);
  assert_values (st, "big", VL_DTYPE_I32, 1, (int64_t[]) { 2 }, (float[]) { 258, -2 }, 2);
  assert_values (st, "half", VL_DTYPE_F16, 1, (int64_t[]) { 2 }, (float[]) { 1, -2 }, 2);
  assert_values (st, "bf16", VL_DTYPE_BF16, 1, (int64_t[]) { 2 }, (float[]) { 1, 3 }, 2);
  assert_values (st, "flags", VL_DTYPE_BOOL, 1, (int64_t[]) { 3 }, (float[]) { 1, 0, 1 }, 3);
  assert_values (st, "scalar", VL_DTYPE_F32, 0, NULL, &scalar, 1);
  assert_values (st, "empty", VL_DTYPE_F32, 2, (int64_t[]) { 0, 5 }, NULL, 0);
  assert_values (st, "v2", VL_DTYPE_F32, 1, (int64_t[]) { 1 }, (float[]) { 1 }, 1);
  /* not a ViT: the arrays keep their names, and loading it as a model says what it has */
  g_assert_null (vl_safetensors_metadata (st) ?
                 g_hash_table_lookup (vl_safetensors_metadata (st), "num_heads") : NULL);
  g_autoptr(VlModel) m = vl_model_load (path, &error);
  g_assert_null (m);
  g_assert_error (error, VL_ERROR, VL_ERROR_FORMAT);
  g_assert_nonnull (strstr (error->message, "not a ViT checkpoint vitlab knows"));
  g_assert_nonnull (strstr (error->message, "f8, fortran, big"));
  g_assert_true (vl_checkpoint_has_extension ("ViT-B_16.NPZ"));
}

typedef struct {
  const char *what, *dict;
  size_t      n;          /* data bytes */
  const char *expect;     /* in the message */
} Refusal;

static const Refusal refusals[] = {
  { "object", "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", 8, "never runs" },
  { "complex", "{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", 8,
    "not a number type" },
  { "short", "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", 40,
    "truncated, or a lying header" },
  { "long", "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 12,
    "truncated, or a lying header" },
  { "huge", "{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904, 4), }",
    8, "overflows" },
  { "key", "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'extra': 1}", 4,
    "key 'extra'" },
  { "twice", "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", 4,
    "comes twice" },
  { "no-shape", "{'descr': '<f4', 'fortran_order': False, }", 4, "lacks shape" },
  { "order", "{'descr': '<f4', 'fortran_order': 0, 'shape': (1,), }", 4,
    "fortran_order is neither" },
  { "shape", "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", 4,
    "not a tuple of whole numbers" },
  { "dims", "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", 4,
    "more than 8 dimensions" },
  { "open", "{'descr': '<f4, 'fortran_order': False, 'shape': (1,), }", 4,
    "'<f4, ' is not a number type" },
  { "brace", "'descr': '<f4', 'fortran_order': False, 'shape': (1,)", 4, "expected '{'" },
};

/* Headers numpy would not write, and data that does not fit them: refused, naming the file and
 * the entry. */
static void
test_refused (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  guint8 zeros[64] = { 0 };
  for (guint i = 0; i < G_N_ELEMENTS (refusals); i++)
    {
      const Refusal *r = &refusals[i];
      g_autofree char *path = g_strdup_printf ("%s/%s.npz", dir, r->what);
      put_npy (path, "ok", "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", zeros, 4);
      put_npy (path, r->what, r->dict, zeros, r->n);
      g_autoptr(GError) error = NULL;
      g_autoptr(VlSafetensors) st = vl_safetensors_open (path, &error);
      g_assert_null (st);
      g_assert_nonnull (error);
      g_test_message ("%s: %s", r->what, error->message);
      g_autofree char *entry = g_strconcat (r->what, ".npy", NULL);
      g_assert_nonnull (strstr (error->message, path));
      g_assert_nonnull (strstr (error->message, entry));
      if (strstr (error->message, r->expect) == NULL)
        g_error ("%s: \"%s\" does not say \"%s\"", r->what, error->message, r->expect);
    }

  /* no magic; a version numpy does not write; a header longer than the entry */
  static const struct {
    const char *name;
    const char *bytes;
    size_t      n;
    const char *expect;
  } raw[] = {
    { "magic", "NUMPY\x01\x00\x10\x00{}", 12, "no \\x93NUMPY magic" },
    { "version", "\x93NUMPY\x04\x00\x10\x00{}", 12, "version 4.0" },
    { "header", "\x93NUMPY\x01\x00\xff\x00{'descr'", 17, "runs past the entry" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (raw); i++)
    {
      g_autofree char *path = g_strdup_printf ("%s/raw-%s.npz", dir, raw[i].name);
      g_autoptr(GBytes) b = g_bytes_new_static (raw[i].bytes, raw[i].n);
      g_autofree char *entry = g_strconcat (raw[i].name, ".npy", NULL);
      zip_put (path, entry, b, FALSE);
      g_autoptr(GError) error = NULL;
      g_autoptr(VlSafetensors) st = vl_safetensors_open (path, &error);
      g_assert_null (st);
      g_test_message ("%s: %s", raw[i].name, error->message);
      g_assert_nonnull (strstr (error->message, entry));
      g_assert_nonnull (strstr (error->message, raw[i].expect));
    }

  /* a zip of neither kind */
  g_autofree char *other = g_build_filename (dir, "notes.npz", NULL);
  g_autoptr(GBytes) txt = g_bytes_new_static ("hello", 5);
  zip_put (other, "notes.txt", txt, FALSE);
  g_autoptr(GError) error = NULL;
  g_autoptr(VlSafetensors) st = vl_safetensors_open (other, &error);
  g_assert_null (st);
  g_assert_nonnull (strstr (error->message, "neither NAME/data.pkl"));
}

/* 70 MB of zeros deflate to a few kB: more than the archive's size allows, refused before the
 * allocation. */
static void
test_bomb (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *path = g_build_filename (dir, "bomb.npz", NULL);
  const size_t n = (size_t) 70 << 20;
  g_autofree char *dict = g_strdup_printf ("{'descr': '|u1', 'fortran_order': False, "
                                           "'shape': (%zu,), }", n);
  g_autofree guint8 *zeros = g_malloc0 (n);
  g_autoptr(GBytes) b = npy (dict, zeros, n);
  zip_put (path, "bomb.npy", b, TRUE);
  GStatBuf sb;
  g_assert_cmpint (g_stat (path, &sb), ==, 0);
  g_assert_cmpint (sb.st_size, <, 1 << 20);
  g_autoptr(GError) error = NULL;
  g_autoptr(VlSafetensors) st = vl_safetensors_open (path, &error);
  g_assert_null (st);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, "bomb.npy claims"));
  g_assert_nonnull (strstr (error->message, "beyond what this archive's size allows"));
}

/* A copy of the AugReg fixture to edit. */
static char *
augreg_copy (const char *dir, const char *name)
{
  g_autofree char *from = vl_test_data_path ("fam-jax-augreg", "model.npz", NULL);
  char *to = g_build_filename (dir, name, NULL);
  vl_test_copy_file (from, to);
  return to;
}

static void
assert_load_fails (const char *path, const char *expect)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VlModel) m = vl_model_load (path, &error);
  g_assert_null (m);
  g_assert_nonnull (error);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, path));
  if (strstr (error->message, expect) == NULL)
    g_error ("\"%s\" does not say \"%s\"", error->message, expect);
}

static void
test_jax_refused (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  const float z[64] = { 0 };
  const char *f1 = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 32), }";

  g_autofree char *map = augreg_copy (dir, "map.npz");
  put_npy (map, "MAPHead_0/probe", f1, z, sizeof (float) * 32);
  assert_load_fails (map, "MAPHead_0");

  g_autofree char *hybrid = augreg_copy (dir, "hybrid.npz");
  put_npy (hybrid, "conv_root/kernel", "{'descr': '<f4', 'fortran_order': False, "
           "'shape': (1, 1, 3, 4), }", z, sizeof (float) * 12);
  assert_load_fails (hybrid, "ResNet + ViT hybrid");

  g_autofree char *missing = augreg_copy (dir, "missing.npz");
  zip_remove (missing, "Transformer/encoderblock_1/MlpBlock_3/Dense_1/bias.npy");
  assert_load_fails (missing, "no array Transformer/encoderblock_1/MlpBlock_3/Dense_1/bias");

  g_autofree char *heads = augreg_copy (dir, "heads.npz");   /* 4 heads of 8 in block 1, not 2 of 16 */
  g_autofree float *q = g_new0 (float, 32 * 32);
  put_npy (heads, "Transformer/encoderblock_1/MultiHeadDotProductAttention_1/query/kernel",
           "{'descr': '<f4', 'fortran_order': False, 'shape': (32, 4, 8), }", q,
           sizeof (float) * 32 * 32);
  assert_load_fails (heads, "differ from block 0's");

  g_autofree char *shape = augreg_copy (dir, "shape.npz");
  put_npy (shape, "Transformer/encoderblock_0/MlpBlock_3/Dense_1/kernel",
           "{'descr': '<f4', 'fortran_order': False, 'shape': (64, 16), }", q,
           sizeof (float) * 64 * 16);
  assert_load_fails (shape, "Dense_1/kernel has shape [64,16], expected [64,32]");

  g_autofree char *extra = augreg_copy (dir, "extra.npz");
  put_npy (extra, "Transformer/encoderblock_0/Dropout_0/rate", f1, z, sizeof (float) * 32);
  assert_load_fails (extra, "tensor Transformer/encoderblock_0/Dropout_0/rate is not part of "
                     "the jax ViT layout");

  g_autofree char *nopos = augreg_copy (dir, "nopos.npz");
  zip_remove (nopos, "Transformer/posembed_input/pos_embedding.npy");
  assert_load_fails (nopos, "no learnt position embedding");
}

/* A 21k model's pre_logits layer is left out with its head: the backbone loads headless. */
static void
test_jax_pre_logits (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *path = augreg_copy (dir, "ViT-21k.npz");
  const float z[32 * 32] = { 0 };
  put_npy (path, "pre_logits/kernel", "{'descr': '<f4', 'fortran_order': False, "
           "'shape': (32, 32), }", z, sizeof z);
  put_npy (path, "pre_logits/bias", "{'descr': '<f4', 'fortran_order': False, 'shape': (32,), }",
           z, sizeof (float) * 32);
  g_autoptr(GError) error = NULL;
  g_autoptr(VlModel) m = vl_model_load (path, &error);
  g_assert_no_error (error);
  g_assert_cmpint (vl_model_num_classes (m), ==, 0);
  g_assert_cmpstr (vl_model_geometry (m)->family, ==, "jax");
  g_assert_cmpstr (vl_model_geometry (m)->architecture, ==, "augreg");
  g_assert_cmpint (vl_model_geometry (m)->heads, ==, 2);
}

/* Every truncation and many flipped bytes of a real archive: an error naming the file, or a
 * model, never a crash. */
static void
test_corrupt (void)
{
  g_autofree char *from = vl_test_data_path ("fam-jax-bv-gap", "model.npz", NULL);
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *path = g_build_filename (dir, "model.npz", NULL);
  gchar *bytes = NULL;
  gsize len = 0;
  g_assert_true (g_file_get_contents (from, &bytes, &len, NULL));
  int refused = 0, loaded = 0;
  for (gsize cut = 0; cut < len; cut += len / 97 + 1)
    {
      g_assert_true (g_file_set_contents (path, bytes, (gssize) cut, NULL));
      g_autoptr(GError) error = NULL;
      g_autoptr(VlModel) m = vl_model_load (path, &error);
      g_assert_null (m);
      g_assert_nonnull (strstr (error->message, path));
      refused++;
    }
  GRand *rand = g_rand_new_with_seed (9);
  for (int k = 0; k < 150; k++)
    {
      g_autofree gchar *copy = g_memdup2 (bytes, len);
      gsize at = (gsize) g_rand_int_range (rand, 0, (gint32) len);
      copy[at] ^= (gchar) (1 + g_rand_int_range (rand, 0, 255));
      g_assert_true (g_file_set_contents (path, copy, (gssize) len, NULL));
      g_autoptr(GError) error = NULL;
      g_autoptr(VlModel) m = vl_model_load (path, &error);
      if (m)
        loaded++;
      else
        {
          g_assert_nonnull (strstr (error->message, path));
          refused++;
        }
    }
  g_rand_free (rand);
  g_free (bytes);
  /* every entry's CRC-32 is checked: only a byte no one reads (a time stamp) goes unnoticed */
  g_test_message ("%d refused, %d loaded", refused, loaded);
  g_assert_cmpint (refused, >, 97 + 135);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/npz/values", test_values);
  g_test_add_func ("/npz/refused", test_refused);
  g_test_add_func ("/npz/bomb", test_bomb);
  g_test_add_func ("/npz/jax/refused", test_jax_refused);
  g_test_add_func ("/npz/jax/pre-logits", test_jax_pre_logits);
  g_test_add_func ("/npz/corrupt", test_corrupt);
  return g_test_run ();
}
