/* vl-run.c: run folders on disk (see vl-run.h for the commit protocol and its recovery). */
#include "vl-run.h"
#include "vl-json.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* The files a checkpoint commit may hold, in the order they are written and renamed. */
static const char *const group_names[] = {
  "model.safetensors", "config.json", "optimizer.safetensors", "best.safetensors", "run.json",
  "seg_head.safetensors", "det_head.safetensors",
};
#define METRICS "metrics.jsonl"

static gboolean
io_error (GError **error, const char *path, int err, const char *what)
{
  g_set_error (error, VL_ERROR, VL_ERROR_IO, "%s: %s: %s", path, what, g_strerror (err));
  return FALSE;
}

static gboolean
exists (const char *path)
{
  struct stat st;
  return lstat (path, &st) == 0;
}

static gboolean
is_regular (const char *path)
{
  struct stat st;
  return lstat (path, &st) == 0 && S_ISREG (st.st_mode);
}

static char *
pending_path (const char *dir, const char *name)
{
  g_autofree char *base = g_strdup_printf (".%s.pending", name);
  return g_build_filename (dir, base, NULL);
}

/* ------------------------------------------------------------------ the atomic writer */

static gboolean
write_all (int fd, const char *p, gsize left, const char *path, GError **error)
{
  while (left > 0)
    {
      ssize_t w = write (fd, p, left);
      if (w < 0 && errno == EINTR)
        continue;
      if (w <= 0)
        return io_error (error, path, w < 0 ? errno : ENOSPC, "cannot write");
      p += w;
      left -= (gsize) w;
    }
  return TRUE;
}

/* ------------------------------------------------------------------ fault injection */

static int fault_commit;    /* 0: off */
static int fault_step;
static int commits_begun;   /* commits of this process (atomic) */

static void
fault_init (void)
{
  static gsize once = 0;
  if (!g_once_init_enter (&once))
    return;
  const char *s = g_getenv ("VITLAB_FAULT_COMMIT");
  int c = 1, n = 0;
  if (s && *s && (strchr (s, ':') ? sscanf (s, "%d:%d", &c, &n) == 2 : sscanf (s, "%d", &n) == 1)
      && c > 0 && n > 0)
    {
      fault_commit = c;
      fault_step = n;
    }
  g_once_init_leave (&once, 1);
}

/* Where a commit is: its number in this process and its steps so far. */
typedef struct {
  int commit;
  int step;
} FaultCursor;

/* A step of a commit (cursor NULL: a recovery, not counted): with VITLAB_FAULT_COMMIT naming
 * it, the process ends here as a kill -9 would end it (no cleanup, no atexit). */
static void
fault_point (FaultCursor *cur, const char *what)
{
  if (cur == NULL)
    return;
  cur->step++;
  if (fault_commit == cur->commit && fault_step == cur->step)
    {
      char msg[512];
      int n = g_snprintf (msg, sizeof msg, "vitlab: fault injection: exit at commit %d step %d "
                          "(before %s)\n", cur->commit, cur->step, what);
      if (write (STDERR_FILENO, msg, MIN ((gsize) n, sizeof msg - 1)) < 0)
        {
          /* nothing to do: the exit is the point */
        }
      _exit (9);
    }
}

/* ------------------------------------------------------------------ the lock */

struct _VlRunLock {
  int fd;
};

/* *busy: another open file description holds it. */
static VlRunLock *
try_lock (const char *dir, gboolean *busy, GError **error)
{
  *busy = FALSE;
  int fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    {
      io_error (error, dir, errno, "cannot open the run folder");
      return NULL;
    }
  while (flock (fd, LOCK_EX | LOCK_NB) != 0)
    {
      if (errno == EINTR)
        continue;
      if (errno == EWOULDBLOCK)
        {
          *busy = TRUE;
          close (fd);
          g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                       "%s: another training run is using this folder", dir);
          return NULL;
        }
      break;   /* no locks on this file system: go on unlocked */
    }
  VlRunLock *l = g_new (VlRunLock, 1);
  l->fd = fd;
  return l;
}

VlRunLock *
vl_run_lock (const char *dir, GError **error)
{
  gboolean busy;
  return try_lock (dir, &busy, error);
}

void
vl_run_unlock (VlRunLock *lock)
{
  if (lock == NULL)
    return;
  close (lock->fd);   /* releases the flock */
  g_free (lock);
}

/* ------------------------------------------------------------------ finishing a commit */

/* Steps 3 and 4 of a commit whose manifest is in place; each step can be repeated. */
static gboolean
finish_commit (const char *dir, JsonObject *manifest, FaultCursor *cur, GError **error)
{
  g_autofree char *mpath = g_build_filename (dir, VL_RUN_MANIFEST, NULL);
  JsonNode *fn = json_object_get_member (manifest, "files");
  JsonNode *ln = json_object_get_member (manifest, "metrics_length");
  if (fn == NULL || !JSON_NODE_HOLDS_ARRAY (fn) ||
      (ln && (!JSON_NODE_HOLDS_VALUE (ln) || json_node_get_value_type (ln) != G_TYPE_INT64)))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: not a commit manifest (no \"files\" "
                   "array, or a \"metrics_length\" that is not an integer)", mpath);
      return FALSE;
    }
  JsonArray *files = json_node_get_array (fn);
  for (guint i = 0; i < json_array_get_length (files); i++)
    {
      JsonNode *e = json_array_get_element (files, i);
      const char *name = JSON_NODE_HOLDS_VALUE (e) && json_node_get_value_type (e) == G_TYPE_STRING
                       ? json_node_get_string (e) : NULL;
      gboolean known = FALSE;
      for (guint k = 0; name && k < G_N_ELEMENTS (group_names); k++)
        known |= g_str_equal (name, group_names[k]);
      if (!known)
        {
          g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: lists \"%s\", not a file of a run",
                       mpath, name ? name : "(not a string)");
          return FALSE;
        }
      g_autofree char *pending = pending_path (dir, name);
      g_autofree char *final = g_build_filename (dir, name, NULL);
      g_autofree char *what = g_strdup_printf ("renaming %s", name);
      fault_point (cur, what);
      if (!is_regular (pending))
        continue;   /* renamed already */
      if (g_rename (pending, final) != 0)
        return io_error (error, final, errno, "cannot replace");
    }
  if (ln != NULL)
    {
      int64_t length = json_node_get_int (ln);
      g_autofree char *pending = pending_path (dir, METRICS);
      g_autofree char *final = g_build_filename (dir, METRICS, NULL);
      fault_point (cur, "appending to metrics.jsonl");
      if (is_regular (pending))
        {
          g_autofree char *lines = NULL;
          gsize n = 0;
          g_autoptr(GError) local = NULL;
          if (!g_file_get_contents (pending, &lines, &n, &local))
            {
              g_set_error (error, VL_ERROR, VL_ERROR_IO, "%s: %s", pending, local->message);
              return FALSE;
            }
          int fd = open (final, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
          if (fd < 0)
            return io_error (error, final, errno, "cannot open");
          struct stat st;
          /* cut back to the length of the previous commit: a second run of this step (after an
           * interruption) appends the lines once; a shorter file is appended to as it is */
          gboolean ok = fstat (fd, &st) == 0 &&
                        (st.st_size <= length || ftruncate (fd, length) == 0) &&
                        lseek (fd, 0, SEEK_END) >= 0;
          if (!ok)
            {
              int err = errno;
              close (fd);
              return io_error (error, final, err, "cannot append");
            }
          if (!write_all (fd, lines, n, final, error))
            {
              close (fd);
              return FALSE;
            }
          if (fsync (fd) != 0 || close (fd) != 0)
            return io_error (error, final, errno, "cannot write");
          fault_point (cur, "removing .metrics.jsonl.pending");
          if (g_unlink (pending) != 0)
            return io_error (error, pending, errno, "cannot remove");
        }
    }
  vl_sync_dir (dir);
  fault_point (cur, "removing the manifest");
  if (g_unlink (mpath) != 0 && errno != ENOENT)
    return io_error (error, mpath, errno, "cannot remove");
  vl_sync_dir (dir);
  return TRUE;
}

/* A leftover of an interrupted or failed save: .NAME.pending, its temporary files
 * (.NAME.pending.XXXXXX, ..NAME.pending.XXXXXX) and those of the atomic writer (.NAME.XXXXXX),
 * for the run's own file names and the manifest's; never the manifest itself. */
static gboolean
is_stray (const char *name)
{
  if (name[0] != '.' || g_str_equal (name, VL_RUN_MANIFEST))
    return FALSE;
  while (*name == '.')
    name++;
  const char *known[] = { "model.safetensors", "config.json", "optimizer.safetensors",
                          "best.safetensors", "run.json", "seg_head.safetensors",
                          "det_head.safetensors", METRICS,
                          VL_RUN_MANIFEST + 1 };
  for (guint k = 0; k < G_N_ELEMENTS (known); k++)
    if (g_str_has_prefix (name, known[k]) && name[strlen (known[k])] == '.')
      return TRUE;
  return FALSE;
}

static void
remove_strays (const char *dir)
{
  GDir *d = g_dir_open (dir, 0, NULL);
  if (d == NULL)
    return;
  gboolean removed = FALSE;
  const char *name;
  while ((name = g_dir_read_name (d)) != NULL)
    if (is_stray (name))
      {
        g_autofree char *path = g_build_filename (dir, name, NULL);
        if (is_regular (path) && g_unlink (path) == 0)
          removed = TRUE;
      }
  g_dir_close (d);
  if (removed)
    vl_sync_dir (dir);
}

char *
vl_run_params_sha256 (VlModel *m)
{
  g_autoptr(GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);
  for (int i = 0; i < vl_model_n_tensors (m); i++)
    {
      int64_t numel;
      const float *d = vl_model_tensor_data (m, i, NULL, NULL, &numel);
      const char *name = vl_model_tensor_name (m, i);
      g_checksum_update (sum, (const guchar *) name, strlen (name) + 1);
      g_checksum_update (sum, (const guchar *) d, (gssize) (numel * sizeof (float)));
    }
  return g_strdup (g_checksum_get_string (sum));
}

/* A metadata value of a safetensors file (NULL when unreadable or absent). */
static char *
st_meta (const char *path, const char *key)
{
  g_autoptr(VlSafetensors) st = vl_safetensors_open (path, NULL);
  GHashTable *meta = st ? vl_safetensors_metadata (st) : NULL;
  return g_strdup (meta ? g_hash_table_lookup (meta, key) : NULL);
}

/* The epochs of a metrics file's lines in order; NULL when it cannot be read or a line is not a
 * metrics object. */
static GArray *
read_epochs (const char *path)
{
  g_autofree char *text = NULL;
  if (!g_file_get_contents (path, &text, NULL, NULL))
    return NULL;
  GArray *epochs = g_array_new (FALSE, FALSE, sizeof (int64_t));
  g_auto(GStrv) lines = g_strsplit (text, "\n", -1);
  for (int i = 0; lines[i]; i++)
    {
      if (*lines[i] == '\0')
        continue;
      g_autoptr(JsonParser) lp = json_parser_new ();
      JsonNode *n = NULL;
      if (json_parser_load_from_data (lp, lines[i], -1, NULL) &&
          JSON_NODE_HOLDS_OBJECT (json_parser_get_root (lp)))
        n = json_object_get_member (json_node_get_object (json_parser_get_root (lp)), "epoch");
      if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64)
        {
          g_array_unref (epochs);
          return NULL;
        }
      int64_t e = json_node_get_int (n);
      g_array_append_val (epochs, e);
    }
  return epochs;
}

/* Earlier versions' interrupted renames (see vl-run.h): adopts the pending optimizer state or
 * metrics that belong to the checkpoint in place. Called without a manifest, under the lock. */
static void
salvage_legacy (const char *dir)
{
  g_autofree char *p_model = pending_path (dir, "model.safetensors");
  g_autofree char *p_opt = pending_path (dir, "optimizer.safetensors");
  g_autofree char *p_metrics = pending_path (dir, METRICS);
  g_autofree char *opt = g_build_filename (dir, "optimizer.safetensors", NULL);
  g_autofree char *metrics = g_build_filename (dir, METRICS, NULL);
  if (exists (p_model) || (!is_regular (p_opt) && !is_regular (p_metrics)))
    return;
  if (is_regular (p_opt))
    {
      g_autoptr(VlModel) m = vl_model_load (dir, NULL);
      g_autofree char *sha = m ? vl_run_params_sha256 (m) : NULL;
      g_autofree char *pending_sha = st_meta (p_opt, "model_sha256");
      g_autofree char *current_sha = st_meta (opt, "model_sha256");
      if (sha && g_strcmp0 (pending_sha, sha) == 0 && g_strcmp0 (current_sha, sha) != 0 &&
          g_rename (p_opt, opt) == 0)
        g_debug ("%s: adopted the optimizer state an interrupted save left pending", dir);
    }
  g_autofree char *epoch_s = st_meta (opt, "epoch");
  if (is_regular (p_metrics) && epoch_s)
    {
      int64_t epoch = g_ascii_strtoll (epoch_s, NULL, 10);
      g_autoptr(GArray) pending = read_epochs (p_metrics);
      g_autoptr(GArray) current = read_epochs (metrics);
      gboolean whole = pending && (int64_t) pending->len == epoch;
      for (guint i = 0; whole && i < pending->len; i++)
        whole = g_array_index (pending, int64_t, i) == (int64_t) i;
      if (whole && (current == NULL || current->len < pending->len) &&
          g_rename (p_metrics, metrics) == 0)
        g_debug ("%s: adopted the metrics.jsonl an interrupted save left pending", dir);
    }
  vl_sync_dir (dir);
}

gboolean
vl_run_recover (const char *dir, VlRunLock *lock, GError **error)
{
  if (dir == NULL || !g_file_test (dir, G_FILE_TEST_IS_DIR))
    return TRUE;
  g_autoptr(VlRunLock) own = NULL;
  if (lock == NULL)
    {
      gboolean busy;
      g_autoptr(GError) local = NULL;
      own = try_lock (dir, &busy, &local);
      if (own == NULL)
        return TRUE;   /* a trainer holds it (or the folder cannot be opened): leave it alone */
    }
  g_autofree char *mpath = g_build_filename (dir, VL_RUN_MANIFEST, NULL);
  if (exists (mpath))
    {
      JsonObject *root = NULL;
      g_autoptr(JsonParser) p = vl_json_load_object_file (mpath, &root, error);
      if (p == NULL || !finish_commit (dir, root, NULL, error))
        {
          g_prefix_error (error, "%s: cannot finish an interrupted save: ", dir);
          return FALSE;
        }
    }
  else
    salvage_legacy (dir);
  remove_strays (dir);
  return TRUE;
}

gboolean
vl_run_has_checkpoint (const char *dir)
{
  g_autofree char *model = g_build_filename (dir, "model.safetensors", NULL);
  g_autofree char *opt = g_build_filename (dir, "optimizer.safetensors", NULL);
  return exists (model) || exists (opt);
}

gboolean
vl_run_begin (const char *dir, gboolean resume, VlRunLock **lock, gboolean *has_checkpoint,
              GError **error)
{
  *lock = NULL;
  *has_checkpoint = FALSE;
  if (g_mkdir_with_parents (dir, 0755) != 0)
    return io_error (error, dir, errno, "cannot create the run folder");
  if (access (dir, W_OK) != 0)
    return io_error (error, dir, errno, "cannot write in the run folder");
  g_autoptr(VlRunLock) l = vl_run_lock (dir, error);
  if (l == NULL || !vl_run_recover (dir, l, error))
    return FALSE;
  gboolean has = vl_run_has_checkpoint (dir);
  g_autofree char *run_json = g_build_filename (dir, "run.json", NULL);
  if (resume)
    {
      const char *need[] = { "run.json", "model.safetensors", "optimizer.safetensors" };
      for (guint i = 0; i < (has ? G_N_ELEMENTS (need) : 1); i++)
        {
          g_autofree char *p = g_build_filename (dir, need[i], NULL);
          if (!exists (p))
            {
              g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s: nothing to resume (no %s)",
                           dir, need[i]);
              return FALSE;
            }
        }
    }
  else if (has)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   exists (run_json) ? "%s: already holds a run; resume it or choose another "
                   "folder" : "%s: already holds a model (model.safetensors); choose another "
                   "folder", dir);
      return FALSE;
    }
  else
    {
      /* what a run that never committed a checkpoint may have left (the new run's commits
       * append to metrics.jsonl); run.json and config.json are rewritten */
      const char *left[] = { METRICS, "best.safetensors" };
      for (guint i = 0; i < G_N_ELEMENTS (left); i++)
        {
          g_autofree char *p = g_build_filename (dir, left[i], NULL);
          if (g_unlink (p) != 0 && errno != ENOENT)
            return io_error (error, p, errno, "cannot remove");
        }
    }
  *has_checkpoint = has;
  *lock = g_steal_pointer (&l);
  return TRUE;
}

/* ------------------------------------------------------------------ the commit */

gboolean
vl_run_commit_checkpoint (const char *dir, VlModel *model, VlSafetensorsWriter *optimizer,
                          gboolean best, const char *run_json, const char *metrics,
                          GError **error)
{
  return vl_run_commit_checkpoint_with (dir, model, optimizer, NULL, NULL, best, run_json,
                                        metrics, error);
}

gboolean
vl_run_commit_checkpoint_with (const char *dir, VlModel *model, VlSafetensorsWriter *optimizer,
                               VlSafetensorsWriter *seg_head, VlSegHead *head, gboolean best,
                               const char *run_json, const char *metrics, GError **error)
{
  return vl_run_commit_checkpoint_head (dir, model, optimizer, seg_head, VL_RUN_SEG_HEAD, head,
                                        best, run_json, metrics, error);
}

gboolean
vl_run_commit_checkpoint_head (const char *dir, VlModel *model, VlSafetensorsWriter *optimizer,
                               VlSafetensorsWriter *seg_head, const char *head_file,
                               VlSegHead *head, gboolean best, const char *run_json,
                               const char *metrics, GError **error)
{
  fault_init ();
  FaultCursor cur = { g_atomic_int_add (&commits_begun, 1) + 1, 0 };
  g_autoptr(GPtrArray) files = g_ptr_array_new ();
  g_autofree char *p_model = pending_path (dir, "model.safetensors");
  g_autofree char *p_config = pending_path (dir, "config.json");
  g_autofree char *p_opt = pending_path (dir, "optimizer.safetensors");
  g_autofree char *p_best = pending_path (dir, "best.safetensors");
  g_autofree char *p_run = pending_path (dir, "run.json");
  g_autofree char *p_seg = pending_path (dir, head_file);
  g_autofree char *p_metrics = pending_path (dir, METRICS);
  g_autofree char *final_metrics = g_build_filename (dir, METRICS, NULL);
  g_autofree char *mpath = g_build_filename (dir, VL_RUN_MANIFEST, NULL);
  gboolean with_metrics = metrics != NULL && metrics[0] != '\0';

  /* 1. the group under pending names */
  fault_point (&cur, "writing .model.safetensors.pending and .config.json.pending");
  gboolean ok = vl_model_save_checkpoint (model, p_model, p_config, error);
  g_ptr_array_add (files, "model.safetensors");
  g_ptr_array_add (files, "config.json");
  if (ok)
    {
      fault_point (&cur, "writing .optimizer.safetensors.pending");
      ok = vl_safetensors_writer_write (optimizer, p_opt, error);
      g_ptr_array_add (files, "optimizer.safetensors");
    }
  if (ok && seg_head)
    {
      fault_point (&cur, g_str_equal (head_file, VL_RUN_DET_HEAD)
                         ? "writing .det_head.safetensors.pending"
                         : "writing .seg_head.safetensors.pending");
      ok = vl_safetensors_writer_write (seg_head, p_seg, error);
      g_ptr_array_add (files, (gpointer) head_file);
    }
  if (ok && best)
    {
      fault_point (&cur, "writing .best.safetensors.pending");
      ok = head ? vl_model_save_checkpoint_with_seg_head (model, head, p_best, NULL, error)
                : vl_model_save_checkpoint (model, p_best, NULL, error);
      g_ptr_array_add (files, "best.safetensors");
    }
  if (ok && run_json)
    {
      fault_point (&cur, "writing .run.json.pending");
      ok = vl_write_file_atomic (p_run, run_json, -1, error);
      g_ptr_array_add (files, "run.json");
    }
  if (ok && with_metrics)
    {
      fault_point (&cur, "writing .metrics.jsonl.pending");
      ok = vl_write_file_atomic (p_metrics, metrics, -1, error);
    }

  /* 2. the manifest: its rename is the commit point */
  g_autoptr(JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "format");
  json_builder_add_string_value (b, "vitlab-commit");
  json_builder_set_member_name (b, "files");
  json_builder_begin_array (b);
  for (guint i = 0; i < files->len; i++)
    json_builder_add_string_value (b, g_ptr_array_index (files, i));
  json_builder_end_array (b);
  if (with_metrics)
    {
      struct stat st;
      json_builder_set_member_name (b, "metrics_length");
      json_builder_add_int_value (b, stat (final_metrics, &st) == 0 ? (int64_t) st.st_size : 0);
    }
  json_builder_end_object (b);
  g_autoptr(JsonNode) root = json_builder_get_root (b);
  g_autofree char *text = json_to_string (root, FALSE);
  if (ok)
    {
      fault_point (&cur, "writing the manifest");
      ok = vl_write_file_atomic (mpath, text, -1, error);
    }
  if (!ok)
    {
      const char *all[] = { p_model, p_config, p_opt, p_seg, p_best, p_run, p_metrics };
      for (guint i = 0; i < G_N_ELEMENTS (all); i++)
        if (is_regular (all[i]))
          g_unlink (all[i]);
      return FALSE;
    }

  /* 3-4. into place (what vl_run_recover repeats after an interruption) */
  return finish_commit (dir, json_node_get_object (root), &cur, error);
}

/* ------------------------------------------------------------------ metrics */

gboolean
vl_run_trim_metrics (const char *dir, int epochs, GError **error)
{
  g_autofree char *path = g_build_filename (dir, METRICS, NULL);
  g_autofree char *text = NULL;
  if (!g_file_get_contents (path, &text, NULL, NULL))
    return TRUE;
  GString *kept = g_string_new (NULL);
  g_autoptr(GHashTable) seen = g_hash_table_new (g_direct_hash, g_direct_equal);
  g_auto(GStrv) lines = g_strsplit (text, "\n", -1);
  for (int i = 0; lines[i]; i++)
    {
      g_autoptr(JsonParser) lp = json_parser_new ();
      if (*lines[i] == '\0' || !json_parser_load_from_data (lp, lines[i], -1, NULL) ||
          !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (lp)))
        continue;
      JsonObject *o = json_node_get_object (json_parser_get_root (lp));
      JsonNode *n = json_object_has_member (o, "epoch") ? json_object_get_member (o, "epoch")
                                                        : NULL;
      if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64)
        continue;
      int64_t e = json_node_get_int (n);
      if (e < 0 || e >= epochs || g_hash_table_contains (seen, GINT_TO_POINTER ((int) e)))
        continue;
      g_hash_table_add (seen, GINT_TO_POINTER ((int) e));
      g_string_append (kept, lines[i]);
      g_string_append_c (kept, '\n');
    }
  gboolean ok = TRUE;
  if (!g_str_equal (kept->str, text))
    ok = vl_write_file_atomic (path, kept->str, (gssize) kept->len, error);
  g_string_free (kept, TRUE);
  return ok;
}

/* ------------------------------------------------------------------ loading */

VlModel *
vl_run_load_model (const char *run_dir, char ***class_names, GError **error)
{
  if (!vl_run_recover (run_dir, NULL, error))
    return NULL;
  /* runs are saved losslessly (vl_model_save_checkpoint): the folder loads as it is */
  g_autofree char *cfg_path = g_build_filename (run_dir, "config.json", NULL);
  JsonObject *root = NULL;
  g_autoptr(JsonParser) parser = vl_json_load_object_file (cfg_path, &root, error);
  if (parser == NULL)
    return NULL;
  g_autoptr(VlModel) m = vl_model_load (run_dir, error);
  if (m == NULL)
    return NULL;
  if (class_names)
    {
      *class_names = NULL;
      JsonNode *n = json_object_has_member (root, "label_names")
                  ? json_object_get_member (root, "label_names") : NULL;
      if (n && JSON_NODE_HOLDS_ARRAY (n))
        {
          JsonArray *a = json_node_get_array (n);
          guint len = json_array_get_length (a);
          char **v = g_new0 (char *, len + 1);
          for (guint i = 0; i < len; i++)
            {
              JsonNode *e = json_array_get_element (a, i);
              const char *s = JSON_NODE_HOLDS_VALUE (e) &&
                              json_node_get_value_type (e) == G_TYPE_STRING
                            ? json_node_get_string (e) : NULL;
              v[i] = g_strdup (s ? s : "");
            }
          *class_names = v;
        }
      if (*class_names && (int) g_strv_length (*class_names) != vl_model_num_classes (m))
        g_clear_pointer (class_names, g_strfreev);
    }
  return g_steal_pointer (&m);
}

/* ------------------------------------------------------------------ paths */

char *
vl_run_absolute_path (const char *path)
{
  if (path == NULL)
    return NULL;
  if (g_path_is_absolute (path) || !g_file_test (path, G_FILE_TEST_EXISTS))
    return g_strdup (path);
  return g_canonicalize_filename (path, NULL);
}

char *
vl_run_absolute_spec (const char *spec)
{
  if (spec == NULL)
    return NULL;
  if (g_file_test (spec, G_FILE_TEST_EXISTS))
    return vl_run_absolute_path (spec);
  const char *colon = strchr (spec, ':');
  if (colon == NULL || colon == spec)
    return g_strdup (spec);
  for (const char *p = spec; p < colon; p++)
    if (!g_ascii_isalnum (*p) && *p != '-' && *p != '_')
      return g_strdup (spec);
  if (!g_file_test (colon + 1, G_FILE_TEST_EXISTS))
    return g_strdup (spec);
  g_autofree char *abs = vl_run_absolute_path (colon + 1);
  return g_strdup_printf ("%.*s:%s", (int) (colon - spec), spec, abs);
}
