/* vl-compute-private.h: what vl-compute.c (activations, the layer operations over the pool,
 * the forward) and vl-compute-backward.c (the backward) share. Engine-internal. */
#pragma once

#include "vl-model-private.h"

/* A LayerNorm's backward splits its rows into this many chunks, each summing its own share of
 * the weight and bias gradients (vl_compute_layernorm_backward). */
#define LN_BWD_CHUNKS(threads) (2 * (threads))

typedef struct {
  float *ln1, *ln1_mean, *ln1_rstd;   /* (B,T,W), (B,T), (B,T) */
  float *qkv;                          /* (B,T,3W) */
  float *att;                          /* (B,H,T,T) */
  float *atty;                         /* (B,T,W) attention output before proj */
  float *ls1b;                         /* (B,T,W) proj output, when layer scale multiplies it */
  float *xmid;                         /* (B,T,W) x + [ls1 *] proj (atty) */
  float *ln2, *ln2_mean, *ln2_rstd;   /* (B,T,W), (B,T), (B,T) */
  float *h, *g;                        /* (B,T,M) fc1 output, activation of it */
  gboolean h_deriv;                    /* h holds act'(fc1 output) instead: g is kept, and the
                                        * backward needs nothing else of fc1's output */
  float *ls2b;                         /* (B,T,W) fc2 output, when layer scale multiplies it */
} BlockActs;

struct _VlActs {
  /* what this allocation was made for */
  int        B, gh, gw, T, P, pos_prefix;
  int        store_from;     /* blocks >= this keep their own activations */
  gboolean   capture;
  gboolean   train;
  int        K, hidden;
  int        n_threads;

  gboolean   valid;          /* a forward ran and its results are in place */
  gboolean   valid_train;    /* ... with VL_FORWARD_TRAIN */
  gboolean   resampled;
  gboolean   from_features;  /* the last forward started after the tokens */
  gboolean   pooled_valid;   /* the pooled features of the last forward are in place */
  int        c0;             /* lowest trainable component at the forward (-1: none) */

  GPtrArray *allocs;
  float     *cols;           /* (B*NP, C*p*p) */
  float     *patch_out;      /* (B*NP, W) */
  float     *pos;            /* (pos_prefix + NP, W) the position embedding used */
  float     *resample;       /* (NP, NP0) */
  float     *resample_h, *resample_w;
  float     *xemb, *pre_mean, *pre_rstd;  /* (B,T,W) before ln_pre */
  float    **xs;             /* depth + 1 of (B,T,W) */
  BlockActs *blk;           /* blocks >= store_from; below it only .att, when capturing */
  int        span;           /* > 0: blocks run `span` images at a time per worker; 0: whole */
  BlockActs *scratch;        /* the frozen blocks' intermediates: one set per worker of `span`
                              * images each, or one set for the whole batch */
  float    **gbuf;           /* the stored blocks' GELU output, sized like the scratch sets:
                              * fc2's input in the forward, recomputed from h for the backward */
  float     *lnf, *lnf_mean, *lnf_rstd;   /* token norm output (== xs[depth] with fc_norm) */
  float     *pooled_raw;     /* (B,W) before fc_norm */
  float     *fc_mean, *fc_rstd;
  float     *pooled;         /* (B,W) the features */
  int       *argmax;         /* (B,W) */
  float     *emb;            /* (B,E) OpenCLIP embedding */
  float     *dist_feat;      /* (B,W) the distillation token's features */
  float     *head_h, *head_g;/* (B,hidden) */
  float     *logits;         /* (B,K) */
  float     *logits_dist;    /* (B,K) */

  float     *dlogits;        /* (B,K) */
  float     *dhin;           /* (B,max(W,E)) d head input */
  float     *dpooled;        /* (B,W) */
  float     *dpooled_raw;    /* (B,W) */
  float     *ddist;          /* (B,W) */
  float     *dhead;          /* (B,hidden) */
  float     *dx;             /* (B,T,W) */
  float     *dtmp;           /* (B,T,W) */
  float     *dbranch;        /* (B,T,W) */
  float     *dwide;          /* (B,T,max(M,3W)) */
  float     *datty;          /* (B,T,W) */
  float     *dscore;         /* (threads,T,T) */
  float     *ln_partial;     /* (LN_BWD_CHUNKS (threads),2,W) */
  float     *dw_part;        /* (threads-1, N K + N) for the largest linear layer */
  float     *tn_work;        /* (threads, tn_numel): vl_gemm_tn's packing space, per worker */
  float     *qkv_g;          /* (3W W + 3W): see qkv_ln1_params_backward */
  float     *wpack;          /* a block weight packed for its input gradient (vl_pack_rows) */
  int64_t    tn_numel;
  const float *packed[4];    /* the current block's packed weights (pack_block) */
  float     *kpack;          /* (threads, kpack_numel): one head's keys packed, per worker */
  float     *kshared;        /* (4 threads, kpack_numel): keys per (image, head), AttnJob */
  int64_t    kpack_numel;
  float     *dpos_new;       /* (pos_prefix + NP, W) */

  /* the MAP attention pool (vl-map-pool.c), when the model has one; N = T - P patch tokens */
  float     *mp_q;           /* (W) the query: q (latent) */
  float     *mp_x;           /* (B,N,W) the patch tokens gathered, when P > 0 */
  float     *mp_kv;          /* (B,N,2W) keys, then values */
  float     *mp_att;         /* (B,H,N) softmax probabilities */
  float     *mp_y, *mp_z;    /* (B,W) attention output; after proj */
  float     *mp_ln, *mp_mean, *mp_rstd;   /* (B,W), (B), (B) */
  float     *mp_h, *mp_g;    /* (B,M) fc1 output, its activation */
  float     *mp_dkv;         /* (B,N,2W) */
  float     *mp_dz, *mp_dy, *mp_dln;      /* (B,W) */
  float     *mp_dh;          /* (B,M) */
  float     *mp_dq;          /* (W) */
  float     *mp_dq_part;     /* (B,W) each image's share of d q */
  float     *mp_dx;          /* (B,N,W), when P > 0 */
  gboolean   mp_valid;       /* the last forward pooled by map */
};

typedef enum { ACT_NONE, ACT_GELU, ACT_QUICK_GELU, ACT_GELU_TANH, ACT_DERIV } Act;

typedef void (*RowsFunc) (void *ctx, int64_t r0, int64_t r1, int worker);

typedef struct {
  const VlGeometry *g;
  int T;
  const BlockActs *k;
  const float *datty;
  float *dqkv, *dscore;
  int q_chunks;          /* forward: query-row chunks per (image, head) */
  float *kshared;        /* forward with q_chunks > 1: each pair's keys packed, kpack_numel apart */
  const VlActs *a;       /* its per-worker kpack */
} AttnJob;


/* n zeroed, 64-byte aligned elements of `size` bytes, freed with the activations */
void *vl_compute_acts_alloc (VlActs *a, int64_t n, size_t size);
#define FALLOC(a, n) ((float *) vl_compute_acts_alloc ((a), (n), sizeof (float)))
void vl_compute_act_forward (Act act, float *out, const float *inp, int64_t n);
void vl_compute_linear_forward (float *out, Act act, float *act_out, const float *inp, const float *w, const float *b, const float *residual, int64_t M, int K, int N);
void vl_compute_layernorm_forward (float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b, int64_t N, int C, float eps);
float *vl_compute_grad_of (VlModel *m, int index);
/* vl-map-pool.c */
void vl_map_pool_alloc (VlModel *m, VlActs *a);
void vl_map_pool_forward (VlModel *m, VlActs *a, const float *tokens, float *out);
void vl_map_pool_backward (VlModel *m, VlActs *a, const float *dout, float *dtok);
void vl_compute_attn_bwd_task (void *data, int64_t i, int worker);
gboolean vl_compute_cancelled (VlModel *m, GError **error);
void vl_compute_colsum (float *db, const float *dout, const float *scale_by, int64_t M, int N);
const float *vl_compute_head_input (VlModel *m, VlActs *a, int *din);
void vl_compute_layernorm_backward (VlActs *a, float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w, const float *mean, const float *rstd, int64_t N, int C);
void vl_compute_linear_backward_input (float *dinp, const float *dout, const float *w, Act act, const float *pre, int64_t M, int K, int N, gboolean accumulate, float *wpack);
void vl_compute_linear_backward_params (float *dw, float *db, const float *dout, const float *inp, int64_t M, int K, int N);
void vl_compute_linear_backward_params_rows (VlActs *a, float *dw, float *db, const float *dout, const float *inp, int64_t M, int K, int N);
int vl_compute_lowest_trainable (VlModel *m);
Act vl_compute_model_act (VlModel *m);
void vl_compute_parallel_rows (int64_t rows, int64_t row_work, int per_thread, RowsFunc fn, void *ctx);
