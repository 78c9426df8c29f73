/* color_fix.h (private to core/): colour-true super-resolution and inpainting. */
#pragma once

#include "nn/act.h"

/* Makes hr (1 x H x W x c, a decoded upscale, values in [-1, 1]) agree with lr (1 x h x w x c,
 * the low-resolution input) in its low frequencies while keeping its detail: iterative
 * back-projection, hr += up (lr - down (hr)), `rounds` times, where down is the f x f area
 * mean and up is bilinear with pixel centres aligned, the result clipped to [-1, 1]. Only the
 * top-left valid_w x valid_h pixels of lr and their f x f blocks in hr are read and changed
 * (the rest is padding).
 * FALSE (and a GError) only when memory for the residual runs out. */
gboolean color_fix_backproject (Act *hr, const Act *lr, int f, int valid_w, int valid_h,
                                int rounds, GError **error);

/* dst (a new 1 x f h x f w x c activation) = src (1 x h x w x c, c <= 8) enlarged f times,
 * bilinear with pixel centres aligned (the interpolation the colour fix spreads with). */
gboolean act_upsample_bilinear (const Act *src, int f, Act *dst, GError **error);

/* Colour-true inpainting: inside `fill` (h x w bytes, row stride `stride`, non-zero =
 * generated), dec (1 x h x w x c, c <= 8, the decoded picture in [-1, 1]) takes its low
 * frequencies from guide (the same shape: the input with its hole filled classically, e.g. by
 * fill_membrane): dec += gauss_sigma (guide - dec), clipped to [-1, 1]. Detail finer than
 * about sigma pixels is the model's; colours and shading follow the surroundings. Outside
 * `fill` nothing changes. FALSE (and a GError) only when memory runs out. */
gboolean color_fix_fill (Act *dec, const Act *guide, const uint8_t *fill, int stride,
                         float sigma, GError **error);

/* Grain as around the hole: inside `fill`, where dec's detail finer than about sigma pixels
 * (dec minus its Gaussian blur, on grey) is stronger than `ceiling` times that of img's known
 * pixels nearest it (in amplitude: the root of the local energy, spread over `spread` pixels;
 * their energy carried into the hole by fill_membrane), the detail is scaled down to it: a small model draws the
 * same grain into a smooth, out-of-focus background as into fur. Never scaled up; outside
 * `fill` nothing changes; no known pixel: nothing to do. Only the valid_w x valid_h corner is
 * the picture: the rest (alignment padding) is neither known nor changed. FALSE (and a GError)
 * only when memory runs out. */
gboolean color_fix_grain (Act *dec, const Act *img, const uint8_t *fill, int stride,
                          int valid_w, int valid_h, float sigma, float spread, float ceiling,
                          GError **error);
