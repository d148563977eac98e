/* vl-training-panel.c: the Training sidebar page (see vl-training-panel.h). */
#include "vl-training-panel.h"

#include <glib/gi18n.h>

struct _VlTrainingPanel {
  GtkBox     parent_instance;
  GtkWidget *preset_dropdown, *hyper_grid, *run_dir_label;
  GtkWidget *epochs_spin, *batch_spin, *lr_spin, *wd_spin, *warmup_spin, *layer_decay_spin;
  GtkWidget *smoothing_spin, *seed_spin;
  gboolean   syncing;   /* set while the panel moves its own widgets (no signals) */
};

G_DEFINE_FINAL_TYPE (VlTrainingPanel, vl_training_panel, GTK_TYPE_BOX)

enum {
  PROP_0, PROP_PRESET, PROP_EPOCHS, PROP_BATCH_SIZE, PROP_LR, PROP_WEIGHT_DECAY,
  PROP_WARMUP_EPOCHS, PROP_LAYER_DECAY, PROP_LABEL_SMOOTHING, PROP_SEED, PROP_EDITABLE, N_PROPS
};
static GParamSpec *props[N_PROPS];
enum { SIGNAL_HYPER_EDITED, SIGNAL_PRESET_CHOSEN, N_SIGNALS };
static guint signals[N_SIGNALS];

/* The spin of each numeric property (PROP_EPOCHS .. PROP_SEED). */
static GtkWidget *
spin_of (VlTrainingPanel *self, guint prop)
{
  switch (prop)
    {
    case PROP_EPOCHS:          return self->epochs_spin;
    case PROP_BATCH_SIZE:      return self->batch_spin;
    case PROP_LR:              return self->lr_spin;
    case PROP_WEIGHT_DECAY:    return self->wd_spin;
    case PROP_WARMUP_EPOCHS:   return self->warmup_spin;
    case PROP_LAYER_DECAY:     return self->layer_decay_spin;
    case PROP_LABEL_SMOOTHING: return self->smoothing_spin;
    case PROP_SEED:            return self->seed_spin;
    default:                   return NULL;
    }
}

static double
value (VlTrainingPanel *self, guint prop)
{
  return gtk_spin_button_get_value (GTK_SPIN_BUTTON (spin_of (self, prop)));
}

static void
set_value_quietly (VlTrainingPanel *self, guint prop, double v)
{
  gboolean was = self->syncing;
  self->syncing = TRUE;
  gtk_spin_button_set_value (GTK_SPIN_BUTTON (spin_of (self, prop)), v);
  self->syncing = was;
}

/* ------------------------------------------------------------------ changes */

static void
on_spin_changed (GtkSpinButton *spin, VlTrainingPanel *self)
{
  guint prop = GPOINTER_TO_UINT (g_object_get_data (G_OBJECT (spin), "prop"));
  g_object_notify_by_pspec (G_OBJECT (self), props[prop]);
  if (self->syncing)
    return;
  vl_training_panel_set_custom (self);
  g_signal_emit (self, signals[SIGNAL_HYPER_EDITED], 0);
}

static void
on_preset_selected (VlTrainingPanel *self)
{
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_PRESET]);
  guint p = gtk_drop_down_get_selected (GTK_DROP_DOWN (self->preset_dropdown));
  if (!self->syncing && p < VL_PRESET_CUSTOM)
    g_signal_emit (self, signals[SIGNAL_PRESET_CHOSEN], 0, (int) p);
}

void
vl_training_panel_set_custom (VlTrainingPanel *panel)
{
  g_return_if_fail (VL_IS_TRAINING_PANEL (panel));
  gboolean was = panel->syncing;
  panel->syncing = TRUE;
  gtk_drop_down_set_selected (GTK_DROP_DOWN (panel->preset_dropdown), VL_PRESET_CUSTOM);
  panel->syncing = was;
}

VlRecipePreset
vl_training_panel_get_preset (VlTrainingPanel *panel)
{
  g_return_val_if_fail (VL_IS_TRAINING_PANEL (panel), VL_PRESET_CUSTOM);
  guint p = gtk_drop_down_get_selected (GTK_DROP_DOWN (panel->preset_dropdown));
  return p < VL_PRESET_CUSTOM ? (VlRecipePreset) p : VL_PRESET_CUSTOM;
}

void
vl_training_panel_apply_preset (VlTrainingPanel *panel, VlRecipePreset preset)
{
  g_return_if_fail (VL_IS_TRAINING_PANEL (panel));
  /* lr, weight decay, warmup, layer decay, label smoothing */
  static const double recipe[VL_PRESET_CUSTOM][5] = {
    [VL_PRESET_LINEAR_PROBE] = { 1e-3, 0.05, 1, 1.0, 0.0 },
    [VL_PRESET_LAST_BLOCKS]  = { 1e-4, 0.05, 1, 1.0, 0.1 },
    [VL_PRESET_FULL]         = { 1e-4, 0.05, 1, 0.75, 0.1 },
    [VL_PRESET_PROGRESSIVE]  = { 1e-3, 0.05, 1, 1.0, 0.1 },
  };
  static const guint order[5] = { PROP_LR, PROP_WEIGHT_DECAY, PROP_WARMUP_EPOCHS,
                                  PROP_LAYER_DECAY, PROP_LABEL_SMOOTHING };
  gboolean was = panel->syncing;
  panel->syncing = TRUE;
  if (preset < VL_PRESET_CUSTOM)
    for (int i = 0; i < 5; i++)
      gtk_spin_button_set_value (GTK_SPIN_BUTTON (spin_of (panel, order[i])), recipe[preset][i]);
  gtk_drop_down_set_selected (GTK_DROP_DOWN (panel->preset_dropdown), preset);
  panel->syncing = was;
}

/* ------------------------------------------------------------------ the configuration */

void
vl_training_panel_to_config (VlTrainingPanel *panel, VlTrainConfig *cfg)
{
  g_return_if_fail (VL_IS_TRAINING_PANEL (panel));
  cfg->epochs = (int) value (panel, PROP_EPOCHS);
  cfg->batch_size = (int) value (panel, PROP_BATCH_SIZE);
  cfg->lr = value (panel, PROP_LR);
  cfg->weight_decay = value (panel, PROP_WEIGHT_DECAY);
  cfg->warmup_epochs = value (panel, PROP_WARMUP_EPOCHS);
  cfg->layer_decay = value (panel, PROP_LAYER_DECAY);
  cfg->label_smoothing = value (panel, PROP_LABEL_SMOOTHING);
  cfg->seed = (uint64_t) value (panel, PROP_SEED);
}

void
vl_training_panel_from_config (VlTrainingPanel *panel, const VlTrainConfig *cfg)
{
  g_return_if_fail (VL_IS_TRAINING_PANEL (panel));
  set_value_quietly (panel, PROP_EPOCHS, cfg->epochs);
  set_value_quietly (panel, PROP_BATCH_SIZE, cfg->batch_size);
  set_value_quietly (panel, PROP_LR, cfg->lr);
  set_value_quietly (panel, PROP_WEIGHT_DECAY, cfg->weight_decay);
  set_value_quietly (panel, PROP_WARMUP_EPOCHS, cfg->warmup_epochs);
  set_value_quietly (panel, PROP_LAYER_DECAY, cfg->layer_decay);
  set_value_quietly (panel, PROP_LABEL_SMOOTHING, cfg->label_smoothing);
  set_value_quietly (panel, PROP_SEED, (double) cfg->seed);
  vl_training_panel_set_custom (panel);
}

void
vl_training_panel_set_run_dir (VlTrainingPanel *panel, const char *text, const char *tooltip)
{
  g_return_if_fail (VL_IS_TRAINING_PANEL (panel));
  gtk_label_set_text (GTK_LABEL (panel->run_dir_label), text ? text : "");
  gtk_widget_set_tooltip_text (panel->run_dir_label, tooltip);
}

int
vl_training_panel_get_epochs (VlTrainingPanel *panel)
{
  g_return_val_if_fail (VL_IS_TRAINING_PANEL (panel), 0);
  return (int) value (panel, PROP_EPOCHS);
}

double
vl_training_panel_get_layer_decay (VlTrainingPanel *panel)
{
  g_return_val_if_fail (VL_IS_TRAINING_PANEL (panel), 1.0);
  return value (panel, PROP_LAYER_DECAY);
}

uint64_t
vl_training_panel_get_seed (VlTrainingPanel *panel)
{
  g_return_val_if_fail (VL_IS_TRAINING_PANEL (panel), 0);
  return (uint64_t) value (panel, PROP_SEED);
}

/* ------------------------------------------------------------------ GObject */

static void
vl_training_panel_get_property (GObject *object, guint id, GValue *v, GParamSpec *pspec)
{
  VlTrainingPanel *self = VL_TRAINING_PANEL (object);
  switch (id)
    {
    case PROP_PRESET:
      g_value_set_int (v, (int) vl_training_panel_get_preset (self));
      break;
    case PROP_EPOCHS:
    case PROP_BATCH_SIZE:
    case PROP_SEED:
      g_value_set_int (v, (int) value (self, id));
      break;
    case PROP_LR:
    case PROP_WEIGHT_DECAY:
    case PROP_WARMUP_EPOCHS:
    case PROP_LAYER_DECAY:
    case PROP_LABEL_SMOOTHING:
      g_value_set_double (v, value (self, id));
      break;
    case PROP_EDITABLE:
      g_value_set_boolean (v, gtk_widget_get_sensitive (self->hyper_grid));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, id, pspec);
    }
}

static void
vl_training_panel_set_property (GObject *object, guint id, const GValue *v, GParamSpec *pspec)
{
  VlTrainingPanel *self = VL_TRAINING_PANEL (object);
  switch (id)
    {
    case PROP_PRESET:
      /* as a click in the dropdown: ::preset-chosen */
      gtk_drop_down_set_selected (GTK_DROP_DOWN (self->preset_dropdown),
                                  (guint) CLAMP (g_value_get_int (v), 0, VL_PRESET_CUSTOM));
      break;
    case PROP_EPOCHS:
    case PROP_BATCH_SIZE:
    case PROP_SEED:
      gtk_spin_button_set_value (GTK_SPIN_BUTTON (spin_of (self, id)), g_value_get_int (v));
      break;
    case PROP_LR:
    case PROP_WEIGHT_DECAY:
    case PROP_WARMUP_EPOCHS:
    case PROP_LAYER_DECAY:
    case PROP_LABEL_SMOOTHING:
      gtk_spin_button_set_value (GTK_SPIN_BUTTON (spin_of (self, id)), g_value_get_double (v));
      break;
    case PROP_EDITABLE:
      gtk_widget_set_sensitive (self->hyper_grid, g_value_get_boolean (v));
      gtk_widget_set_sensitive (self->preset_dropdown, g_value_get_boolean (v));
      g_object_notify_by_pspec (object, pspec);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, id, pspec);
    }
}

static void
vl_training_panel_dispose (GObject *object)
{
  gtk_widget_dispose_template (GTK_WIDGET (object), VL_TYPE_TRAINING_PANEL);
  G_OBJECT_CLASS (vl_training_panel_parent_class)->dispose (object);
}

static GParamSpec *
double_prop (const char *name, double lo, double hi, double def)
{
  return g_param_spec_double (name, NULL, NULL, lo, hi, def,
                              G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
}

static GParamSpec *
int_prop (const char *name, int lo, int hi, int def)
{
  return g_param_spec_int (name, NULL, NULL, lo, hi, def,
                           G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
}

static void
vl_training_panel_class_init (VlTrainingPanelClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);
  object_class->get_property = vl_training_panel_get_property;
  object_class->set_property = vl_training_panel_set_property;
  object_class->dispose = vl_training_panel_dispose;
  /* the ranges are the spins' (vl-training-panel.ui) */
  props[PROP_PRESET] = int_prop ("preset", 0, VL_PRESET_CUSTOM, VL_PRESET_LINEAR_PROBE);
  props[PROP_EPOCHS] = int_prop ("epochs", 1, 1000, 10);
  props[PROP_BATCH_SIZE] = int_prop ("batch-size", 1, 1024, 32);
  props[PROP_LR] = double_prop ("lr", 1e-5, 1, 1e-3);
  props[PROP_WEIGHT_DECAY] = double_prop ("weight-decay", 0, 1, 0.05);
  props[PROP_WARMUP_EPOCHS] = double_prop ("warmup-epochs", 0, 100, 1);
  props[PROP_LAYER_DECAY] = double_prop ("layer-decay", 0.05, 1, 1);
  props[PROP_LABEL_SMOOTHING] = double_prop ("label-smoothing", 0, 0.5, 0);
  props[PROP_SEED] = int_prop ("seed", 0, G_MAXINT, 0);
  props[PROP_EDITABLE] =
    g_param_spec_boolean ("editable", NULL, NULL, TRUE,
                          G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, props);
  signals[SIGNAL_HYPER_EDITED] =
    g_signal_new ("hyper-edited", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                  NULL, G_TYPE_NONE, 0);
  signals[SIGNAL_PRESET_CHOSEN] =
    g_signal_new ("preset-chosen", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                  NULL, G_TYPE_NONE, 1, G_TYPE_INT);
  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/org/vitlab/Vitlab/vl-training-panel.ui");
#define CHILD(name) gtk_widget_class_bind_template_child (widget_class, VlTrainingPanel, name)
  CHILD (preset_dropdown);
  CHILD (hyper_grid);
  CHILD (run_dir_label);
  CHILD (epochs_spin);
  CHILD (batch_spin);
  CHILD (lr_spin);
  CHILD (wd_spin);
  CHILD (warmup_spin);
  CHILD (layer_decay_spin);
  CHILD (smoothing_spin);
  CHILD (seed_spin);
#undef CHILD
}

static void
vl_training_panel_init (VlTrainingPanel *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
  for (guint p = PROP_EPOCHS; p <= PROP_SEED; p++)
    {
      GtkWidget *spin = spin_of (self, p);
      g_object_set_data (G_OBJECT (spin), "prop", GUINT_TO_POINTER (p));
      g_signal_connect (spin, "value-changed", G_CALLBACK (on_spin_changed), self);
    }
  g_signal_connect_swapped (self->preset_dropdown, "notify::selected",
                            G_CALLBACK (on_preset_selected), self);
  vl_training_panel_set_run_dir (self, _("A new folder under ~/.local/share/vitlab/runs for "
                                         "each run"), NULL);
}

GtkWidget *
vl_training_panel_new (void)
{
  return g_object_new (VL_TYPE_TRAINING_PANEL, NULL);
}
