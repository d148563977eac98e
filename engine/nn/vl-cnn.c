/* vl-cnn.c: see vl-cnn.h. */
#include "vl-cnn.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------ padding */

void
vl_same_pad (int in, int k, int stride, int *lo, int *hi)
{
  int total = ((in + stride - 1) / stride - 1) * stride + k - in;
  if (total < 0)
    total = 0;
  *lo = total / 2;
  *hi = total - total / 2;
}

void
vl_pad2d_forward (float *out, const float *inp, int B, int H, int W, int C, int top, int bottom,
                  int left, int right, float value)
{
  const int Hp = H + top + bottom, Wp = W + left + right;
  for (int b = 0; b < B; b++)
    for (int y = 0; y < Hp; y++)
      {
        float *o = out + (((int64_t) b * Hp + y) * Wp) * C;
        const int iy = y - top;
        if (iy < 0 || iy >= H)
          {
            for (int64_t e = 0; e < (int64_t) Wp * C; e++)
              o[e] = value;
            continue;
          }
        for (int64_t e = 0; e < (int64_t) left * C; e++)
          o[e] = value;
        memcpy (o + (int64_t) left * C, inp + (((int64_t) b * H + iy) * W) * C,
                sizeof (float) * W * C);
        for (int64_t e = (int64_t) (left + W) * C; e < (int64_t) Wp * C; e++)
          o[e] = value;
      }
}

void
vl_pad2d_backward (float *dinp, const float *dout, int B, int H, int W, int C, int top,
                   int bottom, int left, int right)
{
  const int Hp = H + top + bottom, Wp = W + left + right;
  for (int b = 0; b < B; b++)
    for (int y = 0; y < H; y++)
      {
        const float *d = dout + (((int64_t) b * Hp + y + top) * Wp + left) * C;
        float *g = dinp + (((int64_t) b * H + y) * W) * C;
        for (int64_t e = 0; e < (int64_t) W * C; e++)
          g[e] += d[e];
      }
}

/* The unpadded conv over the padded grid, and the pads. */
static VlConv2d
same_geometry (const VlConv2d *c, int *top, int *bottom, int *left, int *right)
{
  vl_same_pad (c->H, c->kh, c->stride, top, bottom);
  vl_same_pad (c->W, c->kw, c->stride, left, right);
  VlConv2d p = *c;
  p.H = c->H + *top + *bottom;
  p.W = c->W + *left + *right;
  p.pad = 0;
  return p;
}

int64_t
vl_conv2d_same_padded_size (const VlConv2d *c)
{
  int t, bo, l, r;
  VlConv2d p = same_geometry (c, &t, &bo, &l, &r);
  return (int64_t) p.B * p.H * p.W * p.Cin;
}

void
vl_conv2d_same_forward (float *out, const float *inp, const float *w, const float *b,
                        const VlConv2d *c, float *padded)
{
  int t, bo, l, r;
  VlConv2d p = same_geometry (c, &t, &bo, &l, &r);
  if (t + bo + l + r == 0)
    {
      vl_conv2d_forward (out, inp, w, b, &p, NULL);
      return;
    }
  float *buf = padded ? padded : g_new (float, vl_conv2d_same_padded_size (c));
  vl_pad2d_forward (buf, inp, c->B, c->H, c->W, c->Cin, t, bo, l, r, 0.0f);
  vl_conv2d_forward (out, buf, w, b, &p, NULL);
  if (!padded)
    g_free (buf);
}

void
vl_conv2d_same_backward (float *dinp, float *dw, float *db, const float *dout, const float *inp,
                         const float *w, const VlConv2d *c)
{
  int t, bo, l, r;
  VlConv2d p = same_geometry (c, &t, &bo, &l, &r);
  if (t + bo + l + r == 0)
    {
      vl_conv2d_backward (dinp, dw, db, dout, inp, w, &p, NULL);
      return;
    }
  const int64_t n = vl_conv2d_same_padded_size (c);
  g_autofree float *buf = g_new (float, n);
  g_autofree float *dbuf = dinp ? g_new0 (float, n) : NULL;
  vl_pad2d_forward (buf, inp, c->B, c->H, c->W, c->Cin, t, bo, l, r, 0.0f);
  vl_conv2d_backward (dbuf, dw, db, dout, buf, w, &p, NULL);
  if (dinp)
    vl_pad2d_backward (dinp, dbuf, c->B, c->H, c->W, c->Cin, t, bo, l, r);
}

/* ------------------------------------------------------------------ weight standardization */

void
vl_weight_std_forward (float *wout, float *rstd, const float *w, int Cout, int64_t K, float eps)
{
  for (int o = 0; o < Cout; o++)
    {
      const float *x = w + (int64_t) o * K;
      double s = 0.0, ss = 0.0;
      for (int64_t k = 0; k < K; k++)
        s += x[k];
      const double mean = s / (double) K;
      for (int64_t k = 0; k < K; k++)
        ss += (x[k] - mean) * (x[k] - mean);
      const double rs = 1.0 / sqrt (ss / (double) K + eps);
      rstd[o] = (float) rs;
      for (int64_t k = 0; k < K; k++)
        wout[(int64_t) o * K + k] = (float) ((x[k] - mean) * rs);
    }
}

/* The backward of y = (x - mean) rstd over one row of K (no affine): dx = rstd (dy - mean (dy) -
 * y mean (dy y)). */
static void
normalize_backward (float *dx, const float *dy, const float *y, float rstd, int64_t K)
{
  double sd = 0.0, sdy = 0.0;
  for (int64_t k = 0; k < K; k++)
    {
      sd += dy[k];
      sdy += (double) dy[k] * y[k];
    }
  const double md = sd / (double) K, mdy = sdy / (double) K;
  for (int64_t k = 0; k < K; k++)
    dx[k] += (float) (rstd * (dy[k] - md - y[k] * mdy));
}

void
vl_weight_std_backward (float *dw, const float *dwout, const float *wout, const float *rstd,
                        int Cout, int64_t K)
{
  for (int o = 0; o < Cout; o++)
    normalize_backward (dw + (int64_t) o * K, dwout + (int64_t) o * K, wout + (int64_t) o * K,
                        rstd[o], K);
}

/* ------------------------------------------------------------------ BatchNorm2d */

void
vl_batchnorm_forward (float *out, float *mean, float *rstd, const float *inp, const float *w,
                      const float *b, float *running_mean, float *running_var, int64_t N, int C,
                      float eps, float momentum, gboolean train)
{
  if (train)
    {
      g_autofree double *s = g_new0 (double, C), *ss = g_new0 (double, C);
      for (int64_t n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
          s[c] += inp[n * C + c];
      for (int c = 0; c < C; c++)
        s[c] /= (double) N;
      for (int64_t n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
          {
            const double d = inp[n * C + c] - s[c];
            ss[c] += d * d;
          }
      for (int c = 0; c < C; c++)
        {
          const double var = ss[c] / (double) N;
          mean[c] = (float) s[c];
          rstd[c] = (float) (1.0 / sqrt (var + eps));
          const double unbiased = N > 1 ? ss[c] / (double) (N - 1) : var;
          if (running_mean)
            running_mean[c] = (float) ((1.0 - momentum) * running_mean[c] + momentum * s[c]);
          if (running_var)
            running_var[c] = (float) ((1.0 - momentum) * running_var[c] + momentum * unbiased);
        }
    }
  else
    for (int c = 0; c < C; c++)
      {
        mean[c] = running_mean ? running_mean[c] : 0.0f;
        rstd[c] = (float) (1.0 / sqrt ((double) (running_var ? running_var[c] : 1.0f) + eps));
      }
  for (int64_t n = 0; n < N; n++)
    for (int c = 0; c < C; c++)
      {
        const float y = (inp[n * C + c] - mean[c]) * rstd[c];
        out[n * C + c] = y * (w ? w[c] : 1.0f) + (b ? b[c] : 0.0f);
      }
}

void
vl_batchnorm_backward (float *dinp, float *dw, float *db, const float *dout, const float *inp,
                       const float *w, const float *mean, const float *rstd, int64_t N, int C,
                       gboolean train)
{
  g_autofree double *sd = g_new0 (double, C), *sdy = g_new0 (double, C);
  for (int64_t n = 0; n < N; n++)
    for (int c = 0; c < C; c++)
      {
        const double d = dout[n * C + c];
        sd[c] += d;
        sdy[c] += d * (inp[n * C + c] - mean[c]) * rstd[c];
      }
  for (int c = 0; c < C; c++)
    {
      if (dw)
        dw[c] += (float) sdy[c];
      if (db)
        db[c] += (float) sd[c];
    }
  if (!dinp)
    return;
  for (int64_t n = 0; n < N; n++)
    for (int c = 0; c < C; c++)
      {
        const double g = (w ? w[c] : 1.0) * rstd[c];
        double d = dout[n * C + c];
        if (train)
          {
            const double y = (inp[n * C + c] - mean[c]) * rstd[c];
            d -= (sd[c] + y * sdy[c]) / (double) N;
          }
        dinp[n * C + c] += (float) (g * d);
      }
}

/* ------------------------------------------------------------------ GroupNorm */

void
vl_groupnorm_forward (float *out, float *mean, float *rstd, const float *inp, const float *w,
                      const float *b, int B, int64_t HW, int C, int G, float eps)
{
  const int Cg = C / G;
  const double n = (double) HW * Cg;
  for (int bi = 0; bi < B; bi++)
    for (int g = 0; g < G; g++)
      {
        const float *x = inp + (int64_t) bi * HW * C + g * Cg;
        double s = 0.0, ss = 0.0;
        for (int64_t p = 0; p < HW; p++)
          for (int c = 0; c < Cg; c++)
            s += x[p * C + c];
        const double mu = s / n;
        for (int64_t p = 0; p < HW; p++)
          for (int c = 0; c < Cg; c++)
            ss += (x[p * C + c] - mu) * (x[p * C + c] - mu);
        const float rs = (float) (1.0 / sqrt (ss / n + eps));
        mean[bi * G + g] = (float) mu;
        rstd[bi * G + g] = rs;
        float *o = out + (int64_t) bi * HW * C + g * Cg;
        for (int64_t p = 0; p < HW; p++)
          for (int c = 0; c < Cg; c++)
            {
              const int ch = g * Cg + c;
              o[p * C + c] = (x[p * C + c] - (float) mu) * rs * (w ? w[ch] : 1.0f) +
                             (b ? b[ch] : 0.0f);
            }
      }
}

void
vl_groupnorm_backward (float *dinp, float *dw, float *db, const float *dout, const float *inp,
                       const float *w, const float *mean, const float *rstd, int B, int64_t HW,
                       int C, int G)
{
  const int Cg = C / G;
  const double n = (double) HW * Cg;
  for (int bi = 0; bi < B; bi++)
    for (int g = 0; g < G; g++)
      {
        const float *x = inp + (int64_t) bi * HW * C + g * Cg;
        const float *d = dout + (int64_t) bi * HW * C + g * Cg;
        const double mu = mean[bi * G + g], rs = rstd[bi * G + g];
        double sg = 0.0, sgy = 0.0;   /* sums of dy w and dy w y over the group */
        for (int64_t p = 0; p < HW; p++)
          for (int c = 0; c < Cg; c++)
            {
              const int ch = g * Cg + c;
              const double y = (x[p * C + c] - mu) * rs;
              const double gy = d[p * C + c] * (w ? w[ch] : 1.0);
              sg += gy;
              sgy += gy * y;
              if (dw)
                dw[ch] += (float) (d[p * C + c] * y);
              if (db)
                db[ch] += d[p * C + c];
            }
        if (!dinp)
          continue;
        float *dx = dinp + (int64_t) bi * HW * C + g * Cg;
        for (int64_t p = 0; p < HW; p++)
          for (int c = 0; c < Cg; c++)
            {
              const int ch = g * Cg + c;
              const double y = (x[p * C + c] - mu) * rs;
              const double gy = d[p * C + c] * (w ? w[ch] : 1.0);
              dx[p * C + c] += (float) (rs * (gy - sg / n - y * sgy / n));
            }
      }
}

/* ------------------------------------------------------------------ activations */

void
vl_relu_forward (float *out, const float *inp, int64_t n)
{
  for (int64_t i = 0; i < n; i++)
    out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

void
vl_relu_backward (float *dinp, const float *dout, const float *out, int64_t n)
{
  for (int64_t i = 0; i < n; i++)
    if (out[i] > 0.0f)
      dinp[i] += dout[i];
}

void
vl_silu_forward (float *out, const float *inp, int64_t n)
{
  for (int64_t i = 0; i < n; i++)
    out[i] = inp[i] / (1.0f + expf (-inp[i]));
}

void
vl_silu_backward (float *dinp, const float *dout, const float *inp, int64_t n)
{
  for (int64_t i = 0; i < n; i++)
    {
      const float s = 1.0f / (1.0f + expf (-inp[i]));
      dinp[i] += dout[i] * s * (1.0f + inp[i] * (1.0f - s));
    }
}

/* ------------------------------------------------------------------ max pooling */

void
vl_maxpool2d_forward (float *out, int *argmax, const float *inp, int B, int H, int W, int C,
                      int k, int s, int top, int left, int Ho, int Wo)
{
  for (int b = 0; b < B; b++)
    for (int oy = 0; oy < Ho; oy++)
      for (int ox = 0; ox < Wo; ox++)
        {
          float *o = out + (((int64_t) b * Ho + oy) * Wo + ox) * C;
          int *am = argmax + (((int64_t) b * Ho + oy) * Wo + ox) * C;
          for (int c = 0; c < C; c++)
            {
              o[c] = -INFINITY;
              am[c] = -1;
            }
          for (int ky = 0; ky < k; ky++)
            {
              const int iy = oy * s - top + ky;
              if (iy < 0 || iy >= H)
                continue;
              for (int kx = 0; kx < k; kx++)
                {
                  const int ix = ox * s - left + kx;
                  if (ix < 0 || ix >= W)
                    continue;
                  const float *x = inp + (((int64_t) b * H + iy) * W + ix) * C;
                  for (int c = 0; c < C; c++)
                    if (x[c] > o[c] || am[c] < 0 || isnan (x[c]))
                      {
                        o[c] = x[c];
                        am[c] = iy * W + ix;
                      }
                }
            }
        }
}

void
vl_maxpool2d_backward (float *dinp, const float *dout, const int *argmax, int B, int H, int W,
                       int C, int Ho, int Wo)
{
  for (int b = 0; b < B; b++)
    for (int64_t p = 0; p < (int64_t) Ho * Wo; p++)
      {
        const float *d = dout + ((int64_t) b * Ho * Wo + p) * C;
        const int *am = argmax + ((int64_t) b * Ho * Wo + p) * C;
        float *g = dinp + (int64_t) b * H * W * C;
        for (int c = 0; c < C; c++)
          if (am[c] >= 0)
            g[(int64_t) am[c] * C + c] += d[c];
      }
}

/* ------------------------------------------------------------------ squeeze-and-excitation */

void
vl_se_forward (float *out, float *pooled, float *h, float *gate, const float *inp,
               const float *w1, const float *b1, const float *w2, const float *b2, int B,
               int64_t HW, int C, int R)
{
  for (int b = 0; b < B; b++)
    {
      const float *x = inp + (int64_t) b * HW * C;
      float *pl = pooled + (int64_t) b * C;
      g_autofree double *acc = g_new0 (double, C);
      for (int64_t p = 0; p < HW; p++)
        for (int c = 0; c < C; c++)
          acc[c] += x[p * C + c];
      for (int c = 0; c < C; c++)
        pl[c] = (float) (acc[c] / (double) HW);
      float *hb = h + (int64_t) b * R;
      for (int r = 0; r < R; r++)
        {
          double z = b1 ? b1[r] : 0.0;
          for (int c = 0; c < C; c++)
            z += (double) w1[(int64_t) r * C + c] * pl[c];
          hb[r] = (float) z;
        }
      float *gb = gate + (int64_t) b * C;
      for (int c = 0; c < C; c++)
        {
          double z = b2 ? b2[c] : 0.0;
          for (int r = 0; r < R; r++)
            z += (double) w2[(int64_t) c * R + r] * (hb[r] / (1.0 + exp (-(double) hb[r])));
          gb[c] = (float) (1.0 / (1.0 + exp (-z)));
        }
      float *o = out + (int64_t) b * HW * C;
      for (int64_t p = 0; p < HW; p++)
        for (int c = 0; c < C; c++)
          o[p * C + c] = x[p * C + c] * gb[c];
    }
}

void
vl_se_backward (float *dinp, float *dw1, float *db1, float *dw2, float *db2, const float *dout,
                const float *inp, const float *w1, const float *w2, const float *pooled,
                const float *h, const float *gate, int B, int64_t HW, int C, int R)
{
  g_autofree double *dgate = g_new (double, C), *dz = g_new (double, C);
  g_autofree double *dh = g_new (double, R), *dpool = g_new (double, C);
  g_autofree double *hs = g_new (double, R);
  for (int b = 0; b < B; b++)
    {
      const float *x = inp + (int64_t) b * HW * C, *d = dout + (int64_t) b * HW * C;
      const float *gb = gate + (int64_t) b * C, *hb = h + (int64_t) b * R;
      const float *pl = pooled + (int64_t) b * C;
      for (int c = 0; c < C; c++)
        dgate[c] = 0.0;
      for (int64_t p = 0; p < HW; p++)
        for (int c = 0; c < C; c++)
          dgate[c] += (double) d[p * C + c] * x[p * C + c];
      for (int c = 0; c < C; c++)
        dz[c] = dgate[c] * gb[c] * (1.0 - gb[c]);
      for (int r = 0; r < R; r++)
        {
          const double sg = 1.0 / (1.0 + exp (-(double) hb[r]));
          hs[r] = hb[r] * sg;
          double acc = 0.0;
          for (int c = 0; c < C; c++)
            acc += dz[c] * w2[(int64_t) c * R + r];
          dh[r] = acc * sg * (1.0 + hb[r] * (1.0 - sg));
        }
      for (int c = 0; c < C; c++)
        {
          if (db2)
            db2[c] += (float) dz[c];
          if (dw2)
            for (int r = 0; r < R; r++)
              dw2[(int64_t) c * R + r] += (float) (dz[c] * hs[r]);
        }
      for (int c = 0; c < C; c++)
        dpool[c] = 0.0;
      for (int r = 0; r < R; r++)
        {
          if (db1)
            db1[r] += (float) dh[r];
          for (int c = 0; c < C; c++)
            {
              if (dw1)
                dw1[(int64_t) r * C + c] += (float) (dh[r] * pl[c]);
              dpool[c] += dh[r] * w1[(int64_t) r * C + c];
            }
        }
      if (!dinp)
        continue;
      float *dx = dinp + (int64_t) b * HW * C;
      for (int64_t p = 0; p < HW; p++)
        for (int c = 0; c < C; c++)
          dx[p * C + c] += (float) (d[p * C + c] * gb[c] + dpool[c] / (double) HW);
    }
}
