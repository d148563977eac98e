/* fuzz-metrics.c: a run folder whose metrics.jsonl is the input: vl_run_read_metrics must read
 * it or refuse it with an error naming the file, for the task and the number of classes or
 * targets the first byte picks (bits 0-1: classify, regress, segment, detect; bits 2-5: 1 to 16
 * outputs). */
#include "fuzz-common.h"
#include "vl-trainer.h"

#include <string.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static char *dir;
  if (dir == NULL)
    {
      fuzz_fatal_criticals ();
      dir = fuzz_mkdirs ("run");
    }
  int flags = size > 0 ? data[0] : 0;
  VlTaskKind task = (VlTaskKind) (flags & 3);
  int n_outputs = ((flags >> 2) & 15) + 1;
  g_autofree char *path = g_build_filename (dir, "metrics.jsonl", NULL);
  fuzz_write_file (path, data + (size > 0), size - (size > 0));
  g_autoptr(GError) error = NULL;
  GPtrArray *epochs = vl_run_read_metrics (dir, task, n_outputs, &error);
  if (epochs == NULL)
    g_assert (error != NULL && strstr (error->message, path) != NULL);
  else
    {
      for (guint i = 0; i < epochs->len; i++)
        g_assert (((VlEpochMetrics *) g_ptr_array_index (epochs, i))->task == task);
      g_ptr_array_unref (epochs);
    }
  return 0;
}
