/* vl-test-window.h: what the window tests under Xvfb share: the application they open windows
 * in, waiting on the main loop for a condition, opening and closing a window.
 *
 *   int main (int argc, char **argv)
 *   {
 *     vl_test_window_init (&argc, &argv);
 *     g_test_add_func ("/ui/x/y", test_y);
 *     return vl_test_window_run ();
 *   }
 */
#pragma once

#include "vl-application.h"
#include "vl-window.h"
#include "vl-jobs.h"
#include "vl-backbone-panel.h"
#include "vl-data-panel.h"
#include "vl-groups-panel.h"
#include "vl-head-panel.h"
#include "vl-knn-panel.h"
#include "vl-training-panel.h"
#include "vl-attention-bar.h"
#include "vl-eval-card.h"
#include "vl-stat-cards.h"
#include "vl-status-bar.h"

typedef gboolean (*VlTestCondition) (VlWindow *win);

/* The application of the test process (after vl_test_window_init). */
extern VlApplication *vl_test_app;

/* GTK with the cairo renderer, no accessibility bus, settings in memory, data under a fresh
 * XDG_DATA_HOME, a private session bus, the application registered and held. */
void      vl_test_window_init     (int *argc, char ***argv);
/* g_test_run, then the application released and the bus stopped. */
int       vl_test_window_run      (void);
/* Iterates the main loop until cond holds; fails the test after timeout_s seconds. */
void      vl_test_wait_for        (VlWindow *win, VlTestCondition cond, double timeout_s,
                                   const char *what);
/* A presented window that asks no confirmations. */
VlWindow *vl_test_window_new      (void);
/* Destroys it and waits until it is finalized (every task it started has let go of it). */
void      vl_test_window_destroy  (VlWindow *win);
/* A widget the window's template binds, by its name in vl-window.ui ("banner", "main_stack",
 * "head_panel", ...): gtk_widget_get_template_child, failing the test when there is none. */
GtkWidget *vl_test_child          (VlWindow *win, const char *name);
/* The sidebar's panels (template children), and the data panel's k-NN panel. */
VlBackbonePanel *vl_test_backbone_panel (VlWindow *win);
VlGroupsPanel   *vl_test_groups_panel   (VlWindow *win);
VlHeadPanel     *vl_test_head_panel     (VlWindow *win);
VlDataPanel     *vl_test_data_panel     (VlWindow *win);
VlTrainingPanel *vl_test_training_panel (VlWindow *win);
/* The stat cards, the Evaluation page's side card, the Attention page's toolbar, the status
 * bar (widgets of their own in the window's template). */
VlStatCards     *vl_test_stat_cards     (VlWindow *win);
VlEvalCard      *vl_test_eval_card      (VlWindow *win);
VlAttentionBar  *vl_test_attention_bar  (VlWindow *win);
VlStatusBar     *vl_test_status_bar     (VlWindow *win);
VlKnnPanel      *vl_test_knn_panel      (VlWindow *win);
/* The window's probe file (vl_window_get_probe_state). */
VlWindowProbeState vl_test_probe_state (VlWindow *win);
/* The children of a widget. */
int       vl_test_n_children      (GtkWidget *widget);
/* Neither a backbone nor a dataset loading, nor the pretrained attention computing. */
gboolean  vl_test_window_loaded   (VlWindow *win);
/* The current run finished (its trainer is there, in the FINISHED state). */
gboolean  vl_test_window_finished (VlWindow *win);
/* The features panels (k-NN, embedding map, Try It) have nothing in flight. */
gboolean  vl_test_window_features_idle (VlWindow *win);
gboolean  vl_test_window_not_exporting (VlWindow *win);
/* Try It on the first validation image of the trained run's dataset, written as a PNG: one row,
 * no error, no class for the whole image; returns its summary (the panel's). */
const char *vl_test_window_try_scene (VlWindow *win);
/* The window's minimum size within 1366x768 on that main page with the head and data pages. */
void      vl_test_window_assert_fits (VlWindow *win, const char *page);
