/* unet.h (private to core/): the CompVis diffusion U-Net (openaimodel.UNetModel).
 *
 * unet.c owns the network's layers (their oneDNN convolutions and linear layers with weights
 * reordered once), and its attention scratch. One forward = one denoising evaluation. */
#pragma once

#include "nn/dnn.h"
#include "arch/model_config.h"
#include "nn/weights.h"

typedef struct Unet Unet;

Unet *unet_new  (Dnn *dnn, const LdmUnetConfig *config, const Weights *weights, GError **error);
void  unet_free (Unet *unet);

/* out (n x h x w x out_channels) = eps (or v) predicted for x (n x h x w x in_channels) at
 * timesteps t[n]; context (n x context_tokens x context_dim) for cross-attention, or NULL.
 * h and w must be multiples of 2^(levels-1). */
gboolean unet_forward (Unet *unet, const Act *x, const float *t, const float *context,
                       int context_tokens, Act *out, GError **error);

/* The sinusoidal timestep embedding [cos(t f_i) | sin(t f_i)], f_i = exp(-ln(1e4) i / half),
 * computed in float32 as the authors do. `out` has `dim` floats. */
void unet_timestep_embedding (float t, int dim, float *out);

/* For tests: time_embed MLP output (4 model_channels floats) for timestep t. */
gboolean unet_time_mlp (Unet *unet, float t, float *out, GError **error);
