/* model_config.h (private to core/): the architecture of a model, as CompVis configs describe it.
 *
 * Its functions live in core/arch by section: model_config.c (defaults, kind, checks),
 * config_yaml.c (reading a CompVis config.yaml: the only libyaml user), presets.c (the
 * published configs in ../shared/model-configs exactly), recognise.c (a model from its tensor
 * names and shapes) and param_list.c (every parameter tensor an architecture needs, name and
 * shape: what the loaders check a file against).
 */
#pragma once

#include "ldm.h"

#define LDM_MAX_LEVELS 8
/* Res blocks per level (U-Net num_res_blocks, autoencoder num_res_blocks) the reader accepts. */
#define LDM_MAX_RES_BLOCKS 8

typedef struct {
    int  in_channels, out_channels, model_channels;
    int  channel_mult[LDM_MAX_LEVELS];
    int  n_levels;                    /* entries of channel_mult */
    int  num_res_blocks;
    int  attention_resolutions[LDM_MAX_LEVELS]; /* downsampling factors (1, 2, 4, ...) */
    int  n_attention_resolutions;
    int  num_heads;                   /* -1 when num_head_channels decides */
    int  num_head_channels;           /* -1 when num_heads decides */
    int  num_heads_upsample;          /* -1 = num_heads */
    bool resblock_updown;
    bool conv_resample;               /* default true */
    bool use_scale_shift_norm;
    /* Stable Diffusion style */
    bool use_spatial_transformer;
    int  transformer_depth;
    int  context_dim;                 /* 0 = none */
    bool legacy;                      /* default true */
    bool use_linear_in_transformer;
    int  num_classes;                 /* 0 = none (SD x4 upscaler: 1000) */
    bool disable_self_attentions[LDM_MAX_LEVELS];
    bool has_disable_self_attentions;
    bool disable_middle_self_attn;
} LdmUnetConfig;

typedef enum {
    LDM_AUTOENCODER_VQ, /* VQModel / VQModelInterface */
    LDM_AUTOENCODER_KL, /* AutoencoderKL */
} LdmAutoencoderKind;

typedef struct {
    LdmAutoencoderKind kind;
    int  embed_dim;
    int  n_embed;                     /* VQ codebook size; 0 for KL */
    int  z_channels;
    bool double_z;
    int  ch;
    int  ch_mult[LDM_MAX_LEVELS];
    int  n_levels;
    int  num_res_blocks;
    int  in_channels, out_ch;
    int  resolution;
    int  attn_resolutions[LDM_MAX_LEVELS];
    int  n_attn_resolutions;
    bool mid_attention;               /* attn_type vanilla (default) = true; "none" = false */
} LdmAutoencoderConfig;

typedef enum {
    LDM_BETA_LINEAR,        /* CompVis "linear": linspace(sqrt(start), sqrt(end))**2 */
    LDM_BETA_COSINE,
    LDM_BETA_SQRT_LINEAR,
    LDM_BETA_SQRT,
} LdmBetaSchedule;

typedef enum {
    LDM_COND_CONCAT,        /* concat_mode / conditioning_key concat */
    LDM_COND_HYBRID,        /* concat + cross-attention */
    LDM_COND_CROSSATTN,
    LDM_COND_HYBRID_ADM,    /* SD x4 upscaler */
    LDM_COND_NONE,          /* cond_stage_config __is_unconditional__ */
    LDM_COND_OTHER,         /* adm, crossattn-adm */
} LdmConditioning;

typedef enum {
    LDM_COND_STAGE_FIRST_STAGE, /* __is_first_stage__ */
    LDM_COND_STAGE_IDENTITY,    /* torch.nn.Identity */
    LDM_COND_STAGE_CLIP,        /* FrozenCLIPEmbedder */
    LDM_COND_STAGE_OPENCLIP,    /* FrozenOpenCLIPEmbedder */
    LDM_COND_STAGE_OTHER,
} LdmCondStage;

typedef struct {
    LdmModelKind         kind;
    char                 target[96];     /* model.target, e.g. ldm.models.diffusion.ddpm.LatentDiffusion */
    LdmBetaSchedule      beta_schedule;
    double               linear_start, linear_end;
    int                  timesteps;
    bool                 v_prediction;   /* parameterization "v" (else eps) */
    double               scale_factor;   /* default 1.0 */
    LdmConditioning      conditioning;
    LdmCondStage         cond_stage;
    bool                 use_ema;        /* default true */
    int                  image_size;     /* latent size the model was trained at */
    bool                 scale_by_std;   /* scale_factor is the checkpoint's `scale_factor` buffer */
    bool                 has_unet;       /* unet_config is a UNetModel (else `unet` is unset) */
    bool                 has_first_stage;/* a VQ/KL first stage (else `first_stage` is unset) */
    LdmUnetConfig        unet;
    LdmAutoencoderConfig first_stage;
    char                 source[256];    /* where the architecture came from, for `ldm info` */
} LdmModelConfig;

/* Where the sub-models' parameters live in a CompVis checkpoint. */
#define LDM_UNET_PREFIX        "model.diffusion_model."
#define LDM_UNET_EMA_PREFIX    "model_ema.diffusion_model" /* + the name without dots */
#define LDM_FIRST_STAGE_PREFIX "first_stage_model."
#define LDM_COND_STAGE_PREFIX  "cond_stage_model."

/* Fills the documented CompVis defaults (conv_resample true, legacy true, num_heads -1, ...). */
void model_config_init_defaults (LdmModelConfig *config);

/* The class name of a `target` ("ldm.models.autoencoder.VQModel" -> "VQModel"). */
const char *model_config_class_name (const char *target);

/* The kind of model a config describes (its target, conditioning and cond stage); unknown
 * without both a U-Net and a first stage. */
LdmModelKind model_config_kind (const LdmModelConfig *config);

/* Reads a CompVis config.yaml/project.yaml (the `model:` section). The error names the file
 * and the offending key. */
gboolean model_config_read_yaml (const char *path, LdmModelConfig *config, GError **error);
/* The same from bytes in memory; `origin` names them in messages. */
gboolean model_config_read_yaml_data (const char *data, size_t length, const char *origin,
                                      LdmModelConfig *config, GError **error);

/* Checks what the networks rely on: ranges, GroupNorm(32) widths, heads, and the channel
 * counts the config's kind needs. model_config_read_yaml and model_config_recognise call it;
 * the error names `origin` and the CompVis key. */
gboolean model_config_check (const LdmModelConfig *config, const char *origin, GError **error);

/* Heads and channels per head of the attention block at a level of `channels` width, exactly
 * as openaimodel.UNetModel computes them (legacy, num_head_channels, num_heads_upsample in
 * the output blocks). 0 when the config gives none. */
void model_config_attention_heads (const LdmUnetConfig *unet, int channels, bool output_block,
                                   int *heads, int *dim_head);

/* Whether the U-Net has attention at `level` (attention_resolutions holds 2^level). */
bool model_config_unet_has_attention (const LdmUnetConfig *unet, int level);

/* The presets of the published models, exactly as their configs say. */
typedef enum {
    LDM_PRESET_LDM_INPAINTING_BIG,
    LDM_PRESET_LDM_BSR_SR,
    LDM_PRESET_SD15_INPAINTING,
    LDM_PRESET_SD15,              /* v1-inference.yaml: SD 1.x text-to-image (4-channel U-Net) */
    LDM_PRESET_COUNT
} LdmPreset;
const char *model_config_preset_name  (LdmPreset preset); /* "inpainting_big", ... */
const char *model_config_preset_title (LdmPreset preset); /* "CompVis LDM inpainting", ... */
void        model_config_preset       (LdmPreset preset, LdmModelConfig *config);

/* Recognises a model from its tensors (names and shapes of the diffusion U-Net and first
 * stage), picks the preset with the same structure, and fills `config`. Fails with a clear
 * message when the tensors match no known model. */
gboolean model_config_recognise (const LdmTensorFile *file, LdmModelConfig *config,
                                 GError **error);

/* One parameter an architecture needs: its name under its sub-model prefix
 * (for example "input_blocks.0.0.weight" under "model.diffusion_model.") and its shape. */
typedef struct {
    char    name[128];
    int     ndim;
    int64_t shape[4];
} LdmParamSpec;

/* Every parameter of the U-Net (walking its plan, arch/unet_plan.h) / the autoencoder, in a
 * stable order. Returns a new array of LdmParamSpec (g_array_unref it). */
GArray *model_config_unet_params        (const LdmUnetConfig *unet);
GArray *model_config_autoencoder_params (const LdmAutoencoderConfig *ae);

int64_t model_config_param_count (const GArray *params); /* sum of the elements */

/* The name of a U-Net parameter's EMA copy: "model_ema.diffusion_model" + name without dots
 * (LitEma). g_free it. */
char *model_config_unet_ema_name (const char *name);

/* Whether a file's tensor has the shape `spec` needs. Trailing dimensions of size 1 are
 * ignored ([C, C] matches [C, C, 1, 1]): converted checkpoints store 1x1 convolutions both
 * ways, and the elements are in the same order. */
bool model_config_shape_matches (const LdmParamSpec *spec, const LdmTensor *tensor);

/* Appends "[1, 2, 4]" (for descriptions and messages). */
void model_config_append_ints (GString *s, const int *values, int n);
