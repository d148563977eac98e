/* vl-tensor.c: the dtypes' names (as safetensors spells them) and sizes, and a shape as text. */
#include "vl-tensor.h"

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
