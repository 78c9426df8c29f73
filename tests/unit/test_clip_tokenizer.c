/* CLIP's tokenizer (core/text/clip_tokenizer.c). Truth: ../shared/fixtures/clip-text-tiny, whose
 * `promptNN.ids` OpenAI's own simple_tokenizer made from prompts.json (SD 1.x's 77-id rows),
 * read here straight from the safetensors bytes. Then the chunks of long prompts, the cleaning
 * against Python's documented behaviour, and damaged, hostile or odd inputs: a GError each,
 * never a crash. */
#include "text/clip_tokenizer.h"
#include "testutil.h"

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <string.h>

static LdmTokenizer *
clip_tokenizer (void)
{
    g_autofree char *merges = shared_path ("tokenizers", "clip", "bpe_simple_vocab_16e6.txt.gz",
                                           NULL);
    if (!merges)
        return NULL;
    g_autoptr (GError) error = NULL;
    LdmTokenizer *t = ldm_tokenizer_new (merges, NULL, &error);
    g_assert_no_error (error);
    g_assert_nonnull (t);
    return t;
}

/* Tensor NAME of a safetensors file (its own reading: 8-byte header size, JSON, data), I32. */
static int32_t *
read_i32 (GBytes *file, const char *name, size_t *numel)
{
    size_t size;
    const uint8_t *data = g_bytes_get_data (file, &size);
    g_assert_cmpuint (size, >=, 8);
    uint64_t header = 0;
    for (int i = 7; i >= 0; i--)
        header = header << 8 | data[i];
    g_assert_cmpuint (header, <=, size - 8);
    g_autoptr (JsonParser) parser = json_parser_new ();
    g_assert_true (json_parser_load_from_data (parser, (const char *) data + 8, (gssize) header,
                                               NULL));
    JsonObject *tensors = json_node_get_object (json_parser_get_root (parser));
    g_assert_true (json_object_has_member (tensors, name));
    JsonObject *info = json_object_get_object_member (tensors, name);
    g_assert_cmpstr (json_object_get_string_member (info, "dtype"), ==, "I32");
    JsonArray *offsets = json_object_get_array_member (info, "data_offsets");
    size_t begin = (size_t) json_array_get_int_element (offsets, 0);
    size_t end = (size_t) json_array_get_int_element (offsets, 1);
    g_assert_cmpuint (end, <=, size - 8 - header);
    *numel = (end - begin) / 4;
    int32_t *out = g_new (int32_t, *numel);
    memcpy (out, data + 8 + header + begin, end - begin); /* little-endian, as x86 */
    return out;
}

static void
test_fixture_prompts (void)
{
    g_autoptr (LdmTokenizer) t = clip_tokenizer ();
    g_autofree char *prompts_path = shared_path ("fixtures", "clip-text-tiny", "prompts.json",
                                                 NULL);
    g_autofree char *ref_path = shared_path ("fixtures", "clip-text-tiny",
                                             "reference.safetensors", NULL);
    if (!t || !prompts_path || !ref_path)
        return;
    g_assert_cmpint (ldm_tokenizer_vocab_size (t), ==, 49408);
    g_assert_cmpint (ldm_tokenizer_start_id (t), ==, 49406);
    g_assert_cmpint (ldm_tokenizer_end_id (t), ==, 49407);

    g_autoptr (JsonParser) parser = json_parser_new ();
    g_assert_true (json_parser_load_from_file (parser, prompts_path, NULL));
    JsonArray *prompts = json_node_get_array (json_parser_get_root (parser));
    g_autoptr (GMappedFile) mapped = g_mapped_file_new (ref_path, FALSE, NULL);
    g_autoptr (GBytes) ref = g_mapped_file_get_bytes (mapped);
    guint n = json_array_get_length (prompts);
    g_assert_cmpuint (n, >=, 6);
    bool saw_long = false;
    for (guint i = 0; i < n; i++) {
        const char *prompt = json_array_get_string_element (prompts, i);
        g_autofree char *name = g_strdup_printf ("prompt%02u.ids", i);
        size_t numel;
        g_autofree int32_t *want = read_i32 (ref, name, &numel);
        g_assert_cmpuint (numel, ==, LDM_CLIP_CONTEXT_LENGTH);
        g_autoptr (GError) error = NULL;
        size_t rows;
        g_autofree int32_t *got = ldm_tokenizer_encode_rows (t, prompt, true, &rows, &error);
        g_assert_no_error (error);
        g_assert_cmpuint (rows, ==, 1);
        for (size_t k = 0; k < LDM_CLIP_CONTEXT_LENGTH; k++)
            if (got[k] != want[k])
                g_error ("prompt %u \"%s\": id %zu is %d, OpenAI's tokenizer %d", i, prompt, k,
                         got[k], want[k]);
        size_t n_ids;
        g_autofree int32_t *all = ldm_tokenizer_encode (t, prompt, &n_ids, &error);
        g_assert_no_error (error);
        saw_long |= n_ids > LDM_CLIP_CHUNK_TOKENS;
        g_test_message ("prompt %u: %zu tokens, ids equal", i, n_ids);
    }
    g_assert_true (saw_long); /* the fixture's last prompt is truncated there */

    /* batch.ids = ["", prompt 1] */
    size_t numel;
    g_autofree int32_t *batch = read_i32 (ref, "batch.ids", &numel);
    g_assert_cmpuint (numel, ==, 2 * LDM_CLIP_CONTEXT_LENGTH);
    for (int b = 0; b < 2; b++) {
        size_t rows;
        g_autofree int32_t *got = ldm_tokenizer_encode_rows (
            t, b ? json_array_get_string_element (prompts, 1) : "", true, &rows, NULL);
        g_assert_cmpmem (got, LDM_CLIP_CONTEXT_LENGTH * 4, batch + b * LDM_CLIP_CONTEXT_LENGTH,
                         LDM_CLIP_CONTEXT_LENGTH * 4);
    }
}

/* The installed/source copy (data/tokenizers/clip) is the same tokenizer. */
static void
test_builtin (void)
{
    g_autoptr (GError) error = NULL;
    g_autofree char *path = ldm_tokenizer_builtin_find (NULL, &error);
    g_assert_no_error (error);
    g_assert_true (g_str_has_suffix (path, LDM_BUILTIN_TOKENIZER));
    g_autoptr (LdmTokenizer) builtin = ldm_tokenizer_new (NULL, NULL, &error);
    g_assert_no_error (error);
    g_autoptr (LdmTokenizer) t = clip_tokenizer ();
    if (!t)
        return;
    const char *text = "A red brick wall, ivy; Overcast light!";
    size_t n1, n2;
    g_autofree int32_t *a = ldm_tokenizer_encode (builtin, text, &n1, &error);
    g_autofree int32_t *b = ldm_tokenizer_encode (t, text, &n2, &error);
    g_assert_cmpmem (a, n1 * 4, b, n2 * 4);

    /* $GIMP_LDM_TOKENIZER_DIR is the only place looked at when set */
    g_setenv ("GIMP_LDM_TOKENIZER_DIR", "/nonexistent-ldm-dir", TRUE);
    g_autofree char *none = ldm_tokenizer_builtin_find (NULL, &error);
    g_unsetenv ("GIMP_LDM_TOKENIZER_DIR");
    g_assert_null (none);
    g_assert_error (error, LDM_ERROR, LDM_ERROR_IO);
    g_assert_nonnull (strstr (error->message, "/nonexistent-ldm-dir"));
}

/* Long prompts: ceil(n / 75) rows, at least one; each row start, 75 ids in order, end, padding. */
static void
test_chunks (void)
{
    g_autoptr (LdmTokenizer) t = clip_tokenizer ();
    if (!t)
        return;
    const int32_t start = 49406, end = 49407, a_word = 320; /* "a</w>": 256 + 'a' - '!' */
    const size_t counts[] = { 0, 1, 74, 75, 76, 150, 151, 400 };
    for (size_t c = 0; c < G_N_ELEMENTS (counts); c++) {
        size_t n = counts[c];
        GString *text = g_string_new (NULL);
        for (size_t i = 0; i < n; i++) /* "a a b a ..." : every third word "b" (id 321) */
            g_string_append (text, i % 3 == 2 ? "b " : "a ");
        g_autoptr (GError) error = NULL;
        size_t n_ids, rows, sd_rows;
        g_autofree int32_t *ids = ldm_tokenizer_encode (t, text->str, &n_ids, &error);
        g_autofree int32_t *chunks = ldm_tokenizer_encode_rows (t, text->str, false, &rows, &error);
        g_autofree int32_t *sd = ldm_tokenizer_encode_rows (t, text->str, true, &sd_rows, &error);
        g_string_free (text, TRUE);
        g_assert_no_error (error);
        g_assert_cmpuint (n_ids, ==, n);
        for (size_t i = 0; i < n; i++)
            g_assert_cmpint (ids[i], ==, i % 3 == 2 ? a_word + 1 : a_word);
        g_assert_cmpuint (rows, ==, n ? (n + 74) / 75 : 1);
        g_assert_cmpuint (sd_rows, ==, 1);
        g_assert_cmpmem (sd, 77 * 4, chunks, 77 * 4); /* the first chunk is SD's row */
        for (size_t r = 0; r < rows; r++) {
            const int32_t *row = chunks + r * 77;
            size_t k = MIN (75, n - r * 75);
            g_assert_cmpint (row[0], ==, start);
            g_assert_cmpmem (row + 1, k * 4, ids + r * 75, k * 4);
            for (size_t i = 1 + k; i < 77; i++)
                g_assert_cmpint (row[i], ==, end);
        }
    }
}

/* What CLIP's cleaning gives, as Python's html.unescape, str.strip/lower and NFC define it. */
static void
test_cleaning (void)
{
    static const char *const cases[][2] = {
        { "", "" },
        { "  A  \t\n B \r\n", "a b" },
        { "\xc2\xa0x\xe3\x80\x80y\xe2\x80\xa8", "x y" },     /* NBSP, ideographic space, LS */
        { "e\xcc\x81t\xc3\xa9", "\xc3\xa9t\xc3\xa9" },        /* NFC: e + acute -> é */
        { "&amp; &lt;3 &gt; &quot;x&quot; &apos;", "& <3 > \"x\" '" },
        { "&amp;amp; &amp;lt;", "& <" },                      /* unescaped twice */
        { "&#65;&#x42;&#X63;&#0067", "abcc" },
        { "&ampx &ampx; &notit; &copy2024", "&x &x; \xc2\xacit; \xc2\xa9" "2024" },
        { "&#0; &#128; &#x9f; &#1; &#x110000; &#xd800;",
          "\xef\xbf\xbd \xe2\x82\xac \xc3\xbf \xef\xbf\xbd \xef\xbf\xbd" },
        { "&bogus; & &# &#x; &;", "&bogus; & &# &#x; &;" },
        { "&Eacute;&EACUTE;&eacute", "\xc3\xa9&eacute;\xc3\xa9" },
        { "&hellip;&mdash;&euro;&hearts;", "\xe2\x80\xa6\xe2\x80\x94\xe2\x82\xac\xe2\x99\xa5" },
        { "\xc4\xb0stanbul", "i\xcc\x87stanbul" },           /* İ -> i + combining dot */
        { "\xce\xa3\xce\x91\xce\xa3 \xce\xa3", "\xcf\x83\xce\xb1\xcf\x82 \xcf\x83" }, /* ΣΑΣ Σ */
        { "\xc7\x85" "ABC", "\xc7\x86" "abc" },              /* titlecase ǅ */
    };
    for (size_t i = 0; i < G_N_ELEMENTS (cases); i++) {
        g_autoptr (GError) error = NULL;
        g_autofree char *got = ldm_tokenizer_clean_text (cases[i][0], &error);
        g_assert_no_error (error);
        if (strcmp (got, cases[i][1]) != 0) {
            g_autofree char *in = g_strescape (cases[i][0], NULL);
            g_autofree char *g = g_strescape (got, NULL);
            g_autofree char *w = g_strescape (cases[i][1], NULL);
            g_error ("clean(\"%s\") = \"%s\", want \"%s\"", in, g, w);
        }
    }
}

/* The word pattern: contractions, one digit at a time, runs of other characters, the special
 * tokens written out (ids of CLIP's vocabulary: a byte symbol's id is its place among the
 * kept bytes, '!' = 0; with </w> 256 more). */
static void
test_words (void)
{
    g_autoptr (LdmTokenizer) t = clip_tokenizer ();
    if (!t)
        return;
    g_autoptr (GError) error = NULL;
    size_t n1, n2;
    /* "1234" is four words: one id per digit, each with </w> (digits '1'..'4' = 16..19) */
    g_autofree int32_t *digits = ldm_tokenizer_encode (t, "1234", &n1, &error);
    g_assert_cmpuint (n1, ==, 4);
    for (int i = 0; i < 4; i++)
        g_assert_cmpint (digits[i], ==, 256 + 16 + i);
    g_autofree int32_t *special = ldm_tokenizer_encode (t, "<|endoftext|> a<|startoftext|>", &n2,
                                                        &error);
    g_assert_no_error (error);
    g_assert_cmpuint (n2, ==, 3);
    g_assert_cmpint (special[0], ==, 49407);
    g_assert_cmpint (special[1], ==, 320);
    g_assert_cmpint (special[2], ==, 49406);
    /* upper case is cleaned away first: the same ids */
    size_t n3, n4;
    g_autofree int32_t *upper = ldm_tokenizer_encode (t, "DON'T <|ENDOFTEXT|>", &n3, &error);
    g_autofree int32_t *lower = ldm_tokenizer_encode (t, "don't <|endoftext|>", &n4, &error);
    g_assert_cmpmem (upper, n3 * 4, lower, n4 * 4);
    g_assert_cmpint (lower[n4 - 1], ==, 49407);
    /* ids back to text */
    const struct { int32_t id; const char *text; } tokens[] = {
        { 320, "a</w>" }, { 0, "!" }, { 49406, "<|startoftext|>" }, { 49407, "<|endoftext|>" },
        { 220, " " }, /* the byte 0x20: moved to U+0120, 188 + 32 in the vocabulary */
    };
    for (size_t i = 0; i < G_N_ELEMENTS (tokens); i++) {
        g_autofree char *text = ldm_tokenizer_token_text (t, tokens[i].id);
        g_assert_cmpstr (text, ==, tokens[i].text);
    }
    g_assert_null (ldm_tokenizer_token_text (t, -1));
    g_assert_null (ldm_tokenizer_token_text (t, 49408));
}

/* Odd text: invalid UTF-8 is refused with its offset; any valid text gives ids in range, also
 * a 200,000-letter word (n log n merging) and long runs of marks, emoji and controls. */
static void
test_odd_text (void)
{
    g_autoptr (LdmTokenizer) t = clip_tokenizer ();
    if (!t)
        return;
    static const char *const invalid[] = { "ok \xff", "\xc3", "\xc0\xaf", "\xed\xa0\x80",
                                           "a\xf4\x90\x80\x80", "\xe2\x82" };
    for (size_t i = 0; i < G_N_ELEMENTS (invalid); i++) {
        g_autoptr (GError) error = NULL;
        size_t n;
        g_autofree int32_t *ids = ldm_tokenizer_encode (t, invalid[i], &n, &error);
        g_assert_null (ids);
        g_assert_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT);
        g_assert_nonnull (strstr (error->message, "UTF-8"));
    }
    g_autofree char *huge = g_malloc (((size_t) 1 << 20) + 2);
    memset (huge, 'x', ((size_t) 1 << 20) + 1);
    huge[((size_t) 1 << 20) + 1] = '\0';
    g_autoptr (GError) too_long = NULL;
    size_t n_huge;
    g_assert_null (ldm_tokenizer_encode (t, huge, &n_huge, &too_long));
    g_assert_error (too_long, LDM_ERROR, LDM_ERROR_ARGUMENT);

    GString *word = g_string_new (NULL);
    GRand *rand = g_rand_new_with_seed (14);
    for (int i = 0; i < 200000; i++)
        g_string_append_c (word, (char) ('a' + g_rand_int_range (rand, 0, 26)));
    g_string_append (word, " \xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x9a\x80 q\xcc\x83\xcc\x83\xcc"
                           "\x83 \x01\x02\x1c\x7f \xd8\xb3\xd9\x84\xd8\xa7\xd9\x85 \xe4\xb8\xad"
                           "\xe6\x96\x87 \xef\xbf\xbd&#xfffd;");
    for (int round = 0; round < 200; round++) { /* random code points, all planes */
        gunichar c = (gunichar) g_rand_int_range (rand, 1, 0x110000);
        if (g_unichar_validate (c))
            g_string_append_unichar (word, c);
    }
    g_autoptr (GError) error = NULL;
    size_t n;
    g_autofree int32_t *ids = ldm_tokenizer_encode (t, word->str, &n, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (n, >, 200000 / 8);
    /* the tokens' bytes, in order, are the cleaned text's (without its spaces) */
    GString *joined = g_string_new (NULL);
    for (size_t i = 0; i < n; i++) {
        g_assert_true (ids[i] >= 0 && ids[i] < ldm_tokenizer_vocab_size (t));
        g_autofree char *token = ldm_tokenizer_token_text (t, ids[i]);
        g_assert_nonnull (token);
        size_t len = strlen (token);
        if (g_str_has_suffix (token, "</w>"))
            len -= 4;
        g_string_append_len (joined, token, (gssize) len);
    }
    g_autofree char *clean = ldm_tokenizer_clean_text (word->str, &error);
    GString *no_spaces = g_string_new (NULL);
    for (const char *p = clean; *p; p++)
        if (*p != ' ')
            g_string_append_c (no_spaces, *p);
    g_assert_cmpuint (joined->len, ==, no_spaces->len);
    g_assert_true (memcmp (joined->str, no_spaces->str, joined->len) == 0);
    g_string_free (joined, TRUE);
    g_string_free (no_spaces, TRUE);
    g_string_free (word, TRUE);
    g_rand_free (rand);
}

/* ------------------------------------------------------------ bad files */

static char *tmp_dir;

static char *
write_file (const char *name, const void *data, size_t len)
{
    char *path = g_build_filename (tmp_dir, name, NULL);
    g_autofree char *folder = g_path_get_dirname (path);
    g_mkdir_with_parents (folder, 0700);
    g_assert_true (g_file_set_contents (path, data, (gssize) len, NULL));
    return path;
}

static GBytes *
gzip (const void *data, size_t len)
{
    g_autoptr (GZlibCompressor) zip = g_zlib_compressor_new (G_ZLIB_COMPRESSOR_FORMAT_GZIP, 1);
    g_autoptr (GInputStream) raw = g_memory_input_stream_new_from_data (data, (gssize) len, NULL);
    g_autoptr (GInputStream) in = g_converter_input_stream_new (raw, G_CONVERTER (zip));
    g_autoptr (GOutputStream) out = g_memory_output_stream_new_resizable ();
    g_assert_cmpint (g_output_stream_splice (out, in, G_OUTPUT_STREAM_SPLICE_CLOSE_TARGET, NULL,
                                             NULL), >=, 0);
    return g_memory_output_stream_steal_as_bytes (G_MEMORY_OUTPUT_STREAM (out));
}

/* Loads PATH as a tokenizer: must fail with CODE (and MESSAGE_PART when given). */
static void
assert_refused (const char *path, int code, const char *message_part)
{
    g_autoptr (GError) error = NULL;
    g_autoptr (LdmTokenizer) t = ldm_tokenizer_new (path, NULL, &error);
    g_assert_null (t);
    g_assert_error (error, LDM_ERROR, code);
    if (message_part && !strstr (error->message, message_part))
        g_error ("\"%s\" does not say \"%s\"", error->message, message_part);
    g_test_message ("%s", error->message);
}

/* A small, valid diffusers tokenizer: merges "a b", "ab c", vocab with them. */
static const char small_merges[] = "#version: 0.2\na b\nab c</w>\n";

static GString *
small_vocab (const char *skip)
{
    GString *json = g_string_new ("{");
    int id = 0;
    for (int end = 0; end < 2; end++)
        for (int b = 0; b < 256; b++) {
            bool kept = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
            int moved = 0;
            for (int i = 0; i < b; i++)
                moved += !((i >= 0x21 && i <= 0x7e) || (i >= 0xa1 && i <= 0xac) || i >= 0xae);
            char sym[16];
            sym[g_unichar_to_utf8 (kept ? (gunichar) b : 0x100 + (gunichar) moved, sym)] = 0;
            g_autofree char *token = g_strconcat (sym, end ? "</w>" : "", NULL);
            if (skip && strcmp (token, skip) == 0)
                continue;
            g_string_append_c (json, '"');
            for (const char *c = token; *c; c++) /* JSON escapes only these two here */
                g_string_append_printf (json, "%s%c", *c == '"' || *c == '\\' ? "\\" : "", *c);
            g_string_append_printf (json, "\": %d, ", id++);
        }
    const char *rest[] = { "ab", "abc</w>", "<|startoftext|>", "<|endoftext|>" };
    for (size_t i = 0; i < G_N_ELEMENTS (rest); i++)
        if (!skip || strcmp (rest[i], skip) != 0)
            g_string_append_printf (json, "%s\"%s\": %d", i ? ", " : "", rest[i], id++);
    g_string_append (json, "}");
    return json;
}

static void
test_diffusers_folder (void)
{
    g_autofree char *merges = write_file ("model/tokenizer/merges.txt", small_merges,
                                          strlen (small_merges));
    GString *vocab = small_vocab (NULL);
    g_autofree char *vocab_path = write_file ("model/tokenizer/vocab.json", vocab->str, vocab->len);
    g_string_free (vocab, TRUE);
    g_autofree char *model = write_file ("model/model.safetensors", "x", 1);

    g_autofree char *beside = ldm_tokenizer_find_beside_model (model);
    g_assert_true (beside && g_str_has_suffix (beside, "model/tokenizer"));
    g_autoptr (GError) error = NULL;
    g_autoptr (LdmTokenizer) t = ldm_tokenizer_new (NULL, model, &error);
    g_assert_no_error (error);
    g_assert_nonnull (strstr (ldm_tokenizer_source (t), "vocab.json"));
    g_assert_cmpint (ldm_tokenizer_vocab_size (t), ==, 516);
    g_assert_cmpint (ldm_tokenizer_start_id (t), ==, 514);
    size_t n;
    g_autofree int32_t *ids = ldm_tokenizer_encode (t, "abc ab", &n, &error);
    g_assert_no_error (error);
    /* "abc</w>" (id 513); "ab" is "a", "b</w>" (no merge "a b</w>"): this vocab.json numbers
     * the byte symbols in byte order, unlike CLIP's, so 97 and 256 + 98 */
    g_assert_cmpuint (n, ==, 3);
    g_assert_cmpint (ids[0], ==, 513);
    g_assert_cmpint (ids[1], ==, 97);
    g_assert_cmpint (ids[2], ==, 256 + 98);

    /* the folder itself, and the model's folder, name the same tokenizer */
    g_autofree char *folder = g_path_get_dirname (model);
    g_autoptr (LdmTokenizer) t2 = ldm_tokenizer_new (folder, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpint (ldm_tokenizer_vocab_size (t2), ==, 516);
    /* a model without tokenizer/ beside it gets the built-in one */
    g_autofree char *lone = write_file ("lone/model.ckpt", "x", 1);
    g_assert_null (ldm_tokenizer_find_beside_model (lone));
}

static void
test_bad_files (void)
{
    assert_refused ("/nonexistent/merges.txt", LDM_ERROR_IO, "does not exist");
    g_autofree char *empty_dir = g_build_filename (tmp_dir, "empty", NULL);
    g_mkdir_with_parents (empty_dir, 0700);
    assert_refused (empty_dir, LDM_ERROR_IO, "holds no tokenizer");

    struct { const char *name, *text, *says; } bad[] = {
        { "empty.txt", "", "no merges" },
        { "header.txt", "#version: 0.2\n", "no merges" },
        { "tab.txt", "#version: 0.2\na\tb\n", "line 2" },
        { "nospace.txt", "#version: 0.2\nab\n", "not a merge" },
        { "twospaces.txt", "#version: 0.2\na b c\n", "not a merge" },
        { "lead.txt", "#version: 0.2\n b\n", "not a merge" },
        { "blank.txt", "#version: 0.2\na b\n\nc d\n", "empty" },
        { "latin1.txt", "#version: 0.2\n\xe9 b\n", "UTF-8" },
        { "nul.txt", "#version: 0.2\na\0b c\n", "not a merge" },
    };
    for (size_t i = 0; i < G_N_ELEMENTS (bad); i++) {
        size_t len = strcmp (bad[i].name, "nul.txt") == 0 ? 20 : strlen (bad[i].text);
        g_autofree char *path = write_file (bad[i].name, bad[i].text, len);
        assert_refused (path, LDM_ERROR_FORMAT, bad[i].says);
    }
    char long_line[4000];
    memset (long_line, 'x', sizeof long_line);
    memcpy (long_line + 2000, " y\n", 3);
    g_autofree char *long_path = write_file ("long.txt", long_line, sizeof long_line);
    assert_refused (long_path, LDM_ERROR_FORMAT, "too long");

    /* a gzip bomb: 80 MB of newline-free zeros in 80 kB */
    g_autofree char *zeros = g_malloc0 (80 << 20);
    g_autoptr (GBytes) bomb = gzip (zeros, 80 << 20);
    g_autofree char *bomb_path = write_file ("bomb.txt.gz", g_bytes_get_data (bomb, NULL),
                                             g_bytes_get_size (bomb));
    assert_refused (bomb_path, LDM_ERROR_FORMAT, "more than");

    /* CLIP's own file, cut: damaged gzip data; or only its first merges (a valid, small one) */
    g_autofree char *real = shared_path ("tokenizers", "clip", "bpe_simple_vocab_16e6.txt.gz",
                                         NULL);
    if (real) {
        g_autofree char *gz = NULL;
        size_t gz_len;
        g_assert_true (g_file_get_contents (real, &gz, &gz_len, NULL));
        g_autofree char *cut = write_file ("cut.txt.gz", gz, gz_len / 20);
        assert_refused (cut, LDM_ERROR_FORMAT, "damaged gzip");
        g_autofree char *garbage = g_memdup2 (gz, gz_len);
        for (size_t i = 100; i < gz_len; i += 997)
            garbage[i] ^= 0x5a;
        g_autofree char *flipped = write_file ("flipped.txt.gz", garbage, gz_len);
        assert_refused (flipped, LDM_ERROR_FORMAT, NULL);
        const char few[] = "\"bpe_simple_vocab_16e6.txt#version: 0.2\ni n\nt h\nth e</w>\n";
        g_autofree char *few_path = write_file ("few.txt", few, strlen (few));
        g_autoptr (GError) error = NULL;
        g_autoptr (LdmTokenizer) t = ldm_tokenizer_new (few_path, NULL, &error);
        g_assert_no_error (error);
        g_assert_cmpint (ldm_tokenizer_vocab_size (t), ==, 512 + 3 + 2);
        size_t n;
        g_autofree int32_t *ids = ldm_tokenizer_encode (t, "the", &n, &error);
        g_assert_cmpuint (n, ==, 1);
        g_assert_cmpint (ids[0], ==, 514); /* "the</w>", the third merge */
    }

    /* vocab.json beside a merges.txt: each defect named */
    struct { const char *json, *says; } vocabs[] = {
        { "not json", "not JSON" },
        { "[1, 2]", "not a vocabulary" },
        { "{\"a\": \"1\"}", "not a token id" },
        { "{\"a\": -1}", "not a token id" },
        { "{\"a\": 1.5}", "not a token id" },
        { "{\"a\": 99999999999}", "not a token id" },
        { "{\"a\": 1, \"b\": 1}", "two tokens" },
        { "{\"a\": 1}", "no id for the symbol" },
    };
    for (size_t i = 0; i < G_N_ELEMENTS (vocabs); i++) {
        g_autofree char *dir = g_strdup_printf ("vocab%zu", i);
        g_autofree char *m = g_build_filename (dir, "merges.txt", NULL);
        g_autofree char *v = g_build_filename (dir, "vocab.json", NULL);
        g_autofree char *mp = write_file (m, small_merges, strlen (small_merges));
        g_autofree char *vp = write_file (v, vocabs[i].json, strlen (vocabs[i].json));
        assert_refused (mp, LDM_ERROR_FORMAT, vocabs[i].says);
    }
    const char *missing[][2] = { { "abc</w>", "which merge 2 makes" },
                                 { "<|endoftext|>", "no id for <|endoftext|>" },
                                 { "\xc4\x80", "byte 0x00" } };
    for (size_t i = 0; i < G_N_ELEMENTS (missing); i++) {
        GString *vocab = small_vocab (missing[i][0]);
        g_autofree char *m = g_strdup_printf ("missing%zu/merges.txt", i);
        g_autofree char *v = g_strdup_printf ("missing%zu/vocab.json", i);
        g_autofree char *mp = write_file (m, small_merges, strlen (small_merges));
        g_autofree char *vp = write_file (v, vocab->str, vocab->len);
        g_string_free (vocab, TRUE);
        assert_refused (mp, LDM_ERROR_FORMAT, missing[i][1]);
    }
}

/* Random damage to a small valid pair of files: loads or fails with a GError, and whatever
 * loads encodes text with ids below its vocabulary size. */
static void
test_fuzz_files (void)
{
    GRand *rand = g_rand_new_with_seed (1414);
    GString *vocab = small_vocab (NULL);
    for (int round = 0; round < 300; round++) {
        g_autofree char *m = g_strdup (small_merges);
        g_autofree char *v = g_strndup (vocab->str, vocab->len);
        char *victim = round % 2 ? v : m;
        size_t len = strlen (victim);
        int flips = g_rand_int_range (rand, 1, 4);
        for (int f = 0; f < flips; f++)
            victim[g_rand_int_range (rand, 0, (gint32) len)] = (char) g_rand_int_range (rand, 1, 256);
        size_t cut = round % 5 == 0 ? (size_t) g_rand_int_range (rand, 0, (gint32) len) : len;
        g_autofree char *mp = write_file ("fuzz/merges.txt", m, round % 2 ? strlen (m) : cut);
        g_autofree char *vp = write_file ("fuzz/vocab.json", v, round % 2 ? cut : strlen (v));
        g_autoptr (GError) error = NULL;
        g_autoptr (LdmTokenizer) t = ldm_tokenizer_new (mp, NULL, &error);
        if (!t) {
            g_assert_nonnull (error);
            g_assert_true (error->domain == LDM_ERROR);
            continue;
        }
        size_t n;
        g_autofree int32_t *ids = ldm_tokenizer_encode (t, "abc ab \xc3\xa9 <|endoftext|> 42!", &n,
                                                        &error);
        g_assert_no_error (error);
        for (size_t i = 0; i < n; i++)
            g_assert_true (ids[i] >= 0 && ids[i] < ldm_tokenizer_vocab_size (t));
    }
    g_string_free (vocab, TRUE);
    g_rand_free (rand);
}

int
main (int argc, char **argv)
{
    g_test_init (&argc, &argv, NULL);
    g_test_add_func ("/clip-tokenizer/fixture-prompts", test_fixture_prompts);
    g_test_add_func ("/clip-tokenizer/builtin", test_builtin);
    g_test_add_func ("/clip-tokenizer/chunks", test_chunks);
    g_test_add_func ("/clip-tokenizer/cleaning", test_cleaning);
    g_test_add_func ("/clip-tokenizer/words", test_words);
    g_test_add_func ("/clip-tokenizer/odd-text", test_odd_text);
    g_test_add_func ("/clip-tokenizer/diffusers-folder", test_diffusers_folder);
    g_test_add_func ("/clip-tokenizer/bad-files", test_bad_files);
    g_test_add_func ("/clip-tokenizer/fuzz-files", test_fuzz_files);
    return test_run_in_temp_dir ("ldm-tokenizer-XXXXXX", &tmp_dir);
}
