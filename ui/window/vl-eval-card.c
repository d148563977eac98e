/* vl-eval-card.c: the Evaluation page's side card (see vl-eval-card.h). */
#include "vl-eval-card.h"

struct _VlEvalCard {
  GtkBox     parent_instance;
  GtkWidget *class_acc_title, *class_acc_box, *eval_summary_label;
};

G_DEFINE_FINAL_TYPE (VlEvalCard, vl_eval_card, GTK_TYPE_BOX)

void
vl_eval_card_set_title (VlEvalCard *card, const char *title)
{
  g_return_if_fail (VL_IS_EVAL_CARD (card));
  gtk_label_set_text (GTK_LABEL (card->class_acc_title), title ? title : "");
}

void
vl_eval_card_set_summary (VlEvalCard *card, const char *summary)
{
  g_return_if_fail (VL_IS_EVAL_CARD (card));
  gtk_label_set_text (GTK_LABEL (card->eval_summary_label), summary ? summary : "");
}

const char *
vl_eval_card_get_summary (VlEvalCard *card)
{
  g_return_val_if_fail (VL_IS_EVAL_CARD (card), NULL);
  return gtk_label_get_text (GTK_LABEL (card->eval_summary_label));
}

void
vl_eval_card_clear_rows (VlEvalCard *card)
{
  g_return_if_fail (VL_IS_EVAL_CARD (card));
  GtkWidget *child;
  while ((child = gtk_widget_get_first_child (card->class_acc_box)))
    gtk_box_remove (GTK_BOX (card->class_acc_box), child);
}

void
vl_eval_card_append_row (VlEvalCard *card, GtkWidget *row)
{
  g_return_if_fail (VL_IS_EVAL_CARD (card));
  gtk_box_append (GTK_BOX (card->class_acc_box), row);
}

GtkWidget *
vl_eval_card_get_rows (VlEvalCard *card)
{
  g_return_val_if_fail (VL_IS_EVAL_CARD (card), NULL);
  return card->class_acc_box;
}

static void
vl_eval_card_dispose (GObject *object)
{
  gtk_widget_dispose_template (GTK_WIDGET (object), VL_TYPE_EVAL_CARD);
  G_OBJECT_CLASS (vl_eval_card_parent_class)->dispose (object);
}

static void
vl_eval_card_class_init (VlEvalCardClass *klass)
{
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);
  G_OBJECT_CLASS (klass)->dispose = vl_eval_card_dispose;
  gtk_widget_class_set_template_from_resource (widget_class, "/org/vitlab/Vitlab/vl-eval-card.ui");
#define CHILD(name) gtk_widget_class_bind_template_child (widget_class, VlEvalCard, name)
  CHILD (class_acc_title);
  CHILD (class_acc_box);
  CHILD (eval_summary_label);
#undef CHILD
}

static void
vl_eval_card_init (VlEvalCard *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
}

GtkWidget *
vl_eval_card_new (void)
{
  return g_object_new (VL_TYPE_EVAL_CARD, NULL);
}
