#include "cli-commands.h"
#include <stdio.h>

int
cmd_train (int argc, char **argv)
{
  fprintf (stderr, "vitlab-cli: train is not built yet\n");
  return 1;
}

int
cmd_eval (int argc, char **argv)
{
  fprintf (stderr, "vitlab-cli: eval is not built yet\n");
  return 1;
}
