/* vl-kernels.c: see vl-kernels.h. */
#include "vl-gemm.h"
#include "vl-kernels.h"
#include "vl-loss.h"
#include "vl-pool.h"

#include <math.h>
#include <string.h>

#define VL_SQRT1_2 0.70710678118654752440f
#define VL_INV_SQRT_2PI 0.39894228040143267794f

/* The elementwise kernels are compiled for AVX-512, AVX2 and the x86-64 baseline; the loader
 * picks the best the CPU has (GCC function multiversioning). Their loops are branch-free so GCC
 * vectorizes them (the build uses -fno-trapping-math, which lets it if-convert the clamps).
 * Sanitizer builds keep one version: the ifunc resolver runs during relocation, before a
 * sanitizer runtime is ready, and its instrumentation crashes there. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    !defined(__SANITIZE_THREAD__) && !defined(__SANITIZE_ADDRESS__)
#define VL_MULTIVERSION __attribute__ ((target_clones ("avx512f", "avx2", "default")))
#else
#define VL_MULTIVERSION
#endif

/* erf (x / sqrt 2) and exp (-x² / 2) together (the GELU's CDF and, up to a constant, its PDF):
 * Abramowitz & Stegun 7.1.26, absolute error below 2e-7, sharing the exponential. */
static inline float
vl_erf_sqrt1_2 (float x, float *gauss)
{
  float z = fabsf (x) * VL_SQRT1_2;
  float t = 1.0f / (1.0f + 0.3275911f * z);
  float poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f +
               t * (-1.453152027f + t * 1.061405429f))));
  float e = vl_expf (-z * z);
  *gauss = e;
  return copysignf (1.0f - poly * e, x);
}

/* Row kernels with reductions (layer norm, softmax) are written with GCC's vector extensions:
 * GCC does not vectorize a float reduction on its own (that would reassociate the sum), so the
 * sums run in VL_LANES explicit lanes, combined at the end. One vl_vf is one AVX-512 register;
 * the AVX2 and baseline clones split it into two or four. Row tails go through the scalar code. */
#define VL_LANES 16
/* the helpers below are always inlined: no vector ever crosses a call boundary */
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float   vl_vf __attribute__ ((vector_size (VL_LANES * sizeof (float))));
typedef int32_t vl_vi __attribute__ ((vector_size (VL_LANES * sizeof (int32_t))));

static inline __attribute__ ((always_inline)) vl_vf
vload (const float *p)
{
  vl_vf v;
  memcpy (&v, p, sizeof v);
  return v;
}

static inline __attribute__ ((always_inline)) void
vstore (float *p, vl_vf v)
{
  memcpy (p, &v, sizeof v);
}

static inline __attribute__ ((always_inline)) vl_vf
vmax (vl_vf a, vl_vf b)
{
  vl_vi m = a > b;
  return (vl_vf) (((vl_vi) a & m) | ((vl_vi) b & ~m));
}

static inline __attribute__ ((always_inline)) vl_vf
vmin (vl_vf a, vl_vf b)
{
  vl_vi m = a < b;
  return (vl_vf) (((vl_vi) a & m) | ((vl_vi) b & ~m));
}

static inline __attribute__ ((always_inline)) float
vsum (vl_vf v)
{
  float l[VL_LANES];
  memcpy (l, &v, sizeof l);
  for (int w = VL_LANES / 2; w > 0; w /= 2)
    for (int i = 0; i < w; i++)
      l[i] += l[i + w];
  return l[0];
}

static inline __attribute__ ((always_inline)) float
vhmax (vl_vf v)
{
  float l[VL_LANES];
  memcpy (l, &v, sizeof l);
  for (int w = VL_LANES / 2; w > 0; w /= 2)
    for (int i = 0; i < w; i++)
      l[i] = l[i + w] > l[i] ? l[i + w] : l[i];
  return l[0];
}

/* vl_expf, lane by lane (the same steps, so the same results up to FMA contraction). */
static inline __attribute__ ((always_inline)) vl_vf
vexp (vl_vf x)
{
  const vl_vf zero = { 0 };
  x = vmax (x, zero - 87.0f);
  x = vmin (x, zero + 88.0f);
  vl_vf k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  vl_vf r = x - k * 0.693145751953125f - k * 1.42860682030941723e-6f;
  vl_vf p = 1.0f + r * (1.0f + r * (0.5f + r * (0.166666671633720f + r * (0.0416666418313980f +
            r * (0.00833345205336809f + r * 0.00138925421237946f)))));
  vl_vi two_k = (__builtin_convertvector (k, vl_vi) + 127) << 23;
  return p * (vl_vf) two_k;
}

VL_MULTIVERSION void
vl_mul_inplace (float *restrict x, const float *restrict y, int64_t n)
{
  for (int64_t i = 0; i < n; i++)
    x[i] *= y[i];
}

VL_MULTIVERSION static void
layernorm_forward_generic (float *out, float *mean, float *rstd, const float *inp,
                           const float *w, const float *b, int64_t N, int C, float eps)
{
  const int body = C - C % VL_LANES;
  for (int64_t i = 0; i < N; i++)
    {
      const float *x = inp + i * C;
      float *o = out + i * C;
      vl_vf acc = { 0 };
      for (int c = 0; c < body; c += VL_LANES)
        acc += vload (x + c);
      float s = vsum (acc);
      for (int c = body; c < C; c++)
        s += x[c];
      const float m = s / C;
      vl_vf acc2 = { 0 };
      for (int c = 0; c < body; c += VL_LANES)
        {
          vl_vf d = vload (x + c) - m;
          acc2 += d * d;
        }
      float v = vsum (acc2);
      for (int c = body; c < C; c++)
        v += (x[c] - m) * (x[c] - m);
      const float r = 1.0f / sqrtf (v / C + eps);
      for (int c = 0; c < body; c += VL_LANES)
        vstore (o + c, (vload (x + c) - m) * r * vload (w + c) + vload (b + c));
      for (int c = body; c < C; c++)
        o[c] = (x[c] - m) * r * w[c] + b[c];
      if (mean)
        mean[i] = m;
      if (rstd)
        rstd[i] = r;
    }
}

/* LayerNorm's backward over the columns [c0, C) of one row, one at a time: the tails of the
 * vectorized loops (the portable code's and AVX2's). First the row's two sums and the parameter
 * gradients, then the input gradient. */
static inline __attribute__ ((always_inline)) void
ln_backward_sums_tail (float *sum_dxhat, float *sum_dxhat_xhat, float *dw, float *db,
                       const float *x, const float *dy, const float *w, float m, float r, int c0,
                       int C)
{
  for (int c = c0; c < C; c++)
    {
      float xhat = (x[c] - m) * r;
      float dxhat = dy[c] * w[c];
      *sum_dxhat += dxhat;
      *sum_dxhat_xhat += dxhat * xhat;
      if (dw)
        dw[c] += dy[c] * xhat;
      if (db)
        db[c] += dy[c];
    }
}

static inline __attribute__ ((always_inline)) void
ln_backward_dx_tail (float *dx, const float *x, const float *dy, const float *w, float m, float r,
                     float a, float bb, int c0, int C)
{
  for (int c = c0; c < C; c++)
    {
      float xhat = (x[c] - m) * r;
      dx[c] += r * (dy[c] * w[c] - a - xhat * bb);
    }
}

VL_MULTIVERSION static void
layernorm_backward_generic (float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, const float *mean,
                            const float *rstd, int64_t N, int C)
{
  const int body = C - C % VL_LANES;
  for (int64_t i = 0; i < N; i++)
    {
      const float *x = inp + i * C;
      const float *dy = dout + i * C;
      const float m = mean[i], r = rstd[i];
      /* dxhat = dy * w; dx = r * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) */
      vl_vf s1 = { 0 }, s2 = { 0 };
      for (int c = 0; c < body; c += VL_LANES)
        {
          vl_vf xhat = (vload (x + c) - m) * r, dyv = vload (dy + c);
          vl_vf dxhat = dyv * vload (w + c);
          s1 += dxhat;
          s2 += dxhat * xhat;
          if (dw)
            vstore (dw + c, vload (dw + c) + dyv * xhat);
          if (db)
            vstore (db + c, vload (db + c) + dyv);
        }
      float sum_dxhat = vsum (s1), sum_dxhat_xhat = vsum (s2);
      ln_backward_sums_tail (&sum_dxhat, &sum_dxhat_xhat, dw, db, x, dy, w, m, r, body, C);
      if (dinp)
        {
          float *dx = dinp + i * C;
          const float a = sum_dxhat / C, bb = sum_dxhat_xhat / C;
          for (int c = 0; c < body; c += VL_LANES)
            {
              vl_vf xhat = (vload (x + c) - m) * r;
              vstore (dx + c, vload (dx + c) + r * (vload (dy + c) * vload (w + c) - a - xhat * bb));
            }
          ln_backward_dx_tail (dx, x, dy, w, m, r, a, bb, body, C);
        }
    }
}

VL_MULTIVERSION static void
gelu_forward_generic (float *out, const float *inp, int64_t n)
{
  for (int64_t i = 0; i < n; i++)
    {
      float x = inp[i], e;
      out[i] = 0.5f * x * (1.0f + vl_erf_sqrt1_2 (x, &e));
    }
}

VL_MULTIVERSION static void
gelu_backward_generic (float *dinp, const float *inp, const float *dout, int64_t n)
{
  for (int64_t i = 0; i < n; i++)
    {
      float x = inp[i], e;
      float cdf = 0.5f * (1.0f + vl_erf_sqrt1_2 (x, &e));
      dinp[i] = dout[i] * (cdf + x * VL_INV_SQRT_2PI * e);
    }
}

VL_MULTIVERSION static void
gelu_forward_deriv_generic (float *out, float *x, int64_t n)
{
  for (int64_t i = 0; i < n; i++)
    {
      /* out as vl_gelu_forward computes it, x' as vl_gelu_backward: the same bits */
      float xi = x[i], e;
      float erf = vl_erf_sqrt1_2 (xi, &e);
      out[i] = 0.5f * xi * (1.0f + erf);
      x[i] = 0.5f * (1.0f + erf) + xi * VL_INV_SQRT_2PI * e;
    }
}

VL_MULTIVERSION void
vl_quick_gelu_forward_deriv (float *out, float *x, int64_t n)
{
  for (int64_t i = 0; i < n; i++)
    {
      float xi = x[i];
      float s = 1.0f / (1.0f + vl_expf (-1.702f * xi));
      out[i] = xi / (1.0f + vl_expf (-1.702f * xi));   /* as vl_quick_gelu_forward */
      x[i] = s + 1.702f * xi * s * (1.0f - s);
    }
}

VL_MULTIVERSION void
vl_quick_gelu_forward (float *out, const float *inp, int64_t n)
{
  for (int64_t i = 0; i < n; i++)
    {
      float x = inp[i];
      out[i] = x / (1.0f + vl_expf (-1.702f * x));
    }
}

VL_MULTIVERSION void
vl_quick_gelu_backward (float *dinp, const float *inp, const float *dout, int64_t n)
{
  for (int64_t i = 0; i < n; i++)
    {
      float x = inp[i];
      float s = 1.0f / (1.0f + vl_expf (-1.702f * x));
      dinp[i] = dout[i] * (s + 1.702f * x * s * (1.0f - s));
    }
}

/* GELU's tanh approximation (PyTorch's approximate="tanh", Flax's default, SigLIP's
 * gelu_pytorch_tanh): 0.5 x (1 + tanh (u)), u = sqrt (2 / pi) (x + 0.044715 x^3); tanh (u) as
 * 1 - 2 / (e^{2u} + 1) with vl_expf (exact at both ends: e^{2u} clamps). */
#define VL_SQRT_2_PI 0.7978845608028654f

static inline float
gelu_tanh_t (float x)
{
  const float u = VL_SQRT_2_PI * (x + 0.044715f * x * x * x);
  return 1.0f - 2.0f / (vl_expf (2.0f * u) + 1.0f);
}

/* d/dx 0.5 x (1 + t) = 0.5 (1 + t) + 0.5 x (1 - t^2) u' */
static inline float
gelu_tanh_grad (float x, float t)
{
  return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * VL_SQRT_2_PI * (1.0f + 0.134145f * x * x);
}

VL_MULTIVERSION void
vl_gelu_tanh_forward (float *out, const float *inp, int64_t n)
{
  for (int64_t i = 0; i < n; i++)
    {
      const float x = inp[i];
      out[i] = 0.5f * x * (1.0f + gelu_tanh_t (x));
    }
}

VL_MULTIVERSION void
vl_gelu_tanh_backward (float *dinp, const float *inp, const float *dout, int64_t n)
{
  for (int64_t i = 0; i < n; i++)
    {
      const float x = inp[i];
      dinp[i] = dout[i] * gelu_tanh_grad (x, gelu_tanh_t (x));
    }
}

VL_MULTIVERSION void
vl_gelu_tanh_forward_deriv (float *out, float *x, int64_t n)
{
  for (int64_t i = 0; i < n; i++)
    {
      /* the same bits as vl_gelu_tanh_forward and vl_gelu_tanh_backward */
      const float xi = x[i], t = gelu_tanh_t (xi);
      out[i] = 0.5f * xi * (1.0f + t);
      x[i] = gelu_tanh_grad (xi, t);
    }
}

VL_MULTIVERSION static void
softmax_rows_generic (float *x, int64_t rows, int cols)
{
  const int body = cols - cols % VL_LANES;
  for (int64_t r = 0; r < rows; r++)
    {
      float *row = x + r * cols;
      vl_vf vmx = { 0 };
      vmx -= INFINITY;
      for (int c = 0; c < body; c += VL_LANES)
        vmx = vmax (vmx, vload (row + c));
      float mx = vhmax (vmx);
      for (int c = body; c < cols; c++)
        mx = row[c] > mx ? row[c] : mx;
      vl_vf vs = { 0 };
      for (int c = 0; c < body; c += VL_LANES)
        {
          vl_vf e = vexp (vload (row + c) - mx);
          vstore (row + c, e);
          vs += e;
        }
      float s = vsum (vs);
      for (int c = body; c < cols; c++)
        {
          row[c] = vl_expf (row[c] - mx);
          s += row[c];
        }
      const float inv = 1.0f / s;
      for (int c = 0; c < cols; c++)
        row[c] *= inv;
    }
}

/* ds = p * (ds - rowsum (ds * p)) * scale, row by row: the softmax's backward, ds (rows, cols)
 * holding d p on entry. */
VL_MULTIVERSION static void
softmax_backward_rows_generic (float *ds, const float *p, int64_t rows, int cols, float scale)
{
  const int body = cols - cols % VL_LANES;
  for (int64_t i = 0; i < rows; i++)
    {
      float *d = ds + i * cols;
      const float *a = p + i * cols;
      vl_vf acc = { 0 };
      for (int c = 0; c < body; c += VL_LANES)
        acc += vload (d + c) * vload (a + c);
      float dot = vsum (acc);
      for (int c = body; c < cols; c++)
        dot += d[c] * a[c];
      for (int c = 0; c < cols; c++)
        d[c] = a[c] * (d[c] - dot) * scale;
    }
}

/* The three element-wise kernels that cost most (GELU and the softmax: about 7% of a training
 * step on AVX-512, 17% of inference on AVX2 as GCC vectorizes them), written by hand for
 * AVX-512: e^x as 2^k p(r) with k from a rounding instruction and 2^k applied by vscalefps,
 * which also handles the ranges the portable code clamps, and each row's tail (197 = 12 x 16 + 5
 * columns) as one masked vector rather than five scalar exponentials; and for AVX2 below. They
 * run where the product kernel of the same instruction set does (vl_gemm_isa), so the tests can
 * check each against the portable code. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__SANITIZE_THREAD__) && \
    !defined(__SANITIZE_ADDRESS__)
#include "vl-avx2.h"
#define VL_HAVE_AVX512_ELEMENTWISE 1
#define AVX512 __attribute__ ((target ("avx512f")))

/* e^x, relative error below 3e-7 (the same polynomial as vl_expf); 0 below about -103, inf above
 * about 88.7 */
static inline __attribute__ ((always_inline)) AVX512 __m512
exp512 (__m512 x)
{
  const __m512 k = _mm512_roundscale_ps (_mm512_mul_ps (x, _mm512_set1_ps (1.44269504088896341f)),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps (k, _mm512_set1_ps (0.693145751953125f), x);
  r = _mm512_fnmadd_ps (k, _mm512_set1_ps (1.42860682030941723e-6f), r);
  __m512 p = _mm512_set1_ps (0.00138925421237946f);
  p = _mm512_fmadd_ps (p, r, _mm512_set1_ps (0.00833345205336809f));
  p = _mm512_fmadd_ps (p, r, _mm512_set1_ps (0.0416666418313980f));
  p = _mm512_fmadd_ps (p, r, _mm512_set1_ps (0.166666671633720f));
  p = _mm512_fmadd_ps (p, r, _mm512_set1_ps (0.5f));
  p = _mm512_fmadd_ps (p, r, _mm512_set1_ps (1.0f));
  p = _mm512_fmadd_ps (p, r, _mm512_set1_ps (1.0f));
  return _mm512_scalef_ps (p, k);
}

/* erf (x / sqrt 2) as vl_erf_sqrt1_2 (Abramowitz & Stegun 7.1.26), and exp (-x^2 / 2) */
static inline __attribute__ ((always_inline)) AVX512 __m512
erf512 (__m512 x, __m512 *gauss)
{
  const __m512 z = _mm512_mul_ps (_mm512_abs_ps (x), _mm512_set1_ps (VL_SQRT1_2));
  const __m512 t = _mm512_div_ps (_mm512_set1_ps (1.0f),
                                  _mm512_fmadd_ps (z, _mm512_set1_ps (0.3275911f),
                                                   _mm512_set1_ps (1.0f)));
  __m512 poly = _mm512_set1_ps (1.061405429f);
  poly = _mm512_fmadd_ps (poly, t, _mm512_set1_ps (-1.453152027f));
  poly = _mm512_fmadd_ps (poly, t, _mm512_set1_ps (1.421413741f));
  poly = _mm512_fmadd_ps (poly, t, _mm512_set1_ps (-0.284496736f));
  poly = _mm512_fmadd_ps (poly, t, _mm512_set1_ps (0.254829592f));
  poly = _mm512_mul_ps (poly, t);
  const __m512 e = exp512 (_mm512_mul_ps (_mm512_sub_ps (_mm512_setzero_ps (), z), z));
  *gauss = e;
  const __m512 mag = _mm512_fnmadd_ps (poly, e, _mm512_set1_ps (1.0f));
  /* copysign: x's bits where the third operand has them (the sign), mag's elsewhere (0xd8:
   * c ? b : a, bit by bit) */
  return _mm512_castsi512_ps (_mm512_ternarylogic_epi32 (
      _mm512_castps_si512 (mag), _mm512_castps_si512 (x), _mm512_set1_epi32 (INT32_MIN), 0xd8));
}

static inline __attribute__ ((always_inline)) AVX512 __mmask16
tail_mask (int64_t left)
{
  return (__mmask16) (left >= 16 ? 0xffff : (1u << left) - 1);
}

static AVX512 void
gelu_forward_avx512 (float *out, const float *inp, int64_t n)
{
  for (int64_t i = 0; i < n; i += 16)
    {
      const __mmask16 m = tail_mask (n - i);
      const __m512 x = _mm512_maskz_loadu_ps (m, inp + i);
      __m512 e;
      const __m512 erf = erf512 (x, &e);
      const __m512 hx = _mm512_mul_ps (x, _mm512_set1_ps (0.5f));
      _mm512_mask_storeu_ps (out + i, m, _mm512_fmadd_ps (hx, erf, hx));
    }
}

static AVX512 void
gelu_backward_avx512 (float *dinp, const float *inp, const float *dout, int64_t n)
{
  for (int64_t i = 0; i < n; i += 16)
    {
      const __mmask16 m = tail_mask (n - i);
      const __m512 x = _mm512_maskz_loadu_ps (m, inp + i);
      __m512 e;
      const __m512 erf = erf512 (x, &e);
      const __m512 cdf = _mm512_fmadd_ps (erf, _mm512_set1_ps (0.5f), _mm512_set1_ps (0.5f));
      const __m512 d = _mm512_fmadd_ps (_mm512_mul_ps (x, _mm512_set1_ps (VL_INV_SQRT_2PI)), e,
                                        cdf);
      _mm512_mask_storeu_ps (dinp + i, m, _mm512_mul_ps (_mm512_maskz_loadu_ps (m, dout + i), d));
    }
}

static AVX512 void
gelu_forward_deriv_avx512 (float *out, float *x, int64_t n)
{
  for (int64_t i = 0; i < n; i += 16)
    {
      const __mmask16 m = tail_mask (n - i);
      const __m512 xv = _mm512_maskz_loadu_ps (m, x + i);
      __m512 e;
      const __m512 erf = erf512 (xv, &e);
      const __m512 cdf = _mm512_fmadd_ps (erf, _mm512_set1_ps (0.5f), _mm512_set1_ps (0.5f));
      const __m512 hx = _mm512_mul_ps (xv, _mm512_set1_ps (0.5f));   /* as gelu_forward_avx512 */
      _mm512_mask_storeu_ps (out + i, m, _mm512_fmadd_ps (hx, erf, hx));
      _mm512_mask_storeu_ps (x + i, m,
                             _mm512_fmadd_ps (_mm512_mul_ps (xv, _mm512_set1_ps (VL_INV_SQRT_2PI)),
                                              e, cdf));
    }
}

/* Rows in pairs: each row's three passes wait on the previous pass's reduction, so two
 * independent rows keep the vector ports busier (a quarter faster on ViT's 197 columns) */
static inline __attribute__ ((always_inline)) AVX512 void
softmax_rows2 (float *r0, float *r1, int cols)
{
  __m512 m0 = _mm512_set1_ps (-INFINITY), m1 = m0;
  for (int c = 0; c < cols; c += 16)
    {
      const __mmask16 m = tail_mask (cols - c);
      m0 = _mm512_mask_max_ps (m0, m, m0, _mm512_loadu_ps (r0 + c));
      m1 = _mm512_mask_max_ps (m1, m, m1, _mm512_loadu_ps (r1 + c));
    }
  const __m512 v0 = _mm512_set1_ps (_mm512_reduce_max_ps (m0));
  const __m512 v1 = _mm512_set1_ps (_mm512_reduce_max_ps (m1));
  __m512 s0 = _mm512_setzero_ps (), s1 = s0;
  for (int c = 0; c < cols; c += 16)
    {
      const __mmask16 m = tail_mask (cols - c);
      const __m512 e0 = exp512 (_mm512_sub_ps (_mm512_maskz_loadu_ps (m, r0 + c), v0));
      const __m512 e1 = exp512 (_mm512_sub_ps (_mm512_maskz_loadu_ps (m, r1 + c), v1));
      _mm512_mask_storeu_ps (r0 + c, m, e0);
      _mm512_mask_storeu_ps (r1 + c, m, e1);
      s0 = _mm512_mask_add_ps (s0, m, s0, e0);
      s1 = _mm512_mask_add_ps (s1, m, s1, e1);
    }
  const __m512 i0 = _mm512_set1_ps (1.0f / _mm512_reduce_add_ps (s0));
  const __m512 i1 = _mm512_set1_ps (1.0f / _mm512_reduce_add_ps (s1));
  for (int c = 0; c < cols; c += 16)
    {
      const __mmask16 m = tail_mask (cols - c);
      const __m512 a0 = _mm512_maskz_loadu_ps (m, r0 + c), a1 = _mm512_maskz_loadu_ps (m, r1 + c);
      _mm512_mask_storeu_ps (r0 + c, m, _mm512_mul_ps (a0, i0));
      _mm512_mask_storeu_ps (r1 + c, m, _mm512_mul_ps (a1, i1));
    }
}

static AVX512 void
softmax_rows_avx512 (float *x, int64_t rows, int cols)
{
  int64_t r = 0;
  for (; r + 2 <= rows; r += 2)
    softmax_rows2 (x + r * cols, x + (r + 1) * cols, cols);
  if (r < rows)   /* the last of an odd count with itself: each pass loads both before storing */
    softmax_rows2 (x + r * cols, x + r * cols, cols);
}

/* The same three on AVX2 + FMA (AMD Zen, Intel before AVX-512), where the AVX2 product kernel
 * runs: e^x as the portable code computes it (inputs clamped to [-87, 88], 2^k built in the
 * exponent bits), row tails as one masked vector. */
#define AVX2 VL_AVX2

static inline __attribute__ ((always_inline)) AVX2 __m256
exp256 (__m256 x)
{
  x = _mm256_max_ps (x, _mm256_set1_ps (-87.0f));
  x = _mm256_min_ps (x, _mm256_set1_ps (88.0f));
  const __m256 k = _mm256_round_ps (_mm256_mul_ps (x, _mm256_set1_ps (1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps (k, _mm256_set1_ps (0.693145751953125f), x);
  r = _mm256_fnmadd_ps (k, _mm256_set1_ps (1.42860682030941723e-6f), r);
  __m256 p = _mm256_set1_ps (0.00138925421237946f);
  p = _mm256_fmadd_ps (p, r, _mm256_set1_ps (0.00833345205336809f));
  p = _mm256_fmadd_ps (p, r, _mm256_set1_ps (0.0416666418313980f));
  p = _mm256_fmadd_ps (p, r, _mm256_set1_ps (0.166666671633720f));
  p = _mm256_fmadd_ps (p, r, _mm256_set1_ps (0.5f));
  p = _mm256_fmadd_ps (p, r, _mm256_set1_ps (1.0f));
  p = _mm256_fmadd_ps (p, r, _mm256_set1_ps (1.0f));
  const __m256i two_k = _mm256_slli_epi32 (_mm256_add_epi32 (_mm256_cvtps_epi32 (k),
                                                             _mm256_set1_epi32 (127)), 23);
  return _mm256_mul_ps (p, _mm256_castsi256_ps (two_k));
}

/* erf (x / sqrt 2) as vl_erf_sqrt1_2, and exp (-x^2 / 2) */
static inline __attribute__ ((always_inline)) AVX2 __m256
erf256 (__m256 x, __m256 *gauss)
{
  const __m256 sign = _mm256_set1_ps (-0.0f);
  const __m256 z = _mm256_mul_ps (_mm256_andnot_ps (sign, x), _mm256_set1_ps (VL_SQRT1_2));
  const __m256 t = _mm256_div_ps (_mm256_set1_ps (1.0f),
                                  _mm256_fmadd_ps (z, _mm256_set1_ps (0.3275911f),
                                                   _mm256_set1_ps (1.0f)));
  __m256 poly = _mm256_set1_ps (1.061405429f);
  poly = _mm256_fmadd_ps (poly, t, _mm256_set1_ps (-1.453152027f));
  poly = _mm256_fmadd_ps (poly, t, _mm256_set1_ps (1.421413741f));
  poly = _mm256_fmadd_ps (poly, t, _mm256_set1_ps (-0.284496736f));
  poly = _mm256_fmadd_ps (poly, t, _mm256_set1_ps (0.254829592f));
  poly = _mm256_mul_ps (poly, t);
  const __m256 e = exp256 (_mm256_mul_ps (_mm256_sub_ps (_mm256_setzero_ps (), z), z));
  *gauss = e;
  const __m256 mag = _mm256_fnmadd_ps (poly, e, _mm256_set1_ps (1.0f));   /* >= 0 */
  return _mm256_or_ps (mag, _mm256_and_ps (x, sign));
}

static AVX2 void
gelu_forward_avx2 (float *out, const float *inp, int64_t n)
{
  for (int64_t i = 0; i < n; i += 8)
    {
      const __m256 x = vl_load_lanes8 (inp + i, n - i);
      __m256 e;
      const __m256 erf = erf256 (x, &e);
      const __m256 hx = _mm256_mul_ps (x, _mm256_set1_ps (0.5f));
      vl_store_lanes8 (out + i, _mm256_fmadd_ps (hx, erf, hx), n - i);
    }
}

static AVX2 void
gelu_backward_avx2 (float *dinp, const float *inp, const float *dout, int64_t n)
{
  for (int64_t i = 0; i < n; i += 8)
    {
      const __m256 x = vl_load_lanes8 (inp + i, n - i);
      __m256 e;
      const __m256 erf = erf256 (x, &e);
      const __m256 cdf = _mm256_fmadd_ps (erf, _mm256_set1_ps (0.5f), _mm256_set1_ps (0.5f));
      const __m256 d = _mm256_fmadd_ps (_mm256_mul_ps (x, _mm256_set1_ps (VL_INV_SQRT_2PI)), e,
                                        cdf);
      vl_store_lanes8 (dinp + i, _mm256_mul_ps (vl_load_lanes8 (dout + i, n - i), d), n - i);
    }
}

static AVX2 void
gelu_forward_deriv_avx2 (float *out, float *x, int64_t n)
{
  for (int64_t i = 0; i < n; i += 8)
    {
      const __m256 xv = vl_load_lanes8 (x + i, n - i);
      __m256 e;
      const __m256 erf = erf256 (xv, &e);
      const __m256 cdf = _mm256_fmadd_ps (erf, _mm256_set1_ps (0.5f), _mm256_set1_ps (0.5f));
      const __m256 hx = _mm256_mul_ps (xv, _mm256_set1_ps (0.5f));   /* as gelu_forward_avx2 */
      vl_store_lanes8 (out + i, _mm256_fmadd_ps (hx, erf, hx), n - i);
      vl_store_lanes8 (x + i,
                    _mm256_fmadd_ps (_mm256_mul_ps (xv, _mm256_set1_ps (VL_INV_SQRT_2PI)), e, cdf),
                    n - i);
    }
}

static inline __attribute__ ((always_inline)) AVX2 float
hmax256 (__m256 v)
{
  __m128 m = _mm_max_ps (_mm256_castps256_ps128 (v), _mm256_extractf128_ps (v, 1));
  m = _mm_max_ps (m, _mm_movehl_ps (m, m));
  m = _mm_max_ss (m, _mm_movehdup_ps (m));
  return _mm_cvtss_f32 (m);
}

static inline __attribute__ ((always_inline)) AVX2 float
hsum256 (__m256 v)
{
  __m128 s = _mm_add_ps (_mm256_castps256_ps128 (v), _mm256_extractf128_ps (v, 1));
  s = _mm_add_ps (s, _mm_movehl_ps (s, s));
  s = _mm_add_ss (s, _mm_movehdup_ps (s));
  return _mm_cvtss_f32 (s);
}

/* Rows in pairs, as softmax_rows2 */
static inline __attribute__ ((always_inline)) AVX2 void
softmax_rows2_avx2 (float *r0, float *r1, int cols)
{
  const int body = cols & ~7;
  const __m256i mt = vl_lanes8 (cols - body);
  const __m256 ninf = _mm256_set1_ps (-INFINITY);
  __m256 m0 = ninf, m1 = ninf;
  for (int c = 0; c < body; c += 8)
    {
      m0 = _mm256_max_ps (m0, _mm256_loadu_ps (r0 + c));
      m1 = _mm256_max_ps (m1, _mm256_loadu_ps (r1 + c));
    }
  if (body < cols)
    {
      const __m256 mf = _mm256_castsi256_ps (mt);
      m0 = _mm256_max_ps (m0, _mm256_blendv_ps (ninf, _mm256_maskload_ps (r0 + body, mt), mf));
      m1 = _mm256_max_ps (m1, _mm256_blendv_ps (ninf, _mm256_maskload_ps (r1 + body, mt), mf));
    }
  const __m256 v0 = _mm256_set1_ps (hmax256 (m0)), v1 = _mm256_set1_ps (hmax256 (m1));
  __m256 s0 = _mm256_setzero_ps (), s1 = s0;
  for (int c = 0; c < body; c += 8)
    {
      const __m256 e0 = exp256 (_mm256_sub_ps (_mm256_loadu_ps (r0 + c), v0));
      const __m256 e1 = exp256 (_mm256_sub_ps (_mm256_loadu_ps (r1 + c), v1));
      _mm256_storeu_ps (r0 + c, e0);
      _mm256_storeu_ps (r1 + c, e1);
      s0 = _mm256_add_ps (s0, e0);
      s1 = _mm256_add_ps (s1, e1);
    }
  if (body < cols)
    {
      const __m256 mf = _mm256_castsi256_ps (mt);
      const __m256 e0 = _mm256_and_ps (
          mf, exp256 (_mm256_sub_ps (_mm256_maskload_ps (r0 + body, mt), v0)));
      const __m256 e1 = _mm256_and_ps (
          mf, exp256 (_mm256_sub_ps (_mm256_maskload_ps (r1 + body, mt), v1)));
      vl_store_lanes8 (r0 + body, e0, cols - body);
      vl_store_lanes8 (r1 + body, e1, cols - body);
      s0 = _mm256_add_ps (s0, e0);
      s1 = _mm256_add_ps (s1, e1);
    }
  const __m256 i0 = _mm256_set1_ps (1.0f / hsum256 (s0));
  const __m256 i1 = _mm256_set1_ps (1.0f / hsum256 (s1));
  for (int c = 0; c < body; c += 8)
    {
      const __m256 a0 = _mm256_loadu_ps (r0 + c), a1 = _mm256_loadu_ps (r1 + c);
      _mm256_storeu_ps (r0 + c, _mm256_mul_ps (a0, i0));
      _mm256_storeu_ps (r1 + c, _mm256_mul_ps (a1, i1));
    }
  if (body < cols)
    {
      const __m256 a0 = _mm256_maskload_ps (r0 + body, mt);
      const __m256 a1 = _mm256_maskload_ps (r1 + body, mt);
      vl_store_lanes8 (r0 + body, _mm256_mul_ps (a0, i0), cols - body);
      vl_store_lanes8 (r1 + body, _mm256_mul_ps (a1, i1), cols - body);
    }
}

static AVX2 void
softmax_rows_avx2 (float *x, int64_t rows, int cols)
{
  int64_t r = 0;
  for (; r + 2 <= rows; r += 2)
    softmax_rows2_avx2 (x + r * cols, x + (r + 1) * cols, cols);
  if (r < rows)   /* the last of an odd count with itself: each pass loads both before storing */
    softmax_rows2_avx2 (x + r * cols, x + r * cols, cols);
}

/* LayerNorm's forward on AVX2: GCC's 16-lane vectors of the portable code become two registers
 * with the sums spilled through the stack there (5% of inference) */
/* The backward passes of the softmax and of LayerNorm on AVX2, for the same reason */
static AVX2 void
softmax_backward_rows_avx2 (float *ds, const float *p, int64_t rows, int cols, float scale)
{
  const int body = cols & ~7;
  const __m256 vs = _mm256_set1_ps (scale);
  for (int64_t i = 0; i < rows; i++)
    {
      float *d = ds + i * cols;
      const float *a = p + i * cols;
      __m256 acc0 = _mm256_setzero_ps (), acc1 = acc0;
      int c = 0;
      for (; c + 16 <= body; c += 16)
        {
          acc0 = _mm256_fmadd_ps (_mm256_loadu_ps (d + c), _mm256_loadu_ps (a + c), acc0);
          acc1 = _mm256_fmadd_ps (_mm256_loadu_ps (d + c + 8), _mm256_loadu_ps (a + c + 8), acc1);
        }
      for (; c < body; c += 8)
        acc0 = _mm256_fmadd_ps (_mm256_loadu_ps (d + c), _mm256_loadu_ps (a + c), acc0);
      float dot = hsum256 (_mm256_add_ps (acc0, acc1));
      for (c = body; c < cols; c++)
        dot += d[c] * a[c];
      const __m256 vdot = _mm256_set1_ps (dot);
      for (c = 0; c < body; c += 8)
        {
          const __m256 t = _mm256_sub_ps (_mm256_loadu_ps (d + c), vdot);
          _mm256_storeu_ps (d + c, _mm256_mul_ps (_mm256_mul_ps (_mm256_loadu_ps (a + c), t), vs));
        }
      for (c = body; c < cols; c++)
        d[c] = a[c] * (d[c] - dot) * scale;
    }
}

static AVX2 void
layernorm_backward_avx2 (float *dinp, float *dw, float *db, const float *dout, const float *inp,
                         const float *w, const float *mean, const float *rstd, int64_t N, int C)
{
  const int body = C & ~7;
  for (int64_t i = 0; i < N; i++)
    {
      const float *x = inp + i * C;
      const float *dy = dout + i * C;
      const float m = mean[i], r = rstd[i];
      const __m256 vm = _mm256_set1_ps (m), vr = _mm256_set1_ps (r);
      /* dxhat = dy * w; dx = r * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) */
      __m256 s1 = _mm256_setzero_ps (), s2 = s1;
      for (int c = 0; c < body; c += 8)
        {
          const __m256 xhat = _mm256_mul_ps (_mm256_sub_ps (_mm256_loadu_ps (x + c), vm), vr);
          const __m256 dyv = _mm256_loadu_ps (dy + c);
          const __m256 dxhat = _mm256_mul_ps (dyv, _mm256_loadu_ps (w + c));
          s1 = _mm256_add_ps (s1, dxhat);
          s2 = _mm256_fmadd_ps (dxhat, xhat, s2);
          if (dw)
            _mm256_storeu_ps (dw + c, _mm256_fmadd_ps (dyv, xhat, _mm256_loadu_ps (dw + c)));
          if (db)
            _mm256_storeu_ps (db + c, _mm256_add_ps (_mm256_loadu_ps (db + c), dyv));
        }
      float sum_dxhat = hsum256 (s1), sum_dxhat_xhat = hsum256 (s2);
      ln_backward_sums_tail (&sum_dxhat, &sum_dxhat_xhat, dw, db, x, dy, w, m, r, body, C);
      if (dinp)
        {
          float *dx = dinp + i * C;
          const float a = sum_dxhat / C, bb = sum_dxhat_xhat / C;
          const __m256 va = _mm256_set1_ps (a), vb = _mm256_set1_ps (bb);
          for (int c = 0; c < body; c += 8)
            {
              const __m256 xhat = _mm256_mul_ps (_mm256_sub_ps (_mm256_loadu_ps (x + c), vm), vr);
              const __m256 t = _mm256_sub_ps (
                  _mm256_sub_ps (_mm256_mul_ps (_mm256_loadu_ps (dy + c), _mm256_loadu_ps (w + c)),
                                 va),
                  _mm256_mul_ps (xhat, vb));
              _mm256_storeu_ps (dx + c, _mm256_fmadd_ps (vr, t, _mm256_loadu_ps (dx + c)));
            }
          ln_backward_dx_tail (dx, x, dy, w, m, r, a, bb, body, C);
        }
    }
}

static AVX2 void
layernorm_forward_avx2 (float *out, float *mean, float *rstd, const float *inp, const float *w,
                        const float *b, int64_t N, int C, float eps)
{
  const int body = C & ~7;
  for (int64_t i = 0; i < N; i++)
    {
      const float *x = inp + i * C;
      float *o = out + i * C;
      __m256 a0 = _mm256_setzero_ps (), a1 = a0;
      int c = 0;
      for (; c + 16 <= body; c += 16)
        {
          a0 = _mm256_add_ps (a0, _mm256_loadu_ps (x + c));
          a1 = _mm256_add_ps (a1, _mm256_loadu_ps (x + c + 8));
        }
      for (; c < body; c += 8)
        a0 = _mm256_add_ps (a0, _mm256_loadu_ps (x + c));
      float s = hsum256 (_mm256_add_ps (a0, a1));
      for (c = body; c < C; c++)
        s += x[c];
      const float m = s / C;
      const __m256 vm = _mm256_set1_ps (m);
      a0 = a1 = _mm256_setzero_ps ();
      for (c = 0; c + 16 <= body; c += 16)
        {
          const __m256 d0 = _mm256_sub_ps (_mm256_loadu_ps (x + c), vm);
          const __m256 d1 = _mm256_sub_ps (_mm256_loadu_ps (x + c + 8), vm);
          a0 = _mm256_fmadd_ps (d0, d0, a0);
          a1 = _mm256_fmadd_ps (d1, d1, a1);
        }
      for (; c < body; c += 8)
        {
          const __m256 d0 = _mm256_sub_ps (_mm256_loadu_ps (x + c), vm);
          a0 = _mm256_fmadd_ps (d0, d0, a0);
        }
      float v = hsum256 (_mm256_add_ps (a0, a1));
      for (c = body; c < C; c++)
        v += (x[c] - m) * (x[c] - m);
      const float r = 1.0f / sqrtf (v / C + eps);
      const __m256 vr = _mm256_set1_ps (r);
      for (c = 0; c < body; c += 8)
        {
          const __m256 xhat = _mm256_mul_ps (_mm256_sub_ps (_mm256_loadu_ps (x + c), vm), vr);
          _mm256_storeu_ps (o + c, _mm256_fmadd_ps (xhat, _mm256_loadu_ps (w + c),
                                                    _mm256_loadu_ps (b + c)));
        }
      for (c = body; c < C; c++)
        o[c] = (x[c] - m) * r * w[c] + b[c];
      if (mean)
        mean[i] = m;
      if (rstd)
        rstd[i] = r;
    }
}
#endif

void
vl_layernorm_backward (float *dinp, float *dw, float *db, const float *dout, const float *inp,
                       const float *w, const float *mean, const float *rstd, int64_t N, int C)
{
#ifdef VL_HAVE_AVX512_ELEMENTWISE
  if (vl_gemm_isa () == VL_GEMM_AVX2)
    {
      layernorm_backward_avx2 (dinp, dw, db, dout, inp, w, mean, rstd, N, C);
      return;
    }
#endif
  layernorm_backward_generic (dinp, dw, db, dout, inp, w, mean, rstd, N, C);
}

void
vl_softmax_backward_rows (float *ds, const float *p, int64_t rows, int cols, float scale)
{
#ifdef VL_HAVE_AVX512_ELEMENTWISE
  if (vl_gemm_isa () == VL_GEMM_AVX2)
    {
      softmax_backward_rows_avx2 (ds, p, rows, cols, scale);
      return;
    }
#endif
  softmax_backward_rows_generic (ds, p, rows, cols, scale);
}

void
vl_layernorm_forward (float *out, float *mean, float *rstd, const float *inp, const float *w,
                      const float *b, int64_t N, int C, float eps)
{
#ifdef VL_HAVE_AVX512_ELEMENTWISE
  if (vl_gemm_isa () == VL_GEMM_AVX2)
    {
      layernorm_forward_avx2 (out, mean, rstd, inp, w, b, N, C, eps);
      return;
    }
#endif
  layernorm_forward_generic (out, mean, rstd, inp, w, b, N, C, eps);
}

void
vl_gelu_forward (float *out, const float *inp, int64_t n)
{
#ifdef VL_HAVE_AVX512_ELEMENTWISE
  switch (vl_gemm_isa ())
    {
    case VL_GEMM_AVX512:
      gelu_forward_avx512 (out, inp, n);
      return;
    case VL_GEMM_AVX2:
      gelu_forward_avx2 (out, inp, n);
      return;
    default:
      break;
    }
#endif
  gelu_forward_generic (out, inp, n);
}

void
vl_gelu_forward_deriv (float *out, float *x, int64_t n)
{
#ifdef VL_HAVE_AVX512_ELEMENTWISE
  switch (vl_gemm_isa ())
    {
    case VL_GEMM_AVX512:
      gelu_forward_deriv_avx512 (out, x, n);
      return;
    case VL_GEMM_AVX2:
      gelu_forward_deriv_avx2 (out, x, n);
      return;
    default:
      break;
    }
#endif
  gelu_forward_deriv_generic (out, x, n);
}

void
vl_gelu_backward (float *dinp, const float *inp, const float *dout, int64_t n)
{
#ifdef VL_HAVE_AVX512_ELEMENTWISE
  switch (vl_gemm_isa ())
    {
    case VL_GEMM_AVX512:
      gelu_backward_avx512 (dinp, inp, dout, n);
      return;
    case VL_GEMM_AVX2:
      gelu_backward_avx2 (dinp, inp, dout, n);
      return;
    default:
      break;
    }
#endif
  gelu_backward_generic (dinp, inp, dout, n);
}

void
vl_softmax_rows (float *x, int64_t rows, int cols)
{
#ifdef VL_HAVE_AVX512_ELEMENTWISE
  switch (vl_gemm_isa ())
    {
    case VL_GEMM_AVX512:
      softmax_rows_avx512 (x, rows, cols);
      return;
    case VL_GEMM_AVX2:
      softmax_rows_avx2 (x, rows, cols);
      return;
    default:
      break;
    }
#endif
  softmax_rows_generic (x, rows, cols);
}

void
vl_attention_forward (float *out, float *att, const float *qkv, int T, int W, int D, int h)
{
  vl_attention_forward_rows (out, att, qkv, T, W, D, h, 0, T, NULL, FALSE);
}

gboolean
vl_attention_pack_keys (float *kpack, const float *qkv, int T, int W, int D, int h)
{
  if (!vl_gemm_enabled ())
    return FALSE;
  vl_pack_weights (kpack, qkv + W + h * D, 3 * W, T, D);
  return TRUE;
}

void
vl_attention_forward_rows (float *out, float *att, const float *qkv, int T, int W, int D, int h,
                           int q0, int q1, float *kpack, gboolean kpacked)
{
  const int ld = 3 * W;
  const float *q = qkv + (int64_t) q0 * ld + h * D;
  const float *k = qkv + W + h * D;
  const float *v = qkv + 2 * W + h * D;
  float *a = att + (int64_t) q0 * T;
  /* att (q1 - q0, T) = softmax (q k^T / sqrt (D)), the scale applied by the GEMM; k packed as a
   * weight first, when that is paid back by enough query rows */
  if (kpack && vl_gemm_enabled () && (kpacked || 2 * (q1 - q0) >= T))
    {
      if (!kpacked)
        vl_pack_weights (kpack, k, ld, T, D);
      vl_gemm_packed (a, T, q, ld, kpack, 1.0f / sqrtf ((float) D), NULL, NULL, 0, q1 - q0, T, D);
    }
  else
    vl_gemm_serial (FALSE, TRUE, q1 - q0, T, D, 1.0f / sqrtf ((float) D), q, ld, k, ld, 0.0f, a,
                    T);
  vl_softmax_rows (a, q1 - q0, T);
  /* out (q1 - q0, D) = att v */
  if (vl_gemm_enabled ())
    vl_gemm_rowmajor (FALSE, out + (int64_t) q0 * W + h * D, W, a, T, v, ld, 1.0f, NULL, 0,
                      q1 - q0, D, T);
  else
    vl_gemm_serial (FALSE, FALSE, q1 - q0, D, T, 1.0f, a, T, v, ld, 0.0f,
                    out + (int64_t) q0 * W + h * D, W);
}

void
vl_attention_backward (float *dqkv, float *dscore, const float *dout, const float *att,
                       const float *qkv, int T, int W, int D, int h, float *vpack)
{
  const int ld = 3 * W;
  const float scale = 1.0f / sqrtf ((float) D);
  const float *q = qkv + h * D;
  const float *k = qkv + W + h * D;
  const float *v = qkv + 2 * W + h * D;
  float *dq = dqkv + h * D;
  float *dk = dqkv + W + h * D;
  float *dv = dqkv + 2 * W + h * D;
  const float *dy = dout + h * D;

  const gboolean own = vl_gemm_enabled ();
  /* The probabilities (read from memory: the forward wrote them long ago) are first read row by
   * row, in order, by the softmax's backward; d v then finds them in cache. */
  /* datt (T, T) = dy v^T (v packed as a weight first) */
  if (own && vpack)
    {
      vl_pack_weights (vpack, v, ld, T, D);
      vl_gemm_packed (dscore, T, dy, W, vpack, 1.0f, NULL, NULL, 0, T, T, D);
    }
  else
    vl_gemm_serial (FALSE, TRUE, T, T, D, 1.0f, dy, W, v, ld, 0.0f, dscore, T);
  /* dscore = att * (datt - rowsum (datt * att)) * scale */
  vl_softmax_backward_rows (dscore, att, T, T, scale);
  /* dv (T, D) = att^T dy */
  if (own)
    vl_gemm_rowmajor (TRUE, dv, ld, att, T, dy, W, 1.0f, NULL, 0, T, D, T);
  else
    vl_gemm_serial (TRUE, FALSE, T, D, T, 1.0f, att, T, dy, W, 0.0f, dv, ld);
  /* dq = dscore k; dk = dscore^T q */
  if (own)
    {
      vl_gemm_rowmajor (FALSE, dq, ld, dscore, T, k, ld, 1.0f, NULL, 0, T, D, T);
      vl_gemm_rowmajor (TRUE, dk, ld, dscore, T, q, ld, 1.0f, NULL, 0, T, D, T);
    }
  else
    {
      vl_gemm_serial (FALSE, FALSE, T, D, T, 1.0f, dscore, T, k, ld, 0.0f, dq, ld);
      vl_gemm_serial (TRUE, FALSE, T, D, T, 1.0f, dscore, T, q, ld, 0.0f, dk, ld);
    }
}

double
vl_cross_entropy (float *dlogits, const float *logits, const int *targets, int B, int K,
                  float label_smoothing)
{
  return vl_loss_cross_entropy (dlogits, logits, targets, B, K, label_smoothing, VL_NO_IGNORE);
}

static double
aa_bicubic (double x)   /* the Pillow / PyTorch antialias kernel, a = -0.5 */
{
  const double a = -0.5;
  x = fabs (x);
  if (x < 1.0)
    return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0)
    return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
  return 0.0;
}

void
vl_bicubic_matrix (float *w, int out_size, int in_size)
{
  /* PyTorch's _compute_indices_weights_aa (F.interpolate bicubic, antialias=True,
   * align_corners=False), which timm's resample_abs_pos_embed uses by default */
  const double scale = (double) in_size / out_size;
  const double support = scale >= 1.0 ? 2.0 * scale : 2.0;
  const double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
  memset (w, 0, sizeof (float) * out_size * in_size);
  for (int o = 0; o < out_size; o++)
    {
      double center = scale * (o + 0.5);
      int xmin = (int) (center - support + 0.5);
      xmin = xmin < 0 ? 0 : xmin;
      int xmax = (int) (center + support + 0.5);
      xmax = xmax > in_size ? in_size : xmax;
      float *row = w + (int64_t) o * in_size;
      double total = 0.0;
      for (int j = xmin; j < xmax; j++)
        total += aa_bicubic ((j - center + 0.5) * invscale);
      for (int j = xmin; j < xmax; j++)
        row[j] = (float) (total != 0.0 ? aa_bicubic ((j - center + 0.5) * invscale) / total : 0.0);
    }
}

void
vl_im2col_patches (float *cols, const float *images, int B, int C, int H, int W, int p)
{
  const int gh = H / p, gw = W / p;
  const int K = C * p * p;
  for (int b = 0; b < B; b++)
    for (int py = 0; py < gh; py++)
      for (int px = 0; px < gw; px++)
        {
          float *row = cols + ((int64_t) (b * gh + py) * gw + px) * K;
          for (int c = 0; c < C; c++)
            for (int ky = 0; ky < p; ky++)
              {
                const float *src = images + (((int64_t) b * C + c) * H + py * p + ky) * W + px * p;
                memcpy (row + (c * p + ky) * p, src, sizeof (float) * p);
              }
        }
}

void
vl_adamw_update (float *p, const float *g, float *m, float *v, int64_t n, float lr,
                 float beta1, float beta2, float eps, float weight_decay, int step)
{
  /* as torch.optim.AdamW: bias corrections in double, then float arithmetic per element */
  const double bc1 = 1.0 - pow (beta1, step);
  const double bc2 = 1.0 - pow (beta2, step);
  const float step_size = (float) (lr / bc1);
  const float bc2_sqrt = (float) sqrt (bc2);
  const float decay = 1.0f - lr * weight_decay;
  for (int64_t i = 0; i < n; i++)
    {
      float gi = g[i];
      float pi = p[i] * decay;
      float mi = beta1 * m[i] + (1.0f - beta1) * gi;
      float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
      m[i] = mi;
      v[i] = vi;
      p[i] = pi - step_size * mi / (sqrtf (vi) / bc2_sqrt + eps);
    }
}
