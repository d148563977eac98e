/* vl-detect.c: the detection task's metrics and evaluation (see vl-detect.h). */
#include "vl-detect.h"

#include <math.h>
#include <string.h>

#include "vl-augment.h"
#include "vl-run.h"
#include "vl-task.h"

void
vl_det_result_begin (VlDetResult *r, int n_classes)
{
  memset (r, 0, sizeof *r);
  r->n_classes = n_classes;
  r->gt = g_array_new (FALSE, FALSE, sizeof (VlCocoBox));
  r->dt = g_array_new (FALSE, FALSE, sizeof (VlCocoBox));
  r->ap = r->ap50 = r->ap75 = r->ar100 = r->loss = NAN;
}

void
vl_detections_to_image (VlDetection *dets, int n, int S, int width, int height)
{
  const float sx = (float) width / S, sy = (float) height / S;
  for (int i = 0; i < n; i++)
    {
      dets[i].box[0] *= sx;
      dets[i].box[1] *= sy;
      dets[i].box[2] *= sx;
      dets[i].box[3] *= sy;
    }
}

void
vl_det_result_add (VlDetResult *r, const VlDetection *dets, int n_dets, int S, int width,
                   int height, const float *gt, const int *gt_labels, int n_gt)
{
  const int image = (int) r->n++;
  for (int i = 0; i < n_gt; i++)
    {
      VlCocoBox b = { image, gt_labels[i], { gt[4 * i], gt[4 * i + 1], gt[4 * i + 2],
                                             gt[4 * i + 3] }, 0 };
      g_array_append_val (r->gt, b);
    }
  g_autofree VlDetection *d = g_memdup2 (dets, sizeof (VlDetection) * MAX (n_dets, 1));
  vl_detections_to_image (d, n_dets, S, width, height);
  for (int i = 0; i < n_dets; i++)
    {
      VlCocoBox b = { image, d[i].label, { d[i].box[0], d[i].box[1], d[i].box[2], d[i].box[3] },
                      d[i].score };
      g_array_append_val (r->dt, b);
    }
}

void
vl_det_result_add_loss (VlDetResult *r, double loss, int n_images)
{
  r->loss_sum += loss * n_images;
  r->loss_n += n_images;
}

void
vl_det_result_end (VlDetResult *r)
{
  const int K = r->n_classes;
  r->class_ap = g_new (double, K);
  r->class_ap50 = g_new (double, K);
  VlCocoStats st;
  vl_coco_eval (&st, r->class_ap, r->class_ap50, (VlCocoBox *) r->gt->data, (int) r->gt->len,
                (VlCocoBox *) r->dt->data, (int) r->dt->len, (int) MAX (r->n, 1), K);
  /* -1 (no ground truth) reads NaN, as the other tasks' undefined metrics do */
  r->ap = st.ap < 0 ? NAN : st.ap;
  r->ap50 = st.ap50 < 0 ? NAN : st.ap50;
  r->ap75 = st.ap75 < 0 ? NAN : st.ap75;
  r->ar100 = st.ar100 < 0 ? NAN : st.ar100;
  for (int k = 0; k < K; k++)
    {
      if (r->class_ap[k] < 0)
        r->class_ap[k] = NAN;
      if (r->class_ap50[k] < 0)
        r->class_ap50[k] = NAN;
    }
  r->n_gt = r->gt->len;
  r->n_dt = r->dt->len;
  r->loss = r->loss_n > 0 ? r->loss_sum / r->loss_n : NAN;
  g_clear_pointer (&r->gt, g_array_unref);
  g_clear_pointer (&r->dt, g_array_unref);
}

void
vl_det_result_clear (VlDetResult *r)
{
  g_clear_pointer (&r->class_ap, g_free);
  g_clear_pointer (&r->class_ap50, g_free);
  g_clear_pointer (&r->gt, g_array_unref);
  g_clear_pointer (&r->dt, g_array_unref);
}

void
vl_det_result_copy (VlDetResult *dst, const VlDetResult *src)
{
  *dst = *src;
  dst->gt = dst->dt = NULL;
  dst->class_ap = src->class_ap ? g_memdup2 (src->class_ap, sizeof (double) * src->n_classes)
                                : NULL;
  dst->class_ap50 = src->class_ap50 ? g_memdup2 (src->class_ap50,
                                                 sizeof (double) * src->n_classes) : NULL;
}

int
vl_detect_image (VlModel *m, VlDetHead *h, const VlImage *img, int size,
                 const VlFcosPostprocess *p, VlDetection *dets, GError **error)
{
  const VlGeometry *g = vl_model_geometry (m);
  VlPreprocess pp;
  if (!vl_preprocess_dense (m, size, &pp, error))
    return -1;
  const int S = pp.size, G = S / g->patch, T = g->n_prefix + G * G;
  g_autofree float *x = g_new (float, (gsize) pp.channels * S * S);
  vl_preprocess_squash (img, &pp, x);
  if (!vl_model_forward (m, x, 1, S, S, VL_FORWARD_INFER, error))
    return -1;
  vl_det_head_forward (h, vl_model_tokens_final (m), 1, T, g->n_prefix, G, G, g->patch);
  int n = vl_det_head_detect (h, 0, S, S, p, dets), kept = 0;
  for (int i = 0; i < n; i++)   /* the background channel's boxes say nothing */
    if (dets[i].label != 0)
      dets[kept++] = dets[i];
  vl_detections_to_image (dets, kept, S, img->width, img->height);
  return kept;
}

VlDetHead *
vl_detect_load_run_head (const char *run_dir, VlModel *m, GError **error)
{
  g_autofree char *path = g_build_filename (run_dir, VL_RUN_DET_HEAD, NULL);
  return vl_det_head_load (path, vl_model_geometry (m)->width, error);
}

static double
label_overlap (double ax, double ay, double aw, double ah, double bx, double by, double bw,
               double bh)
{
  const double ow = MIN (ax + aw, bx + bw) - MAX (ax, bx);
  const double oh = MIN (ay + ah, by + bh) - MAX (ay, by);
  return ow > 0 && oh > 0 ? ow * oh : 0;
}

void
vl_det_place_labels (const double *boxes, const double *w, const double *h, int n, double width,
                     double top, double bottom, double *xy)
{
  for (int i = 0; i < n; i++)
    {
      const double *r = boxes + 4 * i;
      const double x = CLAMP (r[0], 0, MAX (width - w[i], 0));
      const double ys[4] = { r[1] - h[i], r[1], r[3], r[3] - h[i] };
      double best = INFINITY, best_y = CLAMP (r[1], top, MAX (bottom - h[i], top));
      for (int c = 0; c < 4; c++)
        {
          if (ys[c] < top || ys[c] + h[i] > bottom)
            continue;
          double covered = 0;
          for (int j = 0; j < i; j++)
            covered += label_overlap (x, ys[c], w[i], h[i], xy[2 * j], xy[2 * j + 1], w[j], h[j]);
          if (covered < best)
            {
              best = covered;
              best_y = ys[c];
            }
          if (covered == 0)
            break;
        }
      xy[2 * i] = x;
      xy[2 * i + 1] = best_y;
    }
}
