/* vl-npz.h: NumPy's .npz archives (np.savez, np.savez_compressed), as Google publishes its JAX
 * ViT checkpoints (AugReg's "How to train your ViT?" and big_vision's): every NAME.npy entry read
 * as a tensor NAME, never running a pickle (object arrays are refused, as np.load
 * (allow_pickle=False) refuses them). An archive holding a Flax ViT is handed out under timm's
 * names, converted as timm's own loader converts it (vl-jax-vit.h). */
#pragma once

#include <glib.h>
#include <zip.h>

#include "vl-tensor.h"

G_BEGIN_DECLS

/* Reads the arrays of `za` (a file of `size` bytes) into `table`, and into `metadata` what the
 * conversion learnt (num_heads; vitlab.converted_from). Errors name `path`, the entry and the
 * problem. */
gboolean  vl_npz_read  (const char    *path,
                        zip_t         *za,
                        size_t         size,
                        VlTensorTable *table,
                        GHashTable    *metadata,
                        GError       **error);

G_END_DECLS
