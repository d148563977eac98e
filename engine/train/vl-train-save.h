/* vl-train-save.h: what a training run writes into its folder and reads back to resume — run.json,
 * metrics.jsonl's lines, the checkpoint group, the state a resume restores — with narrow
 * arguments: the trainer's worker (vl-trainer.c) hands these functions what they write and takes
 * back what they read, so this module never sees the worker's Run. Engine-internal.
 *
 *   VlRunPosition pos = { .epoch = 3, .batch = 0, .step = 300, .steps_per_epoch = 100, … };
 *   VlCheckpointSave s = { .dir = dir, .model = m, .pos = &pos, .run_json = json, … };
 *   vl_train_save_checkpoint (&s, &error);
 *   …
 *   VlRunPosition back = { .steps_per_epoch = 100 };
 *   vl_train_load_checkpoint_state (dir, m, &back, &error);   // back.epoch == 3
 */
#pragma once

#include <glib.h>
#include <stdint.h>

#include "vl-dataset.h"
#include "vl-model.h"
#include "vl-safetensors.h"
#include "vl-seg-head.h"
#include "vl-trainer.h"

G_BEGIN_DECLS

/* What run.json records of a run beside its configuration (owned strings; the trainer's). */
typedef struct {
  char  *created;                          /* ISO 8601, kept across resumes */
  char  *backbone_path;                    /* absolute */
  char  *backbone_typed;                   /* as given */
  char  *backbone_sha;
  char  *data_spec;                        /* with an absolute path; NULL: data in memory */
  char  *data_typed;                       /* as given */
  char **class_names;                      /* (K) */
  char **value_names;                      /* regress: (K) the targets' names */
  float *tmean, *tstd;                     /* regress: (K) the targets' standardisation */
} VlRunRecord;

void      vl_run_record_clear            (VlRunRecord *rec);

/* Where a run stands: what a checkpoint stores and a resume restores. */
typedef struct {
  int           epoch, batch;              /* the next batch to train */
  int64_t       step;                      /* optimizer steps taken */
  int64_t       steps_per_epoch;
  double        loss_sum;                  /* of the epoch so far */
  int64_t       seen;                      /* images trained in the epoch so far */
  double        best_val;                  /* early stopping: the best validation loss */
  int           best_epoch, bad_epochs;
  VlUnlockStep *sched;                     /* the unlock schedule in force */
  int           n_sched;
} VlRunPosition;

/* run.json: the configuration c, the model's geometry at input size img_size with n_groups layer
 * groups (a head outside the model counts as one), n_outputs classes or targets, the data ds,
 * rec's record and pos's schedule and steps per epoch. */
char     *vl_train_run_json              (const VlTrainConfig *c, VlModel *m, VlDataset *ds,
                                          const VlRunRecord *rec, const VlRunPosition *pos,
                                          int img_size, int n_outputs, int n_groups);

/* One line of metrics.jsonl (with its newline). */
char     *vl_train_metrics_line          (const VlEpochMetrics *e);

/* The dataset's skipped files as "PATH: REASON" lines (NULL-terminated). */
char    **vl_train_skipped_strv          (VlDataset *ds);

typedef struct {
  const char          *dir;                /* the run folder */
  VlModel             *model;
  const VlRunPosition *pos;                /* epoch and batch: where a resume starts */
  guint64              seed;
  const char          *run_json;
  const char          *metrics;            /* metrics.jsonl's lines not saved yet */
  VlSafetensorsWriter *head;               /* a head outside the model: its file; NULL: none */
  const char          *head_file;          /* VL_RUN_SEG_HEAD or VL_RUN_DET_HEAD */
  VlSegHead           *seg;                /* best.safetensors holds it beside the model */
  gboolean             best;               /* also best.safetensors */
} VlCheckpointSave;

/* The model, the optimizer state and the position, config.json, run.json, the new metrics lines
 * and the head's file (and best.safetensors when s->best) as one group commit
 * (vl_run_commit_checkpoint_head). */
gboolean  vl_train_save_checkpoint       (const VlCheckpointSave *s, GError **error);

/* On resume: the optimizer state of dir/optimizer.safetensors into m (whose tensors are already
 * loaded) and the position into pos. pos->steps_per_epoch is read: a file saved with another is an
 * error (batch size or data changed). pos->sched is replaced by the file's schedule when it has
 * one (the old one freed). */
gboolean  vl_train_load_checkpoint_state (const char *dir, VlModel *m, VlRunPosition *pos,
                                          GError **error);

/* On resume: dir/run.json must describe the same data as ds (classes, their names in rec, split
 * sizes); rec's created date and the typed forms of its paths are taken from it. */
gboolean  vl_train_check_run_data        (const char *dir, VlDataset *ds, VlRunRecord *rec,
                                          GError **error);

G_END_DECLS
