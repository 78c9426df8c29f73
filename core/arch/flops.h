/* flops.h (private to core/): the arithmetic of one forward pass, counted from the networks'
 * descriptions (the U-Net's plan, the autoencoder's config), for the benchmark's GFLOP/s.
 *
 * Counted: convolutions (2 x output pixels x in x out x kernel area), linear layers and the
 * attention's two products (Q K^T and A V: 2 x rows x cols x inner each). Not counted:
 * norms, activations, softmax, additions, resampling copies (a few per cent of the total). */
#pragma once

#include "arch/model_config.h"

/* One U-Net forward of `batch` samples at an h x w latent (multiples of 2^(levels-1)) with
 * `context_tokens` tokens of cross-attention context (0 without). 0 for a config the plan
 * cannot describe. */
double model_config_unet_flops (const LdmUnetConfig *unet, int batch, int h, int w,
                                int context_tokens);

/* One encode (image H x W to the latent: encoder + quant_conv) or decode (post_quant_conv +
 * decoder, latent h x w) of one image by the autoencoder. */
double model_config_encode_flops (const LdmAutoencoderConfig *ae, int image_h, int image_w);
double model_config_decode_flops (const LdmAutoencoderConfig *ae, int latent_h, int latent_w);
