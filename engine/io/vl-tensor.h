/* vl-tensor.h: a tensor as a checkpoint reader hands it out (vl-safetensors.h for safetensors
 * files, vl-torch-ckpt.h for PyTorch's): its dtype, shape and bytes; the dtypes' names and
 * sizes. */
#pragma once

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

typedef enum {
  VL_DTYPE_F32,
  VL_DTYPE_F16,
  VL_DTYPE_BF16,
  VL_DTYPE_F64,
  VL_DTYPE_I64,
  VL_DTYPE_I32,
  VL_DTYPE_I16,
  VL_DTYPE_I8,
  VL_DTYPE_U8,
  VL_DTYPE_BOOL,
} VlDtype;

#define VL_MAX_DIMS 8

typedef struct {
  const char    *name;
  VlDtype        dtype;
  int            ndim;
  int64_t        shape[VL_MAX_DIMS];
  int64_t        numel;    /* product of shape (1 for a scalar) */
  const void    *data;     /* points into the mapping; may be unaligned */
  size_t         nbytes;
} VlTensorInfo;

/* "F32", "BF16", … (safetensors' names), or "invalid". */
const char *vl_dtype_name      (VlDtype        dtype);
/* Bytes per element (0 for an invalid dtype). */
size_t      vl_dtype_size      (VlDtype        dtype);
/* Shape as "[4,3,32,32]" (g_free). */
char       *vl_shape_to_string (int            ndim,
                                const int64_t *shape);
/* Converts F32, F16, BF16, F64 and integer tensors to float32 into dst (t->numel floats). */
void        vl_tensor_to_f32   (const VlTensorInfo *t,
                                float              *dst);

/* Sets `info` to a float32 tensor of `shape` over `data` (its name left as it is). */
void        vl_tensor_info_set_f32 (VlTensorInfo  *info,
                                    int            ndim,
                                    const int64_t *shape,
                                    const float   *data);

/* The tensors a reader builds in memory (PyTorch's and NumPy's checkpoints): the list in order,
 * their names, the name index (name -> its position + 1) and the buffers they own (g_free). */
typedef struct {
  GArray       *tensors;   /* VlTensorInfo */
  GStringChunk *names;
  GHashTable   *index;
  GPtrArray    *owned;
} VlTensorTable;

/* Appends `info` under `name` (a later tensor of the same name replaces the earlier, as a dict's
 * later key does); info->data must live as long as the table (in `owned`, or the caller's). */
void        vl_tensor_table_add (VlTensorTable      *table,
                                 const char         *name,
                                 const VlTensorInfo *info);
/* Appends a float32 tensor whose buffer (numel floats, g_malloc'd) the table takes. */
void        vl_tensor_table_add_f32 (VlTensorTable *table,
                                     const char    *name,
                                     int            ndim,
                                     const int64_t *shape,
                                     float         *data);

G_END_DECLS
