/* ldm_bench.c: `ldm bench --model M [--latent HxW] [--repeat N] [--json] [--dump DIR]`.
 *
 * Times one U-Net forward (the CFG batch for Stable Diffusion), an encode and a decode of the
 * matching image and (SD) the text encoder through ldm_model_bench: medians of N runs after
 * a warm-up, with GFLOP/s of each part, the machine's fp32 peak measured here with an FMA
 * loop, and the process's peak RSS. --dump writes each part's output (NCHW float32, raw
 * little-endian) as DIR/PART.f32 for tools/bench/compare. */
#include "ldm_bench.h"

#include "ldm.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BENCH_X86 1
#endif

#define EXIT_BAD_INPUT 2

/* Independent FMA chains per thread: enough to cover the FMA latency on every unit
 * (2 units x 4 cycles = 8 in flight; 12 leaves margin). */
#define CHAINS 12

typedef float Vec8 __attribute__ ((vector_size (32)));

/* FLOPs of `iters` rounds of CHAINS 8-wide FMAs on one thread (the result keeps the loop). */
#ifdef BENCH_X86
__attribute__ ((target ("avx2,fma"))) static float
fma_loop_avx2 (long iters)
{
    __m256 acc[CHAINS], mul = _mm256_set1_ps (0.999999f), add = _mm256_set1_ps (1e-7f);
    for (int i = 0; i < CHAINS; i++)
        acc[i] = _mm256_set1_ps ((float) i);
    /* unrolled, so that the chains live in registers */
    for (long n = 0; n < iters; n++)
#pragma GCC unroll 16
        for (int i = 0; i < CHAINS; i++)
            acc[i] = _mm256_fmadd_ps (acc[i], mul, add);
    __m256 s = acc[0];
    for (int i = 1; i < CHAINS; i++)
        s = _mm256_add_ps (s, acc[i]);
    float out[8];
    _mm256_storeu_ps (out, s);
    return out[0] + out[7];
}

__attribute__ ((target ("avx512f"))) static float
fma_loop_avx512 (long iters)
{
    __m512 acc[CHAINS], mul = _mm512_set1_ps (0.999999f), add = _mm512_set1_ps (1e-7f);
    for (int i = 0; i < CHAINS; i++)
        acc[i] = _mm512_set1_ps ((float) i);
    for (long n = 0; n < iters; n++)
#pragma GCC unroll 16
        for (int i = 0; i < CHAINS; i++)
            acc[i] = _mm512_fmadd_ps (acc[i], mul, add);
    __m512 s = acc[0];
    for (int i = 1; i < CHAINS; i++)
        s = _mm512_add_ps (s, acc[i]);
    return _mm512_reduce_add_ps (s);
}
#endif

/* Without AVX2+FMA: plain vector multiply-adds (2 FLOPs each, fused or not). */
static float
fma_loop_generic (long iters)
{
    Vec8 acc[CHAINS], mul = { 0 }, add = { 0 };
    for (int l = 0; l < 8; l++)
        mul[l] = 0.999999f, add[l] = 1e-7f;
    for (int i = 0; i < CHAINS; i++)
        for (int l = 0; l < 8; l++)
            acc[i][l] = (float) i;
    for (long n = 0; n < iters; n++)
#pragma GCC unroll 16
        for (int i = 0; i < CHAINS; i++)
            acc[i] = acc[i] * mul + add;
    float s = 0;
    for (int i = 0; i < CHAINS; i++)
        s += acc[i][0];
    return s;
}

/* The fp32 peak of all OpenMP threads together, GFLOP/s: the best of 3 runs of about 0.1 s,
 * with the widest FMA the CPU has (AVX-512: 16 lanes, AVX2: 8). */
static double
measure_peak_gflops (void)
{
    int lanes = 8;
    bool avx2 = false, avx512 = false;
#ifdef BENCH_X86
    avx2 = __builtin_cpu_supports ("avx2") && __builtin_cpu_supports ("fma");
    avx512 = __builtin_cpu_supports ("avx512f");
    if (avx512)
        lanes = 16;
#endif
    /* 4e7 x 12 chains x 16 lanes x 2 = 15 GFLOP per thread (AVX-512; half with AVX2): about
     * 0.1 s, long enough for the clock to settle and the threads to start together */
    const long iters = 40000000;
    double best = 0;
    volatile float sink = 0;
    for (int run = 0; run < 3; run++) {
        int threads = 1;
        double start = omp_get_wtime ();
        float sum = 0;
#pragma omp parallel reduction(+ : sum)
        {
#pragma omp single
            threads = omp_get_num_threads ();
#ifdef BENCH_X86
            sum += avx512 ? fma_loop_avx512 (iters)
                   : avx2 ? fma_loop_avx2 (iters)
                          : fma_loop_generic (iters);
#else
            sum += fma_loop_generic (iters);
#endif
        }
        double s = omp_get_wtime () - start;
        sink = sink + sum;
        double gflops = (double) threads * iters * CHAINS * lanes * 2 / s / 1e9;
        if (gflops > best)
            best = gflops;
    }
    (void) sink;
    return best;
}

/* This process's peak resident memory, MB: VmHWM, the high-water mark of this program's own
 * memory (getrusage's ru_maxrss also counts what the parent had when it forked: a benchmark
 * started from a large Python process would read that). */
double
ldm_peak_rss_mb (void)
{
    FILE *f = fopen ("/proc/self/status", "r");
    char line[256];
    double kb = -1;
    while (f && fgets (line, sizeof line, f))
        if (sscanf (line, "VmHWM: %lf kB", &kb) == 1)
            break;
    if (f)
        fclose (f);
    if (kb >= 0)
        return kb / 1024.0;
    struct rusage ru;
    if (getrusage (RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double) ru.ru_maxrss / 1024.0; /* kilobytes on Linux */
}

static gboolean
parse_latent (const char *s, int *h, int *w)
{
    char *end;
    long a = strtol (s, &end, 10);
    if (end == s || (*end != 'x' && *end != 'X'))
        return FALSE;
    const char *second = end + 1;
    long b = strtol (second, &end, 10);
    if (end == second || *end || a < 1 || b < 1 || a > 1024 || b > 1024)
        return FALSE;
    *h = (int) a;
    *w = (int) b;
    return TRUE;
}

static gboolean
dump_part (const char *dir, LdmBenchPart part, const LdmBenchTiming *t, GError **error)
{
    g_autofree char *path = g_strdup_printf ("%s/%s.f32", dir, ldm_bench_part_name (part));
    return g_file_set_contents (path, (const char *) t->output,
                                (gssize) (t->output_len * sizeof (float)), error);
}

int
ldm_command_bench (int argc, char **argv)
{
    g_autofree char *model_path = NULL, *latent = NULL, *dump = NULL, *only = NULL,
                    *precision = NULL;
    int repeat = 3;
    gboolean json = FALSE;
    GOptionEntry entries[] = {
        { "model", 0, 0, G_OPTION_ARG_FILENAME, &model_path, "The model file", "M" },
        { "latent", 0, 0, G_OPTION_ARG_STRING, &latent,
          "Latent size (default: the model's, 64x64); the image is the factor times it", "HxW" },
        { "repeat", 0, 0, G_OPTION_ARG_INT, &repeat, "Timed runs after the warm-up (3)", "N" },
        { "precision", 0, 0, G_OPTION_ARG_STRING, &precision,
          "auto (bf16 where the CPU has it), fp32 or bf16 (default: auto)", "P" },
        { "json", 0, 0, G_OPTION_ARG_NONE, &json, "Print one JSON object", NULL },
        { "only", 0, 0, G_OPTION_ARG_STRING, &only,
          "Run only these parts (comma-separated: unet, encode, decode, text)", "PARTS" },
        { "dump", 0, 0, G_OPTION_ARG_FILENAME, &dump,
          "Write each part's output as DIR/PART.f32 (NCHW float32)", "DIR" },
        { NULL },
    };
    g_autoptr (GOptionContext) ctx = g_option_context_new ("- time a model's networks");
    g_option_context_set_summary (
        ctx, "One U-Net forward (Stable Diffusion: the CFG batch uncond + cond), an encode and a "
             "decode of the matching image and the text encoder, on the fixed inputs of "
             "ldm.h's benchmark section: medians after a warm-up, GFLOP/s, the fp32 peak "
             "of this machine (an FMA loop on every OpenMP thread) and peak RSS.");
    g_option_context_add_main_entries (ctx, entries, NULL);
    g_autoptr (GError) error = NULL;
    if (!g_option_context_parse (ctx, &argc, &argv, &error)) {
        fprintf (stderr, "ldm bench: %s\n", error->message);
        return EXIT_BAD_INPUT;
    }
    LdmBenchParams params = { .repeat = repeat, .keep_outputs = dump != NULL };
    gboolean parts_ok = !precision || ldm_precision_parse (precision, &params.precision);
    if (only) {
        g_auto (GStrv) names = g_strsplit (only, ",", -1);
        for (int i = 0; names[i]; i++) {
            LdmBenchPart p = 0;
            while (p < LDM_BENCH_N_PARTS && strcmp (names[i], ldm_bench_part_name (p)) != 0)
                p++;
            if (p == LDM_BENCH_N_PARTS)
                parts_ok = FALSE;
            else
                params.parts |= 1u << p;
        }
    }
    if (!model_path || argc > 1 || repeat < 1 || repeat > 1000 || !parts_ok
        || (latent && !parse_latent (latent, &params.latent_h, &params.latent_w))) {
        fputs ("usage: ldm bench --model M [--latent HxW] [--repeat N (1-1000)] [--json] "
               "[--precision auto|fp32|bf16] [--only unet,encode,decode,text] [--dump DIR]\n",
               stderr);
        return EXIT_BAD_INPUT;
    }
    g_autoptr (LdmModel) model = ldm_model_load (model_path, &error);
    if (!model) {
        fprintf (stderr, "ldm bench: %s\n", error->message);
        return EXIT_BAD_INPUT;
    }
    double peak = measure_peak_gflops ();
    LdmBenchResult r;
    if (!ldm_model_bench (model, &params, &r, &error)) {
        fprintf (stderr, "ldm bench: %s\n", error->message);
        return g_error_matches (error, LDM_ERROR, LDM_ERROR_NO_MEMORY) ? 1 : EXIT_BAD_INPUT;
    }
    double rss = ldm_peak_rss_mb ();
    if (dump) {
        for (LdmBenchPart p = 0; p < LDM_BENCH_N_PARTS; p++)
            if (r.part[p].present && !dump_part (dump, p, &r.part[p], &error)) {
                fprintf (stderr, "ldm bench: %s\n", error->message);
                ldm_bench_result_clear (&r);
                return 1;
            }
    }
    int threads = omp_get_max_threads ();
    if (json) {
        printf ("{\"model\": \"%s\", \"kind\": \"%s\", \"threads\": %d, \"latent\": [%d, %d], "
                "\"image\": [%d, %d], \"unet_batch\": %d, \"repeat\": %d, \"load_s\": %.4f, "
                "\"precision\": \"%s\"",
                model_path, ldm_model_kind_name (ldm_model_kind (model)), threads, r.latent_h,
                r.latent_w, r.image_h, r.image_w, r.unet_batch, repeat, r.load_seconds,
                ldm_precision_name (r.precision));
        for (LdmBenchPart p = 0; p < LDM_BENCH_N_PARTS; p++) {
            const LdmBenchTiming *t = &r.part[p];
            const char *name = ldm_bench_part_name (p);
            if (!t->present)
                continue;
            printf (", \"%s_s\": %.6f, \"%s_first_s\": %.6f, \"%s_gflop\": %.6f, "
                    "\"%s_gflops\": %.3f",
                    name, t->seconds, name, t->first_seconds, name, t->gflop, name,
                    t->gflop / t->seconds);
            if (dump)
                printf (", \"%s_shape\": [%d, %d, %d, %d]", name, t->output_shape[0],
                        t->output_shape[1], t->output_shape[2], t->output_shape[3]);
        }
        printf (", \"peak_gflops\": %.2f, \"peak_rss_mb\": %.1f}\n", peak, rss);
    } else {
        printf ("%s (%s), %d threads, latent %dx%d, image %dx%d, median of %d after a warm-up%s\n",
                model_path, ldm_model_kind_name (ldm_model_kind (model)), threads, r.latent_h,
                r.latent_w, r.image_h, r.image_w, repeat,
                r.precision == LDM_PRECISION_BF16
                    ? "; convolutions, linear layers and attention in bfloat16" : "");
        printf ("networks built in %.2f s; fp32 peak (FMA loop) %.1f GFLOP/s\n", r.load_seconds,
                peak);
        printf ("%-8s %10s %10s %10s %10s %8s\n", "part", "first s", "median s", "GFLOP",
                "GFLOP/s", "% peak");
        for (LdmBenchPart p = 0; p < LDM_BENCH_N_PARTS; p++) {
            const LdmBenchTiming *t = &r.part[p];
            if (!t->present)
                continue;
            char label[32];
            g_snprintf (label, sizeof label, "%s%s", ldm_bench_part_name (p),
                        p == LDM_BENCH_UNET && r.unet_batch > 1 ? " x2" : "");
            printf ("%-8s %10.3f %10.3f %10.1f %10.1f %7.1f%%\n", label, t->first_seconds,
                    t->seconds, t->gflop, t->gflop / t->seconds,
                    100 * t->gflop / t->seconds / peak);
        }
        printf ("peak RSS %.0f MB\n", rss);
    }
    ldm_bench_result_clear (&r);
    return 0;
}
