/* vl-torch-ckpt.h: the tensors of a PyTorch checkpoint (`torch.save`'s zip format, PyTorch 1.6
 * and later: `.pth`, `.pt`, `pytorch_model.bin`), read without running any of its pickle.
 *
 * The pickle is interpreted by a restricted machine that knows the handful of callables a state
 * dict is rebuilt from (collections.OrderedDict, torch._utils._rebuild_tensor_v2,
 * _rebuild_parameter, the torch.*Storage types); every other global or object is kept as an
 * opaque value and never called, as torch.load (weights_only=True) does. The state dict is the
 * top-level dict of tensors, or the one under "state_dict", "model", "model_state_dict",
 * "module" or "state_dict_ema" of a training checkpoint, or the tensors of a pickled module
 * (torch.save (model): its _parameters, _buffers and _modules) or of a TorchScript archive (its
 * modules' attributes), read from the objects' states that are kept, never applied;
 * DataParallel's "module." prefix is dropped. Used by vl_safetensors_open, so every checkpoint reader takes these files too. */
#pragma once

#include <glib.h>

#include "vl-tensor.h"

#include <zip.h>

G_BEGIN_DECLS

/* The leading bytes of torch.save's legacy (pre-1.6) pickle stream. */
gboolean  vl_torch_ckpt_is_legacy  (const guint8 *map,
                                    size_t        size);

/* Reads the state dict of the zip checkpoint `za` (a file of `size` bytes) into `table`, one
 * tensor per entry in the pickle's order. Errors name `path` and the problem. */
gboolean  vl_torch_ckpt_read       (const char    *path,
                                    zip_t         *za,
                                    size_t         size,
                                    VlTensorTable *table,
                                    GError       **error);

G_END_DECLS
