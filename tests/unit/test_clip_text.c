/* test_clip_text.c: the CLIP text transformer against OpenAI's CLIP code (clip-text-tiny) and
 * against the SD inpainting fixture's stored contexts (sd-inpaint-clip-tiny), from .safetensors
 * and .ckpt; files without a text encoder or with wrong shapes fail with an error. */
#include "nn/clip_text.h"
#include "testutil.h"

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

#define TOL 1e-4 /* max abs error / range, as the fixtures ask */

static Dnn *
test_dnn (void)
{
    g_autoptr (GError) error = NULL;
    Dnn *dnn = dnn_new (false, &error);
    g_assert_no_error (error);
    return dnn;
}

/* A reference I32 ids tensor (n x 77) as int32 (read through float32: ids < 2^24 are exact). */
static int32_t *
ref_ids (LdmTensorFile *ref, const char *name, int *batch)
{
    const LdmTensor *t = ldm_tensor_file_lookup (ref, name);
    g_assert_nonnull (t);
    g_assert_cmpint (t->dtype, ==, LDM_DTYPE_I32);
    g_assert_cmpint (t->ndim, ==, 2);
    g_assert_cmpint (t->shape[1], ==, LDM_CLIP_TOKENS);
    size_t n = 0;
    g_autofree float *f = ref_read (ref, name, &n);
    int32_t *ids = g_new (int32_t, n);
    for (size_t i = 0; i < n; i++)
        ids[i] = (int32_t) f[i];
    *batch = (int) t->shape[0];
    return ids;
}

/* Runs `ids` (batch x 77) and compares with the reference tensor `want_name`. */
static void
check_forward (LdmClipText *clip, const int32_t *ids, int batch, LdmTensorFile *ref,
               const char *want_name, const char *what)
{
    g_autoptr (GError) error = NULL;
    size_t n = 0;
    g_autofree float *want = ref_read (ref, want_name, &n);
    g_assert_cmpuint (n, ==, (size_t) batch * LDM_CLIP_TOKENS * ldm_clip_text_width (clip));
    g_autofree float *got = g_new (float, n);
    g_assert_true (ldm_clip_text_forward (clip, ids, batch, got, &error));
    g_assert_no_error (error);
    assert_close (what, got, want, n, TOL);
}

static JsonNode *
read_json (const char *path)
{
    g_autoptr (JsonParser) parser = json_parser_new ();
    g_autoptr (GError) error = NULL;
    g_assert_true (json_parser_load_from_file (parser, path, &error));
    return json_node_copy (json_parser_get_root (parser));
}

/* The architecture the encoder read from the shapes. */
static void
assert_config (const LdmClipText *clip, int vocab, int width, int positions, int layers, int mlp,
               int heads)
{
    const LdmClipTextConfig *c = ldm_clip_text_config (clip);
    g_assert_cmpint (c->vocab, ==, vocab);
    g_assert_cmpint (c->width, ==, width);
    g_assert_cmpint (c->positions, ==, positions);
    g_assert_cmpint (c->layers, ==, layers);
    g_assert_cmpint (c->mlp, ==, mlp);
    g_assert_cmpint (c->heads, ==, heads);
}

/* ------------------------------------------------------------ clip-text-tiny */

static void
test_tiny (gconstpointer data)
{
    const char *model_name = data;
    g_autofree char *prompts_path = fixture_path ("clip-text-tiny", "prompts.json");
    LdmTensorFile *file = NULL, *ref = NULL;
    Dnn *dnn = NULL;
    if (!prompts_path || !fixture_files_open ("clip-text-tiny", model_name, &file, &ref, &dnn))
        return;
    g_autoptr (GError) error = NULL;
    g_assert_true (ldm_clip_text_present (file));
    LdmClipText *clip = ldm_clip_text_new (dnn, file, 0, &error);
    g_assert_no_error (error);
    /* the README's architecture, all from the shapes (heads by the width rule) */
    assert_config (clip, 49408, 64, 77, 2, 256, 4);

    /* every prompt of prompts.json, one at a time */
    g_autoptr (JsonNode) prompts = read_json (prompts_path);
    guint n_prompts = json_array_get_length (json_node_get_array (prompts));
    g_assert_cmpuint (n_prompts, >=, 7);
    for (guint p = 0; p < n_prompts; p++) {
        g_autofree char *ids_name = g_strdup_printf ("prompt%02u.ids", p);
        g_autofree char *hidden_name = g_strdup_printf ("prompt%02u.hidden", p);
        int batch = 0;
        g_autofree int32_t *ids = ref_ids (ref, ids_name, &batch);
        g_assert_cmpint (batch, ==, 1);
        g_autofree char *what = g_strdup_printf ("%s %s", model_name, hidden_name);
        check_forward (clip, ids, 1, ref, hidden_name, what);
    }
    /* ["", prompt 1] as one batch */
    int batch = 0;
    g_autofree int32_t *ids = ref_ids (ref, "batch.ids", &batch);
    g_assert_cmpint (batch, ==, 2);
    g_autofree char *what = g_strdup_printf ("%s batch.hidden", model_name);
    check_forward (clip, ids, 2, ref, "batch.hidden", what);

    ldm_clip_text_free (clip);
    fixture_files_close (file, ref, dnn);
}

/* ------------------------------------------------------- sd-inpaint-clip-tiny */

/* The SD fixture's prompt and negative prompt are prompts 01 and 00 of clip-text-tiny (checked
 * here from both prompts.json), so their ids come from clip-text-tiny's reference. */
static void
test_sd_checkpoint (gconstpointer data)
{
    const char *model_name = data;
    g_autofree char *sd_prompts_path = fixture_path ("sd-inpaint-clip-tiny", "prompts.json");
    g_autofree char *clip_ref_path = fixture_path ("clip-text-tiny", "reference.safetensors");
    g_autofree char *clip_prompts_path = fixture_path ("clip-text-tiny", "prompts.json");
    LdmTensorFile *file = NULL, *ref = NULL;
    Dnn *dnn = NULL;
    if (!sd_prompts_path || !clip_ref_path || !clip_prompts_path
        || !fixture_files_open ("sd-inpaint-clip-tiny", model_name, &file, &ref, &dnn))
        return;
    g_autoptr (JsonNode) sd_prompts = read_json (sd_prompts_path);
    g_autoptr (JsonNode) clip_prompts = read_json (clip_prompts_path);
    JsonObject *sd = json_node_get_object (sd_prompts);
    JsonArray *clip_list = json_node_get_array (clip_prompts);
    g_assert_cmpstr (json_object_get_string_member (sd, "prompt"), ==,
                     json_array_get_string_element (clip_list, 1));
    g_assert_cmpstr (json_object_get_string_member (sd, "negative_prompt"), ==,
                     json_array_get_string_element (clip_list, 0));

    g_autoptr (GError) error = NULL;
    g_autoptr (LdmTensorFile) clip_ref = ldm_tensor_file_open (clip_ref_path, &error);
    g_assert_no_error (error);
    int b0 = 0, b1 = 0;
    g_autofree int32_t *uncond_ids = ref_ids (clip_ref, "prompt00.ids", &b0);
    g_autofree int32_t *cond_ids = ref_ids (clip_ref, "prompt01.ids", &b1);
    /* the CFG batch [negative, prompt] */
    int32_t ids[2 * LDM_CLIP_TOKENS];
    memcpy (ids, uncond_ids, sizeof (int32_t) * LDM_CLIP_TOKENS);
    memcpy (ids + LDM_CLIP_TOKENS, cond_ids, sizeof (int32_t) * LDM_CLIP_TOKENS);

    LdmClipText *clip = ldm_clip_text_new (dnn, file, 0, &error);
    g_assert_no_error (error);
    int width = ldm_clip_text_width (clip);
    g_assert_cmpint (width, ==, 64); /* the U-Net's context_dim */
    size_t n = (size_t) LDM_CLIP_TOKENS * width;
    g_autofree float *got = g_new (float, 2 * n);
    g_assert_true (ldm_clip_text_forward (clip, ids, 2, got, &error));
    g_assert_no_error (error);
    size_t n_want = 0;
    g_autofree float *uncond = ref_read (ref, "cond.uncond_context", &n_want);
    g_assert_cmpuint (n_want, ==, n);
    g_autofree float *cond = ref_read (ref, "cond.context", &n_want);
    g_assert_cmpuint (n_want, ==, n);
    g_autofree char *what_u = g_strdup_printf ("%s cond.uncond_context", model_name);
    g_autofree char *what_c = g_strdup_printf ("%s cond.context", model_name);
    assert_close (what_u, got, uncond, n, TOL);
    assert_close (what_c, got + n, cond, n, TOL);
    ldm_clip_text_free (clip);
    fixture_files_close (file, ref, dnn);
}

static void
test_no_text_encoder (void)
{
    g_autofree char *path = fixture_path ("sd-inpaint-tiny", "model.safetensors");
    if (!path)
        return;
    g_autoptr (GError) error = NULL;
    g_autoptr (LdmTensorFile) file = ldm_tensor_file_open (path, &error);
    g_assert_no_error (error);
    g_assert_false (ldm_clip_text_present (file));
    Dnn *dnn = test_dnn ();
    g_assert_null (ldm_clip_text_new (dnn, file, 0, &error));
    g_assert_error (error, LDM_ERROR, LDM_ERROR_MODEL);
    g_test_message ("%s", error->message);
    g_assert_nonnull (strstr (error->message, "has no text encoder "
                                              "(cond_stage_model.transformer.text_model.*)"));
    g_assert_nonnull (strstr (error->message, path));
    dnn_free (dnn);
}

/* ---------------------------------------------------- synthetic text encoders */

/* A small encoder written as .safetensors: vocab 50, width 32 (2 heads), 2 layers, MLP 64, and
 * deterministic pseudo-random F32 weights; `edit` changes one thing for a case. */
typedef struct {
    char   *name;
    int     ndim;
    int64_t shape[2];
} Spec;

typedef struct {
    const char *prefix;
    int         width, positions, layers;
    const char *drop;        /* a tensor left out (name after the prefix) */
    const char *reshape;     /* a tensor given the shape below instead */
    int         ndim;
    int64_t     shape[2];
    const char *extra;       /* an extra tensor (name after the prefix), shape [1] */
    bool        nan;         /* one NaN in layer 0's fc2 weight */
} Edit;

static GArray *
specs_for (const Edit *e)
{
    GArray *specs = g_array_new (FALSE, TRUE, sizeof (Spec));
    int w = e->width, m = 64;
#define ADD(n, d, s0, s1)                                                                      \
    do {                                                                                       \
        Spec s = { (n), (d), { (s0), (s1) } };                                                 \
        g_array_append_val (specs, s);                                                         \
    } while (0)
    ADD (g_strdup ("embeddings.token_embedding.weight"), 2, 50, w);
    ADD (g_strdup ("embeddings.position_embedding.weight"), 2, e->positions, w);
    for (int i = 0; i < e->layers; i++) {
        static const char *const projs[4] = { "q_proj", "k_proj", "v_proj", "out_proj" };
        for (int p = 0; p < 4; p++) {
            ADD (g_strdup_printf ("encoder.layers.%d.self_attn.%s.weight", i, projs[p]), 2, w, w);
            ADD (g_strdup_printf ("encoder.layers.%d.self_attn.%s.bias", i, projs[p]), 1, w, 0);
        }
        for (int n = 1; n <= 2; n++) {
            ADD (g_strdup_printf ("encoder.layers.%d.layer_norm%d.weight", i, n), 1, w, 0);
            ADD (g_strdup_printf ("encoder.layers.%d.layer_norm%d.bias", i, n), 1, w, 0);
        }
        ADD (g_strdup_printf ("encoder.layers.%d.mlp.fc1.weight", i), 2, m, w);
        ADD (g_strdup_printf ("encoder.layers.%d.mlp.fc1.bias", i), 1, m, 0);
        ADD (g_strdup_printf ("encoder.layers.%d.mlp.fc2.weight", i), 2, w, m);
        ADD (g_strdup_printf ("encoder.layers.%d.mlp.fc2.bias", i), 1, w, 0);
    }
    ADD (g_strdup ("final_layer_norm.weight"), 1, w, 0);
    ADD (g_strdup ("final_layer_norm.bias"), 1, w, 0);
    if (e->extra)
        ADD (g_strdup (e->extra), 1, 1, 0);
#undef ADD
    for (guint i = 0; i < specs->len; i++) {
        Spec *s = &g_array_index (specs, Spec, i);
        if (e->drop && !strcmp (s->name, e->drop)) {
            g_free (s->name);
            g_array_remove_index (specs, i--);
        } else if (e->reshape && !strcmp (s->name, e->reshape)) {
            s->ndim = e->ndim;
            s->shape[0] = e->shape[0];
            s->shape[1] = e->shape[1];
        }
    }
    return specs;
}

/* Writes the encoder of `e` to DIR/NAME.safetensors; returns the path. */
static char *
write_encoder (const char *dir, const char *name, const Edit *e)
{
    g_autoptr (GArray) specs = specs_for (e);
    GString *header = g_string_new ("{");
    GByteArray *data = g_byte_array_new ();
    uint32_t state = 12345;
    for (guint i = 0; i < specs->len; i++) {
        Spec *s = &g_array_index (specs, Spec, i);
        int64_t n = 1;
        for (int d = 0; d < s->ndim; d++)
            n *= s->shape[d];
        bool norm_weight = g_str_has_suffix (s->name, "norm1.weight")
                           || g_str_has_suffix (s->name, "norm2.weight")
                           || !strcmp (s->name, "final_layer_norm.weight");
        for (int64_t k = 0; k < n; k++) {
            state = state * 1664525u + 1013904223u;
            float u = (float) (state >> 8) / (float) (1u << 24) - 0.5f; /* [-0.5, 0.5) */
            float v = norm_weight ? 1.0f + 0.2f * u : 0.4f * u;
            if (e->nan && k == 0 && !strcmp (s->name, "encoder.layers.0.mlp.fc2.weight"))
                v = NAN;
            g_byte_array_append (data, (const guint8 *) &v, sizeof v);
        }
        g_string_append_printf (header, "%s\"%s%s\":{\"dtype\":\"F32\",\"shape\":[", i ? "," : "",
                                e->prefix, s->name);
        for (int d = 0; d < s->ndim; d++)
            g_string_append_printf (header, "%s%" G_GINT64_FORMAT, d ? "," : "", s->shape[d]);
        g_string_append_printf (header, "],\"data_offsets\":[%" G_GINT64_FORMAT ",%u]}",
                                (int64_t) (data->len - n * sizeof (float)), data->len);
        g_free (s->name);
    }
    g_string_append_c (header, '}');
    while (header->len % 8)
        g_string_append_c (header, ' ');
    GByteArray *bytes = g_byte_array_new ();
    uint64_t header_len = header->len;
    g_byte_array_append (bytes, (const guint8 *) &header_len, 8);
    g_byte_array_append (bytes, (const guint8 *) header->str, header->len);
    g_byte_array_append (bytes, data->data, data->len);
    g_autofree char *file_name = g_strconcat (name, ".safetensors", NULL);
    char *path = g_build_filename (dir, file_name, NULL);
    g_autoptr (GError) error = NULL;
    g_assert_true (g_file_set_contents (path, (const char *) bytes->data, bytes->len, &error));
    g_string_free (header, TRUE);
    g_byte_array_unref (data);
    g_byte_array_unref (bytes);
    return path;
}

static const Edit BASE = { .prefix = LDM_CLIP_TEXT_PREFIX, .width = 32, .positions = 77,
                           .layers = 2 };

/* Loads DIR/NAME's encoder; NULL and the error when it fails. */
static LdmClipText *
load (Dnn *dnn, const char *dir, const char *name, const Edit *e, int heads, GError **error)
{
    g_autofree char *path = write_encoder (dir, name, e);
    g_autoptr (LdmTensorFile) file = ldm_tensor_file_open (path, error);
    g_assert_nonnull (file);
    return ldm_clip_text_new (dnn, file, heads, error);
}

static void
random_ids (int32_t *ids, int batch, int vocab)
{
    for (int i = 0; i < batch * LDM_CLIP_TOKENS; i++)
        ids[i] = (int32_t) ((i * 7919u + 13u) % (unsigned) vocab);
}

static void
test_synthetic_valid (void)
{
    g_autofree char *dir = g_dir_make_tmp ("clip-text-XXXXXX", NULL);
    g_autoptr (GError) error = NULL;
    Dnn *dnn = test_dnn ();
    LdmClipText *clip = load (dnn, dir, "base", &BASE, 0, &error);
    g_assert_no_error (error);
    assert_config (clip, 50, 32, BASE.positions, 2, 64, 2);

    int32_t ids[3 * LDM_CLIP_TOKENS];
    random_ids (ids, 3, 50);
    size_t n = (size_t) LDM_CLIP_TOKENS * 32;
    g_autofree float *batch3 = g_new (float, 3 * n);
    g_assert_true (ldm_clip_text_forward (clip, ids, 3, batch3, &error));
    g_assert_no_error (error);
    /* a batch is its prompts one by one */
    g_autofree float *one = g_new (float, n);
    for (int b = 0; b < 3; b++) {
        g_assert_true (ldm_clip_text_forward (clip, ids + b * LDM_CLIP_TOKENS, 1, one, &error));
        assert_close ("batch of 3 vs one by one", batch3 + b * n, one, n, 1e-6);
    }
    /* causal: a token changes no output before its position, and its own; bit for bit
     * against the same prompt alone (a batch of 3 runs other kernels: AVX2's differ from a
     * single prompt's by 1e-6, AVX-512's did not) */
    g_autofree float *first = g_new (float, n);
    g_assert_true (ldm_clip_text_forward (clip, ids, 1, first, &error));
    int32_t changed[LDM_CLIP_TOKENS];
    memcpy (changed, ids, sizeof changed);
    changed[40] = (changed[40] + 1) % 50;
    g_autofree float *other = g_new (float, n);
    g_assert_true (ldm_clip_text_forward (clip, changed, 1, other, &error));
    g_assert_cmpmem (other, 40 * 32 * sizeof (float), first, 40 * 32 * sizeof (float));
    g_assert_true (memcmp (other + 40 * 32, first + 40 * 32, 32 * sizeof (float)) != 0);

    /* the older key spelling (no text_model level) gives the same encoder */
    Edit old = BASE;
    old.prefix = "cond_stage_model.transformer.";
    LdmClipText *clip_old = load (dnn, dir, "old", &old, 0, &error);
    g_assert_no_error (error);
    g_assert_true (ldm_clip_text_forward (clip_old, ids, 1, other, &error));
    g_assert_cmpmem (other, n * sizeof (float), first, n * sizeof (float));
    ldm_clip_text_free (clip_old);

    /* bad arguments */
    ids[5] = 50;
    g_assert_false (ldm_clip_text_forward (clip, ids, 1, one, &error));
    g_assert_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT);
    g_test_message ("%s", error->message);
    g_clear_error (&error);
    ids[5] = -1;
    g_assert_false (ldm_clip_text_forward (clip, ids, 1, one, &error));
    g_assert_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT);
    g_clear_error (&error);
    g_assert_false (ldm_clip_text_forward (clip, ids, 0, one, &error));
    g_assert_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT);
    g_clear_error (&error);
    ldm_clip_text_free (clip);

    /* NaN weights: the forward fails */
    Edit nan = BASE;
    nan.nan = true;
    clip = load (dnn, dir, "nan", &nan, 0, &error);
    g_assert_no_error (error);
    random_ids (ids, 1, 50);
    g_assert_false (ldm_clip_text_forward (clip, ids, 1, one, &error));
    g_assert_error (error, LDM_ERROR, LDM_ERROR_MODEL);
    g_test_message ("%s", error->message);
    ldm_clip_text_free (clip);
    dnn_free (dnn);
    remove_tree (dir);
}

typedef struct {
    const char *what;
    Edit        edit;
    int         heads;
    const char *message; /* a part of the expected error message */
} BadCase;

static void
test_synthetic_bad (void)
{
    const BadCase cases[] = {
        { "fc2 of layer 1 [32, 128]",
          { .reshape = "encoder.layers.1.mlp.fc2.weight", .ndim = 2, .shape = { 32, 128 } }, 0,
          "'encoder.layers.1.mlp.fc2.weight' has shape [32, 128], the architecture needs [32, 64]" },
        { "q_proj of layer 0 [32, 16]",
          { .reshape = "encoder.layers.0.self_attn.q_proj.weight", .ndim = 2, .shape = { 32, 16 } },
          0, "q_proj.weight' has shape [32, 16]" },
        { "layer_norm2 bias [31]",
          { .reshape = "encoder.layers.1.layer_norm2.bias", .ndim = 1, .shape = { 31 } }, 0,
          "layer_norm2.bias' has shape [31]" },
        { "position embedding narrower than the tokens",
          { .reshape = "embeddings.position_embedding.weight", .ndim = 2, .shape = { 77, 16 } }, 0,
          "position_embedding.weight has shape [77, 16]" },
        { "position embedding of 10 positions",
          { .reshape = "embeddings.position_embedding.weight", .ndim = 2, .shape = { 10, 32 } }, 0,
          "at least 77" },
        { "token embedding 1-D",
          { .reshape = "embeddings.token_embedding.weight", .ndim = 1, .shape = { 50 } }, 0,
          "token_embedding.weight has shape [50]" },
        { "fc1 of layer 0 of another width",
          { .reshape = "encoder.layers.0.mlp.fc1.weight", .ndim = 2, .shape = { 64, 16 } }, 0,
          "fc1.weight has shape [64, 16], not [MLP width, 32]" },
        { "k_proj bias of layer 1 missing", { .drop = "encoder.layers.1.self_attn.k_proj.bias" },
          0, "'encoder.layers.1.self_attn.k_proj.bias' is missing" },
        { "final layer norm missing", { .drop = "final_layer_norm.weight" }, 0,
          "'final_layer_norm.weight' is missing" },
        { "a layer between missing", { .extra = "encoder.layers.3.mlp.fc1.bias" }, 0,
          "'encoder.layers.2.layer_norm1.weight' is missing" },
        { "a hostile layer number", { .extra = "encoder.layers.4000000000.mlp.fc1.bias" }, 0,
          "is not a layer of a text encoder" },
        { "no layers", { .layers = -1 }, 0, "has no layers" },
        { "a width no heads rule fits", { .width = 40 }, 0,
          "width 40 is not a multiple of 16" },
        { "3 heads given for width 32", { 0 }, 3, "3 attention heads do not divide" },
    };
    g_autofree char *dir = g_dir_make_tmp ("clip-text-XXXXXX", NULL);
    Dnn *dnn = test_dnn ();
    for (size_t i = 0; i < G_N_ELEMENTS (cases); i++) {
        Edit e = cases[i].edit;
        e.prefix = BASE.prefix;
        e.width = e.width ? e.width : BASE.width;
        e.positions = BASE.positions;
        e.layers = e.layers < 0 ? 0 : e.layers ? e.layers : BASE.layers;
        g_autoptr (GError) error = NULL;
        g_autofree char *name = g_strdup_printf ("case%zu", i);
        LdmClipText *clip = load (dnn, dir, name, &e, cases[i].heads, &error);
        g_test_message ("%s: %s", cases[i].what, error ? error->message : "(loaded)");
        g_assert_null (clip);
        g_assert_error (error, LDM_ERROR, LDM_ERROR_MODEL);
        g_assert_nonnull (strstr (error->message, cases[i].message));
        g_autofree char *path = g_build_filename (dir, name, NULL);
        g_autofree char *file = g_strconcat (path, ".safetensors", NULL);
        g_remove (file);
    }
    dnn_free (dnn);
    g_rmdir (dir);
}

int
main (int argc, char **argv)
{
    g_test_init (&argc, &argv, NULL);
    g_test_add_data_func ("/clip-text/tiny/safetensors", "model.safetensors", test_tiny);
    g_test_add_data_func ("/clip-text/tiny/ckpt", "model.ckpt", test_tiny);
    g_test_add_data_func ("/clip-text/sd-checkpoint/safetensors", "model.safetensors",
                          test_sd_checkpoint);
    g_test_add_data_func ("/clip-text/sd-checkpoint/ckpt", "model.ckpt", test_sd_checkpoint);
    g_test_add_func ("/clip-text/no-text-encoder", test_no_text_encoder);
    g_test_add_func ("/clip-text/synthetic/valid", test_synthetic_valid);
    g_test_add_func ("/clip-text/synthetic/bad-shapes", test_synthetic_bad);
    return g_test_run ();
}
