/* vl-conv.c: see vl-conv.h. */
#include "vl-conv.h"
#include "vl-kernels.h"

#include <cblas.h>
#include <string.h>

int
vl_conv2d_out_h (const VlConv2d *c)
{
  return (c->H + 2 * c->pad - c->kh) / c->stride + 1;
}

int
vl_conv2d_out_w (const VlConv2d *c)
{
  return (c->W + 2 * c->pad - c->kw) / c->stride + 1;
}

static gboolean
conv_is_pointwise (const VlConv2d *c)
{
  return c->kh == 1 && c->kw == 1 && c->stride == 1 && c->pad == 0 && c->groups == 1;
}

/* Depthwise (one input channel per group, M = Cout / groups outputs each): direct loops over
 * the channels-last rows instead of one tiny GEMM per group and image. */
static gboolean
conv_is_depthwise (const VlConv2d *c)
{
  return c->groups > 1 && c->Cin == c->groups;
}

/* Stride 1, dense, fewer outputs than inputs (a detection or segmentation head's 3x3 convs):
 * "shift" form. y (H W, kh kw Cout) = img (H W, Cin) x wall (Cin, kh kw Cout) is one GEMM per
 * image at the input positions, and each output sums its kh kw taps of y: the GEMM's N is
 * kh kw Cout instead of im2col's Cout, and no (Ho Wo, Cin kh kw) matrix is written. */
static gboolean
conv_is_shift (const VlConv2d *c)
{
  return c->stride == 1 && c->groups == 1 && c->Cout <= c->Cin && !conv_is_pointwise (c);
}

int64_t
vl_conv2d_work_size (const VlConv2d *c)
{
  if (conv_is_pointwise (c))
    return 0;
  if (conv_is_depthwise (c))
    return (int64_t) c->kh * c->kw * c->Cout;
  if (conv_is_shift (c))   /* wall, dwall (Cin, kh kw Cout) and y (H W, kh kw Cout) */
    return ((int64_t) 2 * c->Cin + (int64_t) c->H * c->W) * c->kh * c->kw * c->Cout;
  int64_t P = (int64_t) vl_conv2d_out_h (c) * vl_conv2d_out_w (c);
  return P * (c->Cin / c->groups) * c->kh * c->kw;
}

static void
conv_check (const VlConv2d *c)
{
  g_assert (c->groups >= 1 && c->Cin % c->groups == 0 && c->Cout % c->groups == 0);
  g_assert (c->stride >= 1 && c->pad >= 0 && c->kh >= 1 && c->kw >= 1);
  g_assert (vl_conv2d_out_h (c) >= 1 && vl_conv2d_out_w (c) >= 1);
}

/* cols (Ho Wo, Cg kh kw), columns ordered (c, ky, kx) as a row of w: one image (H, W, Cin),
 * group g's channels; zeros where the window leaves the padded image. */
static void
im2col (float *cols, const float *img, const VlConv2d *c, int g)
{
  const int Ho = vl_conv2d_out_h (c), Wo = vl_conv2d_out_w (c);
  const int Cg = c->Cin / c->groups, kk = c->kh * c->kw, K = Cg * kk;
  for (int oy = 0; oy < Ho; oy++)
    for (int ox = 0; ox < Wo; ox++)
      {
        float *row = cols + ((int64_t) oy * Wo + ox) * K;
        for (int ky = 0; ky < c->kh; ky++)
          {
            const int iy = oy * c->stride - c->pad + ky;
            for (int kx = 0; kx < c->kw; kx++)
              {
                const int ix = ox * c->stride - c->pad + kx;
                float *dst = row + ky * c->kw + kx;
                if (iy < 0 || iy >= c->H || ix < 0 || ix >= c->W)
                  for (int ch = 0; ch < Cg; ch++)
                    dst[(int64_t) ch * kk] = 0.0f;
                else
                  {
                    const float *src = img + ((int64_t) iy * c->W + ix) * c->Cin + g * Cg;
                    for (int ch = 0; ch < Cg; ch++)
                      dst[(int64_t) ch * kk] = src[ch];
                  }
              }
          }
      }
}

/* The transpose of im2col: dimg (H, W, Cin) += the columns scattered back. */
static void
col2im_add (float *dimg, const float *cols, const VlConv2d *c, int g)
{
  const int Ho = vl_conv2d_out_h (c), Wo = vl_conv2d_out_w (c);
  const int Cg = c->Cin / c->groups, kk = c->kh * c->kw, K = Cg * kk;
  for (int oy = 0; oy < Ho; oy++)
    for (int ox = 0; ox < Wo; ox++)
      {
        const float *row = cols + ((int64_t) oy * Wo + ox) * K;
        for (int ky = 0; ky < c->kh; ky++)
          {
            const int iy = oy * c->stride - c->pad + ky;
            if (iy < 0 || iy >= c->H)
              continue;
            for (int kx = 0; kx < c->kw; kx++)
              {
                const int ix = ox * c->stride - c->pad + kx;
                if (ix < 0 || ix >= c->W)
                  continue;
                const float *src = row + ky * c->kw + kx;
                float *dst = dimg + ((int64_t) iy * c->W + ix) * c->Cin + g * Cg;
                for (int ch = 0; ch < Cg; ch++)
                  dst[ch] += src[(int64_t) ch * kk];
              }
          }
      }
}

/* wt (kh kw, Cout) = w [Cout, 1, kh, kw] transposed, so that the inner loop runs over channels. */
static void
depthwise_transpose (float *wt, const float *w, const VlConv2d *c)
{
  const int kk = c->kh * c->kw;
  for (int o = 0; o < c->Cout; o++)
    for (int q = 0; q < kk; q++)
      wt[(int64_t) q * c->Cout + o] = w[(int64_t) o * kk + q];
}

static void
depthwise_forward (float *out, const float *inp, const float *w, const VlConv2d *c, float *wt)
{
  const int Ho = vl_conv2d_out_h (c), Wo = vl_conv2d_out_w (c);
  const int M = c->Cout / c->groups, Co = c->Cout;
  depthwise_transpose (wt, w, c);
  for (int bi = 0; bi < c->B; bi++)
    for (int oy = 0; oy < Ho; oy++)
      for (int ox = 0; ox < Wo; ox++)
        {
          float *o = out + (((int64_t) bi * Ho + oy) * Wo + ox) * Co;
          for (int ch = 0; ch < Co; ch++)
            o[ch] = 0.0f;
          for (int ky = 0; ky < c->kh; ky++)
            {
              const int iy = oy * c->stride - c->pad + ky;
              if (iy < 0 || iy >= c->H)
                continue;
              for (int kx = 0; kx < c->kw; kx++)
                {
                  const int ix = ox * c->stride - c->pad + kx;
                  if (ix < 0 || ix >= c->W)
                    continue;
                  const float *x = inp + (((int64_t) bi * c->H + iy) * c->W + ix) * c->Cin;
                  const float *wq = wt + (int64_t) (ky * c->kw + kx) * Co;
                  if (M == 1)
                    for (int ch = 0; ch < Co; ch++)
                      o[ch] += x[ch] * wq[ch];
                  else
                    for (int ch = 0; ch < Co; ch++)
                      o[ch] += x[ch / M] * wq[ch];
                }
            }
        }
}

static void
depthwise_backward (float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                    const VlConv2d *c, float *wt)
{
  const int Ho = vl_conv2d_out_h (c), Wo = vl_conv2d_out_w (c);
  const int M = c->Cout / c->groups, Co = c->Cout, kk = c->kh * c->kw;
  depthwise_transpose (wt, w, c);
  /* dwt (kh kw, Cout) accumulated apart, then added into dw [Cout, 1, kh, kw] */
  g_autofree float *dwt = dw ? g_new0 (float, (int64_t) kk * Co) : NULL;
  for (int bi = 0; bi < c->B; bi++)
    for (int oy = 0; oy < Ho; oy++)
      for (int ox = 0; ox < Wo; ox++)
        {
          const float *d = dout + (((int64_t) bi * Ho + oy) * Wo + ox) * Co;
          for (int ky = 0; ky < c->kh; ky++)
            {
              const int iy = oy * c->stride - c->pad + ky;
              if (iy < 0 || iy >= c->H)
                continue;
              for (int kx = 0; kx < c->kw; kx++)
                {
                  const int ix = ox * c->stride - c->pad + kx;
                  if (ix < 0 || ix >= c->W)
                    continue;
                  const int64_t xo = (((int64_t) bi * c->H + iy) * c->W + ix) * c->Cin;
                  const int q = ky * c->kw + kx;
                  if (dinp)
                    {
                      const float *wq = wt + (int64_t) q * Co;
                      float *dx = dinp + xo;
                      if (M == 1)
                        for (int ch = 0; ch < Co; ch++)
                          dx[ch] += d[ch] * wq[ch];
                      else
                        for (int ch = 0; ch < Co; ch++)
                          dx[ch / M] += d[ch] * wq[ch];
                    }
                  if (dw)
                    {
                      const float *x = inp + xo;
                      float *dq = dwt + (int64_t) q * Co;
                      if (M == 1)
                        for (int ch = 0; ch < Co; ch++)
                          dq[ch] += d[ch] * x[ch];
                      else
                        for (int ch = 0; ch < Co; ch++)
                          dq[ch] += d[ch] * x[ch / M];
                    }
                }
            }
        }
  if (dw)
    for (int o = 0; o < Co; o++)
      for (int q = 0; q < kk; q++)
        dw[(int64_t) o * kk + q] += dwt[(int64_t) q * Co + o];
}

/* wall (Cin, kh kw Cout): wall[c, q Cout + o] = w[o, c, q] with q = ky kw + kx. */
static void
shift_weights (float *wall, const float *w, const VlConv2d *c)
{
  const int kk = c->kh * c->kw, N = kk * c->Cout;
  for (int o = 0; o < c->Cout; o++)
    for (int ch = 0; ch < c->Cin; ch++)
      for (int q = 0; q < kk; q++)
        wall[(int64_t) ch * N + q * c->Cout + o] = w[((int64_t) o * c->Cin + ch) * kk + q];
}

static void
shift_forward (float *out, const float *inp, const float *w, const VlConv2d *c, float *work)
{
  const int Ho = vl_conv2d_out_h (c), Wo = vl_conv2d_out_w (c);
  const int kk = c->kh * c->kw, N = kk * c->Cout, Co = c->Cout;
  float *wall = work, *y = work + (int64_t) 2 * c->Cin * N;
  shift_weights (wall, w, c);
  for (int bi = 0; bi < c->B; bi++)
    {
      const float *img = inp + (int64_t) bi * c->H * c->W * c->Cin;
      cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, c->H * c->W, N, c->Cin, 1.0f, img,
                   c->Cin, wall, N, 0.0f, y, N);
      for (int oy = 0; oy < Ho; oy++)
        for (int ox = 0; ox < Wo; ox++)
          {
            float *o = out + (((int64_t) bi * Ho + oy) * Wo + ox) * Co;
            for (int k = 0; k < Co; k++)
              o[k] = 0.0f;
            for (int ky = 0; ky < c->kh; ky++)
              {
                const int iy = oy - c->pad + ky;
                if (iy < 0 || iy >= c->H)
                  continue;
                for (int kx = 0; kx < c->kw; kx++)
                  {
                    const int ix = ox - c->pad + kx;
                    if (ix < 0 || ix >= c->W)
                      continue;
                    const float *t = y + ((int64_t) iy * c->W + ix) * N + (ky * c->kw + kx) * Co;
                    for (int k = 0; k < Co; k++)
                      o[k] += t[k];
                  }
              }
          }
    }
}

static void
shift_backward (float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                const VlConv2d *c, float *work)
{
  const int Ho = vl_conv2d_out_h (c), Wo = vl_conv2d_out_w (c);
  const int kk = c->kh * c->kw, N = kk * c->Cout, Co = c->Cout;
  float *wall = work, *dwall = work + (int64_t) c->Cin * N, *dy = dwall + (int64_t) c->Cin * N;
  if (dinp)
    shift_weights (wall, w, c);
  if (dw)
    memset (dwall, 0, sizeof (float) * c->Cin * N);
  for (int bi = 0; bi < c->B; bi++)
    {
      /* dy (H W, kh kw Cout): each output's gradient scattered back to its taps */
      memset (dy, 0, sizeof (float) * c->H * c->W * N);
      for (int oy = 0; oy < Ho; oy++)
        for (int ox = 0; ox < Wo; ox++)
          {
            const float *d = dout + (((int64_t) bi * Ho + oy) * Wo + ox) * Co;
            for (int ky = 0; ky < c->kh; ky++)
              {
                const int iy = oy - c->pad + ky;
                if (iy < 0 || iy >= c->H)
                  continue;
                for (int kx = 0; kx < c->kw; kx++)
                  {
                    const int ix = ox - c->pad + kx;
                    if (ix < 0 || ix >= c->W)
                      continue;
                    float *t = dy + ((int64_t) iy * c->W + ix) * N + (ky * c->kw + kx) * Co;
                    for (int k = 0; k < Co; k++)
                      t[k] += d[k];
                  }
              }
          }
      const float *img = inp + (int64_t) bi * c->H * c->W * c->Cin;
      if (dinp)   /* dimg (H W, Cin) += dy x wall^T */
        cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, c->H * c->W, c->Cin, N, 1.0f, dy,
                     N, wall, N, 1.0f, dinp + (int64_t) bi * c->H * c->W * c->Cin, c->Cin);
      if (dw)     /* dwall (Cin, N) += img^T x dy */
        cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, c->Cin, N, c->H * c->W, 1.0f, img,
                     c->Cin, dy, N, 1.0f, dwall, N);
    }
  if (dw)
    for (int o = 0; o < Co; o++)
      for (int ch = 0; ch < c->Cin; ch++)
        for (int q = 0; q < kk; q++)
          dw[((int64_t) o * c->Cin + ch) * kk + q] += dwall[(int64_t) ch * N + q * Co + o];
}

void
vl_conv2d_forward (float *out, const float *inp, const float *w, const float *b,
                   const VlConv2d *c, float *work)
{
  conv_check (c);
  const int Ho = vl_conv2d_out_h (c), Wo = vl_conv2d_out_w (c);
  const int64_t P = (int64_t) Ho * Wo;
  const int Cg = c->Cin / c->groups, Cog = c->Cout / c->groups, K = Cg * c->kh * c->kw;

  if (conv_is_pointwise (c))
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, (int) (c->B * P), c->Cout, c->Cin,
                 1.0f, inp, c->Cin, w, c->Cin, 0.0f, out, c->Cout);
  else if (conv_is_depthwise (c) || conv_is_shift (c))
    {
      float *wt = work ? work : g_new (float, vl_conv2d_work_size (c));
      if (conv_is_depthwise (c))
        depthwise_forward (out, inp, w, c, wt);
      else
        shift_forward (out, inp, w, c, wt);
      if (!work)
        g_free (wt);
    }
  else
    {
      float *cols = work ? work : g_new (float, vl_conv2d_work_size (c));
      for (int bi = 0; bi < c->B; bi++)
        {
          const float *img = inp + (int64_t) bi * c->H * c->W * c->Cin;
          float *o = out + (int64_t) bi * P * c->Cout;
          for (int g = 0; g < c->groups; g++)
            {
              im2col (cols, img, c, g);
              /* o[:, g Cog ..] (P, Cog) = cols (P, K) x w_g (Cog, K)^T */
              cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, (int) P, Cog, K, 1.0f, cols,
                           K, w + (int64_t) g * Cog * K, K, 0.0f, o + g * Cog, c->Cout);
            }
        }
      if (!work)
        g_free (cols);
    }
  if (b)
    for (int64_t p = 0; p < c->B * P; p++)
      for (int o = 0; o < c->Cout; o++)
        out[p * c->Cout + o] += b[o];
}

void
vl_conv2d_backward (float *dinp, float *dw, float *db, const float *dout, const float *inp,
                    const float *w, const VlConv2d *c, float *work)
{
  conv_check (c);
  const int Ho = vl_conv2d_out_h (c), Wo = vl_conv2d_out_w (c);
  const int64_t P = (int64_t) Ho * Wo;
  const int Cg = c->Cin / c->groups, Cog = c->Cout / c->groups, K = Cg * c->kh * c->kw;

  if (db)
    for (int64_t p = 0; p < c->B * P; p++)
      for (int o = 0; o < c->Cout; o++)
        db[o] += dout[p * c->Cout + o];

  if (conv_is_pointwise (c))
    {
      const int N = (int) (c->B * P);
      if (dw)   /* dw (Cout, Cin) += dout^T (Cout, N) x inp (N, Cin) */
        cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, c->Cout, c->Cin, N, 1.0f, dout,
                     c->Cout, inp, c->Cin, 1.0f, dw, c->Cin);
      if (dinp) /* dinp (N, Cin) += dout (N, Cout) x w (Cout, Cin) */
        cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, N, c->Cin, c->Cout, 1.0f, dout,
                     c->Cout, w, c->Cin, 1.0f, dinp, c->Cin);
      return;
    }
  if (!dw && !dinp)
    return;
  if (conv_is_depthwise (c) || conv_is_shift (c))
    {
      float *wt = work ? work : g_new (float, vl_conv2d_work_size (c));
      if (conv_is_depthwise (c))
        depthwise_backward (dinp, dw, dout, inp, w, c, wt);
      else
        shift_backward (dinp, dw, dout, inp, w, c, wt);
      if (!work)
        g_free (wt);
      return;
    }

  float *cols = work ? work : g_new (float, vl_conv2d_work_size (c));
  for (int bi = 0; bi < c->B; bi++)
    {
      const float *img = inp + (int64_t) bi * c->H * c->W * c->Cin;
      const float *d = dout + (int64_t) bi * P * c->Cout;
      for (int g = 0; g < c->groups; g++)
        {
          if (dw)
            {
              im2col (cols, img, c, g);
              /* dw_g (Cog, K) += d_g^T (Cog, P) x cols (P, K) */
              cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, Cog, K, (int) P, 1.0f,
                           d + g * Cog, c->Cout, cols, K, 1.0f, dw + (int64_t) g * Cog * K, K);
            }
          if (dinp)
            {
              /* dcols (P, K) = d_g (P, Cog) x w_g (Cog, K), then scattered back */
              cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) P, K, Cog, 1.0f,
                           d + g * Cog, c->Cout, w + (int64_t) g * Cog * K, K, 0.0f, cols, K);
              col2im_add (dinp + (int64_t) bi * c->H * c->W * c->Cin, cols, c, g);
            }
        }
    }
  if (!work)
    g_free (cols);
}

/* ------------------------------------------------------------------ transposed 2x2 */

int64_t
vl_convt2x2_work_size (int B, int H, int W, int Cout)
{
  return (int64_t) B * H * W * 4 * Cout;
}

void
vl_convt2x2_forward (float *out, const float *inp, const float *w, const float *b, int B, int H,
                     int W, int Cin, int Cout, float *work)
{
  const int64_t P = (int64_t) B * H * W;
  const int N4 = 4 * Cout;
  float *y = work ? work : g_new (float, vl_convt2x2_work_size (B, H, W, Cout));
  /* y (P, Cout * 4) = inp (P, Cin) x w (Cin, Cout * 4), columns ordered (o, dy, dx) */
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) P, N4, Cin, 1.0f, inp, Cin, w,
               N4, 0.0f, y, N4);
  for (int bi = 0; bi < B; bi++)
    for (int i = 0; i < H; i++)
      for (int j = 0; j < W; j++)
        {
          const float *yr = y + (((int64_t) bi * H + i) * W + j) * N4;
          for (int dy = 0; dy < 2; dy++)
            for (int dx = 0; dx < 2; dx++)
              {
                float *o = out + (((int64_t) bi * 2 * H + 2 * i + dy) * 2 * W + 2 * j + dx) * Cout;
                for (int c = 0; c < Cout; c++)
                  o[c] = yr[c * 4 + dy * 2 + dx] + (b ? b[c] : 0.0f);
              }
        }
  if (!work)
    g_free (y);
}

void
vl_convt2x2_backward (float *dinp, float *dw, float *db, const float *dout, const float *inp,
                      const float *w, int B, int H, int W, int Cin, int Cout, float *work)
{
  const int64_t P = (int64_t) B * H * W;
  const int N4 = 4 * Cout;
  if (db)
    for (int64_t p = 0; p < 4 * P; p++)
      for (int c = 0; c < Cout; c++)
        db[c] += dout[p * Cout + c];
  if (!dinp && !dw)
    return;
  float *dy_ = work ? work : g_new (float, vl_convt2x2_work_size (B, H, W, Cout));
  for (int bi = 0; bi < B; bi++)
    for (int i = 0; i < H; i++)
      for (int j = 0; j < W; j++)
        {
          float *yr = dy_ + (((int64_t) bi * H + i) * W + j) * N4;
          for (int dy = 0; dy < 2; dy++)
            for (int dx = 0; dx < 2; dx++)
              {
                const float *d = dout + (((int64_t) bi * 2 * H + 2 * i + dy) * 2 * W + 2 * j + dx)
                                        * Cout;
                for (int c = 0; c < Cout; c++)
                  yr[c * 4 + dy * 2 + dx] = d[c];
              }
        }
  if (dinp)   /* dinp (P, Cin) += dy (P, 4 Cout) x w^T */
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, (int) P, Cin, N4, 1.0f, dy_, N4, w, N4,
                 1.0f, dinp, Cin);
  if (dw)     /* dw (Cin, 4 Cout) += inp^T (Cin, P) x dy (P, 4 Cout) */
    cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, Cin, N4, (int) P, 1.0f, inp, Cin, dy_,
                 N4, 1.0f, dw, N4);
  if (!work)
    g_free (dy_);
}

/* ------------------------------------------------------------------ bilinear */

/* One axis of PyTorch's upsample_bilinear2d (align_corners=False, size given), in float as its
 * CPU kernel computes it: i0 (n), i1 = i0 + (i0 < in - 1), weights l0 = 1 - l1, l1. */
static void
bilinear_axis (int *i0, int *i1, float *l0, float *l1, int in, int out)
{
  const float scale = (float) in / (float) out;
  for (int o = 0; o < out; o++)
    {
      float src = scale * ((float) o + 0.5f) - 0.5f;
      src = src < 0.0f ? 0.0f : src;
      int i = (int) src;
      i0[o] = i;
      i1[o] = i + (i < in - 1 ? 1 : 0);
      l1[o] = src - (float) i;
      l0[o] = 1.0f - l1[o];
    }
}

/* Separable, in the order PyTorch's kernel evaluates l0y (l0x a + l1x b) + l1y (l0x c + l1x d):
 * each input row is first interpolated along the width into rows (B, H, Wo, C), then pairs of
 * those rows are mixed along the height. */
void
vl_bilinear_forward (float *out, const float *inp, int B, int H, int W, int C, int Ho, int Wo)
{
  g_autofree int *y0 = g_new (int, Ho), *y1 = g_new (int, Ho);
  g_autofree int *x0 = g_new (int, Wo), *x1 = g_new (int, Wo);
  g_autofree float *wy0 = g_new (float, Ho), *wy1 = g_new (float, Ho);
  g_autofree float *wx0 = g_new (float, Wo), *wx1 = g_new (float, Wo);
  bilinear_axis (y0, y1, wy0, wy1, H, Ho);
  bilinear_axis (x0, x1, wx0, wx1, W, Wo);
  const int64_t row = (int64_t) Wo * C;
  g_autofree float *tmp = g_new (float, H * row);   /* one image's rows (H, Wo, C) */
  for (int b = 0; b < B; b++)
    {
      const float *img = inp + (int64_t) b * H * W * C;
      for (int y = 0; y < H; y++)
        for (int ox = 0; ox < Wo; ox++)
          {
            const float *a = img + ((int64_t) y * W + x0[ox]) * C;
            const float *bb = img + ((int64_t) y * W + x1[ox]) * C;
            float *t = tmp + y * row + (int64_t) ox * C;
            for (int c = 0; c < C; c++)
              t[c] = wx0[ox] * a[c] + wx1[ox] * bb[c];
          }
      for (int oy = 0; oy < Ho; oy++)
        {
          const float *r0 = tmp + y0[oy] * row, *r1 = tmp + y1[oy] * row;
          float *o = out + ((int64_t) b * Ho + oy) * row;
          const float l0 = wy0[oy], l1 = wy1[oy];
          for (int64_t k = 0; k < row; k++)
            o[k] = l0 * r0[k] + l1 * r1[k];
        }
    }
}

void
vl_bilinear_backward (float *dinp, const float *dout, int B, int H, int W, int C, int Ho, int Wo)
{
  g_autofree int *y0 = g_new (int, Ho), *y1 = g_new (int, Ho);
  g_autofree int *x0 = g_new (int, Wo), *x1 = g_new (int, Wo);
  g_autofree float *wy0 = g_new (float, Ho), *wy1 = g_new (float, Ho);
  g_autofree float *wx0 = g_new (float, Wo), *wx1 = g_new (float, Wo);
  bilinear_axis (y0, y1, wy0, wy1, H, Ho);
  bilinear_axis (x0, x1, wx0, wx1, W, Wo);
  const int64_t row = (int64_t) Wo * C;
  g_autofree float *dtmp = g_new (float, H * row);
  for (int b = 0; b < B; b++)
    {
      memset (dtmp, 0, sizeof (float) * H * row);
      for (int oy = 0; oy < Ho; oy++)
        {
          float *r0 = dtmp + y0[oy] * row, *r1 = dtmp + y1[oy] * row;
          const float *g = dout + ((int64_t) b * Ho + oy) * row;
          const float l0 = wy0[oy], l1 = wy1[oy];
          for (int64_t k = 0; k < row; k++)
            {
              r0[k] += l0 * g[k];
              r1[k] += l1 * g[k];
            }
        }
      float *img = dinp + (int64_t) b * H * W * C;
      for (int y = 0; y < H; y++)
        for (int ox = 0; ox < Wo; ox++)
          {
            const float *t = dtmp + y * row + (int64_t) ox * C;
            float *a = img + ((int64_t) y * W + x0[ox]) * C;
            float *bb = img + ((int64_t) y * W + x1[ox]) * C;
            for (int c = 0; c < C; c++)
              {
                a[c] += wx0[ox] * t[c];
                bb[c] += wx1[ox] * t[c];
              }
          }
    }
}

/* ------------------------------------------------------------------ channel LayerNorm */

void
vl_layernorm2d_forward (float *out, float *mean, float *rstd, const float *inp, const float *w,
                        const float *b, int B, int H, int W, int C, float eps)
{
  vl_layernorm_forward (out, mean, rstd, inp, w, b, (int64_t) B * H * W, C, eps);
}

void
vl_layernorm2d_backward (float *dinp, float *dw, float *db, const float *dout, const float *inp,
                         const float *w, const float *mean, const float *rstd, int B, int H,
                         int W, int C)
{
  vl_layernorm_backward (dinp, dw, db, dout, inp, w, mean, rstd, (int64_t) B * H * W, C);
}
