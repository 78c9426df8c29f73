/* ldm-brush-session.c: see ldm-brush.h. GLib only: no GTK, no libgimp.
 *
 * One timer looks at the strokes layer every LDM_BRUSH_POLL_MS (longer for a layer whose
 * reading takes long) and takes a change once the
 * layer has stayed the same for LDM_BRUSH_SETTLE looks; core's tracker turns it into regions,
 * which join a queue (ldm_stroke_queue_add: a growing region keeps its turn). One region at a
 * time goes to core's worker; painting over the running one cancels it and queues it again
 * with the new strokes (it restarts). A second, faster timer takes finished regions and
 * writes them.
 *
 * $LDM_BRUSH_TIMINGS=FILE: a line per written region is appended to FILE, its time split into
 * look (the look at the strokes layer that took its strokes: the layer read, compared and
 * given to the tracker), crop (job made, original pixels and selection read; original: the
 * original pixels' read alone, a part of crop), wait (until the worker took it: the model
 * loading, for the first region), encode (the worker's start to its first
 * step, less one step), steps, decode (last step to the end: decoding, composite), write (the
 * result layer) and total (from the crop's start to the written result), in ms, and the
 * watching's constants (poll, settle, take: LDM_BRUSH_*, see ldm-brush.h), the box's place
 * (box_at x,y) and the wall clock when the write returned (written_at, s since 1970:
 * comparable with another process's clock); for tools/bench-brush, which adds the waits those
 * imply, or (--live) measures them from the end of each stroke.
 */
#include "ldm-brush.h"

#include <glib/gi18n-lib.h>
#include <stdio.h>
#include <string.h>

#define QUEUE_MAX  64

struct LdmBrushSession {
    const LdmBrushHost *host;
    void               *host_data;
    int                 width, height;

    LdmStrokeTracker   *tracker;
    uint8_t            *seen;    /* what the tracker was last given */
    uint8_t            *frame;   /* the last look at the layer */
    uint8_t            *look;    /* this look */
    int                 stable;  /* looks since the layer last changed */

    LdmRect             queue[QUEUE_MAX];
    int                 queued;

    LdmBrushWorker     *worker;
    gboolean            running;
    LdmRect             running_box;
    gboolean            restart;  /* the running region was cancelled to be run again */

    LdmBrushMode        mode;
    int                 steps;    /* 0: the mode's */
    uint64_t            seed;
    int                 regions;  /* jobs made: the running or last one's number */
    int                 written;
    gboolean            have_last;
    LdmRect             last_box;
    uint64_t            last_seed;

    LdmBrushState       state;
    char               *message;
    FILE               *timings;  /* $LDM_BRUSH_TIMINGS */
    gint64              crop_start, crop_end; /* of the running region */
    gint64              look_us;  /* the last look that took changes */
    gint64              read_us;  /* the last look's read of the strokes layer */
    gint64              original_us; /* the running region's read of the original pixels */
    guint               poll_timer, take_timer, ticks;
};

static void
set_failed (LdmBrushSession *s, const char *message)
{
    s->state = LDM_BRUSH_STATE_FAILED;
    g_free (s->message);
    s->message = g_strdup (message);
}

LdmBrushSession *
ldm_brush_session_new (const LdmBrushHost *host, void *host_data, int width, int height,
                       const char *model_path, uint64_t seed, LdmBrushMode mode, GError **error)
{
    g_autoptr (LdmStrokeTracker) tracker = ldm_stroke_tracker_new (width, height,
                                                                   LDM_STROKE_MERGE_DISTANCE,
                                                                   error);
    if (!tracker)
        return NULL;
    size_t n = (size_t) width * height;
    g_autofree uint8_t *seen = g_try_malloc0 (n), *frame = g_try_malloc0 (n),
                       *look = g_try_malloc0 (n);
    if (!seen || !frame || !look) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_NO_MEMORY,
                     _("Not enough memory for the strokes layer."));
        return NULL;
    }
    LdmBrushWorker *worker = ldm_brush_worker_new (model_path, error);
    if (!worker)
        return NULL;
    LdmBrushSession *s = g_new0 (LdmBrushSession, 1);
    s->host = host;
    s->host_data = host_data;
    s->width = width;
    s->height = height;
    s->tracker = g_steal_pointer (&tracker);
    s->seen = g_steal_pointer (&seen);
    s->frame = g_steal_pointer (&frame);
    s->look = g_steal_pointer (&look);
    s->worker = worker;
    s->mode = mode;
    s->seed = seed;
    s->state = LDM_BRUSH_STATE_IDLE;
    const char *timings = g_getenv ("LDM_BRUSH_TIMINGS");
    if (timings && *timings)
        s->timings = fopen (timings, "a");
    return s;
}

static void
stop_timers (LdmBrushSession *s)
{
    g_clear_handle_id (&s->poll_timer, g_source_remove);
    g_clear_handle_id (&s->take_timer, g_source_remove);
}

void
ldm_brush_session_free (LdmBrushSession *s)
{
    if (!s)
        return;
    stop_timers (s);
    ldm_brush_worker_free (s->worker);
    ldm_stroke_tracker_free (s->tracker);
    g_free (s->seen);
    g_free (s->frame);
    g_free (s->look);
    g_free (s->message);
    if (s->timings)
        fclose (s->timings);
    g_free (s);
}

gboolean
ldm_brush_session_set_seen (LdmBrushSession *s, const uint8_t *alpha, GError **error)
{
    if (!ldm_stroke_tracker_reset (s->tracker, alpha, s->width, error))
        return FALSE;
    size_t n = (size_t) s->width * s->height;
    memcpy (s->seen, alpha, n);
    memcpy (s->frame, alpha, n);
    return TRUE;
}

const uint8_t *
ldm_brush_session_seen (LdmBrushSession *s)
{
    return s->seen;
}

/* The changes of ALPHA since the last time, into the queue. */
static gboolean
take_changes (LdmBrushSession *s, const uint8_t *alpha, GError **error)
{
    LdmStrokeRegion regions[QUEUE_MAX];
    int n = 0;
    if (!ldm_stroke_tracker_update (s->tracker, alpha, s->width, regions, QUEUE_MAX, &n, error))
        return FALSE;
    memcpy (s->seen, alpha, (size_t) s->width * s->height);
    for (int i = 0; i < n; i++) {
        LdmRect box = regions[i].box;
        /* new paint near the running region: it restarts with the new strokes */
        if (s->running && !s->restart) {
            LdmRect a = s->running_box;
            gboolean near = box.x <= a.x + a.width + LDM_STROKE_MERGE_DISTANCE
                            && a.x <= box.x + box.width + LDM_STROKE_MERGE_DISTANCE
                            && box.y <= a.y + a.height + LDM_STROKE_MERGE_DISTANCE
                            && a.y <= box.y + box.height + LDM_STROKE_MERGE_DISTANCE;
            if (near) {
                s->restart = TRUE;
                ldm_brush_worker_cancel (s->worker);
                /* first in the queue: it was running */
                memmove (s->queue + 1, s->queue, sizeof (LdmRect) * MIN (s->queued,
                                                                          QUEUE_MAX - 1));
                s->queue[0] = a;
                s->queued = MIN (s->queued + 1, QUEUE_MAX);
            }
        }
        if (ldm_stroke_queue_add (s->queue, &s->queued, QUEUE_MAX, box,
                                  LDM_STROKE_MERGE_DISTANCE, error) < 0)
            return FALSE;
    }
    return TRUE;
}

/* The next queued region to the worker. */
static gboolean
submit_next (LdmBrushSession *s, GError **error)
{
    if (s->running || s->queued == 0)
        return TRUE;
    s->crop_start = g_get_monotonic_time ();
    LdmRect box = s->queue[0];
    memmove (s->queue, s->queue + 1, sizeof (LdmRect) * (size_t) (s->queued - 1));
    s->queued--;
    LdmSampleParams sample;
    LdmRegionParams region;
    ldm_brush_params_init (s->mode, &sample, &region);
    if (s->steps > 0)
        sample.steps = s->steps;
    sample.seed = s->seed;
    g_autoptr (LdmBrushJob) job = ldm_brush_job_new (box, s->width, s->height, &sample, &region,
                                                     error);
    if (!job)
        return FALSE;
    gint64 read_start = g_get_monotonic_time ();
    if (!s->host->read_original (s->host_data, job->crop, &job->image, error))
        return FALSE;
    s->original_us = g_get_monotonic_time () - read_start;
    if (!ldm_stroke_tracker_selection (s->tracker, job->crop, job->selection, error))
        return FALSE;
    job->id = (uint64_t) ++s->regions;
    s->crop_end = g_get_monotonic_time ();
    s->running = TRUE;
    s->restart = FALSE;
    s->running_box = box;
    s->state = LDM_BRUSH_STATE_COMPUTING;
    ldm_brush_worker_submit (s->worker, g_steal_pointer (&job));
    return TRUE;
}

static void
log_timings (LdmBrushSession *s, const LdmBrushJob *job, gint64 write_start, gint64 write_end,
             gint64 written_at)
{
    int steps = job->sample.steps;
    double ms = 1e-3, step = 0, encode = 0, all_steps = 0, decode;
    if (job->first_step) {
        step = steps > 1 ? (double) (job->last_step - job->first_step) / (steps - 1) : 0;
        encode = (double) (job->first_step - job->started) - step;
        all_steps = (double) (job->last_step - job->first_step) + step;
        decode = (double) (job->finished - job->last_step);
    } else { /* nothing to fill: no model run */
        decode = (double) (job->finished - job->started);
    }
    fprintf (s->timings,
             "region %d look %.1f crop %.1f original %.1f wait %.1f encode %.1f steps %.1f "
             "decode %.1f write %.1f total %.1f n_steps %d box %dx%d box_at %d,%d "
             "crop_size %dx%d model %dx%d empty %d poll %d settle %d take %d "
             "written_at %.6f\n",
             (int) job->id, (double) s->look_us * ms, (double) (s->crop_end - s->crop_start) * ms,
             (double) s->original_us * ms,
             (double) (job->started - s->crop_end) * ms, encode * ms,
             all_steps * ms, decode * ms, (double) (write_end - write_start) * ms,
             (double) (write_end - s->crop_start) * ms, steps, job->box.width, job->box.height,
             job->box.x, job->box.y, job->crop.width, job->crop.height, job->model_width,
             job->model_height, job->empty, LDM_BRUSH_POLL_MS, LDM_BRUSH_SETTLE,
             LDM_BRUSH_TAKE_MS, (double) written_at * 1e-6);
    fflush (s->timings);
}

/* A finished job: written when it succeeded. FALSE + error when it failed (not a cancel). */
static gboolean
finish_job (LdmBrushSession *s, LdmBrushJob *job, GError **error)
{
    s->running = FALSE;
    if (!job->ok) {
        if (g_error_matches (job->error, LDM_ERROR, LDM_ERROR_CANCELLED)) {
            /* a failure (the layers gone) stays what the window shows */
            if (!s->queued && s->state != LDM_BRUSH_STATE_FAILED)
                s->state = s->written ? LDM_BRUSH_STATE_DONE : LDM_BRUSH_STATE_WAITING;
            return TRUE;
        }
        g_propagate_error (error, g_steal_pointer (&job->error));
        return FALSE;
    }
    gint64 write_start = g_get_monotonic_time ();
    if (!s->host->write_result (s->host_data, job->inner, job->rgba, error))
        return FALSE;
    if (s->timings)
        log_timings (s, job, write_start, g_get_monotonic_time (), g_get_real_time ());
    s->written++;
    s->have_last = TRUE;
    s->last_box = job->box;
    s->last_seed = job->sample.seed;
    if (!s->queued)
        s->state = LDM_BRUSH_STATE_DONE;
    return TRUE;
}

static gboolean
take_tick (gpointer data)
{
    LdmBrushSession *s = data;
    LdmBrushJob *job = ldm_brush_worker_take (s->worker, 0);
    if (!job)
        return G_SOURCE_CONTINUE;
    GError *error = NULL;
    if (!finish_job (s, job, &error) || !submit_next (s, &error)) {
        set_failed (s, error->message);
        g_error_free (error);
    }
    ldm_brush_job_free (job);
    return G_SOURCE_CONTINUE;
}

/* One look at the strokes layer; FALSE when the layer is gone (watching stops). */
static gboolean
look (LdmBrushSession *s)
{
    GError *error = NULL;
    gint64 start = g_get_monotonic_time ();
    size_t n = (size_t) s->width * s->height;
    gboolean read = s->host->read_strokes (s->host_data, s->look, &error);
    s->read_us = g_get_monotonic_time () - start;
    if (!read) {
        /* the strokes layer is gone (undone, deleted): nothing more to watch */
        set_failed (s, error->message);
        g_error_free (error);
        ldm_brush_worker_cancel (s->worker);
        s->queued = 0;
        return FALSE;
    }
    if (memcmp (s->look, s->frame, n) != 0) {
        uint8_t *t = s->frame;
        s->frame = s->look;
        s->look = t;
        s->stable = 0;
        return TRUE;
    }
    if (++s->stable == LDM_BRUSH_SETTLE && memcmp (s->frame, s->seen, n) != 0) {
        gboolean ok = take_changes (s, s->frame, &error);
        s->look_us = g_get_monotonic_time () - start;
        if (!ok || !submit_next (s, &error)) {
            set_failed (s, error->message);
            g_error_free (error);
        }
    }
    return TRUE;
}

/* A look, then the next one after LDM_BRUSH_POLL_MS, or four times as long as this look's
 * read of the layer took when that is longer (a large layer: GIMP's main thread spends at
 * most a fifth of its time sending it). The read only: a look that started a region also read
 * its original pixels, up to a second for a session's first region, and waiting four times
 * that delayed the next stroke's fill by seconds. */
static gboolean
poll_tick (gpointer data)
{
    LdmBrushSession *s = data;
    s->poll_timer = 0;
    if (look (s)) {
        gint64 ms = s->read_us / 1000;
        s->poll_timer = g_timeout_add ((guint) MAX (LDM_BRUSH_POLL_MS, 4 * ms), poll_tick, s);
    }
    return G_SOURCE_REMOVE;
}

void
ldm_brush_session_start (LdmBrushSession *s)
{
    if (s->poll_timer)
        return;
    s->state = LDM_BRUSH_STATE_WAITING;
    s->poll_timer = g_timeout_add (LDM_BRUSH_POLL_MS, poll_tick, s);
    s->take_timer = g_timeout_add (LDM_BRUSH_TAKE_MS, take_tick, s);
}

gboolean
ldm_brush_session_process (LdmBrushSession *s, int *regions, GError **error)
{
    int written = s->written;
    if (regions)
        *regions = 0;
    gint64 start = g_get_monotonic_time ();
    if (!s->host->read_strokes (s->host_data, s->look, error)
        || !take_changes (s, s->look, error))
        return FALSE;
    s->look_us = g_get_monotonic_time () - start;
    memcpy (s->frame, s->look, (size_t) s->width * s->height);
    while (s->queued || s->running) {
        if (!submit_next (s, error))
            return FALSE;
        g_autoptr (LdmBrushJob) job = ldm_brush_worker_take (s->worker, -1);
        if (!finish_job (s, job, error))
            return FALSE;
    }
    if (regions)
        *regions = s->written - written;
    return TRUE;
}

void
ldm_brush_session_set_steps (LdmBrushSession *s, int steps)
{
    s->steps = MAX (steps, 0);
}

void
ldm_brush_session_set_mode (LdmBrushSession *s, LdmBrushMode mode)
{
    s->mode = mode;
}

LdmBrushMode
ldm_brush_session_mode (LdmBrushSession *s)
{
    return s->mode;
}

void
ldm_brush_session_cancel (LdmBrushSession *s)
{
    s->queued = 0;
    s->restart = FALSE;
    ldm_brush_worker_cancel (s->worker);
    if (s->state != LDM_BRUSH_STATE_IDLE)
        s->state = s->written ? LDM_BRUSH_STATE_DONE : LDM_BRUSH_STATE_WAITING;
}

gboolean
ldm_brush_session_reroll (LdmBrushSession *s)
{
    if (!s->have_last)
        return FALSE;
    s->seed = s->last_seed + 1;
    /* first in line; a queued region it touches merges into it */
    GError *error = NULL;
    LdmRect keep[QUEUE_MAX];
    int n = s->queued;
    memcpy (keep, s->queue, sizeof (LdmRect) * (size_t) n);
    s->queue[0] = s->last_box;
    s->queued = 1;
    for (int i = 0; i < n; i++)
        ldm_stroke_queue_add (s->queue, &s->queued, QUEUE_MAX, keep[i],
                              LDM_STROKE_MERGE_DISTANCE, &error);
    g_clear_error (&error); /* the boxes came from the queue: they are not empty */
    if (!submit_next (s, &error)) {
        set_failed (s, error->message);
        g_error_free (error);
    }
    return TRUE;
}

void
ldm_brush_session_show_strokes (LdmBrushSession *s, gboolean visible)
{
    s->host->show_strokes (s->host_data, visible);
}

static gboolean
finish (LdmBrushSession *s, gboolean apply, GError **error)
{
    stop_timers (s);
    s->queued = 0;
    ldm_brush_worker_cancel (s->worker);
    s->state = LDM_BRUSH_STATE_IDLE;
    return apply ? s->host->apply (s->host_data, error) : s->host->discard (s->host_data, error);
}

gboolean
ldm_brush_session_apply (LdmBrushSession *s, GError **error)
{
    return finish (s, TRUE, error);
}

gboolean
ldm_brush_session_discard (LdmBrushSession *s, GError **error)
{
    return finish (s, FALSE, error);
}

LdmBrushState
ldm_brush_session_state (LdmBrushSession *s, int *region, int *queued, int *step, int *steps)
{
    LdmBrushStatus st;
    ldm_brush_worker_status (s->worker, &st, NULL);
    if (region)
        *region = s->regions;
    if (queued)
        *queued = s->queued;
    if (step)
        *step = s->running ? st.step : 0;
    if (steps)
        *steps = s->running ? st.steps : 0;
    return s->state;
}

const char *
ldm_brush_session_message (LdmBrushSession *s)
{
    return s->state == LDM_BRUSH_STATE_FAILED ? s->message : NULL;
}

int
ldm_brush_session_written (LdmBrushSession *s)
{
    return s->written;
}

uint64_t
ldm_brush_session_seed (LdmBrushSession *s)
{
    return s->last_seed;
}

char *
ldm_brush_state_text (LdmBrushSession *s)
{
    int region, queued, step, steps;
    LdmBrushState state = ldm_brush_session_state (s, &region, &queued, &step, &steps);
    LdmBrushStatus st;
    ldm_brush_worker_status (s->worker, &st, NULL);
    switch (state) {
    case LDM_BRUSH_STATE_IDLE:
        return g_strdup (_("Idle"));
    case LDM_BRUSH_STATE_WAITING:
        return g_strdup (_("Waiting for strokes: paint over what should go"));
    case LDM_BRUSH_STATE_COMPUTING:
        if (!st.loaded)
            /* TRANSLATORS: %d is the number of the region */
            return g_strdup_printf (_("Computing region %d: loading the model"), region);
        if (steps > 0)
            /* TRANSLATORS: "Computing region 2: step 3 of 8" */
            return g_strdup_printf (_("Computing region %d: step %d of %d"), region, step,
                                    steps);
        return g_strdup_printf (_("Computing region %d"), region);
    case LDM_BRUSH_STATE_DONE:
        /* TRANSLATORS: %d is how many regions were inpainted in this session */
        return g_strdup_printf (_("Done (regions inpainted: %d)"), s->written);
    case LDM_BRUSH_STATE_FAILED:
    default:
        return g_strdup_printf (_("Failed: %s"), s->message ? s->message : "?");
    }
}
