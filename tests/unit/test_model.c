/* test_model: loading models: the fixtures (both formats, with their configs), recognition of
 * the published models without a config (from SPARSE safetensors files whose headers come
 * from the parameter lists: gigabytes of holes that cost no disk), and the errors for missing
 * or mis-shaped tensors, bad configs and unknown models.
 */
#include "config_compare.h"
#include "testutil.h"
#include "arch/model.h"

#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

static char *temp_dir;

/* A folder of its own under temp_dir for one test. */
static char *
make_dir (const char *name)
{
    char *dir = g_build_filename (temp_dir, name, NULL);
    g_assert_cmpint (g_mkdir_with_parents (dir, 0700), ==, 0);
    return dir;
}

/* ============================================================ sparse safetensors */

typedef struct {
    char    name[160];
    char    dtype[8];
    int     ndim;
    int64_t shape[4];
} Entry;

static void
entries_add (GArray *entries, const char *prefix, const GArray *params, bool ema,
             const char *dtype)
{
    for (guint i = 0; i < params->len; i++) {
        const LdmParamSpec *spec = &g_array_index (params, LdmParamSpec, i);
        Entry e = { .ndim = spec->ndim };
        if (ema) {
            g_autofree char *name = model_config_unet_ema_name (spec->name);
            g_strlcpy (e.name, name, sizeof e.name);
        } else {
            g_snprintf (e.name, sizeof e.name, "%s%s", prefix, spec->name);
        }
        g_strlcpy (e.dtype, dtype, sizeof e.dtype);
        memcpy (e.shape, spec->shape, sizeof e.shape);
        g_array_append_val (entries, e);
    }
}

static Entry *
entries_find (GArray *entries, const char *name)
{
    for (guint i = 0; i < entries->len; i++)
        if (!strcmp (g_array_index (entries, Entry, i).name, name))
            return &g_array_index (entries, Entry, i);
    g_assert_not_reached ();
}

static void
entries_remove (GArray *entries, const char *name)
{
    Entry *e = entries_find (entries, name);
    g_array_remove_index (entries, (guint) (e - (Entry *) entries->data));
}

/* Writes a safetensors file whose data region is a hole (ftruncate): only the header costs
 * disk. */
static char *
write_sparse_safetensors (const char *dir, const char *name, const GArray *entries)
{
    GString *json = g_string_new ("{\"__metadata__\":{\"format\":\"pt\"}");
    uint64_t offset = 0;
    for (guint i = 0; i < entries->len; i++) {
        const Entry *e = &g_array_index (entries, Entry, i);
        uint64_t size = !strcmp (e->dtype, "F32") || !strcmp (e->dtype, "I32") ? 4 : 2;
        g_string_append_printf (json, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", e->name, e->dtype);
        for (int d = 0; d < e->ndim; d++) {
            g_string_append_printf (json, d ? ",%" G_GINT64_FORMAT : "%" G_GINT64_FORMAT,
                                    e->shape[d]);
            size *= (uint64_t) e->shape[d];
        }
        g_string_append_printf (json,
                                "],\"data_offsets\":[%" G_GUINT64_FORMAT ",%" G_GUINT64_FORMAT
                                "]}",
                                offset, offset + size);
        offset += size;
    }
    g_string_append_c (json, '}');
    while (json->len % 8)
        g_string_append_c (json, ' ');

    char *path = g_build_filename (dir, name, NULL);
    int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    g_assert_cmpint (fd, >=, 0);
    uint8_t length[8];
    for (int i = 0; i < 8; i++)
        length[i] = (uint8_t) ((uint64_t) json->len >> (8 * i));
    g_assert_cmpint (write (fd, length, 8), ==, 8);
    g_assert_cmpint (write (fd, json->str, json->len), ==, (ssize_t) json->len);
    g_assert_cmpint (ftruncate (fd, (off_t) (8 + json->len + offset)), ==, 0);
    close (fd);
    g_string_free (json, TRUE);
    return path;
}

/* The U-Net and first stage of `config` as sparse tensors (plain names, no EMA). */
static GArray *
entries_for (const LdmModelConfig *config, const char *dtype)
{
    GArray *entries = g_array_new (FALSE, FALSE, sizeof (Entry));
    g_autoptr (GArray) unet = model_config_unet_params (&config->unet);
    g_autoptr (GArray) ae = model_config_autoencoder_params (&config->first_stage);
    entries_add (entries, LDM_UNET_PREFIX, unet, false, dtype);
    entries_add (entries, LDM_FIRST_STAGE_PREFIX, ae, false, dtype);
    return entries;
}

static void
copy_file (const char *from, const char *to)
{
    g_autofree char *bytes = NULL;
    gsize length;
    g_autoptr (GError) error = NULL;
    g_assert_true (g_file_get_contents (from, &bytes, &length, &error));
    g_assert_true (g_file_set_contents (to, bytes, (gssize) length, &error));
}

static void
assert_load_fails (const char *path, LdmError code, const char *needle1, const char *needle2)
{
    g_autoptr (GError) error = NULL;
    g_autoptr (LdmModel) model = ldm_model_load (path, &error);
    g_assert_null (model);
    g_assert_nonnull (error);
    g_test_message ("error: %s", error->message);
    g_assert_error (error, LDM_ERROR, (gint) code);
    g_assert_nonnull (strstr (error->message, needle1));
    if (needle2)
        g_assert_nonnull (strstr (error->message, needle2));
}

/* ============================================================ fixtures */

static const struct {
    const char  *name;
    LdmModelKind kind;
    const char  *kind_words;
} fixtures[] = {
    { "ldm-inpaint-tiny", LDM_MODEL_LDM_INPAINT, "LDM inpainting" },
    { "ldm-sr-tiny", LDM_MODEL_LDM_SR, "super-resolution" },
    { "sd-inpaint-tiny", LDM_MODEL_SD_INPAINT, "Stable Diffusion inpainting" },
};

static void
test_fixtures_load (void)
{
    for (size_t f = 0; f < G_N_ELEMENTS (fixtures); f++) {
        char *description[2] = { NULL, NULL };
        static const char *const files[] = { "model.ckpt", "model.safetensors" };
        for (int i = 0; i < 2; i++) {
            g_autofree char *path = shared_path ("fixtures", fixtures[f].name, files[i], NULL);
            g_autofree char *config_path = shared_path ("fixtures", fixtures[f].name,
                                                        "config.yaml", NULL);
            if (!path || !config_path)
                return;
            g_autoptr (GError) error = NULL;
            g_autoptr (LdmModel) model = ldm_model_load (path, &error);
            g_assert_no_error (error);
            g_assert_nonnull (model);
            g_assert_cmpint (ldm_model_kind (model), ==, fixtures[f].kind);
            g_assert_cmpstr (model->config_path, ==, config_path);
            g_assert_nonnull (strstr (model_config (model)->source, "config.yaml"));
            g_assert_true (model->uses_ema);
            g_assert_cmpint (ldm_tensor_file_format (model_file (model)), ==,
                             i == 0 ? LDM_FILE_TORCH_ZIP : LDM_FILE_SAFETENSORS);

            /* The engine's names resolve to the EMA copy and the first stage. */
            const LdmTensor *t = model_unet_tensor (model, "input_blocks.0.0.weight");
            g_assert_nonnull (t);
            g_assert_cmpstr (t->name, ==, "model_ema.diffusion_modelinput_blocks00weight");
            t = model_unet_tensor (model, "out.2.weight");
            g_assert_cmpstr (t->name, ==, "model_ema.diffusion_modelout2weight");
            t = model_first_stage_tensor (model, "decoder.conv_in.weight");
            g_assert_cmpstr (t->name, ==, "first_stage_model.decoder.conv_in.weight");
            g_assert_null (model_unet_tensor (model, "no.such.weight"));
            g_assert_null (model_first_stage_tensor (model, "encoder.nothing"));

            g_autoptr (GArray) unet = model_config_unet_params (&model_config (model)->unet);
            g_assert_cmpint (model->unet_params, ==, model_config_param_count (unet));
            g_assert_cmpuint (g_hash_table_size (model->unet), ==, unet->len);

            description[i] = ldm_model_describe (model);
            g_test_message ("%s", description[i]);
            g_assert_nonnull (strstr (description[i], fixtures[f].kind_words));
            g_assert_nonnull (strstr (description[i], "config.yaml"));
            g_assert_nonnull (strstr (description[i], "(EMA weights)"));
            g_assert_nonnull (strstr (description[i], "F32"));
            g_autofree char *count = g_strdup_printf ("%" G_GINT64_FORMAT,
                                                      model_config_param_count (unet));
            /* With thousands separators: compare digits only. */
            g_autofree char *digits = g_strdup (description[i]);
            char *w = digits;
            for (const char *r = description[i]; *r; r++)
                if (*r != ',')
                    *w++ = *r;
            *w = '\0';
            g_assert_nonnull (strstr (digits, count));
        }
        /* Both formats describe the same model, but for the file line. */
        g_assert_cmpstr (strchr (description[0], '\n'), ==, strchr (description[1], '\n'));
        g_free (description[0]);
        g_free (description[1]);
    }
}

static void
test_fixture_cond_stage_copy (void)
{
    g_autofree char *path = shared_path ("fixtures", "ldm-inpaint-tiny", "model.ckpt", NULL);
    if (!path)
        return;
    g_autoptr (GError) error = NULL;
    g_autoptr (LdmModel) model = ldm_model_load (path, &error);
    g_assert_no_error (error);
    g_assert_cmpint (model->cond_stage_params, ==, model->first_stage_params);
    g_assert_nonnull (model_cond_stage_tensor (model, "quantize.embedding.weight"));
    g_autofree char *text = ldm_model_describe (model);
    g_assert_nonnull (strstr (text, "the first stage itself"));
}

/* A fixture's model without its config: the tiny structures are none of the published
 * models, so the answer must say what was found and ask for the config. */
static void
test_fixture_without_config (void)
{
    for (size_t f = 0; f < G_N_ELEMENTS (fixtures); f++) {
        g_autofree char *target = shared_path ("fixtures", fixtures[f].name, "model.safetensors",
                                               NULL);
        if (!target)
            return;
        g_autofree char *dir = make_dir (fixtures[f].name);
        g_autofree char *link = g_build_filename (dir, "model.safetensors", NULL);
        g_assert_cmpint (symlink (target, link), ==, 0);
        assert_load_fails (link, LDM_ERROR_MODEL, "match none of the built-in models",
                           "config");
        g_autoptr (GError) error = NULL;
        g_autoptr (LdmModel) model = ldm_model_load (link, &error);
        g_assert_nonnull (strstr (error->message, "model_channels 32"));
        g_assert_nonnull (strstr (error->message, link));
    }
}

/* <stem>.yaml is found first, then config.yaml; a config that fails is an error naming it. */
static void
test_config_beside (void)
{
    g_autofree char *target = shared_path ("fixtures", "ldm-sr-tiny", "model.ckpt", NULL);
    g_autofree char *config = shared_path ("fixtures", "ldm-sr-tiny", "config.yaml", NULL);
    if (!target || !config)
        return;
    g_autofree char *dir = make_dir ("beside");
    g_autofree char *link = g_build_filename (dir, "upscaler.ckpt", NULL);
    g_assert_cmpint (symlink (target, link), ==, 0);
    g_autofree char *stem_yaml = g_build_filename (dir, "upscaler.yaml", NULL);
    copy_file (config, stem_yaml);

    g_autoptr (GError) error = NULL;
    LdmModel *model = ldm_model_load (link, &error);
    g_assert_no_error (error);
    g_assert_cmpstr (model->config_path, ==, stem_yaml);
    g_assert_cmpint (ldm_model_kind (model), ==, LDM_MODEL_LDM_SR);
    ldm_model_free (model);

    /* A broken project.yaml is not looked at while <stem>.yaml is there... */
    g_autofree char *project = g_build_filename (dir, "project.yaml", NULL);
    g_assert_true (g_file_set_contents (project, "model: [", -1, NULL));
    model = ldm_model_load (link, &error);
    g_assert_no_error (error);
    ldm_model_free (model);

    /* ...but a broken <stem>.yaml is an error that names it, never a fallback. */
    g_assert_true (g_file_set_contents (stem_yaml, "model:\n  target: [\n", -1, NULL));
    assert_load_fails (link, LDM_ERROR_FORMAT, stem_yaml, "not valid YAML");
    g_unlink (stem_yaml);
    assert_load_fails (link, LDM_ERROR_FORMAT, project, "not valid YAML");
    g_unlink (project);

    /* config.yaml with a type error. */
    g_autofree char *config_yaml = g_build_filename (dir, "config.yaml", NULL);
    g_autofree char *text = NULL;
    g_assert_true (g_file_get_contents (config, &text, NULL, NULL));
    g_auto (GStrv) parts = g_strsplit (text, "model_channels: 32", 0);
    g_autofree char *bad = g_strjoinv ("model_channels: thirty-two", parts);
    g_assert_true (g_file_set_contents (config_yaml, bad, -1, NULL));
    assert_load_fails (link, LDM_ERROR_FORMAT, config_yaml,
                       "model.params.unet_config.params.model_channels");
}

/* ============================================================ recognition */

static void
test_recognise_presets (void)
{
    for (int i = 0; i < LDM_PRESET_COUNT; i++) {
        LdmModelConfig preset;
        model_config_preset ((LdmPreset) i, &preset);
        g_autofree char *dir_name = g_strdup_printf ("preset-%d", i);
        g_autofree char *dir = make_dir (dir_name);
        g_autoptr (GArray) entries = entries_for (&preset, "F16");
        g_autofree char *path = write_sparse_safetensors (dir, "model.safetensors", entries);

        g_autoptr (GError) error = NULL;
        g_autoptr (LdmModel) model = ldm_model_load (path, &error);
        g_assert_no_error (error);
        g_assert_nonnull (model);
        g_assert_null (model->config_path);
        g_assert_cmpint (ldm_model_kind (model), ==, preset.kind);
        assert_configs_equal (model_config (model), &preset);
        g_autofree char *expected = g_strdup_printf ("recognised from tensor shapes as %s (%s)",
                                                     model_config_preset_name (i),
                                                     model_config_preset_title (i));
        g_assert_cmpstr (model_config (model)->source, ==, expected);
        g_assert_false (model->uses_ema); /* use_ema true, but no model_ema.* in the file */

        g_autofree char *text = ldm_model_describe (model);
        g_test_message ("%s", text);
        g_assert_nonnull (strstr (text, expected));
        /* v1-inference.yaml (LDM_PRESET_SD15) says use_ema: False */
        g_assert_nonnull (strstr (text, preset.use_ema ? "the file has no EMA copy"
                                                       : "the config sets use_ema false"));
        g_assert_nonnull (strstr (text, "weights: F16"));
        g_unlink (path);
    }
    /* The U-Net counts as `ldm info` prints them. */
    LdmModelConfig c;
    model_config_preset (LDM_PRESET_LDM_INPAINTING_BIG, &c);
    g_autoptr (GArray) entries = entries_for (&c, "F32");
    g_autofree char *dir = make_dir ("count");
    g_autofree char *path = write_sparse_safetensors (dir, "last.safetensors", entries);
    g_autoptr (LdmModel) model = ldm_model_load (path, NULL);
    g_assert_nonnull (model);
    g_autofree char *text = ldm_model_describe (model);
    g_assert_nonnull (strstr (text, "U-Net: 387,245,827 parameters"));
    g_unlink (path);
}

/* A file with only the EMA copy of the U-Net is recognised and loaded from it. */
static void
test_recognise_ema_only (void)
{
    LdmModelConfig preset;
    model_config_preset (LDM_PRESET_LDM_BSR_SR, &preset);
    g_autoptr (GArray) unet = model_config_unet_params (&preset.unet);
    g_autoptr (GArray) ae = model_config_autoencoder_params (&preset.first_stage);
    g_autoptr (GArray) entries = g_array_new (FALSE, FALSE, sizeof (Entry));
    entries_add (entries, NULL, unet, true, "F16");
    entries_add (entries, LDM_FIRST_STAGE_PREFIX, ae, false, "F32");
    g_autofree char *dir = make_dir ("ema-only");
    g_autofree char *path = write_sparse_safetensors (dir, "model.safetensors", entries);

    g_autoptr (GError) error = NULL;
    g_autoptr (LdmModel) model = ldm_model_load (path, &error);
    g_assert_no_error (error);
    g_assert_true (model->uses_ema);
    g_assert_cmpint (ldm_model_kind (model), ==, LDM_MODEL_LDM_SR);
    const LdmTensor *t = model_unet_tensor (model, "middle_block.1.qkv.weight");
    g_assert_cmpstr (t->name, ==, "model_ema.diffusion_modelmiddle_block1qkvweight");
    g_autofree char *text = ldm_model_describe (model);
    g_assert_nonnull (strstr (text, "U-Net F16; first stage F32"));
    g_unlink (path);
}

static void
test_recognise_not_a_model (void)
{
    g_autofree char *dir = make_dir ("not-a-model");
    g_autoptr (GArray) entries = g_array_new (FALSE, FALSE, sizeof (Entry));
    Entry e = { .name = "weight", .dtype = "F32", .ndim = 2, .shape = { 3, 3 } };
    g_array_append_val (entries, e);
    g_autofree char *path = write_sparse_safetensors (dir, "model.safetensors", entries);
    assert_load_fails (path, LDM_ERROR_MODEL, "no diffusion U-Net", path);

    /* A preset's U-Net without its first stage. */
    LdmModelConfig preset;
    model_config_preset (LDM_PRESET_LDM_INPAINTING_BIG, &preset);
    g_autoptr (GArray) unet = model_config_unet_params (&preset.unet);
    g_autoptr (GArray) only_unet = g_array_new (FALSE, FALSE, sizeof (Entry));
    entries_add (only_unet, LDM_UNET_PREFIX, unet, false, "F16");
    g_autofree char *path2 = write_sparse_safetensors (dir, "unet.safetensors", only_unet);
    assert_load_fails (path2, LDM_ERROR_MODEL, "first_stage_model.*", "config");

    /* A U-Net with one tensor too many is not a known structure either. */
    g_autoptr (GArray) entries3 = entries_for (&preset, "F16");
    Entry extra = { .name = "model.diffusion_model.id_predictor.1.weight", .dtype = "F16",
                    .ndim = 1, .shape = { 4 } };
    g_array_append_val (entries3, extra);
    g_autofree char *path3 = write_sparse_safetensors (dir, "extra.safetensors", entries3);
    assert_load_fails (path3, LDM_ERROR_MODEL, "model.diffusion_model.*", "U-Net");
}

/* ============================================================ errors against a config */

/* The tiny LDM inpainting config beside a sparse file made from `entries`. */
static char *
sparse_with_fixture_config (const char *dir_name, const char *fixture, GArray **entries_out,
                            bool with_ema)
{
    g_autofree char *config = shared_path ("fixtures", fixture, "config.yaml", NULL);
    if (!config)
        return NULL;
    LdmModelConfig c;
    g_autoptr (GError) error = NULL;
    g_assert_true (model_config_read_yaml (config, &c, &error));
    g_autofree char *dir = make_dir (dir_name);
    g_autofree char *config_copy = g_build_filename (dir, "config.yaml", NULL);
    copy_file (config, config_copy);
    GArray *entries = entries_for (&c, "F32");
    if (with_ema) {
        g_autoptr (GArray) unet = model_config_unet_params (&c.unet);
        entries_add (entries, NULL, unet, true, "F32");
    }
    *entries_out = entries;
    return g_steal_pointer (&dir);
}

static void
test_missing_tensor (void)
{
    GArray *entries = NULL;
    g_autofree char *dir = sparse_with_fixture_config ("missing", "ldm-inpaint-tiny", &entries,
                                                       false);
    if (!dir)
        return;
    entries_remove (entries, "model.diffusion_model.middle_block.1.qkv.weight");
    g_autofree char *path = write_sparse_safetensors (dir, "model.safetensors", entries);
    assert_load_fails (path, LDM_ERROR_MODEL,
                       "tensor 'model.diffusion_model.middle_block.1.qkv.weight' is missing",
                       path);
    g_array_unref (entries);

    /* First stage too. */
    g_autofree char *dir2 = sparse_with_fixture_config ("missing2", "sd-inpaint-tiny", &entries,
                                                        false);
    entries_remove (entries, "first_stage_model.decoder.mid.attn_1.proj_out.bias");
    g_autofree char *path2 = write_sparse_safetensors (dir2, "model.safetensors", entries);
    assert_load_fails (path2, LDM_ERROR_MODEL,
                       "'first_stage_model.decoder.mid.attn_1.proj_out.bias' is missing",
                       "first stage");
    g_array_unref (entries);
}

static void
test_wrong_shape (void)
{
    GArray *entries = NULL;
    g_autofree char *dir = sparse_with_fixture_config ("shape", "ldm-sr-tiny", &entries, false);
    if (!dir)
        return;
    Entry *e = entries_find (entries, "model.diffusion_model.input_blocks.0.0.weight");
    e->shape[1] = 7; /* an inpainting U-Net's input */
    g_autofree char *path = write_sparse_safetensors (dir, "model.safetensors", entries);
    assert_load_fails (path, LDM_ERROR_MODEL,
                       "tensor 'model.diffusion_model.input_blocks.0.0.weight' has shape "
                       "[32, 7, 3, 3] but the U-Net needs [32, 6, 3, 3]",
                       "config.yaml");
    e = entries_find (entries, "model.diffusion_model.input_blocks.0.0.weight");
    e->shape[1] = 6;
    e->dtype[0] = 'I'; /* I32 */
    g_autofree char *path2 = write_sparse_safetensors (dir, "model.safetensors", entries);
    assert_load_fails (path2, LDM_ERROR_MODEL, "is I32", "floating point");
    g_array_unref (entries);
}

/* EMA names present but one missing: the EMA copy is incomplete, which is an error. */
static void
test_partial_ema (void)
{
    GArray *entries = NULL;
    g_autofree char *dir = sparse_with_fixture_config ("ema", "sd-inpaint-tiny", &entries, true);
    if (!dir)
        return;
    g_autofree char *path = write_sparse_safetensors (dir, "model.safetensors", entries);
    g_autoptr (GError) error = NULL;
    LdmModel *model = ldm_model_load (path, &error);
    g_assert_no_error (error);
    g_assert_true (model->uses_ema);
    ldm_model_free (model);

    entries_remove (entries,
                    "model_ema.diffusion_modelmiddle_block1transformer_blocks0attn2to_kweight");
    g_autofree char *path2 = write_sparse_safetensors (dir, "model.safetensors", entries);
    assert_load_fails (path2, LDM_ERROR_MODEL,
                       "'model_ema.diffusion_modelmiddle_block1transformer_blocks0attn2to_kweight' "
                       "is missing",
                       NULL);
    g_array_unref (entries);
}

/* use_ema false: the plain weights even when an EMA copy is there. */
static void
test_use_ema_false (void)
{
    GArray *entries = NULL;
    g_autofree char *dir = sparse_with_fixture_config ("no-ema", "ldm-sr-tiny", &entries, true);
    if (!dir)
        return;
    g_autofree char *config = g_build_filename (dir, "config.yaml", NULL);
    g_autofree char *text = NULL;
    g_assert_true (g_file_get_contents (config, &text, NULL, NULL));
    g_auto (GStrv) parts = g_strsplit (text, "timesteps: 1000", 0);
    g_autofree char *changed = g_strjoinv ("timesteps: 1000\n    use_ema: false", parts);
    g_assert_true (g_file_set_contents (config, changed, -1, NULL));
    g_autofree char *path = write_sparse_safetensors (dir, "model.safetensors", entries);
    g_autoptr (GError) error = NULL;
    g_autoptr (LdmModel) model = ldm_model_load (path, &error);
    g_assert_no_error (error);
    g_assert_false (model->uses_ema);
    g_assert_cmpstr (model_unet_tensor (model, "out.2.weight")->name, ==,
                     "model.diffusion_model.out.2.weight");
    g_autofree char *description = ldm_model_describe (model);
    g_assert_nonnull (strstr (description, "use_ema false"));
    g_array_unref (entries);
}

static void
test_unknown_kind (void)
{
    g_autofree char *vq = shared_path ("model-configs", "vq-f4.yaml", NULL);
    g_autofree char *x4 = shared_path ("model-configs", "sd2_x4-upscaling.yaml", NULL);
    if (!vq || !x4)
        return;
    g_autofree char *dir = make_dir ("unknown");
    LdmModelConfig c;
    model_config_preset (LDM_PRESET_LDM_BSR_SR, &c);
    g_autoptr (GArray) entries = entries_for (&c, "F16");
    g_autofree char *path = write_sparse_safetensors (dir, "model.safetensors", entries);
    g_autofree char *config = g_build_filename (dir, "config.yaml", NULL);
    copy_file (vq, config);
    assert_load_fails (path, LDM_ERROR_UNSUPPORTED,
                       "not an inpainting or super-resolution model", "no UNetModel");
    copy_file (x4, config);
    assert_load_fails (path, LDM_ERROR_UNSUPPORTED,
                       "not an inpainting or super-resolution model", "LatentUpscaleDiffusion");
}

int
main (int argc, char **argv)
{
    g_test_init (&argc, &argv, NULL);

    g_test_add_func ("/model/fixtures/load", test_fixtures_load);
    g_test_add_func ("/model/fixtures/cond-stage-copy", test_fixture_cond_stage_copy);
    g_test_add_func ("/model/fixtures/without-config", test_fixture_without_config);
    g_test_add_func ("/model/config/beside", test_config_beside);
    g_test_add_func ("/model/recognise/presets", test_recognise_presets);
    g_test_add_func ("/model/recognise/ema-only", test_recognise_ema_only);
    g_test_add_func ("/model/recognise/not-a-model", test_recognise_not_a_model);
    g_test_add_func ("/model/errors/missing-tensor", test_missing_tensor);
    g_test_add_func ("/model/errors/wrong-shape", test_wrong_shape);
    g_test_add_func ("/model/errors/partial-ema", test_partial_ema);
    g_test_add_func ("/model/ema/use-ema-false", test_use_ema_false);
    g_test_add_func ("/model/errors/unknown-kind", test_unknown_kind);

    return test_run_in_temp_dir ("ldm-model-XXXXXX", &temp_dir);
}
