/* test_nonfinite: a model whose weights hold NaN or infinity fails the run with LDM_ERROR_MODEL
 * and a message naming the model, instead of returning a flat (black) fill.
 *
 * Copies of the tiny fixtures (model.safetensors and config.yaml, written to a temporary
 * folder) with chosen tensors overwritten: every U-Net weight NaN, one U-Net element +inf, the
 * decoder's output convolution NaN; inpainting and upscaling. The unmodified copy must run. */
#include "ldm.h"
#include "testutil.h"

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

typedef enum { POISON_NAN_ALL, POISON_INF_ONE } Poison;

typedef struct {
    const char *fixture;        /* "ldm-inpaint-tiny" */
    const char *const *prefixes; /* tensors whose names start with one of these are poisoned */
    Poison      poison;
    const char *expect;         /* a substring of the message; NULL = the run must succeed */
} Case;

/* Overwrites the tensors of a safetensors image in memory; returns how many were changed. */
static int
poison_tensors (char *data, gsize length, const char *const *prefixes, Poison poison)
{
    g_assert_cmpuint (length, >=, 8);
    guint64 header_len;
    memcpy (&header_len, data, 8);
    g_assert_cmpuint (8 + header_len, <=, length);
    g_autoptr (JsonParser) parser = json_parser_new ();
    g_autoptr (GError) error = NULL;
    g_assert_true (json_parser_load_from_data (parser, data + 8, (gssize) header_len, &error));
    JsonObject *header = json_node_get_object (json_parser_get_root (parser));
    char *buffer = data + 8 + header_len;
    int changed = 0;
    g_autoptr (GList) names = json_object_get_members (header);
    for (GList *l = names; l; l = l->next) {
        const char *name = l->data;
        bool match = false;
        for (int i = 0; prefixes && prefixes[i]; i++)
            match |= g_str_has_prefix (name, prefixes[i]);
        if (!match || !strcmp (name, "__metadata__"))
            continue;
        JsonObject *t = json_object_get_object_member (header, name);
        const char *dtype = json_object_get_string_member (t, "dtype");
        JsonArray *offsets = json_object_get_array_member (t, "data_offsets");
        gint64 begin = json_array_get_int_element (offsets, 0);
        gint64 end = json_array_get_int_element (offsets, 1);
        g_assert_cmpint (end, <=, (gint64) (length - 8 - header_len));
        g_assert_cmpstr (dtype, ==, "F32"); /* the fixtures are float32 */
        float value = poison == POISON_NAN_ALL ? NAN : INFINITY;
        gint64 last = poison == POISON_NAN_ALL ? end : MIN (end, begin + 4);
        for (gint64 p = begin; p + 4 <= last; p += 4)
            memcpy (buffer + p, &value, 4);
        changed++;
    }
    return changed;
}

static void
random_image (LdmImage *image, LdmImage *mask, int size)
{
    *image = (LdmImage) { size, size, 3, g_new (uint8_t, (size_t) size * size * 3) };
    for (size_t i = 0; i < (size_t) size * size * 3; i++)
        image->pixels[i] = (uint8_t) (i * 37 % 251);
    if (mask) {
        *mask = (LdmImage) { size, size, 1, g_new0 (uint8_t, (size_t) size * size) };
        for (int y = size / 4; y < 3 * size / 4; y++)
            memset (mask->pixels + (size_t) y * size + size / 4, 255, size / 2);
    }
}

static void
run_case (gconstpointer data)
{
    const Case *c = data;
    g_auto (FixtureCopy) copy = { 0 };
    if (!fixture_copy_begin (&copy, c->fixture, "ldm-nonfinite-XXXXXX"))
        return;
    g_autoptr (GError) error = NULL;
    g_autofree char *model_path = fixture_copy_path (&copy, "model.safetensors");
    g_autofree char *config_path = fixture_copy_path (&copy, "config.yaml");
    {
        g_autofree char *bytes = NULL, *config = NULL;
        gsize length = 0, config_length = 0;
        g_assert_true (g_file_get_contents (copy.model_src, &bytes, &length, &error));
        g_assert_true (g_file_get_contents (copy.config_src, &config, &config_length, &error));
        int changed = poison_tensors (bytes, length, c->prefixes, c->poison);
        g_test_message ("%d tensors poisoned", changed);
        g_assert_true (c->prefixes == NULL || changed > 0);
        g_assert_true (g_file_set_contents (model_path, bytes, (gssize) length, &error));
        g_assert_true (g_file_set_contents (config_path, config, (gssize) config_length, &error));
    }

    g_autoptr (LdmModel) model = ldm_model_load (model_path, &error);
    g_assert_no_error (error);
    g_autoptr (LdmEngine) engine = ldm_engine_new (model, LDM_PRECISION_FP32, &error);
    g_assert_no_error (error);
    bool sr = ldm_engine_kind (engine) == LDM_MODEL_LDM_SR;
    LdmSampleParams params; /* as users run it: with keep_known, match_colors, color_fix */
    ldm_sample_params_init (&params, sr ? LDM_TASK_UPSCALE : LDM_TASK_INPAINT);
    params.steps = 2;
    params.seed = 7;
    LdmImage image = { 0 }, mask = { 0 }, out = { 0 };
    gboolean ok;
    if (sr) {
        random_image (&image, NULL, 16);
        ok = ldm_upscale (engine, &image, &params, &out, &error);
    } else {
        random_image (&image, &mask, 64);
        ok = ldm_inpaint (engine, &image, &mask, &params, &out, &error);
    }
    if (!c->expect) {
        g_assert_no_error (error);
        g_assert_true (ok);
    } else {
        if (ok) { /* before the checks: a flat fill and success */
            uint8_t lo = 255, hi = 0;
            for (size_t i = 0; i < (size_t) out.width * out.height * out.channels; i++) {
                lo = MIN (lo, out.pixels[i]);
                hi = MAX (hi, out.pixels[i]);
            }
            g_test_fail_printf ("the run succeeded (output levels %u .. %u) instead of failing "
                                "with '%s'", lo, hi, c->expect);
        } else {
            g_test_message ("refused: %s", error->message);
            g_assert_error (error, LDM_ERROR, LDM_ERROR_MODEL);
            g_assert_nonnull (strstr (error->message, model_path)); /* names the model */
            g_assert_nonnull (strstr (error->message, "non-finite"));
            g_assert_nonnull (strstr (error->message, c->expect));
            g_assert_null (out.pixels);
        }
    }
    ldm_image_clear (&image);
    ldm_image_clear (&mask);
    ldm_image_clear (&out);
}

static const char *const unet_all[] = { "model.diffusion_model.", "model_ema.diffusion_model",
                                        NULL };
/* one element of the first weight of the middle block (EMA and raw names) */
static const char *const unet_one[] = { "model.diffusion_model.middle_block.0.in_layers.2.weight",
                                        "model_ema.diffusion_modelmiddle_block0in_layers2weight",
                                        NULL };
static const char *const decoder_out[] = { "first_stage_model.decoder.conv_out.weight", NULL };

static const Case cases[] = {
    { "ldm-inpaint-tiny", NULL, POISON_NAN_ALL, NULL },
    { "ldm-inpaint-tiny", unet_all, POISON_NAN_ALL, "U-Net's output" },
    { "ldm-inpaint-tiny", unet_one, POISON_INF_ONE, "U-Net's output" },
    { "ldm-inpaint-tiny", decoder_out, POISON_NAN_ALL, "decoded image" },
    { "ldm-sr-tiny", NULL, POISON_NAN_ALL, NULL },
    { "ldm-sr-tiny", unet_all, POISON_NAN_ALL, "U-Net's output" },
    { "ldm-sr-tiny", decoder_out, POISON_NAN_ALL, "decoded image" },
};

int
main (int argc, char **argv)
{
    g_test_init (&argc, &argv, NULL);
    static const char *const names[] = { "inpaint/clean", "inpaint/unet-nan", "inpaint/unet-inf",
                                         "inpaint/decoder-nan", "upscale/clean",
                                         "upscale/unet-nan", "upscale/decoder-nan" };
    G_STATIC_ASSERT (G_N_ELEMENTS (names) == G_N_ELEMENTS (cases));
    for (size_t i = 0; i < G_N_ELEMENTS (cases); i++) {
        g_autofree char *path = g_strdup_printf ("/nonfinite/%s", names[i]);
        g_test_add_data_func (path, &cases[i], run_case);
    }
    return g_test_run ();
}
