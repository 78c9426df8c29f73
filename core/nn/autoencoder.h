/* autoencoder.h (private to core/): the first stage of a latent diffusion model, the CompVis
 * autoencoder (ldm/modules/diffusionmodules/model.py Encoder/Decoder) with either a vector
 * quantiser (VQModel, LDM) or a diagonal Gaussian posterior (AutoencoderKL, Stable Diffusion).
 *
 * autoencoder.c owns the encoder, decoder, quant_conv, post_quant_conv and the codebook. */
#pragma once

#include "nn/dnn.h"
#include "arch/model_config.h"
#include "nn/weights.h"

typedef struct Autoencoder Autoencoder;

Autoencoder *autoencoder_new  (Dnn *dnn, const LdmAutoencoderConfig *config,
                               const Weights *weights, GError **error);
void         autoencoder_free (Autoencoder *ae);

/* Image side / latent side (4 for f4, 8 for f8). */
int autoencoder_factor (const Autoencoder *ae);

/* h = quant_conv(encoder(x)) for x (n x H x W x 3) in [-1, 1]; H, W multiples of the factor.
 * `out` is allocated here: n x H/f x W/f x embed_dim (VQ), or 2 embed_dim moments [mean |
 * logvar] (KL). No quantisation: LDM inpainting conditions on this. */
gboolean autoencoder_encode (Autoencoder *ae, const Act *x, Act *out, GError **error);

/* VQ: z + (e - z) with e the codebook row nearest to each latent pixel, chosen by
 * argmin |z|^2 + |e|^2 - 2 z.e like the authors; indices (n*h*w, may be NULL) get the rows. */
gboolean autoencoder_quantize (Autoencoder *ae, const Act *z, Act *out, int *indices,
                               GError **error);

/* decoder(post_quant_conv(z)); no quantisation (call autoencoder_quantize first for VQ). `out`
 * is allocated here: n x h f x w f x 3. */
gboolean autoencoder_decode (Autoencoder *ae, const Act *z, Act *out, GError **error);
