/* presets.c: the architectures of the published models, exactly as their configs say (the
 * configs in ../shared/model-configs are the truth the tests compare with). */
#include "arch/model_config.h"

/* A first stage as a published config sets it (resolution 256, RGB in and out, no attention
 * resolutions in all of them). */
typedef struct {
    LdmAutoencoderKind kind;
    int                embed_dim, n_embed, z_channels;
    bool               double_z;
    int                ch, ch_mult[LDM_MAX_LEVELS], num_res_blocks; /* lists end at a 0 */
    bool               mid_attention;
} FirstStage;

/* VQ-f4 as inpainting_big and bsr_sr use it (CompVis first_stage_models/vq-f4); inpainting_big
 * says attn_type: none. */
static const FirstStage vq_f4 = { LDM_AUTOENCODER_VQ, 3, 8192, 3, false, 128, { 1, 2, 4 }, 2,
                                  true };
static const FirstStage vq_f4_no_attention = { LDM_AUTOENCODER_VQ, 3, 8192, 3, false, 128,
                                               { 1, 2, 4 }, 2, false };
/* SD 1.x's KL-f8. */
static const FirstStage kl_f8 = { LDM_AUTOENCODER_KL, 4, 0, 4, true, 128, { 1, 2, 4, 4 }, 2,
                                  true };

/* What a published model's config sets; everything else keeps the CompVis defaults
 * (model_config_init_defaults), and the lists (ending at a 0) are written over the defaults'
 * first entries as the YAML reader writes them. */
typedef struct {
    const char       *name, *title, *target;
    double            linear_start, linear_end, scale_factor;
    LdmConditioning   conditioning;
    LdmCondStage      cond_stage;
    bool              use_ema;
    int               in_channels, out_channels, model_channels, num_res_blocks;
    int               attention_resolutions[LDM_MAX_LEVELS], channel_mult[LDM_MAX_LEVELS];
    int               num_heads, num_head_channels;
    bool              resblock_updown;
    int               context_dim; /* > 0: a spatial transformer, not legacy (SD) */
    const FirstStage *first_stage;
} Preset;

#define LDM_TARGET "ldm.models.diffusion.ddpm.LatentDiffusion"

static const Preset presets[LDM_PRESET_COUNT] = {
    [LDM_PRESET_LDM_INPAINTING_BIG] = { /* models/ldm/inpainting_big/config.yaml */
        "inpainting_big", "CompVis LDM inpainting", LDM_TARGET, 0.0015, 0.0205, 1.0,
        LDM_COND_CONCAT, LDM_COND_STAGE_FIRST_STAGE, true, 7, 3, 256, 2, { 8, 4, 2 },
        { 1, 2, 3, 4 }, 8, -1, true, 0, &vq_f4_no_attention },
    [LDM_PRESET_LDM_BSR_SR] = { /* models/ldm/bsr_sr/config.yaml */
        "bsr_sr", "CompVis LDM 4x super-resolution, LDSR", LDM_TARGET, 0.0015, 0.0155, 1.0,
        LDM_COND_CONCAT, LDM_COND_STAGE_IDENTITY, true, 6, 3, 160, 2, { 16, 8 }, { 1, 2, 2, 4 },
        -1, 32, false, 0, &vq_f4 },
    [LDM_PRESET_SD15_INPAINTING] = { /* configs/stable-diffusion/v1-inpainting-inference.yaml */
        "sd-v1-5-inpainting", "Stable Diffusion 1.5 inpainting",
        "ldm.models.diffusion.ddpm.LatentInpaintDiffusion", 0.00085, 0.0120, 0.18215,
        LDM_COND_HYBRID, LDM_COND_STAGE_CLIP, true, 9, 4, 320, 2, { 4, 2, 1 }, { 1, 2, 4, 4 }, 8,
        -1, false, 768, &kl_f8 },
    /* configs/stable-diffusion/v1-inference.yaml, which says use_ema: False (its checkpoints'
     * EMA is the model itself) */
    [LDM_PRESET_SD15] = {
        "sd-v1-5", "Stable Diffusion 1.x", LDM_TARGET, 0.00085, 0.0120, 0.18215,
        LDM_COND_CROSSATTN, LDM_COND_STAGE_CLIP, false, 4, 4, 320, 2, { 4, 2, 1 },
        { 1, 2, 4, 4 }, 8, -1, false, 768, &kl_f8 },
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

/* Writes LIST's entries (up to its first 0) over DST's first ones; returns how many. */
static int
set_list (int *dst, const int *list)
{
    int n = 0;
    for (; n < LDM_MAX_LEVELS && list[n]; n++)
        dst[n] = list[n];
    return n;
}

void
model_config_preset (LdmPreset preset, LdmModelConfig *config)
{
    /* an unknown preset: SD 1.5 inpainting's architecture, named "?" */
    const Preset *p = &presets[(unsigned) preset < LDM_PRESET_COUNT ? preset
                                                                    : LDM_PRESET_SD15_INPAINTING];
    model_config_init_defaults (config);
    config->has_unet = true;
    config->has_first_stage = true;
    config->timesteps = 1000;
    config->image_size = 64;
    g_strlcpy (config->target, p->target, sizeof config->target);
    config->linear_start = p->linear_start;
    config->linear_end = p->linear_end;
    config->scale_factor = p->scale_factor;
    config->conditioning = p->conditioning;
    config->cond_stage = p->cond_stage;
    config->use_ema = p->use_ema;

    LdmUnetConfig *u = &config->unet;
    u->in_channels = p->in_channels;
    u->out_channels = p->out_channels;
    u->model_channels = p->model_channels;
    u->n_attention_resolutions = set_list (u->attention_resolutions, p->attention_resolutions);
    u->num_res_blocks = p->num_res_blocks;
    u->n_levels = set_list (u->channel_mult, p->channel_mult);
    u->num_heads = p->num_heads;
    u->num_head_channels = p->num_head_channels;
    u->resblock_updown = p->resblock_updown;
    if (p->context_dim > 0) {
        u->use_spatial_transformer = true;
        u->transformer_depth = 1;
        u->context_dim = p->context_dim;
        u->legacy = false;
    }

    const FirstStage *f = p->first_stage;
    LdmAutoencoderConfig *ae = &config->first_stage;
    ae->kind = f->kind;
    ae->embed_dim = f->embed_dim;
    ae->n_embed = f->n_embed;
    ae->double_z = f->double_z;
    ae->z_channels = f->z_channels;
    ae->resolution = 256;
    ae->in_channels = 3;
    ae->out_ch = 3;
    ae->ch = f->ch;
    ae->n_levels = set_list (ae->ch_mult, f->ch_mult);
    ae->num_res_blocks = f->num_res_blocks;
    ae->n_attn_resolutions = 0;
    ae->mid_attention = f->mid_attention;
    config->kind = model_config_kind (config);
    g_snprintf (config->source, sizeof config->source, "built-in preset %s (%s)",
                model_config_preset_name (preset), model_config_preset_title (preset));
}
