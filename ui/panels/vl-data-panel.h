/* vl-data-panel.h: the Data sidebar page: the dataset (scanning, its name and split), the
 * buttons to open one (a folder, Fashion-MNIST and its scenes, with their choices in a popover),
 * the validation share of a folder without its own split, the k-NN probe (VlKnnPanel), the
 * cards of its classes (the owner builds them for the task), the skipped files, the
 * augmentation and the frozen-feature cache (its own template, vl-data-panel.ui).
 *
 * Properties: "val-fraction", "show-val-fraction", "augment" (a VlAugment), "cache" (the switch;
 * with augmentation on, the trainer caches only the validation images' features, and a note
 * under the switch says so), "editable" (FALSE while a run uses the data),
 * "fmnist-classes", "fmnist-per-class", "fmnist-val-per-class" (the popover's choices).
 *
 *   vl_data_panel_set_loading (panel, spec);
 *   vl_data_panel_show_dataset (panel, spec, name, split_text, is_fashion_mnist);
 *   vl_data_panel_add_classes_card (panel, card);
 */
#pragma once

#include <gtk/gtk.h>

G_BEGIN_DECLS

#define VL_TYPE_DATA_PANEL (vl_data_panel_get_type ())
G_DECLARE_FINAL_TYPE (VlDataPanel, vl_data_panel, VL, DATA_PANEL, GtkBox)

GtkWidget  *vl_data_panel_new              (void);
void        vl_data_panel_set_loading      (VlDataPanel *panel, const char *spec);
/* The scan failed: the panel shows the dataset still open (or none). */
void        vl_data_panel_set_failed       (VlDataPanel *panel);
void        vl_data_panel_show_dataset     (VlDataPanel *panel, const char *spec,
                                            const char *name, const char *split_text,
                                            gboolean fashion_mnist);
const char *vl_data_panel_get_name         (VlDataPanel *panel);
void        vl_data_panel_set_name         (VlDataPanel *panel, const char *name);
/* The note under the cache switch when augmentation limits the cache to the validation
 * images; NULL when it is hidden. */
const char *vl_data_panel_get_cache_note   (VlDataPanel *panel);
/* The Fashion-MNIST button's label ("Use Fashion-MNIST", or its classes when it is open). */
const char *vl_data_panel_get_fmnist_label (VlDataPanel *panel);
void        vl_data_panel_close_fmnist     (VlDataPanel *panel);
/* The cards of the classes (one per class, or one for a dense task) */
void        vl_data_panel_clear_classes    (VlDataPanel *panel);
void        vl_data_panel_add_classes_card (VlDataPanel *panel, GtkWidget *card);
int         vl_data_panel_get_n_classes_cards (VlDataPanel *panel);
/* "FILE: reason" lines (NULL-terminated; the first 500 shown), the expander hidden when none. */
void        vl_data_panel_set_skipped      (VlDataPanel *panel, char **lines);
int         vl_data_panel_get_n_skipped    (VlDataPanel *panel);
const char *vl_data_panel_get_skipped      (VlDataPanel *panel, int i);
GtkWidget  *vl_data_panel_get_knn_panel    (VlDataPanel *panel);

G_END_DECLS
