/* vl-error.h: the engine's error domain (VL_ERROR) and codes. Every message names the file, the
 * tensor or the option and the problem. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define VL_ERROR (vl_error_quark ())
GQuark vl_error_quark (void);

typedef enum {
  VL_ERROR_IO,        /* cannot open/read/write a file */
  VL_ERROR_FORMAT,    /* file is not what it claims (corrupt, truncated, lying header) */
  VL_ERROR_MISMATCH,  /* tensors/config disagree with each other or with the model */
  VL_ERROR_MISSING,   /* a required tensor or key is absent */
  VL_ERROR_INVALID,   /* bad argument from the user (option value, tensor name) */
  VL_ERROR_NUMERIC,   /* NaN/Inf where a finite value is required */
} VlErrorCode;

G_END_DECLS
