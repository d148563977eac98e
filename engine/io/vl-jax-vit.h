/* vl-jax-vit.h: a Flax ViT's arrays (an .npz from Google's vision_transformer / AugReg, or from
 * big_vision) under timm's names, converted as timm's _load_weights converts them:
 *
 *   embedding/kernel (P, P, C, W)          -> patch_embed.proj.weight (W, C, P, P)
 *   cls, (Transformer/posembed_input/)pos_embedding -> cls_token, pos_embed
 *   Transformer/encoderblock_N/ (or one Transformer/encoderblock/ stacked over N, "scan")
 *     LayerNorm_0, MultiHeadDotProductAttention_{1|0}/{query,key,value} kernels (W, H, W/H)
 *     -> norm1, attn.qkv (3W, W); .../out kernel (H, W/H, W) -> attn.proj (W, W);
 *     LayerNorm_{2|1} -> norm2; MlpBlock_{3|0}/Dense_{0,1} (in, out) -> mlp.fc{1,2} (out, in)
 *   Transformer/encoder_norm -> norm; head/kernel (W, K) -> head (K, W)
 *
 * under the prefix "", "opt/target/", "params/" or "params/img/" (big_vision's image tower);
 * the number of heads is read off the query kernel. Arrays outside the prefix (optimizer state,
 * a text tower) are left out. A 21k model's pre_logits layer is left out with the head it feeds
 * (timm does the same). */
#pragma once

#include <glib.h>

#include "vl-tensor.h"

G_BEGIN_DECLS

/* When `raw` holds a Flax ViT, its tensors converted into `out` and "num_heads" and
 * "vitlab.converted_from" (augreg or big_vision) into `metadata`; otherwise `raw`'s tensors
 * copied into `out` as they are. FALSE with an error naming `path` and the array when a Flax ViT
 * is malformed or has a part vitlab does not compute (an attention-pool head, a ResNet stem). */
gboolean  vl_jax_vit_translate  (const char    *path,
                                 VlTensorTable *raw,
                                 VlTensorTable *out,
                                 GHashTable    *metadata,
                                 GError       **error);

G_END_DECLS
