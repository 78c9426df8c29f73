/* random_model.h: a .safetensors file with every parameter an architecture needs and random
 * weights (make-random-model, and the tests that build models of random architectures).
 *
 * Weights: U(-a, a) with a = sqrt(3 / fan_in) / 2, norms gamma 1 beta 0, biases 0, codebook
 * N(0, 1). The U-Net's tensors are named model.diffusion_model.*, the first stage's
 * first_stage_model.*; no config is written. */
#pragma once

#include "arch/model_config.h"

typedef struct {
    guint    tensors;
    uint64_t parameters;
} RandomModelStats;

/* Writes the U-Net (when config->has_unet) and the first stage (when has_first_stage) of
 * `config` to `path`, as F32 or F16, from `seed`. `stats` (may be NULL) gets the counts. */
gboolean random_model_write (const LdmModelConfig *config, const char *path, bool f16,
                             uint64_t seed, RandomModelStats *stats, GError **error);

/* A CLIP text encoder as SD 1.x checkpoints carry it (cond_stage_model.transformer.text_model.*,
 * the names nn/clip_text.c reads): vocabulary 49408, 77 positions, `width` (the U-Net's
 * context_dim: 768 for SD 1.x), `layers` (12), MLP 4 x width. */
typedef struct {
    int width, layers;
} RandomTextEncoder;

/* random_model_write with a text encoder too when `text` is not NULL. */
gboolean random_model_write_with_text (const LdmModelConfig *config,
                                       const RandomTextEncoder *text, const char *path,
                                       bool f16, uint64_t seed, RandomModelStats *stats,
                                       GError **error);
