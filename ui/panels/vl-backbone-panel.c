/* vl-backbone-panel.c: the Backbone sidebar page (see vl-backbone-panel.h). */
#include "vl-backbone-panel.h"
#include "vl-format.h"

#include <glib/gi18n.h>
#include <string.h>

struct _VlBackbonePanel {
  GtkBox     parent_instance;
  GtkWidget *backbone_spinner, *backbone_name_label, *backbone_path_label, *recent_button;
  GtkWidget *info_family, *info_geometry, *info_params, *info_input, *info_norm, *info_head;
  GtkWidget *info_groups;
  GtkWidget *stem_dropdown, *stem_note_label;
  GMenu     *recent_section;
  /* what is shown while a load is in flight, to come back to when it fails */
  char      *shown_name, *shown_path;
  gboolean   have_model;
  /* the open model's geometry, for the stem's note */
  int        patch, width, input_size;
  VlStemKind own_stem;
};

G_DEFINE_FINAL_TYPE (VlBackbonePanel, vl_backbone_panel, GTK_TYPE_BOX)

enum { PROP_0, PROP_STEM, PROP_LOADING, PROP_EDITABLE, N_PROPS };
static GParamSpec *props[N_PROPS];

static const VlStemKind stem_choices[] = { VL_STEM_PATCH, VL_STEM_CONV, VL_STEM_MBCONV };

/* ------------------------------------------------------------------ the stem */

VlStemKind
vl_backbone_panel_get_stem (VlBackbonePanel *panel)
{
  g_return_val_if_fail (VL_IS_BACKBONE_PANEL (panel), VL_STEM_PATCH);
  guint i = gtk_drop_down_get_selected (GTK_DROP_DOWN (panel->stem_dropdown));
  return i < G_N_ELEMENTS (stem_choices) ? stem_choices[i] : VL_STEM_PATCH;
}

void
vl_backbone_panel_set_stem (VlBackbonePanel *panel, VlStemKind kind)
{
  g_return_if_fail (VL_IS_BACKBONE_PANEL (panel));
  for (guint i = 0; i < G_N_ELEMENTS (stem_choices); i++)
    if (stem_choices[i] == kind)
      gtk_drop_down_set_selected (GTK_DROP_DOWN (panel->stem_dropdown), i);
}

static void
update_stem_note (VlBackbonePanel *self)
{
  if (!self->have_model)
    {
      gtk_label_set_text (GTK_LABEL (self->stem_note_label), "");
      return;
    }
  const VlStemKind want = vl_backbone_panel_get_stem (self);
  const int P = self->patch, W = self->width, G = self->input_size / MAX (P, 1);
  const gboolean pow2 = P >= 2 && P <= 64 && (P & (P - 1)) == 0;
  g_autofree char *note = NULL;
  if (want == VL_STEM_PATCH)
    note = self->own_stem == VL_STEM_PATCH
         ? g_strdup_printf (_("The checkpoint's patch embedding: %d x %d patches, a linear "
                              "projection each to width %d."), P, P, W)
         : g_strdup_printf (_("The checkpoint's %s CNN stem, total stride %d, to width %d."),
                            vl_stem_kind_name (self->own_stem), P, W);
  else if (!pow2)
    note = g_strdup_printf (_("A new CNN stem needs a patch size that is a power of two "
                              "(2 to 64); this backbone's is %d."), P);
  else
    note = g_strdup_printf (
      _("When training starts a new %s stem replaces the checkpoint's, randomly initialised "
        "(seeded): %s down to the %d x %d grid, then a 1x1 convolution to width %d. The "
        "position embedding and the class token stay. It is the Stem layer group: train it with "
        "the transformer frozen (Stem and Head switched on in Layer groups)."),
      vl_stem_kind_name (want),
      want == VL_STEM_CONV ? _("3x3 stride-2 convolutions with BatchNorm and ReLU (Xiao et al.)")
                           : _("a 3x3 stride-2 convolution, then MBConv blocks of stride 2 "
                               "(expand, depthwise 3x3, squeeze-and-excitation, project; "
                               "BatchNorm, SiLU)"),
      G, G, W);
  gtk_label_set_text (GTK_LABEL (self->stem_note_label), note);
}

static void
on_stem_selected (VlBackbonePanel *self)
{
  update_stem_note (self);
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_STEM]);
}

/* ------------------------------------------------------------------ loading */

static void
set_spinner (VlBackbonePanel *self, gboolean on)
{
  gtk_spinner_set_spinning (GTK_SPINNER (self->backbone_spinner), on);
  gtk_widget_set_visible (self->backbone_spinner, on);
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_LOADING]);
}

void
vl_backbone_panel_set_loading (VlBackbonePanel *panel, const char *path)
{
  g_return_if_fail (VL_IS_BACKBONE_PANEL (panel));
  g_autofree char *base = g_path_get_basename (path);
  g_autofree char *loading = g_strdup_printf (_("Loading %s…"), base);
  gtk_label_set_text (GTK_LABEL (panel->backbone_name_label), loading);
  gtk_label_set_text (GTK_LABEL (panel->backbone_path_label), path);
  set_spinner (panel, TRUE);
}

void
vl_backbone_panel_set_failed (VlBackbonePanel *panel)
{
  g_return_if_fail (VL_IS_BACKBONE_PANEL (panel));
  gtk_label_set_text (GTK_LABEL (panel->backbone_name_label),
                      panel->shown_name ? panel->shown_name : _("No backbone"));
  gtk_label_set_text (GTK_LABEL (panel->backbone_path_label),
                      panel->shown_path ? panel->shown_path : "");
  set_spinner (panel, FALSE);
}

static const char *
interp_name (const char *s)
{
  return s && *s ? s : "bicubic";
}

static void
show_facts (VlBackbonePanel *self, VlModel *m)
{
  const VlGeometry *g = vl_model_geometry (m);
  g_autofree char *family = g_strdup_printf ("%s (%s)", g->family, g->architecture);
  gtk_label_set_text (GTK_LABEL (self->info_family), family);
  GString *geo = g_string_new (NULL);
  g_string_append_printf (geo, _("patch %d, width %d, depth %d, %d heads of %d, MLP %d"),
                          g->patch, g->width, g->depth, g->heads, g->head_dim, g->mlp);
  g_string_append_c (geo, '\n');
  g_string_append_printf (geo, _("%d tokens (%s%s%s%d×%d grid)"), g->n_tokens,
                          g->class_token ? "CLS + " : "", g->dist_token ? "DIST + " : "",
                          g->reg_tokens ? "registers + " : "", g->grid, g->grid);
  if (g->layer_scale || g->fc_norm || g->pre_norm || g->quick_gelu || g->gelu_tanh)
    g_string_append_printf (geo, "\n%s%s%s%s", g->layer_scale ? "layer scale " : "",
                            g->fc_norm ? "fc_norm " : "", g->pre_norm ? "pre-norm " : "",
                            g->quick_gelu ? "QuickGELU" : g->gelu_tanh ? "GELU (tanh)" : "");
  if (g->attn_pool)   /* SigLIP's MAP head */
    g_string_append_printf (geo, "\n%s", _("pooled by an attention pool (a learnt query)"));
  gtk_label_set_text (GTK_LABEL (self->info_geometry), geo->str);
  g_string_free (geo, TRUE);
  g_autofree char *params = vl_format_count (vl_model_n_params (m));
  gtk_label_set_text (GTK_LABEL (self->info_params), params);
  /* SigLIP's processors resize the whole photo to the square (squash): no crop to show */
  g_autofree char *input = g->squash
    ? g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "%d×%d px, %d channel, whole image, %s",
                                    "%d×%d px, %d channels, whole image, %s", g->in_chans),
                       g->input_size, g->input_size, g->in_chans, interp_name (g->interpolation))
    : g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "%d×%d px, %d channel, crop %.3g, %s",
                                    "%d×%d px, %d channels, crop %.3g, %s", g->in_chans),
                       g->input_size, g->input_size, g->in_chans, g->crop_pct,
                       interp_name (g->interpolation));
  /* DINOv2 runs at its processor's 224 px from 518 px; the grid above is the checkpoint's */
  g_autofree char *resampled = g->input_size != g->img_size
    ? g_strdup_printf (_("%s\nposition embedding resampled from %d px"), input, g->img_size)
    : g_strdup (input);
  gtk_label_set_text (GTK_LABEL (self->info_input), resampled);
  GString *norm = g_string_new (_("mean"));
  for (int c = 0; c < MIN (g->in_chans, 4); c++)
    g_string_append_printf (norm, " %.3f", g->mean[c]);
  g_string_append_c (norm, '\n');
  g_string_append (norm, _("std"));
  g_string_append_c (norm, ' ');
  for (int c = 0; c < MIN (g->in_chans, 4); c++)
    g_string_append_printf (norm, " %.3f", g->std[c]);
  gtk_label_set_text (GTK_LABEL (self->info_norm), norm->str);
  g_string_free (norm, TRUE);
  const VlHeadKind kind = vl_model_head_kind (m);
  const int K = vl_model_num_classes (m);
  g_autofree char *head = kind == VL_HEAD_NONE ? g_strdup (_("none (features only)"))
                        : g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "%s, %d class%s",
                                                        "%s, %d classes%s", K),
                                           kind == VL_HEAD_MLP ? "MLP" : _("linear"), K,
                                           vl_model_class_names (m) ? _(" (named)") : "");
  gtk_label_set_text (GTK_LABEL (self->info_head), head);
  self->patch = g->patch;
  self->width = g->width;
  self->input_size = g->input_size;
  self->own_stem = vl_model_stem_kind (m);
}

void
vl_backbone_panel_show_model (VlBackbonePanel *panel, VlModel *m, const char *path,
                              double seconds)
{
  g_return_if_fail (VL_IS_BACKBONE_PANEL (panel));
  /* the checkpoint's own name (its folder, or its file without the extension): the
   * architecture a config names may be only the base its model_args reshape (an export of a
   * small model names vit_base_patch16_224); the family row shows it */
  g_autofree char *base = g_path_get_basename (path);
  if (vl_checkpoint_has_extension (base))
    *strrchr (base, '.') = '\0';
  gtk_label_set_text (GTK_LABEL (panel->backbone_name_label), base);
  g_autofree char *loaded = g_strdup_printf (_("%s\nloaded in %.2f s"), path, seconds);
  gtk_label_set_text (GTK_LABEL (panel->backbone_path_label), loaded);
  gtk_widget_set_tooltip_text (panel->backbone_path_label, path);
  g_free (panel->shown_name);
  panel->shown_name = g_strdup (base);
  g_free (panel->shown_path);
  panel->shown_path = g_strdup (loaded);
  panel->have_model = TRUE;
  show_facts (panel, m);
  set_spinner (panel, FALSE);
  update_stem_note (panel);
}

void
vl_backbone_panel_set_groups_text (VlBackbonePanel *panel, const char *text)
{
  g_return_if_fail (VL_IS_BACKBONE_PANEL (panel));
  gtk_label_set_text (GTK_LABEL (panel->info_groups), text);
}

void
vl_backbone_panel_set_recent (VlBackbonePanel *panel, const char *const *paths)
{
  g_return_if_fail (VL_IS_BACKBONE_PANEL (panel));
  g_menu_remove_all (panel->recent_section);
  for (int i = 0; paths && paths[i]; i++)
    {
      g_autofree char *base = g_path_get_basename (paths[i]);
      g_autofree char *label = g_strdup_printf ("%s  —  %s", base, paths[i]);
      g_autoptr(GMenuItem) item = g_menu_item_new (label, NULL);
      g_menu_item_set_action_and_target_value (item, "win.load-backbone",
                                               g_variant_new_string (paths[i]));
      g_menu_append_item (panel->recent_section, item);
    }
  if (paths == NULL || paths[0] == NULL)
    {
      g_autoptr(GMenuItem) item = g_menu_item_new (_("No recent backbones"), "win.nothing");
      g_menu_append_item (panel->recent_section, item);
    }
}

int
vl_backbone_panel_get_n_recent (VlBackbonePanel *panel)
{
  g_return_val_if_fail (VL_IS_BACKBONE_PANEL (panel), 0);
  return g_menu_model_get_n_items (G_MENU_MODEL (panel->recent_section));
}

const char *
vl_backbone_panel_get_name (VlBackbonePanel *panel)
{
  g_return_val_if_fail (VL_IS_BACKBONE_PANEL (panel), NULL);
  return gtk_label_get_text (GTK_LABEL (panel->backbone_name_label));
}

void
vl_backbone_panel_set_name (VlBackbonePanel *panel, const char *name)
{
  g_return_if_fail (VL_IS_BACKBONE_PANEL (panel));
  gtk_label_set_text (GTK_LABEL (panel->backbone_name_label), name);
}

const char *
vl_backbone_panel_get_fact (VlBackbonePanel *panel, const char *fact)
{
  g_return_val_if_fail (VL_IS_BACKBONE_PANEL (panel), NULL);
  struct { const char *name; GtkWidget *label; } facts[] = {
    { "family", panel->info_family }, { "geometry", panel->info_geometry },
    { "params", panel->info_params }, { "input", panel->info_input },
    { "norm", panel->info_norm }, { "head", panel->info_head }, { "groups", panel->info_groups },
  };
  for (guint i = 0; i < G_N_ELEMENTS (facts); i++)
    if (g_strcmp0 (fact, facts[i].name) == 0)
      return gtk_label_get_text (GTK_LABEL (facts[i].label));
  return NULL;
}

const char *
vl_backbone_panel_get_stem_note (VlBackbonePanel *panel)
{
  g_return_val_if_fail (VL_IS_BACKBONE_PANEL (panel), NULL);
  return gtk_label_get_text (GTK_LABEL (panel->stem_note_label));
}

/* ------------------------------------------------------------------ GObject */

static void
vl_backbone_panel_get_property (GObject *object, guint id, GValue *v, GParamSpec *pspec)
{
  VlBackbonePanel *self = VL_BACKBONE_PANEL (object);
  switch (id)
    {
    case PROP_STEM:
      g_value_set_int (v, vl_backbone_panel_get_stem (self));
      break;
    case PROP_LOADING:
      g_value_set_boolean (v, gtk_widget_get_visible (self->backbone_spinner));
      break;
    case PROP_EDITABLE:
      g_value_set_boolean (v, gtk_widget_get_sensitive (self->stem_dropdown));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, id, pspec);
    }
}

static void
vl_backbone_panel_set_property (GObject *object, guint id, const GValue *v, GParamSpec *pspec)
{
  VlBackbonePanel *self = VL_BACKBONE_PANEL (object);
  switch (id)
    {
    case PROP_STEM:
      vl_backbone_panel_set_stem (self, (VlStemKind) g_value_get_int (v));
      break;
    case PROP_EDITABLE:
      if (gtk_widget_get_sensitive (self->stem_dropdown) != g_value_get_boolean (v))
        {
          gtk_widget_set_sensitive (self->stem_dropdown, g_value_get_boolean (v));
          gtk_widget_set_sensitive (self->recent_button, g_value_get_boolean (v));
          g_object_notify_by_pspec (object, pspec);
        }
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, id, pspec);
    }
}

static void
vl_backbone_panel_dispose (GObject *object)
{
  gtk_widget_dispose_template (GTK_WIDGET (object), VL_TYPE_BACKBONE_PANEL);
  G_OBJECT_CLASS (vl_backbone_panel_parent_class)->dispose (object);
}

static void
vl_backbone_panel_finalize (GObject *object)
{
  VlBackbonePanel *self = VL_BACKBONE_PANEL (object);
  g_free (self->shown_name);
  g_free (self->shown_path);
  G_OBJECT_CLASS (vl_backbone_panel_parent_class)->finalize (object);
}

static void
vl_backbone_panel_class_init (VlBackbonePanelClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);
  object_class->get_property = vl_backbone_panel_get_property;
  object_class->set_property = vl_backbone_panel_set_property;
  object_class->dispose = vl_backbone_panel_dispose;
  object_class->finalize = vl_backbone_panel_finalize;
  props[PROP_STEM] = g_param_spec_int ("stem", NULL, NULL, VL_STEM_PATCH, VL_STEM_MBCONV,
                                       VL_STEM_PATCH, G_PARAM_READWRITE |
                                       G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  props[PROP_LOADING] = g_param_spec_boolean ("loading", NULL, NULL, FALSE,
                                              G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  props[PROP_EDITABLE] = g_param_spec_boolean ("editable", NULL, NULL, TRUE, G_PARAM_READWRITE |
                                               G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, props);
  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/org/vitlab/Vitlab/vl-backbone-panel.ui");
#define CHILD(name) gtk_widget_class_bind_template_child (widget_class, VlBackbonePanel, name)
  CHILD (backbone_spinner);
  CHILD (backbone_name_label);
  CHILD (backbone_path_label);
  CHILD (recent_button);
  CHILD (recent_section);
  CHILD (info_family);
  CHILD (info_geometry);
  CHILD (info_params);
  CHILD (info_input);
  CHILD (info_norm);
  CHILD (info_head);
  CHILD (info_groups);
  CHILD (stem_dropdown);
  CHILD (stem_note_label);
#undef CHILD
}

static void
vl_backbone_panel_init (VlBackbonePanel *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
  g_signal_connect_swapped (self->stem_dropdown, "notify::selected",
                            G_CALLBACK (on_stem_selected), self);
}

GtkWidget *
vl_backbone_panel_new (void)
{
  return g_object_new (VL_TYPE_BACKBONE_PANEL, NULL);
}
