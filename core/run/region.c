/* region.c: inpainting a region of a larger image, the pixel work of the GIMP plug-in that
 * needs no GIMP: the crop around a selection, the soft mask grown and blurred (image_ops.c),
 * the crop fitted to the working size and back, and the composite that keeps every pixel
 * outside the filled area exactly as it was.
 *
 * Masks are floats in [0, 1] (GIMP's selection read as "Y float"); the engine's mask is the
 * grown selection >= 0.5, as the authors threshold theirs.
 */
#include "ldm.h"

#include <math.h>
#include <string.h>

void
ldm_region_params_init (LdmRegionParams *p)
{
    *p = (LdmRegionParams) { .context_padding = 64, .working_size = 512, .mask_grow = 4,
                             .mask_blur = 8 };
}

gboolean
ldm_region_crop (const LdmRegionParams *p, LdmRect bounds, LdmRect limits, LdmRect *crop)
{
    *crop = (LdmRect) { 0 };
    if (bounds.width <= 0 || bounds.height <= 0 || limits.width <= 0 || limits.height <= 0)
        return FALSE;
    /* 64-bit: a script may pass huge paddings */
    int64_t margin = (int64_t) MAX (p->mask_grow, 0) + MAX (p->mask_blur, 0)
                     + MAX (p->context_padding, 0);
    int64_t x0 = MAX ((int64_t) bounds.x - margin, (int64_t) limits.x);
    int64_t y0 = MAX ((int64_t) bounds.y - margin, (int64_t) limits.y);
    int64_t x1 = MIN ((int64_t) bounds.x + bounds.width + margin,
                      (int64_t) limits.x + limits.width);
    int64_t y1 = MIN ((int64_t) bounds.y + bounds.height + margin,
                      (int64_t) limits.y + limits.height);
    /* the bounds themselves must meet the limits, not just their margin */
    if (MAX (bounds.x, limits.x) >= MIN ((int64_t) bounds.x + bounds.width,
                                         (int64_t) limits.x + limits.width)
        || MAX (bounds.y, limits.y) >= MIN ((int64_t) bounds.y + bounds.height,
                                            (int64_t) limits.y + limits.height))
        return FALSE;
    *crop = (LdmRect) { (int) x0, (int) y0, (int) (x1 - x0), (int) (y1 - y0) };
    return TRUE;
}

/* ---------------------------------------------------------------- inpaint */

void
ldm_region_result_clear (LdmRegionResult *r)
{
    ldm_image_clear (&r->image);
    g_clear_pointer (&r->fill, g_free);
    g_clear_pointer (&r->layer_mask, g_free);
    r->model_width = r->model_height = 0;
}

/* The crop scaled to fit the working size, inpainted, scaled back; generated pixels go into
 * `out` (a copy of the crop) where fill is set. */
static gboolean
inpaint_scaled (LdmEngine *engine, const LdmImage *image, const LdmImage *fill, int mw, int mh,
                const LdmSampleParams *sample, LdmImage *out, GError **error)
{
    LdmImage small = { 0 }, small_fill = { 0 }, generated = { 0 }, back = { 0 };
    gboolean ok = ldm_image_resize (image, mw, mh, &small, error);
    if (ok && !(small_fill.pixels = g_try_malloc0 ((size_t) mw * mh))) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_NO_MEMORY, "not enough memory for the mask");
        ok = FALSE;
    }
    if (ok) {
        /* any coverage counts (a max over each small pixel's footprint, not an average that
         * could round a thin stroke away): the model must regenerate every pixel the
         * full-size fill touches, or edge pixels would come back as blurred originals */
        small_fill.width = mw;
        small_fill.height = mh;
        small_fill.channels = 1;
        for (int y = 0; y < fill->height; y++)
            for (int x = 0; x < fill->width; x++)
                if (fill->pixels[(size_t) y * fill->width + x]) {
                    /* the small pixels under this pixel's first and last point */
                    int y0 = (int) ((int64_t) y * mh / fill->height);
                    int y1 = (int) (((int64_t) (y + 1) * mh - 1) / fill->height);
                    int x0 = (int) ((int64_t) x * mw / fill->width);
                    int x1 = (int) (((int64_t) (x + 1) * mw - 1) / fill->width);
                    for (int sy = y0; sy <= y1; sy++)
                        for (int sx = x0; sx <= x1; sx++)
                            small_fill.pixels[(size_t) sy * mw + sx] = 255;
                }
        /* the kept part at the model's size, rounded outwards */
        LdmSampleParams scaled = *sample;
        const LdmRect k = sample->keep;
        if (k.width > 0 && k.height > 0) {
            int x0 = (int) ((int64_t) k.x * mw / image->width);
            int y0 = (int) ((int64_t) k.y * mh / image->height);
            int x1 = (int) ((((int64_t) k.x + k.width) * mw + image->width - 1) / image->width);
            int y1 = (int) ((((int64_t) k.y + k.height) * mh + image->height - 1)
                            / image->height);
            scaled.keep = (LdmRect) { x0, y0, x1 - x0, y1 - y0 };
        }
        ok = ldm_inpaint (engine, &small, &small_fill, &scaled, &generated, error)
             && ldm_image_resize (&generated, image->width, image->height, &back, error);
    }
    if (ok) {
        size_t n = (size_t) image->width * image->height;
        int c = image->channels, rgb = MIN (c, 3);
        *out = (LdmImage) { image->width, image->height, c, g_try_malloc (n * c) };
        if (!out->pixels) {
            g_set_error (error, LDM_ERROR, LDM_ERROR_NO_MEMORY, "not enough memory for the result");
            ok = FALSE;
        } else {
            memcpy (out->pixels, image->pixels, n * c);
        }
        for (size_t i = 0; ok && i < n; i++)
            if (fill->pixels[i])
                memcpy (out->pixels + i * c, back.pixels + i * c, rgb); /* alpha stays */
    }
    ldm_image_clear (&small);
    ldm_image_clear (&small_fill);
    ldm_image_clear (&generated);
    ldm_image_clear (&back);
    return ok;
}

void
ldm_region_model_size (const LdmRegionParams *params, int width, int height, int *model_width,
                       int *model_height)
{
    int longest = MAX (width, height);
    *model_width = width;
    *model_height = height;
    if (params->working_size > 0 && longest > params->working_size) {
        double s = (double) params->working_size / longest;
        *model_width = MAX (1, (int) lround (width * s));
        *model_height = MAX (1, (int) lround (height * s));
    }
}

gboolean
ldm_inpaint_region (LdmEngine *engine, const LdmImage *image, const float *selection,
                    const LdmRegionParams *params, const LdmSampleParams *sample,
                    LdmRegionResult *result, GError **error)
{
    *result = (LdmRegionResult) { 0 };
    if (!image || !image->pixels || image->width <= 0 || image->height <= 0
        || image->channels == 2 || image->channels > 4 || !selection) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "the region must be a grey, RGB or RGBA image with a selection");
        return FALSE;
    }
    if (params->mask_grow < 0 || params->mask_blur < 0 || params->mask_grow > LDM_REGION_MAX_GROW
        || params->mask_blur > LDM_REGION_MAX_BLUR
        || (params->working_size != 0 && params->working_size < LDM_REGION_MIN_WORKING_SIZE)) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "mask grow and blur must be 0 to %d and the working size at least %d",
                     LDM_REGION_MAX_GROW, LDM_REGION_MIN_WORKING_SIZE);
        return FALSE;
    }
    int w = image->width, h = image->height;
    size_t n = (size_t) w * h;
    g_autofree float *reach = g_try_malloc_n (n, sizeof (float));
    result->layer_mask = g_try_malloc_n (n, sizeof (float));
    result->fill = g_try_malloc_n (n, 1);
    if (!reach || !result->layer_mask || !result->fill) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_NO_MEMORY, "not enough memory for the masks");
        ldm_region_result_clear (result);
        return FALSE;
    }
    for (size_t i = 0; i < n; i++)
        result->layer_mask[i] = reach[i] = CLAMP (selection[i], 0.0f, 1.0f);
    /* The fill reaches as far as the blurred edge does, so the soft band of the layer mask
     * blends generated pixels everywhere, never a step onto the originals. */
    if (!ldm_mask_grow (result->layer_mask, w, h, params->mask_grow, error)
        || !ldm_mask_blur (result->layer_mask, w, h, params->mask_blur, error)
        || !ldm_mask_grow (reach, w, h, params->mask_grow + params->mask_blur, error)) {
        ldm_region_result_clear (result);
        return FALSE;
    }
    size_t n_fill = 0;
    for (size_t i = 0; i < n; i++)
        n_fill += (result->fill[i] = reach[i] >= 0.5f ? 255 : 0) != 0;
    if (n_fill == 0) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "no pixel of the selection is at least half selected: nothing to inpaint");
        ldm_region_result_clear (result);
        return FALSE;
    }
    int mw, mh;
    ldm_region_model_size (params, w, h, &mw, &mh);
    result->model_width = mw;
    result->model_height = mh;
    LdmImage fill = { w, h, 1, result->fill };
    gboolean ok = (mw == w && mh == h)
                      ? ldm_inpaint (engine, image, &fill, sample, &result->image, error)
                      : inpaint_scaled (engine, image, &fill, mw, mh, sample, &result->image,
                                        error);
    if (!ok)
        ldm_region_result_clear (result);
    return ok;
}
