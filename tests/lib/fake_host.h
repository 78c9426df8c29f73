/* fake_host.h: what the ui/ tests (test_brush_ui, test_preview_ui) share when they stand in
 * for GIMP: an RGBA test image in memory and rectangles read from and written to it, the
 * ldm-inpaint-tiny fixture as the model, the display check, widgets found by name and the
 * main loop run for a while. */
#ifndef LDM_TESTS_FAKE_HOST_H
#define LDM_TESTS_FAKE_HOST_H

#include "ldm.h"

#include <gtk/gtk.h>

/* rgba (width x height x 4): a gradient background, opaque, and a light square OBJECT. */
void fake_image_fill (uint8_t *rgba, int width, int height, LdmRect object);

/* R of rgba (width x height) copied into *out (newly allocated, out->channels 4); the test
 * fails if R is not within the image. */
void fake_image_read (const uint8_t *rgba, int width, int height, LdmRect r, LdmImage *out);

/* src (r.width x r.height x 4) copied into R of rgba (width x height), which must hold it. */
void fake_image_write (uint8_t *rgba, int width, int height, LdmRect r, const uint8_t *src);

/* g_test_init and gtk_init_check; FALSE without a display. */
gboolean fake_ui_init (int *argc, char ***argv);

/* The ldm-inpaint-tiny fixture's checkpoint (below LDM_SHARED_DIR, else ../shared). */
char *fake_model_path (void);

/* g_test_add_func for a case that needs the display (and with need_model the fixture): the
 * case is skipped without them. */
void fake_add_ui_test (const char *path, GTestFunc test, gboolean need_model);

/* The widget named NAME below ROOT (or ROOT), NULL if none. */
GtkWidget *fake_find (GtkWidget *root, const char *name);

/* Runs the main loop for MS milliseconds. */
void fake_spin (int ms);

#endif
