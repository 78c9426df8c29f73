/* sgemm_dnnl.c: a preloadable sgemm_ (the Fortran BLAS entry) on oneDNN's dnnl_sgemm, for the
 * PyTorch side of tools/bench/compare only (never linked into the engine).
 *
 * Debian's python3-torch is built against the generic BLAS interface, and the trixie root's
 * libblas.so.3 is the reference implementation (about 4 GFLOP/s for a 154x768x3072 product
 * here, against 150+ for oneDNN's convolutions in the same PyTorch): its linear layers and
 * attention products would then measure the reference BLAS, not PyTorch. With this library
 * in LD_PRELOAD they run on an optimised sgemm, as PyTorch with MKL or OpenBLAS would. */
#include <oneapi/dnnl/dnnl.h>

/* C = alpha op(A) op(B) + beta C, column-major (Fortran): the row-major product
 * C^T = op(B)^T op(A)^T, which is what dnnl_sgemm computes with the operands swapped. */
void
sgemm_ (const char *transa, const char *transb, const int *m, const int *n, const int *k,
        const float *alpha, const float *a, const int *lda, const float *b, const int *ldb,
        const float *beta, float *c, const int *ldc)
{
    dnnl_sgemm (*transb, *transa, *n, *m, *k, *alpha, b, *ldb, a, *lda, *beta, c, *ldc);
}
