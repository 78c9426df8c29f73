/* fill.h (private to core/): a classical fill of a hole, the start of `init = fill`. */
#pragma once

#include "nn/act.h"

/* Fills img (1 x h x w x c, c <= 8) where hole (h x w bytes, row stride w, non-zero = unknown)
 * is set with a smooth membrane from the pixels around it: pull-push over an image pyramid
 * (each level the mean of the known pixels below it), then, coarse to fine, the unknown
 * pixels of each level interpolated from the level above and relaxed towards the mean of
 * their neighbours (Gauss-Seidel). Known pixels are not changed. A hole covering the whole
 * picture becomes 0 (mid grey in [-1, 1]). FALSE (and a GError) only when memory runs out. */
gboolean fill_membrane (Act *img, const uint8_t *hole, GError **error);
