/* cli-predict.c: vitlab-cli predict RUN IMAGE… — what a trained run says about new images.
 *
 * Classification runs print each image's top classes with their probabilities; regression runs
 * print each target's predicted value in its own units (the run's standardisation undone). One
 * line per image (per class with --top K), tab-separated, for other programs to read. */
#include "cli-commands.h"
#include "vl-trainer.h"

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

int
cmd_predict (int argc, char **argv)
{
  GError *error = NULL;
  int top = 1;
  GOptionEntry entries[] = {
    { "top", 0, 0, G_OPTION_ARG_INT, &top, "classification: print the top K classes (1)", "K" },
    { NULL },
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new ("RUNDIR IMAGE...");
  g_option_context_set_summary (ctx, "Runs a trained model (a run folder) on images: the top "
                                "classes, or the predicted values of a regression run.");
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      g_printerr ("vitlab-cli: predict: %s\n", error->message);
      g_error_free (error);
      return 2;
    }
  if (argc < 3 || top < 1)
    {
      g_printerr ("vitlab-cli: predict needs a RUNDIR and at least one IMAGE (--top K >= 1)\n");
      return 2;
    }
  const char *run = argv[1];
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
  const int K = vl_model_num_classes (m);
  if (K == 0 || (task.kind == VL_TASK_REGRESS && K != task.n_values))
    {
      g_printerr ("vitlab-cli: %s: the model's head has %d outputs, the run %d targets\n", run,
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
      int n = 0;
      for (; i < argc && n < batch; i++)
        {
          g_autoptr(VlImage) img = vl_image_load (argv[i], 0, &error);
          if (img == NULL)
            {
              g_printerr ("vitlab-cli: %s\n", error->message);
              g_clear_error (&error);
              failures++;
              continue;
            }
          vl_preprocess_eval (img, &pp, pixels + n * per_image);
          files[n++] = argv[i];
        }
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
