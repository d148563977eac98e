/* test-onnx.c: `vitlab-cli export --format onnx` (VITLAB_CLI) and the protobuf encoder under it.
 *
 * The encoder writes protobuf's documented examples byte for byte. Every fixture family
 * (../shared/fixtures/vit-timm-tiny, tests/data/fam-*, tests/data/geom-*), the real ViT-Ti and a
 * regression run folder with an MLP head are exported, and each file goes through python3-onnx's
 * onnx.checker.check_model (full_check: the shape inference of every node) run by Debian's
 * python3 (VITLAB_PYTHON); the file's summary (IR version, opset, input and output names and
 * shapes, op types, the patch Conv's kernel and strides, the float32 weights it holds, the
 * metadata) is then compared with the model vitlab loaded. Numbers are compared in ONNX Runtime
 * by `make interop` (tests/interop/check_onnx.js): onnx 1.12 has no reference evaluator; the
 * exports of models with CNN stems are also run here by tests/onnx_torch_eval.py (PyTorch ops)
 * against `vitlab-cli forward`. Every run goes through g_spawn_sync with an argv array. */
#include "vl-test-util.h"

#include "vl-model.h"
#include "vl-onnx.h"

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* ------------------------------------------------------------------ running programs */

typedef struct {
  int   status;
  char *out;
  char *err;
} Run;

static void
run_free (Run *r)
{
  g_free (r->out);
  g_free (r->err);
  g_free (r);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Run, run_free)

static Run *
spawn (GPtrArray *argv)
{
  g_ptr_array_add (argv, NULL);
  Run *r = g_new0 (Run, 1);
  g_autofree char *cmdline = g_strjoinv (" ", (char **) argv->pdata);
  g_autoptr(GError) error = NULL;
  int wait_status = 0;
  g_assert_true (g_spawn_sync (NULL, (char **) argv->pdata, NULL, G_SPAWN_STDIN_FROM_DEV_NULL,
                               NULL, NULL, &r->out, &r->err, &wait_status, &error));
  g_assert_no_error (error);
  g_test_message ("$ %.300s\n%.2000s%s", cmdline, r->out, r->err);
  if (WIFSIGNALED (wait_status))
    g_error ("%s: killed by signal %d\nstderr:\n%s", cmdline, WTERMSIG (wait_status), r->err);
  r->status = WEXITSTATUS (wait_status);
  if (strstr (r->err, "Sanitizer") || strstr (r->err, "runtime error:"))
    g_error ("%s: sanitizer report:\n%s", cmdline, r->err);
  return r;
}

static Run *
cli (const char *first, ...) G_GNUC_NULL_TERMINATED;

static Run *
cli (const char *first, ...)
{
  const char *path = g_getenv ("VITLAB_CLI");
  if (path == NULL || !g_file_test (path, G_FILE_TEST_IS_EXECUTABLE))
    g_error ("VITLAB_CLI must name the built vitlab-cli (got %s)", path ? path : "nothing");
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();
  g_ptr_array_add (argv, (gpointer) path);
  va_list ap;
  va_start (ap, first);
  for (const char *a = first; a; a = va_arg (ap, const char *))
    g_ptr_array_add (argv, (gpointer) a);
  va_end (ap);
  return spawn (argv);
}

/* python3-onnx: the checker (full_check), then a JSON summary of the file on stdout. */
static const char *summary_py =
  "import json, sys, onnx\n"
  "from onnx import numpy_helper\n"
  "m = onnx.load(sys.argv[1])\n"
  "onnx.checker.check_model(m, full_check=True)\n"
  "def dims(v):\n"
  "    return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]\n"
  "conv = [n for n in m.graph.node if n.op_type == 'Conv']\n"
  "floats = 0\n"
  "for t in m.graph.initializer:\n"
  "    if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) > 0:\n"
  "        floats += numpy_helper.to_array(t).size\n"
  "print(json.dumps({\n"
  "  'ir_version': m.ir_version,\n"
  "  'opset': [[o.domain, o.version] for o in m.opset_import],\n"
  "  'inputs': [[i.name, dims(i)] for i in m.graph.input],\n"
  "  'outputs': [[o.name, dims(o)] for o in m.graph.output],\n"
  "  'ops': sorted(set(n.op_type for n in m.graph.node)),\n"
  "  'conv': {a.name: list(a.ints) for a in conv[0].attribute} if conv else {},\n"
  "  'weights': int(floats),\n"
  "  'meta': {p.key: p.value for p in m.metadata_props}}))\n";

/* Checks path with python3-onnx and returns its summary (a JSON object). */
static JsonParser *
onnx_summary (const char *path, JsonObject **root)
{
  const char *py = g_getenv ("VITLAB_PYTHON");
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();
  g_ptr_array_add (argv, (gpointer) (py ? py : "/usr/bin/python3"));
  g_ptr_array_add (argv, "-c");
  g_ptr_array_add (argv, (gpointer) summary_py);
  g_ptr_array_add (argv, (gpointer) path);
  g_autoptr(Run) r = spawn (argv);
  if (r->status != 0)
    g_error ("%s: onnx.checker.check_model failed:\n%s", path, r->err);
  JsonParser *p = json_parser_new ();
  g_autoptr(GError) error = NULL;
  g_assert_true (json_parser_load_from_data (p, r->out, -1, &error));
  g_assert_no_error (error);
  *root = json_node_get_object (json_parser_get_root (p));
  return p;
}

static gboolean
has_string (JsonArray *a, const char *s)
{
  for (guint i = 0; i < json_array_get_length (a); i++)
    if (g_strcmp0 (json_array_get_string_element (a, i), s) == 0)
      return TRUE;
  return FALSE;
}

/* [name, ["batch", d1, ...]] */
static void
assert_value (JsonArray *v, const char *name, int ndim, const int64_t *dims)
{
  g_assert_cmpstr (json_array_get_string_element (v, 0), ==, name);
  JsonArray *d = json_array_get_array_element (v, 1);
  g_assert_cmpint (json_array_get_length (d), ==, ndim);
  g_assert_cmpstr (json_array_get_string_element (d, 0), ==, "batch");
  for (int i = 1; i < ndim; i++)
    g_assert_cmpint (json_array_get_int_element (d, i), ==, dims[i]);
}

static void
assert_floats_json (const char *json, const float *want, int n)
{
  g_autoptr(JsonParser) p = json_parser_new ();
  g_assert_true (json_parser_load_from_data (p, json, -1, NULL));
  JsonArray *a = json_node_get_array (json_parser_get_root (p));
  g_assert_cmpint (json_array_get_length (a), ==, n);
  for (int i = 0; i < n; i++)
    g_assert_cmpfloat_with_epsilon (json_array_get_double_element (a, i), want[i], 1e-6);
}

/* ------------------------------------------------------------------ the encoder */

static GByteArray *
hex_check (GByteArray *b, const char *hex)
{
  GString *s = g_string_new (NULL);
  for (guint i = 0; i < b->len; i++)
    g_string_append_printf (s, "%s%02x", i ? " " : "", b->data[i]);
  g_assert_cmpstr (s->str, ==, hex);
  g_string_free (s, TRUE);
  g_byte_array_set_size (b, 0);
  return b;
}

static void
test_encoder (void)
{
  g_autoptr(GByteArray) b = g_byte_array_new ();
  vl_pb_varint (b, 1);
  hex_check (b, "01");
  vl_pb_varint (b, 300);                      /* protobuf's encoding guide */
  hex_check (b, "ac 02");
  vl_pb_int (b, 1, 150);                      /* "08 96 01" */
  hex_check (b, "08 96 01");
  vl_pb_int (b, 1, -1);                       /* int64 -1: ten bytes */
  hex_check (b, "08 ff ff ff ff ff ff ff ff ff 01");
  vl_pb_string (b, 2, "testing");             /* "12 07 74 65 73 74 69 6e 67" */
  hex_check (b, "12 07 74 65 73 74 69 6e 67");
  vl_pb_float (b, 2, 1.0f);                   /* wire type 5, little-endian IEEE */
  hex_check (b, "15 00 00 80 3f");
  GByteArray *sub = g_byte_array_new ();
  vl_pb_int (sub, 1, 150);
  vl_pb_message (b, 3, sub);                  /* "1a 03 08 96 01" */
  hex_check (b, "1a 03 08 96 01");
  vl_pb_bytes (b, 20, "", 0);                 /* a two-byte tag, empty payload */
  hex_check (b, "a2 01 00");
}

/* ------------------------------------------------------------------ exports */

static char *tmpdir;

/* Exports src (with `pool`, NULL: the model's own) and checks the file against the model. */
static void
check_export (const char *name, const char *src, const char *pool, VlModel *m,
              const char *task, int n_outputs)
{
  g_autofree char *file = g_strdup_printf ("%s/%s%s%s.onnx", tmpdir, name, pool ? "-" : "",
                                           pool ? pool : "");
  g_autoptr(Run) r = pool ? cli ("export", src, "--format", "onnx", "--pool", pool, "--out",
                                 file, NULL)
                          : cli ("export", src, "--format", "onnx", "--out", file, NULL);
  if (r->status != 0)
    g_error ("%s: export failed: %s", name, r->err);
  g_assert_nonnull (strstr (r->out, "ONNX opset 17"));
  JsonObject *o = NULL;
  g_autoptr(JsonParser) p = onnx_summary (file, &o);
  const VlGeometry *g = vl_model_geometry (m);
  VlPoolKind pk = vl_model_pool (m);
  if (pool)
    g_assert_true (vl_pool_from_string (pool, &pk));

  g_assert_cmpint (json_object_get_int_member (o, "ir_version"), ==, 8);
  JsonArray *opset = json_object_get_array_member (o, "opset");
  g_assert_cmpint (json_array_get_length (opset), ==, 1);
  g_assert_cmpstr (json_array_get_string_element (json_array_get_array_element (opset, 0), 0),
                   ==, "");
  g_assert_cmpint (json_array_get_int_element (json_array_get_array_element (opset, 0), 1), ==,
                   17);

  JsonArray *in = json_object_get_array_member (o, "inputs");
  g_assert_cmpint (json_array_get_length (in), ==, 1);
  const int S = g->input_size % g->patch == 0 ? g->input_size : g->img_size;
  const int64_t NP = (int64_t) (S / g->patch) * (S / g->patch);
  int64_t in_dims[4] = { 0, g->in_chans, S, S };
  assert_value (json_array_get_array_element (in, 0), "pixel_values", 4, in_dims);

  JsonArray *out = json_object_get_array_member (o, "outputs");
  const int K = vl_model_num_classes (m);
  guint i = 0;
  if (K > 0)
    {
      int64_t d[2] = { 0, K };
      g_assert_cmpint (K, ==, n_outputs);
      assert_value (json_array_get_array_element (out, i++),
                    strcmp (task, "regress") == 0 ? "values" : "logits", 2, d);
    }
  int64_t fd[2] = { 0, g->width };
  assert_value (json_array_get_array_element (out, i++), "features", 2, fd);
  if (g->embed_dim > 0)
    {
      int64_t ed[2] = { 0, g->embed_dim };
      assert_value (json_array_get_array_element (out, i++), "embedding", 2, ed);
    }
  g_assert_cmpint (json_array_get_length (out), ==, i);

  /* the ops of every variant */
  JsonArray *ops = json_object_get_array_member (o, "ops");
  const char *always[] = { "Conv", "LayerNormalization", "MatMul", "Softmax", "Transpose",
                           "Reshape" };
  for (guint k = 0; k < G_N_ELEMENTS (always); k++)
    g_assert_true (has_string (ops, always[k]));
  /* a CNN stem's ops (SiLU as x * Sigmoid (x); GroupNorm through ReduceMean) */
  const VlStemKind stem = vl_model_stem_kind (m);
  g_assert_true (has_string (ops, "Sigmoid") == (g->quick_gelu || stem == VL_STEM_MBCONV));
  g_assert_true (has_string (ops, "Erf") ==
                 ((!g->quick_gelu && !g->gelu_tanh) || vl_model_head_kind (m) == VL_HEAD_MLP));
  g_assert_true (has_string (ops, "Tanh") == g->gelu_tanh);
  g_assert_true (has_string (ops, "ReduceMean") ==
                 (pk == VL_POOL_AVG || stem == VL_STEM_RESNETV2));
  g_assert_true (has_string (ops, "BatchNormalization") ==
                 (stem == VL_STEM_CONV || stem == VL_STEM_MBCONV));
  g_assert_true (has_string (ops, "GlobalAveragePool") == (stem == VL_STEM_MBCONV));
  g_assert_true (has_string (ops, "MaxPool") == (stem == VL_STEM_RESNETV2));
  g_assert_true (has_string (ops, "Relu") == (stem == VL_STEM_CONV || stem == VL_STEM_RESNETV2));
  g_assert_true (has_string (ops, "ReduceMax") == (pk == VL_POOL_MAX));
  g_assert_true (has_string (ops, "Slice") == (pk != VL_POOL_TOKEN && g->n_prefix > 0));
  g_assert_true (has_string (ops, "Expand") == (g->n_prefix > 0));

  /* the patch embedding: kernel = stride = patch; a stem's first conv: stride 2, with its
   * padding (explicit, asymmetric for timm's "same" at an even side: 7x7 / 2 pads 2 before and
   * 3 after) */
  JsonObject *conv = json_object_get_object_member (o, "conv");
  JsonArray *ks = json_object_get_array_member (conv, "kernel_shape");
  JsonArray *st = json_object_get_array_member (conv, "strides");
  for (int k = 0; k < 2; k++)
    {
      g_assert_cmpint (json_array_get_int_element (ks, k), ==, stem ? (stem == VL_STEM_RESNETV2
                                                                        ? 7 : 3) : g->patch);
      g_assert_cmpint (json_array_get_int_element (st, k), ==, stem ? 2 : g->patch);
    }
  if (stem)
    {
      /* (top, left, bottom, right) */
      JsonArray *pads = json_object_get_array_member (conv, "pads");
      const gboolean same = stem == VL_STEM_RESNETV2;
      g_assert_cmpint (S % 2, ==, 0);
      for (int k = 0; k < 4; k++)
        g_assert_cmpint (json_array_get_int_element (pads, k), ==, same ? (k < 2 ? 2 : 3) : 1);
    }

  /* every parameter is in the file once (a stem's BatchNorm statistics too, a standardized
   * weight in place of its raw one), but pos_embed: the position entries of the prefix
   * tokens are folded into them (unless no_embed_class), the patches' are at the input's grid;
   * a regression export adds the targets' mean and std */
  const int64_t pos_numel = (int64_t) ((g->no_embed_class ? 0 : g->n_prefix) +
                                       g->grid * g->grid) * g->width;
  int64_t want = vl_model_n_params (m) - pos_numel + NP * g->width;
  if (strcmp (task, "regress") == 0)
    want += 2 * K;
  /* an attention pool's latent, q.weight and q.bias are one query (W) in the graph; the whole
   * pool is left out when the export pools another way */
  int64_t pool_numel = 0;
  for (int i = 0; i < vl_model_n_tensors (m); i++)
    if (g_str_has_prefix (vl_model_tensor_name (m, i), "attn_pool."))
      {
        int64_t numel;
        vl_model_tensor_data (m, i, NULL, NULL, &numel);
        pool_numel += numel;
      }
  g_assert_true ((pool_numel > 0) == g->attn_pool);
  want -= pk == VL_POOL_MAP ? (int64_t) g->width * g->width + g->width : pool_numel;
  g_assert_cmpint (json_object_get_int_member (o, "weights"), ==, want);

  JsonObject *meta = json_object_get_object_member (o, "meta");
  g_assert_cmpstr (json_object_get_string_member (meta, "vitlab.task"), ==, task);
  g_assert_cmpstr (json_object_get_string_member (meta, "vitlab.family"), ==, g->family);
  g_assert_cmpint (atoi (json_object_get_string_member (meta, "input_size")), ==, S);
  g_assert_cmpint (atoi (json_object_get_string_member (meta, "image_size")), ==, g->input_size);
  g_assert_cmpint (atoi (json_object_get_string_member (meta, "in_chans")), ==, g->in_chans);
  g_assert_cmpfloat_with_epsilon (g_ascii_strtod (json_object_get_string_member (meta, "crop_pct"),
                                                  NULL), g->crop_pct, 1e-6);
  g_assert_cmpstr (json_object_get_string_member (meta, "interpolation"), ==, g->interpolation);
  g_assert_cmpstr (json_object_get_string_member (meta, "pooling"), ==, vl_pool_name (pk));
  assert_floats_json (json_object_get_string_member (meta, "mean"), g->mean, g->in_chans);
  assert_floats_json (json_object_get_string_member (meta, "std"), g->std, g->in_chans);
  const char *const *names = vl_model_class_names (m);
  if (names && K > 0 && strcmp (task, "classify") == 0)
    {
      g_autoptr(JsonParser) np = json_parser_new ();
      g_assert_true (json_parser_load_from_data (
        np, json_object_get_string_member (meta, "class_names"), -1, NULL));
      JsonArray *a = json_node_get_array (json_parser_get_root (np));
      g_assert_cmpint (json_array_get_length (a), ==, K);
      for (int k = 0; k < K; k++)
        g_assert_cmpstr (json_array_get_string_element (a, k), ==, names[k]);
    }
  g_test_message ("%s%s%s: checker passed, %" G_GINT64_FORMAT " weights", name,
                  pool ? " pool " : "", pool ? pool : "", want);
}

static void
export_source (const char *name, const char *src, const char *pool)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VlModel) m = vl_model_load (src, &error);
  g_assert_no_error (error);
  check_export (name, src, pool, m, vl_model_head_kind (m) == VL_HEAD_NONE ? "features"
                                    : "classify", vl_model_num_classes (m));
}

static void
test_fixture (void)
{
  g_autofree char *src = vl_test_shared_path ("fixtures", "vit-timm-tiny", NULL);
  export_source ("vit-timm-tiny", src, NULL);
  export_source ("vit-timm-tiny", src, "avg");
  export_source ("vit-timm-tiny", src, "max");
}

/* A copy of the model folder src under tmpdir/name whose config.json says a preprocessing size of
 * `size` (pretrained_cfg input_size [3, S, S] → [3, size, size]). */
static char *
copy_with_input_size (const char *src, const char *name, int size)
{
  char *dir = g_build_filename (tmpdir, name, NULL);
  g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
  g_autofree char *from = g_build_filename (src, "model.safetensors", NULL);
  g_autofree char *to = g_build_filename (dir, "model.safetensors", NULL);
  vl_test_copy_file (from, to);
  g_autofree char *cfg_from = g_build_filename (src, "config.json", NULL);
  g_autofree char *cfg = NULL;
  g_assert_true (g_file_get_contents (cfg_from, &cfg, NULL, NULL));
  g_autoptr(GRegex) re = g_regex_new ("\"input_size\": \\[\\s*3,\\s*\\d+,\\s*\\d+\\s*\\]", 0, 0,
                                      NULL);
  g_autofree char *want = g_strdup_printf ("\"input_size\": [3, %d, %d]", size, size);
  g_autofree char *resized = g_regex_replace_literal (re, cfg, -1, 0, want, 0, NULL);
  g_assert_nonnull (strstr (resized, want));
  g_autofree char *cfg_to = g_build_filename (dir, "config.json", NULL);
  g_assert_true (g_file_set_contents (cfg_to, resized, -1, NULL));
  return dir;
}

/* A model whose preprocessing size (48) is not its native one (32): the graph takes 48 with the
 * position embedding resampled to the 6x6 grid. */
static void
test_input_size (void)
{
  g_autofree char *src = vl_test_shared_path ("fixtures", "vit-timm-tiny", NULL);
  g_autofree char *dir = copy_with_input_size (src, "tiny-48", 48);
  g_autoptr(GError) error = NULL;
  g_autoptr(VlModel) m = vl_model_load (dir, &error);
  g_assert_no_error (error);
  g_assert_cmpint (vl_model_geometry (m)->input_size, ==, 48);
  g_assert_cmpint (vl_model_geometry (m)->img_size, ==, 32);
  export_source ("tiny-48", dir, NULL);
}

static void
test_real (void)
{
  g_autofree char *src = vl_test_shared_path ("weights", "vit-tiny-augreg-in1k", NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(VlModel) m = vl_model_load (src, &error);
  g_assert_no_error (error);
  g_assert_cmpint (vl_model_num_classes (m), ==, 1000);
  g_assert_nonnull (vl_model_class_names (m));   /* 1000 names go into the metadata */
  export_source ("vit-tiny-real", src, NULL);
}

static void
test_families (void)
{
  const char *fams[] = { "fam-deit-dist", "fam-hf-dino", "fam-hf-vit", "fam-openclip",
                         "fam-openclip-gelu", "fam-timm-gap", "fam-timm-reg-ls",
                         "fam-timm-siglip", "fam-hf-siglip" };
  for (guint i = 0; i < G_N_ELEMENTS (fams); i++)
    {
      g_autofree char *src = vl_test_data_path (fams[i], NULL);
      export_source (fams[i], src, NULL);
    }
  /* registers and DeiT's distillation token are left out of avg / max pooling */
  g_autofree char *reg = vl_test_data_path ("fam-timm-reg-ls", NULL);
  export_source ("fam-timm-reg-ls", reg, "max");
  g_autofree char *deit = vl_test_data_path ("fam-deit-dist", NULL);
  export_source ("fam-deit-dist", deit, "avg");
  /* SigLIP pooled by the mean: its attention pool left out of the graph */
  g_autofree char *siglip = vl_test_data_path ("fam-timm-siglip", NULL);
  export_source ("fam-timm-siglip", siglip, "avg");
  /* torchvision saves no config; its fixture's 4 heads are named beside a copy */
  g_autofree char *dir = g_build_filename (tmpdir, "fam-torchvision", NULL);
  g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
  g_autofree char *from = vl_test_data_path ("fam-torchvision", "model.safetensors", NULL);
  g_autofree char *to = g_build_filename (dir, "model.safetensors", NULL);
  g_autofree char *cfg = g_build_filename (dir, "config.json", NULL);
  vl_test_copy_file (from, to);
  g_assert_true (g_file_set_contents (cfg, "{\"num_heads\": 4}", -1, NULL));
  export_source ("fam-torchvision", dir, NULL);
}

static void
test_geometries (void)
{
  const char *geoms[] = { "geom-bf16", "geom-f16", "geom-noheads", "geom-p4-d2-h4",
                          "geom-p7-d3-h2-gray" };
  for (guint i = 0; i < G_N_ELEMENTS (geoms); i++)
    {
      g_autofree char *src = vl_test_data_path (geoms[i], NULL);
      export_source (geoms[i], src, NULL);
    }
}

/* ONNX output `out` of the evaluated file against `want` in ref (max abs diff <= 1e-4, at a
 * scale where that means something). */
static double
compare_output (VlSafetensors *got, const char *out, VlSafetensors *ref, const char *want,
                const char *what)
{
  int64_t n = 0, m = 0;
  g_autofree float *a = vl_test_read (got, out, &n);
  g_autofree float *b = vl_test_read (ref, want, &m);
  g_assert_cmpint (n, ==, m);
  const double d = vl_test_max_abs_diff (a, b, n);
  double scale = 0;
  for (int64_t i = 0; i < n; i++)
    scale = MAX (scale, fabs (b[i]));
  g_test_message ("%s: %s max abs diff %.3g (max |%s| %.3g)", what, out, d, want, scale);
  g_assert_cmpfloat (d, <=, 1e-4);
  g_assert_cmpfloat (scale, >, 100 * d);
  return d;
}

/* A model with a CNN stem: exported and checked as above, then run by tests/onnx_torch_eval.py
 * (PyTorch ops, float64; onnx 1.12 has no reference evaluator) on `images` (FILE[:TENSOR]): its
 * logits and features must be `vitlab-cli forward`'s on the same images, and with torch_ref (an
 * expected.safetensors) its logits PyTorch's logits_eval (BatchNorm on the running statistics),
 * each within 1e-4. */
static void
check_stem_export (const char *name, const char *src, const char *images, const char *torch_ref)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VlModel) m = vl_model_load (src, &error);
  g_assert_no_error (error);
  g_assert_cmpint (vl_model_stem_kind (m), !=, VL_STEM_PATCH);
  check_export (name, src, NULL, m, "classify", vl_model_num_classes (m));

  const char *py = g_getenv ("VITLAB_PYTHON");
  g_autofree char *eval_py = g_test_build_filename (G_TEST_DIST, "onnx_torch_eval.py", NULL);
  g_autofree char *file = g_strdup_printf ("%s/%s.onnx", tmpdir, name);
  g_autofree char *evald = g_strdup_printf ("%s/%s.eval.safetensors", tmpdir, name);
  g_autofree char *fwd = g_strdup_printf ("%s/%s.forward.safetensors", tmpdir, name);
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();
  g_ptr_array_add (argv, (gpointer) (py ? py : "/usr/bin/python3"));
  g_ptr_array_add (argv, eval_py);
  g_ptr_array_add (argv, file);
  g_ptr_array_add (argv, (gpointer) images);
  g_ptr_array_add (argv, evald);
  g_autoptr(Run) e = spawn (argv);
  if (e->status != 0)
    g_error ("%s: onnx_torch_eval.py failed:\n%s", file, e->err);
  g_autoptr(Run) f = cli ("forward", src, "--images", images, "--out", fwd, NULL);
  if (f->status != 0)
    g_error ("%s: forward failed: %s", src, f->err);

  g_autoptr(VlSafetensors) got = vl_test_open (evald);
  g_autoptr(VlSafetensors) ref = vl_test_open (fwd);
  compare_output (got, "logits", ref, "logits", name);
  compare_output (got, "features", ref, "features", name);
  if (torch_ref)
    {
      g_autoptr(VlSafetensors) t = vl_test_open (torch_ref);
      compare_output (got, "logits", t, "logits_eval", name);
    }
}

/* CNN stems: the fixtures of each stem kind (tests/data/stem-conv, stem-mbconv, and timm's hybrid
 * ResNetV2 layouts hybrid-s, hybrid-r2; gen-stems.py) on their own images, and stem-conv and
 * hybrid-s at a preprocessing size of 48 (the position embedding resampled, timm's same padding
 * computed for 48) on the vit-timm-tiny fixture's 48 px images. ONNX Runtime runs the same kinds
 * in `make interop`. */
static void
test_stems (void)
{
  const char *names[] = { "stem-conv", "stem-mbconv", "hybrid-s", "hybrid-r2" };
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    {
      g_autofree char *src = vl_test_data_path (names[i], NULL);
      g_autofree char *images = vl_test_data_path (names[i], "inputs.safetensors", NULL);
      g_autofree char *expected = vl_test_data_path (names[i], "expected.safetensors", NULL);
      check_stem_export (names[i], src, images, expected);
    }
  g_autofree char *in48 = vl_test_shared_path ("fixtures", "vit-timm-tiny", "inputs.safetensors",
                                               NULL);
  g_autofree char *images48 = g_strconcat (in48, ":images48", NULL);
  const char *at48[] = { "stem-conv", "hybrid-s" };
  for (guint i = 0; i < G_N_ELEMENTS (at48); i++)
    {
      g_autofree char *src = vl_test_data_path (at48[i], NULL);
      g_autofree char *name = g_strconcat (at48[i], "-48", NULL);
      g_autofree char *dir = copy_with_input_size (src, name, 48);
      check_stem_export (name, dir, images48, NULL);
    }
}

/* A regression run folder: the fixture with an MLP head of 2 outputs, saved as the trainer
 * saves runs, and a run.json naming the targets and their standardisation. */
static char *
make_regress_run (const char *name, int n_targets)
{
  g_autofree char *src = vl_test_shared_path ("fixtures", "vit-timm-tiny", NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(VlModel) m = vl_model_load (src, &error);
  g_assert_no_error (error);
  vl_model_set_head (m, VL_HEAD_MLP, 2, 24, 7);
  char *dir = g_build_filename (tmpdir, name, NULL);
  g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
  g_autofree char *st = g_build_filename (dir, "model.safetensors", NULL);
  g_autofree char *cfg = g_build_filename (dir, "config.json", NULL);
  g_assert_true (vl_model_save_checkpoint (m, st, cfg, &error));
  g_assert_no_error (error);
  g_autofree char *run_json = g_build_filename (dir, "run.json", NULL);
  const char *task = n_targets == 2
    ? "{\"task\": {\"kind\": \"regress\", \"loss\": \"mse\", \"targets\": [\"angle\", \"scale\"],"
      " \"mean\": [3.5, -1.25], \"std\": [12.0, 0.5]}}"
    : "{\"task\": {\"kind\": \"regress\", \"loss\": \"mse\", \"targets\": [\"angle\"],"
      " \"mean\": [3.5], \"std\": [12.0]}}";
  g_assert_true (g_file_set_contents (run_json, task, -1, NULL));
  return dir;
}

static void
test_regress_run (void)
{
  g_autofree char *dir = make_regress_run ("regress-run", 2);
  g_autoptr(GError) error = NULL;
  g_autoptr(VlModel) m = vl_model_load (dir, &error);
  g_assert_no_error (error);
  g_assert_cmpint (vl_model_head_kind (m), ==, VL_HEAD_MLP);
  check_export ("regress-run", dir, NULL, m, "regress", 2);

  g_autofree char *file = g_build_filename (tmpdir, "regress-run.onnx", NULL);
  JsonObject *o = NULL;
  g_autoptr(JsonParser) p = onnx_summary (file, &o);
  JsonObject *meta = json_object_get_object_member (o, "meta");
  g_assert_cmpstr (json_object_get_string_member (meta, "target_names"), ==,
                   "[\"angle\", \"scale\"]");
  const float mean[2] = { 3.5f, -1.25f }, std[2] = { 12.0f, 0.5f };
  assert_floats_json (json_object_get_string_member (meta, "target_mean"), mean, 2);
  assert_floats_json (json_object_get_string_member (meta, "target_std"), std, 2);
  g_assert_false (json_object_has_member (meta, "class_names"));
}

/* A classification run folder: the class names come from the run (its config.json). */
static void
test_classify_run (void)
{
  g_autofree char *src = vl_test_shared_path ("fixtures", "vit-timm-tiny", NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(VlModel) m = vl_model_load (src, &error);
  g_assert_no_error (error);
  const char *names[] = { "ant", "bee", "cat \"tabby\"", "dog\\wolf", "eel", NULL };
  vl_model_set_class_names (m, names);
  g_autofree char *dir = g_build_filename (tmpdir, "classify-run", NULL);
  g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
  g_autofree char *st = g_build_filename (dir, "model.safetensors", NULL);
  g_autofree char *cfg = g_build_filename (dir, "config.json", NULL);
  g_assert_true (vl_model_save_checkpoint (m, st, cfg, &error));
  g_assert_no_error (error);
  g_autofree char *run_json = g_build_filename (dir, "run.json", NULL);
  g_assert_true (g_file_set_contents (run_json, "{\"task\": {\"kind\": \"classify\"}}", -1,
                                      NULL));
  /* check_export compares the metadata's class_names (JSON) with the model's, quotes and
   * backslashes included */
  check_export ("classify-run", dir, NULL, m, "classify", 5);
}

/* Segmentation runs trained here for one epoch through the CLI, one per seg head: the file
 * holds seg_logits (N, K, S, S) at the run's --img-size (48 resamples the position embedding,
 * native 32), the class names with the background, and the squash preprocessing. ONNX Runtime
 * checks the values against `vitlab-cli forward` (make interop). */
static void
check_segment_run (const char *head, int size, const char *ops_wanted[], int n_ops)
{
  g_autofree char *src = vl_test_shared_path ("fixtures", "vit-timm-tiny", NULL);
  g_autofree char *run = g_strdup_printf ("%s/segment-run-%s", tmpdir, head);
  g_autofree char *data = g_strdup_printf ("fashion-mnist-scenes:train=16,val=8,size=%d", size);
  g_autofree char *img = g_strdup_printf ("%d", size);
  g_autoptr(Run) t = cli ("train", "--task", "segment", "--seg-head", head, "--img-size", img,
                          "--epochs", "1", "--backbone", src, "--data", data, "--out", run,
                          NULL);
  if (t->status != 0)
    g_error ("training the %s segmentation run failed: %s", head, t->err);
  g_autofree char *file = g_strdup_printf ("%s/segment-%s.onnx", tmpdir, head);
  g_autoptr(Run) r = cli ("export", run, "--format", "onnx", "--out", file, NULL);
  if (r->status != 0)
    g_error ("%s: export failed: %s", run, r->err);
  g_assert_nonnull (strstr (r->out, "seg_logits"));
  JsonObject *o = NULL;
  g_autoptr(JsonParser) p = onnx_summary (file, &o);

  int64_t in_dims[4] = { 0, 3, size, size };
  JsonArray *in = json_object_get_array_member (o, "inputs");
  assert_value (json_array_get_array_element (in, 0), "pixel_values", 4, in_dims);
  JsonArray *out = json_object_get_array_member (o, "outputs");
  g_assert_cmpint (json_array_get_length (out), ==, 2);   /* no logits: the model has no head */
  int64_t seg_dims[4] = { 0, 11, size, size }, fd[2] = { 0, 48 };
  assert_value (json_array_get_array_element (out, 0), "seg_logits", 4, seg_dims);
  assert_value (json_array_get_array_element (out, 1), "features", 2, fd);

  JsonArray *ops = json_object_get_array_member (o, "ops");
  for (int i = 0; i < n_ops; i++)
    g_assert_true (has_string (ops, ops_wanted[i]));
  g_assert_true (has_string (ops, "ConvTranspose") == (strcmp (head, "upconv") == 0));

  JsonObject *meta = json_object_get_object_member (o, "meta");
  g_assert_cmpstr (json_object_get_string_member (meta, "vitlab.task"), ==, "segment");
  g_assert_cmpstr (json_object_get_string_member (meta, "crop_mode"), ==, "squash");
  g_assert_cmpstr (json_object_get_string_member (meta, "crop_pct"), ==, "1");
  g_assert_cmpstr (json_object_get_string_member (meta, "image_size"), ==, img);
  const char *names = json_object_get_string_member (meta, "class_names");
  g_assert_true (g_str_has_prefix (names, "[\"background\", \"T-shirt/top\""));
  g_assert_true (g_str_has_suffix (names, "\"Ankle boot\"]"));
}

static void
test_segment_run (void)
{
  const char *linear[] = { "Conv", "Resize", "Slice" };
  check_segment_run ("linear", 32, linear, G_N_ELEMENTS (linear));
  const char *upconv[] = { "Conv", "ConvTranspose", "Resize", "Erf", "LayerNormalization" };
  check_segment_run ("upconv", 48, upconv, G_N_ELEMENTS (upconv));
}

/* A detection run trained here for one epoch at 48 (a 6x6 grid): FCOSHead's three outputs per
 * location, the squash preprocessing, the classes with the background. */
static void
test_detect_run (void)
{
  g_autofree char *src = vl_test_shared_path ("fixtures", "vit-timm-tiny", NULL);
  g_autofree char *run = g_build_filename (tmpdir, "detect-run", NULL);
  g_autoptr(Run) t = cli ("train", "--task", "detect", "--img-size", "48", "--epochs", "1",
                          "--backbone", src, "--data",
                          "fashion-mnist-scenes:train=16,val=8,size=48", "--out", run, NULL);
  if (t->status != 0)
    g_error ("training the detection run failed: %s", t->err);
  g_autofree char *file = g_build_filename (tmpdir, "detect.onnx", NULL);
  g_autoptr(Run) r = cli ("export", run, "--format", "onnx", "--out", file, NULL);
  if (r->status != 0)
    g_error ("%s: export failed: %s", run, r->err);
  g_assert_nonnull (strstr (r->out, "cls_logits, bbox_regression, bbox_ctrness"));
  JsonObject *o = NULL;
  g_autoptr(JsonParser) p = onnx_summary (file, &o);
  JsonArray *out = json_object_get_array_member (o, "outputs");
  g_assert_cmpint (json_array_get_length (out), ==, 4);
  int64_t cls[3] = { 0, 36, 11 }, reg[3] = { 0, 36, 4 }, ctr[3] = { 0, 36, 1 }, fd[2] = { 0, 48 };
  assert_value (json_array_get_array_element (out, 0), "cls_logits", 3, cls);
  assert_value (json_array_get_array_element (out, 1), "bbox_regression", 3, reg);
  assert_value (json_array_get_array_element (out, 2), "bbox_ctrness", 3, ctr);
  assert_value (json_array_get_array_element (out, 3), "features", 2, fd);
  JsonArray *ops = json_object_get_array_member (o, "ops");
  g_assert_true (has_string (ops, "Relu"));
  g_assert_true (has_string (ops, "Conv"));
  g_assert_false (has_string (ops, "Resize"));
  JsonObject *meta = json_object_get_object_member (o, "meta");
  g_assert_cmpstr (json_object_get_string_member (meta, "vitlab.task"), ==, "detect");
  g_assert_cmpstr (json_object_get_string_member (meta, "crop_mode"), ==, "squash");
  g_assert_cmpstr (json_object_get_string_member (meta, "image_size"), ==, "48");
  g_assert_true (g_str_has_prefix (json_object_get_string_member (meta, "class_names"),
                                   "[\"background\", \"T-shirt/top\""));
}

/* ------------------------------------------------------------------ errors */

static void
test_errors (void)
{
  g_autofree char *src = vl_test_shared_path ("fixtures", "vit-timm-tiny", NULL);
  g_autoptr(Run) r1 = cli ("export", src, "--format", "tflite", "--out", "x", NULL);
  g_assert_cmpint (r1->status, ==, 2);
  g_assert_nonnull (strstr (r1->err, "--format tflite"));

  /* a folder that does not exist: the error names the file */
  g_autofree char *bad = g_build_filename (tmpdir, "no-such-folder", "m.onnx", NULL);
  g_autoptr(Run) r2 = cli ("export", src, "--format", "onnx", "--out", bad, NULL);
  g_assert_cmpint (r2->status, ==, 1);
  g_assert_nonnull (strstr (r2->err, bad));
  g_assert_false (g_file_test (bad, G_FILE_TEST_EXISTS));

  /* a run whose head does not have one output per target */
  g_autofree char *dir = make_regress_run ("regress-mismatch", 1);
  g_autofree char *out = g_build_filename (tmpdir, "mismatch.onnx", NULL);
  g_autoptr(Run) r3 = cli ("export", dir, "--format", "onnx", "--out", out, NULL);
  g_assert_cmpint (r3->status, ==, 1);
  g_assert_nonnull (strstr (r3->err, out));
  g_assert_nonnull (strstr (r3->err, "2 outputs, task: 1 targets"));
  g_assert_false (g_file_test (out, G_FILE_TEST_EXISTS));

  /* the same through the API, with no file left behind */
  g_autoptr(GError) error = NULL;
  g_autoptr(VlModel) m = vl_model_load (src, &error);
  g_assert_no_error (error);
  const float mean[3] = { 0 }, std[3] = { 1, 1, 1 };
  VlTaskSpec t = { .kind = VL_TASK_REGRESS, .n_outputs = 3, .mean = mean, .std = std };
  VlOnnxOptions o = { .task = &t };
  g_assert_false (vl_model_export_onnx (m, &o, out, &error));
  g_assert_error (error, VL_ERROR, VL_ERROR_MISMATCH);
  g_assert_false (g_file_test (out, G_FILE_TEST_EXISTS));
}

static void
rm_tree (const char *dir)
{
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
  if (d == NULL)
    return;
  for (const char *n; (n = g_dir_read_name (d)) != NULL;)
    {
      g_autofree char *p = g_build_filename (dir, n, NULL);
      if (g_file_test (p, G_FILE_TEST_IS_DIR) && !g_file_test (p, G_FILE_TEST_IS_SYMLINK))
        rm_tree (p);
      else
        g_remove (p);
    }
  g_rmdir (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  tmpdir = vl_test_tmpdir ();
  g_test_add_func ("/onnx/encoder", test_encoder);
  g_test_add_func ("/onnx/fixture", test_fixture);
  g_test_add_func ("/onnx/families", test_families);
  g_test_add_func ("/onnx/geometries", test_geometries);
  g_test_add_func ("/onnx/input-size", test_input_size);
  g_test_add_func ("/onnx/stems", test_stems);
  g_test_add_func ("/onnx/real-vit-tiny", test_real);
  g_test_add_func ("/onnx/regress-run", test_regress_run);
  g_test_add_func ("/onnx/classify-run", test_classify_run);
  g_test_add_func ("/onnx/segment-run", test_segment_run);
  g_test_add_func ("/onnx/detect-run", test_detect_run);
  g_test_add_func ("/onnx/errors", test_errors);
  int rc = g_test_run ();
  rm_tree (tmpdir);
  g_free (tmpdir);
  return rc;
}
