/* dnn.c: oneDNN engine, primitive cache and weight layouts. See dnn.h.
 *
 * Every primitive is made once per shape and kept: a Prim holds the primitive and one memory
 * object per argument; a call only swaps the data handles and executes. All primitives share
 * one scratchpad (they run one at a time on one stream).
 */
#include "nn/dnn.h"

#include "alloc.h"

#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <string.h>
#include <sys/mman.h>

#define MAX_ARGS 8

typedef struct {
    dnnl_primitive_t prim;
    int              n_args;
    bool             ran;                /* executed once */
    dnnl_exec_arg_t  args[MAX_ARGS + 1]; /* + the scratchpad */
} Prim;

struct Dnn {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    GHashTable   *prims;        /* key string -> Prim * */
    void         *scratch;      /* shared scratchpad */
    size_t        scratch_size;
    dnnl_memory_t scratch_mem;
    float        *scores;       /* attention scores, grown as needed */
    size_t        scores_len;
    bool          bf16;         /* convolutions, linear layers and attention in bfloat16 */
    float        *half;         /* a layer's input in bfloat16 (as floats: room for 2 a float) */
    size_t        half_len;     /* floats */
    uint16_t     *att_half;     /* bf16 attention: Q, K, V and a chunk's probabilities */
    size_t        att_half_len; /* bfloat16 values */
};

static const char *
status_text (dnnl_status_t status)
{
    switch (status) {
    case dnnl_success: return "success";
    case dnnl_out_of_memory: return "out of memory";
    case dnnl_invalid_arguments: return "invalid arguments";
    case dnnl_unimplemented: return "no implementation for these parameters";
    case dnnl_last_impl_reached: return "no more implementations";
    case dnnl_runtime_error: return "runtime error";
    case dnnl_not_required: return "not required";
    default: return "unknown error";
    }
}

static gboolean
check (dnnl_status_t status, const char *what, GError **error)
{
    if (status == dnnl_success)
        return TRUE;
    if (status == dnnl_out_of_memory)
        g_set_error (error, LDM_ERROR, LDM_ERROR_NO_MEMORY, "not enough memory for oneDNN (%s)",
                     what);
    else
        g_set_error (error, LDM_ERROR, LDM_ERROR_UNSUPPORTED, "oneDNN: %s: %s", what,
                     status_text (status));
    return FALSE;
}

#define CHECK(call, what)                                                                      \
    do {                                                                                       \
        if (!check ((call), (what), error))                                                    \
            goto fail;                                                                         \
    } while (0)

static void
prim_free (gpointer data)
{
    Prim *p = data;
    if (!p)
        return;
    for (int i = 0; i < p->n_args; i++)
        dnnl_memory_destroy (p->args[i].memory);
    dnnl_primitive_destroy (p->prim);
    g_free (p);
}

/* oneDNN maps its kernels' code when a primitive is made or first run, and where that mapping
 * fails (an address-space limit, RLIMIT_AS, nearly reached) oneDNN 3.6's brgemm convolutions
 * go on with a NULL kernel and crash (test_memory_limit: 10 of 110 limits between 200 and
 * 280 MB, on an AMX Xeon). So both wait until this much address space is free: a run near
 * the limit then fails with a message a little earlier instead of crashing. */
#define KERNEL_ROOM ((size_t) 16 << 20)

static gboolean
kernel_room (const char *what, GError **error)
{
    void *probe = mmap (NULL, KERNEL_ROOM, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                        -1, 0);
    if (probe == MAP_FAILED) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_NO_MEMORY,
                     "not enough memory for oneDNN (%s: its kernels need %zu MB of address "
                     "space)", what, KERNEL_ROOM >> 20);
        return FALSE;
    }
    munmap (probe, KERNEL_ROOM);
    return TRUE;
}

/* Makes a Prim from a primitive descriptor (taking ownership of it): one memory object per
 * argument in arg_ids, with the descriptor the primitive chose, and no data yet. */
static Prim *
prim_new (Dnn *dnn, dnnl_primitive_desc_t pd, const int *arg_ids, int n_args, GError **error)
{
    Prim *p = g_new0 (Prim, 1);
    if (!kernel_room ("creating a primitive", error))
        goto fail;
    CHECK (dnnl_primitive_create (&p->prim, pd), "creating a primitive");
    for (int i = 0; i < n_args; i++) {
        const_dnnl_memory_desc_t md = dnnl_primitive_desc_query_md (pd, dnnl_query_exec_arg_md,
                                                                    arg_ids[i]);
        p->args[i].arg = arg_ids[i];
        CHECK (dnnl_memory_create (&p->args[i].memory, md, dnn->engine, DNNL_MEMORY_NONE),
               "creating a memory object");
        p->n_args = i + 1;
    }
    const_dnnl_memory_desc_t scratch_md = dnnl_primitive_desc_query_md (pd, dnnl_query_scratchpad_md, 0);
    size_t scratch = scratch_md ? dnnl_memory_desc_get_size (scratch_md) : 0;
    if (scratch > dnn->scratch_size) {
        dnnl_memory_destroy (dnn->scratch_mem);
        dnn->scratch_mem = NULL;
        g_free (dnn->scratch);
        dnn->scratch = ldm_try_alloc_n (scratch, 1, "the oneDNN scratchpad", error);
        dnn->scratch_size = dnn->scratch ? scratch : 0;
        if (!dnn->scratch)
            goto fail;
        dnnl_memory_desc_t md;
        dnnl_dims_t dims = { (dnnl_dim_t) scratch };
        CHECK (dnnl_memory_desc_create_with_tag (&md, 1, dims, dnnl_u8, dnnl_a), "scratchpad");
        dnnl_status_t s = dnnl_memory_create (&dnn->scratch_mem, md, dnn->engine, dnn->scratch);
        dnnl_memory_desc_destroy (md);
        CHECK (s, "scratchpad memory");
    }
    dnnl_primitive_desc_destroy (pd);
    return p;
fail:
    dnnl_primitive_desc_destroy (pd);
    prim_free (p);
    return NULL;
}

/* Runs a Prim with new data handles (NULL keeps the one already set). */
static gboolean
prim_run (Dnn *dnn, Prim *p, void *const *handles, GError **error)
{
    for (int i = 0; i < p->n_args; i++)
        if (handles[i])
            CHECK (dnnl_memory_set_data_handle (p->args[i].memory, handles[i]), "data handle");
    int n = p->n_args;
    if (dnn->scratch_mem) {
        p->args[n].arg = DNNL_ARG_SCRATCHPAD;
        p->args[n].memory = dnn->scratch_mem;
        n++;
    }
    if (!p->ran && !kernel_room ("running a primitive", error))
        return FALSE;
    p->ran = true;
    CHECK (dnnl_primitive_execute (p->prim, dnn->stream, n, p->args), "executing a primitive");
    CHECK (dnnl_stream_wait (dnn->stream), "waiting for the stream");
    return TRUE;
fail:
    return FALSE;
}

typedef dnnl_status_t (*MakeDesc) (Dnn *dnn, const void *params, dnnl_primitive_desc_t *pd);
static Prim *prim_cached (Dnn *dnn, char *key, MakeDesc make, const void *params,
                          const char *what, const int *arg_ids, int n_args, GError **error);

static dnnl_primitive_attr_t
attr_new (void)
{
    dnnl_primitive_attr_t attr = NULL;
    if (dnnl_primitive_attr_create (&attr) != dnnl_success)
        return NULL;
    dnnl_primitive_attr_set_scratchpad_mode (attr, dnnl_scratchpad_mode_user);
    return attr;
}

static dnnl_memory_desc_t
md_tag (int ndims, const dnnl_dim_t *dims, dnnl_format_tag_t tag)
{
    dnnl_memory_desc_t md = NULL;
    dnnl_memory_desc_create_with_tag (&md, ndims, dims, dnnl_f32, tag);
    return md;
}

static dnnl_memory_desc_t
md_strides_typed (int ndims, const dnnl_dim_t *dims, const dnnl_dim_t *strides,
                  dnnl_data_type_t type)
{
    dnnl_memory_desc_t md = NULL;
    dnnl_memory_desc_create_with_strides (&md, ndims, dims, type, strides);
    return md;
}

static dnnl_memory_desc_t
md_strides (int ndims, const dnnl_dim_t *dims, const dnnl_dim_t *strides)
{
    return md_strides_typed (ndims, dims, strides, dnnl_f32);
}

Dnn *
dnn_new (bool bf16, GError **error)
{
    Dnn *dnn = g_new0 (Dnn, 1);
    dnn->prims = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, prim_free);
    CHECK (dnnl_engine_create (&dnn->engine, dnnl_cpu, 0), "creating the CPU engine");
    CHECK (dnnl_stream_create (&dnn->stream, dnn->engine, dnnl_stream_default_flags),
           "creating a stream");
    dnn->bf16 = bf16;
    return dnn;
fail:
    dnn_free (dnn);
    return NULL;
}

void
dnn_free (Dnn *dnn)
{
    if (!dnn)
        return;
    g_hash_table_unref (dnn->prims);
    dnnl_memory_destroy (dnn->scratch_mem);
    g_free (dnn->scratch);
    g_free (dnn->scores);
    g_free (dnn->half);
    g_free (dnn->att_half);
    if (dnn->stream)
        dnnl_stream_destroy (dnn->stream);
    if (dnn->engine)
        dnnl_engine_destroy (dnn->engine);
    g_free (dnn);
}


bool
dnn_bf16_supported (void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    /* AVX512-BF16 (Zen 4, Cooper Lake) or AMX-BF16 (Sapphire Rapids on): oneDNN's bf16
     * kernels run on either; without them it would emulate bfloat16, slower than fp32 */
    return __builtin_cpu_supports ("avx512bf16") || __builtin_cpu_supports ("amx-bf16");
#else
    return false;
#endif
}

gboolean
dnn_precision_resolve (LdmPrecision precision, bool *bf16, GError **error)
{
    switch (precision) {
    case LDM_PRECISION_AUTO: *bf16 = dnn_bf16_supported (); return TRUE;
    case LDM_PRECISION_FP32: *bf16 = false; return TRUE;
    case LDM_PRECISION_BF16:
        if (!dnn_bf16_supported ()) {
            g_set_error (error, LDM_ERROR, LDM_ERROR_UNSUPPORTED,
                         "this CPU has no bfloat16 instructions (AVX512-BF16 or AMX): use "
                         "precision fp32 or auto");
            return FALSE;
        }
        *bf16 = true;
        return TRUE;
    }
    g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT, "unknown precision %d", (int) precision);
    return FALSE;
}

bool
dnn_uses_bf16 (const Dnn *dnn)
{
    return dnn->bf16;
}

LdmPrecision
dnn_precision (const Dnn *dnn)
{
    return dnn->bf16 ? LDM_PRECISION_BF16 : LDM_PRECISION_FP32;
}

/* The bfloat16 copy of a layer's input: a cached reorder from `md_f32` into dnn->half. */
static dnnl_status_t
make_to_half (Dnn *dnn, const void *params, dnnl_primitive_desc_t *pd)
{
    const_dnnl_memory_desc_t from = params;
    int ndims = 0;
    dnnl_memory_desc_query (from, dnnl_query_ndims_s32, &ndims);
    const dnnl_dims_t *dims = NULL;
    dnnl_memory_desc_query (from, dnnl_query_dims, &dims);
    dnnl_memory_desc_t to = NULL;
    dnnl_memory_desc_create_with_tag (&to, ndims, *dims, dnnl_bf16,
                                      ndims == 4 ? dnnl_nhwc : dnnl_ab);
    dnnl_primitive_attr_t attr = attr_new ();
    dnnl_status_t s = dnnl_reorder_primitive_desc_create (pd, from, dnn->engine, to, dnn->engine,
                                                          attr);
    dnnl_primitive_attr_destroy (attr);
    dnnl_memory_desc_destroy (to);
    return s;
}

/* Converts `in` (f32, the layout md_f32 describes: NHWC or rows x cols) to bfloat16 in
 * dnn->half; returns dnn->half, or NULL and the error. */
static void *
to_half (Dnn *dnn, const_dnnl_memory_desc_t md_f32, const float *in, GError **error)
{
    size_t n = dnnl_memory_desc_get_size (md_f32) / sizeof (float);
    size_t need = n / 2 + 1 + LDM_DNN_TAIL_FLOATS;
    if (need > dnn->half_len) {
        g_free (dnn->half);
        dnn->half = ldm_try_alloc0_n (need, sizeof (float), "a bfloat16 copy of a layer's input",
                                      error);
        dnn->half_len = dnn->half ? need : 0;
        if (!dnn->half)
            return NULL;
    }
    int ndims = 0;
    dnnl_memory_desc_query (md_f32, dnnl_query_ndims_s32, &ndims);
    const dnnl_dims_t *dims = NULL;
    dnnl_memory_desc_query (md_f32, dnnl_query_dims, &dims);
    char *key = g_strdup_printf ("half %d %" G_GINT64_FORMAT " %" G_GINT64_FORMAT
                                 " %" G_GINT64_FORMAT " %" G_GINT64_FORMAT, ndims, (*dims)[0],
                                 (*dims)[1], ndims > 2 ? (*dims)[2] : 0,
                                 ndims > 3 ? (*dims)[3] : 0);
    static const int ids[2] = { DNNL_ARG_FROM, DNNL_ARG_TO };
    Prim *p = prim_cached (dnn, key, make_to_half, md_f32, "a bfloat16 conversion", ids, 2,
                           error);
    void *handles[2] = { (void *) in, dnn->half };
    return p && prim_run (dnn, p, handles, error) ? dnn->half : NULL;
}

/* ------------------------------------------------------------ convolution */

typedef struct {
    int           n, h, w;
    bool          channel_add, accumulate;
    dnnl_memory_desc_t src_f32; /* bf16: the f32 input's layout, converted before each run */
    Prim         *prim;
    dnnl_memory_t own_weights; /* only when this shape wants another weight layout */
} ConvEntry;

struct DnnConv {
    Dnn          *dnn;
    int           out_c, in_c, kh, kw, stride, pad_t, pad_l, pad_b, pad_r;
    dnnl_memory_t plain_weights; /* OIHW, until the first layout is chosen */
    float        *plain_data;
    dnnl_memory_t weights;       /* in the layout the first primitive chose */
    void         *weights_data;
    dnnl_memory_t bias;
    float        *bias_data;
    GPtrArray    *entries;       /* ConvEntry * */
};

static void
conv_entry_free (gpointer data)
{
    ConvEntry *e = data;
    prim_free (e->prim);
    if (e->src_f32)
        dnnl_memory_desc_destroy (e->src_f32);
    if (e->own_weights) {
        void *handle = NULL;
        dnnl_memory_get_data_handle (e->own_weights, &handle);
        dnnl_memory_destroy (e->own_weights);
        g_free (handle);
    }
    g_free (e);
}

DnnConv *
dnn_conv_new (Dnn *dnn, float *weight, float *bias, int out_c, int in_c, int kh, int kw,
              int stride, int pad_top, int pad_left, int pad_bottom, int pad_right,
              GError **error)
{
    DnnConv *conv = g_new0 (DnnConv, 1);
    *conv = (DnnConv) { .dnn = dnn, .out_c = out_c, .in_c = in_c, .kh = kh, .kw = kw,
                        .stride = stride, .pad_t = pad_top, .pad_l = pad_left,
                        .pad_b = pad_bottom, .pad_r = pad_right, .plain_data = weight,
                        .bias_data = bias };
    conv->entries = g_ptr_array_new_with_free_func (conv_entry_free);

    dnnl_dims_t wdims = { out_c, in_c, kh, kw };
    dnnl_memory_desc_t wmd = md_tag (4, wdims, dnnl_oihw);
    dnnl_status_t s = dnnl_memory_create (&conv->plain_weights, wmd, dnn->engine, conv->plain_data);
    dnnl_memory_desc_destroy (wmd);
    CHECK (s, "convolution weights");

    if (!conv->bias_data
        && !(conv->bias_data = ldm_try_alloc0_n (out_c, sizeof (float), "a bias", error)))
        goto fail;
    dnnl_dims_t bdims = { out_c };
    dnnl_memory_desc_t bmd = md_tag (1, bdims, dnnl_a);
    s = dnnl_memory_create (&conv->bias, bmd, dnn->engine, conv->bias_data);
    dnnl_memory_desc_destroy (bmd);
    CHECK (s, "convolution bias");
    return conv;
fail:
    dnn_conv_free (conv);
    return NULL;
}

void
dnn_conv_free (DnnConv *conv)
{
    if (!conv)
        return;
    g_ptr_array_unref (conv->entries);
    dnnl_memory_destroy (conv->plain_weights);
    dnnl_memory_destroy (conv->weights);
    dnnl_memory_destroy (conv->bias);
    g_free (conv->plain_data);
    g_free (conv->weights_data);
    g_free (conv->bias_data);
    g_free (conv);
}

int
dnn_conv_out_channels (const DnnConv *conv)
{
    return conv->out_c;
}

void
dnn_conv_out_size (const DnnConv *conv, int h, int w, int *out_h, int *out_w)
{
    *out_h = (h + conv->pad_t + conv->pad_b - conv->kh) / conv->stride + 1;
    *out_w = (w + conv->pad_l + conv->pad_r - conv->kw) / conv->stride + 1;
}

/* Reorders `from` into a new memory object of layout `md` that owns its data. */
static dnnl_memory_t
reorder_new (Dnn *dnn, dnnl_memory_t from, const_dnnl_memory_desc_t md, void **data,
             GError **error)
{
    dnnl_memory_t to = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    *data = ldm_try_alloc_n (dnnl_memory_desc_get_size (md), 1, "reordered weights", error);
    if (!*data)
        return NULL;
    const_dnnl_memory_desc_t from_md;
    dnnl_memory_get_memory_desc (from, &from_md);
    CHECK (dnnl_memory_create (&to, md, dnn->engine, *data), "weights memory");
    CHECK (dnnl_reorder_primitive_desc_create (&pd, from_md, dnn->engine, md, dnn->engine, NULL),
           "weights reorder");
    CHECK (dnnl_primitive_create (&prim, pd), "weights reorder");
    dnnl_exec_arg_t args[2] = { { DNNL_ARG_FROM, from }, { DNNL_ARG_TO, to } };
    CHECK (dnnl_primitive_execute (prim, dnn->stream, 2, args), "weights reorder");
    CHECK (dnnl_stream_wait (dnn->stream), "weights reorder");
    dnnl_primitive_destroy (prim);
    dnnl_primitive_desc_destroy (pd);
    return to;
fail:
    if (prim)
        dnnl_primitive_destroy (prim);
    if (pd)
        dnnl_primitive_desc_destroy (pd);
    dnnl_memory_destroy (to);
    g_free (*data);
    *data = NULL;
    return NULL;
}

static ConvEntry *
conv_entry_new (DnnConv *conv, const Act *in, bool channel_add, bool accumulate, GError **error)
{
    Dnn *dnn = conv->dnn;
    int oh, ow;
    dnn_conv_out_size (conv, in->h, in->w, &oh, &ow);
    dnnl_dims_t src_dims = { in->n, conv->in_c, in->h, in->w };
    dnnl_dims_t dst_dims = { in->n, conv->out_c, oh, ow };
    dnnl_dims_t w_dims = { conv->out_c, conv->in_c, conv->kh, conv->kw };
    dnnl_dims_t b_dims = { conv->out_c };
    dnnl_dims_t strides = { conv->stride, conv->stride };
    dnnl_dims_t dilates = { 0, 0 };
    dnnl_dims_t pad_l = { conv->pad_t, conv->pad_l };
    dnnl_dims_t pad_r = { conv->pad_b, conv->pad_r };

    dnnl_data_type_t in_type = dnn->bf16 ? dnnl_bf16 : dnnl_f32;
    dnnl_memory_desc_t src_md = NULL, w_md = NULL;
    dnnl_memory_desc_create_with_tag (&src_md, 4, src_dims, in_type, dnnl_nhwc);
    dnnl_memory_desc_create_with_tag (&w_md, 4, w_dims, in_type, dnnl_format_tag_any);
    dnnl_memory_desc_t dst_md = md_tag (4, dst_dims, dnnl_nhwc);
    dnnl_memory_desc_t b_md = md_tag (1, b_dims, dnnl_a);
    dnnl_dims_t add_dims = { in->n, conv->out_c, 1, 1 };
    dnnl_memory_desc_t add_md = md_tag (4, add_dims, dnnl_nchw);

    dnnl_primitive_attr_t attr = attr_new ();
    dnnl_post_ops_t po = NULL;
    dnnl_post_ops_create (&po);
    if (accumulate)
        dnnl_post_ops_append_sum (po, 1.0f, 0, dnnl_data_type_undef);
    if (channel_add)
        dnnl_post_ops_append_binary (po, dnnl_binary_add, add_md);
    dnnl_primitive_attr_set_post_ops (attr, po);
    dnnl_post_ops_destroy (po);

    dnnl_primitive_desc_t pd = NULL;
    ConvEntry *e = NULL;
    dnnl_status_t s = dnnl_convolution_forward_primitive_desc_create (
        &pd, dnn->engine, dnnl_forward_inference, dnnl_convolution_direct, src_md, w_md, b_md,
        dst_md, strides, dilates, pad_l, pad_r, attr);
    dnnl_primitive_attr_destroy (attr);
    dnnl_memory_desc_destroy (src_md);
    dnnl_memory_desc_destroy (dst_md);
    dnnl_memory_desc_destroy (w_md);
    dnnl_memory_desc_destroy (b_md);
    dnnl_memory_desc_destroy (add_md);
    CHECK (s, "convolution");

    /* The layout of the weights this primitive wants: reorder once, on first use. */
    const_dnnl_memory_desc_t want = dnnl_primitive_desc_query_md (pd, dnnl_query_weights_md, 0);
    e = g_new0 (ConvEntry, 1);
    e->n = in->n;
    e->h = in->h;
    e->w = in->w;
    e->channel_add = channel_add;
    e->accumulate = accumulate;
    if (dnn->bf16)
        e->src_f32 = md_tag (4, src_dims, dnnl_nhwc);
    dnnl_memory_t weights = conv->weights;
    if (!conv->weights) {
        conv->weights = reorder_new (dnn, conv->plain_weights, want, &conv->weights_data, error);
        if (!conv->weights)
            goto fail;
        weights = conv->weights;
        /* The plain copy is no longer needed: other layouts reorder from this one. */
        dnnl_memory_destroy (conv->plain_weights);
        conv->plain_weights = NULL;
        g_clear_pointer (&conv->plain_data, g_free);
    } else {
        const_dnnl_memory_desc_t have;
        dnnl_memory_get_memory_desc (conv->weights, &have);
        if (!dnnl_memory_desc_equal (have, want)) {
            void *data;
            e->own_weights = reorder_new (dnn, conv->weights, want, &data, error);
            if (!e->own_weights)
                goto fail;
            weights = e->own_weights;
        }
    }

    int ids[5] = { DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_BIAS, DNNL_ARG_DST,
                   DNNL_ARG_ATTR_MULTIPLE_POST_OP (accumulate ? 1 : 0) | DNNL_ARG_SRC_1 };
    e->prim = prim_new (dnn, pd, ids, channel_add ? 5 : 4, error);
    pd = NULL;
    if (!e->prim)
        goto fail;
    void *wh = NULL, *bh = NULL;
    dnnl_memory_get_data_handle (weights, &wh);
    dnnl_memory_get_data_handle (conv->bias, &bh);
    CHECK (dnnl_memory_set_data_handle (e->prim->args[1].memory, wh), "weights");
    CHECK (dnnl_memory_set_data_handle (e->prim->args[2].memory, bh), "bias");
    return e;
fail:
    if (pd)
        dnnl_primitive_desc_destroy (pd);
    if (e)
        conv_entry_free (e);
    return NULL;
}

gboolean
dnn_conv_forward (DnnConv *conv, const Act *in, Act *out, const DnnConvPost *post,
                  GError **error)
{
    bool channel_add = post && post->channel_add;
    bool accumulate = post && post->accumulate;
    int oh, ow;
    dnn_conv_out_size (conv, in->h, in->w, &oh, &ow);
    if (in->c != conv->in_c || out->n != in->n || out->c != conv->out_c || out->h != oh
        || out->w != ow) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "convolution %dx%d %d->%d: input %dx%dx%d does not fit output %dx%dx%d",
                     conv->kh, conv->kw, conv->in_c, conv->out_c, in->h, in->w, in->c, out->h,
                     out->w, out->c);
        return FALSE;
    }
    ConvEntry *e = NULL;
    for (guint i = 0; i < conv->entries->len; i++) {
        ConvEntry *c = g_ptr_array_index (conv->entries, i);
        if (c->n == in->n && c->h == in->h && c->w == in->w && c->channel_add == channel_add
            && c->accumulate == accumulate) {
            e = c;
            break;
        }
    }
    if (!e) {
        e = conv_entry_new (conv, in, channel_add, accumulate, error);
        if (!e)
            return FALSE;
        g_ptr_array_add (conv->entries, e);
    }
    void *src = in->data;
    if (e->src_f32 && !(src = to_half (conv->dnn, e->src_f32, in->data, error)))
        return FALSE;
    void *handles[5] = { src, NULL, NULL, out->data,
                         channel_add ? (void *) post->channel_add : NULL };
    return prim_run (conv->dnn, e->prim, handles, error);
}

/* --------------------------------------------------------- linear layers */

struct DnnLinear {
    Dnn          *dnn;
    int           out_f, in_f;
    dnnl_memory_t plain_weights;
    float        *plain_data;
    dnnl_memory_t weights;
    void         *weights_data;
    float        *bias_data;
    dnnl_memory_t bias;
    GHashTable   *entries; /* rows * 2 + accumulate -> Prim * */
};

DnnLinear *
dnn_linear_new (Dnn *dnn, float *weight, float *bias, int out_features, int in_features,
                GError **error)
{
    DnnLinear *l = g_new0 (DnnLinear, 1);
    l->dnn = dnn;
    l->out_f = out_features;
    l->in_f = in_features;
    l->entries = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL, prim_free);
    l->plain_data = weight;
    l->bias_data = bias;
    /* PyTorch stores [out x in]; matmul wants weights as K x N = in x out: the same bytes. */
    dnnl_dims_t wdims = { in_features, out_features };
    dnnl_memory_desc_t wmd = md_tag (2, wdims, dnnl_ba);
    dnnl_status_t s = dnnl_memory_create (&l->plain_weights, wmd, dnn->engine, l->plain_data);
    dnnl_memory_desc_destroy (wmd);
    CHECK (s, "linear weights");
    if (!l->bias_data
        && !(l->bias_data = ldm_try_alloc0_n (out_features, sizeof (float), "a bias", error)))
        goto fail;
    dnnl_dims_t bdims = { 1, out_features };
    dnnl_memory_desc_t bmd = md_tag (2, bdims, dnnl_ab);
    s = dnnl_memory_create (&l->bias, bmd, dnn->engine, l->bias_data);
    dnnl_memory_desc_destroy (bmd);
    CHECK (s, "linear bias");
    return l;
fail:
    dnn_linear_free (l);
    return NULL;
}

void
dnn_linear_free (DnnLinear *l)
{
    if (!l)
        return;
    g_hash_table_unref (l->entries);
    dnnl_memory_destroy (l->plain_weights);
    dnnl_memory_destroy (l->weights);
    dnnl_memory_destroy (l->bias);
    g_free (l->plain_data);
    g_free (l->weights_data);
    g_free (l->bias_data);
    g_free (l);
}

gboolean
dnn_linear_forward (DnnLinear *l, const float *x, float *y, int rows, bool accumulate,
                    GError **error)
{
    gpointer key = GINT_TO_POINTER (rows * 2 + (accumulate ? 1 : 0));
    Prim *p = g_hash_table_lookup (l->entries, key);
    if (!p) {
        dnnl_dims_t sdims = { rows, l->in_f }, wdims = { l->in_f, l->out_f },
                    bdims = { 1, l->out_f }, ddims = { rows, l->out_f };
        dnnl_data_type_t in_type = l->dnn->bf16 ? dnnl_bf16 : dnnl_f32;
        dnnl_memory_desc_t smd = NULL;
        dnnl_memory_desc_create_with_tag (&smd, 2, sdims, in_type, dnnl_ab);
        /* Keep the first layout for every row count: weights are reordered once. */
        dnnl_memory_desc_t wmd = NULL;
        if (l->weights) {
            const_dnnl_memory_desc_t have;
            dnnl_memory_get_memory_desc (l->weights, &have);
            dnnl_memory_desc_clone (&wmd, have);
        } else {
            dnnl_memory_desc_create_with_tag (&wmd, 2, wdims, in_type, dnnl_format_tag_any);
        }
        dnnl_memory_desc_t bmd = md_tag (2, bdims, dnnl_ab);
        dnnl_memory_desc_t dmd = md_tag (2, ddims, dnnl_ab);
        dnnl_primitive_attr_t attr = attr_new ();
        if (accumulate) {
            dnnl_post_ops_t po = NULL;
            dnnl_post_ops_create (&po);
            dnnl_post_ops_append_sum (po, 1.0f, 0, dnnl_data_type_undef);
            dnnl_primitive_attr_set_post_ops (attr, po);
            dnnl_post_ops_destroy (po);
        }
        dnnl_primitive_desc_t pd = NULL;
        dnnl_status_t s = dnnl_matmul_primitive_desc_create (&pd, l->dnn->engine, smd, wmd, bmd,
                                                             dmd, attr);
        dnnl_primitive_attr_destroy (attr);
        dnnl_memory_desc_destroy (smd);
        dnnl_memory_desc_destroy (wmd);
        dnnl_memory_desc_destroy (bmd);
        dnnl_memory_desc_destroy (dmd);
        CHECK (s, "linear layer");
        if (!l->weights) {
            const_dnnl_memory_desc_t want = dnnl_primitive_desc_query_md (pd, dnnl_query_weights_md, 0);
            l->weights = reorder_new (l->dnn, l->plain_weights, want, &l->weights_data, error);
            if (!l->weights) {
                dnnl_primitive_desc_destroy (pd);
                return FALSE;
            }
            dnnl_memory_destroy (l->plain_weights);
            l->plain_weights = NULL;
            g_clear_pointer (&l->plain_data, g_free);
        }
        int ids[4] = { DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_BIAS, DNNL_ARG_DST };
        p = prim_new (l->dnn, pd, ids, 4, error);
        if (!p)
            return FALSE;
        CHECK (dnnl_memory_set_data_handle (p->args[1].memory, l->weights_data), "weights");
        CHECK (dnnl_memory_set_data_handle (p->args[2].memory, l->bias_data), "bias");
        g_hash_table_insert (l->entries, key, p);
    }
    void *src = (void *) x;
    if (l->dnn->bf16) {
        dnnl_dims_t sdims = { rows, l->in_f };
        dnnl_memory_desc_t smd = md_tag (2, sdims, dnnl_ab);
        src = to_half (l->dnn, smd, x, error);
        dnnl_memory_desc_destroy (smd);
        if (!src)
            return FALSE;
    }
    void *handles[4] = { src, NULL, NULL, y };
    return prim_run (l->dnn, p, handles, error);
fail:
    return FALSE;
}

/* ------------------------------------------------------- cached primitives */

/* MakeDesc (above) makes the primitive descriptor of an operation from its parameters, on a
 * cache miss. */

/* The primitive cached under `key` (which this takes), made on first use. */
static Prim *
prim_cached (Dnn *dnn, char *key, MakeDesc make, const void *params, const char *what,
             const int *arg_ids, int n_args, GError **error)
{
    Prim *p = g_hash_table_lookup (dnn->prims, key);
    if (p) {
        g_free (key);
        return p;
    }
    dnnl_primitive_desc_t pd = NULL;
    if (!check (make (dnn, params, &pd), what, error)
        || !(p = prim_new (dnn, pd, arg_ids, n_args, error))) {
        g_free (key);
        return NULL;
    }
    g_hash_table_insert (dnn->prims, key, p);
    return p;
}

/* An attribute with one eltwise post-op (alg undef: none). */
static dnnl_primitive_attr_t
attr_with_eltwise (dnnl_alg_kind_t alg, float alpha)
{
    dnnl_primitive_attr_t attr = attr_new ();
    if (alg != dnnl_alg_kind_undef) {
        dnnl_post_ops_t po = NULL;
        dnnl_post_ops_create (&po);
        dnnl_post_ops_append_eltwise (po, alg, alpha, 0.0f);
        dnnl_primitive_attr_set_post_ops (attr, po);
        dnnl_post_ops_destroy (po);
    }
    return attr;
}

/* ------------------------------------------------------------ normalisation */

static const int NORM_ARGS[4] = { DNNL_ARG_SRC, DNNL_ARG_DST, DNNL_ARG_SCALE, DNNL_ARG_SHIFT };

typedef struct {
    int   rows, cols;
    float eps;
} LayerNormParams;

static dnnl_status_t
make_layer_norm (Dnn *dnn, const void *params, dnnl_primitive_desc_t *pd)
{
    const LayerNormParams *l = params;
    dnnl_dims_t dims = { l->rows, l->cols };
    dnnl_memory_desc_t md = md_tag (2, dims, dnnl_ab);
    dnnl_primitive_attr_t attr = attr_new ();
    dnnl_status_t s = dnnl_layer_normalization_forward_primitive_desc_create (
        pd, dnn->engine, dnnl_forward_inference, md, md, NULL, l->eps,
        dnnl_use_scale | dnnl_use_shift, attr);
    dnnl_primitive_attr_destroy (attr);
    dnnl_memory_desc_destroy (md);
    return s;
}

gboolean
dnn_layer_norm (Dnn *dnn, const float *in, float *out, int rows, int cols, const float *gamma,
                const float *beta, float eps, GError **error)
{
    LayerNormParams params = { rows, cols, eps };
    char *key = g_strdup_printf ("ln %d %d %a", rows, cols, eps);
    Prim *p = prim_cached (dnn, key, make_layer_norm, &params, "layer normalisation", NORM_ARGS,
                           4, error);
    void *handles[4] = { (void *) in, out, (void *) gamma, (void *) beta };
    return p && prim_run (dnn, p, handles, error);
}

/* ----------------------------------------------------------------- matmul */

/* A matrix product whose operands may be bfloat16 (attention in bf16); c is always f32. */
typedef struct {
    DnnMatmulShape shape;
    bool           half_a, half_b;
} MatmulParams;

static dnnl_status_t
make_matmul (Dnn *dnn, const void *params, dnnl_primitive_desc_t *pd)
{
    const MatmulParams *mp = params;
    const DnnMatmulShape *sh = &mp->shape;
    dnnl_dims_t adims = { sh->batch, sh->m, sh->k }, bdims = { sh->batch, sh->k, sh->n },
                cdims = { sh->batch, sh->m, sh->n };
    dnnl_dims_t as = { sh->a_strides[0], sh->a_strides[1], sh->a_strides[2] };
    dnnl_dims_t bs = { sh->b_strides[0], sh->b_strides[1], sh->b_strides[2] };
    dnnl_dims_t cs = { sh->c_strides[0], sh->c_strides[1], sh->c_strides[2] };
    dnnl_memory_desc_t amd = md_strides_typed (3, adims, as, mp->half_a ? dnnl_bf16 : dnnl_f32);
    dnnl_memory_desc_t bmd = md_strides_typed (3, bdims, bs, mp->half_b ? dnnl_bf16 : dnnl_f32);
    dnnl_memory_desc_t cmd = md_strides (3, cdims, cs);
    dnnl_primitive_attr_t attr = attr_with_eltwise (sh->alpha != 1.0f ? dnnl_eltwise_linear
                                                                       : dnnl_alg_kind_undef,
                                                    sh->alpha);
    dnnl_status_t s = dnnl_matmul_primitive_desc_create (pd, dnn->engine, amd, bmd, NULL, cmd,
                                                         attr);
    dnnl_primitive_attr_destroy (attr);
    dnnl_memory_desc_destroy (amd);
    dnnl_memory_desc_destroy (bmd);
    dnnl_memory_desc_destroy (cmd);
    return s;
}

static gboolean
matmul_typed (Dnn *dnn, const MatmulParams *mp, const void *a, const void *b, float *c,
              GError **error)
{
    const DnnMatmulShape *sh = &mp->shape;
    char *key = g_strdup_printf (
        "mm %d %d %d %d %" G_GINT64_FORMAT " %" G_GINT64_FORMAT " %" G_GINT64_FORMAT
        " %" G_GINT64_FORMAT " %" G_GINT64_FORMAT " %" G_GINT64_FORMAT " %" G_GINT64_FORMAT
        " %" G_GINT64_FORMAT " %" G_GINT64_FORMAT " %a %d%d",
        sh->batch, sh->m, sh->n, sh->k, sh->a_strides[0], sh->a_strides[1], sh->a_strides[2],
        sh->b_strides[0], sh->b_strides[1], sh->b_strides[2], sh->c_strides[0], sh->c_strides[1],
        sh->c_strides[2], sh->alpha, mp->half_a, mp->half_b);
    static const int ids[3] = { DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST };
    Prim *p = prim_cached (dnn, key, make_matmul, mp, "matrix product", ids, 3, error);
    void *handles[3] = { (void *) a, (void *) b, c };
    return p && prim_run (dnn, p, handles, error);
}

gboolean
dnn_matmul (Dnn *dnn, const DnnMatmulShape *sh, const float *a, const float *b, float *c,
            GError **error)
{
    MatmulParams mp = { .shape = *sh };
    return matmul_typed (dnn, &mp, a, b, c, error);
}

/* ------------------------------------------------------------ element-wise */

typedef struct {
    int64_t         rows, cols;
    dnnl_alg_kind_t alg;     /* eltwise algorithm, or undef for softmax */
    float           alpha;
    bool            half_out; /* softmax: bfloat16 output */
} ElementParams;

static const int UNARY_ARGS[2] = { DNNL_ARG_SRC, DNNL_ARG_DST };

static dnnl_status_t
make_softmax (Dnn *dnn, const void *params, dnnl_primitive_desc_t *pd)
{
    const ElementParams *e = params;
    dnnl_dims_t dims = { e->rows, e->cols };
    dnnl_memory_desc_t md = md_tag (2, dims, dnnl_ab), out = NULL;
    dnnl_memory_desc_create_with_tag (&out, 2, dims, e->half_out ? dnnl_bf16 : dnnl_f32,
                                      dnnl_ab);
    dnnl_primitive_attr_t attr = attr_new ();
    dnnl_status_t s = dnnl_softmax_forward_primitive_desc_create (
        pd, dnn->engine, dnnl_forward_inference, dnnl_softmax_accurate, md, out, 1, attr);
    dnnl_primitive_attr_destroy (attr);
    dnnl_memory_desc_destroy (md);
    dnnl_memory_desc_destroy (out);
    return s;
}

/* Softmax of each row of x (f32) into out (bfloat16). */
static gboolean
softmax_rows_to_half (Dnn *dnn, const float *x, uint16_t *out, int64_t rows, int64_t cols,
                      GError **error)
{
    ElementParams params = { rows, cols, dnnl_alg_kind_undef, 0, true };
    char *key = g_strdup_printf ("softmax16 %" G_GINT64_FORMAT " %" G_GINT64_FORMAT, rows, cols);
    Prim *p = prim_cached (dnn, key, make_softmax, &params, "softmax", UNARY_ARGS, 2, error);
    void *handles[2] = { (void *) x, out };
    return p && prim_run (dnn, p, handles, error);
}

gboolean
dnn_softmax_rows (Dnn *dnn, float *x, int64_t rows, int64_t cols, GError **error)
{
    ElementParams params = { rows, cols, dnnl_alg_kind_undef, 0, false };
    char *key = g_strdup_printf ("softmax %" G_GINT64_FORMAT " %" G_GINT64_FORMAT, rows, cols);
    Prim *p = prim_cached (dnn, key, make_softmax, &params, "softmax", UNARY_ARGS, 2, error);
    void *handles[2] = { x, x };
    return p && prim_run (dnn, p, handles, error);
}

static dnnl_status_t
make_eltwise (Dnn *dnn, const void *params, dnnl_primitive_desc_t *pd)
{
    const ElementParams *e = params;
    dnnl_dims_t dims = { e->rows * e->cols };
    dnnl_memory_desc_t md = md_tag (1, dims, dnnl_a);
    dnnl_primitive_attr_t attr = attr_new ();
    dnnl_status_t s = dnnl_eltwise_forward_primitive_desc_create (
        pd, dnn->engine, dnnl_forward_inference, e->alg, md, md, e->alpha, 0.0f, attr);
    dnnl_primitive_attr_destroy (attr);
    dnnl_memory_desc_destroy (md);
    return s;
}

gboolean
dnn_eltwise (Dnn *dnn, DnnEltwise kind, const float *x, float *y, int64_t n, GError **error)
{
    /* swish(x) = x * sigmoid(alpha x): SiLU is alpha 1, CLIP's quick GELU alpha 1.702 */
    ElementParams params = { 1, n, kind == DNN_GELU_ERF ? dnnl_eltwise_gelu_erf : dnnl_eltwise_swish,
                             kind == DNN_SILU ? 1.0f : kind == DNN_QUICK_GELU ? 1.702f : 0.0f,
                             false };
    char *key = g_strdup_printf ("eltwise %d %" G_GINT64_FORMAT, kind, n);
    Prim *p = prim_cached (dnn, key, make_eltwise, &params, "element-wise", UNARY_ARGS, 2, error);
    void *handles[2] = { (void *) x, y };
    return p && prim_run (dnn, p, handles, error);
}

/* -------------------------------------------------------------- attention */

/* Queries are processed in chunks so that the score matrix stays below this many floats. */
#define ATTENTION_SCORES_MAX (64u << 20)

static float *
scores_buffer (Dnn *dnn, size_t len, GError **error)
{
    if (len > dnn->scores_len) {
        g_free (dnn->scores);
        dnn->scores = ldm_try_alloc_n (len, sizeof (float), "attention scores", error);
        dnn->scores_len = dnn->scores ? len : 0;
        if (!dnn->scores)
            return NULL;
    }
    return dnn->scores;
}

/* Hides the keys after each query (key j > query i) from a chunk of scores: g heads of m
 * query rows starting at query q0, tk keys each. */
static void
mask_future (float *scores, int g, int m, int q0, int tk)
{
    for (int h = 0; h < g; h++)
        for (int r = 0; r < m; r++) {
            float *row = scores + ((int64_t) h * m + r) * tk;
            for (int j = q0 + r + 1; j < tk; j++)
                row[j] = -INFINITY; /* softmax gives it weight 0 */
        }
}

/* Q, K or V (t tokens of `heads` heads of d, rows `row` and heads `head_stride` floats apart)
 * as dense bfloat16, t x heads x d: a cached reorder. */
typedef struct {
    int64_t t, heads, d, row, head_stride;
} HeadsParams;

static dnnl_status_t
make_heads_to_half (Dnn *dnn, const void *params, dnnl_primitive_desc_t *pd)
{
    const HeadsParams *h = params;
    dnnl_dims_t dims = { h->t, h->heads, h->d }, strides = { h->row, h->head_stride, 1 };
    dnnl_memory_desc_t from = md_strides (3, dims, strides), to = NULL;
    dnnl_memory_desc_create_with_tag (&to, 3, dims, dnnl_bf16, dnnl_abc);
    dnnl_primitive_attr_t attr = attr_new ();
    dnnl_status_t s = dnnl_reorder_primitive_desc_create (pd, from, dnn->engine, to, dnn->engine,
                                                          attr);
    dnnl_primitive_attr_destroy (attr);
    dnnl_memory_desc_destroy (from);
    dnnl_memory_desc_destroy (to);
    return s;
}

static gboolean
heads_to_half (Dnn *dnn, const float *x, int64_t row, int64_t head_stride, int heads, int d,
               int t, uint16_t *out, GError **error)
{
    HeadsParams params = { t, heads, d, row, head_stride };
    char *key = g_strdup_printf ("heads16 %d %d %d %" G_GINT64_FORMAT " %" G_GINT64_FORMAT, t,
                                 heads, d, row, head_stride);
    static const int ids[2] = { DNNL_ARG_FROM, DNNL_ARG_TO };
    Prim *p = prim_cached (dnn, key, make_heads_to_half, &params, "a bfloat16 conversion", ids,
                           2, error);
    void *handles[2] = { (void *) x, out };
    return p && prim_run (dnn, p, handles, error);
}

/* Element i of a float or (half) bfloat16 array. */
static const void *
element (const void *base, bool half, int64_t i)
{
    return half ? (const void *) ((const uint16_t *) base + i)
                : (const void *) ((const float *) base + i);
}

/* fp32 reads Q, K and V in place and takes the softmax in place. bf16 (the engine's bf16
 * precision) converts Q, K and V once to dense t x heads x d, sums the scores in f32 and has
 * the softmax write bf16 probabilities for the product with V; its scores, probabilities and
 * copies take at most the bytes fp32's largest score chunk takes. */
static gboolean
attention (Dnn *dnn, const float *q, int64_t q_row, const float *k, int64_t k_row,
           const float *v, int64_t v_row, int64_t head_stride, int heads, int d, int tq, int tk,
           float *out, int64_t out_row, float scale, bool causal, GError **error)
{
    bool half = dnn->bf16;
    int64_t hd = (int64_t) heads * d;
    size_t copies = half ? (size_t) (tq + 2 * (int64_t) tk) * hd : 0;
    /* a score costs 4 bytes, and its bf16 probability 2 more. The budget is the bytes of
     * fp32's largest score chunk, not of this problem's scores: a small one (SD's 8x8 level,
     * CLIP's 77 tokens) whose copies outweigh its scores then runs in one product instead of
     * one per query row (SD's U-Net made 92,000 tiny products a forward) */
    double budget = 4.0 * (double) ATTENTION_SCORES_MAX, all = (double) heads * tq * tk;
    double fit = (budget - 2.0 * (double) copies) / (half ? 6.0 : 4.0);
    size_t per_chunk = (size_t) MAX ((double) tk, MIN (all, fit));
    int group = (int) MIN ((size_t) heads, MAX ((size_t) 1, per_chunk / ((size_t) tq * tk)));
    int chunk = tq;
    if ((size_t) chunk * tk > per_chunk)
        chunk = MAX (1, (int) (per_chunk / tk));
    size_t n_scores = (size_t) group * chunk * tk;
    float *scores = scores_buffer (dnn, n_scores, error);
    if (!scores)
        return FALSE;
    const void *qa = q, *ka = k, *va = v;
    int64_t qr = q_row, kr = k_row, vr = v_row, hs = head_stride;
    uint16_t *probs = NULL;
    if (half) {
        size_t need = copies + n_scores;
        if (need > dnn->att_half_len) {
            g_free (dnn->att_half);
            dnn->att_half = ldm_try_alloc_n (need, sizeof (uint16_t), "bfloat16 attention",
                                             error);
            dnn->att_half_len = dnn->att_half ? need : 0;
            if (!dnn->att_half)
                return FALSE;
        }
        uint16_t *q16 = dnn->att_half, *k16 = q16 + (size_t) tq * hd,
                 *v16 = k16 + (size_t) tk * hd;
        probs = v16 + (size_t) tk * hd;
        if (!heads_to_half (dnn, q, q_row, head_stride, heads, d, tq, q16, error)
            || !heads_to_half (dnn, k, k_row, head_stride, heads, d, tk, k16, error)
            || !heads_to_half (dnn, v, v_row, head_stride, heads, d, tk, v16, error))
            return FALSE;
        qa = q16, ka = k16, va = v16;
        qr = kr = vr = hd;
        hs = d;
    }
    for (int h0 = 0; h0 < heads; h0 += group) {
        int g = MIN (group, heads - h0);
        for (int q0 = 0; q0 < tq; q0 += chunk) {
            int m = MIN (chunk, tq - q0);
            MatmulParams qk = { .shape = {
                .batch = g, .m = m, .n = tk, .k = d,
                .a_strides = { hs, qr, 1 },
                .b_strides = { hs, 1, kr },
                .c_strides = { (int64_t) m * tk, tk, 1 },
                .alpha = scale,
            }, .half_a = half, .half_b = half };
            MatmulParams pv = { .shape = {
                .batch = g, .m = m, .n = d, .k = tk,
                .a_strides = { (int64_t) m * tk, tk, 1 },
                .b_strides = { hs, vr, 1 },
                .c_strides = { d, out_row, 1 },
                .alpha = 1.0f,
            }, .half_a = half, .half_b = half };
            if (!matmul_typed (dnn, &qk, element (qa, half, h0 * hs + (int64_t) q0 * qr),
                               element (ka, half, h0 * hs), scores, error))
                return FALSE;
            if (causal)
                mask_future (scores, g, m, q0, tk);
            gboolean ok = half ? softmax_rows_to_half (dnn, scores, probs, (int64_t) g * m, tk,
                                                       error)
                               : dnn_softmax_rows (dnn, scores, (int64_t) g * m, tk, error);
            if (!ok
                || !matmul_typed (dnn, &pv, half ? (const void *) probs : scores,
                                  element (va, half, h0 * hs),
                                  out + (int64_t) h0 * d + (int64_t) q0 * out_row, error))
                return FALSE;
        }
    }
    return TRUE;
}

gboolean
dnn_attention (Dnn *dnn, const float *q, int64_t q_row, const float *k, int64_t k_row,
               const float *v, int64_t v_row, int64_t head_stride, int heads, int d, int tq,
               int tk, float *out, int64_t out_row, float scale, GError **error)
{
    return attention (dnn, q, q_row, k, k_row, v, v_row, head_stride, heads, d, tq, tk, out,
                      out_row, scale, false, error);
}

gboolean
dnn_attention_causal (Dnn *dnn, const float *q, int64_t q_row, const float *k, int64_t k_row,
                      const float *v, int64_t v_row, int64_t head_stride, int heads, int d,
                      int tokens, float *out, int64_t out_row, float scale, GError **error)
{
    return attention (dnn, q, q_row, k, k_row, v, v_row, head_stride, heads, d, tokens, tokens,
                      out, out_row, scale, true, error);
}
