/* vl-stat-cards.h: the Loss Curves page's statistics as a widget of its own (its template,
 * vl-stat-cards.ui): five cards (epoch, train loss, validation loss, the task's score, the
 * groups that train) that wrap onto a second line when the main area is narrow. Each card is a
 * title over a value ("—" until set), short enough for the card's nine characters, and a line of
 * detail in small print under it (the second figure of a score, the parameters that train),
 * hidden while empty. Main thread only. */
#pragma once

#include <gtk/gtk.h>

G_BEGIN_DECLS

typedef enum {
  VL_STAT_EPOCH,
  VL_STAT_TRAIN_LOSS,
  VL_STAT_VAL_LOSS,
  VL_STAT_SCORE,        /* accuracy, R², mIoU, AP50 (with top-5, MAE, pixel accuracy, AP as its
                         * detail): its title follows the task */
  VL_STAT_TRAINING,     /* the layer groups training now */
  VL_N_STATS
} VlStat;

#define VL_TYPE_STAT_CARDS (vl_stat_cards_get_type ())
G_DECLARE_FINAL_TYPE (VlStatCards, vl_stat_cards, VL, STAT_CARDS, GtkBox)

GtkWidget  *vl_stat_cards_new           (void);
void        vl_stat_cards_set           (VlStatCards *cards, VlStat stat, const char *value);
const char *vl_stat_cards_get           (VlStatCards *cards, VlStat stat);
/* The small print under the value (NULL or "": none). */
void        vl_stat_cards_set_detail    (VlStatCards *cards, VlStat stat, const char *detail);
const char *vl_stat_cards_get_detail    (VlStatCards *cards, VlStat stat);
/* What the card means, as its tooltip (the score's and the losses' follow the task). */
void        vl_stat_cards_set_card_tooltip (VlStatCards *cards, VlStat stat, const char *tooltip);
const char *vl_stat_cards_get_card_tooltip (VlStatCards *cards, VlStat stat);
/* The value's own tooltip, over the card's (NULL: the card's). */
void        vl_stat_cards_set_tooltip   (VlStatCards *cards, VlStat stat, const char *tooltip);
void        vl_stat_cards_set_score_title (VlStatCards *cards, const char *title);
/* The value's label (tests write long texts into it). */
GtkWidget  *vl_stat_cards_get_label     (VlStatCards *cards, VlStat stat);

G_END_DECLS
