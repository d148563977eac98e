/* vl-eta.c: a smoothed ETA over the last updates (vl-eta.h). */
#include "vl-eta.h"

#include <math.h>

void
vl_eta_start (VlEta *e, int64_t total, gint64 now_us)
{
  *e = (VlEta) { .total = total, .shown = NAN };
  e->t[0] = now_us;
  e->done[0] = 0;
  e->n = 1;
  e->head = 1;
}

double
vl_eta_rate (const VlEta *e)
{
  if (e->n < 2)
    return 0.0;
  const int newest = (e->head + VL_ETA_WINDOW - 1) % VL_ETA_WINDOW;
  const int oldest = e->n < VL_ETA_WINDOW ? 0 : e->head;
  const double dt = (e->t[newest] - e->t[oldest]) / 1e6;
  const double dd = (double) (e->done[newest] - e->done[oldest]);
  return dt > 0 && dd > 0 ? dd / dt : 0.0;
}

double
vl_eta_update (VlEta *e, int64_t done, gint64 now_us)
{
  e->t[e->head] = now_us;
  e->done[e->head] = done;
  e->head = (e->head + 1) % VL_ETA_WINDOW;
  e->n = MIN (e->n + 1, VL_ETA_WINDOW);
  if (done >= e->total)
    {
      e->shown = 0.0;
      e->t_shown = now_us;
      return 0.0;
    }
  const double rate = vl_eta_rate (e);
  if (rate <= 0)
    return e->shown;
  const double raw = (double) (e->total - done) / rate;
  if (isnan (e->shown))
    e->shown = raw;
  else
    {
      const double counted = e->shown - (now_us - e->t_shown) / 1e6;
      e->shown = MAX (0.0, counted + 0.25 * (raw - counted));
    }
  e->t_shown = now_us;
  return e->shown;
}
