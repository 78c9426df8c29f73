/* test_unet: the U-Net on oneDNN against the authors' PyTorch outputs stored in the fixtures
 * (timestep embedding, time MLP, U-Net outputs at several t, EMA vs raw weights, CFG batch). */
#include "testutil.h"
#include "nn/unet.h"

#include <math.h>
#include <string.h>

#define TOLERANCE 1e-4

typedef struct {
    const char   *fixture;
    const char   *weights_file;
    LdmUnetConfig config;
} UnetCase;

/* The fixtures' configs (their config.yaml), written out here; num_heads etc. -1 where the
 * config leaves them to the other, conv_resample true and transformer_depth 1 as CompVis's
 * defaults. */
static LdmUnetConfig
inpaint_tiny_config (void)
{
    return (LdmUnetConfig) { .in_channels = 7, .out_channels = 3, .model_channels = 32,
                             .channel_mult = { 1, 2 }, .n_levels = 2, .num_res_blocks = 2,
                             .attention_resolutions = { 2 }, .n_attention_resolutions = 1,
                             .num_heads = 2, .num_head_channels = -1, .num_heads_upsample = -1,
                             .resblock_updown = true, .conv_resample = true, .legacy = true,
                             .transformer_depth = 1 };
}

static LdmUnetConfig
sr_tiny_config (void)
{
    return (LdmUnetConfig) { .in_channels = 6, .out_channels = 3, .model_channels = 32,
                             .channel_mult = { 1, 2, 2 }, .n_levels = 3, .num_res_blocks = 1,
                             .attention_resolutions = { 2 }, .n_attention_resolutions = 1,
                             .num_heads = -1, .num_head_channels = 8, .num_heads_upsample = -1,
                             .conv_resample = true, .legacy = true, .transformer_depth = 1 };
}

static LdmUnetConfig
sd_tiny_config (void)
{
    return (LdmUnetConfig) { .in_channels = 9, .out_channels = 4, .model_channels = 32,
                             .channel_mult = { 1, 2 }, .n_levels = 2, .num_res_blocks = 1,
                             .attention_resolutions = { 1 }, .n_attention_resolutions = 1,
                             .num_heads = 4, .num_head_channels = -1, .num_heads_upsample = -1,
                             .conv_resample = true, .use_spatial_transformer = true,
                             .transformer_depth = 1, .context_dim = 64, .legacy = false };
}

typedef struct {
    LdmTensorFile *model, *ref;
    Dnn           *dnn;
    Unet          *unet;
    TestWeights    tw;
} Fixture;

static gboolean
fixture_open_in (Fixture *f, const char *fixture, const char *weights_file,
                 const LdmUnetConfig *config, bool ema, bool bf16)
{
    memset (f, 0, sizeof *f);
    if (!fixture_files_open (fixture, weights_file, &f->model, &f->ref, &f->dnn))
        return FALSE;
    g_autoptr (GError) error = NULL;
    if (bf16) {
        dnn_free (f->dnn);
        f->dnn = dnn_new (true, &error);
        g_assert_no_error (error);
    }
    f->tw = (TestWeights) { f->model, "model.diffusion_model.", ema ? "model_ema." : NULL };
    Weights w = test_weights (&f->tw);
    f->unet = unet_new (f->dnn, config, &w, &error);
    g_assert_no_error (error);
    return TRUE;
}

static gboolean
fixture_open (Fixture *f, const char *fixture, const char *weights_file,
              const LdmUnetConfig *config, bool ema)
{
    return fixture_open_in (f, fixture, weights_file, config, ema, false);
}

static void
fixture_close (Fixture *f)
{
    unet_free (f->unet);
    fixture_files_close (f->model, f->ref, f->dnn);
}

/* eps for input tensor `in_name` at t, compared with `eps_name`; returns the relative error. */
static double
check_unet (Fixture *f, const char *in_name, float t, const char *eps_name, gboolean must_match)
{
    Act in = { 0 }, out = { 0 };
    ref_read_act (f->ref, in_name, &in);
    size_t n_want;
    g_autofree float *want = ref_read (f->ref, eps_name, &n_want);
    g_autoptr (GError) error = NULL;
    g_assert_true (act_alloc (&out, in.n, in.h, in.w, (int) (n_want / ((size_t) in.h * in.w)),
                              NULL));
    g_assert_true (unet_forward (f->unet, &in, &t, NULL, 0, &out, &error));
    g_assert_no_error (error);
    g_autofree float *got = act_to_nchw (&out);
    double rel;
    if (must_match) {
        rel = assert_close (eps_name, got, want, n_want, TOLERANCE);
    } else {
        double worst = 0;
        for (size_t i = 0; i < n_want; i++)
            worst = MAX (worst, ABS (got[i] - want[i]));
        rel = worst;
        g_test_message ("%s: differs by %.3g (must differ)", eps_name, worst);
        g_assert_cmpfloat (worst, >, 1e-3);
    }
    act_free (&in);
    act_free (&out);
    return rel;
}

static void
test_tembed (gconstpointer data)
{
    const UnetCase *c = data;
    Fixture f;
    if (!fixture_open (&f, c->fixture, c->weights_file, &c->config, true))
        return;
    int mc = c->config.model_channels;
    float emb[64];
    unet_timestep_embedding (981.0f, mc, emb);
    g_autofree float *want = ref_read (f.ref, "tembed.t981", NULL);
    assert_close ("tembed.t981", emb, want, mc, 1e-6);

    g_autofree float *mlp = g_new (float, 4 * mc);
    g_autoptr (GError) error = NULL;
    g_assert_true (unet_time_mlp (f.unet, 981.0f, mlp, &error));
    g_autofree float *want_mlp = ref_read (f.ref, "tembed.t981.mlp", NULL);
    assert_close ("tembed.t981.mlp", mlp, want_mlp, 4 * mc, TOLERANCE);
    fixture_close (&f);
}

static void
test_unet_outputs (gconstpointer data)
{
    const UnetCase *c = data;
    Fixture f;
    if (!fixture_open (&f, c->fixture, c->weights_file, &c->config, true))
        return;
    check_unet (&f, "unet.t1.in", 1, "unet.t1.eps", TRUE);
    check_unet (&f, "unet.t500.in", 500, "unet.t500.eps", TRUE);
    check_unet (&f, "unet.t981.in", 981, "unet.t981.eps", TRUE);
    /* The raw weights give a different result: the authors sample with EMA. */
    check_unet (&f, "unet.t500.in", 500, "raw.unet.t500.eps", FALSE);
    fixture_close (&f);

    /* ...and the raw weights reproduce the raw reference. */
    if (!fixture_open (&f, c->fixture, c->weights_file, &c->config, false))
        return;
    check_unet (&f, "unet.t500.in", 500, "raw.unet.t500.eps", TRUE);
    fixture_close (&f);
}

/* bf16 where the CPU has AVX512-BF16 or AMX: convolutions, linear layers and attention on
 * bfloat16 (8 significant bits) stay within 1 % (relative L2) of the authors' fp32 eps, and
 * differ from it by more than fp32's own rounding (so bfloat16 did run). */
static void
test_unet_bf16 (gconstpointer data)
{
    const UnetCase *c = data;
    if (!dnn_bf16_supported ()) {
        g_test_skip ("this CPU has no AVX512-BF16 or AMX: the engine runs fp32");
        return;
    }
    Fixture f;
    if (!fixture_open_in (&f, c->fixture, c->weights_file, &c->config, true, true))
        return;
    const char *names[3][2] = { { "unet.t1.in", "unet.t1.eps" }, { "unet.t500.in", "unet.t500.eps" },
                                { "unet.t981.in", "unet.t981.eps" } };
    const float ts[3] = { 1, 500, 981 };
    for (int i = 0; i < 3; i++) {
        Act in = { 0 }, out = { 0 };
        ref_read_act (f.ref, names[i][0], &in);
        size_t n;
        g_autofree float *want = ref_read (f.ref, names[i][1], &n);
        g_autoptr (GError) error = NULL;
        g_assert_true (act_alloc (&out, in.n, in.h, in.w, (int) (n / ((size_t) in.h * in.w)),
                                  NULL));
        g_assert_true (unet_forward (f.unet, &in, &ts[i], NULL, 0, &out, &error));
        g_assert_no_error (error);
        g_autofree float *got = act_to_nchw (&out);
        double diff = 0, norm = 0;
        for (size_t j = 0; j < n; j++) {
            diff += ((double) got[j] - want[j]) * ((double) got[j] - want[j]);
            norm += (double) want[j] * want[j];
        }
        double rel = sqrt (diff / norm);
        g_test_message ("%s in bfloat16: relative L2 error %.2e", names[i][1], rel);
        g_assert_cmpfloat (rel, <, 1e-2);
        g_assert_cmpfloat (rel, >, 1e-5);
        act_free (&in);
        act_free (&out);
    }
    fixture_close (&f);
}

/* dnn_attention against a double-precision softmax(scale Q K^T) V, on operands laid out as
 * the U-Net's are (heads side by side in a row wider than heads x d), with and without the
 * causal mask: fp32 within float rounding; bf16 (where the CPU has it) within 2 % and not
 * fp32's result (it did run in bfloat16). */
static void
test_attention (void)
{
    enum { HEADS = 3, D = 40, TQ = 37, TK = 53, ROW = HEADS * D + 8, OUT_ROW = HEADS * D + 5 };
    g_autofree float *q = g_new (float, (size_t) TQ * ROW), *k = g_new (float, (size_t) TK * ROW),
                     *v = g_new (float, (size_t) TK * ROW);
    guint32 state = 12345;
    float *all[3] = { q, k, v };
    size_t lens[3] = { (size_t) TQ * ROW, (size_t) TK * ROW, (size_t) TK * ROW };
    for (int a = 0; a < 3; a++)
        for (size_t i = 0; i < lens[a]; i++) {
            state = state * 1664525u + 1013904223u;
            all[a][i] = (float) ((state >> 8) / 16777216.0 * 4.0 - 2.0);
        }
    const float scale = 1.0f / sqrtf ((float) D);
    for (int causal = 0; causal < 2; causal++) {
        int tk = causal ? TQ : TK; /* causal: as many keys as queries */
        g_autofree double *want = g_new0 (double, (size_t) TQ * OUT_ROW);
        for (int h = 0; h < HEADS; h++)
            for (int i = 0; i < TQ; i++) {
                double s[TK], max = -INFINITY, sum = 0;
                int n = causal ? i + 1 : tk;
                for (int j = 0; j < n; j++) {
                    double dot = 0;
                    for (int c = 0; c < D; c++)
                        dot += (double) q[i * ROW + h * D + c] * k[j * ROW + h * D + c];
                    s[j] = dot * scale;
                    max = MAX (max, s[j]);
                }
                for (int j = 0; j < n; j++)
                    sum += (s[j] = exp (s[j] - max));
                for (int c = 0; c < D; c++) {
                    double o = 0;
                    for (int j = 0; j < n; j++)
                        o += s[j] / sum * v[j * ROW + h * D + c];
                    want[i * OUT_ROW + h * D + c] = o;
                }
            }
        for (int bf16 = 0; bf16 < 2; bf16++) {
            if (bf16 && !dnn_bf16_supported ()) {
                g_test_message ("no AVX512-BF16 or AMX: bf16 attention not run");
                continue;
            }
            g_autoptr (GError) error = NULL;
            Dnn *dnn = dnn_new (bf16, &error);
            g_assert_no_error (error);
            g_autofree float *out = g_new0 (float, (size_t) TQ * OUT_ROW);
            gboolean ok = causal ? dnn_attention_causal (dnn, q, ROW, k, ROW, v, ROW, D, HEADS, D,
                                                         TQ, out, OUT_ROW, scale, &error)
                                 : dnn_attention (dnn, q, ROW, k, ROW, v, ROW, D, HEADS, D, TQ,
                                                  tk, out, OUT_ROW, scale, &error);
            g_assert_no_error (error);
            g_assert_true (ok);
            double diff = 0, norm = 0;
            for (int i = 0; i < TQ; i++)
                for (int c = 0; c < HEADS * D; c++) {
                    double e = out[i * OUT_ROW + c] - want[i * OUT_ROW + c];
                    diff += e * e;
                    norm += want[i * OUT_ROW + c] * want[i * OUT_ROW + c];
                }
            double rel = sqrt (diff / norm);
            g_test_message ("attention%s in %s: relative L2 error %.2e", causal ? " (causal)" : "",
                            bf16 ? "bf16" : "fp32", rel);
            if (bf16) {
                g_assert_cmpfloat (rel, <, 2e-2);
                g_assert_cmpfloat (rel, >, 1e-4);
            } else {
                g_assert_cmpfloat (rel, <, 1e-5);
            }
            dnn_free (dnn);
        }
    }
}

/* SD: one CFG step as the authors run it: batch [uncond, cond], the same concat input. */
static void
test_sd_cfg_batch (gconstpointer data)
{
    const UnetCase *c = data;
    Fixture f;
    if (!fixture_open (&f, c->fixture, c->weights_file, &c->config, true))
        return;
    Act x = { 0 }, cc = { 0 }, in = { 0 }, out = { 0 };
    ref_read_act (f.ref, "ddim.x_T", &x);
    ref_read_act (f.ref, "cond.c_concat", &cc);
    size_t ctx_n;
    g_autofree float *ctx = ref_read (f.ref, "cond.context", &ctx_n);
    g_autofree float *uctx = ref_read (f.ref, "cond.uncond_context", NULL);
    int tokens = 77, dim = (int) (ctx_n / 77);

    /* batch of two: [x | c_concat] twice */
    g_assert_true (act_alloc (&in, 2, x.h, x.w, x.c + cc.c, NULL));
    Act one = { in.data, 1, x.h, x.w, in.c };
    act_concat_channels (&x, &cc, &one);
    memcpy (in.data + act_numel (&one), in.data, act_numel (&one) * sizeof (float));
    g_autofree float *contexts = g_new (float, 2 * ctx_n);
    memcpy (contexts, uctx, ctx_n * sizeof (float));
    memcpy (contexts + ctx_n, ctx, ctx_n * sizeof (float));
    float t[2] = { 801, 801 };
    g_assert_true (act_alloc (&out, 2, x.h, x.w, 4, NULL));
    g_autoptr (GError) error = NULL;
    g_assert_true (unet_forward (f.unet, &in, t, contexts, tokens, &out, &error));
    g_assert_no_error (error);
    g_assert_cmpint (dim, ==, c->config.context_dim);

    g_autofree float *got = act_to_nchw (&out);
    size_t half = act_numel (&out) / 2;
    g_autofree float *want_u = ref_read (f.ref, "ddim.step00.eps_uncond", NULL);
    g_autofree float *want_c = ref_read (f.ref, "ddim.step00.eps_cond", NULL);
    assert_close ("ddim.step00.eps_uncond", got, want_u, half, TOLERANCE);
    assert_close ("ddim.step00.eps_cond", got + half, want_c, half, TOLERANCE);
    act_free (&x);
    act_free (&cc);
    act_free (&in);
    act_free (&out);
    fixture_close (&f);
}

/* ------------------------------------------------------------ one plan */

/* unet_new and the parameter list walk one plan (arch/unet_plan.h): the network reads every
 * parameter the list names, with the listed shape, and nothing else. Zero tensors stand in
 * for a file; the lookup records what is asked. */
typedef struct {
    GHashTable *tensors; /* name -> LdmTensor * */
    GHashTable *asked;   /* names unet_new looked up */
} ListedWeights;

static const LdmTensor *
listed_lookup (const void *owner, const char *name)
{
    const ListedWeights *lw = owner;
    g_hash_table_add (lw->asked, g_strdup (name));
    return g_hash_table_lookup (lw->tensors, name);
}

static void
test_reads_the_param_list (gconstpointer data)
{
    const LdmUnetConfig *config = data;
    g_autoptr (GError) error = NULL;
    GArray *params = model_config_unet_params (config);
    g_assert_cmpuint (params->len, >, 0);
    int64_t largest = 1;
    for (guint i = 0; i < params->len; i++) {
        const LdmParamSpec *spec = &g_array_index (params, LdmParamSpec, i);
        int64_t n = 1;
        for (int d = 0; d < spec->ndim; d++)
            n *= spec->shape[d];
        largest = MAX (largest, n);
    }
    g_autofree float *zeros = g_new0 (float, largest);
    g_autofree LdmTensor *tensors = g_new0 (LdmTensor, params->len);
    ListedWeights lw = { g_hash_table_new (g_str_hash, g_str_equal),
                         g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL) };
    for (guint i = 0; i < params->len; i++) {
        const LdmParamSpec *spec = &g_array_index (params, LdmParamSpec, i);
        LdmTensor *t = &tensors[i];
        *t = (LdmTensor) { .name = spec->name, .dtype = LDM_DTYPE_F32, .ndim = spec->ndim,
                           .data = (const uint8_t *) zeros };
        int64_t stride = 1;
        for (int d = spec->ndim - 1; d >= 0; d--) {
            t->shape[d] = spec->shape[d];
            t->stride[d] = stride;
            stride *= spec->shape[d];
        }
        g_assert_true (g_hash_table_insert (lw.tensors, (char *) spec->name, t)); /* unique */
    }
    Dnn *dnn = dnn_new (false, &error);
    g_assert_no_error (error);
    Weights w = { listed_lookup, &lw, "listed U-Net" };
    Unet *unet = unet_new (dnn, config, &w, &error);
    g_assert_no_error (error);
    g_assert_nonnull (unet);
    for (guint i = 0; i < params->len; i++) {
        const char *name = g_array_index (params, LdmParamSpec, i).name;
        if (!g_hash_table_contains (lw.asked, name))
            g_test_fail_printf ("listed parameter '%s' is not read by unet_new", name);
    }
    g_assert_cmpuint (g_hash_table_size (lw.asked), ==, params->len);
    unet_free (unet);
    dnn_free (dnn);
    g_hash_table_unref (lw.tensors);
    g_hash_table_unref (lw.asked);
    g_array_unref (params);
}

/* Variants the fixtures do not cover: plain resampling (conv and pooling), three res blocks,
 * attention at several levels, a linear transformer of depth 2. */
static LdmUnetConfig
variant_config (int which)
{
    LdmUnetConfig c = inpaint_tiny_config ();
    switch (which) {
    case 0:
        c.resblock_updown = false;
        break;
    case 1:
        c.resblock_updown = false;
        c.conv_resample = false;
        c.num_res_blocks = 3;
        c.channel_mult[2] = 4;
        c.n_levels = 3;
        c.attention_resolutions[1] = 1;
        c.n_attention_resolutions = 2;
        break;
    default:
        c = sd_tiny_config ();
        c.use_linear_in_transformer = true;
        c.transformer_depth = 2;
        break;
    }
    return c;
}

int
main (int argc, char **argv)
{
    g_test_init (&argc, &argv, NULL);
    g_test_add_func ("/dnn/attention", test_attention);
    static UnetCase cases[6];
    const char *files[2] = { "model.ckpt", "model.safetensors" };
    for (int i = 0; i < 2; i++) {
        cases[i * 3 + 0] = (UnetCase) { "ldm-inpaint-tiny", files[i], inpaint_tiny_config () };
        cases[i * 3 + 1] = (UnetCase) { "ldm-sr-tiny", files[i], sr_tiny_config () };
        cases[i * 3 + 2] = (UnetCase) { "sd-inpaint-tiny", files[i], sd_tiny_config () };
    }
    for (int i = 0; i < 6; i++) {
        const UnetCase *c = &cases[i];
        g_autofree char *base = g_strdup_printf ("/unet/%s/%s", c->fixture, c->weights_file);
        g_autofree char *p1 = g_strconcat (base, "/tembed", NULL);
        g_test_add_data_func (p1, c, test_tembed);
        if (strcmp (c->fixture, "sd-inpaint-tiny") == 0) {
            g_autofree char *p2 = g_strconcat (base, "/cfg-batch", NULL);
            g_test_add_data_func (p2, c, test_sd_cfg_batch);
        } else {
            g_autofree char *p2 = g_strconcat (base, "/outputs", NULL);
            g_test_add_data_func (p2, c, test_unet_outputs);
            g_autofree char *p3 = g_strconcat (base, "/bf16", NULL);
            g_test_add_data_func (p3, c, test_unet_bf16);
        }
    }
    static LdmUnetConfig plan_cases[6];
    const char *plan_names[6] = { "ldm-inpaint-tiny", "ldm-sr-tiny", "sd-inpaint-tiny",
                                  "plain-resampling", "pooling-3-levels", "linear-depth-2" };
    plan_cases[0] = inpaint_tiny_config ();
    plan_cases[1] = sr_tiny_config ();
    plan_cases[2] = sd_tiny_config ();
    for (int i = 0; i < 3; i++)
        plan_cases[3 + i] = variant_config (i);
    for (int i = 0; i < 6; i++) {
        g_autofree char *path = g_strdup_printf ("/unet/plan/%s/reads-the-param-list",
                                                 plan_names[i]);
        g_test_add_data_func (path, &plan_cases[i], test_reads_the_param_list);
    }
    return g_test_run ();
}
