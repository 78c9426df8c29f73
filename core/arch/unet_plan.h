/* unet_plan.h (private to core/): the structure of a CompVis U-Net, written once.
 *
 * A plan lists the blocks of openaimodel.UNetModel in the order the checkpoint names them
 * (input_blocks.0 .. N, middle_block, output_blocks.0 .. M), each with its layers, their
 * parameter prefixes, kinds and widths, and the width of the skip every output block takes.
 * It is pure data built from the config: the parameter list (param_list.c) and the network
 * (nn/unet.c) both walk it, so what a file is checked against is what the network loads.
 */
#pragma once

#include "arch/model_config.h"

/* Input blocks: the input convolution, levels x res blocks, levels - 1 downsamplings. */
#define UNET_PLAN_MAX_INPUT_BLOCKS  (1 + LDM_MAX_LEVELS * LDM_MAX_RES_BLOCKS + LDM_MAX_LEVELS - 1)
/* Output blocks: levels x (res blocks + 1). */
#define UNET_PLAN_MAX_OUTPUT_BLOCKS (LDM_MAX_LEVELS * (LDM_MAX_RES_BLOCKS + 1))
#define UNET_PLAN_MAX_BLOCKS        (UNET_PLAN_MAX_INPUT_BLOCKS + 1 + UNET_PLAN_MAX_OUTPUT_BLOCKS)

typedef enum {
    UNET_LAYER_CONV_IN,     /* conv 3x3, in_channels -> model_channels */
    UNET_LAYER_RESBLOCK,    /* ResBlock; `resample` set for resblock_updown's resamplings */
    UNET_LAYER_ATTENTION,   /* legacy AttentionBlock (QKV attention) */
    UNET_LAYER_TRANSFORMER, /* SpatialTransformer (self- and cross-attention) */
    UNET_LAYER_DOWNSAMPLE,  /* conv 3x3 stride 2 ("op"), or 2x2 average pooling without conv */
    UNET_LAYER_UPSAMPLE,    /* nearest 2x, then conv 3x3 ("conv") when `conv` */
} UnetLayerKind;

typedef enum { UNET_RESAMPLE_NONE, UNET_RESAMPLE_DOWN, UNET_RESAMPLE_UP } UnetResample;

typedef struct {
    UnetLayerKind kind;
    char          prefix[32];        /* "input_blocks.4.1": its parameters are prefix + "." */
    int           in_c, out_c;       /* a ResBlock's input width includes the skip */
    UnetResample  resample;          /* UNET_LAYER_RESBLOCK */
    bool          conv;              /* UNET_LAYER_DOWNSAMPLE / _UPSAMPLE: conv_resample */
    int           heads, dim_head;   /* attention: model_config_attention_heads */
    bool          output_block;      /* attention in an output block (num_heads_upsample) */
    bool          disable_self_attn; /* a transformer whose attn1 attends to the context */
} UnetPlanLayer;

typedef enum { UNET_PART_INPUT, UNET_PART_MIDDLE, UNET_PART_OUTPUT } UnetPart;

typedef struct {
    UnetPart      part;
    int           level;    /* 0 = full resolution; the middle block is at the last level */
    int           skip_c;   /* output blocks: the width of the skip concatenated to the input
                             * (the output of the input block it pairs with); else 0 */
    int           out_c;    /* the width of the block's output */
    UnetPlanLayer layers[3];
    int           n_layers;
} UnetPlanBlock;

typedef struct {
    UnetPlanBlock blocks[UNET_PLAN_MAX_BLOCKS]; /* input blocks, the middle block, output blocks */
    int           n_blocks;
    int           n_input_blocks;               /* blocks[n_input_blocks] is the middle block */
} UnetPlan;

/* Builds the plan of `unet` into `plan`. FALSE (and no blocks) when the levels, res blocks or
 * transformer depth are beyond the limits the config checks enforce. */
bool unet_plan_build (const LdmUnetConfig *unet, UnetPlan *plan);
