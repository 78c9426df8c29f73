/* tensor_file.c: the table of named tensors, the file mapping and dtype conversion. */
#include "io/tensor_file.h"

#include "alloc.h"

#include <glib/gstdio.h>

#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

G_DEFINE_QUARK (ldm-error-quark, ldm_error)

static const struct {
    const char *name;
    size_t      size;
} dtype_info[LDM_DTYPE_COUNT] = {
    [LDM_DTYPE_BOOL] = { "BOOL", 1 },       [LDM_DTYPE_U8] = { "U8", 1 },
    [LDM_DTYPE_I8] = { "I8", 1 },           [LDM_DTYPE_I16] = { "I16", 2 },
    [LDM_DTYPE_U16] = { "U16", 2 },         [LDM_DTYPE_F16] = { "F16", 2 },
    [LDM_DTYPE_BF16] = { "BF16", 2 },       [LDM_DTYPE_I32] = { "I32", 4 },
    [LDM_DTYPE_U32] = { "U32", 4 },         [LDM_DTYPE_F32] = { "F32", 4 },
    [LDM_DTYPE_F64] = { "F64", 8 },         [LDM_DTYPE_I64] = { "I64", 8 },
    [LDM_DTYPE_U64] = { "U64", 8 },         [LDM_DTYPE_F8_E4M3] = { "F8_E4M3", 1 },
    [LDM_DTYPE_F8_E5M2] = { "F8_E5M2", 1 },
};

const char *
ldm_dtype_name (LdmDType dtype)
{
    return (unsigned) dtype < LDM_DTYPE_COUNT ? dtype_info[dtype].name : "?";
}

size_t
ldm_dtype_size (LdmDType dtype)
{
    return (unsigned) dtype < LDM_DTYPE_COUNT ? dtype_info[dtype].size : 0;
}

void
tensor_release_pages (const LdmTensor *tensor)
{
    uint64_t last = 0;
    for (int d = 0; d < tensor->ndim; d++)
        if (tensor->shape[d] > 0)
            last += (uint64_t) (tensor->shape[d] - 1) * (uint64_t) tensor->stride[d];
    size_t bytes = (size_t) (last + 1) * ldm_dtype_size (tensor->dtype);
    /* only whole pages inside the tensor: its neighbours may still be wanted */
    long page = sysconf (_SC_PAGESIZE);
    uintptr_t start = ((uintptr_t) tensor->data + page - 1) & ~(uintptr_t) (page - 1);
    uintptr_t end = ((uintptr_t) tensor->data + bytes) & ~(uintptr_t) (page - 1);
    if (ldm_tensor_numel (tensor) > 0 && end > start)
        madvise ((void *) start, end - start, MADV_DONTNEED);
}

char *
tensor_shape_text (int ndim, const int64_t *shape)
{
    GString *s = g_string_new ("[");
    for (int d = 0; d < ndim; d++)
        g_string_append_printf (s, d ? ", %" G_GINT64_FORMAT : "%" G_GINT64_FORMAT, shape[d]);
    g_string_append_c (s, ']');
    return g_string_free (s, FALSE);
}

void
tensor_file_set_error (GError **error, const LdmTensorFile *file, LdmError code,
                       const char *format, ...)
{
    va_list args;
    va_start (args, format);
    char *message = g_strdup_vprintf (format, args);
    va_end (args);
    g_set_error (error, LDM_ERROR, code, "%s: %s", file->path, message);
    g_free (message);
}

static void
tensor_free (gpointer data)
{
    LdmTensor *tensor = data;
    g_free ((char *) tensor->name);
    g_free (tensor);
}

gboolean
tensor_file_add (LdmTensorFile *file, const char *name, LdmDType dtype, int ndim,
                 const int64_t *shape, const int64_t *stride, const uint8_t *data,
                 uint64_t bytes_available, GError **error)
{
    if ((unsigned) dtype >= LDM_DTYPE_COUNT) {
        tensor_file_set_error (error, file, LDM_ERROR_FORMAT, "tensor '%s' has an unknown dtype",
                               name);
        return FALSE;
    }
    if (ndim < 0 || ndim > LDM_MAX_DIMS) {
        tensor_file_set_error (error, file, LDM_ERROR_UNSUPPORTED,
                               "tensor '%s' has %d dimensions (at most %d are supported)", name,
                               ndim, LDM_MAX_DIMS);
        return FALSE;
    }
    if (g_hash_table_contains (file->by_name, name)) {
        tensor_file_set_error (error, file, LDM_ERROR_FORMAT, "tensor '%s' appears twice", name);
        return FALSE;
    }
    if (data < file->bytes || (uint64_t) (data - file->bytes) > file->size
        || bytes_available > file->size - (uint64_t) (data - file->bytes)) {
        tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                               "tensor '%s' points outside the file", name);
        return FALSE;
    }

    LdmTensor *tensor = g_new0 (LdmTensor, 1);
    tensor->dtype = dtype;
    tensor->ndim = ndim;
    tensor->data = data;

    /* The element count and the highest element offset, both overflow-checked. */
    uint64_t numel = 1, last = 0;
    int64_t  contiguous = 1;
    gboolean ok = TRUE;
    for (int d = ndim - 1; d >= 0; d--) {
        int64_t n = shape[d];
        int64_t s = stride ? stride[d] : contiguous;
        if (n < 0 || s < 0) {
            ok = FALSE;
            break;
        }
        tensor->shape[d] = n;
        tensor->stride[d] = s;
        if (!checked_mul_u64 (numel, (uint64_t) n, &numel)) {
            ok = FALSE;
            break;
        }
        uint64_t reach;
        if (n > 0 && (!checked_mul_u64 ((uint64_t) (n - 1), (uint64_t) s, &reach)
                      || !checked_add_u64 (last, reach, &last))) {
            ok = FALSE;
            break;
        }
        if (!stride && __builtin_mul_overflow (contiguous, n > 0 ? n : 1, &contiguous)) {
            ok = FALSE;
            break;
        }
    }
    if (!ok) {
        tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                               "tensor '%s' has an impossible shape or stride", name);
        tensor_free (tensor);
        return FALSE;
    }
    /* Bytes needed: (last + 1) elements, or none for an empty tensor. */
    uint64_t needed = 0;
    if (numel > 0
        && (!checked_add_u64 (last, 1, &needed)
            || !checked_mul_u64 (needed, ldm_dtype_size (dtype), &needed))) {
        needed = UINT64_MAX;
    }
    if (needed > bytes_available) {
        tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                               "tensor '%s' needs %" G_GUINT64_FORMAT " bytes but its data has %"
                               G_GUINT64_FORMAT,
                               name, needed, bytes_available);
        tensor_free (tensor);
        return FALSE;
    }

    tensor->name = g_strdup (name);
    g_ptr_array_add (file->tensors, tensor);
    g_hash_table_insert (file->by_name, (char *) tensor->name, tensor);
    return TRUE;
}

LdmTensorFile *
ldm_tensor_file_open (const char *path, GError **error)
{
    g_return_val_if_fail (path != NULL, NULL);

    GError *map_error = NULL;
    GMappedFile *map = g_mapped_file_new (path, FALSE, &map_error);
    if (!map) {
        GStatBuf st;
        if (g_error_matches (map_error, G_FILE_ERROR, G_FILE_ERROR_NOMEM)
            && g_stat (path, &st) == 0) { /* the address space for the mapping ran out */
            g_autofree char *what = g_strdup_printf ("mapping %s", path);
            ldm_no_memory (error, what, (size_t) st.st_size, 1);
        } else {
            g_set_error (error, LDM_ERROR, LDM_ERROR_IO, "%s", map_error->message);
        }
        g_error_free (map_error);
        return NULL;
    }

    LdmTensorFile *file = g_new0 (LdmTensorFile, 1);
    file->path = g_strdup (path);
    file->map = map;
    file->bytes = (const uint8_t *) g_mapped_file_get_contents (map);
    file->size = g_mapped_file_get_length (map);
    file->tensors = g_ptr_array_new_with_free_func (tensor_free);
    file->by_name = g_hash_table_new (g_str_hash, g_str_equal);

    gboolean ok;
    if (file->size >= 4 && memcmp (file->bytes, "PK\x03\x04", 4) == 0) {
        file->format = LDM_FILE_TORCH_ZIP;
        ok = torch_zip_parse (file, error);
    } else if (file->size >= 8) {
        file->format = LDM_FILE_SAFETENSORS;
        ok = safetensors_parse (file, error);
    } else {
        tensor_file_set_error (error, file, LDM_ERROR_FORMAT,
                               "too short (%" G_GUINT64_FORMAT " bytes) to be a model file",
                               file->size);
        ok = FALSE;
    }
    if (!ok) {
        ldm_tensor_file_free (file);
        return NULL;
    }
    return file;
}

void
ldm_tensor_file_free (LdmTensorFile *file)
{
    if (!file)
        return;
    g_hash_table_unref (file->by_name);
    g_ptr_array_unref (file->tensors);
    g_mapped_file_unref (file->map);
    g_free (file->path);
    g_free (file);
}

const char *
ldm_tensor_file_path (const LdmTensorFile *file)
{
    return file->path;
}

LdmFileFormat
ldm_tensor_file_format (const LdmTensorFile *file)
{
    return file->format;
}

size_t
ldm_tensor_file_count (const LdmTensorFile *file)
{
    return file->tensors->len;
}

const LdmTensor *
ldm_tensor_file_at (const LdmTensorFile *file, size_t index)
{
    return index < file->tensors->len ? g_ptr_array_index (file->tensors, index) : NULL;
}

const LdmTensor *
ldm_tensor_file_lookup (const LdmTensorFile *file, const char *name)
{
    return g_hash_table_lookup (file->by_name, name);
}

int64_t
ldm_tensor_numel (const LdmTensor *tensor)
{
    int64_t n = 1;
    for (int d = 0; d < tensor->ndim; d++)
        n *= tensor->shape[d]; /* cannot overflow: checked in tensor_file_add */
    return n;
}

/* ------------------------------------------------------------ conversion */

static float
half_to_float (uint16_t h)
{
    uint32_t sign = (uint32_t) (h >> 15) << 31;
    uint32_t exponent = (h >> 10) & 0x1f;
    uint32_t mantissa = h & 0x3ff;
    uint32_t bits;
    if (exponent == 0x1f) {
        bits = sign | 0x7f800000u | (mantissa << 13); /* inf / nan */
    } else if (exponent != 0) {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    } else if (mantissa == 0) {
        bits = sign;
    } else { /* subnormal: value = mantissa * 2^-24, exact in float */
        float value = (float) mantissa * 0x1p-24f;
        return sign ? -value : value;
    }
    float f;
    memcpy (&f, &bits, 4);
    return f;
}

static float
bf16_to_float (uint16_t b)
{
    uint32_t bits = (uint32_t) b << 16;
    float f;
    memcpy (&f, &bits, 4);
    return f;
}

/* FP8 per the OCP spec: E4M3 (bias 7, no inf, S.1111.111 = nan), E5M2 (bias 15, IEEE-like). */
static float
fp8_to_float (uint8_t v, int exponent_bits)
{
    int mantissa_bits = 7 - exponent_bits;
    int bias = (1 << (exponent_bits - 1)) - 1;
    int sign = v >> 7;
    int exponent = (v >> mantissa_bits) & ((1 << exponent_bits) - 1);
    int mantissa = v & ((1 << mantissa_bits) - 1);
    float value;
    if (exponent_bits == 4 && exponent == 15 && mantissa == 7)
        value = NAN;
    else if (exponent_bits == 5 && exponent == 31)
        value = mantissa ? NAN : INFINITY;
    else if (exponent == 0)
        value = ldexpf ((float) mantissa, 1 - bias - mantissa_bits);
    else
        value = ldexpf ((float) (mantissa | (1 << mantissa_bits)), exponent - bias - mantissa_bits);
    return sign ? -value : value;
}

static float
element_to_float (const uint8_t *p, LdmDType dtype)
{
    /* Files are little-endian, as is every machine this runs on; memcpy keeps it alignment-safe. */
    switch (dtype) {
    case LDM_DTYPE_BOOL: return *p ? 1.0f : 0.0f;
    case LDM_DTYPE_U8: return (float) *p;
    case LDM_DTYPE_I8: return (float) (int8_t) *p;
#define LOAD(type) ({ type v_; memcpy (&v_, p, sizeof v_); v_; })
    case LDM_DTYPE_I16: return (float) LOAD (int16_t);
    case LDM_DTYPE_U16: return (float) LOAD (uint16_t);
    case LDM_DTYPE_F16: return half_to_float (LOAD (uint16_t));
    case LDM_DTYPE_BF16: return bf16_to_float (LOAD (uint16_t));
    case LDM_DTYPE_I32: return (float) LOAD (int32_t);
    case LDM_DTYPE_U32: return (float) LOAD (uint32_t);
    case LDM_DTYPE_F32: return LOAD (float);
    case LDM_DTYPE_F64: return (float) LOAD (double);
    case LDM_DTYPE_I64: return (float) LOAD (int64_t);
    case LDM_DTYPE_U64: return (float) LOAD (uint64_t);
#undef LOAD
    case LDM_DTYPE_F8_E4M3: return fp8_to_float (*p, 4);
    case LDM_DTYPE_F8_E5M2: return fp8_to_float (*p, 5);
    default: return NAN;
    }
}

gboolean
ldm_tensor_read_f32 (const LdmTensor *tensor, float *dst, size_t dst_len, GError **error)
{
    int64_t numel = ldm_tensor_numel (tensor);
    if ((uint64_t) numel != dst_len) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_MODEL,
                     "tensor '%s' has %" G_GINT64_FORMAT " elements, %zu were expected",
                     tensor->name, numel, dst_len);
        return FALSE;
    }
    size_t esize = ldm_dtype_size (tensor->dtype);

    /* Fast path: contiguous float32. */
    gboolean contiguous = TRUE;
    int64_t expect = 1;
    for (int d = tensor->ndim - 1; d >= 0; d--) {
        if (tensor->shape[d] != 1 && tensor->stride[d] != expect)
            contiguous = FALSE;
        expect *= tensor->shape[d];
    }
    if (contiguous && tensor->dtype == LDM_DTYPE_F32) {
        memcpy (dst, tensor->data, dst_len * sizeof (float));
        return TRUE;
    }

    /* General path: walk the index in C order, following the strides. */
    int64_t index[LDM_MAX_DIMS] = { 0 };
    int64_t offset = 0;
    for (int64_t i = 0; i < numel; i++) {
        dst[i] = element_to_float (tensor->data + (size_t) offset * esize, tensor->dtype);
        for (int d = tensor->ndim - 1; d >= 0; d--) {
            index[d]++;
            offset += tensor->stride[d];
            if (index[d] < tensor->shape[d])
                break;
            offset -= tensor->stride[d] * tensor->shape[d];
            index[d] = 0;
        }
    }
    return TRUE;
}
