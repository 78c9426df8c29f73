/* alloc.h (private to core/): allocations whose size depends on the input or the model.
 *
 * They never abort: on failure they return NULL and set LDM_ERROR_NO_MEMORY with
 * "not enough memory for WHAT: N MB", which the pipelines pass up to the caller. (Fixed-size
 * bookkeeping, a few bytes per layer, still uses g_new.) */
#pragma once

#include "ldm.h"

#include <math.h>
#include <string.h>

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

/* Zeroed floats after every buffer oneDNN reads (activations, attention's and the embeddings'
 * matrices). oneDNN's blocked AVX-512 kernels may load whole register blocks past the end of
 * a source: the brgemm kernels of oneDNN 3.12.1 (Debian forky) do so at 1x1 spatial size with
 * 32 channels, and the U-Net's output then varied with the heap's contents (MALLOC_PERTURB_,
 * setarch -R) and overflowed to non-finite values; oneDNN 3.7.2 and its AVX2 kernels do not.
 * oneDNN does not say how far; a blocked kernel reads at most a tile of its source past the
 * end, a few KB (e.g. 16 rows x 64 channels x 4 bytes = 4 KB; not measured). 4096 floats
 * (16 KB) leaves margin over that and made the forky build stable in every run; it costs
 * 16 KB a buffer (a few hundred live at once in the deepest U-Net). What is read there is
 * then zeros, not the heap's garbage. Activations alone were not enough: the time
 * embeddings' and attention's buffers need it too. */
#define LDM_DNN_TAIL_FLOATS 4096

/* n floats followed by LDM_DNN_TAIL_FLOATS zeros (n itself uninitialised), or NULL and the
 * error (error may be NULL). */
static inline float *
ldm_try_alloc_floats (size_t n, const char *what, GError **error)
{
    float *p = n <= G_MAXSIZE / sizeof (float) - LDM_DNN_TAIL_FLOATS
                   ? g_try_malloc ((n + LDM_DNN_TAIL_FLOATS) * sizeof (float))
                   : NULL;
    if (!p) {
        ldm_no_memory (error, what, n, sizeof (float));
        return NULL;
    }
    memset (p + n, 0, LDM_DNN_TAIL_FLOATS * sizeof (float));
    return p;
}
