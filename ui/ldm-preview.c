/* ldm-preview.c: the Inpaint Selection dialog's Preview; see ldm-preview.h.
 *
 * The brush's machinery for one fixed region: core's LdmBrushJob (the filter's crop with
 * context around the selection's bounds, the RGBA of what the fill can reach) run by an
 * LdmBrushWorker that keeps the model loaded while the dialog is open. Every change of the
 * settings makes a new generation: the running job is cancelled, and a result of an older
 * generation is dropped when it comes back. The GTK part (the toggle, the state, the model
 * note) has no libgimp: plugin/ puts it in the dialog.
 */
#include <gtk/gtk.h>

#include "ldm-preview.h"

#include <glib/gi18n-lib.h>
#include <string.h>

#define TAKE_MS 25

struct LdmPreview {
    const LdmPreviewHost *host;
    void                 *host_data;
    int                   width, height;
    LdmRect               box;

    LdmBrushWorker       *worker;
    char                 *worker_model;   /* the model the worker loads */

    gboolean              have_settings;
    char                 *model_path;     /* NULL: no model (message) */
    char                 *message;
    LdmSampleParams       sample;
    LdmRegionParams       region;
    /* every prompt the settings had: a job that is still running may point at one */
    GPtrArray            *strings;

    gboolean              active, ended, running;
    uint64_t              generation;     /* the settings' and on/off changes; the jobs' ids */
    int                   written;
    char                 *failure;
    guint                 run_timer, take_timer;
};

LdmPreview *
ldm_preview_new (const LdmPreviewHost *host, void *host_data, int width, int height, LdmRect box)
{
    LdmPreview *p = g_new0 (LdmPreview, 1);
    p->host = host;
    p->host_data = host_data;
    p->width = width;
    p->height = height;
    p->box = box;
    p->strings = g_ptr_array_new_with_free_func (g_free);
    return p;
}

static void
stop_timers (LdmPreview *p)
{
    g_clear_handle_id (&p->run_timer, g_source_remove);
    g_clear_handle_id (&p->take_timer, g_source_remove);
}

void
ldm_preview_free (LdmPreview *p)
{
    if (!p)
        return;
    stop_timers (p);
    ldm_brush_worker_free (p->worker); /* joined: no job points at the strings any more */
    g_free (p->worker_model);
    g_free (p->model_path);
    g_free (p->message);
    g_free (p->failure);
    g_ptr_array_unref (p->strings);
    g_free (p);
}

void
ldm_preview_settings (const LdmSampleParams *sample, const LdmRegionParams *region,
                      LdmSampleParams *preview_sample, LdmRegionParams *preview_region)
{
    LdmSampleParams fast;
    LdmRegionParams fast_region;
    ldm_brush_params_init (LDM_BRUSH_FAST, &fast, &fast_region);
    *preview_sample = *sample;
    *preview_region = *region;
    /* what makes it fast; grow, blur and the sampling choices stay the user's, so the
     * preview covers what the filter will fill */
    preview_sample->steps = MIN (sample->steps, fast.steps);
    preview_region->context_padding = MIN (region->context_padding, fast_region.context_padding);
    preview_region->working_size = MIN (region->working_size, fast_region.working_size);
    preview_sample->progress = NULL;
    preview_sample->tile_progress = NULL;
    preview_sample->progress_data = NULL;
}

static void set_failure (LdmPreview *p, const char *message);

/* A finished job: a current one is written. */
static gboolean
take_tick (gpointer data)
{
    LdmPreview *p = data;
    LdmBrushJob *job;
    while (p->worker && (job = ldm_brush_worker_take (p->worker, 0))) {
        gboolean current = job->id == p->generation && p->active;
        if (current) {
            p->running = FALSE;
            GError *error = NULL;
            if (!job->ok) {
                if (!g_error_matches (job->error, LDM_ERROR, LDM_ERROR_CANCELLED))
                    set_failure (p, job->error->message);
            } else if (!p->host->write_preview (p->host_data, job->inner, job->rgba, &error)) {
                set_failure (p, error->message);
                g_error_free (error);
            } else {
                p->written++;
            }
        }
        ldm_brush_job_free (job);
    }
    if (!p->running) {
        p->take_timer = 0;
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
}

static void
set_failure (LdmPreview *p, const char *message)
{
    g_free (p->failure);
    p->failure = g_strdup (message);
}

/* The worker for the settings' model: a new one when the model changed. */
static gboolean
ensure_worker (LdmPreview *p, GError **error)
{
    if (p->worker && g_strcmp0 (p->worker_model, p->model_path) == 0)
        return TRUE;
    /* the old model may still be loading: the join waits for it (a model changed while it
     * loads; rare) */
    g_clear_pointer (&p->worker, ldm_brush_worker_free);
    g_clear_pointer (&p->worker_model, g_free);
    p->worker = ldm_brush_worker_new (p->model_path, error);
    if (!p->worker)
        return FALSE;
    p->worker_model = g_strdup (p->model_path);
    return TRUE;
}

/* The region with the current settings to the worker. */
static void
start_job (LdmPreview *p)
{
    g_clear_pointer (&p->failure, g_free);
    p->running = FALSE;
    if (!p->have_settings)
        return;
    if (!p->model_path) {
        set_failure (p, p->message ? p->message : "?");
        return;
    }
    GError *error = NULL;
    LdmBrushJob *job = NULL;
    if (ensure_worker (p, &error))
        job = ldm_brush_job_new (p->box, p->width, p->height, &p->sample, &p->region, &error);
    if (!job || !p->host->read_original (p->host_data, job->crop, &job->image, &error)
        || !p->host->read_selection (p->host_data, job->crop, job->selection, &error)) {
        set_failure (p, error->message);
        g_error_free (error);
        ldm_brush_job_free (job);
        return;
    }
    job->id = p->generation;
    ldm_brush_worker_submit (p->worker, job);
    p->running = TRUE;
    if (!p->take_timer)
        p->take_timer = g_timeout_add (TAKE_MS, take_tick, p);
}

static gboolean
run_tick (gpointer data)
{
    LdmPreview *p = data;
    p->run_timer = 0;
    start_job (p);
    return G_SOURCE_REMOVE;
}

/* A new generation: the running job is cancelled; when on, the next runs after DELAY_MS. */
static void
restart (LdmPreview *p, guint delay_ms)
{
    p->generation++;
    p->running = FALSE;
    if (p->worker)
        ldm_brush_worker_cancel (p->worker);
    if (p->run_timer)
        g_source_remove (p->run_timer);
    p->run_timer = 0;
    if (p->active && !p->ended) {
        p->running = TRUE; /* waiting counts: the dialog says the preview is coming */
        p->run_timer = g_timeout_add (delay_ms, run_tick, p);
    }
}

void
ldm_preview_set_settings (LdmPreview *p, const char *model_path, const char *message,
                          const LdmSampleParams *sample, const LdmRegionParams *region)
{
    g_free (p->model_path);
    g_free (p->message);
    p->model_path = g_strdup (model_path);
    p->message = g_strdup (message);
    ldm_preview_settings (sample, region, &p->sample, &p->region);
    p->sample.prompt = g_strdup (sample->prompt ? sample->prompt : "");
    p->sample.negative_prompt = g_strdup (sample->negative_prompt ? sample->negative_prompt : "");
    g_ptr_array_add (p->strings, (char *) p->sample.prompt);
    g_ptr_array_add (p->strings, (char *) p->sample.negative_prompt);
    p->have_settings = TRUE;
    restart (p, LDM_PREVIEW_DEBOUNCE_MS);
}

void
ldm_preview_set_active (LdmPreview *p, gboolean active)
{
    if (p->ended || active == p->active)
        return;
    p->active = active;
    if (active) {
        restart (p, 0);
    } else {
        restart (p, 0);
        g_clear_pointer (&p->failure, g_free);
        p->host->remove_preview (p->host_data);
    }
}

gboolean
ldm_preview_active (LdmPreview *p)
{
    return p->active;
}

void
ldm_preview_end (LdmPreview *p)
{
    ldm_preview_set_active (p, FALSE);
    p->ended = TRUE;
    stop_timers (p);
}

int
ldm_preview_written (LdmPreview *p, gboolean *running)
{
    if (running)
        *running = p->running;
    return p->written;
}

char *
ldm_preview_state_text (LdmPreview *p)
{
    if (!p->active)
        return g_strdup ("");
    if (p->failure)
        /* TRANSLATORS: %s says why */
        return g_strdup_printf (_("Preview failed: %s"), p->failure);
    if (!p->running)
        return g_strdup (_("Preview shown on the canvas"));
    LdmBrushStatus st = { 0 };
    if (p->worker)
        ldm_brush_worker_status (p->worker, &st, NULL);
    if (p->run_timer || !p->worker)
        return g_strdup (_("Preview: waiting for the settings to settle"));
    if (!st.loaded)
        return g_strdup (_("Preview: loading the model"));
    if (st.steps > 0)
        /* TRANSLATORS: "Preview: step 3 of 8" */
        return g_strdup_printf (_("Preview: step %d of %d"), st.step, st.steps);
    return g_strdup (_("Preview: computing"));
}

char *
ldm_model_note_text (gboolean file_chosen, const char *builtin_path, const char *message)
{
    if (file_chosen)
        return g_strdup ("");
    if (!builtin_path)
        /* TRANSLATORS: no model file chosen and none built in; %s says where it looked */
        return g_strdup_printf (_("No model file chosen, and no built-in model was found: %s"),
                                message ? message : "?");
    g_autofree char *name = g_path_get_basename (builtin_path);
    /* TRANSLATORS: no model file chosen; %s is the built-in model's file name */
    return g_strdup_printf (_("No file chosen: the built-in model %s runs"), name);
}

/* ---------------------------------------------------------------- widgets */

typedef struct {
    LdmPreview *preview;
    GtkWidget  *state;
    guint       timer;
} PreviewBox;

static gboolean
refresh_state (gpointer data)
{
    PreviewBox *pb = data;
    g_autofree char *text = ldm_preview_state_text (pb->preview);
    if (g_strcmp0 (text, gtk_label_get_text (GTK_LABEL (pb->state))) != 0)
        gtk_label_set_text (GTK_LABEL (pb->state), text);
    return G_SOURCE_CONTINUE;
}

static void
on_preview_toggled (GtkToggleButton *button, gpointer data)
{
    PreviewBox *pb = data;
    ldm_preview_set_active (pb->preview, gtk_toggle_button_get_active (button));
    refresh_state (pb);
}

static void
on_box_destroy (GtkWidget *widget, gpointer data)
{
    (void) widget;
    PreviewBox *pb = data;
    if (pb->timer)
        g_source_remove (pb->timer);
    g_free (pb);
}

GtkWidget *
ldm_preview_box_new (LdmPreview *preview)
{
    PreviewBox *pb = g_new0 (PreviewBox, 1);
    pb->preview = preview;
    GtkWidget *box = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 12);
    GtkWidget *toggle = gtk_check_button_new_with_mnemonic (_("Pre_view"));
    gtk_widget_set_name (toggle, "preview");
    gtk_widget_set_tooltip_text (toggle, _("Inpaint the selection quickly (few steps, small "
                                           "size) into a temporary layer on the canvas while "
                                           "the dialog is open; it is removed when the dialog "
                                           "closes"));
    gtk_toggle_button_set_active (GTK_TOGGLE_BUTTON (toggle), ldm_preview_active (preview));
    pb->state = gtk_label_new (NULL);
    gtk_widget_set_name (pb->state, "preview-state");
    gtk_label_set_xalign (GTK_LABEL (pb->state), 0.0f);
    gtk_label_set_ellipsize (GTK_LABEL (pb->state), PANGO_ELLIPSIZE_END);
    gtk_box_pack_start (GTK_BOX (box), toggle, FALSE, FALSE, 0);
    gtk_box_pack_start (GTK_BOX (box), pb->state, TRUE, TRUE, 0);
    g_signal_connect (toggle, "toggled", G_CALLBACK (on_preview_toggled), pb);
    g_signal_connect (box, "destroy", G_CALLBACK (on_box_destroy), pb);
    refresh_state (pb);
    pb->timer = g_timeout_add (100, refresh_state, pb);
    gtk_widget_show_all (box);
    return box;
}

GtkWidget *
ldm_model_note_new (void)
{
    GtkWidget *note = gtk_label_new (NULL);
    gtk_widget_set_name (note, "model-note");
    gtk_label_set_xalign (GTK_LABEL (note), 0.0f);
    gtk_label_set_line_wrap (GTK_LABEL (note), TRUE);
    gtk_label_set_max_width_chars (GTK_LABEL (note), 60);
    gtk_widget_set_no_show_all (note, TRUE);
    return note;
}

void
ldm_model_note_set (GtkWidget *note, gboolean file_chosen, const char *builtin_path,
                    const char *message)
{
    g_autofree char *text = ldm_model_note_text (file_chosen, builtin_path, message);
    gtk_label_set_text (GTK_LABEL (note), text);
    gtk_widget_set_visible (note, *text != '\0');
}
