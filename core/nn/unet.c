/* unet.c: the CompVis diffusion U-Net, as a list of blocks of named layers.
 *
 *   emb = time_embed(timestep_embedding(t))
 *   h = input_blocks[0](x)                       conv 3x3
 *   for each input block: h = block(h); push h   ResBlock [+ attention] | downsample
 *   h = middle_block(h)                          ResBlock, attention, ResBlock
 *   for each output block: h = block([h | pop])  ResBlock [+ attention] [+ upsample]
 *   out = conv(SiLU(GroupNorm(h)))
 *
 * Attention is either the legacy QKV attention (LDM models) or a spatial transformer with
 * self- and cross-attention (Stable Diffusion). Activations are NHWC, so a 1x1 convolution or
 * a Conv1d over pixels is a linear layer over the rows of an (n*h*w) x c matrix.
 */
#include "nn/unet.h"

#include "alloc.h"
#include "arch/unet_plan.h"
#include "nn/act.h"
#include "nn/layers.h"

#include <math.h>
#include <string.h>

#define GN_GROUPS 32 /* widths must divide into these groups */

typedef struct {
    int        in_c, out_c;
    UnetResample resample;    /* resblock_updown: resample between SiLU and the conv */
    bool       scale_shift;   /* use_scale_shift_norm */
    Norm       in_norm;
    DnnConv   *in_conv;
    DnnLinear *emb_proj;      /* SiLU(emb) -> out_c (2 out_c with scale-shift) */
    Norm       out_norm;
    DnnConv   *out_conv;
    DnnConv   *skip;          /* NULL = identity */
} ResBlock;

typedef struct {
    int        c, heads;
    Norm       norm;
    DnnLinear *qkv;           /* Conv1d [3c, c, 1] */
    DnnLinear *proj_out;      /* Conv1d [c, c, 1] */
} AttentionBlock;

typedef struct {
    Norm       norm1, norm2, norm3;
    DnnLinear *q1, *k1, *v1, *out1;   /* self-attention */
    DnnLinear *q2, *k2, *v2, *out2;   /* cross-attention on the context */
    DnnLinear *ff_in, *ff_out;        /* GEGLU feed-forward */
} TransformerBlock;

typedef struct {
    int               c, inner, heads, d_head, depth;
    Norm              norm;
    DnnLinear        *proj_in, *proj_out;
    TransformerBlock *blocks;
} SpatialTransformer;

typedef struct {
    UnetLayerKind kind;       /* as the plan says */
    union {
        DnnConv           *conv;      /* the input conv, and the resampling convs (may be NULL) */
        ResBlock           res;
        AttentionBlock     attn;
        SpatialTransformer st;
    };
} Layer;

typedef struct {
    Layer layers[3];
    int   n_layers;
} Block;

struct Unet {
    Dnn          *dnn;
    LdmUnetConfig config;
    int           time_dim;        /* 4 * model_channels */
    DnnLinear    *time_embed0, *time_embed2;
    GArray       *input_blocks;    /* Block */
    Block         middle_block;
    GArray       *output_blocks;   /* Block */
    Norm          out_norm;
    DnnConv      *out_conv;
};

/* ---------------------------------------------------------------- loading */

static gboolean
resblock_load (Unet *u, ResBlock *r, const Weights *w, const char *prefix, int in_c, int out_c,
               UnetResample resample, GError **error)
{
    char name[160];
    *r = (ResBlock) { .in_c = in_c, .out_c = out_c, .resample = resample,
                      .scale_shift = u->config.use_scale_shift_norm };
    g_snprintf (name, sizeof name, "%s.in_layers.0", prefix);
    if (!norm_load (&r->in_norm, w, name, in_c, 1e-5f, error))
        return FALSE;
    g_snprintf (name, sizeof name, "%s.in_layers.2", prefix);
    if (!(r->in_conv = conv_load (u->dnn, w, name, out_c, in_c, 3, 1, -1, -1, error)))
        return FALSE;
    g_snprintf (name, sizeof name, "%s.emb_layers.1", prefix);
    if (!(r->emb_proj = linear_load (u->dnn, w, name, r->scale_shift ? 2 * out_c : out_c,
                                     u->time_dim, 2, true, error)))
        return FALSE;
    g_snprintf (name, sizeof name, "%s.out_layers.0", prefix);
    if (!norm_load (&r->out_norm, w, name, out_c, 1e-5f, error))
        return FALSE;
    g_snprintf (name, sizeof name, "%s.out_layers.3", prefix);
    if (!(r->out_conv = conv_load (u->dnn, w, name, out_c, out_c, 3, 1, -1, -1, error)))
        return FALSE;
    if (in_c != out_c) { /* CompVis uses a 1x1 skip (use_conv is never set in UNetModel) */
        g_snprintf (name, sizeof name, "%s.skip_connection", prefix);
        if (!(r->skip = conv_load (u->dnn, w, name, out_c, in_c, 1, 1, -1, -1, error)))
            return FALSE;
    }
    return TRUE;
}

static void
resblock_clear (ResBlock *r)
{
    norm_clear (&r->in_norm);
    norm_clear (&r->out_norm);
    dnn_conv_free (r->in_conv);
    dnn_conv_free (r->out_conv);
    dnn_conv_free (r->skip);
    dnn_linear_free (r->emb_proj);
}

static gboolean
attention_load (Unet *u, AttentionBlock *a, const Weights *w, const UnetPlanLayer *p,
                GError **error)
{
    char name[160];
    const char *prefix = p->prefix;
    int c = p->in_c;
    a->c = c;
    a->heads = p->heads;
    g_snprintf (name, sizeof name, "%s.norm", prefix);
    if (!norm_load (&a->norm, w, name, c, 1e-5f, error))
        return FALSE;
    g_snprintf (name, sizeof name, "%s.qkv", prefix);
    if (!(a->qkv = linear_load (u->dnn, w, name, 3 * c, c, 3, true, error)))
        return FALSE;
    g_snprintf (name, sizeof name, "%s.proj_out", prefix);
    return (a->proj_out = linear_load (u->dnn, w, name, c, c, 3, true, error)) != NULL;
}

static void
attention_clear (AttentionBlock *a)
{
    norm_clear (&a->norm);
    dnn_linear_free (a->qkv);
    dnn_linear_free (a->proj_out);
}

static gboolean
transformer_load (Unet *u, SpatialTransformer *st, const Weights *w, const UnetPlanLayer *p,
                  GError **error)
{
    const LdmUnetConfig *cfg = &u->config;
    char name[200];
    const char *prefix = p->prefix;
    int c = p->in_c;
    st->heads = p->heads;
    st->d_head = p->dim_head;
    st->c = c;
    st->inner = st->heads * st->d_head;
    st->depth = cfg->transformer_depth;
    int inner = st->inner, ctx = cfg->context_dim;
    int proj_ndim = cfg->use_linear_in_transformer ? 2 : 4;
    g_snprintf (name, sizeof name, "%s.norm", prefix);
    if (!norm_load (&st->norm, w, name, c, 1e-6f, error))
        return FALSE;
    g_snprintf (name, sizeof name, "%s.proj_in", prefix);
    if (!(st->proj_in = linear_load (u->dnn, w, name, inner, c, proj_ndim, true, error)))
        return FALSE;
    g_snprintf (name, sizeof name, "%s.proj_out", prefix);
    if (!(st->proj_out = linear_load (u->dnn, w, name, c, inner, proj_ndim, true, error)))
        return FALSE;
    st->blocks = ldm_try_alloc0_n (st->depth, sizeof (TransformerBlock), "transformer blocks",
                                   error);
    if (!st->blocks)
        return FALSE;
    for (int d = 0; d < st->depth; d++) {
        TransformerBlock *b = &st->blocks[d];
        struct {
            DnnLinear **dst;
            const char *part;
            int         out_f, in_f;
            bool        bias;
        } lin[] = {
            { &b->q1, "attn1.to_q", inner, inner, false },
            { &b->k1, "attn1.to_k", inner, inner, false },
            { &b->v1, "attn1.to_v", inner, inner, false },
            { &b->out1, "attn1.to_out.0", inner, inner, true },
            { &b->q2, "attn2.to_q", inner, inner, false },
            { &b->k2, "attn2.to_k", inner, ctx, false },
            { &b->v2, "attn2.to_v", inner, ctx, false },
            { &b->out2, "attn2.to_out.0", inner, inner, true },
            { &b->ff_in, "ff.net.0.proj", 8 * inner, inner, true },
            { &b->ff_out, "ff.net.2", inner, 4 * inner, true },
        };
        for (size_t i = 0; i < G_N_ELEMENTS (lin); i++) {
            g_snprintf (name, sizeof name, "%s.transformer_blocks.%d.%s", prefix, d, lin[i].part);
            *lin[i].dst = linear_load (u->dnn, w, name, lin[i].out_f, lin[i].in_f, 2, lin[i].bias,
                                       error);
            if (!*lin[i].dst)
                return FALSE;
        }
        Norm *norms[3] = { &b->norm1, &b->norm2, &b->norm3 };
        for (int i = 0; i < 3; i++) {
            g_snprintf (name, sizeof name, "%s.transformer_blocks.%d.norm%d", prefix, d, i + 1);
            if (!norm_load (norms[i], w, name, inner, 1e-5f, error))
                return FALSE;
        }
    }
    return TRUE;
}

static void
transformer_clear (SpatialTransformer *st)
{
    norm_clear (&st->norm);
    dnn_linear_free (st->proj_in);
    dnn_linear_free (st->proj_out);
    for (int d = 0; st->blocks && d < st->depth; d++) {
        TransformerBlock *b = &st->blocks[d];
        norm_clear (&b->norm1);
        norm_clear (&b->norm2);
        norm_clear (&b->norm3);
        DnnLinear *lin[] = { b->q1, b->k1, b->v1, b->out1, b->q2, b->k2, b->v2, b->out2,
                             b->ff_in, b->ff_out };
        for (size_t i = 0; i < G_N_ELEMENTS (lin); i++)
            dnn_linear_free (lin[i]);
    }
    g_free (st->blocks);
}

static void
layer_clear (Layer *l)
{
    switch (l->kind) {
    case UNET_LAYER_CONV_IN:
    case UNET_LAYER_DOWNSAMPLE:
    case UNET_LAYER_UPSAMPLE: dnn_conv_free (l->conv); break;
    case UNET_LAYER_RESBLOCK: resblock_clear (&l->res); break;
    case UNET_LAYER_ATTENTION: attention_clear (&l->attn); break;
    case UNET_LAYER_TRANSFORMER: transformer_clear (&l->st); break;
    }
}

static void
block_clear (gpointer data)
{
    Block *b = data;
    for (int i = 0; i < b->n_layers; i++)
        layer_clear (&b->layers[i]);
    b->n_layers = 0;
}

/* One layer of the plan, loaded under its prefix. */
static gboolean
layer_load (Unet *u, Layer *l, const Weights *w, const UnetPlanLayer *p, GError **error)
{
    char name[48];
    l->kind = p->kind;
    switch (p->kind) {
    case UNET_LAYER_CONV_IN:
        l->conv = conv_load (u->dnn, w, p->prefix, p->out_c, p->in_c, 3, 1, -1, -1, error);
        return l->conv != NULL;
    case UNET_LAYER_RESBLOCK:
        return resblock_load (u, &l->res, w, p->prefix, p->in_c, p->out_c, p->resample, error);
    case UNET_LAYER_ATTENTION:
        return attention_load (u, &l->attn, w, p, error);
    case UNET_LAYER_TRANSFORMER:
        return transformer_load (u, &l->st, w, p, error);
    case UNET_LAYER_DOWNSAMPLE: /* conv 3x3 stride 2, or average pooling */
    case UNET_LAYER_UPSAMPLE:   /* nearest 2x, then conv 3x3 */
        if (!p->conv)
            return TRUE;
        g_snprintf (name, sizeof name, "%s.%s", p->prefix,
                    p->kind == UNET_LAYER_DOWNSAMPLE ? "op" : "conv");
        l->conv = conv_load (u->dnn, w, name, p->out_c, p->in_c, 3,
                             p->kind == UNET_LAYER_DOWNSAMPLE ? 2 : 1, -1, -1, error);
        return l->conv != NULL;
    }
    return FALSE;
}

static gboolean
check_config (const LdmUnetConfig *cfg, GError **error)
{
    const char *problem = NULL;
    if (cfg->n_levels < 1 || cfg->n_levels > LDM_MAX_LEVELS || cfg->model_channels <= 0
        || cfg->in_channels <= 0 || cfg->out_channels <= 0 || cfg->num_res_blocks <= 0
        || cfg->num_res_blocks > LDM_MAX_RES_BLOCKS)
        problem = "channels, levels or res blocks out of range";
    else if (cfg->num_heads <= 0 && cfg->num_head_channels <= 0)
        problem = "neither num_heads nor num_head_channels is set";
    else if (cfg->use_spatial_transformer && cfg->context_dim <= 0)
        problem = "a spatial transformer needs context_dim";
    else if (cfg->num_classes > 0)
        problem = "class-conditioned U-Nets (num_classes) are not supported";
    else if (cfg->has_disable_self_attentions || cfg->disable_middle_self_attn)
        problem = "disabling self-attention is not supported";
    for (int i = 0; !problem && i < cfg->n_levels; i++) {
        int c = cfg->model_channels * cfg->channel_mult[i];
        if (cfg->channel_mult[i] <= 0 || c % GN_GROUPS)
            problem = "every width must be a positive multiple of 32 (GroupNorm 32)";
    }
    /* Heads where there is attention: the levels of attention_resolutions and the middle. A
     * legacy block splits its width into the heads; a transformer works on heads x d. */
    for (int i = 0; !problem && i <= cfg->n_levels; i++) {
        bool middle = i == cfg->n_levels, has = middle;
        for (int k = 0; !middle && k < cfg->n_attention_resolutions; k++)
            has |= i < 30 && cfg->attention_resolutions[k] == 1 << i;
        if (!has)
            continue;
        int c = cfg->model_channels * cfg->channel_mult[middle ? cfg->n_levels - 1 : i];
        for (int output = 0; output < 2 && !problem; output++) {
            int heads, d;
            model_config_attention_heads (cfg, c, output, &heads, &d);
            if (heads < 1 || d < 1
                || (!cfg->use_spatial_transformer && (int64_t) heads * d != c))
                problem = "attention heads do not divide a width evenly";
        }
    }
    if (problem) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_UNSUPPORTED, "U-Net configuration: %s", problem);
        return FALSE;
    }
    return TRUE;
}

Unet *
unet_new (Dnn *dnn, const LdmUnetConfig *config, const Weights *w, GError **error)
{
    if (!check_config (config, error))
        return NULL;
    g_autofree UnetPlan *plan = g_new (UnetPlan, 1); /* before any goto: freed on every path */
    Unet *u = g_new0 (Unet, 1);
    u->dnn = dnn;
    u->config = *config;
    const LdmUnetConfig *cfg = &u->config;
    int mc = cfg->model_channels;
    u->time_dim = 4 * mc;
    u->input_blocks = g_array_new (FALSE, TRUE, sizeof (Block));
    u->output_blocks = g_array_new (FALSE, TRUE, sizeof (Block));
    g_array_set_clear_func (u->input_blocks, block_clear);
    g_array_set_clear_func (u->output_blocks, block_clear);

    if (!(u->time_embed0 = linear_load (dnn, w, "time_embed.0", u->time_dim, mc, 2, true, error))
        || !(u->time_embed2 = linear_load (dnn, w, "time_embed.2", u->time_dim, u->time_dim, 2,
                                           true, error)))
        goto fail;

    /* The blocks as the plan lists them (check_config bounded the levels and res blocks). */
    unet_plan_build (cfg, plan);
    for (int i = 0; i < plan->n_blocks; i++) {
        const UnetPlanBlock *pb = &plan->blocks[i];
        Block *blk = &u->middle_block;
        if (pb->part != UNET_PART_MIDDLE) {
            GArray *blocks = pb->part == UNET_PART_INPUT ? u->input_blocks : u->output_blocks;
            g_array_append_val (blocks, (Block) { 0 });
            blk = &g_array_index (blocks, Block, blocks->len - 1);
        }
        for (int k = 0; k < pb->n_layers; k++) /* counted first: a failed load is freed */
            if (!layer_load (u, &blk->layers[blk->n_layers++], w, &pb->layers[k], error))
                goto fail;
    }
    int ch = plan->blocks[plan->n_blocks - 1].out_c;

    if (!norm_load (&u->out_norm, w, "out.0", ch, 1e-5f, error)
        || !(u->out_conv = conv_load (dnn, w, "out.2", cfg->out_channels, mc, 3, 1, -1, -1, error)))
        goto fail;
    return u;
fail:
    unet_free (u);
    return NULL;
}

void
unet_free (Unet *u)
{
    if (!u)
        return;
    dnn_linear_free (u->time_embed0);
    dnn_linear_free (u->time_embed2);
    g_array_unref (u->input_blocks);
    block_clear (&u->middle_block);
    g_array_unref (u->output_blocks);
    norm_clear (&u->out_norm);
    dnn_conv_free (u->out_conv);
    g_free (u);
}

/* ---------------------------------------------------------------- forward */

void
unet_timestep_embedding (float t, int dim, float *out)
{
    int half = dim / 2;
    for (int i = 0; i < half; i++) {
        /* float32 throughout, like torch: exp(-ln(10000) * i / half), then t * freq */
        float freq = expf (-logf (10000.0f) * (float) i / (float) half);
        float arg = t * freq;
        out[i] = cosf (arg);
        out[half + i] = sinf (arg);
    }
    if (dim % 2)
        out[dim - 1] = 0.0f;
}

static gboolean
time_mlp (Unet *u, const float *t, int n, float *emb, GError **error)
{
    int mc = u->config.model_channels;
    g_autofree float *sinusoid = ldm_try_alloc_floats ((size_t) n * mc, "the timestep embedding",
                                                       error);
    g_autofree float *hidden = sinusoid ? ldm_try_alloc_floats ((size_t) n * u->time_dim,
                                                                "the timestep embedding", error)
                                        : NULL;
    if (!hidden)
        return FALSE;
    for (int i = 0; i < n; i++)
        unet_timestep_embedding (t[i], mc, sinusoid + (size_t) i * mc);
    return dnn_linear_forward (u->time_embed0, sinusoid, hidden, n, false, error)
           && dnn_eltwise (u->dnn, DNN_SILU, hidden, hidden, (int64_t) n * u->time_dim, error)
           && dnn_linear_forward (u->time_embed2, hidden, emb, n, false, error);
}

gboolean
unet_time_mlp (Unet *u, float t, float *out, GError **error)
{
    return time_mlp (u, &t, 1, out, error);
}

static gboolean
resblock_forward (Unet *u, const ResBlock *r, const Act *x, const float *emb_silu, Act *out,
                  GError **error)
{
    gboolean ok = FALSE;
    int n = x->n, h = x->h, w = x->w;
    Act t = { 0 }, t_resampled = { 0 }, x_resampled = { 0 }, h1 = { 0 }, t2 = { 0 };
    size_t emb_n = (size_t) n * (r->scale_shift ? 2 : 1) * r->out_c;
    g_autofree float *emb_out = ldm_try_alloc_floats (emb_n, "a time embedding projection", error);
    const Act *x_in = x, *t_in = &t;

    if (!emb_out || !act_alloc (&t, n, h, w, r->in_c, error)
        || !norm_group (u->dnn, &r->in_norm, x, &t, true, error))
        goto done;
    if (r->resample != UNET_RESAMPLE_NONE) {
        int h2 = r->resample == UNET_RESAMPLE_UP ? h * 2 : h / 2;
        int w2 = r->resample == UNET_RESAMPLE_UP ? w * 2 : w / 2;
        if (!act_alloc (&t_resampled, n, h2, w2, r->in_c, error)
            || !act_alloc (&x_resampled, n, h2, w2, r->in_c, error))
            goto done;
        if (r->resample == UNET_RESAMPLE_UP) {
            act_upsample_nearest2x (&t, &t_resampled);
            act_upsample_nearest2x (x, &x_resampled);
        } else {
            act_avgpool2x2 (&t, &t_resampled);
            act_avgpool2x2 (x, &x_resampled);
        }
        x_in = &x_resampled;
        t_in = &t_resampled;
        h = h2;
        w = w2;
    }
    if (!dnn_linear_forward (r->emb_proj, emb_silu, emb_out, n, false, error))
        goto done;

    if (!act_alloc (&h1, n, h, w, r->out_c, error) || !act_alloc (&t2, n, h, w, r->out_c, error)
        || !act_alloc (out, n, h, w, r->out_c, error))
        goto done;
    if (r->scale_shift) {
        /* h = GN(conv(t)) * (1 + scale) + shift, then SiLU */
        if (!dnn_conv_forward (r->in_conv, t_in, &h1, NULL, error)
            || !norm_group (u->dnn, &r->out_norm, &h1, &t2, false, error))
            goto done;
        size_t pixels = (size_t) h * w;
        for (int b = 0; b < n; b++) {
            const float *scale = emb_out + (size_t) b * 2 * r->out_c, *shift = scale + r->out_c;
            float *p = t2.data + (size_t) b * pixels * r->out_c;
            for (size_t i = 0; i < pixels; i++)
                for (int c = 0; c < r->out_c; c++)
                    p[i * r->out_c + c] = p[i * r->out_c + c] * (1.0f + scale[c]) + shift[c];
        }
        if (!dnn_eltwise (u->dnn, DNN_SILU, t2.data, t2.data, (int64_t) act_numel (&t2), error))
            goto done;
    } else {
        DnnConvPost add_emb = { .channel_add = emb_out };
        if (!dnn_conv_forward (r->in_conv, t_in, &h1, &add_emb, error)
            || !norm_group (u->dnn, &r->out_norm, &h1, &t2, true, error))
            goto done;
    }
    /* out = skip(x) + conv(t2) */
    if (r->skip) {
        if (!dnn_conv_forward (r->skip, x_in, out, NULL, error))
            goto done;
    } else {
        memcpy (out->data, x_in->data, act_numel (out) * sizeof (float));
    }
    DnnConvPost accumulate = { .accumulate = true };
    ok = dnn_conv_forward (r->out_conv, &t2, out, &accumulate, error);
done:
    act_free (&t);
    act_free (&t_resampled);
    act_free (&x_resampled);
    act_free (&h1);
    act_free (&t2);
    if (!ok)
        act_free (out);
    return ok;
}

/* Legacy QKV attention, in place: x += proj_out(attention(qkv(GN(x)))). */
static gboolean
attention_forward (Unet *u, const AttentionBlock *a, Act *x, GError **error)
{
    gboolean ok = FALSE;
    int c = a->c, d = c / a->heads, tokens = x->h * x->w;
    size_t rows = (size_t) x->n * tokens;
    Act t = { 0 };
    float *qkv = ldm_try_alloc_floats (rows * 3 * c, "attention", error);
    float *mixed = qkv ? ldm_try_alloc_floats (rows * c, "attention", error) : NULL;
    if (!qkv || !mixed)
        goto done;
    if (!act_alloc (&t, x->n, x->h, x->w, c, error) || !norm_group (u->dnn, &a->norm, x, &t, false, error)
        || !dnn_linear_forward (a->qkv, t.data, qkv, (int) rows, false, error))
        goto done;
    /* Channels of qkv are head-major: head h holds [q | k | v], d channels each. */
    for (int b = 0; b < x->n; b++) {
        const float *base = qkv + (size_t) b * tokens * 3 * c;
        if (!dnn_attention (u->dnn, base, 3 * c, base + d, 3 * c, base + 2 * d, 3 * c, 3 * d, a->heads, d,
                        tokens, tokens, mixed + (size_t) b * tokens * c, c,
                        1.0f / sqrtf ((float) d), error))
            goto done;
    }
    ok = dnn_linear_forward (a->proj_out, mixed, x->data, (int) rows, true, error);
done:
    act_free (&t);
    g_free (qkv);
    g_free (mixed);
    return ok;
}

/* Spatial transformer, in place: x += proj_out(blocks(proj_in(GN(x)))). */
static gboolean
transformer_forward (Unet *u, const SpatialTransformer *st, Act *x, const float *context,
                     int context_tokens, GError **error)
{
    gboolean ok = FALSE;
    int inner = st->inner, d = st->d_head, tokens = x->h * x->w;
    size_t rows = (size_t) x->n * tokens, ctx_rows = (size_t) x->n * context_tokens;
    size_t kv_rows = MAX (rows, ctx_rows);
    Act t = { 0 };
    float *hidden = ldm_try_alloc_floats (rows * inner, NULL, NULL);
    float *normed = ldm_try_alloc_floats (rows * inner, NULL, NULL);
    float *q = ldm_try_alloc_floats (rows * inner, NULL, NULL);
    float *k = ldm_try_alloc_floats (kv_rows * inner, NULL, NULL);
    float *v = ldm_try_alloc_floats (kv_rows * inner, NULL, NULL);
    float *mixed = ldm_try_alloc_floats (rows * inner, NULL, NULL);
    float *ff = ldm_try_alloc_floats (rows * 8 * inner, NULL, NULL);
    float *gated = ldm_try_alloc_floats (rows * 4 * inner, NULL, NULL);
    float scale = 1.0f / sqrtf ((float) d);
    if (!hidden || !normed || !q || !k || !v || !mixed || !ff || !gated) {
        ldm_no_memory (error, "a spatial transformer", (16 * rows + 2 * kv_rows) * inner,
                       sizeof (float));
        goto done;
    }
    if (!context) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "this U-Net needs a cross-attention context (a text embedding)");
        goto done;
    }
    if (!act_alloc (&t, x->n, x->h, x->w, st->c, error)
        || !norm_group (u->dnn, &st->norm, x, &t, false, error)
        || !dnn_linear_forward (st->proj_in, t.data, hidden, (int) rows, false, error))
        goto done;

    for (int i = 0; i < st->depth; i++) {
        const TransformerBlock *b = &st->blocks[i];
        /* self-attention */
        if (!dnn_layer_norm (u->dnn, hidden, normed, (int) rows, inner, b->norm1.gamma,
                             b->norm1.beta, b->norm1.eps, error)
            || !dnn_linear_forward (b->q1, normed, q, (int) rows, false, error)
            || !dnn_linear_forward (b->k1, normed, k, (int) rows, false, error)
            || !dnn_linear_forward (b->v1, normed, v, (int) rows, false, error))
            goto done;
        for (int n = 0; n < x->n; n++) {
            size_t off = (size_t) n * tokens * inner;
            if (!dnn_attention (u->dnn, q + off, inner, k + off, inner, v + off, inner, d, st->heads, d,
                            tokens, tokens, mixed + off, inner, scale, error))
                goto done;
        }
        if (!dnn_linear_forward (b->out1, mixed, hidden, (int) rows, true, error))
            goto done;
        /* cross-attention on the context */
        if (!dnn_layer_norm (u->dnn, hidden, normed, (int) rows, inner, b->norm2.gamma,
                             b->norm2.beta, b->norm2.eps, error)
            || !dnn_linear_forward (b->q2, normed, q, (int) rows, false, error)
            || !dnn_linear_forward (b->k2, context, k, (int) ctx_rows, false, error)
            || !dnn_linear_forward (b->v2, context, v, (int) ctx_rows, false, error))
            goto done;
        for (int n = 0; n < x->n; n++) {
            size_t off = (size_t) n * tokens * inner, coff = (size_t) n * context_tokens * inner;
            if (!dnn_attention (u->dnn, q + off, inner, k + coff, inner, v + coff, inner, d, st->heads, d,
                            tokens, context_tokens, mixed + off, inner, scale, error))
                goto done;
        }
        if (!dnn_linear_forward (b->out2, mixed, hidden, (int) rows, true, error))
            goto done;
        /* GEGLU feed-forward: [a | gate] = proj(x); x += out(a * gelu(gate)) */
        if (!dnn_layer_norm (u->dnn, hidden, normed, (int) rows, inner, b->norm3.gamma,
                             b->norm3.beta, b->norm3.eps, error)
            || !dnn_linear_forward (b->ff_in, normed, ff, (int) rows, false, error))
            goto done;
        int f = 4 * inner;
        for (size_t r = 0; r < rows; r++)
            memcpy (gated + r * f, ff + r * 2 * f + f, f * sizeof (float));
        if (!dnn_eltwise (u->dnn, DNN_GELU_ERF, gated, gated, (int64_t) rows * f, error))
            goto done;
        for (size_t r = 0; r < rows; r++)
            for (int j = 0; j < f; j++)
                gated[r * f + j] *= ff[r * 2 * f + j];
        if (!dnn_linear_forward (b->ff_out, gated, hidden, (int) rows, true, error))
            goto done;
    }
    ok = dnn_linear_forward (st->proj_out, hidden, x->data, (int) rows, true, error);
done:
    act_free (&t);
    g_free (hidden);
    g_free (normed);
    g_free (q);
    g_free (k);
    g_free (v);
    g_free (mixed);
    g_free (ff);
    g_free (gated);
    return ok;
}

/* Runs one block on `in` (borrowed) into a new `out`. */
static gboolean
block_forward (Unet *u, const Block *blk, const Act *in, const float *emb_silu,
               const float *context, int context_tokens, Act *out, GError **error)
{
    Act h = { 0 };
    for (int i = 0; i < blk->n_layers; i++) {
        const Layer *l = &blk->layers[i];
        const Act *src = i == 0 ? in : &h;
        Act next = { 0 };
        gboolean ok = TRUE;
        switch (l->kind) {
        case UNET_LAYER_CONV_IN: {
            int oh, ow;
            dnn_conv_out_size (l->conv, src->h, src->w, &oh, &ow);
            ok = act_alloc (&next, src->n, oh, ow, dnn_conv_out_channels (l->conv), error)
                 && dnn_conv_forward (l->conv, src, &next, NULL, error);
            break;
        }
        case UNET_LAYER_RESBLOCK:
            ok = resblock_forward (u, &l->res, src, emb_silu, &next, error);
            break;
        case UNET_LAYER_ATTENTION:
        case UNET_LAYER_TRANSFORMER:
            /* In place: the input of an attention layer is always this block's own buffer. */
            ok = l->kind == UNET_LAYER_ATTENTION
                     ? attention_forward (u, &l->attn, &h, error)
                     : transformer_forward (u, &l->st, &h, context, context_tokens, error);
            if (!ok) {
                act_free (&h);
                return FALSE;
            }
            continue;
        case UNET_LAYER_DOWNSAMPLE:
            if (l->conv) {
                int oh, ow;
                dnn_conv_out_size (l->conv, src->h, src->w, &oh, &ow);
                ok = act_alloc (&next, src->n, oh, ow, src->c, error)
                     && dnn_conv_forward (l->conv, src, &next, NULL, error);
            } else {
                ok = act_alloc (&next, src->n, src->h / 2, src->w / 2, src->c, error);
                if (ok)
                    act_avgpool2x2 (src, &next);
            }
            break;
        case UNET_LAYER_UPSAMPLE: {
            Act up = { 0 };
            ok = act_alloc (&up, src->n, src->h * 2, src->w * 2, src->c, error);
            if (ok)
                act_upsample_nearest2x (src, &up);
            if (ok && l->conv) {
                ok = act_alloc (&next, up.n, up.h, up.w, src->c, error)
                     && dnn_conv_forward (l->conv, &up, &next, NULL, error);
                act_free (&up);
            } else {
                next = up;
            }
            break;
        }
        }
        act_free (&h);
        if (!ok) {
            act_free (&next);
            return FALSE;
        }
        h = next;
    }
    *out = h;
    return TRUE;
}

gboolean
unet_forward (Unet *u, const Act *x, const float *t, const float *context, int context_tokens,
              Act *out, GError **error)
{
    const LdmUnetConfig *cfg = &u->config;
    int factor = 1 << (cfg->n_levels - 1);
    if (x->c != cfg->in_channels || x->h % factor || x->w % factor || x->h <= 0 || x->w <= 0) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "U-Net input %dx%d with %d channels: needs %d channels and sides that are "
                     "multiples of %d",
                     x->w, x->h, x->c, cfg->in_channels, factor);
        return FALSE;
    }
    gboolean ok = FALSE;
    int n_in = u->input_blocks->len;
    Act *skips = g_new0 (Act, n_in); /* a few bytes per block */
    Act h = { 0 }, cat = { 0 };
    int n_skips = 0;
    float *emb = ldm_try_alloc_floats ((size_t) x->n * u->time_dim, "the time embedding",
                                       error);
    if (!emb || !time_mlp (u, t, x->n, emb, error)
        || !dnn_eltwise (u->dnn, DNN_SILU, emb, emb, (int64_t) x->n * u->time_dim, error))
        goto done;

    for (int i = 0; i < n_in; i++) {
        const Act *src = i == 0 ? x : &skips[i - 1];
        if (!block_forward (u, &g_array_index (u->input_blocks, Block, i), src, emb, context,
                            context_tokens, &skips[i], error))
            goto done;
        n_skips = i + 1;
    }
    if (!block_forward (u, &u->middle_block, &skips[n_skips - 1], emb, context, context_tokens,
                        &h, error))
        goto done;
    for (guint i = 0; i < u->output_blocks->len; i++) {
        Act *skip = &skips[--n_skips];
        if (!act_alloc (&cat, h.n, h.h, h.w, h.c + skip->c, error))
            goto done;
        act_concat_channels (&h, skip, &cat);
        act_free (&h);
        act_free (skip);
        if (!block_forward (u, &g_array_index (u->output_blocks, Block, i), &cat, emb, context,
                            context_tokens, &h, error))
            goto done;
        act_free (&cat);
    }
    Act t_out = { 0 };
    ok = act_alloc (&t_out, h.n, h.h, h.w, h.c, error)
         && norm_group (u->dnn, &u->out_norm, &h, &t_out, true, error)
         && dnn_conv_forward (u->out_conv, &t_out, out, NULL, error);
    act_free (&t_out);
done:
    for (int i = 0; i < n_in; i++)
        act_free (&skips[i]);
    g_free (skips);
    act_free (&h);
    act_free (&cat);
    g_free (emb);
    return ok;
}
