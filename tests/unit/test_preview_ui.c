/* test_preview_ui: the Inpaint Selection dialog's Preview (ui/ldm-preview.c) under Xvfb, with
 * GIMP replaced by an image in memory (a fake LdmPreviewHost: the layer, the selection, the
 * preview layer) and the ldm-inpaint-tiny fixture as the model. Turning Preview on writes a
 * preview layer that covers the selection grown by grow + blur, and nothing else; Cancel (the
 * preview's end) removes it and leaves the image bit for bit as before; a burst of setting
 * changes runs the preview once more, with the same pixels for the same seed and others for
 * another; the fast settings are the brush's; without a model it says why and writes nothing;
 * the model note names the built-in model when no file is chosen. Without a display every case
 * is skipped. */
#include <gtk/gtk.h>

#include "fake_host.h"
#include "ldm-preview.h"

#include <string.h>

enum { W = 96, H = 80 };

/* The selection: 40..51 x 30..41. */
static const LdmRect SELECTION = { 40, 30, 12, 12 };

typedef struct {
    uint8_t  original[W * H * 4];
    gboolean has_preview;   /* the image's second layer */
    LdmRect  preview_rect;
    uint8_t *preview;       /* preview_rect's RGBA */
    int      writes, removes, layers_made;
} FakeGimp;

static gboolean
fake_read_original (void *host, LdmRect r, LdmImage *out, GError **error)
{
    (void) error;
    fake_image_read (((FakeGimp *) host)->original, W, H, r, out);
    return TRUE;
}

static gboolean
fake_read_selection (void *host, LdmRect r, float *selection, GError **error)
{
    (void) host;
    (void) error;
    for (int y = 0; y < r.height; y++)
        for (int x = 0; x < r.width; x++) {
            int ix = r.x + x, iy = r.y + y;
            gboolean in = ix >= SELECTION.x && ix < SELECTION.x + SELECTION.width
                          && iy >= SELECTION.y && iy < SELECTION.y + SELECTION.height;
            selection[y * r.width + x] = in ? 1.0f : 0.0f;
        }
    return TRUE;
}

static void
fake_remove (void *host)
{
    FakeGimp *g = host;
    g->removes++;
    g->has_preview = FALSE;
    g_clear_pointer (&g->preview, g_free);
}

static gboolean
fake_write (void *host, LdmRect r, const uint8_t *rgba, GError **error)
{
    (void) error;
    FakeGimp *g = host;
    g_assert_true (r.x >= 0 && r.y >= 0 && r.x + r.width <= W && r.y + r.height <= H);
    if (g->has_preview && memcmp (&r, &g->preview_rect, sizeof r) != 0) {
        g->has_preview = FALSE;
        g_clear_pointer (&g->preview, g_free);
    }
    if (!g->has_preview) {
        g->has_preview = TRUE;
        g->layers_made++;
        g->preview_rect = r;
        g->preview = g_malloc ((size_t) r.width * r.height * 4);
    }
    memcpy (g->preview, rgba, (size_t) r.width * r.height * 4);
    g->writes++;
    return TRUE;
}

static const LdmPreviewHost fake_host = {
    fake_read_original, fake_read_selection, fake_write, fake_remove,
};

static FakeGimp *
fake_new (void)
{
    FakeGimp *g = g_new0 (FakeGimp, 1);
    fake_image_fill (g->original, W, H, (LdmRect) { 42, 32, 8, 8 });
    return g;
}

static void
fake_free (FakeGimp *g)
{
    g_free (g->preview);
    g_free (g);
}

/* Runs the main loop until WRITES previews were written and none is coming (60 s at most),
 * then a little longer for the state label (its 100 ms refresh). */
static gboolean
wait_written (LdmPreview *p, int writes)
{
    gint64 end = g_get_monotonic_time () + 60 * G_USEC_PER_SEC;
    gboolean running = TRUE;
    while ((ldm_preview_written (p, &running) < writes || running)
           && g_get_monotonic_time () < end)
        fake_spin (5);
    fake_spin (150);
    return ldm_preview_written (p, &running) == writes && !running;
}

/* The dialog's settings: the filter's defaults, seed SEED. */
static void
dialog_settings (LdmPreview *p, const char *model, uint64_t seed)
{
    LdmSampleParams sample;
    LdmRegionParams region;
    ldm_sample_params_init (&sample, LDM_TASK_INPAINT);
    ldm_region_params_init (&region);
    sample.seed = seed;
    ldm_preview_set_settings (p, model, model ? NULL : "no model here", &sample, &region);
}

/* A window holding the preview's box, as the dialog holds it. */
static GtkWidget *
dialog_with (LdmPreview *p)
{
    GtkWidget *window = gtk_window_new (GTK_WINDOW_TOPLEVEL);
    gtk_container_add (GTK_CONTAINER (window), ldm_preview_box_new (p));
    gtk_widget_show_all (window);
    return window;
}

static const char *
state_of (GtkWidget *window)
{
    return gtk_label_get_text (GTK_LABEL (fake_find (window, "preview-state")));
}

static void
test_toggle_and_cancel (void)
{
    FakeGimp *g = fake_new ();
    g_autofree uint8_t *before = g_memdup2 (g->original, sizeof g->original);
    g_autofree char *path = fake_model_path ();
    LdmPreview *p = ldm_preview_new (&fake_host, g, W, H, SELECTION);
    dialog_settings (p, path, 7);
    GtkWidget *window = dialog_with (p);
    GtkWidget *toggle = fake_find (window, "preview");
    fake_spin (LDM_PREVIEW_DEBOUNCE_MS + 100); /* off: nothing runs */
    g_assert_cmpint (g->writes, ==, 0);
    g_assert_cmpstr (state_of (window), ==, "");

    gtk_toggle_button_set_active (GTK_TOGGLE_BUTTON (toggle), TRUE);
    g_assert_true (ldm_preview_active (p));
    g_assert_true (wait_written (p, 1));
    g_assert_cmpint (g->writes, ==, 1);
    g_assert_true (g->has_preview);
    g_assert_cmpstr (state_of (window), ==, "Preview shown on the canvas");
    /* the preview covers the selection grown by grow (4) + blur (8), within the layer */
    LdmRect want = { SELECTION.x - 12, SELECTION.y - 12, SELECTION.width + 24,
                     SELECTION.height + 24 };
    g_assert_cmpmem (&g->preview_rect, sizeof want, &want, sizeof want);
    /* opaque inside the selection, transparent at the rectangle's corners (the mask fades) */
    int rw = g->preview_rect.width;
    int cx = SELECTION.x + 6 - want.x, cy = SELECTION.y + 6 - want.y;
    g_assert_cmpint (g->preview[(cy * rw + cx) * 4 + 3], ==, 255);
    g_assert_cmpint (g->preview[3], ==, 0);
    g_assert_cmpint (g->preview[((want.height - 1) * rw + rw - 1) * 4 + 3], ==, 0);
    g_autofree uint8_t *first = g_memdup2 (g->preview, (size_t) rw * want.height * 4);

    /* off: the preview layer goes; on again: the same pixels (same settings, same seed) */
    gtk_toggle_button_set_active (GTK_TOGGLE_BUTTON (toggle), FALSE);
    g_assert_false (g->has_preview);
    g_assert_cmpint (g->removes, ==, 1);
    gtk_toggle_button_set_active (GTK_TOGGLE_BUTTON (toggle), TRUE);
    g_assert_true (wait_written (p, 2));
    g_assert_cmpmem (g->preview, (size_t) rw * want.height * 4, first,
                     (size_t) rw * want.height * 4);

    /* Cancel: the preview ends, its layer goes, the image is as before */
    ldm_preview_end (p);
    g_assert_false (g->has_preview);
    g_assert_cmpint (g->removes, ==, 2);
    g_assert_cmpmem (g->original, sizeof g->original, before, sizeof g->original);
    /* after the end nothing runs again, whatever the dialog does */
    dialog_settings (p, path, 8);
    gtk_toggle_button_set_active (GTK_TOGGLE_BUTTON (toggle), FALSE);
    gtk_toggle_button_set_active (GTK_TOGGLE_BUTTON (toggle), TRUE);
    fake_spin (LDM_PREVIEW_DEBOUNCE_MS + 200);
    g_assert_cmpint (g->writes, ==, 2);
    g_assert_false (g->has_preview);
    gtk_widget_destroy (window);
    ldm_preview_free (p);
    g_assert_cmpint (g->layers_made, ==, 2);
    fake_free (g);
}

static void
test_settings_debounced (void)
{
    FakeGimp *g = fake_new ();
    g_autofree char *path = fake_model_path ();
    LdmPreview *p = ldm_preview_new (&fake_host, g, W, H, SELECTION);
    dialog_settings (p, path, 7);
    GtkWidget *window = dialog_with (p);
    gtk_toggle_button_set_active (GTK_TOGGLE_BUTTON (fake_find (window, "preview")), TRUE);
    g_assert_true (wait_written (p, 1));
    size_t n = (size_t) g->preview_rect.width * g->preview_rect.height * 4;
    g_autofree uint8_t *seed7 = g_memdup2 (g->preview, n);

    /* five changes 50 ms apart (typing a prompt): one run, after the last */
    for (uint64_t seed = 20; seed < 25; seed++) {
        dialog_settings (p, path, seed);
        fake_spin (50);
        g_assert_cmpint (g->writes, ==, 1);
    }
    g_assert_true (g_str_has_prefix (state_of (window), "Preview: "));
    g_assert_true (wait_written (p, 2));
    g_assert_cmpint (g->writes, ==, 2);
    g_assert_cmpint (g->layers_made, ==, 1); /* the same rectangle: the same layer */
    g_assert_true (memcmp (g->preview, seed7, n) != 0);
    /* back to seed 7: its pixels again */
    dialog_settings (p, path, 7);
    g_assert_true (wait_written (p, 3));
    g_assert_cmpmem (g->preview, n, seed7, n);

    /* a larger blur: a larger preview layer, the old one replaced */
    LdmSampleParams sample;
    LdmRegionParams region;
    ldm_sample_params_init (&sample, LDM_TASK_INPAINT);
    ldm_region_params_init (&region);
    region.mask_blur = 16;
    ldm_preview_set_settings (p, path, NULL, &sample, &region);
    g_assert_true (wait_written (p, 4));
    g_assert_cmpint (g->preview_rect.width, ==, SELECTION.width + 2 * (4 + 16));
    g_assert_cmpint (g->layers_made, ==, 2);

    ldm_preview_end (p); /* OK: the preview layer goes before the filter runs */
    g_assert_false (g->has_preview);
    gtk_widget_destroy (window);
    ldm_preview_free (p);
    fake_free (g);
}

static void
test_no_model (void)
{
    FakeGimp *g = fake_new ();
    LdmPreview *p = ldm_preview_new (&fake_host, g, W, H, SELECTION);
    dialog_settings (p, NULL, 7);
    GtkWidget *window = dialog_with (p);
    gtk_toggle_button_set_active (GTK_TOGGLE_BUTTON (fake_find (window, "preview")), TRUE);
    fake_spin (LDM_PREVIEW_DEBOUNCE_MS + 200);
    g_assert_cmpstr (state_of (window), ==, "Preview failed: no model here");
    g_assert_cmpint (g->writes, ==, 0);
    /* a model chosen: it runs */
    g_autofree char *path = fake_model_path ();
    dialog_settings (p, path, 7);
    g_assert_true (wait_written (p, 1));
    g_assert_cmpstr (state_of (window), ==, "Preview shown on the canvas");
    ldm_preview_end (p);
    gtk_widget_destroy (window);
    ldm_preview_free (p);
    g_assert_false (g->has_preview);
    fake_free (g);
}

/* The preview's settings: the brush's fast steps, context and working size; the rest the
 * dialog's. */
static void
test_fast_settings (void)
{
    LdmSampleParams sample, fast, out;
    LdmRegionParams region, fast_region, out_region;
    ldm_sample_params_init (&sample, LDM_TASK_INPAINT);
    ldm_region_params_init (&region);
    ldm_brush_params_init (LDM_BRUSH_FAST, &fast, &fast_region);
    sample.seed = 99;
    sample.prompt = "a red barn";
    sample.guidance = 5.0f;
    region.mask_grow = 10;
    region.mask_blur = 20;
    ldm_preview_settings (&sample, &region, &out, &out_region);
    g_assert_cmpint (out.steps, ==, fast.steps);
    g_assert_cmpint (out.steps, <, sample.steps);
    g_assert_cmpint (out_region.context_padding, ==, fast_region.context_padding);
    g_assert_cmpint (out_region.working_size, ==, fast_region.working_size);
    g_assert_cmpint (out_region.mask_grow, ==, 10);
    g_assert_cmpint (out_region.mask_blur, ==, 20);
    g_assert_cmpuint (out.seed, ==, 99);
    g_assert_cmpstr (out.prompt, ==, "a red barn");
    g_assert_cmpfloat (out.guidance, ==, 5.0f);
    /* fewer steps than fast's stay fewer */
    sample.steps = 3;
    ldm_preview_settings (&sample, &region, &out, &out_region);
    g_assert_cmpint (out.steps, ==, 3);
}

/* The note under the model button: the built-in model's name when no file is chosen. */
static void
test_model_note (void)
{
    GtkWidget *window = gtk_window_new (GTK_WINDOW_TOPLEVEL);
    GtkWidget *note = ldm_model_note_new ();
    gtk_container_add (GTK_CONTAINER (window), note);
    gtk_widget_show_all (window);
    g_assert_false (gtk_widget_get_visible (note)); /* empty until set */
    ldm_model_note_set (note, FALSE, "/usr/share/gimp-ldm/models/ldm-inpaint-places.ckpt", NULL);
    g_assert_true (gtk_widget_get_visible (note));
    g_assert_cmpstr (gtk_widget_get_name (note), ==, "model-note");
    g_assert_cmpstr (gtk_label_get_text (GTK_LABEL (note)), ==,
                     "No file chosen: the built-in model ldm-inpaint-places.ckpt runs");
    ldm_model_note_set (note, TRUE, "/models/mine.ckpt", NULL);
    g_assert_false (gtk_widget_get_visible (note));
    ldm_model_note_set (note, FALSE, NULL, "looked in /a, /b");
    g_assert_true (gtk_widget_get_visible (note));
    g_assert_cmpstr (gtk_label_get_text (GTK_LABEL (note)), ==,
                     "No model file chosen, and no built-in model was found: looked in /a, /b");
    gtk_widget_destroy (window);
}

int
main (int argc, char **argv)
{
    fake_ui_init (&argc, &argv);
    fake_add_ui_test ("/preview-ui/toggle-and-cancel", test_toggle_and_cancel, TRUE);
    fake_add_ui_test ("/preview-ui/settings-debounced", test_settings_debounced, TRUE);
    fake_add_ui_test ("/preview-ui/no-model", test_no_model, TRUE);
    g_test_add_func ("/preview-ui/fast-settings", test_fast_settings);
    fake_add_ui_test ("/preview-ui/model-note", test_model_note, FALSE);
    return g_test_run ();
}
