/* vl-train-save.c: what a training run writes into its folder and reads back to resume: run.json
 * (the configuration, the data, the task, the layer groups), metrics.jsonl's lines, the
 * checkpoints (model, optimizer, head, position; committed as a group by vl-run.c) and the state
 * a resume restores, checked against the data it is given. */
#include "vl-train-save.h"
#include "vl-json.h"
#include "vl-run.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

/* ---- run.json, metrics, checkpoints ---- */

void
vl_run_record_clear (VlRunRecord *rec)
{
  g_free (rec->created);
  g_free (rec->backbone_path);
  g_free (rec->backbone_typed);
  g_free (rec->backbone_sha);
  g_free (rec->data_spec);
  g_free (rec->data_typed);
  g_strfreev (rec->class_names);
  g_strfreev (rec->value_names);
  g_free (rec->tmean);
  g_free (rec->tstd);
  memset (rec, 0, sizeof *rec);
}

char **
vl_train_skipped_strv (VlDataset *ds)
{
  g_autoptr(GPtrArray) sk = vl_dataset_skipped (ds);
  char **v = g_new0 (char *, sk->len + 1);
  for (guint i = 0; i < sk->len; i++)
    {
      VlSkipped *s = g_ptr_array_index (sk, i);
      v[i] = g_strdup_printf ("%s: %s", s->path, s->reason);
    }
  return v;
}

char *
vl_train_run_json (const VlTrainConfig *c, VlModel *m, VlDataset *ds, const VlRunRecord *rec,
                   const VlRunPosition *pos, int img_size, int n_outputs, int n_groups)
{
  const VlGeometry *g = vl_model_geometry (m);
  const int K = n_outputs;
  const int n_train = vl_dataset_n_items (ds, VL_SPLIT_TRAIN);
  const int n_val = vl_dataset_n_items (ds, VL_SPLIT_VAL);
  g_autoptr(JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  vl_json_add_str (b, "format", "vitlab-run");
  vl_json_add_int (b, "version", 1);
  vl_json_add_str (b, "created", rec->created);

  json_builder_set_member_name (b, "task");
  json_builder_begin_object (b);
  vl_json_add_str (b, "kind", vl_task_name (c->task));
  if (c->task == VL_TASK_SEGMENT)
    {
      vl_json_add_str (b, "seg_head", vl_seg_head_kind_name (c->seg_head));
      vl_json_add_int (b, "img_size", img_size);
      vl_json_add_str (b, "evaluated_at", "own size");
    }
  if (c->task == VL_TASK_DETECT)
    {
      vl_json_add_str (b, "det_head", "fcos");
      vl_json_add_int (b, "img_size", img_size);
      vl_json_add_str (b, "evaluated_at", "own size");
    }
  if (c->task == VL_TASK_REGRESS)
    {
      vl_json_add_str (b, "loss", vl_reg_loss_name (c->reg_loss));
      vl_json_add_strv (b, "targets", (const char *const *) rec->value_names, K);
      json_builder_set_member_name (b, "mean");
      json_builder_begin_array (b);
      for (int j = 0; j < K; j++)
        json_builder_add_double_value (b, rec->tmean[j]);
      json_builder_end_array (b);
      json_builder_set_member_name (b, "std");
      json_builder_begin_array (b);
      for (int j = 0; j < K; j++)
        json_builder_add_double_value (b, rec->tstd[j]);
      json_builder_end_array (b);
    }
  json_builder_end_object (b);

  json_builder_set_member_name (b, "backbone");
  json_builder_begin_object (b);
  vl_json_add_str (b, "init", c->init_random ? "random" : "pretrained");
  if (c->geometry)
    vl_json_add_str (b, "geometry", c->geometry);
  if (c->stem != VL_STEM_PATCH)
    vl_json_add_str (b, "stem", vl_stem_kind_name (c->stem));
  vl_json_add_str (b, "path", rec->backbone_path);
  vl_json_add_str (b, "path_typed", rec->backbone_typed);
  vl_json_add_str (b, "sha256", rec->backbone_sha);
  vl_json_add_str (b, "family", g->family);
  vl_json_add_str (b, "architecture", g->architecture);
  vl_json_add_int (b, "width", g->width);
  vl_json_add_int (b, "depth", g->depth);
  vl_json_add_int (b, "patch", g->patch);
  vl_json_add_int (b, "input_size", img_size);
  vl_json_add_int (b, "layer_groups", n_groups);
  json_builder_end_object (b);

  json_builder_set_member_name (b, "head");
  json_builder_begin_object (b);
  vl_json_add_str (b, "kind", vl_head_kind_name (c->head));
  vl_json_add_int (b, "mlp_hidden", c->mlp_hidden);
  /* the pooling the model does ("token" on a model without a class token pools by its
   * attention pool or the mean), which the recipe and a resumed run then do too */
  vl_json_add_str (b, "pool", vl_pool_name (vl_model_pool (m)));
  vl_json_add_int (b, "num_classes", K);
  json_builder_end_object (b);

  g_autofree char *sched = vl_unlock_schedule_to_string (pos->sched, pos->n_sched);
  vl_json_add_str (b, "unlock_schedule", sched);
  vl_json_add_int (b, "unlock_mask", (int64_t) c->unlock_mask);

  json_builder_set_member_name (b, "hyperparameters");
  json_builder_begin_object (b);
  vl_json_add_int (b, "epochs", c->epochs);
  vl_json_add_int (b, "batch_size", c->batch_size);
  vl_json_add_num (b, "lr", c->lr);
  vl_json_add_num (b, "min_lr", c->min_lr);
  vl_json_add_num (b, "weight_decay", c->weight_decay);
  vl_json_add_num (b, "beta1", c->beta1);
  vl_json_add_num (b, "beta2", c->beta2);
  vl_json_add_num (b, "eps", c->eps);
  vl_json_add_num (b, "warmup_epochs", c->warmup_epochs);
  vl_json_add_num (b, "layer_decay", c->layer_decay);
  vl_json_add_num (b, "label_smoothing", c->label_smoothing);
  vl_json_add_num (b, "clip_grad", c->clip_grad);
  vl_json_add_int (b, "early_stop", c->early_stop);
  vl_json_add_str (b, "augment", vl_augment_name (c->augment));
  vl_json_add_bool (b, "cache_features", c->cache_features);
  vl_json_add_int (b, "cache_limit", c->cache_limit);
  vl_json_add_str (b, "schedule", "linear warmup, then cosine decay per step");
  vl_json_add_int (b, "steps_per_epoch", pos->steps_per_epoch);
  json_builder_end_object (b);

  vl_json_add_int (b, "seed", (int64_t) c->seed);
  json_builder_set_member_name (b, "monitor");
  json_builder_begin_object (b);
  vl_json_add_int (b, "probe_every", c->probe_every);
  vl_json_add_int (b, "n_probes", c->n_probes);
  json_builder_end_object (b);

  json_builder_set_member_name (b, "data");
  json_builder_begin_object (b);
  vl_json_add_str (b, "spec", rec->data_spec ? rec->data_spec : "(in memory)");
  if (rec->data_typed)
    vl_json_add_str (b, "spec_typed", rec->data_typed);
  vl_json_add_str (b, "description", vl_dataset_description (ds));
  vl_json_add_num (b, "val_fraction", c->val_fraction);
  /* the data's classes (a regression set's images have classes too: as many as the dataset
   * has, not one per target) */
  const int n_classes = vl_dataset_n_classes (ds);
  vl_json_add_strv (b, "classes", (const char *const *) rec->class_names, n_classes);
  json_builder_set_member_name (b, "split");
  json_builder_begin_object (b);
  vl_json_add_int (b, "train", n_train);
  vl_json_add_int (b, "val", n_val);
  for (int s = 0; s < 2; s++)
    {
      json_builder_set_member_name (b, s == 0 ? "train_per_class" : "val_per_class");
      json_builder_begin_array (b);
      for (int k = 0; k < n_classes; k++)
        json_builder_add_int_value (b, vl_dataset_class_count (ds, (VlSplit) s, k));
      json_builder_end_array (b);
    }
  json_builder_set_member_name (b, "val_items");
  json_builder_begin_array (b);
  for (int i = 0; i < n_val; i++)
    json_builder_add_string_value (b, vl_dataset_item_name (ds, VL_SPLIT_VAL, i));
  json_builder_end_array (b);
  json_builder_end_object (b);
  g_auto(GStrv) skipped = vl_train_skipped_strv (ds);
  vl_json_add_strv (b, "skipped", (const char *const *) skipped, (int) g_strv_length (skipped));
  json_builder_end_object (b);

  json_builder_end_object (b);
  return vl_json_to_string (b, TRUE);
}

static void
add_doubles (JsonBuilder *b, const char *key, const double *v, int n)
{
  json_builder_set_member_name (b, key);
  json_builder_begin_array (b);
  for (int k = 0; k < n; k++)
    if (isfinite (v[k]))
      json_builder_add_double_value (b, v[k]);
    else
      json_builder_add_null_value (b);
  json_builder_end_array (b);
}

/* A regression epoch: the loss on the standardised targets, MAE, RMSE and R² (their means over
 * the targets, and per target in the targets' units). */
static void
metrics_regress (JsonBuilder *b, const VlEpochMetrics *e)
{
  const VlRegressResult *g = &e->reg;
  vl_json_add_num (b, "val_loss", g->loss);
  vl_json_add_num (b, "val_mae", g->mae_mean);
  vl_json_add_num (b, "val_rmse", g->rmse_mean);
  vl_json_add_num (b, "val_r2", g->r2_mean);
  vl_json_add_int (b, "val_images", g->n);
  add_doubles (b, "val_mae_per_target", g->mae, g->n_values);
  add_doubles (b, "val_rmse_per_target", g->rmse, g->n_values);
  add_doubles (b, "val_r2_per_target", g->r2, g->n_values);
}

/* A classification epoch: loss, top-1, top-5, per-class accuracy and the confusion matrix. */
static void
metrics_classify (JsonBuilder *b, const VlEpochMetrics *e)
{
  const int K = e->val.n_classes;
  vl_json_add_num (b, "val_loss", e->val.loss);
  vl_json_add_num (b, "val_top1", e->val.top1);
  vl_json_add_num (b, "val_top5", e->val.top5);
  vl_json_add_int (b, "val_images", e->val.n);
  add_doubles (b, "val_class_acc", e->val.class_acc, K);
  json_builder_set_member_name (b, "val_confusion");
  json_builder_begin_array (b);
  for (int k = 0; k < K; k++)
    {
      json_builder_begin_array (b);
      for (int j = 0; j < K; j++)
        json_builder_add_int_value (b, e->val.confusion[(gsize) k * K + j]);
      json_builder_end_array (b);
    }
  json_builder_end_array (b);
}

/* A segmentation epoch: loss, mIoU, aAcc, mAcc, per-class IoU and accuracy. */
static void
metrics_segment (JsonBuilder *b, const VlEpochMetrics *e)
{
  const VlSegResult *s = &e->seg;
  vl_json_add_num (b, "val_loss", s->loss);
  vl_json_add_num (b, "val_miou", s->miou);
  vl_json_add_num (b, "val_aacc", s->aacc);
  vl_json_add_num (b, "val_macc", s->macc);
  vl_json_add_int (b, "val_images", s->n);
  vl_json_add_str (b, "val_at", s->own_size ? "own size" : "input size");
  add_doubles (b, "val_iou", s->iou, s->n_classes);
  add_doubles (b, "val_acc", s->acc, s->n_classes);
}

/* A detection epoch: loss, COCO AP, AP50, AP75, AR@100, per-class AP and AP50. */
static void
metrics_detect (JsonBuilder *b, const VlEpochMetrics *e)
{
  const VlDetResult *d = &e->det;
  vl_json_add_num (b, "val_loss", d->loss);
  vl_json_add_num (b, "val_map", d->ap);
  vl_json_add_num (b, "val_map50", d->ap50);
  vl_json_add_num (b, "val_map75", d->ap75);
  vl_json_add_num (b, "val_ar100", d->ar100);
  vl_json_add_int (b, "val_images", d->n);
  vl_json_add_int (b, "val_boxes", d->n_gt);
  vl_json_add_int (b, "val_detections", d->n_dt);
  vl_json_add_str (b, "val_at", "own size");
  add_doubles (b, "val_class_ap", d->class_ap, d->n_classes);
  add_doubles (b, "val_class_ap50", d->class_ap50, d->n_classes);
}

/* One line of metrics.jsonl: the epoch, its training, and its task's validation metrics. */
char *
vl_train_metrics_line (const VlEpochMetrics *e)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  vl_json_add_str (b, "task", vl_task_name (e->task));
  vl_json_add_int (b, "epoch", e->epoch);
  vl_json_add_int (b, "step", e->step);
  vl_json_add_int (b, "unlocked", e->unlocked);
  vl_json_add_bool (b, "cached", e->cached);
  vl_json_add_num (b, "lr", e->lr);
  vl_json_add_num (b, "train_loss", e->train_loss);
  if (e->task == VL_TASK_REGRESS)
    metrics_regress (b, e);
  else if (e->task == VL_TASK_SEGMENT)
    metrics_segment (b, e);
  else if (e->task == VL_TASK_DETECT)
    metrics_detect (b, e);
  else
    metrics_classify (b, e);
  vl_json_add_num (b, "seconds", e->seconds);
  vl_json_add_num (b, "images_per_s", e->images_per_s);
  vl_json_add_bool (b, "best", e->best);
  json_builder_end_object (b);
  char *s = vl_json_to_string (b, FALSE);
  char *line = g_strconcat (s, "\n", NULL);
  g_free (s);
  return line;
}

static void
meta_int (VlSafetensorsWriter *w, const char *key, int64_t v)
{
  char buf[32];
  g_snprintf (buf, sizeof buf, "%" G_GINT64_FORMAT, v);
  vl_safetensors_writer_add_metadata (w, key, buf);
}

static void
meta_double (VlSafetensorsWriter *w, const char *key, double v)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  vl_safetensors_writer_add_metadata (w, key, isfinite (v) ? g_ascii_dtostr (buf, sizeof buf, v)
                                                           : isnan (v) ? "nan" : "inf");
}

gboolean
vl_train_save_checkpoint (const VlCheckpointSave *s, GError **error)
{
  VlModel *m = s->model;
  const VlRunPosition *pos = s->pos;
  g_autoptr(VlSafetensorsWriter) w = vl_safetensors_writer_new ();
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(JsonBuilder) steps = json_builder_new ();
  json_builder_begin_object (steps);
  for (int i = 0; i < vl_model_n_tensors (m); i++)
    {
      const float *ea, *eas;
      int step, ndim;
      int64_t shape[VL_MAX_DIMS];
      vl_model_tensor_optim_state (m, i, &ea, &eas, &step);
      if (step > 0)
        vl_json_add_int (steps, vl_model_tensor_name (m, i), step);
      if (ea == NULL)
        continue;
      vl_model_tensor_data (m, i, &ndim, shape, NULL);
      char *n1 = g_strconcat ("exp_avg.", vl_model_tensor_name (m, i), NULL);
      char *n2 = g_strconcat ("exp_avg_sq.", vl_model_tensor_name (m, i), NULL);
      g_ptr_array_add (names, n1);
      g_ptr_array_add (names, n2);
      vl_safetensors_writer_add_f32 (w, n1, ndim, shape, ea);
      vl_safetensors_writer_add_f32 (w, n2, ndim, shape, eas);
    }
  json_builder_end_object (steps);
  g_autofree char *steps_json = vl_json_to_string (steps, FALSE);
  g_autofree char *sha = vl_run_params_sha256 (m);
  g_autofree char *sched = vl_unlock_schedule_to_string (pos->sched, pos->n_sched);
  vl_safetensors_writer_add_metadata (w, "format", "vitlab-optimizer");
  vl_safetensors_writer_add_metadata (w, "optimizer", "adamw");
  vl_safetensors_writer_add_metadata (w, "steps", steps_json);
  vl_safetensors_writer_add_metadata (w, "model_sha256", sha);
  vl_safetensors_writer_add_metadata (w, "unlock_schedule", sched);
  meta_int (w, "epoch", pos->epoch);
  meta_int (w, "batch", pos->batch);
  meta_int (w, "global_step", pos->step);
  meta_int (w, "seed", (int64_t) s->seed);
  meta_int (w, "steps_per_epoch", pos->steps_per_epoch);
  meta_double (w, "train_loss_sum", pos->batch ? pos->loss_sum : 0.0);
  meta_int (w, "train_seen", pos->batch ? pos->seen : 0);
  meta_double (w, "best_val_loss", pos->best_val);
  meta_int (w, "best_epoch", pos->best_epoch);
  meta_int (w, "bad_epochs", pos->bad_epochs);

  gboolean ok = vl_run_commit_checkpoint_head (s->dir, m, w, s->head, s->head_file, s->seg,
                                               s->best, s->run_json, s->metrics, error);
  g_ptr_array_unref (names);
  return ok;
}

static const char *
meta_get (GHashTable *meta, const char *key)
{
  return meta ? g_hash_table_lookup (meta, key) : NULL;
}

static gboolean
meta_get_int (GHashTable *meta, const char *key, int64_t *out)
{
  const char *s = meta_get (meta, key);
  char *end = NULL;
  if (s == NULL)
    return FALSE;
  *out = g_ascii_strtoll (s, &end, 10);
  return end != s && *end == '\0';
}

static double
meta_get_double (GHashTable *meta, const char *key, double dflt)
{
  const char *s = meta_get (meta, key);
  return s ? g_ascii_strtod (s, NULL) : dflt;
}

gboolean
vl_train_load_checkpoint_state (const char *dir, VlModel *m, VlRunPosition *pos, GError **error)
{
  g_autofree char *path = g_build_filename (dir, "optimizer.safetensors", NULL);
  g_autoptr(VlSafetensors) st = vl_safetensors_open (path, error);
  if (st == NULL)
    return FALSE;
  GHashTable *meta = vl_safetensors_metadata (st);
  if (g_strcmp0 (meta_get (meta, "format"), "vitlab-optimizer") != 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: not a vitlab optimizer state", path);
      return FALSE;
    }
  g_autofree char *sha = vl_run_params_sha256 (m);
  if (g_strcmp0 (meta_get (meta, "model_sha256"), sha) != 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                   "%s: belongs to another model.safetensors than the one beside it (a save was "
                   "interrupted between the two renames?)", path);
      return FALSE;
    }
  int64_t epoch, batch, step, spe, v;
  if (!meta_get_int (meta, "epoch", &epoch) || !meta_get_int (meta, "batch", &batch) ||
      !meta_get_int (meta, "global_step", &step))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s: no epoch, batch or global_step", path);
      return FALSE;
    }
  if (meta_get_int (meta, "steps_per_epoch", &spe) && spe != pos->steps_per_epoch)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                   "%s: the run had %" G_GINT64_FORMAT " batches per epoch, now %" G_GINT64_FORMAT
                   " (batch size or data changed)", path, spe, pos->steps_per_epoch);
      return FALSE;
    }
  g_autoptr(JsonParser) p = json_parser_new ();
  const char *steps_json = meta_get (meta, "steps");
  JsonObject *steps = NULL;
  if (steps_json && json_parser_load_from_data (p, steps_json, -1, NULL) &&
      JSON_NODE_HOLDS_OBJECT (json_parser_get_root (p)))
    steps = json_node_get_object (json_parser_get_root (p));
  for (int i = 0; i < vl_model_n_tensors (m); i++)
    {
      const char *name = vl_model_tensor_name (m, i);
      g_autofree char *n1 = g_strconcat ("exp_avg.", name, NULL);
      g_autofree char *n2 = g_strconcat ("exp_avg_sq.", name, NULL);
      int64_t tstep = 0;
      vl_json_get_int (steps, name, &tstep);
      if (!vl_safetensors_lookup (st, n1))
        {
          if (tstep > 0)
            {
              g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s: no tensor %s", path, n1);
              return FALSE;
            }
          continue;
        }
      int64_t numel;
      vl_model_tensor_data (m, i, NULL, NULL, &numel);
      const VlTensorInfo *t1 = NULL, *t2 = NULL;
      g_autofree float *ea = vl_safetensors_read_f32 (st, n1, &t1, error);
      if (ea == NULL)
        return FALSE;
      g_autofree float *eas = vl_safetensors_read_f32 (st, n2, &t2, error);
      if (eas == NULL)
        return FALSE;
      if (t1->numel != numel || t2->numel != numel)
        {
          g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH, "%s: the moments of %s have %"
                       G_GINT64_FORMAT " elements, the tensor %" G_GINT64_FORMAT, path, name,
                       t1->numel != numel ? t1->numel : t2->numel, numel);
          return FALSE;
        }
      vl_model_tensor_set_optim_state (m, i, ea, eas, (int) tstep);
    }
  const char *sched = meta_get (meta, "unlock_schedule");
  if (sched)
    {
      int n;
      VlUnlockStep *s = vl_unlock_schedule_parse (sched, &n, error);
      if (s == NULL)
        {
          g_prefix_error (error, "%s: ", path);
          return FALSE;
        }
      g_free (pos->sched);
      pos->sched = s;
      pos->n_sched = n;
    }
  pos->epoch = (int) epoch;
  pos->batch = (int) batch;
  pos->step = step;
  pos->loss_sum = meta_get_double (meta, "train_loss_sum", 0.0);
  pos->seen = meta_get_int (meta, "train_seen", &v) ? v : 0;
  pos->best_val = meta_get_double (meta, "best_val_loss", INFINITY);
  pos->best_epoch = meta_get_int (meta, "best_epoch", &v) ? (int) v : -1;
  pos->bad_epochs = meta_get_int (meta, "bad_epochs", &v) ? (int) v : 0;
  return TRUE;
}

gboolean
vl_train_check_run_data (const char *dir, VlDataset *ds, VlRunRecord *rec, GError **error)
{
  g_autofree char *path = g_build_filename (dir, "run.json", NULL);
  const int n_train_now = vl_dataset_n_items (ds, VL_SPLIT_TRAIN);
  const int n_val_now = vl_dataset_n_items (ds, VL_SPLIT_VAL);
  JsonObject *root = NULL;
  g_autoptr(JsonParser) parser = vl_json_load_object_file (path, &root, error);
  if (parser == NULL)
    return FALSE;
  g_free (rec->created);
  rec->created = g_strdup (vl_json_get_str (root, "created"));
  JsonObject *data = vl_json_object_member (root, "data");
  /* the typed form of a path stays while the path does */
  JsonObject *bb = vl_json_object_member (root, "backbone");
  const char *typed = vl_json_get_str (bb, "path_typed");
  if (typed && g_strcmp0 (vl_json_get_str (bb, "path"), rec->backbone_path) == 0)
    {
      g_free (rec->backbone_typed);
      rec->backbone_typed = g_strdup (typed);
    }
  typed = vl_json_get_str (data, "spec_typed");
  if (typed && rec->data_spec && g_strcmp0 (vl_json_get_str (data, "spec"), rec->data_spec) == 0)
    {
      g_free (rec->data_typed);
      rec->data_typed = g_strdup (typed);
    }
  g_auto(GStrv) classes = vl_json_get_strv (data, "classes");
  JsonObject *split = vl_json_object_member (data, "split");
  int64_t n_train = -1, n_val = -1;
  vl_json_get_int (split, "train", &n_train);
  vl_json_get_int (split, "val", &n_val);
  const int K = vl_dataset_n_classes (ds);
  gboolean same = classes && (int) g_strv_length (classes) == K && n_train == n_train_now &&
                  n_val == n_val_now;
  for (int k = 0; same && k < K; k++)
    same = g_strcmp0 (classes[k], rec->class_names[k]) == 0;
  if (!same)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                   "%s: the run was trained on other data (%d classes, %" G_GINT64_FORMAT " + %"
                   G_GINT64_FORMAT " images; now %s: %d classes, %d + %d images)", path,
                   classes ? (int) g_strv_length (classes) : 0, n_train, n_val,
                   vl_dataset_description (ds), K, n_train_now, n_val_now);
      return FALSE;
    }
  return TRUE;
}

