/* test-trainer.c: the training loop, its worker thread and events, run folders, the CLI. Small
 * random models on in-memory datasets keep each case fast. */
#include "vl-test-util.h"
#include "vl-dataset.h"
#include "vl-model.h"
#include "vl-trainer.h"

#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------ helpers */

static VlGeometry
tiny_geometry (int width, int depth, int heads, int patch, int grid)
{
  VlGeometry g = { 0 };
  g.in_chans = 3;
  g.patch = patch;
  g.width = width;
  g.depth = depth;
  g.heads = heads;
  g.mlp = 2 * width;
  g.grid = grid;
  g.class_token = TRUE;
  g.input_size = patch * grid;
  g.crop_pct = 1.0;
  for (int i = 0; i < 4; i++)
    g.mean[i] = g.std[i] = 0.5f;
  return g;
}

static VlModel *
tiny_model (void)
{
  VlGeometry g = tiny_geometry (32, 2, 2, 4, 4);   /* 16 x 16 images, 17 tokens */
  return vl_model_new_random (&g, 0, 7);
}

/* Learnable synthetic images: class k brightens channel k % 3 in its own band of rows. */
static VlDataset *
tiny_dataset (int K, int per_class_train, int per_class_val, int size, uint64_t seed)
{
  int n_train = K * per_class_train, n_val = K * per_class_val;
  int per = 3 * size * size;
  g_autofree float *tr = g_new (float, (gsize) n_train * per);
  g_autofree float *va = g_new (float, (gsize) MAX (n_val, 1) * per);
  g_autofree int *ltr = g_new (int, n_train);
  g_autofree int *lva = g_new (int, MAX (n_val, 1));
  GRand *rand = g_rand_new_with_seed ((guint32) seed);
  for (int s = 0; s < 2; s++)
    {
      int n = s == 0 ? n_train : n_val;
      float *x = s == 0 ? tr : va;
      int *l = s == 0 ? ltr : lva;
      for (int i = 0; i < n; i++)
        {
          int k = i % K;
          l[i] = k;
          for (int c = 0; c < 3; c++)
            for (int y = 0; y < size; y++)
              for (int xx = 0; xx < size; xx++)
                {
                  float v = (float) g_rand_double_range (rand, -1, 1);
                  if (c == k % 3 && (y * K / size) == k)
                    v += 1.5f;
                  x[(gsize) i * per + ((gsize) c * size + y) * size + xx] = v;
                }
        }
    }
  g_rand_free (rand);
  const char *names[] = { "alpha", "beta", "gamma", "delta", "epsilon", "zeta" };
  return vl_dataset_new_memory (K, names, 3, size, tr, ltr, n_train, va, lva, n_val);
}

static void
base_config (VlTrainConfig *c)
{
  vl_train_config_init (c);
  c->epochs = 2;
  c->batch_size = 8;
  c->lr = 3e-3;
  c->warmup_epochs = 0.5;
  c->seed = 3;
}

typedef struct {
  GPtrArray   *events;       /* every event, in order */
  VlTrainEnd   end;
  GError      *error;
} RunLog;

static void
run_log_clear (RunLog *l)
{
  g_clear_pointer (&l->events, g_ptr_array_unref);
  g_clear_error (&l->error);
}

/* Drains until FINISHED. */
static void
collect (VlTrainer *t, RunLog *log)
{
  log->events = g_ptr_array_new_with_free_func ((GDestroyNotify) vl_train_event_free);
  for (;;)
    {
      vl_trainer_wait (t, 100000);
      g_autoptr(GPtrArray) evs = vl_trainer_drain (t);
      gboolean done = FALSE;
      for (guint i = 0; i < evs->len; i++)
        {
          VlTrainEvent *ev = g_ptr_array_steal_index (evs, i--);
          g_ptr_array_add (log->events, ev);
          if (ev->kind == VL_TRAIN_EVENT_FINISHED)
            {
              done = TRUE;
              log->end = ev->end;
              if (ev->error)
                log->error = g_error_copy (ev->error);
            }
        }
      if (done)
        break;
    }
  vl_trainer_join (t);
}

/* Trains cfg on a fresh tiny model and dataset; returns the trainer (finished). */
static VlTrainer *
train (const VlTrainConfig *cfg, VlModel *model, VlDataset *ds, RunLog *log)
{
  g_autoptr(GError) error = NULL;
  VlTrainer *t = vl_trainer_new (cfg, &error);
  g_assert_no_error (error);
  vl_trainer_take_model (t, model ? model : tiny_model ());
  vl_trainer_take_dataset (t, ds ? ds : tiny_dataset (3, 8, 4, 16, 11));
  gboolean ok = vl_trainer_start (t, &error);
  g_assert_no_error (error);
  g_assert_true (ok);
  collect (t, log);
  return t;
}

static float *
params_copy (VlModel *m, int64_t *n_out)
{
  int64_t n = 0;
  for (int i = 0; i < vl_model_n_tensors (m); i++)
    {
      int64_t k;
      vl_model_tensor_data (m, i, NULL, NULL, &k);
      n += k;
    }
  float *all = g_new (float, n);
  int64_t off = 0;
  for (int i = 0; i < vl_model_n_tensors (m); i++)
    {
      int64_t k;
      const float *d = vl_model_tensor_data (m, i, NULL, NULL, &k);
      memcpy (all + off, d, sizeof (float) * k);
      off += k;
    }
  *n_out = n;
  return all;
}

static void
assert_same_params (const char *what, VlModel *a, VlModel *b, double atol)
{
  g_assert_cmpint (vl_model_n_tensors (a), ==, vl_model_n_tensors (b));
  int64_t na, nb;
  g_autofree float *pa = params_copy (a, &na);
  g_autofree float *pb = params_copy (b, &nb);
  g_assert_cmpint (na, ==, nb);
  vl_test_assert_close (what, pa, pb, na, atol, 1e-4);
}

static GPtrArray *
epoch_metrics (RunLog *log)
{
  GPtrArray *out = g_ptr_array_new ();
  for (guint i = 0; i < log->events->len; i++)
    {
      VlTrainEvent *ev = g_ptr_array_index (log->events, i);
      if (ev->kind == VL_TRAIN_EVENT_EPOCH)
        g_ptr_array_add (out, ev->metrics);
    }
  return out;
}

static void
assert_finished (RunLog *log, VlTrainEnd end)
{
  if (log->error)
    g_test_message ("run error: %s", log->error->message);
  g_assert_no_error (log->error);
  g_assert_cmpint (log->end, ==, end);
  VlTrainEvent *last = g_ptr_array_index (log->events, log->events->len - 1);
  g_assert_cmpint (last->kind, ==, VL_TRAIN_EVENT_FINISHED);
}

static int
count_lines (const char *path)
{
  g_autofree char *text = NULL;
  g_assert_true (g_file_get_contents (path, &text, NULL, NULL));
  int n = 0;
  for (char *p = text; *p; p++)
    n += *p == '\n';
  return n;
}

static void
rm_rf (const char *path)
{
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", path);
  g_assert_cmpint (system (cmd), ==, 0);
}

/* ------------------------------------------------------------------ schedules */

static void
test_schedule_parse (void)
{
  g_autoptr(GError) error = NULL;
  int n;
  g_autofree VlUnlockStep *s = vl_unlock_schedule_parse ("0:1, 2:4,4:all", &n, &error);
  g_assert_no_error (error);
  g_assert_cmpint (n, ==, 3);
  g_assert_cmpint (s[1].epoch, ==, 2);
  g_assert_cmpint (s[1].unlocked, ==, 4);
  g_assert_cmpint (s[2].unlocked, ==, VL_UNLOCK_ALL);
  int want[] = { 1, 1, 4, 4, VL_UNLOCK_ALL, VL_UNLOCK_ALL };
  for (int e = 0; e < 6; e++)
    g_assert_cmpint (vl_unlock_schedule_at (s, n, e), ==, want[e]);
  g_autofree VlUnlockStep *p = vl_unlock_schedule_parse ("3", &n, &error);
  g_assert_no_error (error);
  g_assert_cmpint (n, ==, 1);
  g_assert_cmpint (vl_unlock_schedule_at (p, n, 7), ==, 3);
  const char *bad[] = { "", "1:2", "0:1,0:2", "0:1,3:2,2:1", "x", "0:-1", "0:1,2", "0:1,,2:3" };
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      VlUnlockStep *b = vl_unlock_schedule_parse (bad[i], &n, &error);
      g_assert_null (b);
      g_assert_error (error, VL_ERROR, VL_ERROR_INVALID);
      g_test_message ("%s -> %s", bad[i], error->message);
      g_clear_error (&error);
    }
}

static void
test_schedule_lr (void)
{
  VlTrainConfig c;
  vl_train_config_init (&c);
  c.lr = 1.0;
  c.min_lr = 0.1;
  c.epochs = 4;
  c.warmup_epochs = 1;
  const int64_t spe = 10;   /* 40 steps: 10 of warmup, 30 of cosine */
  struct { int64_t step; double lr; } want[] = {
    { 0, 0.1 }, { 4, 0.5 }, { 9, 1.0 },
    { 10, 1.0 },
    { 25, 0.1 + 0.9 * 0.5 },
    { 39, 0.1 + 0.9 * 0.5 * (1 + cos (G_PI * 29.0 / 30.0)) },
    { 40, 0.1 },
  };
  for (guint i = 0; i < G_N_ELEMENTS (want); i++)
    g_assert_cmpfloat_with_epsilon (vl_train_lr_at (&c, want[i].step, spe), want[i].lr, 1e-12);
  /* monotone decay after the warmup */
  for (int64_t s = 10; s < 39; s++)
    g_assert_cmpfloat (vl_train_lr_at (&c, s + 1, spe), <=, vl_train_lr_at (&c, s, spe));
  /* no warmup: full lr at the first step */
  c.warmup_epochs = 0;
  g_assert_cmpfloat_with_epsilon (vl_train_lr_at (&c, 0, spe), 1.0, 1e-12);
  /* fractional warmup: round(0.25 * 10) = 3 steps (2.5 rounds away from zero) */
  c.warmup_epochs = 0.25;
  g_assert_cmpfloat_with_epsilon (vl_train_lr_at (&c, 0, spe), 1.0 / 3, 1e-12);
  g_assert_cmpfloat_with_epsilon (vl_train_lr_at (&c, 2, spe), 1.0, 1e-12);
  vl_train_config_clear (&c);
}

/* timm: param_groups_layer_decay over ViT.group_matcher (stem, blocks.N, ^norm -> the last
 * block's id, head unmatched -> the next id). */
static void
test_layer_decay (void)
{
  g_autofree char *dir = vl_test_shared_path ("fixtures", "vit-timm-tiny", NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(VlModel) m = vl_model_load (dir, &error);
  g_assert_no_error (error);
  int n = vl_model_n_groups (m);
  g_assert_cmpint (n, ==, 7);   /* stem, blocks.0-3, norm, head */
  float s[7];
  const double d = 0.75;
  vl_train_layer_scales (m, d, s);
  /* layer ids: stem 0, blocks 1-4, norm 4, head 5 -> scale d^(5 - id) */
  double want[7] = { pow (d, 5), pow (d, 4), pow (d, 3), pow (d, 2), d, d, 1 };
  for (int g = 0; g < n; g++)
    {
      g_test_message ("group %s: %g", vl_model_group_name (m, g), s[g]);
      g_assert_cmpfloat_with_epsilon (s[g], want[g], 1e-6);
    }
  vl_train_layer_scales (m, 1.0, s);
  for (int g = 0; g < n; g++)
    g_assert_cmpfloat (s[g], ==, 1.0f);

  /* the scales reach the optimizer: with every group unlocked and decay 0.5, one step moves the
   * stem's first AdamW update by lr * 0.5^5 instead of lr (the first Adam step is ~lr * sign) */
  VlTrainConfig c;
  base_config (&c);
  c.epochs = 1;
  c.warmup_epochs = 0;
  c.weight_decay = 0;
  c.lr = 1e-3;
  c.stop_after_step = 1;
  g_free (c.unlock_schedule);
  c.unlock_schedule = g_strdup ("all");
  double moved[2];
  for (int run = 0; run < 2; run++)
    {
      c.layer_decay = run == 0 ? 1.0 : 0.5;
      VlModel *model = tiny_model ();
      int idx = vl_model_find_tensor (model, "patch_embed.proj.weight");
      int64_t numel;
      g_autofree float *before = g_memdup2 (vl_model_tensor_data (model, idx, NULL, NULL, &numel),
                                            sizeof (float) * 8);
      RunLog log = { 0 };
      g_autoptr(VlTrainer) t = train (&c, model, NULL, &log);
      assert_finished (&log, VL_TRAIN_END_STOPPED);
      const float *after = vl_model_tensor_data (vl_trainer_get_model (t), idx, NULL, NULL, NULL);
      moved[run] = 0;
      for (int i = 0; i < 8; i++)
        moved[run] = MAX (moved[run], fabs (after[i] - before[i]));
      run_log_clear (&log);
    }
  g_test_message ("stem update: %g without decay, %g with 0.5 (depth 2 -> 0.5^3)", moved[0],
                  moved[1]);
  g_assert_cmpfloat_with_epsilon (moved[1] / moved[0], 0.125, 0.01);
  vl_train_config_clear (&c);
}

/* ------------------------------------------------------------------ training */

static void
test_events (void)
{
  VlTrainConfig c;
  base_config (&c);
  RunLog log = { 0 };
  g_autoptr(VlTrainer) t = train (&c, NULL, NULL, &log);
  assert_finished (&log, VL_TRAIN_END_COMPLETED);
  /* READY first; consecutive steps arrive merged, every step exactly once, in order */
  VlTrainEvent *first = g_ptr_array_index (log.events, 0);
  g_assert_cmpint (first->kind, ==, VL_TRAIN_EVENT_READY);
  g_assert_cmpint (first->n_classes, ==, 3);
  g_assert_cmpint (first->n_train, ==, 24);
  g_assert_cmpint (first->n_val, ==, 12);
  g_assert_cmpint (first->steps_per_epoch, ==, 3);
  g_assert_cmpstr (first->class_names[1], ==, "beta");
  int64_t next = 1;
  for (guint i = 0; i < log.events->len; i++)
    {
      VlTrainEvent *ev = g_ptr_array_index (log.events, i);
      if (ev->kind != VL_TRAIN_EVENT_STEP)
        continue;
      for (int p = 0; p < ev->n_points; p++)
        {
          g_assert_cmpint (ev->points[p].step, ==, next++);
          g_assert_true (isfinite (ev->points[p].loss));
          g_assert_cmpfloat (ev->points[p].lr, >, 0);
        }
      g_assert_cmpint (ev->step, ==, next - 1);
      g_assert_nonnull (ev->group_grad_norms);
      /* only the head trains: every other group's gradient norm is 0 */
      for (int g = 0; g < 4; g++)
        g_assert_cmpfloat (ev->group_grad_norms[g], ==, 0.0);
      g_assert_cmpfloat (ev->group_grad_norms[4], >, 0.0);
    }
  g_assert_cmpint (next - 1, ==, 6);
  g_autoptr(GPtrArray) em = epoch_metrics (&log);
  g_assert_cmpint (em->len, ==, 2);
  for (guint e = 0; e < em->len; e++)
    {
      VlEpochMetrics *m = g_ptr_array_index (em, e);
      g_assert_cmpint (m->epoch, ==, (int) e);
      g_assert_cmpint (m->val.n, ==, 12);
      int64_t total = 0;
      for (int k = 0; k < 9; k++)
        total += m->val.confusion[k];
      g_assert_cmpint (total, ==, 12);
      g_assert_true (isnan (m->val.top5));   /* 5 classes or fewer */
      g_assert_true (isfinite (m->train_loss) && isfinite (m->val.loss));
      g_test_message ("epoch %d: train %.4f val %.4f acc %.3f", m->epoch, m->train_loss,
                      m->val.loss, m->val.top1);
    }
  g_assert_nonnull (vl_trainer_get_model (t));
  run_log_clear (&log);
  vl_train_config_clear (&c);
}

/* A learnable problem is learnt: a linear probe then a fine-tune of the last block. */
static void
test_learns (void)
{
  VlTrainConfig c;
  base_config (&c);
  c.epochs = 6;
  c.lr = 1e-2;
  g_free (c.unlock_schedule);
  c.unlock_schedule = g_strdup ("0:1,3:3");
  RunLog log = { 0 };
  g_autoptr(VlTrainer) t = train (&c, NULL, tiny_dataset (5, 12, 6, 16, 5), &log);
  assert_finished (&log, VL_TRAIN_END_COMPLETED);
  g_autoptr(GPtrArray) em = epoch_metrics (&log);
  VlEpochMetrics *first = g_ptr_array_index (em, 0), *last = g_ptr_array_index (em, em->len - 1);
  g_test_message ("val loss %.4f -> %.4f, top-1 %.3f -> %.3f, top-5 %.3f", first->val.loss,
                  last->val.loss, first->val.top1, last->val.top1, last->val.top5);
  g_assert_cmpfloat (last->val.loss, <, first->val.loss);
  g_assert_cmpfloat (last->val.top1, >=, 0.8);
  g_assert_true (isnan (last->val.top5));   /* with 5 classes, top-5 is always 1: not reported */
  for (int k = 0; k < 5; k++)
    g_assert_true (isfinite (last->val.class_acc[k]));
  run_log_clear (&log);
  vl_train_config_clear (&c);
}

static void
test_frozen_unchanged (void)
{
  VlTrainConfig c;
  base_config (&c);
  g_free (c.unlock_schedule);
  c.unlock_schedule = g_strdup ("3");   /* blocks.1, norm, head */
  VlModel *model = tiny_model ();
  int64_t n;
  g_autofree float *before = params_copy (model, &n);
  int n_backbone = vl_model_n_tensors (model) - 2;   /* without head.weight, head.bias */
  RunLog log = { 0 };
  g_autoptr(VlTrainer) t = train (&c, model, NULL, &log);
  assert_finished (&log, VL_TRAIN_END_COMPLETED);
  VlModel *m = vl_trainer_get_model (t);
  int64_t off = 0;
  int changed = 0, same = 0;
  for (int i = 0; i < n_backbone; i++)
    {
      int64_t k;
      const float *d = vl_model_tensor_data (m, i, NULL, NULL, &k);
      int group = vl_model_tensor_group (m, i);
      gboolean equal = memcmp (d, before + off, sizeof (float) * k) == 0;
      if (group < 2)   /* stem, blocks.0: frozen, bit for bit */
        {
          if (!equal)
            g_error ("frozen tensor %s changed", vl_model_tensor_name (m, i));
          same++;
        }
      else if (!equal)
        changed++;
      off += k;
    }
  g_test_message ("%d frozen tensors unchanged, %d trained tensors changed", same, changed);
  g_assert_cmpint (same, ==, 4 + 12);
  g_assert_cmpint (changed, >=, 12);
  run_log_clear (&log);
  vl_train_config_clear (&c);
}

/* A fixed pattern that is not the last N: the stem and the head train, the blocks and the norm
 * stay bit for bit; the run records the pattern and resumes with it. */
static void
test_unlock_mask (void)
{
  VlTrainConfig c;
  base_config (&c);
  VlModel *model = tiny_model ();
  const int n_groups = vl_model_n_groups (model);   /* stem, blocks.0, blocks.1, norm, head */
  c.unlock_mask = 1 | (G_GUINT64_CONSTANT (1) << (n_groups - 1));
  g_autofree char *tmp = vl_test_tmpdir ();
  c.out_dir = g_build_filename (tmp, "run", NULL);
  int64_t n;
  g_autofree float *before = params_copy (model, &n);
  int n_backbone = vl_model_n_tensors (model) - 2;
  RunLog log = { 0 };
  g_autoptr(VlTrainer) t = train (&c, model, NULL, &log);
  assert_finished (&log, VL_TRAIN_END_COMPLETED);
  VlModel *m = vl_trainer_get_model (t);
  int64_t off = 0;
  for (int i = 0; i < n_backbone; i++)
    {
      int64_t k;
      const float *d = vl_model_tensor_data (m, i, NULL, NULL, &k);
      int group = vl_model_tensor_group (m, i);
      gboolean equal = memcmp (d, before + off, sizeof (float) * k) == 0;
      if ((group == 0) == equal)
        g_error ("%s (group %d) %s", vl_model_tensor_name (m, i), group,
                 equal ? "did not train" : "changed though frozen");
      off += k;
    }
  /* the LOCK event counts the two groups */
  gboolean locked = FALSE;
  for (guint i = 0; i < log.events->len; i++)
    {
      VlTrainEvent *ev = g_ptr_array_index (log.events, i);
      if (ev->kind == VL_TRAIN_EVENT_LOCK)
        {
          g_assert_cmpint (ev->unlocked, ==, 2);
          locked = TRUE;
        }
    }
  g_assert_true (locked);
  g_autoptr(GError) error = NULL;
  VlTrainConfig back;
  g_assert_true (vl_train_config_load (&back, c.out_dir, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (back.unlock_mask, ==, c.unlock_mask);
  vl_train_config_clear (&back);
  run_log_clear (&log);
  vl_train_config_clear (&c);
}

static void
test_progressive (void)
{
  VlTrainConfig c;
  base_config (&c);
  c.epochs = 5;
  g_free (c.unlock_schedule);
  c.unlock_schedule = g_strdup ("0:1,2:3,4:all");
  VlModel *model = tiny_model ();
  int64_t n;
  g_autofree float *before = params_copy (model, &n);
  RunLog log = { 0 };
  g_autoptr(VlTrainer) t = train (&c, model, NULL, &log);
  assert_finished (&log, VL_TRAIN_END_COMPLETED);
  g_autoptr(GPtrArray) em = epoch_metrics (&log);
  int want[] = { 1, 1, 3, 3, 5 };   /* 5 groups: stem, blocks.0, blocks.1, norm, head */
  g_assert_cmpint (em->len, ==, 5);
  for (int e = 0; e < 5; e++)
    g_assert_cmpint (((VlEpochMetrics *) g_ptr_array_index (em, e))->unlocked, ==, want[e]);
  /* LOCK events at the epochs where the schedule changes, before that epoch's steps */
  int locks = 0;
  for (guint i = 0; i < log.events->len; i++)
    {
      VlTrainEvent *ev = g_ptr_array_index (log.events, i);
      if (ev->kind == VL_TRAIN_EVENT_LOCK)
        {
          int we[] = { 0, 2, 4 };
          g_assert_cmpint (ev->epoch, ==, we[locks]);
          g_assert_cmpint (ev->step, ==, we[locks] * 3);
          g_assert_cmpint (ev->unlocked, ==, want[we[locks]]);
          locks++;
        }
      /* steps of epoch e report the lock of epoch e */
      if (ev->kind == VL_TRAIN_EVENT_STEP)
        g_assert_cmpint (ev->unlocked, ==, want[ev->epoch]);
    }
  g_assert_cmpint (locks, ==, 3);
  /* everything trained in the end, the stem included */
  VlModel *m = vl_trainer_get_model (t);
  g_assert_true (memcmp (vl_model_tensor_data (m, 0, NULL, NULL, NULL), before,
                         sizeof (float) * 16) != 0);
  /* AdamW step counts: the head trained 15 steps, blocks.1 9, the stem 3 */
  int step;
  vl_model_tensor_optim_state (m, vl_model_find_tensor (m, "head.weight"), NULL, NULL, &step);
  g_assert_cmpint (step, ==, 15);
  vl_model_tensor_optim_state (m, vl_model_find_tensor (m, "blocks.1.mlp.fc1.weight"), NULL, NULL,
                               &step);
  g_assert_cmpint (step, ==, 9);
  vl_model_tensor_optim_state (m, vl_model_find_tensor (m, "pos_embed"), NULL, NULL, &step);
  g_assert_cmpint (step, ==, 3);
  run_log_clear (&log);
  vl_train_config_clear (&c);
}

/* Training from cached boundary activations gives the parameters of training from images, also
 * across lock changes (the cache is rebuilt at the new boundary, then not used once the stem
 * trains). */
static void
test_cache_equivalence (void)
{
  const char *schedules[] = { "1", "0:1,1:2,2:3,3:all" };
  for (guint s = 0; s < G_N_ELEMENTS (schedules); s++)
    {
      VlTrainConfig c;
      base_config (&c);
      c.epochs = s == 0 ? 3 : 4;
      c.clip_grad = 1.0;
      c.label_smoothing = 0.1;
      c.layer_decay = 0.7;
      g_free (c.unlock_schedule);
      c.unlock_schedule = g_strdup (schedules[s]);
      RunLog a = { 0 }, b = { 0 };
      g_autoptr(VlTrainer) plain = train (&c, NULL, NULL, &a);
      c.cache_features = TRUE;
      g_autoptr(VlTrainer) cached = train (&c, NULL, NULL, &b);
      assert_finished (&a, VL_TRAIN_END_COMPLETED);
      assert_finished (&b, VL_TRAIN_END_COMPLETED);
      g_autoptr(GPtrArray) ea = epoch_metrics (&a);
      g_autoptr(GPtrArray) eb = epoch_metrics (&b);
      for (guint e = 0; e < ea->len; e++)
        {
          VlEpochMetrics *x = g_ptr_array_index (ea, e), *y = g_ptr_array_index (eb, e);
          g_assert_false (x->cached);
          g_assert_cmpint (y->cached, ==, y->unlocked < 5);
          g_assert_cmpfloat_with_epsilon (x->train_loss, y->train_loss, 1e-4);
          g_assert_cmpfloat_with_epsilon (x->val.loss, y->val.loss, 1e-4);
        }
      /* the LOCK event announces whether the epochs under it run from the cache */
      for (guint i = 0; i < b.events->len; i++)
        {
          VlTrainEvent *ev = g_ptr_array_index (b.events, i);
          if (ev->kind == VL_TRAIN_EVENT_LOCK)
            g_assert_cmpint (ev->cached, ==,
                             ((VlEpochMetrics *) g_ptr_array_index (eb, ev->epoch))->cached);
        }
      assert_same_params (schedules[s], vl_trainer_get_model (plain),
                          vl_trainer_get_model (cached), 1e-5);
      run_log_clear (&a);
      run_log_clear (&b);
      vl_train_config_clear (&c);
    }
}

/* With augmentation on, training decodes every epoch, but the validation split runs from its
 * cached boundary activations: the same parameters and validation metrics, bit for bit close. */
static void
test_cache_validation_only (void)
{
  VlTrainConfig c;
  base_config (&c);
  c.epochs = 3;
  c.augment = VL_AUGMENT_LIGHT;
  g_free (c.unlock_schedule);
  c.unlock_schedule = g_strdup ("0:1,1:3,2:all");
  RunLog a = { 0 }, b = { 0 };
  g_autoptr(VlTrainer) plain = train (&c, NULL, NULL, &a);
  c.cache_features = TRUE;
  g_autoptr(VlTrainer) cached = train (&c, NULL, NULL, &b);
  assert_finished (&a, VL_TRAIN_END_COMPLETED);
  assert_finished (&b, VL_TRAIN_END_COMPLETED);
  g_autoptr(GPtrArray) ea = epoch_metrics (&a);
  g_autoptr(GPtrArray) eb = epoch_metrics (&b);
  g_assert_cmpuint (ea->len, ==, 3);
  for (guint e = 0; e < ea->len; e++)
    {
      VlEpochMetrics *x = g_ptr_array_index (ea, e), *y = g_ptr_array_index (eb, e);
      g_assert_false (y->cached);   /* training itself never runs from the cache here */
      g_assert_cmpfloat_with_epsilon (x->train_loss, y->train_loss, 1e-5);
      g_assert_cmpfloat_with_epsilon (x->val.loss, y->val.loss, 1e-5);
      g_assert_cmpfloat (x->val.top1, ==, y->val.top1);
    }
  /* and the run said so; the pass that cached epoch 0's boundary (the pooled features) also kept
   * the tokens entering the last block, epoch 1's boundary: one caching pass, not two; and
   * caching and validation reported their progress, ending at every validation image */
  gboolean told = FALSE;
  int passes = 0, reused = 0, val_done = 0;
  for (guint i = 0; i < b.events->len; i++)
    {
      VlTrainEvent *ev = g_ptr_array_index (b.events, i);
      told |= ev->kind == VL_TRAIN_EVENT_MESSAGE && strstr (ev->message, "validates");
      passes += ev->kind == VL_TRAIN_EVENT_MESSAGE && strstr (ev->message, "caching the") != NULL;
      reused += ev->kind == VL_TRAIN_EVENT_MESSAGE &&
                strstr (ev->message, "cached with the previous lock's") != NULL;
      if (ev->kind == VL_TRAIN_EVENT_PROGRESS && ev->phase == VL_TRAIN_PHASE_VALIDATE &&
          ev->done == ev->total)
        {
          g_assert_cmpint (ev->total, >, 0);
          g_assert_cmpfloat (ev->eta_s, ==, 0.0);
          val_done++;
        }
    }
  g_assert_true (told);
  g_assert_cmpint (passes, ==, 1);
  g_assert_cmpint (reused, ==, 1);
  g_assert_cmpint (val_done, ==, 3);   /* one per epoch */
  assert_same_params ("validation cache", vl_trainer_get_model (plain),
                      vl_trainer_get_model (cached), 1e-6);
  run_log_clear (&a);
  run_log_clear (&b);
  vl_train_config_clear (&c);
}

static void
test_cache_limit (void)
{
  VlTrainConfig c;
  base_config (&c);
  c.epochs = 1;
  c.cache_features = TRUE;
  c.cache_limit = 1000;   /* bytes: 36 images x 32 floats = 4.6 kB */
  RunLog log = { 0 };
  g_autoptr(VlTrainer) t = train (&c, NULL, NULL, &log);
  assert_finished (&log, VL_TRAIN_END_COMPLETED);
  gboolean told = FALSE;
  for (guint i = 0; i < log.events->len; i++)
    {
      VlTrainEvent *ev = g_ptr_array_index (log.events, i);
      if (ev->kind == VL_TRAIN_EVENT_MESSAGE && strstr (ev->message, "limit"))
        told = TRUE;
      if (ev->kind == VL_TRAIN_EVENT_EPOCH)
        g_assert_false (ev->metrics->cached);
    }
  g_assert_true (told);
  run_log_clear (&log);
  vl_train_config_clear (&c);
}

/* Probes (a capture forward between steps) do not change the training. */
static void
test_probes (void)
{
  VlTrainConfig c;
  base_config (&c);
  c.cache_features = TRUE;
  RunLog a = { 0 }, b = { 0 };
  g_autoptr(VlTrainer) plain = train (&c, NULL, NULL, &a);
  c.probe_every = 2;
  c.n_probes = 4;
  g_autoptr(VlTrainer) probed = train (&c, NULL, NULL, &b);
  assert_finished (&b, VL_TRAIN_END_COMPLETED);
  int n_probe_events = 0;
  for (guint i = 0; i < b.events->len; i++)
    {
      VlTrainEvent *ev = g_ptr_array_index (b.events, i);
      if (ev->kind != VL_TRAIN_EVENT_PROBES)
        continue;
      n_probe_events++;
      g_assert_cmpint (ev->n_probes, ==, 4);
      g_assert_cmpint (ev->grid_h, ==, 4);
      g_assert_cmpint (ev->grid_w, ==, 4);
      /* one probe per class first: labels 0, 1, 2, 0 */
      g_assert_cmpint (ev->probe_labels[0], ==, 0);
      g_assert_cmpint (ev->probe_labels[2], ==, 2);
      g_assert_cmpint (ev->probe_labels[3], ==, 0);
      g_assert_nonnull (ev->probe_names[3]);
      for (int p = 0; p < 4; p++)
        {
          double sum = 0;
          for (int k = 0; k < 16; k++)
            {
              g_assert_cmpfloat (ev->rollout[p * 16 + k], >=, 0);
              sum += ev->rollout[p * 16 + k];
            }
          g_assert_cmpfloat (sum, >, 0);
          g_assert_cmpint (ev->probe_predicted[p], >=, 0);
          g_assert_cmpint (ev->probe_predicted[p], <, 3);
        }
    }
  /* at the start and after steps 2, 4, 6: all drained at the end, so only the newest is left */
  g_assert_cmpint (n_probe_events, >=, 1);
  assert_same_params ("with probes", vl_trainer_get_model (plain), vl_trainer_get_model (probed),
                      1e-6);
  for (guint i = 0; i < b.events->len; i++)   /* a class token: no attention-pool maps */
    g_assert_null (((VlTrainEvent *) g_ptr_array_index (b.events, i))->pool);
  run_log_clear (&a);
  run_log_clear (&b);

  /* a SigLIP-shaped model (no class token, an attention pool): each probe's pool map too, the
   * probabilities of its 2 heads over the 16 patches */
  VlGeometry g = tiny_geometry (32, 2, 2, 4, 4);
  g.class_token = FALSE;
  g.attn_pool = TRUE;
  g.gelu_tanh = TRUE;
  RunLog s = { 0 };
  g_autoptr(VlTrainer) siglip = train (&c, vl_model_new_random (&g, 0, 7), NULL, &s);
  assert_finished (&s, VL_TRAIN_END_COMPLETED);
  int n_pool = 0;
  for (guint i = 0; i < s.events->len; i++)
    {
      VlTrainEvent *ev = g_ptr_array_index (s.events, i);
      if (ev->kind != VL_TRAIN_EVENT_PROBES)
        continue;
      g_assert_nonnull (ev->pool);
      g_assert_cmpint (ev->pool_heads, ==, 2);
      for (int r = 0; r < ev->n_probes * 2; r++)
        {
          double sum = 0;
          for (int k = 0; k < 16; k++)
            sum += ev->pool[r * 16 + k];
          g_assert_cmpfloat_with_epsilon (sum, 1.0, 1e-5);
        }
      n_pool++;
    }
  g_assert_cmpint (n_pool, >=, 1);
  run_log_clear (&s);
  vl_train_config_clear (&c);
}

/* 2 epochs straight == 1 epoch, resume, 1 epoch == stopped mid-epoch, resume; also with the
 * cache and a progressive schedule. */
static void
test_resume (void)
{
  for (int variant = 0; variant < 3; variant++)
    {
      VlTrainConfig c;
      base_config (&c);
      c.epochs = 3;
      c.clip_grad = 2.0;
      c.layer_decay = 0.8;
      c.early_stop = 5;
      g_free (c.unlock_schedule);
      c.unlock_schedule = g_strdup ("0:1,1:2,2:all");
      c.cache_features = variant == 2;
      g_autofree char *tmp = vl_test_tmpdir ();
      g_autofree char *dir_a = g_build_filename (tmp, "straight", NULL);
      g_autofree char *dir_b = g_build_filename (tmp, "resumed", NULL);
      RunLog a = { 0 };
      c.out_dir = g_strdup (dir_a);
      g_autoptr(VlTrainer) straight = train (&c, NULL, NULL, &a);
      assert_finished (&a, VL_TRAIN_END_COMPLETED);

      g_free (c.out_dir);
      c.out_dir = g_strdup (dir_b);
      if (variant == 0)
        c.stop_after_epoch = 1;
      else
        c.stop_after_step = 3 + 2;   /* mid-epoch 1 (3 batches per epoch) */
      RunLog b1 = { 0 }, b2 = { 0 };
      g_autoptr(VlTrainer) first = train (&c, NULL, NULL, &b1);
      assert_finished (&b1, VL_TRAIN_END_STOPPED);
      g_autofree char *metrics = g_build_filename (dir_b, "metrics.jsonl", NULL);
      g_assert_cmpint (count_lines (metrics), ==, 1);

      c.stop_after_epoch = 0;
      c.stop_after_step = 0;
      c.resume = TRUE;
      g_autoptr(VlTrainer) second = train (&c, NULL, NULL, &b2);
      assert_finished (&b2, VL_TRAIN_END_COMPLETED);
      VlTrainEvent *ready = g_ptr_array_index (b2.events, 0);
      g_assert_cmpint (ready->kind, ==, VL_TRAIN_EVENT_READY);
      g_assert_cmpint (ready->start_epoch, ==, 1);
      g_assert_cmpint (ready->step, ==, variant == 0 ? 3 : 5);
      g_test_message ("variant %d", variant);
      assert_same_params ("resumed", vl_trainer_get_model (straight),
                          vl_trainer_get_model (second), 1e-6);
      g_assert_cmpint (count_lines (metrics), ==, 3);
      /* the epoch metrics agree too (the interrupted epoch's train loss included) */
      g_autoptr(GPtrArray) ea = epoch_metrics (&a);
      g_autoptr(GPtrArray) eb = epoch_metrics (&b2);
      g_assert_cmpint (eb->len, ==, 2);
      for (int e = 1; e < 3; e++)
        {
          VlEpochMetrics *x = g_ptr_array_index (ea, e), *y = g_ptr_array_index (eb, e - 1);
          g_assert_cmpint (x->epoch, ==, y->epoch);
          g_assert_cmpint (x->step, ==, y->step);
          g_assert_cmpfloat_with_epsilon (x->train_loss, y->train_loss, 1e-5);
          g_assert_cmpfloat_with_epsilon (x->val.loss, y->val.loss, 1e-5);
        }
      /* the run folder is a checkpoint */
      g_autoptr(GError) error = NULL;
      g_auto(GStrv) names = NULL;
      g_autoptr(VlModel) loaded = vl_run_load_model (dir_b, &names, &error);
      g_assert_no_error (error);
      g_assert_cmpstr (names[2], ==, "gamma");
      assert_same_params ("loaded", loaded, vl_trainer_get_model (second), 0);
      g_autoptr(VlModel) direct = vl_model_load (dir_b, &error);
      g_assert_no_error (error);
      g_assert_cmpstr (vl_model_class_names (direct)[0], ==, "alpha");
      g_autofree char *best = g_build_filename (dir_b, "best.safetensors", NULL);
      g_assert_true (g_file_test (best, G_FILE_TEST_EXISTS));
      run_log_clear (&a);
      run_log_clear (&b1);
      run_log_clear (&b2);
      vl_train_config_clear (&c);
      rm_rf (tmp);
    }
}

static void
test_resume_errors (void)
{
  g_autofree char *tmp = vl_test_tmpdir ();
  VlTrainConfig c;
  base_config (&c);
  c.out_dir = g_strdup (tmp);
  c.resume = TRUE;
  g_autoptr(GError) error = NULL;
  g_autoptr(VlTrainer) t = vl_trainer_new (&c, &error);
  g_assert_no_error (error);
  g_assert_false (vl_trainer_start (t, &error));
  g_assert_error (error, VL_ERROR, VL_ERROR_MISSING);
  g_test_message ("%s", error->message);
  g_clear_error (&error);

  /* a checkpoint of other data: the resume refuses it */
  c.resume = FALSE;
  c.epochs = 1;
  RunLog a = { 0 }, b = { 0 };
  g_autoptr(VlTrainer) t1 = train (&c, NULL, NULL, &a);
  assert_finished (&a, VL_TRAIN_END_COMPLETED);
  c.resume = TRUE;
  c.epochs = 2;
  g_autoptr(VlTrainer) t2 = train (&c, NULL, tiny_dataset (3, 9, 4, 16, 11), &b);
  g_assert_cmpint (b.end, ==, VL_TRAIN_END_FAILED);
  g_assert_nonnull (b.error);
  g_test_message ("%s", b.error->message);
  g_assert_nonnull (strstr (b.error->message, "other data"));
  run_log_clear (&a);
  run_log_clear (&b);
  vl_train_config_clear (&c);
  rm_rf (tmp);
}

/* A NaN loss ends the run with VL_ERROR_NUMERIC; the checkpoint of the last good epoch stays. */
static void
test_nan (void)
{
  g_autofree char *tmp = vl_test_tmpdir ();
  VlTrainConfig c;
  base_config (&c);
  c.epochs = 3;
  c.warmup_epochs = 0;
  c.lr = 1e30;
  g_free (c.unlock_schedule);
  c.unlock_schedule = g_strdup ("0:0,1:1");   /* nothing trains in epoch 0, then lr 1e30 */
  c.out_dir = g_strdup (tmp);
  RunLog log = { 0 };
  g_autoptr(VlTrainer) t = train (&c, NULL, NULL, &log);
  g_assert_cmpint (log.end, ==, VL_TRAIN_END_FAILED);
  g_assert_error (log.error, VL_ERROR, VL_ERROR_NUMERIC);
  g_test_message ("%s", log.error->message);
  g_assert_nonnull (strstr (log.error->message, "epoch 2"));
  g_assert_nonnull (strstr (log.error->message, "keeps the checkpoint of epoch 1"));
  g_autoptr(GError) error = NULL;
  g_autoptr(VlModel) m = vl_model_load (tmp, &error);
  g_assert_no_error (error);
  int64_t n;
  g_autofree float *p = params_copy (m, &n);
  for (int64_t i = 0; i < n; i++)
    g_assert_true (isfinite (p[i]));
  g_autofree char *metrics = g_build_filename (tmp, "metrics.jsonl", NULL);
  g_assert_cmpint (count_lines (metrics), ==, 1);
  run_log_clear (&log);
  vl_train_config_clear (&c);
  rm_rf (tmp);
}

static void
test_unwritable (void)
{
  g_autofree char *tmp = vl_test_tmpdir ();
  g_autofree char *file = g_build_filename (tmp, "file", NULL);
  g_assert_true (g_file_set_contents (file, "x", 1, NULL));
  VlTrainConfig c;
  base_config (&c);
  c.out_dir = g_build_filename (file, "run", NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(VlTrainer) t = vl_trainer_new (&c, &error);
  g_assert_no_error (error);
  g_assert_false (vl_trainer_start (t, &error));
  g_assert_error (error, VL_ERROR, VL_ERROR_IO);
  g_test_message ("%s", error->message);
  g_assert_cmpint (vl_trainer_get_state (t), ==, VL_TRAINER_IDLE);
  vl_train_config_clear (&c);

  /* a bad configuration is refused before anything starts */
  base_config (&c);
  c.lr = -1;
  g_clear_error (&error);
  g_assert_null (vl_trainer_new (&c, &error));
  g_assert_error (error, VL_ERROR, VL_ERROR_INVALID);
  vl_train_config_clear (&c);
  rm_rf (tmp);
}

static void
test_mlp_head (void)
{
  g_autofree char *tmp = vl_test_tmpdir ();
  VlTrainConfig c;
  base_config (&c);
  c.head = VL_HEAD_MLP;
  c.mlp_hidden = 24;
  c.pool = VL_POOL_AVG;
  c.out_dir = g_strdup (tmp);
  RunLog log = { 0 };
  g_autoptr(VlTrainer) t = train (&c, NULL, NULL, &log);
  assert_finished (&log, VL_TRAIN_END_COMPLETED);
  VlModel *m = vl_trainer_get_model (t);
  g_assert_cmpint (vl_model_head_kind (m), ==, VL_HEAD_MLP);
  g_autoptr(GError) error = NULL;
  g_auto(GStrv) names = NULL;
  g_autoptr(VlModel) loaded = vl_run_load_model (tmp, &names, &error);
  g_assert_no_error (error);
  g_assert_cmpint (vl_model_head_kind (loaded), ==, VL_HEAD_MLP);
  g_assert_cmpint (vl_model_pool (loaded), ==, VL_POOL_AVG);
  assert_same_params ("mlp run", loaded, m, 0);
  /* same evaluation from the reloaded model */
  VlDataset *ds = vl_trainer_get_dataset (t);
  VlEvalResult r1, r2;
  g_assert_true (vl_evaluate (m, ds, VL_SPLIT_VAL, 5, NULL, &r1, &error));
  g_assert_true (vl_evaluate (loaded, ds, VL_SPLIT_VAL, 7, NULL, &r2, &error));
  g_assert_cmpfloat_with_epsilon (r1.loss, r2.loss, 1e-5);
  g_assert_cmpfloat (r1.top1, ==, r2.top1);
  g_autoptr(GPtrArray) em = epoch_metrics (&log);
  VlEpochMetrics *last = g_ptr_array_index (em, em->len - 1);
  g_assert_cmpfloat_with_epsilon (last->val.loss, r1.loss, 1e-5);
  vl_eval_result_clear (&r1);
  vl_eval_result_clear (&r2);
  run_log_clear (&log);
  vl_train_config_clear (&c);
  rm_rf (tmp);
}

/* A save that fails (here: a directory squats the pending name of model.safetensors, as a full
 * disk would fail the write) ends the run with the error and leaves the previous checkpoint
 * whole: it still resumes. */
static void
test_save_failure (void)
{
  g_autofree char *tmp = vl_test_tmpdir ();
  VlTrainConfig c;
  base_config (&c);
  c.epochs = 3;
  c.out_dir = g_strdup (tmp);
  c.stop_after_epoch = 1;
  RunLog a = { 0 }, b = { 0 }, d = { 0 };
  g_autoptr(VlTrainer) t1 = train (&c, NULL, NULL, &a);
  assert_finished (&a, VL_TRAIN_END_STOPPED);
  g_autofree char *model = g_build_filename (tmp, "model.safetensors", NULL);
  g_autofree char *before = NULL, *after = NULL;
  gsize n1, n2;
  g_assert_true (g_file_get_contents (model, &before, &n1, NULL));

  g_autofree char *squat = g_build_filename (tmp, ".model.safetensors.pending", "x", NULL);
  g_assert_cmpint (g_mkdir_with_parents (squat, 0755), ==, 0);
  c.stop_after_epoch = 0;
  c.resume = TRUE;
  g_autoptr(VlTrainer) t2 = train (&c, NULL, NULL, &b);
  g_assert_cmpint (b.end, ==, VL_TRAIN_END_FAILED);
  g_assert_error (b.error, VL_ERROR, VL_ERROR_IO);
  g_test_message ("%s", b.error->message);
  g_assert_nonnull (strstr (b.error->message, "checkpoint of epoch 2"));
  g_assert_true (g_file_get_contents (model, &after, &n2, NULL));
  g_assert_true (n1 == n2 && memcmp (before, after, n1) == 0);
  g_autofree char *metrics = g_build_filename (tmp, "metrics.jsonl", NULL);
  g_assert_cmpint (count_lines (metrics), ==, 1);

  /* space again: the run continues from epoch 1 */
  g_autofree char *squat_dir = g_path_get_dirname (squat);
  rm_rf (squat_dir);
  g_autoptr(VlTrainer) t3 = train (&c, NULL, NULL, &d);
  assert_finished (&d, VL_TRAIN_END_COMPLETED);
  g_assert_cmpint (count_lines (metrics), ==, 3);
  run_log_clear (&a);
  run_log_clear (&b);
  run_log_clear (&d);
  vl_train_config_clear (&c);
  rm_rf (tmp);
}

/* ------------------------------------------------------------------ control */

/* A config slow enough to still be running when the test acts: a wider model, many epochs. */
static VlTrainer *
start_slow (VlTrainConfig *c)
{
  base_config (c);
  c->epochs = 1000;
  c->batch_size = 16;
  g_free (c->unlock_schedule);
  c->unlock_schedule = g_strdup ("all");
  VlGeometry g = tiny_geometry (96, 6, 3, 8, 8);   /* 64 x 64 images, 65 tokens */
  g_autoptr(GError) error = NULL;
  VlTrainer *t = vl_trainer_new (c, &error);
  g_assert_no_error (error);
  vl_trainer_take_model (t, vl_model_new_random (&g, 0, 1));
  vl_trainer_take_dataset (t, tiny_dataset (2, 32, 4, 64, 1));
  g_assert_true (vl_trainer_start (t, &error));
  return t;
}

/* Waits for an event of `kind`, collecting (and freeing) the others; returns its step. */
static int64_t
wait_for (VlTrainer *t, VlTrainEventKind kind, double *step_seconds)
{
  gint64 deadline = g_get_monotonic_time () + 60 * G_USEC_PER_SEC;
  while (g_get_monotonic_time () < deadline)
    {
      vl_trainer_wait (t, 100000);
      g_autoptr(GPtrArray) evs = vl_trainer_drain (t);
      for (guint i = 0; i < evs->len; i++)
        {
          VlTrainEvent *ev = g_ptr_array_index (evs, i);
          if (ev->kind == VL_TRAIN_EVENT_STEP && step_seconds && ev->images_per_s > 0)
            *step_seconds = 16 / ev->images_per_s;
          g_assert_cmpint (ev->kind == VL_TRAIN_EVENT_FINISHED, <=, kind == ev->kind);
          if (ev->kind == kind)
            return ev->step;
        }
    }
  g_error ("no %s event within 60 s", vl_train_event_kind_name (kind));
  return -1;
}

static void
test_stop (void)
{
  VlTrainConfig c;
  g_autoptr(VlTrainer) t = start_slow (&c);
  double step_s = 0;
  wait_for (t, VL_TRAIN_EVENT_STEP, &step_s);
  wait_for (t, VL_TRAIN_EVENT_STEP, &step_s);
  g_usleep (G_USEC_PER_SEC * step_s * 0.4);   /* somewhere inside a step */
  gint64 t0 = g_get_monotonic_time ();
  vl_trainer_stop (t);
  vl_trainer_join (t);
  double latency = (g_get_monotonic_time () - t0) / 1e6;
  g_test_message ("stopped %.3f s after the request (a step takes %.3f s)", latency, step_s);
  /* the bound: the longest single forward or backward pass; under sanitizers a step is slower */
  g_assert_cmpfloat (latency, <, MAX (1.0, step_s));
  g_autoptr(GPtrArray) evs = vl_trainer_drain (t);
  VlTrainEvent *last = g_ptr_array_index (evs, evs->len - 1);
  g_assert_cmpint (last->kind, ==, VL_TRAIN_EVENT_FINISHED);
  g_assert_cmpint (last->end, ==, VL_TRAIN_END_STOPPED);
  g_assert_cmpint (vl_trainer_get_state (t), ==, VL_TRAINER_FINISHED);
  vl_trainer_stop (t);   /* idempotent */
  vl_train_config_clear (&c);
}

static void
test_pause_resume (void)
{
  VlTrainConfig c;
  g_autoptr(VlTrainer) t = start_slow (&c);
  wait_for (t, VL_TRAIN_EVENT_STEP, NULL);
  vl_trainer_pause (t);
  int64_t paused_at = wait_for (t, VL_TRAIN_EVENT_PAUSED, NULL);
  g_assert_cmpint (vl_trainer_get_state (t), ==, VL_TRAINER_PAUSED);
  g_usleep (300000);
  g_autoptr(GPtrArray) quiet = vl_trainer_drain (t);
  g_assert_cmpint (quiet->len, ==, 0);   /* no step while paused */
  vl_trainer_resume (t);
  int64_t resumed_at = wait_for (t, VL_TRAIN_EVENT_RESUMED, NULL);
  g_assert_cmpint (resumed_at, ==, paused_at);
  int64_t next = wait_for (t, VL_TRAIN_EVENT_STEP, NULL);
  g_assert_cmpint (next, >, paused_at);
  g_assert_cmpint (vl_trainer_get_state (t), ==, VL_TRAINER_RUNNING);
  /* stop while paused: at once, and without another batch (the model is the paused one) */
  vl_trainer_pause (t);
  int64_t stopped_at = wait_for (t, VL_TRAIN_EVENT_PAUSED, NULL);
  gint64 t0 = g_get_monotonic_time ();
  vl_trainer_stop (t);
  vl_trainer_join (t);
  g_assert_cmpfloat ((g_get_monotonic_time () - t0) / 1e6, <, 1.0);
  g_autoptr(GPtrArray) tail = vl_trainer_drain (t);
  for (guint i = 0; i < tail->len; i++)
    {
      VlTrainEvent *ev = g_ptr_array_index (tail, i);
      g_assert_cmpint (ev->kind, !=, VL_TRAIN_EVENT_STEP);
      g_assert_cmpint (ev->step, ==, stopped_at);
    }
  VlTrainEvent *last = g_ptr_array_index (tail, tail->len - 1);
  g_assert_cmpint (last->kind, ==, VL_TRAIN_EVENT_FINISHED);
  g_assert_cmpint (last->end, ==, VL_TRAIN_END_STOPPED);
  vl_train_config_clear (&c);
}

/* A probe image of the caller's own: (3, H, H) noise with a bright square. */
static float *
user_image (int H, guint32 seed)
{
  float *px = g_new (float, (gsize) 3 * H * H);
  GRand *rand = g_rand_new_with_seed (seed);
  for (int c = 0; c < 3; c++)
    for (int y = 0; y < H; y++)
      for (int x = 0; x < H; x++)
        px[((gsize) c * H + y) * H + x] = (float) g_rand_double_range (rand, -1, 1) +
                                           (x >= H / 4 && x < H / 2 && y >= H / 2 ? 2.0f : 0.0f);
  g_rand_free (rand);
  return px;
}

/* Drains until an event of `kind` (for PROBES: carrying the user probe `serial`) and returns
 * it; FINISHED before it fails the test. */
static VlTrainEvent *
next_event (VlTrainer *t, VlTrainEventKind kind, guint64 serial)
{
  gint64 deadline = g_get_monotonic_time () + 60 * G_USEC_PER_SEC;
  while (g_get_monotonic_time () < deadline)
    {
      vl_trainer_wait (t, 100000);
      g_autoptr(GPtrArray) evs = vl_trainer_drain (t);
      for (guint i = 0; i < evs->len; i++)
        {
          VlTrainEvent *ev = g_ptr_array_index (evs, i);
          g_assert_cmpint (ev->kind, !=, VL_TRAIN_EVENT_FINISHED);
          if (ev->kind == kind && (kind != VL_TRAIN_EVENT_PROBES || ev->user_probe == serial))
            return g_ptr_array_steal_index (evs, i);
        }
    }
  g_error ("no %s event within 60 s", vl_train_event_kind_name (kind));
  return NULL;
}

/* The user probe's fields: grid, sizes, every attention row a probability distribution, the
 * rollout non-negative with a mass of at most 1, a class. */
static void
assert_user_probe (const VlTrainEvent *ev, guint64 serial, int grid)
{
  g_assert_cmpint (ev->kind, ==, VL_TRAIN_EVENT_PROBES);
  g_assert_cmpuint (ev->user_probe, ==, serial);
  g_assert_cmpint (ev->user_grid_h, ==, grid);
  g_assert_cmpint (ev->user_grid_w, ==, grid);
  g_assert_cmpint (ev->user_depth, ==, 2);
  g_assert_cmpint (ev->user_heads, ==, 2);
  const int T = ev->user_T;
  g_assert_cmpint (T, ==, 1 + grid * grid);
  g_assert_nonnull (ev->user_attn);
  for (int r = 0; r < 2 * 2 * T; r++)   /* depth x heads x T rows */
    {
      double sum = 0;
      for (int c = 0; c < T; c++)
        {
          float v = ev->user_attn[(gsize) r * T + c];
          g_assert_true (isfinite (v));
          g_assert_cmpfloat (v, >=, 0);
          sum += v;
        }
      g_assert_cmpfloat_with_epsilon (sum, 1.0, 1e-4);
    }
  double mass = 0;
  for (int p = 0; p < grid * grid; p++)
    {
      g_assert_cmpfloat (ev->user_rollout[p], >=, 0);
      mass += ev->user_rollout[p];
    }
  g_assert_cmpfloat (mass, >, 0);
  g_assert_cmpfloat (mass, <=, 1.0 + 1e-5);
  g_assert_cmpint (ev->user_predicted, >=, 0);
  g_assert_cmpint (ev->user_predicted, <, 3);
}

/* Every block's attention of px (3, H, H) under m, (depth, heads, T, T), as the event lays it
 * out; its rollout into *roll. */
static float *
attention_of (VlModel *m, const float *px, int H, float **roll)
{
  g_autoptr(GError) error = NULL;
  g_assert_true (vl_model_forward (m, px, 1, H, H, VL_FORWARD_CAPTURE_ATTN, &error));
  g_assert_no_error (error);
  const VlGeometry *g = vl_model_geometry (m);
  const int T = vl_model_n_tokens_last (m);
  const gsize per_block = (gsize) g->heads * T * T;
  float *attn = g_new (float, per_block * g->depth);
  for (int l = 0; l < g->depth; l++)
    memcpy (attn + l * per_block, vl_model_attention (m, l), sizeof (float) * per_block);
  *roll = g_new (float, T);
  g_assert_true (vl_model_rollout (m, *roll, &error));
  return attn;
}

/* The caller's own probe image, given mid-run (while paused, then another of another size,
 * then training resumes): every PROBES event from then on carries its attention under the
 * model as it is at that step, and the training itself is unchanged. */
static void
test_user_probe (void)
{
  VlTrainConfig c;
  base_config (&c);
  c.epochs = 4;         /* 24 training images in batches of 8: 3 steps per epoch, 12 in all */
  c.probe_every = 3;
  c.n_probes = 2;
  g_free (c.unlock_schedule);
  c.unlock_schedule = g_strdup ("all");   /* the blocks train: the attention changes */
  g_autoptr(GError) error = NULL;
  g_autoptr(VlTrainer) t = vl_trainer_new (&c, &error);
  g_assert_no_error (error);
  vl_trainer_take_model (t, tiny_model ());
  vl_trainer_take_dataset (t, tiny_dataset (3, 8, 4, 16, 11));
  /* paused before it starts, so that it stops before its first step however busy the machine */
  vl_trainer_pause (t);
  g_assert_true (vl_trainer_start (t, &error));
  g_autoptr(VlTrainEvent) paused = next_event (t, VL_TRAIN_EVENT_PAUSED, 0);
  g_assert_cmpint (vl_trainer_get_state (t), ==, VL_TRAINER_PAUSED);
  g_assert_cmpint (paused->step, ==, 0);

  /* the model's input size: batched with the validation probes, computed while paused */
  g_autofree float *a = user_image (16, 5);
  guint64 serial_a = vl_trainer_set_user_probe (t, a, 3, 16, 16);
  g_assert_cmpuint (serial_a, >, 0);
  g_autoptr(VlTrainEvent) ea = next_event (t, VL_TRAIN_EVENT_PROBES, serial_a);
  g_assert_cmpint (vl_trainer_get_state (t), ==, VL_TRAINER_PAUSED);
  g_assert_cmpint (ea->step, ==, paused->step);
  assert_user_probe (ea, serial_a, 4);
  g_assert_cmpint (ea->n_probes, ==, 2);
  g_assert_cmpint (ea->grid_h, ==, 4);
  /* no step yet: the backbone is the one handed over (the head does not change attention) */
  g_autoptr(VlModel) fresh = tiny_model ();
  g_autofree float *roll_a = NULL;
  g_autofree float *attn_a = attention_of (fresh, a, 16, &roll_a);
  vl_test_assert_close ("user probe at the start", ea->user_attn, attn_a, 2 * 2 * 17 * 17,
                        1e-6, 1e-4);
  vl_test_assert_close ("user probe rollout", ea->user_rollout, roll_a, 16, 1e-6, 1e-4);

  /* an image the model cannot take is refused, with a message; the previous one stays */
  g_autofree float *gray = g_new0 (float, 16 * 16);
  guint64 serial_bad = vl_trainer_set_user_probe (t, gray, 1, 16, 16);
  g_assert_cmpuint (serial_bad, >, serial_a);
  g_autoptr(VlTrainEvent) refused = next_event (t, VL_TRAIN_EVENT_MESSAGE, 0);
  g_assert_nonnull (strstr (refused->message, "probe image: 1 channel"));

  /* another size (24 x 24: a 6 x 6 grid, the position embedding resampled) runs on its own */
  g_autofree float *b = user_image (24, 6);
  guint64 serial_b = vl_trainer_set_user_probe (t, b, 3, 24, 24);
  g_assert_cmpuint (serial_b, >, serial_bad);
  g_autoptr(VlTrainEvent) eb = next_event (t, VL_TRAIN_EVENT_PROBES, serial_b);
  assert_user_probe (eb, serial_b, 6);
  g_assert_cmpint (eb->n_probes, ==, 2);
  g_assert_cmpint (eb->grid_h, ==, 4);   /* the validation probes keep the model's grid */
  g_autofree float *roll_b0 = NULL;
  g_autofree float *attn_b0 = attention_of (fresh, b, 24, &roll_b0);
  vl_test_assert_close ("resized user probe at the start", eb->user_attn, attn_b0,
                        2 * 2 * 37 * 37, 1e-6, 1e-4);

  /* training resumes: each refresh (every 3 steps) carries it, the last one at the last step */
  vl_trainer_resume (t);
  RunLog log = { 0 };
  collect (t, &log);
  assert_finished (&log, VL_TRAIN_END_COMPLETED);
  const VlTrainEvent *last = NULL;
  int n_user = 0;
  for (guint i = 0; i < log.events->len; i++)
    {
      const VlTrainEvent *ev = g_ptr_array_index (log.events, i);
      if (ev->kind != VL_TRAIN_EVENT_PROBES)
        continue;
      assert_user_probe (ev, serial_b, 6);
      g_assert_cmpint (ev->step % 3, ==, 0);
      n_user++;
      last = ev;
    }
  g_assert_cmpint (n_user, >=, 1);
  g_assert_cmpint (last->step, ==, 12);
  /* ... under the trained model, whose attention has moved away from the start */
  VlModel *trained = vl_trainer_get_model (t);
  g_autofree float *roll_b = NULL;
  g_autofree float *attn_b = attention_of (trained, b, 24, &roll_b);
  vl_test_assert_close ("user probe at the end", last->user_attn, attn_b, 2 * 2 * 37 * 37,
                        1e-6, 1e-4);
  vl_test_assert_close ("user probe rollout at the end", last->user_rollout, roll_b, 36,
                        1e-6, 1e-4);
  double moved = 0;
  for (int i = 0; i < 2 * 2 * 37 * 37; i++)
    moved = MAX (moved, fabs (last->user_attn[i] - attn_b0[i]));
  g_test_message ("user probe attention moved by up to %.4f", moved);
  g_assert_cmpfloat (moved, >, 1e-3);

  /* the probes' forwards (other batch sizes and grids, while paused) leave training unchanged */
  c.probe_every = 0;
  RunLog plain_log = { 0 };
  g_autoptr(VlTrainer) plain = train (&c, NULL, NULL, &plain_log);
  assert_same_params ("with a user probe", vl_trainer_get_model (plain), trained, 1e-6);
  run_log_clear (&plain_log);
  run_log_clear (&log);
  vl_train_config_clear (&c);
}

static void
test_set_unlock (void)
{
  VlTrainConfig c;
  base_config (&c);
  c.epochs = 3;
  c.batch_size = 4;   /* 6 steps per epoch */
  g_autoptr(GError) error = NULL;
  g_autoptr(VlTrainer) t = vl_trainer_new (&c, &error);
  vl_trainer_take_model (t, tiny_model ());
  vl_trainer_take_dataset (t, tiny_dataset (3, 8, 4, 16, 11));
  /* paused before the start, so that it holds epoch 0 (the request lands inside it) however
   * long this thread waits to run again on a loaded machine */
  vl_trainer_pause (t);
  g_assert_true (vl_trainer_start (t, &error));
  wait_for (t, VL_TRAIN_EVENT_PAUSED, NULL);
  vl_trainer_set_unlock (t, 3);
  vl_trainer_resume (t);
  RunLog log = { 0 };
  collect (t, &log);
  assert_finished (&log, VL_TRAIN_END_COMPLETED);
  g_autoptr(GPtrArray) em = epoch_metrics (&log);
  g_assert_cmpint (((VlEpochMetrics *) g_ptr_array_index (em, 0))->unlocked, ==, 1);
  g_assert_cmpint (((VlEpochMetrics *) g_ptr_array_index (em, 1))->unlocked, ==, 3);
  g_assert_cmpint (((VlEpochMetrics *) g_ptr_array_index (em, 2))->unlocked, ==, 3);
  run_log_clear (&log);
  vl_train_config_clear (&c);
}

static void
on_notify (VlTrainer *t, gpointer data)
{
  g_atomic_int_inc ((gint *) data);
}

/* At most one notification per drain. */
static void
test_notify (void)
{
  VlTrainConfig c;
  base_config (&c);
  gint calls = 0;
  g_autoptr(GError) error = NULL;
  g_autoptr(VlTrainer) t = vl_trainer_new (&c, &error);
  vl_trainer_take_model (t, tiny_model ());
  vl_trainer_take_dataset (t, tiny_dataset (3, 8, 4, 16, 11));
  vl_trainer_set_notify (t, on_notify, &calls, NULL);
  g_assert_true (vl_trainer_start (t, &error));
  vl_trainer_join (t);
  g_assert_cmpint (g_atomic_int_get (&calls), ==, 1);   /* nobody drained */
  g_autoptr(GPtrArray) evs = vl_trainer_drain (t);
  g_assert_cmpint (evs->len, >, 4);
  /* merged steps: never two STEP events in a row */
  for (guint i = 1; i < evs->len; i++)
    g_assert_false (((VlTrainEvent *) g_ptr_array_index (evs, i))->kind == VL_TRAIN_EVENT_STEP &&
                    ((VlTrainEvent *) g_ptr_array_index (evs, i - 1))->kind ==
                    VL_TRAIN_EVENT_STEP);
  vl_train_config_clear (&c);
}

/* ------------------------------------------------------------------ the command line */

/* A P6 image: class 0 dark on top, class 1 dark at the bottom, with noise. */
static void
write_ppm (const char *path, int w, int h, int cls, GRand *rand)
{
  GString *s = g_string_new (NULL);
  g_string_append_printf (s, "P6\n%d %d\n255\n", w, h);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < 3; c++)
        {
          int v = g_rand_int_range (rand, 0, 80) + ((y < h / 2) == (cls == 0) ? 160 : 0);
          g_string_append_c (s, (char) MIN (v, 255));
        }
  g_assert_true (g_file_set_contents (path, s->str, (gssize) s->len, NULL));
  g_string_free (s, TRUE);
}

static char *
make_image_folder (const char *root)
{
  GRand *rand = g_rand_new_with_seed (5);
  const char *classes[] = { "down", "up" };
  for (int k = 0; k < 2; k++)
    {
      g_autofree char *dir = g_build_filename (root, "data", classes[k], NULL);
      g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
      for (int i = 0; i < 10; i++)
        {
          g_autofree char *name = g_strdup_printf ("img%02d.ppm", i);
          g_autofree char *path = g_build_filename (dir, name, NULL);
          write_ppm (path, 40 + i, 36, k, rand);
        }
    }
  /* bad files: corrupt, empty, huge (header only) */
  g_autofree char *bad1 = g_build_filename (root, "data", "up", "corrupt.jpg", NULL);
  g_autofree char *bad2 = g_build_filename (root, "data", "up", "empty.png", NULL);
  g_autofree char *bad3 = g_build_filename (root, "data", "down", "huge.ppm", NULL);
  g_assert_true (g_file_set_contents (bad1, "\xff\xd8\xff\xe0 not really a jpeg", -1, NULL));
  g_assert_true (g_file_set_contents (bad2, "", 0, NULL));
  g_assert_true (g_file_set_contents (bad3, "P6\n20000 20000\n255\n\x01\x02\x03", -1, NULL));
  g_rand_free (rand);
  return g_build_filename (root, "data", NULL);
}

static const char *
cli_path (void)
{
  const char *cli = g_getenv ("VITLAB_CLI");
  if (cli == NULL || !g_file_test (cli, G_FILE_TEST_IS_EXECUTABLE))
    g_error ("VITLAB_CLI does not point to the vitlab-cli binary");
  return cli;
}

static int
run_cli (char **out, char **err, ...)
{
  GPtrArray *argv = g_ptr_array_new ();
  g_ptr_array_add (argv, (gpointer) cli_path ());
  va_list ap;
  va_start (ap, err);
  for (const char *a = va_arg (ap, const char *); a; a = va_arg (ap, const char *))
    g_ptr_array_add (argv, (gpointer) a);
  va_end (ap);
  g_ptr_array_add (argv, NULL);
  int status = 0;
  g_autoptr(GError) error = NULL;
  g_spawn_sync (NULL, (char **) argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL, out, err, &status,
                &error);
  g_assert_no_error (error);
  g_ptr_array_free (argv, TRUE);
  g_test_message ("stdout:\n%s\nstderr:\n%s", *out, *err);
  return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

static const char *
last_line (char *text)
{
  g_strchomp (text);
  char *nl = strrchr (text, '\n');
  return nl ? nl + 1 : text;
}

static void
test_cli_train (void)
{
  g_autofree char *tmp = vl_test_tmpdir ();
  g_autofree char *data = make_image_folder (tmp);
  g_autofree char *backbone = vl_test_shared_path ("fixtures", "vit-timm-tiny", NULL);
  g_autofree char *run = g_build_filename (tmp, "run", NULL);
  g_autofree char *out = NULL, *err = NULL;
  int rc = run_cli (&out, &err, "train", "--backbone", backbone, "--data", data, "--epochs", "2",
                    "--batch", "4", "--lr", "0.01", "--cache-features", "--out", run, NULL);
  g_assert_cmpint (rc, ==, 0);
  g_assert_true (g_str_has_prefix (last_line (out), "val_acc="));
  double acc = g_ascii_strtod (last_line (out) + 8, NULL);
  g_assert_cmpfloat (acc, >=, 0.0);
  g_assert_cmpfloat (acc, <=, 1.0);
  /* the bad files are listed */
  g_assert_nonnull (strstr (err, "corrupt.jpg"));
  g_assert_nonnull (strstr (err, "empty.png"));
  g_assert_nonnull (strstr (err, "huge.ppm"));
  const char *files[] = { "run.json", "metrics.jsonl", "model.safetensors", "config.json",
                          "optimizer.safetensors" };
  for (guint i = 0; i < G_N_ELEMENTS (files); i++)
    {
      g_autofree char *p = g_build_filename (run, files[i], NULL);
      g_assert_true (g_file_test (p, G_FILE_TEST_IS_REGULAR));
    }
  g_autofree char *metrics = g_build_filename (run, "metrics.jsonl", NULL);
  g_assert_cmpint (count_lines (metrics), ==, 2);
  g_autoptr(GError) error = NULL;
  g_autoptr(VlModel) m = vl_model_load (run, &error);
  g_assert_no_error (error);
  g_assert_cmpint (vl_model_num_classes (m), ==, 2);
  g_assert_cmpstr (vl_model_class_names (m)[1], ==, "up");
  VlTrainConfig c;
  g_assert_true (vl_train_config_load (&c, run, &error));
  g_assert_no_error (error);
  g_assert_cmpint (c.epochs, ==, 2);
  g_assert_cmpint (c.batch_size, ==, 4);
  g_assert_true (c.cache_features);
  g_assert_cmpstr (c.data, ==, data);
  vl_train_config_clear (&c);

  /* continue for a third epoch */
  g_clear_pointer (&out, g_free);
  g_clear_pointer (&err, g_free);
  rc = run_cli (&out, &err, "train", "--resume", "--epochs", "3", "--out", run, NULL);
  g_assert_cmpint (rc, ==, 0);
  g_assert_true (g_str_has_prefix (last_line (out), "val_acc="));
  g_assert_cmpint (count_lines (metrics), ==, 3);

  /* eval prints accuracy, per-class accuracy and the confusion matrix */
  g_clear_pointer (&out, g_free);
  g_clear_pointer (&err, g_free);
  rc = run_cli (&out, &err, "eval", run, NULL);
  g_assert_cmpint (rc, ==, 0);
  g_assert_nonnull (strstr (out, "accuracy"));
  g_assert_nonnull (strstr (out, "confusion"));
  g_assert_nonnull (strstr (out, "down"));
  g_assert_true (g_str_has_prefix (last_line (out), "val_acc="));
  rm_rf (tmp);
}

static void
test_cli_errors (void)
{
  g_autofree char *tmp = vl_test_tmpdir ();
  g_autofree char *data = make_image_folder (tmp);
  g_autofree char *backbone = vl_test_shared_path ("fixtures", "vit-timm-tiny", NULL);
  g_autofree char *run = g_build_filename (tmp, "run", NULL);
  g_autofree char *empty = g_build_filename (tmp, "data", "void", NULL);
  struct {
    const char *args[8];
    int rc;
    const char *says;
  } cases[] = {
    { { "train", "--backbone", "/nonexistent/ckpt", "--data", data, "--out", run }, 1,
      "/nonexistent/ckpt" },
    { { "train", "--backbone", backbone, "--data", "/nonexistent/data", "--out", run }, 1,
      "/nonexistent/data" },
    { { "train", "--backbone", backbone, "--data", data }, 2, "--out" },
    { { "train", "--backbone", backbone, "--data", data, "--out", run, "--lr=-1" }, 2, "--lr" },
    { { "train", "--backbone", backbone, "--data", data, "--out", run, "--unlock-schedule=1:2" },
      2, "schedule" },
    { { "train", "--backbone", backbone, "--data", data, "--out", run, "--head=conv" }, 2,
      "--head" },
    { { "train", "--backbone", backbone, "--data", data, "--out", run, "--epochs=0" }, 2,
      "--epochs" },
    { { "eval", "/nonexistent/run" }, 1, "/nonexistent/run" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *out = NULL, *err = NULL;
      const char **a = cases[i].args;
      int rc = run_cli (&out, &err, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], NULL);
      g_assert_cmpint (rc, ==, cases[i].rc);
      g_assert_true (g_str_has_prefix (err, "vitlab-cli: "));
      g_assert_nonnull (strstr (err, cases[i].says));
      g_strchomp (err);
      g_assert_null (strchr (err, '\n'));   /* one line */
    }
  /* an empty class folder: the error names it */
  g_assert_cmpint (g_mkdir_with_parents (empty, 0755), ==, 0);
  g_autofree char *out = NULL, *err = NULL;
  int rc = run_cli (&out, &err, "train", "--backbone", backbone, "--data", data, "--out", run,
                    NULL);
  g_assert_cmpint (rc, ==, 1);
  g_assert_nonnull (strstr (err, "void"));
  rm_rf (tmp);
}

/* Runs of non-timm backbones (OpenCLIP with its projection, QuickGELU and its own layer groups;
 * Hugging Face with eps 1e-12) save losslessly: the run folder loads with the same groups and
 * outputs, resumes to the same parameters, and exports. */
static void
test_run_families (void)
{
  const char *fams[] = { "fam-openclip", "fam-hf-vit" };
  for (guint f = 0; f < G_N_ELEMENTS (fams); f++)
    {
      g_autoptr(GError) error = NULL;
      g_autofree char *backbone = vl_test_data_path (fams[f], NULL);
      VlTrainConfig c;
      base_config (&c);
      g_free (c.unlock_schedule);
      c.unlock_schedule = g_strdup ("0:3,1:all");
      g_autofree char *tmp = vl_test_tmpdir ();
      g_autofree char *dir_a = g_build_filename (tmp, "straight", NULL);
      g_autofree char *dir_b = g_build_filename (tmp, "resumed", NULL);
      c.out_dir = g_strdup (dir_a);
      RunLog a = { 0 };
      g_autoptr(VlTrainer) straight = train (&c, vl_model_load (backbone, NULL),
                                             tiny_dataset (3, 8, 4, 32, 5), &a);
      assert_finished (&a, VL_TRAIN_END_COMPLETED);
      VlModel *trained = vl_trainer_get_model (straight);

      /* the run folder loads as it is: same groups, same outputs */
      g_autoptr(VlModel) back = vl_model_load (dir_a, &error);
      g_assert_no_error (error);
      g_assert_cmpint (vl_model_n_groups (back), ==, vl_model_n_groups (trained));
      for (int g = 0; g < vl_model_n_groups (back); g++)
        g_assert_cmpstr (vl_model_group_name (back, g), ==, vl_model_group_name (trained, g));
      g_assert_cmpint (vl_model_geometry (back)->embed_dim, ==,
                       vl_model_geometry (trained)->embed_dim);
      g_assert_cmpint (vl_model_geometry (back)->quick_gelu, ==,
                       vl_model_geometry (trained)->quick_gelu);
      g_assert_cmpfloat (vl_model_geometry (back)->eps, ==, vl_model_geometry (trained)->eps);
      g_autofree float *img = g_new (float, 2 * 3 * 32 * 32);
      for (int i = 0; i < 2 * 3 * 32 * 32; i++)
        img[i] = (float) ((i * 37) % 101) / 50.0f - 1.0f;
      g_assert_true (vl_model_forward (trained, img, 2, 32, 32, VL_FORWARD_INFER, &error));
      float want[6];
      memcpy (want, vl_model_logits (trained), sizeof want);
      g_assert_true (vl_model_forward (back, img, 2, 32, 32, VL_FORWARD_INFER, &error));
      g_assert_cmpmem (vl_model_logits (back), sizeof want, want, sizeof want);
      const char *const *names = vl_model_class_names (back);
      g_assert_nonnull (names);
      g_assert_cmpstr (names[1], ==, "beta");

      /* and exports to timm naming with the same logits */
      g_autofree char *exp = g_build_filename (tmp, "export", NULL);
      g_assert_true (vl_model_export (back, exp, &error));
      g_autoptr(VlModel) exported = vl_model_load (exp, &error);
      g_assert_no_error (error);
      g_assert_true (vl_model_forward (exported, img, 2, 32, 32, VL_FORWARD_INFER, &error));
      vl_test_assert_close ("exported run", vl_model_logits (exported), want, 6, 1e-5, 0);

      /* stop after one epoch, resume: the same parameters as straight through */
      g_free (c.out_dir);
      c.out_dir = g_strdup (dir_b);
      c.stop_after_epoch = 1;
      RunLog b1 = { 0 }, b2 = { 0 };
      g_autoptr(VlTrainer) first = train (&c, vl_model_load (backbone, NULL),
                                          tiny_dataset (3, 8, 4, 32, 5), &b1);
      assert_finished (&b1, VL_TRAIN_END_STOPPED);
      c.stop_after_epoch = 0;
      c.resume = TRUE;
      g_autoptr(VlTrainer) second = train (&c, vl_model_load (backbone, NULL),
                                           tiny_dataset (3, 8, 4, 32, 5), &b2);
      assert_finished (&b2, VL_TRAIN_END_COMPLETED);
      assert_same_params (fams[f], trained, vl_trainer_get_model (second), 1e-6);
      run_log_clear (&a);
      run_log_clear (&b1);
      run_log_clear (&b2);
      vl_train_config_clear (&c);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/trainer/schedule/parse", test_schedule_parse);
  g_test_add_func ("/trainer/schedule/lr", test_schedule_lr);
  g_test_add_func ("/trainer/schedule/layer-decay", test_layer_decay);
  g_test_add_func ("/trainer/train/events", test_events);
  g_test_add_func ("/trainer/train/learns", test_learns);
  g_test_add_func ("/trainer/train/frozen-unchanged", test_frozen_unchanged);
  g_test_add_func ("/trainer/train/progressive", test_progressive);
  g_test_add_func ("/trainer/train/unlock-mask", test_unlock_mask);
  g_test_add_func ("/trainer/train/mlp-head", test_mlp_head);
  g_test_add_func ("/trainer/cache/equivalence", test_cache_equivalence);
  g_test_add_func ("/trainer/cache/limit", test_cache_limit);
  g_test_add_func ("/trainer/cache/validation-only", test_cache_validation_only);
  g_test_add_func ("/trainer/probes", test_probes);
  g_test_add_func ("/trainer/probes/user", test_user_probe);
  g_test_add_func ("/trainer/run/resume", test_resume);
  g_test_add_func ("/trainer/run/resume-errors", test_resume_errors);
  g_test_add_func ("/trainer/run/families", test_run_families);
  g_test_add_func ("/trainer/run/nan", test_nan);
  g_test_add_func ("/trainer/run/unwritable", test_unwritable);
  g_test_add_func ("/trainer/run/save-failure", test_save_failure);
  g_test_add_func ("/trainer/control/stop", test_stop);
  g_test_add_func ("/trainer/control/pause-resume", test_pause_resume);
  g_test_add_func ("/trainer/control/set-unlock", test_set_unlock);
  g_test_add_func ("/trainer/control/notify", test_notify);
  g_test_add_func ("/trainer/cli/train", test_cli_train);
  g_test_add_func ("/trainer/cli/errors", test_cli_errors);
  return g_test_run ();
}
