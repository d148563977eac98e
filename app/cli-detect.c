/* cli-detect.c: vitlab-cli's detection pieces: predict on a detection run (per image a
 * COCO-style NAME.json of its detections and NAME-boxes.png), and the FCOS head's outputs for
 * forward. */
#include "cli-commands.h"
#include "vl-detect.h"
#include "vl-run.h"
#include "vl-trainer.h"
#include "vl-draw-boxes.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <glib/gstdio.h>

/* The image with its detections drawn over it as the app draws them (vl_draw_detections): lines
 * and labels sized by the image. img: RGB. */
static void
draw_detections (VlImage *img, const VlDetection *d, int n, const char *const *names)
{
  const int W = img->width, H = img->height;
  cairo_surface_t *surf = cairo_image_surface_create (CAIRO_FORMAT_RGB24, W, H);
  uint8_t *data = cairo_image_surface_get_data (surf);
  const int stride = cairo_image_surface_get_stride (surf);
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++)
      {
        const uint8_t *p = img->pixels + ((gsize) y * W + x) * 3;
        ((uint32_t *) (void *) (data + (gsize) y * stride))[x] =
          0xff000000u | (uint32_t) p[0] << 16 | (uint32_t) p[1] << 8 | p[2];
      }
  cairo_surface_mark_dirty (surf);
  cairo_t *cr = cairo_create (surf);
  vl_draw_detections (cr, d, n, 1.0, names, MAX (2, MIN (W, H) / 150), MAX (10, MIN (W, H) / 32.0),
                      W, H);
  cairo_destroy (cr);
  cairo_surface_flush (surf);
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++)
      {
        const uint32_t v = ((const uint32_t *) (const void *) (data + (gsize) y * stride))[x];
        uint8_t *p = img->pixels + ((gsize) y * W + x) * 3;
        p[0] = (uint8_t) (v >> 16), p[1] = (uint8_t) (v >> 8), p[2] = (uint8_t) v;
      }
  cairo_surface_destroy (surf);
}

/* NAME.json: [{"file", "category_id", "category", "bbox": [x, y, w, h], "score"}…] in the
 * image's own pixels (COCO's result format, the file instead of an image id). */
static char *
detections_json (const char *file, const VlDetection *d, int n, const char *const *names, int K)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  json_builder_begin_array (b);
  for (int i = 0; i < n; i++)
    {
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "file");
      json_builder_add_string_value (b, file);
      json_builder_set_member_name (b, "category_id");
      json_builder_add_int_value (b, d[i].label);
      json_builder_set_member_name (b, "category");
      json_builder_add_string_value (b, names && d[i].label < K ? names[d[i].label] : "");
      json_builder_set_member_name (b, "bbox");
      json_builder_begin_array (b);
      json_builder_add_double_value (b, d[i].box[0]);
      json_builder_add_double_value (b, d[i].box[1]);
      json_builder_add_double_value (b, d[i].box[2] - d[i].box[0]);
      json_builder_add_double_value (b, d[i].box[3] - d[i].box[1]);
      json_builder_end_array (b);
      json_builder_set_member_name (b, "score");
      json_builder_add_double_value (b, d[i].score);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  g_autoptr(JsonGenerator) gen = json_generator_new ();
  g_autoptr(JsonNode) root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  json_generator_set_pretty (gen, TRUE);
  return json_generator_to_data (gen, NULL);
}

int
cli_predict_detect (const char *run, VlModel *m, char **files, int n_files, const char *out_dir,
                    const char *const *names, double score)
{
  GError *error = NULL;
  int img_size, rc;
  if (!cli_predict_prepare (run, out_dir, &img_size, &rc))
    return rc;
  g_autoptr(VlDetHead) h = vl_detect_load_run_head (run, m, &error);
  if (h == NULL)
    return cli_fail (error);
  const int K = vl_det_head_n_classes (h);
  VlFcosPostprocess post = VL_FCOS_POSTPROCESS_DEFAULT;
  post.score_thresh = (float) score;
  g_autofree VlDetection *dets = g_new (VlDetection, post.max_dets);
  int failures = 0;
  for (int i = 0; i < n_files; i++)
    {
      g_autoptr(VlImage) img = vl_image_load (files[i], 3, &error);
      if (img == NULL)
        {
          g_printerr ("vitlab-cli: %s\n", error->message);
          g_clear_error (&error);
          failures++;
          continue;
        }
      int n = vl_detect_image (m, h, img, img_size, &post, dets, &error);
      if (n < 0)
        return cli_fail (error);
      g_autofree char *base = g_path_get_basename (files[i]);
      char *dot = strrchr (base, '.');
      if (dot && dot != base)
        *dot = '\0';
      g_autofree char *jname = g_strconcat (base, ".json", NULL);
      g_autofree char *bname = g_strconcat (base, "-boxes.png", NULL);
      g_autofree char *jpath = g_build_filename (out_dir, jname, NULL);
      g_autofree char *bpath = g_build_filename (out_dir, bname, NULL);
      g_autofree char *json = detections_json (files[i], dets, n, names, K);
      if (!vl_write_file_atomic (jpath, json, -1, &error))
        return cli_fail (error);
      draw_detections (img, dets, n, names);
      if (!vl_image_save_png (bpath, img, &error))
        return cli_fail (error);
      g_print ("%s\t%s\t%d", files[i], jpath, n);
      for (int j = 0; j < n; j++)
        g_print ("\t%s=%.3f@%.0f,%.0f,%.0f,%.0f",
                 names && dets[j].label < K ? names[dets[j].label] : "?", dets[j].score,
                 dets[j].box[0], dets[j].box[1], dets[j].box[2], dets[j].box[3]);
      g_print ("\n");
    }
  return failures ? EXIT_FAILURE : EXIT_SUCCESS;
}

gboolean
cli_forward_detect (const char *ckpt, VlModel *m, int B, int H, int W, VlSafetensorsWriter *w,
                    GPtrArray *keep, GError **error)
{
  const VlGeometry *g = vl_model_geometry (m);
  g_autoptr(VlDetHead) h = NULL;
  if (!vl_det_head_find (ckpt, g->width, &h, error))
    return FALSE;
  if (h == NULL)
    return TRUE;   /* no FCOS head: nothing to add */
  const int gh = H / g->patch, gw = W / g->patch, A = gh * gw, K = vl_det_head_n_classes (h);
  vl_det_head_forward (h, vl_model_tokens_final (m), B, vl_model_n_tokens_last (m), g->n_prefix,
                       gh, gw, g->patch);
  float *cls = g_memdup2 (vl_det_head_cls_logits (h), sizeof (float) * B * A * K);
  float *reg = g_memdup2 (vl_det_head_bbox_regression (h), sizeof (float) * B * A * 4);
  float *ctr = g_memdup2 (vl_det_head_bbox_ctrness (h), sizeof (float) * B * A);
  g_ptr_array_add (keep, cls);
  g_ptr_array_add (keep, reg);
  g_ptr_array_add (keep, ctr);
  int64_t s_cls[3] = { B, A, K }, s_reg[3] = { B, A, 4 }, s_ctr[3] = { B, A, 1 };
  vl_safetensors_writer_add_f32 (w, "cls_logits", 3, s_cls, cls);
  vl_safetensors_writer_add_f32 (w, "bbox_regression", 3, s_reg, reg);
  vl_safetensors_writer_add_f32 (w, "bbox_ctrness", 3, s_ctr, ctr);
  return TRUE;
}
