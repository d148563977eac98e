/* vitlab-cli export-recipe RUN --out DIR: a run's recipe as a PyTorch script.
 *
 * DIR gets train.py (data/recipe/train.py, found with vl_data_path, copied as is: everything
 * run-specific it reads from run.json at run time), the run's own run.json, the run's backbone
 * in timm's layout (backbone/: model.safetensors + config.json, vl_model_export), so that the
 * folder is all a cluster needs besides the data, and README.md with the commands. */
#include "cli-commands.h"
#include "vl-dataset.h"
#include "vl-model.h"
#include "vl-run.h"

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
  "  unlock schedule `%s`, AdamW (lr %g for the global batch %d, weight decay %g), layer decay\n" \
  "  %g, %g warmup epochs then cosine, label smoothing %g, clipping %g, augmentation `%s`,\n" \
  "  task `%s`, seed %d.\n" \
  "- `backbone/`: the pretrained backbone in timm's layout (model.safetensors + config.json).\n" \
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
  "    torchrun --nnodes=M --nproc_per_node=GPUS --rdzv-backend=c10d --rdzv-id=vitlab1 \\\n" \
  "             --rdzv-endpoint=FIRST_HOST:29500 train.py --data DATA --out RUNDIR --device cuda\n" \
  "\n" \
  "Rank 0 writes RUNDIR: only the first machine's copy is complete.\n" \
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

int
cmd_export_recipe (int argc, char **argv)
{
  GError *error = NULL;
  g_autofree char *out = NULL;
  GOptionEntry entries[] = {
    { "out", 0, 0, G_OPTION_ARG_FILENAME, &out, "the folder to write", "DIR" },
    { NULL },
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new ("RUNDIR");
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      g_printerr ("vitlab-cli: %s (see 'vitlab-cli --help')\n", error->message);
      g_error_free (error);
      return 2;
    }
  if (argc != 2 || out == NULL)
    {
      g_printerr ("vitlab-cli: export-recipe needs a RUNDIR and --out DIR "
                  "(see 'vitlab-cli --help')\n");
      return 2;
    }
  const char *run = argv[1];
  if (!vl_run_recover (run, NULL, &error))
    return cli_fail (error);
  g_autofree char *run_path = g_build_filename (run, "run.json", NULL);
  g_autoptr(JsonParser) parser = json_parser_new ();
  if (!json_parser_load_from_file (parser, run_path, &error))
    {
      g_autoptr(GError) e = error;
      error = g_error_new (G_FILE_ERROR, G_FILE_ERROR_INVAL, "%s: %s", run_path, e->message);
      return cli_fail (error);
    }
  JsonNode *root = json_parser_get_root (parser);
  JsonObject *o = root && JSON_NODE_HOLDS_OBJECT (root) ? json_node_get_object (root) : NULL;
  if (o == NULL || g_strcmp0 (member_str (o, "format", NULL), "vitlab-run") != 0)
    {
      g_printerr ("vitlab-cli: %s: not a vitlab run.json\n", run_path);
      return EXIT_FAILURE;
    }
  JsonObject *task = json_object_get_object_member (o, "task");
  const char *kind = member_str (task, "kind", "classify");
  if (strcmp (kind, "classify") != 0 && strcmp (kind, "regress") != 0)
    {
      g_printerr ("vitlab-cli: %s: task '%s': the PyTorch recipe covers classify and regress\n",
                  run_path, kind);
      return EXIT_FAILURE;
    }
  if (json_object_has_member (o, "unlock_mask") &&
      json_object_get_int_member (o, "unlock_mask") != 0)
    {
      g_printerr ("vitlab-cli: %s: unlock_mask %" G_GINT64_FORMAT ": the PyTorch recipe covers "
                  "unlock schedules (the last N groups), not a fixed set of groups\n", run_path,
                  json_object_get_int_member (o, "unlock_mask"));
      return EXIT_FAILURE;
    }
  JsonObject *bb = json_object_get_object_member (o, "backbone");
  JsonObject *head = json_object_get_object_member (o, "head");
  JsonObject *hp = json_object_get_object_member (o, "hyperparameters");
  JsonObject *data = json_object_get_object_member (o, "data");
  if (bb == NULL || head == NULL || hp == NULL || data == NULL)
    {
      g_printerr ("vitlab-cli: %s: no backbone, head, hyperparameters or data section\n",
                  run_path);
      return EXIT_FAILURE;
    }
  if (g_strcmp0 (member_str (bb, "init", "pretrained"), "random") == 0)
    {
      g_printerr ("vitlab-cli: %s: a run from a random initialisation: the PyTorch recipe "
                  "starts from a pretrained backbone\n", run_path);
      return EXIT_FAILURE;
    }
  const char *bpath = member_str (bb, "path", NULL);
  if (bpath == NULL)
    {
      g_printerr ("vitlab-cli: %s: the backbone has no path\n", run_path);
      return EXIT_FAILURE;
    }

  g_autofree char *tmpl = vl_data_path ("recipe/train.py");
  if (g_mkdir_with_parents (out, 0755) != 0)
    {
      g_printerr ("vitlab-cli: %s: cannot create the folder (%s)\n", out, g_strerror (errno));
      return EXIT_FAILURE;
    }
  g_autofree char *script = g_build_filename (out, "train.py", NULL);
  g_autofree char *run_copy = g_build_filename (out, "run.json", NULL);
  g_autofree char *bdir = g_build_filename (out, "backbone", NULL);
  g_autofree char *readme = g_build_filename (out, "README.md", NULL);
  if (!copy_file (tmpl, script, &error) || !copy_file (run_path, run_copy, &error))
    return cli_fail (error);

  /* the backbone as it was before training, in timm's layout (every family) */
  g_autoptr(VlModel) m = vl_model_load (bpath, &error);
  if (m == NULL)
    return cli_fail (error);
  int n_groups = (int) json_object_get_int_member_with_default (bb, "layer_groups", 0);
  const VlGeometry *g = vl_model_geometry (m);
  if (n_groups != g->depth + 3 || g->embed_dim > 0)
    {
      g_printerr ("vitlab-cli: %s: %s's %d layer groups are not timm's stem, %d blocks, norm, "
                  "head: the PyTorch recipe covers that grouping\n", run_path, g->family,
                  n_groups, g->depth);
      return EXIT_FAILURE;
    }
  if (!vl_model_export (m, bdir, &error))
    return cli_fail (error);

  const char *spec = member_str (data, "spec", "DATA");
  g_autofree char *text = g_strdup_printf (
    README_TEXT, run, member_str (head, "kind", "linear"), member_str (head, "pool", "token"),
    member_str (o, "unlock_schedule", "1"), member_num (hp, "lr"),
    (int) member_num (hp, "batch_size"), member_num (hp, "weight_decay"),
    member_num (hp, "layer_decay"), member_num (hp, "warmup_epochs"),
    member_num (hp, "label_smoothing"), member_num (hp, "clip_grad"),
    member_str (hp, "augment", "none"), kind, (int) json_object_get_int_member_with_default (o, "seed", 0),
    spec, spec, spec, spec);
  if (!vl_write_file_atomic (readme, text, -1, &error))
    return cli_fail (error);
  g_print ("exported the recipe of %s to %s: train.py, run.json, backbone/, README.md\n",
           run, out);
  return EXIT_SUCCESS;
}
