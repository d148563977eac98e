/* vl-run-controller.c: the trainer's events as signals on the main loop (see
 * vl-run-controller.h). */
#include "vl-run-controller.h"
#include "vl-threads.h"

struct _VlRunController {
  GObject    parent_instance;
  VlTrainer *trainer;
  gboolean   running;
  VlRunProgress progress;
};

G_DEFINE_FINAL_TYPE (VlRunController, vl_run_controller, G_TYPE_OBJECT)

enum { PROP_0, PROP_RUNNING, N_PROPS };
static GParamSpec *props[N_PROPS];

enum { SIGNAL_EVENT, SIGNAL_DRAINED, N_SIGNALS };
static guint signals[N_SIGNALS];
static GQuark kind_quarks[VL_TRAIN_EVENT_FINISHED + 1];

/* The main loop drains the trainer's events at most this often: every drain moves the chart, the
 * status line and the cards, so it costs a frame, and where frames are rasterised in software
 * (Xvfb, a VM without a GPU) that is CPU the training threads need. Four a second keeps the
 * curves moving. */
#define DRAIN_INTERVAL_US 250000

/* The link from the trainer's notify (worker thread) to the controller. */
typedef struct {
  gatomicrefcount ref;
  GWeakRef owner;
  gboolean reniced;         /* worker thread only */
  gint64   last_drain_us;   /* monotonic time of the last drain (atomic) */
} RunLink;

static RunLink *
run_link_new (VlRunController *self)
{
  RunLink *l = g_new0 (RunLink, 1);
  g_atomic_ref_count_init (&l->ref);
  g_weak_ref_init (&l->owner, self);
  return l;
}

static void
run_link_unref (gpointer p)
{
  RunLink *l = p;
  if (g_atomic_ref_count_dec (&l->ref))
    {
      g_weak_ref_clear (&l->owner);
      g_free (l);
    }
}

typedef struct {
  RunLink   *link;
  VlTrainer *trainer;
} DrainIdle;

static void
drain_idle_free (gpointer p)
{
  DrainIdle *d = p;
  run_link_unref (d->link);
  vl_trainer_unref (d->trainer);
  g_free (d);
}

static void
set_running (VlRunController *self, gboolean running)
{
  if (self->running == running)
    return;
  self->running = running;
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_RUNNING]);
}

static gboolean
drain_idle (gpointer user_data)
{
  DrainIdle *d = user_data;
  g_autoptr(VlRunController) self = g_weak_ref_get (&d->link->owner);
  if (self == NULL || self->trainer != d->trainer)
    return G_SOURCE_REMOVE;   /* gone, or this run is not the current one */
  g_atomic_pointer_set ((gpointer *) &d->link->last_drain_us,
                        GSIZE_TO_POINTER ((gsize) g_get_monotonic_time ()));
  g_autoptr(GPtrArray) events = vl_trainer_drain (self->trainer);
  for (guint i = 0; i < events->len; i++)
    {
      VlTrainEvent *ev = g_ptr_array_index (events, i);
      if (ev->kind == VL_TRAIN_EVENT_FINISHED)
        set_running (self, FALSE);
      g_signal_emit (self, signals[SIGNAL_EVENT], kind_quarks[ev->kind], ev);
      if (self->trainer != d->trainer)
        break;   /* a handler started another run: the rest belonged to this one */
    }
  g_signal_emit (self, signals[SIGNAL_DRAINED], 0);
  return G_SOURCE_REMOVE;
}

/* Worker thread: at most once per drain (the trainer's promise), so at most one idle queued. */
static void
on_trainer_notify (VlTrainer *trainer, gpointer user_data)
{
  RunLink *link = user_data;
  if (!link->reniced)
    {
      vl_lower_thread_priority ();   /* the worker computes too: below the UI, like the pool */
      link->reniced = TRUE;
    }
  DrainIdle *d = g_new0 (DrainIdle, 1);
  g_atomic_ref_count_inc (&link->ref);
  d->link = link;
  d->trainer = vl_trainer_ref (trainer);
  gint64 last = (gint64) GPOINTER_TO_SIZE (g_atomic_pointer_get ((gpointer *) &link->last_drain_us));
  gint64 wait_us = last + DRAIN_INTERVAL_US - g_get_monotonic_time ();
  if (wait_us > 0)
    g_timeout_add_full (G_PRIORITY_DEFAULT_IDLE, (guint) (wait_us / 1000) + 1, drain_idle, d,
                        drain_idle_free);
  else
    g_idle_add_full (G_PRIORITY_DEFAULT_IDLE, drain_idle, d, drain_idle_free);
}

gboolean
vl_run_controller_start (VlRunController *self, const VlTrainConfig *cfg, GError **error)
{
  g_return_val_if_fail (VL_IS_RUN_CONTROLLER (self), FALSE);
  if (self->running)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "a run is in progress");
      return FALSE;
    }
  VlTrainer *t = vl_trainer_new (cfg, error);
  if (t == NULL)
    return FALSE;
  vl_trainer_set_notify (t, on_trainer_notify, run_link_new (self), run_link_unref);
  if (!vl_trainer_start (t, error))
    {
      vl_trainer_unref (t);
      return FALSE;
    }
  g_clear_pointer (&self->trainer, vl_trainer_unref);
  self->trainer = t;
  set_running (self, TRUE);
  return TRUE;
}

VlTrainer *
vl_run_controller_get_trainer (VlRunController *self)
{
  g_return_val_if_fail (VL_IS_RUN_CONTROLLER (self), NULL);
  return self->trainer;
}

void
vl_run_controller_clear (VlRunController *self)
{
  g_return_if_fail (VL_IS_RUN_CONTROLLER (self));
  g_return_if_fail (!self->running);
  g_clear_pointer (&self->trainer, vl_trainer_unref);
}

gboolean
vl_run_controller_get_running (VlRunController *self)
{
  g_return_val_if_fail (VL_IS_RUN_CONTROLLER (self), FALSE);
  return self->running;
}

VlRunProgress *
vl_run_controller_get_progress (VlRunController *run)
{
  g_return_val_if_fail (VL_IS_RUN_CONTROLLER (run), NULL);
  return &run->progress;
}

void
vl_run_controller_pause (VlRunController *self)
{
  if (self->running)
    vl_trainer_pause (self->trainer);
}

void
vl_run_controller_resume (VlRunController *self)
{
  if (self->running)
    vl_trainer_resume (self->trainer);
}

void
vl_run_controller_stop (VlRunController *self)
{
  if (self->running)
    vl_trainer_stop (self->trainer);
}

static void
get_property (GObject *object, guint id, GValue *value, GParamSpec *pspec)
{
  VlRunController *self = VL_RUN_CONTROLLER (object);
  switch (id)
    {
    case PROP_RUNNING:
      g_value_set_boolean (value, self->running);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, id, pspec);
    }
}

static void
dispose (GObject *object)
{
  VlRunController *self = VL_RUN_CONTROLLER (object);
  /* the last reference to a running trainer stops its worker and waits for it */
  g_clear_pointer (&self->trainer, vl_trainer_unref);
  G_OBJECT_CLASS (vl_run_controller_parent_class)->dispose (object);
}

static void
vl_run_controller_class_init (VlRunControllerClass *klass)
{
  GObjectClass *oc = G_OBJECT_CLASS (klass);
  oc->get_property = get_property;
  oc->dispose = dispose;
  props[PROP_RUNNING] = g_param_spec_boolean ("running", NULL, NULL, FALSE,
                                              G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (oc, N_PROPS, props);
  for (int k = 0; k <= VL_TRAIN_EVENT_FINISHED; k++)
    kind_quarks[k] = g_quark_from_static_string (vl_train_event_kind_name ((VlTrainEventKind) k));
  /* ::event (VlTrainEvent *): one event of the current run, detailed by its kind */
  signals[SIGNAL_EVENT] = g_signal_new ("event", G_TYPE_FROM_CLASS (klass),
                                        G_SIGNAL_RUN_LAST | G_SIGNAL_DETAILED, 0, NULL, NULL,
                                        NULL, G_TYPE_NONE, 1, G_TYPE_POINTER);
  /* ::drained: after the events of one drain */
  signals[SIGNAL_DRAINED] = g_signal_new ("drained", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                                          0, NULL, NULL, NULL, G_TYPE_NONE, 0);
}

static void
vl_run_controller_init (VlRunController *self)
{
}

VlRunController *
vl_run_controller_new (void)
{
  return g_object_new (VL_TYPE_RUN_CONTROLLER, NULL);
}
