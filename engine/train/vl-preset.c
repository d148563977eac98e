/* vl-preset.c: the named recipes shared by vitlab-cli and the app (see vl-preset.h). */
#include "vl-preset.h"

#include <string.h>

#define FMNIST_BACKBONE "backbones/vitlab-fmnist-tiny"

static const VlPreset presets[] = {
  {
    .name = "demo", .title = "Fashion-MNIST transfer (classification)",
    .task = VL_TASK_CLASSIFY, .backbone = FMNIST_BACKBONE,
    .data = "fashion-mnist:classes=5-9,per-class=100",
    .unlock_schedule = "0:1,2:3,4:all", .epochs = 12, .batch_size = 32,
    .lr = 1e-3, .weight_decay = 0.05, .warmup_epochs = 1, .label_smoothing = 0.1,
    .augment = VL_AUGMENT_LIGHT,
    .cache_features = TRUE,   /* the validation images' frozen features */
  },
  {
    .name = "rotate", .title = "Fashion-MNIST angles (regression)",
    .task = VL_TASK_REGRESS, .backbone = FMNIST_BACKBONE,
    .data = "fashion-mnist-rotate:classes=0-4,per-class=200,val-per-class=200,max-angle=45",
    .unlock_schedule = "0:1,2:3,4:all", .epochs = 10, .batch_size = 32,
    .lr = 1e-3, .weight_decay = 0.05, .warmup_epochs = 1,
    .cache_features = TRUE,
  },
  {
    /* segmentation on the shipped backbone: the frozen probe of its final-norm tokens labels a
     * scene's patches poorly (features of single centred garments); the head first, then the
     * last block and the final norm too (from the cache of the activations below them), lifts
     * the mIoU by half again. 40 px scenes (a 10 x 10 patch grid) and 400 of them keep it under
     * two minutes on two busy cores (README.md, "Segmentation") */
    .name = "scenes", .title = "Fashion-MNIST scenes (segmentation)",
    .task = VL_TASK_SEGMENT, .backbone = FMNIST_BACKBONE,
    .data = "fashion-mnist-scenes:train=400,val=200,size=40",
    .unlock_schedule = "0:1,1:3", .epochs = 8, .batch_size = 16,
    .lr = 1e-2, .weight_decay = 0.05, .warmup_epochs = 1, .layer_decay = 0.6,
    .cache_features = TRUE,
    .seg_head = VL_SEG_HEAD_LINEAR, .img_size = 40,
  },
  {
    /* detection on the shipped backbone: each garment's box in 48 px scenes (a 12 x 12 grid of
     * FCOS locations); the head first, then the last block and the final norm too, from the
     * cache of the activations below them. About 20 s on two busy cores, AP50 about 0.4
     * (README.md, "Object detection") */
    .name = "boxes", .title = "Fashion-MNIST scenes (detection)",
    .task = VL_TASK_DETECT, .backbone = FMNIST_BACKBONE,
    .data = "fashion-mnist-scenes:train=400,val=200,size=48",
    .unlock_schedule = "0:1,2:3", .epochs = 12, .batch_size = 16,
    .lr = 3e-3, .weight_decay = 0.05, .warmup_epochs = 1,
    .cache_features = TRUE,
    .img_size = 48,
  },
  {
    .name = "pretrain-fmnist", .title = "Pretrain the Fashion-MNIST backbone (from scratch)",
    .task = VL_TASK_CLASSIFY, .init_random = TRUE,
    .geometry = "img=28,patch=4,chans=1,width=96,depth=6,heads=3,mlp=384,mean=0.2860,std=0.3530",
    .data = "fashion-mnist:classes=0-4",
    .unlock_schedule = "0:all", .epochs = 8, .batch_size = 128,
    .lr = 1e-3, .weight_decay = 0.05, .warmup_epochs = 1, .label_smoothing = 0.1,
    .augment = VL_AUGMENT_LIGHT,
  },
};

const VlPreset *
vl_presets (int *n)
{
  *n = G_N_ELEMENTS (presets);
  return presets;
}

const VlPreset *
vl_preset_find (const char *name)
{
  for (guint i = 0; name && i < G_N_ELEMENTS (presets); i++)
    if (strcmp (presets[i].name, name) == 0)
      return &presets[i];
  return NULL;
}

gboolean
vl_preset_apply (VlTrainConfig *c, const char *name)
{
  const VlPreset *p = vl_preset_find (name);
  if (p == NULL)
    return FALSE;
  c->task = p->task;
  g_free (c->backbone);
  c->backbone = p->backbone ? vl_data_path (p->backbone) : NULL;
  c->init_random = p->init_random;
  g_free (c->geometry);
  c->geometry = g_strdup (p->geometry);
  g_free (c->data);
  c->data = g_strdup (p->data);
  g_free (c->unlock_schedule);
  c->unlock_schedule = g_strdup (p->unlock_schedule);
  c->epochs = p->epochs;
  c->batch_size = p->batch_size;
  c->lr = p->lr;
  c->weight_decay = p->weight_decay;
  c->warmup_epochs = p->warmup_epochs;
  c->label_smoothing = p->label_smoothing;
  if (p->layer_decay > 0)
    c->layer_decay = p->layer_decay;
  c->augment = p->augment;
  c->cache_features = p->cache_features;
  c->seg_head = p->seg_head;
  c->img_size = p->img_size;
  return TRUE;
}

char *
vl_preset_names (void)
{
  GString *s = g_string_new (NULL);
  for (guint i = 0; i < G_N_ELEMENTS (presets); i++)
    g_string_append_printf (s, "%s%s", i ? ", " : "", presets[i].name);
  return g_string_free (s, FALSE);
}
