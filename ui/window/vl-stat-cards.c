/* vl-stat-cards.c: the Loss Curves page's statistics (see vl-stat-cards.h). */
#include "vl-stat-cards.h"

struct _VlStatCards {
  GtkBox     parent_instance;
  GtkWidget *stat_epoch, *stat_train_loss, *stat_val_loss, *stat_acc, *stat_unlocked;
  GtkWidget *stat_acc_title;
};

G_DEFINE_FINAL_TYPE (VlStatCards, vl_stat_cards, GTK_TYPE_BOX)

GtkWidget *
vl_stat_cards_get_label (VlStatCards *cards, VlStat stat)
{
  g_return_val_if_fail (VL_IS_STAT_CARDS (cards), NULL);
  switch (stat)
    {
    case VL_STAT_EPOCH:      return cards->stat_epoch;
    case VL_STAT_TRAIN_LOSS: return cards->stat_train_loss;
    case VL_STAT_VAL_LOSS:   return cards->stat_val_loss;
    case VL_STAT_SCORE:      return cards->stat_acc;
    case VL_STAT_TRAINING:   return cards->stat_unlocked;
    case VL_N_STATS:         break;
    }
  g_return_val_if_reached (NULL);
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
}

GtkWidget *
vl_stat_cards_new (void)
{
  return g_object_new (VL_TYPE_STAT_CARDS, NULL);
}
