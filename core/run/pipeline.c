/* pipeline.c: LdmEngine and the two procedures users run, as the authors define them.
 *
 * inpaint (LDM, scripts/inpaint.py):
 *   mask = pixel >= 0.5; masked = (1 - mask) image; both to [-1, 1]
 *   c = encode(masked) (not quantised); m = mask at (4i, 4j) in {-1, +1}
 *   sample x from noise with the U-Net on [x | c | m]; decode(quantize(x)); composite
 * inpaint (Stable Diffusion, inpaint_st.py):
 *   masked = image * (mask < 0.5) in [-1, 1]; c = scale_factor * mean(encode(masked));
 *   m = mask at (8i, 8j) in {0, 1}; U-Net on [x | m | c] with cross-attention on the
 *   context (CFG over [uncond, cond]); decode(x / scale_factor); composite. Without a given
 *   context the prompt and negative prompt make it (prompt.c: CLIP's tokenizer and the
 *   checkpoint's text encoder, loaded on the first prompt and kept by the engine)
 * inpaint (a text-to-image Stable Diffusion U-Net, 4 channels: no mask input):
 *   z = scale_factor * mean(encode(image)); U-Net on x alone (cross-attention as above), and
 *   after every step the latents away from the mask set to z noised to the step's level
 *   (keep_known, always on: it is how such a model inpaints); decode; composite
 * upscale (LDM SR, the LDSR notebook):
 *   LR to [-1, 1] at latent size; U-Net on [x | LR]; decode(quantize(x))
 *
 * The composite keeps every pixel outside the mask exactly as it was (the authors' float round
 * trip would change them by up to one level). Sides are padded (edges replicated, outside the
 * mask) to what the networks need and cropped back.
 */
#include "nn/act.h"
#include "alloc.h"
#include "nn/autoencoder.h"
#include "run/color_fix.h"
#include "run/fill.h"
#include "run/prompt.h"
#include "arch/model.h"
#include "run/sampler.h"
#include "run/tiles.h"
#include "nn/unet.h"

#include <math.h>
#include <string.h>

struct LdmEngine {
    LdmModelConfig config;
    Dnn           *dnn;
    Unet          *unet;
    Autoencoder   *ae;
    Schedule       schedule;
    PromptEncoder *prompt; /* SD: tokenizer + text encoder, made on the first prompt */
    char          *path;   /* the model file, for messages and the text encoder */
    TilePlan       plan;   /* the windows of the run under way (tile_plan_make) */
    gboolean       forced; /* a test's windows (pipeline_force_tiles) instead of a plan */
    TilePlan       forced_plan;
};

void
pipeline_force_tiles (LdmEngine *e, const TilePlan *plan)
{
    e->forced = plan != NULL;
    if (plan)
        e->forced_plan = *plan;
}

/* Cells neighbouring windows share: the U-Net's half a window up to 32 latent cells (a
 * U-Net's zero padding shows some 8 cells deep: the cross-fade must be wider); the first
 * stage's up to 16 (64 pixels at f4), enough for its 3x3 convolutions' reach to fade. */
static int
unet_overlap (int win)
{
    return MIN (32, win / 2);
}

static int
ae_overlap (int win)
{
    return MIN (16, win / 4);
}

void
ldm_engine_last_plan (const LdmEngine *e, LdmTilePlan *plan)
{
    *plan = (LdmTilePlan) { e->plan.unet, e->plan.unet ? unet_overlap (e->plan.unet) : 0,
                            e->plan.encode, e->plan.decode,
                            e->plan.decode ? ae_overlap (e->plan.decode) : 0 };
}

/* The default budget: three quarters of what the system can give (MemAvailable in
 * /proc/meminfo), 0 (no limit) where that is unknown. */
static uint64_t
default_memory_limit (void)
{
    g_autofree char *text = NULL;
    if (!g_file_get_contents ("/proc/meminfo", &text, NULL, NULL))
        return 0;
    const char *line = strstr (text, "MemAvailable:");
    if (!line)
        return 0;
    guint64 kb = g_ascii_strtoull (line + strlen ("MemAvailable:"), NULL, 10);
    return kb / 4 * 3 * 1024;
}

void
ldm_sample_params_init_authors (LdmSampleParams *p, LdmTask task)
{
    gboolean up = task == LDM_TASK_UPSCALE;
    *p = (LdmSampleParams) { .sampler = LDM_SAMPLER_DDIM, .steps = up ? 100 : 50,
                             .eta = up ? 1.0f : 0.0f, .guidance = 7.5f,
                             .init = LDM_INIT_NOISE, .strength = 1.0f,
                             .memory_limit = default_memory_limit () };
}

void
ldm_sample_params_init (LdmSampleParams *p, LdmTask task)
{
    ldm_sample_params_init_authors (p, task);
    p->sampler = LDM_SAMPLER_DEFAULT;
    /* Upscaling is led by its input: the built-in SR model's 10 DDIM steps score as its 20 on
     * docs/eval and on the unseen photos (PSNR, texture, colour), and a 1024x768 photo's 4x
     * then takes 7.6 min instead of 15 (2026-12-03) */
    p->steps = task == LDM_TASK_UPSCALE ? 10 : 25;
    p->keep_known = p->match_colors = p->color_fix = TRUE;
}

LdmSampler
ldm_sampler_for_model (LdmSampler sampler, LdmModelKind kind)
{
    if (sampler != LDM_SAMPLER_DEFAULT)
        return sampler;
    /* what SD users expect (webui, Krita); LDM models keep their authors' DDIM */
    return kind == LDM_MODEL_SD_INPAINT || kind == LDM_MODEL_SD ? LDM_SAMPLER_DPMPP_2M_KARRAS
                                                                 : LDM_SAMPLER_DDIM;
}

const char *
ldm_precision_name (LdmPrecision precision)
{
    switch (precision) {
    case LDM_PRECISION_AUTO: return "auto";
    case LDM_PRECISION_FP32: return "fp32";
    case LDM_PRECISION_BF16: return "bf16";
    }
    return "?";
}

gboolean
ldm_precision_parse (const char *name, LdmPrecision *precision)
{
    for (LdmPrecision p = LDM_PRECISION_AUTO; p <= LDM_PRECISION_BF16; p++)
        if (name && strcmp (name, ldm_precision_name (p)) == 0) {
            *precision = p;
            return TRUE;
        }
    return FALSE;
}

LdmEngine *
ldm_engine_new (const LdmModel *model, LdmPrecision precision, GError **error)
{
    bool bf16 = false;
    if (!dnn_precision_resolve (precision, &bf16, error))
        return NULL;
    const LdmModelConfig *config = model_config (model);
    if (config->kind == LDM_MODEL_UNKNOWN) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_UNSUPPORTED, "%s: not a model this engine runs",
                     ldm_tensor_file_path (model_file (model)));
        return NULL;
    }
    const char *path = ldm_tensor_file_path (model_file (model));
    if ((config->kind == LDM_MODEL_LDM_INPAINT || config->kind == LDM_MODEL_LDM_SR)
        && config->first_stage.kind != LDM_AUTOENCODER_VQ) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_UNSUPPORTED,
                     "%s: an %s model with a KL first stage is not supported (LDM models "
                     "condition on and decode a VQ latent)",
                     path, ldm_model_kind_name (config->kind));
        return NULL;
    }
    LdmEngine *e = g_new0 (LdmEngine, 1);
    e->config = *config;
    e->path = g_strdup (path);
    g_autofree char *unet_what = g_strdup_printf ("%s (U-Net)", path);
    g_autofree char *ae_what = g_strdup_printf ("%s (first stage)", path);
    Weights unet_w = { model_unet_tensor, model, unet_what };
    Weights ae_w = { model_first_stage_tensor, model, ae_what };
    act_keep_freed_memory ();
    if (!schedule_init (&e->schedule, config->beta_schedule, config->linear_start,
                        config->linear_end, config->timesteps, error)
        || !(e->dnn = dnn_new (bf16, error))
        || !(e->unet = unet_new (e->dnn, &config->unet, &unet_w, error))
        || !(e->ae = autoencoder_new (e->dnn, &config->first_stage, &ae_w, error))) {
        ldm_engine_free (e);
        return NULL;
    }
    return e;
}

void
ldm_engine_free (LdmEngine *e)
{
    if (!e)
        return;
    prompt_encoder_free (e->prompt);
    unet_free (e->unet);
    autoencoder_free (e->ae);
    dnn_free (e->dnn);
    g_free (e->path);
    g_free (e);
}

LdmPrecision
ldm_engine_precision (const LdmEngine *e)
{
    return dnn_precision (e->dnn);
}

LdmModelKind
ldm_engine_kind (const LdmEngine *e)
{
    return e->config.kind;
}

/* The engine's prompt encoder, made on first use. */
static PromptEncoder *
engine_prompt (LdmEngine *e, GError **error)
{
    if (!e->prompt)
        e->prompt = prompt_encoder_new (e->dnn, e->path, e->config.unet.context_dim, error);
    return e->prompt;
}

float *
ldm_engine_encode_prompt (LdmEngine *e, const char *prompt, int *tokens, int *dim,
                          GError **error)
{
    if (e->config.unet.context_dim <= 0) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_UNSUPPORTED,
                     "%s is an %s model, which takes no text", e->path,
                     ldm_model_kind_name (e->config.kind));
        return NULL;
    }
    float *context = NULL;
    PromptEncoder *pe = engine_prompt (e, error);
    if (!pe || !prompt_encoder_contexts (pe, prompt, NULL, &context, NULL, tokens, error))
        return NULL;
    *dim = e->config.unet.context_dim;
    return context;
}

/* The image side a model's runs pad to: the U-Net's downsampling (SR: the latent is the
 * low-res image itself), times the autoencoder's otherwise. */
static int
config_alignment (const LdmModelConfig *c)
{
    int u = 1 << (c->unet.n_levels - 1);
    return c->kind == LDM_MODEL_LDM_SR ? u : u * (1 << (c->first_stage.n_levels - 1));
}

int
ldm_engine_alignment (const LdmEngine *e)
{
    return config_alignment (&e->config);
}

static int
round_up (int v, int m)
{
    return (v + m - 1) / m * m;
}

/* An image's RGB in [-1, 1] (x / 255 * 2 - 1 in float32, as the authors), padded to pw x ph by
 * replicating the last row and column. */
static gboolean
image_to_act (const LdmImage *img, int pw, int ph, Act *out, GError **error)
{
    if (!act_alloc (out, 1, ph, pw, 3, error))
        return FALSE;
    for (int y = 0; y < ph; y++)
        for (int x = 0; x < pw; x++) {
            const uint8_t *p = img->pixels
                               + ((size_t) MIN (y, img->height - 1) * img->width
                                  + MIN (x, img->width - 1)) * img->channels;
            float *q = out->data + ((size_t) y * pw + x) * 3;
            for (int c = 0; c < 3; c++) {
                uint8_t v = img->channels >= 3 ? p[c] : p[0];
                q[c] = (float) v / 255.0f * 2.0f - 1.0f;
            }
        }
    return TRUE;
}

static gboolean
check_image (const LdmImage *img, const char *what, GError **error)
{
    if (!img || !img->pixels || img->width <= 0 || img->height <= 0
        || (img->channels != 1 && img->channels != 3 && img->channels != 4)) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT, "the %s is empty or not 8-bit grey, "
                     "RGB or RGBA", what);
        return FALSE;
    }
    if (img->width > LDM_IMAGE_MAX_SIDE || img->height > LDM_IMAGE_MAX_SIDE) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "the %s is %dx%d: at most %d pixels a side are supported", what,
                     img->width, img->height, LDM_IMAGE_MAX_SIDE);
        return FALSE;
    }
    return TRUE;
}

/* NCHW (1 x c x h x w) caller tensor into an NHWC latent. */
static void
nchw_to_nhwc (const float *src, Act *dst)
{
    for (int c = 0; c < dst->c; c++)
        for (int y = 0; y < dst->h; y++)
            for (int x = 0; x < dst->w; x++)
                dst->data[((size_t) y * dst->w + x) * dst->c + c]
                    = src[((size_t) c * dst->h + y) * dst->w + x];
}

/* x_T: the caller's, or standard normal noise from the seed (drawn in NCHW order). */
static gboolean
initial_latent (const LdmSampleParams *p, Rng *rng, Act *x, GError **error)
{
    size_t n = act_numel (x);
    if (p->x_T) {
        if (p->x_T_len != n) {
            g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                         "the initial latent has %zu values; this image needs 1x%dx%dx%d = %zu",
                         p->x_T_len, x->c, x->h, x->w, n);
            return FALSE;
        }
        nchw_to_nhwc (p->x_T, x);
        return TRUE;
    }
    g_autofree float *noise = ldm_try_alloc_n (n, sizeof (float), "the initial noise", error);
    if (!noise)
        return FALSE;
    rng_normal (rng, noise, n);
    nchw_to_nhwc (noise, x);
    return TRUE;
}

/* ---------------------------------------------------------------- tiling */

/* Copies window (y0, x0, h x w) of src into dst (a window-sized activation). */
static void
act_crop (const Act *src, int y0, int x0, Act *dst)
{
    for (int y = 0; y < dst->h; y++)
        memcpy (dst->data + (size_t) y * dst->w * dst->c,
                src->data + ((size_t) (y0 + y) * src->w + x0) * src->c,
                (size_t) dst->w * dst->c * sizeof (float));
}

/* ---------------------------------------------------------------- denoising */

typedef struct {
    LdmEngine   *engine;
    const Act   *cond;      /* channels concatenated after x (1 image) */
    int          batch;     /* 1, or 2 for classifier-free guidance [uncond, cond] */
    const float *contexts;  /* batch x tokens x dim, or NULL */
    int          tokens;
    float        guidance;
    Tiling       tiling;
    int          latent_h, latent_w;
    Act          in, out;   /* U-Net input and output of one window, allocated once */
    float       *weight_sum; /* latent_h x latent_w, when tiled */
    float       *window;     /* one window's eps, when tiled */
    const LdmSampleParams *params; /* for the progress of each window */
    int          step, steps; /* the step under way (1-based) and the schedule's count */
} Denoiser;

/* eps of the window at (y0, x0) into out_eps (window-sized). */
static gboolean
denoise_window (Denoiser *d, const float *x, int y0, int x0, double t, float *out_eps,
                GError **error)
{
    int xc = d->out.c, cc = d->cond->c, c = xc + cc;
    size_t pixels = (size_t) d->in.h * d->in.w;
    for (int b = 0; b < d->batch; b++)
        for (int y = 0; y < d->in.h; y++)
            for (int xx = 0; xx < d->in.w; xx++) {
                size_t src = (size_t) (y0 + y) * d->latent_w + x0 + xx;
                float *dst = d->in.data + ((size_t) b * pixels + (size_t) y * d->in.w + xx) * c;
                memcpy (dst, x + src * xc, xc * sizeof (float));
                memcpy (dst + xc, d->cond->data + src * cc, cc * sizeof (float));
            }
    float ts[2] = { (float) t, (float) t };
    if (!unet_forward (d->engine->unet, &d->in, ts, d->contexts, d->tokens, &d->out, error))
        return FALSE;
    size_t n = pixels * xc;
    if (d->batch == 1) {
        memcpy (out_eps, d->out.data, n * sizeof (float));
    } else { /* e = e_u + s (e_c - e_u) */
        const float *e_u = d->out.data, *e_c = d->out.data + n;
        for (size_t i = 0; i < n; i++)
            out_eps[i] = e_u[i] + d->guidance * (e_c[i] - e_u[i]);
    }
    return TRUE;
}

/* The U-Net's output over the whole latent, window by window when it is large, blended at
 * every step: eps = sum_w weight_w eps_w / sum_w weight_w. The samplers' steps are linear in
 * eps given x, so this is the same as averaging the windows' stepped latents with these
 * weights: the windows agree as the picture forms, not only at decoding. After each window
 * the tile progress may cancel: a cancel waits for at most one U-Net call. */
static gboolean
denoise_tiled (Denoiser *d, const float *x, double t, float *eps, GError **error)
{
    const Tiling *tl = &d->tiling;
    int xc = d->out.c, wh = tl->win_h, ww = tl->win_w, tiles = tiling_count (tl);
    size_t n = (size_t) d->latent_h * d->latent_w;
    memset (eps, 0, n * xc * sizeof (float));
    memset (d->weight_sum, 0, n * sizeof (float));
    for (int i = 0; i < tl->n_y; i++)
        for (int j = 0; j < tl->n_x; j++) {
            int y0 = tiling_y (tl, i), x0 = tiling_x (tl, j);
            if (!denoise_window (d, x, y0, x0, t, d->window, error))
                return FALSE;
            for (int y = 0; y < wh; y++)
                for (int xx = 0; xx < ww; xx++) {
                    float w = tiling_weight (tl, i, j, y, xx, 1);
                    size_t p = (size_t) (y0 + y) * d->latent_w + x0 + xx;
                    d->weight_sum[p] += w;
                    for (int k = 0; k < xc; k++)
                        eps[p * xc + k] += w * d->window[((size_t) y * ww + xx) * xc + k];
                }
            const LdmSampleParams *p = d->params;
            if (p->tile_progress
                && !p->tile_progress (p->progress_data, d->step, d->steps,
                                      i * tl->n_x + j + 1, tiles)) {
                g_set_error (error, LDM_ERROR, LDM_ERROR_CANCELLED, "cancelled");
                return FALSE;
            }
        }
    for (size_t p = 0; p < n; p++)
        for (int k = 0; k < xc; k++)
            eps[p * xc + k] /= d->weight_sum[p];
    return TRUE;
}

/* Fails (LDM_ERROR_MODEL, naming the model) when any of the n values is NaN or infinite: a
 * model with damaged weights, or one whose activations overflow float32, would otherwise give
 * a flat fill that looks like a result. One pass over a latent or an image: cheap. */
static gboolean
check_finite (const LdmEngine *e, const float *v, size_t n, const char *what, GError **error)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += !isfinite (v[i]);
    if (bad == 0)
        return TRUE;
    g_set_error (error, LDM_ERROR, LDM_ERROR_MODEL,
                 "%s: %s has %zu non-finite values (NaN or infinity) of %zu: the model's "
                 "weights are damaged, or its activations overflow",
                 e->path, what, bad, n);
    return FALSE;
}

/* The sampler's DenoiseFn: eps for (x, t) at level a. A v-prediction U-Net (parameterization
 * "v", v = sqrt(a) eps - sqrt(1 - a) x0) gives eps = sqrt(a) v + sqrt(1 - a) x_t. */
static gboolean
denoise (void *data, const float *x, double t, float a, float *eps, GError **error)
{
    Denoiser *d = data;
    gboolean ok = tiling_whole (&d->tiling) ? denoise_window (d, x, 0, 0, t, eps, error)
                                             : denoise_tiled (d, x, t, eps, error);
    if (ok && d->engine->config.v_prediction) {
        float sa = sqrtf (a), s1a = sqrtf (1.0f - a);
        size_t n = (size_t) d->latent_h * d->latent_w * d->out.c;
        for (size_t i = 0; i < n; i++)
            eps[i] = sa * eps[i] + s1a * x[i];
    }
    if (ok) { /* once per step, on what the U-Net predicted */
        char what[64];
        g_snprintf (what, sizeof what, "the U-Net's output at timestep %.6g", t);
        ok = check_finite (d->engine, eps, (size_t) d->latent_h * d->latent_w * d->out.c, what,
                           error);
    }
    return ok;
}

typedef struct {
    const LdmSampleParams *params;
    Act                    latent; /* shape of the latent, for the caller's NCHW noise */
    Denoiser              *denoiser;
} Hooks;

static gboolean
on_step (void *data, const SamplerStep *step)
{
    Hooks *h = data;
    const LdmSampleParams *p = h->params;
    h->denoiser->step = step->index + 2; /* the next one */
    h->denoiser->steps = step->count;
    return !p->progress || p->progress (p->progress_data, step->index + 1, step->count);
}

static gboolean
caller_noise (void *data, int index, float *out, size_t n, GError **error)
{
    Hooks *h = data;
    g_autofree float *nchw = ldm_try_alloc_n (n, sizeof (float), "noise", error);
    if (!nchw)
        return FALSE;
    if (!h->params->noise (h->params->noise_data, index, nchw, n, error))
        return FALSE;
    Act dst = h->latent;
    dst.data = out;
    nchw_to_nhwc (nchw, &dst);
    return TRUE;
}

/* Samples a latent (x: x_T in, x_0 out) conditioned on `cond`; with `known` (x-sized) the
 * elements where keep is set are blended to it after every step. */
static gboolean
sample (LdmEngine *e, const LdmSampleParams *p, const Act *cond, const float *known,
        const uint8_t *keep, const Act *init_x0, Rng *rng, Act *x, GError **error)
{
    Denoiser d = { .engine = e, .cond = cond, .batch = 1, .latent_h = x->h, .latent_w = x->w,
                   .params = p, .step = 1 };
    /* the count before the first step tells it: the DDIM schedule may make one more */
    d.steps = p->init == LDM_INIT_NOISE ? p->steps
                                        : MAX (1, (int) lrintf (p->strength * p->steps));
    tiling_init (&d.tiling, x->h, x->w, e->plan.unet, unet_overlap (e->plan.unet),
                 1 << (e->config.unet.n_levels - 1));
    g_autofree float *contexts = NULL;
    if (e->config.unet.context_dim > 0) {
        if (!(p->guidance >= LDM_GUIDANCE_MIN && p->guidance <= LDM_GUIDANCE_MAX)) {
            g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                         "guidance %g is out of range: it must be %g to %g", p->guidance,
                         LDM_GUIDANCE_MIN, LDM_GUIDANCE_MAX);
            return FALSE;
        }
        const float *context = p->context, *uncond = p->uncond_context;
        int tokens = p->context_tokens;
        g_autofree float *prompt_context = NULL, *prompt_uncond = NULL;
        if (!context) {
            /* the prompts through CLIP (CLIP("") for an empty one); no uncond at guidance 1 */
            PromptEncoder *pe = engine_prompt (e, error);
            if (!pe || !prompt_encoder_contexts (pe, p->prompt, p->negative_prompt,
                                          &prompt_context,
                                          p->guidance != 1.0f ? &prompt_uncond : NULL, &tokens,
                                          error))
                return FALSE;
            context = prompt_context;
            uncond = prompt_uncond;
        } else if (tokens <= 0) {
            g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                         "this model needs a text context (cross-attention)");
            return FALSE;
        }
        size_t one = (size_t) tokens * e->config.unet.context_dim;
        d.tokens = tokens;
        if (uncond && p->guidance != 1.0f) {
            d.batch = 2;
            d.guidance = p->guidance;
            contexts = ldm_try_alloc_n (2 * one, sizeof (float), "the text contexts", error);
            if (!contexts)
                return FALSE;
            memcpy (contexts, uncond, one * sizeof (float));
            memcpy (contexts + one, context, one * sizeof (float));
            d.contexts = contexts;
        } else {
            /* the Denoiser borrows it: keep the prompt's context alive past this block */
            d.contexts = context;
            if (prompt_context)
                contexts = g_steal_pointer (&prompt_context);
        }
    }
    int wh = d.tiling.win_h, ww = d.tiling.win_w;
    gboolean ok = act_alloc (&d.in, d.batch, wh, ww, x->c + cond->c, error)
                  && act_alloc (&d.out, d.batch, wh, ww, x->c, error);
    if (ok && !tiling_whole (&d.tiling)
        && (!(d.weight_sum = ldm_try_alloc_n ((size_t) x->h * x->w, sizeof (float),
                                              "tile weights", error))
            || !(d.window = ldm_try_alloc_n ((size_t) wh * ww * x->c, sizeof (float),
                                             "a tile", error))))
        ok = FALSE;
    if (ok) {
        SamplerParams sp = { .sampler = ldm_sampler_for_model (p->sampler, e->config.kind),
                             .steps = p->steps, .eta = p->eta };
        Hooks h = { .params = p, .latent = *x, .denoiser = &d };
        SamplerHooks hooks = { .noise = p->noise ? caller_noise : NULL, .on_step = on_step,
                               .data = &h, .known = known, .keep = keep,
                               .init_x0 = init_x0 ? init_x0->data : NULL,
                               .strength = p->strength };
        ok = sampler_run (&e->schedule, &sp, denoise, &d, x->data, act_numel (x), rng, &hooks,
                          error);
    }
    act_free (&d.in);
    act_free (&d.out);
    g_free (d.weight_sum);
    g_free (d.window);
    return ok;
}

/* The first stage over a large input, window by window (the plan's windows, in latent
 * cells; overlapping by ae_overlap), each window's output weighted by a ramp over the overlap
 * (at the output's resolution: `scale` output pixels a latent cell) and normalised where
 * windows meet. encode: src is the image (scale_in = f), the output the latent (1); decode:
 * src the latent (1), the output the image (f). */
static gboolean
first_stage_tiled (LdmEngine *e, const Act *src, bool encode, int win, Act *out,
                   GError **error)
{
    int f = autoencoder_factor (e->ae), in_scale = encode ? f : 1, out_scale = encode ? 1 : f;
    Tiling tl;
    tiling_init (&tl, src->h / in_scale, src->w / in_scale, win, ae_overlap (win), 1);
    if (tiling_whole (&tl))
        return encode ? autoencoder_encode (e->ae, src, out, error)
                      : autoencoder_decode (e->ae, src, out, error);
    gboolean ok = FALSE;
    Act window = { 0 }, res = { 0 };
    int oh = tl.h * out_scale, ow = tl.w * out_scale;
    float *weight_sum = ldm_try_alloc0_n ((size_t) oh * ow, sizeof (float), "tile weights",
                                          error);
    if (!weight_sum
        || !act_alloc (&window, 1, tl.win_h * in_scale, tl.win_w * in_scale, src->c, error))
        goto done;
    for (int i = 0; i < tl.n_y; i++)
        for (int j = 0; j < tl.n_x; j++) {
            int y0 = tiling_y (&tl, i), x0 = tiling_x (&tl, j);
            act_crop (src, y0 * in_scale, x0 * in_scale, &window);
            if (!(encode ? autoencoder_encode (e->ae, &window, &res, error)
                         : autoencoder_decode (e->ae, &window, &res, error)))
                goto done;
            if (!out->data) { /* its channels are the first window's */
                if (!act_alloc (out, 1, oh, ow, res.c, error))
                    goto done;
                memset (out->data, 0, act_numel (out) * sizeof (float));
            }
            for (int y = 0; y < res.h; y++)
                for (int xx = 0; xx < res.w; xx++) {
                    float w = tiling_weight (&tl, i, j, y, xx, out_scale);
                    size_t p = (size_t) (y0 * out_scale + y) * ow + x0 * out_scale + xx;
                    weight_sum[p] += w;
                    for (int k = 0; k < res.c; k++)
                        out->data[p * res.c + k] += w * res.data[((size_t) y * res.w + xx)
                                                                 * res.c + k];
                }
            act_free (&res);
        }
    for (size_t p = 0; p < (size_t) oh * ow; p++)
        for (int k = 0; k < out->c; k++)
            out->data[p * out->c + k] /= weight_sum[p];
    ok = TRUE;
done:
    act_free (&window);
    act_free (&res);
    g_free (weight_sum);
    if (!ok)
        act_free (out);
    return ok;
}

/* The windows of a run of model config C on a pw x ph (padded) input, planned from the
 * budget with `in_use` bytes held already, the layers in bfloat16 or not: the one planner of
 * ldm_inpaint, ldm_upscale and ldm_model_plan. */
static gboolean
plan_config (const LdmModelConfig *c, const LdmSampleParams *p, LdmTask task, int pw, int ph,
             bool bf16, uint64_t in_use, TilePlan *plan, GError **error)
{
    int f = 1 << (c->first_stage.n_levels - 1);
    bool sr = task == LDM_TASK_UPSCALE; /* SR: the latent is the low-res image itself */
    PlanInput in = { .config = c, .task = task, .pw = pw, .ph = ph,
                     .lw = sr ? pw : pw / f, .lh = sr ? ph : ph / f,
                     .batch = c->unet.context_dim > 0 && p->guidance != 1.0f ? 2 : 1,
                     .unet_align = 1 << (c->unet.n_levels - 1),
                     .encodes = !sr || p->init != LDM_INIT_NOISE, .bf16 = bf16 };
    in.ow = in.lw * f;
    in.oh = in.lh * f;
    return tile_plan_make (&in, p->memory_limit, in_use, plan, error);
}

/* The windows of a run on a pw x ph (padded) input, planned from the budget before anything
 * large is allocated; a test's forced windows instead when set. */
static gboolean
plan_run (LdmEngine *e, const LdmSampleParams *p, LdmTask task, int pw, int ph,
          GError **error)
{
    if (e->forced) {
        e->plan = e->forced_plan;
        return TRUE;
    }
    return plan_config (&e->config, p, task, pw, ph, dnn_uses_bf16 (e->dnn),
                        tile_resident_bytes (), &e->plan, error);
}

gboolean
ldm_model_plan (const LdmModel *model, LdmTask task, int width, int height,
                const LdmSampleParams *params, LdmTilePlan *plan, GError **error)
{
    const LdmModelConfig *c = model_config (model);
    LdmModelKind kind = c->kind;
    gboolean fits = task == LDM_TASK_UPSCALE
                        ? kind == LDM_MODEL_LDM_SR
                        : kind == LDM_MODEL_LDM_INPAINT || kind == LDM_MODEL_SD_INPAINT
                              || kind == LDM_MODEL_SD;
    if (!fits || !c->has_first_stage) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT, "a %s model does not %s",
                     ldm_model_kind_name (kind),
                     task == LDM_TASK_UPSCALE ? "upscale" : "inpaint");
        return FALSE;
    }
    if (width <= 0 || height <= 0 || width > LDM_IMAGE_MAX_SIDE || height > LDM_IMAGE_MAX_SIDE) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "the image must be 1 to %d pixels a side, not %dx%d", LDM_IMAGE_MAX_SIDE,
                     width, height);
        return FALSE;
    }
    int align = config_alignment (c);
    TilePlan t;
    /* no engine yet: planned for what precision auto would run (bf16 needs a little more) */
    if (!plan_config (c, params, task, round_up (width, align), round_up (height, align),
                      dnn_bf16_supported (), tile_resident_bytes (), &t, error))
        return FALSE;
    if (plan)
        *plan = (LdmTilePlan) { t.unet, t.unet ? unet_overlap (t.unet) : 0, t.encode, t.decode,
                                t.decode ? ae_overlap (t.decode) : 0 };
    return TRUE;
}

gboolean
pipeline_first_stage (LdmEngine *e, const Act *src, bool encode, int win, Act *out,
                      GError **error)
{
    return first_stage_tiled (e, src, encode, win, out, error);
}

/* decode(z) into out, window by window when the plan says so. */
static gboolean
decode_tiled (LdmEngine *e, const Act *z, Act *out, GError **error)
{
    return first_stage_tiled (e, z, false, e->plan.decode, out, error);
}

/* encode(image) into out (the latent's moments or VQ pre-quantisation values), window by
 * window when the plan says so. */
static gboolean
encode_tiled (LdmEngine *e, const Act *image, Act *out, GError **error)
{
    return first_stage_tiled (e, image, true, e->plan.encode, out, error);
}

/* ---------------------------------------------------------------- inpaint */

static gboolean
inpaint_condition_ldm (LdmEngine *e, const Act *image, const uint8_t *fill, int pw, int ph,
                       Act *cond, GError **error)
{
    int f = autoencoder_factor (e->ae);
    Act masked = { 0 }, enc = { 0 };
    if (!act_alloc (&masked, 1, ph, pw, 3, error))
        return FALSE;
    for (size_t p = 0; p < (size_t) pw * ph; p++)
        for (int c = 0; c < 3; c++) /* ((1 - m) * x01) * 2 - 1: masked pixels are -1 */
            masked.data[p * 3 + c] = fill[p] ? -1.0f : image->data[p * 3 + c];
    gboolean ok = encode_tiled (e, &masked, &enc, error)
                  && act_alloc (cond, 1, enc.h, enc.w, enc.c + 1, error);
    if (ok)
        for (int y = 0; y < enc.h; y++)
            for (int x = 0; x < enc.w; x++) {
                size_t p = (size_t) y * enc.w + x;
                memcpy (cond->data + p * cond->c, enc.data + p * enc.c, enc.c * sizeof (float));
                /* nearest downsampling = the top-left pixel of each f x f block */
                cond->data[p * cond->c + enc.c] = fill[(size_t) y * f * pw + x * f] ? 1.0f : -1.0f;
            }
    act_free (&masked);
    act_free (&enc);
    return ok;
}

static gboolean
inpaint_condition_sd (LdmEngine *e, const Act *image, const uint8_t *fill, int pw, int ph,
                      Act *cond, GError **error)
{
    int f = autoencoder_factor (e->ae), zc = e->config.first_stage.embed_dim;
    float scale = (float) e->config.scale_factor;
    Act masked = { 0 }, moments = { 0 };
    if (!act_alloc (&masked, 1, ph, pw, 3, error))
        return FALSE;
    for (size_t p = 0; p < (size_t) pw * ph; p++)
        for (int c = 0; c < 3; c++) /* image * (mask < 0.5): masked pixels are 0 (grey) */
            masked.data[p * 3 + c] = fill[p] ? 0.0f : image->data[p * 3 + c];
    /* The posterior mean, not a sample: deterministic for a given seed. */
    gboolean ok = encode_tiled (e, &masked, &moments, error)
                  && act_alloc (cond, 1, moments.h, moments.w, 1 + zc, error);
    if (ok)
        for (int y = 0; y < moments.h; y++)
            for (int x = 0; x < moments.w; x++) {
                size_t p = (size_t) y * moments.w + x;
                float *dst = cond->data + p * cond->c;
                dst[0] = fill[(size_t) y * f * pw + x * f] ? 1.0f : 0.0f;
                for (int c = 0; c < zc; c++)
                    dst[1 + c] = scale * moments.data[p * moments.c + c];
            }
    act_free (&masked);
    act_free (&moments);
    return ok;
}

/* For keep_known: the masked image's latent (from the condition) and where it is kept: latent
 * pixels whose f x f block and its 8 neighbours hold no masked pixel (the encoding of the
 * blocks next to the hole still sees the hole's flat colour). */
/* The latent the U-Net samples in, of a [-1, 1] image: VQ (LDM) the encoder's output before
 * quantisation (the decoder quantises what the sampler returns); KL (SD) scale x the posterior
 * mean. For a start from an image (init fill / original). */
static gboolean
image_latent (LdmEngine *e, const Act *image, Act *z, GError **error)
{
    Act enc = { 0 };
    int zc = e->config.unet.out_channels;
    if (!encode_tiled (e, image, &enc, error))
        return FALSE;
    gboolean vq = e->config.first_stage.kind == LDM_AUTOENCODER_VQ;
    if (enc.c < zc || !act_alloc (z, 1, enc.h, enc.w, zc, error)) {
        if (enc.c < zc)
            g_set_error (error, LDM_ERROR, LDM_ERROR_MODEL,
                         "the autoencoder gives %d latent channels, the U-Net samples %d", enc.c,
                         zc);
        act_free (&enc);
        return FALSE;
    }
    float scale = vq ? 1.0f : (float) e->config.scale_factor;
    for (size_t p = 0; p < (size_t) enc.h * enc.w; p++)
        for (int c = 0; c < zc; c++)
            z->data[p * zc + c] = scale * enc.data[p * enc.c + c];
    act_free (&enc);
    return TRUE;
}

/* The picture with its hole filled by a membrane from around it, made once: init = fill and
 * color_fix share it (`filled` stays as it is when already made). */
static gboolean
membrane_filled (const Act *img, const uint8_t *fill, Act *filled, GError **error)
{
    if (filled->data)
        return TRUE;
    if (!act_alloc (filled, 1, img->h, img->w, img->c, error))
        return FALSE;
    memcpy (filled->data, img->data, act_numel (img) * sizeof (float));
    if (!fill_membrane (filled, fill, error)) {
        act_free (filled);
        return FALSE;
    }
    return TRUE;
}

/* The latent a start from an image begins from (start stays empty for init = noise): fill =
 * the membrane-filled picture (membrane_filled, into `filled`), original = the picture
 * (image_z when the caller has encoded it already). */
static gboolean
inpaint_start (LdmEngine *e, const LdmSampleParams *p, const Act *img, const uint8_t *fill,
               const Act *image_z, Act *filled, Act *start, GError **error)
{
    if (p->init == LDM_INIT_NOISE)
        return TRUE;
    if (p->init != LDM_INIT_FILL && p->init != LDM_INIT_ORIGINAL) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT, "unknown init %d", p->init);
        return FALSE;
    }
    if (p->init == LDM_INIT_ORIGINAL && image_z && image_z->data) {
        if (!act_alloc (start, image_z->n, image_z->h, image_z->w, image_z->c, error))
            return FALSE;
        memcpy (start->data, image_z->data, act_numel (image_z) * sizeof (float));
        return TRUE;
    }
    if (p->init == LDM_INIT_FILL)
        return membrane_filled (img, fill, filled, error) && image_latent (e, filled, start, error);
    return image_latent (e, img, start, error);
}

/* Upscaling from an image: the latent of the input's bilinear enlargement (fill and original
 * are the same here: there is no hole). */
static gboolean
upscale_start (LdmEngine *e, const LdmSampleParams *p, const Act *lr, Act *start,
               GError **error)
{
    if (p->init == LDM_INIT_NOISE)
        return TRUE;
    if (p->init != LDM_INIT_FILL && p->init != LDM_INIT_ORIGINAL) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT, "unknown init %d", p->init);
        return FALSE;
    }
    Act big = { 0 };
    gboolean ok = act_upsample_bilinear (lr, autoencoder_factor (e->ae), &big, error)
                  && image_latent (e, &big, start, error);
    act_free (&big);
    return ok;
}

/* The known latents: channels first .. first + zc - 1 of src (the condition, or the image's
 * own latent). */
static gboolean
known_latents (const Act *src, int first, int zc, const uint8_t *fill, int pw, int f,
               float **known, uint8_t **keep, GError **error)
{
    int h = src->h, w = src->w;
    size_t n = (size_t) h * w * zc;
    *known = ldm_try_alloc_n (n, sizeof (float), "the known latents", error);
    *keep = *known ? ldm_try_alloc_n (n, 1, "the known latents", error) : NULL;
    if (!*known || !*keep)
        return FALSE;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            bool hole = false;
            for (int py = MAX (0, (y - 1) * f); py < MIN (h, y + 2) * f && !hole; py++)
                for (int px = MAX (0, (x - 1) * f); px < MIN (w, x + 2) * f && !hole; px++)
                    hole = fill[(size_t) py * pw + px];
            size_t p = (size_t) y * w + x;
            for (int c = 0; c < zc; c++) {
                (*known)[p * zc + c] = src->data[p * src->c + first + c];
                (*keep)[p * zc + c] = !hole;
            }
        }
    return TRUE;
}

/* match_colors: the decoded fill shifted by the mean error input - decoded on the pixels within
 * `radius` of the fill (a disk, ldm_mask_grow) that were decoded (inside `win`). */
static gboolean
match_fill_colors (Act *dec, const Act *img, const uint8_t *fill, int radius, int w, int h,
                   LdmRect win, GError **error)
{
    size_t n = (size_t) dec->w * dec->h;
    g_autofree float *near = ldm_try_alloc_n (n, sizeof (float), "the colour matching", error);
    if (!near)
        return FALSE;
    for (size_t i = 0; i < n; i++)
        near[i] = fill[i] ? 1.0f : 0.0f;
    if (!ldm_mask_grow (near, dec->w, dec->h, radius, error))
        return FALSE;
    for (int y = 0; y < dec->h; y++)
        for (int x = 0; x < dec->w; x++)
            if (y < win.y || y >= win.y + win.height || x < win.x || x >= win.x + win.width)
                near[(size_t) y * dec->w + x] = 0.0f;
    act_match_region_mean (dec, img, fill, near, w, h); /* 3 channels: cannot fail */
    return TRUE;
}

/* A fill's detail may be this many times as strong (amplitude; 2.25x in energy) as its
 * surroundings' (ground truth in docs/eval's holes: energy 1.44x on average, amplitude 1.2x). */
#define GRAIN_CEILING 1.5f

/* color_fix (inpainting): the decoded fill keeps its detail finer than about 3/4 of a latent
 * cell and takes its smooth part from the input with the hole filled by a membrane (`filled`,
 * made here unless the start made it); its detail no grainier than around the hole. */
static gboolean
fill_color_fix (Act *dec, const Act *img, const uint8_t *fill, int f, int w, int h,
                Act *filled, GError **error)
{
    size_t n = (size_t) img->w * img->h, known = 0;
    for (size_t i = 0; i < n; i++)
        known += !fill[i];
    if (!known) /* nothing around the fill to take colours from (as match_colors) */
        return TRUE;
    /* The smooth part from the membrane fill, then the grain as around the hole, in two bands
     * (finer than about 1.5 px for f = 4, then all the model's detail), each at most
     * GRAIN_CEILING times as strong as the surroundings'.
     * Measured (docs/eval, 32 cases; 13 unseen photos, 52 cases): texture ratio 0.671 -> 0.609
     * and 2.65 -> 0.96 (fills of an out-of-focus background as grainy as of fur before),
     * PSNR 15.73 -> 15.76 and 17.50 -> 17.74 dB; a ceiling of 1.0 took docs/eval's to 0.51. */
    const float sigma = 0.75f * (float) f, spread = 2.0f * (float) f;
    return membrane_filled (img, fill, filled, error)
           && color_fix_fill (dec, filled, fill, img->w, sigma, error)
           && color_fix_grain (dec, img, fill, img->w, w, h, 0.5f * sigma, spread,
                               GRAIN_CEILING, error)
           && color_fix_grain (dec, img, fill, img->w, w, h, sigma, spread, GRAIN_CEILING,
                               error);
}

/* decode(z) into dec (the size of img, the padded picture) where the caller keeps p->keep:
 * the latent cells under it and LDM_KEEP_MARGIN around it decoded, the rest of dec a copy of
 * img; *win: the decoded pixels (all of them without keep, or when the window is the whole
 * latent). The kept pixels stay close to a full decode's, not equal (the decoder's GroupNorm
 * statistics are the window's): test_brush's /brush/keep-decode. */
static gboolean
decode_kept (LdmEngine *e, const LdmSampleParams *p, const Act *z, const Act *img, Act *dec,
             LdmRect *win, GError **error)
{
    int f = autoencoder_factor (e->ae);
    *win = (LdmRect) { 0, 0, z->w * f, z->h * f };
    LdmRect k = p->keep;
    int kx0 = MAX (k.x, 0), ky0 = MAX (k.y, 0);
    int kx1 = MIN ((int64_t) k.x + k.width, img->w), ky1 = MIN ((int64_t) k.y + k.height, img->h);
    if (k.width <= 0 || k.height <= 0 || kx0 >= kx1 || ky0 >= ky1)
        return decode_tiled (e, z, dec, error);
    int x0 = MAX (kx0 / f - LDM_KEEP_MARGIN, 0), y0 = MAX (ky0 / f - LDM_KEEP_MARGIN, 0);
    int x1 = MIN ((kx1 + f - 1) / f + LDM_KEEP_MARGIN, z->w);
    int y1 = MIN ((ky1 + f - 1) / f + LDM_KEEP_MARGIN, z->h);
    if (x0 == 0 && y0 == 0 && x1 == z->w && y1 == z->h)
        return decode_tiled (e, z, dec, error);
    Act zw = { 0 }, dw = { 0 };
    gboolean ok = act_alloc (&zw, 1, y1 - y0, x1 - x0, z->c, error);
    if (ok) {
        act_crop (z, y0, x0, &zw);
        ok = decode_tiled (e, &zw, &dw, error)
             && act_alloc (dec, 1, img->h, img->w, dw.c, error);
    }
    if (ok && dw.c != img->c) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_MODEL,
                     "the decoder gives %d channels, the picture has %d", dw.c, img->c);
        act_free (dec);
        ok = FALSE;
    }
    if (ok) {
        memcpy (dec->data, img->data, act_numel (img) * sizeof (float));
        for (int y = 0; y < dw.h; y++)
            memcpy (dec->data + ((size_t) (y0 * f + y) * dec->w + x0 * f) * dec->c,
                    dw.data + (size_t) y * dw.w * dw.c, (size_t) dw.w * dw.c * sizeof (float));
        *win = (LdmRect) { x0 * f, y0 * f, dw.w, dw.h };
    }
    act_free (&zw);
    act_free (&dw);
    return ok;
}

static uint8_t
to_byte (float v) /* [-1, 1] -> 0..255, rounded */
{
    float u = (v + 1.0f) * 0.5f;
    u = u < 0.0f ? 0.0f : (u > 1.0f ? 1.0f : u);
    return (uint8_t) lrintf (u * 255.0f);
}

gboolean
ldm_inpaint (LdmEngine *e, const LdmImage *image, const LdmImage *mask,
             const LdmSampleParams *p, LdmImage *out, GError **error)
{
    LdmModelKind kind = e->config.kind;
    if (kind != LDM_MODEL_LDM_INPAINT && kind != LDM_MODEL_SD_INPAINT && kind != LDM_MODEL_SD) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "this is a %s model, not an inpainting model", ldm_model_kind_name (kind));
        return FALSE;
    }
    if (!check_image (image, "image", error) || !check_image (mask, "mask", error))
        return FALSE;
    if (mask->channels != 1) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "the mask must have one channel, not %d", mask->channels);
        return FALSE;
    }
    if (mask->width != image->width || mask->height != image->height) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "the mask must have the image's size (image %dx%d, mask %dx%d)",
                     image->width, image->height, mask->width, mask->height);
        return FALSE;
    }
    int w = image->width, h = image->height, align = ldm_engine_alignment (e);
    int pw = round_up (w, align), ph = round_up (h, align);
    if (!plan_run (e, p, LDM_TASK_INPAINT, pw, ph, error))
        return FALSE;
    size_t n_fill = 0;
    g_autofree uint8_t *fill = ldm_try_alloc0_n ((size_t) pw * ph, 1, "the mask", error);
    if (!fill)
        return FALSE;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            n_fill += fill[(size_t) y * pw + x] = mask->pixels[(size_t) y * w + x] >= 128;
    if (n_fill == 0) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "the mask is empty: nothing to inpaint");
        return FALSE;
    }

    gboolean ok = FALSE;
    Act img = { 0 }, cond = { 0 }, x = { 0 }, quant = { 0 }, dec = { 0 }, start = { 0 };
    Act image_z = { 0 }; /* a text-to-image U-Net: the image's own latent, for the blending */
    Act filled = { 0 };  /* the membrane-filled picture: init = fill and color_fix */
    g_autofree float *known = NULL;
    g_autofree uint8_t *keep = NULL;
    const Act *z = &x;
    Rng rng;
    rng_seed (&rng, p->seed);
    int f = autoencoder_factor (e->ae), zc = e->config.unet.out_channels;
    if (!image_to_act (image, pw, ph, &img, error))
        goto done;
    /* the known latents: LDM's condition is [latent | mask], SD inpainting's [mask | latent];
     * a text-to-image U-Net has no condition (x alone) and always blends the image's latent */
    const Act *known_src = &cond;
    int known_first = kind == LDM_MODEL_SD_INPAINT ? 1 : 0;
    switch (kind) {
    case LDM_MODEL_LDM_INPAINT:
        ok = inpaint_condition_ldm (e, &img, fill, pw, ph, &cond, error);
        break;
    case LDM_MODEL_SD_INPAINT:
        ok = inpaint_condition_sd (e, &img, fill, pw, ph, &cond, error);
        break;
    default:
        ok = act_alloc (&cond, 1, ph / f, pw / f, 0, error)
             && image_latent (e, &img, &image_z, error);
        known_src = &image_z;
        break;
    }
    gboolean blend = p->keep_known || kind == LDM_MODEL_SD;
    ok = ok && act_alloc (&x, 1, ph / f, pw / f, zc, error)
         && initial_latent (p, &rng, &x, error)
         && (!blend || known_latents (known_src, known_first, zc, fill, pw, f, &known, &keep,
                                      error))
         && inpaint_start (e, p, &img, fill, &image_z, &filled, &start, error)
         && sample (e, p, &cond, known, keep, start.data ? &start : NULL, &rng, &x, error)
         && check_finite (e, x.data, act_numel (&x), "the sampled latent", error);
    if (!ok)
        goto done;
    gboolean fix = p->color_fix && kind == LDM_MODEL_LDM_INPAINT;
    if (!fix) /* not needed after the start */
        act_free (&filled);
    if (e->config.first_stage.kind == LDM_AUTOENCODER_VQ) {
        if (!(ok = autoencoder_quantize (e->ae, &x, &quant, NULL, error)))
            goto done;
        z = &quant;
    } else { /* z / scale_factor, multiplying by float32(1 / scale_factor) like the authors */
        float inv = (float) (1.0 / e->config.scale_factor);
        for (size_t i = 0; i < act_numel (&x); i++)
            x.data[i] *= inv;
    }
    LdmRect win;
    if (!(ok = decode_kept (e, p, z, &img, &dec, &win, error)
               && check_finite (e, dec.data, act_numel (&dec), "the decoded image", error)))
        goto done;
    if (p->match_colors
        && !(ok = match_fill_colors (&dec, &img, fill, 4 * f, w, h, win, error)))
        goto done;
    /* not for Stable Diffusion: there the prompt, not the surroundings, decides what appears */
    if (fix && !(ok = fill_color_fix (&dec, &img, fill, f, w, h, &filled, error)))
        goto done;

    /* Composite: generated pixels inside the mask, the input's own bytes elsewhere. */
    size_t bytes = (size_t) w * h * image->channels;
    *out = (LdmImage) { w, h, image->channels, ldm_try_alloc_n (bytes, 1, "the result", error) };
    if (!out->pixels) {
        ok = FALSE;
        goto done;
    }
    memcpy (out->pixels, image->pixels, bytes);
    for (int y = 0; y < h; y++)
        for (int xx = 0; xx < w; xx++) {
            if (!fill[(size_t) y * pw + xx])
                continue;
            uint8_t *dst = out->pixels + ((size_t) y * w + xx) * out->channels;
            const float *src = dec.data + ((size_t) y * pw + xx) * 3;
            if (out->channels == 1) /* grey in, grey out: Rec. 709 luma of the fill */
                dst[0] = to_byte (0.2126f * src[0] + 0.7152f * src[1] + 0.0722f * src[2]);
            else
                for (int c = 0; c < 3; c++)
                    dst[c] = to_byte (src[c]);
        }
done:
    act_free (&start);
    act_free (&filled);
    act_free (&image_z);
    act_free (&img);
    act_free (&cond);
    act_free (&x);
    act_free (&quant);
    act_free (&dec);
    return ok;
}

/* ---------------------------------------------------------------- upscale */

gboolean
ldm_upscale (LdmEngine *e, const LdmImage *image, const LdmSampleParams *p, LdmImage *out,
             GError **error)
{
    if (e->config.kind != LDM_MODEL_LDM_SR) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "this is a %s model, not a super-resolution model",
                     ldm_model_kind_name (e->config.kind));
        return FALSE;
    }
    if (!check_image (image, "image", error))
        return FALSE;
    int w = image->width, h = image->height, align = ldm_engine_alignment (e);
    int pw = round_up (w, align), ph = round_up (h, align), f = autoencoder_factor (e->ae);
    if (!plan_run (e, p, LDM_TASK_UPSCALE, pw, ph, error))
        return FALSE;
    gboolean ok = FALSE;
    Act lr = { 0 }, x = { 0 }, quant = { 0 }, dec = { 0 }, start = { 0 };
    Rng rng;
    rng_seed (&rng, p->seed);
    if (!image_to_act (image, pw, ph, &lr, error)
        || !act_alloc (&x, 1, ph, pw, e->config.unet.out_channels, error)
        || !initial_latent (p, &rng, &x, error)
        || !upscale_start (e, p, &lr, &start, error)
        || !sample (e, p, &lr, NULL, NULL, start.data ? &start : NULL, &rng, &x, error)
        || !check_finite (e, x.data, act_numel (&x), "the sampled latent", error)
        || !autoencoder_quantize (e->ae, &x, &quant, NULL, error)
        || !decode_tiled (e, &quant, &dec, error)
        || !check_finite (e, dec.data, act_numel (&dec), "the decoded image", error))
        goto done;
    int ow = w * f, oh = h * f, oc = image->channels == 4 ? 4 : 3;
    /* 8 rounds: within a level of the input's block means even where clipping fights back
     * (the fixtures' random models); coarser scales converge in the first rounds */
    if (p->color_fix && !color_fix_backproject (&dec, &lr, f, w, h, 8, error))
        goto done;
    *out = (LdmImage) { ow, oh, oc, ldm_try_alloc_n ((size_t) ow * oh, oc, "the result", error) };
    if (!out->pixels)
        goto done;
    for (int y = 0; y < oh; y++)
        for (int xx = 0; xx < ow; xx++) {
            uint8_t *dst = out->pixels + ((size_t) y * ow + xx) * oc;
            const float *src = dec.data + ((size_t) y * dec.w + xx) * 3;
            for (int c = 0; c < 3; c++)
                dst[c] = to_byte (src[c]);
            if (oc == 4) /* alpha: nearest neighbour */
                dst[3] = image->pixels[((size_t) (y / f) * w + xx / f) * 4 + 3];
        }
    ok = TRUE;
done:
    act_free (&start);
    act_free (&lr);
    act_free (&x);
    act_free (&quant);
    act_free (&dec);
    return ok;
}
