/* random_model.c: see random_model.h. */
#include "random_model.h"

#include "nn/clip_text.h"
#include "run/sampler.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
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

static void
add_entry (GArray *out, int ndim, int64_t d0, int64_t d1, const char *format, ...)
    G_GNUC_PRINTF (5, 6);

static void
add_entry (GArray *out, int ndim, int64_t d0, int64_t d1, const char *format, ...)
{
    Entry e = { .ndim = ndim, .shape = { d0, d1 } };
    va_list args;
    va_start (args, format);
    g_autofree char *name = g_strdup_vprintf (format, args);
    va_end (args);
    g_snprintf (e.name, sizeof e.name, "%s%s", LDM_CLIP_TEXT_PREFIX, name);
    g_array_append_val (out, e);
}

/* CLIPTextModel's parameters (not the position_ids buffer: it is not a weight). */
static void
add_text_encoder (GArray *out, const RandomTextEncoder *t)
{
    int w = t->width, mlp = 4 * t->width;
    add_entry (out, 2, 49408, w, "embeddings.token_embedding.weight");
    add_entry (out, 2, LDM_CLIP_TOKENS, w, "embeddings.position_embedding.weight");
    static const char *const projs[] = { "q_proj", "k_proj", "v_proj", "out_proj" };
    for (int i = 0; i < t->layers; i++) {
        for (size_t p = 0; p < G_N_ELEMENTS (projs); p++) {
            add_entry (out, 2, w, w, "encoder.layers.%d.self_attn.%s.weight", i, projs[p]);
            add_entry (out, 1, w, 0, "encoder.layers.%d.self_attn.%s.bias", i, projs[p]);
        }
        for (int n = 1; n <= 2; n++) {
            add_entry (out, 1, w, 0, "encoder.layers.%d.layer_norm%d.weight", i, n);
            add_entry (out, 1, w, 0, "encoder.layers.%d.layer_norm%d.bias", i, n);
        }
        add_entry (out, 2, mlp, w, "encoder.layers.%d.mlp.fc1.weight", i);
        add_entry (out, 1, mlp, 0, "encoder.layers.%d.mlp.fc1.bias", i);
        add_entry (out, 2, w, mlp, "encoder.layers.%d.mlp.fc2.weight", i);
        add_entry (out, 1, w, 0, "encoder.layers.%d.mlp.fc2.bias", i);
    }
    add_entry (out, 1, w, 0, "final_layer_norm.weight");
    add_entry (out, 1, w, 0, "final_layer_norm.bias");
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

static uint64_t
entry_numel (const Entry *e)
{
    uint64_t n = 1;
    for (int d = 0; d < e->ndim; d++)
        n *= (uint64_t) e->shape[d];
    return n;
}

gboolean
random_model_write (const LdmModelConfig *config, const char *path, bool f16, uint64_t seed,
                    RandomModelStats *stats, GError **error)
{
    return random_model_write_with_text (config, NULL, path, f16, seed, stats, error);
}

gboolean
random_model_write_with_text (const LdmModelConfig *config, const RandomTextEncoder *text,
                              const char *path, bool f16, uint64_t seed, RandomModelStats *stats,
                              GError **error)
{
    g_autoptr (GArray) entries = g_array_new (FALSE, FALSE, sizeof (Entry));
    if (config->has_unet) {
        g_autoptr (GArray) unet = model_config_unet_params (&config->unet);
        add_params (entries, unet, LDM_UNET_PREFIX);
    }
    if (config->has_first_stage) {
        g_autoptr (GArray) ae = model_config_autoencoder_params (&config->first_stage);
        add_params (entries, ae, LDM_FIRST_STAGE_PREFIX);
    }
    if (text)
        add_text_encoder (entries, text);

    size_t esize = f16 ? 2 : 4;
    g_autoptr (GString) header = g_string_new ("{");
    uint64_t offset = 0;
    for (guint i = 0; i < entries->len; i++) {
        const Entry *e = &g_array_index (entries, Entry, i);
        g_string_append_printf (header, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", i ? "," : "",
                                e->name, f16 ? "F16" : "F32");
        for (int d = 0; d < e->ndim; d++)
            g_string_append_printf (header, d ? ",%" G_GINT64_FORMAT : "%" G_GINT64_FORMAT,
                                    e->shape[d]);
        uint64_t bytes = entry_numel (e) * esize;
        g_string_append_printf (header,
                                "],\"data_offsets\":[%" G_GUINT64_FORMAT ",%" G_GUINT64_FORMAT
                                "]}",
                                offset, offset + bytes);
        offset += bytes;
    }
    g_string_append (header, "}");
    while (header->len % 8)
        g_string_append_c (header, ' ');

    FILE *out = fopen (path, "wb");
    if (!out) {
        int e = errno;
        g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (e), "%s: %s", path,
                     g_strerror (e));
        return FALSE;
    }
    uint64_t header_len = header->len;
    gboolean ok = fwrite (&header_len, 8, 1, out) == 1
                  && fwrite (header->str, 1, header->len, out) == header->len;
    Rng rng;
    rng_seed (&rng, seed);
    uint64_t params = 0;
    for (guint i = 0; ok && i < entries->len; i++) {
        const Entry *e = &g_array_index (entries, Entry, i);
        size_t n = (size_t) entry_numel (e);
        params += n;
        float *v = g_try_malloc_n (n ? n : 1, sizeof (float));
        if (!v) {
            g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_NOMEM, "%s: no memory for %s", path,
                         e->name);
            fclose (out);
            return FALSE;
        }
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
                v[j] = a * (float) erf (v[j] / sqrt (2.0));
        }
        if (f16) {
            uint16_t *h = g_try_malloc_n (n ? n : 1, sizeof (uint16_t));
            for (size_t j = 0; h && j < n; j++)
                h[j] = float_to_half (v[j]);
            ok = h && fwrite (h, 2, n, out) == n;
            g_free (h);
        } else {
            ok = fwrite (v, 4, n, out) == n;
        }
        g_free (v);
    }
    if (fclose (out) != 0 || !ok) {
        g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_IO, "%s: write failed", path);
        return FALSE;
    }
    if (stats)
        *stats = (RandomModelStats) { entries->len, params };
    return TRUE;
}
