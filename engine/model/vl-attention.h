/* vl-attention.h: attention maps, in one place for the trainer, the CLI and the app.
 *
 * From the attention probabilities a VL_FORWARD_CAPTURE_ATTN forward keeps (vl_model_attention),
 * per image: every block's copied out in one array (depth, heads, T, T); the row of one query
 * token in one block (averaged over a range of heads), over the patch columns; and attention
 * rollout (Abnar & Zuidema): per block Â_l = rownorm (mean over heads of A_l + I), the query's
 * row of R = Â_{L-1} ⋯ Â_0 computed as a row vector (v ← v Â_l from the last block down: O(L H
 * T²) instead of O(L T³)), over the patch columns. The query is a patch index, or -1: the CLS
 * token, or for a model without one the mean of the patch rows. vl_model_rollout is this, with
 * query -1, for every image of the batch.
 *
 *   float *attn = g_new (float, vl_model_attention_numel (m));
 *   vl_model_attention_copy (m, b, attn);
 *   VlAttnShape s = VL_ATTN_SHAPE_OF (m);
 *   vl_attention_rollout (attn, &s, -1, map, scratch);   // map: grid_h * grid_w
 */
#pragma once

#include <glib.h>
#include <stdint.h>

#include "vl-model.h"

G_BEGIN_DECLS

typedef struct {
  int      depth, heads, T;   /* T tokens: n_prefix, then the patches */
  int      n_prefix;
  gboolean has_cls;
} VlAttnShape;

/* The shape of the last forward's attention (T from it). */
VlAttnShape vl_model_attention_shape (VlModel *m);
/* Floats of one image's attention over every block: depth * heads * T * T. */
int64_t     vl_model_attention_numel (VlModel *m);
/* Copies image b's attention of every block (depth, heads, T, T) from the last capture forward
 * into out; FALSE (nothing written) when that forward captured none. */
gboolean    vl_model_attention_copy  (VlModel *m, int b, float *out);
/* A copy of image b's attention-pool probabilities (heads, T - n_prefix) from the last forward
 * (vl_model_pool_attention), or NULL when it did not pool by map. g_free. */
float      *vl_model_pool_attention_dup (VlModel *m, int b);

/* attn: one image's (depth, heads, T, T). out: (T - n_prefix). */
void        vl_attention_row         (const float *attn, const VlAttnShape *s, int block,
                                      int h0, int h1, int query, float *out);
/* scratch: 3 T floats. */
void        vl_attention_rollout     (const float *attn, const VlAttnShape *s, int query,
                                      float *out, float *scratch);
/* The same on blocks that are not contiguous: blocks[l] is block l's (heads, T, T). */
void        vl_attention_rollout_blocks (const float *const *blocks, const VlAttnShape *s,
                                         int query, float *out, float *scratch);

G_END_DECLS
