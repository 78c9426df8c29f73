/* tiles.h (private to core/run): overlapping windows over a latent, and the memory plan that
 * chooses their sizes from the budget (LdmSampleParams.memory_limit) before a run starts. */
#pragma once

#include "arch/model_config.h"
#include "nn/act.h"
#include "ldm.h"

#include <stdbool.h>
#include <stddef.h>

/* Windows of win_h x win_w over an h x w grid, `overlap` cells shared by neighbours; the last
 * window of an axis ends at the grid's edge. A grid no larger than its window is one window. */
typedef struct {
    int h, w, win_h, win_w, overlap_y, overlap_x;
    int n_y, n_x;
} Tiling;

/* win: the longest side a window may have; each axis gets as many windows as that side
 * needs, each as short as that count allows (a multiple of align). */
void  tiling_init   (Tiling *t, int h, int w, int win, int overlap, int align);
bool  tiling_whole  (const Tiling *t);
int   tiling_count  (const Tiling *t);
int   tiling_y      (const Tiling *t, int i); /* origin of row i of windows */
int   tiling_x      (const Tiling *t, int j);
/* The blending weight of cell (y, x) of window (i, j), the window scaled by `scale` (a
 * decoder's window: each latent cell is scale x scale pixels): 1 inside, falling smoothly to
 * almost 0 over the overlap towards a side that meets a neighbour, so neighbours cross-fade and
 * a window's own edge (where its network met zero padding) counts least; the sums are
 * normalised where windows overlap. */
float tiling_weight (const Tiling *t, int i, int j, int y, int x, int scale);

/* Window sides in latent cells; 0 = the whole latent. */
typedef struct {
    int unet, encode, decode;
} TilePlan;

/* What a run needs planned: the padded input (pw x ph), the latent (lw x lh), the decoded
 * output (ow x oh, = latent x the autoencoder's factor), the U-Net's batch (2 with CFG). */
typedef struct {
    const LdmModelConfig *config;
    LdmTask               task;
    int                   pw, ph, lw, lh, ow, oh, batch, unet_align;
    gboolean              encodes; /* the run encodes an image (inpainting, a start from one) */
    gboolean              bf16;    /* layers run in bfloat16: each holds a bf16 copy of its input */
} PlanInput;

/* The largest windows (up to the stage's cap: a U-Net's attention grows with the square of
 * the window's cells) whose estimated peak fits in `limit` bytes with what the process holds
 * already (`in_use`) and the run's whole-image buffers; a latent within its cap and the budget
 * runs whole. FALSE with LDM_ERROR_NO_MEMORY when even the smallest windows do not fit, the
 * message saying the size that would fit and the limit this size needs. */
gboolean tile_plan_make (const PlanInput *in, uint64_t limit, uint64_t in_use, TilePlan *plan,
                         GError **error);

/* Bytes the process holds now (its resident set, /proc/self/statm; 0 where unknown). */
uint64_t tile_resident_bytes (void);

/* The engine's windows set by a test (unit tests of internals): every run uses this plan
 * instead of the budget's; NULL returns to planning. */
void     pipeline_force_tiles (LdmEngine *engine, const TilePlan *plan);
/* The engine's first stage on SRC in windows of `win` latent cells (0: whole): encode (SRC an
 * image, OUT its latent) or decode (SRC a latent, OUT the image). For tests. */
gboolean pipeline_first_stage (LdmEngine *engine, const Act *src, bool encode, int win,
                               Act *out, GError **error);
