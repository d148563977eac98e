/* vl-stat-cards.c: the Loss Curves page's statistics (see vl-stat-cards.h). */
#include "vl-stat-cards.h"

struct _VlStatCards {
  GtkBox     parent_instance;
  GtkWidget *stat_epoch, *stat_train_loss, *stat_val_loss, *stat_acc, *stat_unlocked;
  GtkWidget *detail_epoch, *detail_train_loss, *detail_val_loss, *detail_acc, *detail_unlocked;
  GtkWidget *card_epoch, *card_train_loss, *card_val_loss, *card_acc, *card_unlocked;
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

static GtkWidget *
get_detail_label (VlStatCards *cards, VlStat stat)
{
  switch (stat)
    {
    case VL_STAT_EPOCH:      return cards->detail_epoch;
    case VL_STAT_TRAIN_LOSS: return cards->detail_train_loss;
    case VL_STAT_VAL_LOSS:   return cards->detail_val_loss;
    case VL_STAT_SCORE:      return cards->detail_acc;
    case VL_STAT_TRAINING:   return cards->detail_unlocked;
    case VL_N_STATS:         break;
    }
  g_return_val_if_reached (NULL);
}

static GtkWidget *
get_card (VlStatCards *cards, VlStat stat)
{
  switch (stat)
    {
    case VL_STAT_EPOCH:      return cards->card_epoch;
    case VL_STAT_TRAIN_LOSS: return cards->card_train_loss;
    case VL_STAT_VAL_LOSS:   return cards->card_val_loss;
    case VL_STAT_SCORE:      return cards->card_acc;
    case VL_STAT_TRAINING:   return cards->card_unlocked;
    case VL_N_STATS:         break;
    }
  g_return_val_if_reached (NULL);
}

void
vl_stat_cards_set_card_tooltip (VlStatCards *cards, VlStat stat, const char *tooltip)
{
  g_return_if_fail (VL_IS_STAT_CARDS (cards));
  GtkWidget *card = get_card (cards, stat);
  g_return_if_fail (card != NULL);
  gtk_widget_set_tooltip_text (card, tooltip);
}

const char *
vl_stat_cards_get_card_tooltip (VlStatCards *cards, VlStat stat)
{
  g_return_val_if_fail (VL_IS_STAT_CARDS (cards), NULL);
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
  CHILD (detail_epoch);
  CHILD (detail_train_loss);
  CHILD (detail_val_loss);
  CHILD (detail_acc);
  CHILD (detail_unlocked);
  CHILD (card_epoch);
  CHILD (card_train_loss);
  CHILD (card_val_loss);
  CHILD (card_acc);
  CHILD (card_unlocked);
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
