/* vl-eta.h: the time left of a long pass (caching, validation, feature extraction, an export),
 * the same in the engine, the CLI and the app.
 *
 *   VlEta eta;
 *   vl_eta_start (&eta, n_images, g_get_monotonic_time ());
 *   for (...)                                    // after each batch:
 *     seconds = vl_eta_update (&eta, done, g_get_monotonic_time ());   // NAN until known
 *
 * The rate is measured over the last VL_ETA_WINDOW updates (not since the start, so a slow first
 * batch or a busy spell of the machine fades out), and the ETA shown moves smoothly: each update
 * counts the previous ETA down by the time that passed and moves it a quarter of the way towards
 * the new estimate, so that it does not jump from batch to batch. vl_eta_start again restarts it
 * for the next phase. */
#pragma once

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

#define VL_ETA_WINDOW 16

typedef struct {
  int64_t total;
  int     n, head;                   /* samples in the ring; the next slot */
  gint64  t[VL_ETA_WINDOW];          /* microseconds */
  int64_t done[VL_ETA_WINDOW];
  double  shown;                     /* the last ETA returned (NAN: none yet) */
  gint64  t_shown;
} VlEta;

/* Starts a phase of `total` units at now_us (microseconds, e.g. g_get_monotonic_time ()). */
void   vl_eta_start  (VlEta *e, int64_t total, gint64 now_us);
/* `done` of the total units are done at now_us: the seconds left, smoothed; 0 once done reaches
 * the total; NAN while no rate is known (before the second update, or nothing progressed). */
double vl_eta_update (VlEta *e, int64_t done, gint64 now_us);
/* The rate over the window, units per second (0 while unknown). */
double vl_eta_rate   (const VlEta *e);

G_END_DECLS
