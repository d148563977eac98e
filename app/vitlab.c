/* vitlab: the desktop app. See ui/vl-application.h for the command line. */
#include "vl-application.h"
#include "vl-i18n.h"
#include "vl-pool.h"

int
main (int argc, char **argv)
{
  /* first, before any thread exists: it may re-execute us with OpenBLAS's right kernels */
  vl_blas_select_kernel (argv);
  vl_i18n_init ();
  g_autoptr(VlApplication) app = vl_application_new ();
  int status = g_application_run (G_APPLICATION (app), argc, argv);
  return status != 0 ? status : vl_application_get_exit_status (app);
}
