/* clip_tokenizer.h (private to core/): the pieces of the CLIP tokenizer that unit tests check
 * on their own (with clip_clean.h's ldm_clip_html_unescape). The public API (LdmTokenizer,
 * ldm_tokenizer_*) is in ldm.h. */
#pragma once

#include "ldm.h"
#include "text/clip_clean.h"

/* The 77-id rows of N_IDS BPE ids (see ldm_tokenizer_encode_rows). */
int32_t *ldm_tokenizer_rows_from_ids (const LdmTokenizer *tokenizer, const int32_t *ids,
                                      size_t n_ids, bool truncate, size_t *n_rows,
                                      GError **error);
