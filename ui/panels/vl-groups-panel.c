/* vl-groups-panel.c: the Layer groups sidebar page (see vl-groups-panel.h). */
#include "vl-groups-panel.h"
#include "vl-format.h"
#include "vl-trainer.h"

#include <glib/gi18n.h>
#include <math.h>

/* One row of the group list. */
typedef struct {
  GtkWidget *row;
  GtkWidget *toggle;       /* GtkSwitch: trainable */
  GtkWidget *lr_label;     /* learning-rate multiplier with layer decay */
  GtkWidget *grad_bar;     /* GtkLevelBar: relative gradient norm during training */
  double    *grad_norm;    /* the latest step's norm, owned by grad_bar (its tooltip reads it) */
  GtkWidget *state_label;  /* "trains" / "frozen" */
} GroupRow;

struct _VlGroupsPanel {
  GtkBox     parent_instance;
  GtkWidget *unlock_spin, *unlock_scale, *unlock_of_label, *unlock_custom_label;
  GtkWidget *trainable_label, *trainable_bar, *groups_list;
  GtkWidget *progressive_switch, *schedule_box, *schedule_list, *schedule_add_button;
  GtkWidget *schedule_label;
  VlModel   *model;        /* borrowed */
  GPtrArray *rows;         /* GroupRow * */
  GPtrArray *steps;        /* GtkWidget * schedule rows; their spins as object data */
  gboolean   syncing;      /* set while the panel moves its own widgets */
  gboolean   running;
};

G_DEFINE_FINAL_TYPE (VlGroupsPanel, vl_groups_panel, GTK_TYPE_BOX)

enum { PROP_0, PROP_UNLOCK, PROP_PROGRESSIVE, PROP_CUSTOM, PROP_RUNNING, N_PROPS };
static GParamSpec *props[N_PROPS];
enum { SIGNAL_CHANGED, SIGNAL_UNLOCK_LIVE, N_SIGNALS };
static guint signals[N_SIGNALS];

static void update_schedule_label (VlGroupsPanel *self);

static GroupRow *
row_at (VlGroupsPanel *self, int g)
{
  return g >= 0 && g < (int) self->rows->len ? g_ptr_array_index (self->rows, g) : NULL;
}

static void
update_sensitivity (VlGroupsPanel *self)
{
  const gboolean editable = !self->running && self->model != NULL;
  gtk_widget_set_sensitive (self->progressive_switch, editable);
  gtk_widget_set_sensitive (self->schedule_box,
                            editable && gtk_switch_get_active (GTK_SWITCH (self->progressive_switch)));
  for (guint i = 0; i < self->rows->len; i++)
    gtk_widget_set_sensitive (((GroupRow *) g_ptr_array_index (self->rows, i))->toggle, editable);
  gtk_widget_set_sensitive (self->unlock_spin, self->model != NULL);   /* live during a run */
  gtk_widget_set_sensitive (self->unlock_scale, self->model != NULL);
}

/* ------------------------------------------------------------------ the groups */

int
vl_groups_panel_unlocked_suffix (VlGroupsPanel *panel)
{
  g_return_val_if_fail (VL_IS_GROUPS_PANEL (panel), -1);
  if (panel->model == NULL)
    return -1;
  int n = vl_model_n_groups (panel->model);
  int k = 0;
  while (k < n && vl_model_group_trainable (panel->model, n - 1 - k))
    k++;
  for (int g = 0; g < n - k; g++)
    if (vl_model_group_trainable (panel->model, g))
      return -1;
  return k;
}

static const char *
group_tooltip (const char *name)
{
  if (g_str_equal (name, "stem"))
    return _("Patch embedding, class token and position embedding: how pixels become tokens");
  if (g_str_equal (name, "head"))
    return _("The classifier: a new one is created for the dataset's classes");
  if (g_str_has_prefix (name, "norm") || g_str_has_prefix (name, "fc_norm") ||
      g_str_has_suffix (name, "ln_post"))
    return _("The final LayerNorm on the token stream");
  if (g_str_equal (name, "proj"))
    return _("OpenCLIP's projection into the joint image-text space");
  return _("A transformer block: self-attention and MLP, each with its LayerNorm");
}

void
vl_groups_panel_set_layer_decay (VlGroupsPanel *panel, double decay)
{
  g_return_if_fail (VL_IS_GROUPS_PANEL (panel));
  if (panel->model == NULL)
    return;
  int n = vl_model_n_groups (panel->model);
  g_autofree float *scales = g_new (float, n);
  vl_train_layer_scales (panel->model, decay, scales);
  for (int g = 0; g < n && g < (int) panel->rows->len; g++)
    {
      GroupRow *r = row_at (panel, g);
      g_autofree char *t = g_strdup_printf ("lr ×%.3g", scales[g]);
      gtk_label_set_text (GTK_LABEL (r->lr_label), t);
      gtk_widget_set_visible (r->lr_label, decay < 1.0);
    }
}

static void
changed (VlGroupsPanel *self)
{
  vl_groups_panel_sync (self);
  g_signal_emit (self, signals[SIGNAL_CHANGED], 0);
}

static void
on_group_toggled (GtkSwitch *sw, GParamSpec *pspec, VlGroupsPanel *self)
{
  if (self->syncing || self->model == NULL || self->running)
    return;
  int g = GPOINTER_TO_INT (g_object_get_data (G_OBJECT (sw), "group"));
  vl_model_set_group_trainable (self->model, g, gtk_switch_get_active (sw));
  changed (self);
}

static gboolean
grad_bar_tooltip (GtkWidget *bar, int x, int y, gboolean keyboard, GtkTooltip *tooltip,
                  gpointer unused)
{
  (void) x; (void) y; (void) keyboard; (void) unused;
  const double *norm = g_object_get_data (G_OBJECT (bar), "vl-grad-norm");
  g_autofree char *tip = g_strdup_printf (_("Gradient norm of this group at the latest step: "
                                            "%.4g (the bar: relative to the largest)"),
                                          norm ? *norm : 0.0);
  gtk_tooltip_set_text (tooltip, tip);
  return TRUE;
}

static GroupRow *
new_row (VlGroupsPanel *self, int g)
{
  GroupRow *r = g_new0 (GroupRow, 1);
  const char *name = vl_model_group_name (self->model, g);
  GtkWidget *box = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 10);
  gtk_widget_add_css_class (box, "vl-group-row");
  GtkWidget *text = gtk_box_new (GTK_ORIENTATION_VERTICAL, 2);
  gtk_widget_set_hexpand (text, TRUE);
  GtkWidget *name_label = gtk_label_new (name);
  gtk_label_set_xalign (GTK_LABEL (name_label), 0);
  gtk_widget_add_css_class (name_label, "vl-group-name");
  gtk_box_append (GTK_BOX (text), name_label);
  GtkWidget *meta = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 8);
  g_autofree char *count = vl_format_count (vl_model_group_n_params (self->model, g));
  g_autofree char *params = g_strdup_printf (_("%s params"), count);
  GtkWidget *params_label = gtk_label_new (params);
  gtk_widget_add_css_class (params_label, "dim-label");
  gtk_widget_add_css_class (params_label, "caption");
  gtk_box_append (GTK_BOX (meta), params_label);
  r->lr_label = gtk_label_new (NULL);
  gtk_widget_add_css_class (r->lr_label, "caption");
  gtk_widget_add_css_class (r->lr_label, "vl-lr");
  gtk_widget_set_tooltip_text (r->lr_label, _("Learning-rate multiplier of this group with "
                                              "layer decay (Training ▸ Layer decay)"));
  gtk_widget_set_visible (r->lr_label, FALSE);
  gtk_box_append (GTK_BOX (meta), r->lr_label);
  gtk_box_append (GTK_BOX (text), meta);
  gtk_box_append (GTK_BOX (box), text);

  r->grad_bar = gtk_level_bar_new_for_interval (0, 1);
  gtk_widget_set_size_request (r->grad_bar, 70, -1);
  gtk_widget_set_valign (r->grad_bar, GTK_ALIGN_CENTER);
  gtk_widget_set_visible (r->grad_bar, FALSE);
  /* the tooltip is written when it is shown: setting a tooltip's text at every step makes GTK
   * query and re-lay-out the tooltip under the pointer each time (a main thread at 100% while
   * training) */
  r->grad_norm = g_new0 (double, 1);
  g_object_set_data_full (G_OBJECT (r->grad_bar), "vl-grad-norm", r->grad_norm, g_free);
  gtk_widget_set_has_tooltip (r->grad_bar, TRUE);
  g_signal_connect (r->grad_bar, "query-tooltip", G_CALLBACK (grad_bar_tooltip), NULL);
  gtk_box_append (GTK_BOX (box), r->grad_bar);

  r->state_label = gtk_label_new (NULL);
  gtk_widget_add_css_class (r->state_label, "caption");
  gtk_widget_add_css_class (r->state_label, "vl-state");
  gtk_box_append (GTK_BOX (box), r->state_label);

  r->toggle = gtk_switch_new ();
  gtk_widget_set_valign (r->toggle, GTK_ALIGN_CENTER);
  g_autofree char *tip = g_strdup_printf (_("Train %s (on) or keep it frozen (off)"), name);
  gtk_widget_set_tooltip_text (r->toggle, tip);
  g_object_set_data (G_OBJECT (r->toggle), "group", GINT_TO_POINTER (g));
  g_signal_connect (r->toggle, "notify::active", G_CALLBACK (on_group_toggled), self);
  gtk_box_append (GTK_BOX (box), r->toggle);

  r->row = gtk_list_box_row_new ();
  gtk_list_box_row_set_activatable (GTK_LIST_BOX_ROW (r->row), FALSE);
  gtk_list_box_row_set_child (GTK_LIST_BOX_ROW (r->row), box);
  gtk_widget_set_tooltip_text (box, group_tooltip (name));
  return r;
}

void
vl_groups_panel_set_model (VlGroupsPanel *panel, VlModel *m)
{
  g_return_if_fail (VL_IS_GROUPS_PANEL (panel));
  panel->model = m;
  GtkWidget *child;
  while ((child = gtk_widget_get_first_child (panel->groups_list)))
    gtk_list_box_remove (GTK_LIST_BOX (panel->groups_list), child);
  g_ptr_array_set_size (panel->rows, 0);
  update_sensitivity (panel);
  if (m == NULL)
    return;
  int n = vl_model_n_groups (m);
  for (int g = 0; g < n; g++)
    {
      GroupRow *r = new_row (panel, g);
      gtk_list_box_append (GTK_LIST_BOX (panel->groups_list), r->row);
      g_ptr_array_add (panel->rows, r);
    }
  panel->syncing = TRUE;
  gtk_adjustment_set_upper (gtk_spin_button_get_adjustment (GTK_SPIN_BUTTON (panel->unlock_spin)),
                            n);
  panel->syncing = FALSE;
  g_autofree char *of = g_strdup_printf (_("of %d"), n);
  gtk_label_set_text (GTK_LABEL (panel->unlock_of_label), of);
  update_sensitivity (panel);
  vl_groups_panel_sync (panel);
}

static void
show_row_state (GroupRow *r, gboolean trainable)
{
  gtk_label_set_text (GTK_LABEL (r->state_label), trainable ? _("trains") : _("frozen"));
  gtk_widget_add_css_class (r->row, trainable ? "vl-unlocked" : "vl-frozen");
  gtk_widget_remove_css_class (r->row, trainable ? "vl-frozen" : "vl-unlocked");
}

static void
sync_trainable_summary (VlGroupsPanel *self)
{
  int64_t total = vl_model_n_params (self->model);
  int64_t trainable = vl_model_n_trainable (self->model);
  g_autofree char *a = vl_format_count (trainable);
  g_autofree char *b = vl_format_count (total);
  double pct = total ? 100.0 * trainable / total : 0.0;
  g_autofree char *t = g_strdup_printf (_("%s of %s parameters train (%.*f %%)"), a, b,
                                        pct > 0 && pct < 1 ? 2 : 1, pct);
  gtk_label_set_text (GTK_LABEL (self->trainable_label), t);
  gtk_level_bar_set_value (GTK_LEVEL_BAR (self->trainable_bar),
                           total ? (double) trainable / total : 0.0);
}

void
vl_groups_panel_sync (VlGroupsPanel *panel)
{
  g_return_if_fail (VL_IS_GROUPS_PANEL (panel));
  if (panel->model == NULL)
    return;
  gboolean was_custom = gtk_widget_get_visible (panel->unlock_custom_label);
  panel->syncing = TRUE;
  int n = vl_model_n_groups (panel->model);
  for (int g = 0; g < n && g < (int) panel->rows->len; g++)
    {
      GroupRow *r = row_at (panel, g);
      gboolean t = vl_model_group_trainable (panel->model, g);
      gtk_switch_set_active (GTK_SWITCH (r->toggle), t);
      show_row_state (r, t);
    }
  int k = vl_groups_panel_unlocked_suffix (panel);
  if (k >= 0)
    gtk_spin_button_set_value (GTK_SPIN_BUTTON (panel->unlock_spin), k);
  gtk_widget_set_visible (panel->unlock_custom_label, k < 0);
  panel->syncing = FALSE;
  sync_trainable_summary (panel);
  update_schedule_label (panel);
  if (was_custom != (k < 0))
    g_object_notify_by_pspec (G_OBJECT (panel), props[PROP_CUSTOM]);
}

void
vl_groups_panel_show_live_lock (VlGroupsPanel *panel, int unlocked)
{
  g_return_if_fail (VL_IS_GROUPS_PANEL (panel));
  int n = (int) panel->rows->len;
  panel->syncing = TRUE;
  for (int g = 0; g < n; g++)
    {
      GroupRow *r = row_at (panel, g);
      gboolean t = g >= n - unlocked;
      gtk_switch_set_active (GTK_SWITCH (r->toggle), t);
      show_row_state (r, t);
    }
  panel->syncing = FALSE;
}

void
vl_groups_panel_set_grad_norms (VlGroupsPanel *panel, const double *norms, int n)
{
  g_return_if_fail (VL_IS_GROUPS_PANEL (panel));
  double mx = 0;
  for (int g = 0; g < n; g++)
    if (isfinite (norms[g]))
      mx = MAX (mx, norms[g]);
  for (int g = 0; g < n && g < (int) panel->rows->len; g++)
    {
      GroupRow *r = row_at (panel, g);
      gboolean show = isfinite (norms[g]) && norms[g] > 0;
      gtk_widget_set_visible (r->grad_bar, show);
      gtk_level_bar_set_value (GTK_LEVEL_BAR (r->grad_bar),
                               mx > 0 && isfinite (norms[g]) ? norms[g] / mx : 0);
      *r->grad_norm = norms[g];
    }
}

void
vl_groups_panel_hide_grad_norms (VlGroupsPanel *panel)
{
  g_return_if_fail (VL_IS_GROUPS_PANEL (panel));
  for (guint g = 0; g < panel->rows->len; g++)
    gtk_widget_set_visible (row_at (panel, (int) g)->grad_bar, FALSE);
}

static void
on_unlock_changed (GtkSpinButton *spin, VlGroupsPanel *self)
{
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_UNLOCK]);
  if (self->syncing || self->model == NULL)
    return;
  int n = gtk_spin_button_get_value_as_int (spin);
  if (self->running)
    {
      /* applies from the next epoch; the owner tells the trainer */
      g_signal_emit (self, signals[SIGNAL_UNLOCK_LIVE], 0, n);
      return;
    }
  vl_model_lock (self->model, n);
  changed (self);
}

/* ------------------------------------------------------------------ the schedule */

static GtkWidget *
row_spin (GtkWidget *row, const char *which)
{
  return g_object_get_data (G_OBJECT (row), which);
}

static int
spin_int (GtkWidget *spin)
{
  return gtk_spin_button_get_value_as_int (GTK_SPIN_BUTTON (spin));
}

char *
vl_groups_panel_get_schedule (VlGroupsPanel *panel)
{
  g_return_val_if_fail (VL_IS_GROUPS_PANEL (panel), NULL);
  int n_groups = panel->model ? vl_model_n_groups (panel->model) : 0;
  int first = spin_int (panel->unlock_spin);
  GString *s = g_string_new (NULL);
#define APPEND_N(v) do { if (n_groups > 0 && (v) >= n_groups) g_string_append (s, "all"); \
                         else g_string_append_printf (s, "%d", (v)); } while (0)
  if (!gtk_switch_get_active (GTK_SWITCH (panel->progressive_switch)))
    {
      APPEND_N (first);
      return g_string_free (s, FALSE);
    }
  g_string_append (s, "0:");
  APPEND_N (first);
  /* the rows in epoch order */
  int n = (int) panel->steps->len;
  g_autofree int *epochs = g_new (int, MAX (n, 1));
  g_autofree int *counts = g_new (int, MAX (n, 1));
  for (int i = 0; i < n; i++)
    {
      GtkWidget *row = g_ptr_array_index (panel->steps, i);
      epochs[i] = spin_int (row_spin (row, "epoch")) - 1;
      counts[i] = spin_int (row_spin (row, "count"));
    }
  for (int i = 1; i < n; i++)
    for (int j = i; j > 0 && epochs[j - 1] > epochs[j]; j--)
      {
        int t = epochs[j]; epochs[j] = epochs[j - 1]; epochs[j - 1] = t;
        t = counts[j]; counts[j] = counts[j - 1]; counts[j - 1] = t;
      }
  for (int i = 0; i < n; i++)
    {
      g_string_append_printf (s, ",%d:", epochs[i]);
      APPEND_N (counts[i]);
    }
#undef APPEND_N
  int n_steps;
  g_autofree VlUnlockStep *steps = vl_unlock_schedule_parse (s->str, &n_steps, NULL);
  if (steps == NULL)
    {
      g_string_free (s, TRUE);
      return NULL;
    }
  return g_string_free (s, FALSE);
}

static void
update_schedule_label (VlGroupsPanel *self)
{
  g_autofree char *s = vl_groups_panel_get_schedule (self);
  if (s)
    {
      g_autofree char *t = g_strdup_printf ("--unlock-schedule %s", s);
      gtk_label_set_text (GTK_LABEL (self->schedule_label), t);
      gtk_widget_remove_css_class (self->schedule_label, "error");
    }
  else
    {
      gtk_label_set_text (GTK_LABEL (self->schedule_label), _("two steps share an epoch"));
      gtk_widget_add_css_class (self->schedule_label, "error");
    }
}

static void
on_schedule_changed (VlGroupsPanel *self)
{
  update_schedule_label (self);
  update_sensitivity (self);
  if (!self->syncing)
    g_signal_emit (self, signals[SIGNAL_CHANGED], 0);
}

static void remove_step (GtkButton *button, VlGroupsPanel *self);

/* A step row: "From epoch E unlock N groups" (E shown 1-based; the schedule is 0-based). */
static void
add_step_row (VlGroupsPanel *self, int epoch, int count)
{
  int n_groups = self->model ? vl_model_n_groups (self->model) : 100;
  /* two lines, so that the row fits the sidebar: "From epoch [E]" / "unlock [N] groups [-]" */
  GtkWidget *box = gtk_grid_new ();
  gtk_grid_set_column_spacing (GTK_GRID (box), 6);
  gtk_grid_set_row_spacing (GTK_GRID (box), 4);
  gtk_widget_add_css_class (box, "vl-schedule-row");
  GtkWidget *from = gtk_label_new (_("From epoch"));
  gtk_label_set_xalign (GTK_LABEL (from), 0);
  gtk_grid_attach (GTK_GRID (box), from, 0, 0, 1, 1);
  GtkWidget *e = gtk_spin_button_new_with_range (2, 10000, 1);
  gtk_spin_button_set_value (GTK_SPIN_BUTTON (e), epoch + 1);
  gtk_widget_set_tooltip_text (e, _("The epoch (counting from 1) at which this step starts"));
  gtk_grid_attach (GTK_GRID (box), e, 1, 0, 1, 1);
  GtkWidget *unlock = gtk_label_new (_("unlock"));
  gtk_label_set_xalign (GTK_LABEL (unlock), 0);
  gtk_grid_attach (GTK_GRID (box), unlock, 0, 1, 1, 1);
  GtkWidget *c = gtk_spin_button_new_with_range (0, n_groups, 1);
  gtk_spin_button_set_value (GTK_SPIN_BUTTON (c), count);
  gtk_widget_set_tooltip_text (c, _("How many of the last layer groups train from then on"));
  gtk_grid_attach (GTK_GRID (box), c, 1, 1, 1, 1);
  GtkWidget *groups = gtk_label_new (_("groups"));
  gtk_widget_set_hexpand (groups, TRUE);
  gtk_label_set_xalign (GTK_LABEL (groups), 0);
  gtk_grid_attach (GTK_GRID (box), groups, 2, 1, 1, 1);
  GtkWidget *rm = gtk_button_new_from_icon_name ("list-remove-symbolic");
  gtk_widget_add_css_class (rm, "flat");
  gtk_widget_set_valign (rm, GTK_ALIGN_CENTER);
  gtk_widget_set_tooltip_text (rm, _("Remove this step"));
  gtk_grid_attach (GTK_GRID (box), rm, 3, 0, 1, 2);

  GtkWidget *row = gtk_list_box_row_new ();
  gtk_list_box_row_set_activatable (GTK_LIST_BOX_ROW (row), FALSE);
  gtk_list_box_row_set_child (GTK_LIST_BOX_ROW (row), box);
  g_object_set_data (G_OBJECT (row), "epoch", e);
  g_object_set_data (G_OBJECT (row), "count", c);
  g_object_set_data (G_OBJECT (rm), "row", row);
  g_signal_connect (rm, "clicked", G_CALLBACK (remove_step), self);
  g_signal_connect_swapped (e, "value-changed", G_CALLBACK (on_schedule_changed), self);
  g_signal_connect_swapped (c, "value-changed", G_CALLBACK (on_schedule_changed), self);
  gtk_list_box_append (GTK_LIST_BOX (self->schedule_list), row);
  g_ptr_array_add (self->steps, row);
}

static void
remove_step (GtkButton *button, VlGroupsPanel *self)
{
  GtkWidget *row = g_object_get_data (G_OBJECT (button), "row");
  g_ptr_array_remove (self->steps, row);
  gtk_list_box_remove (GTK_LIST_BOX (self->schedule_list), row);
  on_schedule_changed (self);
}

static void
clear_steps (VlGroupsPanel *self)
{
  while (self->steps->len)
    {
      GtkWidget *row = g_ptr_array_index (self->steps, self->steps->len - 1);
      g_ptr_array_remove_index (self->steps, self->steps->len - 1);
      gtk_list_box_remove (GTK_LIST_BOX (self->schedule_list), row);
    }
}

void
vl_groups_panel_add_step (VlGroupsPanel *panel)
{
  g_return_if_fail (VL_IS_GROUPS_PANEL (panel));
  int last_epoch = 0, last_count = spin_int (panel->unlock_spin);
  for (guint i = 0; i < panel->steps->len; i++)
    {
      GtkWidget *row = g_ptr_array_index (panel->steps, i);
      int e = spin_int (row_spin (row, "epoch")) - 1;
      if (e >= last_epoch)
        {
          last_epoch = e;
          last_count = spin_int (row_spin (row, "count"));
        }
    }
  int n_groups = panel->model ? vl_model_n_groups (panel->model) : last_count + 2;
  add_step_row (panel, last_epoch + 2, MIN (last_count + 2, n_groups));
  on_schedule_changed (panel);
}

int
vl_groups_panel_get_n_steps (VlGroupsPanel *panel)
{
  g_return_val_if_fail (VL_IS_GROUPS_PANEL (panel), 0);
  return (int) panel->steps->len;
}

static void
on_progressive_toggled (GtkSwitch *sw, GParamSpec *pspec, VlGroupsPanel *self)
{
  if (gtk_switch_get_active (sw) && self->steps->len == 0 && !self->syncing)
    vl_groups_panel_add_step (self);
  on_schedule_changed (self);
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_PROGRESSIVE]);
}

gboolean
vl_groups_panel_set_schedule (VlGroupsPanel *panel, const char *schedule, GError **error)
{
  g_return_val_if_fail (VL_IS_GROUPS_PANEL (panel), FALSE);
  g_return_val_if_fail (panel->model != NULL, FALSE);
  int n_steps = 0;
  g_autofree VlUnlockStep *steps = vl_unlock_schedule_parse (schedule, &n_steps, error);
  if (steps == NULL)
    return FALSE;
  if (n_steps == 0)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "empty");
      return FALSE;
    }
  int n_groups = vl_model_n_groups (panel->model);
  gboolean was = panel->syncing;
  panel->syncing = TRUE;
  clear_steps (panel);
  for (int i = 1; i < n_steps; i++)
    add_step_row (panel, steps[i].epoch, MIN (steps[i].unlocked, n_groups));
  gtk_switch_set_active (GTK_SWITCH (panel->progressive_switch), n_steps > 1);
  panel->syncing = was;
  vl_model_lock (panel->model, MIN (steps[0].unlocked, n_groups));
  update_sensitivity (panel);
  vl_groups_panel_sync (panel);
  return TRUE;
}

/* ------------------------------------------------------------------ the rows from outside */

int
vl_groups_panel_get_n_groups (VlGroupsPanel *panel)
{
  g_return_val_if_fail (VL_IS_GROUPS_PANEL (panel), 0);
  return (int) panel->rows->len;
}

gboolean
vl_groups_panel_get_switch (VlGroupsPanel *panel, int group)
{
  g_return_val_if_fail (VL_IS_GROUPS_PANEL (panel), FALSE);
  GroupRow *r = row_at (panel, group);
  return r && gtk_switch_get_active (GTK_SWITCH (r->toggle));
}

void
vl_groups_panel_set_switch (VlGroupsPanel *panel, int group, gboolean on)
{
  g_return_if_fail (VL_IS_GROUPS_PANEL (panel));
  GroupRow *r = row_at (panel, group);
  g_return_if_fail (r != NULL);
  gtk_switch_set_active (GTK_SWITCH (r->toggle), on);
}

gboolean
vl_groups_panel_switch_sensitive (VlGroupsPanel *panel, int group)
{
  g_return_val_if_fail (VL_IS_GROUPS_PANEL (panel), FALSE);
  GroupRow *r = row_at (panel, group);
  return r && gtk_widget_get_sensitive (r->toggle);
}

const char *
vl_groups_panel_get_lr_text (VlGroupsPanel *panel, int group)
{
  g_return_val_if_fail (VL_IS_GROUPS_PANEL (panel), NULL);
  GroupRow *r = row_at (panel, group);
  return r && gtk_widget_get_visible (r->lr_label) ? gtk_label_get_text (GTK_LABEL (r->lr_label))
                                                   : NULL;
}

/* ------------------------------------------------------------------ GObject */

static void
vl_groups_panel_get_property (GObject *object, guint id, GValue *v, GParamSpec *pspec)
{
  VlGroupsPanel *self = VL_GROUPS_PANEL (object);
  switch (id)
    {
    case PROP_UNLOCK:
      g_value_set_int (v, spin_int (self->unlock_spin));
      break;
    case PROP_PROGRESSIVE:
      g_value_set_boolean (v, gtk_switch_get_active (GTK_SWITCH (self->progressive_switch)));
      break;
    case PROP_CUSTOM:
      g_value_set_boolean (v, gtk_widget_get_visible (self->unlock_custom_label));
      break;
    case PROP_RUNNING:
      g_value_set_boolean (v, self->running);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, id, pspec);
    }
}

static void
vl_groups_panel_set_property (GObject *object, guint id, const GValue *v, GParamSpec *pspec)
{
  VlGroupsPanel *self = VL_GROUPS_PANEL (object);
  switch (id)
    {
    case PROP_UNLOCK:
      gtk_spin_button_set_value (GTK_SPIN_BUTTON (self->unlock_spin), g_value_get_int (v));
      break;
    case PROP_PROGRESSIVE:
      gtk_switch_set_active (GTK_SWITCH (self->progressive_switch), g_value_get_boolean (v));
      break;
    case PROP_RUNNING:
      if (self->running != g_value_get_boolean (v))
        {
          self->running = g_value_get_boolean (v);
          update_sensitivity (self);
          g_object_notify_by_pspec (object, pspec);
        }
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, id, pspec);
    }
}

static void
vl_groups_panel_dispose (GObject *object)
{
  VlGroupsPanel *self = VL_GROUPS_PANEL (object);
  self->model = NULL;
  gtk_widget_dispose_template (GTK_WIDGET (object), VL_TYPE_GROUPS_PANEL);
  G_OBJECT_CLASS (vl_groups_panel_parent_class)->dispose (object);
}

static void
vl_groups_panel_finalize (GObject *object)
{
  VlGroupsPanel *self = VL_GROUPS_PANEL (object);
  g_ptr_array_unref (self->rows);
  g_ptr_array_unref (self->steps);
  G_OBJECT_CLASS (vl_groups_panel_parent_class)->finalize (object);
}

static void
vl_groups_panel_class_init (VlGroupsPanelClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);
  object_class->get_property = vl_groups_panel_get_property;
  object_class->set_property = vl_groups_panel_set_property;
  object_class->dispose = vl_groups_panel_dispose;
  object_class->finalize = vl_groups_panel_finalize;
  const GParamFlags rw = G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS;
  props[PROP_UNLOCK] = g_param_spec_int ("unlock", NULL, NULL, 0, G_MAXINT, 1, rw);
  props[PROP_PROGRESSIVE] = g_param_spec_boolean ("progressive", NULL, NULL, FALSE, rw);
  props[PROP_CUSTOM] = g_param_spec_boolean ("custom", NULL, NULL, FALSE,
                                             G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  props[PROP_RUNNING] = g_param_spec_boolean ("running", NULL, NULL, FALSE, rw);
  g_object_class_install_properties (object_class, N_PROPS, props);
  signals[SIGNAL_CHANGED] =
    g_signal_new ("changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                  G_TYPE_NONE, 0);
  signals[SIGNAL_UNLOCK_LIVE] =
    g_signal_new ("unlock-live", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                  NULL, G_TYPE_NONE, 1, G_TYPE_INT);
  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/org/vitlab/Vitlab/vl-groups-panel.ui");
#define CHILD(name) gtk_widget_class_bind_template_child (widget_class, VlGroupsPanel, name)
  CHILD (unlock_spin);
  CHILD (unlock_scale);
  CHILD (unlock_of_label);
  CHILD (unlock_custom_label);
  CHILD (trainable_label);
  CHILD (trainable_bar);
  CHILD (groups_list);
  CHILD (progressive_switch);
  CHILD (schedule_box);
  CHILD (schedule_list);
  CHILD (schedule_add_button);
  CHILD (schedule_label);
#undef CHILD
}

static void
vl_groups_panel_init (VlGroupsPanel *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
  self->rows = g_ptr_array_new_with_free_func (g_free);
  self->steps = g_ptr_array_new ();
  gtk_range_set_adjustment (GTK_RANGE (self->unlock_scale),
                            gtk_spin_button_get_adjustment (GTK_SPIN_BUTTON (self->unlock_spin)));
  g_signal_connect (self->unlock_spin, "value-changed", G_CALLBACK (on_unlock_changed), self);
  g_signal_connect (self->progressive_switch, "notify::active",
                    G_CALLBACK (on_progressive_toggled), self);
  g_signal_connect_swapped (self->schedule_add_button, "clicked",
                            G_CALLBACK (vl_groups_panel_add_step), self);
  update_schedule_label (self);
  update_sensitivity (self);
}

GtkWidget *
vl_groups_panel_new (void)
{
  return g_object_new (VL_TYPE_GROUPS_PANEL, NULL);
}
