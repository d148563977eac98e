/* vl-trainer-private.h: the worker's run (Run: the model, data, heads, cache and counters of one
 * training run), for the trainer's own files. The run folder's writing and reading
 * (vl-train-save.h) does not see it: the worker hands it a VlRunRecord, a VlRunPosition and a
 * VlCheckpointSave; nor does the frozen-feature cache (vl-train-cache.h): it is handed the model,
 * the data and a VlFeatCacheSpec. Engine-internal. */
#pragma once

#include "vl-trainer.h"
#include "vl-eta.h"
#include "vl-head.h"
#include "vl-safetensors.h"
#include "vl-train-cache.h"
#include "vl-train-probes.h"
#include "vl-train-save.h"

typedef struct {
  VlTrainer           *t;
  const VlTrainConfig *cfg;
  VlModel             *m;
  VlDataset           *ds;
  VlPreprocess         pp;
  int                  S, K, n_groups, n_train, n_val;
  VlTaskSpec           task;            /* K outputs: classes, or regression targets */
  VlRunRecord          rec;             /* what run.json records: origin, names, targets' stats */
  /* the task's head (vl-head.h): the model's own, or one outside the model over its final-norm
   * tokens (segment, detect) that is layer group n_groups - 1, after the model's
   * n_model_groups */
  VlHead              *head;
  int                  n_model_groups;
  gboolean             head_trains;     /* a head outside the model: its group is unlocked */
  gboolean             model_trains;    /* a group of the model is unlocked */
  gboolean             tok_cache;       /* the cache holds final-norm tokens (only the head
                                         * outside the model trains) */
  VlHeadGrid           grid;            /* the token grid at the input size */
  int                  max_boxes;       /* room per image in batches and the cache */

  VlLoader            *train_loader;    /* images, created when first needed */
  VlLoader            *val_loader;
  VlDataset           *order_ds;        /* labels only: gives the cached path the loader's order */
  VlLoader            *order_loader;
  int64_t              spe, total_steps;

  /* position: the next batch to train is (epoch, batch) */
  int                  epoch, batch;
  int64_t              step;
  double               loss_sum;
  int64_t              seen;
  double               best_val;
  int                  best_epoch, bad_epochs;
  gboolean             dirty;           /* trained since the last save */
  int                  saved_epoch;     /* epochs complete in the checkpoint on disk; -1: none */

  VlUnlockStep        *sched;
  int                  n_sched;
  int                  unlocked;        /* applied, clamped; -1 before the first */
  int64_t              n_trainable;

  gboolean             cache_wanted, cached;   /* cached: training runs from the cache */
  gboolean             val_cached;             /* validation runs from the cache */
  int                  cache_checked_for;
  int64_t              cache_numel;
  VlFeatCache          ctrain, cval;    /* vl-train-cache.h */
  VlFeatBatch          fbatch;          /* a batch gathered from the cache */

  VlAdamW              opt;
  float               *scales;
  double              *gnorms;

  VlProbeSet           probes;          /* the images a PROBES event shows */
  guint64              user_serial;     /* the trainer's serial of the caller's image last seen */
  GPtrArray           *metrics_lines;
  double               step_s_ema, ips_ema, val_seconds;
  gint64               last_step_time;
  /* the pass PROGRESS events report (progress_begin) */
  VlTrainPhase         phase;
  VlEta                eta;
  int64_t              phase_done;
  gint64               progress_posted;
  /* the next lock's cache, filled by the pass that built this one (prepare_cache) */
  VlFeatCache          ntrain, nval;
  int                  next_unlocked;
  gboolean             next_ready;
  double               train_seconds;   /* of this epoch, in this session */
  int64_t              session_seen;    /* images trained in this epoch, in this session */
} Run;


