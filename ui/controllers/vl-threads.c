/* vl-threads.c: where the app's compute threads run (see vl-threads.h). */
#include "vl-threads.h"
#include "vl-pool.h"

#include <errno.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Compute runs below the UI: a worker thread calls this first, so that on two busy cores the
 * main loop still gets the processor the moment it has something to draw. (Raising the nice
 * value needs no privilege; threads created afterwards inherit it.) */
void
vl_lower_thread_priority (void)
{
#ifdef __linux__
  pid_t tid = (pid_t) syscall (SYS_gettid);
  errno = 0;
  int now = getpriority (PRIO_PROCESS, (id_t) tid);
  if (errno == 0 && now < 10)
    setpriority (PRIO_PROCESS, (id_t) tid, 10);
#endif
}

static gpointer
pool_starter (gpointer data)
{
  vl_lower_thread_priority ();
  vl_pool_init (0);   /* the pool threads inherit the lower priority */
  return NULL;
}

/* Starts the engine's thread pool from a lower-priority thread (once). */
void
vl_ui_start_compute_pool (void)
{
  static gsize once = 0;
  if (g_once_init_enter (&once))
    {
      g_thread_join (g_thread_new ("vl-pool-start", pool_starter, NULL));
      g_once_init_leave (&once, 1);
    }
}

