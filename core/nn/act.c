/* act.c: activation buffers and the cheap layers between convolutions. See act.h. */
#include "nn/act.h"

#include "alloc.h"

#include <math.h>
#include <omp.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

/* Below this many floats a loop runs on one thread: waking the others costs more. */
#define PARALLEL_MIN (1 << 16)

/* A run allocates and frees its activations by the dozen per layer. glibc maps blocks of
 * 128 KB and more afresh (a page fault on every first touch) and hands the top of its heap
 * back once 128 KB of it are free, so each layer's buffers were new pages: 15 % of a brush
 * region's encode (128x128 crop, 78 -> 66 ms) and 8 % of its decode (ldm bench, 2026-12-03).
 * Blocks up to 32 MB (the largest glibc allows below mmap) now come from the heap, and up to
 * 256 MB of freed heap is kept for the next ones. Process-wide, set once; a run's peak RSS is
 * the same, the kept memory is given back when the process ends. Called when an engine is
 * made (dnn_new), before its first activation. */
void
act_keep_freed_memory (void)
{
#ifdef __GLIBC__
    static gsize once = 0;
    if (g_once_init_enter (&once)) {
        mallopt (M_MMAP_THRESHOLD, 32 << 20);
        mallopt (M_TRIM_THRESHOLD, 256 << 20);
        mallopt (M_TOP_PAD, 64 << 20);
        g_once_init_leave (&once, 1);
    }
#endif
}

gboolean
act_alloc (Act *a, int n, int h, int w, int c, GError **error)
{
    size_t count = (size_t) n * h * w * c;
    *a = (Act) { .n = n, .h = h, .w = w, .c = c };
    a->data = ldm_try_alloc_floats (count, NULL, NULL); /* zeroed tail for oneDNN */
    if (!a->data) {
        g_autofree char *what = g_strdup_printf ("a %dx%dx%dx%d activation", n, h, w, c);
        return ldm_no_memory (error, what, count, sizeof (float));
    }
    return TRUE;
}

void
act_free (Act *a)
{
    g_free (a->data);
    a->data = NULL;
}

void
act_concat_channels (const Act *a, const Act *b, Act *out)
{
    size_t pixels = (size_t) a->n * a->h * a->w;
#pragma omp parallel for schedule(static) if (act_numel (out) >= PARALLEL_MIN)
    for (size_t p = 0; p < pixels; p++) {
        memcpy (out->data + p * out->c, a->data + p * a->c, a->c * sizeof (float));
        memcpy (out->data + p * out->c + a->c, b->data + p * b->c, b->c * sizeof (float));
    }
}

void
act_upsample_nearest2x (const Act *in, Act *out)
{
    int c = in->c;
#pragma omp parallel for collapse(2) schedule(static) if (act_numel (out) >= PARALLEL_MIN)
    for (int n = 0; n < out->n; n++)
        for (int y = 0; y < out->h; y++) {
            const float *src_row = in->data + (((size_t) n * in->h + y / 2) * in->w) * c;
            float *dst_row = out->data + (((size_t) n * out->h + y) * out->w) * c;
            for (int x = 0; x < out->w; x++)
                memcpy (dst_row + (size_t) x * c, src_row + (size_t) (x / 2) * c,
                        c * sizeof (float));
        }
}

void
act_avgpool2x2 (const Act *in, Act *out)
{
    int c = in->c;
#pragma omp parallel for collapse(2) schedule(static) if (act_numel (in) >= PARALLEL_MIN)
    for (int n = 0; n < out->n; n++)
        for (int y = 0; y < out->h; y++) {
            const float *r0 = in->data + (((size_t) n * in->h + 2 * y) * in->w) * c;
            const float *r1 = r0 + (size_t) in->w * c;
            float *dst = out->data + (((size_t) n * out->h + y) * out->w) * c;
            for (int x = 0; x < out->w; x++)
                for (int k = 0; k < c; k++) {
                    size_t i = (size_t) 2 * x * c + k;
                    /* Same summation order as PyTorch's avg_pool2d: row by row. */
                    dst[(size_t) x * c + k] = ((r0[i] + r0[i + c]) + (r1[i] + r1[i + c])) * 0.25f;
                }
        }
}

/* Per-channel sums over the pixels of one image, in double: sum of x, or of (x - mean[c])^2
 * when mean is given. Each thread sums a fixed share (static schedule) into its own slot and
 * the slots are added in thread order, so the result is the same on every run. */
static void
channel_sums (const float *x, size_t pixels, int c, const double *mean, double *sums,
              int max_threads, double *slots, float *runs)
{
    bool parallel = pixels * c >= PARALLEL_MIN;
    int threads = parallel ? max_threads : 1;
    memset (slots, 0, (size_t) threads * c * sizeof (double));
#pragma omp parallel num_threads (threads) if (parallel)
    {
        double *local = slots + (size_t) omp_get_thread_num () * c;
        float *run = runs + (size_t) omp_get_thread_num () * c;
        /* float partial sums over runs of 64 pixels, flushed to double: fast, and nothing a
         * float32 reference keeps is lost */
#pragma omp for schedule(static)
        for (size_t p0 = 0; p0 < pixels; p0 += 64) {
            size_t p1 = MIN (pixels, p0 + 64);
            memset (run, 0, c * sizeof (float));
            for (size_t p = p0; p < p1; p++) {
                const float *v = x + p * c;
                if (mean) {
                    for (int k = 0; k < c; k++) {
                        float d = v[k] - (float) mean[k];
                        run[k] += d * d;
                    }
                } else {
                    for (int k = 0; k < c; k++)
                        run[k] += v[k];
                }
            }
            for (int k = 0; k < c; k++)
                local[k] += run[k];
        }
    }
    memset (sums, 0, c * sizeof (double));
    for (int t = 0; t < threads; t++)
        for (int k = 0; k < c; k++)
            sums[k] += slots[(size_t) t * c + k];
}

/* exp(x) for the SiLU: range reduction to x = n ln 2 + r, |r| <= ln 2 / 2, and a degree-6
 * Taylor/minimax polynomial; relative error about 2e-7. Written so the compiler vectorises it
 * (no calls, no branches). */
static inline float
exp_approx (float x)
{
    /* clamped so that NaN becomes -87 too: (int32_t) n below must never see a NaN (UB) */
    x = x > -87.0f ? x : -87.0f;
    x = x < 88.0f ? x : 88.0f;
    /* n = round(x / ln 2) with the 1.5 * 2^23 trick (SSE2 has no round instruction) */
    float n = (x * 1.44269504089f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f + n * 2.12194440e-4f; /* ln 2 in two parts */
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t) n + 127) << 23; /* 2^n */
    float scale;
    memcpy (&scale, &bits, sizeof scale);
    return p * scale;
}

gboolean
act_group_norm (const Act *in, Act *out, const float *gamma, const float *beta, int groups,
                float eps, bool silu, GError **error)
{
    int c = in->c, per_group = c / groups;
    size_t pixels = (size_t) in->h * in->w;
    /* per channel: sums, mean | scale, shift; per thread and channel: slots | runs */
    int threads = omp_get_max_threads ();
    size_t per_thread = (size_t) threads * c;
    double *doubles = ldm_try_alloc_n (2 * (size_t) c + per_thread, sizeof (double),
                                       "a group normalisation", error);
    float *floats = doubles ? ldm_try_alloc_n (2 * (size_t) c + per_thread, sizeof (float),
                                               "a group normalisation", error)
                            : NULL;
    if (!floats) {
        g_free (doubles);
        return FALSE;
    }
    double *sums = doubles, *mean = doubles + c, *slots = doubles + 2 * c;
    float *scale = floats, *shift = floats + c, *runs = floats + 2 * c;
    for (int n = 0; n < in->n; n++) {
        const float *x = in->data + (size_t) n * pixels * c;
        float *y = out->data + (size_t) n * pixels * c;
        double count = (double) pixels * per_group;
        channel_sums (x, pixels, c, NULL, sums, threads, slots, runs);
        for (int g = 0; g < groups; g++) {
            double m = 0;
            for (int k = g * per_group; k < (g + 1) * per_group; k++)
                m += sums[k];
            for (int k = g * per_group; k < (g + 1) * per_group; k++)
                mean[k] = m / count;
        }
        channel_sums (x, pixels, c, mean, sums, threads, slots, runs);
        for (int g = 0; g < groups; g++) {
            double v = 0;
            for (int k = g * per_group; k < (g + 1) * per_group; k++)
                v += sums[k];
            double rstd = 1.0 / sqrt (v / count + eps);
            for (int k = g * per_group; k < (g + 1) * per_group; k++) {
                scale[k] = (float) (rstd * gamma[k]);
                shift[k] = (float) (beta[k] - mean[k] * rstd * gamma[k]);
            }
        }
#pragma omp parallel for schedule(static) if (pixels * c >= PARALLEL_MIN)
        for (size_t p = 0; p < pixels; p++) {
            float *row = y + p * c;
            const float *src = x + p * c;
            if (silu) {
#pragma omp simd
                for (int k = 0; k < c; k++) {
                    float v = src[k] * scale[k] + shift[k];
                    row[k] = v / (1.0f + exp_approx (-v));
                }
            } else {
#pragma omp simd
                for (int k = 0; k < c; k++)
                    row[k] = src[k] * scale[k] + shift[k];
            }
        }
    }
    g_free (doubles);
    g_free (floats);
    return TRUE;
}

gboolean
act_match_region_mean (Act *x, const Act *ref, const uint8_t *region, const float *near,
                       int valid_w, int valid_h)
{
    int w = x->w, c = x->c;
    double sum[2 * LDM_MATCH_MAX_CHANNELS] = { 0 };
    if (c > LDM_MATCH_MAX_CHANNELS)
        return FALSE;
    size_t count = 0;
    for (int y = 0; y < MIN (valid_h, x->h); y++)
        for (int xx = 0; xx < MIN (valid_w, w); xx++) {
            size_t p = (size_t) y * w + xx;
            if (region[p] || near[p] <= 0.0f)
                continue;
            count++;
            for (int k = 0; k < c; k++) {
                sum[k] += ref->data[p * c + k];
                sum[c + k] += x->data[p * c + k];
            }
        }
    if (count == 0)
        return TRUE;
    float shift[LDM_MATCH_MAX_CHANNELS];
    for (int k = 0; k < c; k++)
        shift[k] = (float) ((sum[k] - sum[c + k]) / (double) count);
    for (size_t p = 0; p < (size_t) w * x->h; p++)
        if (region[p])
            for (int k = 0; k < c; k++)
                x->data[p * c + k] += shift[k];
    return TRUE;
}
