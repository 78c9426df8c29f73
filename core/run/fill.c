/* fill.c: a classical hole fill (see fill.h). Like OpenCV's Navier-Stokes/Telea fills it
 * continues the colours around a hole smoothly into it; unlike them it is O(pixels) for any
 * hole size: the pyramid carries the far-away colours in, the relaxation removes its blocks.
 * The diffusion model then draws the texture on top (init = fill). */
#include "run/fill.h"

#include "alloc.h"

#include <math.h>
#include <string.h>

#define FILL_MAX_LEVELS 24
#define FILL_RELAX_ROUNDS 12 /* per level; the levels above already hold the coarse shape */

typedef struct {
    int      w, h;
    float   *v;     /* w x h x c */
    uint8_t *known; /* w x h */
} Level;

static void
pull (const Level *fine, Level *coarse, int c)
{
#pragma omp parallel for
    for (int y = 0; y < coarse->h; y++)
        for (int x = 0; x < coarse->w; x++) {
            float sum[8] = { 0 };
            int count = 0;
            for (int dy = 0; dy < 2; dy++)
                for (int dx = 0; dx < 2; dx++) {
                    int fy = 2 * y + dy, fx = 2 * x + dx;
                    if (fy >= fine->h || fx >= fine->w || !fine->known[(size_t) fy * fine->w + fx])
                        continue;
                    const float *p = fine->v + ((size_t) fy * fine->w + fx) * c;
                    for (int k = 0; k < c; k++)
                        sum[k] += p[k];
                    count++;
                }
            size_t i = (size_t) y * coarse->w + x;
            coarse->known[i] = count > 0;
            for (int k = 0; k < c; k++)
                coarse->v[i * c + k] = count ? sum[k] / (float) count : 0.0f;
        }
}

/* Unknown pixels of fine = bilinear samples of coarse (all of whose pixels are set). */
static void
push (Level *fine, const Level *coarse, int c)
{
#pragma omp parallel for
    for (int y = 0; y < fine->h; y++) {
        float sy = ((float) y + 0.5f) / 2.0f - 0.5f;
        int y0 = (int) floorf (sy);
        float ty = sy - (float) y0;
        int ya = CLAMP (y0, 0, coarse->h - 1), yb = CLAMP (y0 + 1, 0, coarse->h - 1);
        for (int x = 0; x < fine->w; x++) {
            size_t i = (size_t) y * fine->w + x;
            if (fine->known[i])
                continue;
            float sx = ((float) x + 0.5f) / 2.0f - 0.5f;
            int x0 = (int) floorf (sx);
            float tx = sx - (float) x0;
            int xa = CLAMP (x0, 0, coarse->w - 1), xb = CLAMP (x0 + 1, 0, coarse->w - 1);
            const float *p00 = coarse->v + ((size_t) ya * coarse->w + xa) * c;
            const float *p01 = coarse->v + ((size_t) ya * coarse->w + xb) * c;
            const float *p10 = coarse->v + ((size_t) yb * coarse->w + xa) * c;
            const float *p11 = coarse->v + ((size_t) yb * coarse->w + xb) * c;
            for (int k = 0; k < c; k++)
                fine->v[i * c + k] = (1 - ty) * ((1 - tx) * p00[k] + tx * p01[k])
                                     + ty * ((1 - tx) * p10[k] + tx * p11[k]);
        }
    }
}

/* Gauss-Seidel towards the mean of the 4 neighbours, on the unknown pixels only (serial: each
 * update reads its neighbours' new values). */
static void
relax (Level *l, int c, int rounds)
{
    for (int r = 0; r < rounds; r++)
        for (int y = 0; y < l->h; y++)
            for (int x = 0; x < l->w; x++) {
                size_t i = (size_t) y * l->w + x;
                if (l->known[i])
                    continue;
                size_t nb[4];
                int n = 0;
                if (x > 0)
                    nb[n++] = i - 1;
                if (x < l->w - 1)
                    nb[n++] = i + 1;
                if (y > 0)
                    nb[n++] = i - l->w;
                if (y < l->h - 1)
                    nb[n++] = i + l->w;
                for (int k = 0; k < c; k++) {
                    float sum = 0;
                    for (int j = 0; j < n; j++)
                        sum += l->v[nb[j] * c + k];
                    l->v[i * c + k] = n ? sum / (float) n : l->v[i * c + k];
                }
            }
}

gboolean
fill_membrane (Act *img, const uint8_t *hole, GError **error)
{
    int c = img->c;
    g_return_val_if_fail (img->n == 1 && c >= 1 && c <= 8, FALSE);
    Level levels[FILL_MAX_LEVELS] = { 0 };
    int count = 0;
    gboolean ok = FALSE;
    for (int w = img->w, h = img->h; count < FILL_MAX_LEVELS; w = (w + 1) / 2, h = (h + 1) / 2) {
        Level *l = &levels[count++];
        l->w = w;
        l->h = h;
        l->v = ldm_try_alloc_n ((size_t) w * h * c, sizeof (float), "the fill", error);
        l->known = l->v ? ldm_try_alloc_n ((size_t) w * h, 1, "the fill", error) : NULL;
        if (!l->known)
            goto done;
        if (w == 1 && h == 1)
            break;
    }
    size_t n = (size_t) img->w * img->h;
    memcpy (levels[0].v, img->data, n * c * sizeof (float));
    for (size_t i = 0; i < n; i++)
        levels[0].known[i] = !hole[i];
    for (int k = 1; k < count; k++)
        pull (&levels[k - 1], &levels[k], c);
    /* the top (1 x 1) is the mean of every known pixel, or 0 when none is known */
    levels[count - 1].known[0] = 1;
    for (int k = count - 2; k >= 0; k--) {
        push (&levels[k], &levels[k + 1], c);
        relax (&levels[k], c, FILL_RELAX_ROUNDS);
    }
    for (size_t i = 0; i < n; i++)
        if (hole[i])
            memcpy (img->data + i * c, levels[0].v + i * c, c * sizeof (float));
    ok = TRUE;
done:
    for (int k = 0; k < count; k++) {
        g_free (levels[k].v);
        g_free (levels[k].known);
    }
    return ok;
}
