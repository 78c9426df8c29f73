/* image_ops.c: the mask and image operations below both the procedures (pipeline.c) and the
 * region inpainting (region.c): growing a mask by a disk, blurring it (Gaussian), resizing an
 * image (area down, bilinear up), freeing an image's pixels.
 *
 * Masks are floats in [0, 1], row-major, w x h.
 */
#include "run/image_ops.h"

#include "ldm.h"

#include <math.h>
#include <string.h>

void
ldm_image_clear (LdmImage *image)
{
    g_clear_pointer (&image->pixels, g_free);
    image->width = image->height = image->channels = 0;
}

/* ------------------------------------------------------------------ masks */

/* dst[i] = max of src[i - r .. i + r] (zero outside), van Herk / Gil-Werman: three passes
 * whatever r is. `scratch` holds 2 (n + 2r) floats. */
static void
row_max (const float *src, int n, int r, float *dst, float *scratch)
{
    int k = 2 * r + 1, m = n + 2 * r;
    float *g = scratch, *h = scratch + m;
    for (int i = 0; i < m; i++) { /* padded input x[i] = src[i - r] */
        float v = (i >= r && i < r + n) ? src[i - r] : 0.0f;
        g[i] = (i % k == 0) ? v : MAX (g[i - 1], v);
    }
    for (int i = m - 1; i >= 0; i--) {
        float v = (i >= r && i < r + n) ? src[i - r] : 0.0f;
        h[i] = (i % k == k - 1 || i == m - 1) ? v : MAX (h[i + 1], v);
    }
    for (int i = 0; i < n; i++) /* window [i, i + 2r] of the padded row */
        dst[i] = MAX (h[i], g[i + 2 * r]);
}

gboolean
ldm_mask_grow (float *mask, int w, int h, int radius, GError **error)
{
    if (radius <= 0 || w <= 0 || h <= 0)
        return TRUE;
    /* the fill reach is grow + blur, so that is the largest radius anyone asks for */
    radius = MIN (radius, LDM_REGION_MAX_GROW + LDM_REGION_MAX_BLUR);
    size_t n = (size_t) w * h;
    g_autofree float *src = g_try_malloc_n (n, sizeof (float));
    /* rows that are all zero add nothing: skip them (most of a crop is context) */
    g_autofree uint8_t *nonzero = g_try_malloc0 ((size_t) h);
    if (!src || !nonzero) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_NO_MEMORY, "not enough memory to grow the mask");
        return FALSE;
    }
    memcpy (src, mask, n * sizeof (float));
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w && !nonzero[y]; x++)
            nonzero[y] = src[(size_t) y * w + x] > 0.0f;
    gboolean ok = TRUE;
#pragma omp parallel
    {
        float *line = g_try_malloc_n ((size_t) w, sizeof (float));
        float *scratch = g_try_malloc_n (2 * ((size_t) w + 2 * radius), sizeof (float));
        if (!line || !scratch) {
#pragma omp atomic write
            ok = FALSE;
        }
#pragma omp for schedule(dynamic, 4)
        for (int y = 0; y < h; y++) {
            if (!line || !scratch)
                continue;
            float *out = mask + (size_t) y * w;
            memset (out, 0, (size_t) w * sizeof (float));
            /* a disk: row y + dy contributes its maximum over +- sqrt(r^2 - dy^2) */
            for (int dy = -radius; dy <= radius; dy++) {
                int sy = y + dy;
                if (sy < 0 || sy >= h || !nonzero[sy])
                    continue;
                int half = (int) floor (sqrt ((double) radius * radius - (double) dy * dy));
                row_max (src + (size_t) sy * w, w, half, line, scratch);
                for (int x = 0; x < w; x++)
                    out[x] = MAX (out[x], line[x]);
            }
        }
        g_free (line);
        g_free (scratch);
    }
    if (!ok) {
        memcpy (mask, src, n * sizeof (float));
        g_set_error (error, LDM_ERROR, LDM_ERROR_NO_MEMORY, "not enough memory to grow the mask");
    }
    return ok;
}

gboolean
image_blur_plane (float *plane, float *tmp, int w, int h, double sigma, int radius)
{
    g_autofree float *kernel = g_try_malloc_n (2 * (size_t) radius + 1, sizeof (float));
    if (!kernel)
        return FALSE;
    double sum = 0;
    for (int i = -radius; i <= radius; i++)
        sum += exp (-(double) i * i / (2 * sigma * sigma));
    for (int i = -radius; i <= radius; i++)
        kernel[i + radius] = (float) (exp (-(double) i * i / (2 * sigma * sigma)) / sum);
    /* separable: rows into tmp, columns back into plane; edges replicated */
#pragma omp parallel for
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float acc = 0.0f;
            for (int i = -radius; i <= radius; i++)
                acc += kernel[i + radius] * plane[(size_t) y * w + CLAMP (x + i, 0, w - 1)];
            tmp[(size_t) y * w + x] = acc;
        }
#pragma omp parallel for
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float acc = 0.0f;
            for (int i = -radius; i <= radius; i++)
                acc += kernel[i + radius] * tmp[(size_t) CLAMP (y + i, 0, h - 1) * w + x];
            plane[(size_t) y * w + x] = acc;
        }
    return TRUE;
}

gboolean
ldm_mask_blur (float *mask, int w, int h, int radius, GError **error)
{
    if (radius <= 0 || w <= 0 || h <= 0)
        return TRUE;
    radius = MIN (radius, LDM_REGION_MAX_BLUR);
    size_t n = (size_t) w * h;
    g_autofree float *tmp = g_try_malloc_n (n, sizeof (float));
    if (!tmp || !image_blur_plane (mask, tmp, w, h, radius / 3.0, radius)) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_NO_MEMORY, "not enough memory to blur the mask");
        return FALSE;
    }
    for (size_t i = 0; i < n; i++)
        mask[i] = CLAMP (mask[i], 0.0f, 1.0f);
    return TRUE;
}

/* ----------------------------------------------------------------- resize */

/* The source taps of each destination index along one axis. */
typedef struct {
    int   *first, *count; /* per destination index */
    float *weight;        /* count[i] weights from offset[i] */
    int   *offset;
    int    n;
} Taps;

static void
taps_free (Taps *t)
{
    g_free (t->first);
    g_free (t->count);
    g_free (t->weight);
    g_free (t->offset);
}

/* Shrinking: area averaging (each destination pixel covers src / dst source pixels, partly
 * at its ends). Enlarging: bilinear with pixel centres aligned. Same size: identity. */
static gboolean
taps_make (int src, int dst, Taps *t)
{
    int max_taps = dst < src ? (int) ceil ((double) src / dst) + 1 : 2;
    t->n = dst;
    t->first = g_try_malloc_n (dst, sizeof (int));
    t->count = g_try_malloc_n (dst, sizeof (int));
    t->offset = g_try_malloc_n (dst, sizeof (int));
    t->weight = g_try_malloc_n ((size_t) dst * max_taps, sizeof (float));
    if (!t->first || !t->count || !t->offset || !t->weight)
        return FALSE;
    double scale = (double) src / dst;
    for (int i = 0; i < dst; i++) {
        float *w = t->weight + (size_t) i * max_taps;
        t->offset[i] = i * max_taps;
        if (dst == src) {
            t->first[i] = i, t->count[i] = 1, w[0] = 1.0f;
        } else if (dst < src) {
            double a = i * scale, b = (i + 1) * scale;
            int j0 = (int) floor (a), j1 = MIN ((int) ceil (b), src);
            t->first[i] = j0;
            t->count[i] = j1 - j0;
            for (int j = j0; j < j1; j++)
                w[j - j0] = (float) ((MIN (b, j + 1.0) - MAX (a, (double) j)) / scale);
        } else {
            double c = (i + 0.5) * scale - 0.5;
            c = CLAMP (c, 0.0, src - 1.0);
            int j0 = (int) floor (c);
            double f = c - j0;
            t->first[i] = j0;
            if (j0 + 1 < src && f > 0) {
                t->count[i] = 2, w[0] = (float) (1 - f), w[1] = (float) f;
            } else {
                t->count[i] = 1, w[0] = 1.0f;
            }
        }
    }
    return TRUE;
}

gboolean
ldm_image_resize (const LdmImage *src, int width, int height, LdmImage *dst, GError **error)
{
    *dst = (LdmImage) { 0 };
    if (!src->pixels || src->width <= 0 || src->height <= 0 || src->channels <= 0
        || width <= 0 || height <= 0 || width > 65536 || height > 65536) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT, "cannot resize a %dx%d image to %dx%d",
                     src->width, src->height, width, height);
        return FALSE;
    }
    int c = src->channels, sw = src->width, sh = src->height;
    Taps tx = { 0 }, ty = { 0 };
    float *tmp = NULL;
    uint8_t *out = NULL;
    gboolean ok = taps_make (sw, width, &tx) && taps_make (sh, height, &ty)
                  && (tmp = g_try_malloc_n ((size_t) sh * width, (size_t) c * sizeof (float)))
                  && (out = g_try_malloc_n ((size_t) height * width, (size_t) c));
    if (!ok) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_NO_MEMORY, "not enough memory to resize to %dx%d",
                     width, height);
        g_free (tmp);
        g_free (out);
        taps_free (&tx);
        taps_free (&ty);
        return FALSE;
    }
#pragma omp parallel for
    for (int y = 0; y < sh; y++)
        for (int x = 0; x < width; x++)
            for (int k = 0; k < c; k++) {
                float acc = 0.0f;
                for (int j = 0; j < tx.count[x]; j++)
                    acc += tx.weight[tx.offset[x] + j]
                           * src->pixels[((size_t) y * sw + tx.first[x] + j) * c + k];
                tmp[((size_t) y * width + x) * c + k] = acc;
            }
#pragma omp parallel for
    for (int y = 0; y < height; y++)
        for (int x = 0; x < width; x++)
            for (int k = 0; k < c; k++) {
                float acc = 0.0f;
                for (int j = 0; j < ty.count[y]; j++)
                    acc += ty.weight[ty.offset[y] + j]
                           * tmp[((size_t) (ty.first[y] + j) * width + x) * c + k];
                out[((size_t) y * width + x) * c + k] = (uint8_t) CLAMP (lrintf (acc), 0, 255);
            }
    g_free (tmp);
    taps_free (&tx);
    taps_free (&ty);
    *dst = (LdmImage) { width, height, c, out };
    return TRUE;
}
