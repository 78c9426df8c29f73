/* test_flops: the FLOP counts the benchmark reports (arch/flops.h) against the figures of
 * ../shared/notes/ldm-models.md, which were counted on the authors' PyTorch modules
 * (convolutions, linear layers and attention products of one forward). */
#include "arch/flops.h"

#include <glib.h>

/* GFLOP within 0.1 % of the notes' figure (they give one decimal). */
static void
assert_gflop (double flops, double expected)
{
    double g = flops / 1e9;
    if (!(g > expected * 0.999 && g < expected * 1.001))
        g_error ("%.2f GFLOP, expected %.1f", g, expected);
}

static void
test_unet_presets (void)
{
    LdmModelConfig c;
    model_config_preset (LDM_PRESET_LDM_INPAINTING_BIG, &c);
    assert_gflop (model_config_unet_flops (&c.unet, 1, 64, 64, 0), 300.9);
    assert_gflop (model_config_unet_flops (&c.unet, 1, 128, 128, 0), 1345.7);
    model_config_preset (LDM_PRESET_LDM_BSR_SR, &c);
    assert_gflop (model_config_unet_flops (&c.unet, 1, 64, 64, 0), 80.5);
    model_config_preset (LDM_PRESET_SD15_INPAINTING, &c);
    assert_gflop (model_config_unet_flops (&c.unet, 1, 64, 64, 77), 803.6);
    /* the CFG batch is two forwards */
    assert_gflop (model_config_unet_flops (&c.unet, 2, 64, 64, 77), 2 * 803.6);
}

static void
test_autoencoder_presets (void)
{
    LdmModelConfig c;
    model_config_preset (LDM_PRESET_LDM_INPAINTING_BIG, &c);
    assert_gflop (model_config_encode_flops (&c.first_stage, 512, 512), 1209);
    assert_gflop (model_config_decode_flops (&c.first_stage, 128, 128), 2512);
}

int
main (int argc, char **argv)
{
    g_test_init (&argc, &argv, NULL);
    g_test_add_func ("/flops/unet-presets", test_unet_presets);
    g_test_add_func ("/flops/autoencoder-presets", test_autoencoder_presets);
    return g_test_run ();
}
