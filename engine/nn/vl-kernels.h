/* vl-kernels.h: the numerical kernels, one plain function per layer direction.
 *
 * Conventions (after llm.c): row-major buffers, shapes in comments; a backward *adds* into its
 * parameter-gradient outputs (dw, db), which may be NULL when that parameter is frozen. The
 * kernels are serial; vl-compute.c runs them over the thread pool in row ranges. */
#pragma once

#include <stdint.h>

/* out, mean, rstd: (N, C), (N), (N); mean/rstd may be NULL (inference). */
void vl_layernorm_forward  (float *out, float *mean, float *rstd, const float *inp,
                            const float *w, const float *b, int64_t N, int C, float eps);
/* dinp (N, C) +=; dw, db (C) += (NULL when frozen); dinp NULL when not needed. */
void vl_layernorm_backward (float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, const float *mean,
                            const float *rstd, int64_t N, int C);

/* QuickGELU (OpenAI CLIP): x * sigmoid (1.702 x). Same conventions as the GELU pair. */
void vl_quick_gelu_forward  (float *out, const float *inp, int64_t n);
void vl_quick_gelu_backward (float *dinp, const float *inp, const float *dout, int64_t n);

/* GELU's tanh approximation (PyTorch's approximate="tanh"), the same conventions. */
void vl_gelu_tanh_forward  (float *out, const float *inp, int64_t n);
void vl_gelu_tanh_backward (float *dinp, const float *inp, const float *dout, int64_t n);

/* Exact (erf) GELU. */
void vl_gelu_forward       (float *out, const float *inp, int64_t n);
/* dinp = dout * gelu'(inp) (overwrites; dinp may alias dout). */
void vl_gelu_backward      (float *dinp, const float *inp, const float *dout, int64_t n);
/* x[i] *= y[i] (the backward's multiply by a stored GELU'(h)): one rounding per value, the same
 * result on every instruction set */
void vl_mul_inplace (float *x, const float *y, int64_t n);

/* out = act (x) and, in place of x, act' (x): for a block whose backward will need only the
 * derivative (its activation's output being stored too), so that the backward multiplies by it
 * instead of evaluating erf again. */
void vl_gelu_forward_deriv       (float *out, float *x, int64_t n);
void vl_quick_gelu_forward_deriv (float *out, float *x, int64_t n);
void vl_gelu_tanh_forward_deriv  (float *out, float *x, int64_t n);

/* In place, each of `rows` rows of `cols` (already scaled: attention's GEMM applies 1/sqrt(D)). */
void vl_softmax_rows       (float *x, int64_t rows, int cols);
/* Its backward in place: ds = p * (ds - rowsum (ds * p)) * scale, ds holding d p on entry. */
void vl_softmax_backward_rows (float *ds, const float *p, int64_t rows, int cols, float scale);

/* One image, one head. qkv (T, 3W) laid out as timm's reshape (T, 3, H, D); out (T, W) gets this
 * head's columns h*D..h*D+D-1; att (T, T) receives the softmax probabilities. */
void vl_attention_forward  (float *out, float *att, const float *qkv, int T, int W, int D,
                            int h);
/* The same for the query rows [q0, q1) only (their rows of att and out). kpack: NULL, or
 * vl_packed_numel (T, D) floats (64-byte aligned): scratch for this head's keys packed, or with
 * kpacked, the keys as vl_attention_pack_keys left them (chunks of one head's query rows share
 * them: batch 1 splits each head's rows between the threads). */
void vl_attention_forward_rows (float *out, float *att, const float *qkv, int T, int W, int D,
                                int h, int q0, int q1, float *kpack, gboolean kpacked);
/* kpack = head h's keys packed for vl_gemm_packed; FALSE (nothing done) where vitlab's kernel is
 * not in use. */
gboolean vl_attention_pack_keys (float *kpack, const float *qkv, int T, int W, int D, int h);
/* dqkv (T, 3W): this head's q, k, v columns are overwritten. dscore: (T, T) scratch; vpack:
 * NULL or vl_packed_numel (T, D) floats of scratch (64-byte aligned) for the values packed. */
void vl_attention_backward (float *dqkv, float *dscore, const float *dout, const float *att,
                            const float *qkv, int T, int W, int D, int h, float *vpack);

/* Mean cross-entropy over the batch with PyTorch's label smoothing:
 * loss_i = (1 - ls) * -log p[y] + ls * mean_k (-log p_k). dlogits (B, K) = d loss / d logits.
 * Returns the loss; not finite when a logit is not finite. targets must be in [0, K). */
double vl_cross_entropy    (float *dlogits, const float *logits, const int *targets, int B,
                            int K, float label_smoothing);

/* 1-D resampling as timm's resample_abs_pos_embed does it (F.interpolate bicubic,
 * align_corners=False, antialias=True: the Pillow kernel, a = -0.5, support widened when
 * downsampling, weights normalised) as a matrix w (out_size, in_size): y = w x. */
void vl_bicubic_matrix     (float *w, int out_size, int in_size);

/* images (B, C, H, W) -> cols (B * gh * gw, C * p * p), columns ordered (c, ky, kx) to match a
 * conv weight (W, C, p, p). */
void vl_im2col_patches     (float *cols, const float *images, int B, int C, int H, int W, int p);

/* One AdamW step with torch.optim.AdamW semantics (decoupled decay applied first), `step` >= 1
 * being this parameter's own step count. */
void vl_adamw_update       (float *p, const float *g, float *m, float *v, int64_t n, float lr,
                            float beta1, float beta2, float eps, float weight_decay, int step);

/* e^x for float, vectorizable: x = k ln2 + r with |r| <= ln2 / 2 (Cody-Waite), e^r by a degree-6
 * polynomial, 2^k built in the exponent bits. Relative error below 3e-7 on [-87, 88]; inputs
 * outside are clamped (e^-87 is below float's normal range anyway). */
static inline float
vl_expf (float x)
{
  x = x > -87.0f ? x : -87.0f;
  x = x < 88.0f ? x : 88.0f;
  float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;   /* round to nearest */
  float r = x - k * 0.693145751953125f - k * 1.42860682030941723e-6f;
  float p = 1.0f + r * (1.0f + r * (0.5f + r * (0.166666671633720f + r * (0.0416666418313980f +
            r * (0.00833345205336809f + r * 0.00138925421237946f)))));
  union { int32_t i; float f; } two_k = { .i = ((int32_t) k + 127) << 23 };
  return p * two_k.f;
}
