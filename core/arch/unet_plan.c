/* unet_plan.c: the blocks of openaimodel.UNetModel from its config (see unet_plan.h). */
#include "arch/unet_plan.h"

#include <string.h>

static UnetPlanLayer *
add_layer (UnetPlanBlock *b, UnetLayerKind kind, const char *block_name, int in_c, int out_c)
{
    UnetPlanLayer *l = &b->layers[b->n_layers];
    *l = (UnetPlanLayer) { .kind = kind, .in_c = in_c, .out_c = out_c };
    g_snprintf (l->prefix, sizeof l->prefix, "%s.%d", block_name, b->n_layers);
    b->n_layers++;
    b->out_c = out_c;
    return l;
}

/* The attention a block has at its level, if any; the middle block always has one. */
static void
add_attention (const LdmUnetConfig *u, UnetPlanBlock *b, const char *block_name, bool middle)
{
    if (!middle && !model_config_unet_has_attention (u, b->level))
        return;
    UnetLayerKind kind = u->use_spatial_transformer ? UNET_LAYER_TRANSFORMER : UNET_LAYER_ATTENTION;
    int c = b->out_c;
    UnetPlanLayer *l = add_layer (b, kind, block_name, c, c);
    l->output_block = b->part == UNET_PART_OUTPUT;
    l->disable_self_attn = middle ? u->disable_middle_self_attn
                                  : u->has_disable_self_attentions
                                        && u->disable_self_attentions[b->level];
    model_config_attention_heads (u, c, l->output_block, &l->heads, &l->dim_head);
}

/* The resampling between levels: a ResBlock that resamples (resblock_updown), else a
 * convolution (conv_resample) or none (pooling / plain nearest upsampling). */
static void
add_resample (const LdmUnetConfig *u, UnetPlanBlock *b, const char *block_name, bool down)
{
    int c = b->out_c;
    if (u->resblock_updown) {
        UnetPlanLayer *l = add_layer (b, UNET_LAYER_RESBLOCK, block_name, c, c);
        l->resample = down ? UNET_RESAMPLE_DOWN : UNET_RESAMPLE_UP;
    } else {
        UnetPlanLayer *l = add_layer (b, down ? UNET_LAYER_DOWNSAMPLE : UNET_LAYER_UPSAMPLE,
                                      block_name, c, c);
        l->conv = u->conv_resample;
    }
}

static UnetPlanBlock *
new_block (UnetPlan *plan, UnetPart part, int level, char *name, size_t name_size)
{
    UnetPlanBlock *b = &plan->blocks[plan->n_blocks];
    *b = (UnetPlanBlock) { .part = part, .level = level };
    if (part == UNET_PART_INPUT)
        g_snprintf (name, name_size, "input_blocks.%d", plan->n_blocks);
    else if (part == UNET_PART_MIDDLE)
        g_snprintf (name, name_size, "middle_block");
    else
        g_snprintf (name, name_size, "output_blocks.%d",
                    plan->n_blocks - plan->n_input_blocks - 1);
    plan->n_blocks++;
    return b;
}

bool
unet_plan_build (const LdmUnetConfig *u, UnetPlan *plan)
{
    plan->n_blocks = plan->n_input_blocks = 0;
    if (u->n_levels < 1 || u->n_levels > LDM_MAX_LEVELS || u->num_res_blocks < 1
        || u->num_res_blocks > LDM_MAX_RES_BLOCKS)
        return false; /* model_config_check rejects these */
    const int mc = u->model_channels;
    char name[24];

    /* Input blocks: the input convolution, then per level its res blocks (each with the
     * level's attention) and a downsampling but at the last level. */
    UnetPlanBlock *b = new_block (plan, UNET_PART_INPUT, 0, name, sizeof name);
    add_layer (b, UNET_LAYER_CONV_IN, name, u->in_channels, mc);
    int ch = mc;
    for (int level = 0; level < u->n_levels; level++) {
        int width = mc * u->channel_mult[level];
        for (int r = 0; r < u->num_res_blocks; r++) {
            b = new_block (plan, UNET_PART_INPUT, level, name, sizeof name);
            add_layer (b, UNET_LAYER_RESBLOCK, name, ch, width);
            add_attention (u, b, name, false);
            ch = width;
        }
        if (level != u->n_levels - 1) {
            b = new_block (plan, UNET_PART_INPUT, level, name, sizeof name);
            b->out_c = ch;
            add_resample (u, b, name, true);
        }
    }
    plan->n_input_blocks = plan->n_blocks;

    /* The middle block: ResBlock, attention, ResBlock. */
    b = new_block (plan, UNET_PART_MIDDLE, u->n_levels - 1, name, sizeof name);
    add_layer (b, UNET_LAYER_RESBLOCK, name, ch, ch);
    add_attention (u, b, name, true);
    add_layer (b, UNET_LAYER_RESBLOCK, name, ch, ch);

    /* Output blocks: per level from the last, res blocks + 1 of them, each concatenating the
     * output of an input block (in reverse) before its ResBlock; an upsampling ends each level
     * but the first. */
    int skip = plan->n_input_blocks;
    for (int level = u->n_levels - 1; level >= 0; level--) {
        int width = mc * u->channel_mult[level];
        for (int r = 0; r <= u->num_res_blocks; r++) {
            b = new_block (plan, UNET_PART_OUTPUT, level, name, sizeof name);
            b->skip_c = plan->blocks[--skip].out_c;
            add_layer (b, UNET_LAYER_RESBLOCK, name, ch + b->skip_c, width);
            add_attention (u, b, name, false);
            ch = width;
            if (level > 0 && r == u->num_res_blocks)
                add_resample (u, b, name, false);
        }
    }
    return true; /* every input block's output went to exactly one output block: skip == 0 */
}
