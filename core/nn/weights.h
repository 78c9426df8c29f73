/* weights.h (private to core/): how a network reads its parameters.
 *
 * A network (U-Net, autoencoder) names each parameter relative to itself ("out.2.weight");
 * a Weights value maps that to a tensor of some file (with EMA names, prefixes, ...), so the
 * networks never know which file or naming scheme the weights came from. */
#pragma once

#include "ldm.h"

typedef struct {
    const LdmTensor *(*lookup) (const void *owner, const char *name);
    const void      *owner;
    const char      *what;   /* for messages: "U-Net of model.ckpt" */
} Weights;

/* Reads parameter `name` as a new float32 array (g_free it), checking that it has exactly
 * `ndim` dimensions of the given sizes. The error names the parameter and both shapes. */
float *weights_read (const Weights *w, const char *name, int ndim, const int64_t *shape,
                     GError **error);

/* weights_read with the name built by printf: weights_readf (w, error, 2, (int64_t[]) {o, i},
 * "input_blocks.%d.0.emb_layers.1.weight", k). */
float *weights_readf (const Weights *w, GError **error, int ndim, const int64_t *shape,
                      const char *format, ...) G_GNUC_PRINTF (5, 6);
