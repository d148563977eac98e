/* vl-seg.c: see vl-seg.h. */
#include "vl-seg.h"
#include "vl-kernels.h"

#include <math.h>

double
vl_seg_cross_entropy (float *dlogits, const float *logits, const uint8_t *labels, int64_t N,
                      int K, int ignore, int64_t *n_counted)
{
  int64_t count = 0;
  for (int64_t i = 0; i < N; i++)
    if (labels[i] != ignore)
      {
        g_assert (labels[i] < K);
        count++;
      }
  if (n_counted)
    *n_counted = count;
  if (count == 0)
    return 0.0;

  const double inv = 1.0 / (double) count;
  const float finv = (float) inv;
  double total = 0.0;
  float e[256];
  g_assert (K <= 256);
  for (int64_t i = 0; i < N; i++)
    {
      if (labels[i] == ignore)
        continue;
      const float *z = logits + i * K;
      /* one float exponential per logit (vl_expf: relative error below 3e-7), the softmax as
       * e / sum; a NaN or infinite logit makes the loss NaN (vl_expf clamps, so it is checked) */
      float mx = -INFINITY, probe = 0.0f;
      for (int k = 0; k < K; k++)
        {
          mx = z[k] > mx ? z[k] : mx;
          probe += z[k] - z[k];
        }
      if (isnan (probe))
        {
          total = NAN;
          continue;
        }
      float s = 0.0f;
      for (int k = 0; k < K; k++)
        {
          e[k] = vl_expf (z[k] - mx);
          s += e[k];
        }
      total += (double) mx + log ((double) s) - z[labels[i]];
      if (dlogits)
        {
          float *dz = dlogits + i * K;
          const float scale = finv / s;
          for (int k = 0; k < K; k++)
            dz[k] += e[k] * scale;
          dz[labels[i]] -= finv;
        }
    }
  return total * inv;
}

void
vl_seg_argmax (uint8_t *pred, const float *logits, int64_t N, int K)
{
  g_assert (K >= 1 && K <= 256);
  for (int64_t i = 0; i < N; i++)
    {
      const float *z = logits + i * K;
      int best = 0;
      for (int k = 1; k < K; k++)
        if (z[k] > z[best] || (isnan (z[k]) && !isnan (z[best])))
          best = k;
      pred[i] = (uint8_t) best;
    }
}

VlSegMetric *
vl_seg_metric_new (int K, int ignore)
{
  g_assert (K >= 1 && K <= 256);
  VlSegMetric *m = g_new0 (VlSegMetric, 1);
  m->K = K;
  m->ignore = ignore;
  m->area_intersect = g_new0 (int64_t, K);
  m->area_union = g_new0 (int64_t, K);
  m->area_pred = g_new0 (int64_t, K);
  m->area_label = g_new0 (int64_t, K);
  return m;
}

void
vl_seg_metric_free (VlSegMetric *m)
{
  if (m == NULL)
    return;
  g_free (m->area_intersect);
  g_free (m->area_union);
  g_free (m->area_pred);
  g_free (m->area_label);
  g_free (m);
}

void
vl_seg_metric_reset (VlSegMetric *m)
{
  for (int k = 0; k < m->K; k++)
    m->area_intersect[k] = m->area_union[k] = m->area_pred[k] = m->area_label[k] = 0;
}

void
vl_seg_metric_add (VlSegMetric *m, const uint8_t *pred, const uint8_t *label, int64_t n)
{
  const int K = m->K;
  for (int64_t i = 0; i < n; i++)
    {
      const int y = label[i], p = pred[i];
      if (y == m->ignore)
        continue;
      if (p < K)
        m->area_pred[p]++;
      if (y < K)
        m->area_label[y]++;
      if (p == y && y < K)
        m->area_intersect[y]++;
    }
  for (int k = 0; k < K; k++)
    m->area_union[k] = m->area_pred[k] + m->area_label[k] - m->area_intersect[k];
}

double
vl_seg_metric_compute (const VlSegMetric *m, double *iou, double *acc, double *macc,
                       double *aacc)
{
  double siou = 0.0, sacc = 0.0;
  int niou = 0, nacc = 0;
  int64_t inter = 0, lab = 0;
  for (int k = 0; k < m->K; k++)
    {
      const int64_t I = m->area_intersect[k], U = m->area_union[k], L = m->area_label[k];
      double q = U > 0 ? (double) I / (double) U : NAN;
      double a = L > 0 ? (double) I / (double) L : NAN;
      if (iou)
        iou[k] = q;
      if (acc)
        acc[k] = a;
      if (!isnan (q))
        siou += q, niou++;
      if (!isnan (a))
        sacc += a, nacc++;
      inter += I;
      lab += L;
    }
  if (macc)
    *macc = nacc ? sacc / nacc : NAN;
  if (aacc)
    *aacc = lab ? (double) inter / (double) lab : NAN;
  return niou ? siou / niou : NAN;
}
