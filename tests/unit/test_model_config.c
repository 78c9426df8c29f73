/* test_model_config: CompVis config reading, presets, parameter lists.
 *
 * The published configs and the fixtures come from LDM_SHARED_DIR (skipped without it); the
 * error cases use configs written here. The independent checks: the parameter counts of the
 * real models (from the notes) and the tensor names and shapes in the fixtures' safetensors
 * headers, read here with json-glib, not with the engine's parser.
 */
#include "config_compare.h"
#include "testutil.h"
#include "arch/model_config.h"

#include <glib.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <string.h>
#include <sys/stat.h>

static char *temp_dir;

static gboolean
read_config (const char *path, LdmModelConfig *config)
{
    g_autoptr (GError) error = NULL;
    gboolean ok = model_config_read_yaml (path, config, &error);
    g_assert_no_error (error);
    return ok;
}

/* ============================================================ fixtures' configs */

static void
test_yaml_fixture_ldm_inpaint (void)
{
    g_autofree char *path = shared_path ("fixtures", "ldm-inpaint-tiny", "config.yaml", NULL);
    if (!path)
        return;
    LdmModelConfig c;
    g_assert_true (read_config (path, &c));
    g_assert_cmpint (c.kind, ==, LDM_MODEL_LDM_INPAINT);
    g_assert_cmpstr (c.target, ==, "ldm.models.diffusion.ddpm.LatentDiffusion");
    g_assert_cmpfloat (c.linear_start, ==, 0.0015);
    g_assert_cmpfloat (c.linear_end, ==, 0.0205);
    g_assert_cmpint (c.timesteps, ==, 1000);
    g_assert_cmpint (c.beta_schedule, ==, LDM_BETA_LINEAR);
    g_assert_false (c.v_prediction);
    g_assert_cmpfloat (c.scale_factor, ==, 1.0);
    g_assert_cmpint (c.conditioning, ==, LDM_COND_CONCAT);
    g_assert_cmpint (c.cond_stage, ==, LDM_COND_STAGE_FIRST_STAGE);
    g_assert_true (c.use_ema);
    g_assert_cmpint (c.image_size, ==, 16);
    g_assert_true (c.has_unet && c.has_first_stage);
    g_assert_cmpint (c.unet.in_channels, ==, 7);
    g_assert_cmpint (c.unet.out_channels, ==, 3);
    g_assert_cmpint (c.unet.model_channels, ==, 32);
    g_assert_cmpint (c.unet.n_levels, ==, 2);
    g_assert_cmpint (c.unet.channel_mult[1], ==, 2);
    g_assert_cmpint (c.unet.n_attention_resolutions, ==, 1);
    g_assert_cmpint (c.unet.attention_resolutions[0], ==, 2);
    g_assert_cmpint (c.unet.num_res_blocks, ==, 2);
    g_assert_cmpint (c.unet.num_heads, ==, 2);
    g_assert_cmpint (c.unet.num_head_channels, ==, -1);
    g_assert_true (c.unet.resblock_updown);
    g_assert_true (c.unet.legacy);
    g_assert_true (c.unet.conv_resample);
    g_assert_false (c.unet.use_spatial_transformer);
    g_assert_cmpint (c.first_stage.kind, ==, LDM_AUTOENCODER_VQ);
    g_assert_cmpint (c.first_stage.embed_dim, ==, 3);
    g_assert_cmpint (c.first_stage.n_embed, ==, 64);
    g_assert_false (c.first_stage.double_z);
    g_assert_cmpint (c.first_stage.ch, ==, 32);
    g_assert_cmpint (c.first_stage.n_levels, ==, 3);
    g_assert_cmpint (c.first_stage.ch_mult[2], ==, 1);
    g_assert_cmpint (c.first_stage.num_res_blocks, ==, 1);
    g_assert_cmpint (c.first_stage.resolution, ==, 256);
    g_assert_true (c.first_stage.mid_attention); /* attn_type vanilla */
    g_assert_nonnull (strstr (c.source, "config.yaml"));
}

static void
test_yaml_fixture_ldm_sr (void)
{
    g_autofree char *path = shared_path ("fixtures", "ldm-sr-tiny", "config.yaml", NULL);
    if (!path)
        return;
    LdmModelConfig c;
    g_assert_true (read_config (path, &c));
    g_assert_cmpint (c.kind, ==, LDM_MODEL_LDM_SR);
    g_assert_cmpfloat (c.linear_end, ==, 0.0155);
    g_assert_cmpint (c.cond_stage, ==, LDM_COND_STAGE_IDENTITY);
    g_assert_cmpint (c.unet.in_channels, ==, 6);
    g_assert_cmpint (c.unet.num_res_blocks, ==, 1);
    g_assert_cmpint (c.unet.n_levels, ==, 3);
    g_assert_cmpint (c.unet.num_heads, ==, -1);
    g_assert_cmpint (c.unet.num_head_channels, ==, 8);
    g_assert_false (c.unet.resblock_updown);
    g_assert_cmpint (c.first_stage.n_embed, ==, 64);
}

static void
test_yaml_fixture_sd_inpaint (void)
{
    g_autofree char *path = shared_path ("fixtures", "sd-inpaint-tiny", "config.yaml", NULL);
    if (!path)
        return;
    LdmModelConfig c;
    g_assert_true (read_config (path, &c));
    g_assert_cmpint (c.kind, ==, LDM_MODEL_SD_INPAINT);
    g_assert_cmpstr (c.target, ==, "ldm.models.diffusion.ddpm.LatentInpaintDiffusion");
    g_assert_cmpfloat (c.linear_start, ==, 0.00085);
    g_assert_cmpfloat (c.linear_end, ==, 0.012);
    g_assert_cmpfloat (c.scale_factor, ==, 0.18215);
    g_assert_cmpint (c.conditioning, ==, LDM_COND_HYBRID);
    g_assert_cmpint (c.cond_stage, ==, LDM_COND_STAGE_IDENTITY);
    g_assert_cmpint (c.image_size, ==, 8);
    g_assert_cmpint (c.unet.in_channels, ==, 9);
    g_assert_cmpint (c.unet.out_channels, ==, 4);
    g_assert_true (c.unet.use_spatial_transformer);
    g_assert_cmpint (c.unet.context_dim, ==, 64);
    g_assert_cmpint (c.unet.num_heads, ==, 4);
    g_assert_false (c.unet.legacy);
    g_assert_cmpint (c.unet.transformer_depth, ==, 1);
    g_assert_cmpint (c.first_stage.kind, ==, LDM_AUTOENCODER_KL);
    g_assert_true (c.first_stage.double_z);
    g_assert_cmpint (c.first_stage.z_channels, ==, 4);
    g_assert_cmpint (c.first_stage.n_levels, ==, 4);
    g_assert_cmpint (c.first_stage.n_embed, ==, 0);
}

/* ============================================================ published configs */

static void
test_yaml_published_inpainting_big (void)
{
    g_autofree char *path = shared_path ("model-configs", "ldm_inpainting_big.yaml", NULL);
    if (!path)
        return;
    LdmModelConfig c;
    g_assert_true (read_config (path, &c));
    g_assert_cmpint (c.kind, ==, LDM_MODEL_LDM_INPAINT);
    g_assert_cmpint (c.unet.model_channels, ==, 256);
    g_assert_cmpint (c.unet.n_levels, ==, 4);
    g_assert_cmpint (c.unet.channel_mult[2], ==, 3);
    g_assert_cmpint (c.unet.n_attention_resolutions, ==, 3);
    g_assert_cmpint (c.unet.attention_resolutions[0], ==, 8);
    g_assert_cmpint (c.unet.attention_resolutions[2], ==, 2);
    g_assert_cmpint (c.unet.num_heads, ==, 8);
    g_assert_true (c.unet.resblock_updown);
    g_assert_false (c.first_stage.mid_attention); /* attn_type: none */
    g_assert_cmpint (c.first_stage.n_embed, ==, 8192);
    g_assert_cmpint (c.first_stage.ch, ==, 128);
}

static void
test_yaml_published_bsr_sr (void)
{
    g_autofree char *path = shared_path ("model-configs", "ldm_bsr_sr.yaml", NULL);
    if (!path)
        return;
    LdmModelConfig c;
    g_assert_true (read_config (path, &c));
    g_assert_cmpint (c.kind, ==, LDM_MODEL_LDM_SR);
    g_assert_cmpint (c.unet.model_channels, ==, 160);
    g_assert_cmpint (c.unet.num_head_channels, ==, 32);
    g_assert_cmpint (c.unet.num_heads, ==, -1);
    g_assert_cmpint (c.unet.attention_resolutions[0], ==, 16);
    g_assert_true (c.first_stage.mid_attention);
}

static void
test_yaml_published_sd15 (void)
{
    g_autofree char *path = shared_path ("model-configs", "sd15_v1-inpainting-inference.yaml",
                                         NULL);
    if (!path)
        return;
    LdmModelConfig c;
    g_assert_true (read_config (path, &c));
    g_assert_cmpint (c.kind, ==, LDM_MODEL_SD_INPAINT);
    g_assert_cmpint (c.cond_stage, ==, LDM_COND_STAGE_CLIP);
    g_assert_cmpint (c.unet.context_dim, ==, 768);
    g_assert_cmpint (c.unet.model_channels, ==, 320);
    g_assert_cmpint (c.unet.attention_resolutions[2], ==, 1);
    g_assert_cmpfloat (c.linear_end, ==, 0.012);
    g_assert_cmpint (c.first_stage.kind, ==, LDM_AUTOENCODER_KL);
}

static void
test_yaml_published_sd2_x4 (void)
{
    g_autofree char *path = shared_path ("model-configs", "sd2_x4-upscaling.yaml", NULL);
    if (!path)
        return;
    LdmModelConfig c;
    g_assert_true (read_config (path, &c));
    /* Not a kind the engine runs, but every field is read. */
    g_assert_cmpint (c.kind, ==, LDM_MODEL_UNKNOWN);
    g_assert_cmpstr (c.target, ==, "ldm.models.diffusion.ddpm.LatentUpscaleDiffusion");
    g_assert_true (c.v_prediction);
    g_assert_cmpint (c.conditioning, ==, LDM_COND_HYBRID_ADM);
    g_assert_cmpint (c.cond_stage, ==, LDM_COND_STAGE_OPENCLIP);
    g_assert_false (c.use_ema);
    g_assert_cmpfloat (c.scale_factor, ==, 0.08333);
    g_assert_cmpint (c.image_size, ==, 128);
    g_assert_cmpint (c.unet.num_classes, ==, 1000);
    g_assert_cmpint (c.unet.in_channels, ==, 7);
    g_assert_true (c.unet.use_linear_in_transformer);
    g_assert_cmpint (c.unet.context_dim, ==, 1024);
    g_assert_true (c.unet.has_disable_self_attentions);
    g_assert_true (c.unet.disable_self_attentions[0]);
    g_assert_true (c.unet.disable_self_attentions[2]);
    g_assert_false (c.unet.disable_self_attentions[3]);
    g_assert_false (c.unet.disable_middle_self_attn);
    g_assert_cmpint (c.unet.attention_resolutions[0], ==, 2);
    g_assert_cmpint (c.first_stage.kind, ==, LDM_AUTOENCODER_KL);
    g_assert_cmpint (c.first_stage.n_levels, ==, 3);

    /* SD's x4 upscaler U-Net has 473,398,020 parameters. */
    g_autoptr (GArray) params = model_config_unet_params (&c.unet);
    g_assert_cmpint (model_config_param_count (params), ==, 473398020);
}

static void
test_yaml_published_vq_f4 (void)
{
    g_autofree char *path = shared_path ("model-configs", "vq-f4.yaml", NULL);
    if (!path)
        return;
    LdmModelConfig c;
    g_assert_true (read_config (path, &c));
    g_assert_cmpint (c.kind, ==, LDM_MODEL_UNKNOWN);
    g_assert_false (c.has_unet);
    g_assert_true (c.has_first_stage);
    g_assert_cmpint (c.first_stage.kind, ==, LDM_AUTOENCODER_VQ);
    g_assert_cmpint (c.first_stage.n_embed, ==, 8192);
    g_assert_true (c.first_stage.mid_attention);
}

/* ============================================================ presets */

/* NULL: not among ../shared/model-configs (LDM_PRESET_SD15: test_preset_sd15 below). */
static const char *const published_for_preset[LDM_PRESET_COUNT] = {
    [LDM_PRESET_LDM_INPAINTING_BIG] = "ldm_inpainting_big.yaml",
    [LDM_PRESET_LDM_BSR_SR] = "ldm_bsr_sr.yaml",
    [LDM_PRESET_SD15_INPAINTING] = "sd15_v1-inpainting-inference.yaml",
};

static void
test_presets_equal_published (void)
{
    for (int i = 0; i < LDM_PRESET_COUNT; i++) {
        if (!published_for_preset[i])
            continue;
        g_autofree char *path = shared_path ("model-configs", published_for_preset[i], NULL);
        if (!path)
            return;
        LdmModelConfig parsed, preset;
        g_assert_true (read_config (path, &parsed));
        model_config_preset ((LdmPreset) i, &preset);
        g_test_message ("preset %s vs %s", model_config_preset_name (i), path);
        assert_configs_equal (&parsed, &preset);
        g_assert_nonnull (strstr (preset.source, model_config_preset_name (i)));
    }
}

/* CompVis/stable-diffusion configs/stable-diffusion/v1-inference.yaml, as published (the
 * config of every SD 1.x text-to-image checkpoint: 1.1 to 1.5). */
static const char V1_INFERENCE_YAML[]
    = "model:\n"
      "  base_learning_rate: 1.0e-04\n"
      "  target: ldm.models.diffusion.ddpm.LatentDiffusion\n"
      "  params:\n"
      "    linear_start: 0.00085\n"
      "    linear_end: 0.0120\n"
      "    num_timesteps_cond: 1\n"
      "    log_every_t: 200\n"
      "    timesteps: 1000\n"
      "    first_stage_key: \"jpg\"\n"
      "    cond_stage_key: \"txt\"\n"
      "    image_size: 64\n"
      "    channels: 4\n"
      "    cond_stage_trainable: false   # Note: different from the paper\n"
      "    conditioning_key: crossattn\n"
      "    monitor: val/loss_simple_ema\n"
      "    scale_factor: 0.18215\n"
      "    use_ema: False\n"
      "\n"
      "    scheduler_config: # 10000 warmup steps\n"
      "      target: ldm.lr_scheduler.LambdaLinearScheduler\n"
      "      params:\n"
      "        warm_up_steps: [ 10000 ]\n"
      "        cycle_lengths: [ 10000000000000 ] # incredibly large number to prevent corner cases\n"
      "        f_start: [ 1.e-6 ]\n"
      "        f_max: [ 1. ]\n"
      "        f_min: [ 1. ]\n"
      "\n"
      "    unet_config:\n"
      "      target: ldm.modules.diffusionmodules.openaimodel.UNetModel\n"
      "      params:\n"
      "        image_size: 32 # unused\n"
      "        in_channels: 4\n"
      "        out_channels: 4\n"
      "        model_channels: 320\n"
      "        attention_resolutions: [ 4, 2, 1 ]\n"
      "        num_res_blocks: 2\n"
      "        channel_mult: [ 1, 2, 4, 4 ]\n"
      "        num_heads: 8\n"
      "        use_spatial_transformer: True\n"
      "        transformer_depth: 1\n"
      "        context_dim: 768\n"
      "        use_checkpoint: True\n"
      "        legacy: False\n"
      "\n"
      "    first_stage_config:\n"
      "      target: ldm.models.autoencoder.AutoencoderKL\n"
      "      params:\n"
      "        embed_dim: 4\n"
      "        monitor: val/rec_loss\n"
      "        ddconfig:\n"
      "          double_z: true\n"
      "          z_channels: 4\n"
      "          resolution: 256\n"
      "          in_channels: 3\n"
      "          out_ch: 3\n"
      "          ch: 128\n"
      "          ch_mult:\n"
      "          - 1\n"
      "          - 2\n"
      "          - 4\n"
      "          - 4\n"
      "          num_res_blocks: 2\n"
      "          attn_resolutions: []\n"
      "          dropout: 0.0\n"
      "        lossconfig:\n"
      "          target: torch.nn.Identity\n"
      "\n"
      "    cond_stage_config:\n"
      "      target: ldm.modules.encoders.modules.FrozenCLIPEmbedder\n";

/* The SD 1.x text-to-image preset is v1-inference.yaml: a 4-channel U-Net that sees x alone. */
static void
test_preset_sd15 (void)
{
    LdmModelConfig parsed, preset;
    g_autoptr (GError) error = NULL;
    g_assert_true (model_config_read_yaml_data (V1_INFERENCE_YAML, strlen (V1_INFERENCE_YAML),
                                                "v1-inference.yaml", &parsed, &error));
    g_assert_no_error (error);
    g_assert_cmpint (parsed.kind, ==, LDM_MODEL_SD);
    g_assert_cmpint (parsed.unet.in_channels, ==, 4);
    g_assert_cmpint (parsed.conditioning, ==, LDM_COND_CROSSATTN);
    g_assert_false (parsed.use_ema);
    model_config_preset (LDM_PRESET_SD15, &preset);
    assert_configs_equal (&parsed, &preset);
    /* a 4-channel U-Net under the inpainting class (or 9 channels under the text-to-image
     * one) is refused, naming the key */
    g_autofree char *nine = g_strdup (V1_INFERENCE_YAML);
    memcpy (strstr (nine, "in_channels: 4"), "in_channels: 9", 14);
    g_assert_false (model_config_read_yaml_data (nine, strlen (nine), "nine.yaml", &parsed,
                                                 &error));
    g_assert_error (error, LDM_ERROR, LDM_ERROR_MODEL);
    g_assert_nonnull (strstr (error->message, "in_channels"));
    g_assert_nonnull (strstr (error->message, "x_t alone"));
}

static int64_t
unet_count (const LdmModelConfig *c)
{
    g_autoptr (GArray) p = model_config_unet_params (&c->unet);
    return model_config_param_count (p);
}

static int64_t
ae_count (const LdmModelConfig *c)
{
    g_autoptr (GArray) p = model_config_autoencoder_params (&c->first_stage);
    return model_config_param_count (p);
}

/* The counts of the real models, from the notes (measured with the authors' code). */
static void
test_presets_param_counts (void)
{
    LdmModelConfig c;
    model_config_preset (LDM_PRESET_LDM_INPAINTING_BIG, &c);
    g_assert_cmpint (unet_count (&c), ==, 387245827);
    int64_t vq_f4_plain = ae_count (&c); /* VQ-f4 without attention: 53.2 M */
    g_assert_cmpint (vq_f4_plain, >=, 53150000);
    g_assert_cmpint (vq_f4_plain, <, 53250000);
    g_assert_cmpint (vq_f4_plain, ==, 53219486);

    model_config_preset (LDM_PRESET_LDM_BSR_SR, &c);
    g_assert_cmpint (unet_count (&c), >=, 113600000);
    g_assert_cmpint (unet_count (&c), <, 113700000);
    g_assert_cmpint (unet_count (&c), ==, 113622563);
    /* The mid attention adds 2 x (GroupNorm + 4 1x1 convolutions) at 512 channels. */
    g_assert_cmpint (ae_count (&c) - vq_f4_plain, ==, 2 * (2 * 512 + 4 * (512 * 512 + 512)));

    model_config_preset (LDM_PRESET_SD15_INPAINTING, &c);
    g_assert_cmpint (unet_count (&c), >=, 859500000);
    g_assert_cmpint (unet_count (&c), <, 859600000);
    /* SD 1.5's U-Net (859,520,964) + 5 more input channels of conv_in (320 x 5 x 3 x 3). */
    g_assert_cmpint (unet_count (&c), ==, 859520964 + 320 * 5 * 9);
    g_assert_cmpint (ae_count (&c), ==, 83653863); /* SD's KL-f8 VAE */
    model_config_preset (LDM_PRESET_SD15, &c);
    g_assert_cmpint (unet_count (&c), ==, 859520964); /* SD 1.x's U-Net */
}

static void
test_presets_check_and_heads (void)
{
    for (int i = 0; i < LDM_PRESET_COUNT; i++) {
        LdmModelConfig c;
        model_config_preset ((LdmPreset) i, &c);
        g_autoptr (GError) error = NULL;
        g_assert_true (model_config_check (&c, "preset", &error));
        g_assert_no_error (error);
        g_assert_cmpint (c.kind, !=, LDM_MODEL_UNKNOWN);
    }
    LdmModelConfig c;
    int heads, dim_head;
    model_config_preset (LDM_PRESET_LDM_INPAINTING_BIG, &c);
    model_config_attention_heads (&c.unet, 1024, false, &heads, &dim_head);
    g_assert_cmpint (heads, ==, 8);
    g_assert_cmpint (dim_head, ==, 128);
    model_config_attention_heads (&c.unet, 512, true, &heads, &dim_head);
    g_assert_cmpint (heads, ==, 8); /* num_heads_upsample -1 = num_heads */
    model_config_preset (LDM_PRESET_LDM_BSR_SR, &c);
    model_config_attention_heads (&c.unet, 640, false, &heads, &dim_head);
    g_assert_cmpint (heads, ==, 20);
    g_assert_cmpint (dim_head, ==, 32);
    model_config_preset (LDM_PRESET_SD15_INPAINTING, &c);
    model_config_attention_heads (&c.unet, 320, false, &heads, &dim_head);
    g_assert_cmpint (heads, ==, 8);
    g_assert_cmpint (dim_head, ==, 40);
    model_config_attention_heads (&c.unet, 1280, true, &heads, &dim_head);
    g_assert_cmpint (heads, ==, 8);
    g_assert_cmpint (dim_head, ==, 160);
}

/* ============================================================ parameter lists vs fixtures */

/* The fixture's safetensors header: name -> "[d0, d1, ...]". */
static GHashTable *
read_header_shapes (const char *path)
{
    g_autofree char *bytes = NULL;
    gsize length = 0;
    g_autoptr (GError) error = NULL;
    g_assert_true (g_file_get_contents (path, &bytes, &length, &error));
    g_assert_cmpuint (length, >=, 8);
    guint64 n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | (guint8) bytes[i];
    g_assert_cmpuint (n, <=, length - 8);
    g_autoptr (JsonParser) parser = json_parser_new ();
    g_assert_true (json_parser_load_from_data (parser, bytes + 8, (gssize) n, &error));
    JsonObject *root = json_node_get_object (json_parser_get_root (parser));
    GHashTable *shapes = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
    g_autoptr (GList) members = json_object_get_members (root);
    for (GList *m = members; m; m = m->next) {
        if (!strcmp (m->data, "__metadata__"))
            continue;
        JsonArray *shape = json_object_get_array_member (
            json_object_get_object_member (root, m->data), "shape");
        GString *s = g_string_new ("[");
        for (guint d = 0; d < json_array_get_length (shape); d++)
            g_string_append_printf (s, d ? ", %" G_GINT64_FORMAT : "%" G_GINT64_FORMAT,
                                    json_array_get_int_element (shape, d));
        g_string_append_c (s, ']');
        g_hash_table_insert (shapes, g_strdup (m->data), g_string_free (s, FALSE));
    }
    return shapes;
}

static char *
spec_shape (const LdmParamSpec *spec)
{
    GString *s = g_string_new ("[");
    for (int d = 0; d < spec->ndim; d++)
        g_string_append_printf (s, d ? ", %" G_GINT64_FORMAT : "%" G_GINT64_FORMAT,
                                spec->shape[d]);
    g_string_append_c (s, ']');
    return g_string_free (s, FALSE);
}

/* Every listed parameter is in the header with its shape, and the header holds no other
 * tensor under the prefix (so the list is complete). */
static void
assert_params_are_header (GHashTable *header, const GArray *params, const char *prefix,
                          bool ema)
{
    for (guint i = 0; i < params->len; i++) {
        const LdmParamSpec *spec = &g_array_index (params, LdmParamSpec, i);
        g_autofree char *name = ema ? model_config_unet_ema_name (spec->name)
                                    : g_strconcat (prefix, spec->name, NULL);
        const char *found = g_hash_table_lookup (header, name);
        if (!found)
            g_test_message ("missing in the fixture: %s", name);
        g_assert_nonnull (found);
        g_autofree char *shape = spec_shape (spec);
        g_assert_cmpstr (found, ==, shape);
    }
    guint in_header = 0;
    GHashTableIter iter;
    gpointer key;
    g_hash_table_iter_init (&iter, header);
    while (g_hash_table_iter_next (&iter, &key, NULL))
        if (g_str_has_prefix (key, prefix))
            in_header++;
    g_assert_cmpuint (in_header, ==, params->len);
}

static void
test_params_match_fixtures (void)
{
    static const char *const fixtures[] = { "ldm-inpaint-tiny", "ldm-sr-tiny", "sd-inpaint-tiny" };
    for (size_t i = 0; i < G_N_ELEMENTS (fixtures); i++) {
        g_autofree char *config_path = shared_path ("fixtures", fixtures[i], "config.yaml", NULL);
        g_autofree char *model_path = shared_path ("fixtures", fixtures[i], "model.safetensors",
                                                   NULL);
        if (!config_path || !model_path)
            return;
        g_test_message ("fixture %s", fixtures[i]);
        LdmModelConfig c;
        g_assert_true (read_config (config_path, &c));
        g_autoptr (GHashTable) header = read_header_shapes (model_path);
        g_autoptr (GArray) unet = model_config_unet_params (&c.unet);
        g_autoptr (GArray) ae = model_config_autoencoder_params (&c.first_stage);
        assert_params_are_header (header, unet, LDM_UNET_PREFIX, false);
        assert_params_are_header (header, unet, LDM_UNET_EMA_PREFIX, true);
        assert_params_are_header (header, ae, LDM_FIRST_STAGE_PREFIX, false);
        if (c.cond_stage == LDM_COND_STAGE_FIRST_STAGE) /* cond_stage_model is the same module */
            assert_params_are_header (header, ae, LDM_COND_STAGE_PREFIX, false);
    }
}

static void
test_params_helpers (void)
{
    g_autofree char *ema = model_config_unet_ema_name ("input_blocks.0.0.weight");
    g_assert_cmpstr (ema, ==, "model_ema.diffusion_modelinput_blocks00weight");

    LdmParamSpec conv = { .name = "q.weight", .ndim = 4, .shape = { 8, 8, 1, 1 } };
    LdmTensor t = { .name = "q.weight", .ndim = 2, .shape = { 8, 8 } };
    g_assert_true (model_config_shape_matches (&conv, &t)); /* a 1x1 conv stored as Linear */
    t.ndim = 4;
    t.shape[2] = t.shape[3] = 1;
    g_assert_true (model_config_shape_matches (&conv, &t));
    t.shape[1] = 4;
    g_assert_false (model_config_shape_matches (&conv, &t));
    LdmParamSpec bias = { .name = "b", .ndim = 1, .shape = { 1 } };
    LdmTensor scalar = { .name = "b", .ndim = 0 };
    g_assert_true (model_config_shape_matches (&bias, &scalar));
    LdmTensor wrong = { .name = "b", .ndim = 1, .shape = { 2 } };
    g_assert_false (model_config_shape_matches (&bias, &wrong));

    /* Stable order: the same config always gives the same list. */
    LdmModelConfig c;
    model_config_preset (LDM_PRESET_SD15_INPAINTING, &c);
    g_autoptr (GArray) a = model_config_unet_params (&c.unet);
    g_autoptr (GArray) b = model_config_unet_params (&c.unet);
    g_assert_cmpuint (a->len, ==, b->len);
    g_assert_cmpmem (a->data, a->len * sizeof (LdmParamSpec), b->data,
                     b->len * sizeof (LdmParamSpec));
    g_assert_cmpstr (g_array_index (a, LdmParamSpec, 0).name, ==, "time_embed.0.weight");
}

/* ============================================================ YAML written here */

/* A valid tiny LDM inpainting config (the fixture's), for the variations below. */
static const char base_config[] =
    "model:\n"
    "  target: ldm.models.diffusion.ddpm.LatentDiffusion\n"
    "  params:\n"
    "    linear_start: 0.0015\n"
    "    linear_end: 0.0205\n"
    "    timesteps: 1000\n"
    "    image_size: 16\n"
    "    concat_mode: true\n"
    "    unet_config:\n"
    "      target: ldm.modules.diffusionmodules.openaimodel.UNetModel\n"
    "      params:\n"
    "        in_channels: 7\n"
    "        out_channels: 3\n"
    "        model_channels: 32\n"
    "        attention_resolutions: [2]\n"
    "        num_res_blocks: 2\n"
    "        channel_mult: [1, 2]\n"
    "        num_heads: 2\n"
    "        resblock_updown: true\n"
    "    first_stage_config:\n"
    "      target: ldm.models.autoencoder.VQModelInterface\n"
    "      params:\n"
    "        embed_dim: 3\n"
    "        n_embed: 64\n"
    "        ddconfig:\n"
    "          double_z: false\n"
    "          z_channels: 3\n"
    "          resolution: 256\n"
    "          in_channels: 3\n"
    "          out_ch: 3\n"
    "          attn_resolutions: []\n"
    "          ch: 32\n"
    "          ch_mult: [1, 2, 1]\n"
    "          num_res_blocks: 1\n"
    "          attn_type: vanilla\n"
    "    cond_stage_config: __is_first_stage__\n";

/* base_config with `from` (which must occur once) replaced by `to`. */
static char *
variant (const char *from, const char *to)
{
    const char *at = strstr (base_config, from);
    g_assert_nonnull (at);
    g_assert_null (strstr (at + 1, from));
    return g_strdup_printf ("%.*s%s%s", (int) (at - base_config), base_config, to,
                            at + strlen (from));
}

static char *
write_temp (const char *name, const char *text, gssize length)
{
    char *path = g_build_filename (temp_dir, name, NULL);
    g_autoptr (GError) error = NULL;
    g_assert_true (g_file_set_contents (path, text, length, &error));
    return path;
}

static gboolean
read_text (const char *text, gssize length, LdmModelConfig *config, char **path_out,
           GError **error)
{
    char *path = write_temp ("config.yaml", text, length);
    gboolean ok = model_config_read_yaml (path, config, error);
    *path_out = path;
    return ok;
}

static void
assert_yaml_error (const char *text, gssize length, LdmError code, const char *needle1,
                   const char *needle2)
{
    LdmModelConfig c;
    g_autoptr (GError) error = NULL;
    g_autofree char *path = NULL;
    g_assert_false (read_text (text, length, &c, &path, &error));
    g_assert_nonnull (error);
    g_test_message ("error: %s", error->message);
    g_assert_true (g_str_has_prefix (error->message, path)); /* names the file */
    g_assert_error (error, LDM_ERROR, (gint) code);
    g_assert_nonnull (strstr (error->message, needle1));
    if (needle2)
        g_assert_nonnull (strstr (error->message, needle2));
}

static void
assert_variant_error (const char *from, const char *to, LdmError code, const char *needle1,
                      const char *needle2)
{
    g_autofree char *text = variant (from, to);
    assert_yaml_error (text, -1, code, needle1, needle2);
}

static void
test_yaml_base_is_valid (void)
{
    LdmModelConfig c;
    g_autoptr (GError) error = NULL;
    g_autofree char *path = NULL;
    g_assert_true (read_text (base_config, -1, &c, &path, &error));
    g_assert_no_error (error);
    g_assert_cmpint (c.kind, ==, LDM_MODEL_LDM_INPAINT);
}

static void
test_yaml_type_errors (void)
{
    assert_variant_error ("model_channels: 32", "model_channels: abc", LDM_ERROR_FORMAT,
                          "model.params.unet_config.params.model_channels",
                          "expected an integer, found 'abc'");
    assert_variant_error ("linear_start: 0.0015", "linear_start: \"0.0015\"", LDM_ERROR_FORMAT,
                          "model.params.linear_start", "expected a number");
    assert_variant_error ("linear_end: 0.0205", "linear_end: [1, 2]", LDM_ERROR_FORMAT,
                          "model.params.linear_end", "expected a number, found a list");
    assert_variant_error ("channel_mult: [1, 2]", "channel_mult: [1, 2, 2, 2, 2, 2, 2, 2, 2]",
                          LDM_ERROR_UNSUPPORTED, "model.params.unet_config.params.channel_mult",
                          "at most 8");
    assert_variant_error ("attention_resolutions: [2]", "attention_resolutions: 2",
                          LDM_ERROR_FORMAT, "attention_resolutions", "expected a list");
    assert_variant_error ("channel_mult: [1, 2]", "channel_mult: [1, two]", LDM_ERROR_FORMAT,
                          "channel_mult", "entry 1");
    assert_variant_error ("resblock_updown: true", "resblock_updown: maybe", LDM_ERROR_FORMAT,
                          "resblock_updown", "expected true or false");
    assert_variant_error ("num_res_blocks: 2", "num_res_blocks: 0", LDM_ERROR_FORMAT,
                          "num_res_blocks", "out of range");
    assert_variant_error ("timesteps: 1000", "timesteps: 99999999999999999999",
                          LDM_ERROR_FORMAT, "model.params.timesteps", "expected an integer");
    assert_variant_error ("        model_channels: 32\n", "", LDM_ERROR_FORMAT,
                          "model.params.unet_config.params.model_channels", "missing");
    assert_variant_error ("        n_embed: 64\n", "", LDM_ERROR_FORMAT,
                          "model.params.first_stage_config.params.n_embed", "missing");
    assert_variant_error ("    unet_config:\n", "    unet_config: 5\n    x:\n",
                          LDM_ERROR_FORMAT, "model.params.unet_config", "expected a mapping");
    assert_variant_error ("num_heads: 2", "num_heads: -1", LDM_ERROR_FORMAT, "num_heads",
                          "either num_heads or num_head_channels");
    assert_variant_error ("num_heads: 2", "num_heads: 0", LDM_ERROR_FORMAT, "num_heads",
                          "-1 or positive");
    assert_variant_error ("cond_stage_config: __is_first_stage__",
                          "cond_stage_config: something", LDM_ERROR_FORMAT, "cond_stage_config",
                          NULL);
    assert_variant_error ("concat_mode: true", "conditioning_key: sideways", LDM_ERROR_FORMAT,
                          "conditioning_key", "sideways");
    assert_variant_error ("timesteps: 1000", "beta_schedule: wavy", LDM_ERROR_FORMAT,
                          "beta_schedule", "wavy");
}

static void
test_yaml_structure_errors (void)
{
    assert_yaml_error ("data:\n  batch_size: 4\n", -1, LDM_ERROR_FORMAT, "no 'model' section",
                       NULL);
    assert_yaml_error ("model: 5\n", -1, LDM_ERROR_FORMAT, "no 'model' section", NULL);
    assert_yaml_error ("", 0, LDM_ERROR_FORMAT, "no 'model' section", NULL);
    assert_yaml_error ("- a\n- b\n", -1, LDM_ERROR_FORMAT, "no 'model' section", NULL);
    assert_yaml_error ("model:\n  params: {}\n", -1, LDM_ERROR_FORMAT, "model.target",
                       "missing");
    assert_yaml_error ("model:\n  target: [a]\n", -1, LDM_ERROR_FORMAT, "model.target",
                       "expected a string");
    assert_yaml_error ("model: [unclosed\n", -1, LDM_ERROR_FORMAT, "not valid YAML", "line");
    assert_yaml_error ("model:\n  target: x\n   bad: indent\n", -1, LDM_ERROR_FORMAT,
                       "not valid YAML", "line 3");
    assert_yaml_error ("model: \"\\xff\x01\"\n", -1, LDM_ERROR_FORMAT, "not valid YAML", NULL);

    /* Deep nesting is refused before it costs anything. */
    GString *deep = g_string_new ("model: ");
    for (int i = 0; i < 500; i++)
        g_string_append_c (deep, '[');
    assert_yaml_error (deep->str, -1, LDM_ERROR_FORMAT, "nested deeper", NULL);
    g_string_free (deep, TRUE);

    /* Aliases are never expanded; one where a value is read is a type error. */
    assert_variant_error ("model_channels: 32", "model_channels: *width", LDM_ERROR_FORMAT,
                          "model_channels", NULL);
}

static void
test_yaml_unsupported (void)
{
    assert_variant_error ("attn_type: vanilla", "attn_type: linear", LDM_ERROR_UNSUPPORTED,
                          "ddconfig.attn_type", "linear");
    assert_variant_error ("timesteps: 1000", "parameterization: x0", LDM_ERROR_UNSUPPORTED,
                          "model.params.parameterization", "x0");
    assert_variant_error ("timesteps: 1000", "given_betas: [0.1, 0.2]", LDM_ERROR_UNSUPPORTED,
                          "given_betas", NULL);
    assert_variant_error ("num_heads: 2", "num_heads: 2\n        use_new_attention_order: true",
                          LDM_ERROR_UNSUPPORTED, "use_new_attention_order", NULL);
    assert_variant_error ("num_heads: 2", "num_heads: 2\n        num_classes: sequential",
                          LDM_ERROR_UNSUPPORTED, "num_classes", "sequential");
    assert_variant_error ("num_res_blocks: 2", "num_res_blocks: [2, 3]", LDM_ERROR_UNSUPPORTED,
                          "num_res_blocks", "per level");
    assert_variant_error ("num_heads: 2", "num_heads: 2\n        dims: 3", LDM_ERROR_UNSUPPORTED,
                          "dims", NULL);
    assert_variant_error ("model_channels: 32", "model_channels: 48", LDM_ERROR_UNSUPPORTED,
                          "model_channels", "GroupNorm");
    assert_variant_error ("channel_mult: [1, 2]", "channel_mult: [2, 2]", LDM_ERROR_UNSUPPORTED,
                          "channel_mult", "multiplier 1");
    assert_variant_error ("num_heads: 2", "num_heads: 5", LDM_ERROR_UNSUPPORTED, "num_heads",
                          "head count");
    assert_variant_error ("double_z: false", "double_z: true", LDM_ERROR_FORMAT, "double_z",
                          "VQ");
    assert_variant_error ("num_heads: 2", "num_heads: 2\n        context_dim: 64",
                          LDM_ERROR_FORMAT, "use_spatial_transformer", NULL);
    /* The channels the kind feeds the U-Net. */
    assert_variant_error ("in_channels: 7", "in_channels: 8", LDM_ERROR_MODEL,
                          "model.params.unet_config.params.in_channels", "needs 7");
    assert_variant_error ("out_channels: 3", "out_channels: 4", LDM_ERROR_MODEL,
                          "out_channels", "latent has 3");
}

static void
test_yaml_files (void)
{
    LdmModelConfig c;
    g_autoptr (GError) error = NULL;
    g_autofree char *missing = g_build_filename (temp_dir, "nonexistent.yaml", NULL);
    g_assert_false (model_config_read_yaml (missing, &c, &error));
    g_assert_error (error, LDM_ERROR, LDM_ERROR_IO);
    g_assert_nonnull (strstr (error->message, missing));
    g_clear_error (&error);

    g_assert_false (model_config_read_yaml (temp_dir, &c, &error)); /* a folder */
    g_assert_error (error, LDM_ERROR, LDM_ERROR_IO);
    g_clear_error (&error);

    g_autofree char *fifo = g_build_filename (temp_dir, "fifo.yaml", NULL);
    g_assert_cmpint (mkfifo (fifo, 0600), ==, 0);
    g_assert_false (model_config_read_yaml (fifo, &c, &error)); /* must not block */
    g_assert_error (error, LDM_ERROR, LDM_ERROR_IO);
    g_assert_nonnull (strstr (error->message, "not a regular file"));
    g_clear_error (&error);

    /* A huge file is refused without parsing it. */
    gsize size = (1 << 20) + 10;
    g_autofree char *big = g_malloc (size);
    memset (big, '#', size);
    g_autofree char *path = write_temp ("big.yaml", big, (gssize) size);
    g_assert_false (model_config_read_yaml (path, &c, &error));
    g_assert_error (error, LDM_ERROR, LDM_ERROR_FORMAT);
    g_assert_nonnull (strstr (error->message, "too large"));
}

/* What CompVis accepts and ignores or defaults must read the same here. */
static void
test_yaml_lenient (void)
{
    LdmModelConfig c;
    g_autofree char *path = NULL;
    g_autoptr (GError) error = NULL;

    /* Unknown keys anywhere, nulls (the default stays), YAML 1.1 booleans, unused aliases,
     * tags on strings, a second document. */
    g_autofree char *text = variant (
        "    concat_mode: true\n",
        "    concat_mode: yes\n    monitor: val/loss\n    anchors: &a {x: 1}\n    again: *a\n"
        "    scale_factor: ~\n    ckpt_path: !!str /nowhere\n    scheduler_config:\n"
        "      target: x\n      params: {warm_up_steps: [1000]}\n");
    g_autofree char *two_docs = g_strconcat (text, "---\nnot: [valid\n", NULL);
    g_assert_true (read_text (two_docs, -1, &c, &path, &error));
    g_assert_no_error (error);
    g_assert_cmpint (c.kind, ==, LDM_MODEL_LDM_INPAINT);
    g_assert_cmpfloat (c.scale_factor, ==, 1.0);
    g_clear_pointer (&path, g_free);

    /* A per-level num_res_blocks list whose levels agree. */
    g_autofree char *lists = variant ("num_res_blocks: 2", "num_res_blocks: [2, 2]");
    g_assert_true (read_text (lists, -1, &c, &path, &error));
    g_assert_cmpint (c.unet.num_res_blocks, ==, 2);
    g_clear_pointer (&path, g_free);

    /* Exponent notation without a dot is a float (OmegaConf reads it so). */
    g_autofree char *ints = variant ("linear_end: 0.0205", "linear_end: 1e-2");
    g_assert_true (read_text (ints, -1, &c, &path, &error));
    g_assert_cmpfloat (c.linear_end, ==, 0.01);
    g_clear_pointer (&path, g_free);

    /* conditioning_key wins over concat_mode; crossattn is not a kind the engine runs. */
    g_autofree char *cross = variant ("concat_mode: true", "concat_mode: false");
    g_assert_true (read_text (cross, -1, &c, &path, &error));
    g_assert_cmpint (c.conditioning, ==, LDM_COND_CROSSATTN);
    g_assert_cmpint (c.kind, ==, LDM_MODEL_UNKNOWN);
    g_clear_pointer (&path, g_free);
    g_autofree char *keyed = variant ("concat_mode: true",
                                      "concat_mode: false\n    conditioning_key: concat");
    g_assert_true (read_text (keyed, -1, &c, &path, &error));
    g_assert_cmpint (c.kind, ==, LDM_MODEL_LDM_INPAINT);
    g_clear_pointer (&path, g_free);

    /* No cond stage: unknown kind, still read. */
    g_autofree char *uncond = variant ("cond_stage_config: __is_first_stage__",
                                       "cond_stage_config: __is_unconditional__");
    g_assert_true (read_text (uncond, -1, &c, &path, &error));
    g_assert_cmpint (c.kind, ==, LDM_MODEL_UNKNOWN);
    g_assert_cmpint (c.conditioning, ==, LDM_COND_NONE);
    g_assert_true (c.has_unet);
    g_clear_pointer (&path, g_free);

    /* Another first stage class: the rest is read, the kind is unknown. */
    g_autofree char *identity = variant ("target: ldm.models.autoencoder.VQModelInterface",
                                         "target: ldm.models.autoencoder.IdentityFirstStage");
    g_assert_true (read_text (identity, -1, &c, &path, &error));
    g_assert_false (c.has_first_stage);
    g_assert_cmpint (c.kind, ==, LDM_MODEL_UNKNOWN);
    g_clear_pointer (&path, g_free);

    /* attn_type none turns the mid attention off. */
    g_autofree char *none = variant ("attn_type: vanilla", "attn_type: none");
    g_assert_true (read_text (none, -1, &c, &path, &error));
    g_assert_false (c.first_stage.mid_attention);
    g_clear_pointer (&path, g_free);
}

static void
test_defaults (void)
{
    LdmModelConfig c;
    model_config_init_defaults (&c);
    g_assert_cmpint (c.unet.num_heads, ==, -1);
    g_assert_cmpint (c.unet.num_head_channels, ==, -1);
    g_assert_cmpint (c.unet.num_heads_upsample, ==, -1);
    g_assert_true (c.unet.conv_resample);
    g_assert_true (c.unet.legacy);
    g_assert_false (c.unet.resblock_updown);
    g_assert_false (c.unet.use_scale_shift_norm);
    g_assert_cmpint (c.unet.transformer_depth, ==, 1);
    g_assert_cmpint (c.unet.context_dim, ==, 0);
    g_assert_cmpint (c.timesteps, ==, 1000);
    g_assert_cmpfloat (c.linear_start, ==, 1e-4);
    g_assert_cmpfloat (c.linear_end, ==, 2e-2);
    g_assert_cmpint (c.beta_schedule, ==, LDM_BETA_LINEAR);
    g_assert_cmpfloat (c.scale_factor, ==, 1.0);
    g_assert_true (c.use_ema);
    g_assert_false (c.v_prediction);
    g_assert_true (c.first_stage.mid_attention);
    g_assert_cmpint (c.kind, ==, LDM_MODEL_UNKNOWN);
}

int
main (int argc, char **argv)
{
    g_test_init (&argc, &argv, NULL);

    g_test_add_func ("/config/defaults", test_defaults);
    g_test_add_func ("/config/yaml/fixture-ldm-inpaint", test_yaml_fixture_ldm_inpaint);
    g_test_add_func ("/config/yaml/fixture-ldm-sr", test_yaml_fixture_ldm_sr);
    g_test_add_func ("/config/yaml/fixture-sd-inpaint", test_yaml_fixture_sd_inpaint);
    g_test_add_func ("/config/yaml/published-inpainting-big", test_yaml_published_inpainting_big);
    g_test_add_func ("/config/yaml/published-bsr-sr", test_yaml_published_bsr_sr);
    g_test_add_func ("/config/yaml/published-sd15-inpainting", test_yaml_published_sd15);
    g_test_add_func ("/config/yaml/published-sd2-x4", test_yaml_published_sd2_x4);
    g_test_add_func ("/config/yaml/published-vq-f4", test_yaml_published_vq_f4);
    g_test_add_func ("/config/presets/equal-published", test_presets_equal_published);
    g_test_add_func ("/config/presets/sd15-v1-inference", test_preset_sd15);
    g_test_add_func ("/config/presets/param-counts", test_presets_param_counts);
    g_test_add_func ("/config/presets/check-and-heads", test_presets_check_and_heads);
    g_test_add_func ("/config/params/match-fixtures", test_params_match_fixtures);
    g_test_add_func ("/config/params/helpers", test_params_helpers);
    g_test_add_func ("/config/yaml/base-is-valid", test_yaml_base_is_valid);
    g_test_add_func ("/config/yaml/type-errors", test_yaml_type_errors);
    g_test_add_func ("/config/yaml/structure-errors", test_yaml_structure_errors);
    g_test_add_func ("/config/yaml/unsupported", test_yaml_unsupported);
    g_test_add_func ("/config/yaml/files", test_yaml_files);
    g_test_add_func ("/config/yaml/lenient", test_yaml_lenient);

    return test_run_in_temp_dir ("ldm-config-XXXXXX", &temp_dir);
}
