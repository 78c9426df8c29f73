/* ldm: the command-line program of gimp-ldm, a client of libldm-core.
 *
 *   ldm info MODEL            what the model is (kind, sub-models, parameters, dtype, config source)
 *   ldm tensors FILE [NAME..] the tensors of a file; with names, their values' statistics
 *   ldm inpaint ...           fill the masked part of an image
 *   ldm upscale ...           make an image 4x larger
 *   ldm tokenize TEXT         the CLIP token ids of a prompt (77 per row)
 *
 * Exit codes: 0 success, 1 a failure while working, 2 bad arguments or a bad input file.
 */
#include "image_io.h"
#include "ldm_bench.h"
#include "ldm.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXIT_BAD_INPUT 2

static void
print_usage (FILE *out)
{
    fputs ("usage: ldm COMMAND [ARGS]\n"
           "\n"
           "commands:\n"
           "  info MODEL             describe a model file (.ckpt, .pt, .pth, .safetensors)\n"
           "  tensors FILE [NAME...]  list the tensors of a file; with names, convert those\n"
           "                         to float32 and print min, max, mean and non-finite count\n"
           "  inpaint [--model M] --image IN --mask MASK --output OUT [options]\n"
           "                         fill the mask's white part of the image\n"
           "  upscale [--model M] --image IN --output OUT [options]\n"
           "                         make the image 4x larger\n"
           "  tokenize [--tokenizer F] [--model M] TEXT\n"
           "                         print the CLIP token ids of TEXT (Stable Diffusion's\n"
           "                         77-id row; then its 75-token chunks when longer)\n"
           "  encode-text --model M --prompt P --output F.safetensors\n"
           "                         the text context of P (tensor context, 1 x 77 x dim\n"
           "                         float32; 77 x chunks rows for a prompt over 75 tokens)\n"
           "  bench --model M [--latent HxW] [--repeat N] [--json]\n"
           "                         time the model's networks (ldm bench --help)\n"
           "  help                   this text\n"
           "\n"
           "Run `ldm inpaint --help` or `ldm upscale --help` for their options.\n",
           out);
}

static int
command_info (int argc, char **argv)
{
    if (argc != 2) {
        fputs ("usage: ldm info MODEL\n", stderr);
        return EXIT_BAD_INPUT;
    }
    g_autoptr (GError) error = NULL;
    g_autoptr (LdmModel) model = ldm_model_load (argv[1], &error);
    if (!model) {
        fprintf (stderr, "ldm: %s\n", error->message);
        return EXIT_BAD_INPUT;
    }
    g_autofree char *text = ldm_model_describe (model);
    fputs (text, stdout);
    return 0;
}

static void
print_shape (const LdmTensor *tensor)
{
    putchar ('[');
    for (int d = 0; d < tensor->ndim; d++)
        printf (d ? ", %" G_GINT64_FORMAT : "%" G_GINT64_FORMAT, tensor->shape[d]);
    putchar (']');
}

static int
print_tensor_stats (const LdmTensorFile *file, const char *name)
{
    const LdmTensor *tensor = ldm_tensor_file_lookup (file, name);
    if (!tensor) {
        fprintf (stderr, "ldm: %s: no tensor named '%s'\n", ldm_tensor_file_path (file), name);
        return EXIT_BAD_INPUT;
    }
    size_t n = (size_t) ldm_tensor_numel (tensor);
    float *values = g_try_malloc_n (n ? n : 1, sizeof (float));
    if (!values) {
        fprintf (stderr, "ldm: not enough memory for tensor '%s' (%zu values)\n", name, n);
        return 1;
    }
    g_autoptr (GError) error = NULL;
    if (!ldm_tensor_read_f32 (tensor, values, n, &error)) {
        fprintf (stderr, "ldm: %s\n", error->message);
        g_free (values);
        return EXIT_BAD_INPUT;
    }
    double sum = 0, lo = INFINITY, hi = -INFINITY;
    size_t nonfinite = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite (values[i])) {
            nonfinite++;
            continue;
        }
        sum += values[i];
        lo = fmin (lo, values[i]);
        hi = fmax (hi, values[i]);
    }
    g_free (values);
    printf ("%s %s ", name, ldm_dtype_name (tensor->dtype));
    print_shape (tensor);
    printf (" min %.9g max %.9g mean %.9g non-finite %zu\n", n ? lo : 0.0, n ? hi : 0.0,
            n > nonfinite ? sum / (double) (n - nonfinite) : 0.0, nonfinite);
    return 0;
}

static int
command_tensors (int argc, char **argv)
{
    if (argc < 2) {
        fputs ("usage: ldm tensors FILE [NAME...]\n", stderr);
        return EXIT_BAD_INPUT;
    }
    g_autoptr (GError) error = NULL;
    g_autoptr (LdmTensorFile) file = ldm_tensor_file_open (argv[1], &error);
    if (!file) {
        fprintf (stderr, "ldm: %s\n", error->message);
        return EXIT_BAD_INPUT;
    }
    if (argc == 2) {
        for (size_t i = 0; i < ldm_tensor_file_count (file); i++) {
            const LdmTensor *tensor = ldm_tensor_file_at (file, i);
            printf ("%s %s ", tensor->name, ldm_dtype_name (tensor->dtype));
            print_shape (tensor);
            putchar ('\n');
        }
        return 0;
    }
    for (int i = 2; i < argc; i++) {
        int status = print_tensor_stats (file, argv[i]);
        if (status)
            return status;
    }
    return 0;
}

/* ------------------------------------------------------------ inpaint, upscale */

typedef struct {
    char   *model, *image, *mask, *output, *x_T, *sampler, *context, *uncond_context, *noise;
    char   *prompt, *negative_prompt; /* UTF-8 (GOption converts from the locale) */
    /* numbers as typed: parsed strictly after the options (GOption takes "nan" as a double) */
    char   *steps, *eta, *seed, *guidance, *init, *strength;
    /* inpainting's region, as the plug-in's (ldm_region_params_init) */
    char   *context_padding, *working_size, *mask_grow, *mask_blur;
    char   *memory_limit, *precision;
    int     requested_steps;
    gboolean quiet, told_steps, authors, from_image, timings;
    /* --timings: when the run started and its first and last steps ended (monotonic us) */
    gint64  run_start, first_step_end, last_step_end;
    int     steps_done, steps_total;
    /* the aids: each can be forced on or off over the defaults (or --authors) */
    gboolean keep_known, no_keep_known, match_colors, no_match_colors, color_fix, no_color_fix;
} RunOptions;

static void
run_options_clear (RunOptions *o)
{
    g_free (o->model);
    g_free (o->image);
    g_free (o->mask);
    g_free (o->output);
    g_free (o->x_T);
    g_free (o->sampler);
    g_free (o->context);
    g_free (o->uncond_context);
    g_free (o->prompt);
    g_free (o->negative_prompt);
    g_free (o->precision);
    g_free (o->noise);
    g_free (o->steps);
    g_free (o->eta);
    g_free (o->seed);
    g_free (o->guidance);
    g_free (o->init);
    g_free (o->strength);
    g_free (o->context_padding);
    g_free (o->working_size);
    g_free (o->mask_grow);
    g_free (o->mask_blur);
    g_free (o->memory_limit);
}

/* A whole decimal integer in [lo, hi], or an error naming the option. */
static gboolean
parse_int_option (const char *option, const char *text, gint64 lo, gint64 hi, gint64 *out,
                  GError **error)
{
    char *end = NULL;
    errno = 0;
    gint64 v = g_ascii_strtoll (text, &end, 10);
    if (!*text || *end || errno || v < lo || v > hi) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "%s must be a whole number from %" G_GINT64_FORMAT " to %" G_GINT64_FORMAT
                     ", not '%s'", option, lo, hi, text);
        return FALSE;
    }
    *out = v;
    return TRUE;
}

/* A finite number in [lo, hi], or an error naming the option. */
static gboolean
parse_double_option (const char *option, const char *text, double lo, double hi, double *out,
                     GError **error)
{
    char *end = NULL;
    errno = 0;
    double v = g_ascii_strtod (text, &end);
    if (!*text || *end || errno || !isfinite (v) || v < lo || v > hi) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "%s must be a number from %g to %g, not '%s'", option, lo, hi, text);
        return FALSE;
    }
    *out = v;
    return TRUE;
}

/* --memory-limit: megabytes ("1500"), or with a unit: K, M, G (or KB, MB, GB, KiB...; powers
 * of 1024, case ignored). At least 1 MB, at most 16 TB. */
static gboolean
parse_memory_option (const char *text, uint64_t *bytes, GError **error)
{
    char *end = NULL;
    errno = 0;
    double v = g_ascii_strtod (text, &end);
    uint64_t unit = 1024 * 1024;
    if (end && *end) {
        char u = g_ascii_toupper (*end);
        const char *rest = end + 1;
        unit = u == 'K' ? 1024 : u == 'M' ? 1024 * 1024 : u == 'G' ? 1024ull << 20
             : u == 'T' ? 1024ull << 30 : 0;
        if (g_ascii_strcasecmp (rest, "") && g_ascii_strcasecmp (rest, "B")
            && g_ascii_strcasecmp (rest, "iB"))
            unit = 0;
    }
    double b = v * (double) unit;
    if (!*text || end == text || errno || !isfinite (v) || unit == 0 || b < 1024.0 * 1024.0
        || b > 16.0 * (1ull << 40)) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "--memory-limit must be megabytes or a size with a unit (K, M, G, T), "
                     "from 1 MB to 16 TB, like 1500 or 4G, not '%s'", text);
        return FALSE;
    }
    *bytes = (uint64_t) b;
    return TRUE;
}

/* FILE.safetensors:TENSOR -> a new float array (*len values). */
static float *
read_tensor_arg (const char *arg, size_t *len, GError **error)
{
    const char *colon = strrchr (arg, ':');
    if (!colon || colon == arg || !colon[1]) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "'%s' should be FILE:TENSOR (a tensor in a safetensors file)", arg);
        return NULL;
    }
    g_autofree char *path = g_strndup (arg, colon - arg);
    g_autoptr (LdmTensorFile) file = ldm_tensor_file_open (path, error);
    if (!file)
        return NULL;
    const LdmTensor *t = ldm_tensor_file_lookup (file, colon + 1);
    if (!t) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT, "%s: no tensor named '%s'", path,
                     colon + 1);
        return NULL;
    }
    *len = (size_t) ldm_tensor_numel (t);
    float *data = g_try_malloc_n (*len ? *len : 1, sizeof (float));
    if (!data || !ldm_tensor_read_f32 (t, data, *len, error)) {
        if (!data)
            g_set_error (error, LDM_ERROR, LDM_ERROR_NO_MEMORY, "not enough memory for %s", arg);
        g_free (data);
        return NULL;
    }
    return data;
}

/* --step-noise FILE:PATTERN: tensor PATTERN % step of FILE for each step. */
typedef struct {
    LdmTensorFile *file;
    char          *pattern;
} StepNoise;

static gboolean
read_step_noise (void *data, int step, float *out, size_t n, GError **error)
{
    StepNoise *sn = data;
    g_autofree char *name = g_strdup_printf (sn->pattern, step);
    const LdmTensor *t = ldm_tensor_file_lookup (sn->file, name);
    if (!t) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT, "%s: no tensor named '%s'",
                     ldm_tensor_file_path (sn->file), name);
        return FALSE;
    }
    return ldm_tensor_read_f32 (t, out, n, error);
}

static gboolean
show_progress (void *data, int step, int steps)
{
    RunOptions *o = data;
    gint64 now = g_get_monotonic_time ();
    if (o->steps_done == 0)
        o->first_step_end = now;
    o->last_step_end = now;
    o->steps_done++;
    o->steps_total = steps;
    if (o->quiet)
        return TRUE;
    if (!o->told_steps && o->from_image) {
        fprintf (stderr, "ldm: --init %s: running the last %d steps of the schedule for %d\n",
                 o->init, steps, o->requested_steps);
        o->told_steps = TRUE;
    } else if (!o->told_steps && steps != o->requested_steps) {
        /* CompVis' DDIM schedule: timesteps c = 1000 / N apart, which can make N + 1 */
        fprintf (stderr, "ldm: the schedule for %d steps has %d steps (the authors' spacing "
                 "of the timesteps); running %d\n", o->requested_steps, steps, steps);
        o->told_steps = TRUE;
    }
    if (!isatty (STDERR_FILENO))
        return TRUE;
    int width = 30, done = step * width / steps;
    fprintf (stderr, "\r%s [%.*s%*s] %d/%d", o->output, done,
             "==============================", width - done, "", step, steps);
    if (step == steps)
        fputc ('\n', stderr);
    return TRUE;
}

/* --timings: the progress callback marks the end of each step, so the first step's end less
 * one step's time is when sampling began (encoding, the text encoder, the start's noising
 * before it) and what follows the last step is decoding (and pasting the result). */
static void
print_timings (const RunOptions *o, LdmPrecision precision, double load_s, gint64 run_end)
{
    int n = o->steps_done;
    const char *p = ldm_precision_name (precision);
    if (n == 0) {
        fprintf (stderr, "ldm: timings: load %.2f s, run %.2f s (no steps); peak RSS %.0f MB; %s\n",
                 load_s, (run_end - o->run_start) / 1e6, ldm_peak_rss_mb (), p);
        return;
    }
    double per_step = n > 1 ? (o->last_step_end - o->first_step_end) / 1e6 / (n - 1) : 0.0;
    double before = (o->first_step_end - o->run_start) / 1e6 - per_step;
    double steps_s = (o->last_step_end - o->first_step_end) / 1e6 + per_step;
    fprintf (stderr, "ldm: timings: load %.2f s, encode %.2f s, %d steps %.2f s (%.3f s each), "
             "decode %.2f s, whole %.2f s; peak RSS %.0f MB; %s\n", load_s, before, n, steps_s,
             per_step, (run_end - o->last_step_end) / 1e6, load_s + (run_end - o->run_start) / 1e6,
             ldm_peak_rss_mb (), p);
}

/* Each window of a step that runs in windows: the bar moves by tiles x steps. */
static gboolean
show_tile_progress (void *data, int step, int steps, int tile, int tiles)
{
    RunOptions *o = data;
    if (o->quiet || !isatty (STDERR_FILENO))
        return TRUE;
    int width = 30, done = (int) (((double) (step - 1) + (double) tile / tiles) * width / steps);
    done = CLAMP (done, 0, width);
    fprintf (stderr, "\r%s [%.*s%*s] %d/%d, window %d/%d", o->output, done,
             "==============================", width - done, "", step, steps, tile, tiles);
    return TRUE;
}

/* The 16-bit samples of a result from a 16-bit input: the input's own samples where the
 * engine kept the pixel (where `mask`, the pixels that may have changed, is below 128, and
 * alpha everywhere: ldm_inpaint's promise),
 * the engine's 8-bit values widened elsewhere (and everywhere for an upscale). */
static uint16_t *
deepen_result (const ImageFile *input, const LdmImage *mask, const LdmImage *result,
               GError **error)
{
    int c = result->channels;
    size_t n = (size_t) result->width * result->height;
    uint16_t *deep = g_try_new (uint16_t, n * c);
    if (!deep) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_NO_MEMORY,
                     "not enough memory for the 16-bit result");
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < c; k++) {
            gboolean kept = mask && c == input->image.channels
                            && (mask->pixels[i] < 128 || (c == 4 && k == 3));
            deep[i * c + k] = kept ? input->deep[i * c + k]
                                   : (uint16_t) (result->pixels[i * c + k] * 257u);
        }
    return deep;
}

/* ldm inpaint through core's region code, as the plug-in runs a selection: the crop around the
 * mask's white pixels (grown by mask_grow + mask_blur + context_padding, within the image; with
 * `whole` the whole image), scaled to working_size for the model when larger, and the result
 * laid over the input through the grown and blurred mask (the plug-in's layer mask). The mask
 * is hard (>= 128 = fill, as ldm_inpaint reads it): grow and blur make its soft edge. *changed
 * (image size, 255 where a pixel may differ from the input) is for the 16-bit result; every
 * other pixel is the input's, bit for bit. */
static gboolean
inpaint_region (LdmEngine *engine, const LdmImage *image, const LdmImage *mask,
                const LdmRegionParams *region, gboolean whole, const LdmSampleParams *params,
                gboolean quiet, LdmImage *out, LdmImage *changed, GError **error)
{
    int w = image->width, h = image->height, c = image->channels;
    int bx0 = w, by0 = h, bx1 = -1, by1 = -1;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            if (mask->pixels[(size_t) y * w + x] >= 128) {
                bx0 = MIN (bx0, x);
                by0 = MIN (by0, y);
                bx1 = MAX (bx1, x);
                by1 = MAX (by1, y);
            }
    if (bx1 < 0) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "the mask is empty: nothing to inpaint");
        return FALSE;
    }
    LdmRect crop = { 0, 0, w, h };
    if (!whole)
        ldm_region_crop (region, (LdmRect) { bx0, by0, bx1 - bx0 + 1, by1 - by0 + 1 }, crop,
                         &crop);
    size_t n = (size_t) crop.width * crop.height;
    LdmImage part = { crop.width, crop.height, c, g_try_malloc_n (n, c) };
    g_autofree float *selection = g_try_malloc_n (n, sizeof (float));
    *changed = (LdmImage) { w, h, 1, g_try_malloc0_n ((size_t) w, h) };
    *out = (LdmImage) { w, h, c, g_try_malloc_n ((size_t) w * h, c) };
    if (!part.pixels || !selection || !changed->pixels || !out->pixels) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_NO_MEMORY,
                     "not enough memory for a %dx%d crop of a %dx%d image", crop.width,
                     crop.height, w, h);
        ldm_image_clear (&part);
        ldm_image_clear (changed);
        ldm_image_clear (out);
        return FALSE;
    }
    for (int y = 0; y < crop.height; y++) {
        size_t row = (size_t) (crop.y + y) * w + crop.x;
        memcpy (part.pixels + (size_t) y * crop.width * c, image->pixels + row * c,
                (size_t) crop.width * c);
        for (int x = 0; x < crop.width; x++)
            selection[(size_t) y * crop.width + x] = mask->pixels[row + x] >= 128 ? 1.0f : 0.0f;
    }
    LdmRegionResult result = { 0 };
    gboolean ok = ldm_inpaint_region (engine, &part, selection, region, params, &result, error);
    ldm_image_clear (&part);
    if (!ok) {
        ldm_image_clear (changed);
        ldm_image_clear (out);
        return FALSE;
    }
    if (!quiet && (result.model_width != crop.width || result.model_height != crop.height))
        fprintf (stderr, "ldm: the %dx%d crop at (%d, %d) runs at %dx%d (--working-size %d)\n",
                 crop.width, crop.height, crop.x, crop.y, result.model_width,
                 result.model_height, region->working_size);
    /* out = input + layer_mask (generated - input) inside the fill: 1 gives the generated
     * byte exactly, 0 the input's; alpha stays the input's */
    memcpy (out->pixels, image->pixels, (size_t) w * h * c);
    int colours = c == 4 ? 3 : c;
    for (int y = 0; y < crop.height; y++)
        for (int x = 0; x < crop.width; x++) {
            size_t i = (size_t) y * crop.width + x, p = (size_t) (crop.y + y) * w + crop.x + x;
            float m = result.layer_mask[i];
            if (!result.fill[i] || m <= 0.0f)
                continue;
            changed->pixels[p] = 255;
            for (int k = 0; k < colours; k++) {
                float a = image->pixels[p * c + k], b = result.image.pixels[i * c + k];
                out->pixels[p * c + k] = (uint8_t) CLAMP (lrintf (a + m * (b - a)), 0, 255);
            }
        }
    ldm_region_result_clear (&result);
    return TRUE;
}

static int
command_run (int argc, char **argv, bool inpaint)
{
    RunOptions o = { 0 };
    /* The defaults the help names are core's (ldm_sample_params_init and _authors). */
    LdmTask task = inpaint ? LDM_TASK_INPAINT : LDM_TASK_UPSCALE;
    LdmSampleParams def, authors_inpaint, authors_upscale;
    ldm_sample_params_init (&def, task);
    ldm_sample_params_init_authors (&authors_inpaint, LDM_TASK_INPAINT);
    ldm_sample_params_init_authors (&authors_upscale, LDM_TASK_UPSCALE);
    g_autofree char *steps_help = g_strdup_printf (
        "Denoising steps (default %d; --authors: %d to inpaint, %d to upscale)", def.steps,
        authors_inpaint.steps, authors_upscale.steps);
    g_autofree char *eta_help = g_strdup_printf (inpaint ? "DDIM eta (default %g)"
                                                         : "DDIM eta (default %g, as the LDSR "
                                                           "notebook)", def.eta);
    g_autofree char *strength_help = g_strdup_printf (
        "With --init fill or original: how much noise the start gets, more than 0 to 1 (the "
        "share of the steps that run; default %g)", def.strength);
    g_autofree char *guidance_help = g_strdup_printf (
        "Stable Diffusion: guidance scale, %g to %g (default %g; 1: the prompt alone, no "
        "negative prompt)", LDM_GUIDANCE_MIN, LDM_GUIDANCE_MAX, def.guidance);
    g_autofree char *init_help = g_strdup_printf (
        inpaint ? "Start from noise, fill (the hole filled from its surroundings) or original "
                  "(the image), noised to --strength (default: %s)"
                : "Start from noise, or original (the input enlarged), noised to --strength "
                  "(default: %s)", ldm_init_name (def.init));
    /* Each aid's "(default)" goes with the setting core defaults to. */
    const char *keep_help = def.keep_known
        ? "Blend the latents away from the mask back to the image's at every step (default; "
          "the authors' script does not)"
        : "Blend the latents away from the mask back to the image's at every step (the "
          "authors' script does not)";
    const char *no_keep_help = def.keep_known ? "Do not blend the latents back"
                                              : "Do not blend the latents back (default)";
    const char *match_help = def.match_colors
        ? "Shift the fill's colors by the autoencoder's color error around it (default)"
        : "Shift the fill's colors by the autoencoder's color error around it";
    const char *no_match_help = def.match_colors ? "Keep the fill's decoded colors"
                                                 : "Keep the fill's decoded colors (default)";
    const char *fix_what = inpaint
        ? "LDM models: the fill's colors and shading from its surroundings, its detail from "
          "the model"
        : "Keep the input's colors: every 4x4 block of the output averages to its input pixel";
    g_autofree char *fix_help = g_strdup_printf ("%s%s", fix_what,
                                                 def.color_fix ? " (default)" : "");
    const char *no_fix_help = def.color_fix ? "The decoded colors as they are"
                                            : "The decoded colors as they are (default)";
    g_autofree char *memory_help = g_strdup_printf (
        "Memory the run may use, in MB or with a unit (4G): the windows of sampling, encoding "
        "and decoding are planned from it, and what cannot fit is refused at once (default: "
        "3/4 of the available memory, now %.0f MB)", (double) def.memory_limit / 1048576.0);
    LdmRegionParams region_def; /* the plug-in's defaults: core's */
    ldm_region_params_init (&region_def);
    g_autofree char *context_help = g_strdup_printf (
        "Pixels of image around the mask the model sees (default %d; --authors: the whole "
        "image)", region_def.context_padding);
    g_autofree char *working_help = g_strdup_printf (
        "Longest side the crop runs at: a larger crop is scaled down for the model and back, "
        "0 = full size (default %d; --authors: 0)", region_def.working_size);
    g_autofree char *grow_help = g_strdup_printf (
        "Pixels the mask is grown by, 0 to %d (default %d; --authors: 0)", LDM_REGION_MAX_GROW,
        region_def.mask_grow);
    g_autofree char *blur_help = g_strdup_printf (
        "Pixels over which the fill fades into the image, 0 to %d (default %d; --authors: 0)",
        LDM_REGION_MAX_BLUR, region_def.mask_blur);
    GOptionEntry entries[] = {
        { "model", 'm', 0, G_OPTION_ARG_FILENAME, &o.model,
          inpaint ? "Model file (.ckpt, .safetensors; default: the built-in " LDM_BUILTIN_INPAINT ")"
                  : "Model file (.ckpt, .safetensors; default: the built-in " LDM_BUILTIN_UPSCALE ")",
          "M" },
        { "image", 'i', 0, G_OPTION_ARG_FILENAME, &o.image, "Input image (PNG or JPEG)", "IN" },
        { "mask", 0, inpaint ? 0 : G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_FILENAME, &o.mask,
          "Mask: white (>= 128) = fill", "MASK" },
        { "output", 'o', 0, G_OPTION_ARG_FILENAME, &o.output,
          "Output image (.png, or .jpg: lossy; a 16-bit PNG in gives a 16-bit PNG out)", "OUT" },
        { "steps", 's', 0, G_OPTION_ARG_STRING, &o.steps,
          steps_help, "N" },
        { "eta", 0, 0, G_OPTION_ARG_STRING, &o.eta,
          eta_help, "E" },
        { "init", 0, 0, G_OPTION_ARG_STRING, &o.init,
          init_help, "INIT" },
        { "strength", 0, 0, G_OPTION_ARG_STRING, &o.strength,
          strength_help, "S" },
        { "authors", 0, 0, G_OPTION_ARG_NONE, &o.authors,
          "The authors' procedure exactly: their step count, pure-noise start, none of the aids "
          "below (reproduces their results)", NULL },
        { "seed", 0, 0, G_OPTION_ARG_STRING, &o.seed,
          "Seed, 0 to 2^63-1 (default: random, printed)", "S" },
        { "sampler", 0, 0, G_OPTION_ARG_STRING, &o.sampler,
          "ddim, ddpm, dpmpp-2m, dpmpp-2m-karras, euler-a or default (the model's: DDIM for LDM "
          "models, DPM++ 2M Karras for Stable Diffusion; --authors: ddim)", "NAME" },
        { "x-T", 0, 0, G_OPTION_ARG_STRING, &o.x_T,
          "Initial latent from a safetensors tensor (1 x C x h x w)", "FILE:TENSOR" },
        { "step-noise", 0, 0, G_OPTION_ARG_STRING, &o.noise,
          "Per-step noise from safetensors tensors named by a printf pattern of the step "
          "(replays a reference run)", "FILE:PATTERN" },
        { "prompt", 'p', inpaint ? 0 : G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_STRING, &o.prompt,
          "Stable Diffusion: what should appear (CLIP's tokens; over 75 tokens in chunks of 75; "
          "LDM models ignore it)", "TEXT" },
        { "negative-prompt", 'n', inpaint ? 0 : G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_STRING,
          &o.negative_prompt, "Stable Diffusion: what should not appear (default: empty)",
          "TEXT" },
        { "context", 0, inpaint ? 0 : G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_STRING, &o.context,
          "Stable Diffusion: text context tensor (77 x dim)", "FILE:TENSOR" },
        { "uncond-context", 0, inpaint ? 0 : G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_STRING,
          &o.uncond_context, "Stable Diffusion: unconditional context tensor", "FILE:TENSOR" },
        { "guidance", 0, inpaint ? 0 : G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_STRING, &o.guidance,
          guidance_help, "G" },
        { "keep-known", 0, inpaint ? 0 : G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_NONE, &o.keep_known,
          keep_help, NULL },
        { "no-keep-known", 0, inpaint ? 0 : G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_NONE,
          &o.no_keep_known, no_keep_help, NULL },
        { "match-colors", 0, inpaint ? 0 : G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_NONE,
          &o.match_colors, match_help, NULL },
        { "no-match-colors", 0, inpaint ? 0 : G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_NONE,
          &o.no_match_colors, no_match_help, NULL },
        { "context-padding", 0, inpaint ? 0 : G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_STRING,
          &o.context_padding, context_help, "N" },
        { "working-size", 0, inpaint ? 0 : G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_STRING,
          &o.working_size, working_help, "N" },
        { "mask-grow", 0, inpaint ? 0 : G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_STRING,
          &o.mask_grow, grow_help, "N" },
        { "mask-blur", 0, inpaint ? 0 : G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_STRING,
          &o.mask_blur, blur_help, "N" },
        { "memory-limit", 0, 0, G_OPTION_ARG_STRING, &o.memory_limit, memory_help, "SIZE" },
        { "color-fix", 0, 0, G_OPTION_ARG_NONE, &o.color_fix, fix_help, NULL },
        { "no-color-fix", 0, 0, G_OPTION_ARG_NONE,
          &o.no_color_fix, no_fix_help, NULL },
        { "quiet", 'q', 0, G_OPTION_ARG_NONE, &o.quiet, "No progress or messages", NULL },
        { "precision", 0, 0, G_OPTION_ARG_STRING, &o.precision,
          "The layers' arithmetic: auto (bf16 where the CPU multiplies it itself, else fp32), "
          "fp32 or bf16 (default: auto; --authors: fp32)", "P" },
        { "timings", 0, 0, G_OPTION_ARG_NONE, &o.timings,
          "At the end, print where the time went: loading, encoding, the steps, decoding", NULL },
        { NULL },
    };
    g_autoptr (GOptionContext) ctx = g_option_context_new (NULL);
    g_option_context_set_summary (ctx, inpaint ? "Fill the white part of the mask in the image."
                                               : "Make an image 4x larger.");
    g_option_context_add_main_entries (ctx, entries, NULL);
    g_autoptr (GError) error = NULL;
    int status = EXIT_BAD_INPUT;
    g_autoptr (LdmModel) model = NULL;
    g_autoptr (LdmEngine) engine = NULL;
    ImageFile input = { 0 };
    LdmImage mask = { 0 }, result = { 0 }, changed = { 0 };
    const LdmImage *image = &input.image;
    g_autofree uint16_t *deep_result = NULL;
    ImageType output_type = IMAGE_PNG;
    g_autofree float *x_T = NULL, *context = NULL, *uncond = NULL;
    StepNoise step_noise = { 0 };

    if (!g_option_context_parse (ctx, &argc, &argv, &error))
        goto bad;
    if (argc > 1) {
        g_set_error (&error, LDM_ERROR, LDM_ERROR_ARGUMENT, "unexpected argument '%s'", argv[1]);
        goto bad;
    }
    const char *missing = !o.image ? "--image" : !o.output ? "--output"
                          : (inpaint && !o.mask) ? "--mask" : NULL;
    if (missing) {
        g_set_error (&error, LDM_ERROR, LDM_ERROR_ARGUMENT, "%s is required", missing);
        goto bad;
    }
    /* The output is checked before any work: a bad path should not cost a whole run. */
    if (!image_check_output (o.output, &output_type, &error))
        goto bad;
    LdmSampleParams params;
    if (o.authors)
        ldm_sample_params_init_authors (&params, task);
    else
        ldm_sample_params_init (&params, task);
    gint64 number;
    double real;
    if (o.steps) {
        if (!parse_int_option ("--steps", o.steps, 1, 1000, &number, &error))
            goto bad;
        params.steps = (int) number;
    }
    if (o.eta) {
        if (!parse_double_option ("--eta", o.eta, 0, 1, &real, &error))
            goto bad;
        params.eta = (float) real;
    }
    if (o.guidance) {
        if (!parse_double_option ("--guidance", o.guidance, LDM_GUIDANCE_MIN, LDM_GUIDANCE_MAX,
                                  &real, &error))
            goto bad;
        params.guidance = (float) real;
    }
    if (o.init && !ldm_init_parse (o.init, &params.init)) {
        g_set_error (&error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "--init must be noise, fill or original, not '%s'", o.init);
        goto bad;
    }
    if (o.strength) {
        if (!parse_double_option ("--strength", o.strength, 0, 1, &real, &error))
            goto bad;
        if (real <= 0) {
            g_set_error (&error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                         "--strength must be more than 0 (0 would run no step)");
            goto bad;
        }
        params.strength = (float) real;
    }
    o.from_image = params.init != LDM_INIT_NOISE;
    if (o.authors && params.init != LDM_INIT_NOISE) {
        g_set_error (&error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "--authors starts from noise: it cannot take --init %s", o.init);
        goto bad;
    }
    /* --authors: the authors' numerics */
    LdmPrecision precision = o.authors ? LDM_PRECISION_FP32 : LDM_PRECISION_AUTO;
    if (o.precision && !ldm_precision_parse (o.precision, &precision)) {
        g_set_error (&error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "--precision must be auto, fp32 or bf16, not '%s'", o.precision);
        goto bad;
    }
    gint64 seed = -1;
    if (o.seed && !parse_int_option ("--seed", o.seed, 0, G_MAXINT64, &seed, &error))
        goto bad;
    o.requested_steps = params.steps;
    if (o.memory_limit && !parse_memory_option (o.memory_limit, &params.memory_limit, &error))
        goto bad;
    /* the region: the plug-in's defaults, or (--authors) the whole image at full size */
    LdmRegionParams region = region_def;
    gboolean whole = o.authors && !o.context_padding;
    if (o.authors)
        region = (LdmRegionParams) { 0 };
    if (!inpaint && (o.context_padding || o.working_size || o.mask_grow || o.mask_blur)) {
        g_set_error (&error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "--context-padding, --working-size, --mask-grow and --mask-blur are "
                     "inpainting options");
        goto bad;
    }
    if (o.context_padding) {
        if (!parse_int_option ("--context-padding", o.context_padding, 0, LDM_IMAGE_MAX_SIDE,
                               &number, &error))
            goto bad;
        region.context_padding = (int) number;
    }
    if (o.working_size) {
        if (!parse_int_option ("--working-size", o.working_size, 0, LDM_IMAGE_MAX_SIDE, &number,
                               &error))
            goto bad;
        if (number > 0 && number < LDM_REGION_MIN_WORKING_SIZE) {
            g_set_error (&error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                         "--working-size must be 0 (full size) or at least %d, not '%s'",
                         LDM_REGION_MIN_WORKING_SIZE, o.working_size);
            goto bad;
        }
        region.working_size = (int) number;
    }
    if (o.mask_grow) {
        if (!parse_int_option ("--mask-grow", o.mask_grow, 0, LDM_REGION_MAX_GROW, &number,
                               &error))
            goto bad;
        region.mask_grow = (int) number;
    }
    if (o.mask_blur) {
        if (!parse_int_option ("--mask-blur", o.mask_blur, 0, LDM_REGION_MAX_BLUR, &number,
                               &error))
            goto bad;
        region.mask_blur = (int) number;
    }
    if ((o.keep_known && o.no_keep_known) || (o.match_colors && o.no_match_colors)
        || (o.color_fix && o.no_color_fix)) {
        g_set_error (&error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "an aid cannot be both on and off (--X and --no-X)");
        goto bad;
    }
    params.keep_known = (params.keep_known || o.keep_known) && !o.no_keep_known;
    params.match_colors = (params.match_colors || o.match_colors) && !o.no_match_colors;
    params.color_fix = (params.color_fix || o.color_fix) && !o.no_color_fix;
    if (o.sampler && !ldm_sampler_parse (o.sampler, &params.sampler)) {
        g_set_error (&error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "unknown sampler '%s' (ddim, ddpm, dpmpp-2m, dpmpp-2m-karras, euler-a or "
                     "default)", o.sampler);
        goto bad;
    }
    if (seed < 0)
        seed = (gint64) (g_random_int () & 0x7fffffff);
    params.seed = (uint64_t) seed;
    if (o.x_T) {
        if (!(x_T = read_tensor_arg (o.x_T, &params.x_T_len, &error)))
            goto bad;
        params.x_T = x_T;
    }
    if (o.noise) {
        const char *colon = strrchr (o.noise, ':');
        const char *conversion = colon ? strchr (colon, '%') : NULL;
        /* the pattern takes exactly one integer: %d with an optional width of at most two
         * digits like %02d (a huge width would make huge names) */
        if (!conversion || strchr (conversion + 1, '%')
            || strspn (conversion + 1, "0123456789") != strcspn (conversion + 1, "d")
            || strcspn (conversion + 1, "d") > 2 || !strchr (conversion, 'd')) {
            g_set_error (&error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                         "--step-noise wants FILE:PATTERN with one %%d, like "
                         "ref.safetensors:step%%02d.noise");
            goto bad;
        }
        g_autofree char *path = g_strndup (o.noise, colon - o.noise);
        if (!(step_noise.file = ldm_tensor_file_open (path, &error)))
            goto bad;
        step_noise.pattern = g_strdup (colon + 1);
        params.noise = read_step_noise;
        params.noise_data = &step_noise;
    }
    if ((o.prompt || o.negative_prompt) && (o.context || o.uncond_context)) {
        g_set_error (&error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "--prompt/--negative-prompt and --context/--uncond-context exclude each "
                     "other (a context is what a prompt becomes)");
        goto bad;
    }
    params.prompt = o.prompt;
    params.negative_prompt = o.negative_prompt;
    size_t context_len = 0, uncond_len = 0;
    if (o.context && !(context = read_tensor_arg (o.context, &context_len, &error)))
        goto bad;
    if (o.uncond_context && !(uncond = read_tensor_arg (o.uncond_context, &uncond_len, &error)))
        goto bad;
    if (!image_load (o.image, &input, &error) || (inpaint && !image_load_mask (o.mask, &mask, &error)))
        goto bad;
    if (inpaint && (mask.width != image->width || mask.height != image->height)) {
        g_set_error (&error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "the mask %s is %dx%d but the image %s is %dx%d: they must be the same size",
                     o.mask, mask.width, mask.height, o.image, image->width, image->height);
        goto bad;
    }
    if (output_type == IMAGE_JPEG && image->channels == 4) {
        g_set_error (&error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "%s has an alpha channel, which a JPEG cannot hold: write a .png",
                     o.image);
        goto bad;
    }
    if (!o.model) {
        const char *const dirs[] = { LDM_MODEL_DIR, LDM_SOURCE_MODEL_DIR, NULL };
        o.model = ldm_builtin_model_find (inpaint ? LDM_BUILTIN_INPAINT : LDM_BUILTIN_UPSCALE,
                                          dirs, &error);
        if (!o.model)
            goto bad;
    }
    gint64 load_start = g_get_monotonic_time ();
    if (!(model = ldm_model_load (o.model, &error))
        || !(engine = ldm_engine_new (model, precision, &error)))
        goto bad;
    double load_s = (g_get_monotonic_time () - load_start) / 1e6;
    /* The engine holds its own copy of every weight: unmap the file now. */
    g_clear_pointer (&model, ldm_model_free);
    LdmModelKind kind = ldm_engine_kind (engine);
    if ((o.prompt || o.negative_prompt) && kind != LDM_MODEL_SD_INPAINT && kind != LDM_MODEL_SD
        && !o.quiet)
        fprintf (stderr, "ldm: note: %s is an %s model, which takes no text: the prompt is "
                 "ignored\n", o.model, ldm_model_kind_name (kind));
    if (context) {
        params.context = context;
        params.uncond_context = uncond;
        /* 77 tokens for CLIP contexts; the dimension is the model's */
        params.context_tokens = 77;
        if (context_len % 77 || (uncond && uncond_len != context_len)) {
            g_set_error (&error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                         "contexts must be 77 x dim tensors of the same size");
            goto bad;
        }
    }
    params.progress = show_progress;
    params.tile_progress = show_tile_progress;
    params.progress_data = &o;
    if (!o.quiet)
        fprintf (stderr, "seed %" G_GINT64_FORMAT "\n", seed);
    o.run_start = g_get_monotonic_time ();
    gboolean ok = inpaint ? inpaint_region (engine, image, &mask, &region, whole, &params,
                                            o.quiet, &result, &changed, &error)
                          : ldm_upscale (engine, image, &params, &result, &error);
    if (ok && o.timings)
        print_timings (&o, ldm_engine_precision (engine), load_s, g_get_monotonic_time ());
    if (!ok) {
        status = g_error_matches (error, LDM_ERROR, LDM_ERROR_ARGUMENT) ? EXIT_BAD_INPUT : 1;
        goto fail;
    }
    LdmTilePlan plan;
    ldm_engine_last_plan (engine, &plan);
    if (!o.quiet && (plan.unet || plan.encode || plan.decode))
        fprintf (stderr, "ldm: windows (latent cells; 0 = whole): U-Net %d (overlap %d), "
                 "encoder %d, decoder %d (overlap %d)\n", plan.unet, plan.unet_overlap,
                 plan.encode, plan.decode, plan.first_stage_overlap);
    if (input.deep && output_type == IMAGE_PNG
        && !(deep_result = deepen_result (&input, inpaint ? &changed : NULL, &result, &error)))
        goto fail;
    if (output_type == IMAGE_JPEG && inpaint && !o.quiet)
        fprintf (stderr, "ldm: %s is a JPEG: its compression changes the pixels outside the "
                 "mask too (write a .png to keep them exactly)\n", o.output);
    if (!image_save (o.output, output_type, &result, deep_result, &error)) {
        status = 1;
        goto fail;
    }
    status = 0;
    goto done;
bad:
    /* too little memory is not the input's fault: a failure while working */
    status = g_error_matches (error, LDM_ERROR, LDM_ERROR_NO_MEMORY) ? 1 : EXIT_BAD_INPUT;
fail:
    fprintf (stderr, "ldm: %s\n", error->message);
done:
    ldm_tensor_file_free (step_noise.file);
    g_free (step_noise.pattern);
    image_file_clear (&input);
    ldm_image_clear (&mask);
    ldm_image_clear (&changed);
    ldm_image_clear (&result);
    run_options_clear (&o);
    return status;
}

/* Prints one row of ids per line. */
static void
print_rows (const int32_t *rows, size_t n_rows)
{
    for (size_t r = 0; r < n_rows; r++)
        for (size_t i = 0; i < LDM_CLIP_CONTEXT_LENGTH; i++)
            printf ("%d%c", rows[r * LDM_CLIP_CONTEXT_LENGTH + i],
                    i + 1 < LDM_CLIP_CONTEXT_LENGTH ? ' ' : '\n');
}

static int
command_tokenize (int argc, char **argv)
{
    g_autofree char *tokenizer_path = NULL, *model = NULL;
    gboolean verbose = FALSE;
    GOptionEntry entries[] = {
        { "tokenizer", 't', 0, G_OPTION_ARG_FILENAME, &tokenizer_path,
          "CLIP merges: a .txt or .txt.gz file, a diffusers merges.txt (with its vocab.json) "
          "or a folder holding one (default: the model's tokenizer/ folder, else the built-in "
          LDM_BUILTIN_TOKENIZER ")", "F" },
        { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model,
          "Use the tokenizer/ folder beside this model when it has one (diffusers layout)", "M" },
        { "verbose", 'v', 0, G_OPTION_ARG_NONE, &verbose,
          "Also print (on stderr) the cleaned text and the tokens as text", NULL },
        { NULL },
    };
    g_autoptr (GOptionContext) ctx = g_option_context_new ("TEXT");
    g_option_context_set_summary (
        ctx, "Print the CLIP token ids of TEXT as Stable Diffusion 1.x conditions on them.\n"
             "\n"
             "The first line is Stable Diffusion's row of 77 ids: <|startoftext|> (49406), the\n"
             "first 75 ids of the cleaned, lower-cased text, <|endoftext|> (49407), padded with\n"
             "49407. A text of more than 75 tokens is cut there by Stable Diffusion; the engine\n"
             "keeps all of it, in chunks of 75 encoded one by one and concatenated: then one\n"
             "more line per chunk follows (the first equal to line 1), and stderr says how many\n"
             "tokens there are.");
    g_option_context_add_main_entries (ctx, entries, NULL);
    g_autoptr (GError) error = NULL;
    if (!g_option_context_parse (ctx, &argc, &argv, &error)) {
        fprintf (stderr, "ldm tokenize: %s\n", error->message);
        return EXIT_BAD_INPUT;
    }
    int first = argc > 1 && strcmp (argv[1], "--") == 0 ? 2 : 1;
    if (argc - first != 1) {
        fputs ("usage: ldm tokenize [--tokenizer F] [--model M] TEXT (ldm tokenize --help)\n",
               stderr);
        return EXIT_BAD_INPUT;
    }
    /* The text as UTF-8: as given when it is (whatever the locale), else from the locale's
     * encoding. */
    const char *arg = argv[first];
    g_autofree char *text = g_utf8_validate (arg, -1, NULL)
                                ? g_strdup (arg)
                                : g_locale_to_utf8 (arg, -1, NULL, NULL, NULL);
    if (!text) {
        fprintf (stderr, "ldm tokenize: the text is neither UTF-8 nor in the locale's encoding\n");
        return EXIT_BAD_INPUT;
    }
    g_autoptr (LdmTokenizer) tokenizer = ldm_tokenizer_new (tokenizer_path, model, &error);
    if (!tokenizer) {
        fprintf (stderr, "ldm tokenize: %s\n", error->message);
        return EXIT_BAD_INPUT;
    }
    size_t n_ids, n_rows, n_sd;
    g_autofree int32_t *ids = ldm_tokenizer_encode (tokenizer, text, &n_ids, &error);
    g_autofree int32_t *sd = ids ? ldm_tokenizer_encode_rows (tokenizer, text, true, &n_sd, &error)
                                 : NULL;
    g_autofree int32_t *chunks = sd ? ldm_tokenizer_encode_rows (tokenizer, text, false, &n_rows,
                                                                 &error)
                                    : NULL;
    if (!chunks) {
        fprintf (stderr, "ldm tokenize: %s\n", error->message);
        return error->code == LDM_ERROR_NO_MEMORY ? 1 : EXIT_BAD_INPUT;
    }
    if (verbose) {
        g_autofree char *clean = ldm_tokenizer_clean_text (text, NULL);
        fprintf (stderr, "text: %s\ntokens:", clean);
        for (size_t i = 0; i < n_ids; i++) {
            g_autofree char *token = ldm_tokenizer_token_text (tokenizer, ids[i]);
            bool plain = g_utf8_validate (token, -1, NULL);
            for (const char *p = token; plain && *p; p++)
                plain = (unsigned char) *p >= 0x20 && *p != 0x7f;
            g_autofree char *escaped = plain ? NULL : g_strescape (token, NULL);
            fprintf (stderr, " %s", plain ? token : escaped);
        }
        fputc ('\n', stderr);
    }
    print_rows (sd, n_sd);
    if (n_ids > LDM_CLIP_CHUNK_TOKENS) {
        fprintf (stderr,
                 "ldm tokenize: %zu tokens: Stable Diffusion keeps the first %d (line 1); the "
                 "engine encodes all in %zu chunks (lines 2 to %zu)\n",
                 n_ids, LDM_CLIP_CHUNK_TOKENS, n_rows, n_rows + 1);
        print_rows (chunks, n_rows);
    }
    return 0;
}

/* A safetensors file holding one float32 tensor `name` of shape 1 x rows x cols. */
static gboolean
write_safetensors (const char *path, const char *name, const float *data, int rows, int cols,
                   GError **error)
{
    size_t n = (size_t) rows * cols, bytes = n * sizeof (float);
    g_autoptr (GString) out = g_string_new (NULL);
    g_string_printf (out, "{\"%s\":{\"dtype\":\"F32\",\"shape\":[1,%d,%d],"
                     "\"data_offsets\":[0,%zu]}}", name, rows, cols, bytes);
    while (out->len % 8) /* the data 8-byte aligned, as the format recommends */
        g_string_append_c (out, ' ');
    guint64 header = GUINT64_TO_LE ((guint64) out->len);
    g_string_prepend_len (out, (const char *) &header, 8);
    for (size_t i = 0; i < n; i++) {
        guint32 bits;
        memcpy (&bits, &data[i], 4);
        bits = GUINT32_TO_LE (bits);
        g_string_append_len (out, (const char *) &bits, 4);
    }
    /* a temporary file renamed over the target: an old file stays whole on failure */
    return g_file_set_contents (path, out->str, (gssize) out->len, error);
}

static int
command_encode_text (int argc, char **argv)
{
    g_autofree char *model_path = NULL, *prompt = NULL, *output = NULL;
    GOptionEntry entries[] = {
        { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model_path,
          "Stable Diffusion checkpoint with its text encoder", "M" },
        { "prompt", 'p', 0, G_OPTION_ARG_STRING, &prompt, "The text (default: empty)", "TEXT" },
        { "output", 'o', 0, G_OPTION_ARG_FILENAME, &output, "The .safetensors file written",
          "F" },
        { NULL },
    };
    g_autoptr (GOptionContext) ctx = g_option_context_new (NULL);
    g_option_context_set_summary (
        ctx, "Write the cross-attention context ldm inpaint makes of a prompt: tensor\n"
             "\"context\", 1 x 77 x dim float32 (77 x chunks rows over 75 tokens), from the\n"
             "checkpoint's CLIP text encoder and the tokenizer beside it or the built-in one.");
    g_option_context_add_main_entries (ctx, entries, NULL);
    g_autoptr (GError) error = NULL;
    g_autoptr (LdmModel) model = NULL;
    g_autoptr (LdmEngine) engine = NULL;
    g_autofree float *context = NULL;
    int tokens = 0, dim = 0;
    if (!g_option_context_parse (ctx, &argc, &argv, &error))
        goto bad;
    if (argc > 1 || !model_path || !output) {
        fputs ("usage: ldm encode-text --model M [--prompt P] --output F.safetensors "
               "(ldm encode-text --help)\n", stderr);
        return EXIT_BAD_INPUT;
    }
    if (!(model = ldm_model_load (model_path, &error))
        /* the contexts it writes feed other runs: the authors' numerics */
        || !(engine = ldm_engine_new (model, LDM_PRECISION_FP32, &error)))
        goto bad;
    g_clear_pointer (&model, ldm_model_free);
    if (!(context = ldm_engine_encode_prompt (engine, prompt, &tokens, &dim, &error)))
        goto bad;
    if (!write_safetensors (output, "context", context, tokens, dim, &error)) {
        fprintf (stderr, "ldm encode-text: %s\n", error->message);
        return 1;
    }
    return 0;
bad:
    fprintf (stderr, "ldm encode-text: %s\n", error->message);
    return g_error_matches (error, LDM_ERROR, LDM_ERROR_NO_MEMORY) ? 1 : EXIT_BAD_INPUT;
}

int
main (int argc, char **argv)
{
    setlocale (LC_ALL, "");
    /* Past a file size limit, write() should fail with EFBIG (and the old file stay) rather
     * than the process be killed mid-write. */
    signal (SIGXFSZ, SIG_IGN);
    if (argc < 2) {
        print_usage (stderr);
        return EXIT_BAD_INPUT;
    }
    const char *command = argv[1];
    if (strcmp (command, "info") == 0)
        return command_info (argc - 1, argv + 1);
    if (strcmp (command, "inpaint") == 0)
        return command_run (argc - 1, argv + 1, true);
    if (strcmp (command, "upscale") == 0)
        return command_run (argc - 1, argv + 1, false);
    if (strcmp (command, "tensors") == 0)
        return command_tensors (argc - 1, argv + 1);
    if (strcmp (command, "tokenize") == 0)
        return command_tokenize (argc - 1, argv + 1);
    if (strcmp (command, "encode-text") == 0)
        return command_encode_text (argc - 1, argv + 1);
    if (strcmp (command, "bench") == 0)
        return ldm_command_bench (argc - 1, argv + 1);
    if (strcmp (command, "help") == 0 || strcmp (command, "--help") == 0
        || strcmp (command, "-h") == 0) {
        print_usage (stdout);
        return 0;
    }
    fprintf (stderr, "ldm: unknown command '%s'\n", command);
    print_usage (stderr);
    return EXIT_BAD_INPUT;
}
