/* image_ops.h (private to core/): what the image operations of image_ops.c share with the
 * other run/ modules (the public ones, mask grow and blur, resize, are in ldm.h). */
#pragma once

#include <glib.h>

/* plane (w x h floats) blurred in place by a Gaussian of `sigma` truncated at `radius`, edges
 * replicated (separable: rows into tmp, columns back); tmp holds w x h floats. FALSE only when
 * memory for the kernel runs out. */
gboolean image_blur_plane (float *plane, float *tmp, int w, int h, double sigma, int radius);
