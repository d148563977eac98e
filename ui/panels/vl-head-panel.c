/* vl-head-panel.c: the Head sidebar page (see vl-head-panel.h). */
#include "vl-head-panel.h"

#include <glib/gi18n.h>

struct _VlHeadPanel {
  GtkBox     parent_instance;
  GtkWidget *task_dropdown, *reg_loss_box, *reg_loss_dropdown, *head_title_label;
  GtkWidget *seg_head_box, *seg_head_row, *seg_head_dropdown, *seg_size_spin;
  GtkWidget *cls_head_card, *mlp_hidden_box, *mlp_hidden_spin, *head_note_label;
};

G_DEFINE_FINAL_TYPE (VlHeadPanel, vl_head_panel, GTK_TYPE_BOX)

enum {
  PROP_0, PROP_TASK, PROP_REG_LOSS, PROP_SEG_HEAD, PROP_INPUT_SIZE, PROP_MLP_HIDDEN,
  PROP_MLP_EDITABLE, PROP_SETTINGS, N_PROPS
};
static GParamSpec *props[N_PROPS];

/* The task dropdown's order. */
static const VlTaskKind dropdown_tasks[] = { VL_TASK_CLASSIFY, VL_TASK_REGRESS, VL_TASK_SEGMENT,
                                             VL_TASK_DETECT };

VlTaskKind
vl_head_panel_get_task (VlHeadPanel *panel)
{
  g_return_val_if_fail (VL_IS_HEAD_PANEL (panel), VL_TASK_CLASSIFY);
  guint i = gtk_drop_down_get_selected (GTK_DROP_DOWN (panel->task_dropdown));
  return i < G_N_ELEMENTS (dropdown_tasks) ? dropdown_tasks[i] : VL_TASK_CLASSIFY;
}

/* What shows for the task: the classifier's settings, the loss, the seg head, the input size. */
static void
show_task (VlHeadPanel *self)
{
  const VlTaskKind task = vl_head_panel_get_task (self);
  const gboolean reg = task == VL_TASK_REGRESS, seg = task == VL_TASK_SEGMENT,
                 det = task == VL_TASK_DETECT;
  gtk_widget_set_visible (self->reg_loss_box, reg);
  gtk_widget_set_visible (self->cls_head_card, !seg && !det);
  gtk_widget_set_visible (self->seg_head_box, seg || det);
  gtk_widget_set_visible (self->seg_head_row, seg);
  gtk_label_set_text (GTK_LABEL (self->head_title_label),
                      reg ? _("Regression head (one output per target)")
                      : seg ? _("Segmentation head (a class per pixel)")
                      : det ? _("Detection head (boxes with a class)")
                      : _("Classification head"));
}

void
vl_head_panel_set_task (VlHeadPanel *panel, VlTaskKind task)
{
  g_return_if_fail (VL_IS_HEAD_PANEL (panel));
  for (guint i = 0; i < G_N_ELEMENTS (dropdown_tasks); i++)
    if (dropdown_tasks[i] == task &&
        gtk_drop_down_get_selected (GTK_DROP_DOWN (panel->task_dropdown)) != i)
      gtk_drop_down_set_selected (GTK_DROP_DOWN (panel->task_dropdown), i);   /* notifies */
}

VlRegLoss
vl_head_panel_get_reg_loss (VlHeadPanel *panel)
{
  g_return_val_if_fail (VL_IS_HEAD_PANEL (panel), VL_REG_LOSS_MSE);
  return gtk_drop_down_get_selected (GTK_DROP_DOWN (panel->reg_loss_dropdown)) == 1
         ? VL_REG_LOSS_SMOOTH_L1 : VL_REG_LOSS_MSE;
}

VlSegHeadKind
vl_head_panel_get_seg_head (VlHeadPanel *panel)
{
  g_return_val_if_fail (VL_IS_HEAD_PANEL (panel), VL_SEG_HEAD_LINEAR);
  return gtk_drop_down_get_selected (GTK_DROP_DOWN (panel->seg_head_dropdown)) == 1
         ? VL_SEG_HEAD_UPCONV : VL_SEG_HEAD_LINEAR;
}

int
vl_head_panel_get_input_size (VlHeadPanel *panel)
{
  g_return_val_if_fail (VL_IS_HEAD_PANEL (panel), 0);
  return gtk_spin_button_get_value_as_int (GTK_SPIN_BUTTON (panel->seg_size_spin));
}

int
vl_head_panel_get_mlp_hidden (VlHeadPanel *panel)
{
  g_return_val_if_fail (VL_IS_HEAD_PANEL (panel), 0);
  return gtk_spin_button_get_value_as_int (GTK_SPIN_BUTTON (panel->mlp_hidden_spin));
}

char *
vl_head_panel_get_settings (VlHeadPanel *panel)
{
  g_return_val_if_fail (VL_IS_HEAD_PANEL (panel), NULL);
  struct { GtkWidget *w; const char *name; } parts[] = {
    { panel->cls_head_card, "classifier" }, { panel->reg_loss_box, "loss" },
    { panel->seg_head_row, "seg-head" }, { panel->seg_head_box, "input-size" },
  };
  GString *s = g_string_new (NULL);
  for (guint i = 0; i < G_N_ELEMENTS (parts); i++)
    if (gtk_widget_is_visible (parts[i].w))
      g_string_append_printf (s, "%s%s", s->len ? "," : "", parts[i].name);
  return g_string_free (s, FALSE);
}

void
vl_head_panel_set_note (VlHeadPanel *panel, const char *note)
{
  g_return_if_fail (VL_IS_HEAD_PANEL (panel));
  gtk_label_set_text (GTK_LABEL (panel->head_note_label), note ? note : "");
}

const char *
vl_head_panel_get_note (VlHeadPanel *panel)
{
  g_return_val_if_fail (VL_IS_HEAD_PANEL (panel), NULL);
  return gtk_label_get_text (GTK_LABEL (panel->head_note_label));
}

/* ------------------------------------------------------------------ GObject */

static void
vl_head_panel_get_property (GObject *object, guint id, GValue *v, GParamSpec *pspec)
{
  VlHeadPanel *self = VL_HEAD_PANEL (object);
  switch (id)
    {
    case PROP_TASK:         g_value_set_int (v, vl_head_panel_get_task (self)); break;
    case PROP_REG_LOSS:     g_value_set_int (v, vl_head_panel_get_reg_loss (self)); break;
    case PROP_SEG_HEAD:     g_value_set_int (v, vl_head_panel_get_seg_head (self)); break;
    case PROP_INPUT_SIZE:   g_value_set_int (v, vl_head_panel_get_input_size (self)); break;
    case PROP_MLP_HIDDEN:   g_value_set_int (v, vl_head_panel_get_mlp_hidden (self)); break;
    case PROP_MLP_EDITABLE:
      g_value_set_boolean (v, gtk_widget_get_sensitive (self->mlp_hidden_box));
      break;
    case PROP_SETTINGS:
      g_value_take_string (v, vl_head_panel_get_settings (self));
      break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID (object, id, pspec);
    }
}

static void
vl_head_panel_set_property (GObject *object, guint id, const GValue *v, GParamSpec *pspec)
{
  VlHeadPanel *self = VL_HEAD_PANEL (object);
  switch (id)
    {
    case PROP_TASK:
      vl_head_panel_set_task (self, (VlTaskKind) g_value_get_int (v));
      break;
    case PROP_REG_LOSS:
      gtk_drop_down_set_selected (GTK_DROP_DOWN (self->reg_loss_dropdown),
                                  g_value_get_int (v) == VL_REG_LOSS_SMOOTH_L1 ? 1 : 0);
      break;
    case PROP_SEG_HEAD:
      gtk_drop_down_set_selected (GTK_DROP_DOWN (self->seg_head_dropdown),
                                  g_value_get_int (v) == VL_SEG_HEAD_UPCONV ? 1 : 0);
      break;
    case PROP_INPUT_SIZE:
      gtk_spin_button_set_value (GTK_SPIN_BUTTON (self->seg_size_spin), g_value_get_int (v));
      break;
    case PROP_MLP_HIDDEN:
      gtk_spin_button_set_value (GTK_SPIN_BUTTON (self->mlp_hidden_spin), g_value_get_int (v));
      break;
    case PROP_MLP_EDITABLE:
      if (gtk_widget_get_sensitive (self->mlp_hidden_box) != g_value_get_boolean (v))
        {
          gtk_widget_set_sensitive (self->mlp_hidden_box, g_value_get_boolean (v));
          g_object_notify_by_pspec (object, pspec);
        }
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, id, pspec);
    }
}

static void
vl_head_panel_dispose (GObject *object)
{
  gtk_widget_dispose_template (GTK_WIDGET (object), VL_TYPE_HEAD_PANEL);
  G_OBJECT_CLASS (vl_head_panel_parent_class)->dispose (object);
}

static GParamSpec *
int_prop (const char *name, int lo, int hi, int def)
{
  return g_param_spec_int (name, NULL, NULL, lo, hi, def,
                           G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
}

static void
vl_head_panel_class_init (VlHeadPanelClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);
  object_class->get_property = vl_head_panel_get_property;
  object_class->set_property = vl_head_panel_set_property;
  object_class->dispose = vl_head_panel_dispose;
  props[PROP_TASK] = int_prop ("task", VL_TASK_CLASSIFY, VL_TASK_DETECT, VL_TASK_CLASSIFY);
  props[PROP_REG_LOSS] = int_prop ("reg-loss", VL_REG_LOSS_MSE, VL_REG_LOSS_SMOOTH_L1,
                                   VL_REG_LOSS_MSE);
  props[PROP_SEG_HEAD] = int_prop ("seg-head", VL_SEG_HEAD_LINEAR, VL_SEG_HEAD_UPCONV,
                                   VL_SEG_HEAD_LINEAR);
  props[PROP_INPUT_SIZE] = int_prop ("input-size", 0, 1024, 0);   /* the spin's range */
  props[PROP_MLP_HIDDEN] = int_prop ("mlp-hidden", 0, G_MAXINT, 0);
  props[PROP_MLP_EDITABLE] =
    g_param_spec_boolean ("mlp-editable", NULL, NULL, TRUE,
                          G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  props[PROP_SETTINGS] =
    g_param_spec_string ("settings", NULL, NULL, NULL, G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, props);
  gtk_widget_class_set_template_from_resource (widget_class, "/org/vitlab/Vitlab/vl-head-panel.ui");
#define CHILD(name) gtk_widget_class_bind_template_child (widget_class, VlHeadPanel, name)
  CHILD (task_dropdown);
  CHILD (reg_loss_box);
  CHILD (reg_loss_dropdown);
  CHILD (head_title_label);
  CHILD (seg_head_box);
  CHILD (seg_head_row);
  CHILD (seg_head_dropdown);
  CHILD (seg_size_spin);
  CHILD (cls_head_card);
  CHILD (mlp_hidden_box);
  CHILD (mlp_hidden_spin);
  CHILD (head_note_label);
#undef CHILD
}

static void
on_task_selected (VlHeadPanel *self)
{
  show_task (self);
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_TASK]);
}

/* a widget's change to the notification of its property */
static void
notify_prop (GObject *widget, GParamSpec *pspec, VlHeadPanel *self)
{
  guint id = GPOINTER_TO_UINT (g_object_get_data (widget, "prop"));
  g_object_notify_by_pspec (G_OBJECT (self), props[id]);
}

static void
spin_changed (GtkSpinButton *spin, VlHeadPanel *self)
{
  notify_prop (G_OBJECT (spin), NULL, self);
}

/* dropdowns notify "selected", spins emit ::value-changed */
static void
forward (VlHeadPanel *self, GtkWidget *widget, guint prop)
{
  g_object_set_data (G_OBJECT (widget), "prop", GUINT_TO_POINTER (prop));
  if (GTK_IS_SPIN_BUTTON (widget))
    g_signal_connect (widget, "value-changed", G_CALLBACK (spin_changed), self);
  else
    g_signal_connect (widget, "notify::selected", G_CALLBACK (notify_prop), self);
}

static void
vl_head_panel_init (VlHeadPanel *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
  g_signal_connect_swapped (self->task_dropdown, "notify::selected",
                            G_CALLBACK (on_task_selected), self);
  forward (self, self->reg_loss_dropdown, PROP_REG_LOSS);
  forward (self, self->seg_head_dropdown, PROP_SEG_HEAD);
  forward (self, self->seg_size_spin, PROP_INPUT_SIZE);
  forward (self, self->mlp_hidden_spin, PROP_MLP_HIDDEN);
  show_task (self);
}

GtkWidget *
vl_head_panel_new (void)
{
  return g_object_new (VL_TYPE_HEAD_PANEL, NULL);
}
