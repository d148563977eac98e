/* vl-trainer.h: the training loop on its own thread, its events, and run folders.
 *
 *   VlTrainConfig cfg;
 *   vl_train_config_init (&cfg);                      // the defaults
 *   cfg.backbone = g_strdup ("vit-tiny/");
 *   cfg.data = g_strdup ("hymenoptera/");
 *   cfg.out_dir = g_strdup ("runs/lp");
 *   g_autoptr(VlTrainer) t = vl_trainer_new (&cfg, &error);   // copies cfg
 *   vl_train_config_clear (&cfg);
 *   vl_trainer_set_notify (t, wake_ui, win, NULL);    // worker thread: at most once per drain
 *   vl_trainer_start (t, &error);
 *   ...
 *   // in the UI's idle (or the CLI's loop after vl_trainer_wait):
 *   g_autoptr(GPtrArray) events = vl_trainer_drain (t);       // VlTrainEvent *, oldest first
 *
 * The trainer owns everything it uses: a copy of the configuration, the model (loaded from
 * cfg.backbone on the worker thread, or handed over with vl_trainer_take_model) and the dataset
 * (opened from cfg.data, or handed over with vl_trainer_take_dataset). While it runs, only the
 * worker touches them; vl_trainer_get_model gives the model back once the worker has ended.
 *
 * Each epoch: the unlock schedule decides which layer groups train (OpenCLIP lock semantics: the
 * last N), a batch loop runs AdamW with linear warmup then cosine decay (per step), layer-wise
 * learning-rate decay, label smoothing and gradient clipping, then the validation split is
 * evaluated (loss, top-1, top-5, per-class accuracy, confusion matrix) and, with a run folder,
 * everything needed to continue is saved before the EPOCH event is posted.
 *
 * Frozen-feature cache: with augmentation off and cfg.cache_features, the activations at the lock
 * boundary (vl_model_forward_to_boundary) are computed once for the train and validation images
 * and every epoch trains from them; the cache is rebuilt when the lock changes, and skipped (with
 * a MESSAGE event) when the stem trains or it would exceed cfg.cache_limit bytes. The parameters
 * are the same as without the cache, to float rounding.
 *
 * Attention: with cfg.probe_every K, the worker runs the first cfg.n_probes validation images
 * (and the caller's own image, vl_trainer_set_user_probe) with every block's attention kept, at
 * the start and every K steps, and posts a PROBES event with their maps.
 *
 * Stopping: the worker checks for a stop (and a pause) between batches, and for a stop between
 * each batch's forward and backward passes and between the batches of cache building and
 * validation. So it stops within the longest single forward or backward pass of one batch: for
 * ViT-Ti at batch 32, 224 px with every group training, about 1.4 s forward and 2.4 s backward
 * on a loaded two-core machine (0.5 to 1 s each on a quiet, faster one); with the head alone
 * from the cache, a few milliseconds. With a run folder it then saves a checkpoint of the exact
 * position (epoch, batch), so that cfg.resume continues as if it had never stopped; that write
 * (about 70 MB with fsync for ViT-Ti) comes on top of the bound.
 *
 * Segmentation (cfg.task VL_TASK_SEGMENT, a dataset with masks): the model gets no
 * classification head (VL_HEAD_NONE) and a seg head of cfg.seg_head (vl-seg-head.h) reads its
 * final-norm tokens. The seg head is the last layer group, after the model's own (stem, blocks,
 * norm): unlocking N groups trains the seg head and the model's last N - 1 groups, so OpenCLIP's
 * "unlock N" still reads "head first" (1 = the frozen linear probe). Layer decay gives it the top
 * layer id (scale 1). Images are squashed to img_size (no crop, masks nearest neighbour; light
 * and strong move image and mask together); the loss is the per-pixel cross-entropy at the input
 * size with 255 ignored; validation upsamples the logits bilinearly to each image's own size and
 * scores them against its original mask (VlSegResult, mmseg's IoUMetric). The frozen-feature
 * cache holds the final-norm token grid when only the seg head trains (the boundary activations
 * otherwise) and the training masks. The head and its AdamW moments are saved in
 * seg_head.safetensors, part of each checkpoint's group commit; best.safetensors holds the
 * backbone and the head (decode_head.*) in one file.
 *
 * Run folder (cfg.out_dir):
 *   run.json               the configuration: backbone path (absolute; "path_typed" as given)
 *                          and SHA-256, head, pool, unlock schedule, hyperparameters, seed,
 *                          dataset spec (absolute path; "spec_typed" as given), classes, split
 *   metrics.jsonl          one JSON object per epoch of the checkpoint
 *   model.safetensors      the model (vl_model_save), with
 *   config.json            timm layout: the folder itself loads with vl_model_load
 *                          (a linear head; see vl_run_load_model for the MLP head)
 *   optimizer.safetensors  AdamW moments per tensor; step counts, epoch, batch, global step and
 *                          the state of early stopping in its metadata
 *   best.safetensors       the model at the lowest validation loss (with early stopping)
 * run.json is written when the run starts; everything else (run.json again) is saved as one
 * checkpoint after each epoch and at a stop, committed as a group by vl_run_commit_checkpoint
 * (vl-run.h): an interrupted save (kill -9, full disk) leaves the previous checkpoint or the new
 * one, whole, and the next opening of the folder finishes or rolls it back. A folder with run.json
 * and no checkpoint resumes from epoch 0 and may take a new run; one with a checkpoint refuses a
 * new run. While the worker runs, the trainer holds the folder's lock (vl_run_lock).
 */
#pragma once

#include <gio/gio.h>
#include <glib.h>
#include <stdint.h>

#include "vl-dataset.h"
#include "vl-model.h"
#include "vl-run.h"
#include "vl-task.h"
#include "vl-seg-head.h"
#include "vl-detect.h"
#include "vl-head.h"

G_BEGIN_DECLS

/* ------------------------------------------------------------------ configuration */

/* The unlock count meaning "every layer group". */
#define VL_UNLOCK_ALL 100000

typedef struct {
  int epoch;        /* from this epoch on (0-based) ... */
  int unlocked;     /* ... the last `unlocked` layer groups train (VL_UNLOCK_ALL: all) */
} VlUnlockStep;

typedef struct {
  /* the task: what the head predicts and the loss it trains with (vl-task.h) */
  VlTaskKind  task;              /* VL_TASK_CLASSIFY */
  VlRegLoss   reg_loss;          /* VL_REG_LOSS_MSE (regress) */
  VlSegHeadKind seg_head;        /* VL_SEG_HEAD_LINEAR (segment): see "Segmentation" below */
  int         img_size;          /* input side; 0: the backbone's (a multiple of the patch) */
  /* the model */
  char       *backbone;          /* checkpoint path (unused when a model is handed over) */
  gboolean    init_random;       /* train from scratch: the backbone's geometry (or `geometry`)
                                  * with timm's random initialisation, seeded by `seed` */
  char       *geometry;          /* vl_geometry_parse spec, for init_random without a backbone */
  VlHeadKind  head;              /* VL_HEAD_LINEAR (default) or VL_HEAD_MLP */
  int         mlp_hidden;        /* MLP head's hidden width; 0: the backbone's width */
  VlPoolKind  pool;              /* VL_POOL_TOKEN */
  /* the data */
  char       *data;              /* vl_dataset_open spec (unused when a dataset is handed over) */
  double      val_fraction;      /* 0.2 (when the source has no validation split) */
  VlAugment   augment;           /* VL_AUGMENT_NONE */
  /* what trains when: "0:1,2:4,4:all" = the head alone for epochs 0-1, the last 4 groups for
   * epochs 2-3, everything from epoch 4; a plain "N" is "0:N". Default "1" (linear probe). */
  char       *unlock_schedule;
  /* A fixed set of layer groups instead (bit g: group g trains, in every epoch), for patterns
   * that are not the last N, e.g. the stem and one middle block. 0: use the schedule. */
  guint64     unlock_mask;
  /* The same by layer-group names, comma-separated ("stem,head"; "blocks" is every block),
   * resolved against the model into unlock_mask when the run starts. NULL: unused. */
  char       *train_groups;
  /* VL_STEM_PATCH: the backbone's own stem. conv, mbconv: its patch embedding replaced by a new
   * CNN stem (vl_model_replace_stem, seeded by `seed`) of the same grid and width. */
  VlStemKind  stem;
  /* optimisation */
  int         epochs;            /* 10 */
  int         batch_size;        /* 32 */
  double      lr;                /* 1e-3: peak learning rate (scaled per group by layer decay) */
  double      min_lr;            /* 0: the end of the cosine */
  double      weight_decay;      /* 0.05 */
  double      beta1, beta2, eps; /* 0.9, 0.999, 1e-8 */
  double      warmup_epochs;     /* 1 (fractions allowed) */
  double      layer_decay;       /* 1: off; e.g. 0.75 (timm param_groups_layer_decay) */
  double      label_smoothing;   /* 0 */
  double      clip_grad;         /* 0: off; else the max global L2 norm */
  int         early_stop;        /* patience in epochs without a lower validation loss; 0: off */
  uint64_t    seed;              /* 0: head initialisation, split, data order, augmentation */
  /* frozen-feature cache */
  gboolean    cache_features;    /* FALSE */
  int64_t     cache_limit;       /* bytes; 4 GiB */
  /* monitoring */
  int         probe_every;       /* attention rollout of the probe images every K steps; 0: off */
  int         n_probes;          /* 4: the first validation images, one class after another */
  /* the run folder; NULL: nothing is written */
  char       *out_dir;
  gboolean    resume;            /* continue from out_dir's checkpoint */
  /* scripted stops (tests, batch jobs): behave as if vl_trainer_stop had been called once this
   * many epochs (or global steps) are done; 0: never */
  int         stop_after_epoch;
  int64_t     stop_after_step;
} VlTrainConfig;

/* The defaults above (strings NULL but unlock_schedule "1"). */
void      vl_train_config_init   (VlTrainConfig *c);
void      vl_train_config_clear  (VlTrainConfig *c);
/* Deep copy into an uninitialised dst. */
void      vl_train_config_copy   (VlTrainConfig *dst, const VlTrainConfig *src);
/* Checks ranges and the schedule; errors name the option ("lr -1: must be positive"). */
gboolean  vl_train_config_check  (const VlTrainConfig *c, GError **error);
/* Reads run_dir/run.json into c (initialised first); out_dir is set to run_dir. Finishes or
 * rolls back an interrupted save first (vl_run_recover). On failure c holds nothing to free. */
gboolean  vl_train_config_load   (VlTrainConfig *c, const char *run_dir, GError **error);

/* Parses an unlock schedule: entries "EPOCH:N" (N a count or "all") separated by commas, epochs
 * strictly increasing from 0; a plain "N" means "0:N". Returns n_steps entries (g_free). */
VlUnlockStep *vl_unlock_schedule_parse (const char *text, int *n_steps, GError **error);
/* The schedule as vl_unlock_schedule_parse reads it ("0:1,2:3,4:all"; g_free). */
char         *vl_unlock_schedule_to_string (const VlUnlockStep *steps, int n_steps);
/* Groups unlocked in `epoch` (VL_UNLOCK_ALL as is). */
int       vl_unlock_schedule_at  (const VlUnlockStep *steps, int n_steps, int epoch);

/* The learning rate of global step `step` (0-based): linear warmup to cfg.lr over
 * round(warmup_epochs * steps_per_epoch) steps (step s gets lr (s + 1) / warmup), then cosine
 * decay from lr to min_lr over the remaining steps of cfg.epochs epochs. */
double    vl_train_lr_at         (const VlTrainConfig *c, int64_t step, int64_t steps_per_epoch);
/* Layer-wise learning-rate scale per layer group (vl_model_n_groups entries), timm's
 * param_groups_layer_decay over ViT.group_matcher: layer ids count the groups in order, except
 * that the final norm shares the last block's id (timm's MATCH_PREV_GROUP); the head has the
 * highest id. scale = decay ^ (max_id - id): head 1, norm and the last block decay, block i
 * decay^(depth - i), stem decay^(depth + 1). */
void      vl_train_layer_scales  (VlModel *m, double decay, float *scales);

/* Evaluation (vl_evaluate, VlEvalResult, vl_preprocess_from_model) is in vl-task.h. */

/* ------------------------------------------------------------------ events */

typedef enum {
  VL_TRAIN_EVENT_READY,      /* model and data are ready: sizes, classes, skipped files */
  VL_TRAIN_EVENT_LOCK,       /* the trainable groups changed (at an epoch start) */
  VL_TRAIN_EVENT_STEP,       /* one or more training steps (merged: see points) */
  VL_TRAIN_EVENT_EPOCH,      /* an epoch ended: its metrics (already saved with a run folder) */
  VL_TRAIN_EVENT_PROBES,     /* attention rollout of the probe images */
  VL_TRAIN_EVENT_MESSAGE,    /* information for the user, e.g. why the cache is not used */
  VL_TRAIN_EVENT_PAUSED,
  VL_TRAIN_EVENT_RESUMED,
  VL_TRAIN_EVENT_FINISHED,   /* always the last event: how it ended, the error if it failed */
  VL_TRAIN_EVENT_PROGRESS,   /* a pass without steps (caching, validation): done, total, ETA */
} VlTrainEventKind;

/* The passes PROGRESS events report (vl_train_phase_name: "caching", "validating") */
typedef enum {
  VL_TRAIN_PHASE_CACHE,      /* the frozen-feature cache being built */
  VL_TRAIN_PHASE_VALIDATE,   /* the validation split at an epoch's end */
} VlTrainPhase;

const char *vl_train_phase_name (VlTrainPhase phase);

typedef enum {
  VL_TRAIN_END_COMPLETED,    /* every epoch ran */
  VL_TRAIN_END_EARLY_STOPPED,
  VL_TRAIN_END_STOPPED,      /* vl_trainer_stop, or a scripted stop */
  VL_TRAIN_END_FAILED,       /* see error (VL_ERROR_NUMERIC for a NaN/Inf loss) */
} VlTrainEnd;

typedef struct {
  int64_t step;              /* global step, 1-based: the step just taken */
  int     epoch;
  float   loss;              /* training loss of the batch (with label smoothing) */
  float   lr;                /* peak-group learning rate used */
  float   grad_norm;         /* global gradient norm before clipping */
} VlStepPoint;

/* VlEpochMetrics (one epoch's metrics, tagged by task) is declared in vl-head.h. */

typedef struct {
  VlTrainEventKind kind;
  int          epoch;        /* the epoch it belongs to (0-based) */
  int64_t      step;         /* global steps done when it was posted */

  /* READY */
  VlTaskKind   task;
  int          n_train, n_val, n_classes, n_groups;
  int          n_values;     /* regress: targets (the head's outputs), named by value_names */
  char       **value_names;
  char       **class_names;  /* (n_classes) */
  int64_t      steps_per_epoch, total_steps;
  int          start_epoch;  /* > 0 (or step > 0) when resumed */
  char       **skipped;      /* "FILE: reason" (also in FINISHED, with those found later) */

  /* LOCK (and STEP): what trains now; cached: the epochs of this lock run from the frozen-
   * feature cache (built right after this event, announced by MESSAGE events) */
  int          unlocked;
  int64_t      n_trainable;
  gboolean     cached;

  /* STEP: every step since the last drain, oldest first, and the latest state */
  VlStepPoint *points;
  int          n_points;
  int          batch, n_batches;     /* batches done in this epoch, out of */
  double       images_per_s;         /* recent training throughput */
  double       eta_s;                /* to the end of the last epoch */
  double      *group_grad_norms;     /* (n_groups) of the latest step, before clipping */

  /* EPOCH */
  VlEpochMetrics *metrics;

  /* PROBES: rollout heatmaps (n_probes, grid_h, grid_w) of the validation probes, non-negative,
   * each summing to at most 1 (the CLS token's own share of the rollout row is left out) */
  int          n_probes, grid_h, grid_w;
  float       *rollout;
  /* and, for a model pooled by an attention pool (SigLIP's), its probabilities (n_probes,
   * pool_heads, grid_h * grid_w); NULL otherwise */
  float       *pool;
  int          pool_heads;
  int         *probe_labels, *probe_predicted;
  char       **probe_names;          /* file names (val split) */
  /* PROBES, the caller's own probe image (vl_trainer_set_user_probe), under the same model:
   * user_probe is the serial that call returned (0: this event has none); its patch grid, every
   * block's attention probabilities (user_depth, user_heads, user_T, user_T), each row summing to
   * 1 (T = the model's prefix tokens + user_grid_h * user_grid_w), its rollout (user_grid_h,
   * user_grid_w) as above, and its top class */
  guint64      user_probe;
  int          user_grid_h, user_grid_w;
  int          user_depth, user_heads, user_T;
  float       *user_attn;
  float       *user_rollout;
  float       *user_pool;            /* (user_heads, user_grid_h * user_grid_w) or NULL */
  int          user_predicted;

  /* PROGRESS (merged like steps; at most about five a second, and one when a pass ends): images
   * done of the pass's total, and eta_s, the pass's own time left (vl-eta.h: restarted for each
   * pass) */
  VlTrainPhase phase;
  int64_t      done, total;

  /* MESSAGE */
  char        *message;

  /* FINISHED */
  VlTrainEnd   end;
  GError      *error;
} VlTrainEvent;

void      vl_train_event_free    (VlTrainEvent *ev);
const char *vl_train_event_kind_name (VlTrainEventKind kind);

/* ------------------------------------------------------------------ the trainer */

typedef struct _VlTrainer VlTrainer;

typedef enum {
  VL_TRAINER_IDLE,           /* created, not started */
  VL_TRAINER_RUNNING,
  VL_TRAINER_PAUSED,         /* paused at a batch boundary */
  VL_TRAINER_FINISHED,       /* the worker has ended (FINISHED is queued) */
} VlTrainerState;

/* Called on the worker thread when an event is queued and none was queued since the last drain:
 * at most one call per drain. Keep it short (e.g. g_main_context_invoke / g_idle_add a drain);
 * do not call vl_trainer_* from it except vl_trainer_ref, and never drop the last reference. */
typedef void (*VlTrainerNotify) (VlTrainer *trainer, gpointer user_data);

/* Copies and checks the configuration. */
VlTrainer *vl_trainer_new         (const VlTrainConfig *config, GError **error);
VlTrainer *vl_trainer_ref         (VlTrainer *t);
/* The last reference stops the worker, waits for it and frees everything. */
void      vl_trainer_unref        (VlTrainer *t);
/* Before start: train this model (its head is replaced by one for the dataset's classes)
 * instead of loading config->backbone. */
void      vl_trainer_take_model   (VlTrainer *t, VlModel *model);
/* Before start: use this dataset instead of opening config->data. */
void      vl_trainer_take_dataset (VlTrainer *t, VlDataset *dataset);
void      vl_trainer_set_notify   (VlTrainer *t, VlTrainerNotify notify, gpointer user_data,
                                   GDestroyNotify destroy);
/* Starts the worker. Fails at once (nothing started) when the run folder cannot be created or
 * written, another trainer uses it, cfg.resume finds no run.json there (without a checkpoint it
 * starts at epoch 0), or a new run finds a checkpoint there (vl_run_begin); later failures end
 * the run with a FINISHED event carrying the error. */
gboolean  vl_trainer_start        (VlTrainer *t, GError **error);
/* Pauses at the next batch boundary / resumes. */
void      vl_trainer_pause        (VlTrainer *t);
void      vl_trainer_resume       (VlTrainer *t);
/* Asks the worker to stop (see the bound above); returns at once. Idempotent. A paused worker
 * stops without training another batch (do not resume it first: it could take one). */
void      vl_trainer_stop         (VlTrainer *t);
/* From the next epoch on, train the last `unlocked` groups (VL_UNLOCK_ALL: all), overriding
 * the schedule; the optimizer state of groups already training is kept. Saved in the run. */
void      vl_trainer_set_unlock   (VlTrainer *t, int unlocked);
VlTrainerState vl_trainer_get_state (VlTrainer *t);
/* A probe image of the caller's own (e.g. one the user dropped on the window), already
 * preprocessed to the model's input: (channels, height, width) floats, copied; height and width
 * multiples of the patch size (the model's input size batches it with the validation probes;
 * another size runs on its own, with the position embedding resampled). Any thread, any time,
 * also while the worker runs: it takes the image at its next batch boundary (while paused, at
 * once), and from then on every PROBES event carries its attention (user_* fields) with the
 * serial returned here, until another call replaces it (pixels NULL: none; returns 0). Nothing
 * is computed with cfg.probe_every 0. An image the model cannot take (other channels, a side
 * that is not a multiple of the patch) is refused with a MESSAGE event; the previous one stays. */
guint64   vl_trainer_set_user_probe (VlTrainer *t, const float *pixels, int channels, int height,
                                     int width);
/* Takes every queued event (VlTrainEvent *, oldest first; the array frees them). Consecutive
 * steps arrive as one STEP event whose points hold each of them; an undrained PROBES event is
 * replaced by a newer one. Never NULL. Any thread. */
GPtrArray *vl_trainer_drain       (VlTrainer *t);
/* Blocks until an event is queued or timeout_us passes (< 0: no limit); TRUE when one is. */
gboolean  vl_trainer_wait         (VlTrainer *t, gint64 timeout_us);
/* Waits for the worker to end. */
void      vl_trainer_join         (VlTrainer *t);
/* The model once the worker has ended (NULL before): for evaluation, export, classification.
 * Owned by the trainer. */
VlModel  *vl_trainer_get_model    (VlTrainer *t);
/* Segmentation: the trained seg head once the worker has ended (NULL before, and for the other
 * tasks). Owned by the trainer. */
VlSegHead *vl_trainer_get_seg_head (VlTrainer *t);
/* Detection: the trained FCOS head likewise. */
VlDetHead *vl_trainer_get_det_head (VlTrainer *t);
/* The dataset once the worker has ended (NULL before). */
VlDataset *vl_trainer_get_dataset (VlTrainer *t);
const VlTrainConfig *vl_trainer_get_config (VlTrainer *t);

/* ------------------------------------------------------------------ run folders */

/* Run folders (vl_run_load_model, vl_write_file_atomic, the checkpoint commit): vl-run.h. */

/* The task a run folder was trained for (run.json's "task"; a run without one classifies):
 * for regression, its targets' names and the standardisation its head predicts in. */
typedef struct {
  VlTaskKind kind;
  VlRegLoss  reg_loss;
  int        n_values;
  char     **value_names;
  float     *mean, *std;
} VlRunTask;

gboolean  vl_run_read_task        (const char *run_dir, VlRunTask *out, GError **error);
void      vl_run_task_clear       (VlRunTask *t);
/* A VlTaskSpec viewing t's arrays (valid while t is). */
VlTaskSpec vl_run_task_spec       (const VlRunTask *t);
/* metrics.jsonl of a run folder: one VlEpochMetrics per finished epoch (those of a run of
 * `task` with n_outputs classes or targets; regression epochs carry no predictions), oldest
 * first; an empty array when no epoch has finished. A line cut short is left out; a line of
 * another task is an error naming the file and line. Free with g_ptr_array_unref. */
GPtrArray *vl_run_read_metrics    (const char *run_dir, VlTaskKind task, int n_outputs,
                                   GError **error);
void      vl_epoch_metrics_free   (VlEpochMetrics *m);
/* run.json's data.classes (for segmentation and detection the background first), NULL-ended;
 * NULL when the folder records none. */
char    **vl_run_read_class_names (const char *run_dir);


G_DEFINE_AUTOPTR_CLEANUP_FUNC (VlTrainer, vl_trainer_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VlTrainEvent, vl_train_event_free)

G_END_DECLS
