/* clip_bpe.h (private to core/text): CLIP's vocabulary and byte-level BPE, the model of the
 * tokenizer (LdmTokenizer, whose accessors are in ldm.h). */
#pragma once

#include "ldm.h"

/* Reads a merges file (OpenAI's .txt.gz or diffusers' merges.txt) and, with VOCAB_PATH, a
 * diffusers vocab.json; without it the vocabulary is built as CLIP builds it. Damaged or
 * hostile files: LDM_ERROR_FORMAT (LDM_ERROR_IO when unreadable). */
LdmTokenizer *clip_bpe_load (const char *merges_path, const char *vocab_path, GError **error);

/* The ids of one word (LEN bytes of cleaned text, as clip_word_length cut it) into OUT (room
 * for LEN); their count, or -1 (no memory). Threads may share the tokenizer. */
int clip_bpe_encode_word (LdmTokenizer *tokenizer, const char *word, size_t len, int32_t *out,
                          GError **error);
