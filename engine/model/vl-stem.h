/* vl-stem.h: CNN stems in place of the ViT's patch embedding (internal to the engine).
 *
 * A stem is one module: images (B, C, H, W) -> the patch-token grid (B, gh gw, W) with
 * gh = H / patch, gw = W / patch, its parameters in the model's stem layer group (compute
 * component C_STEM), its BatchNorm running statistics stored as parameters that never get a
 * gradient (VlParam.buffer). Inside it is a list of layers (convolution, BatchNorm, GroupNorm,
 * ReLU, SiLU, max pooling, squeeze-and-excitation, residual add) over channels-last grids, run in
 * order by the forward and in reverse by the backward (vl-cnn.h's kernels).
 *
 *   conv      Xiao et al. 2021: log2 (patch) 3x3 stride-2 convolutions, each with BatchNorm and
 *             ReLU, doubling the channels up to the width, then a 1x1 convolution to the width.
 *             patch_embed.stem.N.conv.weight, patch_embed.stem.N.bn.*, patch_embed.proj.*
 *   mbconv    an EfficientNet stem: a 3x3 stride-2 convolution with BatchNorm and SiLU, then one
 *             MBConv block of stride 2 per further halving (1x1 expand x4, BatchNorm, SiLU,
 *             depthwise 3x3, BatchNorm, SiLU, squeeze-and-excitation, 1x1 project, BatchNorm),
 *             then a 1x1 convolution to the width. patch_embed.stem.N.{conv_pw, bn1, conv_dw,
 *             bn2, se.conv_reduce, se.conv_expand, conv_pwl, bn3}.*
 *   resnetv2  timm's hybrid ViTs (vision_transformer_hybrid.py): ResNetV2 without
 *             pre-activation, StdConv2dSame (eps 1e-8), GroupNorm (32 groups), a 7x7 stride-2
 *             stem with a same-padded 3x3 max pool, Bottleneck stages, then HybridEmbed's
 *             projection (kernel = stride = its patch). patch_embed.backbone.{stem.conv,
 *             stem.norm, stages.N.blocks.M.*} (or backbone.conv / backbone.norm without stages),
 *             patch_embed.proj.* */
#pragma once

#include "vl-model-private.h"

G_BEGIN_DECLS

/* A new conv or mbconv stem for images of in_chans channels down to `patch` (a power of two,
 * 2 to 64) and `width`; NULL with an error otherwise. Its parameters are added by
 * vl_stem_add_params. */
VlStem     *vl_stem_new          (VlStemKind kind, int in_chans, int patch, int width,
                                  GError **error);
/* The stem a checkpoint's tensor names describe (timm names, no prefix): conv or mbconv under
 * patch_embed.stem.*, resnetv2 under patch_embed.backbone.*; *found FALSE (and NULL, no error)
 * when it has none (a plain patch embedding). Sets in_chans and patch (the total stride). */
VlStem     *vl_stem_from_tensors (VlSafetensors *st, const char *file, int width, int *in_chans,
                                  int *patch, gboolean *found, GError **error);
void        vl_stem_free         (VlStem *s);
VlStemKind  vl_stem_kind         (const VlStem *s);

/* Appends the stem's parameters to the model's table (group 0, C_STEM), in layer order. */
void        vl_stem_add_params   (VlStem *s, VlModel *m);
/* Random initialisation: convolutions normal (0, sqrt (2 / fan_out)) (timm's EfficientNet),
 * BatchNorm / GroupNorm weight 1 and bias 0, running mean 0 and variance 1, the final 1x1
 * projection as PyTorch's Conv2d default (uniform +-1 / sqrt (fan_in)), other biases 0. */
void        vl_stem_init_random  (VlStem *s, VlModel *m, uint64_t seed);

/* out (B, gh gw, W) from images (B, C, H, W). BatchNorm uses the batch statistics (and updates
 * the running ones) when train and the stem's group is trainable; otherwise the running ones. */
void        vl_stem_forward      (VlStem *s, VlModel *m, float *out, const float *images, int B,
                                  int H, int W, gboolean train);
/* The gradients of the stem's trainable parameters (+=) from dout (B, gh gw, W) of the last
 * forward. */
void        vl_stem_backward     (VlStem *s, VlModel *m, const float *dout);

/* ---- the layers, for writers of the stem in other formats (vl-onnx.c) ---- */

typedef enum {
  VL_STEM_OP_CONV, VL_STEM_OP_BN, VL_STEM_OP_GN, VL_STEM_OP_RELU, VL_STEM_OP_SILU,
  VL_STEM_OP_POOL, VL_STEM_OP_SE, VL_STEM_OP_ADD
} VlStemOpKind;

/* One layer as the forward runs it: it reads buffer `in` (and in2 for ADD: out = in + in2) and
 * writes buffer `out`; buffer 0 is the image, the last one the patch grid (gh, gw, width). */
typedef struct {
  VlStemOpKind kind;
  int          in, in2, out;
  /* the model's parameter indices (-1: none): conv weight, bias; BN weight, bias, running mean,
   * running var; GN weight, bias; SE conv_reduce weight, bias, conv_expand weight, bias */
  int          param[4];
  int          k, stride, pad, groups;   /* conv (groups) and max pool */
  gboolean     same;                     /* TF/timm "same" padding (vl_same_pad) instead of pad */
  float        std_eps;                  /* > 0: a weight-standardized conv (vl_weight_std_*) */
  int          G;                        /* GroupNorm's groups; SE's reduced channels (SiLU) */
  float        eps;                      /* BatchNorm's and GroupNorm's */
} VlStemLayer;

int         vl_stem_n_layers     (const VlStem *s);
void        vl_stem_layer        (const VlStem *s, int i, VlStemLayer *out);
int         vl_stem_n_buffers    (const VlStem *s);
/* Channels of buffer i (0: in_chans). */
int         vl_stem_buffer_channels (const VlStem *s, int i);

G_END_DECLS
