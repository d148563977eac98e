/* vl-test-util.h: helpers shared by the tests. */
#pragma once

#include <glib.h>
#include <stdint.h>
#include "vl-safetensors.h"
#include "vl-trainer.h"

G_BEGIN_DECLS

/* Path of a file under ../shared (VITLAB_SHARED); aborts the test when that folder is
 * missing: the tests never skip for want of data. */
char  *vl_test_shared_path (const char *first, ...) G_GNUC_NULL_TERMINATED;
/* Path of a file under tests/data. */
char  *vl_test_data_path   (const char *first, ...) G_GNUC_NULL_TERMINATED;
/* Opens a safetensors file or fails the test. */
VlSafetensors *vl_test_open (const char *path);
/* Reads a tensor as float32 or fails the test; *numel receives its element count. */
float *vl_test_read (VlSafetensors *st, const char *name, int64_t *numel);
/* Largest absolute difference; records it in the test log with `what`. */
double vl_test_max_abs_diff (const float *a, const float *b, int64_t n);
/* Asserts |a - b| <= atol + rtol * |b| elementwise, naming `what` and the worst element. */
void   vl_test_assert_close (const char *what, const float *got, const float *want, int64_t n,
                             double atol, double rtol);
/* A fresh temporary directory for this test (removed at exit is not needed: under /tmp). */
char  *vl_test_tmpdir (void);
/* Copies the file `from` to `to` (replacing it), or fails the test. */
void   vl_test_copy_file (const char *from, const char *to);
/* Drains the trainer's events until FINISHED: *end receives how it ended (its error, if any, in
 * the test log), the worker is joined; lock_events (or NULL) receives each LOCK event's
 * n_trainable (int64_t, g_malloc'd). */
void   vl_test_run_to_end (VlTrainer *t, VlTrainEnd *end, GPtrArray *lock_events);
/* Runs $VITLAB_CLI with the arguments (NULL-terminated): its stdout (g_free), *status its exit
 * status (-1 when killed); its stderr goes to the test log. */
char  *vl_test_cli (int *status, const char *first, ...) G_GNUC_NULL_TERMINATED;

G_END_DECLS
