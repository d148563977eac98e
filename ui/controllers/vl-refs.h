/* vl-refs.h: what the window shares with its worker threads and its views: the dataset open
 * and the trained model, each in an atomic refcounted box so that a worker keeps it alive while
 * the user moves on (opens another dataset, trains again). */
#pragma once

#include "vl-trainer.h"

G_BEGIN_DECLS

/* A dataset shared with worker threads (thumbnails, probe images): an atomic refcounted box,
 * so a worker keeps it alive while the user opens another one. vl_dataset_load is thread-safe. */
typedef struct {
  VlDataset *ds;
  char      *spec;
  VlDatasetOptions options;
  VlTrainer *owner;        /* when set, ds belongs to this (finished) trainer */
} VlDataRef;

VlDataRef *vl_data_ref_new_for_trainer (VlTrainer *trainer);

VlDataRef *vl_data_ref   (VlDataRef *d);
void       vl_data_unref (VlDataRef *d);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VlDataRef, vl_data_unref)

/* The trained model, shared with worker threads (predictions, export): the finished trainer
 * that owns it, or a model loaded from a run folder. Tasks using the model hold a reference
 * and its lock. */
typedef struct {
  VlTrainer *trainer;      /* finished (or NULL) */
  VlModel   *model;        /* owned when loaded from a run folder (or NULL) */
  VlSegHead *seg_head;     /* segmentation: owned when loaded from a run folder (or NULL) */
  VlDetHead *det_head;     /* detection: likewise */
  GMutex     lock;
} VlTrainedRef;

VlTrainedRef *vl_trained_ref   (VlTrainedRef *t);
void          vl_trained_unref (VlTrainedRef *t);
VlModel      *vl_trained_model (VlTrainedRef *t);
/* The trained seg head (the trainer's, or the run folder's); NULL for the other tasks. */
VlSegHead    *vl_trained_seg_head (VlTrainedRef *t);
/* The trained FCOS head likewise; NULL for the other tasks. */
VlDetHead    *vl_trained_det_head (VlTrainedRef *t);

/* A trained model loaded from a run folder (taken), for a VlTrainedRef without a trainer. */
VlTrainedRef *vl_trained_new   (VlTrainer *trainer, VlModel *model);

G_END_DECLS
