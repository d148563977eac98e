/* vl-test-whitebox.c: the window tests' white-box calls (see vl-test-whitebox.h). */
#include "vl-test-whitebox.h"
#include "vl-window-private.h"

void
vl_test_whitebox_features_inputs_changed (VlWindow *win)
{
  vl_window_features_inputs_changed (win);
}
