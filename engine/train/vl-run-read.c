/* vl-run-read.c: reading a run folder's metrics back (vl_run_read_metrics), for the CLI and the
 * app alike: metrics.jsonl as vl-trainer.c's metrics_line writes it, for every task. */
#include "vl-trainer.h"
#include "vl-json.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

static double
member_double (JsonObject *o, const char *name)
{
  JsonNode *n = json_object_get_member (o, name);
  double v;
  return n != NULL && vl_json_number (n, &v) ? v : NAN;
}

static int64_t
member_int (JsonObject *o, const char *name)
{
  double v = member_double (o, name);
  return isfinite (v) && fabs (v) < 9e15 ? (int64_t) v : 0;
}

/* An array member of numbers (null: NAN) into out[0 .. n). */
static void
member_doubles (JsonObject *o, const char *name, double *out, int n)
{
  JsonNode *node = json_object_get_member (o, name);
  JsonArray *a = node && JSON_NODE_HOLDS_ARRAY (node) ? json_node_get_array (node) : NULL;
  for (int k = 0; k < n; k++)
    {
      double v = NAN;
      if (a && k < (int) json_array_get_length (a))
        vl_json_number (json_array_get_element (a, k), &v);
      out[k] = v;
    }
}

static void
read_classify (JsonObject *o, VlEpochMetrics *m, int K)
{
  vl_eval_result_begin (&m->val, K);
  m->val.loss = member_double (o, "val_loss");
  m->val.top1 = member_double (o, "val_top1");
  m->val.top5 = member_double (o, "val_top5");
  m->val.n = member_int (o, "val_images");
  member_doubles (o, "val_class_acc", m->val.class_acc, K);
  JsonNode *node = json_object_get_member (o, "val_confusion");
  JsonArray *conf = node && JSON_NODE_HOLDS_ARRAY (node) ? json_node_get_array (node) : NULL;
  for (int r = 0; conf && r < K && r < (int) json_array_get_length (conf); r++)
    {
      JsonNode *rn = json_array_get_element (conf, r);
      JsonArray *row = JSON_NODE_HOLDS_ARRAY (rn) ? json_node_get_array (rn) : NULL;
      for (int c = 0; row && c < K && c < (int) json_array_get_length (row); c++)
        {
          double v;
          if (vl_json_number (json_array_get_element (row, c), &v) && v >= 0 && v < 9e15)
            m->val.confusion[(gsize) r * K + c] = (int64_t) v;
        }
    }
}

static void
read_segment (JsonObject *o, VlEpochMetrics *m, int K)
{
  vl_seg_result_begin (&m->seg, K, TRUE);
  g_clear_pointer (&m->seg.metric, vl_seg_metric_free);
  m->seg.iou = g_new (double, K);
  m->seg.acc = g_new (double, K);
  m->seg.loss = member_double (o, "val_loss");
  m->seg.miou = member_double (o, "val_miou");
  m->seg.aacc = member_double (o, "val_aacc");
  m->seg.macc = member_double (o, "val_macc");
  m->seg.n = member_int (o, "val_images");
  m->seg.own_size = g_strcmp0 (vl_json_string_member (o, "val_at", ""),
                               "own size") == 0;
  member_doubles (o, "val_iou", m->seg.iou, K);
  member_doubles (o, "val_acc", m->seg.acc, K);
}

static void
read_detect (JsonObject *o, VlEpochMetrics *m, int K)
{
  vl_det_result_begin (&m->det, K);
  g_clear_pointer (&m->det.gt, g_array_unref);
  g_clear_pointer (&m->det.dt, g_array_unref);
  m->det.class_ap = g_new (double, K);
  m->det.class_ap50 = g_new (double, K);
  m->det.loss = member_double (o, "val_loss");
  m->det.ap = member_double (o, "val_map");
  m->det.ap50 = member_double (o, "val_map50");
  m->det.ap75 = member_double (o, "val_map75");
  m->det.ar100 = member_double (o, "val_ar100");
  m->det.n = member_int (o, "val_images");
  m->det.n_gt = member_int (o, "val_boxes");
  m->det.n_dt = member_int (o, "val_detections");
  member_doubles (o, "val_class_ap", m->det.class_ap, K);
  member_doubles (o, "val_class_ap50", m->det.class_ap50, K);
}

static void
read_regress (JsonObject *o, VlEpochMetrics *m, int N)
{
  vl_regress_result_begin (&m->reg, N);
  m->reg.loss = member_double (o, "val_loss");
  m->reg.mae_mean = member_double (o, "val_mae");
  m->reg.rmse_mean = member_double (o, "val_rmse");
  m->reg.r2_mean = member_double (o, "val_r2");
  m->reg.n = member_int (o, "val_images");
  member_doubles (o, "val_mae_per_target", m->reg.mae, N);
  member_doubles (o, "val_rmse_per_target", m->reg.rmse, N);
  member_doubles (o, "val_r2_per_target", m->reg.r2, N);
}

void
vl_epoch_metrics_free (VlEpochMetrics *m)
{
  if (m == NULL)
    return;
  vl_eval_result_clear (&m->val);
  vl_regress_result_clear (&m->reg);
  vl_seg_result_clear (&m->seg);
  vl_det_result_clear (&m->det);
  g_free (m);
}

GPtrArray *
vl_run_read_metrics (const char *run_dir, VlTaskKind task, int n_outputs, GError **error)
{
  GPtrArray *out = g_ptr_array_new_with_free_func ((GDestroyNotify) vl_epoch_metrics_free);
  g_autofree char *path = g_build_filename (run_dir, "metrics.jsonl", NULL);
  g_autofree char *text = NULL;
  g_autoptr(GError) local = NULL;
  if (!g_file_get_contents (path, &text, NULL, &local))
    {
      if (g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        return out;   /* no epoch finished yet */
      g_set_error (error, VL_ERROR, VL_ERROR_IO, "%s: %s", path, local->message);
      g_ptr_array_unref (out);
      return NULL;
    }
  g_auto(GStrv) lines = g_strsplit (text, "\n", -1);
  for (int i = 0; lines[i]; i++)
    {
      if (*g_strstrip (lines[i]) == '\0')
        continue;
      g_autoptr(JsonParser) parser = json_parser_new ();
      JsonObject *o = json_parser_load_from_data (parser, lines[i], -1, NULL)
                      ? vl_json_root_object (parser) : NULL;
      if (o == NULL)
        continue;   /* a line cut by a crash: the epochs before it stand */
      VlEpochMetrics *m = g_new0 (VlEpochMetrics, 1);
      const char *kind = vl_json_string_member (o, "task", "classify");
      if (kind == NULL || !vl_task_from_string (kind, &m->task) || m->task != task)
        {
          g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s:%d: an epoch of task \"%s\" in a "
                       "run of task \"%s\"", path, i + 1, kind ? kind : "(not a string)",
                       vl_task_name (task));
          vl_epoch_metrics_free (m);
          g_ptr_array_unref (out);
          return NULL;
        }
      m->epoch = (int) member_int (o, "epoch");
      m->step = member_int (o, "step");
      m->unlocked = (int) member_int (o, "unlocked");
      m->cached = vl_json_bool_member (o, "cached", FALSE);
      m->lr = member_double (o, "lr");
      m->train_loss = member_double (o, "train_loss");
      m->seconds = member_double (o, "seconds");
      m->images_per_s = member_double (o, "images_per_s");
      m->best = vl_json_bool_member (o, "best", FALSE);
      if (task == VL_TASK_REGRESS)
        read_regress (o, m, n_outputs);
      else if (task == VL_TASK_SEGMENT)
        read_segment (o, m, n_outputs);
      else if (task == VL_TASK_DETECT)
        read_detect (o, m, n_outputs);
      else
        read_classify (o, m, n_outputs);
      g_ptr_array_add (out, m);
    }
  return out;
}

char **
vl_run_read_class_names (const char *run_dir)
{
  g_autofree char *path = g_build_filename (run_dir, "run.json", NULL);
  JsonObject *root = NULL;
  g_autoptr(JsonParser) p = vl_json_load_object_file (path, &root, NULL);
  JsonObject *data = p ? vl_json_object_member (root, "data") : NULL;
  JsonNode *cls = data ? json_object_get_member (data, "classes") : NULL;
  if (cls == NULL || !JSON_NODE_HOLDS_ARRAY (cls))
    return NULL;
  JsonArray *a = json_node_get_array (cls);
  char **names = g_new0 (char *, json_array_get_length (a) + 1);
  for (guint i = 0; i < json_array_get_length (a); i++)
    {
      JsonNode *e = json_array_get_element (a, i);
      gboolean text = JSON_NODE_HOLDS_VALUE (e) && json_node_get_value_type (e) == G_TYPE_STRING;
      names[i] = g_strdup (text ? json_node_get_string (e) : "?");
    }
  return names;
}
