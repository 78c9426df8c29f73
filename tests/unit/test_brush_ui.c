/* test_brush_ui: the brush's window and session (ui/) under Xvfb, with GIMP replaced by layers
 * in memory (a fake LdmBrushHost) and the ldm-inpaint-tiny fixture as the model: the state
 * label goes waiting -> computing region 1 -> done as a stroke is painted, the result layer
 * changes only within the stroke's reach and comes back transparent when the stroke is
 * erased; Cancel stops a long region and leaves the result as it was; Re-roll recomputes the
 * last region with the next seed; Show strokes, Fast/Quality, Apply, Discard and closing the
 * window reach the host as they should; a strokes layer that disappears fails the session.
 * Without a display (no Xvfb) every case is skipped. */
#include <gtk/gtk.h>

#include "fake_host.h"
#include "ldm-brush.h"

#include <string.h>

enum { W = 96, H = 80 };

typedef struct {
    int      read_delay_ms, reads;
    uint8_t  strokes[W * H];
    uint8_t  original[W * H * 4];
    uint8_t  result[W * H * 4];
    int      writes, applied, discarded, shown, hidden;
    gboolean gone;
    int      finished_calls;
    LdmBrushOutcome outcome;
} FakeGimp;

static gboolean
fake_read_strokes (void *host, uint8_t *alpha, GError **error)
{
    FakeGimp *g = host;
    g->reads++;
    if (g->read_delay_ms)
        g_usleep ((gulong) g->read_delay_ms * 1000);
    if (g->gone) {
        g_set_error_literal (error, LDM_ERROR, LDM_ERROR_ARGUMENT, "the strokes layer is gone");
        return FALSE;
    }
    memcpy (alpha, g->strokes, sizeof g->strokes);
    return TRUE;
}

static gboolean
fake_read_original (void *host, LdmRect r, LdmImage *out, GError **error)
{
    (void) error;
    fake_image_read (((FakeGimp *) host)->original, W, H, r, out);
    return TRUE;
}

static gboolean
fake_write_result (void *host, LdmRect r, const uint8_t *rgba, GError **error)
{
    (void) error;
    FakeGimp *g = host;
    fake_image_write (g->result, W, H, r, rgba);
    g->writes++;
    return TRUE;
}

static void
fake_show_strokes (void *host, gboolean visible)
{
    FakeGimp *g = host;
    if (visible)
        g->shown++;
    else
        g->hidden++;
}

static gboolean
fake_apply (void *host, GError **error)
{
    (void) error;
    ((FakeGimp *) host)->applied++;
    return TRUE;
}

static gboolean
fake_discard (void *host, GError **error)
{
    (void) error;
    ((FakeGimp *) host)->discarded++;
    return TRUE;
}

static const LdmBrushHost fake_host = {
    fake_read_strokes, fake_read_original, fake_write_result, fake_show_strokes, fake_apply,
    fake_discard,
};

static void
on_finished (void *data, LdmBrushOutcome outcome)
{
    FakeGimp *g = data;
    g->finished_calls++;
    g->outcome = outcome;
}

static FakeGimp *
fake_new (void)
{
    FakeGimp *g = g_new0 (FakeGimp, 1);
    fake_image_fill (g->original, W, H, (LdmRect) { 40, 30, 12, 12 });
    return g;
}

/* The stroke over the object: coverage 255 on 39..52 x 29..42. */
static void
paint_square (FakeGimp *g, uint8_t value)
{
    for (int y = 29; y < 43; y++)
        memset (g->strokes + y * W + 39, value, 14);
}

static const char *
label_of (GtkWidget *window)
{
    return gtk_label_get_text (GTK_LABEL (fake_find (window, "state")));
}

typedef gboolean (*Predicate) (LdmBrushSession *s, FakeGimp *g);

/* Runs the main loop until WANT holds (at most 60 s). */
static gboolean
wait_for (LdmBrushSession *s, FakeGimp *g, Predicate want)
{
    gint64 end = g_get_monotonic_time () + 60 * G_USEC_PER_SEC;
    while (!want (s, g) && g_get_monotonic_time () < end)
        fake_spin (2);
    fake_spin (200); /* the window's label follows within its 100 ms refresh */
    return want (s, g);
}

static int want_writes;

/* Done, with want_writes regions written in all. */
static gboolean
is_done (LdmBrushSession *s, FakeGimp *g)
{
    return ldm_brush_session_state (s, NULL, NULL, NULL, NULL) == LDM_BRUSH_STATE_DONE
           && g->writes >= want_writes;
}

static gboolean
is_computing_a_step (LdmBrushSession *s, FakeGimp *g)
{
    (void) g;
    int step = 0;
    return ldm_brush_session_state (s, NULL, NULL, &step, NULL) == LDM_BRUSH_STATE_COMPUTING
           && step >= 1;
}

static gboolean
is_failed (LdmBrushSession *s, FakeGimp *g)
{
    (void) g;
    return ldm_brush_session_state (s, NULL, NULL, NULL, NULL) == LDM_BRUSH_STATE_FAILED;
}

/* Result pixels with alpha > 0 outside RECT, and inside it. */
static void
count_alpha (const FakeGimp *g, LdmRect r, int *outside, int *inside)
{
    *outside = *inside = 0;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            gboolean in = x >= r.x && x < r.x + r.width && y >= r.y && y < r.y + r.height;
            if (g->result[(y * W + x) * 4 + 3])
                *(in ? inside : outside) += 1;
        }
}

static LdmBrushSession *
new_session (FakeGimp *g, GtkWidget **window)
{
    g_autofree char *path = fake_model_path ();
    g_autoptr (GError) error = NULL;
    LdmBrushSession *s = ldm_brush_session_new (&fake_host, g, W, H, path, 11, LDM_BRUSH_FAST,
                                                &error);
    g_assert_no_error (error);
    *window = ldm_brush_window_new (s, on_finished, g);
    ldm_brush_session_start (s);
    return s;
}

/* A session computing region 1, the stroke over the object, with 1000 steps (long). */
static LdmBrushSession *
computing_session (FakeGimp *g, GtkWidget **window)
{
    LdmBrushSession *s = new_session (g, window);
    ldm_brush_session_set_steps (s, 1000);
    paint_square (g, 255);
    g_assert_true (wait_for (s, g, is_computing_a_step));
    return s;
}

static void
test_paint_and_erase (void)
{
    g_autofree FakeGimp *g = fake_new ();
    GtkWidget *window;
    LdmBrushSession *s = new_session (g, &window);
    fake_spin (300); /* a few polls of an empty layer */
    g_assert_true (g_str_has_prefix (label_of (window), "Waiting for strokes"));
    g_assert_cmpint (g->writes, ==, 0);
    g_assert_false (gtk_widget_get_sensitive (fake_find (window, "cancel")));

    paint_square (g, 255);
    want_writes = 1;
    g_assert_true (wait_for (s, g, is_done));
    g_assert_cmpstr (label_of (window), ==, "Done (regions inpainted: 1)");
    g_assert_cmpint (g->writes, ==, 1);
    g_assert_true (gtk_widget_get_sensitive (fake_find (window, "reroll")));
    /* fast: grow 4 + blur 4 around the stroke's box 39,29 14x14 */
    int outside, inside;
    count_alpha (g, (LdmRect) { 31, 21, 30, 30 }, &outside, &inside);
    g_assert_cmpint (outside, ==, 0);
    g_assert_cmpint (inside, >=, 14 * 14);
    g_assert_cmpint (g->result[(35 * W + 45) * 4 + 3], ==, 255);

    /* Re-roll: the same region again with the next seed: other pixels, same place */
    g_autofree uint8_t *first = g_memdup2 (g->result, sizeof g->result);
    g_assert_cmpuint (ldm_brush_session_seed (s), ==, 11);
    gtk_button_clicked (GTK_BUTTON (fake_find (window, "reroll")));
    want_writes = 2;
    g_assert_true (wait_for (s, g, is_done));
    g_assert_cmpint (g->writes, ==, 2);
    g_assert_cmpuint (ldm_brush_session_seed (s), ==, 12);
    g_assert_true (memcmp (first, g->result, sizeof g->result) != 0);
    count_alpha (g, (LdmRect) { 31, 21, 30, 30 }, &outside, &inside);
    g_assert_cmpint (outside, ==, 0);

    /* erase the stroke: the result goes transparent again (the original shows) */
    paint_square (g, 0);
    want_writes = 3;
    g_assert_true (wait_for (s, g, is_done));
    g_assert_cmpint (g->writes, ==, 3);
    count_alpha (g, (LdmRect) { 0, 0, W, H }, &outside, &inside);
    g_assert_cmpint (inside, ==, 0);
    g_assert_cmpstr (label_of (window), ==, "Done (regions inpainted: 3)");

    gtk_button_clicked (GTK_BUTTON (fake_find (window, "apply")));
    g_assert_cmpint (g->applied, ==, 1);
    g_assert_cmpint (g->discarded, ==, 0);
    g_assert_cmpint (g->finished_calls, ==, 1);
    g_assert_cmpint (g->outcome, ==, LDM_BRUSH_APPLIED);
    g_assert_cmpint (ldm_brush_session_state (s, NULL, NULL, NULL, NULL), ==,
                     LDM_BRUSH_STATE_IDLE);
    ldm_brush_session_free (s);
}

static void
test_cancel (void)
{
    g_autofree FakeGimp *g = fake_new ();
    GtkWidget *window;
    LdmBrushSession *s = computing_session (g, &window);
    g_assert_true (g_str_has_prefix (label_of (window), "Computing region 1: step "));
    GtkWidget *cancel = fake_find (window, "cancel");
    g_assert_true (gtk_widget_get_sensitive (cancel));
    gtk_button_clicked (GTK_BUTTON (cancel));
    /* back to waiting, nothing written, and no more work */
    fake_spin (500);
    g_assert_cmpint (ldm_brush_session_state (s, NULL, NULL, NULL, NULL), ==,
                     LDM_BRUSH_STATE_WAITING);
    g_assert_true (g_str_has_prefix (label_of (window), "Waiting for strokes"));
    g_assert_false (gtk_widget_get_sensitive (cancel));
    g_assert_cmpint (g->writes, ==, 0);

    /* Show strokes and the mode reach the host and the session */
    gtk_toggle_button_set_active (GTK_TOGGLE_BUTTON (fake_find (window, "show-strokes")), FALSE);
    g_assert_cmpint (g->hidden, ==, 1);
    gtk_toggle_button_set_active (GTK_TOGGLE_BUTTON (fake_find (window, "show-strokes")), TRUE);
    g_assert_cmpint (g->shown, ==, 1);
    g_assert_cmpint (ldm_brush_session_mode (s), ==, LDM_BRUSH_FAST);
    gtk_toggle_button_set_active (GTK_TOGGLE_BUTTON (fake_find (window, "quality")), TRUE);
    g_assert_cmpint (ldm_brush_session_mode (s), ==, LDM_BRUSH_QUALITY);

    gtk_button_clicked (GTK_BUTTON (fake_find (window, "discard")));
    g_assert_cmpint (g->discarded, ==, 1);
    g_assert_cmpint (g->applied, ==, 0);
    g_assert_cmpint (g->outcome, ==, LDM_BRUSH_DISCARDED);
    ldm_brush_session_free (s);
}

/* Paint while a region computes: near it, the region restarts with the new strokes; far from
 * it, the new region waits its turn. */
static void
test_restart_and_queue (void)
{
    g_autofree FakeGimp *g = fake_new ();
    GtkWidget *window;
    LdmBrushSession *s = computing_session (g, &window); /* 39,29 14x14 */
    int region = 0, queued = 0;
    ldm_brush_session_state (s, &region, &queued, NULL, NULL);
    g_assert_cmpint (region, ==, 1);
    ldm_brush_session_set_steps (s, 2); /* the regions made from now on */
    for (int y = 29; y < 43; y++) /* 10 px right of the square: within the merge distance */
        memset (g->strokes + y * W + 63, 255, 4);
    for (int y = 70; y < 76; y++) /* far: bottom left */
        memset (g->strokes + y * W + 2, 255, 6);
    want_writes = 2;
    g_assert_true (wait_for (s, g, is_done));
    ldm_brush_session_state (s, &region, &queued, NULL, NULL);
    /* region 1 cancelled, never written; 2 = 1 restarted with the near stroke; 3 = the far one */
    g_assert_cmpint (region, ==, 3);
    g_assert_cmpint (queued, ==, 0);
    g_assert_cmpint (g->writes, ==, 2);
    g_assert_cmpstr (label_of (window), ==, "Done (regions inpainted: 2)");
    int outside, inside;
    /* everything within reach (8) of the three strokes: 31..75 x 21..51 and 0..16 x 62..80 */
    LdmRect near = { 31, 21, 45, 30 }, far = { 0, 62, 16, 18 };
    count_alpha (g, near, &outside, &inside);
    g_assert_cmpint (inside, >=, 14 * 14 + 4 * 14);
    int far_outside, far_inside;
    count_alpha (g, far, &far_outside, &far_inside);
    g_assert_cmpint (far_inside, >=, 6 * 6);
    g_assert_cmpint (outside, ==, far_inside); /* nothing outside both */
    g_assert_cmpint (g->result[(35 * W + 64) * 4 + 3], ==, 255); /* the near stroke is filled */
    ldm_brush_session_free (s);
    gtk_widget_destroy (window);
}

/* A strokes layer that takes 100 ms to read is looked at every 500 ms (4 x 100 ms, then the
 * read), not every 150 (LDM_BRUSH_POLL_MS, then the read): fewer than 7 reads in 2 s (13
 * without the slow-down). */
static void
test_slow_layer (void)
{
    g_autofree FakeGimp *g = fake_new ();
    g->read_delay_ms = 100;
    GtkWidget *window;
    LdmBrushSession *s = new_session (g, &window);
    fake_spin (2000);
    g_assert_cmpint (g->reads, >=, 1);
    g_assert_cmpint (g->reads, <, 7);
    /* still watching: a stroke is taken */
    g->read_delay_ms = 0;
    ldm_brush_session_set_steps (s, 2);
    paint_square (g, 255);
    want_writes = 1;
    g_assert_true (wait_for (s, g, is_done));
    ldm_brush_session_free (s);
    gtk_widget_destroy (window);
}

static void
test_close_and_gone (void)
{
    g_autofree FakeGimp *g = fake_new ();
    GtkWidget *window;
    /* the layers go while a region computes: the region is cancelled, nothing written, and
     * the session says why it stopped (the cancelled region does not hide it) */
    LdmBrushSession *s = computing_session (g, &window);
    g->gone = TRUE;
    g_assert_true (wait_for (s, g, is_failed));
    fake_spin (500);
    g_assert_cmpint (ldm_brush_session_state (s, NULL, NULL, NULL, NULL), ==,
                     LDM_BRUSH_STATE_FAILED);
    g_assert_cmpint (g->writes, ==, 0);
    g_assert_cmpstr (label_of (window), ==, "Failed: the strokes layer is gone");
    g_assert_cmpstr (ldm_brush_session_message (s), ==, "the strokes layer is gone");
    /* closing the window: neither Apply nor Discard, the layers stay */
    gtk_window_close (GTK_WINDOW (window));
    fake_spin (20);
    g_assert_cmpint (g->finished_calls, ==, 1);
    g_assert_cmpint (g->outcome, ==, LDM_BRUSH_CLOSED);
    g_assert_cmpint (g->applied + g->discarded, ==, 0);
    ldm_brush_session_free (s);
}

int
main (int argc, char **argv)
{
    fake_ui_init (&argc, &argv);
    fake_add_ui_test ("/brush-ui/paint-reroll-erase-apply", test_paint_and_erase, TRUE);
    fake_add_ui_test ("/brush-ui/cancel-toggles-discard", test_cancel, TRUE);
    fake_add_ui_test ("/brush-ui/restart-and-queue", test_restart_and_queue, TRUE);
    fake_add_ui_test ("/brush-ui/slow-layer", test_slow_layer, TRUE);
    fake_add_ui_test ("/brush-ui/close-and-gone", test_close_and_gone, TRUE);
    return g_test_run ();
}
