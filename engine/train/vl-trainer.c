/* vl-trainer.c: the training loop on its own thread, its event queue, evaluation, run folders.
 *
 * The files of a run folder are written, committed and recovered by vl-run.c; this file decides
 * what goes into them.
 *
 * Threads: the caller's (UI or CLI) creates, controls and drains; the worker owns the model, the
 * dataset, the loaders and the cache, and talks to the caller only through `lock`: the event
 * queue, the control requests (pause, stop, unlock) and the state. */
#include "vl-trainer-private.h"
#include "vl-eta.h"
#include "vl-json.h"
#include "vl-conv.h"
#include "vl-safetensors.h"
#include "vl-sync.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define GIB ((int64_t) 1 << 30)

/* ------------------------------------------------------------------ names */

const char *
vl_train_event_kind_name (VlTrainEventKind kind)
{
  static const char *names[] = { "ready", "lock", "step", "epoch", "probes", "message", "paused",
                                 "resumed", "finished", "progress" };
  return (guint) kind < G_N_ELEMENTS (names) ? names[kind] : "?";
}

const char *
vl_train_phase_name (VlTrainPhase phase)
{
  return phase == VL_TRAIN_PHASE_CACHE ? "caching" : "validating";
}

/* ------------------------------------------------------------------ files */

static char *
sha256_file (const char *path)
{
  g_autofree char *file = g_file_test (path, G_FILE_TEST_IS_DIR)
                          ? g_build_filename (path, "model.safetensors", NULL) : g_strdup (path);
  FILE *f = fopen (file, "rb");
  if (f == NULL)
    return NULL;
  g_autoptr(GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);
  g_autofree guchar *buf = g_malloc (1 << 20);
  size_t n;
  while ((n = fread (buf, 1, 1 << 20, f)) > 0)
    g_checksum_update (sum, buf, n);
  gboolean bad = ferror (f);
  fclose (f);
  return bad ? NULL : g_strdup (g_checksum_get_string (sum));
}

/* Copies every tensor of the model from a safetensors file (same names and shapes, nothing
 * missing, nothing left over). */
static gboolean
load_tensors_into (VlModel *m, const char *path, GError **error)
{
  g_autoptr(VlSafetensors) st = vl_safetensors_open (path, error);
  if (st == NULL)
    return FALSE;
  for (int i = 0; i < vl_model_n_tensors (m); i++)
    {
      int ndim;
      int64_t shape[VL_MAX_DIMS], numel;
      float *d = vl_model_tensor_data (m, i, &ndim, shape, &numel);
      const char *name = vl_model_tensor_name (m, i);
      const VlTensorInfo *t = vl_safetensors_lookup (st, name);
      gboolean same = t != NULL && t->ndim == ndim && t->dtype == VL_DTYPE_F32;
      for (int k = 0; same && k < ndim; k++)
        same = t->shape[k] == shape[k];
      if (!same)
        {
          g_autofree char *want = vl_shape_to_string (ndim, shape);
          g_autofree char *found = t ? vl_shape_to_string (t->ndim, t->shape) : NULL;
          g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                       "%s: tensor %s is %s%s, expected F32 %s", path, name,
                       t ? vl_dtype_name (t->dtype) : "missing", t ? found : "", want);
          return FALSE;
        }
      vl_tensor_to_f32 (t, d);
    }
  if ((int) vl_safetensors_n_tensors (st) != vl_model_n_tensors (m))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                   "%s: holds %u tensors, the model has %d", path, vl_safetensors_n_tensors (st),
                   vl_model_n_tensors (m));
      return FALSE;
    }
  return TRUE;
}

/* ------------------------------------------------------------------ events */

void
vl_train_event_free (VlTrainEvent *ev)
{
  if (ev == NULL)
    return;
  g_strfreev (ev->class_names);
  g_strfreev (ev->value_names);
  g_strfreev (ev->skipped);
  g_free (ev->points);
  g_free (ev->group_grad_norms);
  vl_epoch_metrics_free (ev->metrics);
  g_free (ev->rollout);
  g_free (ev->pool);
  g_free (ev->probe_labels);
  g_free (ev->probe_predicted);
  g_strfreev (ev->probe_names);
  g_free (ev->user_attn);
  g_free (ev->user_rollout);
  g_free (ev->user_pool);
  g_free (ev->message);
  g_clear_error (&ev->error);
  g_free (ev);
}

/* ------------------------------------------------------------------ the trainer */

struct _VlTrainer {
  gint            ref_count;
  VlTrainConfig   cfg;
  VlModel        *model;        /* the worker's while it runs */
  VlHead         *head;         /* the task's head, once the worker has ended (vl-head.h) */
  VlDataset      *ds;
  VlTrainerNotify notify;
  gpointer        notify_data;
  GDestroyNotify  notify_destroy;
  GCancellable   *cancel;       /* stop */
  GThread        *thread;

  GMutex          lock;         /* everything below (through vl-sync.h, for ThreadSanitizer) */
  GCond           cond;         /* events queued, pause lifted, worker done */
  GQueue          events;
  gboolean        notified;     /* a notification went out since the last drain */
  VlTrainerState  state;
  gboolean        done;         /* the worker has returned */
  gboolean        pause_req;
  int             unlock_req;   /* -1: none */
  /* the caller's probe image (vl_trainer_set_user_probe) until the worker takes it */
  float          *user_px;      /* (user_c, user_h, user_w); NULL: none (or taken) */
  int             user_c, user_h, user_w;
  guint64         user_serial;  /* of the latest call; the worker compares its own */
  /* the run folder (vl_run_begin in vl_trainer_start): locked until the worker ends */
  VlRunLock      *run_lock;
  gboolean        run_has_checkpoint;   /* resume from it; FALSE: a resume starts at epoch 0 */
};

/* Queues an event (taking it); merges it with the tail when both are steps or progress of the
 * same pass, replaces an undrained PROBES event. Notifies outside the lock. */
static void
post (VlTrainer *t, VlTrainEvent *ev)
{
  gboolean wake = FALSE;
  vl_mutex_lock (&t->lock);
  VlTrainEvent *tail = g_queue_peek_tail (&t->events);
  if (ev->kind == VL_TRAIN_EVENT_PROGRESS && tail && tail->kind == VL_TRAIN_EVENT_PROGRESS &&
      tail->phase == ev->phase)
    {
      *tail = *ev;   /* holds no pointers */
      g_free (ev);
      vl_mutex_unlock (&t->lock);
      return;        /* the undrained tail has notified already */
    }
  if (ev->kind == VL_TRAIN_EVENT_PROBES)
    for (GList *l = t->events.head; l; l = l->next)
      if (((VlTrainEvent *) l->data)->kind == VL_TRAIN_EVENT_PROBES)
        {
          vl_train_event_free (l->data);
          g_queue_delete_link (&t->events, l);
          break;
        }
  g_queue_push_tail (&t->events, ev);
  if (!t->notified)
    wake = t->notified = TRUE;
  g_cond_broadcast (&t->cond);
  vl_mutex_unlock (&t->lock);
  if (wake && t->notify)
    t->notify (t, t->notify_data);
}

static VlTrainEvent *
event_new (VlTrainEventKind kind, int epoch, int64_t step)
{
  VlTrainEvent *ev = g_new0 (VlTrainEvent, 1);
  ev->kind = kind;
  ev->epoch = epoch;
  ev->step = step;
  return ev;
}

VlTrainer *
vl_trainer_new (const VlTrainConfig *config, GError **error)
{
  if (!vl_train_config_check (config, error))
    return NULL;
  VlTrainer *t = g_new0 (VlTrainer, 1);
  t->ref_count = 1;
  vl_train_config_copy (&t->cfg, config);
  t->cancel = g_cancellable_new ();
  g_mutex_init (&t->lock);
  g_cond_init (&t->cond);
  g_queue_init (&t->events);
  t->state = VL_TRAINER_IDLE;
  t->unlock_req = -1;
  return t;
}

VlTrainer *
vl_trainer_ref (VlTrainer *t)
{
  g_atomic_int_inc (&t->ref_count);
  return t;
}

void
vl_trainer_unref (VlTrainer *t)
{
  if (t == NULL || !g_atomic_int_dec_and_test (&t->ref_count))
    return;
  vl_trainer_stop (t);
  vl_trainer_join (t);
  g_queue_clear_full (&t->events, (GDestroyNotify) vl_train_event_free);
  g_free (t->user_px);
  if (t->notify_destroy)
    t->notify_destroy (t->notify_data);
  vl_model_free (t->model);
  vl_head_free (t->head);
  vl_dataset_free (t->ds);
  vl_run_unlock (t->run_lock);
  g_object_unref (t->cancel);
  vl_train_config_clear (&t->cfg);
  g_mutex_clear (&t->lock);
  g_cond_clear (&t->cond);
  g_free (t);
}

void
vl_trainer_take_model (VlTrainer *t, VlModel *model)
{
  g_return_if_fail (vl_trainer_get_state (t) == VL_TRAINER_IDLE);
  vl_model_free (t->model);
  t->model = model;
}

void
vl_trainer_take_dataset (VlTrainer *t, VlDataset *dataset)
{
  g_return_if_fail (vl_trainer_get_state (t) == VL_TRAINER_IDLE);
  vl_dataset_free (t->ds);
  t->ds = dataset;
}

void
vl_trainer_set_notify (VlTrainer *t, VlTrainerNotify notify, gpointer user_data,
                       GDestroyNotify destroy)
{
  g_return_if_fail (vl_trainer_get_state (t) == VL_TRAINER_IDLE);
  if (t->notify_destroy)
    t->notify_destroy (t->notify_data);
  t->notify = notify;
  t->notify_data = user_data;
  t->notify_destroy = destroy;
}

void
vl_trainer_pause (VlTrainer *t)
{
  vl_mutex_lock (&t->lock);
  if (!t->done)
    t->pause_req = TRUE;
  vl_mutex_unlock (&t->lock);
}

void
vl_trainer_resume (VlTrainer *t)
{
  vl_mutex_lock (&t->lock);
  t->pause_req = FALSE;
  g_cond_broadcast (&t->cond);
  vl_mutex_unlock (&t->lock);
}

void
vl_trainer_stop (VlTrainer *t)
{
  g_cancellable_cancel (t->cancel);
  vl_mutex_lock (&t->lock);
  t->pause_req = FALSE;          /* a paused worker stops where it is: no batch in between */
  g_cond_broadcast (&t->cond);
  vl_mutex_unlock (&t->lock);
}

void
vl_trainer_set_unlock (VlTrainer *t, int unlocked)
{
  g_return_if_fail (unlocked >= 0);
  vl_mutex_lock (&t->lock);
  t->unlock_req = MIN (unlocked, VL_UNLOCK_ALL);
  vl_mutex_unlock (&t->lock);
}

guint64
vl_trainer_set_user_probe (VlTrainer *t, const float *pixels, int channels, int height,
                           int width)
{
  g_return_val_if_fail (t != NULL, 0);
  g_return_val_if_fail (pixels == NULL || (channels > 0 && height > 0 && width > 0), 0);
  /* the copy outside the lock: the worker only ever waits for a pointer swap */
  float *copy = pixels ? g_memdup2 (pixels, sizeof (float) * channels * height * width) : NULL;
  vl_mutex_lock (&t->lock);
  float *old = t->user_px;
  t->user_px = copy;
  t->user_c = channels;
  t->user_h = height;
  t->user_w = width;
  guint64 serial = ++t->user_serial;
  g_cond_broadcast (&t->cond);   /* a paused worker computes it at once */
  vl_mutex_unlock (&t->lock);
  g_free (old);
  return pixels ? serial : 0;
}

VlTrainerState
vl_trainer_get_state (VlTrainer *t)
{
  vl_mutex_lock (&t->lock);
  VlTrainerState s = t->state;
  vl_mutex_unlock (&t->lock);
  return s;
}

GPtrArray *
vl_trainer_drain (VlTrainer *t)
{
  GPtrArray *out = g_ptr_array_new_with_free_func ((GDestroyNotify) vl_train_event_free);
  vl_mutex_lock (&t->lock);
  VlTrainEvent *ev;
  while ((ev = g_queue_pop_head (&t->events)))
    g_ptr_array_add (out, ev);
  t->notified = FALSE;
  vl_mutex_unlock (&t->lock);
  return out;
}

gboolean
vl_trainer_wait (VlTrainer *t, gint64 timeout_us)
{
  gint64 end = timeout_us < 0 ? G_MAXINT64 : g_get_monotonic_time () + timeout_us;
  vl_mutex_lock (&t->lock);
  while (g_queue_is_empty (&t->events))
    {
      if (t->done && t->state == VL_TRAINER_FINISHED)
        break;   /* nothing will ever come */
      if (timeout_us < 0)
        vl_cond_wait (&t->cond, &t->lock);
      else if (!vl_cond_wait_until (&t->cond, &t->lock, end))
        break;
    }
  gboolean any = !g_queue_is_empty (&t->events);
  vl_mutex_unlock (&t->lock);
  return any;
}

void
vl_trainer_join (VlTrainer *t)
{
  vl_mutex_lock (&t->lock);
  while (t->state != VL_TRAINER_IDLE && !t->done)
    vl_cond_wait (&t->cond, &t->lock);
  GThread *th = g_steal_pointer (&t->thread);
  vl_mutex_unlock (&t->lock);
  if (th)
    g_thread_join (th);
}

VlModel *
vl_trainer_get_model (VlTrainer *t)
{
  vl_mutex_lock (&t->lock);
  gboolean done = t->done;
  vl_mutex_unlock (&t->lock);
  return done ? t->model : NULL;
}

VlSegHead *
vl_trainer_get_seg_head (VlTrainer *t)
{
  vl_mutex_lock (&t->lock);
  gboolean done = t->done;
  vl_mutex_unlock (&t->lock);
  return done ? vl_head_seg (t->head) : NULL;
}

VlDetHead *
vl_trainer_get_det_head (VlTrainer *t)
{
  vl_mutex_lock (&t->lock);
  gboolean done = t->done;
  vl_mutex_unlock (&t->lock);
  return done ? vl_head_det (t->head) : NULL;
}

VlDataset *
vl_trainer_get_dataset (VlTrainer *t)
{
  vl_mutex_lock (&t->lock);
  gboolean done = t->done;
  vl_mutex_unlock (&t->lock);
  return done ? t->ds : NULL;
}

const VlTrainConfig *
vl_trainer_get_config (VlTrainer *t)
{
  return &t->cfg;
}

/* ------------------------------------------------------------------ the worker */

typedef enum { OK, STOPPED, FAILED } Outcome;


static void
message (Run *r, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

static void
message (Run *r, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  VlTrainEvent *ev = event_new (VL_TRAIN_EVENT_MESSAGE, r->epoch, r->step);
  ev->message = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  post (r->t, ev);
}

/* A pass of `total` images begins: PROGRESS events from now on, with an ETA of its own */
static void
progress_begin (Run *r, VlTrainPhase phase, int64_t total)
{
  r->phase = phase;
  r->phase_done = 0;
  r->progress_posted = g_get_monotonic_time ();
  vl_eta_start (&r->eta, total, r->progress_posted);
}

/* n more images of the pass are done: a PROGRESS event every 0.2 s at most, and at its end */
static void
progress_add (Run *r, int n)
{
  r->phase_done += n;
  gint64 now = g_get_monotonic_time ();
  double eta = vl_eta_update (&r->eta, r->phase_done, now);
  if (now - r->progress_posted < 200000 && r->phase_done < r->eta.total)
    return;
  r->progress_posted = now;
  VlTrainEvent *ev = event_new (VL_TRAIN_EVENT_PROGRESS, r->epoch, r->step);
  ev->phase = r->phase;
  ev->done = r->phase_done;
  ev->total = r->eta.total;
  ev->eta_s = eta;
  ev->images_per_s = vl_eta_rate (&r->eta);
  post (r->t, ev);
}

/* A model call failed: STOPPED when the stop interrupted it mid-pass, else FAILED. */
static Outcome
failed_or_stopped (GError **error)
{
  if (error && g_error_matches (*error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    {
      g_clear_error (error);
      return STOPPED;
    }
  return FAILED;
}

static gboolean
cancelled (Run *r)
{
  return g_cancellable_is_cancelled (r->t->cancel);
}

static void run_probes (Run *r);

/* A probe image newer than the one the worker has (under the lock). */
static gboolean
user_probe_pending_locked (Run *r)
{
  return r->cfg->probe_every > 0 && r->t->user_serial != r->user_serial;
}

/* Called between batches: runs the probes at once when the caller has given a new probe
 * image (rather than at the next refresh), waits while paused (running any image given
 * meanwhile); TRUE when the run must stop. */
static gboolean
should_stop (Run *r)
{
  VlTrainer *t = r->t;
  if (cancelled (r))
    return TRUE;
  vl_mutex_lock (&t->lock);
  gboolean pause = t->pause_req, probe = user_probe_pending_locked (r);
  if (pause)
    t->state = VL_TRAINER_PAUSED;
  vl_mutex_unlock (&t->lock);
  if (probe)
    run_probes (r);
  if (!pause)
    return FALSE;
  post (t, event_new (VL_TRAIN_EVENT_PAUSED, r->epoch, r->step));
  vl_mutex_lock (&t->lock);
  while (t->pause_req && !g_cancellable_is_cancelled (t->cancel))
    {
      if (user_probe_pending_locked (r))
        {
          vl_mutex_unlock (&t->lock);
          run_probes (r);
          vl_mutex_lock (&t->lock);
          continue;
        }
      vl_cond_wait (&t->cond, &t->lock);
    }
  t->state = VL_TRAINER_RUNNING;
  vl_mutex_unlock (&t->lock);
  post (t, event_new (VL_TRAIN_EVENT_RESUMED, r->epoch, r->step));
  r->last_step_time = g_get_monotonic_time ();   /* the pause is not training time */
  return cancelled (r);
}

/* The task's head lives outside the model (segment, detect): it reads the final-norm token
 * grid, is the last layer group, and is cached from the tokens when only it trains. */
static gboolean
head_outside (const Run *r)
{
  return !vl_head_in_model (r->head);
}

static void
run_clear (Run *r)
{
  vl_loader_free (r->train_loader);
  vl_loader_free (r->val_loader);
  vl_loader_free (r->order_loader);
  vl_dataset_free (r->order_ds);
  vl_feat_cache_clear (&r->ctrain);
  vl_feat_cache_clear (&r->cval);
  vl_feat_cache_clear (&r->ntrain);
  vl_feat_cache_clear (&r->nval);
  vl_feat_batch_clear (&r->fbatch);
  if (r->head && r->t->head == NULL)
    r->t->head = r->head;   /* handed back with the model (vl_trainer_get_seg_head) */
  else
    vl_head_free (r->head);
  g_free (r->sched);
  g_free (r->scales);
  g_free (r->gnorms);
  vl_probe_set_clear (&r->probes);
  vl_run_record_clear (&r->rec);
  if (r->metrics_lines)
    g_ptr_array_unref (r->metrics_lines);
}

static VlLoader *
train_loader (Run *r)
{
  if (r->train_loader == NULL)
    r->train_loader = vl_loader_new (r->ds, VL_SPLIT_TRAIN, &r->pp, r->cfg->augment,
                                     r->cfg->batch_size, TRUE, r->cfg->seed);
  return r->train_loader;
}

static VlLoader *
val_loader (Run *r)
{
  if (r->val_loader == NULL)
    r->val_loader = vl_loader_new (r->ds, VL_SPLIT_VAL, &r->pp, VL_AUGMENT_NONE,
                                   r->cfg->batch_size, FALSE, r->cfg->seed);
  return r->val_loader;
}

/* The cached path trains in the loader's order without decoding anything: a loader over a
 * dataset of one float per training image, with the same labels, seed and batch size, yields
 * the same batches of indices (its order is a function of seed, epoch and the item count). */
static VlLoader *
order_loader (Run *r)
{
  if (r->order_loader == NULL)
    {
      g_autofree float *px = g_new0 (float, MAX (r->n_train, 1));
      g_autofree int *labels = g_new (int, MAX (r->n_train, 1));
      for (int i = 0; i < r->n_train; i++)
        labels[i] = vl_dataset_label (r->ds, VL_SPLIT_TRAIN, i);
      r->order_ds = vl_dataset_new_memory (vl_dataset_n_classes (r->ds), NULL, 1, 1, px, labels,
                                           r->n_train, NULL, NULL, 0);
      r->order_loader = vl_loader_new (r->order_ds, VL_SPLIT_TRAIN, NULL, VL_AUGMENT_NONE,
                                       r->cfg->batch_size, TRUE, r->cfg->seed);
    }
  return r->order_loader;
}

/* ---- setup ---- */

/* From scratch: the backbone's geometry (or the config's) with timm's initialisation. */
static VlModel *
random_model (const VlTrainConfig *c, GError **error)
{
  VlGeometry geo;
  if (c->backbone)
    {
      g_autoptr(VlModel) shape = vl_model_load (c->backbone, error);
      if (shape == NULL)
        return NULL;
      geo = *vl_model_geometry (shape);   /* strings are copied by vl_model_new_random */
      return vl_model_new_random (&geo, 1, c->seed);
    }
  if (!vl_geometry_parse (c->geometry, &geo, error))
    return NULL;
  return vl_model_new_random (&geo, 1, c->seed);
}

/* The task's outputs: K classes, or K regression targets standardised by the training split's
 * mean and std. */
static gboolean
setup_task (Run *r, GError **error)
{
  const VlTrainConfig *c = r->cfg;
  r->task = (VlTaskSpec) { .kind = c->task, .label_smoothing = (float) c->label_smoothing,
                           .reg_loss = c->reg_loss };
  if (c->task != VL_TASK_SEGMENT && c->task != VL_TASK_DETECT &&
      vl_dataset_is_segmentation (r->ds))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "%s: a segmentation dataset (masks, no "
                   "image labels): train it with --task segment",
                   vl_dataset_description (r->ds));
      return FALSE;
    }
  if (c->task == VL_TASK_DETECT)
    {
      if (!vl_dataset_is_detection (r->ds))
        {
          g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "%s: no boxes to detect (open it for "
                       "the detect task)", vl_dataset_description (r->ds));
          return FALSE;
        }
      r->K = vl_dataset_n_classes (r->ds);
      r->max_boxes = MAX (vl_dataset_max_boxes (r->ds), 1);
    }
  else if (vl_dataset_is_detection (r->ds))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "%s: a detection dataset (boxes): train "
                   "it with --task detect", vl_dataset_description (r->ds));
      return FALSE;
    }
  else if (c->task == VL_TASK_SEGMENT)
    {
      if (!vl_dataset_is_segmentation (r->ds))
        {
          g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "%s: no masks to segment (a Pascal "
                       "VOC folder, images/ with masks/, or fashion-mnist-scenes)",
                       vl_dataset_description (r->ds));
          return FALSE;
        }
      r->K = vl_dataset_n_classes (r->ds);
    }
  else if (c->task == VL_TASK_CLASSIFY)
    {
      r->K = vl_dataset_n_classes (r->ds);
      if (r->K < 2)
        {
          g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "%s: one class only: nothing to "
                       "classify%s", vl_dataset_description (r->ds),
                       vl_dataset_n_values (r->ds) ? " (it has regression targets: --task "
                       "regress)" : "");
          return FALSE;
        }
    }
  else
    {
      r->K = vl_dataset_n_values (r->ds);
      if (r->K == 0)
        {
          g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                       "%s: no regression targets (a folder with targets.csv, or "
                       "fashion-mnist-rotate)", vl_dataset_description (r->ds));
          return FALSE;
        }
      r->rec.value_names = g_new0 (char *, r->K + 1);
      for (int j = 0; j < r->K; j++)
        r->rec.value_names[j] = g_strdup (vl_dataset_value_name (r->ds, j));
      r->rec.tmean = g_new (float, r->K);
      r->rec.tstd = g_new (float, r->K);
      vl_task_target_stats (r->ds, r->rec.tmean, r->rec.tstd);
      r->task.mean = r->rec.tmean;
      r->task.std = r->rec.tstd;
    }
  r->task.n_outputs = r->K;
  return TRUE;
}

/* The task's head (vl-head.h): the model's own (classify, regress), or none on the model and a
 * seg or FCOS head over its final-norm token grid at the input size (img_size, when given). */
static gboolean
setup_head (Run *r, GError **error)
{
  const VlTrainConfig *c = r->cfg;
  const gboolean on_tokens = c->task == VL_TASK_SEGMENT || c->task == VL_TASK_DETECT;
  if (on_tokens && c->img_size > 0)
    {
      const int patch = vl_model_geometry (r->m)->patch;
      if (c->img_size % patch != 0 || c->img_size > 4096)
        {
          g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "img-size %d: must be a multiple "
                       "of the patch size %d (and at most 4096)", c->img_size, patch);
          return FALSE;
        }
      r->pp.size = r->S = c->img_size;
    }
  vl_head_grid_of (r->m, r->S, &r->grid);
  const VlHeadChoice choice = { .model_head = c->head, .mlp_hidden = c->mlp_hidden,
                                .seg_head = c->seg_head, .seed = c->seed };
  r->head = vl_head_new_for_task (r->m, &r->task, &choice, &r->grid, error);
  if (r->head == NULL)
    return FALSE;
  if (vl_head_in_model (r->head))
    vl_model_set_class_names (r->m, (const char *const *) (c->task == VL_TASK_REGRESS
                                                           ? r->rec.value_names
                                                           : r->rec.class_names));
  return TRUE;
}

/* The layer groups named in cfg.train_groups as a mask (bit g: group g; the head is the bit
 * after the body's groups, as the trainer numbers them). */
static gboolean
resolve_train_groups (VlModel *m, const char *spec, guint64 *mask, GError **error)
{
  const int n_body = vl_model_n_groups (m) - (vl_model_head_kind (m) != VL_HEAD_NONE);
  g_auto(GStrv) names = g_strsplit (spec, ",", -1);
  *mask = 0;
  for (int i = 0; names[i]; i++)
    {
      const char *name = g_strstrip (names[i]);
      gboolean found = FALSE;
      for (int g = 0; g < n_body && g < 63; g++)
        if (strcmp (name, vl_model_group_name (m, g)) == 0 ||
            (strcmp (name, "blocks") == 0 && g_str_has_prefix (vl_model_group_name (m, g),
                                                                 "blocks.")))
          *mask |= G_GUINT64_CONSTANT (1) << g, found = TRUE;
      if (strcmp (name, "head") == 0 && n_body < 64)
        *mask |= G_GUINT64_CONSTANT (1) << n_body, found = TRUE;
      if (!found)
        {
          GString *all = g_string_new (NULL);
          for (int g = 0; g < n_body; g++)
            g_string_append_printf (all, "%s, ", vl_model_group_name (m, g));
          g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "train groups \"%s\": no layer group "
                       "\"%s\" (the groups are %shead; \"blocks\" is all blocks)", spec, name,
                       all->str);
          g_string_free (all, TRUE);
          return FALSE;
        }
    }
  return TRUE;
}

/* cfg.stem: a new CNN stem in place of the model's patch embedding (a resumed run's model, read
 * from its folder, has it already; one rebuilt from the backbone gets it before the run's tensors
 * are loaded into it by name); cfg.train_groups into cfg.unlock_mask. */
static gboolean
apply_stem_and_groups (VlTrainer *t, GError **error)
{
  VlTrainConfig *c = &t->cfg;
  if (c->stem != VL_STEM_PATCH && vl_model_stem_kind (t->model) != c->stem &&
      !vl_model_replace_stem (t->model, c->stem, c->seed ^ 0x57e3ull, error))
    return FALSE;
  if (c->train_groups && *c->train_groups &&
      !resolve_train_groups (t->model, c->train_groups, &c->unlock_mask, error))
    return FALSE;
  return TRUE;
}

/* ---- the run folder: what vl-train-save.c writes and reads, handed over narrowly ---- */

static VlRunPosition
run_position (const Run *r)
{
  return (VlRunPosition) {
    .epoch = r->epoch, .batch = r->batch, .step = r->step, .steps_per_epoch = r->spe,
    .loss_sum = r->loss_sum, .seen = r->seen, .best_val = r->best_val,
    .best_epoch = r->best_epoch, .bad_epochs = r->bad_epochs,
    .sched = r->sched, .n_sched = r->n_sched,
  };
}

static char *
run_json (const Run *r)
{
  VlRunPosition pos = run_position (r);
  return vl_train_run_json (r->cfg, r->m, r->ds, &r->rec, &pos, r->S, r->K, r->n_groups);
}

/* On resume: the optimizer state and the position of the checkpoint on disk. */
static gboolean
load_checkpoint_state (Run *r, GError **error)
{
  VlRunPosition pos = run_position (r);
  if (!vl_train_load_checkpoint_state (r->cfg->out_dir, r->m, &pos, error))
    return FALSE;   /* pos.sched is only replaced once nothing can fail */
  r->epoch = pos.epoch;
  r->batch = pos.batch;
  r->step = pos.step;
  r->loss_sum = pos.loss_sum;
  r->seen = pos.seen;
  r->best_val = pos.best_val;
  r->best_epoch = pos.best_epoch;
  r->bad_epochs = pos.bad_epochs;
  r->sched = pos.sched;
  r->n_sched = pos.n_sched;
  r->saved_epoch = pos.epoch;
  return TRUE;
}

/* Saves the checkpoint group with the position (epoch, batch) for a resume to start at; the
 * metrics lines of the epochs not saved yet go into metrics.jsonl. */
static gboolean
save_checkpoint (Run *r, int epoch, int batch, gboolean best, GError **error)
{
  VlRunPosition pos = run_position (r);
  pos.epoch = epoch;
  pos.batch = batch;
  g_autofree char *json = run_json (r);
  g_autoptr(GString) metrics = g_string_new (NULL);
  for (guint i = 0; i < r->metrics_lines->len; i++)
    g_string_append (metrics, g_ptr_array_index (r->metrics_lines, i));
  /* a head outside the model has its file in the group (vl-head.h); the model's own is in
   * model.safetensors (then the head file's name goes unused) */
  g_autoptr(VlSafetensorsWriter) head = vl_head_writer (r->head);
  const char *head_file = vl_head_file (r->head);
  const VlCheckpointSave s = {
    .dir = r->cfg->out_dir, .model = r->m, .pos = &pos, .seed = r->cfg->seed,
    .run_json = json, .metrics = metrics->str, .head = head,
    .head_file = head_file ? head_file : VL_RUN_SEG_HEAD, .seg = vl_head_seg (r->head),
    .best = best,
  };
  if (!vl_train_save_checkpoint (&s, error))
    return FALSE;
  g_ptr_array_set_size (r->metrics_lines, 0);   /* in metrics.jsonl now */
  r->dirty = FALSE;
  r->saved_epoch = epoch;
  return TRUE;
}

static gboolean
setup (Run *r, GError **error)
{
  VlTrainer *t = r->t;
  const VlTrainConfig *c = r->cfg;

  if (t->model == NULL)
    {
      if (c->resume && t->run_has_checkpoint &&
          (c->backbone == NULL || !g_file_test (c->backbone, G_FILE_TEST_EXISTS)))
        t->model = vl_run_load_model (c->out_dir, NULL, error);   /* the run has every tensor */
      else if (c->init_random)
        t->model = random_model (c, error);
      else if (c->backbone == NULL)
        g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "no backbone to train");
      else
        t->model = vl_model_load (c->backbone, error);
      if (t->model == NULL)
        return FALSE;
    }
  if (!apply_stem_and_groups (t, error))
    return FALSE;
  /* run.json records absolute paths (the run opens from anywhere) and the typed ones */
  r->rec.backbone_typed = g_strdup (c->backbone ? c->backbone : vl_model_path (t->model));
  r->rec.backbone_path = vl_run_absolute_path (r->rec.backbone_typed);
  r->rec.data_typed = g_strdup (c->data);
  r->rec.data_spec = vl_run_absolute_spec (c->data);
  if (t->ds == NULL)
    {
      VlDatasetOptions opts = VL_DATASET_OPTIONS_DEFAULT;
      opts.val_fraction = c->val_fraction;
      opts.seed = c->seed;
      opts.detect = c->task == VL_TASK_DETECT;
      GError *open_error = NULL;
      t->ds = vl_dataset_open (c->data, &opts, &open_error);
      if (t->ds == NULL && !opts.detect && g_file_test (c->data, G_FILE_TEST_IS_DIR))
        {
          /* a COCO or YOLO folder read as classes fails on its annotations/ or labels/ "class":
           * say what it is instead */
          VlDatasetOptions o = opts;
          o.detect = TRUE;
          g_autoptr(VlDataset) boxes = vl_dataset_open (c->data, &o, NULL);
          if (boxes != NULL)
            {
              g_clear_error (&open_error);
              g_set_error (&open_error, VL_ERROR, VL_ERROR_INVALID, "%s: %s, a detection "
                           "dataset (boxes, no image labels): train it with --task detect",
                           c->data, vl_dataset_description (boxes));
            }
        }
      if (t->ds == NULL)
        {
          g_propagate_error (error, open_error);
          return FALSE;
        }
    }
  r->ds = t->ds;
  if (!setup_task (r, error))
    return FALSE;
  r->n_train = vl_dataset_n_items (r->ds, VL_SPLIT_TRAIN);
  r->n_val = vl_dataset_n_items (r->ds, VL_SPLIT_VAL);
  if (r->n_train == 0 || r->n_val == 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "%s: %s", vl_dataset_description (r->ds),
                   r->n_train == 0 ? "no training images" : "no validation images");
      return FALSE;
    }
  const int n_classes = vl_dataset_n_classes (r->ds);
  r->rec.class_names = g_new0 (char *, n_classes + 1);
  for (int k = 0; k < n_classes; k++)
    r->rec.class_names[k] = g_strdup (vl_dataset_class_name (r->ds, k));

  r->m = t->model;
  r->rec.backbone_sha = sha256_file (r->rec.backbone_path);

  vl_preprocess_from_model (r->m, &r->pp);
  r->S = r->pp.size;
  if (!setup_head (r, error))
    return FALSE;
  /* a stop interrupts a pass between two blocks */
  vl_model_set_cancellable (r->m, r->t->cancel);
  if (c->pool == VL_POOL_MAP && !vl_model_check_pool (r->m, c->pool, error))
    return FALSE;
  vl_model_set_pool (r->m, c->pool);
  r->n_model_groups = r->n_groups = vl_model_n_groups (r->m);
  if (head_outside (r))
    r->n_groups++;   /* the head outside the model: the last group */

  /* one image through the preprocessing catches a memory dataset of another shape */
  {
    g_autofree float *px = g_new (float, (gsize) r->pp.channels * r->S * r->S);
    g_autoptr(GError) e = NULL;
    if (!vl_dataset_load (r->ds, VL_SPLIT_TRAIN, 0, &r->pp, VL_AUGMENT_NONE, 0, px, &e) &&
        g_str_has_prefix (vl_dataset_description (r->ds), "memory"))
      {
        g_propagate_error (error, g_steal_pointer (&e));
        return FALSE;
      }
  }

  r->spe = (r->n_train + c->batch_size - 1) / c->batch_size;
  r->total_steps = (int64_t) c->epochs * r->spe;
  r->sched = vl_unlock_schedule_parse (c->unlock_schedule, &r->n_sched, error);
  if (r->sched == NULL)
    return FALSE;
  r->unlocked = -1;
  r->cache_checked_for = -1;
  r->best_val = INFINITY;
  r->best_epoch = -1;
  r->saved_epoch = -1;
  r->metrics_lines = g_ptr_array_new_with_free_func (g_free);
  /* with augmentation every epoch sees new training pixels, but the validation images never
   * change: their activations at the lock boundary are still cached */
  r->cache_wanted = c->cache_features;
  if (c->cache_features && c->augment != VL_AUGMENT_NONE)
    message (r, "augmentation is on: training images are decoded every epoch; the validation "
             "images' frozen features are cached");

  if (c->resume)
    {
      /* without a checkpoint (the run never saved one) it starts again from epoch 0 */
      g_autofree char *mpath = g_build_filename (c->out_dir, "model.safetensors", NULL);
      if (!vl_train_check_run_data (c->out_dir, r->ds, &r->rec, error) ||
          (t->run_has_checkpoint && (!load_tensors_into (r->m, mpath, error) ||
                                     !load_checkpoint_state (r, error) ||
                                     !vl_head_restore (r->head, c->out_dir, error))))
        return FALSE;
      /* metrics.jsonl ends where the checkpoint does */
      if (!vl_run_trim_metrics (c->out_dir, r->epoch, error))
        return FALSE;
    }
  if (r->rec.created == NULL)
    {
      g_autoptr(GDateTime) now = g_date_time_new_now_utc ();
      r->rec.created = g_date_time_format_iso8601 (now);
    }

  r->opt = (VlAdamW) VL_ADAMW_DEFAULTS;
  r->opt.beta1 = (float) c->beta1;
  r->opt.beta2 = (float) c->beta2;
  r->opt.eps = (float) c->eps;
  r->opt.weight_decay = (float) c->weight_decay;
  r->scales = g_new (float, r->n_groups);
  vl_train_layer_scales (r->m, c->layer_decay, r->scales);
  if (head_outside (r))
    {
      /* the head outside the model takes the top layer id, one above the model's top group (which has none
       * of its own head now): the model's scales move one decay step down */
      for (int g = 0; g < r->n_model_groups; g++)
        r->scales[g] *= (float) c->layer_decay;
      r->scales[r->n_groups - 1] = 1.0f;
    }
  r->opt.group_lr_scale = c->layer_decay < 1.0 ? r->scales : NULL;
  r->gnorms = g_new0 (double, r->n_groups);
  vl_probe_set_choose (&r->probes, r->ds, &r->pp, c->probe_every > 0 ? c->n_probes : 0, r->K);

  if (c->out_dir && (!c->resume || !t->run_has_checkpoint))
    {
      g_autofree char *run = run_json (r);
      g_autofree char *path = g_build_filename (c->out_dir, "run.json", NULL);
      if (!vl_write_file_atomic (path, run, -1, error))
        return FALSE;
    }

  VlTrainEvent *ev = event_new (VL_TRAIN_EVENT_READY, r->epoch, r->step);
  ev->n_train = r->n_train;
  ev->n_val = r->n_val;
  ev->task = c->task;
  ev->n_classes = n_classes;
  ev->n_values = c->task == VL_TASK_REGRESS ? r->K : 0;
  ev->value_names = g_strdupv (r->rec.value_names);
  ev->n_groups = r->n_groups;
  ev->class_names = g_strdupv (r->rec.class_names);
  ev->steps_per_epoch = r->spe;
  ev->total_steps = r->total_steps;
  ev->start_epoch = r->epoch;
  ev->skipped = vl_train_skipped_strv (r->ds);
  post (t, ev);
  return TRUE;
}

/* ---- the lock and the cache ---- */

static void
apply_unlock (Run *r)
{
  VlTrainer *t = r->t;
  vl_mutex_lock (&t->lock);
  int req = t->unlock_req;
  t->unlock_req = -1;
  vl_mutex_unlock (&t->lock);
  if (req >= 0)
    {
      int n = 0;
      while (n < r->n_sched && r->sched[n].epoch < r->epoch)
        n++;
      r->sched = g_renew (VlUnlockStep, r->sched, n + 1);
      r->sched[n] = (VlUnlockStep) { r->epoch, req };
      r->n_sched = n + 1;
    }
  int want;
  if (r->cfg->unlock_mask)
    {
      /* a fixed pattern: applied once, for the whole run */
      if (r->unlocked >= 0)
        return;
      vl_model_lock (r->m, 0);
      want = 0;
      for (int g = 0; g < r->n_groups && g < 64; g++)
        if (r->cfg->unlock_mask & (G_GUINT64_CONSTANT (1) << g))
          {
            if (g < r->n_model_groups)
              vl_model_set_group_trainable (r->m, g, TRUE);
            want++;
          }
      r->head_trains = head_outside (r) && r->n_groups - 1 < 64 &&
                      (r->cfg->unlock_mask & (G_GUINT64_CONSTANT (1) << (r->n_groups - 1)));
    }
  else
    {
      want = MIN (vl_unlock_schedule_at (r->sched, r->n_sched, r->epoch), r->n_groups);
      if (want == r->unlocked)
        return;
      /* a head outside the model is the last group, the model's follow it */
      vl_model_lock (r->m, head_outside (r) ? MAX (want - 1, 0) : want);
      r->head_trains = head_outside (r) && want >= 1;
    }
  r->unlocked = want;
  r->n_trainable = vl_model_n_trainable (r->m);
  r->model_trains = r->n_trainable > 0;
  if (r->head_trains)
    r->n_trainable += vl_head_n_params (r->head);
  r->cached = r->val_cached = FALSE;
  vl_feat_cache_clear (&r->ctrain);
  vl_feat_cache_clear (&r->cval);
  VlTrainEvent *ev = event_new (VL_TRAIN_EVENT_LOCK, r->epoch, r->step);
  ev->unlocked = want;
  ev->n_trainable = r->n_trainable;
  int64_t numel = head_outside (r) && !r->model_trains
                  ? vl_head_input_numel (r->head)
                  : vl_model_boundary_numel (r->m, r->S, r->S);
  ev->cached = r->cache_wanted && r->cfg->augment == VL_AUGMENT_NONE && numel > 0 &&
               (double) numel * sizeof (float) * (r->n_train + r->n_val) <=
               (double) r->cfg->cache_limit;
  post (t, ev);
}

/* The cache's pass (vl-train-cache.h) stops and reports as the worker's other passes do. */
static gboolean
cache_should_stop (gpointer r)
{
  return should_stop (r);
}

static void
cache_progress (gpointer r, int n)
{
  progress_add (r, n);
}

/* The split's activations at the lock boundary into fc; with keep_block >= 0, those entering that
 * block too, into next (the next lock's cache, from the same pass): vl-train-cache.h */
static Outcome
build_cache (Run *r, VlSplit split, VlFeatCache *fc, int keep_block, VlFeatCache *next,
             GError **error)
{
  const VlFeatCacheSpec spec = { .numel = r->cache_numel, .tokens = r->tok_cache,
                                 .keep_block = keep_block, .size = r->S,
                                 .batch_size = r->cfg->batch_size, .seed = r->cfg->seed,
                                 .max_boxes = r->max_boxes };
  const VlFeatCacheWatch watch = { cache_should_stop, cache_progress, r };
  switch (vl_feat_cache_build (fc, next, r->m, r->ds, split, &r->pp, &spec, &watch, error))
    {
    case VL_FEAT_CACHE_DONE:
      return OK;
    case VL_FEAT_CACHE_STOPPED:
      return STOPPED;
    default:
      return failed_or_stopped (error);
    }
}

/* The block whose input the next lock of the schedule caches, when this lock's pass goes through
 * it and both caches fit the limit (the next lock noted in r->next_unlocked); else -1. Not for
 * segmentation or a fixed unlock pattern. */
static int
next_cache_block (Run *r, double bytes_now, int n)
{
  if (head_outside (r) || r->cfg->unlock_mask)   /* masks and boxes stay with the first cache */
    return -1;
  int next = r->unlocked;
  for (int e = r->epoch + 1; e < r->cfg->epochs && next == r->unlocked; e++)
    next = MIN (vl_unlock_schedule_at (r->sched, r->n_sched, e), r->n_groups);
  if (next == r->unlocked)
    return -1;
  const int depth = vl_model_geometry (r->m)->depth;
  const int kb = vl_model_block_boundary_for (r->m, next);
  const int here = vl_model_block_boundary_for (r->m, r->unlocked);
  const double bytes = (double) vl_feat_cache_token_numel (r->m, r->S) * sizeof (float) * n;
  if (kb < 0 || kb > (here < 0 ? depth : here) || bytes_now + bytes > r->cfg->cache_limit)
    return -1;
  r->next_unlocked = next;
  return kb;
}

/* The cache the previous lock's pass made for this lock, if it did: TRUE once adopted */
static gboolean
adopt_next_cache (Run *r, gboolean train_too)
{
  const gboolean fits = r->next_ready && r->next_unlocked == r->unlocked && !r->tok_cache &&
                        r->cache_numel == vl_feat_cache_token_numel (r->m, r->S) &&
                        (train_too ? r->ntrain.data != NULL : r->ntrain.data == NULL);
  r->next_ready = FALSE;
  if (!fits)
    {
      vl_feat_cache_clear (&r->ntrain);
      vl_feat_cache_clear (&r->nval);
      return FALSE;
    }
  r->ctrain = r->ntrain;
  r->cval = r->nval;
  memset (&r->ntrain, 0, sizeof r->ntrain);
  memset (&r->nval, 0, sizeof r->nval);
  return TRUE;
}

static Outcome
prepare_cache (Run *r, GError **error)
{
  if (!r->cache_wanted || r->val_cached || r->cache_checked_for == r->unlocked)
    return OK;
  r->cache_checked_for = r->unlocked;
  r->tok_cache = head_outside (r) && !r->model_trains;
  r->cache_numel = r->tok_cache ? vl_head_input_numel (r->head)
                                    : vl_model_boundary_numel (r->m, r->S, r->S);
  if (r->cache_numel == 0)
    {
      message (r, "the stem trains: there is no frozen prefix to cache, training from images");
      r->next_unlocked = -1;
      adopt_next_cache (r, FALSE);   /* frees the next lock's: the frozen part now trains */
      return OK;
    }
  const gboolean train_too = r->cfg->augment == VL_AUGMENT_NONE;
  const int n = (train_too ? r->n_train : 0) + r->n_val;
  double bytes = (double) r->cache_numel * sizeof (float) * n;
  if (bytes > (double) r->cfg->cache_limit)
    {
      message (r, "the feature cache would need %.2f GiB, above the %.2f GiB limit: training "
               "from images", bytes / GIB, (double) r->cfg->cache_limit / GIB);
      adopt_next_cache (r, FALSE);   /* none now: frees the next lock's, which would go stale */
      r->next_unlocked = -1;
      return OK;
    }
  gint64 t0 = g_get_monotonic_time ();
  Outcome o = OK;
  if (adopt_next_cache (r, train_too))
    message (r, "the activations at the lock boundary were cached with the previous lock's: "
             "%d images x %" G_GINT64_FORMAT " floats (%.1f MiB)", n, r->cache_numel,
             bytes / (1 << 20));
  else
    {
      message (r, "caching the activations at the lock boundary: %d images x %" G_GINT64_FORMAT
               " floats (%.1f MiB)...", n, r->cache_numel, bytes / (1 << 20));
      const int keep = next_cache_block (r, bytes, n);
      progress_begin (r, VL_TRAIN_PHASE_CACHE, n);
      o = train_too ? build_cache (r, VL_SPLIT_TRAIN, &r->ctrain, keep, &r->ntrain, error) : OK;
      if (o == OK)
        o = build_cache (r, VL_SPLIT_VAL, &r->cval, keep, &r->nval, error);
      r->next_ready = o == OK && keep >= 0;
    }
  if (o != OK)
    {
      vl_feat_cache_clear (&r->ctrain);
      vl_feat_cache_clear (&r->cval);
      vl_feat_cache_clear (&r->ntrain);
      vl_feat_cache_clear (&r->nval);
      r->cache_checked_for = -1;
      return o;
    }
  vl_feat_batch_reserve (&r->fbatch, &r->cval, r->cfg->batch_size,
                         r->task.kind == VL_TASK_REGRESS ? r->K : 0, r->max_boxes);
  r->cached = train_too;
  r->val_cached = TRUE;
  message (r, "cached in %.1f s; each epoch now %s from the cache",
           (g_get_monotonic_time () - t0) / 1e6,
           train_too ? "runs" : "validates");
  return OK;
}

/* ---- steps ---- */

/* Takes the caller's newest probe image, if any (the trainer keeps only the serial). An image
 * the model cannot take is refused with a message; the previous one stays. */
static void
take_user_probe (Run *r)
{
  VlTrainer *t = r->t;
  vl_mutex_lock (&t->lock);
  gboolean changed = t->user_serial != r->user_serial;
  float *px = changed ? g_steal_pointer (&t->user_px) : NULL;
  int c = t->user_c, h = t->user_h, w = t->user_w;
  guint64 serial = t->user_serial;
  vl_mutex_unlock (&t->lock);
  if (!changed)
    return;
  r->user_serial = serial;   /* seen, taken or refused */
  g_autoptr(GError) e = NULL;
  if (!vl_probe_set_take_user (&r->probes, px, c, h, w, vl_model_geometry (r->m)->patch, serial,
                               &e))
    message (r, "probe image: %s", e->message);
}

/* The validation probes and the user's probe image through the model as it is now: one
 * PROBES event (vl-train-probes.h). */
static void
run_probes (Run *r)
{
  take_user_probe (r);
  if (!vl_probe_set_any (&r->probes))
    return;
  g_autoptr(VlTrainEvent) ev = event_new (VL_TRAIN_EVENT_PROBES, r->epoch, r->step);
  g_autoptr(GError) e = NULL;
  gboolean any;
  if (!vl_probe_set_run (&r->probes, r->m, r->K, ev, &any, &e) && !cancelled (r))
    message (r, "probe images: %s", e->message);
  if (any)
    post (r->t, g_steal_pointer (&ev));
}

static void
post_step (Run *r, float loss, float lr, float grad_norm, int n, gint64 now)
{
  VlTrainer *t = r->t;
  double dt = (now - r->last_step_time) / 1e6;
  r->last_step_time = now;
  double a = r->step_s_ema == 0 ? 1.0 : 0.1;
  r->step_s_ema += a * (dt - r->step_s_ema);
  r->ips_ema += a * (n / MAX (dt, 1e-9) - r->ips_ema);
  double eta = (double) (r->total_steps - r->step) * r->step_s_ema +
               (double) (r->cfg->epochs - r->epoch) * r->val_seconds;

  gboolean wake = FALSE;
  VlStepPoint pt = { r->step, r->epoch, loss, lr, grad_norm };
  vl_mutex_lock (&t->lock);
  VlTrainEvent *ev = g_queue_peek_tail (&t->events);
  if (ev == NULL || ev->kind != VL_TRAIN_EVENT_STEP)
    {
      ev = event_new (VL_TRAIN_EVENT_STEP, r->epoch, r->step);
      ev->group_grad_norms = g_new0 (double, r->n_groups);
      g_queue_push_tail (&t->events, ev);
    }
  /* capacity: the next power of two */
  if ((ev->n_points & (ev->n_points - 1)) == 0)
    ev->points = g_renew (VlStepPoint, ev->points, MAX (2 * ev->n_points, 1));
  ev->points[ev->n_points++] = pt;
  ev->epoch = r->epoch;
  ev->step = r->step;
  ev->batch = r->batch;
  ev->n_batches = (int) r->spe;
  ev->images_per_s = r->ips_ema;
  ev->eta_s = eta;
  ev->unlocked = r->unlocked;
  ev->n_trainable = r->n_trainable;
  ev->cached = r->cached;
  memcpy (ev->group_grad_norms, r->gnorms, sizeof (double) * r->n_groups);
  if (!t->notified)
    wake = t->notified = TRUE;
  g_cond_broadcast (&t->cond);
  vl_mutex_unlock (&t->lock);
  if (wake && t->notify)
    t->notify (t, t->notify_data);
}

/* What the head reads of a batch (images, or the cache's entries when from_cache): the model's
 * forward (from the lock boundary when cached) and then its logits or final-norm tokens, or the
 * cached tokens themselves when only a head outside the model trains. flags: VL_FORWARD_TRAIN
 * when the model runs backward. */
static const float *
head_input (Run *r, const float *x, int n, gboolean from_cache, VlForwardFlags flags,
            GError **error)
{
  if (from_cache && r->tok_cache)
    return x;   /* the cache holds the tokens themselves */
  gboolean ok = from_cache
                ? vl_model_forward_from_boundary (r->m, x, n, r->S, r->S, flags, error)
                : vl_model_forward (r->m, x, n, r->S, r->S, flags, error);
  return ok ? vl_head_input (r->head, r->m) : NULL;
}

/* After a backward: the gradient norm of each group (the model's, then a head outside the
 * model's) and the global one before clipping (returned), and clip_grad over every trainable
 * parameter (torch.nn.utils.clip_grad_norm_). The model's own head is in the model's groups. */
static double
clip_grads (Run *r, gboolean model_steps)
{
  VlModel *m = r->m;
  const VlTrainConfig *c = r->cfg;
  int n_hp;
  VlHeadParam *hp = vl_head_params (r->head, &n_hp);
  if (hp == NULL)
    {
      for (int g = 0; g < r->n_groups; g++)
        r->gnorms[g] = vl_model_group_grad_norm (m, g);
      return vl_model_clip_grad_norm (m, c->clip_grad);
    }
  double head_sq = 0;
  for (int i = 0; i < n_hp; i++)
    for (int64_t j = 0; hp[i].grad && j < hp[i].numel; j++)
      head_sq += (double) hp[i].grad[j] * hp[i].grad[j];
  if (!r->head_trains)
    head_sq = 0;
  for (int g = 0; g < r->n_model_groups; g++)
    r->gnorms[g] = vl_model_group_grad_norm (m, g);
  r->gnorms[r->n_groups - 1] = sqrt (head_sq);
  double model_norm = model_steps ? vl_model_clip_grad_norm (m, 0) : 0;
  double norm = sqrt (model_norm * model_norm + head_sq);
  if (c->clip_grad > 0 && norm > c->clip_grad)
    {
      /* the head's parameters are clipped with the model's, by the same factor */
      double scale = c->clip_grad / (norm + 1e-6);
      if (model_steps)
        vl_model_clip_grad_norm (m, model_norm * scale);
      for (int i = 0; i < n_hp; i++)
        for (int64_t j = 0; hp[i].grad && j < hp[i].numel; j++)
          hp[i].grad[j] = (float) (hp[i].grad[j] * scale);
    }
  return norm;
}

/* One optimisation step on batch b (its images, or the cache's entries when r->cached): the
 * model's forward (training when it runs backward: always with its own head, else when a group
 * of it is unlocked), the head's forward, loss and backward into the model, clipping, AdamW on
 * the model and on a head outside it. */
static Outcome
train_step (Run *r, const VlBatch *b, GError **error)
{
  VlModel *m = r->m;
  const VlTrainConfig *c = r->cfg;
  const gboolean model_steps = vl_head_in_model (r->head) || r->model_trains;
  const float *in = head_input (r, b->images, b->n, r->cached,
                                model_steps ? VL_FORWARD_TRAIN : VL_FORWARD_INFER, error);
  if (in == NULL)
    return failed_or_stopped (error);
  if (cancelled (r))   /* between forward and backward: the batch is dropped, redone on resume */
    return STOPPED;
  vl_head_forward (r->head, in, b->n);
  double loss = vl_head_loss (r->head, b);
  if (!isfinite (loss))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_NUMERIC,
                   "the loss is not finite (%g): the weights or inputs hold NaN or Inf, or the "
                   "learning rate is too high", loss);
      return FAILED;
    }
  if (!vl_head_backward (r->head, m, model_steps, error))
    return failed_or_stopped (error);
  double norm = clip_grads (r, model_steps);
  double lr = vl_train_lr_at (c, r->step, r->spe);
  r->opt.lr = (float) lr;
  if (model_steps)
    vl_model_adamw_step (m, &r->opt);
  if (r->head_trains)
    {
      int n_hp;
      VlHeadParam *hp = vl_head_params (r->head, &n_hp);
      vl_head_params_adamw (hp, n_hp, &r->opt,
                            r->opt.group_lr_scale ? r->opt.group_lr_scale[r->n_groups - 1] : 1);
    }
  r->step++;
  r->loss_sum += loss * b->n;
  r->seen += b->n;
  r->session_seen += b->n;
  r->dirty = TRUE;
  r->batch++;
  post_step (r, (float) loss, (float) lr, (float) norm, b->n, g_get_monotonic_time ());
  if (c->probe_every > 0 && r->step % c->probe_every == 0)
    run_probes (r);
  if (c->stop_after_step > 0 && r->step >= c->stop_after_step)
    g_cancellable_cancel (r->t->cancel);
  return OK;
}

static Outcome
train_epoch (Run *r, GError **error)
{
  if (r->batch >= r->spe)
    return OK;
  VlLoader *l = r->cached ? order_loader (r) : train_loader (r);
  vl_loader_start_epoch (l, r->epoch, r->batch);
  r->last_step_time = g_get_monotonic_time ();
  gint64 t0 = r->last_step_time;
  VlBatch b;
  Outcome o = OK;
  while (o == OK)
    {
      if (should_stop (r))
        {
          o = STOPPED;
          break;
        }
      if (!vl_loader_next (l, &b))
        break;
      r->batch = b.index;   /* batches skipped by the loader (nothing decoded) count as done */
      if (!r->cached)
        {
          o = train_step (r, &b, error);
          continue;
        }
      /* the order loader's dataset holds no targets: the dataset's, with the cache's */
      VlBatch cb = vl_feat_cache_gather (&r->ctrain, r->ds, VL_SPLIT_TRAIN, b.indices, b.n,
                                         &r->fbatch);
      if (cb.n == 0)
        {
          r->batch = b.index + 1;
          continue;
        }
      o = train_step (r, &cb, error);
    }
  if (o == OK)
    r->batch = (int) r->spe;
  r->train_seconds += (g_get_monotonic_time () - t0) / 1e6;
  return o;
}

/* The next batch of the validation split: from the loader l, or (l NULL) gathered from the
 * cache from item *i on. FALSE at the end of the split. */
static gboolean
next_val_batch (Run *r, VlLoader *l, int *i, VlBatch *b)
{
  if (l)
    return vl_loader_next (l, b);
  return vl_feat_cache_next (&r->cval, r->ds, VL_SPLIT_VAL, i, r->cfg->batch_size, &r->fbatch, b);
}

/* The validation split through the model and the head, into the task's metrics (vl-head.h). */
static Outcome
validate (Run *r, VlEpochMetrics *e, GError **error)
{
  progress_begin (r, VL_TRAIN_PHASE_VALIDATE, r->n_val);
  vl_head_metrics_begin (r->head, e, r->ds, VL_SPLIT_VAL);
  VlLoader *l = r->val_cached ? NULL : val_loader (r);
  if (l)
    vl_loader_start_epoch (l, 0, 0);
  VlBatch b;
  int i = 0;
  while (next_val_batch (r, l, &i, &b))
    {
      if (should_stop (r))
        return STOPPED;
      const float *in = head_input (r, b.images, b.n, l == NULL, VL_FORWARD_INFER, error);
      if (in == NULL)
        return failed_or_stopped (error);
      vl_head_forward (r->head, in, b.n);
      if (!vl_head_metrics_add (r->head, e, &b, error))
        return FAILED;
      progress_add (r, b.n);
    }
  vl_head_metrics_end (r->head, e);
  return OK;
}

static VlEpochMetrics *
metrics_copy (const VlEpochMetrics *e)
{
  VlEpochMetrics *c = g_memdup2 (e, sizeof *e);
  int K = e->val.n_classes;
  c->val.class_acc = g_memdup2 (e->val.class_acc, sizeof (double) * K);
  c->val.confusion = g_memdup2 (e->val.confusion, sizeof (int64_t) * K * K);
  vl_regress_result_copy (&c->reg, &e->reg);
  vl_seg_result_copy (&c->seg, &e->seg);
  vl_det_result_copy (&c->det, &e->det);
  return c;
}

static void
failed_at (Run *r, GError **error)
{
  if (error == NULL || *error == NULL)
    return;
  g_prefix_error (error, "epoch %d, step %" G_GINT64_FORMAT ": ", r->epoch + 1, r->step + 1);
  if (r->cfg->out_dir == NULL)
    return;
  char *msg = (*error)->message;
  if (r->saved_epoch > 0)
    (*error)->message = g_strdup_printf ("%s; the run folder keeps the checkpoint of epoch %d",
                                         msg, r->saved_epoch);
  else
    (*error)->message = g_strdup_printf ("%s; no checkpoint was saved yet", msg);
  g_free (msg);
}

static VlTrainEnd
run_epochs (Run *r, GError **error)
{
  const VlTrainConfig *c = r->cfg;
  Outcome o = OK;
  for (; r->epoch < c->epochs; r->epoch++)
    {
      apply_unlock (r);
      if ((o = prepare_cache (r, error)) != OK)
        break;
      r->train_seconds = 0;
      r->session_seen = 0;
      if ((o = train_epoch (r, error)) != OK)
        break;
      gint64 tv = g_get_monotonic_time ();
      VlEpochMetrics e = { 0 };
      if ((o = validate (r, &e, error)) != OK)
        {
          vl_epoch_metrics_clear (&e);
          break;
        }
      r->val_seconds = (g_get_monotonic_time () - tv) / 1e6;
      e.epoch = r->epoch;
      e.step = r->step;
      e.unlocked = r->unlocked;
      e.cached = r->cached;
      e.lr = vl_train_lr_at (c, MAX (r->step - 1, 0), r->spe);
      e.train_loss = r->seen ? r->loss_sum / (double) r->seen : NAN;
      e.seconds = r->train_seconds + r->val_seconds;
      e.images_per_s = r->train_seconds > 0 ? r->session_seen / r->train_seconds : 0;
      if (vl_epoch_metrics_val_loss (&e) < r->best_val)
        {
          r->best_val = vl_epoch_metrics_val_loss (&e);
          r->best_epoch = r->epoch;
          r->bad_epochs = 0;
          e.best = TRUE;
        }
      else
        r->bad_epochs++;
      g_ptr_array_add (r->metrics_lines, vl_train_metrics_line (&e));
      r->loss_sum = 0;
      r->seen = 0;
      r->batch = 0;
      if (c->out_dir)
        {
          if (!save_checkpoint (r, r->epoch + 1, 0, e.best && c->early_stop > 0, error))
            {
              g_prefix_error (error, "saving the checkpoint of epoch %d: ", r->epoch + 1);
              vl_epoch_metrics_clear (&e);
              return VL_TRAIN_END_FAILED;
            }
        }
      VlTrainEvent *ev = event_new (VL_TRAIN_EVENT_EPOCH, r->epoch, r->step);
      ev->metrics = metrics_copy (&e);
      ev->unlocked = r->unlocked;
      ev->cached = r->cached;
      post (r->t, ev);
      vl_epoch_metrics_clear (&e);
      if (c->early_stop > 0 && r->bad_epochs >= c->early_stop && r->epoch + 1 < c->epochs)
        {
          message (r, "early stop: the validation loss has not improved for %d epochs (best "
                   "%.4f at epoch %d)", r->bad_epochs, r->best_val, r->best_epoch + 1);
          r->epoch++;
          return VL_TRAIN_END_EARLY_STOPPED;
        }
      if ((c->stop_after_epoch > 0 && r->epoch + 1 >= c->stop_after_epoch) || cancelled (r))
        {
          r->epoch++;
          return VL_TRAIN_END_STOPPED;
        }
    }
  if (o == FAILED)
    {
      failed_at (r, error);
      return VL_TRAIN_END_FAILED;
    }
  if (o == STOPPED)
    {
      if (c->out_dir && r->dirty && !save_checkpoint (r, r->epoch, r->batch, FALSE, error))
        {
          g_prefix_error (error, "saving the checkpoint at the stop: ");
          return VL_TRAIN_END_FAILED;
        }
      return VL_TRAIN_END_STOPPED;
    }
  return VL_TRAIN_END_COMPLETED;
}

static gpointer
worker (gpointer data)
{
  VlTrainer *t = data;
  Run r = { 0 };
  r.t = t;
  r.cfg = &t->cfg;
  GError *error = NULL;
  VlTrainEnd end;
  if (!setup (&r, &error))
    end = VL_TRAIN_END_FAILED;
  else
    {
      if (t->cfg.probe_every > 0)
        run_probes (&r);
      end = run_epochs (&r, &error);
    }
  VlTrainEvent *ev = event_new (VL_TRAIN_EVENT_FINISHED, r.epoch, r.step);
  ev->end = end;
  ev->error = error;
  ev->skipped = r.ds ? vl_train_skipped_strv (r.ds) : NULL;
  run_clear (&r);
  if (t->model)
    vl_model_set_cancellable (t->model, NULL);   /* the model handed back runs freely */
  g_clear_pointer (&t->run_lock, vl_run_unlock);   /* the folder is free once FINISHED is seen */
  vl_mutex_lock (&t->lock);
  t->done = TRUE;
  t->state = VL_TRAINER_FINISHED;
  vl_mutex_unlock (&t->lock);
  post (t, ev);
  return NULL;
}

gboolean
vl_trainer_start (VlTrainer *t, GError **error)
{
  g_return_val_if_fail (vl_trainer_get_state (t) == VL_TRAINER_IDLE, FALSE);
  const VlTrainConfig *c = &t->cfg;
  if (c->out_dir &&
      !vl_run_begin (c->out_dir, c->resume, &t->run_lock, &t->run_has_checkpoint, error))
    return FALSE;
  if (t->ds == NULL && c->data == NULL)
    {
      g_clear_pointer (&t->run_lock, vl_run_unlock);
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "no data to train on");
      return FALSE;
    }
  vl_mutex_lock (&t->lock);
  t->state = VL_TRAINER_RUNNING;
  vl_mutex_unlock (&t->lock);
  t->thread = g_thread_new ("vl-trainer", worker, t);
  return TRUE;
}
