/* vl-head-param.h: the parameters of a task's head that lives outside the model (the seg heads
 * of vl-seg-head.h, the FCOS head of vl-det-head.h), the one interface the trainer and the run
 * folders see of such a head: each exposes its tensors as an array of VlHeadParam
 * (vl_seg_head_params, vl_det_head_params) — data, gradient, AdamW moments and step count under
 * the name it is saved by — and everything else is done on that array here: the AdamW step,
 * reading with the shapes checked, and the head's file in a checkpoint group with its moments
 * (vl_head_params_writer / vl_head_params_restore). */
#pragma once

#include <glib.h>
#include <stdint.h>

#include "vl-model.h"
#include "vl-safetensors.h"

G_BEGIN_DECLS

typedef struct {
  const char *name;      /* static */
  int         ndim;
  int64_t     shape[4];
  int64_t     numel;
  float      *data;      /* zeros after init */
  float      *grad;      /* NULL before the first zero_grad */
  float      *m, *v;     /* AdamW moments, NULL before the first step */
  int         step;
} VlHeadParam;

void     vl_head_param_init      (VlHeadParam *p, const char *name, int ndim,
                                  const int64_t *shape);
void     vl_head_param_clear     (VlHeadParam *p);
/* The gradient, allocated when missing, zeroed. */
float   *vl_head_param_zero_grad (VlHeadParam *p);
/* One AdamW step (no decay on 1-D tensors, timm's rule); nothing before the first gradient. */
void     vl_head_param_adamw     (VlHeadParam *p, const VlAdamW *opt, float lr_scale);
/* Restores the moments (NULL: zeros) and the step count. */
void     vl_head_param_set_optim_state (VlHeadParam *p, const float *exp_avg,
                                        const float *exp_avg_sq, int step);
/* Reads p's tensor from st: an error names the file, the tensor and both shapes when they
 * differ, or says the tensor is missing (`what` names the head needing it). */
gboolean vl_head_param_read      (VlHeadParam *p, VlSafetensors *st, const char *what,
                                  GError **error);

/* One AdamW step over n parameters, lr scaled by lr_scale. */
void     vl_head_params_adamw    (VlHeadParam *p, int n, const VlAdamW *opt, float lr_scale);
/* Adds the n tensors under their names to w (data referenced: keep the head alive). */
void     vl_head_params_add      (VlHeadParam *p, int n, VlSafetensorsWriter *w);
/* A head's file in a run's checkpoint group: the tensors under their names (data referenced:
 * keep the head alive until the write), the AdamW moments as exp_avg.NAME / exp_avg_sq.NAME, the
 * step counts as the "steps" metadata (a JSON object), and the metadata "format" and
 * kind_key = kind (e.g. "seg_head": "upconv"). */
VlSafetensorsWriter *vl_head_params_writer (VlHeadParam *p, int n, const char *format,
                                            const char *kind_key, const char *kind);
/* On resume: the tensors, moments and step counts of such a file (st) into p; errors name the
 * file, the tensor and the shapes. */
gboolean vl_head_params_restore  (VlHeadParam *p, int n, VlSafetensors *st, const char *what,
                                  GError **error);

/* The file that holds a head outside the model: source itself when it is a file, else
 * source/model.safetensors, else source/head_file (a run folder's seg_head.safetensors or
 * det_head.safetensors); the first that opens and has tensor `tensor`, or NULL. */
VlSafetensors *vl_head_source_open (const char *source, const char *head_file,
                                    const char *tensor);

G_END_DECLS
