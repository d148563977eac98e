/* vl-i18n.h: gettext for both programs (the "vitlab" domain; po/ in the source tree). */
#pragma once

#include <glib/gi18n.h>

/* Call at the start of main: the locale from the environment, and the message catalogues from
 * the build tree's po/ when the program runs from the build folder (make run), else from the
 * installed localedir (the configured one, or the same layout around the executable for a
 * DESTDIR install or a moved prefix). */
void vl_i18n_init (void);
