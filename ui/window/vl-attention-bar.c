/* vl-attention-bar.c: the Attention page's bar (see vl-attention-bar.h). */
#include "vl-attention-bar.h"

struct _VlAttentionBar {
  GtkBox           parent_instance;
  GtkWidget       *probe_box, *attn_mode_dropdown, *attn_block_spin, *attn_head_spin;
  GtkWidget       *attn_opacity_scale, *attn_cmap_dropdown;
  VlAttentionView *view;   /* not owned */
};

G_DEFINE_FINAL_TYPE (VlAttentionBar, vl_attention_bar, GTK_TYPE_BOX)

static gboolean
mode_to_selected (GBinding *b, const GValue *from, GValue *to, gpointer user_data)
{
  g_value_set_uint (to, (guint) g_value_get_enum (from));
  return TRUE;
}

static gboolean
selected_to_mode (GBinding *b, const GValue *from, GValue *to, gpointer user_data)
{
  guint v = g_value_get_uint (from);
  if (v == GTK_INVALID_LIST_POSITION)
    return FALSE;
  g_value_set_enum (to, (int) v);
  return TRUE;
}

/* the spins' ranges and sensitivity follow the view's depth, heads and mode */
static void
on_shape (VlAttentionBar *self)
{
  VlAttentionView *view = self->view;
  int depth = vl_attention_view_get_depth (view), heads = vl_attention_view_get_heads (view);
  GtkSpinButton *block = GTK_SPIN_BUTTON (self->attn_block_spin);
  GtkSpinButton *head = GTK_SPIN_BUTTON (self->attn_head_spin);
  gtk_adjustment_set_upper (gtk_spin_button_get_adjustment (block), MAX (depth - 1, 0));
  gtk_adjustment_set_upper (gtk_spin_button_get_adjustment (head), MAX (heads - 1, 0));
  VlAttnMode mode = vl_attention_view_get_mode (view);
  gtk_widget_set_sensitive (self->attn_block_spin, (mode == VL_ATTN_MODE_HEAD ||
                                                    mode == VL_ATTN_MODE_MEAN_HEADS) && depth > 0);
  gtk_widget_set_sensitive (self->attn_head_spin, mode == VL_ATTN_MODE_HEAD && heads > 0);
}

void
vl_attention_bar_set_view (VlAttentionBar *bar, VlAttentionView *view)
{
  g_return_if_fail (VL_IS_ATTENTION_BAR (bar));
  g_return_if_fail (VL_IS_ATTENTION_VIEW (view));
  g_return_if_fail (bar->view == NULL);
  bar->view = view;
  g_object_bind_property_full (view, "mode", bar->attn_mode_dropdown, "selected",
                               G_BINDING_BIDIRECTIONAL | G_BINDING_SYNC_CREATE,
                               mode_to_selected, selected_to_mode, NULL, NULL);
  g_object_bind_property_full (view, "colormap", bar->attn_cmap_dropdown, "selected",
                               G_BINDING_BIDIRECTIONAL | G_BINDING_SYNC_CREATE,
                               mode_to_selected, selected_to_mode, NULL, NULL);
  g_object_bind_property (gtk_range_get_adjustment (GTK_RANGE (bar->attn_opacity_scale)), "value",
                          view, "opacity", G_BINDING_BIDIRECTIONAL | G_BINDING_SYNC_CREATE);
  g_object_bind_property (gtk_spin_button_get_adjustment (GTK_SPIN_BUTTON (bar->attn_block_spin)),
                          "value", view, "block", G_BINDING_BIDIRECTIONAL);
  g_object_bind_property (gtk_spin_button_get_adjustment (GTK_SPIN_BUTTON (bar->attn_head_spin)),
                          "value", view, "head", G_BINDING_BIDIRECTIONAL);
  g_signal_connect_object (view, "notify::depth", G_CALLBACK (on_shape), bar, G_CONNECT_SWAPPED);
  g_signal_connect_object (view, "notify::heads", G_CALLBACK (on_shape), bar, G_CONNECT_SWAPPED);
  g_signal_connect_object (view, "notify::mode", G_CALLBACK (on_shape), bar, G_CONNECT_SWAPPED);
  on_shape (bar);
}

GtkWidget *
vl_attention_bar_get_probe_box (VlAttentionBar *bar)
{
  g_return_val_if_fail (VL_IS_ATTENTION_BAR (bar), NULL);
  return bar->probe_box;
}

static void
vl_attention_bar_dispose (GObject *object)
{
  gtk_widget_dispose_template (GTK_WIDGET (object), VL_TYPE_ATTENTION_BAR);
  G_OBJECT_CLASS (vl_attention_bar_parent_class)->dispose (object);
}

static void
vl_attention_bar_class_init (VlAttentionBarClass *klass)
{
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);
  G_OBJECT_CLASS (klass)->dispose = vl_attention_bar_dispose;
  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/org/vitlab/Vitlab/vl-attention-bar.ui");
#define CHILD(name) gtk_widget_class_bind_template_child (widget_class, VlAttentionBar, name)
  CHILD (probe_box);
  CHILD (attn_mode_dropdown);
  CHILD (attn_block_spin);
  CHILD (attn_head_spin);
  CHILD (attn_opacity_scale);
  CHILD (attn_cmap_dropdown);
#undef CHILD
}

static void
vl_attention_bar_init (VlAttentionBar *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
}

GtkWidget *
vl_attention_bar_new (void)
{
  return g_object_new (VL_TYPE_ATTENTION_BAR, NULL);
}
