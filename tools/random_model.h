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
