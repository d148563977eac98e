/* vl-run.h: run folders on disk: the engine's atomic file writer, the group commit of a
 * checkpoint, the recovery of an interrupted one, the metrics log, the lock of a running trainer
 * and the absolute paths a run records. vl-trainer.c builds what is saved; this file only knows
 * files, so it depends on the model and safetensors layers and nothing above them.
 *
 * The files of a run folder are described in vl-trainer.h. A checkpoint is a group: the model
 * (model.safetensors + config.json), optimizer.safetensors, best.safetensors when the epoch is the
 * best so far, run.json, and the metrics lines of the epochs it completes. vl_run_commit_checkpoint
 * makes the group appear all at once or not at all:
 *
 *   1. every file of the group is written and fsynced under a pending name beside its final one,
 *      .NAME.pending (the metrics lines alone, to be appended: .metrics.jsonl.pending);
 *   2. the manifest .vitlab-commit (JSON: the files, the length metrics.jsonl had) is written to a
 *      temporary name, fsynced and renamed into place: that rename is the commit point;
 *   3. each pending file is renamed to its final name; metrics.jsonl is cut back to the recorded
 *      length and the new lines appended and fsynced (so doing it twice appends once);
 *   4. the manifest is removed.
 *
 * vl_run_recover, which every opening of a run calls (vl_trainer_start, vl_train_config_load,
 * vl_run_load_model), finishes step 3-4 when it finds a manifest (a commit that reached its commit
 * point) and otherwise rolls the group back by removing every pending and temporary file, so the
 * previous checkpoint stays whole. Each step of 3 is idempotent (a listed file without a pending
 * copy was already renamed), so a recovery interrupted in turn is finished by the next.
 *
 * Folders of earlier versions renamed the files one by one without a manifest; a kill between two
 * renames left a model whose optimizer state was still pending, or a checkpoint whose metrics were.
 * Without a manifest and without .model.safetensors.pending (which every commit writes first, so
 * its absence means the old commit was renaming), the recovery adopts .optimizer.safetensors.pending
 * when it belongs to model.safetensors (model_sha256) and the file in place does not, and
 * .metrics.jsonl.pending when it holds exactly the epochs of the checkpoint and metrics.jsonl
 * fewer; everything else pending is removed.
 *
 * Runs that are training hold an exclusive flock on the folder (vl_run_lock; released by the
 * kernel when the process dies): a second trainer is refused, and the recovery of a reader (the
 * app opening a run that the CLI is writing) leaves the folder alone.
 *
 * Fault injection for tests: VITLAB_FAULT_COMMIT=N makes the process _exit(9) at the N-th step of
 * its first commit, C:N at the N-th step of its C-th commit (1-based; steps are the points between
 * the writes and renames above, the first one before anything is written). The step is printed
 * to stderr first ("vitlab: fault injection: exit at commit 1 step 3 (before ...)"). */
#pragma once

#include <gio/gio.h>
#include <glib.h>

#include "vl-atomic.h"
#include "vl-model.h"
#include "vl-safetensors.h"
#include "vl-seg-head.h"

G_BEGIN_DECLS

/* The manifest of a commit in progress (present only between its commit point and its end). */
#define VL_RUN_MANIFEST ".vitlab-commit"

/* ---- the lock ---- */

typedef struct _VlRunLock VlRunLock;

/* Takes the folder's exclusive lock without waiting; an error (VL_ERROR_INVALID) naming the
 * folder when another trainer holds it. A file system without locks is treated as unlocked. */
VlRunLock *vl_run_lock            (const char *dir, GError **error);
void      vl_run_unlock           (VlRunLock *lock);

/* ---- opening ---- */

/* Finishes or rolls back an interrupted commit and removes stray pending and temporary files.
 * lock: the caller's (a trainer), or NULL to take it for the duration; when another process
 * holds it, nothing is done (its own commits keep the folder whole). TRUE when there was nothing
 * to do or it was done; a folder that does not exist (or a file) is nothing to do. An error names
 * the file that could not be finished. */
gboolean  vl_run_recover          (const char *dir, VlRunLock *lock, GError **error);
/* TRUE when the folder holds a committed checkpoint (model.safetensors or optimizer.safetensors). */
gboolean  vl_run_has_checkpoint   (const char *dir);
/* Prepares dir for a trainer: creates it, checks it is writable, takes the lock (*lock, free with
 * vl_run_unlock), recovers. For a new run (resume FALSE), refuses a folder that holds a checkpoint
 * ("already holds a run") and removes the metrics.jsonl and best.safetensors a run that never
 * saved a checkpoint may have left. For resume, needs run.json; *has_checkpoint
 * FALSE then means the run starts again from epoch 0. */
gboolean  vl_run_begin            (const char *dir, gboolean resume, VlRunLock **lock,
                                   gboolean *has_checkpoint, GError **error);

/* ---- saving ---- */

/* Commits one checkpoint as a group (see above): model.safetensors and config.json from model
 * (vl_model_save_checkpoint), optimizer.safetensors from the optimizer writer, best.safetensors
 * (the same model) when best, run.json with run_json's text (NULL: left as it is), and
 * metrics (complete lines, NULL or "": none) appended to metrics.jsonl. On failure nothing of
 * the group is visible and its pending files are removed; the error names the file. The caller
 * holds the folder's lock. */
gboolean  vl_run_commit_checkpoint (const char *dir, VlModel *model,
                                    VlSafetensorsWriter *optimizer, gboolean best,
                                    const char *run_json, const char *metrics, GError **error);
/* The same with a segmentation run's head (vl-seg-head.h) and its AdamW moments in
 * seg_head.safetensors, one more file of the group (seg_head NULL: none); best.safetensors then
 * holds the head too (`head`'s tensors beside the model's, decode_head.*). */
gboolean  vl_run_commit_checkpoint_with (const char *dir, VlModel *model,
                                         VlSafetensorsWriter *optimizer,
                                         VlSafetensorsWriter *seg_head, VlSegHead *head,
                                         gboolean best,
                                         const char *run_json, const char *metrics,
                                         GError **error);
/* The head file of a segmentation or detection run's checkpoint group. */
#define VL_RUN_SEG_HEAD "seg_head.safetensors"
#define VL_RUN_DET_HEAD "det_head.safetensors"
/* vl_run_commit_checkpoint_with with the head's file named (VL_RUN_SEG_HEAD or
 * VL_RUN_DET_HEAD); seg (NULL: none) is the segmentation head best.safetensors holds beside the
 * model. */
gboolean  vl_run_commit_checkpoint_head (const char *dir, VlModel *model,
                                         VlSafetensorsWriter *optimizer,
                                         VlSafetensorsWriter *head, const char *head_file,
                                         VlSegHead *seg, gboolean best, const char *run_json,
                                         const char *metrics, GError **error);
/* Keeps the lines of metrics.jsonl whose "epoch" is below `epochs` (each epoch once, the first),
 * rewriting the file atomically only when something goes. For a resume: the log then ends where
 * the checkpoint does. */
gboolean  vl_run_trim_metrics     (const char *dir, int epochs, GError **error);

/* SHA-256 of every parameter (names with their NUL, float32 data, in the model's order):
 * optimizer.safetensors records the one of the model it belongs to ("model_sha256"). */
char     *vl_run_params_sha256    (VlModel *m);

/* ---- loading ---- */

/* Loads the model saved in a run folder (after vl_run_recover): vl_model_load for a linear head;
 * for the MLP head the backbone structure comes from config.json and every tensor from
 * model.safetensors. class_names (optional) receives the run's class names (g_strfreev). */
VlModel  *vl_run_load_model       (const char *run_dir, char ***class_names, GError **error);

/* ---- paths ---- */

/* path made absolute against the current folder (".." and "." resolved, symlinks kept) when it
 * is relative and exists; otherwise a copy. NULL gives NULL. */
char     *vl_run_absolute_path    (const char *path);
/* The same for a dataset spec (vl_dataset_open): a path, or KIND:PATH (cifar10:DIR); specs that
 * name no existing path (fashion-mnist:classes=5-9) are copied. */
char     *vl_run_absolute_spec    (const char *spec);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (VlRunLock, vl_run_unlock)

/* A segmentation or detection run's head for a timm export in out (written there by
 * vl_model_export): out/seg_head.safetensors (mmsegmentation's names) or out/det_head.safetensors
 * (torchvision's), without the moments, and out/config.json marked "task": "segmentation" or
 * "detection" with seg_ or det_head, _num_classes, _img_size and the class names (label_names), so
 * vitlab loads out back with its head. TRUE with *what NULL when run_dir holds no such head, else
 * *what (may be NULL) says what was written. Errors name the file. */
gboolean  vl_run_export_head      (const char *run_dir, int width, const char *out, char **what,
                                   GError **error);

G_END_DECLS
