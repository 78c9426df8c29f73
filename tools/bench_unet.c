/* bench-unet: times U-Net forwards of a model on oneDNN (a development tool, not installed).
 *
 *   bench-unet MODEL [LATENT_SIDE [RUNS]]     (defaults 64, 3)
 *
 * The first forward creates the primitives and is reported apart; the others are the steady
 * state a sampler sees. Compare with tools/bench/unet_torch.py on the same weights. */
#include "nn/act.h"
#include "arch/model.h"
#include "run/sampler.h"
#include "nn/unet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int
main (int argc, char **argv)
{
    if (argc < 2) {
        fputs ("usage: bench-unet MODEL [LATENT_SIDE [RUNS]]\n", stderr);
        return 2;
    }
    int side = argc > 2 ? atoi (argv[2]) : 64, runs = argc > 3 ? atoi (argv[3]) : 3;
    g_autoptr (GError) error = NULL;
    g_autoptr (LdmModel) model = ldm_model_load (argv[1], &error);
    if (!model) {
        fprintf (stderr, "bench-unet: %s\n", error->message);
        return 2;
    }
    const LdmModelConfig *cfg = model_config (model);
    Dnn *dnn = dnn_new (&error);
    Weights w = { model_unet_tensor, model, "U-Net" };
    gint64 t0 = g_get_monotonic_time ();
    Unet *unet = dnn ? unet_new (dnn, &cfg->unet, &w, &error) : NULL;
    if (!unet) {
        fprintf (stderr, "bench-unet: %s\n", error->message);
        return 1;
    }
    printf ("load + reorder weights: %.2f s\n", (g_get_monotonic_time () - t0) / 1e6);

    Act x = { 0 }, out = { 0 };
    Rng rng;
    rng_seed (&rng, 1);
    if (!act_alloc (&x, 1, side, side, cfg->unet.in_channels, &error)
        || !act_alloc (&out, 1, side, side, cfg->unet.out_channels, &error)) {
        fprintf (stderr, "bench-unet: %s\n", error->message);
        return 1;
    }
    /* a deterministic input both benchmarks can make: sin(0.001 * NCHW index) */
    for (int c = 0; c < x.c; c++)
        for (int y = 0; y < side; y++)
            for (int xx = 0; xx < side; xx++)
                x.data[((size_t) y * side + xx) * x.c + c]
                    = sinf (0.001f * (float) (((size_t) c * side + y) * side + xx));
    g_autofree float *context = NULL;
    if (cfg->unet.context_dim) {
        size_t n = 77 * (size_t) cfg->unet.context_dim;
        context = g_new (float, n);
        rng_normal (&rng, context, n);
    }
    double total = 0;
    for (int i = 0; i <= runs; i++) {
        float t = 500;
        gint64 start = g_get_monotonic_time ();
        if (!unet_forward (unet, &x, &t, context, 77, &out, &error)) {
            fprintf (stderr, "bench-unet: %s\n", error->message);
            return 1;
        }
        double s = (g_get_monotonic_time () - start) / 1e6;
        printf ("%s forward at %dx%d: %.3f s\n", i ? "steady" : "first (primitives made)", side,
                side, s);
        if (i)
            total += s;
    }
    if (runs > 0)
        printf ("mean steady forward: %.3f s\n", total / runs);
    double mean = 0, sq = 0;
    for (size_t i = 0; i < act_numel (&out); i++)
        mean += out.data[i];
    mean /= (double) act_numel (&out);
    for (size_t i = 0; i < act_numel (&out); i++)
        sq += (out.data[i] - mean) * (out.data[i] - mean);
    printf ("output mean %.6f std %.6f\n", mean, sqrt (sq / (double) (act_numel (&out) - 1)));
    act_free (&x);
    act_free (&out);
    unet_free (unet);
    dnn_free (dnn);
    return 0;
}
