/* test_region: the plug-in's pixel work without GIMP (region.c, image_ops.c): the crop around
 * a selection, mask grow and blur, resizing, and ldm_inpaint_region against ldm_inpaint with the tiny
 * inpainting fixture: equal when nothing is scaled, and the input kept bit for bit outside the
 * fill in every case. */
#include "testutil.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------- crop */

static void
test_crop (void)
{
    LdmRegionParams p = { .context_padding = 10, .working_size = 512, .mask_grow = 2,
                          .mask_blur = 3 };
    LdmRect limits = { 0, 0, 100, 80 }, crop;
    /* margin 15 on every side, inside the limits */
    g_assert_true (ldm_region_crop (&p, (LdmRect) { 40, 30, 10, 5 }, limits, &crop));
    g_assert_cmpint (crop.x, ==, 25);
    g_assert_cmpint (crop.y, ==, 15);
    g_assert_cmpint (crop.width, ==, 40);
    g_assert_cmpint (crop.height, ==, 35);
    /* clamped at the edges */
    g_assert_true (ldm_region_crop (&p, (LdmRect) { 2, 70, 96, 10 }, limits, &crop));
    g_assert_cmpint (crop.x, ==, 0);
    g_assert_cmpint (crop.y, ==, 55);
    g_assert_cmpint (crop.width, ==, 100);
    g_assert_cmpint (crop.height, ==, 25);
    /* limits that do not start at 0 (a drawable with offsets) */
    g_assert_true (ldm_region_crop (&p, (LdmRect) { 40, 30, 10, 5 },
                                    (LdmRect) { 35, 28, 20, 20 }, &crop));
    g_assert_cmpint (crop.x, ==, 35);
    g_assert_cmpint (crop.y, ==, 28);
    g_assert_cmpint (crop.width, ==, 20);
    g_assert_cmpint (crop.height, ==, 20);
    /* huge padding: the whole image, no overflow */
    p.context_padding = G_MAXINT;
    g_assert_true (ldm_region_crop (&p, (LdmRect) { 40, 30, 1, 1 }, limits, &crop));
    g_assert_cmpint (crop.width, ==, 100);
    g_assert_cmpint (crop.height, ==, 80);
    /* no overlap, or empty: FALSE, even when the margin would reach */
    g_assert_false (ldm_region_crop (&p, (LdmRect) { 120, 30, 10, 5 }, limits, &crop));
    g_assert_false (ldm_region_crop (&p, (LdmRect) { 40, 30, 0, 5 }, limits, &crop));
    g_assert_cmpint (crop.width, ==, 0);
}

/* ------------------------------------------------------------------ masks */

static void
test_grow (void)
{
    enum { W = 21, H = 17 };
    float m[W * H] = { 0 };
    m[8 * W + 10] = 1.0f;
    m[2 * W + 2] = 0.25f; /* a soft pixel spreads its own value */
    g_assert_true (ldm_mask_grow (m, W, H, 3, NULL));
    int ones = 0;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int dx = x - 10, dy = y - 8;
            float v = m[y * W + x];
            if (dx * dx + dy * dy <= 9) {
                g_assert_cmpfloat (v, ==, 1.0f);
                ones++;
            } else if ((x - 2) * (x - 2) + (y - 2) * (y - 2) <= 9) {
                g_assert_cmpfloat (v, ==, 0.25f);
            } else {
                g_assert_cmpfloat (v, ==, 0.0f);
            }
        }
    g_assert_cmpint (ones, ==, 29); /* lattice points of a disk of radius 3 */
    /* radius 0 changes nothing; a radius larger than the mask fills it */
    float before[W * H];
    memcpy (before, m, sizeof m);
    g_assert_true (ldm_mask_grow (m, W, H, 0, NULL));
    g_assert_cmpmem (before, sizeof before, m, sizeof m);
    g_assert_true (ldm_mask_grow (m, W, H, 100, NULL));
    for (int i = 0; i < W * H; i++)
        g_assert_cmpfloat (m[i], ==, 1.0f);
}

static void
test_blur (void)
{
    enum { W = 31, H = 29 };
    float m[W * H] = { 0 };
    m[14 * W + 15] = 1.0f;
    g_assert_true (ldm_mask_blur (m, W, H, 6, NULL));
    double sum = 0;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            float v = m[y * W + x];
            sum += v;
            if (abs (x - 15) > 6 || abs (y - 14) > 6)
                g_assert_cmpfloat (v, ==, 0.0f); /* the kernel stops at the radius */
            /* symmetric */
            g_assert_cmpfloat_with_epsilon (v, m[y * W + (30 - x)], 1e-7);
        }
    g_assert_cmpfloat_with_epsilon (sum, 1.0, 1e-5);
    g_assert_cmpfloat (m[14 * W + 15], >, m[14 * W + 16]);
    /* a constant mask stays constant (edges replicated) */
    for (int i = 0; i < W * H; i++)
        m[i] = 0.75f;
    g_assert_true (ldm_mask_blur (m, W, H, 9, NULL));
    for (int i = 0; i < W * H; i++)
        g_assert_cmpfloat_with_epsilon (m[i], 0.75f, 1e-5);
}

/* ----------------------------------------------------------------- resize */

static void
test_resize (void)
{
    uint8_t px[4 * 4 * 3];
    for (int i = 0; i < 4 * 4 * 3; i++)
        px[i] = (uint8_t) (i * 5);
    LdmImage src = { 4, 4, 3, px }, dst = { 0 };
    /* identity */
    g_assert_true (ldm_image_resize (&src, 4, 4, &dst, NULL));
    g_assert_cmpmem (dst.pixels, 48, px, 48);
    ldm_image_clear (&dst);
    /* halving averages 2x2 blocks */
    g_assert_true (ldm_image_resize (&src, 2, 2, &dst, NULL));
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 2; x++)
            for (int c = 0; c < 3; c++) {
                int sum = 0;
                for (int j = 0; j < 2; j++)
                    for (int i = 0; i < 2; i++)
                        sum += px[((2 * y + j) * 4 + 2 * x + i) * 3 + c];
                g_assert_cmpint (dst.pixels[(y * 2 + x) * 3 + c], ==, lrint (sum / 4.0));
            }
    ldm_image_clear (&dst);
    /* enlarging a constant image keeps it; odd factors on both axes */
    memset (px, 77, sizeof px);
    g_assert_true (ldm_image_resize (&src, 11, 3, &dst, NULL));
    g_assert_cmpint (dst.width, ==, 11);
    g_assert_cmpint (dst.height, ==, 3);
    for (int i = 0; i < 11 * 3 * 3; i++)
        g_assert_cmpint (dst.pixels[i], ==, 77);
    ldm_image_clear (&dst);
    /* bad sizes are errors, not crashes */
    g_autoptr (GError) error = NULL;
    g_assert_false (ldm_image_resize (&src, 0, 3, &dst, &error));
    g_assert_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT);
}

/* --------------------------------------------------------------- inpaint */

enum { IW = 48, IH = 64 };

static LdmEngine *
inpaint_engine (void)
{
    g_autofree char *path = fixture_path ("ldm-inpaint-tiny", "model.ckpt");
    if (!path)
        return NULL;
    g_autoptr (GError) error = NULL;
    g_autoptr (LdmModel) model = ldm_model_load (path, &error);
    g_assert_no_error (error);
    LdmEngine *engine = ldm_engine_new (model, LDM_PRECISION_FP32, &error);
    g_assert_no_error (error);
    return engine;
}

/* A smooth RGBA test image and a soft elliptical selection with a feathered rim. */
static void
make_region (LdmImage *image, float *selection)
{
    *image = (LdmImage) { IW, IH, 4, g_malloc ((size_t) IW * IH * 4) };
    for (int y = 0; y < IH; y++)
        for (int x = 0; x < IW; x++) {
            uint8_t *p = image->pixels + ((size_t) y * IW + x) * 4;
            p[0] = (uint8_t) (x * 5), p[1] = (uint8_t) (y * 4), p[2] = (uint8_t) ((x * y) & 255);
            p[3] = (uint8_t) (200 + (x & 31));
            double dx = (x - 24) / 12.0, dy = (y - 30) / 16.0, r = sqrt (dx * dx + dy * dy);
            selection[y * IW + x] = (float) CLAMP ((1.2 - r) / 0.4, 0.0, 1.0);
        }
}

static void
sample_params (LdmSampleParams *sp)
{
    ldm_sample_params_init_authors (sp, LDM_TASK_INPAINT);
    sp->steps = 3;
    sp->seed = 11;
}

static void
test_inpaint_region_equals_inpaint (void)
{
    g_autoptr (LdmEngine) engine = inpaint_engine ();
    if (!engine)
        return;
    LdmImage image, mask = { IW, IH, 1, g_malloc (IW * IH) }, want = { 0 };
    float selection[IW * IH];
    make_region (&image, selection);
    for (int i = 0; i < IW * IH; i++)
        mask.pixels[i] = selection[i] >= 0.5f ? 255 : 0;
    LdmSampleParams sp;
    sample_params (&sp);
    LdmRegionParams rp = { .context_padding = 0, .working_size = 512 };
    LdmRegionResult r;
    g_autoptr (GError) error = NULL;
    g_assert_true (ldm_inpaint_region (engine, &image, selection, &rp, &sp, &r, &error));
    g_assert_no_error (error);
    g_assert_true (ldm_inpaint (engine, &image, &mask, &sp, &want, &error));
    g_assert_cmpint (r.model_width, ==, IW);
    g_assert_cmpint (r.model_height, ==, IH);
    g_assert_cmpmem (r.image.pixels, IW * IH * 4, want.pixels, IW * IH * 4);
    g_assert_cmpmem (r.fill, IW * IH, mask.pixels, IW * IH);
    /* grow 0, blur 0: the layer mask is the selection itself */
    g_assert_cmpmem (r.layer_mask, sizeof selection, selection, sizeof selection);
    ldm_region_result_clear (&r);
    ldm_image_clear (&image);
    ldm_image_clear (&mask);
    ldm_image_clear (&want);
}

static void
test_inpaint_region_scaled (void)
{
    g_autoptr (LdmEngine) engine = inpaint_engine ();
    if (!engine)
        return;
    LdmImage image;
    float selection[IW * IH];
    make_region (&image, selection);
    LdmSampleParams sp;
    sample_params (&sp);
    LdmRegionParams rp = { .context_padding = 0, .working_size = 40, .mask_grow = 2,
                           .mask_blur = 3 };
    LdmRegionResult r;
    g_autoptr (GError) error = NULL;
    g_assert_true (ldm_inpaint_region (engine, &image, selection, &rp, &sp, &r, &error));
    g_assert_no_error (error);
    g_assert_cmpint (r.model_width, ==, 30); /* 48 x 64 fitted into 40 */
    g_assert_cmpint (r.model_height, ==, 40);
    g_assert_cmpint (r.image.width, ==, IW);
    g_assert_cmpint (r.image.height, ==, IH);
    /* the fill covers the visible blurred edge of the part at least half selected */
    float hard[IW * IH];
    for (int i = 0; i < IW * IH; i++)
        hard[i] = selection[i] >= 0.5f;
    g_assert_true (ldm_mask_grow (hard, IW, IH, rp.mask_grow, NULL));
    g_assert_true (ldm_mask_blur (hard, IW, IH, rp.mask_blur, NULL));
    int changed = 0;
    for (int i = 0; i < IW * IH; i++) {
        const uint8_t *a = image.pixels + i * 4, *b = r.image.pixels + i * 4;
        g_assert_cmpint (a[3], ==, b[3]); /* alpha kept everywhere */
        if (!r.fill[i])
            g_assert_cmpmem (a, 4, b, 4);
        else
            changed += memcmp (a, b, 3) != 0;
        if (hard[i] > 1.0f / 255) /* the Gaussian's tail beyond its radius is below a level */
            g_assert_cmpint (r.fill[i], ==, 255);
        if (selection[i] >= 0.5f)
            g_assert_cmpfloat (r.layer_mask[i], >=, 0.5f);
    }
    g_assert_cmpint (changed, >, 100);
    ldm_region_result_clear (&r);
    ldm_image_clear (&image);
}

static gboolean
cancel_at_two (void *data, int step, int steps)
{
    (void) steps;
    *(int *) data = step;
    return step < 2;
}

static void
test_inpaint_region_errors (void)
{
    g_autoptr (LdmEngine) engine = inpaint_engine ();
    if (!engine)
        return;
    LdmImage image;
    float selection[IW * IH];
    make_region (&image, selection);
    LdmSampleParams sp;
    sample_params (&sp);
    LdmRegionParams rp;
    ldm_region_params_init (&rp);
    LdmRegionResult r;
    /* a selection nowhere at least half selected */
    float faint[IW * IH];
    for (int i = 0; i < IW * IH; i++)
        faint[i] = selection[i] * 0.45f;
    rp.mask_grow = rp.mask_blur = 0;
    g_autoptr (GError) error = NULL;
    g_assert_false (ldm_inpaint_region (engine, &image, faint, &rp, &sp, &r, &error));
    g_assert_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT);
    g_assert_null (r.image.pixels);
    g_clear_error (&error);
    /* cancelled from the progress callback at step 2: an error, no result */
    int last = 0;
    sp.progress = cancel_at_two;
    sp.progress_data = &last;
    g_assert_false (ldm_inpaint_region (engine, &image, selection, &rp, &sp, &r, &error));
    g_assert_error (error, LDM_ERROR, LDM_ERROR_CANCELLED);
    g_assert_cmpint (last, ==, 2);
    g_assert_null (r.fill);
    g_clear_error (&error);
    /* bad parameters */
    sp.progress = NULL;
    rp.mask_grow = -1;
    g_assert_false (ldm_inpaint_region (engine, &image, selection, &rp, &sp, &r, &error));
    g_assert_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT);
    ldm_image_clear (&image);
}

int
main (int argc, char **argv)
{
    g_test_init (&argc, &argv, NULL);
    g_test_add_func ("/region/crop", test_crop);
    g_test_add_func ("/region/grow", test_grow);
    g_test_add_func ("/region/blur", test_blur);
    g_test_add_func ("/region/resize", test_resize);
    g_test_add_func ("/region/inpaint-equals-ldm-inpaint", test_inpaint_region_equals_inpaint);
    g_test_add_func ("/region/inpaint-scaled", test_inpaint_region_scaled);
    g_test_add_func ("/region/inpaint-errors", test_inpaint_region_errors);
    return g_test_run ();
}
