/* make-random-model: writes a model with the architecture of a published checkpoint (or of any
 * CompVis config.yaml) and random weights, for benchmarks and memory measurements of
 * full-size models.
 *
 *   make-random-model PRESET|CONFIG.yaml OUTPUT.safetensors [--f16] [--seed N] [--text-encoder]
 *   PRESET: inpainting_big | bsr_sr | sd-v1-5-inpainting | sd-v1-5
 *   --text-encoder: also SD 1.x's CLIP text encoder (ViT-L/14's: 12 layers, as wide as the
 *   U-Net's context_dim), as in a real SD checkpoint
 *
 * Weights: see random_model.h. No config is written: the engine recognises a preset from the
 * shapes; for another config, put it beside the output as OUTPUT.yaml.
 */
#include "random_model.h"

#include <stdio.h>
#include <string.h>

int
main (int argc, char **argv)
{
    if (argc < 3) {
        fputs ("usage: make-random-model PRESET|CONFIG.yaml OUTPUT.safetensors [--f16] "
               "[--seed N] [--text-encoder]\n", stderr);
        return 2;
    }
    LdmModelConfig config;
    LdmPreset preset = LDM_PRESET_COUNT;
    for (LdmPreset p = 0; p < LDM_PRESET_COUNT; p++)
        if (strcmp (argv[1], model_config_preset_name (p)) == 0)
            preset = p;
    g_autoptr (GError) error = NULL;
    if (preset != LDM_PRESET_COUNT) {
        model_config_preset (preset, &config);
    } else if (g_str_has_suffix (argv[1], ".yaml") || g_str_has_suffix (argv[1], ".yml")) {
        if (!model_config_read_yaml (argv[1], &config, &error)) {
            fprintf (stderr, "make-random-model: %s\n", error->message);
            return 2;
        }
    } else {
        fprintf (stderr, "make-random-model: unknown preset '%s'\n", argv[1]);
        return 2;
    }
    bool f16 = false, text_encoder = false;
    uint64_t seed = 1;
    for (int i = 3; i < argc; i++) {
        if (strcmp (argv[i], "--f16") == 0)
            f16 = true;
        else if (strcmp (argv[i], "--text-encoder") == 0)
            text_encoder = true;
        else if (strcmp (argv[i], "--seed") == 0 && i + 1 < argc)
            seed = g_ascii_strtoull (argv[++i], NULL, 10);
    }
    RandomTextEncoder text = { config.unet.context_dim, 12 };
    if (text_encoder && !(config.has_unet && config.unet.context_dim > 0)) {
        fprintf (stderr, "make-random-model: --text-encoder: %s has no cross-attention context\n",
                 argv[1]);
        return 2;
    }
    RandomModelStats stats;
    if (!random_model_write_with_text (&config, text_encoder ? &text : NULL, argv[2], f16, seed,
                                       &stats, &error)) {
        fprintf (stderr, "make-random-model: %s\n", error->message);
        return 1;
    }
    fprintf (stderr, "%s: %s, %u tensors, %" G_GUINT64_FORMAT " parameters\n", argv[2], argv[1],
             stats.tensors, stats.parameters);
    return 0;
}
