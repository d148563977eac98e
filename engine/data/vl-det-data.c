/* vl-det-data.c: Pascal VOC, COCO and YOLO box annotations (see vl-det-data.h). */
#include "vl-det-data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vl-error.h"
#include "vl-skipped.h"
#include "vl-image.h"
#include "vl-json.h"

static const char *const split_names[2] = { "train", "val" };
/* The names a split's folder or file goes by: Roboflow's exports call the validation split
 * "valid". */
static const char *const split_aliases[2][4] = { { "train", NULL }, { "val", "valid", "validation", NULL } };

static void
item_free (gpointer p)
{
  VlDetItem *it = p;
  g_free (it->image);
  g_free (it->boxes);
  g_free (it->labels);
  g_free (it);
}

static VlDetSource *
source_new (void)
{
  VlDetSource *s = g_new0 (VlDetSource, 1);
  for (int i = 0; i < 2; i++)
    s->items[i] = g_ptr_array_new_with_free_func (item_free);
  s->class_names = g_ptr_array_new_with_free_func (g_free);
  g_ptr_array_add (s->class_names, g_strdup ("background"));
  s->skipped = g_ptr_array_new_with_free_func (vl_skipped_free);
  return s;
}

void
vl_det_source_free (VlDetSource *s)
{
  if (s == NULL)
    return;
  for (int i = 0; i < 2; i++)
    g_ptr_array_unref (s->items[i]);
  g_ptr_array_unref (s->class_names);
  g_ptr_array_unref (s->skipped);
  g_free (s->description);
  g_free (s);
}

static void
skip (VlDetSource *s, const char *where, const char *fmt, ...) G_GNUC_PRINTF (3, 4);

static void
skip (VlDetSource *s, const char *where, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *reason = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_ptr_array_add (s->skipped, vl_skipped_new (where, reason));
  g_free (reason);
}

/* One raw box as an annotation gives it, with where it was written. */
typedef struct {
  float  box[4];
  int    label;     /* in [1, K), or -1: already refused */
  char  *where;     /* "FILE:LINE" or "FILE: annotation N" */
  int    frame[2];  /* the image size the annotation declares (VOC's <size>, COCO's width and
                     * height); 0: none */
} RawBox;

static void
raw_clear (gpointer p)
{
  g_free (((RawBox *) p)->where);
}

/* Adds an image with its boxes, once its header is read: boxes without area or outside the
 * image are dropped and listed; those within a pixel of it are clipped.
 * Images are read upright (their EXIF orientation applied), and boxes are taken to be drawn
 * on the upright image, as labelling tools that show photos upright write them (Roboflow,
 * CVAT, Label Studio, Ultralytics). A box whose annotation declares the stored, sideways size
 * of a photo turned a quarter (orientation 5 to 8; LabelImg writes such files) was drawn on
 * the stored pixels: it is turned with them. */
static void
add_probed_image (VlDetSource *s, int split, const char *image, GArray *raw, int w, int h,
                  int orientation)
{
  for (guint i = 0; orientation >= 5 && w != h && i < raw->len; i++)
    {
      RawBox *r = &g_array_index (raw, RawBox, i);
      if (r->frame[0] == h && r->frame[1] == w)   /* the stored size: h x w */
        vl_orient_box (r->box, h, w, orientation);
    }
  VlDetItem *it = g_new0 (VlDetItem, 1);
  it->image = g_strdup (image);
  it->width = w;
  it->height = h;
  it->boxes = g_new (float, 4 * MAX (raw->len, 1));
  it->labels = g_new (int, MAX (raw->len, 1));
  for (guint i = 0; i < raw->len; i++)
    {
      const RawBox *r = &g_array_index (raw, RawBox, i);
      const float *b = r->box;
      if (r->label < 0)
        continue;
      if (!(b[2] > b[0] && b[3] > b[1]))
        {
          skip (s, r->where, "box (%g, %g, %g, %g) has no area: dropped", b[0], b[1], b[2], b[3]);
          continue;
        }
      if (b[0] < -1 || b[1] < -1 || b[2] > w + 1 || b[3] > h + 1)
        {
          skip (s, r->where, "box (%g, %g, %g, %g) lies outside its %dx%d image %s: dropped",
                b[0], b[1], b[2], b[3], w, h, image);
          continue;
        }
      float *o = it->boxes + 4 * it->n;
      o[0] = CLAMP (b[0], 0, w);
      o[1] = CLAMP (b[1], 0, h);
      o[2] = CLAMP (b[2], 0, w);
      o[3] = CLAMP (b[3], 0, h);
      it->labels[it->n++] = r->label;
    }
  g_ptr_array_add (s->items[split], it);
}

/* An image's upright size and its orientation from its header; FALSE, with the image listed
 * among the skipped files, when it cannot be read. */
static gboolean
probe_image (VlDetSource *s, const char *image, int *w, int *h, int *orientation)
{
  g_autoptr(GError) e = NULL;
  if (vl_image_probe_file (image, w, h, orientation, &e))
    return TRUE;
  skip (s, image, "%s", e->message);
  return FALSE;
}

static void
add_image (VlDetSource *s, int split, const char *image, GArray *raw)
{
  int w = 0, h = 0, orientation = 1;
  if (probe_image (s, image, &w, &h, &orientation))
    add_probed_image (s, split, image, raw, w, h, orientation);
}

static gint
compare_strings (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

/* "NAME (FORMAT boxes, N classes)" */
static char *
describe (const char *name, const char *format, guint n_classes)
{
  return g_strdup_printf ("%s (%s boxes, %u class%s)", name, format, n_classes,
                          n_classes == 1 ? "" : "es");
}

static gboolean
check_splits (VlDetSource *s, const char *root, GError **error)
{
  for (int sp = 0; sp < 2; sp++)
    if (s->items[sp]->len == 0)
      {
        g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s: no usable %s image", root,
                     sp == 0 ? "training" : "validation");
        return FALSE;
      }
  if (s->class_names->len < 2)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: no object class in the annotations",
                   root);
      return FALSE;
    }
  return TRUE;
}

/* ------------------------------------------------------------------ Pascal VOC XML */

typedef struct {
  GArray     *raw;          /* RawBox */
  GPtrArray  *names;        /* char *: each raw box's class name */
  const char *path;
  GString    *text;
  char       *name;         /* the current object's */
  float       box[4];
  int         have;         /* bits: xmin ymin xmax ymax seen */
  int         line;         /* of <object> */
  int         depth_object; /* depth of the open <object>, 0: none */
  int         depth;
  int         depth_size;   /* depth of the open <size>, 0: none */
  int         frame[2];     /* <size>'s width and height, 0: not given */
} VocParse;

static void
voc_start (GMarkupParseContext *ctx, const char *element, const char **an, const char **av,
           gpointer data, GError **error)
{
  VocParse *v = data;
  v->depth++;
  g_string_truncate (v->text, 0);
  if (strcmp (element, "object") == 0 && v->depth_object == 0)
    {
      v->depth_object = v->depth;
      g_clear_pointer (&v->name, g_free);
      v->have = 0;
      /* the parser stands after the tag (and its newline, when it ended a line) */
      int ch = 0;
      g_markup_parse_context_get_position (ctx, &v->line, &ch);
      if (ch <= 1 && v->line > 1)
        v->line--;
    }
  else if (strcmp (element, "size") == 0 && v->depth_object == 0 && v->depth == 2)
    v->depth_size = v->depth;
}

static void
voc_end (GMarkupParseContext *ctx, const char *element, gpointer data, GError **error)
{
  VocParse *v = data;
  static const char *const coords[4] = { "xmin", "ymin", "xmax", "ymax" };
  if (v->depth_size > 0)
    {
      /* the image size the boxes were drawn on; a size that is not a whole number is ignored */
      const int c = strcmp (element, "width") == 0 ? 0 : strcmp (element, "height") == 0 ? 1 : -1;
      char *end = NULL;
      const char *t = g_strstrip (v->text->str);
      const gint64 x = g_ascii_strtoll (t, &end, 10);
      if (c >= 0 && v->depth == v->depth_size + 1 && end != t && *end == '\0' && x > 0 &&
          x <= VL_IMAGE_MAX_SIDE)
        v->frame[c] = (int) x;
      if (strcmp (element, "size") == 0 && v->depth == v->depth_size)
        v->depth_size = 0;
    }
  if (v->depth_object > 0)
    {
      char *t = g_strstrip (v->text->str);
      if (strcmp (element, "name") == 0 && v->depth == v->depth_object + 1)
        {
          g_free (v->name);
          v->name = g_strdup (t);
        }
      for (int c = 0; c < 4; c++)
        if (strcmp (element, coords[c]) == 0)
          {
            char *end = NULL;
            double x = g_ascii_strtod (t, &end);
            if (end == t || *end != '\0' || !isfinite (x))
              {
                int line;
                g_markup_parse_context_get_position (ctx, &line, NULL);
                g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s:%d: <%s> '%s' is not a number",
                             v->path, line, element, t);
                return;
              }
            v->box[c] = (float) x;
            v->have |= 1 << c;
          }
      if (strcmp (element, "object") == 0 && v->depth == v->depth_object)
        {
          v->depth_object = 0;
          if (v->name == NULL || *v->name == '\0' || v->have != 15)
            {
              g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s:%d: an <object> without %s",
                           v->path, v->line, v->name == NULL || *v->name == '\0'
                           ? "a <name>" : "all of <bndbox>'s xmin, ymin, xmax, ymax");
              return;
            }
          RawBox r = { { v->box[0], v->box[1], v->box[2], v->box[3] }, 0,
                       g_strdup_printf ("%s:%d", v->path, v->line), { 0, 0 } };
          g_array_append_val (v->raw, r);
          g_ptr_array_add (v->names, g_steal_pointer (&v->name));
        }
    }
  g_string_truncate (v->text, 0);
  v->depth--;
}

static void
voc_text (GMarkupParseContext *ctx, const char *text, gsize len, gpointer data, GError **error)
{
  g_string_append_len (((VocParse *) data)->text, text, len);
}

static gboolean
voc_parse (const char *path, GArray *raw, GPtrArray *names, GError **error)
{
  g_autofree char *xml = NULL;
  gsize len;
  if (!g_file_get_contents (path, &xml, &len, error))
    return FALSE;
  static const GMarkupParser parser = { voc_start, voc_end, voc_text, NULL, NULL };
  VocParse v = { raw, names, path, g_string_new (NULL), NULL, { 0 }, 0, 0, 0, 0, 0, { 0, 0 } };
  const guint first = raw->len;
  GMarkupParseContext *ctx = g_markup_parse_context_new (&parser, 0, &v, NULL);
  g_autoptr(GError) local = NULL;
  gboolean ok = g_markup_parse_context_parse (ctx, xml, (gssize) len, &local) &&
                g_markup_parse_context_end_parse (ctx, &local);
  g_markup_parse_context_free (ctx);
  g_string_free (v.text, TRUE);
  g_free (v.name);
  for (guint i = first; ok && i < raw->len; i++)   /* <size> may come after the objects */
    memcpy (g_array_index (raw, RawBox, i).frame, v.frame, sizeof v.frame);
  if (!ok)
    {
      if (local->domain == VL_ERROR)
        g_propagate_error (error, g_steal_pointer (&local));
      else
        g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: %s", path, local->message);
    }
  return ok;
}

/* The annotations of one split's list: images (paths) and, for image i, its raw boxes
 * raws[starts[i] .. starts[i + 1]) with the class names names[...] of those boxes. */
typedef struct {
  GPtrArray *images, *names;
  GArray    *raws, *starts;
} VocSplit;

static gboolean
voc_read_list (VlDetSource *s, const char *root, int sp, VocSplit *v, GError **error)
{
  g_autofree char *base = g_strconcat (split_names[sp], ".txt", NULL);
  g_autofree char *list = g_build_filename (root, "ImageSets", "Main", base, NULL);
  g_autofree char *text = NULL;
  g_autoptr(GError) local = NULL;
  if (!g_file_get_contents (list, &text, NULL, &local))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s: cannot read the %s split of the "
                   "Pascal VOC layout: %s", list, split_names[sp], local->message);
      return FALSE;
    }
  g_autofree char *jdir = g_build_filename (root, "JPEGImages", NULL);
  g_auto(GStrv) lines = g_strsplit (text, "\n", -1);
  for (int i = 0; lines[i] != NULL; i++)
    {
      char *id = g_strstrip (lines[i]);
      if (*id == '\0')
        continue;
      char *blank = strpbrk (id, " \t");   /* "NAME 1" lists of one class: the name */
      if (blank)
        *blank = '\0';
      g_autofree char *where = g_strdup_printf ("%s:%d", list, i + 1);
      g_autofree char *image = strchr (id, '/') ? NULL : vl_image_find_stem (jdir, id);
      g_autofree char *xbase = g_strconcat (id, ".xml", NULL);
      g_autofree char *xml = g_build_filename (root, "Annotations", xbase, NULL);
      if (image == NULL)
        {
          skip (s, where, "'%s': no image %s/%s.jpg (or another extension)", id, jdir, id);
          continue;
        }
      if (!g_file_test (xml, G_FILE_TEST_EXISTS))
        {
          skip (s, where, "'%s': no annotation %s", id, xml);
          continue;
        }
      guint start = v->raws->len;
      if (!voc_parse (xml, v->raws, v->names, error))
        return FALSE;
      g_ptr_array_add (v->images, g_steal_pointer (&image));
      g_array_append_val (v->starts, start);
    }
  return TRUE;
}

static void
voc_split_clear (VocSplit *v)
{
  g_ptr_array_unref (v->images);
  g_ptr_array_unref (v->names);
  g_array_unref (v->raws);
  g_array_unref (v->starts);
}

/* The classes: the sorted names of both splits, from 1. */
static void
voc_classes (VlDetSource *s, VocSplit *v, GHashTable *label_of)
{
  g_autoptr(GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr(GPtrArray) sorted = g_ptr_array_new ();
  for (int sp = 0; sp < 2; sp++)
    for (guint i = 0; i < v[sp].names->len; i++)
      if (g_hash_table_add (seen, g_ptr_array_index (v[sp].names, i)))
        g_ptr_array_add (sorted, g_ptr_array_index (v[sp].names, i));
  g_ptr_array_sort (sorted, compare_strings);
  for (guint k = 0; k < sorted->len; k++)
    {
      char *name = g_strdup (g_ptr_array_index (sorted, k));
      g_ptr_array_add (s->class_names, name);
      g_hash_table_insert (label_of, name, GINT_TO_POINTER (k + 1));
    }
}

static VlDetSource *
read_voc (const char *root, GError **error)
{
  g_autoptr(VlDetSource) s = source_new ();
  VocSplit v[2];
  for (int sp = 0; sp < 2; sp++)
    {
      v[sp].images = g_ptr_array_new_with_free_func (g_free);
      v[sp].names = g_ptr_array_new_with_free_func (g_free);
      v[sp].raws = g_array_new (FALSE, TRUE, sizeof (RawBox));
      g_array_set_clear_func (v[sp].raws, raw_clear);
      v[sp].starts = g_array_new (FALSE, FALSE, sizeof (guint));
    }
  gboolean ok = voc_read_list (s, root, 0, &v[0], error) &&
                voc_read_list (s, root, 1, &v[1], error);
  g_autoptr(GHashTable) label_of = g_hash_table_new (g_str_hash, g_str_equal);
  if (ok)
    voc_classes (s, v, label_of);
  for (int sp = 0; ok && sp < 2; sp++)
    for (guint i = 0; i < v[sp].images->len; i++)
      {
        guint a = g_array_index (v[sp].starts, guint, i);
        guint b = i + 1 < v[sp].starts->len ? g_array_index (v[sp].starts, guint, i + 1)
                                            : v[sp].raws->len;
        g_autoptr(GArray) raw = g_array_new (FALSE, TRUE, sizeof (RawBox));
        for (guint j = a; j < b; j++)
          {
            RawBox r = g_array_index (v[sp].raws, RawBox, j);   /* `where` stays theirs */
            r.label = GPOINTER_TO_INT (g_hash_table_lookup (label_of,
                                                            g_ptr_array_index (v[sp].names, j)));
            g_array_append_val (raw, r);
          }
        add_image (s, sp, g_ptr_array_index (v[sp].images, i), raw);
      }
  for (int sp = 0; sp < 2; sp++)
    voc_split_clear (&v[sp]);
  if (!ok || !check_splits (s, root, error))
    return NULL;
  g_autofree char *base = g_path_get_basename (root);
  s->description = describe (base, "Pascal VOC", s->class_names->len - 1);
  return g_steal_pointer (&s);
}

/* ------------------------------------------------------------------ COCO JSON */

static gboolean
json_int_member (JsonObject *o, const char *key, gint64 *out)
{
  double d;
  if (o == NULL || !json_object_has_member (o, key) ||
      !vl_json_number (json_object_get_member (o, key), &d) || d != floor (d) ||
      fabs (d) > 9007199254740992.0)   /* 2^53: every integer up to it is a double */
    return FALSE;
  *out = (gint64) d;
  return TRUE;
}

static JsonArray *
json_array_member (JsonObject *o, const char *key)
{
  if (!json_object_has_member (o, key))
    return NULL;
  JsonNode *n = json_object_get_member (o, key);
  return JSON_NODE_HOLDS_ARRAY (n) ? json_node_get_array (n) : NULL;
}

/* The categories of one file into cats (id -> name); FALSE with an error on a malformed one. */
static gboolean
coco_categories (JsonObject *root, const char *path, GTree *cats, GError **error)
{
  JsonArray *a = json_array_member (root, "categories");
  for (guint i = 0; a != NULL && i < json_array_get_length (a); i++)
    {
      JsonObject *c = vl_json_array_object (a, i);
      gint64 id;
      const char *name = vl_json_string_member (c, "name", NULL);
      if (!json_int_member (c, "id", &id) || name == NULL)
        {
          g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: categories[%u] has no integer id "
                       "and string name", path, i);
          return FALSE;
        }
      g_tree_insert (cats, GINT_TO_POINTER ((int) id), g_strdup (name));
    }
  return TRUE;
}

/* Where a COCO split is: annotations/instances_NAME.json (also instances_NAME2017.json, as
 * COCO's own files are named) with its images in images/NAME/ (or images/NAME2017/, NAME2017/
 * beside annotations/), or Roboflow's NAME/_annotations.coco.json with the images beside it;
 * NAME the split's or one of its aliases. FALSE when none is there. */
static gboolean
coco_find_split (const char *root, int sp, char **json, char **images)
{
  for (int a = 0; split_aliases[sp][a] != NULL; a++)
    {
      const char *name = split_aliases[sp][a];
      /* Roboflow */
      g_autofree char *rf = g_build_filename (root, name, "_annotations.coco.json", NULL);
      if (g_file_test (rf, G_FILE_TEST_IS_REGULAR))
        {
          *json = g_steal_pointer (&rf);
          *images = g_build_filename (root, name, NULL);
          return TRUE;
        }
      /* annotations/instances_NAME[SUFFIX].json, the shortest such name first */
      g_autofree char *adir = g_build_filename (root, "annotations", NULL);
      g_autoptr(GDir) d = g_dir_open (adir, 0, NULL);
      g_autofree char *prefix = g_strconcat ("instances_", name, NULL);
      g_autofree char *best = NULL;
      for (const char *n; d != NULL && (n = g_dir_read_name (d)) != NULL;)
        if (g_str_has_prefix (n, prefix) && g_str_has_suffix (n, ".json") &&
            (best == NULL || strlen (n) < strlen (best) ||
             (strlen (n) == strlen (best) && strcmp (n, best) < 0)))
          {
            /* instances_val.json, not instances_validation_extra.json for "val" */
            const char *suffix = n + strlen (prefix);
            const size_t n_suffix = strlen (suffix) - strlen (".json");
            gboolean digits = TRUE;
            for (size_t c = 0; c < n_suffix; c++)
              digits = digits && g_ascii_isdigit (suffix[c]);
            if (digits)
              {
                g_free (best);
                best = g_strdup (n);
              }
          }
      if (best == NULL)
        continue;
      g_autofree char *full = g_strndup (best + strlen ("instances_"),
                                         strlen (best) - strlen ("instances_") - strlen (".json"));
      *json = g_build_filename (adir, best, NULL);
      const char *dirs[3][2] = { { "images", full }, { full, NULL }, { "images", name } };
      for (int k = 0; k < 3; k++)
        {
          g_autofree char *dir = g_build_filename (root, dirs[k][0], dirs[k][1], NULL);
          if (g_file_test (dir, G_FILE_TEST_IS_DIR))
            {
              *images = g_steal_pointer (&dir);
              return TRUE;
            }
        }
      *images = g_build_filename (root, "images", full, NULL);   /* named in the skipped list */
      return TRUE;
    }
  return FALSE;
}

static gboolean
coco_split (VlDetSource *s, const char *root, const char *dir, int sp, JsonObject *o,
            const char *path, GHashTable *label_of, GError **error)
{
  JsonArray *images = json_array_member (o, "images");
  JsonArray *anns = json_array_member (o, "annotations");
  if (images == NULL)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: no \"images\" array", path);
      return FALSE;
    }
  g_autoptr(GHashTable) index = g_hash_table_new (g_int64_hash, g_int64_equal);
  const guint n_img = json_array_get_length (images);
  g_autofree gint64 *ids = g_new (gint64, MAX (n_img, 1));
  g_autofree int *frames = g_new0 (int, 2 * MAX (n_img, 1));   /* declared width, height */
  g_autoptr(GPtrArray) raws = g_ptr_array_new_with_free_func ((GDestroyNotify) g_array_unref);
  for (guint i = 0; i < n_img; i++)
    {
      JsonObject *im = vl_json_array_object (images, i);
      if (!json_int_member (im, "id", &ids[i]) || !json_object_has_member (im, "file_name"))
        {
          g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: images[%u] has no integer id and "
                       "file_name", path, i);
          return FALSE;
        }
      g_hash_table_insert (index, &ids[i], GUINT_TO_POINTER (i + 1));
      gint64 fw = 0, fh = 0;
      if (json_int_member (im, "width", &fw) && json_int_member (im, "height", &fh) &&
          fw > 0 && fh > 0 && fw <= VL_IMAGE_MAX_SIDE && fh <= VL_IMAGE_MAX_SIDE)
        {
          frames[2 * i] = (int) fw;
          frames[2 * i + 1] = (int) fh;
        }
      GArray *r = g_array_new (FALSE, TRUE, sizeof (RawBox));
      g_array_set_clear_func (r, raw_clear);
      g_ptr_array_add (raws, r);
    }
  for (guint i = 0; anns != NULL && i < json_array_get_length (anns); i++)
    {
      JsonObject *an = vl_json_array_object (anns, i);
      gint64 id = i, img, cat, crowd = 0;
      json_int_member (an, "id", &id);
      g_autofree char *where = g_strdup_printf ("%s: annotation %" G_GINT64_FORMAT, path, id);
      JsonArray *bb = an ? json_array_member (an, "bbox") : NULL;
      double v[4];
      gboolean ok = bb != NULL && json_array_get_length (bb) == 4;
      for (int j = 0; ok && j < 4; j++)
        ok = vl_json_number (json_array_get_element (bb, j), &v[j]);
      if (!ok || !json_int_member (an, "image_id", &img) ||
          !json_int_member (an, "category_id", &cat))
        {
          skip (s, where, "no image_id, category_id and bbox [x, y, w, h]: dropped");
          continue;
        }
      json_int_member (an, "iscrowd", &crowd);
      guint k = GPOINTER_TO_UINT (g_hash_table_lookup (index, &img));
      int label = GPOINTER_TO_INT (g_hash_table_lookup (label_of, GINT_TO_POINTER ((int) cat)));
      if (k == 0)
        skip (s, where, "image_id %" G_GINT64_FORMAT " is not in \"images\": dropped", img);
      else if (label == 0)
        skip (s, where, "category_id %" G_GINT64_FORMAT " is not in \"categories\": dropped",
              cat);
      else if (crowd)
        skip (s, where, "a crowd annotation (iscrowd 1): not a box to detect, dropped");
      else
        {
          RawBox r = { { (float) v[0], (float) v[1], (float) (v[0] + v[2]),
                         (float) (v[1] + v[3]) }, label, g_strdup (where),
                       { frames[2 * (k - 1)], frames[2 * (k - 1) + 1] } };
          g_array_append_val ((GArray *) g_ptr_array_index (raws, k - 1), r);
        }
    }
  for (guint i = 0; i < n_img; i++)
    {
      JsonObject *im = vl_json_array_object (images, i);
      const char *fn = vl_json_string_member (im, "file_name", NULL);
      /* file_name in the split's image folder; as some exporters write it, a path from the
       * dataset's folder ("images/train/x.jpg"), or a path whose last part is in the image
       * folder */
      g_autofree char *image = fn ? g_build_filename (dir, fn, NULL) : NULL;
      if (image != NULL && !g_file_test (image, G_FILE_TEST_IS_REGULAR))
        {
          g_autofree char *base = g_path_get_basename (fn);
          g_autofree char *from_root = g_build_filename (root, fn, NULL);
          g_autofree char *by_name = g_build_filename (dir, base, NULL);
          if (!g_path_is_absolute (fn) && g_file_test (from_root, G_FILE_TEST_IS_REGULAR))
            {
              g_free (image);
              image = g_steal_pointer (&from_root);
            }
          else if (g_file_test (by_name, G_FILE_TEST_IS_REGULAR))
            {
              g_free (image);
              image = g_steal_pointer (&by_name);
            }
        }
      if (image == NULL || !g_file_test (image, G_FILE_TEST_EXISTS))
        {
          g_autofree char *w = g_strdup_printf ("%s: image %" G_GINT64_FORMAT, path, ids[i]);
          skip (s, w, "no file %s: its annotations are dropped", image ? image : "(no name)");
          continue;
        }
      add_image (s, sp, image, g_ptr_array_index (raws, i));
    }
  return TRUE;
}

/* Whether category id (named name) only groups others: no annotation uses it and another
 * category names it as its supercategory (Roboflow's exports put the dataset's name there as
 * category 0). */
static gboolean
coco_is_grouping (JsonObject *const objs[2], gint64 id, const char *name)
{
  gboolean parent = FALSE;
  for (int sp = 0; sp < 2; sp++)
    {
      JsonArray *cats = json_array_member (objs[sp], "categories");
      for (guint i = 0; cats != NULL && i < json_array_get_length (cats); i++)
        {
          JsonObject *c = vl_json_array_object (cats, i);
          gint64 cid;
          const char *super = vl_json_string_member (c, "supercategory", NULL);
          parent = parent || (json_int_member (c, "id", &cid) && cid != id && super != NULL &&
                              strcmp (super, name) == 0);
        }
    }
  if (!parent)
    return FALSE;
  for (int sp = 0; sp < 2; sp++)
    {
      JsonArray *anns = json_array_member (objs[sp], "annotations");
      for (guint i = 0; anns != NULL && i < json_array_get_length (anns); i++)
        {
          gint64 cat;
          if (json_int_member (vl_json_array_object (anns, i), "category_id", &cat) && cat == id)
            return FALSE;
        }
    }
  return TRUE;
}

static gint
compare_int_keys (gconstpointer a, gconstpointer b, gpointer unused)
{
  int x = GPOINTER_TO_INT (a), y = GPOINTER_TO_INT (b);
  return x < y ? -1 : x > y;
}

static VlDetSource *
read_coco (const char *root, GError **error)
{
  g_autoptr(VlDetSource) s = source_new ();
  JsonParser *parsers[2] = { NULL, NULL };
  JsonObject *objs[2];
  char *paths[2] = { NULL, NULL }, *dirs[2] = { NULL, NULL };
  g_autoptr(GTree) cats = g_tree_new_full (compare_int_keys, NULL, NULL, g_free);
  gboolean ok = TRUE;
  for (int sp = 0; sp < 2 && ok; sp++)
    {
      if (!coco_find_split (root, sp, &paths[sp], &dirs[sp]))
        {
          g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s: no COCO annotations of the %s "
                       "split (annotations/instances_%s.json or %s/_annotations.coco.json)",
                       root, sp == 0 ? "training" : "validation", split_names[sp],
                       split_aliases[sp][sp == 0 ? 0 : 1]);
          ok = FALSE;
          break;
        }
      parsers[sp] = vl_json_load_object_file (paths[sp], &objs[sp], error);
      ok = parsers[sp] != NULL && coco_categories (objs[sp], paths[sp], cats, error);
    }
  g_autoptr(GHashTable) label_of = g_hash_table_new (g_direct_hash, g_direct_equal);
  if (ok)
    {
      /* the categories in id order, labels from 1 */
      GTreeNode *n = g_tree_node_first (cats);
      for (; n != NULL; n = g_tree_node_next (n))
        {
          const int id = GPOINTER_TO_INT (g_tree_node_key (n));
          if (coco_is_grouping (objs, id, g_tree_node_value (n)))
            {
              g_autofree char *where = g_strdup_printf ("%s: category %d", paths[0], id);
              skip (s, where, "'%s' only groups the other categories (their supercategory, "
                    "without boxes of its own): not a class", (char *) g_tree_node_value (n));
              continue;
            }
          g_ptr_array_add (s->class_names, g_strdup (g_tree_node_value (n)));
          g_hash_table_insert (label_of, g_tree_node_key (n),
                               GINT_TO_POINTER ((int) s->class_names->len - 1));
        }
    }
  for (int sp = 0; sp < 2 && ok; sp++)
    ok = coco_split (s, root, dirs[sp], sp, objs[sp], paths[sp], label_of, error);
  for (int sp = 0; sp < 2; sp++)
    {
      g_clear_object (&parsers[sp]);
      g_free (paths[sp]);
      g_free (dirs[sp]);
    }
  if (!ok || !check_splits (s, root, error))
    return NULL;
  g_autofree char *base = g_path_get_basename (root);
  s->description = describe (base, "COCO", s->class_names->len - 1);
  return g_steal_pointer (&s);
}

/* ------------------------------------------------------------------ YOLO */

/* Class names from classes.txt (one a line), else data.yaml's names ([a, b], {0: a, 1: b}, a
 * block list of "- a", or "0: a" lines). */
static gboolean
yolo_names (VlDetSource *s, const char *root, GError **error)
{
  g_autofree char *txt = g_build_filename (root, "classes.txt", NULL);
  g_autofree char *yaml = g_build_filename (root, "data.yaml", NULL);
  g_autofree char *text = NULL;
  gboolean is_yaml = !g_file_test (txt, G_FILE_TEST_EXISTS);
  const char *path = is_yaml ? yaml : txt;
  if (!g_file_get_contents (path, &text, NULL, NULL))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s: no classes.txt or data.yaml naming "
                   "the classes of the YOLO labels", root);
      return FALSE;
    }
  g_auto(GStrv) lines = g_strsplit (text, "\n", -1);
  gboolean in_names = !is_yaml;
  for (int i = 0; lines[i] != NULL; i++)
    {
      char *l = lines[i];
      if (is_yaml && !in_names)
        {
          if (!g_str_has_prefix (l, "names:"))
            continue;
          in_names = TRUE;
          char *rest = g_strstrip (l + 6);
          if (*rest == '[' || *rest == '{')
            {
              char *end = strchr (rest, *rest == '[' ? ']' : '}');
              if (end)
                *end = '\0';
              g_auto(GStrv) items = g_strsplit (rest + 1, ",", -1);
              for (int j = 0; items[j] != NULL; j++)
                {
                  char *it = g_strstrip (items[j]);
                  if (*rest == '{' && strchr (it, ':'))   /* "0: a" */
                    it = strchr (it, ':') + 1;
                  it = g_strstrip (g_strdelimit (it, "'\"", ' '));
                  if (*it)
                    g_ptr_array_add (s->class_names, g_strdup (it));
                }
              break;
            }
          continue;
        }
      if (is_yaml && l[0] != ' ' && l[0] != '\t' && l[0] != '-' && *g_strstrip (l) != '\0')
        break;   /* the next key */
      char *it = g_strstrip (l);
      if (*it == '\0' || *it == '#')
        continue;
      if (is_yaml)
        {
          if (*it == '-')
            it++;
          else if (strchr (it, ':'))
            it = strchr (it, ':') + 1;
          it = g_strstrip (g_strdelimit (it, "'\"", ' '));
        }
      g_ptr_array_add (s->class_names, g_strdup (it));
    }
  if (s->class_names->len < 2)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: no class names", path);
      return FALSE;
    }
  return TRUE;
}

/* One label file: "class cx cy w h" normalised, in pixels of a w x h image; or a segment's
 * polygon "class x1 y1 x2 y2 x3 y3 …" (YOLO's segmentation labels), whose box is its extent, as
 * Ultralytics reads such labels for detection. */
static void
yolo_read_labels (VlDetSource *s, const char *path, int K, int w, int h, GArray *raw)
{
  g_autofree char *text = NULL;
  if (!g_file_get_contents (path, &text, NULL, NULL))
    return;
  g_auto(GStrv) lines = g_strsplit (text, "\n", -1);
  for (int i = 0; lines[i] != NULL; i++)
    {
      char *l = g_strstrip (lines[i]);
      if (*l == '\0')
        continue;
      g_autofree char *where = g_strdup_printf ("%s:%d", path, i + 1);
      g_auto(GStrv) f = g_strsplit_set (l, " \t", -1);
      g_autoptr(GArray) vs = g_array_new (FALSE, FALSE, sizeof (double));
      gboolean numbers = TRUE;
      for (int j = 0; f[j] != NULL && numbers; j++)
        {
          if (*f[j] == '\0')
            continue;
          char *end = NULL;
          const double x = g_ascii_strtod (f[j], &end);
          numbers = end != f[j] && *end == '\0' && isfinite (x);
          g_array_append_val (vs, x);
        }
      const int nf = (int) vs->len;
      double v[5] = { -1, 0, 0, 0, 0 };
      const double *x = (const double *) (void *) vs->data;
      if (numbers && nf >= 7 && nf % 2 == 1)
        {
          /* a polygon: its extent */
          double x0 = INFINITY, y0 = INFINITY, x1 = -INFINITY, y1 = -INFINITY;
          for (int j = 1; j < nf; j += 2)
            {
              x0 = MIN (x0, x[j]), x1 = MAX (x1, x[j]);
              y0 = MIN (y0, x[j + 1]), y1 = MAX (y1, x[j + 1]);
            }
          v[0] = x[0], v[1] = (x0 + x1) / 2, v[2] = (y0 + y1) / 2, v[3] = x1 - x0, v[4] = y1 - y0;
        }
      else if (numbers && nf == 5)
        memcpy (v, x, sizeof v);
      if (!numbers || (nf != 5 && (nf < 7 || nf % 2 == 0)) || v[0] != floor (v[0]))
        {
          /* the line as written, its first 60 characters when longer */
          const gboolean valid = g_utf8_validate (l, -1, NULL);
          const gboolean long_line = valid && g_utf8_strlen (l, -1) > 60;
          g_autofree char *head = long_line ? g_utf8_substring (l, 0, 60) : NULL;
          g_autofree char *shown = !valid ? g_strdup ("(not UTF-8 text)")
                                 : long_line ? g_strconcat (head, "…", NULL) : g_strdup (l);
          skip (s, where, "'%s' is neither 'class cx cy w h' nor 'class x1 y1 x2 y2 x3 y3 …' "
                "(a polygon): dropped", shown);
          continue;
        }
      if (v[0] < 0 || v[0] + 1 >= K)
        {
          skip (s, where, "class %g is not one of the %d named classes (0-%d): dropped", v[0],
                K - 1, K - 2);
          continue;
        }
      RawBox r = { { (float) ((v[1] - v[3] / 2) * w), (float) ((v[2] - v[4] / 2) * h),
                     (float) ((v[1] + v[3] / 2) * w), (float) ((v[2] + v[4] / 2) * h) },
                   (int) v[0] + 1, g_strdup (where) };
      g_array_append_val (raw, r);
    }
}

/* Where a YOLO split is: images/NAME/ with labels/NAME/, or NAME/images/ with NAME/labels/
 * (Roboflow's and Ultralytics' other layout); NAME the split's or one of its aliases. */
static gboolean
yolo_find_split (const char *root, int sp, char **images, char **labels)
{
  for (int a = 0; split_aliases[sp][a] != NULL; a++)
    for (int layout = 0; layout < 2; layout++)
      {
        const char *name = split_aliases[sp][a];
        g_autofree char *i = layout == 0 ? g_build_filename (root, "images", name, NULL)
                                         : g_build_filename (root, name, "images", NULL);
        if (!g_file_test (i, G_FILE_TEST_IS_DIR))
          continue;
        *labels = layout == 0 ? g_build_filename (root, "labels", name, NULL)
                              : g_build_filename (root, name, "labels", NULL);
        *images = g_steal_pointer (&i);
        return TRUE;
      }
  return FALSE;
}

static gboolean
yolo_split (VlDetSource *s, const char *root, int sp, GError **error)
{
  g_autofree char *idir = NULL, *ldir = NULL;
  if (!yolo_find_split (root, sp, &idir, &ldir))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s: no %s images for the YOLO labels "
                   "(images/%s/ with labels/%s/, or %s/images/ with %s/labels/%s)", root,
                   sp == 0 ? "training" : "validation", split_names[sp], split_names[sp],
                   split_names[sp], split_names[sp], sp == 0 ? "" : "; valid/ as well");
      return FALSE;
    }
  g_autoptr(GDir) d = g_dir_open (idir, 0, error);
  if (d == NULL)
    return FALSE;
  g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  for (const char *n; (n = g_dir_read_name (d)) != NULL;)
    g_ptr_array_add (names, g_strdup (n));
  g_ptr_array_sort (names, compare_strings);
  g_autoptr(GHashTable) stems = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  for (guint i = 0; i < names->len; i++)
    {
      const char *n = g_ptr_array_index (names, i);
      const char *dot = strrchr (n, '.');
      if (!vl_image_has_extension (n, FALSE))
        continue;
      g_autofree char *stem = g_strndup (n, dot - n);
      g_autofree char *image = g_build_filename (idir, n, NULL);
      g_autofree char *lbase = g_strconcat (stem, ".txt", NULL);
      g_autofree char *label = g_build_filename (ldir, lbase, NULL);
      int w = 0, h = 0, orientation = 1;
      if (probe_image (s, image, &w, &h, &orientation))
        {
          g_autoptr(GArray) raw = g_array_new (FALSE, TRUE, sizeof (RawBox));
          g_array_set_clear_func (raw, raw_clear);
          yolo_read_labels (s, label, (int) s->class_names->len, w, h, raw);
          add_probed_image (s, sp, image, raw, w, h, orientation);
        }
      g_hash_table_add (stems, g_steal_pointer (&stem));
    }
  /* label files without an image */
  g_autoptr(GDir) ld = g_dir_open (ldir, 0, NULL);
  for (const char *n; ld != NULL && (n = g_dir_read_name (ld)) != NULL;)
    if (g_str_has_suffix (n, ".txt"))
      {
        g_autofree char *stem = g_strndup (n, strlen (n) - 4);
        if (!g_hash_table_contains (stems, stem))
          {
            g_autofree char *p = g_build_filename (ldir, n, NULL);
            skip (s, p, "no image %s/%s.* for this label file: dropped", idir, stem);
          }
      }
  return TRUE;
}

static VlDetSource *
read_yolo (const char *root, GError **error)
{
  g_autoptr(VlDetSource) s = source_new ();
  if (!yolo_names (s, root, error) || !yolo_split (s, root, 0, error) ||
      !yolo_split (s, root, 1, error) || !check_splits (s, root, error))
    return NULL;
  g_autofree char *base = g_path_get_basename (root);
  s->description = describe (base, "YOLO", s->class_names->len - 1);
  return g_steal_pointer (&s);
}

VlDetSource *
vl_det_source_read (const char *root, GError **error)
{
  g_autofree char *voc = g_build_filename (root, "Annotations", NULL);
  g_autofree char *yolo = g_build_filename (root, "labels", NULL);
  g_autofree char *yolo_rf = g_build_filename (root, "train", "labels", NULL);
  g_autofree char *coco_json = NULL, *coco_images = NULL;
  if (g_file_test (voc, G_FILE_TEST_IS_DIR))
    return read_voc (root, error);
  if (coco_find_split (root, 0, &coco_json, &coco_images))
    return read_coco (root, error);
  if (g_file_test (yolo, G_FILE_TEST_IS_DIR) || g_file_test (yolo_rf, G_FILE_TEST_IS_DIR))
    return read_yolo (root, error);
  g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s: no boxes to detect (a Pascal VOC folder "
               "with Annotations/; a COCO folder with annotations/instances_train.json or "
               "train/_annotations.coco.json; a YOLO folder with labels/train/ or train/labels/; "
               "or fashion-mnist-scenes)", root);
  return NULL;
}
