/* testutil.c: see testutil.h. */
#include "testutil.h"

#include <glib/gstdio.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

char *
shared_path (const char *first, ...)
{
    const char *shared = g_getenv ("LDM_SHARED_DIR");
    va_list args;
    va_start (args, first);
    g_autofree char *rest = g_build_filename_valist (first, &args);
    va_end (args);
    char *path = g_build_filename (shared && *shared ? shared : "../shared", rest, NULL);
    if (!g_file_test (path, G_FILE_TEST_EXISTS)) {
        g_test_skip_printf ("%s not found", path);
        g_clear_pointer (&path, g_free);
    }
    return path;
}

char *
fixture_path (const char *fixture, const char *file)
{
    return shared_path ("fixtures", fixture, file, NULL);
}

void
remove_tree (const char *path)
{
    if (g_file_test (path, G_FILE_TEST_IS_DIR) && !g_file_test (path, G_FILE_TEST_IS_SYMLINK)) {
        g_autoptr (GDir) dir = g_dir_open (path, 0, NULL);
        const char *name;
        while (dir && (name = g_dir_read_name (dir))) {
            g_autofree char *child = g_build_filename (path, name, NULL);
            remove_tree (child);
        }
    }
    g_remove (path);
}

int
test_run_in_temp_dir (const char *template, char **dir)
{
    g_autoptr (GError) error = NULL;
    *dir = g_dir_make_tmp (template, &error);
    g_assert_no_error (error);
    int status = g_test_run ();
    remove_tree (*dir);
    g_clear_pointer (dir, g_free);
    return status;
}

gboolean
fixture_copy_begin (FixtureCopy *copy, const char *fixture, const char *template)
{
    *copy = (FixtureCopy) { 0 };
    copy->model_src = fixture_path (fixture, "model.safetensors");
    copy->config_src = copy->model_src ? fixture_path (fixture, "config.yaml") : NULL;
    if (!copy->config_src) {
        fixture_copy_clear (copy);
        return FALSE;
    }
    g_autoptr (GError) error = NULL;
    copy->dir = g_dir_make_tmp (template, &error);
    g_assert_no_error (error);
    return TRUE;
}

char *
fixture_copy_path (const FixtureCopy *copy, const char *name)
{
    return g_build_filename (copy->dir, name, NULL);
}

void
fixture_copy_clear (FixtureCopy *copy)
{
    if (copy->dir)
        remove_tree (copy->dir);
    g_clear_pointer (&copy->dir, g_free);
    g_clear_pointer (&copy->model_src, g_free);
    g_clear_pointer (&copy->config_src, g_free);
}

gboolean
fixture_files_open (const char *fixture, const char *weights_file, LdmTensorFile **model,
                    LdmTensorFile **ref, Dnn **dnn)
{
    g_autofree char *model_path = fixture_path (fixture, weights_file);
    g_autofree char *ref_path = fixture_path (fixture, "reference.safetensors");
    if (!model_path || !ref_path)
        return FALSE;
    g_autoptr (GError) error = NULL;
    *model = ldm_tensor_file_open (model_path, &error);
    g_assert_no_error (error);
    *ref = ldm_tensor_file_open (ref_path, &error);
    g_assert_no_error (error);
    *dnn = dnn_new (false, &error);
    g_assert_no_error (error);
    return TRUE;
}

void
fixture_files_close (LdmTensorFile *model, LdmTensorFile *ref, Dnn *dnn)
{
    dnn_free (dnn);
    ldm_tensor_file_free (ref);
    ldm_tensor_file_free (model);
}

float *
ref_read (LdmTensorFile *ref, const char *name, size_t *numel)
{
    const LdmTensor *t = ldm_tensor_file_lookup (ref, name);
    if (!t)
        g_error ("reference tensor %s missing", name);
    size_t n = (size_t) ldm_tensor_numel (t);
    float *data = g_new (float, n ? n : 1);
    g_autoptr (GError) error = NULL;
    g_assert_true (ldm_tensor_read_f32 (t, data, n, &error));
    if (numel)
        *numel = n;
    return data;
}

void
ref_read_act (LdmTensorFile *ref, const char *name, Act *out)
{
    const LdmTensor *t = ldm_tensor_file_lookup (ref, name);
    if (!t)
        g_error ("reference tensor %s missing", name);
    g_assert_cmpint (t->ndim, ==, 4);
    int n = (int) t->shape[0], c = (int) t->shape[1], h = (int) t->shape[2], w = (int) t->shape[3];
    g_autofree float *nchw = ref_read (ref, name, NULL);
    g_assert_true (act_alloc (out, n, h, w, c, NULL));
    for (int b = 0; b < n; b++)
        for (int k = 0; k < c; k++)
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                    out->data[(((size_t) b * h + y) * w + x) * c + k]
                        = nchw[(((size_t) b * c + k) * h + y) * w + x];
}

float *
act_to_nchw (const Act *a)
{
    float *nchw = g_new (float, act_numel (a));
    for (int b = 0; b < a->n; b++)
        for (int k = 0; k < a->c; k++)
            for (int y = 0; y < a->h; y++)
                for (int x = 0; x < a->w; x++)
                    nchw[(((size_t) b * a->c + k) * a->h + y) * a->w + x]
                        = a->data[(((size_t) b * a->h + y) * a->w + x) * a->c + k];
    return nchw;
}

double
assert_close (const char *what, const float *got, const float *want, size_t n, double tol)
{
    double lo = INFINITY, hi = -INFINITY, worst = 0;
    for (size_t i = 0; i < n; i++) {
        lo = fmin (lo, want[i]);
        hi = fmax (hi, want[i]);
        double e = fabs ((double) got[i] - want[i]);
        if (!(e <= worst)) /* also catches NaN */
            worst = isnan (e) ? INFINITY : e;
    }
    double range = hi > lo ? hi - lo : 1.0;
    double rel = worst / range;
    g_test_message ("%s: max abs error %.3g (%.3g of the range %.3g)", what, worst, rel, range);
    if (!(rel <= tol))
        g_test_fail_printf ("%s: max abs error %.3g is %.3g of the range (tolerance %.3g)", what,
                            worst, rel, tol);
    return rel;
}

static const LdmTensor *
test_lookup (const void *owner, const char *name)
{
    const TestWeights *tw = owner;
    if (tw->ema_prefix) {
        g_autofree char *full = g_strconcat (tw->prefix, name, NULL);
        GString *ema = g_string_new (tw->ema_prefix);
        for (const char *p = full + strlen ("model."); *p; p++)
            if (*p != '.')
                g_string_append_c (ema, *p);
        const LdmTensor *t = ldm_tensor_file_lookup (tw->file, ema->str);
        g_string_free (ema, TRUE);
        if (t)
            return t;
    }
    g_autofree char *full = g_strconcat (tw->prefix, name, NULL);
    return ldm_tensor_file_lookup (tw->file, full);
}

Weights
test_weights (const TestWeights *tw)
{
    return (Weights) { .lookup = test_lookup, .owner = tw, .what = "test weights" };
}
