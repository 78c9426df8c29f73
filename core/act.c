/* act.c: activation buffers and the cheap layers between convolutions. See act.h. */
#include "act.h"

#include <string.h>

gboolean
act_alloc (Act *a, int n, int h, int w, int c, GError **error)
{
    size_t count = (size_t) n * h * w * c;
    *a = (Act) { .n = n, .h = h, .w = w, .c = c };
    a->data = g_try_malloc_n (count ? count : 1, sizeof (float));
    if (!a->data) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_NO_MEMORY,
                     "not enough memory for a %dx%dx%dx%d activation (%zu MB)", n, h, w, c,
                     count * sizeof (float) >> 20);
        return FALSE;
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
#pragma omp parallel for schedule(static)
    for (size_t p = 0; p < pixels; p++) {
        memcpy (out->data + p * out->c, a->data + p * a->c, a->c * sizeof (float));
        memcpy (out->data + p * out->c + a->c, b->data + p * b->c, b->c * sizeof (float));
    }
}

void
act_upsample_nearest2x (const Act *in, Act *out)
{
    int c = in->c;
#pragma omp parallel for collapse(2) schedule(static)
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
#pragma omp parallel for collapse(2) schedule(static)
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

void
act_add (float *y, const float *x, size_t n)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++)
        y[i] += x[i];
}
