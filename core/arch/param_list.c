/* param_list.c: the list of parameters an architecture needs, names and shapes as CompVis
 * openaimodel.UNetModel and the VQModel / AutoencoderKL first stages register them; what the
 * loaders check a file against. */
#include "arch/config_limits.h"
#include "arch/unet_plan.h"

#include "io/tensor_file.h"

#include <stdarg.h>
#include <string.h>

static void add_param (GArray *params, int ndim, const int64_t *shape, const char *format, ...)
    G_GNUC_PRINTF (4, 5);

static void
add_param (GArray *params, int ndim, const int64_t *shape, const char *format, ...)
{
    LdmParamSpec spec = { .ndim = ndim };
    memcpy (spec.shape, shape, (size_t) ndim * sizeof *shape);
    va_list args;
    va_start (args, format);
    g_vsnprintf (spec.name, sizeof spec.name, format, args); /* names are short: see limits */
    va_end (args);
    g_array_append_val (params, spec);
}

#define SHAPE(...) ((const int64_t[]) { __VA_ARGS__ })

static void
add_conv (GArray *p, const char *base, const char *module, int64_t out, int64_t in, int64_t k)
{
    add_param (p, 4, SHAPE (out, in, k, k), "%s%s.weight", base, module);
    add_param (p, 1, SHAPE (out), "%s%s.bias", base, module);
}

static void
add_conv1d (GArray *p, const char *base, const char *module, int64_t out, int64_t in)
{
    add_param (p, 3, SHAPE (out, in, 1), "%s%s.weight", base, module);
    add_param (p, 1, SHAPE (out), "%s%s.bias", base, module);
}

static void
add_linear (GArray *p, const char *base, const char *module, int64_t out, int64_t in, bool bias)
{
    add_param (p, 2, SHAPE (out, in), "%s%s.weight", base, module);
    if (bias)
        add_param (p, 1, SHAPE (out), "%s%s.bias", base, module);
}

/* GroupNorm and LayerNorm alike. */
static void
add_norm (GArray *p, const char *base, const char *module, int64_t channels)
{
    add_param (p, 1, SHAPE (channels), "%s%s.weight", base, module);
    add_param (p, 1, SHAPE (channels), "%s%s.bias", base, module);
}

/* openaimodel.ResBlock; an up/down ResBlock has the same parameters. */
static void
unet_resblock (GArray *p, const LdmUnetConfig *u, const char *base, int64_t in, int64_t out)
{
    int64_t emb = 4 * (int64_t) u->model_channels;
    add_norm (p, base, "in_layers.0", in);
    add_conv (p, base, "in_layers.2", out, in, 3);
    add_linear (p, base, "emb_layers.1", u->use_scale_shift_norm ? 2 * out : out, emb, true);
    add_norm (p, base, "out_layers.0", out);
    add_conv (p, base, "out_layers.3", out, out, 3);
    if (in != out)
        add_conv (p, base, "skip_connection", out, in, 1);
}

static void
unet_cross_attention (GArray *p, const char *base, const char *module, int64_t inner,
                      int64_t context)
{
    char name[64];
    g_snprintf (name, sizeof name, "%s.to_q", module);
    add_linear (p, base, name, inner, inner, false);
    g_snprintf (name, sizeof name, "%s.to_k", module);
    add_linear (p, base, name, inner, context, false);
    g_snprintf (name, sizeof name, "%s.to_v", module);
    add_linear (p, base, name, inner, context, false);
    g_snprintf (name, sizeof name, "%s.to_out.0", module);
    add_linear (p, base, name, inner, inner, true);
}

/* A legacy AttentionBlock. */
static void
unet_attention (GArray *p, const char *base, int64_t channels)
{
    add_norm (p, base, "norm", channels);
    add_conv1d (p, base, "qkv", 3 * channels, channels);
    add_conv1d (p, base, "proj_out", channels, channels);
}

/* A SpatialTransformer with the heads the plan gives it. */
static void
unet_transformer (GArray *p, const LdmUnetConfig *u, const char *base, const UnetPlanLayer *l)
{
    int64_t channels = l->in_c, inner = (int64_t) l->heads * l->dim_head;
    add_norm (p, base, "norm", channels);
    if (u->use_linear_in_transformer)
        add_linear (p, base, "proj_in", inner, channels, true);
    else
        add_conv (p, base, "proj_in", inner, channels, 1);
    for (int d = 0; d < u->transformer_depth; d++) {
        char block[96];
        g_snprintf (block, sizeof block, "%stransformer_blocks.%d.", base, d);
        /* attn1 attends to the context instead of itself when self-attention is disabled. */
        unet_cross_attention (p, block, "attn1", inner,
                              l->disable_self_attn ? u->context_dim : inner);
        add_linear (p, block, "ff.net.0.proj", 8 * inner, inner, true); /* GEGLU: 2 x 4 dim */
        add_linear (p, block, "ff.net.2", inner, 4 * inner, true);
        unet_cross_attention (p, block, "attn2", inner, u->context_dim);
        add_norm (p, block, "norm1", inner);
        add_norm (p, block, "norm2", inner);
        add_norm (p, block, "norm3", inner);
    }
    if (u->use_linear_in_transformer) /* CompVis: nn.Linear(in_channels, inner_dim) */
        add_linear (p, base, "proj_out", inner, channels, true);
    else
        add_conv (p, base, "proj_out", channels, inner, 1);
}

GArray *
model_config_unet_params (const LdmUnetConfig *u)
{
    GArray *p = g_array_new (FALSE, FALSE, sizeof (LdmParamSpec));
    g_autofree UnetPlan *plan = g_new (UnetPlan, 1);
    if (!unet_plan_build (u, plan) || u->transformer_depth > MAX_DEPTH)
        return p; /* model_config_check rejects these */
    int64_t mc = u->model_channels, emb = 4 * mc;

    add_linear (p, "", "time_embed.0", emb, mc, true);
    add_linear (p, "", "time_embed.2", emb, emb, true);
    if (u->num_classes > 0)
        add_param (p, 2, SHAPE (u->num_classes, emb), "label_emb.weight");

    for (int i = 0; i < plan->n_blocks; i++) {
        const UnetPlanBlock *b = &plan->blocks[i];
        for (int k = 0; k < b->n_layers; k++) {
            const UnetPlanLayer *l = &b->layers[k];
            char base[40];
            g_snprintf (base, sizeof base, "%s.", l->prefix);
            switch (l->kind) {
            case UNET_LAYER_CONV_IN:
                add_conv (p, "", l->prefix, l->out_c, l->in_c, 3);
                break;
            case UNET_LAYER_RESBLOCK:
                unet_resblock (p, u, base, l->in_c, l->out_c);
                break;
            case UNET_LAYER_ATTENTION:
                unet_attention (p, base, l->in_c);
                break;
            case UNET_LAYER_TRANSFORMER:
                unet_transformer (p, u, base, l);
                break;
            case UNET_LAYER_DOWNSAMPLE:
                if (l->conv)
                    add_conv (p, base, "op", l->out_c, l->in_c, 3);
                break;
            case UNET_LAYER_UPSAMPLE:
                if (l->conv)
                    add_conv (p, base, "conv", l->out_c, l->in_c, 3);
                break;
            }
        }
    }

    add_norm (p, "", "out.0", plan->blocks[plan->n_blocks - 1].out_c);
    add_conv (p, "", "out.2", u->out_channels, mc, 3);
    return p;
}

/* model.ResnetBlock without a time embedding (temb_channels 0 in Encoder/Decoder). */
static void
ae_resnet (GArray *p, const char *base, int64_t in, int64_t out)
{
    add_norm (p, base, "norm1", in);
    add_conv (p, base, "conv1", out, in, 3);
    add_norm (p, base, "norm2", out);
    add_conv (p, base, "conv2", out, out, 3);
    if (in != out)
        add_conv (p, base, "nin_shortcut", out, in, 1);
}

/* model.AttnBlock: single-head attention with 1x1 convolutions. */
static void
ae_attention (GArray *p, const char *base, int64_t channels)
{
    add_norm (p, base, "norm", channels);
    add_conv (p, base, "q", channels, channels, 1);
    add_conv (p, base, "k", channels, channels, 1);
    add_conv (p, base, "v", channels, channels, 1);
    add_conv (p, base, "proj_out", channels, channels, 1);
}

static bool
ae_has_attention (const LdmAutoencoderConfig *ae, int64_t resolution)
{
    for (int i = 0; i < ae->n_attn_resolutions; i++)
        if (ae->attn_resolutions[i] == resolution)
            return true;
    return false;
}

static void
ae_middle (GArray *p, const LdmAutoencoderConfig *ae, const char *coder, int64_t channels)
{
    char base[64];
    g_snprintf (base, sizeof base, "%s.mid.block_1.", coder);
    ae_resnet (p, base, channels, channels);
    if (ae->mid_attention) {
        g_snprintf (base, sizeof base, "%s.mid.attn_1.", coder);
        ae_attention (p, base, channels);
    }
    g_snprintf (base, sizeof base, "%s.mid.block_2.", coder);
    ae_resnet (p, base, channels, channels);
}

GArray *
model_config_autoencoder_params (const LdmAutoencoderConfig *ae)
{
    GArray *p = g_array_new (FALSE, FALSE, sizeof (LdmParamSpec));
    if (ae->n_levels < 1 || ae->n_levels > LDM_MAX_LEVELS || ae->num_res_blocks < 1
        || ae->num_res_blocks > MAX_RES_BLOCKS)
        return p; /* model_config_check rejects these */
    int64_t ch = ae->ch, z = ae->z_channels;
    int n = ae->n_levels;
    char base[64];

    /* Encoder: blocks of a level first, then their attentions (module order). */
    add_conv (p, "", "encoder.conv_in", ch, ae->in_channels, 3);
    int64_t resolution = ae->resolution, block_in = ch;
    for (int level = 0; level < n; level++) {
        block_in = ch * (level ? ae->ch_mult[level - 1] : 1);
        int64_t block_out = ch * ae->ch_mult[level];
        for (int b = 0; b < ae->num_res_blocks; b++) {
            g_snprintf (base, sizeof base, "encoder.down.%d.block.%d.", level, b);
            ae_resnet (p, base, b ? block_out : block_in, block_out);
        }
        block_in = block_out;
        if (ae_has_attention (ae, resolution))
            for (int b = 0; b < ae->num_res_blocks; b++) {
                g_snprintf (base, sizeof base, "encoder.down.%d.attn.%d.", level, b);
                ae_attention (p, base, block_in);
            }
        if (level != n - 1) {
            g_snprintf (base, sizeof base, "encoder.down.%d.downsample.", level);
            add_conv (p, base, "conv", block_in, block_in, 3);
            resolution /= 2;
        }
    }
    ae_middle (p, ae, "encoder", block_in);
    add_norm (p, "", "encoder.norm_out", block_in);
    add_conv (p, "", "encoder.conv_out", ae->double_z ? 2 * z : z, block_in, 3);

    /* Decoder: up.L is built from the deepest level, named by L. */
    block_in = ch * ae->ch_mult[n - 1];
    resolution = ae->resolution >> (n - 1);
    add_conv (p, "", "decoder.conv_in", block_in, z, 3);
    ae_middle (p, ae, "decoder", block_in);
    for (int level = n - 1; level >= 0; level--) {
        int64_t block_out = ch * ae->ch_mult[level];
        for (int b = 0; b <= ae->num_res_blocks; b++) {
            g_snprintf (base, sizeof base, "decoder.up.%d.block.%d.", level, b);
            ae_resnet (p, base, b ? block_out : block_in, block_out);
        }
        block_in = block_out;
        if (ae_has_attention (ae, resolution))
            for (int b = 0; b <= ae->num_res_blocks; b++) {
                g_snprintf (base, sizeof base, "decoder.up.%d.attn.%d.", level, b);
                ae_attention (p, base, block_in);
            }
        if (level != 0) {
            g_snprintf (base, sizeof base, "decoder.up.%d.upsample.", level);
            add_conv (p, base, "conv", block_in, block_in, 3);
            resolution *= 2;
        }
    }
    add_norm (p, "", "decoder.norm_out", block_in);
    add_conv (p, "", "decoder.conv_out", ae->out_ch, block_in, 3);

    int64_t e = ae->embed_dim;
    if (ae->kind == LDM_AUTOENCODER_VQ) {
        add_param (p, 2, SHAPE (ae->n_embed, e), "quantize.embedding.weight");
        add_conv (p, "", "quant_conv", e, z, 1);
    } else {
        add_conv (p, "", "quant_conv", 2 * e, 2 * z, 1);
    }
    add_conv (p, "", "post_quant_conv", z, e, 1);
    return p;
}

int64_t
model_config_param_count (const GArray *params)
{
    int64_t total = 0;
    for (guint i = 0; i < params->len; i++) {
        const LdmParamSpec *spec = &g_array_index (params, LdmParamSpec, i);
        int64_t n = 1;
        for (int d = 0; d < spec->ndim; d++)
            n *= spec->shape[d];
        total += n;
    }
    return total;
}

char *
model_config_unet_ema_name (const char *name)
{
    GString *s = g_string_new (LDM_UNET_EMA_PREFIX);
    for (const char *c = name; *c; c++)
        if (*c != '.')
            g_string_append_c (s, *c);
    return g_string_free (s, FALSE);
}

bool
model_config_shape_matches (const LdmParamSpec *spec, const LdmTensor *tensor)
{
    int a = spec->ndim, b = tensor->ndim;
    while (a > 0 && spec->shape[a - 1] == 1)
        a--;
    while (b > 0 && tensor->shape[b - 1] == 1)
        b--;
    if (a != b)
        return false;
    for (int d = 0; d < a; d++)
        if (spec->shape[d] != tensor->shape[d])
            return false;
    return true;
}
