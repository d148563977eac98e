#include "vl-safetensors.h"

G_DEFINE_QUARK (vl-error-quark, vl_error)
