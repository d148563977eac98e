/* vitlab-cli export-recipe RUN --out DIR [--with-order]: a run's recipe as a PyTorch script
 * (vl_recipe_export, vl-recipe.h). */
#include "cli-commands.h"
#include "vl-i18n.h"
#include "vl-recipe.h"

#include <stdlib.h>

int
cmd_export_recipe (int argc, char **argv)
{
  GError *error = NULL;
  g_autofree char *out = NULL;
  gboolean with_order = FALSE;
  GOptionEntry entries[] = {
    { "out", 0, 0, G_OPTION_ARG_FILENAME, &out, N_("the folder to write"), "DIR" },
    { "with-order", 0, 0, G_OPTION_ARG_NONE, &with_order,
      N_("also write order.json, vitlab's data order per epoch (train.py --vitlab-order)"), NULL },
    { NULL },
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new ("RUNDIR");
  g_option_context_add_main_entries (ctx, entries, GETTEXT_PACKAGE);
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      g_printerr (_("vitlab-cli: %s (see 'vitlab-cli --help')\n"), error->message);
      g_error_free (error);
      return 2;
    }
  if (argc != 2 || out == NULL)
    {
      g_printerr (_("vitlab-cli: export-recipe needs a RUNDIR and --out DIR "
                    "(see 'vitlab-cli --help')\n"));
      return 2;
    }
  g_autofree char *note = NULL;
  if (!vl_recipe_export (argv[1], out, with_order, &note, &error))
    return cli_fail (error);
  g_print ("exported the recipe of %s to %s: train.py, run.json, backbone/, README.md%s\n",
           argv[1], out, with_order ? ", order.json" : "");
  if (note)
    g_printerr (_("vitlab-cli: note: %s\n"), note);
  return EXIT_SUCCESS;
}
