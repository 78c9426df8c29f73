/* test_pipeline: whole procedures against the authors' runs in the fixtures.
 *  - the sampling chain (U-Net + DDIM, every step) from the stored conditioning and x_T;
 *  - ldm_inpaint / ldm_upscale end to end (public API) with the stored x_T (and noises):
 *    the result equals the authors' decoded image to a level, and every pixel outside the mask
 *    is the input's, bit for bit;
 *  - text prompts (sd-inpaint-clip-tiny: prompt, negative prompt, guidance from prompts.json,
 *    through the checkpoint's own CLIP encoder) against the authors' run;
 *  - bad input, cancellation, sizes that need padding;
 *  - the colour matching of a generated region (act_match_region_mean), on built pictures. */
#include "nn/act.h"
#include "run/color_fix.h"
#include "arch/model.h"
#include "run/prompt.h"
#include "run/sampler.h"
#include "testutil.h"
#include "nn/unet.h"

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <unistd.h>
#include <math.h>
#include <string.h>

#define TOLERANCE 1e-4

/* ------------------------------------------------------------ the chain */

typedef struct {
    Unet          *unet;
    Act            cond, in, out;
    const float   *contexts;
    int            batch;
    LdmTensorFile *ref;
    const char    *run;
} Chain;

static gboolean
chain_denoise (void *data, const float *x, double t, float a, float *eps, GError **error)
{
    (void) a;
    Chain *c = data;
    size_t pixels = (size_t) c->in.h * c->in.w;
    int xc = c->out.c, cc = c->cond.c;
    for (int b = 0; b < c->batch; b++)
        for (size_t p = 0; p < pixels; p++) {
            float *dst = c->in.data + ((size_t) b * pixels + p) * (xc + cc);
            memcpy (dst, x + p * xc, xc * sizeof (float));
            memcpy (dst + xc, c->cond.data + p * cc, cc * sizeof (float));
        }
    float ts[2] = { (float) t, (float) t };
    if (!unet_forward (c->unet, &c->in, ts, c->contexts, 77, &c->out, error))
        return FALSE;
    size_t n = pixels * xc;
    for (size_t i = 0; i < n; i++)
        eps[i] = c->batch == 1 ? c->out.data[i]
                               : c->out.data[i] + 7.5f * (c->out.data[n + i] - c->out.data[i]);
    return TRUE;
}

static gboolean
chain_noise (void *data, int index, float *out, size_t n, GError **error)
{
    (void) error;
    Chain *c = data;
    g_autofree char *name = g_strdup_printf ("%sddim.step%02d.noise", c->run, index);
    Act noise = { 0 };
    ref_read_act (c->ref, name, &noise);
    g_assert_cmpuint (act_numel (&noise), ==, n);
    memcpy (out, noise.data, n * sizeof (float));
    act_free (&noise);
    return TRUE;
}

static gboolean
chain_step (void *data, const SamplerStep *step)
{
    Chain *c = data;
    g_autofree char *name = g_strdup_printf ("%sddim.step%02d.x", c->run, step->index);
    Act want = { 0 };
    ref_read_act (c->ref, name, &want);
    /* both NHWC here */
    assert_close (name, step->x, want.data, act_numel (&want), TOLERANCE);
    act_free (&want);
    return TRUE;
}

typedef struct {
    const char *fixture, *weights_file, *cond_name, *run;
    float       eta;
} ChainCase;

static void
test_chain (gconstpointer data)
{
    const ChainCase *cc = data;
    g_autofree char *model_path = fixture_path (cc->fixture, cc->weights_file);
    g_autofree char *ref_path = fixture_path (cc->fixture, "reference.safetensors");
    if (!model_path || !ref_path)
        return;
    g_autoptr (GError) error = NULL;
    g_autoptr (LdmModel) model = ldm_model_load (model_path, &error);
    g_assert_no_error (error);
    g_autoptr (LdmTensorFile) ref = ldm_tensor_file_open (ref_path, &error);
    g_assert_no_error (error);
    const LdmModelConfig *config = model_config (model);
    Dnn *dnn = dnn_new (false, &error);
    Weights w = { (const LdmTensor * (*) (const void *, const char *)) model_unet_tensor, model,
                  "U-Net" };
    Chain c = { .unet = unet_new (dnn, &config->unet, &w, &error), .ref = ref, .run = cc->run,
                .batch = 1 };
    g_assert_no_error (error);
    ref_read_act (ref, cc->cond_name, &c.cond);
    g_autofree float *contexts = NULL;
    if (config->unet.context_dim) {
        size_t n;
        g_autofree float *ctx = ref_read (ref, "cond.context", &n);
        g_autofree float *uctx = ref_read (ref, "cond.uncond_context", NULL);
        contexts = g_new (float, 2 * n);
        memcpy (contexts, uctx, n * sizeof (float));
        memcpy (contexts + n, ctx, n * sizeof (float));
        c.contexts = contexts;
        c.batch = 2;
    }
    Act x = { 0 };
    ref_read_act (ref, "ddim.x_T", &x);
    g_assert_true (act_alloc (&c.in, c.batch, x.h, x.w, x.c + c.cond.c, NULL));
    g_assert_true (act_alloc (&c.out, c.batch, x.h, x.w, x.c, NULL));
    Schedule schedule;
    g_assert_true (schedule_init (&schedule, config->beta_schedule, config->linear_start,
                                  config->linear_end, config->timesteps, &error));
    SamplerParams params = { .sampler = LDM_SAMPLER_DDIM, .steps = 5, .eta = cc->eta };
    SamplerHooks hooks = { .noise = chain_noise, .on_step = chain_step, .data = &c };
    Rng rng;
    rng_seed (&rng, 0);
    g_assert_true (sampler_run (&schedule, &params, chain_denoise, &c, x.data, act_numel (&x),
                                &rng, &hooks, &error));
    g_assert_no_error (error);
    act_free (&x);
    act_free (&c.cond);
    act_free (&c.in);
    act_free (&c.out);
    unet_free (c.unet);
    dnn_free (dnn);
}

/* ------------------------------------------------------------ end to end */

/* An NCHW [0,1] or [-1,1] reference image as 8-bit RGB (rounded), for comparisons. */
static LdmImage
ref_image (LdmTensorFile *ref, const char *name, bool minus_one_to_one)
{
    const LdmTensor *t = ldm_tensor_file_lookup (ref, name);
    g_assert_nonnull (t);
    int h = (int) t->shape[2], w = (int) t->shape[3];
    g_autofree float *v = ref_read (ref, name, NULL);
    LdmImage img = { w, h, 3, g_new (uint8_t, (size_t) w * h * 3) };
    for (int c = 0; c < 3; c++)
        for (int p = 0; p < w * h; p++) {
            float u = minus_one_to_one ? (v[c * w * h + p] + 1) / 2 : v[c * w * h + p];
            img.pixels[p * 3 + c] = (uint8_t) lrintf (CLAMP (u, 0.0f, 1.0f) * 255);
        }
    return img;
}

static LdmImage
ref_mask (LdmTensorFile *ref, const char *name)
{
    const LdmTensor *t = ldm_tensor_file_lookup (ref, name);
    int h = (int) t->shape[2], w = (int) t->shape[3];
    g_autofree float *v = ref_read (ref, name, NULL);
    LdmImage m = { w, h, 1, g_new (uint8_t, (size_t) w * h) };
    for (int p = 0; p < w * h; p++)
        m.pixels[p] = v[p] > 0.5f ? 255 : 0; /* {-1,+1} or {0,1}: 1 = fill */
    return m;
}

static int
max_level_difference (const LdmImage *a, const LdmImage *b, const LdmImage *only_mask)
{
    g_assert_cmpint (a->width, ==, b->width);
    g_assert_cmpint (a->height, ==, b->height);
    int worst = 0;
    for (int p = 0; p < a->width * a->height; p++) {
        if (only_mask && only_mask->pixels[p] < 128)
            continue;
        for (int c = 0; c < 3; c++)
            worst = MAX (worst, ABS (a->pixels[p * a->channels + c] - b->pixels[p * b->channels + c]));
    }
    return worst;
}

static void
assert_outside_mask_unchanged (const LdmImage *in, const LdmImage *mask, const LdmImage *out)
{
    g_assert_cmpint (out->width, ==, in->width);
    g_assert_cmpint (out->height, ==, in->height);
    g_assert_cmpint (out->channels, ==, in->channels);
    size_t changed = 0;
    for (int p = 0; p < in->width * in->height; p++)
        if (mask->pixels[p] < 128)
            changed += memcmp (in->pixels + (size_t) p * in->channels,
                               out->pixels + (size_t) p * out->channels, in->channels) != 0;
    g_assert_cmpuint (changed, ==, 0);
}

typedef struct {
    LdmModel  *model;
    LdmEngine *engine;
    LdmTensorFile *ref;
} E2E;

/* Loads the model at model_path with its engine, and the reference at ref_path; FALSE (the test
 * skipped) when either is NULL. */
static gboolean
e2e_load (E2E *e, const char *model_path, const char *ref_path)
{
    if (!model_path || !ref_path)
        return FALSE;
    g_autoptr (GError) error = NULL;
    e->model = ldm_model_load (model_path, &error);
    g_assert_no_error (error);
    e->engine = ldm_engine_new (e->model, LDM_PRECISION_FP32, &error);
    g_assert_no_error (error);
    e->ref = ldm_tensor_file_open (ref_path, &error);
    g_assert_no_error (error);
    return TRUE;
}

static gboolean
e2e_open (E2E *e, const char *fixture, const char *file)
{
    g_autofree char *model_path = fixture_path (fixture, file);
    g_autofree char *ref_path = fixture_path (fixture, "reference.safetensors");
    return e2e_load (e, model_path, ref_path);
}

static void
e2e_close (E2E *e)
{
    ldm_engine_free (e->engine);
    ldm_model_free (e->model);
    ldm_tensor_file_free (e->ref);
}

/* An inpainting run of the authors' in a fixture's reference: the input image and mask, the
 * start noise and the result (`want`). */
typedef struct {
    LdmImage image, mask, want;
    float   *x_T;
    size_t   x_T_len;
} AuthorsInpaint;

static void
authors_inpaint_read (AuthorsInpaint *a, LdmTensorFile *ref, const char *want, const char *x_T)
{
    a->image = ref_image (ref, "input.image", true);
    a->mask = ref_mask (ref, "input.mask");
    a->want = ref_image (ref, want, false);
    a->x_T = ref_read (ref, x_T, &a->x_T_len);
}

static void
authors_inpaint_clear (AuthorsInpaint *a)
{
    ldm_image_clear (&a->image);
    ldm_image_clear (&a->mask);
    ldm_image_clear (&a->want);
    g_clear_pointer (&a->x_T, g_free);
}

/* Inpaints a's image from a's noise with p into *out: the fill within 1 level of the authors',
 * the outside unchanged. */
static void
assert_inpaints_as_authors (E2E *e, const AuthorsInpaint *a, LdmSampleParams *p, LdmImage *out,
                            const char *what)
{
    p->x_T = a->x_T;
    p->x_T_len = a->x_T_len;
    g_autoptr (GError) error = NULL;
    g_assert_true (ldm_inpaint (e->engine, &a->image, &a->mask, p, out, &error));
    g_assert_no_error (error);
    int diff = max_level_difference (out, &a->want, &a->mask);
    g_test_message ("%s: inpainted pixels vs the authors': max %d levels", what, diff);
    g_assert_cmpint (diff, <=, 1);
    assert_outside_mask_unchanged (&a->image, &a->mask, out);
}

/* The authors' inpainting runs of the LDM and the SD fixtures (5 DDIM steps from their noise;
 * SD with their contexts), from the weights file `file`. */
static void
inpaint_as_authors (const char *file, bool sd)
{
    E2E e;
    if (!e2e_open (&e, sd ? "sd-inpaint-tiny" : "ldm-inpaint-tiny", file))
        return;
    const char *want = sd ? "output01" : "composite";
    AuthorsInpaint a;
    authors_inpaint_read (&a, e.ref, want, "ddim.x_T");
    g_autofree float *ctx = sd ? ref_read (e.ref, "cond.context", NULL) : NULL;
    g_autofree float *uctx = sd ? ref_read (e.ref, "cond.uncond_context", NULL) : NULL;
    LdmSampleParams p;
    ldm_sample_params_init_authors (&p, LDM_TASK_INPAINT);
    p.steps = 5;
    p.context = ctx;
    p.uncond_context = uctx;
    p.context_tokens = sd ? 77 : 0;
    LdmImage out = { 0 };
    assert_inpaints_as_authors (&e, &a, &p, &out, want);
    if (sd) { /* without a context the model cannot run: a clear error */
        LdmImage none = { 0 };
        p.context = NULL;
        g_autoptr (GError) error = NULL;
        g_assert_false (ldm_inpaint (e.engine, &a.image, &a.mask, &p, &none, &error));
        g_assert_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT);
        g_assert_null (none.pixels);
    }
    ldm_image_clear (&out);
    authors_inpaint_clear (&a);
    e2e_close (&e);
}

static void
test_inpaint_ldm (gconstpointer data)
{
    inpaint_as_authors (data, false);
}

static void
test_inpaint_sd (gconstpointer data)
{
    inpaint_as_authors (data, true);
}

/* ------------------------------------------------------------ prompts */

typedef struct {
    char  *prompt, *negative_prompt, *x_T;
    double guidance, eta;
    int    steps;
} PromptsJson;

static void
prompts_json_read (const char *path, PromptsJson *pj)
{
    g_autoptr (JsonParser) parser = json_parser_new ();
    g_autoptr (GError) error = NULL;
    g_assert_true (json_parser_load_from_file (parser, path, &error));
    g_assert_no_error (error);
    JsonObject *o = json_node_get_object (json_parser_get_root (parser));
    pj->prompt = g_strdup (json_object_get_string_member (o, "prompt"));
    pj->negative_prompt = g_strdup (json_object_get_string_member (o, "negative_prompt"));
    pj->x_T = g_strdup (json_object_get_string_member (o, "x_T"));
    pj->guidance = json_object_get_double_member (o, "guidance");
    pj->eta = json_object_get_double_member (o, "eta");
    pj->steps = (int) json_object_get_int_member (o, "steps");
}

static void
prompts_json_clear (PromptsJson *pj)
{
    g_free (pj->prompt);
    g_free (pj->negative_prompt);
    g_free (pj->x_T);
}

/* The authors' run of sd-inpaint-clip-tiny from its prompts (no context given): the engine
 * tokenizes and encodes them with the checkpoint's CLIP and must give expected.png
 * (= output01, the decoded image before any compositing) inside the mask. */
static void
test_inpaint_sd_prompt (gconstpointer data)
{
    E2E e;
    g_autofree char *json = fixture_path ("sd-inpaint-clip-tiny", "prompts.json");
    if (!json || !e2e_open (&e, "sd-inpaint-clip-tiny", data))
        return;
    PromptsJson pj;
    prompts_json_read (json, &pj);
    g_assert_cmpfloat (pj.eta, ==, 0.0);
    AuthorsInpaint a;
    authors_inpaint_read (&a, e.ref, "output01", pj.x_T);
    LdmSampleParams p;
    ldm_sample_params_init_authors (&p, LDM_TASK_INPAINT);
    g_assert_null (p.prompt);
    g_assert_null (p.negative_prompt);
    g_assert_cmpint (p.sampler, ==, LDM_SAMPLER_DDIM);
    p.steps = pj.steps;
    p.eta = (float) pj.eta;
    p.guidance = (float) pj.guidance;
    p.prompt = pj.prompt;
    p.negative_prompt = pj.negative_prompt;
    LdmImage out = { 0 };
    assert_inpaints_as_authors (&e, &a, &p, &out, pj.prompt);
    g_autoptr (GError) error = NULL;

    /* the same prompt again (the encoder kept by the engine): the same pixels */
    LdmImage again = { 0 };
    g_assert_true (ldm_inpaint (e.engine, &a.image, &a.mask, &p, &again, &error));
    size_t bytes = (size_t) out.width * out.height * out.channels;
    g_assert_cmpmem (out.pixels, bytes, again.pixels, bytes);
    ldm_image_clear (&again);

    /* another prompt changes the fill */
    p.prompt = "a red cube on a table";
    g_assert_true (ldm_inpaint (e.engine, &a.image, &a.mask, &p, &again, &error));
    g_assert_no_error (error);
    int moved = max_level_difference (&out, &again, &a.mask);
    g_test_message ("another prompt: max %d levels from the first", moved);
    g_assert_cmpint (moved, >, 2);
    ldm_image_clear (&again);

    /* guidance 1: the prompt alone (no uncond batch), which is not the CFG result */
    p.prompt = pj.prompt;
    p.guidance = 1.0f;
    g_assert_true (ldm_inpaint (e.engine, &a.image, &a.mask, &p, &again, &error));
    g_assert_no_error (error);
    g_assert_cmpint (max_level_difference (&out, &again, &a.mask), >, 2);
    ldm_image_clear (&again);

    /* guidance outside 1..30: a clear error, nothing written */
    static const float bad[] = { 0.5f, 30.5f, NAN };
    for (size_t i = 0; i < G_N_ELEMENTS (bad); i++) {
        p.guidance = bad[i];
        g_assert_false (ldm_inpaint (e.engine, &a.image, &a.mask, &p, &again, &error));
        g_assert_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT);
        g_assert_nonnull (strstr (error->message, "guidance"));
        g_assert_null (again.pixels);
        g_clear_error (&error);
    }
    ldm_image_clear (&out);
    authors_inpaint_clear (&a);
    prompts_json_clear (&pj);
    e2e_close (&e);
}

/* The contexts the engine makes from the prompts = the fixture's cond.context (the prompt)
 * and cond.uncond_context (CLIP("")); a prompt of 76-150 tokens makes 2 chunks, and its
 * negative prompt is padded with CLIP("") to as many. */
static void
test_prompt_contexts (gconstpointer data)
{
    g_autofree char *json = fixture_path ("sd-inpaint-clip-tiny", "prompts.json");
    g_autofree char *model = fixture_path ("sd-inpaint-clip-tiny", data);
    g_autofree char *ref_path = fixture_path ("sd-inpaint-clip-tiny", "reference.safetensors");
    if (!json || !model || !ref_path)
        return;
    PromptsJson pj;
    prompts_json_read (json, &pj);
    g_autoptr (GError) error = NULL;
    g_autoptr (LdmTensorFile) ref = ldm_tensor_file_open (ref_path, &error);
    g_assert_no_error (error);
    size_t n_ctx, n_unc;
    g_autofree float *want_ctx = ref_read (ref, "cond.context", &n_ctx);
    g_autofree float *want_unc = ref_read (ref, "cond.uncond_context", &n_unc);
    int dim = (int) (n_ctx / 77);
    Dnn *dnn = dnn_new (false, &error);
    g_assert_no_error (error);
    PromptEncoder *pe = prompt_encoder_new (dnn, model, dim, &error);
    g_assert_no_error (error);
    g_autofree float *ctx = NULL, *unc = NULL;
    int tokens = 0;
    g_assert_true (prompt_encoder_contexts (pe, pj.prompt, pj.negative_prompt, &ctx, &unc,
                                            &tokens, &error));
    g_assert_no_error (error);
    g_assert_cmpint (tokens, ==, 77);
    assert_close ("context", ctx, want_ctx, n_ctx, TOLERANCE);
    assert_close ("uncond context", unc, want_unc, n_unc, TOLERANCE);

    /* 80 words (80 tokens: "horse" is one) -> 2 chunks: tokens 154, the first chunk is
     * the first 75 words' context, and the empty negative prompt is CLIP("") twice */
    GString *long_prompt = g_string_new (NULL);
    for (int i = 0; i < 80; i++)
        g_string_append (long_prompt, i ? " horse" : "horse");
    g_autofree float *lctx = NULL, *lunc = NULL, *first = NULL;
    g_assert_true (prompt_encoder_contexts (pe, long_prompt->str, "", &lctx, &lunc, &tokens,
                                            &error));
    g_assert_no_error (error);
    g_assert_cmpint (tokens, ==, 154);
    assert_close ("uncond chunk 1", lunc, want_unc, n_unc, TOLERANCE);
    assert_close ("uncond chunk 2", lunc + n_unc, want_unc, n_unc, TOLERANCE);
    g_string_truncate (long_prompt, 75 * 6 - 1); /* the first 75 words */
    int one = 0;
    g_assert_true (prompt_encoder_contexts (pe, long_prompt->str, NULL, &first, NULL, &one,
                                            &error));
    g_assert_cmpint (one, ==, 77);
    assert_close ("chunk 1 = the first 75 tokens alone", lctx, first, n_ctx, 1e-6);
    g_string_free (long_prompt, TRUE);
    prompt_encoder_free (pe);

    /* a checkpoint without a text encoder: a clear error */
    g_autofree char *no_clip = fixture_path ("sd-inpaint-tiny", "model.safetensors");
    if (no_clip) {
        g_assert_null (prompt_encoder_new (dnn, no_clip, dim, &error));
        g_assert_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT);
        g_assert_nonnull (strstr (error->message, "no text encoder"));
        g_clear_error (&error);
    }
    dnn_free (dnn);
    prompts_json_clear (&pj);
}

/* A diffusers tokenizer/ folder beside the model is the one the engine reads the prompt with:
 * a damaged one there (a vocab.json that is not JSON) fails the run naming it, where the
 * same model without it runs. */
static void
test_prompt_tokenizer_beside (void)
{
    g_auto (FixtureCopy) copy = { 0 };
    if (!fixture_copy_begin (&copy, "sd-inpaint-clip-tiny", "ldm-prompt-XXXXXX"))
        return;
    g_autoptr (GError) error = NULL;
    g_autofree char *link = fixture_copy_path (&copy, "model.safetensors");
    g_autofree char *link_config = fixture_copy_path (&copy, "model.yaml");
    g_autofree char *tok_dir = fixture_copy_path (&copy, "tokenizer");
    g_autofree char *merges = g_build_filename (tok_dir, "merges.txt", NULL);
    g_autofree char *vocab = g_build_filename (tok_dir, "vocab.json", NULL);
    g_autofree char *model_abs = g_canonicalize_filename (copy.model_src, NULL);
    g_autofree char *config_abs = g_canonicalize_filename (copy.config_src, NULL);
    g_assert_cmpint (symlink (model_abs, link), ==, 0);
    g_assert_cmpint (symlink (config_abs, link_config), ==, 0);
    Dnn *dnn = dnn_new (false, &error);
    g_assert_no_error (error);
    PromptEncoder *pe = prompt_encoder_new (dnn, link, 64, &error);
    g_assert_no_error (error);
    prompt_encoder_free (pe);
    g_assert_cmpint (g_mkdir (tok_dir, 0700), ==, 0);
    g_assert_true (g_file_set_contents (merges, "#version: 0.2\na b\n", -1, &error));
    g_assert_true (g_file_set_contents (vocab, "{ \"a\": 0, not json", -1, &error));
    pe = prompt_encoder_new (dnn, link, 64, &error);
    g_assert_null (pe);
    g_assert_nonnull (error);
    g_test_message ("%s", error->message);
    g_assert_nonnull (strstr (error->message, "tokenizer"));
    g_clear_error (&error);
    dnn_free (dnn);
}

typedef struct {
    LdmTensorFile *ref;
    const char    *pattern;
} NoiseReplay;

static gboolean
replay_nchw_noise (void *data, int step, float *out, size_t n, GError **error)
{
    (void) error;
    NoiseReplay *r = data;
    g_autofree char *name = g_strdup_printf (r->pattern, step);
    size_t m;
    g_autofree float *v = ref_read (r->ref, name, &m);
    g_assert_cmpuint (m, ==, n);
    memcpy (out, v, n * sizeof (float));
    return TRUE;
}

static void
test_upscale (gconstpointer data)
{
    E2E e;
    if (!e2e_open (&e, "ldm-sr-tiny", data))
        return;
    LdmImage lr = ref_image (e.ref, "cond.lr", true);
    size_t n_x;
    g_autofree float *x_T = ref_read (e.ref, "ddim.x_T", &n_x);
    for (int eta = 0; eta <= 1; eta++) {
        LdmSampleParams p;
        ldm_sample_params_init_authors (&p, LDM_TASK_UPSCALE);
        p.steps = 5;
        p.eta = (float) eta;
        p.x_T = x_T;
        p.x_T_len = n_x;
        NoiseReplay replay = { e.ref, "eta1.ddim.step%02d.noise" };
        p.noise = replay_nchw_noise;
        p.noise_data = &replay;
        LdmImage out = { 0 };
        g_autoptr (GError) error = NULL;
        g_assert_true (ldm_upscale (e.engine, &lr, &p, &out, &error));
        g_assert_no_error (error);
        g_assert_cmpint (out.width, ==, 4 * lr.width);
        g_assert_cmpint (out.height, ==, 4 * lr.height);
        LdmImage want = ref_image (e.ref, eta ? "eta1.decode.image" : "eta0.decode.image", true);
        int diff = max_level_difference (&out, &want, NULL);
        g_test_message ("eta %d: upscaled vs the authors' decode: max %d levels", eta, diff);
        g_assert_cmpint (diff, <=, 1);
        ldm_image_clear (&out);
        ldm_image_clear (&want);
    }
    ldm_image_clear (&lr);
    e2e_close (&e);
}

static gboolean
cancel_after_two (void *data, int step, int steps)
{
    (void) steps;
    *(int *) data = step;
    return step < 2;
}

/* Bad input, cancel, and sizes that need padding. */
static void
test_inpaint_edges (void)
{
    E2E e, sr;
    if (!e2e_open (&e, "ldm-inpaint-tiny", "model.safetensors")
        || !e2e_open (&sr, "ldm-sr-tiny", "model.safetensors"))
        return;
    /* an odd-sized RGBA image: 37 x 29, a square hole */
    int w = 37, h = 29;
    LdmImage image = { w, h, 4, g_new (uint8_t, (size_t) w * h * 4) };
    LdmImage mask = { w, h, 1, g_new0 (uint8_t, (size_t) w * h) };
    for (int i = 0; i < w * h * 4; i++)
        image.pixels[i] = (uint8_t) (i * 7 + i / 13);
    LdmSampleParams p;
    ldm_sample_params_init_authors (&p, LDM_TASK_INPAINT);
    p.steps = 3;
    p.seed = 42;
    LdmImage out = { 0 };
    g_autoptr (GError) error = NULL;

    /* empty mask */
    g_assert_false (ldm_inpaint (e.engine, &image, &mask, &p, &out, &error));
    g_assert_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT);
    g_assert_null (out.pixels);
    g_clear_error (&error);

    for (int y = 8; y < 20; y++)
        for (int x = 10; x < 30; x++)
            mask.pixels[y * w + x] = 200;
    g_assert_true (ldm_inpaint (e.engine, &image, &mask, &p, &out, &error));
    g_assert_no_error (error);
    assert_outside_mask_unchanged (&image, &mask, &out);
    size_t changed = 0;
    for (int p2 = 0; p2 < w * h; p2++)
        if (mask.pixels[p2] >= 128)
            changed += memcmp (image.pixels + p2 * 4, out.pixels + p2 * 4, 3) != 0;
    g_assert_cmpuint (changed, >, 0);
    /* the same seed gives the same image */
    LdmImage again = { 0 };
    g_assert_true (ldm_inpaint (e.engine, &image, &mask, &p, &again, &error));
    g_assert_cmpmem (out.pixels, (size_t) w * h * 4, again.pixels, (size_t) w * h * 4);
    ldm_image_clear (&again);
    ldm_image_clear (&out);

    /* cancel after two steps: an error, and nothing written */
    int last = 0;
    p.progress = cancel_after_two;
    p.progress_data = &last;
    g_assert_false (ldm_inpaint (e.engine, &image, &mask, &p, &out, &error));
    g_assert_error (error, LDM_ERROR, LDM_ERROR_CANCELLED);
    g_assert_cmpint (last, ==, 2);
    g_assert_null (out.pixels);
    g_clear_error (&error);
    p.progress = NULL;

    /* a mask of another size, a model of the wrong kind, an x_T of the wrong size */
    LdmImage small = { w - 1, h, 1, mask.pixels };
    g_assert_false (ldm_inpaint (e.engine, &image, &small, &p, &out, &error));
    g_assert_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT);
    g_clear_error (&error);
    g_assert_false (ldm_inpaint (sr.engine, &image, &mask, &p, &out, &error));
    g_assert_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT);
    g_clear_error (&error);
    g_assert_false (ldm_upscale (e.engine, &image, &p, &out, &error));
    g_assert_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT);
    g_clear_error (&error);
    float bad_x[5] = { 0 };
    p.x_T = bad_x;
    p.x_T_len = 5;
    g_assert_false (ldm_inpaint (e.engine, &image, &mask, &p, &out, &error));
    g_assert_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT);
    g_clear_error (&error);
    p.x_T = NULL;
    p.steps = 0;
    g_assert_false (ldm_inpaint (e.engine, &image, &mask, &p, &out, &error));
    g_assert_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT);
    g_assert_null (out.pixels);
    g_clear_error (&error);

    /* upscale of an odd size: exactly 4x, alpha carried */
    p.steps = 2;
    g_assert_true (ldm_upscale (sr.engine, &image, &p, &out, &error));
    g_assert_no_error (error);
    g_assert_cmpint (out.width, ==, 4 * w);
    g_assert_cmpint (out.height, ==, 4 * h);
    g_assert_cmpint (out.channels, ==, 4);
    g_assert_cmpint (out.pixels[((5 * 4) * out.width + 7 * 4 + 1) * 4 + 3], ==,
                     image.pixels[(5 * w + 7) * 4 + 3]);
    ldm_image_clear (&out);
    ldm_image_clear (&image);
    ldm_image_clear (&mask);
    e2e_close (&e);
    e2e_close (&sr);
}

/* An input larger than one 128-pixel latent window runs window by window: the result has the
 * right size, is the same for the same seed, and every window contributes (no pixel is left at
 * zero weight: they would come out black). */
static void
test_upscale_tiled (void)
{
    E2E e;
    if (!e2e_open (&e, "ldm-sr-tiny", "model.safetensors"))
        return;
    int w = 300, h = 20; /* latent 300 x 20: 4 windows along x */
    LdmImage image = { w, h, 3, g_new (uint8_t, (size_t) w * h * 3) };
    for (int i = 0; i < w * h * 3; i++)
        image.pixels[i] = (uint8_t) (128 + 100 * sin (i * 0.01));
    LdmSampleParams p;
    ldm_sample_params_init_authors (&p, LDM_TASK_INPAINT);
    p.steps = 2;
    p.seed = 5;
    LdmImage a = { 0 }, b = { 0 };
    g_autoptr (GError) error = NULL;
    g_assert_true (ldm_upscale (e.engine, &image, &p, &a, &error));
    g_assert_no_error (error);
    g_assert_true (ldm_upscale (e.engine, &image, &p, &b, &error));
    g_assert_cmpint (a.width, ==, 4 * w);
    g_assert_cmpint (a.height, ==, 4 * h);
    g_assert_cmpmem (a.pixels, (size_t) a.width * a.height * 3, b.pixels,
                     (size_t) b.width * b.height * 3);
    /* every column of the output has some non-black pixel: all windows were written */
    for (int x = 0; x < a.width; x++) {
        int sum = 0;
        for (int y = 0; y < a.height; y++)
            for (int c = 0; c < 3; c++)
                sum += a.pixels[((size_t) y * a.width + x) * 3 + c];
        g_assert_cmpint (sum, >, 0);
    }
    ldm_image_clear (&a);
    ldm_image_clear (&b);
    ldm_image_clear (&image);
    e2e_close (&e);
}

/* A 40 x 30 picture: ref = (0.2, -0.1, 0.5) near the region and (-0.9, 0.9, -0.9) from
 * column 30 on (beyond the radius); x = ref + (0.3, 0.1, -0.2) everywhere outside the region
 * and anything inside it. After matching, the region is shifted by exactly -(0.3, 0.1, -0.2)
 * (the far pixels, which differ by another amount, are not used), and nothing outside the
 * region moves. */
static void
test_match_region_mean (void)
{
    const int w = 40, h = 30, radius = 4;
    const float near_ref[3] = { 0.2f, -0.1f, 0.5f }, far_ref[3] = { -0.9f, 0.9f, -0.9f };
    const float drift[3] = { 0.3f, 0.1f, -0.2f };
    Act x = { 0 }, ref = { 0 };
    g_assert_true (act_alloc (&x, 1, h, w, 3, NULL) && act_alloc (&ref, 1, h, w, 3, NULL));
    g_autofree uint8_t *region = g_malloc0 ((size_t) w * h);
    g_autofree float *before = g_malloc ((size_t) w * h * 3 * sizeof (float));
    for (int y = 0; y < h; y++)
        for (int xx = 0; xx < w; xx++) {
            size_t p = (size_t) y * w + xx;
            region[p] = xx >= 8 && xx < 20 && y >= 10 && y < 18;
            for (int k = 0; k < 3; k++) {
                ref.data[p * 3 + k] = xx >= 30 ? far_ref[k] : near_ref[k];
                /* the far block drifts by another amount: it must not be used */
                float d = xx >= 30 ? -drift[k] : drift[k];
                x.data[p * 3 + k] = region[p] ? 0.05f * (float) ((xx + k) % 7) - 0.1f
                                              : ref.data[p * 3 + k] + d;
            }
        }
    memcpy (before, x.data, (size_t) w * h * 3 * sizeof (float));
    g_autofree float *near = g_malloc ((size_t) w * h * sizeof (float));
    for (size_t p = 0; p < (size_t) w * h; p++)
        near[p] = region[p];
    g_assert_true (ldm_mask_grow (near, w, h, radius, NULL));
    g_assert_true (act_match_region_mean (&x, &ref, region, near, w, h));
    for (size_t p = 0; p < (size_t) w * h; p++)
        for (int k = 0; k < 3; k++) {
            float want = region[p] ? before[p * 3 + k] - drift[k] : before[p * 3 + k];
            g_assert_cmpfloat (fabsf (x.data[p * 3 + k] - want), <, 1e-5f);
        }
    /* a region that covers everything has no ring: nothing changes */
    memset (region, 1, (size_t) w * h);
    memcpy (x.data, before, (size_t) w * h * 3 * sizeof (float));
    for (size_t p = 0; p < (size_t) w * h; p++)
        near[p] = 1.0f;
    g_assert_true (act_match_region_mean (&x, &ref, region, near, w, h));
    g_assert_cmpmem (x.data, (size_t) w * h * 3 * sizeof (float), before,
                     (size_t) w * h * 3 * sizeof (float));
    act_free (&x);
    act_free (&ref);
}

/* Colour fix: an upscale whose colours drifted (a constant and a slow ramp per channel) over
 * detail with zero block means (a checkerboard inside every 4x4 block) comes back with the
 * block means of the low-resolution input and its detail kept; the padding is not touched. */
static void
test_color_fix (void)
{
    enum { W = 10, H = 12, F = 4, C = 3, PAD = 2 };
    Act lr = { 0 }, hr = { 0 };
    g_autoptr (GError) error = NULL;
    g_assert_true (act_alloc (&lr, 1, H + PAD, W + PAD, C, &error));
    g_assert_true (act_alloc (&hr, 1, (H + PAD) * F, (W + PAD) * F, C, &error));
    guint32 state = 7;
    for (size_t i = 0; i < act_numel (&lr); i++) {
        state = state * 1664525u + 1013904223u;
        lr.data[i] = (float) (state >> 8) / (float) (1 << 24) * 1.6f - 0.8f;
    }
    for (int y = 0; y < (H + PAD) * F; y++)
        for (int x = 0; x < (W + PAD) * F; x++)
            for (int k = 0; k < C; k++) {
                float base = lr.data[((size_t) (y / F) * lr.w + x / F) * C + k];
                float detail = ((x + y) % 2 ? 0.1f : -0.1f);
                float drift = 0.2f - 0.1f * (float) k + 0.004f * (float) (x + y);
                hr.data[((size_t) y * hr.w + x) * C + k] = base + detail + drift;
            }
    Act before = hr;
    before.data = g_memdup2 (hr.data, act_numel (&hr) * sizeof (float));
    g_assert_true (color_fix_backproject (&hr, &lr, F, W, H, 4, &error));
    g_assert_no_error (error);
    double worst_mean = 0, detail_sum = 0;
    for (int by = 0; by < H; by++)
        for (int bx = 0; bx < W; bx++)
            for (int k = 0; k < C; k++) {
                double sum = 0, checker = 0;
                for (int dy = 0; dy < F; dy++)
                    for (int dx = 0; dx < F; dx++) {
                        int x = bx * F + dx, y = by * F + dy;
                        float v = hr.data[((size_t) y * hr.w + x) * C + k];
                        sum += v;
                        checker += (x + y) % 2 ? v : -v;
                    }
                double err = fabs (sum / (F * F) - lr.data[((size_t) by * lr.w + bx) * C + k]);
                worst_mean = MAX (worst_mean, err);
                detail_sum += checker / (F * F);
            }
    /* the drift was up to 0.3 (38 levels): what is left is below half a level */
    g_assert_cmpfloat (worst_mean, <, 1.0 / 255);
    /* the checkerboard's amplitude (0.1) is kept to within 2 % */
    g_assert_cmpfloat (fabs (detail_sum / (W * H * C) - 0.1), <, 0.002);
    /* the padding (outside the valid W x H blocks) is left alone */
    for (int y = 0; y < (H + PAD) * F; y++)
        for (int x = 0; x < (W + PAD) * F; x++)
            if (y >= H * F || x >= W * F)
                for (int k = 0; k < C; k++) {
                    size_t i = ((size_t) y * hr.w + x) * C + k;
                    g_assert_cmpfloat (hr.data[i], ==, before.data[i]);
                }
    act_free (&before);
    act_free (&lr);
    act_free (&hr);
}

/* Colour fix of an inpainting: a decoded fill whose colours drifted (a constant and a slow ramp
 * per channel) over detail (a 1-px checkerboard) takes the guide's smooth part and keeps the
 * detail; the decoded picture's error outside the fill (the autoencoder's, -0.4 here) does not
 * bleed into the fill's edge; outside the fill nothing changes. */
static void
test_color_fix_fill (void)
{
    enum { W = 64, H = 56, C = 3, X0 = 12, X1 = 52, Y0 = 10, Y1 = 46, R = 9 /* 3 sigma */ };
    Act guide = { 0 }, dec = { 0 };
    g_autoptr (GError) error = NULL;
    g_assert_true (act_alloc (&guide, 1, H, W, C, &error));
    g_assert_true (act_alloc (&dec, 1, H, W, C, &error));
    uint8_t fill[W * H];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            fill[y * W + x] = x >= X0 && x < X1 && y >= Y0 && y < Y1;
            for (int k = 0; k < C; k++) {
                size_t i = ((size_t) y * W + x) * C + k;
                guide.data[i] = -0.5f + 0.02f * (float) x - 0.01f * (float) (y + k);
                float drift = 0.25f - 0.1f * (float) k + 0.003f * (float) (x - y);
                float detail = (x + y) % 2 ? 0.1f : -0.1f;
                dec.data[i] = fill[y * W + x] ? guide.data[i] + drift + detail
                                              : guide.data[i] - 0.4f;
            }
        }
    Act before = dec;
    before.data = g_memdup2 (dec.data, act_numel (&dec) * sizeof (float));
    g_assert_true (color_fix_fill (&dec, &guide, fill, W, 3.0f, &error));
    g_assert_no_error (error);
    double worst_inner = 0, worst_edge = 0;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int k = 0; k < C; k++) {
                size_t i = ((size_t) y * W + x) * C + k;
                if (!fill[y * W + x]) {
                    g_assert_cmpfloat (dec.data[i], ==, before.data[i]);
                    continue;
                }
                float detail = (x + y) % 2 ? 0.1f : -0.1f;
                double e = fabs (dec.data[i] - (guide.data[i] + detail));
                gboolean inner = x >= X0 + R && x < X1 - R && y >= Y0 + R && y < Y1 - R;
                if (inner)
                    worst_inner = MAX (worst_inner, e);
                else
                    worst_edge = MAX (worst_edge, e);
            }
    /* the drift was up to 0.3 (38 levels): inside less than a level is left, the detail kept */
    g_assert_cmpfloat (worst_inner, <, 1.0 / 255);
    /* at the edge only the ramp's one-sided average (about 2 levels), not the -0.4 outside */
    g_assert_cmpfloat (worst_edge, <, 0.025);
    act_free (&before);
    act_free (&guide);
    act_free (&dec);
}

/* mean |horizontal step| / 2 of channel 0 over the 4 x 4 pixels from (x, y): the amplitude of
 * a 1-px checkerboard */
static double
checker_amplitude (const Act *a, int x, int y)
{
    double sum = 0;
    for (int dy = 0; dy < 4; dy++)
        for (int dx = 0; dx < 4; dx++) {
            size_t i = ((size_t) (y + dy) * a->w + x + dx) * a->c;
            sum += fabs (a->data[i] - a->data[i + a->c]) / 2;
        }
    return sum / 16;
}

/* Grain as around the hole: the surroundings are a 1-px checkerboard of amplitude 0.2 left of
 * x = 40 and smooth right of it; the fill (the hole in img holds something else: it must not
 * count) is all checkerboard. Near the smooth side its detail goes (less than a quarter left),
 * near the textured side it stays (more than 0.15); outside the fill nothing changes; a fill
 * that continues its surroundings' smooth ramp is not changed at all (never scaled up). */
static void
test_color_fix_grain (void)
{
    enum { W = 128, H = 64, C = 3, X0 = 16, X1 = 112, Y0 = 12, Y1 = 52, XT = 40 };
    Act img = { 0 }, dec = { 0 };
    g_autoptr (GError) error = NULL;
    g_assert_true (act_alloc (&img, 1, H, W, C, &error));
    g_assert_true (act_alloc (&dec, 1, H, W, C, &error));
    uint8_t fill[W * H];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            gboolean in = x >= X0 && x < X1 && y >= Y0 && y < Y1;
            fill[y * W + x] = in;
            float checker = (x + y) % 2 ? 0.2f : -0.2f;
            for (int k = 0; k < C; k++) {
                size_t i = ((size_t) y * W + x) * C + k;
                float smooth = -0.3f + 0.01f * (float) x + 0.1f * (float) k;
                img.data[i] = in ? 0.9f * checker /* the object that goes */
                                 : smooth + (x < XT ? checker : 0.0f);
                dec.data[i] = in ? smooth + checker : img.data[i];
            }
        }
    Act before = dec;
    before.data = g_memdup2 (dec.data, act_numel (&dec) * sizeof (float));
    g_assert_true (color_fix_grain (&dec, &img, fill, W, W, H, 1.5f, 8.0f, 1.5f, &error));
    g_assert_no_error (error);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            if (!fill[y * W + x])
                for (int k = 0; k < C; k++) {
                    size_t i = ((size_t) y * W + x) * C + k;
                    g_assert_cmpfloat (dec.data[i], ==, before.data[i]);
                }
    double textured = checker_amplitude (&dec, X0 + 1, 30);
    double smooth = checker_amplitude (&dec, X1 - 6, 30);
    g_test_message ("checkerboard amplitude in the fill: by the textured side %.3f, by the "
                    "smooth side %.3f (0.2 before)", textured, smooth);
    g_assert_cmpfloat (textured, >, 0.15);
    g_assert_cmpfloat (smooth, <, 0.05);

    /* a smooth fill in the same surroundings: bit for bit as it was */
    for (int y = Y0; y < Y1; y++)
        for (int x = X0; x < X1; x++)
            for (int k = 0; k < C; k++)
                dec.data[((size_t) y * W + x) * C + k]
                    = -0.3f + 0.01f * (float) x + 0.1f * (float) k;
    memcpy (before.data, dec.data, act_numel (&dec) * sizeof (float));
    g_assert_true (color_fix_grain (&dec, &img, fill, W, W, H, 1.5f, 8.0f, 1.5f, &error));
    g_assert_no_error (error);
    g_assert_cmpmem (dec.data, act_numel (&dec) * sizeof (float), before.data,
                     act_numel (&dec) * sizeof (float));
    act_free (&before);
    act_free (&img);
    act_free (&dec);
}

/* The alignment padding is not the picture: a tall hole at the right edge of a textured
 * picture (a 1-px checkerboard of amplitude 0.2 all round) whose padding beyond VW is smooth
 * in the input (as repeated edge pixels are; the decoder draws grain there as elsewhere) keeps
 * the fill's checkerboard, as grainy as its surroundings, up to the edge; counted as known, the
 * smooth padding took it down. Outside the fill (the padding too) nothing changes. */
static void
test_color_fix_grain_padding (void)
{
    enum { W = 96, H = 64, VW = 64, C = 3, X0 = 32, Y0 = 4, Y1 = 60 };
    Act img = { 0 }, dec = { 0 };
    g_autoptr (GError) error = NULL;
    g_assert_true (act_alloc (&img, 1, H, W, C, &error));
    g_assert_true (act_alloc (&dec, 1, H, W, C, &error));
    uint8_t fill[W * H];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            gboolean in = x >= X0 && x < VW && y >= Y0 && y < Y1;
            fill[y * W + x] = in;
            float checker = (x + y) % 2 ? 0.2f : -0.2f;
            for (int k = 0; k < C; k++) {
                size_t i = ((size_t) y * W + x) * C + k;
                float smooth = -0.2f + 0.1f * (float) k;
                img.data[i] = x >= VW ? smooth : in ? 0.5f /* the object that goes */
                                                     : smooth + checker;
                dec.data[i] = smooth + checker;
            }
        }
    Act before = dec;
    before.data = g_memdup2 (dec.data, act_numel (&dec) * sizeof (float));
    g_assert_true (color_fix_grain (&dec, &img, fill, W, VW, H, 1.5f, 8.0f, 1.5f, &error));
    g_assert_no_error (error);
    double edge = checker_amplitude (&dec, VW - 4, 30);
    /* the same call with the padding taken as picture: the old behaviour, for contrast */
    Act old = dec;
    old.data = g_memdup2 (before.data, act_numel (&dec) * sizeof (float));
    g_assert_true (color_fix_grain (&old, &img, fill, W, W, H, 1.5f, 8.0f, 1.5f, &error));
    double edge_old = checker_amplitude (&old, VW - 4, 30);
    g_test_message ("checkerboard amplitude at the picture's right edge: %.3f (0.2 before; "
                    "%.3f with the padding counted as known)", edge, edge_old);
    g_assert_cmpfloat (edge, >, 0.18);
    g_assert_cmpfloat (edge_old, <, edge - 0.02);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            if (!fill[y * W + x])
                for (int k = 0; k < C; k++) {
                    size_t i = ((size_t) y * W + x) * C + k;
                    g_assert_cmpfloat (dec.data[i], ==, before.data[i]);
                }
    act_free (&old);
    act_free (&before);
    act_free (&img);
    act_free (&dec);
}

/* ------------------------------------------------ Stable Diffusion: 4 channels, init */

/* A Stable Diffusion text-to-image model (v1-inference.yaml's layout: LatentDiffusion,
 * crossattn, a 4-channel U-Net) made from sd-inpaint-tiny: its tensors with the U-Net's input
 * convolution cut to the x_t channels ([32, 9, 3, 3] -> [32, 4, 3, 3], the first 4 of
 * [x_t | mask | masked latent]) and its config with the text-to-image class, key and
 * channels. Returns the model's path in copy's new folder, or NULL without the fixture. */
static char *
make_sd_txt2img_from (const char *fixture, FixtureCopy *copy)
{
    if (!fixture_copy_begin (copy, fixture, "ldm-sd4-XXXXXX"))
        return NULL;
    g_autoptr (GError) error = NULL;
    g_autofree char *config = NULL;
    g_assert_true (g_file_get_contents (copy->config_src, &config, NULL, &error));
    const char *const edits[][2] = {
        { "ddpm.LatentInpaintDiffusion", "ddpm.LatentDiffusion" },
        { "conditioning_key: hybrid", "conditioning_key: crossattn" },
        { "in_channels: 9", "in_channels: 4" },
    };
    for (size_t i = 0; i < G_N_ELEMENTS (edits); i++) {
        g_assert_nonnull (strstr (config, edits[i][0]));
        g_auto (GStrv) parts = g_strsplit (config, edits[i][0], 2);
        g_free (config);
        config = g_strjoinv (edits[i][1], parts);
    }
    g_autofree char *yaml = fixture_copy_path (copy, "config.yaml");
    g_assert_true (g_file_set_contents (yaml, config, -1, &error));

    /* safetensors: an 8-byte header length, the JSON header, then the float32 data */
    g_autoptr (LdmTensorFile) src = ldm_tensor_file_open (copy->model_src, &error);
    g_assert_no_error (error);
    g_autoptr (GString) header = g_string_new ("{");
    g_autoptr (GByteArray) data = g_byte_array_new ();
    for (size_t i = 0; i < ldm_tensor_file_count (src); i++) {
        const LdmTensor *t = ldm_tensor_file_at (src, i);
        if (!g_str_has_prefix (t->name, "model.diffusion_model.")
            && !g_str_has_prefix (t->name, "model_ema.diffusion_model")
            && !g_str_has_prefix (t->name, "first_stage_model.")
            && !g_str_has_prefix (t->name, "cond_stage_model.")) /* the text encoder, if any */
            continue;
        size_t n = (size_t) ldm_tensor_numel (t);
        g_autofree float *v = g_new (float, n);
        g_assert_true (ldm_tensor_read_f32 (t, v, n, &error));
        int64_t shape[LDM_MAX_DIMS];
        memcpy (shape, t->shape, sizeof shape);
        bool conv_in = g_str_has_suffix (t->name, "input_blocks.0.0.weight")
                       || g_str_has_suffix (t->name, "input_blocks00weight");
        if (conv_in) { /* [out, 9, 3, 3] -> [out, 4, 3, 3] */
            g_assert_cmpint (shape[1], ==, 9);
            size_t kernel = (size_t) (shape[2] * shape[3]);
            for (int64_t o = 0; o < shape[0]; o++)
                memmove (v + o * 4 * kernel, v + o * 9 * kernel, 4 * kernel * sizeof (float));
            shape[1] = 4;
            n = (size_t) shape[0] * 4 * kernel;
        }
        g_string_append_printf (header, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[",
                                header->len > 1 ? "," : "", t->name);
        for (int d = 0; d < t->ndim; d++)
            g_string_append_printf (header, "%s%" G_GINT64_FORMAT, d ? "," : "", shape[d]);
        g_string_append_printf (header, "],\"data_offsets\":[%u,%" G_GSIZE_FORMAT "]}", data->len,
                                data->len + n * sizeof (float));
        g_byte_array_append (data, (const guint8 *) v, (guint) (n * sizeof (float)));
    }
    g_string_append_c (header, '}');
    while (header->len % 8)
        g_string_append_c (header, ' ');
    g_autofree char *path = fixture_copy_path (copy, "model.safetensors");
    FILE *f = fopen (path, "wb");
    g_assert_nonnull (f);
    uint64_t len = GUINT64_TO_LE (header->len);
    g_assert_cmpuint (fwrite (&len, 8, 1, f), ==, 1);
    g_assert_cmpuint (fwrite (header->str, 1, header->len, f), ==, header->len);
    g_assert_cmpuint (fwrite (data->data, 1, data->len, f), ==, data->len);
    g_assert_cmpint (fclose (f), ==, 0);
    return g_steal_pointer (&path);
}

static char *
make_sd_txt2img (FixtureCopy *copy)
{
    return make_sd_txt2img_from ("sd-inpaint-tiny", copy);
}

static size_t
pixels_differing (const LdmImage *a, const LdmImage *b, const LdmImage *mask, bool inside)
{
    size_t n = 0;
    for (int p = 0; p < a->width * a->height; p++)
        if ((mask->pixels[p] >= 128) == inside)
            n += memcmp (a->pixels + (size_t) p * a->channels, b->pixels + (size_t) p * b->channels,
                         a->channels) != 0;
    return n;
}

static size_t
mask_pixels (const LdmImage *mask)
{
    size_t n = 0;
    for (int p = 0; p < mask->width * mask->height; p++)
        n += mask->pixels[p] >= 128;
    return n;
}

/* A copy of image whose pixels inside (or outside) the mask are inverted. */
static LdmImage
inverted_copy (const LdmImage *image, const LdmImage *mask, bool inside)
{
    size_t bytes = (size_t) image->width * image->height * image->channels;
    LdmImage copy = { image->width, image->height, image->channels, g_memdup2 (image->pixels, bytes) };
    for (int p = 0; p < image->width * image->height; p++)
        if ((mask->pixels[p] >= 128) == inside)
            for (int c = 0; c < image->channels; c++)
                copy.pixels[(size_t) p * image->channels + c] ^= 0xff;
    return copy;
}

typedef struct {
    E2E          e;
    LdmImage     image, mask;
    float       *context, *uncond;
} SdCase;

/* The model at model_path and the inputs of fixture's reference (the image, the mask and with
 * `contexts` its prompt's and CLIP("")'s contexts); FALSE (skipped) when either path is NULL. */
static gboolean
sd_case_open (SdCase *c, const char *model_path, const char *fixture, bool contexts)
{
    *c = (SdCase) { 0 };
    g_autofree char *ref_path = fixture_path (fixture, "reference.safetensors");
    if (!e2e_load (&c->e, model_path, ref_path))
        return FALSE;
    c->image = ref_image (c->e.ref, "input.image", true);
    c->mask = ref_mask (c->e.ref, "input.mask");
    if (contexts) {
        c->context = ref_read (c->e.ref, "cond.context", NULL);
        c->uncond = ref_read (c->e.ref, "cond.uncond_context", NULL);
    }
    return TRUE;
}

static void
sd_case_close (SdCase *c)
{
    ldm_image_clear (&c->image);
    ldm_image_clear (&c->mask);
    g_free (c->context);
    g_free (c->uncond);
    e2e_close (&c->e);
}

static void
sd_case_params (SdCase *c, LdmSampleParams *p)
{
    ldm_sample_params_init (p, LDM_TASK_INPAINT);
    p->steps = 6;
    p->seed = 1;
    p->context = c->context;
    p->uncond_context = c->uncond;
    p->context_tokens = 77;
}

static LdmImage
sd_run (SdCase *c, const LdmImage *image, const LdmSampleParams *p)
{
    LdmImage out = { 0 };
    g_autoptr (GError) error = NULL;
    g_assert_true (ldm_inpaint (c->e.engine, image, &c->mask, p, &out, &error));
    g_assert_no_error (error);
    assert_outside_mask_unchanged (image, &c->mask, &out);
    return out;
}

static bool
same_image (const LdmImage *a, const LdmImage *b)
{
    return memcmp (a->pixels, b->pixels, (size_t) a->width * a->height * a->channels) == 0;
}

/* A text-to-image SD checkpoint (4 channels, cut from sd-inpaint-clip-tiny with its CLIP)
 * inpaints from a prompt: the fill changes with the prompt, the outside stays exact, the
 * same prompt and seed give the same pixels. */
static void
test_inpaint_sd_txt2img_prompt (void)
{
    g_auto (FixtureCopy) copy = { 0 };
    g_autofree char *path = make_sd_txt2img_from ("sd-inpaint-clip-tiny", &copy);
    SdCase c;
    if (!sd_case_open (&c, path, "sd-inpaint-clip-tiny", false))
        return;
    g_assert_cmpint (ldm_model_kind (c.e.model), ==, LDM_MODEL_SD);
    LdmSampleParams p;
    sd_case_params (&c, &p); /* no context: the prompts below */
    p.prompt = "a photograph of an astronaut riding a horse";
    p.negative_prompt = "blurry";
    LdmImage a = sd_run (&c, &c.image, &p), again = sd_run (&c, &c.image, &p);
    g_assert_true (same_image (&a, &again));
    size_t filled = pixels_differing (&a, &c.image, &c.mask, true);
    p.prompt = "a red cube on a table";
    LdmImage b = sd_run (&c, &c.image, &p);
    size_t moved = pixels_differing (&a, &b, &c.mask, true);
    g_test_message ("4-channel SD with a prompt: %zu of %zu mask pixels filled, another prompt "
                    "changes %zu", filled, mask_pixels (&c.mask), moved);
    g_assert_cmpuint (filled, >, mask_pixels (&c.mask) / 2);
    g_assert_cmpuint (moved, >, mask_pixels (&c.mask) / 2);
    ldm_image_clear (&a);
    ldm_image_clear (&again);
    ldm_image_clear (&b);
    sd_case_close (&c);
}

/* Any SD 1.x checkpoint inpaints: a 4-channel U-Net sees x alone, so the image reaches the
 * fill only through the known latents put back after every step (always, keep_known or not).
 * Its default sampler is DPM++ 2M Karras. */
static void
test_inpaint_sd_txt2img (void)
{
    g_auto (FixtureCopy) copy = { 0 };
    g_autofree char *path = make_sd_txt2img (&copy);
    SdCase c;
    if (!sd_case_open (&c, path, "sd-inpaint-tiny", true))
        return;
    g_assert_cmpint (ldm_model_kind (c.e.model), ==, LDM_MODEL_SD);
    g_autofree char *text = ldm_model_describe (c.e.model);
    g_assert_nonnull (strstr (text, "Stable Diffusion (text-to-image)"));
    g_assert_cmpint (ldm_sampler_for_model (LDM_SAMPLER_DEFAULT, LDM_MODEL_SD), ==,
                     LDM_SAMPLER_DPMPP_2M_KARRAS);
    LdmSampleParams p;
    sd_case_params (&c, &p);

    LdmImage out = sd_run (&c, &c.image, &p);
    size_t hole = mask_pixels (&c.mask), changed = pixels_differing (&out, &c.image, &c.mask, true);
    g_test_message ("4-channel SD: %zu of the %zu masked pixels changed", changed, hole);
    g_assert_cmpuint (changed, >, hole / 2);
    /* the same seed: the same pixels; the default is DPM++ 2M Karras, not DDIM */
    LdmImage again = sd_run (&c, &c.image, &p);
    g_assert_true (same_image (&out, &again));
    ldm_image_clear (&again);
    p.sampler = LDM_SAMPLER_DPMPP_2M_KARRAS;
    again = sd_run (&c, &c.image, &p);
    g_assert_true (same_image (&out, &again));
    ldm_image_clear (&again);
    p.sampler = LDM_SAMPLER_DDIM;
    again = sd_run (&c, &c.image, &p);
    g_assert_false (same_image (&out, &again));
    ldm_image_clear (&again);
    p.sampler = LDM_SAMPLER_DEFAULT;
    /* blending is how it inpaints: on even without keep_known */
    p.keep_known = FALSE;
    again = sd_run (&c, &c.image, &p);
    g_assert_true (same_image (&out, &again));
    ldm_image_clear (&again);
    p.keep_known = TRUE;
    /* the picture around the hole decides the fill (the U-Net itself never sees it) */
    LdmImage other = inverted_copy (&c.image, &c.mask, false);
    again = sd_run (&c, &other, &p);
    size_t moved = pixels_differing (&out, &again, &c.mask, true);
    g_test_message ("4-channel SD, the surroundings inverted: %zu of the %zu fill pixels "
                    "changed", moved, hole);
    g_assert_cmpuint (moved, >, hole / 2);
    ldm_image_clear (&again);
    ldm_image_clear (&other);
    /* without a context it cannot run */
    p.context = NULL;
    g_autoptr (GError) error = NULL;
    g_assert_false (ldm_inpaint (c.e.engine, &c.image, &c.mask, &p, &again, &error));
    g_assert_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT);
    g_assert_null (again.pixels);

    ldm_image_clear (&out);
    sd_case_close (&c);
}

static gboolean
count_steps (void *data, int step, int steps)
{
    int *seen = data; /* calls, last total */
    g_assert_cmpint (step, ==, seen[0] + 1);
    seen[0]++;
    seen[1] = steps;
    return TRUE;
}

/* init / strength for Stable Diffusion (the LDM path's implementation): with strength s only
 * round(s x steps) steps run; "original" starts from the image itself, so what was under the
 * hole shows in the result, while "noise" and "fill" (a membrane from the surroundings) never
 * see it. Both the 9-channel inpainting model and a 4-channel one. */
static void
test_init_strength_sd (gconstpointer data)
{
    bool four = GPOINTER_TO_INT (data);
    g_auto (FixtureCopy) copy = { 0 };
    g_autofree char *path = four ? make_sd_txt2img (&copy)
                                 : fixture_path ("sd-inpaint-tiny", "model.safetensors");
    SdCase c;
    if (!sd_case_open (&c, path, "sd-inpaint-tiny", true))
        return;
    LdmImage under = inverted_copy (&c.image, &c.mask, true); /* another picture in the hole */
    size_t hole = mask_pixels (&c.mask);
    LdmSampleParams p;
    sd_case_params (&c, &p);
    p.steps = 10;
    const struct { LdmInit init; float strength; int steps; bool sees_hole; } cases[] = {
        { LDM_INIT_NOISE, 1.0f, 10, false },
        { LDM_INIT_FILL, 0.5f, 5, false },
        { LDM_INIT_ORIGINAL, 0.5f, 5, true },
        { LDM_INIT_ORIGINAL, 0.3f, 3, true },
    };
    LdmImage first = { 0 };
    for (size_t i = 0; i < G_N_ELEMENTS (cases); i++) {
        int seen[2] = { 0, 0 };
        p.init = cases[i].init;
        p.strength = cases[i].strength;
        p.progress = count_steps;
        p.progress_data = seen;
        LdmImage a = sd_run (&c, &c.image, &p);
        g_assert_cmpint (seen[0], ==, cases[i].steps);
        g_assert_cmpint (seen[1], ==, cases[i].steps);
        p.progress = NULL;
        LdmImage b = sd_run (&c, &under, &p);
        size_t moved = pixels_differing (&a, &b, &c.mask, true);
        g_test_message ("%s channels, init %s, strength %.2f: %d steps; another picture under "
                        "the hole changed %zu of %zu fill pixels", four ? "4" : "9",
                        ldm_init_name (cases[i].init), cases[i].strength, seen[0], moved, hole);
        /* a 4-channel model's known latents are the whole image's encoding, whose receptive
         * field reaches into the hole: only the 9-channel model's fill is blind to it */
        if (cases[i].sees_hole)
            g_assert_cmpuint (moved, >, hole / 2);
        else if (!four)
            g_assert_cmpuint (moved, ==, 0);
        /* every start gives its own result */
        if (i == 0)
            first = a;
        else {
            g_assert_false (same_image (&first, &a));
            ldm_image_clear (&a);
        }
        ldm_image_clear (&b);
    }
    ldm_image_clear (&first);
    ldm_image_clear (&under);
    sd_case_close (&c);
}

int
main (int argc, char **argv)
{
    g_test_init (&argc, &argv, NULL);
    static const ChainCase chains[] = {
        { "ldm-inpaint-tiny", "model.ckpt", "cond.c", "", 0 },
        { "ldm-inpaint-tiny", "model.safetensors", "cond.c", "", 0 },
        { "ldm-sr-tiny", "model.ckpt", "cond.lr", "eta0.", 0 },
        { "ldm-sr-tiny", "model.safetensors", "cond.lr", "eta1.", 1 },
        { "sd-inpaint-tiny", "model.ckpt", "cond.c_concat", "", 0 },
        { "sd-inpaint-tiny", "model.safetensors", "cond.c_concat", "", 0 },
    };
    for (size_t i = 0; i < G_N_ELEMENTS (chains); i++) {
        g_autofree char *path = g_strdup_printf ("/pipeline/chain/%s/%s/%s", chains[i].fixture,
                                                 chains[i].weights_file,
                                                 chains[i].run[0] ? chains[i].run : "run");
        g_test_add_data_func (path, &chains[i], test_chain);
    }
    static const char *files[2] = { "model.ckpt", "model.safetensors" };
    for (int i = 0; i < 2; i++) {
        g_autofree char *a = g_strdup_printf ("/pipeline/inpaint-ldm/%s", files[i]);
        g_autofree char *b = g_strdup_printf ("/pipeline/inpaint-sd/%s", files[i]);
        g_autofree char *c = g_strdup_printf ("/pipeline/upscale/%s", files[i]);
        g_test_add_data_func (a, files[i], test_inpaint_ldm);
        g_test_add_data_func (b, files[i], test_inpaint_sd);
        g_test_add_data_func (c, files[i], test_upscale);
        g_autofree char *d = g_strdup_printf ("/pipeline/inpaint-sd-prompt/%s", files[i]);
        g_autofree char *f = g_strdup_printf ("/pipeline/prompt-contexts/%s", files[i]);
        g_test_add_data_func (d, files[i], test_inpaint_sd_prompt);
        g_test_add_data_func (f, files[i], test_prompt_contexts);
    }
    g_test_add_func ("/pipeline/prompt-tokenizer-beside-model", test_prompt_tokenizer_beside);
    g_test_add_func ("/pipeline/inpaint-sd-4-channels", test_inpaint_sd_txt2img);
    g_test_add_func ("/pipeline/inpaint-sd-4-channels-prompt", test_inpaint_sd_txt2img_prompt);
    g_test_add_data_func ("/pipeline/init-strength-sd/9-channels", GINT_TO_POINTER (0),
                          test_init_strength_sd);
    g_test_add_data_func ("/pipeline/init-strength-sd/4-channels", GINT_TO_POINTER (1),
                          test_init_strength_sd);
    g_test_add_func ("/pipeline/edges", test_inpaint_edges);
    g_test_add_func ("/pipeline/upscale-tiled", test_upscale_tiled);
    g_test_add_func ("/pipeline/match-region-mean", test_match_region_mean);
    g_test_add_func ("/pipeline/color-fix", test_color_fix);
    g_test_add_func ("/pipeline/color-fix-fill", test_color_fix_fill);
    g_test_add_func ("/pipeline/color-fix-grain", test_color_fix_grain);
    g_test_add_func ("/pipeline/color-fix-grain-padding", test_color_fix_grain_padding);
    return g_test_run ();
}
