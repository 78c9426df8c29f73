/* autoencoder.c: the CompVis first stage (Encoder, Decoder, quantiser). See autoencoder.h.
 *
 *   encode: conv_in; per level: ResnetBlocks [+ attention], downsample (pad (0,1,0,1), conv 3x3
 *           stride 2); mid: ResnetBlock, attention, ResnetBlock; GroupNorm, SiLU, conv_out;
 *           quant_conv (1x1)
 *   decode: post_quant_conv (1x1); conv_in; mid; per level from the deepest: ResnetBlocks
 *           [+ attention], upsample (nearest 2x, conv 3x3); GroupNorm, SiLU, conv_out
 * All GroupNorms use eps 1e-6. The mid attention is single-headed over all channels.
 */
#include "nn/autoencoder.h"

#include "nn/act.h"
#include "alloc.h"
#include "nn/layers.h"

#include <math.h>
#include <string.h>

#define AE_EPS 1e-6f

typedef struct {
    int      in_c, out_c;
    Norm     norm1, norm2;
    DnnConv *conv1, *conv2;
    DnnConv *shortcut;   /* nin_shortcut (1x1) when the width changes */
} ResnetBlock;

typedef struct {
    int        c;
    Norm       norm;
    DnnLinear *q, *k, *v, *proj_out; /* 1x1 convolutions */
} AttnBlock;

typedef struct {
    int          n_blocks;
    ResnetBlock *blocks;
    AttnBlock   *attn;      /* n_blocks entries, or NULL at levels without attention */
    DnnConv     *resample;  /* downsample / upsample conv, NULL at the last level */
} Level;

typedef struct {
    DnnConv    *conv_in;
    Level      *levels;
    ResnetBlock mid_block_1, mid_block_2;
    AttnBlock   mid_attn;   /* c == 0 when attn_type is none */
    Norm        norm_out;
    DnnConv    *conv_out;
} Coder;

struct Autoencoder {
    Dnn                 *dnn;
    LdmAutoencoderConfig cfg;
    Coder                encoder, decoder;
    DnnConv             *quant_conv, *post_quant_conv;
    float               *codebook;    /* n_embed x embed_dim (VQ) */
    float               *codebook_sq; /* |e|^2 per row */
};

/* ---------------------------------------------------------------- loading */

static gboolean
resnet_load (Autoencoder *ae, ResnetBlock *r, const Weights *w, const char *prefix, int in_c,
             int out_c, GError **error)
{
    char name[160];
    r->in_c = in_c;
    r->out_c = out_c;
    g_snprintf (name, sizeof name, "%s.norm1", prefix);
    if (!norm_load (&r->norm1, w, name, in_c, AE_EPS, error))
        return FALSE;
    g_snprintf (name, sizeof name, "%s.conv1", prefix);
    if (!(r->conv1 = conv_load (ae->dnn, w, name, out_c, in_c, 3, 1, -1, -1, error)))
        return FALSE;
    g_snprintf (name, sizeof name, "%s.norm2", prefix);
    if (!norm_load (&r->norm2, w, name, out_c, AE_EPS, error))
        return FALSE;
    g_snprintf (name, sizeof name, "%s.conv2", prefix);
    if (!(r->conv2 = conv_load (ae->dnn, w, name, out_c, out_c, 3, 1, -1, -1, error)))
        return FALSE;
    if (in_c != out_c) {
        g_snprintf (name, sizeof name, "%s.nin_shortcut", prefix);
        if (!(r->shortcut = conv_load (ae->dnn, w, name, out_c, in_c, 1, 1, -1, -1, error)))
            return FALSE;
    }
    return TRUE;
}

static void
resnet_clear (ResnetBlock *r)
{
    norm_clear (&r->norm1);
    norm_clear (&r->norm2);
    dnn_conv_free (r->conv1);
    dnn_conv_free (r->conv2);
    dnn_conv_free (r->shortcut);
}

static gboolean
attn_load (Autoencoder *ae, AttnBlock *a, const Weights *w, const char *prefix, int c,
           GError **error)
{
    char name[160];
    a->c = c;
    g_snprintf (name, sizeof name, "%s.norm", prefix);
    if (!norm_load (&a->norm, w, name, c, AE_EPS, error))
        return FALSE;
    DnnLinear **dst[4] = { &a->q, &a->k, &a->v, &a->proj_out };
    const char *part[4] = { "q", "k", "v", "proj_out" };
    for (int i = 0; i < 4; i++) {
        g_snprintf (name, sizeof name, "%s.%s", prefix, part[i]);
        if (!(*dst[i] = linear_load (ae->dnn, w, name, c, c, 4, true, error)))
            return FALSE;
    }
    return TRUE;
}

static void
attn_clear (AttnBlock *a)
{
    norm_clear (&a->norm);
    dnn_linear_free (a->q);
    dnn_linear_free (a->k);
    dnn_linear_free (a->v);
    dnn_linear_free (a->proj_out);
}

static bool
has_attention (const LdmAutoencoderConfig *cfg, int resolution)
{
    for (int i = 0; i < cfg->n_attn_resolutions; i++)
        if (cfg->attn_resolutions[i] == resolution)
            return true;
    return false;
}

static gboolean
level_load (Autoencoder *ae, Level *l, const Weights *w, const char *prefix, int n_blocks,
            int *block_in, int block_out, bool attn, GError **error)
{
    char name[160];
    l->n_blocks = n_blocks;
    l->blocks = g_new0 (ResnetBlock, n_blocks);
    if (attn)
        l->attn = g_new0 (AttnBlock, n_blocks);
    for (int b = 0; b < n_blocks; b++) {
        g_snprintf (name, sizeof name, "%s.block.%d", prefix, b);
        if (!resnet_load (ae, &l->blocks[b], w, name, *block_in, block_out, error))
            return FALSE;
        *block_in = block_out;
        if (attn) {
            g_snprintf (name, sizeof name, "%s.attn.%d", prefix, b);
            if (!attn_load (ae, &l->attn[b], w, name, block_out, error))
                return FALSE;
        }
    }
    return TRUE;
}

static void
coder_clear (Coder *c, int n_levels)
{
    dnn_conv_free (c->conv_in);
    for (int i = 0; c->levels && i < n_levels; i++) {
        Level *l = &c->levels[i];
        for (int b = 0; b < l->n_blocks; b++) {
            resnet_clear (&l->blocks[b]);
            if (l->attn)
                attn_clear (&l->attn[b]);
        }
        g_free (l->blocks);
        g_free (l->attn);
        dnn_conv_free (l->resample);
    }
    g_free (c->levels);
    resnet_clear (&c->mid_block_1);
    resnet_clear (&c->mid_block_2);
    attn_clear (&c->mid_attn);
    norm_clear (&c->norm_out);
    dnn_conv_free (c->conv_out);
}

static gboolean
mid_load (Autoencoder *ae, Coder *c, const Weights *w, const char *prefix, int ch,
          GError **error)
{
    char name[160];
    g_snprintf (name, sizeof name, "%s.mid.block_1", prefix);
    if (!resnet_load (ae, &c->mid_block_1, w, name, ch, ch, error))
        return FALSE;
    if (ae->cfg.mid_attention) {
        g_snprintf (name, sizeof name, "%s.mid.attn_1", prefix);
        if (!attn_load (ae, &c->mid_attn, w, name, ch, error))
            return FALSE;
    }
    g_snprintf (name, sizeof name, "%s.mid.block_2", prefix);
    return resnet_load (ae, &c->mid_block_2, w, name, ch, ch, error);
}

static gboolean
encoder_load (Autoencoder *ae, const Weights *w, GError **error)
{
    const LdmAutoencoderConfig *cfg = &ae->cfg;
    Coder *e = &ae->encoder;
    char name[160];
    if (!(e->conv_in = conv_load (ae->dnn, w, "encoder.conv_in", cfg->ch, cfg->in_channels, 3, 1,
                                  -1, -1, error)))
        return FALSE;
    e->levels = g_new0 (Level, cfg->n_levels);
    int block_in = cfg->ch, resolution = cfg->resolution;
    for (int i = 0; i < cfg->n_levels; i++) {
        g_snprintf (name, sizeof name, "encoder.down.%d", i);
        if (!level_load (ae, &e->levels[i], w, name, cfg->num_res_blocks, &block_in,
                         cfg->ch * cfg->ch_mult[i], has_attention (cfg, resolution), error))
            return FALSE;
        if (i != cfg->n_levels - 1) {
            g_snprintf (name, sizeof name, "encoder.down.%d.downsample.conv", i);
            /* torch pads (0, 1, 0, 1) by hand, then convolves without padding */
            if (!(e->levels[i].resample = conv_load (ae->dnn, w, name, block_in, block_in, 3, 2,
                                                     0, 1, error)))
                return FALSE;
            resolution /= 2;
        }
    }
    if (!mid_load (ae, e, w, "encoder", block_in, error)
        || !norm_load (&e->norm_out, w, "encoder.norm_out", block_in, AE_EPS, error))
        return FALSE;
    int z_out = cfg->double_z ? 2 * cfg->z_channels : cfg->z_channels;
    return (e->conv_out = conv_load (ae->dnn, w, "encoder.conv_out", z_out, block_in, 3, 1, -1,
                                     -1, error)) != NULL;
}

static gboolean
decoder_load (Autoencoder *ae, const Weights *w, GError **error)
{
    const LdmAutoencoderConfig *cfg = &ae->cfg;
    Coder *d = &ae->decoder;
    char name[160];
    int block_in = cfg->ch * cfg->ch_mult[cfg->n_levels - 1];
    int resolution = cfg->resolution >> (cfg->n_levels - 1);
    if (!(d->conv_in = conv_load (ae->dnn, w, "decoder.conv_in", block_in, cfg->z_channels, 3, 1,
                                  -1, -1, error))
        || !mid_load (ae, d, w, "decoder", block_in, error))
        return FALSE;
    d->levels = g_new0 (Level, cfg->n_levels);
    for (int i = cfg->n_levels - 1; i >= 0; i--) {
        g_snprintf (name, sizeof name, "decoder.up.%d", i);
        if (!level_load (ae, &d->levels[i], w, name, cfg->num_res_blocks + 1, &block_in,
                         cfg->ch * cfg->ch_mult[i], has_attention (cfg, resolution), error))
            return FALSE;
        if (i != 0) {
            g_snprintf (name, sizeof name, "decoder.up.%d.upsample.conv", i);
            if (!(d->levels[i].resample = conv_load (ae->dnn, w, name, block_in, block_in, 3, 1,
                                                     -1, -1, error)))
                return FALSE;
            resolution *= 2;
        }
    }
    return norm_load (&d->norm_out, w, "decoder.norm_out", block_in, AE_EPS, error)
           && (d->conv_out = conv_load (ae->dnn, w, "decoder.conv_out", cfg->out_ch, block_in, 3,
                                        1, -1, -1, error));
}

Autoencoder *
autoencoder_new (Dnn *dnn, const LdmAutoencoderConfig *config, const Weights *w, GError **error)
{
    if (config->n_levels < 1 || config->n_levels > LDM_MAX_LEVELS || config->ch <= 0
        || config->ch % 32 || config->z_channels <= 0 || config->embed_dim <= 0
        || (config->kind == LDM_AUTOENCODER_VQ && config->n_embed <= 0)) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_UNSUPPORTED,
                     "autoencoder configuration out of range");
        return NULL;
    }
    if (config->in_channels != 3 || config->out_ch != 3) { /* the pipelines work on RGB */
        g_set_error (error, LDM_ERROR, LDM_ERROR_UNSUPPORTED,
                     "the first stage takes %d and gives %d channels: only RGB (3) is supported",
                     config->in_channels, config->out_ch);
        return NULL;
    }
    Autoencoder *ae = g_new0 (Autoencoder, 1);
    ae->dnn = dnn;
    ae->cfg = *config;
    const LdmAutoencoderConfig *cfg = &ae->cfg;
    bool kl = cfg->kind == LDM_AUTOENCODER_KL;
    int moments = kl ? 2 : 1;
    if (!encoder_load (ae, w, error) || !decoder_load (ae, w, error))
        goto fail;
    if (!(ae->quant_conv = conv_load (dnn, w, "quant_conv", moments * cfg->embed_dim,
                                      (cfg->double_z ? 2 : 1) * cfg->z_channels, 1, 1, -1, -1,
                                      error))
        || !(ae->post_quant_conv = conv_load (dnn, w, "post_quant_conv", cfg->z_channels,
                                              cfg->embed_dim, 1, 1, -1, -1, error)))
        goto fail;
    if (!kl) {
        int64_t shape[2] = { cfg->n_embed, cfg->embed_dim };
        if (!(ae->codebook = weights_read (w, "quantize.embedding.weight", 2, shape, error)))
            goto fail;
        if (!(ae->codebook_sq = ldm_try_alloc_n (cfg->n_embed, sizeof (float), "the codebook",
                                                 error)))
            goto fail;
        for (int j = 0; j < cfg->n_embed; j++) {
            float s = 0;
            for (int c = 0; c < cfg->embed_dim; c++)
                s += ae->codebook[(size_t) j * cfg->embed_dim + c]
                     * ae->codebook[(size_t) j * cfg->embed_dim + c];
            ae->codebook_sq[j] = s;
        }
    }
    return ae;
fail:
    autoencoder_free (ae);
    return NULL;
}

void
autoencoder_free (Autoencoder *ae)
{
    if (!ae)
        return;
    coder_clear (&ae->encoder, ae->cfg.n_levels);
    coder_clear (&ae->decoder, ae->cfg.n_levels);
    dnn_conv_free (ae->quant_conv);
    dnn_conv_free (ae->post_quant_conv);
    g_free (ae->codebook);
    g_free (ae->codebook_sq);
    g_free (ae);
}

int
autoencoder_factor (const Autoencoder *ae)
{
    return 1 << (ae->cfg.n_levels - 1);
}

/* ---------------------------------------------------------------- forward */

/* A convolution into a new activation. */
static gboolean
conv_new_out (DnnConv *conv, const Act *in, Act *out, GError **error)
{
    int oh, ow;
    dnn_conv_out_size (conv, in->h, in->w, &oh, &ow);
    if (!act_alloc (out, in->n, oh, ow, dnn_conv_out_channels (conv), error))
        return FALSE;
    if (!dnn_conv_forward (conv, in, out, NULL, error)) {
        act_free (out);
        return FALSE;
    }
    return TRUE;
}

/* out = shortcut(x) + conv2(SiLU(GN(conv1(SiLU(GN(x)))))) */
static gboolean
resnet_forward (Autoencoder *ae, const ResnetBlock *r, const Act *x, Act *out, GError **error)
{
    gboolean ok = FALSE;
    Act t = { 0 }, h = { 0 };
    if (!act_alloc (&t, x->n, x->h, x->w, r->in_c, error)
        || !norm_group (ae->dnn, &r->norm1, x, &t, true, error)
        || !act_alloc (&h, x->n, x->h, x->w, r->out_c, error)
        || !dnn_conv_forward (r->conv1, &t, &h, NULL, error))
        goto done;
    act_free (&t);
    if (!act_alloc (&t, x->n, x->h, x->w, r->out_c, error)
        || !norm_group (ae->dnn, &r->norm2, &h, &t, true, error)
        || !act_alloc (out, x->n, x->h, x->w, r->out_c, error))
        goto done;
    if (r->shortcut) {
        if (!dnn_conv_forward (r->shortcut, x, out, NULL, error))
            goto done;
    } else {
        memcpy (out->data, x->data, act_numel (x) * sizeof (float));
    }
    DnnConvPost accumulate = { .accumulate = true };
    ok = dnn_conv_forward (r->conv2, &t, out, &accumulate, error);
done:
    act_free (&t);
    act_free (&h);
    if (!ok)
        act_free (out);
    return ok;
}

/* In place: x += proj_out(softmax(q k^T / sqrt(c)) v), single head over all channels. */
static gboolean
attn_forward (Autoencoder *ae, const AttnBlock *a, Act *x, GError **error)
{
    gboolean ok = FALSE;
    int c = a->c, tokens = x->h * x->w;
    size_t rows = (size_t) x->n * tokens;
    Act t = { 0 };
    float *q = ldm_try_alloc_floats (rows * c, NULL, NULL);
    float *k = ldm_try_alloc_floats (rows * c, NULL, NULL);
    float *v = ldm_try_alloc_floats (rows * c, NULL, NULL);
    float *mixed = ldm_try_alloc_floats (rows * c, NULL, NULL);
    if (!q || !k || !v || !mixed) {
        ldm_no_memory (error, "the first stage's attention", 4 * rows * c, sizeof (float));
        goto done;
    }
    if (!act_alloc (&t, x->n, x->h, x->w, c, error)
        || !norm_group (ae->dnn, &a->norm, x, &t, false, error)
        || !dnn_linear_forward (a->q, t.data, q, (int) rows, false, error)
        || !dnn_linear_forward (a->k, t.data, k, (int) rows, false, error)
        || !dnn_linear_forward (a->v, t.data, v, (int) rows, false, error))
        goto done;
    for (int b = 0; b < x->n; b++) {
        size_t off = (size_t) b * tokens * c;
        if (!dnn_attention (ae->dnn, q + off, c, k + off, c, v + off, c, c, 1, c, tokens, tokens,
                            mixed + off, c, 1.0f / sqrtf ((float) c), error))
            goto done;
    }
    ok = dnn_linear_forward (a->proj_out, mixed, x->data, (int) rows, true, error);
done:
    act_free (&t);
    g_free (q);
    g_free (k);
    g_free (v);
    g_free (mixed);
    return ok;
}

/* Replaces *h by f(*h) where f makes a new activation. */
#define STEP(call)                                                                             \
    do {                                                                                       \
        Act next_ = { 0 };                                                                     \
        gboolean ok_ = (call);                                                                 \
        act_free (h);                                                                          \
        if (!ok_)                                                                              \
            return FALSE;                                                                      \
        *h = next_;                                                                            \
    } while (0)

static gboolean
mid_forward (Autoencoder *ae, const Coder *c, Act *h, GError **error)
{
    STEP (resnet_forward (ae, &c->mid_block_1, h, &next_, error));
    if (c->mid_attn.c && !attn_forward (ae, &c->mid_attn, h, error))
        return FALSE;
    STEP (resnet_forward (ae, &c->mid_block_2, h, &next_, error));
    return TRUE;
}

static gboolean
level_forward (Autoencoder *ae, const Level *l, Act *h, GError **error)
{
    for (int b = 0; b < l->n_blocks; b++) {
        STEP (resnet_forward (ae, &l->blocks[b], h, &next_, error));
        if (l->attn && !attn_forward (ae, &l->attn[b], h, error))
            return FALSE;
    }
    return TRUE;
}

static gboolean
head_forward (Autoencoder *ae, const Coder *c, Act *h, GError **error)
{
    Act t = { 0 };
    gboolean ok = act_alloc (&t, h->n, h->h, h->w, h->c, error)
                  && norm_group (ae->dnn, &c->norm_out, h, &t, true, error);
    act_free (h);
    if (!ok) {
        act_free (&t);
        return FALSE;
    }
    ok = conv_new_out (c->conv_out, &t, h, error);
    act_free (&t);
    return ok;
}

static gboolean
encode_steps (Autoencoder *ae, Act *h, GError **error)
{
    const Coder *e = &ae->encoder;
    for (int i = 0; i < ae->cfg.n_levels; i++) {
        const Level *l = &e->levels[i];
        if (!level_forward (ae, l, h, error))
            return FALSE;
        if (l->resample)
            STEP (conv_new_out (l->resample, h, &next_, error));
    }
    if (!mid_forward (ae, e, h, error) || !head_forward (ae, e, h, error))
        return FALSE;
    STEP (conv_new_out (ae->quant_conv, h, &next_, error));
    return TRUE;
}

gboolean
autoencoder_encode (Autoencoder *ae, const Act *x, Act *out, GError **error)
{
    int f = autoencoder_factor (ae);
    if (x->c != ae->cfg.in_channels || x->h % f || x->w % f || x->h <= 0 || x->w <= 0) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "autoencoder input %dx%d with %d channels: needs %d channels and sides that "
                     "are multiples of %d",
                     x->w, x->h, x->c, ae->cfg.in_channels, f);
        return FALSE;
    }
    Act h = { 0 };
    if (!conv_new_out (ae->encoder.conv_in, x, &h, error))
        return FALSE;
    if (!encode_steps (ae, &h, error)) {
        act_free (&h);
        return FALSE;
    }
    *out = h;
    return TRUE;
}

gboolean
autoencoder_quantize (Autoencoder *ae, const Act *z, Act *out, int *indices, GError **error)
{
    const LdmAutoencoderConfig *cfg = &ae->cfg;
    if (cfg->kind != LDM_AUTOENCODER_VQ || z->c != cfg->embed_dim) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT, "quantising needs a VQ latent");
        return FALSE;
    }
    if (!act_alloc (out, z->n, z->h, z->w, z->c, error))
        return FALSE;
    size_t pixels = (size_t) z->n * z->h * z->w;
    int dim = cfg->embed_dim;
#pragma omp parallel for schedule(static) if (pixels * cfg->n_embed >= (1 << 16))
    for (size_t p = 0; p < pixels; p++) {
        const float *zp = z->data + p * dim;
        float z_sq = 0;
        for (int c = 0; c < dim; c++)
            z_sq += zp[c] * zp[c];
        int best = 0;
        float best_d = INFINITY;
        for (int j = 0; j < cfg->n_embed; j++) {
            const float *e = ae->codebook + (size_t) j * dim;
            float dot = 0;
            for (int c = 0; c < dim; c++)
                dot += zp[c] * e[c];
            /* (|z|^2 + |e|^2) - 2 z.e, as VectorQuantizer2 computes it; first minimum wins */
            float d = (z_sq + ae->codebook_sq[j]) - 2.0f * dot;
            if (d < best_d) {
                best_d = d;
                best = j;
            }
        }
        const float *e = ae->codebook + (size_t) best * dim;
        for (int c = 0; c < dim; c++)
            out->data[p * dim + c] = zp[c] + (e[c] - zp[c]); /* straight-through form */
        if (indices)
            indices[p] = best;
    }
    return TRUE;
}

gboolean
autoencoder_decode (Autoencoder *ae, const Act *z, Act *out, GError **error)
{
    const LdmAutoencoderConfig *cfg = &ae->cfg;
    if (z->c != cfg->embed_dim || z->h <= 0 || z->w <= 0) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "decoder input has %d channels, the autoencoder's latent has %d", z->c,
                     cfg->embed_dim);
        return FALSE;
    }
    const Coder *d = &ae->decoder;
    Act h0 = { 0 }, hh = { 0 };
    Act *h = &hh;
    if (!conv_new_out (ae->post_quant_conv, z, &h0, error))
        return FALSE;
    gboolean ok = conv_new_out (d->conv_in, &h0, h, error);
    act_free (&h0);
    if (!ok || !mid_forward (ae, d, h, error))
        goto fail;
    for (int i = cfg->n_levels - 1; i >= 0; i--) {
        const Level *l = &d->levels[i];
        if (!level_forward (ae, l, h, error))
            goto fail;
        if (l->resample) {
            Act up = { 0 };
            if (!act_alloc (&up, h->n, h->h * 2, h->w * 2, h->c, error))
                goto fail;
            act_upsample_nearest2x (h, &up);
            act_free (h);
            *h = up;
            Act next = { 0 };
            ok = conv_new_out (l->resample, h, &next, error);
            act_free (h);
            if (!ok)
                goto fail;
            *h = next;
        }
    }
    if (!head_forward (ae, d, h, error))
        goto fail;
    *out = *h;
    return TRUE;
fail:
    act_free (h);
    return FALSE;
}
