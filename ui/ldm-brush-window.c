/* ldm-brush-window.c: the brush's window (GTK3, no libgimp): see ldm-brush.h.
 *
 * A non-modal window beside the image: what the session does, Fast/Quality, Show strokes,
 * Cancel, Re-roll seed, Discard and Apply. Its widgets are named (gtk_widget_set_name: "state",
 * "progress", "fast", "quality", "show-strokes", "cancel", "reroll", "discard", "apply") for
 * the tests, which drive it under Xvfb.
 */
#include <gtk/gtk.h>

#include "ldm-brush.h"

#include <glib/gi18n-lib.h>

typedef struct {
    LdmBrushSession *session;
    void           (*finished) (void *data, LdmBrushOutcome outcome);
    void            *data;
    GtkWidget       *window, *state, *progress, *fast, *cancel, *reroll, *apply, *discard;
    guint            timer;
    gboolean         done;
} BrushWindow;

static void
refresh (BrushWindow *bw)
{
    g_autofree char *text = ldm_brush_state_text (bw->session);
    gtk_label_set_text (GTK_LABEL (bw->state), text);
    int step, steps;
    LdmBrushState state = ldm_brush_session_state (bw->session, NULL, NULL, &step, &steps);
    gboolean computing = state == LDM_BRUSH_STATE_COMPUTING;
    gtk_progress_bar_set_fraction (GTK_PROGRESS_BAR (bw->progress),
                                   computing && steps > 0 ? (double) step / steps : 0.0);
    gtk_widget_set_sensitive (bw->cancel, computing);
    gtk_widget_set_sensitive (bw->reroll, state == LDM_BRUSH_STATE_DONE);
}

static gboolean
on_timer (gpointer data)
{
    refresh (data);
    return G_SOURCE_CONTINUE;
}

/* Ends the window once: FINISHED, then the window goes. */
static void
end (BrushWindow *bw, LdmBrushOutcome outcome)
{
    if (bw->done)
        return;
    bw->done = TRUE;
    bw->finished (bw->data, outcome);
    gtk_widget_destroy (bw->window);
}

static void
on_destroy (GtkWidget *widget, gpointer data)
{
    (void) widget;
    BrushWindow *bw = data;
    if (bw->timer)
        g_source_remove (bw->timer);
    bw->timer = 0;
    if (!bw->done) { /* destroyed from outside: as closed */
        bw->done = TRUE;
        bw->finished (bw->data, LDM_BRUSH_CLOSED);
    }
    g_free (bw);
}

static gboolean
on_delete (GtkWidget *widget, GdkEvent *event, gpointer data)
{
    (void) widget;
    (void) event;
    end (data, LDM_BRUSH_CLOSED);
    return TRUE;
}

static void
on_mode (GtkToggleButton *fast, gpointer data)
{
    BrushWindow *bw = data;
    ldm_brush_session_set_mode (bw->session, gtk_toggle_button_get_active (fast)
                                                 ? LDM_BRUSH_FAST : LDM_BRUSH_QUALITY);
}

static void
on_show_strokes (GtkToggleButton *button, gpointer data)
{
    BrushWindow *bw = data;
    ldm_brush_session_show_strokes (bw->session, gtk_toggle_button_get_active (button));
}

/* Cancel and Re-roll: the session acts, and the window shows its new state at once. */
static void
on_session_button (GtkButton *button, gpointer data)
{
    BrushWindow *bw = data;
    if (GTK_WIDGET (button) == bw->cancel)
        ldm_brush_session_cancel (bw->session);
    else
        ldm_brush_session_reroll (bw->session);
    refresh (bw);
}

static void
on_finish (BrushWindow *bw, gboolean apply)
{
    GError *error = NULL;
    gboolean ok = apply ? ldm_brush_session_apply (bw->session, &error)
                        : ldm_brush_session_discard (bw->session, &error);
    if (!ok) { /* the window stays; the layers are as the error left them */
        g_autofree char *text = g_strdup_printf (_("Failed: %s"), error->message);
        gtk_label_set_text (GTK_LABEL (bw->state), text);
        g_error_free (error);
        if (bw->timer)
            g_source_remove (bw->timer);
        bw->timer = 0;
        return;
    }
    end (bw, apply ? LDM_BRUSH_APPLIED : LDM_BRUSH_DISCARDED);
}

static void
on_apply (GtkButton *button, gpointer data)
{
    (void) button;
    on_finish (data, TRUE);
}

static void
on_discard (GtkButton *button, gpointer data)
{
    (void) button;
    on_finish (data, FALSE);
}

static GtkWidget *
named (GtkWidget *widget, const char *name, const char *tooltip)
{
    gtk_widget_set_name (widget, name);
    if (tooltip)
        gtk_widget_set_tooltip_text (widget, tooltip);
    return widget;
}

GtkWidget *
ldm_brush_window_new (LdmBrushSession *session,
                      void (*finished) (void *data, LdmBrushOutcome outcome), void *data)
{
    BrushWindow *bw = g_new0 (BrushWindow, 1);
    bw->session = session;
    bw->finished = finished;
    bw->data = data;
    bw->window = gtk_window_new (GTK_WINDOW_TOPLEVEL);
    gtk_window_set_title (GTK_WINDOW (bw->window), _("Inpainting Brush"));
    gtk_window_set_resizable (GTK_WINDOW (bw->window), FALSE);
    gtk_window_set_type_hint (GTK_WINDOW (bw->window), GDK_WINDOW_TYPE_HINT_UTILITY);
    gtk_window_set_role (GTK_WINDOW (bw->window), "ldm-inpaint-brush");

    GtkWidget *box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 8);
    gtk_container_set_border_width (GTK_CONTAINER (box), 12);
    gtk_container_add (GTK_CONTAINER (bw->window), box);

    GtkWidget *hint = gtk_label_new (_("Paint over what should go on the layer \"Brush "
                                       "strokes\", with any paint tool: the area is filled "
                                       "in when you stop. Erasing paint brings the original "
                                       "back."));
    gtk_label_set_line_wrap (GTK_LABEL (hint), TRUE);
    gtk_label_set_max_width_chars (GTK_LABEL (hint), 44);
    gtk_label_set_xalign (GTK_LABEL (hint), 0.0f);
    gtk_box_pack_start (GTK_BOX (box), hint, FALSE, FALSE, 0);

    bw->state = named (gtk_label_new (NULL), "state", NULL);
    gtk_label_set_xalign (GTK_LABEL (bw->state), 0.0f);
    gtk_label_set_ellipsize (GTK_LABEL (bw->state), PANGO_ELLIPSIZE_END);
    gtk_label_set_max_width_chars (GTK_LABEL (bw->state), 44);
    gtk_box_pack_start (GTK_BOX (box), bw->state, FALSE, FALSE, 0);
    bw->progress = named (gtk_progress_bar_new (), "progress", NULL);
    gtk_box_pack_start (GTK_BOX (box), bw->progress, FALSE, FALSE, 0);

    GtkWidget *modes = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 12);
    bw->fast = named (gtk_radio_button_new_with_mnemonic (NULL, _("_Fast")), "fast",
                      _("Few steps and little context: quick while you paint"));
    GtkWidget *quality = named (gtk_radio_button_new_with_mnemonic_from_widget (
                                    GTK_RADIO_BUTTON (bw->fast), _("_Quality")),
                                "quality", _("The Inpaint Selection filter's settings: "
                                             "slower, finer"));
    gtk_toggle_button_set_active (GTK_TOGGLE_BUTTON (ldm_brush_session_mode (session)
                                                         == LDM_BRUSH_FAST ? bw->fast
                                                                           : quality),
                                  TRUE);
    gtk_box_pack_start (GTK_BOX (modes), bw->fast, FALSE, FALSE, 0);
    gtk_box_pack_start (GTK_BOX (modes), quality, FALSE, FALSE, 0);
    GtkWidget *show = named (gtk_check_button_new_with_mnemonic (_("_Show strokes")),
                             "show-strokes", _("Hide the strokes to see the result under them"));
    gtk_toggle_button_set_active (GTK_TOGGLE_BUTTON (show), TRUE);
    gtk_box_pack_end (GTK_BOX (modes), show, FALSE, FALSE, 0);
    gtk_box_pack_start (GTK_BOX (box), modes, FALSE, FALSE, 0);

    GtkWidget *buttons = gtk_button_box_new (GTK_ORIENTATION_HORIZONTAL);
    gtk_button_box_set_layout (GTK_BUTTON_BOX (buttons), GTK_BUTTONBOX_END);
    gtk_box_set_spacing (GTK_BOX (buttons), 6);
    bw->cancel = named (gtk_button_new_with_mnemonic (_("_Cancel")), "cancel",
                        _("Stop the region being computed"));
    bw->reroll = named (gtk_button_new_with_mnemonic (_("_Re-roll seed")), "reroll",
                        _("Fill the last region again with another seed"));
    bw->discard = named (gtk_button_new_with_mnemonic (_("_Discard")), "discard",
                         _("Remove the strokes and the result: the image as before"));
    bw->apply = named (gtk_button_new_with_mnemonic (_("_Apply")), "apply",
                       _("Keep the result layer and remove the strokes"));
    gtk_container_add (GTK_CONTAINER (buttons), bw->cancel);
    gtk_container_add (GTK_CONTAINER (buttons), bw->reroll);
    gtk_container_add (GTK_CONTAINER (buttons), bw->discard);
    gtk_container_add (GTK_CONTAINER (buttons), bw->apply);
    gtk_box_pack_start (GTK_BOX (box), buttons, FALSE, FALSE, 0);

    g_signal_connect (bw->fast, "toggled", G_CALLBACK (on_mode), bw);
    g_signal_connect (show, "toggled", G_CALLBACK (on_show_strokes), bw);
    g_signal_connect (bw->cancel, "clicked", G_CALLBACK (on_session_button), bw);
    g_signal_connect (bw->reroll, "clicked", G_CALLBACK (on_session_button), bw);
    g_signal_connect (bw->discard, "clicked", G_CALLBACK (on_discard), bw);
    g_signal_connect (bw->apply, "clicked", G_CALLBACK (on_apply), bw);
    g_signal_connect (bw->window, "delete-event", G_CALLBACK (on_delete), bw);
    g_signal_connect (bw->window, "destroy", G_CALLBACK (on_destroy), bw);

    refresh (bw);
    bw->timer = g_timeout_add (100, on_timer, bw);
    gtk_widget_show_all (bw->window);
    return bw->window;
}
