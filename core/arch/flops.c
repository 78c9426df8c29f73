/* flops.c: FLOPs of the U-Net and autoencoder from their descriptions (see flops.h). */
#include "arch/flops.h"

#include "arch/unet_plan.h"

/* A convolution with a k x k kernel producing an oh x ow x out_c output from in_c channels. */
static double
conv (double oh, double ow, int in_c, int out_c, int k)
{
    return 2.0 * oh * ow * in_c * out_c * k * k;
}

/* A linear layer on `rows` rows. */
static double
linear (double rows, int in_f, int out_f)
{
    return 2.0 * rows * in_f * out_f;
}

/* Scores Q K^T (tq x tk x inner) and the weighted sum A V (same size). */
static double
attention_products (double tq, double tk, int inner)
{
    return 2.0 * 2.0 * tq * tk * inner;
}

/* A ResBlock at the resolution of its output (oh x ow): in_layers' conv, the embedding's
 * linear (emb_c -> out_c, x2 with scale-shift), out_layers' conv and a 1x1 skip when the
 * widths differ. In up/down ResBlocks the resampling comes before both convolutions. */
static double
resblock (const LdmUnetConfig *u, double oh, double ow, int in_c, int out_c)
{
    int emb_c = 4 * u->model_channels;
    double f = conv (oh, ow, in_c, out_c, 3) + conv (oh, ow, out_c, out_c, 3)
               + linear (1, emb_c, u->use_scale_shift_norm ? 2 * out_c : out_c);
    if (in_c != out_c)
        f += conv (oh, ow, in_c, out_c, 1);
    return f;
}

/* The legacy AttentionBlock: qkv (C -> 3C), the products over all heads, proj_out. */
static double
attention_block (double t, int c)
{
    return linear (t, c, 3 * c) + attention_products (t, t, c) + linear (t, c, c);
}

/* A SpatialTransformer of `depth` BasicTransformerBlocks with heads x dim_head inner width:
 * proj_in, per block self-attention (or attention to the context when disabled), cross-
 * attention to the context, the GEGLU feed-forward (C -> 8C, 4C -> C), proj_out. */
static double
transformer (const LdmUnetConfig *u, const UnetPlanLayer *l, double t, int tokens)
{
    int c = l->in_c, inner = l->heads * l->dim_head, ctx = u->context_dim;
    double f = linear (t, c, inner) + linear (t, inner, c); /* proj_in, proj_out */
    for (int d = 0; d < u->transformer_depth; d++) { /* blocks of width `inner` */
        if (l->disable_self_attn) /* attn1 attends to the context */
            f += linear (t, inner, inner) + 2 * linear (tokens, ctx, inner)
                 + attention_products (t, tokens, inner) + linear (t, inner, inner);
        else
            f += 3 * linear (t, inner, inner) + attention_products (t, t, inner)
                 + linear (t, inner, inner);
        f += linear (t, inner, inner) + 2 * linear (tokens, ctx, inner)
             + attention_products (t, tokens, inner) + linear (t, inner, inner);
        f += linear (t, inner, 8 * inner) + linear (t, 4 * inner, inner);
    }
    return f;
}

double
model_config_unet_flops (const LdmUnetConfig *u, int batch, int h, int w, int context_tokens)
{
    UnetPlan plan;
    if (!unet_plan_build (u, &plan))
        return 0;
    const int mc = u->model_channels;
    /* the time embedding MLP, per sample */
    double f = linear (1, mc, 4 * mc) + linear (1, 4 * mc, 4 * mc);
    for (int bi = 0; bi < plan.n_blocks; bi++) {
        const UnetPlanBlock *b = &plan.blocks[bi];
        /* resolution of the block's input: its level's, except that an input block's
         * downsampling and an output block's upsampling change it on the way */
        double bh = (double) h / (1 << b->level), bw = (double) w / (1 << b->level);
        for (int li = 0; li < b->n_layers; li++) {
            const UnetPlanLayer *l = &b->layers[li];
            switch (l->kind) {
            case UNET_LAYER_CONV_IN:
                f += conv (bh, bw, l->in_c, l->out_c, 3);
                break;
            case UNET_LAYER_RESBLOCK:
                if (l->resample == UNET_RESAMPLE_DOWN)
                    bh /= 2, bw /= 2;
                else if (l->resample == UNET_RESAMPLE_UP)
                    bh *= 2, bw *= 2;
                f += resblock (u, bh, bw, l->in_c, l->out_c);
                break;
            case UNET_LAYER_ATTENTION:
                f += attention_block (bh * bw, l->in_c);
                break;
            case UNET_LAYER_TRANSFORMER:
                f += transformer (u, l, bh * bw, context_tokens);
                break;
            case UNET_LAYER_DOWNSAMPLE:
                bh /= 2, bw /= 2;
                if (l->conv)
                    f += conv (bh, bw, l->in_c, l->out_c, 3);
                break;
            case UNET_LAYER_UPSAMPLE:
                bh *= 2, bw *= 2;
                if (l->conv)
                    f += conv (bh, bw, l->in_c, l->out_c, 3);
                break;
            }
        }
    }
    f += conv (h, w, mc, u->out_channels, 3); /* out: GN, SiLU, conv */
    return f * batch;
}

/* The autoencoder's ResnetBlock: two 3x3 convolutions, a 1x1 nin_shortcut when widths differ. */
static double
ae_resblock (double h, double w, int in_c, int out_c)
{
    double f = conv (h, w, in_c, out_c, 3) + conv (h, w, out_c, out_c, 3);
    if (in_c != out_c)
        f += conv (h, w, in_c, out_c, 1);
    return f;
}

/* AttnBlock: single-head q, k, v, proj_out 1x1 convolutions and the products over h x w. */
static double
ae_attention (double h, double w, int c)
{
    return 4 * conv (h, w, c, c, 1) + attention_products (h * w, h * w, c);
}

/* Whether the level at `level` has attention: CompVis compares resolution / 2^level (the
 * config's training resolution) with attn_resolutions. */
static bool
ae_has_attention (const LdmAutoencoderConfig *ae, int level)
{
    for (int i = 0; i < ae->n_attn_resolutions; i++)
        if (ae->attn_resolutions[i] == ae->resolution >> level)
            return true;
    return false;
}

double
model_config_encode_flops (const LdmAutoencoderConfig *ae, int image_h, int image_w)
{
    double h = image_h, w = image_w, f = conv (h, w, ae->in_channels, ae->ch, 3);
    int c = ae->ch;
    for (int level = 0; level < ae->n_levels; level++) {
        int out = ae->ch * ae->ch_mult[level];
        for (int r = 0; r < ae->num_res_blocks; r++) {
            f += ae_resblock (h, w, c, out);
            c = out;
            if (ae_has_attention (ae, level))
                f += ae_attention (h, w, c);
        }
        if (level != ae->n_levels - 1) { /* pad (0,1,0,1), 3x3 stride 2 */
            h /= 2, w /= 2;
            f += conv (h, w, c, c, 3);
        }
    }
    f += 2 * ae_resblock (h, w, c, c) + (ae->mid_attention ? ae_attention (h, w, c) : 0);
    int z = ae->double_z ? 2 * ae->z_channels : ae->z_channels;
    int e = ae->double_z ? 2 * ae->embed_dim : ae->embed_dim;
    return f + conv (h, w, c, z, 3) + conv (h, w, z, e, 1); /* conv_out, quant_conv */
}

double
model_config_decode_flops (const LdmAutoencoderConfig *ae, int latent_h, int latent_w)
{
    double h = latent_h, w = latent_w;
    int c = ae->ch * ae->ch_mult[ae->n_levels - 1];
    double f = conv (h, w, ae->embed_dim, ae->z_channels, 1) /* post_quant_conv */
               + conv (h, w, ae->z_channels, c, 3);           /* conv_in */
    f += 2 * ae_resblock (h, w, c, c) + (ae->mid_attention ? ae_attention (h, w, c) : 0);
    for (int level = ae->n_levels - 1; level >= 0; level--) {
        int out = ae->ch * ae->ch_mult[level];
        for (int r = 0; r <= ae->num_res_blocks; r++) {
            f += ae_resblock (h, w, c, out);
            c = out;
            if (ae_has_attention (ae, level))
                f += ae_attention (h, w, c);
        }
        if (level != 0) { /* nearest 2x, 3x3 */
            h *= 2, w *= 2;
            f += conv (h, w, c, c, 3);
        }
    }
    return f + conv (h, w, c, ae->out_ch, 3);
}
