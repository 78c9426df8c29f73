/* prompt.c: text prompts to cross-attention contexts (see prompt.h). */
#include "run/prompt.h"

#include "alloc.h"
#include "nn/clip_text.h"

#include <string.h>

/* A prompt of at most 64 chunks (4,800 tokens): beyond that, a mistake rather than a prompt
 * (and 64 x 77 x 768 floats = 15 MB of context per prompt for SD). */
#define MAX_CHUNKS 64

struct PromptEncoder {
    LdmTokenizer *tokenizer;
    LdmClipText  *clip;
    int           width; /* = the U-Net's context_dim */
};

PromptEncoder *
prompt_encoder_new (Dnn *dnn, const char *model_path, int context_dim, GError **error)
{
    /* The model may have been freed since the engine was made: the file is mapped again
     * (cheap; only the encoder's weights are read). */
    g_autoptr (LdmTensorFile) file = ldm_tensor_file_open (model_path, error);
    if (!file)
        return NULL;
    if (!ldm_clip_text_present (file)) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "%s has no text encoder (" LDM_CLIP_TEXT_PREFIX "*), so it cannot read "
                     "a prompt: give the text context yourself", model_path);
        return NULL;
    }
    PromptEncoder *pe = g_new0 (PromptEncoder, 1);
    if (!(pe->tokenizer = ldm_tokenizer_new (NULL, model_path, error))
        || !(pe->clip = ldm_clip_text_new (dnn, file, 0, error))) {
        prompt_encoder_free (pe);
        return NULL;
    }
    pe->width = ldm_clip_text_width (pe->clip);
    if (pe->width != context_dim) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_MODEL,
                     "%s: the text encoder gives %d channels a token, the U-Net's "
                     "cross-attention takes %d", model_path, pe->width, context_dim);
        prompt_encoder_free (pe);
        return NULL;
    }
    if (ldm_tokenizer_vocab_size (pe->tokenizer) > ldm_clip_text_config (pe->clip)->vocab) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_MODEL,
                     "%s: the tokenizer (%s) has %d ids, the text encoder only %d",
                     model_path, ldm_tokenizer_source (pe->tokenizer),
                     ldm_tokenizer_vocab_size (pe->tokenizer),
                     ldm_clip_text_config (pe->clip)->vocab);
        prompt_encoder_free (pe);
        return NULL;
    }
    return pe;
}

void
prompt_encoder_free (PromptEncoder *pe)
{
    if (!pe)
        return;
    ldm_tokenizer_free (pe->tokenizer);
    ldm_clip_text_free (pe->clip);
    g_free (pe);
}

/* TEXT's rows of 77 ids, padded to `chunks` rows with empty-prompt rows. */
static int32_t *
padded_rows (PromptEncoder *pe, const int32_t *rows, size_t n_rows, size_t chunks,
             GError **error)
{
    int32_t *out = ldm_try_alloc_n (chunks * LDM_CLIP_TOKENS, sizeof (int32_t), "token ids",
                                    error);
    if (!out)
        return NULL;
    memcpy (out, rows, n_rows * LDM_CLIP_TOKENS * sizeof (int32_t));
    for (size_t r = n_rows; r < chunks; r++) {
        int32_t *row = out + r * LDM_CLIP_TOKENS;
        row[0] = ldm_tokenizer_start_id (pe->tokenizer);
        for (int i = 1; i < LDM_CLIP_TOKENS; i++)
            row[i] = ldm_tokenizer_end_id (pe->tokenizer);
    }
    return out;
}

static float *
encode (PromptEncoder *pe, const int32_t *ids, size_t chunks, GError **error)
{
    float *out = ldm_try_alloc_n (chunks * LDM_CLIP_TOKENS * (size_t) pe->width, sizeof (float),
                                  "the text context", error);
    if (out && !ldm_clip_text_forward (pe->clip, ids, (int) chunks, out, error))
        g_clear_pointer (&out, g_free);
    return out;
}

gboolean
prompt_encoder_contexts (PromptEncoder *pe, const char *prompt, const char *negative,
                         float **context, float **uncond, int *tokens, GError **error)
{
    size_t n_pos = 0, n_neg = 0;
    g_autofree int32_t *pos = ldm_tokenizer_encode_rows (pe->tokenizer, prompt ? prompt : "",
                                                         false, &n_pos, error);
    if (!pos)
        return FALSE;
    g_autofree int32_t *neg = NULL;
    if (uncond && !(neg = ldm_tokenizer_encode_rows (pe->tokenizer, negative ? negative : "",
                                                     false, &n_neg, error)))
        return FALSE;
    size_t chunks = MAX (n_pos, n_neg);
    if (chunks > MAX_CHUNKS) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "the %s is %zu chunks of %d tokens long; at most %d chunks (%d tokens) "
                     "are read", n_pos >= n_neg ? "prompt" : "negative prompt", chunks,
                     LDM_CLIP_CHUNK_TOKENS, MAX_CHUNKS, MAX_CHUNKS * LDM_CLIP_CHUNK_TOKENS);
        return FALSE;
    }
    g_autofree int32_t *pos_ids = padded_rows (pe, pos, n_pos, chunks, error);
    g_autofree int32_t *neg_ids = neg ? padded_rows (pe, neg, n_neg, chunks, error) : NULL;
    if (!pos_ids || (neg && !neg_ids))
        return FALSE;
    g_autofree float *c = encode (pe, pos_ids, chunks, error);
    g_autofree float *u = c && neg_ids ? encode (pe, neg_ids, chunks, error) : NULL;
    if (!c || (neg_ids && !u))
        return FALSE;
    *context = g_steal_pointer (&c);
    if (uncond)
        *uncond = g_steal_pointer (&u);
    *tokens = (int) chunks * LDM_CLIP_TOKENS;
    return TRUE;
}
