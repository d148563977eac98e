/* cli-commands.h: vitlab-cli subcommands implemented outside vitlab-cli.c. Each takes the
 * subcommand's argc/argv (argv[0] = "vitlab-cli NAME") and returns the exit status: 0, 1 for a
 * failure (one line on stderr naming the file and the problem), 2 for a malformed command line. */
#pragma once

#include <glib.h>

#include "vl-image.h"

int cmd_train (int argc, char **argv);   /* app/cli-train.c */
int cmd_eval  (int argc, char **argv);   /* app/cli-train.c */
int cmd_predict (int argc, char **argv); /* app/cli-predict.c */
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
