/* clip_bpe.c: CLIP's byte-level BPE (see clip_bpe.h). Each word's UTF-8 bytes become CLIP's
 * byte symbols with `</w>` on the last one, and adjacent symbols are merged in the order of
 * the merges file until no listed pair is left.
 *
 * The vocabulary: from a diffusers vocab.json, or built as CLIP builds it from the merges: the
 * 256 byte symbols, the same with `</w>`, one token per merge (the first 48,894), then
 * <|startoftext|> and <|endoftext|> (49,408 with CLIP's own merges). */

#include "text/clip_bpe.h"

#include "alloc.h"
#include "text/clip_clean.h"

#include <gio/gio.h>
#include <json-glib/json-glib.h>
#include <string.h>

/* CLIP's vocabulary holds 49152 - 256 - 2 merges; later lines of the file are never used. */
#define CLIP_MERGES_USED    (49152 - 256 - 2)
#define MAX_FILE_BYTES      ((size_t) 64 << 20) /* merges.txt is 0.5 MB, vocab.json 0.9 MB */
#define MAX_MERGE_LINE      1024                /* CLIP's longest used line is 39 bytes */
#define MAX_VOCAB_ID        (1 << 20)
#define CACHE_MAX_WORD      64    /* bytes; longer words are not cached */
#define CACHE_MAX_ENTRIES   16384 /* then the cache starts over */

#define WORD_END            "</w>"

typedef struct {
    gint64  pair;   /* left id << 32 | right id: the hash key (g_int64_hash) */
    int32_t rank;   /* line order in the merges file: lower ranks merge first */
    int32_t merged; /* the id of the joined symbol */
} Merge;

typedef struct {
    uint32_t n;
    int32_t  ids[];
} CachedWord;

struct LdmTokenizer {
    char         *source;      /* the file(s) read, for messages */
    GStringChunk *strings;     /* every token string (one owner) */
    GHashTable   *ids;         /* token string -> id (GINT_TO_POINTER) */
    const char  **tokens;      /* id -> token string (in strings), NULL for unused ids */
    Merge        *merges;      /* one per usable merge line */
    int           n_merges;
    GHashTable   *pair_ranks;  /* &merges[i].pair -> &merges[i] */
    int32_t       byte_id[256], byte_end_id[256]; /* a byte's symbol, alone and with </w> */
    int32_t       start_id, end_id;
    int           vocab_size;
    GMutex        lock;        /* the cache */
    GHashTable   *cache;       /* word (UTF-8) -> CachedWord */
};

/* ------------------------------------------------------------ byte symbols */

/* CLIP's byte -> unicode mapping keeps the printable Latin-1 bytes ('!'..'~', U+00A1..U+00AC,
 * U+00AE..U+00FF) and moves the others, in byte order, to U+0100 onwards, so every symbol is a
 * visible character. */
static bool
byte_is_kept (int b)
{
    return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
}

static gunichar
byte_symbol (int b)
{
    if (byte_is_kept (b))
        return (gunichar) b;
    int moved = 0;
    for (int i = 0; i < b; i++)
        moved += !byte_is_kept (i);
    return 0x100 + (gunichar) moved;
}

/* The vocabulary lists the kept bytes first, then the moved ones (dict order of CLIP's table). */
static void
byte_vocab_order (int order[256])
{
    int n = 0;
    for (int b = 0; b < 256; b++)
        if (byte_is_kept (b))
            order[n++] = b;
    for (int b = 0; b < 256; b++)
        if (!byte_is_kept (b))
            order[n++] = b;
}

/* ------------------------------------------------------------------ files */

/* A short, escaped excerpt of untrusted text for an error message (g_free it). */
static char *
excerpt (const char *s, size_t len)
{
    size_t n = MIN (len, 40);
    g_autofree char *cut = g_strndup (s, n);
    g_autofree char *escaped = g_strescape (cut, NULL);
    return g_strdup_printf ("\"%s\"%s", escaped, n < len ? "..." : "");
}

/* The contents of PATH, gunzipped when it starts with gzip's magic; reading stops after
 * MAX_LINES newlines; more than MAX_FILE_BYTES is refused (a gzip bomb). */
static GBytes *
read_text_file (const char *path, size_t max_lines, GError **error)
{
    g_autoptr (GError) local = NULL;
    g_autoptr (GMappedFile) mapped = g_mapped_file_new (path, FALSE, &local);
    if (!mapped) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_IO, "cannot read %s: %s", path, local->message);
        return NULL;
    }
    const uint8_t *data = (const uint8_t *) g_mapped_file_get_contents (mapped);
    size_t size = g_mapped_file_get_length (mapped);
    if (size > MAX_FILE_BYTES) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_FORMAT,
                     "%s is %zu MB: too large for a tokenizer file (at most %zu MB)", path,
                     size >> 20, MAX_FILE_BYTES >> 20);
        return NULL;
    }
    bool gzip = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
    if (!gzip) {
        size_t lines = 0, keep = size;
        for (size_t i = 0; i < size; i++)
            if (data[i] == '\n' && ++lines == max_lines) {
                keep = i + 1;
                break;
            }
        return g_bytes_new (size ? data : (const uint8_t *) "", keep);
    }

    g_autoptr (GInputStream) raw = g_memory_input_stream_new_from_data (data, (gssize) size, NULL);
    g_autoptr (GZlibDecompressor) gunzip = g_zlib_decompressor_new (G_ZLIB_COMPRESSOR_FORMAT_GZIP);
    g_autoptr (GInputStream) in = g_converter_input_stream_new (raw, G_CONVERTER (gunzip));
    g_autoptr (GByteArray) out = g_byte_array_new ();
    size_t lines = 0;
    uint8_t chunk[65536];
    for (;;) {
        gssize got = g_input_stream_read (in, chunk, sizeof chunk, NULL, &local);
        if (got < 0) {
            g_set_error (error, LDM_ERROR, LDM_ERROR_FORMAT, "%s: damaged gzip data (%s)", path,
                         local->message);
            return NULL;
        }
        if (got == 0)
            break;
        size_t keep = (size_t) got;
        for (size_t i = 0; i < (size_t) got; i++)
            if (chunk[i] == '\n' && ++lines == max_lines) {
                keep = i + 1;
                break;
            }
        if (out->len + keep > MAX_FILE_BYTES) {
            g_set_error (error, LDM_ERROR, LDM_ERROR_FORMAT,
                         "%s unpacks to more than %zu MB: too large for a tokenizer file", path,
                         MAX_FILE_BYTES >> 20);
            return NULL;
        }
        g_byte_array_append (out, chunk, (guint) keep);
        if (lines == max_lines)
            break;
    }
    return g_byte_array_free_to_bytes (g_steal_pointer (&out));
}

/* --------------------------------------------------------------- loading */

static int32_t
token_id (const LdmTokenizer *t, const char *token)
{
    void *value;
    if (!g_hash_table_lookup_extended (t->ids, token, NULL, &value))
        return -1;
    return GPOINTER_TO_INT (value);
}

/* Adds TOKEN with ID; a token listed again takes its later id, as a Python dict would. */
static void
add_token (LdmTokenizer *t, const char *token, int32_t id)
{
    const char *stored = g_string_chunk_insert_const (t->strings, token);
    g_hash_table_insert (t->ids, (gpointer) stored, GINT_TO_POINTER (id));
    t->vocab_size = MAX (t->vocab_size, id + 1);
}

/* The merges of a merges file: its lines after the "#version" header, "LEFT RIGHT" each,
 * the first CLIP_MERGES_USED. LEFT and RIGHT point into t->strings. */
static gboolean
parse_merges (LdmTokenizer *t, const char *path, GBytes *bytes, GPtrArray *lefts,
              GPtrArray *rights, GError **error)
{
    size_t size;
    const char *data = g_bytes_get_data (bytes, &size);
    const char *end = data + size;
    int line_no = 0;
    for (const char *line = data; line < end && lefts->len < CLIP_MERGES_USED;) {
        const char *nl = memchr (line, '\n', (size_t) (end - line));
        const char *line_end = nl ? nl : end;
        const char *next = nl ? nl + 1 : end;
        line_no++;
        size_t len = (size_t) (line_end - line);
        if (len && line[len - 1] == '\r')
            len--;
        /* The first line is a version header in OpenAI's file and in diffusers' merges.txt. */
        if (line_no == 1 && g_strstr_len (line, (gssize) len, "#version")) {
            line = next;
            continue;
        }
        if (len == 0) {
            /* Blank lines may end a short file, nothing else. */
            for (const char *p = next; p < end; p++)
                if (!g_ascii_isspace (*p)) {
                    g_set_error (error, LDM_ERROR, LDM_ERROR_FORMAT,
                                 "%s line %d is empty: not a merges file", path, line_no);
                    return FALSE;
                }
            break;
        }
        if (len > MAX_MERGE_LINE || !g_utf8_validate (line, (gssize) len, NULL)) {
            g_autofree char *shown = excerpt (line, len);
            g_set_error (error, LDM_ERROR, LDM_ERROR_FORMAT,
                         "%s line %d is %s: not a merge (%s)", path, line_no,
                         len > MAX_MERGE_LINE ? "too long" : "not UTF-8", shown);
            return FALSE;
        }
        const char *space = NULL;
        bool ok = true;
        for (size_t i = 0; i < len && ok; i++) {
            unsigned char c = (unsigned char) line[i];
            if (c == ' ' && !space)
                space = line + i;
            else if (c <= ' ' || c == 0x7f)
                ok = false; /* a second space, a tab, a control character */
        }
        if (!ok || !space || space == line || space == line + len - 1) {
            g_autofree char *shown = excerpt (line, len);
            g_set_error (error, LDM_ERROR, LDM_ERROR_FORMAT,
                         "%s line %d is not a merge (two symbols and one space): %s", path,
                         line_no, shown);
            return FALSE;
        }
        g_autofree char *left = g_strndup (line, (size_t) (space - line));
        g_autofree char *right = g_strndup (space + 1, (size_t) (line + len - space - 1));
        g_ptr_array_add (lefts, g_string_chunk_insert_const (t->strings, left));
        g_ptr_array_add (rights, g_string_chunk_insert_const (t->strings, right));
        line = next;
    }
    if (lefts->len == 0) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_FORMAT, "%s holds no merges: not a merges file",
                     path);
        return FALSE;
    }
    return TRUE;
}

/* CLIP's own vocabulary from its merges. */
static void
build_vocab (LdmTokenizer *t, GPtrArray *lefts, GPtrArray *rights)
{
    int order[256];
    byte_vocab_order (order);
    int32_t id = 0;
    char sym[16];
    for (int end = 0; end < 2; end++)
        for (int i = 0; i < 256; i++) {
            int n = g_unichar_to_utf8 (byte_symbol (order[i]), sym);
            sym[n] = '\0';
            if (end)
                g_strlcat (sym, WORD_END, sizeof sym);
            add_token (t, sym, id++);
        }
    for (guint i = 0; i < lefts->len; i++) {
        g_autofree char *joined = g_strconcat (lefts->pdata[i], rights->pdata[i], NULL);
        add_token (t, joined, id++);
    }
    add_token (t, CLIP_START_TOKEN, id++);
    add_token (t, CLIP_END_TOKEN, id++);
}

/* A diffusers vocab.json: {"token": id, ...}. */
static gboolean
read_vocab_json (LdmTokenizer *t, const char *path, GError **error)
{
    g_autoptr (GBytes) bytes = read_text_file (path, SIZE_MAX, error);
    if (!bytes)
        return FALSE;
    size_t size;
    const char *data = g_bytes_get_data (bytes, &size);
    g_autoptr (JsonParser) parser = json_parser_new ();
    g_autoptr (GError) local = NULL;
    if (!json_parser_load_from_data (parser, data, (gssize) size, &local)) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_FORMAT, "%s is not JSON: %s", path,
                     local->message);
        return FALSE;
    }
    JsonNode *root = json_parser_get_root (parser);
    if (!root || !JSON_NODE_HOLDS_OBJECT (root)) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_FORMAT,
                     "%s is not a vocabulary (a JSON object of token ids)", path);
        return FALSE;
    }
    JsonObject *object = json_node_get_object (root);
    g_autofree uint8_t *seen = ldm_try_alloc0_n (MAX_VOCAB_ID / 8, 1, "the vocabulary", error);
    if (!seen)
        return FALSE;
    g_autoptr (GList) members = json_object_get_members (object);
    for (GList *m = members; m; m = m->next) {
        const char *token = m->data;
        JsonNode *node = json_object_get_member (object, token);
        gint64 id = -1;
        if (JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_INT64)
            id = json_node_get_int (node);
        bool duplicate = id >= 0 && id < MAX_VOCAB_ID && (seen[id / 8] & (1u << (id % 8)));
        if (id < 0 || id >= MAX_VOCAB_ID || duplicate) {
            g_autofree char *shown = excerpt (token, strlen (token));
            if (duplicate)
                g_set_error (error, LDM_ERROR, LDM_ERROR_FORMAT,
                             "%s gives the id %" G_GINT64_FORMAT " to two tokens (one is %s)",
                             path, id, shown);
            else
                g_set_error (error, LDM_ERROR, LDM_ERROR_FORMAT,
                             "%s: the entry %s is not a token id (an integer from 0 to %d)",
                             path, shown, MAX_VOCAB_ID - 1);
            return FALSE;
        }
        seen[id / 8] |= (uint8_t) (1u << (id % 8));
        add_token (t, token, (int32_t) id);
    }
    return TRUE;
}

/* Byte, special and merge ids; every symbol BPE can make must have an id. */
static gboolean
link_vocab (LdmTokenizer *t, GPtrArray *lefts, GPtrArray *rights, GError **error)
{
    char sym[16];
    for (int b = 0; b < 256; b++)
        for (int end = 0; end < 2; end++) {
            int n = g_unichar_to_utf8 (byte_symbol (b), sym);
            sym[n] = '\0';
            if (end)
                g_strlcat (sym, WORD_END, sizeof sym);
            int32_t id = token_id (t, sym);
            if (id < 0) {
                g_set_error (error, LDM_ERROR, LDM_ERROR_FORMAT,
                             "%s has no id for the symbol of byte 0x%02x%s", t->source, b,
                             end ? " at a word's end" : "");
                return FALSE;
            }
            (end ? t->byte_end_id : t->byte_id)[b] = id;
        }
    t->start_id = token_id (t, CLIP_START_TOKEN);
    t->end_id = token_id (t, CLIP_END_TOKEN);
    if (t->start_id < 0 || t->end_id < 0) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_FORMAT, "%s has no id for %s", t->source,
                     t->start_id < 0 ? CLIP_START_TOKEN : CLIP_END_TOKEN);
        return FALSE;
    }

    t->tokens = ldm_try_alloc0_n ((size_t) t->vocab_size, sizeof *t->tokens, "the vocabulary",
                                  error);
    if (!t->tokens)
        return FALSE;
    GHashTableIter iter;
    void *token, *id;
    g_hash_table_iter_init (&iter, t->ids);
    while (g_hash_table_iter_next (&iter, &token, &id))
        t->tokens[GPOINTER_TO_INT (id)] = token;

    t->merges = ldm_try_alloc_n (lefts->len, sizeof *t->merges, "the merges", error);
    if (!t->merges)
        return FALSE;
    t->pair_ranks = g_hash_table_new (g_int64_hash, g_int64_equal);
    for (guint i = 0; i < lefts->len; i++) {
        int32_t left = token_id (t, lefts->pdata[i]), right = token_id (t, rights->pdata[i]);
        if (left < 0 || right < 0)
            continue; /* a symbol no merge makes: this pair never occurs */
        g_autofree char *joined = g_strconcat (lefts->pdata[i], rights->pdata[i], NULL);
        int32_t merged = token_id (t, joined);
        if (merged < 0) {
            g_autofree char *shown = excerpt (joined, strlen (joined));
            g_set_error (error, LDM_ERROR, LDM_ERROR_FORMAT,
                         "%s has no id for %s, which merge %u makes", t->source, shown, i + 1);
            return FALSE;
        }
        Merge *m = &t->merges[t->n_merges++];
        *m = (Merge) { .pair = ((gint64) left << 32) | right, .rank = (int32_t) i,
                       .merged = merged };
        /* A pair listed twice keeps its later rank, as CLIP's dict does. */
        g_hash_table_replace (t->pair_ranks, &m->pair, m);
    }
    return TRUE;
}

LdmTokenizer *
clip_bpe_load (const char *merges_path, const char *vocab_path, GError **error)
{
    g_autoptr (LdmTokenizer) t = g_new0 (LdmTokenizer, 1);
    t->source = vocab_path ? g_strdup_printf ("%s with %s", merges_path, vocab_path)
                           : g_strdup (merges_path);
    t->strings = g_string_chunk_new (1 << 16);
    t->ids = g_hash_table_new (g_str_hash, g_str_equal);
    t->cache = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
    g_mutex_init (&t->lock);

    /* +1: the header line */
    g_autoptr (GBytes) bytes = read_text_file (merges_path, CLIP_MERGES_USED + 1, error);
    if (!bytes)
        return NULL;
    g_autoptr (GPtrArray) lefts = g_ptr_array_new ();
    g_autoptr (GPtrArray) rights = g_ptr_array_new ();
    if (!parse_merges (t, merges_path, bytes, lefts, rights, error))
        return NULL;
    if (vocab_path) {
        if (!read_vocab_json (t, vocab_path, error))
            return NULL;
    } else {
        build_vocab (t, lefts, rights);
    }
    if (!link_vocab (t, lefts, rights, error))
        return NULL;
    return g_steal_pointer (&t);
}

void
ldm_tokenizer_free (LdmTokenizer *t)
{
    if (!t)
        return;
    g_clear_pointer (&t->cache, g_hash_table_destroy);
    g_clear_pointer (&t->pair_ranks, g_hash_table_destroy);
    g_clear_pointer (&t->ids, g_hash_table_destroy);
    g_clear_pointer (&t->strings, g_string_chunk_free);
    g_mutex_clear (&t->lock);
    g_free (t->merges);
    g_free (t->tokens);
    g_free (t->source);
    g_free (t);
}

const char *
ldm_tokenizer_source (const LdmTokenizer *t)
{
    return t->source;
}

int
ldm_tokenizer_vocab_size (const LdmTokenizer *t)
{
    return t->vocab_size;
}

int32_t
ldm_tokenizer_start_id (const LdmTokenizer *t)
{
    return t->start_id;
}

int32_t
ldm_tokenizer_end_id (const LdmTokenizer *t)
{
    return t->end_id;
}

char *
ldm_tokenizer_token_text (const LdmTokenizer *t, int32_t id)
{
    if (id < 0 || id >= t->vocab_size || !t->tokens[id])
        return NULL;
    const char *token = t->tokens[id];
    size_t len = strlen (token);
    bool word_end = len >= strlen (WORD_END)
                    && strcmp (token + len - strlen (WORD_END), WORD_END) == 0;
    const char *end = token + len - (word_end ? strlen (WORD_END) : 0);
    /* byte symbols back to bytes (the special tokens are ASCII: themselves) */
    GString *out = g_string_sized_new (len);
    for (const char *p = token; p < end; p = g_utf8_next_char (p)) {
        gunichar c = g_utf8_get_char (p);
        int b = c < 0x100 && byte_is_kept ((int) c) ? (int) c : -1;
        for (int i = 0, moved = 0; c >= 0x100 && i < 256 && b < 0; i++)
            if (!byte_is_kept (i) && 0x100 + (gunichar) moved++ == c)
                b = i;
        if (b < 0) /* a vocab.json token that is not byte symbols: as it is */
            g_string_append_unichar (out, c);
        else
            g_string_append_c (out, (char) b);
    }
    if (word_end)
        g_string_append (out, WORD_END);
    return g_string_free (out, FALSE);
}

/* --------------------------------------------------------------------- BPE */

typedef struct {
    int32_t rank, left;   /* the heap's order: rank, then position */
    int32_t left_id, right_id;
    int32_t merged;
} Candidate;

static bool
candidate_before (const Candidate *a, const Candidate *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void
heap_push (Candidate *heap, size_t *n, Candidate c)
{
    size_t i = (*n)++;
    while (i > 0 && candidate_before (&c, &heap[(i - 1) / 2])) {
        heap[i] = heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    heap[i] = c;
}

static Candidate
heap_pop (Candidate *heap, size_t *n)
{
    Candidate top = heap[0], last = heap[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= *n)
            break;
        if (child + 1 < *n && candidate_before (&heap[child + 1], &heap[child]))
            child++;
        if (!candidate_before (&heap[child], &last))
            break;
        heap[i] = heap[child];
        i = child;
    }
    if (*n)
        heap[i] = last;
    return top;
}

/* Symbols left (id, at index LEFT) and right: pushes their pair when the merges list it. */
static void
push_pair (const LdmTokenizer *t, Candidate *heap, size_t *n_heap, int32_t left,
           int32_t left_id, int32_t right_id)
{
    gint64 key = ((gint64) left_id << 32) | right_id;
    const Merge *m = g_hash_table_lookup (t->pair_ranks, &key);
    if (m)
        heap_push (heap, n_heap, (Candidate) { .rank = m->rank, .left = left, .left_id = left_id,
                                               .right_id = right_id, .merged = m->merged });
}

/* The BPE ids of one word (LEN bytes) into OUT; returns how many, or -1 (no memory).
 * CLIP merges, again and again, every occurrence (left to right, not overlapping) of the
 * listed pair with the lowest rank; a heap of candidate pairs does the same in n log n: the
 * candidates of one rank are taken together (a merge can make a pair of lower rank, which
 * must wait for the next round), stale ones skipped. */
static int
bpe_word (const LdmTokenizer *t, const uint8_t *word, size_t len, int32_t *out, GError **error)
{
    /* per symbol: id, next, prev (index, -1 none); candidates: n - 1 first + 2 per merge */
    g_autofree int32_t *sym = ldm_try_alloc_n (len, 3 * sizeof *sym, "a word of the prompt",
                                               error);
    g_autofree Candidate *heap = ldm_try_alloc_n (3 * len, sizeof *heap, "a word of the prompt",
                                                  error);
    g_autofree Candidate *round = ldm_try_alloc_n (3 * len, sizeof *round,
                                                   "a word of the prompt", error);
    if (!sym || !heap || !round)
        return -1;
    int32_t *id = sym, *next = sym + len, *prev = sym + 2 * len;
    for (size_t i = 0; i < len; i++) {
        id[i] = i + 1 < len ? t->byte_id[word[i]] : t->byte_end_id[word[i]];
        next[i] = i + 1 < len ? (int32_t) i + 1 : -1;
        prev[i] = (int32_t) i - 1;
    }
    size_t n_heap = 0;
    for (size_t i = 0; i + 1 < len; i++)
        push_pair (t, heap, &n_heap, (int32_t) i, id[i], id[i + 1]);
    while (n_heap) {
        size_t n_round = 0;
        int32_t rank = heap[0].rank;
        while (n_heap && heap[0].rank == rank)
            round[n_round++] = heap_pop (heap, &n_heap);
        for (size_t k = 0; k < n_round; k++) {
            const Candidate *c = &round[k];
            int32_t i = c->left, j = next[i];
            /* Stale: this symbol was merged into its left, grew, or its right one did. */
            if (id[i] != c->left_id || j < 0 || id[j] != c->right_id)
                continue;
            id[i] = c->merged;
            id[j] = -1;
            next[i] = next[j];
            if (next[j] >= 0)
                prev[next[j]] = i;
            if (prev[i] >= 0)
                push_pair (t, heap, &n_heap, prev[i], id[prev[i]], id[i]);
            if (next[i] >= 0)
                push_pair (t, heap, &n_heap, i, id[i], id[next[i]]);
        }
    }
    int n = 0;
    for (int32_t i = 0; i >= 0; i = next[i])
        out[n++] = id[i];
    return n;
}

int
clip_bpe_encode_word (LdmTokenizer *t, const char *word, size_t len, int32_t *out, GError **error)
{
    /* The special tokens, written out in the text, are themselves (CLIP's cache says so). */
    if (len == strlen (CLIP_START_TOKEN) && memcmp (word, CLIP_START_TOKEN, len) == 0) {
        out[0] = t->start_id;
        return 1;
    }
    if (len == strlen (CLIP_END_TOKEN) && memcmp (word, CLIP_END_TOKEN, len) == 0) {
        out[0] = t->end_id;
        return 1;
    }
    bool cacheable = len <= CACHE_MAX_WORD;
    g_autofree char *key = cacheable ? g_strndup (word, len) : NULL;
    if (cacheable) {
        g_mutex_lock (&t->lock);
        const CachedWord *hit = g_hash_table_lookup (t->cache, key);
        if (hit)
            memcpy (out, hit->ids, hit->n * sizeof *out);
        int n = hit ? (int) hit->n : -1;
        g_mutex_unlock (&t->lock);
        if (n >= 0)
            return n;
    }
    int n = bpe_word (t, (const uint8_t *) word, len, out, error);
    if (n > 0 && cacheable) {
        CachedWord *entry = g_malloc (sizeof *entry + (size_t) n * sizeof *out);
        entry->n = (uint32_t) n;
        memcpy (entry->ids, out, (size_t) n * sizeof *out);
        g_mutex_lock (&t->lock);
        if (g_hash_table_size (t->cache) >= CACHE_MAX_ENTRIES)
            g_hash_table_remove_all (t->cache);
        g_hash_table_replace (t->cache, g_steal_pointer (&key), entry);
        g_mutex_unlock (&t->lock);
    }
    return n;
}
