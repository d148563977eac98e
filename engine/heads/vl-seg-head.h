/* vl-seg-head.h: semantic segmentation heads over a ViT's final-norm patch-token grid.
 *
 *   linear   decode_head.conv_seg: a 1x1 convolution W -> K over the (gh, gw) grid of patch
 *            tokens, then bilinear (align_corners false) to the output size
 *   upconv   decode_head.up.0  ConvTranspose2d (W -> W/2, kernel 2, stride 2)
 *            decode_head.up.1  LayerNorm over the channels (eps 1e-6)
 *                              GELU (exact)
 *            decode_head.up.3  ConvTranspose2d (W/2 -> W/4, 2, 2)
 *            decode_head.conv_seg  1x1 conv W/4 -> K, then bilinear to the output size
 *
 * Tensors keep mmsegmentation's names and PyTorch's layouts (conv_seg.weight [K, C, 1, 1],
 * up.N.weight [Cin, Cout, 2, 2]). Prefix tokens (CLS, distillation, registers) are dropped on
 * the way in; their gradient is zero on the way out. Grids of any size work.
 *
 * The head lives outside the model: with a seg head the model carries no classification head
 * (vl_model_set_head (m, VL_HEAD_NONE, …)), its final-norm tokens feed this head, and the
 * gradient this head gives on them starts the model's backward:
 *
 *   vl_model_forward (m, x, B, S, S, VL_FORWARD_TRAIN, &e);
 *   const float *z = vl_seg_head_forward (h, vl_model_tokens_final (m), B,
 *                                         vl_model_n_tokens_last (m), n_prefix, S/p, S/p, S, S);
 *   vl_seg_cross_entropy (dz, z, masks, B S S, K, 255, NULL);          // dz zeroed first
 *   vl_seg_head_backward (h, dz, d_tokens);
 *   vl_model_backward_from (m, VL_GRAD_TOKENS, d_tokens, &e);
 *   vl_model_adamw_step (m, &opt);  vl_seg_head_adamw_step (h, &opt, 1.0f);
 *
 * The trainer drives it through vl-head.h (vl_head_new_seg).
 *
 * Outputs are channels-last (B, Ho, Wo, K). Valid until the next forward. */
#pragma once

#include <glib.h>
#include <stdint.h>

#include "vl-head-param.h"
#include "vl-model.h"
#include "vl-safetensors.h"

G_BEGIN_DECLS

typedef enum {
  VL_SEG_HEAD_LINEAR,
  VL_SEG_HEAD_UPCONV,
} VlSegHeadKind;

typedef struct _VlSegHead VlSegHead;

/* "linear", "upconv". */
const char *vl_seg_head_kind_name        (VlSegHeadKind kind);
gboolean    vl_seg_head_kind_from_string (const char *s, VlSegHeadKind *out);

/* A new head for tokens of width `width` (a multiple of 4 for upconv) and n_classes classes,
 * initialised as mmsegmentation initialises it: conv_seg weight N(0, 0.01), bias 0; the
 * transposed convolutions as PyTorch's default (U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in
 * = Cout * 4 for weight and bias); LayerNorm 1 and 0. NULL when width does not fit. */
VlSegHead  *vl_seg_head_new           (VlSegHeadKind kind, int width, int n_classes,
                                       uint64_t seed);
void        vl_seg_head_free          (VlSegHead *h);
VlSegHeadKind vl_seg_head_kind        (VlSegHead *h);
int         vl_seg_head_width         (VlSegHead *h);
int         vl_seg_head_n_classes     (VlSegHead *h);
int64_t     vl_seg_head_n_params      (VlSegHead *h);

/* Its parameters as the trainer and checkpoints handle every head (vl-head-param.h): *n of
 * them, in the order of the accessors below. */
VlHeadParam *vl_seg_head_params       (VlSegHead *h, int *n);
/* Its tensors, by their mmsegmentation names. Gradients are NULL before the first backward. */
int         vl_seg_head_n_tensors     (VlSegHead *h);
const char *vl_seg_head_tensor_name   (VlSegHead *h, int i);
float      *vl_seg_head_tensor_data   (VlSegHead *h, int i, int *ndim, int64_t *shape,
                                       int64_t *numel);
float      *vl_seg_head_tensor_grad   (VlSegHead *h, int i);
int         vl_seg_head_find_tensor   (VlSegHead *h, const char *name);
/* TRUE for the tensors weight decay applies to (timm's rule: not on 1-D parameters). */
gboolean    vl_seg_head_tensor_decays (VlSegHead *h, int i);

/* Forward from tokens (B, T, W) whose last gh * gw rows of each image are the patch grid
 * (T = n_prefix + gh gw). Returns the logits (B, Ho, Wo, K), channels-last. */
const float*vl_seg_head_forward       (VlSegHead *h, const float *tokens, int B, int T,
                                       int n_prefix, int gh, int gw, int Ho, int Wo);
/* The logits on the head's own grid before the final upsampling (B, gh', gw', K), gh' = gh for
 * linear, 4 gh for upconv; *gho, *gwo receive its size. Valid after a forward. */
const float*vl_seg_head_grid_logits   (VlSegHead *h, int *gho, int *gwo);
/* Backward of the last forward from dlogits (B, Ho, Wo, K): the parameter gradients
 * (overwritten) and, when d_tokens is not NULL, d loss / d tokens (B, T, W), overwritten, zero
 * on the prefix rows. */
void        vl_seg_head_backward      (VlSegHead *h, const float *dlogits, float *d_tokens);
/* One AdamW step with the model's hyperparameters, lr scaled by lr_scale (a layer-decay
 * multiplier), no decay on 1-D tensors. */
void        vl_seg_head_adamw_step    (VlSegHead *h, const VlAdamW *opt, float lr_scale);
/* AdamW state of tensor i (NULL before its first step); checkpoints restore it on
 * vl_seg_head_params (vl_head_params_restore). */
void        vl_seg_head_optim_state   (VlSegHead *h, int i, const float **exp_avg,
                                       const float **exp_avg_sq, int *step);

/* Adds every tensor to w (data referenced: keep the head alive until the write). */
void        vl_seg_head_add_to_writer (VlSegHead *h, VlSafetensorsWriter *w);
/* TRUE when st holds a seg head (decode_head.conv_seg.weight). */
gboolean    vl_seg_head_in_safetensors (VlSafetensors *st);
/* A head read from st (kind from the presence of decode_head.up.0.weight, K from conv_seg);
 * errors name the file, the tensor and the shapes. */
VlSegHead  *vl_seg_head_from_safetensors (VlSafetensors *st, int width, GError **error);

/* vl_seg_head_from_safetensors on the file at path. */
VlSegHead  *vl_seg_head_load          (const char *path, int width, GError **error);
/* The seg head of a checkpoint (decode_head.* in the file) or of a folder (its
 * model.safetensors, else seg_head.safetensors: run folders and timm exports of segmentation
 * runs). *out is NULL when there is none; FALSE only when one is there but does not read. */
gboolean    vl_seg_head_find          (const char *source, int width, VlSegHead **out,
                                       GError **error);
/* vl_model_save_checkpoint with the seg head's tensors (mmsegmentation's names, decode_head.*)
 * beside the model's in st_path: one file that vl_model_load reads as the backbone and
 * vl_seg_head_load as the head (a segmentation run's best.safetensors). */
gboolean    vl_model_save_checkpoint_with_seg_head (VlModel *m, VlSegHead *seg,
                                                    const char *st_path, const char *cfg_path,
                                                    GError **error);
/* The Pascal VOC colour map (256 RGB triples): class k's colour from the bits of k. */
void        vl_seg_palette            (uint8_t palette[256 * 3]);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (VlSegHead, vl_seg_head_free)

G_END_DECLS
