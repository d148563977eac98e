/* vl-model-private.h: the model's insides, shared by vl-model.c (loading, groups, heads,
 * optimizer) and vl-compute.c (forward and backward). */
#pragma once

#include "vl-model.h"

G_BEGIN_DECLS

typedef struct {
  char    *name;           /* checkpoint name, e.g. "blocks.3.attn.qkv.weight" */
  int      ndim;
  int64_t  shape[4];
  int64_t  numel;
  int      group;
  gboolean decay;          /* AdamW weight decay applies */
  int      step;           /* AdamW steps taken by this parameter */
  float   *data;           /* views into the parameter blocks */
  float   *grad;           /* NULL until the first backward that trains it */
  float   *m, *v;          /* AdamW moments, NULL until the first step */
} VlParam;

/* Stem tensors, then per block, then the final norm, then the head. */
enum { P_PATCH_W, P_PATCH_B, P_CLS, P_POS, P_N_STEM };
enum { B_LN1_W, B_LN1_B, B_QKV_W, B_QKV_B, B_PROJ_W, B_PROJ_B,
       B_LN2_W, B_LN2_B, B_FC1_W, B_FC1_B, B_FC2_W, B_FC2_B, B_N_PARAMS };
enum { H_W, H_B, H_FC2_W, H_FC2_B };    /* linear: W, B; MLP: fc1 W, B, fc2 W, B */

typedef struct _VlActs VlActs;

struct _VlModel {
  char        *path;
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
  float       *block[2];      /* backbone, head */
  float       *grad_block[2];
  float       *m_block[2];
  float       *v_block[2];
  int64_t      block_size[2]; /* floats */

  gboolean    *trainable;     /* per group */
  int          n_groups;

  VlActs      *acts;
};

static inline VlParam *
vl_param (VlModel *m, int index)
{
  return &g_array_index (m->params, VlParam, index);
}

static inline int
vl_block_param (int layer, int which)
{
  return P_N_STEM + layer * B_N_PARAMS + which;
}

static inline int
vl_norm_param (const VlModel *m, int which)   /* 0 weight, 1 bias */
{
  return P_N_STEM + m->geo.depth * B_N_PARAMS + which;
}

static inline int
vl_head_param (const VlModel *m, int which)
{
  return m->n_backbone + which;
}

/* Group indices: stem 0, block l is 1 + l, norm depth + 1, head depth + 2. */
static inline int vl_group_of_block (int layer) { return 1 + layer; }
static inline int vl_norm_group (const VlModel *m) { return m->geo.depth + 1; }
static inline int vl_head_group (const VlModel *m) { return m->geo.depth + 2; }

void vl_acts_free (VlActs *a);
/* Gradients for the trainable params exist and are zeroed. */
void vl_model_prepare_grads (VlModel *m);

G_END_DECLS
