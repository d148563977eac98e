/* vl-cnn.h: the convolutional-network kernels of the CNN stems, on top of vl-conv.h: TF/timm
 * "same" padding, weight standardization (timm's StdConv2d), BatchNorm2d with running
 * statistics, GroupNorm, ReLU, SiLU, max pooling and squeeze-and-excitation.
 *
 * Layout and conventions are vl-conv.h's: channels-last grids (B, H, W, C) (so a grid is N = B H W
 * rows of C channels), PyTorch's weight layouts, shapes beside each buffer, a backward *adds* into
 * dinp, dw and db (each may be NULL when not needed), serial kernels. */
#pragma once

#include "vl-conv.h"

G_BEGIN_DECLS

/* ---- padding ---- */

/* TF/timm "same" padding of one axis (timm's get_same_padding / pad_same): total =
 * max ((ceil (in / stride) - 1) stride + k - in, 0), *lo = total / 2 before, *hi the rest after.
 * The output side is then ceil (in / stride). */
void vl_same_pad        (int in, int k, int stride, int *lo, int *hi);

/* out (B, H + top + bottom, W + left + right, C) = inp (B, H, W, C) surrounded by `value`
 * (F.pad (x, (left, right, top, bottom), value=value)). */
void vl_pad2d_forward   (float *out, const float *inp, int B, int H, int W, int C, int top,
                         int bottom, int left, int right, float value);
/* dinp (B, H, W, C) += the interior of dout (B, H + top + bottom, W + left + right, C). */
void vl_pad2d_backward  (float *dinp, const float *dout, int B, int H, int W, int C, int top,
                         int bottom, int left, int right);

/* Conv2dSame (timm's create_conv2d (padding='same') when the padding is dynamic): pad_same, then
 * vl_conv2d_forward with c->pad ignored (taken as 0). c->H, c->W are the unpadded input; the
 * output is (B, ceil (H / stride), ceil (W / stride), Cout). padded: NULL or
 * vl_conv2d_same_padded_size floats of scratch (the padded input, kept by the caller between
 * forward and backward if it likes; the backward pads again when given NULL). */
int64_t vl_conv2d_same_padded_size (const VlConv2d *c);
void vl_conv2d_same_forward  (float *out, const float *inp, const float *w, const float *b,
                              const VlConv2d *c, float *padded);
/* dinp (B, H, W, Cin) +=, dw +=, db += from dout (B, ceil (H / s), ceil (W / s), Cout). */
void vl_conv2d_same_backward (float *dinp, float *dw, float *db, const float *dout,
                              const float *inp, const float *w, const VlConv2d *c);

/* ---- weight standardization ---- */

/* timm's StdConv2d / StdConv2dSame weight: F.batch_norm (w.reshape (1, Cout, -1), None, None,
 * training=True, momentum=0, eps) — per output channel over its K = Cin/groups kh kw entries,
 * wout = (w - mean) / sqrt (biased var + eps). w, wout [Cout, K]; rstd (Cout) kept for the
 * backward. timm's default eps is 1e-6; its hybrid ViTs' ResNetV2 uses 1e-8. */
void vl_weight_std_forward  (float *wout, float *rstd, const float *w, int Cout, int64_t K,
                             float eps);
/* dw [Cout, K] += d/dw given dwout [Cout, K] (the gradient on the standardized weight). */
void vl_weight_std_backward (float *dw, const float *dwout, const float *wout,
                             const float *rstd, int Cout, int64_t K);

/* ---- normalisation ---- */

/* BatchNorm2d over N = B H W rows of C channels. train: the batch's mean and biased variance
 * normalise, and running_mean / running_var (C) (each may be NULL) move as PyTorch moves them:
 * r = (1 - momentum) r + momentum * stat, the variance unbiased (N / (N - 1)). Not train (eval,
 * or a frozen BN): the running statistics normalise. mean, rstd (C): what normalised, for the
 * backward. w, b (C) may be NULL (no affine). */
void vl_batchnorm_forward  (float *out, float *mean, float *rstd, const float *inp,
                            const float *w, const float *b, float *running_mean,
                            float *running_var, int64_t N, int C, float eps, float momentum,
                            gboolean train);
/* dinp (N, C) +=, dw, db (C) +=. train: through the batch statistics; else they are constants. */
void vl_batchnorm_backward (float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, const float *mean,
                            const float *rstd, int64_t N, int C, gboolean train);

/* GroupNorm (G groups of C / G channels; statistics per image and group over HW positions,
 * biased variance): inp, out (B, HW, C); mean, rstd (B, G); w, b (C). */
void vl_groupnorm_forward  (float *out, float *mean, float *rstd, const float *inp,
                            const float *w, const float *b, int B, int64_t HW, int C, int G,
                            float eps);
void vl_groupnorm_backward (float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, const float *mean,
                            const float *rstd, int B, int64_t HW, int C, int G);

/* ---- activations (n elements; out may alias inp) ---- */

void vl_relu_forward  (float *out, const float *inp, int64_t n);
/* dinp += dout where the forward's output `out` is positive. */
void vl_relu_backward (float *dinp, const float *dout, const float *out, int64_t n);
/* SiLU: x sigmoid (x). */
void vl_silu_forward  (float *out, const float *inp, int64_t n);
/* dinp += dout sigmoid (x) (1 + x (1 - sigmoid (x))), from the forward's input. */
void vl_silu_backward (float *dinp, const float *dout, const float *inp, int64_t n);

/* ---- max pooling ---- */

/* Square window k, stride s, `top` / `left` rows and columns of -inf padding before the input
 * and an output of Ho x Wo: nn.MaxPool2d (k, s, padding p) is top = left = p, Ho = (H + 2p - k) /
 * s + 1; timm's same-padded MaxPool2dSame is vl_same_pad's lo and Ho = ceil (H / s).
 * inp (B, H, W, C) -> out (B, Ho, Wo, C); argmax (B, Ho, Wo, C): the input position (y W + x)
 * of each maximum (the first one, as PyTorch), for the backward. */
void vl_maxpool2d_forward  (float *out, int *argmax, const float *inp, int B, int H, int W,
                            int C, int k, int s, int top, int left, int Ho, int Wo);
/* dinp (B, H, W, C) += dout (B, Ho, Wo, C) at the argmax positions. */
void vl_maxpool2d_backward (float *dinp, const float *dout, const int *argmax, int B, int H,
                            int W, int C, int Ho, int Wo);

/* ---- squeeze-and-excitation (timm's SqueezeExcite of EfficientNet: SiLU, sigmoid gate) ----
 * pooled (B, C) = mean over HW of inp (B, HW, C); h (B, R) = pooled w1^T + b1 (w1 [R, C, 1, 1]);
 * hs (B, R) = silu (h); gate (B, C) = sigmoid (hs w2^T + b2) (w2 [C, R, 1, 1]);
 * out (B, HW, C) = inp * gate. pooled, h, gate are kept for the backward. out may not alias
 * inp. */
void vl_se_forward  (float *out, float *pooled, float *h, float *gate, const float *inp,
                     const float *w1, const float *b1, const float *w2, const float *b2, int B,
                     int64_t HW, int C, int R);
/* dinp (B, HW, C) +=; dw1 [R, C], db1 (R), dw2 [C, R], db2 (C) +=. */
void vl_se_backward (float *dinp, float *dw1, float *db1, float *dw2, float *db2,
                     const float *dout, const float *inp, const float *w1, const float *w2,
                     const float *pooled, const float *h, const float *gate, int B, int64_t HW,
                     int C, int R);

G_END_DECLS
