/* vl-export.c: writing any loaded model back as a timm-compatible checkpoint folder.
 *
 * model.safetensors holds the internal tensors under their timm names. OpenCLIP's projection has
 * no timm counterpart outside the head, so it is folded into it: without a head it becomes the
 * head (head.weight = proj, zero bias, num_classes = embed_dim, as timm's CLIP models do); before
 * a linear head, head.weight = W_head · proj (exact up to float rounding). config.json follows
 * timm's Hugging Face layout; model_args carries only arguments timm's VisionTransformer
 * accepts, so timm builds the same model from the folder (`timm.create_model ("local-dir:DIR")`,
 * or create_model (architecture, pretrained=True, pretrained_cfg_overlay=<the file's whole
 * pretrained_cfg> + dict(file=DIR/model.safetensors, custom_load=False), **model_args)). The
 * LayerNorm eps goes at the top level: timm's ViTs always use 1e-6 (pass norm_layer=partial
 * (nn.LayerNorm, eps=...) for another), vitlab reads it back. */
#include "vl-model-private.h"
#include "vl-det-head.h"
#include "vl-seg-head.h"
#include "vl-atomic.h"
#include "vl-run.h"
#include "vl-json.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <string.h>

/* A registered timm architecture whose defaults model_args then override. */
static const char *
timm_architecture (VlModel *m)
{
  const VlGeometry *g = &m->geo;
  if (g->dist_token)
    return "deit_base_distilled_patch16_224";
  if (strcmp (g->family, "timm") == 0 && g_str_has_prefix (g->architecture, "vit_") &&
      strstr (g->architecture, "custom") == NULL)
    return g->architecture;
  return "vit_base_patch16_224";
}

static char *
config_json (VlModel *m, int num_classes, gboolean for_timm)
{
  const VlGeometry *g = &m->geo;
  char eps_text[32];   /* the float's shortest decimal form, not its widened double */
  g_snprintf (eps_text, sizeof eps_text, "%.7g", g->eps);
  g_autoptr(JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  vl_json_add_str (b, "architecture", timm_architecture (m));
  vl_json_add_int (b, "num_classes", num_classes);
  vl_json_add_int (b, "num_features", g->width);
  vl_json_add_str (b, "global_pool", vl_pool_name (m->pool));
  vl_json_add_num (b, "layer_norm_eps", g_ascii_strtod (eps_text, NULL));
  vl_json_add_str (b, "exported_from", g->family);
  /* what timm's naming cannot say, for vitlab reading it back */
  json_builder_set_member_name (b, "vitlab");
  json_builder_begin_object (b);
  /* the head the file holds: for timm, OpenCLIP's projection is folded into a linear head
   * (write_model), which is what vitlab reads back too, so an export of the export is the same */
  const gboolean folded = for_timm && g->embed_dim > 0;
  vl_json_add_str (b, "head", m->head_kind == VL_HEAD_MLP ? "mlp"
                         : m->head_kind == VL_HEAD_LINEAR || folded ? "linear" : "none");
  if (m->head_kind == VL_HEAD_MLP)
    vl_json_add_int (b, "mlp_hidden", m->head_hidden);
  if (m->stem)
    {
      /* a CNN stem in place of the patch embedding (vl-stem.h): its tensors say the rest */
      json_builder_set_member_name (b, "stem");
      json_builder_begin_object (b);
      vl_json_add_str (b, "kind", vl_stem_kind_name (vl_model_stem_kind (m)));
      vl_json_add_int (b, "stride", g->patch);
      json_builder_end_object (b);
    }
  if (!for_timm)
    {
      vl_json_add_int (b, "embed_dim", g->embed_dim);
      vl_json_add_str (b, "group_layout", strcmp (g->family, "openclip") == 0 ||
                  m->n_body_groups != g->depth + 2 + g->attn_pool + (g->embed_dim > 0)
                  ? "openclip" : "timm");
    }
  json_builder_end_object (b);

  json_builder_set_member_name (b, "model_args");
  json_builder_begin_object (b);
  vl_json_add_int (b, "img_size", g->img_size);
  /* with a CNN stem, timm's patch_size is HybridEmbed's projection kernel, not the stride */
  const int proj = m->stem ? vl_model_find_tensor (m, "patch_embed.proj.weight") : -1;
  vl_json_add_int (b, "patch_size", proj >= 0 ? (int) vl_param (m, proj)->shape[2] : g->patch);
  vl_json_add_int (b, "in_chans", g->in_chans);
  vl_json_add_int (b, "embed_dim", g->width);
  vl_json_add_int (b, "depth", g->depth);
  vl_json_add_int (b, "num_heads", g->heads);
  vl_json_add_num (b, "mlp_ratio", (double) g->mlp / g->width);
  vl_json_add_int (b, "num_classes", num_classes);
  vl_json_add_str (b, "global_pool", vl_pool_name (m->pool));
  vl_json_add_bool (b, "qkv_bias", TRUE);
  if (!g->dist_token)
    {
      vl_json_add_bool (b, "class_token", g->class_token);
      vl_json_add_bool (b, "no_embed_class", g->no_embed_class);
      vl_json_add_int (b, "reg_tokens", g->reg_tokens);
      vl_json_add_bool (b, "pre_norm", g->pre_norm);
      vl_json_add_bool (b, "fc_norm", g->fc_norm);
    }
  if (g->layer_scale)
    vl_json_add_num (b, "init_values", 1e-5);   /* any value: the gammas are in the file */
  if (g->quick_gelu || g->gelu_tanh)
    vl_json_add_str (b, "act_layer", g->quick_gelu ? "quick_gelu" : "gelu_tanh");
  json_builder_end_object (b);

  json_builder_set_member_name (b, "pretrained_cfg");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "input_size");
  json_builder_begin_array (b);
  json_builder_add_int_value (b, g->in_chans);
  json_builder_add_int_value (b, g->input_size);
  json_builder_add_int_value (b, g->input_size);
  json_builder_end_array (b);
  vl_json_add_str (b, "interpolation", g->interpolation);
  vl_json_add_num (b, "crop_pct", g->crop_pct);
  vl_json_add_str (b, "crop_mode", g->squash ? "squash" : "center");
  vl_json_add_floats (b, "mean", g->mean, g->in_chans);
  vl_json_add_floats (b, "std", g->std, g->in_chans);
  vl_json_add_int (b, "num_classes", num_classes);
  vl_json_add_str (b, "first_conv", "patch_embed.proj");
  if (g->dist_token)
    {
      /* timm drops every module named here when it re-heads the model */
      json_builder_set_member_name (b, "classifier");
      json_builder_begin_array (b);
      json_builder_add_string_value (b, "head");
      json_builder_add_string_value (b, "head_dist");
      json_builder_end_array (b);
    }
  else
    vl_json_add_str (b, "classifier", "head");
  json_builder_end_object (b);

  if (m->class_names && num_classes == m->num_classes)
    {
      json_builder_set_member_name (b, "label_names");
      json_builder_begin_array (b);
      for (int i = 0; i < num_classes; i++)
        json_builder_add_string_value (b, m->class_names[i]);
      json_builder_end_array (b);
    }
  json_builder_end_object (b);

  g_autoptr(JsonGenerator) gen = json_generator_new ();
  g_autoptr(JsonNode) root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  json_generator_set_pretty (gen, TRUE);
  json_generator_set_indent (gen, 2);
  return json_generator_to_data (gen, NULL);
}

/* out (R, C) = a (R, K) · b (K, C), in double for the fold. */
static float *
matmul (const float *a, const float *b, int64_t R, int64_t K, int64_t C)
{
  float *out = g_new (float, R * C);
  for (int64_t r = 0; r < R; r++)
    for (int64_t c = 0; c < C; c++)
      {
        double s = 0.0;
        for (int64_t k = 0; k < K; k++)
          s += (double) a[r * K + k] * b[k * C + c];
        out[r * C + c] = (float) s;
      }
  return out;
}

/* Writes model.safetensors (st_path) and config.json (cfg_path, NULL: none). for_timm folds
 * OpenCLIP's projection into the head; otherwise every internal tensor is written as it is
 * (lossless: vitlab reads it back exactly, projection and layer-group layout included). */
static gboolean
write_model (VlModel *m, VlSegHead *seg, const char *st_path, const char *cfg_path,
             gboolean for_timm, GError **error)
{
  const VlGeometry *g = &m->geo;
  g_autoptr(VlSafetensorsWriter) w = vl_safetensors_writer_new ();
  GPtrArray *temps = g_ptr_array_new_with_free_func (g_free);
  int num_classes = m->num_classes;
  const gboolean fold = for_timm && g->embed_dim > 0;

  for (int i = 0; i < (int) m->params->len; i++)
    {
      VlParam *p = vl_param (m, i);
      if (fold && i == m->ix.proj)
        continue;
      if (fold && i == m->ix.head_w)
        {
          /* fold the projection: (K, E) · (E, W) */
          const float *proj = vl_pdata (m, m->ix.proj);
          float *folded = matmul (p->data, proj, p->shape[0], g->embed_dim, g->width);
          g_ptr_array_add (temps, folded);
          int64_t shape[2] = { p->shape[0], g->width };
          vl_safetensors_writer_add_f32 (w, p->name, 2, shape, folded);
          continue;
        }
      vl_safetensors_writer_add_f32 (w, p->name, p->ndim, p->shape, p->data);
    }
  if (fold && m->head_kind == VL_HEAD_NONE)
    {
      /* the projection becomes the head */
      VlParam *proj = vl_param (m, m->ix.proj);
      float *zeros = g_new0 (float, g->embed_dim);
      g_ptr_array_add (temps, zeros);
      int64_t bshape[1] = { g->embed_dim };
      vl_safetensors_writer_add_f32 (w, "head.weight", 2, proj->shape, proj->data);
      vl_safetensors_writer_add_f32 (w, "head.bias", 1, bshape, zeros);
      num_classes = g->embed_dim;
    }
  if (seg)
    vl_seg_head_add_to_writer (seg, w);   /* decode_head.*: the model loader leaves them */
  char heads[16];
  g_snprintf (heads, sizeof heads, "%d", g->heads);
  vl_safetensors_writer_add_metadata (w, "format", "pt");
  vl_safetensors_writer_add_metadata (w, "num_heads", heads);

  gboolean ok = vl_safetensors_writer_write (w, st_path, error);
  g_ptr_array_unref (temps);
  if (!ok || cfg_path == NULL)
    return ok;
  g_autofree char *json = config_json (m, num_classes, for_timm);
  return vl_write_file_atomic (cfg_path, json, -1, error);
}

gboolean
vl_model_export (VlModel *m, const char *dir, GError **error)
{
  if (g_mkdir_with_parents (dir, 0755) != 0)
    {
      int e = errno;
      g_set_error (error, VL_ERROR, VL_ERROR_IO, "%s: cannot create the folder: %s", dir,
                   g_strerror (e));
      return FALSE;
    }
  g_autofree char *st_path = g_build_filename (dir, "model.safetensors", NULL);
  g_autofree char *cfg_path = g_build_filename (dir, "config.json", NULL);
  return write_model (m, NULL, st_path, cfg_path, TRUE, error);
}

gboolean
vl_model_save_checkpoint (VlModel *m, const char *st_path, const char *cfg_path,
                          GError **error)
{
  return write_model (m, NULL, st_path, cfg_path, FALSE, error);
}

gboolean
vl_model_save_checkpoint_with_seg_head (VlModel *m, VlSegHead *seg, const char *st_path,
                                        const char *cfg_path, GError **error)
{
  return write_model (m, seg, st_path, cfg_path, FALSE, error);
}

gboolean
vl_run_export_head (const char *run_dir, int width, const char *out, char **what,
                    GError **error)
{
  if (what)
    *what = NULL;
  g_autofree char *seg_src = g_build_filename (run_dir, VL_RUN_SEG_HEAD, NULL);
  g_autofree char *det_src = g_build_filename (run_dir, VL_RUN_DET_HEAD, NULL);
  const gboolean det = g_file_test (det_src, G_FILE_TEST_IS_REGULAR);
  if (!g_file_test (run_dir, G_FILE_TEST_IS_DIR) ||
      (!det && !g_file_test (seg_src, G_FILE_TEST_IS_REGULAR)))
    return TRUE;
  g_autoptr(VlSegHead) sh = det ? NULL : vl_seg_head_load (seg_src, width, error);
  g_autoptr(VlDetHead) dh = det ? vl_det_head_load (det_src, width, error) : NULL;
  if (sh == NULL && dh == NULL)
    return FALSE;
  const char *kind = det ? "fcos" : vl_seg_head_kind_name (vl_seg_head_kind (sh));
  const int K = det ? vl_det_head_n_classes (dh) : vl_seg_head_n_classes (sh);
  const char *prefix = det ? "det" : "seg";
  g_autoptr(VlSafetensorsWriter) w = vl_safetensors_writer_new ();
  if (det)
    vl_det_head_add_to_writer (dh, w);
  else
    vl_seg_head_add_to_writer (sh, w);
  vl_safetensors_writer_add_metadata (w, "format", det ? "vitlab-det-head" : "vitlab-seg-head");
  vl_safetensors_writer_add_metadata (w, det ? "det_head" : "seg_head", kind);
  g_autofree char *hdst = g_build_filename (out, det ? VL_RUN_DET_HEAD : VL_RUN_SEG_HEAD, NULL);
  if (!vl_safetensors_writer_write (w, hdst, error))
    return FALSE;
  g_autofree char *cpath = g_build_filename (out, "config.json", NULL);
  g_autofree char *rpath = g_build_filename (run_dir, "run.json", NULL);
  g_autoptr(JsonParser) cp = json_parser_new ();
  g_autoptr(JsonParser) rp = json_parser_new ();
  GError *local = NULL;
  JsonObject *c = json_parser_load_from_file (cp, cpath, &local) ? vl_json_root_object (cp)
                                                                  : NULL;
  if (c == NULL)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: %s", cpath,
                   local ? local->message : "not a JSON object");
      g_clear_error (&local);
      return FALSE;
    }
  g_autofree char *k_head = g_strconcat (prefix, "_head", NULL);
  g_autofree char *k_classes = g_strconcat (prefix, "_num_classes", NULL);
  g_autofree char *k_size = g_strconcat (prefix, "_img_size", NULL);
  json_object_set_string_member (c, "task", det ? "detection" : "segmentation");
  json_object_set_string_member (c, k_head, kind);
  json_object_set_int_member (c, k_classes, K);
  JsonObject *r = json_parser_load_from_file (rp, rpath, NULL) ? vl_json_root_object (rp) : NULL;
  if (r != NULL)
    {
      /* members of another type than run.json's are taken as absent */
      JsonObject *d = vl_json_object_member (r, "data");
      JsonObject *tk = vl_json_object_member (r, "task");
      if (d && json_object_has_member (d, "classes"))
        json_object_set_member (c, "label_names",
                                json_node_copy (json_object_get_member (d, "classes")));
      if (tk && json_object_has_member (tk, "img_size"))
        json_object_set_int_member (c, k_size, json_object_get_int_member (tk, "img_size"));
    }
  g_autoptr(JsonGenerator) gen = json_generator_new ();
  json_generator_set_pretty (gen, TRUE);
  json_generator_set_root (gen, json_parser_get_root (cp));
  g_autofree char *text = json_generator_to_data (gen, NULL);
  if (!vl_write_file_atomic (cpath, text, -1, error))
    return FALSE;
  if (what)
    *what = g_strdup_printf ("the %s %s head of %d classes to %s", kind, prefix, K, hdst);
  return TRUE;
}
