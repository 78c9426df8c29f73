/* strokes.c: the GIMP-free part of the inpainting brush: which pixels of the strokes layer
 * changed since the last poll, grouped into regions; a queue of dirty regions; the crop with
 * context (region.c's, so the brush crops as the Inpaint Selection filter does).
 *
 * Grouping: the result is the fixpoint of "merge two boxes whose gap is <= merge distance",
 * starting from one box per changed pixel. To get there without one box per pixel, changed
 * pixels are first gathered in cells of c = d/2 + 1 pixels: two pixels in 8-neighbouring
 * cells are at most 2c - 2 <= d apart, so connecting them only merges what the box rule
 * would merge anyway; the components' boxes are then merged greedily (each merge removes a
 * box, so at most n^2 gap tests for n components, n capped at LDM_STROKE_MAX_GROUPS).
 */
#include "strokes.h"

#include "alloc.h"

#include <stdlib.h>
#include <string.h>

#define MAX_SIDE 65536

struct LdmStrokeTracker {
    int      width, height;
    int      merge_distance;
    uint8_t *coverage; /* width x height: the last seen alpha */
};

LdmStrokeTracker *
ldm_stroke_tracker_new (int width, int height, int merge_distance, GError **error)
{
    if (width < 1 || height < 1 || width > MAX_SIDE || height > MAX_SIDE) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "strokes layer of %d x %d pixels: each side must be 1 to %d", width, height,
                     MAX_SIDE);
        return NULL;
    }
    if (merge_distance < 0) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT, "negative merge distance %d",
                     merge_distance);
        return NULL;
    }
    uint8_t *coverage = ldm_try_alloc0_n ((size_t) width * height, 1, "the strokes coverage",
                                          error);
    if (!coverage)
        return NULL;
    LdmStrokeTracker *t = g_new (LdmStrokeTracker, 1);
    *t = (LdmStrokeTracker) { width, height, merge_distance, coverage };
    return t;
}

void
ldm_stroke_tracker_free (LdmStrokeTracker *t)
{
    if (!t)
        return;
    g_free (t->coverage);
    g_free (t);
}

static gboolean
check_alpha (const LdmStrokeTracker *t, const uint8_t *alpha, int stride, GError **error)
{
    if (!t || !alpha) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT, "no strokes tracker or no alpha");
        return FALSE;
    }
    if (stride < t->width) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "alpha stride %d is less than the layer width %d", stride, t->width);
        return FALSE;
    }
    return TRUE;
}

static void
remember (LdmStrokeTracker *t, const uint8_t *alpha, int stride)
{
    for (int y = 0; y < t->height; y++)
        memcpy (t->coverage + (size_t) y * t->width, alpha + (size_t) y * stride, t->width);
}

gboolean
ldm_stroke_tracker_reset (LdmStrokeTracker *t, const uint8_t *alpha, int stride, GError **error)
{
    if (!check_alpha (t, alpha, stride, error))
        return FALSE;
    remember (t, alpha, stride);
    return TRUE;
}

/* Grows region R by pixel (x, y), its coverage going from old to new. */
static void
region_add_pixel (LdmStrokeRegion *r, int x, int y, uint8_t old, uint8_t new)
{
    if (r->box.width == 0) {
        r->box = (LdmRect) { x, y, 1, 1 };
    } else {
        r->box = ldm_rect_union (r->box, (LdmRect) { x, y, 1, 1 });
    }
    if (new > old)
        r->painted++;
    else
        r->erased++;
}

static void
region_merge (LdmStrokeRegion *into, const LdmStrokeRegion *r)
{
    into->box = ldm_rect_union (into->box, r->box);
    into->painted += r->painted;
    into->erased += r->erased;
}

static int
region_order (const void *pa, const void *pb)
{
    const LdmRect *a = &((const LdmStrokeRegion *) pa)->box;
    const LdmRect *b = &((const LdmStrokeRegion *) pb)->box;
    if (a->y != b->y)
        return a->y < b->y ? -1 : 1;
    return a->x < b->x ? -1 : a->x > b->x;
}

/* Labels the 8-connected components of the flagged cells (cw x ch) in comp (-1: not
 * flagged); returns their number, stopping early past `cap`. */
static int
label_cells (const uint8_t *flag, int cw, int ch, int *comp, int *stack, int cap)
{
    size_t ncells = (size_t) cw * ch;
    for (size_t i = 0; i < ncells; i++)
        comp[i] = -1;
    int n = 0;
    for (size_t start = 0; start < ncells; start++) {
        if (!flag[start] || comp[start] >= 0)
            continue;
        if (n == cap)
            return n + 1;
        size_t top = 0;
        comp[start] = n;
        stack[top++] = (int) start;
        while (top) {
            int cell = stack[--top], cx = cell % cw, cy = cell / cw;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++) {
                    int nx = cx + dx, ny = cy + dy;
                    if (nx < 0 || ny < 0 || nx >= cw || ny >= ch)
                        continue;
                    size_t j = (size_t) ny * cw + nx;
                    if (flag[j] && comp[j] < 0) {
                        comp[j] = n; /* labelled when pushed: each cell once on the stack */
                        stack[top++] = (int) j;
                    }
                }
        }
        n++;
    }
    return n;
}

gboolean
ldm_stroke_tracker_update (LdmStrokeTracker *t, const uint8_t *alpha, int stride,
                           LdmStrokeRegion *out, int max, int *n_out, GError **error)
{
    if (n_out)
        *n_out = 0;
    if (!check_alpha (t, alpha, stride, error))
        return FALSE;
    if (!out || !n_out || max < 1) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "no room for the changed regions (max %d)", max);
        return FALSE;
    }
    int w = t->width, h = t->height;
    int c = t->merge_distance / 2 + 1;
    if (c > MAX_SIDE)
        c = MAX_SIDE; /* one cell holds the whole layer */
    int cw = (w + c - 1) / c, ch = (h + c - 1) / c;
    size_t ncells = (size_t) cw * ch;

    uint8_t *flag = ldm_try_alloc0_n (ncells, 1, "the changed cells", error);
    int *comp = flag ? ldm_try_alloc_n (ncells, sizeof (int), "the changed cells", error) : NULL;
    int *stack = comp ? ldm_try_alloc_n (ncells, sizeof (int), "the changed cells", error) : NULL;
    LdmStrokeRegion *groups = NULL;
    gboolean ok = stack != NULL;

    gboolean any = FALSE;
    LdmStrokeRegion total = { 0 };
    for (int y = 0; ok && y < h; y++) {
        const uint8_t *now = alpha + (size_t) y * stride, *was = t->coverage + (size_t) y * w;
        for (int x = 0; x < w; x++)
            if (now[x] != was[x]) {
                flag[(size_t) (y / c) * cw + x / c] = 1;
                region_add_pixel (&total, x, y, was[x], now[x]);
                any = TRUE;
            }
    }
    int n = 0;
    if (ok && any) {
        int ncomp = label_cells (flag, cw, ch, comp, stack, LDM_STROKE_MAX_GROUPS);
        if (ncomp > LDM_STROKE_MAX_GROUPS) {
            out[0] = total;
            n = 1;
        } else if ((groups = ldm_try_alloc0_n (ncomp, sizeof *groups, "the changed regions",
                                               error))) {
            for (int y = 0; y < h; y++) {
                const uint8_t *now = alpha + (size_t) y * stride;
                const uint8_t *was = t->coverage + (size_t) y * w;
                for (int x = 0; x < w; x++)
                    if (now[x] != was[x])
                        region_add_pixel (&groups[comp[(size_t) (y / c) * cw + x / c]], x, y,
                                          was[x], now[x]);
            }
            /* groups[0..n) are pairwise further apart than d; each new group swallows every
             * one it reaches (again after growing) before it joins them */
            for (int g = 0; g < ncomp; g++) {
                LdmStrokeRegion cur = groups[g];
                for (int i = 0; i < n;) {
                    if (ldm_rect_gap (cur.box, groups[i].box) <= t->merge_distance) {
                        region_merge (&cur, &groups[i]);
                        groups[i] = groups[--n];
                        i = 0;
                    } else {
                        i++;
                    }
                }
                groups[n++] = cur;
            }
            if (n > max) {
                out[0] = total;
                n = 1;
            } else {
                qsort (groups, n, sizeof *groups, region_order);
                memcpy (out, groups, n * sizeof *groups);
            }
        } else {
            ok = FALSE;
        }
    }
    if (ok) {
        if (any)
            remember (t, alpha, stride);
        *n_out = n;
    }
    g_free (groups);
    g_free (stack);
    g_free (comp);
    g_free (flag);
    return ok;
}

gboolean
ldm_stroke_tracker_selection (const LdmStrokeTracker *t, LdmRect crop, float *selection,
                              GError **error)
{
    if (!t || !selection || crop.width < 1 || crop.height < 1 || crop.x < 0 || crop.y < 0
        || crop.x > t->width - crop.width || crop.y > t->height - crop.height) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "crop %d x %d at (%d, %d) is not inside the %d x %d strokes layer",
                     crop.width, crop.height, crop.x, crop.y, t ? t->width : 0,
                     t ? t->height : 0);
        return FALSE;
    }
    for (int y = 0; y < crop.height; y++) {
        const uint8_t *row = t->coverage + (size_t) (crop.y + y) * t->width + crop.x;
        for (int x = 0; x < crop.width; x++)
            selection[(size_t) y * crop.width + x] = row[x] / 255.0f;
    }
    return TRUE;
}

int
ldm_stroke_queue_add (LdmRect *queue, int *n, int max, LdmRect rect, int merge_distance,
                      GError **error)
{
    if (!queue || !n || max < 1 || *n < 0 || *n > max) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT, "bad region queue (%d of %d)",
                     n ? *n : -1, max);
        return -1;
    }
    if (rect.width < 1 || rect.height < 1 || merge_distance < 0) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "cannot queue a %d x %d region with merge distance %d", rect.width,
                     rect.height, merge_distance);
        return -1;
    }
    for (int i = 0; i < *n; i++)
        if (queue[i].width < 1 || queue[i].height < 1) {
            g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT, "queued region %d is empty", i);
            return -1;
        }
    /* merged entries are marked empty (width 0) and dropped afterwards */
    LdmRect cur = rect;
    int first = -1;
    gboolean grew = TRUE;
    while (grew) {
        grew = FALSE;
        for (int i = 0; i < *n; i++)
            if (queue[i].width > 0 && ldm_rect_gap (cur, queue[i]) <= merge_distance) {
                cur = ldm_rect_union (cur, queue[i]);
                queue[i].width = 0;
                if (first < 0 || i < first)
                    first = i;
                grew = TRUE;
            }
    }
    if (first < 0) {
        if (*n == max) {
            queue[max - 1] = ldm_rect_union (queue[max - 1], rect);
            return max - 1;
        }
        queue[(*n)++] = rect;
        return *n - 1;
    }
    queue[first] = cur;
    int kept = 0, at = -1;
    for (int i = 0; i < *n; i++)
        if (queue[i].width > 0) {
            if (i == first)
                at = kept;
            queue[kept++] = queue[i];
        }
    *n = kept;
    return at;
}

gboolean
ldm_stroke_region_crop (const LdmRegionParams *params, LdmRect region, int width, int height,
                        LdmRect *crop)
{
    if (!params || !crop)
        return FALSE;
    return ldm_region_crop (params, region, (LdmRect) { 0, 0, width, height }, crop);
}
