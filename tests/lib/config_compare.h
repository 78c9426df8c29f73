/* config_compare.h: field-by-field comparison of two LdmModelConfig (tests only).
 * Every field except `source`; the message names the first field that differs. */
#pragma once

#include "arch/model_config.h"

#define CMP_SCALAR(fmt, field)                                                                 \
    do {                                                                                       \
        if (a->field != b->field)                                                              \
            return g_strdup_printf (#field ": " fmt " vs " fmt, a->field, b->field);           \
    } while (0)

#define CMP_LIST(array, count)                                                                 \
    do {                                                                                       \
        CMP_SCALAR ("%d", count);                                                              \
        for (int i_ = 0; i_ < a->count; i_++)                                                  \
            if (a->array[i_] != b->array[i_])                                                  \
                return g_strdup_printf (#array "[%d]: %d vs %d", i_, (int) a->array[i_],       \
                                        (int) b->array[i_]);                                   \
    } while (0)

/* NULL when equal, else a description of the first difference (g_free it). */
static G_GNUC_UNUSED char *
config_diff (const LdmModelConfig *a, const LdmModelConfig *b)
{
    CMP_SCALAR ("%d", kind);
    if (strcmp (a->target, b->target))
        return g_strdup_printf ("target: %s vs %s", a->target, b->target);
    CMP_SCALAR ("%d", beta_schedule);
    CMP_SCALAR ("%.17g", linear_start);
    CMP_SCALAR ("%.17g", linear_end);
    CMP_SCALAR ("%d", timesteps);
    CMP_SCALAR ("%d", v_prediction);
    CMP_SCALAR ("%.17g", scale_factor);
    CMP_SCALAR ("%d", conditioning);
    CMP_SCALAR ("%d", cond_stage);
    CMP_SCALAR ("%d", use_ema);
    CMP_SCALAR ("%d", image_size);
    CMP_SCALAR ("%d", scale_by_std);
    CMP_SCALAR ("%d", has_unet);
    CMP_SCALAR ("%d", has_first_stage);

    CMP_SCALAR ("%d", unet.in_channels);
    CMP_SCALAR ("%d", unet.out_channels);
    CMP_SCALAR ("%d", unet.model_channels);
    CMP_LIST (unet.channel_mult, unet.n_levels);
    CMP_SCALAR ("%d", unet.num_res_blocks);
    CMP_LIST (unet.attention_resolutions, unet.n_attention_resolutions);
    CMP_SCALAR ("%d", unet.num_heads);
    CMP_SCALAR ("%d", unet.num_head_channels);
    CMP_SCALAR ("%d", unet.num_heads_upsample);
    CMP_SCALAR ("%d", unet.resblock_updown);
    CMP_SCALAR ("%d", unet.conv_resample);
    CMP_SCALAR ("%d", unet.use_scale_shift_norm);
    CMP_SCALAR ("%d", unet.use_spatial_transformer);
    CMP_SCALAR ("%d", unet.transformer_depth);
    CMP_SCALAR ("%d", unet.context_dim);
    CMP_SCALAR ("%d", unet.legacy);
    CMP_SCALAR ("%d", unet.use_linear_in_transformer);
    CMP_SCALAR ("%d", unet.num_classes);
    CMP_SCALAR ("%d", unet.has_disable_self_attentions);
    for (int i = 0; i < LDM_MAX_LEVELS; i++)
        CMP_SCALAR ("%d", unet.disable_self_attentions[i]);
    CMP_SCALAR ("%d", unet.disable_middle_self_attn);

    CMP_SCALAR ("%d", first_stage.kind);
    CMP_SCALAR ("%d", first_stage.embed_dim);
    CMP_SCALAR ("%d", first_stage.n_embed);
    CMP_SCALAR ("%d", first_stage.z_channels);
    CMP_SCALAR ("%d", first_stage.double_z);
    CMP_SCALAR ("%d", first_stage.ch);
    CMP_LIST (first_stage.ch_mult, first_stage.n_levels);
    CMP_SCALAR ("%d", first_stage.num_res_blocks);
    CMP_SCALAR ("%d", first_stage.in_channels);
    CMP_SCALAR ("%d", first_stage.out_ch);
    CMP_SCALAR ("%d", first_stage.resolution);
    CMP_LIST (first_stage.attn_resolutions, first_stage.n_attn_resolutions);
    CMP_SCALAR ("%d", first_stage.mid_attention);
    return NULL;
}

#undef CMP_SCALAR
#undef CMP_LIST

static G_GNUC_UNUSED void
assert_configs_equal (const LdmModelConfig *a, const LdmModelConfig *b)
{
    g_autofree char *diff = config_diff (a, b);
    if (diff)
        g_test_message ("configs differ: %s", diff);
    g_assert_null (diff);
}
