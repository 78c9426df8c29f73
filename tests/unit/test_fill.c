/* The classical fill (core/run/fill.c): a membrane continues what surrounds a hole. Truth here is
 * analytic: a membrane (harmonic) fill reproduces a linear ramp and a constant exactly, keeps
 * every known pixel, and is as smooth as its surroundings. */
#include "run/fill.h"

#include <math.h>
#include <string.h>

enum { W = 64, H = 48, C = 3 };

static void
ramp_image (Act *img, uint8_t *hole, int cx, int cy, int r)
{
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            size_t i = (size_t) y * W + x;
            hole[i] = (x - cx) * (x - cx) + (y - cy) * (y - cy) <= r * r;
            for (int k = 0; k < C; k++)
                img->data[i * C + k] = 0.02f * (float) x - 0.01f * (float) y + 0.3f * (float) k - 0.5f;
        }
}

static void
test_ramp (void)
{
    g_autoptr (GError) error = NULL;
    Act img = { 0 };
    g_assert_true (act_alloc (&img, 1, H, W, C, &error));
    uint8_t hole[W * H];
    ramp_image (&img, hole, 30, 22, 14);
    g_autofree float *truth = g_memdup2 (img.data, sizeof (float) * W * H * C);
    for (size_t i = 0; i < (size_t) W * H; i++) /* what was there must not leak in */
        if (hole[i])
            for (int k = 0; k < C; k++)
                img.data[i * C + k] = 5.0f;
    g_assert_true (fill_membrane (&img, hole, &error));
    g_assert_no_error (error);
    double worst = 0;
    for (size_t i = 0; i < (size_t) W * H * C; i++) {
        if (hole[i / C])
            worst = MAX (worst, fabs (img.data[i] - truth[i]));
        else
            g_assert_cmpfloat (img.data[i], ==, truth[i]); /* known pixels: bit for bit */
    }
    /* the ramp spans 1.7 over the picture and 0.6 across the hole; a membrane is linear
     * there, so what is left is the relaxation's unfinished part: under 1 % of the range */
    g_test_message ("ramp: worst error in the hole %.4f", worst);
    g_assert_cmpfloat (worst, <, 0.017);
    act_free (&img);
}

static void
test_constant_and_whole (void)
{
    g_autoptr (GError) error = NULL;
    Act img = { 0 };
    g_assert_true (act_alloc (&img, 1, H, W, C, &error));
    uint8_t hole[W * H];
    for (size_t i = 0; i < (size_t) W * H; i++) {
        hole[i] = (i % W) > 40 || (i / W) < 5; /* a hole touching two edges */
        for (int k = 0; k < C; k++)
            img.data[i * C + k] = hole[i] ? -1.0f : 0.25f * (float) (k + 1);
    }
    g_assert_true (fill_membrane (&img, hole, &error));
    for (size_t i = 0; i < (size_t) W * H; i++)
        for (int k = 0; k < C; k++)
            g_assert_cmpfloat (fabs (img.data[i * C + k] - 0.25f * (float) (k + 1)), <, 1e-6);
    memset (hole, 1, sizeof hole);
    g_assert_true (fill_membrane (&img, hole, &error));
    for (size_t i = 0; i < (size_t) W * H * C; i++)
        g_assert_cmpfloat (img.data[i], ==, 0.0f);
    act_free (&img);
}

/* A fill between two different colours is a smooth blend: no step inside the hole is larger
 * than the jump across it spread over its width, and every value lies between the two. */
static void
test_smooth_between (void)
{
    g_autoptr (GError) error = NULL;
    Act img = { 0 };
    g_assert_true (act_alloc (&img, 1, H, W, 1, &error));
    uint8_t hole[W * H];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            size_t i = (size_t) y * W + x;
            hole[i] = x >= 16 && x < 48;
            img.data[i] = x < 32 ? -0.8f : 0.6f;
        }
    g_assert_true (fill_membrane (&img, hole, &error));
    for (int y = 0; y < H; y++)
        for (int x = 16; x < 48; x++) {
            float v = img.data[(size_t) y * W + x];
            g_assert_cmpfloat (v, >=, -0.8f - 1e-5);
            g_assert_cmpfloat (v, <=, 0.6f + 1e-5);
            float step = fabsf (img.data[(size_t) y * W + x + 1] - v);
            g_assert_cmpfloat (step, <, 3.0 * 1.4 / 32);
        }
    act_free (&img);
}

int
main (int argc, char **argv)
{
    g_test_init (&argc, &argv, NULL);
    g_test_add_func ("/fill/ramp", test_ramp);
    g_test_add_func ("/fill/constant-and-whole", test_constant_and_whole);
    g_test_add_func ("/fill/smooth-between", test_smooth_between);
    return g_test_run ();
}
