/* cli-predict.c: vitlab-cli predict RUN IMAGE… — what a trained run says about new images.
 *
 * Classification runs print each image's top classes with their probabilities; regression runs
 * print each target's predicted value in its own units (the run's standardisation undone). One
 * line per image (per class with --top K), tab-separated, for other programs to read.
 * Segmentation runs write, into --out DIR, NAME.png (the predicted class of every pixel at the
 * image's own size, an 8-bit palette PNG with the VOC colours) and NAME-overlay.png (the image
 * with each non-background class tinted in its colour), and print one line per image: the file,
 * the mask written and the share of each class's pixels. Detection runs write NAME.json and
 * NAME-boxes.png (cli-detect.c) and print the file, the JSON and each box. */
#include "cli-commands.h"
#include "vl-i18n.h"
#include "vl-augment.h"
#include "vl-conv.h"
#include "vl-seg.h"
#include "vl-trainer.h"

#include <errno.h>
#include <json-glib/json-glib.h>
#include <string.h>

#include <glib/gstdio.h>

#include <math.h>
#include <stdlib.h>

typedef struct {
  int   index;
  float prob;
} Ranked;

static int
ranked_cmp (const void *a, const void *b)
{
  const Ranked *x = a, *y = b;
  return x->prob < y->prob ? 1 : x->prob > y->prob ? -1 : x->index - y->index;
}

/* FILE<TAB>INDEX<TAB>NAME<TAB>PROB for the top classes of one image's logits (K), most likely
 * first (ties: the lower index). */
void
cli_print_top_classes (const char *file, const float *z, int K, const char *const *names,
                       int top)
{
  g_autofree Ranked *ranked = g_new (Ranked, K);
  float mx = z[0];
  for (int k = 1; k < K; k++)
    mx = MAX (mx, z[k]);
  double s = 0;
  for (int k = 0; k < K; k++)
    s += exp ((double) z[k] - mx);
  for (int k = 0; k < K; k++)
    ranked[k] = (Ranked) { k, (float) (exp ((double) z[k] - mx) / s) };
  qsort (ranked, K, sizeof (Ranked), ranked_cmp);
  for (int r = 0; r < MIN (top, K); r++)
    {
      char idx[16];
      g_snprintf (idx, sizeof idx, "%d", ranked[r].index);
      g_print ("%s\t%d\t%s\t%.6f\n", file, ranked[r].index,
               names ? names[ranked[r].index] : idx, ranked[r].prob);
    }
}

gboolean
cli_parse_options (const char *param, const char *summary, GOptionEntry *entries, int *argc,
                   char ***argv, GError **error)
{
  g_autoptr(GOptionContext) ctx = g_option_context_new (param);
  g_option_context_set_summary (ctx, _(summary));
  g_option_context_add_main_entries (ctx, entries, GETTEXT_PACKAGE);
  return g_option_context_parse (ctx, argc, argv, error);
}

static gint
compare_paths (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

GPtrArray *
cli_expand_images (char **args, int n, GError **error)
{
  g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func (g_free);
  for (int i = 0; i < n; i++)
    {
      if (!g_file_test (args[i], G_FILE_TEST_IS_DIR))
        {
          g_ptr_array_add (out, g_strdup (args[i]));
          continue;
        }
      g_autoptr(GDir) d = g_dir_open (args[i], 0, error);
      if (d == NULL)
        return NULL;
      g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
      for (const char *name; (name = g_dir_read_name (d)) != NULL;)
        {
          g_autofree char *path = g_build_filename (args[i], name, NULL);
          if (vl_image_has_extension (name, FALSE) && g_file_test (path, G_FILE_TEST_IS_REGULAR))
            g_ptr_array_add (names, g_steal_pointer (&path));
        }
      if (names->len == 0)
        {
          g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_NOENT, _("%s: a folder without images"),
                       args[i]);
          return NULL;
        }
      g_ptr_array_sort (names, compare_paths);
      for (guint k = 0; k < names->len; k++)
        g_ptr_array_add (out, g_strdup (g_ptr_array_index (names, k)));
    }
  g_ptr_array_add (out, NULL);
  return g_steal_pointer (&out);
}

int
cli_load_images (char **paths, int n_paths, int *next, const VlPreprocess *pp, int batch,
                 float *pixels, const char **names, int *failures)
{
  const gsize per_image = (gsize) pp->channels * pp->size * pp->size;
  int n = 0;
  for (; *next < n_paths && n < batch; (*next)++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(VlImage) img = vl_image_load (paths[*next], 0, &error);
      if (img == NULL)
        {
          g_printerr ("vitlab-cli: %s\n", error->message);
          (*failures)++;
          continue;
        }
      vl_preprocess_eval (img, pp, pixels + n * per_image);   /* PIL-exact conversion there */
      names[n++] = paths[*next];
    }
  return n;
}

/* One image's line(s) from its outputs (K). */
static void
print_prediction (const char *file, const float *z, int K, const VlRunTask *task,
                  const char *const *names, int top)
{
  if (task->kind == VL_TASK_REGRESS)
    {
      VlTaskSpec t = vl_run_task_spec (task);
      g_autofree float *v = g_new (float, K);
      vl_task_unstandardize (&t, z, v);
      g_print ("%s", file);
      for (int j = 0; j < K; j++)
        g_print ("\t%s=%.6g", task->value_names[j], v[j]);
      g_print ("\n");
      return;
    }
  cli_print_top_classes (file, z, K, names, top);
}

gboolean
cli_predict_prepare (const char *run, const char *out_dir, int *img_size, int *rc)
{
  GError *error = NULL;
  VlTrainConfig cfg;
  if (!vl_train_config_load (&cfg, run, &error))
    {
      *rc = cli_fail (error);
      return FALSE;
    }
  *img_size = cfg.img_size;
  vl_train_config_clear (&cfg);
  if (g_mkdir_with_parents (out_dir, 0755) != 0)
    {
      g_printerr ("vitlab-cli: %s: cannot create the folder: %s\n", out_dir, g_strerror (errno));
      *rc = EXIT_FAILURE;
      return FALSE;
    }
  return TRUE;
}

/* A segmentation run on images: masks and overlays into out_dir. */
static int
predict_segment (const char *run, VlModel *m, char **files, int n_files, const char *out_dir,
                 const char *const *names)
{
  GError *error = NULL;
  int img_size, rc;
  if (!cli_predict_prepare (run, out_dir, &img_size, &rc))
    return rc;
  g_autofree char *hpath = g_build_filename (run, "seg_head.safetensors", NULL);
  const VlGeometry *g = vl_model_geometry (m);
  g_autoptr(VlSegHead) h = vl_seg_head_load (hpath, g->width, &error);
  if (h == NULL)
    return cli_fail (error);
  VlPreprocess pp;
  vl_preprocess_from_model (m, &pp);
  if (img_size > 0)
    pp.size = img_size;
  const int S = pp.size, G = S / g->patch, K = vl_seg_head_n_classes (h);
  uint8_t palette[256 * 3];
  vl_seg_palette (palette);
  g_autofree float *px = g_new (float, (gsize) pp.channels * S * S);
  int failures = 0;
  for (int i = 0; i < n_files; i++)
    {
      g_autoptr(VlImage) img = vl_image_load (files[i], 3, &error);
      if (img == NULL)
        {
          g_printerr ("vitlab-cli: %s\n", error->message);
          g_clear_error (&error);
          failures++;
          continue;
        }
      vl_preprocess_squash (img, &pp, px);
      if (!vl_model_forward (m, px, 1, S, S, VL_FORWARD_INFER, &error))
        return cli_fail (error);
      const float *z = vl_seg_head_forward (h, vl_model_tokens_final (m), 1,
                                            g->n_prefix + G * G, g->n_prefix, G, G, S, S);
      const int W = img->width, H = img->height;
      g_autofree float *up = g_try_new (float, (gsize) W * H * K);
      if (up == NULL)
        {
          g_printerr (_("vitlab-cli: %s: %dx%d is too large to segment here\n"), files[i], W, H);
          failures++;
          continue;
        }
      vl_bilinear_forward (up, z, 1, S, S, K, H, W);
      g_autofree uint8_t *mask = g_new (uint8_t, (gsize) W * H);
      vl_seg_argmax (mask, up, (int64_t) W * H, K);

      g_autofree char *base = g_path_get_basename (files[i]);
      char *dot = strrchr (base, '.');
      if (dot && dot != base)
        *dot = '\0';
      g_autofree char *mname = g_strconcat (base, ".png", NULL);
      g_autofree char *oname = g_strconcat (base, "-overlay.png", NULL);
      g_autofree char *mpath = g_build_filename (out_dir, mname, NULL);
      g_autofree char *opath = g_build_filename (out_dir, oname, NULL);
      if (!vl_mask_save (mpath, mask, W, H, palette, MAX (K, 2), &error))
        return cli_fail (error);
      /* the overlay: half the class colour over every non-background pixel */
      for (gsize p = 0; p < (gsize) W * H; p++)
        if (mask[p] != 0)
          for (int c = 0; c < 3; c++)
            img->pixels[p * 3 + c] = (uint8_t) ((img->pixels[p * 3 + c] +
                                                 palette[3 * mask[p] + c] + 1) / 2);
      if (!vl_image_save_png (opath, img, &error))
        return cli_fail (error);
      g_autofree int64_t *count = g_new0 (int64_t, K);
      for (gsize p = 0; p < (gsize) W * H; p++)
        count[mask[p]]++;
      g_print ("%s\t%s", files[i], mpath);
      for (int k = 0; k < K; k++)
        {
          char idx[16];
          g_snprintf (idx, sizeof idx, "%d", k);
          g_print ("\t%s=%.4f", names ? names[k] : idx, (double) count[k] / ((double) W * H));
        }
      g_print ("\n");
    }
  return failures ? EXIT_FAILURE : EXIT_SUCCESS;
}

int
cmd_predict (int argc, char **argv)
{
  GError *error = NULL;
  int top = 1;
  double score = 0.3;
  g_autofree char *out_dir = NULL;
  GOptionEntry entries[] = {
    { "top", 0, 0, G_OPTION_ARG_INT, &top, N_("classification: print the top K classes (1)"), "K" },
    { "out", 0, 0, G_OPTION_ARG_FILENAME, &out_dir,
      N_("segmentation: the folder for NAME.png and NAME-overlay.png; detection: for NAME.json "
         "and NAME-boxes.png"), "DIR" },
    { "score", 0, 0, G_OPTION_ARG_DOUBLE, &score,
      N_("detection: the lowest score of a box kept (0.3)"), "S" },
    { NULL },
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new ("RUNDIR IMAGE|FOLDER...");
  g_option_context_set_summary (ctx, _("Runs a trained model (a run folder) on images (a folder "
                                       "stands for the images in it): the top classes, the "
                                       "predicted values of a regression run, a segmentation "
                                       "run's masks or a detection run's boxes."));
  g_option_context_add_main_entries (ctx, entries, GETTEXT_PACKAGE);
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      g_printerr (_("vitlab-cli: predict: %s\n"), error->message);
      g_error_free (error);
      return 2;
    }
  if (argc < 3 || top < 1)
    {
      g_printerr (_("vitlab-cli: predict needs a RUNDIR and at least one IMAGE (--top K >= 1)\n"));
      return 2;
    }
  const char *run = argv[1];
  /* folders stand for the images in them */
  g_autoptr(GPtrArray) inputs = cli_expand_images (argv + 2, argc - 2, &error);
  if (inputs == NULL)
    return cli_fail (error);
  g_autofree char **args = g_new (char *, inputs->len + 2);   /* argv[0], argv[1], the images */
  args[0] = argv[0];
  args[1] = argv[1];
  for (guint k = 0; k < inputs->len; k++)
    args[2 + k] = g_ptr_array_index (inputs, k);
  argv = args;
  argc = (int) inputs->len + 1;   /* inputs ends with its NULL */
  VlRunTask task = { 0 };
  if (!vl_run_read_task (run, &task, &error))
    return cli_fail (error);
  g_auto(GStrv) names = NULL;
  g_autoptr(VlModel) m = vl_run_load_model (run, &names, &error);
  if (m == NULL)
    {
      vl_run_task_clear (&task);
      return cli_fail (error);
    }
  if (task.kind == VL_TASK_SEGMENT || task.kind == VL_TASK_DETECT)
    {
      if (out_dir == NULL)
        {
          g_printerr (task.kind == VL_TASK_DETECT
                      ? _("vitlab-cli: predict: a detection run needs --out DIR for its boxes\n")
                      : _("vitlab-cli: predict: a segmentation run needs --out DIR for its "
                          "masks\n"));
          return 2;
        }
      g_auto(GStrv) classes = NULL;
      {
        /* the class names of a segmentation run are in run.json */
        g_autofree char *rj = g_build_filename (run, "run.json", NULL);
        g_autoptr(JsonParser) p = json_parser_new ();
        if (json_parser_load_from_file (p, rj, NULL) &&
            JSON_NODE_HOLDS_OBJECT (json_parser_get_root (p)))
          {
            JsonObject *o = json_node_get_object (json_parser_get_root (p));
            JsonObject *d = json_object_get_object_member (o, "data");
            JsonArray *a = d && json_object_has_member (d, "classes")
                           ? json_object_get_array_member (d, "classes") : NULL;
            if (a)
              {
                classes = g_new0 (char *, json_array_get_length (a) + 1);
                for (guint k = 0; k < json_array_get_length (a); k++)
                  classes[k] = g_strdup (json_array_get_string_element (a, k));
              }
          }
      }
      gboolean det = task.kind == VL_TASK_DETECT;
      vl_run_task_clear (&task);
      if (det)
        return cli_predict_detect (run, m, argv + 2, argc - 2, out_dir,
                                   (const char *const *) classes, score);
      return predict_segment (run, m, argv + 2, argc - 2, out_dir,
                              (const char *const *) classes);
    }
  const int K = vl_model_num_classes (m);
  if (K == 0 || (task.kind == VL_TASK_REGRESS && K != task.n_values))
    {
      g_printerr (_("vitlab-cli: %s: the model's head has %d outputs, the run %d targets\n"), run,
                  K, task.n_values);
      vl_run_task_clear (&task);
      return EXIT_FAILURE;
    }
  VlPreprocess pp;
  vl_preprocess_from_model (m, &pp);
  const int batch = 8;
  const gsize per_image = (gsize) pp.channels * pp.size * pp.size;
  g_autofree float *pixels = g_new (float, batch * per_image);
  const char *files[8];
  int failures = 0;
  for (int i = 2; i < argc;)
    {
      int n = cli_load_images (argv, argc, &i, &pp, batch, pixels, files, &failures);
      if (n == 0)
        continue;
      if (!vl_model_forward (m, pixels, n, pp.size, pp.size, VL_FORWARD_INFER, &error))
        {
          vl_run_task_clear (&task);
          return cli_fail (error);
        }
      for (int b = 0; b < n; b++)
        print_prediction (files[b], vl_model_logits (m) + (gsize) b * K, K, &task,
                          (const char *const *) names, top);
    }
  vl_run_task_clear (&task);
  return failures ? EXIT_FAILURE : EXIT_SUCCESS;
}
