/* layers.c: see layers.h. */
#include "nn/layers.h"

#include "nn/act.h"

#define GN_GROUPS 32 /* CompVis normalisation is GroupNorm(32) everywhere */

gboolean
norm_load (Norm *norm, const Weights *w, const char *prefix, int c, float eps, GError **error)
{
    int64_t shape[1] = { c };
    norm->eps = eps;
    norm->gamma = weights_readf (w, error, 1, shape, "%s.weight", prefix);
    if (!norm->gamma)
        return FALSE;
    norm->beta = weights_readf (w, error, 1, shape, "%s.bias", prefix);
    return norm->beta != NULL;
}

void
norm_clear (Norm *norm)
{
    g_clear_pointer (&norm->gamma, g_free);
    g_clear_pointer (&norm->beta, g_free);
}

gboolean
norm_group (Dnn *dnn, const Norm *norm, const Act *in, Act *out, bool silu, GError **error)
{
    /* Our own NHWC GroupNorm with the SiLU fused: oneDNN 3.7's (jit:uni) took a quarter of a
     * U-Net step, and a separate SiLU pass costs a thread start-up per call. */
    (void) dnn;
    return act_group_norm (in, out, norm->gamma, norm->beta, GN_GROUPS, norm->eps, silu, error);
}

DnnConv *
conv_load (Dnn *dnn, const Weights *w, const char *prefix, int out_c, int in_c, int k,
           int stride, int pad_lt, int pad_rb, GError **error)
{
    int64_t wshape[4] = { out_c, in_c, k, k }, bshape[1] = { out_c };
    g_autofree float *weight = weights_readf (w, error, 4, wshape, "%s.weight", prefix);
    if (!weight)
        return NULL;
    g_autofree float *bias = weights_readf (w, error, 1, bshape, "%s.bias", prefix);
    if (!bias)
        return NULL;
    int lt = pad_lt >= 0 ? pad_lt : k / 2, rb = pad_rb >= 0 ? pad_rb : k / 2;
    return dnn_conv_new (dnn, g_steal_pointer (&weight), g_steal_pointer (&bias), out_c, in_c, k,
                         k, stride, lt, lt, rb, rb, error);
}

DnnLinear *
linear_load (Dnn *dnn, const Weights *w, const char *prefix, int out_f, int in_f, int ndim,
             bool bias, GError **error)
{
    int64_t wshape[4] = { out_f, in_f, 1, 1 }, bshape[1] = { out_f };
    g_autofree float *weight = weights_readf (w, error, ndim, wshape, "%s.weight", prefix);
    if (!weight)
        return NULL;
    g_autofree float *b = NULL;
    if (bias && !(b = weights_readf (w, error, 1, bshape, "%s.bias", prefix)))
        return NULL;
    return dnn_linear_new (dnn, g_steal_pointer (&weight), g_steal_pointer (&b), out_f, in_f,
                           error);
}
