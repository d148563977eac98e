/* vl-recipe.c: a run's recipe as a PyTorch script (vl-recipe.h): copies, the backbone's export,
 * the trainer's data order and the README. */
#include "vl-recipe.h"
#include "vl-dataset.h"
#include "vl-det-head.h"
#include "vl-model.h"
#include "vl-run.h"
#include "vl-safetensors.h"
#include "vl-task.h"

#include <errno.h>
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define README_TEXT \
  "# The recipe of a vitlab run, for PyTorch\n" \
  "\n" \
  "Exported by `vitlab-cli export-recipe %s`.\n" \
  "\n" \
  "- `train.py`: the training script (PyTorch, torchvision, numpy; timm when importable).\n" \
  "- `run.json`: the run's recipe, read by train.py at run time: backbone, head (%s, pool %s),\n" \
  "  unlock schedule `%s`, AdamW (lr %g for the global batch %d, weight decay %g), layer\n" \
  "  decay %g, %g warmup epochs then cosine, label smoothing %g, clipping %g, augmentation\n" \
  "  `%s`, task `%s`, seed %d.\n" \
  "- `backbone/`: the pretrained backbone in timm's layout (model.safetensors + config.json),\n" \
  "  with the run's head initialised as vitlab initialised it (the run's seed).\n" \
  "- `order.json` (with `--with-order`): vitlab's data order per epoch, for `--vitlab-order`.\n" \
  "\n" \
  "The dataset folder has the layout the run had (class folders, `train/` + `val/`, or\n" \
  "`targets.csv`); the run used `%s`.\n" \
  "\n" \
  "## One process\n" \
  "\n" \
  "    python3 train.py --data %s --out RUNDIR --device cpu\n" \
  "\n" \
  "## Several processes on this machine (DDP: gloo on CPUs, NCCL on GPUs)\n" \
  "\n" \
  "    torchrun --nproc_per_node=2 train.py --data %s --out RUNDIR --device cpu\n" \
  "    torchrun --nproc_per_node=4 train.py --data %s --out RUNDIR --device cuda\n" \
  "\n" \
  "The batch size is the global one: each process takes batch_size / N images per step, so the\n" \
  "learning rate and the schedule stay as written.\n" \
  "With Debian's PyTorch 1.13 under Python 3.11, add `--redirects 2 --tee 2` after `torchrun`\n" \
  "(its default \"0\" for both is not parsed on that Python).\n" \
  "\n" \
  "## Several machines\n" \
  "\n" \
  "On each of M machines, with the same folder and data at the same paths:\n" \
  "\n" \
  "    torchrun --nnodes=M --nproc_per_node=GPUS --rdzv_backend=c10d --rdzv_id=vitlab1 \\\n" \
  "             --rdzv_endpoint=FIRST_HOST:29500 train.py --data DATA --out RUNDIR \\\n" \
  "             --device cuda\n" \
  "\n" \
  "Only global rank 0 writes RUNDIR (the machine that prints the `train.py:` line): put RUNDIR\n" \
  "on a shared file system, or copy it from there.\n" \
  "\n" \
  "## Back in vitlab\n" \
  "\n" \
  "    vitlab-cli eval RUNDIR\n" \
  "\n" \
  "RUNDIR is a vitlab run folder (run.json, metrics.jsonl, model.safetensors, config.json):\n" \
  "the app opens it like any other run.\n"

static gboolean
copy_file (const char *from, const char *to, GError **error)
{
  g_autofree char *text = NULL;
  gsize len;
  if (!g_file_get_contents (from, &text, &len, error))
    return FALSE;
  return vl_write_file_atomic (to, text, (gssize) len, error);
}

static const char *
member_str (JsonObject *o, const char *key, const char *fallback)
{
  return o && json_object_has_member (o, key) ? json_object_get_string_member (o, key) : fallback;
}

static double
member_num (JsonObject *o, const char *key)
{
  return o && json_object_has_member (o, key) ? json_object_get_double_member (o, key) : 0.0;
}

/* order.json: vitlab's order of the training items in each epoch (the loader's seeded shuffle,
 * drawn as the trainer draws it, on a stand-in of the same size), as paths relative to the
 * dataset folder, for train.py --vitlab-order. */
static gboolean
write_order (const char *spec, double val_fraction, uint64_t seed, gboolean detect, int batch,
             int epochs, const char *path, GError **error)
{
  VlDatasetOptions opts = VL_DATASET_OPTIONS_DEFAULT;
  opts.val_fraction = val_fraction;
  opts.seed = seed;
  opts.detect = detect;   /* a detection layout is read as one only when asked */
  g_autoptr(VlDataset) ds = vl_dataset_open (spec, &opts, error);
  if (ds == NULL)
    return FALSE;
  const int n = vl_dataset_n_items (ds, VL_SPLIT_TRAIN);
  g_autofree float *px = g_new0 (float, MAX (n, 1));
  g_autofree int *labels = g_new0 (int, MAX (n, 1));
  g_autoptr(VlDataset) stand_in = vl_dataset_new_memory (2, NULL, 1, 1, px, labels, n, NULL,
                                                         NULL, 0);
  g_autoptr(VlLoader) l = vl_loader_new (stand_in, VL_SPLIT_TRAIN, NULL, VL_AUGMENT_NONE, batch,
                                         TRUE, seed);
  g_autoptr(JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "format");
  json_builder_add_string_value (b, "vitlab-order");
  json_builder_set_member_name (b, "batch_size");
  json_builder_add_int_value (b, batch);
  json_builder_set_member_name (b, "epochs");
  json_builder_begin_array (b);
  for (int e = 0; e < epochs; e++)
    {
      vl_loader_start_epoch (l, e, 0);
      json_builder_begin_array (b);
      VlBatch bt;
      while (vl_loader_next (l, &bt))
        for (int i = 0; i < bt.n; i++)
          {
            const char *name = vl_dataset_item_name (ds, VL_SPLIT_TRAIN, bt.indices[i]);
            g_autofree char *rel = g_str_has_prefix (name, spec) && name[strlen (spec)] == '/'
                                   ? g_strdup (name + strlen (spec) + 1) : g_strdup (name);
            json_builder_add_string_value (b, rel);
          }
      json_builder_end_array (b);
    }
  json_builder_end_array (b);
  json_builder_end_object (b);
  g_autoptr(JsonGenerator) gen = json_generator_new ();
  g_autoptr(JsonNode) node = json_builder_get_root (b);
  json_generator_set_root (gen, node);
  g_autofree char *text = json_generator_to_data (gen, NULL);
  return vl_write_file_atomic (path, text, -1, error);
}

/* backbone/seg_head.safetensors: the seg head as the trainer initialises it for the seed. */
static gboolean
write_seg_head (JsonObject *task, int width, int n_classes, uint64_t seed, const char *bdir,
                const char *run_path, GError **error)
{
  VlSegHeadKind kind;
  const char *name = member_str (task, "seg_head", "linear");
  g_autoptr(VlSegHead) h = vl_seg_head_kind_from_string (name, &kind)
                           ? vl_seg_head_new (kind, width, n_classes, seed) : NULL;
  if (h == NULL)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "%s: seg head '%s' of %d classes does not "
                   "fit a backbone of width %d", run_path, name, n_classes, width);
      return FALSE;
    }
  g_autoptr(VlSafetensorsWriter) w = vl_safetensors_writer_new ();
  vl_seg_head_add_to_writer (h, w);
  vl_safetensors_writer_add_metadata (w, "format", "vitlab-seg-head");
  vl_safetensors_writer_add_metadata (w, "seg_head", vl_seg_head_kind_name (kind));
  g_autofree char *path = g_build_filename (bdir, "seg_head.safetensors", NULL);
  return vl_safetensors_writer_write (w, path, error);
}

/* backbone/det_head.safetensors: the FCOS head as the trainer initialises it for the seed. */
static gboolean
write_det_head (int width, int n_classes, uint64_t seed, const char *bdir, const char *run_path,
                GError **error)
{
  g_autoptr(VlDetHead) h = vl_det_head_new (width, n_classes, seed);
  if (h == NULL)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "%s: an FCOS head of %d classes does not "
                   "fit a backbone of width %d", run_path, n_classes, width);
      return FALSE;
    }
  g_autoptr(VlSafetensorsWriter) w = vl_safetensors_writer_new ();
  vl_det_head_add_to_writer (h, w);
  vl_safetensors_writer_add_metadata (w, "format", "vitlab-det-head");
  vl_safetensors_writer_add_metadata (w, "det_head", "fcos");
  g_autofree char *path = g_build_filename (bdir, "det_head.safetensors", NULL);
  return vl_safetensors_writer_write (w, path, error);
}

gboolean
vl_recipe_export (const char *run, const char *out, gboolean with_order, char **note,
                  GError **error)
{
  if (note)
    *note = NULL;
  if (!vl_run_recover (run, NULL, error))
    return FALSE;
  g_autofree char *run_path = g_build_filename (run, "run.json", NULL);
  g_autoptr(JsonParser) parser = json_parser_new ();
  if (!g_file_test (run_path, G_FILE_TEST_IS_REGULAR))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "%s: missing: %s is not a run folder",
                   run_path, run);
      return FALSE;
    }
  GError *e = NULL;
  if (!json_parser_load_from_file (parser, run_path, &e))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "%s: %s", run_path, e->message);
      g_error_free (e);
      return FALSE;
    }
  JsonNode *root = json_parser_get_root (parser);
  JsonObject *o = root && JSON_NODE_HOLDS_OBJECT (root) ? json_node_get_object (root) : NULL;
  if (o == NULL || g_strcmp0 (member_str (o, "format", NULL), "vitlab-run") != 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "%s: not a vitlab run.json", run_path);
      return FALSE;
    }
  JsonObject *task = json_object_get_object_member (o, "task");
  const char *kind = member_str (task, "kind", "classify");
  const gboolean segment = strcmp (kind, "segment") == 0, detect = strcmp (kind, "detect") == 0;
  if (strcmp (kind, "classify") != 0 && strcmp (kind, "regress") != 0 && !segment && !detect)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "%s: task '%s': the PyTorch recipe covers classify, regress, segment and "
                   "detect", run_path, kind);
      return FALSE;
    }
  if (json_object_has_member (o, "unlock_mask") &&
      json_object_get_int_member (o, "unlock_mask") != 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "%s: unlock_mask %" G_GINT64_FORMAT ": the PyTorch recipe covers unlock "
                   "schedules (the last N groups), not a fixed set of groups", run_path,
                   json_object_get_int_member (o, "unlock_mask"));
      return FALSE;
    }
  JsonObject *bb = json_object_get_object_member (o, "backbone");
  JsonObject *head = json_object_get_object_member (o, "head");
  JsonObject *hp = json_object_get_object_member (o, "hyperparameters");
  JsonObject *data = json_object_get_object_member (o, "data");
  if (bb == NULL || head == NULL || hp == NULL || data == NULL)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "%s: no backbone, head, hyperparameters or data section", run_path);
      return FALSE;
    }
  if (g_strcmp0 (member_str (bb, "init", "pretrained"), "random") == 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "%s: a run from a random initialisation: the PyTorch recipe starts from a "
                   "pretrained backbone", run_path);
      return FALSE;
    }
  const char *bpath = member_str (bb, "path", NULL);
  if (bpath == NULL)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "%s: the backbone has no path", run_path);
      return FALSE;
    }
  /* train.py builds timm's ViT with its patch embedding: not vitlab's new CNN stems, nor timm's
   * hybrids (their ResNetV2 stem) */
  const char *stem = member_str (bb, "stem", "patch");
  if (strcmp (stem, "patch") != 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "%s: a run with a new %s stem: the "
                   "PyTorch recipe builds the patch embedding only", run_path, stem);
      return FALSE;
    }
  {
    g_autoptr(VlModel) probe = vl_model_load (bpath, error);
    if (probe == NULL)
      return FALSE;
    if (vl_model_stem_kind (probe) != VL_STEM_PATCH)
      {
        g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "%s: the backbone %s has a %s CNN stem: "
                     "the PyTorch recipe builds the patch embedding only", run_path, bpath,
                     vl_stem_kind_name (vl_model_stem_kind (probe)));
        return FALSE;
      }
  }

  g_autofree char *tmpl = vl_data_path ("recipe/train.py");
  if (g_mkdir_with_parents (out, 0755) != 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "%s: cannot create the folder (%s)", out,
                   g_strerror (errno));
      return FALSE;
    }
  g_autofree char *script = g_build_filename (out, "train.py", NULL);
  g_autofree char *run_copy = g_build_filename (out, "run.json", NULL);
  g_autofree char *bdir = g_build_filename (out, "backbone", NULL);
  g_autofree char *readme = g_build_filename (out, "README.md", NULL);
  if (!copy_file (tmpl, script, error) || !copy_file (run_path, run_copy, error))
    return FALSE;

  /* the backbone as it was before training, in timm's layout (every family) */
  g_autoptr(VlModel) m = vl_model_load (bpath, error);
  if (m == NULL)
    return FALSE;
  int n_groups = (int) json_object_get_int_member_with_default (bb, "layer_groups", 0);
  const VlGeometry *g = vl_model_geometry (m);
  if (n_groups != g->depth + 3 + g->attn_pool || g->embed_dim > 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "%s: %s's %d layer groups are not timm's stem, %d blocks, norm, %shead: the "
                   "PyTorch recipe covers that grouping", run_path, g->family, n_groups,
                   g->depth, g->attn_pool ? "attn_pool, " : "");
      return FALSE;
    }
  /* the head as the trainer initialises it (same seed), so both start from the same model */
  const char *head_kind = member_str (head, "kind", "linear");
  VlHeadKind hk;
  if (!vl_head_kind_from_string (head_kind, &hk) || hk == VL_HEAD_NONE)
    hk = VL_HEAD_LINEAR;
  int64_t seed = json_object_get_int_member_with_default (o, "seed", 0);
  const int n_classes = (int) json_object_get_int_member_with_default (head, "num_classes", 0);
  if (segment || detect)
    vl_model_set_head (m, VL_HEAD_NONE, 0, 0, (uint64_t) seed);
  else
    vl_model_set_head (m, hk, n_classes,
                       (int) json_object_get_int_member_with_default (head, "mlp_hidden", 0),
                       (uint64_t) seed);
  if (!vl_model_export (m, bdir, error))
    return FALSE;
  if (segment && !write_seg_head (task, g->width, n_classes, (uint64_t) seed, bdir, run_path,
                                  error))
    return FALSE;
  if (detect && !write_det_head (g->width, n_classes, (uint64_t) seed, bdir, run_path, error))
    return FALSE;
  if (with_order)
    {
      g_autofree char *order = g_build_filename (out, "order.json", NULL);
      if (!write_order (member_str (data, "spec", ""), member_num (data, "val_fraction"),
                        (uint64_t) seed, detect, (int) member_num (hp, "batch_size"),
                        (int) member_num (hp, "epochs"), order, error))
        return FALSE;
    }

  const char *spec = member_str (data, "spec", "DATA");
  g_autofree char *text = g_strdup_printf (
    README_TEXT, run, member_str (head, "kind", "linear"), member_str (head, "pool", "token"),
    member_str (o, "unlock_schedule", "1"), member_num (hp, "lr"),
    (int) member_num (hp, "batch_size"), member_num (hp, "weight_decay"),
    member_num (hp, "layer_decay"), member_num (hp, "warmup_epochs"),
    member_num (hp, "label_smoothing"), member_num (hp, "clip_grad"),
    member_str (hp, "augment", "none"), kind, (int) seed,
    spec, spec, spec, spec);
  if (!vl_write_file_atomic (readme, text, -1, error))
    return FALSE;
  if (note && !g_file_test (spec, G_FILE_TEST_IS_DIR))
    *note = g_strdup_printf ("the run's data '%s' is not a folder: train.py reads image folders "
                             "(class folders, train/ + val/, targets.csv, Pascal VOC or "
                             "images/ + masks/); give it one with --data", spec);
  return TRUE;
}
