/* vl-safetensors.h: validated, memory-mapped safetensors reader and an atomic writer.
 *
 * The reader maps the file and checks everything before any tensor is handed out:
 * the header length lies within the file, the JSON header parses (json-glib), every
 * entry has a known dtype, a shape whose element count does not overflow and whose
 * byte size equals its data_offsets span, offsets inside the data area, and no two
 * tensors overlapping. Errors name the file and the problem (VL_ERROR domain). */
#pragma once

#include <glib.h>
#include <stdint.h>

#include "vl-error.h"
#include "vl-tensor.h"

G_BEGIN_DECLS

typedef struct _VlSafetensors VlSafetensors;

VlSafetensors      *vl_safetensors_open       (const char     *path,
                                               GError        **error);
void                vl_safetensors_free       (VlSafetensors  *st);
const char         *vl_safetensors_path       (VlSafetensors  *st);
guint               vl_safetensors_n_tensors  (VlSafetensors  *st);
/* Tensors in header order. */
const VlTensorInfo *vl_safetensors_get        (VlSafetensors  *st,
                                               guint           index);
/* NULL when absent (no error set). */
const VlTensorInfo *vl_safetensors_lookup     (VlSafetensors  *st,
                                               const char     *name);
/* The "__metadata__" string map, or NULL. */
GHashTable         *vl_safetensors_metadata   (VlSafetensors  *st);

/* TRUE for the file names taken as checkpoints: .safetensors, PyTorch's .pth, .pt and .bin and
 * PyTorch Lightning's .ckpt (torch.save's zip format, read without running its pickle) and
 * NumPy's .npz (JAX ViTs, vl-npz.h), in any case. */
gboolean            vl_checkpoint_has_extension (const char   *name);


/* Looks up `name`, checks it is a floating or integer tensor, returns a newly allocated
 * float32 copy (g_free). Error names the file and the tensor when absent. */
float              *vl_safetensors_read_f32   (VlSafetensors  *st,
                                               const char     *name,
                                               const VlTensorInfo **info_out,
                                               GError        **error);


/* Writer: collects F32 (and I64) tensors (data referenced, not copied: keep it alive until write),
 * writes header + data to a temporary file beside `path`, fsyncs and renames it over
 * `path`, so an earlier file is never left half-written. */
typedef struct _VlSafetensorsWriter VlSafetensorsWriter;

VlSafetensorsWriter *vl_safetensors_writer_new     (void);
void                 vl_safetensors_writer_add_f32 (VlSafetensorsWriter *w,
                                                    const char          *name,
                                                    int                  ndim,
                                                    const int64_t       *shape,
                                                    const float         *data);
/* The same for an I64 tensor (e.g. labels). */
void                 vl_safetensors_writer_add_i64 (VlSafetensorsWriter *w,
                                                    const char          *name,
                                                    int                  ndim,
                                                    const int64_t       *shape,
                                                    const int64_t       *data);
void                 vl_safetensors_writer_add_metadata (VlSafetensorsWriter *w,
                                                         const char          *key,
                                                         const char          *value);
gboolean             vl_safetensors_writer_write   (VlSafetensorsWriter *w,
                                                    const char          *path,
                                                    GError             **error);
void                 vl_safetensors_writer_free    (VlSafetensorsWriter *w);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (VlSafetensors, vl_safetensors_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VlSafetensorsWriter, vl_safetensors_writer_free)

G_END_DECLS
