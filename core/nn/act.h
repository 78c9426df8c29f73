/* act.h (private to core/): activation buffers (NHWC float32) and the cheap layers between
 * the convolutions that need no oneDNN: concatenation, nearest upsampling, 2x2 average pooling,
 * addition. Plain loops, parallel with OpenMP. */
#pragma once

#include "nn/dnn.h"

/* Lets freed activations stay in the process's heap for the next ones (glibc's malloc
 * settings, process-wide, once): call it when an engine is made, before its first activation. */
void act_keep_freed_memory (void);

/* Allocates an n x h x w x c activation, followed by a zeroed tail that oneDNN's kernels may
 * read past the end (LDM_DNN_TAIL_FLOATS, alloc.h); FALSE (and a GError) when memory runs out. */
gboolean act_alloc (Act *a, int n, int h, int w, int c, GError **error);
void     act_free  (Act *a);  /* frees a->data and clears it; safe on a cleared Act */

/* out (n x h x w x (a.c + b.c)) = [a | b] along channels. */
void act_concat_channels (const Act *a, const Act *b, Act *out);
/* out (n x 2h x 2w x c): nearest-neighbour 2x upsampling. */
void act_upsample_nearest2x (const Act *in, Act *out);
/* out (n x h/2 x w/2 x c): 2x2 average pooling, stride 2 (floor). */
void act_avgpool2x2 (const Act *in, Act *out);
/* GroupNorm over an NHWC activation: per image and group of c / groups channels, subtract the
 * mean and divide by sqrt(variance + eps) (two-pass, accumulated in double), then scale by
 * gamma and shift by beta per channel, then SiLU when asked (in the same pass). in and out may
 * be the same. FALSE only when memory for its per-channel sums runs out. */
gboolean act_group_norm (const Act *in, Act *out, const float *gamma, const float *beta,
                         int groups, float eps, bool silu, GError **error);

/* Colour matching of a generated region (n = 1, h x w x c, c <= LDM_MATCH_MAX_CHANNELS; ref
 * the same shape): adds to x inside `region` (h x w bytes, non-zero = generated) the
 * per-channel difference of the means of ref and x over the ring: the pixels outside the
 * region where `near` (h x w, the region grown, e.g. by ldm_mask_grow) is positive, limited to
 * the top-left valid_w x valid_h pixels. Nothing changes when the ring is empty. FALSE only
 * for too many channels. */
#define LDM_MATCH_MAX_CHANNELS 4
gboolean act_match_region_mean (Act *x, const Act *ref, const uint8_t *region, const float *near,
                                int valid_w, int valid_h);
