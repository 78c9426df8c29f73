/* brush.c: the inpainting brush's engine without GIMP: each mode's settings, the job of one
 * region (crop, inner rectangle, the pixels it gives back) and a worker thread that loads the
 * model once and runs the jobs one at a time, so the model stays loaded while the brush is in
 * use. The caller (ui/) reads the layers, cuts the jobs and writes the results.
 */
#include "ldm.h"

#include "alloc.h"
#include "strokes.h"

#include <math.h>
#include <string.h>

const char *
ldm_brush_mode_name (LdmBrushMode mode)
{
    return mode == LDM_BRUSH_FAST ? "fast" : "quality";
}

gboolean
ldm_brush_mode_parse (const char *name, LdmBrushMode *mode)
{
    if (g_strcmp0 (name, "fast") == 0)
        *mode = LDM_BRUSH_FAST;
    else if (g_strcmp0 (name, "quality") == 0)
        *mode = LDM_BRUSH_QUALITY;
    else
        return FALSE;
    return TRUE;
}

void
ldm_brush_params_init (LdmBrushMode mode, LdmSampleParams *sample, LdmRegionParams *region)
{
    ldm_sample_params_init (sample, LDM_TASK_INPAINT);
    ldm_region_params_init (region);
    if (mode == LDM_BRUSH_FAST) {
        /* a 64-pixel stroke: a 128-pixel crop instead of 216, 4 steps instead of 25 (8, 6
         * and 4 steps gave fills that looked the same side by side; context 32 took a third
         * longer than 24; 6 steps 65 ms more than 4, 2026-12-03) */
        sample->steps = 4;
        region->context_padding = 24;
        region->working_size = 256;
        region->mask_blur = 4;
    }
}

/* R grown by d on every side, clamped to the layer. */
static LdmRect
grown_within (LdmRect r, int d, int width, int height)
{
    int x0 = MAX (r.x - d, 0), y0 = MAX (r.y - d, 0);
    int x1 = MIN (r.x + r.width + d, width), y1 = MIN (r.y + r.height + d, height);
    return (LdmRect) { x0, y0, x1 - x0, y1 - y0 };
}

/* One side of a crop (x, len on a layer side of `limit` pixels) rounded up to a multiple of
 * LDM_BRUSH_CROP_BUCKET, at most `cap` (the working size: a crop that fits it is not scaled)
 * and the layer: grown about its middle, shifted back onto the layer at an edge, so it still
 * holds the side it had. */
static void
bucket_side (int *x, int *len, int limit, int cap)
{
    int want = (*len + LDM_BRUSH_CROP_BUCKET - 1) / LDM_BRUSH_CROP_BUCKET * LDM_BRUSH_CROP_BUCKET;
    if (cap > 0 && want > cap)
        want = MAX (*len, cap);
    want = MIN (want, limit);
    int x0 = CLAMP (*x - (want - *len) / 2, 0, limit - want);
    *x = x0;
    *len = want;
}

LdmBrushJob *
ldm_brush_job_new (LdmRect box, int layer_width, int layer_height,
                   const LdmSampleParams *sample, const LdmRegionParams *region, GError **error)
{
    LdmRect crop;
    if (!ldm_stroke_region_crop (region, box, layer_width, layer_height, &crop)) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "the region %d,%d %dx%d is not on the %d x %d layer", box.x, box.y,
                     box.width, box.height, layer_width, layer_height);
        return NULL;
    }
    /* Regions of about the same size get the same crop size, so the model's shapes repeat:
     * oneDNN makes its primitives once per shape, and a new shape cost about 100 ms (the
     * first U-Net step's): 2 of the 10 timed crops of tools/bench-brush (encode 168 and 178
     * ms instead of 61-84). Crops the working size scales down keep their size. */
    if (region->working_size <= 0 || MAX (crop.width, crop.height) <= region->working_size) {
        bucket_side (&crop.x, &crop.width, layer_width, region->working_size);
        bucket_side (&crop.y, &crop.height, layer_height, region->working_size);
    }
    float *selection = ldm_try_alloc0_n ((size_t) crop.width * crop.height, sizeof (float),
                                         "the brush region's selection", error);
    if (!selection)
        return NULL;
    LdmBrushJob *job = g_new0 (LdmBrushJob, 1);
    job->box = box;
    job->crop = crop;
    job->inner = grown_within (box, region->mask_grow + region->mask_blur, layer_width,
                               layer_height);
    job->selection = selection;
    job->sample = *sample;
    job->sample.progress = NULL;
    job->sample.progress_data = NULL;
    /* only the inner rectangle is written: only it (and the decoder's reach) is decoded */
    job->sample.keep = (LdmRect) { job->inner.x - crop.x, job->inner.y - crop.y,
                                   job->inner.width, job->inner.height };
    job->region = *region;
    return job;
}

void
ldm_brush_job_free (LdmBrushJob *job)
{
    if (!job)
        return;
    ldm_image_clear (&job->image);
    g_free (job->selection);
    g_free (job->rgba);
    g_clear_error (&job->error);
    g_free (job);
}

gboolean
ldm_brush_region_pixels (const LdmRegionResult *result, LdmRect crop, LdmRect inner,
                         uint8_t *rgba, GError **error)
{
    const LdmImage *im = &result->image;
    if (im->width != crop.width || im->height != crop.height || im->channels < 3
        || inner.x < crop.x || inner.y < crop.y || inner.width < 0 || inner.height < 0
        || inner.x + inner.width > crop.x + crop.width
        || inner.y + inner.height > crop.y + crop.height) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "the inner rectangle must lie inside the inpainted crop");
        return FALSE;
    }
    int c = im->channels;
    for (int y = 0; y < inner.height; y++) {
        for (int x = 0; x < inner.width; x++) {
            size_t i = (size_t) (inner.y - crop.y + y) * crop.width + (inner.x - crop.x + x);
            uint8_t *o = rgba + ((size_t) y * inner.width + x) * 4;
            if (!result->fill[i]) {
                memset (o, 0, 4);
                continue;
            }
            const uint8_t *p = im->pixels + i * c;
            float alpha = c == 4 ? p[3] : 255.0f;
            memcpy (o, p, 3);
            o[3] = (uint8_t) lroundf (CLAMP (result->layer_mask[i], 0.0f, 1.0f) * alpha);
        }
    }
    return TRUE;
}

/* ------------------------------------------------------------------ worker */

struct LdmBrushWorker {
    GThread     *thread;
    char        *model_path;
    GMutex       lock;           /* guards everything below */
    GCond        changed;        /* a job queued or finished, or quit */
    GQueue       queued, finished;
    LdmBrushJob *running;
    gint         cancel_running; /* atomic: the running job stops at its next step */
    gboolean     quit, loaded;
    GError      *load_error;
    int          step, steps;
};

static gboolean
worker_progress (void *data, int step, int steps)
{
    LdmBrushWorker *w = data;
    gint64 now = g_get_monotonic_time ();
    g_mutex_lock (&w->lock);
    w->step = step;
    w->steps = steps;
    if (w->running) {
        if (!w->running->first_step)
            w->running->first_step = now;
        w->running->last_step = now;
    }
    g_mutex_unlock (&w->lock);
    return !g_atomic_int_get (&w->cancel_running);
}

/* Under the lock: a job waits, or the worker is asked to quit. */
static gboolean
worker_wanted (LdmBrushWorker *w)
{
    return w->quit || !g_queue_is_empty (&w->queued);
}

static gboolean
warm_up_progress (void *data, int step, int steps)
{
    (void) step;
    (void) steps;
    LdmBrushWorker *w = data;
    g_mutex_lock (&w->lock);
    gboolean go_on = !worker_wanted (w);
    g_mutex_unlock (&w->lock);
    return go_on;
}

/* A fast-mode region of a 64-pixel stroke on a grey picture, one step, its result dropped:
 * oneDNN makes its primitives for the shapes such a region runs at (the U-Net at 32x32, the
 * encoder at 128x128, the decoder at the kept window), which the user's first stroke paid
 * otherwise (0.2-0.9 s more than the next ones). It stops at its first step when a job comes
 * (or the worker quits); its failure is no one's business: the real jobs report their own. */
static void
warm_up (LdmBrushWorker *w, LdmEngine *engine)
{
    const int side = 128, stroke = 64;
    LdmSampleParams sample;
    LdmRegionParams region;
    ldm_brush_params_init (LDM_BRUSH_FAST, &sample, &region);
    sample.steps = 1;
    LdmRect box = { (side - stroke) / 2, (side - stroke) / 2, stroke, stroke };
    LdmBrushJob *job = ldm_brush_job_new (box, side, side, &sample, &region, NULL);
    if (!job)
        return;
    size_t n = (size_t) job->crop.width * job->crop.height;
    job->image = (LdmImage) { job->crop.width, job->crop.height, 4, g_try_malloc (n * 4) };
    if (job->image.pixels) {
        memset (job->image.pixels, 128, n * 4);
        for (int y = box.y; y < box.y + box.height; y++)
            for (int x = box.x; x < box.x + box.width; x++)
                job->selection[(size_t) (y - job->crop.y) * job->crop.width + x - job->crop.x]
                    = 1.0f;
        job->sample.progress = warm_up_progress;
        job->sample.progress_data = w;
        LdmRegionResult result;
        if (ldm_inpaint_region (engine, &job->image, job->selection, &job->region, &job->sample,
                                &result, NULL))
            ldm_region_result_clear (&result);
    }
    ldm_brush_job_free (job);
}

/* The engine for an inpainting model, or NULL and the error. */
static LdmEngine *
load_engine (const char *path, GError **error)
{
    g_autoptr (LdmModel) model = ldm_model_load (path, error);
    if (!model)
        return NULL;
    LdmModelKind kind = ldm_model_kind (model);
    if (kind != LDM_MODEL_LDM_INPAINT && kind != LDM_MODEL_SD_INPAINT && kind != LDM_MODEL_SD) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_UNSUPPORTED,
                     "%s is not an inpainting model (it is: %s)", path,
                     ldm_model_kind_name (kind));
        return NULL;
    }
    return ldm_engine_new (model, LDM_PRECISION_AUTO, error); /* the brush wants speed */
}

static void
run_job (LdmBrushWorker *w, LdmEngine *engine, LdmBrushJob *job)
{
    size_t n_inner = (size_t) job->inner.width * job->inner.height;
    job->rgba = ldm_try_alloc0_n (n_inner, 4, "the brush region's pixels", &job->error);
    if (!job->rgba)
        return;
    size_t n = (size_t) job->crop.width * job->crop.height;
    gboolean any = FALSE;
    for (size_t i = 0; i < n && !any; i++)
        any = job->selection[i] >= 0.5f; /* what ldm_inpaint_region's fill needs */
    if (!any) { /* every stroke erased here: the original shows again */
        job->empty = job->ok = TRUE;
        return;
    }
    LdmSampleParams sample = job->sample;
    sample.progress = worker_progress;
    sample.progress_data = w;
    LdmRegionResult result;
    if (ldm_inpaint_region (engine, &job->image, job->selection, &job->region, &sample, &result,
                            &job->error)) {
        job->model_width = result.model_width;
        job->model_height = result.model_height;
        job->ok = ldm_brush_region_pixels (&result, job->crop, job->inner, job->rgba,
                                           &job->error);
        ldm_region_result_clear (&result);
    }
}

static gpointer
worker_thread (gpointer data)
{
    LdmBrushWorker *w = data;
    GError *error = NULL;
    g_autoptr (LdmEngine) engine = load_engine (w->model_path, &error);
    g_mutex_lock (&w->lock);
    w->loaded = engine != NULL;
    w->load_error = error;
    g_mutex_unlock (&w->lock);
    if (engine)
        warm_up (w, engine);
    g_mutex_lock (&w->lock);
    for (;;) {
        while (!w->quit && g_queue_is_empty (&w->queued))
            g_cond_wait (&w->changed, &w->lock);
        if (w->quit)
            break;
        LdmBrushJob *job = g_queue_pop_head (&w->queued);
        w->running = job;
        w->step = w->steps = 0;
        g_atomic_int_set (&w->cancel_running, 0);
        g_mutex_unlock (&w->lock);

        job->started = g_get_monotonic_time ();
        if (!engine)
            job->error = g_error_copy (w->load_error);
        else
            run_job (w, engine, job);
        job->finished = g_get_monotonic_time ();

        g_mutex_lock (&w->lock);
        if (!job->ok && !job->error) /* cannot happen; a job never finishes without a reason */
            job->error = g_error_new_literal (LDM_ERROR, LDM_ERROR_ARGUMENT, "not run");
        w->running = NULL;
        w->step = w->steps = 0;
        g_queue_push_tail (&w->finished, job);
        g_cond_broadcast (&w->changed);
    }
    g_mutex_unlock (&w->lock);
    return NULL;
}

LdmBrushWorker *
ldm_brush_worker_new (const char *model_path, GError **error)
{
    if (!model_path || !*model_path) {
        g_set_error_literal (error, LDM_ERROR, LDM_ERROR_ARGUMENT, "no model file given");
        return NULL;
    }
    LdmBrushWorker *w = g_new0 (LdmBrushWorker, 1);
    w->model_path = g_strdup (model_path);
    g_mutex_init (&w->lock);
    g_cond_init (&w->changed);
    g_queue_init (&w->queued);
    g_queue_init (&w->finished);
    w->thread = g_thread_try_new ("ldm-brush", worker_thread, w, error);
    if (!w->thread) {
        g_free (w->model_path);
        g_mutex_clear (&w->lock);
        g_cond_clear (&w->changed);
        g_free (w);
        return NULL;
    }
    return w;
}

/* Under the lock: queued jobs finish as cancelled. */
static void
cancel_queued (LdmBrushWorker *w)
{
    LdmBrushJob *job;
    while ((job = g_queue_pop_head (&w->queued))) {
        job->error = g_error_new_literal (LDM_ERROR, LDM_ERROR_CANCELLED, "cancelled");
        g_queue_push_tail (&w->finished, job);
    }
    g_cond_broadcast (&w->changed);
}

void
ldm_brush_worker_cancel (LdmBrushWorker *w)
{
    g_mutex_lock (&w->lock);
    cancel_queued (w);
    if (w->running)
        g_atomic_int_set (&w->cancel_running, 1);
    g_mutex_unlock (&w->lock);
}

void
ldm_brush_worker_free (LdmBrushWorker *w)
{
    if (!w)
        return;
    g_mutex_lock (&w->lock);
    cancel_queued (w);
    g_atomic_int_set (&w->cancel_running, 1);
    w->quit = TRUE;
    g_cond_broadcast (&w->changed);
    g_mutex_unlock (&w->lock);
    /* a model still loading is not interruptible: the join waits for it */
    g_thread_join (w->thread);
    g_queue_clear_full (&w->finished, (GDestroyNotify) ldm_brush_job_free);
    g_clear_error (&w->load_error);
    g_mutex_clear (&w->lock);
    g_cond_clear (&w->changed);
    g_free (w->model_path);
    g_free (w);
}

void
ldm_brush_worker_submit (LdmBrushWorker *w, LdmBrushJob *job)
{
    g_mutex_lock (&w->lock);
    g_queue_push_tail (&w->queued, job);
    g_cond_broadcast (&w->changed);
    g_mutex_unlock (&w->lock);
}

LdmBrushJob *
ldm_brush_worker_take (LdmBrushWorker *w, gint64 timeout_us)
{
    gint64 end = timeout_us > 0 ? g_get_monotonic_time () + timeout_us : 0;
    g_mutex_lock (&w->lock);
    while (g_queue_is_empty (&w->finished) && timeout_us != 0) {
        if (timeout_us < 0)
            g_cond_wait (&w->changed, &w->lock);
        else if (!g_cond_wait_until (&w->changed, &w->lock, end))
            break;
    }
    LdmBrushJob *job = g_queue_pop_head (&w->finished);
    g_mutex_unlock (&w->lock);
    return job;
}

void
ldm_brush_worker_status (LdmBrushWorker *w, LdmBrushStatus *s, char **message)
{
    g_mutex_lock (&w->lock);
    *s = (LdmBrushStatus) {
        .loaded = w->loaded,
        .failed = w->load_error != NULL,
        .busy = (int) g_queue_get_length (&w->queued) + (w->running != NULL),
        .running_id = w->running ? w->running->id : 0,
        .step = w->step,
        .steps = w->steps,
    };
    if (message)
        *message = w->load_error ? g_strdup (w->load_error->message) : NULL;
    g_mutex_unlock (&w->lock);
}
