/* tensor_file.h (private to core/): the table of named tensors every file format ends in.
 *
 * tensor_file.c owns the table, the mapping and the dtype conversions; each format parser
 * (safetensors.c; pickle.c on zip_reader.c) fills the table through tensor_file_add() and
 * never keeps state of its own. The networks never know which file a tensor came from.
 */
#pragma once

#include "ldm.h"

struct LdmTensorFile {
    char          *path;
    LdmFileFormat  format;
    GMappedFile   *map;      /* owns the bytes every LdmTensor.data points into */
    const uint8_t *bytes;    /* = g_mapped_file_get_contents (map) */
    uint64_t       size;     /* bytes in the file */
    GPtrArray     *tensors;  /* LdmTensor *, owned, in file order */
    GHashTable    *by_name;  /* name -> LdmTensor * (borrowed from tensors) */
};

/* Adds one tensor. `data` must point inside the mapping and the whole strided extent
 * (offset of the last element + 1, in bytes) must fit in `bytes_available` from `data`;
 * shapes must be non-negative and their product must not overflow. A duplicate name is an
 * error. All arithmetic is overflow-checked. The error message names the file. */
gboolean tensor_file_add (LdmTensorFile *file, const char *name, LdmDType dtype, int ndim,
                          const int64_t *shape, const int64_t *stride /* NULL = C order */,
                          const uint8_t *data, uint64_t bytes_available, GError **error);

/* Parsers: fill `file` from file->bytes / file->size. On error the table may be partly filled;
 * the caller frees it. */
gboolean safetensors_parse (LdmTensorFile *file, GError **error);
gboolean torch_zip_parse   (LdmTensorFile *file, GError **error);

/* Tells the kernel the mapped pages of a tensor are not needed for now (after a copy of it was
 * made): they leave the process's resident memory and are read again if touched. */
void tensor_release_pages (const LdmTensor *tensor);

/* "[2, 3, 4]": a shape for messages (g_free it). */
char *tensor_shape_text (int ndim, const int64_t *shape);

/* Sets *error to LDM_ERROR/code with "PATH: message". */
void tensor_file_set_error (GError **error, const LdmTensorFile *file, LdmError code,
                            const char *format, ...) G_GNUC_PRINTF (4, 5);

/* A copy of untrusted bytes that is safe to print in a message (g_free it). */
static inline char *
tensor_file_printable (const void *bytes, size_t length)
{
    return g_utf8_make_valid (bytes, (gssize) MIN (length, (size_t) 200));
}

/* Overflow-checked arithmetic (return FALSE on overflow). */
static inline gboolean
checked_mul_u64 (uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_mul_overflow (a, b, out);
}

static inline gboolean
checked_add_u64 (uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_add_overflow (a, b, out);
}
