/* weights.c: reading named parameters as float32 with shape checks. See weights.h. */
#include "nn/weights.h"

#include "alloc.h"
#include "io/tensor_file.h"

#include <stdarg.h>

float *
weights_read (const Weights *w, const char *name, int ndim, const int64_t *shape, GError **error)
{
    const LdmTensor *t = w->lookup (w->owner, name);
    if (!t) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_MODEL, "%s: parameter '%s' is missing", w->what,
                     name);
        return NULL;
    }
    gboolean same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++)
        same = t->shape[d] == shape[d];
    if (!same) {
        g_autofree char *want = tensor_shape_text (ndim, shape);
        g_autofree char *have = tensor_shape_text (t->ndim, t->shape);
        g_set_error (error, LDM_ERROR, LDM_ERROR_MODEL,
                     "%s: parameter '%s' has shape %s, the architecture needs %s", w->what, name,
                     have, want);
        return NULL;
    }
    size_t n = (size_t) ldm_tensor_numel (t);
    float *data = g_try_malloc_n (n ? n : 1, sizeof (float));
    if (!data) {
        g_autofree char *what = g_strdup_printf ("parameter '%s' of %s", name, w->what);
        ldm_no_memory (error, what, n, sizeof (float));
        return NULL;
    }
    if (!ldm_tensor_read_f32 (t, data, n, error)) {
        g_free (data);
        return NULL;
    }
    tensor_release_pages (t); /* the networks keep their own copy */
    return data;
}

float *
weights_readf (const Weights *w, GError **error, int ndim, const int64_t *shape,
               const char *format, ...)
{
    va_list args;
    va_start (args, format);
    g_autofree char *name = g_strdup_vprintf (format, args);
    va_end (args);
    return weights_read (w, name, ndim, shape, error);
}
