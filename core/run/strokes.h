/* strokes.h (private to core/): rectangle arithmetic of the brush's regions (strokes.c). The
 * public API is in ldm.h ("brush strokes"). */
#pragma once

#include "ldm.h"

/* Pixels strictly between two non-empty rectangles, the larger of the horizontal and vertical
 * gap: 0 when they overlap or touch (share an edge or a corner). 64-bit: no overflow. */
static inline int64_t
ldm_rect_gap (LdmRect a, LdmRect b)
{
    int64_t gx = MAX ((int64_t) b.x - ((int64_t) a.x + a.width),
                      (int64_t) a.x - ((int64_t) b.x + b.width));
    int64_t gy = MAX ((int64_t) b.y - ((int64_t) a.y + a.height),
                      (int64_t) a.y - ((int64_t) b.y + b.height));
    return MAX (MAX (gx, gy), 0);
}

/* The smallest rectangle holding both (non-empty, in int range) rectangles. */
static inline LdmRect
ldm_rect_union (LdmRect a, LdmRect b)
{
    int x0 = MIN (a.x, b.x), y0 = MIN (a.y, b.y);
    int x1 = MAX (a.x + a.width, b.x + b.width), y1 = MAX (a.y + a.height, b.y + b.height);
    return (LdmRect) { x0, y0, x1 - x0, y1 - y0 };
}
