/* presets.c: the architectures of the published models, exactly as their configs say (the
 * configs in ../shared/model-configs are the truth the tests compare with). */
#include "arch/model_config.h"

#include <string.h>

static void
set_ints (int *dst, int *count, const int *src, int n)
{
    memcpy (dst, src, (size_t) n * sizeof *src);
    *count = n;
}
#define SET_INTS(dst, count, ...)                                                              \
    set_ints (dst, &(count), (const int[]) { __VA_ARGS__ },                                    \
              (int) (sizeof ((const int[]) { __VA_ARGS__ }) / sizeof (int)))

/* VQ-f4 as inpainting_big and bsr_sr use it (CompVis first_stage_models/vq-f4). */
static void
preset_vq_f4 (LdmAutoencoderConfig *ae, bool mid_attention)
{
    ae->kind = LDM_AUTOENCODER_VQ;
    ae->embed_dim = 3;
    ae->n_embed = 8192;
    ae->double_z = false;
    ae->z_channels = 3;
    ae->resolution = 256;
    ae->in_channels = 3;
    ae->out_ch = 3;
    ae->ch = 128;
    SET_INTS (ae->ch_mult, ae->n_levels, 1, 2, 4);
    ae->num_res_blocks = 2;
    ae->n_attn_resolutions = 0;
    ae->mid_attention = mid_attention;
}

static const struct {
    const char *name;
    const char *title;
} presets[LDM_PRESET_COUNT] = {
    [LDM_PRESET_LDM_INPAINTING_BIG] = { "inpainting_big", "CompVis LDM inpainting" },
    [LDM_PRESET_LDM_BSR_SR] = { "bsr_sr", "CompVis LDM 4x super-resolution, LDSR" },
    [LDM_PRESET_SD15_INPAINTING] = { "sd-v1-5-inpainting", "Stable Diffusion 1.5 inpainting" },
    [LDM_PRESET_SD15] = { "sd-v1-5", "Stable Diffusion 1.x" },
};

const char *
model_config_preset_name (LdmPreset preset)
{
    return (unsigned) preset < LDM_PRESET_COUNT ? presets[preset].name : "?";
}

const char *
model_config_preset_title (LdmPreset preset)
{
    return (unsigned) preset < LDM_PRESET_COUNT ? presets[preset].title : "?";
}

void
model_config_preset (LdmPreset preset, LdmModelConfig *config)
{
    model_config_init_defaults (config);
    LdmUnetConfig *u = &config->unet;
    config->has_unet = true;
    config->has_first_stage = true;
    config->timesteps = 1000;
    config->image_size = 64;
    switch (preset) {
    case LDM_PRESET_LDM_INPAINTING_BIG: /* models/ldm/inpainting_big/config.yaml */
        g_strlcpy (config->target, "ldm.models.diffusion.ddpm.LatentDiffusion",
                   sizeof config->target);
        config->linear_start = 0.0015;
        config->linear_end = 0.0205;
        config->conditioning = LDM_COND_CONCAT;
        config->cond_stage = LDM_COND_STAGE_FIRST_STAGE;
        u->in_channels = 7;
        u->out_channels = 3;
        u->model_channels = 256;
        SET_INTS (u->attention_resolutions, u->n_attention_resolutions, 8, 4, 2);
        u->num_res_blocks = 2;
        SET_INTS (u->channel_mult, u->n_levels, 1, 2, 3, 4);
        u->num_heads = 8;
        u->resblock_updown = true;
        preset_vq_f4 (&config->first_stage, false); /* attn_type: none */
        break;
    case LDM_PRESET_LDM_BSR_SR: /* models/ldm/bsr_sr/config.yaml */
        g_strlcpy (config->target, "ldm.models.diffusion.ddpm.LatentDiffusion",
                   sizeof config->target);
        config->linear_start = 0.0015;
        config->linear_end = 0.0155;
        config->conditioning = LDM_COND_CONCAT;
        config->cond_stage = LDM_COND_STAGE_IDENTITY;
        u->in_channels = 6;
        u->out_channels = 3;
        u->model_channels = 160;
        SET_INTS (u->attention_resolutions, u->n_attention_resolutions, 16, 8);
        u->num_res_blocks = 2;
        SET_INTS (u->channel_mult, u->n_levels, 1, 2, 2, 4);
        u->num_head_channels = 32;
        preset_vq_f4 (&config->first_stage, true);
        break;
    case LDM_PRESET_SD15_INPAINTING: /* configs/stable-diffusion/v1-inpainting-inference.yaml */
    case LDM_PRESET_SD15:            /* configs/stable-diffusion/v1-inference.yaml */
    default: {
        bool inpainting = preset != LDM_PRESET_SD15;
        g_strlcpy (config->target, inpainting ? "ldm.models.diffusion.ddpm.LatentInpaintDiffusion"
                                              : "ldm.models.diffusion.ddpm.LatentDiffusion",
                   sizeof config->target);
        config->linear_start = 0.00085;
        config->linear_end = 0.0120;
        config->scale_factor = 0.18215;
        config->conditioning = inpainting ? LDM_COND_HYBRID : LDM_COND_CROSSATTN;
        config->cond_stage = LDM_COND_STAGE_CLIP;
        /* v1-inference.yaml says use_ema: False (its checkpoints' EMA is the model itself) */
        config->use_ema = inpainting;
        u->in_channels = inpainting ? 9 : 4;
        u->out_channels = 4;
        u->model_channels = 320;
        SET_INTS (u->attention_resolutions, u->n_attention_resolutions, 4, 2, 1);
        u->num_res_blocks = 2;
        SET_INTS (u->channel_mult, u->n_levels, 1, 2, 4, 4);
        u->num_heads = 8;
        u->use_spatial_transformer = true;
        u->transformer_depth = 1;
        u->context_dim = 768;
        u->legacy = false;
        LdmAutoencoderConfig *ae = &config->first_stage;
        ae->kind = LDM_AUTOENCODER_KL;
        ae->embed_dim = 4;
        ae->n_embed = 0;
        ae->double_z = true;
        ae->z_channels = 4;
        ae->resolution = 256;
        ae->in_channels = 3;
        ae->out_ch = 3;
        ae->ch = 128;
        SET_INTS (ae->ch_mult, ae->n_levels, 1, 2, 4, 4);
        ae->num_res_blocks = 2;
        ae->n_attn_resolutions = 0;
        ae->mid_attention = true;
        break;
    }
    }
    config->kind = model_config_kind (config);
    g_snprintf (config->source, sizeof config->source, "built-in preset %s (%s)",
                model_config_preset_name (preset), model_config_preset_title (preset));
}
