/* recognise.c: a model's architecture from its tensors alone (names and shapes of the
 * diffusion U-Net and the first stage), matched against the presets. */
#include "arch/config_limits.h"

#include "io/tensor_file.h"

#include <stdarg.h>
#include <string.h>

/* A sub-model's tensors in a file: plain names under a prefix, or LitEma names. */
typedef struct {
    const LdmTensorFile *file;
    const char          *prefix;
    bool                 ema;
} TensorView;

static const LdmTensor *
view_get (const TensorView *v, const char *format, ...) G_GNUC_PRINTF (2, 3);

static const LdmTensor *
view_get (const TensorView *v, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    g_autofree char *name = g_strdup_vprintf (format, args);
    va_end (args);
    g_autofree char *full = v->ema ? model_config_unet_ema_name (name)
                                   : g_strconcat (v->prefix, name, NULL);
    return ldm_tensor_file_lookup (v->file, full);
}

/* Size of dimension d, or -1 when the tensor is absent or has fewer dimensions. */
static int64_t
dim (const LdmTensor *t, int d)
{
    return t && d < t->ndim ? t->shape[d] : -1;
}

static bool
fits_int (int64_t value, int64_t max)
{
    return value >= 1 && value <= max;
}

/* Whether the view holds exactly the parameters of `params`, with their shapes. */
static bool
view_matches_exactly (const TensorView *v, const GArray *params)
{
    if (params->len == 0)
        return false;
    for (guint i = 0; i < params->len; i++) {
        const LdmParamSpec *spec = &g_array_index (params, LdmParamSpec, i);
        const LdmTensor *t = view_get (v, "%s", spec->name);
        if (!t || !model_config_shape_matches (spec, t))
            return false;
    }
    const char *prefix = v->ema ? LDM_UNET_EMA_PREFIX : v->prefix;
    size_t prefix_len = strlen (prefix), count = 0;
    for (size_t i = 0; i < ldm_tensor_file_count (v->file); i++)
        if (!strncmp (ldm_tensor_file_at (v->file, i)->name, prefix, prefix_len))
            count++;
    return count == params->len;
}

static bool
params_equal (const GArray *a, const GArray *b)
{
    if (a->len != b->len)
        return false;
    for (guint i = 0; i < a->len; i++) {
        const LdmParamSpec *x = &g_array_index (a, LdmParamSpec, i);
        const LdmParamSpec *y = &g_array_index (b, LdmParamSpec, i);
        if (strcmp (x->name, y->name) || x->ndim != y->ndim
            || memcmp (x->shape, y->shape, (size_t) x->ndim * sizeof x->shape[0]))
            return false;
    }
    return true;
}

/* A U-Net structure with `nrb` res blocks per level, read from the tensors; false when the
 * tensors do not fit that count. Heads cannot be seen in weights: 1 head of full width. */
static bool
infer_unet_candidate (const TensorView *v, int n_input_blocks, int nrb, LdmUnetConfig *u)
{
    if ((n_input_blocks + 1) % (nrb + 1) != 0)
        return false;
    int levels = (n_input_blocks + 1) / (nrb + 1);
    if (levels > LDM_MAX_LEVELS)
        return false;
    LdmModelConfig defaults;
    model_config_init_defaults (&defaults);
    *u = defaults.unet;

    const LdmTensor *conv_in = view_get (v, "input_blocks.0.0.weight");
    const LdmTensor *conv_out = view_get (v, "out.2.weight");
    if (!fits_int (dim (conv_in, 0), MAX_CHANNELS) || !fits_int (dim (conv_in, 1), MAX_IO_CHANNELS)
        || !fits_int (dim (conv_out, 0), MAX_IO_CHANNELS))
        return false;
    u->model_channels = (int) dim (conv_in, 0);
    u->in_channels = (int) dim (conv_in, 1);
    u->out_channels = (int) dim (conv_out, 0);
    u->num_res_blocks = nrb;
    u->n_levels = levels;
    u->num_heads = 1;
    u->legacy = false;
    u->n_attention_resolutions = 0;

    for (int l = 0; l < levels; l++) {
        int first = 1 + l * (nrb + 1);
        int64_t width = dim (view_get (v, "input_blocks.%d.0.out_layers.3.weight", first), 0);
        if (width < 1 || width % u->model_channels || width / u->model_channels > MAX_MULT)
            return false;
        u->channel_mult[l] = (int) (width / u->model_channels);
        if (view_get (v, "input_blocks.%d.1.norm.weight", first))
            u->attention_resolutions[u->n_attention_resolutions++] = 1 << l;
    }
    if (levels > 1) {
        int down = nrb + 1;
        u->resblock_updown = view_get (v, "input_blocks.%d.0.in_layers.0.weight", down) != NULL;
        u->conv_resample = u->resblock_updown
                           || view_get (v, "input_blocks.%d.0.op.weight", down) != NULL;
    }
    int64_t emb_out = dim (view_get (v, "input_blocks.1.0.emb_layers.1.weight"), 0);
    u->use_scale_shift_norm = emb_out == 2 * u->model_channels * u->channel_mult[0];
    u->num_classes = (int) MAX (0, MIN (dim (view_get (v, "label_emb.weight"), 0), MAX_CLASSES));

    if (view_get (v, "middle_block.1.proj_in.weight")) {
        const LdmTensor *proj_in = view_get (v, "middle_block.1.proj_in.weight");
        u->use_spatial_transformer = true;
        u->use_linear_in_transformer = proj_in->ndim == 2;
        int depth = 0;
        while (depth < MAX_DEPTH
               && view_get (v, "middle_block.1.transformer_blocks.%d.norm1.weight", depth))
            depth++;
        u->transformer_depth = MAX (depth, 1);
        int64_t context
            = dim (view_get (v, "middle_block.1.transformer_blocks.0.attn2.to_k.weight"), 1);
        if (!fits_int (context, MAX_CONTEXT_DIM))
            return false;
        u->context_dim = (int) context;
        /* Self-attention disabled = attn1 reads the context (seen when widths differ). */
        int64_t inner = dim (proj_in, 0);
        u->disable_middle_self_attn
            = dim (view_get (v, "middle_block.1.transformer_blocks.0.attn1.to_k.weight"), 1)
              != inner;
        for (int l = 0; l < levels; l++) {
            int first = 1 + l * (nrb + 1);
            int64_t in = dim (view_get (v, "input_blocks.%d.1.proj_in.weight", first), 0);
            int64_t k = dim (
                view_get (v, "input_blocks.%d.1.transformer_blocks.0.attn1.to_k.weight", first),
                1);
            u->disable_self_attentions[l] = in > 0 && k != in;
            u->has_disable_self_attentions |= u->disable_self_attentions[l];
        }
    } else if (!view_get (v, "middle_block.1.qkv.weight")) {
        return false;
    }
    return true;
}

/* The first stage's structure, read from its tensors (resolution 256 as in every CompVis
 * config: it only places attention, and only relative to the levels). */
static bool
infer_autoencoder (const TensorView *v, LdmAutoencoderConfig *ae)
{
    LdmModelConfig defaults;
    model_config_init_defaults (&defaults);
    *ae = defaults.first_stage;

    const LdmTensor *codebook = view_get (v, "quantize.embedding.weight");
    const LdmTensor *conv_in = view_get (v, "encoder.conv_in.weight");
    const LdmTensor *enc_out = view_get (v, "encoder.conv_out.weight");
    const LdmTensor *dec_in = view_get (v, "decoder.conv_in.weight");
    const LdmTensor *dec_out = view_get (v, "decoder.conv_out.weight");
    const LdmTensor *post_quant = view_get (v, "post_quant_conv.weight");
    if (!fits_int (dim (conv_in, 0), MAX_CHANNELS) || !fits_int (dim (conv_in, 1), MAX_IO_CHANNELS)
        || !fits_int (dim (dec_out, 0), MAX_IO_CHANNELS)
        || !fits_int (dim (dec_in, 1), MAX_IO_CHANNELS)
        || !fits_int (dim (post_quant, 1), MAX_IO_CHANNELS) || !enc_out)
        return false;
    ae->kind = codebook ? LDM_AUTOENCODER_VQ : LDM_AUTOENCODER_KL;
    ae->ch = (int) dim (conv_in, 0);
    ae->in_channels = (int) dim (conv_in, 1);
    ae->out_ch = (int) dim (dec_out, 0);
    ae->z_channels = (int) dim (dec_in, 1);
    ae->double_z = dim (enc_out, 0) == 2 * ae->z_channels;
    ae->embed_dim = (int) dim (post_quant, 1);
    if (codebook) {
        if (!fits_int (dim (codebook, 0), MAX_CODES))
            return false;
        ae->n_embed = (int) dim (codebook, 0);
    } else {
        ae->n_embed = 0;
    }
    ae->resolution = 256;
    ae->n_levels = 0;
    while (ae->n_levels < LDM_MAX_LEVELS
           && view_get (v, "encoder.down.%d.block.0.conv1.weight", ae->n_levels)) {
        int64_t width = dim (view_get (v, "encoder.down.%d.block.0.conv1.weight", ae->n_levels), 0);
        if (width < 1 || width % ae->ch || width / ae->ch > MAX_MULT)
            return false;
        ae->ch_mult[ae->n_levels] = (int) (width / ae->ch);
        if (view_get (v, "encoder.down.%d.attn.0.q.weight", ae->n_levels))
            ae->attn_resolutions[ae->n_attn_resolutions++] = ae->resolution >> ae->n_levels;
        ae->n_levels++;
    }
    ae->num_res_blocks = 0;
    while (ae->num_res_blocks < MAX_RES_BLOCKS
           && view_get (v, "encoder.down.0.block.%d.conv1.weight", ae->num_res_blocks))
        ae->num_res_blocks++;
    ae->mid_attention = view_get (v, "encoder.mid.attn_1.q.weight") != NULL;
    return ae->n_levels > 0 && ae->num_res_blocks > 0;
}

void
model_config_append_ints (GString *s, const int *values, int n)
{
    g_string_append_c (s, '[');
    for (int i = 0; i < n; i++)
        g_string_append_printf (s, i ? ", %d" : "%d", values[i]);
    g_string_append_c (s, ']');
}

static void
describe_unet_structure (GString *s, const LdmUnetConfig *u)
{
    g_string_append_printf (s, "a U-Net with in %d, out %d, model_channels %d, channel_mult ",
                            u->in_channels, u->out_channels, u->model_channels);
    model_config_append_ints (s, u->channel_mult, u->n_levels);
    g_string_append_printf (s, ", %d res blocks per level, attention at ", u->num_res_blocks);
    model_config_append_ints (s, u->attention_resolutions, u->n_attention_resolutions);
    if (u->use_spatial_transformer)
        g_string_append_printf (s, " (spatial transformers, context_dim %d)", u->context_dim);
    else
        g_string_append (s, " (attention blocks)");
    if (u->resblock_updown)
        g_string_append (s, ", resblock up/down");
}

static void
describe_ae_structure (GString *s, const LdmAutoencoderConfig *ae)
{
    if (ae->kind == LDM_AUTOENCODER_VQ)
        g_string_append_printf (s, "a VQ first stage (%d codes of %d)", ae->n_embed,
                                ae->embed_dim);
    else
        g_string_append_printf (s, "a KL first stage (embed_dim %d)", ae->embed_dim);
    g_string_append_printf (s, " with ch %d, ch_mult ", ae->ch);
    model_config_append_ints (s, ae->ch_mult, ae->n_levels);
    g_string_append_printf (s, ", %d res blocks, mid attention %s", ae->num_res_blocks,
                            ae->mid_attention ? "on" : "off");
}

static const char NEED_CONFIG[]
    = "put the model's CompVis config beside it (as <model name>.yaml or config.yaml)";

gboolean
model_config_recognise (const LdmTensorFile *file, LdmModelConfig *config, GError **error)
{
    model_config_init_defaults (config);
    const char *path = ldm_tensor_file_path (file);
    TensorView unet = { file, LDM_UNET_PREFIX, false };
    if (!view_get (&unet, "input_blocks.0.0.weight")) {
        unet.ema = true;
        if (!view_get (&unet, "input_blocks.0.0.weight")) {
            g_set_error (error, LDM_ERROR, LDM_ERROR_MODEL,
                         "%s: no diffusion U-Net (model.diffusion_model.*): not a CompVis "
                         "latent-diffusion checkpoint",
                         path);
            return FALSE;
        }
    }

    /* Count the input blocks; an average-pool downsample leaves one index without tensors. */
    int n_input_blocks = 0, misses = 0;
    for (int i = 1; i < 1 + LDM_MAX_LEVELS * (MAX_RES_BLOCKS + 1) && misses < 2; i++) {
        if (view_get (&unet, "input_blocks.%d.0.in_layers.0.weight", i)
            || view_get (&unet, "input_blocks.%d.0.op.weight", i)) {
            n_input_blocks = i;
            misses = 0;
        } else {
            misses++;
        }
    }

    /* Each res-block count that divides the blocks into levels gives a candidate; the one
     * whose parameter list is exactly the file's is the structure. */
    LdmUnetConfig found_unet;
    bool have_unet = false;
    for (int nrb = 1; nrb <= MAX_RES_BLOCKS && !have_unet; nrb++) {
        if (!infer_unet_candidate (&unet, n_input_blocks, nrb, &found_unet))
            continue;
        g_autoptr (GArray) params = model_config_unet_params (&found_unet);
        have_unet = view_matches_exactly (&unet, params);
    }
    TensorView first = { file, LDM_FIRST_STAGE_PREFIX, false };
    LdmAutoencoderConfig found_ae;
    bool have_ae = infer_autoencoder (&first, &found_ae);
    if (have_ae) {
        g_autoptr (GArray) params = model_config_autoencoder_params (&found_ae);
        have_ae = view_matches_exactly (&first, params);
    }
    if (!have_unet || !have_ae) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_MODEL,
                     "%s: no config beside the model, and its %s tensors are not a CompVis "
                     "%s the engine can recognise: %s",
                     path, have_unet ? LDM_FIRST_STAGE_PREFIX "*" : "model.diffusion_model.*",
                     have_unet ? "VQ or KL autoencoder" : "U-Net", NEED_CONFIG);
        return FALSE;
    }

    g_autoptr (GArray) unet_params = model_config_unet_params (&found_unet);
    g_autoptr (GArray) ae_params = model_config_autoencoder_params (&found_ae);
    for (int i = 0; i < LDM_PRESET_COUNT; i++) {
        LdmModelConfig preset;
        model_config_preset ((LdmPreset) i, &preset);
        g_autoptr (GArray) preset_unet = model_config_unet_params (&preset.unet);
        g_autoptr (GArray) preset_ae = model_config_autoencoder_params (&preset.first_stage);
        if (params_equal (unet_params, preset_unet) && params_equal (ae_params, preset_ae)) {
            *config = preset;
            g_snprintf (config->source, sizeof config->source,
                        "recognised from tensor shapes as %s (%s)",
                        model_config_preset_name ((LdmPreset) i),
                        model_config_preset_title ((LdmPreset) i));
            return model_config_check (config, path, error);
        }
    }

    g_autoptr (GString) found = g_string_new (NULL);
    describe_unet_structure (found, &found_unet);
    g_string_append (found, " and ");
    describe_ae_structure (found, &found_ae);
    g_autoptr (GString) known = g_string_new (NULL);
    for (int i = 0; i < LDM_PRESET_COUNT; i++)
        g_string_append_printf (known, "%s%s", i ? ", " : "", model_config_preset_name (i));
    g_set_error (error, LDM_ERROR, LDM_ERROR_MODEL,
                 "%s: no config beside the model, and its tensors (%s) match none of the "
                 "built-in models (%s): %s",
                 path, found->str, known->str, NEED_CONFIG);
    return FALSE;
}
