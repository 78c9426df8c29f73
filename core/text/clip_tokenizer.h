/* clip_tokenizer.h (private to core/): the pieces of the CLIP tokenizer that unit tests check
 * on their own. The public API (LdmTokenizer, ldm_tokenizer_*) is in ldm.h. */
#pragma once

#include "ldm.h"

/* CLIP's text cleaning, as OpenAI's simple_tokenizer with ftfy replaced by NFC: NFC, HTML
 * entities unescaped twice, stripped, runs of white space to one space, lower case. The text
 * must be UTF-8 (else LDM_ERROR_ARGUMENT naming the byte offset). Newly allocated. */
char *ldm_clip_clean_text (const char *text, GError **error);

/* Python's html.unescape on UTF-8 text (numeric references as HTML5 maps them; the named
 * entities of HTML 4 plus &apos;, the legacy ones also without ';'). Newly allocated. */
char *ldm_clip_html_unescape (const char *text);

/* The 77-id rows of N_IDS BPE ids (see ldm_tokenizer_encode_rows). */
int32_t *ldm_tokenizer_rows_from_ids (const LdmTokenizer *tokenizer, const int32_t *ids,
                                      size_t n_ids, bool truncate, size_t *n_rows,
                                      GError **error);
