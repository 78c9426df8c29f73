/* testutil.h: helpers shared by the C tests: fixture paths, reference tensors, comparisons. */
#pragma once

#include "nn/act.h"
#include "nn/dnn.h"
#include "ldm.h"
#include "nn/weights.h"

/* $LDM_SHARED_DIR (default ../shared)/PARTS... (NULL-terminated; g_free it), or NULL (and
 * the test skipped) if absent. */
char *shared_path (const char *first, ...) G_GNUC_NULL_TERMINATED;
/* shared_path ("fixtures", FIXTURE, FILE). */
char *fixture_path (const char *fixture, const char *file);

/* Removes PATH and, when it is a folder (not a link to one), everything below it. */
void remove_tree (const char *path);
/* g_test_run () with *dir a new temporary folder (TEMPLATE, "name-XXXXXX") for the tests,
 * removed with all in it afterwards; returns g_test_run's status. */
int test_run_in_temp_dir (const char *template, char **dir);

/* A fixture's model.safetensors and config.yaml, and a new empty temporary folder for the
 * test's changed copies (or links) of them. */
typedef struct {
    char *model_src, *config_src; /* in the fixture */
    char *dir;                    /* the new folder */
} FixtureCopy;
/* Fills *copy, the folder named from TEMPLATE (g_dir_make_tmp's "name-XXXXXX"); FALSE (and the
 * test skipped) without the fixture's files. */
gboolean fixture_copy_begin (FixtureCopy *copy, const char *fixture, const char *template);
/* copy->dir/NAME (g_free it). */
char *fixture_copy_path (const FixtureCopy *copy, const char *name);
/* Removes the folder with all the test wrote into it and frees the paths. */
void fixture_copy_clear (FixtureCopy *copy);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (FixtureCopy, fixture_copy_clear)

/* Opens FIXTURE's WEIGHTS_FILE (*model) and reference.safetensors (*ref), and a oneDNN engine
 * (*dnn), for a test of one network; FALSE (and the test skipped) without the files.
 * fixture_files_close frees the three. */
gboolean fixture_files_open (const char *fixture, const char *weights_file, LdmTensorFile **model,
                             LdmTensorFile **ref, Dnn **dnn);
void     fixture_files_close (LdmTensorFile *model, LdmTensorFile *ref, Dnn *dnn);

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
