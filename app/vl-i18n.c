/* vl-i18n.c: where the message catalogues are (see vl-i18n.h). */
#include "vl-i18n.h"

#include <locale.h>
#include <string.h>

/* The folder holding LANG/LC_MESSAGES/vitlab.mo for this executable. */
static char *
locale_dir (void)
{
  g_autofree char *exe = g_file_read_link ("/proc/self/exe", NULL);
  if (exe == NULL)
    return g_strdup (VITLAB_LOCALEDIR);
  const char *build = VITLAB_BUILD_ROOT G_DIR_SEPARATOR_S;
  if (g_str_has_prefix (exe, build))
    return g_build_filename (VITLAB_BUILD_ROOT, "po", NULL);
  /* prefix/bin/vitlab -> prefix/share/locale */
  g_autofree char *exe_dir = g_path_get_dirname (exe);
  const char *bindir = VITLAB_BINDIR_REL;
  gsize n = strlen (exe_dir), b = strlen (bindir);
  if (strcmp (exe_dir, VITLAB_INSTALLED_BINDIR) != 0 && !g_path_is_absolute (bindir) &&
      n > b + 1 && strcmp (exe_dir + n - b, bindir) == 0 && exe_dir[n - b - 1] == G_DIR_SEPARATOR)
    {
      g_autofree char *prefix = g_strndup (exe_dir, n - b - 1);
      char *dir = g_build_filename (prefix, VITLAB_LOCALEDIR_REL, NULL);
      if (g_file_test (dir, G_FILE_TEST_IS_DIR))
        return dir;
      g_free (dir);
    }
  return g_strdup (VITLAB_LOCALEDIR);
}

void
vl_i18n_init (void)
{
  setlocale (LC_ALL, "");
  g_autofree char *dir = locale_dir ();
  bindtextdomain (GETTEXT_PACKAGE, dir);
  bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
  textdomain (GETTEXT_PACKAGE);
}
