/* vl-model-private.h: the model's insides, shared by vl-model.c (parameters, groups, heads,
 * optimizer), vl-families.c (loading each checkpoint family), vl-export.c and vl-compute.c
 * (forward and backward). */
#pragma once

#include "vl-model.h"

G_BEGIN_DECLS

/* Where a parameter comes from in the checkpoint: a whole tensor, or rows [row0, row0 + rows)
 * of the internal tensor (HF's separate query/key/value make one qkv), possibly transposed
 * (OpenCLIP's proj is stored [W, E], used as a Linear weight [E, W]). */
typedef struct {
  char    *name;
  int      ndim;
  int64_t  shape[4];
  int64_t  row0;
  gboolean transpose;
  /* the other way round: the internal tensor is the file tensor's elements from slice0 on, as
   * many as it has (transformers' in_proj_weight holding timm's q and kv, a position embedding
   * whose first row belongs to another tensor); shape is then the file tensor's */
  gboolean sliced;
  int64_t  slice0;
} VlSource;

#define VL_MAX_SOURCES 3

/* Compute components, in forward order; backward runs down to the lowest one that trains. */
enum { C_STEM = 0 };
static inline int vl_comp_block (int layer) { return 1 + layer; }
#define C_NORM(m) ((m)->geo.depth + 1)
#define C_PROJ(m) ((m)->geo.depth + 2)
#define C_HEAD(m) ((m)->geo.depth + 3)

typedef struct {
  char    *name;           /* internal (timm) name, e.g. "blocks.3.attn.qkv.weight" */
  int      ndim;
  int64_t  shape[4];
  int64_t  numel;
  int      group;          /* layer group (family-specific grouping) */
  int      comp;           /* compute component */
  gboolean decay;          /* AdamW weight decay applies */
  int      step;           /* AdamW steps taken by this parameter */
  VlSource src[VL_MAX_SOURCES];
  int      n_src;
  float   *data;           /* views into the parameter blocks */
  float   *grad;           /* NULL until the first backward that trains it */
  float   *m, *v;          /* AdamW moments, NULL until the first step */
  unsigned version;        /* bumped at each change of data (update, writable access) */
  gboolean buffer;         /* a BatchNorm running statistic: saved, never trained */
} VlParam;

/* Per block: these 12, then ls1, ls2 when the model has layer scale. */
enum { B_LN1_W, B_LN1_B, B_QKV_W, B_QKV_B, B_PROJ_W, B_PROJ_B,
       B_LN2_W, B_LN2_B, B_FC1_W, B_FC1_B, B_FC2_W, B_FC2_B, B_LS1, B_LS2 };

/* The MAP attention pool (attn_pool.*, SigLIP's), in this order from VlIndex.ap. */
enum { AP_LATENT, AP_Q_W, AP_Q_B, AP_KV_W, AP_KV_B, AP_PROJ_W, AP_PROJ_B, AP_NORM_W, AP_NORM_B,
       AP_FC1_W, AP_FC1_B, AP_FC2_W, AP_FC2_B, AP_N };

/* Indices into the parameter table; -1 when the model has no such tensor. */
typedef struct {
  int  patch_w, patch_b, cls, dist, reg, pos, pre_w, pre_b;
  int *block;              /* depth entries: index of B_LN1_W of each block */
  int  norm_w, norm_b;     /* final norm: `norm` over tokens, or `fc_norm` after pooling */
  int  ap;                 /* the MAP attention pool's first parameter (AP_LATENT) */
  int  proj;               /* OpenCLIP's projection, a Linear weight (E, W) without bias */
  int  head_w, head_b;     /* linear head, or the MLP head's first layer */
  int  head2_w, head2_b;   /* the MLP head's second layer */
  int  hdist_w, hdist_b;   /* DeiT's distillation head */
} VlIndex;

typedef struct _VlActs VlActs;
typedef struct _VlStem VlStem;

struct _VlModel {
  char        *path;
  char        *source_prefix;  /* before every tensor name in the file (a ViT nested in a
                                * training framework's checkpoint: "model."), or NULL */
  VlGeometry   geo;
  char       **class_names;   /* NULL-terminated or NULL */

  /* head */
  VlHeadKind   head_kind;
  int          num_classes;
  int          head_hidden;
  VlPoolKind   pool;

  /* parameters: the backbone in one block, the head in another (it can be replaced) */
  GArray      *params;        /* of VlParam */
  int          n_backbone;    /* params[0 .. n_backbone) are the backbone */
  VlIndex      ix;
  VlStem      *stem;          /* a CNN stem (vl-stem.h) in place of patch_w / patch_b; NULL: none */
  float       *block[2];      /* backbone, head */
  float       *grad_block[2];
  float       *m_block[2];
  float       *v_block[2];
  int64_t      block_size[2]; /* floats */

  /* layer groups: the body's groups (family-specific), then the head's */
  GPtrArray   *group_names;   /* body groups; "head" follows when there is a head */
  int          n_body_groups;
  gboolean    *trainable;     /* per group */
  int          n_groups;

  VlActs      *acts;          /* the last forward's */
  VlActs      *acts_spare;    /* the shape before it: training alternates with the probes' and
                               * validation's forwards, which would otherwise reallocate (and
                               * page in) every activation at each switch */
  GCancellable *cancellable;   /* checked between blocks */

  /* the blocks' linear weights packed for vl_gemm_packed, per parameter index (NULL: not yet),
   * the version of the parameter each copy was made from, and the kernel they were packed for
   * (its panels' width depends on it) */
  float      **packed;
  unsigned    *packed_version;
  int          packed_isa;
};

static inline VlParam *
vl_param (VlModel *m, int index)
{
  return &g_array_index (m->params, VlParam, index);
}

static inline float *
vl_pdata (VlModel *m, int index)
{
  return index >= 0 ? vl_param (m, index)->data : NULL;
}

static inline int
vl_block_param (VlModel *m, int layer, int which)
{
  return m->ix.block[layer] + which;
}

/* Building (vl-model.c): append a parameter of the backbone with its sources. */
int   vl_model_add_param     (VlModel *m, const char *name, int group, int comp, int ndim,
                              const int64_t *shape);
void  vl_model_add_source    (VlModel *m, int index, const char *name, int ndim,
                              const int64_t *shape, int64_t row0, gboolean transpose);
/* The whole parameter `index` from the elements [slice0, slice0 + its numel) of the file's
 * tensor `name` of `shape` (saved back into it, the elements no parameter covers as zeros). */
void  vl_model_add_source_slice (VlModel *m, int index, const char *name, int ndim,
                                 const int64_t *shape, int64_t slice0);
/* After the backbone's parameters are added: lays them out, sets up the groups. */
void  vl_model_finish_backbone (VlModel *m);
VlModel *vl_model_alloc      (void);
void  vl_model_add_group     (VlModel *m, const char *name);
/* Builds a head whose tensors come from the checkpoint under the given names (NULL: internal
 * name); the distillation head when hdist_name is non-NULL. */
/* FALSE with an error when a parameter block could not be allocated (a checkpoint too large
 * for the machine); the model must then be freed. */
gboolean vl_model_blocks_allocated (VlModel *m, GError **error);
void  vl_model_build_head    (VlModel *m, VlHeadKind kind, int num_classes, int hidden,
                              gboolean distilled);

/* Family loading (vl-families.c): recognises the checkpoint, fills m->geo, the parameter table
 * with sources and the groups, and copies the tensors. */
gboolean vl_families_load    (VlModel *m, const char *path, GError **error);
/* The timm parameter table of m->geo (with m->stem's parameters in place of the patch embedding
 * when there is one), timm's or OpenCLIP's group layout, laid out (vl_model_finish_backbone). */
void     vl_families_build   (VlModel *m, gboolean patch_bias, gboolean openclip_groups);

void vl_acts_free (VlActs *a);
/* Gradients for the trainable params exist and are zeroed. */
void vl_model_prepare_grads (VlModel *m);

G_END_DECLS
