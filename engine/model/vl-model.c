/* vl-model.c: the parameter table, layer groups, heads, gradients, AdamW, saving. Loading each
 * checkpoint family lives in vl-families.c, export in vl-export.c. */
#include "vl-model-private.h"
#include "vl-pool.h"
#include "vl-kernels.h"
#include "vl-rng.h"
#include "vl-stem.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ parameter table */

static void
param_clear (gpointer data)
{
  VlParam *p = data;
  g_free (p->name);
  for (int i = 0; i < p->n_src; i++)
    g_free (p->src[i].name);
}

VlModel *
vl_model_alloc (void)
{
  VlModel *m = g_new0 (VlModel, 1);
  m->params = g_array_new (FALSE, TRUE, sizeof (VlParam));
  g_array_set_clear_func (m->params, param_clear);
  m->group_names = g_ptr_array_new_with_free_func (g_free);
  memset (&m->ix, 0xff, sizeof m->ix);   /* every index -1 */
  m->ix.block = NULL;
  return m;
}

int
vl_model_add_param (VlModel *m, const char *name, int group, int comp, int ndim,
                    const int64_t *shape)
{
  VlParam p = { 0 };
  p.name = g_strdup (name);
  p.ndim = ndim;
  p.numel = 1;
  for (int i = 0; i < ndim; i++)
    {
      p.shape[i] = shape[i];
      p.numel *= shape[i];
    }
  p.group = group;
  p.comp = comp;
  /* timm's convention: no weight decay on 1-D parameters (biases, norms, layer-scale gammas),
   * position embeddings and prefix tokens */
  p.decay = ndim >= 2 && strcmp (name, "pos_embed") != 0 && strcmp (name, "cls_token") != 0 &&
            strcmp (name, "dist_token") != 0 && strcmp (name, "reg_token") != 0;
  g_array_append_val (m->params, p);
  int index = (int) m->params->len - 1;
  g_autofree char *source = g_strconcat (m->source_prefix ? m->source_prefix : "", name, NULL);
  vl_model_add_source (m, index, source, ndim, shape, 0, FALSE);
  return index;
}

void
vl_model_add_source (VlModel *m, int index, const char *name, int ndim, const int64_t *shape,
                     int64_t row0, gboolean transpose)
{
  VlParam *p = vl_param (m, index);
  /* the first source given by a family replaces the default (the internal name itself) */
  g_autofree char *dflt = g_strconcat (m->source_prefix ? m->source_prefix : "", p->name, NULL);
  if (p->n_src == 1 && strcmp (p->src[0].name, dflt) == 0 && strcmp (name, dflt) != 0)
    {
      g_free (p->src[0].name);
      p->n_src = 0;
    }
  g_return_if_fail (p->n_src < VL_MAX_SOURCES);
  VlSource *s = &p->src[p->n_src++];
  s->name = g_strdup (name);
  s->ndim = ndim;
  memcpy (s->shape, shape, sizeof (int64_t) * ndim);
  s->row0 = row0;
  s->transpose = transpose;
  s->sliced = FALSE;
  s->slice0 = 0;
}

void
vl_model_add_source_slice (VlModel *m, int index, const char *name, int ndim,
                           const int64_t *shape, int64_t slice0)
{
  vl_model_add_source (m, index, name, ndim, shape, 0, FALSE);
  VlParam *p = vl_param (m, index);
  p->src[p->n_src - 1].sliced = TRUE;
  p->src[p->n_src - 1].slice0 = slice0;
}

/* Points params[first .. n) into block `which`, allocating it (zeroed). Each tensor starts on a
 * 64-byte boundary. */
static void
layout_block (VlModel *m, int which, int first, int n)
{
  int64_t total = 0;
  for (int i = first; i < n; i++)
    total += (vl_param (m, i)->numel + 15) & ~(int64_t) 15;
  g_aligned_free (m->block[which]);
  g_aligned_free (m->grad_block[which]);
  g_aligned_free (m->m_block[which]);
  g_aligned_free (m->v_block[which]);
  m->grad_block[which] = m->m_block[which] = m->v_block[which] = NULL;
  m->block[which] = NULL;
  m->block_size[which] = total;
  if (total > 0)
    {
      /* A checkpoint decides this size: when the machine refuses it, the block stays NULL and
       * the loader reports it (vl_model_blocks_allocated) instead of g_aligned_alloc0 aborting. */
      gpointer probe = g_try_malloc ((gsize) total * sizeof (float) + 64);
      if (probe != NULL)
        {
          g_free (probe);
          m->block[which] = g_aligned_alloc0 (total, sizeof (float), 64);
        }
    }
  int64_t off = 0;
  for (int i = first; i < n; i++)
    {
      VlParam *p = vl_param (m, i);
      p->data = m->block[which] != NULL ? m->block[which] + off : NULL;
      p->grad = p->m = p->v = NULL;
      p->step = 0;
      off += (p->numel + 15) & ~(int64_t) 15;
    }
}

gboolean
vl_model_blocks_allocated (VlModel *m, GError **error)
{
  for (int which = 0; which < 2; which++)
    if (m->block[which] == NULL && m->block_size[which] > 0)
      {
        g_set_error (error, VL_ERROR, VL_ERROR_IO,
                     "%s: cannot allocate %.0f MB for the model's %s parameters", m->path,
                     m->block_size[which] * (double) sizeof (float) / 1e6,
                     which == 0 ? "backbone" : "head");
        return FALSE;
      }
  return TRUE;
}

void
vl_model_add_group (VlModel *m, const char *name)
{
  g_ptr_array_add (m->group_names, g_strdup (name));
}

void
vl_model_finish_backbone (VlModel *m)
{
  m->n_backbone = (int) m->params->len;
  m->n_body_groups = (int) m->group_names->len;
  layout_block (m, 0, 0, m->n_backbone);
}

void
vl_model_build_head (VlModel *m, VlHeadKind kind, int num_classes, int hidden,
                     gboolean distilled)
{
  if ((int) m->params->len > m->n_backbone)
    g_array_set_size (m->params, m->n_backbone);
  m->head_kind = num_classes > 0 ? kind : VL_HEAD_NONE;
  m->num_classes = m->head_kind == VL_HEAD_NONE ? 0 : num_classes;
  m->head_hidden = m->head_kind == VL_HEAD_MLP ? hidden : 0;
  m->ix.head_w = m->ix.head_b = m->ix.head2_w = m->ix.head2_b = -1;
  m->ix.hdist_w = m->ix.hdist_b = -1;
  const int grp = m->n_body_groups, comp = C_HEAD (m);
  const int64_t in = m->geo.embed_dim > 0 ? m->geo.embed_dim : m->geo.width;
  int64_t s[2];
  if (m->head_kind == VL_HEAD_LINEAR)
    {
      m->ix.head_w = vl_model_add_param (m, "head.weight", grp, comp, 2, (s[0] = num_classes, s[1] = in, s));
      m->ix.head_b = vl_model_add_param (m, "head.bias", grp, comp, 1, s);
      if (distilled)
        {
          m->ix.hdist_w = vl_model_add_param (m, "head_dist.weight", grp, comp, 2, (s[1] = m->geo.width, s));
          m->ix.hdist_b = vl_model_add_param (m, "head_dist.bias", grp, comp, 1, s);
        }
    }
  else if (m->head_kind == VL_HEAD_MLP)
    {
      m->ix.head_w = vl_model_add_param (m, "head.fc1.weight", grp, comp, 2, (s[0] = hidden, s[1] = in, s));
      m->ix.head_b = vl_model_add_param (m, "head.fc1.bias", grp, comp, 1, s);
      m->ix.head2_w = vl_model_add_param (m, "head.fc2.weight", grp, comp, 2, (s[0] = num_classes, s[1] = hidden, s));
      m->ix.head2_b = vl_model_add_param (m, "head.fc2.bias", grp, comp, 1, s);
    }
  layout_block (m, 1, m->n_backbone, (int) m->params->len);

  gboolean *old = m->trainable;
  int old_n = m->n_groups;
  m->n_groups = m->n_body_groups + (m->head_kind != VL_HEAD_NONE);
  m->trainable = g_new0 (gboolean, m->n_body_groups + 1);
  if (old)
    memcpy (m->trainable, old, sizeof (gboolean) * MIN (old_n, m->n_body_groups + 1));
  g_free (old);
  g_clear_pointer (&m->acts, vl_acts_free);
  g_clear_pointer (&m->acts_spare, vl_acts_free);
}

void
vl_model_free (VlModel *m)
{
  if (m == NULL)
    return;
  vl_acts_free (m->acts);
  vl_acts_free (m->acts_spare);
  if (m->packed)
    for (int i = 0; i < m->n_backbone; i++)
      g_aligned_free (m->packed[i]);
  g_free (m->packed);
  g_free (m->packed_version);
  vl_stem_free (m->stem);
  g_array_unref (m->params);
  for (int i = 0; i < 2; i++)
    {
      g_aligned_free (m->block[i]);
      g_aligned_free (m->grad_block[i]);
      g_aligned_free (m->m_block[i]);
      g_aligned_free (m->v_block[i]);
    }
  g_ptr_array_unref (m->group_names);
  g_free (m->ix.block);
  g_free (m->trainable);
  g_strfreev (m->class_names);
  g_clear_object (&m->cancellable);
  g_free (m->source_prefix);
  g_free (m->geo.family);
  g_free (m->geo.architecture);
  g_free (m->geo.interpolation);
  g_free (m->path);
  g_free (m);
}

VlModel *
vl_model_load (const char *path, GError **error)
{
  VlModel *m = vl_model_alloc ();
  m->path = g_strdup (path);
  if (!vl_families_load (m, path, error))
    {
      vl_model_free (m);
      return NULL;
    }
  return m;
}

/* ------------------------------------------------------------------ accessors */

const VlGeometry *vl_model_geometry (VlModel *m) { return &m->geo; }
const char *vl_model_path (VlModel *m) { return m->path; }
const char *const *vl_model_class_names (VlModel *m) { return (const char *const *) m->class_names; }
VlHeadKind vl_model_head_kind (VlModel *m) { return m->head_kind; }
int vl_model_num_classes (VlModel *m) { return m->num_classes; }
VlPoolKind vl_model_pool (VlModel *m) { return m->pool; }
int vl_model_n_tensors (VlModel *m) { return (int) m->params->len; }
const char *vl_model_tensor_name (VlModel *m, int i) { return vl_param (m, i)->name; }
float *vl_model_tensor_grad (VlModel *m, int i) { return vl_param (m, i)->grad; }
int vl_model_tensor_group (VlModel *m, int i) { return vl_param (m, i)->group; }
gboolean vl_model_tensor_decays (VlModel *m, int i) { return vl_param (m, i)->decay; }

void
vl_model_set_class_names (VlModel *m, const char *const *names)
{
  g_clear_pointer (&m->class_names, g_strfreev);
  if (names == NULL || m->num_classes <= 0)
    return;
  m->class_names = g_new0 (char *, m->num_classes + 1);
  for (int i = 0; i < m->num_classes; i++)
    m->class_names[i] = g_strdup (names[i] ? names[i] : "");
}

void
vl_model_set_cancellable (VlModel *m, GCancellable *cancellable)
{
  g_set_object (&m->cancellable, cancellable);
}

void
vl_model_set_pool (VlModel *m, VlPoolKind pool)
{
  if (pool == VL_POOL_MAP && m->ix.ap < 0)
    pool = VL_POOL_TOKEN;
  /* without a CLS token there is no token to pool: the model's own attention pool (SigLIP), or
   * the mean as timm pools such models */
  if (pool == VL_POOL_TOKEN && !m->geo.class_token)
    pool = m->ix.ap >= 0 ? VL_POOL_MAP : VL_POOL_AVG;
  m->pool = pool;
}

gboolean
vl_model_check_pool (VlModel *m, VlPoolKind pool, GError **error)
{
  if (pool == VL_POOL_MAP && m->ix.ap < 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "%s has no attention pool (attn_pool.*, "
                   "as SigLIP's): pool by token, avg or max", m->path ? m->path : "the model");
      return FALSE;
    }
  if (pool == VL_POOL_TOKEN && !m->geo.class_token)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "%s has no class token: pool by avg, max%s",
                   m->path ? m->path : "the model", m->ix.ap >= 0 ? " or map" : "");
      return FALSE;
    }
  return TRUE;
}

int64_t
vl_model_n_params (VlModel *m)
{
  int64_t n = 0;
  for (guint i = 0; i < m->params->len; i++)
    n += vl_param (m, (int) i)->numel;
  return n;
}

float *
vl_model_tensor_data (VlModel *m, int i, int *ndim, int64_t *shape, int64_t *numel)
{
  VlParam *p = vl_param (m, i);
  p->version++;   /* the caller may write through the pointer: packed copies are remade */
  if (ndim)
    *ndim = p->ndim;
  if (shape)
    memcpy (shape, p->shape, sizeof (int64_t) * p->ndim);
  if (numel)
    *numel = p->numel;
  return p->data;
}

int
vl_model_find_tensor (VlModel *m, const char *name)
{
  for (guint i = 0; i < m->params->len; i++)
    if (strcmp (vl_param (m, (int) i)->name, name) == 0)
      return (int) i;
  return -1;
}

const char *
vl_pool_name (VlPoolKind pool)
{
  return pool == VL_POOL_AVG ? "avg" : pool == VL_POOL_MAX ? "max" : pool == VL_POOL_MAP ? "map"
                                                                               : "token";
}

const char *
vl_head_kind_name (VlHeadKind kind)
{
  return kind == VL_HEAD_MLP ? "mlp" : kind == VL_HEAD_NONE ? "none" : "linear";
}

gboolean
vl_head_kind_from_string (const char *s, VlHeadKind *out)
{
  const VlHeadKind kinds[] = { VL_HEAD_LINEAR, VL_HEAD_MLP, VL_HEAD_NONE };
  for (guint i = 0; i < G_N_ELEMENTS (kinds); i++)
    if (g_strcmp0 (s, vl_head_kind_name (kinds[i])) == 0)
      {
        *out = kinds[i];
        return TRUE;
      }
  return FALSE;
}

gboolean
vl_pool_from_string (const char *s, VlPoolKind *pool)
{
  if (g_strcmp0 (s, "token") == 0 || g_strcmp0 (s, "cls") == 0)
    *pool = VL_POOL_TOKEN;
  else if (g_strcmp0 (s, "avg") == 0 || g_strcmp0 (s, "mean") == 0)
    *pool = VL_POOL_AVG;
  else if (g_strcmp0 (s, "max") == 0)
    *pool = VL_POOL_MAX;
  else if (g_strcmp0 (s, "map") == 0)
    *pool = VL_POOL_MAP;
  else
    return FALSE;
  return TRUE;
}

void
vl_model_set_head (VlModel *m, VlHeadKind kind, int num_classes, int hidden, uint64_t seed)
{
  const int in = m->geo.embed_dim > 0 ? m->geo.embed_dim : m->geo.width;
  if (kind == VL_HEAD_MLP && hidden <= 0)
    hidden = in;
  vl_model_build_head (m, kind, num_classes, hidden, FALSE);
  g_autoptr(GError) error = NULL;
  if (!vl_model_blocks_allocated (m, &error))
    g_error ("%s", error->message);   /* callers have no error to report it through */
  g_clear_pointer (&m->class_names, g_strfreev);
  /* nn.Linear's default initialisation, which timm's reset_classifier leaves in place:
   * U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the weight and the bias */
  VlRng rng;
  vl_rng_seed (&rng, seed);
  for (int i = m->n_backbone; i < (int) m->params->len; i++)
    {
      VlParam *p = vl_param (m, i);
      int64_t fan_in = p->ndim == 2 ? p->shape[1] : vl_param (m, i - 1)->shape[1];
      double bound = 1.0 / sqrt ((double) fan_in);
      for (int64_t k = 0; k < p->numel; k++)
        p->data[k] = (float) ((2.0 * vl_rng_uniform (&rng) - 1.0) * bound);
    }
}

/* ------------------------------------------------------------------ groups */

int vl_model_n_groups (VlModel *m) { return m->n_groups; }

const char *
vl_model_group_name (VlModel *m, int group)
{
  g_return_val_if_fail (group >= 0 && group < m->n_groups, NULL);
  return group < m->n_body_groups ? g_ptr_array_index (m->group_names, group) : "head";
}

int64_t
vl_model_group_n_params (VlModel *m, int group)
{
  int64_t n = 0;
  for (guint i = 0; i < m->params->len; i++)
    if (vl_param (m, (int) i)->group == group && !vl_param (m, (int) i)->buffer)
      n += vl_param (m, (int) i)->numel;
  return n;
}

gboolean
vl_model_group_trainable (VlModel *m, int group)
{
  g_return_val_if_fail (group >= 0 && group < m->n_groups, FALSE);
  return m->trainable[group];
}

void
vl_model_set_group_trainable (VlModel *m, int group, gboolean trainable)
{
  g_return_if_fail (group >= 0 && group < m->n_groups);
  if (m->trainable[group] != trainable)
    for (guint i = 0; i < m->params->len; i++)
      if (vl_param (m, (int) i)->group == group)
        vl_param (m, (int) i)->version++;
  m->trainable[group] = trainable;
}

void
vl_model_lock (VlModel *m, int unlocked_groups)
{
  for (int g = 0; g < m->n_groups; g++)
    vl_model_set_group_trainable (m, g, g >= m->n_groups - unlocked_groups);
}

int64_t
vl_model_n_trainable (VlModel *m)
{
  int64_t n = 0;
  for (int g = 0; g < m->n_groups; g++)
    if (m->trainable[g])
      n += vl_model_group_n_params (m, g);
  return n;
}

/* ------------------------------------------------------------------ gradients and AdamW */

static float *
mirror (VlModel *m, float **blocks, int which)
{
  if (blocks[which] == NULL && m->block_size[which] > 0)
    blocks[which] = g_aligned_alloc0 (m->block_size[which], sizeof (float), 64);
  return blocks[which];
}

void
vl_model_prepare_grads (VlModel *m)
{
  for (guint i = 0; i < m->params->len; i++)
    {
      VlParam *p = vl_param (m, (int) i);
      int which = (int) i >= m->n_backbone;
      if (!m->trainable[p->group] || p->buffer)
        continue;
      if (p->grad == NULL)
        p->grad = mirror (m, m->grad_block, which) + (p->data - m->block[which]);
      memset (p->grad, 0, sizeof (float) * p->numel);
    }
}

double
vl_model_clip_grad_norm (VlModel *m, double max_norm)
{
  double sq = 0.0;
  for (guint i = 0; i < m->params->len; i++)
    {
      VlParam *p = vl_param (m, (int) i);
      if (!m->trainable[p->group] || p->grad == NULL)
        continue;
      for (int64_t k = 0; k < p->numel; k++)
        sq += (double) p->grad[k] * p->grad[k];
    }
  double norm = sqrt (sq);
  if (max_norm > 0 && norm > max_norm)
    {
      float coef = (float) (max_norm / (norm + 1e-6));
      for (guint i = 0; i < m->params->len; i++)
        {
          VlParam *p = vl_param (m, (int) i);
          if (!m->trainable[p->group] || p->grad == NULL)
            continue;
          for (int64_t k = 0; k < p->numel; k++)
            p->grad[k] *= coef;
        }
    }
  return norm;
}

/* One piece of a parameter for the pool: elements [i0, i1) of params[ix]. */
typedef struct {
  int     ix;
  int64_t i0, i1;
} AdamPiece;

typedef struct {
  VlModel        *m;
  const VlAdamW  *opt;
  GArray         *pieces;
} AdamJob;

static void
adamw_piece (void *data, int64_t i, int worker)
{
  const AdamJob *j = data;
  const AdamPiece *pc = &g_array_index (j->pieces, AdamPiece, i);
  VlParam *p = vl_param (j->m, pc->ix);
  const VlAdamW *opt = j->opt;
  float lr = opt->lr * (opt->group_lr_scale ? opt->group_lr_scale[p->group] : 1.0f);
  vl_adamw_update (p->data + pc->i0, p->grad + pc->i0, p->m + pc->i0, p->v + pc->i0,
                   pc->i1 - pc->i0, lr, opt->beta1, opt->beta2, opt->eps,
                   p->decay ? opt->weight_decay : 0.0f, p->step);
}

void
vl_model_adamw_step (VlModel *m, const VlAdamW *opt)
{
  /* every trainable parameter in pieces of at most 64k elements, spread over the pool (each
   * element's update is independent of the others: the same result on any number of threads) */
  const int64_t piece = 65536;
  g_autoptr(GArray) pieces = g_array_new (FALSE, FALSE, sizeof (AdamPiece));
  for (guint i = 0; i < m->params->len; i++)
    {
      VlParam *p = vl_param (m, (int) i);
      int which = (int) i >= m->n_backbone;
      if (!m->trainable[p->group] || p->grad == NULL)
        continue;
      if (p->m == NULL)
        {
          p->m = mirror (m, m->m_block, which) + (p->data - m->block[which]);
          p->v = mirror (m, m->v_block, which) + (p->data - m->block[which]);
        }
      p->step++;
      p->version++;
      for (int64_t i0 = 0; i0 < p->numel; i0 += piece)
        {
          AdamPiece pc = { (int) i, i0, MIN (p->numel, i0 + piece) };
          g_array_append_val (pieces, pc);
        }
    }
  AdamJob j = { m, opt, pieces };
  vl_parallel_for (pieces->len, adamw_piece, &j);
}

double
vl_model_group_grad_norm (VlModel *m, int group)
{
  double sq = 0.0;
  if (group < 0 || group >= m->n_groups || !m->trainable[group])
    return 0.0;
  for (guint i = 0; i < m->params->len; i++)
    {
      VlParam *p = vl_param (m, (int) i);
      if (p->group != group || p->grad == NULL)
        continue;
      for (int64_t k = 0; k < p->numel; k++)
        sq += (double) p->grad[k] * p->grad[k];
    }
  return sqrt (sq);
}

void
vl_model_tensor_optim_state (VlModel *m, int index, const float **exp_avg,
                             const float **exp_avg_sq, int *step)
{
  VlParam *p = vl_param (m, index);
  if (exp_avg)
    *exp_avg = p->m;
  if (exp_avg_sq)
    *exp_avg_sq = p->v;
  if (step)
    *step = p->step;
}

void
vl_model_tensor_set_optim_state (VlModel *m, int index, const float *exp_avg,
                                 const float *exp_avg_sq, int step)
{
  VlParam *p = vl_param (m, index);
  int which = index >= m->n_backbone;
  if (p->m == NULL)
    {
      p->m = mirror (m, m->m_block, which) + (p->data - m->block[which]);
      p->v = mirror (m, m->v_block, which) + (p->data - m->block[which]);
    }
  if (exp_avg)
    memcpy (p->m, exp_avg, sizeof (float) * p->numel);
  else
    memset (p->m, 0, sizeof (float) * p->numel);
  if (exp_avg_sq)
    memcpy (p->v, exp_avg_sq, sizeof (float) * p->numel);
  else
    memset (p->v, 0, sizeof (float) * p->numel);
  p->step = step;
}

/* ------------------------------------------------------------------ saving */

gboolean
vl_model_save (VlModel *m, const char *path, GError **error)
{
  g_autoptr(VlSafetensorsWriter) w = vl_safetensors_writer_new ();
  GPtrArray *temps = g_ptr_array_new_with_free_func (g_free);
  /* file tensors that several internal ones are slices of: name -> the whole, filled in parts */
  g_autoptr(GHashTable) whole = g_hash_table_new (g_str_hash, g_str_equal);
  for (guint i = 0; i < m->params->len; i++)
    {
      VlParam *p = vl_param (m, (int) i);
      int64_t row = p->ndim >= 2 ? p->numel / p->shape[0] : 1;
      for (int k = 0; k < p->n_src; k++)
        {
          const VlSource *s = &p->src[k];
          int64_t n = 1;
          for (int d = 0; d < s->ndim; d++)
            n *= s->shape[d];
          if (s->sliced)
            {
              float *t = g_hash_table_lookup (whole, s->name);
              if (t == NULL)
                {
                  t = g_new0 (float, n);
                  g_ptr_array_add (temps, t);
                  g_hash_table_insert (whole, s->name, t);
                  vl_safetensors_writer_add_f32 (w, s->name, s->ndim, s->shape, t);
                }
              memcpy (t + s->slice0, p->data, sizeof (float) * p->numel);
              continue;
            }
          const float *data = p->data + s->row0 * row;
          if (s->transpose)
            {
              /* internal (R, C) -> source (C, R) */
              int64_t R = p->shape[0], C = p->shape[1];
              float *t = g_new (float, n);
              for (int64_t r = 0; r < R; r++)
                for (int64_t c = 0; c < C; c++)
                  t[c * R + r] = p->data[r * C + c];
              g_ptr_array_add (temps, t);
              data = t;
            }
          vl_safetensors_writer_add_f32 (w, s->name, s->ndim, s->shape, data);
        }
    }
  char heads[16], eps[32];
  g_snprintf (heads, sizeof heads, "%d", m->geo.heads);
  g_ascii_dtostr (eps, sizeof eps, m->geo.eps);
  vl_safetensors_writer_add_metadata (w, "format", "pt");
  vl_safetensors_writer_add_metadata (w, "num_heads", heads);
  vl_safetensors_writer_add_metadata (w, "layer_norm_eps", eps);
  gboolean ok = vl_safetensors_writer_write (w, path, error);
  g_ptr_array_unref (temps);
  return ok;
}
