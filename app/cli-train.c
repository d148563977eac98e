/* cli-train.c: vitlab-cli train and eval, on the engine's trainer (the same API the app uses).
 *
 *   vitlab-cli train --backbone CKPT --data DIR|fashion-mnist[:...] --out RUNDIR [options]
 *   vitlab-cli train --resume --out RUNDIR [--epochs E]
 *   vitlab-cli eval RUNDIR [--data SPEC] [--split val|train] [--batch B]
 *
 * train shows a progress bar on a terminal (plain lines otherwise), one line per epoch on
 * stdout, and ends with the line val_acc=0.XXXX. Ctrl-C stops at the next batch and saves the
 * exact position, so --resume continues as if nothing happened. */
#include "vl-format.h"
#include "cli-commands.h"
#include "vl-i18n.h"

#include "vl-preset.h"
#include "vl-trainer.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXIT_USAGE 2
#define EXIT_INTERRUPTED 130

static int
usage_error (const char *fmt, ...) G_GNUC_PRINTF (1, 2);

static int
usage_error (const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_printerr (_("vitlab-cli: %s (see 'vitlab-cli %s --help')\n"), msg,
              strstr (msg, "eval") == msg ? "eval" : "train");
  return EXIT_USAGE;
}

/* A number option given as text (NULL: not given). */
static gboolean
parse_number (const char *option, const char *s, double lo, double hi, double *out)
{
  if (s == NULL)
    return TRUE;
  char *end = NULL;
  double v = g_ascii_strtod (s, &end);
  if (end == s || *end != '\0' || !isfinite (v) || v < lo || v > hi)
    {
      usage_error (_("%s %s: expected a number in [%g, %g]"), option, s, lo, hi);
      return FALSE;
    }
  *out = v;
  return TRUE;
}

/* ------------------------------------------------------------------ train */

static volatile sig_atomic_t interrupted;

static void
on_sigint (int sig)
{
  interrupted = 1;
  signal (sig, SIG_DFL);   /* a second Ctrl-C ends the program at once */
}

typedef struct {
  gboolean  tty;
  gboolean  bar_shown;
  int       epochs;
  int       n_groups;
  char    **class_names;
  int       n_classes;
  VlTaskKind task;
  double    last_val_acc;
  double    last_val_mae, last_val_r2;
  double    last_val_miou, last_val_aacc;
  double    last_val_map, last_val_map50;
  gboolean  have_val;
  gint64    last_plain;
  gint64    started;
  guint     n_skipped;
} Progress;

static void
clear_bar (Progress *p)
{
  if (p->bar_shown)
    {
      fputs ("\r\033[K", stderr);
      p->bar_shown = FALSE;
    }
}

static void
print_skipped (char **skipped, const char *when)
{
  int n = skipped ? (int) g_strv_length (skipped) : 0;
  if (n == 0)
    return;
  g_printerr (_("%s %d file%s:\n"), when, n, n == 1 ? "" : "s");
  for (int i = 0; i < n; i++)
    g_printerr ("  %s\n", skipped[i]);
}

/* bar (25 bytes): 24 characters, done / total of them '#' */
static void
make_bar (char *bar, int64_t done, int64_t total)
{
  const int width = 24;
  int fill = total > 0 ? (int) (width * CLAMP (done, 0, total) / total) : 0;
  for (int i = 0; i < width; i++)
    bar[i] = i < fill ? '#' : '-';
  bar[width] = '\0';
}

static void
show_step (Progress *p, const VlTrainEvent *ev)
{
  const VlStepPoint *pt = &ev->points[ev->n_points - 1];
  char eta[32];
  vl_format_duration (eta, sizeof eta, ev->eta_s);
  if (p->tty)
    {
      char bar[32];
      make_bar (bar, ev->batch, ev->n_batches);
      g_printerr ("\r\033[K");   /* back to the start of the line, which is cleared */
      g_printerr (_("epoch %d/%d [%s] %d/%d  loss %.4f  lr %.2e  %.0f img/s  ETA %s"),
                  ev->epoch + 1, p->epochs, bar, ev->batch, ev->n_batches, pt->loss, pt->lr,
                  ev->images_per_s, eta);
      p->bar_shown = TRUE;
    }
  else
    {
      gint64 now = g_get_monotonic_time ();
      if (now - p->last_plain < 10 * G_USEC_PER_SEC)
        return;
      p->last_plain = now;
      g_printerr (_("epoch %d/%d batch %d/%d loss %.4f lr %.2e %.0f img/s ETA %s\n"), ev->epoch + 1,
                  p->epochs, ev->batch, ev->n_batches, pt->loss, pt->lr, ev->images_per_s, eta);
    }
}

/* caching and validation: a bar with the pass's own ETA on a terminal; elsewhere a line every
 * 10 s of a long pass */
static void
show_progress (Progress *p, const VlTrainEvent *ev)
{
  char eta[32];
  vl_format_duration (eta, sizeof eta, ev->eta_s);
  const char *what = vl_train_phase_name (ev->phase);
  if (p->tty)
    {
      char bar[32];
      make_bar (bar, ev->done, ev->total);
      g_printerr ("\r\033[Kepoch %d/%d %s [%s] %" G_GINT64_FORMAT "/%" G_GINT64_FORMAT
                  "  %.0f img/s  ETA %s", ev->epoch + 1, p->epochs, what, bar, ev->done,
                  ev->total, ev->images_per_s, eta);
      p->bar_shown = TRUE;
      return;
    }
  gint64 now = g_get_monotonic_time ();
  if (now - p->last_plain < 10 * G_USEC_PER_SEC || ev->done >= ev->total)
    return;
  p->last_plain = now;
  g_printerr ("epoch %d/%d %s %" G_GINT64_FORMAT "/%" G_GINT64_FORMAT " images %.0f img/s "
              "ETA %s\n", ev->epoch + 1, p->epochs, what, ev->done, ev->total,
              ev->images_per_s, eta);
}

static void
show_epoch (Progress *p, const VlEpochMetrics *m)
{
  clear_bar (p);
  GString *s = g_string_new (NULL);
  if (m->task == VL_TASK_REGRESS)
    g_string_append_printf (s, "epoch %d/%d  train_loss %.4f  val_loss %.4f  val_mae %.4f  "
                            "val_rmse %.4f  val_r2 %.4f", m->epoch + 1, p->epochs, m->train_loss,
                            m->reg.loss, m->reg.mae_mean, m->reg.rmse_mean, m->reg.r2_mean);
  else if (m->task == VL_TASK_SEGMENT)
    g_string_append_printf (s, "epoch %d/%d  train_loss %.4f  val_loss %.4f  val_miou %.4f  "
                            "val_aacc %.4f  val_macc %.4f", m->epoch + 1, p->epochs,
                            m->train_loss, m->seg.loss, m->seg.miou, m->seg.aacc, m->seg.macc);
  else if (m->task == VL_TASK_DETECT)
    g_string_append_printf (s, "epoch %d/%d  train_loss %.4f  val_loss %.4f  val_map %.4f  "
                            "val_map50 %.4f  val_ar100 %.4f", m->epoch + 1, p->epochs,
                            m->train_loss, m->det.loss, m->det.ap, m->det.ap50, m->det.ar100);
  else
    g_string_append_printf (s, "epoch %d/%d  train_loss %.4f  val_loss %.4f  val_acc %.4f",
                            m->epoch + 1, p->epochs, m->train_loss, m->val.loss, m->val.top1);
  if (m->task == VL_TASK_CLASSIFY && isfinite (m->val.top5))
    g_string_append_printf (s, "  val_top5 %.4f", m->val.top5);
  g_string_append_printf (s, "  unlocked %d%s  %.*f s  %.0f img/s%s", m->unlocked,
                          m->cached ? " (cached)" : "", m->seconds < 1.0 ? 3 : 1, m->seconds,
                          m->images_per_s,
                          m->best ? "  *" : "");
  g_print ("%s\n", s->str);
  fflush (stdout);
  g_string_free (s, TRUE);
  p->task = m->task;
  p->last_val_acc = m->val.top1;
  p->last_val_mae = m->reg.mae_mean;
  p->last_val_r2 = m->reg.r2_mean;
  p->last_val_miou = m->seg.miou;
  p->last_val_aacc = m->seg.aacc;
  p->last_val_map = m->det.ap;
  p->last_val_map50 = m->det.ap50;
  p->have_val = TRUE;
}

/* Drains and prints; returns TRUE once FINISHED was seen (*rc set). */
static gboolean
show_events (VlTrainer *t, Progress *p, const VlTrainConfig *cfg, int *rc)
{
  g_autoptr(GPtrArray) evs = vl_trainer_drain (t);
  for (guint i = 0; i < evs->len; i++)
    {
      VlTrainEvent *ev = g_ptr_array_index (evs, i);
      switch (ev->kind)
        {
        case VL_TRAIN_EVENT_READY:
          p->n_groups = ev->n_groups;
          p->n_classes = ev->n_classes;
          p->class_names = g_strdupv (ev->class_names);
          if (ev->task == VL_TASK_REGRESS)
            {
              g_autofree char *names = g_strjoinv (", ", ev->value_names);
              g_printerr (_("data: %d regression target%s (%s), %d training and %d validation "
                            "images\n"), ev->n_values, ev->n_values == 1 ? "" : "s", names,
                          ev->n_train, ev->n_val);
            }
          else
            g_printerr (_("data: %d classes, %d training and %d validation images\n"),
                        ev->n_classes, ev->n_train, ev->n_val);
          print_skipped (ev->skipped, _("skipped"));
          p->n_skipped = ev->skipped ? g_strv_length (ev->skipped) : 0;
          if (ev->start_epoch > 0 || ev->step > 0)
            g_printerr ("resuming at epoch %d, step %" G_GINT64_FORMAT "\n", ev->start_epoch + 1,
                        ev->step);
          break;
        case VL_TRAIN_EVENT_LOCK:
          clear_bar (p);
          g_printerr ("epoch %d: training the last %d of %d layer groups (%" G_GINT64_FORMAT
                      " parameters)\n", ev->epoch + 1, ev->unlocked, p->n_groups,
                      ev->n_trainable);
          break;
        case VL_TRAIN_EVENT_MESSAGE:
          clear_bar (p);
          g_printerr ("%s\n", ev->message);
          break;
        case VL_TRAIN_EVENT_STEP:
          show_step (p, ev);
          break;
        case VL_TRAIN_EVENT_PROGRESS:
          show_progress (p, ev);
          break;
        case VL_TRAIN_EVENT_EPOCH:
          show_epoch (p, ev->metrics);
          break;
        case VL_TRAIN_EVENT_FINISHED:
          clear_bar (p);
          if (ev->end == VL_TRAIN_END_FAILED)
            {
              *rc = cli_fail (g_error_copy (ev->error));
              return TRUE;
            }
          if (ev->skipped && g_strv_length (ev->skipped) != p->n_skipped)
            print_skipped (ev->skipped, _("skipped (could not be used)"));
          else if (p->n_skipped)
            g_printerr (_("%u file%s skipped (listed above)\n"), p->n_skipped,
                        p->n_skipped == 1 ? " was" : "s were");
          char took[32];
          vl_format_duration (took, sizeof took, (g_get_monotonic_time () - p->started) / 1e6);
          if (ev->end == VL_TRAIN_END_STOPPED && interrupted)
            {
              g_printerr ("stopped at epoch %d, step %" G_GINT64_FORMAT " after %s; continue "
                          "with: vitlab-cli train --resume --out %s\n", ev->epoch + 1, ev->step,
                          took, cfg->out_dir);
              *rc = EXIT_INTERRUPTED;
              return TRUE;
            }
          g_printerr (_("%s after %d epochs in %s; run folder %s\n"),
                      ev->end == VL_TRAIN_END_EARLY_STOPPED ? _("stopped early") : _("finished"),
                      ev->epoch, took, cfg->out_dir);
          if (p->have_val && p->task == VL_TASK_REGRESS)
            g_print ("val_mae=%.4f\nval_r2=%.4f\n", p->last_val_mae, p->last_val_r2);
          else if (p->have_val && p->task == VL_TASK_SEGMENT)
            g_print ("val_aacc=%.4f\nval_miou=%.4f\n", p->last_val_aacc, p->last_val_miou);
          else if (p->have_val && p->task == VL_TASK_DETECT)
            g_print ("val_map=%.4f\nval_map50=%.4f\n", p->last_val_map, p->last_val_map50);
          else if (p->have_val)
            g_print ("val_acc=%.4f\n", p->last_val_acc);
          *rc = EXIT_SUCCESS;
          return TRUE;
        case VL_TRAIN_EVENT_PROBES:
        case VL_TRAIN_EVENT_PAUSED:
        case VL_TRAIN_EVENT_RESUMED:
          break;
        }
    }
  if (p->tty)
    fflush (stderr);
  return FALSE;
}

/* What `train` was given (NULL / -1: not given). */
typedef struct {
  char    *backbone, *data, *out, *head, *pool, *schedule, *augment;
  char    *lr, *wd, *warmup, *layer_decay, *smoothing, *clip, *val_fraction, *min_lr, *limit;
  char    *init, *geometry, *preset, *task, *loss, *seg_head, *stem, *train_groups;
  int      unlock, epochs, batch, early_stop, mlp_hidden, probe_every, img_size;
  gint64   seed;
  gboolean cache, resume;
} TrainArgs;

static void
train_args_clear (TrainArgs *a)
{
  char **strings[] = { &a->backbone, &a->data, &a->out, &a->head, &a->pool, &a->schedule,
                       &a->augment, &a->lr, &a->wd, &a->warmup, &a->layer_decay, &a->smoothing,
                       &a->clip, &a->val_fraction, &a->min_lr, &a->limit, &a->init,
                       &a->geometry, &a->preset, &a->task, &a->loss, &a->seg_head, &a->stem,
                       &a->train_groups };
  for (guint i = 0; i < G_N_ELEMENTS (strings); i++)
    g_clear_pointer (strings[i], g_free);
}

static gboolean
parse_train_args (TrainArgs *a, int *argc, char ***argv, GError **error)
{
  *a = (TrainArgs) { .unlock = -1, .epochs = -1, .batch = -1, .early_stop = -1,
                     .mlp_hidden = -1, .probe_every = -1, .img_size = -1, .seed = -1 };
  GOptionEntry entries[] = {
    { "task", 0, 0, G_OPTION_ARG_STRING, &a->task,
      N_("classify (default), regress (targets.csv, fashion-mnist-rotate), segment (a Pascal "
      "VOC folder, images/ + masks/, fashion-mnist-scenes) or detect (Pascal VOC XML, COCO "
      "JSON, YOLO labels, fashion-mnist-scenes)"), "TASK" },
    { "seg-head", 0, 0, G_OPTION_ARG_STRING, &a->seg_head,
      N_("segment: linear (1x1 conv, default) or upconv (two 2x2 transposed convs)"), "KIND" },
    { "img-size", 0, 0, G_OPTION_ARG_INT, &a->img_size,
      N_("segment, detect: input side, a multiple of the patch (the backbone's)"), "N" },
    { "loss", 0, 0, G_OPTION_ARG_STRING, &a->loss, N_("regression loss: mse (default) or smooth-l1"),
      "LOSS" },
    { "backbone", 0, 0, G_OPTION_ARG_FILENAME, &a->backbone, N_("checkpoint to start from"), "CKPT" },
    { "data", 0, 0, G_OPTION_ARG_FILENAME, &a->data,
      N_("image folder (DIR/CLASS/*.jpg or DIR/train, DIR/val), fashion-mnist[:...], cifar10:DIR"),
      "SPEC" },
    { "out", 0, 0, G_OPTION_ARG_FILENAME, &a->out, N_("run folder (created)"), "RUNDIR" },
    { "head", 0, 0, G_OPTION_ARG_STRING, &a->head, N_("linear (default) or mlp"), "KIND" },
    { "mlp-hidden", 0, 0, G_OPTION_ARG_INT, &a->mlp_hidden, N_("MLP head width (the backbone's)"),
      "N" },
    { "pool", 0, 0, G_OPTION_ARG_STRING, &a->pool, N_("token (default), avg or max"), "POOL" },
    { "unlock", 0, 0, G_OPTION_ARG_INT, &a->unlock, N_("train the last N layer groups (1: head)"),
      "N" },
    { "train-groups", 0, 0, G_OPTION_ARG_STRING, &a->train_groups,
      N_("train these layer groups only, e.g. stem,head (blocks = every block)"), "G1,G2" },
    { "stem", 0, 0, G_OPTION_ARG_STRING, &a->stem,
      N_("replace the patch embedding with a new CNN stem: conv or mbconv"), "KIND" },
    { "unlock-schedule", 0, 0, G_OPTION_ARG_STRING, &a->schedule,
      N_("progressive unfreezing, e.g. \"0:1,2:4,4:all\""), "SCHEDULE" },
    { "epochs", 0, 0, G_OPTION_ARG_INT, &a->epochs, N_("epochs (10)"), "E" },
    { "batch", 0, 0, G_OPTION_ARG_INT, &a->batch, N_("batch size (32)"), "B" },
    { "lr", 0, 0, G_OPTION_ARG_STRING, &a->lr, N_("peak learning rate (1e-3)"), "F" },
    { "min-lr", 0, 0, G_OPTION_ARG_STRING, &a->min_lr, N_("learning rate at the end (0)"), "F" },
    { "wd", 0, 0, G_OPTION_ARG_STRING, &a->wd, N_("AdamW weight decay (0.05)"), "F" },
    { "warmup", 0, 0, G_OPTION_ARG_STRING, &a->warmup, N_("linear warmup epochs (1)"), "EPOCHS" },
    { "layer-decay", 0, 0, G_OPTION_ARG_STRING, &a->layer_decay, N_("layer-wise lr decay (1: off)"),
      "F" },
    { "label-smoothing", 0, 0, G_OPTION_ARG_STRING, &a->smoothing, N_("label smoothing (0)"), "F" },
    { "clip-grad", 0, 0, G_OPTION_ARG_STRING, &a->clip, N_("clip the gradient norm (0: off)"), "F" },
    { "augment", 0, 0, G_OPTION_ARG_STRING, &a->augment, N_("none (default), light or strong"),
      "A" },
    { "cache-features", 0, 0, G_OPTION_ARG_NONE, &a->cache,
      N_("compute the frozen layers once (augment none)"), NULL },
    { "cache-limit", 0, 0, G_OPTION_ARG_STRING, &a->limit, N_("feature cache limit in GiB (4)"),
      "GIB" },
    { "val-fraction", 0, 0, G_OPTION_ARG_STRING, &a->val_fraction,
      N_("validation share without a val split (0.2)"), "F" },
    { "early-stop", 0, 0, G_OPTION_ARG_INT, &a->early_stop,
      N_("stop after N epochs without a lower val loss (0: off)"), "N" },
    { "seed", 0, 0, G_OPTION_ARG_INT64, &a->seed, N_("seed (0)"), "S" },
    { "probe-every", 0, 0, G_OPTION_ARG_INT, &a->probe_every,
      N_("attention rollout of probe images every K steps (0: off)"), "K" },
    { "resume", 0, 0, G_OPTION_ARG_NONE, &a->resume, N_("continue the run in --out"), NULL },
    { "init", 0, 0, G_OPTION_ARG_STRING, &a->init,
      N_("pretrained (default) or random: train from scratch with timm's initialisation"), "INIT" },
    { "geometry", 0, 0, G_OPTION_ARG_STRING, &a->geometry,
      N_("with --init random and no backbone: img=28,patch=4,chans=1,width=96,depth=6,heads=3"),
      "SPEC" },
    { "preset", 0, 0, G_OPTION_ARG_STRING, &a->preset,
      N_("start from a recipe (demo, rotate, scenes, boxes, pretrain-fmnist); other options override it"),
      "NAME" },
    { NULL },
  };
  return cli_parse_options ("--backbone CKPT --data SPEC --out RUNDIR",
                            _("Fine-tunes a ViT backbone on a labelled image dataset."), entries,
                            argc, argv, error);
}

/* The first option given that would change a run's past (NULL: none), for --resume. */
static const char *
resume_conflict (const TrainArgs *a)
{
  const struct { gboolean given; const char *name; } fixed[] = {
    { a->backbone != NULL, "--backbone" }, { a->head != NULL, "--head" },
    { a->pool != NULL, "--pool" }, { a->init != NULL, "--init" },
    { a->geometry != NULL, "--geometry" }, { a->preset != NULL, "--preset" },
    { a->unlock >= 0, "--unlock" }, { a->schedule != NULL, "--unlock-schedule" },
    { a->batch >= 0, "--batch" }, { a->lr != NULL, "--lr" }, { a->min_lr != NULL, "--min-lr" },
    { a->wd != NULL, "--wd" }, { a->warmup != NULL, "--warmup" },
    { a->layer_decay != NULL, "--layer-decay" }, { a->smoothing != NULL, "--label-smoothing" },
    { a->clip != NULL, "--clip-grad" }, { a->augment != NULL, "--augment" },
    { a->val_fraction != NULL, "--val-fraction" }, { a->seed >= 0, "--seed" },
    { a->mlp_hidden >= 0, "--mlp-hidden" }, { a->task != NULL, "--task" },
    { a->loss != NULL, "--loss" }, { a->seg_head != NULL, "--seg-head" },
    { a->img_size >= 0, "--img-size" }, { a->stem != NULL, "--stem" },
    { a->train_groups != NULL, "--train-groups" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (fixed); i++)
    if (fixed[i].given)
      return fixed[i].name;
  return NULL;
}

/* cfg as the run resumes it, or a new run's from the preset, backbone and data. FALSE (after a
 * message; cfg cleared) when that cannot be; *rc then holds the exit status. */
static gboolean
base_config (VlTrainConfig *cfg, const TrainArgs *a, int *rc)
{
  GError *error = NULL;
  if (a->resume)
    {
      /* the run's own configuration; only what does not change its past may be given */
      const char *fixed = resume_conflict (a);
      if (fixed)
        {
          *rc = usage_error (_("%s cannot change when resuming: the run's configuration is in "
                             "%s/run.json"), fixed, a->out);
          return FALSE;
        }
      if (!vl_train_config_load (cfg, a->out, &error))
        {
          *rc = cli_fail (error);
          return FALSE;
        }
      cfg->resume = TRUE;
      return TRUE;
    }
  vl_train_config_init (cfg);
  /* the named recipes (vl-preset.h, shared with the app); options given with them override
   * them */
  if (a->preset && !vl_preset_apply (cfg, a->preset))
    {
      vl_train_config_clear (cfg);
      g_autofree char *names = vl_preset_names ();
      *rc = usage_error (_("--preset %s: expected one of %s"), a->preset, names);
      return FALSE;
    }
  if (a->init && !g_str_equal (a->init, "random") && !g_str_equal (a->init, "pretrained"))
    {
      vl_train_config_clear (cfg);
      *rc = usage_error (_("--init %s: expected pretrained or random"), a->init);
      return FALSE;
    }
  if (a->init)
    cfg->init_random = g_str_equal (a->init, "random");
  if (a->geometry)
    {
      g_free (cfg->geometry);
      cfg->geometry = g_strdup (a->geometry);
      g_clear_pointer (&cfg->backbone, g_free);
    }
  if (a->backbone)
    {
      g_free (cfg->backbone);
      cfg->backbone = g_strdup (a->backbone);
      if (!a->geometry)
        g_clear_pointer (&cfg->geometry, g_free);
    }
  if ((cfg->backbone == NULL && !(cfg->init_random && cfg->geometry)) ||
      (a->data == NULL && cfg->data == NULL))
    {
      vl_train_config_clear (cfg);
      *rc = usage_error (_("train needs --backbone (or --init random --geometry SPEC), --data "
                         "and --out"));
      return FALSE;
    }
  cfg->out_dir = g_strdup (a->out);
  return TRUE;
}

/* The task, heads, pooling, augmentation, stem and what trains; FALSE after a message. */
static gboolean
apply_choices (VlTrainConfig *cfg, const TrainArgs *a)
{
  if (a->task && !vl_task_from_string (a->task, &cfg->task))
    return usage_error (_("--task %s: expected classify, regress, segment or detect"), a->task),
           FALSE;
  if (a->seg_head && !vl_seg_head_kind_from_string (a->seg_head, &cfg->seg_head))
    return usage_error (_("--seg-head %s: expected linear or upconv"), a->seg_head), FALSE;
  if (a->seg_head && cfg->task != VL_TASK_SEGMENT)
    return usage_error (_("--seg-head is for --task segment")), FALSE;
  if (a->img_size >= 0 && cfg->task != VL_TASK_SEGMENT && cfg->task != VL_TASK_DETECT)
    return usage_error (_("--img-size is for --task segment and detect")), FALSE;
  if (a->img_size >= 0)
    cfg->img_size = a->img_size;
  if (a->loss && !vl_reg_loss_from_string (a->loss, &cfg->reg_loss))
    return usage_error (_("--loss %s: expected mse or smooth-l1"), a->loss), FALSE;
  if (a->loss && cfg->task != VL_TASK_REGRESS)
    return usage_error (_("--loss is for --task regress (classification trains with "
                        "cross-entropy)")), FALSE;
  if (a->head && (!vl_head_kind_from_string (a->head, &cfg->head) || cfg->head == VL_HEAD_NONE))
    return usage_error (_("--head %s: expected linear or mlp"), a->head), FALSE;
  if (a->mlp_hidden >= 0)
    cfg->mlp_hidden = a->mlp_hidden;
  if (a->pool && !vl_pool_from_string (a->pool, &cfg->pool))
    return usage_error (_("--pool %s: expected token, avg, max or map"), a->pool), FALSE;
  if (a->augment && !vl_augment_from_string (a->augment, &cfg->augment))
    return usage_error (_("--augment %s: expected none, light or strong"), a->augment), FALSE;
  if (a->stem && (!vl_stem_kind_from_string (a->stem, &cfg->stem) ||
                  cfg->stem == VL_STEM_RESNETV2))
    return usage_error (_("--stem %s: expected conv, mbconv or patch"), a->stem), FALSE;
  if (a->train_groups && (a->unlock >= 0 || a->schedule))
    return usage_error (_("give --train-groups or --unlock / --unlock-schedule, not both")), FALSE;
  if (a->train_groups)
    {
      g_free (cfg->train_groups);
      cfg->train_groups = g_strdup (a->train_groups);
    }
  if (a->unlock >= 0 && a->schedule)
    return usage_error (_("give --unlock or --unlock-schedule, not both")), FALSE;
  if (a->unlock >= 0 || a->schedule)
    {
      g_free (cfg->unlock_schedule);
      cfg->unlock_schedule = a->schedule ? g_strdup (a->schedule)
                                         : g_strdup_printf ("%d", a->unlock);
      int n;
      GError *error = NULL;
      g_autofree VlUnlockStep *s = vl_unlock_schedule_parse (cfg->unlock_schedule, &n, &error);
      if (s == NULL)
        {
          usage_error (_("--unlock-schedule: %s"), error->message);
          g_error_free (error);
          return FALSE;
        }
    }
  return TRUE;
}

/* Epochs, batch, the schedule's numbers, seed, cache; FALSE after a message. */
static gboolean
apply_numbers (VlTrainConfig *cfg, const TrainArgs *a)
{
  if (a->epochs != -1 && a->epochs < 1)
    return usage_error (_("--epochs %d: expected at least 1"), a->epochs), FALSE;
  if (a->epochs != -1)
    cfg->epochs = a->epochs;
  if (a->batch != -1 && (a->batch < 1 || a->batch > 65536))
    return usage_error (_("--batch %d: expected 1 to 65536"), a->batch), FALSE;
  if (a->batch != -1)
    cfg->batch_size = a->batch;
  if (a->early_stop < -1 || a->probe_every < -1 || a->mlp_hidden < -1)
    return usage_error (_("--early-stop, --probe-every and --mlp-hidden must not be negative")),
           FALSE;
  if (a->early_stop >= 0)
    cfg->early_stop = a->early_stop;
  if (a->probe_every >= 0)
    cfg->probe_every = a->probe_every;
  if (a->seed >= 0)
    cfg->seed = (uint64_t) a->seed;
  if (a->cache)
    cfg->cache_features = TRUE;
  double limit = (double) cfg->cache_limit / (1 << 30);
  if (!parse_number ("--lr", a->lr, 1e-12, 1e3, &cfg->lr) ||
      !parse_number ("--min-lr", a->min_lr, 0, 1e3, &cfg->min_lr) ||
      !parse_number ("--wd", a->wd, 0, 1e3, &cfg->weight_decay) ||
      !parse_number ("--warmup", a->warmup, 0, 1e6, &cfg->warmup_epochs) ||
      !parse_number ("--layer-decay", a->layer_decay, 1e-6, 1, &cfg->layer_decay) ||
      !parse_number ("--label-smoothing", a->smoothing, 0, 0.999, &cfg->label_smoothing) ||
      !parse_number ("--clip-grad", a->clip, 0, 1e9, &cfg->clip_grad) ||
      !parse_number ("--val-fraction", a->val_fraction, 1e-6, 0.95, &cfg->val_fraction) ||
      !parse_number ("--cache-limit", a->limit, 0, 1 << 20, &limit))
    return FALSE;
  cfg->cache_limit = (int64_t) (limit * (1 << 30));
  return TRUE;
}

/* Runs the trainer to its end, showing its events; Ctrl+C stops it at a saved position. */
static int
run_trainer (VlTrainConfig *cfg)
{
  GError *error = NULL;
  g_autoptr(VlTrainer) t = vl_trainer_new (cfg, &error);
  if (t == NULL)
    {
      int rc = usage_error ("%s", error->message);
      g_error_free (error);
      return rc;
    }
  if (!vl_trainer_start (t, &error))
    return cli_fail (error);
  signal (SIGINT, on_sigint);
  signal (SIGTERM, on_sigint);
  Progress p = { .tty = isatty (STDERR_FILENO), .epochs = cfg->epochs,
                 .started = g_get_monotonic_time () };
  gboolean stop_sent = FALSE;
  int rc = EXIT_USAGE;
  for (;;)
    {
      vl_trainer_wait (t, 200000);
      if (interrupted && !stop_sent)
        {
          clear_bar (&p);
          g_printerr (_("stopping (saving the position)...\n"));
          vl_trainer_stop (t);
          stop_sent = TRUE;
        }
      if (show_events (t, &p, cfg, &rc))
        break;
    }
  vl_trainer_join (t);
  g_strfreev (p.class_names);
  return rc;
}

int
cmd_train (int argc, char **argv)
{
  GError *error = NULL;
  TrainArgs a;
  if (!parse_train_args (&a, &argc, &argv, &error))
    {
      int rc = usage_error ("%s", error->message);
      g_error_free (error);
      train_args_clear (&a);
      return rc;
    }
  int rc = EXIT_USAGE;
  VlTrainConfig cfg;
  if (argc != 1)
    rc = usage_error (_("train takes no positional arguments ('%s')"), argv[1]);
  else if (a.out == NULL)
    rc = usage_error (_("train needs --out RUNDIR"));
  else if (base_config (&cfg, &a, &rc))
    {
      if (a.data)
        {
          g_free (cfg.data);
          cfg.data = g_strdup (a.data);
        }
      if (apply_choices (&cfg, &a) && apply_numbers (&cfg, &a))
        rc = run_trainer (&cfg);
      vl_train_config_clear (&cfg);
    }
  train_args_clear (&a);
  return rc;
}

/* ------------------------------------------------------------------ eval */

static void
print_skipped_files (VlDataset *ds)
{
  g_autoptr(GPtrArray) skipped = vl_dataset_skipped (ds);
  if (skipped->len == 0)
    return;
  g_printerr (_("skipped %u file%s:\n"), skipped->len, skipped->len == 1 ? "" : "s");
  for (guint i = 0; i < skipped->len; i++)
    {
      VlSkipped *s = g_ptr_array_index (skipped, i);
      g_printerr ("  %s: %s\n", s->path, s->reason);
    }
}

/* eval of a regression run: MAE, RMSE and R² per target, and their means. */
static int
eval_regress (const char *run, VlModel *m, VlDataset *ds, const char *spec, VlSplit which,
              int batch, const VlRunTask *task)
{
  GError *error = NULL;
  const int N = vl_dataset_n_values (ds);
  if (N != task->n_values)
    {
      g_printerr (_("vitlab-cli: %s: the run predicts %d target%s, %s has %d\n"), run,
                  task->n_values, task->n_values == 1 ? "" : "s", spec, N);
      return EXIT_FAILURE;
    }
  for (int j = 0; j < N; j++)
    if (g_strcmp0 (task->value_names[j], vl_dataset_value_name (ds, j)) != 0)
      {
        g_printerr (_("vitlab-cli: %s: target %d is \"%s\" in the run but \"%s\" in %s\n"), run,
                    j, task->value_names[j], vl_dataset_value_name (ds, j), spec);
        return EXIT_FAILURE;
      }
  VlTaskSpec t = vl_run_task_spec (task);
  VlRegressResult r;
  if (!vl_evaluate_regress (m, ds, which, batch, &t, NULL, &r, &error))
    return cli_fail (error);
  print_skipped_files (ds);
  const char *sp = which == VL_SPLIT_VAL ? "val" : "train";
  g_print ("data:      %s, %s split, %" G_GINT64_FORMAT " images\n", vl_dataset_description (ds),
           sp, r.n);
  g_print ("task:      regression (%s on standardised targets)\n",
           vl_reg_loss_name (task->reg_loss));
  g_print ("loss:      %.4f\n", r.loss);
  g_print ("%-16s %12s %12s %11s %12s %12s\n", "target", "MAE", "RMSE", "R²", "mean", "std");
  for (int j = 0; j < N; j++)
    g_print ("%-16.16s %12.4f %12.4f %10.4f %12.4f %12.4f\n", task->value_names[j], r.mae[j],
             r.rmse[j], r.r2[j], task->mean[j], task->std[j]);
  if (N > 1)
    g_print ("%-16s %12.4f %12.4f %10.4f\n", "mean", r.mae_mean, r.rmse_mean, r.r2_mean);
  g_print ("%s_mae=%.4f\n%s_rmse=%.4f\n%s_r2=%.4f\n", sp, r.mae_mean, sp, r.rmse_mean, sp,
           r.r2_mean);
  vl_regress_result_clear (&r);
  return EXIT_SUCCESS;
}

/* eval of a segmentation run: the seg head of seg_head.safetensors on the model, scored at
 * each image's own size. */
static int
eval_segment (const char *run, VlModel *m, VlDataset *ds, const char *spec, VlSplit which,
              int batch, int img_size)
{
  GError *error = NULL;
  g_autofree char *hpath = g_build_filename (run, "seg_head.safetensors", NULL);
  g_autoptr(VlSegHead) h = vl_seg_head_load (hpath, vl_model_geometry (m)->width, &error);
  if (h == NULL)
    return cli_fail (error);
  if (!vl_dataset_is_segmentation (ds) ||
      vl_dataset_n_classes (ds) != vl_seg_head_n_classes (h))
    {
      g_printerr (_("vitlab-cli: %s: the seg head has %d classes, %s %s\n"), run,
                  vl_seg_head_n_classes (h), spec,
                  vl_dataset_is_segmentation (ds) ? _("another number") : _("has no masks"));
      return EXIT_FAILURE;
    }
  VlSegResult r;
  if (!vl_evaluate_segment (m, h, ds, which, img_size, batch, NULL, &r, &error))
    return cli_fail (error);
  print_skipped_files (ds);
  const int K = r.n_classes;
  const char *sp = which == VL_SPLIT_VAL ? "val" : "train";
  g_print ("data:      %s, %s split, %" G_GINT64_FORMAT " images\n", vl_dataset_description (ds),
           sp, r.n);
  g_print ("task:      segmentation (%s head), scored at each image's own size\n",
           vl_seg_head_kind_name (vl_seg_head_kind (h)));
  g_print ("loss:      %.4f\n", r.loss);
  g_print ("mIoU:      %.4f\n", r.miou);
  g_print ("pixel acc: %.4f (aAcc)\n", r.aacc);
  g_print ("mean acc:  %.4f (mAcc)\n", r.macc);
  g_print ("%-24s %8s %8s\n", "class", "IoU", "Acc");
  for (int k = 0; k < K; k++)
    g_print ("%-24.24s %8.4f %8.4f\n", vl_dataset_class_name (ds, k), r.iou[k], r.acc[k]);
  g_print ("%s_miou=%.4f\n%s_aacc=%.4f\n", sp, r.miou, sp, r.aacc);
  vl_seg_result_clear (&r);
  return EXIT_SUCCESS;
}

/* eval of a detection run: the FCOS head of det_head.safetensors on the model, scored with
 * COCO's definitions at each image's own size. */
static int
eval_detect (const char *run, VlModel *m, VlDataset *ds, const char *spec, VlSplit which,
             int batch, int img_size)
{
  GError *error = NULL;
  g_autofree char *hpath = g_build_filename (run, VL_RUN_DET_HEAD, NULL);
  g_autoptr(VlDetHead) h = vl_det_head_load (hpath, vl_model_geometry (m)->width, &error);
  if (h == NULL)
    return cli_fail (error);
  if (!vl_dataset_is_detection (ds) || vl_dataset_n_classes (ds) != vl_det_head_n_classes (h))
    {
      g_printerr ("vitlab-cli: %s: the FCOS head has %d classes, %s %s\n", run,
                  vl_det_head_n_classes (h), spec,
                  vl_dataset_is_detection (ds) ? "another number" : "has no boxes");
      return EXIT_FAILURE;
    }
  VlDetResult r;
  if (!vl_evaluate_detect (m, h, ds, which, img_size, batch, NULL, &r, &error))
    return cli_fail (error);
  print_skipped_files (ds);
  const char *sp = which == VL_SPLIT_VAL ? "val" : "train";
  g_print ("data:      %s, %s split, %" G_GINT64_FORMAT " images, %" G_GINT64_FORMAT " boxes\n",
           vl_dataset_description (ds), sp, r.n, r.n_gt);
  g_print ("task:      detection (FCOS head), scored at each image's own size (COCO, score "
           ">= %.2f, %" G_GINT64_FORMAT " detections)\n", VL_DETECT_EVAL_SCORE, r.n_dt);
  g_print ("loss:      %.4f\n", r.loss);
  g_print ("AP:        %.4f (IoU .50:.95)\n", r.ap);
  g_print ("AP50:      %.4f\n", r.ap50);
  g_print ("AP75:      %.4f\n", r.ap75);
  g_print ("AR@100:    %.4f\n", r.ar100);
  g_print ("%-24s %8s %8s\n", "class", "AP", "AP50");
  for (int k = 1; k < r.n_classes; k++)
    g_print ("%-24.24s %8.4f %8.4f\n", vl_dataset_class_name (ds, k), r.class_ap[k],
             r.class_ap50[k]);
  g_print ("%s_map=%.4f\n%s_map50=%.4f\n", sp, r.ap, sp, r.ap50);
  vl_det_result_clear (&r);
  return EXIT_SUCCESS;
}

int
cmd_eval (int argc, char **argv)
{
  GError *error = NULL;
  g_autofree char *data = NULL, *split = NULL;
  int batch = 32;
  GOptionEntry entries[] = {
    { "data", 0, 0, G_OPTION_ARG_FILENAME, &data, N_("dataset (default: the run's)"), "SPEC" },
    { "split", 0, 0, G_OPTION_ARG_STRING, &split, N_("val (default) or train"), "SPLIT" },
    { "batch", 0, 0, G_OPTION_ARG_INT, &batch, N_("batch size (32)"), "B" },
    { NULL },
  };
  if (!cli_parse_options ("RUNDIR", _("Evaluates a trained model (a run folder, or any checkpoint "
                                      "with --data)."), entries, &argc, &argv, &error))
    {
      int rc = usage_error (_("eval: %s"), error->message);
      g_error_free (error);
      return rc;
    }
  if (argc != 2)
    return usage_error (_("eval takes one RUNDIR"));
  if (batch < 1 || batch > 65536)
    return usage_error (_("eval: --batch %d: expected 1 to 65536"), batch);
  VlSplit which = VL_SPLIT_VAL;
  if (split && g_str_equal (split, "train"))
    which = VL_SPLIT_TRAIN;
  else if (split && !g_str_equal (split, "val"))
    return usage_error (_("eval: --split %s: expected val or train"), split);
  const char *run = argv[1];

  /* the run's dataset and split, unless --data says otherwise */
  VlDatasetOptions opts = VL_DATASET_OPTIONS_DEFAULT;
  int img_size = 0;
  g_autofree char *spec = g_strdup (data);
  g_autofree char *run_json = g_build_filename (run, "run.json", NULL);
  if (g_file_test (run_json, G_FILE_TEST_EXISTS))
    {
      VlTrainConfig cfg;
      if (!vl_train_config_load (&cfg, run, &error))
        return cli_fail (error);
      opts.val_fraction = cfg.val_fraction;
      opts.seed = cfg.seed;
      img_size = cfg.task == VL_TASK_SEGMENT || cfg.task == VL_TASK_DETECT ? cfg.img_size : 0;
      opts.detect = cfg.task == VL_TASK_DETECT;
      if (spec == NULL)
        spec = g_strdup (cfg.data);
      vl_train_config_clear (&cfg);
    }
  else if (!g_file_test (run, G_FILE_TEST_EXISTS))
    {
      g_printerr (_("vitlab-cli: %s: no such run folder or checkpoint\n"), run);
      return EXIT_FAILURE;
    }
  if (spec == NULL)
    return usage_error (_("eval: %s is not a run folder (no run.json): give --data"), run);

  g_auto(GStrv) names = NULL;
  g_autoptr(VlModel) m = vl_run_load_model (run, &names, &error);
  if (m == NULL && g_error_matches (error, VL_ERROR, VL_ERROR_MISSING))
    {
      g_clear_error (&error);   /* a plain checkpoint without config.json */
      m = vl_model_load (run, &error);
    }
  if (m == NULL)
    return cli_fail (error);
  g_autoptr(VlDataset) ds = vl_dataset_open (spec, &opts, &error);
  if (ds == NULL)
    return cli_fail (error);
  VlRunTask task = { 0 };
  if (g_file_test (run_json, G_FILE_TEST_EXISTS) && !vl_run_read_task (run, &task, &error))
    return cli_fail (error);
  if (task.kind == VL_TASK_REGRESS)
    {
      int rc = eval_regress (run, m, ds, spec, which, batch, &task);
      vl_run_task_clear (&task);
      return rc;
    }
  if (task.kind == VL_TASK_SEGMENT)
    return eval_segment (run, m, ds, spec, which, batch, img_size);
  if (task.kind == VL_TASK_DETECT)
    return eval_detect (run, m, ds, spec, which, batch, img_size);
  const int K = vl_dataset_n_classes (ds);
  if (vl_model_num_classes (m) != K)
    {
      g_printerr (_("vitlab-cli: %s: the model has %d classes, %s has %d\n"), run,
                  vl_model_num_classes (m), spec, K);
      return EXIT_FAILURE;
    }
  for (int k = 0; names && k < K; k++)
    if (g_strcmp0 (names[k], vl_dataset_class_name (ds, k)) != 0)
      {
        g_printerr (_("vitlab-cli: %s: class %d is \"%s\" in the model but \"%s\" in %s\n"), run, k,
                    names[k], vl_dataset_class_name (ds, k), spec);
        return EXIT_FAILURE;
      }
  VlEvalResult r;
  if (!vl_evaluate (m, ds, which, batch, NULL, &r, &error))
    return cli_fail (error);
  print_skipped_files (ds);

  int name_w = 5;
  for (int k = 0; k < K; k++)
    name_w = MAX (name_w, (int) strlen (vl_dataset_class_name (ds, k)));
  name_w = MIN (name_w, 24);
  g_print ("data:      %s, %s split, %" G_GINT64_FORMAT " images\n", vl_dataset_description (ds),
           which == VL_SPLIT_VAL ? "val" : "train", r.n);
  g_print ("loss:      %.4f\n", r.loss);
  int64_t correct = 0;
  for (int k = 0; k < K; k++)
    correct += r.confusion[(gsize) k * K + k];
  g_print ("accuracy:  %.4f (%" G_GINT64_FORMAT "/%" G_GINT64_FORMAT ")\n", r.top1, correct, r.n);
  if (isfinite (r.top5))
    g_print ("top-5:     %.4f\n", r.top5);
  g_print ("per-class accuracy:\n");
  for (int k = 0; k < K; k++)
    {
      int64_t row = 0;
      for (int j = 0; j < K; j++)
        row += r.confusion[(gsize) k * K + j];
      g_print ("  %-*.*s  %.4f (%" G_GINT64_FORMAT "/%" G_GINT64_FORMAT ")\n", name_w, name_w,
               vl_dataset_class_name (ds, k), r.class_acc[k],
               r.confusion[(gsize) k * K + k], row);
    }
  if (K <= 30)
    {
      g_print ("confusion matrix (rows: true class, columns: predicted):\n");
      g_print ("  %*s", name_w, "");
      for (int j = 0; j < K; j++)
        g_print (" %6.6s", vl_dataset_class_name (ds, j));
      g_print ("\n");
      for (int k = 0; k < K; k++)
        {
          g_print ("  %-*.*s", name_w, name_w, vl_dataset_class_name (ds, k));
          for (int j = 0; j < K; j++)
            g_print (" %6" G_GINT64_FORMAT, r.confusion[(gsize) k * K + j]);
          g_print ("\n");
        }
    }
  else
    g_print ("confusion matrix: %d classes, too many to print (see metrics.jsonl)\n", K);
  g_print ("%s_acc=%.4f\n", which == VL_SPLIT_VAL ? "val" : "train", r.top1);
  vl_eval_result_clear (&r);
  return EXIT_SUCCESS;
}
