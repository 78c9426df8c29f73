/* bench.c: ldm_model_bench, the model's networks timed on the fixed inputs ldm.h describes
 * (`ldm bench`; tools/bench/compare rebuilds the inputs in PyTorch). */
#include "alloc.h"
#include "arch/flops.h"
#include "arch/model.h"
#include "nn/act.h"
#include "nn/autoencoder.h"
#include "nn/clip_text.h"
#include "nn/unet.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BENCH_TIMESTEP 500.0f
#define CLIP_START     49406
#define CLIP_END       49407

const char *
ldm_bench_part_name (LdmBenchPart part)
{
    static const char *const names[LDM_BENCH_N_PARTS] = { "unet", "encode", "decode", "text" };
    return (unsigned) part < LDM_BENCH_N_PARTS ? names[part] : "?";
}

void
ldm_bench_result_clear (LdmBenchResult *r)
{
    for (int p = 0; p < LDM_BENCH_N_PARTS; p++)
        g_free (r->part[p].output);
    memset (r, 0, sizeof *r);
}

/* The networks under test, all owned here. */
typedef struct {
    Dnn         *dnn;
    Unet        *unet;
    Autoencoder *ae;
    LdmClipText *clip;
    Act          unet_in, unet_out, image, latent, moments, decoded;
    float       *context;  /* unet_batch x tokens x context_dim */
    int32_t     *ids;      /* 2 x LDM_CLIP_TOKENS */
    float       *text_out; /* 2 x LDM_CLIP_TOKENS x width */
    int          batch, tokens;
} Bench;

static void
bench_clear (Bench *b)
{
    act_free (&b->unet_in);
    act_free (&b->unet_out);
    act_free (&b->image);
    act_free (&b->latent);
    act_free (&b->moments);
    act_free (&b->decoded);
    g_free (b->context);
    g_free (b->ids);
    g_free (b->text_out);
    ldm_clip_text_free (b->clip);
    unet_free (b->unet);
    autoencoder_free (b->ae);
    dnn_free (b->dnn);
}

/* sin(0.001 i) over each sample's NCHW index i, stored NHWC. */
static void
fill_sine (Act *a)
{
    for (int n = 0; n < a->n; n++)
        for (int c = 0; c < a->c; c++)
            for (int y = 0; y < a->h; y++)
                for (int x = 0; x < a->w; x++)
                    a->data[(((size_t) n * a->h + y) * a->w + x) * a->c + c]
                        = sinf (0.001f * (float) (((size_t) c * a->h + y) * a->w + x));
}

static gboolean
run_part (Bench *b, LdmBenchPart part, GError **error)
{
    float t[2] = { BENCH_TIMESTEP, BENCH_TIMESTEP };
    switch (part) {
    case LDM_BENCH_UNET:
        return unet_forward (b->unet, &b->unet_in, t, b->context, b->tokens, &b->unet_out,
                             error);
    case LDM_BENCH_ENCODE:
        act_free (&b->moments);
        return autoencoder_encode (b->ae, &b->image, &b->moments, error);
    case LDM_BENCH_DECODE:
        act_free (&b->decoded);
        return autoencoder_decode (b->ae, &b->latent, &b->decoded, error);
    case LDM_BENCH_TEXT:
        return ldm_clip_text_forward (b->clip, b->ids, 2, b->text_out, error);
    default:
        return TRUE;
    }
}

static int
compare_doubles (const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return (x > y) - (x < y);
}

/* An NHWC activation as a new NCHW array. */
static float *
act_to_nchw (const Act *a, GError **error)
{
    float *out = ldm_try_alloc_n (act_numel (a), sizeof (float), "a benchmark output", error);
    if (!out)
        return NULL;
    for (int n = 0; n < a->n; n++)
        for (int c = 0; c < a->c; c++)
            for (int y = 0; y < a->h; y++)
                for (int x = 0; x < a->w; x++)
                    out[(((size_t) n * a->c + c) * a->h + y) * a->w + x]
                        = a->data[(((size_t) n * a->h + y) * a->w + x) * a->c + c];
    return out;
}

static gboolean
keep_output (Bench *b, LdmBenchPart part, LdmBenchTiming *timing, GError **error)
{
    const Act *a = part == LDM_BENCH_UNET     ? &b->unet_out
                   : part == LDM_BENCH_ENCODE ? &b->moments
                   : part == LDM_BENCH_DECODE ? &b->decoded
                                              : NULL;
    if (a) {
        timing->output = act_to_nchw (a, error);
        timing->output_len = act_numel (a);
        memcpy (timing->output_shape, (int[4]) { a->n, a->c, a->h, a->w }, sizeof (int[4]));
        return timing->output != NULL;
    }
    int width = ldm_clip_text_width (b->clip);
    timing->output_len = (size_t) 2 * LDM_CLIP_TOKENS * width;
    timing->output = g_memdup2 (b->text_out, timing->output_len * sizeof (float));
    memcpy (timing->output_shape, (int[4]) { 2, LDM_CLIP_TOKENS, width, 1 }, sizeof (int[4]));
    return TRUE;
}

static gboolean
time_part (Bench *b, LdmBenchPart part, const LdmBenchParams *params, LdmBenchTiming *timing,
           GError **error)
{
    g_autofree double *runs = g_new (double, params->repeat);
    for (int i = 0; i <= params->repeat; i++) {
        gint64 start = g_get_monotonic_time ();
        if (!run_part (b, part, error))
            return FALSE;
        double s = (double) (g_get_monotonic_time () - start) / 1e6;
        if (i == 0)
            timing->first_seconds = s;
        else
            runs[i - 1] = s;
    }
    qsort (runs, params->repeat, sizeof *runs, compare_doubles);
    int n = params->repeat;
    timing->seconds = n % 2 ? runs[n / 2] : 0.5 * (runs[n / 2 - 1] + runs[n / 2]);
    timing->present = TRUE;
    return !params->keep_outputs || keep_output (b, part, timing, error);
}

/* The inputs ldm.h describes. */
static gboolean
make_inputs (Bench *b, const LdmModelConfig *cfg, const LdmBenchResult *r, GError **error)
{
    const LdmUnetConfig *u = &cfg->unet;
    if (!act_alloc (&b->unet_in, b->batch, r->latent_h, r->latent_w, u->in_channels, error)
        || !act_alloc (&b->unet_out, b->batch, r->latent_h, r->latent_w, u->out_channels, error)
        || !act_alloc (&b->image, 1, r->image_h, r->image_w, cfg->first_stage.in_channels, error)
        || !act_alloc (&b->latent, 1, r->latent_h, r->latent_w, cfg->first_stage.embed_dim,
                       error))
        return FALSE;
    fill_sine (&b->unet_in);
    fill_sine (&b->image);
    fill_sine (&b->latent);
    if (b->tokens) {
        size_t n = (size_t) b->batch * b->tokens * u->context_dim;
        if (!(b->context = ldm_try_alloc_n (n, sizeof (float), "the context", error)))
            return FALSE;
        for (size_t i = 0; i < n; i++)
            b->context[i] = sinf (0.01f * (float) i);
    }
    if (b->clip) {
        size_t n = (size_t) 2 * LDM_CLIP_TOKENS * ldm_clip_text_width (b->clip);
        b->ids = g_new (int32_t, 2 * LDM_CLIP_TOKENS);
        for (int row = 0; row < 2; row++) {
            int32_t *ids = b->ids + row * LDM_CLIP_TOKENS;
            int words = row ? 20 : 0;
            ids[0] = CLIP_START;
            for (int k = 1; k < LDM_CLIP_TOKENS; k++)
                ids[k] = k <= words ? 320 + 311 * (k - 1) : CLIP_END;
        }
        if (!(b->text_out = ldm_try_alloc_n (n, sizeof (float), "the text output", error)))
            return FALSE;
    }
    return TRUE;
}

gboolean
ldm_model_bench (const LdmModel *model, const LdmBenchParams *params, LdmBenchResult *r,
                 GError **error)
{
    memset (r, 0, sizeof *r);
    const LdmModelConfig *cfg = model_config (model);
    const char *path = ldm_tensor_file_path (model_file (model));
    if (!cfg->has_unet || !cfg->has_first_stage) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_UNSUPPORTED,
                     "%s: a benchmark needs a U-Net and an autoencoder", path);
        return FALSE;
    }
    const LdmUnetConfig *u = &cfg->unet;
    int align = 1 << (u->n_levels - 1);
    r->latent_h = params->latent_h > 0 ? params->latent_h : cfg->image_size;
    r->latent_w = params->latent_w > 0 ? params->latent_w : cfg->image_size;
    if (params->repeat < 1 || r->latent_h % align || r->latent_w % align || r->latent_h > 1024
        || r->latent_w > 1024) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "benchmark: the latent (%dx%d) must have sides that are multiples of %d, "
                     "at most 1024, and repeat (%d) must be at least 1",
                     r->latent_h, r->latent_w, align, params->repeat);
        return FALSE;
    }
    Bench b = { .batch = u->context_dim > 0 ? 2 : 1,
                .tokens = u->context_dim > 0 ? LDM_CLIP_TOKENS : 0 };
    r->unet_batch = b.batch;
    r->context_tokens = b.tokens;
    g_autofree char *unet_what = g_strdup_printf ("%s (U-Net)", path);
    g_autofree char *ae_what = g_strdup_printf ("%s (first stage)", path);
    Weights unet_w = { model_unet_tensor, model, unet_what };
    Weights ae_w = { model_first_stage_tensor, model, ae_what };
    act_keep_freed_memory ();
    gint64 start = g_get_monotonic_time ();
    bool bf16 = false;
    gboolean ok = dnn_precision_resolve (params->precision, &bf16, error)
                  && (b.dnn = dnn_new (bf16, error))
                  && (b.unet = unet_new (b.dnn, u, &unet_w, error))
                  && (b.ae = autoencoder_new (b.dnn, &cfg->first_stage, &ae_w, error));
    r->precision = b.dnn ? dnn_precision (b.dnn) : LDM_PRECISION_FP32;
    if (ok && u->context_dim > 0 && ldm_clip_text_present (model_file (model)))
        ok = (b.clip = ldm_clip_text_new (b.dnn, model_file (model), 0, error)) != NULL;
    if (ok) {
        r->load_seconds = (double) (g_get_monotonic_time () - start) / 1e6;
        int f = autoencoder_factor (b.ae);
        r->image_h = r->latent_h * f;
        r->image_w = r->latent_w * f;
        ok = make_inputs (&b, cfg, r, error);
    }
    if (ok) {
        r->part[LDM_BENCH_UNET].gflop
            = model_config_unet_flops (u, b.batch, r->latent_h, r->latent_w, b.tokens) / 1e9;
        r->part[LDM_BENCH_ENCODE].gflop
            = model_config_encode_flops (&cfg->first_stage, r->image_h, r->image_w) / 1e9;
        r->part[LDM_BENCH_DECODE].gflop
            = model_config_decode_flops (&cfg->first_stage, r->latent_h, r->latent_w) / 1e9;
        if (b.clip) {
            const LdmClipTextConfig *c = ldm_clip_text_config (b.clip);
            /* per layer: q, k, v, out_proj, fc1, fc2 and the causal products (counted whole) */
            double rows = 2.0 * LDM_CLIP_TOKENS;
            double layer = 2 * rows * c->width * (4.0 * c->width + 2.0 * c->mlp)
                           + 2 * 4.0 * LDM_CLIP_TOKENS * LDM_CLIP_TOKENS * c->width;
            r->part[LDM_BENCH_TEXT].gflop = layer * c->layers / 1e9;
        }
    }
    for (LdmBenchPart p = 0; ok && p < LDM_BENCH_N_PARTS; p++)
        if ((p != LDM_BENCH_TEXT || b.clip) && (!params->parts || params->parts & (1u << p)))
            ok = time_part (&b, p, params, &r->part[p], error);
    bench_clear (&b);
    if (!ok)
        ldm_bench_result_clear (r);
    return ok;
}
