/* vl-train-config.c: a training run's configuration (VlTrainConfig: defaults, copies, the checks
 * with their messages, the unlock schedule's text), its schedules (the learning rate per step,
 * layer decay's scales), and reading it back from a run folder's run.json (the configuration,
 * the task); declared in vl-trainer.h. The trainer (vl-trainer.c) runs what this describes. */
#include "vl-trainer.h"
#include "vl-json.h"

#include <math.h>
#include <string.h>

#define GIB ((int64_t) 1 << 30)

/* ------------------------------------------------------------------ configuration */

void
vl_train_config_init (VlTrainConfig *c)
{
  memset (c, 0, sizeof *c);
  c->head = VL_HEAD_LINEAR;
  c->seg_head = VL_SEG_HEAD_LINEAR;
  c->pool = VL_POOL_TOKEN;
  c->val_fraction = 0.2;
  c->augment = VL_AUGMENT_NONE;
  c->unlock_schedule = g_strdup ("1");
  c->epochs = 10;
  c->batch_size = 32;
  c->lr = 1e-3;
  c->min_lr = 0.0;
  c->weight_decay = 0.05;
  c->beta1 = 0.9;
  c->beta2 = 0.999;
  c->eps = 1e-8;
  c->warmup_epochs = 1.0;
  c->layer_decay = 1.0;
  c->cache_limit = 4 * GIB;
  c->n_probes = 4;
}

void
vl_train_config_clear (VlTrainConfig *c)
{
  g_clear_pointer (&c->backbone, g_free);
  g_clear_pointer (&c->geometry, g_free);
  g_clear_pointer (&c->data, g_free);
  g_clear_pointer (&c->unlock_schedule, g_free);
  g_clear_pointer (&c->out_dir, g_free);
  g_clear_pointer (&c->train_groups, g_free);
}

void
vl_train_config_copy (VlTrainConfig *dst, const VlTrainConfig *src)
{
  *dst = *src;
  dst->backbone = g_strdup (src->backbone);
  dst->geometry = g_strdup (src->geometry);
  dst->data = g_strdup (src->data);
  dst->unlock_schedule = g_strdup (src->unlock_schedule);
  dst->out_dir = g_strdup (src->out_dir);
  dst->train_groups = g_strdup (src->train_groups);
}

VlUnlockStep *
vl_unlock_schedule_parse (const char *text, int *n_steps, GError **error)
{
  *n_steps = 0;
  if (text == NULL || *text == '\0')
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "unlock schedule: empty");
      return NULL;
    }
  g_auto(GStrv) parts = g_strsplit (text, ",", -1);
  int n = (int) g_strv_length (parts);
  g_autofree VlUnlockStep *steps = g_new0 (VlUnlockStep, MAX (n, 1));
  for (int i = 0; i < n; i++)
    {
      char *p = g_strstrip (parts[i]);
      char *colon = strchr (p, ':');
      const char *count = p;
      int epoch = 0;
      if (colon)
        {
          *colon = '\0';
          count = g_strstrip (colon + 1);
          char *end = NULL;
          gint64 e = g_ascii_strtoll (g_strstrip (p), &end, 10);
          if (end == p || *end != '\0' || e < 0 || e > 1000000)
            goto bad;
          epoch = (int) e;
        }
      else if (n > 1)
        goto bad;
      int unlocked;
      if (g_ascii_strcasecmp (count, "all") == 0)
        unlocked = VL_UNLOCK_ALL;
      else
        {
          char *end = NULL;
          gint64 u = g_ascii_strtoll (count, &end, 10);
          if (end == count || *end != '\0' || u < 0 || u > VL_UNLOCK_ALL)
            goto bad;
          unlocked = (int) u;
        }
      if ((i == 0 && epoch != 0) || (i > 0 && epoch <= steps[i - 1].epoch))
        {
          g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                       "unlock schedule \"%s\": epochs must start at 0 and increase", text);
          return NULL;
        }
      steps[i] = (VlUnlockStep) { epoch, unlocked };
    }
  *n_steps = n;
  return g_steal_pointer (&steps);
bad:
  g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
               "unlock schedule \"%s\": expected N or EPOCH:N[,EPOCH:N...] with N a number of "
               "layer groups or \"all\" (e.g. \"0:1,2:4,4:all\")", text);
  return NULL;
}

int
vl_unlock_schedule_at (const VlUnlockStep *steps, int n_steps, int epoch)
{
  int unlocked = n_steps > 0 ? steps[0].unlocked : 1;
  for (int i = 0; i < n_steps; i++)
    if (steps[i].epoch <= epoch)
      unlocked = steps[i].unlocked;
  return unlocked;
}

char *
vl_unlock_schedule_to_string (const VlUnlockStep *steps, int n)
{
  GString *s = g_string_new (NULL);
  for (int i = 0; i < n; i++)
    {
      if (i)
        g_string_append_c (s, ',');
      if (steps[i].unlocked >= VL_UNLOCK_ALL)
        g_string_append_printf (s, "%d:all", steps[i].epoch);
      else
        g_string_append_printf (s, "%d:%d", steps[i].epoch, steps[i].unlocked);
    }
  return g_string_free (s, FALSE);
}

static gboolean
check_range (const char *what, double v, double lo, double hi, gboolean lo_open, GError **error)
{
  if (isfinite (v) && (lo_open ? v > lo : v >= lo) && v <= hi)
    return TRUE;
  g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "%s %g: expected a number in %s%g, %g]",
               what, v, lo_open ? "(" : "[", lo, hi);
  return FALSE;
}

gboolean
vl_train_config_check (const VlTrainConfig *c, GError **error)
{
  if (c->epochs < 1 || c->epochs > 1000000)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "epochs %d: expected at least 1", c->epochs);
      return FALSE;
    }
  if (c->batch_size < 1 || c->batch_size > 65536)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "batch size %d: expected 1 to 65536",
                   c->batch_size);
      return FALSE;
    }
  if (c->head != VL_HEAD_LINEAR && c->head != VL_HEAD_MLP)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "head: expected linear or mlp");
      return FALSE;
    }
  if (c->mlp_hidden < 0 || c->mlp_hidden > 1 << 20)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "MLP hidden width %d is out of range",
                   c->mlp_hidden);
      return FALSE;
    }
  if (!check_range ("learning rate", c->lr, 0, 1e38, TRUE, error) ||
      !check_range ("min lr", c->min_lr, 0, c->lr, FALSE, error) ||
      !check_range ("weight decay", c->weight_decay, 0, 1e6, FALSE, error) ||
      !check_range ("beta1", c->beta1, 0, 0.999999, FALSE, error) ||
      !check_range ("beta2", c->beta2, 0, 0.99999999, FALSE, error) ||
      !check_range ("eps", c->eps, 0, 1, TRUE, error) ||
      !check_range ("warmup epochs", c->warmup_epochs, 0, 1e6, FALSE, error) ||
      !check_range ("layer decay", c->layer_decay, 0, 1, TRUE, error) ||
      !check_range ("label smoothing", c->label_smoothing, 0, 0.999, FALSE, error) ||
      !check_range ("clip grad", c->clip_grad, 0, 1e30, FALSE, error) ||
      !check_range ("val fraction", c->val_fraction, 0, 0.95, TRUE, error))
    return FALSE;
  if (c->early_stop < 0 || c->probe_every < 0 || c->n_probes < 0 || c->n_probes > 64 ||
      c->cache_limit < 0 || c->stop_after_epoch < 0 || c->stop_after_step < 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "early stop, probe interval, probe count (at most 64), cache limit and "
                   "scripted stops must not be negative");
      return FALSE;
    }
  if (c->resume && c->out_dir == NULL)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "resuming needs the run folder");
      return FALSE;
    }
  if (c->geometry && !c->init_random)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "a geometry is only used to train from scratch (init random)");
      return FALSE;
    }
  if (c->init_random && c->geometry)
    {
      VlGeometry geo;
      if (!vl_geometry_parse (c->geometry, &geo, error))
        return FALSE;
    }
  int n;
  g_autofree VlUnlockStep *s = vl_unlock_schedule_parse (c->unlock_schedule, &n, error);
  return s != NULL;
}

/* ------------------------------------------------------------------ schedules */

static int64_t
warmup_steps (const VlTrainConfig *c, int64_t steps_per_epoch)
{
  return (int64_t) llround (c->warmup_epochs * (double) steps_per_epoch);
}

double
vl_train_lr_at (const VlTrainConfig *c, int64_t step, int64_t steps_per_epoch)
{
  int64_t total = (int64_t) c->epochs * steps_per_epoch;
  int64_t warm = MIN (warmup_steps (c, steps_per_epoch), total);
  if (step < warm)
    return c->lr * (double) (step + 1) / (double) warm;
  double progress = (double) (step - warm) / (double) MAX (total - warm, 1);
  progress = CLAMP (progress, 0.0, 1.0);
  return c->min_lr + (c->lr - c->min_lr) * 0.5 * (1.0 + cos (G_PI * progress));
}

void
vl_train_layer_scales (VlModel *m, double decay, float *scales)
{
  int n = vl_model_n_groups (m);
  g_autofree int *id = g_new (int, MAX (n, 1));
  int next = 0;
  for (int g = 0; g < n; g++)
    {
      const char *name = vl_model_group_name (m, g);
      /* timm's group_matcher puts ^norm (the final norm, or fc_norm) in the last block's group,
       * and leaves an attention pool (attn_pool) unmatched, in the head's last ordinal */
      gboolean merge = g > 0 && (g_str_equal (name, "norm") || g_str_equal (name, "fc_norm") ||
                                 g_str_equal (name, "ln_post") ||
                                 (g_str_equal (name, "head") &&
                                  g_str_equal (vl_model_group_name (m, g - 1), "attn_pool")));
      id[g] = merge ? id[g - 1] : next++;
    }
  int max_id = next - 1;
  for (int g = 0; g < n; g++)
    scales[g] = (float) pow (decay, (double) (max_id - id[g]));
}

/* ------------------------------------------------------------------ run.json */

static gboolean
config_load (VlTrainConfig *c, const char *run_dir, GError **error)
{
  vl_train_config_init (c);
  /* an interrupted save is finished (or rolled back) before anything is read */
  if (!vl_run_recover (run_dir, NULL, error))
    return FALSE;
  g_autofree char *path = g_build_filename (run_dir, "run.json", NULL);
  JsonObject *root = NULL;
  g_autoptr(JsonParser) parser = vl_json_load_object_file (path, &root, error);
  if (parser == NULL)
    return FALSE;
  if (g_strcmp0 (vl_json_get_str (root, "format"), "vitlab-run") != 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: not a vitlab run (no \"format\": "
                   "\"vitlab-run\")", path);
      return FALSE;
    }
  JsonObject *bb = vl_json_object_member (root, "backbone"), *head = vl_json_object_member (root, "head");
  JsonObject *hp = vl_json_object_member (root, "hyperparameters"), *data = vl_json_object_member (root, "data");
  JsonObject *mon = vl_json_object_member (root, "monitor");
  double v;
  int64_t i;
  const char *s;
  JsonObject *task = vl_json_object_member (root, "task");
  if ((s = vl_json_get_str (task, "kind")) && !vl_task_from_string (s, &c->task))
    goto bad;
  if ((s = vl_json_get_str (task, "loss")) && c->task == VL_TASK_REGRESS &&
      !vl_reg_loss_from_string (s, &c->reg_loss))
    goto bad;
  if ((s = vl_json_get_str (task, "seg_head")) && !vl_seg_head_kind_from_string (s, &c->seg_head))
    goto bad;
  if ((c->task == VL_TASK_SEGMENT || c->task == VL_TASK_DETECT) &&
      vl_json_get_int (task, "img_size", &i))
    c->img_size = (int) i;
  c->backbone = g_strdup (vl_json_get_str (bb, "path"));
  c->init_random = g_strcmp0 (vl_json_get_str (bb, "init"), "random") == 0;
  c->geometry = g_strdup (vl_json_get_str (bb, "geometry"));
  if ((s = vl_json_get_str (bb, "stem")) && !vl_stem_kind_from_string (s, &c->stem))
    goto bad;
  if (c->init_random && c->geometry)
    g_clear_pointer (&c->backbone, g_free);   /* the path named the random model */
  s = vl_json_get_str (head, "kind");
  if (!vl_head_kind_from_string (s, &c->head) || c->head == VL_HEAD_NONE)
    c->head = VL_HEAD_LINEAR;
  if (vl_json_get_int (head, "mlp_hidden", &i))
    c->mlp_hidden = (int) i;
  if ((s = vl_json_get_str (head, "pool")) && !vl_pool_from_string (s, &c->pool))
    goto bad;
  c->data = g_strdup (vl_json_get_str (data, "spec"));
  if (vl_json_get_num (data, "val_fraction", &v))
    c->val_fraction = v;
  if (vl_json_get_int (root, "unlock_mask", &i))
    c->unlock_mask = (guint64) i;
  if ((s = vl_json_get_str (root, "unlock_schedule")))
    {
      g_free (c->unlock_schedule);
      c->unlock_schedule = g_strdup (s);
    }
  if (vl_json_get_int (hp, "epochs", &i))
    c->epochs = (int) i;
  if (vl_json_get_int (hp, "batch_size", &i))
    c->batch_size = (int) i;
  struct { const char *key; double *dst; } nums[] = {
    { "lr", &c->lr }, { "min_lr", &c->min_lr }, { "weight_decay", &c->weight_decay },
    { "beta1", &c->beta1 }, { "beta2", &c->beta2 }, { "eps", &c->eps },
    { "warmup_epochs", &c->warmup_epochs }, { "layer_decay", &c->layer_decay },
    { "label_smoothing", &c->label_smoothing }, { "clip_grad", &c->clip_grad },
  };
  for (guint k = 0; k < G_N_ELEMENTS (nums); k++)
    if (vl_json_get_num (hp, nums[k].key, &v))
      *nums[k].dst = v;
  if (vl_json_get_int (hp, "early_stop", &i))
    c->early_stop = (int) i;
  if ((s = vl_json_get_str (hp, "augment")) && !vl_augment_from_string (s, &c->augment))
    goto bad;
  if (vl_json_get_num (hp, "cache_features", &v))
    c->cache_features = v != 0;
  if (vl_json_get_int (hp, "cache_limit", &i))
    c->cache_limit = i;
  if (vl_json_get_int (root, "seed", &i))
    c->seed = (uint64_t) i;
  if (vl_json_get_int (mon, "probe_every", &i))
    c->probe_every = (int) i;
  if (vl_json_get_int (mon, "n_probes", &i))
    c->n_probes = (int) i;
  c->out_dir = g_strdup (run_dir);
  if (!vl_train_config_check (c, error))
    {
      g_prefix_error (error, "%s: ", path);
      return FALSE;
    }
  return TRUE;
bad:
  g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: unknown value \"%s\"", path, s);
  return FALSE;
}

gboolean
vl_train_config_load (VlTrainConfig *c, const char *run_dir, GError **error)
{
  if (config_load (c, run_dir, error))
    return TRUE;
  vl_train_config_clear (c);   /* nothing for the caller to free */
  return FALSE;
}

/* ------------------------------------------------------------------ a run's task */


gboolean
vl_run_read_task (const char *run_dir, VlRunTask *out, GError **error)
{
  memset (out, 0, sizeof *out);
  g_autofree char *path = g_build_filename (run_dir, "run.json", NULL);
  JsonObject *root = NULL;
  g_autoptr(JsonParser) parser = vl_json_load_object_file (path, &root, error);
  if (parser == NULL)
    return FALSE;
  JsonObject *task = vl_json_object_member (root, "task");
  const char *kind = vl_json_get_str (task, "kind");
  if (kind == NULL)
    return TRUE;   /* runs made before tasks: classification */
  if (!vl_task_from_string (kind, &out->kind))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: unknown task \"%s\"", path, kind);
      return FALSE;
    }
  if (out->kind != VL_TASK_REGRESS)
    return TRUE;
  const char *loss = vl_json_get_str (task, "loss");
  if (loss && !vl_reg_loss_from_string (loss, &out->reg_loss))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: unknown regression loss \"%s\"", path,
                   loss);
      return FALSE;
    }
  out->value_names = vl_json_get_strv (task, "targets");
  out->n_values = out->value_names ? (int) g_strv_length (out->value_names) : 0;
  out->mean = vl_json_get_floats (task, "mean", out->n_values);
  out->std = vl_json_get_floats (task, "std", out->n_values);
  gboolean std_ok = out->std != NULL;
  for (int j = 0; std_ok && j < out->n_values; j++)
    std_ok = out->std[j] > 0;
  if (out->n_values == 0 || out->mean == NULL || !std_ok)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                   "%s: the regression task needs \"targets\" and their \"mean\" and positive "
                   "\"std\", one number per target", path);
      vl_run_task_clear (out);
      return FALSE;
    }
  return TRUE;
}

void
vl_run_task_clear (VlRunTask *t)
{
  g_clear_pointer (&t->value_names, g_strfreev);
  g_clear_pointer (&t->mean, g_free);
  g_clear_pointer (&t->std, g_free);
}

VlTaskSpec
vl_run_task_spec (const VlRunTask *t)
{
  return (VlTaskSpec) { .kind = t->kind, .n_outputs = t->n_values, .reg_loss = t->reg_loss,
                        .mean = t->mean, .std = t->std };
}

