/* vl-train-probes.h: the images a training run watches while it trains — the first validation
 * images, one class after another, and the caller's own image — and what a PROBES event shows
 * of them: every block's attention, its rollout over the patch grid and the model's top class.
 * The worker (vl-trainer.c) owns a VlProbeSet and hands it the model; this module never sees
 * the worker's Run. Engine-internal.
 *
 *   VlProbeSet ps = { 0 };
 *   vl_probe_set_choose (&ps, ds, &pp, 4, n_classes);
 *   vl_probe_set_take_user (&ps, px, 3, 224, 224, patch, serial, &error);  // optional
 *   VlTrainEvent *ev = …PROBES…;
 *   vl_probe_set_run (&ps, model, n_classes, ev, &error);
 *   vl_probe_set_clear (&ps);
 */
#pragma once

#include <glib.h>

#include "vl-dataset.h"
#include "vl-image.h"
#include "vl-model.h"
#include "vl-trainer.h"

G_BEGIN_DECLS

typedef struct {
  int      channels, size;   /* the input: (channels, size, size) per image */
  int      n;                /* validation probes */
  float   *px;               /* (n + 1, channels, size, size): room for the user's image */
  int     *labels;           /* (n) */
  char   **names;            /* (n) file names in the validation split */
  /* the caller's own image */
  float   *user_px;          /* (user_c, user_h, user_w); NULL: none */
  int      user_c, user_h, user_w;
  guint64  user_probe;       /* its serial (0: none) */
} VlProbeSet;

/* Up to n_probes validation images of ds, preprocessed by pp: the first of each of the
 * n_classes classes, then the second of each, …; images that fail to decode are left out. */
void      vl_probe_set_choose    (VlProbeSet *ps, VlDataset *ds, const VlPreprocess *pp,
                                  int n_probes, int n_classes);

/* Takes the caller's image px (c, h, w; owned by the set from now on) with serial; NULL px
 * removes it. An image the model cannot take (other channels than the set's, a side that is not
 * a multiple of patch) is refused: FALSE with the reason in error, px freed, the previous image
 * kept. */
gboolean  vl_probe_set_take_user (VlProbeSet *ps, float *px, int c, int h, int w, int patch,
                                  guint64 serial, GError **error);

/* TRUE when there is anything to show. */
gboolean  vl_probe_set_any       (const VlProbeSet *ps);

/* The probes through m as it is now, with every block's attention kept, into ev's probe fields
 * (n_probes, rollout, labels, predicted classes among n_classes (0 without image-level logits),
 * names; the user's image's attention, rollout and class). The user's image rides in the
 * validation probes' batch when it has their size. FALSE (error set) when a forward fails; ev
 * then holds what was done before (the validation probes' part when only the user's image
 * failed), and *any_done says whether that is worth posting. */
gboolean  vl_probe_set_run       (VlProbeSet *ps, VlModel *m, int n_classes, VlTrainEvent *ev,
                                  gboolean *any_done, GError **error);

void      vl_probe_set_clear     (VlProbeSet *ps);

G_END_DECLS
