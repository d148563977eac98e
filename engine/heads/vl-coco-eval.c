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

static int
by_category_image (gconstpointer pa, gconstpointer pb, gpointer data)
{
  const VlCocoBox *boxes = data;
  const int a = *(const int *) pa, b = *(const int *) pb;
  if (boxes[a].category != boxes[b].category)
    return boxes[a].category < boxes[b].category ? -1 : 1;
  if (boxes[a].image != boxes[b].image)
    return boxes[a].image < boxes[b].image ? -1 : 1;
  return a < b ? -1 : a > b;
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

  /* both lists bucketed by (category, image), input order kept inside a bucket */
  g_autofree int *go = g_new (int, MAX (n_gt, 1)), *dto = g_new (int, MAX (n_dt, 1));
  for (int i = 0; i < n_gt; i++)
    go[i] = i;
  for (int i = 0; i < n_dt; i++)
    dto[i] = i;
  g_qsort_with_data (go, n_gt, sizeof (int), by_category_image, (gpointer) gt);
  g_qsort_with_data (dto, n_dt, sizeof (int), by_category_image, (gpointer) dt);

  double sum_ap = 0, sum_ap50 = 0, sum_ap75 = 0, sum_ar = 0;
  int n_valid = 0;
  g_autofree Det *dets = g_new (Det, MAX (n_dt, 1));
  g_autofree guint8 *gmatched = g_new (guint8, (int64_t) MAX (n_gt, 1) * N_IOU);
  g_autofree double *pr = g_new (double, MAX (n_dt, 1));
  g_autofree double *rc = g_new (double, MAX (n_dt, 1));

  int gi = 0, di = 0;   /* the cursors into go and dto */
  for (int k = 0; k < n_classes; k++)
    {
      int nd = 0, npig = 0;
      while ((gi < n_gt && gt[go[gi]].category == k) || (di < n_dt && dt[dto[di]].category == k))
        {
          /* the next image with ground truth or detections of class k (images in order) */
          int img = G_MAXINT;
          if (gi < n_gt && gt[go[gi]].category == k)
            img = gt[go[gi]].image;
          if (di < n_dt && dt[dto[di]].category == k)
            img = MIN (img, dt[dto[di]].image);
          const int *g0 = go + gi;
          int ng = 0;
          while (gi < n_gt && gt[go[gi]].category == k && gt[go[gi]].image == img)
            gi++, ng++;
          Det *d0 = dets + nd;
          int ni = 0;
          while (di < n_dt && dt[dto[di]].category == k && dt[dto[di]].image == img)
            {
              const int i = dto[di++];
              d0[ni++] = (Det) { dt[i].score, img, i, i, { 0 } };
            }
          qsort (d0, ni, sizeof (Det), det_cmp_in_image);
          ni = MIN (ni, VL_COCO_MAX_DETS);
          memset (gmatched, 0, (size_t) ng * N_IOU);
          g_autofree double *ious = g_new (double, MAX ((int64_t) ni * ng, 1));   /* (ni, ng) */
          for (int d = 0; d < ni; d++)
            for (int g = 0; g < ng; g++)
              ious[(int64_t) d * ng + g] = box_iou (dt[d0[d].index].box, gt[g0[g]].box);
          for (int t = 0; t < N_IOU; t++)
            for (int d = 0; d < ni; d++)
              {
                double best = MIN (iou_thr[t], 1 - 1e-10);
                int m = -1;
                for (int g = 0; g < ng; g++)
                  {
                    if (gmatched[g * N_IOU + t])
                      continue;
                    const double o = ious[(int64_t) d * ng + g];
                    if (o < best)
                      continue;
                    best = o;
                    m = g;
                  }
                if (m < 0)
                  continue;
                gmatched[m * N_IOU + t] = 1;
                d0[d].matched[t] = 1;
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

typedef struct {
  int   index;
  float score;
} ByScore;

static int
by_image_category_score (const void *a, const void *b, void *data)
{
  const VlCocoBox *dt = data;
  const ByScore *x = a, *y = b;
  const VlCocoBox *p = &dt[x->index], *q = &dt[y->index];
  if (p->image != q->image)
    return p->image < q->image ? -1 : 1;
  if (p->category != q->category)
    return p->category < q->category ? -1 : 1;
  if (x->score != y->score)
    return x->score > y->score ? -1 : 1;
  return x->index < y->index ? -1 : x->index > y->index;   /* stable */
}

void
vl_det_match (gboolean *dt_matched, gboolean *gt_matched, const VlCocoBox *gt, int n_gt,
              const VlCocoBox *dt, int n_dt, float score_thresh, float iou_thresh)
{
  g_autofree ByScore *order = g_new (ByScore, MAX (n_dt, 1));
  g_autofree gboolean *taken = g_new0 (gboolean, MAX (n_gt, 1));
  int n = 0;
  for (int i = 0; i < n_dt; i++)
    {
      if (dt_matched)
        dt_matched[i] = FALSE;
      if (dt[i].score >= score_thresh)
        order[n++] = (ByScore) { i, dt[i].score };
    }
  g_qsort_with_data (order, n, sizeof *order, by_image_category_score, (gpointer) dt);
  for (int k = 0; k < n; k++)
    {
      const VlCocoBox *d = &dt[order[k].index];
      int best = -1;
      double best_iou = iou_thresh;
      for (int g = 0; g < n_gt; g++)
        {
          if (taken[g] || gt[g].image != d->image || gt[g].category != d->category)
            continue;
          double iou = box_iou (d->box, gt[g].box);
          if (iou >= best_iou)
            {
              best_iou = iou;
              best = g;
            }
        }
      if (best >= 0)
        {
          taken[best] = TRUE;
          if (dt_matched)
            dt_matched[order[k].index] = TRUE;
        }
    }
  if (gt_matched)
    memcpy (gt_matched, taken, sizeof (gboolean) * n_gt);
}

void
vl_det_image_errors (int *missed, int *false_pos, const VlCocoBox *gt, int n_gt,
                     const VlCocoBox *dt, int n_dt, int n_images, float score_thresh,
                     float iou_thresh)
{
  memset (missed, 0, sizeof (int) * n_images);
  memset (false_pos, 0, sizeof (int) * n_images);
  g_autofree gboolean *dm = g_new (gboolean, MAX (n_dt, 1));
  g_autofree gboolean *gm = g_new (gboolean, MAX (n_gt, 1));
  vl_det_match (dm, gm, gt, n_gt, dt, n_dt, score_thresh, iou_thresh);
  for (int i = 0; i < n_dt; i++)
    {
      g_assert (dt[i].image >= 0 && dt[i].image < n_images);
      if (dt[i].score >= score_thresh && !dm[i])
        false_pos[dt[i].image]++;
    }
  for (int g = 0; g < n_gt; g++)
    {
      g_assert (gt[g].image >= 0 && gt[g].image < n_images);
      if (!gm[g])
        missed[gt[g].image]++;
    }
}
