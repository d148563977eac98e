/* vl-onnx.h: a loaded model as an ONNX file that ONNX Runtime runs.
 *
 *   VlTaskSpec t = { .kind = VL_TASK_CLASSIFY };
 *   VlOnnxOptions o = { .task = &t };
 *   vl_model_export_onnx (m, &o, "model.onnx", &error);
 *
 * The file is a ModelProto (IR version 8, default-domain opset 17) written by vitlab's own
 * protobuf encoder (vl-onnx.c); no Python and no ONNX library take part. The graph:
 *
 *   input    pixel_values  float32 (N, C, S, S): normalised pixels at the model's
 *                          preprocessing size S (pretrained_cfg input_size; the position
 *                          embedding resampled there as the engine does when it is not the
 *                          native grid * patch; the native size when it is not a multiple of the
 *                          patch); N is dynamic ("batch")
 *   outputs  logits        (N, K)  classification (DeiT: the mean of the two heads)
 *            values        (N, T)  regression, in the targets' units (head * std + mean)
 *            seg_logits    (N, K, S, S)  segmentation: the seg head (vl-seg-head.h) on the
 *                          final-norm patch-token grid (prefix rows dropped; Conv 1x1, or
 *                          ConvTranspose / LayerNormalization over the channels / GELU for
 *                          upconv), then Resize linear (half_pixel = align_corners false) to S
 *            cls_logits    (N, A, K)  detection: torchvision's FCOSHead outputs on the
 *            bbox_regression (N, A, 4)  final-norm patch grid (A = grid^2 locations, row-major;
 *            bbox_ctrness  (N, A, 1)  3x3 Conv with padding 1 each, ReLU on the regression)
 *            features      (N, W)  the pooled features (vl_model_features), always
 *            embedding     (N, E)  OpenCLIP's image embedding, when the model has a projection
 *
 * Ops: Conv (kernel = stride = patch) for the patch embedding — a CNN stem (vl-stem.h) instead
 * as its layers: Conv (explicit pads: timm's "same" as the asymmetric pads of the input side;
 * group), BatchNormalization (running statistics), GroupNorm as Reshape + ReduceMean arithmetic,
 * Relu, SiLU as x * Sigmoid (x), MaxPool, squeeze-and-excitation (GlobalAveragePool, 1x1 Conv,
 * Sigmoid, Mul), residual Add; StdConv weights standardized at export ("NAME.standardized") —,
 * LayerNormalization, MatMul + Add
 * for every Linear (weights stored transposed, (in, out)), attention as Reshape / Transpose /
 * MatMul / Mul / Softmax, exact GELU as 0.5 x (1 + Erf (x / sqrt 2)), QuickGELU as
 * x * Sigmoid (1.702 x), token / avg / max pooling over the patch tokens (Gather, Slice +
 * ReduceMean / ReduceMax), the prefix tokens broadcast to the batch with Shape + Concat + Expand.
 * Every structure variant the engine loads is written: CNN stems, class / distillation /
 * register tokens, no_embed_class, pre_norm, layer scale, fc_norm, QuickGELU, OpenCLIP's
 * projection, the linear, DeiT's two and the MLP head. Weights are float32 initializers (raw_data) named after the
 * model's tensors (".T" appended to a transposed one).
 *
 * metadata_props: "vitlab.task" (classify / regress / segment / detect / features), "vitlab.family",
 * "input_size" (S), "image_size" (the preprocessing's size), "crop_pct", "crop_mode" (center;
 * segmentation and detection: "squash", the whole image resized to S, crop_pct 1),
 * "interpolation", "mean" and "std" (JSON arrays, one value per channel), "in_chans", "pooling",
 * "class_names" or "target_names" (JSON arrays), and for regression "target_mean" / "target_std"
 * (already applied in the graph). */
#pragma once

#include <gio/gio.h>
#include <glib.h>
#include <stdint.h>

#include "vl-model.h"
#include "vl-det-head.h"
#include "vl-seg-head.h"
#include "vl-task.h"
#include "vl-trainer.h"

G_BEGIN_DECLS

typedef struct {
  /* classify (NULL: classify with the model's head), or regress with n_outputs targets and
   * their mean / std (the head predicts standardised values) */
  const VlTaskSpec  *task;
  /* the class or target names (NULL: the model's class names, or none) */
  const char *const *names;
  /* a segmentation head on the final-norm tokens (task kind segment): seg_logits */
  VlSegHead         *seg_head;
  /* an FCOS head on the final-norm tokens (task kind detect): its three outputs */
  VlDetHead         *det_head;
  /* the input side S (0: the model's preprocessing size, else its native one); a multiple of
   * the patch, the position embedding resampled there as the engine's forward does */
  int                size;
} VlOnnxOptions;

/* Writes the model as ONNX to path (atomically). Errors name the path and the problem (a
 * regression head whose width is not the task's number of targets, a failed write). */
gboolean vl_model_export_onnx (VlModel *m, const VlOnnxOptions *options, const char *path,
                               GError **error);

/* A run folder's export options: what the ONNX file of a run needs beyond its model, read
 * from the folder. options points into the fields after it; clear with vl_onnx_run_clear. */
typedef struct {
  VlOnnxOptions options;
  VlRunTask     task;        /* run.json's task */
  VlTaskSpec    spec;        /* viewing task */
  char        **names;       /* the class or target names (segmentation: background first) */
  VlSegHead    *seg_head;    /* a segmentation run's head, or NULL */
  VlDetHead    *det_head;    /* a detection run's head, or NULL */
} VlOnnxRun;

/* Fills r for the run in run_dir, whose model has tokens of width `width`: its task (a
 * regression's standardisation and target names), a segmentation or detection run's head, its
 * input side (run.json's img_size) and its classes (run.json's data), else class_names (the model's, may
 * be NULL). Errors name the file and the problem; r is cleared on failure. */
gboolean vl_onnx_run_init  (VlOnnxRun *r, const char *run_dir, int width,
                            const char *const *class_names, GError **error);
void     vl_onnx_run_clear (VlOnnxRun *r);

/* ---- the protobuf wire format (exposed for tests) ----
 * Appends to a GByteArray: a field's tag and a varint, a 32-bit float, or length-delimited
 * bytes (strings, packed arrays, nested messages). */
void vl_pb_varint  (GByteArray *b, uint64_t v);
void vl_pb_int     (GByteArray *b, int field, int64_t v);
void vl_pb_float   (GByteArray *b, int field, float v);
void vl_pb_bytes   (GByteArray *b, int field, const void *data, gsize len);
void vl_pb_string  (GByteArray *b, int field, const char *s);
/* Appends sub as a nested message and frees it. */
void vl_pb_message (GByteArray *b, int field, GByteArray *sub);

G_END_DECLS
