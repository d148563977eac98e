/* vl-torch-ckpt.h: the tensors of a PyTorch checkpoint (`torch.save`'s zip format, PyTorch 1.6
 * and later: `.pth`, `.pt`, `pytorch_model.bin`), read without running any of its pickle.
 *
 * The pickle is interpreted by a restricted machine that knows the handful of callables a state
 * dict is rebuilt from (collections.OrderedDict, torch._utils._rebuild_tensor_v2,
 * _rebuild_parameter, the torch.*Storage types); every other global or object is kept as an
 * opaque value and never called, as torch.load (weights_only=True) does. The state dict is the
 * top-level dict of tensors, or the one under "state_dict", "model", "model_state_dict",
 * "module" or "state_dict_ema" of a training checkpoint; DataParallel's "module." prefix is
 * dropped. Used by vl_safetensors_open, so every checkpoint reader takes these files too. */
#pragma once

#include <glib.h>

#include "vl-tensor.h"

G_BEGIN_DECLS

/* The leading bytes of a zip archive, and of torch.save's legacy (pre-1.6) pickle stream. */
gboolean  vl_torch_ckpt_is_zip     (const guint8 *map,
                                    size_t        size);
gboolean  vl_torch_ckpt_is_legacy  (const guint8 *map,
                                    size_t        size);

/* Reads the state dict of the zip checkpoint mapped at map: appends one VlTensorInfo per tensor
 * to `tensors` (names in `names`, data in buffers appended to `owned`, g_free), in the pickle's
 * order, and indexes each in `index` (name -> its index + 1). Errors name `path` and the
 * problem. */
gboolean  vl_torch_ckpt_read       (const char   *path,
                                    const guint8 *map,
                                    size_t        size,
                                    GArray       *tensors,
                                    GStringChunk *names,
                                    GHashTable   *index,
                                    GPtrArray    *owned,
                                    GError      **error);

G_END_DECLS
