/* vl-test-whitebox.h: the one place where a window test reaches the window's internals
 * (ui/window/vl-window-private.h), for what no action, signal or property of the window does:
 * each function says why. Every other test goes through vl-window.h and the template's widgets. */
#pragma once

#include "vl-window.h"

/* The window's glue between its inputs (backbone, dataset, the head's pooling) and the k-NN
 * probe, called again with the inputs unchanged: it must start nothing. No public event calls it
 * without changing an input (a new backbone, dataset or head all change one). */
void vl_test_whitebox_features_inputs_changed (VlWindow *win);
