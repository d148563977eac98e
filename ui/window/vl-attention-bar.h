/* vl-attention-bar.h: the Attention page's bar as a widget of its own (its template,
 * vl-attention-bar.ui): the probe buttons (the window fills the probe box), Open Probe
 * (win.open-probe), and the controls of the attention view it drives: mode, block, head,
 * opacity, colour map (bound both ways to the view's properties; the block and head spins
 * follow the view's depth, heads and mode). Main thread only. */
#pragma once

#include <gtk/gtk.h>

#include "vl-attention-view.h"

G_BEGIN_DECLS

#define VL_TYPE_ATTENTION_BAR (vl_attention_bar_get_type ())
G_DECLARE_FINAL_TYPE (VlAttentionBar, vl_attention_bar, VL, ATTENTION_BAR, GtkBox)

GtkWidget *vl_attention_bar_new           (void);
/* Binds the controls to view (once; the view outlives the bindings or takes them along). */
void       vl_attention_bar_set_view      (VlAttentionBar *bar, VlAttentionView *view);
/* The linked box of the probe buttons. */
GtkWidget *vl_attention_bar_get_probe_box (VlAttentionBar *bar);

G_END_DECLS
