/* placeholder */
#include <gtk/gtk.h>
