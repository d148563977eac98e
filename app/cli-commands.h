/* cli-commands.h: vitlab-cli subcommands implemented outside vitlab-cli.c. Each takes the
 * subcommand's argc/argv (argv[0] = "vitlab-cli NAME") and returns the exit status: 0, 1 for a
 * failure (one line on stderr naming the file and the problem), 2 for a malformed command line. */
#pragma once

#include <glib.h>

#include "vl-image.h"
#include "vl-model.h"
#include "vl-safetensors.h"
#include "vl-seg-head.h"
#include "vl-task.h"

int cmd_train (int argc, char **argv);   /* app/cli-train.c */
int cmd_eval  (int argc, char **argv);   /* app/cli-train.c */
int cmd_predict (int argc, char **argv); /* app/cli-predict.c */
/* app/cli-detect.c: predict on a detection run (per image NAME.json and NAME-boxes.png in
 * out_dir, detections of at least `score`); forward's FCOS outputs (cls_logits (B, HW, K),
 * bbox_regression (B, HW, 4), bbox_ctrness (B, HW, 1)) into w when the checkpoint (or the run
 * folder's det_head.safetensors) has an FCOS head, their data kept alive in keep. */
int      cli_predict_detect (const char *run, VlModel *m, char **files, int n_files,
                             const char *out_dir, const char *const *names, double score);
/* app/cli-predict.c: a segmentation or detection run's img_size, and out_dir created; FALSE
 * with *rc the exit status (the error printed). */
gboolean cli_predict_prepare (const char *run, const char *out_dir, int *img_size, int *rc);
gboolean cli_forward_detect (const char *ckpt, VlModel *m, int B, int H, int W,
                             VlSafetensorsWriter *w, GPtrArray *keep, GError **error);
/* Parses a subcommand's options (param and summary for --help). */
gboolean cli_parse_options (const char *param, const char *summary, GOptionEntry *entries,
                            int *argc, char ***argv, GError **error);
/* The images a command runs on: the files as given, each folder replaced by the images in it
 * (by their names' extensions, in name order, not its subfolders); NULL-terminated. A folder
 * without any is an error naming it. */
GPtrArray *cli_expand_images (char **args, int n, GError **error);
/* Decodes and preprocesses (the eval transform of pp) the next images of paths[*next ..
 * n_paths), at most batch of them, into pixels, their paths into names; an image that cannot be
 * decoded is reported on stderr and counted in *failures. Returns how many were loaded. */
int  cli_load_images (char **paths, int n_paths, int *next, const VlPreprocess *pp, int batch,
                      float *pixels, const char **names, int *failures);
/* FILE<TAB>INDEX<TAB>NAME<TAB>PROB for the top `top` classes of one image's logits (K). */
void cli_print_top_classes (const char *file, const float *logits, int K,
                            const char *const *names, int top);
int cmd_features (int argc, char **argv);   /* app/cli-features.c */
int cmd_probe    (int argc, char **argv);   /* app/cli-features.c */
int cmd_export_recipe (int argc, char **argv);   /* app/cli-recipe.c */

/* app/cli-bench-dense.c: `bench --task segment|detect`, one step of a seg or FCOS head of K
 * classes (background included) on the model's token grid at S x S, batch B, synthetic masks or
 * boxes, uncached. _new removes the model's head and unlocks the dense head and the model's last
 * unlock - 1 groups (unlock < 1: nothing trains). _step: the forward of both (*t_forward when
 * it ends), when train the loss and both backwards (*t_backward) and AdamW on both. */
typedef struct _CliDenseBench CliDenseBench;
CliDenseBench *cli_dense_bench_new  (VlModel *m, VlTaskKind task, VlSegHeadKind kind, int K,
                                     int unlock, int S, int B, GError **error);
gboolean    cli_dense_bench_step     (CliDenseBench *d, const float *x, gboolean train,
                                      const VlAdamW *opt, gint64 *t_forward, gint64 *t_backward,
                                      double *loss, GError **error);
/* --cached: the frozen model's tokens of x computed once here; every later step runs the head
 * alone on them (the trainer's --cache-features). FALSE when the model trains. */
gboolean    cli_dense_bench_cache    (CliDenseBench *d, const float *x, GError **error);
gboolean    cli_dense_bench_cached   (CliDenseBench *d);
const char *cli_dense_bench_describe (CliDenseBench *d);   /* "linear", "upconv", "fcos" */
void        cli_dense_bench_free     (CliDenseBench *d);

/* Prints "vitlab-cli: <message>" on stderr, frees the error; returns 1 (EXIT_FAILURE). */
int cli_fail (GError *error);
