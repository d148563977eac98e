/* vl-conv.h: the dense-prediction kernels over a token grid: 2-D convolution, the 2x2 stride-2
 * transposed convolution, bilinear resizing and LayerNorm over channels.
 *
 * Layout: channels-last, (B, H, W, C) row-major, as a ViT's patch tokens already are ((B, T, W)
 * rows with T = H * W): no transpose between the backbone and a dense head, and a 1x1 convolution
 * is one GEMM over the rows. Weights keep PyTorch's layouts ([Cout, Cin / groups, kh, kw] for
 * Conv2d, [Cin, Cout, 2, 2] for ConvTranspose2d) so that checkpoints load as they are.
 *
 * Conventions of vl-kernels.h: shapes beside each buffer; a backward *adds* into dinp, dw and db,
 * any of which may be NULL when not needed. The kernels are serial (the caller splits a batch
 * over threads); `work` arguments are scratch of the size the matching _work_size function gives,
 * or NULL (then allocated and freed inside the call). */
#pragma once

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

typedef struct {
  int B, H, W;     /* input grid */
  int Cin, Cout;   /* channels; both multiples of groups */
  int kh, kw;      /* kernel */
  int stride;      /* the same along both axes */
  int pad;         /* zero padding on every side */
  int groups;      /* 1: dense; Cin: depthwise */
} VlConv2d;

/* Output grid: (H + 2 pad - kh) / stride + 1, and likewise for the width. */
int     vl_conv2d_out_h        (const VlConv2d *c);
int     vl_conv2d_out_w        (const VlConv2d *c);
/* Floats of scratch a forward or backward needs (one image's im2col matrix). */
int64_t vl_conv2d_work_size    (const VlConv2d *c);

/* out (B, Ho, Wo, Cout) = conv (inp (B, H, W, Cin), w [Cout, Cin/groups, kh, kw]) + b (Cout);
 * b may be NULL. Four paths, by shape: a 1x1 stride-1 unpadded dense conv is one GEMM over all
 * the rows (no scratch); a depthwise one (Cin == groups, any multiplier Cout / groups) direct
 * loops over the channels; a dense stride-1 one with Cout <= Cin (a head's 3x3) one GEMM per
 * image onto (H W, kh kw Cout) then each output's taps summed; anything else im2col +
 * cblas_sgemm per image and group. */
void vl_conv2d_forward  (float *out, const float *inp, const float *w, const float *b,
                         const VlConv2d *c, float *work);
/* dinp (B, H, W, Cin) +=, dw [Cout, Cin/groups, kh, kw] +=, db (Cout) +=, from dout
 * (B, Ho, Wo, Cout). */
void vl_conv2d_backward (float *dinp, float *dw, float *db, const float *dout, const float *inp,
                         const float *w, const VlConv2d *c, float *work);

/* ConvTranspose2d (Cin, Cout, kernel 2, stride 2): out (B, 2H, 2W, Cout) with
 * out[b, 2i + dy, 2j + dx, o] = b[o] + sum_c inp[b, i, j, c] w[c, o, dy, dx]; w [Cin, Cout, 2, 2],
 * b (Cout) or NULL. One GEMM (B H W, Cin) x (Cin, 4 Cout); work: NULL or
 * vl_convt2x2_work_size floats. */
int64_t vl_convt2x2_work_size (int B, int H, int W, int Cout);
void vl_convt2x2_forward  (float *out, const float *inp, const float *w, const float *b, int B,
                           int H, int W, int Cin, int Cout, float *work);
/* dinp (B, H, W, Cin) +=, dw [Cin, Cout, 2, 2] +=, db (Cout) += from dout (B, 2H, 2W, Cout). */
void vl_convt2x2_backward (float *dinp, float *dw, float *db, const float *dout,
                           const float *inp, const float *w, int B, int H, int W, int Cin,
                           int Cout, float *work);

/* F.interpolate (mode="bilinear", align_corners=False, antialias=False) to an explicit size:
 * source coordinate (o + 0.5) in / out - 0.5, clamped below at 0, the upper neighbour clamped to
 * the last row or column. inp (B, H, W, C) -> out (B, Ho, Wo, C); up- and downsampling. */
void vl_bilinear_forward  (float *out, const float *inp, int B, int H, int W, int C, int Ho,
                           int Wo);
/* dinp (B, H, W, C) += the transpose of the forward applied to dout (B, Ho, Wo, C). */
void vl_bilinear_backward (float *dinp, const float *dout, int B, int H, int W, int C, int Ho,
                           int Wo);

/* LayerNorm over the channels of a channels-last grid (ViTDet's / mmseg's LayerNorm2d, biased
 * variance, usually eps 1e-6): exactly vl_layernorm_forward/backward over the B H W rows of C.
 * out (B, H, W, C); mean, rstd (B, H, W) or NULL. */
void vl_layernorm2d_forward  (float *out, float *mean, float *rstd, const float *inp,
                              const float *w, const float *b, int B, int H, int W, int C,
                              float eps);
/* dinp (B, H, W, C) +=, dw, db (C) += (each may be NULL). */
void vl_layernorm2d_backward (float *dinp, float *dw, float *db, const float *dout,
                              const float *inp, const float *w, const float *mean,
                              const float *rstd, int B, int H, int W, int C);

G_END_DECLS
