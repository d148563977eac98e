/* vl-data-panel.c: the Data sidebar page (see vl-data-panel.h). */
#include "vl-data-panel.h"
#include "vl-knn-panel.h"

#include <glib/gi18n.h>

struct _VlDataPanel {
  GtkBox     parent_instance;
  GtkWidget *data_spinner, *data_name_label, *data_split_label;
  GtkWidget *fmnist_button, *fmnist_popover, *fmnist_classes_entry, *fmnist_cap_spin;
  GtkWidget *fmnist_val_spin;
  GtkWidget *val_fraction_box, *val_fraction_spin;
  GtkWidget *knn_panel, *classes_box, *skipped_expander, *skipped_list;
  GtkWidget *augment_dropdown, *cache_switch, *cache_note;
  GtkWidget *data_buttons;   /* GtkFlowBox: Image Folder… and the Fashion-MNIST menu */
  char      *shown_name;   /* the dataset open, to come back to when a scan fails */
  gboolean   editable;
  int        n_skipped;
};

G_DEFINE_FINAL_TYPE (VlDataPanel, vl_data_panel, GTK_TYPE_BOX)

enum {
  PROP_0, PROP_VAL_FRACTION, PROP_SHOW_VAL_FRACTION, PROP_AUGMENT, PROP_CACHE, PROP_EDITABLE,
  PROP_FMNIST_CLASSES, PROP_FMNIST_PER_CLASS, PROP_FMNIST_VAL_PER_CLASS,
  N_PROPS
};
static GParamSpec *props[N_PROPS];

/* With augmentation the training images change every epoch, so the cache holds only the
 * validation images' features (the trainer's rule); the note under the switch says so. */
static void
update_sensitivity (VlDataPanel *self)
{
  gtk_widget_set_sensitive (self->val_fraction_box, self->editable);
  gtk_widget_set_sensitive (self->augment_dropdown, self->editable);
  gtk_widget_set_sensitive (self->fmnist_button, self->editable);
  gtk_widget_set_sensitive (self->cache_switch, self->editable);
  gtk_widget_set_visible (self->cache_note,
                          gtk_switch_get_active (GTK_SWITCH (self->cache_switch)) &&
                          gtk_drop_down_get_selected (GTK_DROP_DOWN (self->augment_dropdown)) != 0);
}

/* ------------------------------------------------------------------ the dataset */

static void
set_spinner (VlDataPanel *self, gboolean on)
{
  gtk_spinner_set_spinning (GTK_SPINNER (self->data_spinner), on);
  gtk_widget_set_visible (self->data_spinner, on);
}

void
vl_data_panel_set_loading (VlDataPanel *panel, const char *spec)
{
  g_return_if_fail (VL_IS_DATA_PANEL (panel));
  g_autofree char *base = g_file_test (spec, G_FILE_TEST_IS_DIR) ? g_path_get_basename (spec)
                                                                 : g_strdup (spec);
  g_autofree char *loading = g_strdup_printf (_("Scanning %s…"), base);
  gtk_label_set_text (GTK_LABEL (panel->data_name_label), loading);
  set_spinner (panel, TRUE);
}

void
vl_data_panel_set_failed (VlDataPanel *panel)
{
  g_return_if_fail (VL_IS_DATA_PANEL (panel));
  set_spinner (panel, FALSE);
  gtk_label_set_text (GTK_LABEL (panel->data_name_label),
                      panel->shown_name ? panel->shown_name : _("No dataset"));
}

void
vl_data_panel_show_dataset (VlDataPanel *panel, const char *spec, const char *name,
                            const char *split_text, gboolean fashion_mnist)
{
  g_return_if_fail (VL_IS_DATA_PANEL (panel));
  set_spinner (panel, FALSE);
  gtk_label_set_text (GTK_LABEL (panel->data_name_label), name);
  gtk_widget_set_tooltip_text (panel->data_name_label, spec);
  g_free (panel->shown_name);
  panel->shown_name = g_strdup (name);
  /* the Fashion-MNIST button is an action beside "Image Folder…", not the name of what is open */
  gtk_menu_button_set_label (GTK_MENU_BUTTON (panel->fmnist_button),
                             fashion_mnist ? _("Fashion-MNIST Classes") : _("Use Fashion-MNIST"));
  gtk_label_set_text (GTK_LABEL (panel->data_split_label), split_text);
}

const char *
vl_data_panel_get_name (VlDataPanel *panel)
{
  g_return_val_if_fail (VL_IS_DATA_PANEL (panel), NULL);
  return gtk_label_get_text (GTK_LABEL (panel->data_name_label));
}

void
vl_data_panel_set_name (VlDataPanel *panel, const char *name)
{
  g_return_if_fail (VL_IS_DATA_PANEL (panel));
  gtk_label_set_text (GTK_LABEL (panel->data_name_label), name);
}

const char *
vl_data_panel_get_cache_note (VlDataPanel *panel)
{
  g_return_val_if_fail (VL_IS_DATA_PANEL (panel), NULL);
  if (!gtk_widget_get_visible (panel->cache_note))
    return NULL;
  return gtk_label_get_text (GTK_LABEL (panel->cache_note));
}

const char *
vl_data_panel_get_fmnist_label (VlDataPanel *panel)
{
  g_return_val_if_fail (VL_IS_DATA_PANEL (panel), NULL);
  return gtk_menu_button_get_label (GTK_MENU_BUTTON (panel->fmnist_button));
}

void
vl_data_panel_close_fmnist (VlDataPanel *panel)
{
  g_return_if_fail (VL_IS_DATA_PANEL (panel));
  gtk_popover_popdown (GTK_POPOVER (panel->fmnist_popover));
}

/* ------------------------------------------------------------------ classes, skipped files */

void
vl_data_panel_clear_classes (VlDataPanel *panel)
{
  g_return_if_fail (VL_IS_DATA_PANEL (panel));
  GtkWidget *child;
  while ((child = gtk_widget_get_first_child (panel->classes_box)))
    gtk_box_remove (GTK_BOX (panel->classes_box), child);
}

void
vl_data_panel_add_classes_card (VlDataPanel *panel, GtkWidget *card)
{
  g_return_if_fail (VL_IS_DATA_PANEL (panel));
  gtk_box_append (GTK_BOX (panel->classes_box), card);
}

int
vl_data_panel_get_n_classes_cards (VlDataPanel *panel)
{
  g_return_val_if_fail (VL_IS_DATA_PANEL (panel), 0);
  int n = 0;
  for (GtkWidget *c = gtk_widget_get_first_child (panel->classes_box); c;
       c = gtk_widget_get_next_sibling (c))
    n++;
  return n;
}

void
vl_data_panel_set_skipped (VlDataPanel *panel, char **lines)
{
  g_return_if_fail (VL_IS_DATA_PANEL (panel));
  GtkWidget *child;
  while ((child = gtk_widget_get_first_child (panel->skipped_list)))
    gtk_list_box_remove (GTK_LIST_BOX (panel->skipped_list), child);
  int n = lines ? (int) g_strv_length (lines) : 0;
  for (int i = 0; i < n && i < 500; i++)
    {
      GtkWidget *l = gtk_label_new (lines[i]);
      gtk_label_set_xalign (GTK_LABEL (l), 0);
      gtk_label_set_wrap (GTK_LABEL (l), TRUE);
      gtk_label_set_wrap_mode (GTK_LABEL (l), PANGO_WRAP_WORD_CHAR);
      gtk_label_set_selectable (GTK_LABEL (l), TRUE);
      gtk_widget_add_css_class (l, "caption");
      gtk_widget_add_css_class (l, "vl-skipped");
      gtk_list_box_append (GTK_LIST_BOX (panel->skipped_list), l);
    }
  panel->n_skipped = n;
  g_autofree char *label = g_strdup_printf (_("Skipped files (%d)"), n);
  gtk_expander_set_label (GTK_EXPANDER (panel->skipped_expander), label);
  gtk_widget_set_visible (panel->skipped_expander, n > 0);
}

int
vl_data_panel_get_n_skipped (VlDataPanel *panel)
{
  g_return_val_if_fail (VL_IS_DATA_PANEL (panel), 0);
  return panel->n_skipped;
}

const char *
vl_data_panel_get_skipped (VlDataPanel *panel, int i)
{
  g_return_val_if_fail (VL_IS_DATA_PANEL (panel), NULL);
  GtkListBoxRow *row = gtk_list_box_get_row_at_index (GTK_LIST_BOX (panel->skipped_list), i);
  return row ? gtk_label_get_text (GTK_LABEL (gtk_list_box_row_get_child (row))) : NULL;
}

GtkWidget *
vl_data_panel_get_knn_panel (VlDataPanel *panel)
{
  g_return_val_if_fail (VL_IS_DATA_PANEL (panel), NULL);
  return panel->knn_panel;
}

/* ------------------------------------------------------------------ GObject */

static void
vl_data_panel_get_property (GObject *object, guint id, GValue *v, GParamSpec *pspec)
{
  VlDataPanel *self = VL_DATA_PANEL (object);
  switch (id)
    {
    case PROP_VAL_FRACTION:
      g_value_set_double (v, gtk_spin_button_get_value (GTK_SPIN_BUTTON (self->val_fraction_spin)));
      break;
    case PROP_SHOW_VAL_FRACTION:
      g_value_set_boolean (v, gtk_widget_get_visible (self->val_fraction_box));
      break;
    case PROP_AUGMENT:
      g_value_set_int (v, (int) gtk_drop_down_get_selected (GTK_DROP_DOWN (self->augment_dropdown)));
      break;
    case PROP_CACHE:
      g_value_set_boolean (v, gtk_switch_get_active (GTK_SWITCH (self->cache_switch)));
      break;
    case PROP_EDITABLE:
      g_value_set_boolean (v, self->editable);
      break;
    case PROP_FMNIST_CLASSES:
      g_value_set_string (v, gtk_editable_get_text (GTK_EDITABLE (self->fmnist_classes_entry)));
      break;
    case PROP_FMNIST_PER_CLASS:
      g_value_set_int (v, gtk_spin_button_get_value_as_int (GTK_SPIN_BUTTON (self->fmnist_cap_spin)));
      break;
    case PROP_FMNIST_VAL_PER_CLASS:
      g_value_set_int (v, gtk_spin_button_get_value_as_int (GTK_SPIN_BUTTON (self->fmnist_val_spin)));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, id, pspec);
    }
}

static void
vl_data_panel_set_property (GObject *object, guint id, const GValue *v, GParamSpec *pspec)
{
  VlDataPanel *self = VL_DATA_PANEL (object);
  switch (id)
    {
    case PROP_VAL_FRACTION:
      gtk_spin_button_set_value (GTK_SPIN_BUTTON (self->val_fraction_spin), g_value_get_double (v));
      break;
    case PROP_SHOW_VAL_FRACTION:
      gtk_widget_set_visible (self->val_fraction_box, g_value_get_boolean (v));
      break;
    case PROP_AUGMENT:
      gtk_drop_down_set_selected (GTK_DROP_DOWN (self->augment_dropdown),
                                  (guint) CLAMP (g_value_get_int (v), 0, 2));
      break;
    case PROP_CACHE:
      gtk_switch_set_active (GTK_SWITCH (self->cache_switch), g_value_get_boolean (v));
      break;
    case PROP_EDITABLE:
      if (self->editable != g_value_get_boolean (v))
        {
          self->editable = g_value_get_boolean (v);
          update_sensitivity (self);
          g_object_notify_by_pspec (object, pspec);
        }
      break;
    case PROP_FMNIST_CLASSES:
      gtk_editable_set_text (GTK_EDITABLE (self->fmnist_classes_entry), g_value_get_string (v));
      break;
    case PROP_FMNIST_PER_CLASS:
      gtk_spin_button_set_value (GTK_SPIN_BUTTON (self->fmnist_cap_spin), g_value_get_int (v));
      break;
    case PROP_FMNIST_VAL_PER_CLASS:
      gtk_spin_button_set_value (GTK_SPIN_BUTTON (self->fmnist_val_spin), g_value_get_int (v));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, id, pspec);
    }
}

static void
vl_data_panel_dispose (GObject *object)
{
  gtk_widget_dispose_template (GTK_WIDGET (object), VL_TYPE_DATA_PANEL);
  G_OBJECT_CLASS (vl_data_panel_parent_class)->dispose (object);
}

static void
vl_data_panel_finalize (GObject *object)
{
  VlDataPanel *self = VL_DATA_PANEL (object);
  g_free (self->shown_name);
  G_OBJECT_CLASS (vl_data_panel_parent_class)->finalize (object);
}

#define RW (G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS)

static void
vl_data_panel_class_init (VlDataPanelClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);
  object_class->get_property = vl_data_panel_get_property;
  object_class->set_property = vl_data_panel_set_property;
  object_class->dispose = vl_data_panel_dispose;
  object_class->finalize = vl_data_panel_finalize;
  /* the ranges are the widgets' (vl-data-panel.ui) */
  props[PROP_VAL_FRACTION] = g_param_spec_double ("val-fraction", NULL, NULL, 0.05, 0.9, 0.2, RW);
  props[PROP_SHOW_VAL_FRACTION] = g_param_spec_boolean ("show-val-fraction", NULL, NULL, TRUE, RW);
  props[PROP_AUGMENT] = g_param_spec_int ("augment", NULL, NULL, 0, 2, 0, RW);
  props[PROP_CACHE] = g_param_spec_boolean ("cache", NULL, NULL, TRUE, RW);
  props[PROP_EDITABLE] = g_param_spec_boolean ("editable", NULL, NULL, TRUE, RW);
  props[PROP_FMNIST_CLASSES] = g_param_spec_string ("fmnist-classes", NULL, NULL, "0-9", RW);
  props[PROP_FMNIST_PER_CLASS] = g_param_spec_int ("fmnist-per-class", NULL, NULL, 10, 6000, 200,
                                                   RW);
  props[PROP_FMNIST_VAL_PER_CLASS] = g_param_spec_int ("fmnist-val-per-class", NULL, NULL, 10,
                                                       1000, 100, RW);
  g_object_class_install_properties (object_class, N_PROPS, props);
  g_type_ensure (VL_TYPE_KNN_PANEL);
  gtk_widget_class_set_template_from_resource (widget_class, "/org/vitlab/Vitlab/vl-data-panel.ui");
#define CHILD(name) gtk_widget_class_bind_template_child (widget_class, VlDataPanel, name)
  CHILD (data_spinner);
  CHILD (data_name_label);
  CHILD (data_split_label);
  CHILD (fmnist_button);
  CHILD (fmnist_popover);
  CHILD (fmnist_classes_entry);
  CHILD (fmnist_cap_spin);
  CHILD (fmnist_val_spin);
  CHILD (val_fraction_box);
  CHILD (val_fraction_spin);
  CHILD (knn_panel);
  CHILD (classes_box);
  CHILD (skipped_expander);
  CHILD (skipped_list);
  CHILD (augment_dropdown);
  CHILD (cache_switch);
  CHILD (cache_note);
  CHILD (data_buttons);
#undef CHILD
}

static void
on_augment_selected (VlDataPanel *self)
{
  update_sensitivity (self);
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_AUGMENT]);
}

static void
on_cache_toggled (VlDataPanel *self)
{
  update_sensitivity (self);
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_CACHE]);
}

static void
on_val_fraction_changed (VlDataPanel *self)
{
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_VAL_FRACTION]);
}

static void
vl_data_panel_init (VlDataPanel *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
  self->editable = TRUE;
  /* Tab goes to the buttons, not to the flow box's cells around them */
  for (GtkWidget *c = gtk_widget_get_first_child (self->data_buttons); c;
       c = gtk_widget_get_next_sibling (c))
    gtk_widget_set_focusable (c, FALSE);
  g_signal_connect_swapped (self->augment_dropdown, "notify::selected",
                            G_CALLBACK (on_augment_selected), self);
  g_signal_connect_swapped (self->cache_switch, "notify::active", G_CALLBACK (on_cache_toggled),
                            self);
  g_signal_connect_swapped (self->val_fraction_spin, "value-changed",
                            G_CALLBACK (on_val_fraction_changed), self);
  gtk_widget_set_visible (self->val_fraction_box, FALSE);
  update_sensitivity (self);
}

GtkWidget *
vl_data_panel_new (void)
{
  return g_object_new (VL_TYPE_DATA_PANEL, NULL);
}
