/* test-eta.c: the smoothed ETA of long passes (vl-eta.h). */
#include "vl-eta.h"

#include <math.h>

#define S 1000000   /* microseconds per second */

/* a steady rate: the ETA is the time left, exactly, from the second update on */
static void
test_eta_steady (void)
{
  VlEta e;
  vl_eta_start (&e, 1000, 5 * S);
  g_assert_true (isnan (vl_eta_update (&e, 0, 5 * S)));   /* no progress yet: unknown */
  for (int k = 1; k < 10; k++)
    {
      double eta = vl_eta_update (&e, 100 * k, 5 * S + k * S / 2);   /* 200 a second */
      g_assert_cmpfloat_with_epsilon (eta, (1000 - 100 * k) / 200.0, 1e-9);
    }
  g_assert_cmpfloat_with_epsilon (vl_eta_rate (&e), 200.0, 1e-9);
  g_assert_cmpfloat (vl_eta_update (&e, 1000, 10 * S), ==, 0.0);
}

/* one slow batch (a stall of 4 s among steps of 0.1 s) moves the ETA by a fraction of what the
 * raw estimate jumps, and the ETA returns to the true time left once the stall leaves the
 * window */
static void
test_eta_smooth (void)
{
  VlEta e;
  vl_eta_start (&e, 10000, 0);
  gint64 t = 0;
  int64_t done = 0;
  double eta = NAN;
  for (int k = 0; k < 20; k++)
    {
      t += S / 10, done += 10;               /* 100 a second */
      eta = vl_eta_update (&e, done, t);
    }
  g_assert_cmpfloat_with_epsilon (eta, (10000 - done) / 100.0, 1e-6);
  t += 4 * S, done += 10;                    /* the stall */
  double after = vl_eta_update (&e, done, t);
  /* the window's rate drops to 160 / 5.5 s = 29/s: a raw ETA of 338 s against 98 s before */
  const double raw = (10000 - done) / vl_eta_rate (&e);
  g_assert_cmpfloat (raw, >, 300.0);
  g_assert_cmpfloat (after, <, eta + 0.3 * (raw - eta));
  g_assert_cmpfloat (after, >, eta - 4.0);
  double prev = after;
  for (int k = 0; k < VL_ETA_WINDOW + 40; k++)
    {
      t += S / 10, done += 10;
      double now = vl_eta_update (&e, done, t);
      g_assert_cmpfloat (fabs (now - prev), <, 0.25 * raw);   /* never a jump */
      prev = now;
    }
  g_assert_cmpfloat_with_epsilon (prev, (10000 - done) / 100.0, 0.5);
}

/* vl_eta_start again restarts: the new phase's rate alone counts */
static void
test_eta_restart (void)
{
  VlEta e;
  vl_eta_start (&e, 100, 0);
  vl_eta_update (&e, 50, 1 * S);    /* 50 a second */
  vl_eta_start (&e, 1000, 2 * S);
  g_assert_true (isnan (vl_eta_update (&e, 0, 2 * S)));
  double eta = vl_eta_update (&e, 10, 3 * S);   /* 10 a second */
  g_assert_cmpfloat_with_epsilon (eta, 99.0, 1e-9);
  g_assert_cmpfloat_with_epsilon (vl_eta_rate (&e), 10.0, 1e-9);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/eta/steady", test_eta_steady);
  g_test_add_func ("/eta/smooth", test_eta_smooth);
  g_test_add_func ("/eta/restart", test_eta_restart);
  return g_test_run ();
}
