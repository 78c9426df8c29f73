/* test_autoencoder: the first stages on oneDNN against the authors' outputs in the fixtures:
 * VQ-f4 (encode, codebook indices, quantised latent, decode with and without quantisation)
 * and KL-f8 (posterior mean, log-variance, std, decode). */
#include "nn/autoencoder.h"
#include "testutil.h"

#include <math.h>
#include <string.h>

#define TOLERANCE 1e-4

static LdmAutoencoderConfig
vq_tiny_config (void)
{
    return (LdmAutoencoderConfig) { .kind = LDM_AUTOENCODER_VQ, .embed_dim = 3, .n_embed = 64,
                                    .z_channels = 3, .ch = 32, .ch_mult = { 1, 2, 1 },
                                    .n_levels = 3, .num_res_blocks = 1, .in_channels = 3,
                                    .out_ch = 3, .resolution = 256, .mid_attention = true };
}

static LdmAutoencoderConfig
kl_tiny_config (void)
{
    return (LdmAutoencoderConfig) { .kind = LDM_AUTOENCODER_KL, .embed_dim = 4, .z_channels = 4,
                                    .double_z = true, .ch = 32, .ch_mult = { 1, 2, 2, 2 },
                                    .n_levels = 4, .num_res_blocks = 1, .in_channels = 3,
                                    .out_ch = 3, .resolution = 256, .mid_attention = true };
}

typedef struct {
    const char *fixture, *weights_file;
} AeCase;

typedef struct {
    LdmTensorFile *model, *ref;
    Dnn           *dnn;
    Autoencoder   *ae;
    TestWeights    tw;
} Fixture;

static gboolean
fixture_open (Fixture *f, const AeCase *c, const LdmAutoencoderConfig *config)
{
    memset (f, 0, sizeof *f);
    if (!fixture_files_open (c->fixture, c->weights_file, &f->model, &f->ref, &f->dnn))
        return FALSE;
    g_autoptr (GError) error = NULL;
    f->tw = (TestWeights) { f->model, "first_stage_model.", NULL };
    Weights w = test_weights (&f->tw);
    f->ae = autoencoder_new (f->dnn, config, &w, &error);
    g_assert_no_error (error);
    return TRUE;
}

static void
fixture_close (Fixture *f)
{
    autoencoder_free (f->ae);
    fixture_files_close (f->model, f->ref, f->dnn);
}

static void
compare_act (Fixture *f, const Act *got, const char *name)
{
    size_t n;
    g_autofree float *want = ref_read (f->ref, name, &n);
    g_assert_cmpuint (n, ==, act_numel (got));
    g_autofree float *nchw = act_to_nchw (got);
    assert_close (name, nchw, want, n, TOLERANCE);
}

static void
compare_indices (Fixture *f, const int *indices, size_t n, const char *name)
{
    size_t n_want;
    g_autofree float *want = ref_read (f->ref, name, &n_want);
    g_assert_cmpuint (n_want, ==, n);
    size_t wrong = 0;
    for (size_t i = 0; i < n; i++)
        wrong += indices[i] != (int) want[i];
    g_test_message ("%s: %zu of %zu codebook indices differ", name, wrong, n);
    g_assert_cmpuint (wrong, ==, 0);
}

/* quantize -> decode of a latent, compared at every stage. */
static void
check_vq_decode (Fixture *f, const Act *z, const char *prefix)
{
    g_autoptr (GError) error = NULL;
    Act quant = { 0 }, dec = { 0 }, dec_noquant = { 0 };
    size_t pixels = (size_t) z->n * z->h * z->w;
    g_autofree int *indices = g_new (int, pixels);
    g_assert_true (autoencoder_quantize (f->ae, z, &quant, indices, &error));
    g_autofree char *n_idx = g_strconcat (prefix, ".indices", NULL);
    g_autofree char *n_quant = g_strconcat (prefix, ".quant", NULL);
    compare_indices (f, indices, pixels, n_idx);
    compare_act (f, &quant, n_quant);
    g_assert_true (autoencoder_decode (f->ae, &quant, &dec, &error));
    g_autofree char *n_dec = g_strconcat (prefix, strcmp (prefix, "ae") ? ".image" : ".dec", NULL);
    compare_act (f, &dec, n_dec);
    g_assert_true (autoencoder_decode (f->ae, z, &dec_noquant, &error));
    g_autofree char *n_nq = g_strconcat (prefix, strcmp (prefix, "ae") ? ".image_noquant"
                                                                        : ".dec_noquant", NULL);
    if (ldm_tensor_file_lookup (f->ref, n_nq))
        compare_act (f, &dec_noquant, n_nq);
    act_free (&quant);
    act_free (&dec);
    act_free (&dec_noquant);
}

static void
test_vq (gconstpointer data)
{
    const AeCase *c = data;
    LdmAutoencoderConfig config = vq_tiny_config ();
    Fixture f;
    if (!fixture_open (&f, c, &config))
        return;
    g_autoptr (GError) error = NULL;
    Act x = { 0 }, h = { 0 };
    ref_read_act (f.ref, "ae.x", &x);
    g_assert_true (autoencoder_encode (f.ae, &x, &h, &error));
    g_assert_no_error (error);
    compare_act (&f, &h, "ae.h");
    check_vq_decode (&f, &h, "ae");
    act_free (&x);
    act_free (&h);

    bool inpaint = strcmp (c->fixture, "ldm-inpaint-tiny") == 0;
    if (inpaint) { /* the conditioning: the masked image encoded, not quantised */
        Act masked = { 0 }, enc = { 0 };
        ref_read_act (f.ref, "input.masked_image", &masked);
        g_assert_true (autoencoder_encode (f.ae, &masked, &enc, &error));
        compare_act (&f, &enc, "cond.enc_masked");
        act_free (&masked);
        act_free (&enc);
    }
    const char *runs[2] = { inpaint ? "" : "eta0.", inpaint ? NULL : "eta1." };
    for (int i = 0; i < 2 && runs[i]; i++) {
        Act samples = { 0 };
        g_autofree char *n_samples = g_strconcat (runs[i], "ddim.samples", NULL);
        g_autofree char *prefix = g_strconcat (runs[i], "decode", NULL);
        ref_read_act (f.ref, n_samples, &samples);
        check_vq_decode (&f, &samples, prefix);
        act_free (&samples);
    }
    fixture_close (&f);
}

static void
test_kl (gconstpointer data)
{
    const AeCase *c = data;
    LdmAutoencoderConfig config = kl_tiny_config ();
    Fixture f;
    if (!fixture_open (&f, c, &config))
        return;
    g_autoptr (GError) error = NULL;
    Act x = { 0 }, moments = { 0 }, mean = { 0 }, dec = { 0 }, z = { 0 };
    ref_read_act (f.ref, "ae.x", &x);
    g_assert_true (autoencoder_encode (f.ae, &x, &moments, &error));
    g_assert_no_error (error);
    g_assert_cmpint (moments.c, ==, 8);
    size_t pixels = (size_t) moments.n * moments.h * moments.w;
    g_assert_true (act_alloc (&mean, moments.n, moments.h, moments.w, 4, NULL));
    Act logvar = mean, std = mean;
    logvar.data = g_new (float, pixels * 4);
    std.data = g_new (float, pixels * 4);
    for (size_t p = 0; p < pixels; p++)
        for (int k = 0; k < 4; k++) {
            mean.data[p * 4 + k] = moments.data[p * 8 + k];
            float lv = CLAMP (moments.data[p * 8 + 4 + k], -30.0f, 20.0f);
            logvar.data[p * 4 + k] = lv;
            std.data[p * 4 + k] = expf (0.5f * lv);
        }
    compare_act (&f, &mean, "ae.mean");
    compare_act (&f, &logvar, "ae.logvar");
    compare_act (&f, &std, "ae.std");
    g_assert_true (autoencoder_decode (f.ae, &mean, &dec, &error));
    compare_act (&f, &dec, "ae.dec");
    act_free (&dec);

    ref_read_act (f.ref, "decode.latent_unscaled", &z);
    g_assert_true (autoencoder_decode (f.ae, &z, &dec, &error));
    compare_act (&f, &dec, "decode.image");
    act_free (&x);
    act_free (&moments);
    act_free (&mean);
    act_free (&logvar);
    act_free (&std);
    act_free (&dec);
    act_free (&z);
    fixture_close (&f);
}

int
main (int argc, char **argv)
{
    g_test_init (&argc, &argv, NULL);
    static AeCase cases[6];
    const char *files[2] = { "model.ckpt", "model.safetensors" };
    const char *fixtures[3] = { "ldm-inpaint-tiny", "ldm-sr-tiny", "sd-inpaint-tiny" };
    for (int i = 0; i < 6; i++) {
        cases[i] = (AeCase) { fixtures[i % 3], files[i / 3] };
        g_autofree char *path = g_strdup_printf ("/autoencoder/%s/%s", cases[i].fixture,
                                                 cases[i].weights_file);
        g_test_add_data_func (path, &cases[i], i % 3 == 2 ? test_kl : test_vq);
    }
    return g_test_run ();
}
