/* bench-unet: times U-Net forwards of a model on oneDNN (a development tool, not installed).
 *
 *   bench-unet MODEL [LATENT_SIDE [RUNS]]     (defaults 64, 3)
 *
 * The first forward creates the primitives and is reported apart; the others are the steady
 * state a sampler sees. Compare with tools/bench/unet_torch.py on the same weights. */
#include "act.h"
#include "model.h"
#include "sampler.h"
#include "unet.h"

#include <stdio.h>
#include <stdlib.h>

static const LdmTensor *
lookup (const void *owner, const char *name)
{
    return model_unet_tensor (owner, name);
}

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
    Weights w = { lookup, model, "U-Net" };
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
    rng_normal (&rng, x.data, act_numel (&x));
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
    act_free (&x);
    act_free (&out);
    unet_free (unet);
    dnn_free (dnn);
    return 0;
}
