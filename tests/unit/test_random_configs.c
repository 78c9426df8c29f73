/* test_random_configs: structural fuzzing of the engine.
 *
 * Each case is a random CompVis config.yaml that the config reader accepts (LDM inpainting,
 * LDM super-resolution or Stable Diffusion inpainting; 1 to 8 U-Net levels, 1 to 8 res
 * blocks, attention resolutions, heads or head channels, channel multipliers, spatial
 * transformers of random depth and context size, resampling variants, VQ or KL first stages)
 * with small channel counts, random weights of exactly the shapes the parameter list names
 * (tools/random_model.c, as make-random-model), and one tiny run: ldm_model_load,
 * ldm_engine_new, then ldm_inpaint or ldm_upscale for one or two steps on a random image.
 * A case must succeed; a few deliberately odd ones (valid for the reader, but outside what
 * the engine runs) may instead fail, but only with a GError. Run it in the ASan build.
 *
 *   LDM_FUZZ_SECONDS=N   random cases for N seconds (default 5), after the fixed cases
 *   LDM_FUZZ_SEED=S      the seed of the whole run (default: from the clock; printed)
 *   LDM_FUZZ_CASE=C      run only case C (as printed before each case), with its config
 *
 * Attention only sits where it sees at most 32 x 32 latent pixels, so a case stays cheap.
 */
#include "ldm.h"
#include "arch/model_config.h"
#include "random_model.h"
#include "run/sampler.h"

#include <glib/gstdio.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------- random choices */

typedef struct {
    uint64_t state;
} Gen;

static int
pick (Gen *g, int n) /* 0 .. n-1 */
{
    return n <= 1 ? 0 : (int) (rng_splitmix64 (&g->state) % (uint64_t) n);
}

static bool
chance (Gen *g, int percent)
{
    return pick (g, 100) < percent;
}

static double
uniform (Gen *g, double lo, double hi)
{
    return lo + (hi - lo) * (double) (rng_splitmix64 (&g->state) >> 11) / (double) (1ull << 53);
}

static int
pick_of (Gen *g, const int *values, int n)
{
    return values[pick (g, n)];
}

#define PICK_OF(g, ...) \
    pick_of ((g), (const int[]) { __VA_ARGS__ }, (int) (sizeof ((const int[]) { __VA_ARGS__ }) / sizeof (int)))

/* ---------------------------------------------------------------- one case */

typedef enum { CASE_LDM_INPAINT, CASE_LDM_SR, CASE_SD_INPAINT } CaseKind;

typedef struct {
    uint64_t seed;
    CaseKind kind;
    GString *yaml;
    bool     odd;       /* valid for the reader, not necessarily for the engine */
    GString *why_odd;
    bool     f16;
    int      width, height, channels;
    int      f;         /* the first stage's factor: an upscaled result is f times larger */
    int      steps;
    LdmSampler sampler;
    float    eta;
    bool     keep_known, match_colors, color_fix;
    int      context_dim, context_tokens;
    bool     guided;    /* SD: [uncond, cond] batch with guidance 7.5 */
    bool     threaded;  /* all threads; else one (tiny primitives: barriers would dominate) */
    char     summary[256];
} Case;

static void
case_clear (Case *c)
{
    if (c->yaml)
        g_string_free (c->yaml, TRUE);
    if (c->why_odd)
        g_string_free (c->why_odd, TRUE);
    memset (c, 0, sizeof *c);
}

static void
odd (Case *c, const char *why)
{
    c->odd = true;
    g_string_append_printf (c->why_odd, "%s%s", c->why_odd->len ? ", " : "", why);
}

static void
yaml_ints (GString *y, const char *indent, const char *key, const int *v, int n)
{
    g_string_append_printf (y, "%s%s: [", indent, key);
    for (int i = 0; i < n; i++)
        g_string_append_printf (y, i ? ", %d" : "%d", v[i]);
    g_string_append (y, "]\n");
}

/* Fixed structure when `fixed_levels` > 0 (the regression cases); otherwise all random. */
static void
case_generate (Case *c, uint64_t seed, int fixed_levels, int fixed_res_blocks, int fixed_kind)
{
    Gen g = { seed };
    *c = (Case) { .seed = seed, .yaml = g_string_new (NULL), .why_odd = g_string_new (NULL) };
    int k = fixed_kind >= 0 ? fixed_kind : pick (&g, 4);
    c->kind = k <= 1 ? CASE_LDM_INPAINT : k == 2 ? CASE_LDM_SR : CASE_SD_INPAINT;
    bool sd = c->kind == CASE_SD_INPAINT;
    /* a third of the SD cases: a text-to-image U-Net (x alone, v1-inference.yaml's layout),
     * drawn from its own stream so that the other draws stay those of the seed */
    Gen g_txt2img = { seed ^ 0x7e572124 };
    bool txt2img = sd && fixed_levels <= 0 && chance (&g_txt2img, 33);

    /* ---- U-Net structure and the latent size it runs at */
    int levels = fixed_levels > 0 ? fixed_levels : 1 + pick (&g, LDM_MAX_LEVELS);
    int nrb = fixed_res_blocks > 0 ? fixed_res_blocks : 1 + pick (&g, LDM_MAX_RES_BLOCKS);
    int factor = 1 << (levels - 1);
    int mc = levels * nrb <= 16 && chance (&g, 30) ? 64 : 32;
    int mult[LDM_MAX_LEVELS];
    mult[0] = 1;
    for (int l = 1; l < levels; l++)
        mult[l] = fixed_levels > 0 ? 1 : PICK_OF (&g, 1, 1, 2, 2, 3);
    /* latent sides: multiples of the U-Net factor; big ones (tiling) for shallow U-Nets */
    int max_side = levels <= 3 && chance (&g, 10) ? 192 : MAX (factor, 48);
    int sw = factor * (1 + pick (&g, MAX (1, max_side / factor)));
    int sh = factor * (1 + pick (&g, MAX (1, max_side / factor)));

    /* ---- first stage: VQ for LDM, KL for SD; f = 2^(levels - 1) */
    bool kl = sd;
    if (!sd && chance (&g, 3)) {
        kl = true;
        odd (c, "LDM with a KL first stage");
    }
    int ae_levels = fixed_levels > 0 ? 1 : 1 + pick (&g, 3); /* f1: the U-Net costs enough */
    while (ae_levels > 1 && (MAX (sw, sh) << (ae_levels - 1)) > 256)
        ae_levels--;
    int f = 1 << (ae_levels - 1);
    int embed = 1 + pick (&g, 4), z = 1 + pick (&g, 4);
    int ae_in = 3, ae_out = 3;
    if (chance (&g, 3)) {
        ae_in = PICK_OF (&g, 1, 4);
        odd (c, "first stage not RGB in");
    }
    if (chance (&g, 3)) {
        ae_out = PICK_OF (&g, 1, 2, 4);
        odd (c, "first stage not RGB out");
    }
    int ae_mult[LDM_MAX_LEVELS];
    for (int l = 0; l < ae_levels; l++)
        ae_mult[l] = l == 0 ? 1 : PICK_OF (&g, 1, 2);
    int resolution = PICK_OF (&g, 32, 64, 128, 256);
    int ae_attn[LDM_MAX_LEVELS], n_ae_attn = 0;
    for (int l = 0; l < ae_levels; l++) /* at levels that see at most 32 x 32 pixels */
        if ((MAX (sw, sh) * f >> l) <= 32 && chance (&g, 40))
            ae_attn[n_ae_attn++] = resolution >> l;
    if (chance (&g, 10) && n_ae_attn < LDM_MAX_LEVELS)
        ae_attn[n_ae_attn++] = 3; /* never matches: no attention */
    bool mid_attention = MAX (sw, sh) <= 32 && chance (&g, 50);

    /* ---- U-Net attention: at downsampling factors that see at most 32 x 32 */
    int attn[LDM_MAX_LEVELS], n_attn = 0;
    for (int l = 0; l < levels && n_attn < LDM_MAX_LEVELS; l++)
        if ((MAX (sw, sh) >> l) <= 32 && chance (&g, 50))
            attn[n_attn++] = 1 << l;
    if (chance (&g, 10) && n_attn < LDM_MAX_LEVELS) /* a factor no level has */
        attn[n_attn++] = PICK_OF (&g, 3, 1 << levels, 1 << 20);
    bool transformer = sd || chance (&g, 20);
    bool legacy = chance (&g, 60);
    /* a linear proj_out needs heads x head channels = the width (config check) */
    bool linear_proj = transformer && chance (&g, 50);
    int num_heads = -1, head_channels = -1, heads_up = -1;
    if (chance (&g, 50))
        num_heads = PICK_OF (&g, 1, 2, 4, 8, 16, 32);
    else
        head_channels = transformer && !linear_proj ? PICK_OF (&g, 8, 16, 24, 32)
                                                    : PICK_OF (&g, 8, 16, 32);
    if (head_channels == -1 && chance (&g, 30))
        heads_up = PICK_OF (&g, 1, 2, 4);
    if (head_channels != -1 && !transformer && !legacy && chance (&g, 30))
        num_heads = PICK_OF (&g, 1, 2, 4); /* head channels win */
    int depth = fixed_levels > 0 ? 1 : 1 + (chance (&g, 20) ? pick (&g, 3) : 0);
    int context_dim = transformer ? PICK_OF (&g, 8, 16, 40, 77) : 0;
    int unet_in, unet_out = embed;
    switch (c->kind) {
    case CASE_LDM_INPAINT: unet_in = 2 * embed + 1; break;
    case CASE_LDM_SR: unet_in = embed + ae_in; break;
    default: unet_in = txt2img ? embed : 2 * embed + 1; break;
    }

    /* ---- diffusion */
    int timesteps = PICK_OF (&g, 2, 10, 100, 1000, 1000);
    const char *schedule = (const char *[]) { "linear", "linear", "cosine", "sqrt_linear",
                                              "sqrt" }[pick (&g, 5)];
    double start = uniform (&g, 0.0005, 0.003), end = uniform (&g, 0.01, 0.03);
    if (!strcmp (schedule, "sqrt"))
        odd (c, "sqrt schedule (alphas can reach 0)");
    bool v = chance (&g, 30);

    /* ---- the YAML */
    GString *y = c->yaml;
    g_string_append_printf (y, "model:\n  target: ldm.models.diffusion.ddpm.%s\n  params:\n",
                            sd && !txt2img ? "LatentInpaintDiffusion" : "LatentDiffusion");
    g_string_append_printf (y, "    linear_start: %.6f\n    linear_end: %.6f\n", start, end);
    g_string_append_printf (y, "    timesteps: %d\n    beta_schedule: %s\n", timesteps, schedule);
    g_string_append_printf (y, "    parameterization: %s\n", v ? "v" : "eps");
    g_string_append_printf (y, "    image_size: %d\n", sw);
    if (sd)
        g_string_append_printf (y, "    conditioning_key: %s\n    scale_factor: %.5f\n",
                                txt2img ? "crossattn" : "hybrid",
                                PICK_OF (&g, 0, 1) ? 0.18215 : uniform (&g, 0.1, 2.0));
    else
        g_string_append (y, "    concat_mode: true\n");
    g_string_append (y, "    unet_config:\n"
                        "      target: ldm.modules.diffusionmodules.openaimodel.UNetModel\n"
                        "      params:\n");
    const char *u = "        ";
    g_string_append_printf (y, "%sin_channels: %d\n%sout_channels: %d\n%smodel_channels: %d\n",
                            u, unet_in, u, unet_out, u, mc);
    yaml_ints (y, u, "attention_resolutions", attn, n_attn);
    if (chance (&g, 20)) {
        int per_level[LDM_MAX_LEVELS];
        for (int l = 0; l < levels; l++)
            per_level[l] = nrb;
        yaml_ints (y, u, "num_res_blocks", per_level, levels);
    } else {
        g_string_append_printf (y, "%snum_res_blocks: %d\n", u, nrb);
    }
    yaml_ints (y, u, "channel_mult", mult, levels);
    if (num_heads != -1 || chance (&g, 50))
        g_string_append_printf (y, "%snum_heads: %d\n", u, num_heads);
    if (head_channels != -1 || chance (&g, 50))
        g_string_append_printf (y, "%snum_head_channels: %d\n", u, head_channels);
    if (heads_up != -1)
        g_string_append_printf (y, "%snum_heads_upsample: %d\n", u, heads_up);
    g_string_append_printf (y, "%sresblock_updown: %s\n", u, chance (&g, 40) ? "true" : "false");
    g_string_append_printf (y, "%sconv_resample: %s\n", u, chance (&g, 80) ? "true" : "false");
    g_string_append_printf (y, "%suse_scale_shift_norm: %s\n", u,
                            chance (&g, 30) ? "true" : "false");
    g_string_append_printf (y, "%slegacy: %s\n", u, legacy ? "true" : "false");
    if (transformer) {
        g_string_append_printf (y, "%suse_spatial_transformer: true\n%stransformer_depth: %d\n"
                                   "%scontext_dim: %d\n%suse_linear_in_transformer: %s\n",
                                u, u, depth, u, context_dim, u,
                                linear_proj ? "true" : "false");
    }
    if (chance (&g, 2)) {
        g_string_append_printf (y, "%snum_classes: %d\n", u, 1 + pick (&g, 10));
        odd (c, "num_classes");
    }
    if (chance (&g, 2)) {
        bool off[LDM_MAX_LEVELS];
        g_string_append_printf (y, "%sdisable_self_attentions: [", u);
        for (int l = 0; l < levels; l++) {
            off[l] = chance (&g, 50);
            g_string_append_printf (y, l ? ", %s" : "%s", off[l] ? "true" : "false");
        }
        g_string_append (y, "]\n");
        odd (c, "disable_self_attentions");
    }
    g_string_append_printf (y, "    first_stage_config:\n      target: ldm.models.autoencoder.%s\n"
                               "      params:\n        embed_dim: %d\n",
                            kl ? "AutoencoderKL" : "VQModelInterface", embed);
    if (!kl)
        g_string_append_printf (y, "        n_embed: %d\n", PICK_OF (&g, 1, 8, 64, 256));
    const char *d = "          ";
    g_string_append_printf (y, "        ddconfig:\n%sdouble_z: %s\n%sz_channels: %d\n"
                               "%sresolution: %d\n%sin_channels: %d\n%sout_ch: %d\n%sch: 32\n",
                            d, kl ? "true" : "false", d, z, d, resolution, d, ae_in, d, ae_out,
                            d);
    yaml_ints (y, d, "ch_mult", ae_mult, ae_levels);
    g_string_append_printf (y, "%snum_res_blocks: %d\n", d, 1 + pick (&g, 2));
    yaml_ints (y, d, "attn_resolutions", ae_attn, n_ae_attn);
    g_string_append_printf (y, "%sattn_type: %s\n", d, mid_attention ? "vanilla" : "none");
    g_string_append_printf (y, "    cond_stage_config: %s\n",
                            c->kind == CASE_LDM_INPAINT ? "__is_first_stage__"
                                                        : "\n      target: torch.nn.Identity");

    /* ---- the run: an image whose padded size is the latent size chosen above */
    int align = f * factor;
    if (c->kind == CASE_LDM_SR) {
        c->width = MAX (1, sw - pick (&g, factor));
        c->height = MAX (1, sh - pick (&g, factor));
    } else {
        c->width = MAX (1, sw * f - pick (&g, align));
        c->height = MAX (1, sh * f - pick (&g, align));
    }
    c->f = f;
    c->channels = chance (&g, 25) ? 4 : 3;
    c->f16 = chance (&g, 30);
    c->steps = chance (&g, 20) ? 2 : 1;
    c->sampler = (LdmSampler) pick (&g, LDM_SAMPLER_DEFAULT); /* every sampler but the default */
    c->eta = chance (&g, 50) ? 0.0f : (float) uniform (&g, 0.0, 1.0);
    c->keep_known = chance (&g, 50);
    c->match_colors = chance (&g, 50);
    c->color_fix = chance (&g, 50);
    c->context_dim = context_dim;
    c->context_tokens = 1 + pick (&g, 8);
    c->guided = sd && fixed_levels == 0 && chance (&g, 50); /* the deepest: one batch */
    c->threaded = chance (&g, 15);
    g_snprintf (c->summary, sizeof c->summary,
                "%s, %d levels x %d res blocks, mc %d, attention %d, %s, first stage f%d %s, "
                "image %dx%d%s%s%s%s",
                c->kind == CASE_LDM_INPAINT ? "LDM inpaint"
                : c->kind == CASE_LDM_SR    ? "LDM SR"
                : txt2img                   ? "SD text-to-image (4 channels)"
                                            : "SD inpaint",
                levels, nrb, mc, n_attn, transformer ? "transformer" : "legacy attention", f,
                kl ? "KL" : "VQ", c->width, c->height, c->f16 ? ", F16" : "",
                c->threaded ? ", threaded" : "",
                c->odd ? ", odd: " : "", c->odd ? c->why_odd->str : "");
}

/* Random pixels and a random non-empty rectangle of mask. */
static void
case_images (const Case *c, LdmImage *image, LdmImage *mask)
{
    Gen g = { c->seed ^ 0x5bd1e995u };
    size_t pixels = (size_t) c->width * c->height;
    *image = (LdmImage) { c->width, c->height, c->channels, g_new (uint8_t, pixels * c->channels) };
    for (size_t i = 0; i < pixels * c->channels; i++)
        image->pixels[i] = (uint8_t) pick (&g, 256);
    *mask = (LdmImage) { c->width, c->height, 1, g_new0 (uint8_t, pixels) };
    int x0 = pick (&g, c->width), y0 = pick (&g, c->height);
    int x1 = x0 + 1 + pick (&g, c->width - x0), y1 = y0 + 1 + pick (&g, c->height - y0);
    for (int yy = y0; yy < y1; yy++)
        for (int xx = x0; xx < x1; xx++)
            mask->pixels[(size_t) yy * c->width + xx] = 255;
}

typedef struct {
    const char *dir;
    int         threads;    /* omp_get_max_threads () at the start */
    guint       runs, odd_refused;
    double      seconds;
} Run;

static void
print_case (const Case *c)
{
    g_printerr ("case %" G_GUINT64_FORMAT ": %s\n--- config (model.yaml)\n%s---\n"
                "image %dx%dx%d, %d step(s) %s eta %.3f, keep_known %d, match_colors %d, color_fix %d, "
                "context %d x %d%s, %s weights\n"
                "reproduce: LDM_FUZZ_CASE=%" G_GUINT64_FORMAT " %s\n",
                c->seed, c->summary, c->yaml->str, c->width, c->height, c->channels, c->steps,
                ldm_sampler_name (c->sampler), c->eta, c->keep_known, c->match_colors, c->color_fix,
                c->context_tokens, c->context_dim, c->guided ? " guided" : "",
                c->f16 ? "F16" : "F32", c->seed, g_get_prgname ());
}

/* Runs one case; FALSE (and the test failed) when it went wrong. */
static gboolean
case_run (Run *run, const Case *c, bool verbose)
{
    g_test_message ("case %" G_GUINT64_FORMAT ": %s", c->seed, c->summary);
    if (verbose)
        print_case (c);
    gboolean passed = FALSE;
    g_autoptr (GError) error = NULL;
    g_autofree char *model_path = g_build_filename (run->dir, "model.safetensors", NULL);
    g_autofree char *yaml_path = g_build_filename (run->dir, "model.yaml", NULL);
    LdmModelConfig config;
    LdmImage image = { 0 }, mask = { 0 }, out = { 0 };
    float *context = NULL, *uncond = NULL;
    LdmModel *model = NULL;
    LdmEngine *engine = NULL;
    gint64 start = g_get_monotonic_time ();

    /* The generator only makes configs the reader accepts. */
    if (!model_config_read_yaml_data (c->yaml->str, c->yaml->len, "model.yaml", &config, &error)) {
        print_case (c);
        g_test_fail_printf ("case %" G_GUINT64_FORMAT ": the config reader refused a generated "
                            "config: %s", c->seed, error->message);
        goto done;
    }
    if (!g_file_set_contents (yaml_path, c->yaml->str, (gssize) c->yaml->len, &error)
        || !random_model_write (&config, model_path, c->f16, c->seed, NULL, &error)) {
        g_test_fail_printf ("case %" G_GUINT64_FORMAT ": writing the model: %s", c->seed,
                            error->message);
        goto done;
    }

    omp_set_num_threads (c->threaded ? run->threads : 1);
    gint64 t_written = g_get_monotonic_time ();
    model = ldm_model_load (model_path, &error);
    engine = model ? ldm_engine_new (model, LDM_PRECISION_FP32, &error) : NULL;
    gint64 t_built = g_get_monotonic_time ();
    gboolean ok = engine != NULL;
    if (ok) {
        LdmSampleParams params;
        ldm_sample_params_init_authors (&params, c->kind == CASE_LDM_SR ? LDM_TASK_UPSCALE
                                                                        : LDM_TASK_INPAINT);
        params.steps = c->steps;
        params.sampler = c->sampler;
        params.eta = c->eta;
        params.seed = c->seed;
        params.keep_known = c->keep_known;
        params.match_colors = c->match_colors;
        params.color_fix = c->color_fix;
        if (c->context_dim > 0) {
            Gen g = { c->seed ^ 0xc0ffee };
            size_t n = (size_t) c->context_tokens * c->context_dim;
            context = g_new (float, n);
            uncond = g_new (float, n);
            for (size_t i = 0; i < n; i++) {
                context[i] = (float) uniform (&g, -1, 1);
                uncond[i] = (float) uniform (&g, -1, 1);
            }
            params.context = context;
            params.context_tokens = c->context_tokens;
            params.uncond_context = c->guided ? uncond : NULL;
            params.guidance = c->guided ? 7.5f : 1.0f;
        }
        case_images (c, &image, &mask);
        ok = c->kind == CASE_LDM_SR ? ldm_upscale (engine, &image, &params, &out, &error)
                                    : ldm_inpaint (engine, &image, &mask, &params, &out, &error);
    }
    g_test_message ("  written in %.2f s, built in %.2f s, ran in %.2f s",
                    (double) (t_written - start) / 1e6, (double) (t_built - t_written) / 1e6,
                    (double) (g_get_monotonic_time () - t_built) / 1e6);
    if (!ok) {
        if (!error) {
            print_case (c);
            g_test_fail_printf ("case %" G_GUINT64_FORMAT ": failed without a GError", c->seed);
            goto done;
        }
        if (!c->odd) {
            print_case (c);
            g_test_fail_printf ("case %" G_GUINT64_FORMAT ": %s", c->seed, error->message);
            goto done;
        }
        g_test_message ("  refused (odd config): %s", error->message);
        run->odd_refused++;
    } else {
        int f = c->kind == CASE_LDM_SR ? c->f : 1;
        if (out.width != c->width * f || out.height != c->height * f || !out.pixels) {
            print_case (c);
            g_test_fail_printf ("case %" G_GUINT64_FORMAT ": result %dx%d for a %dx%d input",
                                c->seed, out.width, out.height, c->width, c->height);
            goto done;
        }
    }
    passed = TRUE;
done:
    run->runs++;
    run->seconds += (double) (g_get_monotonic_time () - start) / 1e6;
    if (verbose || !passed)
        g_printerr ("case %" G_GUINT64_FORMAT ": %.2f s\n", c->seed,
                    (double) (g_get_monotonic_time () - start) / 1e6);
    ldm_engine_free (engine);
    ldm_model_free (model);
    g_unlink (model_path);
    g_unlink (yaml_path);
    ldm_image_clear (&image);
    ldm_image_clear (&mask);
    ldm_image_clear (&out);
    g_free (context);
    g_free (uncond);
    return passed;
}

static char *
make_dir (void)
{
    g_autoptr (GError) error = NULL;
    char *dir = g_dir_make_tmp ("ldm-random-configs-XXXXXX", &error);
    g_assert_no_error (error);
    return dir;
}

/* The deepest U-Nets the config reader accepts: 8 levels of 8 res blocks (72 skips), with
 * legacy attention (LDM inpainting) and with spatial transformers (SD inpainting). */
static void
test_deepest (void)
{
    g_autofree char *dir = make_dir ();
    Run run = { .dir = dir, .threads = omp_get_max_threads () };
    for (int kind = 0; kind < 4; kind += 3) {
        Case c;
        case_generate (&c, 1000 + (uint64_t) kind, LDM_MAX_LEVELS, LDM_MAX_RES_BLOCKS, kind);
        gboolean ok = case_run (&run, &c, false);
        case_clear (&c);
        if (!ok)
            break;
    }
    g_rmdir (dir);
}

static void
test_random (void)
{
    const char *one = g_getenv ("LDM_FUZZ_CASE");
    const char *seconds_env = g_getenv ("LDM_FUZZ_SECONDS");
    const char *seed_env = g_getenv ("LDM_FUZZ_SEED");
    double seconds = seconds_env ? g_ascii_strtod (seconds_env, NULL) : 5.0;
    uint64_t seed = seed_env ? g_ascii_strtoull (seed_env, NULL, 10)
                             : (uint64_t) g_get_real_time () ^ ((uint64_t) getpid () << 32);
    g_autofree char *dir = make_dir ();
    Run run = { .dir = dir, .threads = omp_get_max_threads () };
    if (one) {
        Case c;
        case_generate (&c, g_ascii_strtoull (one, NULL, 10), 0, 0, -1);
        case_run (&run, &c, true);
        case_clear (&c);
        g_rmdir (dir);
        return;
    }
    g_printerr ("test_random_configs: seed %" G_GUINT64_FORMAT " (LDM_FUZZ_SEED), %.0f s "
                "(LDM_FUZZ_SECONDS)\n", seed, seconds);
    gint64 end = g_get_monotonic_time () + (gint64) (seconds * 1e6);
    uint64_t state = seed;
    do {
        Case c;
        case_generate (&c, rng_splitmix64 (&state), 0, 0, -1);
        gboolean ok = case_run (&run, &c, false);
        case_clear (&c);
        if (!ok)
            break;
    } while (g_get_monotonic_time () < end);
    g_printerr ("test_random_configs: %u cases in %.1f s (%.2f cases/s), %u odd ones refused "
                "with a GError\n", run.runs, run.seconds, run.runs / MAX (run.seconds, 1e-9),
                run.odd_refused);
    g_rmdir (dir);
}

int
main (int argc, char **argv)
{
    g_test_init (&argc, &argv, NULL);
    g_test_add_func ("/random-configs/deepest", test_deepest);
    g_test_add_func ("/random-configs/random", test_random);
    return g_test_run ();
}
