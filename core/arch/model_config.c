/* model_config.c: the defaults of a CompVis config, the kind of model it describes, and the
 * checks of everything the networks rely on (ranges, GroupNorm widths, heads, channels). */
#include "arch/config_limits.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

void
model_config_init_defaults (LdmModelConfig *config)
{
    memset (config, 0, sizeof *config); /* also the padding: configs compare with memcmp */
    config->kind = LDM_MODEL_UNKNOWN;
    config->beta_schedule = LDM_BETA_LINEAR;
    config->linear_start = 1e-4;
    config->linear_end = 2e-2;
    config->timesteps = 1000;
    config->v_prediction = false;
    config->scale_factor = 1.0;
    config->conditioning = LDM_COND_CONCAT; /* LatentDiffusion: concat_mode defaults to True */
    config->cond_stage = LDM_COND_STAGE_OTHER;
    config->use_ema = true;
    config->image_size = 0;

    LdmUnetConfig *u = &config->unet;
    static const int unet_mult[] = { 1, 2, 4, 8 };
    memcpy (u->channel_mult, unet_mult, sizeof unet_mult);
    u->n_levels = 4;
    u->num_heads = -1;
    u->num_head_channels = -1;
    u->num_heads_upsample = -1;
    u->resblock_updown = false;
    u->conv_resample = true;
    u->use_scale_shift_norm = false;
    u->use_spatial_transformer = false;
    u->transformer_depth = 1;
    u->context_dim = 0;
    u->legacy = true;

    LdmAutoencoderConfig *ae = &config->first_stage;
    ae->kind = LDM_AUTOENCODER_VQ;
    memcpy (ae->ch_mult, unet_mult, sizeof unet_mult); /* Encoder's default (1, 2, 4, 8) */
    ae->n_levels = 4;
    ae->double_z = true;                                /* Encoder's default */
    ae->mid_attention = true;                           /* attn_type "vanilla" */
}

/* The class name of a `target` ("ldm.models.autoencoder.VQModel" -> "VQModel"). */
const char *
model_config_class_name (const char *target)
{
    const char *dot = strrchr (target, '.');
    return dot ? dot + 1 : target;
}

LdmModelKind
model_config_kind (const LdmModelConfig *config)
{
    if (!config->has_unet || !config->has_first_stage)
        return LDM_MODEL_UNKNOWN;
    const char *name = model_config_class_name (config->target);
    if (!strcmp (name, "LatentDiffusion") && config->conditioning == LDM_COND_CONCAT) {
        if (config->cond_stage == LDM_COND_STAGE_FIRST_STAGE)
            return LDM_MODEL_LDM_INPAINT;
        if (config->cond_stage == LDM_COND_STAGE_IDENTITY)
            return LDM_MODEL_LDM_SR;
    }
    if (!strcmp (name, "LatentInpaintDiffusion") && config->conditioning == LDM_COND_HYBRID)
        return LDM_MODEL_SD_INPAINT;
    /* v1-inference.yaml: a KL latent, cross-attention only */
    if (!strcmp (name, "LatentDiffusion") && config->conditioning == LDM_COND_CROSSATTN
        && config->first_stage.kind == LDM_AUTOENCODER_KL)
        return LDM_MODEL_SD;
    return LDM_MODEL_UNKNOWN;
}

void
model_config_attention_heads (const LdmUnetConfig *u, int channels, bool output_block,
                              int *heads, int *dim_head)
{
    int h = 0, d = 0;
    int nhc = u->num_head_channels;
    if (u->use_spatial_transformer) {
        h = nhc == -1 ? u->num_heads : (nhc > 0 ? channels / nhc : 0);
        if (h > 0)
            d = (u->legacy || nhc == -1) ? channels / h : nhc;
    } else if (u->legacy) {
        /* AttentionBlock(num_heads, num_head_channels): the output blocks get
         * num_heads_upsample, which defaults to num_heads. */
        int upsample = u->num_heads_upsample == -1 ? u->num_heads : u->num_heads_upsample;
        if (nhc != -1)
            h = nhc > 0 ? channels / nhc : 0;
        else
            h = output_block ? upsample : u->num_heads;
        d = h > 0 ? channels / h : 0;
    } else {
        /* dim_head is always set, so AttentionBlock takes channels / dim_head heads. */
        int dh = nhc == -1 ? (u->num_heads > 0 ? channels / u->num_heads : 0) : nhc;
        h = dh > 0 ? channels / dh : 0;
        d = h > 0 ? channels / h : 0;
    }
    *heads = h > 0 && d > 0 ? h : 0;
    *dim_head = h > 0 && d > 0 ? d : 0;
}

bool
model_config_unet_has_attention (const LdmUnetConfig *u, int level)
{
    for (int i = 0; i < u->n_attention_resolutions; i++)
        if (level < 30 && u->attention_resolutions[i] == 1 << level)
            return true;
    return false;
}

static gboolean check_error (GError **error, LdmError code, const char *origin, const char *key,
                             const char *format, ...) G_GNUC_PRINTF (5, 6);

static gboolean
check_error (GError **error, LdmError code, const char *origin, const char *key,
             const char *format, ...)
{
    va_list args;
    va_start (args, format);
    g_autofree char *message = g_strdup_vprintf (format, args);
    va_end (args);
    g_set_error (error, LDM_ERROR, code, "%s: %s: %s", origin, key, message);
    return FALSE;
}

#define UNET_KEY "model.params.unet_config.params."
#define DD_KEY   "model.params.first_stage_config.params.ddconfig."

static gboolean
check_unet (const LdmUnetConfig *u, const char *origin, GError **error)
{
    if (u->in_channels < 1 || u->out_channels < 1 || u->model_channels < 1
        || u->in_channels > MAX_IO_CHANNELS || u->out_channels > MAX_IO_CHANNELS
        || u->model_channels > MAX_CHANNELS)
        return check_error (error, LDM_ERROR_FORMAT, origin, UNET_KEY "model_channels",
                            "channel counts out of range");
    if (u->n_levels < 1 || u->n_levels > LDM_MAX_LEVELS)
        return check_error (error, LDM_ERROR_FORMAT, origin, UNET_KEY "channel_mult",
                            "needs 1 to %d levels", LDM_MAX_LEVELS);
    if (u->channel_mult[0] != 1)
        return check_error (error, LDM_ERROR_UNSUPPORTED, origin, UNET_KEY "channel_mult",
                            "the first level must have multiplier 1 (the output layer works "
                            "on model_channels)");
    if (u->num_res_blocks < 1 || u->num_res_blocks > MAX_RES_BLOCKS)
        return check_error (error, LDM_ERROR_FORMAT, origin, UNET_KEY "num_res_blocks",
                            "%d is out of range (1 .. %d)", u->num_res_blocks, MAX_RES_BLOCKS);
    if (u->n_attention_resolutions < 0 || u->n_attention_resolutions > LDM_MAX_LEVELS)
        return check_error (error, LDM_ERROR_FORMAT, origin, UNET_KEY "attention_resolutions",
                            "too many entries");
    for (int l = 0; l < u->n_levels; l++) {
        int mult = u->channel_mult[l];
        if (mult < 1 || mult > MAX_MULT)
            return check_error (error, LDM_ERROR_FORMAT, origin, UNET_KEY "channel_mult",
                                "multiplier %d is out of range (1 .. %d)", mult, MAX_MULT);
        if (u->model_channels * mult % GROUPS != 0)
            return check_error (error, LDM_ERROR_UNSUPPORTED, origin, UNET_KEY "model_channels",
                                "level %d has %d channels, not a multiple of the %d "
                                "GroupNorm groups",
                                l, u->model_channels * mult, GROUPS);
    }
    if ((u->num_heads < 1 && u->num_heads != -1) || u->num_heads > MAX_HEADS)
        return check_error (error, LDM_ERROR_FORMAT, origin, UNET_KEY "num_heads",
                            "must be -1 or positive");
    if ((u->num_head_channels < 1 && u->num_head_channels != -1)
        || u->num_head_channels > MAX_CHANNELS)
        return check_error (error, LDM_ERROR_FORMAT, origin, UNET_KEY "num_head_channels",
                            "must be -1 or positive");
    if ((u->num_heads_upsample < 1 && u->num_heads_upsample != -1)
        || u->num_heads_upsample > MAX_HEADS)
        return check_error (error, LDM_ERROR_FORMAT, origin, UNET_KEY "num_heads_upsample",
                            "must be -1 or positive");
    if (u->num_heads == -1 && u->num_head_channels == -1)
        return check_error (error, LDM_ERROR_FORMAT, origin, UNET_KEY "num_heads",
                            "either num_heads or num_head_channels must be set");
    if (u->transformer_depth < 1 || u->transformer_depth > MAX_DEPTH)
        return check_error (error, LDM_ERROR_FORMAT, origin, UNET_KEY "transformer_depth",
                            "%d is out of range (1 .. %d)", u->transformer_depth, MAX_DEPTH);
    if (u->context_dim < 0 || u->context_dim > MAX_CONTEXT_DIM)
        return check_error (error, LDM_ERROR_FORMAT, origin, UNET_KEY "context_dim",
                            "out of range");
    if (u->use_spatial_transformer && u->context_dim == 0)
        return check_error (error, LDM_ERROR_FORMAT, origin, UNET_KEY "context_dim",
                            "a spatial transformer needs the context dimension");
    if (!u->use_spatial_transformer && u->context_dim > 0)
        return check_error (error, LDM_ERROR_FORMAT, origin, UNET_KEY "use_spatial_transformer",
                            "context_dim is set, so use_spatial_transformer must be true");
    if (u->num_classes < 0 || u->num_classes > MAX_CLASSES)
        return check_error (error, LDM_ERROR_FORMAT, origin, UNET_KEY "num_classes",
                            "out of range");

    /* Heads of every attention block, where the U-Net has them (and always in the middle). */
    for (int l = 0; l <= u->n_levels; l++) {
        bool middle = l == u->n_levels;
        if (!middle && !model_config_unet_has_attention (u, l))
            continue;
        int channels = u->model_channels * u->channel_mult[middle ? u->n_levels - 1 : l];
        for (int output = 0; output < 2; output++) {
            int heads, dim_head;
            model_config_attention_heads (u, channels, output, &heads, &dim_head);
            if (heads < 1 || (!u->use_spatial_transformer && channels % heads != 0))
                return check_error (error, LDM_ERROR_UNSUPPORTED, origin,
                                    UNET_KEY "num_heads",
                                    "the attention at %d channels gets no valid head count "
                                    "(num_heads %d, num_head_channels %d)",
                                    channels, u->num_heads, u->num_head_channels);
            /* CompVis's linear proj_out is Linear(in_channels, inner): it only runs when the
             * heads span the width exactly. */
            if (u->use_spatial_transformer && u->use_linear_in_transformer
                && heads * dim_head != channels)
                return check_error (error, LDM_ERROR_UNSUPPORTED, origin,
                                    UNET_KEY "use_linear_in_transformer",
                                    "the transformer at %d channels has %d heads of %d: "
                                    "a linear proj_out needs heads x head channels = the width",
                                    channels, heads, dim_head);
        }
    }
    return TRUE;
}

static gboolean
check_autoencoder (const LdmAutoencoderConfig *ae, const char *origin, GError **error)
{
    if (ae->embed_dim < 1 || ae->embed_dim > MAX_IO_CHANNELS)
        return check_error (error, LDM_ERROR_FORMAT, origin,
                            "model.params.first_stage_config.params.embed_dim", "out of range");
    if (ae->kind == LDM_AUTOENCODER_VQ && (ae->n_embed < 1 || ae->n_embed > MAX_CODES))
        return check_error (error, LDM_ERROR_FORMAT, origin,
                            "model.params.first_stage_config.params.n_embed",
                            "a VQ first stage needs 1 .. %d codes", MAX_CODES);
    if (ae->kind == LDM_AUTOENCODER_KL && !ae->double_z)
        return check_error (error, LDM_ERROR_FORMAT, origin, DD_KEY "double_z",
                            "AutoencoderKL needs double_z true (mean and log-variance)");
    if (ae->kind == LDM_AUTOENCODER_VQ && ae->double_z)
        return check_error (error, LDM_ERROR_FORMAT, origin, DD_KEY "double_z",
                            "a VQ first stage needs double_z false");
    if (ae->z_channels < 1 || ae->z_channels > MAX_IO_CHANNELS || ae->in_channels < 1
        || ae->in_channels > MAX_IO_CHANNELS || ae->out_ch < 1 || ae->out_ch > MAX_IO_CHANNELS
        || ae->ch < 1 || ae->ch > MAX_CHANNELS || ae->resolution < 1
        || ae->resolution > MAX_RESOLUTION)
        return check_error (error, LDM_ERROR_FORMAT, origin, DD_KEY "ch",
                            "channel counts or resolution out of range");
    if (ae->n_levels < 1 || ae->n_levels > LDM_MAX_LEVELS)
        return check_error (error, LDM_ERROR_FORMAT, origin, DD_KEY "ch_mult",
                            "needs 1 to %d levels", LDM_MAX_LEVELS);
    if (ae->num_res_blocks < 1 || ae->num_res_blocks > MAX_RES_BLOCKS)
        return check_error (error, LDM_ERROR_FORMAT, origin, DD_KEY "num_res_blocks",
                            "%d is out of range (1 .. %d)", ae->num_res_blocks, MAX_RES_BLOCKS);
    if (ae->n_attn_resolutions < 0 || ae->n_attn_resolutions > LDM_MAX_LEVELS)
        return check_error (error, LDM_ERROR_FORMAT, origin, DD_KEY "attn_resolutions",
                            "too many entries");
    if (ae->ch % GROUPS != 0)
        return check_error (error, LDM_ERROR_UNSUPPORTED, origin, DD_KEY "ch",
                            "%d is not a multiple of the %d GroupNorm groups", ae->ch, GROUPS);
    for (int l = 0; l < ae->n_levels; l++)
        if (ae->ch_mult[l] < 1 || ae->ch_mult[l] > MAX_MULT)
            return check_error (error, LDM_ERROR_FORMAT, origin, DD_KEY "ch_mult",
                                "multiplier %d is out of range (1 .. %d)", ae->ch_mult[l],
                                MAX_MULT);
    return TRUE;
}

/* The channels each kind feeds the U-Net (notes: trap 2). */
static gboolean
check_kind_channels (const LdmModelConfig *config, const char *origin, GError **error)
{
    const LdmUnetConfig *u = &config->unet;
    int latent = config->first_stage.embed_dim;
    int in_needed;
    const char *layout;
    switch (config->kind) {
    case LDM_MODEL_LDM_INPAINT:
        in_needed = 2 * latent + 1;
        layout = "x_t + encoded masked image + mask";
        break;
    case LDM_MODEL_SD_INPAINT:
        in_needed = 2 * latent + 1;
        layout = "x_t + mask + masked latent";
        break;
    case LDM_MODEL_SD:
        in_needed = latent;
        layout = "x_t alone";
        break;
    case LDM_MODEL_LDM_SR:
        in_needed = latent + config->first_stage.in_channels;
        layout = "x_t + low-resolution image";
        break;
    default:
        return TRUE;
    }
    if (u->out_channels != latent)
        return check_error (error, LDM_ERROR_MODEL, origin, UNET_KEY "out_channels",
                            "%d, but the first stage's latent has %d channels", u->out_channels,
                            latent);
    if (u->in_channels != in_needed)
        return check_error (error, LDM_ERROR_MODEL, origin, UNET_KEY "in_channels",
                            "%d, but %s needs %d (%s)", u->in_channels,
                            ldm_model_kind_name (config->kind), in_needed, layout);
    if ((config->kind == LDM_MODEL_SD_INPAINT || config->kind == LDM_MODEL_SD)
        && !u->use_spatial_transformer)
        return check_error (error, LDM_ERROR_MODEL, origin, UNET_KEY "use_spatial_transformer",
                            "%s conditioning needs cross-attention",
                            config->kind == LDM_MODEL_SD ? "crossattn" : "hybrid");
    return TRUE;
}

gboolean
model_config_check (const LdmModelConfig *config, const char *origin, GError **error)
{
    if (config->has_unet && !check_unet (&config->unet, origin, error))
        return FALSE;
    if (config->has_first_stage && !check_autoencoder (&config->first_stage, origin, error))
        return FALSE;
    if (config->timesteps < 1 || config->timesteps > MAX_TIMESTEPS)
        return check_error (error, LDM_ERROR_FORMAT, origin, "model.params.timesteps",
                            "out of range");
    if (!(config->linear_start > 0 && config->linear_start < 1 && config->linear_end > 0
          && config->linear_end < 1))
        return check_error (error, LDM_ERROR_FORMAT, origin, "model.params.linear_start",
                            "linear_start and linear_end must be in (0, 1)");
    if (!(config->scale_factor > 0 && isfinite (config->scale_factor)))
        return check_error (error, LDM_ERROR_FORMAT, origin, "model.params.scale_factor",
                            "must be positive");
    return check_kind_channels (config, origin, error);
}
