/* vl-model.h: a pre-norm Vision Transformer loaded from a checkpoint, its layer groups, its head,
 * and the training step.
 *
 *   g_autoptr(VlModel) m = vl_model_load ("vit-tiny/", &error);
 *   vl_model_lock (m, 1);                                  // OpenCLIP lock(unlocked_groups=1)
 *   vl_model_forward (m, images, B, 224, 224, VL_FORWARD_TRAIN, &error);
 *   vl_model_backward (m, targets, 0.1f, &loss, &error);
 *   vl_model_adamw_step (m, &opt);
 */
#pragma once

#include <gio/gio.h>
#include <glib.h>
#include <stdint.h>

#include "vl-safetensors.h"

G_BEGIN_DECLS

typedef struct _VlModel VlModel;

/* Limits on what a checkpoint's config may declare (checked when it is read): the input side
 * in pixels and in patches (the forward's own limit), and crop_pct. */
#define VL_MAX_INPUT_SIZE 2048
#define VL_MAX_PATCHES    16384
#define VL_MIN_CROP_PCT   0.05
#define VL_MAX_CROP_PCT   2.0

typedef enum {
  VL_POOL_TOKEN,   /* the CLS token */
  VL_POOL_AVG,     /* mean over the patch tokens (CLS excluded) */
  VL_POOL_MAX,     /* elementwise max over the patch tokens */
  VL_POOL_MAP,     /* the checkpoint's attention pool over the patch tokens (SigLIP's MAP head:
                    * a learned query attending to them, then a residual MLP) */
} VlPoolKind;

typedef enum {
  VL_HEAD_NONE,
  VL_HEAD_LINEAR,  /* Linear (W -> K) */
  VL_HEAD_MLP,     /* Linear (W -> hidden) -> GELU -> Linear (hidden -> K) */
} VlHeadKind;

typedef struct {
  char     *family;        /* "timm", "openclip", "hf-vit", "torchvision" */
  char     *architecture;  /* from config.json, or "vit" */
  int       in_chans;
  int       patch;
  int       width;
  int       depth;
  int       heads;
  int       head_dim;
  int       mlp;
  int       grid;          /* native grid side (pos_embed) */
  int       img_size;      /* native input side = grid * patch */
  int       n_tokens;      /* at the native size: n_prefix + grid * grid */
  float     eps;
  /* structure beyond the plain timm ViT (all FALSE / 0 for it, but class_token) */
  gboolean  class_token;   /* a CLS token leads the sequence */
  gboolean  dist_token;    /* DeiT's distillation token follows it (and head_dist) */
  int       reg_tokens;    /* register tokens follow (excluded from pooling and heatmaps) */
  int       n_prefix;      /* class + distillation + register tokens */
  gboolean  no_embed_class;/* pos_embed covers the patch tokens only */
  gboolean  pre_norm;      /* LayerNorm after the embeddings (OpenCLIP ln_pre, timm norm_pre) */
  gboolean  layer_scale;   /* per-channel gammas on both residual branches (ls1, ls2) */
  gboolean  fc_norm;       /* the final norm applies after pooling (timm fc_norm) */
  gboolean  quick_gelu;    /* x * sigmoid (1.702 x) instead of the exact GELU */
  gboolean  gelu_tanh;     /* GELU's tanh approximation (SigLIP, Flax) instead of the exact one */
  gboolean  attn_pool;     /* an attention-pooling head (attn_pool.*, timm's AttentionPoolLatent) */
  int       embed_dim;     /* output width of OpenCLIP's projection; 0 when there is none */
  /* preprocessing (pretrained_cfg) */
  int       input_size;
  double    crop_pct;
  gboolean  squash;        /* resized whole to the square, no crop (SigLIP's processors) */
  char     *interpolation;
  float     mean[4];
  float     std[4];
} VlGeometry;

/* Loads a `.safetensors` file (with its config file beside it when there is one) or a folder
 * holding model.safetensors and config.json (or open_clip_config.json). The family (timm,
 * OpenCLIP / OpenAI CLIP visual tower, Hugging Face ViT, torchvision) is recognised from the
 * tensor names. Every tensor is checked against the geometry; errors name the file, the tensor,
 * the shape found and the shape expected. */
VlModel          *vl_model_load            (const char *path, GError **error);
/* The file vl_model_load opens in the checkpoint folder `dir` (model.safetensors,
 * open_clip_model.safetensors, pytorch_model.bin, open_clip_pytorch_model.bin: the first there),
 * or NULL. g_free. */
char             *vl_checkpoint_in_folder  (const char *dir);
/* A randomly initialised timm model of the given geometry (timm's initialisation: trunc-normal
 * std 0.02 for weights, zeros for biases, ones for LayerNorm weights). The structure flags of
 * the geometry (class_token, reg_tokens, pre_norm, layer_scale, …) are honoured; family, names
 * and n_prefix are filled in. */
VlModel          *vl_model_new_random      (const VlGeometry *geometry, int num_classes,
                                            uint64_t seed);
void              vl_model_free            (VlModel *m);
/* Parses a geometry for vl_model_new_random: comma-separated key=value with keys img, patch,
 * chans (3), width, depth, heads (width / 64), mlp (4 * width), mean and std (0.5; one value or
 * one per channel), eps (1e-6), and cls (1: a class token), map (0: an attention pool as
 * SigLIP's), gelu_tanh (0), e.g. "img=28,patch=4,chans=1,width=96,depth=6,heads=3". */
gboolean          vl_geometry_parse        (const char *spec, VlGeometry *geometry,
                                            GError **error);

const VlGeometry *vl_model_geometry        (VlModel *m);
const char       *vl_model_path            (VlModel *m);
/* Class names (K entries) when the checkpoint came with them, else NULL. */
const char *const*vl_model_class_names     (VlModel *m);
int64_t           vl_model_n_params        (VlModel *m);

/* Replaces the class names (K = vl_model_num_classes entries; NULL clears them). */
void              vl_model_set_class_names (VlModel *m, const char *const *names);

/* Forward and backward passes check this between blocks and stop with G_IO_ERROR_CANCELLED
 * once it is cancelled, so a worker stops within one block rather than one whole pass. The
 * model keeps a reference; NULL removes it. */
void              vl_model_set_cancellable (VlModel *m, GCancellable *cancellable);

/* ---- the head ---- */
VlHeadKind        vl_model_head_kind       (VlModel *m);
int               vl_model_num_classes     (VlModel *m);
VlPoolKind        vl_model_pool            (VlModel *m);
/* Sets the pooling; without a CLS token "token" becomes "map" when the checkpoint has an
 * attention pool, else "avg" (as timm pools such models); "map" without an attention pool
 * becomes "token" (then that rule). */
void              vl_model_set_pool        (VlModel *m, VlPoolKind pool);
/* FALSE with a message naming the model when it cannot pool that way (map without an attention
 * pool, token without a CLS token). */
gboolean          vl_model_check_pool      (VlModel *m, VlPoolKind pool, GError **error);
/* The attention pool's probabilities of the last forward (B, heads, T - n_prefix): where the
 * pool's query looked; NULL when the last forward did not pool by map. */
const float      *vl_model_pool_attention  (VlModel *m);
/* Replaces the head with a new one for num_classes classes, initialised as timm initialises a
 * reset classifier (nn.Linear's default: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias).
 * hidden is the MLP head's hidden width (ignored for linear). Optimizer state of the head is
 * dropped. VL_HEAD_NONE removes the head. */
void              vl_model_set_head        (VlModel *m, VlHeadKind kind, int num_classes,
                                            int hidden, uint64_t seed);
gboolean          vl_pool_from_string      (const char *s, VlPoolKind *pool);
/* The names run.json, config.json and the CLI use: "token", "avg", "max", "map"; "linear",
 * "mlp", "none". */
const char       *vl_pool_name             (VlPoolKind pool);
const char       *vl_head_kind_name        (VlHeadKind kind);
gboolean          vl_head_kind_from_string (const char *s, VlHeadKind *out);

/* ---- the stem: what turns images into the patch-token grid ----
 * patch: the ViT's own patch embedding (a patch x patch stride-patch convolution); conv and
 * mbconv: CNN stems (vl-stem.h) vitlab builds in its place; resnetv2: timm's hybrid ViTs'
 * ResNetV2 backbone with HybridEmbed's projection, as loaded from such a checkpoint. */
typedef enum {
  VL_STEM_PATCH,
  VL_STEM_CONV,
  VL_STEM_MBCONV,
  VL_STEM_RESNETV2,
} VlStemKind;

VlStemKind        vl_model_stem_kind       (VlModel *m);
const char       *vl_stem_kind_name        (VlStemKind kind);   /* "patch", "conv", … */
gboolean          vl_stem_kind_from_string (const char *s, VlStemKind *kind);
/* Replaces the patch embedding (or the current stem) with a new, randomly initialised conv or
 * mbconv stem (seeded) of the same input channels, total stride (= the patch size: the token
 * grid stays) and width. Every other tensor (position embedding and prefix tokens included), the
 * head and the layer groups' locks stay; the stem takes the stem group. Optimizer state of the
 * old stem is dropped. FALSE with an error when the patch size is not a power of two from 2 to
 * 64. */
gboolean          vl_model_replace_stem    (VlModel *m, VlStemKind kind, uint64_t seed,
                                            GError **error);

/* ---- layer groups (OpenCLIP lock semantics over timm's grouping) ----
 * stem [patch_embed.*, cls_token, pos_embed], blocks.0 … blocks.L-1, norm, head (when present). */
int               vl_model_n_groups        (VlModel *m);
const char       *vl_model_group_name      (VlModel *m, int group);
int64_t           vl_model_group_n_params  (VlModel *m, int group);
gboolean          vl_model_group_trainable (VlModel *m, int group);
void              vl_model_set_group_trainable (VlModel *m, int group, gboolean trainable);
/* Unlocks the last n groups and locks the rest: 0 freezes everything, n >= n_groups unlocks all. */
void              vl_model_lock            (VlModel *m, int unlocked_groups);
int64_t           vl_model_n_trainable     (VlModel *m);

/* ---- parameters, by their checkpoint names ---- */
int               vl_model_n_tensors       (VlModel *m);
const char       *vl_model_tensor_name     (VlModel *m, int index);
/* data and (after a backward, NULL before) gradient of tensor `index`; shape via ndim/shape.
 * The engine keeps packed copies of frozen weights: a write through the data pointer into a
 * frozen group's tensor is seen by the forwards after the next call of this function for it (or a
 * change of the group's lock); trainable tensors are read afresh at every forward. */
float            *vl_model_tensor_data     (VlModel *m, int index, int *ndim, int64_t *shape,
                                            int64_t *numel);
float            *vl_model_tensor_grad     (VlModel *m, int index);
int               vl_model_tensor_group    (VlModel *m, int index);
int               vl_model_find_tensor     (VlModel *m, const char *name);
/* Writes every parameter under the checkpoint's own names and layout (atomically). */
gboolean          vl_model_save            (VlModel *m, const char *path, GError **error);
/* Writes a timm-compatible model into folder `dir`: model.safetensors in timm naming and a
 * timm-style config.json (architecture, num_classes, global_pool, model_args with the full
 * geometry, pretrained_cfg, label_names). OpenCLIP's projection is folded into the head (or
 * becomes the head when there is none). Each file is written atomically. */
gboolean          vl_model_export          (VlModel *m, const char *dir, GError **error);
/* Writes the model losslessly under vitlab's internal (timm) names: st_path gets every tensor
 * (OpenCLIP's projection as proj.weight, an MLP head as head.fc1/fc2), cfg_path (may be NULL) a
 * timm-style config.json whose "vitlab" section records what timm's naming cannot (projection
 * width, layer-group layout, head). vl_model_load reads it back exactly. Used by run folders. */
gboolean          vl_model_save_checkpoint (VlModel *m, const char *st_path,
                                            const char *cfg_path, GError **error);

/* ---- compute ---- */
typedef enum {
  VL_FORWARD_INFER            = 0,
  VL_FORWARD_TRAIN            = 1 << 0, /* keep what backward needs (for the unlocked groups) */
  VL_FORWARD_CAPTURE_ATTN     = 1 << 1, /* keep every block's attention probabilities */
} VlForwardFlags;

/* images: (B, C, H, W) float32, already normalised. H and W must be multiples of the patch size;
 * another grid than the native one resamples the position embedding as timm does. */
gboolean          vl_model_forward         (VlModel *m, const float *images, int B, int H,
                                            int W, VlForwardFlags flags, GError **error);
/* Frozen-prefix caching. The lock boundary is the input of the lowest unlocked group: the token
 * stream entering the lowest unlocked block (or the final norm), or the pooled features when only
 * the head trains. Everything below it is frozen, so its output can be computed once per image
 * and reused in every epoch:
 *   vl_model_forward_to_boundary (m, images, B, H, W, cache + i * numel, &e);   // once
 *   vl_model_forward_from_boundary (m, cache + i * numel, B, H, W, VL_FORWARD_TRAIN, &e);
 *   vl_model_backward (...);                                              // identical gradients
 * numel is 0 when the stem trains (nothing to cache); the cache is invalid once the lock, the
 * pooling or the frozen weights change. */
int64_t           vl_model_boundary_numel  (VlModel *m, int H, int W);
gboolean          vl_model_forward_to_boundary   (VlModel *m, const float *images, int B, int H,
                                                  int W, float *out, GError **error);
gboolean          vl_model_forward_from_boundary (VlModel *m, const float *boundary, int B,
                                                  int H, int W, VlForwardFlags flags,
                                                  GError **error);
/* A cache for the next lock too, from the same pass: the block whose input would be the boundary
 * were the last `unlocked_groups` groups unlocked (0 to depth; -1 when that boundary is not a
 * block's input), and vl_model_forward_to_boundary that also copies the tokens entering block
 * `keep_block` (T x width per image) to keep_out, when the pass goes through them (keep_block at
 * most the current boundary's block; depth for the pooled or embedding boundaries). While only
 * the groups above the current boundary train, those tokens stay valid. */
int               vl_model_block_boundary_for    (VlModel *m, int unlocked_groups);
gboolean          vl_model_forward_to_boundary_keeping (VlModel *m, const float *images, int B,
                                                        int H, int W, float *out, int keep_block,
                                                        float *keep_out, GError **error);

/* Results of the last forward (valid until the next one). */
int               vl_model_batch           (VlModel *m);
int               vl_model_n_tokens_last   (VlModel *m);     /* T of the last forward */
const float      *vl_model_tokens_final    (VlModel *m);     /* (B, T, W) */
const float      *vl_model_features        (VlModel *m);     /* (B, W) pooled */
const float      *vl_model_logits          (VlModel *m);     /* (B, K), NULL without head */
/* OpenCLIP's image embedding, features @ proj (B, E); NULL without a projection. */
const float      *vl_model_embedding       (VlModel *m);
/* (B, heads, T, T) of block `block`, only after VL_FORWARD_CAPTURE_ATTN. */
const float      *vl_model_attention       (VlModel *m, int block);
/* Attention rollout over the patch tokens (B, T - n_prefix) from the captured attention: the
 * CLS row (or, without a CLS token, the mean of the patch rows) of the product of the blocks'
 * head-averaged, identity-added, row-normalised attention matrices. */
gboolean          vl_model_rollout         (VlModel *m, float *out, GError **error);
/* The position embedding used by the last forward (1, T, W). */
const float      *vl_model_pos_embed_used  (VlModel *m);
/* The token stream (B, T, W) leaving block `block` (0 … depth-1) in the last vl_model_forward,
 * before any final norm (block depth-1: the final norm's input); NULL for another block or when
 * the last forward started from cached pooled features (after vl_model_forward_from_boundary,
 * only the blocks from the boundary on hold this batch's tokens). */
const float      *vl_model_tokens_after_block (VlModel *m, int block);

/* Cross-entropy of the logits against targets (B) with label smoothing, and its gradient for
 * every trainable parameter (gradients are overwritten, not accumulated). Needs a forward with
 * VL_FORWARD_TRAIN. A non-finite loss is an error (VL_ERROR_NUMERIC) and leaves grads unset. */
gboolean          vl_model_backward        (VlModel *m, const int *targets,
                                            float label_smoothing, double *loss,
                                            GError **error);
/* Where a backward can start: the gradient of the loss with respect to one of the forward's
 * results. A task whose head lives outside the model (a segmentation map over the token grid, a
 * detector) computes its own loss and hands the model the gradient on what its head read. */
typedef enum {
  VL_GRAD_LOGITS,      /* (B, K): the model's own head output (vl_model_logits) */
  VL_GRAD_EMBEDDING,   /* (B, E): OpenCLIP's image embedding (vl_model_embedding) */
  VL_GRAD_FEATURES,    /* (B, W): the pooled features (vl_model_features) */
  VL_GRAD_TOKENS,      /* (B, T, W): the final-norm token grid (vl_model_tokens_final) */
} VlGradAt;

/* The backward from d_out, the gradient on `where` of the last VL_FORWARD_TRAIN forward:
 * gradients of every trainable parameter at or below `where` (overwritten, not accumulated;
 * parameters above it, such as the head when starting from the features, get zeros). The
 * distillation head of a DeiT model contributes only from VL_GRAD_LOGITS. vl_model_backward is
 * the cross-entropy of the logits followed by this from VL_GRAD_LOGITS. */
gboolean          vl_model_backward_from   (VlModel *m, VlGradAt where, const float *d_out,
                                            GError **error);
/* Global L2 norm of the trainable gradients; scales them to max_norm when above it
 * (torch.nn.utils.clip_grad_norm_). max_norm <= 0 only measures. */
double            vl_model_clip_grad_norm  (VlModel *m, double max_norm);

typedef struct {
  float lr;
  float beta1, beta2, eps;
  float weight_decay;
  /* per-group learning-rate multiplier (layer decay); NULL = 1 for all */
  const float *group_lr_scale;
} VlAdamW;

#define VL_ADAMW_DEFAULTS { .lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, \
                            .weight_decay = 0.05f, .group_lr_scale = NULL }

/* One AdamW step on the trainable parameters, with timm's rule of no weight decay on 1-D
 * parameters, pos_embed and cls_token. Each parameter keeps its own step count, so a group
 * unlocked later starts its bias correction at step 1 and groups already training keep theirs. */
void              vl_model_adamw_step      (VlModel *m, const VlAdamW *opt);
/* L2 norm of the gradients of one group after a backward (0 when it is frozen). */
double            vl_model_group_grad_norm (VlModel *m, int group);
/* AdamW state of tensor `index`: moments (NULL before its first step) and its step count. */
void              vl_model_tensor_optim_state (VlModel *m, int index, const float **exp_avg,
                                               const float **exp_avg_sq, int *step);
/* Restores it (for resuming a run): allocates the moments when missing, copies them (NULL:
 * zeros) and sets the step count. */
void              vl_model_tensor_set_optim_state (VlModel *m, int index, const float *exp_avg,
                                                   const float *exp_avg_sq, int step);

/* TRUE when weight decay applies to tensor `index`. */
gboolean          vl_model_tensor_decays   (VlModel *m, int index);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (VlModel, vl_model_free)

G_END_DECLS
