/* alloc.h (private to core/): allocations whose size depends on the input or the model.
 *
 * They never abort: on failure they return NULL and set LDM_ERROR_NO_MEMORY with
 * "not enough memory for WHAT: N MB", which the pipelines pass up to the caller. (Fixed-size
 * bookkeeping, a few bytes per layer, still uses g_new.) */
#pragma once

#include "ldm.h"

#include <math.h>

/* Sets the error for an allocation of n x size bytes; returns FALSE. */
static inline gboolean
ldm_no_memory (GError **error, const char *what, size_t n, size_t size)
{
    double mb = ceil ((double) n * (double) size / (1024.0 * 1024.0));
    g_set_error (error, LDM_ERROR, LDM_ERROR_NO_MEMORY, "not enough memory for %s: %.0f MB", what,
                 mb);
    return FALSE;
}

/* n x size bytes (at least one), or NULL and the error. */
static inline void *
ldm_try_alloc_n (size_t n, size_t size, const char *what, GError **error)
{
    void *p = g_try_malloc_n (n ? n : 1, size ? size : 1);
    if (!p)
        ldm_no_memory (error, what, n, size);
    return p;
}

/* The same, zeroed. */
static inline void *
ldm_try_alloc0_n (size_t n, size_t size, const char *what, GError **error)
{
    void *p = g_try_malloc0_n (n ? n : 1, size ? size : 1);
    if (!p)
        ldm_no_memory (error, what, n, size);
    return p;
}
