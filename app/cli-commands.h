/* cli-commands.h: vitlab-cli subcommands implemented outside vitlab-cli.c. Each takes the
 * subcommand's argc/argv (argv[0] = "vitlab-cli NAME") and returns the exit status: 0, 1 for a
 * failure (one line on stderr naming the file and the problem), 2 for a malformed command line. */
#pragma once

#include <glib.h>

int cmd_train (int argc, char **argv);   /* app/cli-train.c */
int cmd_eval  (int argc, char **argv);   /* app/cli-train.c */
int cmd_predict (int argc, char **argv); /* app/cli-predict.c */
int cmd_features (int argc, char **argv);   /* app/cli-features.c */
int cmd_probe    (int argc, char **argv);   /* app/cli-features.c */

/* Prints "vitlab-cli: <message>" on stderr, frees the error; returns 1 (EXIT_FAILURE). */
int cli_fail (GError *error);
