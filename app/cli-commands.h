/* cli-commands.h: vitlab-cli subcommands implemented outside vitlab-cli.c. Each takes the
 * subcommand's argc/argv (argv[0] = "vitlab-cli NAME") and returns the exit status: 0, 1 for a
 * failure (one line on stderr naming the file and the problem), 2 for a malformed command line. */
#pragma once

#include <glib.h>

#include "vl-image.h"
#include "vl-model.h"
#include "vl-safetensors.h"

int cmd_train (int argc, char **argv);   /* app/cli-train.c */
int cmd_eval  (int argc, char **argv);   /* app/cli-train.c */
int cmd_predict (int argc, char **argv); /* app/cli-predict.c */
/* app/cli-detect.c: predict on a detection run (per image NAME.json and NAME-boxes.png in
 * out_dir, detections of at least `score`); forward's FCOS outputs (cls_logits (B, HW, K),
 * bbox_regression (B, HW, 4), bbox_ctrness (B, HW, 1)) into w when the checkpoint (or the run
 * folder's det_head.safetensors) has an FCOS head, their data kept alive in keep. */
int      cli_predict_detect (const char *run, VlModel *m, char **files, int n_files,
                             const char *out_dir, const char *const *names, double score);
gboolean cli_forward_detect (const char *ckpt, VlModel *m, int B, int H, int W,
                             VlSafetensorsWriter *w, GPtrArray *keep, GError **error);
/* Parses a subcommand's options (param and summary for --help). */
gboolean cli_parse_options (const char *param, const char *summary, GOptionEntry *entries,
                            int *argc, char ***argv, GError **error);
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

/* Prints "vitlab-cli: <message>" on stderr, frees the error; returns 1 (EXIT_FAILURE). */
int cli_fail (GError *error);
