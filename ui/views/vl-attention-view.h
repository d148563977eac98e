/* vl-attention-view.h: a probe image with an attention heatmap over it.
 *
 * The view shows the image the model saw (the preprocessed crop) and, over it, one map of
 * gh x gw values over the patch tokens:
 *   VL_ATTN_MODE_HEAD        one head of one block: the query token's row of its attention;
 *   VL_ATTN_MODE_MEAN_HEADS  the same row averaged over the block's heads;
 *   VL_ATTN_MODE_ROLLOUT     attention rollout (Abnar & Zuidema 2020, as vl_model_rollout
 *                            computes it: per block the head mean plus the identity, rows
 *                            renormalised, multiplied from the last block down to the first);
 *   VL_ATTN_MODE_POOL        where the model's attention pool looks (SigLIP's MAP head: its
 *                            learnt query's attention over the patches, mean of the heads, or
 *                            one head), given with vl_attention_view_set_pool.
 * The query is the CLS token (row 0) unless a patch is selected (its own row, so the map shows
 * where that patch looks); a model without a CLS token uses the mean of the patch rows.
 * Prefix tokens (CLS, distillation, registers: the first n_prefix) are never shown: the map is
 * the columns n_prefix … T-1, reshaped to the grid (row-major, gh rows of gw patches).
 *
 * Each map is scaled to [0, 1] by its own minimum and maximum (so every block and head uses
 * the whole colour range; absolute values are in the tooltip and vl_attention_view_get_heatmap),
 * upsampled bilinearly (half-pixel centres, as torch's interpolate with align_corners=False)
 * to the image's size, coloured with the chosen map and laid over the image at `opacity`.
 *
 * "Pretrained vs now": give the view a reference (the same image's maps from the starting
 * model) and it draws both side by side with the same mode, block, head and query, each map
 * scaled on its own; new maps for either side replace only the heatmap, never the image.
 *
 * Pointer: hovering draws the patch grid faintly and outlines the patch under the pointer
 * (its value in the tooltip); a click makes that patch the query, a click on the query patch
 * (or Escape, or vl_attention_view_set_query_patch (view, -1)) goes back to the CLS token.
 *
 * Properties (all with notify, for g_object_bind_property): "mode" (VlAttnMode), "block",
 * "head", "query-patch" (-1: CLS), "opacity" (0 … 1), "colormap" (VlColormap), "title",
 * "label", "reference-label", and read-only "depth", "heads", "has-attention",
 * "has-reference" (e.g. to size spin buttons and to enable the block/head controls).
 */
#pragma once

#include <gtk/gtk.h>

#include "vl-colormap.h"
#include "vl-image.h"

G_BEGIN_DECLS

typedef enum {
  VL_ATTN_MODE_HEAD,
  VL_ATTN_MODE_MEAN_HEADS,
  VL_ATTN_MODE_ROLLOUT,
  VL_ATTN_MODE_POOL,
} VlAttnMode;

#define VL_TYPE_ATTN_MODE (vl_attn_mode_get_type ())
GType      vl_attn_mode_get_type (void);

#define VL_TYPE_ATTENTION_VIEW (vl_attention_view_get_type ())
G_DECLARE_FINAL_TYPE (VlAttentionView, vl_attention_view, VL, ATTENTION_VIEW, GtkWidget)

GtkWidget *vl_attention_view_new              (void);

/* The image the model saw (copied; 1 to 4 channels, gray replicated, alpha dropped), shown
 * at its own aspect (the model's input aspect when it is the crop). NULL clears it. */
void       vl_attention_view_set_image        (VlAttentionView *view, const VlImage *img);

/* A copy of the image shown (RGB), or NULL when there is none. */
VlImage   *vl_attention_view_get_image        (VlAttentionView *view);

/* The attention of every block for this image (copied): attn is [depth][heads][T][T]
 * (vl_model_attention (m, l) + b * heads * T * T for l = 0 … depth-1, laid one after another),
 * T = n_prefix + gh * gw, has_cls: the first prefix token is a CLS token (geometry->class_token).
 * Replaces any rollout given with vl_attention_view_set_rollout (rollout is computed from
 * this, for any query). Returns FALSE (and keeps the previous state) when the sizes disagree. */
gboolean   vl_attention_view_set_attention    (VlAttentionView *view, const float *attn,
                                               int depth, int heads, int T, int n_prefix,
                                               gboolean has_cls, int gh, int gw);
/* A rollout map alone (gh * gw values, copied): e.g. one probe of the trainer's PROBES event,
 * ev->rollout + i * gh * gw. Replaces any per-block attention (it describes an older model):
 * the head and mean modes then say so, and the query is the CLS token. */
gboolean   vl_attention_view_set_rollout      (VlAttentionView *view, const float *rollout,
                                               int gh, int gw);
/* The same for the reference ("pretrained") side; set_reference_* with NULL removes it. */
gboolean   vl_attention_view_set_reference_attention (VlAttentionView *view, const float *attn,
                                                      int depth, int heads, int T,
                                                      int n_prefix, gboolean has_cls,
                                                      int gh, int gw);
gboolean   vl_attention_view_set_reference_rollout   (VlAttentionView *view,
                                                      const float *rollout, int gh, int gw);
/* The attention pool's probabilities for this image (heads x gh * gw, copied; the patch
 * columns of vl_model_pool_attention), on the main side (reference FALSE) or the reference
 * side, after that side's attention or rollout (which forget it); NULL forgets it (a backbone
 * without an attention pool: the pool mode then says so). */
gboolean   vl_attention_view_set_pool         (VlAttentionView *view, gboolean reference,
                                               const float *pool, int heads, int gh, int gw);
/* Forgets the maps of both sides (the image stays). */
void       vl_attention_view_clear_maps       (VlAttentionView *view);

void       vl_attention_view_set_mode         (VlAttentionView *view, VlAttnMode mode);
VlAttnMode vl_attention_view_get_mode         (VlAttentionView *view);
/* Clamped to the attention's depth and heads once they are known. */
void       vl_attention_view_set_block        (VlAttentionView *view, int block);
int        vl_attention_view_get_block        (VlAttentionView *view);
void       vl_attention_view_set_head         (VlAttentionView *view, int head);
int        vl_attention_view_get_head         (VlAttentionView *view);
/* The query: a patch index (row * gw + col) or -1 for the CLS token. */
void       vl_attention_view_set_query_patch  (VlAttentionView *view, int patch);
int        vl_attention_view_get_query_patch  (VlAttentionView *view);
void       vl_attention_view_set_opacity      (VlAttentionView *view, double opacity);
double     vl_attention_view_get_opacity      (VlAttentionView *view);
void       vl_attention_view_set_colormap     (VlAttentionView *view, VlColormap cmap);
VlColormap vl_attention_view_get_colormap     (VlAttentionView *view);
/* A line above the panels (e.g. "ants/1.jpg · true ant · predicted bee"); NULL: none. */
void       vl_attention_view_set_title        (VlAttentionView *view, const char *title);
/* The panels' captions (defaults "now" and "pretrained"). */
void       vl_attention_view_set_labels       (VlAttentionView *view, const char *label,
                                               const char *reference_label);

int        vl_attention_view_get_depth        (VlAttentionView *view);   /* 0: unknown */
int        vl_attention_view_get_heads        (VlAttentionView *view);
void       vl_attention_view_get_grid         (VlAttentionView *view, int *gh, int *gw);

/* The map shown now (before scaling to [0, 1]) for the main side or the reference:
 * gh * gw values into out. FALSE when the side has no map for the current mode. */
gboolean   vl_attention_view_get_heatmap      (VlAttentionView *view, gboolean reference,
                                               float *out);

/* Where the image of the main panel (or of the reference panel) is, in widget coordinates;
 * FALSE when that panel is not shown. */
gboolean   vl_attention_view_get_image_rect   (VlAttentionView *view, gboolean reference,
                                               graphene_rect_t *rect);
/* The patch under widget coordinates (x, y) in either panel, or -1. */
int        vl_attention_view_patch_at         (VlAttentionView *view, double x, double y);
/* What a click does: makes the patch under (x, y) the query, or goes back to the CLS token
 * when it already is. Returns the query patch afterwards (-1: CLS); a click beside the
 * image changes nothing. */
int        vl_attention_view_select_patch_at  (VlAttentionView *view, double x, double y);
/* What pointer motion does: highlights the patch under (x, y) (x < 0: none). */
void       vl_attention_view_hover_at         (VlAttentionView *view, double x, double y);

/* Renders the view as it is (without hover) on an opaque background at width x height
 * pixels (<= 0: the natural size, the image at twice its size per panel) and writes it
 * atomically. */
gboolean   vl_attention_view_export_png       (VlAttentionView *view, const char *path,
                                               int width, int height, GError **error);

/* The 8-bit crop the model sees after pp's evaluation preprocessing (vl_preprocess_eval's
 * resize, centre crop and padding, byte for byte), as RGB for display. */
VlImage   *vl_attention_crop_for_display      (const VlImage *img, const VlPreprocess *pp);

G_END_DECLS
