/* vl-coco-eval.c: see vl-coco-eval.h. */
#include "vl-coco-eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { N_IOU = 10, N_REC = 101 };

/* np.linspace (start, stop, num): i * step + start, the last exactly stop. */
static void
linspace (double *y, double start, double stop, int num)
{
  const double step = (stop - start) / (num - 1);
  for (int i = 0; i < num; i++)
    y[i] = i * step + start;
  y[num - 1] = stop;
}

/* maskUtils.iou of two boxes (not crowd), in double. */
static double
box_iou (const float *d, const float *g)
{
  const double w = fmin ((double) d[2], (double) g[2]) - fmax ((double) d[0], (double) g[0]);
  if (w <= 0)
    return 0.0;
  const double h = fmin ((double) d[3], (double) g[3]) - fmax ((double) d[1], (double) g[1]);
  if (h <= 0)
    return 0.0;
  const double i = w * h;
  const double da = ((double) d[2] - d[0]) * ((double) d[3] - d[1]);
  const double ga = ((double) g[2] - g[0]) * ((double) g[3] - g[1]);
  return i / (da + ga - i);
}

typedef struct {
  double score;
  int    image;
  int    order;     /* position in the input: the stable sorts' tie-break */
  int    index;     /* into dt */
  guint8 matched[N_IOU];
} Det;

/* by score descending; equal scores keep image order, then input order (both merges are
 * stable in pycocotools) */
static int
det_cmp (const void *pa, const void *pb)
{
  const Det *a = pa, *b = pb;
  if (a->score != b->score)
    return a->score > b->score ? -1 : 1;
  if (a->image != b->image)
    return a->image < b->image ? -1 : 1;
  return a->order < b->order ? -1 : a->order > b->order;
}

static int
det_cmp_in_image (const void *pa, const void *pb)
{
  const Det *a = pa, *b = pb;
  if (a->score != b->score)
    return a->score > b->score ? -1 : 1;
  return a->order < b->order ? -1 : a->order > b->order;
}

void
vl_coco_eval (VlCocoStats *stats, double *class_ap, double *class_ap50, const VlCocoBox *gt,
              int n_gt, const VlCocoBox *dt, int n_dt, int n_images, int n_classes)
{
  double iou_thr[N_IOU], rec_thr[N_REC];
  linspace (iou_thr, 0.5, 0.95, N_IOU);
  linspace (rec_thr, 0.0, 1.0, N_REC);
  for (int i = 0; i < n_gt; i++)
    g_assert (gt[i].image >= 0 && gt[i].image < n_images && gt[i].category >= 0 &&
              gt[i].category < n_classes);
  for (int i = 0; i < n_dt; i++)
    g_assert (dt[i].image >= 0 && dt[i].image < n_images && dt[i].category >= 0 &&
              dt[i].category < n_classes);

  double sum_ap = 0, sum_ap50 = 0, sum_ap75 = 0, sum_ar = 0;
  int n_valid = 0;
  g_autofree Det *dets = g_new (Det, MAX (n_dt, 1));
  g_autofree int *gidx = g_new (int, MAX (n_gt, 1));
  g_autofree guint8 *gmatched = g_new (guint8, (int64_t) MAX (n_gt, 1) * N_IOU);
  g_autofree double *pr = g_new (double, MAX (n_dt, 1));
  g_autofree double *rc = g_new (double, MAX (n_dt, 1));

  for (int k = 0; k < n_classes; k++)
    {
      int nd = 0, npig = 0;
      for (int img = 0; img < n_images; img++)
        {
          /* this image's ground truth and detections of class k, in input order */
          int ng = 0;
          for (int i = 0; i < n_gt; i++)
            if (gt[i].image == img && gt[i].category == k)
              gidx[ng++] = i;
          Det *d0 = dets + nd;
          int ni = 0;
          for (int i = 0; i < n_dt; i++)
            if (dt[i].image == img && dt[i].category == k)
              d0[ni++] = (Det) { dt[i].score, img, i, i, { 0 } };
          qsort (d0, ni, sizeof (Det), det_cmp_in_image);
          ni = MIN (ni, VL_COCO_MAX_DETS);
          memset (gmatched, 0, (size_t) ng * N_IOU);
          for (int t = 0; t < N_IOU; t++)
            for (int di = 0; di < ni; di++)
              {
                double best = MIN (iou_thr[t], 1 - 1e-10);
                int m = -1;
                for (int g = 0; g < ng; g++)
                  {
                    if (gmatched[g * N_IOU + t])
                      continue;
                    double o = box_iou (dt[d0[di].index].box, gt[gidx[g]].box);
                    if (o < best)
                      continue;
                    best = o;
                    m = g;
                  }
                if (m < 0)
                  continue;
                gmatched[m * N_IOU + t] = 1;
                d0[di].matched[t] = 1;
              }
          nd += ni;
          npig += ng;
        }
      if (class_ap)
        class_ap[k] = -1;
      if (class_ap50)
        class_ap50[k] = -1;
      if (npig == 0)
        continue;

      qsort (dets, nd, sizeof (Det), det_cmp);
      double ap = 0, ap50 = 0, ap75 = 0, ar = 0;
      for (int t = 0; t < N_IOU; t++)
        {
          double tp = 0, fp = 0;
          for (int i = 0; i < nd; i++)
            {
              if (dets[i].matched[t])
                tp += 1;
              else
                fp += 1;
              rc[i] = tp / npig;
              pr[i] = tp / (fp + tp + 2.220446049250313e-16);   /* np.spacing (1) */
            }
          ar += nd ? rc[nd - 1] : 0.0;
          for (int i = nd - 1; i > 0; i--)
            if (pr[i] > pr[i - 1])
              pr[i - 1] = pr[i];
          double q = 0;
          int pi = 0;
          for (int r = 0; r < N_REC; r++)
            {
              while (pi < nd && rc[pi] < rec_thr[r])   /* searchsorted, side "left" */
                pi++;
              q += pi < nd ? pr[pi] : 0.0;
            }
          ap += q / N_REC;
          if (t == 0)
            ap50 = q / N_REC;
          if (t == 5)
            ap75 = q / N_REC;
        }
      ap /= N_IOU;
      ar /= N_IOU;
      if (class_ap)
        class_ap[k] = ap;
      if (class_ap50)
        class_ap50[k] = ap50;
      sum_ap += ap, sum_ap50 += ap50, sum_ap75 += ap75, sum_ar += ar;
      n_valid++;
    }
  stats->ap = n_valid ? sum_ap / n_valid : -1;
  stats->ap50 = n_valid ? sum_ap50 / n_valid : -1;
  stats->ap75 = n_valid ? sum_ap75 / n_valid : -1;
  stats->ar100 = n_valid ? sum_ar / n_valid : -1;
}
