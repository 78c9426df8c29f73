/* test_brush: the brush's engine (brush.c) through the public API: each mode's settings, a
 * job's crop and inner rectangle, the pixels a job gives back, and the worker thread with the
 * ldm-inpaint-tiny fixture: its result equals ldm_inpaint_region's on the same crop bit for
 * bit, an erased region gives all-transparent pixels without running the model, a cancel
 * stops a running job, and a model that cannot be loaded fails the jobs with its error. */
#include "ldm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static char *
tiny_model (void)
{
    const char *shared = g_getenv ("LDM_SHARED_DIR");
    char *path = g_build_filename (shared ? shared : "../shared", "fixtures", "ldm-inpaint-tiny",
                                   "model.ckpt", NULL);
    if (!g_file_test (path, G_FILE_TEST_EXISTS)) {
        g_test_skip ("no ldm-inpaint-tiny fixture");
        g_clear_pointer (&path, g_free);
    }
    return path;
}

static void
test_modes (void)
{
    LdmSampleParams s, want_s;
    LdmRegionParams r, want_r;
    ldm_brush_params_init (LDM_BRUSH_QUALITY, &s, &r);
    ldm_sample_params_init (&want_s, LDM_TASK_INPAINT);
    ldm_region_params_init (&want_r);
    /* the default memory limit follows MemAvailable, which moves between two reads */
    g_assert_cmpuint (s.memory_limit, >, 0);
    g_assert_cmpuint (want_s.memory_limit, >, 0);
    s.memory_limit = want_s.memory_limit;
    g_assert_cmpmem (&s, sizeof s, &want_s, sizeof want_s);
    g_assert_cmpmem (&r, sizeof r, &want_r, sizeof want_r);
    ldm_brush_params_init (LDM_BRUSH_FAST, &s, &r);
    g_assert_cmpint (s.steps, ==, 4);
    g_assert_cmpint (r.context_padding, ==, 24);
    g_assert_cmpint (r.working_size, ==, 256);
    g_assert_cmpint (r.mask_grow, ==, 4);
    g_assert_cmpint (r.mask_blur, ==, 4);
    g_assert_true (s.keep_known && s.match_colors && s.color_fix);
    LdmBrushMode m;
    g_assert_true (ldm_brush_mode_parse ("fast", &m) && m == LDM_BRUSH_FAST);
    g_assert_true (ldm_brush_mode_parse ("quality", &m) && m == LDM_BRUSH_QUALITY);
    g_assert_false (ldm_brush_mode_parse ("Fast", &m));
    g_assert_false (ldm_brush_mode_parse (NULL, &m));
    g_assert_cmpstr (ldm_brush_mode_name (LDM_BRUSH_FAST), ==, "fast");
}

static void
test_job_rects (void)
{
    LdmSampleParams s;
    LdmRegionParams r;
    ldm_brush_params_init (LDM_BRUSH_FAST, &s, &r); /* grow 4 + blur 4, context 24 */
    g_autoptr (GError) error = NULL;
    /* box 50,20 10x6 on 200 x 100: inner = box +- 8 = 42,12 26x22; crop = box +- 32 =
     * 18,0 (clamped from -12) .. 92,58, 74 x 58, its sides then rounded up to 96 and 64
     * (LDM_BRUSH_CROP_BUCKET) about its middle: x 18 - 11 = 7, y 0 - 3 shifted back to 0 */
    g_autoptr (LdmBrushJob) job = ldm_brush_job_new ((LdmRect) { 50, 20, 10, 6 }, 200, 100, &s,
                                                     &r, &error);
    g_assert_no_error (error);
    g_assert_cmpint (job->inner.x, ==, 42);
    g_assert_cmpint (job->inner.y, ==, 12);
    g_assert_cmpint (job->inner.width, ==, 26);
    g_assert_cmpint (job->inner.height, ==, 22);
    LdmRect want;
    g_assert_true (ldm_stroke_region_crop (&r, job->box, 200, 100, &want));
    g_assert_cmpint (want.x, ==, 18);
    g_assert_cmpint (want.width, ==, 74);
    g_assert_cmpint (job->crop.x, ==, 7);
    g_assert_cmpint (job->crop.y, ==, 0);
    g_assert_cmpint (job->crop.width, ==, 96);
    g_assert_cmpint (job->crop.height, ==, 64);
    /* at the right edge: shifted back onto the layer, still holding the unrounded crop
     * (box 180,90 10x6: 148,58 .. 200,100, 52 x 42 -> 64 x 64 at 136,36) */
    g_autoptr (LdmBrushJob) edge = ldm_brush_job_new ((LdmRect) { 180, 90, 10, 6 }, 200, 100,
                                                      &s, &r, &error);
    g_assert_no_error (error);
    g_assert_cmpint (edge->crop.x, ==, 136);
    g_assert_cmpint (edge->crop.y, ==, 36);
    g_assert_cmpint (edge->crop.width, ==, 64);
    g_assert_cmpint (edge->crop.height, ==, 64);
    /* the same size, elsewhere: the same crop size (the model's shapes repeat) */
    g_autoptr (LdmBrushJob) other = ldm_brush_job_new ((LdmRect) { 100, 40, 10, 6 }, 200, 100,
                                                       &s, &r, &error);
    g_assert_no_error (error);
    g_assert_cmpint (other->crop.width, ==, 96);
    g_assert_cmpint (other->crop.height, ==, 96);
    /* a layer smaller than the bucket: the whole layer */
    g_autoptr (LdmBrushJob) small = ldm_brush_job_new ((LdmRect) { 10, 10, 10, 6 }, 50, 40, &s,
                                                       &r, &error);
    g_assert_no_error (error);
    g_assert_cmpint (small->crop.x, ==, 0);
    g_assert_cmpint (small->crop.width, ==, 50);
    g_assert_cmpint (small->crop.height, ==, 40);
    /* larger than the working size (256): scaled down anyway, the crop not rounded */
    g_autoptr (LdmBrushJob) big = ldm_brush_job_new ((LdmRect) { 100, 100, 250, 6 }, 1000,
                                                     1000, &s, &r, &error);
    g_assert_no_error (error);
    g_assert_true (ldm_stroke_region_crop (&r, big->box, 1000, 1000, &want));
    g_assert_cmpmem (&big->crop, sizeof want, &want, sizeof want);
    /* just under it: rounded up to the working size, no more */
    g_autoptr (LdmBrushJob) under = ldm_brush_job_new ((LdmRect) { 100, 100, 186, 6 }, 1000,
                                                       1000, &s, &r, &error);
    g_assert_no_error (error);
    g_assert_cmpint (under->crop.width, ==, 256); /* 186 + 64 = 250 */
    g_assert_cmpint (under->crop.height, ==, 96);
    g_assert_nonnull (job->selection);
    g_assert_cmpint (job->sample.steps, ==, 4);
    /* at the corner: the inner rectangle is clamped too (0,0 .. 3+8, 2+8) */
    g_autoptr (LdmBrushJob) corner = ldm_brush_job_new ((LdmRect) { 0, 0, 3, 2 }, 200, 100, &s,
                                                        &r, &error);
    g_assert_no_error (error);
    g_assert_cmpint (corner->inner.x, ==, 0);
    g_assert_cmpint (corner->inner.width, ==, 11);
    g_assert_cmpint (corner->inner.height, ==, 10);
    /* off the layer */
    LdmBrushJob *off = ldm_brush_job_new ((LdmRect) { 300, 0, 3, 2 }, 200, 100, &s, &r, &error);
    g_assert_null (off);
    g_assert_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT);
}

static void
test_region_pixels (void)
{
    /* a 4 x 3 crop at 10,20; inner = its 2 x 2 middle-right: 12,21 .. 14,23 */
    uint8_t px[12 * 4], fill[12] = { 0 };
    float mask[12];
    for (int i = 0; i < 12; i++) {
        px[i * 4] = (uint8_t) (i * 10);
        px[i * 4 + 1] = (uint8_t) (i * 10 + 1);
        px[i * 4 + 2] = (uint8_t) (i * 10 + 2);
        px[i * 4 + 3] = 200;
        mask[i] = i / 11.0f;
    }
    fill[6] = fill[11] = 255; /* (2,1) and (3,2) */
    LdmRegionResult res = { .image = { 4, 3, 4, px }, .fill = fill, .layer_mask = mask };
    uint8_t out[4 * 4];
    g_autoptr (GError) error = NULL;
    g_assert_true (ldm_brush_region_pixels (&res, (LdmRect) { 10, 20, 4, 3 },
                                            (LdmRect) { 12, 21, 2, 2 }, out, &error));
    /* (2,1) = crop index 6: its colour, alpha 200 x 6/11 = 109.09 -> 109 */
    const uint8_t want[16] = { 60, 61, 62, 109, 0, 0, 0, 0, 0, 0, 0, 0, 110, 111, 112, 200 };
    g_assert_cmpmem (out, sizeof out, want, sizeof want);
    g_assert_false (ldm_brush_region_pixels (&res, (LdmRect) { 10, 20, 4, 3 },
                                             (LdmRect) { 12, 21, 3, 2 }, out, &error));
    g_assert_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT);
}

enum { LW = 96, LH = 80 };

/* A layer's RGBA pixels: smooth gradients with a bright square (the "object"). */
static void
fill_layer (uint8_t *rgba)
{
    for (int y = 0; y < LH; y++)
        for (int x = 0; x < LW; x++) {
            uint8_t *p = rgba + (y * LW + x) * 4;
            gboolean object = x >= 40 && x < 52 && y >= 30 && y < 42;
            p[0] = object ? 250 : (uint8_t) (x * 2);
            p[1] = object ? 250 : (uint8_t) (y * 3);
            p[2] = object ? 240 : 90;
            p[3] = 255;
        }
}

/* A job for a stroke covering the square (coverage 255 on it, 128 on a 1-pixel rim). */
static LdmBrushJob *
square_job (const uint8_t *layer, int steps, uint64_t id)
{
    LdmSampleParams s;
    LdmRegionParams r;
    ldm_brush_params_init (LDM_BRUSH_FAST, &s, &r);
    s.steps = steps;
    s.seed = 5;
    g_autoptr (GError) error = NULL;
    LdmBrushJob *job = ldm_brush_job_new ((LdmRect) { 39, 29, 14, 14 }, LW, LH, &s, &r, &error);
    g_assert_no_error (error);
    job->id = id;
    LdmRect c = job->crop;
    job->image = (LdmImage) { c.width, c.height, 4, g_malloc ((size_t) c.width * c.height * 4) };
    for (int y = 0; y < c.height; y++) {
        memcpy (job->image.pixels + (size_t) y * c.width * 4,
                layer + ((size_t) (c.y + y) * LW + c.x) * 4, (size_t) c.width * 4);
        for (int x = 0; x < c.width; x++) {
            int lx = c.x + x, ly = c.y + y;
            gboolean in = lx >= 40 && lx < 52 && ly >= 30 && ly < 42;
            gboolean rim = lx >= 39 && lx < 53 && ly >= 29 && ly < 43;
            job->selection[y * c.width + x] = in ? 1.0f : rim ? 128 / 255.0f : 0.0f;
        }
    }
    return job;
}

/* What the worker cases start from: the fixture, the layer and a worker on the fixture. */
typedef struct {
    char           *model_path;
    uint8_t         layer[LW * LH * 4];
    LdmBrushWorker *worker;
} WorkerCase;

/* FALSE (and the case skipped) without the fixture. */
static gboolean
worker_case_init (WorkerCase *w)
{
    w->model_path = tiny_model ();
    if (!w->model_path)
        return FALSE;
    fill_layer (w->layer);
    g_autoptr (GError) error = NULL;
    w->worker = ldm_brush_worker_new (w->model_path, &error);
    g_assert_no_error (error);
    return TRUE;
}

static void
worker_case_clear (WorkerCase *w)
{
    g_clear_pointer (&w->worker, ldm_brush_worker_free);
    g_clear_pointer (&w->model_path, g_free);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (WorkerCase, worker_case_clear)

static void
test_worker_result (void)
{
    g_auto (WorkerCase) w = { 0 };
    if (!worker_case_init (&w))
        return;
    ldm_brush_worker_submit (w.worker, square_job (w.layer, 3, 1));
    g_autoptr (LdmBrushJob) job = ldm_brush_worker_take (w.worker, -1);
    g_assert_no_error (job->error);
    g_assert_true (job->ok && !job->empty);
    g_assert_cmpuint (job->id, ==, 1);
    g_assert_true (job->started <= job->first_step && job->first_step <= job->last_step
                   && job->last_step <= job->finished);

    /* the same crop through ldm_inpaint_region in this thread, with its own engine */
    g_autoptr (GError) error = NULL;
    g_autoptr (LdmModel) model = ldm_model_load (w.model_path, &error);
    g_assert_no_error (error);
    g_autoptr (LdmEngine) engine = ldm_engine_new (model, LDM_PRECISION_AUTO, &error);
    g_assert_no_error (error);
    g_autoptr (LdmBrushJob) again = square_job (w.layer, 3, 2);
    LdmRegionResult want;
    g_assert_true (ldm_inpaint_region (engine, &again->image, again->selection, &again->region,
                                       &again->sample, &want, &error));
    g_autofree uint8_t *want_px = g_malloc ((size_t) job->inner.width * job->inner.height * 4);
    g_assert_true (ldm_brush_region_pixels (&want, again->crop, again->inner, want_px, &error));
    g_assert_cmpmem (job->rgba, (size_t) job->inner.width * job->inner.height * 4, want_px,
                     (size_t) job->inner.width * job->inner.height * 4);
    /* and by hand: opaque generated pixels on the square, transparent at the inner corners
     * (beyond grow + blur of the stroke) */
    int iw = job->inner.width;
    int sx = 45 - job->inner.x, sy = 35 - job->inner.y;
    g_assert_cmpint (job->rgba[(sy * iw + sx) * 4 + 3], ==, 255);
    g_assert_cmpint (job->rgba[3], ==, 0);
    size_t changed = 0;
    for (int y = 30; y < 42; y++)
        for (int x = 40; x < 52; x++) {
            const uint8_t *p = job->rgba + ((y - job->inner.y) * iw + (x - job->inner.x)) * 4;
            changed += p[0] != 250 || p[1] != 250 || p[2] != 240;
        }
    g_assert_cmpuint (changed, >, 100); /* of 144: the object is painted over */
    ldm_region_result_clear (&want);

    LdmBrushStatus st;
    g_autofree char *message = NULL;
    ldm_brush_worker_status (w.worker, &st, &message);
    g_assert_true (st.loaded && !st.failed && st.busy == 0);
    g_assert_null (message);
}

/* The built-in inpainting model (data/models), or NULL and the case skipped. */
static char *
builtin_model (void)
{
    const char *source = g_getenv ("LDM_SOURCE_DIR");
    char *path = g_build_filename (source ? source : "..", "data", "models",
                                   "ldm-inpaint-builtin.safetensors", NULL);
    if (!g_file_test (path, G_FILE_TEST_EXISTS)) {
        g_test_skip ("no built-in inpainting model");
        g_clear_pointer (&path, g_free);
    }
    return path;
}

/* Kept pixels of the inner-rectangle decode (a job's sample.keep) may differ from a full
 * decode's by this much (0..255): the decoder's GroupNorm statistics come from the window, and
 * its reach is cut LDM_KEEP_MARGIN latent cells out. Measured (Zen 3): max 21, mean 1.34
 * here; on the photo (tools/bench-brush's 11 strokes) max 38, mean 0.96. */
#define KEEP_MAX_DIFF  48
#define KEEP_MEAN_DIFF 2.5

/* A brush job's inner-rectangle decode against the full decode of the same crop, with the
 * built-in model at the fast settings: the same fill and layer mask, the kept pixels within
 * KEEP_MAX_DIFF (mean KEEP_MEAN_DIFF), and every pixel outside the fill the input's, bit for bit,
 * in both. */
static void
test_keep_decode (void)
{
    g_autofree char *path = builtin_model ();
    if (!path)
        return;
    g_autoptr (GError) error = NULL;
    g_autoptr (LdmModel) model = ldm_model_load (path, &error);
    g_assert_no_error (error);
    g_autoptr (LdmEngine) engine = ldm_engine_new (model, LDM_PRECISION_AUTO, &error);
    g_assert_no_error (error);
    enum { S = 128 };
    LdmSampleParams s;
    LdmRegionParams r;
    ldm_brush_params_init (LDM_BRUSH_FAST, &s, &r);
    s.steps = 3;
    s.seed = 3;
    /* a 64-pixel stroke in the middle: crop 0,0 128 x 128, inner 24,24 80 x 80 */
    g_autoptr (LdmBrushJob) job = ldm_brush_job_new ((LdmRect) { 32, 32, 64, 64 }, S, S, &s, &r,
                                                     &error);
    g_assert_no_error (error);
    LdmRect c = job->crop, in = job->inner;
    g_assert_cmpint (c.width, ==, S);
    g_assert_cmpint (c.height, ==, S);
    g_assert_cmpint (job->sample.keep.x, ==, 24);
    g_assert_cmpint (job->sample.keep.width, ==, 80);
    /* texture (waves and hashed noise) with a bright disk where the stroke is */
    job->image = (LdmImage) { S, S, 4, g_malloc (S * S * 4) };
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            uint8_t *p = job->image.pixels + (y * S + x) * 4;
            guint32 hash = (guint32) (x * 73856093u) ^ (guint32) (y * 19349663u);
            float noise = (float) ((hash >> 7) % 33) - 16.0f;
            gboolean disk = (x - 64) * (x - 64) + (y - 64) * (y - 64) < 24 * 24;
            for (int k = 0; k < 3; k++) {
                float v = 120.0f + 50.0f * sinf (x * 0.31f + y * 0.07f + k)
                          + 30.0f * cosf (y * 0.23f - k) + noise;
                p[k] = disk ? 250 : (uint8_t) CLAMP (v, 0.0f, 255.0f);
            }
            p[3] = 255;
            job->selection[y * S + x] = x >= 32 && x < 96 && y >= 32 && y < 96;
        }
    LdmRegionResult kept, full;
    g_assert_true (ldm_inpaint_region (engine, &job->image, job->selection, &job->region,
                                       &job->sample, &kept, &error));
    LdmSampleParams all = job->sample;
    all.keep = (LdmRect) { 0 };
    g_assert_true (ldm_inpaint_region (engine, &job->image, job->selection, &job->region, &all,
                                       &full, &error));
    g_assert_no_error (error);
    g_assert_cmpmem (kept.fill, S * S, full.fill, S * S);
    g_assert_cmpmem (kept.layer_mask, S * S * sizeof (float), full.layer_mask,
                     S * S * sizeof (float));
    int max_diff = 0, filled = 0;
    double sum = 0;
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            int i = y * S + x;
            const uint8_t *a = kept.image.pixels + i * 4, *b = full.image.pixels + i * 4;
            const uint8_t *o = job->image.pixels + i * 4;
            if (!full.fill[i]) { /* the input's, bit for bit, in both */
                g_assert_cmpmem (a, 4, o, 4);
                g_assert_cmpmem (b, 4, o, 4);
                continue;
            }
            /* every filled pixel is kept: the fill lies inside the inner rectangle */
            g_assert_true (x >= in.x && x < in.x + in.width && y >= in.y
                           && y < in.y + in.height);
            filled++;
            for (int k = 0; k < 3; k++) {
                int d = abs (a[k] - b[k]);
                max_diff = MAX (max_diff, d);
                sum += d;
            }
        }
    double mean = sum / (3.0 * filled);
    g_test_message ("kept pixels against a full decode: max %d, mean %.3f (%d pixels)",
                    max_diff, mean, filled);
    g_assert_cmpint (filled, >, 64 * 64);
    g_assert_cmpint (max_diff, <=, KEEP_MAX_DIFF);
    g_assert_cmpfloat (mean, <=, KEEP_MEAN_DIFF);
    g_assert_cmpfloat (mean, >, 0.0); /* the window was decoded, not the whole crop */
    ldm_region_result_clear (&kept);
    ldm_region_result_clear (&full);
}

static void
test_worker_empty (void)
{
    g_auto (WorkerCase) w = { 0 };
    if (!worker_case_init (&w))
        return;
    LdmBrushJob *job = square_job (w.layer, 3, 7);
    /* the stroke erased to below half coverage: nothing to fill */
    for (int i = 0; i < job->crop.width * job->crop.height; i++)
        job->selection[i] *= 0.49f;
    ldm_brush_worker_submit (w.worker, job);
    g_autoptr (LdmBrushJob) done = ldm_brush_worker_take (w.worker, -1);
    g_assert_true (done->ok && done->empty);
    g_assert_cmpint (done->first_step, ==, 0); /* the model did not run */
    size_t n = (size_t) done->inner.width * done->inner.height * 4, nonzero = 0;
    for (size_t i = 0; i < n; i++)
        nonzero += done->rgba[i] != 0;
    g_assert_cmpuint (nonzero, ==, 0);
}

static void
test_worker_cancel (void)
{
    g_auto (WorkerCase) w = { 0 };
    if (!worker_case_init (&w))
        return;
    ldm_brush_worker_submit (w.worker, square_job (w.layer, 1000, 1));
    ldm_brush_worker_submit (w.worker, square_job (w.layer, 3, 2));
    LdmBrushStatus st = { 0 };
    for (int i = 0; i < 60000 && st.step < 1; i++) { /* wait for the first step (60 s max) */
        g_usleep (1000);
        ldm_brush_worker_status (w.worker, &st, NULL);
    }
    g_assert_cmpint (st.step, >=, 1);
    g_assert_cmpint (st.steps, >, 900); /* DDIM: 999 distinct timesteps of 1000 */
    g_assert_cmpuint (st.running_id, ==, 1);
    g_assert_cmpint (st.busy, ==, 2);
    ldm_brush_worker_cancel (w.worker);
    /* the queued one comes back first (cancelled at once), then the running one */
    g_autoptr (LdmBrushJob) queued = ldm_brush_worker_take (w.worker, -1);
    g_autoptr (LdmBrushJob) running = ldm_brush_worker_take (w.worker, -1);
    g_assert_cmpuint (queued->id, ==, 2);
    g_assert_error (queued->error, LDM_ERROR, LDM_ERROR_CANCELLED);
    g_assert_cmpuint (running->id, ==, 1);
    g_assert_error (running->error, LDM_ERROR, LDM_ERROR_CANCELLED);
    g_assert_false (running->ok);
    /* the worker goes on with the next job */
    ldm_brush_worker_submit (w.worker, square_job (w.layer, 2, 3));
    g_autoptr (LdmBrushJob) next = ldm_brush_worker_take (w.worker, -1);
    g_assert_no_error (next->error);
    g_assert_true (next->ok);
    /* nothing more: take with a timeout returns NULL */
    g_assert_null (ldm_brush_worker_take (w.worker, 1000));
    /* freeing a worker in the middle of a long job stops it */
    ldm_brush_worker_submit (w.worker, square_job (w.layer, 100000, 4));
    gint64 t0 = g_get_monotonic_time ();
    ldm_brush_worker_free (g_steal_pointer (&w.worker));
    g_assert_cmpint (g_get_monotonic_time () - t0, <, 60 * G_USEC_PER_SEC);
}

static void
test_worker_bad_model (void)
{
    g_autoptr (GError) error = NULL;
    g_assert_null (ldm_brush_worker_new ("", &error));
    g_assert_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT);
    g_clear_error (&error);
    g_autoptr (LdmBrushWorker) worker = ldm_brush_worker_new ("/nonexistent/model.ckpt", &error);
    g_assert_no_error (error);
    uint8_t layer[LW * LH * 4];
    fill_layer (layer);
    ldm_brush_worker_submit (worker, square_job (layer, 2, 9));
    g_autoptr (LdmBrushJob) job = ldm_brush_worker_take (worker, -1);
    g_assert_false (job->ok);
    g_assert_error (job->error, LDM_ERROR, LDM_ERROR_IO);
    g_assert_nonnull (strstr (job->error->message, "/nonexistent/model.ckpt"));
    LdmBrushStatus st;
    g_autofree char *message = NULL;
    ldm_brush_worker_status (worker, &st, &message);
    g_assert_true (st.failed && !st.loaded);
    g_assert_nonnull (message);
}

int
main (int argc, char **argv)
{
    g_test_init (&argc, &argv, NULL);
    g_test_add_func ("/brush/modes", test_modes);
    g_test_add_func ("/brush/job-rects", test_job_rects);
    g_test_add_func ("/brush/region-pixels", test_region_pixels);
    g_test_add_func ("/brush/keep-decode", test_keep_decode);
    g_test_add_func ("/brush/worker-result", test_worker_result);
    g_test_add_func ("/brush/worker-empty", test_worker_empty);
    g_test_add_func ("/brush/worker-cancel", test_worker_cancel);
    g_test_add_func ("/brush/worker-bad-model", test_worker_bad_model);
    return g_test_run ();
}
