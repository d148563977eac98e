/* vl-pool.h: the engine's own small thread pool, and the GEMM entry point.
 *
 * How the engine keeps two cores busy without oversubscribing them: OpenBLAS is pinned to one
 * thread (openblas_set_num_threads (1) in vl_pool_init), and every parallel region of the engine
 * — row panels of the big GEMMs, (image, head) pairs of attention, rows of LayerNorm/GELU/softmax —
 * runs on this pool, one task stream per core, each task calling single-threaded sgemm. So at any
 * moment exactly n_threads threads compute: OpenBLAS never starts threads of its own that would
 * compete with the pool's (or spin while the pool works). */
#pragma once

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

/* Call first thing in main (before any thread starts). Debian's OpenBLAS 0.3.21 does not
 * recognise recent CPUs (e.g. Sapphire Rapids) and falls back to its SSE3 "Prescott" kernels,
 * 3-4x slower; it reads OPENBLAS_CORETYPE only while it is being loaded. When it fell back to a
 * generic core on a CPU with AVX-512 or AVX2+FMA, this sets OPENBLAS_CORETYPE to the matching
 * kernel family (SkylakeX, Haswell) and re-executes the program once with the same arguments.
 * Does nothing when OPENBLAS_CORETYPE is already set (a user's choice is kept). */
void vl_blas_select_kernel (char **argv);

/* fn (ctx, index, worker): worker is in [0, vl_pool_n_threads ()), unique among tasks running at
 * the same time, so a task may use per-worker scratch space indexed by it. */
typedef void (*VlTaskFunc) (void *ctx, int64_t index, int worker);

/* Starts the pool once (later calls are no-ops). n_threads <= 0: $VITLAB_THREADS, else the number
 * of processors. */
void vl_pool_init      (int n_threads);
int  vl_pool_n_threads (void);
/* Runs fn for every index in [0, n) and returns when all are done. The calling thread takes part.
 * A call made while the pool is busy (from a task, or from another thread) runs inline. */
void vl_parallel_for   (int64_t n, VlTaskFunc fn, void *ctx);

/* Row-major C[M,N] = alpha * op(A)[M,K] op(B)[K,N] + beta * C, split over the pool in row panels
 * of C (or column panels when M is small). op(X) = X^T when trans_X. */
void vl_gemm (gboolean trans_a, gboolean trans_b, int M, int N, int K,
              float alpha, const float *A, int lda, const float *B, int ldb,
              float beta, float *C, int ldc);
/* The same, on the calling thread only (for use inside pool tasks). */
void vl_gemm_serial (gboolean trans_a, gboolean trans_b, int M, int N, int K,
                     float alpha, const float *A, int lda, const float *B, int ldb,
                     float beta, float *C, int ldc);

G_END_DECLS
