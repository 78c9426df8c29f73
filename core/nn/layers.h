/* layers.h (private to core/): loading the parameter-holding layers shared by the networks
 * (GroupNorm/LayerNorm parameters, convolutions, linear layers) from named weights. */
#pragma once

#include "nn/dnn.h"
#include "nn/weights.h"

typedef struct {
    float *gamma, *beta;
    float  eps;
} Norm;

/* PREFIX.weight and PREFIX.bias, c floats each. */
gboolean norm_load  (Norm *norm, const Weights *w, const char *prefix, int c, float eps,
                     GError **error);
void     norm_clear (Norm *norm);
/* GroupNorm(32) [+ SiLU] with these parameters. */
gboolean norm_group (Dnn *dnn, const Norm *norm, const Act *in, Act *out, bool silu,
                     GError **error);

/* A k x k convolution PREFIX.weight [out, in, k, k] + PREFIX.bias, padding k/2 on every side
 * (pad_lt / pad_rb override it when >= 0: the autoencoder's downsampling pads (0, 1)). */
DnnConv *conv_load (Dnn *dnn, const Weights *w, const char *prefix, int out_c, int in_c, int k,
                    int stride, int pad_lt, int pad_rb, GError **error);

/* A linear layer from a Linear [out, in], Conv1d [out, in, 1] or 1x1 Conv2d [out, in, 1, 1]
 * (ndim says which); `bias` false for layers without one. */
DnnLinear *linear_load (Dnn *dnn, const Weights *w, const char *prefix, int out_f, int in_f,
                        int ndim, bool bias, GError **error);
