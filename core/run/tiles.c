/* tiles.c: overlapping windows over a latent and the memory plan that sizes them.
 *
 * The estimates follow how the networks allocate (nn/autoencoder.c, nn/unet.c): a residual
 * block holds its input, two temporaries and its output at the block's width, oneDNN may
 * hold one more copy in its own layout, so a stage's peak is about 5 activations of its widest
 * level; the U-Net also keeps every input block's output for its skips; attention adds its
 * q, k, v and output and a score buffer of at most 64 M floats (nn/dnn.c); in bfloat16 each
 * layer also converts its input to a bf16 copy (2 bytes an element of the widest input; the
 * bf16 attention's copies fit in its score buffer's bytes). Measured on the
 * built-in models these bounds are above the real peaks (2048x2048 encode: 6.3 GB measured,
 * 8.1 GB estimated), so a plan that fits the estimate fits the machine.
 */
#include "run/tiles.h"

#include <math.h>
#include <stdio.h>
#include <unistd.h>

/* ---------------------------------------------------------------- windows */

static int
axis_count (int length, int win, int overlap)
{
    if (length <= win)
        return 1;
    int stride = MAX (1, win - overlap);
    return (length - win + stride - 1) / stride + 1;
}

/* Windows are not made shorter than this (or win): each window's GroupNorms take its own
 * statistics, which stray further from the whole's the less a window sees (the first stage's
 * 32-cell windows on a smooth picture: 17.7 levels off, 64 cells: 4.1; test_tiles). */
#define BALANCE_MIN 128

/* The window side of an axis: as many windows as sides of `win` need, each as short as that
 * count allows (a multiple of align, at most win, at least BALANCE_MIN). Windows of the full
 * side left most of the last one over its neighbour: a 1024-cell axis in 256-cell windows
 * overlapping by 32 took 5 of 256 (1280 cells of work), now 5 of 232 (1160); 1024 x 768 in
 * 20 U-Net windows: 1.67 -> 1.27 times the latent's cells. */
static int
axis_window (int length, int win, int overlap, int align)
{
    if (win <= 0 || win >= length)
        return length;
    int ov = MIN (overlap, win / 2);
    int n = axis_count (length, win, ov);
    int want = (length + (n - 1) * ov + n - 1) / n;
    want = MAX (want, MIN (win, BALANCE_MIN));
    want = (want + align - 1) / align * align;
    return MIN (win, want);
}

void
tiling_init (Tiling *t, int h, int w, int win, int overlap, int align)
{
    align = MAX (1, align);
    t->h = h;
    t->w = w;
    t->win_h = axis_window (h, win, overlap, align);
    t->win_w = axis_window (w, win, overlap, align);
    t->overlap_y = t->win_h == h ? 0 : MIN (overlap, t->win_h / 2);
    t->overlap_x = t->win_w == w ? 0 : MIN (overlap, t->win_w / 2);
    t->n_y = axis_count (h, t->win_h, t->overlap_y);
    t->n_x = axis_count (w, t->win_w, t->overlap_x);
}

bool
tiling_whole (const Tiling *t)
{
    return t->n_y == 1 && t->n_x == 1;
}

int
tiling_count (const Tiling *t)
{
    return t->n_y * t->n_x;
}

int
tiling_y (const Tiling *t, int i)
{
    return MIN (i * (t->win_h - t->overlap_y), t->h - t->win_h);
}

int
tiling_x (const Tiling *t, int j)
{
    return MIN (j * (t->win_w - t->overlap_x), t->w - t->win_w);
}

/* Position i of n cells (scale sub-cells each) of a window: 1 inside, falling to almost 0 over
 * the overlap on a side that meets a neighbour (smoothstep: a window's own edge, where a
 * network sees its zero padding, gets the least weight), 1 up to a side on the grid's edge,
 * where no other window covers the cells. */
static float
ramp (int i, int n, int overlap, int scale, bool first, bool last)
{
    if (overlap <= 0)
        return 1.0f;
    float len = (float) (overlap * scale);
    float lo = first ? 1.0f : ((float) i + 0.5f) / len;
    float hi = last ? 1.0f : ((float) (n * scale - i) - 0.5f) / len;
    float u = MIN (1.0f, MIN (lo, hi));
    return u * u * (3.0f - 2.0f * u);
}

float
tiling_weight (const Tiling *t, int i, int j, int y, int x, int scale)
{
    return ramp (y, t->win_h, t->overlap_y, scale, i == 0, i == t->n_y - 1)
           * ramp (x, t->win_w, t->overlap_x, scale, j == 0, j == t->n_x - 1);
}

/* ---------------------------------------------------------------- estimates */

#define MB (1024.0 * 1024.0)
#define SCORES_MAX (64.0 * 1024 * 1024) /* floats: nn/dnn.c's ATTENTION_SCORES_MAX */

/* The first stage's peak on an image window of px pixels: 5 activations of each level's
 * width at its resolution (the widest decides), the mid attention on the smallest level. */
static double
autoencoder_bytes (const LdmAutoencoderConfig *ae, double px, bool bf16)
{
    double peak = 0, level_px = px, per_value = 5.0 * 4.0 + (bf16 ? 2.0 : 0.0);
    int c = ae->ch;
    for (int l = 0; l < ae->n_levels; l++) {
        int out_c = ae->ch * ae->ch_mult[l];
        peak = MAX (peak, per_value * MAX (c, out_c) * level_px);
        c = out_c;
        if (l + 1 < ae->n_levels)
            level_px /= 4;
    }
    if (ae->mid_attention || ae->n_attn_resolutions > 0)
        peak += 4.0 * 4.0 * c * level_px + 4.0 * MIN (level_px * level_px, SCORES_MAX);
    return peak;
}

static bool
unet_attends (const LdmUnetConfig *u, int ds)
{
    for (int i = 0; i < u->n_attention_resolutions; i++)
        if (u->attention_resolutions[i] == ds)
            return true;
    return false;
}

/* The U-Net's peak on a latent window of px cells, batch b: the skips (every input block's
 * output), 6 activations of the working level (concatenations, residual temporaries,
 * oneDNN's copy; bf16: the copy of a layer's input, at most a concatenation's 2c wide) and
 * attention's q, k, v, output and scores. */
static double
unet_bytes (const LdmUnetConfig *u, double px, int batch, bool bf16)
{
    double skips = 4.0 * u->model_channels * px, work = 0, attn = 0, level_px = px;
    double per_value = 6.0 * 4.0 + (bf16 ? 2.0 : 0.0);
    for (int l = 0, ds = 1; l < u->n_levels; l++, ds *= 2) {
        int c = u->model_channels * u->channel_mult[l];
        skips += 4.0 * c * level_px * (u->num_res_blocks + 1);
        work = MAX (work, per_value * 2 * c * level_px);
        if (unet_attends (u, ds) || (l + 1 == u->n_levels && u->n_attention_resolutions > 0)) {
            int heads = u->num_heads > 0 ? u->num_heads
                                         : MAX (1, c / MAX (1, u->num_head_channels));
            double scores = MIN ((double) heads * level_px * level_px, SCORES_MAX);
            attn = MAX (attn, 4.0 * (5.0 * c * level_px + scores));
        }
        if (l + 1 < u->n_levels)
            level_px /= 4;
    }
    return batch * (skips + work) + attn;
}

/* Bytes held for the whole run at once, outside the networks: the input and its copies in
 * float, the latents the sampler keeps (x, eps, its history, the known latents, the start),
 * the decoded picture with its blend weights and what the colour fixes make of it. */
static double
whole_run_bytes (const PlanInput *in)
{
    const LdmModelConfig *c = in->config;
    double in_px = (double) in->pw * in->ph, lat = (double) in->lw * in->lh;
    double out_px = (double) in->ow * in->oh;
    int zc = c->unet.out_channels, cond = c->unet.in_channels;
    double latents = 4.0 * lat * (8.0 * zc + 2.0 * cond);
    double input = 4.0 * in_px * 3 * 3;  /* the image, the masked or enlarged copy, a guide */
    double output = out_px * (4.0 * 3 * 3 + 4.0 + 8.0); /* decoded, fixes, weights, bytes */
    return latents + input + output;
}

/* The largest side for a stage: a U-Net's attention grows with the square of its tokens, so
 * its windows hold at most 64 x 64 tokens on the finest level that attends (and no less than
 * 160 cells, what ran whole before there was a plan); the first stage is convolutional. */
static int
unet_cap (const LdmUnetConfig *u)
{
    int finest = 0;
    for (int i = 0; i < u->n_attention_resolutions; i++)
        if (!finest || u->attention_resolutions[i] < finest)
            finest = u->attention_resolutions[i];
    return finest ? MAX (160, 64 * finest) : 256;
}

#define AE_CAP 256
#define MIN_WINDOW 32
static const int WINDOWS[] = { 512, 384, 320, 256, 192, 160, 128, 96, 64, 48, MIN_WINDOW };

typedef double (*StageBytes) (const PlanInput *in, int win);

static double
unet_stage (const PlanInput *in, int win)
{
    double cells = win ? (double) MIN (win, in->lw) * MIN (win, in->lh)
                       : (double) in->lw * in->lh;
    return unet_bytes (&in->config->unet, cells, in->batch, in->bf16);
}

static int
ae_factor (const PlanInput *in)
{
    return in->lw > 0 ? MAX (1, in->ow / in->lw) : 1;
}

static double
decode_stage (const PlanInput *in, int win)
{
    int f = ae_factor (in);
    double cells = win ? (double) MIN (win, in->lw) * MIN (win, in->lh)
                       : (double) in->lw * in->lh;
    return autoencoder_bytes (&in->config->first_stage, cells * f * f, in->bf16);
}

static double
encode_stage (const PlanInput *in, int win)
{
    return in->encodes ? decode_stage (in, win) : 0.0;
}

/* The stage's window: whole when the latent is within cap and fits, else the largest
 * candidate within cap that fits (a multiple of align), else -1. */
static int
stage_window (const PlanInput *in, StageBytes bytes, int cap, int align, double room)
{
    if (MAX (in->lw, in->lh) <= cap && bytes (in, 0) <= room)
        return 0;
    for (size_t i = 0; i < G_N_ELEMENTS (WINDOWS); i++) {
        int win = WINDOWS[i] / align * align;
        if (win < MIN_WINDOW || win > cap || win >= MAX (in->lw, in->lh))
            continue;
        if (bytes (in, win) <= room)
            return win;
    }
    return -1;
}

gboolean
tile_plan_make (const PlanInput *in, uint64_t limit, uint64_t in_use, TilePlan *plan,
                GError **error)
{
    *plan = (TilePlan) { 0 };
    if (limit == 0) /* no budget: the caps alone */
        limit = G_MAXUINT64 / 2;
    int ucap = unet_cap (&in->config->unet), align = MAX (1, in->unet_align);
    double whole = whole_run_bytes (in);
    double room = (double) limit - (double) in_use - whole;
    plan->unet = stage_window (in, unet_stage, ucap, align, room);
    plan->encode = stage_window (in, encode_stage, AE_CAP, 1, room);
    plan->decode = stage_window (in, decode_stage, AE_CAP, 1, room);
    if (plan->unet >= 0 && plan->encode >= 0 && plan->decode >= 0)
        return TRUE;
    /* what would fit: the smallest windows' peak and the whole-image buffers, which grow
     * with the area; the limit this size needs */
    double least = MAX (unet_stage (in, MIN_WINDOW), MAX (encode_stage (in, MIN_WINDOW),
                                                          decode_stage (in, MIN_WINDOW)));
    double need = (double) in_use + whole + least;
    double spare = (double) limit - (double) in_use - least;
    double scale = spare > 0 && whole > 0 ? sqrt (spare / whole) : 0.0;
    int fit_w = (int) (in->pw * MIN (scale, 1.0)), fit_h = (int) (in->ph * MIN (scale, 1.0));
    const char *what = in->task == LDM_TASK_UPSCALE ? "upscaling" : "inpainting";
    if (fit_w >= 8 && fit_h >= 8)
        g_set_error (error, LDM_ERROR, LDM_ERROR_NO_MEMORY,
                     "%s %dx%d needs about %.0f MB, more than the memory limit of %.0f MB "
                     "(%.0f MB in use already): within the limit, at most about %dx%d fits; "
                     "or raise the memory limit to %.0f MB",
                     what, in->pw, in->ph, ceil (need / MB), (double) limit / MB,
                     (double) in_use / MB, fit_w, fit_h, ceil (need / MB));
    else
        g_set_error (error, LDM_ERROR, LDM_ERROR_NO_MEMORY,
                     "%s %dx%d needs about %.0f MB, more than the memory limit of %.0f MB "
                     "(%.0f MB in use already): no image fits; raise the memory limit to "
                     "%.0f MB", what, in->pw, in->ph, ceil (need / MB), (double) limit / MB,
                     (double) in_use / MB, ceil (need / MB));
    return FALSE;
}

uint64_t
tile_resident_bytes (void)
{
    FILE *f = fopen ("/proc/self/statm", "r");
    unsigned long long size = 0, resident = 0;
    if (!f)
        return 0;
    int n = fscanf (f, "%llu %llu", &size, &resident);
    fclose (f);
    long page = sysconf (_SC_PAGESIZE);
    return n == 2 && page > 0 ? (uint64_t) resident * (uint64_t) page : 0;
}
