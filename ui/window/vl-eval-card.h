/* vl-eval-card.h: the Evaluation page's side card as a widget of its own (its template,
 * vl-eval-card.ui): a title, a row per class or target (the window builds them for the task),
 * a summary below them, and the export button (win.export). Main thread only. */
#pragma once

#include <gtk/gtk.h>

G_BEGIN_DECLS

#define VL_TYPE_EVAL_CARD (vl_eval_card_get_type ())
G_DECLARE_FINAL_TYPE (VlEvalCard, vl_eval_card, VL, EVAL_CARD, GtkBox)

GtkWidget  *vl_eval_card_new         (void);
void        vl_eval_card_set_title   (VlEvalCard *card, const char *title);
void        vl_eval_card_set_summary (VlEvalCard *card, const char *summary);
const char *vl_eval_card_get_summary (VlEvalCard *card);
/* The rows: all removed, or one appended at the end. */
void        vl_eval_card_clear_rows  (VlEvalCard *card);
void        vl_eval_card_append_row  (VlEvalCard *card, GtkWidget *row);
/* The box that holds the rows (tests count and read them). */
GtkWidget  *vl_eval_card_get_rows    (VlEvalCard *card);

G_END_DECLS
