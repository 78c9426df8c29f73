/* prompt.h (internal): text prompts to the U-Net's cross-attention contexts, for the Stable
 * Diffusion kinds (pipeline.c, when the caller gives no context).
 *
 * A PromptEncoder holds CLIP's tokenizer and the checkpoint's text encoder, both read once:
 * the tokenizer from a diffusers tokenizer/ folder beside the model when there is one, else
 * the built-in merges (ldm_tokenizer_new); the encoder from the model file
 * (cond_stage_model.transformer.text_model.*, nn/clip_text.h).
 *
 * A prompt of n tokens is ceil(n / 75) chunks (at least one), each framed to 77 ids and
 * encoded on its own; their outputs concatenated are the context ((chunks x 77) x width), as
 * the AUTOMATIC1111 webui does. The negative prompt is encoded the same way, and the shorter
 * of the two is padded with chunks of the empty prompt (start, end, padding: CLIP("")) so
 * that the CFG batch [uncond, cond] has equal token counts (webui pads with CLIP("") too).
 */
#pragma once

#include "nn/dnn.h"

typedef struct PromptEncoder PromptEncoder;

/* Reads the tokenizer and the text encoder of MODEL_PATH; runs on `dnn` (borrowed: it must
 * outlive the encoder). A file without a text encoder is LDM_ERROR_ARGUMENT ("... has no
 * text encoder ...: give the context yourself"); an encoder whose width is not
 * `context_dim` (the U-Net's) is LDM_ERROR_MODEL. */
PromptEncoder *prompt_encoder_new  (Dnn *dnn, const char *model_path, int context_dim,
                                    GError **error);
void           prompt_encoder_free (PromptEncoder *pe);

/* The contexts of PROMPT and, when `uncond` is not NULL, of NEGATIVE (NULL or "" = the empty
 * prompt): *context and *uncond get (*tokens) x context_dim floats each (g_free them),
 * *tokens = 77 x chunks, the same for both. */
gboolean prompt_encoder_contexts (PromptEncoder *pe, const char *prompt, const char *negative,
                                  float **context, float **uncond, int *tokens,
                                  GError **error);
