/* ldm-job.c: see ldm-job.h. */
#include "ldm-job.h"
#include "ldm-intl.h"

#include <libgimp/gimp.h>
#include <libgimp/gimpui.h>
#include <stdlib.h>

struct LdmJob {
    GMutex      lock;       /* guards stage, step, steps, done */
    char       *stage;
    int         step, steps;
    int         tile, tiles; /* the window of the step under way, when it runs in windows */
    gboolean    done;
    gint        cancelled;  /* atomic */
    int         cancel_at;  /* GIMP_LDM_CANCEL_AT_STEP, 0 = never */

    LdmJobFunc  func;
    gpointer    data;
    gboolean    ok;
    GError     *error;

    /* main thread only */
    const char *what;
    int         shown_step;
    char       *shown_stage;
    GtkWidget  *window, *label, *bar;
};

gboolean
ldm_job_progress (void *data, int step, int steps)
{
    LdmJob *job = data;
    g_mutex_lock (&job->lock);
    job->step = step;
    job->steps = steps;
    job->tile = job->tiles = 0;
    g_mutex_unlock (&job->lock);
    if (job->cancel_at > 0 && step >= job->cancel_at)
        g_atomic_int_set (&job->cancelled, 1);
    return !g_atomic_int_get (&job->cancelled);
}

gboolean
ldm_job_tile_progress (void *data, int step, int steps, int tile, int tiles)
{
    LdmJob *job = data;
    g_mutex_lock (&job->lock);
    job->step = step - 1; /* steps done */
    job->steps = steps;
    job->tile = tile;
    job->tiles = tiles;
    g_mutex_unlock (&job->lock);
    return !g_atomic_int_get (&job->cancelled);
}

void
ldm_job_set_stage (LdmJob *job, const char *text)
{
    g_mutex_lock (&job->lock);
    g_free (job->stage);
    job->stage = g_strdup (text);
    g_mutex_unlock (&job->lock);
}

static gboolean
job_wake (gpointer data)
{
    (void) data; /* dispatching it ends the main thread's wait for an event */
    return G_SOURCE_REMOVE;
}

static gboolean
job_done (LdmJob *job)
{
    g_mutex_lock (&job->lock);
    gboolean done = job->done;
    g_mutex_unlock (&job->lock);
    return done;
}

static gpointer
job_thread (gpointer data)
{
    LdmJob *job = data;
    GError *error = NULL;
    gboolean ok = job->func (job, job->data, &error);
    g_mutex_lock (&job->lock);
    job->ok = ok;
    job->error = error;
    job->done = TRUE;
    g_mutex_unlock (&job->lock);
    /* wakes the main thread, which may be waiting for an event */
    g_main_context_invoke (NULL, job_wake, NULL);
    return NULL;
}

/* Main thread, every 100 ms: carries the worker's state to GIMP and the window. */
static gboolean
job_show (gpointer data)
{
    LdmJob *job = data;
    g_mutex_lock (&job->lock);
    int step = job->step, steps = job->steps, tile = job->tile, tiles = job->tiles;
    g_autofree char *stage = g_strdup (job->stage);
    g_mutex_unlock (&job->lock);

    g_autofree char *text = NULL;
    double fraction = -1;
    int shown = step * (tiles + 1) + tile; /* changes with the step and with the window */
    if (steps > 0 && tiles > 0 && shown != job->shown_step) {
        /* TRANSLATORS: "Upscaling: step 3 of 25, window 4 of 12" */
        text = g_strdup_printf (_("%s: step %d of %d, window %d of %d"), job->what, step + 1,
                                steps, tile, tiles);
        fraction = (step + (double) tile / tiles) / steps;
        job->shown_step = shown;
    } else if (steps > 0 && tiles == 0 && shown != job->shown_step) {
        /* TRANSLATORS: "Inpainting: step 3 of 25" */
        text = g_strdup_printf (_("%s: step %d of %d"), job->what, step, steps);
        fraction = (double) step / steps;
        job->shown_step = shown;
    } else if (steps == 0 && stage && g_strcmp0 (stage, job->shown_stage) != 0) {
        text = g_strdup_printf ("%s: %s", job->what, stage);
        g_free (job->shown_stage);
        job->shown_stage = g_strdup (stage);
    }
    if (text) {
        gimp_progress_set_text (text);
        if (job->label && !g_atomic_int_get (&job->cancelled))
            gtk_label_set_text (GTK_LABEL (job->label), text);
    }
    if (fraction >= 0) {
        gimp_progress_update (fraction);
        if (job->bar)
            gtk_progress_bar_set_fraction (GTK_PROGRESS_BAR (job->bar), fraction);
    } else if (steps == 0) {
        gimp_progress_pulse ();
        if (job->bar)
            gtk_progress_bar_pulse (GTK_PROGRESS_BAR (job->bar));
    }
    return G_SOURCE_CONTINUE;
}

static void
on_response (GtkDialog *dialog, int response, gpointer data)
{
    (void) dialog;
    (void) response; /* Cancel, Escape or the window closed: all mean stop */
    LdmJob *job = data;
    g_atomic_int_set (&job->cancelled, 1);
    gtk_label_set_text (GTK_LABEL (job->label), _("Cancelling after the current step..."));
    gtk_dialog_set_response_sensitive (GTK_DIALOG (job->window), GTK_RESPONSE_CANCEL, FALSE);
}

static gboolean
on_delete (GtkWidget *widget, GdkEvent *event, gpointer data)
{
    (void) event;
    on_response (GTK_DIALOG (widget), GTK_RESPONSE_CANCEL, data);
    return TRUE; /* the window stays until the worker has stopped */
}

static void
make_window (LdmJob *job)
{
    job->window = gtk_dialog_new_with_buttons (job->what, NULL, 0, _("_Cancel"),
                                               GTK_RESPONSE_CANCEL, NULL);
    gtk_window_set_default_size (GTK_WINDOW (job->window), 360, -1);
    gtk_window_set_resizable (GTK_WINDOW (job->window), FALSE);
    GtkWidget *box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 8);
    gtk_container_set_border_width (GTK_CONTAINER (box), 12);
    job->label = gtk_label_new (job->what);
    gtk_label_set_xalign (GTK_LABEL (job->label), 0.0f);
    job->bar = gtk_progress_bar_new ();
    gtk_box_pack_start (GTK_BOX (box), job->label, FALSE, FALSE, 0);
    gtk_box_pack_start (GTK_BOX (box), job->bar, FALSE, FALSE, 0);
    gtk_box_pack_start (GTK_BOX (gtk_dialog_get_content_area (GTK_DIALOG (job->window))), box,
                        TRUE, TRUE, 0);
    g_signal_connect (job->window, "response", G_CALLBACK (on_response), job);
    g_signal_connect (job->window, "delete-event", G_CALLBACK (on_delete), job);
    gimp_window_set_transient (GTK_WINDOW (job->window));
    gtk_widget_show_all (job->window);
}

gboolean
ldm_job_run (const char *what, gboolean interactive, LdmJobFunc func, gpointer data,
             GError **error)
{
    LdmJob job = { .func = func, .data = data, .what = what, .shown_step = -1 };
    g_mutex_init (&job.lock);
    const char *cancel_at = g_getenv ("GIMP_LDM_CANCEL_AT_STEP");
    if (cancel_at)
        job.cancel_at = atoi (cancel_at);
    gimp_progress_init (what);
    if (interactive)
        make_window (&job);
    guint timer = g_timeout_add (100, job_show, &job);
    GThread *thread = g_thread_new ("ldm-engine", job_thread, &job);
    while (!job_done (&job))
        g_main_context_iteration (NULL, TRUE);
    g_thread_join (thread);
    g_source_remove (timer);
    job_show (&job);
    gimp_progress_end ();
    if (job.window)
        gtk_widget_destroy (job.window);
    g_mutex_clear (&job.lock);
    g_free (job.stage);
    g_free (job.shown_stage);
    if (!job.ok)
        g_propagate_error (error, job.error);
    return job.ok;
}
