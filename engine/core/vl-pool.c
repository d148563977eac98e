/* vl-pool.c: a fixed pool of worker threads for the engine's parallel loops. */
#include "vl-pool.h"
#include "vl-sync.h"

#include <cblas.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
  GMutex       lock;          /* guards generation, quit, fn/ctx/n */
  GCond        wake;
  GCond        done;
  GMutex       busy;          /* held by the thread that owns the current parallel region */
  atomic_ullong generation;   /* written under lock; read without it while spinning */
  atomic_bool  quit;
  VlTaskFunc   fn;
  void        *ctx;
  int64_t      n;
  atomic_llong next;          /* next index to hand out */
  atomic_int   active;        /* workers inside a region (changed under lock) */
  int          n_threads;
  GThread    **threads;
} VlPool;

static VlPool pool;
static GOnce pool_once = G_ONCE_INIT;
static int requested_threads;

static void
run_tasks (int worker)
{
  for (;;)
    {
      int64_t i = atomic_fetch_add (&pool.next, 1);
      if (i >= pool.n)
        break;
      pool.fn (pool.ctx, i, worker);
    }
}

/* Regions come in quick succession (a ViT block at batch 1 is a few of them per millisecond), and
 * waking a sleeping thread costs tens of microseconds on a virtual machine, so a thread that
 * waits first polls for up to VL_SPIN_US before it sleeps on the condition variable. */
#define VL_SPIN_US 100

static inline void
cpu_relax (void)
{
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause ();
#endif
}

/* Polls until cond (ctx) holds or VL_SPIN_US pass (the caller then waits properly). */
static void
spin_until (gboolean (*cond) (const void *), const void *ctx)
{
  gint64 until = 0;
  for (unsigned i = 1;; i++)
    {
      if (cond (ctx))
        return;
      if ((i & 63) == 0)
        {
          gint64 now = g_get_monotonic_time ();
          if (until == 0)
            until = now + VL_SPIN_US;
          else if (now > until)
            return;
        }
      cpu_relax ();
    }
}

static gboolean
new_region (const void *seen)
{
  return atomic_load_explicit (&pool.generation, memory_order_relaxed) != *(const guint64 *) seen ||
         atomic_load_explicit (&pool.quit, memory_order_relaxed);
}

static gboolean
workers_out (const void *unused)
{
  return atomic_load_explicit (&pool.active, memory_order_relaxed) == 0;
}

/* A worker joins a region only when it wakes while the region still runs, and the caller waits
 * only for workers that joined: a worker that is slow to wake (a busy machine, a lower priority)
 * never holds up a region whose tasks the caller already finished alone. */
static gpointer
worker_main (gpointer data)
{
  int worker = GPOINTER_TO_INT (data);
  guint64 seen = 0;

  for (;;)
    {
      spin_until (new_region, &seen);
      vl_mutex_lock (&pool.lock);
      while (pool.generation == seen && !pool.quit)
        vl_cond_wait (&pool.wake, &pool.lock);
      if (pool.quit)
        {
          vl_mutex_unlock (&pool.lock);
          return NULL;
        }
      seen = pool.generation;
      pool.active++;
      vl_mutex_unlock (&pool.lock);

      run_tasks (worker);

      vl_mutex_lock (&pool.lock);
      if (--pool.active == 0)
        g_cond_broadcast (&pool.done);
      vl_mutex_unlock (&pool.lock);
    }
}

static gpointer
pool_start (gpointer data)
{
  int n = requested_threads;
  if (n <= 0)
    {
      const char *env = g_getenv ("VITLAB_THREADS");
      n = env ? atoi (env) : 0;
    }
  if (n <= 0)
    n = (int) g_get_num_processors ();
  n = CLAMP (n, 1, 64);

  /* The pool owns all parallelism: OpenBLAS runs each call on the calling thread. */
  openblas_set_num_threads (1);

  g_mutex_init (&pool.lock);
  g_mutex_init (&pool.busy);
  g_cond_init (&pool.wake);
  g_cond_init (&pool.done);
  pool.n_threads = n;
  pool.threads = g_new0 (GThread *, n);
  for (int i = 1; i < n; i++)
    pool.threads[i] = g_thread_new ("vl-pool", worker_main, GINT_TO_POINTER (i));
  return NULL;
}

void
vl_blas_select_kernel (char **argv)
{
  if (getenv ("OPENBLAS_CORETYPE") != NULL)
    return;
  const char *core = openblas_get_corename ();
  static const char *generic[] = { "Prescott", "Core2", "Penryn", "Dunnington", "Nehalem",
                                   "Atom", "Unknown", "generic" };
  gboolean fell_back = FALSE;
  for (guint i = 0; i < G_N_ELEMENTS (generic); i++)
    fell_back |= core != NULL && g_ascii_strcasecmp (core, generic[i]) == 0;
  if (!fell_back)
    return;
  const char *want = NULL;
  __builtin_cpu_init ();
  if (__builtin_cpu_supports ("avx512f") && __builtin_cpu_supports ("avx512bw") &&
      __builtin_cpu_supports ("avx512vl") && __builtin_cpu_supports ("avx512dq"))
    want = "SkylakeX";
  else if (__builtin_cpu_supports ("avx2") && __builtin_cpu_supports ("fma"))
    want = "Haswell";
  if (want == NULL)
    return;
  setenv ("OPENBLAS_CORETYPE", want, 1);
  execv ("/proc/self/exe", argv);
  /* exec failed: go on with the generic kernels */
}

void
vl_pool_init (int n_threads)
{
  requested_threads = n_threads;
  g_once (&pool_once, pool_start, NULL);
}

int
vl_pool_n_threads (void)
{
  vl_pool_init (0);
  return pool.n_threads;
}

void
vl_parallel_for (int64_t n, VlTaskFunc fn, void *ctx)
{
  vl_pool_init (0);
  if (n <= 0)
    return;
  if (n == 1 || pool.n_threads == 1 || !vl_mutex_trylock (&pool.busy))
    {
      /* Busy (a nested call, or another thread's region): run inline. Worker ids then repeat
       * those of the outer region, so tasks call only vl_gemm_serial, never a parallel region. */
      for (int64_t i = 0; i < n; i++)
        fn (ctx, i, 0);
      return;
    }

  vl_mutex_lock (&pool.lock);
  /* a worker that joined the previous region late may still be leaving it */
  while (pool.active > 0)
    vl_cond_wait (&pool.done, &pool.lock);
  pool.fn = fn;
  pool.ctx = ctx;
  pool.n = n;
  atomic_store (&pool.next, 0);
  pool.generation++;
  g_cond_broadcast (&pool.wake);
  vl_mutex_unlock (&pool.lock);

  run_tasks (0);

  /* every index is handed out; wait for the workers that took some */
  spin_until (workers_out, NULL);
  vl_mutex_lock (&pool.lock);
  while (pool.active > 0)
    vl_cond_wait (&pool.done, &pool.lock);
  vl_mutex_unlock (&pool.lock);
  vl_mutex_unlock (&pool.busy);
}

void
vl_gemm_serial (gboolean trans_a, gboolean trans_b, int M, int N, int K,
                float alpha, const float *A, int lda, const float *B, int ldb,
                float beta, float *C, int ldc)
{
  if (M <= 0 || N <= 0)
    return;
  cblas_sgemm (CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
               trans_b ? CblasTrans : CblasNoTrans,
               M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

typedef struct {
  gboolean trans_a, trans_b;
  int M, N, K, lda, ldb, ldc;
  float alpha, beta;
  const float *A, *B;
  float *C;
  int n_tasks;
  gboolean split_rows;
} GemmJob;

static void
gemm_task (void *ctx, int64_t index, int worker)
{
  const GemmJob *j = ctx;
  if (j->split_rows)
    {
      int r0 = (int) ((int64_t) j->M * index / j->n_tasks);
      int r1 = (int) ((int64_t) j->M * (index + 1) / j->n_tasks);
      /* rows of op(A): rows of A, or columns of A when transposed */
      const float *a = j->trans_a ? j->A + r0 : j->A + (int64_t) r0 * j->lda;
      vl_gemm_serial (j->trans_a, j->trans_b, r1 - r0, j->N, j->K, j->alpha, a, j->lda,
                      j->B, j->ldb, j->beta, j->C + (int64_t) r0 * j->ldc, j->ldc);
    }
  else
    {
      int c0 = (int) ((int64_t) j->N * index / j->n_tasks);
      int c1 = (int) ((int64_t) j->N * (index + 1) / j->n_tasks);
      const float *b = j->trans_b ? j->B + (int64_t) c0 * j->ldb : j->B + c0;
      vl_gemm_serial (j->trans_a, j->trans_b, j->M, c1 - c0, j->K, j->alpha, j->A, j->lda,
                      b, j->ldb, j->beta, j->C + c0, j->ldc);
    }
}

void
vl_gemm (gboolean trans_a, gboolean trans_b, int M, int N, int K,
         float alpha, const float *A, int lda, const float *B, int ldb,
         float beta, float *C, int ldc)
{
  int threads = vl_pool_n_threads ();
  double flops = 2.0 * M * N * K;
  if (threads == 1 || flops < 2e6)
    {
      vl_gemm_serial (trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
      return;
    }
  GemmJob j = {
    .trans_a = trans_a, .trans_b = trans_b, .M = M, .N = N, .K = K,
    .lda = lda, .ldb = ldb, .ldc = ldc, .alpha = alpha, .beta = beta,
    .A = A, .B = B, .C = C, .n_tasks = threads,
    .split_rows = M >= N || M >= 64 * threads,
  };
  vl_parallel_for (threads, gemm_task, &j);
}
