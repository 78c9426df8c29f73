/* clip_tokenizer.h (private to core/): the pieces of the CLIP tokenizer that unit tests check
 * on their own. The public API (LdmTokenizer, ldm_tokenizer_*) is in ldm.h. */
#pragma once

#include "ldm.h"

/* Python's html.unescape on UTF-8 text (numeric references as HTML5 maps them; the named
 * entities of HTML 4 plus &apos;, the legacy ones also without ';'). Newly allocated. */
char *ldm_clip_html_unescape (const char *text);

/* The 77-id rows of N_IDS BPE ids (see ldm_tokenizer_encode_rows). */
int32_t *ldm_tokenizer_rows_from_ids (const LdmTokenizer *tokenizer, const int32_t *ids,
                                      size_t n_ids, bool truncate, size_t *n_rows,
                                      GError **error);
