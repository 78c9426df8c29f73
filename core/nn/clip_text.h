/* clip_text.h (internal): the CLIP text transformer Stable Diffusion 1.x conditions on.
 *
 * clip_text.c owns the encoder's weights (linear layers on oneDNN, reordered once) and reads
 * them from a tensor file's `cond_stage_model.transformer.text_model.*` (Hugging Face
 * CLIPTextModel names, as SD 1.x checkpoints store them). Its size comes from the shapes:
 * vocabulary and width from the token embedding, layers from encoder.layers.N, the MLP width
 * from fc1. The `position_ids` buffer some files carry is not a weight and is never read.
 *
 * Forward (OpenAI's CLIP text tower; all positions are the U-Net's context):
 *   x = token_embedding[ids] + position_embedding
 *   per layer: x += out_proj(causal_attention(layer_norm1(x)))
 *              x += fc2(quick_gelu(fc1(layer_norm2(x))))      quick_gelu(a) = a sigmoid(1.702 a)
 *   out = final_layer_norm(x)                                 LayerNorm eps 1e-5 everywhere
 */
#pragma once

#include "nn/dnn.h"

/* Tokens per prompt: <|startoftext|>, at most 75 tokens, <|endoftext|>, padding. */
#define LDM_CLIP_TOKENS 77

/* Where the text encoder lives in an SD 1.x checkpoint. */
#define LDM_CLIP_TEXT_PREFIX "cond_stage_model.transformer.text_model."

typedef struct LdmClipText LdmClipText;

typedef struct {
    int vocab;     /* token_embedding rows (49408 for CLIP's BPE) */
    int width;     /* 768 for SD 1.x (ViT-L/14) */
    int positions; /* position_embedding rows (77); the first LDM_CLIP_TOKENS are used */
    int layers;
    int mlp;       /* fc1 outputs (4 x width) */
    int heads;     /* see ldm_clip_text_new */
} LdmClipTextConfig;

/* The text encoder of `file` (borrowed only during the call), run on `dnn` (borrowed: it must
 * outlive the encoder). `heads` > 0 is taken as given; 0 infers it, since the shapes do not
 * say it: CLIP's text towers have 64 channels per head (ViT-B 512/8, ViT-L 768/12, ViT-H
 * 1024/16, bigG 1280/20), so heads = width / 64 when width >= 512; narrower (test) encoders
 * use 16 channels per head (width 64: 4 heads), heads = width / 16. SD's configs give no
 * heads (FrozenCLIPEmbedder takes only the Hugging Face model name).
 * Errors (LDM_ERROR_MODEL): no text encoder in the file ("... has no text encoder
 * (cond_stage_model.transformer.text_model.*)"), a missing parameter or one of the wrong
 * shape (naming it and both shapes), a width the heads do not divide. */
LdmClipText *ldm_clip_text_new (Dnn *dnn, const LdmTensorFile *file, int heads,
                                GError **error);
void         ldm_clip_text_free (LdmClipText *clip);

const LdmClipTextConfig *ldm_clip_text_config (const LdmClipText *clip);
/* Channels of each output token (the U-Net's context_dim). */
int          ldm_clip_text_width  (const LdmClipText *clip);

/* Whether `file` holds a text encoder under LDM_CLIP_TEXT_PREFIX. */
gboolean     ldm_clip_text_present (const LdmTensorFile *file);

/* out (batch x LDM_CLIP_TOKENS x width floats) = the encoder's last hidden state for `batch`
 * prompts of LDM_CLIP_TOKENS token ids each (ids[b * LDM_CLIP_TOKENS + t]). An id outside the
 * vocabulary is LDM_ERROR_ARGUMENT; non-finite outputs (NaN weights) are LDM_ERROR_MODEL.
 * Each prompt is encoded on its own (a batch gives what its prompts give one by one), so the
 * chunks of a long prompt, run as one batch, come out as their concatenated context
 * ((chunks x 77) x width, as webui makes it); a CFG pair is the batch [negative, prompt]. */
gboolean     ldm_clip_text_forward (LdmClipText *clip, const int32_t *ids, int batch,
                                    float *out, GError **error);
