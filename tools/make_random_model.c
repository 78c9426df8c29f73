/* make-random-model: writes a model with the architecture of a published checkpoint and
 * random weights, for benchmarks and memory measurements of full-size models.
 *
 *   make-random-model PRESET OUTPUT.safetensors [--f16] [--seed N]
 *   PRESET: inpainting_big | bsr_sr | sd15_inpainting
 *
 * Weights: U(-a, a) with a = sqrt(3 / fan_in) / 2, norms gamma 1 beta 0, biases 0, codebook
 * N(0, 1). No config is written: the engine recognises the preset from the shapes.
 */
#include "model_config.h"
#include "sampler.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    char    name[192];
    int     ndim;
    int64_t shape[4];
} Entry;

static void
add_params (GArray *out, GArray *params, const char *prefix)
{
    for (guint i = 0; i < params->len; i++) {
        const LdmParamSpec *p = &g_array_index (params, LdmParamSpec, i);
        Entry e = { .ndim = p->ndim };
        g_snprintf (e.name, sizeof e.name, "%s%s", prefix, p->name);
        memcpy (e.shape, p->shape, sizeof e.shape);
        g_array_append_val (out, e);
    }
}

static uint16_t
float_to_half (float f)
{
    uint32_t x;
    memcpy (&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, e = (x >> 23) & 0xff;
    int exp = (int) e - 127 + 15;
    uint32_t mant = x & 0x7fffff;
    if (exp <= 0)
        return (uint16_t) sign; /* tiny values flush to zero: fine for random weights */
    if (exp >= 31)
        return (uint16_t) (sign | 0x7c00);
    uint32_t h = sign | ((uint32_t) exp << 10) | (mant >> 13);
    if (mant & 0x1000) /* round half up */
        h++;
    return (uint16_t) h;
}

int
main (int argc, char **argv)
{
    if (argc < 3) {
        fputs ("usage: make-random-model PRESET OUTPUT.safetensors [--f16] [--seed N]\n", stderr);
        return 2;
    }
    LdmPreset preset = LDM_PRESET_COUNT;
    for (LdmPreset p = 0; p < LDM_PRESET_COUNT; p++)
        if (strcmp (argv[1], model_config_preset_name (p)) == 0)
            preset = p;
    if (preset == LDM_PRESET_COUNT) {
        fprintf (stderr, "make-random-model: unknown preset '%s'\n", argv[1]);
        return 2;
    }
    bool f16 = false;
    uint64_t seed = 1;
    for (int i = 3; i < argc; i++) {
        if (strcmp (argv[i], "--f16") == 0)
            f16 = true;
        else if (strcmp (argv[i], "--seed") == 0 && i + 1 < argc)
            seed = g_ascii_strtoull (argv[++i], NULL, 10);
    }
    LdmModelConfig config;
    model_config_preset (preset, &config);
    g_autoptr (GArray) entries = g_array_new (FALSE, FALSE, sizeof (Entry));
    g_autoptr (GArray) unet = model_config_unet_params (&config.unet);
    g_autoptr (GArray) ae = model_config_autoencoder_params (&config.first_stage);
    add_params (entries, unet, "model.diffusion_model.");
    add_params (entries, ae, "first_stage_model.");

    size_t esize = f16 ? 2 : 4;
    GString *header = g_string_new ("{");
    uint64_t offset = 0;
    for (guint i = 0; i < entries->len; i++) {
        const Entry *e = &g_array_index (entries, Entry, i);
        uint64_t n = 1;
        g_string_append_printf (header, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", i ? "," : "",
                                e->name, f16 ? "F16" : "F32");
        for (int d = 0; d < e->ndim; d++) {
            g_string_append_printf (header, d ? ",%" G_GINT64_FORMAT : "%" G_GINT64_FORMAT,
                                    e->shape[d]);
            n *= (uint64_t) e->shape[d];
        }
        g_string_append_printf (header, "],\"data_offsets\":[%" G_GUINT64_FORMAT ",%" G_GUINT64_FORMAT "]}",
                                offset, offset + n * esize);
        offset += n * esize;
    }
    g_string_append (header, "}");
    while (header->len % 8)
        g_string_append_c (header, ' ');

    FILE *out = fopen (argv[2], "wb");
    if (!out) {
        fprintf (stderr, "make-random-model: %s: %s\n", argv[2], g_strerror (errno));
        return 1;
    }
    uint64_t header_len = header->len;
    fwrite (&header_len, 8, 1, out);
    fwrite (header->str, 1, header->len, out);
    Rng rng;
    rng_seed (&rng, seed);
    uint64_t params = 0;
    for (guint i = 0; i < entries->len; i++) {
        const Entry *e = &g_array_index (entries, Entry, i);
        size_t n = 1;
        for (int d = 0; d < e->ndim; d++)
            n *= (size_t) e->shape[d];
        params += n;
        float *v = g_new (float, n);
        /* every 1-d weight is a norm's gamma (GroupNorm/LayerNorm), every bias starts at 0 */
        bool is_norm = g_str_has_suffix (e->name, ".weight") && e->ndim == 1;
        bool is_bias = g_str_has_suffix (e->name, ".bias");
        if (strstr (e->name, "quantize.embedding")) {
            rng_normal (&rng, v, n);
        } else if (is_bias || e->ndim == 1) {
            for (size_t j = 0; j < n; j++)
                v[j] = is_norm && !is_bias ? 1.0f : 0.0f;
        } else {
            double fan_in = (double) n / (double) e->shape[0];
            float a = (float) (sqrt (3.0 / fan_in) / 2.0);
            rng_normal (&rng, v, n); /* uniform from normal via the error function */
            for (size_t j = 0; j < n; j++)
                v[j] = a * (float) erf (v[j] / sqrt (2.0)) ;
        }
        if (f16) {
            uint16_t *h = g_new (uint16_t, n);
            for (size_t j = 0; j < n; j++)
                h[j] = float_to_half (v[j]);
            fwrite (h, 2, n, out);
            g_free (h);
        } else {
            fwrite (v, 4, n, out);
        }
        g_free (v);
    }
    if (fclose (out) != 0) {
        fprintf (stderr, "make-random-model: %s: write failed\n", argv[2]);
        return 1;
    }
    fprintf (stderr, "%s: %s, %u tensors, %" G_GUINT64_FORMAT " parameters\n", argv[2], argv[1],
             entries->len, params);
    g_string_free (header, TRUE);
    return 0;
}
