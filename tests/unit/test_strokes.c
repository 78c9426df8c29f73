/* test_strokes: the brush's region tracker (strokes.c) through the public API: which pixels
 * of a strokes layer changed, grouped and merged into regions, the dirty-region queue, and
 * the crop with context, which must be the Inpaint Selection filter's (ldm_region_crop on the
 * mask's bounds). Every expected rectangle is worked out by hand in the comments. */
#include "ldm.h"

#include <string.h>

enum { W = 64, H = 48, STRIDE = 70 }; /* rows padded: the padding must be ignored */

typedef struct {
    uint8_t px[H * STRIDE];
} Layer;

static void
layer_init (Layer *l)
{
    memset (l->px, 0, sizeof l->px);
    for (int y = 0; y < H; y++)
        memset (l->px + y * STRIDE + W, 0xAB, STRIDE - W); /* garbage beyond the width */
}

/* A disk of radius r at (cx, cy) set to value v; returns its pixel count. */
static int
layer_disk (Layer *l, int cx, int cy, int r, uint8_t v)
{
    int n = 0;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            if ((x - cx) * (x - cx) + (y - cy) * (y - cy) <= r * r) {
                l->px[y * STRIDE + x] = v;
                n++;
            }
    return n;
}

static void
layer_hline (Layer *l, int x0, int x1, int y, uint8_t v)
{
    for (int x = x0; x <= x1; x++)
        l->px[y * STRIDE + x] = v;
}

static void
assert_rect (LdmRect r, int x, int y, int w, int h)
{
    g_assert_cmpint (r.x, ==, x);
    g_assert_cmpint (r.y, ==, y);
    g_assert_cmpint (r.width, ==, w);
    g_assert_cmpint (r.height, ==, h);
}

static LdmStrokeTracker *
tracker (int d)
{
    GError *error = NULL;
    LdmStrokeTracker *t = ldm_stroke_tracker_new (W, H, d, &error);
    g_assert_no_error (error);
    g_assert_nonnull (t);
    return t;
}

static int
update (LdmStrokeTracker *t, const Layer *l, LdmStrokeRegion *r, int max)
{
    GError *error = NULL;
    int n = -1;
    g_assert_true (ldm_stroke_tracker_update (t, l->px, STRIDE, r, max, &n, &error));
    g_assert_no_error (error);
    return n;
}

/* A tracker with merge distance d, its layer (empty) and room for 8 regions. */
typedef struct {
    LdmStrokeTracker *t;
    Layer             l;
    LdmStrokeRegion   r[8];
} Strokes;

static void
strokes_init (Strokes *s, int d)
{
    s->t = tracker (d);
    layer_init (&s->l);
}

static void
strokes_clear (Strokes *s)
{
    g_clear_pointer (&s->t, ldm_stroke_tracker_free);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Strokes, strokes_clear)

/* The regions of what changed since the last call (at most 8) in s->r; returns their count. */
static int
strokes_update (Strokes *s)
{
    return update (s->t, &s->l, s->r, 8);
}

/* The error a call with bad arguments must give, cleared for the next. */
static void
assert_argument_error (GError **error)
{
    g_assert_error (*error, LDM_ERROR, LDM_ERROR_ARGUMENT);
    g_clear_error (error);
}

/* A painted dot: one region, its box exactly; the same layer again: nothing. */
static void
test_dot (void)
{
    g_auto (Strokes) s = { 0 };
    strokes_init (&s, LDM_STROKE_MERGE_DISTANCE);
    g_assert_cmpint (strokes_update (&s), ==, 0); /* an empty layer is what it starts with */
    int n = layer_disk (&s.l, 20, 15, 3, 255);
    g_assert_cmpint (n, ==, 29); /* lattice points of a radius-3 disk */
    g_assert_cmpint (strokes_update (&s), ==, 1);
    assert_rect (s.r[0].box, 17, 12, 7, 7); /* x 17..23, y 12..18 */
    g_assert_cmpint (s.r[0].painted, ==, 29);
    g_assert_cmpint (s.r[0].erased, ==, 0);
    g_assert_cmpint (strokes_update (&s), ==, 0);
    /* a soft brush over it: 255 -> 128 is a loss, 0 -> 40 a gain; both count */
    s.l.px[15 * STRIDE + 20] = 128;
    s.l.px[30 * STRIDE + 40] = 40;
    g_assert_cmpint (strokes_update (&s), ==, 2); /* gap 30 - 19 = 11 rows, 40 - 21 = 19 cols */
    assert_rect (s.r[0].box, 20, 15, 1, 1);
    g_assert_cmpint (s.r[0].erased, ==, 1);
    assert_rect (s.r[1].box, 40, 30, 1, 1);
    g_assert_cmpint (s.r[1].painted, ==, 1);
}

/* Two strokes far apart: two regions, sorted by top edge. */
static void
test_distant (void)
{
    g_auto (Strokes) s = { 0 };
    strokes_init (&s, 16);
    layer_hline (&s.l, 50, 59, 40, 255);
    layer_hline (&s.l, 2, 11, 5, 255);
    g_assert_cmpint (strokes_update (&s), ==, 2); /* 34 rows between them */
    assert_rect (s.r[0].box, 2, 5, 10, 1);
    assert_rect (s.r[1].box, 50, 40, 10, 1);
    g_assert_cmpint (s.r[0].painted, ==, 10);
    g_assert_cmpint (s.r[1].painted, ==, 10);
    /* no room for two: one region, the box of every change */
    Layer e;
    layer_init (&e);
    g_autoptr (LdmStrokeTracker) t2 = tracker (16);
    g_assert_cmpint (update (t2, &s.l, s.r, 1), ==, 1);
    assert_rect (s.r[0].box, 2, 5, 58, 36);
    g_assert_cmpint (s.r[0].painted, ==, 20);
}

/* The merge distance at its edge: a gap of exactly d merges, d + 1 does not; at every
 * distance the same (the cell size depends on d). */
static void
test_near (void)
{
    for (int d = 0; d <= 20; d++)
        for (int extra = 0; extra <= 1; extra++) {
            g_auto (Strokes) s = { 0 };
            strokes_init (&s, d);
            int x0 = 12 + d + extra; /* first stroke ends at x = 11: d + extra columns between */
            layer_hline (&s.l, 2, 11, 5, 255);
            layer_hline (&s.l, x0, x0 + 5, 6, 255); /* the next row: 0 rows between */
            int n = strokes_update (&s);
            if (extra == 0) {
                g_assert_cmpint (n, ==, 1);
                assert_rect (s.r[0].box, 2, 5, x0 + 6 - 2, 2);
                g_assert_cmpint (s.r[0].painted, ==, 16);
            } else {
                g_assert_cmpint (n, ==, 2);
                assert_rect (s.r[0].box, 2, 5, 10, 1);
                assert_rect (s.r[1].box, x0, 6, 6, 1);
            }
        }
    /* boxes merge, not pixels: A (a line, x 0..30 at y 0) and B (30, 11) are 10 rows
     * apart; their box (x 0..30, y 0..11) is 10 rows above C (0, 22), whose gap to A is 21
     * rows and to B 29 columns: with d = 10 all three are one */
    g_auto (Strokes) s = { 0 };
    strokes_init (&s, 10);
    layer_hline (&s.l, 0, 30, 0, 255);
    s.l.px[11 * STRIDE + 30] = 255;
    s.l.px[22 * STRIDE + 0] = 255;
    g_assert_cmpint (strokes_update (&s), ==, 1);
    assert_rect (s.r[0].box, 0, 0, 31, 23);
    g_assert_cmpint (s.r[0].painted, ==, 33);
    /* one row further down, C stays apart */
    g_autoptr (LdmStrokeTracker) t2 = tracker (10);
    s.l.px[22 * STRIDE + 0] = 0;
    s.l.px[23 * STRIDE + 0] = 255;
    g_assert_cmpint (update (t2, &s.l, s.r, 8), ==, 2);
    assert_rect (s.r[0].box, 0, 0, 31, 12);
    assert_rect (s.r[1].box, 0, 23, 1, 1);
}

/* Erasing a stroke reports where paint was lost. */
static void
test_erase (void)
{
    g_auto (Strokes) s = { 0 };
    strokes_init (&s, 16);
    layer_disk (&s.l, 30, 20, 5, 255);
    g_assert_cmpint (strokes_update (&s), ==, 1);
    assert_rect (s.r[0].box, 25, 15, 11, 11);
    /* the eraser over the disk's right part: columns 32..35 */
    int lost = 0;
    for (int y = 0; y < H; y++)
        for (int x = 32; x <= 35; x++)
            if (s.l.px[y * STRIDE + x]) {
                s.l.px[y * STRIDE + x] = 0;
                lost++;
            }
    g_assert_cmpint (strokes_update (&s), ==, 1);
    /* x 32..35; rows: x = 32 reaches y 20 +- 4 (4 + 16 = 20 <= 25, 25 + 4 > 25) */
    assert_rect (s.r[0].box, 32, 16, 4, 9);
    g_assert_cmpint (s.r[0].erased, ==, lost);
    g_assert_cmpint (s.r[0].painted, ==, 0);
    /* all of it gone */
    layer_init (&s.l);
    g_assert_cmpint (strokes_update (&s), ==, 1);
    assert_rect (s.r[0].box, 25, 15, 7, 11); /* what was left: x 25..31 */
    g_assert_cmpint (strokes_update (&s), ==, 0);
}

/* reset: the new coverage becomes the reference without a report */
static void
test_reset (void)
{
    g_auto (Strokes) s = { 0 };
    strokes_init (&s, 16);
    layer_disk (&s.l, 30, 20, 5, 255);
    g_assert_true (ldm_stroke_tracker_reset (s.t, s.l.px, STRIDE, NULL));
    g_assert_cmpint (strokes_update (&s), ==, 0);
}

/* More separate groups than LDM_STROKE_MAX_GROUPS: one region, the box of everything. */
static void
test_many_groups (void)
{
    enum { S = 256 };
    GError *error = NULL;
    g_autoptr (LdmStrokeTracker) t = ldm_stroke_tracker_new (S, S, 0, &error);
    g_assert_no_error (error);
    uint8_t *a = g_malloc0 (S * S);
    int n = 0;
    for (int y = 1; y < S; y += 3)
        for (int x = 2; x < S; x += 3) { /* one pixel in three each way: 85 x 85 = 7225 groups */
            a[y * S + x] = 9;
            n++;
        }
    LdmStrokeRegion r[4];
    int count = -1;
    g_assert_true (ldm_stroke_tracker_update (t, a, S, r, 4, &count, &error));
    g_assert_cmpint (count, ==, 1);
    assert_rect (r[0].box, 2, 1, 253, 253); /* x 2..254, y 1..253 */
    g_assert_cmpint (r[0].painted, ==, n);
    g_free (a);
}

/* The crop the brush asks for is the filter's for the same mask: bounds of its non-zero
 * pixels (gimp_selection_bounds) through ldm_region_crop; and the selection is alpha / 255. */
static void
test_crop (void)
{
    g_auto (Strokes) s = { 0 };
    strokes_init (&s, 16);
    layer_disk (&s.l, 20, 15, 3, 255);
    s.l.px[15 * STRIDE + 20] = 51;
    g_assert_cmpint (strokes_update (&s), ==, 1);

    int x0 = W, y0 = H, x1 = -1, y1 = -1;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            if (s.l.px[y * STRIDE + x]) {
                x0 = MIN (x0, x), y0 = MIN (y0, y), x1 = MAX (x1, x), y1 = MAX (y1, y);
            }
    LdmRect bounds = { x0, y0, x1 - x0 + 1, y1 - y0 + 1 };
    LdmRegionParams p;
    ldm_region_params_init (&p);
    for (int k = 0; k < 2; k++) {
        if (k == 1)
            p = (LdmRegionParams) { .context_padding = 10, .working_size = 512, .mask_grow = 2,
                                    .mask_blur = 3 };
        LdmRect want, got;
        g_assert_true (ldm_region_crop (&p, bounds, (LdmRect) { 0, 0, W, H }, &want));
        g_assert_true (ldm_stroke_region_crop (&p, s.r[0].box, W, H, &got));
        assert_rect (got, want.x, want.y, want.width, want.height);
        if (k == 0) /* margin 76: the whole layer */
            assert_rect (got, 0, 0, W, H);
        else /* margin 15: x 17 - 15 = 2 .. 23 + 15 = 38, y 0 (clamped) .. 18 + 15 = 33 */
            assert_rect (got, 2, 0, 37, 34);

        float *sel = g_new (float, (size_t) got.width * got.height);
        g_assert_true (ldm_stroke_tracker_selection (s.t, got, sel, NULL));
        for (int y = 0; y < got.height; y++)
            for (int x = 0; x < got.width; x++)
                g_assert_cmpfloat (sel[y * got.width + x], ==,
                                   s.l.px[(got.y + y) * STRIDE + got.x + x] / 255.0f);
        g_assert_cmpfloat (sel[(15 - got.y) * got.width + 20 - got.x], ==, 0.2f);
        g_free (sel);
    }
    LdmRect crop;
    g_assert_false (ldm_stroke_region_crop (&p, (LdmRect) { W, 0, 5, 5 }, W, H, &crop));
    g_assert_cmpint (crop.width, ==, 0);
}

/* The queue of dirty regions: separate ones stay, one that touches grows into one and keeps
 * the earliest place; a full queue grows its last. */
static void
test_queue (void)
{
    LdmRect q[3];
    int n = 0;
    g_assert_cmpint (ldm_stroke_queue_add (q, &n, 3, (LdmRect) { 30, 0, 5, 5 }, 0, NULL), ==, 0);
    g_assert_cmpint (ldm_stroke_queue_add (q, &n, 3, (LdmRect) { 0, 0, 10, 10 }, 0, NULL), ==, 1);
    g_assert_cmpint (ldm_stroke_queue_add (q, &n, 3, (LdmRect) { 0, 40, 4, 4 }, 0, NULL), ==, 2);
    g_assert_cmpint (n, ==, 3);
    /* x 10..29: touches both (shares the edge at x = 10 and x = 30) */
    g_assert_cmpint (ldm_stroke_queue_add (q, &n, 3, (LdmRect) { 10, 2, 20, 1 }, 0, NULL), ==, 0);
    g_assert_cmpint (n, ==, 2);
    assert_rect (q[0], 0, 0, 35, 10);
    assert_rect (q[1], 0, 40, 4, 4);
    /* one column apart: separate with 0, merged with 1 */
    g_assert_cmpint (ldm_stroke_queue_add (q, &n, 3, (LdmRect) { 5, 45, 2, 2 }, 0, NULL), ==, 2);
    n = 2;
    g_assert_cmpint (ldm_stroke_queue_add (q, &n, 3, (LdmRect) { 5, 45, 2, 2 }, 1, NULL), ==, 1);
    g_assert_cmpint (n, ==, 2);
    assert_rect (q[1], 0, 40, 7, 7);
    /* full */
    g_assert_cmpint (ldm_stroke_queue_add (q, &n, 3, (LdmRect) { 60, 60, 1, 1 }, 0, NULL), ==, 2);
    g_assert_cmpint (ldm_stroke_queue_add (q, &n, 3, (LdmRect) { 90, 90, 1, 1 }, 0, NULL), ==, 2);
    g_assert_cmpint (n, ==, 3);
    assert_rect (q[2], 60, 60, 31, 31);
    /* errors */
    GError *error = NULL;
    g_assert_cmpint (ldm_stroke_queue_add (q, &n, 3, (LdmRect) { 0, 0, 0, 1 }, 0, &error), ==, -1);
    assert_argument_error (&error);
    g_assert_cmpint (ldm_stroke_queue_add (q, &n, 3, (LdmRect) { 0, 0, 1, 1 }, -1, &error), ==, -1);
    assert_argument_error (&error);
    n = 4;
    g_assert_cmpint (ldm_stroke_queue_add (q, &n, 3, (LdmRect) { 0, 0, 1, 1 }, 0, &error), ==, -1);
    assert_argument_error (&error);
}

/* Bad sizes and arguments: errors, nothing changed. */
static void
test_errors (void)
{
    const int bad[][2] = { { 0, 10 }, { 10, 0 }, { -1, 10 }, { 65537, 1 }, { 1, 70000 } };
    for (size_t i = 0; i < G_N_ELEMENTS (bad); i++) {
        GError *error = NULL;
        g_assert_null (ldm_stroke_tracker_new (bad[i][0], bad[i][1], 16, &error));
        assert_argument_error (&error);
    }
    GError *error = NULL;
    g_assert_null (ldm_stroke_tracker_new (W, H, -1, &error));
    assert_argument_error (&error);

    g_autoptr (LdmStrokeTracker) t = tracker (16);
    Layer l;
    LdmStrokeRegion r[4];
    int n = 7;
    layer_init (&l);
    layer_hline (&l, 2, 11, 5, 255);
    g_assert_false (ldm_stroke_tracker_update (t, l.px, W - 1, r, 4, &n, &error));
    g_assert_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT);
    g_assert_cmpint (n, ==, 0);
    g_clear_error (&error);
    g_assert_false (ldm_stroke_tracker_update (t, NULL, STRIDE, r, 4, &n, &error));
    assert_argument_error (&error);
    g_assert_false (ldm_stroke_tracker_update (t, l.px, STRIDE, r, 0, &n, &error));
    assert_argument_error (&error);
    g_assert_false (ldm_stroke_tracker_reset (t, l.px, 3, &error));
    assert_argument_error (&error);
    /* the failed calls remembered nothing: the stroke is still new */
    g_assert_cmpint (update (t, &l, r, 4), ==, 1);
    assert_rect (r[0].box, 2, 5, 10, 1);

    float sel[16];
    const LdmRect outside[] = { { -1, 0, 2, 2 }, { W - 1, 0, 2, 2 }, { 0, H - 3, 4, 4 },
                                { 0, 0, 0, 4 } };
    for (size_t i = 0; i < G_N_ELEMENTS (outside); i++) {
        g_assert_false (ldm_stroke_tracker_selection (t, outside[i], sel, &error));
        assert_argument_error (&error);
    }
}

int
main (int argc, char **argv)
{
    g_test_init (&argc, &argv, NULL);
    g_test_add_func ("/strokes/dot", test_dot);
    g_test_add_func ("/strokes/distant", test_distant);
    g_test_add_func ("/strokes/near", test_near);
    g_test_add_func ("/strokes/erase", test_erase);
    g_test_add_func ("/strokes/reset", test_reset);
    g_test_add_func ("/strokes/many-groups", test_many_groups);
    g_test_add_func ("/strokes/crop", test_crop);
    g_test_add_func ("/strokes/queue", test_queue);
    g_test_add_func ("/strokes/errors", test_errors);
    return g_test_run ();
}
