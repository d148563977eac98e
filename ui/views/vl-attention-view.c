/* vl-attention-view.c: a probe image with an attention heatmap, drawn with cairo in snapshot.
 *
 * Each side (the main one, "now", and the optional reference, "pretrained") keeps its data
 * (the full attention or a rollout map), the map for the current mode / block / head / query
 * (recomputed only when one of those or the data changes) and the coloured, upsampled heat
 * surface (recomputed only when the map or the colour map changes). Drawing a frame only
 * composites the cached image and heat surfaces. */
#include "vl-attention-view.h"
#include <glib/gi18n.h>
#include "vl-attention.h"

#include <math.h>
#include <string.h>

G_DEFINE_ENUM_TYPE (VlAttnMode, vl_attn_mode,
                    G_DEFINE_ENUM_VALUE (VL_ATTN_MODE_HEAD, "head"),
                    G_DEFINE_ENUM_VALUE (VL_ATTN_MODE_MEAN_HEADS, "mean-heads"),
                    G_DEFINE_ENUM_VALUE (VL_ATTN_MODE_ROLLOUT, "rollout"),
                    G_DEFINE_ENUM_VALUE (VL_ATTN_MODE_POOL, "pool"))

typedef struct {
  /* data: the full attention [depth][heads][T][T], or a rollout map alone */
  float   *attn;
  int      depth, heads, T, n_prefix;
  gboolean has_cls;
  float   *rollout;          /* (gh, gw) when there is no attention */
  int      gh, gw;
  float   *pool;             /* (pool_heads, gh, gw): the attention pool's; NULL without */
  int      pool_heads;
  /* scratch for the rollout row (3 * T floats) */
  float   *scratch;
  /* the current map */
  float   *map;              /* (gh, gw) */
  gboolean map_valid;
  gboolean map_dirty;
  float    map_min, map_max;
  int      map_argmax;
  /* its coloured upsampling */
  cairo_surface_t *heat;
  gboolean heat_dirty;
} Side;

struct _VlAttentionView {
  GtkWidget  parent_instance;

  cairo_surface_t *image;    /* RGB24 */
  int        img_w, img_h;

  Side       side[2];        /* 0: now, 1: reference */
  gboolean   has_reference;

  VlAttnMode mode;
  int        block, head, query;
  double     opacity;
  VlColormap cmap;
  char      *title, *label, *ref_label;

  int        hover_patch;    /* -1: none */
  int        hover_side;
};

G_DEFINE_FINAL_TYPE (VlAttentionView, vl_attention_view, GTK_TYPE_WIDGET)

enum {
  PROP_0,
  PROP_MODE,
  PROP_BLOCK,
  PROP_HEAD,
  PROP_QUERY_PATCH,
  PROP_OPACITY,
  PROP_COLORMAP,
  PROP_TITLE,
  PROP_LABEL,
  PROP_REFERENCE_LABEL,
  PROP_DEPTH,
  PROP_HEADS,
  PROP_HAS_ATTENTION,
  PROP_HAS_REFERENCE,
  N_PROPS
};
static GParamSpec *props[N_PROPS];

/* ------------------------------------------------------------------ sides */

static void
side_clear (Side *s)
{
  g_clear_pointer (&s->attn, g_free);
  g_clear_pointer (&s->rollout, g_free);
  g_clear_pointer (&s->pool, g_free);
  s->pool_heads = 0;
  g_clear_pointer (&s->scratch, g_free);
  g_clear_pointer (&s->map, g_free);
  g_clear_pointer (&s->heat, cairo_surface_destroy);
  s->depth = s->heads = s->T = s->n_prefix = 0;
  s->gh = s->gw = 0;
  s->has_cls = FALSE;
  s->map_valid = FALSE;
  s->map_dirty = s->heat_dirty = TRUE;
}

static gboolean
side_has_data (const Side *s)
{
  return s->attn != NULL || s->rollout != NULL;
}

static void
side_set_grid (Side *s, int gh, int gw)
{
  s->gh = gh;
  s->gw = gw;
  s->map = g_new0 (float, (gsize) gh * gw);
  s->map_dirty = s->heat_dirty = TRUE;
}

/* The side's attention maps from the engine's kernels (vl-attention.h): one block's query row
 * over a range of heads, or the rollout row; exactly what the engine computes for the run. */
static VlAttnShape
side_shape (const Side *s)
{
  return (VlAttnShape) { .depth = s->depth, .heads = s->heads, .T = s->T,
                         .n_prefix = s->n_prefix, .has_cls = s->has_cls };
}

static void
side_attention_row (Side *s, int block, int h0, int h1, int query)
{
  const VlAttnShape shape = side_shape (s);
  vl_attention_row (s->attn, &shape, block, h0, h1, query, s->map);
}

static void
side_rollout_row (Side *s, int query)
{
  const VlAttnShape shape = side_shape (s);
  vl_attention_rollout (s->attn, &shape, query, s->map, s->scratch);
}

static void
side_update_map (Side *s, VlAttnMode mode, int block, int head, int query)
{
  if (!s->map_dirty)
    return;
  s->map_dirty = FALSE;
  s->heat_dirty = TRUE;
  s->map_valid = FALSE;
  if (!side_has_data (s))
    return;
  const int NP = s->gh * s->gw;
  if (mode == VL_ATTN_MODE_POOL)
    {
      /* the pool's query over the patches: one head, or the mean of the heads */
      if (s->pool == NULL)
        return;
      const int h0 = head < 0 ? 0 : MIN (head, s->pool_heads - 1);
      const int h1 = head < 0 ? s->pool_heads : h0 + 1;
      for (int c = 0; c < NP; c++)
        {
          double acc = 0;
          for (int h = h0; h < h1; h++)
            acc += s->pool[(gsize) h * NP + c];
          s->map[c] = (float) (acc / (h1 - h0));
        }
    }
  else if (s->attn != NULL)
    {
      if (query >= NP)
        query = -1;
      if (mode == VL_ATTN_MODE_ROLLOUT)
        side_rollout_row (s, query);
      else
        {
          int b = CLAMP (block, 0, s->depth - 1);
          int h = CLAMP (head, 0, s->heads - 1);
          if (mode == VL_ATTN_MODE_HEAD)
            side_attention_row (s, b, h, h + 1, query);
          else
            side_attention_row (s, b, 0, s->heads, query);
        }
    }
  else
    {
      if (mode != VL_ATTN_MODE_ROLLOUT)
        return;
      memcpy (s->map, s->rollout, sizeof (float) * NP);
    }
  s->map_min = INFINITY;
  s->map_max = -INFINITY;
  s->map_argmax = 0;
  for (int c = 0; c < NP; c++)
    {
      float x = s->map[c];
      if (!isfinite (x))
        continue;
      if (x < s->map_min)
        s->map_min = x;
      if (x > s->map_max)
        {
          s->map_max = x;
          s->map_argmax = c;
        }
    }
  s->map_valid = s->map_max >= s->map_min;
}

/* Samples the map at (fy, fx) in grid coordinates (cell centres at integers) bilinearly. */
static inline float
map_bilinear (const Side *s, double fy, double fx)
{
  fy = CLAMP (fy, 0.0, s->gh - 1.0);
  fx = CLAMP (fx, 0.0, s->gw - 1.0);
  int y0 = (int) fy, x0 = (int) fx;
  int y1 = MIN (y0 + 1, s->gh - 1), x1 = MIN (x0 + 1, s->gw - 1);
  float ty = (float) (fy - y0), tx = (float) (fx - x0);
  const float *m = s->map;
  float a = m[y0 * s->gw + x0] * (1 - tx) + m[y0 * s->gw + x1] * tx;
  float b = m[y1 * s->gw + x0] * (1 - tx) + m[y1 * s->gw + x1] * tx;
  return a * (1 - ty) + b * ty;
}

static void
side_update_heat (Side *s, int width, int height, VlColormap cmap)
{
  if (!s->map_valid)
    return;
  if (s->heat != NULL && (cairo_image_surface_get_width (s->heat) != width ||
                          cairo_image_surface_get_height (s->heat) != height))
    g_clear_pointer (&s->heat, cairo_surface_destroy);
  if (s->heat != NULL && !s->heat_dirty)
    return;
  if (s->heat == NULL)
    s->heat = cairo_image_surface_create (CAIRO_FORMAT_RGB24, width, height);
  s->heat_dirty = FALSE;
  cairo_surface_flush (s->heat);
  guint8 *data = cairo_image_surface_get_data (s->heat);
  int stride = cairo_image_surface_get_stride (s->heat);
  const guint32 *lut = vl_colormap_argb (cmap);
  float lo = s->map_min, span = s->map_max - s->map_min;
  for (int y = 0; y < height; y++)
    {
      guint32 *row = (guint32 *) (data + (gsize) y * stride);
      double fy = (y + 0.5) * s->gh / height - 0.5;
      for (int x = 0; x < width; x++)
        {
          double fx = (x + 0.5) * s->gw / width - 0.5;
          float v = map_bilinear (s, fy, fx);
          double t = span > 0 ? (v - lo) / span : 0.0;
          row[x] = lut[vl_colormap_index (t)];
        }
    }
  cairo_surface_mark_dirty (s->heat);
}

/* ------------------------------------------------------------------ layout */

typedef struct {
  double x, y, w, h;
} Rect;

typedef struct {
  int    n_panels;
  Rect   img[2];         /* image rectangle per panel, in panel order */
  int    side_of[2];     /* which side each panel shows */
  double caption_y[2];
  double title_y, footer_y;
  int    font_h;
} Layout;

static void
image_aspect (VlAttentionView *self, double *aw, double *ah)
{
  if (self->image != NULL)
    {
      *aw = self->img_w;
      *ah = self->img_h;
    }
  else if (self->side[0].gw > 0)
    {
      *aw = self->side[0].gw;
      *ah = self->side[0].gh;
    }
  else
    *aw = *ah = 1;
}

static int
text_height (VlAttentionView *self)
{
  g_autoptr(PangoLayout) layout = vl_draw_layout (NULL, GTK_WIDGET (self), 1.0);
  int h;
  vl_draw_text_size (layout, "Ag", NULL, &h);
  return h;
}

static void
compute_layout (VlAttentionView *self, int width, int height, int font_h, Layout *L)
{
  const double pad = 8, gap = 12;
  L->font_h = font_h;
  L->n_panels = self->has_reference ? 2 : 1;
  /* reference (pretrained) on the left, now on the right: the eye reads before → after */
  L->side_of[0] = self->has_reference ? 1 : 0;
  L->side_of[1] = 0;
  double top = pad;
  L->title_y = top;
  if (self->title != NULL)
    top += font_h + 4;
  double caption_h = font_h + 4;
  double footer_h = font_h + 10;
  double avail_w = (width - 2 * pad - gap * (L->n_panels - 1)) / L->n_panels;
  double avail_h = height - top - caption_h - footer_h - pad;
  double aw, ah;
  image_aspect (self, &aw, &ah);
  double scale = MIN (avail_w / aw, avail_h / ah);
  scale = MAX (scale, 0.01);
  double iw = aw * scale, ih = ah * scale;
  double total_w = iw * L->n_panels + gap * (L->n_panels - 1);
  double x0 = round ((width - total_w) / 2);
  for (int p = 0; p < L->n_panels; p++)
    {
      L->caption_y[p] = top;
      L->img[p] = (Rect) { x0 + p * (iw + gap), top + caption_h, iw, ih };
    }
  L->footer_y = top + caption_h + ih + 6;
}

/* The panel and patch at (x, y): patch index or -1; *panel receives the panel. */
static int
hit_test (VlAttentionView *self, const Layout *L, double x, double y, int *panel)
{
  const Side *s = &self->side[0];
  int gh = s->gh, gw = s->gw;
  if (gh <= 0 && self->has_reference)
    gh = self->side[1].gh, gw = self->side[1].gw;
  if (gh <= 0)
    return -1;
  for (int p = 0; p < L->n_panels; p++)
    {
      const Rect *r = &L->img[p];
      if (x >= r->x && x < r->x + r->w && y >= r->y && y < r->y + r->h)
        {
          int col = CLAMP ((int) ((x - r->x) / r->w * gw), 0, gw - 1);
          int row = CLAMP ((int) ((y - r->y) / r->h * gh), 0, gh - 1);
          if (panel != NULL)
            *panel = p;
          return row * gw + col;
        }
    }
  return -1;
}

/* ------------------------------------------------------------------ drawing */

static void
update_maps (VlAttentionView *self)
{
  for (int i = 0; i < 2; i++)
    side_update_map (&self->side[i], self->mode, self->block,
                     self->mode == VL_ATTN_MODE_POOL ? -1 : self->head, self->query);
}

static void
describe_mode (VlAttentionView *self, char *buf, gsize n)
{
  const Side *s = &self->side[0];
  char q[192];
  int gw = s->gw > 0 ? s->gw : MAX (self->side[1].gw, 1);
  if (self->query >= 0 && (s->attn != NULL || (self->has_reference && self->side[1].attn)))
    g_snprintf (q, sizeof q, _("query: patch (%d, %d)"), self->query / gw, self->query % gw);
  else if (s->attn != NULL && !s->has_cls)
    g_strlcpy (q, _("query: mean of the patches"), sizeof q);
  else
    g_strlcpy (q, _("query: CLS"), sizeof q);
  switch (self->mode)
    {
    case VL_ATTN_MODE_HEAD:
      g_snprintf (buf, n, _("block %d · head %d · %s"), self->block, self->head, q);
      break;
    case VL_ATTN_MODE_MEAN_HEADS:
      g_snprintf (buf, n, _("block %d · mean of heads · %s"), self->block, q);
      break;
    case VL_ATTN_MODE_POOL:
      g_strlcpy (buf, _("attention pool · its query · mean of heads"), n);
      break;
    case VL_ATTN_MODE_ROLLOUT:
    default:
      g_snprintf (buf, n, _("rollout · %s"), q);
      break;
    }
}

static void
draw_view (VlAttentionView *self, cairo_t *cr, int width, int height, gboolean hover,
           gboolean background)
{
  VlDrawColors C;
  vl_draw_colors_from_widget (GTK_WIDGET (self), &C);
  if (background)
    {
      vl_draw_set_source (cr, &C.bg, 1.0);
      cairo_paint (cr);
    }
  g_autoptr(PangoLayout) font = vl_draw_layout (cr, GTK_WIDGET (self), 1.0);
  g_autoptr(PangoLayout) small = vl_draw_layout (cr, GTK_WIDGET (self), 0.85);
  int font_h;
  vl_draw_text_size (font, "Ag", NULL, &font_h);
  Layout L;
  compute_layout (self, width, height, font_h, &L);
  update_maps (self);

  if (self->title != NULL)
    {
      vl_draw_set_source (cr, &C.fg, 0.9);
      vl_draw_text (cr, font, self->title, width / 2.0, L.title_y, 0.5, 0.0);
    }

  for (int p = 0; p < L.n_panels; p++)
    {
      int si = L.side_of[p];
      Side *s = &self->side[si];
      const Rect *r = &L.img[p];
      const char *caption = si == 1 ? self->ref_label : self->label;
      if (caption != NULL && *caption)
        {
          vl_draw_set_source (cr, &C.fg, 0.75);
          vl_draw_text (cr, small, caption, r->x + r->w / 2, L.caption_y[p], 0.5, 0.0);
        }

      cairo_save (cr);
      cairo_rectangle (cr, r->x, r->y, r->w, r->h);
      cairo_clip (cr);
      /* the image */
      if (self->image != NULL)
        {
          cairo_save (cr);
          cairo_translate (cr, r->x, r->y);
          cairo_scale (cr, r->w / self->img_w, r->h / self->img_h);
          cairo_set_source_surface (cr, self->image, 0, 0);
          cairo_pattern_set_filter (cairo_get_source (cr), CAIRO_FILTER_GOOD);
          cairo_pattern_set_extend (cairo_get_source (cr), CAIRO_EXTEND_PAD);
          cairo_paint (cr);
          cairo_restore (cr);
        }
      else
        {
          vl_draw_set_source (cr, &C.fg, 0.08);
          cairo_paint (cr);
        }
      /* the heatmap, upsampled to the image's pixels (or 16 px per patch without image) */
      if (s->map_valid)
        {
          int hw = self->image != NULL ? self->img_w : s->gw * 16;
          int hh = self->image != NULL ? self->img_h : s->gh * 16;
          side_update_heat (s, hw, hh, self->cmap);
          cairo_save (cr);
          cairo_translate (cr, r->x, r->y);
          cairo_scale (cr, r->w / hw, r->h / hh);
          cairo_set_source_surface (cr, s->heat, 0, 0);
          cairo_pattern_set_filter (cairo_get_source (cr), CAIRO_FILTER_GOOD);
          cairo_pattern_set_extend (cairo_get_source (cr), CAIRO_EXTEND_PAD);
          cairo_paint_with_alpha (cr, self->opacity);
          cairo_restore (cr);
        }
      else
        {
          const char *why = !side_has_data (s)
                            ? _("no attention yet")
                            : self->mode == VL_ATTN_MODE_POOL &&
                              (self->side[0].pool != NULL || self->side[1].pool != NULL)
                            ? _("the attention pool's map comes with the trained model\n(during "
                                "training only the rollout is sent)")
                            : self->mode == VL_ATTN_MODE_POOL
                            ? _("no attention pool here\n(this backbone pools by its class token "
                                "or the mean; SigLIP's pool by a learnt query)")
                            : _("only the rollout is known\n(per-block attention was not captured)");
          double tw = r->w - 16;
          pango_layout_set_width (small, (int) (tw * PANGO_SCALE));
          pango_layout_set_alignment (small, PANGO_ALIGN_CENTER);
          pango_layout_set_text (small, why, -1);
          int lw, lh;
          pango_layout_get_pixel_size (small, &lw, &lh);
          cairo_rectangle (cr, r->x + r->w / 2 - lw / 2.0 - 6, r->y + r->h / 2 - lh / 2.0 - 4,
                           lw + 12, lh + 8);
          vl_draw_set_source (cr, &C.bg, 0.8);
          cairo_fill (cr);
          vl_draw_set_source (cr, &C.fg, 0.9);
          cairo_move_to (cr, r->x + 8, r->y + r->h / 2 - lh / 2.0);
          pango_cairo_show_layout (cr, small);
          pango_layout_set_width (small, -1);
        }

      /* grid, hovered patch, query patch */
      int gh = s->gh > 0 ? s->gh : self->side[1 - si].gh;
      int gw = s->gw > 0 ? s->gw : self->side[1 - si].gw;
      if (gh > 0 && gw > 0)
        {
          double cw = r->w / gw, ch = r->h / gh;
          if (hover && self->hover_patch >= 0)
            {
              cairo_set_line_width (cr, 1.0);
              cairo_set_source_rgba (cr, 1, 1, 1, 0.18);
              for (int c = 1; c < gw; c++)
                {
                  double x = round (r->x + c * cw) + 0.5;
                  cairo_move_to (cr, x, r->y);
                  cairo_line_to (cr, x, r->y + r->h);
                }
              for (int rr = 1; rr < gh; rr++)
                {
                  double y = round (r->y + rr * ch) + 0.5;
                  cairo_move_to (cr, r->x, y);
                  cairo_line_to (cr, r->x + r->w, y);
                }
              cairo_stroke (cr);
              int hp = self->hover_patch;
              if (hp < gh * gw)
                {
                  cairo_rectangle (cr, r->x + (hp % gw) * cw + 0.5, r->y + (hp / gw) * ch + 0.5,
                                   cw - 1, ch - 1);
                  cairo_set_source_rgba (cr, 1, 1, 1, 0.7);
                  cairo_stroke (cr);
                }
            }
          gboolean query_used = self->query >= 0 && self->query < gh * gw && s->attn != NULL;
          if (query_used)
            {
              double x = r->x + (self->query % gw) * cw, y = r->y + (self->query / gw) * ch;
              cairo_rectangle (cr, x + 1, y + 1, cw - 2, ch - 2);
              cairo_set_line_width (cr, 3.0);
              cairo_set_source_rgba (cr, 0, 0, 0, 0.7);
              cairo_stroke_preserve (cr);
              cairo_set_line_width (cr, 1.5);
              cairo_set_source_rgba (cr, 1, 1, 1, 1);
              cairo_stroke (cr);
            }
        }
      cairo_restore (cr);
      vl_draw_set_source (cr, &C.fg, 0.25);
      cairo_set_line_width (cr, 1.0);
      cairo_rectangle (cr, round (r->x) - 0.5, round (r->y) - 0.5, round (r->w) + 1,
                       round (r->h) + 1);
      cairo_stroke (cr);
    }

  /* footer: the colour bar and what is shown */
  {
    char desc[512];
    describe_mode (self, desc, sizeof desc);
    int dw;
    vl_draw_text_size (small, desc, &dw, NULL);
    int lw, hw;
    vl_draw_text_size (small, "low", &lw, NULL);
    vl_draw_text_size (small, "high", &hw, NULL);
    double bar_w = 90, total = lw + 6 + bar_w + 6 + hw + 18 + dw;
    double x = round ((width - total) / 2), y = L.footer_y;
    double cy = y + font_h / 2.0;
    vl_draw_set_source (cr, &C.fg, 0.7);
    vl_draw_text (cr, small, _("low"), x, cy, 0.0, 0.5);
    x += lw + 6;
    const float (*lut)[3] = vl_colormap_lut (self->cmap);
    cairo_pattern_t *grad = cairo_pattern_create_linear (x, 0, x + bar_w, 0);
    for (int i = 0; i <= 8; i++)
      {
        const float *e = lut[MIN (i * 32, 255)];
        cairo_pattern_add_color_stop_rgb (grad, i / 8.0, e[0], e[1], e[2]);
      }
    cairo_rectangle (cr, x, cy - 4, bar_w, 8);
    cairo_set_source (cr, grad);
    cairo_fill (cr);
    cairo_pattern_destroy (grad);
    x += bar_w + 6;
    vl_draw_set_source (cr, &C.fg, 0.7);
    vl_draw_text (cr, small, _("high"), x, cy, 0.0, 0.5);
    x += hw + 18;
    vl_draw_text (cr, small, desc, x, cy, 0.0, 0.5);
  }
}

/* ------------------------------------------------------------------ GtkWidget */

static void
vl_attention_view_snapshot (GtkWidget *widget, GtkSnapshot *snapshot)
{
  VlAttentionView *self = VL_ATTENTION_VIEW (widget);
  int w = gtk_widget_get_width (widget), h = gtk_widget_get_height (widget);
  if (w <= 0 || h <= 0)
    return;
  cairo_t *cr = gtk_snapshot_append_cairo (snapshot, &GRAPHENE_RECT_INIT (0, 0, w, h));
  draw_view (self, cr, w, h, TRUE, FALSE);
  cairo_destroy (cr);
}

static void
natural_size (VlAttentionView *self, int font_h, int *width, int *height)
{
  double aw, ah;
  image_aspect (self, &aw, &ah);
  /* the image at twice its size up to 448 px high, at least 224 */
  double ih = self->image != NULL ? CLAMP (self->img_h * 2.0, 224, 448) : 300;
  double iw = ih * aw / ah;
  int n = self->has_reference ? 2 : 1;
  *width = (int) ceil (iw * n + 12 * (n - 1) + 16);
  *height = (int) ceil (8 + (self->title ? font_h + 4 : 0) + font_h + 4 + ih + 6 + font_h + 10 + 8);
}

static void
vl_attention_view_measure (GtkWidget *widget, GtkOrientation orientation, int for_size,
                           int *minimum, int *natural, int *minimum_baseline,
                           int *natural_baseline)
{
  VlAttentionView *self = VL_ATTENTION_VIEW (widget);
  int w, h;
  natural_size (self, text_height (self), &w, &h);
  if (orientation == GTK_ORIENTATION_HORIZONTAL)
    {
      *minimum = self->has_reference ? 200 : 120;
      *natural = w;
    }
  else
    {
      *minimum = 140;
      *natural = h;
    }
}

static gboolean
query_tooltip_cb (GtkWidget *widget, int x, int y, gboolean keyboard, GtkTooltip *tooltip,
                  VlAttentionView *self)
{
  Layout L;
  compute_layout (self, gtk_widget_get_width (widget), gtk_widget_get_height (widget),
                  text_height (self), &L);
  int panel = 0;
  int patch = hit_test (self, &L, x, y, &panel);
  if (patch < 0)
    return FALSE;
  update_maps (self);
  const Side *s = &self->side[L.side_of[panel]];
  int gw = s->gw > 0 ? s->gw : self->side[0].gw;
  GString *t = g_string_new (NULL);
  g_string_append_printf (t, _("patch %d (row %d, column %d)"), patch, patch / gw, patch % gw);
  if (s->map_valid && patch < s->gh * s->gw)
    {
      float v = s->map[patch];
      double norm = s->map_max > s->map_min ? (v - s->map_min) / (s->map_max - s->map_min) : 0;
      g_string_append_printf (t, _("\nattention %.4g (%.0f%% of this map's range)"), v, norm * 100);
    }
  if (s->attn != NULL)
    g_string_append (t, patch == self->query ? _("\nclick: back to the CLS query")
                                             : _("\nclick: show where this patch looks"));
  gtk_tooltip_set_text (tooltip, t->str);
  g_string_free (t, TRUE);
  return TRUE;
}

static void
motion_cb (GtkEventControllerMotion *c, double x, double y, VlAttentionView *self)
{
  vl_attention_view_hover_at (self, x, y);
}

static void
leave_cb (GtkEventControllerMotion *c, VlAttentionView *self)
{
  vl_attention_view_hover_at (self, -1, -1);
}

static void
pressed_cb (GtkGestureClick *gesture, int n_press, double x, double y, VlAttentionView *self)
{
  if (vl_attention_view_patch_at (self, x, y) >= 0)
    {
      vl_attention_view_select_patch_at (self, x, y);
      gtk_gesture_set_state (GTK_GESTURE (gesture), GTK_EVENT_SEQUENCE_CLAIMED);
    }
}

static gboolean
key_pressed_cb (GtkEventControllerKey *c, guint keyval, guint keycode, GdkModifierType state,
                VlAttentionView *self)
{
  if (keyval == GDK_KEY_Escape && self->query >= 0)
    {
      vl_attention_view_set_query_patch (self, -1);
      return TRUE;
    }
  return FALSE;
}

static void
vl_attention_view_get_property (GObject *object, guint prop_id, GValue *value,
                                GParamSpec *pspec)
{
  VlAttentionView *self = VL_ATTENTION_VIEW (object);
  switch (prop_id)
    {
    case PROP_MODE: g_value_set_enum (value, self->mode); break;
    case PROP_BLOCK: g_value_set_int (value, self->block); break;
    case PROP_HEAD: g_value_set_int (value, self->head); break;
    case PROP_QUERY_PATCH: g_value_set_int (value, self->query); break;
    case PROP_OPACITY: g_value_set_double (value, self->opacity); break;
    case PROP_COLORMAP: g_value_set_enum (value, self->cmap); break;
    case PROP_TITLE: g_value_set_string (value, self->title); break;
    case PROP_LABEL: g_value_set_string (value, self->label); break;
    case PROP_REFERENCE_LABEL: g_value_set_string (value, self->ref_label); break;
    case PROP_DEPTH: g_value_set_int (value, vl_attention_view_get_depth (self)); break;
    case PROP_HEADS: g_value_set_int (value, vl_attention_view_get_heads (self)); break;
    case PROP_HAS_ATTENTION: g_value_set_boolean (value, self->side[0].attn != NULL); break;
    case PROP_HAS_REFERENCE: g_value_set_boolean (value, self->has_reference); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
vl_attention_view_set_property (GObject *object, guint prop_id, const GValue *value,
                                GParamSpec *pspec)
{
  VlAttentionView *self = VL_ATTENTION_VIEW (object);
  switch (prop_id)
    {
    case PROP_MODE: vl_attention_view_set_mode (self, g_value_get_enum (value)); break;
    case PROP_BLOCK: vl_attention_view_set_block (self, g_value_get_int (value)); break;
    case PROP_HEAD: vl_attention_view_set_head (self, g_value_get_int (value)); break;
    case PROP_QUERY_PATCH:
      vl_attention_view_set_query_patch (self, g_value_get_int (value));
      break;
    case PROP_OPACITY: vl_attention_view_set_opacity (self, g_value_get_double (value)); break;
    case PROP_COLORMAP: vl_attention_view_set_colormap (self, g_value_get_enum (value)); break;
    case PROP_TITLE: vl_attention_view_set_title (self, g_value_get_string (value)); break;
    case PROP_LABEL:
      vl_attention_view_set_labels (self, g_value_get_string (value), self->ref_label);
      break;
    case PROP_REFERENCE_LABEL:
      vl_attention_view_set_labels (self, self->label, g_value_get_string (value));
      break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
vl_attention_view_finalize (GObject *object)
{
  VlAttentionView *self = VL_ATTENTION_VIEW (object);
  g_clear_pointer (&self->image, cairo_surface_destroy);
  side_clear (&self->side[0]);
  side_clear (&self->side[1]);
  g_free (self->title);
  g_free (self->label);
  g_free (self->ref_label);
  G_OBJECT_CLASS (vl_attention_view_parent_class)->finalize (object);
}

static void
vl_attention_view_class_init (VlAttentionViewClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->finalize = vl_attention_view_finalize;
  object_class->get_property = vl_attention_view_get_property;
  object_class->set_property = vl_attention_view_set_property;
  widget_class->snapshot = vl_attention_view_snapshot;
  widget_class->measure = vl_attention_view_measure;

  const GParamFlags rw = G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS;
  const GParamFlags ro = G_PARAM_READABLE | G_PARAM_STATIC_STRINGS;
  props[PROP_MODE] = g_param_spec_enum ("mode", NULL, NULL, VL_TYPE_ATTN_MODE,
                                        VL_ATTN_MODE_ROLLOUT, rw);
  props[PROP_BLOCK] = g_param_spec_int ("block", NULL, NULL, 0, G_MAXINT, 0, rw);
  props[PROP_HEAD] = g_param_spec_int ("head", NULL, NULL, 0, G_MAXINT, 0, rw);
  props[PROP_QUERY_PATCH] = g_param_spec_int ("query-patch", NULL, NULL, -1, G_MAXINT, -1, rw);
  props[PROP_OPACITY] = g_param_spec_double ("opacity", NULL, NULL, 0.0, 1.0, 0.6, rw);
  props[PROP_COLORMAP] = g_param_spec_enum ("colormap", NULL, NULL, VL_TYPE_COLORMAP,
                                            VL_COLORMAP_INFERNO, rw);
  props[PROP_TITLE] = g_param_spec_string ("title", NULL, NULL, NULL, rw);
  props[PROP_LABEL] = g_param_spec_string ("label", NULL, NULL, "now", rw);
  props[PROP_REFERENCE_LABEL] = g_param_spec_string ("reference-label", NULL, NULL,
                                                     "pretrained", rw);
  props[PROP_DEPTH] = g_param_spec_int ("depth", NULL, NULL, 0, G_MAXINT, 0, ro);
  props[PROP_HEADS] = g_param_spec_int ("heads", NULL, NULL, 0, G_MAXINT, 0, ro);
  props[PROP_HAS_ATTENTION] = g_param_spec_boolean ("has-attention", NULL, NULL, FALSE, ro);
  props[PROP_HAS_REFERENCE] = g_param_spec_boolean ("has-reference", NULL, NULL, FALSE, ro);
  g_object_class_install_properties (object_class, N_PROPS, props);

  gtk_widget_class_install_property_action (widget_class, "attention.mode", "mode");
  gtk_widget_class_install_property_action (widget_class, "attention.colormap", "colormap");
  gtk_widget_class_set_css_name (widget_class, "vl-attention-view");
  gtk_widget_class_set_accessible_role (widget_class, GTK_ACCESSIBLE_ROLE_IMG);
}

static void
vl_attention_view_init (VlAttentionView *self)
{
  self->mode = VL_ATTN_MODE_ROLLOUT;
  self->query = -1;
  self->opacity = 0.6;
  self->cmap = VL_COLORMAP_INFERNO;
  self->label = g_strdup (_("now"));
  self->ref_label = g_strdup (_("pretrained"));
  self->hover_patch = -1;
  for (int i = 0; i < 2; i++)
    self->side[i].map_dirty = self->side[i].heat_dirty = TRUE;

  GtkWidget *w = GTK_WIDGET (self);
  GtkEventController *motion = gtk_event_controller_motion_new ();
  g_signal_connect (motion, "motion", G_CALLBACK (motion_cb), self);
  g_signal_connect (motion, "leave", G_CALLBACK (leave_cb), self);
  gtk_widget_add_controller (w, motion);
  GtkGesture *click = gtk_gesture_click_new ();
  gtk_gesture_single_set_button (GTK_GESTURE_SINGLE (click), GDK_BUTTON_PRIMARY);
  g_signal_connect (click, "pressed", G_CALLBACK (pressed_cb), self);
  gtk_widget_add_controller (w, GTK_EVENT_CONTROLLER (click));
  GtkEventController *keys = gtk_event_controller_key_new ();
  g_signal_connect (keys, "key-pressed", G_CALLBACK (key_pressed_cb), self);
  gtk_widget_add_controller (w, keys);
  gtk_widget_set_focusable (w, TRUE);
  gtk_widget_set_has_tooltip (w, TRUE);
  g_signal_connect (w, "query-tooltip", G_CALLBACK (query_tooltip_cb), self);
}

/* ------------------------------------------------------------------ public API */

GtkWidget *
vl_attention_view_new (void)
{
  return g_object_new (VL_TYPE_ATTENTION_VIEW, NULL);
}

static void
invalidate_maps (VlAttentionView *self)
{
  for (int i = 0; i < 2; i++)
    self->side[i].map_dirty = TRUE;
  gtk_widget_queue_draw (GTK_WIDGET (self));
}

void
vl_attention_view_set_image (VlAttentionView *view, const VlImage *img)
{
  g_return_if_fail (VL_IS_ATTENTION_VIEW (view));
  g_clear_pointer (&view->image, cairo_surface_destroy);
  view->img_w = view->img_h = 0;
  if (img != NULL && img->width > 0 && img->height > 0 && img->pixels != NULL &&
      img->channels >= 1 && img->channels <= 4)
    {
      cairo_surface_t *s = cairo_image_surface_create (CAIRO_FORMAT_RGB24, img->width,
                                                       img->height);
      guint8 *data = cairo_image_surface_get_data (s);
      int stride = cairo_image_surface_get_stride (s);
      const int C = img->channels;
      for (int y = 0; y < img->height; y++)
        {
          guint32 *row = (guint32 *) (data + (gsize) y * stride);
          const uint8_t *src = img->pixels + (gsize) y * img->width * C;
          for (int x = 0; x < img->width; x++)
            {
              const uint8_t *p = src + (gsize) x * C;
              guint32 r = p[0], g = C >= 3 ? p[1] : p[0], b = C >= 3 ? p[2] : p[0];
              row[x] = 0xff000000u | (r << 16) | (g << 8) | b;
            }
        }
      cairo_surface_mark_dirty (s);
      view->image = s;
      view->img_w = img->width;
      view->img_h = img->height;
    }
  /* the heat surfaces follow the image's size */
  for (int i = 0; i < 2; i++)
    view->side[i].heat_dirty = TRUE;
  gtk_widget_queue_resize (GTK_WIDGET (view));
}

static gboolean
side_set_attention (VlAttentionView *view, int si, const float *attn, int depth, int heads,
                    int T, int n_prefix, gboolean has_cls, int gh, int gw)
{
  if (depth <= 0 || heads <= 0 || gh <= 0 || gw <= 0 || n_prefix < 0 ||
      T != n_prefix + gh * gw || (has_cls && n_prefix < 1))
    {
      g_critical ("vl_attention_view: attention of %d blocks, %d heads, %d tokens does not fit "
                  "%d prefix tokens and a %dx%d grid", depth, heads, T, n_prefix, gh, gw);
      return FALSE;
    }
  Side *s = &view->side[si];
  side_clear (s);
  gsize n = (gsize) depth * heads * T * T;
  s->attn = g_memdup2 (attn, n * sizeof (float));
  s->depth = depth;
  s->heads = heads;
  s->T = T;
  s->n_prefix = n_prefix;
  s->has_cls = has_cls;
  s->scratch = g_new (float, 3 * (gsize) T);
  side_set_grid (s, gh, gw);
  return TRUE;
}

static gboolean
side_set_rollout (VlAttentionView *view, int si, const float *rollout, int gh, int gw)
{
  if (gh <= 0 || gw <= 0)
    {
      g_critical ("vl_attention_view: rollout grid %dx%d", gh, gw);
      return FALSE;
    }
  Side *s = &view->side[si];
  side_clear (s);
  s->rollout = g_memdup2 (rollout, sizeof (float) * gh * gw);
  side_set_grid (s, gh, gw);
  return TRUE;
}

static void
after_data_change (VlAttentionView *view)
{
  GObject *o = G_OBJECT (view);
  g_object_freeze_notify (o);
  int depth = vl_attention_view_get_depth (view), heads = vl_attention_view_get_heads (view);
  if (depth > 0 && view->block >= depth)
    vl_attention_view_set_block (view, depth - 1);
  if (heads > 0 && view->head >= heads)
    vl_attention_view_set_head (view, heads - 1);
  int gh = 0, gw = 0;
  vl_attention_view_get_grid (view, &gh, &gw);
  if (view->query >= gh * gw)
    vl_attention_view_set_query_patch (view, -1);
  g_object_notify_by_pspec (o, props[PROP_DEPTH]);
  g_object_notify_by_pspec (o, props[PROP_HEADS]);
  g_object_notify_by_pspec (o, props[PROP_HAS_ATTENTION]);
  g_object_notify_by_pspec (o, props[PROP_HAS_REFERENCE]);
  g_object_thaw_notify (o);
  invalidate_maps (view);
}

VlImage *
vl_attention_view_get_image (VlAttentionView *view)
{
  g_return_val_if_fail (VL_IS_ATTENTION_VIEW (view), NULL);
  if (view->image == NULL)
    return NULL;
  cairo_surface_flush (view->image);
  const guint8 *data = cairo_image_surface_get_data (view->image);
  const int stride = cairo_image_surface_get_stride (view->image);
  VlImage *img = vl_image_new (view->img_w, view->img_h, 3);
  for (int y = 0; y < view->img_h; y++)
    {
      const guint32 *row = (const guint32 *) (data + (gsize) y * stride);
      for (int x = 0; x < view->img_w; x++)
        {
          uint8_t *p = img->pixels + ((gsize) y * view->img_w + x) * 3;
          p[0] = (row[x] >> 16) & 0xff;
          p[1] = (row[x] >> 8) & 0xff;
          p[2] = row[x] & 0xff;
        }
    }
  return img;
}

gboolean
vl_attention_view_set_attention (VlAttentionView *view, const float *attn, int depth,
                                 int heads, int T, int n_prefix, gboolean has_cls, int gh,
                                 int gw)
{
  g_return_val_if_fail (VL_IS_ATTENTION_VIEW (view), FALSE);
  g_return_val_if_fail (attn != NULL, FALSE);
  if (!side_set_attention (view, 0, attn, depth, heads, T, n_prefix, has_cls, gh, gw))
    return FALSE;
  after_data_change (view);
  return TRUE;
}

gboolean
vl_attention_view_set_rollout (VlAttentionView *view, const float *rollout, int gh, int gw)
{
  g_return_val_if_fail (VL_IS_ATTENTION_VIEW (view), FALSE);
  g_return_val_if_fail (rollout != NULL, FALSE);
  if (!side_set_rollout (view, 0, rollout, gh, gw))
    return FALSE;
  after_data_change (view);
  return TRUE;
}

gboolean
vl_attention_view_set_reference_attention (VlAttentionView *view, const float *attn,
                                           int depth, int heads, int T, int n_prefix,
                                           gboolean has_cls, int gh, int gw)
{
  g_return_val_if_fail (VL_IS_ATTENTION_VIEW (view), FALSE);
  if (attn == NULL)
    {
      side_clear (&view->side[1]);
      view->has_reference = FALSE;
    }
  else if (side_set_attention (view, 1, attn, depth, heads, T, n_prefix, has_cls, gh, gw))
    view->has_reference = TRUE;
  else
    return FALSE;
  after_data_change (view);
  gtk_widget_queue_resize (GTK_WIDGET (view));
  return TRUE;
}

gboolean
vl_attention_view_set_reference_rollout (VlAttentionView *view, const float *rollout, int gh,
                                         int gw)
{
  g_return_val_if_fail (VL_IS_ATTENTION_VIEW (view), FALSE);
  if (rollout == NULL)
    {
      side_clear (&view->side[1]);
      view->has_reference = FALSE;
    }
  else if (side_set_rollout (view, 1, rollout, gh, gw))
    view->has_reference = TRUE;
  else
    return FALSE;
  after_data_change (view);
  gtk_widget_queue_resize (GTK_WIDGET (view));
  return TRUE;
}

gboolean
vl_attention_view_set_pool (VlAttentionView *view, gboolean reference, const float *pool,
                            int heads, int gh, int gw)
{
  g_return_val_if_fail (VL_IS_ATTENTION_VIEW (view), FALSE);
  Side *s = &view->side[reference ? 1 : 0];
  if (pool != NULL && (heads <= 0 || gh != s->gh || gw != s->gw || !side_has_data (s)))
    {
      g_critical ("vl_attention_view: a pool map of %d heads over %dx%d patches for a side of "
                  "%dx%d%s", heads, gh, gw, s->gh, s->gw, side_has_data (s) ? "" : " without "
                  "attention");
      return FALSE;
    }
  g_clear_pointer (&s->pool, g_free);
  s->pool_heads = 0;
  if (pool != NULL)
    {
      s->pool = g_memdup2 (pool, sizeof (float) * heads * gh * gw);
      s->pool_heads = heads;
    }
  s->map_dirty = s->heat_dirty = TRUE;
  invalidate_maps (view);
  return TRUE;
}

void
vl_attention_view_clear_maps (VlAttentionView *view)
{
  g_return_if_fail (VL_IS_ATTENTION_VIEW (view));
  side_clear (&view->side[0]);
  side_clear (&view->side[1]);
  view->has_reference = FALSE;
  after_data_change (view);
  gtk_widget_queue_resize (GTK_WIDGET (view));
}

void
vl_attention_view_set_mode (VlAttentionView *view, VlAttnMode mode)
{
  g_return_if_fail (VL_IS_ATTENTION_VIEW (view));
  g_return_if_fail (mode <= VL_ATTN_MODE_POOL);
  if (view->mode == mode)
    return;
  view->mode = mode;
  invalidate_maps (view);
  g_object_notify_by_pspec (G_OBJECT (view), props[PROP_MODE]);
}

VlAttnMode
vl_attention_view_get_mode (VlAttentionView *view)
{
  g_return_val_if_fail (VL_IS_ATTENTION_VIEW (view), VL_ATTN_MODE_ROLLOUT);
  return view->mode;
}

void
vl_attention_view_set_block (VlAttentionView *view, int block)
{
  g_return_if_fail (VL_IS_ATTENTION_VIEW (view));
  int depth = vl_attention_view_get_depth (view);
  block = MAX (block, 0);
  if (depth > 0)
    block = MIN (block, depth - 1);
  if (view->block == block)
    return;
  view->block = block;
  if (view->mode != VL_ATTN_MODE_ROLLOUT)
    invalidate_maps (view);
  g_object_notify_by_pspec (G_OBJECT (view), props[PROP_BLOCK]);
}

int
vl_attention_view_get_block (VlAttentionView *view)
{
  g_return_val_if_fail (VL_IS_ATTENTION_VIEW (view), 0);
  return view->block;
}

void
vl_attention_view_set_head (VlAttentionView *view, int head)
{
  g_return_if_fail (VL_IS_ATTENTION_VIEW (view));
  int heads = vl_attention_view_get_heads (view);
  head = MAX (head, 0);
  if (heads > 0)
    head = MIN (head, heads - 1);
  if (view->head == head)
    return;
  view->head = head;
  if (view->mode == VL_ATTN_MODE_HEAD)
    invalidate_maps (view);
  g_object_notify_by_pspec (G_OBJECT (view), props[PROP_HEAD]);
}

int
vl_attention_view_get_head (VlAttentionView *view)
{
  g_return_val_if_fail (VL_IS_ATTENTION_VIEW (view), 0);
  return view->head;
}

void
vl_attention_view_set_query_patch (VlAttentionView *view, int patch)
{
  g_return_if_fail (VL_IS_ATTENTION_VIEW (view));
  int gh = 0, gw = 0;
  vl_attention_view_get_grid (view, &gh, &gw);
  if (patch < 0 || (gh > 0 && patch >= gh * gw))
    patch = -1;
  if (view->query == patch)
    return;
  view->query = patch;
  invalidate_maps (view);
  g_object_notify_by_pspec (G_OBJECT (view), props[PROP_QUERY_PATCH]);
}

int
vl_attention_view_get_query_patch (VlAttentionView *view)
{
  g_return_val_if_fail (VL_IS_ATTENTION_VIEW (view), -1);
  return view->query;
}

void
vl_attention_view_set_opacity (VlAttentionView *view, double opacity)
{
  g_return_if_fail (VL_IS_ATTENTION_VIEW (view));
  opacity = CLAMP (opacity, 0.0, 1.0);
  if (view->opacity == opacity)
    return;
  view->opacity = opacity;
  gtk_widget_queue_draw (GTK_WIDGET (view));
  g_object_notify_by_pspec (G_OBJECT (view), props[PROP_OPACITY]);
}

double
vl_attention_view_get_opacity (VlAttentionView *view)
{
  g_return_val_if_fail (VL_IS_ATTENTION_VIEW (view), 0.0);
  return view->opacity;
}

void
vl_attention_view_set_colormap (VlAttentionView *view, VlColormap cmap)
{
  g_return_if_fail (VL_IS_ATTENTION_VIEW (view));
  g_return_if_fail (cmap < VL_N_COLORMAPS);
  if (view->cmap == cmap)
    return;
  view->cmap = cmap;
  for (int i = 0; i < 2; i++)
    view->side[i].heat_dirty = TRUE;
  gtk_widget_queue_draw (GTK_WIDGET (view));
  g_object_notify_by_pspec (G_OBJECT (view), props[PROP_COLORMAP]);
}

VlColormap
vl_attention_view_get_colormap (VlAttentionView *view)
{
  g_return_val_if_fail (VL_IS_ATTENTION_VIEW (view), VL_COLORMAP_VIRIDIS);
  return view->cmap;
}

void
vl_attention_view_set_title (VlAttentionView *view, const char *title)
{
  g_return_if_fail (VL_IS_ATTENTION_VIEW (view));
  if (g_strcmp0 (view->title, title) == 0)
    return;
  g_free (view->title);
  view->title = g_strdup (title);
  gtk_widget_queue_resize (GTK_WIDGET (view));
  g_object_notify_by_pspec (G_OBJECT (view), props[PROP_TITLE]);
}

void
vl_attention_view_set_labels (VlAttentionView *view, const char *label,
                              const char *reference_label)
{
  g_return_if_fail (VL_IS_ATTENTION_VIEW (view));
  if (g_strcmp0 (view->label, label) != 0)
    {
      char *l = g_strdup (label);
      g_free (view->label);
      view->label = l;
      g_object_notify_by_pspec (G_OBJECT (view), props[PROP_LABEL]);
    }
  if (g_strcmp0 (view->ref_label, reference_label) != 0)
    {
      char *l = g_strdup (reference_label);
      g_free (view->ref_label);
      view->ref_label = l;
      g_object_notify_by_pspec (G_OBJECT (view), props[PROP_REFERENCE_LABEL]);
    }
  gtk_widget_queue_draw (GTK_WIDGET (view));
}

int
vl_attention_view_get_depth (VlAttentionView *view)
{
  g_return_val_if_fail (VL_IS_ATTENTION_VIEW (view), 0);
  return MAX (view->side[0].depth, view->side[1].depth);
}

int
vl_attention_view_get_heads (VlAttentionView *view)
{
  g_return_val_if_fail (VL_IS_ATTENTION_VIEW (view), 0);
  return MAX (view->side[0].heads, view->side[1].heads);
}

void
vl_attention_view_get_grid (VlAttentionView *view, int *gh, int *gw)
{
  g_return_if_fail (VL_IS_ATTENTION_VIEW (view));
  const Side *s = view->side[0].gh > 0 ? &view->side[0] : &view->side[1];
  if (gh != NULL)
    *gh = s->gh;
  if (gw != NULL)
    *gw = s->gw;
}

gboolean
vl_attention_view_get_heatmap (VlAttentionView *view, gboolean reference, float *out)
{
  g_return_val_if_fail (VL_IS_ATTENTION_VIEW (view), FALSE);
  g_return_val_if_fail (out != NULL, FALSE);
  update_maps (view);
  const Side *s = &view->side[reference ? 1 : 0];
  if (!s->map_valid)
    return FALSE;
  memcpy (out, s->map, sizeof (float) * s->gh * s->gw);
  return TRUE;
}

static void
widget_layout (VlAttentionView *view, Layout *L)
{
  compute_layout (view, gtk_widget_get_width (GTK_WIDGET (view)),
                  gtk_widget_get_height (GTK_WIDGET (view)), text_height (view), L);
}

gboolean
vl_attention_view_get_image_rect (VlAttentionView *view, gboolean reference,
                                  graphene_rect_t *rect)
{
  g_return_val_if_fail (VL_IS_ATTENTION_VIEW (view), FALSE);
  g_return_val_if_fail (rect != NULL, FALSE);
  Layout L;
  widget_layout (view, &L);
  for (int p = 0; p < L.n_panels; p++)
    if (L.side_of[p] == (reference ? 1 : 0))
      {
        graphene_rect_init (rect, L.img[p].x, L.img[p].y, L.img[p].w, L.img[p].h);
        return TRUE;
      }
  return FALSE;
}

int
vl_attention_view_patch_at (VlAttentionView *view, double x, double y)
{
  g_return_val_if_fail (VL_IS_ATTENTION_VIEW (view), -1);
  Layout L;
  widget_layout (view, &L);
  return hit_test (view, &L, x, y, NULL);
}

int
vl_attention_view_select_patch_at (VlAttentionView *view, double x, double y)
{
  g_return_val_if_fail (VL_IS_ATTENTION_VIEW (view), -1);
  int patch = vl_attention_view_patch_at (view, x, y);
  if (patch >= 0)
    vl_attention_view_set_query_patch (view, patch == view->query ? -1 : patch);
  return view->query;
}

void
vl_attention_view_hover_at (VlAttentionView *view, double x, double y)
{
  g_return_if_fail (VL_IS_ATTENTION_VIEW (view));
  int patch = x >= 0 && y >= 0 ? vl_attention_view_patch_at (view, x, y) : -1;
  if (patch == view->hover_patch)
    return;
  view->hover_patch = patch;
  gtk_widget_queue_draw (GTK_WIDGET (view));
}

gboolean
vl_attention_view_export_png (VlAttentionView *view, const char *path, int width, int height,
                              GError **error)
{
  g_return_val_if_fail (VL_IS_ATTENTION_VIEW (view), FALSE);
  g_return_val_if_fail (path != NULL, FALSE);
  if (width <= 0 || height <= 0)
    natural_size (view, text_height (view), &width, &height);
  if (width > 16384 || height > 16384)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "%s: image size %dx%d out of range (1 to 16384)", path, width, height);
      return FALSE;
    }
  cairo_surface_t *s = cairo_image_surface_create (CAIRO_FORMAT_ARGB32, width, height);
  cairo_t *cr = cairo_create (s);
  draw_view (view, cr, width, height, FALSE, TRUE);
  cairo_destroy (cr);
  gboolean ok = vl_draw_write_png (s, path, error);
  cairo_surface_destroy (s);
  return ok;
}

VlImage *
vl_attention_crop_for_display (const VlImage *img, const VlPreprocess *pp)
{
  g_return_val_if_fail (img != NULL && pp != NULL, NULL);
  /* vl_preprocess_eval with mean 0 and std 1 gives px / 255 exactly: undo that */
  VlPreprocess raw = *pp;
  for (int c = 0; c < 4; c++)
    {
      raw.mean[c] = 0.0f;
      raw.std[c] = 1.0f;
    }
  const int S = pp->size, C = pp->channels;
  g_autofree float *chw = g_new (float, (gsize) C * S * S);
  vl_preprocess_eval (img, &raw, chw);
  VlImage *out = vl_image_new (S, S, 3);
  for (int y = 0; y < S; y++)
    for (int x = 0; x < S; x++)
      for (int c = 0; c < 3; c++)
        {
          float v = chw[(gsize) (C == 1 ? 0 : c) * S * S + (gsize) y * S + x];
          out->pixels[((gsize) y * S + x) * 3 + c] = (uint8_t) CLAMP (lrintf (v * 255.0f), 0, 255);
        }
  return out;
}
