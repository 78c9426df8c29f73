/* clip_clean.h (private to core/text): what CLIP's tokenizer does to the text before BPE:
 * the cleaning (ldm_tokenizer_clean_text, in ldm.h) and the split into words. */
#pragma once

#include "ldm.h"

/* The special tokens, which the word pattern matches whole. */
#define CLIP_START_TOKEN "<|startoftext|>"
#define CLIP_END_TOKEN   "<|endoftext|>"

/* Python's html.unescape on UTF-8 text (numeric references as HTML5 maps them; the named
 * entities of HTML 4 plus &apos;, the legacy ones also without ';'). Newly allocated. */
char *ldm_clip_html_unescape (const char *text);

/* \s of CLIP's word pattern (Unicode White_Space): what separates words. */
bool clip_is_white_space (gunichar c);

/* The length in bytes of the word at P (cleaned text, not white space) as CLIP's pattern
 * splits: <|startoftext|> | <|endoftext|> | 's | 't | 're | 've | 'm | 'll | 'd | letters+ |
 * one number | other characters+; the first alternative wins. */
size_t clip_word_length (const char *p);
