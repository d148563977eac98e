/* vl-threads.h: the app's compute threads run below its UI thread.
 *
 * Every thread that computes (the engine's pool, the trainer's worker, the GTasks of the
 * window) calls vl_lower_thread_priority first: nice 10, so that on two busy cores the main
 * loop still gets the processor the moment it has something to draw. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The calling thread at nice 10 (threads it creates afterwards inherit it). */
void vl_lower_thread_priority  (void);
/* Starts the engine's thread pool from a lower-priority thread, once. */
void vl_ui_start_compute_pool  (void);

G_END_DECLS
