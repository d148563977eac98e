/* vl-tensor.c: the dtypes' names (as safetensors spells them) and sizes, a shape as text, and a
 * tensor's values as float32. */
#include "vl-tensor.h"

#include <string.h>

static const struct {
  const char *name;
  size_t      size;
} dtypes[] = {
  [VL_DTYPE_F32]  = { "F32",  4 },
  [VL_DTYPE_F16]  = { "F16",  2 },
  [VL_DTYPE_BF16] = { "BF16", 2 },
  [VL_DTYPE_F64]  = { "F64",  8 },
  [VL_DTYPE_I64]  = { "I64",  8 },
  [VL_DTYPE_I32]  = { "I32",  4 },
  [VL_DTYPE_I16]  = { "I16",  2 },
  [VL_DTYPE_I8]   = { "I8",   1 },
  [VL_DTYPE_U8]   = { "U8",   1 },
  [VL_DTYPE_BOOL] = { "BOOL", 1 },
};

const char *
vl_dtype_name (VlDtype dtype)
{
  if ((guint) dtype >= G_N_ELEMENTS (dtypes))
    return "invalid";
  return dtypes[dtype].name;
}

size_t
vl_dtype_size (VlDtype dtype)
{
  if ((guint) dtype >= G_N_ELEMENTS (dtypes))
    return 0;
  return dtypes[dtype].size;
}

char *
vl_shape_to_string (int ndim, const int64_t *shape)
{
  GString *s = g_string_new ("[");
  for (int i = 0; i < ndim; i++)
    g_string_append_printf (s, "%s%" G_GINT64_FORMAT, i ? "," : "", shape[i]);
  g_string_append_c (s, ']');
  return g_string_free (s, FALSE);
}

/* IEEE 754 binary16 -> binary32, exact for every input. */
static inline float
f16_to_f32 (uint16_t h)
{
  uint32_t sign = (uint32_t) (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f)        /* inf, nan (payload kept, so a nan stays a nan) */
    bits = sign | 0x7f800000u | (mant << 13);
  else if (exp != 0)      /* normal: rebias 15 -> 127 */
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  else                    /* zero, subnormal: mant * 2^-24, exact in float */
    {
      float f = (float) mant * 0x1p-24f;
      memcpy (&bits, &f, 4);
      bits |= sign;
    }
  float out;
  memcpy (&out, &bits, 4);
  return out;
}

void
vl_tensor_to_f32 (const VlTensorInfo *t, float *dst)
{
  g_return_if_fail (t != NULL);
  g_return_if_fail (dst != NULL || t->numel == 0);
  const guint8 *src = t->data;   /* may be unaligned: read through memcpy */
  size_t n = (size_t) t->numel;
  switch (t->dtype)
    {
    case VL_DTYPE_F32:
      if (n)
        memcpy (dst, src, n * 4);
      break;
    case VL_DTYPE_F16:
      for (size_t i = 0; i < n; i++)
        {
          uint16_t h;
          memcpy (&h, src + 2 * i, 2);
          dst[i] = f16_to_f32 (h);
        }
      break;
    case VL_DTYPE_BF16:
      for (size_t i = 0; i < n; i++)
        {
          uint16_t h;
          memcpy (&h, src + 2 * i, 2);
          uint32_t bits = (uint32_t) h << 16;
          memcpy (&dst[i], &bits, 4);
        }
      break;
    case VL_DTYPE_F64:
      for (size_t i = 0; i < n; i++)
        {
          double v;
          memcpy (&v, src + 8 * i, 8);
          dst[i] = (float) v;
        }
      break;
    case VL_DTYPE_I64:
      for (size_t i = 0; i < n; i++)
        {
          int64_t v;
          memcpy (&v, src + 8 * i, 8);
          dst[i] = (float) v;
        }
      break;
    case VL_DTYPE_I32:
      for (size_t i = 0; i < n; i++)
        {
          int32_t v;
          memcpy (&v, src + 4 * i, 4);
          dst[i] = (float) v;
        }
      break;
    case VL_DTYPE_I16:
      for (size_t i = 0; i < n; i++)
        {
          int16_t v;
          memcpy (&v, src + 2 * i, 2);
          dst[i] = (float) v;
        }
      break;
    case VL_DTYPE_I8:
      for (size_t i = 0; i < n; i++)
        dst[i] = (float) (int8_t) src[i];
      break;
    case VL_DTYPE_U8:
      for (size_t i = 0; i < n; i++)
        dst[i] = (float) src[i];
      break;
    case VL_DTYPE_BOOL:
      for (size_t i = 0; i < n; i++)
        dst[i] = src[i] ? 1.0f : 0.0f;
      break;
    default:
      g_assert_not_reached ();
    }
}

void
vl_tensor_table_add (VlTensorTable *table, const char *name, const VlTensorInfo *info)
{
  VlTensorInfo copy = *info;
  guint at = GPOINTER_TO_UINT (g_hash_table_lookup (table->index, name));
  if (at)
    {
      copy.name = g_array_index (table->tensors, VlTensorInfo, at - 1).name;
      g_array_index (table->tensors, VlTensorInfo, at - 1) = copy;
      return;
    }
  copy.name = g_string_chunk_insert (table->names, name);
  g_array_append_val (table->tensors, copy);
  g_hash_table_insert (table->index, (gpointer) copy.name, GUINT_TO_POINTER (table->tensors->len));
}

void
vl_tensor_info_set_f32 (VlTensorInfo *info, int ndim, const int64_t *shape, const float *data)
{
  g_return_if_fail (ndim >= 0 && ndim <= VL_MAX_DIMS);
  info->dtype = VL_DTYPE_F32;
  info->ndim = ndim;
  info->numel = 1;
  for (int d = 0; d < ndim; d++)
    {
      info->shape[d] = shape[d];
      info->numel *= shape[d];
    }
  info->nbytes = (size_t) info->numel * sizeof (float);
  info->data = data;
}

void
vl_tensor_table_add_f32 (VlTensorTable *table, const char *name, int ndim, const int64_t *shape,
                         float *data)
{
  VlTensorInfo info = { 0 };
  vl_tensor_info_set_f32 (&info, ndim, shape, data);
  g_ptr_array_add (table->owned, data);
  vl_tensor_table_add (table, name, &info);
}
