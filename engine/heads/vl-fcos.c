/* vl-fcos.c: see vl-fcos.h. */
#include "vl-fcos.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void
vl_fcos_anchors (float *anchors, int gh, int gw, int stride)
{
  const float lo = rintf (-(float) stride / 2.0f), hi = rintf ((float) stride / 2.0f);
  for (int i = 0; i < gh; i++)
    for (int j = 0; j < gw; j++)
      {
        float *a = anchors + ((int64_t) i * gw + j) * 4;
        const float sx = (float) (j * stride), sy = (float) (i * stride);
        a[0] = sx + lo;
        a[1] = sy + lo;
        a[2] = sx + hi;
        a[3] = sy + hi;
      }
}

/* ------------------------------------------------------------------ box coder */

void
vl_box_encode (float *codes, const float *anchors, const float *boxes, int64_t n)
{
  for (int64_t i = 0; i < n; i++)
    {
      const float *a = anchors + i * 4, *b = boxes + i * 4;
      const float cx = 0.5f * (a[0] + a[2]), cy = 0.5f * (a[1] + a[3]);
      const float w = a[2] - a[0], h = a[3] - a[1];
      float *c = codes + i * 4;
      c[0] = (cx - b[0]) / w;
      c[1] = (cy - b[1]) / h;
      c[2] = (b[2] - cx) / w;
      c[3] = (b[3] - cy) / h;
    }
}

void
vl_box_decode (float *boxes, const float *codes, const float *anchors, int64_t n)
{
  for (int64_t i = 0; i < n; i++)
    {
      const float *a = anchors + i * 4, *c = codes + i * 4;
      const float cx = 0.5f * (a[0] + a[2]), cy = 0.5f * (a[1] + a[3]);
      const float w = a[2] - a[0], h = a[3] - a[1];
      float *b = boxes + i * 4;
      b[0] = cx - c[0] * w;
      b[1] = cy - c[1] * h;
      b[2] = cx + c[2] * w;
      b[3] = cy + c[3] * h;
    }
}

void
vl_box_decode_backward (float *dcodes, const float *dboxes, const float *anchors, int64_t n)
{
  for (int64_t i = 0; i < n; i++)
    {
      const float *a = anchors + i * 4, *d = dboxes + i * 4;
      const float w = a[2] - a[0], h = a[3] - a[1];
      float *dc = dcodes + i * 4;
      dc[0] -= d[0] * w;
      dc[1] -= d[1] * h;
      dc[2] += d[2] * w;
      dc[3] += d[3] * h;
    }
}

/* ------------------------------------------------------------------ losses */

/* log (1 + e^x) - x t computed without overflow: BCE with logits of one element. */
static inline double
bce_logit (double x, double t)
{
  return fmax (x, 0.0) - x * t + log1p (exp (-fabs (x)));
}

static inline double
sigmoid_d (double x)
{
  return x >= 0 ? 1.0 / (1.0 + exp (-x)) : exp (x) / (1.0 + exp (x));
}

double
vl_sigmoid_focal_loss (float *dlogits, const float *logits, const float *targets, int64_t n,
                       float alpha, float gamma, float scale)
{
  double total = 0.0;
  for (int64_t i = 0; i < n; i++)
    {
      const double x = logits[i], t = targets[i];
      const double p = sigmoid_d (x);
      const double ce = bce_logit (x, t);
      const double pt = p * t + (1.0 - p) * (1.0 - t);
      const double m = 1.0 - pt;
      const double at = alpha >= 0 ? alpha * t + (1.0 - alpha) * (1.0 - t) : 1.0;
      const double mg = pow (m, gamma);
      total += at * ce * mg;
      if (dlogits)
        {
          /* d m / dx = -(2t - 1) p (1 - p) */
          double dmg = gamma != 0.0 ? gamma * pow (m, gamma - 1.0) : 0.0;
          double g = at * ((p - t) * mg - ce * dmg * (2.0 * t - 1.0) * p * (1.0 - p));
          dlogits[i] += (float) (scale * g);
        }
    }
  return total;
}

double
vl_bce_with_logits (float *dlogits, const float *logits, const float *targets, int64_t n,
                    float scale)
{
  double total = 0.0;
  for (int64_t i = 0; i < n; i++)
    {
      total += bce_logit (logits[i], targets[i]);
      if (dlogits)
        dlogits[i] += (float) (scale * (sigmoid_d (logits[i]) - targets[i]));
    }
  return total;
}

/* d max (a, b) / d a: 1, 0, or 1/2 on a tie (torch's maximum); likewise for the minimum. */
static inline double
d_max_first (double a, double b)
{
  return a > b ? 1.0 : a == b ? 0.5 : 0.0;
}

double
vl_giou_loss (float *dpred, const float *pred, const float *target, int64_t n, float scale)
{
  const double eps = 1e-7;
  double total = 0.0;
  for (int64_t i = 0; i < n; i++)
    {
      const float *p = pred + i * 4, *g = target + i * 4;
      const double x1 = p[0], y1 = p[1], x2 = p[2], y2 = p[3];
      const double gx1 = g[0], gy1 = g[1], gx2 = g[2], gy2 = g[3];
      const double xk1 = fmax (x1, gx1), yk1 = fmax (y1, gy1);
      const double xk2 = fmin (x2, gx2), yk2 = fmin (y2, gy2);
      const gboolean overlap = yk2 > yk1 && xk2 > xk1;
      const double inter = overlap ? (xk2 - xk1) * (yk2 - yk1) : 0.0;
      const double union_ = (x2 - x1) * (y2 - y1) + (gx2 - gx1) * (gy2 - gy1) - inter;
      const double xc1 = fmin (x1, gx1), yc1 = fmin (y1, gy1);
      const double xc2 = fmax (x2, gx2), yc2 = fmax (y2, gy2);
      const double area_c = (xc2 - xc1) * (yc2 - yc1);
      const double giou = inter / (union_ + eps) - (area_c - union_) / (area_c + eps);
      total += 1.0 - giou;
      if (!dpred)
        continue;

      /* d loss = -d giou; through inter, union and area_c */
      const double g_u = -inter / ((union_ + eps) * (union_ + eps)) + 1.0 / (area_c + eps);
      const double g_i = 1.0 / (union_ + eps) - g_u;   /* union = ... - inter */
      const double g_c = -(union_ + eps) / ((area_c + eps) * (area_c + eps));
      double d[4] = { 0, 0, 0, 0 };
      /* union's own box area */
      d[0] += g_u * -(y2 - y1);
      d[2] += g_u * (y2 - y1);
      d[1] += g_u * -(x2 - x1);
      d[3] += g_u * (x2 - x1);
      if (overlap)
        {
          const double wi = xk2 - xk1, hi = yk2 - yk1;
          d[0] += g_i * -hi * d_max_first (x1, gx1);
          d[1] += g_i * -wi * d_max_first (y1, gy1);
          d[2] += g_i * hi * d_max_first (-x2, -gx2);   /* min (x2, gx2) */
          d[3] += g_i * wi * d_max_first (-y2, -gy2);
        }
      const double wc = xc2 - xc1, hc = yc2 - yc1;
      d[0] += g_c * -hc * d_max_first (-x1, -gx1);
      d[1] += g_c * -wc * d_max_first (-y1, -gy1);
      d[2] += g_c * hc * d_max_first (x2, gx2);
      d[3] += g_c * wc * d_max_first (y2, gy2);
      for (int k = 0; k < 4; k++)
        dpred[i * 4 + k] += (float) (-scale * d[k]);
    }
  return total;
}

/* ------------------------------------------------------------------ matching */

void
vl_fcos_match (int *matched, const float *anchors, int A, const float *boxes, int n_boxes,
               float radius, float lower, float upper)
{
  for (int a = 0; a < A; a++)
    {
      const float *an = anchors + (int64_t) a * 4;
      const float x = (an[0] + an[2]) / 2.0f, y = (an[1] + an[3]) / 2.0f;
      const float size = an[2] - an[0];
      float best = 0.0f;
      int best_i = 0;
      for (int m = 0; m < n_boxes; m++)
        {
          const float *b = boxes + (int64_t) m * 4;
          const float gx = (b[0] + b[2]) / 2.0f, gy = (b[1] + b[3]) / 2.0f;
          gboolean ok = fmaxf (fabsf (x - gx), fabsf (y - gy)) < radius * size;
          const float l = x - b[0], t = y - b[1], r = b[2] - x, bo = b[3] - y;
          ok = ok && fminf (fminf (l, t), fminf (r, bo)) > 0.0f;
          const float far = fmaxf (fmaxf (l, t), fmaxf (r, bo));
          ok = ok && far > lower && far < upper;
          const float area = (b[2] - b[0]) * (b[3] - b[1]);
          const float v = ok ? 1e8f - area : 0.0f;
          if (v > best)   /* the first of equal maxima */
            best = v, best_i = m;
        }
      matched[a] = best < 1e-5f ? -1 : best_i;
    }
}

void
vl_fcos_centerness (float *ctr, const float *codes, int64_t n)
{
  for (int64_t i = 0; i < n; i++)
    {
      const float *c = codes + i * 4;
      const float lr = fminf (c[0], c[2]) / fmaxf (c[0], c[2]);
      const float tb = fminf (c[1], c[3]) / fmaxf (c[1], c[3]);
      ctr[i] = sqrtf (lr * tb);
    }
}

void
vl_fcos_loss (VlFcosLosses *out, float *dcls, float *dreg, float *dctr, int *matched,
              const float *cls, const float *reg, const float *ctr, const float *anchors,
              const VlFcosTarget *targets, int B, int A, int K)
{
  g_autofree int *m = g_new (int, (int64_t) B * A);
  int64_t n_fg = 0;
  for (int b = 0; b < B; b++)
    {
      int *mb = m + (int64_t) b * A;
      if (targets[b].n == 0)
        for (int a = 0; a < A; a++)
          mb[a] = -1;
      else
        vl_fcos_match (mb, anchors, A, targets[b].boxes, targets[b].n, 1.5f, 0.0f, INFINITY);
      for (int a = 0; a < A; a++)
        n_fg += mb[a] >= 0;
    }
  if (matched)
    memcpy (matched, m, sizeof (int) * B * A);
  const float norm = 1.0f / (float) MAX (1, n_fg);
  const double dnorm = 1.0 / (double) MAX (1, n_fg);

  double l_cls = 0.0, l_reg = 0.0, l_ctr = 0.0;
  g_autofree float *onehot = g_new (float, (int64_t) A * K);
  for (int b = 0; b < B; b++)
    {
      const int *mb = m + (int64_t) b * A;
      const VlFcosTarget *tg = &targets[b];
      memset (onehot, 0, sizeof (float) * A * K);
      for (int a = 0; a < A; a++)
        if (mb[a] >= 0)
          {
            g_assert (tg->labels[mb[a]] >= 0 && tg->labels[mb[a]] < K);
            onehot[(int64_t) a * K + tg->labels[mb[a]]] = 1.0f;
          }
      const int64_t off = (int64_t) b * A;
      l_cls += vl_sigmoid_focal_loss (dcls ? dcls + off * K : NULL, cls + off * K, onehot,
                                      (int64_t) A * K, 0.25f, 2.0f, norm);
      for (int a = 0; a < A; a++)
        {
          if (mb[a] < 0)
            continue;
          const float *an = anchors + (int64_t) a * 4, *gt = tg->boxes + (int64_t) mb[a] * 4;
          const float *code = reg + (off + a) * 4;
          float pbox[4], dbox[4] = { 0, 0, 0, 0 }, tcode[4], tctr;
          vl_box_decode (pbox, code, an, 1);
          l_reg += vl_giou_loss (dreg ? dbox : NULL, pbox, gt, 1, norm);
          if (dreg)
            vl_box_decode_backward (dreg + (off + a) * 4, dbox, an, 1);
          vl_box_encode (tcode, an, gt, 1);
          vl_fcos_centerness (&tctr, tcode, 1);
          l_ctr += vl_bce_with_logits (dctr ? dctr + off + a : NULL, ctr + off + a, &tctr, 1,
                                       norm);
        }
    }
  out->classification = l_cls * dnorm;
  out->bbox_regression = l_reg * dnorm;
  out->bbox_ctrness = l_ctr * dnorm;
  out->n_foreground = n_fg;
}

/* ------------------------------------------------------------------ postprocess */

typedef struct {
  float score;
  int   index;
} ScoreIndex;

static int
by_score_desc (const void *pa, const void *pb)
{
  const ScoreIndex *a = pa, *b = pb;
  if (a->score != b->score)
    return a->score > b->score ? -1 : 1;
  return a->index < b->index ? -1 : a->index > b->index;
}

int
vl_batched_nms (int *keep, const float *boxes, const float *scores, const int *labels, int n,
                float iou_thresh)
{
  g_autofree ScoreIndex *order = g_new (ScoreIndex, MAX (n, 1));
  g_autofree float *areas = g_new (float, MAX (n, 1));
  g_autofree gboolean *suppressed = g_new0 (gboolean, MAX (n, 1));
  for (int i = 0; i < n; i++)
    {
      const float *b = boxes + (int64_t) i * 4;
      order[i] = (ScoreIndex) { scores[i], i };
      areas[i] = (b[2] - b[0]) * (b[3] - b[1]);
    }
  qsort (order, n, sizeof *order, by_score_desc);
  int n_keep = 0;
  for (int oi = 0; oi < n; oi++)
    {
      const int i = order[oi].index;
      if (suppressed[i])
        continue;
      keep[n_keep++] = i;
      const float *bi = boxes + (int64_t) i * 4;
      for (int oj = oi + 1; oj < n; oj++)
        {
          const int j = order[oj].index;
          if (suppressed[j] || labels[j] != labels[i])
            continue;
          const float *bj = boxes + (int64_t) j * 4;
          const float w = fmaxf (0.0f, fminf (bi[2], bj[2]) - fmaxf (bi[0], bj[0]));
          const float h = fmaxf (0.0f, fminf (bi[3], bj[3]) - fmaxf (bi[1], bj[1]));
          const float inter = w * h;
          if (inter / (areas[i] + areas[j] - inter) > iou_thresh)
            suppressed[j] = TRUE;
        }
    }
  return n_keep;
}

static inline float
sigmoid_f (float x)
{
  return 1.0f / (1.0f + expf (-x));
}

int
vl_fcos_postprocess (VlDetection *dets, const float *cls, const float *reg, const float *ctr,
                     const float *anchors, int A, int K, int img_h, int img_w,
                     const VlFcosPostprocess *p)
{
  const int64_t n_all = (int64_t) A * K;
  g_autofree ScoreIndex *cand = g_new (ScoreIndex, MAX (n_all, 1));
  int n = 0;
  for (int a = 0; a < A; a++)
    {
      const float sc = sigmoid_f (ctr[a]);
      for (int k = 0; k < K; k++)
        {
          const float s = sqrtf (sigmoid_f (cls[(int64_t) a * K + k]) * sc);
          if (s > p->score_thresh)
            cand[n++] = (ScoreIndex) { s, a * K + k };
        }
    }
  qsort (cand, n, sizeof *cand, by_score_desc);
  n = MIN (n, p->topk);

  g_autofree float *boxes = g_new (float, (int64_t) MAX (n, 1) * 4);
  g_autofree float *scores = g_new (float, MAX (n, 1));
  g_autofree int *labels = g_new (int, MAX (n, 1));
  g_autofree int *keep = g_new (int, MAX (n, 1));
  for (int i = 0; i < n; i++)
    {
      const int a = cand[i].index / K;
      float *b = boxes + (int64_t) i * 4;
      vl_box_decode (b, reg + (int64_t) a * 4, anchors + (int64_t) a * 4, 1);
      b[0] = CLAMP (b[0], 0.0f, (float) img_w);
      b[2] = CLAMP (b[2], 0.0f, (float) img_w);
      b[1] = CLAMP (b[1], 0.0f, (float) img_h);
      b[3] = CLAMP (b[3], 0.0f, (float) img_h);
      scores[i] = cand[i].score;
      labels[i] = cand[i].index % K;
    }
  int n_keep = vl_batched_nms (keep, boxes, scores, labels, n, p->nms_thresh);
  n_keep = MIN (n_keep, p->max_dets);
  for (int i = 0; i < n_keep; i++)
    {
      const int j = keep[i];
      memcpy (dets[i].box, boxes + (int64_t) j * 4, sizeof dets[i].box);
      dets[i].score = scores[j];
      dets[i].label = labels[j];
    }
  return n_keep;
}
