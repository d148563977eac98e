/* vl-window-features.c: the window's glue for the features pieces — the k-NN probe on the data
 * panel (VlKnnPanel), the embedding map (VlEmbeddingPanel) and "Try it" (VlTryPanel). Each piece
 * runs its own worker jobs; the window only says when their inputs change (the window's
 * "backbone-changed" and "dataset-changed" signals, the head's pooling, the trained model). */
#include "vl-window-private.h"

#include "vl-embedding-panel.h"
#include "vl-knn-panel.h"
#include "vl-try-panel.h"

static void
start_finetuned (VlWindow *self)
{
  VlEmbeddingPanel *emb = VL_EMBEDDING_PANEL (self->embedding_panel);
  VlDataRef *data = vl_knn_panel_get_data (VL_KNN_PANEL (self->knn_panel));
  if (self->trained && data && !vl_window_is_running (self))
    vl_embedding_panel_start_finetuned (emb, self->trained, data);
  else
    vl_embedding_panel_clear_finetuned (emb);
}

/* ::features-changed of the k-NN panel: the pretrained map, and the fine-tuned one of the same
 * images when a trained model is there. */
static void
on_knn_features (VlKnnPanel *knn, VlWindow *self)
{
  VlEmbeddingPanel *emb = VL_EMBEDDING_PANEL (self->embedding_panel);
  vl_embedding_panel_set_pretrained (emb, vl_knn_panel_get_features (knn),
                                     vl_knn_panel_get_data (knn));
  if (vl_knn_panel_get_features (knn))
    start_finetuned (self);
}

/* The backbone, the dataset or the head's pooling changed: the k-NN probe of the pair (or
 * nothing); the same inputs again start nothing. */
void
vl_window_features_inputs_changed (VlWindow *self)
{
  if (self->knn_panel == NULL)
    return;   /* disposed */
  VlKnnPanel *knn = VL_KNN_PANEL (self->knn_panel);
  if (self->model && self->backbone_path && self->data)
    {
      /* pooled as the head pools (an MLP head: as the model's pool) */
      VlPoolKind p = vl_model_pool (self->model);
      VlFeaturePool pool = p == VL_POOL_AVG ? VL_FEATURE_POOL_AVG
                         : p == VL_POOL_MAX ? VL_FEATURE_POOL_MAX
                         : p == VL_POOL_MAP ? VL_FEATURE_POOL_MAP : VL_FEATURE_POOL_TOKEN;
      vl_knn_panel_start (knn, self->backbone_path, self->data, pool);
    }
  else
    vl_knn_panel_clear (knn);
}

/* A run finished, a run folder was opened, or the trained model was given up. */
void
vl_window_features_trained_changed (VlWindow *self)
{
  if (self->knn_panel == NULL)
    return;   /* disposed */
  start_finetuned (self);
  vl_try_panel_set_model (VL_TRY_PANEL (self->try_panel), self->trained, self->run_dir,
                          self->task, (const char *const *) self->class_names,
                          (const char *const *) self->value_names);
}

/* Whether a k-NN probe, fine-tuned features or "Try it" images are being computed. */
gboolean
vl_window_features_busy (VlWindow *self)
{
  if (self->knn_panel == NULL)
    return FALSE;
  return vl_knn_panel_is_busy (VL_KNN_PANEL (self->knn_panel)) ||
         vl_embedding_panel_is_busy (VL_EMBEDDING_PANEL (self->embedding_panel)) ||
         vl_try_panel_is_busy (VL_TRY_PANEL (self->try_panel));
}

/* the Try It page's message for the window's banner */
static void
on_try_failed (VlTryPanel *panel, const char *message, VlWindow *self)
{
  vl_window_show_error (self, "%s", message);
}

void
vl_window_features_init (VlWindow *self)
{
  g_signal_connect (self->knn_panel, "features-changed", G_CALLBACK (on_knn_features), self);
  g_signal_connect (self->try_panel, "failed", G_CALLBACK (on_try_failed), self);
  g_signal_connect_swapped (self, "backbone-changed",
                            G_CALLBACK (vl_window_features_inputs_changed), self);
  g_signal_connect_swapped (self, "dataset-changed",
                            G_CALLBACK (vl_window_features_inputs_changed), self);
}

/* The window goes: the pieces' jobs are cancelled and their signals no longer reach it (a job
 * finishing later keeps its panel alive, not the window's state). */
void
vl_window_features_dispose (VlWindow *self)
{
  if (self->knn_panel == NULL)
    return;
  g_signal_handlers_disconnect_by_data (self->knn_panel, self);
  g_signal_handlers_disconnect_by_data (self->try_panel, self);
  vl_knn_panel_clear (VL_KNN_PANEL (self->knn_panel));
  vl_embedding_panel_clear_finetuned (VL_EMBEDDING_PANEL (self->embedding_panel));
  vl_try_panel_clear (VL_TRY_PANEL (self->try_panel));
  self->knn_panel = self->embedding_panel = self->try_panel = NULL;
}
