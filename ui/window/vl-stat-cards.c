/* vl-stat-cards.c: the Loss Curves page's statistics (see vl-stat-cards.h). */
#include "vl-stat-cards.h"

#include <string.h>

struct _VlStatCards {
  GtkBox     parent_instance;
  GtkWidget *stat_epoch, *stat_train_loss, *stat_val_loss, *stat_acc, *stat_unlocked;
  GtkWidget *stat_acc_title;
  GtkWidget *value[VL_N_STATS];   /* the stat_* labels by VlStat; each card is the value's parent
                                   * and holds its title, the value, then the detail line */
};

G_DEFINE_FINAL_TYPE (VlStatCards, vl_stat_cards, GTK_TYPE_BOX)

GtkWidget *
vl_stat_cards_get_label (VlStatCards *cards, VlStat stat)
{
  g_return_val_if_fail (VL_IS_STAT_CARDS (cards), NULL);
  g_return_val_if_fail (stat < VL_N_STATS, NULL);
  return cards->value[stat];
}

static GtkWidget *
get_detail_label (VlStatCards *cards, VlStat stat)
{
  GtkWidget *value = vl_stat_cards_get_label (cards, stat);
  return value ? gtk_widget_get_next_sibling (value) : NULL;
}

static GtkWidget *
get_card (VlStatCards *cards, VlStat stat)
{
  GtkWidget *value = vl_stat_cards_get_label (cards, stat);
  return value ? gtk_widget_get_parent (value) : NULL;
}

void
vl_stat_cards_set_card_tooltip (VlStatCards *cards, VlStat stat, const char *tooltip)
{
  GtkWidget *card = get_card (cards, stat);
  g_return_if_fail (card != NULL);
  gtk_widget_set_tooltip_text (card, tooltip);
}

const char *
vl_stat_cards_get_card_tooltip (VlStatCards *cards, VlStat stat)
{
  GtkWidget *card = get_card (cards, stat);
  g_return_val_if_fail (card != NULL, NULL);
  return gtk_widget_get_tooltip_text (card);
}

void
vl_stat_cards_set_detail (VlStatCards *cards, VlStat stat, const char *detail)
{
  g_return_if_fail (VL_IS_STAT_CARDS (cards));
  GtkWidget *label = get_detail_label (cards, stat);
  g_return_if_fail (label != NULL);
  gtk_label_set_text (GTK_LABEL (label), detail ? detail : "");
  gtk_widget_set_visible (label, detail != NULL && *detail != '\0');
}

const char *
vl_stat_cards_get_detail (VlStatCards *cards, VlStat stat)
{
  g_return_val_if_fail (VL_IS_STAT_CARDS (cards), NULL);
  GtkWidget *label = get_detail_label (cards, stat);
  g_return_val_if_fail (label != NULL, NULL);
  return gtk_label_get_text (GTK_LABEL (label));
}

void
vl_stat_cards_set (VlStatCards *cards, VlStat stat, const char *value)
{
  GtkWidget *label = vl_stat_cards_get_label (cards, stat);
  g_return_if_fail (label != NULL);
  gtk_label_set_text (GTK_LABEL (label), value ? value : "");
}

const char *
vl_stat_cards_get (VlStatCards *cards, VlStat stat)
{
  GtkWidget *label = vl_stat_cards_get_label (cards, stat);
  g_return_val_if_fail (label != NULL, NULL);
  return gtk_label_get_text (GTK_LABEL (label));
}

void
vl_stat_cards_set_tooltip (VlStatCards *cards, VlStat stat, const char *tooltip)
{
  GtkWidget *label = vl_stat_cards_get_label (cards, stat);
  g_return_if_fail (label != NULL);
  gtk_widget_set_tooltip_text (label, tooltip);
}

void
vl_stat_cards_set_score_title (VlStatCards *cards, const char *title)
{
  g_return_if_fail (VL_IS_STAT_CARDS (cards));
  gtk_label_set_text (GTK_LABEL (cards->stat_acc_title), title ? title : "");
}

static void
vl_stat_cards_dispose (GObject *object)
{
  gtk_widget_dispose_template (GTK_WIDGET (object), VL_TYPE_STAT_CARDS);
  G_OBJECT_CLASS (vl_stat_cards_parent_class)->dispose (object);
}

static void
vl_stat_cards_class_init (VlStatCardsClass *klass)
{
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);
  G_OBJECT_CLASS (klass)->dispose = vl_stat_cards_dispose;
  gtk_widget_class_set_template_from_resource (widget_class, "/org/vitlab/Vitlab/vl-stat-cards.ui");
#define CHILD(name) gtk_widget_class_bind_template_child (widget_class, VlStatCards, name)
  CHILD (stat_epoch);
  CHILD (stat_train_loss);
  CHILD (stat_val_loss);
  CHILD (stat_acc);
  CHILD (stat_unlocked);
  CHILD (stat_acc_title);
#undef CHILD
}

static void
vl_stat_cards_init (VlStatCards *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
  GtkWidget *by_stat[VL_N_STATS] = {
    [VL_STAT_EPOCH] = self->stat_epoch, [VL_STAT_TRAIN_LOSS] = self->stat_train_loss,
    [VL_STAT_VAL_LOSS] = self->stat_val_loss, [VL_STAT_SCORE] = self->stat_acc,
    [VL_STAT_TRAINING] = self->stat_unlocked,
  };
  memcpy (self->value, by_stat, sizeof by_stat);
}

GtkWidget *
vl_stat_cards_new (void)
{
  return g_object_new (VL_TYPE_STAT_CARDS, NULL);
}
