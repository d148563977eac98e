/* vl-refs.c: the dataset and the trained model shared with worker threads (see vl-refs.h). */
#include "vl-refs.h"

/* ------------------------------------------------------------------ the dataset */

static void
data_ref_clear (gpointer p)
{
  VlDataRef *d = p;
  if (d->owner)
    vl_trainer_unref (d->owner);
  else
    g_clear_pointer (&d->ds, vl_dataset_free);
  g_free (d->spec);
}

/* The dataset a finished trainer used (it stays the trainer's). */
VlDataRef *
vl_data_ref_new_for_trainer (VlTrainer *trainer)
{
  VlDataset *ds = vl_trainer_get_dataset (trainer);
  if (ds == NULL)
    return NULL;
  VlDataRef *d = g_atomic_rc_box_new0 (VlDataRef);
  d->owner = vl_trainer_ref (trainer);
  d->ds = ds;
  d->spec = g_strdup (vl_trainer_get_config (trainer)->data);
  return d;
}

VlDataRef *
vl_data_ref (VlDataRef *d)
{
  return g_atomic_rc_box_acquire (d);
}

void
vl_data_unref (VlDataRef *d)
{
  g_atomic_rc_box_release_full (d, data_ref_clear);
}

/* ------------------------------------------------------------------ the trained model */

static void
trained_clear (gpointer p)
{
  VlTrainedRef *t = p;
  g_clear_pointer (&t->trainer, vl_trainer_unref);
  g_clear_pointer (&t->model, vl_model_free);
  g_clear_pointer (&t->seg_head, vl_seg_head_free);
  g_clear_pointer (&t->det_head, vl_det_head_free);
  g_mutex_clear (&t->lock);
}

VlTrainedRef *
vl_trained_new (VlTrainer *trainer, VlModel *model)
{
  VlTrainedRef *t = g_atomic_rc_box_new0 (VlTrainedRef);
  g_mutex_init (&t->lock);
  t->trainer = trainer ? vl_trainer_ref (trainer) : NULL;
  t->model = model;
  return t;
}

VlTrainedRef *
vl_trained_ref (VlTrainedRef *t)
{
  return g_atomic_rc_box_acquire (t);
}

void
vl_trained_unref (VlTrainedRef *t)
{
  g_atomic_rc_box_release_full (t, trained_clear);
}

VlModel *
vl_trained_model (VlTrainedRef *t)
{
  return t->model ? t->model : t->trainer ? vl_trainer_get_model (t->trainer) : NULL;
}

VlSegHead *
vl_trained_seg_head (VlTrainedRef *t)
{
  return t->seg_head ? t->seg_head : t->trainer ? vl_trainer_get_seg_head (t->trainer) : NULL;
}

VlDetHead *
vl_trained_det_head (VlTrainedRef *t)
{
  return t->det_head ? t->det_head : t->trainer ? vl_trainer_get_det_head (t->trainer) : NULL;
}
