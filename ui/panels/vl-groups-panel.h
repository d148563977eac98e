/* vl-groups-panel.h: the Layer groups sidebar page: how many of the last layer groups train
 * (N, a spin and a scale), a switch per group with its parameter count, learning-rate multiplier
 * and gradient-norm bar, the share of parameters that train, and the progressive schedule's
 * steps (its own template, vl-groups-panel.ui).
 *
 * It shows and edits the lock state of a model it borrows (vl_groups_panel_set_model: the owner
 * keeps it alive and sets NULL before freeing it; main thread only). A change the user makes
 * (a switch, N, the schedule) sets the model's lock and emits ::changed. While "running", the
 * switches and the schedule are insensitive and N stays live: its changes are not applied to the
 * model but emitted as ::unlock-live (the owner passes them to the trainer).
 *
 * Properties: "unlock" (N), "progressive", "custom" (read only: the switches are not the last
 * N), "running".
 */
#pragma once

#include <gtk/gtk.h>

#include "vl-model.h"

G_BEGIN_DECLS

#define VL_TYPE_GROUPS_PANEL (vl_groups_panel_get_type ())
G_DECLARE_FINAL_TYPE (VlGroupsPanel, vl_groups_panel, VL, GROUPS_PANEL, GtkBox)

GtkWidget  *vl_groups_panel_new             (void);
/* A row per group of m (NULL: none); the switches from its lock state. */
void        vl_groups_panel_set_model       (VlGroupsPanel *panel, VlModel *m);
/* The switches, N and the counts from the model's lock state (after the owner changed it). */
void        vl_groups_panel_sync            (VlGroupsPanel *panel);
/* N when the trainable groups are the last N, else -1 (no model: -1). */
int         vl_groups_panel_unlocked_suffix (VlGroupsPanel *panel);
/* "N", or "0:N,E:M,…" with progressive unfreezing; NULL when two steps share an epoch
 * (g_free). */
char       *vl_groups_panel_get_schedule    (VlGroupsPanel *panel);
/* N for epoch 0 (the model locked to it) and the rest as steps. */
gboolean    vl_groups_panel_set_schedule    (VlGroupsPanel *panel, const char *schedule,
                                             GError **error);
/* Each group's learning-rate multiplier with this layer decay (shown below 1). */
void        vl_groups_panel_set_layer_decay (VlGroupsPanel *panel, double decay);
/* During a run: what trains now, without touching the model (vl_groups_panel_sync restores). */
void        vl_groups_panel_show_live_lock  (VlGroupsPanel *panel, int unlocked);
/* Each group's gradient norm at the latest step, relative to the largest; hide: none shown. */
void        vl_groups_panel_set_grad_norms  (VlGroupsPanel *panel, const double *norms, int n);
void        vl_groups_panel_hide_grad_norms (VlGroupsPanel *panel);
/* The rows, as a person sees and uses them. */
int         vl_groups_panel_get_n_groups    (VlGroupsPanel *panel);
gboolean    vl_groups_panel_get_switch      (VlGroupsPanel *panel, int group);
void        vl_groups_panel_set_switch      (VlGroupsPanel *panel, int group, gboolean on);
gboolean    vl_groups_panel_switch_sensitive (VlGroupsPanel *panel, int group);
/* "lr ×0.5", or NULL while layer decay is off. */
const char *vl_groups_panel_get_lr_text     (VlGroupsPanel *panel, int group);
int         vl_groups_panel_get_n_steps     (VlGroupsPanel *panel);
/* As the "+" button: a step two epochs after the last, two groups more. */
void        vl_groups_panel_add_step        (VlGroupsPanel *panel);

G_END_DECLS
