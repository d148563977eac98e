/* cli-commands.h: vitlab-cli subcommands implemented outside vitlab-cli.c. Each takes the
 * subcommand's argc/argv (argv[0] = "vitlab-cli NAME") and returns the exit status: 0, 1 for a
 * failure (one line on stderr naming the file and the problem), 2 for a malformed command line. */
#pragma once

#include <glib.h>

int cmd_train (int argc, char **argv);   /* app/cli-train.c */
int cmd_eval  (int argc, char **argv);   /* app/cli-train.c */
int cmd_predict (int argc, char **argv); /* app/cli-predict.c */
/* FILE<TAB>INDEX<TAB>NAME<TAB>PROB for the top `top` classes of one image's logits (K). */
void cli_print_top_classes (const char *file, const float *logits, int K,
                            const char *const *names, int top);
int cmd_features (int argc, char **argv);   /* app/cli-features.c */
int cmd_probe    (int argc, char **argv);   /* app/cli-features.c */
int cmd_export_recipe (int argc, char **argv);   /* app/cli-recipe.c */

/* Prints "vitlab-cli: <message>" on stderr, frees the error; returns 1 (EXIT_FAILURE). */
int cli_fail (GError *error);
