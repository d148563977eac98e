/* vl-loss.c: losses as kernels (see vl-loss.h). */
#include "vl-loss.h"

#include <math.h>

double
vl_loss_cross_entropy (float *dlogits, const float *logits, const int *targets, int B, int K,
                       float label_smoothing, int ignore_index)
{
  int count = 0;
  for (int b = 0; b < B; b++)
    count += targets[b] != ignore_index;
  double total = 0.0;
  for (int b = 0; b < B; b++)
    {
      const float *z = logits + (int64_t) b * K;
      float *dz = dlogits ? dlogits + (int64_t) b * K : NULL;
      if (targets[b] == ignore_index)
        {
          for (int k = 0; dz && k < K; k++)
            dz[k] = 0.0f;
          continue;
        }
      double mx = -INFINITY;
      for (int k = 0; k < K; k++)
        mx = z[k] > mx ? z[k] : mx;
      double s = 0.0;
      for (int k = 0; k < K; k++)
        s += exp ((double) z[k] - mx);
      double lse = mx + log (s);
      double nll = lse - z[targets[b]];
      double smooth = 0.0;
      for (int k = 0; k < K; k++)
        smooth += lse - z[k];
      smooth /= K;
      total += (1.0 - label_smoothing) * nll + label_smoothing * smooth;
      if (dz)
        for (int k = 0; k < K; k++)
          {
            double p = exp ((double) z[k] - lse);
            double t = label_smoothing / K + (k == targets[b] ? 1.0 - label_smoothing : 0.0);
            dz[k] = (float) ((p - t) / count);
          }
    }
  return count > 0 ? total / count : 0.0;
}

double
vl_loss_mse (float *dpred, const float *pred, const float *target, int64_t n)
{
  double total = 0.0;
  for (int64_t i = 0; i < n; i++)
    {
      double x = (double) pred[i] - target[i];
      total += x * x;
      if (dpred)
        dpred[i] = (float) (2.0 * x / n);
    }
  return n > 0 ? total / n : 0.0;
}

double
vl_loss_smooth_l1 (float *dpred, const float *pred, const float *target, int64_t n, float beta)
{
  double total = 0.0;
  for (int64_t i = 0; i < n; i++)
    {
      double x = (double) pred[i] - target[i], ax = fabs (x), g;
      if (ax < beta)
        {
          total += 0.5 * x * x / beta;
          g = x / beta;
        }
      else
        {
          total += ax - 0.5 * beta;
          g = x > 0 ? 1.0 : x < 0 ? -1.0 : 0.0;
        }
      if (dpred)
        dpred[i] = (float) (g / n);
    }
  return n > 0 ? total / n : 0.0;
}
