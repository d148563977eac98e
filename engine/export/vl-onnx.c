/* vl-onnx.c: the ONNX export (see vl-onnx.h): a protobuf encoder, a graph builder and the
 * Vision Transformer written with them.
 *
 * The wire format: every field is a tag (field number << 3 | wire type) as a varint, then a
 * varint (type 0), four little-endian bytes (type 5) or a varint length and that many bytes
 * (type 2: strings, bytes, packed repeated numbers, nested messages). Repeated fields may
 * interleave with others, so a GraphProto's nodes and initializers are appended as they are made.
 * Field numbers are onnx.proto's (onnx 1.12, IR version 8). */
#include "vl-onnx.h"
#include "vl-json.h"

#include "vl-cnn.h"
#include "vl-model-private.h"
#include "vl-run.h"
#include "vl-stem.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------ onnx.proto field numbers */

enum { WIRE_VARINT = 0, WIRE_LEN = 2, WIRE_I32 = 5 };

/* ModelProto */
enum { MODEL_IR_VERSION = 1, MODEL_PRODUCER_NAME = 2, MODEL_PRODUCER_VERSION = 3,
       MODEL_DOC_STRING = 6, MODEL_GRAPH = 7, MODEL_OPSET_IMPORT = 8, MODEL_METADATA_PROPS = 14 };
/* OperatorSetIdProto, StringStringEntryProto */
enum { OPSET_DOMAIN = 1, OPSET_VERSION = 2 };
enum { ENTRY_KEY = 1, ENTRY_VALUE = 2 };
/* GraphProto */
enum { GRAPH_NODE = 1, GRAPH_NAME = 2, GRAPH_INITIALIZER = 5, GRAPH_INPUT = 11,
       GRAPH_OUTPUT = 12 };
/* NodeProto */
enum { NODE_INPUT = 1, NODE_OUTPUT = 2, NODE_NAME = 3, NODE_OP_TYPE = 4, NODE_ATTRIBUTE = 5 };
/* AttributeProto and its AttributeType */
enum { ATTR_NAME = 1, ATTR_F = 2, ATTR_I = 3, ATTR_S = 4, ATTR_INTS = 8, ATTR_TYPE = 20 };
enum { ATTR_TYPE_FLOAT = 1, ATTR_TYPE_INT = 2, ATTR_TYPE_STRING = 3, ATTR_TYPE_INTS = 7 };
/* TensorProto and its DataType */
enum { TENSOR_DIMS = 1, TENSOR_DATA_TYPE = 2, TENSOR_NAME = 8, TENSOR_RAW_DATA = 9 };
enum { DT_FLOAT = 1, DT_INT64 = 7 };
/* ValueInfoProto, TypeProto, TypeProto.Tensor, TensorShapeProto, its Dimension */
enum { VALUE_NAME = 1, VALUE_TYPE = 2 };
enum { TYPE_TENSOR = 1 };
enum { TTENSOR_ELEM_TYPE = 1, TTENSOR_SHAPE = 2 };
enum { SHAPE_DIM = 1 };
enum { DIM_VALUE = 1, DIM_PARAM = 2 };

#define IR_VERSION 8
#define OPSET      17

/* ------------------------------------------------------------------ the encoder */

void
vl_pb_varint (GByteArray *b, uint64_t v)
{
  guint8 buf[10];
  int n = 0;
  do
    {
      guint8 byte = v & 0x7f;
      v >>= 7;
      buf[n++] = byte | (v ? 0x80 : 0);
    }
  while (v);
  g_byte_array_append (b, buf, n);
}

static void
pb_tag (GByteArray *b, int field, int wire)
{
  vl_pb_varint (b, ((uint64_t) field << 3) | (uint64_t) wire);
}

void
vl_pb_int (GByteArray *b, int field, int64_t v)
{
  pb_tag (b, field, WIRE_VARINT);
  vl_pb_varint (b, (uint64_t) v);   /* int64: a negative value takes ten bytes */
}

void
vl_pb_float (GByteArray *b, int field, float v)
{
  guint32 u;
  memcpy (&u, &v, 4);
  u = GUINT32_TO_LE (u);
  pb_tag (b, field, WIRE_I32);
  g_byte_array_append (b, (const guint8 *) &u, 4);
}

void
vl_pb_bytes (GByteArray *b, int field, const void *data, gsize len)
{
  pb_tag (b, field, WIRE_LEN);
  vl_pb_varint (b, len);
  if (len)
    g_byte_array_append (b, data, (guint) len);
}

void
vl_pb_string (GByteArray *b, int field, const char *s)
{
  vl_pb_bytes (b, field, s, strlen (s));
}

void
vl_pb_message (GByteArray *b, int field, GByteArray *sub)
{
  vl_pb_bytes (b, field, sub->data, sub->len);
  g_byte_array_unref (sub);
}

/* ------------------------------------------------------------------ the graph builder */

typedef struct {
  GByteArray   *buf;     /* GraphProto fields: nodes and initializers, in the order made */
  GStringChunk *names;
  int           serial;  /* for fresh value names */
} Graph;

/* A fresh value name, prefix.N. */
static const char *
fresh (Graph *g, const char *prefix)
{
  char buf[128];
  g_snprintf (buf, sizeof buf, "%s.%d", prefix, g->serial++);
  return g_string_chunk_insert (g->names, buf);
}

static const char *
intern (Graph *g, const char *name)
{
  return g_string_chunk_insert_const (g->names, name);
}

/* An initializer of float32 (raw_data, little-endian) or int64 values. */
static const char *
init_tensor (Graph *g, const char *name, int dtype, int ndim, const int64_t *dims,
             const void *data, int64_t numel)
{
  GByteArray *t = g_byte_array_new ();
  for (int i = 0; i < ndim; i++)
    vl_pb_int (t, TENSOR_DIMS, dims[i]);
  vl_pb_int (t, TENSOR_DATA_TYPE, dtype);
  vl_pb_string (t, TENSOR_NAME, name);
  gsize size = (gsize) numel * (dtype == DT_FLOAT ? 4 : 8);
#if G_BYTE_ORDER == G_LITTLE_ENDIAN
  vl_pb_bytes (t, TENSOR_RAW_DATA, data, size);
#else
  guint8 *le = g_malloc (size);
  const int w = dtype == DT_FLOAT ? 4 : 8;
  for (gsize i = 0; i < size; i += w)
    for (int k = 0; k < w; k++)
      le[i + k] = ((const guint8 *) data)[i + w - 1 - k];
  vl_pb_bytes (t, TENSOR_RAW_DATA, le, size);
  g_free (le);
#endif
  vl_pb_message (g->buf, GRAPH_INITIALIZER, t);
  return intern (g, name);
}

static const char *
init_f32 (Graph *g, const char *name, int ndim, const int64_t *dims, const float *data)
{
  int64_t numel = 1;
  for (int i = 0; i < ndim; i++)
    numel *= dims[i];
  return init_tensor (g, name, DT_FLOAT, ndim, dims, data, numel);
}

static const char *
init_i64 (Graph *g, const char *prefix, int n, const int64_t *v)
{
  int64_t dims[1] = { n };
  return init_tensor (g, fresh (g, prefix), DT_INT64, 1, dims, v, n);
}

/* A rank-0 constant. */
static const char *
scalar_f32 (Graph *g, const char *prefix, float v)
{
  return init_tensor (g, fresh (g, prefix), DT_FLOAT, 0, NULL, &v, 1);
}

static const char *
scalar_i64 (Graph *g, const char *prefix, int64_t v)
{
  return init_tensor (g, fresh (g, prefix), DT_INT64, 0, NULL, &v, 1);
}

/* A node under construction. */
typedef struct {
  GByteArray *b;
} Node;

static Node
node_begin (Graph *g, const char *op)
{
  Node n = { g_byte_array_new () };
  vl_pb_string (n.b, NODE_OP_TYPE, op);
  char name[64];
  g_snprintf (name, sizeof name, "%s_%d", op, g->serial++);
  vl_pb_string (n.b, NODE_NAME, name);
  return n;
}

static void
node_in (Node *n, const char *value)
{
  vl_pb_string (n->b, NODE_INPUT, value);
}

static void
attr_int (Node *n, const char *name, int64_t v)
{
  GByteArray *a = g_byte_array_new ();
  vl_pb_string (a, ATTR_NAME, name);
  vl_pb_int (a, ATTR_TYPE, ATTR_TYPE_INT);
  vl_pb_int (a, ATTR_I, v);
  vl_pb_message (n->b, NODE_ATTRIBUTE, a);
}

static void
attr_float (Node *n, const char *name, float v)
{
  GByteArray *a = g_byte_array_new ();
  vl_pb_string (a, ATTR_NAME, name);
  vl_pb_int (a, ATTR_TYPE, ATTR_TYPE_FLOAT);
  vl_pb_float (a, ATTR_F, v);
  vl_pb_message (n->b, NODE_ATTRIBUTE, a);
}

static void
attr_string (Node *n, const char *name, const char *v)
{
  GByteArray *a = g_byte_array_new ();
  vl_pb_string (a, ATTR_NAME, name);
  vl_pb_int (a, ATTR_TYPE, ATTR_TYPE_STRING);
  vl_pb_string (a, ATTR_S, v);
  vl_pb_message (n->b, NODE_ATTRIBUTE, a);
}

static void
attr_ints (Node *n, const char *name, int k, const int64_t *v)
{
  GByteArray *a = g_byte_array_new ();
  vl_pb_string (a, ATTR_NAME, name);
  vl_pb_int (a, ATTR_TYPE, ATTR_TYPE_INTS);
  for (int i = 0; i < k; i++)   /* unpacked, as onnx's own serialiser writes them */
    vl_pb_int (a, ATTR_INTS, v[i]);
  vl_pb_message (n->b, NODE_ATTRIBUTE, a);
}

/* Ends the node with one output (out NULL: a fresh name from the op) and returns its name. */
static const char *
node_end (Graph *g, Node *n, const char *out)
{
  const char *name = out ? intern (g, out) : fresh (g, "t");
  vl_pb_string (n->b, NODE_OUTPUT, name);
  vl_pb_message (g->buf, GRAPH_NODE, n->b);
  n->b = NULL;
  return name;
}

static const char *
op1 (Graph *g, const char *op, const char *x, const char *out)
{
  Node n = node_begin (g, op);
  node_in (&n, x);
  return node_end (g, &n, out);
}

static const char *
op2 (Graph *g, const char *op, const char *x, const char *y, const char *out)
{
  Node n = node_begin (g, op);
  node_in (&n, x);
  node_in (&n, y);
  return node_end (g, &n, out);
}

static const char *
transpose (Graph *g, const char *x, int k, const int64_t *perm)
{
  Node n = node_begin (g, "Transpose");
  node_in (&n, x);
  attr_ints (&n, "perm", k, perm);
  return node_end (g, &n, NULL);
}

static const char *
reshape (Graph *g, const char *x, int k, const int64_t *shape)
{
  return op2 (g, "Reshape", x, init_i64 (g, "shape", k, shape), NULL);
}

/* x (..., axis, ...) -> the entry `index` of the axis, which goes. */
static const char *
gather (Graph *g, const char *x, int64_t index, int axis)
{
  Node n = node_begin (g, "Gather");
  node_in (&n, x);
  node_in (&n, scalar_i64 (g, "index", index));
  attr_int (&n, "axis", axis);
  return node_end (g, &n, NULL);
}

/* ------------------------------------------------------------------ the model's pieces */

typedef struct {
  Graph        g;
  VlModel     *m;
  int          size;   /* input side */
  int          grid;   /* patches per side at that size */
  int          T;      /* tokens: n_prefix + grid * grid */
  const float *pos;    /* the position embedding at that grid (PP + grid * grid rows), or NULL */
} Ctx;

/* A model tensor as it is. */
static const char *
param (Ctx *c, int index)
{
  VlParam *p = vl_param (c->m, index);
  return init_f32 (&c->g, p->name, p->ndim, p->shape, p->data);
}

/* A Linear weight (out, in) as the (in, out) right operand of MatMul: "NAME.T". */
static const char *
param_t (Ctx *c, int index)
{
  VlParam *p = vl_param (c->m, index);
  const int64_t R = p->shape[0], C = p->shape[1];
  float *t = g_new (float, R * C);
  for (int64_t r = 0; r < R; r++)
    for (int64_t k = 0; k < C; k++)
      t[k * R + r] = p->data[r * C + k];
  g_autofree char *name = g_strconcat (p->name, ".T", NULL);
  int64_t dims[2] = { C, R };
  const char *v = init_f32 (&c->g, name, 2, dims, t);
  g_free (t);
  return v;
}

/* x (..., in) @ W^T + b; b_index -1: no bias. */
static const char *
linear (Ctx *c, const char *x, int w_index, int b_index)
{
  const char *y = op2 (&c->g, "MatMul", x, param_t (c, w_index), NULL);
  return b_index >= 0 ? op2 (&c->g, "Add", y, param (c, b_index), NULL) : y;
}

static const char *
layer_norm (Ctx *c, const char *x, int w_index, int b_index)
{
  Node n = node_begin (&c->g, "LayerNormalization");
  node_in (&n, x);
  node_in (&n, param (c, w_index));
  if (b_index >= 0)
    node_in (&n, param (c, b_index));
  attr_int (&n, "axis", -1);
  attr_float (&n, "epsilon", c->m->geo.eps);
  return node_end (&c->g, &n, NULL);
}

/* Exact GELU: 0.5 x (1 + erf (x / sqrt 2)). */
static const char *
gelu (Ctx *c, const char *x)
{
  Graph *g = &c->g;
  const char *e = op1 (g, "Erf", op2 (g, "Div", x, scalar_f32 (g, "sqrt2", (float) M_SQRT2),
                                      NULL), NULL);
  const char *s = op2 (g, "Add", e, scalar_f32 (g, "one", 1.0f), NULL);
  return op2 (g, "Mul", op2 (g, "Mul", x, s, NULL), scalar_f32 (g, "half", 0.5f), NULL);
}

/* QuickGELU (OpenAI CLIP): x * sigmoid (1.702 x). */
static const char *
quick_gelu (Ctx *c, const char *x)
{
  Graph *g = &c->g;
  const char *s = op1 (g, "Sigmoid", op2 (g, "Mul", x, scalar_f32 (g, "k1702", 1.702f), NULL),
                       NULL);
  return op2 (g, "Mul", x, s, NULL);
}

/* GELU's tanh approximation: 0.5 x (1 + tanh (sqrt (2 / pi) (x + 0.044715 x^3))). */
static const char *
gelu_tanh (Ctx *c, const char *x)
{
  Graph *g = &c->g;
  const char *x3 = op2 (g, "Mul", op2 (g, "Mul", x, x, NULL), x, NULL);
  const char *u = op2 (g, "Add", x, op2 (g, "Mul", x3, scalar_f32 (g, "k044715", 0.044715f), NULL),
                       NULL);
  u = op2 (g, "Mul", u, scalar_f32 (g, "sqrt_2_pi", 0.7978845608028654f), NULL);
  const char *s = op2 (g, "Add", op1 (g, "Tanh", u, NULL), scalar_f32 (g, "one", 1.0f), NULL);
  return op2 (g, "Mul", op2 (g, "Mul", x, s, NULL), scalar_f32 (g, "half", 0.5f), NULL);
}

/* The model's MLP activation. */
static const char *
act (Ctx *c, const char *x)
{
  return c->m->geo.quick_gelu ? quick_gelu (c, x) : c->m->geo.gelu_tanh ? gelu_tanh (c, x)
                                                                        : gelu (c, x);
}

/* ------------------------------------------------------------------ CNN stems (vl-stem.h) */

/* A stem buffer as an ONNX value, NCHW (N, C, H, W); H and W are fixed by the input side. */
typedef struct {
  const char *v;
  int         C, H, W;
} StemValue;

/* A model tensor under its own name in another shape of as many numbers: a norm's (C) weight as
 * (C, 1, 1), which broadcasts over an NCHW value. */
static const char *
param_as (Ctx *c, int index, int ndim, const int64_t *dims)
{
  VlParam *p = vl_param (c->m, index);
  return init_f32 (&c->g, p->name, ndim, dims, p->data);
}

/* Conv with explicit pads { top, left, bottom, right } (ONNX's begin, begin, end, end). */
static const char *
conv_node (Ctx *c, const char *x, const char *w, const char *b, int k, int stride,
           const int pads[4], int groups)
{
  Node n = node_begin (&c->g, "Conv");
  node_in (&n, x);
  node_in (&n, w);
  if (b)
    node_in (&n, b);
  const int64_t ks[2] = { k, k }, st[2] = { stride, stride };
  const int64_t pd[4] = { pads[0], pads[1], pads[2], pads[3] };
  attr_ints (&n, "kernel_shape", 2, ks);
  attr_ints (&n, "strides", 2, st);
  attr_ints (&n, "pads", 4, pd);
  attr_int (&n, "group", groups);
  return node_end (&c->g, &n, NULL);
}

/* The pads of a conv or pool layer on an in->H x in->W input and its output side: TF/timm
 * "same" (vl_same_pad: the odd pixel after, output ceil (H / stride)), or `pad` on every side. */
static void
stem_pads (const VlStemLayer *l, const StemValue *in, StemValue *out, int pads[4])
{
  if (l->same)
    {
      vl_same_pad (in->H, l->k, l->stride, &pads[0], &pads[2]);
      vl_same_pad (in->W, l->k, l->stride, &pads[1], &pads[3]);
    }
  else
    pads[0] = pads[1] = pads[2] = pads[3] = l->pad;
  out->H = (in->H + pads[0] + pads[2] - l->k) / l->stride + 1;
  out->W = (in->W + pads[1] + pads[3] - l->k) / l->stride + 1;
}

/* A convolution; a weight-standardized one (timm's StdConv2d / StdConv2dSame) carries its weight
 * standardized here, by the engine's own vl_weight_std_forward and eps ("NAME.standardized"). */
static const char *
stem_conv (Ctx *c, const VlStemLayer *l, const StemValue *in, StemValue *out)
{
  VlParam *w = vl_param (c->m, l->param[0]);
  const char *wv;
  if (l->std_eps > 0)
    {
      const int Cout = (int) w->shape[0];
      g_autofree float *ws = g_new (float, w->numel);
      g_autofree float *rstd = g_new (float, Cout);
      vl_weight_std_forward (ws, rstd, w->data, Cout, w->numel / Cout, l->std_eps);
      g_autofree char *name = g_strconcat (w->name, ".standardized", NULL);
      wv = init_f32 (&c->g, name, w->ndim, w->shape, ws);
    }
  else
    wv = param (c, l->param[0]);
  int pads[4];
  stem_pads (l, in, out, pads);
  return conv_node (c, in->v, wv, l->param[1] >= 0 ? param (c, l->param[1]) : NULL, l->k,
                    l->stride, pads, l->groups);
}

static const char *
silu (Graph *g, const char *x)
{
  return op2 (g, "Mul", x, op1 (g, "Sigmoid", x, NULL), NULL);
}

static const char *
reduce_mean_keep (Graph *g, const char *x, int64_t axis)
{
  Node r = node_begin (g, "ReduceMean");
  node_in (&r, x);
  attr_ints (&r, "axes", 1, &axis);
  attr_int (&r, "keepdims", 1);
  return node_end (g, &r, NULL);
}

/* GroupNorm (opset 17 has no GroupNormalization): (N, G, C/G H W), the mean and the biased
 * variance over the last axis, (x - mean) / sqrt (var + eps), back to NCHW, then the per-channel
 * weight and bias as (C, 1, 1). */
static const char *
stem_group_norm (Ctx *c, const VlStemLayer *l, const StemValue *x)
{
  Graph *g = &c->g;
  const int64_t grouped[3] = { 0, l->G, (int64_t) (x->C / l->G) * x->H * x->W };
  const char *v = reshape (g, x->v, 3, grouped);
  const char *d = op2 (g, "Sub", v, reduce_mean_keep (g, v, 2), NULL);
  const char *var = reduce_mean_keep (g, op2 (g, "Mul", d, d, NULL), 2);
  const char *sd = op1 (g, "Sqrt", op2 (g, "Add", var, scalar_f32 (g, "eps", l->eps), NULL),
                        NULL);
  const int64_t nchw[4] = { 0, x->C, x->H, x->W }, cdims[3] = { x->C, 1, 1 };
  v = reshape (g, op2 (g, "Div", d, sd, NULL), 4, nchw);
  v = op2 (g, "Mul", v, param_as (c, l->param[0], 3, cdims), NULL);
  return op2 (g, "Add", v, param_as (c, l->param[1], 3, cdims), NULL);
}

/* BatchNorm on its running statistics (inference; training_mode 0 is the default). */
static const char *
stem_batch_norm (Ctx *c, const VlStemLayer *l, const char *x)
{
  Node n = node_begin (&c->g, "BatchNormalization");
  node_in (&n, x);
  for (int k = 0; k < 4; k++)
    node_in (&n, param (c, l->param[k]));
  attr_float (&n, "epsilon", l->eps);
  return node_end (&c->g, &n, NULL);
}

/* Squeeze-and-excitation (timm's SqueezeExcite): x * sigmoid (conv_expand (silu (conv_reduce (
 * global average pool (x))))), the convolutions 1x1 with their biases. */
static const char *
stem_se (Ctx *c, const VlStemLayer *l, const char *x)
{
  Graph *g = &c->g;
  static const int no_pad[4] = { 0, 0, 0, 0 };
  const char *h = op1 (g, "GlobalAveragePool", x, NULL);                 /* (N, C, 1, 1) */
  h = silu (g, conv_node (c, h, param (c, l->param[0]), param (c, l->param[1]), 1, 1, no_pad,
                          1));                                              /* (N, R, 1, 1) */
  h = conv_node (c, h, param (c, l->param[2]), param (c, l->param[3]), 1, 1, no_pad, 1);
  return op2 (g, "Mul", x, op1 (g, "Sigmoid", h, NULL), NULL);
}

static const char *
stem_max_pool (Ctx *c, const VlStemLayer *l, const StemValue *in, StemValue *out)
{
  int pads[4];
  stem_pads (l, in, out, pads);
  Node n = node_begin (&c->g, "MaxPool");
  node_in (&n, in->v);
  const int64_t ks[2] = { l->k, l->k }, st[2] = { l->stride, l->stride };
  const int64_t pd[4] = { pads[0], pads[1], pads[2], pads[3] };
  attr_ints (&n, "kernel_shape", 2, ks);
  attr_ints (&n, "strides", 2, st);
  attr_ints (&n, "pads", 4, pd);   /* padded positions never win, as the engine's -inf */
  return node_end (&c->g, &n, NULL);
}

/* The model's CNN stem on pixels (N, C, S, S): its layers in the forward's order, each on the
 * value of its input buffer(s); the last buffer, (N, W, grid, grid). BatchNorm as in
 * inference (running statistics), weight standardization done here. */
static const char *
stem (Ctx *c, const char *pixels)
{
  Graph *g = &c->g;
  VlStem *s = c->m->stem;
  const int nb = vl_stem_n_buffers (s);
  g_autofree StemValue *b = g_new0 (StemValue, nb);
  b[0] = (StemValue) { pixels, vl_stem_buffer_channels (s, 0), c->size, c->size };
  for (int i = 0; i < vl_stem_n_layers (s); i++)
    {
      VlStemLayer l;
      vl_stem_layer (s, i, &l);
      const StemValue *in = &b[l.in];
      StemValue *out = &b[l.out];
      *out = (StemValue) { NULL, vl_stem_buffer_channels (s, l.out), in->H, in->W };
      switch (l.kind)
        {
        case VL_STEM_OP_CONV: out->v = stem_conv (c, &l, in, out); break;
        case VL_STEM_OP_BN: out->v = stem_batch_norm (c, &l, in->v); break;
        case VL_STEM_OP_GN: out->v = stem_group_norm (c, &l, in); break;
        case VL_STEM_OP_RELU: out->v = op1 (g, "Relu", in->v, NULL); break;
        case VL_STEM_OP_SILU: out->v = silu (g, in->v); break;
        case VL_STEM_OP_POOL: out->v = stem_max_pool (c, &l, in, out); break;
        case VL_STEM_OP_SE: out->v = stem_se (c, &l, in->v); break;
        case VL_STEM_OP_ADD: out->v = op2 (g, "Add", in->v, b[l.in2].v, NULL); break;
        default: g_assert_not_reached ();
        }
    }
  const StemValue *last = &b[nb - 1];
  g_assert (last->H == c->grid && last->W == c->grid && last->C == c->m->geo.width);
  return last->v;
}

/* The patch embedding (or the CNN stem) and the prefix tokens: (N, T, W). */
static const char *
embed (Ctx *c, const char *pixels)
{
  Graph *g = &c->g;
  VlModel *m = c->m;
  const VlGeometry *geo = &m->geo;
  const int W = geo->width, P = geo->n_prefix, NP = c->grid * c->grid;
  const int PP = geo->no_embed_class ? 0 : P;   /* prefix entries of pos_embed */
  const float *pos = c->pos;

  const char *conv;                                                /* (N, W, G, G) */
  if (m->stem)
    conv = stem (c, pixels);
  else
    {
      Node n = node_begin (g, "Conv");
      node_in (&n, pixels);
      node_in (&n, param (c, m->ix.patch_w));
      if (m->ix.patch_b >= 0)
        node_in (&n, param (c, m->ix.patch_b));
      int64_t k[2] = { geo->patch, geo->patch };
      attr_ints (&n, "kernel_shape", 2, k);
      attr_ints (&n, "strides", 2, k);
      conv = node_end (g, &n, NULL);
    }
  int64_t s3[3] = { 0, W, NP };
  int64_t perm[3] = { 0, 2, 1 };
  const char *x = transpose (g, reshape (g, conv, 3, s3), 3, perm); /* (N, NP, W) */
  if (pos)
    {
      /* the patch tokens' position entries */
      int64_t dims[3] = { 1, NP, W };
      x = op2 (g, "Add", x, init_f32 (g, "pos_embed.patches", 3, dims, pos + (int64_t) PP * W),
               NULL);
    }
  if (P == 0)
    return x;

  /* the prefix tokens (with their position entries unless no_embed_class), (1, P, W),
   * broadcast to (N, P, W) */
  float *prefix = g_new0 (float, (int64_t) P * W);
  int t = 0;
  if (geo->class_token)
    memcpy (prefix + (int64_t) W * t++, vl_pdata (m, m->ix.cls), sizeof (float) * W);
  if (geo->dist_token)
    memcpy (prefix + (int64_t) W * t++, vl_pdata (m, m->ix.dist), sizeof (float) * W);
  for (int r = 0; r < geo->reg_tokens; r++)
    memcpy (prefix + (int64_t) W * t++, vl_pdata (m, m->ix.reg) + (int64_t) r * W,
            sizeof (float) * W);
  if (PP && pos)
    for (int64_t i = 0; i < (int64_t) P * W; i++)
      prefix[i] += pos[i];
  int64_t pdims[3] = { 1, P, W };
  const char *pre = init_f32 (g, "prefix_tokens", 3, pdims, prefix);
  g_free (prefix);

  Node sh = node_begin (g, "Shape");
  node_in (&sh, pixels);
  attr_int (&sh, "start", 0);
  attr_int (&sh, "end", 1);
  const char *batch = node_end (g, &sh, NULL);                      /* [N] */
  int64_t pw[2] = { P, W };
  Node cat = node_begin (g, "Concat");
  node_in (&cat, batch);
  node_in (&cat, init_i64 (g, "shape", 2, pw));
  attr_int (&cat, "axis", 0);
  const char *shape = node_end (g, &cat, NULL);                     /* [N, P, W] */
  const char *pre_n = op2 (g, "Expand", pre, shape, NULL);

  Node tok = node_begin (g, "Concat");
  node_in (&tok, pre_n);
  node_in (&tok, x);
  attr_int (&tok, "axis", 1);
  return node_end (g, &tok, NULL);
}

static const char *
block (Ctx *c, const char *x, int l)
{
  Graph *g = &c->g;
  VlModel *m = c->m;
  const VlGeometry *geo = &m->geo;
  const int W = geo->width, T = c->T, H = geo->heads, D = geo->head_dim;
#define BI(which) vl_block_param (m, l, (which))

  const char *h = layer_norm (c, x, BI (B_LN1_W), BI (B_LN1_B));
  const char *qkv = linear (c, h, BI (B_QKV_W), BI (B_QKV_B));      /* (N, T, 3W) */
  int64_t s5[5] = { 0, T, 3, H, D };
  int64_t p5[5] = { 2, 0, 3, 1, 4 };
  const char *qkv5 = transpose (g, reshape (g, qkv, 5, s5), 5, p5);  /* (3, N, H, T, D) */
  const char *q = gather (g, qkv5, 0, 0);
  const char *k = gather (g, qkv5, 1, 0);
  const char *v = gather (g, qkv5, 2, 0);
  int64_t pk[4] = { 0, 1, 3, 2 };
  const char *scores = op2 (g, "MatMul", q, transpose (g, k, 4, pk), NULL);  /* (N, H, T, T) */
  scores = op2 (g, "Mul", scores, scalar_f32 (g, "scale", 1.0f / sqrtf ((float) D)), NULL);
  Node sm = node_begin (g, "Softmax");
  node_in (&sm, scores);
  attr_int (&sm, "axis", -1);
  const char *attn = node_end (g, &sm, NULL);
  const char *o = op2 (g, "MatMul", attn, v, NULL);                 /* (N, H, T, D) */
  int64_t po[4] = { 0, 2, 1, 3 };
  int64_t s3[3] = { 0, T, W };
  o = reshape (g, transpose (g, o, 4, po), 3, s3);                  /* (N, T, W) */
  o = linear (c, o, BI (B_PROJ_W), BI (B_PROJ_B));
  if (geo->layer_scale)
    o = op2 (g, "Mul", o, param (c, BI (B_LS1)), NULL);
  x = op2 (g, "Add", x, o, NULL);

  h = layer_norm (c, x, BI (B_LN2_W), BI (B_LN2_B));
  h = linear (c, h, BI (B_FC1_W), BI (B_FC1_B));
  h = act (c, h);
  h = linear (c, h, BI (B_FC2_W), BI (B_FC2_B));
  if (geo->layer_scale)
    h = op2 (g, "Mul", h, param (c, BI (B_LS2)), NULL);
#undef BI
  return op2 (g, "Add", x, h, NULL);
}

/* The patch rows of tokens (N, T, W): (N, grid * grid, W), the prefix rows dropped. */
static const char *
patch_rows (Ctx *c, const char *tokens)
{
  Graph *g = &c->g;
  if (c->m->geo.n_prefix == 0)
    return tokens;
  int64_t start = c->m->geo.n_prefix, end = c->T, axis = 1;
  Node n = node_begin (g, "Slice");
  node_in (&n, tokens);
  node_in (&n, init_i64 (g, "starts", 1, &start));
  node_in (&n, init_i64 (g, "ends", 1, &end));
  node_in (&n, init_i64 (g, "axes", 1, &axis));
  return node_end (g, &n, NULL);
}

/* The attention pool (vl-map-pool.c) over the patch tokens (N, NP, W): (N, W). The query is
 * the same for every image, computed here once: q = W_q latent + b_q, as (H, 1, D). */
static const char *
map_pool (Ctx *c, const char *patches)
{
  Graph *g = &c->g;
  VlModel *m = c->m;
  const VlGeometry *geo = &m->geo;
  const int W = geo->width, H = geo->heads, D = geo->head_dim, NP = c->grid * c->grid;
#define AI(which) (m->ix.ap + (which))
  const float *lat = vl_pdata (m, AI (AP_LATENT)), *wq = vl_pdata (m, AI (AP_Q_W));
  const float *bq = vl_pdata (m, AI (AP_Q_B));
  g_autofree float *q = g_new (float, W);
  for (int i = 0; i < W; i++)
    {
      double acc = bq[i];
      for (int k = 0; k < W; k++)
        acc += (double) wq[(int64_t) i * W + k] * lat[k];
      q[i] = (float) acc;
    }
  const int64_t qdims[3] = { H, 1, D };
  const char *qv = init_f32 (g, "attn_pool.query", 3, qdims, q);
  const char *kv = linear (c, patches, AI (AP_KV_W), AI (AP_KV_B));   /* (N, NP, 2W) */
  int64_t s5[5] = { 0, NP, 2, H, D };
  int64_t p5[5] = { 2, 0, 3, 1, 4 };
  const char *kv5 = transpose (g, reshape (g, kv, 5, s5), 5, p5);    /* (2, N, H, NP, D) */
  const char *k = gather (g, kv5, 0, 0), *v = gather (g, kv5, 1, 0);
  int64_t pk[4] = { 0, 1, 3, 2 };
  const char *scores = op2 (g, "MatMul", qv, transpose (g, k, 4, pk), NULL);   /* (N, H, 1, NP) */
  scores = op2 (g, "Mul", scores, scalar_f32 (g, "scale", 1.0f / sqrtf ((float) D)), NULL);
  Node sm = node_begin (g, "Softmax");
  node_in (&sm, scores);
  attr_int (&sm, "axis", -1);
  const char *o = op2 (g, "MatMul", node_end (g, &sm, NULL), v, NULL);   /* (N, H, 1, D) */
  int64_t s2[2] = { 0, W };
  const char *z = linear (c, reshape (g, o, 2, s2), AI (AP_PROJ_W), AI (AP_PROJ_B));
  const char *h = layer_norm (c, z, AI (AP_NORM_W), AI (AP_NORM_B));
  h = linear (c, act (c, linear (c, h, AI (AP_FC1_W), AI (AP_FC1_B))), AI (AP_FC2_W),
              AI (AP_FC2_B));
#undef AI
  return op2 (g, "Add", z, h, NULL);
}

/* Pools tokens (N, T, W) to (N, W) as the engine's pool_tokens: token 0, the mean or max over
 * the patch tokens [n_prefix, T), or the attention pool over them. */
static const char *
pool (Ctx *c, const char *tokens)
{
  Graph *g = &c->g;
  VlPoolKind kind = c->m->pool;
  if (kind == VL_POOL_TOKEN)
    return gather (g, tokens, 0, 1);
  if (kind == VL_POOL_MAP)
    return map_pool (c, patch_rows (c, tokens));
  const char *patches = patch_rows (c, tokens);
  Node r = node_begin (g, kind == VL_POOL_AVG ? "ReduceMean" : "ReduceMax");
  node_in (&r, patches);
  int64_t axes[1] = { 1 };
  attr_ints (&r, "axes", 1, axes);
  attr_int (&r, "keepdims", 0);
  return node_end (g, &r, NULL);
}

/* The patch rows of tokens (N, T, W) as an NCHW grid (N, W, grid, grid). */
static const char *
grid_nchw (Ctx *c, const char *tokens)
{
  static const int64_t to_nchw[4] = { 0, 3, 1, 2 };
  int64_t grid[4] = { 0, c->grid, c->grid, c->m->geo.width };
  return transpose (&c->g, reshape (&c->g, patch_rows (c, tokens), 4, grid), 4, to_nchw);
}

/* The seg head (vl-seg-head.h) on the final-norm tokens (N, T, W): seg_logits (N, K, S, S). */
static const char *
seg_tensor (Ctx *c, VlSegHead *h, const char *name)
{
  int i = vl_seg_head_find_tensor (h, name), ndim;
  g_assert (i >= 0);
  int64_t shape[4], numel;
  const float *data = vl_seg_head_tensor_data (h, i, &ndim, shape, &numel);
  return init_f32 (&c->g, name, ndim, shape, data);
}

/* Conv or ConvTranspose with the seg head's weight and bias under prefix (NAME.weight/.bias). */
static const char *
seg_conv (Ctx *c, VlSegHead *h, const char *op, const char *x, const char *prefix, int k)
{
  g_autofree char *wn = g_strconcat (prefix, ".weight", NULL);
  g_autofree char *bn = g_strconcat (prefix, ".bias", NULL);
  Node n = node_begin (&c->g, op);
  node_in (&n, x);
  node_in (&n, seg_tensor (c, h, wn));
  node_in (&n, seg_tensor (c, h, bn));
  int64_t ks[2] = { k, k };
  attr_ints (&n, "kernel_shape", 2, ks);
  attr_ints (&n, "strides", 2, ks);
  return node_end (&c->g, &n, NULL);
}

static const char *
seg_head (Ctx *c, VlSegHead *h, const char *tokens)
{
  Graph *g = &c->g;
  const int G = c->grid;
  static const int64_t to_nchw[4] = { 0, 3, 1, 2 }, to_nhwc[4] = { 0, 2, 3, 1 };
  const char *x = grid_nchw (c, tokens);
  int side = G;
  if (vl_seg_head_kind (h) == VL_SEG_HEAD_UPCONV)
    {
      x = seg_conv (c, h, "ConvTranspose", x, "decode_head.up.0", 2);
      Node n = node_begin (g, "LayerNormalization");
      node_in (&n, transpose (g, x, 4, to_nhwc));
      node_in (&n, seg_tensor (c, h, "decode_head.up.1.weight"));
      node_in (&n, seg_tensor (c, h, "decode_head.up.1.bias"));
      attr_int (&n, "axis", -1);
      attr_float (&n, "epsilon", 1e-6f);
      x = transpose (g, gelu (c, node_end (g, &n, NULL)), 4, to_nchw);
      x = seg_conv (c, h, "ConvTranspose", x, "decode_head.up.3", 2);
      side = 4 * G;
    }
  x = seg_conv (c, h, "Conv", x, "decode_head.conv_seg", 1);
  if (side == c->size)
    return x;
  /* F.interpolate (bilinear, align_corners=False) by a scale: with S / side exact in float
   * (S and side are multiples of the grid), half_pixel is PyTorch's source-index rule */
  float scale = (float) c->size / (float) side;
  float scales[4] = { 1.0f, 1.0f, scale, scale };
  int64_t four = 4;
  Node r = node_begin (g, "Resize");
  node_in (&r, x);
  node_in (&r, "");   /* no roi */
  node_in (&r, init_tensor (g, fresh (g, "scales"), DT_FLOAT, 1, &four, scales, 4));
  attr_string (&r, "mode", "linear");
  attr_string (&r, "coordinate_transformation_mode", "half_pixel");
  return node_end (g, &r, NULL);
}

/* The FCOS head (vl-det-head.h) on the final-norm tokens: per output, a 3x3 Conv (padding 1)
 * of the NCHW patch grid, then (N, C, A) -> (N, A, C) as FCOSHead.forward returns it. */
static const char *
det_output (Ctx *c, VlDetHead *h, const char *grid, const char *prefix, int channels,
            gboolean relu)
{
  Graph *g = &c->g;
  g_autofree char *wn = g_strconcat (prefix, ".weight", NULL);
  g_autofree char *bn = g_strconcat (prefix, ".bias", NULL);
  const char *w = NULL, *b = NULL;
  for (int k = 0; k < 2; k++)
    {
      int i = vl_det_head_find_tensor (h, k == 0 ? wn : bn), ndim;
      g_assert (i >= 0);
      int64_t shape[4], numel;
      const float *data = vl_det_head_tensor_data (h, i, &ndim, shape, &numel);
      const char *v = init_f32 (g, k == 0 ? wn : bn, ndim, shape, data);
      if (k == 0)
        w = v;
      else
        b = v;
    }
  Node n = node_begin (g, "Conv");
  node_in (&n, grid);
  node_in (&n, w);
  node_in (&n, b);
  static const int64_t ks[2] = { 3, 3 }, pads[4] = { 1, 1, 1, 1 };
  attr_ints (&n, "kernel_shape", 2, ks);
  attr_ints (&n, "pads", 4, pads);
  const char *x = node_end (g, &n, NULL);
  if (relu)
    x = op1 (g, "Relu", x, NULL);
  int64_t flat[3] = { 0, channels, (int64_t) c->grid * c->grid };
  static const int64_t swap[3] = { 0, 2, 1 };
  return transpose (g, reshape (g, x, 3, flat), 3, swap);
}

/* A graph input or output: float32 with the batch dimension named "batch". */
static GByteArray *
value_info (const char *name, int ndim, const int64_t *dims)
{
  GByteArray *shape = g_byte_array_new ();
  for (int i = 0; i < ndim; i++)
    {
      GByteArray *d = g_byte_array_new ();
      if (i == 0)
        vl_pb_string (d, DIM_PARAM, "batch");
      else
        vl_pb_int (d, DIM_VALUE, dims[i]);
      vl_pb_message (shape, SHAPE_DIM, d);
    }
  GByteArray *tt = g_byte_array_new ();
  vl_pb_int (tt, TTENSOR_ELEM_TYPE, DT_FLOAT);
  vl_pb_message (tt, TTENSOR_SHAPE, shape);
  GByteArray *type = g_byte_array_new ();
  vl_pb_message (type, TYPE_TENSOR, tt);
  GByteArray *vi = g_byte_array_new ();
  vl_pb_string (vi, VALUE_NAME, name);
  vl_pb_message (vi, VALUE_TYPE, type);
  return vi;
}

static void
add_output (Graph *g, GByteArray *outputs, const char *value, const char *name, int64_t width)
{
  op1 (g, "Identity", value, name);
  int64_t dims[2] = { -1, width };
  vl_pb_message (outputs, GRAPH_OUTPUT, value_info (name, 2, dims));
}

static void
add_meta (GByteArray *model, const char *key, const char *value)
{
  GByteArray *e = g_byte_array_new ();
  vl_pb_string (e, ENTRY_KEY, key);
  vl_pb_string (e, ENTRY_VALUE, value);
  vl_pb_message (model, MODEL_METADATA_PROPS, e);
}

/* The shortest decimal (C locale) that reads back as the float v: 0.485, not 0.485000014. */
static void
format_float (char *buf, gsize size, float v)
{
  for (int digits = 6; digits <= 9; digits++)
    {
      char fmt[8];
      g_snprintf (fmt, sizeof fmt, "%%.%dg", digits);
      g_ascii_formatd (buf, size, fmt, (double) v);
      if ((float) g_ascii_strtod (buf, NULL) == v)
        return;
    }
}

/* A JSON array of n floats or strings. */
static char *
json_floats (const float *v, int n)
{
  GString *s = g_string_new ("[");
  for (int i = 0; i < n; i++)
    {
      char buf[G_ASCII_DTOSTR_BUF_SIZE];
      format_float (buf, sizeof buf, v[i]);
      g_string_append_printf (s, "%s%s", i ? ", " : "", buf);
    }
  g_string_append_c (s, ']');
  return g_string_free (s, FALSE);
}

static char *
json_strings (const char *const *v, int n)
{
  GString *s = g_string_new ("[");
  for (int i = 0; i < n; i++)
    {
      g_string_append (s, i ? ", \"" : "\"");
      for (const char *p = v[i]; *p; p++)
        {
          if (*p == '"' || *p == '\\')
            g_string_append_printf (s, "\\%c", *p);
          else if ((guchar) *p < 0x20)
            g_string_append_printf (s, "\\u%04x", (guchar) *p);
          else
            g_string_append_c (s, *p);
        }
      g_string_append_c (s, '"');
    }
  g_string_append_c (s, ']');
  return g_string_free (s, FALSE);
}

/* The preprocessing, the task and the names as metadata_props (vl-onnx.h); S: the input side. */
static void
add_metadata (GByteArray *model, VlModel *m, const VlOnnxOptions *options, int S,
              const char *kind)
{
  const VlGeometry *geo = &m->geo;
  const VlTaskSpec *task = options ? options->task : NULL;
  const gboolean regress = strcmp (kind, "regress") == 0;
  /* segmentation and detection squash the whole image to S (vl_preprocess_squash): no crop; so
   * does a classifier whose processor squashes (SigLIP's) */
  const gboolean seg = strcmp (kind, "segment") == 0, det = strcmp (kind, "detect") == 0;
  const gboolean squash = seg || det || geo->squash;
  const int K = m->num_classes;
  char num[64];
  add_meta (model, "vitlab.task", kind);
  add_meta (model, "vitlab.family", geo->family);
  g_snprintf (num, sizeof num, "%d", S);
  add_meta (model, "input_size", num);
  g_snprintf (num, sizeof num, "%d", squash ? S
                                     : geo->input_size > 0 ? geo->input_size : geo->img_size);
  add_meta (model, "image_size", num);
  g_snprintf (num, sizeof num, "%d", geo->in_chans);
  add_meta (model, "in_chans", num);
  g_ascii_formatd (num, sizeof num, "%.9g", squash ? 1.0 : geo->crop_pct);
  add_meta (model, "crop_pct", num);
  add_meta (model, "crop_mode", squash ? "squash" : "center");
  add_meta (model, "interpolation", seg || det || !geo->interpolation ? "bicubic"
                                                                      : geo->interpolation);
  g_autofree char *mean = json_floats (geo->mean, geo->in_chans);
  g_autofree char *std = json_floats (geo->std, geo->in_chans);
  add_meta (model, "mean", mean);
  add_meta (model, "std", std);
  add_meta (model, "pooling", vl_pool_name (m->pool));
  const char *const *names = options && options->names ? options->names
                             : (const char *const *) m->class_names;
  const int n_names = seg ? vl_seg_head_n_classes (options->seg_head)
                      : det ? vl_det_head_n_classes (options->det_head) : K;
  if (names && strcmp (kind, "features") != 0 &&
      (int) g_strv_length ((char **) names) == n_names)
    {
      g_autofree char *list = json_strings (names, n_names);
      add_meta (model, regress ? "target_names" : "class_names", list);
    }
  if (regress)
    {
      g_autofree char *tm = json_floats (task->mean, K);
      g_autofree char *ts = json_floats (task->std, K);
      add_meta (model, "target_mean", tm);
      add_meta (model, "target_std", ts);
    }
}

gboolean
vl_model_export_onnx (VlModel *m, const VlOnnxOptions *options, const char *path,
                      GError **error)
{
  const VlGeometry *geo = &m->geo;
  const VlTaskSpec *task = options ? options->task : NULL;
  const gboolean regress = task && task->kind == VL_TASK_REGRESS;
  const int K = m->num_classes;
  if (regress && (m->head_kind == VL_HEAD_NONE || K != task->n_outputs || !task->mean ||
                  !task->std))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                   "%s: a regression export needs a head with one output per target and the "
                   "targets' mean and std (head: %d outputs, task: %d targets)", path, K,
                   task->n_outputs);
      return FALSE;
    }
  if (geo->n_prefix > 0 && m->ix.pos < 0 && !geo->no_embed_class)
    {
      /* cannot happen for a loaded model; guards the prefix arithmetic */
      g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s: the model has no pos_embed", path);
      return FALSE;
    }

  /* The input size: the model's preprocessing size (pretrained_cfg input_size) when it differs
   * from the native one and fits the patch, with the position embedding resampled there as the
   * engine's forward does (timm's resample_abs_pos_embed: taken from a forward of one blank
   * image at that size), so the file computes what vitlab classify computes; else native. */
  Ctx c = { { NULL, NULL, 0 }, m, geo->img_size, geo->grid, geo->n_tokens,
            vl_pdata (m, m->ix.pos) };
  g_autofree float *pos_resampled = NULL;
  int S = geo->img_size;
  if (options && options->size > 0)
    S = options->size;
  else if (geo->input_size > 0 && geo->input_size % geo->patch == 0)
    S = geo->input_size;
  if (options && options->size > 0 && (S % geo->patch != 0 || S > 4096))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "%s: an input side of %d is not a multiple of the patch size %d (at most "
                   "4096)", path, S, geo->patch);
      return FALSE;
    }
  if (S != geo->img_size)
    {
      c.size = S;
      c.grid = S / geo->patch;
      c.T = geo->n_prefix + c.grid * c.grid;
    }
  if (S != geo->img_size && m->ix.pos >= 0)
    {
      const int G = S / geo->patch;
      const int PP = geo->no_embed_class ? 0 : geo->n_prefix;
      g_autofree float *blank = g_new0 (float, (gsize) geo->in_chans * S * S);
      if (!vl_model_forward (m, blank, 1, S, S, VL_FORWARD_INFER, error))
        {
          g_prefix_error (error, "%s: resampling the position embedding to %d: ", path, S);
          return FALSE;
        }
      pos_resampled = g_memdup2 (vl_model_pos_embed_used (m),
                                 sizeof (float) * (gsize) (PP + G * G) * geo->width);
      c.pos = pos_resampled;
    }
  c.g.buf = g_byte_array_new ();
  c.g.names = g_string_chunk_new (4096);
  Graph *g = &c.g;
  GByteArray *io = g_byte_array_new ();   /* inputs and outputs, appended to the graph last */
  int64_t in_dims[4] = { -1, geo->in_chans, c.size, c.size };
  vl_pb_message (io, GRAPH_INPUT, value_info ("pixel_values", 4, in_dims));

  const char *x = embed (&c, "pixel_values");
  if (geo->pre_norm)
    x = layer_norm (&c, x, m->ix.pre_w, m->ix.pre_b);
  for (int l = 0; l < geo->depth; l++)
    x = block (&c, x, l);

  /* the final norm on the tokens, then pooling; or pooling, then fc_norm */
  const char *tokens = x, *pooled;
  if (geo->fc_norm)
    {
      pooled = pool (&c, x);
      if (m->ix.norm_w >= 0)
        pooled = layer_norm (&c, pooled, m->ix.norm_w, m->ix.norm_b);
    }
  else
    {
      if (m->ix.norm_w >= 0)
        tokens = layer_norm (&c, x, m->ix.norm_w, m->ix.norm_b);
      pooled = pool (&c, tokens);
    }
  const char *head_in = pooled;
  if (geo->embed_dim > 0)
    head_in = linear (&c, pooled, m->ix.proj, -1);

  const char *out = NULL;
  if (m->head_kind == VL_HEAD_LINEAR)
    {
      out = linear (&c, head_in, m->ix.head_w, m->ix.head_b);
      if (m->ix.hdist_w >= 0)
        {
          /* DeiT: the mean of the class head and the distillation head on token 1 */
          const char *d = linear (&c, gather (g, tokens, 1, 1), m->ix.hdist_w, m->ix.hdist_b);
          out = op2 (g, "Mul", op2 (g, "Add", out, d, NULL), scalar_f32 (g, "half", 0.5f), NULL);
        }
    }
  else if (m->head_kind == VL_HEAD_MLP)
    {
      const char *h = gelu (&c, linear (&c, head_in, m->ix.head_w, m->ix.head_b));
      out = linear (&c, h, m->ix.head2_w, m->ix.head2_b);
    }

  const char *seg = options && options->seg_head ? seg_head (&c, options->seg_head, tokens)
                    : NULL;
  if (out && regress)
    {
      int64_t dims[1] = { K };
      out = op2 (g, "Mul", out, init_f32 (g, "target_std", 1, dims, task->std), NULL);
      out = op2 (g, "Add", out, init_f32 (g, "target_mean", 1, dims, task->mean), NULL);
      add_output (g, io, out, "values", K);
    }
  else if (out)
    add_output (g, io, out, "logits", K);
  if (seg)
    {
      op1 (g, "Identity", seg, "seg_logits");
      int64_t dims[4] = { -1, vl_seg_head_n_classes (options->seg_head), c.size, c.size };
      vl_pb_message (io, GRAPH_OUTPUT, value_info ("seg_logits", 4, dims));
    }
  VlDetHead *det = options ? options->det_head : NULL;
  if (det)
    {
      /* FCOSHead.forward: cls_logits, bbox_regression (ReLU), bbox_ctrness */
      const char *grid = grid_nchw (&c, tokens);
      const struct { const char *prefix, *name; int channels; gboolean relu; } outs[3] = {
        { "head.classification_head.cls_logits", "cls_logits", vl_det_head_n_classes (det),
          FALSE },
        { "head.regression_head.bbox_reg", "bbox_regression", 4, TRUE },
        { "head.regression_head.bbox_ctrness", "bbox_ctrness", 1, FALSE },
      };
      for (int k = 0; k < 3; k++)
        {
          const char *v = det_output (&c, det, grid, outs[k].prefix, outs[k].channels,
                                      outs[k].relu);
          op1 (g, "Identity", v, outs[k].name);
          int64_t dims[3] = { -1, (int64_t) c.grid * c.grid, outs[k].channels };
          vl_pb_message (io, GRAPH_OUTPUT, value_info (outs[k].name, 3, dims));
        }
    }
  add_output (g, io, pooled, "features", geo->width);
  if (geo->embed_dim > 0)
    add_output (g, io, head_in, "embedding", geo->embed_dim);

  vl_pb_string (g->buf, GRAPH_NAME, "vitlab");
  g_byte_array_append (g->buf, io->data, io->len);
  g_byte_array_unref (io);
  if (g->buf->len > G_MAXINT32 - (1 << 20))
    {
      /* protobuf's (and so ONNX Runtime's) limit for one message */
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "%s: the graph would take %.2f GiB; an ONNX file holds at most 2 GiB "
                   "without external data, which vitlab does not write", path,
                   g->buf->len / 1073741824.0);
      g_byte_array_unref (g->buf);
      g_string_chunk_free (g->names);
      return FALSE;
    }

  /* the model */
  GByteArray *model = g_byte_array_new ();
  vl_pb_int (model, MODEL_IR_VERSION, IR_VERSION);
  GByteArray *opset = g_byte_array_new ();
  vl_pb_string (opset, OPSET_DOMAIN, "");
  vl_pb_int (opset, OPSET_VERSION, OPSET);
  vl_pb_message (model, MODEL_OPSET_IMPORT, opset);
  vl_pb_string (model, MODEL_PRODUCER_NAME, "vitlab");
  vl_pb_string (model, MODEL_PRODUCER_VERSION, "1");
  /* the source's base name only: the file may travel, the user's folders need not */
  g_autofree char *base = m->path ? g_path_get_basename (m->path) : g_strdup ("memory");
  g_autofree char *doc = g_strdup_printf ("%s ViT (%s), %d blocks, width %d, from %s",
                                          geo->family, geo->architecture, geo->depth,
                                          geo->width, base);
  vl_pb_string (model, MODEL_DOC_STRING, doc);
  vl_pb_message (model, MODEL_GRAPH, g->buf);
  g_string_chunk_free (g->names);

  add_metadata (model, m, options, c.size, regress ? "regress" : seg ? "segment"
                                         : det ? "detect" : out ? "classify" : "features");

  gboolean ok = vl_write_file_atomic (path, (const char *) model->data, model->len, error);
  g_byte_array_unref (model);
  return ok;
}

/* ------------------------------------------------------------------ run folders */

gboolean
vl_onnx_run_init (VlOnnxRun *r, const char *run_dir, int width, const char *const *class_names,
                  GError **error)
{
  memset (r, 0, sizeof *r);
  if (!vl_run_read_task (run_dir, &r->task, error))
    return FALSE;
  r->spec = vl_run_task_spec (&r->task);
  r->options.task = &r->spec;
  if (r->task.kind == VL_TASK_REGRESS)
    r->names = g_strdupv (r->task.value_names);
  else if (r->task.kind == VL_TASK_SEGMENT || r->task.kind == VL_TASK_DETECT)
    {
      const gboolean seg = r->task.kind == VL_TASK_SEGMENT;
      VlTrainConfig cfg;
      if (!(seg ? vl_seg_head_find (run_dir, width, &r->seg_head, error)
                : vl_det_head_find (run_dir, width, &r->det_head, error)) ||
          !vl_train_config_load (&cfg, run_dir, error))
        {
          vl_onnx_run_clear (r);
          return FALSE;
        }
      r->options.size = cfg.img_size;
      vl_train_config_clear (&cfg);
      if (r->seg_head == NULL && r->det_head == NULL)
        {
          g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s: a %s run without its head (%s)",
                       run_dir, seg ? "segmentation" : "detection",
                       seg ? "seg_head.safetensors" : "det_head.safetensors");
          vl_onnx_run_clear (r);
          return FALSE;
        }
      r->names = vl_run_read_class_names (run_dir);
    }
  else
    r->names = g_strdupv ((char **) class_names);
  r->options.names = (const char *const *) r->names;
  r->options.seg_head = r->seg_head;
  r->options.det_head = r->det_head;
  return TRUE;
}

void
vl_onnx_run_clear (VlOnnxRun *r)
{
  vl_run_task_clear (&r->task);
  g_strfreev (r->names);
  g_clear_pointer (&r->seg_head, vl_seg_head_free);
  g_clear_pointer (&r->det_head, vl_det_head_free);
  memset (r, 0, sizeof *r);
}
