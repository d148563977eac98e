/* vl-sync.h: GMutex / GCond wrappers that ThreadSanitizer understands.
 *
 * GLib's GMutex and GCond are futex-based on Linux: with libglib not instrumented,
 * ThreadSanitizer does not see them and reports every access they guard as a race. Under TSan
 * these wrappers also tell it the acquire and release each operation performs; in other builds
 * they are the plain GLib calls. Every engine file that shares state between threads uses them. */
#pragma once

#include <glib.h>

#if defined(__SANITIZE_THREAD__)
#define VL_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define VL_TSAN 1
#endif
#endif
#ifdef VL_TSAN
#include <sanitizer/tsan_interface.h>
#define VL_TSAN_ACQUIRE(p) __tsan_acquire (p)
#define VL_TSAN_RELEASE(p) __tsan_release (p)
#else
#define VL_TSAN_ACQUIRE(p) ((void) 0)
#define VL_TSAN_RELEASE(p) ((void) 0)
#endif

static inline void
vl_mutex_lock (GMutex *m)
{
  g_mutex_lock (m);
  VL_TSAN_ACQUIRE (m);
}

static inline gboolean
vl_mutex_trylock (GMutex *m)
{
  if (!g_mutex_trylock (m))
    return FALSE;
  VL_TSAN_ACQUIRE (m);
  return TRUE;
}

static inline void
vl_mutex_unlock (GMutex *m)
{
  VL_TSAN_RELEASE (m);
  g_mutex_unlock (m);
}

static inline void
vl_cond_wait (GCond *c, GMutex *m)
{
  VL_TSAN_RELEASE (m);
  g_cond_wait (c, m);
  VL_TSAN_ACQUIRE (m);
}

static inline gboolean
vl_cond_wait_until (GCond *c, GMutex *m, gint64 end_time)
{
  VL_TSAN_RELEASE (m);
  gboolean r = g_cond_wait_until (c, m, end_time);
  VL_TSAN_ACQUIRE (m);
  return r;
}
