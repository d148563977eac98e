/* vitlab-cli: the engine from the command line.
 *
 *   vitlab-cli info CHECKPOINT
 *   vitlab-cli forward CHECKPOINT --images FILE[:TENSOR] [--pool token|avg|max|map] --out OUT
 *   vitlab-cli step CHECKPOINT --images FILE[:TENSOR] --targets FILE[:TENSOR] --unlock N
 *                   --lr F --wd F [--label-smoothing F] [--clip-grad F] --out OUT
 *   vitlab-cli classify CHECKPOINT IMAGE... [--top K]
 *
 * Every failure is one line on stderr naming the file and the problem, and exit status 1
 * (2 for a malformed command line). */
#include "cli-commands.h"
#include "vl-i18n.h"
#include "vl-dataset.h"   /* vl_data_path */
#include "vl-image.h"
#include "vl-gemm.h"
#include "vl-model.h"
#include "vl-onnx.h"
#include "vl-run.h"
#include "vl-task.h"
#include "vl-trainer.h"
#include "vl-pool.h"
#include "vl-safetensors.h"
#include "vl-det-head.h"
#include "vl-seg-head.h"
#include "vl-run.h"

#include <json-glib/json-glib.h>

#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define EXIT_USAGE 2

static const char *usage_text = N_(
  "Usage:\n"
  "  vitlab-cli info CHECKPOINT\n"
  "  vitlab-cli forward CHECKPOINT --images FILE.safetensors[:TENSOR] [--pool token|avg|max|map]\n"
  "                     --out OUT.safetensors\n"
  "  vitlab-cli step CHECKPOINT --images FILE[:TENSOR] --targets FILE[:TENSOR] --unlock N\n"
  "                  --lr F --wd F [--label-smoothing F] [--clip-grad F] --out OUT.safetensors\n"
  "  vitlab-cli classify CHECKPOINT IMAGE... [--top K]\n"
  "  vitlab-cli export SOURCE|RUNDIR [--format timm|onnx] [--pool token|avg|max|map]\n"
  "                    --out DIR|FILE.onnx\n"
  "  vitlab-cli export-recipe RUNDIR --out DIR   (train.py for PyTorch/torchrun, run.json)\n"
  "  vitlab-cli train --backbone CKPT --data DIR|fashion-mnist[:...] --out RUNDIR [options]\n"
  "  vitlab-cli train --preset demo|rotate|scenes|boxes|pretrain-fmnist --out RUNDIR [options]\n"
  "  vitlab-cli train --task regress --backbone CKPT --data DIR|fashion-mnist-rotate[:...]\n"
  "                  --out RUNDIR [--loss mse|smooth-l1] [options]\n"
  "  vitlab-cli eval RUNDIR [--data SPEC]\n"
  "  vitlab-cli predict RUNDIR IMAGE... [--top K]\n"
  "  vitlab-cli features CKPT|RUN --data SPEC [--split train|val|all] [--layer L|final]\n"
  "                      [--pool token|avg|max|map|all] --out FILE.safetensors|.npy|.csv\n"
  "  vitlab-cli probe CKPT|RUN --data SPEC [--method knn|logreg|both] [--k 20]\n"
  "                   [--layer L|final|all] [--pool token|avg|max|map]\n"
  "  vitlab-cli bench --model vit-tiny|vit-small|--backbone CKPT|--geometry SPEC\n"
  "                   [--img N] [--batch 32] [--task segment|detect [--seg-head upconv]\n"
  "                   [--cached]]\n"
  "                   --mode infer|unlockN|full|stem-conv|stem-mbconv\n"
  "  vitlab-cli --version\n"
  "\n"
  "CHECKPOINT is a .safetensors file, a PyTorch .pth/.bin/.ckpt, a JAX .npz (AugReg, big_vision),\n"
  "or a folder with model.safetensors (or pytorch_model.bin) and config.json.\n"
  "'vitlab-cli COMMAND --help' lists a command's options.\n"
  "VITLAB_THREADS sets the number of compute threads (default: all cores).\n");

int
cli_fail (GError *error)
{
  g_printerr ("vitlab-cli: %s\n", error->message);
  g_error_free (error);
  return EXIT_FAILURE;
}

static int
usage_error (const char *fmt, ...) G_GNUC_PRINTF (1, 2);

static int
usage_error (const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_printerr (_("vitlab-cli: %s (see 'vitlab-cli --help')\n"), msg);
  return EXIT_USAGE;
}

/* Parses the options of a subcommand; leaves the positional arguments in argv. */
static gboolean
parse_options (const char *command, GOptionEntry *entries, int *argc, char ***argv,
               GError **error)
{
  g_autofree char *param = g_strdup_printf ("%s", command);
  g_autoptr(GOptionContext) ctx = g_option_context_new (param);
  g_option_context_add_main_entries (ctx, entries, GETTEXT_PACKAGE);
  g_option_context_set_help_enabled (ctx, TRUE);
  return g_option_context_parse (ctx, argc, argv, error);
}

/* "FILE[:TENSOR]": the tensor name follows the last ':' unless the whole string is a file. */
static void
split_tensor_spec (const char *spec, const char *default_name, char **file, char **tensor)
{
  const char *colon = strrchr (spec, ':');
  if (colon && colon != spec && !g_file_test (spec, G_FILE_TEST_EXISTS) && colon[1] != '\0' &&
      strchr (colon, '/') == NULL)
    {
      *file = g_strndup (spec, colon - spec);
      *tensor = g_strdup (colon + 1);
    }
  else
    {
      *file = g_strdup (spec);
      *tensor = g_strdup (default_name);
    }
}

typedef struct {
  VlSafetensors *st;
  float         *data;
  const VlTensorInfo *info;
} TensorArg;

static void
tensor_arg_clear (TensorArg *t)
{
  g_clear_pointer (&t->st, vl_safetensors_free);
  g_clear_pointer (&t->data, g_free);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (TensorArg, tensor_arg_clear)

static gboolean
read_tensor_arg (const char *spec, const char *default_name, TensorArg *out, GError **error)
{
  g_autofree char *file = NULL, *tensor = NULL;
  split_tensor_spec (spec, default_name, &file, &tensor);
  out->st = vl_safetensors_open (file, error);
  if (!out->st)
    return FALSE;
  out->data = vl_safetensors_read_f32 (out->st, tensor, &out->info, error);
  return out->data != NULL;
}

static gboolean
read_images (VlModel *m, const char *spec, TensorArg *img, GError **error)
{
  if (!read_tensor_arg (spec, "images", img, error))
    return FALSE;
  const VlGeometry *g = vl_model_geometry (m);
  const VlTensorInfo *t = img->info;
  if (t->ndim != 4 || t->shape[1] != g->in_chans || t->shape[0] <= 0 || t->shape[0] > 65536 ||
      t->shape[2] > 8192 || t->shape[3] > 8192)
    {
      g_autofree char *shape = vl_shape_to_string (t->ndim, t->shape);
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                   _("%s: tensor %s has shape %s, expected [B,%d,H,W] (NCHW images with the "
                     "model's %d channels)"), vl_safetensors_path (img->st), t->name, shape,
                   g->in_chans, g->in_chans);
      return FALSE;
    }
  for (int64_t i = 0; i < t->numel; i++)
    if (!isfinite (img->data[i]))
      {
        g_set_error (error, VL_ERROR, VL_ERROR_NUMERIC,
                     "%s: tensor %s holds a non-finite value at element %" G_GINT64_FORMAT,
                     vl_safetensors_path (img->st), t->name, i);
        return FALSE;
      }
  return TRUE;
}

static VlModel *
load_model (const char *path, GError **error)
{
  return vl_model_load (path, error);
}

/* ------------------------------------------------------------------ info */

static int
cmd_info (int argc, char **argv)
{
  GError *error = NULL;
  GOptionEntry entries[] = { { NULL } };
  if (!parse_options ("info CHECKPOINT", entries, &argc, &argv, &error))
    return usage_error ("%s", error->message);
  if (argc != 2)
    return usage_error (_("info takes one CHECKPOINT"));
  g_autoptr(VlModel) m = load_model (argv[1], &error);
  if (!m)
    return cli_fail (error);
  const VlGeometry *g = vl_model_geometry (m);
  g_print ("checkpoint:   %s\n", argv[1]);
  g_print ("family:       %s (%s)\n", g->family, g->architecture);
  g_print ("geometry:     patch %d, %d input channels, width %d, depth %d, %d heads of %d, "
           "MLP %d\n", g->patch, g->in_chans, g->width, g->depth, g->heads, g->head_dim, g->mlp);
  GString *prefix = g_string_new (NULL);
  if (g->class_token)
    g_string_append (prefix, "CLS + ");
  if (g->dist_token)
    g_string_append (prefix, "distillation + ");
  if (g->reg_tokens)
    g_string_append_printf (prefix, "%d registers + ", g->reg_tokens);
  g_print ("tokens:       %d (%s%dx%d grid at %dx%d pixels)\n", g->n_tokens, prefix->str, g->grid,
           g->grid, g->img_size, g->img_size);
  g_string_free (prefix, TRUE);
  g_print ("blocks:       pre-norm, %s%s%s%s%s%s\n", g->quick_gelu ? "QuickGELU"
           : g->gelu_tanh ? "GELU (tanh approximation)" : "exact GELU",
           g->layer_scale ? ", layer scale" : "", g->pre_norm ? ", LayerNorm before the blocks" : "",
           g->no_embed_class ? ", position embedding on patches only" : "",
           g->fc_norm ? ", final norm after pooling (fc_norm)" : "",
           g->attn_pool ? ", attention pool (map) after the final norm" : "");
  if (g->embed_dim > 0)
    g_print ("projection:   %d -> %d (image embedding)\n", g->width, g->embed_dim);
  g_print ("layer norm:   eps %g\n", g->eps);
  if (vl_model_num_classes (m) > 0)
    g_print ("head:         linear, %d classes, pool %s%s\n", vl_model_num_classes (m),
             vl_pool_name (vl_model_pool (m)), vl_model_class_names (m) ? ", with class names" : "");
  else
    g_print ("head:         none (features only), pool %s\n", vl_pool_name (vl_model_pool (m)));
  if (vl_model_stem_kind (m) != VL_STEM_PATCH)
    g_print ("stem:         %s CNN (total stride %d) in place of the patch embedding\n",
             vl_stem_kind_name (vl_model_stem_kind (m)), g->patch);
  if (g->squash)
    g_print ("input:        %dx%d, the whole image resized (squash), %s; mean", g->input_size,
             g->input_size, g->interpolation);
  else
    g_print ("input:        %dx%d, crop_pct %g, %s; mean", g->input_size, g->input_size,
             g->crop_pct, g->interpolation);
  for (int c = 0; c < g->in_chans; c++)
    g_print (" %g", g->mean[c]);
  g_print (", std");
  for (int c = 0; c < g->in_chans; c++)
    g_print (" %g", g->std[c]);
  g_print ("\nparameters:   %" G_GINT64_FORMAT "\n", vl_model_n_params (m));
  g_print ("layer groups: %d (unlock N = the last N; OpenCLIP lock(unlocked_groups=N))\n",
           vl_model_n_groups (m));
  int n = vl_model_n_groups (m);
  for (int gr = 0; gr < n; gr++)
    g_print ("  %2d  %-10s %10" G_GINT64_FORMAT " params   unlocked by N >= %d\n", gr,
             vl_model_group_name (m, gr), vl_model_group_n_params (m, gr), n - gr);
  return EXIT_SUCCESS;
}

/* ------------------------------------------------------------------ forward */

static int
cmd_forward (int argc, char **argv)
{
  GError *error = NULL;
  g_autofree char *images = NULL, *out = NULL, *pool = NULL;
  GOptionEntry entries[] = {
    { "images", 0, 0, G_OPTION_ARG_FILENAME, &images, N_("NCHW float32 images"), "FILE[:TENSOR]" },
    { "pool", 0, 0, G_OPTION_ARG_STRING, &pool, N_("features: token, avg or max"), "POOL" },
    { "out", 0, 0, G_OPTION_ARG_FILENAME, &out, N_("output safetensors"), "OUT" },
    { NULL },
  };
  if (!parse_options ("forward CHECKPOINT", entries, &argc, &argv, &error))
    return usage_error ("%s", error->message);
  if (argc != 2 || !images || !out)
    return usage_error (_("forward needs CHECKPOINT, --images and --out"));
  VlPoolKind pool_kind = VL_POOL_TOKEN;
  if (pool && !vl_pool_from_string (pool, &pool_kind))
    return usage_error (_("--pool %s: expected token, avg, max or map"), pool);

  g_autoptr(VlModel) m = load_model (argv[1], &error);
  if (!m)
    return cli_fail (error);
  if (pool && pool_kind == VL_POOL_MAP && !vl_model_check_pool (m, pool_kind, &error))
    return cli_fail (error);
  if (pool)
    vl_model_set_pool (m, pool_kind);
  g_auto(TensorArg) img = { 0 };
  if (!read_images (m, images, &img, &error))
    return cli_fail (error);
  const VlTensorInfo *t = img.info;
  int B = (int) t->shape[0], H = (int) t->shape[2], W = (int) t->shape[3];
  if (!vl_model_forward (m, img.data, B, H, W, VL_FORWARD_CAPTURE_ATTN, &error))
    {
      g_prefix_error (&error, "%s: ", vl_safetensors_path (img.st));
      return cli_fail (error);
    }

  const VlGeometry *g = vl_model_geometry (m);
  int T = vl_model_n_tokens_last (m);
  g_autoptr(VlSafetensorsWriter) w = vl_safetensors_writer_new ();
  int64_t s_feat[2] = { B, g->width };
  int64_t s_tok[3] = { B, T, g->width };
  int64_t s_att[4] = { B, g->heads, T, T };
  int64_t s_roll[2] = { B, T - g->n_prefix };
  int64_t s_emb[2] = { B, g->embed_dim };
  int64_t s_logits[2] = { B, vl_model_num_classes (m) };
  vl_safetensors_writer_add_f32 (w, "features", 2, s_feat, vl_model_features (m));
  vl_safetensors_writer_add_f32 (w, "tokens_final", 3, s_tok, vl_model_tokens_final (m));
  char **names = g_new0 (char *, g->depth + 1);
  for (int l = 0; l < g->depth; l++)
    {
      names[l] = g_strdup_printf ("attn.%d", l);
      vl_safetensors_writer_add_f32 (w, names[l], 4, s_att, vl_model_attention (m, l));
    }
  g_autofree float *rollout = g_new (float, (int64_t) B * (T - g->n_prefix));
  if (!vl_model_rollout (m, rollout, &error))
    {
      g_strfreev (names);
      return cli_fail (error);
    }
  vl_safetensors_writer_add_f32 (w, "rollout", 2, s_roll, rollout);
  /* pooled by an attention pool (SigLIP's): its query's probabilities over the patches */
  int64_t s_pool[3] = { B, g->heads, T - g->n_prefix };
  if (vl_model_pool_attention (m))
    vl_safetensors_writer_add_f32 (w, "attn_pool", 3, s_pool, vl_model_pool_attention (m));
  if (vl_model_embedding (m))
    vl_safetensors_writer_add_f32 (w, "embedding", 2, s_emb, vl_model_embedding (m));
  if (vl_model_logits (m))
    vl_safetensors_writer_add_f32 (w, "logits", 2, s_logits, vl_model_logits (m));
  /* a segmentation head in the checkpoint (decode_head.*), or a run folder's
   * seg_head.safetensors: seg_logits (B, K, H, W) at the input size */
  g_autoptr(VlSegHead) seg = NULL;
  if (!vl_seg_head_find (argv[1], g->width, &seg, &error))
    {
      g_strfreev (names);
      return cli_fail (error);
    }
  g_autofree float *seg_nchw = NULL;
  if (seg)
    {
      const int K = vl_seg_head_n_classes (seg);
      const float *z = vl_seg_head_forward (seg, vl_model_tokens_final (m), B, T, g->n_prefix,
                                            H / g->patch, W / g->patch, H, W);
      seg_nchw = g_new (float, (gsize) B * K * H * W);
      for (int b = 0; b < B; b++)
        for (int p = 0; p < H * W; p++)
          for (int k = 0; k < K; k++)
            seg_nchw[((gsize) b * K + k) * H * W + p] = z[((gsize) b * H * W + p) * K + k];
      int64_t s_seg[4] = { B, K, H, W };
      vl_safetensors_writer_add_f32 (w, "seg_logits", 4, s_seg, seg_nchw);
    }
  /* an FCOS head (head.*) in the checkpoint or the run folder's det_head.safetensors */
  g_autoptr(GPtrArray) det_keep = g_ptr_array_new_with_free_func (g_free);
  if (!cli_forward_detect (argv[1], m, B, H, W, w, det_keep, &error))
    {
      g_strfreev (names);
      return cli_fail (error);
    }
  vl_safetensors_writer_add_metadata (w, "pool", vl_pool_name (vl_model_pool (m)));
  gboolean ok = vl_safetensors_writer_write (w, out, &error);
  g_strfreev (names);
  return ok ? EXIT_SUCCESS : cli_fail (error);
}

/* ------------------------------------------------------------------ step */

static gboolean
parse_float (const char *option, const char *s, double lo, double hi, double *out)
{
  if (s == NULL)
    return FALSE;
  char *end = NULL;
  double v = g_ascii_strtod (s, &end);
  if (end == s || *end != '\0' || !isfinite (v) || v < lo || v > hi)
    {
      g_printerr (_("vitlab-cli: %s %s: expected a number in [%g, %g]\n"), option, s, lo, hi);
      return FALSE;
    }
  *out = v;
  return TRUE;
}

static int
cmd_step (int argc, char **argv)
{
  GError *error = NULL;
  g_autofree char *images = NULL, *targets = NULL, *out = NULL;
  g_autofree char *lr_s = NULL, *wd_s = NULL, *ls_s = NULL, *clip_s = NULL;
  int unlock = -1;
  GOptionEntry entries[] = {
    { "images", 0, 0, G_OPTION_ARG_FILENAME, &images, N_("NCHW float32 images"), "FILE[:TENSOR]" },
    { "targets", 0, 0, G_OPTION_ARG_FILENAME, &targets, N_("class labels [B]"), "FILE[:TENSOR]" },
    { "unlock", 0, 0, G_OPTION_ARG_INT, &unlock, N_("unlock the last N layer groups"), "N" },
    { "lr", 0, 0, G_OPTION_ARG_STRING, &lr_s, N_("learning rate"), "F" },
    { "wd", 0, 0, G_OPTION_ARG_STRING, &wd_s, N_("weight decay"), "F" },
    { "label-smoothing", 0, 0, G_OPTION_ARG_STRING, &ls_s, N_("label smoothing (0)"), "F" },
    { "clip-grad", 0, 0, G_OPTION_ARG_STRING, &clip_s, N_("clip the global gradient norm"), "F" },
    { "out", 0, 0, G_OPTION_ARG_FILENAME, &out, N_("output safetensors"), "OUT" },
    { NULL },
  };
  if (!parse_options ("step CHECKPOINT", entries, &argc, &argv, &error))
    return usage_error ("%s", error->message);
  if (argc != 2 || !images || !targets || !out || unlock < 0 || !lr_s || !wd_s)
    return usage_error (_("step needs CHECKPOINT, --images, --targets, --unlock N (N >= 0), --lr, "
                          "--wd and --out"));
  double lr, wd, ls = 0.0, clip = 0.0;
  if (!parse_float ("--lr", lr_s, 0.0, 1e3, &lr) || !parse_float ("--wd", wd_s, 0.0, 1e3, &wd) ||
      (ls_s && !parse_float ("--label-smoothing", ls_s, 0.0, 0.999999, &ls)) ||
      (clip_s && !parse_float ("--clip-grad", clip_s, 0.0, 1e9, &clip)))
    return EXIT_USAGE;

  g_autoptr(VlModel) m = load_model (argv[1], &error);
  if (!m)
    return cli_fail (error);
  if (vl_model_num_classes (m) == 0)
    {
      g_printerr (_("vitlab-cli: %s: the checkpoint has no head (head.weight) to train\n"),
                  argv[1]);
      return EXIT_FAILURE;
    }
  vl_model_set_pool (m, VL_POOL_TOKEN);
  g_auto(TensorArg) img = { 0 };
  g_auto(TensorArg) tgt = { 0 };
  if (!read_images (m, images, &img, &error) || !read_tensor_arg (targets, "targets", &tgt, &error))
    return cli_fail (error);
  int B = (int) img.info->shape[0];
  if (tgt.info->numel != B || tgt.info->ndim > 2)
    {
      g_autofree char *shape = vl_shape_to_string (tgt.info->ndim, tgt.info->shape);
      g_printerr (_("vitlab-cli: %s: tensor %s has shape %s, expected [%d] (one label per image)\n"),
                  vl_safetensors_path (tgt.st), tgt.info->name, shape, B);
      return EXIT_FAILURE;
    }
  g_autofree int *labels = g_new (int, B);
  for (int b = 0; b < B; b++)
    {
      float v = tgt.data[b];
      if (!(v >= 0 && v < vl_model_num_classes (m) && v == floorf (v)))
        {
          g_printerr (_("vitlab-cli: %s: tensor %s: label %g of image %d is not a class index in "
                        "[0, %d)\n"), vl_safetensors_path (tgt.st), tgt.info->name, v, b,
                      vl_model_num_classes (m));
          return EXIT_FAILURE;
        }
      labels[b] = (int) v;
    }

  vl_model_lock (m, unlock);
  const VlTensorInfo *t = img.info;
  if (!vl_model_forward (m, img.data, B, (int) t->shape[2], (int) t->shape[3], VL_FORWARD_TRAIN,
                         &error))
    {
      g_prefix_error (&error, "%s: ", vl_safetensors_path (img.st));
      return cli_fail (error);
    }
  double loss;
  if (!vl_model_backward (m, labels, (float) ls, &loss, &error))
    return cli_fail (error);
  double norm = vl_model_clip_grad_norm (m, clip);
  VlAdamW opt = VL_ADAMW_DEFAULTS;
  opt.lr = (float) lr;
  opt.weight_decay = (float) wd;
  vl_model_adamw_step (m, &opt);
  if (!vl_model_save (m, out, &error))
    return cli_fail (error);
  g_print ("loss=%.6f grad_norm=%.6f trainable=%" G_GINT64_FORMAT "\n", loss, norm,
           vl_model_n_trainable (m));
  return EXIT_SUCCESS;
}

/* ------------------------------------------------------------------ classify */

static int
cmd_classify (int argc, char **argv)
{
  GError *error = NULL;
  int top = 1;
  GOptionEntry entries[] = {
    { "top", 0, 0, G_OPTION_ARG_INT, &top, N_("print the top K classes (1)"), "K" },
    { NULL },
  };
  if (!parse_options ("classify CHECKPOINT IMAGE|FOLDER...", entries, &argc, &argv, &error))
    return usage_error ("%s", error->message);
  if (argc < 3)
    return usage_error (_("classify needs a CHECKPOINT and at least one IMAGE"));
  if (top < 1)
    return usage_error (_("--top %d: expected K >= 1"), top);

  /* folders stand for the images in them */
  g_autoptr(GPtrArray) inputs = cli_expand_images (argv + 2, argc - 2, &error);
  if (inputs == NULL)
    return cli_fail (error);
  char **images = (char **) inputs->pdata;
  const int n_images = (int) inputs->len - 1;   /* without its NULL */

  g_autoptr(VlModel) m = load_model (argv[1], &error);
  if (!m)
    return cli_fail (error);
  const int K = vl_model_num_classes (m);
  if (K == 0)
    {
      g_printerr (_("vitlab-cli: %s: the checkpoint has no classifier head\n"), argv[1]);
      return EXIT_FAILURE;
    }
  VlPreprocess pp;
  vl_preprocess_from_model (m, &pp);
  const char *const *names = vl_model_class_names (m);
  top = MIN (top, K);

  const int batch = 8;
  const int64_t per_image = (int64_t) pp.channels * pp.size * pp.size;
  g_autofree float *pixels = g_new (float, batch * per_image);
  const char *files[8];
  int failures = 0;
  for (int i = 0; i < n_images;)
    {
      int n = cli_load_images (images, n_images, &i, &pp, batch, pixels, files, &failures);
      if (n == 0)
        continue;
      if (!vl_model_forward (m, pixels, n, pp.size, pp.size, VL_FORWARD_INFER, &error))
        return cli_fail (error);
      for (int b = 0; b < n; b++)
        cli_print_top_classes (files[b], vl_model_logits (m) + (int64_t) b * K, K, names, top);
    }
  return failures ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* ------------------------------------------------------------------ export */

/* An ONNX file of a checkpoint or of a run folder (run.json beside the model: its task, its
 * class or target names and, for regression, the standardisation the graph undoes). */
static int
export_onnx (const char *source, const char *out, const char *pool, VlPoolKind pool_kind)
{
  GError *error = NULL;
  g_autofree char *run_json = g_build_filename (source, "run.json", NULL);
  const gboolean is_run = g_file_test (run_json, G_FILE_TEST_IS_REGULAR);
  g_auto(GStrv) names = NULL;
  g_autoptr(VlModel) m = is_run ? vl_run_load_model (source, &names, &error)
                                : load_model (source, &error);
  if (m == NULL)
    return cli_fail (error);
  if (pool && pool_kind == VL_POOL_MAP && !vl_model_check_pool (m, pool_kind, &error))
    return cli_fail (error);
  if (pool)
    vl_model_set_pool (m, pool_kind);
  const VlGeometry *g = vl_model_geometry (m);
  /* a run: its task, names, seg head and side (vl_onnx_run_init); a checkpoint: its own head,
   * or the seg head it carries */
  VlOnnxRun run = { 0 };
  g_autoptr(VlSegHead) seg = NULL;
  g_autoptr(VlDetHead) det = NULL;
  VlTaskSpec classify = { .kind = VL_TASK_CLASSIFY };
  VlOnnxOptions o = { .task = &classify };
  if (is_run && !vl_onnx_run_init (&run, source, g->width, (const char *const *) names, &error))
    return cli_fail (error);
  if (is_run)
    o = run.options;
  else if (!vl_seg_head_find (source, g->width, &seg, &error) ||
           !vl_det_head_find (source, g->width, &det, &error))
    return cli_fail (error);
  else
    {
      o.seg_head = seg;
      o.det_head = seg ? NULL : det;
    }
  gboolean ok = vl_model_export_onnx (m, &o, out, &error);
  const gboolean regress = o.task->kind == VL_TASK_REGRESS, has_seg = o.seg_head != NULL;
  const gboolean has_det = o.det_head != NULL;
  /* the preprocessing's size when it fits the patch (vl-onnx.h) */
  const int S = o.size > 0 ? o.size
                : g->input_size > 0 && g->input_size % g->patch == 0 ? g->input_size
                : g->img_size;
  vl_onnx_run_clear (&run);
  if (!ok)
    return cli_fail (error);
  g_print ("exported %s (%s) to %s: ONNX opset 17, pixel_values (N, %d, %d, %d) -> %s%s\n",
           source, g->family, out, g->in_chans, S, S,
           has_seg ? "seg_logits, " : has_det ? "cls_logits, bbox_regression, bbox_ctrness, "
           : vl_model_head_kind (m) == VL_HEAD_NONE ? ""
           : regress ? "values, " : "logits, ",
           g->embed_dim > 0 ? "features, embedding" : "features");
  return EXIT_SUCCESS;
}

static int
cmd_export (int argc, char **argv)
{
  GError *error = NULL;
  g_autofree char *out = NULL, *format = NULL, *pool = NULL;
  GOptionEntry entries[] = {
    { "pool", 0, 0, G_OPTION_ARG_STRING, &pool, N_("the pooling: token, avg or max (the model's)"),
      "POOL" },
    { "format", 0, 0, G_OPTION_ARG_STRING, &format,
      N_("timm (a folder: model.safetensors + config.json, the default) or onnx (one file)"),
      "FORMAT" },
    { "out", 0, 0, G_OPTION_ARG_FILENAME, &out, N_("output folder (timm) or file (onnx)"), "OUT" },
    { NULL },
  };
  if (!parse_options ("export SOURCE", entries, &argc, &argv, &error))
    return usage_error ("%s", error->message);
  if (argc != 2 || !out)
    return usage_error (_("export needs a SOURCE (checkpoint or run folder) and --out"));
  VlPoolKind pool_kind = VL_POOL_TOKEN;
  if (pool && !vl_pool_from_string (pool, &pool_kind))
    return usage_error (_("--pool %s: expected token, avg, max or map"), pool);
  if (format && strcmp (format, "onnx") == 0)
    return export_onnx (argv[1], out, pool, pool_kind);
  if (format && strcmp (format, "timm") != 0)
    return usage_error (_("--format %s: expected timm or onnx"), format);
  g_autoptr(VlModel) m = load_model (argv[1], &error);
  if (!m)
    return cli_fail (error);
  if (pool && pool_kind == VL_POOL_MAP && !vl_model_check_pool (m, pool_kind, &error))
    return cli_fail (error);
  if (pool)
    vl_model_set_pool (m, pool_kind);
  if (!vl_model_export (m, out, &error))
    return cli_fail (error);
  const VlGeometry *g = vl_model_geometry (m);
  /* a segmentation or detection run: its head beside the backbone */
  g_autofree char *what = NULL;
  if (!vl_run_export_head (argv[1], g->width, out, &what, &error))
    return cli_fail (error);
  if (what)
    g_print ("exported %s\n", what);
  g_print ("exported %s (%s) to %s: model.safetensors + config.json in timm naming\n", argv[1],
           g->family, out);
  return EXIT_SUCCESS;
}

/* ------------------------------------------------------------------ bench */

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return (x > y) - (x < y);
}

/* Median of v[0..n) (sorts v). */
static double
median_of (double *v, int n)
{
  qsort (v, n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The model `vitlab-cli bench` times: a named geometry (random weights, 1000 classes), a
 * checkpoint (its own weights and head, or a new linear head of 1000 classes when it has none)
 * or a vl_geometry_parse spec (random, 1000 classes). *img
 * (0: the model's own size) must be a multiple of the patch. */
static VlModel *
bench_model (const char *model, const char *backbone, const char *spec, int *img,
             GError **error)
{
  VlModel *m = NULL;
  if (backbone)
    m = vl_model_load (backbone, error);
  else
    {
      VlGeometry g = { .in_chans = 3, .patch = 16, .depth = 12, .class_token = TRUE };
      if (spec)
        {
          if (!vl_geometry_parse (spec, &g, error))
            return NULL;
        }
      else if (g_str_equal (model, "vit-tiny"))
        g.width = 192, g.heads = 3;
      else if (g_str_equal (model, "vit-small"))
        g.width = 384, g.heads = 6;
      else if (g_str_equal (model, "vit-base"))
        g.width = 768, g.heads = 12;
      else
        {
          g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                       _("--model %s: expected vit-tiny, vit-small or vit-base"), model);
          return NULL;
        }
      if (!spec)
        {
          g.mlp = 4 * g.width;
          g.grid = (*img ? *img : 224) / 16;
        }
      m = vl_model_new_random (&g, 1000, 1);
    }
  if (m == NULL)
    return NULL;
  /* a backbone without a head (most pretrained ones) trains a new linear one, as a run would */
  if (vl_model_head_kind (m) == VL_HEAD_NONE)
    vl_model_set_head (m, VL_HEAD_LINEAR, 1000, 0, 1);
  const VlGeometry *g = vl_model_geometry (m);
  if (*img == 0)
    *img = g->grid * g->patch;
  if (*img < g->patch || *img % g->patch)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "--img %d: must be a multiple of the "
                   "patch size %d", *img, g->patch);
      vl_model_free (m);
      return NULL;
    }
  return m;
}

/* bench's closing lines (key=value, read by bench/run.py): the CPU, the case, where a step's
 * time goes (medians of each part separately, so they need not add up), images/s (the median),
 * the peak RSS. */
static void
bench_report (const char *model, const char *backbone, const char *spec, int img, int batch,
              const char *mode, CliDenseBench *dense, gboolean gemm_ab, int reps, double *rates,
              double *t_fwd, double *t_bwd, double *t_upd, const double *loss)
{
  double median = median_of (rates, reps);
  struct rusage ru;
  getrusage (RUSAGE_SELF, &ru);
  g_print ("cpu=\"%s\" kernel=%s\n", vl_cpu_describe (), vl_gemm_isa_name (vl_gemm_isa ()));
  g_print ("model=%s img=%d batch=%d mode=%s threads=%d\n",
           backbone ? backbone : spec ? spec : model, img, batch, mode, vl_pool_n_threads ());
  if (dense)
    g_print ("dense_head=%s cached=%s\n", cli_dense_bench_describe (dense),
             cli_dense_bench_cached (dense) ? "yes" : "no");
  /* the same batch every step: a step that trains lowers it */
  if (loss)
    g_print ("loss_first=%.6f loss_last=%.6f\n", loss[0], loss[1]);
  g_print ("forward_ms=%.2f backward_ms=%.2f update_ms=%.2f\n", median_of (t_fwd, reps),
           median_of (t_bwd, reps), median_of (t_upd, reps));
  /* the fastest step (rates is sorted by median_of): on a loaded machine, the figure least
   * disturbed by the others' work, for comparing two builds */
  g_print ("best_images_per_s=%.2f\n", rates[reps - 1]);
  if (gemm_ab)
    {
      vl_gemm_set_enabled (TRUE);
      g_print ("openblas_forward_ms=%.2f openblas_backward_ms=%.2f openblas_images_per_s=%.2f\n",
               median_of (t_fwd + reps, reps), median_of (t_bwd + reps, reps),
               median_of (rates + reps, reps));
    }
  g_print ("images_per_s=%.2f\n", median);
  g_print ("peak_rss_mib=%.0f\n", ru.ru_maxrss / 1024.0);
}

/* --mode: infer (-1), unlockN (N >= 1), full (1000), stem-conv / stem-mbconv (0); FALSE when
 * it is none of them. */
static gboolean
bench_parse_mode (const char *mode, int *unlock)
{
  char *end = NULL;
  if (g_str_equal (mode, "infer"))
    *unlock = -1;
  else if (g_str_equal (mode, "full"))
    *unlock = 1000;
  else if (g_str_equal (mode, "stem-conv") || g_str_equal (mode, "stem-mbconv"))
    *unlock = 0;   /* a new CNN stem and the head train, the transformer frozen */
  else if (g_str_has_prefix (mode, "unlock") && g_ascii_isdigit (mode[6]))
    {
      gint64 n = g_ascii_strtoll (mode + 6, &end, 10);
      if (*end || n < 1 || n > 1000)
        return FALSE;
      *unlock = (int) n;
    }
  else
    return FALSE;
  return TRUE;
}

/* The task's part of `bench`: a dense head (segment, detect) set up on m, or NULL for classify;
 * *ok FALSE (the error printed, *rc set) when the options do not fit. */
static CliDenseBench *
bench_dense_setup (VlModel *m, const char *task, const char *seg_head, int classes, int unlock,
                   int img, int batch, gboolean *ok, int *rc)
{
  GError *error = NULL;
  VlTaskKind kind = VL_TASK_CLASSIFY;
  VlSegHeadKind sk = VL_SEG_HEAD_LINEAR;
  *ok = FALSE;
  if (task && (!vl_task_from_string (task, &kind) || kind == VL_TASK_REGRESS))
    {
      *rc = usage_error (_("--task %s: expected classify, segment or detect"), task);
      return NULL;
    }
  if (seg_head && (kind != VL_TASK_SEGMENT || !vl_seg_head_kind_from_string (seg_head, &sk)))
    {
      *rc = usage_error (_("--seg-head %s: expected linear or upconv, with --task segment"),
                         seg_head);
      return NULL;
    }
  if (kind == VL_TASK_CLASSIFY)
    {
      if (classes != 0)
        *rc = usage_error (_("--classes goes with --task segment or detect"));
      *ok = classes == 0;
      return NULL;
    }
  if (unlock == 0)
    {
      *rc = usage_error (_("--mode stem-*: only with --task classify"));
      return NULL;
    }
  /* the pets-voc recipes: background + 3 breeds; background, cat, dog */
  int K = classes ? classes : kind == VL_TASK_SEGMENT ? 4 : 3;
  CliDenseBench *d = cli_dense_bench_new (m, kind, sk, K, unlock, img, batch, &error);
  if (d == NULL)
    *rc = cli_fail (error);
  *ok = d != NULL;
  return d;
}

static int
cmd_bench (int argc, char **argv)
{
  GError *error = NULL;
  g_autofree char *model = NULL, *mode = NULL, *backbone = NULL, *spec = NULL;
  g_autofree char *task = NULL, *seg_head = NULL;
  int img = 0, batch = 32, reps = 5, warmup = 1, classes = 0, rc = EXIT_SUCCESS;
  gboolean gemm_ab = FALSE, cached = FALSE, ok;
  GOptionEntry entries[] = {
    { "model", 0, 0, G_OPTION_ARG_STRING, &model, N_("vit-tiny or vit-small"), "NAME" },
    { "backbone", 0, 0, G_OPTION_ARG_FILENAME, &backbone,
      N_("a checkpoint instead (its own weights, head and image size)"), "CKPT" },
    { "geometry", 0, 0, G_OPTION_ARG_STRING, &spec,
      N_("a random model of this geometry instead (img=28,patch=4,chans=1,width=96,depth=6,"
         "...)"), "SPEC" },
    { "img", 0, 0, G_OPTION_ARG_INT, &img, N_("image side (224; a checkpoint's own)"), "N" },
    { "batch", 0, 0, G_OPTION_ARG_INT, &batch, N_("batch size (32)"), "N" },
    { "mode", 0, 0, G_OPTION_ARG_STRING, &mode,
      N_("infer, unlockN (unlock1, unlock3, unlock6, ...), full, stem-conv or stem-mbconv"),
      "MODE" },
    { "task", 0, 0, G_OPTION_ARG_STRING, &task,
      N_("classify (default), segment or detect: the head the step trains"), "TASK" },
    { "seg-head", 0, 0, G_OPTION_ARG_STRING, &seg_head,
      N_("with --task segment: linear (default) or upconv"), "HEAD" },
    { "classes", 0, 0, G_OPTION_ARG_INT, &classes,
      N_("classes of the dense head, background included (segment 4, detect 3)"), "K" },
    { "cached", 0, 0, G_OPTION_ARG_NONE, &cached,
      N_("with --task segment|detect --mode unlock1: the frozen tokens once, then the head "
         "alone (--cache-features)"), NULL },
    { "reps", 0, 0, G_OPTION_ARG_INT, &reps, N_("timed repetitions (5)"), "N" },
    { "warmup", 0, 0, G_OPTION_ARG_INT, &warmup, N_("untimed repetitions first (1)"), "N" },
    { "gemm-ab", 0, 0, G_OPTION_ARG_NONE, &gemm_ab,
      N_("also time OpenBLAS in place of vitlab's own products, alternating step by step"), NULL },
    { NULL },
  };
  if (!parse_options ("bench", entries, &argc, &argv, &error))
    return usage_error ("%s", error->message);
  if ((model != NULL) + (backbone != NULL) + (spec != NULL) != 1 || !mode || argc != 1)
    return usage_error (_("bench needs --mode and one of --model, --backbone, --geometry"));
  int unlock;
  if (!bench_parse_mode (mode, &unlock))
    return usage_error (_("--mode %s: expected infer, unlockN, full, stem-conv or "
                          "stem-mbconv"), mode);
  if (img < 0 || batch < 1 || reps < 1 || warmup < 0)
    return usage_error (_("--img must be positive, --batch and --reps too"));
  g_autoptr(VlModel) m = bench_model (model, backbone, spec, &img, &error);
  if (m == NULL)
    return cli_fail (error);
  CliDenseBench *dense = bench_dense_setup (m, task, seg_head, classes, unlock, img, batch, &ok,
                                            &rc);
  if (!ok)
    return rc;
  if (cached && (dense == NULL || unlock != 1))
    {
      cli_dense_bench_free (dense);
      return usage_error (_("--cached goes with --task segment|detect and --mode unlock1"));
    }
  const int chans = vl_model_geometry (m)->in_chans, K = vl_model_num_classes (m);
  if (dense == NULL)
    vl_model_lock (m, unlock < 0 ? 0 : unlock);
  if (unlock == 0)
    {
      if (!vl_model_replace_stem (m, g_str_equal (mode, "stem-conv") ? VL_STEM_CONV
                                                                     : VL_STEM_MBCONV, 1, &error))
        return cli_fail (error);
      vl_model_lock (m, 1);
      vl_model_set_group_trainable (m, 0, TRUE);
    }

  int64_t n = (int64_t) batch * chans * img * img;
  g_autofree float *x = g_new (float, n);
  g_autofree int *y = g_new (int, batch);
  for (int64_t i = 0; i < n; i++)
    x[i] = (float) ((i * 2654435761u) % 1000) / 500.0f - 1.0f;
  for (int b = 0; b < batch; b++)
    y[b] = b % MAX (K, 1);
  VlAdamW opt = VL_ADAMW_DEFAULTS;
  if (cached && !cli_dense_bench_cache (dense, x, &error))
    {
      cli_dense_bench_free (dense);
      return cli_fail (error);
    }
  if (gemm_ab && !vl_gemm_enabled ())
    {
      cli_dense_bench_free (dense);
      return usage_error (_("--gemm-ab: vitlab's own products need AVX-512 or AVX2 + FMA (and "
                            "no VITLAB_PACKED_GEMM=0)"));
    }
  /* with --gemm-ab, even repetitions (0, 2, ...) use vitlab's products and odd ones OpenBLAS's,
   * so that both see the same drift of the machine */
  const int variants = gemm_ab ? 2 : 1, total = reps * variants;
  double *rates = g_new (double, total);
  double *t_fwd = g_new (double, total), *t_bwd = g_new (double, total);
  double *t_upd = g_new (double, total);
  double losses[2] = { NAN, NAN };   /* of the first step (warm-up included) and of the last */
  for (int r = -warmup * variants; r < total && rc == EXIT_SUCCESS; r++)
    {
      if (gemm_ab)
        vl_gemm_set_enabled ((r & 1) == 0);
      gint64 t0 = g_get_monotonic_time (), t1 = t0, t2 = t0;
      double loss = 0;
      if (dense)
        {
          if (!cli_dense_bench_step (dense, x, unlock >= 0, &opt, &t1, &t2, &loss, &error))
            rc = cli_fail (error);
        }
      else if (!vl_model_forward (m, x, batch, img, img,
                                  unlock < 0 ? VL_FORWARD_INFER : VL_FORWARD_TRAIN, &error))
        rc = cli_fail (error);
      else
        {
          t1 = t2 = g_get_monotonic_time ();
          if (unlock >= 0)
            {
              if (!vl_model_backward (m, y, 0.0f, &loss, &error))
                rc = cli_fail (error);
              t2 = g_get_monotonic_time ();
              vl_model_adamw_step (m, &opt);
            }
        }
      gint64 t3 = g_get_monotonic_time ();
      if (unlock >= 0 && rc == EXIT_SUCCESS)
        {
          if (isnan (losses[0]))
            losses[0] = loss;
          losses[1] = loss;
        }
      if (r >= 0 && rc == EXIT_SUCCESS)
        {
          /* stored variant by variant: [own reps..., OpenBLAS reps...] */
          int at = (r % variants) * reps + r / variants;
          rates[at] = batch / ((t3 - t0) / 1e6);
          t_fwd[at] = (t1 - t0) / 1e3;
          t_bwd[at] = (t2 - t1) / 1e3;
          t_upd[at] = (t3 - t2) / 1e3;
        }
    }
  if (rc == EXIT_SUCCESS)
    bench_report (model, backbone, spec, img, batch, mode, dense, gemm_ab, reps, rates, t_fwd,
                  t_bwd, t_upd, unlock >= 0 ? losses : NULL);
  cli_dense_bench_free (dense);
  g_free (t_fwd);
  g_free (t_bwd);
  g_free (t_upd);
  g_free (rates);
  return rc;
}

int
main (int argc, char **argv)
{
  vl_blas_select_kernel (argv);
  vl_i18n_init ();
  setlocale (LC_NUMERIC, "C");   /* numbers on stdout are read by other programs */
  if (argc < 2 || g_str_equal (argv[1], "--help") || g_str_equal (argv[1], "-h") ||
      g_str_equal (argv[1], "help"))
    {
      fputs (_(usage_text), argc < 2 ? stderr : stdout);
      return argc < 2 ? EXIT_USAGE : EXIT_SUCCESS;
    }
  if (g_str_equal (argv[1], "--version"))
    {
      g_autofree char *data = vl_data_path ("");
      g_print ("vitlab-cli %s\nshipped files: %s\n", VITLAB_VERSION, data);
      return EXIT_SUCCESS;
    }
  vl_pool_init (0);
  const char *cmd = argv[1];
  /* the subcommand's own arguments, with the program name in front */
  argv[1] = g_strdup_printf ("vitlab-cli %s", cmd);
  int rc;
  if (g_str_equal (cmd, "info"))
    rc = cmd_info (argc - 1, argv + 1);
  else if (g_str_equal (cmd, "forward"))
    rc = cmd_forward (argc - 1, argv + 1);
  else if (g_str_equal (cmd, "step"))
    rc = cmd_step (argc - 1, argv + 1);
  else if (g_str_equal (cmd, "classify"))
    rc = cmd_classify (argc - 1, argv + 1);
  else if (g_str_equal (cmd, "bench"))
    rc = cmd_bench (argc - 1, argv + 1);
  else if (g_str_equal (cmd, "export"))
    rc = cmd_export (argc - 1, argv + 1);
  else if (g_str_equal (cmd, "export-recipe"))
    rc = cmd_export_recipe (argc - 1, argv + 1);
  else if (g_str_equal (cmd, "train"))
    rc = cmd_train (argc - 1, argv + 1);
  else if (g_str_equal (cmd, "eval"))
    rc = cmd_eval (argc - 1, argv + 1);
  else if (g_str_equal (cmd, "predict"))
    rc = cmd_predict (argc - 1, argv + 1);
  else if (g_str_equal (cmd, "features"))
    rc = cmd_features (argc - 1, argv + 1);
  else if (g_str_equal (cmd, "probe"))
    rc = cmd_probe (argc - 1, argv + 1);
  else
    rc = usage_error (_("unknown command '%s'"), cmd);
  g_free (argv[1]);
  return rc;
}
