/* dnn.h (private to core/): the one module that talks to oneDNN.
 *
 * dnn.c owns the oneDNN engine and stream, every primitive (created once per shape and
 * cached), and the weights of convolutions and linear layers (reordered once into the layout
 * oneDNN prefers). The networks call these functions and never see a oneDNN type.
 *
 * Activations are plain float32 arrays in NHWC order (channels last): convolutions run fast
 * on them, attention reads them as (tokens x channels) matrices without copies, and
 * concatenation along channels is a strided copy.
 */
#pragma once

#include "ldm.h"

typedef struct Dnn Dnn;

/* An activation tensor: n images of h x w pixels with c channels, NHWC. `data` is owned by
 * whoever allocated it (see act_alloc / act_free). */
typedef struct {
    float *data;
    int    n, h, w, c;
} Act;

static inline size_t
act_numel (const Act *a)
{
    return (size_t) a->n * a->h * a->w * a->c;
}

/* A new engine. bf16: its convolutions, linear layers and attention products take bfloat16
 * inputs and weights with fp32 sums and outputs (the caller checked dnn_bf16_supported);
 * everything else stays fp32. */
Dnn  *dnn_new  (bool bf16, GError **error);
void  dnn_free (Dnn *dnn);
bool  dnn_bf16_supported (void);
bool  dnn_uses_bf16 (const Dnn *dnn);
LdmPrecision dnn_precision (const Dnn *dnn); /* LDM_PRECISION_FP32 or LDM_PRECISION_BF16 */
/* bf16 for a public precision (AUTO: where the CPU has it); FALSE and the error for BF16 on a
 * CPU without it. */
gboolean dnn_precision_resolve (LdmPrecision precision, bool *bf16, GError **error);

/* ------------------------------------------------------------ convolution */

typedef struct DnnConv DnnConv;

/* weight: OIHW float32 (out_c x in_c x kh x kw), bias: out_c or NULL (zeros). Both are taken,
 * not copied (g_malloc'd; freed with the layer, or here when this fails), so a weight is never
 * held twice while the networks load. */
DnnConv *dnn_conv_new  (Dnn *dnn, float *weight, float *bias, int out_c, int in_c,
                        int kh, int kw, int stride, int pad_top, int pad_left, int pad_bottom,
                        int pad_right, GError **error);
void     dnn_conv_free (DnnConv *conv);
int      dnn_conv_out_channels (const DnnConv *conv);
/* Output size for an input size (the caller allocates `out`). */
void     dnn_conv_out_size (const DnnConv *conv, int h, int w, int *out_h, int *out_w);

typedef struct {
    const float *channel_add; /* [n][out_c] added after the bias (a ResBlock's time embedding) */
    bool         accumulate;  /* out += conv (out holds the residual before the call) */
} DnnConvPost;

gboolean dnn_conv_forward (DnnConv *conv, const Act *in, Act *out, const DnnConvPost *post,
                           GError **error);

/* --------------------------------------------------------- linear layers */

typedef struct DnnLinear DnnLinear;

/* weight: [out x in] float32 (PyTorch's Linear layout), bias: out or NULL. Taken, as for
 * dnn_conv_new. */
DnnLinear *dnn_linear_new  (Dnn *dnn, float *weight, float *bias, int out_features,
                            int in_features, GError **error);
void       dnn_linear_free (DnnLinear *linear);
/* y[rows x out] = x[rows x in] W^T + b, optionally y += (accumulate). */
gboolean   dnn_linear_forward (DnnLinear *linear, const float *x, float *y, int rows,
                               bool accumulate, GError **error);

/* ------------------------------------------------------------ normalisation */

/* LayerNorm over the last dimension of a rows x cols matrix. */
gboolean dnn_layer_norm (Dnn *dnn, const float *in, float *out, int rows, int cols,
                         const float *gamma, const float *beta, float eps, GError **error);

/* ----------------------------------------------------------------- matmul */

/* C = alpha * A B for `batch` independent products with arbitrary element strides:
 * A is M x K, B is K x N, C is M x N; each has a batch stride, a row stride and a column
 * stride (a transposed operand is just swapped strides). */
typedef struct {
    int     batch, m, n, k;
    int64_t a_strides[3], b_strides[3], c_strides[3]; /* batch, row, column */
    float   alpha;
} DnnMatmulShape;

gboolean dnn_matmul (Dnn *dnn, const DnnMatmulShape *shape, const float *a, const float *b,
                     float *c, GError **error);

/* ------------------------------------------------------------ element-wise */

/* Softmax of each row of a rows x cols matrix, in place. */
gboolean dnn_softmax_rows (Dnn *dnn, float *x, int64_t rows, int64_t cols, GError **error);

typedef enum {
    DNN_SILU,
    DNN_GELU_ERF,
    DNN_QUICK_GELU, /* x * sigmoid(1.702 x): CLIP's activation (oneDNN swish, alpha 1.702) */
} DnnEltwise;

/* y = f(x) element-wise on n floats (in place when x == y). */
gboolean dnn_eltwise (Dnn *dnn, DnnEltwise kind, const float *x, float *y, int64_t n,
                      GError **error);

/* ------------------------------------------------------------- attention */

/* Multi-head softmax attention for one image: out_h = softmax(scale Q_h K_h^T) V_h.
 * Head h's query rows start at q + h * head_stride, one row per token every q_row floats
 * (likewise k and v); head h's result goes to columns [h d, (h+1) d) of out, whose rows are
 * out_row floats apart. fp32 reads the operands in place; bf16 converts Q, K and V once
 * (softmax in fp32, its probabilities bf16). The scores are computed a chunk of queries at a
 * time, so memory stays bounded for any number of tokens. */
gboolean dnn_attention (Dnn *dnn, const float *q, int64_t q_row, const float *k, int64_t k_row,
                        const float *v, int64_t v_row, int64_t head_stride, int heads, int d,
                        int tq, int tk, float *out, int64_t out_row, float scale,
                        GError **error);
/* dnn_attention with a causal mask (a text transformer's self-attention): `tokens` queries
 * and keys, query i sees keys 0..i only. */
gboolean dnn_attention_causal (Dnn *dnn, const float *q, int64_t q_row, const float *k,
                               int64_t k_row, const float *v, int64_t v_row,
                               int64_t head_stride, int heads, int d, int tokens, float *out,
                               int64_t out_row, float scale, GError **error);
