/* testutil.h: helpers shared by the C tests: fixture paths, reference tensors, comparisons. */
#pragma once

#include "nn/act.h"
#include "ldm.h"
#include "nn/weights.h"

/* $LDM_SHARED_DIR/fixtures/NAME/FILE (g_free it), or NULL (and the test skipped) if absent. */
char *fixture_path (const char *fixture, const char *file);

/* Reads reference tensor `name` (NCHW, or any shape) as float32; *numel gets its size. */
float *ref_read (LdmTensorFile *ref, const char *name, size_t *numel);
/* Reads an NCHW reference tensor into a new NHWC activation. */
void   ref_read_act (LdmTensorFile *ref, const char *name, Act *out);
/* An NHWC activation as a new NCHW array (for comparing with references). */
float *act_to_nchw (const Act *a);

/* Max |got - want| / (max(want) - min(want)); prints it with `what` and asserts <= tol. */
double assert_close (const char *what, const float *got, const float *want, size_t n, double tol);

/* Weights of a CompVis checkpoint's U-Net: EMA copy when present (as the authors sample). */
typedef struct {
    LdmTensorFile *file;
    const char    *prefix;     /* "model.diffusion_model." or "first_stage_model." */
    const char    *ema_prefix; /* "model_ema." or NULL */
} TestWeights;
Weights test_weights (const TestWeights *tw);
