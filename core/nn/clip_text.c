/* clip_text.c: the CLIP text transformer (SD 1.x's FrozenCLIPEmbedder). See clip_text.h.
 *
 * Activations are (batch * tokens) x width float32 matrices, one token a row; the linear
 * layers and LayerNorms run on oneDNN over all rows at once, the attention per prompt.
 */
#include "nn/clip_text.h"

#include "alloc.h"
#include "io/tensor_file.h"
#include "nn/layers.h"
#include "nn/weights.h"

#include <math.h>
#include <string.h>

#define LN_EPS 1e-5f /* CLIP's LayerNorms */

/* Bounds for shapes read from a file, so that a hostile file cannot ask for absurd sizes. */
#define MAX_VOCAB  (1 << 22)
#define MAX_WIDTH  (1 << 14)
#define MAX_LAYERS 256

typedef struct {
    Norm       norm1, norm2;  /* layer_norm1, layer_norm2: [width] */
    DnnLinear *qkv;           /* q_proj, k_proj, v_proj stacked: [3 width, width] */
    DnnLinear *out_proj;      /* [width, width] */
    DnnLinear *fc1;           /* [mlp, width] */
    DnnLinear *fc2;           /* [width, mlp] */
} ClipLayer;

struct LdmClipText {
    Dnn              *dnn;
    LdmClipTextConfig config;
    float            *token_embedding;    /* [vocab, width] */
    float            *position_embedding; /* [positions, width] */
    ClipLayer        *layers;             /* config.layers */
    Norm              final_norm;         /* final_layer_norm: [width] */
    char             *what;               /* "PATH (text encoder)", for messages */
};

/* Older transformers releases saved CLIPTextModel without the text_model level (webui
 * renames these keys on load); both spellings are read. */
static const char *const PREFIXES[] = { LDM_CLIP_TEXT_PREFIX, "cond_stage_model.transformer." };

typedef struct {
    const LdmTensorFile *file;
    const char          *prefix;
} Source;

static const LdmTensor *
source_lookup (const void *owner, const char *name)
{
    const Source *s = owner;
    g_autofree char *full = g_strconcat (s->prefix, name, NULL);
    return ldm_tensor_file_lookup (s->file, full);
}

static const char *
find_prefix (const LdmTensorFile *file)
{
    for (size_t i = 0; i < G_N_ELEMENTS (PREFIXES); i++) {
        g_autofree char *name = g_strconcat (PREFIXES[i], "embeddings.token_embedding.weight",
                                             NULL);
        if (ldm_tensor_file_lookup (file, name))
            return PREFIXES[i];
    }
    return NULL;
}

gboolean
ldm_clip_text_present (const LdmTensorFile *file)
{
    return file && find_prefix (file) != NULL;
}

/* The number of layers: one more than the largest N of any PREFIXencoder.layers.N.* tensor
 * (every layer below it must then be complete: its parameters are read one by one). */
static int
count_layers (const LdmTensorFile *file, const char *prefix, const char *what, GError **error)
{
    g_autofree char *layers_prefix = g_strconcat (prefix, "encoder.layers.", NULL);
    size_t length = strlen (layers_prefix);
    int64_t largest = -1;
    for (size_t i = 0; i < ldm_tensor_file_count (file); i++) {
        const char *name = ldm_tensor_file_at (file, i)->name;
        if (strncmp (name, layers_prefix, length) || !g_ascii_isdigit (name[length]))
            continue;
        char *end = NULL;
        guint64 n = g_ascii_strtoull (name + length, &end, 10);
        if (*end != '.' || n >= MAX_LAYERS) {
            g_set_error (error, LDM_ERROR, LDM_ERROR_MODEL,
                         "%s: tensor '%s' is not a layer of a text encoder (at most %d layers)",
                         what, name, MAX_LAYERS);
            return -1;
        }
        largest = MAX (largest, (int64_t) n);
    }
    if (largest < 0)
        g_set_error (error, LDM_ERROR, LDM_ERROR_MODEL,
                     "%s: the text encoder has no layers (%sN.*)", what, layers_prefix);
    return (int) (largest + 1);
}

/* The config from the shapes of the embeddings and of layer 0's fc1 (every other shape is
 * then checked against it as the parameters are read). */
static gboolean
infer_config (const Weights *w, const LdmTensorFile *file, const char *prefix, int heads,
              LdmClipTextConfig *c, GError **error)
{
    const LdmTensor *tok = w->lookup (w->owner, "embeddings.token_embedding.weight");
    const LdmTensor *pos = w->lookup (w->owner, "embeddings.position_embedding.weight");
    if (!tok || tok->ndim != 2 || tok->shape[0] < 1 || tok->shape[0] > MAX_VOCAB
        || tok->shape[1] < 1 || tok->shape[1] > MAX_WIDTH) {
        g_autofree char *shape = tok ? tensor_shape_text (tok->ndim, tok->shape) : NULL;
        g_set_error (error, LDM_ERROR, LDM_ERROR_MODEL,
                     "%s: embeddings.token_embedding.weight has shape %s, not [vocabulary "
                     "(1 .. %d), width (1 .. %d)]",
                     w->what, shape ? shape : "(none)", MAX_VOCAB, MAX_WIDTH);
        return FALSE;
    }
    c->vocab = (int) tok->shape[0];
    c->width = (int) tok->shape[1];
    if (!pos || pos->ndim != 2 || pos->shape[0] < LDM_CLIP_TOKENS || pos->shape[0] > MAX_VOCAB
        || pos->shape[1] != c->width) {
        g_autofree char *shape = pos ? tensor_shape_text (pos->ndim, pos->shape) : NULL;
        g_set_error (error, LDM_ERROR, LDM_ERROR_MODEL,
                     "%s: embeddings.position_embedding.weight has shape %s, not [positions "
                     "(at least %d), %d] (the token embedding's width)",
                     w->what, shape ? shape : "(none)", LDM_CLIP_TOKENS, c->width);
        return FALSE;
    }
    c->positions = (int) pos->shape[0];
    if ((c->layers = count_layers (file, prefix, w->what, error)) < 1)
        return FALSE;
    const LdmTensor *fc1 = w->lookup (w->owner, "encoder.layers.0.mlp.fc1.weight");
    if (!fc1 || fc1->ndim != 2 || fc1->shape[0] < 1 || fc1->shape[0] > 16 * MAX_WIDTH
        || fc1->shape[1] != c->width) {
        g_autofree char *shape = fc1 ? tensor_shape_text (fc1->ndim, fc1->shape) : NULL;
        g_set_error (error, LDM_ERROR, LDM_ERROR_MODEL,
                     "%s: encoder.layers.0.mlp.fc1.weight has shape %s, not [MLP width, %d]",
                     w->what, shape ? shape : "(none)", c->width);
        return FALSE;
    }
    c->mlp = (int) fc1->shape[0];
    int head_dim = c->width >= 512 ? 64 : 16;
    c->heads = heads > 0 ? heads : c->width / head_dim;
    if (c->heads < 1 || c->width % c->heads || (heads <= 0 && c->width % head_dim)) {
        if (heads > 0)
            g_set_error (error, LDM_ERROR, LDM_ERROR_MODEL,
                         "%s: %d attention heads do not divide the text encoder's width %d",
                         w->what, heads, c->width);
        else
            g_set_error (error, LDM_ERROR, LDM_ERROR_MODEL,
                         "%s: the text encoder's width %d is not a multiple of %d, the "
                         "channels per head of CLIP text encoders %s 512 wide; its number of "
                         "heads is unknown",
                         w->what, c->width, head_dim, head_dim == 64 ? "at least" : "under");
        return FALSE;
    }
    return TRUE;
}

/* q_proj, k_proj and v_proj of one layer as one [3 width, width] linear layer. */
static DnnLinear *
qkv_load (Dnn *dnn, const Weights *w, int layer, int width, GError **error)
{
    size_t wn = (size_t) width * width;
    g_autofree float *weight = ldm_try_alloc_n (3 * wn, sizeof (float), "the text encoder", error);
    g_autofree float *bias = ldm_try_alloc_n (3 * (size_t) width, sizeof (float),
                                              "the text encoder", error);
    if (!weight || !bias)
        return NULL;
    static const char *const parts[3] = { "q_proj", "k_proj", "v_proj" };
    int64_t wshape[2] = { width, width }, bshape[1] = { width };
    for (int i = 0; i < 3; i++) {
        g_autofree float *pw = weights_readf (w, error, 2, wshape,
                                              "encoder.layers.%d.self_attn.%s.weight", layer,
                                              parts[i]);
        if (!pw)
            return NULL;
        g_autofree float *pb = weights_readf (w, error, 1, bshape,
                                              "encoder.layers.%d.self_attn.%s.bias", layer,
                                              parts[i]);
        if (!pb)
            return NULL;
        memcpy (weight + i * wn, pw, wn * sizeof (float));
        memcpy (bias + (size_t) i * width, pb, (size_t) width * sizeof (float));
    }
    return dnn_linear_new (dnn, g_steal_pointer (&weight), g_steal_pointer (&bias), 3 * width,
                           width, error);
}

static gboolean
layer_load (Dnn *dnn, ClipLayer *l, const Weights *w, int i, const LdmClipTextConfig *c,
            GError **error)
{
    char name[96];
    g_snprintf (name, sizeof name, "encoder.layers.%d.layer_norm1", i);
    if (!norm_load (&l->norm1, w, name, c->width, LN_EPS, error))
        return FALSE;
    g_snprintf (name, sizeof name, "encoder.layers.%d.layer_norm2", i);
    if (!norm_load (&l->norm2, w, name, c->width, LN_EPS, error))
        return FALSE;
    if (!(l->qkv = qkv_load (dnn, w, i, c->width, error)))
        return FALSE;
    g_snprintf (name, sizeof name, "encoder.layers.%d.self_attn.out_proj", i);
    if (!(l->out_proj = linear_load (dnn, w, name, c->width, c->width, 2, true, error)))
        return FALSE;
    g_snprintf (name, sizeof name, "encoder.layers.%d.mlp.fc1", i);
    if (!(l->fc1 = linear_load (dnn, w, name, c->mlp, c->width, 2, true, error)))
        return FALSE;
    g_snprintf (name, sizeof name, "encoder.layers.%d.mlp.fc2", i);
    return (l->fc2 = linear_load (dnn, w, name, c->width, c->mlp, 2, true, error)) != NULL;
}

LdmClipText *
ldm_clip_text_new (Dnn *dnn, const LdmTensorFile *file, int heads, GError **error)
{
    const char *path = ldm_tensor_file_path (file);
    const char *prefix = find_prefix (file);
    if (!prefix) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_MODEL,
                     "%s has no text encoder (" LDM_CLIP_TEXT_PREFIX "*)", path);
        return NULL;
    }
    LdmClipText *clip = g_new0 (LdmClipText, 1);
    clip->dnn = dnn;
    clip->what = g_strdup_printf ("%s (text encoder)", path);
    Source source = { file, prefix };
    Weights w = { source_lookup, &source, clip->what };
    LdmClipTextConfig *c = &clip->config;
    if (!infer_config (&w, file, prefix, heads, c, error))
        goto fail;
    int64_t tok_shape[2] = { c->vocab, c->width }, pos_shape[2] = { c->positions, c->width };
    if (!(clip->token_embedding = weights_read (&w, "embeddings.token_embedding.weight", 2,
                                                tok_shape, error))
        || !(clip->position_embedding = weights_read (&w, "embeddings.position_embedding.weight",
                                                      2, pos_shape, error)))
        goto fail;
    clip->layers = ldm_try_alloc0_n (c->layers, sizeof (ClipLayer), "the text encoder", error);
    if (!clip->layers)
        goto fail;
    for (int i = 0; i < c->layers; i++)
        if (!layer_load (dnn, &clip->layers[i], &w, i, c, error))
            goto fail;
    if (!norm_load (&clip->final_norm, &w, "final_layer_norm", c->width, LN_EPS, error))
        goto fail;
    return clip;
fail:
    ldm_clip_text_free (clip);
    return NULL;
}

void
ldm_clip_text_free (LdmClipText *clip)
{
    if (!clip)
        return;
    for (int i = 0; clip->layers && i < clip->config.layers; i++) {
        ClipLayer *l = &clip->layers[i];
        norm_clear (&l->norm1);
        norm_clear (&l->norm2);
        dnn_linear_free (l->qkv);
        dnn_linear_free (l->out_proj);
        dnn_linear_free (l->fc1);
        dnn_linear_free (l->fc2);
    }
    g_free (clip->layers);
    norm_clear (&clip->final_norm);
    g_free (clip->token_embedding);
    g_free (clip->position_embedding);
    g_free (clip->what);
    g_free (clip);
}

const LdmClipTextConfig *
ldm_clip_text_config (const LdmClipText *clip)
{
    return &clip->config;
}

int
ldm_clip_text_width (const LdmClipText *clip)
{
    return clip->config.width;
}

/* One pre-norm layer on x (rows x width), in place. */
static gboolean
layer_forward (LdmClipText *clip, const ClipLayer *l, float *x, int batch, float *normed,
               float *qkv, float *mixed, float *hidden, GError **error)
{
    const LdmClipTextConfig *c = &clip->config;
    int rows = batch * LDM_CLIP_TOKENS, width = c->width, d = width / c->heads;
    float scale = 1.0f / sqrtf ((float) d);
    if (!dnn_layer_norm (clip->dnn, x, normed, rows, width, l->norm1.gamma, l->norm1.beta,
                         l->norm1.eps, error)
        || !dnn_linear_forward (l->qkv, normed, qkv, rows, false, error))
        return FALSE;
    /* qkv rows are [q | k | v]; head h is columns [h d, (h + 1) d) of each */
    for (int b = 0; b < batch; b++) {
        const float *base = qkv + (size_t) b * LDM_CLIP_TOKENS * 3 * width;
        if (!dnn_attention_causal (clip->dnn, base, 3 * width, base + width, 3 * width,
                                   base + 2 * width, 3 * width, d, c->heads, d, LDM_CLIP_TOKENS,
                                   mixed + (size_t) b * LDM_CLIP_TOKENS * width, width, scale,
                                   error))
            return FALSE;
    }
    return dnn_linear_forward (l->out_proj, mixed, x, rows, true, error)
           && dnn_layer_norm (clip->dnn, x, normed, rows, width, l->norm2.gamma, l->norm2.beta,
                              l->norm2.eps, error)
           && dnn_linear_forward (l->fc1, normed, hidden, rows, false, error)
           && dnn_eltwise (clip->dnn, DNN_QUICK_GELU, hidden, hidden, (int64_t) rows * c->mlp,
                           error)
           && dnn_linear_forward (l->fc2, hidden, x, rows, true, error);
}

gboolean
ldm_clip_text_forward (LdmClipText *clip, const int32_t *ids, int batch, float *out,
                       GError **error)
{
    const LdmClipTextConfig *c = &clip->config;
    if (batch < 1 || batch > (1 << 16) || !ids || !out) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "the text encoder needs 1 .. 65536 prompts of token ids (got %d)", batch);
        return FALSE;
    }
    size_t rows = (size_t) batch * LDM_CLIP_TOKENS, width = (size_t) c->width;
    for (size_t i = 0; i < rows; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab) {
            g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                         "token id %d (prompt %zu, position %zu) is outside the text encoder's "
                         "vocabulary of %d",
                         ids[i], i / LDM_CLIP_TOKENS, i % LDM_CLIP_TOKENS, c->vocab);
            return FALSE;
        }
    size_t bytes_per_row = (5 * width + (size_t) c->mlp) * sizeof (float);
    g_autofree float *x = ldm_try_alloc_floats ((size_t) rows * width, NULL, NULL);
    g_autofree float *normed = ldm_try_alloc_floats ((size_t) rows * width, NULL, NULL);
    g_autofree float *qkv = ldm_try_alloc_floats ((size_t) rows * 3 * width, NULL, NULL);
    g_autofree float *mixed = ldm_try_alloc_floats ((size_t) rows * width, NULL, NULL);
    g_autofree float *hidden = ldm_try_alloc_floats ((size_t) rows * (size_t) c->mlp, NULL, NULL);
    if (!x || !normed || !qkv || !mixed || !hidden) {
        ldm_no_memory (error, "the text encoder", rows, bytes_per_row);
        return FALSE;
    }
    for (size_t r = 0; r < rows; r++) {
        const float *tok = clip->token_embedding + (size_t) ids[r] * width;
        const float *pos = clip->position_embedding + (r % LDM_CLIP_TOKENS) * width;
        for (size_t j = 0; j < width; j++)
            x[r * width + j] = tok[j] + pos[j];
    }
    for (int i = 0; i < c->layers; i++)
        if (!layer_forward (clip, &clip->layers[i], x, batch, normed, qkv, mixed, hidden, error))
            return FALSE;
    if (!dnn_layer_norm (clip->dnn, x, out, (int) rows, c->width, clip->final_norm.gamma,
                         clip->final_norm.beta, clip->final_norm.eps, error))
        return FALSE;
    size_t bad = 0;
    for (size_t i = 0; i < rows * width; i++)
        bad += !isfinite (out[i]);
    if (bad) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_MODEL,
                     "%s gave %zu non-finite values (NaN or infinity) of %zu: its weights are "
                     "damaged",
                     clip->what, bad, rows * width);
        return FALSE;
    }
    return TRUE;
}
