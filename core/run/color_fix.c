/* color_fix.c: colour-true super-resolution (see color_fix.h).
 *
 * A diffusion upscaler draws plausible detail but lets the colours drift (the autoencoder's
 * colour error, the sampler's low-frequency noise). The input already holds the right answer
 * for everything below its own resolution: the mean of each f x f block of the output should
 * be the input pixel. Back-projection moves the output towards that by a smooth (bilinear)
 * spread of the residual, so the correction has no block edges and the model's detail above
 * the input's resolution is left alone.
 *
 * Inpainting has no input inside the hole, but a classical fill (fill.c) is a good guess of its
 * low frequencies, and a small model's worst errors are there (patches of wrong colour): the
 * decoded fill keeps its fine detail and takes its smooth part from the guess. */
#include "run/color_fix.h"
#include "run/fill.h"
#include "run/image_ops.h"

#include "alloc.h"

#include <math.h>
#include <string.h>

/* residual (h x w x c) = lr - the f x f area mean of hr, over the valid part. */
static void
block_residual (const Act *hr, const Act *lr, int f, int w, int h, float *residual)
{
    int c = lr->c;
    float inv = 1.0f / (float) (f * f);
#pragma omp parallel for
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float sum[8] = { 0 };
            for (int dy = 0; dy < f; dy++) {
                const float *row = hr->data + ((size_t) (y * f + dy) * hr->w + (size_t) x * f) * c;
                for (int dx = 0; dx < f; dx++)
                    for (int k = 0; k < c; k++)
                        sum[k] += row[dx * c + k];
            }
            const float *target = lr->data + ((size_t) y * lr->w + x) * c;
            float *r = residual + ((size_t) y * w + x) * c;
            for (int k = 0; k < c; k++)
                r[k] = target[k] - sum[k] * inv;
        }
}

/* out (c floats) = the bilinear sample of src (h x w x c, row stride `stride` pixels) at
 * pixel (xx, yy) of its f-times enlargement, pixel centres aligned, edges held. */
static void
bilinear_at (const float *src, int w, int h, int stride, int c, int f, int xx, int yy,
             float *out)
{
    float sy = ((float) yy + 0.5f) / (float) f - 0.5f, sx = ((float) xx + 0.5f) / (float) f - 0.5f;
    int y0 = (int) floorf (sy), x0 = (int) floorf (sx);
    float ty = sy - (float) y0, tx = sx - (float) x0;
    int ya = CLAMP (y0, 0, h - 1), yb = CLAMP (y0 + 1, 0, h - 1);
    int xa = CLAMP (x0, 0, w - 1), xb = CLAMP (x0 + 1, 0, w - 1);
    const float *p00 = src + ((size_t) ya * stride + xa) * c;
    const float *p01 = src + ((size_t) ya * stride + xb) * c;
    const float *p10 = src + ((size_t) yb * stride + xa) * c;
    const float *p11 = src + ((size_t) yb * stride + xb) * c;
    for (int k = 0; k < c; k++)
        out[k] = (1 - ty) * ((1 - tx) * p00[k] + tx * p01[k])
                 + ty * ((1 - tx) * p10[k] + tx * p11[k]);
}

/* hr += bilinear upsampling of residual (h x w x c) by f; then clipped to [-1, 1]. */
static void
add_upsampled (Act *hr, const float *residual, int f, int w, int h)
{
    int c = hr->c;
#pragma omp parallel for
    for (int yy = 0; yy < h * f; yy++)
        for (int xx = 0; xx < w * f; xx++) {
            float r[8];
            bilinear_at (residual, w, h, w, c, f, xx, yy, r);
            float *q = hr->data + ((size_t) yy * hr->w + xx) * c;
            for (int k = 0; k < c; k++) {
                float v = q[k] + r[k];
                /* held in the displayable range, so the next round corrects what clipping
                 * would undo (alternating projections) */
                q[k] = v < -1.0f ? -1.0f : (v > 1.0f ? 1.0f : v);
            }
        }
}

gboolean
act_upsample_bilinear (const Act *src, int f, Act *dst, GError **error)
{
    int c = src->c;
    g_return_val_if_fail (src->n == 1 && c <= 8 && f >= 1, FALSE);
    if (!act_alloc (dst, 1, src->h * f, src->w * f, c, error))
        return FALSE;
#pragma omp parallel for
    for (int yy = 0; yy < dst->h; yy++)
        for (int xx = 0; xx < dst->w; xx++)
            bilinear_at (src->data, src->w, src->h, src->w, c, f, xx, yy,
                         dst->data + ((size_t) yy * dst->w + xx) * c);
    return TRUE;
}

gboolean
color_fix_backproject (Act *hr, const Act *lr, int f, int valid_w, int valid_h, int rounds,
                       GError **error)
{
    int w = MIN (valid_w, lr->w), h = MIN (valid_h, lr->h);
    g_return_val_if_fail (hr->c == lr->c && lr->c <= 8 && f >= 1, FALSE);
    w = MIN (w, hr->w / f);
    h = MIN (h, hr->h / f);
    if (w <= 0 || h <= 0)
        return TRUE;
    float *residual = ldm_try_alloc_n ((size_t) w * h * lr->c, sizeof (float),
                                       "the colour fix", error);
    if (!residual)
        return FALSE;
    for (int i = 0; i < rounds; i++) {
        block_residual (hr, lr, f, w, h, residual);
        add_upsampled (hr, residual, f, w, h);
    }
    g_free (residual);
    return TRUE;
}

gboolean
color_fix_fill (Act *dec, const Act *guide, const uint8_t *fill, int stride, float sigma,
                GError **error)
{
    int w = dec->w, h = dec->h, c = dec->c;
    g_return_val_if_fail (dec->n == 1 && guide->w == w && guide->h == h && guide->c == c
                          && c <= 8 && sigma > 0.0f, FALSE);
    int r = MIN ((int) ceilf (3.0f * sigma), 64);
    size_t n = (size_t) w * h;
    g_autofree float *plane = ldm_try_alloc_n (n, sizeof (float), "the colour fix", error);
    g_autofree float *weight = plane ? ldm_try_alloc_n (n, sizeof (float), "the colour fix", error)
                                     : NULL;
    g_autofree float *tmp = weight ? ldm_try_alloc_n (n, sizeof (float), "the colour fix", error)
                                   : NULL;
    if (!tmp)
        return FALSE;
    /* Normalised convolution over the fill only: outside it the difference is the autoencoder's
     * error, which would otherwise bleed into the fill's edge as a bright or dark rim. */
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            weight[(size_t) y * w + x] = fill[(size_t) y * stride + x] ? 1.0f : 0.0f;
    if (!image_blur_plane (weight, tmp, w, h, sigma, r))
        return ldm_no_memory (error, "the colour fix", 2 * (size_t) r + 1, sizeof (float));
    for (int ch = 0; ch < c; ch++) {
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                size_t i = (size_t) y * w + x;
                plane[i] = fill[(size_t) y * stride + x]
                           ? guide->data[i * c + ch] - dec->data[i * c + ch] : 0.0f;
            }
        if (!image_blur_plane (plane, tmp, w, h, sigma, r))
            return ldm_no_memory (error, "the colour fix", 2 * (size_t) r + 1, sizeof (float));
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                size_t i = (size_t) y * w + x;
                if (!fill[(size_t) y * stride + x] || weight[i] <= 1e-6f)
                    continue;
                float v = dec->data[i * c + ch] + plane[i] / weight[i];
                dec->data[i * c + ch] = v < -1.0f ? -1.0f : (v > 1.0f ? 1.0f : v);
            }
    }
    return TRUE;
}

/* plane = the normalised Gaussian blur of plane over the pixels whose weight is 1 (weight
 * blurred alongside, into wblur); tmp holds w x h floats. */
static gboolean
blur_normalised (float *plane, const float *weight, float *wblur, float *tmp, int w, int h,
                 float sigma)
{
    int r = MIN ((int) ceilf (3.0f * sigma), 64);
    size_t n = (size_t) w * h;
    for (size_t i = 0; i < n; i++) {
        plane[i] *= weight[i];
        wblur[i] = weight[i];
    }
    if (!image_blur_plane (plane, tmp, w, h, sigma, r)
        || !image_blur_plane (wblur, tmp, w, h, sigma, r))
        return FALSE;
    for (size_t i = 0; i < n; i++)
        plane[i] = wblur[i] > 1e-6f ? plane[i] / wblur[i] : 0.0f;
    return TRUE;
}

static float
grey_at (const Act *a, size_t i)
{
    const float *p = a->data + i * a->c;
    return a->c >= 3 ? 0.299f * p[0] + 0.587f * p[1] + 0.114f * p[2] : p[0];
}

gboolean
color_fix_grain (Act *dec, const Act *img, const uint8_t *fill, int stride, int valid_w,
                 int valid_h, float sigma, float spread, float ceiling, GError **error)
{
    int w = dec->w, h = dec->h, c = dec->c;
    g_return_val_if_fail (dec->n == 1 && img->w == w && img->h == h && img->c == c && c <= 8
                          && sigma > 0.0f && spread > 0.0f, FALSE);
    size_t n = (size_t) w * h;
    int r = MIN ((int) ceilf (3.0f * sigma), 64), rs = MIN ((int) ceilf (3.0f * spread), 64);
    Act target = { 0 };
    g_autofree uint8_t *hole = ldm_try_alloc_n (n, 1, "the grain match", error);
    g_autofree float *known = hole ? ldm_try_alloc_n (n, sizeof (float), "the grain match", error)
                                   : NULL;
    g_autofree float *lo = known ? ldm_try_alloc_n (n, sizeof (float), "the grain match", error)
                                 : NULL;
    g_autofree float *energy = lo ? ldm_try_alloc_n (n, sizeof (float), "the grain match", error)
                                  : NULL;
    g_autofree float *wblur = energy ? ldm_try_alloc_n (n, sizeof (float), "the grain match", error)
                                     : NULL;
    g_autofree float *tmp = wblur ? ldm_try_alloc_n (n, sizeof (float), "the grain match", error)
                                  : NULL;
    if (!tmp || !act_alloc (&target, 1, h, w, 1, error))
        return FALSE;
    gboolean ok = FALSE;
    size_t n_known = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            size_t i = (size_t) y * w + x;
            /* hole: what the membrane fills, the fill and the alignment padding (its repeated
             * edge pixels have no detail of their own: counted as known, they made the fill
             * near the right and bottom edges smoother than its surroundings) */
            gboolean outside = x >= valid_w || y >= valid_h;
            hole[i] = outside ? 2 : fill[(size_t) y * stride + x] != 0;
            known[i] = hole[i] ? 0.0f : 1.0f;
            n_known += !hole[i];
        }
    if (!n_known) { /* no surroundings to take the grain from */
        ok = TRUE;
        goto done;
    }
    /* The surroundings' local detail energy: grey minus its smooth part (both over the known
     * pixels only: the hole's own pixels are what goes), squared, spread; then carried into
     * the hole as a membrane, so each part of the fill gets the grain of the edge nearest it. */
    for (size_t i = 0; i < n; i++)
        lo[i] = grey_at (img, i);
    if (!blur_normalised (lo, known, wblur, tmp, w, h, sigma))
        goto blur_failed;
    for (size_t i = 0; i < n; i++) {
        float d = grey_at (img, i) - lo[i];
        target.data[i] = d * d;
    }
    if (!blur_normalised (target.data, known, wblur, tmp, w, h, spread))
        goto blur_failed;
    if (!fill_membrane (&target, hole, error))
        goto done;
    /* The fill's own local detail energy, the same way. */
    for (size_t i = 0; i < n; i++)
        lo[i] = grey_at (dec, i);
    if (!image_blur_plane (lo, tmp, w, h, sigma, r))
        goto blur_failed;
    for (size_t i = 0; i < n; i++) {
        float d = grey_at (dec, i) - lo[i];
        energy[i] = d * d;
    }
    if (!image_blur_plane (energy, tmp, w, h, spread, rs))
        goto blur_failed;
    /* gain: 1, or less where the fill's detail is more than `ceiling` times as strong
     * (amplitude; ceiling^2 in energy) as its surroundings' */
    float *gain = energy; /* in place: each pixel's energy is read once, then its gain */
    for (size_t i = 0; i < n; i++) {
        float allowed = ceiling * ceiling * target.data[i];
        gain[i] = hole[i] == 1 && energy[i] > allowed ? sqrtf (allowed / energy[i]) : 1.0f;
    }
    for (int ch = 0; ch < c; ch++) {
        for (size_t i = 0; i < n; i++)
            lo[i] = dec->data[i * c + ch];
        if (!image_blur_plane (lo, tmp, w, h, sigma, r))
            goto blur_failed;
        for (size_t i = 0; i < n; i++)
            if (gain[i] < 1.0f)
                dec->data[i * c + ch] = lo[i] + gain[i] * (dec->data[i * c + ch] - lo[i]);
    }
    ok = TRUE;
    goto done;
blur_failed:
    ldm_no_memory (error, "the grain match", 2 * (size_t) MAX (r, rs) + 1, sizeof (float));
done:
    act_free (&target);
    return ok;
}
